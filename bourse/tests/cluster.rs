//! A three-node replicated Bourse in one process: three `serve` instances
//! (real pipelines, real QUIC order entry, real Raft over the
//! `bourse-raft/1` peer transport on loopback), one shared TLS identity.
//! Orders acknowledged by the leader survive the leader's loss; followers
//! refuse logins with `not_leader`; the new leader serves the same state.

mod support;

use bourse::local_cluster::LocalCluster;
use gateway::client::{limit, Client, Reply};
use gateway::wire::exec_type;
use std::time::Duration;
use support::ledger::reply;

const BTC: u32 = 1;

/// A token that trades for owner 3 only (the demo operator token has 1–3).
const OWNER3_TOKEN: &str = "owner-three-token-0123456789";

fn small(cfg: &mut gateway::server::ServerConfig) {
    cfg.demo = true;
    cfg.tokens.push((
        OWNER3_TOKEN.into(),
        vec![engine::OwnerId(3)],
        gateway::session::Perms::ALL,
    ));
    cfg.pipeline.engine = engine::EngineConfig::small();
    cfg.pipeline.prefault = false;
    cfg.pipeline.runtime.idle = runtime::IdleStrategy::Park { max_sleep_us: 50 };
    if let Some(c) = &mut cfg.cluster {
        c.config.heartbeat_ms = 60;
    }
}

