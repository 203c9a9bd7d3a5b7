//! Segment files: the journal's durability modes and configuration, its
//! typed errors, and segment naming and listing.

use crate::{format, BlockFault, Storage, BASE_NAME, BLOCK_ALIGN};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What "durable" means for a journal; named in every benchmark output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// One write + one fdatasync per commit block (the default).
    #[default]
    Durable,
    /// One write per commit block, no fdatasync: survives a process crash,
    /// not a machine crash.
    Async,
    /// Nothing is written: no journal, no recovery.
    None,
}

impl Durability {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Durable => "durable",
            Durability::Async => "async",
            Durability::None => "none",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Durability {
    type Err = engine::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "durable" => Ok(Durability::Durable),
            "async" => Ok(Durability::Async),
            "none" => Ok(Durability::None),
            other => Err(engine::UnknownName::new(
                "durability mode",
                other,
                "durable, async or none",
            )),
        }
    }
}

/// Journal parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalConfig {
    /// Size each segment is preallocated to (a multiple of 4 KiB).
    pub segment_bytes: u64,
    /// Largest number of records in one commit block.
    pub max_batch: usize,
    /// What an acknowledged commit guarantees.
    pub durability: Durability,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            segment_bytes: 64 << 20,
            max_batch: 16384,
            durability: Durability::Durable,
        }
    }
}

impl JournalConfig {
    /// Checks that a full batch fits in a segment before its final page
    /// (which stays zero: see the module doc).
    pub fn validate(&self) -> Result<(), JournalError> {
        let need = format::block_len(self.max_batch) + BLOCK_ALIGN as u64;
        if self.max_batch == 0
            || !self.segment_bytes.is_multiple_of(BLOCK_ALIGN as u64)
            || need > self.segment_bytes
        {
            return Err(JournalError::Config(format!(
                "segment_bytes {} must be a multiple of {} and hold a full block of max_batch {} records plus a final zero page ({} bytes)",
                self.segment_bytes, BLOCK_ALIGN, self.max_batch, need
            )));
        }
        Ok(())
    }
}

/// Everything that can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An I/O call failed.
    #[error("journal I/O error: {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`write`, `fdatasync`, …).
        op: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A damaged journal: a bad block that is not provably a torn unsynced
    /// write, a block that breaks the chain or the sequence, or a short
    /// segment.
    #[error("journal corrupt: {} at offset {offset}: {what} (records up to seq {last_good_seq} are intact; what follows is damaged or missing; writers refuse to start until it is moved aside with `bourse journal repair` or `--repair`)", segment.display())]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the block in the segment.
        offset: u64,
        /// What failed.
        what: BlockFault,
        /// Seq of the last record before the damage (0: none).
        last_good_seq: u64,
    },
    /// `journal.head` names a segment that is missing, or one the journal
    /// ends before: the newest segment was lost.
    #[error("journal lost its newest segment: {} names {segment} (records from seq {head_seq} on), but {}; records up to seq {last_good_seq} are intact, the ones after are missing: restore the segment, or, accepting the loss, remove {}", head.display(), if *present { format!("the journal ends at seq {last_good_seq}, before it") } else { "that segment is missing".to_string() }, head.display())]
    LostSegment {
        /// The `journal.head` file.
        head: PathBuf,
        /// The segment it names.
        segment: String,
        /// That segment's first seq.
        head_seq: u64,
        /// Whether that segment file exists.
        present: bool,
        /// Seq of the journal's last intact record (0: none).
        last_good_seq: u64,
    },
    /// The journal's first segment is not where it must start: seq 1, or
    /// the seq `journal.base` names. Segments at the front were lost (a
    /// retention pass never removes one without writing the base first).
    #[error("journal in {} lost its front: the first segment is {} (seq {found}), but {}: seqs {expected}..={} are missing; restore those segments (from archive/ or a backup)", dir.display(), first_segment.display(), if *base { format!("{} says the journal starts at seq {expected}", BASE_NAME) } else { format!("there is no {BASE_NAME}, so the journal must start at seq 1 (nothing was ever archived or deleted on purpose)") }, found.saturating_sub(1))]
    LostFront {
        /// The partition directory.
        dir: PathBuf,
        /// The first segment present.
        first_segment: PathBuf,
        /// Its first seq.
        found: u64,
        /// The seq the journal must start at.
        expected: u64,
        /// Whether a `journal.base` set `expected`.
        base: bool,
    },
    /// A segment to archive is already in the archive with other bytes.
    #[error("journal retention: {} is already archived as {} with different bytes; retention stops (move one of them away by hand)", segment.display(), archived.display())]
    ArchiveConflict {
        /// The segment in the journal directory.
        segment: PathBuf,
        /// The archived file of the same name.
        archived: PathBuf,
    },
    /// `journal.base` is unreadable or damaged.
    #[error("journal: {} is damaged: {what} (it anchors a journal whose front was archived; restore it or rebuild it from the first segment's first block)", path.display())]
    BadBase {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: crate::BaseError,
    },
    /// `journal.head` does not name a segment.
    #[error("journal: {} does not name a segment (holds {content:?})", path.display())]
    BadHead {
        /// The file.
        path: PathBuf,
        /// The start of what it holds.
        content: String,
    },
    /// The directory holds no journal segment.
    #[error("{} is not a journal: no journal-*.seg segment files{}", dir.display(), if found.is_empty() { String::new() } else { format!(" (found: {})", found.join(", ")) })]
    NotAJournal {
        /// The directory.
        dir: PathBuf,
        /// A few of the names it does hold.
        found: Vec<String>,
    },
    /// A file in the journal directory that looks like a segment but whose
    /// name does not parse.
    #[error("journal: bad segment file name {}", .0.display())]
    BadSegmentName(PathBuf),
    /// Appended records do not continue the journal's sequence.
    #[error("journal append out of sequence: expected seq {expected}, got {got}")]
    OutOfSequence {
        /// The next seq the journal expects.
        expected: u64,
        /// The seq offered.
        got: u64,
    },
    /// A batch larger than `max_batch`, or empty.
    #[error("journal batch of {records} records (allowed 1..={max})")]
    BadBatch {
        /// Records offered.
        records: usize,
        /// `max_batch`.
        max: usize,
    },
    /// An earlier I/O error stopped this writer; fsync is never retried.
    #[error("journal writer stopped by an earlier I/O error; fdatasync is never retried")]
    Poisoned,
    /// Bad configuration.
    #[error("journal config: {0}")]
    Config(String),
}

/// Name of the segment whose first block starts at `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("journal-{first_seq:020}.seg")
}

/// The first seq a segment name stands for; `None` if the name is not a
/// segment's; `Some(Err)` if it looks like one but does not parse.
pub fn parse_segment_name(name: &str) -> Option<Result<u64, ()>> {
    let mid = name.strip_prefix("journal-")?.strip_suffix(".seg")?;
    Some(
        if mid.len() == 20 && mid.bytes().all(|b| b.is_ascii_digit()) {
            mid.parse().map_err(|_| ())
        } else {
            Err(())
        },
    )
}

/// The segment files of `dir`, in sequence order: `(first_seq, path)`.
pub fn list_segments<S: Storage>(
    storage: &S,
    dir: &Path,
) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let names = storage.list(dir).map_err(|source| JournalError::Io {
        op: "list",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for n in names {
        match parse_segment_name(&n) {
            None => {}
            Some(Ok(seq)) => out.push((seq, dir.join(&n))),
            Some(Err(())) => return Err(JournalError::BadSegmentName(dir.join(&n))),
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io { op, path, source }
}
