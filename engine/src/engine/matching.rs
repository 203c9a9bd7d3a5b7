//! Matching: an active order takes liquidity from the opposite side.
//!
//! A taker's acceptable prices are its `Bounds` (limit, or band edges for
//! market orders and triggered stops); matching walks the best level's FIFO,
//! applies self-trade prevention, checks the circuit breaker before every
//! fill, settles each fill at once and collects the stops each trade
//! triggers. `fok_fillable` is the same walk without changing state. After
//! a taker finishes it rests or is cancelled: the book is never crossed
//! between commands.

use super::*;

/// How a match of an incoming order ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MatchEnd {
    /// Filled, or nothing more to match at acceptable prices.
    Done,
    /// The circuit breaker tripped: cancel the remainder.
    Halted,
    /// Self-trade prevention cancelled the incoming order (already reported).
    TakerCanceled,
}

/// The prices a taker accepts: `lo ≤ price ≤ hi`. A limit order bounds one
/// side (its limit); a market order or triggered stop is bounded by both band
/// edges (convention 2: a sell must not lift a bid above the upper edge any
/// more than a buy may pay above it), and a settling market buy additionally
/// by its hold price. Two compares per level keep the matching loop cheap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bounds {
    pub(super) lo: Price,
    pub(super) hi: Price,
}

impl Bounds {
    pub(super) const ANY: Bounds = Bounds {
        lo: Price(0),
        hi: Price(u64::MAX),
    };

    /// A limit order's bounds: its limit on its own side, nothing on the other.
    #[inline]
    pub(super) fn limit(side: Side, limit: Price) -> Bounds {
        match side {
            Side::Buy => Bounds {
                hi: limit,
                ..Bounds::ANY
            },
            Side::Sell => Bounds {
                lo: limit,
                ..Bounds::ANY
            },
        }
    }

    /// A market order's (or triggered stop's) bounds: both band edges, the
    /// buy side further capped by a settling buy's hold price (0 = none).
    pub(super) fn market(spec: &InstrumentSpec, reference: Price, hold_price: Price) -> Bounds {
        let mut b = match (
            band_edge(spec, reference, Side::Sell),
            band_edge(spec, reference, Side::Buy),
        ) {
            (Some(lo), Some(hi)) => Bounds { lo, hi },
            _ => Bounds::ANY,
        };
        if hold_price.0 != 0 {
            b.hi = b.hi.min(hold_price);
        }
        b
    }

    /// Whether a taker with these bounds accepts a maker at `price`.
    #[inline]
    fn admits(self, price: Price) -> bool {
        self.lo <= price && price <= self.hi
    }
}

pub(super) fn in_band(spec: &InstrumentSpec, reference: Price, price: Price) -> bool {
    match spec.band_bps {
        None => true,
        Some(bps) => {
            let diff = price.0.abs_diff(reference.0) as u128;
            diff * BPS <= reference.0 as u128 * bps as u128
        }
    }
}

/// The band's edge on a side: the most a buy may pay, the least a sell may take.
pub(super) fn band_edge(spec: &InstrumentSpec, reference: Price, side: Side) -> Option<Price> {
    let bps = spec.band_bps?;
    let width = (reference.0 as u128 * bps as u128 / BPS).min(u64::MAX as u128) as u64;
    Some(match side {
        Side::Buy => Price(reference.0.saturating_add(width)),
        Side::Sell => Price(reference.0.saturating_sub(width)),
    })
}

impl Engine {
    /// Matches an active order, then rests it or ends it.
    pub(super) fn run_taker(&mut self, slot: u32, out: &mut Events) {
        let bounds = self.taker_bounds(slot);
        let end = self.match_order(slot, bounds, out);
        self.finish_taker(slot, end, out);
    }

    /// The prices an active order accepts as it starts matching now (the band
    /// is computed from the current reference; a settling buy never pays more
    /// per lot than its hold covers).
    pub(super) fn taker_bounds(&self, slot: u32) -> Bounds {
        let o = &self.orders[slot as usize];
        match o.otype {
            OrderType::Limit | OrderType::StopLimit => Bounds::limit(o.side, o.price),
            OrderType::Market | OrderType::Stop => Bounds::market(
                &self.instruments[o.inst as usize].spec,
                self.reference(o.inst),
                self.cold_of(slot).hold_price,
            ),
        }
    }

