//! One partition's engine thread: pops requests from its bounded inbound
//! ring, stamps them (sequencer), applies them to the engine, hands the
//! stamped input to the journal and its outputs (one slot per input) to the
//! bounded output ring.
//!
//! Invariants: the thread owns the engine outright (no lock); it allocates
//! nothing per command (outside the output ring's spill path for inputs
//! with more events than a slot holds, `crate::output`) and logs nothing per
//! command; a full journal or output ring (its slowest reader) makes it wait (back-pressure reaches producers as a full inbound ring,
//! which they see as `busy`), never drop. Time-driven work (GTD expiry, pending
//! transfer timeouts) happens through `time` inputs the thread stamps itself
//! when a deadline passes, so it is journaled and replays identically.
//! Every input's transfer changes (`Events::changes`) go to the history
//! writer through a bounded ring, waited on when full, never dropped.

use super::idle::{IdleStrategy, Idler};
use super::sequencer::Sequencer;
use crate::doorbell::Doorbell;
use crate::feed_slots::FeedSlots;
use crate::history_handoff::{HistoryHandoff, HistoryItem};
use crate::output::{Caller, Mark, OutputRing, OutputWriter};
use crossbeam::queue::ArrayQueue;
use crossbeam::utils::CachePadded;
use engine::{Command, Engine, Event, Input, Seq};
use journal::record::Origin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A request to a partition.
#[derive(Debug)]
pub enum Request {
    /// Apply a command; `token` comes back on every output it causes.
    Command {
        /// Caller's correlation token.
        token: u64,
        /// The command.
        command: Command,
    },
    /// Apply an input numbered elsewhere (a replicated partition: the Raft
    /// log numbers inputs, and only committed ones arrive here).
    Input {
        /// Caller's correlation token (0: nobody here waits for it).
        token: u64,
        /// The client request it serves (`Origin::NONE`: none); carried
        /// into its output slot, so every replica's outputs name it.
        origin: Origin,
        /// The input, seq and time included.
        input: Input,
    },
    /// Replace the engine with one restored from a snapshot through `seq`
    /// (a replicated partition that fell behind its leader).
    Restore {
        /// The restored engine.
        engine: Box<Engine>,
        /// The last seq its snapshot covers.
        seq: Seq,
    },
    /// Take a snapshot after the last applied input.
    Snapshot,
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
    /// The engine's last installed history run (run, through, checksum).
    pub history: Option<(u64, Seq, u128)>,
}

/// Command kinds, in the order of `Counters::commands` (metric label values).
pub const COMMAND_KINDS: [&str; 20] = [
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
    "cancel_by_client_id",
    "cod_arm",
    "cod_disarm",
    "sessions_lost",
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
        Command::CancelByClientId { .. } => 16,
        Command::CodArm { .. } => 17,
        Command::CodDisarm { .. } => 18,
        Command::SessionsLost => 19,
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

/// Plain counters the engine, journal and history threads own; exporters
/// read them. Updating them is a few loads and stores per command: no lock,
/// no locked instruction, no allocation, no syscall.
///
/// Grouped by writer thread, each group starting on its own cache line (the
/// zero-sized `CachePadded` markers, with `repr(C)` keeping the order), so
/// the journal thread's stores never invalidate the line the engine thread
/// is counting on.
#[derive(Debug)]
#[repr(C)]
pub struct Counters {
    // ---- written by the engine thread ----
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
    /// Engine time (ns) of the last applied input.
    pub applied_time_ns: Counter,
    /// Nanoseconds the engine thread spent on its last snapshot (state hash
    /// and bytes), during which no input was applied.
    pub snapshot_build_ns_last: Counter,
    _journal_line: CachePadded<()>,
    // ---- written by the journal thread ----
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
    /// Unix time (ns) of the last snapshot written (0: none yet).
    pub last_snapshot_unix_ns: Counter,
    /// Snapshots written.
    pub snapshots: Counter,
    /// Disk: bytes of journal files in the partition directory (segments,
    /// spare, head, base), as last measured by the journal thread.
    pub disk_journal_bytes: Counter,
    /// Disk: bytes of archived segments (`archive/`).
    pub disk_archive_bytes: Counter,
    /// Disk: bytes of snapshot files.
    pub disk_snapshot_bytes: Counter,
    /// Last seq retained away from the journal directory (0: none).
    pub retained_through_seq: Counter,
    _history_line: CachePadded<()>,
    // ---- written by the history writer thread ----
    /// History run files written (history writer thread).
    pub history_runs: Counter,
    /// Bytes of history run files written (history writer thread).
    pub history_bytes: Counter,
    /// History files on disk, runs and merged files (history writer and
    /// compaction threads).
    pub history_files: Counter,
    _end_line: CachePadded<()>,
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
            history_files: Counter::default(),
            _journal_line: CachePadded::new(()),
            _history_line: CachePadded::new(()),
            _end_line: CachePadded::new(()),
        }
    }
}

