//! A node of a replicated Bourse: one Raft group per partition, each over
//! the partition's journal (`log_store`) and its running engine thread
//! (`executor`), on a tokio runtime of their own (two worker threads), so
//! the gateway's thread never waits on a journal sync or the network.
//!
//! Commands from the gateway reach a group through [`runtime::Propose`]: a
//! bounded queue per partition (full = `Busy`) drained by the group's
//! proposer task into batches (`client_write_ff`, in order). Inputs run on
//! the engine at apply, after commit. The proposer also proposes the `time`
//! inputs the engine's deadlines need (engine threads of replicated
//! partitions make none themselves).
//!
//! Invariants: a node takes commands only while it serves — it leads the
//! group and has applied an entry of its own term, so everything committed
//! before it is in its engine; a proposal that fails (the node stopped
//! leading) never gets a false answer: its tokens are handed back
//! ([`Cluster::take_failures`]) and the gateway closes those sessions, whose
//! clients then find the new leader and look their requests up there; the
//! groups of later partitions hand their leadership to partition 0's leader
//! when they can, so one node serves them all.

use crate::admin::{AdminGroup, AdminReply, AdminRequest, ADMIN_KIND};
use crate::executor::RingExecutor;
use crate::log_store::{JournalLog, LogError, LogStore, SnapshotStamps};
use crate::network::{serve_rpc, Network, ServeError, Transport};
use crate::sessions::CommittedTable;
use crate::state::EngineSm;
use crate::types::{Batch, Cfg, Item, NodeId, BATCH_INPUTS_MAX};
use crossbeam::queue::ArrayQueue;
use engine::{Command, EngineConfig, Timestamp};
use journal::FsStorage;
use openraft::impls::ProgressResponder;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use openraft_rt::deterministic_rng::DeterministicRng;
use openraft_rt::WatchReceiver;
use runtime::{Origin, Propose, Runtime, Shared, SubmitError};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

type Rt = DeterministicRng<openraft::TokioRuntime>;
type Sm = EngineSm<FsStorage, RingExecutor>;
type Group = Raft<Cfg, Sm>;

/// A member of the cluster: its id and addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Node id (≥ 1, unique).
    pub id: NodeId,
    /// Where its peers reach it (`bourse-raft/1`, UDP).
    pub raft_addr: String,
    /// Where clients reach it (order entry).
    pub client_addr: String,
}

/// A node's replication settings (`[cluster]`).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node.
    pub node_id: NodeId,
    /// Every member, this node included.
    pub members: Vec<Member>,
    /// Election timeout range (ms): a follower that hears no leader for a
    /// random time in it stands for election.
    pub election_timeout_ms_min: u64,
    /// Upper end of the election timeout range (ms).
    pub election_timeout_ms_max: u64,
    /// Leader heartbeat interval (ms).
    pub heartbeat_ms: u64,
    /// Log entries between snapshots (the log before a snapshot is purged
    /// from memory).
    pub snapshot_every_entries: u64,
    /// Log entries kept in memory behind the newest snapshot, so a
    /// follower that is at most this far behind catches up from the log;
    /// one further behind is sent the snapshot.
    pub log_kept_after_snapshot_entries: u64,
    /// Commands waiting to be proposed, per partition (full = `busy`).
    pub proposal_queue: usize,
    /// Journal segment size (bytes).
    pub segment_bytes: u64,
}

impl ClusterConfig {
    /// Defaults for `node_id` in `members`.
    pub fn new(node_id: NodeId, members: Vec<Member>) -> Self {
        ClusterConfig {
            node_id,
            members,
            election_timeout_ms_min: 300,
            election_timeout_ms_max: 600,
            heartbeat_ms: 100,
            snapshot_every_entries: 100_000,
            log_kept_after_snapshot_entries: 1_000,
            proposal_queue: 1 << 16,
            segment_bytes: 64 << 20,
        }
    }
}

