//! Seeded cross-check: the engine and the naive reference model
//! (`bourse_tests::reference`) run the same random streams side by side;
//! after every command their events must be identical, their live-order
//! counts equal, and `engine.validate()` must pass.
//!
//! `TEST_SEEDS=N` runs seeds 0..N (default 500); `TEST_SEED=S` runs one
//! seed. `TEST_CMDS=N` sets the stream length (default: 300–1000 by seed).
//! A mismatch panics with the seed, the command index, the last commands and
//! both event lists. The client order id window is small (4 to 64 orders,
//! by seed) so that streams cross its edge: ids are reused both inside it
//! (duplicates) and past it (accepted again).

use bourse_tests::gen::{seeded, Features, Gen};
use bourse_tests::reference::{evs_of, Ev, Reference};
use engine::{Engine, EngineConfig, Event, Input, Price, Side};
use std::collections::{BTreeMap, VecDeque};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn show(evs: &[Ev]) -> String {
    evs.iter().map(|e| format!("    {e:?}\n")).collect()
}

/// A coverage key for one event: its kind and reason.
fn kind(e: &Ev) -> String {
    match e {
        Ev::Book { .. } => "book".into(),
        Ev::E(Event::Rejected { reason, .. }) => format!("rejected:{}", reason.name()),
        Ev::E(Event::Canceled { reason, .. }) => format!("canceled:{}", reason.name()),
        Ev::E(Event::Reduced { .. }) => "reduced".into(),
        Ev::E(Event::Halted { reason, .. }) => format!("halted:{}", reason.name()),
        Ev::E(Event::Replaced { priority_kept, .. }) => format!("replaced:kept={priority_kept}"),
        Ev::E(e) => format!("{e:?}")
            .split([' ', '{'])
            .next()
            .unwrap_or("?")
            .to_string(),
    }
}

/// Runs one seed; returns the number of commands applied.
fn run_seed(seed: u64, coverage: &mut BTreeMap<String, u64>) -> usize {
    let n = env_u64("TEST_CMDS").unwrap_or_else(|| seeded(seed).range(300, 1000)) as usize;
    let window = [4u32, 8, 16, 64][(seed % 4) as usize];
    let mut engine = Engine::new(EngineConfig {
        client_order_ids_max: window,
        ..EngineConfig::small()
    });
    let mut events = engine.new_events();
    let mut reference = Reference::with_coid_window(window as u64);
    // (owner, client order id) pairs accepted so far: a second acceptance
    // is a reuse past the window, counted as coverage.
    let mut used = std::collections::BTreeSet::new();
    // Every third seed runs the dense self-trading profile.
    // Every fourth seed also cancels by client order id and requeues.
    let features = Features {
        dense: seed % 3 == 2,
        client_ids: seed % 4 == 1,
        // Every fifth seed arms cancel-on-disconnect and loses sessions.
        cod: seed % 5 == 3,
        ..Features::default()
    };
    let mut gen = Gen::with_features(seed, features);
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
                "seed {seed}, command #{i} (replay: TEST_SEED={seed})\nlast commands:\n{cmds}engine events:\n{}reference events:\n{}",
                show(&got),
                show(&want)
            )
        };
        for e in &want {
            *coverage.entry(kind(e)).or_default() += 1;
            if let Ev::E(Event::Accepted {
                owner,
                client_order_id,
                ..
            }) = e
            {
                if !used.insert((*owner, *client_order_id)) {
                    *coverage.entry("accepted:coid_reused".into()).or_default() += 1;
                }
            }
        }
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
        if i % 25 == 24 {
            for o in reference.live_orders() {
                let v = engine.order(o.id);
                let got = v.map(|v| {
                    (
                        v.owner,
                        v.instrument,
                        v.side,
                        v.remaining,
                        v.visible,
                        v.waiting_stop,
                    )
                });
                let want = (
                    o.owner,
                    o.instrument,
                    o.side,
                    o.remaining,
                    o.visible,
                    !o.resting,
                );
                assert_eq!(got, Some(want), "order {:?}\n{}", o.id, context());
                if o.resting {
                    assert_eq!(
                        v.map(|v| v.price),
                        Some(o.price),
                        "order {:?}\n{}",
                        o.id,
                        context()
                    );
                }
            }
            for s in gen.specs() {
                assert_eq!(
                    engine.last_trade(s.id),
                    reference.last_trade(s.id).map(Price),
                    "{}",
                    context()
                );
                assert_eq!(
                    engine.is_halted(s.id),
                    reference.is_halted(s.id),
                    "{}",
                    context()
                );
                for side in [Side::Buy, Side::Sell] {
                    assert_eq!(
                        engine.queue_ids(s.id, side),
                        reference.queue_ids(s.id, side),
                        "queues {:?} {side:?}\n{}",
                        s.id,
                        context()
                    );
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
    let seeds: Vec<u64> = match env_u64("TEST_SEED") {
        Some(s) => vec![s],
        None => (0..env_u64("TEST_SEEDS").unwrap_or(500)).collect(),
    };
    let mut total = 0;
    let mut coverage = BTreeMap::new();
    for &seed in &seeds {
        total += run_seed(seed, &mut coverage);
    }
    println!("{} seeds, {total} commands cross-checked", seeds.len());
    for (k, n) in &coverage {
        println!("  {k:<36} {n}");
    }
    if seeds.len() >= 50 {
        // Every behaviour the streams are meant to reach must be reached.
        for k in [
            "Trade",
            "Triggered",
            "reduced",
            "replaced:kept=true",
            "replaced:kept=false",
            "canceled:stp",
            "canceled:expired",
            "canceled:ioc_remainder",
            "canceled:mass_cancel",
            "canceled:circuit_breaker",
            "canceled:user",
            "halted:circuit_breaker",
            "halted:operator",
            "rejected:fok_not_fillable",
            "rejected:post_only_would_cross",
            "rejected:price_out_of_band",
            "rejected:limit_exceeded",
            "rejected:instrument_halted",
            "rejected:duplicate_client_order_id",
            "accepted:coid_reused",
            "rejected:overflow",
            "rejected:invalid_qty",
            "rejected:invalid_price",
            "rejected:unknown_order",
            "rejected:not_order_owner",
            "rejected:unknown_instrument",
            "rejected:invalid_time",
            "rejected:instrument_exists",
            "rejected:invalid_instrument",
            "book",
        ] {
            assert!(coverage.contains_key(k), "the streams never produced {k}");
        }
    }
}
