//! Seeding the hub at start-up from a partition's files, so the books
//! subscribers see after a restart are the recovered ones and the feed's
//! sequence numbers continue from where they were.
//!
//! Two ways: from the feed checkpoint written beside the snapshot the
//! engine was recovered from (the checkpoint, the engine restored from the
//! same snapshot, then only the journal after it), or, where there is
//! none, from the whole journal through a fresh engine.
//!
//! Invariants: the inputs come through `journal::replay()` (verified and
//! decoded, in order, no block walked here); only inputs up to `up_to`
//! (the recovered sequence) are fed (later ones arrive as live outputs);
//! nobody is subscribed yet, so nothing is sent; a checkpoint is used only
//! with the snapshot of its own seq, and nothing of it reaches the hub
//! before both files have checked out and restored.

use crate::builder::FeedBuilder;
use crate::checkpoint::CheckpointError;
use crate::hub::MdHub;
use engine::{Engine, EngineConfig};
use journal::{FsStorage, JournalError, SnapshotFault};
use std::path::{Path, PathBuf};

/// Why a partition's market data cannot start from its checkpoint (it is
/// then rebuilt from the whole journal).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointSeedError {
    /// The checkpoint file is missing or damaged.
    #[error("feed checkpoint {}: {fault}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        fault: SnapshotFault,
    },
    /// The snapshot of the same seq is missing or damaged.
    #[error("snapshot {}: {fault}", path.display())]
    Snapshot {
        /// The file.
        path: PathBuf,
        /// What failed.
        fault: SnapshotFault,
    },
    /// The snapshot does not restore an engine.
    #[error("snapshot {} does not restore: {source}", path.display())]
    Restore {
        /// The file.
        path: PathBuf,
        /// Why.
        source: engine::SnapshotError,
    },
    /// The checkpoint's bytes are not a feed checkpoint.
    #[error("feed checkpoint {}: {source}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// Why.
        source: CheckpointError,
    },
}

/// A partition's market data and engine as of a snapshot, ready to seed a
/// hub (nothing in the hub changed yet).
#[derive(Debug)]
pub struct Checkpointed {
    engine: Engine,
    builder: FeedBuilder,
    at: u64,
}

impl Checkpointed {
    /// The seq the checkpoint and its snapshot were taken after.
    pub fn seq(&self) -> u64 {
        self.at
    }
}

impl MdHub {
    /// Reads the feed checkpoint and the engine snapshot after `at` in
    /// `dir` and restores both (the hub is not touched).
    pub fn load_checkpoint(
        &self,
        dir: &Path,
        cfg: EngineConfig,
        at: u64,
    ) -> Result<Checkpointed, CheckpointSeedError> {
        let path = dir.join(journal::feed_checkpoint_name(at));
        let bytes = journal::read_feed_checkpoint(&FsStorage, dir, at).map_err(|fault| {
            CheckpointSeedError::File {
                path: path.clone(),
                fault,
            }
        })?;
        let builder = FeedBuilder::from_checkpoint(self.config().feed, &bytes)
            .map_err(|source| CheckpointSeedError::Checkpoint { path, source })?;
        let path = dir.join(journal::snapshot_name(at));
        let snap = journal::read_snapshot(&FsStorage, &path).map_err(|fault| {
            CheckpointSeedError::Snapshot {
                path: path.clone(),
                fault,
            }
        })?;
        let engine = Engine::restore(cfg, &snap.body)
            .map_err(|source| CheckpointSeedError::Restore { path, source })?;
        Ok(Checkpointed {
            engine,
            builder,
            at,
        })
    }

    /// Seeds partition `p` from a loaded checkpoint, then the journal's
    /// inputs after it up to `up_to`. Returns the inputs replayed.
    pub fn seed_from_checkpoint(
        &mut self,
        p: usize,
        dir: &Path,
        c: Checkpointed,
        up_to: u64,
    ) -> Result<u64, JournalError> {
        if let Err(e) = self.replace_builder(p, c.builder, 0) {
            // Only a partition mapping clash: nothing was subscribed or
            // seeded elsewhere yet, so it is a bug.
            panic!("seeding partition {p} from its checkpoint: {e}");
        }
        self.replay_into(p, dir, c.engine, c.at + 1, up_to)
    }

    /// Rebuilds partition `p`'s market data from its journal: every
    /// journaled input up to `up_to` is applied to a scratch engine and its
    /// events go through the builder as live inputs would. Returns the
    /// inputs fed.
    pub fn seed_from_journal(
        &mut self,
        p: usize,
        dir: &Path,
        cfg: EngineConfig,
        up_to: u64,
    ) -> Result<u64, JournalError> {
        self.replay_into(p, dir, Engine::new(cfg), 1, up_to)
    }

    fn replay_into(
        &mut self,
        p: usize,
        dir: &Path,
        mut eng: Engine,
        from: u64,
        up_to: u64,
    ) -> Result<u64, JournalError> {
        if from > up_to {
            return Ok(0);
        }
        attach_history(&mut eng, dir);
        let mut events = eng.new_events();
        let mut events_vec = Vec::new();
        let done = journal::replay(&FsStorage, dir, from, up_to, |input| {
            eng.apply(input, &mut events);
            events_vec.clear();
            events_vec.extend(events.iter().copied());
            self.on_input(p, input.seq, Some(&input.command), &events_vec, 0);
            Ok::<(), std::convert::Infallible>(())
        })
        .map_err(journal::ReplayError::into_journal)?;
        Ok(done.applied)
    }
}

/// Gives the scratch engine the partition's transfer history, read only,
/// as the real engine had it: the journal's `install_history` inputs are
/// then accepted and memory evicts as it did live. Without it every
/// install is refused, the ledger's memory fills, and a transfer the real
/// engine took (funding an account, say) fails here `capacity_exceeded`,
/// so an order it paid for is refused and the books differ.
fn attach_history(eng: &mut Engine, dir: &Path) {
    let hdir = dir.join(journal::history::HISTORY_DIR);
    if !hdir.is_dir() {
        return;
    }
    match journal::history::DiskHistory::open_read_only(FsStorage, &hdir) {
        Ok(h) => eng.attach_history(Box::new(h)),
        Err(e) => tracing::warn!(
            dir = %hdir.display(),
            error = %e,
            "market data seeds without the transfer history: past the ledger's memory its books may differ"
        ),
    }
}
