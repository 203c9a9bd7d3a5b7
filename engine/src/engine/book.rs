//! Price levels and book sides.
//!
//! A book side is a vector of `(key, level slot)` entries sorted ascending by
//! key with the best level last (bids: key = price; asks: key = !price), so
//! the best price is O(1) and changes near the top move few entries. A level
//! is an intrusive FIFO of order slots (through `Links::prev/next`) whose
//! `qty` and `count` always equal the sum over its orders' visible parts.
//! No level is ever empty between commands: the last order out frees it.

use super::*;

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Level {
    pub(super) price: Price,
    pub(super) qty: Qty,
    pub(super) count: u32,
    pub(super) head: u32,
    pub(super) tail: u32,
}

/// A sorted-vector entry: `key` orders the vector, `slot` is the level (or stop order).
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub(super) key: u64,
    pub(super) slot: u32,
}

#[derive(Clone, Debug)]
pub(super) struct Instrument {
    pub(super) spec: InstrumentSpec,
    /// Bid levels, key = price (ascending, best last).
    pub(super) bids: Vec<Entry>,
    /// Ask levels, key = !price (ascending, best = lowest price last).
    pub(super) asks: Vec<Entry>,
    /// Buy stops, key = !trigger (lowest trigger last: it fires first).
    pub(super) buy_stops: Vec<Entry>,
    /// Sell stops, key = trigger (highest trigger last).
    pub(super) sell_stops: Vec<Entry>,
    pub(super) last_trade: Option<Price>,
    pub(super) halted: Option<HaltReason>,
    pub(super) window: Option<u64>,
    pub(super) anchor: Price,
    /// Settling instruments: asset indexes and the fee account slot.
    pub(super) base_asset: u32,
    pub(super) quote_asset: u32,
    pub(super) fee_slot: u32,
}

#[inline]
pub(super) fn side_key(side: Side, price: Price) -> u64 {
    match side {
        Side::Buy => price.0,
        Side::Sell => !price.0,
    }
}

impl Engine {
    pub(super) fn side_levels(&self, inst: u32, side: Side) -> &Vec<Entry> {
        let i = &self.instruments[inst as usize];
        match side {
            Side::Buy => &i.bids,
            Side::Sell => &i.asks,
        }
    }

    fn side_levels_mut(&mut self, inst: u32, side: Side) -> &mut Vec<Entry> {
        let i = &mut self.instruments[inst as usize];
        match side {
            Side::Buy => &mut i.bids,
            Side::Sell => &mut i.asks,
        }
    }

    /// The level at `price` on `side`: (position in the side vector, level slot).
    #[inline]
    pub(super) fn find_level(&self, inst: u32, side: Side, price: Price) -> Option<(usize, u32)> {
        let v = self.side_levels(inst, side);
        let key = side_key(side, price);
        // Most activity is near the top of the book: check the last few first.
        let n = v.len();
        for i in (n.saturating_sub(4)..n).rev() {
            if v[i].key == key {
                return Some((i, v[i].slot));
            }
            if v[i].key < key {
                return None;
            }
        }
        let pos = v[..n.saturating_sub(4)].partition_point(|e| e.key < key);
        if pos < n && v[pos].key == key {
            Some((pos, v[pos].slot))
        } else {
            None
        }
    }

    fn insert_level(&mut self, inst: u32, side: Side, price: Price) -> u32 {
        let lslot = match self.level_free.pop() {
            Some(s) => s,
            None => {
                assert!(
                    self.levels.len() < self.levels.capacity(),
                    "level pool exhausted"
                );
                self.levels.push(Level::default());
                (self.levels.len() - 1) as u32
            }
        };
        self.levels[lslot as usize] = Level {
            price,
            qty: Qty(0),
            count: 0,
            head: NIL,
            tail: NIL,
        };
        let key = side_key(side, price);
        let v = self.side_levels_mut(inst, side);
        assert!(
            v.len() < v.capacity(),
            "book side full past the capacity check"
        );
        let pos = v.partition_point(|e| e.key < key);
        v.insert(pos, Entry { key, slot: lslot });
        lslot
    }

    pub(super) fn rest(&mut self, slot: u32) {
        let o = self.orders[slot as usize];
        let lslot = match self.find_level(o.inst, o.side, o.price) {
            Some((_, l)) => l,
            None => self.insert_level(o.inst, o.side, o.price),
        };
        self.orders[slot as usize].state = OrderState::Resting;
        self.levels[lslot as usize].qty.0 += o.visible.0;
        self.push_level_tail(lslot, slot);
    }

    pub(super) fn push_level_tail(&mut self, lslot: u32, slot: u32) {
        let tail = self.levels[lslot as usize].tail;
        self.orders[slot as usize].level = lslot;
        let l = &mut self.links[slot as usize];
        l.prev = tail;
        l.next = NIL;
        if tail == NIL {
            self.levels[lslot as usize].head = slot;
        } else {
            self.links[tail as usize].next = slot;
        }
        let l = &mut self.levels[lslot as usize];
        l.tail = slot;
        l.count += 1;
    }

    /// Unlinks an order from its level's queue (level bookkeeping of count only).
    pub(super) fn unlink_level(&mut self, slot: u32) {
        let lslot = self.orders[slot as usize].level;
        let Links { prev, next, .. } = self.links[slot as usize];
        if prev == NIL {
            self.levels[lslot as usize].head = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next == NIL {
            self.levels[lslot as usize].tail = prev;
        } else {
            self.links[next as usize].prev = prev;
        }
        self.levels[lslot as usize].count -= 1;
        let l = &mut self.links[slot as usize];
        l.prev = NIL;
        l.next = NIL;
    }

    /// Takes a resting order out of the book, freeing its level if it empties.
    pub(super) fn unlink_from_book(&mut self, slot: u32) {
        let (lslot, visible, inst, side, price) = {
            let o = &self.orders[slot as usize];
            (o.level, o.visible, o.inst, o.side, o.price)
        };
        self.unlink_level(slot);
        self.levels[lslot as usize].qty.0 -= visible.0;
        self.orders[slot as usize].level = NIL;
        if self.levels[lslot as usize].count == 0 {
            let (pos, _) = self
                .find_level(inst, side, price)
                .expect("resting order's level missing from its side");
            self.side_levels_mut(inst, side).remove(pos);
            self.level_free.push(lslot);
        }
    }
}
