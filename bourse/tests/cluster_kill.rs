//! Process-level failover test: three real `bourse serve` processes (the
//! layout `bourse cluster local` makes), a client placing orders through
//! whichever node leads (`--server a,b,c` walking), and the leader killed
//! with SIGKILL at seeded random moments over several rounds, then
//! restarted onto its data.
//!
//! Checked: every order the client saw acknowledged is on the book of the
//! leader after the last failover (none lost); every replica's journal
//! holds the same records for every log index they share (same inputs at
//! the same seqs on every replica); a killed node restarts onto its own
//! journal and catches up.
//!
//! Also: a session's reports the killed leader never delivered come back
//! from the new one (`REPLAY_REPORTS`).
//!
//! Also: transfers past the ledger's memory through a killed leader and a
//! follower rebuilt with `add-node` (every node ends with the same history
//! runs under the same checksums; every old id stays `exists`).
//!
//! `TEST_CLUSTER_KILL_ROUNDS` sets the rounds (default 3);
//! `TEST_CLUSTER_KILL_SEED` the seed (printed on failure).

mod support;

use gateway::client::{connect_any, limit, Client, ClientConfig, Reply};
use gateway::identity::load_client_identity;
use gateway::wire::exec_type;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command as Proc, Stdio};
use std::time::{Duration, Instant};
use support::cluster::{add_instrument, BTC};
use support::journal_entries;

struct Nodes {
    plans: Vec<bourse::cluster_cli::NodePlan>,
    children: BTreeMap<u64, Child>,
}

