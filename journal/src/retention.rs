//! Journal retention: bounded disk. Segments whose every record is at or
//! before the oldest kept snapshot are no longer needed by recovery; per
//! `journal.retain` they are kept, moved into `<partition>/archive/`, or
//! deleted, and an archive larger than `journal.archive_bytes_max` loses
//! its oldest segments.
//!
//! A pass (driven by the journal thread's background slices, never the
//! engine thread; one step per call, see `Retention::step`):
//! 1. target B = the newest segment boundary with every record before it at
//!    or before the oldest kept snapshot's seq, and not past the segment
//!    `journal.head` names, the one being written or the one holding the
//!    last record;
//! 2. if B is past the current base: `journal.base` is made to say (B, the
//!    first kept block's `prev_checksum`), durably, first;
//! 3. then each segment before the base leaves, oldest first: renamed into
//!    `archive/`, the archive directory synced, then the partition
//!    directory (so a crash leaves it in both places, never in neither), or
//!    removed and the directory synced;
//! 4. then the archive is pruned to its bound, oldest first.
//!
//! Invariants: no segment leaves before a durable base covers it; no
//! segment holding a record after the oldest kept snapshot, and never the
//! head's, the current or the last-record segment, leaves; a crash at any
//! point leaves a directory that `reader::scan` accepts (segments before
//! the base are skipped and finished by the next pass; a segment in both
//! places is removed from the partition directory once its bytes are seen
//! equal to the archived copy). A failed step stops retention for the
//! process (logged; nothing is retried, like the journal's fsync) — the
//! journal keeps working, it only stops shrinking.
//!
//! Reading: `scan_archive` walks the archived range (the archive, plus
//! segments before the base a crash left in place) and checks that it
//! chains into the base; `ArchiveReport` says what range it covered.

use super::base::{read_base, write_base, Base};
use super::format::{self, BlockHeader, HEADER_LEN};
use super::head::read_head;
use super::reader::{read_all, walk, Chain, ScanReport};
use super::{io_err, list_segments, BlockFault, JournalError, Storage, StorageFile};
use crate::record::InputRecord;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The folder (in a partition directory) archived segments are moved to.
pub const ARCHIVE_DIR: &str = "archive";

/// Default archive bound: 16 GiB. At the ~1.9 MB/s a partition journals
/// under 10,000 commands/s that is over two hours of full load (a trading
/// day or more at usual rates) — enough to replay or audit recent history
/// from the box itself — while a forgotten archive can never fill the disk.
/// Ship `archive/` elsewhere and set 0 to keep everything.
pub const ARCHIVE_BYTES_MAX_DEFAULT: u64 = 16 << 30;

/// What happens to segments wholly before the oldest kept snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainPolicy {
    /// Never removed (the journal grows without bound).
    Keep,
    /// Moved into `<partition>/archive/` (the default).
    #[default]
    Archive,
    /// Deleted.
    Delete,
}

impl RetainPolicy {
    /// Stable lower-case name (the configuration value).
    pub fn name(self) -> &'static str {
        match self {
            RetainPolicy::Keep => "keep",
            RetainPolicy::Archive => "archive",
            RetainPolicy::Delete => "delete",
        }
    }
}

impl fmt::Display for RetainPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown policy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown retention policy {0:?} (expected keep, archive or delete)")]
pub struct BadPolicy(pub String);

impl FromStr for RetainPolicy {
    type Err = BadPolicy;
    fn from_str(s: &str) -> Result<Self, BadPolicy> {
        match s {
            "keep" => Ok(RetainPolicy::Keep),
            "archive" => Ok(RetainPolicy::Archive),
            "delete" => Ok(RetainPolicy::Delete),
            other => Err(BadPolicy(other.to_string())),
        }
    }
}

/// Retention settings (`[journal]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// What happens to retired segments.
    pub policy: RetainPolicy,
    /// `archive`: the archive's bound in bytes (0: unbounded).
    pub archive_bytes_max: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            policy: RetainPolicy::Archive,
            archive_bytes_max: ARCHIVE_BYTES_MAX_DEFAULT,
        }
    }
}

/// What one `Retention::step` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing left to do.
    Done,
    /// `journal.base` now says this.
    Anchored(Base),
    /// A segment moved into the archive (`to`) or was deleted (`to: None`).
    Retired {
        /// The segment.
        from: PathBuf,
        /// Where it went.
        to: Option<PathBuf>,
    },
    /// Archived segments deleted to keep the archive in its bound.
    Pruned(Vec<PathBuf>),
}

/// The segments of `dir`, none when the folder does not exist.
fn list_segments_or_none<S: Storage>(
    storage: &S,
    dir: &Path,
) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    match storage.list(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("list", dir)(e)),
        Ok(_) => list_segments(storage, dir),
    }
}

