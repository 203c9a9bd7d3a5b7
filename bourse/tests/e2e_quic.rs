//! End-to-end tests over loopback QUIC: an in-process `bourse serve` (real
//! pipeline, real quinn endpoint, TLS with the generated certificate) on an
//! ephemeral port and a temporary data directory, driven by
//! `gateway::client`.

use gateway::client::{limit, Client, ClientConfig, ClientError, Reply};
use gateway::identity::load_client_identity;
use gateway::server::{self, ServerConfig, ServerHandle};
use gateway::wire::{self, exec_type, ord_status, u128_bytes, u128_from, TransferRecord};
use std::time::Duration;

struct TestServer {
    handle: ServerHandle,
    cert: Vec<u8>,
    token: String,
    _dir: tempfile::TempDir,
}

fn start(durability: journal::Durability) -> TestServer {
    start_with(durability, Vec::new())
}

fn start_with(
    durability: journal::Durability,
    tokens: Vec<(String, Vec<engine::OwnerId>, gateway::session::Perms)>,
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path());
    // These tests trade the demo instruments.
    cfg.demo = true;
    cfg.tokens = tokens;
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.pipeline.durability = durability;
    cfg.pipeline.runtime.pin = false;
    cfg.pipeline.runtime.idle = runtime::IdleStrategy::Yield;
    let handle = server::start(cfg).unwrap();
    let id = load_client_identity(dir.path()).unwrap();
    TestServer {
        handle,
        cert: id.cert_der,
        token: id.operator_token.unwrap(),
        _dir: dir,
    }
}

impl TestServer {
    fn cfg(&self, token: &str, session_id: u64) -> ClientConfig {
        let mut c = ClientConfig::new(self.handle.addr(), self.cert.clone(), token.to_string());
        c.session_id = session_id;
        c
    }

    async fn connect(&self, session_id: u64) -> Client {
        Client::connect(&self.cfg(&self.token, session_id))
            .await
            .unwrap()
    }
}

/// Replies until `pred` holds for one (included); panics after 5 s.
async fn until(c: &mut Client, mut pred: impl FnMut(&Reply) -> bool) -> Vec<Reply> {
    let mut v = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let r = c.next().await.unwrap().expect("stream ended");
            let done = pred(&r);
            v.push(r);
            if done {
                return;
            }
        }
    })
    .await;
    assert!(r.is_ok(), "timed out; got {v:#?}");
    v
}

fn reports(v: &[Reply]) -> Vec<wire::ExecutionReport> {
    v.iter()
        .filter_map(|r| match r {
            Reply::Report(e) => Some(*e),
            _ => None,
        })
        .collect()
}

fn is_report(r: &Reply, request: u64, t: u8) -> bool {
    matches!(r, Reply::Report(e) if e.request == request && e.exec_type == t)
}

const BTC: u32 = 1;