/// Why a cluster node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configuration is inconsistent.
    #[error("[cluster] {0}")]
    Config(String),
    /// A partition's journal or Raft files.
    #[error(
        "partition {partition}: {source} — on a replicated node, do not repair the journal \
         (it may hold entries the cluster counted on): remove this node (`bourse cluster \
         remove-node`), clear its partition directories and add it back (`bourse cluster \
         add-node`); it catches up from the leader"
    )]
    Log {
        /// The partition.
        partition: usize,
        /// What failed.
        source: LogError,
    },
    /// A partition's snapshot file.
    #[error("partition {partition}: {source}")]
    Snapshot {
        /// The partition.
        partition: usize,
        /// What failed.
        source: crate::files::FileError,
    },
    /// openraft refused to start a group.
    #[error("partition {partition}: raft: {what}")]
    Raft {
        /// The partition.
        partition: usize,
        /// Why.
        what: String,
    },
    /// The partition's deadline bell has no slot left for the proposer.
    #[error("partition {partition}: {source}")]
    Doorbell {
        /// The partition.
        partition: usize,
        /// Why.
        source: runtime::DoorbellFull,
    },
    /// The node's tokio runtime.
    #[error("raft runtime: {0}")]
    Io(#[from] std::io::Error),
}

impl ClusterConfig {
    /// Checks ids, membership and timeouts.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |s: String| Err(ClusterError::Config(s));
        let mut ids: Vec<NodeId> = self.members.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.members.len() {
            return bad("member ids must be unique".into());
        }
        if ids.contains(&0) {
            return bad("member id 0 is reserved (ids start at 1)".into());
        }
        if !ids.contains(&self.node_id) {
            return bad(format!(
                "node_id {} is not among the members {ids:?}",
                self.node_id
            ));
        }
        if self.heartbeat_ms == 0 || self.election_timeout_ms_min <= 2 * self.heartbeat_ms {
            return bad("election_timeout_ms_min must exceed twice heartbeat_ms".into());
        }
        if self.election_timeout_ms_max <= self.election_timeout_ms_min {
            return bad("election_timeout_ms_max must exceed election_timeout_ms_min".into());
        }
        Ok(())
    }

    fn raft(&self) -> Result<Arc<Config>, ClusterError> {
        let c = Config {
            cluster_name: "bourse".into(),
            election_timeout_min: self.election_timeout_ms_min,
            election_timeout_max: self.election_timeout_ms_max,
            heartbeat_interval: self.heartbeat_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries.max(1)),
            max_in_snapshot_log_to_keep: self.log_kept_after_snapshot_entries,
            enable_pre_vote: Some(true),
            ..Config::default()
        };
        c.validate()
            .map(Arc::new)
            .map_err(|e| ClusterError::Config(e.to_string()))
    }
}

/// What a group is doing, for metrics and `/ready`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupStatus {
    /// Current term.
    pub term: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: &'static str,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Last log index.
    pub last_log: u64,
    /// Committed index.
    pub committed: u64,
    /// Applied index.
    pub applied: u64,
    /// Whether this node takes commands for the group.
    pub serving: bool,
    /// Elections this node's view went through (term changes seen).
    pub terms_seen: u64,
}

struct Part {
    raft: Group,
    queue: ArrayQueue<Item>,
    notify: Notify,
    serving: AtomicBool,
    leader: AtomicU64,
    terms_seen: AtomicU64,
    shared: Arc<Shared>,
    /// The state machine's committed-request table.
    committed: CommittedTable,
}

struct Inner {
    node_id: NodeId,
    epoch: u64,
    seed: u64,
    parts: Vec<Part>,
    failures: ArrayQueue<u64>,
    members: Vec<Member>,
    clock: Clock,
    /// Every group started with an empty log (a new cluster).
    fresh: bool,
    /// Stops the process when a group's Raft core dies (the runtime's
    /// `fatal`): a node without one of its groups must not keep running.
    fatal: fn(&str),
    /// Set by `shutdown` before the groups stop (their end is not a failure).
    stopping: AtomicBool,
    /// A leader no majority of voters answered for this long stops serving
    /// (`quorum_heard`): twice the longest election timeout.
    quorum_lease: Duration,
    /// How often a leader looks at its lease when nothing else changes.
    lease_check: Duration,
    /// Rung whenever a group starts or stops serving (`serving_bell`).
    serving_bell: Arc<Notify>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("partitions", &self.parts.len())
            .finish()
    }
}

