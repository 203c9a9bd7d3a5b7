//! `DiskHistory`: the engine's `TransferHistory` over the run files of one
//! partition's `history/` directory.
//!
//! Kept in memory per run, and nothing else: the header, the record fences
//! (16 bytes per record block), the account fences (24 bytes per account
//! block) and the filter (~9 bits per distinct id). Per history transfer
//! that is about 1.1 (filter) + 0.7 (fences: 16 B / 23 records of 176 B) +
//! 0.4 (account fences: 24 B / 113 entries, two entries a transfer) ≈ 2.2
//! bytes, the one memory cost that grows with history (≈ 22 MB at 10M
//! transfers); `DiskHistory::memory_bytes` reports it. The partition-wide
//! id filter (`filter.rs`, fixed size, attached by `attach_filter`) is not
//! counted there: it is sized by config, not by history.
//!
//! What is checked when: `open` checks every run's header (checksum, layout,
//! name = run number, runs 1..=N with no gap, each run starting where the
//! previous ended) and the three in-memory sections' checksums; every
//! lookup verifies the checksum of each block it reads (seeded with the run,
//! section and block number) and the record it decodes; the writer reads
//! every run back whole (every block, order, content checksum) before it
//! asks for the install, off the engine thread, so `has_run` (on the engine
//! thread, at each install) only opens the run's header and in-memory
//! sections (a full read measured ~57 ms for a 262,144-record run: too long
//! a stall for the matching thread); `verify` (`journal verify`) reads
//! everything again. Any failure is a typed error naming the file and the
//! check, never a wrong answer.

use super::filter::IdFilter;
use super::format::*;
use crate::{Storage, StorageFile};
use engine::history::{
    decode_record, AccountFilter, HistoryFault, RangeBy, TransferHistory, TransferRecord,
    TransferState, RECORD_LEN,
};
use engine::types::TransferId;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use xorf::{BinaryFuse8Ref, Filter, FilterRef};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// What failed in one run file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RunFault {
    /// The header does not check out.
    #[error("header: {0}")]
    Header(#[from] HeaderFault),
    /// Shorter than the header says.
    #[error("file is {found} bytes, header says {expected}")]
    Length {
        /// From the header.
        expected: u64,
        /// On disk.
        found: u64,
    },
    /// The name's run number differs from the header's.
    #[error("named for run {name_run}, holds run {run}")]
    NameMismatch {
        /// From the name.
        name_run: u64,
        /// From the header.
        run: u64,
    },
    /// A section kept in memory does not match its checksum.
    #[error("{0} section checksum mismatch")]
    Section(&'static str),
    /// A block does not match its trailer.
    #[error("{} block {block} checksum mismatch", section.name())]
    Block {
        /// Which section.
        section: Section,
        /// Block number within it.
        block: u64,
    },
    /// A record does not decode, is out of order, or contradicts the index.
    #[error("record {pos}: {what}")]
    Record {
        /// Position in the run.
        pos: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// The content checksum differs from the header's.
    #[error("content checksum {found:032x}, header says {expected:032x}")]
    Content {
        /// From the header.
        expected: u128,
        /// Over the records read.
        found: u128,
    },
    /// The run is not the one asked for.
    #[error("holds checksum {found:032x}, expected {expected:032x}")]
    Mismatch {
        /// Asked for.
        expected: u128,
        /// In the file.
        found: u128,
    },
    /// A read failed.
    #[error("read failed: {0}")]
    Io(String),
}

/// Errors opening, repairing or writing a history directory.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// An I/O call failed.
    #[error("history I/O error: {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A run file does not verify.
    #[error("history run {} unusable: {fault}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The failed check.
        fault: RunFault,
    },
    /// A run is missing between others (or before the first).
    #[error("history run {} missing (runs must be 1, 2, 3, … with no gap)", path.display())]
    Missing {
        /// The file that should exist.
        path: PathBuf,
    },
    /// A run does not start where the previous one ended.
    #[error("history run {} covers seqs after {after_seq}, but the previous run ends at {prev_through}", path.display())]
    Discontinuous {
        /// The file.
        path: PathBuf,
        /// Its after_seq.
        after_seq: u64,
        /// The previous run's through_seq.
        prev_through: u64,
    },
    /// Two merged files hold some runs in common, neither holding the other.
    #[error("history files {} and {} overlap (neither holds the other's runs)", path.display(), other.display())]
    Overlap {
        /// One file.
        path: PathBuf,
        /// The other.
        other: PathBuf,
    },
    /// Records supplied for a repair do not make the run expected.
    #[error("cannot repair history run {}: the supplied records give checksum {found:032x}, expected {expected:032x}", path.display())]
    RepairMismatch {
        /// The file.
        path: PathBuf,
        /// Expected content checksum.
        expected: u128,
        /// What the supplied records give.
        found: u128,
    },
}

