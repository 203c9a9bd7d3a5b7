//! The runtime: partitions of pinned single-threaded engine cores fed by
//! bounded lock-free rings, a journal thread per partition doing group
//! commit, and output readers that release only durable outputs.
//!
//! Shape (per partition): producers → `inbound` ring (crossbeam `ArrayQueue`,
//! bounded, lock-free) → engine thread (sequencer + `Engine::apply`) →
//! `journal` queue → journal thread (one write + one sync per group, then
//! publishes `durable_seq` and rings the partition's doorbell) and →
//! `outbound` ring (one slot per input: header, events, rows) → one
//! `OutputReader` per cursor (order entry; market data), each handing out an
//! input's outputs only once `durable_seq` has reached it.
//!
//! Invariants: every queue is bounded; a full inbound ring is reported to
//! the producer as `Busy`, never a block or a drop; in `durable` mode no
//! output leaves the reader before its input is on disk; an fsync error stops
//! the process (it is never retried: the page cache state is unknown after a
//! failed fsync).
//!
//! The crate: the partition threads (`partition`), the sequencer, idle
//! strategies, partition routing and global order ids (`router`), the
//! journal and history writer threads and the output reader (`threads`),
//! and the in-process pipeline that opens, recovers and runs them
//! (`pipeline`). It knows nothing of the network, configuration files or
//! metrics exposition.

mod doorbell;
mod feed_slots;
mod history;
mod history_handoff;
mod idle;
mod journal_thread;
mod output;
mod partition;
mod pipeline;
mod report;
mod router;
mod sequencer;
mod threads;

pub use doorbell::{Doorbell, DoorbellFull, Wake, DOORBELLS_MAX};
pub use feed_slots::{FeedBytes, FeedSlots};
pub use history_handoff::{
    CutRun, HistoryHandoff, HistoryItem, HistoryReset, MergePause, StoreLink,
};
pub use idle::{IdleStrategy, Idler};
pub use journal::{record::Origin, Durability};
pub use output::{
    Caller, Mark, Output, OutputReader, OutputRef, OutputRing, EVENTS_INLINE, READERS_MAX,
};
pub use partition::{Counter, Counters, Request, Shared, SnapshotBytes, COMMAND_KINDS};
pub use pipeline::{
    partition_dir, FsPersistence, PartitionRecovery, Pipeline, PipelineConfig, PipelineError,
    DEFAULT_HISTORY_FILTER_BYTES, DEFAULT_HISTORY_RUN_RECORDS,
};
pub use router::{globalize, localize, PartitionMap, Route, RouteError, PARTITION_SHIFT};
pub use sequencer::Sequencer;
pub use threads::*;
