//! `bourse cluster local`: a replicated cluster of N `bourse serve`
//! processes on loopback, for trying replication and failover on one
//! machine.
//!
//! Layout of DIR (mode 0700): one shared identity (`tls/cert.der`,
//! `tls/key.der`, `operator.token`, as `gateway::identity` makes it), so a
//! client given `--data-dir DIR` trusts every node and logs in to any; the
//! cluster secret `cluster.secret`; per node `n<I>/` holding a copy of the
//! identity (mode 0600), its data, its `bourse.toml` and its `serve.log`.
//!
//! Invariants: a node's identity files are never overwritten, and one that
//! differs from DIR's is refused (a client would not trust that node); the
//! node files are written only on the first run, so a second run on DIR
//! starts the same cluster (same ports, same data) from them and a run
//! with another `--nodes` is refused; the runner never exits while a node
//! it started runs, except when killed itself: SIGINT/SIGTERM become a
//! SIGTERM to each node, then a SIGKILL to any still running after
//! `STOP_LIMIT` (or at a second signal); a node that exits on its own is
//! reported and the others keep running (that is how failover is tried).

use crate::config::{parse_member, BourseConfig, ConfigError, CLUSTER_MEMBERS_MAX};
use gateway::identity::{self, IdentityError, CERT_FILE, KEY_FILE, TOKEN_FILE};
use gateway::raft_net::{ClusterSecret, SecretError};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The node configuration file in each node directory.
pub const NODE_CONFIG: &str = "bourse.toml";
/// The node's standard output and error.
pub const NODE_LOG: &str = "serve.log";
/// How long the nodes may take to stop after the SIGTERM the runner sends
/// them (`serve` itself gives up after 10 s) before they are killed.
pub const STOP_LIMIT: Duration = Duration::from_secs(15);
/// How often the runner looks at its nodes.
const POLL: Duration = Duration::from_millis(100);

/// `bourse cluster local` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// Nodes (1 to 7; three survive the loss of one).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=CLUSTER_MEMBERS_MAX as u64))]
    pub nodes: u64,
    /// The cluster's directory (created, mode 0700; reused on a second run).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

/// Why the cluster could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A file or directory (named).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The shared identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The cluster secret.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// An existing node configuration does not load.
    #[error("{}: {source}", path.display())]
    Config {
        /// The node's configuration file.
        path: PathBuf,
        /// Why.
        source: Box<ConfigError>,
    },
    /// An existing node configuration is not a cluster member's.
    #[error("{}: no [cluster] node_id (not made by `bourse cluster local`?)", path.display())]
    NotMember {
        /// The node's configuration file.
        path: PathBuf,
    },
    /// DIR holds another number of nodes.
    #[error("{} holds a {found}-node cluster; run it with --nodes {found} (or use another directory)", dir.display())]
    NodeCount {
        /// The cluster's directory.
        dir: PathBuf,
        /// Nodes found.
        found: u64,
    },
    /// A node's copy of the identity is not DIR's.
    #[error("{} differs from the cluster's ({}); remove it to copy the cluster's again", path.display(), shared.display())]
    IdentityDiffers {
        /// The node's file.
        path: PathBuf,
        /// The shared file.
        shared: PathBuf,
    },
    /// Free loopback ports could not be found.
    #[error("picking free loopback ports: {0}")]
    Ports(io::Error),
    /// A node process could not start.
    #[error("starting node {node} ({}): {source}", exe.display())]
    Spawn {
        /// The node id.
        node: u64,
        /// The program.
        exe: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The signal handlers could not be installed.
    #[error("signal handlers: {0}")]
    Signals(io::Error),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One node: its id, directory and addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    /// Node id (1..=N).
    pub id: u64,
    /// Its data directory, `DIR/n<id>`.
    pub dir: PathBuf,
    /// Where clients reach it (QUIC, UDP).
    pub client: SocketAddr,
    /// Where its peers reach it (UDP).
    pub raft: SocketAddr,
    /// Its metrics endpoint (TCP).
    pub metrics: SocketAddr,
}

impl NodePlan {
    /// The node's configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(NODE_CONFIG)
    }

    /// The node's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(NODE_LOG)
    }
}

