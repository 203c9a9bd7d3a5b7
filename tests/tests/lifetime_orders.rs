//! Lifetime limits (issue #12 items 1 and 5): nothing on the order side runs
//! out over a partition's life while its live state stays small.
//!
//! - A client order id counts as a duplicate only while one of the owner's
//!   live orders uses it or one of the last W accepted orders did (W =
//!   `client_order_ids_max`); outside that horizon it may be reused.
//! - An owner record is reused once its owner has no live order and no
//!   order in the window, so `owners_max` bounds owners at once, not ever.
//! - Snapshots taken on either side of the window edge restore to the same
//!   hash and the same future.
//!
//! The issue's full repro (2.1 M order + cancel pairs with the default
//! capacities, a few seconds in the tests profile) and a version that
//! crosses a small window many times, checked against the reference model.

use bourse_tests::gen::{instrument, seeded, Gen};
use bourse_tests::reference::{evs_of, Ev, Reference};
use engine::*;

const INST: InstrumentId = InstrumentId(1);

fn buy(owner: u64, coid: u64, price: u64) -> Command {
    Command::NewOrder(NewOrder {
        owner: OwnerId(owner),
        instrument: INST,
        client_order_id: ClientOrderId(coid),
        side: Side::Buy,
        order_type: OrderType::Limit,
        price: Some(Price(price)),
        qty: Qty(1),
        tif: Tif::Gtc,
        expire_at: None,
        post_only: false,
        stp: Stp::None,
        display_qty: None,
        trigger_price: None,
    })
}

fn cancel(owner: u64, id: u64) -> Command {
    Command::Cancel {
        owner: OwnerId(owner),
        order_id: OrderId(id),
    }
}

fn accepted(id: u64, owner: u64, coid: u64, price: u64) -> Ev {
    Ev::E(Event::Accepted {
        order_id: OrderId(id),
        client_order_id: ClientOrderId(coid),
        owner: OwnerId(owner),
        instrument: INST,
        side: Side::Buy,
        price: Some(Price(price)),
        qty: Qty(1),
    })
}

/// Every order cancelled here one by one is a buy of 1 at 90.
fn canceled(id: u64, owner: u64) -> Ev {
    Ev::E(Event::Canceled {
        order_id: OrderId(id),
        owner: OwnerId(owner),
        side: Side::Buy,
        price: Some(Price(90)),
        qty: Qty(1),
        reason: CancelReason::User,
    })
}

fn rejected(coid: u64, reason: RejectReason) -> Ev {
    Ev::E(Event::Rejected {
        target: RejectTarget::ClientOrder(ClientOrderId(coid)),
        reason,
    })
}

fn cfg(window: u32, owners_max: u32) -> EngineConfig {
    EngineConfig {
        client_order_ids_max: window,
        owners_max,
        ..EngineConfig::small()
    }
}

/// An engine (and reference) with instrument 1 and a sequence counter.
struct Run {
    e: Engine,
    ev: Events,
    r: Option<Reference>,
    seq: u64,
}

impl Run {
    /// With `check_reference`, every step is also checked against the
    /// reference model (which does not model owner capacity).
    fn new(c: EngineConfig, check_reference: bool) -> Run {
        let e = Engine::new(c);
        let ev = e.new_events();
        let r = check_reference.then(|| Reference::with_coid_window(c.client_order_ids_max as u64));
        let mut run = Run { e, ev, r, seq: 0 };
        run.apply(Command::AddInstrument(instrument(1, 1, 100)));
        run
    }

    fn apply(&mut self, command: Command) -> Vec<Ev> {
        self.seq += 1;
        let input = Input {
            seq: Seq(self.seq),
            now: Timestamp(1_000),
            command,
        };
        self.e.apply(&input, &mut self.ev);
        let got = evs_of(&self.ev);
        if let Some(r) = &mut self.r {
            assert_eq!(r.apply(&input), got, "reference, seq {}", self.seq);
        }
        got
    }

    /// Runs the steps; each must give exactly its events. Validates after each.
    fn steps(&mut self, name: &str, steps: Vec<(Command, Vec<Ev>)>) {
        for (k, (command, want)) in steps.into_iter().enumerate() {
            let got = self.apply(command);
            assert_eq!(got, want, "{name}: step {k}: {command:?}");
            self.e.validate().unwrap();
        }
    }

    /// An order + cancel pair that must be accepted as order `id`.
    fn pair(&mut self, owner: u64, coid: u64, id: u64) {
        let want = vec![accepted(id, owner, coid, 90)];
        assert_eq!(self.apply(buy(owner, coid, 90)), want, "order {id}");
        assert_eq!(self.apply(cancel(owner, id)), vec![canceled(id, owner)]);
    }
}