impl Nodes {
    fn spawn(&mut self, id: u64) {
        let p = &self.plans[id as usize - 1];
        let log = std::fs::File::create(p.dir.join("test-serve.log")).expect("log file");
        let child = Proc::new(env!("CARGO_BIN_EXE_bourse"))
            .arg("serve")
            .arg("--config")
            .arg(p.config_path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn bourse serve");
        self.children.insert(id, child);
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.plans.iter().map(|p| p.client).collect()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

/// Three `bourse serve` processes in the `cluster local` layout under
/// `root`, and a client configuration for them.
fn start(root: &std::path::Path) -> (Nodes, ClientConfig) {
    start_edited(root, |toml| toml)
}

/// `start` with each node's `bourse.toml` passed through `edit` first.
fn start_edited(root: &std::path::Path, edit: fn(String) -> String) -> (Nodes, ClientConfig) {
    let plans = bourse::cluster_cli::prepare(root, 3).expect("cluster layout");
    for p in &plans {
        let toml = std::fs::read_to_string(p.config_path()).expect("node config");
        std::fs::write(p.config_path(), edit(toml)).expect("node config");
    }
    let mut nodes = Nodes {
        plans,
        children: BTreeMap::new(),
    };
    for id in 1..=3 {
        nodes.spawn(id);
    }
    let ident = load_client_identity(root).expect("identity");
    let cfg = ClientConfig::new(
        nodes.plans[0].client,
        ident.cert_der,
        ident.operator_token.expect("token"),
    );
    (nodes, cfg)
}

/// The node that serves now (the others answer `not_leader`), within 30 s.
async fn leader_id(nodes: &Nodes, cfg: &ClientConfig) -> u64 {
    let live: Vec<&bourse::cluster_cli::NodePlan> = nodes
        .plans
        .iter()
        .filter(|p| nodes.children.contains_key(&p.id))
        .collect();
    let addrs: Vec<SocketAddr> = live.iter().map(|p| p.client).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(c) = connect_any(&addrs, cfg).await {
            let server = c.server();
            c.disconnect().await;
            return live
                .iter()
                .find(|p| p.client == server)
                .expect("a member")
                .id;
        }
        // A refusal can come back at once: do not hammer the servers.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no node served within 30 s");
}

/// `support::cluster::place` through every node's address.
async fn place(
    nodes: &Nodes,
    cfg: &ClientConfig,
    coid: &mut u64,
    until: Instant,
    acked: &mut Vec<u64>,
) {
    support::cluster::place(&nodes.addrs(), cfg, coid, until, acked).await
}

async fn open_coids(nodes: &Nodes, cfg: &ClientConfig) -> Vec<u64> {
    let mut c = connect_any(&nodes.addrs(), cfg).await.expect("a leader");
    let coids = support::cluster::open_coids(&mut c).await;
    c.disconnect().await;
    coids
}

#[tokio::test(flavor = "current_thread")]
async fn sigkilled_leaders_lose_no_acknowledged_order() {
    let rounds: u64 = std::env::var("TEST_CLUSTER_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("TEST_CLUSTER_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0xc1u64);
    let root = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cfg) = start(root.path());
    let mut rng = engine::rng::SplitMix64::new(seed);
    // The instrument, once a node serves.
    leader_id(&nodes, &cfg).await;
    let mut c = connect_any(&nodes.addrs(), &cfg).await.expect("a leader");
    add_instrument(&mut c).await;
    c.disconnect().await;
    let (mut coid, mut acked) = (0u64, Vec::new());
    for round in 0..rounds {
        let run_for = Duration::from_millis(300 + rng.below(1_200));
        place(
            &nodes,
            &cfg,
            &mut coid,
            Instant::now() + run_for,
            &mut acked,
        )
        .await;
        let leader = leader_id(&nodes, &cfg).await;
        nodes.kill(leader);
        eprintln!(
            "round {round} (seed {seed}): killed node {leader} after {} acknowledged orders",
            acked.len()
        );
        place(
            &nodes,
            &cfg,
            &mut coid,
            Instant::now() + Duration::from_millis(500),
            &mut acked,
        )
        .await;
        nodes.spawn(leader);
    }
    place(
        &nodes,
        &cfg,
        &mut coid,
        Instant::now() + Duration::from_millis(500),
        &mut acked,
    )
    .await;
    assert!(!acked.is_empty(), "seed {seed}: no order was acknowledged");
    let open = open_coids(&nodes, &cfg).await;
    let lost: Vec<u64> = acked
        .iter()
        .filter(|c| open.binary_search(c).is_err())
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: acknowledged orders lost after failover: {lost:?}"
    );
    // Let the restarted node catch up, then stop everyone and compare logs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: Vec<u64> = nodes.children.keys().copied().collect();
    for id in ids {
        nodes.kill(id);
    }
    let logs: Vec<_> = nodes
        .plans
        .iter()
        .map(|p| journal_entries(&p.dir))
        .collect();
    for (i, a) in logs.iter().enumerate() {
        for b in &logs[i + 1..] {
            for (index, ea) in a {
                if let Some(eb) = b.get(index) {
                    if ea.0 == eb.0 {
                        assert_eq!(
                            ea, eb,
                            "seed {seed}: entry {index} of the same term differs between replicas"
                        );
                    }
                }
            }
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Proc::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill(1)")
        .success();
    assert!(ok, "kill -{sig}");
}

/// A leader stopped (SIGSTOP) until another node leads, then resumed: an
/// order its client sent meanwhile is never acknowledged by it and never
/// executed (a deposed leader cannot commit, so it never applies).
#[tokio::test(flavor = "current_thread")]
async fn a_resumed_stale_leader_never_answers_for_the_cluster() {
    let root = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cfg) = start(root.path());
    let old = leader_id(&nodes, &cfg).await;
    let mut c = connect_any(&nodes.addrs(), &cfg).await.expect("a leader");
    add_instrument(&mut c).await;
    signal(&nodes.children[&old], "STOP");
    // Another node leads (the stopped one cannot answer).
    let stopped = nodes.children.remove(&old).expect("child");
    let new = leader_id(&nodes, &cfg).await;
    nodes.children.insert(old, stopped);
    assert_ne!(new, old);
    let stale = c.order(limit(1, BTC, engine::Side::Buy, 59_500, 1, 777));
    let _ = c.flush().await;
    signal(&nodes.children[&old], "CONT");
    // It either steps down and closes the session, or the order is
    // refused; it is never acknowledged.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match c.next().await {
                Ok(Some(Reply::Report(e))) if e.request == stale => {
                    panic!("the deposed leader answered for the cluster: {e:?}")
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the deposed leader kept the session open for 10 s"
    );
    let open = open_coids(&nodes, &cfg).await;
    assert!(
        !open.contains(&777),
        "the stale leader's order was executed: {open:?}"
    );
}

/// Places `n` orders through the leader; their client order ids.
async fn place_n(nodes: &Nodes, cfg: &ClientConfig, coid0: u64, n: u64) -> Vec<u64> {
    let mut c = connect_any(&nodes.addrs(), cfg).await.expect("a leader");
    let mut acked = Vec::new();
    for coid in coid0..coid0 + n {
        let r = c.order(limit(
            1,
            BTC,
            engine::Side::Buy,
            59_000 - coid % 1_000,
            1,
            coid,
        ));
        c.flush().await.expect("flush");
        loop {
            match c.next_timeout(Duration::from_secs(10)).await {
                Ok(Some(Reply::Report(e))) if e.request == r => {
                    assert_eq!(e.exec_type, exec_type::NEW, "order {coid}: {e:?}");
                    acked.push(coid);
                    break;
                }
                Ok(Some(_)) => {}
                other => panic!("order {coid}: {other:?}"),
            }
        }
    }
    c.disconnect().await;
    acked
}

fn admin(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Proc::new(env!("CARGO_BIN_EXE_bourse"))
        .args(["cluster"])
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("bourse cluster");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "bourse cluster {args:?}: {text}");
    text
}

/// A follower whose synced journal has a flipped bit refuses to start
/// (never applies it); the operator removes it, clears its data and adds it
/// back, and it catches up from the leader.
#[tokio::test(flavor = "current_thread")]
async fn a_damaged_follower_is_refused_then_rebuilt_from_the_leader() {
    let root = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cfg) = start(root.path());
    let leader = leader_id(&nodes, &cfg).await;
    let mut c = connect_any(&nodes.addrs(), &cfg).await.expect("a leader");
    add_instrument(&mut c).await;
    c.disconnect().await;
    let mut acked = place_n(&nodes, &cfg, 1, 20).await;
    // A follower other than node 1 (an empty node 1 would start a cluster).
    let f = (2..=3).find(|&id| id != leader).expect("a follower");
    nodes.kill(f);
    let (fdir, fraft) = {
        let p = &nodes.plans[f as usize - 1];
        (p.dir.clone(), p.raft)
    };
    let seg = fdir.join("p0").join("journal-00000000000000000001.seg");
    let mut data = std::fs::read(&seg).expect("segment");
    data[journal::HEADER_LEN + 40] ^= 0x10;
    std::fs::write(&seg, &data).expect("flip a bit");
    nodes.spawn(f);
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(s) = nodes
                .children
                .get_mut(&f)
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the damaged follower kept running");
    assert!(!status.success(), "the damaged follower started");
    nodes.children.remove(&f);
    let log = std::fs::read_to_string(fdir.join("test-serve.log")).expect("log");
    assert!(
        log.contains("checksum") || log.contains("corrupt"),
        "the refusal names no damage: {log}"
    );
    // Two nodes keep trading.
    acked.extend(place_n(&nodes, &cfg, 100, 10).await);
    // Rebuilt from the leader: removed, cleared, restarted empty, added back.
    admin(root.path(), &["remove-node", "--node-id", &f.to_string()]);
    std::fs::remove_dir_all(fdir.join("p0")).expect("clear");
    let raft = fraft.to_string();
    nodes.spawn(f);
    admin(
        root.path(),
        &[
            "add-node",
            "--node-id",
            &f.to_string(),
            "--raft-addr",
            &raft,
        ],
    );
    acked.extend(place_n(&nodes, &cfg, 200, 10).await);
    // It catches up from the leader (the log, or a snapshot once purged).
    let mut status = String::new();
    for _ in 0..100 {
        status = admin(root.path(), &["status"]);
        let caught_up = status
            .lines()
            .filter(|l| l.contains("partition 0"))
            .filter_map(|l| l.rsplit("applied ").next())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 1;
        if caught_up && status.contains(&format!("node {f} partition 0: follower")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        status.contains(&format!("node {f} partition 0: follower")),
        "{status}"
    );
    let open = open_coids(&nodes, &cfg).await;
    assert_eq!(open, acked);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ids: Vec<u64> = nodes.children.keys().copied().collect();
    for id in ids {
        nodes.kill(id);
    }
    let rebuilt = journal_entries(&fdir);
    let lead = journal_entries(&nodes.plans[leader as usize - 1].dir);
    assert!(!rebuilt.is_empty());
    for (index, e) in &rebuilt {
        if let Some(l) = lead.get(index) {
            assert_eq!(e, l, "entry {index} differs on the rebuilt follower");
        }
    }
}

/// The leader SIGKILLed while a cancel-on-disconnect session has an order
/// on the book: no gateway sees that disconnect, yet the new leader cancels
/// the order (the arm is replicated engine state; `sessions_lost` is the
/// first command of every leadership).
#[tokio::test(flavor = "current_thread")]
async fn a_sigkilled_leaders_cancel_on_disconnect_sessions_are_cancelled_by_the_next() {
    let root = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cfg) = start(root.path());
    let old = leader_id(&nodes, &cfg).await;
    let mut cod = cfg.clone();
    cod.cancel_on_disconnect = true;
    let mut c = connect_any(&nodes.addrs(), &cod).await.expect("a leader");
    add_instrument(&mut c).await;
    let r = c.order(limit(1, BTC, engine::Side::Buy, 59_500, 1, 901));
    c.flush().await.expect("flush");
    loop {
        match c.next_timeout(Duration::from_secs(10)).await {
            Ok(Some(Reply::Report(e))) if e.request == r => {
                assert_eq!(e.exec_type, exec_type::NEW, "{e:?}");
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("order: {other:?}"),
        }
    }
    assert_eq!(open_coids(&nodes, &cfg).await, vec![901]);
    nodes.kill(old);
    let new = leader_id(&nodes, &cfg).await;
    assert_ne!(new, old);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = open_coids(&nodes, &cfg).await;
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead leader's cancel-on-disconnect order is still open: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(c);
}

/// Waits for `request`'s execution report.
async fn report_for(c: &mut Client, request: u64) -> gateway::wire::ExecutionReport {
    loop {
        match c.next_timeout(Duration::from_secs(10)).await {
            Ok(Some(Reply::Report(e))) if e.request == request => return e,
            Ok(Some(_)) => {}
            other => panic!("report for {request}: {other:?}"),
        }
    }
}

/// A session's reports that its leader had not delivered when it was
/// SIGKILLed come back from the new leader (`recover_reports`): a fill of
/// its resting order while it was away, and the accept of an order whose
/// report the client never processed (it asks from an older seq), under
/// the original request number. What it had already is not sent again.
#[tokio::test(flavor = "current_thread")]
async fn a_new_leader_replays_the_reports_a_killed_leader_never_delivered() {
    use gateway::wire::{REPORT_OWN_REQUEST, REPORT_REPLAYED};
    let root = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cfg) = start(root.path());
    let old = leader_id(&nodes, &cfg).await;
    let mut a = connect_any(&nodes.addrs(), &cfg).await.expect("a leader");
    add_instrument(&mut a).await;
    let r = a.order(limit(1, BTC, engine::Side::Buy, 59_500, 5, 901));
    a.flush().await.expect("flush");
    let resting = report_for(&mut a, r).await;
    assert_eq!(resting.exec_type, exec_type::NEW, "{resting:?}");
    // The client holds everything through here …
    let (seen, last_report) = (a.coverage().clone(), a.last_report_seq());
    let r2 = a.order(limit(1, BTC, engine::Side::Buy, 59_400, 1, 902));
    a.flush().await.expect("flush");
    let second = report_for(&mut a, r2).await;
    // … but crashes before it processes this accept.
    a.disconnect().await;
    // Another session sells into the resting order while the first is away.
    let mut other = cfg.clone();
    other.session_id ^= 0xFFFF;
    let mut b = connect_any(&nodes.addrs(), &other).await.expect("a leader");
    let sell = b.order(limit(2, BTC, engine::Side::Sell, 59_500, 2, 903));
    b.flush().await.expect("flush");
    // Its accept, then its fill.
    assert_eq!(report_for(&mut b, sell).await.exec_type, exec_type::NEW);
    assert_eq!(report_for(&mut b, sell).await.exec_type, exec_type::TRADE);
    b.disconnect().await;
    nodes.kill(old);
    assert_ne!(leader_id(&nodes, &cfg).await, old);
    let mut back = cfg.clone();
    back.resume_after = last_report;
    back.coverage = seen.clone();
    let mut a = connect_any(&nodes.addrs(), &back)
        .await
        .expect("the new leader");
    assert!(a.reports_lost(), "a new leader numbers its reports anew");
    let got = a.recover_reports().await.expect("replay");
    assert!(got.gaps.is_empty(), "{got:?}");
    let mut replayed = Vec::new();
    while let Ok(Some(reply)) = a.next_timeout(Duration::from_millis(300)).await {
        if let Reply::Report(e) = reply {
            replayed.push(e);
        }
    }
    assert_eq!(replayed.len() as u64, got.replayed, "{replayed:#?}");
    assert!(replayed.iter().all(|e| e.flags & REPORT_REPLAYED != 0));
    let p = resting.partition as usize;
    assert!(
        replayed
            .iter()
            .all(|e| e.engine_seq > seen.newest(p as u32)),
        "nothing the client held comes again: {replayed:#?}"
    );
    let accept = replayed
        .iter()
        .find(|e| e.exec_type == exec_type::NEW && e.order_id == second.order_id)
        .unwrap_or_else(|| panic!("the unprocessed accept: {replayed:#?}"));
    assert_eq!((accept.request, accept.client_order_id), (r2, 902));
    assert_ne!(accept.flags & REPORT_OWN_REQUEST, 0);
    let fill = replayed
        .iter()
        .find(|e| e.exec_type == exec_type::TRADE && e.order_id == resting.order_id)
        .unwrap_or_else(|| panic!("the fill while away: {replayed:#?}"));
    assert_eq!((fill.last_qty, fill.last_px), (2, 59_500));
    // The client now holds the partition through the fill.
    assert!(a.coverage().newest(p as u32) >= fill.engine_seq);
}

