//! The QUIC order-entry server (`bourse serve`): one tokio current-thread
//! runtime drives the quinn endpoint, one task per connection, and a delivery
//! task that moves the engine's durable outputs into the sessions.
//!
//! Shape: connection task — reads stream chunks into its `Session`
//! (`handle_bytes`), submits what the session asks (`poll_request` →
//! `Runtime::submit_routed`; a full ring → `handle_busy`), writes what the
//! session coalesced (`poll_transmit`, one write per flush). Delivery task
//! (`deliver`) — reads every partition's `OutputReader` (cursor 0) and hands
//! each input's events to the session whose token caused it and, by owner,
//! to every session trading for the owners the event names (makers' fills,
//! expiries), then wakes the connection tasks it touched. The session table
//! (`Sessions`) lives on this one thread, in a `RefCell`: no lock is taken
//! per message. A companion protocol (market data) reads its own cursor in
//! its own task. Tables that must survive a restart (tokens, symbols) are
//! written by the saver thread (`crate::saver`), never on this thread.
//!
//! Idling: with `busy_poll` the runtime thread is pinned to core 0 and never
//! parks (delivery yields to the I/O driver in a loop). Otherwise
//! delivery drains what is durable and then sleeps on a `Notify` registered on
//! every partition's doorbell, which the journal threads ring when
//! `durable_seq` moves (time-driven outputs such as expiries included): no
//! spinning, no timer, no count of requests in flight.
//!
//! Invariants: every session buffer is bounded by the session itself; the
//! number of sessions is capped (`max_sessions`), disconnected sessions are
//! kept for resumption for `resume_window` and then dropped; a connection
//! that stops reading stops being read (one write at a time, bounded QUIC
//! windows), so a flooding client back-pressures only itself; nothing here
//! blocks the runtime thread except the engine-ring pushes, which never wait;
//! no file is written on it after start-up.

use crate::counters::{DisconnectReason, GatewayMetrics, ServerMetrics};
use crate::demo;
use crate::identity::{ensure_server_identity, IdentityError, ServerIdentity};
use crate::net::{self, NetError, Tuning};
use crate::replicated::Replicated;
use crate::saver::Saver;
use crate::session::{self, token_session, Auth, EngineRequest, Perms, Session, SessionConfig};
use crate::window::ReportWindow;
use crate::wire::{self, code, peek_login};
use engine::{Command, Event, OwnerId};
use runtime::{Output, OutputReader, PartitionMap, Route, RoutedError};
use runtime::{Pipeline, PipelineConfig, PipelineError};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// The pipeline (data directory, partitions, durability, engine threads).
    pub pipeline: PipelineConfig,
    /// Session settings (heartbeats, throttles, bounds).
    pub session: SessionConfig,
    /// QUIC transport settings.
    pub tuning: Tuning,
    /// Pin the gateway runtime to core 0 and busy-poll.
    pub busy_poll: bool,
    /// Create the demo set on a fresh data directory and grant the operator
    /// token the demo owners (`crate::demo`); off unless asked for.
    pub demo: bool,
    /// Instrument and account placement (`[partitions]`); `None`: the demo
    /// set's round-robin map with `demo`, else everything on partition 0.
    pub partition_map: Option<PartitionMap>,
    /// Owners of the operator token (outside the demo).
    pub operator_owners: Vec<OwnerId>,
    /// Permissions of the operator token (outside the demo).
    pub operator_perms: Perms,
    /// Failed logins from one address within `login_failure_window` before
    /// its further logins are refused until the window ends.
    pub login_failures_max: u32,
    /// The failed-login window.
    pub login_failure_window: Duration,
    /// Most sessions (connected or awaiting resumption).
    pub max_sessions: usize,
    /// How long a disconnected session can be resumed.
    pub resume_window: Duration,
    /// Engine events kept per partition to send reports again
    /// (`REPLAY_REPORTS`; `crate::window`).
    pub report_window_events: usize,
    /// Metrics and readiness (`bourse serve` starts them; tests may not).
    pub metrics: Option<Arc<dyn ServerMetrics>>,
    /// Tokens from the configuration, granted beside the operator token.
    pub tokens: Vec<(String, Vec<OwnerId>, Perms)>,
    /// Another protocol on the same endpoint (market data, built by the
    /// `feeds` crate); `None`: order entry only.
    pub companion: Option<CompanionSpec>,
    /// Replication (`[cluster]`): every partition a Raft group with the
    /// other members; `None`: a single node (the journal is the only copy).
    pub cluster: Option<ClusterSpec>,
}

/// A replicated server's settings (`[cluster]`).
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Node id, members, timeouts.
    pub config: replica::ClusterConfig,
    /// Where this node listens for its peers (`bourse-raft/1`, UDP).
    pub raft_listen: SocketAddr,
    /// The cluster secret every member shares (a 0600 file; made when missing).
    pub secret_file: PathBuf,
}

impl ServerConfig {
    /// Defaults: 127.0.0.1:7070, one durable partition in `data_dir`, no demo
    /// set, an operator token that administers and reads (no owners).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen: "127.0.0.1:7070".parse().expect("addr"),
            pipeline: PipelineConfig::new(data_dir),
            session: SessionConfig::default(),
            tuning: Tuning::default(),
            busy_poll: false,
            demo: false,
            partition_map: None,
            operator_owners: Vec::new(),
            operator_perms: Perms {
                admin: true,
                read: true,
                ..Perms::default()
            },
            login_failures_max: 10,
            login_failure_window: Duration::from_secs(60),
            max_sessions: 4_096,
            resume_window: Duration::from_secs(60),
            report_window_events: 65_536,
            metrics: None,
            tokens: Vec::new(),
            companion: None,
            cluster: None,
        }
    }
}

/// The output cursor a companion reads (`RuntimeConfig::output_readers`
/// is 2 when a companion is configured; order entry reads cursor 0).
pub const COMPANION_CURSOR: usize = 1;

/// Another protocol served on the order-entry endpoint (market data): it
/// reads every durable input's outputs through its own cursor
/// ([`COMPANION_CURSOR`]) in a task of its own, so order entry's delivery
/// never waits behind it; it serves the connections that negotiated its
/// ALPN, and folds its counters into the gateway's.
pub trait Companion {
    /// Its output consumer, spawned once beside order entry's delivery and
    /// dropped when the server stops. Built (readers taken, doorbells
    /// registered) by [`CompanionBuild`]; `busy_poll` as the server's.
    fn consume(&self, busy_poll: bool) -> Pin<Box<dyn Future<Output = ()>>>;
    /// Serves one connection that negotiated the companion's ALPN.
    fn serve(&self, conn: quinn::Connection) -> Pin<Box<dyn Future<Output = ()>>>;
    /// Adds its counters' growth since the last call (every sweep, ~500 ms).
    fn sweep(&self, metrics: &GatewayMetrics);
}

