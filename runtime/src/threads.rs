//! The runtime's threads: starting a partition's engine, journal and
//! history threads, submitting to them, the journal thread's loop, and
//! the output reader that releases only durable outputs.

use crate::output::OutputReader;
use crate::partition::*;
use crate::router::{PartitionMap, Route, RouteError};
use crate::{history, partition, Durability, HistoryHandoff, IdleStrategy, StoreLink};
use engine::{Command, Engine, Input, Seq};
use journal::record::Origin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The persistence side of a partition, driven by its journal thread.
pub trait Persistence: Send + 'static {
    /// Appends one group of inputs (one write, and one sync unless async).
    /// An error stops the process.
    fn commit(&mut self, batch: &[Input]) -> std::io::Result<()>;
    /// Writes a snapshot whose inputs are all durable.
    fn snapshot(&mut self, snap: &SnapshotBytes) -> std::io::Result<()>;
    /// Writes market data's checkpoint taken at the snapshot after `seq`
    /// (beside it; nothing where the persistence keeps no files).
    fn feed_checkpoint(&mut self, _seq: Seq, _bytes: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    /// Bytes journaled since the last snapshot (drives automatic snapshots).
    fn bytes_since_snapshot(&self) -> u64;
    /// Bytes journaled since start-up (metrics).
    fn bytes_written(&self) -> u64 {
        0
    }
    /// A slice (about a millisecond) of deferred work, such as preparing
    /// the next journal segment; `idle` when nothing waits to be committed
    /// (without it, only work that cannot wait longer). Returns whether it
    /// did something.
    fn background(&mut self, _idle: bool) -> bool {
        false
    }
    /// Finishes the journal retention pass in progress (if any) before the
    /// journal thread stops, so a clean shutdown never leaves a pass cut
    /// between its anchor (`journal.base`) and its last move or delete.
    fn settle(&mut self) {}
    /// Bytes on disk (journal, archive, snapshots) and how far retention
    /// went, as last measured (cheap: no I/O); `None` when not measured.
    fn disk_usage(&self) -> Option<journal::DiskUsage> {
        None
    }
}

/// What a configured `spin` becomes when the engine threads cannot be pinned.
pub const UNPINNED_IDLE: IdleStrategy = IdleStrategy::Park { max_sleep_us: 50 };

/// Runtime settings.
#[derive(Clone, Copy, Debug)]
pub struct RuntimeConfig {
    /// Inbound ring slots per partition.
    pub inbound_ring: usize,
    /// Output ring slots per partition (one per input in flight).
    pub output_ring: usize,
    /// Independent readers of each partition's outputs (cursors on its
    /// output ring, 1..=`output::READERS_MAX`): 1 for order entry, 2 with a
    /// market-data consumer. Every cursor must be read (or the ring closed
    /// at shutdown), or the engine thread waits for it.
    pub output_readers: usize,
    /// Journal queue slots per partition (and the largest group commit).
    pub journal_queue: usize,
    /// What idle engine threads do.
    pub idle: IdleStrategy,
    /// Pin engine threads to their own cores when there are enough.
    pub pin: bool,
    /// Take a snapshot once this many journal bytes accumulated (0: never automatically).
    pub snapshot_every_bytes: u64,
    /// Called once when the journal cannot write or sync; the journal thread
    /// then stops for good (nothing is ever retried, nothing more becomes
    /// durable, no further output is released). The default
    /// (`exit_process`) prints the error and exits with
    /// `EXIT_JOURNAL_FAILED`.
    pub fatal: fn(&str),
    /// Replicated partitions (`Shared::replicated`): inputs arrive
    /// numbered from the Raft log, which is their durable copy; start them
    /// with `Durability::None` (no journal thread of their own).
    pub replicated: bool,
}

/// Exit status of a process stopped because its journal could not write or
/// sync (a full disk, an I/O error): EX_IOERR of sysexits.h, distinct from
/// 1 (could not start) and 2 (bad input), and not a crash.
pub const EXIT_JOURNAL_FAILED: u8 = 74;

