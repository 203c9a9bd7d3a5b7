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
//! Every input's transfer changes (`Events::changes`) go to the history
//! writer through a bounded ring, waited on when full, never dropped.

use super::idle::{IdleStrategy, Idler};
use super::sequencer::Sequencer;
use crate::doorbell::Doorbell;
use crossbeam::queue::ArrayQueue;
use engine::history::TransferRecord;
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
    /// The input's command: the first output of every input, before its
    /// events (consumers that want only events skip it; the market-data
    /// feed builder needs it for icebergs' display size and stop orders).
    Input(Command),
    /// An event of the input.
    Event(Event),
    /// A book row of the preceding `Book` event.
    Level(LevelView),
    /// A transfer row of the preceding `Transfers` event (a transfer query's
    /// answer), in the event's order.
    Row(TransferRecord),
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

/// Command kinds, in the order of `Counters::commands` (metric label values).
pub const COMMAND_KINDS: [&str; 16] = [
    "instrument",
    "order",
    "cancel",
    "replace",
    "mass_cancel",
    "halt",
    "resume",
    "time",
    "query_book",
    "open_account",
    "transfer",
    "query_balance",
    "query_open_orders",
    "install_history",
    "lookup_transfer",
    "get_account_transfers",
];

fn command_kind(c: &Command) -> usize {
    match c {
        Command::AddInstrument(_) => 0,
        Command::NewOrder(_) => 1,
        Command::Cancel { .. } => 2,
        Command::Replace { .. } => 3,
        Command::MassCancel { .. } => 4,
        Command::Halt { .. } => 5,
        Command::Resume { .. } => 6,
        Command::Time { .. } => 7,
        Command::QueryBook { .. } => 8,
        Command::OpenAccount(_) => 9,
        Command::Transfer { .. } => 10,
        Command::QueryBalance { .. } => 11,
        Command::QueryOpenOrders { .. } => 12,
        Command::InstallHistory { .. } => 13,
        Command::LookupTransfer { .. } => 14,
        Command::GetAccountTransfers { .. } => 15,
    }
}

/// A counter with one writer (its owning thread): incremented with a plain
/// load + store, no locked instruction, read by anyone.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n` (call only from the owning thread).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Sets the value (owning thread only).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// Plain counters the engine and journal threads own; exporters read them.
/// Updating them is a few loads and stores per command: no lock, no
/// allocation, no syscall.
#[derive(Debug)]
pub struct Counters {
    /// Commands applied, by kind (`COMMAND_KINDS`).
    pub commands: [Counter; COMMAND_KINDS.len()],
    /// Of those, the ones answered with a reject (order, instrument, time,
    /// query, account or transfer reject events).
    pub rejected: [Counter; COMMAND_KINDS.len()],
    /// Reject events by `RejectReason` code (index = code).
    pub order_rejects: [Counter; 32],
    /// Ledger reject events by `LedgerError` code (index = code).
    pub ledger_rejects: [Counter; 48],
    /// Trades printed.
    pub trades: Counter,
    /// Engine loop iterations that found work / found none.
    pub polls_busy: Counter,
    /// Engine loop iterations that found nothing to do.
    pub polls_idle: Counter,
    /// Nanoseconds the engine thread spent applying commands.
    pub busy_ns: Counter,
    /// Journal: blocks written.
    pub journal_blocks: Counter,
    /// Journal: records written.
    pub journal_records: Counter,
    /// Journal: commit (write + sync) latency histogram, bucket i counts
    /// commits of ≤ 2^i microseconds (the last bucket: everything above).
    pub fsync_us_buckets: [Counter; 24],
    /// Journal: sum of commit latencies, microseconds.
    pub fsync_us_sum: Counter,
    /// Journal: bytes written.
    pub journal_bytes: Counter,
    /// Engine time (ns) of the last durable input.
    pub durable_time_ns: Counter,
    /// Engine time (ns) of the last applied input.
    pub applied_time_ns: Counter,
    /// Unix time (ns) of the last snapshot written (0: none yet).
    pub last_snapshot_unix_ns: Counter,
    /// Snapshots written.
    pub snapshots: Counter,
    /// Nanoseconds the engine thread spent on its last snapshot (state hash
    /// and bytes), during which no input was applied.
    pub snapshot_build_ns_last: Counter,
    /// Disk: bytes of journal files in the partition directory (segments,
    /// spare, head, base), as last measured by the journal thread.
    pub disk_journal_bytes: Counter,
    /// Disk: bytes of archived segments (`archive/`).
    pub disk_archive_bytes: Counter,
    /// Disk: bytes of snapshot files.
    pub disk_snapshot_bytes: Counter,
    /// Last seq retained away from the journal directory (0: none).
    pub retained_through_seq: Counter,
    /// History run files written (history writer thread).
    pub history_runs: Counter,
    /// Bytes of history run files written (history writer thread).
    pub history_bytes: Counter,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            commands: Default::default(),
            rejected: Default::default(),
            order_rejects: std::array::from_fn(|_| Counter::default()),
            ledger_rejects: std::array::from_fn(|_| Counter::default()),
            trades: Counter::default(),
            polls_busy: Counter::default(),
            polls_idle: Counter::default(),
            busy_ns: Counter::default(),
            journal_blocks: Counter::default(),
            journal_records: Counter::default(),
            fsync_us_buckets: Default::default(),
            fsync_us_sum: Counter::default(),
            journal_bytes: Counter::default(),
            durable_time_ns: Counter::default(),
            applied_time_ns: Counter::default(),
            last_snapshot_unix_ns: Counter::default(),
            snapshots: Counter::default(),
            snapshot_build_ns_last: Counter::default(),
            disk_journal_bytes: Counter::default(),
            disk_archive_bytes: Counter::default(),
            disk_snapshot_bytes: Counter::default(),
            retained_through_seq: Counter::default(),
            history_runs: Counter::default(),
            history_bytes: Counter::default(),
        }
    }
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
    /// Transfer changes for the history writer (absent without one).
    pub history: Option<ArrayQueue<TransferRecord>>,
    /// Last sequence applied by the engine.
    pub applied_seq: AtomicU64,
    /// Last sequence durable (journal thread, or the engine thread in `none` mode).
    pub durable_seq: AtomicU64,
    /// Ask the thread to drain and stop.
    pub stop: AtomicBool,
    /// Set by the engine thread once it has stopped (everything it will ever
    /// emit — inputs, outputs, snapshots — is in the queues).
    pub stopped: AtomicBool,
    /// Set by the journal thread when a write or sync failed and it stopped
    /// for good (readiness reports the journal as not writable).
    pub journal_failed: AtomicBool,
    /// Inputs applied (for metrics and benchmarks).
    pub applied: AtomicU64,
    /// Metrics counters.
    pub counters: Counters,
    /// Rung whenever `durable_seq` moves ([`Shared::publish_durable`]).
    pub doorbell: Doorbell,
}