/// Why a companion could not be built.
pub type CompanionError = Box<dyn std::error::Error + Send + Sync>;

/// Builds a companion on the server thread, from the pipeline as recovered,
/// its configuration and the token table logins check.
pub type CompanionBuild = dyn Fn(&Pipeline, &PipelineConfig, Arc<Auth>) -> Result<Rc<dyn Companion>, CompanionError>
    + Send
    + Sync;

/// A companion protocol: its ALPN and how to build it.
#[derive(Clone)]
pub struct CompanionSpec {
    /// The ALPN its connections negotiate.
    pub alpn: &'static [u8],
    /// Builds it (once per server start).
    pub build: Arc<CompanionBuild>,
}

impl std::fmt::Debug for CompanionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanionSpec")
            .field("alpn", &String::from_utf8_lossy(self.alpn))
            .finish()
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Certificate / token files.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Recovery or journal.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Socket or TLS.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Anything else at start-up.
    #[error("{0}")]
    Other(String),
}

/// What a started server tells its caller.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// The bound address.
    pub addr: SocketAddr,
    /// Certificate, key and operator token (with their paths).
    pub identity: ServerIdentity,
    /// Whether the demo set was created now.
    pub demo_created: bool,
    /// Sequence numbers recovered per partition.
    pub recovered_seqs: Vec<u64>,
    /// Core the gateway runtime is pinned to, if any.
    pub pinned_core: Option<usize>,
    /// How the engine threads were placed (cores, idle strategy).
    pub placement: runtime::Placement,
}

/// A running server (on its own thread).
#[derive(Debug)]
pub struct ServerHandle {
    info: ServerInfo,
    stop: Arc<Notify>,
    stall: tokio::sync::mpsc::UnboundedSender<Duration>,
    thread: Option<std::thread::JoinHandle<Vec<u128>>>,
}

impl ServerHandle {
    /// What the server bound and created.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.info.addr
    }

    /// A clonable stop signal (e.g. for a Ctrl-C handler).
    pub fn stopper(&self) -> Arc<Notify> {
        self.stop.clone()
    }

    /// Test hook: blocks the gateway thread for `d` (no reads, no routing,
    /// no writes), as a long pause of the process would. Benchmarks use it
    /// to check that a stalled server shows in their percentiles.
    pub fn stall_for(&self, d: Duration) {
        let _ = self.stall.send(d);
    }

    /// Stops accepting, drains the engines, snapshots, and returns the final
    /// state hashes per partition.
    pub fn shutdown(mut self) -> Vec<u128> {
        self.stop.notify_one();
        self.join()
    }

    /// Waits until the server stops (after a stop signal).
    pub fn join(&mut self) -> Vec<u128> {
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.notify_one();
            let _ = self.join();
        }
    }
}

/// The partition map of the demo set: instruments round-robin over
/// partitions, every demo account with the settling instrument.
pub fn partition_map(partitions: usize) -> PartitionMap {
    let n = partitions.max(1);
    let mut m = PartitionMap::new(n, 0);
    for (i, spec) in demo::instruments().iter().enumerate() {
        m.assign_instrument(spec.id, i % n);
    }
    let settle_p = demo::instruments()
        .iter()
        .position(|s| s.settle)
        .map_or(0, |i| i % n);
    for id in [1u128, 2] {
        m.assign_account(engine::AccountId(id), settle_p);
    }
    for owner in demo::DEMO_OWNERS {
        for asset in [1, 2] {
            m.assign_account(demo::trading_account(owner, asset), settle_p);
        }
    }
    m
}

/// Opens the pipeline and binds the endpoint, then serves on a new thread.
/// Returns once the server accepts connections.
pub fn start(cfg: ServerConfig) -> Result<ServerHandle, ServeError> {
    let identity = ensure_server_identity(&cfg.pipeline.data_dir)?;
    let (tx, rx) = std::sync::mpsc::channel::<Result<ServerInfo, ServeError>>();
    let stop = Arc::new(Notify::new());
    let stop2 = stop.clone();
    let (stall, stall_rx) = tokio::sync::mpsc::unbounded_channel();
    let thread = std::thread::Builder::new()
        .name("gateway".into())
        .spawn(move || serve_thread(cfg, identity, stop2, stall_rx, tx))
        .map_err(|e| ServeError::Other(e.to_string()))?;
    match rx.recv() {
        Ok(Ok(info)) => Ok(ServerHandle {
            info,
            stop,
            stall,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(ServeError::Other(
                "gateway thread ended during start-up".into(),
            ))
        }
    }
}

fn serve_thread(
    mut cfg: ServerConfig,
    identity: ServerIdentity,
    stop: Arc<Notify>,
    stall: tokio::sync::mpsc::UnboundedReceiver<Duration>,
    tx: std::sync::mpsc::Sender<Result<ServerInfo, ServeError>>,
) -> Vec<u128> {
    let pinned_core = if cfg.busy_poll {
        core_affinity::get_core_ids()
            .and_then(|c| c.first().copied())
            .filter(|c| core_affinity::set_for_current(*c))
            .map(|c| c.id)
    } else {
        None
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .event_interval(if cfg.busy_poll { 1 } else { 61 })
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(Err(ServeError::Other(e.to_string())));
            return Vec::new();
        }
    };
    if cfg.companion.is_some() {
        // Market data reads the outputs through a cursor of its own.
        cfg.pipeline.runtime.output_readers = COMPANION_CURSOR + 1;
    }
    if cfg.cluster.is_some() {
        crate::replicated::replicated_pipeline(&mut cfg.pipeline);
    }
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let mut pipeline = match Pipeline::open(&cfg.pipeline) {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Err(e.into()));
                return Vec::new();
            }
        };
        let node = match &cfg.cluster {
            None => None,
            Some(spec) => match Replicated::start(spec, &cfg.pipeline, &identity, &mut pipeline) {
                Ok(n) => Some(Rc::new(n)),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return pipeline.shutdown();
                }
            },
        };
        match start_serving(&cfg, identity, pinned_core, &pipeline, node.clone()).await {
            Ok((info, started)) => {
                // The session table holds the node from here on (and stops
                // it before the pipeline).
                drop(node);
                let _ = tx.send(Ok(info));
                serve(&cfg, pipeline, started, stop, stall).await
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                stop_node(node);
                pipeline.shutdown()
            }
        }
    })
}

