//! The process configuration: one TOML file, every key overridable by a
//! `BOURSE_SECTION_KEY` environment variable and by command-line flags, with
//! defaults embedded in the binary (`DEFAULT_TOML`, printed by
//! `bourse config default`).
//!
//! Precedence, lowest first: embedded defaults < the file (`--config`) <
//! environment (`BOURSE_SERVER_LISTEN`, `BOURSE_ENGINE_ORDERS_MAX`, …) <
//! flags (`("server.listen", "…")` pairs, e.g. from `--set server.listen=…`).
//!
//! Invariants: start-up refuses, naming the key and where it came from (file
//! and line, environment variable or flag), any key that is not in the
//! schema, any value of the wrong type and any value that fails validation;
//! nothing is silently ignored or clamped. `DEFAULT_TOML` parses to exactly
//! `BourseConfig::default()` and names every key (tested).

use crate::logging::LogFormat;
use engine::{AccountId, EngineConfig, InstrumentId};
use journal::{Durability, JournalConfig};
use journal::{RetainPolicy, RetentionConfig};
use runtime::PipelineConfig;
use runtime::PARTITION_SHIFT;
use runtime::{IdleStrategy, PartitionMap, RuntimeConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::{Table, Value};

/// Prefix of the environment variables that override keys.
pub const ENV_PREFIX: &str = "BOURSE_";

/// `BOURSE_*` variables that are not configuration keys (the log filter, the
/// config file path) and prefixes of tool-only ones (benchmarks): skipped,
/// never refused.
pub const ENV_RESERVED: &[&str] = &["BOURSE_LOG", "BOURSE_CONFIG", "BOURSE_TOKEN"];
/// Prefixes of `BOURSE_*` variables that belong to tools, not to the server.
pub const ENV_RESERVED_PREFIXES: &[&str] = &["BOURSE_BENCH_"];

/// Most partitions (the partition number takes the top 8 bits of global order ids).
pub const PARTITIONS_MAX: usize = 1 << (64 - PARTITION_SHIFT);

/// The embedded default configuration, one comment per key.
pub const DEFAULT_TOML: &str = r#"# Bourse configuration. Every key is optional in your file: missing keys keep
# these defaults. Every key can also be set by an environment variable
# BOURSE_<SECTION>_<KEY> (e.g. BOURSE_SERVER_LISTEN, BOURSE_ENGINE_ORDERS_MAX)
# and by a flag (--set section.key=value); flags win over the environment,
# which wins over this file. Unknown keys and bad values stop start-up.

[server]
# UDP address the QUIC gateway listens on.
listen = "127.0.0.1:7070"
# Directory of the journals and snapshots (one folder per partition).
data_dir = "bourse-data"
# TCP address of the Prometheus endpoint (/metrics, /health, /ready).
metrics = "127.0.0.1:9187"
# Serve the metrics endpoint at all.
metrics_enabled = true
# Log line format: "text" (human-readable) or "json" (one object per line).
log_format = "text"
# Log filter (tracing EnvFilter directives); the BOURSE_LOG variable replaces it.
log_filter = "info"
# Pin the network runtime to core 0 and busy-poll (lower latency, one core burnt).
busy_poll = false
# Create the demo set on a fresh data directory (instruments BTC-USD, ETH-USD,
# EUR-USD; funded accounts of owners 1, 2, 3; an unbounded issuer account) and
# grant the operator token the demo owners with every permission. For trying
# Bourse out only (`bourse serve --demo`); never in production.
demo = false

[pipeline]
# Partitions: engine cores, each with its own journal (1 to 256).
partitions = 1
# What an acknowledgement guarantees: "durable" (fdatasync before any output),
# "async" (written, not synced: survives a process crash) or "none" (no journal).
durability = "durable"
# Journal segment size in bytes (a multiple of 4096, holding a full commit block
# and a final 4 KiB page that stays zero).
segment_bytes = 67_108_864
# Take a snapshot after this many journal bytes (0: only at shutdown).
snapshot_every_bytes = 268_435_456
# Touch every preallocated table at start-up (no page faults later; resident
# memory is then the configured capacity).
prefault = true
# Move damaged journal data (and snapshots ahead of it) aside into
# p<N>/damaged/ instead of refusing to start (`bourse serve --repair`; as
# `bourse journal repair`). For one start after damage, not to leave on.
repair = false

[journal]
# What happens to journal segments whose every record is at or before the
# oldest kept snapshot (recovery no longer needs them): "archive" (moved into
# p<N>/archive/, where `bourse journal verify/dump` and `bourse replay` still
# read them), "delete", or "keep" (never removed: the journal grows without
# bound). The journal's new start is written to p<N>/journal.base first.
retain = "archive"
# With "archive": once archive/ holds more than this many bytes its oldest
# segments are deleted (0: unbounded). 16 GiB is over two hours of full load
# at 10,000 commands/s (a trading day or more at usual rates) and never fills
# a disk by itself; ship archive/ elsewhere and set 0 to keep everything.
archive_bytes_max = 17_179_869_184

[runtime]
# Inbound ring slots per partition (a full ring answers "busy").
inbound_ring = 65_536
# Output ring slots per partition (one per input, with its events).
output_ring = 65_536
# Journal queue slots per partition (also the largest group commit).
journal_queue = 65_536
# What an idle engine thread does: "spin", "yield" or "park".
idle = "spin"
# Pin each engine thread to its own core (needs partitions + 1 cores; falls
# back to unpinned and parking (sleeps of at most 50 µs) when there are too
# few, and says so).
pin = true

[engine]
# Live orders at once, per partition.
orders_max = 1_048_576
# Price levels per book side.
levels_max = 32_768
# Waiting stop orders per instrument side.
stops_max = 16_384
# Instruments per partition.
instruments_max = 64
# Owners at once (with a live order or an order in the client order id
# window); a record is reused once its owner has neither.
owners_max = 65_536
# Client order id window W: an owner's client order id is a duplicate while
# one of its live orders uses it or one of the partition's last W accepted
# orders did; past that it may be reused. Size W >= peak order rate x
# session.resume_window_ms (2_097_152 covers 3.5 minutes at 10,000 orders/s).
# Memory grows with W + orders_max, never with history. A snapshot restores
# only into a W no larger than the one it was written with.
client_order_ids_max = 2_097_152
# Ledger accounts.
accounts_max = 262_144
# Ledger transfer ids remembered for exactly-once.
transfers_max = 1_048_576
# Events one command may produce.
events_max = 65_536
# Distinct assets.
assets_max = 1_024
# Longest linked chain of transfers.
batch_max = 8_190

[session]
# Send a heartbeat after this many milliseconds without sending anything.
heartbeat_interval_ms = 1_000
# Close a connection after this many milliseconds without hearing from it.
idle_timeout_ms = 5_000
# New orders per second per session (token bucket refill; 0: no throttle).
throttle_per_s = 10_000
# Token bucket size (burst) per session.
throttle_burst = 1_000
# Most live orders placed through one session (was `max_open_orders`).
open_orders_max = 10_000
# Bad frames tolerated on a connection before closing it.
garbage_limit = 16
# Cancel a session's orders when it disconnects, unless its login says otherwise.
cancel_on_disconnect = false
# Most sessions, connected or awaiting resumption (was `max_sessions`); at
# most 8,192 (each may arm cancel-on-disconnect for 8 owners in the engine).
sessions_max = 4_096
# How long a disconnected session can be resumed, in milliseconds.
resume_window_ms = 60_000
# Requests in flight to the engine per session, queued or unanswered (was
# `max_in_flight`).
in_flight_max = 1_024
# Execution reports kept per session for replay after a reconnect.
replay_reports_max = 65_536
# Engine events kept per partition (128 bytes each, allocated at start: 8 MiB
# at the default) to send a session's reports again after a restart or a
# failover lost them (REPLAY_REPORTS); 0: none; at most 16_777_216.
report_window_events = 65_536

[watchdog]
# Alarm when an engine core has work queued but applies nothing for this long (ms).
stall_ms = 1_000
# Alarm when the mean journal commit (write + fdatasync) latency over the last
# second exceeds this (microseconds).
fsync_alarm_us = 20_000

[history]
# Transfer changes per history run file (p<N>/history/run-*.bhr): the engine
# keeps every transfer in memory until a run holding it is installed, so this
# bounds how far memory runs ahead of disk; capped at half of
# engine.transfers_max (0: no on-disk history; the ledger then holds at most
# engine.transfers_max transfers). With [cluster]: 32_768 unless set, at most
# 65_536 (the leader ships each run to the followers in one peer frame).
run_records = 262_144
# Installed runs merged into one file per compaction (on its own thread;
# merged files keep each id's newest record), so a lookup of a new id probes
# O(fanout x log(history)) files instead of one per run; only runs installed
# before the oldest kept snapshot are merged (with [cluster]: runs whose
# install the node's Raft log has purged). 0: no compaction.
compact_fanout = 8
# Bytes of one Bloom filter per partition of every transfer id in its history
# (memory, allocated at start and filled by reading every history file once),
# so a new id costs one cache line instead of a probe per file. 64 MiB holds
# about 50 M ids at ~1 % false positives; past that lookups slow down towards
# the per-file probes, answers stay exact. 0: no filter; else 64 ..= 16 GiB.
filter_bytes = 67_108_864

[feed]
# Market data (bourse-md/1 on the server's endpoint).
# L2 price levels published per side.
depth = 10
# Records kept per (instrument, channel) to answer retransmission requests.
replay = 8_192
# Longest range one retransmission answers; longer gaps get a snapshot.
retransmit_max = 1_024
# Retransmit and snapshot requests per second per subscriber (token bucket
# refill; 0: unlimited). Requests over it are answered "throttled".
requests_per_s = 20
# Request budget size (burst) per subscriber.
requests_burst = 64
# Bytes queued to one subscriber before it is treated as slow (L1/L2
# conflated, anything else reset to a snapshot).
backlog_bytes = 4_194_304
# Age of a subscriber's oldest queued record before it is treated as slow (ms).
backlog_age_ms = 2_000
# Resets of a slow subscriber before it is disconnected ("slow consumer").
resets_max = 3
# Heartbeat per subscription every this many milliseconds (1 to 1000).
heartbeat_ms = 500
# Most subscriber connections at once.
subscribers_max = 1_024

[partitions]
# Partition of everything not assigned below.
default = 0
# Instrument id -> partition, e.g. instruments = { "1" = 0, "2" = 1 }.
instruments = {}
# Account id -> partition, e.g. accounts = { "100" = 1 }.
accounts = {}

[auth]
# Owners the operator token (which `serve` creates in the data directory,
# mode 0600) may act for: at most 8. Ignored with server.demo (demo owners).
operator_owners = []
# Its permissions (trade, transfer, admin, read, ledger_admin). The default
# sets the exchange up (instruments, halts, accounts, tokens) and reads, but
# trades and moves no one's money.
operator_perms = ["admin", "read"]
# Session tokens beside the operator token: each grants at most 8 owners and
# permissions, e.g. tokens = [{ token = "desk-7-secret-4f9a2c", owners = [7],
# perms = ["trade", "read"] }]. A token is 16 to 32 printable ASCII bytes,
# used once; `bourse config check` prints only its length.
tokens = []
# Failed logins from one address within the window before further logins from
# it are refused until the window ends.
login_failures_max = 10
# That window, in milliseconds.
login_failure_window_ms = 60_000

[cluster]
# Replication: every partition a Raft group over the members below (each
# member a `bourse serve` process with its own data directory; all members
# share one TLS identity, operator token and cluster secret; `bourse cluster
# local` sets a loopback cluster up). Without node_id the server runs alone.
# This node's id among the members (1 or more; 0: not replicated).
node_id = 0
# Take the node id from the host name instead: its trailing "-N" plus 1
# (a Kubernetes StatefulSet's pod bourse-0 is node 1, bourse-2 node 3). A host
# name without one stops start-up; exclusive with a non-zero node_id.
# `bourse config check` prints the id it gives.
node_id_from_hostname = false
# Every member, this node included, as "ID=RAFT_ADDR/CLIENT_ADDR": RAFT_ADDR
# is where peers reach it (UDP), CLIENT_ADDR where clients reach it (its
# server.listen), e.g. ["1=10.0.0.1:7171/10.0.0.1:7070", "2=…", "3=…"].
# As a variable or flag: a TOML array or the entries comma-separated
# (BOURSE_CLUSTER_MEMBERS=1=a:1/a:2,2=b:1/b:2).
members = []
# UDP address to listen on for peers ("": this member's RAFT_ADDR, which must
# then be an IP address).
raft_listen = ""
# The cluster secret file, the same secret on every member (made, mode 0600,
# when missing; "": cluster.secret in server.data_dir).
secret_file = ""
# Election timeout range (ms): a follower that hears no leader for a random
# time in it stands for election; the minimum exceeds twice heartbeat_ms.
election_timeout_ms_min = 300
# Upper end of the election timeout range (ms). A leader that no majority
# answered for twice this (its quorum lease) stops serving: its sessions end
# and it refuses logins until a majority answers again.
election_timeout_ms_max = 600
# Leader heartbeat interval (ms).
heartbeat_ms = 100
# Log entries between snapshots of a partition's group.
snapshot_every_entries = 100_000
# Log entries kept in memory behind the newest snapshot: a follower at most
# this far behind catches up from the log, one further behind is sent the
# snapshot (at most 1_000_000).
log_kept_after_snapshot_entries = 1_000
"#;

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BourseConfig {
    /// Addresses, data directory, logging.
    pub server: ServerSection,
    /// Partitions, durability, journal and snapshots.
    pub pipeline: PipelineSection,
    /// Journal retention.
    pub journal: JournalSection,
    /// Rings, idle strategy, pinning.
    pub runtime: RuntimeSection,
    /// Engine capacities (per partition).
    pub engine: EngineSection,
    /// Session limits and timers.
    pub session: SessionSection,
    /// Alarm thresholds.
    pub watchdog: WatchdogSection,
    /// The on-disk transfer history.
    pub history: HistorySection,
    /// Market-data fan-out.
    pub feed: FeedSection,
    /// Instrument and account assignment to partitions.
    pub partitions: PartitionsSection,
    /// Session tokens.
    pub auth: AuthSection,
    /// Replication (node id 0: not replicated).
    pub cluster: ClusterSection,
}

/// `[auth]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Owners of the operator token (outside the demo).
    pub operator_owners: Vec<u64>,
    /// Permissions of the operator token (outside the demo).
    pub operator_perms: Vec<String>,
    /// Tokens granted at start-up.
    pub tokens: Vec<TokenEntry>,
    /// Failed logins per address and window before the address is refused.
    pub login_failures_max: u32,
    /// The failed-login window, milliseconds.
    pub login_failure_window_ms: u64,
}

