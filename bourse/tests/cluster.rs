//! A three-node replicated Bourse in one process: three `serve` instances
//! (real pipelines, real QUIC order entry, real Raft over the
//! `bourse-raft/1` peer transport on loopback), one shared TLS identity.
//! Orders acknowledged by the leader survive the leader's loss; followers
//! refuse logins with `not_leader`; the new leader serves the same state.

use bourse::local_cluster::LocalCluster;
use gateway::client::{limit, Client, Reply};
use gateway::wire::exec_type;
use std::time::Duration;

const BTC: u32 = 1;

fn small(cfg: &mut gateway::server::ServerConfig) {
    cfg.demo = true;
    cfg.pipeline.engine = engine::EngineConfig::small();
    cfg.pipeline.prefault = false;
    cfg.pipeline.runtime.idle = runtime::IdleStrategy::Park { max_sleep_us: 50 };
    if let Some(c) = &mut cfg.cluster {
        c.config.heartbeat_ms = 60;
    }
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
    let mut cluster = LocalCluster::start(root.path(), 3, small).unwrap();
    let wait = Duration::from_secs(20);
    let (first, mut c) = cluster.leader(1, wait).await.unwrap();
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
    cluster.stop(first);
    let (second, mut c) = cluster.leader(2, wait).await.unwrap();
    assert_ne!(second, first);
    assert_eq!(open_orders(&mut c, 1).await, coids, "orders after failover");
    let r = c.order(limit(1, BTC, engine::Side::Buy, 49_000, 1, 200));
    c.flush().await.unwrap();
    match acked(&mut c, r).await {
        Reply::Report(e) => assert_eq!(e.exec_type, exec_type::NEW, "{e:?}"),
        other => panic!("{other:?}"),
    }
    c.disconnect().await;
    cluster.shutdown();
}
