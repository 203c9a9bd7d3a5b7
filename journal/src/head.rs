//! `journal.head`: a tiny file naming the newest segment, so that losing
//! the newest segment whole (deleted, never restored from a backup) is
//! seen. Without it the journal would simply end, cleanly, one segment
//! early.
//!
//! Invariants: the writer rewrites it at each segment roll, after the new
//! segment is durable (a crash between the two leaves it naming an older
//! segment that exists, which is safe), through a temporary file that is
//! synced, renamed over it and made durable by a directory sync; it is
//! rewritten to name the segment that holds the journal's end *before* a
//! later segment is removed (a cut torn tail, a repair). So with a head
//! naming the segment that starts at seq H, the segment named for H exists
//! and the journal reaches at least seq H - 1 (every seq before H was
//! written before H's segment was started, and synced even in mode `async`);
//! `reader::scan` refuses the journal otherwise. A journal without the file
//! (written by an earlier version) gets one at its next roll.

use super::{io_err, parse_segment_name, segment_name, JournalError, Storage, StorageFile};
use std::path::Path;

/// The file's name in a partition directory.
pub const HEAD_NAME: &str = "journal.head";

/// The temporary name it is written under (removed by `JournalWriter::open`
/// when a crash left it).
pub const HEAD_TMP_NAME: &str = "journal.head.tmp";

/// The first seq of the segment `journal.head` names; `None` when there is
/// no such file.
pub fn read_head<S: Storage>(storage: &S, dir: &Path) -> Result<Option<u64>, JournalError> {
    let names = storage.list(dir).map_err(io_err("list", dir))?;
    if !names.iter().any(|n| n == HEAD_NAME) {
        return Ok(None);
    }
    let path = dir.join(HEAD_NAME);
    let data = super::reader::read_all(storage, &path)?;
    let text = String::from_utf8_lossy(&data);
    match parse_segment_name(text.trim()) {
        Some(Ok(seq)) => Ok(Some(seq)),
        _ => Err(JournalError::BadHead {
            path,
            content: text.chars().take(64).collect(),
        }),
    }
}

/// Makes `journal.head` durably name the segment starting at `first_seq`,
/// or removes it (durably) with `None` (a journal with no segment left).
pub fn write_head<S: Storage>(
    storage: &S,
    dir: &Path,
    first_seq: Option<u64>,
) -> Result<(), JournalError> {
    let path = dir.join(HEAD_NAME);
    let names = storage.list(dir).map_err(io_err("list", dir))?;
    let Some(seq) = first_seq else {
        if names.iter().any(|n| n == HEAD_NAME) {
            storage.remove(&path).map_err(io_err("remove", &path))?;
            storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
        }
        return Ok(());
    };
    let tmp = dir.join(HEAD_TMP_NAME);
    if names.iter().any(|n| n == HEAD_TMP_NAME) {
        storage.remove(&tmp).map_err(io_err("remove", &tmp))?;
    }
    let mut f = storage.create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_at(format!("{}\n", segment_name(seq)).as_bytes(), 0)
        .map_err(io_err("write", &tmp))?;
    f.sync_data().map_err(io_err("fdatasync", &tmp))?;
    storage
        .rename(&tmp, &path)
        .map_err(io_err("rename", &tmp))?;
    storage.sync_dir(dir).map_err(io_err("fsync dir", dir))
}
