//! What replicating the transfer history costs, side by side in one run on
//! loopback (issue #15): durable transfers through the leader of a
//! three-node cluster (in-process nodes, real QUIC and Raft), `WINDOW`
//! batches of `BATCH` in flight,
//!
//! - *in memory*: the ledger's memory holds every transfer of the run, so
//!   no history run is ever cut;
//! - *shipped*: memory holds a quarter of them, so the leader cuts a run
//!   every sixteenth of them, ships it to both followers, and installs it
//!   through the log while transfers keep coming (a transfer refused
//!   `capacity_exceeded` meanwhile is sent again, as a client would).
//!
//! - *compacted*: shipped, and every node merges the runs its purged log
//!   no longer names (`[history] compact_fanout` 4, so the run's few runs
//!   merge; shipped turns it off). Both snapshot every 64 log entries and
//!   keep no log behind a snapshot, so only compaction differs.
//!
//! - *1 node*: the shipped tuning on a single durable node (runs cut and
//!   installed locally; nothing travels).
//!
//! Prints transfers per second each way, the ratios, and the runs and
//! files each node holds at the end.
//!
//! `cargo run --release -p bourse --example cluster_transfers [-- TRANSFERS]`
//! (default 262,144).

use bourse::local_cluster::LocalCluster;
use gateway::client::{Client, ClientConfig, Reply};
use gateway::server::{self, ServerConfig};
use gateway::wire::TransferRecord;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const BATCH: u128 = 512;
const WINDOW: usize = 8;

fn tune(cfg: &mut ServerConfig, transfers_max: u32, run_records: usize) {
    cfg.demo = true;
    cfg.session.throttle_per_s = 10_000_000;
    cfg.session.throttle_burst = 1_000_000;
    cfg.pipeline.engine = engine::EngineConfig::small();
    cfg.pipeline.engine.transfers_max = transfers_max;
    cfg.pipeline.history_run_records = run_records;
    cfg.pipeline.prefault = false;
    cfg.pipeline.runtime.pin = false;
    cfg.pipeline.runtime.idle = runtime::IdleStrategy::Park { max_sleep_us: 50 };
}

fn in_memory(cfg: &mut ServerConfig) {
    let n = transfers();
    tune(cfg, (n * 2) as u32, n as usize * 2);
}

fn shipped(cfg: &mut ServerConfig) {
    let max = (transfers() / 4) as u32;
    // A quarter of memory a run (the server's own rule caps it at half).
    tune(cfg, max, (max / 4) as usize);
    if let Some(c) = &mut cfg.cluster {
        cfg.pipeline.history_compact_fanout = 0;
        c.config.snapshot_every_entries = 64;
        c.config.log_kept_after_snapshot_entries = 0;
    }
}

fn compacted(cfg: &mut ServerConfig) {
    shipped(cfg);
    cfg.pipeline.history_compact_fanout = 4;
}

/// The run's transfer count (the first argument), read by both tunings.
fn transfers() -> u128 {
    std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(262_144)
}

fn batch(first: u128) -> Vec<TransferRecord> {
    (first..first + BATCH)
        .map(|id| TransferRecord {
            id: (1u128 << 40 | id).to_le_bytes(),
            debit_account: 901u128.to_le_bytes(),
            credit_account: 902u128.to_le_bytes(),
            amount: 1u128.to_le_bytes(),
            code: 7,
            ..TransferRecord::default()
        })
        .collect()
}

/// Waits for request `r`'s answer; the number of transfers it refused
/// `capacity_exceeded` (to send again) and panics on any other refusal.
async fn results(c: &mut Client, r: u64) -> Vec<usize> {
    let full = engine::event::LedgerError::CapacityExceeded.code();
    loop {
        match c.next_timeout(Duration::from_secs(30)).await {
            Ok(Some(Reply::TransferResults { request, results })) if request == r => {
                let again = results.iter().filter(|x| x.code == full);
                let again: Vec<usize> = again.map(|x| x.index as usize).collect();
                let bad = results.iter().find(|x| x.code != 0 && x.code != full);
                assert!(bad.is_none(), "request {r}: {bad:?}");
                return again;
            }
            Ok(Some(Reply::Ack(a))) if a.request == r => {
                assert_eq!(a.code, 0, "{a:?}");
                return Vec::new();
            }
            Ok(Some(_)) => {}
            other => panic!("no answer to request {r}: {other:?}"),
        }
    }
}