/// The engine clock of proposals: wall time, never going back.
#[derive(Debug, Default)]
struct Clock(AtomicU64);

impl Clock {
    fn now(&self) -> Timestamp {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let prev = self.0.fetch_max(wall, Ordering::Relaxed);
        Timestamp(prev.max(wall))
    }
}

/// A running cluster node (all its partitions' groups).
#[derive(Debug)]
pub struct Cluster {
    inner: Arc<Inner>,
    rt: Option<tokio::runtime::Runtime>,
}

/// Serves inbound Raft RPCs for this node's groups.
#[derive(Debug, Clone)]
pub struct RpcTarget(Arc<Inner>);

impl RpcTarget {
    /// Serves one inbound Raft RPC for partition `group`.
    pub fn serve(
        &self,
        group: u32,
        kind: u8,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, ServeError>> + Send + 'static {
        let inner = self.0.clone();
        Rt::scope(inner.seed ^ 0x5e5e, async move {
            if kind == ADMIN_KIND {
                let req: AdminRequest =
                    postcard::from_bytes(&body).map_err(|e| ServeError::Decode {
                        kind,
                        what: e.to_string(),
                    })?;
                let reply = admin(&inner, req).await;
                return Ok(postcard::to_allocvec(&reply).expect("postcard encodes an admin reply"));
            }
            let part = inner
                .parts
                .get(group as usize)
                .ok_or(ServeError::Group(group))?;
            if crate::runs::is_run_kind(kind) {
                return crate::runs::serve(part.shared.clone(), kind, body).await;
            }
            serve_rpc(&part.raft, kind, &body).await
        })
    }
}

/// The proposer handle the runtime submits through.
#[derive(Debug, Clone)]
pub struct Proposer(Arc<Inner>);

impl Propose for Proposer {
    fn propose(
        &self,
        partition: usize,
        token: u64,
        command: Command,
        origin: Origin,
    ) -> Result<(), SubmitError> {
        let p = self
            .0
            .parts
            .get(partition)
            .ok_or(SubmitError::NoPartition(partition))?;
        if !p.serving.load(Ordering::Acquire) {
            return Err(SubmitError::NotLeader(partition));
        }
        p.queue
            .push(Item {
                token,
                command,
                origin,
            })
            .map_err(|_| SubmitError::Busy)?;
        p.notify.notify_one();
        Ok(())
    }
}

impl Cluster {
    /// Starts this node's groups over the running (replicated) partitions of
    /// `runtime`, whose data live in `data_dir/p<N>`; `transport` is called
    /// once, inside the node's tokio runtime, to make the peer transport.
    /// A fresh cluster is initialized by its lowest-numbered member.
    pub fn start(
        cfg: &ClusterConfig,
        data_dir: &Path,
        engine: EngineConfig,
        runtime: &Runtime,
        transport: impl FnOnce() -> Arc<dyn Transport> + Send,
    ) -> Result<Cluster, ClusterError> {
        cfg.validate()?;
        let shared: Vec<Arc<Shared>> = (0..runtime.partitions())
            .map(|p| runtime.shared(p).clone())
            .collect();
        let fatal = runtime.fatal();
        // On a thread of its own: the caller may itself be inside a tokio
        // runtime (the gateway's), where blocking on another is refused.
        std::thread::scope(|s| {
            s.spawn(|| Self::start_here(cfg, data_dir, (engine, fatal), shared, transport))
                .join()
                .expect("the raft start-up thread panicked")
        })
    }

