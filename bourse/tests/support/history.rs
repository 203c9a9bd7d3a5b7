//! What a node's transfer-history directory holds: every run with the
//! checksum it is held under (its own file's, or its merged file's member
//! entry), and how many files hold them.

use journal::history::{checksum_held, list_files};
use journal::FsStorage;
use std::collections::BTreeMap;
use std::path::Path;

/// (run → checksum, files) of `dir`; `None` while its files change under
/// the read (a merge or an adoption).
pub fn held(dir: &Path) -> Option<(BTreeMap<u64, u128>, usize)> {
    let files = list_files(&FsStorage, dir).ok()?;
    let mut runs = BTreeMap::new();
    for f in &files {
        for run in f.first..=f.last {
            let c = if f.first == f.last {
                f.checksum
            } else {
                checksum_held(&FsStorage, dir, run).ok()??
            };
            runs.insert(run, c);
        }
    }
    Some((runs, files.len()))
}