/// Stops a replicated server's node (before its pipeline).
fn stop_node(node: Option<Rc<Replicated>>) {
    if let Some(n) = node {
        match Rc::try_unwrap(n) {
            Ok(n) => n.shutdown(),
            Err(_) => {
                tracing::warn!("the cluster node is still referenced; stopping it with the process")
            }
        }
    }
}

/// What serving runs with once started.
struct Started {
    endpoint: quinn::Endpoint,
    sessions: Sessions,
    companion: Option<Rc<dyn Companion>>,
}

/// The start-up steps after recovery: metrics, the demo set, the endpoint,
/// the token table, the session table and the companion; readiness is set
/// last.
async fn start_serving(
    cfg: &ServerConfig,
    identity: ServerIdentity,
    pinned_core: Option<usize>,
    pipeline: &Pipeline,
    node: Option<Rc<Replicated>>,
) -> Result<(ServerInfo, Started), ServeError> {
    let recovered_seqs: Vec<u64> = pipeline.recovered().iter().map(|r| r.last_seq).collect();
    if let Some(m) = &cfg.metrics {
        m.attach(pipeline.runtime());
    }
    let map = match &cfg.partition_map {
        Some(m) => m.clone(),
        None if cfg.demo => partition_map(cfg.pipeline.partitions),
        None => PartitionMap::new(cfg.pipeline.partitions.max(1), 0),
    };
    let data_dir = cfg.pipeline.data_dir.clone();
    let mut symbols = demo::read_symbols(&data_dir);
    let demo_created = match &node {
        // A replicated node's partitions start empty and catch up from the
        // log: the demo set is proposed once, by the node that made the
        // cluster, once it leads.
        Some(n) => cfg.demo && n.cluster().fresh() && await_serving(n).await,
        None => cfg.demo && recovered_seqs.iter().all(|&s| s == 0),
    };
    if node.is_none() {
        // Every session of the previous process is gone: cancel for those
        // that asked for it (a replicated node's groups do this themselves
        // each time this node starts to lead).
        submit_all(pipeline, &map, [engine::Command::SessionsLost]).await;
    }
    if demo_created {
        create_demo_set(pipeline, &map).await;
        symbols.extend(demo::demo_symbols());
        if let Err(e) = demo::write_symbols(&data_dir, &symbols) {
            tracing::warn!(error = %e, "could not write the symbol table");
        }
    }
    let endpoint = bind(cfg, &identity)?;
    let addr = endpoint.local_addr().unwrap_or(cfg.listen);
    let auth = token_table(cfg, &identity)?;
    let saver = Saver::start(data_dir, auth.clone(), identity.operator_token.clone())
        .map_err(|e| ServeError::Other(e.to_string()))?;
    let companion = match &cfg.companion {
        None => None,
        Some(spec) => Some(
            (spec.build)(pipeline, &cfg.pipeline, auth.clone())
                .map_err(|e| ServeError::Other(e.to_string()))?,
        ),
    };
    let mut session_cfg = cfg.session.clone();
    session_cfg.partitions = cfg.pipeline.partitions.max(1);
    let sessions = Sessions {
        slots: HashMap::new(),
        by_login: HashMap::new(),
        owners: HashMap::new(),
        next_sid: 1,
        map,
        tokens_saved: auth.generation(),
        auth,
        session_cfg,
        epoch: Instant::now(),
        max_sessions: cfg.max_sessions,
        resume_window: cfg.resume_window,
        pending_instruments: HashMap::new(),
        symbols,
        saver,
        delivered: Vec::new(),
        touched: Vec::new(),
        metrics: cfg.metrics.clone(),
        logins: LoginLimiter::new(cfg.login_failures_max, cfg.login_failure_window),
        node,
        windows: report_windows(pipeline, cfg.report_window_events),
    };
    if let Some(m) = &cfg.metrics {
        // Recovery is done, the journal is open, the engine threads run
        // and the endpoint accepts connections.
        m.set_ready(true);
    }
    let info = ServerInfo {
        addr,
        identity,
        demo_created,
        recovered_seqs,
        pinned_core,
        placement: pipeline.runtime().placement().clone(),
    };
    Ok((
        info,
        Started {
            endpoint,
            sessions,
            companion,
        },
    ))
}

/// Submits the demo set on a fresh data directory (waiting out `busy`).
async fn create_demo_set(pipeline: &Pipeline, map: &PartitionMap) {
    submit_all(pipeline, map, demo::commands()).await;
}