async fn open_accounts(c: &mut Client) {
    for id in [901u128, 902] {
        let r = c.open_account(id, 1, "USD", 0);
        c.flush().await.expect("flush");
        results(c, r).await;
    }
}

/// Sends every transfer with `WINDOW` batches in flight; transfers per second.
async fn run(c: &mut Client) -> (f64, u64) {
    let n = transfers();
    let mut next = 0u128;
    let mut in_flight: VecDeque<(u64, Vec<TransferRecord>)> = VecDeque::new();
    let mut resent = 0u64;
    let t0 = Instant::now();
    while next < n || !in_flight.is_empty() {
        while next < n && in_flight.len() < WINDOW {
            let recs = batch(next);
            in_flight.push_back((c.transfer_batch(&recs), recs));
            next += BATCH;
        }
        c.flush().await.expect("flush");
        let (r, recs) = in_flight.pop_front().expect("in flight");
        let again = results(c, r).await;
        if !again.is_empty() {
            // Memory is full until the next run is installed: a live limit.
            resent += again.len() as u64;
            let recs: Vec<TransferRecord> = again.iter().map(|&i| recs[i]).collect();
            in_flight.push_back((c.transfer_batch(&recs), recs));
        }
    }
    (n as f64 / t0.elapsed().as_secs_f64(), resent)
}

/// (runs, files) per node.
fn runs(root: &std::path::Path) -> Vec<(usize, usize)> {
    (1..=3)
        .map(|n| {
            let dir = root.join(format!("n{n}/p0/history"));
            let files = journal::history::list_files(&journal::FsStorage, &dir).unwrap_or_default();
            (files.last().map_or(0, |f| f.last as usize), files.len())
        })
        .collect()
}

async fn measure(name: &str, configure: fn(&mut ServerConfig)) -> f64 {
    let root = tempfile::tempdir().expect("temp dir");
    let cluster = LocalCluster::start(root.path(), 3, configure).expect("cluster");
    let (_, mut c) = cluster
        .leader(1, Duration::from_secs(20))
        .await
        .expect("leader");
    open_accounts(&mut c).await;
    let (rate, resent) = run(&mut c).await;
    c.disconnect().await;
    // The followers adopt the last run shipped just before the end.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "{name:>9}: {rate:>9.0} transfers/s ({resent} sent again after capacity_exceeded; (runs, files) per node {:?})",
        runs(root.path())
    );
    tokio::task::spawn_blocking(move || cluster.shutdown())
        .await
        .expect("shutdown");
    rate
}

/// The shipped tuning on one durable node: the runs are cut and installed
/// locally, nothing travels (what shipping adds is the difference).
async fn single_node() -> f64 {
    let root = tempfile::tempdir().expect("temp dir");
    let mut cfg = ServerConfig::new(root.path());
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    shipped(&mut cfg);
    let h = server::start(cfg).expect("single node");
    let id = gateway::identity::load_client_identity(root.path()).expect("identity");
    let cc = ClientConfig::new(h.addr(), id.cert_der, id.operator_token.expect("token"));
    let mut c = Client::connect(&cc).await.expect("connect");
    open_accounts(&mut c).await;
    let (rate, resent) = run(&mut c).await;
    c.disconnect().await;
    tokio::task::spawn_blocking(move || h.shutdown())
        .await
        .expect("shutdown");
    println!("   1 node: {rate:>9.0} transfers/s ({resent} sent again after capacity_exceeded; runs cut and installed locally)");
    rate
}

fn main() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            println!(
                "{} durable transfers through a 3-node cluster, {BATCH} a batch, {WINDOW} batches in flight",
                transfers()
            );
            let mem = measure("in memory", in_memory).await;
            let ship = measure("shipped", shipped).await;
            let merged = measure("compacted", compacted).await;
            let one = single_node().await;
            println!(
                "shipped / in memory: {:.2}; shipped / 1 node: {:.2}; compacted / shipped: {:.2}",
                ship / mem,
                ship / one,
                merged / ship
            );
        });
}
