//! The order-entry client library: an async (tokio) QUIC client of
//! `bourse-oe/1`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gateway::client::ClientError> {
//! use gateway::client::{Client, ClientConfig, Reply};
//! let id = gateway::identity::load_client_identity("bourse-data".as_ref()).unwrap();
//! let cfg = ClientConfig::new(
//!     "127.0.0.1:7070".parse().unwrap(),
//!     id.cert_der,
//!     id.operator_token.unwrap(),
//! );
//! let mut c = Client::connect(&cfg).await?;
//! let req = c.order(gateway::client::limit(1, 1, engine::Side::Buy, 100, 5, 42));
//! c.flush().await?;
//! while let Some(reply) = c.next().await? {
//!     if let Reply::Report(r) = reply {
//!         println!("{}", gateway::client::describe_report(&r, None));
//!         if r.request == req { break; }
//!     }
//! }
//! c.close().await;
//! # Ok(()) }
//! ```
//!
//! Sending is two steps: the request methods (`order`, `cancel`, …) encode
//! into an outgoing buffer and return the request number; `flush` writes the
//! whole buffer as one stream write (FLOORS.md pitfall 1: never one write
//! per small message). `next` reads the server's replies in order;
//! heartbeats are answered in the background and not returned.
//!
//! Invariants: the client trusts exactly the certificate it is given; request
//! numbers increase strictly per session (continuing after the server's
//! `last_request` on resume); `last_report_seq` is the newest execution
//! report received, which is what to pass as `resume_after` when
//! reconnecting — after a login that could not replay everything asked for
//! (`reports_lost`: a restarted server, a new cluster leader, a trimmed
//! replay store) it continues from the server's `replay_from`, so the next
//! reconnect asks in the server's numbering; `recover_reports` then gets
//! the lost reports back by engine seq (`coverage`, carried over in
//! `ClientConfig::coverage`: what the client read of each partition, so
//! that nothing comes twice even after a cut between two reports of one
//! input or during a recovery), naming what the server no longer holds.
//! What was read counts as held: take everything `next` returns (until it
//! fails) before reconnecting with `coverage` and `last_report_seq`.
//! `flush` keeps reading replies (into the frame reader, for
//! `next`) while its write waits for flow-control credit: the server stops
//! reading while its own write to us is blocked, so a client that only
//! writes would wait on a server that only writes (the deadlock that kept
//! `quic_bench`'s pipelined run from finishing). What it buffers that way
//! is bounded by the replies to what the caller chose to send. The token
//! never appears in `Debug` output (nor, therefore, in logs).

mod coverage;
mod recover;

pub use coverage::ReportCoverage;
pub use recover::{ReplayGap, ReportRecovery};

use crate::identity::SERVER_NAME;
use crate::net::{self, NetError, Tuning};
use crate::wire::{self, *};
use engine::Side;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to reach and log in to a server.
#[derive(Clone)]
pub struct ClientConfig {
    /// Server address.
    pub addr: SocketAddr,
    /// The server certificate (DER) to trust.
    pub cert_der: Vec<u8>,
    /// Login token.
    pub token: String,
    /// Client-chosen session id (same id + token later = resume).
    pub session_id: u64,
    /// Last report seq already received (0 on a fresh session).
    pub resume_after: u64,
    /// Which reports of each partition the session already holds
    /// (`Client::coverage` of the previous connection; `Default` on a
    /// fresh session): where `recover_reports` asks replays to start, and
    /// what it drops as already held.
    pub coverage: ReportCoverage,
    /// Ask for cancel-on-disconnect.
    pub cancel_on_disconnect: bool,
    /// Transport settings.
    pub tuning: Tuning,
    /// Give up on the handshake and login after this long (an unanswered
    /// QUIC handshake would otherwise wait for the idle timeout).
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("addr", &self.addr)
            .field("cert_bytes", &self.cert_der.len())
            .field("token", &"<redacted>")
            .field("session_id", &self.session_id)
            .field("resume_after", &self.resume_after)
            .field("coverage", &self.coverage)
            .field("cancel_on_disconnect", &self.cancel_on_disconnect)
            .field("tuning", &self.tuning)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl ClientConfig {
    /// A fresh session with a random session id.
    pub fn new(addr: SocketAddr, cert_der: Vec<u8>, token: String) -> Self {
        let mut b = [0u8; 8];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut b)
            .expect("random");
        ClientConfig {
            addr,
            cert_der,
            token,
            session_id: u64::from_le_bytes(b) | 1,
            resume_after: 0,
            coverage: ReportCoverage::default(),
            cancel_on_disconnect: false,
            tuning: Tuning::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// `ClientConfig::connect_timeout` unless changed.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Endpoint / TLS set-up.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Connecting.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed (with the server's code and reason).
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing.
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading.
    #[error("read: {0}")]
    Read(#[from] quinn::ReadError),
    /// The login was refused.
    #[error("login rejected: {}", login_reject_name(*.0))]
    LoginRejected(u16),
    /// The token cannot be sent (empty, longer than 32 bytes, not printable ASCII).
    #[error("bad token (1..=32 printable ASCII characters)")]
    BadToken,
    /// The server sent something undecodable.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server answered a query with a refusal (engine reason or gateway
    /// code, named by `reject_name`).
    #[error("refused: {}", reject_name(*.0))]
    Refused(u16),
    /// The server ended the stream before answering the login.
    #[error("the server closed the stream")]
    Closed,
    /// No handshake and login within `ClientConfig::connect_timeout`.
    #[error("no answer within {} ms (is a server running there?)", .0.as_millis())]
    Timeout(Duration),
}

/// The name of a login reject code.
pub fn login_reject_name(code: u16) -> &'static str {
    match code {
        login_reject::BAD_TOKEN => "bad_token",
        login_reject::SESSION_MISMATCH => "session_mismatch",
        login_reject::ALREADY_LOGGED_IN => "already_logged_in",
        login_reject::NOT_LEADER => "not_leader",
        _ => "unknown",
    }
}

/// A reply from the server (heartbeats are handled internally).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// An execution report.
    Report(ExecutionReport),
    /// Results of a transfer batch, in batch order.
    TransferResults {
        /// Request answered.
        request: u64,
        /// One per transfer.
        results: Vec<TransferResult>,
    },
    /// Balances.
    Balance(BalanceMsg),
    /// One open order.
    OpenOrder(OpenOrderRow),
    /// The outcome of a request with no other reply.
    Ack(RequestAck),
    /// A protocol-level refusal.
    ProtocolReject(ProtocolRejectMsg),
    /// One transfer of a lookup or listing.
    TransferRow {
        /// Request answered.
        request: u64,
        /// The transfer.
        row: TransferRow,
    },
    /// The end of a transfer lookup or listing.
    TransfersEnd(TransfersEndMsg),
    /// The server logged the session out.
    Logout,
}

/// One transfer as a query answers it (the engine's record, whole).
pub type TransferRow = engine::history::TransferRecord;

/// One page of an account's transfers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferPage {
    /// The rows, in the filter's order.
    pub rows: Vec<TransferRow>,
    /// More records match: repeat with the range moved past the last row.
    pub more: bool,
}

