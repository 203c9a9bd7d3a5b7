//! Lookup costs of the on-disk transfer history, printed (env-gated:
//! `TEST_HISTORY_BENCH=1 cargo test -p bourse --test history_bench
//! -- --nocapture`; `TEST_HISTORY_BENCH_RECORDS` overrides the sizes, a
//! comma-separated list, default `1000000,10000000`).
//!
//! For each size: stored ids are random even numbers (client ids: every run
//! spans the whole id space, so min/max skip nothing), written as runs of
//! 262,144 records; then, page cache warm, `get` of stored ids (one
//! verified 4 KiB block read each) and of odd ids (new ids: only the
//! filters keep them off disk), in a seeded random order. Also prints the
//! memory the runs keep per transfer. Then the runs are compacted
//! (`history::compact`, fanout 8) and the lookups measured again, then
//! once more reopened with the partition-wide id filter (`[history]
//! filter_bytes`, default 64 MiB), with the time its start-up fill took.

use engine::command::{TransferFlags, TransferSpec};
use engine::history::{TransferHistory, TransferRecord, TransferState};
use engine::rng::SplitMix64;
use engine::types::{AccountId, Amount, Seq, Timestamp, TransferId};
use journal::history::{run_name, Compactor, DiskHistory, IdFilter, RunWriter};
use journal::FsStorage;
use runtime::DEFAULT_HISTORY_FILTER_BYTES;
use std::sync::Arc;
use std::time::Instant;

const RUN_RECORDS: usize = 262_144;

fn record(i: u64) -> TransferRecord {
    let spec = TransferSpec {
        id: TransferId(stored_id(i)),
        debit_account: AccountId(1 + (i % 1000) as u128),
        credit_account: AccountId(1001 + (i % 997) as u128),
        amount: Amount(1 + i as u128 % 100),
        code: 1,
        flags: TransferFlags::default(),
        pending_id: TransferId(0),
        timeout_ns: 0,
    };
    TransferRecord {
        spec,
        debit_account: spec.debit_account,
        credit_account: spec.credit_account,
        amount: spec.amount,
        state: TransferState::Posted,
        ledger_seq: i,
        created_seq: Seq(i),
        created: Timestamp(i * 1000),
        change_seq: Seq(i),
    }
}

/// The stored id of record `i` (random-looking, even).
fn stored_id(i: u64) -> u128 {
    let hi = SplitMix64(i).below(u64::MAX) as u128;
    (hi << 64 | i as u128) << 1
}

