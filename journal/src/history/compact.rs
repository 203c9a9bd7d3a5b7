//! Compaction: merging groups of installed runs into bigger immutable files
//! so that a lookup of a new id probes O(fanout × log(history)) filters, not
//! one per run.
//!
//! Policy (tiered, LSM-style): a file's tier is ⌊log_fanout(runs it
//! holds)⌋; the oldest `fanout` consecutive files of one tier, all eligible,
//! holding at most `records_max` records together, merge into one file of
//! the next tier. A merged file `run-<first>-<last>.bhr` keeps only the
//! newest record of each id (the store answers newest only, by id and by
//! account, so every answer is the same before and after) and lists every
//! member run with its checksum, so `has_run` still answers for it.
//!
//! Eligible runs: installed (the engine's store said yes: a run never
//! installed may be rewritten after a restart, a merged one never is) at or
//! before the oldest kept snapshot's seq, so every replay from a kept
//! snapshot re-installs merged runs only from member lists and meets only
//! files whose every run it will install. (Answers do not depend on it:
//! the store already answers each id's newest record, and the engine
//! ignores records past its installed horizon; it keeps repairs of a lost
//! run, `repair_run`, possible for every run a replay can re-install.)
//!
//! Crash safety: the merged file is written `<name>.tmp`, synced, renamed,
//! the directory synced, read back whole, and only then are its members
//! removed (directory synced again). A crash leaves a `.tmp` (removed at
//! open) or a complete merged file whose members open removes.
//!
//! Invariants, as absences: no run is merged before it is installed and
//! covered by the oldest kept snapshot; no member is removed before its
//! merged file is durable under its final name and verified whole; no
//! merged file drops a record some id's newest answer needs; nothing here
//! runs on the engine thread (the store adopts a merged file already open).

use super::format::*;
use super::store::{HistoryError, HistoryLink, Run};
use super::writer::{build_file, write_run_file};
use crate::snapshot::list_snapshots;
use crate::Storage;
use engine::history::TransferRecord;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Compaction defaults (`[history] compact_fanout`, `compact_records_max`).
pub const DEFAULT_COMPACT_FANOUT: usize = 8;
/// Most records one merged file holds by default (it is built in memory:
/// ~2 × 176 bytes a record while it is built).
pub const DEFAULT_COMPACT_RECORDS_MAX: u64 = 4_194_304;

/// One file as the compactor tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpan {
    /// First run held.
    pub first: u64,
    /// Last run held.
    pub last: u64,
    /// Records in the file.
    pub records: u64,
}

impl FileSpan {
    fn tier(&self, fanout: u64) -> u32 {
        let (mut runs, mut t) = (self.last - self.first + 1, 0);
        while runs >= fanout {
            runs /= fanout;
            t += 1;
        }
        t
    }
}

/// The group to merge next: indexes `[i, i + fanout)` of `files` (see the
/// module doc), or `None`.
pub fn pick_group(
    files: &[FileSpan],
    fanout: usize,
    records_max: u64,
    eligible_through_run: u64,
) -> Option<usize> {
    let fanout = fanout.max(2);
    files.windows(fanout).position(|w| {
        let tier = w[0].tier(fanout as u64);
        w.iter().all(|f| f.tier(fanout as u64) == tier)
            && w[fanout - 1].last <= eligible_through_run
            && w.iter().map(|f| f.records).sum::<u64>() <= records_max
    })
}

