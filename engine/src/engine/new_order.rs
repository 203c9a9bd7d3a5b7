//! A new order: every check in its fixed order, then acceptance.
//!
//! Checks run in the order the rejection reasons are documented, each
//! returning the first reason that applies; nothing changes before the last
//! check passes. Acceptance then assigns the order id, remembers the client
//! order id, allocates the slot, takes the hold, reports `Accepted`, and the
//! order is parked as a stop, fired, or matched as a taker.
//!
//! The steps were one function before the split; each is
//! `#[inline(always)]` so the new-order path still compiles as one.

use super::*;

/// What the checks worked out for an order they let through: everything
/// acceptance needs beyond the command itself.
#[derive(Clone, Copy, Debug)]
struct Admitted {
    /// The owner's record, if the owner has one yet.
    owner_slot: Option<u32>,
    inst: u32,
    /// The limit price (0 for orders without one).
    price: Price,
    /// Buy holds: the price per lot the hold covers (limit, or band edge).
    hold_price: Price,
    /// Settling instruments: the account the hold sits on (`NO_ACCOUNT` otherwise).
    pay: u32,
    /// Settling instruments: the account fills pay into (`NO_ACCOUNT` otherwise).
    recv: u32,
    /// What the hold reserves at acceptance.
    hold: u128,
}

impl Engine {
    pub(super) fn handle_new_order(&mut self, o: &NewOrder, out: &mut Events) {
        let a = match self.admit_new_order(o) {
            Ok(a) => a,
            Err(reason) => {
                return out.push(Event::Rejected {
                    target: RejectTarget::ClientOrder(o.client_order_id),
                    reason,
                })
            }
        };
        // Accepted: from here on the order exists (id, client order id
        // remembered, slot, hold, owner list, `Accepted`).
        let owner_slot = a.owner_slot.unwrap_or_else(|| self.new_owner(o.owner));
        let id = OrderId(self.next_order_id);
        self.next_order_id += 1;
        self.remember_coid(owner_slot, o.client_order_id, id);
        let display = o.display_qty.unwrap_or(Qty(0));
        let slot = self.alloc_order(
            Order {
                id,
                coid: o.client_order_id,
                price: a.price,
                remaining: o.qty,
                visible: if display.0 > 0 { display } else { o.qty },
                inst: a.inst,
                level: NIL,
                owner_slot,
                pay: a.pay,
                side: o.side,
                otype: o.order_type,
                tif: o.tif,
                stp: o.stp,
                post_only: o.post_only,
                state: OrderState::Active,
                iceberg: display.0 > 0,
                cold_set: false,
            },
            OrderCold {
                trigger: o.trigger_price.unwrap_or(Price(0)),
                expire_at: if o.tif == Tif::Gtd {
                    o.expire_at.unwrap_or(Timestamp(0))
                } else {
                    Timestamp(u64::MAX)
                },
                display,
                hold_price: a.hold_price,
                heap_pos: NIL,
                recv: a.recv,
                hold: a.hold,
                fee_acc: 0,
            },
        );
        if a.pay != NO_ACCOUNT {
            self.ledger.hold_add(a.pay, a.hold);
        }
        self.link_owner(slot);
        out.push(Event::Accepted {
            order_id: id,
            client_order_id: o.client_order_id,
            owner: o.owner,
            instrument: o.instrument,
            side: o.side,
            price: if o.order_type.has_price() {
                Some(a.price)
            } else {
                None
            },
            qty: o.qty,
        });
        self.start_new_order(o, slot, out);
    }