/// Submits `commands` in order with token 0, waiting out `busy` (and, on a
/// replicated node, until it leads).
async fn submit_all(
    pipeline: &Pipeline,
    map: &PartitionMap,
    commands: impl IntoIterator<Item = engine::Command>,
) {
    for c in commands {
        let mut c = Some(c);
        while let Some(cmd) = c.take() {
            match pipeline.runtime().submit_routed(map, 0, cmd) {
                Err(RoutedError::Submit(runtime::SubmitError::NotLeader(_))) => {
                    c = Some(cmd);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(RoutedError::Submit(_)) => {
                    c = Some(cmd);
                    tokio::task::yield_now().await;
                }
                _ => {}
            }
        }
    }
}

/// Waits (at most `SERVING_WAIT`) for a new cluster's first node to serve.
async fn await_serving(node: &Replicated) -> bool {
    let deadline = Instant::now() + SERVING_WAIT;
    while Instant::now() < deadline {
        if node.cluster().serving() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!("another node leads the new cluster: the demo set is not created");
    false
}

/// How long a new cluster's first node waits to lead before it gives up on
/// creating the demo set.
const SERVING_WAIT: Duration = Duration::from_secs(10);

/// The QUIC endpoint: order entry's ALPN and the companion's.
fn bind(cfg: &ServerConfig, identity: &ServerIdentity) -> Result<quinn::Endpoint, ServeError> {
    let mut alpns = vec![wire::ALPN];
    alpns.extend(cfg.companion.as_ref().map(|c| c.alpn));
    let server_cfg =
        net::server_config_alpns(&identity.cert_der, &identity.key_der, &alpns, &cfg.tuning)?;
    Ok(net::server_endpoint(cfg.listen, server_cfg, &cfg.tuning)?)
}

/// The token table: tokens admin sessions created before a restart, then
/// the configuration's, then the operator's (later ones win).
fn token_table(cfg: &ServerConfig, identity: &ServerIdentity) -> Result<Arc<Auth>, ServeError> {
    let auth = Arc::new(Auth::new());
    match crate::identity::load_tokens(&cfg.pipeline.data_dir, &auth) {
        Ok(n) if n > 0 => {
            tracing::info!(tokens = n, "restored tokens created by admin sessions")
        }
        Ok(_) => {}
        Err(e) => return Err(ServeError::Other(e.to_string())),
    }
    let (operator_owners, operator_perms) = if cfg.demo {
        demo::operator_grant()
    } else {
        (cfg.operator_owners.clone(), cfg.operator_perms)
    };
    auth.add_token(&identity.operator_token, operator_owners, operator_perms);
    for (token, owners, perms) in &cfg.tokens {
        auth.add_token(token, owners.clone(), *perms);
    }
    Ok(auth)
}

/// A `Notify` rung by every partition's doorbell (the journal threads ring
/// them when `durable_seq` moves): what delivery sleeps on.
fn durable_wake(pipeline: &Pipeline) -> Arc<Notify> {
    let wake = Arc::new(Notify::new());
    for p in 0..pipeline.runtime().partitions() {
        let w = wake.clone();
        pipeline
            .runtime()
            .shared(p)
            .doorbell
            .register(Box::new(move || w.notify_one()))
            .expect("a free doorbell slot for delivery");
    }
    wake
}

/// Serves until stopped: delivery, the sweeper and the companion's
/// consumer as tasks, connections accepted; then the orderly stop.
async fn serve(
    cfg: &ServerConfig,
    pipeline: Pipeline,
    started: Started,
    stop: Arc<Notify>,
    mut stall: tokio::sync::mpsc::UnboundedReceiver<Duration>,
) -> Vec<u128> {
    let Started {
        endpoint,
        sessions,
        companion,
    } = started;
    let readers: Vec<OutputReader> = (0..pipeline.runtime().partitions())
        .map(|p| pipeline.runtime().reader(p))
        .collect();
    let wake = durable_wake(&pipeline);
    let pipeline = Rc::new(pipeline);
    let sessions = Rc::new(RefCell::new(sessions));
    let delivery =
        tokio::task::spawn_local(deliver(sessions.clone(), readers, wake, cfg.busy_poll));
    let sweeper = tokio::task::spawn_local(sweep(sessions.clone(), companion.clone()));
    let feed = companion
        .as_ref()
        .map(|c| tokio::task::spawn_local(c.consume(cfg.busy_poll)));
    loop {
        tokio::select! {
            _ = stop.notified() => break,
            Some(d) = stall.recv() => std::thread::sleep(d),
            inc = endpoint.accept() => {
                let Some(inc) = inc else { break };
                let (h, p) = (sessions.clone(), pipeline.clone());
                let other = companion.clone();
                tokio::task::spawn_local(async move {
                    if let Ok(conn) = inc.await {
                        if let Some(c) = other.filter(|_| net::alpn_of(&conn) != wire::ALPN) {
                            c.serve(conn).await;
                        } else {
                            connection(h, p, conn).await;
                        }
                    }
                });
            }
        }
    }
    if let Some(m) = &cfg.metrics {
        m.set_ready(false);
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"server stopping");
    // Let the close frames go out and the connection tasks finish.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for task in [Some(delivery), Some(sweeper), feed].into_iter().flatten() {
        task.abort();
        let _ = task.await;
    }
    sessions.borrow_mut().slots.clear();
    // Tables changed just before the stop are on disk before a restart.
    sessions.borrow_mut().saver.stop();
    // The groups stop before the engine threads they feed.
    let node = sessions.borrow_mut().node.take();
    stop_node(node);
    match Rc::try_unwrap(pipeline) {
        Ok(p) => p.shutdown(),
        Err(_) => {
            tracing::warn!(
                "connections still hold the pipeline; stopping without a final snapshot"
            );
            Vec::new()
        }
    }
}

struct Slot {
    /// `Session::throttled_total` already counted in the metrics.
    throttled_seen: u64,
    session: Session,
    wake: Rc<Notify>,
    /// Which connection owns it (bumped on take-over); 0 = none.
    conn: u64,
    login: Option<(String, u64)>,
    disconnected_at: Option<Instant>,
    registered_owners: Vec<u64>,
}

struct Sessions {
    slots: HashMap<u64, Slot>,
    by_login: HashMap<(String, u64), u64>,
    owners: HashMap<u64, Vec<u64>>,
    next_sid: u64,
    map: PartitionMap,
    auth: Arc<Auth>,
    session_cfg: SessionConfig,
    epoch: Instant,
    max_sessions: usize,
    resume_window: Duration,
    /// AddInstrument requests in flight: token → (spec, not rejected yet).
    pending_instruments: HashMap<u64, (engine::InstrumentSpec, bool)>,
    symbols: BTreeMap<String, u32>,
    /// Writes the token and symbol tables off this thread.
    saver: Saver,
    delivered: Vec<u64>,
    touched: Vec<u64>,
    /// Gateway counters and readiness, when served.
    metrics: Option<Arc<dyn ServerMetrics>>,
    /// `Auth::generation` when the token table was last handed to the saver.
    tokens_saved: u64,
    /// A replicated server's node (`None`: a single node).
    node: Option<Rc<Replicated>>,
    /// Failed logins per peer address.
    logins: LoginLimiter,
    /// Each partition's report window (fed by `dispatch`).
    windows: Vec<ReportWindow>,
}

/// Most addresses the failed-login table remembers (bounded whatever the
/// number of attackers; past it, expired and then the oldest entries go).
const LOGIN_TABLE_MAX: usize = 4_096;

/// Failed logins per peer address in a fixed window: after `max` failures
/// within `window` of the first, the address is refused until the window
/// ends. Bounded by `LOGIN_TABLE_MAX` entries.
#[derive(Debug)]
struct LoginLimiter {
    max: u32,
    window: Duration,
    table: HashMap<std::net::IpAddr, (Instant, u32)>,
}

impl LoginLimiter {
    fn new(max: u32, window: Duration) -> Self {
        LoginLimiter {
            max: max.max(1),
            window,
            table: HashMap::new(),
        }
    }

    /// Whether logins from `ip` are refused now.
    fn refused(&self, ip: std::net::IpAddr, now: Instant) -> bool {
        matches!(self.table.get(&ip), Some(&(t0, n)) if now.duration_since(t0) < self.window && n >= self.max)
    }

    /// Records a failed login from `ip`; returns the failures in its window.
    fn failed(&mut self, ip: std::net::IpAddr, now: Instant) -> u32 {
        if !self.table.contains_key(&ip) && self.table.len() >= LOGIN_TABLE_MAX {
            let w = self.window;
            self.table.retain(|_, e| now.duration_since(e.0) < w);
            if self.table.len() >= LOGIN_TABLE_MAX {
                let oldest = self.table.iter().min_by_key(|(_, e)| e.0).map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.table.remove(&k);
                }
            }
        }
        let e = self.table.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1
    }
}

