//! Small value builders the tests share: the one test instrument and the
//! plain transfer. Tests that need other values override fields with struct
//! update syntax (`InstrumentSpec { qty_max: 1000, ..instrument(1) }`), so
//! each test shows only what it changes.

use engine::{
    AccountId, Amount, Asset, InstrumentId, InstrumentSpec, Price, Symbol, TransferFlags,
    TransferId, TransferSpec,
};

/// The test instrument `id`: BTC-USD, tick, lot and minimum quantity 1, at
/// most 1,000,000 a order, reference price 100; no band, no circuit breaker,
/// no fees, no settlement, no per-owner limits.
pub fn instrument(id: u32) -> InstrumentSpec {
    InstrumentSpec {
        id: InstrumentId(id),
        symbol: Symbol::from_str_code("BTC-USD").expect("valid symbol"),
        base: Asset::from_str_code("BTC").expect("valid asset"),
        quote: Asset::from_str_code("USD").expect("valid asset"),
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

/// A plain (posted, unlinked, code 1) transfer of `amount` from account `dr`
/// to account `cr`.
pub fn plain_transfer(id: u128, dr: u128, cr: u128, amount: u128) -> TransferSpec {
    TransferSpec {
        id: TransferId(id),
        debit_account: AccountId(dr),
        credit_account: AccountId(cr),
        amount: Amount(amount),
        code: 1,
        flags: TransferFlags(0),
        pending_id: TransferId(0),
        timeout_ns: 0,
    }
}
