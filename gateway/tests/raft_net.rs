//! The Raft peer transport over loopback: round trips that a mix-up of
//! group, kind or body would fail, the hello (wrong secret, no hello, a
//! client trusting another certificate), frame limits on both sides, a
//! server restarted on the same port, and many concurrent calls on one
//! client. The handler counts its calls, so "never reached the handler" is
//! checked, not assumed.

use engine::rng::SplitMix64;
use gateway::identity::{ensure_server_identity, ServerIdentity};
use gateway::raft_net::{
    close, reject, ClusterSecret, FrameFault, PeerClient, PeerLimits, PeerServer, RpcError,
    RpcFuture, RpcHandler, RpcRefused, RAFT_ALPN,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kind the handler refuses (code = the group, detail = the body).
const KIND_REFUSE: u8 = 200;
/// The kind whose reply is as many zero bytes as the body's u32 says.
const KIND_SIZED: u8 = 201;
const SECRET: [u8; 32] = [0x5a; 32];
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers from all three of group, kind and body (a mix-up shows) and
/// counts its calls.
#[derive(Default)]
struct Echo {
    calls: AtomicUsize,
}

fn answer(group: u32, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut a = group.to_le_bytes().to_vec();
    a.push(kind);
    a.extend(body.iter().rev());
    a
}

impl RpcHandler for Echo {
    fn handle(&self, group: u32, kind: u8, body: Vec<u8>) -> RpcFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match kind {
                KIND_REFUSE => Err(RpcRefused { code: group, body }),
                KIND_SIZED => {
                    let n = u32::from_le_bytes(body[..4].try_into().expect("4 bytes"));
                    Ok(vec![0; n as usize])
                }
                _ => Ok(answer(group, kind, &body)),
            }
        })
    }
}

