//! The peer transport for Raft: an authenticated request/response RPC over
//! QUIC (ALPN [`RAFT_ALPN`], `bourse-raft/1`) between the nodes of a
//! cluster, carrying opaque bytes. It knows nothing of Raft: the replica
//! crate serializes its RPCs, names the group (partition) and the kind, and
//! routes what arrives ([`RpcHandler`]).
//!
//! Shape: a [`PeerServer`] per node on its own UDP port, and a
//! [`PeerClient`] holding one connection per peer address, shared by every
//! group, made on first use and remade after it fails. A connection opens
//! with a hello (the first bidirectional stream: magic `BRFT`, protocol
//! version, the 32-byte [`ClusterSecret`]) that the server answers with an
//! acknowledgement before it accepts any other stream. Every RPC is then
//! one bidirectional stream, little-endian:
//!
//! ```text
//! request:  group u32 | kind u8 | reserved [0; 3] | len u32 | body (len bytes), then FIN
//! response: status u8 | reserved [0; 3] | code u32 | len u32 | body (len bytes), then FIN
//! status:   0 ok (body = the handler's reply), 1 refused by the handler (code, body =
//!           its detail), 2 rejected by the transport (code: `reject::*`, empty body)
//! ```
//!
//! Invariants:
//! - no RPC reaches the handler on a connection whose hello was not checked:
//!   the server reads the hello before it accepts any other stream, and
//!   closes the connection with a named code ([`close`]) on a wrong secret,
//!   an unknown version, a malformed hello or one that does not arrive within
//!   `connect_timeout`;
//! - the secret is compared in constant time and never printed: `Debug`
//!   shows `ClusterSecret(..)` and no log line names it;
//! - no frame over `frame_bytes_max` is sent, accepted or allocated: a length
//!   is checked against the limit before any body byte is read, and a body
//!   grows as its bytes arrive, never allocated at its claimed size;
//! - a malformed or oversize frame is a typed error ([`FrameFault`],
//!   [`RpcError::Rejected`]), never a panic;
//! - everything is bounded: connections per server (`connections_max`),
//!   handler tasks per connection (`streams_max`, also the QUIC stream
//!   credit), the time to receive one request and to send its reply
//!   (`transfer_timeout`), each connect and hello (`connect_timeout`), each
//!   call (its `timeout`), the client's peer table (`peers_max`);
//! - a call that times out or finds its connection lost evicts that
//!   connection from the cache, so the next call reconnects.

use crate::identity::{self, IdentityError};
use crate::net::{self, NetError, Tuning};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The ALPN of the peer transport.
pub const RAFT_ALPN: &[u8] = b"bourse-raft/1";
/// The hello's protocol version; a server refuses any other.
pub const PROTOCOL_VERSION: u16 = 1;

const HELLO_MAGIC: [u8; 4] = *b"BRFT";
/// Magic, version u16, reserved u16, secret.
const HELLO_BYTES: usize = 4 + 2 + 2 + SECRET_BYTES;
/// Magic, version u16, reserved u16.
const ACK_BYTES: usize = 8;
/// Both the request and the response header.
const HEADER_BYTES: usize = 12;
const SECRET_BYTES: usize = 32;
/// The first allocation for a body; it grows as bytes arrive.
const BODY_CHUNK_BYTES: usize = 64 << 10;

/// Connection close codes the server uses (application error codes).
pub mod close {
    /// Orderly close (the client was dropped or evicted the connection).
    pub const NORMAL: u32 = 0;
    /// The hello carried the wrong cluster secret.
    pub const BAD_SECRET: u32 = 1;
    /// The first stream was not a well-formed hello.
    pub const BAD_HELLO: u32 = 2;
    /// The hello's protocol version is not [`super::PROTOCOL_VERSION`].
    pub const VERSION: u32 = 3;
    /// No hello within `connect_timeout`.
    pub const HELLO_TIMEOUT: u32 = 4;
    /// The server is stopping.
    pub const SHUTDOWN: u32 = 5;

    /// The code's name, for logs and errors.
    pub fn name(code: u32) -> &'static str {
        match code {
            NORMAL => "normal",
            BAD_SECRET => "wrong cluster secret",
            BAD_HELLO => "malformed hello",
            VERSION => "unsupported protocol version",
            HELLO_TIMEOUT => "no hello in time",
            SHUTDOWN => "server stopping",
            _ => "unknown",
        }
    }
}

/// Why the server's transport rejected a request (status 2's code).
pub mod reject {
    /// The body is longer than the server's `frame_bytes_max`, or the
    /// handler's reply would be.
    pub const TOO_LARGE: u32 = 1;
    /// The stream ended before the header's length.
    pub const TRUNCATED: u32 = 2;
    /// The stream carried more than the header's length.
    pub const OVERLONG: u32 = 3;
    /// Reserved header bytes were not zero.
    pub const RESERVED: u32 = 4;

    /// The code's name, for errors.
    pub fn name(code: u32) -> &'static str {
        match code {
            TOO_LARGE => "frame too large",
            TRUNCATED => "truncated frame",
            OVERLONG => "frame longer than its header says",
            RESERVED => "reserved header bytes set",
            _ => "unknown",
        }
    }
}

mod status {
    pub const OK: u8 = 0;
    pub const REFUSED: u8 = 1;
    pub const REJECTED: u8 = 2;
}