/// One input makes several reports for a session (an order that trades
/// at once: its accept, its fill, and the fill of the session's resting
/// order it traded with). A client that read only the first before its
/// leader was SIGKILLed gets exactly the others from the new leader: the
/// replay is asked from that input, whole, and the report it held is
/// dropped, not returned twice.
#[tokio::test(flavor = "current_thread")]
async fn a_cut_between_two_reports_of_one_input_loses_neither_on_a_new_leader() {
    let root = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cfg) = start(root.path());
    let old = leader_id(&nodes, &cfg).await;
    let mut a = connect_any(&nodes.addrs(), &cfg).await.expect("a leader");
    add_instrument(&mut a).await;
    let r = a.order(limit(1, BTC, engine::Side::Sell, 59_500, 2, 921));
    a.flush().await.expect("flush");
    report_for(&mut a, r).await;
    let r = a.order(limit(2, BTC, engine::Side::Buy, 59_500, 2, 922));
    a.flush().await.expect("flush");
    // The first report of that input only; the rest stay unread.
    let first = report_for(&mut a, r).await;
    let (held, last) = (a.coverage().clone(), a.last_report_seq());
    assert_eq!(held.newest(first.partition.into()), first.engine_seq);
    a.abort();
    nodes.kill(old);
    assert_ne!(leader_id(&nodes, &cfg).await, old);
    let mut back = cfg.clone();
    back.resume_after = last;
    back.coverage = held;
    let mut a = connect_any(&nodes.addrs(), &back)
        .await
        .expect("the new leader");
    assert!(a.reports_lost());
    let got = reports_after_login(&mut a, Duration::from_millis(500)).await;
    let of_input: Vec<_> = got
        .iter()
        .filter(|e| e.engine_seq == first.engine_seq)
        .map(|e| (e.exec_type, e.order_id, e.client_order_id))
        .collect();
    assert_eq!(of_input.len(), 2, "the two unread reports: {got:#?}");
    assert!(
        !of_input.contains(&(first.exec_type, first.order_id, first.client_order_id)),
        "the report read before the cut came again: {got:#?}"
    );
    assert!(
        of_input.iter().all(|&(t, ..)| t == exec_type::TRADE),
        "{got:#?}"
    );
}

