//! Stop orders: parked per instrument and side until a trade triggers them.
//!
//! Each side's stop list is sorted with the next stop to fire last (buy:
//! key = !trigger, sell: key = trigger). A trade moves every stop it
//! triggers into `triggered_batch` (sorted by order id), and the batch joins
//! `fire_queue` after the match; stops fire one by one from the queue, each
//! as a fresh taker. No stop is ever left waiting whose condition the last
//! trade met, and both queues are empty between commands.

use super::*;

#[inline]
pub(super) fn stop_key(side: Side, trigger: Price) -> u64 {
    match side {
        Side::Buy => !trigger.0,
        Side::Sell => trigger.0,
    }
}

#[inline]
pub(super) fn stop_condition(side: Side, trigger: Price, last: Price) -> bool {
    match side {
        Side::Buy => last >= trigger,
        Side::Sell => last <= trigger,
    }
}

impl Engine {
    pub(super) fn stop_list(&self, inst: u32, side: Side) -> &Vec<Entry> {
        let i = &self.instruments[inst as usize];
        match side {
            Side::Buy => &i.buy_stops,
            Side::Sell => &i.sell_stops,
        }
    }

    fn stop_list_mut(&mut self, inst: u32, side: Side) -> &mut Vec<Entry> {
        let i = &mut self.instruments[inst as usize];
        match side {
            Side::Buy => &mut i.buy_stops,
            Side::Sell => &mut i.sell_stops,
        }
    }

    pub(super) fn park_stop(&mut self, slot: u32) {
        let o = self.orders[slot as usize];
        self.orders[slot as usize].state = OrderState::Stop;
        let key = stop_key(o.side, self.cold_of(slot).trigger);
        let list = self.stop_list_mut(o.inst, o.side);
        let pos = list.partition_point(|e| e.key < key);
        assert!(
            list.len() < list.capacity(),
            "stop list full past the capacity check"
        );
        list.insert(pos, Entry { key, slot });
    }

    pub(super) fn remove_stop(&mut self, slot: u32) {
        let o = self.orders[slot as usize];
        let key = stop_key(o.side, self.cold_of(slot).trigger);
        let list = self.stop_list_mut(o.inst, o.side);
        let start = list.partition_point(|e| e.key < key);
        let off = list[start..]
            .iter()
            .position(|e| e.slot == slot)
            .expect("waiting stop missing from its list");
        list.remove(start + off);
    }

    /// Buy stops fire when the trade price ≥ trigger, sell stops when ≤. The
    /// stops one trade triggers join the batch in acceptance (order id) order.
    pub(super) fn collect_triggered(&mut self, inst: u32, price: Price) {
        let start = self.triggered_batch.len();
        let i = &mut self.instruments[inst as usize];
        // Buy stops: key = !trigger; fires when trigger <= price ⇔ key >= !price.
        while let Some(e) = i.buy_stops.last() {
            if e.key >= !price.0 {
                self.triggered_batch.push(e.slot);
                i.buy_stops.pop();
            } else {
                break;
            }
        }
        while let Some(e) = i.sell_stops.last() {
            if e.key >= price.0 {
                self.triggered_batch.push(e.slot);
                i.sell_stops.pop();
            } else {
                break;
            }
        }
        if self.triggered_batch.len() > start {
            for &s in &self.triggered_batch[start..] {
                self.orders[s as usize].state = OrderState::Active;
            }
            let orders = &self.orders;
            self.triggered_batch[start..].sort_unstable_by_key(|&s| orders[s as usize].id);
        }
    }

    /// Moves the stops triggered during the last match to the fire queue.
    fn flush_triggered(&mut self) {
        for &s in &self.triggered_batch {
            self.fire_queue.push_back(s);
        }
        self.triggered_batch.clear();
    }

    pub(super) fn drain_fire_queue(&mut self, out: &mut Events) {
        self.flush_triggered();
        while let Some(slot) = self.fire_queue.pop_front() {
            self.fire_stop(slot, out);
            self.flush_triggered();
        }
    }

    /// Fires a triggered stop: `triggered`, then it matches as market or limit.
    pub(super) fn fire_stop(&mut self, slot: u32, out: &mut Events) {
        self.orders[slot as usize].state = OrderState::Active;
        let o = self.orders[slot as usize];
        out.push(Event::Triggered {
            order_id: o.id,
            owner: self.owners[o.owner_slot as usize].id,
        });
        if self.instruments[o.inst as usize].halted.is_some() {
            // Triggered by a trade just before a circuit-breaker halt.
            return self.cancel_rest(slot, &o, CancelReason::CircuitBreaker, out);
        }
        if o.tif == Tif::Fok
            && !self.fok_fillable(
                o.inst,
                o.side,
                self.owners[o.owner_slot as usize].id,
                o.stp,
                o.remaining.0,
                self.taker_bounds(slot),
            )
        {
            return self.cancel_rest(slot, &o, CancelReason::IocRemainder, out);
        }
        self.run_taker(slot, out);
    }
}