/// Merges the files `group` (consecutive, oldest first) of `dir` into one
/// merged file, durably, and reads it back whole; returns it opened. The
/// members are still on disk: see [`remove_members`].
pub(crate) fn merge<S: Storage>(
    storage: &S,
    dir: &Path,
    group: &[FileSpan],
) -> Result<Run<S::File>, HistoryError> {
    let (first, last) = (group[0].first, group[group.len() - 1].last);
    let mut recs: Vec<TransferRecord> = Vec::new();
    let mut members = Vec::new();
    let mut bounds = (0, 0);
    for (k, f) in group.iter().enumerate() {
        let path = dir.join(file_name(f.first, f.last));
        let corrupt = |fault| HistoryError::Corrupt {
            path: path.clone(),
            fault,
        };
        let run = Run::open(storage, &path).map_err(corrupt)?;
        if k == 0 {
            bounds.0 = run.header.after_seq;
        }
        bounds.1 = run.header.through_seq;
        run.scan(|r| recs.push(r)).map_err(corrupt)?;
        members.extend(run.member_list());
    }
    // Files hold consecutive seq ranges, each sorted by (id, change_seq):
    // a stable sort keeps that order, and the last record of an id is its
    // newest, the only one any answer uses.
    recs.sort_by_key(|r| (r.spec.id.0, r.change_seq.0));
    recs.dedup_by(|later, earlier| {
        let same = later.spec.id == earlier.spec.id;
        if same {
            *earlier = *later;
        }
        same
    });
    let image = build_file(last, bounds.0, bounds.1, recs, &members);
    debug_assert_eq!(image.header.first_run, first);
    let path = write_run_file(storage, dir, &image)?;
    let run = Run::open(storage, &path)
        .and_then(|r| r.verify_all().map(|()| r))
        .map_err(|fault| HistoryError::Corrupt { path, fault })?;
    Ok(run)
}

/// Removes the files a durable merged file replaced, then syncs the
/// directory.
pub fn remove_members<S: Storage>(
    storage: &S,
    dir: &Path,
    group: &[FileSpan],
) -> Result<(), HistoryError> {
    for f in group {
        let path = dir.join(file_name(f.first, f.last));
        storage.remove(&path).map_err(|source| HistoryError::Io {
            op: "remove",
            path,
            source,
        })?;
    }
    storage.sync_dir(dir).map_err(|source| HistoryError::Io {
        op: "fsync dir",
        path: dir.to_path_buf(),
        source,
    })
}

/// The compaction state of one partition's history (runs on its own
/// thread, see `runtime::history`).
#[derive(Debug)]
pub struct Compactor<S: Storage> {
    storage: S,
    dir: PathBuf,
    /// Where the partition's snapshots are (the history dir's parent).
    snapshot_dir: PathBuf,
    link: Arc<HistoryLink<S::File>>,
    fanout: usize,
    records_max: u64,
    /// Installed files, oldest first, contiguous from run 1.
    files: Vec<FileSpan>,
    /// (run, upper bound of the seq its install was applied at), for runs
    /// not yet known to be covered by a kept snapshot, oldest first.
    installs: Vec<(u64, u64)>,
    /// Runs through this one are installed and covered by the oldest kept
    /// snapshot.
    eligible_through_run: u64,
}

impl<S: Storage + Clone> Compactor<S> {
    /// A compactor of `dir` whose runs through `installed_run` were
    /// installed at or before seq `installed_by_seq` (after a restart: the
    /// engine's installed run and the recovered last seq).
    pub fn new(
        storage: S,
        dir: &Path,
        link: Arc<HistoryLink<S::File>>,
        (fanout, records_max): (usize, u64),
        (installed_run, installed_by_seq): (u64, u64),
    ) -> Result<Self, HistoryError> {
        let mut c = Self {
            storage,
            snapshot_dir: dir.parent().unwrap_or(dir).to_path_buf(),
            dir: dir.to_path_buf(),
            link,
            fanout: fanout.max(2),
            records_max,
            files: Vec::new(),
            installs: Vec::new(),
            eligible_through_run: 0,
        };
        c.files = c.list(installed_run)?;
        if installed_run > 0 {
            c.installs.push((installed_run, installed_by_seq));
        }
        Ok(c)
    }