/// One run file as kept in memory.
#[derive(Debug)]
pub(crate) struct Run<F> {
    pub(crate) path: PathBuf,
    pub(crate) header: Header,
    file: F,
    fences: Vec<u128>,
    account_fences: Vec<(u128, u64)>,
    filter_descriptor: [u8; FILTER_DESCRIPTOR_LEN],
    fingerprints: Vec<u8>,
    /// Runs merged into this file (empty for a single run).
    members: Vec<Member>,
}

fn read_exact<F: StorageFile>(f: &F, span_off: u64, len: u64) -> Result<Vec<u8>, RunFault> {
    let mut b = vec![0u8; len as usize];
    f.read_at(&mut b, span_off)
        .map_err(|e| RunFault::Io(e.to_string()))?;
    Ok(b)
}

impl<F: StorageFile> Run<F> {
    /// Opens one run: header, name, length and the in-memory sections.
    pub(crate) fn open<S: Storage<File = F>>(storage: &S, path: &Path) -> Result<Self, RunFault> {
        let file = storage
            .open_read(path)
            .map_err(|e| RunFault::Io(e.to_string()))?;
        let len = file.len().map_err(|e| RunFault::Io(e.to_string()))?;
        if len < HEADER_LEN as u64 {
            return Err(RunFault::Length {
                expected: HEADER_LEN as u64,
                found: len,
            });
        }
        let raw = read_exact(&file, 0, HEADER_LEN as u64)?;
        let header = Header::decode(raw.as_slice().try_into().expect("header length"))?;
        if len != header.file_len {
            return Err(RunFault::Length {
                expected: header.file_len,
                found: len,
            });
        }
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_file_name);
        if let Some((first, last)) = named.filter(|&n| n != header.key()) {
            return Err(RunFault::NameMismatch {
                name_run: if last != header.run { last } else { first },
                run: if last != header.run {
                    header.run
                } else {
                    header.first_run
                },
            });
        }
        let section = |span: Span, sum: u128, what: &'static str| {
            let b = read_exact(&file, span.offset, span.len)?;
            if xxh3_128(&b) == sum {
                Ok(b)
            } else {
                Err(RunFault::Section(what))
            }
        };
        let fences = section(header.fence_span, header.fence_checksum, "fence")?
            .chunks(FENCE_LEN)
            .map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes")))
            .collect();
        let account_fences = section(
            header.account_fence_span,
            header.account_fence_checksum,
            "account fence",
        )?
        .chunks(ACCOUNT_FENCE_LEN)
        .map(|c| {
            let a = u128::from_le_bytes(c[..16].try_into().expect("16 bytes"));
            (a, u64::from_le_bytes(c[16..].try_into().expect("8 bytes")))
        })
        .collect();
        let filter = section(header.filter_span, header.filter_checksum, "filter")?;
        let no_filter = filter.is_empty() && header.records == 0;
        if !no_filter && filter.len() <= FILTER_DESCRIPTOR_LEN {
            return Err(RunFault::Section("filter"));
        }
        let mut filter_descriptor = [0u8; FILTER_DESCRIPTOR_LEN];
        if !no_filter {
            filter_descriptor.copy_from_slice(&filter[..FILTER_DESCRIPTOR_LEN]);
        }
        let members: Vec<Member> = section(header.member_span, header.member_checksum, "member")?
            .chunks(MEMBER_LEN)
            .map(Member::decode)
            .collect();
        // Members are runs first..=run in order, the last ending where the
        // file does (the header's layout already fixed their count).
        let listed = members
            .iter()
            .enumerate()
            .all(|(i, m)| m.run == header.first_run + i as u64);
        if !listed
            || members
                .last()
                .is_some_and(|m| m.through_seq != header.through_seq)
        {
            return Err(RunFault::Section("member"));
        }
        Ok(Run {
            members,
            path: path.to_path_buf(),
            header,
            file,
            fences,
            account_fences,
            filter_descriptor,
            fingerprints: filter.get(FILTER_DESCRIPTOR_LEN..).unwrap_or(&[]).to_vec(),
        })
    }

    /// Reads and verifies one block.
    fn block(&self, section: Section, block: u64) -> Result<Vec<u8>, RunFault> {
        let mut b = vec![0u8; BLOCK_LEN];
        self.block_into(section, block, &mut b)?;
        Ok(b)
    }

    /// Reads and verifies one block into `buf` (`BLOCK_LEN` bytes).
    fn block_into(&self, section: Section, block: u64, buf: &mut [u8]) -> Result<(), RunFault> {
        let span = match section {
            Section::Records => self.header.record_span,
            Section::Accounts => self.header.account_span,
        };
        self.file
            .read_at(buf, span.offset + block * BLOCK_LEN as u64)
            .map_err(|e| RunFault::Io(e.to_string()))?;
        if block_ok(buf, self.header.key(), section, block) {
            Ok(())
        } else {
            Err(RunFault::Block { section, block })
        }
    }

    /// The first and last run this file holds.
    pub(crate) fn first(&self) -> u64 {
        self.header.first_run
    }

    /// The content checksum run `run` was installed with, if this file
    /// holds it (its own, or its member entry's for a merged file).
    pub(crate) fn checksum_of(&self, run: u64) -> Option<u128> {
        if !(self.first()..=self.header.run).contains(&run) {
            return None;
        }
        match self.members.get((run - self.first()) as usize) {
            Some(m) => Some(m.checksum),
            None => Some(self.header.checksum),
        }
    }

    /// The runs this file holds as members: itself for a single run.
    pub(crate) fn member_list(&self) -> Vec<Member> {
        if self.members.is_empty() {
            vec![Member {
                run: self.header.run,
                through_seq: self.header.through_seq,
                checksum: self.header.checksum,
            }]
        } else {
            self.members.clone()
        }
    }

    /// Whether the filter admits `id` (no filter: the run is empty).
    fn may_hold(&self, id: u128) -> bool {
        if self.header.records == 0 || id < self.header.min_id || id > self.header.max_id {
            return false;
        }
        BinaryFuse8Ref::from_dma(&self.filter_descriptor, &self.fingerprints)
            .contains(&filter_key(id))
    }

    /// Decodes record `pos` from its (verified) block bytes.
    fn record_in(&self, block: &[u8], pos: u64) -> Result<TransferRecord, RunFault> {
        let i = (pos % RECORDS_PER_BLOCK as u64) as usize * RECORD_LEN;
        let raw: &[u8; RECORD_LEN] = block[i..i + RECORD_LEN].try_into().expect("record");
        decode_record(raw).map_err(|_| RunFault::Record {
            pos,
            what: "does not decode",
        })
    }

    /// The newest record of `id` in this run.
    pub(crate) fn get(&self, id: u128) -> Result<Option<TransferRecord>, RunFault> {
        if !self.may_hold(id) {
            return Ok(None);
        }
        // The last block whose first id ≤ id holds the id's newest record,
        // if the run has it at all (records sort by (id, change_seq)).
        let Some(b) = self.fences.partition_point(|&f| f <= id).checked_sub(1) else {
            return Ok(None);
        };
        let mut block = [0u8; BLOCK_LEN];
        self.block_into(Section::Records, b as u64, &mut block)?;
        let first = b as u64 * RECORDS_PER_BLOCK as u64;
        let n = (self.header.records - first).min(RECORDS_PER_BLOCK as u64) as usize;
        // Binary search for the last record with id ≤ `id` (records sort by
        // (id, change_seq)): the id's newest, if it is `id` at all.
        let id_at = |k: usize| record_id(&block[k * RECORD_LEN..]);
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if id_at(mid) <= id {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        match lo.checked_sub(1) {
            Some(k) if id_at(k) == id => self.record_in(&block, first + k as u64).map(Some),
            _ => Ok(None),
        }
    }

    /// Reads record `pos` (verifying its block).
    pub(crate) fn record(&self, pos: u64) -> Result<TransferRecord, RunFault> {
        if pos >= self.header.records {
            return Err(RunFault::Record {
                pos,
                what: "account index points past the records",
            });
        }
        let block = self.block(Section::Records, pos / RECORDS_PER_BLOCK as u64)?;
        self.record_in(&block, pos)
    }

    /// Reads every block, checks order and the content checksum.
    pub(crate) fn verify_all(&self) -> Result<(), RunFault> {
        self.scan(|_| {})
    }

    /// As [`Run::verify_all`], handing every record to `each` in file
    /// order; an error stops the scan (what `each` saw is not vouched for).
    pub(crate) fn scan(&self, mut each: impl FnMut(TransferRecord)) -> Result<(), RunFault> {
        let mut h = Xxh3::new();
        let mut prev: Option<(u128, u64)> = None;
        for b in 0..self.header.record_blocks() {
            let block = self.block(Section::Records, b)?;
            let first = b * RECORDS_PER_BLOCK as u64;
            let n = (self.header.records - first).min(RECORDS_PER_BLOCK as u64);
            if self.fences.get(b as usize) != Some(&self.record_in(&block, first)?.spec.id.0) {
                return Err(RunFault::Section("fence"));
            }
            for pos in first..first + n {
                let r = self.record_in(&block, pos)?;
                let key = (r.spec.id.0, r.change_seq.0);
                let in_range = r.change_seq.0 > self.header.after_seq
                    && r.change_seq.0 <= self.header.through_seq;
                if prev.is_some_and(|p| p >= key) || !in_range {
                    return Err(RunFault::Record {
                        pos,
                        what: "out of order or outside the run's seqs",
                    });
                }
                prev = Some(key);
                let i = (pos - first) as usize * RECORD_LEN;
                h.update(&block[i..i + RECORD_LEN]);
                each(r);
            }
        }
        for b in 0..self.header.account_blocks() {
            self.block(Section::Accounts, b)?;
        }
        let found = h.digest128();
        if found != self.header.checksum {
            return Err(RunFault::Content {
                expected: self.header.checksum,
                found,
            });
        }
        Ok(())
    }

    /// The index of the first account entry ≥ (account, seq).
    fn entry_lower_bound(&self, key: (u128, u64)) -> Result<u64, RunFault> {
        let b = self.account_fences.partition_point(|&f| f < key);
        // Entries ≥ key start in block b-1 (whose first entry is < key) or at b.
        let Some(b) = b.checked_sub(1) else {
            return Ok(0);
        };
        let block = self.block(Section::Accounts, b as u64)?;
        let first = b as u64 * ENTRIES_PER_BLOCK as u64;
        let n = (self.header.entries - first).min(ENTRIES_PER_BLOCK as u64);
        for i in 0..n {
            let e = AccountEntry::decode(&block[i as usize * ENTRY_LEN..]);
            if (e.account, e.ledger_seq) >= key {
                return Ok(first + i);
            }
        }
        Ok(first + n)
    }
}

