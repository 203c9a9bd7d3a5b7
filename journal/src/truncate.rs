//! Cutting a journal back, for the replicated log (the journal is the Raft
//! log, one block per entry): a follower whose uncommitted suffix conflicts
//! with its new leader's log drops it (`truncate_after`), and a follower
//! that installs a snapshot from its leader restarts its journal right
//! after it (`restart_at`).
//!
//! Invariants: nothing before the kept end is ever rewritten; every step is
//! durable before the next (a crash between steps leaves a valid journal:
//! at worst still holding the suffix, which the caller cuts again); the
//! writer is reopened by the caller with `JournalWriter::open`, which scans
//! what is left, so no writer state outlives a cut.

use super::base::{write_base, Base, BASE_NAME};
use super::format::BLOCK_ALIGN;
use super::head::write_head;
use super::reader::{nonzero_end, read_all, segment_seq, JournalEnd};
use super::{io_err, list_segments, JournalError, Storage, StorageFile};
use std::path::Path;

/// Removes every block after `keep` (a block boundary a scan or
/// `JournalWriter::end` reported), or every block when `keep` is `None`.
/// Order: `journal.head` names the kept segment first, then the later
/// segments go, then the kept segment's bytes from `keep.offset` are zeroed
/// and synced.
pub fn truncate_after<S: Storage>(
    storage: &S,
    dir: &Path,
    keep: Option<&JournalEnd>,
) -> Result<(), JournalError> {
    let kept_seq = keep.and_then(|k| segment_seq(&k.segment));
    write_head(storage, dir, kept_seq)?;
    let mut removed = false;
    for (seq, path) in list_segments(storage, dir)?.iter().rev() {
        if kept_seq.is_some_and(|k| *seq <= k) {
            break;
        }
        storage.remove(path).map_err(io_err("remove", path))?;
        removed = true;
    }
    if removed {
        storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    }
    let Some(k) = keep else {
        return Ok(());
    };
    let data = read_all(storage, &k.segment)?;
    let end = nonzero_end(&data, k.offset as usize).next_multiple_of(BLOCK_ALIGN);
    if end > k.offset as usize {
        let mut f = storage
            .open(&k.segment)
            .map_err(io_err("open", &k.segment))?;
        let zeros = vec![0u8; end - k.offset as usize];
        f.write_at(&zeros, k.offset)
            .map_err(io_err("write", &k.segment))?;
        f.sync_data().map_err(io_err("fdatasync", &k.segment))?;
    }
    Ok(())
}

/// Empties the journal and anchors it at `base`: the next block starts at
/// `base.first_seq` and chains from `base.prev_checksum` (a follower that
/// installed a snapshot through `first_seq - 1`). The anchor is written
/// before any segment goes, so a crash leaves either the old journal whole
/// or the new anchor (with segments before it that the next open skips).
pub fn restart_at<S: Storage>(storage: &S, dir: &Path, base: &Base) -> Result<(), JournalError> {
    storage
        .create_dir_all(dir)
        .map_err(io_err("create dir", dir))?;
    write_base(storage, dir, base)?;
    write_head(storage, dir, None)?;
    for (_, path) in list_segments(storage, dir)? {
        storage.remove(&path).map_err(io_err("remove", &path))?;
    }
    storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    debug_assert!(storage
        .list(dir)
        .is_ok_and(|n| n.iter().any(|x| x == BASE_NAME)));
    Ok(())
}
