//! History files travelling between replicas: a run file's bytes read for
//! a peer, the files a directory holds (first run, last run, checksum), a
//! piece of the file holding a run (a merged file is hundreds of MB: it
//! travels in chunks), and a peer's file adopted here — a single run or a
//! merged one, replacing the local files whose runs it holds.
//!
//! Invariants: no adopted file carries its final name before it is synced
//! and read back whole (every block checksum, the filter, the account
//! index), exactly as a locally cut run; an adopted file holds the run it
//! was fetched for under the checksum the log names, and every member run
//! below `installed_below` under the checksum this directory already holds
//! it with (installed runs are never rewritten, only re-housed); every id of
//! an adopted file is in the partition's id filter before `adopt_file`
//! returns, so the engine never asks for an id the filter cannot see; a
//! file is adopted only right after a file boundary (run `first − 1` ends a
//! file here, or `first` is 1), so a directory never holds a chain `open`
//! would refuse.

use super::format::{file_name, parse_file_name, run_name, Header, HEADER_LEN};
use super::store::{outermost, HistoryError, HistoryLink, Run, RunFault};
use super::IdFilter;
use crate::{Storage, StorageFile};
use std::path::{Path, PathBuf};

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HistoryError {
    let path = path.to_path_buf();
    move |source| HistoryError::Io { op, path, source }
}

/// The bytes of run `run`'s own file in `dir` (`None`: no such file).
pub fn read_run_bytes<S: Storage>(
    storage: &S,
    dir: &Path,
    run: u64,
) -> Result<Option<Vec<u8>>, HistoryError> {
    let path = dir.join(run_name(run));
    let f = match storage.open_read(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let len = f.len().map_err(io_err("stat", &path))?;
    let mut bytes = vec![0u8; len as usize];
    f.read_at(&mut bytes, 0).map_err(io_err("read", &path))?;
    Ok(Some(bytes))
}

/// One file of a history directory: the runs it holds and its header's
/// content checksum (0: a header that does not read or decode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// First run held.
    pub first: u64,
    /// Last run held.
    pub last: u64,
    /// The header's content checksum.
    pub checksum: u128,
}

/// The files of `dir` as `open` resolves them (a file a merged one holds
/// is left out), oldest first: (first, last).
fn chain<S: Storage>(storage: &S, dir: &Path) -> Result<Vec<(u64, u64)>, HistoryError> {
    let names = match storage.list(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let spans = names.iter().filter_map(|n| parse_file_name(n)).collect();
    outermost(dir, spans, &mut Vec::new())
}

/// Every file of `dir` (see [`FileEntry`]), oldest first.
pub fn list_files<S: Storage>(storage: &S, dir: &Path) -> Result<Vec<FileEntry>, HistoryError> {
    let mut out = Vec::new();
    for (first, last) in chain(storage, dir)? {
        let path = dir.join(file_name(first, last));
        let checksum = open_if_there(storage, &path)?.map_or(0, |f| header_checksum(&f));
        out.push(FileEntry {
            first,
            last,
            checksum,
        });
    }
    Ok(out)
}

/// The file of `dir` holding run `run`: (first, last).
pub fn holder<S: Storage>(
    storage: &S,
    dir: &Path,
    run: u64,
) -> Result<Option<(u64, u64)>, HistoryError> {
    Ok(chain(storage, dir)?
        .into_iter()
        .find(|&(f, l)| (f..=l).contains(&run)))
}

/// The checksum under which `dir` holds run `run`: its own file's header,
/// or its merged file's member entry (`None`: not held; 0: a file that
/// does not read or decode, so it differs from every real run).
pub fn checksum_held<S: Storage>(
    storage: &S,
    dir: &Path,
    run: u64,
) -> Result<Option<u128>, HistoryError> {
    match holder(storage, dir, run)? {
        None => Ok(None),
        Some((f, l)) if f == l => Ok(Some(run_checksum(storage, dir, run)?.unwrap_or(0))),
        Some((f, l)) => {
            let opened = Run::open(storage, &dir.join(file_name(f, l)));
            Ok(Some(
                opened.ok().and_then(|r| r.checksum_of(run)).unwrap_or(0),
            ))
        }
    }
}

/// A piece of the file holding a run, as a peer sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChunk {
    /// The file.
    pub file: FileEntry,
    /// Its length in bytes.
    pub len: u64,
    /// Bytes from the offset asked for (at most the most asked for).
    pub bytes: Vec<u8>,
}

