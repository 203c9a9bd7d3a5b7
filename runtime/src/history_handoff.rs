//! What a replicated partition's history writer shares with its Raft
//! group (the `replica` crate): the items of the history ring, the run
//! this node has cut and not yet seen installed (for the leader to ship
//! and propose), the engine's state after a snapshot restore (to re-seed
//! the writer), whether this node serves, and the partition's history
//! directory and id filter (for runs adopted from peers).
//!
//! Invariants: no run file whose install the log holds is ever replaced
//! (a cut or an adoption of run N happens only under the files lock, and
//! only while no install of N or later was handed to the engine); the
//! writer learns installs and restores in the ring, in
//! stream order, never from a clock or a second channel, so its waiting
//! changes are exactly those after the last installed run at every point;
//! a reset is put before the restore is queued and taken at the restore's
//! mark, so no change of the replaced engine is kept and none of the new
//! one is lost; a published cut is withdrawn as soon as a run at or past
//! it is installed (whoever cut it).

use engine::history::TransferRecord;
use engine::Seq;
use journal::history::IdFilter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One item of the history ring, in the engine's apply order.
#[derive(Debug, Clone, Copy)]
pub enum HistoryItem {
    /// One transfer change (`Events::changes`).
    Change(TransferRecord),
    /// The engine applied the install of run `run` through `through`.
    Installed {
        /// The run.
        run: u64,
        /// Its through seq.
        through: Seq,
    },
    /// The engine was replaced by a restored one: the waiting changes
    /// start again from [`HistoryHandoff::take_reset`].
    Restored,
}

/// A run this node wrote and has not seen installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutRun {
    /// The run.
    pub run: u64,
    /// Its through seq.
    pub through: Seq,
    /// Its content checksum (what `install_history` names).
    pub checksum: u128,
}

/// A restored engine's history position and its changes after it.
#[derive(Debug)]
pub struct HistoryReset {
    /// The last installed run (0: none).
    pub run: u64,
    /// Its through seq.
    pub through: Seq,
    /// `Engine::history_tail(through)`.
    pub tail: Vec<TransferRecord>,
}

/// See the module doc.
#[derive(Debug)]
pub struct HistoryHandoff {
    dir: PathBuf,
    filter: Option<Arc<IdFilter>>,
    serving: AtomicBool,
    installed_run: AtomicU64,
    queued_run: AtomicU64,
    files: Mutex<()>,
    cut: Mutex<Option<CutRun>>,
    reset: Mutex<Option<HistoryReset>>,
}

/// Poison is ignored: every value here is whole after any store.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HistoryHandoff {
    /// For the history in `dir` whose ids `filter` holds.
    pub fn new(dir: &Path, filter: Option<Arc<IdFilter>>) -> Self {
        HistoryHandoff {
            dir: dir.to_path_buf(),
            filter,
            serving: AtomicBool::new(false),
            installed_run: AtomicU64::new(0),
            queued_run: AtomicU64::new(0),
            files: Mutex::new(()),
            cut: Mutex::new(None),
            reset: Mutex::new(None),
        }
    }

    /// The partition's history directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The partition's id filter (runs adopted from peers add their ids).
    pub fn filter(&self) -> Option<&Arc<IdFilter>> {
        self.filter.as_ref()
    }

    /// Whether this node serves (leads, with everything earlier applied):
    /// only then does its writer cut runs.
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// Set by the group's watcher.
    pub fn set_serving(&self, on: bool) {
        self.serving.store(on, Ordering::Release);
    }

    /// The last run the writer saw installed (0: none).
    pub fn installed_run(&self) -> u64 {
        self.installed_run.load(Ordering::Acquire)
    }

    /// The highest run whose install was handed to the engine (applied or
    /// queued; a restored snapshot's counts): its file is the one the log
    /// names, so no cut or adoption may replace it.
    pub fn queued_run(&self) -> u64 {
        self.queued_run.load(Ordering::Acquire)
    }

    /// Apply side: an install of `run` is about to be handed to the engine
    /// (called before its file is checked, so a cut that starts later
    /// leaves it alone).
    pub fn note_queued(&self, run: u64) {
        self.queued_run.fetch_max(run, Ordering::AcqRel);
    }

    /// Held while a run file is checked, cut or adopted: the writer's cut
    /// and the apply side's check-then-fetch never interleave.
    pub fn lock_files(&self) -> MutexGuard<'_, ()> {
        lock(&self.files)
    }

    /// The run cut and not seen installed, if any.
    pub fn cut(&self) -> Option<CutRun> {
        *lock(&self.cut)
    }

    /// Writer: `c` was written.
    pub fn put_cut(&self, c: CutRun) {
        *lock(&self.cut) = Some(c);
    }

    /// Writer: run `run` is installed (or the engine restarted from a
    /// snapshot that installed it): withdraw a cut at or before it.
    pub fn note_installed(&self, run: u64) {
        self.installed_run.store(run, Ordering::Release);
        let mut c = lock(&self.cut);
        if c.is_some_and(|c| c.run <= run) {
            *c = None;
        }
    }

    /// Restoring executor: the restored engine's position, put before the
    /// restore is queued.
    pub fn put_reset(&self, r: HistoryReset) {
        *lock(&self.reset) = Some(r);
    }

    /// Writer, at the restore's mark.
    pub fn take_reset(&self) -> Option<HistoryReset> {
        lock(&self.reset).take()
    }

    /// Group: the cut `c` is no longer this node's file of its run (another
    /// leader's run of that number replaced it): withdrawn, so the writer
    /// cuts again. A different cut published meanwhile stays.
    pub fn withdraw(&self, c: CutRun) {
        let mut cut = lock(&self.cut);
        if *cut == Some(c) {
            *cut = None;
        }
    }

    /// Writer, at a restore: no cut survives it.
    pub fn clear_cut(&self) {
        *lock(&self.cut) = None;
    }
}
