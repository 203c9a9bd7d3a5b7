//! What a replicated partition's history writer shares with its Raft
//! group (the `replica` crate): the items of the history ring, the run
//! this node has cut and not yet seen installed (for the leader to ship
//! and propose), the engine's state after a snapshot restore (to re-seed
//! the writer), whether this node serves, and the partition's history
//! directory and id filter (for runs adopted from peers).
//!
//! It also carries what the node's history compaction needs: the store
//! the engine answers from (its link, replaced at each restore), the seq
//! its Raft log is purged through (a run is merged only once no peer can
//! be sent its install from here), a lock merges and adoptions share, and
//! a pause while a snapshot's files are fetched.
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
use journal::history::{HistoryLink, IdFilter};
use journal::FsFile;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// The store the engine answers from, as compaction needs it.
#[derive(Debug, Clone)]
pub struct StoreLink {
    /// Its link (installs seen, files handed over).
    pub link: Arc<HistoryLink<FsFile>>,
    /// The run installed when it was attached (0: none).
    pub installed_run: u64,
    /// The seq it was attached at (its runs were installed at or before).
    pub by_seq: u64,
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
    merges: Mutex<()>,
    paused: AtomicUsize,
    purged_seq: Arc<AtomicU64>,
    store: Mutex<Option<StoreLink>>,
    generation: AtomicU64,
}

/// Compaction waits while one is held (see [`HistoryHandoff::pause`]).
#[derive(Debug)]
pub struct MergePause<'a>(&'a HistoryHandoff);

impl Drop for MergePause<'_> {
    fn drop(&mut self) {
        self.0.paused.fetch_sub(1, Ordering::AcqRel);
    }
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
            merges: Mutex::new(()),
            paused: AtomicUsize::new(0),
            purged_seq: Arc::new(AtomicU64::new(0)),
            store: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// Held by a merge and by a peer's file being adopted (taken before
    /// the files lock): the two never touch the directory at once.
    pub fn lock_merges(&self) -> MutexGuard<'_, ()> {
        lock(&self.merges)
    }

    /// No merge starts while the guard lives (a snapshot's files are being
    /// fetched: merging the files it replaces would be wasted).
    pub fn pause(&self) -> MergePause<'_> {
        self.paused.fetch_add(1, Ordering::AcqRel);
        MergePause(self)
    }

    /// Whether a [`MergePause`] is held.
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Acquire) > 0
    }

    /// The seq the partition's Raft log is purged through, as the log
    /// store publishes it.
    pub fn purged_seq_cell(&self) -> Arc<AtomicU64> {
        self.purged_seq.clone()
    }

    /// The seq the Raft log is purged through (0: nothing purged).
    pub fn purged_seq(&self) -> u64 {
        self.purged_seq.load(Ordering::Acquire)
    }

    /// The engine's store changed (a restore attached a new one): its link
    /// replaces the last; compaction starts again from it.
    pub fn put_store(&self, s: StoreLink) {
        *lock(&self.store) = Some(s);
        self.note_files_changed();
    }

    /// The store attached at start, unless a restore attached one first.
    pub fn put_first_store(&self, s: StoreLink) {
        let mut g = lock(&self.store);
        if g.is_none() {
            *g = Some(s);
            drop(g);
            self.note_files_changed();
        }
    }

    /// The engine's store, once one is attached.
    pub fn store(&self) -> Option<StoreLink> {
        lock(&self.store).clone()
    }

    /// Files changed other than by a merge here (a store attached, a
    /// peer's file adopted): compaction lists them again.
    pub fn note_files_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Bumped by [`Self::note_files_changed`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
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
