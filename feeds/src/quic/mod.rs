//! Market data over QUIC (`bourse-md/1` on the order-entry endpoint): the
//! server's per-subscriber connection tasks (`server`), the client
//! (`client`), and the hand-off from the order-entry server (its
//! `Companion`: market data's own output cursors read by its own task,
//! connections to serve).
//!
//! Invariants: this is the only part of `feeds` that touches quinn, tokio,
//! the clock or the runtime's output types; the hub it drives
//! (`crate::hub`) stays sans-IO. Everything here runs on the one thread
//! that owns the hub (`Rc<RefCell<_>>`, never shared across threads).

pub(crate) mod client;
pub(crate) mod server;

use crate::hub::{MdConfig, MdHub, MdStats};
use engine::Seq;
use gateway::counters::DisconnectReason;
use gateway::session::Auth;
use runtime::{Mark, OutputReader, Shared};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::Notify;

pub use server::connection;

/// The hub's clock: nanoseconds since the first call in this process
/// (every caller of the hub passes times from this one clock).
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The market-data hub as the order-entry server's companion protocol
/// (`bourse-md/1` on the same endpoint).
struct MdCompanion {
    hub: Rc<RefCell<MdHub>>,
    /// Counters already folded into the gateway's.
    seen: RefCell<MdStats>,
    /// Its readers (one per partition) and their doorbell, until `consume`
    /// takes them.
    readers: RefCell<Option<Readers>>,
}

/// What market data's consumer reads: one cursor per partition, the
/// partitions (their feed checkpoint slots), which partitions' books are
/// complete, and the doorbell every partition rings.
struct Readers {
    cursors: Vec<OutputReader>,
    parts: Vec<Arc<Shared>>,
    complete: Vec<bool>,
    wake: Arc<Notify>,
}

impl gateway::server::Companion for MdCompanion {
    fn consume(&self, busy_poll: bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        let hub = self.hub.clone();
        let taken = self.readers.borrow_mut().take();
        Box::pin(async move {
            if let Some(readers) = taken {
                consume(hub, readers, busy_poll).await;
            }
        })
    }

    fn serve(
        &self,
        conn: quinn::Connection,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        Box::pin(connection(self.hub.clone(), conn))
    }

    fn sweep(&self, m: &gateway::counters::GatewayMetrics) {
        let hub = self.hub.borrow();
        let st = hub.stats();
        let mut seen = self.seen.borrow_mut();
        m.set_subscribers(hub.subscribers() as i64);
        m.conflated(st.conflated - seen.conflated);
        for r in DisconnectReason::ALL {
            let i = r as usize;
            m.md_disconnected(r, st.disconnects[i] - seen.disconnects[i]);
        }
        m.md_throttled(st.throttled - seen.throttled);
        *seen = st;
    }
}

/// Market data's own consumer of the durable outputs: drains every
/// partition's cursor into the hub, at most `BATCH` inputs per partition
/// between yields (so order entry's delivery, on the same thread, waits for
/// at most one batch of feed building), and sleeps on the partitions'
/// doorbells when nothing durable is waiting (`busy_poll`: yields instead).
async fn consume(hub: Rc<RefCell<MdHub>>, mut rd: Readers, busy_poll: bool) {
    const BATCH: usize = 256;
    loop {
        let mut n = 0;
        {
            let mut h = hub.borrow_mut();
            // One clock read per batch, not per input.
            let now = now_ns();
            for (p, r) in rd.cursors.iter_mut().enumerate() {
                let mut k = 0;
                while k < BATCH {
                    let Some(o) = r.poll() else { break };
                    match o.mark {
                        Mark::Input => h.on_input(p, o.seq, Some(&o.command), o.events(), now),
                        Mark::Snapshot => {
                            // Books known complete and exactly at the mark,
                            // else no checkpoint rather than a wrong one.
                            let fit = rd.complete[p] && h.last_seq(p) == o.seq;
                            let bytes = fit.then(|| Arc::from(h.feed_checkpoint(p)));
                            rd.parts[p].feed.put_taken(o.seq, bytes);
                        }
                        Mark::Restore => {
                            rd.complete[p] = restored(&mut h, p, o.seq, &rd.parts[p], now);
                        }
                    }
                    k += 1;
                }
                n += k;
            }
        }
        if n > 0 || busy_poll {
            tokio::task::yield_now().await;
        } else {
            // `Notify` keeps one permit: a ring after the empty poll is not lost.
            rd.wake.notified().await;
        }
    }
}

