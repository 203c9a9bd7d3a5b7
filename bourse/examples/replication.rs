//! Replication, measured side by side in one run on loopback (issue #15):
//!
//! - the floor: a QUIC round trip (`net::pingpong_floor`) plus one 4 KiB
//!   write + fdatasync on the same disk; and a replicated order's floor on
//!   this one disk: two round trips plus two such writes synced at once
//!   (the leader's and a follower's, which here share the disk);
//! - durable order → acknowledgement latency, one order at a time, through
//!   a single durable node and through the leader of a three-node cluster
//!   (in-process nodes, real QUIC and Raft between them), p50 / p99 and the
//!   ratio;
//! - throughput of durable orders with `WINDOW` in flight, both ways;
//! - failover: the leader stopped, until the first acknowledgement from the
//!   new leader (the stopped node restarted between rounds), p50 / p99;
//!   then the same with three real `bourse serve` processes (the layout of
//!   `bourse cluster local`) and the leader SIGKILLed, when the release
//!   binary is built (`cargo build --release` first).
//!
//! `cargo run --release -p bourse --example replication [-- ORDERS ROUNDS]`
//! (defaults 2,000 orders and 20 failovers).

use bourse::local_cluster::LocalCluster;
use gateway::client::{limit, Client, ClientConfig, Reply};
use gateway::server::{self, ServerConfig};
use std::io::Write;
use std::time::{Duration, Instant};

const BTC: u32 = 1;
const WINDOW: u64 = 64;

fn tune(cfg: &mut ServerConfig) {
    cfg.demo = true;
    // Measure the pipeline, not the session throttle.
    cfg.session.throttle_per_s = 10_000_000;
    cfg.session.throttle_burst = 1_000_000;
    cfg.pipeline.engine = engine::EngineConfig::small();
    cfg.pipeline.prefault = false;
    cfg.pipeline.runtime.pin = false;
    cfg.pipeline.runtime.idle = runtime::IdleStrategy::Park { max_sleep_us: 50 };
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1e3)
}

/// Waits for the report of `request`; its arrival time.
async fn report(c: &mut Client, request: u64) -> Instant {
    loop {
        match c.next_timeout(Duration::from_secs(10)).await {
            Ok(Some(Reply::Report(e))) if e.request == request => return Instant::now(),
            Ok(Some(Reply::Ack(a))) if a.request == request => return Instant::now(),
            Ok(Some(Reply::ProtocolReject(p))) if p.request == request => {
                panic!("request {request} refused: {p:?}")
            }
            Ok(Some(_)) => {}
            other => panic!("no report for request {request}: {other:?}"),
        }
    }
}

/// One order at a time: latency of each, ns.
async fn closed_loop(c: &mut Client, n: u64, coid0: u64) -> Vec<u64> {
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t0 = Instant::now();
        let r = c.order(limit(
            1,
            BTC,
            engine::Side::Buy,
            57_000 + i % 1000,
            1,
            coid0 + i,
        ));
        c.flush().await.expect("flush");
        lat.push(report(c, r).await.duration_since(t0).as_nanos() as u64);
    }
    lat
}

/// `WINDOW` orders in flight for `d`: orders acknowledged per second.
async fn throughput(c: &mut Client, d: Duration, coid0: u64) -> f64 {
    let t0 = Instant::now();
    let (mut sent, mut done) = (0u64, 0u64);
    let mut pending = std::collections::VecDeque::new();
    while t0.elapsed() < d {
        while sent - done < WINDOW {
            // IOC buys below every ask: each is answered (cancelled) and
            // none rests, so the book and the session's limits stay flat.
            let mut o = limit(
                2,
                BTC,
                engine::Side::Buy,
                58_000 + sent % 1_000,
                1,
                coid0 + sent,
            );
            o.tif = 1;
            let r = c.order(o);
            pending.push_back(r);
            sent += 1;
        }
        c.flush().await.expect("flush");
        let r = pending.pop_front().expect("in flight");
        report(c, r).await;
        done += 1;
    }
    done as f64 / t0.elapsed().as_secs_f64()
}

