//! The `Book` trait every engine under test is adapted to, the counters each
//! adapter keeps, and the sanity check that a run did real work.
//!
//! An adapter only forwards the three operations of the workload and tallies
//! what its engine reported (fills, traded lots, rejects) from the engine's
//! own results. After a run, `check` compares the tally and the resting book
//! with the generator's reference model: a benchmark that measured a no-op,
//! a rejected order or a different matching rule shows up as a mismatch.

use crate::workload::{Expected, Op, Side, Workload};

/// What an engine reported during a run, from its own results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Fills (one per maker touched); `None` when the engine does not report them.
    pub trades: Option<u64>,
    /// Lots traded.
    pub traded_qty: u64,
    /// Operations the engine refused.
    pub rejects: u64,
}

/// The resting book after a run, read back from the engine (untimed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resting {
    /// Resting orders; `None` when the engine has no way to count them.
    pub orders: Option<u64>,
    /// Resting lots.
    pub qty: u64,
}

/// An order book under test, reduced to what the workload needs.
pub trait Book {
    /// Display name.
    const NAME: &'static str;
    /// A fresh, empty book sized for `w`.
    fn new(w: &Workload) -> Self;
    /// A GTC limit order with workload id `id`.
    fn limit(&mut self, id: u64, side: Side, price: u64, qty: u64);
    /// Cancels the order with workload id `id`.
    fn cancel(&mut self, id: u64);
    /// An IOC limit order (or the engine's closest equivalent) with id `id`.
    fn cross(&mut self, id: u64, side: Side, price: u64, qty: u64);
    /// The counters so far.
    fn tally(&self) -> Tally;
    /// The resting book now (may be slow; never timed).
    fn resting(&self) -> Resting;
}

/// Applies one op.
#[inline(always)]
pub fn apply<B: Book>(b: &mut B, op: &Op) {
    match *op {
        Op::Limit {
            id,
            side,
            price,
            qty,
        } => b.limit(id, side, price, qty),
        Op::Cancel { id } => b.cancel(id),
        Op::Cross {
            id,
            side,
            price,
            qty,
        } => b.cross(id, side, price, qty),
    }
}

/// A fresh book with the pre-fill applied.
pub fn prefilled<B: Book>(w: &Workload) -> B {
    let mut b = B::new(w);
    for op in &w.prefill {
        apply(&mut b, op);
    }
    b
}

/// Compares what an engine reported after pre-fill + every measured op with
/// the reference model. `Err` lists every difference.
pub fn check(tally: Tally, resting: Resting, e: &Expected) -> Result<(), String> {
    let mut diffs = Vec::new();
    if let Some(t) = tally.trades {
        if t != e.trades {
            diffs.push(format!("trades {t} (expected {})", e.trades));
        }
    }
    if tally.traded_qty != e.traded_qty {
        diffs.push(format!(
            "traded lots {} (expected {})",
            tally.traded_qty, e.traded_qty
        ));
    }
    if tally.rejects != 0 {
        diffs.push(format!("{} rejects (expected 0)", tally.rejects));
    }
    if let Some(n) = resting.orders {
        if n != e.resting_orders {
            diffs.push(format!(
                "resting orders {n} (expected {})",
                e.resting_orders
            ));
        }
    }
    if resting.qty != e.resting_qty {
        diffs.push(format!(
            "resting lots {} (expected {})",
            resting.qty, e.resting_qty
        ));
    }
    if e.trades == 0 || e.resting_orders == 0 {
        diffs.push("the workload itself is degenerate (no trades or empty book)".into());
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

/// Runs pre-fill + all measured ops on a fresh book and checks the result.
pub fn verify<B: Book>(w: &Workload) -> Result<(), String> {
    let mut b = prefilled::<B>(w);
    for op in &w.ops {
        apply(&mut b, op);
    }
    check(b.tally(), b.resting(), &w.expected)
}
