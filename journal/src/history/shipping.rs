//! History runs travelling between replicas: a run file's bytes read for a
//! peer, a peer's bytes adopted as a local run, and the list of runs a
//! directory holds (run, checksum), so a node can tell which of its files
//! differ from the leader's.
//!
//! Invariants: no adopted file carries its final name before it is synced
//! and read back whole (every block checksum, the filter, the account
//! index), exactly as a locally cut run; no file of a merged range is
//! adopted (a replicated partition keeps one file per run); every id of an
//! adopted run is in the partition's id filter before `adopt_run` returns,
//! so the engine never asks for an id the filter cannot see; an adopted run
//! with a gap before it (run N without run N − 1) is refused, so a
//! directory never holds a chain `open` would refuse.

use super::format::{parse_file_name, run_name, Header, HEADER_LEN};
use super::store::{HistoryError, Run, RunFault};
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

/// Every single-run file in `dir` as (run, content checksum), by run; a
/// file whose header does not decode is listed with checksum 0 (it differs
/// from every real run, so it is fetched again).
pub fn run_checksums<S: Storage>(
    storage: &S,
    dir: &Path,
) -> Result<Vec<(u64, u128)>, HistoryError> {
    let names = match storage.list(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut out = Vec::new();
    for name in names {
        // Single-run files only (a replicated partition merges none).
        if let Some((_, run)) = parse_file_name(&name).filter(|(f, l)| f == l) {
            out.push((run, run_checksum(storage, dir, run)?.unwrap_or(0)));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The content checksum in the header of run `run`'s own file in `dir`
/// (`None`: no such file; 0: a header that does not read or decode).
pub fn run_checksum<S: Storage>(
    storage: &S,
    dir: &Path,
    run: u64,
) -> Result<Option<u128>, HistoryError> {
    let path = dir.join(run_name(run));
    let f = match storage.open_read(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let mut raw = [0u8; HEADER_LEN];
    Ok(Some(match f.read_at(&mut raw, 0) {
        Ok(()) => Header::decode(&raw).map_or(0, |h| h.checksum),
        Err(_) => 0,
    }))
}

/// Adopts `bytes` (a peer's run file) as run `run` of `dir`: refused unless
/// they decode as exactly that single run with content checksum
/// `checksum`, run `run − 1` is already here (or `run` is 1), and the file
/// reads back whole; then its ids go into `filter`. Replaces a different
/// file of the same run (one never installed here). Returns the path.
pub fn adopt_run<S: Storage>(
    storage: &S,
    dir: &Path,
    (run, checksum): (u64, u128),
    bytes: &[u8],
    filter: Option<&IdFilter>,
) -> Result<PathBuf, HistoryError> {
    let path = dir.join(run_name(run));
    let corrupt = |fault| HistoryError::Corrupt {
        path: path.clone(),
        fault,
    };
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or(RunFault::Length {
            expected: HEADER_LEN as u64,
            found: bytes.len() as u64,
        })
        .and_then(|h| Ok(Header::decode(h.try_into().expect("header length"))?))
        .map_err(corrupt)?;
    if header.run != run || header.first_run != run || header.checksum != checksum {
        return Err(corrupt(RunFault::Mismatch {
            expected: checksum,
            found: header.checksum,
        }));
    }
    if run > 1 && storage.open_read(&dir.join(run_name(run - 1))).is_err() {
        return Err(HistoryError::Missing {
            path: dir.join(run_name(run - 1)),
        });
    }
    storage
        .create_dir_all(dir)
        .map_err(io_err("create dir", dir))?;
    let tmp = dir.join(format!("{}.tmp", run_name(run)));
    let mut f = storage.create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_at(bytes, 0).map_err(io_err("write", &tmp))?;
    f.sync_data().map_err(io_err("fdatasync", &tmp))?;
    drop(f);
    let opened = Run::open(storage, &tmp).and_then(|r| r.verify_all().map(|()| r));
    let opened = match opened {
        Ok(r) => r,
        Err(fault) => {
            let _ = storage.remove(&tmp);
            return Err(corrupt(fault));
        }
    };
    if let Some(filter) = filter {
        opened
            .scan(|r| filter.insert(r.spec.id.0))
            .map_err(corrupt)?;
    }
    drop(opened);
    storage
        .rename(&tmp, &path)
        .map_err(io_err("rename", &tmp))?;
    storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    Ok(path)
}