/// A connected, logged-in session.
pub struct Client {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: Arc<tokio::sync::Mutex<quinn::SendStream>>,
    recv: quinn::RecvStream,
    reader: FrameReader,
    out: Vec<u8>,
    next_request: u64,
    login: LoginAccepted,
    last_report_seq: u64,
    /// Which reports of each partition the session holds.
    coverage: ReportCoverage,
    /// The login could not replay every report asked for.
    reports_lost: bool,
    last_write_ms: Arc<AtomicU64>,
    epoch: Instant,
    heartbeat: tokio::task::JoinHandle<()>,
    /// The server finished its stream (seen while flushing; `next` reports it
    /// once the frames read before it are consumed).
    recv_ended: bool,
    /// Replies read by a waiting query method (`lookup_transfers`, …) that
    /// were not its answer: `next` returns them first, in order.
    stash: std::collections::VecDeque<Reply>,
}

impl Client {
    /// The server this client is connected to (the one that took the
    /// session, after `connect_any`).
    pub fn server(&self) -> SocketAddr {
        self.conn.remote_address()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("remote", &self.conn.remote_address())
            .field("login", &self.login)
            .field("next_request", &self.next_request)
            .field("last_report_seq", &self.last_report_seq)
            .finish()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

fn decode_reply(h: &Header, body: &[u8]) -> Result<Option<Reply>, ClientError> {
    let m = wire::decode_server(h, body).map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok(Some(match m {
        ServerMsg::ExecutionReport(r) => Reply::Report(r),
        ServerMsg::TransferResults(head, bytes) => Reply::TransferResults {
            request: head.request,
            results: (0..head.count as usize)
                .filter_map(|i| transfer_result(bytes, i))
                .collect(),
        },
        ServerMsg::Balance(b) => Reply::Balance(b),
        ServerMsg::OpenOrder(o) => Reply::OpenOrder(o),
        ServerMsg::RequestAck(a) => Reply::Ack(a),
        ServerMsg::ProtocolReject(p) => Reply::ProtocolReject(p),
        ServerMsg::TransferRow(m) => Reply::TransferRow {
            request: m.request,
            row: transfer_row_record(&m)
                .ok_or_else(|| ClientError::Protocol(format!("bad transfer state {}", m.state)))?,
        },
        ServerMsg::TransfersEnd(e) => Reply::TransfersEnd(e),
        ServerMsg::Logout => Reply::Logout,
        ServerMsg::Heartbeat(_) | ServerMsg::LoginAccepted(_) | ServerMsg::LoginRejected(_) => {
            return Ok(None)
        }
    }))
}

impl Client {
    /// Connects, logs in and waits for the answer, within `cfg.connect_timeout`.
    pub async fn connect(cfg: &ClientConfig) -> Result<Client, ClientError> {
        tokio::time::timeout(cfg.connect_timeout, Self::connect_now(cfg))
            .await
            .unwrap_or(Err(ClientError::Timeout(cfg.connect_timeout)))
    }

    async fn connect_now(cfg: &ClientConfig) -> Result<Client, ClientError> {
        let token = token_bytes(&cfg.token).ok_or(ClientError::BadToken)?;
        let qc = net::client_config(&cfg.cert_der, wire::ALPN, &cfg.tuning)?;
        let endpoint = net::client_endpoint(cfg.addr, qc, &cfg.tuning)?;
        let conn = endpoint.connect(cfg.addr, SERVER_NAME)?.await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let mut out = Vec::with_capacity(64 << 10);
        encode_frame(
            template::LOGIN,
            &Login {
                token,
                session_id: cfg.session_id,
                resume_after: cfg.resume_after,
                flags: if cfg.cancel_on_disconnect {
                    LOGIN_CANCEL_ON_DISCONNECT
                } else {
                    0
                },
                reserved: 0,
            },
            &mut out,
        );
        send.write_all(&out).await?;
        out.clear();
        let mut reader = FrameReader::new();
        let login = loop {
            match reader.next_frame() {
                Some(Ok((h, body))) => {
                    match wire::decode_server(&h, body)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?
                    {
                        ServerMsg::LoginAccepted(a) => break a,
                        ServerMsg::LoginRejected(r) => {
                            conn.close(0u32.into(), b"");
                            return Err(ClientError::LoginRejected(r.code));
                        }
                        _ => continue,
                    }
                }
                Some(Err(e)) => return Err(ClientError::Protocol(e.to_string())),
                None => {}
            }
            match recv.read_chunk(64 << 10, true).await? {
                Some(c) => reader.push(&c.bytes),
                None => {
                    return Err(match conn.close_reason() {
                        Some(e) => ClientError::Connection(e),
                        None => ClientError::Closed,
                    })
                }
            }
        };
        let reports_lost = login.replay_from != cfg.resume_after.saturating_add(1);
        let mut coverage = cfg.coverage.clone();
        coverage.handle_login(reports_lost, login.partitions, login.last_report_seq);
        let send = Arc::new(tokio::sync::Mutex::new(send));
        let last_write_ms = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let interval = Duration::from_nanos(login.heartbeat_interval_ns.max(100_000_000));
        let heartbeat = tokio::spawn(heartbeat(
            send.clone(),
            last_write_ms.clone(),
            epoch,
            interval,
        ));
        Ok(Client {
            endpoint,
            conn,
            send,
            recv,
            reader,
            out,
            next_request: login.last_request + 1,
            reports_lost,
            last_report_seq: login.replay_from.saturating_sub(1),
            coverage,
            login,
            last_write_ms,
            epoch,
            heartbeat,
            recv_ended: false,
            stash: std::collections::VecDeque::new(),
        })
    }

    /// The server's login answer (last request, report seqs, heartbeat, perms).
    pub fn login(&self) -> &LoginAccepted {
        &self.login
    }

    /// Whether the login could not replay every report after
    /// `resume_after`: the server restarted, another cluster node took over
    /// (reports are numbered per server session, from 1), or the replay
    /// store no longer held them. `recover_reports` asks the server for
    /// them again by engine seq, and says what it could not get.
    pub fn reports_lost(&self) -> bool {
        self.reports_lost
    }

    /// Which reports of each partition the session holds: those read on
    /// this connection and those `ClientConfig::coverage` named (pass it on
    /// when reconnecting, after taking what `next` still returns).
    pub fn coverage(&self) -> &ReportCoverage {
        &self.coverage
    }

    /// The newest execution report seq received (pass it as `resume_after`).
    pub fn last_report_seq(&self) -> u64 {
        self.last_report_seq
    }

    /// The underlying QUIC connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// The next queued request is numbered `request` (and the ones after
    /// it follow): how a client resends, under their original numbers, the
    /// requests it got no answer for before a reconnect. The server answers
    /// a number it has seen from the outcome it kept, or `outcome_not_kept`
    /// when the outcome is gone (in a cluster: when an earlier leader
    /// executed it); it never executes a number twice. Requests queued
    /// after the resends must take numbers above every number used before.
    pub fn resend_from(&mut self, request: u64) {
        self.next_request = request.max(1);
    }

    fn take_request(&mut self) -> u64 {
        let r = self.next_request;
        self.next_request += 1;
        r
    }

    /// Queues a new order (its `request` field is assigned); returns the request number.
    pub fn order(&mut self, mut m: NewOrderMsg) -> u64 {
        m.request = self.take_request();
        encode_frame(template::NEW_ORDER, &m, &mut self.out);
        m.request
    }

    /// Queues a cancel of a (global) order id.
    pub fn cancel(&mut self, owner: u64, order_id: u64) -> u64 {
        let request = self.take_request();
        encode_frame(
            template::CANCEL,
            &CancelMsg {
                request,
                owner,
                order_id,
            },
            &mut self.out,
        );
        request
    }

    /// Queues a cancel of the owner's live order entered with client order
    /// id `client_order_id`.
    pub fn cancel_by_client_id(&mut self, owner: u64, client_order_id: u64) -> u64 {
        let request = self.take_request();
        encode_frame(
            template::CANCEL_BY_CLIENT_ID,
            &CancelByClientIdMsg {
                request,
                owner,
                client_order_id,
            },
            &mut self.out,
        );
        request
    }

    /// Queues a replace (price and/or quantity; 0 keeps).
    pub fn replace(&mut self, owner: u64, order_id: u64, price: u64, qty: u64) -> u64 {
        self.replace_with(owner, order_id, (price, qty), 0)
    }

    /// Queues a replace with `REPLACE_*` flags (`REPLACE_REQUEUE`: the
    /// order always loses its queue position).
    pub fn replace_with(
        &mut self,
        owner: u64,
        order_id: u64,
        (price, qty): (u64, u64),
        flags: u8,
    ) -> u64 {
        let request = self.take_request();
        encode_frame(
            template::REPLACE,
            &ReplaceMsg {
                request,
                owner,
                order_id,
                price,
                qty,
                flags,
                reserved: [0; 7],
            },
            &mut self.out,
        );
        request
    }

    /// Queues a mass cancel (`INSTRUMENT_ANY` / `SIDE_ANY` for all).
    pub fn mass_cancel(&mut self, owner: u64, instrument: u32, side: u8) -> u64 {
        let request = self.take_request();
        encode_frame(
            template::MASS_CANCEL,
            &MassCancelMsg {
                request,
                owner,
                instrument,
                side,
                reserved: [0; 3],
            },
            &mut self.out,
        );
        request
    }

    /// Queues a query of open orders (owner 0: every owner of the session).
    pub fn query_open_orders(&mut self, owner: u64) -> u64 {
        let request = self.take_request();
        encode_frame(
            template::QUERY_OPEN_ORDERS,
            &QueryOpenOrders { request, owner },
            &mut self.out,
        );
        request
    }

    /// Queues a batch of transfers.
    pub fn transfer_batch(&mut self, records: &[TransferRecord]) -> u64 {
        let request = self.take_request();
        encode_transfer_batch(request, records, &mut self.out);
        request
    }

    /// Queues an account opening.
    pub fn open_account(&mut self, id: u128, owner: u64, asset: &str, flags: u16) -> u64 {
        let request = self.take_request();
        // Never truncated (a longer code would merge with another asset): a
        // code that is not 1..=12 printable ASCII characters is sent empty,
        // which the engine refuses `invalid_asset`.
        let a = engine::Asset::from_str_code(asset).map_or([0u8; 12], |a| a.0);
        encode_frame(
            template::OPEN_ACCOUNT,
            &OpenAccountMsg {
                request,
                id: u128_bytes(id),
                owner,
                asset: a,
                flags,
                reserved: 0,
            },
            &mut self.out,
        );
        request
    }

    /// Queues a balance query.
    pub fn query_balance(&mut self, account: u128) -> u64 {
        let request = self.take_request();
        encode_frame(
            template::QUERY_BALANCE,
            &QueryBalanceMsg {
                request,
                account: u128_bytes(account),
            },
            &mut self.out,
        );
        request
    }

    /// Queues lookups of `ids`, `LOOKUP_TRANSFERS_MAX` per message; returns
    /// the request numbers (one per message, each answered by its rows then
    /// a `TransfersEnd`; an id nobody may see or that does not exist has no row).
    pub fn queue_lookup_transfers(&mut self, ids: &[engine::TransferId]) -> Vec<u64> {
        ids.chunks(LOOKUP_TRANSFERS_MAX)
            .map(|chunk| {
                let mut m = LookupTransfersMsg {
                    request: self.take_request(),
                    count: chunk.len() as u32,
                    ..Default::default()
                };
                for (slot, id) in m.ids.iter_mut().zip(chunk) {
                    *slot = u128_bytes(id.0);
                }
                encode_frame(template::LOOKUP_TRANSFERS, &m, &mut self.out);
                m.request
            })
            .collect()
    }

    /// Queues one page of an account's transfers; returns the request number.
    pub fn queue_get_account_transfers(&mut self, filter: &engine::history::AccountFilter) -> u64 {
        let request = self.take_request();
        let m = get_account_transfers_msg(request, filter);
        encode_frame(template::GET_ACCOUNT_TRANSFERS, &m, &mut self.out);
        request
    }

    /// Looks transfers up by id and waits for the answers: one entry per
    /// id, in the order given (`None`: no such transfer, or not one of the
    /// session's owners' — the server does not say which).
    pub async fn lookup_transfers(
        &mut self,
        ids: &[engine::TransferId],
    ) -> Result<Vec<Option<TransferRow>>, ClientError> {
        let requests = self.queue_lookup_transfers(ids);
        self.flush().await?;
        let mut found: Vec<Option<TransferRow>> = vec![None; ids.len()];
        for request in requests {
            for row in self.collect_rows(request).await?.rows {
                // Every requested occurrence of the id gets the row.
                for (slot, id) in found.iter_mut().zip(ids) {
                    if *id == row.spec.id {
                        *slot = Some(row);
                    }
                }
            }
        }
        Ok(found)
    }

    /// One page of an account's transfers (the session's owners' accounts,
    /// or any with `ledger_admin`); a refusal (`account_not_found`,
    /// `not_authorized`, `invalid_filter`, busy) is `ClientError::Refused`.
    pub async fn get_account_transfers(
        &mut self,
        filter: engine::history::AccountFilter,
    ) -> Result<TransferPage, ClientError> {
        let request = self.queue_get_account_transfers(&filter);
        self.flush().await?;
        self.collect_rows(request).await
    }

    /// Reads replies until `request`'s `TransfersEnd`, keeping its rows and
    /// stashing every other reply for `next`.
    async fn collect_rows(&mut self, request: u64) -> Result<TransferPage, ClientError> {
        let mut rows = Vec::new();
        let mut stash = Vec::new();
        let page = loop {
            let reply = match self.read_reply().await {
                Ok(Some(r)) => r,
                Ok(None) => break Err(ClientError::Closed),
                Err(e) => break Err(e),
            };
            match reply {
                Reply::TransferRow { request: q, row } if q == request => rows.push(row),
                Reply::TransfersEnd(e) if e.request == request => {
                    break if e.code != 0 {
                        Err(ClientError::Refused(e.code))
                    } else {
                        Ok(TransferPage {
                            rows: std::mem::take(&mut rows),
                            more: e.more != 0,
                        })
                    };
                }
                Reply::ProtocolReject(p) if p.request == request => {
                    break Err(ClientError::Protocol(p.text().to_string()))
                }
                other => stash.push(other),
            }
        };
        self.stash.extend(stash);
        page
    }

    /// Queues an instrument creation (admin).
    pub fn add_instrument(&mut self, mut m: AddInstrumentMsg) -> u64 {
        m.request = self.take_request();
        encode_frame(template::ADD_INSTRUMENT, &m, &mut self.out);
        m.request
    }

    /// Queues a halt (`resume: false`) or resume of an instrument (admin).
    pub fn halt(&mut self, instrument: u32, resume: bool) -> u64 {
        let request = self.take_request();
        let t = if resume {
            template::RESUME
        } else {
            template::HALT
        };
        encode_frame(
            t,
            &HaltMsg {
                request,
                instrument,
                reserved: 0,
            },
            &mut self.out,
        );
        request
    }

    /// Queues a token creation (admin).
    pub fn add_token(&mut self, mut m: AddTokenMsg) -> u64 {
        m.request = self.take_request();
        encode_frame(template::ADD_TOKEN, &m, &mut self.out);
        m.request
    }

    /// Bytes queued and not yet flushed.
    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

    /// Writes everything queued as one stream write; replies that arrive
    /// meanwhile are kept for `next` (see the module invariants).
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.out.is_empty() {
            return Ok(());
        }
        {
            let mut s = self.send.lock().await;
            let write = s.write_all(&self.out);
            tokio::pin!(write);
            loop {
                if self.recv_ended {
                    (&mut write).await?;
                    break;
                }
                tokio::select! {
                    biased;
                    r = &mut write => {
                        r?;
                        break;
                    }
                    // Cancel-safe: a chunk is either returned or left in the stream.
                    r = self.recv.read_chunk(64 << 10, true) => match r? {
                        Some(c) => self.reader.push(&c.bytes),
                        None => self.recv_ended = true,
                    },
                }
            }
        }
        self.out.clear();
        self.last_write_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The next reply; `Ok(None)` once the server ends the stream.
    pub async fn next(&mut self) -> Result<Option<Reply>, ClientError> {
        if let Some(r) = self.stash.pop_front() {
            return Ok(Some(r));
        }
        self.read_reply().await
    }

    /// The next reply from the stream (not the stash).
    async fn read_reply(&mut self) -> Result<Option<Reply>, ClientError> {
        loop {
            while let Some(f) = self.reader.next_frame() {
                let (h, body) = f.map_err(|e| ClientError::Protocol(e.to_string()))?;
                if let Some(r) = decode_reply(&h, body)? {
                    if let Reply::Report(rep) = &r {
                        self.last_report_seq = self.last_report_seq.max(rep.report_seq);
                        if !self.coverage.handle_report(rep) {
                            // Already held (a replay sent it again).
                            continue;
                        }
                    }
                    return Ok(Some(r));
                }
            }
            if self.recv_ended {
                return Ok(None);
            }
            match self.recv.read_chunk(64 << 10, true).await {
                Ok(Some(c)) => self.reader.push(&c.bytes),
                Ok(None) => return Ok(None),
                Err(quinn::ReadError::ConnectionLost(e)) => return Err(e.into()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `next` with a time limit (`Ok(None)` on timeout too).
    pub async fn next_timeout(&mut self, d: Duration) -> Result<Option<Reply>, ClientError> {
        match tokio::time::timeout(d, self.next()).await {
            Ok(r) => r,
            Err(_) => Ok(None),
        }
    }

    /// Logs out and closes the connection cleanly.
    pub async fn close(mut self) {
        encode_frame(template::LOGOUT, &Logout::default(), &mut self.out);
        let _ = self.flush().await;
        {
            let mut s = self.send.lock().await;
            let _ = s.finish();
        }
        // Wait (briefly) for the server's logout / end of stream.
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while let Ok(Some(_)) = self.next().await {}
        })
        .await;
        self.conn.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_millis(200), self.endpoint.wait_idle()).await;
    }

    /// Closes the connection without logging out (the session stays
    /// resumable on the server for its resume window).
    pub async fn disconnect(self) {
        self.conn.close(1u32.into(), b"disconnect");
        let _ = tokio::time::timeout(Duration::from_millis(200), self.endpoint.wait_idle()).await;
    }

    /// Drops the connection abruptly (no logout): the session stays
    /// resumable on the server (tests of resume and cancel-on-disconnect).
    pub fn abort(self) {
        self.conn.close(1u32.into(), b"abort");
    }
}

/// What an address's failure means for the rest of a walk ([`walk`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// No other address would do better (a refused token): stop here.
    Fatal,
    /// This address failed (unreachable, closed): try the next one.
    Next,
    /// This server answered but does not lead (`not_leader`): try the next
    /// one, and once every address was tried, go round again while the
    /// budget lasts (an election may be under way).
    Again,
}

/// What a login failure means when walking a cluster's servers:
/// `not_leader` moves on (and round again), any other login refusal is
/// final, anything else moves on.
pub fn login_step(e: &ClientError) -> Step {
    match e {
        ClientError::LoginRejected(login_reject::NOT_LEADER) => Step::Again,
        ClientError::LoginRejected(_) | ClientError::BadToken => Step::Fatal,
        _ => Step::Next,
    }
}

/// Every address a walk tried and its last answer (`None`: no answer in
/// its share of the budget), in the order first tried; the last one tried
/// is last.
#[derive(Debug)]
pub struct Tried<E> {
    /// (address, last answer).
    pub answers: Vec<(SocketAddr, Option<E>)>,
    /// Rounds over the list.
    pub rounds: u32,
}

impl<E> Tried<E> {
    fn put(&mut self, addr: SocketAddr, answer: Option<E>) {
        // The latest answer of an address, kept in its first place.
        match self.answers.iter_mut().find(|(a, _)| *a == addr) {
            Some(slot) => slot.1 = answer,
            None => self.answers.push((addr, answer)),
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for Tried<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (addr, answer)) in self.answers.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            match answer {
                Some(e) => write!(f, "{sep}{addr}: {e}")?,
                None => write!(f, "{sep}{addr}: no answer in time")?,
            }
        }
        if self.rounds > 1 {
            write!(f, " ({} rounds)", self.rounds)?;
        }
        Ok(())
    }
}

impl<E: std::fmt::Display + std::fmt::Debug> std::error::Error for Tried<E> {}

/// Pause between two rounds of a walk (an election takes a few hundred ms).
pub const WALK_ROUND_PAUSE: Duration = Duration::from_millis(100);

/// Tries `connect(addr, share)` on each address in order within `budget`
/// altogether (each attempt gets an equal share of what is left, and at
/// most `budget / addrs.len()`, so a dead server last in the list leaves
/// time for another round) and returns the first success. `step` says what a failure means: stop ([`Step::Fatal`]),
/// try the next address, or also go round again after the last
/// ([`Step::Again`], pausing [`WALK_ROUND_PAUSE`]). Nothing is retried past
/// the budget; an empty list fails at once.
pub async fn walk<T, E, F, Fut>(
    addrs: &[SocketAddr],
    budget: Duration,
    mut connect: F,
    step: impl Fn(&E) -> Step,
) -> Result<T, Tried<E>>
where
    F: FnMut(SocketAddr, Duration) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + budget;
    let cap = budget / addrs.len().max(1) as u32;
    let mut tried = Tried {
        answers: Vec::new(),
        rounds: 0,
    };
    loop {
        tried.rounds += 1;
        let mut again = false;
        for (i, &addr) in addrs.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            let share = (left / (addrs.len() - i) as u32).min(cap);
            match tokio::time::timeout(share, connect(addr, share)).await {
                Ok(Ok(t)) => return Ok(t),
                Ok(Err(e)) => {
                    let s = step(&e);
                    tried.put(addr, Some(e));
                    match s {
                        Step::Fatal => return Err(tried),
                        Step::Again => again = true,
                        Step::Next => {}
                    }
                }
                Err(_) => tried.put(addr, None),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if !again || left <= WALK_ROUND_PAUSE * 2 {
            return Err(tried);
        }
        tokio::time::sleep(WALK_ROUND_PAUSE).await;
    }
}

/// Tries every address at once within `budget` and returns the first
/// success: an address whose failure `step` calls [`Step::Again`] (a server
/// that does not lead yet) is tried again after [`WALK_ROUND_PAUSE`], one
/// that fails otherwise drops out, and a [`Step::Fatal`] answer ends the
/// race at once. A dead server costs no one else any time (unlike a
/// [`walk`], where it holds the line for its share), which is what a client
/// looking for a cluster's new leader needs right after the old one died.
pub async fn race<T, E, F, Fut>(
    addrs: &[SocketAddr],
    budget: Duration,
    connect: F,
    step: impl Fn(&E) -> Step,
) -> Result<T, Tried<E>>
where
    F: Fn(SocketAddr, Duration) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let deadline = Instant::now() + budget;
    let (connect, step) = (&connect, &step);
    let mut runs: FuturesUnordered<_> = addrs
        .iter()
        .map(|&addr| async move {
            let mut rounds = 0u32;
            loop {
                rounds += 1;
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, connect(addr, left)).await {
                    Ok(Ok(t)) => return (addr, rounds, Ok(t)),
                    Ok(Err(e)) if step(&e) == Step::Again && left > WALK_ROUND_PAUSE * 2 => {
                        tokio::time::sleep(WALK_ROUND_PAUSE).await;
                    }
                    Ok(Err(e)) => return (addr, rounds, Err(Some(e))),
                    Err(_) => return (addr, rounds, Err(None)),
                }
            }
        })
        .collect();
    let mut tried = Tried {
        answers: addrs.iter().map(|&a| (a, None)).collect(),
        rounds: 0,
    };
    while let Some((addr, rounds, res)) = runs.next().await {
        tried.rounds = tried.rounds.max(rounds);
        match res {
            Ok(t) => return Ok(t),
            Err(answer) => {
                let fatal = answer.as_ref().is_some_and(|e| step(e) == Step::Fatal);
                tried.put(addr, answer);
                if fatal {
                    return Err(tried);
                }
            }
        }
    }
    Err(tried)
}