/// Up to `max` bytes from `offset` of the file of `dir` holding run `run`
/// (`None`: no file holds it).
pub fn read_file_chunk<S: Storage>(
    storage: &S,
    dir: &Path,
    run: u64,
    (offset, max): (u64, u64),
) -> Result<Option<FileChunk>, HistoryError> {
    let Some((first, last)) = holder(storage, dir, run)? else {
        return Ok(None);
    };
    let path = dir.join(file_name(first, last));
    // Merged away since it was listed: not held any more.
    let Some(f) = open_if_there(storage, &path)? else {
        return Ok(None);
    };
    let len = f.len().map_err(io_err("stat", &path))?;
    let checksum = header_checksum(&f);
    let start = offset.min(len);
    let mut bytes = vec![0u8; (len - start).min(max) as usize];
    f.read_at(&mut bytes, start)
        .map_err(io_err("read", &path))?;
    Ok(Some(FileChunk {
        file: FileEntry {
            first,
            last,
            checksum,
        },
        len,
        bytes,
    }))
}

/// The content checksum in an open file's header (0: a header that does
/// not read or decode, so it differs from every real run).
fn header_checksum<F: StorageFile>(f: &F) -> u128 {
    let mut raw = [0u8; HEADER_LEN];
    match f.read_at(&mut raw, 0) {
        Ok(()) => Header::decode(&raw).map_or(0, |h| h.checksum),
        Err(_) => 0,
    }
}

/// The file at `path`, open for reading (`None`: no such file).
fn open_if_there<S: Storage>(storage: &S, path: &Path) -> Result<Option<S::File>, HistoryError> {
    match storage.open_read(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("open", path)(e)),
    }
}

/// The content checksum in the header of run `run`'s own file in `dir`
/// (`None`: no such file; 0: a header that does not read or decode).
pub fn run_checksum<S: Storage>(
    storage: &S,
    dir: &Path,
    run: u64,
) -> Result<Option<u128>, HistoryError> {
    Ok(open_if_there(storage, &dir.join(run_name(run)))?.map(|f| header_checksum(&f)))
}

/// What a file adopted from a peer must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A file holding run `run` under `checksum` (its own header's, or its
    /// member entry's in a merged file): what an install names.
    Run {
        /// The run.
        run: u64,
        /// Its content checksum.
        checksum: u128,
    },
    /// Exactly this file (a peer's listing).
    File(FileEntry),
}

/// Adopts `bytes` (a peer's run or merged file) into `dir` (see the module
/// doc): refused unless they decode as what `expect` says, start right
/// after a file boundary here, hold every member run below
/// `installed_below` under the checksum this directory holds it with, and
/// read back whole; then its ids go into `filter`, it takes its final name
/// and every other file here whose runs overlap its own is removed.
/// Returns the file's runs (first, last).
pub fn adopt_file<S: Storage>(
    storage: &S,
    dir: &Path,
    expect: Expect,
    bytes: &[u8],
    opts: (Option<&IdFilter>, u64),
) -> Result<(u64, u64), HistoryError> {
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or(RunFault::Length {
            expected: HEADER_LEN as u64,
            found: bytes.len() as u64,
        })
        .and_then(|h| Ok(Header::decode(h.try_into().expect("header length"))?))
        .map_err(|fault| HistoryError::Corrupt {
            path: dir.to_path_buf(),
            fault,
        })?;
    let entry = FileEntry {
        first: header.first_run,
        last: header.run,
        checksum: header.checksum,
    };
    let mut incoming = Incoming::start(storage, dir, entry, bytes.len() as u64, "tmp")?;
    incoming.push(bytes)?;
    incoming.finish(storage, dir, expect, opts)
}

