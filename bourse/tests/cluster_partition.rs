//! A network partition, with real processes: three `bourse serve` nodes,
//! each in a network namespace of its own, joined by two bridges — one
//! their peers talk Raft over, one clients reach them on — all inside a
//! user and network namespace the test makes for itself (`unshare -rn`:
//! no privilege, and no packet leaves it). The leader's Raft link is cut,
//! not the node: it keeps running, and its client still reaches it.
//!
//! Checked: the cut-off leader acknowledges nothing it cannot commit (an
//! order sent to it gets no report, and never executes); within its
//! quorum lease it stops serving (ends its sessions, refuses logins), so
//! its clients move on (the client resends the unanswered order to the new
//! leader, where it executes once); the other two elect a leader and take
//! orders; once the link is back, the old leader follows the new term,
//! applies what the others did, and every replica's journal holds the same
//! records at every index. Under load, leaders cut off at seeded moments
//! lose no acknowledged order. A follower cut off and let back does not
//! depose the leader (pre-vote).
//!
//! Needs user namespaces, `ip` (iproute2), `unshare` and `nsenter`. Where
//! the machine lacks one, the test says so and passes without running.

mod support;

use bourse::metrics::{http_get, parse_exposition};
use gateway::client::{connect_any, limit, Client, ClientConfig, Reply};
use gateway::identity::load_client_identity;
use gateway::wire::exec_type;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::cluster::{add_instrument, open_coids, place, BTC};
use support::journal_entries;

/// Set in the re-run of a test inside its namespace.
const INSIDE: &str = "CLUSTER_PARTITION_INSIDE";

#[test]
fn a_leader_cut_off_from_its_peers_acknowledges_nothing_and_the_majority_goes_on() {
    in_namespace(
        "a_leader_cut_off_from_its_peers_acknowledges_nothing_and_the_majority_goes_on",
        cut_leader,
    );
}

#[test]
fn a_follower_cut_off_and_back_does_not_depose_the_leader() {
    in_namespace(
        "a_follower_cut_off_and_back_does_not_depose_the_leader",
        cut_follower,
    );
}

#[test]
fn leaders_cut_off_under_load_lose_no_acknowledged_order() {
    in_namespace(
        "leaders_cut_off_under_load_lose_no_acknowledged_order",
        cut_leaders_under_load,
    );
}

