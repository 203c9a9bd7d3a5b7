//! rust-order-book 0.0.2 adapter. Its ids are its own (0, 1, 2, … per
//! order), read from the `ExecutionReport`. Note: its `limit` calls
//! `SystemTime::now()` for every order (an order timestamp), which it pays
//! here as it would in use; its reports carry no fills, so only executed
//! quantity is tallied.
//!
//! Harness (`HarnessBook`): IOC is its own `IOC`; a modify is `cancel` then
//! a new `limit` (a new rust-order-book id). With no fills in its reports,
//! only traded lots are compared, never fills or the fill hash.

use bourse_benches::harness::{
    peer_cancel, peer_modify, peer_new_order, HarnessBook, PlaceUnrest, Reports, Sizing,
};
use bourse_benches::{Book, Resting, Side, Tally, Workload};
use rust_order_book as rob;

/// rust-order-book behind the `Book` trait.
pub struct RustOrderBook {
    book: rob::OrderBook,
    /// Workload id → rust-order-book order id.
    ids: Vec<u64>,
    traded_qty: u64,
    rejects: u64,
    /// Harness reports (untouched by the `Book` path).
    reports: Reports,
}

fn options(side: Side, price: u64, qty: u64, tif: rob::TimeInForce) -> rob::LimitOrderOptions {
    rob::LimitOrderOptions {
        side: match side {
            Side::Buy => rob::Side::Buy,
            Side::Sell => rob::Side::Sell,
        },
        quantity: rob::Quantity(qty),
        price: rob::Price(price),
        time_in_force: Some(tif),
        post_only: None,
    }
}

impl RustOrderBook {
    #[inline(always)]
    fn submit(&mut self, id: u64, side: Side, price: u64, qty: u64, tif: rob::TimeInForce) {
        match self.book.limit(options(side, price, qty, tif)) {
            Ok(r) => {
                self.ids[id as usize] = r.order_id.0;
                self.traded_qty += r.executed_qty.0;
            }
            Err(_) => self.rejects += 1,
        }
    }

    /// Harness: a limit order; returns the lots it traded, or `None` when
    /// refused.
    #[inline(always)]
    fn place_tif(
        &mut self,
        id: u64,
        side: Side,
        price: u64,
        qty: u64,
        tif: rob::TimeInForce,
    ) -> Option<u64> {
        let r = self.book.limit(options(side, price, qty, tif)).ok()?;
        self.ids[id as usize] = r.order_id.0;
        self.reports.filled_qty += r.executed_qty.0;
        Some(r.executed_qty.0)
    }

    /// Cancels by stream id (`PlaceUnrest::unrest`); whether rust-order-book did.
    #[inline(always)]
    fn cancel_id(&mut self, id: u64) -> bool {
        self.book
            .cancel(rob::OrderId(self.ids[id as usize]))
            .is_ok()
    }
}

impl PlaceUnrest for RustOrderBook {
    #[inline(always)]
    fn place(&mut self, id: u64, side: Side, price: u64, qty: u64, ioc: bool) -> Option<u64> {
        let tif = if ioc {
            rob::TimeInForce::IOC
        } else {
            rob::TimeInForce::GTC
        };
        self.place_tif(id, side, price, qty, tif)
    }

    #[inline(always)]
    fn unrest(&mut self, id: u64) -> bool {
        self.cancel_id(id)
    }

    fn reports_mut(&mut self) -> &mut Reports {
        &mut self.reports
    }
}

impl HarnessBook for RustOrderBook {
    const NAME: &'static str = "rust-order-book";

    fn new(s: &Sizing) -> Self {
        RustOrderBook {
            book: rob::OrderBookBuilder::new("BENCH").build(),
            ids: vec![0; s.max_id as usize + 1],
            traded_qty: 0,
            rejects: 0,
            reports: Reports::new(false),
        }
    }

    #[inline]
    fn new_order(&mut self, id: u64, side: Side, price: u64, qty: u64, ioc: bool) {
        peer_new_order(self, id, side, price, qty, ioc);
    }

    #[inline]
    fn cancel(&mut self, id: u64) {
        peer_cancel(self, id);
    }

    #[inline]
    fn modify(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        peer_modify(self, id, side, price, qty);
    }

    fn reports(&self) -> Reports {
        self.reports
    }

    fn resting(&self) -> Resting {
        Book::resting(self)
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
            reports: Reports::new(false),
        }
    }

    #[inline]
    fn limit(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        self.submit(id, side, price, qty, rob::TimeInForce::GTC);
    }

    #[inline]
    fn cancel(&mut self, id: u64) {
        if !self.unrest(id) {
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
