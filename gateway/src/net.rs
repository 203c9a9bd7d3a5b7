//! QUIC endpoints (quinn over rustls with the ring provider): TLS 1.3 only,
//! the order-entry ALPN, UDP sockets with large kernel buffers, bounded
//! flow-control windows, keep-alives and idle timeouts.
//!
//! Invariants: there is no plaintext or "skip verification" mode — a server
//! always presents its certificate and a client trusts exactly the
//! certificate it is given; flow-control windows are bounded, so a peer that
//! stops reading stalls its own stream instead of growing our memory; the
//! socket buffers are raised (quinn does not) so that bursts are not dropped
//! in the kernel (FLOORS.md pitfalls 4–5).
//!
//! `resolve` turns a user's `HOST:PORT` (a name or an IP literal) into the
//! addresses to try, IPv4 first: servers listen on `127.0.0.1` by default
//! while `localhost` often resolves to `::1` first, and an unanswered QUIC
//! handshake costs a timeout rather than failing at once.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

/// The order-entry ALPN (`bourse-oe/1`), re-exported from `wire`.
pub use crate::wire::ALPN;

/// Transport settings shared by servers and clients.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Requested `SO_RCVBUF` / `SO_SNDBUF`, bytes (the kernel may cap it).
    pub socket_buffer_bytes: usize,
    /// Per-stream receive window, bytes.
    pub stream_window_bytes: u32,
    /// Per-connection receive window, bytes.
    pub connection_window_bytes: u32,
    /// Per-connection send window, bytes.
    pub send_window_bytes: u64,
    /// Close a connection silent for this long (transport level; the
    /// session's own heartbeat timeout is usually shorter).
    pub idle_timeout: Duration,
    /// Send QUIC keep-alive pings this often (`None`: never).
    pub keep_alive: Option<Duration>,
    /// Concurrent bidirectional streams a peer may open.
    pub max_bidi_streams: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            socket_buffer_bytes: 4 << 20,
            stream_window_bytes: 1 << 20,
            connection_window_bytes: 4 << 20,
            send_window_bytes: 8 << 20,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(5)),
            max_bidi_streams: 4,
        }
    }
}

/// Why an endpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// TLS configuration.
    #[error("tls: {0}")]
    Tls(String),
    /// Socket trouble.
    #[error("socket {addr}: {source}")]
    Io {
        /// Address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
}

/// The port `resolve` assumes when the user names only a host.
pub const DEFAULT_PORT: u16 = 7070;

/// Why a server address could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error(
    "server address {input:?}: {source} (expected HOST:PORT, e.g. localhost:7070 or 10.0.0.5:7070)"
)]
pub struct ResolveError {
    /// What the user gave.
    pub input: String,
    /// What failed (no such host, bad port, …).
    pub source: std::io::Error,
}

/// Resolves `HOST:PORT` (`HOST` alone means port 7070; IPv6 literals in
/// brackets) to the addresses to try, IPv4 ones first, each once.
pub fn resolve(server: &str) -> Result<Vec<SocketAddr>, ResolveError> {
    use std::net::ToSocketAddrs;
    let err = |source| ResolveError {
        input: server.to_string(),
        source,
    };
    let with_port = if server.contains(':') {
        server.to_string()
    } else {
        format!("{server}:{DEFAULT_PORT}")
    };
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for a in with_port.to_socket_addrs().map_err(err)? {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    // Stable: keeps the resolver's order within each family.
    addrs.sort_by_key(SocketAddr::is_ipv6);
    if addrs.is_empty() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address found",
        )));
    }
    Ok(addrs)
}

fn transport(t: &Tuning) -> quinn::TransportConfig {
    let mut c = quinn::TransportConfig::default();
    c.stream_receive_window(quinn::VarInt::from_u32(t.stream_window_bytes))
        .receive_window(quinn::VarInt::from_u32(t.connection_window_bytes))
        .send_window(t.send_window_bytes)
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(t.max_bidi_streams))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
        .keep_alive_interval(t.keep_alive)
        .datagram_receive_buffer_size(None);
    if let Ok(idle) = quinn::IdleTimeout::try_from(t.idle_timeout) {
        c.max_idle_timeout(Some(idle));
    }
    c
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration presenting `cert_der` (with its PKCS#8 `key_der`)
/// for `alpn`.
pub fn server_config(
    cert_der: &[u8],
    key_der: &[u8],
    alpn: &[u8],
    t: &Tuning,
) -> Result<quinn::ServerConfig, NetError> {
    server_config_alpns(cert_der, key_der, &[alpn], t)
}

/// A server configuration offering several ALPNs (the server dispatches on
/// the negotiated one: order entry, market data).
pub fn server_config_alpns(
    cert_der: &[u8],
    key_der: &[u8],
    alpns: &[&[u8]],
    t: &Tuning,
) -> Result<quinn::ServerConfig, NetError> {
    let cert = CertificateDer::from(cert_der.to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec()));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| NetError::Tls(e.to_string()))?;
    tls.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    let q = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| NetError::Tls(e.to_string()))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(q));
    sc.transport_config(Arc::new(transport(t)));
    Ok(sc)
}

