//! The sans-IO order-entry session state machine (quinn-proto shape): bytes
//! in (`handle_bytes`), engine commands out (`poll_request`), engine outputs
//! in (`handle_event` / `handle_end` / `handle_busy`), bytes out
//! (`poll_transmit`), time in (`handle_timeout`). No sockets, no clock, no
//! threads: tests drive it directly.
//!
//! Invariants: a request number is executed at most once (a retransmission
//! is answered from the stored outcome, never re-submitted); execution
//! reports are numbered 1, 2, 3, … per session and a connection receives
//! them in order without duplicates or holes (a consumer that falls more
//! than `replay_reports_max` behind is closed instead); every buffer is
//! bounded (frame reader, outgoing bytes, replay store, outcome store,
//! requests in flight, tracked orders); a session acts only for the owners
//! and permissions its token grants.

use crate::wire::*;
use engine::{Command, Event, OwnerId, Seq};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

/// Permissions of a token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perms {
    /// Orders, cancels, replaces, mass cancels.
    pub trade: bool,
    /// Transfers and accounts.
    pub transfer: bool,
    /// Instruments, halts, tokens.
    pub admin: bool,
    /// Balances, open orders.
    pub read: bool,
}

impl Perms {
    /// Everything.
    pub const ALL: Perms = Perms {
        trade: true,
        transfer: true,
        admin: true,
        read: true,
    };

    /// As `PERM_*` bits.
    pub fn bits(self) -> u8 {
        (self.trade as u8 * PERM_TRADE)
            | (self.transfer as u8 * PERM_TRANSFER)
            | (self.admin as u8 * PERM_ADMIN)
            | (self.read as u8 * PERM_READ)
    }

    /// From `PERM_*` bits.
    pub fn from_bits(b: u8) -> Perms {
        Perms {
            trade: b & PERM_TRADE != 0,
            transfer: b & PERM_TRANSFER != 0,
            admin: b & PERM_ADMIN != 0,
            read: b & PERM_READ != 0,
        }
    }
}

/// What a token allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// Owners the session may act for.
    pub owners: Vec<OwnerId>,
    /// What it may do.
    pub perms: Perms,
}

/// Token → grant table. Interior `RwLock`: share it as `Arc<Auth>`; an admin
/// session's `AddToken` writes through the same `Arc`.
#[derive(Debug, Default)]
pub struct Auth {
    tokens: RwLock<HashMap<String, Grant>>,
}

impl Auth {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a token.
    pub fn add_token(&self, token: &str, owners: Vec<OwnerId>, perms: Perms) {
        let mut t = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        t.insert(token.to_string(), Grant { owners, perms });
    }

    /// The grant of a token.
    pub fn check(&self, token: &str) -> Option<Grant> {
        let t = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        t.get(token).cloned()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Session settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Send a heartbeat after this long without sending anything.
    pub heartbeat_interval_ns: u64,
    /// Close after this long without hearing anything.
    pub idle_timeout_ns: u64,
    /// New orders per second (token bucket refill).
    pub throttle_per_s: u32,
    /// Token bucket size.
    pub throttle_burst: u32,
    /// Most live orders placed through this session (in flight included).
    pub max_open_orders: u32,
    /// Bad frames tolerated on a connection before closing it.
    pub garbage_limit: u32,
    /// Execution reports kept for replay (and the most a live consumer may lag).
    pub replay_reports_max: usize,
    /// Cancel-on-disconnect when the login does not ask for it.
    pub cancel_on_disconnect_default: bool,
    /// Engine partitions (a mass cancel over all instruments ends once per partition).
    pub partitions: usize,
    /// Most requests in flight to the engine (queued or unanswered).
    pub max_in_flight: usize,
    /// Outcomes of past requests kept for retransmissions (count).
    pub outcomes_max: usize,
    /// Outcomes of past requests kept for retransmissions (bytes).
    pub outcome_bytes_max: usize,
    /// Unsent non-report bytes tolerated before closing as a slow consumer.
    pub outgoing_bytes_max: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            heartbeat_interval_ns: 1_000_000_000,
            idle_timeout_ns: 5_000_000_000,
            throttle_per_s: 10_000,
            throttle_burst: 1_000,
            max_open_orders: 10_000,
            garbage_limit: 16,
            replay_reports_max: 65_536,
            cancel_on_disconnect_default: false,
            partitions: 1,
            max_in_flight: 1_024,
            outcomes_max: 4_096,
            outcome_bytes_max: 4 << 20,
            outgoing_bytes_max: 8 << 20,
        }
    }
}

/// A command for the engine. `token` = (session id & 0xFFFF_FFFF) << 32 |
/// a per-session counter (never 0; see `token_session`); every output of
/// the command must come back with it. Order ids are global.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineRequest {
    /// Correlation token.
    pub token: u64,
    /// The command.
    pub command: Command,
}

/// The session id (low 32 bits) a token belongs to.
pub fn token_session(token: u64) -> u64 {
    token >> 32
}

/// One order-entry session.
#[derive(Debug)]
pub struct Session {
    _p: (),
}

impl Session {
    /// A new session; `session_id` is the server's key for it (its low 32
    /// bits go into every token).
    pub fn new(session_id: u64, cfg: SessionConfig, auth: Arc<Auth>) -> Session {
        let _ = (session_id, cfg, auth);
        todo!()
    }

    /// Bytes read from the stream.
    pub fn handle_bytes(&mut self, now_ns: u64, bytes: &[u8]) {
        let _ = (now_ns, bytes);
        todo!()
    }

    /// The next command to submit to the engine, in order.
    pub fn poll_request(&mut self) -> Option<EngineRequest> {
        todo!()
    }

    /// The engine ring was full for that request: report busy to the client.
    pub fn handle_busy(&mut self, token: u64) {
        self.handle_reject(token, code::BUSY)
    }

    /// The server could not submit that request (e.g. unroutable); `code` is
    /// a gateway code.
    pub fn handle_reject(&mut self, token: u64, code: u16) {
        let _ = (token, code);
        todo!()
    }

    /// An engine event concerning this session. Order ids are local to `partition`.
    pub fn handle_event(
        &mut self,
        now_ns: u64,
        token: u64,
        partition: usize,
        seq: Seq,
        event: &Event,
    ) {
        let _ = (now_ns, token, partition, seq, event);
        todo!()
    }

    /// All outputs of that request (from one partition) were delivered.
    pub fn handle_end(&mut self, token: u64) {
        let _ = token;
        todo!()
    }

    /// Appends coalesced outgoing bytes; true if anything was appended.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        let _ = out;
        todo!()
    }

    /// Heartbeats out, idle close.
    pub fn handle_timeout(&mut self, now_ns: u64) {
        let _ = now_ns;
        todo!()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        todo!()
    }

    /// Close the connection with code + reason.
    pub fn poll_close(&mut self) -> Option<(u32, String)> {
        todo!()
    }

    /// Owners granted (after login).
    pub fn owners(&self) -> &[OwnerId] {
        todo!()
    }

    /// Whether logged in on the current connection.
    pub fn logged_in(&self) -> bool {
        todo!()
    }

    /// Whether cancel-on-disconnect is on.
    pub fn cancel_on_disconnect(&self) -> bool {
        todo!()
    }

    /// The connection dropped: mass cancels to submit if cancel-on-disconnect.
    pub fn handle_disconnect(&mut self) -> Vec<EngineRequest> {
        todo!()
    }

    /// A new connection took over this session.
    pub fn handle_reconnect(&mut self, now_ns: u64) {
        let _ = now_ns;
        todo!()
    }
}

#[allow(dead_code)]
struct Unused(VecDeque<u8>);