    fn start_here(
        cfg: &ClusterConfig,
        data_dir: &Path,
        (engine, fatal): (EngineConfig, fn(&str)),
        shared: Vec<Arc<Shared>>,
        transport: impl FnOnce() -> Arc<dyn Transport>,
    ) -> Result<Cluster, ClusterError> {
        let raft_cfg = cfg.raft()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("raft")
            .enable_all()
            .build()?;
        let transport = {
            let _in = rt.enter();
            transport()
        };
        let seed = epoch_now();
        let mut parts = Vec::new();
        let mut fresh = true;
        for (p, shared) in shared.into_iter().enumerate() {
            let dir = runtime::partition_dir(data_dir, p);
            let (raft, was_fresh, committed) = rt.block_on(Rt::scope(
                seed ^ p as u64,
                open_group(
                    cfg,
                    &raft_cfg,
                    p,
                    &dir,
                    engine,
                    shared.clone(),
                    seed,
                    transport.clone(),
                ),
            ))?;
            fresh &= was_fresh;
            parts.push(Part {
                raft,
                queue: ArrayQueue::new(cfg.proposal_queue.max(1)),
                notify: Notify::new(),
                serving: AtomicBool::new(false),
                leader: AtomicU64::new(0),
                terms_seen: AtomicU64::new(0),
                shared,
                committed,
            });
        }
        let n = parts.len().max(1);
        let inner = Arc::new(Inner {
            node_id: cfg.node_id,
            epoch: seed,
            seed,
            parts,
            failures: ArrayQueue::new(cfg.proposal_queue.max(1) * n),
            members: cfg.members.clone(),
            clock: Clock::default(),
            fresh,
            fatal,
            stopping: AtomicBool::new(false),
            quorum_lease: Duration::from_millis(2 * cfg.election_timeout_ms_max),
            lease_check: Duration::from_millis(cfg.heartbeat_ms.max(1)),
            serving_bell: Arc::new(Notify::new()),
        });
        if fresh && cfg.members.iter().map(|m| m.id).min() == Some(cfg.node_id) {
            initialize(&rt, &inner, &cfg.members)?;
        }
        for p in 0..inner.parts.len() {
            // The engine thread rings whenever its next deadline moves:
            // the idle proposer sleeps until the deadline or the bell.
            let weak = Arc::downgrade(&inner);
            inner.parts[p]
                .shared
                .deadline_bell
                .register(Box::new(move || {
                    if let Some(i) = weak.upgrade() {
                        i.parts[p].notify.notify_one();
                    }
                }))
                .map_err(|e| ClusterError::Doorbell {
                    partition: p,
                    source: e,
                })?;
            let i = inner.clone();
            rt.spawn(Rt::scope(seed ^ (p as u64) << 8, propose_loop(i, p)));
            let i = inner.clone();
            rt.spawn(Rt::scope(seed ^ (p as u64) << 16, watch_loop(i, p)));
            if inner.parts[p].shared.history_handoff.is_some() {
                let (i, t) = (inner.clone(), transport.clone());
                rt.spawn(Rt::scope(seed ^ (p as u64) << 24, ship_loop(i, t, p)));
            }
        }
        Ok(Cluster {
            inner,
            rt: Some(rt),
        })
    }

    /// The highest request of client session `session` each partition has
    /// committed (0: none), by partition. Complete for every earlier term
    /// once this node serves (it has applied an entry of its own term).
    pub fn committed_requests(&self, session: u64) -> Vec<u64> {
        self.inner
            .parts
            .iter()
            .map(|p| p.committed.committed(session))
            .collect()
    }

    /// The handle `Runtime::set_proposer` takes.
    pub fn proposer(&self) -> Proposer {
        Proposer(self.inner.clone())
    }