/// The default `RuntimeConfig::fatal`: report on standard error and in the
/// log, then exit with `EXIT_JOURNAL_FAILED`. An exit, not an abort: the
/// failure is the disk's, not a bug, and nothing in memory is worth a core
/// dump; what was acknowledged is already durable and what was not is never
/// acknowledged.
pub fn exit_process(msg: &str) {
    tracing::error!(error = msg, "a fatal failure; stopping the process");
    crate::report!(
        "bourse: {msg}; stopping the process (exit status {EXIT_JOURNAL_FAILED}); nothing is retried"
    );
    std::process::exit(i32::from(EXIT_JOURNAL_FAILED));
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            inbound_ring: 1 << 16,
            output_ring: 1 << 16,
            output_readers: 1,
            journal_queue: 1 << 16,
            idle: IdleStrategy::Spin,
            pin: true,
            snapshot_every_bytes: 256 << 20,
            fatal: exit_process,
            replicated: false,
        }
    }
}

/// Why a request was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The partition's inbound ring is full: back-pressure, try later.
    #[error("busy: the engine's inbound ring is full")]
    Busy,
    /// No such partition.
    #[error("no partition {0}")]
    NoPartition(usize),
    /// A replicated partition whose Raft group this node does not lead:
    /// nothing was proposed (the client should use the leader).
    #[error("not the leader of partition {0}")]
    NotLeader(usize),
}

/// Where commands go instead of the inbound rings when partitions are
/// replicated: the partitions' Raft groups (the `replica` crate), which
/// hand committed inputs to the engine threads as `Request::Input`.
pub trait Propose: Send + Sync + std::fmt::Debug {
    /// Offers a command to partition `partition`'s group; `Busy` when its
    /// proposal queue is full, `NotLeader` when this node does not lead it.
    /// `origin` (the client request it serves) is replicated with it.
    fn propose(
        &self,
        partition: usize,
        token: u64,
        command: Command,
        origin: Origin,
    ) -> Result<(), SubmitError>;
}

/// Why a routed command was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutedError {
    /// Not routable.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// Refused by a partition.
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// How the engine threads were placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Core id per partition, if pinned.
    pub cores: Vec<Option<usize>>,
    /// The idle strategy in force (`UNPINNED_IDLE` when unpinned for lack of cores).
    pub idle: IdleStrategy,
    /// Cores the machine offered.
    pub cores_available: usize,
}

struct PartitionHandle {
    shared: Arc<Shared>,
    engine: Option<JoinHandle<Engine>>,
    journal: Option<JoinHandle<()>>,
    history: Option<JoinHandle<()>>,
}

/// A running set of partitions.
pub struct Runtime {
    parts: Vec<PartitionHandle>,
    placement: Placement,
    durability: Durability,
    proposer: Option<Arc<dyn Propose>>,
    fatal: fn(&str),
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("partitions", &self.parts.len())
            .field("placement", &self.placement)
            .field("durability", &self.durability)
            .finish()
    }
}

/// One partition to start: its (recovered) engine, the last recovered
/// sequence number, and its persistence (`None` in `none` mode).
pub struct PartitionStart {
    /// The engine, fresh or recovered.
    pub engine: Engine,
    /// Last sequence number already applied.
    pub last_seq: Seq,
    /// Where its inputs go.
    pub persistence: Option<Box<dyn Persistence>>,
}

impl std::fmt::Debug for PartitionStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionStart")
            .field("last_seq", &self.last_seq)
            .finish()
    }
}

impl Runtime {
    /// Starts one engine thread (and journal thread) per partition.
    pub fn start(
        cfg: RuntimeConfig,
        durability: Durability,
        parts: Vec<PartitionStart>,
    ) -> Runtime {
        Self::start_with_history(cfg, durability, parts, Vec::new())
    }

