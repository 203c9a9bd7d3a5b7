//! Book state shared by the feed builder, the subscriber-side book builder
//! and the LOBSTER oracle: price levels per side (`Levels`) and a
//! market-by-order book (`OrderBook`).
//!
//! Invariants: a side's levels are sorted by a key that puts the best level
//! last (key = price for bids, `!price` for asks, as in the engine), so the
//! best level is O(1) and changes near the top move few entries. A level
//! exists exactly while it has at least one order; its `qty` and `orders` are
//! the sums over its orders. Queue order inside a level is the order's
//! priority stamp (taken from a counter on every add and on every
//! priority-losing change), so FIFO is exact without linked lists.
//! Containers are created with their capacity; nothing allocates per update
//! until a capacity is exceeded.

use engine::{LevelView, Price, Qty, Side};
use std::collections::HashMap;

fn key(side: Side, price: Price) -> u64 {
    match side {
        Side::Buy => price.0,
        Side::Sell => !price.0,
    }
}

/// Whether `a` is a better price than `b` for `side` (higher bid, lower ask).
pub fn better(side: Side, a: Price, b: Price) -> bool {
    key(side, a) > key(side, b)
}

/// One side's price levels (best last internally; views are best first).
#[derive(Clone, Debug)]
pub struct Levels {
    side: Side,
    /// (key, level), sorted by key ascending: best last.
    v: Vec<(u64, LevelView)>,
}

impl Levels {
    /// An empty side with room for `cap` levels.
    pub fn with_capacity(side: Side, cap: usize) -> Levels {
        Levels {
            side,
            v: Vec::with_capacity(cap),
        }
    }

    /// Which side.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Number of levels.
    pub fn len(&self) -> usize {
        self.v.len()
    }

    /// Whether there is no level.
    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    /// Removes every level.
    pub fn clear(&mut self) {
        self.v.clear();
    }

    fn find(&self, price: Price) -> Result<usize, usize> {
        let k = key(self.side, price);
        self.v.binary_search_by_key(&k, |e| e.0)
    }

    /// The level at `price`.
    pub fn get(&self, price: Price) -> Option<LevelView> {
        self.find(price).ok().map(|i| self.v[i].1)
    }

    /// Adds `qty` and `orders` to the level at `price` (creating it).
    pub fn add(&mut self, price: Price, qty: Qty, orders: u32) {
        match self.find(price) {
            Ok(i) => {
                let l = &mut self.v[i].1;
                l.qty.0 += qty.0;
                l.orders += orders;
            }
            Err(i) => self
                .v
                .insert(i, (key(self.side, price), LevelView { price, qty, orders })),
        }
    }

    /// Takes `qty` and `orders` from the level at `price`; removes it when no
    /// order is left. Panics if the level does not hold that much (a bug).
    pub fn sub(&mut self, price: Price, qty: Qty, orders: u32) {
        let i = self.find(price).expect("level exists");
        let l = &mut self.v[i].1;
        l.qty.0 = l.qty.0.checked_sub(qty.0).expect("level qty");
        l.orders = l.orders.checked_sub(orders).expect("level orders");
        if l.orders == 0 {
            assert_eq!(l.qty.0, 0, "empty level with size");
            self.v.remove(i);
        }
    }

    /// Sets the level at `price` to absolute values; `orders == 0` removes it.
    pub fn set(&mut self, price: Price, qty: Qty, orders: u32) {
        match (self.find(price), orders) {
            (Ok(i), 0) => {
                self.v.remove(i);
            }
            (Ok(i), _) => self.v[i].1 = LevelView { price, qty, orders },
            (Err(_), 0) => {}
            (Err(i), _) => self
                .v
                .insert(i, (key(self.side, price), LevelView { price, qty, orders })),
        }
    }

    /// The best level.
    pub fn best(&self) -> Option<LevelView> {
        self.v.last().map(|e| e.1)
    }

    /// The `n`-th best level (0 = best).
    pub fn nth(&self, n: usize) -> Option<LevelView> {
        self.v.len().checked_sub(n + 1).map(|i| self.v[i].1)
    }

    /// Levels best first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = LevelView> + '_ {
        self.v.iter().rev().map(|e| e.1)
    }

    /// Keeps only the best `n` levels.
    pub fn truncate_to(&mut self, n: usize) {
        if self.v.len() > n {
            let cut = self.v.len() - n;
            self.v.drain(..cut);
        }
    }

    /// Levels best first, as a vector (allocates: tests and snapshots).
    pub fn to_vec(&self) -> Vec<LevelView> {
        self.iter().collect()
    }

    /// Whether `a` is a better price than `b` on this side.
    pub fn better(&self, a: Price, b: Price) -> bool {
        key(self.side, a) > key(self.side, b)
    }
}

/// A resting order in an `OrderBook`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BookOrder {
    /// Side.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Visible size (> 0).
    pub qty: Qty,
    /// Queue priority stamp: smaller is earlier in its level's queue.
    pub prio: u64,
}

/// Market by order for one instrument: orders by id, aggregated into levels.
#[derive(Clone, Debug)]
pub struct OrderBook {
    orders: HashMap<u64, BookOrder>,
    bids: Levels,
    asks: Levels,
    next_prio: u64,
}

