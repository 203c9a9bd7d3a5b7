//! `SimDisk`: an in-memory `Storage` that models what a crash does to a real
//! disk, for seeded fault tests.
//!
//! Model: every file (inode) has a `current` image (what reads see) and a
//! `durable` image (what survives a crash), plus the list of writes since its
//! last `sync_data`. The directory has a current and a durable name table;
//! `sync_dir` makes the current names under that directory durable.
//! `crash()` reverts every file and name to its durable state; with
//! `tear_last` it first applies a random subset of the 512-byte sectors of
//! the most recent unsynced write (a torn write: sectors land whole, in any
//! order; `reader` relies on exactly this). `flip_bits` corrupts durable bytes
//! afterwards. Failures of `sync_data` can be injected. The disk is shared:
//! clones (and files opened from it) see the same state.

use super::reader::SECTOR;
use super::storage::{Storage, StorageFile};
use crate::record::SplitMix64;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default, Clone)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Unsynced writes since the last sync, oldest first.
    pending: Vec<(u64, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    /// The inode of the most recent unsynced write, for tearing.
    last_write: Option<usize>,
    /// Fail every `sync_data` from now on.
    fail_sync: bool,
    /// Fail every write and preallocation from now on with ENOSPC.
    disk_full: bool,
    syncs: u64,
}

/// A simulated disk (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

/// A file open on a `SimDisk`.
#[derive(Debug)]
pub struct SimFile {
    disk: SimDisk,
    inode: usize,
}

fn write_into(buf: &mut Vec<u8>, off: u64, data: &[u8]) {
    let end = off as usize + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[off as usize..end].copy_from_slice(data);
}

/// ENOSPC, as the kernel reports it.
fn no_space() -> io::Error {
    io::Error::from_raw_os_error(28)
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Crashes: drops every unsynced write and name change. With
    /// `tear_last`, a random subset of the 512-byte sectors of the last
    /// unsynced write (possibly none, possibly all) reaches the disk first:
    /// a disk writes a sector atomically, but not a multi-sector write, nor
    /// in order.
    pub fn crash(&self, rng: &mut SplitMix64, tear_last: bool) {
        let mut s = self.lock();
        if tear_last {
            if let Some(i) = s.last_write {
                if let Some((off, data)) = s.inodes[i]
                    .pending
                    .last()
                    .filter(|(_, d)| !d.is_empty())
                    .cloned()
                {
                    // Each sector lands whole or not at all, in any order.
                    for (k, sector) in data.chunks(SECTOR).enumerate() {
                        if rng.chance(1, 2) {
                            let at = off + (k * SECTOR) as u64;
                            write_into(&mut s.inodes[i].durable, at, sector);
                        }
                    }
                }
            }
        }
        for ino in &mut s.inodes {
            ino.current = ino.durable.clone();
            ino.pending.clear();
        }
        s.names = s.durable_names.clone();
        s.last_write = None;
        s.fail_sync = false;
        s.disk_full = false;
    }

    /// Flips `n` random bits of the durable image of `path` within
    /// `range` (clamped to the file); the current image follows. Returns
    /// the byte offsets flipped.
    pub fn flip_bits(
        &self,
        rng: &mut SplitMix64,
        path: &Path,
        range: std::ops::Range<u64>,
        n: usize,
    ) -> Vec<u64> {
        let mut s = self.lock();
        let Some(&i) = s.names.get(path) else {
            return Vec::new();
        };
        let len = s.inodes[i].durable.len() as u64;
        let (lo, hi) = (range.start.min(len), range.end.min(len));
        let mut out = Vec::new();
        if lo >= hi {
            return out;
        }
        for _ in 0..n {
            let at = lo + rng.below(hi - lo);
            let bit = 1u8 << rng.below(8);
            s.inodes[i].durable[at as usize] ^= bit;
            s.inodes[i].current[at as usize] ^= bit;
            out.push(at);
        }
        out
    }

    /// Makes every later `sync_data` fail (until the next crash).
    pub fn fail_syncs(&self) {
        self.lock().fail_sync = true;
    }

    /// Makes every later write and preallocation fail with ENOSPC, as a
    /// full disk does (until the next crash).
    pub fn fill_up(&self) {
        self.lock().disk_full = true;
    }

    /// How many `sync_data` calls succeeded.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// The current bytes of a file (for tests).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        s.names.get(path).map(|&i| s.inodes[i].current.clone())
    }
}

impl StorageFile for SimFile {
    fn try_clone(&self) -> io::Result<SimFile> {
        Ok(SimFile {
            disk: self.disk.clone(),
            inode: self.inode,
        })
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.disk.lock().inodes[self.inode].current.len() as u64)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.disk.lock();
        let ino = &mut s.inodes[self.inode];
        // Not a write that can tear: a crash before the next sync simply
        // reverts it with the rest of `current`.
        ino.current.resize(len as usize, 0);
        Ok(())
    }
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        {
            let mut s = self.disk.lock();
            if s.disk_full {
                return Err(no_space());
            }
            let ino = &mut s.inodes[self.inode];
            if (ino.current.len() as u64) < len {
                ino.current.resize(len as usize, 0);
            }
        }
        self.sync_data()
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.disk.lock();
        if s.disk_full {
            return Err(no_space());
        }
        let ino = &mut s.inodes[self.inode];
        write_into(&mut ino.current, offset, buf);
        ino.pending.push((offset, buf.to_vec()));
        s.last_write = Some(self.inode);
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let s = self.disk.lock();
        let cur = &s.inodes[self.inode].current;
        let end = offset as usize + buf.len();
        if end > cur.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end of file",
            ));
        }
        buf.copy_from_slice(&cur[offset as usize..end]);
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let mut s = self.disk.lock();
        if s.fail_sync {
            return Err(io::Error::other("simulated fdatasync failure"));
        }
        let ino = &mut s.inodes[self.inode];
        ino.durable = ino.current.clone();
        ino.pending.clear();
        if s.last_write == Some(self.inode) {
            s.last_write = None;
        }
        s.syncs += 1;
        Ok(())
    }
}

impl Storage for SimDisk {
    type File = SimFile;
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let mut s = self.lock();
        if s.names.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
        }
        s.inodes.push(Inode::default());
        let inode = s.inodes.len() - 1;
        s.names.insert(path.to_path_buf(), inode);
        Ok(SimFile {
            disk: self.clone(),
            inode,
        })
    }
    fn open(&self, path: &Path) -> io::Result<SimFile> {
        let s = self.lock();
        match s.names.get(path) {
            Some(&inode) => Ok(SimFile {
                disk: self.clone(),
                inode,
            }),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        }
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let Some(i) = s.names.remove(from) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
        };
        s.names.insert(to.to_path_buf(), i);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        match s.names.remove(path) {
            Some(_) => Ok(()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
        }
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let names = s.names.clone();
        s.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, i) in names {
            if p.parent() == Some(dir) {
                s.durable_names.insert(p, i);
            }
        }
        Ok(())
    }
}