fn file_len<S: Storage>(storage: &S, path: &Path) -> Result<u64, JournalError> {
    storage
        .open_read(path)
        .and_then(|f| f.len())
        .map_err(io_err("stat", path))
}

/// The header of the first block of the segment at `path`, which must start
/// at `first_seq`.
fn first_header<S: Storage>(
    storage: &S,
    path: &Path,
    first_seq: u64,
) -> Result<BlockHeader, JournalError> {
    let f = storage.open_read(path).map_err(io_err("open", path))?;
    let mut h = [0u8; HEADER_LEN];
    f.read_at(&mut h, 0).map_err(io_err("read", path))?;
    let corrupt = |what| JournalError::Corrupt {
        segment: path.to_path_buf(),
        offset: 0,
        what,
        last_good_seq: first_seq.saturating_sub(1),
    };
    let header = format::parse_header(&h).map_err(corrupt)?;
    if header.first_seq != first_seq {
        return Err(corrupt(BlockFault::NameMismatch {
            name_seq: first_seq,
            first_seq: header.first_seq,
        }));
    }
    Ok(header)
}

/// The base a pass should reach: the newest segment boundary B with B - 1
/// ≤ `through` (the oldest kept snapshot's seq) and B ≤ `protect` (the
/// first seq of the oldest segment that must stay). `None`: nothing
/// beyond the first segment qualifies.
pub fn target_base(segments: &[(u64, PathBuf)], through: u64, protect: u64) -> Option<u64> {
    segments
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| *s <= through.saturating_add(1) && *s <= protect)
        .max()
        .filter(|s| segments.first().is_some_and(|(f, _)| s > f))
}

/// Moves one segment out of `dir` per `policy` (see the module doc).
fn retire<S: Storage>(
    storage: &S,
    dir: &Path,
    policy: RetainPolicy,
    seg: &Path,
) -> Result<Option<PathBuf>, JournalError> {
    let name = seg
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    if policy != RetainPolicy::Archive {
        storage.remove(seg).map_err(io_err("remove", seg))?;
        storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
        return Ok(None);
    }
    let adir = dir.join(ARCHIVE_DIR);
    storage
        .create_dir_all(&adir)
        .map_err(io_err("create dir", &adir))?;
    let to = adir.join(&name);
    let archived = list_segments_or_none(storage, &adir)?;
    if archived.iter().any(|(_, p)| *p == to) {
        // A crash between the two directory syncs left it in both places.
        if read_all(storage, seg)? != read_all(storage, &to)? {
            return Err(JournalError::ArchiveConflict {
                segment: seg.to_path_buf(),
                archived: to,
            });
        }
        storage.remove(seg).map_err(io_err("remove", seg))?;
    } else {
        storage.rename(seg, &to).map_err(io_err("rename", seg))?;
        // The new name is durable before the old one goes.
        storage
            .sync_dir(&adir)
            .map_err(io_err("fsync dir", &adir))?;
    }
    storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    Ok(Some(to))
}

/// Deletes the oldest archived segments of `dir` until the archive holds at
/// most `bytes_max` bytes (0: unbounded). Returns what it deleted.
pub fn prune_archive<S: Storage>(
    storage: &S,
    dir: &Path,
    bytes_max: u64,
) -> Result<Vec<PathBuf>, JournalError> {
    let adir = dir.join(ARCHIVE_DIR);
    if bytes_max == 0 {
        return Ok(Vec::new());
    }
    let mut sized = Vec::new();
    for (_, p) in list_segments_or_none(storage, &adir)? {
        sized.push((file_len(storage, &p)?, p));
    }
    let mut total: u64 = sized.iter().map(|(n, _)| n).sum();
    let mut gone = Vec::new();
    for (n, p) in sized {
        if total <= bytes_max {
            break;
        }
        storage.remove(&p).map_err(io_err("remove", &p))?;
        total -= n;
        gone.push(p);
    }
    if !gone.is_empty() {
        storage
            .sync_dir(&adir)
            .map_err(io_err("fsync dir", &adir))?;
    }
    Ok(gone)
}

/// The retention state of one partition's journal (owned by its journal
/// thread; see the module doc).
#[derive(Debug)]
pub struct Retention {
    cfg: RetentionConfig,
    dir: PathBuf,
    /// Seq of the oldest kept snapshot (records up to it may leave).
    through: Option<u64>,
    /// A pass has work left (set by `snapshot_kept`, cleared when done).
    pending: bool,
    /// A step failed: retention is off for this process.
    failed: bool,
}