    /// Every check a new order must pass, in the documented order: the first
    /// reason that applies, or what acceptance needs. Changes nothing.
    #[inline(always)]
    fn admit_new_order(&self, o: &NewOrder) -> Result<Admitted, RejectReason> {
        let owner_slot = self.owner_index.get(o.owner.0 as u128);
        if let Some(os) = owner_slot {
            let ow = &self.owners[os as usize];
            if self
                .coids
                .contains(&ow.coids, o.owner.0, o.client_order_id.0)
            {
                return Err(RejectReason::DuplicateClientOrderId);
            }
        }
        let Some(inst) = self.inst_slot(o.instrument) else {
            return Err(RejectReason::UnknownInstrument);
        };
        let spec = &self.instruments[inst as usize].spec;
        let price = check_terms(o, spec)?;
        let (pay, recv) = self.settle_accounts(o, inst)?;
        if self.instruments[inst as usize].halted.is_some() {
            return Err(RejectReason::InstrumentHalted);
        }
        let reference = self.reference(inst);
        let hold_price = band_and_hold_price(o, spec, reference, price)?;
        self.check_owner_limits(o, owner_slot, inst, reference, price)?;
        self.check_capacity(o, owner_slot, inst, price)?;
        let hold = self.check_funds(o, inst, hold_price, pay, recv)?;
        if o.post_only && (o.order_type != OrderType::Limit || self.crosses(inst, o.side, price)) {
            return Err(RejectReason::PostOnlyWouldCross);
        }
        if o.tif == Tif::Fok {
            let bounds = match o.order_type {
                OrderType::Limit => Bounds::limit(o.side, price),
                OrderType::Market => Bounds::market(spec, reference, hold_price),
                // A stop with FOK is decided when it fires (see fire_stop).
                _ => Bounds::ANY,
            };
            if !o.order_type.has_trigger()
                && !self.fok_fillable(inst, o.side, o.owner, o.stp, o.qty.0, bounds)
            {
                return Err(RejectReason::FokNotFillable);
            }
        }
        Ok(Admitted {
            owner_slot,
            inst,
            price,
            hold_price,
            pay,
            recv,
            hold,
        })
    }

    /// Settling instruments: the owner's (pay, recv) trading accounts (buy:
    /// quote then base, sell: base then quote); `NO_ACCOUNT` twice otherwise.
    #[inline(always)]
    fn settle_accounts(&self, o: &NewOrder, inst: u32) -> Result<(u32, u32), RejectReason> {
        let instr = &self.instruments[inst as usize];
        if !instr.spec.settle {
            return Ok((NO_ACCOUNT, NO_ACCOUNT));
        }
        let base = self.ledger.trading_account(o.owner, instr.base_asset);
        let quote = self.ledger.trading_account(o.owner, instr.quote_asset);
        let (Some(base), Some(quote)) = (base, quote) else {
            return Err(RejectReason::UnknownOwner);
        };
        Ok(match o.side {
            Side::Buy => (quote, base),
            Side::Sell => (base, quote),
        })
    }

    /// Per-owner limits: open orders on the instrument, and notional (a
    /// market order's at its band edge; no band, no market order).
    #[inline(always)]
    fn check_owner_limits(
        &self,
        o: &NewOrder,
        owner_slot: Option<u32>,
        inst: u32,
        reference: Price,
        price: Price,
    ) -> Result<(), RejectReason> {
        let spec = &self.instruments[inst as usize].spec;
        if let Some(max) = spec.open_orders_max {
            let open = owner_slot
                .and_then(|s| self.open_counts.get(open_key(s, inst)))
                .unwrap_or(0);
            if open >= max {
                return Err(RejectReason::LimitExceeded);
            }
        }
        if let Some(max) = spec.notional_max {
            let unit = if o.order_type.has_price() {
                Some(price)
            } else {
                band_edge(spec, reference, o.side)
            };
            match unit {
                Some(p) if (p.0 as u128) * (o.qty.0 as u128) <= max as u128 => {}
                _ => return Err(RejectReason::LimitExceeded),
            }
        }
        Ok(())
    }

    /// Capacities fixed at start-up: an order slot, an owner record for a
    /// new owner, a level for a new resting price, a stop list entry.
    #[inline(always)]
    fn check_capacity(
        &self,
        o: &NewOrder,
        owner_slot: Option<u32>,
        inst: u32,
        price: Price,
    ) -> Result<(), RejectReason> {
        let needs_level = o.order_type == OrderType::Limit
            && matches!(o.tif, Tif::Gtc | Tif::Gtd)
            && self.find_level(inst, o.side, price).is_none()
            && self.side_levels(inst, o.side).len() >= self.cfg.levels_max as usize;
        let needs_stop_slot = o.order_type.has_trigger()
            && self.stop_list(inst, o.side).len() >= self.cfg.stops_max as usize;
        if self.order_free.is_empty() && self.orders.len() >= self.orders.capacity()
            || (owner_slot.is_none()
                && self.owner_free.is_empty()
                && self.owners.len() >= self.cfg.owners_max as usize)
            || needs_level
            || needs_stop_slot
        {
            return Err(RejectReason::CapacityExceeded);
        }
        Ok(())
    }

