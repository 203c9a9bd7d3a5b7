//! Market-data fan-out benchmark: 1 / 10 / 100 L3 subscribers (one QUIC
//! connection each) of an in-process `bourse serve` (durability none) while
//! one trader enters resting orders at a fixed rate; delivery latency is
//! measured from the order's submission to its L3 `add` at each subscriber
//! (order entry, engine, router, feed builder, fan-out). Beside it, a raw
//! quinn fan-out of the same record size at the same rate (one server task
//! writing each record to every subscriber's stream) gives the floor.
//!
//! `cargo run --release -p bourse-gateway --example md_bench [-- RATE SECONDS]`
//! (defaults 2,000 orders/s for 2 s). Numbers on a shared 2-core machine are
//! indicative only: quote the ratio to the raw floor.

use engine::Side;
use feeds::msg::{Body, Channel, L3Update};
use gateway::client::{limit, Client, ClientConfig};
use gateway::identity::load_client_identity;
use gateway::md::{MdClient, MdItem};
use gateway::net::{self, Tuning};
use gateway::server::{self, ServerConfig};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BTC: u32 = 1;
const RECORD: usize = 88;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rate: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("rate {rate}/s for {secs} s; latency in µs");
    println!(
        "{:>5} {:>10} {:>9} {:>9} | {:>9} {:>9}",
        "subs", "delivered", "md p50", "md p99", "raw p50", "raw p99"
    );
    for subs in [1usize, 10, 100] {
        let (n, md) = rt.block_on(bourse(subs, rate, secs));
        let raw = rt.block_on(raw_fanout(subs, rate, secs));
        println!(
            "{subs:>5} {n:>10} {:>9.1} {:>9.1} | {:>9.1} {:>9.1}",
            us(&md, 0.5),
            us(&md, 0.99),
            us(&raw, 0.5),
            us(&raw, 0.99)
        );
    }
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1_000.0
}

async fn bourse(subs: usize, rate: u64, secs: u64) -> (u64, Histogram<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.pipeline.durability = gateway::journal::Durability::None;
    cfg.pipeline.runtime.pin = false;
    cfg.pipeline.runtime.idle = gateway::runtime::IdleStrategy::Yield;
    let handle = server::start(cfg).unwrap();
    let id = load_client_identity(dir.path()).unwrap();
    let token = id.operator_token.clone().unwrap();
    let total = rate * secs;
    let epoch = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::new();
    for _ in 0..subs {
        let mut c = MdClient::connect(handle.addr(), &id.cert_der, &token, &Tuning::default())
            .await
            .unwrap();
        c.subscribe(BTC, Channel::L3).await.unwrap();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).unwrap();
            let mut got = 0u64;
            let _ = tokio::time::timeout(Duration::from_secs(secs + 10), async {
                while got < total {
                    let Ok(item) = c.next().await else { break };
                    if let MdItem::Message(m) = item {
                        if let Body::L3(L3Update::Add { qty, .. }) = m.body {
                            let i = qty.0 as usize - 1;
                            if let Some(t) = sent.get(i) {
                                let now = epoch.elapsed().as_nanos() as u64;
                                let _ =
                                    h.record(now.saturating_sub(t.load(Ordering::Acquire)).max(1));
                                got += 1;
                            }
                        }
                    }
                }
            })
            .await;
            (got, h)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut t = Client::connect(&ClientConfig::new(
        handle.addr(),
        id.cert_der.clone(),
        token,
    ))
    .await
    .unwrap();
    let gap = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let start = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(start + gap * i as u32).await;
        sent[i as usize].store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
        // A unique quantity per order identifies it in the feed.
        t.order(limit(1, BTC, Side::Buy, 50_000, i + 1, i + 1));
        t.flush().await.unwrap();
        while let Ok(Ok(Some(_))) = tokio::time::timeout(Duration::ZERO, t.next()).await {}
    }
    let mut all = Histogram::<u64>::new(3).unwrap();
    let mut n = 0;
    for task in tasks {
        let (g, h) = task.await.unwrap();
        n += g;
        all.add(&h).unwrap();
    }
    drop(handle);
    (n, all)
}

async fn raw_fanout(subs: usize, rate: u64, secs: u64) -> Histogram<u64> {
    let dir = tempfile::tempdir().unwrap();
    let id = gateway::identity::ensure_server_identity(dir.path()).unwrap();
    let tuning = Tuning::default();
    let sc = net::server_config(&id.cert_der, &id.key_der, b"raw", &tuning).unwrap();
    let ep = net::server_endpoint("127.0.0.1:0".parse().unwrap(), sc, &tuning).unwrap();
    let addr = ep.local_addr().unwrap();
    let total = rate * secs;
    let epoch = Instant::now();
    let mut recvs = Vec::new();
    let mut sends = Vec::new();
    for _ in 0..subs {
        let cc = net::client_config(&id.cert_der, b"raw", &tuning).unwrap();
        let cep = net::client_endpoint(addr, cc, &tuning).unwrap();
        let connecting = cep.connect(addr, gateway::identity::SERVER_NAME).unwrap();
        let (server_conn, client_conn) = tokio::join!(
            async { ep.accept().await.unwrap().await.unwrap() },
            connecting
        );
        let client_conn = client_conn.unwrap();
        // The subscriber opens the stream (as in bourse-md/1); the server writes on it.
        let (mut cs, mut r) = client_conn.open_bi().await.unwrap();
        cs.write_all(&[0]).await.unwrap();
        let (send, _srecv) = server_conn.accept_bi().await.unwrap();
        sends.push((server_conn, send, _srecv));
        recvs.push(tokio::spawn(async move {
            let _keep = (cep, &client_conn, cs);
            let mut h = Histogram::<u64>::new(3).unwrap();
            let mut buf = Vec::new();
            let mut got = 0;
            while got < total {
                let Ok(Some(c)) = r.read_chunk(64 << 10, true).await else {
                    break;
                };
                buf.extend_from_slice(&c.bytes);
                let now = epoch.elapsed().as_nanos() as u64;
                let whole = buf.len() / RECORD * RECORD;
                for rec in buf[..whole].chunks(RECORD) {
                    let t = u64::from_le_bytes(rec[..8].try_into().unwrap());
                    let _ = h.record(now.saturating_sub(t).max(1));
                    got += 1;
                }
                buf.drain(..whole);
            }
            h
        }));
    }
    let gap = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let start = tokio::time::Instant::now();
    let mut rec = [0u8; RECORD];
    for i in 0..total {
        tokio::time::sleep_until(start + gap * i as u32).await;
        rec[..8].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
        // The same bytes to every subscriber, one write each.
        for (_, s, _) in sends.iter_mut() {
            s.write_all(&rec).await.unwrap();
        }
    }
    let mut all = Histogram::<u64>::new(3).unwrap();
    for r in recvs {
        all.add(r.await.unwrap()).unwrap();
    }
    drop(sends);
    ep.close(0u32.into(), b"");
    all
}