    fn finish_taker(&mut self, slot: u32, end: MatchEnd, out: &mut Events) {
        self.sync_hold(slot);
        let o = self.orders[slot as usize];
        match end {
            MatchEnd::TakerCanceled => return self.end_order(slot),
            MatchEnd::Halted => {
                if o.remaining.0 > 0 {
                    return self.cancel_rest(slot, &o, CancelReason::CircuitBreaker, out);
                }
                return self.end_order(slot);
            }
            MatchEnd::Done => {}
        }
        if o.remaining.0 == 0 {
            return self.end_order(slot);
        }
        let reason = if matches!(o.otype, OrderType::Market | OrderType::Stop)
            || matches!(o.tif, Tif::Ioc | Tif::Fok)
        {
            CancelReason::IocRemainder
        } else if o.tif == Tif::Gtd && self.cold_of(slot).expire_at <= self.now {
            CancelReason::Expired
        } else {
            // One level lookup serves the capacity check and the rest.
            let level = self.find_level(o.inst, o.side, o.price);
            if level.is_some()
                || self.side_levels(o.inst, o.side).len() < self.cfg.levels_max as usize
            {
                return self.rest_at(slot, level);
            }
            CancelReason::CapacityExceeded
        };
        self.cancel_rest(slot, &o, reason, out)
    }

    /// Matches the active order in `slot` against the opposite side while
    /// prices are acceptable.
    fn match_order(&mut self, slot: u32, bounds: Bounds, out: &mut Events) -> MatchEnd {
        let t = self.orders[slot as usize];
        let inst = t.inst;
        let instrument_id = self.instruments[inst as usize].spec.id;
        let mut remaining = t.remaining.0;
        let result = loop {
            if remaining == 0 {
                break MatchEnd::Done;
            }
            let Some(best) = self.side_levels(inst, t.side.opposite()).last().copied() else {
                break MatchEnd::Done;
            };
            let lslot = best.slot;
            let price = self.levels[lslot as usize].price;
            if !bounds.admits(price) {
                break MatchEnd::Done;
            }
            let mut m = self.levels[lslot as usize].head;
            let mut ended: Option<MatchEnd> = None;
            while m != NIL && remaining > 0 {
                let maker = self.orders[m as usize];
                let next = self.links[m as usize].next;
                if maker.owner_slot == t.owner_slot && t.stp != Stp::None {
                    match t.stp {
                        Stp::CancelMaker => {
                            out.push(self.canceled(&maker, maker.remaining, CancelReason::Stp));
                            self.end_order(m);
                        }
                        Stp::CancelTaker | Stp::CancelBoth => {
                            if t.stp == Stp::CancelBoth {
                                out.push(self.canceled(&maker, maker.remaining, CancelReason::Stp));
                                self.end_order(m);
                            }
                            out.push(self.canceled(&t, Qty(remaining), CancelReason::Stp));
                            remaining = 0;
                            ended = Some(MatchEnd::TakerCanceled);
                            break;
                        }
                        Stp::Decrement => {
                            let x = remaining.min(maker.visible.0);
                            self.reduce_resting(m, x, out, true);
                            remaining -= x;
                            if remaining == 0 {
                                out.push(self.canceled(&t, Qty(x), CancelReason::Stp));
                                ended = Some(MatchEnd::TakerCanceled);
                                break;
                            }
                            out.push(Event::Reduced {
                                order_id: t.id,
                                owner: self.owners[t.owner_slot as usize].id,
                                qty: Qty(x),
                                reason: CancelReason::Stp,
                            });
                        }
                        Stp::None => unreachable!(),
                    }
                    m = next;
                    continue;
                }
                if self.circuit_trips(inst, price) {
                    let i = &mut self.instruments[inst as usize];
                    i.halted = Some(HaltReason::CircuitBreaker);
                    out.push(Event::Halted {
                        instrument: instrument_id,
                        reason: HaltReason::CircuitBreaker,
                    });
                    ended = Some(MatchEnd::Halted);
                    break;
                }
                let fill = remaining.min(maker.visible.0);
                out.push(Event::Trade {
                    instrument: instrument_id,
                    price,
                    qty: Qty(fill),
                    maker_order_id: maker.id,
                    taker_order_id: t.id,
                    maker_owner: self.owners[maker.owner_slot as usize].id,
                    taker_owner: self.owners[t.owner_slot as usize].id,
                    taker_side: t.side,
                });
                remaining -= fill;
                self.instruments[inst as usize].last_trade = Some(price);
                if maker.pay != NO_ACCOUNT {
                    self.settle_fill(m, slot, price, fill);
                }
                self.collect_triggered(inst, price);
                self.reduce_resting(m, fill, out, false);
                m = next;
            }
            if let Some(e) = ended {
                break e;
            }
        };
        let visible = if t.iceberg {
            self.cold_of(slot).display.0.min(remaining)
        } else {
            remaining
        };
        let om = &mut self.orders[slot as usize];
        om.remaining = Qty(remaining);
        om.visible = Qty(visible);
        result
    }