/// The issue's repro: order (owner 1, coid i, buy 1 @ 90) + cancel, `n`
/// times, with the default capacities: every order is accepted.
fn order_cancel_pairs(n: u64) {
    let mut run = Run::new(EngineConfig::default(), false);
    for i in 1..=n {
        run.pair(1, i, i);
    }
    run.e.validate().unwrap();
    assert_eq!(run.e.live_orders(), 0);
}

#[test]
fn issue_12_repro_two_million_pairs_never_run_out() {
    // About 5 s in the tests profile (opt-level 1): it always runs.
    order_cancel_pairs(2_100_000);
}

#[test]
fn small_window_crossed_many_times_never_runs_out() {
    // 10 × W pairs with W = 64 (and the owner table of the small config).
    let mut run = Run::new(cfg(64, 256), true);
    for i in 1..=640 {
        run.pair(1, i, i);
        if i % 61 == 0 {
            run.e.validate().unwrap();
        }
    }
    // Reusing the ids of 64 orders ago and older is fine, newer is not.
    run.steps(
        "reuse at the edge",
        vec![
            (
                buy(1, 640 - 63, 90),
                vec![rejected(577, RejectReason::DuplicateClientOrderId)],
            ),
            (buy(1, 640 - 64, 90), vec![accepted(641, 1, 576, 90)]),
        ],
    );
}

#[test]
fn reuse_inside_window_rejected_outside_accepted() {
    // W = 4: a duplicate is an id among the last 4 accepted orders.
    let mut run = Run::new(cfg(4, 256), true);
    let dup = |coid| rejected(coid, RejectReason::DuplicateClientOrderId);
    run.steps(
        "window edge",
        vec![
            (buy(1, 10, 90), vec![accepted(1, 1, 10, 90)]),
            (cancel(1, 1), vec![canceled(1, 1)]),
            (buy(1, 10, 90), vec![dup(10)]),
            // Another owner's id 10 is its own.
            (buy(2, 10, 90), vec![accepted(2, 2, 10, 90)]),
            (cancel(2, 2), vec![canceled(2, 2)]),
            (buy(1, 11, 90), vec![accepted(3, 1, 11, 90)]),
            (cancel(1, 3), vec![canceled(3, 1)]),
            (buy(1, 12, 90), vec![accepted(4, 1, 12, 90)]),
            (cancel(1, 4), vec![canceled(4, 1)]),
            // Orders 1..=4 are the last 4: id 10 (order 1) still counts.
            (buy(1, 10, 90), vec![dup(10)]),
            // A rejected order uses no id: the window has not moved.
            (buy(1, 10, 90), vec![dup(10)]),
            (buy(1, 13, 90), vec![accepted(5, 1, 13, 90)]),
            (cancel(1, 5), vec![canceled(5, 1)]),
            // Order 1 left the window with order 5: id 10 is free again,
            // id 11 (order 3) is not.
            (buy(1, 11, 90), vec![dup(11)]),
            (buy(1, 10, 90), vec![accepted(6, 1, 10, 90)]),
            (cancel(1, 6), vec![canceled(6, 1)]),
            (buy(1, 10, 90), vec![dup(10)]),
        ],
    );
}

#[test]
fn live_order_id_taken_however_old() {
    let w = 4u64;
    let mut run = Run::new(cfg(w as u32, 256), true);
    run.steps(
        "resting",
        vec![(buy(1, 7, 90), vec![accepted(1, 1, 7, 90)])],
    );
    // 3 × W orders of the same owner come and go around it.
    for k in 0..3 * w {
        run.pair(1, 100 + k, 2 + k);
    }
    let next = 2 + 3 * w;
    run.steps(
        "old live order",
        vec![
            (
                buy(1, 7, 90),
                vec![rejected(7, RejectReason::DuplicateClientOrderId)],
            ),
            // Ids of the orders that came and went before the window: free.
            (buy(1, 100, 90), vec![accepted(next, 1, 100, 90)]),
            (cancel(1, next), vec![canceled(next, 1)]),
            // The old order leaves the book: its id is free at once.
            (cancel(1, 1), vec![canceled(1, 1)]),
            (buy(1, 7, 90), vec![accepted(next + 1, 1, 7, 90)]),
        ],
    );
}