/// Walks one run's account entries for one account, in either order,
/// reading one verified block at a time.
struct Cursor {
    run: usize,
    /// Next entry index (ascending) or one past it (descending).
    next: u64,
    /// Bounds of this account's entries in range: [lo, hi).
    lo: u64,
    hi: u64,
    newest_first: bool,
    block: Option<(u64, Vec<u8>)>,
}

impl Cursor {
    fn peek<F: StorageFile>(&mut self, run: &Run<F>) -> Result<Option<AccountEntry>, RunFault> {
        let idx = if self.newest_first {
            if self.next <= self.lo {
                return Ok(None);
            }
            self.next - 1
        } else {
            if self.next >= self.hi {
                return Ok(None);
            }
            self.next
        };
        let b = idx / ENTRIES_PER_BLOCK as u64;
        if self.block.as_ref().is_none_or(|(n, _)| *n != b) {
            self.block = Some((b, run.block(Section::Accounts, b)?));
        }
        let (_, bytes) = self.block.as_ref().expect("block just read");
        let i = (idx % ENTRIES_PER_BLOCK as u64) as usize * ENTRY_LEN;
        Ok(Some(AccountEntry::decode(&bytes[i..])))
    }

    fn advance(&mut self) {
        if self.newest_first {
            self.next -= 1;
        } else {
            self.next += 1;
        }
    }
}

