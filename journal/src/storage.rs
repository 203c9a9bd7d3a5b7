//! The storage seam: every byte the journal and snapshots persist goes
//! through `Storage`/`StorageFile`, so tests can swap the real file system
//! (`FsStorage`) for a simulated disk (`SimDisk`) that crashes, tears and
//! flips bits.
//!
//! Contract (what callers may rely on, and all they may rely on): data is
//! durable only after `sync_data` on its file returned `Ok`; a new name,
//! rename or removal is durable only after `sync_dir` on its directory
//! returned `Ok`; `preallocate` leaves the file `len` bytes long, zero-filled
//! and synced. All I/O is positional (`write_at`/`read_at`); nothing keeps a
//! file cursor. `FsStorage` creates directories private (0700) and files
//! readable by their owner only (0600): journals and snapshots hold every
//! order and balance.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// One open file.
pub trait StorageFile: Send + std::fmt::Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Sets the length (truncating or extending with zeros); not synced.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes the file `len` bytes of zeros past its current data, with every
    /// block allocated, and syncs it (so later `sync_data` calls do not
    /// update the file size or allocate).
    fn preallocate(&mut self, len: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Fills `buf` from `offset`; an error when the file is shorter.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// fdatasync: makes the written data durable.
    fn sync_data(&mut self) -> io::Result<()>;
    /// A second handle on the same open file (its `sync_data` makes what
    /// either handle wrote durable): a sync can run off the writer's lock.
    fn try_clone(&self) -> io::Result<Self>
    where
        Self: Sized;
}

/// A directory tree of files.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The open-file type.
    type File: StorageFile;
    /// Creates the directory (and parents) if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates a new empty file (an error if it exists).
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing file for reading only (readers never need more,
    /// and must work on files they cannot write).
    fn open_read(&self, path: &Path) -> io::Result<Self::File> {
        self.open(path)
    }
    /// The names (not paths) of the files in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames a file (replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// fsyncs the directory, making names durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsStorage;

/// An open real file.
#[derive(Debug)]
pub struct FsFile(File);

impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        // No fallocate in std (and no unsafe here): write real zeros so every
        // block is allocated, then sync once.
        let cur = self.len()?;
        if cur < len {
            let chunk = vec![0u8; 1 << 20];
            let mut off = cur;
            while off < len {
                let n = (len - off).min(chunk.len() as u64) as usize;
                self.0.write_all_at(&chunk[..n], off)?;
                off += n as u64;
            }
        }
        self.0.sync_all()
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn try_clone(&self) -> io::Result<FsFile> {
        Ok(FsFile(self.0.try_clone()?))
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for FsStorage {
    type File = FsFile;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        create_private_dir(dir)
    }
    fn create(&self, path: &Path) -> io::Result<FsFile> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(FsFile)
    }
    fn open(&self, path: &Path) -> io::Result<FsFile> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(FsFile)
    }
    fn open_read(&self, path: &Path) -> io::Result<FsFile> {
        File::open(path).map(FsFile)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_file() {
                if let Some(n) = e.file_name().to_str() {
                    out.push(n.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Creates `dir` and missing parents private (mode 0700): journals,
/// snapshots and secrets live under it. A directory that already exists
/// keeps its mode (it may be one the operator chose, such as `.`).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Joins a directory and a file name.
pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
