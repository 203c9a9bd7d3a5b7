//! The API an embedder needs (issue #14), as data: commands in, expected
//! events out. Cancels and replaces name the order's side and price; orders
//! are found and cancelled by (owner, client order id); a replace can always
//! lose priority; depth queries allocate nothing and agree with `book_side`.
use engine::rng::SplitMix64;
use engine::*;

mod common;
use common::{limit, order, spec, I};

fn replace(owner: u64, id: u64, price: Option<u64>, qty: Option<u64>, requeue: bool) -> Command {
    Command::Replace {
        owner: OwnerId(owner),
        order_id: OrderId(id),
        price: price.map(Price),
        qty: qty.map(Qty),
        requeue,
    }
}

fn by_coid(owner: u64, coid: u64) -> Command {
    Command::CancelByClientId {
        owner: OwnerId(owner),
        client_order_id: ClientOrderId(coid),
    }
}

fn canceled(id: u64, owner: u64, side: Side, price: Option<u64>, qty: u64) -> Event {
    canceled_for(id, owner, side, price, qty, CancelReason::User)
}

fn canceled_for(
    id: u64,
    owner: u64,
    side: Side,
    price: Option<u64>,
    qty: u64,
    reason: CancelReason,
) -> Event {
    Event::Canceled {
        order_id: OrderId(id),
        owner: OwnerId(owner),
        side,
        price: price.map(Price),
        qty: Qty(qty),
        reason,
    }
}

/// An engine with instrument 1, and a runner that applies a command at
/// time `now`, checks every invariant, and returns the events.
struct Rig {
    e: Engine,
    ev: Events,
    seq: u64,
}

impl Rig {
    fn new() -> Rig {
        let e = Engine::new(EngineConfig::small());
        let ev = e.new_events();
        let mut r = Rig { e, ev, seq: 0 };
        assert!(matches!(
            r.run(Command::AddInstrument(spec()))[..],
            [Event::Resumed { .. }] | []
        ));
        r
    }

    fn run_at(&mut self, now: u64, c: Command) -> Vec<Event> {
        self.seq += 1;
        let input = Input {
            seq: Seq(self.seq),
            now: Timestamp(now),
            command: c,
        };
        self.e.apply(&input, &mut self.ev);
        self.e.validate().unwrap();
        self.ev.as_slice().to_vec()
    }

    fn run(&mut self, c: Command) -> Vec<Event> {
        self.run_at(0, c)
    }

    /// Runs `c` and checks its events are exactly `want`.
    fn expect(&mut self, c: Command, want: &[Event]) {
        let got = self.run(c);
        assert_eq!(got, want, "events of {c:?}");
    }
}

#[test]
fn every_cancel_names_side_and_price() {
    let mut r = Rig::new();
    r.run(limit(1, 1, Side::Buy, 99, 5)); // id 1
    r.expect(
        Command::Cancel {
            owner: OwnerId(1),
            order_id: OrderId(1),
        },
        &[canceled(1, 1, Side::Buy, Some(99), 5)],
    );
    // A waiting stop-market has no limit price.
    let stop = NewOrder {
        order_type: OrderType::Stop,
        price: None,
        trigger_price: Some(Price(120)),
        ..order(1, 2, Side::Buy, 0, 3)
    };
    r.run(Command::NewOrder(stop)); // id 2
    r.expect(by_coid(1, 2), &[canceled(2, 1, Side::Buy, None, 3)]);
    // Mass cancel.
    r.run(limit(2, 1, Side::Sell, 105, 4)); // id 3
    r.expect(
        Command::MassCancel {
            owner: OwnerId(2),
            instrument: None,
            side: None,
        },
        &[canceled_for(
            3,
            2,
            Side::Sell,
            Some(105),
            4,
            CancelReason::MassCancel,
        )],
    );
    // IOC remainder after a partial fill: the taker's side and price.
    r.run(limit(3, 1, Side::Sell, 101, 2)); // id 4
    let ioc = NewOrder {
        tif: Tif::Ioc,
        ..order(4, 1, Side::Buy, 102, 5)
    };
    let ev = r.run(Command::NewOrder(ioc)); // id 5
    assert_eq!(
        ev.last(),
        Some(&canceled_for(
            5,
            4,
            Side::Buy,
            Some(102),
            3,
            CancelReason::IocRemainder
        ))
    );
    // GTD expiry.
    let gtd = NewOrder {
        tif: Tif::Gtd,
        expire_at: Some(Timestamp(50)),
        ..order(5, 1, Side::Sell, 110, 7)
    };
    r.run(Command::NewOrder(gtd)); // id 6
    let ev = r.run_at(60, Command::Time { now: Timestamp(60) });
    assert_eq!(
        ev,
        [canceled_for(
            6,
            5,
            Side::Sell,
            Some(110),
            7,
            CancelReason::Expired
        )]
    );
    // Self-trade prevention, cancel the maker.
    r.run(limit(6, 1, Side::Sell, 103, 2)); // id 7
    let stp = NewOrder {
        stp: Stp::CancelMaker,
        ..order(6, 2, Side::Buy, 103, 1)
    };
    let ev = r.run(Command::NewOrder(stp)); // id 8, rests
    assert!(
        ev.contains(&canceled_for(
            7,
            6,
            Side::Sell,
            Some(103),
            2,
            CancelReason::Stp
        )),
        "{ev:?}"
    );
}

