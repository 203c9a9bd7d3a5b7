//! Our engine behind `HarnessBook`, wired the way an integrator of the
//! harness's C ABI wires it: one `Engine::apply(&Input, &mut Events)` per
//! command, every event of every command read back into `Reports` (counted,
//! and each fill folded into the hash), so no work can be elided.
//!
//! Mapping: one instrument (`settle = false`, tick 1, lot 1, no band, no
//! circuit breaker, no fees, no per-owner limits); a new order is a limit
//! with `Tif::Gtc` or `Tif::Ioc`, owned by `1 + id % 16` with self-trade
//! prevention off (so it trades as the reference model does); a cancel is
//! `Command::Cancel`; a modify is one `Command::Replace` with `requeue`
//! (cancel-and-reinsert under one seq, the order keeping its engine id).
//! Every new order gets a fresh client order id, so none is ever a
//! duplicate. The adapter keeps, per stream id, the engine's order id (from
//! `Accepted`), and per engine order id the stream id, to name a fill's
//! maker — the order table an integrator keeps anyway.
//!
//! Sizing: `orders_max` ≥ 2 × the largest book, `levels_max` ≥ 2 × the most
//! levels on a side, a client order id for every new order.

use crate::book::Resting;
use crate::bourse::{limit_order, plain_instrument, resting_of};
use crate::harness::{HarnessBook, Reports, Sizing};
use crate::workload::Side;
use engine::{
    CancelReason, ClientOrderId, Command, Engine, EngineConfig, Event, Events, Input, InstrumentId,
    InstrumentSpec, OrderId, OwnerId, Price, Qty, Seq, Tif, Timestamp,
};

const INSTRUMENT: InstrumentId = InstrumentId(1);
const OWNERS: u64 = 16;

/// Our engine behind `HarnessBook`.
#[derive(Debug)]
pub struct BourseHarness {
    engine: Engine,
    events: Events,
    seq: u64,
    /// Client order ids handed out so far.
    coid: u64,
    /// Stream id → engine order id.
    ids: Vec<u64>,
    /// Engine order id → stream id.
    wids: Vec<u64>,
    reports: Reports,
}

/// The engine configuration used for a stream sized `s`.
pub fn harness_config(s: &Sizing) -> EngineConfig {
    let orders = s.max_id;
    EngineConfig {
        orders_max: (2 * s.max_live + 1024) as u32,
        levels_max: (2 * s.max_levels).max(4096) as u32,
        stops_max: 16,
        instruments_max: 1,
        owners_max: 2 * OWNERS as u32,
        client_order_ids_max: (orders + 1024) as u32,
        accounts_max: 64,
        transfers_max: 64,
        events_max: 4096,
        assets_max: 4,
        batch_max: 16,
    }
}

fn owner(id: u64) -> OwnerId {
    OwnerId(1 + id % OWNERS)
}

fn instrument(start_mid: u64) -> InstrumentSpec {
    let asset = |code| engine::Asset::from_str_code(code).expect("valid asset");
    plain_instrument(
        INSTRUMENT,
        "FLASH-USD",
        asset("FLASH"),
        asset("USD"),
        start_mid,
    )
}

impl BourseHarness {
    /// The engine, for inspection.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    #[inline(always)]
    fn apply(&mut self, command: Command) {
        self.seq += 1;
        let input = Input {
            seq: Seq(self.seq),
            now: Timestamp(self.seq),
            command,
        };
        self.engine.apply(&input, &mut self.events);
    }

    /// Sends a new limit order for stream id `id` and reads its events.
    #[inline(always)]
    fn submit(&mut self, id: u64, side: Side, price: u64, qty: u64, tif: Tif) {
        self.coid += 1;
        self.apply(Command::NewOrder(limit_order(
            owner(id),
            INSTRUMENT,
            ClientOrderId(self.coid),
            side,
            price,
            qty,
            tif,
        )));
        self.read(id, false);
    }

    /// Reads every event of the last command, `id` being the stream id of
    /// the order it concerned. In a modify (`in_modify`) a `Canceled` is part
    /// of the modify, not a cancel of its own.
    #[inline(always)]
    fn read(&mut self, id: u64, in_modify: bool) {
        let r = &mut self.reports;
        for e in self.events.iter() {
            match *e {
                Event::Accepted { order_id, .. } => {
                    self.ids[id as usize] = order_id.0;
                    self.wids[order_id.0 as usize] = id;
                    r.accepted += u64::from(!in_modify);
                }
                Event::Trade {
                    price,
                    qty,
                    maker_order_id,
                    ..
                } => {
                    let maker = self.wids[maker_order_id.0 as usize];
                    r.fill(id, maker, price.0, qty.0);
                }
                Event::Canceled { reason, .. } => match reason {
                    CancelReason::IocRemainder => r.ioc_canceled += 1,
                    _ => r.canceled += u64::from(!in_modify),
                },
                Event::Replaced { .. } => r.modified += 1,
                Event::Rejected { .. } => r.rejected += 1,
                _ => {}
            }
        }
    }