/// Connects to whichever of `addrs` takes the session, trying them all at
/// once past servers that do not lead ([`race`] with [`login_step`]);
/// `cfg.connect_timeout` bounds the whole race and `cfg.addr` is ignored.
pub async fn connect_any(
    addrs: &[SocketAddr],
    cfg: &ClientConfig,
) -> Result<Client, Tried<ClientError>> {
    race(
        addrs,
        cfg.connect_timeout,
        |addr, share| {
            let mut c = cfg.clone();
            c.addr = addr;
            c.connect_timeout = share;
            async move { Client::connect(&c).await }
        },
        login_step,
    )
    .await
}

async fn heartbeat(
    send: Arc<tokio::sync::Mutex<quinn::SendStream>>,
    last_write_ms: Arc<AtomicU64>,
    epoch: Instant,
    interval: Duration,
) {
    let mut frame = Vec::new();
    encode_frame(template::HEARTBEAT, &Heartbeat::default(), &mut frame);
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tick.tick().await;
        let now = epoch.elapsed().as_millis() as u64;
        if now.saturating_sub(last_write_ms.load(Ordering::Relaxed))
            < (interval.as_millis() as u64) / 2
        {
            continue;
        }
        let mut s = send.lock().await;
        if s.write_all(&frame).await.is_err() {
            return;
        }
        last_write_ms.store(now, Ordering::Relaxed);
    }
}

