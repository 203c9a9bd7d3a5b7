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
//! A market-data checkpoint beside a snapshot (`feed-<seq, 20 digits>.ckpt`,
//! the hub's `FeedBuilder` bytes at the same seq, so start-up seeds market
//! data from it plus the journal after it instead of the whole journal) has
//! the same header with magic `BOURSEFD` and a zero state hash.
//!
//! Invariants: a snapshot is written to `<name>.tmp`, synced, renamed to its
//! name and the directory synced, so a snapshot file under its final name
//! is always complete; only the newest two are kept, and the newest with a
//! feed checkpoint of its seq (so market data always has a pair to start
//! from), and no feed checkpoint older than that pair; a snapshot is taken
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
/// Header magic of a market-data checkpoint file.
pub const FEED_MAGIC: [u8; 8] = *b"BOURSEFD";

/// A kind of checkpoint file: its name's prefix and suffix, its magic.
#[derive(Clone, Copy, Debug)]
struct Kind {
    prefix: &'static str,
    suffix: &'static str,
    magic: [u8; 8],
}

const SNAPSHOT: Kind = Kind {
    prefix: "snapshot-",
    suffix: ".snap",
    magic: SNAPSHOT_MAGIC,
};

const FEED: Kind = Kind {
    prefix: "feed-",
    suffix: ".ckpt",
    magic: FEED_MAGIC,
};

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
    SNAPSHOT.name(seq)
}

/// The file name of the market-data checkpoint after `seq`.
pub fn feed_checkpoint_name(seq: u64) -> String {
    FEED.name(seq)
}

impl Kind {
    fn name(self, seq: u64) -> String {
        format!("{}{seq:020}{}", self.prefix, self.suffix)
    }
}

fn parse_name(kind: Kind, name: &str) -> Option<Result<u64, ()>> {
    let mid = name.strip_prefix(kind.prefix)?.strip_suffix(kind.suffix)?;
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
    list_kind(storage, dir, SNAPSHOT)
}

fn list_kind<S: Storage>(
    storage: &S,
    dir: &Path,
    kind: Kind,
) -> Result<Vec<(u64, PathBuf)>, SnapshotError> {
    let mut out = Vec::new();
    for n in storage.list(dir).map_err(io_err("list", dir))? {
        match parse_name(kind, &n) {
            None => {}
            Some(Ok(seq)) => out.push((seq, dir.join(&n))),
            Some(Err(())) => return Err(SnapshotError::BadName(dir.join(&n))),
        }
    }
    out.sort();
    Ok(out)
}

/// Encodes the header for a snapshot.
fn header(magic: [u8; 8], seq: u64, state_hash: u128, body: &[u8]) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut h = [0u8; SNAPSHOT_HEADER_LEN];
    h[0..8].copy_from_slice(&magic);
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
    write_kind(storage, dir, SNAPSHOT, seq, state_hash, body)
}

/// Writes market data's checkpoint after `seq` durably, as a snapshot is
/// written, then deletes those older than the oldest kept snapshot.
pub fn write_feed_checkpoint<S: Storage>(
    storage: &S,
    dir: &Path,
    seq: u64,
    body: &[u8],
) -> Result<PathBuf, SnapshotError> {
    write_kind(storage, dir, FEED, seq, 0, body)
}

/// The newest seq, at most `up_to`, that has both a feed checkpoint and a
/// snapshot in `dir` (not read or checked yet).
pub fn newest_feed_pair<S: Storage>(
    storage: &S,
    dir: &Path,
    up_to: u64,
) -> Result<Option<u64>, SnapshotError> {
    let snaps = list_snapshots(storage, dir)?;
    let feeds = list_kind(storage, dir, FEED)?;
    Ok(newest_pair(&snaps, &feeds, up_to))
}

/// Reads and checks market data's checkpoint after `seq` in `dir`.
pub fn read_feed_checkpoint<S: Storage>(
    storage: &S,
    dir: &Path,
    seq: u64,
) -> Result<Vec<u8>, SnapshotFault> {
    read_kind(storage, &dir.join(FEED.name(seq)), FEED).map(|f| f.body)
}

fn write_kind<S: Storage>(
    storage: &S,
    dir: &Path,
    kind: Kind,
    seq: u64,
    state_hash: u128,
    body: &[u8],
) -> Result<PathBuf, SnapshotError> {
    storage
        .create_dir_all(dir)
        .map_err(io_err("create dir", dir))?;
    let name = kind.name(seq);
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
    let h = header(kind.magic, seq, state_hash, body);
    f.write_at(&h, 0).map_err(io_err("write", &tmp))?;
    f.write_at(body, SNAPSHOT_HEADER_LEN as u64)
        .map_err(io_err("write", &tmp))?;
    f.sync_data().map_err(io_err("fdatasync", &tmp))?;
    drop(f);
    storage
        .rename(&tmp, &path)
        .map_err(io_err("rename", &tmp))?;
    storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    prune(storage, dir)?;
    Ok(path)
}