// ---------------------------------------------------------------- secret

/// The secret every node of a cluster shares; a peer proves membership by
/// sending it in its hello (inside TLS). `Debug` prints `ClusterSecret(..)`
/// only; there is no `PartialEq` (the one comparison is constant-time).
#[derive(Clone)]
pub struct ClusterSecret([u8; SECRET_BYTES]);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// Why the cluster secret file could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Reading the file failed.
    #[error("cluster secret {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not one line of 64 hex digits.
    #[error("cluster secret {path}: not a secret (expected one line of 64 hex digits)")]
    Malformed {
        /// The file.
        path: String,
    },
    /// Creating the file failed (names the file).
    #[error("cluster secret: {0}")]
    Create(#[from] IdentityError),
}

impl ClusterSecret {
    /// A secret from its bytes.
    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> Self {
        ClusterSecret(bytes)
    }

    /// A fresh secret from the operating system's generator (the one
    /// `identity::random_token` draws from: two tokens are 32 bytes).
    pub fn random() -> Self {
        let hex = format!("{}{}", identity::random_token(), identity::random_token());
        Self::from_hex(&hex).expect("two random tokens are 64 hex digits")
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Option<Self> {
        let t = text.trim();
        if t.len() != 2 * SECRET_BYTES || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let hi = u128::from_str_radix(&t[..32], 16).ok()?;
        let lo = u128::from_str_radix(&t[32..], 16).ok()?;
        let mut b = [0u8; SECRET_BYTES];
        b[..16].copy_from_slice(&hi.to_be_bytes());
        b[16..].copy_from_slice(&lo.to_be_bytes());
        Some(ClusterSecret(b))
    }

    /// Loads the secret from `path`, or, when the file is missing, creates
    /// it (mode 0600, one line of 64 hex digits; temporary file + rename, so
    /// never half-written) and loads what was written. An existing file is
    /// never overwritten; a malformed one is an error naming it.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        if !path.exists() {
            let hex = format!("{}{}\n", identity::random_token(), identity::random_token());
            identity::write_new(path, hex.as_bytes(), true)?;
        }
        let named = || path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Io {
            path: named(),
            source,
        })?;
        Self::from_hex(&text).ok_or_else(|| SecretError::Malformed { path: named() })
    }

    /// Whether `other` is this secret, in time independent of where they
    /// differ (no early exit; `black_box` keeps the compiler from adding one).
    fn matches(&self, other: &[u8]) -> bool {
        if other.len() != SECRET_BYTES {
            return false;
        }
        let diff = self
            .0
            .iter()
            .zip(other)
            .fold(0u8, |acc, (a, b)| acc | std::hint::black_box(a ^ b));
        std::hint::black_box(diff) == 0
    }
}

// ---------------------------------------------------------------- frames

/// Why a frame could not be read or sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameFault {
    /// A body over the limit (checked before it is read or sent).
    #[error("body of {len} bytes over the limit of {max} bytes")]
    TooLarge {
        /// Claimed or given length, bytes.
        len: u64,
        /// The limit, bytes.
        max: u64,
    },
    /// The stream ended early.
    #[error("stream ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes the frame needs.
        expected: u64,
        /// Bytes that came.
        got: u64,
    },
    /// More bytes than the header's length.
    #[error("more than the header's {len} bytes")]
    Overlong {
        /// The header's length.
        len: u64,
    },
    /// Reserved header bytes were not zero.
    #[error("reserved header bytes are not zero")]
    Reserved,
    /// A response status this version does not know.
    #[error("unknown response status {0}")]
    Status(u8),
    /// The hello acknowledgement is not `BRFT` + our version.
    #[error("bad hello acknowledgement")]
    BadAck,
}