impl Default for AuthSection {
    /// The server's own defaults.
    fn default() -> Self {
        let server = gateway::server::ServerConfig::new("");
        AuthSection {
            operator_owners: server.operator_owners.iter().map(|o| o.0).collect(),
            operator_perms: perm_names(server.operator_perms),
            tokens: Vec::new(),
            login_failures_max: server.login_failures_max,
            login_failure_window_ms: server.login_failure_window.as_millis() as u64,
        }
    }
}

/// Shortest token (bytes), configured or added by an admin session.
pub use gateway::wire::TOKEN_MIN;
/// Longest token (the wire's token field).
pub const TOKEN_MAX: usize = gateway::wire::TOKEN_LEN;

/// What is wrong with a configured token or grant (the secret is never part
/// of the message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Too short, too long or not printable ASCII.
    #[error("a token is {TOKEN_MIN} to {TOKEN_MAX} printable ASCII bytes (this one: {0} bytes)")]
    Shape(usize),
    /// The same secret twice.
    #[error("the same token as auth.tokens[{0}]")]
    Duplicate(usize),
    /// More owners than a grant carries.
    #[error("{0} owners; a token acts for at most {max}", max = gateway::wire::ADD_TOKEN_OWNERS_MAX)]
    TooManyOwners(usize),
    /// A permission name that does not exist.
    #[error("unknown permission {0:?} (trade, transfer, admin, read, ledger_admin)")]
    UnknownPerm(String),
}

/// Every permission with its name, in the order names are written.
fn perm_table(p: &mut gateway::session::Perms) -> [(&'static str, &mut bool); 5] {
    [
        ("trade", &mut p.trade),
        ("transfer", &mut p.transfer),
        ("admin", &mut p.admin),
        ("read", &mut p.read),
        ("ledger_admin", &mut p.ledger_admin),
    ]
}

/// `Perms` to permission names (the inverse of [`parse_perms`]).
pub fn perm_names(mut p: gateway::session::Perms) -> Vec<String> {
    perm_table(&mut p)
        .into_iter()
        .filter(|(_, on)| **on)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Permission names to `Perms`.
pub fn parse_perms(names: &[String]) -> Result<gateway::session::Perms, TokenError> {
    let mut p = gateway::session::Perms::default();
    for name in names {
        let mut table = perm_table(&mut p);
        match table.iter_mut().find(|(n, _)| *n == name.as_str()) {
            Some((_, on)) => **on = true,
            None => return Err(TokenError::UnknownPerm(name.clone())),
        }
    }
    Ok(p)
}

fn parse_owners(owners: &[u64]) -> Result<Vec<engine::OwnerId>, TokenError> {
    if owners.len() > gateway::wire::ADD_TOKEN_OWNERS_MAX {
        return Err(TokenError::TooManyOwners(owners.len()));
    }
    Ok(owners.iter().map(|&o| engine::OwnerId(o)).collect())
}

/// A secret as it may be shown: its first three characters and its length
/// (`des…(24 chars)`), never more.
pub fn mask_token(token: &str) -> String {
    let head: String = token.chars().take(3).collect();
    format!("{head}…({} chars)", token.chars().count())
}

/// One configured token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The secret (16 to 32 printable ASCII bytes).
    pub token: String,
    /// Owners it may act for (at most 8).
    pub owners: Vec<u64>,
    /// Any of "trade", "transfer", "admin", "read", "ledger_admin".
    pub perms: Vec<String>,
}

/// Masks the secret: `config check` prints the configuration with `{:#?}`.
impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("token", &mask_token(&self.token))
            .field("owners", &self.owners)
            .field("perms", &self.perms)
            .finish()
    }
}

impl TokenEntry {
    /// The grant, or what is wrong with the entry.
    pub fn grant(&self) -> Result<(Vec<engine::OwnerId>, gateway::session::Perms), TokenError> {
        let t = self.token.as_bytes();
        if !(TOKEN_MIN..=TOKEN_MAX).contains(&t.len()) || !t.iter().all(|c| c.is_ascii_graphic()) {
            return Err(TokenError::Shape(t.len()));
        }
        Ok((parse_owners(&self.owners)?, parse_perms(&self.perms)?))
    }
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// QUIC (UDP) listen address.
    pub listen: SocketAddr,
    /// Journals and snapshots.
    pub data_dir: PathBuf,
    /// Metrics endpoint (TCP) address.
    pub metrics: SocketAddr,
    /// Serve the metrics endpoint.
    pub metrics_enabled: bool,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log filter directives.
    pub log_filter: String,
    /// Busy-poll the network runtime.
    pub busy_poll: bool,
    /// Create the demo set on a fresh data directory.
    pub demo: bool,
}

impl Default for ServerSection {
    /// The server's own defaults; the rest (data directory, metrics,
    /// logging) belong to the binary and are written only here.
    fn default() -> Self {
        let server = gateway::server::ServerConfig::new("");
        ServerSection {
            listen: server.listen,
            data_dir: PathBuf::from("bourse-data"),
            metrics: SocketAddr::from(([127, 0, 0, 1], 9187)),
            metrics_enabled: true,
            log_format: LogFormat::Text,
            log_filter: "info".to_string(),
            busy_poll: server.busy_poll,
            demo: server.demo,
        }
    }
}

/// `[pipeline]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Engine partitions.
    pub partitions: usize,
    /// Durability mode.
    #[serde(with = "as_text")]
    pub durability: Durability,
    /// Journal segment size.
    pub segment_bytes: u64,
    /// Automatic snapshot interval in journal bytes (0: never automatically).
    pub snapshot_every_bytes: u64,
    /// Prefault engine tables.
    pub prefault: bool,
    /// Move damaged journal data aside instead of refusing to start.
    pub repair: bool,
}

impl Default for PipelineSection {
    /// The pipeline's and the runtime's own defaults.
    fn default() -> Self {
        let p = PipelineConfig::new("");
        PipelineSection {
            partitions: p.partitions,
            durability: p.durability,
            segment_bytes: p.segment_bytes,
            snapshot_every_bytes: p.runtime.snapshot_every_bytes,
            prefault: p.prefault,
            repair: p.repair,
        }
    }
}

/// `[journal]`: retention (see `journal::retention`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    /// keep, archive or delete.
    #[serde(with = "as_text")]
    pub retain: RetainPolicy,
    /// The archive's bound in bytes (0: unbounded).
    pub archive_bytes_max: u64,
}

impl Default for JournalSection {
    fn default() -> Self {
        let r = RetentionConfig::default();
        JournalSection {
            retain: r.policy,
            archive_bytes_max: r.archive_bytes_max,
        }
    }
}

/// `[runtime]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Inbound ring slots.
    pub inbound_ring: usize,
    /// Output ring slots.
    pub output_ring: usize,
    /// Journal queue slots.
    pub journal_queue: usize,
    /// Idle strategy of engine threads.
    #[serde(with = "as_text")]
    pub idle: IdleStrategy,
    /// Pin engine threads.
    pub pin: bool,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        let r = RuntimeConfig::default();
        RuntimeSection {
            inbound_ring: r.inbound_ring,
            output_ring: r.output_ring,
            journal_queue: r.journal_queue,
            idle: r.idle,
            pin: r.pin,
        }
    }
}

/// `[engine]`: every `EngineConfig` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Live orders at once.
    pub orders_max: u32,
    /// Price levels per book side.
    pub levels_max: u32,
    /// Waiting stop orders per instrument side.
    pub stops_max: u32,
    /// Instruments.
    pub instruments_max: u32,
    /// Owners at once (live orders or an order in the client order id window).
    pub owners_max: u32,
    /// The client order id window W: the last W accepted orders' ids (and
    /// live orders' ids) count as duplicates.
    pub client_order_ids_max: u32,
    /// Ledger accounts.
    pub accounts_max: u32,
    /// Ledger transfer ids remembered.
    pub transfers_max: u32,
    /// Events one command may produce.
    pub events_max: u32,
    /// Distinct assets.
    pub assets_max: u32,
    /// Longest linked transfer chain.
    pub batch_max: u32,
}

impl From<EngineConfig> for EngineSection {
    fn from(e: EngineConfig) -> Self {
        EngineSection {
            orders_max: e.orders_max,
            levels_max: e.levels_max,
            stops_max: e.stops_max,
            instruments_max: e.instruments_max,
            owners_max: e.owners_max,
            client_order_ids_max: e.client_order_ids_max,
            accounts_max: e.accounts_max,
            transfers_max: e.transfers_max,
            events_max: e.events_max,
            assets_max: e.assets_max,
            batch_max: e.batch_max,
        }
    }
}

impl From<EngineSection> for EngineConfig {
    fn from(e: EngineSection) -> Self {
        EngineConfig {
            orders_max: e.orders_max,
            levels_max: e.levels_max,
            stops_max: e.stops_max,
            instruments_max: e.instruments_max,
            owners_max: e.owners_max,
            client_order_ids_max: e.client_order_ids_max,
            accounts_max: e.accounts_max,
            transfers_max: e.transfers_max,
            events_max: e.events_max,
            assets_max: e.assets_max,
            batch_max: e.batch_max,
        }
    }
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineConfig::default().into()
    }
}

/// `[session]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    /// Heartbeat after this long without sending.
    pub heartbeat_interval_ms: u64,
    /// Close after this long without hearing.
    pub idle_timeout_ms: u64,
    /// New orders per second (0: unthrottled).
    pub throttle_per_s: u32,
    /// Token bucket size.
    pub throttle_burst: u32,
    /// Live orders per session.
    #[serde(alias = "max_open_orders")]
    pub open_orders_max: u32,
    /// Bad frames tolerated.
    pub garbage_limit: u32,
    /// Cancel-on-disconnect default.
    pub cancel_on_disconnect: bool,
    /// Most sessions.
    #[serde(alias = "max_sessions")]
    pub sessions_max: usize,
    /// Resumption window.
    pub resume_window_ms: u64,
    /// Requests in flight per session.
    #[serde(alias = "max_in_flight")]
    pub in_flight_max: usize,
    /// Execution reports kept for replay.
    pub replay_reports_max: usize,
    /// Engine events kept per partition for `REPLAY_REPORTS`.
    pub report_window_events: usize,
}

impl Default for SessionSection {
    /// The session's and the server's own defaults.
    fn default() -> Self {
        let s = gateway::session::SessionConfig::default();
        let server = gateway::server::ServerConfig::new("");
        SessionSection {
            heartbeat_interval_ms: s.heartbeat_interval_ns / 1_000_000,
            idle_timeout_ms: s.idle_timeout_ns / 1_000_000,
            throttle_per_s: s.throttle_per_s,
            throttle_burst: s.throttle_burst,
            open_orders_max: s.max_open_orders,
            garbage_limit: s.garbage_limit,
            cancel_on_disconnect: s.cancel_on_disconnect_default,
            sessions_max: server.max_sessions,
            resume_window_ms: server.resume_window.as_millis() as u64,
            in_flight_max: s.max_in_flight,
            replay_reports_max: s.replay_reports_max,
            report_window_events: server.report_window_events,
        }
    }
}

impl SessionSection {
    /// Heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
    /// Idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    /// Resumption window.
    pub fn resume_window(&self) -> Duration {
        Duration::from_millis(self.resume_window_ms)
    }
}

/// `[watchdog]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogSection {
    /// Engine stall bound, milliseconds.
    pub stall_ms: u64,
    /// Mean commit latency bound, microseconds.
    pub fsync_alarm_us: u64,
}

impl Default for WatchdogSection {
    /// The watchdog's own defaults.
    fn default() -> Self {
        let w = crate::watchdog::WatchdogConfig::default();
        WatchdogSection {
            stall_ms: w.stall.as_millis() as u64,
            fsync_alarm_us: w.fsync_alarm_us,
        }
    }
}

/// `[history]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySection {
    /// Transfer changes per run (0: no on-disk history).
    pub run_records: usize,
    /// Runs merged per compaction (0: none; else at least 2).
    pub compact_fanout: usize,
    /// Bytes of the per-partition id filter (0: none).
    pub filter_bytes: u64,
}

/// Largest `[session] report_window_events` (per partition, 2 GiB).
pub const REPORT_WINDOW_EVENTS_MAX: usize = 1 << 24;

/// Largest `[history] filter_bytes` (16 GiB: ~12 G ids at ~1 %).
pub const HISTORY_FILTER_BYTES_MAX: u64 = 1 << 34;

/// Most transfer changes one history run may hold (a run is built in memory).
pub const HISTORY_RUN_RECORDS_MAX: usize = 1 << 24;
/// `[history] run_records` of a replicated node unless set (a run of it is
/// about 8 MB on the wire).
pub const CLUSTER_HISTORY_RUN_RECORDS: usize = 1 << 15;
/// The largest `[history] run_records` of a replicated node: a leader that
/// fell behind cuts up to twice it (about 34 MB, within the 64 MiB peer
/// frame).
pub const CLUSTER_HISTORY_RUN_RECORDS_MAX: usize = 1 << 16;

impl Default for HistorySection {
    fn default() -> Self {
        HistorySection {
            run_records: runtime::DEFAULT_HISTORY_RUN_RECORDS,
            compact_fanout: journal::history::DEFAULT_COMPACT_FANOUT,
            filter_bytes: runtime::DEFAULT_HISTORY_FILTER_BYTES,
        }
    }
}