    /// The node's tokio runtime (the peer server runs on it).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.as_ref().expect("running").handle().clone()
    }

    /// What the peer transport's handler serves inbound RPCs with.
    pub fn rpc_target(&self) -> RpcTarget {
        RpcTarget(self.inner.clone())
    }

    /// Rung (one permit kept) whenever a group starts or stops serving:
    /// the gateway ends its sessions at once when it stops.
    pub fn serving_bell(&self) -> Arc<Notify> {
        self.inner.serving_bell.clone()
    }

    /// Whether this node takes commands for every partition.
    pub fn serving(&self) -> bool {
        self.inner
            .parts
            .iter()
            .all(|p| p.serving.load(Ordering::Acquire))
    }

    /// The client address of partition 0's leader, as this node knows it.
    pub fn leader_client_addr(&self) -> Option<String> {
        let id = self.inner.parts.first()?.leader.load(Ordering::Acquire);
        self.inner
            .members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.client_addr.clone())
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// Each partition's group status.
    pub fn status(&self) -> Vec<GroupStatus> {
        self.inner.parts.iter().map(status_of).collect()
    }

    /// Hands every token whose proposal failed to `f` (those sessions must
    /// be closed: their requests' outcome is for the new leader to tell).
    pub fn take_failures(&self, mut f: impl FnMut(u64)) {
        while let Some(t) = self.inner.failures.pop() {
            f(t);
        }
    }

    /// Whether this node started a new cluster (every log empty).
    pub fn fresh(&self) -> bool {
        self.inner.fresh
    }

    /// Stops every group (after the gateway stopped submitting).
    pub fn shutdown(mut self) {
        if let Some(rt) = self.rt.take() {
            let inner = self.inner.clone();
            inner.stopping.store(true, Ordering::Release);
            // A thread of its own, as in `start`.
            std::thread::scope(|s| {
                s.spawn(|| {
                    for p in &inner.parts {
                        let _ = rt.block_on(Rt::scope(inner.seed, p.raft.shutdown()));
                    }
                    rt.shutdown_timeout(Duration::from_secs(2));
                });
            });
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn epoch_now() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    engine::rng::SplitMix64::new(t ^ (std::process::id() as u64) << 32).next_u64()
}

#[allow(clippy::too_many_arguments)]
async fn open_group(
    cfg: &ClusterConfig,
    raft_cfg: &Arc<Config>,
    p: usize,
    dir: &Path,
    engine: EngineConfig,
    shared: Arc<Shared>,
    epoch: u64,
    transport: Arc<dyn Transport>,
) -> Result<(Group, bool, CommittedTable), ClusterError> {
    let stamps = SnapshotStamps::default();
    let link = crate::state::RunLink {
        transport: transport.clone(),
        group: p as u32,
    };
    let history = shared.history_handoff.as_ref().map(|h| h.purged_seq_cell());
    let exec = RingExecutor::new(shared, engine);
    journal::create_private_dir(dir).map_err(ClusterError::Io)?;
    let (sm, anchor) = EngineSm::open(
        FsStorage,
        dir,
        Some((cfg.node_id, epoch)),
        exec,
        stamps.clone(),
    )
    .map_err(|source| ClusterError::Snapshot {
        partition: p,
        source,
    })?;
    let sm = sm.with_runs(link);
    let committed = sm.committed();
    let log = JournalLog::open(
        FsStorage,
        dir,
        cfg.segment_bytes,
        anchor,
        crate::log_store::SyncMode::Thread,
    )
    .map_err(|source| ClusterError::Log {
        partition: p,
        source,
    })?;
    if let Some(cell) = history {
        log.watch_purges(cell);
    }
    let fresh = anchor.is_none() && log.is_empty();
    let raft = Raft::new(
        cfg.node_id,
        raft_cfg.clone(),
        Network::new(transport, p as u32),
        LogStore::new(log, stamps),
        sm,
    )
    .await
    .map_err(|e| ClusterError::Raft {
        partition: p,
        what: e.to_string(),
    })?;
    Ok((raft, fresh, committed))
}

fn initialize(
    rt: &tokio::runtime::Runtime,
    inner: &Inner,
    members: &[Member],
) -> Result<(), ClusterError> {
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .iter()
        .map(|m| (m.id, BasicNode::new(m.raft_addr.clone())))
        .collect();
    for (p, part) in inner.parts.iter().enumerate() {
        let r = rt.block_on(Rt::scope(inner.seed, part.raft.initialize(nodes.clone())));
        if let Err(e) = r {
            return Err(ClusterError::Raft {
                partition: p,
                what: format!("initialize: {e}"),
            });
        }
    }
    tracing::info!(members = members.len(), "initialized a new cluster");
    Ok(())
}

fn status_of(p: &Part) -> GroupStatus {
    let m = p.raft.metrics().borrow_watched().clone();
    GroupStatus {
        term: m.current_term,
        role: match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        },
        leader: m.current_leader,
        last_log: m.last_log_index.unwrap_or(0),
        committed: m.cluster_committed.map_or(0, |l| l.index),
        applied: m.last_applied.map_or(0, |l| l.index),
        serving: p.serving.load(Ordering::Acquire),
        terms_seen: p.terms_seen.load(Ordering::Relaxed),
    }
}

