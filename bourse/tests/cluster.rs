//! A three-node replicated Bourse in one process: three `serve` instances
//! (real pipelines, real QUIC order entry, real Raft over the
//! `bourse-raft/1` peer transport on loopback), one shared TLS identity.
//! Orders acknowledged by the leader survive the leader's loss; followers
//! refuse logins with `not_leader`; the new leader serves the same state.

use gateway::client::{limit, Client, ClientConfig, ClientError, Reply};
use gateway::identity::{ensure_server_identity, CERT_FILE, KEY_FILE, TOKEN_FILE};
use gateway::server::{self, ClusterSpec, ServerConfig, ServerHandle};
use gateway::wire::{exec_type, login_reject};
use replica::{ClusterConfig, Member};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

const BTC: u32 = 1;

fn free_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Node {
    id: u64,
    client: SocketAddr,
    handle: Option<ServerHandle>,
}

fn copy_identity(from: &Path, to: &Path) {
    for f in [CERT_FILE, KEY_FILE, TOKEN_FILE] {
        let dst = to.join(f);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(from.join(f), dst).unwrap();
    }
}

fn start_cluster(root: &Path) -> (Vec<Node>, Vec<u8>, String) {
    let ids = ensure_server_identity(&root.join("n1")).unwrap();
    let members: Vec<Member> = (1..=3u64)
        .map(|id| Member {
            id,
            raft_addr: free_port().to_string(),
            client_addr: free_port().to_string(),
        })
        .collect();
    let mut threads = Vec::new();
    for m in &members {
        let dir = root.join(format!("n{}", m.id));
        if m.id != 1 {
            copy_identity(&root.join("n1"), &dir);
        }
        let mut cfg = ServerConfig::new(&dir);
        cfg.demo = true;
        cfg.listen = m.client_addr.parse().unwrap();
        cfg.pipeline.engine = engine::EngineConfig::small();
        cfg.pipeline.prefault = false;
        cfg.pipeline.runtime.pin = false;
        cfg.pipeline.runtime.idle = runtime::IdleStrategy::Park { max_sleep_us: 50 };
        let mut cc = ClusterConfig::new(m.id, members.clone());
        cc.election_timeout_ms_min = 300;
        cc.election_timeout_ms_max = 600;
        cc.heartbeat_ms = 60;
        cc.segment_bytes = 4 << 20;
        cfg.cluster = Some(ClusterSpec {
            config: cc,
            raft_listen: m.raft_addr.parse().unwrap(),
            secret_file: root.join("cluster.secret"),
        });
        threads.push(std::thread::spawn(move || server::start(cfg).unwrap()));
    }
    let nodes = threads
        .into_iter()
        .zip(&members)
        .map(|(t, m)| Node {
            id: m.id,
            client: m.client_addr.parse().unwrap(),
            handle: Some(t.join().unwrap()),
        })
        .collect();
    (nodes, ids.cert_der, ids.operator_token)
}

/// Logs in to the node that serves (the others answer `not_leader`),
/// within 20 s; returns the node's id and the client.
async fn leader(nodes: &[Node], cert: &[u8], token: &str, session: u64) -> (u64, Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answers = Vec::new();
    while Instant::now() < deadline {
        for n in nodes.iter().filter(|n| n.handle.is_some()) {
            let mut cfg = ClientConfig::new(n.client, cert.to_vec(), token.to_string());
            cfg.session_id = session;
            cfg.connect_timeout = Duration::from_secs(1);
            match Client::connect(&cfg).await {
                Ok(c) => return (n.id, c),
                Err(ClientError::LoginRejected(code)) => {
                    assert_eq!(code, login_reject::NOT_LEADER, "node {}", n.id);
                    answers.push((n.id, "not_leader"));
                }
                Err(_) => answers.push((n.id, "no answer")),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no node served within 20 s: {answers:?}");
}

async fn acked(c: &mut Client, request: u64) -> Reply {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let r = c.next().await.unwrap().expect("stream ended");
            if matches!(&r, Reply::Report(e) if e.request == request) {
                return r;
            }
        }
    })
    .await
    .expect("no report within 10 s")
}

async fn open_orders(c: &mut Client, owner: u64) -> Vec<u64> {
    let q = c.query_open_orders(owner);
    c.flush().await.unwrap();
    let mut ids = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match c.next().await.unwrap().expect("stream ended") {
                Reply::OpenOrder(o) => ids.push(o.client_order_id),
                Reply::Ack(a) if a.request == q => return,
                _ => {}
            }
        }
    })
    .await
    .expect("no open orders within 10 s");
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "current_thread")]
async fn acknowledged_orders_survive_the_loss_of_the_leader() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, cert, token) = start_cluster(root.path());
    let (first, mut c) = leader(&nodes, &cert, &token, 1).await;
    let mut coids = Vec::new();
    for i in 0..5u64 {
        let coid = 100 + i;
        let r = c.order(limit(1, BTC, engine::Side::Buy, 50_000 - i, 1, coid));
        c.flush().await.unwrap();
        match acked(&mut c, r).await {
            Reply::Report(e) => assert_eq!(e.exec_type, exec_type::NEW, "order {coid}: {e:?}"),
            other => panic!("order {coid}: {other:?}"),
        }
        coids.push(coid);
    }
    assert_eq!(open_orders(&mut c, 1).await, coids);
    c.disconnect().await;

    // The leader goes; another takes over with every acknowledged order.
    let gone = nodes.iter_mut().find(|n| n.id == first).unwrap();
    gone.handle.take().unwrap().shutdown();
    let (second, mut c) = leader(&nodes, &cert, &token, 2).await;
    assert_ne!(second, first);
    assert_eq!(open_orders(&mut c, 1).await, coids, "orders after failover");
    let r = c.order(limit(1, BTC, engine::Side::Buy, 49_000, 1, 200));
    c.flush().await.unwrap();
    match acked(&mut c, r).await {
        Reply::Report(e) => assert_eq!(e.exec_type, exec_type::NEW, "{e:?}"),
        other => panic!("{other:?}"),
    }
    c.disconnect().await;
    for n in &mut nodes {
        if let Some(h) = n.handle.take() {
            h.shutdown();
        }
    }
}