impl FrameFault {
    /// The code a server sends back when it rejects a request for this.
    fn reject_code(self) -> u32 {
        match self {
            FrameFault::TooLarge { .. } => reject::TOO_LARGE,
            FrameFault::Truncated { .. } => reject::TRUNCATED,
            FrameFault::Overlong { .. } => reject::OVERLONG,
            FrameFault::Reserved | FrameFault::Status(_) | FrameFault::BadAck => reject::RESERVED,
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// An RPC request's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RequestHeader {
    group: u32,
    kind: u8,
    len: u32,
}

impl RequestHeader {
    fn encode(self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[..4].copy_from_slice(&self.group.to_le_bytes());
        b[4] = self.kind;
        b[8..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    fn decode(b: &[u8; HEADER_BYTES]) -> Result<Self, FrameFault> {
        if b[5..8] != [0; 3] {
            return Err(FrameFault::Reserved);
        }
        Ok(RequestHeader {
            group: u32_at(b, 0),
            kind: b[4],
            len: u32_at(b, 8),
        })
    }
}

/// An RPC response's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ResponseHeader {
    status: u8,
    code: u32,
    len: u32,
}

impl ResponseHeader {
    fn encode(self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0] = self.status;
        b[4..8].copy_from_slice(&self.code.to_le_bytes());
        b[8..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    fn decode(b: &[u8; HEADER_BYTES]) -> Result<Self, FrameFault> {
        if b[1..4] != [0; 3] {
            return Err(FrameFault::Reserved);
        }
        if b[0] > status::REJECTED {
            return Err(FrameFault::Status(b[0]));
        }
        Ok(ResponseHeader {
            status: b[0],
            code: u32_at(b, 4),
            len: u32_at(b, 8),
        })
    }
}

fn encode_hello(secret: &ClusterSecret) -> [u8; HELLO_BYTES] {
    let mut b = [0u8; HELLO_BYTES];
    b[..4].copy_from_slice(&HELLO_MAGIC);
    b[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    b[8..].copy_from_slice(&secret.0);
    b
}

/// Checks a hello; `Err` is the close code to answer with.
fn check_hello(b: &[u8; HELLO_BYTES], secret: &ClusterSecret) -> Result<(), u32> {
    if b[..4] != HELLO_MAGIC || b[6..8] != [0; 2] {
        return Err(close::BAD_HELLO);
    }
    if u16::from_le_bytes([b[4], b[5]]) != PROTOCOL_VERSION {
        return Err(close::VERSION);
    }
    if !secret.matches(&b[8..]) {
        return Err(close::BAD_SECRET);
    }
    Ok(())
}

fn encode_ack() -> [u8; ACK_BYTES] {
    let mut b = [0u8; ACK_BYTES];
    b[..4].copy_from_slice(&HELLO_MAGIC);
    b[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    b
}

/// Why a frame could not be read off a stream: the frame is bad, or the
/// stream is.
#[derive(Debug)]
enum ReadFailure {
    Fault(FrameFault),
    Stream(quinn::ReadError),
}

async fn read_header(recv: &mut quinn::RecvStream) -> Result<[u8; HEADER_BYTES], ReadFailure> {
    let mut b = [0u8; HEADER_BYTES];
    match recv.read_exact(&mut b).await {
        Ok(()) => Ok(b),
        Err(quinn::ReadExactError::FinishedEarly(got)) => {
            Err(ReadFailure::Fault(FrameFault::Truncated {
                expected: HEADER_BYTES as u64,
                got: got as u64,
            }))
        }
        Err(quinn::ReadExactError::ReadError(e)) => Err(ReadFailure::Stream(e)),
    }
}

/// Reads exactly `len` bytes (already checked against the limit) up to the
/// stream's end. The buffer grows as bytes arrive: a peer that claims a
/// large body and sends little costs little.
async fn read_body(recv: &mut quinn::RecvStream, len: u32) -> Result<Vec<u8>, ReadFailure> {
    let len = len as usize;
    let mut body = Vec::with_capacity(len.min(BODY_CHUNK_BYTES));
    loop {
        // One byte past the length: the end of the stream, or an overlong frame.
        let want = (len - body.len()).max(1);
        match recv.read_chunk(want, true).await {
            Ok(Some(chunk)) if body.len() + chunk.bytes.len() > len => {
                return Err(ReadFailure::Fault(FrameFault::Overlong { len: len as u64 }))
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk.bytes),
            Ok(None) => break,
            Err(e) => return Err(ReadFailure::Stream(e)),
        }
    }
    if body.len() < len {
        return Err(ReadFailure::Fault(FrameFault::Truncated {
            expected: len as u64,
            got: body.len() as u64,
        }));
    }
    Ok(body)
}

/// Checks a length against the limit; `Ok` is it as a `u32`.
fn within(len: usize, max: u32) -> Result<u32, FrameFault> {
    match u32::try_from(len) {
        Ok(l) if l <= max => Ok(l),
        _ => Err(FrameFault::TooLarge {
            len: len as u64,
            max: u64::from(max),
        }),
    }
}

// ---------------------------------------------------------------- limits, errors

/// The transport's bounds.
#[derive(Clone, Copy, Debug)]
pub struct PeerLimits {
    /// Longest request or response body, bytes, both ways (snapshots travel
    /// whole, hence the large default: 64 MiB).
    pub frame_bytes_max: u32,
    /// Concurrent inbound RPC streams (and handler tasks) per connection.
    pub streams_max: u32,
    /// Concurrent inbound connections a server holds (authenticated or not).
    pub connections_max: usize,
    /// Peer addresses a client keeps a connection slot for.
    pub peers_max: usize,
    /// The QUIC handshake plus the hello, both sides.
    pub connect_timeout: Duration,
    /// Close a connection silent for this long (keep-alives are sent at a
    /// third of it, so only a dead peer is silent).
    pub idle_timeout: Duration,
    /// The longest a server takes to receive one request and, separately,
    /// to send its reply (a stalled stream is dropped after it).
    pub transfer_timeout: Duration,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            frame_bytes_max: 64 << 20,
            streams_max: 64,
            connections_max: 64,
            peers_max: 1024,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            transfer_timeout: Duration::from_secs(60),
        }
    }
}

impl PeerLimits {
    fn check(&self) -> Result<(), PeerError> {
        let zero = [
            (self.frame_bytes_max == 0, "frame_bytes_max is 0"),
            (self.streams_max == 0, "streams_max is 0"),
            (self.connections_max == 0, "connections_max is 0"),
            (self.peers_max == 0, "peers_max is 0"),
            (self.connect_timeout.is_zero(), "connect_timeout is 0"),
            (self.idle_timeout.is_zero(), "idle_timeout is 0"),
            (self.transfer_timeout.is_zero(), "transfer_timeout is 0"),
        ];
        match zero.iter().find(|(bad, _)| *bad) {
            Some((_, what)) => Err(PeerError::Limits(what)),
            None => Ok(()),
        }
    }

    /// The QUIC settings: the stream credit is `streams_max`, keep-alives
    /// at a third of the idle timeout.
    fn tuning(&self) -> Tuning {
        Tuning {
            idle_timeout: self.idle_timeout,
            keep_alive: Some(self.idle_timeout / 3),
            max_bidi_streams: self.streams_max,
            ..Tuning::default()
        }
    }
}

/// Why a server or client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// TLS configuration or the socket.
    #[error("raft peer transport: {0}")]
    Net(#[from] NetError),
    /// Called outside a tokio runtime.
    #[error("raft peer transport: must run inside a tokio runtime")]
    NoRuntime,
    /// A limit that would make the transport unusable.
    #[error("raft peer limits: {0}")]
    Limits(&'static str),
}

/// Why one RPC failed; every variant names the peer.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No local socket for the peer's address family.
    #[error("raft peer {peer}: {source}")]
    Endpoint {
        /// The peer.
        peer: SocketAddr,
        /// What failed.
        source: NetError,
    },
    /// The connection could not be started (a bad address).
    #[error("raft peer {peer}: connect: {source}")]
    Connect {
        /// The peer.
        peer: SocketAddr,
        /// What failed.
        source: quinn::ConnectError,
    },
    /// The QUIC or TLS handshake failed (an untrusted certificate, the
    /// wrong ALPN, ...).
    #[error("raft peer {peer}: handshake: {source}")]
    Handshake {
        /// The peer.
        peer: SocketAddr,
        /// What failed.
        source: quinn::ConnectionError,
    },
    /// Handshake and hello took longer than `connect_timeout`.
    #[error("raft peer {peer}: no connection within {timeout_ms} ms")]
    ConnectTimeout {
        /// The peer.
        peer: SocketAddr,
        /// The limit, milliseconds.
        timeout_ms: u64,
    },
    /// The peer refused our cluster secret.
    #[error("raft peer {peer}: refused our cluster secret")]
    AuthFailed {
        /// The peer.
        peer: SocketAddr,
    },
    /// The peer refused our hello for another reason (`close::*`).
    #[error("raft peer {peer}: hello refused: {}", close::name(*code))]
    HelloRefused {
        /// The peer.
        peer: SocketAddr,
        /// The close code.
        code: u32,
    },
    /// The call did not complete within its timeout.
    #[error("raft peer {peer}: no answer within {timeout_ms} ms")]
    Timeout {
        /// The peer.
        peer: SocketAddr,
        /// The limit, milliseconds.
        timeout_ms: u64,
    },
    /// The peer's handler refused the request.
    #[error("raft peer {peer}: refused (code {code})")]
    Refused {
        /// The peer.
        peer: SocketAddr,
        /// The handler's code.
        code: u32,
        /// The handler's detail.
        body: Vec<u8>,
    },
    /// The peer's transport rejected our request (`reject::*`).
    #[error("raft peer {peer}: rejected: {}", reject::name(*code))]
    Rejected {
        /// The peer.
        peer: SocketAddr,
        /// The reject code.
        code: u32,
    },
    /// The connection closed or was lost.
    #[error("raft peer {peer}: connection: {source}")]
    Closed {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        source: quinn::ConnectionError,
    },
    /// Our request or the peer's response is malformed or oversize.
    #[error("raft peer {peer}: frame: {fault}")]
    Frame {
        /// The peer.
        peer: SocketAddr,
        /// What is wrong.
        fault: FrameFault,
    },
    /// The stream failed (reset or stopped by the peer).
    #[error("raft peer {peer}: stream: {source}")]
    Io {
        /// The peer.
        peer: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// The client's peer table is full (`peers_max`).
    #[error("raft peer {peer}: already {max} peers")]
    TooManyPeers {
        /// The peer.
        peer: SocketAddr,
        /// The limit.
        max: usize,
    },
}

impl RpcError {
    /// Whether the connection the call used is suspect (the next call
    /// should make a new one).
    fn connection_suspect(&self) -> bool {
        matches!(self, RpcError::Timeout { .. } | RpcError::Closed { .. })
    }
}

/// A lost connection as an `RpcError`: the hello's refusals by name.
fn lost(peer: SocketAddr, e: quinn::ConnectionError) -> RpcError {
    if let quinn::ConnectionError::ApplicationClosed(c) = &e {
        let code = u32::try_from(c.error_code.into_inner()).unwrap_or(u32::MAX);
        match code {
            close::BAD_SECRET => return RpcError::AuthFailed { peer },
            close::BAD_HELLO | close::VERSION | close::HELLO_TIMEOUT => {
                return RpcError::HelloRefused { peer, code }
            }
            _ => {}
        }
    }
    RpcError::Closed { peer, source: e }
}

fn read_failed(peer: SocketAddr, f: ReadFailure) -> RpcError {
    match f {
        ReadFailure::Fault(fault) => RpcError::Frame { peer, fault },
        ReadFailure::Stream(quinn::ReadError::ConnectionLost(e)) => lost(peer, e),
        ReadFailure::Stream(e) => RpcError::Io {
            peer,
            source: e.into(),
        },
    }
}

fn write_failed(peer: SocketAddr, e: quinn::WriteError) -> RpcError {
    match e {
        quinn::WriteError::ConnectionLost(e) => lost(peer, e),
        e => RpcError::Io {
            peer,
            source: e.into(),
        },
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (a cache of connections: the worst is a stale entry, checked on use).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Re-raises a task's panic (a bug fails loudly, not silently in a task).
fn reap(set: &mut JoinSet<()>) {
    while let Some(r) = set.try_join_next() {
        if let Err(e) = r {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

// ---------------------------------------------------------------- server

/// A handler's refusal: a code and an optional detail for the caller (the
/// replica crate's to define, e.g. "not the leader; the leader is ...").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcRefused {
    /// The refusal's code.
    pub code: u32,
    /// Its detail (at most `frame_bytes_max` bytes, else the transport
    /// rejects the reply as too large).
    pub body: Vec<u8>,
}

/// The future a handler returns.
pub type RpcFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, RpcRefused>> + Send>>;

/// What a node serves: called once per inbound RPC (the replica crate
/// routes by group).
pub trait RpcHandler: Send + Sync + 'static {
    /// `group`: the Raft group (partition); `kind`: the RPC kind (append,
    /// vote, snapshot, ...); `body`: the request bytes. Returns the response
    /// bytes, or a typed refusal. The future runs on the server's runtime,
    /// one task per stream; it is dropped unfinished when its connection
    /// ends or the server stops (the reply would have nowhere to go), so
    /// work that must finish belongs in a task of the replica's own.
    fn handle(&self, group: u32, kind: u8, body: Vec<u8>) -> RpcFuture;
}

/// What every connection task of a server shares.
struct Served {
    secret: ClusterSecret,
    handler: Arc<dyn RpcHandler>,
    limits: PeerLimits,
}

/// A node's RPC server: accepts connections on its own UDP port (ALPN
/// `bourse-raft/1`), checks each one's hello, then serves its RPC streams
/// concurrently. Dropping it stops it too (without waiting).
pub struct PeerServer {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for PeerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl PeerServer {
    /// Binds `addr` (must run inside a tokio runtime); the TLS identity is
    /// the node's certificate and PKCS#8 key (DER).
    pub fn start(
        addr: SocketAddr,
        cert_der: &[u8],
        key_der: &[u8],
        secret: ClusterSecret,
        handler: Arc<dyn RpcHandler>,
        limits: PeerLimits,
    ) -> Result<PeerServer, PeerError> {
        limits.check()?;
        tokio::runtime::Handle::try_current().map_err(|_| PeerError::NoRuntime)?;
        let t = limits.tuning();
        let sc = net::server_config(cert_der, key_der, RAFT_ALPN, &t)?;
        let endpoint = net::server_endpoint(addr, sc, &t)?;
        let addr = endpoint
            .local_addr()
            .map_err(|source| NetError::Io { addr, source })?;
        let served = Arc::new(Served {
            secret,
            handler,
            limits,
        });
        let accept = tokio::spawn(accept_loop(endpoint.clone(), served));
        Ok(PeerServer {
            endpoint,
            addr,
            accept,
        })
    }

    /// The bound address (the port chosen when `addr` named port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every connection (code `SHUTDOWN`; in-flight
    /// handlers are dropped) and waits, briefly, for the socket to go idle.
    pub async fn close(mut self) {
        self.endpoint
            .close(close::SHUTDOWN.into(), b"server stopping");
        if let Err(e) = (&mut self.accept).await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        let idle = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle());
        let _ = idle.await;
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.endpoint
            .close(close::SHUTDOWN.into(), b"server stopping");
        self.accept.abort();
    }
}

/// Accepts connections while the endpoint is open, at most
/// `connections_max` at once (more are refused at once); on the way out,
/// aborts the connection tasks.
async fn accept_loop(endpoint: quinn::Endpoint, served: Arc<Served>) {
    let slots = Arc::new(Semaphore::new(served.limits.connections_max));
    let mut conns = JoinSet::new();
    while let Some(incoming) = endpoint.accept().await {
        reap(&mut conns);
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let served = served.clone();
                conns.spawn(async move {
                    connection(incoming, served).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tracing::warn!(peer = %incoming.remote_address(), "raft peer connection refused: connections_max reached");
                incoming.refuse();
            }
        }
    }
    conns.shutdown().await;
}

/// One connection: handshake, hello, then its RPC streams.
async fn connection(incoming: quinn::Incoming, served: Arc<Served>) {
    let peer = incoming.remote_address();
    let limits = served.limits;
    let conn = match tokio::time::timeout(limits.connect_timeout, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "raft peer handshake failed");
            return;
        }
        Err(_) => return,
    };
    let admitted = tokio::time::timeout(limits.connect_timeout, admit(&conn, &served.secret)).await;
    let refusal = match admitted {
        Ok(Ok(())) => None,
        Ok(Err(code)) => Some(code),
        Err(_) => Some(close::HELLO_TIMEOUT),
    };
    if let Some(code) = refusal {
        tracing::warn!(peer = %peer, code, reason = close::name(code), "raft peer refused");
        conn.close(code.into(), close::name(code).as_bytes());
        return;
    }
    serve_rpcs(conn, served).await;
}

/// Reads and checks the hello on the connection's first stream and
/// acknowledges it; `Err` is the close code.
async fn admit(conn: &quinn::Connection, secret: &ClusterSecret) -> Result<(), u32> {
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|_| close::BAD_HELLO)?;
    let mut hello = [0u8; HELLO_BYTES];
    recv.read_exact(&mut hello)
        .await
        .map_err(|_| close::BAD_HELLO)?;
    check_hello(&hello, secret)?;
    send.write_all(&encode_ack())
        .await
        .map_err(|_| close::BAD_HELLO)?;
    let _ = send.finish();
    Ok(())
}

/// Serves RPC streams until the connection ends: one task per stream, at
/// most `streams_max` at once (a stream is not accepted until a task slot
/// is free). When the connection ends its in-flight handlers are dropped:
/// their replies have nowhere to go.
async fn serve_rpcs(conn: quinn::Connection, served: Arc<Served>) {
    let peer = conn.remote_address();
    let permits = Arc::new(Semaphore::new(served.limits.streams_max as usize));
    let mut streams = JoinSet::new();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "raft peer connection ended");
                break;
            }
        };
        reap(&mut streams);
        let served = served.clone();
        streams.spawn(async move {
            serve_stream(send, recv, &served).await;
            drop(permit);
        });
    }
}

/// What a server sends back on one stream.
struct Reply {
    header: ResponseHeader,
    body: Vec<u8>,
}

impl Reply {
    fn rejected(fault: FrameFault) -> Reply {
        Reply {
            header: ResponseHeader {
                status: status::REJECTED,
                code: fault.reject_code(),
                len: 0,
            },
            body: Vec::new(),
        }
    }