impl Retention {
    /// Retention of the journal in `dir`; idle until `snapshot_kept`.
    pub fn new(dir: &Path, cfg: RetentionConfig) -> Self {
        Retention {
            cfg,
            dir: dir.to_path_buf(),
            through: None,
            pending: false,
            failed: false,
        }
    }

    /// The settings.
    pub fn config(&self) -> RetentionConfig {
        self.cfg
    }

    /// The oldest snapshot kept is now at `seq` (durable): a pass may retire
    /// segments up to it.
    pub fn snapshot_kept(&mut self, seq: u64) {
        if self.cfg.policy != RetainPolicy::Keep && !self.failed {
            self.through = Some(seq);
            self.pending = true;
        }
    }

    /// Whether a pass has work left.
    pub fn pending(&self) -> bool {
        self.pending && !self.failed
    }

    /// One step of the pass (see the module doc). `last_seq`: the journal's
    /// last durable record; `current`: the first seq of the segment being
    /// written. A failure turns retention off and is returned once.
    pub fn step<S: Storage>(
        &mut self,
        storage: &S,
        last_seq: u64,
        current: Option<u64>,
    ) -> Result<Step, JournalError> {
        if !self.pending() {
            return Ok(Step::Done);
        }
        let r = self.step_inner(storage, last_seq, current);
        match &r {
            Ok(Step::Done) => self.pending = false,
            Err(_) => self.failed = true,
            Ok(_) => {}
        }
        r
    }

    fn step_inner<S: Storage>(
        &mut self,
        storage: &S,
        last_seq: u64,
        current: Option<u64>,
    ) -> Result<Step, JournalError> {
        let dir = self.dir.as_path();
        let through = self.through.unwrap_or(0);
        let segments = list_segments(storage, dir)?;
        let base = read_base(storage, dir)?;
        let holding_last = segments
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| *s <= last_seq)
            .max()
            .unwrap_or(0);
        let protect = [Some(holding_last), read_head(storage, dir)?, current]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(0);
        let base_seq = base.map_or(1, |b| b.first_seq);
        if let Some(b) = target_base(&segments, through, protect).filter(|b| *b > base_seq) {
            let (_, path) = segments.iter().find(|(s, _)| *s == b).expect("a segment");
            let h = first_header(storage, path, b)?;
            let base = Base {
                first_seq: b,
                prev_checksum: h.prev_checksum,
            };
            write_base(storage, dir, &base)?;
            tracing::info!(dir = %dir.display(), first_seq = b, policy = %self.cfg.policy, "journal retention: seqs before {b} are covered by the oldest kept snapshot; journal.base written");
            return Ok(Step::Anchored(base));
        }
        if let Some((_, seg)) = segments.iter().find(|(s, _)| *s < base_seq) {
            let to = retire(storage, dir, self.cfg.policy, seg)?;
            return Ok(Step::Retired {
                from: seg.clone(),
                to,
            });
        }
        if self.cfg.policy == RetainPolicy::Archive {
            let gone = prune_archive(storage, dir, self.cfg.archive_bytes_max)?;
            if !gone.is_empty() {
                tracing::info!(dir = %dir.display(), segments = gone.len(), bytes_max = self.cfg.archive_bytes_max, "journal retention: oldest archived segments deleted (journal.archive_bytes_max)");
                return Ok(Step::Pruned(gone));
            }
        }
        Ok(Step::Done)
    }

    /// Runs steps until the pass is done (tests, start-up): the steps taken.
    pub fn run<S: Storage>(
        &mut self,
        storage: &S,
        last_seq: u64,
        current: Option<u64>,
    ) -> Result<Vec<Step>, JournalError> {
        let mut steps = Vec::new();
        loop {
            match self.step(storage, last_seq, current)? {
                Step::Done => return Ok(steps),
                s => steps.push(s),
            }
        }
    }
}

/// What `scan_archive` covered: the seqs retained away (`1..=base - 1`) and
/// which of them are present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    /// The anchor.
    pub base: Base,
    /// The archive folder.
    pub dir: PathBuf,
    /// Segments read (archive, and any a crash left before the base).
    pub segments: usize,
    /// Records read.
    pub records: u64,
    /// First seq present (`None`: nothing present).
    pub first_seq: Option<u64>,
    /// Last seq present.
    pub last_seq: Option<u64>,
}

impl ArchiveReport {
    /// Whether every seq retained away is present and verified.
    pub fn complete(&self) -> bool {
        self.covers(1, self.base.retained_through())
    }

    /// Whether seqs `from..=to` are present (verified).
    pub fn covers(&self, from: u64, to: u64) -> bool {
        match (self.first_seq, self.last_seq) {
            (Some(f), Some(l)) => f <= from.max(1) && to <= l,
            _ => from > to,
        }
    }
}

