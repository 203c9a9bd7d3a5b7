//! Regression tests for bugs found in peer matching engines, written as data:
//! each step is a command and the exact events it must produce. Every case is
//! checked against the engine and, as a cross-check of the expectations, the
//! reference model.
//!
//! - Liquibook: an IOC remainder rested in the book.
//! - orderbook-rs: a partial fill sent the maker to the back of its queue.
//! - matchcore 0.4.0: a marketable limit traded through its limit price.
//! - lobster: filled orders and empty price levels were never freed.

use bourse_tests::gen::instrument;
use bourse_tests::reference::{evs_of, Ev, Reference};
use engine::*;

const INST: InstrumentId = InstrumentId(1);

fn order(owner: u64, coid: u64, side: Side, price: u64, qty: u64, tif: Tif) -> Command {
    Command::NewOrder(NewOrder {
        owner: OwnerId(owner),
        instrument: INST,
        client_order_id: ClientOrderId(coid),
        side,
        order_type: OrderType::Limit,
        price: Some(Price(price)),
        qty: Qty(qty),
        tif,
        expire_at: None,
        post_only: false,
        stp: Stp::None,
        display_qty: None,
        trigger_price: None,
    })
}

fn accepted(id: u64, owner: u64, coid: u64, side: Side, price: u64, qty: u64) -> Ev {
    Ev::E(Event::Accepted {
        order_id: OrderId(id),
        client_order_id: ClientOrderId(coid),
        owner: OwnerId(owner),
        instrument: INST,
        side,
        price: Some(Price(price)),
        qty: Qty(qty),
    })
}

/// trade(price, qty, maker, taker, maker owner, taker owner, taker side)
fn trade(price: u64, qty: u64, maker: u64, taker: u64, mo: u64, to: u64, side: Side) -> Ev {
    Ev::E(Event::Trade {
        instrument: INST,
        price: Price(price),
        qty: Qty(qty),
        maker_order_id: OrderId(maker),
        taker_order_id: OrderId(taker),
        maker_owner: OwnerId(mo),
        taker_owner: OwnerId(to),
        taker_side: side,
    })
}

fn canceled(
    (id, owner): (u64, u64),
    (side, price): (Side, Option<u64>),
    qty: u64,
    reason: CancelReason,
) -> Ev {
    Ev::E(Event::Canceled {
        order_id: OrderId(id),
        owner: OwnerId(owner),
        side,
        price: price.map(Price),
        qty: Qty(qty),
        reason,
    })
}

fn level(price: u64, qty: u64, orders: u32) -> LevelView {
    LevelView {
        price: Price(price),
        qty: Qty(qty),
        orders,
    }
}

fn query() -> Command {
    Command::QueryBook {
        instrument: INST,
        depth: None,
    }
}

fn book(bids: Vec<LevelView>, asks: Vec<LevelView>) -> Ev {
    Ev::Book {
        instrument: INST,
        bids,
        asks,
    }
}

/// Runs the steps on a fresh engine (with instrument 1, tick 1, reference
/// 100) and on the reference model; every step must give exactly the
/// expected events. Returns the engine for further checks.
fn check(name: &str, steps: Vec<(Command, Vec<Ev>)>) -> Engine {
    let mut e = Engine::new(EngineConfig::small());
    let mut ev = e.new_events();
    let mut r = Reference::new();
    let mut all = vec![(Command::AddInstrument(instrument(1, 1, 100)), vec![])];
    all.extend(steps);
    for (k, (command, want)) in all.into_iter().enumerate() {
        let input = Input {
            seq: Seq(k as u64 + 1),
            now: Timestamp(1_000),
            command,
        };
        e.apply(&input, &mut ev);
        assert_eq!(evs_of(&ev), want, "{name}: engine, step {k}: {command:?}");
        assert_eq!(r.apply(&input), want, "{name}: reference, step {k}");
        e.validate().unwrap();
    }
    e
}

#[test]
fn ioc_remainder_never_rests() {
    use Side::*;
    let e = check(
        "liquibook ioc",
        vec![
            (
                order(1, 1, Sell, 100, 5, Tif::Gtc),
                vec![accepted(1, 1, 1, Sell, 100, 5)],
            ),
            (
                order(2, 1, Buy, 101, 8, Tif::Ioc),
                vec![
                    accepted(2, 2, 1, Buy, 101, 8),
                    trade(100, 5, 1, 2, 1, 2, Buy),
                    canceled((2, 2), (Buy, Some(101)), 3, CancelReason::IocRemainder),
                ],
            ),
            (query(), vec![book(vec![], vec![])]),
            // An IOC that does not trade at all does not rest either.
            (
                order(2, 2, Buy, 99, 4, Tif::Ioc),
                vec![
                    accepted(3, 2, 2, Buy, 99, 4),
                    canceled((3, 2), (Buy, Some(99)), 4, CancelReason::IocRemainder),
                ],
            ),
            // A later sell at 99 finds nothing to trade with: it rests.
            (
                order(1, 2, Sell, 99, 1, Tif::Gtc),
                vec![accepted(4, 1, 2, Sell, 99, 1)],
            ),
            (query(), vec![book(vec![], vec![level(99, 1, 1)])]),
        ],
    );
    assert_eq!(e.live_orders(), 1);
}