impl Sessions {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// A replicated server: closes the sessions whose proposals failed and,
    /// once this node stops leading, every session (their clients find the
    /// new leader) and forgets the disconnected ones (see `detach`);
    /// readiness and the groups' status go to the metrics.
    fn follow_cluster(&mut self) {
        let Some(node) = self.node.clone() else {
            return;
        };
        let c = node.cluster();
        let serving = c.serving();
        let mut failed = Vec::new();
        c.take_failures(|token| failed.push(token_session(token)));
        let mut gone = Vec::new();
        for (sid, slot) in self.slots.iter_mut() {
            let step_down = !serving && slot.session.logged_in();
            if step_down || failed.contains(sid) {
                slot.session.handle_step_down();
                slot.wake.notify_one();
            } else if !serving && slot.conn == 0 {
                gone.push(*sid);
            }
        }
        for sid in gone {
            self.remove(sid);
        }
        if let Some(m) = &self.metrics {
            m.set_ready(serving);
            m.set_cluster_status(&c.status());
        }
    }

    /// Counts an order-entry connection's end in `bourse_disconnects_total`.
    fn count_disconnect(&self, why: DisconnectReason) {
        if let Some(m) = &self.metrics {
            m.gateway().disconnected(why);
        }
    }

    /// Accounts for the end of a connection that reached its session: its
    /// reason (the close code the session chose, else the transport's loss)
    /// in the metrics, and a refused login against the peer's address.
    fn connection_ended(&mut self, peer: SocketAddr, close: Option<&(u32, String)>) {
        let why = close.map_or(DisconnectReason::ConnectionLost, |(code, _)| {
            DisconnectReason::from_close_code(*code)
        });
        self.count_disconnect(why);
        if why == DisconnectReason::AuthFailed {
            let n = self.logins.failed(peer.ip(), Instant::now());
            let reason = close.map_or("", |(_, r)| r.as_str());
            // The peer's address, never the token it tried.
            tracing::warn!(peer = %peer, failures = n, reason, "login failed");
        }
    }

    /// Submits everything the session queued.
    fn pump(&mut self, sid: u64, pipeline: &Pipeline) -> bool {
        let Some(slot) = self.slots.get_mut(&sid) else {
            return false;
        };
        let mut any = false;
        while let Some(req) = slot.session.poll_request() {
            let EngineRequest { token, command, .. } = req;
            any = true;
            let submitted = submit_request(&mut slot.session, &self.map, pipeline.runtime(), req);
            let proposed = matches!(submitted, Ok(true));
            match submitted {
                Ok(_) => {}
                Err(RoutedError::Submit(runtime::SubmitError::NotLeader(_))) => {
                    slot.session.handle_step_down()
                }
                Err(RoutedError::Submit(runtime::SubmitError::Busy))
                    if matches!(command, Command::CodArm { .. }) =>
                {
                    // An arm is never dropped: it goes again, ahead of the
                    // session's later requests.
                    slot.session.handle_retry(req);
                    break;
                }
                Err(RoutedError::Submit(runtime::SubmitError::Busy)) => {
                    if let Some(m) = &self.metrics {
                        m.gateway().busy();
                    }
                    slot.session.handle_busy(token)
                }
                Err(_) => slot.session.handle_reject(token, code::UNROUTABLE),
            }
            if let (Command::AddInstrument(spec), true) = (command, proposed) {
                self.pending_instruments.insert(token, (spec, true));
            }
        }
        // An admin session may have created a token: save the table so it
        // survives a restart (on the saver's thread; a failure is logged
        // there and the next change saves again).
        let generation = self.auth.generation();
        if generation != self.tokens_saved {
            self.saver.save_tokens();
            self.tokens_saved = generation;
        }
        let Some(slot) = self.slots.get_mut(&sid) else {
            return any;
        };
        let throttled = slot.session.throttled_total();
        if throttled > slot.throttled_seen {
            if let Some(m) = &self.metrics {
                for _ in slot.throttled_seen..throttled {
                    m.gateway().throttled();
                }
            }
            slot.throttled_seen = throttled;
        }
        // Register the owners once logged in (events about them route here).
        if slot.session.logged_in() && slot.registered_owners.is_empty() {
            let owners: Vec<u64> = slot.session.owners().iter().map(|o| o.0).collect();
            for &o in &owners {
                let list = self.owners.entry(o).or_default();
                if !list.contains(&sid) {
                    list.push(sid);
                }
            }
            slot.registered_owners = owners;
        }
        // From its first login on, every report reaches the session live.
        if slot.session.logged_in() && !slot.session.live() {
            let newest = self.windows.iter().map(ReportWindow::newest).collect();
            slot.session.handle_live_from(newest);
        }
        // Replays: answered here, between two outputs, so a window never
        // moves under one.
        while let Some(p) = slot.session.poll_replay() {
            let answer = slot.session.handle_replay(&self.windows[p]);
            if let (Some(m), Some(a)) = (&self.metrics, answer) {
                m.gateway().replayed(a.code, a.reports);
            }
            any = true;
        }
        any
    }

    fn remove(&mut self, sid: u64) {
        let Some(slot) = self.slots.remove(&sid) else {
            return;
        };
        if let Some(m) = &self.metrics {
            m.gateway().set_sessions(self.slots.len() as i64);
        }
        for o in slot.registered_owners {
            if let Some(list) = self.owners.get_mut(&o) {
                list.retain(|&s| s != sid);
                if list.is_empty() {
                    self.owners.remove(&o);
                }
            }
        }
        if let Some(k) = slot.login {
            if self.by_login.get(&k) == Some(&sid) {
                self.by_login.remove(&k);
            }
        }
    }