#[test]
fn owners_beyond_owners_max_over_time() {
    // Five owner records, W = 2; owners 1 and 2 keep an order resting.
    let mut run = Run::new(cfg(2, 5), false);
    run.steps(
        "two live owners",
        vec![
            (buy(1, 1, 80), vec![accepted(1, 1, 1, 80)]),
            (buy(2, 1, 81), vec![accepted(2, 2, 1, 81)]),
        ],
    );
    // 297 more owners come and go: records are bounded by what is live or
    // in the window, not by history.
    let mut x = 3;
    for owner in 3..300 {
        run.pair(owner, 1, x);
        x += 1;
    }
    let cap = |coid| rejected(coid, RejectReason::CapacityExceeded);
    let open_orders = |owner| Command::QueryOpenOrders {
        owner: OwnerId(owner),
        instrument: None,
    };
    run.steps(
        "full while every record is needed",
        vec![
            (buy(500, 5, 90), vec![accepted(x, 500, 5, 90)]),
            (buy(501, 5, 90), vec![accepted(x + 1, 501, 5, 90)]),
            (buy(502, 5, 90), vec![accepted(x + 2, 502, 5, 90)]),
            // Records: 1, 2, 500 (live), 501, 502 (live, in the window).
            (buy(503, 5, 90), vec![cap(5)]),
            // Owner 501 has no live order, but its order is in the window.
            (cancel(501, x + 1), vec![canceled(x + 1, 501)]),
            (buy(503, 5, 90), vec![cap(5)]),
            // Owner 500's only order is older than the window: leaving the
            // book frees its record.
            (cancel(500, x), vec![canceled(x, 500)]),
            (buy(503, 5, 90), vec![accepted(x + 3, 503, 5, 90)]),
            // That order pushed owner 501's out of the window: one free record.
            (open_orders(500), vec![]),
            (buy(500, 5, 90), vec![accepted(x + 4, 500, 5, 90)]),
            (buy(504, 1, 90), vec![cap(1)]),
            // Mass cancel of a long-lived owner finds its order; then the
            // record is free.
            (
                Command::MassCancel {
                    owner: OwnerId(1),
                    instrument: None,
                    side: None,
                },
                vec![Ev::E(Event::Canceled {
                    order_id: OrderId(1),
                    owner: OwnerId(1),
                    side: Side::Buy,
                    price: Some(Price(80)),
                    qty: Qty(1),
                    reason: CancelReason::MassCancel,
                })],
            ),
            (buy(504, 1, 90), vec![accepted(x + 5, 504, 1, 90)]),
            (open_orders(1), vec![]),
        ],
    );
}

/// Snapshots every few commands of random streams with a small window and
/// few owner records restore to the same hash, validate, and produce the
/// same events as the original from there on; a shorter window restores
/// too, a longer one than the snapshot holds is refused.
#[test]
fn snapshots_round_trip_across_window_edges() {
    for seed in 0..12u64 {
        let window = [3u32, 8, 32][(seed % 3) as usize];
        let c = EngineConfig {
            owners_max: 64,
            ..cfg(window, 64)
        };
        let mut gen = Gen::new(seed);
        let mut r = Reference::with_coid_window(window as u64);
        let mut e = Engine::new(c);
        let mut ev = e.new_events();
        let mut rng = seeded(seed ^ 0x5eed);
        for k in 0..400 {
            let input = gen.next(&r);
            let want = r.apply(&input);
            e.apply(&input, &mut ev);
            assert_eq!(evs_of(&ev), want, "seed {seed} #{k}: {input:?}");
            if rng.chance_pct(15) {
                let bytes = e.snapshot();
                let back = Engine::restore(c, &bytes)
                    .unwrap_or_else(|err| panic!("seed {seed} #{k}: {err}"));
                assert_eq!(back.state_hash(), e.state_hash(), "seed {seed} #{k}");
                // Go on with the restored engine: the reference checks its future.
                e = back;
                let shorter = EngineConfig {
                    client_order_ids_max: 2,
                    ..c
                };
                Engine::restore(shorter, &bytes)
                    .unwrap_or_else(|err| panic!("seed {seed} #{k} shorter: {err}"));
                let longer = EngineConfig {
                    client_order_ids_max: window + 1,
                    ..c
                };
                let seen = r.next_order_id() - 1;
                match Engine::restore(longer, &bytes) {
                    Ok(_) => assert!(seen <= window as u64, "seed {seed} #{k}"),
                    Err(SnapshotError::Capacity { .. }) => assert!(seen > window as u64),
                    Err(err) => panic!("seed {seed} #{k} longer: {err}"),
                }
            }
        }
        e.validate().unwrap();
    }
}
