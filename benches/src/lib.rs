//! Benchmark support shared by the criterion benches (`benches/matching.rs`)
//! and the latency rig (`benches/latency.rs`): a seeded, engine-neutral
//! workload with its own reference model, the `Book` trait that every engine
//! under test is adapted to, our engine's adapter, and machine/timer helpers;
//! and for the harness bench (`benches/harness.rs`) the harness-shaped
//! stream (`harness`), its `HarnessBook` trait and our adapter to it.
//!
//! The crates.io peers (matchcore, rust-order-book, lobster) are
//! dev-dependencies, so their adapters live beside the bench targets in
//! `benches/peers/`.

pub mod book;
pub mod bourse;
pub mod harness;
pub mod harness_bourse;
pub mod machine;
mod refbook;
pub mod workload;

pub use book::{apply, check, prefilled, verify, Book, Resting, Tally};
pub use bourse::{Bourse, Settlement};
pub use harness::{HarnessBook, Msg, Reports, Scenario, Sizing, Stream};
pub use harness_bourse::BourseHarness;
pub use workload::{Expected, Mix, Op, Params, Side, Workload};

/// Measured-op count, overridable with `BOURSE_BENCH_OPS` (for short
/// profiling runs); the default is the standard 1 M.
pub fn ops_from_env() -> usize {
    std::env::var("BOURSE_BENCH_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// Whether engine `name` is selected by `BOURSE_BENCH_ENGINES` (a
/// comma-separated list; unset = all).
pub fn engine_selected(name: &str) -> bool {
    match std::env::var("BOURSE_BENCH_ENGINES") {
        Ok(list) => list.split(',').any(|n| n.trim() == name),
        Err(_) => true,
    }
}