/// A client configuration that trusts exactly `cert_der` and speaks `alpn`.
pub fn client_config(
    cert_der: &[u8],
    alpn: &[u8],
    t: &Tuning,
) -> Result<quinn::ClientConfig, NetError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert_der.to_vec()))
        .map_err(|e| NetError::Tls(e.to_string()))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let q = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| NetError::Tls(e.to_string()))?;
    let mut cc = quinn::ClientConfig::new(Arc::new(q));
    cc.transport_config(Arc::new(transport(t)));
    Ok(cc)
}

/// A bound UDP socket with the requested kernel buffers; returns it and the
/// (receive, send) buffer sizes the kernel granted.
pub fn udp_socket(
    addr: SocketAddr,
    buffer_bytes: usize,
) -> Result<(UdpSocket, usize, usize), NetError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let io = |source| NetError::Io { addr, source };
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(io)?;
    if addr.is_ipv6() {
        let _ = s.set_only_v6(false);
    }
    // Best effort: the kernel caps at net.core.{r,w}mem_max.
    let _ = s.set_recv_buffer_size(buffer_bytes);
    let _ = s.set_send_buffer_size(buffer_bytes);
    s.bind(&addr.into()).map_err(io)?;
    let rcv = s.recv_buffer_size().unwrap_or(0);
    let snd = s.send_buffer_size().unwrap_or(0);
    if rcv < buffer_bytes || snd < buffer_bytes {
        tracing::debug!(
            requested = buffer_bytes,
            rcvbuf = rcv,
            sndbuf = snd,
            "kernel capped UDP socket buffers (raise net.core.rmem_max / wmem_max)"
        );
    }
    Ok((s.into(), rcv, snd))
}

/// A server endpoint on `addr` (must run inside a tokio runtime).
pub fn server_endpoint(
    addr: SocketAddr,
    cfg: quinn::ServerConfig,
    t: &Tuning,
) -> Result<quinn::Endpoint, NetError> {
    let (sock, _, _) = udp_socket(addr, t.socket_buffer_bytes)?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(cfg),
        sock,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| NetError::Io { addr, source })
}

/// A client endpoint on an ephemeral port of the right address family (must
/// run inside a tokio runtime).
pub fn client_endpoint(
    server: SocketAddr,
    cfg: quinn::ClientConfig,
    t: &Tuning,
) -> Result<quinn::Endpoint, NetError> {
    let local: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().expect("addr")
    } else {
        "0.0.0.0:0".parse().expect("addr")
    };
    let (sock, _, _) = udp_socket(local, t.socket_buffer_bytes)?;
    let mut ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        sock,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| NetError::Io {
        addr: local,
        source,
    })?;
    ep.set_default_client_config(cfg);
    Ok(ep)
}

/// Settings of the raw QUIC ping-pong floor (`pingpong_floor`).
#[derive(Clone, Copy, Debug)]
pub struct PingPong {
    /// Round trips measured (a tenth more are run first as warm-up).
    pub rounds: u64,
    /// Message size, bytes.
    pub bytes: usize,
    /// Both runtimes poll their I/O drivers in a loop instead of parking
    /// (lowest latency; burns two cores).
    pub busy_poll: bool,
}

impl Default for PingPong {
    fn default() -> Self {
        PingPong {
            rounds: 5_000,
            bytes: 64,
            busy_poll: true,
        }
    }
}

fn pingpong_runtime(busy_poll: bool) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .event_interval(if busy_poll { 1 } else { 61 })
        .build()
}

/// Keeps a current-thread runtime from parking: it polls its I/O driver in a loop.
fn spin_task() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        loop {
            tokio::task::yield_now().await;
        }
    })
}

/// Why the ping-pong floor could not be measured: the step that failed and
/// its cause.
#[derive(Debug, thiserror::Error)]
#[error("ping-pong floor: {step}: {source}")]
pub struct FloorError {
    /// What was being done ("handshake", "read", …).
    pub step: &'static str,
    /// The underlying error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Wraps an error as a `FloorError` of `step` (for `map_err`).
fn floor<E>(step: &'static str) -> impl FnOnce(E) -> FloorError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| FloorError {
        step,
        source: Box::new(e),
    }
}