#[tokio::test(flavor = "current_thread")]
async fn place_fill_replace_cancel_between_two_clients() {
    let s = start(journal::Durability::Durable);
    let mut maker = s.connect(11).await;
    let mut taker = s.connect(12).await;

    let sell = maker.order(limit(2, BTC, engine::Side::Sell, 60_000, 5, 1));
    maker.flush().await.unwrap();
    let v = until(&mut maker, |r| is_report(r, sell, exec_type::NEW)).await;
    let new = reports(&v)[0];
    assert_eq!(
        (new.owner, new.leaves_qty, new.ord_status),
        (2, 5, ord_status::NEW)
    );
    let order_id = new.order_id;

    let buy = taker.order(limit(1, BTC, engine::Side::Buy, 60_000, 3, 2));
    taker.flush().await.unwrap();
    let v = until(&mut taker, |r| {
        matches!(r, Reply::Report(e) if e.request == buy && e.exec_type == exec_type::TRADE && e.owner == 1)
    })
    .await;
    let t = reports(&v);
    assert!(t
        .iter()
        .any(|e| e.exec_type == exec_type::NEW && e.request == buy));
    let fill = t.last().unwrap();
    assert_eq!(
        (fill.last_qty, fill.last_px, fill.ord_status),
        (3, 60_000, ord_status::FILLED)
    );

    // The maker hears of its fill (routed by owner, not by request).
    let v = until(&mut maker, |r| {
        matches!(r, Reply::Report(e) if e.order_id == order_id && e.exec_type == exec_type::TRADE)
    })
    .await;
    let mf = *reports(&v).last().unwrap();
    assert_eq!((mf.last_qty, mf.cum_qty, mf.leaves_qty), (3, 3, 2));
    assert_eq!(mf.ord_status, ord_status::PARTIALLY_FILLED);

    let rep = maker.replace(2, order_id, 60_010, 0);
    maker.flush().await.unwrap();
    let v = until(&mut maker, |r| is_report(r, rep, exec_type::REPLACED)).await;
    assert_eq!(reports(&v).last().unwrap().price, 60_010);

    let open = maker.query_open_orders(0);
    maker.flush().await.unwrap();
    let v = until(
        &mut maker,
        |r| matches!(r, Reply::Ack(a) if a.request == open),
    )
    .await;
    let rows: Vec<_> = v
        .iter()
        .filter_map(|r| match r {
            Reply::OpenOrder(o) => Some(*o),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].order_id, rows[0].leaves_qty, rows[0].price),
        (order_id, 2, 60_010)
    );

    let cancel = maker.cancel(2, order_id);
    maker.flush().await.unwrap();
    let v = until(&mut maker, |r| is_report(r, cancel, exec_type::CANCELED)).await;
    let c = *reports(&v).last().unwrap();
    assert_eq!((c.leaves_qty, c.ord_status), (0, ord_status::CANCELED));

    // Report seqs per session: 1, 2, 3, … without holes.
    maker.close().await;
    taker.close().await;
    s.handle.shutdown();
}

