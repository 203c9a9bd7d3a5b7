//! A new order: every check in its fixed order, then acceptance.
//!
//! Checks run in the order the rejection reasons are documented, each
//! returning the first reason that applies; nothing changes before the last
//! check passes. Acceptance then assigns the order id, remembers the client
//! order id, allocates the slot, takes the hold, reports `Accepted`, and the
//! order is parked as a stop, fired, or matched as a taker.

use super::*;

impl Engine {
    pub(super) fn handle_new_order(&mut self, o: &NewOrder, out: &mut Events) {
        let reject = |out: &mut Events, reason| {
            out.push(Event::Rejected {
                target: RejectTarget::ClientOrder(o.client_order_id),
                reason,
            })
        };
        let owner_slot = self.owner_index.get(o.owner.0 as u128);
        if let Some(os) = owner_slot {
            let ow = &self.owners[os as usize];
            if self
                .coids
                .contains(&ow.coids, o.owner.0, o.client_order_id.0)
            {
                return reject(out, RejectReason::DuplicateClientOrderId);
            }
        }
        let Some(inst) = self.inst_slot(o.instrument) else {
            return reject(out, RejectReason::UnknownInstrument);
        };
        let spec = self.instruments[inst as usize].spec;
        // Price, then trigger price.
        let price_ok = match (o.order_type.has_price(), o.price) {
            (true, Some(p)) => p.0 > 0 && p.0 % spec.tick == 0,
            (false, None) => true,
            _ => false,
        };
        let trigger_ok = match (o.order_type.has_trigger(), o.trigger_price) {
            (true, Some(p)) => p.0 > 0 && p.0 % spec.tick == 0,
            (false, None) => true,
            _ => false,
        };
        if !price_ok || !trigger_ok {
            return reject(out, RejectReason::InvalidPrice);
        }
        let qty = o.qty.0;
        if qty == 0 || qty < spec.qty_min || qty > spec.qty_max {
            return reject(out, RejectReason::InvalidQty);
        }
        if let Some(d) = o.display_qty {
            let resting_type = o.order_type.has_price();
            if !resting_type || d.0 < spec.qty_min || d.0 > qty {
                return reject(out, RejectReason::InvalidQty);
            }
        }
        let price = o.price.unwrap_or(Price(0));
        if (price.0 as u128) * (qty as u128) > u64::MAX as u128
            || (qty as u128) * (spec.lot_size as u128) > u64::MAX as u128
        {
            return reject(out, RejectReason::Overflow);
        }
        let instr = &self.instruments[inst as usize];
        let (mut pay, mut recv) = (NO_ACCOUNT, NO_ACCOUNT);
        if spec.settle {
            let base = self.ledger.trading_account(o.owner, instr.base_asset);
            let quote = self.ledger.trading_account(o.owner, instr.quote_asset);
            let (Some(base), Some(quote)) = (base, quote) else {
                return reject(out, RejectReason::UnknownOwner);
            };
            (pay, recv) = match o.side {
                Side::Buy => (quote, base),
                Side::Sell => (base, quote),
            };
        }
        if instr.halted.is_some() {
            return reject(out, RejectReason::InstrumentHalted);
        }
        let reference = self.reference(inst);
        if o.order_type.has_price() && !in_band(&spec, reference, price) {
            return reject(out, RejectReason::PriceOutOfBand);
        }
        // A settling buy without a limit holds at the band's upper edge: no band, no order.
        let hold_price = match (o.side, o.order_type.has_price()) {
            (Side::Buy, true) => price,
            (Side::Buy, false) if spec.settle => match band_edge(&spec, reference, Side::Buy) {
                Some(edge) => edge,
                None => return reject(out, RejectReason::PriceOutOfBand),
            },
            _ => Price(0),
        };
        // Per-owner limits.
        if let Some(max) = spec.open_orders_max {
            let open = owner_slot
                .and_then(|s| self.open_counts.get(open_key(s, inst)))
                .unwrap_or(0);
            if open >= max {
                return reject(out, RejectReason::LimitExceeded);
            }
        }
        if let Some(max) = spec.notional_max {
            let unit = if o.order_type.has_price() {
                Some(price)
            } else {
                band_edge(&spec, reference, o.side)
            };
            match unit {
                Some(p) if (p.0 as u128) * (qty as u128) <= max as u128 => {}
                _ => return reject(out, RejectReason::LimitExceeded),
            }
        }
        // Capacities fixed at start-up.
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
            return reject(out, RejectReason::CapacityExceeded);
        }
        let mut hold = 0u128;
        if spec.settle {
            if o.side == Side::Buy && (hold_price.0 as u128) * (qty as u128) > u64::MAX as u128 {
                return reject(out, RejectReason::Overflow);
            }
            if !self.ledger_headroom(&[pay, recv, self.instruments[inst as usize].fee_slot]) {
                return reject(out, RejectReason::Overflow);
            }
            hold = need_of(&spec, o.side, hold_price, qty, 0);
            let a = &self.ledger.accounts[pay as usize];
            if a.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS) && a.available() < hold {
                return reject(out, RejectReason::InsufficientFunds);
            }
        }
        if o.post_only && (o.order_type != OrderType::Limit || self.crosses(inst, o.side, price)) {
            return reject(out, RejectReason::PostOnlyWouldCross);
        }
        if o.tif == Tif::Fok {
            let bounds = match o.order_type {
                OrderType::Limit => Bounds::limit(o.side, price),
                OrderType::Market => Bounds::market(&spec, reference, hold_price),
                // A stop with FOK is decided when it fires (see fire_stop).
                _ => Bounds::ANY,
            };
            if !o.order_type.has_trigger()
                && !self.fok_fillable(inst, o.side, o.owner, o.stp, qty, bounds)
            {
                return reject(out, RejectReason::FokNotFillable);
            }
        }

        // Accepted: from here on the order exists.
        let owner_slot = owner_slot.unwrap_or_else(|| self.new_owner(o.owner));
        let id = OrderId(self.next_order_id);
        self.next_order_id += 1;
        self.remember_coid(owner_slot, o.client_order_id, id);
        let display = o.display_qty.unwrap_or(Qty(0));
        let slot = self.alloc_order(
            Order {
                id,
                coid: o.client_order_id,
                price,
                remaining: o.qty,
                visible: if display.0 > 0 { display } else { o.qty },
                inst,
                level: NIL,
                owner_slot,
                pay,
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
                hold_price,
                heap_pos: NIL,
                recv,
                hold,
                fee_acc: 0,
            },
        );
        if pay != NO_ACCOUNT {
            self.ledger.hold_add(pay, hold);
        }
        self.link_owner(slot);
        out.push(Event::Accepted {
            order_id: id,
            client_order_id: o.client_order_id,
            owner: o.owner,
            instrument: o.instrument,
            side: o.side,
            price: if o.order_type.has_price() {
                Some(price)
            } else {
                None
            },
            qty: o.qty,
        });

        if o.order_type.has_trigger() {
            let trig = self.cold_of(slot).trigger;
            let fires_now = match self.instruments[inst as usize].last_trade {
                Some(last) => stop_condition(o.side, trig, last),
                None => false,
            };
            if fires_now {
                self.fire_stop(slot, out);
            } else if o.tif == Tif::Gtd && self.cold_of(slot).expire_at <= self.now {
                // Arrived already expired and cannot trade: it ends at once (convention 4).
                out.push(Event::Canceled {
                    order_id: id,
                    owner: o.owner,
                    qty: o.qty,
                    reason: CancelReason::Expired,
                });
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
