//! Repair on the operator's request (`serve`/`pipeline --repair`, `bourse
//! journal repair`): the journal is cut at its first damage, and everything
//! from there on is moved aside into `<partition>/damaged/`, never deleted.
//!
//! What moves: the damaged segment's bytes from the damage offset to its
//! last non-zero byte (rounded up to 4 KiB) are copied to
//! `damaged/<segment>.<offset>.tail`, then zeroed in place (a short segment
//! is also padded back to a 4 KiB multiple, plus a zero page when what
//! stays reaches into its final page, which must be zero); a segment damaged
//! at offset 0 and every later segment are renamed whole to
//! `damaged/<segment>.0.tail`, after `journal.head` names the newest segment
//! that stays. A journal that lost its newest segment
//! (`JournalError::LostSegment`) is not repaired: nothing damaged is there
//! to move, and only a human knows whether the segment can be restored.
//!
//! Invariants: the copy is durable (file and directory synced) before the
//! original bytes are zeroed, so a crash during repair loses nothing; each
//! move is logged as an ERROR naming the segment, the offset, the bytes and
//! where they went; the journal left behind scans clean.

use super::format::{BlockFault, BLOCK_ALIGN};
use super::head::write_head;
use super::reader::{decode_records, nonzero_end, read_all, scan};
use super::{io_err, list_segments, JournalError, Storage, StorageFile};
use std::path::{Path, PathBuf};

/// The folder (in a partition directory) damaged journal bytes are moved to.
pub const DAMAGED_DIR: &str = "damaged";

/// One piece of the journal moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedAside {
    /// The file it came from (a segment, or a snapshot ahead of the cut).
    pub from: PathBuf,
    /// Offset in that segment of the first byte moved.
    pub offset: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// The file now holding them.
    pub to: PathBuf,
}