impl Echo {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn identity() -> (tempfile::TempDir, ServerIdentity) {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = ensure_server_identity(dir.path()).expect("identity");
    (dir, id)
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn serve_at(
    addr: SocketAddr,
    id: &ServerIdentity,
    limits: PeerLimits,
) -> Result<(PeerServer, Arc<Echo>), gateway::raft_net::PeerError> {
    let echo = Arc::new(Echo::default());
    let secret = ClusterSecret::from_bytes(SECRET);
    let s = PeerServer::start(
        addr,
        &id.cert_der,
        &id.key_der,
        secret,
        echo.clone(),
        limits,
    )?;
    Ok((s, echo))
}

fn serve(id: &ServerIdentity, limits: PeerLimits) -> (PeerServer, Arc<Echo>) {
    serve_at(loopback(), id, limits).expect("server")
}

fn client(id: &ServerIdentity, limits: PeerLimits) -> PeerClient {
    PeerClient::new(&id.cert_der, ClusterSecret::from_bytes(SECRET), limits).expect("client")
}

#[tokio::test]
async fn round_trips_across_groups_and_kinds() {
    let (_dir, id) = identity();
    let (server, echo) = serve(&id, PeerLimits::default());
    let c = client(&id, PeerLimits::default());
    let peer = server.local_addr();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let rows: [(u32, u8, &[u8]); 6] = [
        (0, 0, b""),
        (1, 1, b"append"),
        (1, 2, b"append"),
        (2, 1, b"append"),
        (u32::MAX, 255, b"\x00\x01\x02"),
        (7, 3, &big),
    ];
    for (group, kind, body) in rows {
        let got = c.call(peer, group, kind, body, CALL_TIMEOUT).await;
        assert_eq!(
            got.expect("call"),
            answer(group, kind, body),
            "group {group} kind {kind}"
        );
    }
    match c
        .call(peer, 9, KIND_REFUSE, b"not leader", CALL_TIMEOUT)
        .await
    {
        Err(RpcError::Refused {
            peer: p,
            code,
            body,
        }) => {
            assert_eq!((p, code, body.as_slice()), (peer, 9, &b"not leader"[..]));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(echo.calls(), rows.len() + 1);
    server.close().await;
}

#[tokio::test]
async fn a_wrong_secret_never_reaches_the_handler() {
    let (_dir, id) = identity();
    let (server, echo) = serve(&id, PeerLimits::default());
    let wrong = PeerClient::new(&id.cert_der, ClusterSecret::random(), PeerLimits::default())
        .expect("client");
    let peer = server.local_addr();
    for _ in 0..2 {
        match wrong.call(peer, 1, 1, b"vote", CALL_TIMEOUT).await {
            Err(RpcError::AuthFailed { peer: p }) => assert_eq!(p, peer),
            other => panic!("expected AuthFailed, got {other:?}"),
        }
    }
    assert_eq!(echo.calls(), 0);
    // The right secret on the same server still works.
    let right = client(&id, PeerLimits::default());
    assert!(right.call(peer, 1, 1, b"vote", CALL_TIMEOUT).await.is_ok());
    assert_eq!(echo.calls(), 1);
    server.close().await;
}

#[tokio::test]
async fn a_client_trusting_another_certificate_fails_the_handshake() {
    let (_dir, id) = identity();
    let (_other_dir, other) = identity();
    let (server, echo) = serve(&id, PeerLimits::default());
    let c = client(&other, PeerLimits::default());
    match c.call(server.local_addr(), 1, 1, b"x", CALL_TIMEOUT).await {
        Err(RpcError::Handshake { .. }) => {}
        other => panic!("expected a handshake failure, got {other:?}"),
    }
    assert_eq!(echo.calls(), 0);
    server.close().await;
}

/// A raw QUIC connection with the right certificate and ALPN but no hello.
async fn raw_connection(id: &ServerIdentity, peer: SocketAddr) -> quinn::Connection {
    let t = gateway::net::Tuning::default();
    let cfg = gateway::net::client_config(&id.cert_der, RAFT_ALPN, &t).expect("config");
    let ep = gateway::net::client_endpoint(peer, cfg, &t).expect("endpoint");
    ep.connect(peer, gateway::identity::SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake")
}

async fn close_code(conn: &quinn::Connection) -> u64 {
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    match closed.expect("the server closes the connection") {
        quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
        other => panic!("expected an application close, got {other:?}"),
    }
}

#[tokio::test]
async fn an_rpc_without_a_hello_or_no_hello_in_time_closes_the_connection() {
    let (_dir, id) = identity();
    let limits = PeerLimits {
        connect_timeout: Duration::from_millis(300),
        ..PeerLimits::default()
    };
    let (server, echo) = serve(&id, limits);
    let peer = server.local_addr();
    // An RPC frame first: group 1, kind 1, 40-byte body.
    let conn = raw_connection(&id, peer).await;
    let (mut send, _recv) = conn.open_bi().await.expect("stream");
    let mut frame = vec![1, 0, 0, 0, 1, 0, 0, 0, 40, 0, 0, 0];
    frame.extend([0xab; 40]);
    send.write_all(&frame).await.expect("write");
    send.finish().expect("finish");
    assert_eq!(close_code(&conn).await, u64::from(close::BAD_HELLO));
    // Nothing at all.
    let silent = raw_connection(&id, peer).await;
    assert_eq!(close_code(&silent).await, u64::from(close::HELLO_TIMEOUT));
    assert_eq!(echo.calls(), 0);
    server.close().await;
}

#[tokio::test]
async fn oversize_bodies_are_refused_on_both_sides() {
    let (_dir, id) = identity();
    let small = PeerLimits {
        frame_bytes_max: 64 << 10,
        ..PeerLimits::default()
    };
    let large = PeerLimits {
        frame_bytes_max: 1 << 20,
        ..PeerLimits::default()
    };
    let (server, echo) = serve(&id, small);
    let peer = server.local_addr();
    // The sender refuses before sending.
    let c_small = client(&id, small);
    let body = vec![1u8; (64 << 10) + 1];
    match c_small.call(peer, 1, 1, &body, CALL_TIMEOUT).await {
        Err(RpcError::Frame {
            fault: FrameFault::TooLarge { len, max },
            ..
        }) => {
            assert_eq!((len, max), ((64 << 10) + 1, 64 << 10));
        }
        other => panic!("expected a local TooLarge, got {other:?}"),
    }
    // The receiver refuses a header over its limit without reading on.
    let c_large = client(&id, large);
    match c_large
        .call(peer, 1, 1, &vec![2u8; 100 << 10], CALL_TIMEOUT)
        .await
    {
        Err(RpcError::Rejected { code, .. }) => assert_eq!(code, reject::TOO_LARGE),
        other => panic!("expected the server's rejection, got {other:?}"),
    }
    assert_eq!(echo.calls(), 0);
    // The connection is still good for a call within the limits.
    assert_eq!(
        c_large
            .call(peer, 3, 4, b"ok", CALL_TIMEOUT)
            .await
            .expect("call"),
        answer(3, 4, b"ok")
    );
    // Replies: the server will not send one over its limit ...
    let ask = |n: u32| n.to_le_bytes();
    match c_large
        .call(peer, 1, KIND_SIZED, &ask(100 << 10), CALL_TIMEOUT)
        .await
    {
        Err(RpcError::Rejected { code, .. }) => assert_eq!(code, reject::TOO_LARGE),
        other => panic!("expected the server's rejection of its reply, got {other:?}"),
    }
    server.close().await;
    // ... and the client will not read one over its own.
    let (server, _echo) = serve(&id, large);
    match c_small
        .call(
            server.local_addr(),
            1,
            KIND_SIZED,
            &ask(100 << 10),
            CALL_TIMEOUT,
        )
        .await
    {
        Err(RpcError::Frame {
            fault: FrameFault::TooLarge { len, .. },
            ..
        }) => {
            assert_eq!(len, 100 << 10)
        }
        other => panic!("expected a reply too large for the client, got {other:?}"),
    }
    server.close().await;
}

/// Starts a server on `addr`, retrying briefly while the old socket is
/// being released.
async fn restart(addr: SocketAddr, id: &ServerIdentity) -> (PeerServer, Arc<Echo>) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match serve_at(addr, id, PeerLimits::default()) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("restart on {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("restart on {addr}: {e}"),
        }
    }
}

#[tokio::test]
async fn a_restarted_server_is_reconnected_to() {
    let (_dir, id) = identity();
    let (server, _) = serve(&id, PeerLimits::default());
    let peer = server.local_addr();
    let c = client(&id, PeerLimits::default());
    assert!(c.call(peer, 1, 1, b"before", CALL_TIMEOUT).await.is_ok());
    server.close().await;
    let timeout = Duration::from_millis(300);
    for _ in 0..2 {
        let t0 = Instant::now();
        let r = c.call(peer, 1, 1, b"down", timeout).await;
        let took = t0.elapsed();
        assert!(r.is_err(), "a call to a stopped server: {r:?}");
        assert!(
            took < timeout + Duration::from_millis(500),
            "took {took:?}: {r:?}"
        );
    }
    let (server, echo) = restart(peer, &id).await;
    let got = c.call(peer, 5, 6, b"after", CALL_TIMEOUT).await;
    assert_eq!(
        got.expect("the first call after the restart"),
        answer(5, 6, b"after")
    );
    assert_eq!(echo.calls(), 1);
    server.close().await;
}

/// A UDP relay for one client that can drop everything, both ways: a peer
/// that dies without a word (no close reaches the client).
struct Relay {
    addr: SocketAddr,
    dropping: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Relay {
        let front = tokio::net::UdpSocket::bind(loopback())
            .await
            .expect("front");
        let back = tokio::net::UdpSocket::bind(loopback()).await.expect("back");
        back.connect(to).await.expect("connect");
        let addr = front.local_addr().expect("addr");
        let dropping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let drop_flag = dropping.clone();
        let task = tokio::spawn(async move {
            let (mut a, mut b) = (vec![0u8; 65536], vec![0u8; 65536]);
            let mut client = None;
            loop {
                tokio::select! {
                    Ok((n, from)) = front.recv_from(&mut a) => {
                        client = Some(from);
                        if !drop_flag.load(Ordering::SeqCst) {
                            let _ = back.send(&a[..n]).await;
                        }
                    }
                    Ok(n) = back.recv(&mut b) => {
                        if let (Some(c), false) = (client, drop_flag.load(Ordering::SeqCst)) {
                            let _ = front.send_to(&b[..n], c).await;
                        }
                    }
                }
            }
        });
        Relay {
            addr,
            dropping,
            task,
        }
    }

    fn set_dropping(&self, on: bool) {
        self.dropping.store(on, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_silently_dead_peer_times_out_and_the_next_call_reconnects() {
    let (_dir, id) = identity();
    let (server, _) = serve(&id, PeerLimits::default());
    let relay = Relay::start(server.local_addr()).await;
    let c = client(&id, PeerLimits::default());
    assert!(c
        .call(relay.addr, 1, 1, b"before", CALL_TIMEOUT)
        .await
        .is_ok());
    // The node dies silently and comes back (same port, no memory of the
    // old connection, whose close never reached the client).
    relay.set_dropping(true);
    let addr = server.local_addr();
    server.close().await;
    let (server, echo) = restart(addr, &id).await;
    let timeout = Duration::from_millis(300);
    let t0 = Instant::now();
    let r = c.call(relay.addr, 1, 1, b"down", timeout).await;
    let took = t0.elapsed();
    assert!(matches!(r, Err(RpcError::Timeout { .. })), "{r:?}");
    assert!(took < timeout + Duration::from_millis(500), "took {took:?}");
    relay.set_dropping(false);
    // The old connection is dead for good: only a new one can answer.
    let got = c.call(relay.addr, 5, 6, b"after", CALL_TIMEOUT).await;
    assert_eq!(
        got.expect("the call after the timeout"),
        answer(5, 6, b"after")
    );
    assert_eq!(echo.calls(), 1);
    relay.task.abort();
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_calls_on_one_client() {
    let seed = 0x5eed_0015;
    println!("seed {seed:#x}");
    let mut rng = SplitMix64::new(seed);
    let (_dir, id) = identity();
    // Fewer streams than calls: the rest wait for stream credit.
    let limits = PeerLimits {
        streams_max: 16,
        ..PeerLimits::default()
    };
    let (server, echo) = serve(&id, limits);
    let peer = server.local_addr();
    let c = Arc::new(client(&id, limits));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        let body: Vec<u8> = (0..rng.below(4096)).map(|_| rng.next_u64() as u8).collect();
        let kind = rng.below(200) as u8;
        let c = c.clone();
        calls.spawn(async move {
            let got = c.call(peer, i, kind, &body, CALL_TIMEOUT).await;
            (got.map_err(|e| e.to_string()), answer(i, kind, &body), i)
        });
    }
    let mut done = 0;
    while let Some(r) = calls.join_next().await {
        let (got, want, i) = r.expect("task");
        assert_eq!(got.as_ref(), Ok(&want), "call {i} (seed {seed:#x})");
        done += 1;
    }
    assert_eq!((done, echo.calls()), (100, 100));
    server.close().await;
}

/// Holds each call a while and records the most calls in flight at once.
#[derive(Default)]
struct Gauge {
    counts: Arc<(AtomicUsize, AtomicUsize)>,
}

impl RpcHandler for Gauge {
    fn handle(&self, group: u32, kind: u8, body: Vec<u8>) -> RpcFuture {
        let counts = self.counts.clone();
        Box::pin(async move {
            let (in_flight, peak) = &*counts;
            peak.fetch_max(
                in_flight.fetch_add(1, Ordering::SeqCst) + 1,
                Ordering::SeqCst,
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(answer(group, kind, &body))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_calls_run_concurrently_at_most_streams_max_at_once() {
    let (_dir, id) = identity();
    let limits = PeerLimits {
        streams_max: 4,
        ..PeerLimits::default()
    };
    let gauge = Arc::new(Gauge::default());
    let secret = ClusterSecret::from_bytes(SECRET);
    let server = PeerServer::start(
        loopback(),
        &id.cert_der,
        &id.key_der,
        secret,
        gauge.clone(),
        limits,
    )
    .expect("server");
    let peer = server.local_addr();
    let c = Arc::new(client(&id, limits));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..20u32 {
        let c = c.clone();
        calls.spawn(async move { c.call(peer, i, 1, b"hold", CALL_TIMEOUT).await.map(|_| ()) });
    }
    while let Some(r) = calls.join_next().await {
        r.expect("task").expect("call");
    }
    assert_eq!(gauge.counts.1.load(Ordering::SeqCst), 4);
    server.close().await;
}

#[tokio::test]
async fn a_secret_file_is_created_once_and_shared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cluster.secret");
    let first = ClusterSecret::load_or_create(&path).expect("create");
    let second = ClusterSecret::load_or_create(&path).expect("load");
    let (_id_dir, id) = identity();
    let server = PeerServer::start(
        loopback(),
        &id.cert_der,
        &id.key_der,
        first,
        Arc::new(Echo::default()),
        PeerLimits::default(),
    )
    .expect("server");
    let c = PeerClient::new(&id.cert_der, second, PeerLimits::default()).expect("client");
    assert!(c
        .call(server.local_addr(), 1, 1, b"x", CALL_TIMEOUT)
        .await
        .is_ok());
    server.close().await;
}