#[tokio::test(flavor = "current_thread")]
async fn transfer_and_balance() {
    let s = start(journal::Durability::None);
    let mut c = s.connect(21).await;
    let rec = |id: u128, amount: u128| TransferRecord {
        id: u128_bytes(id),
        debit_account: u128_bytes(101),
        credit_account: u128_bytes(201),
        amount: u128_bytes(amount),
        code: 1,
        ..Default::default()
    };
    let t = c.transfer_batch(&[rec(1_000, 70), rec(1_001, 30)]);
    c.flush().await.unwrap();
    let v = until(
        &mut c,
        |r| matches!(r, Reply::TransferResults { request, .. } if *request == t),
    )
    .await;
    let Reply::TransferResults { results, .. } = v.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(
        results.iter().map(|r| r.code).collect::<Vec<_>>(),
        vec![0, 0]
    );
    // Exactly once: the same id again is refused by the ledger.
    let again = c.transfer_batch(&[rec(1_000, 70)]);
    let bal = c.query_balance(101);
    c.flush().await.unwrap();
    let v = until(
        &mut c,
        |r| matches!(r, Reply::Balance(b) if b.request == bal),
    )
    .await;
    let dup = v
        .iter()
        .find_map(|r| match r {
            Reply::TransferResults { request, results } if *request == again => {
                Some(results[0].code)
            }
            _ => None,
        })
        .unwrap();
    assert_ne!(dup, 0, "a repeated transfer id must not apply twice");
    let Reply::Balance(b) = v.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(u128_from(b.debits_posted), 100);
    assert_eq!(u128_from(b.credits_posted), gateway::demo::DEMO_FUNDING);
    c.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn wrong_token_and_foreign_owner_are_refused() {
    let s = start(journal::Durability::None);
    match Client::connect(&s.cfg("not-a-token", 31)).await {
        Err(ClientError::LoginRejected(code)) => {
            assert_eq!(code, wire::login_reject::BAD_TOKEN)
        }
        other => panic!("expected a login rejection, got {other:?}"),
    }
    // Admin creates a token for owner 2 only.
    let mut admin = s.connect(32).await;
    let mut m = wire::AddTokenMsg {
        owners_len: 1,
        perms: wire::PERM_TRADE | wire::PERM_READ,
        ..Default::default()
    };
    m.token = wire::token_bytes("trader-two-token-0001").unwrap();
    m.owners[0] = 2;
    let add = admin.add_token(m);
    let resting = admin.order(limit(1, BTC, engine::Side::Buy, 59_000, 1, 7));
    admin.flush().await.unwrap();
    let v = until(&mut admin, |r| is_report(r, resting, exec_type::NEW)).await;
    assert!(v
        .iter()
        .any(|r| matches!(r, Reply::Ack(a) if a.request == add && a.code == 0)));
    let owner1_order = reports(&v).last().unwrap().order_id;

    let mut two = Client::connect(&s.cfg("trader-two-token-0001", 33))
        .await
        .unwrap();
    // Acting for owner 1 is not authorized.
    let o = two.order(limit(1, BTC, engine::Side::Buy, 59_000, 1, 8));
    let c = two.cancel(1, owner1_order);
    two.flush().await.unwrap();
    let v = until(
        &mut two,
        |r| matches!(r, Reply::Report(e) if e.request == c),
    )
    .await;
    let r = reports(&v);
    let code = |req: u64| r.iter().find(|e| e.request == req).unwrap();
    assert_eq!(code(o).exec_type, exec_type::REJECTED);
    assert_eq!(code(o).reject_code, wire::code::NOT_AUTHORIZED);
    assert_eq!(code(c).reject_code, wire::code::NOT_AUTHORIZED);
    // Naming its own owner on someone else's order: the engine refuses it.
    let c2 = two.cancel(2, owner1_order);
    two.flush().await.unwrap();
    let v = until(
        &mut two,
        |r| matches!(r, Reply::Report(e) if e.request == c2),
    )
    .await;
    assert_eq!(reports(&v).last().unwrap().exec_type, exec_type::REJECTED);
    // And trader-two never saw owner 1's order.
    assert!(reports(&v).iter().all(|e| e.owner != 1));
    two.close().await;
    admin.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn resume_replays_exactly_the_missed_reports() {
    let s = start(journal::Durability::Durable);
    // A token for owner 1 only: its session hears only owner 1's reports.
    let mut admin = s.connect(40).await;
    let mut m = wire::AddTokenMsg {
        owners_len: 1,
        perms: wire::PERM_TRADE | wire::PERM_READ,
        ..Default::default()
    };
    m.token = wire::token_bytes("owner-one-token-00001").unwrap();
    m.owners[0] = 1;
    let add = admin.add_token(m);
    admin.flush().await.unwrap();
    until(
        &mut admin,
        |r| matches!(r, Reply::Ack(a) if a.request == add && a.code == 0),
    )
    .await;
    admin.close().await;
    let mut a = Client::connect(&s.cfg("owner-one-token-00001", 41))
        .await
        .unwrap();
    let sell = a.order(limit(1, BTC, engine::Side::Sell, 61_000, 10, 100));
    a.flush().await.unwrap();
    let v = until(&mut a, |r| is_report(r, sell, exec_type::NEW)).await;
    let order_id = reports(&v)[0].order_id;
    let seen = a.last_report_seq();
    assert_eq!(seen, 1);
    a.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // While it is away, owner 2 takes 4 + 6 lots in two orders.
    let mut b = s.connect(42).await;
    let b1 = b.order(limit(2, BTC, engine::Side::Buy, 61_000, 4, 200));
    let b2 = b.order(limit(2, BTC, engine::Side::Buy, 61_000, 6, 201));
    b.flush().await.unwrap();
    until(&mut b, |r| {
        matches!(r, Reply::Report(e) if e.request == b2 && e.exec_type == exec_type::TRADE && e.owner == 2)
    })
    .await;
    let _ = b1;

    let mut cfg = s.cfg("owner-one-token-00001", 41);
    cfg.resume_after = seen;
    let mut a = Client::connect(&cfg).await.unwrap();
    assert_eq!(a.login().replay_from, seen + 1);
    let v = until(&mut a, |r| {
        matches!(r, Reply::Report(e) if e.order_id == order_id && e.ord_status == ord_status::FILLED)
    })
    .await;
    let r = reports(&v);
    let seqs: Vec<u64> = r.iter().map(|e| e.report_seq).collect();
    assert_eq!(
        seqs,
        vec![2, 3],
        "exactly the missed reports, in order: {r:#?}"
    );
    assert!(r
        .iter()
        .all(|e| e.order_id == order_id && e.exec_type == exec_type::TRADE));
    assert_eq!(r.iter().map(|e| e.last_qty).collect::<Vec<_>>(), vec![4, 6]);
    // Nothing else follows (no duplicates).
    assert!(a
        .next_timeout(Duration::from_millis(200))
        .await
        .unwrap()
        .is_none());
    a.close().await;
    b.close().await;
}

/// A login that asks for reports the server no longer has (it restarted,
/// or another cluster node took over: a session it never saw numbers its
/// reports from 1) says so (`reports_lost`), and the client follows the
/// server's numbering from there: reconnecting after a blip replays what
/// it missed of the new numbering. (The client kept the old, higher number
/// and such a reconnect skipped the missed reports.)
#[tokio::test(flavor = "current_thread")]
async fn a_resume_the_server_cannot_honour_restarts_the_report_numbering() {
    let s = start(journal::Durability::None);
    let mut cfg = s.cfg(&s.token, 61);
    // What this client had seen before the server restarted.
    cfg.resume_after = 1_000;
    let mut a = Client::connect(&cfg).await.unwrap();
    assert!(a.reports_lost());
    assert_eq!((a.login().replay_from, a.last_report_seq()), (1, 0));
    let o = a.order(limit(1, BTC, engine::Side::Sell, 61_000, 1, 300));
    a.flush().await.unwrap();
    until(&mut a, |r| is_report(r, o, exec_type::NEW)).await;
    assert_eq!(a.last_report_seq(), 1);
    // A second order; the connection drops before its report is read.
    let o2 = a.order(limit(1, BTC, engine::Side::Sell, 61_000, 1, 301));
    a.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    cfg.resume_after = a.last_report_seq();
    a.abort();
    let mut a = Client::connect(&cfg).await.unwrap();
    assert!(!a.reports_lost());
    let v = until(&mut a, |r| is_report(r, o2, exec_type::NEW)).await;
    assert_eq!(reports(&v).last().unwrap().report_seq, 2);
    a.close().await;
}

/// A single node restarted: its report window starts after what it
/// recovered, so a client asking for the reports it lost is told exactly
/// which inputs no longer can be replayed (`replay_gap` from its seq up to
/// the restart), never answered "nothing lost".
#[tokio::test]
async fn after_a_restart_recover_reports_names_what_cannot_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let boot = |dir: &std::path::Path| {
        let mut cfg = ServerConfig::new(dir);
        cfg.demo = true;
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.pipeline.durability = journal::Durability::Durable;
        cfg.pipeline.runtime.pin = false;
        cfg.pipeline.runtime.idle = runtime::IdleStrategy::Yield;
        server::start(cfg).unwrap()
    };
    let handle = boot(dir.path());
    let id = load_client_identity(dir.path()).unwrap();
    let token = id.operator_token.clone().unwrap();
    let cfg = |addr, sid| {
        let mut c = ClientConfig::new(addr, id.cert_der.clone(), token.clone());
        c.session_id = sid;
        c
    };
    let mut a = Client::connect(&cfg(handle.addr(), 71)).await.unwrap();
    let o = a.order(limit(1, BTC, engine::Side::Buy, 59_000, 5, 700));
    a.flush().await.unwrap();
    let v = until(&mut a, |r| is_report(r, o, exec_type::NEW)).await;
    let resting = *reports(&v).last().unwrap();
    let (seen, last) = (a.coverage().clone(), a.last_report_seq());
    a.abort();
    // A fill while it is away, then the restart.
    let mut b = Client::connect(&cfg(handle.addr(), 72)).await.unwrap();
    let sell = b.order(limit(2, BTC, engine::Side::Sell, 59_000, 2, 701));
    b.flush().await.unwrap();
    let v = until(&mut b, |r| is_report(r, sell, exec_type::TRADE)).await;
    let fill_seq = reports(&v).last().unwrap().engine_seq;
    b.close().await;
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
    let handle = boot(dir.path());
    let mut back = cfg(handle.addr(), 71);
    back.resume_after = last;
    back.coverage = seen.clone();
    let mut a = Client::connect(&back).await.unwrap();
    assert!(a.reports_lost());
    let got = a.recover_reports().await.unwrap();
    let p = resting.partition as u32;
    assert_eq!(got.replayed, 0, "{got:?}");
    assert_eq!(got.gaps.len(), 1, "{got:?}");
    let gap = got.gaps[0];
    // Asked from the newest input held, whole (its reports held are dropped).
    assert_eq!((gap.partition, gap.after_seq), (p, seen.newest(p) - 1));
    assert!(
        gap.floor >= fill_seq,
        "the fill at {fill_seq} is inside the gap: {gap:?}"
    );
    a.close().await;
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn cancel_on_disconnect_cancels_resting_orders() {
    let s = start(journal::Durability::None);
    let mut watcher = s.connect(51).await;
    let mut cfg = s.cfg(&s.token, 52);
    cfg.cancel_on_disconnect = true;
    let mut c = Client::connect(&cfg).await.unwrap();
    assert_eq!(c.login().cancel_on_disconnect, 1);
    let o = c.order(limit(3, BTC, engine::Side::Buy, 50_000, 2, 9));
    c.flush().await.unwrap();
    let v = until(&mut c, |r| is_report(r, o, exec_type::NEW)).await;
    let order_id = reports(&v)[0].order_id;
    c.abort();
    // The watcher (same token, owner 3 too) sees the cancellation.
    let v = until(&mut watcher, |r| {
        matches!(r, Reply::Report(e) if e.order_id == order_id && e.exec_type == exec_type::CANCELED)
    })
    .await;
    let e = *reports(&v).last().unwrap();
    assert_eq!(e.cancel_reason, 4, "mass_cancel");
    watcher.close().await;
}

/// A token from the configuration file acts for its owners only.
#[tokio::test]
async fn configured_tokens_grant_their_owners_only() {
    let conf = bourse::config::BourseConfig::load(
        None,
        Vec::<(String, String)>::new(),
        &[(
            "auth.tokens".to_string(),
            r#"[{ token = "desk-2-secret-token", owners = [2], perms = ["trade", "read"] }]"#
                .to_string(),
        )],
    )
    .expect("configuration with a token");
    let tokens = conf
        .auth
        .tokens
        .iter()
        .map(|t| {
            let (o, p) = t.grant().unwrap();
            (t.token.clone(), o, p)
        })
        .collect();
    let s = start_with(journal::Durability::None, tokens);
    let mut desk = Client::connect(&s.cfg("desk-2-secret-token", 41))
        .await
        .unwrap();
    let mine = desk.order(limit(2, BTC, engine::Side::Sell, 61_000, 1, 1));
    let theirs = desk.order(limit(1, BTC, engine::Side::Sell, 61_000, 1, 2));
    desk.flush().await.unwrap();
    let mut v = until(&mut desk, |r| is_report(r, theirs, exec_type::REJECTED)).await;
    if !v.iter().any(|r| is_report(r, mine, exec_type::NEW)) {
        v.extend(until(&mut desk, |r| is_report(r, mine, exec_type::NEW)).await);
    }
    let r = reports(&v);
    assert!(r
        .iter()
        .any(|e| e.request == mine && e.exec_type == exec_type::NEW));
    let t = r.iter().find(|e| e.request == theirs).unwrap();
    assert_eq!(t.reject_code, wire::code::NOT_AUTHORIZED);
    desk.close().await;
}

#[test]
fn bad_configured_tokens_are_refused_by_name() {
    for bad in [
        r#"[{ token = "", owners = [2], perms = ["trade"] }]"#,
        r#"[{ token = "x", owners = [2], perms = ["fly"] }]"#,
    ] {
        let e = bourse::config::BourseConfig::load(
            None,
            Vec::<(String, String)>::new(),
            &[("auth.tokens".to_string(), bad.to_string())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("auth.tokens"), "{e}");
    }
}

/// A token an admin session creates survives a restart (saved, 0600, in the
/// data directory).
#[tokio::test]
async fn tokens_created_by_an_admin_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let boot = |dir: &std::path::Path| {
        let mut cfg = ServerConfig::new(dir);
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.pipeline.durability = journal::Durability::None;
        cfg.pipeline.runtime.pin = false;
        cfg.pipeline.runtime.idle = runtime::IdleStrategy::Yield;
        server::start(cfg).unwrap()
    };
    let handle = boot(dir.path());
    let id = load_client_identity(dir.path()).unwrap();
    let cfg = |addr, token: &str, sid| {
        let mut c = ClientConfig::new(addr, id.cert_der.clone(), token.to_string());
        c.session_id = sid;
        c
    };
    let mut admin = Client::connect(&cfg(
        handle.addr(),
        id.operator_token.as_deref().unwrap(),
        51,
    ))
    .await
    .unwrap();
    let mut m = wire::AddTokenMsg {
        owners_len: 1,
        perms: wire::PERM_READ,
        ..Default::default()
    };
    m.token = wire::token_bytes("auditor-token-000001").unwrap();
    m.owners[0] = 3;
    let add = admin.add_token(m);
    admin.flush().await.unwrap();
    until(
        &mut admin,
        |r| matches!(r, Reply::Ack(a) if a.request == add && a.code == 0),
    )
    .await;
    admin.close().await;
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
    let meta = std::fs::metadata(dir.path().join(gateway::identity::TOKENS_FILE)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let handle = boot(dir.path());
    let c = Client::connect(&cfg(handle.addr(), "auditor-token-000001", 52)).await;
    assert!(
        c.is_ok(),
        "the saved token no longer logs in: {:?}",
        c.err()
    );
    c.unwrap().close().await;
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
}

/// A server without a journal whose tables are not touched up front (the
/// tests run in parallel on few cores).
fn light_cfg(dir: &std::path::Path) -> ServerConfig {
    let mut cfg = ServerConfig::new(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.pipeline.durability = journal::Durability::None;
    cfg.pipeline.prefault = false;
    cfg.pipeline.runtime.pin = false;
    cfg.pipeline.runtime.idle = runtime::IdleStrategy::Yield;
    cfg
}

/// The demo instruments have price bands: a buy at the top price is refused.
#[tokio::test(flavor = "current_thread")]
async fn demo_instruments_refuse_prices_out_of_band() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = light_cfg(dir.path());
    cfg.demo = true;
    let handle = server::start(cfg).unwrap();
    let id = load_client_identity(dir.path()).unwrap();
    let s = TestServer {
        handle,
        cert: id.cert_der,
        token: id.operator_token.unwrap(),
        _dir: dir,
    };
    let mut c = s.connect(61).await;
    let buy = c.order(limit(1, BTC, engine::Side::Buy, u64::MAX, 1, 1));
    c.flush().await.unwrap();
    let v = until(
        &mut c,
        |r| matches!(r, Reply::Report(e) if e.request == buy),
    )
    .await;
    let r = *reports(&v).last().unwrap();
    assert_eq!(
        (r.exec_type, gateway::client::reject_name(r.reject_code)),
        (exec_type::REJECTED, "price_out_of_band".to_string())
    );
    c.close().await;
}

/// Order-entry disconnects reach `bourse_disconnects_total` by reason; an
/// address that failed `login_failures_max` logins within the window is
/// refused, even with a good token, until the window passes.
#[tokio::test(flavor = "current_thread")]
async fn disconnects_and_failed_logins_are_counted_and_limited() {
    use bourse::metrics::{parse_exposition, DisconnectReason, MetricsState};
    let dir = tempfile::tempdir().unwrap();
    let state = MetricsState::new();
    let mut cfg = light_cfg(dir.path());
    cfg.metrics = Some(state.clone());
    cfg.login_failures_max = 3;
    cfg.login_failure_window = Duration::from_secs(60);
    let handle = server::start(cfg).unwrap();
    let id = load_client_identity(dir.path()).unwrap();
    let ccfg = |token: &str, sid| {
        let mut c = ClientConfig::new(handle.addr(), id.cert_der.clone(), token.to_string());
        c.session_id = sid;
        c
    };
    let good = id.operator_token.clone().unwrap();
    Client::connect(&ccfg(&good, 71))
        .await
        .unwrap()
        .close()
        .await;
    // (token, logs in?)
    let attempts = [
        ("not-a-token-of-ours", false),
        ("not-a-token-of-ours", false),
        ("not-a-token-of-ours", false),
        (good.as_str(), false),
    ];
    for (i, (token, ok)) in attempts.iter().enumerate() {
        let r = Client::connect(&ccfg(token, 80 + i as u64)).await;
        assert_eq!(r.is_ok(), *ok, "attempt {i}: {:?}", r.as_ref().err());
    }
    let t0 = std::time::Instant::now();
    let want = [
        (DisconnectReason::Normal, 1),
        (DisconnectReason::AuthFailed, 4),
    ];
    while want.iter().any(|&(r, n)| state.gateway.disconnects(r) != n)
        && t0.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let samples = parse_exposition(&state.render()).unwrap();
    for (reason, n) in want {
        let v = samples
            .iter()
            .find(|s| {
                s.name == "bourse_disconnects_total"
                    && s.label("endpoint") == Some("order_entry")
                    && s.label("reason") == Some(reason.name())
            })
            .map(|s| s.value);
        assert_eq!(v, Some(n as f64), "{}", reason.name());
    }
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
}
