//! Latency rig: the same seeded workload through every engine in one process,
//! each measured op timed on its own, and a markdown table at the end.
//!
//! Run: `cargo bench -p bourse-benches --bench latency`
//! (`BOURSE_BENCH_OPS=n` shortens the measured phase, `BOURSE_BENCH_ENGINES=
//! bourse,matchcore` selects engines — both for profiling runs only).
//!
//! Method, per engine and book size (10k and 100k resting orders):
//! 1. Throughput: 3 passes, each on a fresh book with the pre-fill applied
//!    untimed; the whole measured phase (1 M ops) is timed as one interval,
//!    so no per-op timer cost is in it. ops/s is the median pass. The first
//!    pass's result is checked against the workload's reference model
//!    (`bourse_benches::check`): fills, traded lots, rejects, resting orders
//!    and lots must all agree, or the row is marked.
//! 2. Latency: one more pass where every op is bracketed by `Instant::now()`
//!    (vDSO `clock_gettime`, no rdtsc); the median cost of an empty pair,
//!    measured at start-up, is subtracted from each sample (floored at 1 ns)
//!    before it goes into an `hdrhistogram::Histogram<u64>` (3 significant
//!    digits). Percentiles therefore include the engine's whole handling of
//!    the op, with the adapter's command building and result reading.

#[path = "peers/mod.rs"]
mod peers;

use bourse_benches::machine::fmt_ns as ns;
use bourse_benches::{machine, prefilled, Book, Bourse, Op, Params, Workload};
use hdrhistogram::Histogram;
use peers::{Lobster, Matchcore, RustOrderBook};
use std::hint::black_box;
use std::time::Instant;

struct Row {
    engine: &'static str,
    book: usize,
    ops_per_s: f64,
    hist: Histogram<u64>,
    /// The same samples split by op kind: passive limit, cancel, crossing IOC.
    by_kind: [Histogram<u64>; 3],
    check: Result<(), String>,
}

/// Op kinds in `Row::by_kind` order.
const KINDS: [&str; 3] = ["limit", "cancel", "cross"];

fn kind_of(op: &Op) -> usize {
    match op {
        Op::Limit { .. } => 0,
        Op::Cancel { .. } => 1,
        Op::Cross { .. } => 2,
    }
}

fn measure<B: Book>(w: &Workload, overhead: u64) -> Row {
    let mut rates = Vec::new();
    let mut check = Ok(());
    for pass in 0..3 {
        let mut b = prefilled::<B>(w);
        let t = Instant::now();
        for op in &w.ops {
            bourse_benches::apply(&mut b, black_box(op));
        }
        let elapsed = t.elapsed();
        black_box(&mut b);
        rates.push(w.ops.len() as f64 / elapsed.as_secs_f64());
        if pass == 0 {
            check = bourse_benches::check(b.tally(), b.resting(), &w.expected);
        }
    }
    rates.sort_by(f64::total_cmp);

    let new_hist =
        || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    let mut hist = new_hist();
    let mut by_kind = [new_hist(), new_hist(), new_hist()];
    let mut b = prefilled::<B>(w);
    for op in &w.ops {
        let t0 = Instant::now();
        bourse_benches::apply(&mut b, black_box(op));
        let ns = t0.elapsed().as_nanos() as u64;
        let v = ns.saturating_sub(overhead).max(1);
        hist.saturating_record(v);
        by_kind[kind_of(op)].saturating_record(v);
    }
    black_box(&mut b);
    Row {
        engine: B::NAME,
        book: w.params.book_orders,
        ops_per_s: rates[rates.len() / 2],
        hist,
        by_kind,
        check,
    }
}

fn mops(r: f64) -> String {
    format!("{:.2} M", r / 1e6)
}

fn book_label(n: usize) -> String {
    if n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// The per-op-kind table: where each engine's time goes.
fn print_kinds(rows: &[Row]) {
    println!("\nPer op kind (latency pass; mean includes the timer's residue):\n");
    println!("| engine | book | op | count | mean | p50 | p99 | p99.9 |");
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        for (k, h) in KINDS.iter().zip(&r.by_kind) {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.engine,
                book_label(r.book),
                k,
                h.len(),
                ns(h.mean() as u64),
                ns(h.value_at_quantile(0.50)),
                ns(h.value_at_quantile(0.99)),
                ns(h.value_at_quantile(0.999)),
            );
        }
    }
}

