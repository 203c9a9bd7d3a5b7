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