/// Partition `p`'s engine was restored from a snapshot through `seq`: the
/// hub follows with the checkpoint the snapshot carried. Whether its books
/// are complete afterwards (a hub already at `seq` — seeded at start-up —
/// stays as it is).
fn restored(h: &mut MdHub, p: usize, seq: Seq, part: &Shared, now: u64) -> bool {
    if h.last_seq(p) == seq {
        return true;
    }
    let why = match part.feed.installed_at(seq) {
        Some(bytes) => match h.restore_feed(p, &bytes, now) {
            Ok(()) => {
                tracing::info!(
                    partition = p,
                    seq = seq.0,
                    "market data follows an installed snapshot from its checkpoint"
                );
                return true;
            }
            Err(e) => e.to_string(),
        },
        None => "the snapshot carries no market-data checkpoint".to_string(),
    };
    tracing::warn!(
        partition = p,
        seq = seq.0,
        why = %why,
        "market data cannot follow an installed snapshot: books lack what it covered"
    );
    false
}

/// A hub with every partition but the `skip`ped ones rebuilt: a durable
/// single node's up to its recovered seq, a replicated partition's up to
/// the snapshot its engine was restored from. The first failure:
/// (partition, its seq, why).
fn seeded_hub(
    cfg: &MdConfig,
    p: &runtime::Pipeline,
    pc: &runtime::PipelineConfig,
    auth: Arc<Auth>,
    skip: &[bool],
) -> Result<MdHub, (usize, u64, journal::JournalError)> {
    let partitions = p.runtime().partitions();
    let mut hub = MdHub::new(cfg.clone(), partitions, auth);
    for part in (0..partitions).filter(|&q| !skip[q]) {
        let up_to = match pc.durability {
            journal::Durability::None => p
                .runtime()
                .shared(part)
                .snapshot_seq
                .load(std::sync::atomic::Ordering::Acquire),
            _ => p.recovered().get(part).map_or(0, |r| r.last_seq),
        };
        if up_to > 0 {
            seed_partition(&mut hub, p, pc, part, up_to).map_err(|e| (part, up_to, e))?;
        }
    }
    Ok(hub)
}

/// Seeds partition `part` up to `up_to`, the cheapest way its files allow:
/// a replicated snapshot's own checkpoint (no journal read), else a single
/// node's newest checkpoint beside a snapshot of the same seq (then the
/// journal after it), else the whole journal.
fn seed_partition(
    hub: &mut MdHub,
    p: &runtime::Pipeline,
    pc: &runtime::PipelineConfig,
    part: usize,
    up_to: u64,
) -> Result<(), journal::JournalError> {
    let shared = p.runtime().shared(part);
    let dir = runtime::partition_dir(&pc.data_dir, part);
    if let Some(bytes) = shared.feed.installed_at(Seq(up_to)) {
        match hub.restore_feed(part, &bytes, now_ns()) {
            Ok(()) => {
                tracing::info!(
                    partition = part,
                    seq = up_to,
                    "market data restored from the snapshot's checkpoint"
                );
                return Ok(());
            }
            Err(e) => tracing::warn!(partition = part, seq = up_to, error = %e,
                "the snapshot's market-data checkpoint does not restore: rebuilding from the journal"),
        }
    }
    // The newest checkpoint with its snapshot (the final snapshot of a
    // clean shutdown has none: nobody reads outputs by then).
    let at = match pc.durability {
        journal::Durability::None => None,
        _ => journal::newest_feed_pair(&journal::FsStorage, &dir, up_to).unwrap_or_else(|e| {
            tracing::warn!(partition = part, error = %e, "feed checkpoints not listed");
            None
        }),
    };
    let loaded = match at.map(|at| hub.load_checkpoint(&dir, pc.engine, at)) {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            tracing::warn!(partition = part, error = %e, "market data rebuilt from the whole journal");
            None
        }
        None => None,
    };
    let (checkpoint_seq, inputs) = match loaded {
        Some(c) => (c.seq(), hub.seed_from_checkpoint(part, &dir, c, up_to)?),
        None => (0, hub.seed_from_journal(part, &dir, pc.engine, up_to)?),
    };
    tracing::info!(
        partition = part,
        checkpoint_seq,
        journal_inputs = inputs,
        "market data rebuilt (checkpoint_seq 0: from the whole journal)"
    );
    Ok(())
}

