//! Cancel, replace and mass cancel of live orders.
//!
//! Only an order's owner may change it. A replace that keeps the price and
//! does not grow the quantity keeps its place in the queue, unless it asks
//! to `requeue`; any other replace takes the order out of the book and runs
//! it as an incoming taker (back of its new level's queue if it rests).
//! Mass cancel walks only the owner's own list. Every `Canceled` event is
//! built by `canceled`, so each producer fills the same fields.

use super::*;

impl Engine {
    /// The `Canceled` event for order `o` losing `qty` for `reason`: it
    /// names the order's side and limit price so that an acknowledgement
    /// needs no lookup.
    #[inline]
    pub(super) fn canceled(&self, o: &Order, qty: Qty, reason: CancelReason) -> Event {
        Event::Canceled {
            order_id: o.id,
            owner: self.owners[o.owner_slot as usize].id,
            side: o.side,
            price: o.otype.has_price().then_some(o.price),
            qty,
            reason,
        }
    }

    pub(super) fn handle_cancel(&mut self, owner: OwnerId, id: OrderId, out: &mut Events) {
        let reject = |out: &mut Events, reason| {
            out.push(Event::Rejected {
                target: RejectTarget::Order(id),
                reason,
            })
        };
        let Some(slot) = self.order_index.get(id.0, |s| self.orders[s as usize].id.0) else {
            return reject(out, RejectReason::UnknownOrder);
        };
        let o = self.orders[slot as usize];
        if self.owners[o.owner_slot as usize].id != owner {
            return reject(out, RejectReason::NotOrderOwner);
        }
        out.push(self.canceled(&o, o.remaining, CancelReason::User));
        self.end_order(slot);
    }

    pub(super) fn handle_replace(
        &mut self,
        owner: OwnerId,
        id: OrderId,
        (new_price, new_qty): (Option<Price>, Option<Qty>),
        requeue: bool,
        out: &mut Events,
    ) {
        let reject = |out: &mut Events, reason| {
            out.push(Event::Rejected {
                target: RejectTarget::Order(id),
                reason,
            })
        };
        let Some(slot) = self.order_index.get(id.0, |s| self.orders[s as usize].id.0) else {
            return reject(out, RejectReason::UnknownOrder);
        };
        let o = self.orders[slot as usize];
        if o.state != OrderState::Resting {
            return reject(out, RejectReason::UnknownOrder);
        }
        if self.owners[o.owner_slot as usize].id != owner {
            return reject(out, RejectReason::NotOrderOwner);
        }
        let spec = self.instruments[o.inst as usize].spec;
        let price = new_price.unwrap_or(o.price);
        if price.0 == 0 || !price.0.is_multiple_of(spec.tick) {
            return reject(out, RejectReason::InvalidPrice);
        }
        let qty = new_qty.unwrap_or(o.remaining);
        // A replace that names nothing to change is refused at the qty check
        // (ARCHITECTURE.md, semantics 17).
        let nothing = new_price.is_none() && new_qty.is_none();
        if nothing || qty.0 == 0 || qty.0 < spec.qty_min || qty.0 > spec.qty_max {
            return reject(out, RejectReason::InvalidQty);
        }
        if (price.0 as u128) * (qty.0 as u128) > u64::MAX as u128
            || (qty.0 as u128) * (spec.lot_size as u128) > u64::MAX as u128
        {
            return reject(out, RejectReason::Overflow);
        }
        if self.instruments[o.inst as usize].halted.is_some() {
            return reject(out, RejectReason::InstrumentHalted);
        }
        let price_changed = price != o.price;
        if price_changed && !in_band(&spec, self.reference(o.inst), price) {
            return reject(out, RejectReason::PriceOutOfBand);
        }
        if let Some(max) = spec.notional_max {
            if (price.0 as u128) * (qty.0 as u128) > max as u128 {
                return reject(out, RejectReason::LimitExceeded);
            }
        }
        if price_changed && self.find_level(o.inst, o.side, price).is_none() {
            let frees_one = self.levels[o.level as usize].count == 1;
            let len = self.side_levels(o.inst, o.side).len() - frees_one as usize;
            if len >= self.cfg.levels_max as usize {
                return reject(out, RejectReason::CapacityExceeded);
            }
        }
        let c = self.cold_of(slot);
        let new_hold_price = if o.side == Side::Buy { price } else { Price(0) };
        let new_hold = if o.pay != NO_ACCOUNT {
            need_of(&spec, o.side, new_hold_price, qty.0, c.fee_acc)
        } else {
            0
        };
        if new_hold > c.hold {
            let a = &self.ledger.accounts[o.pay as usize];
            if a.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
                && a.available() < new_hold - c.hold
            {
                return reject(out, RejectReason::InsufficientFunds);
            }
        }
        if o.post_only && self.crosses(o.inst, o.side, price) {
            return reject(out, RejectReason::PostOnlyWouldCross);
        }
        if price_changed {
            // The plain cold part follows the price; the hold price must not.
            self.keep_cold(slot);
        }
        if o.pay != NO_ACCOUNT {
            self.cold[slot as usize].hold_price = new_hold_price;
        }
        if !price_changed && qty <= o.remaining && !requeue {
            // Priority kept: shrink in place (hidden part first for icebergs).
            let vis = o.visible.min(qty);
            self.levels[o.level as usize].qty.0 -= o.visible.0 - vis.0;
            let om = &mut self.orders[slot as usize];
            om.remaining = qty;
            om.visible = vis;
            self.sync_hold(slot);
            out.push(Event::Replaced {
                order_id: id,
                owner: self.owners[o.owner_slot as usize].id,
                side: o.side,
                price,
                qty,
                priority_kept: true,
            });
            return;
        }
        // Priority lost: out of its level, new terms, then in as if incoming.
        self.unlink_from_book(slot);
        {
            let om = &mut self.orders[slot as usize];
            om.price = price;
            om.remaining = qty;
            om.visible = if c.display.0 > 0 {
                Qty(c.display.0.min(qty.0))
            } else {
                qty
            };
            om.state = OrderState::Active;
        }
        self.sync_hold(slot);
        out.push(Event::Replaced {
            order_id: id,
            owner: self.owners[o.owner_slot as usize].id,
            side: o.side,
            price,
            qty,
            priority_kept: false,
        });
        self.run_taker(slot, out);
        self.drain_fire_queue(out);
    }

    pub(super) fn handle_mass_cancel(
        &mut self,
        owner: OwnerId,
        instrument: Option<InstrumentId>,
        side: Option<Side>,
        out: &mut Events,
    ) {
        let Ok(inst) = self.inst_filter(instrument, out) else {
            return;
        };
        let Some(os) = self.owner_index.get(owner.0 as u128) else {
            return;
        };
        let mut m = self.owners[os as usize].head;
        while m != NIL {
            let o = self.orders[m as usize];
            let next = self.links[m as usize].onext;
            if inst.is_none_or(|i| i == o.inst) && side.is_none_or(|s| s == o.side) {
                out.push(self.canceled(&o, o.remaining, CancelReason::MassCancel));
                self.end_order(m);
            }
            m = next;
        }
    }
}
