//! Price levels and book sides.
//!
//! A book side is a vector of `(key, level slot)` entries sorted ascending by
//! key with the best level last (bids: key = price; asks: key = !price), so
//! the best price is O(1) and changes near the top move few entries. A level
//! is an intrusive FIFO of order slots (through `Links::prev/next`) whose
//! `qty` and `count` always equal the sum over its orders' visible parts.
//! No level is ever empty between commands: the last order out frees it.
//!
//! Finding the level for a price (every resting order, every new limit's
//! capacity check) goes through a `LevelCache` per side: a direct-mapped
//! array indexed by the price in ticks modulo its size, holding the level
//! slot, plus a count of live levels whose entry another level holds. A
//! matching entry is a hit; a miss with that count at zero proves there is
//! no such level; only otherwise does the lookup search the sorted vector.
//! Invariant (checked by `validate`): every non-empty entry names a live
//! level of that side whose price maps to it, and `uncached` is exactly the
//! number of the side's levels that no entry names.

use super::*;

/// 32 bytes, aligned so that no level straddles two cache lines.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(32))]
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

/// Price → level slot for one book side (see the module doc). Derived from
/// the side's vector: snapshots do not carry it, `restore` rebuilds it.
#[derive(Clone, Debug)]
pub(super) struct LevelCache {
    /// Level slot by `(price >> tick's trailing zeros) & mask`; `NIL` = none.
    slots: Vec<u32>,
    mask: u64,
    /// Live levels of the side that no entry of `slots` names.
    uncached: u32,
}

/// Entries per side: enough for the levels near the top of a busy book
/// without costing much per configured instrument (4 KiB a side).
const LEVEL_CACHE_MAX: usize = 1024;

impl LevelCache {
    pub(super) fn new(levels_max: u32) -> Self {
        let n = (levels_max.max(1) as usize)
            .next_power_of_two()
            .min(LEVEL_CACHE_MAX);
        LevelCache {
            slots: vec![NIL; n],
            mask: (n - 1) as u64,
            uncached: 0,
        }
    }

    /// The entry index of `price`: ticks with the tick's power of two
    /// shifted out, so consecutive ticks (an odd stride) never share an
    /// entry within `slots.len()` ticks of each other.
    #[inline]
    fn index(&self, tick_zeros: u32, price: Price) -> usize {
        ((price.0 >> tick_zeros) & self.mask) as usize
    }

    /// A new level at `price` in slot `lslot`.
    fn add(&mut self, tick_zeros: u32, price: Price, lslot: u32) {
        let i = self.index(tick_zeros, price);
        if self.slots[i] == NIL {
            self.slots[i] = lslot;
        } else {
            self.uncached += 1;
        }
    }

    /// The level at `price` in slot `lslot` is gone.
    fn remove(&mut self, tick_zeros: u32, price: Price, lslot: u32) {
        let i = self.index(tick_zeros, price);
        if self.slots[i] == lslot {
            self.slots[i] = NIL;
        } else {
            assert!(self.uncached > 0, "level cache out of step");
            self.uncached -= 1;
        }
    }

    fn clear(&mut self) {
        self.slots.fill(NIL);
        self.uncached = 0;
    }

    pub(super) fn prefault(&mut self) {
        let v = core::hint::black_box(self.slots[0]);
        self.slots[0] = v;
    }
}

#[derive(Clone, Debug)]
pub(super) struct Instrument {
    pub(super) spec: InstrumentSpec,
    /// Bid levels, key = price (ascending, best last).
    pub(super) bids: Vec<Entry>,
    /// Ask levels, key = !price (ascending, best = lowest price last).
    pub(super) asks: Vec<Entry>,
    /// Price → level for `bids` and for `asks`.
    pub(super) bid_cache: LevelCache,
    pub(super) ask_cache: LevelCache,
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