/// A peer's file being received piece by piece into `<name>.<suffix>` in
/// the history directory (memory holds one piece at a time; `open`
/// removes a leftover), then adopted whole ([`Incoming::finish`]).
#[derive(Debug)]
pub struct Incoming<F> {
    file: F,
    tmp: PathBuf,
    entry: FileEntry,
    len: u64,
    written: u64,
}

impl<F: StorageFile> Incoming<F> {
    /// Starts receiving `entry` (`len` bytes) into `dir`.
    pub fn start<S: Storage<File = F>>(
        storage: &S,
        dir: &Path,
        entry: FileEntry,
        len: u64,
        suffix: &str,
    ) -> Result<Self, HistoryError> {
        storage
            .create_dir_all(dir)
            .map_err(io_err("create dir", dir))?;
        let tmp = dir.join(format!("{}.{suffix}", file_name(entry.first, entry.last)));
        // A leftover of an attempt that failed before its rename.
        let _ = storage.remove(&tmp);
        let file = storage.create(&tmp).map_err(io_err("create", &tmp))?;
        Ok(Incoming {
            file,
            tmp,
            entry,
            len,
            written: 0,
        })
    }

    /// The file being received.
    pub fn entry(&self) -> FileEntry {
        self.entry
    }

    /// Bytes received so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether every byte is here.
    pub fn complete(&self) -> bool {
        self.written >= self.len
    }

    /// Appends the next piece (no more than the file's length).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), HistoryError> {
        let take = bytes.len().min((self.len - self.written) as usize);
        self.file
            .write_at(&bytes[..take], self.written)
            .map_err(io_err("write", &self.tmp))?;
        self.written += take as u64;
        Ok(())
    }

    /// Gives up: the partial file goes.
    pub fn abandon<S: Storage<File = F>>(self, storage: &S) {
        drop(self.file);
        let _ = storage.remove(&self.tmp);
    }

    /// Syncs the received file and adopts it as [`adopt_file`] says.
    pub fn finish<S: Storage<File = F>>(
        mut self,
        storage: &S,
        dir: &Path,
        expect: Expect,
        (filter, installed_below): (Option<&IdFilter>, u64),
    ) -> Result<(u64, u64), HistoryError> {
        let tmp = self.tmp.clone();
        let adopted = self
            .file
            .sync_data()
            .map_err(io_err("fdatasync", &tmp))
            .and_then(|()| {
                drop(self.file);
                adopt_written(storage, dir, &tmp, expect, (filter, installed_below))
            });
        if adopted.is_err() {
            let _ = storage.remove(&tmp);
        }
        adopted
    }
}

/// [`adopt_file`]'s checks and steps on a synced file at `tmp`.
fn adopt_written<S: Storage>(
    storage: &S,
    dir: &Path,
    tmp: &Path,
    expect: Expect,
    (filter, installed_below): (Option<&IdFilter>, u64),
) -> Result<(u64, u64), HistoryError> {
    let corrupt = |fault| HistoryError::Corrupt {
        path: tmp.to_path_buf(),
        fault,
    };
    let opened = Run::open(storage, tmp).map_err(corrupt)?;
    let (first, last) = (opened.header.first_run, opened.header.run);
    check_expected(&opened.header, expect).map_err(corrupt)?;
    check_boundary(storage, dir, first)?;
    opened.verify_all().map_err(corrupt)?;
    check_members(storage, dir, &opened, expect, installed_below)?;
    if let Some(filter) = filter {
        opened
            .scan(|r| filter.insert(r.spec.id.0))
            .map_err(corrupt)?;
    }
    drop(opened);
    let path = dir.join(file_name(first, last));
    storage.rename(tmp, &path).map_err(io_err("rename", tmp))?;
    storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    remove_overlapping(storage, dir, (first, last))?;
    Ok((first, last))
}