impl Shared {
    /// Rings sized as given.
    pub fn new(inbound: usize, outbound: usize, journal: Option<usize>, last_seq: Seq) -> Self {
        Shared {
            inbound: ArrayQueue::new(inbound.max(1)),
            outbound: ArrayQueue::new(outbound.max(16)),
            journal: journal.map(|n| ArrayQueue::new(n.max(1))),
            snapshots: ArrayQueue::new(2),
            history: None,
            applied_seq: AtomicU64::new(last_seq.0),
            durable_seq: AtomicU64::new(last_seq.0),
            stop: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            journal_failed: AtomicBool::new(false),
            applied: AtomicU64::new(0),
            counters: Counters::default(),
            doorbell: Doorbell::default(),
        }
    }

    /// Publishes that every input through `seq` is durable and wakes the
    /// output consumers.
    #[inline]
    pub fn publish_durable(&self, seq: Seq) {
        self.durable_seq.store(seq.0, Ordering::Release);
        self.doorbell.ring();
    }
}

impl Shared {
    /// With a history ring of `slots` transfer changes.
    pub fn with_history(mut self, slots: usize) -> Self {
        self.history = Some(ArrayQueue::new(slots.max(1)));
        self
    }
}

/// Longest sleep of the engine thread waiting on a full journal queue or
/// output ring (a sync takes hundreds of microseconds or more).
const SINK_WAIT_SLEEP_US_MAX: u32 = 50;

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
    // Sink waits spin briefly, then yield, then sleep: a full journal queue
    // or output ring means a consumer lags (the journal thread is in a sync),
    // and spinning would take the core that consumer needs.
    let wait = IdleStrategy::Park {
        max_sleep_us: SINK_WAIT_SLEEP_US_MAX,
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
                    // The engine waits while its state is copied: measured,
                    // because every input behind it waits too.
                    let started = std::time::Instant::now();
                    let snap = SnapshotBytes {
                        seq: seq.last_seq(),
                        state_hash: engine.state_hash(),
                        bytes: engine.snapshot(),
                    };
                    let took = started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
                    shared.counters.snapshot_build_ns_last.set(took);
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
        if worked {
            shared.counters.polls_busy.add(1);
            // One clock read per drained burst: engine busy time for the busy ratio.
            shared
                .counters
                .busy_ns
                .add(seq.now().0.saturating_sub(now.0));
        } else {
            shared.counters.polls_idle.add(1);
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
    count(&shared.counters, input, events);
    if let Some(j) = &shared.journal {
        push_wait(j, *input, wait);
    }
    // Before `applied_seq` moves: the writer, having read `applied_seq`,
    // then finds every change up to it in the ring.
    if let Some(h) = &shared.history {
        for r in events.changes() {
            push_wait(h, *r, wait);
        }
    }
    let s = input.seq;
    push_wait(
        &shared.outbound,
        Output {
            token,
            seq: s,
            kind: OutputKind::Input(input.command),
        },
        wait,
    );
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
        if let Event::Transfers { rows, .. } = ev {
            for r in events.rows(*rows) {
                push_wait(
                    &shared.outbound,
                    Output {
                        token,
                        seq: s,
                        kind: OutputKind::Row(*r),
                    },
                    wait,
                );
            }
        }
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
        shared.publish_durable(s);
    }
}

/// Per-command metrics: kind, reject reasons, trades.
#[inline]
fn count(c: &Counters, input: &Input, events: &engine::Events) {
    let kind = command_kind(&input.command);
    c.commands[kind].add(1);
    c.applied_time_ns.set(input.now.0);
    let mut rejected = false;
    for ev in events.iter() {
        match ev {
            Event::Trade { .. } => c.trades.add(1),
            Event::Rejected { reason, .. } => {
                rejected = true;
                if let Some(x) = c.order_rejects.get(reason.code() as usize) {
                    x.add(1);
                }
            }
            Event::TransferRejected { reason, .. } | Event::AccountRejected { reason, .. } => {
                rejected = true;
                if let Some(x) = c.ledger_rejects.get(reason.code() as usize) {
                    x.add(1);
                }
            }
            _ => {}
        }
    }
    if rejected {
        c.rejected[kind].add(1);
    }
}
