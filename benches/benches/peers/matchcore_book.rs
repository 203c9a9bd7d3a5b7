//! matchcore 0.4.0 adapter: one `OrderBook`, commands with contiguous
//! sequence numbers (matchcore requires them and uses the submit's sequence
//! number as the order id).
//!
//! Known defect, caught by `bourse_benches::check` (so its rows read
//! MISMATCH): 0.4.0 trades a marketable limit through its own limit price.
//! Repro from this workload (10k book, measured op 174): best ask 1,000,000
//! × 3 lots, next level 1,000,001 × 7,390; an IOC buy of 249 at 1,000,000
//! trades all 249 lots (246 of them at 1,000,001) where 3 is correct. Its
//! later cancels of the makers it took wrongly are then rejected.
//!
//! Harness (`HarnessBook`): IOC is its own `Ioc`; a modify is `Cancel`
//! then a new `Submit` (a new matchcore id); a fill's maker is named by its
//! sequence number, mapped back to the stream id, so fills are hashed.

use bourse_benches::harness::{
    peer_cancel, peer_modify, peer_new_order, HarnessBook, PlaceUnrest, Reports, Sizing,
};
use bourse_benches::{Book, Resting, Side, Tally, Workload};
use matchcore as mc;

/// matchcore behind the `Book` trait.
pub struct Matchcore {
    book: mc::OrderBook,
    seq: u64,
    /// Workload id → matchcore order id.
    ids: Vec<u64>,
    trades: u64,
    traded_qty: u64,
    rejects: u64,
    /// Harness: matchcore order id (sequence number) → stream id (empty
    /// on the `Book` path).
    wids: Vec<u64>,
    /// Harness reports (untouched by the `Book` path).
    reports: Reports,
}

impl Matchcore {
    #[inline(always)]
    fn meta(&mut self) -> mc::CommandMeta {
        let m = mc::CommandMeta {
            sequence_number: mc::SequenceNumber(self.seq),
            timestamp: mc::Timestamp(self.seq),
        };
        self.seq += 1;
        m
    }

    /// The submit command for stream id `id` (its sequence number noted as
    /// the order's matchcore id).
    #[inline(always)]
    fn submit_cmd(
        &mut self,
        id: u64,
        side: Side,
        price: u64,
        qty: u64,
        tif: mc::TimeInForce,
    ) -> mc::Command {
        let meta = self.meta();
        self.ids[id as usize] = meta.sequence_number.0;
        let side = match side {
            Side::Buy => mc::Side::Buy,
            Side::Sell => mc::Side::Sell,
        };
        mc::Command {
            meta,
            kind: mc::CommandKind::Submit(mc::SubmitCmd {
                order: mc::NewOrder::Limit(mc::LimitOrder::new(
                    mc::Price(price),
                    mc::QuantityPolicy::Standard {
                        quantity: mc::Quantity(qty),
                    },
                    mc::OrderFlags::new(side, false, tif),
                )),
            }),
        }
    }

    #[inline(always)]
    fn submit(&mut self, id: u64, side: Side, price: u64, qty: u64, tif: mc::TimeInForce) {
        let cmd = self.submit_cmd(id, side, price, qty, tif);
        match self.book.execute(&cmd) {
            mc::CommandOutcome::Applied(mc::CommandReport::Submit(effects)) => {
                if let Some(m) = effects.target_order().match_result() {
                    self.trades += m.trades().len() as u64;
                    self.traded_qty += m.executed_quantity().0;
                }
            }
            mc::CommandOutcome::Applied(_) => {}
            mc::CommandOutcome::Rejected(_) => self.rejects += 1,
        }
    }

    /// Harness: a limit order, its fills folded into `reports`; returns the
    /// lots it traded, or `None` when refused.
    #[inline(always)]
    fn place_tif(
        &mut self,
        id: u64,
        side: Side,
        price: u64,
        qty: u64,
        tif: mc::TimeInForce,
    ) -> Option<u64> {
        self.wids[self.seq as usize] = id;
        let cmd = self.submit_cmd(id, side, price, qty, tif);
        match self.book.execute(&cmd) {
            mc::CommandOutcome::Applied(mc::CommandReport::Submit(effects)) => {
                let Some(m) = effects.target_order().match_result() else {
                    return Some(0);
                };
                for t in m.trades() {
                    let maker = self.wids[t.maker_order_id().0 as usize];
                    self.reports.fill(id, maker, t.price().0, t.quantity().0);
                }
                Some(m.executed_quantity().0)
            }
            mc::CommandOutcome::Applied(_) => Some(0),
            mc::CommandOutcome::Rejected(_) => None,
        }
    }

    /// Cancels by stream id (`PlaceUnrest::unrest`); whether matchcore did.
    #[inline(always)]
    fn cancel_id(&mut self, id: u64) -> bool {
        let meta = self.meta();
        let cmd = mc::Command {
            meta,
            kind: mc::CommandKind::Cancel(mc::CancelCmd {
                order_id: mc::OrderId(self.ids[id as usize]),
                order_kind: mc::OrderKind::Limit,
            }),
        };
        !matches!(self.book.execute(&cmd), mc::CommandOutcome::Rejected(_))
    }
}

impl PlaceUnrest for Matchcore {
    #[inline(always)]
    fn place(&mut self, id: u64, side: Side, price: u64, qty: u64, ioc: bool) -> Option<u64> {
        let tif = if ioc {
            mc::TimeInForce::Ioc
        } else {
            mc::TimeInForce::Gtc
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

impl HarnessBook for Matchcore {
    const NAME: &'static str = "matchcore";

    fn new(s: &Sizing) -> Self {
        Matchcore {
            book: mc::OrderBook::new("BENCH"),
            seq: 0,
            ids: vec![0; s.max_id as usize + 1],
            trades: 0,
            traded_qty: 0,
            rejects: 0,
            wids: vec![0; (s.msgs + s.modifies) as usize + 1],
            reports: Reports::new(true),
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

impl Book for Matchcore {
    const NAME: &'static str = "matchcore";

    fn new(w: &Workload) -> Self {
        Matchcore {
            book: mc::OrderBook::new("BENCH"),
            seq: 0,
            ids: vec![0; w.max_id as usize + 1],
            trades: 0,
            traded_qty: 0,
            rejects: 0,
            wids: Vec::new(),
            reports: Reports::new(true),
        }
    }

    #[inline]
    fn limit(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        self.submit(id, side, price, qty, mc::TimeInForce::Gtc);
    }

    #[inline]
    fn cancel(&mut self, id: u64) {
        if !self.unrest(id) {
            self.rejects += 1;
        }
    }

    #[inline]
    fn cross(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        self.submit(id, side, price, qty, mc::TimeInForce::Ioc);
    }

    fn tally(&self) -> Tally {
        Tally {
            trades: Some(self.trades),
            traded_qty: self.traded_qty,
            rejects: self.rejects,
        }
    }

    fn resting(&self) -> Resting {
        let orders = self.book.limit().orders();
        Resting {
            orders: Some(orders.len() as u64),
            qty: orders.values().map(|o| o.inner().total_quantity().0).sum(),
        }
    }
}