#[test]
fn partial_fill_keeps_queue_position() {
    use Side::*;
    let e = check(
        "orderbook-rs priority",
        vec![
            (
                order(1, 1, Sell, 100, 5, Tif::Gtc),
                vec![accepted(1, 1, 1, Sell, 100, 5)],
            ),
            (
                order(2, 1, Sell, 100, 5, Tif::Gtc),
                vec![accepted(2, 2, 1, Sell, 100, 5)],
            ),
            (
                order(3, 1, Buy, 100, 2, Tif::Gtc),
                vec![
                    accepted(3, 3, 1, Buy, 100, 2),
                    trade(100, 2, 1, 3, 1, 3, Buy),
                ],
            ),
            // Order 1, partly filled, is still first in the queue.
            (
                order(3, 2, Buy, 100, 4, Tif::Gtc),
                vec![
                    accepted(4, 3, 2, Buy, 100, 4),
                    trade(100, 3, 1, 4, 1, 3, Buy),
                    trade(100, 1, 2, 4, 2, 3, Buy),
                ],
            ),
            (query(), vec![book(vec![], vec![level(100, 4, 1)])]),
        ],
    );
    assert_eq!(e.queue_ids(INST, Side::Sell), vec![vec![OrderId(2)]]);
}

#[test]
fn marketable_limit_never_trades_through_its_price() {
    use Side::*;
    let e = check(
        "matchcore trade-through",
        vec![
            (
                order(1, 1, Sell, 100, 2, Tif::Gtc),
                vec![accepted(1, 1, 1, Sell, 100, 2)],
            ),
            (
                order(1, 2, Sell, 101, 2, Tif::Gtc),
                vec![accepted(2, 1, 2, Sell, 101, 2)],
            ),
            (
                order(1, 3, Sell, 103, 5, Tif::Gtc),
                vec![accepted(3, 1, 3, Sell, 103, 5)],
            ),
            (
                order(2, 1, Buy, 101, 5, Tif::Gtc),
                vec![
                    accepted(4, 2, 1, Buy, 101, 5),
                    trade(100, 2, 1, 4, 1, 2, Buy),
                    trade(101, 2, 2, 4, 1, 2, Buy),
                ],
            ),
            (
                query(),
                vec![book(vec![level(101, 1, 1)], vec![level(103, 5, 1)])],
            ),
            // The same on the sell side.
            (
                order(3, 1, Buy, 99, 3, Tif::Gtc),
                vec![accepted(5, 3, 1, Buy, 99, 3)],
            ),
            (
                order(1, 4, Sell, 100, 9, Tif::Ioc),
                vec![
                    accepted(6, 1, 4, Sell, 100, 9),
                    trade(101, 1, 4, 6, 2, 1, Sell),
                    canceled((6, 1), (Sell, Some(100)), 8, CancelReason::IocRemainder),
                ],
            ),
        ],
    );
    assert_eq!(e.best_prices(INST), (Some(Price(99)), Some(Price(103))));
}

#[test]
fn filled_orders_and_empty_levels_are_freed() {
    use Side::*;
    let mut steps = Vec::new();
    let mut id = 0;
    for round in 0..50u64 {
        // Three ask levels, then one buy that takes them all.
        let mut trades = Vec::new();
        for k in 0..3 {
            id += 1;
            let price = 100 + k + round % 7;
            steps.push((
                order(1, round * 10 + k, Sell, price, 2, Tif::Gtc),
                vec![accepted(id, 1, round * 10 + k, Sell, price, 2)],
            ));
            trades.push((price, id));
        }
        id += 1;
        let mut want = vec![accepted(id, 2, round, Buy, 200, 6)];
        for (price, maker) in trades {
            want.push(trade(price, 2, maker, id, 1, 2, Buy));
        }
        steps.push((order(2, round, Buy, 200, 6, Tif::Gtc), want));
        steps.push((query(), vec![book(vec![], vec![])]));
    }
    let e = check("lobster leak", steps);
    assert_eq!(e.live_orders(), 0);
    assert!(e.book_side(INST, Side::Buy).is_empty());
    assert!(e.book_side(INST, Side::Sell).is_empty());
    assert_eq!(e.best_prices(INST), (None, None));
}

// Found by the cross-check: a GTD stop that arrives expired (and cannot
// fire) must be cancelled `expired` at once, not left waiting for the next
// command's expiry pass (convention 4).
#[test]
fn gtd_stop_arriving_expired_is_cancelled_at_once() {
    let stop = Command::NewOrder(NewOrder {
        owner: OwnerId(1),
        instrument: INST,
        client_order_id: ClientOrderId(1),
        side: Side::Sell,
        order_type: OrderType::Stop,
        price: None,
        qty: Qty(5),
        tif: Tif::Gtd,
        expire_at: Some(Timestamp(5)),
        post_only: false,
        stp: Stp::None,
        display_qty: None,
        trigger_price: Some(Price(90)),
    });
    let e = check(
        "expired stop",
        vec![(
            stop,
            vec![
                Ev::E(Event::Accepted {
                    order_id: OrderId(1),
                    client_order_id: ClientOrderId(1),
                    owner: OwnerId(1),
                    instrument: INST,
                    side: Side::Sell,
                    price: None,
                    qty: Qty(5),
                }),
                canceled((1, 1), (Side::Sell, None), 5, CancelReason::Expired),
            ],
        )],
    );
    assert_eq!(e.live_orders(), 0);
}