fn main() {
    let overhead = machine::timer_overhead_ns(200_000);
    println!("# Bourse matching latency vs crates.io peers\n");
    println!("- machine: {}", machine::describe());
    println!("- empty `Instant::now()` pair: {overhead} ns (median; subtracted from every sample)");
    let ops = bourse_benches::ops_from_env();
    let mut rows: Vec<Row> = Vec::new();
    for book in [10_000usize, 100_000] {
        let w = Workload::generate(Params {
            ops,
            ..Params::standard(book)
        });
        let n = w.ops.len() as f64;
        println!(
            "- workload {}: {} pre-fill + {} measured ops (limit {:.1}% / cancel {:.1}% / cross {:.1}%), \
             {} fills, {} IOC remainders, {} resting at the end (max {}), ≤ {} levels a side, prices {}..{}",
            book_label(book),
            w.prefill.len(),
            w.ops.len(),
            100.0 * w.mix.limits as f64 / n,
            100.0 * w.mix.cancels as f64 / n,
            100.0 * w.mix.crosses as f64 / n,
            w.expected.trades,
            w.expected.ioc_remainders,
            w.expected.resting_orders,
            w.max_live,
            w.max_levels,
            w.min_price,
            w.max_price,
        );
        macro_rules! run {
            ($t:ty) => {
                if bourse_benches::engine_selected(<$t as Book>::NAME) {
                    eprintln!(
                        "measuring {} on the {} book…",
                        <$t as Book>::NAME,
                        book_label(book)
                    );
                    rows.push(measure::<$t>(&w, overhead));
                }
            };
        }
        run!(Bourse);
        run!(Matchcore);
        run!(RustOrderBook);
        run!(Lobster);
    }

    println!("\n| engine | book | ops/s | p50 | p99 | p99.9 | max | check |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.engine,
            book_label(r.book),
            mops(r.ops_per_s),
            ns(r.hist.value_at_quantile(0.50)),
            ns(r.hist.value_at_quantile(0.99)),
            ns(r.hist.value_at_quantile(0.999)),
            ns(r.hist.max()),
            if r.check.is_ok() { "ok" } else { "MISMATCH" },
        );
    }

    print_kinds(&rows);

    println!();
    let mut ours_ok = true;
    for book in [10_000usize, 100_000] {
        let ours = rows
            .iter()
            .find(|r| r.engine == Bourse::NAME && r.book == book);
        let best_peer = rows
            .iter()
            .filter(|r| r.engine != Bourse::NAME && r.book == book)
            .max_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
        let best_correct_peer = rows
            .iter()
            .filter(|r| r.engine != Bourse::NAME && r.book == book && r.check.is_ok())
            .max_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
        if let (Some(o), Some(p)) = (ours, best_correct_peer) {
            println!(
                "- {} book: bourse / fastest peer that passes the check ({}) = {:.2}×",
                book_label(book),
                p.engine,
                o.ops_per_s / p.ops_per_s
            );
        }
        if let (Some(o), Some(p)) = (ours, best_peer) {
            let ratio = o.ops_per_s / p.ops_per_s;
            println!(
                "- {} book: bourse / fastest peer ({}) throughput = {:.2}× (target ≥ 2×: {}); bourse p99 {} (target ≤ 250 ns: {})",
                book_label(book),
                p.engine,
                ratio,
                if ratio >= 2.0 { "met" } else { "NOT met" },
                ns(o.hist.value_at_quantile(0.99)),
                if o.hist.value_at_quantile(0.99) <= 250 { "met" } else { "NOT met" },
            );
        }
    }
    let engines: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for r in &rows {
            if !v.contains(&r.engine) {
                v.push(r.engine);
            }
        }
        v
    };
    for e in engines {
        let small = rows.iter().find(|r| r.engine == e && r.book == 10_000);
        let large = rows.iter().find(|r| r.engine == e && r.book == 100_000);
        if let (Some(s), Some(l)) = (small, large) {
            let keep = l.ops_per_s / s.ops_per_s;
            let target = if e == Bourse::NAME {
                if keep >= 0.70 {
                    " (target ≥ 70%: met)"
                } else {
                    " (target ≥ 70%: NOT met)"
                }
            } else {
                ""
            };
            println!(
                "- {e}: 100k keeps {:.0}% of its 10k throughput{target}",
                100.0 * keep
            );
        }
    }
    for r in &rows {
        if let Err(e) = &r.check {
            println!(
                "- check MISMATCH, {} on the {} book: {e}",
                r.engine,
                book_label(r.book)
            );
            if r.engine == Bourse::NAME {
                ours_ok = false;
            }
        }
    }
    if !ours_ok {
        eprintln!("our engine disagrees with the reference model");
        std::process::exit(1);
    }
}
