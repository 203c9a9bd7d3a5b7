//! Fixtures the engine's integration tests share: one plain instrument
//! (tick 1, lot 1, reference 100, no band, no fees, no settlement) and a
//! GTC limit order on it.
use engine::*;

/// The instrument every fixture order trades.
pub const I: InstrumentId = InstrumentId(1);

/// `BTC-USD` with id `I`: tick 1, lot 1, quantities 1 to 10⁶, reference
/// price 100, no band, breaker, fees, settlement or per-owner limits.
pub fn spec() -> InstrumentSpec {
    InstrumentSpec {
        id: I,
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

/// A GTC limit order on `I`.
pub fn order(owner: u64, coid: u64, side: Side, price: u64, qty: u64) -> NewOrder {
    NewOrder {
        owner: OwnerId(owner),
        instrument: I,
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
    }
}

/// `order` as a command.
pub fn limit(owner: u64, coid: u64, side: Side, price: u64, qty: u64) -> Command {
    Command::NewOrder(order(owner, coid, side, price, qty))
}