/// A node directory's name.
fn node_dir(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("n{id}"))
}

/// The node directories of a `cluster local` directory (`n1`, `n2`, … up
/// to the first without a configuration file); none for any other
/// directory.
pub fn node_dirs(dir: &Path) -> Vec<PathBuf> {
    (1..=CLUSTER_MEMBERS_MAX as u64)
        .map(|id| node_dir(dir, id))
        .take_while(|d| d.join(NODE_CONFIG).exists())
        .collect()
}

/// Engine capacities of a loopback node (about 100 MiB of tables instead
/// of the defaults' 1.2 GiB: several nodes share one machine), and its
/// runtime (no pinning, engines that park when idle: several nodes share
/// its cores). Commented in the file it goes to.
const NODE_SECTIONS: &str = r#"[runtime]
# Several nodes share this machine's cores: no pinning, idle engines park.
pin = false
idle = "park"
inbound_ring = 4_096
output_ring = 4_096
journal_queue = 4_096

[engine]
# Small tables (several nodes share this machine's memory).
orders_max = 65_536
levels_max = 4_096
stops_max = 1_024
instruments_max = 16
owners_max = 4_096
client_order_ids_max = 131_072
accounts_max = 16_384
transfers_max = 65_536

[history]
# A small id filter (8 MiB, ~6 M ids at ~1 %) for the same reason.
filter_bytes = 8_388_608
"#;

/// The configuration file of node `me` (an index into `nodes`) of a
/// loopback cluster in `dir` (absolute): its server, small engine tables,
/// the operator token granted the demo owners with every permission (a
/// cluster for trying out), and `[cluster]`.
pub fn node_toml(dir: &Path, nodes: &[NodePlan], me: usize) -> String {
    let n = &nodes[me];
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let path = |p: &Path| q(&p.display().to_string());
    let members: Vec<String> = nodes
        .iter()
        .map(|m| q(&format!("{}={}/{}", m.id, m.raft, m.client)))
        .collect();
    let (owners, perms) = gateway::demo::operator_grant();
    let owners: Vec<String> = owners.iter().map(|o| o.0.to_string()).collect();
    let perms: Vec<String> = crate::config::perm_names(perms)
        .iter()
        .map(|p| q(p))
        .collect();
    format!(
        "# Node {id} of a {count}-node loopback cluster, made by `bourse cluster local`\n\
         # (`bourse config default` explains every key).\n\n\
         [server]\nlisten = {listen}\ndata_dir = {data}\nmetrics = {metrics}\n\n\
         {NODE_SECTIONS}\n\
         [auth]\n# For trying out: the operator token trades for the demo owners.\n\
         operator_owners = [{owners}]\noperator_perms = [{perms}]\n\n\
         [cluster]\nnode_id = {id}\nmembers = [{members}]\nsecret_file = {secret}\n",
        id = n.id,
        count = nodes.len(),
        listen = q(&n.client.to_string()),
        data = path(&n.dir),
        metrics = q(&n.metrics.to_string()),
        owners = owners.join(", "),
        perms = perms.join(", "),
        members = members.join(", "),
        secret = path(&dir.join(crate::config::CLUSTER_SECRET_FILE)),
    )
}

/// Fresh plans for `count` nodes in `dir`, on free loopback ports below
/// the ephemeral range, so a restarted node finds its port free (each
/// port is held until all are picked, so no two are the same).
pub fn fresh_plans(dir: &Path, count: u64) -> Result<Vec<NodePlan>, LocalError> {
    use crate::local_cluster::bind_below_ephemeral;
    let mut held_udp = Vec::new();
    let mut held_tcp = Vec::new();
    let mut udp = || -> io::Result<SocketAddr> {
        let s = bind_below_ephemeral(std::net::UdpSocket::bind)?;
        let a = s.local_addr()?;
        held_udp.push(s);
        Ok(a)
    };
    let mut plans = Vec::new();
    for id in 1..=count {
        let client = udp().map_err(LocalError::Ports)?;
        let raft = udp().map_err(LocalError::Ports)?;
        let t = bind_below_ephemeral(std::net::TcpListener::bind).map_err(LocalError::Ports)?;
        let metrics = t.local_addr().map_err(LocalError::Ports)?;
        held_tcp.push(t);
        plans.push(NodePlan {
            id,
            dir: node_dir(dir, id),
            client,
            raft,
            metrics,
        });
    }
    Ok(plans)
}