/// What the engine's store ([`DiskHistory`]) and the compaction thread
/// share: the last run the store agreed to install (so compaction touches
/// installed runs only) and merged files handed over, fully opened, for the
/// store to swap in (so the engine thread never reads a filter from disk).
#[derive(Debug)]
pub struct HistoryLink<F> {
    /// The highest run `has_run` answered yes for.
    installed_run: AtomicU64,
    /// Set while `merged` holds files to adopt.
    ready: AtomicBool,
    /// Files to swap in: merged here (exactly their members' files), or
    /// adopted from a peer (every file from their first run on).
    merged: Mutex<Vec<(Run<F>, Swap)>>,
}

/// How a handed-over file takes its place in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Swap {
    /// A merge of files the store holds: replaces exactly them.
    Merged,
    /// A peer's file: replaces every file from its first run on (runs
    /// below the highest installed one are its members, under the same
    /// checksums; later ones were never installed here).
    Adopted,
}

impl<F> HistoryLink<F> {
    fn new() -> Self {
        Self {
            installed_run: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            merged: Mutex::new(Vec::new()),
        }
    }

    /// The highest run the store agreed to install (0: none since open).
    pub fn installed_run(&self) -> u64 {
        self.installed_run.load(Ordering::Acquire)
    }

    /// Hands a merged file (opened and verified) to the store.
    pub(crate) fn offer(&self, run: Run<F>) {
        self.hand_over(run, Swap::Merged);
    }

    /// Hands a file adopted from a peer (opened and verified) to the store.
    pub(crate) fn offer_fetched(&self, run: Run<F>) {
        self.hand_over(run, Swap::Adopted);
    }

    fn hand_over(&self, run: Run<F>, how: Swap) {
        self.merged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((run, how));
        self.ready.store(true, Ordering::Release);
    }
}

