//! The on-disk transfer history: immutable, checksummed run files per
//! partition (`<data>/history/run-<run>.bhr`), written off the engine thread
//! and read by the engine through `engine::history::TransferHistory`.
//!
//! Parts: [`format`] (the file layout), [`writer`] (building runs,
//! [`RunWriter`] cutting the change stream, the durable write), [`store`]
//! ([`DiskHistory`]: open, lookups, verify, repair), [`filter`] ([`IdFilter`]:
//! one partition-wide Bloom filter of every id, so a new id skips the files),
//! [`shipping`] (runs read for a peer and adopted from one: a replicated
//! partition's followers hold the leader's run files).
//!
//! Invariants, as absences: no run file carries its final name before it is
//! complete and synced; no run is ever modified after its rename (a run is
//! rewritten only when it was never installed, or as a repair that must
//! reproduce the same checksum); no lookup returns bytes whose block
//! checksum it did not verify; no damaged, missing or discontinuous run
//! yields an answer: it is a typed error naming the file and the check.

pub mod compact;
pub mod filter;
pub mod format;
pub mod shipping;
pub mod store;
pub mod writer;

#[cfg(test)]
mod tests;

pub use compact::{Compactor, DEFAULT_COMPACT_FANOUT, DEFAULT_COMPACT_RECORDS_MAX};
pub use filter::IdFilter;
pub use format::{file_name, parse_file_name, parse_run_name, run_name};
pub use shipping::{
    adopt_file, adopt_run, checksum_held, holder, list_files, read_file_chunk, read_run_bytes,
    run_checksum, Expect, FileChunk, FileEntry, Incoming,
};
pub use store::{DiskHistory, HistoryError, HistoryLink, RunFault};
pub use writer::{build_run, repair_run, write_run_file, RunImage, RunWriter};

/// The history directory's name inside a partition's data directory.
pub const HISTORY_DIR: &str = "history";
