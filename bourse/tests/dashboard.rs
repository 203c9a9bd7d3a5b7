//! The Grafana dashboard (`deploy/grafana/bourse.json`) queries only metrics
//! the endpoint exports: every `bourse_*` name in a panel or variable query
//! must appear as a sample name in a real scrape of a running pipeline.

use bourse::metrics::{http_get, parse_exposition, serve_metrics, MetricsState};
use journal::Durability;
use runtime::{IdleStrategy, RuntimeConfig};
use runtime::{Pipeline, PipelineConfig};
use serde_json::Value;
use std::collections::BTreeSet;

/// Every string under an `expr` or `query` key, anywhere in the document.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if let (true, Value::String(s)) = (k == "expr" || k == "query", x) {
                    out.push(s.clone());
                }
                queries(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| queries(x, out)),
        _ => {}
    }
}

/// The `bourse_*` metric names a PromQL expression mentions.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("bourse_") {
        let before = rest[..i].chars().last();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"') {
            out.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_dashboard_metric_is_exported() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/bourse.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    queries(&doc, &mut exprs);
    let panels = doc["panels"].as_array().unwrap();
    assert!(panels.len() >= 20, "dashboard has {} panels", panels.len());
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(
        used.len() >= 25,
        "only {} metrics used: {used:?}",
        used.len()
    );

    // A real endpoint over one running partition (no journal files needed).
    let mut cfg = PipelineConfig::new(std::env::temp_dir().join("bourse-dashboard-unused"));
    cfg.durability = Durability::None;
    cfg.engine = engine::EngineConfig::small();
    cfg.prefault = false;
    cfg.runtime = RuntimeConfig {
        inbound_ring: 64,
        output_ring: 1024,
        output_readers: 1,
        journal_queue: 64,
        idle: IdleStrategy::Yield,
        pin: false,
        ..RuntimeConfig::default()
    };
    let p = Pipeline::open(&cfg).unwrap();
    let state = MetricsState::with_partitions(vec![p.runtime().shared(0).clone()]);
    state.set_ready(true);
    // As a cluster member: the `bourse_raft_*` families appear.
    gateway::counters::ServerMetrics::set_cluster_status(
        &*state,
        &[replica::GroupStatus {
            term: 3,
            role: "leader",
            leader: Some(1),
            serving: true,
            ..replica::GroupStatus::default()
        }],
    );
    let server = serve_metrics("127.0.0.1:0".parse().unwrap(), state).unwrap();
    let (status, body) = http_get(server.local_addr(), "/metrics").unwrap();
    assert_eq!(status, 200);
    let exported: BTreeSet<String> = parse_exposition(&body)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "dashboard queries metrics the endpoint does not export: {missing:?}\nexported: {exported:?}"
    );
    // And the metrics the operators' issue names are all there.
    for m in [
        "bourse_commands_total",
        "bourse_rejects_total",
        "bourse_ring_occupancy",
        "bourse_engine_busy_ratio",
        "bourse_journal_bytes_total",
        "bourse_journal_blocks_total",
        "bourse_journal_commit_seconds_bucket",
        "bourse_durable_lag_seq",
        "bourse_durable_lag_seconds",
        "bourse_snapshot_age_seconds",
        "bourse_sessions",
        "bourse_subscribers",
        "bourse_conflations_total",
        "bourse_disconnects_total",
        "bourse_throttles_total",
        "bourse_watchdog_alarm",
        "bourse_raft_term",
        "bourse_raft_role",
        "bourse_raft_leader",
        "bourse_raft_serving",
        "bourse_raft_last_log_index",
        "bourse_raft_commit_index",
        "bourse_raft_applied_index",
        "bourse_raft_apply_lag",
        "bourse_raft_terms_total",
    ] {
        assert!(exported.contains(m), "{m} not exported");
        assert!(used.contains(m), "{m} not on the dashboard");
    }
    // The alert rules and their promtool tests (deploy/prometheus) name
    // only exported metrics too (expressions, series and runbooks alike).
    let prom = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/prometheus");
    let mut files = vec![std::path::PathBuf::from(prom).join("alerts.yml")];
    for f in std::fs::read_dir(format!("{prom}/tests")).unwrap() {
        files.push(f.unwrap().path());
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let names: BTreeSet<String> = metric_names(&text).into_iter().collect();
        assert!(!names.is_empty(), "{} names no metric", f.display());
        let missing: Vec<&String> = names.iter().filter(|m| !exported.contains(*m)).collect();
        assert!(
            missing.is_empty(),
            "{} names metrics the endpoint does not export: {missing:?}",
            f.display()
        );
    }
    server.shutdown();
    p.shutdown();
}

#[test]
fn metric_name_extraction() {
    assert_eq!(
        metric_names("histogram_quantile(0.99, sum by (le) (rate(bourse_a_bucket{x=\"bourse_not\"}[1m]))) / bourse_b"),
        vec!["bourse_a_bucket", "bourse_b"]
    );
}