    /// Settling instruments: the hold the order takes, once the accounts
    /// have headroom and the pay account can cover it; 0 otherwise.
    #[inline(always)]
    fn check_funds(
        &self,
        o: &NewOrder,
        inst: u32,
        hold_price: Price,
        pay: u32,
        recv: u32,
    ) -> Result<u128, RejectReason> {
        let instr = &self.instruments[inst as usize];
        let qty = o.qty.0;
        if !instr.spec.settle {
            return Ok(0);
        }
        if o.side == Side::Buy && (hold_price.0 as u128) * (qty as u128) > u64::MAX as u128 {
            return Err(RejectReason::Overflow);
        }
        if !self.ledger_headroom(&[pay, recv, instr.fee_slot]) {
            return Err(RejectReason::Overflow);
        }
        let hold = need_of(&instr.spec, o.side, hold_price, qty, 0);
        let a = &self.ledger.accounts[pay as usize];
        if a.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS) && a.available() < hold {
            return Err(RejectReason::InsufficientFunds);
        }
        Ok(hold)
    }

    /// Sets an accepted order going: a stop fires at once if the last trade
    /// already met its trigger, ends at once if it arrived expired, or waits;
    /// any other order matches as a taker. Then every stop it triggered fires.
    #[inline(always)]
    fn start_new_order(&mut self, o: &NewOrder, slot: u32, out: &mut Events) {
        if o.order_type.has_trigger() {
            let trig = self.cold_of(slot).trigger;
            let inst = self.orders[slot as usize].inst;
            let fires_now = match self.instruments[inst as usize].last_trade {
                Some(last) => stop_condition(o.side, trig, last),
                None => false,
            };
            if fires_now {
                self.fire_stop(slot, out);
            } else if o.tif == Tif::Gtd && self.cold_of(slot).expire_at <= self.now {
                // Arrived already expired and cannot trade: it ends at once (convention 4).
                let placed = self.orders[slot as usize];
                out.push(self.canceled(&placed, o.qty, CancelReason::Expired));
                self.end_order(slot);
            } else {
                self.park_stop(slot);
            }
        } else {
            self.run_taker(slot, out);
        }
        self.drain_fire_queue(out);
    }
}

/// The order's own terms against the instrument: price, then trigger price
/// (present exactly when the type has one, positive, on the tick), quantity
/// and display quantity in range, and no overflow of price × qty or
/// qty × lot size. Returns the limit price (0 when the type has none).
#[inline(always)]
fn check_terms(o: &NewOrder, spec: &InstrumentSpec) -> Result<Price, RejectReason> {
    // A tick of 1 (common) needs no division.
    let on_tick = |p: Price| p.0 > 0 && (spec.tick == 1 || p.0.is_multiple_of(spec.tick));
    let price_ok = match (o.order_type.has_price(), o.price) {
        (true, Some(p)) => on_tick(p),
        (false, None) => true,
        _ => false,
    };
    let trigger_ok = match (o.order_type.has_trigger(), o.trigger_price) {
        (true, Some(p)) => on_tick(p),
        (false, None) => true,
        _ => false,
    };
    if !price_ok || !trigger_ok {
        return Err(RejectReason::InvalidPrice);
    }
    let qty = o.qty.0;
    if qty == 0 || qty < spec.qty_min || qty > spec.qty_max {
        return Err(RejectReason::InvalidQty);
    }
    if let Some(d) = o.display_qty {
        let resting_type = o.order_type.has_price();
        if !resting_type || d.0 < spec.qty_min || d.0 > qty {
            return Err(RejectReason::InvalidQty);
        }
    }
    let price = o.price.unwrap_or(Price(0));
    if (price.0 as u128) * (qty as u128) > u64::MAX as u128
        || (qty as u128) * (spec.lot_size as u128) > u64::MAX as u128
    {
        return Err(RejectReason::Overflow);
    }
    Ok(price)
}

/// A priced order must be inside the band; returns the price a buy's hold
/// covers: its limit, or for a settling market buy the band's upper edge (no
/// band, no such order); 0 for sells and non-settling market buys.
#[inline(always)]
fn band_and_hold_price(
    o: &NewOrder,
    spec: &InstrumentSpec,
    reference: Price,
    price: Price,
) -> Result<Price, RejectReason> {
    if o.order_type.has_price() && !in_band(spec, reference, price) {
        return Err(RejectReason::PriceOutOfBand);
    }
    match (o.side, o.order_type.has_price()) {
        (Side::Buy, true) => Ok(price),
        (Side::Buy, false) if spec.settle => {
            band_edge(spec, reference, Side::Buy).ok_or(RejectReason::PriceOutOfBand)
        }
        _ => Ok(Price(0)),
    }
}
