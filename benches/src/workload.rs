//! The seeded, engine-neutral workload: a pre-fill phase that builds a resting
//! book, then a measured phase of passive limits, cancels and crossing orders
//! around a drifting mid.
//!
//! The generator runs its own reference book (`refbook::RefBook`, a plain
//! price-time model) while it generates, so that
//! * every cancel targets an order that is really resting at that point (no
//!   engine is asked to cancel something already filled), and
//! * the expected totals (trades, traded quantity, resting orders and
//!   quantity at the end) are known independently of any engine under test:
//!   `book::check` compares each engine's own report with them.
//!
//! Shape of one measured op (probabilities before the book-size feedback):
//! * ~60% passive GTC limit: side at random, priced `1 + off` ticks away from
//!   the mid (`off` triangular in `0..depth_ticks`, most near the top), and
//!   clamped so that it never crosses the opposite best: it always rests.
//! * ~30% cancel of a resting order chosen uniformly at random.
//! * 10% crossing IOC limit: priced 0–3 ticks through the opposite best,
//!   1–250 lots (a passive order is 1–100), so it usually takes 1–3 makers
//!   and sometimes leaves an IOC remainder. Its side leans towards the mid's
//!   drift, which is what moves the book along with the mid.
//!
//! Book-size feedback: the cancel probability is nudged by the distance of
//! the live count from the target (`book_orders`), so the book stays near its
//! configured size for the whole run; the realised mix is reported in `Mix`.

use crate::refbook::RefBook;
use engine::rng::SplitMix64;

/// Buy or sell, engine-neutral.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Bid.
    Buy,
    /// Ask.
    Sell,
}

/// One engine-neutral operation. Ids are the workload's own: 1, 2, 3, … in
/// the order new orders (limits and crosses) appear; adapters map them to
/// whatever their engine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A GTC limit order that does not cross on arrival (it rests).
    Limit {
        /// Workload id.
        id: u64,
        /// Side.
        side: Side,
        /// Limit price in ticks.
        price: u64,
        /// Lots.
        qty: u64,
    },
    /// Cancel a resting order.
    Cancel {
        /// Workload id of a resting order.
        id: u64,
    },
    /// An IOC limit order priced through the opposite best.
    Cross {
        /// Workload id.
        id: u64,
        /// Side.
        side: Side,
        /// Limit price in ticks.
        price: u64,
        /// Lots.
        qty: u64,
    },
}

/// Generator parameters.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// PRNG seed.
    pub seed: u64,
    /// Resting orders built by the pre-fill, and the size the measured phase
    /// keeps the book near.
    pub book_orders: usize,
    /// Operations in the measured phase.
    pub ops: usize,
    /// Passive orders are placed up to this many ticks behind the mid.
    pub depth_ticks: u64,
    /// Starting mid, in ticks.
    pub start_mid: u64,
}

impl Params {
    /// The standard configuration: `book_orders` resting, 1 M measured ops.
    pub fn standard(book_orders: usize) -> Self {
        Params {
            seed: 0x5EED_B0E5_0000_0001 ^ book_orders as u64,
            book_orders,
            ops: 1_000_000,
            depth_ticks: 64,
            start_mid: 1_000_000,
        }
    }
}

/// Realised operation mix of the measured phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mix {
    /// Passive limits.
    pub limits: u64,
    /// Cancels.
    pub cancels: u64,
    /// Crossing IOC orders.
    pub crosses: u64,
}

/// What a correct price-time engine must report after the pre-fill and every
/// measured op, as computed by the generator's reference book.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Fills (one per maker order touched).
    pub trades: u64,
    /// Lots traded.
    pub traded_qty: u64,
    /// Orders resting at the end.
    pub resting_orders: u64,
    /// Lots resting at the end.
    pub resting_qty: u64,
    /// Crossing orders that left an IOC remainder (cancelled, not rested).
    pub ioc_remainders: u64,
}

/// A generated workload.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Its parameters.
    pub params: Params,
    /// Pre-fill ops (passive limits only; applied untimed).
    pub prefill: Vec<Op>,
    /// Measured ops.
    pub ops: Vec<Op>,
    /// Totals over pre-fill + measured ops.
    pub expected: Expected,
    /// Mix of the measured ops.
    pub mix: Mix,
    /// Highest workload id used.
    pub max_id: u64,
    /// Most orders resting at once.
    pub max_live: usize,
    /// Most price levels on one side at once.
    pub max_levels: usize,
    /// Lowest price used.
    pub min_price: u64,
    /// Highest price used.
    pub max_price: u64,
}

struct Gen {
    rng: SplitMix64,
    p: Params,
    book: RefBook,
    mid: u64,
    next_id: u64,
    max_live: usize,
    max_levels: usize,
    min_price: u64,
    max_price: u64,
}

impl Gen {
    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn note(&mut self, price: u64) {
        self.min_price = self.min_price.min(price);
        self.max_price = self.max_price.max(price);
        self.max_live = self.max_live.max(self.book.live.len());
        self.max_levels = self
            .max_levels
            .max(self.book.bids.len())
            .max(self.book.asks.len());
    }

    fn passive(&mut self, side: Side) -> Op {
        let d = self.p.depth_ticks;
        let off = self.rng.below(d).min(self.rng.below(d));
        let price = match side {
            Side::Buy => {
                let p = self.mid - 1 - off;
                self.book.best_ask().map_or(p, |a| p.min(a - 1))
            }
            Side::Sell => {
                let p = self.mid + 1 + off;
                self.book.best_bid().map_or(p, |b| p.max(b + 1))
            }
        };
        let qty = self.rng.range(1, 100);
        let id = self.id();
        self.book.submit(id, side, price, qty, false);
        self.note(price);
        Op::Limit {
            id,
            side,
            price,
            qty,
        }
    }