/// `[feed]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSection {
    /// L2 levels per side.
    pub depth: usize,
    /// Replay ring length per (instrument, channel).
    pub replay: usize,
    /// Longest retransmission answered from the ring.
    pub retransmit_max: u64,
    /// Requests per second per subscriber (0: unlimited).
    pub requests_per_s: u32,
    /// Request budget size.
    pub requests_burst: u32,
    /// Slow-subscriber bound, bytes.
    pub backlog_bytes: usize,
    /// Slow-subscriber bound, milliseconds.
    pub backlog_age_ms: u64,
    /// Resets before a disconnect.
    pub resets_max: u32,
    /// Heartbeat interval, milliseconds.
    pub heartbeat_ms: u64,
    /// Most subscribers.
    pub subscribers_max: usize,
}

impl Default for FeedSection {
    fn default() -> Self {
        let m = feeds::MdConfig::default();
        FeedSection {
            depth: m.feed.depth,
            replay: m.replay,
            retransmit_max: m.retransmit_max,
            requests_per_s: m.requests_per_s,
            requests_burst: m.requests_burst,
            backlog_bytes: m.backlog_bytes,
            backlog_age_ms: m.backlog_age.as_millis() as u64,
            resets_max: m.max_resets,
            heartbeat_ms: m.heartbeat.as_millis() as u64,
            subscribers_max: m.max_subscribers,
        }
    }
}

/// `[partitions]`: ids are strings (TOML keys), checked at validation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionsSection {
    /// Partition of unassigned instruments and accounts.
    pub default: usize,
    /// Instrument id → partition.
    pub instruments: BTreeMap<String, usize>,
    /// Account id → partition.
    pub accounts: BTreeMap<String, usize>,
}

/// `[cluster]`: addresses stay text here (checked at validation, see
/// [`parse_member`]); `node_id = 0` means not replicated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// This node (0: not replicated).
    pub node_id: u64,
    /// Take `node_id` from the host name's trailing `-N` (plus 1).
    pub node_id_from_hostname: bool,
    /// `ID=RAFT_ADDR/CLIENT_ADDR` per member.
    pub members: Vec<String>,
    /// Peer listen address ("": this member's raft address).
    pub raft_listen: String,
    /// Cluster secret file ("": `cluster.secret` in the data directory).
    pub secret_file: PathBuf,
    /// Election timeout range, lower end (ms).
    pub election_timeout_ms_min: u64,
    /// Election timeout range, upper end (ms).
    pub election_timeout_ms_max: u64,
    /// Leader heartbeat interval (ms).
    pub heartbeat_ms: u64,
    /// Log entries between snapshots.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind the newest snapshot.
    pub log_kept_after_snapshot_entries: u64,
}

impl Default for ClusterSection {
    /// The replica's own defaults, not replicated.
    fn default() -> Self {
        let c = replica::ClusterConfig::new(0, Vec::new());
        ClusterSection {
            node_id: 0,
            node_id_from_hostname: false,
            members: Vec::new(),
            raft_listen: String::new(),
            secret_file: PathBuf::new(),
            election_timeout_ms_min: c.election_timeout_ms_min,
            election_timeout_ms_max: c.election_timeout_ms_max,
            heartbeat_ms: c.heartbeat_ms,
            snapshot_every_entries: c.snapshot_every_entries,
            log_kept_after_snapshot_entries: c.log_kept_after_snapshot_entries,
        }
    }
}

/// The cluster secret's file name in the data directory (`[cluster]
/// secret_file` unset).
pub const CLUSTER_SECRET_FILE: &str = "cluster.secret";

/// Most log entries kept behind a snapshot (`[cluster]
/// log_kept_after_snapshot_entries`): each may hold a batch of commands in
/// memory.
pub const CLUSTER_LOG_KEPT_MAX: u64 = 1_000_000;

/// Most members of a cluster (a majority of 7 is 4: more only slows commits).
pub const CLUSTER_MEMBERS_MAX: usize = 7;

/// Why a `[cluster] members` entry is not `ID=RAFT_ADDR/CLIENT_ADDR`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    /// No `=` or no `/`.
    #[error("{0:?} is not ID=RAFT_ADDR/CLIENT_ADDR (e.g. \"1=127.0.0.1:7171/127.0.0.1:7070\")")]
    Shape(String),
    /// The id is not a number of 1 or more.
    #[error("member id {0:?} is not a number of 1 or more")]
    Id(String),
    /// An address is not `HOST:PORT` with a port of 1 or more.
    #[error("{0:?} is not HOST:PORT (port 1 or more)")]
    Addr(String),
}

/// Parses one `[cluster] members` entry, `ID=RAFT_ADDR/CLIENT_ADDR`.
pub fn parse_member(entry: &str) -> Result<replica::Member, MemberError> {
    let shape = || MemberError::Shape(entry.to_string());
    let (id, addrs) = entry.trim().split_once('=').ok_or_else(shape)?;
    let (raft, client) = addrs.split_once('/').ok_or_else(shape)?;
    let id = match id.trim().parse::<u64>() {
        Ok(n) if n >= 1 => n,
        _ => return Err(MemberError::Id(id.trim().to_string())),
    };
    let addr = |a: &str| {
        let a = a.trim();
        match a.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(a.to_string())
            }
            _ => Err(MemberError::Addr(a.to_string())),
        }
    };
    Ok(replica::Member {
        id,
        raft_addr: addr(raft)?,
        client_addr: addr(client)?,
    })
}

/// The node id a host name gives (`cluster.node_id_from_hostname`): its
/// trailing `-N` plus 1, so a StatefulSet's pods `NAME-0`, `NAME-1`, … are
/// nodes 1, 2, … (ids are never 0). `None` when it has no such suffix.
pub fn node_id_of_host(host: &str) -> Option<u64> {
    let (_, n) = host.rsplit_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse::<u64>().ok()?.checked_add(1)
}

/// This machine's host name (in a Kubernetes pod: the pod's name).
pub fn system_host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The `[cluster]` keys given a value other than their default (they do
/// nothing without a node id).
fn cluster_unset_keys(c: &ClusterSection) -> Vec<&'static str> {
    let d = ClusterSection::default();
    [
        ("cluster.members", c.members != d.members),
        ("cluster.raft_listen", c.raft_listen != d.raft_listen),
        ("cluster.secret_file", c.secret_file != d.secret_file),
        (
            "cluster.election_timeout_ms_min",
            c.election_timeout_ms_min != d.election_timeout_ms_min,
        ),
        (
            "cluster.election_timeout_ms_max",
            c.election_timeout_ms_max != d.election_timeout_ms_max,
        ),
        ("cluster.heartbeat_ms", c.heartbeat_ms != d.heartbeat_ms),
        (
            "cluster.snapshot_every_entries",
            c.snapshot_every_entries != d.snapshot_every_entries,
        ),
        (
            "cluster.log_kept_after_snapshot_entries",
            c.log_kept_after_snapshot_entries != d.log_kept_after_snapshot_entries,
        ),
    ]
    .into_iter()
    .filter(|(_, differs)| *differs)
    .map(|(k, _)| k)
    .collect()
}

/// (De)serializes a value through its `Display` / `FromStr` (durability, idle).
mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a key's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The embedded default.
    Default,
    /// The configuration file, at a line (1-based; 0 when unknown).
    File {
        /// The file.
        path: PathBuf,
        /// Line of the key.
        line: usize,
    },
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line: 0 } => write!(f, "in {}", path.display()),
            Origin::File { path, line } => write!(f, "in {} line {line}", path.display()),
            Origin::Env(v) => write!(f, "from environment variable {v}"),
            Origin::Flag => f.write_str("from the command line"),
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("configuration file {} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key that is not in the schema.
    #[error(
        "unknown configuration key `{key}` ({origin}); `bourse config default` lists every key"
    )]
    UnknownKey {
        /// Dotted key.
        key: String,
        /// Where it was given.
        origin: Origin,
    },
    /// A value of the wrong type or out of range.
    #[error("bad value for configuration key `{key}` ({origin}): {message}")]
    BadValue {
        /// Dotted key.
        key: String,
        /// Where it was given.
        origin: Origin,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The dotted key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::BadValue { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// The configuration flags of `bourse serve` (flatten into its clap args):
/// `--config FILE`, `--set section.key=value` (repeatable) and shorthands for
/// the commonest keys. Flags given become overrides on top of the file and
/// the environment; flags not given change nothing.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML; `bourse config default` prints every key;
    /// default: $BOURSE_CONFIG when set).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set any key: `--set engine.orders_max=100000` (repeatable; wins over
    /// the file and BOURSE_* variables).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, String)>,
    /// UDP address for QUIC (server.listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory (server.data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Metrics endpoint address (server.metrics).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Do not serve metrics (server.metrics_enabled = false).
    #[arg(long)]
    pub no_metrics: bool,
    /// Log format: text or json (server.log_format).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Partitions (pipeline.partitions).
    #[arg(long)]
    pub partitions: Option<String>,
    /// durable, async or none (pipeline.durability).
    #[arg(long)]
    pub durability: Option<String>,
    /// Engine idle strategy: spin, yield or park (runtime.idle).
    #[arg(long)]
    pub idle: Option<String>,
    /// Do not pin engine threads (runtime.pin = false).
    #[arg(long)]
    pub no_pin: bool,
    /// Busy-poll the network runtime (server.busy_poll = true).
    #[arg(long)]
    pub busy_poll: bool,
    /// Create the demo set and grant the operator token the demo owners
    /// (server.demo = true); for trying Bourse out, never in production.
    #[arg(long)]
    pub demo: bool,
    /// Move damaged journal data aside into p<N>/damaged/ instead of
    /// refusing to start (pipeline.repair = true).
    #[arg(long)]
    pub repair: bool,
}

impl ConfigArgs {
    /// The flags given, as dotted-key overrides (shorthands first, `--set` last).
    pub fn overrides(&self) -> Vec<(String, String)> {
        let mut o: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: &str| o.push((k.to_string(), v.to_string()));
        for (k, v) in [
            ("server.listen", &self.listen),
            ("server.data_dir", &self.data_dir),
            ("server.metrics", &self.metrics),
            ("server.log_format", &self.log_format),
            ("pipeline.partitions", &self.partitions),
            ("pipeline.durability", &self.durability),
            ("runtime.idle", &self.idle),
        ] {
            if let Some(v) = v {
                put(k, v);
            }
        }
        for (k, on, v) in [
            ("server.metrics_enabled", self.no_metrics, "false"),
            ("runtime.pin", self.no_pin, "false"),
            ("server.busy_poll", self.busy_poll, "true"),
            ("server.demo", self.demo, "true"),
            ("pipeline.repair", self.repair, "true"),
        ] {
            if on {
                put(k, v);
            }
        }
        o.extend(self.set.iter().cloned());
        o
    }

    /// The configuration file: `--config`, else `$BOURSE_CONFIG`, else none.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.config
            .clone()
            .or_else(|| std::env::var_os("BOURSE_CONFIG").map(PathBuf::from))
    }

    /// Loads defaults < the file < `BOURSE_*` environment < these flags.
    pub fn load(&self) -> Result<BourseConfig, ConfigError> {
        BourseConfig::load_from_process(self.config_path().as_deref(), &self.overrides())
    }
}

/// A `--set` argument that is not `section.key=value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected section.key=value, got {0:?}")]
pub struct SetSyntaxError(pub String);

/// Parses a `--set section.key=value` argument.
pub fn parse_set(s: &str) -> Result<(String, String), SetSyntaxError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(SetSyntaxError(s.to_string())),
    }
}

/// Why a key's text (environment or flag) is not a value of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ValueError {
    #[error("expected an integer, got {0:?}")]
    Integer(String),
    #[error("expected true or false, got {0:?}")]
    Boolean(String),
    #[error("expected a TOML {expected}: {message}")]
    Toml {
        expected: &'static str,
        message: String,
    },
    #[error("expected a {expected}, got a {got}")]
    Type {
        expected: &'static str,
        got: &'static str,
    },
}

fn type_name(v: &Value) -> &'static str {
    v.type_str()
}

fn same_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Builds the value of a schema leaf from text (environment or flag).
fn value_from_text(schema: &Value, raw: &str) -> Result<Value, ValueError> {
    match schema {
        Value::String(_) => Ok(Value::String(raw.to_string())),
        Value::Integer(_) => raw
            .trim()
            .replace('_', "")
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| ValueError::Integer(raw.to_string())),
        Value::Boolean(_) => match raw.trim() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(ValueError::Boolean(raw.to_string())),
        },
        // An array as comma-separated items (`a,b,c`), each a TOML value
        // when it parses as one (`1`, `"x"`), else a string (`1=h:1/h:2`).
        Value::Array(_) if !raw.trim_start().starts_with('[') => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| {
                    format!("v = {item}")
                        .parse::<Table>()
                        .ok()
                        .and_then(|t| t.get("v").cloned())
                        .filter(|v| !v.is_table())
                        .unwrap_or_else(|| Value::String(item.to_string()))
                })
                .collect(),
        )),
        _ => {
            let doc = format!("v = {raw}");
            let t: Table = doc.parse().map_err(|e: toml::de::Error| ValueError::Toml {
                expected: type_name(schema),
                message: e.message().to_string(),
            })?;
            let v = t.get("v").cloned().unwrap_or(Value::Boolean(false));
            if same_type(schema, &v) {
                Ok(v)
            } else {
                Err(ValueError::Type {
                    expected: type_name(schema),
                    got: type_name(&v),
                })
            }
        }
    }
}