    /// Takes `x` from a resting order's visible part (a fill, or an STP
    /// decrement when `stp`): ends it at zero, replenishes an iceberg at the
    /// back of its level when its slice is used up.
    fn reduce_resting(&mut self, m: u32, x: u64, out: &mut Events, stp: bool) {
        let (lslot, id) = {
            let o = &mut self.orders[m as usize];
            o.visible.0 -= x;
            o.remaining.0 -= x;
            (o.level, o.id)
        };
        self.levels[lslot as usize].qty.0 -= x;
        self.sync_hold(m);
        let o = self.orders[m as usize];
        if o.remaining.0 == 0 {
            if stp {
                out.push(self.canceled(&o, Qty(x), CancelReason::Stp));
            }
            self.end_order(m);
            return;
        }
        if stp {
            out.push(Event::Reduced {
                order_id: id,
                owner: self.owners[o.owner_slot as usize].id,
                qty: Qty(x),
                reason: CancelReason::Stp,
            });
        }
        if o.visible.0 == 0 {
            // Iceberg: the next slice goes to the back of the queue.
            let slice = self.cold_of(m).display.0.min(o.remaining.0);
            self.orders[m as usize].visible = Qty(slice);
            self.levels[lslot as usize].qty.0 += slice;
            self.unlink_level(m);
            self.push_level_tail(lslot, m);
        }
    }

    /// Whether a would-be trade at `price` trips the circuit breaker. Sets the
    /// window anchor on first use of a window.
    fn circuit_trips(&mut self, inst: u32, price: Price) -> bool {
        let now = self.now.0;
        let i = &mut self.instruments[inst as usize];
        let Some(bps) = i.spec.circuit_bps else {
            return false;
        };
        let k = now / i.spec.circuit_window_ns;
        if i.window != Some(k) {
            i.window = Some(k);
            i.anchor = i.last_trade.unwrap_or(i.spec.reference_price);
        }
        let diff = price.0.abs_diff(i.anchor.0) as u128;
        diff * BPS > i.anchor.0 as u128 * bps as u128
    }

    /// The same test without touching state (for FOK trials).
    fn circuit_would_trip(&self, inst: u32, price: Price) -> bool {
        let i = &self.instruments[inst as usize];
        let Some(bps) = i.spec.circuit_bps else {
            return false;
        };
        let k = self.now.0 / i.spec.circuit_window_ns;
        let anchor = if i.window == Some(k) {
            i.anchor
        } else {
            i.last_trade.unwrap_or(i.spec.reference_price)
        };
        let diff = price.0.abs_diff(anchor.0) as u128;
        diff * BPS > anchor.0 as u128 * bps as u128
    }

    /// FOK trial: would an incoming order fill `qty` entirely under the same
    /// STP, limit/band and circuit rules, walking queues as matching does?
    pub(super) fn fok_fillable(
        &self,
        inst: u32,
        side: Side,
        owner: OwnerId,
        stp: Stp,
        qty: u64,
        bounds: Bounds,
    ) -> bool {
        let mut need = qty;
        for e in self.side_levels(inst, side.opposite()).iter().rev() {
            let l = &self.levels[e.slot as usize];
            if !bounds.admits(l.price) {
                return false;
            }
            // Orders ahead of a blocking self-order give only their visible
            // slices before the taker meets it (icebergs replenish behind it).
            let mut visible_ahead = 0u64;
            let mut total = 0u64;
            let mut blocked = false;
            let mut m = l.head;
            while m != NIL {
                let o = &self.orders[m as usize];
                if self.owners[o.owner_slot as usize].id == owner && stp != Stp::None {
                    if stp == Stp::CancelMaker {
                        m = self.links[m as usize].next;
                        continue;
                    }
                    blocked = true;
                    break;
                }
                visible_ahead = visible_ahead.saturating_add(o.visible.0);
                total = total.saturating_add(o.remaining.0);
                m = self.links[m as usize].next;
            }
            let takes = if blocked { visible_ahead } else { total };
            if takes > 0 && self.circuit_would_trip(inst, l.price) {
                return false;
            }
            if need <= takes {
                return true;
            }
            if blocked {
                return false;
            }
            need -= takes;
        }
        false
    }

    pub(super) fn crosses(&self, inst: u32, side: Side, price: Price) -> bool {
        match self.side_levels(inst, side.opposite()).last() {
            None => false,
            Some(e) => {
                let best = self.levels[e.slot as usize].price;
                match side {
                    Side::Buy => best <= price,
                    Side::Sell => best >= price,
                }
            }
        }
    }
}