    fn random_side(&mut self) -> Side {
        if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    fn step(&mut self, mix: &mut Mix) -> Op {
        // Mid: a lazy random walk, weakly pulled back to its start.
        if self.rng.below(8) == 0 {
            let dev = (self.mid as f64 - self.p.start_mid as f64) / 500.0;
            let p_up = 0.5 - 0.4 * dev.clamp(-1.0, 1.0);
            if self.rng.next_f64() < p_up {
                self.mid += 1;
            } else {
                self.mid -= 1;
            }
        }
        let target = self.p.book_orders as f64;
        let excess = (self.book.live.len() as f64 - target) / target;
        let p_cancel = (0.30 + 4.0 * excess).clamp(0.05, 0.60);
        let r = self.rng.next_f64();
        if r < 0.10 {
            // Lean the crosser towards the drift of the mid.
            let book_mid = match (self.book.best_bid(), self.book.best_ask()) {
                (Some(b), Some(a)) => (a + b) / 2,
                _ => self.mid,
            };
            let p_buy = match self.mid.cmp(&book_mid) {
                std::cmp::Ordering::Greater => 0.75,
                std::cmp::Ordering::Less => 0.25,
                std::cmp::Ordering::Equal => 0.5,
            };
            let side = if self.rng.next_f64() < p_buy {
                Side::Buy
            } else {
                Side::Sell
            };
            let opposite = match side {
                Side::Buy => self.book.best_ask(),
                Side::Sell => self.book.best_bid(),
            };
            if let Some(best) = opposite {
                let through = self.rng.below(4);
                let price = match side {
                    Side::Buy => best + through,
                    Side::Sell => best - through,
                };
                let qty = self.rng.range(1, 250);
                let id = self.id();
                self.book.submit(id, side, price, qty, true);
                self.note(price);
                mix.crosses += 1;
                return Op::Cross {
                    id,
                    side,
                    price,
                    qty,
                };
            }
            // Nothing to cross: fall through to a passive order.
        } else if r < 0.10 + p_cancel && !self.book.live.is_empty() {
            let i = self.rng.below(self.book.live.len() as u64) as usize;
            let id = self.book.live[i];
            self.book.cancel(id);
            mix.cancels += 1;
            return Op::Cancel { id };
        }
        mix.limits += 1;
        let side = self.random_side();
        self.passive(side)
    }
}

impl Workload {
    /// Generates the workload for `p` (deterministic in `p`).
    pub fn generate(p: Params) -> Workload {
        assert!(p.book_orders > 0 && p.start_mid > 4 * p.depth_ticks + 10_000);
        let mut g = Gen {
            rng: SplitMix64::new(p.seed),
            p,
            book: RefBook::default(),
            mid: p.start_mid,
            next_id: 1,
            max_live: 0,
            max_levels: 0,
            min_price: u64::MAX,
            max_price: 0,
        };
        let mut prefill = Vec::with_capacity(p.book_orders);
        for _ in 0..p.book_orders {
            let side = g.random_side();
            prefill.push(g.passive(side));
        }
        assert_eq!(g.book.trades, 0, "the pre-fill never crosses");
        let mut mix = Mix::default();
        let mut ops = Vec::with_capacity(p.ops);
        for _ in 0..p.ops {
            let op = g.step(&mut mix);
            ops.push(op);
        }
        let resting_qty = g.book.orders.values().map(|o| o.qty).sum();
        Workload {
            params: p,
            prefill,
            ops,
            expected: Expected {
                trades: g.book.trades,
                traded_qty: g.book.traded_qty,
                resting_orders: g.book.live.len() as u64,
                resting_qty,
                ioc_remainders: g.book.ioc_remainders,
            },
            mix,
            max_id: g.next_id - 1,
            max_live: g.max_live,
            max_levels: g.max_levels,
            min_price: g.min_price,
            max_price: g.max_price,
        }
    }

    /// Orders (limits and crosses) in pre-fill + measured ops.
    pub fn new_orders(&self) -> u64 {
        self.max_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Workload {
        Workload::generate(Params {
            ops: 50_000,
            ..Params::standard(2_000)
        })
    }

    #[test]
    fn deterministic() {
        let a = small();
        let b = small();
        assert_eq!(a.ops, b.ops);
        assert_eq!(a.expected, b.expected);
    }

    #[test]
    fn mix_and_size_are_as_documented() {
        let w = small();
        let n = w.ops.len() as f64;
        let l = w.mix.limits as f64 / n;
        let c = w.mix.cancels as f64 / n;
        let x = w.mix.crosses as f64 / n;
        assert!((0.50..0.70).contains(&l), "limits {l}");
        assert!((0.22..0.40).contains(&c), "cancels {c}");
        assert!((0.08..0.12).contains(&x), "crosses {x}");
        assert!(w.expected.trades > 0);
        let r = w.expected.resting_orders as f64 / w.params.book_orders as f64;
        assert!((0.8..1.2).contains(&r), "book drifted to {r}× its size");
    }

    #[test]
    fn cancels_target_live_orders() {
        let w = small();
        let mut live = std::collections::HashSet::new();
        for op in w.prefill.iter().chain(&w.ops) {
            match *op {
                Op::Limit { id, .. } => {
                    live.insert(id);
                }
                Op::Cancel { id } => assert!(live.remove(&id), "cancel of {id} not placed"),
                Op::Cross { .. } => {}
            }
        }
    }
}
