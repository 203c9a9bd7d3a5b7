//! The bench's trade → market-data series against an in-process server: a
//! subscriber on its own `bourse-md/1` connection must see one trade message
//! per crossing order that traded, joined to the order that caused it
//! (partition-local taker id on the feed, global id in the reports), with
//! nothing missing on an unloaded server.
//!
//! Two partitions, so one bench instrument (1, partition 0) has global and
//! local order ids equal and the other (2, partition 1) does not: a join on
//! the wrong id loses half the trades.
//!
//! It can fail: a subscriber that never subscribed, ids joined wrongly, or
//! trades not reaching the subscriber give an empty series, a count that
//! differs from the order → fill series, or missing trades.

use bourse::bench::{in_process_server_partitioned, run_load, LoadSpec, Target};
use journal::Durability;
use std::time::Duration;

#[test]
fn every_bench_trade_reaches_the_market_data_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let server = in_process_server_partitioned(dir.path(), Durability::None, 2).expect("server");
    assert_eq!(
        gateway::server::partition_map(2).instrument(engine::InstrumentId(2)),
        1,
        "instrument 2 lives in partition 1"
    );
    let id = gateway::identity::load_client_identity(dir.path()).unwrap();
    let target = Target {
        addr: server.addr(),
        cert_der: id.cert_der,
        token: id.operator_token.unwrap(),
    };
    let spec = LoadSpec {
        connections: 2,
        rate: 400,
        duration: Duration::from_secs(1),
        seed: 3,
        window: 1_000,
        client_spin: false,
        drain: Duration::from_secs(3),
        progress: false,
    };
    let r = run_load(&target, &spec).expect("load");
    let us = |v: u64| v as f64 / 1e3;
    eprintln!(
        "sent {} answered {} | fill n {} p50 {:.1} µs | trade → md n {} p50 {:.1} µs min {:.1} max {:.1} | missing {} resets {} unavailable {:?} lost {:?}",
        r.sent,
        r.answered,
        r.fill.len(),
        us(r.fill.value_at_quantile(0.5)),
        r.trade_md.len(),
        us(r.trade_md.value_at_quantile(0.5)),
        us(r.trade_md.min()),
        us(r.trade_md.max()),
        r.trade_md_missing,
        r.trade_md_resets,
        r.trade_md_unavailable,
        r.trade_md_lost,
    );
    assert_eq!(r.trade_md_unavailable, None, "the subscription was made");
    assert_eq!(r.trade_md_lost, None);
    assert_eq!(r.unanswered, 0);
    assert!(r.fill.len() > 20, "the mix traded: {} fills", r.fill.len());
    assert!(!r.trade_md.is_empty(), "the subscriber saw the trades");
    // One feed trade per crossing order that traded — the same orders the
    // fill series counts — and none lost.
    assert_eq!(r.trade_md.len(), r.fill.len());
    assert_eq!(r.trade_md_missing, 0);
    assert_eq!(r.trade_md_resets, 0);
    // Plausible values: at least a loopback round trip through the engine
    // (the raw QUIC ping-pong is tens of µs), and within the run.
    assert!(
        r.trade_md.min() >= 5_000,
        "min {:.1} µs",
        us(r.trade_md.min())
    );
    assert!(r.trade_md.max() < (spec.duration + spec.drain).as_nanos() as u64);
    drop(server);
}