    /// The handler's answer, unless it is over the limit.
    fn answer(status: u8, code: u32, body: Vec<u8>, max: u32) -> Reply {
        match within(body.len(), max) {
            Ok(len) => Reply {
                header: ResponseHeader { status, code, len },
                body,
            },
            Err(fault) => {
                tracing::warn!(
                    len = body.len(),
                    max,
                    "raft handler reply over frame_bytes_max"
                );
                Reply::rejected(fault)
            }
        }
    }
}

/// One RPC: read the request (bounded in size and time), run the handler,
/// send the reply (bounded in time).
async fn serve_stream(mut send: quinn::SendStream, mut recv: quinn::RecvStream, served: &Served) {
    let limits = served.limits;
    let max = limits.frame_bytes_max;
    let request = tokio::time::timeout(limits.transfer_timeout, read_request(&mut recv, max));
    let reply = match request.await {
        Err(_) | Ok(Err(ReadFailure::Stream(_))) => return,
        Ok(Err(ReadFailure::Fault(fault))) => {
            // Refuse the rest of the body rather than read it.
            let _ = recv.stop(0u32.into());
            Reply::rejected(fault)
        }
        Ok(Ok((h, body))) => match served.handler.handle(h.group, h.kind, body).await {
            Ok(body) => Reply::answer(status::OK, 0, body, max),
            Err(r) => Reply::answer(status::REFUSED, r.code, r.body, max),
        },
    };
    let write = async {
        send.write_all(&reply.header.encode()).await?;
        send.write_all(&reply.body).await?;
        send.finish().map_err(quinn::WriteError::from)
    };
    let _ = tokio::time::timeout(limits.transfer_timeout, write).await;
}

async fn read_request(
    recv: &mut quinn::RecvStream,
    max: u32,
) -> Result<(RequestHeader, Vec<u8>), ReadFailure> {
    let h = RequestHeader::decode(&read_header(recv).await?).map_err(ReadFailure::Fault)?;
    if h.len > max {
        return Err(ReadFailure::Fault(FrameFault::TooLarge {
            len: u64::from(h.len),
            max: u64::from(max),
        }));
    }
    Ok((h, read_body(recv, h.len).await?))
}

// ---------------------------------------------------------------- client

/// One peer's cached connection; `connecting` lets one caller at a time
/// make a new one (the others wait for it rather than racing).
#[derive(Default)]
struct Slot {
    conn: Mutex<Option<quinn::Connection>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    /// The cached connection if it is still open (a closed one is dropped).
    fn live(&self) -> Option<quinn::Connection> {
        let mut c = lock(&self.conn);
        if c.as_ref().is_some_and(|c| c.close_reason().is_some()) {
            *c = None;
        }
        c.clone()
    }