/// Follows a group's metrics: whether this node serves it, who leads, and
/// (partitions after the first) leadership handed to partition 0's leader.
async fn watch_loop(inner: Arc<Inner>, p: usize) {
    let part = &inner.parts[p];
    let mut rx = part.raft.metrics();
    let mut term = 0;
    loop {
        let m = rx.borrow_watched().clone();
        let leads = m.state == ServerState::Leader;
        // Serving once an entry of its own term is applied: everything
        // committed before this term is then in the engine.
        let caught_up = m
            .last_applied
            .is_some_and(|l| l.leader_id.term == m.current_term);
        // A leader cut off from its peers stays leader in openraft until it
        // hears a higher term, which a partition may delay for hours: once
        // no majority answered it for the lease (the others may have
        // elected a leader by then), it stops serving, so its sessions end
        // and its clients find the leader that can commit.
        let serving = leads && caught_up && quorum_heard(&m, inner.quorum_lease);
        if serving && !part.serving.load(Ordering::Acquire) {
            sessions_lost(part).await;
        }
        if part.serving.swap(serving, Ordering::AcqRel) != serving {
            inner.serving_bell.notify_one();
        }
        if let Some(h) = &part.shared.history_handoff {
            h.set_serving(serving);
        }
        part.leader
            .store(m.current_leader.unwrap_or(0), Ordering::Release);
        if m.current_term != term {
            term = m.current_term;
            part.terms_seen.fetch_add(1, Ordering::Relaxed);
        }
        if leads && p > 0 {
            let first = inner.parts[0].leader.load(Ordering::Acquire);
            if first != 0 && first != inner.node_id {
                let _ = part.raft.trigger().transfer_leader(first).await;
            }
        }
        // While leading, the lease runs out with nothing else changing.
        let ended = if leads {
            tokio::time::timeout(inner.lease_check, rx.changed())
                .await
                .is_ok_and(|r| r.is_err())
        } else {
            rx.changed().await.is_err()
        };
        if m.running_state.is_err() || ended {
            let state = rx.borrow_watched().running_state.clone();
            return group_stopped(&inner, p, &state);
        }
    }
}

/// Whether a majority of the voters answered this leader within `lease`
/// (a lone voter is its own majority).
fn quorum_heard(m: &openraft::RaftMetrics<Cfg>, lease: Duration) -> bool {
    use openraft::type_config::TypeConfigExt;
    if m.membership_config.membership().voter_ids().count() <= 1 {
        return true;
    }
    m.last_quorum_acked
        .as_ref()
        .is_some_and(|acked| Cfg::now() < **acked + lease)
}

/// Partition `p`'s Raft core exited (`state`: why, when it said). Unless
/// the node is shutting down, the process stops: a node that lost one of
/// its groups would keep answering as if it held the partition (and log
/// a refused RPC every heartbeat for ever).
fn group_stopped(inner: &Inner, p: usize, state: &Result<(), openraft::error::Fatal<Cfg>>) {
    if inner.stopping.load(Ordering::Acquire)
        || matches!(state, Err(openraft::error::Fatal::Stopped))
    {
        return;
    }
    let why = match state {
        Err(e) => e.to_string(),
        Ok(()) => "its core exited".to_string(),
    };
    (inner.fatal)(&format!("partition {p}'s Raft group stopped: {why}"));
}