/// The plans of the nodes already in `dir`, read from their configuration
/// files (none: a fresh directory).
pub fn existing_plans(dir: &Path) -> Result<Vec<NodePlan>, LocalError> {
    let mut plans = Vec::new();
    for (id, node) in (1..).zip(node_dirs(dir)) {
        let path = node.join(NODE_CONFIG);
        let config_err = |e| LocalError::Config {
            path: path.clone(),
            source: Box::new(e),
        };
        let c = BourseConfig::load(Some(&path), Vec::new(), &[]).map_err(config_err)?;
        let own = c
            .cluster
            .members
            .iter()
            .filter_map(|m| parse_member(m).ok())
            .find(|m| m.id == c.cluster.node_id);
        let (Some(_), Ok(raft)) = (own, c.raft_listen()) else {
            return Err(LocalError::NotMember { path });
        };
        plans.push(NodePlan {
            id,
            dir: c.server.data_dir.clone(),
            client: c.server.listen,
            raft,
            metrics: c.server.metrics,
        });
    }
    Ok(plans)
}

/// Makes (or checks) `dir`: the shared identity and secret, every node's
/// directory with its copy of the identity, and on a fresh directory each
/// node's configuration. Returns the nodes.
pub fn prepare(dir: &Path, count: u64) -> Result<Vec<NodePlan>, LocalError> {
    journal::create_private_dir(dir).map_err(io_at(dir))?;
    let dir = &std::fs::canonicalize(dir).map_err(io_at(dir))?;
    identity::ensure_server_identity(dir)?;
    ClusterSecret::load_or_create(&dir.join(crate::config::CLUSTER_SECRET_FILE))?;
    let mut plans = existing_plans(dir)?;
    let fresh = plans.is_empty();
    if !fresh && plans.len() as u64 != count {
        return Err(LocalError::NodeCount {
            dir: dir.clone(),
            found: plans.len() as u64,
        });
    }
    if fresh {
        plans = fresh_plans(dir, count)?;
    }
    for (i, p) in plans.iter().enumerate() {
        copy_identity(dir, &p.dir)?;
        if fresh {
            let path = p.config_path();
            std::fs::write(&path, node_toml(dir, &plans, i)).map_err(io_at(&path))?;
        }
    }
    Ok(plans)
}

/// Copies the shared identity files into a node directory (mode 0600 for
/// the secrets), keeping copies that are already there if they are equal.
fn copy_identity(dir: &Path, node: &Path) -> Result<(), LocalError> {
    for file in [CERT_FILE, KEY_FILE, TOKEN_FILE] {
        let (from, to) = (dir.join(file), node.join(file));
        let bytes = std::fs::read(&from).map_err(io_at(&from))?;
        if to.exists() {
            if std::fs::read(&to).map_err(io_at(&to))? != bytes {
                return Err(LocalError::IdentityDiffers {
                    path: to,
                    shared: from,
                });
            }
            continue;
        }
        let parent = to.parent().unwrap_or(node);
        journal::create_private_dir(parent).map_err(io_at(parent))?;
        write_private(&to, &bytes)?;
    }
    Ok(())
}

/// Writes a new file readable by its owner only (created with mode 0600,
/// so it is never readable by others, not even while being written).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_at(path))?;
    f.write_all(bytes).map_err(io_at(path))?;
    f.sync_all().map_err(io_at(path))
}