fn ns_per(n: u64, f: impl FnMut(u64)) -> f64 {
    let mut f = f;
    let t = Instant::now();
    for k in 0..n {
        f(k);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Warms the page cache with the first 10,000 ids, then times `get` of
/// every id in `ids` (all stored: each must be found) and of an id next to
/// each (never stored: none may be). Returns (stored ns, new ns) per lookup.
fn time_gets(h: &DiskHistory<FsStorage>, ids: &[u64]) -> (f64, f64) {
    for &i in ids.iter().take(10_000) {
        h.get(TransferId(stored_id(i))).unwrap();
    }
    let lookups = ids.len() as u64;
    let mut found = 0u64;
    let hit_ns = ns_per(lookups, |k| {
        let i = ids[k as usize];
        found += h.get(TransferId(stored_id(i))).unwrap().is_some() as u64;
    });
    assert_eq!(found, lookups);
    let mut hits = 0u64;
    let new_ns = ns_per(lookups, |k| {
        let i = ids[k as usize];
        hits += h.get(TransferId(stored_id(i) + 1)).unwrap().is_some() as u64;
    });
    assert_eq!(hits, 0);
    (hit_ns, new_ns)
}

fn measure(records: u64) {
    let top = std::env::temp_dir().join(format!(
        "bourse-history-bench-{}-{records}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&top);
    let dir = top.join("history");
    let t = Instant::now();
    let mut w = RunWriter::new(FsStorage, &dir, 0, 0, RUN_RECORDS).unwrap();
    let mut batch = Vec::with_capacity(RUN_RECORDS);
    for i in 1..=records {
        batch.push(record(i));
        if batch.len() == RUN_RECORDS || i == records {
            w.push(&batch);
            batch.clear();
            w.cut(i).unwrap();
        }
    }
    let write_s = t.elapsed().as_secs_f64();
    // What an install costs the engine thread: `has_run` of a run the store
    // has not seen (header and in-memory sections), and what the writer's
    // whole read-back costs it per run (`verify` over all runs).
    let (last_run, _) = w.last();
    let (last, aside) = (dir.join(run_name(last_run)), dir.join("aside"));
    std::fs::rename(&last, &aside).unwrap();
    let h = DiskHistory::open(FsStorage, &dir).unwrap();
    std::fs::rename(&aside, &last).unwrap();
    let checksum = DiskHistory::open(FsStorage, &dir)
        .unwrap()
        .header(last_run)
        .unwrap()
        .checksum;
    let t = Instant::now();
    assert!(h.has_run(last_run, checksum).unwrap());
    let install_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    h.verify().unwrap();
    let verify_ms = t.elapsed().as_secs_f64() * 1e3 / h.runs() as f64;
    let lookups = 200_000u64;
    let mut rng = SplitMix64(records);
    let mut present = || 1 + rng.below(records);
    let ids: Vec<u64> = (0..lookups).map(|_| present()).collect();
    // The files are fresh, so the page cache is warm anyway.
    let (hit_ns, new_ns) = time_gets(&h, &ids);
    println!(
        "{records} records in {} runs ({:.0} MB on disk, written in {write_s:.1} s): \
         get(stored id, warm) {hit_ns:.0} ns, get(new id) {new_ns:.0} ns; \
         memory kept {:.2} bytes/transfer; install (has_run, engine thread) {install_ms:.2} ms; \
         read-back of a run (writer thread) {verify_ms:.1} ms",
        h.runs(),
        h.bytes() as f64 / 1e6,
        h.memory_bytes() as f64 / records as f64,
    );
    // Compaction: every run installed, a snapshot covering them all.
    for run in 1..=h.runs() {
        let c = DiskHistory::open(FsStorage, &dir)
            .unwrap()
            .header(run)
            .unwrap();
        assert!(h.has_run(run, c.checksum).unwrap());
    }
    std::fs::write(top.join(journal::snapshot_name(u64::MAX / 2)), b"").unwrap();
    let mut c = Compactor::new(FsStorage, &dir, h.link(), (8, u64::MAX), (0, 0)).unwrap();
    c.observe(|| 0).unwrap();
    let t = Instant::now();
    let mut merges = 0;
    while c.step().unwrap() {
        merges += 1;
    }
    let compact_s = t.elapsed().as_secs_f64();
    let (hit_ns, new_ns) = time_gets(&h, &ids);
    println!(
        "  compacted ({merges} merges in {compact_s:.1} s): {} files; \
         get(stored id, warm) {hit_ns:.0} ns, get(new id) {new_ns:.0} ns",
        h.files(),
    );
    with_id_filter(&dir, &ids, records);
    std::fs::remove_dir_all(&top).unwrap();
}

/// The compacted history reopened with the default partition-wide id
/// filter: the start-up fill (every file read whole), then the lookups.
fn with_id_filter(dir: &std::path::Path, ids: &[u64], records: u64) {
    let mut h = DiskHistory::open(FsStorage, dir).unwrap();
    let f = IdFilter::new(DEFAULT_HISTORY_FILTER_BYTES).unwrap();
    let t = Instant::now();
    let filled = h.attach_filter(Arc::new(f)).unwrap();
    let fill_s = t.elapsed().as_secs_f64();
    assert_eq!(filled, records);
    let (hit_ns, new_ns) = time_gets(&h, ids);
    println!(
        "  id filter ({} MiB, filled from {} files in {fill_s:.2} s): \
         get(stored id, warm) {hit_ns:.0} ns, get(new id) {new_ns:.0} ns",
        DEFAULT_HISTORY_FILTER_BYTES >> 20,
        h.files(),
    );
}

#[test]
fn history_lookup_costs() {
    if std::env::var("TEST_HISTORY_BENCH").is_err() {
        println!("skipped: set TEST_HISTORY_BENCH=1 to measure");
        return;
    }
    let sizes = std::env::var("TEST_HISTORY_BENCH_RECORDS").unwrap_or("1000000,10000000".into());
    for n in sizes.split(',').filter_map(|s| s.trim().parse().ok()) {
        measure(n);
    }
}
