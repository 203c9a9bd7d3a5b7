//! A replicated Bourse in one process, on loopback: `n` `serve` instances
//! (real pipelines, QUIC order entry, Raft over the `bourse-raft/1` peer
//! transport), one shared TLS identity and cluster secret. The in-process
//! failover test and the replication measurements (`examples/replication.rs`)
//! start it; `bourse cluster local` starts real processes instead.
//!
//! Invariants: every node has its own data directory (`<root>/n<id>`) and
//! ports chosen once, so a stopped node restarts onto its own log; a node is
//! stopped through its server handle (the groups stop, then the engines).

use gateway::client::{connect_any, Client, ClientConfig};
use gateway::identity::{ensure_server_identity, CERT_FILE, KEY_FILE, TOKEN_FILE};
use gateway::server::{self, ClusterSpec, ServerConfig, ServerHandle};
use replica::{ClusterConfig, Member};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An in-process cluster.
#[derive(Debug)]
pub struct LocalCluster {
    root: PathBuf,
    members: Vec<Member>,
    handles: Vec<Option<ServerHandle>>,
    configure: fn(&mut ServerConfig),
    /// The certificate every node presents.
    pub cert: Vec<u8>,
    /// The operator token every node accepts.
    pub token: String,
}

/// Why the cluster could not start or be reached.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    /// Files or sockets.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The identity.
    #[error(transparent)]
    Identity(#[from] gateway::identity::IdentityError),
    /// A node did not start.
    #[error("node {id}: {source}")]
    Serve {
        /// Its id.
        id: u64,
        /// Why.
        source: server::ServeError,
    },
    /// No node served in time.
    #[error("no node served within {0:?}: {1}")]
    NoLeader(Duration, String),
}

/// A loopback UDP port nobody holds now (see `bind_below_ephemeral`).
fn free_port() -> std::io::Result<SocketAddr> {
    bind_below_ephemeral(UdpSocket::bind)?.local_addr()
}