    /// Forgets `used` if it is still the cached connection; calls still
    /// running on it finish (it closes when the last handle goes).
    fn evict(&self, used: &quinn::Connection) {
        let mut c = lock(&self.conn);
        if c.as_ref()
            .is_some_and(|c| c.stable_id() == used.stable_id())
        {
            *c = None;
        }
    }
}

/// The calling side: one QUIC connection per peer address, shared by all
/// groups, made lazily and remade after a failure.
pub struct PeerClient {
    config: quinn::ClientConfig,
    tuning: Tuning,
    secret: ClusterSecret,
    limits: PeerLimits,
    /// Client endpoints by address family (IPv4, IPv6), made on first use.
    endpoints: Mutex<[Option<quinn::Endpoint>; 2]>,
    peers: Mutex<HashMap<SocketAddr, Arc<Slot>>>,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("limits", &self.limits)
            .field("peers", &lock(&self.peers).len())
            .finish()
    }
}

impl PeerClient {
    /// A client that trusts exactly `trusted_cert_der` (the cluster's
    /// certificate, issued to `identity::SERVER_NAME`). Sockets are made on
    /// the first call (inside a tokio runtime).
    pub fn new(
        trusted_cert_der: &[u8],
        secret: ClusterSecret,
        limits: PeerLimits,
    ) -> Result<Self, PeerError> {
        limits.check()?;
        let tuning = limits.tuning();
        let config = net::client_config(trusted_cert_der, RAFT_ALPN, &tuning)?;
        Ok(PeerClient {
            config,
            tuning,
            secret,
            limits,
            endpoints: Mutex::new([None, None]),
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// One RPC: opens a stream on the (cached, lazily (re)connected)
    /// connection to `peer`, sends the request, reads the response; the
    /// whole is bounded by `timeout`. A timeout or a lost connection drops
    /// the cached connection, so the next call reconnects.
    pub async fn call(
        &self,
        peer: SocketAddr,
        group: u32,
        kind: u8,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let max = self.limits.frame_bytes_max;
        let len = within(body.len(), max).map_err(|fault| RpcError::Frame { peer, fault })?;
        let header = RequestHeader { group, kind, len };
        let slot = self.slot(peer)?;
        let mut used = None;
        let attempt = async {
            let conn = self.connection(peer, &slot).await?;
            used = Some(conn.clone());
            rpc(&conn, peer, header, body, max).await
        };
        let r = match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(RpcError::Timeout {
                peer,
                timeout_ms: millis(timeout),
            }),
        };
        if let (Err(e), Some(conn)) = (&r, &used) {
            if e.connection_suspect() {
                slot.evict(conn);
            }
        }
        r
    }

    /// Closes every connection (code `NORMAL`); later calls reconnect.
    pub fn close(&self) {
        for slot in lock(&self.peers).values() {
            if let Some(c) = lock(&slot.conn).take() {
                c.close(close::NORMAL.into(), b"client closing");
            }
        }
    }

    /// The peer's slot, made if new; when the table is full, slots with
    /// neither a live connection nor a caller are dropped first.
    fn slot(&self, peer: SocketAddr) -> Result<Arc<Slot>, RpcError> {
        let mut peers = lock(&self.peers);
        if !peers.contains_key(&peer) && peers.len() >= self.limits.peers_max {
            peers.retain(|_, s| Arc::strong_count(s) > 1 || s.live().is_some());
            if peers.len() >= self.limits.peers_max {
                return Err(RpcError::TooManyPeers {
                    peer,
                    max: self.limits.peers_max,
                });
            }
        }
        Ok(peers.entry(peer).or_default().clone())
    }

    /// The cached connection, or a new one (one caller connects; the others
    /// wait for it).
    async fn connection(
        &self,
        peer: SocketAddr,
        slot: &Slot,
    ) -> Result<quinn::Connection, RpcError> {
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        let c = self.connect(peer).await?;
        *lock(&slot.conn) = Some(c.clone());
        Ok(c)
    }

    /// Handshake and hello, within `connect_timeout`.
    async fn connect(&self, peer: SocketAddr) -> Result<quinn::Connection, RpcError> {
        let connecting = self
            .endpoint(peer)?
            .connect(peer, identity::SERVER_NAME)
            .map_err(|source| RpcError::Connect { peer, source })?;
        let handshake = async {
            let conn = connecting
                .await
                .map_err(|source| RpcError::Handshake { peer, source })?;
            hello(&conn, peer, &self.secret).await?;
            Ok(conn)
        };
        let timeout = self.limits.connect_timeout;
        tokio::time::timeout(timeout, handshake)
            .await
            .unwrap_or(Err(RpcError::ConnectTimeout {
                peer,
                timeout_ms: millis(timeout),
            }))
    }

    /// The client endpoint for the peer's address family, made on first use.
    fn endpoint(&self, peer: SocketAddr) -> Result<quinn::Endpoint, RpcError> {
        let mut eps = lock(&self.endpoints);
        let ep = &mut eps[usize::from(peer.is_ipv6())];
        if ep.is_none() {
            let made = net::client_endpoint(peer, self.config.clone(), &self.tuning)
                .map_err(|source| RpcError::Endpoint { peer, source })?;
            *ep = Some(made);
        }
        Ok(ep.clone().expect("set above"))
    }
}

/// Sends the hello on the connection's first stream and waits for the
/// acknowledgement (so no RPC stream is opened before the server admits us).
async fn hello(
    conn: &quinn::Connection,
    peer: SocketAddr,
    secret: &ClusterSecret,
) -> Result<(), RpcError> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(peer, e))?;
    send.write_all(&encode_hello(secret))
        .await
        .map_err(|e| write_failed(peer, e))?;
    let _ = send.finish();
    let mut ack = [0u8; ACK_BYTES];
    match recv.read_exact(&mut ack).await {
        Ok(()) if ack == encode_ack() => Ok(()),
        Ok(()) => Err(RpcError::Frame {
            peer,
            fault: FrameFault::BadAck,
        }),
        Err(quinn::ReadExactError::FinishedEarly(_)) => Err(RpcError::Frame {
            peer,
            fault: FrameFault::BadAck,
        }),
        Err(quinn::ReadExactError::ReadError(e)) => Err(read_failed(peer, ReadFailure::Stream(e))),
    }
}