/// Deletes all snapshots but the newest two and the newest that has a feed
/// checkpoint of its seq (the pair market data starts from: a clean
/// shutdown's final snapshot has none), every feed checkpoint older than
/// that pair, and every one that can no longer pair (no snapshot of its
/// seq, and a newer snapshot exists: snapshots only come newer).
fn prune<S: Storage>(storage: &S, dir: &Path) -> Result<(), SnapshotError> {
    let snaps = list_snapshots(storage, dir)?;
    let feeds = list_kind(storage, dir, FEED)?;
    let pair = newest_pair(&snaps, &feeds, u64::MAX);
    let keep_from = snaps.len().saturating_sub(SNAPSHOTS_KEPT);
    let newest = snaps.last().map_or(0, |s| s.0);
    let orphan = |seq: u64| seq < newest && !snaps.iter().any(|s| s.0 == seq);
    let old: Vec<&PathBuf> = snaps
        .iter()
        .enumerate()
        .filter(|(i, s)| *i < keep_from && Some(s.0) != pair)
        .map(|(_, s)| &s.1)
        .chain(
            feeds
                .iter()
                .filter(|f| pair.is_some_and(|p| f.0 < p) || orphan(f.0))
                .map(|f| &f.1),
        )
        .collect();
    for p in &old {
        storage.remove(p).map_err(io_err("remove", p))?;
    }
    if !old.is_empty() {
        storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    }
    Ok(())
}

/// The newest seq ≤ `up_to` with both a snapshot and a feed checkpoint.
fn newest_pair(snaps: &[(u64, PathBuf)], feeds: &[(u64, PathBuf)], up_to: u64) -> Option<u64> {
    feeds
        .iter()
        .rev()
        .map(|f| f.0)
        .find(|&seq| seq <= up_to && snaps.iter().any(|s| s.0 == seq))
}

/// Reads and checks one snapshot file (not restored yet).
pub fn read_snapshot<S: Storage>(
    storage: &S,
    path: &Path,
) -> Result<LoadedSnapshot, SnapshotFault> {
    read_kind(storage, path, SNAPSHOT)
}

fn read_kind<S: Storage>(
    storage: &S,
    path: &Path,
    kind: Kind,
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
    if magic != kind.magic {
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
        .and_then(|n| parse_name(kind, n))
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
    fn feed_checkpoints_live_beside_the_snapshots_they_go_with() {
        let d = SimDisk::new();
        let dir = Path::new("/snap");
        for seq in [10u64, 20, 30] {
            write_snapshot(&d, dir, seq, 7, &[1; 100]).unwrap();
            write_feed_checkpoint(&d, dir, seq, &[seq as u8; 50]).unwrap();
        }
        let names = |d: &SimDisk| {
            let mut n = d.list(dir).unwrap();
            n.sort();
            n
        };
        assert_eq!(
            names(&d),
            [
                feed_checkpoint_name(30),
                snapshot_name(20),
                snapshot_name(30)
            ],
            "the newest two snapshots, no checkpoint older than the newest pair"
        );
        assert_eq!(read_feed_checkpoint(&d, dir, 30).unwrap(), [30; 50]);
        assert!(matches!(
            read_feed_checkpoint(&d, dir, 10),
            Err(SnapshotFault::Io(_))
        ));
        // Snapshots without checkpoints (taken at shutdowns) never push out
        // the newest pair, so market data always has one to start from.
        write_snapshot(&d, dir, 40, 7, &[1; 100]).unwrap();
        write_snapshot(&d, dir, 50, 7, &[1; 100]).unwrap();
        assert_eq!(
            names(&d),
            [
                feed_checkpoint_name(30),
                snapshot_name(30),
                snapshot_name(40),
                snapshot_name(50)
            ]
        );
        assert_eq!(newest_feed_pair(&d, dir, 50).unwrap(), Some(30));
        assert_eq!(newest_feed_pair(&d, dir, 29).unwrap(), None);
        // A checkpoint whose snapshot is gone never pairs: dropped at once;
        // one newer than every snapshot waits for its own.
        write_feed_checkpoint(&d, dir, 35, &[3; 50]).unwrap();
        write_feed_checkpoint(&d, dir, 70, &[7; 50]).unwrap();
        assert_eq!(
            names(&d),
            [
                feed_checkpoint_name(30),
                feed_checkpoint_name(70),
                snapshot_name(30),
                snapshot_name(40),
                snapshot_name(50)
            ]
        );
        // A newer pair releases the older one.
        write_snapshot(&d, dir, 60, 7, &[1; 100]).unwrap();
        write_feed_checkpoint(&d, dir, 60, &[6; 50]).unwrap();
        assert_eq!(
            names(&d),
            [
                feed_checkpoint_name(60),
                feed_checkpoint_name(70),
                snapshot_name(50),
                snapshot_name(60)
            ]
        );
        // A checkpoint is not a snapshot, and listing snapshots skips it.
        let feed = dir.join(feed_checkpoint_name(60));
        assert!(matches!(
            read_snapshot(&d, &feed),
            Err(SnapshotFault::BadMagic(m)) if m == FEED_MAGIC
        ));
        let (s, _) = load_newest_valid(&d, dir).unwrap();
        assert_eq!(s.unwrap().seq, 60);
        // A damaged body is named.
        let mut f = d.open(&feed).unwrap();
        f.write_at(&[9], SNAPSHOT_HEADER_LEN as u64 + 3).unwrap();
        assert_eq!(
            read_feed_checkpoint(&d, dir, 60),
            Err(SnapshotFault::BodyChecksum)
        );
    }

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