/// Market data on the order-entry endpoint: the server builds the hub once
/// the pipeline has recovered, seeded (`seed_partition`) so the books show
/// the recovered state, not an empty one; it then reads every later input
/// through its own output cursor, answering snapshot marks with
/// checkpoints and following restore marks. A replicated partition is
/// seeded up to the Raft snapshot its engine was restored from (the inputs
/// after it are applied again, as live outputs); one that neither the
/// snapshot's checkpoint nor its journal reaches (an archive deleted)
/// starts from the snapshot, with a warning.
pub fn companion(cfg: MdConfig) -> gateway::server::CompanionSpec {
    let build = move |p: &runtime::Pipeline,
                      pc: &runtime::PipelineConfig,
                      auth: Arc<Auth>|
          -> Result<
        Rc<dyn gateway::server::Companion>,
        gateway::server::CompanionError,
    > {
        let partitions = p.runtime().partitions();
        let replicated = pc.durability == journal::Durability::None;
        let mut skip = vec![false; partitions];
        let hub = loop {
            match seeded_hub(&cfg, p, pc, auth.clone(), &skip) {
                Ok(hub) => break hub,
                Err((part, up_to, e)) if replicated => {
                    tracing::warn!(
                        partition = part,
                        snapshot_seq = up_to,
                        error = %e,
                        "market data starts from the Raft snapshot: the journal does not reach \
                         back to it, so books lack what rested before it"
                    );
                    skip[part] = true;
                }
                Err((part, _, e)) => {
                    let dir = runtime::partition_dir(&pc.data_dir, part);
                    return Err(format!("market data rebuild from {}: {e}", dir.display()).into());
                }
            }
        };
        let wake = Arc::new(Notify::new());
        let mut cursors = Vec::with_capacity(partitions);
        let mut parts = Vec::with_capacity(partitions);
        for part in 0..partitions {
            let w = wake.clone();
            let shared = p.runtime().shared(part);
            shared.doorbell.register(Box::new(move || w.notify_one()))?;
            if shared.replicated || pc.durability != journal::Durability::None {
                // Every snapshot is marked, and every mark answered, from
                // now on (a single node's in-memory mode takes none).
                shared.feed.want();
            }
            parts.push(shared.clone());
            cursors.push(
                p.runtime()
                    .reader_at(part, gateway::server::COMPANION_CURSOR),
            );
        }
        let complete = skip.iter().map(|s| !s).collect();
        Ok(Rc::new(MdCompanion {
            hub: Rc::new(RefCell::new(hub)),
            seen: RefCell::new(MdStats::default()),
            readers: RefCell::new(Some(Readers {
                cursors,
                parts,
                complete,
                wake,
            })),
        }))
    };
    gateway::server::CompanionSpec {
        alpn: crate::wire::ALPN,
        build: Arc::new(build),
    }
}
