//! QUIC benchmark, all on loopback in one process:
//!
//! 1. the floor: a raw quinn 64-byte ping-pong on one stream, both runtimes
//!    busy-polling (same TLS, ALPN, socket buffers and windows as Bourse);
//! 2. order → ack round trip through the whole system (client library →
//!    QUIC → session → engine ring → engine → durable release → session →
//!    QUIC → client), the gateway pinned and busy-polling; p50/p99 and their
//!    ratios to the floor measured beside them;
//! 3. one-way pipelined order throughput into the engine from 1 and 4
//!    connections (orders acknowledged per second);
//! 4. the report window's cost (`REPLAY_REPORTS`' per-partition event
//!    window): pipelined orders with and without it, alternating.
//!
//! Run: `cargo run --release -p bourse --example quic_bench [-- --quick]`
//! (`BENCH_ROUNDS`, `BENCH_ORDERS` override the counts). Orders are IOC
//! against an empty book (each is accepted, then cancels its remainder), so
//! the book stays empty and every round trip does the same work.

use gateway::client::{limit, reject_name, Client, ClientConfig, Reply};
use gateway::identity::load_client_identity;
use gateway::net;
use gateway::server::{self, ServerConfig};
use gateway::wire::{exec_type, REPORT_OWN_REQUEST};
use hdrhistogram::Histogram;
use journal::Durability;
use std::collections::BTreeMap;
use std::time::Instant;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Keeps a current-thread runtime from parking: it polls its I/O driver in a loop.
fn spin_forever() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        loop {
            tokio::task::yield_now().await;
        }
    })
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .event_interval(1)
        .build()
        .expect("runtime")
}

fn pin_last_core() {
    if let Some(c) = core_affinity::get_core_ids().and_then(|c| c.last().copied()) {
        core_affinity::set_for_current(c);
    }
}

/// Raw quinn 64-byte ping-pong, busy-polling; returns the round-trip histogram (ns).
fn raw_ping_pong(dir: &std::path::Path, rounds: u64) -> Histogram<u64> {
    bourse::bench::histogram_of(
        &net::pingpong_floor(
            dir,
            net::PingPong {
                rounds,
                bytes: 64,
                busy_poll: true,
            },
        )
        .expect("ping-pong floor"),
    )
}

/// Placement: with at least 4 cores every party spins on its own core; on
/// fewer, the engine thread yields its core and the client parks, so that
/// three parties can share two cores (override: `BENCH_ENGINE_IDLE`,
/// `BENCH_CLIENT_SPIN`, `BENCH_BUSY_POLL`).
fn engine_idle() -> runtime::IdleStrategy {
    let default = if cores() >= 4 { "spin" } else { "yield" };
    std::env::var("BENCH_ENGINE_IDLE")
        .unwrap_or_else(|_| default.into())
        .parse()
        .expect("BENCH_ENGINE_IDLE: spin, yield or park")
}

