//! lobster 0.7.0 adapter. Ids are ours (lobster takes caller-chosen `u128`
//! ids). Lobster has no IOC: a crossing order is a `Limit`, followed by a
//! `Cancel` of its remainder when the result says part of it rested
//! (`Placed` or `PartiallyFilled`) — two calls, both timed as one op.
//! Lobster cannot count resting orders, only resting lots (`depth`).

use bourse_benches::{Book, Resting, Side, Tally, Workload};
use lobster::{OrderBook, OrderEvent, OrderType};

/// lobster behind the `Book` trait.
pub struct Lobster {
    book: OrderBook,
    trades: u64,
    traded_qty: u64,
}

impl Lobster {
    /// Submits a limit order; returns whether a remainder rests.
    #[inline(always)]
    fn submit(&mut self, id: u64, side: Side, price: u64, qty: u64) -> bool {
        let side = match side {
            Side::Buy => lobster::Side::Bid,
            Side::Sell => lobster::Side::Ask,
        };
        match self.book.execute(OrderType::Limit {
            id: id as u128,
            side,
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
}

impl Book for Lobster {
    const NAME: &'static str = "lobster";

    fn new(w: &Workload) -> Self {
        let arena = 2 * w.max_live.max(w.params.book_orders);
        Lobster {
            book: OrderBook::new(arena, 10, false),
            trades: 0,
            traded_qty: 0,
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
