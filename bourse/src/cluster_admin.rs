//! `bourse cluster status | add-node | remove-node`: operator requests to a
//! running cluster, sent over the peer transport (`bourse-raft/1`) with the
//! cluster secret, so only an operator holding the cluster's directory
//! (its certificate and `cluster.secret`) can change its membership.
//!
//! Invariants: a change is sent to the members in order until the leader
//! takes it (the others answer `not_leader`); nothing here edits a member
//! list itself — the leader changes each group's membership by joint
//! consensus, adding a node as a learner that must catch up before it votes.

use crate::cluster_cli::existing_plans;
use gateway::raft_net::{ClusterSecret, PeerClient, PeerLimits};
use replica::{AdminReply, AdminRequest, ADMIN_KIND};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where a cluster is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminTarget {
    /// The cluster's directory (its certificate, `cluster.secret` and, unless
    /// `--raft` is given, its nodes' peer addresses).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Peer (raft) addresses to ask, comma-separated (default: every node of DIR).
    #[arg(long, value_name = "ADDRS")]
    pub raft: Option<String>,
}

/// The admin subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Every node's view of every partition's group.
    Status(AdminTarget),
    /// Add node ID (reachable by its peers at RAFT_ADDR) to every group: a
    /// learner first, then a voter once it caught up.
    AddNode {
        #[command(flatten)]
        /// The cluster.
        target: AdminTarget,
        /// The new node's id.
        #[arg(long)]
        node_id: u64,
        /// The new node's peer address.
        #[arg(long)]
        raft_addr: SocketAddr,
    },
    /// Remove node ID from every group.
    RemoveNode {
        #[command(flatten)]
        /// The cluster.
        target: AdminTarget,
        /// The node's id.
        #[arg(long)]
        node_id: u64,
    },
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The cluster's directory.
    #[error("{0}")]
    Dir(String),
    /// No member took the request.
    #[error("no member took the request: {0}")]
    NoLeader(String),
    /// A change failed in a partition.
    #[error("partition {partition}: {why}")]
    Failed {
        /// Which.
        partition: u32,
        /// Why.
        why: String,
    },
}

/// How long a change may take (a learner catching up included).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs an admin subcommand; the process exit status.
pub fn run(cmd: &AdminCommand, out: &mut impl Write) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return 1;
        }
    };
    match rt.block_on(run_async(cmd, out)) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            1
        }
    }
}

fn target_of(cmd: &AdminCommand) -> &AdminTarget {
    match cmd {
        AdminCommand::Status(t) => t,
        AdminCommand::AddNode { target, .. } | AdminCommand::RemoveNode { target, .. } => target,
    }
}

fn peers(t: &AdminTarget) -> Result<Vec<SocketAddr>, AdminError> {
    if let Some(list) = &t.raft {
        return list
            .split(',')
            .map(|a| {
                a.trim()
                    .parse()
                    .map_err(|e| AdminError::Dir(format!("--raft {a}: {e}")))
            })
            .collect();
    }
    let plans = existing_plans(&t.data_dir).map_err(|e| AdminError::Dir(e.to_string()))?;
    if plans.is_empty() {
        return Err(AdminError::Dir(format!(
            "{}: no node configuration (nI/bourse.toml); give --raft",
            t.data_dir.display()
        )));
    }
    Ok(plans.iter().map(|p| p.raft).collect())
}

async fn run_async(cmd: &AdminCommand, out: &mut impl Write) -> Result<(), AdminError> {
    let t = target_of(cmd);
    let ident = gateway::identity::load_client_identity(&t.data_dir)
        .map_err(|e| AdminError::Dir(e.to_string()))?;
    let secret =
        ClusterSecret::load_or_create(&t.data_dir.join(crate::config::CLUSTER_SECRET_FILE))
            .map_err(|e| AdminError::Dir(e.to_string()))?;
    let client = PeerClient::new(&ident.cert_der, secret, PeerLimits::default())
        .map_err(|e| AdminError::Dir(e.to_string()))?;
    let peers = peers(t)?;
    let req = match cmd {
        AdminCommand::Status(_) => AdminRequest::Status,
        AdminCommand::AddNode {
            node_id, raft_addr, ..
        } => AdminRequest::AddNode {
            id: *node_id,
            raft_addr: raft_addr.to_string(),
        },
        AdminCommand::RemoveNode { node_id, .. } => AdminRequest::RemoveNode { id: *node_id },
    };
    let body = postcard::to_allocvec(&req).expect("postcard encodes an admin request");
    let mut tried = Vec::new();
    for p in &peers {
        let answer = client.call(*p, 0, ADMIN_KIND, &body, CHANGE_TIMEOUT).await;
        let reply = match answer {
            Ok(bytes) => postcard::from_bytes::<AdminReply>(&bytes).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match reply {
            Ok(AdminReply::Status { node, groups }) => print_status(out, node, &groups),
            Ok(AdminReply::Done) => {
                let _ = writeln!(out, "done (by the leader at {p})");
                return Ok(());
            }
            Ok(AdminReply::Failed { partition, why }) => {
                return Err(AdminError::Failed { partition, why })
            }
            Ok(AdminReply::NotLeader { leader }) => {
                tried.push(format!("{p}: not the leader (leader: {leader:?})"))
            }
            Err(e) => {
                if req == AdminRequest::Status {
                    let _ = writeln!(out, "{p}: {e}");
                }
                tried.push(format!("{p}: {e}"));
            }
        }
    }
    if req == AdminRequest::Status {
        return Ok(());
    }
    Err(AdminError::NoLeader(tried.join("; ")))
}

fn print_status(out: &mut impl Write, node: u64, groups: &[replica::AdminGroup]) {
    for g in groups {
        let (log, commit, applied) = g.indices;
        let _ = writeln!(
            out,
            "node {node} partition {}: {} term {} leader {} voters {:?} learners {:?} log {log} commit {commit} applied {applied}",
            g.partition,
            g.role,
            g.term,
            g.leader.map_or("none".to_string(), |l| l.to_string()),
            g.voters,
            g.learners,
        );
    }
}