#[test]
fn cancel_and_lookup_by_client_order_id() {
    let mut r = Rig::new();
    r.run(limit(1, 7, Side::Buy, 99, 5)); // id 1
    r.run(limit(2, 7, Side::Buy, 98, 6)); // id 2: same coid, other owner
    let v =
        r.e.order_by_client_id(OwnerId(1), ClientOrderId(7))
            .unwrap();
    assert_eq!(
        (v.id, v.remaining, v.price),
        (OrderId(1), Qty(5), Price(99))
    );
    let v =
        r.e.order_by_client_id(OwnerId(2), ClientOrderId(7))
            .unwrap();
    assert_eq!(v.id, OrderId(2));
    assert_eq!(r.e.order_by_client_id(OwnerId(3), ClientOrderId(7)), None);
    assert_eq!(r.e.order_by_client_id(OwnerId(1), ClientOrderId(8)), None);
    let unknown = |coid| Event::Rejected {
        target: RejectTarget::ClientOrder(ClientOrderId(coid)),
        reason: RejectReason::UnknownOrder,
    };
    r.expect(by_coid(1, 8), &[unknown(8)]);
    r.expect(by_coid(2, 7), &[canceled(2, 2, Side::Buy, Some(98), 6)]);
    r.expect(by_coid(2, 7), &[unknown(7)]);
    assert_eq!(r.e.order_by_client_id(OwnerId(2), ClientOrderId(7)), None);
    // A filled order is gone from the map too.
    r.run(limit(3, 1, Side::Sell, 99, 5));
    assert_eq!(r.e.order_by_client_id(OwnerId(1), ClientOrderId(7)), None);
    r.expect(by_coid(1, 7), &[unknown(7)]);
    // A partly filled one is found with its leaves.
    r.run(limit(1, 9, Side::Buy, 97, 10)); // id 4
    r.run(limit(3, 2, Side::Sell, 97, 4));
    let v =
        r.e.order_by_client_id(OwnerId(1), ClientOrderId(9))
            .unwrap();
    assert_eq!((v.id, v.remaining), (OrderId(4), Qty(6)));
    r.expect(by_coid(1, 9), &[canceled(4, 1, Side::Buy, Some(97), 6)]);
}

#[test]
fn requeue_replace_always_loses_priority() {
    let mut r = Rig::new();
    r.run(limit(1, 1, Side::Sell, 101, 5)); // id 1
    r.run(limit(2, 1, Side::Sell, 101, 5)); // id 2
    let kept = |id, owner, qty, kept| Event::Replaced {
        order_id: OrderId(id),
        owner: OwnerId(owner),
        side: Side::Sell,
        price: Price(101),
        qty: Qty(qty),
        priority_kept: kept,
    };
    // A plain shrink keeps the place; the same shrink with requeue does not.
    r.expect(replace(1, 1, None, Some(4), false), &[kept(1, 1, 4, true)]);
    assert_eq!(r.e.queue_ids(I, Side::Sell), [vec![OrderId(1), OrderId(2)]]);
    r.expect(replace(1, 1, None, Some(3), true), &[kept(1, 1, 3, false)]);
    assert_eq!(r.e.queue_ids(I, Side::Sell), [vec![OrderId(2), OrderId(1)]]);
    // Same price and quantity: only the place changes.
    r.expect(
        replace(2, 2, Some(101), None, true),
        &[kept(2, 2, 5, false)],
    );
    assert_eq!(r.e.queue_ids(I, Side::Sell), [vec![OrderId(1), OrderId(2)]]);
    assert_eq!(r.e.depth_at(I, Side::Sell, Price(101)), (Qty(8), 2));
    // A crossing requeue trades on arrival as a taker, under the same seq.
    r.run(limit(3, 1, Side::Buy, 100, 2)); // id 3
    r.expect(
        replace(1, 1, Some(100), None, true),
        &[
            Event::Replaced {
                order_id: OrderId(1),
                owner: OwnerId(1),
                side: Side::Sell,
                price: Price(100),
                qty: Qty(3),
                priority_kept: false,
            },
            Event::Trade {
                instrument: I,
                price: Price(100),
                qty: Qty(2),
                maker_order_id: OrderId(3),
                taker_order_id: OrderId(1),
                maker_owner: OwnerId(3),
                taker_owner: OwnerId(1),
                taker_side: Side::Sell,
            },
        ],
    );
    assert_eq!(r.e.book_side(I, Side::Buy), []);
    assert_eq!(
        r.e.queue_ids(I, Side::Sell),
        [vec![OrderId(1)], vec![OrderId(2)]]
    );
    // Naming nothing to change is refused, requeue or not.
    r.expect(
        replace(2, 2, None, None, true),
        &[Event::Rejected {
            target: RejectTarget::Order(OrderId(2)),
            reason: RejectReason::InvalidQty,
        }],
    );
}