/// Shared state between a partition's thread and its handles.
///
/// Every field written per command sits on its own cache line: `applied_seq`
/// and `applied` (engine thread), `durable_seq` (journal thread), the rings'
/// own indices (crossbeam's queues and [`OutputRing`] pad them), and the
/// counters' per-thread groups. The rest is written once (`stopped`,
/// `journal_failed`, `stop`) and otherwise only read.
#[derive(Debug)]
pub struct Shared {
    /// Requests in.
    pub inbound: ArrayQueue<Request>,
    /// Outputs out, one slot per input (every reader releases only durable ones).
    pub outbound: OutputRing,
    /// Stamped inputs for the journal thread (absent in `none` mode).
    pub journal: Option<ArrayQueue<Input>>,
    /// Snapshots for the persistence side.
    pub snapshots: ArrayQueue<SnapshotBytes>,
    /// Transfer changes (and installs and restores) for the history
    /// writer (absent without one).
    pub history: Option<ArrayQueue<HistoryItem>>,
    /// A replicated partition's history, shared with its Raft group
    /// (absent without history or replication).
    pub history_handoff: Option<HistoryHandoff>,
    /// Last sequence applied by the engine.
    pub applied_seq: CachePadded<AtomicU64>,
    /// Inputs applied (for metrics and benchmarks; engine thread only, a
    /// plain store).
    pub applied: CachePadded<AtomicU64>,
    /// Last sequence durable (journal thread, or the engine thread in `none` mode).
    pub durable_seq: CachePadded<AtomicU64>,
    /// Ask the thread to drain and stop.
    pub stop: AtomicBool,
    /// Set by the engine thread once it has stopped (everything it will ever
    /// emit — inputs, outputs, snapshots — is in the queues).
    pub stopped: AtomicBool,
    /// Set by the journal thread when a write or sync failed and it stopped
    /// for good (readiness reports the journal as not writable).
    pub journal_failed: AtomicBool,
    /// Metrics counters.
    pub counters: Counters,
    /// Rung whenever `durable_seq` moves ([`Shared::publish_durable`]).
    pub doorbell: Doorbell,
    /// A replicated partition: its inputs arrive numbered
    /// ([`Request::Input`]) and the engine thread makes none itself; time
    /// inputs for due deadlines are the leader's to propose, from
    /// `next_deadline_ns`.
    pub replicated: bool,
    /// The engine's next deadline (engine ns; `u64::MAX`: none), published
    /// by the engine thread of a replicated partition after each burst.
    pub next_deadline_ns: CachePadded<AtomicU64>,
    /// Rung when `next_deadline_ns` moves (not on every input: the
    /// proposer that sleeps until the deadline is woken only when it must).
    pub deadline_bell: Doorbell,
    /// A replicated partition's engine was restored from a snapshot
    /// covering inputs through this seq (0: none): what the market data
    /// must rebuild from the journal, since the restored engine emitted
    /// nothing for them. Written by the restoring executor.
    pub snapshot_seq: AtomicU64,
    /// Market-data checkpoints taken at snapshot marks (carried in a
    /// replicated snapshot, written beside a single node's by the journal
    /// thread) and installed at restore marks.
    pub feed: FeedSlots,
}

impl Shared {
    /// Rings sized as given (`outbound` in inputs), with one output reader.
    pub fn new(inbound: usize, outbound: usize, journal: Option<usize>, last_seq: Seq) -> Self {
        Shared {
            inbound: ArrayQueue::new(inbound.max(1)),
            outbound: OutputRing::new(outbound, 1),
            journal: journal.map(|n| ArrayQueue::new(n.max(1))),
            snapshots: ArrayQueue::new(2),
            history: None,
            history_handoff: None,
            applied_seq: CachePadded::new(AtomicU64::new(last_seq.0)),
            applied: CachePadded::new(AtomicU64::new(0)),
            durable_seq: CachePadded::new(AtomicU64::new(last_seq.0)),
            stop: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            journal_failed: AtomicBool::new(false),
            counters: Counters::default(),
            doorbell: Doorbell::default(),
            replicated: false,
            next_deadline_ns: CachePadded::new(AtomicU64::new(u64::MAX)),
            deadline_bell: Doorbell::default(),
            snapshot_seq: AtomicU64::new(0),
            feed: FeedSlots::default(),
        }
    }