/// The release `bourse` binary beside this example, if built.
fn bourse_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("bourse");
    bin.exists().then_some(bin)
}

/// The node that serves now (the others answer `not_leader`).
async fn serving_node(
    plans: &[bourse::cluster_cli::NodePlan],
    cfg: &ClientConfig,
    live: &[bool],
) -> u64 {
    let addrs: Vec<_> = plans
        .iter()
        .filter(|p| live[p.id as usize - 1])
        .map(|p| p.client)
        .collect();
    loop {
        if let Ok(c) = gateway::client::connect_any(&addrs, cfg).await {
            let server = c.server();
            c.disconnect().await;
            return plans
                .iter()
                .find(|p| p.client == server)
                .expect("a member")
                .id;
        }
        // A refusal can come back at once: do not hammer the servers.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `plan`'s node answers a login `not_leader` (its groups
/// run and know another leader), at most 30 s.
async fn rejoined(plan: &bourse::cluster_cli::NodePlan, cfg: &ClientConfig) {
    let mut c = cfg.clone();
    c.addr = plan.client;
    c.connect_timeout = Duration::from_millis(500);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match Client::connect(&c).await {
            Err(gateway::client::ClientError::LoginRejected(code))
                if code == gateway::wire::login_reject::NOT_LEADER =>
            {
                return
            }
            Ok(c) => return c.disconnect().await,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    eprintln!("node {} did not rejoin within 30 s", plan.id);
}

/// `rounds` SIGKILLs of the leader of three real processes: from the kill
/// to the first acknowledgement through the server list, ns each.
async fn process_failovers(bin: &std::path::Path, root: &std::path::Path, rounds: u64) -> Vec<u64> {
    use std::process::{Command as Proc, Stdio};
    let plans = bourse::cluster_cli::prepare(&root.join("procs"), 3).expect("cluster layout");
    let spawn = |p: &bourse::cluster_cli::NodePlan| {
        Proc::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(p.config_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bourse serve")
    };
    let mut children: Vec<_> = plans.iter().map(spawn).collect();
    let mut live = vec![true; plans.len()];
    let ident = gateway::identity::load_client_identity(&root.join("procs")).expect("identity");
    let cfg = ClientConfig::new(
        plans[0].client,
        ident.cert_der,
        ident.operator_token.expect("token"),
    );
    let addrs: Vec<_> = plans.iter().map(|p| p.client).collect();
    serving_node(&plans, &cfg, &live).await;
    let mut c = gateway::client::connect_any(&addrs, &cfg)
        .await
        .expect("a leader");
    let spec = gateway::demo::instruments()[0];
    let r = c.add_instrument(gateway::wire::add_instrument_msg(0, &spec));
    c.flush().await.expect("flush");
    report(&mut c, r).await;
    c.disconnect().await;
    let mut times = Vec::new();
    for round in 0..rounds {
        let leader = serving_node(&plans, &cfg, &live).await;
        let i = leader as usize - 1;
        let t0 = Instant::now();
        children[i].kill().expect("SIGKILL");
        let _ = children[i].wait();
        live[i] = false;
        let t = loop {
            let Ok(mut c) = gateway::client::connect_any(&addrs, &cfg).await else {
                continue;
            };
            let r = c.order(limit(
                1,
                BTC,
                engine::Side::Buy,
                56_000,
                1,
                9_000_000 + round,
            ));
            if c.flush().await.is_err() {
                continue;
            }
            match c.next_timeout(Duration::from_secs(5)).await {
                Ok(Some(Reply::Report(e))) if e.request == r => {
                    c.disconnect().await;
                    break t0.elapsed();
                }
                _ => continue,
            }
        };
        times.push(t.as_nanos() as u64);
        eprintln!("SIGKILL failover {round}: {:.0} ms", t.as_secs_f64() * 1e3);
        children[i] = spawn(&plans[i]);
        live[i] = true;
        // Before the next kill, the restarted node must be up again (it
        // answers a login `not_leader`), then get a moment to catch up:
        // killing the leader while it still starts would take down two of
        // three at once, and the wait for it would count as failover.
        rejoined(&plans[i], &cfg).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mut ch in children {
        let _ = ch.kill();
        let _ = ch.wait();
    }
    times
}

fn fsync_floor(dir: &std::path::Path, n: usize) -> Vec<u64> {
    let path = dir.join("fsync.probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    let block = vec![7u8; 4096];
    (0..n)
        .map(|_| {
            let t0 = Instant::now();
            f.write_all(&block).expect("write");
            f.sync_data().expect("fdatasync");
            t0.elapsed().as_nanos() as u64
        })
        .collect()
}

/// `k` files on the same disk, each written (4 KiB) and fdatasynced by
/// its own thread at the same moment, `n` times: how long until all `k`
/// are durable. With `k = 2`: what a commit on a majority of three costs
/// when the leader's and a follower's logs share one disk, as this run's
/// nodes do (barrier wake-ups included, so it is a slightly high floor).
fn parallel_fsync_floor(dir: &std::path::Path, n: usize, k: usize) -> Vec<u64> {
    use std::sync::Barrier;
    let (start, done) = (Barrier::new(k + 1), Barrier::new(k + 1));
    std::thread::scope(|s| {
        for i in 0..k {
            let (start, done) = (&start, &done);
            let path = dir.join(format!("fsync.probe.{i}"));
            s.spawn(move || {
                let mut f = std::fs::File::create(&path).expect("probe file");
                let block = vec![7u8; 4096];
                for _ in 0..n {
                    start.wait();
                    f.write_all(&block).expect("write");
                    f.sync_data().expect("fdatasync");
                    done.wait();
                }
            });
        }
        (0..n)
            .map(|_| {
                start.wait();
                let t0 = Instant::now();
                done.wait();
                t0.elapsed().as_nanos() as u64
            })
            .collect()
    })
}

async fn single(root: &std::path::Path, n: u64) -> (Vec<u64>, f64) {
    let mut cfg = ServerConfig::new(root.join("single"));
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    tune(&mut cfg);
    let h = server::start(cfg).expect("single node");
    let id = gateway::identity::load_client_identity(&root.join("single")).expect("identity");
    let cc = ClientConfig::new(h.addr(), id.cert_der, id.operator_token.expect("token"));
    let mut c = Client::connect(&cc).await.expect("connect");
    let lat = closed_loop(&mut c, n, 1).await;
    let tput = throughput(&mut c, Duration::from_secs(5), 1_000_000).await;
    c.disconnect().await;
    h.shutdown();
    (lat, tput)
}

async fn failovers(cluster: &mut LocalCluster, rounds: u64) -> Vec<u64> {
    let mut times = Vec::new();
    for round in 0..rounds {
        let (leader, c) = cluster
            .leader(100 + round, Duration::from_secs(30))
            .await
            .expect("leader");
        c.disconnect().await;
        let t0 = Instant::now();
        let stopping = cluster.stop_in_background(leader);
        let (_, mut c) = cluster
            .leader(1000 + round, Duration::from_secs(30))
            .await
            .expect("new leader");
        let r = c.order(limit(
            1,
            BTC,
            engine::Side::Buy,
            56_000,
            1,
            5_000_000 + round,
        ));
        c.flush().await.expect("flush");
        let t = report(&mut c, r).await.duration_since(t0);
        times.push(t.as_nanos() as u64);
        c.disconnect().await;
        stopping.join().expect("stopped");
        cluster.restart(leader).expect("restart");
        eprintln!("failover {round}: {:.0} ms", t.as_secs_f64() * 1e3);
    }
    times
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(2_000);
    let rounds = args.get(1).copied().unwrap_or(20);
    let root = tempfile::tempdir().expect("temp dir");
    let fsync = fsync_floor(root.path(), 1_000);
    let fsync2 = parallel_fsync_floor(root.path(), 1_000, 2);
    let ident = root.path().join("floor");
    gateway::identity::ensure_server_identity(&ident).expect("identity");
    // It runs its own runtimes: measured before ours starts.
    let rtt =
        gateway::net::pingpong_floor(&ident, gateway::net::PingPong::default()).expect("floor");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(measure(root.path(), n, rounds, rtt, (fsync, fsync2)));
}

async fn measure(
    root: &std::path::Path,
    n: u64,
    rounds: u64,
    mut rtt: Vec<u64>,
    (mut fsync, mut fsync2): (Vec<u64>, Vec<u64>),
) {
    let (mut one, one_tput) = single(root, n).await;
    let mut cluster = LocalCluster::start(&root.join("cluster"), 3, tune).expect("cluster");
    let (_, mut c) = cluster
        .leader(1, Duration::from_secs(30))
        .await
        .expect("leader");
    let mut three = closed_loop(&mut c, n, 10_000_000).await;
    let three_tput = throughput(&mut c, Duration::from_secs(5), 20_000_000).await;
    c.disconnect().await;
    let mut fo = failovers(&mut cluster, rounds).await;
    cluster.shutdown();
    let floor50 = pct(&mut rtt, 0.5) + pct(&mut fsync, 0.5);
    let floor99 = pct(&mut rtt, 0.99) + pct(&mut fsync, 0.99);
    let (o50, o99, t50, t99) = (
        pct(&mut one, 0.5),
        pct(&mut one, 0.99),
        pct(&mut three, 0.5),
        pct(&mut three, 0.99),
    );
    println!("durable order → ack ({n} orders, one at a time)");
    println!(
        "  floor (QUIC rtt + 4 KiB fdatasync)  p50 {}  p99 {}",
        us(floor50),
        us(floor99)
    );
    println!(
        "  single node, durable                p50 {}  p99 {}",
        us(o50),
        us(o99)
    );
    println!(
        "  three replicas                      p50 {}  p99 {}",
        us(t50),
        us(t99)
    );
    // A replicated order's own floor here: two round trips (client to
    // leader, leader to follower) and two fdatasyncs at once on one disk.
    let (r50, r99) = (pct(&mut rtt, 0.5), pct(&mut rtt, 0.99));
    let (m50, m99) = (
        2 * r50 + pct(&mut fsync2, 0.5),
        2 * r99 + pct(&mut fsync2, 0.99),
    );
    println!(
        "  majority floor (2 rtt + 2 parallel fdatasyncs, one disk)  p50 {}  p99 {}  | three replicas / it: p50 {:.2}×",
        us(m50),
        us(m99),
        t50 as f64 / m50 as f64
    );
    println!(
        "  ratio three / single                p50 {:.2}×  p99 {:.2}×   (goal: p50 ≤ 1.5×)",
        t50 as f64 / o50 as f64,
        t99 as f64 / o99 as f64
    );
    println!("throughput, {WINDOW} orders in flight, 5 s");
    println!("  single node, durable  {one_tput:.0} orders/s");
    println!(
        "  three replicas        {three_tput:.0} orders/s  ({:.2}×)",
        three_tput / one_tput
    );
    let mut killed = match bourse_binary() {
        Some(bin) => process_failovers(&bin, root, rounds).await,
        None => {
            println!("(no release `bourse` binary beside this example: `cargo build --release` for the SIGKILL failovers)");
            Vec::new()
        }
    };
    if !killed.is_empty() {
        println!(
            "failover (three processes, leader SIGKILLed → first ack via --server a,b,c, {rounds} rounds): p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
            pct(&mut killed, 0.5) as f64 / 1e6,
            pct(&mut killed, 0.99) as f64 / 1e6,
            *killed.iter().max().expect("rounds") as f64 / 1e6
        );
    }
    if !fo.is_empty() {
        println!(
            "failover (leader stopped → first ack from the new leader, {rounds} rounds): p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms   (goal: p99 ≤ 2 s)",
            pct(&mut fo, 0.5) as f64 / 1e6,
            pct(&mut fo, 0.99) as f64 / 1e6,
            *fo.iter().max().expect("rounds") as f64 / 1e6
        );
    }
}
