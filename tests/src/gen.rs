//! Seeded generator of random command streams for cross-checks, determinism
//! and allocation tests.
//!
//! The workspace's SplitMix64 (`engine::rng`, no `rand` crate) drives everything, so a seed
//! alone replays a stream. Streams cover 1–3 settle-free instruments with
//! small tick and price ranges (books cross often), every order type and
//! time in force, post-only, icebergs, all STP modes, 4 owners (self-trades
//! happen), replaces, cancels (own, foreign, unknown), mass cancels, halts and
//! resumes, time steps (GTD expiries, stale times, times that go back), book
//! queries, bad values, bands, circuit breakers and per-owner limits.
//! `Gen::next` looks at a `Reference` to aim at live orders and at the last
//! trade price; it never looks at the engine.

use crate::fixtures;
use crate::reference::Reference;
use engine::rng::SplitMix64;
use engine::{
    Asset, ClientOrderId, Command, Input, InstrumentId, InstrumentSpec, NewOrder, OrderId,
    OrderType, OwnerId, Price, Qty, Seq, Side, Stp, Symbol, Tif, Timestamp,
};
use std::collections::VecDeque;

/// The generator `Gen` draws from for `seed`. The seed is salted so every
/// seed recorded before the PRNG became `engine::rng::SplitMix64` still
/// replays the same stream.
pub fn seeded(seed: u64) -> SplitMix64 {
    SplitMix64::new(seed ^ 0x5851_f42d_4c95_7f2d)
}

/// Which features a stream may use (tests narrow it, e.g. to dodge a known divergence).
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// Stop and stop-limit orders.
    pub stops: bool,
    /// Bad values (invalid prices, quantities, unknown ids, time going back).
    pub bad_values: bool,
    /// GTD stops that arrive already expired.
    pub expired_stops: bool,
    /// Dense self-trading: 2 owners, many icebergs, STP on most orders.
    pub dense: bool,
    /// Cancels by client order id and requeue replaces (off by default, so
    /// the streams of seeds recorded before them are unchanged).
    pub client_ids: bool,
    /// Cancel-on-disconnect arms, disarms and `sessions_lost` (off by
    /// default, so recorded seeds' streams are unchanged).
    pub cod: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            stops: true,
            bad_values: true,
            expired_stops: true,
            dense: false,
            client_ids: false,
            cod: false,
        }
    }
}

/// A seeded random stream of inputs.
#[derive(Clone, Debug)]
pub struct Gen {
    rng: SplitMix64,
    seq: u64,
    clock: u64,
    specs: Vec<InstrumentSpec>,
    owners: Vec<u64>,
    next_coid: u64,
    setup: VecDeque<Command>,
    features: Features,
}

/// A settle-free instrument with the given controls (symbol SYM, BASE/QUOTE,
/// at most 100 a order: small, so books cross and limits bite).
pub fn instrument(id: u32, tick: u64, reference: u64) -> InstrumentSpec {
    InstrumentSpec {
        symbol: Symbol::from_str_code("SYM").expect("valid symbol"),
        base: Asset::from_str_code("BASE").expect("valid asset"),
        quote: Asset::from_str_code("QUOTE").expect("valid asset"),
        tick,
        qty_max: 100,
        reference_price: Price(reference),
        ..fixtures::instrument(id)
    }
}

impl Gen {
    /// A stream for `seed` using every feature.
    pub fn new(seed: u64) -> Gen {
        Gen::with_features(seed, Features::default())
    }

