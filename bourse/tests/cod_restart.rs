//! Cancel-on-disconnect survives the gateway's own crash: a single-node
//! `bourse serve` SIGKILLed while a session that asked for it has orders on
//! the book never saw that disconnect, so the next start cancels them
//! (`sessions_lost`, over the arms it recovered from the journal), and only
//! the orders of owners whose sessions asked for it.

mod support;

use gateway::client::{limit, Client, ClientConfig, Reply};
use gateway::identity::load_client_identity;
use gateway::wire::exec_type;
use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;
use support::{addr_of, first_line, serve, spawn_piped};

const BTC: u32 = 1;
/// Trades for owner 3 only (the demo operator token has owners 1–3).
const OWNER3_TOKEN: &str = "owner-three-token-0123456789";

/// `serve --demo` on `dir` (a configured token for owner 3); the child
/// and its address.
fn start(dir: &std::path::Path) -> (Child, SocketAddr) {
    let config = dir.join("tokens.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\ntokens = [{{ token = \"{OWNER3_TOKEN}\", owners = [3], perms = [\"trade\", \"read\"] }}]\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    let mut cmd = serve(dir, &["--demo", "--no-metrics", "--config", &config]);
    cmd.env("BOURSE_PIPELINE_PREFAULT", "false");
    let mut child = spawn_piped(&mut cmd);
    let (first, lines) = first_line(&mut child);
    let first = first.unwrap_or_else(|| {
        panic!(
            "serve printed nothing: {}",
            support::read_stderr(&mut child)
        )
    });
    let addr = addr_of(&first).parse().expect("an address");
    std::thread::spawn(move || lines.map_while(Result::ok).count());
    (child, addr)
}

async fn place(c: &mut Client, owner: u64, price: u64, coid: u64) {
    let r = c.order(limit(owner, BTC, engine::Side::Buy, price, 1, coid));
    c.flush().await.unwrap();
    loop {
        match c.next_timeout(Duration::from_secs(10)).await {
            Ok(Some(Reply::Report(e))) if e.request == r => {
                assert_eq!(e.exec_type, exec_type::NEW, "order {coid}: {e:?}");
                return;
            }
            Ok(Some(_)) => {}
            other => panic!("order {coid}: {other:?}"),
        }
    }
}

async fn open_coids(c: &mut Client, owner: u64) -> Vec<u64> {
    let q = c.query_open_orders(owner);
    c.flush().await.unwrap();
    let mut v = Vec::new();
    loop {
        match c.next_timeout(Duration::from_secs(10)).await {
            Ok(Some(Reply::OpenOrder(o))) => v.push(o.client_order_id),
            Ok(Some(Reply::Ack(a))) if a.request == q => break,
            Ok(Some(_)) => {}
            other => panic!("open orders: {other:?}"),
        }
    }
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "current_thread")]
async fn a_restart_after_sigkill_cancels_for_cancel_on_disconnect_sessions_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path());
    let id = load_client_identity(dir.path()).unwrap();
    let operator = ClientConfig::new(addr, id.cert_der.clone(), id.operator_token.unwrap());
    let mut guarded_cfg = operator.clone();
    guarded_cfg.token = OWNER3_TOKEN.into();
    guarded_cfg.cancel_on_disconnect = true;
    let mut plain = Client::connect(&operator).await.unwrap();
    let mut guarded = Client::connect(&guarded_cfg).await.unwrap();
    place(&mut plain, 1, 49_500, 11).await;
    place(&mut guarded, 3, 49_501, 31).await;
    assert_eq!(open_coids(&mut plain, 3).await, vec![31]);

    child.kill().unwrap();
    child.wait().unwrap();
    drop((plain, guarded));

    let (mut child, addr) = start(dir.path());
    let mut cfg = operator.clone();
    cfg.addr = addr;
    let mut c = Client::connect(&cfg).await.unwrap();
    assert_eq!(
        open_coids(&mut c, 3).await,
        Vec::<u64>::new(),
        "owner 3 asked for it"
    );
    assert_eq!(open_coids(&mut c, 1).await, vec![11], "owner 1 did not");

    // A cancel-on-disconnect session that logs out disarms: a later crash
    // cancels nothing of its owner's.
    guarded_cfg.addr = addr;
    let g = Client::connect(&guarded_cfg).await.unwrap();
    g.disconnect().await;
    let mut unguarded_cfg = guarded_cfg.clone();
    unguarded_cfg.cancel_on_disconnect = false;
    let mut u = Client::connect(&unguarded_cfg).await.unwrap();
    place(&mut u, 3, 49_502, 34).await;
    child.kill().unwrap();
    child.wait().unwrap();
    drop((c, u));
    let (mut child, addr) = start(dir.path());
    cfg.addr = addr;
    let mut c = Client::connect(&cfg).await.unwrap();
    assert_eq!(open_coids(&mut c, 3).await, vec![34], "disarmed at logout");
    c.disconnect().await;
    child.kill().unwrap();
    child.wait().unwrap();
}