async fn acked(c: &mut Client, request: u64) -> Reply {
    reply(c, "report", |r| {
        matches!(r, Reply::Report(e) if e.request == request).then(|| r.clone())
    })
    .await
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

    // Deadlines fire through time inputs the leader proposes: an idle
    // proposer sleeps until the engine's next deadline, which this order
    // moves (the engine's bell wakes it).
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut gtd = limit(1, BTC, engine::Side::Buy, 48_000, 1, 300);
    gtd.tif = 3;
    gtd.expire_at = now_ns + 300_000_000;
    let r = c.order(gtd);
    c.flush().await.unwrap();
    match acked(&mut c, r).await {
        Reply::Report(e) => assert_eq!(e.exec_type, exec_type::NEW, "{e:?}"),
        other => panic!("{other:?}"),
    }
    // Nothing is sent meanwhile (a command would carry the leader's clock
    // and expire the order itself): only a proposed time input can.
    let expired = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match c.next().await.unwrap().expect("stream ended") {
                Reply::Report(e)
                    if e.client_order_id == 300 && e.exec_type == exec_type::EXPIRED =>
                {
                    return e.cancel_reason;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the GTD order never expired");
    assert_eq!(expired, engine::CancelReason::Expired as u8);
    c.disconnect().await;
    cluster.shutdown();
}

async fn place(c: &mut Client, owner: u64, price: u64, coid: u64) {
    let r = c.order(limit(owner, BTC, engine::Side::Buy, price, 1, coid));
    c.flush().await.unwrap();
    match acked(c, r).await {
        Reply::Report(e) => assert_eq!(e.exec_type, exec_type::NEW, "order {coid}: {e:?}"),
        other => panic!("order {coid}: {other:?}"),
    }
}

/// Waits (at most 10 s) until `owner` has no open order; panics with `why`.
async fn until_none_open(c: &mut Client, owner: u64, why: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !open_orders(c, owner).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Cancel-on-disconnect across leaders: the old leader's sessions end with
/// it, and only the owners whose sessions asked for it lose their orders; a
/// session of the new leader is armed anew. (Here the leader stops in
/// order; `cluster_kill.rs` SIGKILLs it, so that no gateway sees the
/// disconnect and only the replicated arm can cancel.)
#[tokio::test(flavor = "current_thread")]
async fn a_new_leader_cancels_for_the_old_leaders_cancel_on_disconnect_sessions() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(root.path(), 3, small).unwrap();
    let wait = Duration::from_secs(20);
    let (first, mut plain) = cluster.leader(1, wait).await.unwrap();
    let cod = |c: &mut gateway::client::ClientConfig| {
        c.token = OWNER3_TOKEN.into();
        c.cancel_on_disconnect = true;
    };
    let (same, mut guarded) = cluster.leader_as(2, wait, cod).await.unwrap();
    assert_eq!(same, first);
    place(&mut plain, 1, 49_500, 11).await;
    place(&mut guarded, 3, 49_501, 31).await;
    place(&mut guarded, 3, 49_502, 32).await;
    assert_eq!(open_orders(&mut plain, 3).await, vec![31, 32]);

    // The leader dies with both sessions connected: neither disconnect is
    // seen by any gateway that lives on.
    cluster.stop(first);
    let (second, mut c) = cluster.leader(3, wait).await.unwrap();
    assert_ne!(second, first);
    until_none_open(&mut c, 3, "owner 3's orders not cancelled").await;
    assert_eq!(
        open_orders(&mut c, 1).await,
        vec![11],
        "owner 1 asked for nothing"
    );

    // A session of the new leader that asks for it is armed anew.
    let (_, mut g2) = cluster.leader_as(4, wait, cod).await.unwrap();
    place(&mut g2, 3, 49_503, 33).await;
    drop(plain);
    drop(guarded);
    // A majority must remain: the first node comes back (it catches up)
    // before the second goes.
    cluster.restart(first).unwrap();
    cluster.stop(second);
    let (third, mut c) = cluster.leader(5, wait).await.unwrap();
    assert_ne!(third, second);
    until_none_open(&mut c, 3, "order 33 not cancelled").await;
    assert_eq!(open_orders(&mut c, 1).await, vec![11]);
    drop(g2);
    c.disconnect().await;
    cluster.shutdown();
}

/// The code of a protocol reject of `request`, if `r` is one.
fn rejected(r: &Reply, request: u64) -> Option<u16> {
    match r {
        Reply::ProtocolReject(p) if p.request == request => Some(p.code),
        _ => None,
    }
}

/// The session table is replicated state: a client that logs in to the new
/// leader with its session id and token continues its request numbering
/// there, and a request it resends that the old leader executed is
/// answered `outcome_not_kept`, never executed again. (Without the table
/// the resent mass cancel would run on the new leader and cancel the order
/// another session placed since.)
#[tokio::test(flavor = "current_thread")]
async fn a_resent_request_the_old_leader_executed_is_never_executed_again() {
    use gateway::wire::{reject, INSTRUMENT_ANY, SIDE_ANY};
    let root = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(root.path(), 3, small).unwrap();
    let wait = Duration::from_secs(20);
    let (first, mut c) = cluster.leader(7, wait).await.unwrap();
    place(&mut c, 1, 49_000, 71).await;
    let mc = c.mass_cancel(1, INSTRUMENT_ANY, SIDE_ANY);
    c.flush().await.unwrap();
    let code = reply(&mut c, "mass cancel ack", |r| match r {
        Reply::Ack(a) if a.request == mc => Some(a.code),
        _ => None,
    })
    .await;
    assert_eq!(code, 0);
    assert!(open_orders(&mut c, 1).await.is_empty());
    let last = mc + 1; // the listing
    c.abort();

    cluster.stop(first);
    let (second, mut other) = cluster.leader(8, wait).await.unwrap();
    assert_ne!(second, first);
    place(&mut other, 1, 48_000, 81).await;

    let (same, mut c) = cluster.leader(7, wait).await.unwrap();
    assert_eq!(same, second);
    assert_eq!(
        c.login().last_request,
        last,
        "the numbering continues from what the cluster committed"
    );
    // The mass cancel again, under its number: not executed.
    c.resend_from(mc);
    assert_eq!(c.mass_cancel(1, INSTRUMENT_ANY, SIDE_ANY), mc);
    c.flush().await.unwrap();
    let code = reply(&mut c, "an answer to the resent mass cancel", |r| {
        rejected(r, mc)
    })
    .await;
    assert_eq!(code, reject::OUTCOME_NOT_KEPT);
    // The first order again, under its number: not placed twice.
    c.resend_from(1);
    assert_eq!(c.order(limit(1, BTC, engine::Side::Buy, 49_000, 1, 71)), 1);
    c.flush().await.unwrap();
    let code = reply(&mut c, "an answer to the resent order", |r| rejected(r, 1)).await;
    assert_eq!(code, reject::OUTCOME_NOT_KEPT);
    // New requests take new numbers; the other session's order stands.
    c.resend_from(last + 1);
    assert_eq!(open_orders(&mut c, 1).await, vec![81]);
    drop(other);
    c.disconnect().await;
    cluster.shutdown();
}
