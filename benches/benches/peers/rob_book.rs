//! rust-order-book 0.0.2 adapter. Its ids are its own (0, 1, 2, … per
//! order), read from the `ExecutionReport`. Note: its `limit` calls
//! `SystemTime::now()` for every order (an order timestamp), which it pays
//! here as it would in use; its reports carry no fills, so only executed
//! quantity is tallied.

use bourse_benches::{Book, Resting, Side, Tally, Workload};
use rust_order_book as rob;

/// rust-order-book behind the `Book` trait.
pub struct RustOrderBook {
    book: rob::OrderBook,
    /// Workload id → rust-order-book order id.
    ids: Vec<u64>,
    traded_qty: u64,
    rejects: u64,
}

impl RustOrderBook {
    #[inline(always)]
    fn submit(&mut self, id: u64, side: Side, price: u64, qty: u64, tif: rob::TimeInForce) {
        let side = match side {
            Side::Buy => rob::Side::Buy,
            Side::Sell => rob::Side::Sell,
        };
        match self.book.limit(rob::LimitOrderOptions {
            side,
            quantity: rob::Quantity(qty),
            price: rob::Price(price),
            time_in_force: Some(tif),
            post_only: None,
        }) {
            Ok(r) => {
                self.ids[id as usize] = r.order_id.0;
                self.traded_qty += r.executed_qty.0;
            }
            Err(_) => self.rejects += 1,
        }
    }
}

impl Book for RustOrderBook {
    const NAME: &'static str = "rust-order-book";

    fn new(w: &Workload) -> Self {
        RustOrderBook {
            book: rob::OrderBookBuilder::new("BENCH").build(),
            ids: vec![0; w.max_id as usize + 1],
            traded_qty: 0,
            rejects: 0,
        }
    }

    #[inline]
    fn limit(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        self.submit(id, side, price, qty, rob::TimeInForce::GTC);
    }

    #[inline]
    fn cancel(&mut self, id: u64) {
        if self
            .book
            .cancel(rob::OrderId(self.ids[id as usize]))
            .is_err()
        {
            self.rejects += 1;
        }
    }

    #[inline]
    fn cross(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        self.submit(id, side, price, qty, rob::TimeInForce::IOC);
    }

    fn tally(&self) -> Tally {
        Tally {
            trades: None,
            traded_qty: self.traded_qty,
            rejects: self.rejects,
        }
    }

    fn resting(&self) -> Resting {
        let depth = self.book.depth(None);
        let mut orders = 0u64;
        let mut qty = 0u64;
        for (side, levels) in [
            (rob::Side::Buy, &depth.bids),
            (rob::Side::Sell, &depth.asks),
        ] {
            for &(price, volume) in levels {
                qty += volume.0;
                orders += self.book.get_orders_at_price(price, side).len() as u64;
            }
        }
        Resting {
            orders: Some(orders),
            qty,
        }
    }
}
