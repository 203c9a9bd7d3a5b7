//! A naive model of trading on the ledger for ONE settling instrument, written
//! from semantics.md ("Trading on the ledger", conventions 16–19) and
//! ARCHITECTURE.md (ledger choices 5–8): holds, settlement of each fill with
//! cumulative per-order fee rounding, and releases.
//!
//! It does not match orders: it follows the engine's own order events
//! (`accepted`, `trade`, `canceled`) and computes from them what every
//! account's balances must be — posted amounts from fills, deposits and
//! withdrawals, pending debits from the holds of the live orders — and
//! whether an order or a withdrawal must be refused for lack of funds.
//! Limit orders only (GTC/IOC), no STP modes other than `none`, no icebergs,
//! no stops, no replace; the test feeding it keeps to that.

use engine::*;
use std::collections::BTreeMap;

/// Balances of one account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bal {
    /// Posted debits.
    pub dpo: u128,
    /// Posted credits.
    pub cpo: u128,
    /// Pending debits.
    pub dpe: u128,
    /// Pending credits.
    pub cpe: u128,
}

impl Bal {
    /// credits_posted − debits_posted − debits_pending (may be negative for accounts without limits).
    pub fn available(&self) -> i128 {
        self.cpo as i128 - self.dpo as i128 - self.dpe as i128
    }
}

#[derive(Clone, Copy, Debug)]
struct LiveOrder {
    owner: u64,
    side: Side,
    price: u64,
    remaining: u64,
    /// Running Σ fill notional × bps (convention 17).
    fee_acc: u128,
}

/// The model.
#[derive(Clone, Debug)]
pub struct SettleModel {
    /// Instrument controls.
    pub lot_size: u64,
    /// Maker fee, bps.
    pub maker_bps: u32,
    /// Taker fee, bps.
    pub taker_bps: u32,
    /// Fee account id.
    pub fee_account: u128,
    /// owner → (quote account, base account).
    pub trading: BTreeMap<u64, (u128, u128)>,
    /// Posted balances of every account the model tracks (pending debits are
    /// derived from the live orders).
    posted: BTreeMap<u128, Bal>,
    orders: BTreeMap<u64, LiveOrder>,
}

fn ceil_div(x: u128) -> u128 {
    x.div_ceil(10_000)
}

impl SettleModel {
    /// A model for one instrument; `accounts` lists every account id to track.
    pub fn new(
        lot_size: u64,
        maker_bps: u32,
        taker_bps: u32,
        fee_account: u128,
        accounts: &[u128],
    ) -> Self {
        SettleModel {
            lot_size,
            maker_bps,
            taker_bps,
            fee_account,
            trading: BTreeMap::new(),
            posted: accounts.iter().map(|&a| (a, Bal::default())).collect(),
            orders: BTreeMap::new(),
        }
    }

    /// The hold a live order needs now (ARCHITECTURE.md, ledger 6).
    fn hold(&self, o: &LiveOrder) -> u128 {
        match o.side {
            Side::Sell => o.remaining as u128 * self.lot_size as u128,
            Side::Buy => {
                let n = o.price as u128 * o.remaining as u128;
                let bps = self.maker_bps.max(self.taker_bps) as u128;
                n + ceil_div(o.fee_acc + n * bps) - ceil_div(o.fee_acc)
            }
        }
    }

    /// The hold a new buy or sell would need.
    pub fn new_order_hold(&self, side: Side, price: u64, qty: u64) -> u128 {
        self.hold(&LiveOrder {
            owner: 0,
            side,
            price,
            remaining: qty,
            fee_acc: 0,
        })
    }

    /// Expected balances of an account now.
    pub fn balance(&self, account: u128) -> Bal {
        let mut b = self.posted.get(&account).copied().unwrap_or_default();
        for o in self.orders.values() {
            let (q, base) = self.trading[&o.owner];
            let acct = if o.side == Side::Buy { q } else { base };
            if acct == account {
                b.dpe += self.hold(o);
            }
        }
        b
    }

    /// A posted transfer (deposit or withdrawal) took effect.
    pub fn transfer(&mut self, dr: u128, cr: u128, amount: u128) {
        self.posted.entry(dr).or_default().dpo += amount;
        self.posted.entry(cr).or_default().cpo += amount;
    }

    /// Follows the events of one order command.
    pub fn on_events(&mut self, events: &[Event]) {
        for e in events {
            match *e {
                Event::Accepted {
                    order_id,
                    owner,
                    side,
                    price,
                    qty,
                    ..
                } => {
                    let price = price.expect("limit orders only").0;
                    self.orders.insert(
                        order_id.0,
                        LiveOrder {
                            owner: owner.0,
                            side,
                            price,
                            remaining: qty.0,
                            fee_acc: 0,
                        },
                    );
                }
                Event::Trade {
                    price,
                    qty,
                    maker_order_id,
                    taker_order_id,
                    taker_side,
                    ..
                } => {
                    let notional = price.0 as u128 * qty.0 as u128;
                    let mut fee = |id: u64, bps: u32| {
                        let o = self.orders.get_mut(&id).expect("trade of a live order");
                        let before = o.fee_acc;
                        o.fee_acc += notional * bps as u128;
                        o.remaining -= qty.0;
                        (o.owner, ceil_div(o.fee_acc) - ceil_div(before))
                    };
                    let (maker, maker_fee) = fee(maker_order_id.0, self.maker_bps);
                    let (taker, taker_fee) = fee(taker_order_id.0, self.taker_bps);
                    let ((buyer, buyer_fee), (seller, seller_fee)) = if taker_side == Side::Buy {
                        ((taker, taker_fee), (maker, maker_fee))
                    } else {
                        ((maker, maker_fee), (taker, taker_fee))
                    };
                    let (bq, bb) = self.trading[&buyer];
                    let (sq, sb) = self.trading[&seller];
                    let base = qty.0 as u128 * self.lot_size as u128;
                    // A transfer from an account to itself is skipped (convention 19).
                    if sb != bb {
                        self.transfer(sb, bb, base);
                    }
                    if bq != sq {
                        self.transfer(bq, sq, notional - seller_fee);
                    }
                    if buyer_fee + seller_fee > 0 {
                        self.transfer(bq, self.fee_account, buyer_fee + seller_fee);
                    }
                    for id in [maker_order_id.0, taker_order_id.0] {
                        if self.orders[&id].remaining == 0 {
                            self.orders.remove(&id);
                        }
                    }
                }
                Event::Canceled { order_id, .. } => {
                    self.orders
                        .remove(&order_id.0)
                        .expect("cancel of a live order");
                }
                Event::Rejected { .. } => {}
                ref other => panic!("SettleModel does not model {other:?}"),
            }
        }
    }

    /// Live order ids.
    pub fn live_orders(&self) -> Vec<u64> {
        self.orders.keys().copied().collect()
    }
}