/// `bind` on a loopback port drawn below the kernel's ephemeral range
/// (Linux 32768+, others 49152+), the first that binds: a node stopped and
/// restarted on its port gets it back, which an ephemeral port is not sure
/// to be — any client socket of the machine may be handed it meanwhile.
pub(crate) fn bind_below_ephemeral<T>(
    mut bind: impl FnMut(SocketAddr) -> std::io::Result<T>,
) -> std::io::Result<T> {
    const PORTS: std::ops::Range<u64> = 20_000..32_000;
    static DRAWN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let drawn = DRAWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut rng = engine::rng::SplitMix64(
        (u64::from(std::process::id()) << 32) ^ u64::from(nanos) ^ drawn.wrapping_mul(0x9e37_79b9),
    );
    for _ in 0..256 {
        let port = (PORTS.start + rng.below(PORTS.end - PORTS.start)) as u16;
        if let Ok(s) = bind(SocketAddr::from(([127, 0, 0, 1], port))) {
            return Ok(s);
        }
    }
    bind(SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn copy_identity(from: &Path, to: &Path) -> std::io::Result<()> {
    for f in [CERT_FILE, KEY_FILE, TOKEN_FILE] {
        let dst = to.join(f);
        if let Some(dir) = dst.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(from.join(f), dst)?;
    }
    Ok(())
}

impl LocalCluster {
    /// Starts `n` nodes under `root` (all at once: a new cluster's first node
    /// needs the others to elect it); `configure` adjusts each node's
    /// server configuration (capacities, durability of a test, ...).
    pub fn start(
        root: &Path,
        n: u64,
        configure: fn(&mut ServerConfig),
    ) -> Result<LocalCluster, LocalClusterError> {
        let ids = ensure_server_identity(&root.join("n1"))?;
        let mut members = Vec::new();
        for id in 1..=n {
            members.push(Member {
                id,
                raft_addr: free_port()?.to_string(),
                client_addr: free_port()?.to_string(),
            });
        }
        for id in 2..=n {
            copy_identity(&root.join("n1"), &root.join(format!("n{id}")))?;
        }
        // Made once before the nodes start (they all read the same file).
        gateway::raft_net::ClusterSecret::load_or_create(&root.join("cluster.secret"))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut c = LocalCluster {
            root: root.to_path_buf(),
            members,
            handles: Vec::new(),
            configure,
            cert: ids.cert_der,
            token: ids.operator_token,
        };
        let starts: Vec<_> = (1..=n)
            .map(|id| {
                let cfg = c.config(id);
                std::thread::spawn(move || server::start(cfg))
            })
            .collect();
        for (i, t) in starts.into_iter().enumerate() {
            let id = i as u64 + 1;
            let h = t
                .join()
                .expect("server start thread")
                .map_err(|source| LocalClusterError::Serve { id, source })?;
            c.handles.push(Some(h));
        }
        Ok(c)
    }

    fn config(&self, id: u64) -> ServerConfig {
        let m = &self.members[id as usize - 1];
        let mut cfg = ServerConfig::new(self.root.join(format!("n{id}")));
        cfg.listen = m.client_addr.parse().expect("a socket address");
        cfg.pipeline.runtime.pin = false;
        let mut cc = ClusterConfig::new(id, self.members.clone());
        cc.segment_bytes = 8 << 20;
        cfg.cluster = Some(ClusterSpec {
            config: cc,
            raft_listen: m.raft_addr.parse().expect("a socket address"),
            secret_file: self.root.join("cluster.secret"),
        });
        (self.configure)(&mut cfg);
        cfg
    }

    /// Every node's client address, in id order (`--server a,b,c`).
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.members
            .iter()
            .map(|m| m.client_addr.parse().expect("a socket address"))
            .collect()
    }

    /// Whether node `id` runs.
    pub fn running(&self, id: u64) -> bool {
        self.handles[id as usize - 1].is_some()
    }

    /// Stops node `id` (its groups, then its engines).
    pub fn stop(&mut self, id: u64) {
        if let Some(h) = self.handles[id as usize - 1].take() {
            h.shutdown();
        }
    }

    /// Stops node `id` on another thread (the caller times what follows, as
    /// after a crash: its peers stop hearing from it at once).
    pub fn stop_in_background(&mut self, id: u64) -> std::thread::JoinHandle<()> {
        let h = self.handles[id as usize - 1].take();
        std::thread::spawn(move || {
            if let Some(h) = h {
                h.shutdown();
            }
        })
    }

    /// Restarts node `id` onto its data directory.
    pub fn restart(&mut self, id: u64) -> Result<(), LocalClusterError> {
        let h = server::start(self.config(id))
            .map_err(|source| LocalClusterError::Serve { id, source })?;
        self.handles[id as usize - 1] = Some(h);
        Ok(())
    }

    /// Logs in to the node that serves (the others answer `not_leader`)
    /// within `wait`: its id and the client.
    pub async fn leader(
        &self,
        session: u64,
        wait: Duration,
    ) -> Result<(u64, Client), LocalClusterError> {
        self.leader_as(session, wait, |_| {}).await
    }

    /// `leader` with the client's configuration changed by `tune` (another
    /// token, cancel-on-disconnect).
    pub async fn leader_as(
        &self,
        session: u64,
        wait: Duration,
        tune: impl Fn(&mut ClientConfig),
    ) -> Result<(u64, Client), LocalClusterError> {
        let live: Vec<&Member> = self.members.iter().filter(|m| self.running(m.id)).collect();
        let addrs: Vec<SocketAddr> = live
            .iter()
            .map(|m| m.client_addr.parse().expect("a socket address"))
            .collect();
        let mut cfg = ClientConfig::new(addrs[0], self.cert.clone(), self.token.clone());
        cfg.session_id = session;
        tune(&mut cfg);
        let deadline = Instant::now() + wait;
        let mut last = String::new();
        while Instant::now() < deadline {
            match connect_any(&addrs, &cfg).await {
                Ok(c) => {
                    let server = c.server().to_string();
                    let id = live
                        .iter()
                        .find(|m| m.client_addr == server)
                        .expect("a member")
                        .id;
                    return Ok((id, c));
                }
                Err(e) => last = e.to_string(),
            }
            // A refusal can come back at once: do not hammer the servers.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(LocalClusterError::NoLeader(wait, last))
    }

    /// Stops every node.
    pub fn shutdown(mut self) {
        for id in 1..=self.members.len() as u64 {
            self.stop(id);
        }
    }
}