/// The floor of any QUIC request/response on this machine: a raw quinn
/// ping-pong of `p.bytes` on one stream over loopback, with the same TLS,
/// socket buffers and windows as Bourse (certificate and key from
/// `identity_dir`, created there if absent). Returns the round trips,
/// nanoseconds, in the order measured. Runs a server thread and a client runtime on the
/// calling thread; both stop before it returns.
pub fn pingpong_floor(identity_dir: &std::path::Path, p: PingPong) -> Result<Vec<u64>, FloorError> {
    let id = crate::identity::ensure_server_identity(identity_dir).map_err(floor("identity"))?;
    let t = Tuning::default();
    const ALPN_PING: &[u8] = b"bourse-ping";
    let sc =
        server_config(&id.cert_der, &id.key_der, ALPN_PING, &t).map_err(floor("server config"))?;
    let cc = client_config(&id.cert_der, ALPN_PING, &t).map_err(floor("client config"))?;
    let (tx, rx) = std::sync::mpsc::channel::<Result<SocketAddr, FloorError>>();
    let bytes = p.bytes.max(1);
    let busy = p.busy_poll;
    let server = std::thread::Builder::new()
        .name("pingpong-server".into())
        .spawn(move || {
            let rt = match pingpong_runtime(busy) {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(floor("server runtime")(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let ep = match server_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)), sc, &t) {
                    Ok(ep) => ep,
                    Err(e) => {
                        let _ = tx.send(Err(floor("server endpoint")(e)));
                        return;
                    }
                };
                let _ = tx.send(ep.local_addr().map_err(floor("server address")));
                let _spin = busy.then(spin_task);
                let Ok(Some(inc)) =
                    tokio::time::timeout(Duration::from_secs(10), ep.accept()).await
                else {
                    return;
                };
                let Ok(conn) = inc.await else { return };
                let Ok((mut s, mut r)) = conn.accept_bi().await else {
                    return;
                };
                let mut buf = vec![0u8; bytes];
                while r.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() {
                        break;
                    }
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), conn.closed()).await;
                ep.close(0u32.into(), b"");
            });
        })
        .map_err(floor("server thread"))?;
    let addr = rx.recv().map_err(floor("server start-up"))??;
    let rt = pingpong_runtime(busy).map_err(floor("client runtime"))?;
    let rounds = p.rounds.max(1);
    let r = rt.block_on(async move {
        let _spin = busy.then(spin_task);
        let ep = client_endpoint(addr, cc, &t).map_err(floor("client endpoint"))?;
        let conn = ep
            .connect(addr, crate::identity::SERVER_NAME)
            .map_err(floor("connect"))?
            .await
            .map_err(floor("handshake"))?;
        let (mut s, mut r) = conn.open_bi().await.map_err(floor("open stream"))?;
        let msg = vec![7u8; bytes];
        let mut buf = vec![0u8; bytes];
        let mut h = Vec::with_capacity(rounds.min(1 << 24) as usize);
        let warm = rounds / 10;
        for i in 0..rounds + warm {
            let t0 = std::time::Instant::now();
            s.write_all(&msg).await.map_err(floor("write"))?;
            r.read_exact(&mut buf).await.map_err(floor("read"))?;
            if i >= warm {
                h.push((t0.elapsed().as_nanos() as u64).max(1));
            }
        }
        let _ = s.finish();
        conn.close(0u32.into(), b"");
        let _ = tokio::time::timeout(Duration::from_millis(200), ep.wait_idle()).await;
        Ok::<_, FloorError>(h)
    });
    let _ = server.join();
    r
}

/// The ALPN of a connection (empty if unknown).
pub fn alpn_of(conn: &quinn::Connection) -> Vec<u8> {
    conn.handshake_data()
        .and_then(|h| {
            h.downcast::<quinn::crypto::rustls::HandshakeData>()
                .ok()
                .and_then(|d| d.protocol)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_literals_names_and_bare_hosts_ipv4_first() {
        let v4: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        assert_eq!(resolve("127.0.0.1:7070").unwrap(), vec![v4]);
        assert_eq!(resolve("127.0.0.1").unwrap(), vec![v4]);
        assert_eq!(
            resolve("[::1]:9").unwrap(),
            vec!["[::1]:9".parse::<SocketAddr>().unwrap()]
        );
        let local = resolve("localhost:7070").unwrap();
        assert!(local
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 7070));
        assert!(local[0].is_ipv4() || local.iter().all(SocketAddr::is_ipv6));
        for bad in ["localhost:notaport", "no-such-host.invalid:1", ""] {
            let e = resolve(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
