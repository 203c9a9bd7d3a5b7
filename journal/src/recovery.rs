//! Crash recovery at start-up: newest valid snapshot, then the journal tail.
//!
//! Steps: (1) try snapshots newest first: each must check out
//! (`snapshot::read_snapshot`), restore, and reproduce the state hash in its
//! header; each one that fails is reported in `Recovered::skipped_snapshots`
//! (file and what failed) and the next older one is tried; with none, start
//! from a fresh engine at seq 0. (2) Scan the whole journal (every block is
//! verified: checksums, hash chain, contiguity) and apply each record with
//! seq > the snapshot's, in order, requiring the first one to be exactly
//! snapshot seq + 1 (all through `journal::replay`). (3) Cut a provably torn tail (an unsynced write that was
//! never acknowledged; reported in `scan.tail`, logged as a WARN naming the
//! segment, the offset and the bytes).
//!
//! Invariants: the recovered engine's state equals a fresh engine's after
//! applying exactly inputs 1..=last_seq; recovery never drops a damaged
//! block silently: damage halts with `JournalError::Corrupt` naming the
//! segment, offset, failed check and last intact seq, unless the caller
//! asked for `repair`, in which case (before step 2) the damage and
//! everything after it is moved aside into `damaged/` and logged as an
//! ERROR (`journal::repair_journal`).
//!
//! Retention (`journal::retention`) removes the journal's front only up to
//! the oldest kept snapshot, and `journal.base` says where the journal then
//! starts: recovery needs nothing before the snapshot it uses, so it works
//! unchanged; when no usable snapshot reaches the base (both snapshots
//! damaged) it refuses with `ArchivedBeforeSnapshot`, naming the archive.
//!
//! Two losses that leave no damaged bytes behind are refused even with
//! `repair` (nothing is there to move aside; a human decides whether the
//! lost data can be restored): a journal that ends before the newest valid
//! snapshot (`JournalBehindSnapshot`, naming the missing seqs: the snapshot
//! is sound, but the journal cannot continue from it without a gap), and a
//! journal whose `journal.head` names a segment it lacks or ends before
//! (`JournalError::LostSegment`).

use crate as journal;
use crate::replay::{replay, ReplayError};
use crate::snapshot::{self, SnapshotError, SnapshotFault, SnapshotSkip};
use crate::{JournalError, MovedAside, ScanReport, Storage};
use engine::{Engine, EngineConfig};
use std::path::Path;

/// The result of recovery.
#[derive(Debug)]
pub struct Recovered {
    /// The rebuilt engine.
    pub engine: Engine,
    /// Seq of the snapshot used, if any.
    pub snapshot_seq: Option<u64>,
    /// Last seq applied (0: nothing).
    pub last_seq: u64,
    /// Journal records applied on top of the snapshot.
    pub replayed: u64,
    /// What the journal scan found (including a torn tail, now repaired).
    pub scan: ScanReport,
    /// Snapshots that were not usable, newest first.
    pub skipped_snapshots: Vec<SnapshotSkip>,
    /// Damaged journal data moved aside (only with `repair`).
    pub moved_aside: Vec<MovedAside>,
    /// `engine.state_hash()` after recovery.
    pub state_hash: u128,
}

/// Why recovery failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The journal is damaged or unreadable.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Snapshots could not be listed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The journal's front was retained away (`journal.base`), and no
    /// usable snapshot reaches it: the seqs between are only in the archive
    /// (or were deleted).
    #[error("journal starts at seq {first_seq} ({} says seqs 1..={} were archived into {} or deleted), but {}: recovery needs a snapshot at seq {} or later; restore a snapshot, or rebuild from the archive (`bourse replay`)", dir.join(journal::BASE_NAME).display(), first_seq - 1, dir.join(journal::retention::ARCHIVE_DIR).display(), match snapshot_seq { Some(s) => format!("the newest usable snapshot is at seq {s}"), None => "no snapshot is usable".to_string() }, first_seq - 1)]
    ArchivedBeforeSnapshot {
        /// The partition directory.
        dir: std::path::PathBuf,
        /// Where the journal starts.
        first_seq: u64,
        /// The snapshot recovery would start from.
        snapshot_seq: Option<u64>,
    },
    /// The journal ends before the snapshot's seq: durable inputs are missing.
    #[error("journal ends at seq {journal_last} but snapshot {} is at seq {snapshot_seq}: seqs {}..={snapshot_seq} are missing from the journal (a lost segment?), which cannot continue from the snapshot; refused even with repair: restore the journal, or, accepting the loss of those seqs, move the snapshot aside", snapshot.display(), journal_last + 1)]
    JournalBehindSnapshot {
        /// The snapshot used.
        snapshot: std::path::PathBuf,
        /// Its seq.
        snapshot_seq: u64,
        /// The journal's last seq (0: empty).
        journal_last: u64,
    },
}

/// Rebuilds the engine from `dir` (snapshots + journal), cutting a torn
/// journal tail and refusing damage. `restore` turns a snapshot body back
/// into an engine (a closure that fails reports every snapshot as skipped
/// and replays the whole journal).
pub fn recover<S, R, E>(
    storage: &S,
    dir: &Path,
    cfg: EngineConfig,
    restore: R,
) -> Result<Recovered, RecoveryError>
where
    S: Storage,
    R: FnMut(EngineConfig, &[u8]) -> Result<Engine, E>,
    E: std::fmt::Display,
{
    recover_with(storage, dir, cfg, restore, false)
}

