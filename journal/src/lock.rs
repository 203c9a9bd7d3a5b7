//! The data-directory lock: one writer per data directory.
//!
//! Every process that writes a data directory (`serve`, `pipeline`,
//! `journal repair`) takes an exclusive advisory lock (`flock`, through
//! `File::try_lock`) on `<data dir>/bourse.lock` before it reads or writes
//! anything else there, and holds it until it exits. The file holds the
//! holder's pid, command line and start time, so a refused second writer can
//! name it.
//!
//! Invariants: the kernel drops the lock when the holder's last descriptor
//! closes, including on SIGKILL, so a lock file left by a dead process never
//! blocks (its contents are only a description, never the lock itself);
//! readers (`journal verify`, `journal dump`) never create the file and take
//! only a momentary shared lock to learn whether a writer is live, which is
//! why `acquire` retries for a short while before it gives up.
//!
//! `File::try_lock`/`try_lock_shared`/`unlock` are std since Rust 1.89, the
//! workspace's declared `rust-version`.

use super::storage::create_private_dir;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Name of the lock file in a data directory.
pub const LOCK_NAME: &str = "bourse.lock";

/// How long `acquire` keeps trying while the lock is held (long enough to
/// outlast a reader's momentary shared lock, short enough to fail fast).
const ACQUIRE_PATIENCE: Duration = Duration::from_millis(500);

/// Why a data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock.
    #[error("data directory {} is in use by another process ({holder}); lock file {}", dir.display(), dir.join(LOCK_NAME).display())]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// The directory or the lock file could not be created, opened or locked.
    #[error("cannot lock data directory {}: {op} {}: {source}", dir.display(), path.display())]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// An exclusive lock on a data directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    dir: PathBuf,
}

impl DirLock {
    /// Creates `dir` (mode 0700) and locks it for this process, or fails
    /// naming the live holder.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_NAME);
        let io = |op: &'static str, p: &Path| {
            let (dir, path) = (dir.to_path_buf(), p.to_path_buf());
            move |source| LockError::Io {
                dir,
                op,
                path,
                source,
            }
        };
        create_private_dir(dir).map_err(io("create dir", dir))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io("open", &path))?;
        let t0 = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if t0.elapsed() < ACQUIRE_PATIENCE => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(LockError::Held {
                        dir: dir.to_path_buf(),
                        holder: describe(&file),
                    })
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io("flock", &path)(e)),
            }
        }
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let args: Vec<String> = std::env::args().collect();
        let text = format!(
            "pid {}\ncommand {}\nstarted unix {started}\n",
            std::process::id(),
            args.join(" ")
        );
        file.set_len(0).map_err(io("truncate", &path))?;
        file.write_all_at(text.as_bytes(), 0)
            .map_err(io("write", &path))?;
        Ok(DirLock {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The holder description in a lock file, on one line.
fn describe(file: &File) -> String {
    let mut s = String::new();
    let mut f = file;
    if f.read_to_string(&mut s).is_err() || s.trim().is_empty() {
        return "holder unknown: the lock file is empty".to_string();
    }
    s.lines().map(str::trim).collect::<Vec<_>>().join(", ")
}

/// Whether a live writer holds the lock of the data directory `dir` or of
/// the data directory above it (`dir` may be a partition directory): its
/// description if so. Never creates anything; holds a shared lock only for
/// the instant of the check.
pub fn live_writer(dir: &Path) -> Option<String> {
    let candidates = [Some(dir), dir.parent()];
    for d in candidates.into_iter().flatten() {
        let Ok(file) = File::open(d.join(LOCK_NAME)) else {
            continue;
        };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
            }
            Err(std::fs::TryLockError::WouldBlock) => return Some(describe(&file)),
            Err(std::fs::TryLockError::Error(_)) => {}
        }
    }
    None
}
