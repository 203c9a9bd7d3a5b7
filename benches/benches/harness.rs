//! Harness rig: the harness-shaped stream (`bourse_benches::harness`: one
//! symbol, 1 M new orders of which ~15% IOC, ~0.8 M cancels and ~0.17 M
//! modifies aimed at live orders, five scenarios) through every engine in
//! one process, checked against the reference reports, and a markdown table.
//!
//! Run: `cargo bench -p bourse-benches --bench harness` (a few minutes on
//! 2 cores). Knobs: `-- --quick` or `HARNESS_QUICK=1` (100k orders, one
//! pass), `HARNESS_ORDERS=n` (new orders per scenario), `HARNESS_PASSES=n`
//! (throughput passes, default 3), `HARNESS_ENGINES=bourse,lobster` and
//! `HARNESS_SCENARIOS=static,flash-crash` (comma-separated selections).
//!
//! Method, per scenario:
//! 1. Throughput: `passes` rounds; in each round every engine runs the whole
//!    stream once on a fresh book (engines interleaved, so a noisy spell
//!    hits them all), timed as one interval with no per-message timer.
//!    msgs/s is the median round. The first round's reports and resting
//!    book are checked (`harness::check`): counts per kind, traded lots,
//!    rejects, the fill hash where the engine names makers, resting orders
//!    and lots; a difference marks the row MISMATCH.
//! 2. Latency: one more run per engine with every message bracketed by
//!    `Instant::now()` (no rdtsc); the median cost of an empty pair is
//!    subtracted (floored at 1 ns) before the sample goes into an
//!    `hdrhistogram` (3 significant digits). A message is what the harness
//!    sends: a modify through a peer that lacks one is its two calls.
//!
//! An engine whose first pass takes over `SLOW_PASS_S` gets no more passes
//! and no latency pass on that scenario (its row says "1 pass").
//!
//! Reports are consumed in the adapter, on the engine's thread, as each
//! message returns (counted and hashed); the harness's SPSC hop to a second
//! core is not modelled.

#[path = "peers/mod.rs"]
mod peers;

use bourse_benches::harness::{check, send, Params};
use bourse_benches::machine::fmt_ns as ns;
use bourse_benches::{machine, BourseHarness, HarnessBook, Reports, Scenario, Stream};
use hdrhistogram::Histogram;
use peers::{Lobster, Matchcore, RustOrderBook};
use std::hint::black_box;
use std::time::Instant;

struct Row {
    engine: &'static str,
    scenario: Scenario,
    msgs: u64,
    rates: Vec<f64>,
    hist: Option<Histogram<u64>>,
    reports: Reports,
    check: Result<(), String>,
}

impl Row {
    fn rate(&self) -> f64 {
        let mut v = self.rates.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
}

/// Run settings from the command line and `HARNESS_*` variables.
struct Settings {
    orders: usize,
    passes: usize,
}

fn env_num(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// Whether `name` is in the comma-separated list `var` (unset = all).
fn selected(var: &str, name: &str) -> bool {
    match std::env::var(var) {
        Ok(list) => list.split(',').any(|n| n.trim() == name),
        Err(_) => true,
    }
}

fn settings() -> Settings {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("HARNESS_QUICK").is_ok_and(|v| v == "1");
    Settings {
        orders: env_num("HARNESS_ORDERS").unwrap_or(if quick { 100_000 } else { 1_000_000 }),
        passes: env_num("HARNESS_PASSES")
            .unwrap_or(if quick { 1 } else { 3 })
            .max(1),
    }
}

/// One timed pass on a fresh book: msgs/s, and on request the check.
fn pass<B: HarnessBook>(s: &Stream, row: &mut Row, checked: bool) {
    let mut b = B::new(&s.sizing);
    let t = Instant::now();
    for m in &s.msgs {
        send(&mut b, black_box(m));
    }
    let elapsed = t.elapsed();
    black_box(&mut b);
    row.rates.push(s.msgs.len() as f64 / elapsed.as_secs_f64());
    if checked {
        row.reports = b.reports();
        row.check = check(&row.reports, &b.resting(), s);
    }
}

/// The per-message latency pass.
fn latency<B: HarnessBook>(s: &Stream, overhead: u64) -> Histogram<u64> {
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    let mut b = B::new(&s.sizing);
    for m in &s.msgs {
        let t0 = Instant::now();
        send(&mut b, black_box(m));
        let ns = t0.elapsed().as_nanos() as u64;
        hist.saturating_record(ns.saturating_sub(overhead).max(1));
    }
    black_box(&mut b);
    hist
}

fn describe(s: &Stream) {
    let news = (s.mix.gtc + s.mix.ioc) as f64;
    println!(
        "- {}: {} msgs = {} new ({:.1}% IOC) + {} cancels + {} modifies; {} fills, {} IOC remainders, \
         {} resting at the end (max {}), ≤ {} levels a side, prices {}..{}, seed {:#x}",
        s.scenario.name(),
        s.msgs.len(),
        news,
        100.0 * s.mix.ioc as f64 / news,
        s.mix.cancels,
        s.mix.modifies,
        s.expected.fills.unwrap_or(0),
        s.expected.ioc_canceled,
        s.resting.orders.unwrap_or(0),
        s.sizing.max_live,
        s.sizing.max_levels,
        s.min_price,
        s.max_price,
        s.params.seed,
    );
}

fn find<'a>(rows: &'a mut [Row], name: &str) -> Option<&'a mut Row> {
    rows.iter_mut().find(|r| r.engine == name)
}

