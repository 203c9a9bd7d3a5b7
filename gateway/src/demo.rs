//! The demo set `bourse serve --demo` (and `bourse demo`) creates on a fresh
//! data directory: three instruments (BTC-USD and ETH-USD matching only,
//! EUR-USD settling on the ledger) with price bands, funded USD and EUR
//! trading accounts for the demo owners 1, 2 and 3 (funded from issuer
//! accounts 1 and 2, which may go negative), the symbol table file clients use
//! to name instruments, and the operator token's demo grant.
//!
//! Invariants: the demo commands are ordinary engine commands submitted
//! through the runtime (so they are journaled and replay like any other);
//! they are submitted only when asked for (`server.demo`) and every partition
//! recovered nothing. A plain `serve` creates none of this.

use engine::{
    AccountFlags, AccountId, AccountSpec, Actor, Amount, Asset, Command, InstrumentId,
    InstrumentSpec, OwnerId, Price, Symbol, TransferFlags, TransferId, TransferSpec,
};
use std::collections::BTreeMap;
use std::path::Path;

/// Owners the operator token may act for in the demo.
pub const DEMO_OWNERS: [u64; 3] = [1, 2, 3];
/// Symbol table file in the data directory (symbol → instrument id, JSON).
pub const SYMBOLS_FILE: &str = "instruments.json";
/// Funding each demo trading account receives, minor units.
pub const DEMO_FUNDING: u128 = 100_000_000;
/// Price band of the demo instruments around their reference price (25 %):
/// a fat-fingered price is refused (`price_out_of_band`), not matched.
pub const DEMO_BAND_BPS: u32 = 2_500;

/// The operator token's grant in the demo: the demo owners, every permission.
pub fn operator_grant() -> (Vec<engine::OwnerId>, crate::session::Perms) {
    (
        DEMO_OWNERS.iter().map(|&o| OwnerId(o)).collect(),
        crate::session::Perms::ALL,
    )
}

fn instrument(
    id: u32,
    symbol: &str,
    base: &str,
    quote: &str,
    reference: u64,
    settle: bool,
) -> InstrumentSpec {
    InstrumentSpec {
        id: InstrumentId(id),
        symbol: Symbol::from_str_code(symbol).expect("symbol"),
        base: Asset::from_str_code(base).expect("asset"),
        quote: Asset::from_str_code(quote).expect("asset"),
        tick: 1,
        lot_size: 1,
        qty_min: 1,
        qty_max: 1_000_000,
        reference_price: Price(reference),
        band_bps: Some(DEMO_BAND_BPS),
        circuit_bps: None,
        circuit_window_ns: 0,
        maker_fee_bps: 0,
        taker_fee_bps: 0,
        fee_account: AccountId(0),
        settle,
        open_orders_max: None,
        notional_max: None,
    }
}

/// The demo instruments.
pub fn instruments() -> Vec<InstrumentSpec> {
    vec![
        instrument(1, "BTC-USD", "BTC", "USD", 60_000, false),
        instrument(2, "ETH-USD", "ETH", "USD", 3_000, false),
        instrument(3, "EUR-USD", "EUR", "USD", 108, true),
    ]
}

/// The account id of a demo owner's trading account in `asset` (USD = 1, EUR = 2):
/// `owner * 100 + asset`, e.g. 101 is owner 1's USD account.
pub fn trading_account(owner: u64, asset: u64) -> AccountId {
    AccountId(owner as u128 * 100 + asset as u128)
}

/// Every demo command, in order: funding (bank) accounts 1 (USD) and 2
/// (EUR), trading accounts per owner, funding transfers, instruments.
pub fn commands() -> Vec<Command> {
    let usd = Asset::from_str_code("USD").expect("asset");
    let eur = Asset::from_str_code("EUR").expect("asset");
    let mut c = Vec::new();
    for (id, asset) in [(1u128, usd), (2, eur)] {
        c.push(Command::OpenAccount(AccountSpec {
            id: AccountId(id),
            owner: OwnerId(0),
            asset,
            flags: AccountFlags(0),
        }));
    }
    let mut transfer_id = 1u128;
    for owner in DEMO_OWNERS {
        for (n, asset) in [(1u64, usd), (2, eur)] {
            let id = trading_account(owner, n);
            c.push(Command::OpenAccount(AccountSpec {
                id,
                owner: OwnerId(owner),
                asset,
                flags: AccountFlags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            }));
            c.push(Command::Transfer {
                transfer: TransferSpec {
                    id: TransferId(transfer_id),
                    debit_account: AccountId(n as u128),
                    credit_account: id,
                    amount: Amount(DEMO_FUNDING),
                    code: 1,
                    flags: TransferFlags(0),
                    pending_id: TransferId(0),
                    timeout_ns: 0,
                },
                batch_end: true,
                // The operator funds the demo owners from the issuer accounts.
                actor: Actor::Admin,
            });
            transfer_id += 1;
        }
    }
    for i in instruments() {
        c.push(Command::AddInstrument(i));
    }
    c
}

/// Reads the symbol table of a data directory (empty when absent).
pub fn read_symbols(data_dir: &Path) -> BTreeMap<String, u32> {
    std::fs::read(data_dir.join(SYMBOLS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes the symbol table (temporary file + rename).
pub fn write_symbols(data_dir: &Path, table: &BTreeMap<String, u32>) -> std::io::Result<()> {
    let path = data_dir.join(SYMBOLS_FILE);
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(table).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

/// The symbol table of the demo set.
pub fn demo_symbols() -> BTreeMap<String, u32> {
    instruments()
        .iter()
        .map(|i| (i.symbol.as_str().to_string(), i.id.0))
        .collect()
}
