//! Settlement on the ledger for settling instruments.
//!
//! A settling order holds on its pay account exactly what it can still need
//! (`need`): a buy, price × remaining plus the most fee it can still owe; a
//! sell, its base. Every fill posts base and quote at once and both fees to
//! the fee account, with fee rounding cumulative per order (convention 17);
//! holds are brought back to `need` after each change (`sync_hold`). Accounts
//! are checked for headroom before an order is accepted, so settlement never
//! overflows.

use super::*;

/// ceil((acc + add) / 10 000) − ceil(acc / 10 000): the fee a fill adds when
/// rounding is cumulative per order.
#[inline]
fn fee_delta(acc: u128, add: u128) -> u128 {
    // Saturating only matters for corrupted snapshots (entry checks bound
    // real values far below u128::MAX); `validate` then reports the mismatch.
    acc.saturating_add(add).div_ceil(BPS) - acc.div_ceil(BPS)
}

/// A hold's need: a buy reserves price × qty plus the fee at the higher of
/// the two rates on top of the fees accrued so far; a sell reserves the base.
pub(super) fn need_of(
    spec: &InstrumentSpec,
    side: Side,
    hold_price: Price,
    qty: u64,
    fee_acc: u128,
) -> u128 {
    match side {
        Side::Buy => {
            let notional = hold_price.0 as u128 * qty as u128;
            let bps = spec.maker_fee_bps.max(spec.taker_fee_bps) as u128;
            notional.saturating_add(fee_delta(fee_acc, notional.saturating_mul(bps)))
        }
        Side::Sell => qty as u128 * spec.lot_size as u128,
    }
}

impl Engine {
    /// What an order's hold must reserve now.
    pub(super) fn need(&self, slot: u32) -> u128 {
        let o = &self.orders[slot as usize];
        if o.pay == NO_ACCOUNT {
            return 0;
        }
        let c = self.cold_of(slot);
        need_of(
            &self.instruments[o.inst as usize].spec,
            o.side,
            c.hold_price,
            o.remaining.0,
            c.fee_acc,
        )
    }

    /// Brings an order's hold to what it still needs (releasing price
    /// improvement, reduced quantity and unused fee reserve, or adding for a
    /// replace whose funds were checked).
    pub(super) fn sync_hold(&mut self, slot: u32) {
        let pay = self.orders[slot as usize].pay;
        if pay == NO_ACCOUNT {
            return;
        }
        let need = self.need(slot);
        let hold = self.cold_of(slot).hold;
        if need < hold {
            self.ledger.hold_release(pay, hold - need);
        } else {
            self.ledger.hold_add(pay, need - hold);
        }
        self.cold[slot as usize].hold = need;
    }

    /// Settles one fill at once: base from seller to buyer, quote from buyer
    /// to seller less the seller's fee, both fees to the fee account (fees
    /// cumulative per order, convention 17). Holds are brought down by
    /// `sync_hold` (maker: in `reduce_resting`; taker: in `finish_taker`).
    pub(super) fn settle_fill(&mut self, maker: u32, taker: u32, price: Price, qty: u64) {
        let (mk, tk) = (self.orders[maker as usize], self.orders[taker as usize]);
        let (mkc, tkc) = (self.cold_of(maker), self.cold_of(taker));
        let spec = &self.instruments[mk.inst as usize].spec;
        let fee_slot = self.instruments[mk.inst as usize].fee_slot;
        let notional = price.0 as u128 * qty as u128;
        let base = qty as u128 * spec.lot_size as u128;
        let (maker_bps, taker_bps) = (spec.maker_fee_bps as u128, spec.taker_fee_bps as u128);
        let maker_fee = fee_delta(mkc.fee_acc, notional * maker_bps);
        let taker_fee = fee_delta(tkc.fee_acc, notional * taker_bps);
        self.cold[maker as usize].fee_acc += notional * maker_bps;
        self.cold[taker as usize].fee_acc += notional * taker_bps;
        // (pay, recv) of each side.
        let (buyer, seller, buyer_fee, seller_fee) = match tk.side {
            Side::Buy => ((tk.pay, tkc.recv), (mk.pay, mkc.recv), taker_fee, maker_fee),
            Side::Sell => ((mk.pay, mkc.recv), (tk.pay, tkc.recv), maker_fee, taker_fee),
        };
        // Accounts: buyer.pay = buyer's quote, buyer.recv = buyer's base,
        // seller.pay = seller's base, seller.recv = seller's quote.
        self.ledger.post(seller.0, buyer.1, base);
        self.ledger.post(buyer.0, seller.1, notional - seller_fee);
        if buyer_fee + seller_fee > 0 {
            self.ledger.post(buyer.0, fee_slot, buyer_fee + seller_fee);
        }
    }

    /// Whether the accounts a settling order touches have room for any fill
    /// (counters far below u128::MAX), so settlement can never overflow.
    pub(super) fn ledger_headroom(&self, slots: &[u32]) -> bool {
        const ROOM: u128 = 1 << 120;
        slots.iter().filter(|&&s| s != NO_ACCOUNT).all(|&s| {
            let a = &self.ledger.accounts[s as usize];
            a.debits_posted < ROOM
                && a.credits_posted < ROOM
                && a.debits_pending < ROOM
                && a.credits_pending < ROOM
        })
    }
}