/// One request/response on a new stream of `conn`.
async fn rpc(
    conn: &quinn::Connection,
    peer: SocketAddr,
    header: RequestHeader,
    body: &[u8],
    max: u32,
) -> Result<Vec<u8>, RpcError> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(peer, e))?;
    let sent = async {
        send.write_all(&header.encode()).await?;
        send.write_all(body).await?;
        send.finish().map_err(quinn::WriteError::from)
    };
    match sent.await {
        // A server that rejects the request stops reading it; its reply
        // says why.
        Ok(()) | Err(quinn::WriteError::Stopped(_)) => {}
        Err(e) => return Err(write_failed(peer, e)),
    }
    let fail = |f| read_failed(peer, f);
    let h = ResponseHeader::decode(&read_header(&mut recv).await.map_err(fail)?)
        .map_err(|fault| RpcError::Frame { peer, fault })?;
    if h.len > max {
        let _ = recv.stop(0u32.into());
        let fault = FrameFault::TooLarge {
            len: u64::from(h.len),
            max: u64::from(max),
        };
        return Err(RpcError::Frame { peer, fault });
    }
    let body = read_body(&mut recv, h.len).await.map_err(fail)?;
    match h.status {
        status::OK => Ok(body),
        status::REFUSED => Err(RpcError::Refused {
            peer,
            code: h.code,
            body,
        }),
        _ => Err(RpcError::Rejected { peer, code: h.code }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_little_endian() {
        let h = RequestHeader {
            group: 0x0403_0201,
            kind: 7,
            len: 0x0c0b_0a09,
        };
        let b = h.encode();
        assert_eq!(b, [1, 2, 3, 4, 7, 0, 0, 0, 9, 10, 11, 12]);
        assert_eq!(RequestHeader::decode(&b), Ok(h));
        let r = ResponseHeader {
            status: status::REFUSED,
            code: 0x0403_0201,
            len: 5,
        };
        let b = r.encode();
        assert_eq!(b, [1, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!(ResponseHeader::decode(&b), Ok(r));
    }

    #[test]
    fn malformed_headers_are_faults() {
        let mut b = RequestHeader {
            group: 1,
            kind: 1,
            len: 1,
        }
        .encode();
        b[6] = 1;
        assert_eq!(RequestHeader::decode(&b), Err(FrameFault::Reserved));
        let mut r = [0u8; HEADER_BYTES];
        r[0] = 3;
        assert_eq!(ResponseHeader::decode(&r), Err(FrameFault::Status(3)));
        r[0] = 0;
        r[2] = 9;
        assert_eq!(ResponseHeader::decode(&r), Err(FrameFault::Reserved));
    }

    #[test]
    fn hello_checks_magic_version_and_secret() {
        let s = ClusterSecret::from_bytes([7; 32]);
        let good = encode_hello(&s);
        assert_eq!(check_hello(&good, &s), Ok(()));
        let cases: [(usize, u8, u32); 4] = [
            (0, b'X', close::BAD_HELLO),
            (4, 2, close::VERSION),
            (7, 1, close::BAD_HELLO),
            (HELLO_BYTES - 1, 8, close::BAD_SECRET),
        ];
        for (at, byte, code) in cases {
            let mut h = good;
            h[at] = byte;
            assert_eq!(check_hello(&h, &s), Err(code), "byte {at}");
        }
        let other = ClusterSecret::from_bytes([8; 32]);
        assert_eq!(check_hello(&good, &other), Err(close::BAD_SECRET));
    }

    #[test]
    fn secret_matches_only_itself_and_never_prints() {
        let s = ClusterSecret::random();
        assert!(s.matches(&s.0));
        for i in 0..SECRET_BYTES {
            let mut o = s.0;
            o[i] ^= 1;
            assert!(!s.matches(&o), "byte {i}");
        }
        assert!(!s.matches(&s.0[..31]));
        assert_ne!(s.0, ClusterSecret::random().0);
        let shown = format!("{s:?}");
        assert_eq!(shown, "ClusterSecret(..)");
    }

    #[test]
    fn secret_hex_parsing() {
        let hex = "00112233445566778899aabbccddeeff0123456789abcdef0123456789ABCDEF\n";
        let s = ClusterSecret::from_hex(hex).unwrap();
        assert_eq!(s.0[0], 0x00);
        assert_eq!(s.0[1], 0x11);
        assert_eq!(s.0[15], 0xff);
        assert_eq!(s.0[31], 0xef);
        for bad in [
            "",
            "00",
            &hex[..63],
            "+0112233445566778899aabbccddeeff0123456789abcdef0123456789abcdef",
        ] {
            assert!(ClusterSecret::from_hex(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn secret_file_is_made_once_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets/cluster.secret");
        let a = ClusterSecret::load_or_create(&path).unwrap();
        let b = ClusterSecret::load_or_create(&path).unwrap();
        assert_eq!(a.0, b.0);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex\n").unwrap();
        let e = ClusterSecret::load_or_create(&path).unwrap_err();
        assert!(matches!(e, SecretError::Malformed { .. }), "{e}");
        assert!(e.to_string().contains("cluster.secret"), "{e}");
        // A bad file is reported, never replaced.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not hex\n");
    }

    #[test]
    fn lengths_are_checked_against_the_limit() {
        assert_eq!(within(10, 10), Ok(10));
        assert_eq!(
            within(11, 10),
            Err(FrameFault::TooLarge { len: 11, max: 10 })
        );
        assert!(within(usize::MAX, u32::MAX).is_err());
    }

    #[test]
    fn zero_limits_are_refused() {
        let l = PeerLimits {
            streams_max: 0,
            ..PeerLimits::default()
        };
        assert!(matches!(l.check(), Err(PeerError::Limits(_))));
        assert!(PeerLimits::default().check().is_ok());
    }
}
