//! Replication: every partition a Raft group (openraft). The log is the
//! partition's journal (one commit block per entry, the log id in its
//! header), the state machine is the engine, engine snapshots are Raft
//! snapshots, and the engine runs at apply — after commit, on every
//! replica, the leader included — so every output it makes is committed.
//!
//! The crate: the type configuration and the entry payload (`types`), the
//! journal-backed log store (`log_store`), the engine state machine
//! (`state`) and its committed-request table (`sessions`), the small
//! durable files beside the journal (`files`), the network adapter
//! over any byte transport (`network`), and transfer-history runs between
//! replicas (`runs`).

mod admin;
mod cluster;
mod executor;
mod files;
mod log_store;
mod network;
mod runs;
mod sessions;
mod state;
mod types;

pub use admin::{AdminGroup, AdminReply, AdminRequest, ADMIN_KIND};
pub use cluster::{Cluster, ClusterConfig, ClusterError, GroupStatus, Member, Proposer, RpcTarget};
pub use executor::RingExecutor;
pub use files::{FileError, MEMBERS_FILE, SNAPSHOT_FILE, VOTE_FILE};
pub use log_store::{Anchor, JournalLog, LogError, LogStore, SnapshotStamps, SyncMode, Vote};
pub use network::{
    kind, serve_rpc, CallFuture, Network, Peer, ServeError, Transport, TransportError,
};
pub use runs::kind as run_kind;
pub use sessions::{CommittedRequests, CommittedTable, Row, COMMITTED_SESSIONS_MAX};
pub use state::{
    EngineSm, Executor, InlineExecutor, Membership, RestoreError, RunLink, SnapBuilder,
    SnapshotMeta, Taken,
};
pub use types::{
    inputs_of, kind_of, Batch, BatchError, Cfg, Entry, Item, LogId, NodeId, Payload, Stamp,
    BATCH_INPUTS_MAX,
};