/// Line (1-based) of every key of a TOML text, by dotted path.
fn key_lines(text: &str) -> BTreeMap<String, usize> {
    fn walk(
        text: &str,
        t: &toml::de::DeTable<'_>,
        prefix: &str,
        out: &mut BTreeMap<String, usize>,
    ) {
        for (k, v) in t.iter() {
            let path = if prefix.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{prefix}.{}", k.get_ref())
            };
            let start = k.span().start.min(text.len());
            let line = text[..start].bytes().filter(|&b| b == b'\n').count() + 1;
            out.insert(path.clone(), line);
            if let toml::de::DeValue::Table(sub) = v.get_ref() {
                walk(text, sub, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(doc) = toml::de::DeTable::parse(text) {
        walk(text, doc.get_ref(), "", &mut out);
    }
    out
}

/// The origin of a key: its own, or that of the open map it sits in.
fn origin_of(origins: &BTreeMap<String, Origin>, key: &str) -> Origin {
    // `auth.tokens[2]` came with `auth.tokens`.
    let mut k = key.split('[').next().unwrap_or(key);
    loop {
        if let Some(o) = origins.get(k) {
            return o.clone();
        }
        match k.rsplit_once('.') {
            Some((parent, _)) => k = parent,
            None => return Origin::Default,
        }
    }
}

/// Keys renamed (old, current): a file, variable or flag may still name
/// the old key; it sets the current one. Qualifiers go last (`sessions_max`).
pub const KEY_ALIASES: &[(&str, &str)] = &[
    ("session.max_open_orders", "session.open_orders_max"),
    ("session.max_sessions", "session.sessions_max"),
    ("session.max_in_flight", "session.in_flight_max"),
];

/// The current name of a dotted key (itself unless renamed).
pub fn current_key(dotted: &str) -> &str {
    KEY_ALIASES
        .iter()
        .find(|(old, _)| *old == dotted)
        .map_or(dotted, |(_, new)| new)
}

/// The merge of override layers over the defaults, keeping each key's origin.
struct Layers {
    schema: Table,
    merged: Table,
    origins: BTreeMap<String, Origin>,
}

impl Layers {
    fn new() -> Self {
        let schema = Table::try_from(BourseConfig::default()).expect("default config serializes");
        Layers {
            merged: schema.clone(),
            schema,
            origins: BTreeMap::new(),
        }
    }

    /// The schema value at a dotted path (`None`: no such key).
    fn schema_at(&self, path: &[&str]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut v = self.schema.get(*first)?;
        for p in rest {
            v = v.as_table()?.get(*p)?;
        }
        Some(v)
    }

    /// Sets one leaf (or a whole open map) at a dotted path.
    fn set(&mut self, path: &[&str], v: Value, origin: Origin) {
        let (last, parents) = path.split_last().expect("non-empty path");
        let mut t = &mut self.merged;
        for p in parents {
            t = t
                .entry(p.to_string())
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .expect("schema table");
        }
        t.insert(last.to_string(), v);
        self.origins.insert(path.join("."), origin);
    }

    /// Merges a parsed file, key by key, checking keys and types.
    fn merge_file(
        &mut self,
        file: &Table,
        path: &Path,
        lines: &BTreeMap<String, usize>,
    ) -> Result<(), ConfigError> {
        let mut leaves = Vec::new();
        collect(file, &mut Vec::new(), &mut leaves, &self.schema)?;
        for (keys, v) in leaves {
            let written = keys.join(".");
            let origin = Origin::File {
                path: path.to_path_buf(),
                line: lines.get(&written).copied().unwrap_or(0),
            };
            let dotted = current_key(&written);
            let refs: Vec<&str> = dotted.split('.').collect();
            self.check_and_set(&refs, v, origin, dotted)?;
        }
        return Ok(());

        /// Leaves of `t`, descending only into tables the schema has as
        /// closed sections (open maps are taken whole).
        fn collect(
            t: &Table,
            prefix: &mut Vec<String>,
            out: &mut Vec<(Vec<String>, Value)>,
            schema: &Table,
        ) -> Result<(), ConfigError> {
            for (k, v) in t {
                prefix.push(k.clone());
                let mut s: Option<&Value> = None;
                for (i, p) in prefix.iter().enumerate() {
                    s = if i == 0 {
                        schema.get(p)
                    } else {
                        s.and_then(|x| x.as_table()).and_then(|x| x.get(p))
                    };
                }
                match (s, v) {
                    (Some(Value::Table(st)), Value::Table(sub)) if !st.is_empty() => {
                        collect(sub, prefix, out, schema)?
                    }
                    _ => out.push((prefix.clone(), v.clone())),
                }
                prefix.pop();
            }
            Ok(())
        }
    }

    /// Checks a key exists and its value has the schema's type, then sets it.
    fn check_and_set(
        &mut self,
        path: &[&str],
        v: Value,
        origin: Origin,
        dotted: &str,
    ) -> Result<(), ConfigError> {
        let schema = match self.schema_at(path) {
            Some(s) => s,
            None => {
                return Err(ConfigError::UnknownKey {
                    key: dotted.to_string(),
                    origin,
                })
            }
        };
        if matches!(schema, Value::Table(t) if !t.is_empty()) {
            return Err(ConfigError::BadValue {
                key: dotted.to_string(),
                origin,
                message: format!("`{dotted}` is a section, not a value"),
            });
        }
        if !same_type(schema, &v) {
            return Err(ConfigError::BadValue {
                key: dotted.to_string(),
                origin,
                message: format!("expected a {}, got a {}", type_name(schema), type_name(&v)),
            });
        }
        self.set(path, v, origin);
        Ok(())
    }

    /// Applies one textual override (environment or flag) to a dotted key.
    fn set_text(&mut self, dotted: &str, raw: &str, origin: Origin) -> Result<(), ConfigError> {
        let dotted = current_key(dotted);
        let path: Vec<&str> = dotted.split('.').collect();
        let schema = match self.schema_at(&path) {
            Some(s) if !matches!(s, Value::Table(t) if !t.is_empty()) => s,
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: dotted.to_string(),
                    origin,
                })
            }
        };
        let v = value_from_text(schema, raw).map_err(|e| ConfigError::BadValue {
            key: dotted.to_string(),
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        self.check_and_set(&path, v, origin, dotted)
    }

    /// Deserializes the merged table; on failure, finds the key at fault by
    /// trying each overridden key alone over the defaults.
    fn finish(self) -> Result<(BourseConfig, BTreeMap<String, Origin>), ConfigError> {
        match self.merged.clone().try_into::<BourseConfig>() {
            Ok(c) => Ok((c, self.origins)),
            Err(whole) => {
                for key in self.origins.keys() {
                    let path: Vec<&str> = key.split('.').collect();
                    let mut probe = Layers::new();
                    let mut v = Some(&self.merged);
                    let mut leaf = None;
                    for (i, p) in path.iter().enumerate() {
                        let x = v.and_then(|t| t.get(*p));
                        if i + 1 == path.len() {
                            leaf = x.cloned();
                        }
                        v = x.and_then(|x| x.as_table());
                    }
                    let Some(leaf) = leaf else { continue };
                    probe.set(&path, leaf, Origin::Default);
                    if let Err(e) = probe.merged.try_into::<BourseConfig>() {
                        return Err(ConfigError::BadValue {
                            key: key.clone(),
                            origin: self.origins[key].clone(),
                            message: e.message().to_string(),
                        });
                    }
                }
                Err(ConfigError::BadValue {
                    key: String::new(),
                    origin: Origin::Default,
                    message: whole.message().to_string(),
                })
            }
        }
    }
}

/// Memory the machine lets this process have, as far as it can tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineMemory {
    /// Physical memory (`MemTotal`), bytes.
    pub physical: Option<u64>,
    /// The address-space limit (`RLIMIT_AS`), bytes; `None` when unlimited.
    pub address_space: Option<u64>,
}

impl MachineMemory {
    /// The tighter bound and its name.
    fn smallest(&self) -> Option<(u64, &'static str)> {
        match (self.physical, self.address_space) {
            (Some(p), Some(a)) if a < p => Some((a, "the address-space limit (RLIMIT_AS)")),
            (Some(p), _) => Some((p, "physical memory")),
            (None, Some(a)) => Some((a, "the address-space limit (RLIMIT_AS)")),
            (None, None) => None,
        }
    }
}

/// Reads `/proc/meminfo` and `/proc/self/limits` (nothing elsewhere).
pub fn machine_memory() -> MachineMemory {
    let physical = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        let l = t.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kb: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    });
    let address_space = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            let l = t.lines().find(|l| l.starts_with("Max address space"))?;
            // "Max address space  <soft>  <hard>  bytes": the soft limit binds.
            l["Max address space".len()..]
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
    MachineMemory {
        physical,
        address_space,
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Whether a dotted name is a configuration key (a value, not a section).
pub fn is_config_key(dotted: &str) -> bool {
    let layers = Layers::new();
    let path: Vec<&str> = dotted.split('.').collect();
    matches!(layers.schema_at(&path), Some(v) if !matches!(v, Value::Table(t) if !t.is_empty()))
}

/// The dotted key an environment variable names (`BOURSE_ENGINE_ORDERS_MAX`
/// → `engine.orders_max`); `None` for variables that are not ours.
pub fn env_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix(ENV_PREFIX)?;
    if ENV_RESERVED.contains(&var) || ENV_RESERVED_PREFIXES.iter().any(|p| var.starts_with(p)) {
        return None;
    }
    let lower = rest.to_ascii_lowercase();
    Some(match lower.split_once('_') {
        Some((section, key)) => format!("{section}.{key}"),
        None => lower,
    })
}