/// The transfer history of one partition on disk (see the module doc).
#[derive(Debug)]
pub struct DiskHistory<S: Storage> {
    storage: S,
    dir: PathBuf,
    /// Files by the runs they hold, oldest first, contiguous from run 1: a
    /// single run or a merged file of runs `first..=last`. A `RefCell`
    /// because `has_run` loads runs written after open and adoption swaps
    /// in merged files; the engine's trait takes `&self` and one thread owns
    /// the store.
    runs: RefCell<Vec<Run<S::File>>>,
    link: Arc<HistoryLink<S::File>>,
    /// Every id on disk (and of runs about to be installed): a "no" skips
    /// the per-file probes. Absent: every lookup probes every file.
    filter: Option<Arc<IdFilter>>,
}

impl<S: Storage> DiskHistory<S> {
    /// Opens `dir` (created if missing): removes `.tmp` leftovers and files
    /// a merged file replaced (a crash before their removal), checks every
    /// file's header and in-memory sections, and refuses a gap, a
    /// discontinuity, overlapping merged files or a damaged file naming it.
    pub fn open(storage: S, dir: &Path) -> Result<Self, HistoryError> {
        let runs = open_runs(&storage, dir, true)?;
        Ok(Self {
            storage,
            dir: dir.to_path_buf(),
            runs: RefCell::new(runs),
            link: Arc::new(HistoryLink::new()),
            filter: None,
        })
    }

    /// As [`DiskHistory::open`] but writing nothing (`journal verify`):
    /// `.tmp` leftovers and replaced files are ignored, not removed.
    pub fn open_read_only(storage: S, dir: &Path) -> Result<Self, HistoryError> {
        let runs = open_runs(&storage, dir, false)?;
        Ok(Self {
            storage,
            dir: dir.to_path_buf(),
            runs: RefCell::new(runs),
            link: Arc::new(HistoryLink::new()),
            filter: None,
        })
    }

    /// Attaches the partition's id filter after adding every id of every
    /// open file to it (each file read whole and verified as `verify`
    /// does: an O(history) read, done once at start before the engine
    /// answers). Returns the records read. The writer adds each later run's
    /// ids before it asks for the install (`RunWriter::with_filter`).
    pub fn attach_filter(&mut self, filter: Arc<IdFilter>) -> Result<u64, HistoryError> {
        let mut records = 0u64;
        for run in self.runs.borrow().iter() {
            run.scan(|r| {
                filter.insert(r.spec.id.0);
                records += 1;
            })
            .map_err(|fault| HistoryError::Corrupt {
                path: run.path.clone(),
                fault,
            })?;
        }
        self.filter = Some(filter);
        Ok(records)
    }

    /// Attaches a filter that already holds every id of every open file
    /// (the one filled at start, to which each later run's ids were added
    /// before its install could be applied): nothing is read.
    pub fn attach_filled_filter(&mut self, filter: Arc<IdFilter>) {
        self.filter = Some(filter);
    }

    /// The link a compaction thread uses to learn installs and hand over
    /// merged files.
    pub fn link(&self) -> Arc<HistoryLink<S::File>> {
        self.link.clone()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs on disk (installed or about to be), merged or not.
    pub fn runs(&self) -> u64 {
        self.runs.borrow().last().map_or(0, |r| r.header.run)
    }

    /// Files open (what a lookup of a new id probes, at most).
    pub fn files(&self) -> u64 {
        self.adopt();
        self.runs.borrow().len() as u64
    }

    /// Checks that the engine's last installed run (after recovery) is on
    /// disk under its checksum (its header, or its merged file's member
    /// entry; `open` checked the runs are contiguous): a snapshot taken
    /// after an install whose run file was then lost would otherwise answer
    /// "no such transfer" for its ids.
    pub fn check_installed(&self, run: u64, checksum: u128) -> Result<(), HistoryError> {
        let path = self.dir.join(run_name(run));
        match self.checksum_of(run) {
            None => Err(HistoryError::Missing { path }),
            Some(c) if c != checksum => Err(HistoryError::Corrupt {
                path,
                fault: RunFault::Mismatch {
                    expected: checksum,
                    found: c,
                },
            }),
            Some(_) => Ok(()),
        }
    }

    /// The checksum run `run` was installed with, if open.
    fn checksum_of(&self, run: u64) -> Option<u128> {
        let runs = self.runs.borrow();
        let i = runs.partition_point(|r| r.header.run < run);
        runs.get(i)?.checksum_of(run)
    }

    /// The header of the file holding run `run`, if open.
    pub fn header(&self, run: u64) -> Option<Header> {
        let runs = self.runs.borrow();
        let i = runs.partition_point(|r| r.header.run < run);
        runs.get(i).filter(|r| r.first() <= run).map(|r| r.header)
    }

    /// Bytes of run files on disk.
    pub fn bytes(&self) -> u64 {
        self.runs.borrow().iter().map(|r| r.header.file_len).sum()
    }

    /// Bytes of memory the runs' fences and filters take.
    pub fn memory_bytes(&self) -> u64 {
        self.runs
            .borrow()
            .iter()
            .map(|r| {
                (r.fences.len() * FENCE_LEN
                    + r.account_fences.len() * ACCOUNT_FENCE_LEN
                    + r.fingerprints.len()
                    + r.members.len() * MEMBER_LEN
                    + HEADER_LEN) as u64
            })
            .sum()
    }

    /// Reads every file whole and checks every block and content checksum.
    pub fn verify(&self) -> Result<(), HistoryError> {
        for run in self.runs.borrow_mut().iter_mut() {
            run.verify_all().map_err(|fault| HistoryError::Corrupt {
                path: run.path.clone(),
                fault,
            })?;
        }
        Ok(())
    }

    /// Swaps in merged files the compaction thread handed over (one
    /// relaxed-cost atomic load when there are none; never waits for the
    /// lock). Each replaces exactly the files of its runs in one step, so a
    /// lookup sees either the members or the merged file, never neither.
    fn adopt(&self) {
        if !self.link.ready.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut slot) = self.link.merged.try_lock() else {
            return;
        };
        let merged = std::mem::take(&mut *slot);
        self.link.ready.store(false, Ordering::Release);
        drop(slot);
        let mut runs = self.runs.borrow_mut();
        let installed = self.link.installed_run();
        for (m, how) in merged {
            match how {
                Swap::Merged => swap_in(&mut runs, m),
                Swap::Adopted => swap_adopted(&mut runs, m, installed),
            }
        }
    }