    /// A stream for `seed` restricted to `features`.
    pub fn with_features(seed: u64, features: Features) -> Gen {
        let mut rng = seeded(seed);
        let n = rng.range(1, 3);
        let mut specs = Vec::new();
        let mut setup = VecDeque::new();
        for k in 0..n {
            let tick = rng.pick(&[1, 1, 5, 10]);
            let reference = tick * rng.range(50, 150);
            let mut s = instrument(
                rng.pick(&[1, 2, 3, 7, 42]) + 100 * k as u32,
                tick,
                reference,
            );
            s.qty_min = rng.pick(&[1, 1, 2]);
            s.qty_max = rng.range(10, 40);
            if rng.chance_pct(40) {
                s.band_bps = Some(rng.pick(&[0, 200, 500, 800, 1500]) as u32);
            }
            if rng.chance_pct(35) {
                s.circuit_bps = Some(rng.pick(&[300, 600, 1000]) as u32);
                s.circuit_window_ns = rng.pick(&[500, 2_000, 10_000]);
            }
            if rng.chance_pct(30) {
                s.open_orders_max = Some(rng.range(2, 10) as u32);
            }
            if rng.chance_pct(30) {
                s.notional_max = Some(reference * rng.range(5, 25));
            }
            if rng.chance_pct(10) {
                s.lot_size = 1 << 40;
            }
            specs.push(s);
            setup.push_back(Command::AddInstrument(s));
            if features.bad_values && rng.chance_pct(20) {
                // A duplicate, or an invalid definition.
                let mut bad = s;
                if rng.chance_pct(50) {
                    bad.id = InstrumentId(bad.id.0 + 1000);
                    match rng.below(5) {
                        0 => bad.tick = 0,
                        1 => bad.qty_min = bad.qty_max + 1,
                        2 => bad.reference_price = Price(reference + 1),
                        3 => bad.quote = bad.base,
                        _ => {
                            bad.circuit_bps = Some(100);
                            bad.circuit_window_ns = 0;
                        }
                    }
                    if bad.tick == 1 && bad.reference_price.0 == reference + 1 {
                        bad.reference_price = Price(0);
                    }
                }
                setup.push_back(Command::AddInstrument(bad));
            }
        }
        Gen {
            rng,
            seq: 0,
            clock: 1_000,
            specs,
            owners: if features.dense {
                vec![1, 2]
            } else {
                vec![1, 2, 3, 4]
            },
            next_coid: 1,
            setup,
            features,
        }
    }

    /// The instruments this stream defines.
    pub fn specs(&self) -> &[InstrumentSpec] {
        &self.specs
    }

    /// The next input, aimed using the reference model's state.
    pub fn next(&mut self, r: &Reference) -> Input {
        self.seq += 1;
        let mut now = self.clock;
        if self.rng.chance_pct(30) {
            self.clock += self.rng.range(0, 400);
            now = self.clock;
        } else if self.rng.chance_pct(3) {
            now = self.clock.saturating_sub(self.rng.range(1, 500)); // stale
        }
        let command = match self.setup.pop_front() {
            Some(c) => c,
            None => self.command(r),
        };
        if let Command::Time { now: t } = command {
            self.clock = self.clock.max(t.0);
            if self.rng.chance_pct(10) {
                // The input's time beyond the command's: the later one counts.
                self.clock += self.rng.range(1, 1_000);
                now = self.clock;
            }
        }
        Input {
            seq: Seq(self.seq),
            now: Timestamp(now),
            command,
        }
    }

    fn inst(&mut self) -> InstrumentSpec {
        let i = self.rng.below(self.specs.len() as u64) as usize;
        self.specs[i]
    }

    fn inst_id(&mut self) -> InstrumentId {
        if self.features.bad_values && self.rng.chance_pct(2) {
            InstrumentId(999)
        } else {
            self.inst().id
        }
    }

    fn owner(&mut self) -> u64 {
        self.rng.pick(&self.owners.clone())
    }

    /// A price near the last trade, in ticks; sometimes bad.
    fn price(&mut self, s: &InstrumentSpec, r: &Reference) -> u64 {
        let center = r.last_trade(s.id).unwrap_or(s.reference_price.0);
        if self.features.bad_values && self.rng.chance_pct(2) {
            return match self.rng.below(3) {
                0 => 0,
                1 if s.tick > 1 => center.saturating_add(1),
                _ => (u64::MAX / s.tick) * s.tick,
            };
        }
        let off = self.rng.range(0, 16) as i128 - 8;
        let top = ((u64::MAX / s.tick) * s.tick) as i128;
        (center as i128 + off * s.tick as i128).clamp(s.tick as i128, top) as u64
    }

