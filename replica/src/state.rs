//! The engine as the Raft state machine of a partition.
//!
//! openraft hands committed entries to `apply`, on every replica, the leader
//! included; each is turned into engine inputs by `types::inputs_of` (the
//! same numbering the log store wrote) and given to an [`Executor`]: the
//! engine itself (in process, [`InlineExecutor`]) or a partition's engine
//! thread. Snapshots are the engine's own snapshot bytes plus the numbering
//! (`Stamp`), the state hash, the committed-request table (`sessions`) and
//! market data's checkpoint (`feed`, opaque here) at the snapshot's log
//! id, kept in `raft.snapshot` and sent whole to followers that fell
//! behind.
//!
//! Invariants: the executor sees only committed entries, each exactly once,
//! in index order; an installed snapshot is applied only if, restored, the
//! engine's state hash equals the one the leader recorded (never a state
//! it cannot verify); the snapshot file is written durably before the
//! snapshot is reported built or installed; the feed checkpoint stored is
//! the one market data took at the snapshot's own seq (matched by seq,
//! never another), and a snapshot waits for it on the builder's task, never
//! on apply.

use crate::files::{read_value, write_value, FileError, SNAPSHOT_FILE};
use crate::log_store::{Anchor, SnapshotStamps};
use crate::sessions::{CommittedTable, Row};
use crate::types::{inputs_of, Cfg, Entry, LogId, NodeId, Stamp};
use engine::{Engine, EngineConfig, Events, Input, Seq};
use futures_util::StreamExt;
use journal::Storage;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use runtime::{Origin, Shared};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A snapshot's metadata in this configuration.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<Cfg>;
/// A stored membership in this configuration.
pub type Membership = openraft::type_config::alias::StoredMembershipOf<Cfg>;

/// Where committed inputs are executed.
pub trait Executor: Send + 'static {
    /// Executes one committed input; `token` is the proposing session's
    /// (0 when this process did not propose it), `origin` the client
    /// request it serves (as replicated).
    fn execute(&mut self, input: &Input, token: u64, origin: Origin);
    /// The engine's snapshot after everything executed so far.
    fn snapshot(&mut self) -> Taken;
    /// Replaces the engine's state with a snapshot's, which covers inputs
    /// through `last_seq`; `feed` is the market-data checkpoint the
    /// snapshot carries, if any. Returns the restored state's hash.
    fn restore(
        &mut self,
        engine_bytes: &[u8],
        last_seq: Seq,
        feed: Option<&[u8]>,
    ) -> Result<u128, RestoreError>;
    /// The partition this engine runs in, for the market-data slots and
    /// the history handoff (`None`: an engine of its own).
    fn shared(&self) -> Option<Arc<Shared>> {
        None
    }
}

/// An engine snapshot as an executor takes it.
#[derive(Debug)]
pub struct Taken {
    /// The engine's state hash.
    pub state_hash: u128,
    /// `Engine::snapshot()` bytes.
    pub engine: Vec<u8>,
    /// Its last installed history run (run, through seq, checksum).
    pub history: Option<(u64, u64, u128)>,
}

impl Taken {
    /// What `engine` is now.
    pub fn of(engine: &Engine) -> Self {
        Taken {
            state_hash: engine.state_hash(),
            engine: engine.snapshot(),
            history: engine.installed_history().map(|(r, t, c)| (r, t.0, c)),
        }
    }
}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The engine's bytes do not restore.
    #[error(transparent)]
    Engine(#[from] engine::SnapshotError),
    /// The transfer history the restored engine installed is not here.
    #[error("the snapshot's transfer history: {0}")]
    History(#[from] journal::history::HistoryError),
}

/// An engine owned by the state machine itself (tests, simulation, tools).
#[derive(Debug)]
pub struct InlineExecutor {
    engine: Engine,
    events: Events,
    cfg: EngineConfig,
}

impl InlineExecutor {
    /// A fresh engine of `cfg`.
    pub fn new(cfg: EngineConfig) -> Self {
        let engine = Engine::new(cfg);
        let events = engine.new_events();
        InlineExecutor {
            engine,
            events,
            cfg,
        }
    }
    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
    /// The events of the last executed input.
    pub fn events(&self) -> &Events {
        &self.events
    }
}

impl Executor for InlineExecutor {
    fn execute(&mut self, input: &Input, _token: u64, _origin: Origin) {
        self.engine.apply(input, &mut self.events);
    }
    fn snapshot(&mut self) -> Taken {
        Taken::of(&self.engine)
    }
    fn restore(
        &mut self,
        bytes: &[u8],
        _last_seq: Seq,
        _feed: Option<&[u8]>,
    ) -> Result<u128, RestoreError> {
        self.engine = Engine::restore(self.cfg, bytes)?;
        Ok(self.engine.state_hash())
    }
}

/// What a snapshot carries beside openraft's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    stamp: Stamp,
    state_hash: u128,
    engine: Vec<u8>,
    /// The committed-request table, by session key.
    sessions: Vec<Row>,
    /// Market data's checkpoint at the same seq (`feeds::FeedBuilder`
    /// bytes), when the node that took the snapshot serves market data
    /// with complete books.
    feed: Option<Vec<u8>>,
    /// The engine's last installed history run (run, through seq,
    /// checksum): a node that installs the snapshot first holds every run
    /// through it, the same files as the node that took it.
    history: Option<(u64, u64, u128)>,
}

