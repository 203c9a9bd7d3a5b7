//! One partition's engine thread: pops requests from its bounded inbound
//! ring, stamps them (sequencer), applies them to the engine, hands the
//! stamped input to the journal and the events to the bounded output ring.
//!
//! Invariants: the thread owns the engine outright (no lock); it allocates
//! nothing per command and logs nothing per command; a full journal or output
//! ring makes it wait (back-pressure reaches producers as a full inbound ring,
//! which they see as `busy`), never drop. Time-driven work (GTD expiry, pending
//! transfer timeouts) happens through `time` inputs the thread stamps itself
//! when a deadline passes, so it is journaled and replays identically.

use super::idle::{IdleStrategy, Idler};
use super::sequencer::Sequencer;
use crossbeam::queue::ArrayQueue;
use engine::{Command, Engine, Event, Input, LevelView, Seq};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A request to a partition.
#[derive(Clone, Copy, Debug)]
pub enum Request {
    /// Apply a command; `token` comes back on every output it causes.
    Command {
        /// Caller's correlation token.
        token: u64,
        /// The command.
        command: Command,
    },
    /// Take a snapshot after the last applied input.
    Snapshot,
}

/// One item of a partition's output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// An event of the input.
    Event(Event),
    /// A book row of the preceding `Book` event.
    Level(LevelView),
    /// The input's last output (also sent for inputs with no event).
    End,
}

/// An output, tagged with its input's sequence number and caller token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    /// Caller token (0 for inputs the runtime made itself, e.g. time ticks).
    pub token: u64,
    /// Input sequence number.
    pub seq: Seq,
    /// What.
    pub kind: OutputKind,
}

/// A snapshot taken on the engine thread, to be written by the persistence side.
#[derive(Debug)]
pub struct SnapshotBytes {
    /// Last input included.
    pub seq: Seq,
    /// The engine's state hash at that point.
    pub state_hash: u128,
    /// `Engine::snapshot()` bytes.
    pub bytes: Vec<u8>,
}

/// Shared state between a partition's thread and its handles.
#[derive(Debug)]
pub struct Shared {
    /// Requests in.
    pub inbound: ArrayQueue<Request>,
    /// Outputs out (all of them; the reader releases only durable ones).
    pub outbound: ArrayQueue<Output>,
    /// Stamped inputs for the journal thread (absent in `none` mode).
    pub journal: Option<ArrayQueue<Input>>,
    /// Snapshots for the persistence side.
    pub snapshots: ArrayQueue<SnapshotBytes>,
    /// Last sequence applied by the engine.
    pub applied_seq: AtomicU64,
    /// Last sequence durable (journal thread, or the engine thread in `none` mode).
    pub durable_seq: AtomicU64,
    /// Ask the thread to drain and stop.
    pub stop: AtomicBool,
    /// Set by the engine thread once it has stopped (everything it will ever
    /// emit — inputs, outputs, snapshots — is in the queues).
    pub stopped: AtomicBool,
    /// Inputs applied (for metrics and benchmarks).
    pub applied: AtomicU64,
}

impl Shared {
    /// Rings sized as given.
    pub fn new(inbound: usize, outbound: usize, journal: Option<usize>, last_seq: Seq) -> Self {
        Shared {
            inbound: ArrayQueue::new(inbound.max(1)),
            outbound: ArrayQueue::new(outbound.max(16)),
            journal: journal.map(|n| ArrayQueue::new(n.max(1))),
            snapshots: ArrayQueue::new(2),
            applied_seq: AtomicU64::new(last_seq.0),
            durable_seq: AtomicU64::new(last_seq.0),
            stop: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            applied: AtomicU64::new(0),
        }
    }
}

/// Pushes into a bounded queue, waiting while it is full (engine-side back-pressure).
#[inline]
fn push_wait<T>(q: &ArrayQueue<T>, mut v: T, idle: IdleStrategy) {
    let mut idler = Idler::new(idle);
    loop {
        match q.push(v) {
            Ok(()) => return,
            Err(back) => {
                v = back;
                idler.idle(false);
            }
        }
    }
}

/// The engine thread's loop; returns the engine when asked to stop (after
/// draining the inbound ring).
pub fn run(mut engine: Engine, shared: Arc<Shared>, idle: IdleStrategy) -> Engine {
    let mut events = engine.new_events();
    let mut seq = Sequencer::new(
        Seq(shared.applied_seq.load(Ordering::Acquire)),
        engine.now(),
    );
    let mut idler = Idler::new(idle);
    // Sink waits spin briefly then yield: they only happen when a consumer lags.
    let wait = match idle {
        IdleStrategy::Spin => IdleStrategy::Yield,
        other => other,
    };
    loop {
        let mut worked = false;
        let mut now = seq.now();
        let mut stamped = 0u32;
        while let Some(req) = shared.inbound.pop() {
            worked = true;
            match req {
                Request::Command { token, command } => {
                    // One clock read per 64 commands of a burst: they arrived together.
                    if stamped == 64 {
                        now = seq.now();
                        stamped = 0;
                    }
                    stamped += 1;
                    let input = seq.stamp_at(now, command);
                    apply_one(&mut engine, &mut events, &shared, &input, token, wait);
                }
                Request::Snapshot => {
                    let snap = SnapshotBytes {
                        seq: seq.last_seq(),
                        state_hash: engine.state_hash(),
                        bytes: engine.snapshot(),
                    };
                    // Only the newest matters: replace an unwritten older one.
                    if let Some(mut back) = shared.snapshots.force_push(snap) {
                        back.bytes = Vec::new();
                    }
                }
            }
        }
        // Deadlines (GTD orders, pending transfers) fire through journaled time inputs.
        if let Some(deadline) = engine.next_deadline() {
            let now = seq.now();
            if now >= deadline {
                let input = seq.stamp(Command::Time { now });
                apply_one(&mut engine, &mut events, &shared, &input, 0, wait);
                worked = true;
            }
        }
        if !worked && shared.stop.load(Ordering::Acquire) && shared.inbound.is_empty() {
            shared.stopped.store(true, Ordering::Release);
            return engine;
        }
        idler.idle(worked);
    }
}

#[inline]
fn apply_one(
    engine: &mut Engine,
    events: &mut engine::Events,
    shared: &Shared,
    input: &Input,
    token: u64,
    wait: IdleStrategy,
) {
    engine.apply(input, events);
    if let Some(j) = &shared.journal {
        push_wait(j, *input, wait);
    }
    let s = input.seq;
    for ev in events.iter() {
        push_wait(
            &shared.outbound,
            Output {
                token,
                seq: s,
                kind: OutputKind::Event(*ev),
            },
            wait,
        );
        if let Event::Book { bids, asks, .. } = ev {
            for range in [*bids, *asks] {
                for l in events.levels(range) {
                    push_wait(
                        &shared.outbound,
                        Output {
                            token,
                            seq: s,
                            kind: OutputKind::Level(*l),
                        },
                        wait,
                    );
                }
            }
        }
    }
    push_wait(
        &shared.outbound,
        Output {
            token,
            seq: s,
            kind: OutputKind::End,
        },
        wait,
    );
    shared.applied_seq.store(s.0, Ordering::Release);
    shared.applied.fetch_add(1, Ordering::Relaxed);
    if shared.journal.is_none() {
        shared.durable_seq.store(s.0, Ordering::Release);
    }
}