/// What the runner prints once the nodes run: a line per node, the
/// `--server` list and an example command.
pub fn write_started(
    out: &mut impl Write,
    dir: &Path,
    nodes: &[(NodePlan, u32)],
) -> io::Result<()> {
    writeln!(
        out,
        "bourse cluster local: {} node(s) in {}",
        nodes.len(),
        dir.display()
    )?;
    for (p, pid) in nodes {
        writeln!(
            out,
            "  node {} pid {pid}: client {} | raft {} | metrics http://{}/metrics | log {}",
            p.id,
            p.client,
            p.raft,
            p.metrics,
            p.log_path().display()
        )?;
    }
    let servers = server_list(nodes.iter().map(|(p, _)| p));
    writeln!(out, "--server {servers}")?;
    let common = format!("--data-dir {} --server {servers}", dir.display());
    writeln!(
        out,
        "try: bourse instrument add {common} --id 1 --symbol BTC-USD --base BTC --quote USD"
    )?;
    writeln!(
        out,
        "     bourse order {common} --symbol BTC-USD --side buy --price 100 --qty 5"
    )?;
    writeln!(
        out,
        "failover: kill -9 the leader's pid (its log says it leads); clients move on. \
         Ctrl-C stops every node."
    )?;
    out.flush()
}

/// `a,b,c`: the client addresses, for `--server`.
pub fn server_list<'a>(nodes: impl Iterator<Item = &'a NodePlan>) -> String {
    nodes
        .map(|p| p.client.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `bourse cluster local`; returns the exit status (0: every node
/// stopped cleanly after a signal; 1: otherwise, the reason on stderr).
pub fn run_local(a: &LocalArgs, out: &mut impl Write) -> u8 {
    match run(a, out) {
        Ok(clean) => u8::from(!clean),
        Err(e) => {
            eprintln!("bourse cluster local: {e}");
            1
        }
    }
}

fn run(a: &LocalArgs, out: &mut impl Write) -> Result<bool, LocalError> {
    let plans = prepare(&a.data_dir, a.nodes)?;
    let dir = std::fs::canonicalize(&a.data_dir).map_err(io_at(&a.data_dir))?;
    // Handlers first: a signal between two spawns must not be lost.
    let signals = stop_signals()?;
    let exe = std::env::current_exe().map_err(|e| LocalError::Spawn {
        node: 0,
        exe: PathBuf::from("bourse"),
        source: e,
    })?;
    let mut nodes: Vec<Node> = Vec::new();
    for p in &plans {
        match spawn(&exe, p) {
            Ok(child) => nodes.push(Node {
                plan: p.clone(),
                child,
                exit: None,
            }),
            Err(e) => {
                stop_all(&mut nodes, out, &signals);
                return Err(e);
            }
        }
    }
    let started: Vec<(NodePlan, u32)> = nodes
        .iter()
        .map(|n| (n.plan.clone(), n.child.id()))
        .collect();
    let _ = write_started(out, &dir, &started);
    Ok(supervise(&mut nodes, out, &signals))
}

/// A running node.
struct Node {
    plan: NodePlan,
    child: Child,
    exit: Option<ExitStatus>,
}

/// Starts `bourse serve --config DIR/n<I>/bourse.toml` in its own process
/// group (a Ctrl-C reaches the runner only, which stops the nodes in
/// order), output appended to its log, without the `BOURSE_*` variables
/// that would override its file (the same value on every node).
fn spawn(exe: &Path, p: &NodePlan) -> Result<Child, LocalError> {
    let log_path = p.log_path();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_at(&log_path))?;
    let err = log.try_clone().map_err(io_at(&log_path))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("serve")
        .arg("--config")
        .arg(p.config_path())
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err);
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if crate::config::env_key(&name).is_some() || name == "BOURSE_CONFIG" {
            cmd.env_remove(&var);
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.spawn().map_err(|source| LocalError::Spawn {
        node: p.id,
        exe: exe.to_path_buf(),
        source,
    })
}

/// SIGINT and SIGTERM, delivered by name on a channel from a thread of
/// their own (the runner polls its nodes meanwhile).
fn stop_signals() -> Result<mpsc::Receiver<&'static str>, LocalError> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LocalError::Signals)?;
    let (mut int, mut term) = {
        let _in = rt.enter();
        let int = signal(SignalKind::interrupt()).map_err(LocalError::Signals)?;
        let term = signal(SignalKind::terminate()).map_err(LocalError::Signals)?;
        (int, term)
    };
    let (tx, rx) = mpsc::sync_channel(4);
    std::thread::Builder::new()
        .name("cluster-signals".into())
        .spawn(move || {
            rt.block_on(async {
                loop {
                    let name = tokio::select! {
                        _ = int.recv() => "SIGINT",
                        _ = term.recv() => "SIGTERM",
                    };
                    // Full (signals faster than the runner polls): the
                    // ones queued already say enough.
                    let _ = tx.try_send(name);
                }
            })
        })
        .map_err(LocalError::Signals)?;
    Ok(rx)
}

/// Sends SIGTERM (or, with `kill`, SIGKILL) to every node still running.
fn signal_all(nodes: &mut [Node], kill: bool) {
    use rustix::process::{kill_process, Pid, Signal};
    for n in nodes.iter_mut().filter(|n| n.exit.is_none()) {
        // Fails only for a node that exited meanwhile: nothing to stop.
        if kill {
            let _ = n.child.kill();
        } else {
            let _ = kill_process(Pid::from_child(&n.child), Signal::TERM);
        }
    }
}

/// Stops the nodes started so far (a later one failed to start).
fn stop_all(nodes: &mut [Node], out: &mut impl Write, signals: &mpsc::Receiver<&'static str>) {
    signal_all(nodes, false);
    let _ = supervise_stopping(nodes, out, signals, Instant::now() + STOP_LIMIT);
}

/// Watches the nodes until they have all exited: reports each exit, and at
/// a signal stops them all. Returns whether they were stopped by a signal
/// and all exited with status 0.
fn supervise(
    nodes: &mut [Node],
    out: &mut impl Write,
    signals: &mpsc::Receiver<&'static str>,
) -> bool {
    loop {
        match signals.recv_timeout(POLL) {
            Ok(name) => {
                let _ = writeln!(
                    out,
                    "bourse cluster local: {name}: stopping every node (SIGTERM)"
                );
                signal_all(nodes, false);
                return supervise_stopping(nodes, out, signals, Instant::now() + STOP_LIMIT);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // The signal thread is gone (it never ends by itself): stop.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                signal_all(nodes, false);
                return supervise_stopping(nodes, out, signals, Instant::now() + STOP_LIMIT);
            }
        }
        reap(nodes, out, "exited unexpectedly (the others keep running)");
        if nodes.iter().all(|n| n.exit.is_some()) {
            let _ = writeln!(out, "bourse cluster local: every node exited");
            return false;
        }
    }
}

/// After the SIGTERM: waits for every node until `deadline` (or a second
/// signal), then kills those left; reports each exit status.
fn supervise_stopping(
    nodes: &mut [Node],
    out: &mut impl Write,
    signals: &mpsc::Receiver<&'static str>,
    deadline: Instant,
) -> bool {
    while nodes.iter().any(|n| n.exit.is_none()) {
        let again = signals.recv_timeout(POLL).ok();
        reap(nodes, out, "stopped");
        let late = Instant::now() >= deadline;
        if (again.is_some() || late) && nodes.iter().any(|n| n.exit.is_none()) {
            let why = again.map_or_else(
                || format!("not stopped within {} s", STOP_LIMIT.as_secs()),
                |s| format!("{s} again"),
            );
            let _ = writeln!(
                out,
                "bourse cluster local: {why}: killing the nodes left (SIGKILL)"
            );
            signal_all(nodes, true);
            for n in nodes.iter_mut().filter(|n| n.exit.is_none()) {
                n.exit = n.child.wait().ok();
                let _ = writeln!(out, "  node {} killed", n.plan.id);
            }
            return false;
        }
    }
    nodes.iter().all(|n| n.exit.is_some_and(|s| s.success()))
}

/// Records and reports each node that exited since the last look.
fn reap(nodes: &mut [Node], out: &mut impl Write, what: &str) {
    for n in nodes.iter_mut().filter(|n| n.exit.is_none()) {
        if let Ok(Some(status)) = n.child.try_wait() {
            n.exit = Some(status);
            let _ = writeln!(
                out,
                "  node {} (pid {}) {what}: {status}; log {}",
                n.plan.id,
                n.child.id(),
                n.plan.log_path().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        a: LocalArgs,
    }

    #[test]
    fn nodes_are_1_to_7_and_the_directory_is_required() {
        let parse = |args: &[&str]| Cmd::try_parse_from([&["x"], args].concat()).map(|c| c.a);
        assert_eq!(parse(&["--data-dir", "d"]).unwrap().nodes, 3);
        assert_eq!(
            parse(&["--data-dir", "d", "--nodes", "7"]).unwrap().nodes,
            7
        );
        assert_eq!(
            parse(&["--data-dir", "d", "--nodes", "1"]).unwrap().nodes,
            1
        );
        for bad in [
            &["--data-dir", "d", "--nodes", "0"][..],
            &["--data-dir", "d", "--nodes", "8"],
            &["--nodes", "3"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_node_file_is_a_valid_member_config_of_the_same_cluster() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let plans = fresh_plans(dir, 3).unwrap();
        let mut ports: Vec<u16> = plans
            .iter()
            .flat_map(|p| [p.client.port(), p.raft.port()])
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6, "distinct UDP ports");
        for (i, p) in plans.iter().enumerate() {
            let c = BourseConfig::from_toml(&node_toml(dir, &plans, i)).unwrap();
            let spec = c.cluster_spec().expect("a cluster member");
            assert_eq!(spec.config.node_id, p.id);
            assert_eq!(spec.config.members.len(), 3);
            assert_eq!(spec.raft_listen, p.raft);
            assert_eq!(spec.secret_file, dir.join("cluster.secret"));
            assert_eq!(c.server.listen, p.client);
            assert_eq!(c.server.metrics, p.metrics);
            assert_eq!(c.server.data_dir, dir.join(format!("n{}", p.id)));
            // The on-disk transfer history is on: run size capped by memory.
            assert_eq!(c.pipeline().history_run_records, 32_768);
            assert!(!c.runtime.pin);
            assert!(c.memory_estimate() < 256 << 20, "{}", c.memory_estimate());
        }
        assert_eq!(
            server_list(plans.iter()),
            format!(
                "{},{},{}",
                plans[0].client, plans[1].client, plans[2].client
            )
        );
    }

    #[test]
    fn prepare_makes_the_layout_once_and_a_second_run_reuses_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let first = prepare(&dir, 3).unwrap();
        let shared = identity::load_client_identity(&dir).unwrap();
        for p in &first {
            let node = identity::load_client_identity(&p.dir).unwrap();
            assert_eq!(node.cert_der, shared.cert_der);
            assert_eq!(node.operator_token, shared.operator_token);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                for f in [KEY_FILE, TOKEN_FILE] {
                    let mode = std::fs::metadata(p.dir.join(f))
                        .unwrap()
                        .permissions()
                        .mode();
                    assert_eq!(mode & 0o777, 0o600, "{f}");
                }
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        assert!(dir.join("cluster.secret").exists());
        // A second run: the same nodes, ports and files.
        let again = prepare(&dir, 3).unwrap();
        assert_eq!(again, first);
        assert!(matches!(
            prepare(&dir, 5),
            Err(LocalError::NodeCount { found: 3, .. })
        ));
        // A node whose certificate is not the cluster's is refused.
        std::fs::write(first[1].dir.join(CERT_FILE), b"other").unwrap();
        let e = prepare(&dir, 3).unwrap_err();
        assert!(matches!(e, LocalError::IdentityDiffers { .. }), "{e}");
        assert!(e.to_string().contains("n2"), "{e}");
    }

    #[test]
    fn the_start_banner_names_every_node_and_the_server_list() {
        let dir = Path::new("/tmp/c");
        let plans = fresh_plans(dir, 2).unwrap();
        let started: Vec<(NodePlan, u32)> = plans.iter().cloned().zip([101, 102]).collect();
        let mut out = Vec::new();
        write_started(&mut out, dir, &started).unwrap();
        let text = String::from_utf8(out).unwrap();
        let list = server_list(plans.iter());
        assert!(text.contains(&format!("\n--server {list}\n")), "{text}");
        assert!(text.contains("node 2 pid 102"), "{text}");
        assert!(text.contains("/tmp/c/n1/serve.log"), "{text}");
        assert!(
            text.contains(&format!("bourse order --data-dir /tmp/c --server {list}")),
            "{text}"
        );
    }
}