impl fmt::Display for ArchiveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.base.retained_through();
        let d = self.dir.display();
        match (self.first_seq, self.last_seq) {
            (Some(1), Some(l)) if l == n => write!(f, "seq 1..={n} archived in {d} (verified)"),
            (Some(a), Some(l)) => {
                write!(
                    f,
                    "seq 1..={n} retained away: seq {a}..={l} in {d} (verified)"
                )?;
                if a > 1 {
                    write!(f, ", seq 1..={} not present (deleted)", a - 1)?;
                }
                if l < n {
                    write!(f, ", seq {}..={n} not present (deleted)", l + 1)?;
                }
                Ok(())
            }
            _ => write!(f, "seq 1..={n} archived or deleted (not present in {d})"),
        }
    }
}

/// Walks the archived range of the journal in `dir` (see the module doc),
/// calling `visit` for every block in order, and checks that it chains into
/// `journal.base`. `None` when nothing was ever retained away. Damage, a
/// torn block or a gap inside the archive is an error naming the segment
/// and offset; an archive whose front or end was deleted is not (the
/// report says which seqs are missing).
pub fn scan_archive<S, F>(
    storage: &S,
    dir: &Path,
    mut visit: F,
) -> Result<Option<ArchiveReport>, JournalError>
where
    S: Storage,
    F: FnMut(&Path, u64, &BlockHeader, &[InputRecord]) -> Result<(), BlockFault>,
{
    let Some(base) = read_base(storage, dir)? else {
        return Ok(None);
    };
    let adir = dir.join(ARCHIVE_DIR);
    let mut segs: Vec<(u64, PathBuf)> = list_segments_or_none(storage, &adir)?
        .into_iter()
        .filter(|(s, _)| *s < base.first_seq)
        .collect();
    for (s, p) in list_segments(storage, dir)? {
        if s < base.first_seq && !segs.iter().any(|(a, _)| *a == s) {
            segs.push((s, p));
        }
    }
    segs.sort();
    let mut rep = ScanReport::default();
    if let Some((first, _)) = segs.first() {
        let start = Chain {
            last_seq: first - 1,
            // An archive pruned at the front: its first block's link is gone.
            last_checksum: (*first == 1).then_some(0),
        };
        walk(storage, &segs, start, &mut visit, &mut rep)?;
    }
    if let Some(t) = rep.tail {
        // Archived segments were whole and synced before they left.
        return Err(JournalError::Corrupt {
            segment: t.segment,
            offset: t.offset,
            what: t.what,
            last_good_seq: rep.last_seq.unwrap_or(0),
        });
    }
    if let Some(end) = &rep.end {
        if end.last_seq >= base.first_seq
            || (end.last_seq == base.retained_through() && end.last_checksum != base.prev_checksum)
        {
            return Err(JournalError::Corrupt {
                segment: dir.join(super::base::BASE_NAME),
                offset: 0,
                what: BlockFault::ChainBroken {
                    expected: end.last_checksum,
                    found: base.prev_checksum,
                },
                last_good_seq: end.last_seq.min(base.retained_through()),
            });
        }
    }
    Ok(Some(ArchiveReport {
        base,
        dir: adir,
        segments: segs.len(),
        records: rep.records,
        first_seq: rep.first_seq,
        last_seq: rep.last_seq,
    }))
}

/// Bytes on disk of one partition, by kind (gauges in `metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// The journal: segments, the spare, `journal.head`, `journal.base`.
    pub journal_bytes: u64,
    /// `archive/`.
    pub archive_bytes: u64,
    /// Snapshot files and market-data checkpoints beside them.
    pub snapshot_bytes: u64,
    /// Last seq retained away (`journal.base` - 1; 0: none).
    pub retained_through_seq: u64,
}

/// Measures `dir` (a partition directory; `damaged/` is not counted).
pub fn disk_usage<S: Storage>(storage: &S, dir: &Path) -> Result<DiskUsage, JournalError> {
    let mut u = DiskUsage::default();
    for name in storage.list(dir).map_err(io_err("list", dir))? {
        let n = file_len(storage, &dir.join(&name))?;
        if name.starts_with("snapshot-") || name.starts_with("feed-") {
            u.snapshot_bytes += n;
        } else if name != crate::LOCK_NAME {
            u.journal_bytes += n;
        }
    }
    for (_, p) in list_segments_or_none(storage, &dir.join(ARCHIVE_DIR))? {
        u.archive_bytes += file_len(storage, &p)?;
    }
    u.retained_through_seq = read_base(storage, dir)?.map_or(0, |b| b.retained_through());
    Ok(u)
}
