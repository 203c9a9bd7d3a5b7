//! Feed checkpoints handed between a partition's market-data reader and
//! whoever keeps its snapshots, as opaque bytes (the runtime knows no feed
//! format).
//!
//! - *taken*: the reader's checkpoint of its books at a
//!   [`Mark::Snapshot`](crate::Mark::Snapshot), or `None` when it knows its
//!   books are incomplete. A replicated partition's Raft snapshot builder
//!   waits for it and carries it inside the snapshot, so a node that
//!   installs the snapshot gets the market data with the engine; a single
//!   node's journal thread writes each one beside the snapshots, so a
//!   restart starts market data from it.
//! - *installed*: the checkpoint inside a snapshot the executor restored,
//!   read by the reader at the [`Mark::Restore`](crate::Mark::Restore) of
//!   the same seq.
//!
//! Invariants: a checkpoint is only ever matched to the seq it was taken
//! at (never applied to another state); only the newest of each kind is
//! kept (a newer snapshot supersedes); nothing here is locked per input:
//! the journal thread's poll is one atomic load until an answer is new.

use engine::Seq;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Checkpoint bytes, shared without copying between the two sides.
pub type FeedBytes = Arc<[u8]>;

/// One partition's feed checkpoint slots (module doc).
#[derive(Debug, Default)]
pub struct FeedSlots {
    wanted: AtomicBool,
    /// The seq of `taken`, published after it (0: none), so a poller
    /// locks only when there is something new.
    taken_seq: AtomicU64,
    taken: Mutex<Option<(Seq, Option<FeedBytes>)>>,
    installed: Mutex<Option<(Seq, FeedBytes)>>,
}

impl FeedSlots {
    /// A market-data reader serves this partition and answers every
    /// snapshot mark (set once, at its start).
    pub fn want(&self) {
        self.wanted.store(true, Ordering::Release);
    }

    /// Whether a market-data reader answers snapshot marks.
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Acquire)
    }

    /// The reader's answer to the snapshot mark after input `seq`.
    pub fn put_taken(&self, seq: Seq, bytes: Option<FeedBytes>) {
        *lock(&self.taken) = Some((seq, bytes));
        self.taken_seq.store(seq.0, Ordering::Release);
    }

    /// The newest answer, if it is not for `seen` (no lock when it is).
    pub fn taken_since(&self, seen: Option<Seq>) -> Option<(Seq, Option<FeedBytes>)> {
        let at = self.taken_seq.load(Ordering::Acquire);
        if at == 0 || seen == Some(Seq(at)) {
            return None;
        }
        lock(&self.taken).clone().filter(|t| Some(t.0) != seen)
    }

    /// The answer to the snapshot mark after `seq`: `None` while there is
    /// none yet, `Some(None)` when the reader had no complete books.
    pub fn taken_at(&self, seq: Seq) -> Option<Option<FeedBytes>> {
        match &*lock(&self.taken) {
            Some((s, b)) if *s == seq => Some(b.clone()),
            _ => None,
        }
    }

    /// The checkpoint of a snapshot through `seq` that the engine is being
    /// restored from (set before the restore reaches the engine thread).
    pub fn put_installed(&self, seq: Seq, bytes: Option<FeedBytes>) {
        *lock(&self.installed) = bytes.map(|b| (seq, b));
    }

    /// The installed checkpoint through `seq`, if the snapshot had one.
    pub fn installed_at(&self, seq: Seq) -> Option<FeedBytes> {
        match &*lock(&self.installed) {
            Some((s, b)) if *s == seq => Some(b.clone()),
            _ => None,
        }
    }
}

/// Locks a slot; a panic elsewhere left its value whole (a plain store).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_answers_only_its_own_seq() {
        let f = FeedSlots::default();
        assert!(!f.wanted());
        f.want();
        assert!(f.wanted());
        assert_eq!(f.taken_at(Seq(5)), None);
        f.put_taken(Seq(5), Some(Arc::from(&b"abc"[..])));
        assert_eq!(f.taken_at(Seq(4)), None);
        assert_eq!(f.taken_at(Seq(5)).unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(f.taken_since(None).map(|t| t.0), Some(Seq(5)));
        assert_eq!(f.taken_since(Some(Seq(5))), None);
        f.put_taken(Seq(9), None);
        assert_eq!(f.taken_at(Seq(5)), None, "a newer answer supersedes");
        assert_eq!(f.taken_at(Seq(9)), Some(None));
        assert_eq!(f.taken_since(Some(Seq(5))), Some((Seq(9), None)));
        f.put_installed(Seq(7), Some(Arc::from(&b"x"[..])));
        assert_eq!(f.installed_at(Seq(7)).as_deref(), Some(&b"x"[..]));
        assert_eq!(f.installed_at(Seq(8)), None);
        f.put_installed(Seq(8), None);
        assert_eq!(
            f.installed_at(Seq(7)),
            None,
            "a restore without one clears it"
        );
    }
}