    fn deliver_event(
        &mut self,
        sid: u64,
        now: u64,
        token: u64,
        p: usize,
        seq: engine::Seq,
        ev: &Event,
    ) {
        if self.delivered.contains(&sid) {
            return;
        }
        if let Some(slot) = self.slots.get_mut(&sid) {
            slot.session.handle_event(now, token, p, seq, ev);
            self.delivered.push(sid);
            self.touched.push(sid);
        }
    }

    /// Hands one durable input's outputs to the sessions they concern.
    fn dispatch(&mut self, p: usize, o: &Output, now: u64) {
        self.windows[p].handle_output(o);
        let sid = if o.token == 0 {
            0
        } else {
            token_session(o.token)
        };
        for ev in o.events() {
            self.delivered.clear();
            if sid != 0 {
                self.deliver_event(sid, now, o.token, p, o.seq, ev);
            }
            let (a, b) = event_owners(ev);
            for owner in [a, b].into_iter().flatten() {
                let n = self.owners.get(&owner).map_or(0, |l| l.len());
                for i in 0..n {
                    let s = self.owners[&owner][i];
                    self.deliver_event(s, now, o.token, p, o.seq, ev);
                }
            }
            match ev {
                Event::Rejected { .. } => {
                    if let Some(e) = self.pending_instruments.get_mut(&o.token) {
                        e.1 = false;
                    }
                }
                // A transfer query's rows go to the session that asked only,
                // right after their event.
                Event::Transfers { rows, .. } => {
                    if let Some(slot) = self.slots.get_mut(&sid).filter(|_| sid != 0) {
                        for r in o.rows(*rows) {
                            slot.session.handle_row(o.token, r);
                        }
                        self.touched.push(sid);
                    }
                }
                _ => {}
            }
        }
        if o.token != 0 {
            self.end_input(sid, o.token);
        }
    }

    /// The end of a session's input: its answer is complete; an instrument
    /// it added joins the symbol table.
    fn end_input(&mut self, sid: u64, token: u64) {
        if let Some(slot) = self.slots.get_mut(&sid) {
            slot.session.handle_end(token);
            self.touched.push(sid);
        }
        if let Some((spec, ok)) = self.pending_instruments.remove(&token) {
            if ok {
                self.symbols
                    .insert(spec.symbol.as_str().to_string(), spec.id.0);
                self.saver.save_symbols(self.symbols.clone());
            }
        }
    }
}

/// One report window per partition, each starting right after what its
/// partition recovered: the output stream holds every input since (the
/// ring keeps a slot until every cursor passed it, and only `deliver`
/// reads cursor 0), start-up inputs included (`sessions_lost`, the demo
/// set), so nothing a report could come from is below the window unseen.
/// A replicated partition starts empty; a snapshot it restores empties
/// its window at the restore mark.
fn report_windows(pipeline: &Pipeline, events_max: usize) -> Vec<ReportWindow> {
    (0..pipeline.runtime().partitions())
        .map(|p| ReportWindow::new(events_max, pipeline.recovered()[p].last_seq))
        .collect()
}

/// The owners an event concerns (besides the session that caused it).
fn event_owners(ev: &Event) -> (Option<u64>, Option<u64>) {
    match *ev {
        Event::Accepted { owner, .. }
        | Event::Canceled { owner, .. }
        | Event::Reduced { owner, .. }
        | Event::Replaced { owner, .. }
        | Event::Triggered { owner, .. } => (Some(owner.0), None),
        Event::Trade {
            maker_owner,
            taker_owner,
            ..
        } => (
            Some(maker_owner.0),
            (taker_owner != maker_owner).then_some(taker_owner.0),
        ),
        _ => (None, None),
    }
}

async fn deliver(
    sessions: Rc<RefCell<Sessions>>,
    mut readers: Vec<OutputReader>,
    wake: Arc<Notify>,
    busy_poll: bool,
) {
    const BATCH: usize = 4_096;
    loop {
        let n = {
            let mut h = sessions.borrow_mut();
            let now = h.now_ns();
            let mut n = 0;
            for (p, r) in readers.iter_mut().enumerate() {
                let mut k = 0;
                while k < BATCH {
                    let Some(o) = r.poll() else { break };
                    h.dispatch(p, &o, now);
                    k += 1;
                }
                n += k;
            }
            let mut touched = std::mem::take(&mut h.touched);
            touched.sort_unstable();
            touched.dedup();
            for sid in touched.drain(..) {
                if let Some(s) = h.slots.get(&sid) {
                    s.wake.notify_one();
                }
            }
            h.touched = touched;
            n
        };
        if n > 0 || busy_poll {
            tokio::task::yield_now().await;
        } else {
            // Nothing durable is waiting: sleep until a journal thread
            // publishes more. `Notify` keeps one permit, so a ring that
            // landed after the readers were found empty wakes this at once.
            wake.notified().await;
        }
    }
}

/// Follows the cluster, then drops the sessions disconnected for longer
/// than the resume window.
fn expire_sessions(h: &mut Sessions) {
    h.follow_cluster();
    let window = h.resume_window;
    let old: Vec<u64> = h
        .slots
        .iter()
        .filter(|(_, s)| s.disconnected_at.is_some_and(|t| t.elapsed() > window))
        .map(|(&k, _)| k)
        .collect();
    for sid in old {
        h.remove(sid);
    }
}

/// Drops sessions disconnected for longer than the resume window, every
/// 500 ms; follows the cluster then, and at once when a group starts or
/// stops serving (a node that stops ends its sessions without waiting).
async fn sweep(sessions: Rc<RefCell<Sessions>>, companion: Option<Rc<dyn Companion>>) {
    // A single node has no groups: a bell nobody rings.
    let bell = sessions.borrow().node.as_ref().map_or_else(
        || Arc::new(tokio::sync::Notify::new()),
        |n| n.cluster().serving_bell(),
    );
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = bell.notified() => {}
        }
        // The companion's counters into the gateway metrics.
        if let (Some(m), Some(c)) = (sessions.borrow().metrics.clone(), &companion) {
            c.sweep(m.gateway());
        }
        expire_sessions(&mut sessions.borrow_mut());
    }
}