fn client_spins() -> bool {
    env("BENCH_CLIENT_SPIN", (cores() >= 4) as u64) != 0
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn start_server(
    dir: &std::path::Path,
    durability: Durability,
    window: usize,
) -> server::ServerHandle {
    let mut cfg = ServerConfig::new(dir);
    cfg.report_window_events = window;
    // The demo instruments, accounts and operator grant.
    cfg.demo = true;
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    // Instruments 1 and 2 (BTC-USD, ETH-USD) come from the demo set.
    cfg.demo = true;
    cfg.pipeline.durability = durability;
    cfg.pipeline.runtime.idle = engine_idle();
    cfg.busy_poll = env("BENCH_BUSY_POLL", (cores() >= 4) as u64) != 0;
    cfg.session.throttle_per_s = 100_000_000;
    cfg.session.throttle_burst = 10_000_000;
    cfg.session.max_in_flight = 1 << 16;
    cfg.session.max_open_orders = 1 << 20;
    cfg.session.replay_reports_max = 1 << 18;
    server::start(cfg).expect("server")
}

async fn connect(addr: std::net::SocketAddr, dir: &std::path::Path, sid: u64) -> Client {
    let id = load_client_identity(dir).unwrap();
    let mut c = ClientConfig::new(addr, id.cert_der, id.operator_token.unwrap());
    c.session_id = sid;
    Client::connect(&c).await.expect("connect")
}

/// Order → ack (NEW report) round trips, one at a time.
fn order_ack(durability: Durability, rounds: u64) -> Histogram<u64> {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_server(dir.path(), durability, WINDOW);
    let addr = srv.addr();
    let rt = client_runtime();
    let h = rt.block_on(async {
        pin_last_core();
        let _spin = client_spins().then(spin_forever);
        let mut c = connect(addr, dir.path(), 1).await;
        let mut h = Histogram::<u64>::new(3).unwrap();
        for i in 0..rounds + rounds / 10 {
            let mut m = limit(1, 1, engine::Side::Buy, 60_000, 1, i + 1);
            m.tif = 1; // IOC: accepted, then the remainder cancels; the book stays empty.
            let t0 = Instant::now();
            let req = c.order(m);
            c.flush().await.unwrap();
            loop {
                match c.next().await.unwrap() {
                    Some(Reply::Report(r)) if r.request == req && r.exec_type == exec_type::NEW => {
                        break
                    }
                    Some(_) => {}
                    None => panic!("stream ended"),
                }
            }
            if i >= rounds / 10 {
                h.record(t0.elapsed().as_nanos() as u64).unwrap();
            }
        }
        c.close().await;
        h
    });
    drop(srv);
    h
}

/// Pipelined one-way throughput: `conns` connections each send `per_conn`
/// IOC orders in coalesced batches, keeping at most `window` unacknowledged
/// (more than the QUIC stream windows hold: `Client::flush` reads replies
/// while its write waits); returns orders acknowledged per second (all
/// connections together) and the rejections by reason.
fn throughput(
    durability: Durability,
    conns: usize,
    per_conn: u64,
    window: usize,
) -> (f64, BTreeMap<String, u64>) {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_server(dir.path(), durability, window);
    let addr = srv.addr();
    let path = dir.path().to_path_buf();
    let t0 = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|k| {
            let path = path.clone();
            std::thread::spawn(move || {
                let rt = client_runtime();
                rt.block_on(async move {
                    let mut c = connect(addr, &path, 100 + k as u64).await;
                    // BTC-USD or ETH-USD at its reference price (inside the
                    // demo's price band: every order is accepted).
                    let spec = gateway::demo::instruments()[k % 2];
                    let price = spec.reference_price.0;
                    const BATCH: u64 = 256;
                    let window: u64 = 32_768;
                    let (mut sent, mut acked) = (0u64, 0u64);
                    let mut rejected = BTreeMap::<String, u64>::new();
                    let mut coid = (k as u64) << 40 | 1;
                    while acked < per_conn {
                        while sent < per_conn && sent - acked < window {
                            for _ in 0..BATCH.min(per_conn - sent) {
                                let mut m = limit(1, spec.id.0, engine::Side::Buy, price, 1, coid);
                                m.tif = 1;
                                coid += 1;
                                c.order(m);
                                sent += 1;
                            }
                            c.flush().await.unwrap();
                        }
                        // The connections share owner 1, so each also hears the
                        // others' orders: only its own requests' reports count.
                        match c.next().await.unwrap() {
                            Some(Reply::Report(r)) if r.flags & REPORT_OWN_REQUEST == 0 => {}
                            Some(Reply::Report(r)) if r.exec_type == exec_type::NEW => acked += 1,
                            Some(Reply::Report(r)) if r.exec_type == exec_type::REJECTED => {
                                acked += 1;
                                *rejected.entry(reject_name(r.reject_code)).or_default() += 1;
                            }
                            Some(_) => {}
                            None => panic!(
                                "stream ended: {:?} ({acked} of {per_conn} acknowledged)",
                                c.connection().close_reason()
                            ),
                        }
                    }
                    c.close().await;
                    rejected
                })
            })
        })
        .collect();
    let mut rejected = BTreeMap::<String, u64>::new();
    for t in threads {
        for (k, n) in t.join().unwrap() {
            *rejected.entry(k).or_default() += n;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    drop(srv);
    ((conns as u64 * per_conn) as f64 / secs, rejected)
}

/// The server's default report window (`[session] report_window_events`).
const WINDOW: usize = 65_536;

/// What the report window costs the gateway: pipelined orders (durability
/// none, so the gateway's thread is the bottleneck) with and without it,
/// alternating, median of 3 each.
fn window_cost(orders: u64) {
    let mut on = Vec::new();
    let mut off = Vec::new();
    for _ in 0..3 {
        on.push(throughput(Durability::None, 1, orders, WINDOW).0);
        off.push(throughput(Durability::None, 1, orders, 0).0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (on, off) = (median(&mut on), median(&mut off));
    println!(
        "pipelined orders, none, 1 conn, report window {WINDOW} vs off: {on:>10.0} vs {off:>10.0} orders/s (median of 3) | ratio {:.3}",
        on / off
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = env("BENCH_ROUNDS", if quick { 2_000 } else { 20_000 });
    let orders = env("BENCH_ORDERS", if quick { 50_000 } else { 400_000 });
    println!(
        "quic_bench: {} cores | {rounds} round trips, {orders} orders per throughput run | gateway busy-poll {} | engine idle {:?} | client spins {}",
        cores(),
        env("BENCH_BUSY_POLL", (cores() >= 4) as u64) != 0,
        engine_idle(),
        client_spins()
    );
    let dir = tempfile::tempdir().unwrap();
    let ping = raw_ping_pong(dir.path(), rounds);
    println!(
        "raw quinn 64 B ping-pong (busy-polling):   p50 {:7.1} µs  p99 {:7.1} µs",
        us(&ping, 0.5),
        us(&ping, 0.99)
    );
    for d in [Durability::None, Durability::Async, Durability::Durable] {
        let h = order_ack(d, rounds);
        println!(
            "order → ack, durability {:<8}            p50 {:7.1} µs  p99 {:7.1} µs  | ratio to ping-pong p50 {:.2}× p99 {:.2}×",
            d.to_string(),
            us(&h, 0.5),
            us(&h, 0.99),
            us(&h, 0.5) / us(&ping, 0.5),
            us(&h, 0.99) / us(&ping, 0.99)
        );
    }
    for d in [Durability::None, Durability::Durable] {
        for conns in [1usize, 4] {
            let per = (orders / conns as u64).max(1);
            let (rate, rejected) = throughput(d, conns, per, WINDOW);
            println!(
                "pipelined orders, durability {:<8} {} conn(s): {:>10.0} orders/s acknowledged{}",
                d.to_string(),
                conns,
                rate,
                if rejected.is_empty() {
                    String::new()
                } else {
                    let why: Vec<String> =
                        rejected.iter().map(|(k, n)| format!("{n} {k}")).collect();
                    format!(" (rejected: {})", why.join(", "))
                }
            );
        }
    }
    window_cost(orders);
}