    /// Loads run `n` (the next one, or a rewritten one): header and
    /// in-memory sections (the writer verified it whole before installing).
    /// A run inside a merged file is installed for good and never reloaded.
    fn load(&self, n: u64) -> Result<(), RunFault> {
        let path = self.dir.join(run_name(n));
        let i = {
            let runs = self.runs.borrow();
            let i = runs.partition_point(|r| r.header.run < n);
            if runs.get(i).is_some_and(|r| r.first() < r.header.run) {
                return Ok(());
            }
            i
        };
        let run = Run::open(&self.storage, &path)?;
        let mut runs = self.runs.borrow_mut();
        let same = runs.get(i).map(|r| r.header.checksum) == Some(run.header.checksum);
        if !same {
            // A different run under this number: the one open was written
            // but never installed, and so was every later one.
            runs.truncate(i);
        }
        if i < runs.len() {
            runs[i] = run;
        } else if runs.last().map_or(0, |r| r.header.run) + 1 == n {
            runs.push(run);
        }
        Ok(())
    }
}

/// Replaces the files holding exactly runs `m.first()..=m.header.run` by
/// `m`. Compaction merges only runs this store installed, so they are all
/// open here; a member whose checksum differs is a bug (panic). A range
/// not open as such (already merged here) is left as it is.
fn swap_in<F: StorageFile>(runs: &mut Vec<Run<F>>, m: Run<F>) {
    let i = runs.partition_point(|r| r.first() < m.first());
    let j = runs.partition_point(|r| r.header.run <= m.header.run);
    let exact = runs.get(i).is_some_and(|r| r.first() == m.first())
        && j > i
        && runs[j - 1].header.run == m.header.run;
    if !exact {
        return;
    }
    assert_holds(&m, &runs[i..j], u64::MAX);
    runs.splice(i..j, std::iter::once(m));
}

/// Every member run (through `upto`) of `files` is one `m` holds under the
/// same checksum: a file that would take their place holding another is a
/// bug (its writer checked it), so a panic.
fn assert_holds<F: StorageFile>(m: &Run<F>, files: &[Run<F>], upto: u64) {
    for r in files.iter().filter(|r| r.first() <= upto) {
        for member in r.member_list().iter().filter(|x| x.run <= upto) {
            assert_eq!(
                m.checksum_of(member.run),
                Some(member.checksum),
                "history file {} holds run {} under another checksum than the file it replaces",
                m.path.display(),
                member.run
            );
        }
    }
}

/// Puts a file adopted from a peer in place of every file from its first
/// run on. It follows a file boundary and every run it replaces that this
/// store installed is its member under the same checksum: `adopt_file`
/// checked both on disk, where this store's files are, so a difference is
/// a bug (a panic). Later files were never installed here.
fn swap_adopted<F: StorageFile>(runs: &mut Vec<Run<F>>, m: Run<F>, installed: u64) {
    let i = runs.partition_point(|r| r.first() < m.first());
    let after = if i == 0 { 0 } else { runs[i - 1].header.run };
    assert_eq!(
        after + 1,
        m.first(),
        "adopted history file {} does not follow a file boundary of the store",
        m.path.display()
    );
    assert_holds(&m, &runs[i..], installed);
    runs.truncate(i);
    runs.push(m);
}