/// A name in `damaged/` not taken yet: `base`, else `base.1`, `base.2`, …
fn free_name<S: Storage>(storage: &S, damaged: &Path, base: &str) -> Result<PathBuf, JournalError> {
    let taken = storage.list(damaged).map_err(io_err("list", damaged))?;
    let mut name = base.to_string();
    let mut n = 0;
    while taken.contains(&name) {
        n += 1;
        name = format!("{base}.{n}");
    }
    Ok(damaged.join(name))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Moves the journal in `dir` aside from `offset` in `segment` on (see the
/// module doc). `what` is the damage found there, for the log.
pub fn move_damage_aside<S: Storage>(
    storage: &S,
    dir: &Path,
    segment: &Path,
    offset: u64,
    what: &BlockFault,
) -> Result<Vec<MovedAside>, JournalError> {
    let damaged = dir.join(DAMAGED_DIR);
    storage
        .create_dir_all(&damaged)
        .map_err(io_err("create dir", &damaged))?;
    let segments = list_segments(storage, dir)?;
    let later: Vec<PathBuf> = segments
        .iter()
        .map(|(_, p)| p)
        .skip_while(|p| p.as_path() != segment)
        .skip(1)
        .cloned()
        .collect();
    if offset == 0 || !later.is_empty() {
        // `journal.head` names the newest segment that stays before any goes.
        let newest_kept = segments
            .iter()
            .take_while(|(_, p)| offset > 0 || p.as_path() != segment)
            .take_while(|(_, p)| !later.contains(p))
            .last()
            .map(|(s, _)| *s);
        write_head(storage, dir, newest_kept)?;
    }
    let mut moved = Vec::new();
    let base = format!("{}.{offset}.tail", file_name(segment));
    let to = free_name(storage, &damaged, &base)?;
    if offset == 0 {
        let len = storage
            .open_read(segment)
            .and_then(|f| f.len())
            .map_err(io_err("stat", segment))?;
        storage
            .rename(segment, &to)
            .map_err(io_err("rename", segment))?;
        moved.push(MovedAside {
            from: segment.to_path_buf(),
            offset,
            bytes: len,
            to,
        });
    } else {
        let data = read_all(storage, segment)?;
        let at = offset as usize;
        let end = nonzero_end(&data, at);
        let mut copy = storage.create(&to).map_err(io_err("create", &to))?;
        copy.write_at(&data[at..end], 0)
            .map_err(io_err("write", &to))?;
        copy.sync_data().map_err(io_err("fdatasync", &to))?;
        // The copy's name is durable before the original bytes go.
        storage
            .sync_dir(&damaged)
            .map_err(io_err("fsync dir", &damaged))?;
        storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
        let mut f = storage.open(segment).map_err(io_err("open", segment))?;
        if end > at {
            f.write_at(&vec![0u8; end - at], offset)
                .map_err(io_err("write", segment))?;
        }
        let mut whole = (data.len().div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN).max(BLOCK_ALIGN);
        if at > whole - BLOCK_ALIGN {
            // What stays reaches into the final page (a segment cut at a
            // block boundary, or written full by an earlier version): a
            // zero page after it makes the segment whole again.
            whole += BLOCK_ALIGN;
        }
        if whole != data.len() {
            f.set_len(whole as u64)
                .map_err(io_err("set_len", segment))?;
        }
        f.sync_data().map_err(io_err("fdatasync", segment))?;
        moved.push(MovedAside {
            from: segment.to_path_buf(),
            offset,
            bytes: (end - at) as u64,
            to,
        });
    }
    for p in later {
        let to = free_name(storage, &damaged, &format!("{}.0.tail", file_name(&p)))?;
        let len = storage
            .open_read(&p)
            .and_then(|f| f.len())
            .map_err(io_err("stat", &p))?;
        storage.rename(&p, &to).map_err(io_err("rename", &p))?;
        moved.push(MovedAside {
            from: p,
            offset: 0,
            bytes: len,
            to,
        });
    }
    storage
        .sync_dir(&damaged)
        .map_err(io_err("fsync dir", &damaged))?;
    storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    for m in &moved {
        tracing::error!(
            from = %m.from.display(),
            offset = m.offset,
            bytes = m.bytes,
            moved_to = %m.to.display(),
            damage = %what,
            "repair: journal data from the first damage on moved aside; the journal now ends before it"
        );
    }
    Ok(moved)
}

/// Moves the whole file `path` (in `dir`) into `dir/damaged/`, durably, and
/// logs an ERROR saying `why`.
pub fn move_file_aside<S: Storage>(
    storage: &S,
    dir: &Path,
    path: &Path,
    why: &str,
) -> Result<MovedAside, JournalError> {
    let damaged = dir.join(DAMAGED_DIR);
    storage
        .create_dir_all(&damaged)
        .map_err(io_err("create dir", &damaged))?;
    let bytes = storage
        .open_read(path)
        .and_then(|f| f.len())
        .map_err(io_err("stat", path))?;
    let to = free_name(storage, &damaged, &file_name(path))?;
    storage.rename(path, &to).map_err(io_err("rename", path))?;
    storage
        .sync_dir(&damaged)
        .map_err(io_err("fsync dir", &damaged))?;
    storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    tracing::error!(
        from = %path.display(),
        bytes,
        moved_to = %to.display(),
        "repair: {why}"
    );
    Ok(MovedAside {
        from: path.to_path_buf(),
        offset: 0,
        bytes,
        to,
    })
}

/// Scans the journal in `dir` (decoding every record) and moves every
/// damage aside until it scans clean (a torn tail is left for the writer to
/// cut). Returns what was moved (empty: nothing was damaged).
pub fn repair_journal<S: Storage>(
    storage: &S,
    dir: &Path,
) -> Result<Vec<MovedAside>, JournalError> {
    let mut moved = Vec::new();
    // Each round cuts at the first damage, so everything after it is gone:
    // one round is enough; the bound only guards against a storage that
    // does not do what it says.
    for _ in 0..4 {
        match scan(storage, dir, |_, _, _, records| {
            decode_records(records, |_| ())
        }) {
            Ok(_) => return Ok(moved),
            Err(JournalError::Corrupt {
                segment,
                offset,
                what,
                ..
            }) => moved.extend(move_damage_aside(storage, dir, &segment, offset, &what)?),
            Err(e) => return Err(e),
        }
    }
    scan(storage, dir, |_, _, _, records| {
        decode_records(records, |_| ())
    })?;
    Ok(moved)
}