    fn cancel_command(&self, id: u64) -> Command {
        Command::Cancel {
            owner: owner(id),
            order_id: OrderId(self.ids[id as usize]),
        }
    }
}

impl HarnessBook for BourseHarness {
    const NAME: &'static str = "bourse";

    fn new(s: &Sizing) -> Self {
        let mut engine = Engine::new(harness_config(s));
        // As the runtime does: no page faults in the measured phase.
        engine.prefault();
        let mut events = engine.new_events();
        let input = Input {
            seq: Seq(0),
            now: Timestamp(0),
            command: Command::AddInstrument(instrument(s.start_mid)),
        };
        engine.apply(&input, &mut events);
        assert!(events.is_empty(), "instrument refused: {events:?}");
        let ids = s.max_id as usize + 1;
        BourseHarness {
            engine,
            events,
            seq: 0,
            coid: 0,
            ids: vec![0; ids],
            wids: vec![0; (s.max_id + s.modifies) as usize + 2],
            reports: Reports::new(true),
        }
    }

    #[inline]
    fn new_order(&mut self, id: u64, side: Side, price: u64, qty: u64, ioc: bool) {
        let tif = if ioc { Tif::Ioc } else { Tif::Gtc };
        self.submit(id, side, price, qty, tif);
    }

    #[inline]
    fn cancel(&mut self, id: u64) {
        self.apply(self.cancel_command(id));
        self.read(id, false);
    }

    /// A modify is one `Replace { requeue: true }`: cancel-and-reinsert
    /// under one seq (the order keeps its engine id, goes to the back of its
    /// new level's queue, or trades first if the new price crosses).
    #[inline]
    fn modify(&mut self, id: u64, _side: Side, price: u64, qty: u64) {
        self.apply(Command::Replace {
            owner: owner(id),
            order_id: OrderId(self.ids[id as usize]),
            price: Some(Price(price)),
            qty: Some(Qty(qty)),
            requeue: true,
        });
        self.read(id, true);
    }

    fn reports(&self) -> Reports {
        self.reports
    }

    fn resting(&self) -> Resting {
        resting_of(&self.engine, INSTRUMENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{check, send, Params, Scenario, Stream};

    /// Every scenario, a few thousand messages, through our engine: the
    /// reports and the resting book must be the reference model's, and the
    /// same stream twice must leave the same state hash.
    #[test]
    fn bourse_conforms_on_every_scenario() {
        for sc in Scenario::ALL {
            let p = Params {
                orders: 3_000,
                book_orders: 300,
                ..Params::standard(sc)
            };
            eprintln!("scenario {} seed {:#x}", sc.name(), p.seed);
            let s = Stream::generate(sc, p);
            let mut hashes = Vec::new();
            for _ in 0..2 {
                let mut b = BourseHarness::new(&s.sizing);
                for m in &s.msgs {
                    send(&mut b, m);
                }
                let got = b.reports();
                if let Err(e) = check(&got, &b.resting(), &s) {
                    panic!("{}: {e}", sc.name());
                }
                hashes.push(b.engine().state_hash());
            }
            assert_eq!(hashes[0], hashes[1], "{}: state hash differs", sc.name());
        }
    }

    /// The check can fail: a stream with one fill fewer is a mismatch.
    #[test]
    fn check_catches_a_missing_fill() {
        let sc = Scenario::Normal;
        let s = Stream::generate(
            sc,
            Params {
                orders: 2_000,
                book_orders: 200,
                ..Params::standard(sc)
            },
        );
        let mut b = BourseHarness::new(&s.sizing);
        let cut = s
            .msgs
            .iter()
            .rposition(|m| matches!(m, crate::harness::Msg::New { ioc: true, .. }))
            .expect("an IOC order");
        for (i, m) in s.msgs.iter().enumerate() {
            if i != cut {
                send(&mut b, m);
            }
        }
        assert!(check(&b.reports(), &b.resting(), &s).is_err());
    }
}