    /// For a replicated partition (see [`Shared::replicated`]).
    pub fn replicated(mut self) -> Self {
        self.replicated = true;
        self
    }

    /// With `readers` independent output cursors (before any output is written).
    pub fn with_readers(mut self, readers: usize) -> Self {
        self.outbound = OutputRing::new(self.outbound.slots(), readers);
        self
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

    /// With a replicated partition's history handoff.
    pub fn with_history_handoff(mut self, h: HistoryHandoff) -> Self {
        self.history_handoff = Some(h);
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
    let mut out = OutputWriter::new(&shared.outbound);
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
                    let caller = Caller {
                        token,
                        origin: Origin::NONE,
                    };
                    apply_one(
                        &mut engine,
                        &mut events,
                        &mut out,
                        &shared,
                        &input,
                        caller,
                        wait,
                    );
                }
                Request::Input {
                    token,
                    origin,
                    input,
                } => {
                    seq.follow(input.seq, input.now);
                    apply_one(
                        &mut engine,
                        &mut events,
                        &mut out,
                        &shared,
                        &input,
                        Caller { token, origin },
                        wait,
                    );
                }
                Request::Restore {
                    engine: e,
                    seq: last,
                } => {
                    engine = *e;
                    seq.follow(last, engine.now());
                    // After the replaced engine's changes: the writer
                    // starts again from the reset the executor put.
                    if let Some(h) = &shared.history {
                        push_wait(h, HistoryItem::Restored, wait);
                    }
                    // Before the seq is published: a reader woken by it
                    // finds the mark in the ring.
                    out.write_mark(&shared.outbound, last, Mark::Restore, wait);
                    shared.applied_seq.store(last.0, Ordering::Release);
                    shared.publish_durable(last);
                }
                Request::Snapshot => {
                    // The engine waits while its state is copied: measured,
                    // because every input behind it waits too.
                    let started = std::time::Instant::now();
                    let snap = SnapshotBytes {
                        seq: seq.last_seq(),
                        state_hash: engine.state_hash(),
                        bytes: engine.snapshot(),
                        history: engine.installed_history(),
                    };
                    let took = started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
                    shared.counters.snapshot_build_ns_last.set(took);
                    let at = snap.seq;
                    // Only the newest matters: replace an unwritten older one.
                    if let Some(mut back) = shared.snapshots.force_push(snap) {
                        back.bytes = Vec::new();
                    }
                    // Market data checkpoints at the same point (carried in
                    // a replicated snapshot, written beside a single
                    // node's): the mark tells its reader where.
                    if shared.replicated || shared.feed.wanted() {
                        out.write_mark(&shared.outbound, at, Mark::Snapshot, wait);
                    }
                }
            }
        }
        // Deadlines (GTD orders, pending transfers) fire through journaled
        // time inputs: stamped here, or (replicated) proposed by the leader.
        if shared.replicated {
            if worked {
                let d = engine.next_deadline().map_or(u64::MAX, |t| t.0);
                // Single writer: a plain load and store. The proposer sleeps
                // until the deadline it read: ring when it moves.
                if shared.next_deadline_ns.load(Ordering::Relaxed) != d {
                    shared.next_deadline_ns.store(d, Ordering::Release);
                    shared.deadline_bell.ring();
                }
            }
        } else if let Some(deadline) = engine.next_deadline() {
            let now = seq.now();
            if now >= deadline {
                let input = seq.stamp(Command::Time { now });
                let caller = Caller::default();
                apply_one(
                    &mut engine,
                    &mut events,
                    &mut out,
                    &shared,
                    &input,
                    caller,
                    wait,
                );
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
    out: &mut OutputWriter,
    shared: &Shared,
    input: &Input,
    caller: Caller,
    wait: IdleStrategy,
) {
    engine.apply(input, events);
    count(&shared.counters, input, events);
    // One slot for the whole input: header, events and rows. Written
    // before the input goes to the journal: the doorbell rings when the
    // input is durable, and a consumer woken by it must find the slot
    // already in the ring (the other order loses that wake-up, and the
    // output waits for the next commit). No deadlock: a full ring waits
    // for readers, who wait only for inputs already in the journal queue.
    out.write(&shared.outbound, caller, input, events, wait);
    if let Some(j) = &shared.journal {
        push_wait(j, *input, wait);
    }
    // Before `applied_seq` moves: the writer, having read `applied_seq`,
    // then finds every change up to it in the ring.
    if let Some(h) = &shared.history {
        for r in events.changes() {
            push_wait(h, HistoryItem::Change(*r), wait);
        }
        if matches!(input.command, Command::InstallHistory { .. }) {
            for ev in events.iter() {
                if let Event::HistoryInstalled { run, through_seq } = *ev {
                    let item = HistoryItem::Installed {
                        run,
                        through: through_seq,
                    };
                    push_wait(h, item, wait);
                }
            }
        }
    }
    let s = input.seq;
    shared.applied_seq.store(s.0, Ordering::Release);
    // The engine thread is the only writer: a plain store, no locked add.
    let applied = shared.applied.load(Ordering::Relaxed) + 1;
    shared.applied.store(applied, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    /// `CachePadded`'s alignment on x86-64 and aarch64 (two 64-byte lines:
    /// the adjacent-line prefetcher pulls pairs).
    const LINE_BYTES: usize = 128;

    #[test]
    fn counters_written_by_different_threads_share_no_cache_line() {
        let engine_end = offset_of!(Counters, snapshot_build_ns_last) + 8;
        let journal = (
            offset_of!(Counters, journal_blocks),
            offset_of!(Counters, retained_through_seq) + 8,
        );
        let history = (
            offset_of!(Counters, history_runs),
            offset_of!(Counters, history_files) + 8,
        );
        assert_eq!(offset_of!(Counters, commands), 0);
        for (name, start) in [("journal", journal.0), ("history", history.0)] {
            assert_eq!(start % LINE_BYTES, 0, "{name} group not line-aligned");
        }
        assert!(engine_end <= journal.0 && journal.1 <= history.0);
        assert_eq!(std::mem::align_of::<Counters>(), LINE_BYTES);
        assert!(std::mem::size_of::<Counters>() >= history.1.next_multiple_of(LINE_BYTES));
        // The hot sequence numbers, likewise.
        let s = Shared::new(1, 16, None, Seq(0));
        let line = |p: *const AtomicU64| p as usize / LINE_BYTES;
        assert_ne!(line(&*s.applied_seq), line(&*s.durable_seq));
        assert_ne!(line(&*s.applied), line(&*s.durable_seq));
    }

    /// (mark, seq) of every slot a partition's engine thread writes for
    /// `requests` (a replicated partition when `replicated`).
    fn slots_for(replicated: bool, requests: Vec<Request>) -> Vec<(crate::Mark, u64)> {
        let mut s = Shared::new(16, 16, None, Seq(0));
        if replicated {
            s = s.replicated();
        }
        let shared = Arc::new(s);
        let cfg = engine::EngineConfig::small();
        let t = {
            let shared = shared.clone();
            std::thread::spawn(move || run(Engine::new(cfg), shared, IdleStrategy::Yield))
        };
        for r in requests {
            shared.inbound.push(r).expect("room");
        }
        shared.stop.store(true, Ordering::Release);
        t.join().expect("engine thread");
        let mut reader = crate::OutputReader::new(shared.clone(), 0);
        let mut got = Vec::new();
        while let Some(o) = reader.poll() {
            if o.mark != crate::Mark::Input {
                assert!(o.token == 0 && o.events().is_empty(), "a mark is bare");
            }
            got.push((o.mark, o.seq.0));
        }
        got
    }

    fn time_input(seq: u64) -> Request {
        Request::Input {
            token: 0,
            origin: Origin::NONE,
            input: Input {
                seq: Seq(seq),
                now: engine::Timestamp(seq),
                command: Command::Time {
                    now: engine::Timestamp(seq),
                },
            },
        }
    }

    #[test]
    fn a_replicated_engine_marks_its_snapshots_and_restores_in_the_output_stream() {
        use crate::Mark::{Input as I, Restore, Snapshot};
        let restored = Box::new(Engine::new(engine::EngineConfig::small()));
        let requests = vec![
            time_input(1),
            time_input(2),
            Request::Snapshot,
            Request::Restore {
                engine: restored,
                seq: Seq(10),
            },
            time_input(11),
        ];
        assert_eq!(
            slots_for(true, requests),
            [(I, 1), (I, 2), (Snapshot, 2), (Restore, 10), (I, 11)]
        );
        let requests = vec![time_input(1), Request::Snapshot, time_input(2)];
        assert_eq!(
            slots_for(false, requests),
            [(I, 1), (I, 2)],
            "a single node's snapshot leaves no mark"
        );
    }
}
