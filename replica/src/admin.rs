//! Operator requests to a running cluster, carried by the peer transport
//! (so only holders of the cluster secret can send them): the groups'
//! status, adding a node (it joins every partition's group as a learner,
//! catches up — from a snapshot when the log it needs was purged — and is
//! then made a voter) and removing one.
//!
//! Invariants: a membership change is made only by the leader of each
//! group, through openraft's joint consensus (never by editing a member
//! list), partition by partition in order; a node becomes a voter only once
//! it has caught up as a learner; a request that does not decode is refused
//! by name.

use crate::types::NodeId;
use serde::{Deserialize, Serialize};

/// RPC kind of admin requests (group 0).
pub const ADMIN_KIND: u8 = 16;

/// An operator request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Every group's status on the node asked.
    Status,
    /// Add node `id`, reachable by its peers at `raft_addr`, as a voter of
    /// every group.
    AddNode {
        /// Its id (unused so far).
        id: NodeId,
        /// Its peer address.
        raft_addr: String,
    },
    /// Remove node `id` from every group.
    RemoveNode {
        /// Its id.
        id: NodeId,
    },
}

/// One group's status as the admin request reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminGroup {
    /// Partition.
    pub partition: u32,
    /// Role of the answering node.
    pub role: String,
    /// Term.
    pub term: u64,
    /// Leader, as the answering node knows it.
    pub leader: Option<NodeId>,
    /// Voters.
    pub voters: Vec<NodeId>,
    /// Learners.
    pub learners: Vec<NodeId>,
    /// Last log, committed and applied indices.
    pub indices: (u64, u64, u64),
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    /// `Status`.
    Status {
        /// The answering node.
        node: NodeId,
        /// Per partition.
        groups: Vec<AdminGroup>,
    },
    /// The change is committed in every group.
    Done,
    /// Ask the leader instead.
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// The change failed in a partition (earlier ones kept it).
    Failed {
        /// Which.
        partition: u32,
        /// Why.
        why: String,
    },
}