/// A read failure as the engine's fault, naming the file and the check.
fn fault(path: &Path, f: RunFault) -> HistoryFault {
    HistoryFault {
        what: format!("{}: {f}", path.display()),
    }
}

/// Lists, cleans and opens the files of `dir`, checking continuity.
fn open_runs<S: Storage>(
    storage: &S,
    dir: &Path,
    clean: bool,
) -> Result<Vec<Run<S::File>>, HistoryError> {
    let io = |op: &'static str| {
        let path = dir.to_path_buf();
        move |source| HistoryError::Io { op, path, source }
    };
    if clean {
        storage.create_dir_all(dir).map_err(io("create dir"))?;
    }
    let mut names = Vec::new();
    let mut stale = Vec::new();
    for name in storage.list(dir).map_err(io("list"))? {
        if name.starts_with("run-") && name.ends_with(".tmp") {
            // An unfinished write: never renamed, so never installed.
            stale.push(name);
        } else if let Some(n) = parse_file_name(&name) {
            names.push(n);
        }
    }
    let kept = outermost(dir, names, &mut stale)?;
    if clean {
        for name in &stale {
            let p = dir.join(name);
            storage.remove(&p).map_err(|source| HistoryError::Io {
                op: "remove",
                path: p,
                source,
            })?;
        }
        if !stale.is_empty() {
            storage.sync_dir(dir).map_err(io("fsync dir"))?;
        }
    }
    let mut runs: Vec<Run<S::File>> = Vec::with_capacity(kept.len());
    for (first, last) in kept {
        let want = runs.last().map_or(1, |r| r.header.run + 1);
        if first != want {
            return Err(HistoryError::Missing {
                path: dir.join(run_name(want)),
            });
        }
        let path = dir.join(file_name(first, last));
        let run = Run::open(storage, &path).map_err(|fault| HistoryError::Corrupt {
            path: path.clone(),
            fault,
        })?;
        let prev_through = runs.last().map_or(0, |r| r.header.through_seq);
        if run.header.after_seq != prev_through {
            return Err(HistoryError::Discontinuous {
                path,
                after_seq: run.header.after_seq,
                prev_through,
            });
        }
        runs.push(run);
    }
    Ok(runs)
}

/// The files to open: every (first, last) not inside a merged file that
/// has its final name (so is complete: the files it replaced are leftovers
/// of a crash before their removal, added to `stale`); two merged files
/// that overlap without one holding the other are refused.
pub(crate) fn outermost(
    dir: &Path,
    mut names: Vec<(u64, u64)>,
    stale: &mut Vec<String>,
) -> Result<Vec<(u64, u64)>, HistoryError> {
    // Widest first among equal starts, so a holder precedes what it holds.
    names.sort_unstable_by_key(|&(first, last)| (first, std::cmp::Reverse(last)));
    let mut kept: Vec<(u64, u64)> = Vec::with_capacity(names.len());
    for (first, last) in names {
        match kept.last() {
            Some(&(_, k_last)) if last <= k_last => stale.push(file_name(first, last)),
            Some(&(k_first, k_last)) if first <= k_last => {
                return Err(HistoryError::Overlap {
                    path: dir.join(file_name(first, last)),
                    other: dir.join(file_name(k_first, k_last)),
                })
            }
            _ => kept.push((first, last)),
        }
    }
    Ok(kept)
}

impl<S: Storage> TransferHistory for DiskHistory<S> {
    fn get(&self, id: TransferId) -> Result<Option<TransferRecord>, HistoryFault> {
        self.adopt();
        if self.filter.as_ref().is_some_and(|f| !f.may_contain(id.0)) {
            // Debug builds check the "no": an installed id missing from the
            // filter would be a wrong answer (a duplicate transfer).
            #[cfg(debug_assertions)]
            if let Ok(Some(r)) = self.probe(id) {
                panic!(
                    "history id filter lacks transfer {:#x} stored at change_seq {}",
                    id.0, r.change_seq.0
                );
            }
            return Ok(None);
        }
        self.probe(id)
    }

    fn account(
        &self,
        filter: &AccountFilter,
        each: &mut dyn FnMut(&TransferRecord) -> bool,
    ) -> Result<(), HistoryFault> {
        self.account_entries(filter, each)
    }

    fn has_run(&self, run: u64, checksum: u128) -> Result<bool, HistoryFault> {
        self.has_run_checked(run, checksum)
    }
}