/// A limit GTC order (side, price, quantity), no STP, no flags.
pub fn limit(
    owner: u64,
    instrument: u32,
    side: Side,
    price: u64,
    qty: u64,
    client_order_id: u64,
) -> NewOrderMsg {
    NewOrderMsg {
        client_order_id,
        owner,
        price,
        qty,
        instrument,
        side: match side {
            Side::Buy => 0,
            Side::Sell => 1,
        },
        ..Default::default()
    }
}

/// The name of a reject code in a report (engine reasons below 100, gateway codes above).
pub fn reject_name(code: u16) -> String {
    match code {
        0 => "none".into(),
        wire::code::NOT_AUTHORIZED => "not_authorized".into(),
        wire::code::THROTTLED => "throttled".into(),
        wire::code::OPEN_ORDERS_LIMIT => "open_orders_limit".into(),
        wire::code::BUSY => "busy".into(),
        wire::code::UNROUTABLE => "unroutable".into(),
        wire::code::TOO_MANY_IN_FLIGHT => "too_many_in_flight".into(),
        wire::code::INVALID_TOKEN => "invalid_token".into(),
        wire::code::REPLAY_MORE => "replay_more".into(),
        wire::code::REPLAY_GAP => "replay_gap".into(),
        c => engine::RejectReason::from_code(c)
            .map(|r| r.name().to_string())
            .unwrap_or_else(|| format!("code_{c}")),
    }
}