    fn qty(&mut self, s: &InstrumentSpec) -> u64 {
        if self.features.bad_values && self.rng.chance_pct(2) {
            return self
                .rng
                .pick(&[0, s.qty_max + 1, s.qty_min.saturating_sub(1)]);
        }
        self.rng.range(s.qty_min, s.qty_max.min(s.qty_min + 12))
    }

    /// Picks a live order id: mostly the owner's own, sometimes foreign or unknown.
    fn target(&mut self, r: &Reference, owner: u64, resting_only: bool) -> OrderId {
        let live = r.live_orders();
        let own: Vec<OrderId> = live
            .iter()
            .filter(|o| o.owner.0 == owner && (o.resting || !resting_only))
            .map(|o| o.id)
            .collect();
        let roll = self.rng.below(100);
        if roll < 75 && !own.is_empty() {
            self.rng.pick(&own)
        } else if roll < 88 && !live.is_empty() {
            let i = self.rng.below(live.len() as u64) as usize;
            live[i].id
        } else {
            OrderId(self.rng.range(0, r.next_order_id() + 2))
        }
    }

    /// A cancel by client order id: the target's (mostly live), another
    /// owner's, or one never used.
    fn cancel_by_client_id(&mut self, r: &Reference, owner: u64, target: OrderId) -> Command {
        let live = r.live_orders();
        let coid = match live.iter().find(|o| o.id == target) {
            Some(o) if self.rng.chance_pct(90) => o.client_order_id,
            _ => ClientOrderId(self.rng.range(1, self.next_coid + 2)),
        };
        Command::CancelByClientId {
            owner: OwnerId(owner),
            client_order_id: coid,
        }
    }

    /// A cancel-on-disconnect command over a few session keys.
    fn cod_command(&mut self) -> Command {
        let session = self.rng.range(1, 4);
        match self.rng.below(10) {
            0..=5 => Command::CodArm {
                session,
                owner: OwnerId(self.owner()),
            },
            6..=7 => Command::CodDisarm { session },
            _ => Command::SessionsLost,
        }
    }

    fn command(&mut self, r: &Reference) -> Command {
        if self.features.cod && self.rng.chance_pct(6) {
            return self.cod_command();
        }
        let roll = self.rng.below(100);
        match roll {
            0..=54 => self.new_order(r),
            55..=66 => {
                let owner = self.owner();
                let order_id = self.target(r, owner, false);
                if self.features.client_ids && self.rng.chance_pct(50) {
                    return self.cancel_by_client_id(r, owner, order_id);
                }
                Command::Cancel {
                    owner: OwnerId(owner),
                    order_id,
                }
            }
            67..=80 => {
                let owner = self.owner();
                let order_id = self.target(r, owner, true);
                let live = r.live_orders();
                let cur = live.iter().find(|o| o.id == order_id);
                let s = match cur {
                    Some(o) => *self.specs.iter().find(|s| s.id == o.instrument).unwrap(),
                    None => self.inst(),
                };
                let k = self.rng.below(10);
                let price = (k < 6).then(|| self.price(&s, r));
                let qty = if k >= 4 {
                    Some(match cur {
                        Some(o) if self.rng.chance_pct(50) => {
                            o.remaining.0.saturating_sub(self.rng.range(0, 3)).max(1)
                        }
                        _ => self.qty(&s),
                    })
                } else {
                    None
                };
                Command::Replace {
                    owner: OwnerId(owner),
                    order_id,
                    price: price.map(Price),
                    qty: qty.map(Qty),
                    requeue: self.features.client_ids && self.rng.chance_pct(40),
                }
            }
            81..=83 => {
                let owner = self.owner();
                let instrument = self.rng.chance_pct(50).then(|| self.inst_id());
                let side = self
                    .rng
                    .chance_pct(40)
                    .then(|| self.rng.pick(&[Side::Buy, Side::Sell]));
                Command::MassCancel {
                    owner: OwnerId(owner),
                    instrument,
                    side,
                }
            }
            84 => Command::Halt {
                instrument: self.inst_id(),
            },
            85..=88 => {
                let halted: Vec<InstrumentId> = self
                    .specs
                    .iter()
                    .map(|s| s.id)
                    .filter(|&i| r.is_halted(i))
                    .collect();
                let instrument = if !halted.is_empty() && self.rng.chance_pct(85) {
                    self.rng.pick(&halted)
                } else {
                    self.inst_id()
                };
                Command::Resume { instrument }
            }
            89..=93 => {
                let t = if self.features.bad_values && self.rng.chance_pct(8) {
                    self.clock.saturating_sub(self.rng.range(1, 100))
                } else {
                    self.clock + self.rng.range(0, 3_000)
                };
                Command::Time { now: Timestamp(t) }
            }
            _ => {
                let depth = self.rng.chance_pct(50).then(|| self.rng.range(0, 4) as u32);
                Command::QueryBook {
                    instrument: self.inst_id(),
                    depth,
                }
            }
        }
    }

