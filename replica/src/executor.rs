//! The executor of a running partition: committed inputs go to its engine
//! thread through the inbound ring, as numbered `Request::Input`s, so the
//! pinned engine thread stays the only thread that touches the engine and
//! its outputs flow through the output ring as in single-node mode (here
//! released at once: an input that reached apply is committed).
//!
//! Invariants: inputs reach the ring in apply order and none is dropped (a
//! full ring is waited on: it is the engine's back-pressure on apply); a
//! snapshot request goes through the same ring, so it lands exactly after
//! the inputs applied before it; a restore is checked by its state hash
//! before the engine thread swaps it in, and a restored engine gets the
//! partition's transfer history (its runs checked) before it is queued.

use crate::state::{Executor, RestoreError, Taken};
use engine::{Engine, EngineConfig, Input, Seq};
use journal::history::DiskHistory;
use journal::FsStorage;
use runtime::{HistoryHandoff, HistoryReset, Origin, Request, Shared, StoreLink};
use std::sync::Arc;
use std::time::Duration;

/// Longest sleep while the inbound ring is full or a snapshot is awaited.
const WAIT: Duration = Duration::from_micros(50);

/// Feeds a partition's engine thread.
#[derive(Debug)]
pub struct RingExecutor {
    shared: Arc<Shared>,
    cfg: EngineConfig,
}

impl RingExecutor {
    /// The executor of the partition behind `shared` (engine capacities `cfg`).
    pub fn new(shared: Arc<Shared>, cfg: EngineConfig) -> Self {
        RingExecutor { shared, cfg }
    }

    fn push(&self, mut req: Request) {
        loop {
            match self.shared.inbound.push(req) {
                Ok(()) => return,
                Err(back) => {
                    req = back;
                    std::thread::sleep(WAIT);
                }
            }
        }
    }
}

impl Executor for RingExecutor {
    fn execute(&mut self, input: &Input, token: u64, origin: Origin) {
        self.push(Request::Input {
            token,
            origin,
            input: *input,
        });
    }

    fn snapshot(&mut self) -> Taken {
        while self.shared.snapshots.pop().is_some() {}
        self.push(Request::Snapshot);
        loop {
            if let Some(s) = self.shared.snapshots.pop() {
                return Taken {
                    state_hash: s.state_hash,
                    engine: s.bytes,
                    history: s.history.map(|(r, t, c)| (r, t.0, c)),
                };
            }
            std::thread::sleep(WAIT);
        }
    }

    fn restore(
        &mut self,
        bytes: &[u8],
        last_seq: Seq,
        feed: Option<&[u8]>,
    ) -> Result<u128, RestoreError> {
        let mut engine = Engine::restore(self.cfg, bytes)?;
        let hash = engine.state_hash();
        if let Some(h) = &self.shared.history_handoff {
            attach_history(&mut engine, h, last_seq)?;
        }
        self.shared
            .snapshot_seq
            .store(last_seq.0, std::sync::atomic::Ordering::Release);
        // Before the restore is queued: market data reads it at the mark.
        self.shared
            .feed
            .put_installed(last_seq, feed.map(Arc::from));
        self.push(Request::Restore {
            engine: Box::new(engine),
            seq: last_seq,
        });
        Ok(hash)
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        Some(self.shared.clone())
    }
}

/// Gives a restored engine the partition's history: the files (every run
/// it installed must be here, the one it installed), the filter already
/// holding their ids, and the writer's restart point (put before the
/// restore is queued; the writer takes it at the restore's mark).
fn attach_history(
    engine: &mut Engine,
    h: &HistoryHandoff,
    last_seq: Seq,
) -> Result<(), RestoreError> {
    let installed = engine.installed_history();
    let mut store = {
        // `open` tidies the directory: not while a run is cut, merged or
        // adopted.
        let _merges = h.lock_merges();
        let _files = h.lock_files();
        DiskHistory::open(FsStorage, h.dir())?
    };
    if let Some((run, _, checksum)) = installed {
        store.check_installed(run, checksum)?;
    }
    if let Some(f) = h.filter() {
        store.attach_filled_filter(f.clone());
    }
    let link = store.link();
    engine.attach_history(Box::new(store));
    let (run, through) = installed.map_or((0, Seq(0)), |(r, t, _)| (r, t));
    h.put_store(StoreLink {
        link,
        installed_run: run,
        by_seq: last_seq.0,
    });
    h.note_queued(run);
    h.put_reset(HistoryReset {
        run,
        through,
        tail: engine.history_tail(through),
    });
    Ok(())
}