    /// As [`Runtime::start`], with a history writer for partition `i` where
    /// `history[i]` is `Some`: its engine's transfer changes go through a
    /// bounded ring to a writer thread that cuts runs at durable seqs and
    /// installs them (`history::history_loop`).
    pub fn start_with_history(
        cfg: RuntimeConfig,
        durability: Durability,
        parts: Vec<PartitionStart>,
        mut history: Vec<Option<journal::history::RunWriter<journal::FsStorage>>>,
    ) -> Runtime {
        let cores = if cfg.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Core 0 stays with the OS, the network runtime and the journal threads.
        let can_pin = cfg.pin && cores.len() > parts.len();
        let idle = if can_pin {
            cfg.idle
        } else {
            if cfg.pin {
                tracing::warn!(
                    cores = available,
                    partitions = parts.len(),
                    "too few cores to pin engine threads (need partitions + 1): running unpinned, parking when idle"
                );
            }
            // Unpinned, a spinning (or yielding: CFS still gives the loop
            // its share) engine thread starves the gateway and journal
            // threads it shares cores with; parking measured better on 2
            // cores (bourse bench, 10k/s durable: p50 5.7 ms / p99 14.4 ms
            // with yield, 0.58 ms / 5.3 ms parking at most 50 µs).
            match cfg.idle {
                IdleStrategy::Spin => UNPINNED_IDLE,
                other => other,
            }
        };
        let mut placement = Placement {
            cores: Vec::new(),
            idle,
            cores_available: available,
        };
        let mut handles = Vec::new();
        for (i, p) in parts.into_iter().enumerate() {
            let journal_q = match durability {
                Durability::None => None,
                _ => Some(cfg.journal_queue),
            };
            let writer = history.get_mut(i).and_then(Option::take);
            let mut shared = Shared::new(cfg.inbound_ring, cfg.output_ring, journal_q, p.last_seq)
                .with_readers(cfg.output_readers);
            if let Some(w) = &writer {
                shared = shared.with_history(cfg.journal_queue);
                if cfg.replicated {
                    let h = HistoryHandoff::new(w.dir(), w.filter().cloned());
                    if let Some(link) = w.store_link() {
                        h.put_first_store(StoreLink {
                            link,
                            installed_run: 0,
                            by_seq: 0,
                        });
                    }
                    shared = shared.with_history_handoff(h);
                }
            }
            if cfg.replicated {
                shared = shared.replicated();
            }
            let shared = Arc::new(shared);
            let history_thread = writer.map(|w| {
                let (s, fatal) = (shared.clone(), cfg.fatal);
                std::thread::Builder::new()
                    .name(format!("history-{i}"))
                    .spawn(move || history::history_loop(w, s, fatal))
                    .expect("spawn history thread")
            });
            let core = if can_pin { Some(cores[i + 1]) } else { None };
            placement.cores.push(core.map(|c| c.id));
            let s = shared.clone();
            let engine = p.engine;
            let engine_thread = std::thread::Builder::new()
                .name(format!("engine-{i}"))
                .spawn(move || {
                    if let Some(c) = core {
                        if !core_affinity::set_for_current(c) {
                            tracing::warn!(core = c.id, "could not pin engine thread");
                        }
                    }
                    partition::run(engine, s, idle)
                })
                .expect("spawn engine thread");
            let journal = match (p.persistence, durability) {
                (Some(persist), Durability::Durable | Durability::Async) => {
                    let s = shared.clone();
                    let every = cfg.snapshot_every_bytes;
                    let max = cfg.journal_queue;
                    let fatal = cfg.fatal;
                    Some(
                        std::thread::Builder::new()
                            .name(format!("journal-{i}"))
                            .spawn(move || {
                                crate::journal_thread::journal_loop(persist, s, max, every, fatal)
                            })
                            .expect("spawn journal thread"),
                    )
                }
                _ => None,
            };
            handles.push(PartitionHandle {
                shared,
                engine: Some(engine_thread),
                journal,
                history: history_thread,
            });
        }
        Runtime {
            parts: handles,
            placement,
            durability,
            proposer: None,
            fatal: cfg.fatal,
        }
    }

    /// What stops the process on a failure nothing may survive
    /// (`RuntimeConfig::fatal`).
    pub fn fatal(&self) -> fn(&str) {
        self.fatal
    }