impl OrderBook {
    /// An empty book with room for `orders` orders and `levels` levels per side.
    pub fn with_capacity(orders: usize, levels: usize) -> OrderBook {
        OrderBook {
            orders: HashMap::with_capacity(orders),
            bids: Levels::with_capacity(Side::Buy, levels),
            asks: Levels::with_capacity(Side::Sell, levels),
            next_prio: 1,
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.orders.clear();
        self.bids.clear();
        self.asks.clear();
    }

    /// One side's levels.
    pub fn side(&self, side: Side) -> &Levels {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut Levels {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Number of resting orders.
    pub fn len(&self) -> usize {
        self.orders.len()
    }

    /// Whether no order rests.
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// A resting order.
    pub fn get(&self, id: u64) -> Option<BookOrder> {
        self.orders.get(&id).copied()
    }

    /// Adds an order at the back of its level. `false` (and no change) when
    /// the id rests already or `qty` is zero.
    pub fn add(&mut self, id: u64, side: Side, price: Price, qty: Qty) -> bool {
        if qty.0 == 0 || self.orders.contains_key(&id) {
            return false;
        }
        let prio = self.next_prio;
        self.next_prio += 1;
        self.orders.insert(
            id,
            BookOrder {
                side,
                price,
                qty,
                prio,
            },
        );
        self.side_mut(side).add(price, qty, 1);
        true
    }

    /// The stamp the next added order gets (every resting order's is smaller).
    pub(crate) fn next_prio(&self) -> u64 {
        self.next_prio
    }

    /// Every resting order with its id, in no particular order.
    pub(crate) fn orders(&self) -> impl Iterator<Item = (u64, BookOrder)> + '_ {
        self.orders.iter().map(|(&id, &o)| (id, o))
    }

    /// An empty book whose next stamp is `next_prio` (a restored one; its
    /// orders come back through `insert_with_prio`).
    pub(crate) fn restored(orders: usize, levels: usize, next_prio: u64) -> OrderBook {
        OrderBook {
            next_prio,
            ..OrderBook::with_capacity(orders, levels)
        }
    }

    /// Inserts an order with its own priority stamp (a restored book), its
    /// level's aggregates updated as by `add`. `false` (and no change) when
    /// the id rests already, `qty` is zero or the stamp is not below
    /// `next_prio` (a later `add` would queue ahead of it). The caller keeps
    /// stamps distinct.
    pub(crate) fn insert_with_prio(&mut self, id: u64, o: BookOrder) -> bool {
        if o.qty.0 == 0 || o.prio >= self.next_prio || self.orders.contains_key(&id) {
            return false;
        }
        self.orders.insert(id, o);
        self.side_mut(o.side).add(o.price, o.qty, 1);
        true
    }

    /// Sets an order's visible size in place (keeps priority); 0 removes it.
    /// Returns the order as it was, `None` if unknown.
    pub fn set_qty(&mut self, id: u64, qty: Qty) -> Option<BookOrder> {
        let o = *self.orders.get(&id)?;
        if qty.0 == 0 {
            return self.remove(id);
        }
        let s = self.side_mut(o.side);
        if qty.0 >= o.qty.0 {
            s.add(o.price, Qty(qty.0 - o.qty.0), 0);
        } else {
            s.sub(o.price, Qty(o.qty.0 - qty.0), 0);
        }
        self.orders.get_mut(&id).expect("present").qty = qty;
        Some(o)
    }

    /// Removes an order; returns it, `None` if unknown.
    pub fn remove(&mut self, id: u64) -> Option<BookOrder> {
        let o = self.orders.remove(&id)?;
        self.side_mut(o.side).sub(o.price, o.qty, 1);
        Some(o)
    }

    /// Moves an order to `price` with visible `qty`, at the back of the queue
    /// unless `keep` (which requires the same price). Returns the old order.
    pub fn replace(&mut self, id: u64, price: Price, qty: Qty, keep: bool) -> Option<BookOrder> {
        let o = self.get(id)?;
        if keep && price == o.price {
            return self.set_qty(id, qty);
        }
        self.remove(id);
        self.add(id, o.side, price, qty);
        Some(o)
    }

    /// Order ids at each level of a side, best level first, queue order
    /// within a level (allocates: tests and snapshots).
    pub fn queues(&self, side: Side) -> Vec<Vec<u64>> {
        let mut all: Vec<(u64, BookOrder)> = self
            .orders
            .iter()
            .filter(|(_, o)| o.side == side)
            .map(|(&id, &o)| (id, o))
            .collect();
        all.sort_by_key(|(_, o)| (std::cmp::Reverse(key(side, o.price)), o.prio));
        let mut out: Vec<Vec<u64>> = Vec::new();
        let mut last: Option<Price> = None;
        for (id, o) in all {
            if last != Some(o.price) {
                out.push(Vec::new());
                last = Some(o.price);
            }
            out.last_mut().expect("pushed").push(id);
        }
        out
    }

    /// Every resting order of a side with its data, best level first, queue order.
    pub fn orders_in_order(&self, side: Side) -> Vec<(u64, BookOrder)> {
        let mut all: Vec<(u64, BookOrder)> = self
            .orders
            .iter()
            .filter(|(_, o)| o.side == side)
            .map(|(&id, &o)| (id, o))
            .collect();
        all.sort_by_key(|(_, o)| (std::cmp::Reverse(key(side, o.price)), o.prio));
        all
    }

    /// Ids of the orders resting at one price (any order; allocates).
    pub fn ids_at(&self, side: Side, price: Price) -> Vec<u64> {
        self.orders
            .iter()
            .filter(|(_, o)| o.side == side && o.price == price)
            .map(|(&id, _)| id)
            .collect()
    }
}