/// Reads until the first frame is complete (a login, normally); `None` if
/// the peer goes away or sends more than a login's worth without one.
async fn first_frame(recv: &mut quinn::RecvStream) -> Option<Vec<u8>> {
    let mut pre = Vec::with_capacity(256);
    loop {
        if pre.len() >= wire::HEADER_LEN {
            let len = u32::from_le_bytes([pre[0], pre[1], pre[2], pre[3]]) as usize;
            if pre.len() >= len || len > 4096 {
                return Some(pre);
            }
        }
        if pre.len() > 4096 {
            return Some(pre);
        }
        match recv.read_chunk(4096, true).await {
            Ok(Some(c)) => pre.extend_from_slice(&c.bytes),
            _ => return None,
        }
    }
}

/// One QUIC connection: refuse an address with too many failed logins,
/// attach the first frame to a session, serve it until the connection ends,
/// then detach (cancel-on-disconnect submitted before the close).
async fn connection(
    sessions: Rc<RefCell<Sessions>>,
    pipeline: Rc<Pipeline>,
    conn: quinn::Connection,
) {
    let peer = conn.remote_address();
    let refused = sessions.borrow().logins.refused(peer.ip(), Instant::now());
    if refused {
        tracing::warn!(peer = %peer, "login refused: too many failed logins from this address");
        sessions
            .borrow()
            .count_disconnect(DisconnectReason::AuthFailed);
        conn.close(
            quinn::VarInt::from_u32(wire::close::AUTH_FAILED),
            b"too many failed logins from this address; retry later",
        );
        return;
    }
    let Ok((mut send, mut recv)) = conn.accept_bi().await else {
        sessions
            .borrow()
            .count_disconnect(DisconnectReason::ConnectionLost);
        return;
    };
    let Some(first) = first_frame(&mut recv).await else {
        sessions
            .borrow()
            .count_disconnect(DisconnectReason::ConnectionLost);
        return;
    };
    if refuse_unless_serving(&sessions, &mut send, &conn).await {
        return;
    }
    let Some((sid, conn_id, wake)) = attach(&mut sessions.borrow_mut(), &pipeline, &conn, &first)
    else {
        return;
    };
    let close = serve_session(
        &sessions, &pipeline, &mut send, &mut recv, sid, conn_id, &wake,
    )
    .await;
    let pending = detach(&mut sessions.borrow_mut(), sid, conn_id, close.as_ref());
    submit_cancels(&sessions, &pipeline, pending).await;
    sessions.borrow_mut().connection_ended(peer, close.as_ref());
    let (code, reason) = close.unwrap_or((wire::close::NORMAL, String::new()));
    let _ = send.finish();
    // Give the final bytes a moment to leave before closing.
    let _ = tokio::time::timeout(Duration::from_millis(100), send.stopped()).await;
    conn.close(quinn::VarInt::from_u32(code), reason.as_bytes());
}

/// A replicated server that does not serve (not the leader, or not caught
/// up) answers a login with `LoginRejected { not_leader }` and closes: the
/// client tries the next server. Whether it refused.
async fn refuse_unless_serving(
    sessions: &RefCell<Sessions>,
    send: &mut quinn::SendStream,
    conn: &quinn::Connection,
) -> bool {
    let serving = sessions
        .borrow()
        .node
        .as_ref()
        .is_none_or(|n| n.cluster().serving());
    if serving {
        return false;
    }
    sessions
        .borrow()
        .count_disconnect(DisconnectReason::NotLeader);
    let mut out = Vec::new();
    let r = wire::LoginRejected {
        code: wire::login_reject::NOT_LEADER,
        reserved: [0; 6],
    };
    wire::encode_frame(wire::template::LOGIN_REJECTED, &r, &mut out);
    let _ = send.write_all(&out).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_millis(100), send.stopped()).await;
    conn.close(
        quinn::VarInt::from_u32(wire::close::NOT_LEADER),
        b"not the leader; try the next server of the cluster",
    );
    true
}

/// Submits a session's command. In a cluster, a resent request that a
/// partition committed under an earlier leader is not proposed there again
/// (`Session::executed_before`): a command of one partition is answered
/// "executed before"; a broadcast goes only to the partitions that did not
/// commit it, the others counting as answered with nothing. Whether any
/// partition was offered it.
fn submit_request(
    session: &mut Session,
    map: &PartitionMap,
    rt: &runtime::Runtime,
    req: EngineRequest,
) -> Result<bool, RoutedError> {
    let EngineRequest {
        token,
        command,
        origin,
    } = req;
    let partitions = rt.partitions();
    if !(0..partitions).any(|p| session.executed_before(origin, &command, p)) {
        return rt
            .submit_routed_from(map, token, command, origin)
            .map(|_| true);
    }
    match map.route(command)? {
        Route::One(p, c) if !session.executed_before(origin, &command, p) => {
            rt.submit_from(p, token, c, origin)?;
            Ok(true)
        }
        Route::One(..) => {
            session.handle_executed_before(token);
            Ok(false)
        }
        Route::All(c) => {
            if (0..partitions).all(|p| session.executed_before(origin, &command, p)) {
                session.handle_executed_before(token);
                return Ok(false);
            }
            for p in 0..partitions {
                if session.executed_before(origin, &command, p) {
                    session.handle_end(token);
                } else {
                    rt.submit_from(p, token, c, origin)?;
                }
            }
            Ok(true)
        }
    }
}

/// Attach: resume an existing session for (token, session id) or make one,
/// and feed it the first frame. `None` (the connection closed) when the
/// server is full.
fn attach(
    h: &mut Sessions,
    pipeline: &Pipeline,
    conn: &quinn::Connection,
    first: &[u8],
) -> Option<(u64, u64, Rc<Notify>)> {
    let now = h.now_ns();
    let key = peek_login(first).and_then(|info| {
        let t = info.token_str()?.to_string();
        h.auth.check(&t).map(|_| (t, info.session_id))
    });
    let existing = key.as_ref().and_then(|k| h.by_login.get(k).copied());
    let sid = match existing {
        Some(sid) => {
            let slot = h.slots.get_mut(&sid).expect("indexed session");
            let old = slot.conn;
            slot.conn = old.wrapping_add(1).max(1);
            slot.disconnected_at = None;
            if old != 0 {
                // Take-over: the old connection sees the new id and leaves.
                slot.wake.notify_one();
            }
            slot.session.handle_reconnect(now);
            sid
        }
        None => {
            if h.slots.len() >= h.max_sessions {
                h.count_disconnect(DisconnectReason::ServerFull);
                conn.close(
                    quinn::VarInt::from_u32(wire::close::SLOW_CONSUMER),
                    b"too many sessions",
                );
                return None;
            }
            new_session(h)
        }
    };
    let slot = h.slots.get_mut(&sid).expect("session");
    if let (Some(node), Some((t, session_id))) = (&h.node, &key) {
        // What the cluster committed of this session, under any leader.
        if let Some(grant) = h.auth.check(t) {
            let origin_key = session::origin_key(*session_id, &grant);
            let committed = node.cluster().committed_requests(origin_key);
            slot.session.handle_committed(origin_key, committed);
        }
    }
    slot.session.handle_bytes(now, first);
    let (conn_id, wake) = (slot.conn, slot.wake.clone());
    if slot.login.is_none() && slot.session.logged_in() {
        if let Some(k) = key {
            slot.login = Some(k.clone());
            h.by_login.insert(k, sid);
        }
    }
    h.pump(sid, pipeline);
    Some((sid, conn_id, wake))
}

