//! Snapshot files: the engine's state after a given seq, so recovery
//! replays only the journal after it.
//!
//! File `snapshot-<seq, 20 digits>.snap` = an 80-byte header then the body
//! (opaque engine bytes). Header (little-endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | magic `BOURSESN` |
//! | 8..12 | version (1) |
//! | 12..16 | reserved, zero |
//! | 16..24 | seq: the last input applied |
//! | 24..40 | state hash after that input (`Engine::state_hash`) |
//! | 40..48 | body_len |
//! | 48..64 | body checksum: xxh3-128 of the body |
//! | 64..80 | header checksum: xxh3-128 of bytes 0..64 |
//!
//! Invariants: a snapshot is written to `<name>.tmp`, synced, renamed to its
//! name and the directory synced, so a snapshot file under its final name
//! is always complete; only the newest two are kept; a snapshot is taken
//! only of state whose inputs are all durable in the journal (the caller's
//! duty), so the journal always reaches at least its seq. Loading checks
//! every header field and the body checksum and names the file and the
//! failed check; an invalid snapshot is reported, never silently used or
//! silently skipped.

use crate::{Storage, StorageFile};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_128;

/// Header size.
pub const SNAPSHOT_HEADER_LEN: usize = 80;
/// Header magic.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"BOURSESN";
/// Format version.
pub const SNAPSHOT_VERSION: u32 = 1;
/// How many snapshots are kept.
pub const SNAPSHOTS_KEPT: usize = 2;

/// Why a snapshot file is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotFault {
    /// Shorter than a header.
    #[error("file too short for a header: {0} bytes")]
    TooShort(u64),
    /// Wrong magic.
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 8]),
    /// Header checksum mismatch.
    #[error("header checksum mismatch")]
    HeaderChecksum,
    /// Unknown version.
    #[error("unknown snapshot version {0}")]
    BadVersion(u32),
    /// Reserved bytes not zero.
    #[error("reserved header bytes not zero")]
    ReservedNonZero,
    /// The name's seq differs from the header's.
    #[error("file named for seq {name_seq} holds seq {seq}")]
    NameMismatch {
        /// From the name.
        name_seq: u64,
        /// From the header.
        seq: u64,
    },
    /// The file length does not match body_len.
    #[error("body length {found}, header says {expected}")]
    BodyLen {
        /// From the header.
        expected: u64,
        /// From the file.
        found: u64,
    },
    /// Body checksum mismatch.
    #[error("body checksum mismatch")]
    BodyChecksum,
    /// The engine refused the body.
    #[error("restore failed: {0}")]
    Restore(String),
    /// Restored, but the state hash differs from the header's.
    #[error("restored state hash {found:032x}, header says {expected:032x}")]
    StateHash {
        /// From the header.
        expected: u128,
        /// From the restored engine.
        found: u128,
    },
    /// Could not be read.
    #[error("read failed: {0}")]
    Io(String),
}

/// A snapshot that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot {} skipped: {what}", path.display())]
pub struct SnapshotSkip {
    /// The file.
    pub path: PathBuf,
    /// What failed.
    pub what: SnapshotFault,
}

/// Errors writing or listing snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// An I/O call failed.
    #[error("snapshot I/O error: {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A name that looks like a snapshot's but does not parse.
    #[error("bad snapshot file name {}", .0.display())]
    BadName(PathBuf),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io { op, path, source }
}

/// A snapshot file that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSnapshot {
    /// The file.
    pub path: PathBuf,
    /// Last input applied.
    pub seq: u64,
    /// State hash after it.
    pub state_hash: u128,
    /// The engine bytes.
    pub body: Vec<u8>,
}

/// The file name of the snapshot after `seq`.
pub fn snapshot_name(seq: u64) -> String {
    format!("snapshot-{seq:020}.snap")
}

fn parse_name(name: &str) -> Option<Result<u64, ()>> {
    let mid = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    Some(
        if mid.len() == 20 && mid.bytes().all(|b| b.is_ascii_digit()) {
            mid.parse().map_err(|_| ())
        } else {
            Err(())
        },
    )
}