impl BourseConfig {
    /// Loads defaults < `path` < `BOURSE_*` variables of `env` < `overrides`
    /// (dotted keys), then validates. Errors name the key and its origin.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(String, String)],
    ) -> Result<BourseConfig, ConfigError> {
        let mut layers = Layers::new();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let file: Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            layers.merge_file(&file, path, &key_lines(&text))?;
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (var, raw) in env {
            let Some(key) = env_key(&var) else { continue };
            layers.set_text(&key, &raw, Origin::Env(var.clone()))?;
        }
        for (key, raw) in overrides {
            layers.set_text(key, raw, Origin::Flag)?;
        }
        Self::settle(layers, &system_host_name)
    }

    /// The merged layers as the configuration that runs: the node id from
    /// the host name when asked (`host`), validated, cluster defaults turned.
    fn settle(layers: Layers, host: &dyn Fn() -> String) -> Result<BourseConfig, ConfigError> {
        let (mut cfg, origins) = layers.finish()?;
        let derived = cfg.cluster.node_id_from_hostname;
        cfg.settle_node_id(&|k| origin_of(&origins, k), host)?;
        // A derived node id came from where the flag was set.
        cfg.validate_with(&|k| match k {
            "cluster.node_id" if derived => origin_of(&origins, "cluster.node_id_from_hostname"),
            _ => origin_of(&origins, k),
        })?;
        cfg.settle_cluster();
        Ok(cfg)
    }

    /// Loads from the process environment (`std::env::vars`).
    pub fn load_from_process(
        path: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<BourseConfig, ConfigError> {
        Self::load(path, std::env::vars(), overrides)
    }

    /// Parses a whole TOML document (no environment, no flags) and validates it.
    pub fn from_toml(text: &str) -> Result<BourseConfig, ConfigError> {
        let mut layers = Layers::new();
        let path = PathBuf::from("<text>");
        let file: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: path.clone(),
                message: e.to_string(),
            })?;
        layers.merge_file(&file, &path, &key_lines(text))?;
        Self::settle(layers, &system_host_name)
    }

    /// The effective configuration as TOML (no comments).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serializes")
    }

    /// Checks values against each other and their ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_with(&|_| Origin::Default)
    }

    fn validate_with(&self, origin: &dyn Fn(&str) -> Origin) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::BadValue {
            key: key.to_string(),
            origin: origin(key),
            message,
        };
        let p = &self.pipeline;
        if p.partitions == 0 || p.partitions > PARTITIONS_MAX {
            return Err(bad(
                "pipeline.partitions",
                format!("{} is out of range 1..={PARTITIONS_MAX}", p.partitions),
            ));
        }
        if p.durability != Durability::None {
            let j = JournalConfig {
                segment_bytes: p.segment_bytes,
                durability: p.durability,
                ..JournalConfig::default()
            };
            if let Err(e) = j.validate() {
                return Err(bad("pipeline.segment_bytes", e.to_string()));
            }
        }
        for step in [
            Self::validate_journal,
            Self::validate_auth,
            Self::validate_capacities,
            Self::validate_session,
            Self::validate_history_and_watchdog,
            Self::validate_feed,
            Self::validate_server,
            Self::validate_placement,
            Self::validate_cluster,
        ] {
            step(self, &bad)?;
        }
        self.validate_cluster_history(&bad, origin)?;
        self.validate_memory(&bad, &machine_memory())
    }

    /// `[runtime]` ring sizes and `[engine]` capacities: at least 1 each.
    fn validate_capacities(
        &self,
        bad: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let r = &self.runtime;
        for (k, v) in [
            ("runtime.inbound_ring", r.inbound_ring),
            ("runtime.output_ring", r.output_ring),
            ("runtime.journal_queue", r.journal_queue),
        ] {
            if v == 0 {
                return Err(bad(k, "must be at least 1".to_string()));
            }
        }
        let e = &self.engine;
        for (k, v) in [
            ("engine.orders_max", e.orders_max),
            ("engine.levels_max", e.levels_max),
            ("engine.stops_max", e.stops_max),
            ("engine.instruments_max", e.instruments_max),
            ("engine.owners_max", e.owners_max),
            ("engine.client_order_ids_max", e.client_order_ids_max),
            ("engine.accounts_max", e.accounts_max),
            ("engine.transfers_max", e.transfers_max),
            ("engine.events_max", e.events_max),
            ("engine.assets_max", e.assets_max),
            ("engine.batch_max", e.batch_max),
        ] {
            if v == 0 {
                return Err(bad(k, "must be at least 1".to_string()));
            }
        }
        Ok(())
    }

    /// `[session]`: throttle burst, heartbeat below the idle timeout, limits of at least 1.
    fn validate_session(
        &self,
        bad: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let s = &self.session;
        if s.throttle_per_s > 0 && s.throttle_burst == 0 {
            return Err(bad(
                "session.throttle_burst",
                "must be at least 1 when session.throttle_per_s is set".to_string(),
            ));
        }
        if s.heartbeat_interval_ms == 0 {
            return Err(bad(
                "session.heartbeat_interval_ms",
                "must be at least 1".to_string(),
            ));
        }
        if s.idle_timeout_ms <= s.heartbeat_interval_ms {
            return Err(bad(
                "session.idle_timeout_ms",
                format!(
                    "{} must exceed session.heartbeat_interval_ms ({})",
                    s.idle_timeout_ms, s.heartbeat_interval_ms
                ),
            ));
        }
        if s.in_flight_max == 0 {
            return Err(bad(
                "session.in_flight_max",
                "must be at least 1".to_string(),
            ));
        }
        if s.sessions_max == 0 {
            return Err(bad(
                "session.sessions_max",
                "must be at least 1".to_string(),
            ));
        }
        if s.report_window_events > REPORT_WINDOW_EVENTS_MAX {
            return Err(bad(
                "session.report_window_events",
                format!(
                    "{} is over {REPORT_WINDOW_EVENTS_MAX} (memory is allocated at start)",
                    s.report_window_events
                ),
            ));
        }
        // Every session may arm cancel-on-disconnect for each of its
        // token's owners in every partition's engine.
        let sessions_cod_max = engine::COD_ARMS_MAX / gateway::wire::ADD_TOKEN_OWNERS_MAX;
        if s.sessions_max > sessions_cod_max {
            return Err(bad(
                "session.sessions_max",
                format!(
                    "at most {sessions_cod_max}: each session may arm cancel-on-disconnect for \
                     {} owners in an engine table of {} arms",
                    gateway::wire::ADD_TOKEN_OWNERS_MAX,
                    engine::COD_ARMS_MAX
                ),
            ));
        }
        Ok(())
    }

    /// `[history]` run size, fan-out and filter size; `[watchdog]` bounds of at least 1.
    fn validate_history_and_watchdog(
        &self,
        bad: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.history.run_records > HISTORY_RUN_RECORDS_MAX {
            return Err(bad(
                "history.run_records",
                format!(
                    "{} is above {HISTORY_RUN_RECORDS_MAX}",
                    self.history.run_records
                ),
            ));
        }
        if self.history.compact_fanout == 1 || self.history.compact_fanout > 1024 {
            return Err(bad(
                "history.compact_fanout",
                format!("{} is not 0 or 2 ..= 1024", self.history.compact_fanout),
            ));
        }
        let fb = self.history.filter_bytes;
        if fb != 0 && !(64..=HISTORY_FILTER_BYTES_MAX).contains(&fb) {
            return Err(bad(
                "history.filter_bytes",
                format!("{fb} is not 0 or 64 ..= {HISTORY_FILTER_BYTES_MAX}"),
            ));
        }
        if self.watchdog.stall_ms == 0 {
            return Err(bad("watchdog.stall_ms", "must be at least 1".to_string()));
        }
        if self.watchdog.fsync_alarm_us == 0 {
            return Err(bad(
                "watchdog.fsync_alarm_us",
                "must be at least 1".to_string(),
            ));
        }
        Ok(())
    }

    /// `[feed]`: sizes of at least 1, a request burst with a request rate, a heartbeat within a second.
    fn validate_feed(&self, bad: &dyn Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
        let f = &self.feed;
        for (k, v) in [
            ("feed.depth", f.depth as u64),
            ("feed.replay", f.replay as u64),
            ("feed.retransmit_max", f.retransmit_max),
            ("feed.backlog_bytes", f.backlog_bytes as u64),
            ("feed.backlog_age_ms", f.backlog_age_ms),
            ("feed.subscribers_max", f.subscribers_max as u64),
        ] {
            if v == 0 {
                return Err(bad(k, "must be at least 1".to_string()));
            }
        }
        if f.requests_per_s > 0 && f.requests_burst == 0 {
            return Err(bad(
                "feed.requests_burst",
                "must be at least 1 when feed.requests_per_s is set".to_string(),
            ));
        }
        if !(1..=1_000).contains(&f.heartbeat_ms) {
            return Err(bad(
                "feed.heartbeat_ms",
                format!(
                    "{} is out of range 1..=1000 (a loss must show within a second)",
                    f.heartbeat_ms
                ),
            ));
        }
        Ok(())
    }

    /// `[server]`: a log filter that parses, a data directory.
    fn validate_server(
        &self,
        bad: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.server.log_filter).is_err() {
            return Err(bad(
                "server.log_filter",
                format!("{:?} is not a valid filter", self.server.log_filter),
            ));
        }
        if self.server.data_dir.as_os_str().is_empty() {
            return Err(bad("server.data_dir", "must not be empty".to_string()));
        }
        Ok(())
    }

    /// `[partitions]`: every placement names an id that parses and a partition that exists.
    fn validate_placement(
        &self,
        bad: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let parts = self.pipeline.partitions;
        let m = &self.partitions;
        if m.default >= parts {
            return Err(bad(
                "partitions.default",
                format!(
                    "partition {} does not exist (partitions = {parts})",
                    m.default
                ),
            ));
        }
        for (id, &part) in &m.instruments {
            let key = format!("partitions.instruments.{id}");
            if id.parse::<u32>().is_err() {
                return Err(bad(&key, format!("{id:?} is not an instrument id (u32)")));
            }
            if part >= parts {
                return Err(bad(
                    &key,
                    format!("partition {part} does not exist (partitions = {parts})"),
                ));
            }
        }
        for (id, &part) in &m.accounts {
            let key = format!("partitions.accounts.{id}");
            if id.parse::<u128>().is_err() {
                return Err(bad(&key, format!("{id:?} is not an account id (u128)")));
            }
            if part >= parts {
                return Err(bad(
                    &key,
                    format!("partition {part} does not exist (partitions = {parts})"),
                ));
            }
        }
        Ok(())
    }

    /// `[cluster]`: off (node id 0) with every other key at its default;
    /// on, members that parse, are few and unique and include this node,
    /// timeouts the replica accepts, a listen address; no on-disk history
    /// set by the user (it is not replicated yet).
    fn validate_cluster(
        &self,
        bad: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if c.node_id == 0 {
            return cluster_unset_keys(c)
                .first()
                .map_or(Ok(()), |k| Err(bad(k, format!("has no effect without cluster.node_id (0: not replicated); set cluster.node_id or remove {k}"))));
        }
        if c.members.len() > CLUSTER_MEMBERS_MAX {
            return Err(bad(
                "cluster.members",
                format!("{} members; at most {CLUSTER_MEMBERS_MAX}", c.members.len()),
            ));
        }
        let members = self.cluster_members(bad)?;
        let Some(own) = members.iter().position(|m| m.id == c.node_id) else {
            let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
            return Err(bad(
                "cluster.node_id",
                format!("{} is not among the members' ids {ids:?}", c.node_id),
            ));
        };
        // Peers send clients to this address: it must be where we listen
        // (the host may be a name or a public address; the port must match).
        let port = members[own].client_addr.rsplit_once(':').map(|(_, p)| p);
        if port != Some(self.server.listen.port().to_string().as_str()) {
            return Err(bad(
                &format!("cluster.members[{own}]"),
                format!(
                    "this node's client address {} is not on server.listen's port ({})",
                    members[own].client_addr, self.server.listen
                ),
            ));
        }
        if c.heartbeat_ms == 0 {
            return Err(bad("cluster.heartbeat_ms", "must be at least 1".into()));
        }
        if c.election_timeout_ms_min <= 2 * c.heartbeat_ms {
            return Err(bad(
                "cluster.election_timeout_ms_min",
                format!(
                    "{} must exceed twice cluster.heartbeat_ms ({})",
                    c.election_timeout_ms_min, c.heartbeat_ms
                ),
            ));
        }
        if c.election_timeout_ms_max <= c.election_timeout_ms_min {
            return Err(bad(
                "cluster.election_timeout_ms_max",
                format!(
                    "{} must exceed cluster.election_timeout_ms_min ({})",
                    c.election_timeout_ms_max, c.election_timeout_ms_min
                ),
            ));
        }
        if c.snapshot_every_entries == 0 {
            return Err(bad(
                "cluster.snapshot_every_entries",
                "must be at least 1".into(),
            ));
        }
        if c.log_kept_after_snapshot_entries > CLUSTER_LOG_KEPT_MAX {
            return Err(bad(
                "cluster.log_kept_after_snapshot_entries",
                format!(
                    "{} is more than {CLUSTER_LOG_KEPT_MAX} (entries held in memory)",
                    c.log_kept_after_snapshot_entries
                ),
            ));
        }
        self.raft_listen()
            .map_err(|m| bad("cluster.raft_listen", m))?;
        if let Err(e) = self.cluster_config().validate() {
            return Err(bad("cluster", e.to_string()));
        }
        Ok(())
    }

    /// Each `[cluster] members` entry parsed, ids and addresses unique.
    fn cluster_members(
        &self,
        bad: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<Vec<replica::Member>, ConfigError> {
        let mut out: Vec<replica::Member> = Vec::new();
        for (i, entry) in self.cluster.members.iter().enumerate() {
            let key = format!("cluster.members[{i}]");
            let m = parse_member(entry).map_err(|e| bad(&key, e.to_string()))?;
            let twin = out.iter().position(|o| {
                o.id == m.id
                    || o.raft_addr == m.raft_addr
                    || o.client_addr == m.client_addr
                    || o.raft_addr == m.client_addr
                    || o.client_addr == m.raft_addr
            });
            if let Some(j) = twin {
                return Err(bad(
                    &key,
                    format!("its id or an address is also cluster.members[{j}]'s"),
                ));
            }
            out.push(m);
        }
        if out.is_empty() {
            return Err(bad(
                "cluster.members",
                "lists no member (this node at least)".into(),
            ));
        }
        Ok(out)
    }

    /// `[history] run_records` set by the user with `[cluster]`: at most
    /// [`CLUSTER_HISTORY_RUN_RECORDS_MAX`] (a run travels to the followers
    /// in one peer frame); the default is lowered to
    /// [`CLUSTER_HISTORY_RUN_RECORDS`] instead (`settle_cluster`).
    fn validate_cluster_history(
        &self,
        bad: &dyn Fn(&str, String) -> ConfigError,
        origin: &dyn Fn(&str) -> Origin,
    ) -> Result<(), ConfigError> {
        let key = "history.run_records";
        let set = origin(key) != Origin::Default;
        if self.is_replicated() && set && self.history.run_records > CLUSTER_HISTORY_RUN_RECORDS_MAX
        {
            return Err(bad(
                key,
                format!(
                    "{} is above {CLUSTER_HISTORY_RUN_RECORDS_MAX} with [cluster]: each run \
                     (up to twice run_records when the leader catches up) is shipped to \
                     the followers in one peer frame (64 MiB; about 256 bytes a record); \
                     unset, it is {CLUSTER_HISTORY_RUN_RECORDS} in a cluster",
                    self.history.run_records
                ),
            ));
        }
        Ok(())
    }

    /// `[journal]`: an archive bound must hold at least one segment (else
    /// every segment archived would be deleted at once: say `delete`).
    fn validate_journal(
        &self,
        bad: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let j = &self.journal;
        let seg = self.pipeline.segment_bytes;
        if j.retain == RetainPolicy::Archive
            && j.archive_bytes_max != 0
            && j.archive_bytes_max < seg
        {
            return Err(bad(
                "journal.archive_bytes_max",
                format!(
                    "{} is smaller than one journal segment (pipeline.segment_bytes = {seg}): \
                     the archive could hold nothing; use 0 (unbounded), at least {seg}, \
                     or journal.retain = \"delete\"",
                    j.archive_bytes_max
                ),
            ));
        }
        Ok(())
    }

    /// Tokens: shape, uniqueness, owners; the operator's grant; the
    /// failed-login limit. Messages name `auth.tokens[i]`, never the secret.
    fn validate_auth(&self, bad: &dyn Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
        let a = &self.auth;
        for (i, t) in a.tokens.iter().enumerate() {
            let key = format!("auth.tokens[{i}]");
            if let Err(e) = t.grant() {
                return Err(bad(&key, e.to_string()));
            }
            if let Some(j) = a.tokens[..i].iter().position(|u| u.token == t.token) {
                return Err(bad(&key, TokenError::Duplicate(j).to_string()));
            }
        }
        if let Err(e) = parse_owners(&a.operator_owners) {
            return Err(bad("auth.operator_owners", e.to_string()));
        }
        if let Err(e) = parse_perms(&a.operator_perms) {
            return Err(bad("auth.operator_perms", e.to_string()));
        }
        if a.login_failures_max == 0 {
            return Err(bad("auth.login_failures_max", "must be at least 1".into()));
        }
        if a.login_failure_window_ms == 0 {
            return Err(bad(
                "auth.login_failure_window_ms",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Refuses capacities whose tables the machine cannot hold (they are
    /// all allocated, and by default touched, at start-up).
    fn validate_memory(
        &self,
        bad: &dyn Fn(&str, String) -> ConfigError,
        limit: &MachineMemory,
    ) -> Result<(), ConfigError> {
        let need = self.memory_estimate();
        let Some((have, what)) = limit.smallest() else {
            return Ok(());
        };
        if need <= have {
            return Ok(());
        }
        Err(bad(
            "engine",
            format!(
                "engine memory estimate {} ({} partition(s) of {} each: orders, books, \
                 client order ids, ledger, rings) exceeds {what} {}; lower the [engine] \
                 capacities or the partitions",
                gib(need),
                self.pipeline.partitions,
                gib(need / self.pipeline.partitions.max(1) as u64),
                gib(have)
            ),
        ))
    }

    /// Bytes the engine tables and rings of every partition take, estimated
    /// from the capacities (per-item sizes of the default build: about 350
    /// bytes per order slot across the order tables and indexes, plus about
    /// 100 for the live-order map by client order id (its direct array, 8
    /// to 16 bytes an order, and its spill table, 64 to 128); a client
    /// order id window entry is a 16-byte ring slot plus its share of the
    /// bitmap-block table, sized for window + live orders; a transfer slot
    /// is a 224-byte record slot plus its index, two eviction-ring entries,
    /// a heap entry, a free-list entry, its 16-byte list links and its
    /// 24-byte remembered hash term; each published change is a 176-byte
    /// record in the changes buffer).
    pub fn memory_estimate(&self) -> u64 {
        const ORDER: u64 = 352 + 104;
        const BOOK_ENTRY: u64 = 16;
        const COID: u64 = 96;
        const OWNER: u64 = 64;
        const ACCOUNT: u64 = 192;
        const TRANSFER: u64 = 320 + 40;
        const EVENT: u64 = 64;
        const CHANGE: u64 = 176;
        const RING_SLOT: u64 = 128;
        let e = &self.engine;
        let r = &self.runtime;
        let n = |v: u32| v as u64;
        let per_book = 2 * (n(e.levels_max) + n(e.stops_max)) * BOOK_ENTRY;
        let part = n(e.orders_max) * ORDER
            + n(e.instruments_max) * per_book
            + n(e.client_order_ids_max) * COID
            + n(e.owners_max) * OWNER
            + n(e.accounts_max) * ACCOUNT
            + n(e.transfers_max) * TRANSFER
            + n(e.events_max) * EVENT
            + (n(e.events_max) / 2 + 2 * n(e.batch_max)) * CHANGE
            + (r.inbound_ring + r.output_ring + r.journal_queue) as u64 * RING_SLOT
            + self.history_filter_bytes();
        part.saturating_mul(self.pipeline.partitions as u64)
    }

    /// Bytes of one partition's history id filter (none without on-disk
    /// history).
    fn history_filter_bytes(&self) -> u64 {
        let p = self.pipeline();
        let on = p.durability != Durability::None && p.history_run_records > 0;
        if on {
            p.history_filter_bytes
        } else {
            0
        }
    }

    /// The operator token's owners and permissions: the demo owners with
    /// every permission under `server.demo`, else `[auth] operator_*`
    /// (validated: call after `load`).
    pub fn operator_grant(&self) -> (Vec<engine::OwnerId>, gateway::session::Perms) {
        if self.server.demo {
            return gateway::demo::operator_grant();
        }
        (
            parse_owners(&self.auth.operator_owners).unwrap_or_default(),
            parse_perms(&self.auth.operator_perms).unwrap_or_default(),
        )
    }

    /// Engine capacities.
    pub fn engine(&self) -> EngineConfig {
        self.engine.into()
    }

    /// Runtime settings (rings, idle, pinning, snapshot interval; the
    /// default fatal handler, which logs and exits with status 74).
    pub fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            inbound_ring: self.runtime.inbound_ring,
            output_ring: self.runtime.output_ring,
            journal_queue: self.runtime.journal_queue,
            idle: self.runtime.idle,
            pin: self.runtime.pin,
            snapshot_every_bytes: self.pipeline.snapshot_every_bytes,
            ..RuntimeConfig::default()
        }
    }

    /// The pipeline settings (data directory, partitions, engine, runtime, journal).
    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            data_dir: self.server.data_dir.clone(),
            partitions: self.pipeline.partitions,
            engine: self.engine(),
            runtime: self.runtime(),
            durability: self.pipeline.durability,
            segment_bytes: self.pipeline.segment_bytes,
            prefault: self.pipeline.prefault,
            repair: self.pipeline.repair,
            retention: RetentionConfig {
                policy: self.journal.retain,
                archive_bytes_max: self.journal.archive_bytes_max,
            },
            // Memory must hold the run being cut and the changes arriving
            // meanwhile, or the ledger fills up before a run is installed.
            history_run_records: self
                .history
                .run_records
                .min((self.engine.transfers_max / 2).max(1) as usize),
            history_compact_fanout: self.history.compact_fanout,
            history_filter_bytes: self.history.filter_bytes,
        }
    }

    /// The partition assignment (call after validation: bad ids are skipped).
    pub fn partition_map(&self) -> PartitionMap {
        let mut m = PartitionMap::new(self.pipeline.partitions, self.partitions.default);
        for (id, &p) in &self.partitions.instruments {
            if let Ok(id) = id.parse::<u32>() {
                m.assign_instrument(InstrumentId(id), p);
            }
        }
        for (id, &p) in &self.partitions.accounts {
            if let Ok(id) = id.parse::<u128>() {
                m.assign_account(AccountId(id), p);
            }
        }
        m
    }

    /// Session settings (timers in ns as the session wants them; the
    /// partition count from `[pipeline]`; the rest at their defaults).
    pub fn session(&self) -> gateway::session::SessionConfig {
        let s = &self.session;
        gateway::session::SessionConfig {
            heartbeat_interval_ns: s.heartbeat_interval_ms.saturating_mul(1_000_000),
            idle_timeout_ns: s.idle_timeout_ms.saturating_mul(1_000_000),
            throttle_per_s: s.throttle_per_s,
            throttle_burst: s.throttle_burst,
            max_open_orders: s.open_orders_max,
            garbage_limit: s.garbage_limit,
            replay_reports_max: s.replay_reports_max,
            cancel_on_disconnect_default: s.cancel_on_disconnect,
            partitions: self.pipeline.partitions,
            max_in_flight: s.in_flight_max,
            ..gateway::session::SessionConfig::default()
        }
    }

    /// A replicated node's history runs travel to its followers in one
    /// peer frame: `[history] run_records` above
    /// [`CLUSTER_HISTORY_RUN_RECORDS_MAX`] (only the default gets here, a
    /// larger value the user set was refused by validation) becomes
    /// [`CLUSTER_HISTORY_RUN_RECORDS`], so what `config check` prints is
    /// what runs.
    fn settle_cluster(&mut self) {
        if self.is_replicated() && self.history.run_records > CLUSTER_HISTORY_RUN_RECORDS_MAX {
            self.history.run_records = CLUSTER_HISTORY_RUN_RECORDS;
        }
    }

    /// `cluster.node_id_from_hostname`: sets `node_id` from `host()`'s
    /// trailing `-N` (plus 1) and clears the flag, so `config check` prints
    /// the effective id.
    /// Refused with a non-zero `node_id` (two sources of one id) and for a
    /// host name without the suffix (named in the error).
    fn settle_node_id(
        &mut self,
        origin: &dyn Fn(&str) -> Origin,
        host: &dyn Fn() -> String,
    ) -> Result<(), ConfigError> {
        if !self.cluster.node_id_from_hostname {
            return Ok(());
        }
        let key = "cluster.node_id_from_hostname";
        let bad = |message: String| ConfigError::BadValue {
            key: key.to_string(),
            origin: origin(key),
            message,
        };
        if self.cluster.node_id != 0 {
            return Err(bad(format!(
                "cluster.node_id is also set ({}); set one of them",
                self.cluster.node_id
            )));
        }
        let host = host();
        self.cluster.node_id = node_id_of_host(&host).ok_or_else(|| {
            bad(format!(
                "the host name {host:?} does not end in -N (e.g. bourse-0 for node 1); set cluster.node_id instead"
            ))
        })?;
        // The effective configuration names the id itself (so `to_toml`
        // loads back to the same node, on any host).
        self.cluster.node_id_from_hostname = false;
        Ok(())
    }

    /// Whether `[cluster]` makes this node a replica.
    pub fn is_replicated(&self) -> bool {
        self.cluster.node_id != 0
    }

    /// The replica's settings (members as validated: call after `load`;
    /// the proposal queue is `runtime.inbound_ring`, like the ring it feeds,
    /// and the journal segment `pipeline.segment_bytes`).
    pub fn cluster_config(&self) -> replica::ClusterConfig {
        let c = &self.cluster;
        let members = c
            .members
            .iter()
            .filter_map(|m| parse_member(m).ok())
            .collect();
        replica::ClusterConfig {
            election_timeout_ms_min: c.election_timeout_ms_min,
            election_timeout_ms_max: c.election_timeout_ms_max,
            heartbeat_ms: c.heartbeat_ms,
            snapshot_every_entries: c.snapshot_every_entries,
            log_kept_after_snapshot_entries: c.log_kept_after_snapshot_entries,
            proposal_queue: self.runtime.inbound_ring,
            segment_bytes: self.pipeline.segment_bytes,
            ..replica::ClusterConfig::new(c.node_id, members)
        }
    }

    /// Where this node listens for its peers: `cluster.raft_listen`, else
    /// its member's raft address (which must be an IP address: no name is
    /// looked up here).
    pub fn raft_listen(&self) -> Result<SocketAddr, String> {
        let c = &self.cluster;
        if !c.raft_listen.is_empty() {
            return c
                .raft_listen
                .parse()
                .map_err(|_| format!("{:?} is not IP:PORT", c.raft_listen));
        }
        let own = c
            .members
            .iter()
            .filter_map(|m| parse_member(m).ok())
            .find(|m| m.id == c.node_id)
            .ok_or_else(|| format!("node {} has no member entry", c.node_id))?;
        own.raft_addr.parse().map_err(|_| {
            format!(
                "unset, and this member's raft address {:?} is not IP:PORT; set it",
                own.raft_addr
            )
        })
    }

    /// The cluster secret file: `cluster.secret_file`, else
    /// `cluster.secret` in the data directory.
    pub fn secret_file(&self) -> PathBuf {
        if self.cluster.secret_file.as_os_str().is_empty() {
            self.server.data_dir.join(CLUSTER_SECRET_FILE)
        } else {
            self.cluster.secret_file.clone()
        }
    }

    /// The server's replication settings, `None` when not replicated (call
    /// after `load`: validation checked every part).
    pub fn cluster_spec(&self) -> Option<gateway::server::ClusterSpec> {
        if !self.is_replicated() {
            return None;
        }
        Some(gateway::server::ClusterSpec {
            config: self.cluster_config(),
            raft_listen: self
                .raft_listen()
                .expect("cluster.raft_listen is validated by load"),
            secret_file: self.secret_file(),
        })
    }

    /// The metrics endpoint address, `None` when disabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.metrics_enabled.then_some(self.server.metrics)
    }

    /// Market-data settings (feed builder capacities at their defaults).
    pub fn md(&self) -> feeds::MdConfig {
        let f = &self.feed;
        let mut m = feeds::MdConfig::default();
        m.feed.depth = f.depth;
        m.replay = f.replay;
        m.retransmit_max = f.retransmit_max;
        m.requests_per_s = f.requests_per_s;
        m.requests_burst = f.requests_burst;
        m.backlog_bytes = f.backlog_bytes;
        m.backlog_age = Duration::from_millis(f.backlog_age_ms);
        m.max_resets = f.resets_max;
        m.heartbeat = Duration::from_millis(f.heartbeat_ms);
        m.max_subscribers = f.subscribers_max;
        m
    }

    /// Watchdog thresholds.
    pub fn watchdog(&self) -> crate::watchdog::WatchdogConfig {
        crate::watchdog::WatchdogConfig {
            stall: Duration::from_millis(self.watchdog.stall_ms),
            fsync_alarm_us: self.watchdog.fsync_alarm_us,
            ..crate::watchdog::WatchdogConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tmp_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bourse-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn default_text_is_the_default_config_and_names_every_key() {
        let parsed: BourseConfig = toml::from_str(DEFAULT_TOML).expect("default text parses");
        assert_eq!(parsed, BourseConfig::default());
        let text: Table = DEFAULT_TOML.parse().unwrap();
        let schema = Table::try_from(BourseConfig::default()).unwrap();
        assert_eq!(text, schema, "DEFAULT_TOML must spell out every key");
        // Every key line is preceded by a comment line.
        let mut prev = "";
        for line in DEFAULT_TOML.lines() {
            if line.contains(" = ") && !line.starts_with('#') {
                assert!(prev.starts_with('#'), "no comment above {line:?}");
            }
            prev = line;
        }
        BourseConfig::default().validate().unwrap();
        assert_eq!(
            BourseConfig::from_toml(DEFAULT_TOML).unwrap(),
            BourseConfig::default()
        );
        // The effective-config printer round-trips too.
        let c = BourseConfig::default();
        assert_eq!(BourseConfig::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn renamed_keys_are_still_accepted_and_set_the_current_ones() {
        let f = tmp_file(
            "renamed.toml",
            "[session]\nmax_open_orders = 7\nmax_sessions = 8\n",
        );
        let c = BourseConfig::load(Some(&f), env(&[("BOURSE_SESSION_MAX_IN_FLIGHT", "9")]), &[])
            .unwrap();
        assert_eq!(
            (
                c.session.open_orders_max,
                c.session.sessions_max,
                c.session.in_flight_max
            ),
            (7, 8, 9)
        );
        let c = BourseConfig::load(
            None,
            env(&[]),
            &[("session.max_sessions".into(), "5".into())],
        )
        .unwrap();
        assert_eq!(c.session.sessions_max, 5);
        // Serde reads the old names too (a whole document, no layers).
        let text = DEFAULT_TOML.replace("in_flight_max = 1_024", "max_in_flight = 3");
        let c: BourseConfig = toml::from_str(&text).unwrap();
        assert_eq!(c.session.in_flight_max, 3);
        // Every current key is in the schema, every old one is not.
        let schema = Table::try_from(BourseConfig::default()).unwrap();
        for (old, new) in KEY_ALIASES {
            let key = |k: &str| k.split_once('.').map(|(s, k)| schema[s].get(k).is_some());
            assert_eq!(
                (key(old), key(new)),
                (Some(false), Some(true)),
                "{old} -> {new}"
            );
        }
    }

    #[test]
    fn section_defaults_are_the_components_defaults() {
        let c = BourseConfig::default();
        let server = gateway::server::ServerConfig::new("");
        assert_eq!(c.session(), gateway::session::SessionConfig::default());
        assert_eq!(c.watchdog(), crate::watchdog::WatchdogConfig::default());
        assert_eq!(c.auth.login_failures_max, server.login_failures_max);
        assert_eq!(
            parse_perms(&c.auth.operator_perms).unwrap(),
            server.operator_perms
        );
        assert_eq!(c.session.sessions_max, server.max_sessions);
        assert_eq!(c.session.resume_window(), server.resume_window);
    }

    #[test]
    fn precedence_default_file_env_flag() {
        let f = tmp_file(
            "prec.toml",
            "[server]\nlisten = \"127.0.0.1:1111\"\ndata_dir = \"/tmp/file-dir\"\n\n[engine]\norders_max = 100\nlevels_max = 200\n\n[pipeline]\ndurability = \"async\"\n",
        );
        let e = env(&[
            ("BOURSE_SERVER_LISTEN", "127.0.0.1:2222"),
            ("BOURSE_ENGINE_ORDERS_MAX", "300"),
            ("BOURSE_LOG", "debug"),
            ("BOURSE_BENCH_OPS", "5"),
            ("PATH", "/bin"),
        ]);
        let flags = vec![("server.listen".to_string(), "127.0.0.1:3333".to_string())];
        let c = BourseConfig::load(Some(&f), e.clone(), &flags).unwrap();
        assert_eq!(c.server.listen.port(), 3333, "flag beats env and file");
        assert_eq!(c.engine.orders_max, 300, "env beats file");
        assert_eq!(c.engine.levels_max, 200, "file beats default");
        assert_eq!(c.pipeline.durability, Durability::Async);
        assert_eq!(c.server.data_dir, PathBuf::from("/tmp/file-dir"));
        assert_eq!(c.engine.stops_max, EngineSection::default().stops_max);
        let c = BourseConfig::load(Some(&f), e, &[]).unwrap();
        assert_eq!(c.server.listen.port(), 2222, "env beats file");
        let c = BourseConfig::load(Some(&f), vec![], &[]).unwrap();
        assert_eq!(c.server.listen.port(), 1111);
        assert_eq!(c.engine.orders_max, 100);
        let c = BourseConfig::load(None, vec![], &[]).unwrap();
        assert_eq!(c, BourseConfig::default());
        assert_eq!(c.pipeline().engine, EngineConfig::default());
        // [feed] reaches the market-data hub.
        let c = BourseConfig::load(
            None,
            env(&[("BOURSE_FEED_REQUESTS_PER_S", "5")]),
            &[("feed.depth".into(), "3".into())],
        )
        .unwrap();
        let md = c.md();
        assert_eq!((md.requests_per_s, md.feed.depth), (5, 3));
        assert_eq!(md.heartbeat, Duration::from_millis(500));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let f = tmp_file(
            "unknown.toml",
            "[server]\nlisten = \"127.0.0.1:1\"\n\nlisten_port = 7\n",
        );
        let e = BourseConfig::load(Some(&f), vec![], &[]).unwrap_err();
        assert_eq!(e.key(), Some("server.listen_port"), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("server.listen_port") && msg.contains("line 4"),
            "{msg}"
        );

        let f = tmp_file("unknown_section.toml", "[servre]\nlisten = 1\n");
        let e = BourseConfig::load(Some(&f), vec![], &[]).unwrap_err();
        assert_eq!(e.key(), Some("servre"), "{e}");

        let e =
            BourseConfig::load(None, env(&[("BOURSE_ENGINE_ORDER_MAX", "1")]), &[]).unwrap_err();
        assert_eq!(e.key(), Some("engine.order_max"));
        assert!(e.to_string().contains("BOURSE_ENGINE_ORDER_MAX"), "{e}");

        let e = BourseConfig::load(None, env(&[("BOURSE_NOPE", "1")]), &[]).unwrap_err();
        assert_eq!(e.key(), Some("nope"));

        let e =
            BourseConfig::load(None, vec![], &[("engine.nope".into(), "1".into())]).unwrap_err();
        assert_eq!(e.key(), Some("engine.nope"));
        assert!(e.to_string().contains("command line"), "{e}");

        let e = BourseConfig::load(None, vec![], &[("engine".into(), "1".into())]).unwrap_err();
        assert_eq!(e.key(), Some("engine"));
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let f = tmp_file("bad_type.toml", "[pipeline]\npartitions = \"two\"\n");
        let e = BourseConfig::load(Some(&f), vec![], &[]).unwrap_err();
        assert_eq!(e.key(), Some("pipeline.partitions"), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");

        let f = tmp_file("bad_enum.toml", "[pipeline]\ndurability = \"sometimes\"\n");
        let e = BourseConfig::load(Some(&f), vec![], &[]).unwrap_err();
        assert_eq!(e.key(), Some("pipeline.durability"), "{e}");
        assert!(e.to_string().contains("sometimes"), "{e}");

        let e = BourseConfig::load(None, env(&[("BOURSE_SERVER_METRICS", "nowhere")]), &[])
            .unwrap_err();
        assert_eq!(e.key(), Some("server.metrics"), "{e}");

        let e =
            BourseConfig::load(None, env(&[("BOURSE_ENGINE_ORDERS_MAX", "-1")]), &[]).unwrap_err();
        assert_eq!(e.key(), Some("engine.orders_max"), "{e}");

        let e = BourseConfig::load(None, env(&[("BOURSE_RUNTIME_PIN", "maybe")]), &[]).unwrap_err();
        assert_eq!(e.key(), Some("runtime.pin"), "{e}");

        let e = BourseConfig::load(None, vec![], &[("pipeline.partitions".into(), "0".into())])
            .unwrap_err();
        assert_eq!(e.key(), Some("pipeline.partitions"), "{e}");

        let e = BourseConfig::load(None, env(&[("BOURSE_FEED_HEARTBEAT_MS", "5000")]), &[])
            .unwrap_err();
        assert_eq!(e.key(), Some("feed.heartbeat_ms"), "{e}");
        assert!(e.to_string().contains("BOURSE_FEED_HEARTBEAT_MS"), "{e}");
        let e = BourseConfig::load(None, vec![], &[("feed.requests_burst".into(), "0".into())])
            .unwrap_err();
        assert_eq!(e.key(), Some("feed.requests_burst"), "{e}");

        let e =
            BourseConfig::load(None, vec![], &[("runtime.idle".into(), "nap".into())]).unwrap_err();
        assert_eq!(e.key(), Some("runtime.idle"), "{e}");

        let e = BourseConfig::load(None, vec![], &[("server.log_format".into(), "xml".into())])
            .unwrap_err();
        assert_eq!(e.key(), Some("server.log_format"), "{e}");

        let e = BourseConfig::load(
            None,
            vec![],
            &[("pipeline.segment_bytes".into(), "1000".into())],
        )
        .unwrap_err();
        assert_eq!(e.key(), Some("pipeline.segment_bytes"), "{e}");

        let f = tmp_file(
            "bad_map.toml",
            "[pipeline]\npartitions = 2\n[partitions]\ninstruments = { \"7\" = 5 }\n",
        );
        let e = BourseConfig::load(Some(&f), vec![], &[]).unwrap_err();
        assert_eq!(e.key(), Some("partitions.instruments.7"), "{e}");
        assert!(e.to_string().contains("line 4"), "{e}");
    }

    #[test]
    fn journal_retention_keys_reach_the_pipeline_and_are_validated() {
        let c = BourseConfig::load(None, vec![], &[]).unwrap();
        assert_eq!(c.pipeline().retention, RetentionConfig::default());
        assert_eq!(c.pipeline().retention.policy, RetainPolicy::Archive);
        let c = BourseConfig::load(
            None,
            env(&[("BOURSE_JOURNAL_RETAIN", "delete")]),
            &[("journal.archive_bytes_max".into(), "0".into())],
        )
        .unwrap();
        assert_eq!(
            c.pipeline().retention,
            RetentionConfig {
                policy: RetainPolicy::Delete,
                archive_bytes_max: 0
            }
        );
        let e =
            BourseConfig::load(None, env(&[("BOURSE_JOURNAL_RETAIN", "shred")]), &[]).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.key(), Some("journal.retain"), "{msg}");
        assert!(
            msg.contains("BOURSE_JOURNAL_RETAIN") && msg.contains("keep, archive or delete"),
            "{msg}"
        );
        let e = BourseConfig::load(
            None,
            vec![],
            &[("journal.archive_bytes_max".into(), "4096".into())],
        )
        .unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.key(), Some("journal.archive_bytes_max"), "{msg}");
        assert!(msg.contains("smaller than one journal segment"), "{msg}");
        // Under `delete` the bound is moot and not checked.
        BourseConfig::load(
            None,
            vec![],
            &[
                ("journal.archive_bytes_max".into(), "4096".into()),
                ("journal.retain".into(), "delete".into()),
            ],
        )
        .unwrap();
    }

    #[test]
    fn partition_maps_from_file_and_env() {
        let f = tmp_file(
            "maps.toml",
            "[pipeline]\npartitions = 3\n[partitions]\ndefault = 1\n[partitions.instruments]\n\"7\" = 2\n",
        );
        let c = BourseConfig::load(
            Some(&f),
            env(&[("BOURSE_PARTITIONS_ACCOUNTS", "{ \"10\" = 2 }")]),
            &[],
        )
        .unwrap();
        let m = c.partition_map();
        assert_eq!(m.partitions(), 3);
        assert_eq!(m.instrument(InstrumentId(7)), 2);
        assert_eq!(m.instrument(InstrumentId(8)), 1);
        assert_eq!(m.account(AccountId(10)), 2);
    }

    #[test]
    fn conversions() {
        let c = BourseConfig::load(
            None,
            vec![],
            &[
                ("runtime.idle".into(), "yield".into()),
                ("pipeline.durability".into(), "none".into()),
                ("server.metrics_enabled".into(), "false".into()),
                ("watchdog.stall_ms".into(), "250".into()),
            ],
        )
        .unwrap();
        assert_eq!(c.runtime().idle, IdleStrategy::Yield);
        let d = BourseConfig::default().session();
        let s = gateway::session::SessionConfig::default();
        assert_eq!(d, s, "[session] defaults are the session's defaults");
        assert_eq!(c.pipeline().durability, Durability::None);
        assert_eq!(c.metrics_addr(), None);
        assert_eq!(c.watchdog().stall, Duration::from_millis(250));
        assert_eq!(
            env_key("BOURSE_ENGINE_ORDERS_MAX").as_deref(),
            Some("engine.orders_max")
        );
        assert_eq!(env_key("BOURSE_LOG"), None);
        assert_eq!(parse_set("server.listen=1.2.3.4:5").unwrap().1, "1.2.3.4:5");
        assert!(parse_set("nothing").is_err());
    }

    #[test]
    fn clap_flags_become_overrides() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            cfg: ConfigArgs,
        }
        let cli = Cli::try_parse_from([
            "bourse",
            "--listen",
            "127.0.0.1:9000",
            "--no-metrics",
            "--log-format",
            "json",
            "--set",
            "engine.orders_max=512",
            "--set",
            "server.listen=127.0.0.1:9001",
        ])
        .unwrap();
        let c = BourseConfig::load(
            None,
            env(&[("BOURSE_ENGINE_ORDERS_MAX", "7")]),
            &cli.cfg.overrides(),
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9001, "--set comes last");
        assert_eq!(c.engine.orders_max, 512);
        assert_eq!(c.server.log_format, LogFormat::Json);
        assert!(!c.server.metrics_enabled);
        assert!(!c.server.demo, "production is not the demo");
        let cli = Cli::try_parse_from(["bourse", "--demo"]).unwrap();
        let c = BourseConfig::load(None, vec![], &cli.cfg.overrides()).unwrap();
        assert!(c.server.demo);
    }

    #[test]
    fn tokens_are_masked_long_unique_and_few_owned() {
        let secret = "desk-7-secret-0123456789";
        assert_eq!(mask_token(secret), "des…(24 chars)");
        let entry = |t: &str, owners: &str| {
            format!("{{ token = \"{t}\", owners = [{owners}], perms = [\"trade\"] }}")
        };
        // (auth.tokens, the key refused, or None)
        let cases = [
            (entry(secret, "7"), None),
            (entry("fifteen-bytes-x", "7"), Some("auth.tokens[0]")),
            (entry(&"x".repeat(33), "7"), Some("auth.tokens[0]")),
            (
                format!("{}, {}", entry(secret, "7"), entry(secret, "8")),
                Some("auth.tokens[1]"),
            ),
            (entry(secret, "1, 2, 3, 4, 5, 6, 7, 8"), None),
            (
                entry(secret, "1, 2, 3, 4, 5, 6, 7, 8, 9"),
                Some("auth.tokens[0]"),
            ),
        ];
        for (tokens, refused) in cases {
            let r = BourseConfig::load(
                None,
                vec![],
                &[("auth.tokens".into(), format!("[{tokens}]"))],
            );
            match (refused, r) {
                (None, Ok(c)) => {
                    let shown = format!("{c:#?}");
                    assert!(!shown.contains(secret), "{shown}");
                    assert!(shown.contains("des…(24 chars)"), "{shown}");
                }
                (Some(k), Err(e)) => {
                    assert_eq!(e.key(), Some(k), "{e}");
                    assert!(!e.to_string().contains("secret"), "{e}");
                    assert!(e.to_string().contains("command line"), "origin kept: {e}");
                }
                (want, got) => panic!("{tokens}: want {want:?}, got {got:?}"),
            }
        }
        let e = BourseConfig::load(
            None,
            vec![],
            &[("auth.operator_perms".into(), "[\"fly\"]".into())],
        )
        .unwrap_err();
        assert_eq!(e.key(), Some("auth.operator_perms"));
        // BOURSE_TOKEN belongs to the client commands.
        let c = BourseConfig::load(None, env(&[("BOURSE_TOKEN", "abc")]), &[]).unwrap();
        assert_eq!(c, BourseConfig::default());
    }

    #[test]
    fn operator_grant_is_least_privilege_unless_demo() {
        let c = BourseConfig::default();
        let (owners, perms) = c.operator_grant();
        assert!(owners.is_empty());
        assert!(
            perms.admin && perms.read && !perms.trade && !perms.transfer && !perms.ledger_admin
        );
        let c = BourseConfig::load(None, vec![], &[("server.demo".into(), "true".into())]).unwrap();
        assert_eq!(c.operator_grant(), gateway::demo::operator_grant());
    }

    #[test]
    fn capacities_beyond_the_machine_are_refused_with_the_estimate() {
        let c = BourseConfig::default();
        let need = c.memory_estimate();
        assert!(
            need > 100 << 20 && need < 4 << 30,
            "default estimate {need}"
        );
        let bad = |key: &str, message: String| ConfigError::BadValue {
            key: key.to_string(),
            origin: Origin::Default,
            message,
        };
        // (physical, RLIMIT_AS, refused?)
        let cases = [
            (Some(need), None, false),
            (Some(need - 1), None, true),
            (Some(u64::MAX), Some(need - 1), true),
            (None, None, false),
        ];
        for (physical, address_space, refused) in cases {
            let m = MachineMemory {
                physical,
                address_space,
            };
            let r = c.validate_memory(&bad, &m);
            assert_eq!(r.is_err(), refused, "{m:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("engine memory estimate"), "{e}");
            }
        }
        let mut big = c.clone();
        big.pipeline.partitions = 4;
        assert_eq!(big.memory_estimate(), 4 * need);
    }

    #[test]
    fn history_filter_bytes_is_0_or_bounded_and_counts_in_memory() {
        let set = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        for bad in ["63", "17179869185"] {
            let e =
                BourseConfig::load(None, vec![], &set("history.filter_bytes", bad)).unwrap_err();
            assert_eq!(e.key(), Some("history.filter_bytes"), "{e}");
        }
        let c = BourseConfig::load(None, vec![], &[]).unwrap();
        assert_eq!(c.pipeline().history_filter_bytes, 64 << 20);
        let off = BourseConfig::load(None, vec![], &set("history.filter_bytes", "0")).unwrap();
        assert_eq!(off.pipeline().history_filter_bytes, 0);
        let per_partition = c.memory_estimate() - off.memory_estimate();
        assert_eq!(per_partition, (64 << 20) * c.pipeline().partitions as u64);
    }

    #[test]
    fn history_compact_fanout_is_0_or_at_least_2() {
        let set = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let e = BourseConfig::load(None, vec![], &set("history.compact_fanout", "1")).unwrap_err();
        assert_eq!(e.key(), Some("history.compact_fanout"), "{e}");
        let c = BourseConfig::load(None, vec![], &set("history.compact_fanout", "0")).unwrap();
        assert_eq!(c.pipeline().history_compact_fanout, 0);
        let c = BourseConfig::load(None, vec![], &[]).unwrap();
        assert_eq!(c.pipeline().history_compact_fanout, 8);
    }

    #[test]
    fn history_run_records_is_bounded_and_capped_by_memory() {
        let set = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let e =
            BourseConfig::load(None, vec![], &set("history.run_records", "16777217")).unwrap_err();
        assert_eq!(e.key(), Some("history.run_records"), "{e}");
        let c = BourseConfig::load(None, vec![], &[]).unwrap();
        assert_eq!(c.pipeline().history_run_records, 262_144);
        let c = BourseConfig::load(None, vec![], &set("engine.transfers_max", "4096")).unwrap();
        assert_eq!(c.pipeline().history_run_records, 2048);
        let c = BourseConfig::load(None, vec![], &set("history.run_records", "0")).unwrap();
        assert_eq!(c.pipeline().history_run_records, 0);
    }

    const THREE: &str = "[server]\nlisten = \"127.0.0.1:7072\"\n[cluster]\nnode_id = 2\nmembers = [\"1=127.0.0.1:7171/127.0.0.1:7071\", \"2=127.0.0.1:7172/127.0.0.1:7072\", \"3=127.0.0.1:7173/127.0.0.1:7073\"]\n";

    #[test]
    fn a_cluster_section_becomes_the_servers_cluster_spec() {
        let c = BourseConfig::from_toml(THREE).unwrap();
        let spec = c.cluster_spec().expect("replicated");
        assert_eq!(spec.config.node_id, 2);
        let ids: Vec<(u64, &str, &str)> = spec
            .config
            .members
            .iter()
            .map(|m| (m.id, m.raft_addr.as_str(), m.client_addr.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                (1, "127.0.0.1:7171", "127.0.0.1:7071"),
                (2, "127.0.0.1:7172", "127.0.0.1:7072"),
                (3, "127.0.0.1:7173", "127.0.0.1:7073"),
            ]
        );
        assert_eq!(spec.raft_listen, "127.0.0.1:7172".parse().unwrap());
        assert_eq!(spec.secret_file, c.server.data_dir.join("cluster.secret"));
        let d = replica::ClusterConfig::new(2, Vec::new());
        assert_eq!(
            (
                spec.config.heartbeat_ms,
                spec.config.election_timeout_ms_min
            ),
            (d.heartbeat_ms, d.election_timeout_ms_min)
        );
        assert_eq!(spec.config.segment_bytes, c.pipeline.segment_bytes);
        // The on-disk history in a cluster: its default turns to the
        // cluster's (a run fits one peer frame).
        assert_eq!(c.history.run_records, CLUSTER_HISTORY_RUN_RECORDS);
        assert_eq!(
            c.pipeline().history_run_records,
            CLUSTER_HISTORY_RUN_RECORDS
        );
        // Absent section: a single node, history as configured.
        let single = BourseConfig::default();
        assert!(single.cluster_spec().is_none());
        assert_ne!(single.pipeline().history_run_records, 0);
        // The effective-config printer (`to_toml`) round-trips it.
        assert_eq!(BourseConfig::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn a_host_names_trailing_ordinal_plus_one_is_the_node_id() {
        // (host name, node id)
        let cases = [
            ("bourse-0", Some(1)),
            ("bourse-2", Some(3)),
            ("my-exchange-bourse-10", Some(11)),
            ("bourse", None),
            ("bourse-", None),
            ("bourse-x1", None),
            ("bourse-+1", None),
            ("bourse-18446744073709551615", None),
            ("", None),
        ];
        for (host, id) in cases {
            assert_eq!(node_id_of_host(host), id, "{host}");
        }
    }

    #[test]
    fn node_id_from_hostname_sets_the_id_or_names_the_host() {
        let pods = "[server]\nlisten = \"0.0.0.0:7070\"\n[cluster]\nraft_listen = \"0.0.0.0:7071\"\nmembers = [\"1=bourse-0.peers:7071/bourse-0.peers:7070\", \"2=bourse-1.peers:7071/bourse-1.peers:7070\", \"3=bourse-2.peers:7071/bourse-2.peers:7070\"]\n";
        let load = |extra: &str, host: &str| {
            let text = format!("{pods}{extra}");
            let mut layers = Layers::new();
            let file: Table = text.parse().unwrap();
            layers
                .merge_file(&file, Path::new("<t>"), &key_lines(&text))
                .unwrap();
            let host = host.to_string();
            BourseConfig::settle(layers, &|| host.clone())
        };
        let c = load("node_id_from_hostname = true\n", "bourse-1").unwrap();
        assert_eq!(c.cluster.node_id, 2);
        assert_eq!(c.cluster_spec().unwrap().config.node_id, 2);
        assert!(format!("{c:#?}").contains("node_id: 2,"));
        // The effective config loads back as the same node anywhere.
        assert!(!c.cluster.node_id_from_hostname);
        assert_eq!(BourseConfig::from_toml(&c.to_toml()).unwrap(), c);
        let e = load("node_id_from_hostname = true\n", "worker7").unwrap_err();
        assert_eq!(e.key(), Some("cluster.node_id_from_hostname"));
        assert!(e.to_string().contains("\"worker7\""), "{e}");
        // bourse-5 is node 6: not a member (said where the flag is set).
        let e = load("node_id_from_hostname = true\n", "bourse-5").unwrap_err();
        assert_eq!(e.key(), Some("cluster.node_id"));
        assert!(e.to_string().contains("6 is not among"), "{e}");
        assert!(e.to_string().contains("<t> line 6"), "{e}");
        // Off: the host name is never consulted.
        let e = load("", "bourse-1").unwrap_err();
        assert_eq!(e.key(), Some("cluster.members"));
        // Both sources of one id: refused before the host name is read.
        let e = BourseConfig::from_toml(&format!(
            "{pods}node_id = 2\nnode_id_from_hostname = true\n"
        ))
        .unwrap_err();
        assert_eq!(e.key(), Some("cluster.node_id_from_hostname"));
        assert!(
            e.to_string().contains("cluster.node_id is also set (2)"),
            "{e}"
        );
    }

    #[test]
    fn cluster_keys_come_from_env_and_flags_as_lists_or_arrays() {
        let members = "1=127.0.0.1:7171/127.0.0.1:7071, 2=127.0.0.1:7172/127.0.0.1:7072";
        let c = BourseConfig::load(
            None,
            env(&[
                ("BOURSE_CLUSTER_NODE_ID", "1"),
                ("BOURSE_CLUSTER_MEMBERS", members),
                ("BOURSE_CLUSTER_HEARTBEAT_MS", "50"),
                ("BOURSE_CLUSTER_LOG_KEPT_AFTER_SNAPSHOT_ENTRIES", "0"),
                ("BOURSE_SERVER_LISTEN", "0.0.0.0:7071"),
            ]),
            &[
                ("cluster.raft_listen".into(), "0.0.0.0:7171".into()),
                ("cluster.secret_file".into(), "/etc/bourse/secret".into()),
            ],
        )
        .unwrap();
        let spec = c.cluster_spec().unwrap();
        assert_eq!(spec.config.members.len(), 2);
        assert_eq!(spec.config.heartbeat_ms, 50);
        assert_eq!(spec.config.log_kept_after_snapshot_entries, 0);
        assert_eq!(spec.raft_listen, "0.0.0.0:7171".parse().unwrap());
        assert_eq!(spec.secret_file, PathBuf::from("/etc/bourse/secret"));
        let array = format!("[\"{}\"]", members.split(',').next().unwrap());
        let c = BourseConfig::load(
            None,
            vec![],
            &[
                ("cluster.node_id".into(), "1".into()),
                ("cluster.members".into(), array),
                ("server.listen".into(), "127.0.0.1:7071".into()),
            ],
        )
        .unwrap();
        assert_eq!(c.cluster_config().members.len(), 1);
        // Other arrays take lists too.
        let c = BourseConfig::load(
            None,
            env(&[
                ("BOURSE_AUTH_OPERATOR_PERMS", "trade, read"),
                ("BOURSE_AUTH_OPERATOR_OWNERS", "7,8"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(c.auth.operator_perms, ["trade", "read"]);
        assert_eq!(c.auth.operator_owners, [7, 8]);
    }

    #[test]
    fn bad_cluster_values_name_their_key() {
        let m = |i: u64| format!("\"{i}=127.0.0.1:717{i}/127.0.0.1:707{i}\"");
        let cases: &[(String, &str)] = &[
            // Keys without a node id do nothing: refused.
            ("heartbeat_ms = 50".into(), "cluster.heartbeat_ms"),
            (format!("members = [{}]", m(1)), "cluster.members"),
            (
                format!("node_id = 4\nmembers = [{}, {}]", m(1), m(2)),
                "cluster.node_id",
            ),
            ("node_id = 1\nmembers = []".into(), "cluster.members"),
            (
                format!("node_id = 1\nmembers = [{}, \"2=x\"]", m(1)),
                "cluster.members[1]",
            ),
            (
                format!("node_id = 1\nmembers = [{}, \"0=a:1/b:2\"]", m(1)),
                "cluster.members[1]",
            ),
            (
                format!("node_id = 1\nmembers = [{}, \"2=a:1/b:0\"]", m(1)),
                "cluster.members[1]",
            ),
            (
                format!("node_id = 1\nmembers = [{}, {}]", m(1), m(1)),
                "cluster.members[1]",
            ),
            (
                format!("node_id = 1\nmembers = [{}]\nheartbeat_ms = 200", m(1)),
                "cluster.election_timeout_ms_min",
            ),
            (
                format!(
                    "node_id = 1\nmembers = [{}]\nelection_timeout_ms_max = 300",
                    m(1)
                ),
                "cluster.election_timeout_ms_max",
            ),
            (
                format!("node_id = 1\nmembers = [{}]\nheartbeat_ms = 0", m(1)),
                "cluster.heartbeat_ms",
            ),
            (
                format!(
                    "node_id = 1\nmembers = [{}]\nsnapshot_every_entries = 0",
                    m(1)
                ),
                "cluster.snapshot_every_entries",
            ),
            (
                format!(
                    "node_id = 1\nmembers = [{}]\nlog_kept_after_snapshot_entries = 1_000_001",
                    m(1)
                ),
                "cluster.log_kept_after_snapshot_entries",
            ),
            (
                format!("node_id = 1\nmembers = [{}]\nraft_listen = \"here\"", m(1)),
                "cluster.raft_listen",
            ),
            (
                "node_id = 1\nmembers = [\"1=db1:7171/db1:7071\"]".into(),
                "cluster.raft_listen",
            ),
            // Node 2's client port is not server.listen's.
            (
                format!("node_id = 2\nmembers = [{}, {}]", m(1), m(2)),
                "cluster.members[1]",
            ),
            (
                format!(
                    "node_id = 1\nmembers = [{}]\n[history]\nrun_records = {}",
                    m(1),
                    CLUSTER_HISTORY_RUN_RECORDS_MAX + 1
                ),
                "history.run_records",
            ),
            ("node_id = \"one\"".into(), "cluster.node_id"),
        ];
        for (body, key) in cases {
            let doc = format!("[server]\nlisten = \"0.0.0.0:7071\"\n[cluster]\n{body}\n");
            let e = BourseConfig::from_toml(&doc).unwrap_err();
            assert_eq!(e.key(), Some(*key), "{body}: {e}");
        }
        let many: Vec<String> = (1..=8).map(m).collect();
        let e = BourseConfig::from_toml(&format!(
            "[server]\nlisten = \"0.0.0.0:7071\"\n[cluster]\nnode_id = 1\nmembers = [{}]\n",
            many.join(", ")
        ))
        .unwrap_err();
        assert_eq!(e.key(), Some("cluster.members"), "{e}");
        // A name as raft address is fine with an explicit listen address;
        // run_records = 0 (no on-disk history) said outright is fine too,
        // and so is a run size within the frame.
        let ok = BourseConfig::from_toml(
            "[server]\nlisten = \"0.0.0.0:7071\"\n[cluster]\nnode_id = 1\nmembers = [\"1=db1:7171/db1:7071\"]\nraft_listen = \"0.0.0.0:7171\"\n[history]\nrun_records = 1000\n",
        )
        .unwrap();
        assert_eq!(ok.pipeline().history_run_records, 1000);
        BourseConfig::from_toml(
            "[server]\nlisten = \"0.0.0.0:7071\"\n[cluster]\nnode_id = 1\nmembers = [\"1=db1:7171/db1:7071\"]\nraft_listen = \"0.0.0.0:7171\"\n[history]\nrun_records = 0\n",
        )
        .unwrap();
        assert_eq!(
            parse_member("x"),
            Err(MemberError::Shape("x".into())),
            "no = at all"
        );
    }
}