/// A row for `B` when it is selected (`rows`: this scenario's rows).
fn add_row<B: HarnessBook>(s: &Stream, rows: &mut Vec<Row>) {
    if selected("HARNESS_ENGINES", B::NAME) {
        rows.push(Row {
            engine: B::NAME,
            scenario: s.scenario,
            msgs: s.msgs.len() as u64,
            rates: Vec::new(),
            hist: None,
            reports: Reports::new(false),
            check: Ok(()),
        });
    }
}

/// A pass slower than this is not repeated, and its engine gets no latency
/// pass (a peer 50× slower than the rest would otherwise take most of the
/// run; its figure needs no median to be read).
const SLOW_PASS_S: f64 = 10.0;

/// Whether `row`'s engine ran its first pass slower than `SLOW_PASS_S`.
fn slow(row: &Row, s: &Stream) -> bool {
    row.rates
        .first()
        .is_some_and(|r| s.msgs.len() as f64 / r > SLOW_PASS_S)
}

/// One throughput pass of `B`, checked when it is its first.
fn timed_pass<B: HarnessBook>(s: &Stream, rows: &mut [Row]) {
    if let Some(row) = find(rows, B::NAME).filter(|r| !slow(r, s)) {
        let first = row.rates.is_empty();
        eprintln!(
            "{} on {}: pass {}…",
            B::NAME,
            s.scenario.name(),
            row.rates.len() + 1
        );
        pass::<B>(s, row, first);
    }
}

/// The latency pass of `B`.
fn latency_pass<B: HarnessBook>(s: &Stream, rows: &mut [Row], overhead: u64) {
    if let Some(row) = find(rows, B::NAME).filter(|r| !slow(r, s)) {
        eprintln!("{} on {}: latency…", B::NAME, s.scenario.name());
        row.hist = Some(latency::<B>(s, overhead));
    }
}

/// Calls `$f::<Engine>(args…)` for every engine, in table order.
macro_rules! each_engine {
    ($f:ident($($arg:expr),*)) => {
        $f::<BourseHarness>($($arg),*);
        $f::<Matchcore>($($arg),*);
        $f::<RustOrderBook>($($arg),*);
        $f::<Lobster>($($arg),*);
    };
}

/// Runs every selected engine on one scenario, interleaved.
fn run_scenario(s: &Stream, set: &Settings, overhead: u64) -> Vec<Row> {
    let mut rows = Vec::new();
    each_engine!(add_row(s, &mut rows));
    for _ in 0..set.passes {
        each_engine!(timed_pass(s, &mut rows));
    }
    each_engine!(latency_pass(s, &mut rows, overhead));
    rows
}

