//! Read-only views: the query commands' events and the accessors scripts,
//! tools and tests use.
//!
//! Nothing here changes state. The query handlers write into the events
//! buffer (no allocation); the accessors returning `Vec` allocate and are
//! not for the hot path.

use super::*;

/// A read-only view of a live order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderView {
    /// Order id.
    pub id: OrderId,
    /// Owner.
    pub owner: OwnerId,
    /// Client order id.
    pub client_order_id: ClientOrderId,
    /// Instrument.
    pub instrument: InstrumentId,
    /// Side.
    pub side: Side,
    /// Type.
    pub order_type: OrderType,
    /// Limit price (0 for market/stop).
    pub price: Price,
    /// Remaining quantity (hidden part included).
    pub remaining: Qty,
    /// Visible quantity.
    pub visible: Qty,
    /// Whether it waits for its trigger.
    pub waiting_stop: bool,
}

impl Engine {
    pub(super) fn handle_query_book(
        &mut self,
        id: InstrumentId,
        depth: Option<u32>,
        out: &mut Events,
    ) {
        let Some(s) = self.inst_slot(id) else {
            return out.push(Event::Rejected {
                target: RejectTarget::Instrument(id),
                reason: RejectReason::UnknownInstrument,
            });
        };
        let depth = depth.unwrap_or(u32::MAX) as usize;
        let inst = &self.instruments[s as usize];
        let mut ranges = [LevelRange { start: 0, len: 0 }; 2];
        for (r, side) in ranges.iter_mut().zip([&inst.bids, &inst.asks]) {
            let mut first = true;
            for e in side.iter().rev().take(depth) {
                let l = &self.levels[e.slot as usize];
                let idx = out.push_level(LevelView {
                    price: l.price,
                    qty: l.qty,
                    orders: l.count,
                });
                if first {
                    r.start = idx;
                    first = false;
                }
                r.len += 1;
            }
        }
        out.push(Event::Book {
            instrument: id,
            bids: ranges[0],
            asks: ranges[1],
        });
    }

    pub(super) fn handle_query_open_orders(
        &mut self,
        owner: OwnerId,
        instrument: Option<InstrumentId>,
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
            let o = &self.orders[m as usize];
            if inst.is_none_or(|i| i == o.inst) {
                let waiting = o.state == OrderState::Stop;
                out.push(Event::OpenOrder {
                    order_id: o.id,
                    owner: self.owners[o.owner_slot as usize].id,
                    client_order_id: o.coid,
                    instrument: self.instruments[o.inst as usize].spec.id,
                    side: o.side,
                    price: o.otype.has_price().then_some(o.price),
                    remaining: o.remaining,
                    visible: if waiting { Qty(0) } else { o.visible },
                    waiting_stop: waiting,
                });
            }
            m = self.links[m as usize].onext;
        }
    }

    /// Visible levels of one side, best first (allocates: for tests and
    /// tools; `book_levels` and `depth_at` do not).
    pub fn book_side(&self, instrument: InstrumentId, side: Side) -> Vec<LevelView> {
        self.book_levels(instrument, side).collect()
    }

    /// Visible quantity and order count resting at `price` on one side of
    /// an instrument; `(0, 0)` when no level is there (or no such
    /// instrument). Allocates nothing: for the hot path of an embedder.
    pub fn depth_at(&self, instrument: InstrumentId, side: Side, price: Price) -> (Qty, u32) {
        let Some(s) = self.inst_slot(instrument) else {
            return (Qty(0), 0);
        };
        match self.find_level(s, side, price) {
            Some(l) => {
                let l = &self.levels[l as usize];
                (l.qty, l.count)
            }
            None => (Qty(0), 0),
        }
    }

    /// The visible levels of one side, best first, as an iterator that
    /// allocates nothing (`book_levels(i, side).take(n)` walks the top n);
    /// empty for an unknown instrument. Yields what `book_side` copies.
    pub fn book_levels(
        &self,
        instrument: InstrumentId,
        side: Side,
    ) -> impl Iterator<Item = LevelView> + '_ {
        self.inst_slot(instrument)
            .into_iter()
            .flat_map(move |s| self.side_levels(s, side).iter().rev())
            .map(|e| {
                let l = &self.levels[e.slot as usize];
                LevelView {
                    price: l.price,
                    qty: l.qty,
                    orders: l.count,
                }
            })
    }

    /// Best bid and ask prices.
    pub fn best_prices(&self, instrument: InstrumentId) -> (Option<Price>, Option<Price>) {
        let Some(s) = self.inst_slot(instrument) else {
            return (None, None);
        };
        let best = |side| {
            self.side_levels(s, side)
                .last()
                .map(|e| self.levels[e.slot as usize].price)
        };
        (best(Side::Buy), best(Side::Sell))
    }

    /// A live order.
    pub fn order(&self, id: OrderId) -> Option<OrderView> {
        let slot = self
            .order_index
            .get(id.0, |s| self.orders[s as usize].id.0)?;
        let o = &self.orders[slot as usize];
        Some(OrderView {
            id: o.id,
            owner: self.owners[o.owner_slot as usize].id,
            client_order_id: o.coid,
            instrument: self.instruments[o.inst as usize].spec.id,
            side: o.side,
            order_type: o.otype,
            price: o.price,
            remaining: o.remaining,
            visible: o.visible,
            waiting_stop: o.state == OrderState::Stop,
        })
    }

    /// Order ids of one side's queue at each level, best level first (for tests).
    pub fn queue_ids(&self, instrument: InstrumentId, side: Side) -> Vec<Vec<OrderId>> {
        let Some(s) = self.inst_slot(instrument) else {
            return Vec::new();
        };
        self.side_levels(s, side)
            .iter()
            .rev()
            .map(|e| {
                let mut ids = Vec::new();
                let mut m = self.levels[e.slot as usize].head;
                while m != NIL {
                    ids.push(self.orders[m as usize].id);
                    m = self.links[m as usize].next;
                }
                ids
            })
            .collect()
    }

    /// Last trade price of an instrument.
    pub fn last_trade(&self, instrument: InstrumentId) -> Option<Price> {
        self.inst_slot(instrument)
            .and_then(|s| self.instruments[s as usize].last_trade)
    }

    /// Whether an instrument is halted.
    pub fn is_halted(&self, instrument: InstrumentId) -> bool {
        self.inst_slot(instrument)
            .is_some_and(|s| self.instruments[s as usize].halted.is_some())
    }
}
