//! A replicated server's node (`[cluster]`): the partitions' Raft groups
//! (`replica::Cluster`) over the pipeline's replicated partitions, the peer
//! server that answers the other members (`raft_net`, ALPN
//! `bourse-raft/1`), and the transport the groups reach them through.
//!
//! Invariants: every peer connection is TLS to the cluster's one
//! certificate and starts with the cluster secret (see `raft_net`); the
//! groups and the peer server run on the node's own tokio runtime, never on
//! the gateway's thread; the node stops before the pipeline does, so no
//! committed input is handed to a stopped engine thread. A member's raft
//! address may be a DNS name (a Kubernetes pod's stable name): it is looked
//! up when a call needs it, the answer kept for at most `RESOLVE_TTL` (a
//! restarted pod comes back at a new IP under the same name), the lookup
//! bounded by the call's timeout.

use crate::identity::ServerIdentity;
use crate::raft_net::RpcRefused;
use crate::raft_net::{ClusterSecret, PeerClient, PeerLimits, PeerServer, RpcFuture, RpcHandler};
use crate::server::{ClusterSpec, ServeError};
use replica::{CallFuture, Cluster, NodeId, RpcTarget, Transport, TransportError};
use runtime::{Pipeline, PipelineConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Code of an RPC the node refused (no such group, undecodable).
const REFUSED: u32 = 1;

/// The running node.
#[derive(Debug)]
pub struct Replicated {
    cluster: Cluster,
    peers: Option<PeerServer>,
}

struct Handler(RpcTarget);

impl RpcHandler for Handler {
    fn handle(&self, group: u32, kind: u8, body: Vec<u8>) -> RpcFuture {
        let fut = self.0.serve(group, kind, body);
        Box::pin(async move {
            fut.await.map_err(|e| RpcRefused {
                code: REFUSED,
                body: e.to_string().into_bytes(),
            })
        })
    }
}

/// How long a looked-up peer address is reused before its name is looked
/// up again.
const RESOLVE_TTL: Duration = Duration::from_secs(5);
/// Most peer names kept looked up (members are at most 7; the table is
/// emptied when full, so names of removed members do not pile up).
const RESOLVED_MAX: usize = 64;

/// Why a peer's name gave no address.
#[derive(Debug, thiserror::Error)]
enum ResolveError {
    /// The lookup outlasted the call's timeout.
    #[error("looking up {0} took over {1:?}")]
    Slow(String, Duration),
    /// The resolver failed.
    #[error("cannot look up {0}: {1}")]
    Lookup(String, std::io::Error),
    /// The name has no address.
    #[error("{0} has no address")]
    NoAddress(String),
}

/// Peer addresses as socket addresses: `IP:PORT` as it is, `NAME:PORT`
/// looked up (first answer), cached for `RESOLVE_TTL`.
#[derive(Default)]
struct PeerNames {
    resolved: Mutex<HashMap<String, (SocketAddr, Instant)>>,
}

impl PeerNames {
    /// The socket address of `addr`; a lookup that fails or outlasts
    /// `timeout` is an error saying which.
    async fn resolve(&self, addr: &str, timeout: Duration) -> Result<SocketAddr, ResolveError> {
        if let Ok(a) = addr.parse::<SocketAddr>() {
            return Ok(a);
        }
        if let Some(&(a, at)) = self.lock().get(addr) {
            if at.elapsed() < RESOLVE_TTL {
                return Ok(a);
            }
        }
        let addr_s = || addr.to_string();
        let found = match tokio::time::timeout(timeout, tokio::net::lookup_host(addr)).await {
            Err(_) => return Err(ResolveError::Slow(addr_s(), timeout)),
            Ok(Err(e)) => return Err(ResolveError::Lookup(addr_s(), e)),
            Ok(Ok(mut it)) => it.next(),
        };
        let a = found.ok_or_else(|| ResolveError::NoAddress(addr_s()))?;
        let mut table = self.lock();
        if table.len() >= RESOLVED_MAX {
            table.clear();
        }
        table.insert(addr.to_string(), (a, Instant::now()));
        Ok(a)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (SocketAddr, Instant)>> {
        self.resolved.lock().expect("peer names lock")
    }
}

/// The groups' transport: the peer client, made on first use inside the
/// node's runtime (quinn needs one).
struct PeerTransport {
    cert_der: Vec<u8>,
    secret: ClusterSecret,
    limits: PeerLimits,
    client: OnceLock<Result<Arc<PeerClient>, String>>,
    names: Arc<PeerNames>,
}

impl Transport for PeerTransport {
    fn call(
        &self,
        target: NodeId,
        addr: &str,
        group: u32,
        kind: u8,
        body: Vec<u8>,
        timeout: Duration,
    ) -> CallFuture {
        let err = |what: String| TransportError {
            target,
            addr: addr.to_string(),
            what,
        };
        let client = self.client.get_or_init(|| {
            PeerClient::new(&self.cert_der, self.secret.clone(), self.limits)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        });
        let client = match client {
            Ok(c) => c.clone(),
            Err(e) => {
                let e = err(format!("peer client: {e}"));
                return Box::pin(async move { Err(e) });
            }
        };
        let names = self.names.clone();
        let addr = addr.to_string();
        Box::pin(async move {
            let peer = names
                .resolve(&addr, timeout)
                .await
                .map_err(|e| TransportError {
                    target,
                    addr: addr.clone(),
                    what: e.to_string(),
                })?;
            client
                .call(peer, group, kind, &body, timeout)
                .await
                .map_err(|e| TransportError {
                    target,
                    addr,
                    what: e.to_string(),
                })
        })
    }
}

/// The pipeline settings of a replicated node: no journal thread of the
/// runtime's own (the Raft log is the journal) and numbered inputs; the
/// on-disk transfer history stays as configured (its runs are shipped to
/// the followers and installed through the log: `replica::runs`).
pub fn replicated_pipeline(cfg: &mut PipelineConfig) {
    if cfg.durability != runtime::Durability::Durable {
        tracing::warn!(
            durability = ?cfg.durability,
            "a replicated node syncs every group of its Raft log before acknowledging: the configured journal durability does not apply"
        );
    }
    cfg.durability = runtime::Durability::None;
    cfg.runtime.replicated = true;
}

impl Replicated {
    /// Starts the node's groups over `pipeline` (opened with
    /// `replicated_pipeline`) and its peer server; every later `submit`
    /// goes to the groups.
    pub fn start(
        spec: &ClusterSpec,
        cfg: &PipelineConfig,
        identity: &ServerIdentity,
        pipeline: &mut Pipeline,
    ) -> Result<Replicated, ServeError> {
        let other = |e: String| ServeError::Other(e);
        let secret =
            ClusterSecret::load_or_create(&spec.secret_file).map_err(|e| other(e.to_string()))?;
        let limits = PeerLimits::default();
        let transport = Arc::new(PeerTransport {
            cert_der: identity.cert_der.clone(),
            secret: secret.clone(),
            limits,
            client: OnceLock::new(),
            names: Arc::default(),
        });
        let cluster = Cluster::start(
            &spec.config,
            &cfg.data_dir,
            cfg.engine,
            pipeline.runtime(),
            || transport,
        )
        .map_err(|e| other(e.to_string()))?;
        let peers = {
            let _in = cluster.handle().enter();
            PeerServer::start(
                spec.raft_listen,
                &identity.cert_der,
                &identity.key_der,
                secret,
                Arc::new(Handler(cluster.rpc_target())),
                limits,
            )
            .map_err(|e| other(format!("peer server on {}: {e}", spec.raft_listen)))?
        };
        pipeline
            .runtime_mut()
            .set_proposer(Arc::new(cluster.proposer()));
        Ok(Replicated {
            cluster,
            peers: Some(peers),
        })
    }

    /// The node's groups.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Stops the peer server and the groups (before the pipeline stops).
    pub fn shutdown(mut self) {
        if let Some(p) = self.peers.take() {
            // Dropping it stops it (inside its runtime, which quinn needs).
            let _in = self.cluster.handle().enter();
            drop(p);
        }
        self.cluster.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn peer_names_pass_addresses_look_up_names_and_say_what_failed() {
        let names = PeerNames::default();
        let t = Duration::from_secs(5);
        let ip: SocketAddr = "10.1.2.3:7071".parse().unwrap();
        assert_eq!(names.resolve("10.1.2.3:7071", t).await.unwrap(), ip);
        assert!(names.lock().is_empty(), "an address is never looked up");
        let local = names.resolve("localhost:7071", t).await.unwrap();
        assert!(local.ip().is_loopback() && local.port() == 7071, "{local}");
        assert_eq!(names.lock().get("localhost:7071").map(|e| e.0), Some(local));
        // A fresh answer is reused; a stale one is looked up again.
        names
            .lock()
            .insert("localhost:7071".into(), (ip, Instant::now()));
        assert_eq!(names.resolve("localhost:7071", t).await.unwrap(), ip);
        let stale = Instant::now().checked_sub(RESOLVE_TTL).unwrap();
        names.lock().insert("localhost:7071".into(), (ip, stale));
        assert_eq!(names.resolve("localhost:7071", t).await.unwrap(), local);
        let e = names
            .resolve("bourse-9.invalid:7071", t)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("bourse-9.invalid:7071"), "{e}");
        let e = names.resolve("no-port", t).await.unwrap_err().to_string();
        assert!(e.contains("no-port"), "{e}");
    }
}
