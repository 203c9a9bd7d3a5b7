//! Criterion throughput benches: every engine on the same seeded workload,
//! with 10k and 100k resting orders, in batches of measured ops.
//!
//! Run: `cargo bench -p bourse-benches --bench matching`
//!
//! Each engine first runs the whole workload once untimed and is checked
//! against the reference model (a mismatch is printed; for our engine it
//! panics). Then one sample iteration = the next `BATCH` ops of the measured
//! phase on a live, pre-filled book (timed with `iter_custom`); when the
//! phase is used up the book is rebuilt and pre-filled again, untimed. The
//! reported throughput is in ops (`Throughput::Elements`).

#[path = "peers/mod.rs"]
mod peers;

use bourse_benches::{apply, prefilled, verify, Book, Bourse, Params, Workload};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use peers::{Lobster, Matchcore, RustOrderBook};
use std::hint::black_box;
use std::time::{Duration, Instant};

const BATCH: usize = 10_000;

fn bench_engine<B: Book>(g: &mut BenchmarkGroup<'_, WallTime>, w: &Workload) {
    if !bourse_benches::engine_selected(B::NAME) {
        return;
    }
    match verify::<B>(w) {
        Ok(()) => eprintln!("{}: result matches the reference model", B::NAME),
        Err(e) if B::NAME == Bourse::NAME => panic!("{}: {e}", B::NAME),
        Err(e) => eprintln!("{}: MISMATCH with the reference model: {e}", B::NAME),
    }
    let mut book = prefilled::<B>(w);
    let mut pos = 0usize;
    g.bench_function(B::NAME, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if pos + BATCH > w.ops.len() {
                    book = prefilled::<B>(w);
                    pos = 0;
                }
                let batch = &w.ops[pos..pos + BATCH];
                let t = Instant::now();
                for op in batch {
                    apply(&mut book, black_box(op));
                }
                total += t.elapsed();
                pos += BATCH;
            }
            black_box(&mut book);
            total
        })
    });
}

fn matching(c: &mut Criterion) {
    let ops = bourse_benches::ops_from_env().max(BATCH);
    for (label, n) in [("10k", 10_000usize), ("100k", 100_000)] {
        let w = Workload::generate(Params {
            ops,
            ..Params::standard(n)
        });
        let mut g = c.benchmark_group(format!("matching/{label}"));
        g.throughput(Throughput::Elements(BATCH as u64));
        bench_engine::<Bourse>(&mut g, &w);
        bench_engine::<Matchcore>(&mut g, &w);
        bench_engine::<RustOrderBook>(&mut g, &w);
        bench_engine::<Lobster>(&mut g, &w);
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = matching
}
criterion_main!(benches);