    /// How the threads were placed.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The durability mode.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Sends every later `submit` to `proposer` (replicated partitions).
    pub fn set_proposer(&mut self, proposer: Arc<dyn Propose>) {
        self.proposer = Some(proposer);
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// Offers a command to a partition; `Busy` when its ring is full.
    #[inline]
    pub fn submit(
        &self,
        partition: usize,
        token: u64,
        command: Command,
    ) -> Result<(), SubmitError> {
        self.submit_from(partition, token, command, Origin::NONE)
    }

    /// `submit` for client request `origin`: a replicated partition
    /// replicates the origin with the command (its committed-request table
    /// is built from it); a single node has no use for it.
    #[inline]
    pub fn submit_from(
        &self,
        partition: usize,
        token: u64,
        command: Command,
        origin: Origin,
    ) -> Result<(), SubmitError> {
        if let Some(r) = &self.proposer {
            return r.propose(partition, token, command, origin);
        }
        let p = self
            .parts
            .get(partition)
            .ok_or(SubmitError::NoPartition(partition))?;
        p.shared
            .inbound
            .push(Request::Command { token, command })
            .map_err(|_| SubmitError::Busy)
    }

    /// Routes a command by `map` (order ids global) and offers it; returns
    /// the partition, or `Busy` from the first full ring (a broadcast that is
    /// busy on a later partition has been taken by the earlier ones).
    pub fn submit_routed(
        &self,
        map: &PartitionMap,
        token: u64,
        command: Command,
    ) -> Result<Option<usize>, RoutedError> {
        self.submit_routed_from(map, token, command, Origin::NONE)
    }

    /// `submit_routed` for client request `origin` (see `submit_from`).
    pub fn submit_routed_from(
        &self,
        map: &PartitionMap,
        token: u64,
        command: Command,
        origin: Origin,
    ) -> Result<Option<usize>, RoutedError> {
        match map.route(command)? {
            Route::One(p, c) => {
                self.submit_from(p, token, c, origin)?;
                Ok(Some(p))
            }
            Route::All(c) => {
                for p in 0..self.parts.len() {
                    self.submit_from(p, token, c, origin)?;
                }
                Ok(None)
            }
        }
    }

    /// Asks a partition for a snapshot at its next position in the ring.
    pub fn request_snapshot(&self, partition: usize) -> Result<(), SubmitError> {
        let p = self
            .parts
            .get(partition)
            .ok_or(SubmitError::NoPartition(partition))?;
        p.shared
            .inbound
            .push(Request::Snapshot)
            .map_err(|_| SubmitError::Busy)
    }

    /// A reader of one partition's durable outputs through its first cursor
    /// (one reader per cursor at a time).
    pub fn reader(&self, partition: usize) -> OutputReader {
        self.reader_at(partition, 0)
    }

    /// A reader of one partition's durable outputs through cursor `cursor`
    /// (< `RuntimeConfig::output_readers`), independent of the others.
    pub fn reader_at(&self, partition: usize, cursor: usize) -> OutputReader {
        OutputReader::new(self.parts[partition].shared.clone(), cursor)
    }

    /// Shared counters of a partition (sequence numbers, applied count).
    pub fn shared(&self, partition: usize) -> &Arc<Shared> {
        &self.parts[partition].shared
    }

    /// Drains every partition, takes a final snapshot, waits for the journal
    /// to make it durable, stops the threads and returns the engines.
    pub fn shutdown(mut self) -> Vec<Engine> {
        for p in &self.parts {
            // The snapshot request goes through the ring: it sits after every
            // command accepted before shutdown.
            // Nobody reads the outputs of what drains now: the engine thread
            // must not wait for readers that are gone.
            p.shared.outbound.close();
            let mut req = Request::Snapshot;
            while let Err(back) = p.shared.inbound.push(req) {
                req = back;
                std::thread::yield_now();
            }
            p.shared.stop.store(true, Ordering::Release);
        }
        let mut engines = Vec::new();
        for p in &mut self.parts {
            let e = p
                .engine
                .take()
                .expect("engine thread")
                .join()
                .expect("engine thread panicked");
            if let Some(j) = p.journal.take() {
                j.join().expect("journal thread panicked");
            }
            if let Some(h) = p.history.take() {
                h.join().expect("history thread panicked");
            }
            engines.push(e);
        }
        engines
    }
}