    /// The level at `price` on `side`, if there is one: O(1) through the
    /// side's `LevelCache`, a search of the side only when the cache cannot
    /// tell.
    #[inline]
    pub(super) fn find_level(&self, inst: u32, side: Side, price: Price) -> Option<u32> {
        let i = &self.instruments[inst as usize];
        let cache = match side {
            Side::Buy => &i.bid_cache,
            Side::Sell => &i.ask_cache,
        };
        let e = cache.slots[cache.index(i.spec.tick.trailing_zeros(), price)];
        if e != NIL && self.levels[e as usize].price == price {
            return Some(e);
        }
        if cache.uncached == 0 {
            return None;
        }
        self.level_pos(inst, side, price).map(|(_, l)| l)
    }

    /// The level at `price` on `side`: (position in the side vector, level
    /// slot), by searching the vector.
    fn level_pos(&self, inst: u32, side: Side, price: Price) -> Option<(usize, u32)> {
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

    fn level_cache_mut(&mut self, inst: u32, side: Side) -> (u32, &mut LevelCache) {
        let i = &mut self.instruments[inst as usize];
        let zeros = i.spec.tick.trailing_zeros();
        match side {
            Side::Buy => (zeros, &mut i.bid_cache),
            Side::Sell => (zeros, &mut i.ask_cache),
        }
    }

    /// Rebuilds every side's level cache from the sorted vectors (restore).
    pub(super) fn rebuild_level_caches(&mut self) {
        for ii in 0..self.instruments.len() {
            for side in [Side::Buy, Side::Sell] {
                self.level_cache_mut(ii as u32, side).1.clear();
                for k in 0..self.side_levels(ii as u32, side).len() {
                    let lslot = self.side_levels(ii as u32, side)[k].slot;
                    let price = self.levels[lslot as usize].price;
                    let (zeros, cache) = self.level_cache_mut(ii as u32, side);
                    cache.add(zeros, price, lslot);
                }
            }
        }
    }

    /// The level cache invariant of one instrument (for `validate`).
    pub(super) fn check_level_caches(&self, ii: usize) -> Result<(), BrokenInvariant> {
        let inst = &self.instruments[ii];
        let zeros = inst.spec.tick.trailing_zeros();
        for (side, v, cache) in [
            (Side::Buy, &inst.bids, &inst.bid_cache),
            (Side::Sell, &inst.asks, &inst.ask_cache),
        ] {
            let mut named = 0u32;
            for (i, &e) in cache.slots.iter().enumerate() {
                if e == NIL {
                    continue;
                }
                let live = v.iter().any(|x| x.slot == e);
                let price = self.levels.get(e as usize).map(|l| l.price);
                if !live || price.map(|p| cache.index(zeros, p)) != Some(i) {
                    return Err(broken!(
                        "{:?} {side:?}: level cache entry {i} names level {e} wrongly",
                        inst.spec.id
                    ));
                }
                named += 1;
            }
            if named as usize + cache.uncached as usize != v.len() {
                return Err(broken!(
                    "{:?} {side:?}: level cache counts {} uncached of {} levels, {named} named",
                    inst.spec.id,
                    cache.uncached,
                    v.len()
                ));
            }
        }
        Ok(())
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
        let (zeros, cache) = self.level_cache_mut(inst, side);
        cache.add(zeros, price, lslot);
        lslot
    }

    /// Rests an order at its price: in `level` when the caller already
    /// looked it up (`find_level`), else in a new level.
    pub(super) fn rest_at(&mut self, slot: u32, level: Option<u32>) {
        let o = self.orders[slot as usize];
        let lslot = match level {
            Some(l) => l,
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
                .level_pos(inst, side, price)
                .expect("resting order's level missing from its side");
            self.side_levels_mut(inst, side).remove(pos);
            let (zeros, cache) = self.level_cache_mut(inst, side);
            cache.remove(zeros, price, lslot);
            self.level_free.push(lslot);
        }
    }
}