/// Stops the leader (SIGSTOP) until another node leads, then resumes it
/// and waits until it knows it no longer leads (right after the resume it
/// may still take a login, then close it `not_leader`); the new leader's id.
async fn depose(nodes: &mut Nodes, cfg: &ClientConfig, leader: u64) -> u64 {
    signal(&nodes.children[&leader], "STOP");
    let stopped = nodes.children.remove(&leader).expect("child");
    let next = leader_id(nodes, cfg).await;
    nodes.children.insert(leader, stopped);
    signal(&nodes.children[&leader], "CONT");
    assert_ne!(next, leader);
    let mut probe = cfg.clone();
    probe.addr = nodes.plans[leader as usize - 1].client;
    probe.session_id ^= 0x5A5A;
    probe.connect_timeout = Duration::from_millis(500);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(&probe).await {
            Err(gateway::client::ClientError::LoginRejected(code))
                if code == gateway::wire::login_reject::NOT_LEADER =>
            {
                return next
            }
            Ok(c) => c.disconnect().await,
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "node {leader} still leads 30 s after"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every report a client reads within `wait`, after `recover_reports`.
async fn reports_after_login(
    c: &mut Client,
    wait: Duration,
) -> Vec<gateway::wire::ExecutionReport> {
    c.recover_reports().await.expect("recover");
    let mut v = Vec::new();
    while let Ok(Some(reply)) = c.next_timeout(wait).await {
        if let Reply::Report(e) = reply {
            v.push(e);
        }
    }
    v
}

/// A node that stops leading forgets its sessions: when it leads again
/// (here within the 60 s resume window) and the client comes back from
/// another leader, the login does not resume in the node's old report
/// numbering, which would send again, under new numbers, reports the
/// client already had from the other leader (and claim nothing was lost).
#[tokio::test(flavor = "current_thread")]
async fn a_node_leading_again_does_not_resume_a_session_in_its_old_numbering() {
    let root = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cfg) = start(root.path());
    let first = leader_id(&nodes, &cfg).await;
    let mut c = connect_any(&nodes.addrs(), &cfg).await.expect("a leader");
    add_instrument(&mut c).await;
    let mut seen = std::collections::BTreeSet::new();
    let key =
        |e: &gateway::wire::ExecutionReport| (e.partition, e.engine_seq, e.order_id, e.exec_type);
    let r = c.order(limit(1, BTC, engine::Side::Buy, 59_500, 1, 911));
    c.flush().await.expect("flush");
    seen.insert(key(&report_for(&mut c, r).await));
    let first_held = c.coverage().clone();
    c.abort();
    let mut other = depose(&mut nodes, &cfg, first).await;
    // On the next leader: an order whose report the first node's session
    // also gets (same owner) while it follows.
    let mut back = cfg.clone();
    back.resume_after = 1;
    back.coverage = first_held;
    let mut c = connect_any(&nodes.addrs(), &back).await.expect("a leader");
    // (Nothing to recover: the client holds its one report.)
    let r = c.order(limit(1, BTC, engine::Side::Buy, 59_400, 1, 912));
    c.flush().await.expect("flush");
    assert!(seen.insert(key(&report_for(&mut c, r).await)));
    let (last, held) = (c.last_report_seq(), c.coverage().clone());
    c.disconnect().await;
    // Depose leaders until the first node leads again (each round it is
    // one of the two candidates).
    for _ in 0..12 {
        if other == first {
            break;
        }
        other = depose(&mut nodes, &cfg, other).await;
    }
    assert_eq!(other, first, "the first node never led again");
    let mut again = cfg.clone();
    again.resume_after = last;
    again.coverage = held;
    let mut c = connect_any(&nodes.addrs(), &again)
        .await
        .expect("the first node");
    let lost = c.reports_lost();
    assert!(lost, "a login here cannot know what the other leader sent");
    let got = reports_after_login(&mut c, Duration::from_millis(500)).await;
    let dup: Vec<_> = got.iter().filter(|e| seen.contains(&key(e))).collect();
    assert!(
        dup.is_empty(),
        "reports the client already had came again (reports_lost {lost}): {dup:#?}"
    );
}

/// A small ledger (1,024 transfers of memory, runs of 128): every history
/// run is cut, shipped and installed many times over; a snapshot every 64
/// log entries with no log kept behind it, so every node merges its runs
/// (fanout 4) and a node that catches up is sent a snapshot and fetches
/// merged files.
fn small_ledger(toml: String) -> String {
    let toml = toml.replace("transfers_max = 65_536", "transfers_max = 1_024");
    assert!(toml.contains("transfers_max = 1_024"), "{toml}");
    let toml = toml.replace(
        "[history]\n",
        "[history]\nrun_records = 128\ncompact_fanout = 4\n",
    );
    let cluster = "[cluster]\nsnapshot_every_entries = 64\nlog_kept_after_snapshot_entries = 0\n";
    toml.replace("[cluster]\n", cluster)
}

/// Three nodes with `small_ledger`, accounts 901 and 902 open.
async fn ledger_cluster(root: &std::path::Path) -> (Nodes, ClientConfig) {
    let (nodes, cfg) = start_edited(root, small_ledger);
    let mut c = connect_any(&nodes.addrs(), &cfg).await.expect("a leader");
    support::ledger::open_accounts(&mut c).await;
    c.disconnect().await;
    (nodes, cfg)
}

/// Waits until every running node holds the same history runs under the
/// same checksums as node `a` (whichever files hold them: nodes merge on
/// their own), at least `min` of them.
async fn same_runs_everywhere(nodes: &Nodes, a: u64, min: usize, what: &str) {
    let runs = |id: u64| {
        let dir = nodes.plans[id as usize - 1].dir.join("p0/history");
        support::history::held(&dir).map(|h| h.0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let want = runs(a);
        let differ: Vec<u64> = nodes
            .children
            .keys()
            .copied()
            .filter(|&id| want.is_none() || runs(id) != want)
            .collect();
        let len = want.as_ref().map_or(0, |w| w.len());
        if differ.is_empty() && len >= min {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: nodes {differ:?} hold other runs than node {a} ({len} runs)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Transfers through `cfg`'s leader; every result must be `code`.
async fn transfers_all(nodes: &Nodes, cfg: &ClientConfig, ids: std::ops::Range<u128>, code: u16) {
    let mut c = connect_any(&nodes.addrs(), cfg).await.expect("a leader");
    let got = support::ledger::transfers(&mut c, ids.clone()).await;
    assert!(got.iter().all(|&x| x == code), "transfers {ids:?}: {got:?}");
    c.disconnect().await;
}

/// Three nodes with 1,024 transfers of memory each take 3,000 transfers:
/// the leader is SIGKILLed halfway and restarts onto its data, then a
/// follower is removed, cleared and added back (it catches up from the
/// leader and fetches every history file). Every node ends with the same
/// runs under the same checksums, and every id is refused `exists` as old.
#[tokio::test(flavor = "current_thread")]
async fn transfers_past_memory_survive_a_killed_leader_and_a_rebuilt_follower() {
    let root = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cfg) = ledger_cluster(root.path()).await;
    transfers_all(&nodes, &cfg, 1..1501, 0).await;
    let leader = leader_id(&nodes, &cfg).await;
    nodes.kill(leader);
    transfers_all(&nodes, &cfg, 1501..3001, 0).await;
    nodes.spawn(leader);
    let now = leader_id(&nodes, &cfg).await;
    same_runs_everywhere(&nodes, now, 10, "the killed leader back").await;
    // A follower other than node 1 (an empty node 1 would start a cluster).
    let f = (2..=3).find(|&id| id != now).expect("a follower");
    nodes.kill(f);
    admin(root.path(), &["remove-node", "--node-id", &f.to_string()]);
    let (fdir, fraft) = {
        let p = &nodes.plans[f as usize - 1];
        (p.dir.clone(), p.raft.to_string())
    };
    std::fs::remove_dir_all(fdir.join("p0")).expect("clear");
    nodes.spawn(f);
    let id = f.to_string();
    admin(
        root.path(),
        &["add-node", "--node-id", &id, "--raft-addr", &fraft],
    );
    same_runs_everywhere(&nodes, now, 10, "the rebuilt follower").await;
    let exists = engine::event::LedgerError::Exists.code();
    transfers_all(&nodes, &cfg, 1..3001, exists).await;
    // Every node merged runs (or took a peer's merged files).
    for id in 1..=3u64 {
        let dir = nodes.plans[id as usize - 1].dir.join("p0/history");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let held = support::history::held(&dir);
            if held
                .as_ref()
                .is_some_and(|(runs, files)| *files < runs.len())
            {
                break;
            }
            assert!(Instant::now() < deadline, "node {id}: {held:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A member configured without an on-disk history (`[history] run_records
/// = 0`, refused nowhere: a single node may run so) stops at the first
/// history install the log carries, naming the setting, instead of
/// answering from memory what the others answer from their files; the
/// other two go on taking transfers.
#[tokio::test(flavor = "current_thread")]
async fn a_member_without_history_stops_at_the_first_install() {
    let root = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cfg) = ledger_cluster(root.path()).await;
    // Node 3 (never the first leader: node 1 starts the cluster) without history.
    let leader = leader_id(&nodes, &cfg).await;
    let off = (1..=3).rev().find(|&id| id != leader).expect("a follower");
    nodes.kill(off);
    let path = nodes.plans[off as usize - 1].config_path();
    let toml = std::fs::read_to_string(&path).expect("config");
    let edited = toml.replace("run_records = 128", "run_records = 0");
    assert_ne!(toml, edited, "{toml}");
    std::fs::write(&path, edited).expect("config");
    nodes.spawn(off);
    transfers_all(&nodes, &cfg, 1..401, 0).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let child = nodes.children.get_mut(&off).expect("spawned");
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let dir = &nodes.plans[off as usize - 1].dir;
            let log = std::fs::read_to_string(dir.join("test-serve.log")).unwrap_or_default();
            panic!("node {off} without history still runs after the installs: {log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    nodes.children.remove(&off);
    assert!(!status.success(), "{status:?}");
    let log = std::fs::read_to_string(nodes.plans[off as usize - 1].dir.join("test-serve.log"))
        .expect("log");
    assert!(log.contains("run_records = 0"), "{log}");
    transfers_all(&nodes, &cfg, 401..801, 0).await;
}