    /// The installed files through run `through`, as on disk now (merged
    /// files and leftovers resolved as `DiskHistory::open` does).
    fn list(&self, through: u64) -> Result<Vec<FileSpan>, HistoryError> {
        if through == 0 {
            // Nothing installed: no file to open (a replicated node starts so).
            return Ok(Vec::new());
        }
        let h = super::DiskHistory::open_read_only(self.storage.clone(), &self.dir)?;
        let mut out = Vec::new();
        let mut run = 1;
        while run <= through {
            let Some(hd) = h.header(run) else {
                return Err(HistoryError::Missing {
                    path: self.dir.join(run_name(run)),
                });
            };
            out.push(FileSpan {
                first: hd.first_run,
                last: hd.run,
                records: hd.records,
            });
            run = hd.run + 1;
        }
        Ok(out)
    }

    /// The files tracked (installed ones).
    pub fn files(&self) -> &[FileSpan] {
        &self.files
    }

    /// The history directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// (fanout, records_max).
    pub fn settings(&self) -> (usize, u64) {
        (self.fanout, self.records_max)
    }

    /// Learns installs, then the oldest kept snapshot. `applied_seq` is
    /// read after the link: the engine published every seq before the
    /// input whose install the link reports, so that install was applied at
    /// most one seq past what it returns.
    pub fn observe(&mut self, applied_seq: impl Fn() -> u64) -> Result<(), HistoryError> {
        let oldest = list_snapshots(&self.storage, &self.snapshot_dir)
            .ok()
            .and_then(|all| all.first().map(|(seq, _)| *seq));
        self.observe_covered(applied_seq, oldest)
    }

    /// [`Self::observe`] with the seq every replay starts after given
    /// (`covered`: a replicated partition's purged log, not snapshots).
    pub fn observe_covered(
        &mut self,
        applied_seq: impl Fn() -> u64,
        covered: Option<u64>,
    ) -> Result<(), HistoryError> {
        let installed = self.link.installed_run();
        let applied_seq = applied_seq();
        let known = self.files.last().map_or(0, |f| f.last);
        for run in known + 1..=installed {
            let path = self.dir.join(run_name(run));
            let f = self
                .storage
                .open_read(&path)
                .map_err(|e| HistoryError::Corrupt {
                    path: path.clone(),
                    fault: super::RunFault::Io(e.to_string()),
                })?;
            let hd = read_header(&f).map_err(|fault| HistoryError::Corrupt { path, fault })?;
            self.files.push(FileSpan {
                first: run,
                last: run,
                records: hd.records,
            });
        }
        if installed > known {
            self.installs.push((installed, applied_seq + 1));
        }
        if let Some(s) = covered {
            let covered = self.installs.partition_point(|&(_, by)| by <= s);
            if let Some(&(run, _)) = covered.checked_sub(1).map(|i| &self.installs[i]) {
                self.eligible_through_run = self.eligible_through_run.max(run);
            }
            self.installs.drain(..covered);
        }
        Ok(())
    }

    /// One merge if one is due: writes the merged file, hands it to the
    /// engine's store, removes the members. Returns whether it merged.
    pub fn step(&mut self) -> Result<bool, HistoryError> {
        let Some(i) = pick_group(
            &self.files,
            self.fanout,
            self.records_max,
            self.eligible_through_run,
        ) else {
            return Ok(false);
        };
        let group: Vec<FileSpan> = self.files[i..i + self.fanout].to_vec();
        let run = merge(&self.storage, &self.dir, &group)?;
        let span = FileSpan {
            first: run.header.first_run,
            last: run.header.run,
            records: run.header.records,
        };
        self.link.offer(run);
        remove_members(&self.storage, &self.dir, &group)?;
        self.files.splice(i..i + self.fanout, std::iter::once(span));
        Ok(true)
    }
}

/// Reads and checks a file's header only.
fn read_header<F: crate::StorageFile>(f: &F) -> Result<Header, super::RunFault> {
    let mut b = [0u8; HEADER_LEN];
    f.read_at(&mut b, 0)
        .map_err(|e| super::RunFault::Io(e.to_string()))?;
    Ok(Header::decode(&b)?)
}
