//! Seeded cross-check: the engine and the naive reference model
//! (`bourse_tests::reference`) run the same random streams side by side;
//! after every command their events must be identical, their live-order
//! counts equal, and `engine.validate()` must pass.
//!
//! `BOURSE_SEEDS=N` runs seeds 0..N (default 200); `BOURSE_SEED=S` runs one
//! seed. `BOURSE_CMDS=N` sets the stream length (default: 300–1000 by seed).
//! A mismatch panics with the seed, the command index, the last commands and
//! both event lists.

use bourse_tests::gen::{Gen, Rng};
use bourse_tests::reference::{evs_of, Ev, Reference};
use engine::{Engine, EngineConfig, Input, Side};
use std::collections::VecDeque;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn show(evs: &[Ev]) -> String {
    evs.iter().map(|e| format!("    {e:?}\n")).collect()
}

/// Runs one seed; returns the number of commands applied.
fn run_seed(seed: u64) -> usize {
    let n = env_u64("BOURSE_CMDS").unwrap_or_else(|| Rng::new(seed).range(300, 1000)) as usize;
    let mut engine = Engine::new(EngineConfig::small());
    let mut events = engine.new_events();
    let mut reference = Reference::new();
    let mut gen = Gen::new(seed);
    let mut recent: VecDeque<Input> = VecDeque::new();
    for i in 0..n {
        let input = gen.next(&reference);
        if recent.len() == 10 {
            recent.pop_front();
        }
        recent.push_back(input);
        engine.apply(&input, &mut events);
        let got = evs_of(&events);
        let want = reference.apply(&input);
        let context = || {
            let cmds: String = recent.iter().map(|c| format!("    {c:?}\n")).collect();
            format!(
                "seed {seed}, command #{i} (replay: BOURSE_SEED={seed})\nlast commands:\n{cmds}engine events:\n{}reference events:\n{}",
                show(&got),
                show(&want)
            )
        };
        if got != want {
            panic!("event mismatch\n{}", context());
        }
        if let Err(e) = engine.validate() {
            panic!("engine.validate() failed: {e}\n{}", context());
        }
        if engine.live_orders() != reference.live_count() {
            panic!(
                "live orders: engine {} reference {}\n{}",
                engine.live_orders(),
                reference.live_count(),
                context()
            );
        }
        if i % 50 == 49 {
            for s in gen.specs() {
                for side in [Side::Buy, Side::Sell] {
                    assert_eq!(
                        engine.book_side(s.id, side),
                        reference.book_side(s.id, side),
                        "book {:?} {side:?}\n{}",
                        s.id,
                        context()
                    );
                }
            }
        }
    }
    n
}

#[test]
fn engine_matches_reference_on_random_streams() {
    let seeds: Vec<u64> = match env_u64("BOURSE_SEED") {
        Some(s) => vec![s],
        None => (0..env_u64("BOURSE_SEEDS").unwrap_or(200)).collect(),
    };
    let mut total = 0;
    for &seed in &seeds {
        total += run_seed(seed);
    }
    println!("{} seeds, {total} commands cross-checked", seeds.len());
}
