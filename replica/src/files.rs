//! Small durable files beside a partition's journal: the Raft vote
//! (`raft.vote`), the memberships of entries still in the journal
//! (`raft.members`) and the newest Raft snapshot (`raft.snapshot`).
//!
//! Format: the payload, then its xxh3-128 (16 bytes, little-endian). A file
//! whose checksum does not hold is refused naming it, never guessed at.
//!
//! Invariants: a file is replaced only through a temporary file that is
//! synced, renamed over it, and made durable by a directory sync, so a crash
//! leaves the old version or the new one, whole.

use journal::{Storage, StorageFile};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_128;

/// The vote file's name.
pub const VOTE_FILE: &str = "raft.vote";
/// The membership file's name.
pub const MEMBERS_FILE: &str = "raft.members";
/// The snapshot file's name.
pub const SNAPSHOT_FILE: &str = "raft.snapshot";

/// A small file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// An I/O call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The checksum does not hold, or the payload does not decode.
    #[error("{} is damaged: {what}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl From<FileError> for std::io::Error {
    fn from(e: FileError) -> std::io::Error {
        std::io::Error::other(e)
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError::Io { op, path, source }
}

/// Replaces `dir/name` with `payload` (durably, see the module doc).
pub fn write_file<S: Storage>(
    storage: &S,
    dir: &Path,
    name: &str,
    payload: &[u8],
) -> Result<(), FileError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut bytes = Vec::with_capacity(payload.len() + 16);
    bytes.extend_from_slice(payload);
    bytes.extend_from_slice(&xxh3_128(payload).to_le_bytes());
    if storage
        .list(dir)
        .map_err(io("list", dir))?
        .iter()
        .any(|n| *n == format!("{name}.tmp"))
    {
        storage.remove(&tmp).map_err(io("remove", &tmp))?;
    }
    let mut f = storage.create(&tmp).map_err(io("create", &tmp))?;
    f.write_at(&bytes, 0).map_err(io("write", &tmp))?;
    f.sync_data().map_err(io("fdatasync", &tmp))?;
    storage.rename(&tmp, &path).map_err(io("rename", &tmp))?;
    storage.sync_dir(dir).map_err(io("fsync dir", dir))
}

/// The payload of `dir/name`, `None` when there is no such file.
pub fn read_file<S: Storage>(
    storage: &S,
    dir: &Path,
    name: &str,
) -> Result<Option<Vec<u8>>, FileError> {
    let path = dir.join(name);
    if !storage
        .list(dir)
        .map_err(io("list", dir))?
        .iter()
        .any(|n| n == name)
    {
        return Ok(None);
    }
    let f = storage.open_read(&path).map_err(io("open", &path))?;
    let len = f.len().map_err(io("stat", &path))? as usize;
    let damaged = |what: String| FileError::Damaged {
        path: path.clone(),
        what,
    };
    if len < 16 {
        return Err(damaged(format!("{len} bytes, shorter than its checksum")));
    }
    let mut bytes = vec![0u8; len];
    f.read_at(&mut bytes, 0).map_err(io("read", &path))?;
    let (payload, sum) = bytes.split_at(len - 16);
    let sum = u128::from_le_bytes(sum.try_into().expect("16 bytes"));
    if xxh3_128(payload) != sum {
        return Err(damaged("checksum mismatch".into()));
    }
    bytes.truncate(len - 16);
    Ok(Some(bytes))
}

/// `read_file`, decoded with postcard.
pub fn read_value<S: Storage, T: serde::de::DeserializeOwned>(
    storage: &S,
    dir: &Path,
    name: &str,
) -> Result<Option<T>, FileError> {
    let Some(bytes) = read_file(storage, dir, name)? else {
        return Ok(None);
    };
    postcard::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| FileError::Damaged {
            path: dir.join(name),
            what: format!("does not decode: {e}"),
        })
}

/// `write_file` of a value encoded with postcard.
pub fn write_value<S: Storage, T: serde::Serialize>(
    storage: &S,
    dir: &Path,
    name: &str,
    value: &T,
) -> Result<(), FileError> {
    let bytes = postcard::to_allocvec(value).expect("postcard encodes every Raft value");
    write_file(storage, dir, name, &bytes)
}
