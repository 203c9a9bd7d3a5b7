//! The gateway's counters: sessions, subscribers, conflations, disconnects
//! by reason, throttles and `busy` answers, bumped by the network side
//! (any thread, relaxed atomics; no engine or journal thread touches them),
//! and [`ServerMetrics`], what the server tells the process's metrics and
//! health side (implemented by the `bourse` binary's exposition).

use runtime::Runtime;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// What the server reports to the process's metrics and health side.
pub trait ServerMetrics: Send + Sync + std::fmt::Debug {
    /// The gateway's counters.
    fn gateway(&self) -> &GatewayMetrics;
    /// The runtime is up: report its partitions.
    fn attach(&self, runtime: &Runtime);
    /// Ready (recovered, journal open, accepting) or not (stopping; in a
    /// cluster: not serving).
    fn set_ready(&self, ready: bool);
    /// A replicated server's groups, per partition (every sweep, ~500 ms).
    fn set_cluster_status(&self, _status: &[replica::GroupStatus]) {}
}

/// Why a session ended (label values of `bourse_disconnects_total`). The
/// first eight follow the wire's close codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum DisconnectReason {
    /// Orderly logout.
    Normal,
    /// Too many bad frames.
    ProtocolViolation,
    /// Login refused.
    AuthFailed,
    /// First frame not a login.
    NotLoggedIn,
    /// Nothing heard for the idle timeout.
    IdleTimeout,
    /// Did not read its replies fast enough.
    SlowConsumer,
    /// The byte stream could not be re-framed.
    FramingLost,
    /// Another connection took the session over.
    TakenOver,
    /// The connection was lost (transport error, peer gone).
    ConnectionLost,
    /// The server is stopping.
    ServerShutdown,
    /// Refused at connect: the subscriber or session table is full.
    ServerFull,
    /// A replicated server that does not lead refused the login, or closed
    /// the session when it stopped leading.
    NotLeader,
}

impl DisconnectReason {
    /// Every reason, in label order.
    pub const ALL: [DisconnectReason; 12] = [
        DisconnectReason::Normal,
        DisconnectReason::ProtocolViolation,
        DisconnectReason::AuthFailed,
        DisconnectReason::NotLoggedIn,
        DisconnectReason::IdleTimeout,
        DisconnectReason::SlowConsumer,
        DisconnectReason::FramingLost,
        DisconnectReason::TakenOver,
        DisconnectReason::ConnectionLost,
        DisconnectReason::ServerShutdown,
        DisconnectReason::ServerFull,
        DisconnectReason::NotLeader,
    ];

    /// Stable snake_case name (the label value).
    pub fn name(self) -> &'static str {
        match self {
            DisconnectReason::Normal => "normal",
            DisconnectReason::ProtocolViolation => "protocol_violation",
            DisconnectReason::AuthFailed => "auth_failed",
            DisconnectReason::NotLoggedIn => "not_logged_in",
            DisconnectReason::IdleTimeout => "idle_timeout",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::FramingLost => "framing_lost",
            DisconnectReason::TakenOver => "taken_over",
            DisconnectReason::ConnectionLost => "connection_lost",
            DisconnectReason::ServerShutdown => "server_shutdown",
            DisconnectReason::ServerFull => "server_full",
            DisconnectReason::NotLeader => "not_leader",
        }
    }

    /// The reason of a wire close code (0..=8); anything else is `ConnectionLost`.
    pub fn from_close_code(code: u32) -> Self {
        match code {
            0..=7 => DisconnectReason::ALL[code as usize],
            crate::wire::close::NOT_LEADER => DisconnectReason::NotLeader,
            _ => DisconnectReason::ConnectionLost,
        }
    }
}

/// Counters and gauges the network side keeps (any thread may bump them;
/// none of them is touched by an engine thread).
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    sessions: AtomicI64,
    subscribers: AtomicI64,
    conflations: AtomicU64,
    /// Order-entry sessions, by reason.
    disconnects: [AtomicU64; DisconnectReason::ALL.len()],
    /// Market-data subscriber connections, by reason.
    md_disconnects: [AtomicU64; DisconnectReason::ALL.len()],
    throttles: AtomicU64,
    md_throttles: AtomicU64,
    busy: AtomicU64,
    /// `REPLAY_REPORTS` answers: complete, a page (more), a gap.
    replays: [AtomicU64; 3],
    reports_replayed: AtomicU64,
}

