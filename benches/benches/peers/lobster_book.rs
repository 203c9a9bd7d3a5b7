//! lobster 0.7.0 adapter. Ids are ours (lobster takes caller-chosen `u128`
//! ids). Lobster has no IOC: a crossing order is a `Limit`, followed by a
//! `Cancel` of its remainder when the result says part of it rested
//! (`Placed` or `PartiallyFilled`) — two calls, both timed as one op.
//! Lobster cannot count resting orders, only resting lots (`depth`).
//!
//! Harness (`HarnessBook`): the same IOC emulation; a modify is `Cancel`
//! then `Limit` with the same id (lobster takes it back); every fill's
//! maker id is ours, so fills are counted and hashed. Lobster's `Cancel`
//! always answers `Canceled`, so its cancels cannot be told apart from
//! refusals.

use bourse_benches::harness::{HarnessBook, Reports, Sizing};
use bourse_benches::{Book, Resting, Side, Tally, Workload};
use lobster::{FillMetadata, OrderBook, OrderEvent, OrderType};

/// lobster behind the `Book` trait.
pub struct Lobster {
    book: OrderBook,
    trades: u64,
    traded_qty: u64,
    /// Harness reports (untouched by the `Book` path).
    reports: Reports,
}

fn lobster_side(side: Side) -> lobster::Side {
    match side {
        Side::Buy => lobster::Side::Bid,
        Side::Sell => lobster::Side::Ask,
    }
}

impl Lobster {
    /// Submits a limit order; returns whether a remainder rests.
    #[inline(always)]
    fn submit(&mut self, id: u64, side: Side, price: u64, qty: u64) -> bool {
        match self.book.execute(OrderType::Limit {
            id: id as u128,
            side: lobster_side(side),
            qty,
            price,
        }) {
            OrderEvent::Placed { .. } => true,
            OrderEvent::PartiallyFilled {
                filled_qty, fills, ..
            } => {
                self.trades += fills.len() as u64;
                self.traded_qty += filled_qty;
                true
            }
            OrderEvent::Filled {
                filled_qty, fills, ..
            } => {
                self.trades += fills.len() as u64;
                self.traded_qty += filled_qty;
                false
            }
            OrderEvent::Unfilled { .. } | OrderEvent::Canceled { .. } => false,
        }
    }

    /// Harness: a limit order, its fills folded into `reports`; returns the
    /// lots left unfilled (resting), or `None` when lobster refused it.
    #[inline(always)]
    fn place(&mut self, id: u64, side: Side, price: u64, qty: u64) -> Option<u64> {
        let fold = |r: &mut Reports, fills: &[FillMetadata]| {
            for f in fills {
                r.fill(f.order_1 as u64, f.order_2 as u64, f.price, f.qty);
            }
        };
        match self.book.execute(OrderType::Limit {
            id: id as u128,
            side: lobster_side(side),
            qty,
            price,
        }) {
            OrderEvent::Placed { .. } => Some(qty),
            OrderEvent::PartiallyFilled {
                filled_qty, fills, ..
            } => {
                fold(&mut self.reports, &fills);
                Some(qty - filled_qty)
            }
            OrderEvent::Filled { fills, .. } => {
                fold(&mut self.reports, &fills);
                Some(0)
            }
            OrderEvent::Unfilled { .. } | OrderEvent::Canceled { .. } => None,
        }
    }
}

impl HarnessBook for Lobster {
    const NAME: &'static str = "lobster";

    fn new(s: &Sizing) -> Self {
        Lobster {
            book: OrderBook::new(2 * s.max_live + 1024, 10, false),
            trades: 0,
            traded_qty: 0,
            reports: Reports::new(true),
        }
    }

    #[inline]
    fn new_order(&mut self, id: u64, side: Side, price: u64, qty: u64, ioc: bool) {
        let Some(left) = self.place(id, side, price, qty) else {
            self.reports.rejected += 1;
            return;
        };
        self.reports.accepted += 1;
        if ioc && left > 0 {
            self.book.execute(OrderType::Cancel { id: id as u128 });
            self.reports.ioc_canceled += 1;
        }
    }

    #[inline]
    fn cancel(&mut self, id: u64) {
        self.book.execute(OrderType::Cancel { id: id as u128 });
        self.reports.canceled += 1;
    }

    #[inline]
    fn modify(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        self.book.execute(OrderType::Cancel { id: id as u128 });
        match self.place(id, side, price, qty) {
            Some(_) => self.reports.modified += 1,
            None => self.reports.rejected += 1,
        }
    }

    fn reports(&self) -> Reports {
        self.reports
    }

    fn resting(&self) -> Resting {
        Book::resting(self)
    }
}

impl Book for Lobster {
    const NAME: &'static str = "lobster";

    fn new(w: &Workload) -> Self {
        let arena = 2 * w.max_live.max(w.params.book_orders);
        Lobster {
            book: OrderBook::new(arena, 10, false),
            trades: 0,
            traded_qty: 0,
            reports: Reports::new(true),
        }
    }

    #[inline]
    fn limit(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        self.submit(id, side, price, qty);
    }

    #[inline]
    fn cancel(&mut self, id: u64) {
        self.book.execute(OrderType::Cancel { id: id as u128 });
    }

    #[inline]
    fn cross(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        if self.submit(id, side, price, qty) {
            self.book.execute(OrderType::Cancel { id: id as u128 });
        }
    }

    fn tally(&self) -> Tally {
        Tally {
            trades: Some(self.trades),
            traded_qty: self.traded_qty,
            rejects: 0,
        }
    }

    fn resting(&self) -> Resting {
        // `depth(n)` walks every level whatever `n` is (n only sizes its Vecs).
        let d = self.book.depth(1024);
        Resting {
            orders: None,
            qty: d.bids.iter().chain(&d.asks).map(|l| l.qty).sum(),
        }
    }
}