/// The name of a ledger result code.
pub fn ledger_name(code: u16) -> String {
    if code == 0 {
        return "ok".into();
    }
    if code >= 100 {
        return reject_name(code);
    }
    engine::LedgerError::from_code(code)
        .map(|r| r.name().to_string())
        .unwrap_or_else(|| format!("code_{code}"))
}

/// The name of an execution type.
pub fn exec_type_name(t: u8) -> &'static str {
    match t {
        exec_type::NEW => "new",
        exec_type::TRADE => "trade",
        exec_type::CANCELED => "canceled",
        exec_type::REPLACED => "replaced",
        exec_type::REJECTED => "rejected",
        exec_type::EXPIRED => "expired",
        exec_type::TRIGGERED => "triggered",
        exec_type::STP_REDUCED => "stp_reduced",
        _ => "unknown",
    }
}

/// The name of an order status.
pub fn ord_status_name(s: u8) -> &'static str {
    match s {
        ord_status::NEW => "new",
        ord_status::PARTIALLY_FILLED => "partially_filled",
        ord_status::FILLED => "filled",
        ord_status::CANCELED => "canceled",
        ord_status::REJECTED => "rejected",
        ord_status::EXPIRED => "expired",
        _ => "unknown",
    }
}

/// One human-readable line for a report (`symbol` names the instrument if
/// known). Only what the report knows is printed: a reject of an unknown
/// order has no instrument, side, quantity or price (instrument 0), a new
/// order's reject has no order id yet, and a market order has no price.
pub fn describe_report(r: &ExecutionReport, symbol: Option<&str>) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "#{} {}",
        r.report_seq,
        exec_type_name(r.exec_type).to_uppercase()
    );
    if r.order_id != 0 {
        let _ = write!(s, " order {}", r.order_id);
    }
    if r.client_order_id != 0 {
        let _ = write!(s, " (coid {}, owner {})", r.client_order_id, r.owner);
    } else {
        let _ = write!(s, " (owner {})", r.owner);
    }
    // A session knows an order's details only when it tracks the order (it
    // placed it, or saw it since login); a report on someone else's order
    // (a maker fill, a replace or cancel from another session) carries only
    // what the event says, and nothing is printed in place of the rest.
    let tracked = r.instrument != 0 && r.order_qty != 0;
    if r.instrument != 0 {
        let instrument = symbol
            .map(str::to_string)
            .unwrap_or_else(|| format!("instrument {}", r.instrument));
        let side = if r.side == 1 { "sell" } else { "buy" };
        let _ = write!(s, " {instrument} {side}");
    }
    if tracked {
        let _ = write!(s, " {}", r.order_qty);
        if r.price == 0 {
            s.push_str(" at market");
        } else {
            let _ = write!(s, " @ {}", r.price);
        }
    }
    if r.exec_type == exec_type::TRADE {
        let _ = write!(s, " | filled {} @ {}", r.last_qty, r.last_px);
    }
    // Untracked, a replace or cancel still names the order's side, price
    // and leaves: the event carries them.
    let side = if r.side == 1 { "sell" } else { "buy" };
    let at = |price: u64| match price {
        0 => " at market".to_string(),
        p => format!(" @ {p}"),
    };
    if r.exec_type == exec_type::REPLACED && !tracked {
        let _ = write!(s, " | now {side} {}{}", r.leaves_qty, at(r.price));
    }
    if matches!(r.exec_type, exec_type::CANCELED | exec_type::EXPIRED) && !tracked {
        let _ = write!(s, " | {side} {}{} removed", r.order_qty, at(r.price));
    }
    if r.exec_type == exec_type::REJECTED {
        let _ = write!(s, " | reason {}", reject_name(r.reject_code));
    }
    if r.cancel_reason != CANCEL_REASON_NONE
        && matches!(
            r.exec_type,
            exec_type::CANCELED | exec_type::EXPIRED | exec_type::STP_REDUCED
        )
    {
        let _ = write!(s, " | reason {}", cancel_reason_name(r.cancel_reason));
    }
    if tracked {
        let _ = write!(s, " | cum {} leaves {}", r.cum_qty, r.leaves_qty);
    }
    if r.ord_status != ord_status::UNKNOWN {
        let _ = write!(s, " | {}", ord_status_name(r.ord_status));
    }
    if r.flags & REPORT_REPLAYED != 0 {
        let _ = write!(s, " | replayed (seq {})", r.engine_seq);
    }
    s
}

