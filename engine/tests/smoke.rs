//! Smoke test of the public API: two crossing orders trade at the maker's price.
use engine::*;

mod common;
use common::{limit, spec};

#[test]
fn crossing_orders_trade_at_maker_price() {
    let mut e = Engine::new(EngineConfig::small());
    let mut ev = e.new_events();
    let mut seq = 0;
    let mut run = |e: &mut Engine, c: Command| {
        seq += 1;
        e.apply(
            &Input {
                seq: Seq(seq),
                now: Timestamp(0),
                command: c,
            },
            &mut ev,
        );
        e.validate().unwrap();
        ev.as_slice().to_vec()
    };
    assert!(run(&mut e, Command::AddInstrument(spec())).is_empty());
    let a = run(&mut e, limit(7, 1, Side::Sell, 101, 5));
    assert!(matches!(
        a[0],
        Event::Accepted {
            order_id: OrderId(1),
            ..
        }
    ));
    let b = run(&mut e, limit(8, 1, Side::Buy, 102, 3));
    assert_eq!(
        b[1],
        Event::Trade {
            instrument: InstrumentId(1),
            price: Price(101),
            qty: Qty(3),
            maker_order_id: OrderId(1),
            taker_order_id: OrderId(2),
            maker_owner: OwnerId(7),
            taker_owner: OwnerId(8),
            taker_side: Side::Buy,
        }
    );
    assert_eq!(b.len(), 2);
    assert_eq!(e.book_side(InstrumentId(1), Side::Sell)[0].qty, Qty(2));
    let h = e.state_hash();
    assert_ne!(h, 0);
}