/// The header says what `expect` asks for (a merged file's member entry
/// is checked once the file is open).
fn check_expected(h: &Header, expect: Expect) -> Result<(), RunFault> {
    let ok = match expect {
        Expect::Run { run, checksum } => {
            (h.first_run..=h.run).contains(&run) && (h.first_run < h.run || h.checksum == checksum)
        }
        Expect::File(e) => (h.first_run, h.run, h.checksum) == (e.first, e.last, e.checksum),
    };
    if ok && h.first_run >= 1 {
        return Ok(());
    }
    let expected = match expect {
        Expect::Run { checksum, .. } => checksum,
        Expect::File(e) => e.checksum,
    };
    Err(RunFault::Mismatch {
        expected,
        found: h.checksum,
    })
}

/// Run `first − 1` ends a file here (or `first` is 1).
fn check_boundary<S: Storage>(storage: &S, dir: &Path, first: u64) -> Result<(), HistoryError> {
    if first <= 1 {
        return Ok(());
    }
    match holder(storage, dir, first - 1)? {
        Some((_, l)) if l == first - 1 => Ok(()),
        Some((f, l)) => Err(HistoryError::Overlap {
            path: dir.join(file_name(first, first)),
            other: dir.join(file_name(f, l)),
        }),
        None => Err(HistoryError::Missing {
            path: dir.join(run_name(first - 1)),
        }),
    }
}

/// The opened file holds the run `expect` names under its checksum, and
/// every member below `installed_below` as this directory holds it.
fn check_members<S: Storage>(
    storage: &S,
    dir: &Path,
    r: &Run<S::File>,
    expect: Expect,
    installed_below: u64,
) -> Result<(), HistoryError> {
    let mismatch = |path: PathBuf, expected, found: Option<u128>| HistoryError::Corrupt {
        path,
        fault: RunFault::Mismatch {
            expected,
            found: found.unwrap_or(0),
        },
    };
    if let Expect::Run { run, checksum } = expect {
        if r.checksum_of(run) != Some(checksum) {
            return Err(mismatch(r.path.clone(), checksum, r.checksum_of(run)));
        }
    }
    for m in r.member_list().iter().filter(|m| m.run < installed_below) {
        match checksum_held(storage, dir, m.run)? {
            Some(c) if c != m.checksum => {
                return Err(mismatch(dir.join(run_name(m.run)), c, Some(m.checksum)))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes every file of `dir` but `file_name(first, last)` whose runs
/// overlap `first..=last` (the adopted file holds them, or replaces a
/// file grouped otherwise), then syncs the directory.
fn remove_overlapping<S: Storage>(
    storage: &S,
    dir: &Path,
    (first, last): (u64, u64),
) -> Result<(), HistoryError> {
    let names = storage.list(dir).map_err(io_err("list", dir))?;
    let mut removed = false;
    for (f, l) in names.iter().filter_map(|n| parse_file_name(n)) {
        if (f, l) != (first, last) && f <= last && l >= first {
            let p = dir.join(file_name(f, l));
            storage.remove(&p).map_err(io_err("remove", &p))?;
            removed = true;
        }
    }
    if removed {
        storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    }
    Ok(())
}

/// [`adopt_file`] of a single run `run` under `checksum` (a leader's cut).
pub fn adopt_run<S: Storage>(
    storage: &S,
    dir: &Path,
    (run, checksum): (u64, u128),
    bytes: &[u8],
    filter: Option<&IdFilter>,
) -> Result<PathBuf, HistoryError> {
    let single = FileEntry {
        first: run,
        last: run,
        checksum,
    };
    adopt_file(storage, dir, Expect::File(single), bytes, (filter, run))?;
    Ok(dir.join(run_name(run)))
}

impl<F: StorageFile> HistoryLink<F> {
    /// Hands the engine's store a file adopted from a peer (`path`, opened
    /// here, off the engine thread): the store puts it in place of every
    /// file from its first run on (see `DiskHistory`'s swap).
    pub fn offer_adopted<S: Storage<File = F>>(
        &self,
        storage: &S,
        path: &Path,
    ) -> Result<(), HistoryError> {
        let run = Run::open(storage, path).map_err(|fault| HistoryError::Corrupt {
            path: path.to_path_buf(),
            fault,
        })?;
        self.offer_fetched(run);
        Ok(())
    }
}