#[test]
fn depth_queries_agree_with_book_side() {
    let seed = 0x1d_e9_7a;
    println!("seed {seed:#x}");
    let mut rng = SplitMix64::new(seed);
    let mut r = Rig::new();
    assert_eq!(
        r.e.depth_at(InstrumentId(9), Side::Buy, Price(1)),
        (Qty(0), 0)
    );
    assert_eq!(r.e.book_levels(InstrumentId(9), Side::Buy).count(), 0);
    for coid in 1..=600u64 {
        let c = match rng.below(4) {
            0 => by_coid(1 + rng.below(3), 1 + rng.below(coid)),
            _ => {
                let side = if rng.below(2) == 0 {
                    Side::Buy
                } else {
                    Side::Sell
                };
                let price = 90 + rng.below(21);
                limit(1 + rng.below(3), coid, side, price, 1 + rng.below(9))
            }
        };
        r.run(c);
        for side in [Side::Buy, Side::Sell] {
            let all = r.e.book_side(I, side);
            let walked: Vec<LevelView> = r.e.book_levels(I, side).collect();
            assert_eq!(walked, all);
            let top3: Vec<LevelView> = r.e.book_levels(I, side).take(3).collect();
            assert_eq!(top3[..], all[..all.len().min(3)]);
            for p in 88..=112 {
                let want = all
                    .iter()
                    .find(|l| l.price == Price(p))
                    .map_or((Qty(0), 0), |l| (l.qty, l.orders));
                assert_eq!(r.e.depth_at(I, side, Price(p)), want, "{side:?} at {p}");
            }
        }
    }
}

#[test]
fn restore_rebuilds_the_client_id_map() {
    let mut r = Rig::new();
    for coid in 1..=20u64 {
        let side = if coid % 2 == 0 { Side::Buy } else { Side::Sell };
        let price = if side == Side::Buy { 90 } else { 110 } + coid % 5;
        r.run(limit(1 + coid % 3, coid, side, price, coid));
    }
    r.run(by_coid(2, 4));
    let bytes = r.e.snapshot();
    let mut back = Rig {
        e: Engine::restore(EngineConfig::small(), &bytes).unwrap(),
        ev: r.e.new_events(),
        seq: r.seq,
    };
    assert_eq!(back.e.state_hash(), r.e.state_hash());
    for coid in 1..=20u64 {
        let owner = OwnerId(1 + coid % 3);
        assert_eq!(
            back.e.order_by_client_id(owner, ClientOrderId(coid)),
            r.e.order_by_client_id(owner, ClientOrderId(coid)),
        );
    }
    for coid in [5, 4, 9] {
        let c = by_coid(1 + coid % 3, coid);
        assert_eq!(back.run(c), r.run(c));
    }
    assert_eq!(back.e.state_hash(), r.e.state_hash());
}

/// `Canceled` and `Replaced` carry more fields, inside the room the largest
/// variants already took: the enum stays 96 bytes, as before them.
#[test]
fn event_did_not_grow() {
    let n = std::mem::size_of::<Event>();
    println!("size_of::<Event>() = {n}");
    assert!(n <= 96, "size_of::<Event>() = {n}");
}
