//! The journal of sequenced inputs: the durable copy of the engine's input
//! stream, from which any state can be rebuilt.
//!
//! On disk: a directory of preallocated segment files
//! `journal-<first seq, 20 digits>.seg` (names sort in sequence order). A
//! segment holds commit blocks back to back from offset 0, each 4 KiB
//! aligned: a 128-byte [`BlockHeader`] then `count` 192-byte
//! [`InputRecord`](crate::record::InputRecord)s, zero-padded to a 4 KiB
//! multiple. The rest of a segment is zeros.
//!
//! Invariants (checked by [`reader::scan`] on every read):
//! - every block's header checksum and body checksum hold (xxh3-128), its
//!   reserved and padding bytes are zero, `body_len == count × 192`;
//! - `prev_checksum` of a block equals the header checksum of the block
//!   before it (across segments): a hash chain;
//! - sequence numbers are contiguous: a block's `first_seq` is the previous
//!   block's last seq + 1, and records inside a block count up by one;
//! - a segment's name is the `first_seq` of its first block;
//! - one block is written by one `write_at` and (mode `durable`) made
//!   durable by one `sync_data` before `durable_seq` moves past it. Only the
//!   last block can therefore be torn by a crash, and only a provably torn
//!   one (see `reader`) is cut, with a WARN; any other damage, a damaged
//!   block followed by any valid block, or a short segment is corruption and
//!   recovery halts naming the segment, the offset and what failed, unless
//!   the operator asks for `repair`, which moves the damage aside into
//!   `damaged/` (never deletes it). A failed `sync_data` is never retried.
//! - a segment file carries its final name only once it is preallocated
//!   whole and synced (it is made under a temporary name and renamed), and
//!   no block is ever written into a segment's final 4 KiB page, so a
//!   segment that is empty, not a multiple of 4 KiB, or whose final page is
//!   not all zeros was truncated (a cut at a block boundary included);
//! - `journal.head` names the newest segment ([`head`]): a journal that
//!   ends before it, or lacks it, lost its newest segment.
//! - the journal starts at seq 1 with a zero `prev_checksum`, unless
//!   `journal.base` ([`base`]) says its front was retained away (archived
//!   into `archive/` or deleted, see [`retention`]): then it starts exactly
//!   at the base's seq and chains from the base's checksum. A journal that
//!   starts anywhere else lost its front, and is refused naming the missing
//!   seqs.
//!
//! The crate: segment files and commit blocks (`segments`, [`format`],
//! [`writer`], [`reader`], [`repair`]), the storage they sit on (the file
//! system or the simulated disk, [`storage`], [`sim`]), input records
//! ([`record`]), the one reader of inputs every consumer uses
//! ([`replay()`]), snapshot files ([`snapshot`]), recovery ([`recovery`]),
//! journal retention ([`retention`]) and the ledger history on disk
//! ([`history`]). It depends on the engine only; nothing here spawns a
//! thread or knows of the runtime or the network.

mod base;
mod format;
mod head;
pub mod history;
mod lock;
mod reader;
pub mod record;
mod recovery;
mod repair;
mod replay;
mod retention;
mod segments;
mod sim;
mod snapshot;
mod storage;
mod truncate;
mod writer;

#[cfg(test)]
mod tests;

pub use base::{
    decode_base, encode_base, read_base, write_base, Base, BaseError, BASE_NAME, BASE_TMP_NAME,
};
pub use format::{
    block_len, block_records, build_block, build_tagged_block, is_zero, parse_block, parse_header,
    BlockFault, BlockHeader, RaftKind, RaftTag, BLOCK_ALIGN, HEADER_LEN, MAGIC, VERSION,
    VERSION_RAFT,
};
pub use head::{read_head, write_head, HEAD_NAME, HEAD_TMP_NAME};
pub use lock::{live_writer, DirLock, LockError, LOCK_NAME};
pub use reader::{
    cut_torn_tail, decode_records, decode_records_from, provably_torn, scan, Chain, JournalEnd,
    ScanReport, TornTail, SECTOR,
};
pub use recovery::{
    no_restore, recover, recover_attached, recover_with, repair_partition, CannotRestore,
    Recovered, RecoveryError,
};
pub use repair::{move_damage_aside, move_file_aside, repair_journal, MovedAside, DAMAGED_DIR};
pub use replay::{
    replay, replay_overlapped, ReplayError, Replayed, OVERLAP_BATCH, OVERLAP_BATCHES,
};
pub use retention::{
    disk_usage, prune_archive, scan_archive, target_base, ArchiveReport, BadPolicy, DiskUsage,
    RetainPolicy, Retention, RetentionConfig, Step, ARCHIVE_BYTES_MAX_DEFAULT, ARCHIVE_DIR,
};
pub use segments::*;
pub use sim::{SimDisk, SimFile};
pub use snapshot::{
    feed_checkpoint_name, list_snapshots, load_newest_valid, newest_feed_pair,
    read_feed_checkpoint, read_snapshot, snapshot_name, write_feed_checkpoint, write_snapshot,
    LoadedSnapshot, SnapshotError, SnapshotFault, SnapshotSkip, FEED_MAGIC, SNAPSHOTS_KEPT,
    SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
};
pub use storage::{create_private_dir, join, FsFile, FsStorage, Storage, StorageFile};
pub use truncate::{restart_at, truncate_after};
pub use writer::{JournalWriter, NEW_SEGMENT_SUFFIX, SPARE_NAME, SPARE_SLICE_BYTES};