/// The snapshots in `dir`, oldest first (temp files are not listed).
pub fn list_snapshots<S: Storage>(
    storage: &S,
    dir: &Path,
) -> Result<Vec<(u64, PathBuf)>, SnapshotError> {
    let mut out = Vec::new();
    for n in storage.list(dir).map_err(io_err("list", dir))? {
        match parse_name(&n) {
            None => {}
            Some(Ok(seq)) => out.push((seq, dir.join(&n))),
            Some(Err(())) => return Err(SnapshotError::BadName(dir.join(&n))),
        }
    }
    out.sort();
    Ok(out)
}

/// Encodes the header for a snapshot.
fn header(seq: u64, state_hash: u128, body: &[u8]) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut h = [0u8; SNAPSHOT_HEADER_LEN];
    h[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    h[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    h[24..40].copy_from_slice(&state_hash.to_le_bytes());
    h[40..48].copy_from_slice(&(body.len() as u64).to_le_bytes());
    h[48..64].copy_from_slice(&xxh3_128(body).to_le_bytes());
    let hc = xxh3_128(&h[..64]);
    h[64..80].copy_from_slice(&hc.to_le_bytes());
    h
}

/// Writes the snapshot after `seq` durably (temp file, sync, rename, sync
/// directory), then deletes all but the newest two. Returns its path.
pub fn write_snapshot<S: Storage>(
    storage: &S,
    dir: &Path,
    seq: u64,
    state_hash: u128,
    body: &[u8],
) -> Result<PathBuf, SnapshotError> {
    storage
        .create_dir_all(dir)
        .map_err(io_err("create dir", dir))?;
    let name = snapshot_name(seq);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    if storage
        .list(dir)
        .map_err(io_err("list", dir))?
        .contains(&format!("{name}.tmp"))
    {
        storage.remove(&tmp).map_err(io_err("remove", &tmp))?;
    }
    let mut f = storage.create(&tmp).map_err(io_err("create", &tmp))?;
    let h = header(seq, state_hash, body);
    f.write_at(&h, 0).map_err(io_err("write", &tmp))?;
    f.write_at(body, SNAPSHOT_HEADER_LEN as u64)
        .map_err(io_err("write", &tmp))?;
    f.sync_data().map_err(io_err("fdatasync", &tmp))?;
    drop(f);
    storage
        .rename(&tmp, &path)
        .map_err(io_err("rename", &tmp))?;
    storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    let all = list_snapshots(storage, dir)?;
    if all.len() > SNAPSHOTS_KEPT {
        for (_, old) in &all[..all.len() - SNAPSHOTS_KEPT] {
            storage.remove(old).map_err(io_err("remove", old))?;
        }
        storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    }
    Ok(path)
}

/// Reads and checks one snapshot file (not restored yet).
pub fn read_snapshot<S: Storage>(
    storage: &S,
    path: &Path,
) -> Result<LoadedSnapshot, SnapshotFault> {
    let io = |e: std::io::Error| SnapshotFault::Io(e.to_string());
    let f = storage.open_read(path).map_err(io)?;
    let len = f.len().map_err(io)?;
    if len < SNAPSHOT_HEADER_LEN as u64 {
        return Err(SnapshotFault::TooShort(len));
    }
    let mut h = [0u8; SNAPSHOT_HEADER_LEN];
    f.read_at(&mut h, 0).map_err(io)?;
    let magic: [u8; 8] = h[0..8].try_into().expect("8 bytes");
    if magic != SNAPSHOT_MAGIC {
        return Err(SnapshotFault::BadMagic(magic));
    }
    let hc = u128::from_le_bytes(h[64..80].try_into().expect("16 bytes"));
    if xxh3_128(&h[..64]) != hc {
        return Err(SnapshotFault::HeaderChecksum);
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotFault::BadVersion(version));
    }
    if h[12..16].iter().any(|&b| b != 0) {
        return Err(SnapshotFault::ReservedNonZero);
    }
    let seq = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    let name_seq = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_name)
        .and_then(Result::ok);
    if let Some(name_seq) = name_seq {
        if name_seq != seq {
            return Err(SnapshotFault::NameMismatch { name_seq, seq });
        }
    }
    let state_hash = u128::from_le_bytes(h[24..40].try_into().expect("16 bytes"));
    let body_len = u64::from_le_bytes(h[40..48].try_into().expect("8 bytes"));
    if len - SNAPSHOT_HEADER_LEN as u64 != body_len {
        return Err(SnapshotFault::BodyLen {
            expected: body_len,
            found: len - SNAPSHOT_HEADER_LEN as u64,
        });
    }
    let mut body = vec![0u8; body_len as usize];
    f.read_at(&mut body, SNAPSHOT_HEADER_LEN as u64)
        .map_err(io)?;
    let bc = u128::from_le_bytes(h[48..64].try_into().expect("16 bytes"));
    if xxh3_128(&body) != bc {
        return Err(SnapshotFault::BodyChecksum);
    }
    Ok(LoadedSnapshot {
        path: path.to_path_buf(),
        seq,
        state_hash,
        body,
    })
}