/// A snapshot as stored and sent: openraft's metadata and our body.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    meta: SnapshotMeta,
    body: Body,
}

/// The newest snapshot, shared by the state machine and its builders.
type Current = Arc<Mutex<Option<Stored>>>;

/// The engine state machine of one partition.
#[derive(Debug)]
pub struct EngineSm<S: Storage, X: Executor> {
    storage: S,
    dir: PathBuf,
    me: Option<(NodeId, u64)>,
    // A mutex only to make the state machine `Sync` (openraft asks for it);
    // reached through `&mut self`, it is never locked.
    exec: Mutex<X>,
    applied: Option<LogId>,
    membership: Membership,
    stamp: Stamp,
    current: Current,
    stamps: SnapshotStamps,
    committed: CommittedTable,
    /// Where this replica fetches history runs it lacks (absent: no
    /// on-disk history, or no peers: tests and tools).
    runs: Option<RunLink>,
}

/// A group's way to its peers' history runs: the transport, the group.
#[derive(Clone)]
pub struct RunLink {
    /// The peer transport.
    pub transport: Arc<dyn crate::network::Transport>,
    /// The group (partition).
    pub group: u32,
}

impl std::fmt::Debug for RunLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLink")
            .field("group", &self.group)
            .finish()
    }
}

impl<S: Storage + Clone, X: Executor> EngineSm<S, X> {
    /// Opens the state machine of `dir`: restores `raft.snapshot` into
    /// `exec` when there is one, and returns where the log must start.
    /// `me` is (this node, this process's epoch): tokens of batches this
    /// process proposed are passed to the executor.
    pub fn open(
        storage: S,
        dir: &Path,
        me: Option<(NodeId, u64)>,
        exec: X,
        stamps: SnapshotStamps,
    ) -> Result<(Self, Anchor), FileError> {
        let stored: Option<Stored> = match read_value(&storage, dir, SNAPSHOT_FILE) {
            Err(FileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
            other => other?,
        };
        let mut sm = EngineSm {
            storage,
            dir: dir.to_path_buf(),
            me,
            exec: Mutex::new(exec),
            applied: None,
            membership: Membership::default(),
            stamp: Stamp::default(),
            current: Arc::new(Mutex::new(None)),
            stamps,
            committed: CommittedTable::default(),
            runs: None,
        };
        let mut anchor = None;
        if let Some(s) = stored {
            sm.restore(&s).map_err(|e| FileError::Damaged {
                path: dir.join(SNAPSHOT_FILE),
                what: e.to_string(),
            })?;
            anchor = s.meta.last_log_id.map(|id| (id, s.body.stamp));
            *sm.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
        }
        Ok((sm, anchor))
    }

    /// Fetching history runs this replica lacks from its peers through
    /// `link` (when its partition keeps an on-disk history).
    pub fn with_runs(mut self, link: RunLink) -> Self {
        self.runs = Some(link);
        self
    }

    /// The other members (id, address) of the applied membership, for
    /// history run transfers.
    fn peers(&self) -> crate::runs::Peers {
        self.peers_of(&self.membership)
    }

    /// The members of `m` other than this node (id, address).
    fn peers_of(&self, m: &Membership) -> crate::runs::Peers {
        let me = self.me.map(|m| m.0);
        m.membership()
            .nodes()
            .filter(|(id, _)| Some(**id) != me)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    /// The history handoff and run link, for an entry or snapshot that
    /// names history run `run`: `None` where runs do not travel (tests and
    /// tools), an error on a member that keeps no on-disk history (its
    /// engine would refuse the install and diverge from every member that
    /// keeps one: it stops instead).
    fn run_parts(&mut self, run: u64) -> io::Result<Option<(Arc<Shared>, RunLink)>> {
        let Some(link) = self.runs.clone() else {
            return Ok(None);
        };
        match self.exec().shared() {
            Some(shared) if shared.history_handoff.is_some() => Ok(Some((shared, link))),
            _ => Err(io::Error::other(format!(
                "the log installs transfer history run {run} but this node keeps no on-disk \
                 history ([history] run_records = 0): every member must keep one"
            ))),
        }
    }

    /// Before an entry reaches the engine: the file of every history run
    /// it installs is here, the one the log names.
    async fn ensure_installs(&mut self, entry: &Entry) -> io::Result<()> {
        let EntryPayload::Normal(b) = &entry.payload else {
            return Ok(());
        };
        let installs = b.items.iter().filter_map(|it| match it.command {
            engine::Command::InstallHistory { run, checksum, .. } => Some((run, checksum)),
            _ => None,
        });
        let installs: Vec<(u64, u128)> = installs.collect();
        let Some(&(first, _)) = installs.first() else {
            return Ok(());
        };
        let Some((shared, link)) = self.run_parts(first)? else {
            return Ok(());
        };
        let h = shared.history_handoff.as_ref().expect("checked");
        let peers = self.peers();
        for r in installs {
            crate::runs::ensure_run(&*link.transport, link.group, h, r, &peers)
                .await
                .map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// Before a snapshot is restored: every history run its engine
    /// installed is here. The peers are the snapshot's members: a node that
    /// never applied an entry (it restarted without a snapshot of its own,
    /// or joined empty) knows no other membership yet.
    async fn ensure_snapshot_runs(&mut self, body: &Body, members: &Membership) -> io::Result<()> {
        let Some((run, _, checksum)) = body.history else {
            return Ok(());
        };
        let Some((shared, link)) = self.run_parts(run)? else {
            return Ok(());
        };
        let h = shared.history_handoff.as_ref().expect("checked");
        let peers = self.peers_of(members);
        crate::runs::ensure_through(&*link.transport, link.group, h, (run, checksum), &peers)
            .await
            .map_err(io::Error::other)
    }

    /// The committed-request table this state machine keeps (a handle on
    /// the same table: read it while the group runs).
    pub fn committed(&self) -> CommittedTable {
        self.committed.clone()
    }

    /// Runs `f` on the executor.
    pub fn with_executor<T>(&mut self, f: impl FnOnce(&mut X) -> T) -> T {
        f(self.exec())
    }

    fn exec(&mut self) -> &mut X {
        self.exec.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// The last applied log id and the numbering after it.
    pub fn applied(&self) -> (Option<LogId>, Stamp) {
        (self.applied, self.stamp)
    }

    fn restore(&mut self, s: &Stored) -> io::Result<()> {
        let hash = self
            .exec()
            .restore(
                &s.body.engine,
                Seq(s.body.stamp.seq),
                s.body.feed.as_deref(),
            )
            .map_err(|e| io::Error::other(format!("snapshot does not restore: {e}")))?;
        if hash != s.body.state_hash {
            return Err(io::Error::other(format!(
                "snapshot restores to state hash {hash:032x}, it was taken at {:032x}",
                s.body.state_hash
            )));
        }
        self.committed.lock().restore(&s.body.sessions);
        self.applied = s.meta.last_log_id;
        self.membership = s.meta.last_membership.clone();
        self.stamp = s.body.stamp;
        if let Some(id) = s.meta.last_log_id {
            self.stamps.set(id, s.body.stamp);
        }
        Ok(())
    }

    fn apply_entry(&mut self, entry: &Entry) {
        let (stamp, me) = (self.stamp, self.me);
        let exec = self.exec.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut table = self.committed.lock();
        let index = entry.log_id.index;
        self.stamp = inputs_of(&entry.payload, stamp, me, |input, token, origin| {
            table.note(origin, index);
            exec.execute(&input, token, origin)
        });
        drop(table);
        self.applied = Some(entry.log_id);
        if let EntryPayload::Membership(m) = &entry.payload {
            self.membership = Membership::new(Some(entry.log_id), m.clone());
        }
    }
}

/// Builds a snapshot taken when the builder was made (on the state
/// machine's task, so at an exact log id) and stores it.
#[derive(Debug)]
pub struct SnapBuilder<S: Storage> {
    storage: S,
    dir: PathBuf,
    stored: Stored,
    current: Current,
    /// Where market data answers the snapshot's mark, if it follows this engine.
    feed: Option<Arc<Shared>>,
}

/// Longest wait for market data's checkpoint: it is behind the engine by
/// at most its output ring, normally microseconds; past this the snapshot
/// goes without one (a node that installs it warns that its books lack
/// what the snapshot covered).
const FEED_WAIT: Duration = Duration::from_secs(10);

impl<S: Storage> SnapBuilder<S> {
    /// Market data's checkpoint at this snapshot's seq, waited for.
    async fn feed_checkpoint(&self) -> Option<Vec<u8>> {
        let shared = self.feed.as_ref().filter(|s| s.feed.wanted())?;
        let seq = Seq(self.stored.body.stamp.seq);
        let deadline = tokio::time::Instant::now() + FEED_WAIT;
        loop {
            if let Some(answer) = shared.feed.taken_at(seq) {
                return answer.map(|b| b.to_vec());
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    seq = seq.0,
                    "market data gave no checkpoint for the snapshot in time: it goes without"
                );
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl<S: Storage + Clone + 'static> RaftSnapshotBuilder<Cfg> for SnapBuilder<S> {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(
        &mut self,
    ) -> Result<openraft::type_config::alias::SnapshotOf<Cfg, Vec<u8>>, io::Error> {
        self.stored.body.feed = self.feed_checkpoint().await;
        write_value(&self.storage, &self.dir, SNAPSHOT_FILE, &self.stored)?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.stored.clone());
        Ok(openraft::Snapshot {
            meta: self.stored.meta.clone(),
            snapshot: encode_body(&self.stored.body),
        })
    }
}

fn encode_body(b: &Body) -> Vec<u8> {
    postcard::to_allocvec(b).expect("postcard encodes a snapshot body")
}

impl<S: Storage + Clone + 'static, X: Executor> RaftStateMachine<Cfg> for EngineSm<S, X> {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapBuilder<S>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures_util::Stream<Item = Result<EntryResponder<Cfg>, io::Error>> + Unpin + Send,
    {
        while let Some(next) = entries.next().await {
            let (entry, responder) = next?;
            self.ensure_installs(&entry).await?;
            self.apply_entry(&entry);
            if let Some(r) = responder {
                r.send(());
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let Taken {
            state_hash,
            engine,
            history,
        } = self.exec().snapshot();
        let feed = self.exec().shared();
        SnapBuilder {
            storage: self.storage.clone(),
            dir: self.dir.clone(),
            stored: Stored {
                meta: SnapshotMeta {
                    last_log_id: self.applied,
                    last_membership: self.membership.clone(),
                },
                body: Body {
                    stamp: self.stamp,
                    state_hash,
                    engine,
                    sessions: self.committed.lock().rows(),
                    feed: None,
                    history,
                },
            },
            current: self.current.clone(),
            feed,
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<(), io::Error> {
        let body: Body = postcard::from_bytes(&data).map_err(|e| {
            io::Error::other(format!(
                "snapshot at {:?} does not decode: {e}",
                meta.last_log_id
            ))
        })?;
        self.ensure_snapshot_runs(&body, &meta.last_membership)
            .await?;
        let stored = Stored {
            meta: meta.clone(),
            body,
        };
        self.restore(&stored)?;
        write_value(&self.storage, &self.dir, SNAPSHOT_FILE, &stored)?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(stored);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::type_config::alias::SnapshotOf<Cfg, Vec<u8>>>, io::Error> {
        let g = self.current.lock().unwrap_or_else(|e| e.into_inner());
        Ok(g.as_ref().map(|s| openraft::Snapshot {
            meta: s.meta.clone(),
            snapshot: encode_body(&s.body),
        }))
    }
}