/// The passes' range, so a noisy machine shows: "3: 2.1–2.6 M".
fn spread(r: &Row) -> String {
    let lo = r.rates.iter().copied().fold(f64::MAX, f64::min);
    let hi = r.rates.iter().copied().fold(0.0, f64::max);
    if r.rates.len() == 1 {
        "1".into()
    } else {
        format!("{}: {:.2}–{:.2} M", r.rates.len(), lo / 1e6, hi / 1e6)
    }
}

fn table(rows: &[Row]) {
    println!(
        "\n| engine | scenario | msgs | msgs/s | passes | p50 | p99 | p99.9 | max | reports | check |"
    );
    println!("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in rows {
        let q = |x: f64| {
            r.hist
                .as_ref()
                .map_or("-".into(), |h| ns(h.value_at_quantile(x)))
        };
        println!(
            "| {} | {} | {} | {:.2} M | {} | {} | {} | {} | {} | {} | {} |",
            r.engine,
            r.scenario.name(),
            r.msgs,
            r.rate() / 1e6,
            spread(r),
            q(0.50),
            q(0.99),
            q(0.999),
            r.hist.as_ref().map_or("-".into(), |h| ns(h.max())),
            r.reports.total(),
            if r.check.is_ok() { "ok" } else { "MISMATCH" },
        );
    }
}

/// Ratios of ours to the fastest peer per scenario, and the worst case.
fn ratios(rows: &[Row], scenarios: &[Scenario]) {
    println!();
    let mut worst: Option<(f64, Scenario, &str)> = None;
    for &sc in scenarios {
        let Some(ours) = rows
            .iter()
            .find(|r| r.engine == BourseHarness::NAME && r.scenario == sc)
        else {
            continue;
        };
        let peers = rows
            .iter()
            .filter(|r| r.engine != BourseHarness::NAME && r.scenario == sc);
        let best_ok = peers
            .clone()
            .filter(|r| r.check.is_ok())
            .max_by(|a, b| a.rate().total_cmp(&b.rate()));
        let best_any = peers.max_by(|a, b| a.rate().total_cmp(&b.rate()));
        if let Some(p) = best_ok {
            let x = ours.rate() / p.rate();
            println!(
                "- {}: bourse / fastest conforming peer ({}) = {x:.2}×",
                sc.name(),
                p.engine
            );
            if worst.is_none_or(|(w, _, _)| x < w) {
                worst = Some((x, sc, p.engine));
            }
        }
        if let Some(p) = best_any {
            println!(
                "- {}: bourse / fastest peer, conforming or not ({}) = {:.2}×",
                sc.name(),
                p.engine,
                ours.rate() / p.rate()
            );
        }
    }
    if let Some((x, sc, p)) = worst {
        println!(
            "- worst case over the scenarios: {x:.2}× ({}, vs {p}; target ≥ 2×: {})",
            sc.name(),
            if x >= 2.0 { "met" } else { "NOT met" }
        );
    }
    for r in rows {
        if let Err(e) = &r.check {
            println!(
                "- check MISMATCH, {} on {}: {e}",
                r.engine,
                r.scenario.name()
            );
        }
    }
}

fn main() {
    let set = settings();
    let overhead = machine::timer_overhead_ns(200_000);
    println!("# Bourse on the harness-shaped stream, beside crates.io peers\n");
    println!("- machine: {}", machine::describe());
    println!("- empty `Instant::now()` pair: {overhead} ns (median; subtracted from every sample)");
    println!(
        "- {} new orders per scenario, {} interleaved throughput pass(es), median shown",
        set.orders, set.passes
    );
    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| selected("HARNESS_SCENARIOS", s.name()))
        .collect();
    let mut rows = Vec::new();
    for &sc in &scenarios {
        let s = Stream::generate(
            sc,
            Params {
                orders: set.orders,
                ..Params::standard(sc)
            },
        );
        describe(&s);
        rows.extend(run_scenario(&s, &set, overhead));
    }
    table(&rows);
    ratios(&rows, &scenarios);
    let ours_ok = rows
        .iter()
        .filter(|r| r.engine == BourseHarness::NAME)
        .all(|r| r.check.is_ok());
    if !ours_ok {
        eprintln!("our engine disagrees with the reference reports");
        std::process::exit(1);
    }
}