/// `recover`, and with `repair` first moves damaged journal data aside
/// (see the module doc) instead of refusing it.
pub fn recover_with<S, R, E>(
    storage: &S,
    dir: &Path,
    cfg: EngineConfig,
    restore: R,
    repair: bool,
) -> Result<Recovered, RecoveryError>
where
    S: Storage,
    R: FnMut(EngineConfig, &[u8]) -> Result<Engine, E>,
    E: std::fmt::Display,
{
    recover_attached(storage, dir, cfg, restore, repair, &mut |_| {})
}

/// `recover_with`, calling `attach` on the engine (restored or fresh)
/// before the journal is replayed: the server attaches the transfer
/// history there, so replayed `InstallHistory` inputs find their runs.
pub fn recover_attached<S, R, E>(
    storage: &S,
    dir: &Path,
    cfg: EngineConfig,
    mut restore: R,
    repair: bool,
    attach: &mut dyn FnMut(&mut Engine),
) -> Result<Recovered, RecoveryError>
where
    S: Storage,
    R: FnMut(EngineConfig, &[u8]) -> Result<Engine, E>,
    E: std::fmt::Display,
{
    storage
        .create_dir_all(dir)
        .map_err(|source| JournalError::Io {
            op: "create dir",
            path: dir.to_path_buf(),
            source,
        })?;
    let moved_aside = if repair {
        repair_partition(storage, dir)?
    } else {
        Vec::new()
    };
    let mut skipped = Vec::new();
    let mut base: Option<(Engine, u64, std::path::PathBuf)> = None;
    for (_, path) in snapshot::list_snapshots(storage, dir)?.into_iter().rev() {
        let fault = match snapshot::read_snapshot(storage, &path) {
            Err(f) => f,
            Ok(s) => match restore(cfg, &s.body) {
                Err(e) => SnapshotFault::Restore(e.to_string()),
                Ok(engine) if engine.state_hash() != s.state_hash => SnapshotFault::StateHash {
                    expected: s.state_hash,
                    found: engine.state_hash(),
                },
                Ok(engine) => {
                    base = Some((engine, s.seq, path));
                    break;
                }
            },
        };
        skipped.push(SnapshotSkip { path, what: fault });
    }
    let (mut engine, snapshot_seq, snap_path) = match base {
        Some((e, s, p)) => (e, Some(s), Some(p)),
        None => (Engine::new(cfg), None, None),
    };
    if let Some(b) = journal::read_base(storage, dir)? {
        if snapshot_seq.unwrap_or(0) < b.retained_through() {
            return Err(RecoveryError::ArchivedBeforeSnapshot {
                dir: dir.to_path_buf(),
                first_seq: b.first_seq,
                snapshot_seq,
            });
        }
    }
    attach(&mut engine);
    let from = snapshot_seq.unwrap_or(0) + 1;
    let mut events = engine.new_events();
    let r = replay(storage, dir, from, u64::MAX, |input| {
        engine.apply(input, &mut events);
        Ok(())
    })
    .map_err(ReplayError::into_journal)?;
    let (scan, replayed) = (r.scan, r.applied);
    let last_seq = r.last_seq.unwrap_or(from - 1);
    if let (Some(s), Some(path)) = (snapshot_seq, snap_path) {
        let journal_last = scan.last_seq.unwrap_or(0);
        if journal_last < s {
            return Err(RecoveryError::JournalBehindSnapshot {
                snapshot: path,
                snapshot_seq: s,
                journal_last,
            });
        }
    }
    journal::cut_torn_tail(storage, dir, &scan)?;
    let state_hash = engine.state_hash();
    Ok(Recovered {
        engine,
        snapshot_seq,
        last_seq,
        replayed,
        scan,
        skipped_snapshots: skipped,
        moved_aside,
        state_hash,
    })
}

/// Repair on request (`--repair`, `bourse journal repair`): moves the
/// journal's damage and everything after it aside (`journal::repair_journal`),
/// then, if anything moved, every snapshot now ahead of the journal's end
/// too (it covers records the journal no longer holds: the writer would
/// resume below it; kept in `damaged/` like the rest). A snapshot ahead of
/// a journal that was not cut is left alone: recovery then refuses with
/// `JournalBehindSnapshot` for a human to decide. Returns what moved.
pub fn repair_partition<S: Storage>(
    storage: &S,
    dir: &Path,
) -> Result<Vec<MovedAside>, RecoveryError> {
    let mut moved = journal::repair_journal(storage, dir)?;
    if moved.is_empty() {
        return Ok(moved);
    }
    let end = journal::scan(storage, dir, |_, _, _, _| Ok(()))?
        .last_seq
        .unwrap_or(0);
    for (seq, path) in snapshot::list_snapshots(storage, dir)? {
        if seq > end {
            let why = format!(
                "snapshot at seq {seq} is ahead of the repaired journal (ends at seq {end}); moved aside"
            );
            moved.push(journal::move_file_aside(storage, dir, &path, &why)?);
        }
    }
    Ok(moved)
}

/// What `no_restore` answers for every snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this build cannot restore engine snapshots")]
pub struct CannotRestore;

/// A `restore` for `recover` while the engine cannot restore snapshots: every
/// snapshot is reported as skipped and the journal is replayed from seq 1.
pub fn no_restore(_cfg: EngineConfig, _body: &[u8]) -> Result<Engine, CannotRestore> {
    Err(CannotRestore)
}
