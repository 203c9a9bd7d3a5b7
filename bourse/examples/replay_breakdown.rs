//! Where `bourse replay DIR`'s time goes, on a real journal (say the one
//! `bourse pipeline --rate 200000 --duration-s 8` leaves in
//! `bourse-data/p0`): the journal side alone (read + verify + decode, one
//! thread), the engine side alone (`Engine::apply` over the same inputs
//! already in memory, in total and per command kind), the whole replay as
//! `bourse replay` runs it (`replay_dir`: one thread), and the same with
//! the journal side on a second thread (`journal::replay_overlapped`).
//! Wall and CPU seconds for each, so a loaded machine shows as such.
//!
//! `cargo run --release -p bourse --example replay_breakdown -- DIR [ROUNDS]`
//! (ROUNDS of each measurement, default 3; medians printed).
//!
//! Per-kind times come from a clock read around each `apply`; the clock's
//! own cost (measured in the same loop shape) is subtracted and printed.

use bourse::journal_cli::replay_dir;
use engine::{Command, Engine, EngineConfig, Input, OrderType, Tif};
use journal::FsStorage;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The command kinds the report tells apart.
fn kind(c: &Command) -> &'static str {
    match c {
        Command::NewOrder(o) => match (o.order_type, o.tif) {
            (OrderType::Market, _) => "new_order market",
            (_, Tif::Ioc) => "new_order limit ioc",
            (_, Tif::Fok) => "new_order limit fok",
            _ => "new_order limit gtc/gtd",
        },
        Command::Cancel { .. } => "cancel",
        Command::Replace { .. } => "replace",
        Command::MassCancel { .. } => "mass_cancel",
        Command::Transfer { .. } => "transfer",
        Command::OpenAccount(..) => "open_account",
        Command::AddInstrument(_) => "add_instrument",
        _ => "other",
    }
}

/// This process's CPU time (user + system, all threads), in seconds.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields 14 and 15 (utime, stime) in clock ticks, after the `comm` field.
    let after = stat.rsplit(") ").next().unwrap_or("");
    let f: Vec<u64> = after
        .split(' ')
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// Wall and CPU seconds of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (t0, c0) = (Instant::now(), cpu_secs());
    let r = f();
    (r, t0.elapsed().as_secs_f64(), cpu_secs() - c0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One line: the median wall and CPU seconds of `rounds` runs of `f`.
fn report(what: &str, n: usize, rounds: usize, mut f: impl FnMut()) {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let ((), w, c) = timed(&mut f);
        wall.push(w);
        cpu.push(c);
    }
    let (w, c) = (median(wall), median(cpu));
    println!(
        "{what}: {w:.3} s wall ({:.2} M/s), {c:.3} s CPU ({:.0} ns/input)",
        n as f64 / w / 1e6,
        c * 1e9 / n as f64
    );
}

/// The journal side alone: `journal::replay` or `replay_overlapped` with a
/// closure that only folds the seqs in.
fn journal_side(dir: &Path, overlapped: bool) {
    let mut fold = 0u64;
    let f = |i: &Input| {
        fold = fold.wrapping_add(std::hint::black_box(i).seq.0);
        Ok::<(), Infallible>(())
    };
    let r = match overlapped {
        true => journal::replay_overlapped(&FsStorage, dir, 1, u64::MAX, f),
        false => journal::replay(&FsStorage, dir, 1, u64::MAX, f),
    };
    r.map_err(journal::ReplayError::into_journal)
        .expect("the journal replays");
    std::hint::black_box(fold);
}

/// `Engine::apply` over `inputs`, each timed; prints ns per kind.
fn per_kind(inputs: &[Input]) {
    let mut e = Engine::new(EngineConfig::default());
    let mut ev = e.new_events();
    // The clock pair's own cost, in the same loop shape.
    let t = Instant::now();
    let mut clock_ns = 0u64;
    for _ in 0..inputs.len().min(1_000_000) {
        let a = Instant::now();
        clock_ns += std::hint::black_box(a.elapsed().as_nanos() as u64);
    }
    let clock = t.elapsed().as_nanos() as f64 / inputs.len().clamp(1, 1_000_000) as f64;
    std::hint::black_box(clock_ns);
    let mut per: BTreeMap<&str, (u64, f64, u64)> = BTreeMap::new();
    for i in inputs {
        let a = Instant::now();
        e.apply(i, &mut ev);
        let ns = a.elapsed().as_nanos() as f64;
        let k = per.entry(kind(&i.command)).or_default();
        k.0 += 1;
        k.1 += (ns - clock).max(0.0);
        k.2 += ev.len() as u64;
    }
    let total: f64 = per.values().map(|k| k.1).sum();
    println!("engine apply per kind (clock cost {clock:.0} ns per apply subtracted):");
    for (name, (n, ns, events)) in per {
        println!(
            "  {name:>22}: {n:>9} inputs, {:>6.0} ns each, {:>5.2} events each, {:>5.1}% of apply time",
            ns / n as f64,
            events as f64 / n as f64,
            100.0 * ns / total.max(1.0)
        );
    }
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: replay_breakdown DIR [ROUNDS]"),
    );
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut inputs = Vec::new();
    journal::replay(&FsStorage, &dir, 1, u64::MAX, |i| {
        inputs.push(*i);
        Ok::<(), Infallible>(())
    })
    .map_err(journal::ReplayError::into_journal)
    .expect("the journal replays");
    let n = inputs.len();
    println!("{n} inputs in {}, {rounds} rounds, medians", dir.display());
    report(
        "journal side, one thread (read + verify + decode)",
        n,
        rounds,
        || journal_side(&dir, false),
    );
    report(
        "journal side, overlapped (same, on a second thread)",
        n,
        rounds,
        || journal_side(&dir, true),
    );
    let mut hash = 0u128;
    report("engine side (apply from memory)", n, rounds, || {
        let mut e = Engine::new(EngineConfig::default());
        let mut ev = e.new_events();
        for i in &inputs {
            e.apply(i, &mut ev);
        }
        hash = e.state_hash();
    });
    let mut replayed = 0u128;
    report("bourse replay (replay_dir: one thread)", n, rounds, || {
        let (_, r) = replay_dir(&dir, EngineConfig::default()).expect("replay");
        replayed = r.state_hash;
    });
    assert_eq!(replayed, hash, "replay reproduces the state hash");
    report(
        "replay_overlapped into an engine (two threads)",
        n,
        rounds,
        || {
            let mut e = Engine::new(EngineConfig::default());
            let mut ev = e.new_events();
            journal::replay_overlapped(&FsStorage, &dir, 1, u64::MAX, |i| {
                e.apply(i, &mut ev);
                Ok::<(), Infallible>(())
            })
            .map_err(journal::ReplayError::into_journal)
            .expect("the journal replays");
            replayed = e.state_hash();
        },
    );
    assert_eq!(replayed, hash, "the overlapped replay reproduces it too");
    per_kind(&inputs);
}
