//! The reference price-time book both generators run while they generate
//! (`workload` for the mixed workload, `harness` for the harness-shaped one):
//! a plain model (`BTreeMap` of levels, `VecDeque` queues, `HashMap` of
//! orders) that no engine under test shares any code with, so what it
//! computes is an independent expectation.
//!
//! Invariants: an order id is in `orders` iff it is in exactly one level
//! queue and in `live` (at `live_pos`); no level queue is ever empty; the
//! book is never crossed after a `submit` returns. Fills are always at the
//! maker's price, oldest maker first at the best level.

use crate::workload::Side;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A resting order of the reference book.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RefOrder {
    pub(crate) side: Side,
    pub(crate) price: u64,
    /// Leaves (unfilled lots).
    pub(crate) qty: u64,
    /// Index in `RefBook::live`.
    live_pos: usize,
}

/// One fill, as the reference book saw it (the taker is the order being
/// submitted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RefFill {
    pub(crate) maker: u64,
    pub(crate) price: u64,
    pub(crate) qty: u64,
}

/// The reference price-time book.
#[derive(Default)]
pub(crate) struct RefBook {
    pub(crate) bids: BTreeMap<u64, VecDeque<u64>>,
    pub(crate) asks: BTreeMap<u64, VecDeque<u64>>,
    pub(crate) orders: HashMap<u64, RefOrder>,
    /// Resting ids, for uniform random picks.
    pub(crate) live: Vec<u64>,
    pub(crate) trades: u64,
    pub(crate) traded_qty: u64,
    pub(crate) ioc_remainders: u64,
    /// When set, every fill is also appended to `fills` (the caller drains it).
    pub(crate) record_fills: bool,
    pub(crate) fills: Vec<RefFill>,
}

impl RefBook {
    pub(crate) fn best_bid(&self) -> Option<u64> {
        self.bids.keys().next_back().copied()
    }

    pub(crate) fn best_ask(&self) -> Option<u64> {
        self.asks.keys().next().copied()
    }

    fn forget(&mut self, id: u64) -> RefOrder {
        let o = self.orders.remove(&id).expect("reference order exists");
        let last = self.live.pop().expect("live list not empty");
        if last != id {
            self.live[o.live_pos] = last;
            self.orders
                .get_mut(&last)
                .expect("moved order exists")
                .live_pos = o.live_pos;
        }
        o
    }

    /// Removes a resting order; returns it as it was (its leaves included).
    pub(crate) fn cancel(&mut self, id: u64) -> RefOrder {
        let o = self.forget(id);
        let side = match o.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let q = side.get_mut(&o.price).expect("level exists");
        let pos = q.iter().position(|&x| x == id).expect("order in its level");
        q.remove(pos);
        if q.is_empty() {
            side.remove(&o.price);
        }
        o
    }

    /// Matches an incoming order, then rests it (GTC) or drops the remainder
    /// (IOC). Returns the lots left after matching (rested or dropped).
    pub(crate) fn submit(&mut self, id: u64, side: Side, price: u64, qty: u64, ioc: bool) -> u64 {
        let mut left = qty;
        while left > 0 {
            let best = match side {
                Side::Buy => self.best_ask().filter(|&p| p <= price),
                Side::Sell => self.best_bid().filter(|&p| p >= price),
            };
            let Some(level_price) = best else { break };
            left = self.take_level(side, level_price, left);
        }
        if left == 0 {
            return 0;
        }
        if ioc {
            self.ioc_remainders += 1;
            return left;
        }
        let book = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        book.entry(price).or_default().push_back(id);
        self.orders.insert(
            id,
            RefOrder {
                side,
                price,
                qty: left,
                live_pos: self.live.len(),
            },
        );
        self.live.push(id);
        left
    }

    /// Fills up to `left` lots against the level at `level_price` on the side
    /// opposite `side`, oldest first; returns what is still unfilled.
    fn take_level(&mut self, side: Side, level_price: u64, mut left: u64) -> u64 {
        let book = match side {
            Side::Buy => &mut self.asks,
            Side::Sell => &mut self.bids,
        };
        let q = book.get_mut(&level_price).expect("best level exists");
        let mut done = Vec::new();
        while left > 0 {
            let Some(&maker) = q.front() else { break };
            let m = self.orders.get_mut(&maker).expect("maker exists");
            let fill = left.min(m.qty);
            m.qty -= fill;
            left -= fill;
            self.trades += 1;
            self.traded_qty += fill;
            if self.record_fills {
                self.fills.push(RefFill {
                    maker,
                    price: level_price,
                    qty: fill,
                });
            }
            if m.qty == 0 {
                q.pop_front();
                done.push(maker);
            }
        }
        if q.is_empty() {
            book.remove(&level_price);
        }
        for m in done {
            self.forget(m);
        }
        left
    }
}
