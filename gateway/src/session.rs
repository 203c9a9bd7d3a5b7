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

mod replay;

use crate::wire::*;
use engine::{AccountFlags, Actor, Command, Event, OwnerId, Seq};
use journal::record::Origin;
pub use replay::ReplayAnswer;
use replay::{ReplayAsk, ReplayPages};
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
    /// Acting on other owners' accounts and transfers, and debiting accounts
    /// without `debits_must_not_exceed_credits` (issuers, credit lines).
    pub ledger_admin: bool,
}

impl Perms {
    /// Everything.
    pub const ALL: Perms = Perms {
        trade: true,
        transfer: true,
        admin: true,
        read: true,
        ledger_admin: true,
    };

    /// As `PERM_*` bits.
    pub fn bits(self) -> u8 {
        (self.trade as u8 * PERM_TRADE)
            | (self.transfer as u8 * PERM_TRANSFER)
            | (self.admin as u8 * PERM_ADMIN)
            | (self.read as u8 * PERM_READ)
            | (self.ledger_admin as u8 * PERM_LEDGER_ADMIN)
    }

    /// From `PERM_*` bits.
    pub fn from_bits(b: u8) -> Perms {
        Perms {
            trade: b & PERM_TRADE != 0,
            transfer: b & PERM_TRANSFER != 0,
            admin: b & PERM_ADMIN != 0,
            read: b & PERM_READ != 0,
            ledger_admin: b & PERM_LEDGER_ADMIN != 0,
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
    /// Bumped by every change, so the server knows when to save the table.
    generation: std::sync::atomic::AtomicU64,
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
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Changes so far (compare to know whether to save the table).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every token with its grant, sorted by token.
    pub fn entries(&self) -> Vec<(String, Grant)> {
        let t = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(String, Grant)> = t.iter().map(|(k, g)| (k.clone(), g.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
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
    /// The client request it serves (`Origin::NONE` for the session's own
    /// commands, and on a single node): replicated with the command.
    pub origin: Origin,
}

impl EngineRequest {
    /// A command of the session's own, serving no client request.
    pub fn internal(token: u64, command: Command) -> EngineRequest {
        EngineRequest {
            token,
            command,
            origin: Origin::NONE,
        }
    }
}

/// The key of a client session that every server of a cluster computes
/// alike: its client-chosen id and its token's grant (owners, sorted, and
/// permissions), never the token itself. Never 0.
pub fn origin_key(client_session_id: u64, grant: &Grant) -> u64 {
    let mut owners: Vec<u64> = grant.owners.iter().map(|o| o.0).collect();
    owners.sort_unstable();
    let mut h = engine::rng::SplitMix64::new(client_session_id ^ 0x6f72_6967_696e_6b65);
    let mut k = h.next_u64() ^ grant.perms.bits() as u64;
    for o in owners {
        h = engine::rng::SplitMix64::new(k ^ o);
        k = h.next_u64();
    }
    k.max(1)
}

/// What a cluster's partitions had committed of a session's requests when
/// it logged in to this server (see `Session::handle_committed`).
#[derive(Clone, Debug, Default)]
struct Committed {
    /// Highest committed request per partition.
    by_partition: Vec<u64>,
    /// Their maximum.
    upto: u64,
    /// The session's own `last_request` before: requests up to it are
    /// answered from its own outcome store, as always.
    floor: u64,
}

/// The session id (low 32 bits) a token belongs to.
pub fn token_session(token: u64) -> u64 {
    token >> 32
}

/// Bytes handed to the frame reader at a time (bounds its buffer to
/// `MAX_FRAME` + this, whatever the caller's chunk size).
const READ_CHUNK: usize = 64 << 10;
/// Most report bytes `poll_transmit` appends from the replay store per call.
const TRANSMIT_CHUNK: usize = 256 << 10;
/// One token, in bucket units (the bucket counts nano-tokens).
const TOKEN_UNITS: u64 = 1_000_000_000;
/// How long a refused command that must not be dropped waits before it is
/// submitted again.
const RETRY_NS: u64 = 1_000_000;
const REPORT_FRAME: usize = HEADER_LEN + core::mem::size_of::<ExecutionReport>();

/// A tracked order of one of the session's owners.
#[derive(Clone, Copy, Debug)]
struct Tracked {
    client_order_id: u64,
    instrument: u32,
    side: u8,
    price: u64,
    cum: u64,
    leaves: u64,
    /// Placed through this session (counts against `max_open_orders`).
    mine: bool,
}

impl Tracked {
    fn status(&self) -> u8 {
        if self.leaves == 0 && self.cum > 0 {
            ord_status::FILLED
        } else if self.cum > 0 {
            ord_status::PARTIALLY_FILLED
        } else {
            ord_status::NEW
        }
    }
}

#[derive(Debug)]
enum PendKind {
    NewOrder(NewOrderMsg),
    Cancel {
        owner: u64,
        order_id: u64,
    },
    Replace {
        owner: u64,
        order_id: u64,
    },
    /// A cancel by client order id, sent to every partition: the one that
    /// holds the order reports its `Canceled` (`found`); the others'
    /// `unknown_order` is no answer. Refused once all have answered
    /// without finding it.
    CancelByClientId {
        owner: u64,
        client_order_id: u64,
        found: bool,
    },
    /// Requests answered by a `RequestAck` at the end.
    Ack,
    QueryBalance {
        answered: bool,
    },
    Transfers {
        ids: Vec<u128>,
        codes: Vec<u16>,
        got: Vec<bool>,
        next: usize,
    },
    /// Open orders, answered by the engine (one row per `OpenOrder` event).
    OpenOrders {
        count: u32,
    },
    /// A transfer lookup (`lookup`: every partition answers each id; a
    /// `transfer_not_found` from one is no answer, found wins) or an
    /// account listing; rows arrive through `handle_row`.
    TransferQuery {
        count: u32,
        more: bool,
        lookup: bool,
    },
    /// Cancel-on-disconnect: no reply.
    Internal,
}

#[derive(Debug)]
struct Pending {
    request: u64,
    template: u16,
    kind: PendKind,
    ends_left: u32,
    /// Outstanding engine commands this request accounts for.
    commands: usize,
    code: u16,
    engine_seq: u64,
    /// The partition whose input `engine_seq` numbers.
    partition: u8,
    /// A new order whose accept/reject was seen (its in-flight slot released).
    settled: bool,
}

impl Pending {
    /// A command of the session's own (cancel-on-disconnect): no reply,
    /// one end per partition.
    fn internal(partitions: usize) -> Pending {
        Pending {
            request: 0,
            template: template::MASS_CANCEL,
            kind: PendKind::Internal,
            ends_left: partitions.max(1) as u32,
            commands: 0,
            code: 0,
            engine_seq: 0,
            partition: 0,
            settled: true,
        }
    }
}

#[derive(Debug)]
enum Outcome {
    InFlight(Vec<u8>),
    Done(Vec<u8>),
    NotKept,
}

/// What every report about one engine event shares.
#[derive(Clone, Copy, Debug)]
struct EventCtx {
    /// The partition whose local order ids the event names.
    partition: usize,
    /// The client request the event answers, if it answers one.
    request: Option<u64>,
    /// The input was this session's own request, known by its replicated
    /// origin rather than by a pending request (a replay: see `replay`).
    own: bool,
    /// The fields every report about the event carries.
    base: ExecutionReport,
}

impl EventCtx {
    /// The session-wide id of a partition-local order id.
    fn global(&self, id: engine::OrderId) -> u64 {
        runtime::globalize(self.partition, id).0
    }
}

/// What every report issued for one engine event shares, applied by
/// `report`: the event's partition (for reports with an engine seq) and
/// flags (`REPORT_REPLAYED` during a replay).
#[derive(Clone, Copy, Debug, Default)]
struct ReportCtx {
    partition: u8,
    flags: u8,
}

/// One order-entry session.
#[derive(Debug)]
pub struct Session {
    id: u64,
    /// New orders refused by the throttle (metrics).
    throttled_total: u64,
    cfg: SessionConfig,
    auth: Arc<Auth>,
    // Identity, fixed by the first successful login.
    token: Option<String>,
    client_session_id: u64,
    grant: Grant,
    cod: bool,
    /// `origin_key` of the session in a cluster (0: a single node, no
    /// origins).
    origin_key: u64,
    /// What the cluster had committed of this session's requests at its
    /// latest login (none on a single node).
    committed: Option<Committed>,
    /// The request being dispatched is a resend (see `on_request`).
    resending: bool,
    // The current connection.
    connected: bool,
    logged_in: bool,
    reader: FrameReader,
    garbage: u32,
    close: Option<(u32, String)>,
    closing: bool,
    out: Vec<u8>,
    sent_upto: u64,
    now_ns: u64,
    last_recv_ns: u64,
    last_sent_ns: u64,
    // Requests.
    last_request: u64,
    next_token: u32,
    queue: VecDeque<EngineRequest>,
    pending: HashMap<u64, Pending>,
    outstanding_commands: usize,
    outcomes: VecDeque<(u64, Outcome)>,
    outcome_bytes: usize,
    // Reports.
    report_seq: u64,
    /// What the reports being issued share (set per engine event).
    report_ctx: ReportCtx,
    replay: VecDeque<ExecutionReport>,
    /// The newest input of each partition at this session's first login
    /// here: the most a `REPLAY_REPORTS` covers (empty before it).
    live_from: Vec<u64>,
    /// `REPLAY_REPORTS` the server has still to answer (at most as many
    /// as partitions).
    replays: VecDeque<ReplayAsk>,
    /// A paged replay's tracking, for its next page.
    replay_pages: Option<ReplayPages>,
    orders: HashMap<u64, Tracked>,
    open_own: u32,
    inflight_new: u32,
    /// A command the ring refused that must not be dropped (a
    /// cancel-on-disconnect arm): retried from `handle_timeout` at this time.
    retry_at_ns: Option<u64>,
    // Throttle.
    bucket: u64,
    bucket_at: u64,
    scratch: Vec<u8>,
}

fn report_code(code: u16) -> u16 {
    if code == code::BUSY {
        code::ENGINE_BUSY
    } else {
        code
    }
}

fn reject_text(s: &str) -> [u8; REJECT_TEXT_LEN] {
    let mut t = [0u8; REJECT_TEXT_LEN];
    let b = s.as_bytes();
    let n = b.len().min(REJECT_TEXT_LEN);
    t[..n].copy_from_slice(&b[..n]);
    for c in &mut t[..n] {
        if !c.is_ascii() {
            *c = b'?';
        }
    }
    t
}

fn request_template(t: u16) -> bool {
    !matches!(t, template::LOGIN | template::HEARTBEAT | template::LOGOUT) && !is_server_template(t)
}

impl Session {
    /// A new session for a new connection; `session_id` is the server's key
    /// for it (its low 32 bits go into every token, see `EngineRequest`).
    pub fn new(session_id: u64, cfg: SessionConfig, auth: Arc<Auth>) -> Session {
        let bucket = (cfg.throttle_burst as u64).saturating_mul(TOKEN_UNITS);
        Session {
            throttled_total: 0,
            id: session_id & 0xFFFF_FFFF,
            cfg,
            auth,
            token: None,
            client_session_id: 0,
            grant: Grant::default(),
            cod: false,
            origin_key: 0,
            committed: None,
            resending: false,
            connected: true,
            logged_in: false,
            reader: FrameReader::new(),
            garbage: 0,
            close: None,
            closing: false,
            out: Vec::new(),
            sent_upto: 0,
            now_ns: 0,
            last_recv_ns: 0,
            last_sent_ns: 0,
            last_request: 0,
            next_token: 0,
            queue: VecDeque::new(),
            pending: HashMap::new(),
            outstanding_commands: 0,
            outcomes: VecDeque::new(),
            outcome_bytes: 0,
            report_seq: 0,
            report_ctx: ReportCtx::default(),
            replay: VecDeque::new(),
            live_from: Vec::new(),
            replays: VecDeque::new(),
            replay_pages: None,
            orders: HashMap::new(),
            open_own: 0,
            inflight_new: 0,
            retry_at_ns: None,
            bucket,
            bucket_at: 0,
            scratch: Vec::new(),
        }
    }

    /// The server's key for this session.
    pub fn session_id(&self) -> u64 {
        self.id
    }

    /// The client-chosen session id of the first login (0 before it).
    pub fn client_session_id(&self) -> u64 {
        self.client_session_id
    }

    /// Highest request number processed.
    pub fn last_request(&self) -> u64 {
        self.last_request
    }

    /// Highest execution report seq issued.
    pub fn last_report_seq(&self) -> u64 {
        self.report_seq
    }

    /// Requests queued or awaiting engine outputs.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// New orders refused by the throttle so far (metrics).
    pub fn throttled_total(&self) -> u64 {
        self.throttled_total
    }

    /// Bytes held by the session's buffers (reader, outgoing, outcomes, replay).
    pub fn memory_bytes(&self) -> usize {
        self.reader.buffered()
            + self.out.len()
            + self.outcome_bytes
            + self.replay.len() * core::mem::size_of::<ExecutionReport>()
            + self.queue.len() * core::mem::size_of::<EngineRequest>()
    }

    fn advance(&mut self, now_ns: u64) {
        if now_ns > self.now_ns {
            self.now_ns = now_ns;
        }
    }

    fn do_close(&mut self, code: u32, reason: String) {
        if !self.closing {
            self.closing = true;
            self.close = Some((code, reason));
        }
    }

    // ----- input ---------------------------------------------------------

    /// The server stopped leading its cluster: the session closes
    /// (`close::NOT_LEADER`); its client reconnects to the new leader.
    pub fn handle_step_down(&mut self) {
        self.do_close(
            close::NOT_LEADER,
            "this server stopped leading the cluster; reconnect to the leader".into(),
        );
    }

    /// Bytes read from the stream.
    pub fn handle_bytes(&mut self, now_ns: u64, bytes: &[u8]) {
        self.advance(now_ns);
        if self.closing || !self.connected {
            return;
        }
        self.last_recv_ns = self.now_ns;
        let mut reader = std::mem::take(&mut self.reader);
        for chunk in bytes.chunks(READ_CHUNK) {
            reader.push(chunk);
            while let Some(frame) = reader.next_frame() {
                match frame {
                    Ok((h, body)) => self.on_frame(&h, body),
                    Err(e) => self.bad_frame(&e, 0, 0),
                }
                if self.closing {
                    break;
                }
            }
            if self.closing {
                break;
            }
        }
        if reader.is_broken() && !self.closing {
            self.do_close(
                close::FRAMING_LOST,
                "a frame header that cannot be skipped".to_string(),
            );
        }
        if self.closing {
            reader.reset();
        }
        self.reader = reader;
    }

    fn bad_frame(&mut self, e: &FrameError, template: u16, request: u64) {
        self.protocol_reject(e.code(), template, request, &e.to_string(), true);
        if e.is_fatal() {
            self.do_close(close::FRAMING_LOST, e.to_string());
        }
    }

    fn protocol_reject(
        &mut self,
        code: u16,
        template: u16,
        request: u64,
        text: &str,
        garbage: bool,
    ) {
        if garbage {
            self.garbage = self.garbage.saturating_add(1);
        }
        let m = ProtocolRejectMsg {
            request,
            code,
            template,
            garbage_count: self.garbage.min(u16::MAX as u32) as u16,
            reserved: 0,
            text: reject_text(text),
        };
        self.push_out(template::PROTOCOL_REJECT, &m, None);
        if garbage && self.garbage >= self.cfg.garbage_limit {
            self.do_close(
                close::PROTOCOL_VIOLATION,
                format!("{} bad frames; last: {text}", self.garbage),
            );
        }
    }

    fn on_frame(&mut self, h: &Header, body: &[u8]) {
        let request = if request_template(h.template) {
            read_pod::<u64>(body).unwrap_or(0)
        } else {
            0
        };
        if is_server_template(h.template) {
            let text = format!("template {} is server to client only", h.template);
            self.protocol_reject(
                reject::UNEXPECTED_TEMPLATE,
                h.template,
                request,
                &text,
                true,
            );
            return;
        }
        let msg = match decode_client(h, body) {
            Ok(m) => m,
            Err(e) => return self.bad_frame(&e, h.template, request),
        };
        if !self.logged_in {
            match msg {
                ClientMsg::Login(m) => self.login(&m),
                _ => self.do_close(
                    close::NOT_LOGGED_IN,
                    format!("template {} before login", h.template),
                ),
            }
            return;
        }
        match msg {
            ClientMsg::Login(_) => self.protocol_reject(
                reject::ALREADY_LOGGED_IN,
                h.template,
                0,
                "already logged in",
                true,
            ),
            ClientMsg::Heartbeat(_) => {}
            ClientMsg::Logout => {
                self.push_out(template::LOGOUT, &Logout::default(), None);
                self.do_close(close::NORMAL, "logout".to_string());
            }
            other => self.on_request(h.template, other),
        }
    }

    fn login(&mut self, m: &Login) {
        let refuse = |s: &mut Session, code: u16, why: &str| {
            let r = LoginRejected {
                code,
                reserved: [0; 6],
            };
            s.push_out(template::LOGIN_REJECTED, &r, None);
            s.do_close(close::AUTH_FAILED, why.to_string());
        };
        let Some(token) = token_str(&m.token).map(str::to_string) else {
            return refuse(self, login_reject::BAD_TOKEN, "malformed token");
        };
        let Some(grant) = self.auth.check(&token) else {
            return refuse(self, login_reject::BAD_TOKEN, "unknown token");
        };
        if let Some(t) = &self.token {
            if *t != token || self.client_session_id != m.session_id {
                return refuse(
                    self,
                    login_reject::SESSION_MISMATCH,
                    "session belongs to another token or id",
                );
            }
        }
        self.token = Some(token);
        self.client_session_id = m.session_id;
        self.grant = grant;
        self.cod =
            m.flags & LOGIN_CANCEL_ON_DISCONNECT != 0 || self.cfg.cancel_on_disconnect_default;
        self.logged_in = true;
        if let Some(c) = &self.committed {
            // Requests an earlier leader committed are this session's too.
            self.last_request = self.last_request.max(c.upto);
        }
        let resume = m.resume_after.min(self.report_seq);
        let oldest = self
            .replay
            .front()
            .map_or(self.report_seq + 1, |r| r.report_seq);
        self.sent_upto = if oldest - 1 > resume {
            // The store lost reports the client lacks: sending the rest
            // by number would leave a hole no replay could fill (a
            // replay covers only what came before `live_from`). Nothing
            // goes by number; `live_from` moves to now (the server sets
            // it again), and `REPLAY_REPORTS` from the client's engine
            // seqs covers everything it lacks (`reports_lost`).
            self.live_from.clear();
            self.report_seq
        } else {
            resume
        };
        let a = LoginAccepted {
            session_id: m.session_id,
            last_request: self.last_request,
            last_report_seq: self.report_seq,
            replay_from: self.sent_upto + 1,
            heartbeat_interval_ns: self.cfg.heartbeat_interval_ns,
            throttle_budget: self.budget(),
            perms: self.grant.perms.bits(),
            cancel_on_disconnect: self.cod as u8,
            partitions: self.cfg.partitions.clamp(1, u16::MAX as usize) as u16,
        };
        self.push_out(template::LOGIN_ACCEPTED, &a, None);
        if self.cod {
            self.arm_cod();
        }
    }

    /// Arms cancel-on-disconnect in the engine for every owner, ahead of
    /// any request of this login: if this gateway dies, or another node
    /// takes over as leader, the next one to serve cancels for the session
    /// (`Command::SessionsLost`). Done at every login (a resumed session may
    /// have been forgotten by a `sessions_lost` since); arming is idempotent.
    fn arm_cod(&mut self) {
        for owner in self.grant.owners.clone() {
            let token = self.next_token();
            self.pending
                .insert(token, Pending::internal(self.cfg.partitions));
            let command = Command::CodArm {
                session: self.id,
                owner,
            };
            self.queue
                .push_back(EngineRequest::internal(token, command));
        }
    }

    /// In a cluster, before the login frame: the session's `origin_key` and
    /// the highest request of it each partition has committed (by
    /// partition; all 0 for a session the cluster never saw). The login
    /// then reports their maximum as `last_request`, and a retransmission
    /// numbered up to it is executed only where the server finds, per
    /// partition (`executed_before`), that it was not committed: a request
    /// an earlier leader committed is never executed twice.
    pub fn handle_committed(&mut self, origin_key: u64, by_partition: Vec<u64>) {
        self.origin_key = origin_key;
        let upto = by_partition.iter().copied().max().unwrap_or(0);
        self.committed = Some(Committed {
            by_partition,
            upto,
            floor: self.last_request,
        });
    }

    /// Whether request `request` may have been committed under an earlier
    /// leader (numbered at most what the cluster had committed at login).
    /// Only numbers this session did not see itself (above its own
    /// `last_request` at the login), and only the last `outcomes_max`,
    /// what a single server's outcome store answers for: a client resends
    /// what was unanswered when its leader went, and at most
    /// `max_in_flight` requests were.
    fn may_be_committed(&self, request: u64) -> bool {
        self.committed.as_ref().is_some_and(|c| {
            request > c.floor
                && request <= c.upto
                && request + self.cfg.outcomes_max as u64 > c.upto
        })
    }

    /// Whether partition `partition` committed the request `origin` names
    /// before this session's login here (a retransmission there is not
    /// proposed again). Commands that answer the same when repeated
    /// (queries; transfers, which the ledger answers `exists`) are always
    /// proposed again: their answer is worth more than "executed before".
    pub fn executed_before(&self, origin: Origin, command: &Command, partition: usize) -> bool {
        if origin.is_none() || !self.may_be_committed(origin.request) {
            // A single node, or a number the cluster's table does not cover.
            return false;
        }
        let repeatable = matches!(
            command,
            Command::QueryBook { .. }
                | Command::QueryBalance { .. }
                | Command::QueryOpenOrders { .. }
                | Command::LookupTransfer { .. }
                | Command::GetAccountTransfers { .. }
                | Command::Transfer { .. }
        );
        !repeatable
            && self.committed.as_ref().is_some_and(|c| {
                c.by_partition
                    .get(partition)
                    .is_some_and(|&h| origin.request <= h)
            })
    }

    /// The server found the request of `token` committed under an earlier
    /// leader in every partition it goes to (`executed_before`): it is not
    /// proposed again, and the client is told so (`outcome_not_kept`: the
    /// outcome went with that leader; the order or its state is queryable).
    pub fn handle_executed_before(&mut self, token: u64) {
        let Some(mut p) = self.pending.remove(&token) else {
            return;
        };
        self.unqueue(token);
        self.outstanding_commands = self.outstanding_commands.saturating_sub(p.commands);
        if matches!(p.kind, PendKind::NewOrder(_)) {
            self.settle_new_order(&mut p);
        }
        let text = format!(
            "request {} was executed before a leader change; its outcome is not kept here",
            p.request
        );
        self.protocol_reject(
            reject::OUTCOME_NOT_KEPT,
            p.template,
            p.request,
            &text,
            false,
        );
        if let Some(i) = self.find_outcome(p.request) {
            if let Outcome::InFlight(v) = &self.outcomes[i].1 {
                self.outcome_bytes -= v.len();
            }
            self.outcomes[i].1 = Outcome::NotKept;
        }
    }

    /// The ring refused `req`, which must not be dropped (a
    /// cancel-on-disconnect arm): it goes back to the front of the queue,
    /// ahead of every later request, and is submitted again from
    /// `handle_timeout` a millisecond later.
    pub fn handle_retry(&mut self, req: EngineRequest) {
        self.queue.push_front(req);
        self.retry_at_ns = Some(self.now_ns.saturating_add(RETRY_NS));
    }

    /// Whether `handle_retry` holds a command back.
    pub fn retrying(&self) -> bool {
        self.retry_at_ns.is_some()
    }

    // ----- requests ------------------------------------------------------

    fn owns(&self, owner: u64) -> bool {
        self.grant.owners.contains(&OwnerId(owner))
    }

    fn find_outcome(&self, request: u64) -> Option<usize> {
        self.outcomes
            .binary_search_by_key(&request, |(r, _)| *r)
            .ok()
    }

    fn on_request(&mut self, template: u16, msg: ClientMsg<'_>) {
        let number = msg.request().unwrap_or(0);
        let resend = number <= self.last_request;
        let Some(request) = self.new_request(template, number) else {
            return;
        };
        // A resend of a request an earlier leader may have executed passes
        // no refusal that could misstate it (throttle, in-flight and
        // open-order limits): its answer is what the partitions committed.
        // Bounded: each number at most once, the last `outcomes_max` only.
        self.resending = resend;
        self.dispatch(request, template, msg);
        self.resending = false;
    }

    fn dispatch(&mut self, request: u64, template: u16, msg: ClientMsg<'_>) {
        let perms = self.grant.perms;
        match msg {
            ClientMsg::NewOrder(m) => self.new_order(request, template, perms, m),
            ClientMsg::Cancel(m) => {
                let code = self.order_guard(perms, m.owner);
                if code != 0 {
                    self.cancel_reject(request, m.owner, m.order_id, code, 0);
                    return self.finish_outcome(request);
                }
                let cmd = Command::Cancel {
                    owner: OwnerId(m.owner),
                    order_id: engine::OrderId(m.order_id),
                };
                let kind = PendKind::Cancel {
                    owner: m.owner,
                    order_id: m.order_id,
                };
                self.submit(request, template, kind, &[cmd], 1);
            }
            ClientMsg::Replace(m) => {
                let code = self.order_guard(perms, m.owner);
                if code != 0 {
                    self.cancel_reject(request, m.owner, m.order_id, code, 0);
                    return self.finish_outcome(request);
                }
                let cmd = Command::Replace {
                    owner: OwnerId(m.owner),
                    order_id: engine::OrderId(m.order_id),
                    price: (m.price != 0).then_some(engine::Price(m.price)),
                    qty: (m.qty != 0).then_some(engine::Qty(m.qty)),
                    requeue: m.flags & REPLACE_REQUEUE != 0,
                };
                let kind = PendKind::Replace {
                    owner: m.owner,
                    order_id: m.order_id,
                };
                self.submit(request, template, kind, &[cmd], 1);
            }
            ClientMsg::CancelByClientId(m) => self.cancel_by_client_id(request, template, perms, m),
            ClientMsg::MassCancel(m) => self.mass_cancel(request, template, perms, m),
            ClientMsg::QueryOpenOrders(m) => self.query_open_orders(request, template, perms, m),
            ClientMsg::ReplayReports(m) => self.replay_reports(request, template, m),
            ClientMsg::TransferBatch(h, recs) => {
                self.transfer_batch(request, template, perms, h.count as usize, recs)
            }
            ClientMsg::OpenAccount(m) => self.open_account(request, template, perms, m),
            ClientMsg::QueryBalance(m) => {
                let Some(actor) = self.ledger_actor().filter(|_| perms.read) else {
                    return self.ack_now(request, template, code::NOT_AUTHORIZED);
                };
                if self.over_in_flight(1) {
                    return self.ack_now(request, template, code::TOO_MANY_IN_FLIGHT);
                }
                let cmd = Command::QueryBalance {
                    account: engine::AccountId(u128_from(m.account)),
                    actor,
                };
                let kind = PendKind::QueryBalance { answered: false };
                self.submit(request, template, kind, &[cmd], 1);
            }
            ClientMsg::LookupTransfers(m) => self.lookup_transfers(request, template, perms, &m),
            ClientMsg::GetAccountTransfers(m) => {
                let Some(actor) = self.ledger_actor().filter(|_| perms.read) else {
                    return self.transfers_end_now(request, code::NOT_AUTHORIZED);
                };
                if self.over_in_flight(1) {
                    return self.transfers_end_now(request, code::TOO_MANY_IN_FLIGHT);
                }
                let cmd = Command::GetAccountTransfers {
                    filter: account_filter(&m),
                    actor,
                };
                let kind = PendKind::TransferQuery {
                    count: 0,
                    more: false,
                    lookup: false,
                };
                self.submit(request, template, kind, &[cmd], 1);
            }
            ClientMsg::AddInstrument(_) | ClientMsg::Halt(_) | ClientMsg::Resume(_)
                if !perms.admin =>
            {
                self.ack_now(request, template, code::NOT_AUTHORIZED)
            }
            ClientMsg::AddInstrument(m) => self.admin_submit(
                request,
                template,
                Command::AddInstrument(instrument_spec(&m)),
            ),
            ClientMsg::Halt(m) => self.admin_submit(
                request,
                template,
                Command::Halt {
                    instrument: engine::InstrumentId(m.instrument),
                },
            ),
            ClientMsg::Resume(m) => self.admin_submit(
                request,
                template,
                Command::Resume {
                    instrument: engine::InstrumentId(m.instrument),
                },
            ),
            ClientMsg::AddToken(m) => self.add_token(request, template, perms, &m),
            ClientMsg::Login(_) | ClientMsg::Heartbeat(_) | ClientMsg::Logout => {}
        }
    }

    /// Admits request number `request`: `Some` for a new one (its outcome
    /// is now kept), `None` for number 0 (refused) or a retransmission, which
    /// is never executed again: its kept outcome is sent again, or it is
    /// refused as `outcome_not_kept`.
    fn new_request(&mut self, template: u16, request: u64) -> Option<u64> {
        if request == 0 {
            self.protocol_reject(
                reject::BAD_REQUEST_NUMBER,
                template,
                0,
                "request number 0",
                true,
            );
            return None;
        }
        if request <= self.last_request {
            match self.find_outcome(request).map(|i| &self.outcomes[i].1) {
                Some(Outcome::Done(bytes)) => {
                    let bytes = bytes.clone();
                    self.out_bytes(&bytes);
                }
                Some(Outcome::InFlight(_)) => {}
                // Numbered by an earlier leader of the cluster: executed
                // only where no partition it goes to committed it (the
                // server asks `executed_before` per partition).
                None if self.may_be_committed(request) => {
                    // Kept in request order, as every outcome is.
                    let at = self.outcomes.partition_point(|(r, _)| *r < request);
                    self.outcomes
                        .insert(at, (request, Outcome::InFlight(Vec::new())));
                    self.trim_outcomes();
                    return Some(request);
                }
                _ => self.protocol_reject(
                    reject::OUTCOME_NOT_KEPT,
                    template,
                    request,
                    &format!("request {request} already processed; outcome no longer kept"),
                    false,
                ),
            }
            return None;
        }
        self.last_request = request;
        self.outcomes
            .push_back((request, Outcome::InFlight(Vec::new())));
        self.trim_outcomes();
        Some(request)
    }

    /// A new order: checked against permissions, in-flight and open-order
    /// limits and the throttle, then submitted.
    fn new_order(&mut self, request: u64, template: u16, perms: Perms, m: NewOrderMsg) {
        let code = if !perms.trade || !self.owns(m.owner) {
            code::NOT_AUTHORIZED
        } else if self.over_in_flight(1) {
            code::TOO_MANY_IN_FLIGHT
        } else if !self.resending && self.open_own + self.inflight_new >= self.cfg.max_open_orders {
            code::OPEN_ORDERS_LIMIT
        } else if !self.take_token() {
            self.throttled_total += 1;
            code::THROTTLED
        } else {
            0
        };
        if code != 0 {
            self.order_reject(&m, request, code, 0);
            return self.finish_outcome(request);
        }
        self.inflight_new += 1;
        self.submit(
            request,
            template,
            PendKind::NewOrder(m),
            &[new_order_command(&m)],
            1,
        );
    }

    /// A mass cancel: one partition, or every partition for any instrument.
    /// A cancel by (owner, client order id): every partition looks.
    fn cancel_by_client_id(
        &mut self,
        request: u64,
        template: u16,
        perms: Perms,
        m: CancelByClientIdMsg,
    ) {
        let code = self.order_guard(perms, m.owner);
        if code != 0 {
            self.client_id_reject(request, (m.owner, m.client_order_id), code, 0);
            return self.finish_outcome(request);
        }
        let cmd = Command::CancelByClientId {
            owner: OwnerId(m.owner),
            client_order_id: engine::ClientOrderId(m.client_order_id),
        };
        let kind = PendKind::CancelByClientId {
            owner: m.owner,
            client_order_id: m.client_order_id,
            found: false,
        };
        let ends = self.cfg.partitions.max(1) as u32;
        self.submit(request, template, kind, &[cmd], ends);
    }

    fn mass_cancel(&mut self, request: u64, template: u16, perms: Perms, m: MassCancelMsg) {
        let code = self.order_guard(perms, m.owner);
        if code != 0 {
            return self.ack_now(request, template, code);
        }
        let all = m.instrument == INSTRUMENT_ANY;
        let cmd = Command::MassCancel {
            owner: OwnerId(m.owner),
            instrument: (!all).then_some(engine::InstrumentId(m.instrument)),
            side: match m.side {
                0 => Some(engine::Side::Buy),
                1 => Some(engine::Side::Sell),
                _ => None,
            },
        };
        let ends = if all {
            self.cfg.partitions.max(1) as u32
        } else {
            1
        };
        self.submit(request, template, PendKind::Ack, &[cmd], ends);
    }

    /// An open-orders listing for one owner or all the session's owners.
    fn query_open_orders(&mut self, request: u64, template: u16, perms: Perms, m: QueryOpenOrders) {
        if !(perms.read || perms.trade) || (m.owner != 0 && !self.owns(m.owner)) {
            return self.ack_now(request, template, code::NOT_AUTHORIZED);
        }
        // The engine knows every live order (including those placed by other
        // sessions or before a restart): ask it, per owner, on every
        // partition.
        let owners: Vec<u64> = if m.owner != 0 {
            vec![m.owner]
        } else {
            self.grant.owners.iter().map(|o| o.0).collect()
        };
        let cmds: Vec<Command> = owners
            .iter()
            .map(|&o| Command::QueryOpenOrders {
                owner: engine::OwnerId(o),
                instrument: None,
            })
            .collect();
        if cmds.is_empty() {
            self.ack(request, template, 0, 0, 0);
            self.finish_outcome(request);
        } else {
            let ends = cmds.len() as u32 * self.cfg.partitions.max(1) as u32;
            let kind = PendKind::OpenOrders { count: 0 };
            self.submit(request, template, kind, &cmds, ends);
        }
    }

    /// A batch of `n` transfers (`recs`, read with `transfer_record`),
    /// submitted all or refused all.
    fn transfer_batch(&mut self, request: u64, template: u16, perms: Perms, n: usize, recs: &[u8]) {
        let actor = self.ledger_actor();
        let code = if !perms.transfer || actor.is_none() {
            code::NOT_AUTHORIZED
        } else if self.over_in_flight(n) {
            code::TOO_MANY_IN_FLIGHT
        } else {
            0
        };
        if code != 0 {
            self.transfer_results(request, &vec![code; n]);
            return self.finish_outcome(request);
        }
        let actor = actor.expect("checked above");
        let mut cmds = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let r = transfer_record(recs, i).unwrap_or_default();
            let t = transfer_spec(&r);
            ids.push(t.id.0);
            cmds.push(Command::Transfer {
                transfer: t,
                batch_end: i + 1 == n,
                actor,
            });
        }
        let kind = PendKind::Transfers {
            ids,
            codes: vec![0; n],
            got: vec![false; n],
            next: 0,
        };
        self.submit(request, template, kind, &cmds, n as u32);
    }

    /// Opening an account.
    fn open_account(&mut self, request: u64, template: u16, perms: Perms, m: OpenAccountMsg) {
        // With `transfer` alone: only for an own owner, and only an account
        // that cannot go negative.
        let own_safe = m.owner != 0
            && self.owns(m.owner)
            && m.flags == AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
        // An `admin` sets the exchange up: it may open any account (opening
        // moves no money; debiting an account without
        // `debits_must_not_exceed_credits` still needs ledger_admin).
        let ok = perms.ledger_admin || perms.admin || (perms.transfer && own_safe);
        if !ok {
            return self.ack_now(request, template, code::NOT_AUTHORIZED);
        }
        if self.over_in_flight(1) {
            return self.ack_now(request, template, code::TOO_MANY_IN_FLIGHT);
        }
        let cmd = Command::OpenAccount(account_spec(&m));
        self.submit(request, template, PendKind::Ack, &[cmd], 1);
    }

    /// Transfer lookups by id, each asked of every partition.
    fn lookup_transfers(
        &mut self,
        request: u64,
        template: u16,
        perms: Perms,
        m: &LookupTransfersMsg,
    ) {
        let ids = &m.ids[..m.count as usize];
        let cmds: Vec<Command> = match self.ledger_actor().filter(|_| perms.read) {
            Some(actor) => ids
                .iter()
                .map(|&id| Command::LookupTransfer {
                    id: engine::TransferId(u128_from(id)),
                    actor,
                })
                .collect(),
            None => return self.transfers_end_now(request, code::NOT_AUTHORIZED),
        };
        if self.over_in_flight(cmds.len()) {
            return self.transfers_end_now(request, code::TOO_MANY_IN_FLIGHT);
        }
        // A transfer lives with its accounts, which its id does not name:
        // each lookup goes to every partition.
        let ends = cmds.len() as u32 * self.cfg.partitions.max(1) as u32;
        let kind = PendKind::TransferQuery {
            count: 0,
            more: false,
            lookup: true,
        };
        self.submit(request, template, kind, &cmds, ends);
    }

    /// An admin adds a token, granting no permission it lacks itself.
    fn add_token(&mut self, request: u64, template: u16, perms: Perms, m: &AddTokenMsg) {
        if !perms.admin {
            return self.ack_now(request, template, code::NOT_AUTHORIZED);
        }
        let Some(token) = token_str(&m.token).filter(|t| t.len() >= TOKEN_MIN) else {
            return self.ack_now(request, template, code::INVALID_TOKEN);
        };
        // No escalation: a token grants no permission its creator lacks (an
        // `admin` cannot mint a `ledger_admin`).
        if m.perms & !perms.bits() != 0 {
            return self.ack_now(request, template, code::NOT_AUTHORIZED);
        }
        let owners = m.owners[..m.owners_len as usize]
            .iter()
            .map(|&o| OwnerId(o))
            .collect();
        self.auth
            .add_token(token, owners, Perms::from_bits(m.perms));
        self.ack_now(request, template, 0);
    }

    /// Who this session is to the ledger: admin with `ledger_admin`, else
    /// its token's owners; `None` (refused `not_authorized`) for a grant of
    /// more owners than a journaled actor holds (configuration should never
    /// allow one; failing closed keeps rights from being silently dropped
    /// or widened).
    fn ledger_actor(&self) -> Option<Actor> {
        // Every token an admin session can add fits a journaled actor.
        const _: () = assert!(engine::ACTOR_OWNERS_MAX >= ADD_TOKEN_OWNERS_MAX);
        if self.grant.perms.ledger_admin {
            Some(Actor::Admin)
        } else {
            Actor::owners(&self.grant.owners)
        }
    }

    fn order_guard(&self, perms: Perms, owner: u64) -> u16 {
        if !perms.trade || !self.owns(owner) {
            code::NOT_AUTHORIZED
        } else if self.over_in_flight(1) {
            code::TOO_MANY_IN_FLIGHT
        } else {
            0
        }
    }

    fn admin_submit(&mut self, request: u64, template: u16, cmd: Command) {
        if self.over_in_flight(1) {
            return self.ack_now(request, template, code::TOO_MANY_IN_FLIGHT);
        }
        self.submit(request, template, PendKind::Ack, &[cmd], 1);
    }

    fn over_in_flight(&self, commands: usize) -> bool {
        !self.resending
            && (self.pending.len() >= self.cfg.max_in_flight
                || self.outstanding_commands + commands
                    > self.cfg.max_in_flight.max(2 * TRANSFER_BATCH_MAX))
    }

    fn next_token(&mut self) -> u64 {
        loop {
            self.next_token = self.next_token.wrapping_add(1);
            let t = (self.id << 32) | self.next_token as u64;
            if self.next_token != 0 && !self.pending.contains_key(&t) {
                return t;
            }
        }
    }

    fn submit(&mut self, request: u64, template: u16, kind: PendKind, cmds: &[Command], ends: u32) {
        let token = self.next_token();
        let origin = Origin::new(self.origin_key, request);
        for &command in cmds {
            self.queue.push_back(EngineRequest {
                token,
                command,
                origin,
            });
        }
        self.outstanding_commands += cmds.len();
        self.pending.insert(
            token,
            Pending {
                request,
                template,
                kind,
                ends_left: ends,
                commands: cmds.len(),
                code: 0,
                engine_seq: 0,
                partition: 0,
                settled: false,
            },
        );
    }

    fn budget(&self) -> u32 {
        if self.cfg.throttle_per_s == 0 {
            u32::MAX
        } else {
            (self.bucket / TOKEN_UNITS).min(u32::MAX as u64) as u32
        }
    }

    fn take_token(&mut self) -> bool {
        if self.cfg.throttle_per_s == 0 || self.resending {
            return true;
        }
        let cap = (self.cfg.throttle_burst as u64).saturating_mul(TOKEN_UNITS);
        let elapsed = self.now_ns.saturating_sub(self.bucket_at);
        self.bucket_at = self.now_ns;
        self.bucket = self
            .bucket
            .saturating_add(elapsed.saturating_mul(self.cfg.throttle_per_s as u64))
            .min(cap);
        if self.bucket >= TOKEN_UNITS {
            self.bucket -= TOKEN_UNITS;
            true
        } else {
            false
        }
    }

    /// The next command to submit to the engine, in order (none while a
    /// refused command waits for its retry).
    pub fn poll_request(&mut self) -> Option<EngineRequest> {
        if self.retry_at_ns.is_some() {
            return None;
        }
        self.queue.pop_front()
    }

    // ----- replies ---------------------------------------------------------

    fn out_bytes(&mut self, bytes: &[u8]) {
        if !self.connected {
            return;
        }
        self.out.extend_from_slice(bytes);
        self.check_out();
    }

    fn check_out(&mut self) {
        if self.out.len() > self.cfg.outgoing_bytes_max {
            self.out = Vec::new();
            self.do_close(
                close::SLOW_CONSUMER,
                "outgoing bytes over the limit: the client does not read".to_string(),
            );
        }
    }

    /// Encodes one frame; sends it on the live connection and records it as
    /// part of `request`'s outcome.
    fn push_out<T: bytemuck::Pod>(&mut self, template: u16, body: &T, request: Option<u64>) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        encode_frame(template, body, &mut buf);
        if self.connected {
            self.out_bytes(&buf);
        }
        if let Some(r) = request {
            self.record(r, &buf);
        }
        self.scratch = buf;
    }

    fn record(&mut self, request: u64, bytes: &[u8]) {
        let cap = (self.cfg.outcome_bytes_max / 4).max(REPORT_FRAME);
        if let Some(i) = self.find_outcome(request) {
            let mut drop_it = false;
            if let Outcome::InFlight(v) = &mut self.outcomes[i].1 {
                if v.len() + bytes.len() > cap {
                    self.outcome_bytes -= v.len();
                    drop_it = true;
                } else {
                    v.extend_from_slice(bytes);
                    self.outcome_bytes += bytes.len();
                }
            }
            if drop_it {
                self.outcomes[i].1 = Outcome::NotKept;
            }
        }
    }

    fn finish_outcome(&mut self, request: u64) {
        if let Some(i) = self.find_outcome(request) {
            let o = std::mem::replace(&mut self.outcomes[i].1, Outcome::NotKept);
            self.outcomes[i].1 = match o {
                Outcome::InFlight(v) => Outcome::Done(v),
                other => other,
            };
        }
        self.trim_outcomes();
    }

    fn trim_outcomes(&mut self) {
        while self.outcomes.len() > self.cfg.outcomes_max
            || self.outcome_bytes > self.cfg.outcome_bytes_max
        {
            match self.outcomes.front() {
                Some((_, Outcome::InFlight(_))) | None => break,
                Some(_) => {
                    if let Some((_, Outcome::Done(v))) = self.outcomes.pop_front() {
                        self.outcome_bytes -= v.len();
                    }
                }
            }
        }
    }

    fn ack_now(&mut self, request: u64, template: u16, code: u16) {
        self.ack(request, template, code, 0, 0);
        self.finish_outcome(request);
    }

    fn ack(&mut self, request: u64, template: u16, code: u16, engine_seq: u64, count: u32) {
        let a = RequestAck {
            request,
            engine_seq,
            template,
            code,
            count,
        };
        self.push_out(template::REQUEST_ACK, &a, Some(request));
    }

    fn transfers_end(&mut self, request: u64, code: u16, engine_seq: u64, count: u32, more: bool) {
        let e = TransfersEndMsg {
            request,
            engine_seq,
            count,
            code,
            more: more as u8,
            reserved: 0,
        };
        self.push_out(template::TRANSFERS_END, &e, Some(request));
    }

    fn transfers_end_now(&mut self, request: u64, code: u16) {
        self.transfers_end(request, code, 0, 0, false);
        self.finish_outcome(request);
    }

    fn transfer_results(&mut self, request: u64, codes: &[u16]) {
        let head = TransferResultsHead {
            request,
            count: codes.len() as u32,
            reserved: 0,
        };
        let results: Vec<TransferResult> = codes
            .iter()
            .enumerate()
            .map(|(i, &code)| TransferResult {
                index: i as u32,
                code,
                reserved: 0,
            })
            .collect();
        let mut buf = Vec::with_capacity(
            HEADER_LEN + 16 + results.len() * core::mem::size_of::<TransferResult>(),
        );
        encode_frame_records(template::TRANSFER_RESULTS, &head, &results, &mut buf);
        if self.connected {
            self.out_bytes(&buf);
        }
        self.record(request, &buf);
    }

    /// Issues a sequenced execution report.
    fn report(&mut self, mut r: ExecutionReport, request: Option<u64>) {
        self.report_seq += 1;
        r.report_seq = self.report_seq;
        r.partition = if r.engine_seq != 0 {
            self.report_ctx.partition
        } else {
            0
        };
        r.flags |= self.report_ctx.flags;
        r.throttle_budget = self.budget();
        if self.replay.len() >= self.cfg.replay_reports_max.max(1) {
            self.replay.pop_front();
        }
        self.replay.push_back(r);
        let live = self.connected && self.logged_in && self.sent_upto + 1 == self.report_seq;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        encode_frame(template::EXECUTION_REPORT, &r, &mut buf);
        if live {
            self.sent_upto = self.report_seq;
            self.out_bytes(&buf);
        } else if self.connected
            && self.logged_in
            && self.report_seq - self.sent_upto > self.cfg.replay_reports_max as u64
        {
            self.do_close(
                close::SLOW_CONSUMER,
                "execution reports lag beyond the replay store".to_string(),
            );
        }
        if let Some(req) = request {
            self.record(req, &buf);
        }
        self.scratch = buf;
    }

    fn order_reject(&mut self, m: &NewOrderMsg, request: u64, code: u16, engine_seq: u64) {
        let r = ExecutionReport {
            request,
            client_order_id: m.client_order_id,
            owner: m.owner,
            price: m.price,
            order_qty: m.qty,
            engine_seq,
            instrument: m.instrument,
            reject_code: report_code(code),
            exec_type: exec_type::REJECTED,
            ord_status: ord_status::REJECTED,
            side: m.side,
            flags: REPORT_OWN_REQUEST,
            cancel_reason: CANCEL_REASON_NONE,
            ..Default::default()
        };
        self.report(r, Some(request));
    }

    /// A cancel by client order id refused (`code`): no order id, the
    /// client's id echoed.
    fn client_id_reject(
        &mut self,
        request: u64,
        (owner, client_order_id): (u64, u64),
        code: u16,
        engine_seq: u64,
    ) {
        let r = ExecutionReport {
            request,
            client_order_id,
            owner,
            engine_seq,
            reject_code: report_code(code),
            exec_type: exec_type::REJECTED,
            ord_status: ord_status::REJECTED,
            flags: REPORT_OWN_REQUEST,
            cancel_reason: CANCEL_REASON_NONE,
            ..Default::default()
        };
        self.report(r, Some(request));
    }

    fn cancel_reject(
        &mut self,
        request: u64,
        owner: u64,
        order_id: u64,
        code: u16,
        engine_seq: u64,
    ) {
        let mut r = ExecutionReport {
            request,
            order_id,
            owner,
            engine_seq,
            reject_code: report_code(code),
            exec_type: exec_type::REJECTED,
            ord_status: ord_status::REJECTED,
            flags: REPORT_OWN_REQUEST,
            cancel_reason: CANCEL_REASON_NONE,
            ..Default::default()
        };
        if let Some(t) = self.orders.get(&order_id) {
            r.client_order_id = t.client_order_id;
            r.price = t.price;
            r.order_qty = t.cum + t.leaves;
            r.cum_qty = t.cum;
            r.leaves_qty = t.leaves;
            r.instrument = t.instrument;
            r.side = t.side;
            r.ord_status = t.status();
        }
        self.report(r, Some(request));
    }

    // ----- engine outputs ----------------------------------------------------

    /// The engine ring was full for that request: report busy to the client.
    pub fn handle_busy(&mut self, token: u64) {
        self.handle_reject(token, code::BUSY)
    }

    /// The server could not submit that request (busy, unroutable); `code` is
    /// a gateway code (`wire::code::*`). For a transfer batch every transfer
    /// without a result yet gets `code` and the batch is answered at once (the
    /// server must submit a batch all or nothing); a mass cancel over several
    /// partitions counts it as one partition's end.
    pub fn handle_reject(&mut self, token: u64, code: u16) {
        let Some(mut p) = self.pending.remove(&token) else {
            return;
        };
        self.unqueue(token);
        let multi =
            matches!(p.kind, PendKind::Ack | PendKind::CancelByClientId { .. }) && p.ends_left > 1;
        if multi {
            p.ends_left -= 1;
            p.code = code;
            self.outstanding_commands = self.outstanding_commands.saturating_sub(1);
            p.commands = p.commands.saturating_sub(1);
            self.pending.insert(token, p);
            return;
        }
        match &mut p.kind {
            PendKind::NewOrder(m) => {
                let m = *m;
                self.settle_new_order(&mut p);
                self.order_reject(&m, p.request, code, 0);
            }
            PendKind::Cancel { owner, order_id } | PendKind::Replace { owner, order_id } => {
                let (o, id) = (*owner, *order_id);
                self.cancel_reject(p.request, o, id, code, 0);
            }
            PendKind::CancelByClientId { found: false, .. } => p.code = code,
            PendKind::Transfers { codes, got, .. } => {
                for (c, g) in codes.iter_mut().zip(got.iter_mut()) {
                    if !*g {
                        *c = code;
                        *g = true;
                    }
                }
            }
            _ => p.code = code,
        }
        self.complete(p);
    }

    /// An engine event concerning this session: caused by its request
    /// (`token` matches) or about an order of one of its owners. Order ids in
    /// events are local to `partition`.
    pub fn handle_event(
        &mut self,
        now_ns: u64,
        token: u64,
        partition: usize,
        seq: Seq,
        event: &Event,
    ) {
        self.advance(now_ns);
        let mut pend = self.pending.remove(&token);
        if let Some(p) = &mut pend {
            p.engine_seq = seq.0;
            p.partition = partition as u8;
        }
        self.report_ctx = ReportCtx {
            partition: partition as u8,
            flags: 0,
        };
        let request = pend
            .as_ref()
            .and_then(|p| (p.request != 0).then_some(p.request));
        let cx = EventCtx {
            partition,
            request,
            own: false,
            base: ExecutionReport {
                request: request.unwrap_or(0),
                engine_seq: seq.0,
                cancel_reason: CANCEL_REASON_NONE,
                ..Default::default()
            },
        };
        match *event {
            Event::Accepted { .. }
            | Event::Trade { .. }
            | Event::Canceled { .. }
            | Event::Reduced { .. }
            | Event::Replaced { .. }
            | Event::Triggered { .. } => self.order_event(&cx, pend.as_mut(), event),
            Event::Rejected { reason, .. } => {
                if let Some(p) = &mut pend {
                    self.request_rejected(p, reason.code(), seq.0);
                }
            }
            Event::AccountRejected { reason, .. } => {
                if let Some(p) = &mut pend {
                    p.code = reason.code();
                }
            }
            Event::TransferOk { id } => self.transfer_event(&mut pend, id.0, 0),
            Event::TransferRejected { id, reason } => {
                self.transfer_event(&mut pend, id.0, reason.code())
            }
            Event::Balance { .. } | Event::OpenOrder { .. } => {
                self.query_answer(&cx, pend.as_mut(), event)
            }
            // The rows follow as `handle_row` calls.
            Event::Transfers { more, .. } => {
                if let Some(Pending {
                    kind: PendKind::TransferQuery { more: m, .. },
                    ..
                }) = &mut pend
                {
                    *m |= more;
                }
            }
            // History installs are the runtime's: nothing to report.
            Event::AccountOpened { .. }
            | Event::Halted { .. }
            | Event::Resumed { .. }
            | Event::Book { .. }
            | Event::TransferExpired { .. }
            | Event::HistoryInstalled { .. } => {}
        }
        if let Some(p) = pend {
            self.pending.insert(token, p);
        }
    }

    /// A new order's accept or reject was seen: its in-flight slot is freed,
    /// once.
    /// Drops any of `token`'s commands still queued.
    fn unqueue(&mut self, token: u64) {
        if self.queue.iter().any(|q| q.token == token) {
            self.queue.retain(|q| q.token != token);
        }
    }

    fn settle_new_order(&mut self, p: &mut Pending) {
        if !p.settled {
            p.settled = true;
            self.inflight_new = self.inflight_new.saturating_sub(1);
        }
    }

    /// Whether a report about order `id` (session-wide) of `owner` is this
    /// session's: one of its owners, or an order it tracks.
    fn concerns(&self, id: u64, owner: OwnerId) -> bool {
        self.owns(owner.0) || self.orders.contains_key(&id)
    }

    /// The engine refused a command of the request `p`.
    fn request_rejected(&mut self, p: &mut Pending, code: u16, engine_seq: u64) {
        match p.kind {
            PendKind::NewOrder(m) => {
                self.settle_new_order(p);
                self.order_reject(&m, p.request, code, engine_seq);
            }
            PendKind::Cancel { owner, order_id } | PendKind::Replace { owner, order_id } => {
                self.cancel_reject(p.request, owner, order_id, code, engine_seq);
            }
            // Another partition may hold it: decided when all have answered.
            PendKind::CancelByClientId { .. } => p.code = code,
            // Not on this partition (or not visible): the id's row is simply
            // absent unless another partition has it.
            PendKind::TransferQuery { lookup: true, .. } => {}
            _ => p.code = code,
        }
    }

    /// An event about an order (accepted, traded, canceled, reduced,
    /// replaced, triggered): reported when this session follows the order.
    fn order_event(&mut self, cx: &EventCtx, pend: Option<&mut Pending>, event: &Event) {
        match *event {
            Event::Accepted {
                order_id,
                client_order_id,
                owner,
                instrument,
                side,
                price,
                qty,
            } => {
                let mine = match pend {
                    Some(p) if matches!(p.kind, PendKind::NewOrder(_)) => {
                        self.settle_new_order(p);
                        true
                    }
                    _ => cx.own,
                };
                if mine || self.owns(owner.0) {
                    let t = Tracked {
                        client_order_id: client_order_id.0,
                        instrument: instrument.0,
                        side: side as u8,
                        price: price.map_or(0, |p| p.0),
                        cum: 0,
                        leaves: qty.0,
                        mine,
                    };
                    self.on_accepted(cx, cx.global(order_id), owner, t);
                }
            }
            Event::Trade {
                instrument,
                price,
                qty,
                maker_order_id,
                taker_order_id,
                maker_owner,
                taker_owner,
                taker_side,
            } => {
                let fill = ExecutionReport {
                    last_qty: qty.0,
                    last_px: price.0,
                    instrument: instrument.0,
                    exec_type: exec_type::TRADE,
                    ord_status: ord_status::UNKNOWN,
                    ..cx.base
                };
                let maker = (maker_order_id, maker_owner, taker_side.opposite());
                self.on_fill(cx, fill, maker);
                self.on_fill(cx, fill, (taker_order_id, taker_owner, taker_side));
            }
            Event::Canceled {
                order_id,
                owner,
                side,
                price,
                qty,
                reason,
            } => {
                if let Some(Pending {
                    kind: PendKind::CancelByClientId { found, .. },
                    ..
                }) = pend
                {
                    *found = true;
                }
                let order = (side, price.map_or(0, |p| p.0), qty);
                self.on_canceled(cx, cx.global(order_id), owner, order, reason)
            }
            Event::Reduced {
                order_id,
                owner,
                qty,
                reason,
            } => self.on_reduced(cx, cx.global(order_id), owner, qty, reason),
            Event::Replaced {
                order_id,
                owner,
                side,
                price,
                qty,
                priority_kept,
            } => {
                let id = cx.global(order_id);
                self.on_replaced(cx, id, owner, (side, price, qty), priority_kept)
            }
            Event::Triggered { order_id, owner } => {
                self.on_triggered(cx, cx.global(order_id), owner)
            }
            // Not about an order: `handle_event` handles the rest.
            _ => {}
        }
    }

    /// An order was accepted: tracked and reported (`t.mine`: placed by
    /// this request).
    fn on_accepted(&mut self, cx: &EventCtx, id: u64, owner: OwnerId, t: Tracked) {
        self.track(id, t);
        let r = ExecutionReport {
            order_id: id,
            client_order_id: t.client_order_id,
            owner: owner.0,
            price: t.price,
            order_qty: t.leaves,
            leaves_qty: t.leaves,
            instrument: t.instrument,
            exec_type: exec_type::NEW,
            ord_status: ord_status::NEW,
            side: t.side,
            flags: if t.mine { REPORT_OWN_REQUEST } else { 0 },
            ..cx.base
        };
        self.report(r, cx.request);
    }

    /// One side of a trade (`fill` says what traded): reported when this
    /// session follows the order, with the fill applied to it.
    fn on_fill(
        &mut self,
        cx: &EventCtx,
        fill: ExecutionReport,
        (order_id, owner, side): (engine::OrderId, OwnerId, engine::Side),
    ) {
        let id = cx.global(order_id);
        if !self.concerns(id, owner) {
            return;
        }
        let mut r = ExecutionReport {
            order_id: id,
            owner: owner.0,
            side: side as u8,
            ..fill
        };
        if let Some(t) = self.orders.get_mut(&id) {
            t.cum += fill.last_qty;
            t.leaves = t.leaves.saturating_sub(fill.last_qty);
            let t = *t;
            self.fill_from(&mut r, &t);
            if t.leaves == 0 {
                self.untrack(id);
            }
        }
        self.report(r, cx.request);
    }

    /// An order left the book (canceled or expired): reported and untracked.
    /// The event names its side, limit price (0: none) and the quantity it
    /// had left, so an order this session does not track is reported with
    /// them too.
    fn on_canceled(
        &mut self,
        cx: &EventCtx,
        id: u64,
        owner: OwnerId,
        (side, price, qty): (engine::Side, u64, engine::Qty),
        reason: engine::CancelReason,
    ) {
        if !self.concerns(id, owner) {
            return;
        }
        let expired = reason == engine::CancelReason::Expired;
        let st = if expired {
            ord_status::EXPIRED
        } else {
            ord_status::CANCELED
        };
        let mut r = ExecutionReport {
            order_id: id,
            owner: owner.0,
            exec_type: if expired {
                exec_type::EXPIRED
            } else {
                exec_type::CANCELED
            },
            ord_status: st,
            cancel_reason: reason as u8,
            side: side as u8,
            price,
            ..cx.base
        };
        if let Some(t) = self.orders.get(&id).copied() {
            self.fill_from(&mut r, &t);
            r.order_qty = t.cum + t.leaves;
            self.untrack(id);
        } else {
            r.order_qty = qty.0;
        }
        r.leaves_qty = 0;
        r.ord_status = st;
        self.report(r, cx.request);
    }

    /// Self-trade prevention took `qty` off an order.
    fn on_reduced(
        &mut self,
        cx: &EventCtx,
        id: u64,
        owner: OwnerId,
        qty: engine::Qty,
        reason: engine::CancelReason,
    ) {
        if !self.concerns(id, owner) {
            return;
        }
        let mut r = ExecutionReport {
            order_id: id,
            owner: owner.0,
            exec_type: exec_type::STP_REDUCED,
            ord_status: ord_status::UNKNOWN,
            cancel_reason: reason as u8,
            ..cx.base
        };
        if let Some(t) = self.orders.get_mut(&id) {
            t.leaves = t.leaves.saturating_sub(qty.0);
            let t = *t;
            self.fill_from(&mut r, &t);
            if t.leaves == 0 {
                r.ord_status = if t.cum > 0 {
                    ord_status::FILLED
                } else {
                    ord_status::CANCELED
                };
                self.untrack(id);
            }
        }
        self.report(r, cx.request);
    }

    /// An order's price and quantity changed.
    fn on_replaced(
        &mut self,
        cx: &EventCtx,
        id: u64,
        owner: OwnerId,
        (side, price, qty): (engine::Side, engine::Price, engine::Qty),
        priority_kept: bool,
    ) {
        if !self.concerns(id, owner) {
            return;
        }
        let mut r = ExecutionReport {
            order_id: id,
            owner: owner.0,
            price: price.0,
            leaves_qty: qty.0,
            side: side as u8,
            exec_type: exec_type::REPLACED,
            ord_status: ord_status::UNKNOWN,
            flags: if priority_kept {
                REPORT_PRIORITY_KEPT
            } else {
                0
            },
            ..cx.base
        };
        if let Some(t) = self.orders.get_mut(&id) {
            t.price = price.0;
            t.leaves = qty.0;
            let t = *t;
            self.fill_from(&mut r, &t);
        }
        self.report(r, cx.request);
    }

    /// A stop order was triggered.
    fn on_triggered(&mut self, cx: &EventCtx, id: u64, owner: OwnerId) {
        if !self.concerns(id, owner) {
            return;
        }
        let mut r = ExecutionReport {
            order_id: id,
            owner: owner.0,
            exec_type: exec_type::TRIGGERED,
            ord_status: ord_status::UNKNOWN,
            ..cx.base
        };
        if let Some(t) = self.orders.get(&id).copied() {
            self.fill_from(&mut r, &t);
        }
        self.report(r, cx.request);
    }

    /// An answer to this session's query, sent at once: its balance, or one
    /// row of its open orders.
    fn query_answer(&mut self, cx: &EventCtx, pend: Option<&mut Pending>, event: &Event) {
        let Some(p) = pend else { return };
        let request = p.request;
        match (event, &mut p.kind) {
            (
                &Event::Balance {
                    account,
                    debits_posted,
                    credits_posted,
                    debits_pending,
                    credits_pending,
                },
                PendKind::QueryBalance { answered },
            ) => {
                *answered = true;
                let b = BalanceMsg {
                    request,
                    account: u128_bytes(account.0),
                    debits_posted: u128_bytes(debits_posted.0),
                    credits_posted: u128_bytes(credits_posted.0),
                    debits_pending: u128_bytes(debits_pending.0),
                    credits_pending: u128_bytes(credits_pending.0),
                };
                self.push_out(template::BALANCE, &b, Some(request));
            }
            (
                &Event::OpenOrder {
                    order_id,
                    owner,
                    client_order_id,
                    instrument,
                    side,
                    price,
                    remaining,
                    ..
                },
                PendKind::OpenOrders { count },
            ) => {
                *count += 1;
                let id = cx.global(order_id);
                let row = OpenOrderRow {
                    request,
                    order_id: id,
                    client_order_id: client_order_id.0,
                    owner: owner.0,
                    price: price.map_or(0, |p| p.0),
                    cum_qty: self.orders.get(&id).map_or(0, |t| t.cum),
                    leaves_qty: remaining.0,
                    instrument: instrument.0,
                    side: side as u8,
                    reserved: [0; 3],
                };
                self.push_out(template::OPEN_ORDER, &row, Some(request));
            }
            // Not an answer to the query this request asked.
            _ => {}
        }
    }

    /// One row of a transfer query this session asked (`token`), in the
    /// order of its `Transfers` event: sent to the client at once.
    pub fn handle_row(&mut self, token: u64, row: &engine::history::TransferRecord) {
        let Some(p) = self.pending.get_mut(&token) else {
            return;
        };
        let PendKind::TransferQuery { count, .. } = &mut p.kind else {
            return;
        };
        // Queries never answer a remembered failure; nothing else is refused.
        let Some(msg) = transfer_row_msg(p.request, row) else {
            return;
        };
        *count += 1;
        let r = p.request;
        self.push_out(template::TRANSFER_ROW, &msg, Some(r));
    }

    fn transfer_event(&mut self, pend: &mut Option<Pending>, id: u128, code: u16) {
        let Some(Pending {
            kind:
                PendKind::Transfers {
                    ids,
                    codes,
                    got,
                    next,
                },
            ..
        }) = pend
        else {
            return;
        };
        // Results arrive in batch order; an id out of order (a batch spread
        // over partitions) goes to its first unanswered slot.
        let slot = if *next < ids.len() && ids[*next] == id && !got[*next] {
            Some(*next)
        } else {
            (0..ids.len()).find(|&i| !got[i] && ids[i] == id)
        };
        if let Some(i) = slot {
            codes[i] = code;
            got[i] = true;
            while *next < got.len() && got[*next] {
                *next += 1;
            }
        }
    }

    fn fill_from(&self, r: &mut ExecutionReport, t: &Tracked) {
        r.client_order_id = t.client_order_id;
        if r.price == 0 {
            r.price = t.price;
        }
        r.order_qty = t.cum + t.leaves;
        r.cum_qty = t.cum;
        r.leaves_qty = t.leaves;
        if r.instrument == 0 {
            r.instrument = t.instrument;
        }
        r.side = t.side;
        r.ord_status = t.status();
        if t.mine {
            r.flags |= REPORT_OWN_REQUEST;
        }
    }

    fn track(&mut self, id: u64, t: Tracked) {
        let cap = (self.cfg.max_open_orders as usize).saturating_mul(2) + 1024;
        if t.mine || self.orders.len() < cap {
            if let Some(old) = self.orders.insert(id, t) {
                if old.mine {
                    self.open_own = self.open_own.saturating_sub(1);
                }
            }
            if t.mine {
                self.open_own += 1;
            }
        }
    }

    fn untrack(&mut self, id: u64) {
        if let Some(t) = self.orders.remove(&id) {
            if t.mine {
                self.open_own = self.open_own.saturating_sub(1);
            }
        }
    }

    /// All outputs of that request (from one partition) were delivered.
    pub fn handle_end(&mut self, token: u64) {
        let Some(mut p) = self.pending.remove(&token) else {
            return;
        };
        p.ends_left = p.ends_left.saturating_sub(1);
        if p.commands > 0 {
            p.commands -= 1;
            self.outstanding_commands = self.outstanding_commands.saturating_sub(1);
        }
        if p.ends_left > 0 {
            self.pending.insert(token, p);
            return;
        }
        self.complete(p);
    }

    /// Answers a finished request and releases its resources.
    fn complete(&mut self, p: Pending) {
        self.outstanding_commands = self.outstanding_commands.saturating_sub(p.commands);
        self.report_ctx = ReportCtx {
            partition: p.partition,
            flags: 0,
        };
        match p.kind {
            PendKind::NewOrder(_) => {
                if !p.settled {
                    self.inflight_new = self.inflight_new.saturating_sub(1);
                }
            }
            PendKind::Cancel { .. } | PendKind::Replace { .. } | PendKind::Internal => {}
            PendKind::CancelByClientId {
                owner,
                client_order_id,
                found,
            } => {
                if !found {
                    let code = if p.code == 0 { code::BUSY } else { p.code };
                    self.client_id_reject(p.request, (owner, client_order_id), code, p.engine_seq);
                }
            }
            PendKind::Ack => self.ack(p.request, p.template, p.code, p.engine_seq, 0),
            PendKind::OpenOrders { count } => {
                self.ack(p.request, p.template, p.code, p.engine_seq, count)
            }
            PendKind::TransferQuery { count, more, .. } => {
                self.transfers_end(p.request, p.code, p.engine_seq, count, more)
            }
            PendKind::QueryBalance { answered } => {
                if !answered {
                    let code = if p.code == 0 { code::BUSY } else { p.code };
                    self.ack(p.request, p.template, code, p.engine_seq, 0);
                }
            }
            PendKind::Transfers { mut codes, got, .. } => {
                for (c, g) in codes.iter_mut().zip(&got) {
                    if !*g {
                        *c = code::BUSY;
                    }
                }
                self.transfer_results(p.request, &codes);
            }
        }
        if p.request != 0 {
            self.finish_outcome(p.request);
        }
    }

    // ----- output and time ---------------------------------------------------

    /// Appends coalesced outgoing bytes (replies, then reports being
    /// replayed, up to a chunk); true if anything was appended. Call it until
    /// it returns false, then write once.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        if !self.connected {
            return false;
        }
        let start = out.len();
        out.append(&mut self.out);
        if self.out.capacity() > (1 << 20) {
            self.out = Vec::new();
        }
        if self.logged_in && !self.closing {
            let mut budget = TRANSMIT_CHUNK;
            while self.sent_upto < self.report_seq && budget >= REPORT_FRAME {
                let front = self
                    .replay
                    .front()
                    .map_or(self.report_seq + 1, |r| r.report_seq);
                let want = self.sent_upto + 1;
                if want < front {
                    // Cannot happen on a live connection (lagging consumers are
                    // closed first); skip what is gone.
                    self.sent_upto = front - 1;
                    continue;
                }
                let r = self.replay[(want - front) as usize];
                encode_frame(template::EXECUTION_REPORT, &r, out);
                self.sent_upto = want;
                budget -= REPORT_FRAME;
            }
        }
        let any = out.len() > start;
        if any {
            self.last_sent_ns = self.now_ns;
        }
        any
    }

    /// Heartbeats out, idle close.
    pub fn handle_timeout(&mut self, now_ns: u64) {
        self.advance(now_ns);
        if self.retry_at_ns.is_some_and(|t| self.now_ns >= t) {
            // The held-back command is at the queue's front again.
            self.retry_at_ns = None;
        }
        if !self.connected || self.closing {
            return;
        }
        let now = self.now_ns;
        if now >= self.last_recv_ns.saturating_add(self.cfg.idle_timeout_ns) {
            self.do_close(
                close::IDLE_TIMEOUT,
                format!("nothing received for {} ns", now - self.last_recv_ns),
            );
            return;
        }
        if self.logged_in
            && now
                >= self
                    .last_sent_ns
                    .saturating_add(self.cfg.heartbeat_interval_ns)
        {
            let h = Heartbeat {
                last_report_seq: self.report_seq,
            };
            self.push_out(template::HEARTBEAT, &h, None);
            self.last_sent_ns = now;
        }
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        if !self.connected || self.closing {
            return None;
        }
        let idle = self.last_recv_ns.saturating_add(self.cfg.idle_timeout_ns);
        let next = if self.logged_in {
            idle.min(
                self.last_sent_ns
                    .saturating_add(self.cfg.heartbeat_interval_ns),
            )
        } else {
            idle
        };
        Some(self.retry_at_ns.map_or(next, |t| t.min(next)))
    }

    /// Close the connection with code + reason (once). Flush `poll_transmit`
    /// first: the reply that explains the close is queued there.
    pub fn poll_close(&mut self) -> Option<(u32, String)> {
        self.close.take()
    }

    /// Owners granted (after login).
    pub fn owners(&self) -> &[OwnerId] {
        &self.grant.owners
    }

    /// Whether logged in on the current connection.
    pub fn logged_in(&self) -> bool {
        self.logged_in
    }

    /// Whether cancel-on-disconnect is on.
    pub fn cancel_on_disconnect(&self) -> bool {
        self.cod
    }

    /// The connection dropped: the session keeps its numbering, reports and
    /// outcomes for a later `handle_reconnect`; returns the mass cancels to
    /// submit if cancel-on-disconnect is on (their outputs come back through
    /// `handle_event` / `handle_end` like any other), then the disarm of its
    /// engine arms (its next login arms again).
    pub fn handle_disconnect(&mut self) -> Vec<EngineRequest> {
        let was_logged = self.logged_in;
        self.connected = false;
        self.logged_in = false;
        self.out = Vec::new();
        self.reader = FrameReader::new();
        // A replay the connection asked and did not get goes with it: the
        // client asks again (answered on the next connection, its reports
        // would be read as those of a replay asked there).
        self.replays.clear();
        self.replay_pages = None;
        let mut v = Vec::new();
        if self.cod && (was_logged || self.token.is_some()) {
            let owners = self.grant.owners.clone();
            for o in owners {
                let token = self.next_token();
                let command = Command::MassCancel {
                    owner: o,
                    instrument: None,
                    side: None,
                };
                self.pending
                    .insert(token, Pending::internal(self.cfg.partitions));
                v.push(EngineRequest::internal(token, command));
            }
            // The gateway saw this disconnect and cancelled for it: the
            // arms go until the next login arms again (a crash from now on
            // has nothing of this session's to cancel).
            v.push(EngineRequest::internal(
                0,
                Command::CodDisarm { session: self.id },
            ));
        }
        v
    }

    /// A new connection took over this session: the next frame must be a
    /// login; its `resume_after` drives the replay.
    pub fn handle_reconnect(&mut self, now_ns: u64) {
        self.advance(now_ns);
        self.connected = true;
        self.logged_in = false;
        self.reader = FrameReader::new();
        self.out = Vec::new();
        self.garbage = 0;
        self.close = None;
        self.closing = false;
        self.last_recv_ns = self.now_ns;
        self.last_sent_ns = self.now_ns;
    }
}
