//! openraft's network over any byte transport: each Raft RPC of a partition
//! group is encoded (postcard) and sent as opaque bytes, tagged with the
//! group and an RPC kind, through a [`Transport`] — QUIC between processes
//! (the gateway's `raft_net`), or the simulated network in tests.
//! [`serve_rpc`] is the other end: it decodes a request, hands it to the
//! group's `Raft` and encodes the answer.
//!
//! Invariants: a request or answer that does not decode is a typed error,
//! never a panic; every call is bounded by openraft's RPC deadline; a
//! transport failure is reported as `Unreachable` (openraft backs off),
//! never retried here.

use crate::types::{Cfg, NodeId};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{BasicNode, Raft, RaftNetworkV2};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// RPC kinds on the wire.
pub mod kind {
    /// AppendEntries.
    pub const APPEND: u8 = 1;
    /// RequestVote.
    pub const VOTE: u8 = 2;
    /// Pre-vote.
    pub const PRE_VOTE: u8 = 3;
    /// A whole snapshot.
    pub const SNAPSHOT: u8 = 4;
}

/// Why a transport call failed.
#[derive(Debug, thiserror::Error)]
#[error("raft rpc to node {target} ({addr}): {what}")]
pub struct TransportError {
    /// The peer.
    pub target: NodeId,
    /// Its address.
    pub addr: String,
    /// What failed.
    pub what: String,
}

/// A boxed future of a transport call.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, TransportError>> + Send>>;

/// Carries opaque RPC bytes to a peer and its answer back.
pub trait Transport: Send + Sync + 'static {
    /// One request/answer with node `target` at `addr`, for `group`, of
    /// RPC `kind`, bounded by `timeout`.
    fn call(
        &self,
        target: NodeId,
        addr: &str,
        group: u32,
        kind: u8,
        body: Vec<u8>,
        timeout: Duration,
    ) -> CallFuture;
}

/// A request the remote `Raft` refused (shutting down, fatal error).
#[derive(Debug, Serialize, Deserialize)]
enum Answer<T> {
    Ok(T),
    Refused(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotRpc {
    vote: VoteOf<Cfg>,
    meta: crate::state::SnapshotMeta,
    data: Vec<u8>,
}

/// Makes one connection handle per peer for one group.
#[derive(Clone)]
pub struct Network {
    transport: Arc<dyn Transport>,
    group: u32,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Network(group {})", self.group)
    }
}

impl Network {
    /// The network of partition `group` over `transport`.
    pub fn new(transport: Arc<dyn Transport>, group: u32) -> Self {
        Network { transport, group }
    }
}

/// The network handle to one peer.
#[derive(Clone, Debug)]
pub struct Peer {
    net: Network,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<Cfg> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            net: self.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

fn unreachable(e: impl std::error::Error + 'static) -> Unreachable<Cfg> {
    Unreachable::new(&e)
}

/// An answer that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("raft rpc answer from node {target}: {what}")]
struct BadAnswer {
    target: NodeId,
    what: String,
}

impl Peer {
    async fn rpc<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        kind: u8,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, Unreachable<Cfg>> {
        let body = postcard::to_allocvec(req).expect("postcard encodes every Raft request");
        let t = &self.net.transport;
        let bytes = t
            .call(self.target, &self.addr, self.net.group, kind, body, timeout)
            .await
            .map_err(unreachable)?;
        let bad = |what: String| {
            unreachable(BadAnswer {
                target: self.target,
                what,
            })
        };
        match postcard::from_bytes::<Answer<Resp>>(&bytes) {
            Ok(Answer::Ok(r)) => Ok(r),
            Ok(Answer::Refused(why)) => Err(bad(format!("refused: {why}"))),
            Err(e) => Err(bad(format!("does not decode: {e}"))),
        }
    }
}

impl RaftNetworkV2<Cfg> for Peer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Cfg>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<Cfg>, RPCError<Cfg>> {
        Ok(self.rpc(kind::APPEND, &rpc, option.hard_ttl()).await?)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<Cfg>,
        option: RPCOption,
    ) -> Result<VoteResponse<Cfg>, RPCError<Cfg>> {
        Ok(self.rpc(kind::VOTE, &rpc, option.hard_ttl()).await?)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<Cfg>,
        option: RPCOption,
    ) -> Result<VoteResponse<Cfg>, RPCError<Cfg>> {
        Ok(self.rpc(kind::PRE_VOTE, &rpc, option.hard_ttl()).await?)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<Cfg>,
        snapshot: SnapshotOf<Cfg, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<Cfg>, StreamingError<Cfg>> {
        let req = SnapshotRpc {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        Ok(self.rpc(kind::SNAPSHOT, &req, option.hard_ttl()).await?)
    }
}

/// Why an inbound request could not be served at all.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No such group on this node.
    #[error("no raft group {0} on this node")]
    Group(u32),
    /// Unknown RPC kind.
    #[error("unknown raft rpc kind {0}")]
    Kind(u8),
    /// The request does not decode.
    #[error("raft rpc kind {kind} does not decode: {what}")]
    Decode {
        /// Its kind.
        kind: u8,
        /// Why.
        what: String,
    },
}

fn answer<T: Serialize, E: std::fmt::Display>(r: Result<T, E>) -> Vec<u8> {
    let a = match r {
        Ok(v) => Answer::Ok(v),
        Err(e) => Answer::Refused(e.to_string()),
    };
    postcard::to_allocvec(&a).expect("postcard encodes every Raft answer")
}

fn decode<T: serde::de::DeserializeOwned>(kind: u8, body: &[u8]) -> Result<T, ServeError> {
    postcard::from_bytes(body).map_err(|e| ServeError::Decode {
        kind,
        what: e.to_string(),
    })
}

/// Serves one inbound RPC of `kind` on `raft`; returns the encoded answer.
pub async fn serve_rpc<SM>(
    raft: &Raft<Cfg, SM>,
    kind: u8,
    body: &[u8],
) -> Result<Vec<u8>, ServeError>
where
    SM: openraft::storage::RaftStateMachine<Cfg, SnapshotData = Vec<u8>>,
{
    Ok(match kind {
        kind::APPEND => answer(raft.append_entries(decode(kind, body)?).await),
        kind::VOTE => answer(raft.vote(decode(kind, body)?).await),
        kind::PRE_VOTE => answer(raft.pre_vote(decode(kind, body)?).await),
        kind::SNAPSHOT => {
            let r: SnapshotRpc = decode(kind, body)?;
            let snap = openraft::Snapshot {
                meta: r.meta,
                snapshot: r.data,
            };
            answer(raft.install_full_snapshot(r.vote, snap).await)
        }
        k => return Err(ServeError::Kind(k)),
    })
}
