//! Smoke test of the public API: two crossing orders trade at the maker's price.
use engine::*;

fn spec(id: u32) -> InstrumentSpec {
    InstrumentSpec {
        id: InstrumentId(id),
        symbol: Symbol::from_str_code("BTC-USD").unwrap(),
        base: Asset::from_str_code("BTC").unwrap(),
        quote: Asset::from_str_code("USD").unwrap(),
        tick: 1,
        lot_size: 1,
        qty_min: 1,
        qty_max: 1_000_000,
        reference_price: Price(100),
        band_bps: None,
        circuit_bps: None,
        circuit_window_ns: 0,
        maker_fee_bps: 0,
        taker_fee_bps: 0,
        fee_account: AccountId(0),
        settle: false,
        open_orders_max: None,
        notional_max: None,
    }
}

fn limit(owner: u64, coid: u64, side: Side, price: u64, qty: u64) -> Command {
    Command::NewOrder(NewOrder {
        owner: OwnerId(owner),
        instrument: InstrumentId(1),
        client_order_id: ClientOrderId(coid),
        side,
        order_type: OrderType::Limit,
        price: Some(Price(price)),
        qty: Qty(qty),
        tif: Tif::Gtc,
        expire_at: None,
        post_only: false,
        stp: Stp::None,
        display_qty: None,
        trigger_price: None,
    })
}

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
    assert!(run(&mut e, Command::AddInstrument(spec(1))).is_empty());
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