/// This node starts to serve the group: every session of the previous
/// leader (or of this node's own earlier leadership) is gone, so the first
/// command it proposes is `SessionsLost`, which cancels for the sessions
/// that armed cancel-on-disconnect. It is queued before `serving` is set,
/// so it precedes every command of this leadership (the queue is FIFO and
/// `propose` refuses while not serving).
async fn sessions_lost(part: &Part) {
    let mut item = Item::internal(Command::SessionsLost);
    loop {
        match part.queue.push(item) {
            Ok(()) => break,
            Err(back) => {
                item = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    part.notify.notify_one();
}

/// Longest an idle proposer sleeps without a wake-up (a safety net: the
/// deadline bell and the proposals wake it).
const IDLE_WAIT_MAX: Duration = Duration::from_secs(1);

/// Drains a partition's proposal queue into batches, in order; proposes
/// the `time` inputs due deadlines need.
async fn propose_loop(inner: Arc<Inner>, p: usize) {
    let part = &inner.parts[p];
    loop {
        // Moved into the entry whole: one allocation per batch, no copy.
        let mut items = Vec::with_capacity(part.queue.len().min(BATCH_INPUTS_MAX));
        while items.len() < BATCH_INPUTS_MAX {
            match part.queue.pop() {
                Some(i) => items.push(i),
                None => break,
            }
        }
        let now = inner.clock.now();
        if items.is_empty() {
            let deadline = part.shared.next_deadline_ns.load(Ordering::Acquire);
            let serving = part.serving.load(Ordering::Acquire);
            if !(deadline <= now.0 && serving) {
                // Until the next deadline, a proposal or the engine's
                // deadline bell (the deadline moved): an idle group sleeps.
                let wait = match serving {
                    true => Duration::from_nanos(deadline.saturating_sub(now.0)),
                    false => IDLE_WAIT_MAX,
                };
                let _ = tokio::time::timeout(wait.min(IDLE_WAIT_MAX), part.notify.notified()).await;
                continue;
            }
            items.push(Item::internal(Command::Time { now }));
        }
        let tokens: Vec<u64> = items.iter().map(|i| i.token).filter(|&t| t != 0).collect();
        let time_only = items.len() == 1 && matches!(items[0].command, Command::Time { .. });
        let batch = Batch {
            leader: inner.node_id,
            epoch: inner.epoch,
            time: now,
            items,
        };
        let (tx, committed, rx) = ProgressResponder::new();
        if part.raft.client_write_ff(batch, Some(tx)).await.is_err() {
            fail(&inner, &tokens);
            return;
        }
        let i = inner.clone();
        tokio::spawn(async move {
            // Both ends are held until the entry is applied (openraft
            // reports the commit first, then the apply).
            let _ = committed.await;
            if !matches!(rx.await, Ok(Ok(_))) {
                fail(&i, &tokens);
            }
        });
        if time_only {
            // One time input per deadline: wait for it to be applied.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// How often a serving node looks for a run its writer cut.
const SHIP_POLL: Duration = Duration::from_millis(5);
/// How long a proposed install may take to be applied before it is
/// shipped and proposed again (a lost proposal; a duplicate is refused by
/// every engine alike, as out of order).
const SHIP_RETRY: Duration = Duration::from_secs(10);

/// While this node serves the group: ships each run its history writer
/// cut to the other members and, once a majority (this node included)
/// holds it, proposes its install (see `runs`).
async fn ship_loop(inner: Arc<Inner>, transport: Arc<dyn Transport>, p: usize) {
    let part = &inner.parts[p];
    let h = part.shared.history_handoff.as_ref().expect("history on");
    // The run proposed last, when, and in which term (a new term of this
    // node's may ship it again at once: the old proposal may be lost).
    let mut proposed: Option<(runtime::CutRun, tokio::time::Instant, u64)> = None;
    loop {
        tokio::time::sleep(SHIP_POLL).await;
        let Some(c) = h.cut().filter(|_| part.serving.load(Ordering::Acquire)) else {
            continue;
        };
        if c.run <= h.queued_run()
            || proposed.is_some_and(|(q, at, term)| {
                q == c && at.elapsed() < SHIP_RETRY && term == current_term(part)
            })
        {
            continue;
        }
        let (peers, voters) = ship_targets(part, inner.node_id);
        // Besides this node, a majority of the voters needs this many more.
        let quorum = (voters.as_slice(), voters.len() / 2);
        let group = (p as u32, h);
        let held = match crate::runs::ship(transport.clone(), group, c, &peers, quorum).await {
            Ok(Some(ids)) => 1 + ids.len(),
            Ok(None) => {
                // Replaced while this node followed: its writer cuts again.
                h.withdraw(c);
                continue;
            }
            Err(e) => {
                tracing::error!(partition = p, run = c.run, error = %e, "cannot read a history run to ship it");
                tokio::time::sleep(SHIP_RETRY).await;
                continue;
            }
        };
        if held * 2 <= voters.len() {
            tracing::warn!(
                partition = p,
                run = c.run,
                held,
                voters = voters.len(),
                "a history run is not held by a majority yet; shipping it again"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let cmd = Command::InstallHistory {
            run: c.run,
            through_seq: c.through,
            checksum: c.checksum,
        };
        if part.queue.push(Item::internal(cmd)).is_ok() {
            part.notify.notify_one();
            proposed = Some((c, tokio::time::Instant::now(), current_term(part)));
        }
    }
}

fn current_term(part: &Part) -> u64 {
    part.raft.metrics().borrow_watched().current_term
}

/// The members to ship a run to (every other member, learners too) and
/// the voters.
fn ship_targets(part: &Part, me: NodeId) -> (crate::runs::Peers, Vec<NodeId>) {
    let m = part.raft.metrics().borrow_watched().clone();
    let mem = m.membership_config.membership();
    let peers = mem
        .nodes()
        .filter(|(id, _)| **id != me)
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect();
    (peers, mem.voter_ids().collect())
}

fn fail(inner: &Inner, tokens: &[u64]) {
    for &t in tokens {
        // Bounded like the proposal queues it drains; never full in practice
        // (the gateway empties it every loop).
        let _ = inner.failures.push(t);
    }
}

/// Serves an operator request (see `admin`).
async fn admin(inner: &Inner, req: AdminRequest) -> AdminReply {
    if req == AdminRequest::Status {
        let groups = inner
            .parts
            .iter()
            .enumerate()
            .map(|(p, part)| admin_group(p, part))
            .collect();
        return AdminReply::Status {
            node: inner.node_id,
            groups,
        };
    }
    for (p, part) in inner.parts.iter().enumerate() {
        let m = part.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return AdminReply::NotLeader {
                leader: m.current_leader,
            };
        }
        let failed = |why: String| AdminReply::Failed {
            partition: p as u32,
            why,
        };
        match &req {
            AdminRequest::AddNode { id, raft_addr } => {
                // Blocks until the learner caught up (from a snapshot when
                // the log it needs was purged).
                let node = BasicNode::new(raft_addr.clone());
                if let Err(e) = part.raft.add_learner(*id, node, true).await {
                    return failed(format!("add learner {id}: {e}"));
                }
                let voters =
                    openraft::ChangeMembers::AddVoterIds(std::collections::BTreeSet::from([*id]));
                if let Err(e) = part.raft.change_membership(voters, true).await {
                    return failed(format!("make {id} a voter: {e}"));
                }
            }
            AdminRequest::RemoveNode { id } => {
                let gone =
                    openraft::ChangeMembers::RemoveVoters(std::collections::BTreeSet::from([*id]));
                if let Err(e) = part.raft.change_membership(gone, false).await {
                    return failed(format!("remove {id}: {e}"));
                }
            }
            AdminRequest::Status => {}
        }
    }
    AdminReply::Done
}

fn admin_group(p: usize, part: &Part) -> AdminGroup {
    let m = part.raft.metrics().borrow_watched().clone();
    let s = status_of(part);
    let mem = m.membership_config.membership();
    AdminGroup {
        partition: p as u32,
        role: s.role.to_string(),
        term: s.term,
        leader: s.leader,
        voters: mem.voter_ids().collect(),
        learners: mem.learner_ids().collect(),
        indices: (s.last_log, s.committed, s.applied),
    }
}
