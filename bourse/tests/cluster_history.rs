//! The on-disk transfer history in a three-node cluster (real pipelines,
//! QUIC, Raft over the peer transport on loopback). Each partition holds
//! only 256 transfers in memory, yet the ledger takes many times that:
//! the leader cuts runs, ships them to the followers, and installs them
//! through the log, and every node merges the runs its purged log no
//! longer names (compaction). A follower that was down while the leader
//! snapshotted, purged and merged installs the snapshot and fetches the
//! files it lacks, merged ones among them; after the leader is lost, the
//! new one still refuses every old id as `exists` (exactly once, answered
//! from the files), and every node holds every run under the same
//! checksum, in fewer files than runs.

mod support;

use bourse::local_cluster::LocalCluster;
use engine::event::LedgerError;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::ledger::{open_accounts, transfers};

/// Memory holds this many transfers per partition; the test stores more.
const TRANSFERS_MAX: u32 = 256;

fn node(cfg: &mut gateway::server::ServerConfig) {
    cfg.demo = true;
    cfg.pipeline.engine = engine::EngineConfig::small();
    cfg.pipeline.engine.transfers_max = TRANSFERS_MAX;
    cfg.pipeline.history_run_records = 48;
    // Small, so "maybe" answers fall through to the files (debug builds
    // also probe the files behind every "no").
    cfg.pipeline.history_filter_bytes = 1024;
    cfg.pipeline.prefault = false;
    cfg.pipeline.runtime.idle = runtime::IdleStrategy::Park { max_sleep_us: 50 };
    if let Some(c) = &mut cfg.cluster {
        c.config.heartbeat_ms = 60;
        c.config.snapshot_every_entries = 16;
        // A follower that missed anything before the newest snapshot is
        // sent the snapshot (and must fetch the runs it installed).
        c.config.log_kept_after_snapshot_entries = 0;
    }
}

/// Partition 0's runs of node `n` (run → checksum) and its files.
fn runs(root: &Path, n: u64) -> (BTreeMap<u64, u128>, usize) {
    let dir = root.join(format!("n{n}/p0/history"));
    loop {
        if let Some(held) = support::history::held(&dir) {
            return held;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until nodes `a` and `b` hold the same runs under the same
/// checksums, at least `min`; returns how many.
fn same_runs(root: &Path, a: u64, b: u64, min: usize, what: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (x, y) = (runs(root, a).0, runs(root, b).0);
        if x == y && x.len() >= min {
            return x.len();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: nodes {a} and {b} hold different runs: {:?} vs {:?}",
            x.keys().collect::<Vec<_>>(),
            y.keys().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until node `n` holds its runs in fewer files than runs (it merged
/// some, or adopted a peer's merged files).
fn merged(root: &Path, n: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (runs, files) = runs(root, n);
        if files < runs.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: node {n} holds {} runs in {files} files",
            runs.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_cluster_keeps_every_transfer_id_for_ever_in_bounded_memory() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let mut cluster = LocalCluster::start(root, 3, node).unwrap();
    let wait = Duration::from_secs(20);
    let (leader, mut c) = cluster.leader(1, wait).await.unwrap();
    open_accounts(&mut c).await;

    // Four times what memory holds: without runs this is capacity_exceeded.
    let codes = transfers(&mut c, 1..1 + 4 * TRANSFERS_MAX as u128).await;
    assert!(codes.iter().all(|&x| x == 0), "{codes:?}");
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    // Runs hold 48 to 96 transfers (more when the leader catches up).
    same_runs(root, leader, follower, 8, "shipped runs");

    // A follower misses a snapshot and purge; it installs the snapshot and
    // fetches the runs it lacks.
    let other = (1..=3).find(|&n| n != leader && n != follower).unwrap();
    cluster.stop(follower);
    let first = runs(root, leader).0.len();
    let codes = transfers(&mut c, 1025..1025 + 4 * TRANSFERS_MAX as u128).await;
    assert!(codes.iter().all(|&x| x == 0), "{codes:?}");
    let grown = runs(root, leader).0.len();
    assert!(grown >= first + 8, "{first} then {grown} runs");
    // By now the leader's snapshots have purged the installs of the first
    // phase's runs (an idle group takes no snapshot, so not before).
    merged(root, leader, "the leader compacts");
    cluster.restart(follower).unwrap();
    same_runs(root, leader, follower, grown, "after the snapshot install");
    same_runs(root, leader, other, grown, "the other follower");
    c.disconnect().await;

    // The leader goes: the new one answers every old id from the files.
    cluster.stop(leader);
    let (second, mut c) = cluster.leader(2, wait).await.unwrap();
    assert_ne!(second, leader);
    let exists = LedgerError::Exists.code();
    let old: Vec<u16> = transfers(&mut c, 1..2049).await;
    assert!(old.iter().all(|&x| x == exists), "old ids again: {old:?}");
    let codes = transfers(&mut c, 5000..5000 + 2 * TRANSFERS_MAX as u128).await;
    assert!(codes.iter().all(|&x| x == 0), "{codes:?}");
    let survivors: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    same_runs(
        root,
        survivors[0],
        survivors[1],
        grown + 4,
        "after failover",
    );
    for &n in &survivors {
        merged(root, n, "after failover");
    }
    c.disconnect().await;
    cluster.shutdown();
}