impl<S: Storage> DiskHistory<S> {
    /// Every file newest first: min/max, its own filter, one block read.
    fn probe(&self, id: TransferId) -> Result<Option<TransferRecord>, HistoryFault> {
        for run in self.runs.borrow().iter().rev() {
            if let Some(r) = run.get(id.0).map_err(|f| fault(&run.path, f))? {
                if r.spec.id != id {
                    return Err(fault(
                        &run.path,
                        RunFault::Record {
                            pos: 0,
                            what: "lookup returned another id",
                        },
                    ));
                }
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    fn account_entries(
        &self,
        filter: &AccountFilter,
        each: &mut dyn FnMut(&TransferRecord) -> bool,
    ) -> Result<(), HistoryFault> {
        self.adopt();
        let runs = self.runs.borrow();
        let mut cursors = open_cursors(&runs, filter)?;
        let mut last_seq: Option<u64> = None;
        while let Some((run_i, e)) = next_entry(&runs, &mut cursors, filter)? {
            // The same transfer in several runs: the newest run's state
            // comes first among equal ledger_seqs; skip the older copies.
            if last_seq == Some(e.ledger_seq) {
                continue;
            }
            last_seq = Some(e.ledger_seq);
            let run = &runs[run_i];
            let r = run.record(e.pos as u64).map_err(|f| fault(&run.path, f))?;
            let a = filter.account.0;
            if r.ledger_seq != e.ledger_seq
                || (r.debit_account.0 != a && r.credit_account.0 != a)
                || matches!(r.state, TransferState::Failed(_))
            {
                return Err(fault(
                    &run.path,
                    RunFault::Record {
                        pos: e.pos as u64,
                        what: "contradicts its account index entry",
                    },
                ));
            }
            let in_range = match filter.by {
                RangeBy::LedgerSeq => true,
                RangeBy::Time => (filter.lo..=filter.hi).contains(&r.created.0),
            };
            if in_range && !each(&r) {
                break;
            }
        }
        Ok(())
    }

    fn has_run_checked(&self, run: u64, checksum: u128) -> Result<bool, HistoryFault> {
        if run == 0 {
            return Ok(false);
        }
        self.adopt();
        let yes = match self.checksum_of(run) {
            Some(c) if c == checksum => true,
            None if run > self.runs() + 1 => false,
            _ => {
                let path = self.dir.join(run_name(run));
                match self.load(run) {
                    Ok(()) => {}
                    Err(RunFault::Io(_)) if self.storage.open_read(&path).is_err() => {
                        return Ok(false)
                    }
                    Err(f) => return Err(fault(&path, f)),
                }
                self.checksum_of(run) == Some(checksum)
            }
        };
        if yes {
            self.link.installed_run.fetch_max(run, Ordering::AcqRel);
        }
        Ok(yes)
    }
}

/// One cursor per run positioned at the filter's first entry.
fn open_cursors<F: StorageFile>(
    runs: &[Run<F>],
    filter: &AccountFilter,
) -> Result<Vec<Cursor>, HistoryFault> {
    let a = filter.account.0;
    let (lo_seq, hi_seq) = match filter.by {
        RangeBy::LedgerSeq => (filter.lo, filter.hi),
        RangeBy::Time => (0, u64::MAX),
    };
    let mut out = Vec::with_capacity(runs.len());
    for (i, run) in runs.iter().enumerate() {
        let fault = |f| fault(&run.path, f);
        let lo = run.entry_lower_bound((a, lo_seq)).map_err(fault)?;
        // One past the last entry ≤ (a, hi_seq).
        let end = match (hi_seq.checked_add(1), a.checked_add(1)) {
            (Some(h), _) => Some((a, h)),
            (None, Some(next)) => Some((next, 0)),
            (None, None) => None,
        };
        let hi = match end {
            Some(key) => run.entry_lower_bound(key).map_err(fault)?,
            None => run.header.entries,
        };
        if lo < hi {
            out.push(Cursor {
                run: i,
                next: if filter.newest_first { hi } else { lo },
                lo,
                hi,
                newest_first: filter.newest_first,
                block: None,
            });
        }
    }
    Ok(out)
}

/// The next entry across runs in the filter's order; among equal
/// ledger_seqs the newest run first.
fn next_entry<F: StorageFile>(
    runs: &[Run<F>],
    cursors: &mut [Cursor],
    filter: &AccountFilter,
) -> Result<Option<(usize, AccountEntry)>, HistoryFault> {
    let mut best: Option<(usize, AccountEntry)> = None;
    for (ci, c) in cursors.iter_mut().enumerate() {
        let run = &runs[c.run];
        let Some(e) = c.peek(run).map_err(|f| fault(&run.path, f))? else {
            continue;
        };
        let better = match best {
            None => true,
            Some((_, b)) if e.ledger_seq == b.ledger_seq => true, // later cursor = newer run
            Some((_, b)) => (e.ledger_seq < b.ledger_seq) != filter.newest_first,
        };
        if better {
            best = Some((ci, e));
        }
    }
    Ok(best.map(|(ci, e)| {
        cursors[ci].advance();
        (cursors[ci].run, e)
    }))
}