    fn new_order(&mut self, r: &Reference) -> Command {
        let owner = self.owner();
        let s = self.inst();
        let mut instrument = s.id;
        if self.features.bad_values && self.rng.chance_pct(2) {
            instrument = InstrumentId(999);
        }
        let coid = if self.features.bad_values && self.rng.chance_pct(3) && self.next_coid > 1 {
            self.rng.range(1, self.next_coid - 1)
        } else {
            self.next_coid += 1;
            self.next_coid - 1
        };
        let mut order_type = match self.rng.below(100) {
            0..=59 => OrderType::Limit,
            60..=71 => OrderType::Market,
            72..=85 => OrderType::Stop,
            _ => OrderType::StopLimit,
        };
        if !self.features.stops && order_type.has_trigger() {
            order_type = OrderType::Limit;
        }
        let tif = match self.rng.below(100) {
            0..=44 => Tif::Gtc,
            45..=64 => Tif::Ioc,
            65..=79 => Tif::Fok,
            _ => Tif::Gtd,
        };
        let mut price = order_type.has_price().then(|| self.price(&s, r));
        let mut trigger_price = order_type.has_trigger().then(|| self.price(&s, r));
        if self.features.bad_values && self.rng.chance_pct(2) {
            // Type contradictions (ARCHITECTURE.md 2).
            if self.rng.chance_pct(50) {
                price = match price {
                    Some(_) => None,
                    None => Some(s.reference_price.0),
                };
            } else {
                trigger_price = match trigger_price {
                    Some(_) => None,
                    None => Some(s.reference_price.0),
                };
            }
        }
        let qty = self.qty(&s);
        let expire_at = (tif == Tif::Gtd).then(|| {
            // Some orders (stops included) arrive already expired: their
            // remainder is cancelled `expired` at once (convention 4).
            if self.rng.chance_pct(10) && (self.features.expired_stops || !order_type.has_trigger())
            {
                self.clock.saturating_sub(self.rng.range(0, 50))
            } else {
                self.clock + self.rng.range(1, 4_000)
            }
        });
        let post_only = if order_type == OrderType::Limit {
            self.rng.chance_pct(12)
        } else {
            self.features.bad_values && self.rng.chance_pct(1)
        };
        let iceberg = if self.features.dense { 45 } else { 15 };
        let display_qty = if self.rng.chance_pct(iceberg)
            && (order_type.has_price() || (self.features.bad_values && self.rng.chance_pct(10)))
        {
            Some(Qty(self.rng.range(s.qty_min, qty.max(s.qty_min) + 1)))
        } else {
            None
        };
        let stp_roll = if self.features.dense {
            self.rng.range(2, 9)
        } else {
            self.rng.below(10)
        };
        let stp = match stp_roll {
            0..=3 => Stp::None,
            4 => Stp::CancelTaker,
            5 => Stp::CancelMaker,
            6 => Stp::CancelBoth,
            _ => Stp::Decrement,
        };
        Command::NewOrder(NewOrder {
            owner: OwnerId(owner),
            instrument,
            client_order_id: ClientOrderId(coid),
            side: self.rng.pick(&[Side::Buy, Side::Sell]),
            order_type,
            price: price.map(Price),
            qty: Qty(qty),
            tif,
            expire_at: expire_at.map(Timestamp),
            post_only,
            stp,
            display_qty,
            trigger_price: trigger_price.map(Price),
        })
    }
}