/// A new session in a new slot, owned by connection 1; its id.
fn new_session(h: &mut Sessions) -> u64 {
    let sid = h.next_sid;
    h.next_sid = if h.next_sid >= u32::MAX as u64 {
        1
    } else {
        h.next_sid + 1
    };
    let session = Session::new(sid, h.session_cfg.clone(), h.auth.clone());
    if let Some(m) = &h.metrics {
        m.gateway().session_opened();
    }
    h.slots.insert(
        sid,
        Slot {
            throttled_seen: 0,
            session,
            wake: Rc::new(Notify::new()),
            conn: 1,
            login: None,
            disconnected_at: None,
            registered_owners: Vec::new(),
        },
    );
    sid
}

/// Serves session `sid` on this connection: writes what it transmits,
/// feeds it what arrives, its timeouts and wake-ups, until the peer goes,
/// the session closes or a new connection takes it over; the close to send.
async fn serve_session(
    sessions: &RefCell<Sessions>,
    pipeline: &Pipeline,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    sid: u64,
    conn_id: u64,
    wake: &Notify,
) -> Option<(u32, String)> {
    let mut out: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut close: Option<(u32, String)> = None;
    loop {
        let deadline;
        {
            let mut h = sessions.borrow_mut();
            let epoch = h.epoch;
            let Some(slot) = h.slots.get_mut(&sid) else {
                break;
            };
            if slot.conn != conn_id {
                close = Some((
                    wire::close::TAKEN_OVER,
                    "taken over by a new connection".into(),
                ));
                break;
            }
            out.clear();
            while out.len() < (256 << 10) && slot.session.poll_transmit(&mut out) {}
            if let Some(c) = slot.session.poll_close() {
                close = Some(c);
            }
            deadline = slot
                .session
                .poll_timeout()
                .map(|ns| tokio::time::Instant::from_std(epoch + Duration::from_nanos(ns)));
        }
        if !out.is_empty() && send.write_all(&out).await.is_err() {
            break;
        }
        if close.is_some() {
            break;
        }
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            r = recv.read_chunk(64 << 10, true) => {
                let chunk = match r {
                    Ok(Some(c)) => c,
                    _ => break,
                };
                let mut h = sessions.borrow_mut();
                let now = h.now_ns();
                let Some(slot) = h.slots.get_mut(&sid) else { break };
                if slot.conn != conn_id { continue; }
                slot.session.handle_bytes(now, &chunk.bytes);
                h.pump(sid, pipeline);
            }
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)) => {
                let mut h = sessions.borrow_mut();
                let now = h.now_ns();
                if let Some(slot) = h.slots.get_mut(&sid) {
                    if slot.conn == conn_id {
                        slot.session.handle_timeout(now);
                    }
                }
                h.pump(sid, pipeline);
            }
        }
    }
    close
}

/// The connection is gone (or closing): cancel-on-disconnect, keep the
/// session for resumption unless it logged out or never logged in. The
/// cancel requests to submit.
fn detach(
    h: &mut Sessions,
    sid: u64,
    conn_id: u64,
    close: Option<&(u32, String)>,
) -> Vec<EngineRequest> {
    let mut remove = false;
    let mut reqs = Vec::new();
    if let Some(slot) = h.slots.get_mut(&sid) {
        if slot.conn == conn_id {
            reqs = slot.session.handle_disconnect();
            slot.conn = 0;
            slot.disconnected_at = Some(Instant::now());
            // A session this node closed because it stopped leading is
            // forgotten: its client goes on with the next leader, whose
            // report numbering is not this one's, and a login here after
            // this node leads again must not resume in the old numbering
            // (it would replay reports under numbers the client already
            // holds for others). It starts afresh (`reports_lost`).
            remove = slot.login.is_none()
                || matches!(close, Some((c, _)) if *c == wire::close::NORMAL || *c == wire::close::NOT_LEADER);
        }
    }
    if remove {
        // Its cancel-on-disconnect outputs still route by owner to others.
        h.remove(sid);
    }
    reqs
}

/// Cancel-on-disconnect (its mass cancels, then the session's disarm) must
/// not be lost to a full ring: retry until taken.
async fn submit_cancels(
    sessions: &RefCell<Sessions>,
    pipeline: &Pipeline,
    mut pending: Vec<EngineRequest>,
) {
    while !pending.is_empty() {
        {
            let mut h = sessions.borrow_mut();
            let h = &mut *h;
            pending.retain(|r| {
                match pipeline.runtime().submit_routed(&h.map, r.token, r.command) {
                    Ok(_) => {}
                    Err(RoutedError::Submit(runtime::SubmitError::Busy)) => return true,
                    Err(e) => tracing::warn!(error = %e, "cancel-on-disconnect not submitted"),
                }
                false
            });
        }
        if !pending.is_empty() {
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_limiter_refuses_after_max_failures_for_the_window_and_stays_bounded() {
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        let mut l = LoginLimiter::new(3, w);
        let a: std::net::IpAddr = [10, 0, 0, 1].into();
        // (seconds after t0, failures recorded, refused afterwards)
        for (at, want_n, refused) in [(0, 1, false), (1, 2, false), (2, 3, true), (61, 1, false)] {
            let now = t0 + Duration::from_secs(at);
            assert_eq!(l.failed(a, now), want_n, "at {at}");
            assert_eq!(l.refused(a, now), refused, "at {at}");
        }
        assert!(!l.refused([10, 0, 0, 2].into(), t0));
        for i in 0..(LOGIN_TABLE_MAX as u32 + 100) {
            l.failed(
                std::net::IpAddr::from(i.to_be_bytes()),
                t0 + Duration::from_secs(70),
            );
        }
        assert!(l.table.len() <= LOGIN_TABLE_MAX);
    }
}