/// The newest snapshot that checks out, and every newer one that did not
/// (each named with what failed).
pub fn load_newest_valid<S: Storage>(
    storage: &S,
    dir: &Path,
) -> Result<(Option<LoadedSnapshot>, Vec<SnapshotSkip>), SnapshotError> {
    let mut skipped = Vec::new();
    for (_, path) in list_snapshots(storage, dir)?.into_iter().rev() {
        match read_snapshot(storage, &path) {
            Ok(s) => return Ok((Some(s), skipped)),
            Err(what) => skipped.push(SnapshotSkip { path, what }),
        }
    }
    Ok((None, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SplitMix64;
    use crate::SimDisk;

    #[test]
    fn write_keep_two_and_load() {
        let d = SimDisk::new();
        let dir = Path::new("/snap");
        for seq in [10u64, 20, 30] {
            let body = vec![seq as u8; 1000 + seq as usize];
            write_snapshot(&d, dir, seq, seq as u128 * 7, &body).unwrap();
        }
        let all = list_snapshots(&d, dir).unwrap();
        assert_eq!(all.iter().map(|x| x.0).collect::<Vec<_>>(), vec![20, 30]);
        let (s, skipped) = load_newest_valid(&d, dir).unwrap();
        let s = s.unwrap();
        assert!(skipped.is_empty());
        assert_eq!((s.seq, s.state_hash, s.body.len()), (30, 210, 1030));
        // The durable state survives a crash: the rename and removals were synced.
        d.crash(&mut SplitMix64(1), true);
        assert_eq!(list_snapshots(&d, dir).unwrap().len(), 2);
    }

    #[test]
    fn damaged_newest_is_skipped_and_named() {
        let d = SimDisk::new();
        let dir = Path::new("/snap");
        write_snapshot(&d, dir, 5, 1, b"older state").unwrap();
        let newest = write_snapshot(&d, dir, 9, 2, &[7u8; 4000]).unwrap();
        let mut rng = SplitMix64(3);
        d.flip_bits(&mut rng, &newest, 100..4000, 1);
        let (s, skipped) = load_newest_valid(&d, dir).unwrap();
        assert_eq!(s.unwrap().seq, 5);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].what, SnapshotFault::BodyChecksum);
        let msg = skipped[0].to_string();
        assert!(msg.contains("snapshot-00000000000000000009.snap"), "{msg}");
        assert!(msg.contains("body checksum"), "{msg}");
        // Header damage is named too.
        d.flip_bits(&mut rng, &newest, 20..21, 1);
        let (_, skipped) = load_newest_valid(&d, dir).unwrap();
        assert_eq!(skipped[0].what, SnapshotFault::HeaderChecksum);
    }

    #[test]
    fn unsynced_snapshot_is_not_visible_after_crash() {
        let d = SimDisk::new();
        let dir = Path::new("/snap");
        write_snapshot(&d, dir, 5, 1, b"state").unwrap();
        // A temp file left by a crash mid-write is ignored and replaced.
        let tmp = dir.join(format!("{}.tmp", snapshot_name(6)));
        let mut f = d.create(&tmp).unwrap();
        f.write_at(b"partial", 0).unwrap();
        d.crash(&mut SplitMix64(2), true);
        assert_eq!(list_snapshots(&d, dir).unwrap().len(), 1);
        write_snapshot(&d, dir, 6, 2, b"state 6").unwrap();
        assert_eq!(load_newest_valid(&d, dir).unwrap().0.unwrap().seq, 6);
    }
}