impl GatewayMetrics {
    /// A session logged in.
    pub fn session_opened(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
    }
    /// A session ended, for `reason`.
    pub fn session_closed(&self, reason: DisconnectReason) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
        self.disconnected(reason);
    }
    /// Counts a disconnect without touching the session gauge (e.g. a
    /// connection refused before login).
    pub fn disconnected(&self, reason: DisconnectReason) {
        self.disconnects[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
    /// A `REPLAY_REPORTS` was answered with `code` (0, `REPLAY_MORE` or
    /// `REPLAY_GAP`; a refusal is not a replay) after `reports` reports.
    pub fn replayed(&self, code: u16, reports: u32) {
        let i = match code {
            0 => 0,
            crate::wire::code::REPLAY_MORE => 1,
            crate::wire::code::REPLAY_GAP => 2,
            _ => return,
        };
        self.replays[i].fetch_add(1, Ordering::Relaxed);
        self.reports_replayed
            .fetch_add(u64::from(reports), Ordering::Relaxed);
    }
    /// `REPLAY_REPORTS` answers: (complete, more, gap).
    pub fn replays(&self) -> (u64, u64, u64) {
        let n = |i: usize| self.replays[i].load(Ordering::Relaxed);
        (n(0), n(1), n(2))
    }
    /// Reports sent again by `REPLAY_REPORTS`.
    pub fn reports_replayed(&self) -> u64 {
        self.reports_replayed.load(Ordering::Relaxed)
    }
    /// Sets the number of sessions outright.
    pub fn set_sessions(&self, n: i64) {
        self.sessions.store(n, Ordering::Relaxed);
    }
    /// A market-data subscription started.
    pub fn subscriber_added(&self) {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
    }
    /// A market-data subscription ended.
    pub fn subscriber_removed(&self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
    /// Sets the number of subscribers outright.
    pub fn set_subscribers(&self, n: i64) {
        self.subscribers.store(n, Ordering::Relaxed);
    }
    /// `n` market-data updates were conflated for a slow subscriber.
    pub fn conflated(&self, n: u64) {
        self.conflations.fetch_add(n, Ordering::Relaxed);
    }
    /// A request was refused by a session throttle.
    pub fn throttled(&self) {
        self.throttles.fetch_add(1, Ordering::Relaxed);
    }
    /// `n` market-data subscriber connections ended for `reason`.
    pub fn md_disconnected(&self, reason: DisconnectReason, n: u64) {
        self.md_disconnects[reason as usize].fetch_add(n, Ordering::Relaxed);
    }
    /// `n` market-data retransmit / snapshot requests were refused by a
    /// subscriber's request budget.
    pub fn md_throttled(&self, n: u64) {
        self.md_throttles.fetch_add(n, Ordering::Relaxed);
    }
    /// A request was refused with `busy` (a full inbound ring).
    pub fn busy(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }
    /// Current sessions.
    pub fn sessions(&self) -> i64 {
        self.sessions.load(Ordering::Relaxed)
    }
    /// Order-entry disconnects so far for `reason`.
    pub fn disconnects(&self, reason: DisconnectReason) -> u64 {
        self.disconnects[reason as usize].load(Ordering::Relaxed)
    }
    /// Market-data disconnects so far for `reason`.
    pub fn md_disconnects(&self, reason: DisconnectReason) -> u64 {
        self.md_disconnects[reason as usize].load(Ordering::Relaxed)
    }
    /// Current market-data subscriptions.
    pub fn subscribers(&self) -> i64 {
        self.subscribers.load(Ordering::Relaxed)
    }
    /// Market-data updates conflated so far.
    pub fn conflations(&self) -> u64 {
        self.conflations.load(Ordering::Relaxed)
    }
    /// Order-entry requests refused by the session throttle so far.
    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }
    /// Market-data requests refused by a subscriber's budget so far.
    pub fn md_throttles(&self) -> u64 {
        self.md_throttles.load(Ordering::Relaxed)
    }
    /// Requests refused with `busy` so far.
    pub fn busy_total(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }
}