/// The name of a cancel reason code.
pub fn cancel_reason_name(c: u8) -> &'static str {
    match c {
        0 => "user",
        1 => "ioc_remainder",
        2 => "expired",
        3 => "stp",
        4 => "mass_cancel",
        5 => "circuit_breaker",
        6 => "capacity_exceeded",
        _ => "none",
    }
}

/// A report as a JSON object (names for enums, numbers for the rest).
pub fn report_json(r: &ExecutionReport, symbol: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "type": "execution_report",
        "report_seq": r.report_seq,
        "request": r.request,
        "exec_type": exec_type_name(r.exec_type),
        "ord_status": ord_status_name(r.ord_status),
        "order_id": r.order_id,
        "client_order_id": r.client_order_id,
        "owner": r.owner,
        "instrument": r.instrument,
        "symbol": symbol,
        "side": if r.side == 1 { "sell" } else { "buy" },
        "price": r.price,
        "order_qty": r.order_qty,
        "cum_qty": r.cum_qty,
        "leaves_qty": r.leaves_qty,
        "last_qty": r.last_qty,
        "last_px": r.last_px,
        "reject": (r.exec_type == exec_type::REJECTED).then(|| reject_name(r.reject_code)),
        "cancel_reason": (r.cancel_reason != CANCEL_REASON_NONE).then(|| cancel_reason_name(r.cancel_reason)),
        "own_request": r.flags & REPORT_OWN_REQUEST != 0,
        "replayed": r.flags & REPORT_REPLAYED != 0,
        "engine_seq": r.engine_seq,
        "partition": r.partition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Answers by port: 1 = not_leader, 2 = bad_token, 3 = closed,
    /// 4 = never answers, 5 = takes the session.
    async fn fake(addr: SocketAddr) -> Result<u16, ClientError> {
        match addr.port() {
            1 => Err(ClientError::LoginRejected(login_reject::NOT_LEADER)),
            2 => Err(ClientError::LoginRejected(login_reject::BAD_TOKEN)),
            3 => Err(ClientError::Closed),
            4 => std::future::pending().await,
            p => Ok(p),
        }
    }

    #[test]
    fn walk_passes_not_leader_and_dead_servers_and_stops_at_a_refused_token() {
        let budget = Duration::from_millis(400);
        let walk_ports = |ports: &[u16]| {
            let a: Vec<SocketAddr> = ports
                .iter()
                .map(|&p| SocketAddr::from(([127, 0, 0, 1], p)))
                .collect();
            rt().block_on(walk(&a, budget, |addr, _| fake(addr), login_step))
        };
        assert_eq!(walk_ports(&[1, 3, 4, 5]).unwrap(), 5);
        let e = walk_ports(&[1, 2, 5]).unwrap_err();
        assert_eq!(e.rounds, 1, "a refused token is final");
        assert_eq!(e.answers.len(), 2);
        let text = e.to_string();
        assert!(
            text.contains("127.0.0.1:1: login rejected: not_leader"),
            "{text}"
        );
        assert!(
            text.contains("127.0.0.1:2: login rejected: bad_token"),
            "{text}"
        );
        // No leader anywhere: rounds until the budget is spent, then every
        // server with its last answer.
        let started = Instant::now();
        let e = walk_ports(&[4, 1, 3]).unwrap_err();
        assert!(e.rounds >= 2, "{e}");
        assert!(started.elapsed() < budget + Duration::from_millis(200));
        assert_eq!(e.answers.len(), 3);
        assert!(
            e.to_string().contains("127.0.0.1:4: no answer in time"),
            "{e}"
        );
        // Dead servers only: one round (nothing suggests a leader will come).
        assert_eq!(walk_ports(&[3]).unwrap_err().rounds, 1);
    }

    #[test]
    fn walk_finds_a_leader_elected_meanwhile_past_a_dead_server() {
        // The first round sees two followers and a dead server (port 4, last);
        // the second finds port 2 leading, within the budget.
        let mut calls = 0u32;
        let a: Vec<SocketAddr> = [1, 2, 4]
            .iter()
            .map(|&p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        let started = Instant::now();
        let got = rt().block_on(walk(
            &a,
            Duration::from_millis(900),
            |addr, _| {
                calls += 1;
                let leads = calls > 3 && addr.port() == 2;
                async move {
                    match addr.port() {
                        4 => std::future::pending().await,
                        p if leads => Ok(p),
                        _ => Err(ClientError::LoginRejected(login_reject::NOT_LEADER)),
                    }
                }
            },
            login_step,
        ));
        assert_eq!(got.unwrap(), 2);
        assert_eq!(calls, 5);
        assert!(started.elapsed() < Duration::from_millis(900));
    }

    #[test]
    fn race_finds_the_new_leader_while_a_dead_server_never_answers() {
        // A dead server first in the list (port 4) costs nothing: port 2
        // answers not_leader twice (an election), then takes the session.
        let a: Vec<SocketAddr> = [4, 1, 2]
            .iter()
            .map(|&p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        let calls = std::cell::Cell::new(0u32);
        let started = Instant::now();
        let got = rt().block_on(race(
            &a,
            Duration::from_secs(3),
            |addr, _| {
                let leads = addr.port() == 2 && {
                    calls.set(calls.get() + 1);
                    calls.get() > 2
                };
                async move {
                    match addr.port() {
                        4 => std::future::pending().await,
                        p if leads => Ok(p),
                        _ => Err(ClientError::LoginRejected(login_reject::NOT_LEADER)),
                    }
                }
            },
            login_step,
        ));
        assert_eq!(got.unwrap(), 2);
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(600),
            "{took:?}: the dead server held the race"
        );
        assert!(
            took >= WALK_ROUND_PAUSE * 2,
            "{took:?}: two not_leader answers, two pauses"
        );
    }

    #[test]
    fn race_stops_at_a_refused_token_and_names_every_server() {
        let ports = |ps: &[u16]| -> Vec<SocketAddr> {
            ps.iter()
                .map(|&p| SocketAddr::from(([127, 0, 0, 1], p)))
                .collect()
        };
        let budget = Duration::from_millis(400);
        let e = rt()
            .block_on(race(
                &ports(&[4, 1, 2]),
                budget,
                |addr, _| fake(addr),
                login_step,
            ))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("127.0.0.1:2: login rejected: bad_token"),
            "{e}"
        );
        // Nobody leads: every server with its last answer once the budget is spent.
        let started = Instant::now();
        let e = rt()
            .block_on(race(
                &ports(&[4, 1, 3]),
                budget,
                |addr, _| fake(addr),
                login_step,
            ))
            .unwrap_err();
        assert!(started.elapsed() < budget + Duration::from_millis(200));
        let text = e.to_string();
        assert!(text.contains("127.0.0.1:4: no answer in time"), "{text}");
        assert!(
            text.contains("127.0.0.1:1: login rejected: not_leader"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:3:"), "{text}");
    }
}