/// Runs `body` in a user and network namespace of its own: this test
/// binary again, under `unshare -rn`, with only `test` selected.
fn in_namespace<F: std::future::Future<Output = ()>>(test: &str, body: fn() -> F) {
    if std::env::var_os(INSIDE).is_some() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        return rt.block_on(body());
    }
    let probe = Command::new("unshare")
        .args(["-rn", "ip", "link", "add", "probe0", "type", "bridge"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!(
            "skipped: this machine cannot make an unprivileged network namespace \
             with a bridge (unshare -rn, ip link add … type bridge)"
        );
        return;
    }
    let out = Command::new("unshare")
        .arg("-rn")
        .arg("--")
        .arg(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .expect("run the test in its namespace");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    // What it printed (the times it measured), shown with `--nocapture`.
    eprintln!("{}", text(&out.stderr));
    assert!(
        out.status.success(),
        "inside the namespace:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Runs `ip` with these arguments (in this namespace).
fn ip(args: &str) {
    ip_in(None, args);
}

/// Runs `ip` in the network namespace of process `pid`, or here.
fn ip_in(pid: Option<u32>, args: &str) {
    let mut c = match pid {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.args(["-t", &pid.to_string(), "-n", "--", "ip"]);
            c
        }
        None => Command::new("ip"),
    };
    let out = c.args(args.split(' ')).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A node: the process holding its network namespace, and the server.
struct Node {
    id: u64,
    holder: Child,
    serve: Option<Child>,
    plan: bourse::cluster_cli::NodePlan,
}

impl Drop for Node {
    fn drop(&mut self) {
        for c in self.serve.iter_mut().chain([&mut self.holder]) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Client addresses on 10.1.0.0/24, Raft on 10.2.0.0/24 (node `i` is
/// `.i`; this test is `10.1.0.254`).
fn addr(net: u8, id: u64, port: u16) -> SocketAddr {
    SocketAddr::from(([10, net, 0, id as u8], port))
}

/// Bridges, then three nodes in namespaces of their own.
fn start(root: &std::path::Path) -> (Vec<Node>, ClientConfig) {
    ip("link set lo up");
    ip("link add brc type bridge");
    ip("addr add 10.1.0.254/24 dev brc");
    ip("link set brc up");
    ip("link add brr type bridge");
    ip("link set brr up");
    let plans: Vec<_> = bourse::cluster_cli::prepare(root, 3)
        .expect("cluster layout")
        .into_iter()
        .map(|p| bourse::cluster_cli::NodePlan {
            client: addr(1, p.id, 7000),
            raft: addr(2, p.id, 7100),
            metrics: addr(1, p.id, 9100),
            ..p
        })
        .collect();
    let mut nodes = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let toml = bourse::cluster_cli::node_toml(root, &plans, i);
        std::fs::write(p.config_path(), toml).expect("node config");
        nodes.push(node(p.clone()));
    }
    let ident = load_client_identity(root).expect("identity");
    let cfg = ClientConfig::new(
        plans[0].client,
        ident.cert_der,
        ident.operator_token.expect("token"),
    );
    (nodes, cfg)
}

/// A namespace for the node, linked to both bridges, and its server.
fn node(plan: bourse::cluster_cli::NodePlan) -> Node {
    let id = plan.id;
    let holder = Command::new("unshare")
        .args(["-n", "sleep", "3600"])
        .spawn()
        .expect("namespace holder");
    let pid = holder.id();
    let ours = std::fs::read_link("/proc/self/ns/net").expect("our namespace");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() == Some(ours.clone()) {
        assert!(Instant::now() < deadline, "node {id}: no namespace");
        std::thread::sleep(Duration::from_millis(10));
    }
    ip_in(Some(pid), "link set lo up");
    for (bridge, net, side) in [("brc", 1, "c"), ("brr", 2, "r")] {
        ip(&format!(
            "link add {side}{id} type veth peer name {side}n{id}"
        ));
        ip(&format!("link set {side}n{id} netns {pid}"));
        ip(&format!("link set {side}{id} master {bridge} up"));
        ip_in(
            Some(pid),
            &format!("addr add 10.{net}.0.{id}/24 dev {side}n{id}"),
        );
        ip_in(Some(pid), &format!("link set {side}n{id} up"));
    }
    let log = std::fs::File::create(plan.dir.join("test-serve.log")).expect("log file");
    let serve = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "--"])
        .arg(env!("CARGO_BIN_EXE_bourse"))
        .arg("serve")
        .arg("--config")
        .arg(plan.config_path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn bourse serve");
    Node {
        id,
        holder,
        serve: Some(serve),
        plan,
    }
}

/// A session on whichever of `addrs` leads, within 30 s.
async fn leader(addrs: &[SocketAddr], cfg: &ClientConfig) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match connect_any(addrs, cfg).await {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < deadline, "no leader: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Places a resting buy; its accept.
async fn accepted(c: &mut Client, coid: u64) -> gateway::wire::ExecutionReport {
    let r = c.order(limit(1, BTC, engine::Side::Buy, 50_000 + coid, 1, coid));
    c.flush().await.expect("flush");
    loop {
        match c.next_timeout(Duration::from_secs(10)).await {
            Ok(Some(Reply::Report(e))) if e.request == r => {
                assert_eq!(e.exec_type, exec_type::NEW, "{e:?}");
                return e;
            }
            Ok(Some(_)) => {}
            other => panic!("order {coid}: {other:?}"),
        }
    }
}

async fn cut_leader() {
    let root = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cfg) = start(root.path());
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.plan.client).collect();
    let mut c = leader(&addrs, &cfg).await;
    let old = nodes
        .iter()
        .find(|n| n.plan.client == c.server())
        .expect("a member")
        .id;
    add_instrument(&mut c).await;
    accepted(&mut c, 1).await;
    // Cut the leader's Raft link; its client link stays.
    ip(&format!("link set r{old} down"));
    let cut_at = Instant::now();
    let cut = c.order(limit(1, BTC, engine::Side::Buy, 50_000 + 2, 1, 2));
    c.flush().await.expect("flush");
    // It took the order into its log and cannot commit it.
    let stale = nodes.iter().find(|n| n.id == old).expect("the old leader");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = gauge(stale, "bourse_raft_last_log_index");
        let committed = gauge(stale, "bourse_raft_commit_index");
        if let (Some(l), Some(c)) = (last, committed) {
            if l > c {
                break;
            }
        }
        let at = (last, committed);
        assert!(
            Instant::now() < deadline,
            "never appended: (last, commit) {at:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The majority side elects a leader and takes an order.
    let others: Vec<SocketAddr> = nodes
        .iter()
        .filter(|n| n.id != old)
        .map(|n| n.plan.client)
        .collect();
    let mut other_cfg = cfg.clone();
    other_cfg.session_id ^= 0xFFFF;
    let mut m = leader(&others, &other_cfg).await;
    accepted(&mut m, 3).await;
    // The cut-off leader stops serving once no majority answered it for
    // its quorum lease: it ends its session, with nothing for the order it
    // took, and refuses logins, so clients move to the new leader.
    loop {
        match tokio::time::timeout(Duration::from_millis(200), c.next()).await {
            Ok(Ok(Some(Reply::Report(e)))) => {
                assert_ne!(e.request, cut, "acknowledged while cut off: {e:?}")
            }
            Ok(Ok(Some(_))) | Err(_) => {}
            // The stream or the connection ended.
            Ok(Ok(None) | Err(_)) => break,
        }
        let waited = cut_at.elapsed();
        assert!(
            waited < Duration::from_secs(5),
            "still served after {waited:?}"
        );
    }
    eprintln!(
        "the cut-off leader ended its session {:?} after the cut",
        cut_at.elapsed()
    );
    let stale_cfg = ClientConfig {
        addr: stale.plan.client,
        ..other_cfg.clone()
    };
    assert!(
        Client::connect(&stale_cfg).await.is_err(),
        "a cut-off node took a login"
    );
    // The client comes back through its server list: the new leader takes
    // the session, and the order it got no answer for, resent under its
    // number, executes there once.
    let mut back = cfg.clone();
    back.resume_after = c.last_report_seq();
    back.coverage = c.coverage().clone();
    let mut c = leader(&addrs, &back).await;
    assert_ne!(c.server(), stale.plan.client, "the cut-off node took it");
    c.resend_from(cut);
    assert_eq!(accepted(&mut c, 2).await.request, cut);
    eprintln!(
        "the resent order was accepted by the new leader {:?} after the cut",
        cut_at.elapsed()
    );
    c.disconnect().await;
    ip(&format!("link set r{old} up"));
    let majority = nodes
        .iter()
        .find(|n| n.plan.client == m.server())
        .expect("a member");
    let applied = wait_converged(&nodes, majority).await;
    // The order the cut-off leader took is on the book once: resent.
    assert_eq!(open_coids(&mut m).await, vec![1, 2, 3]);
    m.disconnect().await;
    journals_agree(&mut nodes, applied);
}

/// A Raft gauge of partition 0 on `n` (`None` while it does not answer).
fn gauge(n: &Node, name: &str) -> Option<f64> {
    let (status, body) = http_get(n.plan.metrics, "/metrics").ok()?;
    let samples = parse_exposition(&body).ok().filter(|_| status == 200)?;
    samples
        .iter()
        .find(|s| s.name == name && s.label("partition") == Some("0"))
        .map(|s| s.value)
}

/// The term of `n` once it publishes that it serves (the groups' status
/// reaches the metrics every 500 ms: an older one may name the term before
/// it led), within 10 s.
async fn serving_term(n: &Node) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if gauge(n, "bourse_raft_serving") == Some(1.0) {
            return gauge_now(n, "bourse_raft_term").await;
        }
        assert!(Instant::now() < deadline, "node {} does not serve", n.id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `gauge`, waiting up to 10 s for the node to publish it (its groups'
/// status is published a moment after they start).
async fn gauge_now(n: &Node, name: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = gauge(n, name) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "node {} publishes no {name}",
            n.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Within 30 s, every node is in one term and has applied the same index,
/// at least what the majority's leader had applied when it was asked; that
/// index.
async fn wait_converged(nodes: &[Node], majority: &Node) -> u64 {
    let target = gauge_now(majority, "bourse_raft_applied_index").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let at: Vec<_> = nodes
            .iter()
            .map(|n| {
                (
                    gauge(n, "bourse_raft_term"),
                    gauge(n, "bourse_raft_applied_index"),
                )
            })
            .collect();
        let same = at.iter().all(|&x| x == at[0]);
        if let (true, Some(applied)) = (same, at[0].1.filter(|&a| a >= target)) {
            return applied as u64;
        }
        assert!(
            Instant::now() < deadline,
            "not converged: (term, applied) {at:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops every server, then compares their journals: each holds every
/// index through `applied`, and at every index two of them hold, they hold
/// the same record (a follower stopped a moment early may lack the newest).
fn journals_agree(nodes: &mut [Node], applied: u64) {
    for n in nodes.iter_mut() {
        if let Some(mut c) = n.serve.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    let logs: Vec<_> = nodes.iter().map(|n| journal_entries(&n.plan.dir)).collect();
    for (n, l) in nodes.iter().zip(&logs) {
        assert!(
            (1..=applied).all(|i| l.contains_key(&i)),
            "node {} lacks entries through {applied}: {l:?}",
            n.id
        );
        for (i, rec) in l {
            let other = logs[0].get(i).unwrap_or(rec);
            assert_eq!(rec, other, "node {} and node 1 differ at index {i}", n.id);
        }
    }
}

/// A follower cut off from its peers for several election timeouts (it
/// may stand for election over and over, raising its term), then let back:
/// the leader leads on, in its term, and the follower catches up.
async fn cut_follower() {
    let root = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cfg) = start(root.path());
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.plan.client).collect();
    let mut c = leader(&addrs, &cfg).await;
    add_instrument(&mut c).await;
    accepted(&mut c, 1).await;
    let lead = nodes
        .iter()
        .position(|n| n.plan.client == c.server())
        .expect("a member");
    let term = serving_term(&nodes[lead]).await;
    let cut = nodes[(lead + 1) % 3].id;
    ip(&format!("link set r{cut} down"));
    for coid in 2..=4 {
        accepted(&mut c, coid).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    ip(&format!("link set r{cut} up"));
    let applied = wait_converged(&nodes, &nodes[lead]).await;
    assert_eq!(
        serving_term(&nodes[lead]).await,
        term,
        "the leader was deposed when the follower came back"
    );
    accepted(&mut c, 5).await;
    assert_eq!(open_coids(&mut c).await, vec![1, 2, 3, 4, 5]);
    c.disconnect().await;
    journals_agree(&mut nodes, applied);
}

/// A client places orders one after another through whichever node
/// serves, over seeded rounds: each round cuts the leader's Raft link at a
/// random moment, keeps placing (the client finds the new leader once the
/// cut-off one stops serving), then lets the link back. Every acknowledged
/// order is on the book at the end, and the journals agree.
/// `TEST_CLUSTER_PARTITION_ROUNDS` (default 3), `TEST_CLUSTER_PARTITION_SEED`.
async fn cut_leaders_under_load() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let rounds = env("TEST_CLUSTER_PARTITION_ROUNDS", 3);
    let seed = env("TEST_CLUSTER_PARTITION_SEED", 0x9A27);
    let mut rng = engine::rng::SplitMix64::new(seed);
    let root = tempfile::tempdir().expect("temp dir");
    let (mut nodes, cfg) = start(root.path());
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.plan.client).collect();
    let mut c = leader(&addrs, &cfg).await;
    add_instrument(&mut c).await;
    c.disconnect().await;
    let (mut coid, mut acked) = (0u64, Vec::new());
    let place_for = |ms: u64| Instant::now() + Duration::from_millis(ms);
    for round in 0..rounds {
        let until = place_for(300 + rng.below(1_200));
        while Instant::now() < until {
            place(&addrs, &cfg, &mut coid, until, &mut acked).await;
        }
        let c = leader(&addrs, &cfg).await;
        let cut = nodes
            .iter()
            .find(|n| n.plan.client == c.server())
            .expect("a member");
        c.disconnect().await;
        ip(&format!("link set r{} down", cut.id));
        eprintln!(
            "round {round} (seed {seed}): cut node {} off after {} acknowledged orders",
            cut.id,
            acked.len()
        );
        let until = place_for(3_000);
        while Instant::now() < until {
            place(&addrs, &cfg, &mut coid, until, &mut acked).await;
        }
        ip(&format!("link set r{} up", cut.id));
    }
    assert!(!acked.is_empty(), "seed {seed}: no order was acknowledged");
    let mut c = leader(&addrs, &cfg).await;
    let open = open_coids(&mut c).await;
    let lost: Vec<u64> = acked
        .iter()
        .filter(|a| open.binary_search(a).is_err())
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: acknowledged orders lost: {lost:?}"
    );
    let serving = nodes
        .iter()
        .find(|n| n.plan.client == c.server())
        .expect("a member");
    c.disconnect().await;
    let applied = wait_converged(&nodes, serving).await;
    journals_agree(&mut nodes, applied);
}
