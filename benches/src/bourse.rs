//! Adapter for our engine (`bourse-engine`).
//!
//! Mapping: one instrument (`settle = false`, tick 1, lot 1, no band, no
//! circuit breaker, no fees, no per-owner limits); a passive op is a GTC
//! limit, a crossing op an IOC limit (`Tif::Ioc`), a cancel is
//! `Command::Cancel`. Orders are spread over 16 owners (`1 + id % 16`) with
//! self-trade prevention off, so every order trades like the reference
//! model's. The workload id is the client order id; the engine's `OrderId`
//! is read from the `Accepted` event into a `Vec` indexed by workload id.
//! Every event of every command is read (fills and traded lots are counted
//! from `Trade` events), as a gateway would.
//!
//! Sizing: `orders_max` ≥ 2 × the largest book, `levels_max` ≥ 2 × the most
//! levels on a side, client order ids for every order of the run.

use crate::book::{Book, Resting, Tally};
use crate::workload::{Side, Workload};
use engine::{
    Asset, ClientOrderId, Command, Engine, EngineConfig, Event, Events, Input, InstrumentId,
    InstrumentSpec, NewOrder, OrderId, OrderType, OwnerId, Price, Qty, Seq, Stp, Symbol, Tif,
    Timestamp,
};

const INSTRUMENT: InstrumentId = InstrumentId(1);
const OWNERS: u64 = 16;

/// Our engine behind the `Book` trait.
#[derive(Debug)]
pub struct Bourse {
    engine: Engine,
    events: Events,
    seq: u64,
    /// Workload id → engine order id.
    ids: Vec<u64>,
    trades: u64,
    traded_qty: u64,
    rejects: u64,
}

/// The engine configuration used for workload `w`.
pub fn config_for(w: &Workload) -> EngineConfig {
    let live = w.max_live.max(w.params.book_orders);
    EngineConfig {
        orders_max: (2 * live + 1024) as u32,
        levels_max: (2 * w.max_levels).max(4096) as u32,
        stops_max: 16,
        instruments_max: 1,
        owners_max: 2 * OWNERS as u32,
        client_order_ids_max: (w.new_orders() + 1024) as u32,
        accounts_max: 16,
        transfers_max: 16,
        events_max: 4096,
        assets_max: 4,
        batch_max: 16,
    }
}

impl Bourse {
    /// The engine, for inspection.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn next_seq(&mut self) -> Seq {
        self.seq += 1;
        Seq(self.seq)
    }

    #[inline(always)]
    fn submit(&mut self, id: u64, side: Side, price: u64, qty: u64, tif: Tif) {
        let seq = self.next_seq();
        let input = Input {
            seq,
            now: Timestamp(seq.0),
            command: Command::NewOrder(NewOrder {
                owner: OwnerId(1 + id % OWNERS),
                instrument: INSTRUMENT,
                client_order_id: ClientOrderId(id),
                side: match side {
                    Side::Buy => engine::Side::Buy,
                    Side::Sell => engine::Side::Sell,
                },
                order_type: OrderType::Limit,
                price: Some(Price(price)),
                qty: Qty(qty),
                tif,
                expire_at: None,
                post_only: false,
                stp: Stp::None,
                display_qty: None,
                trigger_price: None,
            }),
        };
        self.engine.apply(&input, &mut self.events);
        for e in self.events.iter() {
            match *e {
                Event::Accepted { order_id, .. } => self.ids[id as usize] = order_id.0,
                Event::Trade { qty, .. } => {
                    self.trades += 1;
                    self.traded_qty += qty.0;
                }
                Event::Rejected { .. } => self.rejects += 1,
                _ => {}
            }
        }
    }
}

impl Book for Bourse {
    const NAME: &'static str = "bourse";

    fn new(w: &Workload) -> Self {
        let mut engine = Engine::new(config_for(w));
        let mut events = engine.new_events();
        let spec = InstrumentSpec {
            id: INSTRUMENT,
            symbol: Symbol::from_str_code("BENCH-USD").expect("valid symbol"),
            base: Asset::from_str_code("BENCH").expect("valid asset"),
            quote: Asset::from_str_code("USD").expect("valid asset"),
            tick: 1,
            lot_size: 1,
            qty_min: 1,
            qty_max: 1 << 40,
            reference_price: Price(w.params.start_mid),
            band_bps: None,
            circuit_bps: None,
            circuit_window_ns: 0,
            maker_fee_bps: 0,
            taker_fee_bps: 0,
            fee_account: engine::AccountId(0),
            settle: false,
            open_orders_max: None,
            notional_max: None,
        };
        engine.apply(
            &Input {
                seq: Seq(0),
                now: Timestamp(0),
                command: Command::AddInstrument(spec),
            },
            &mut events,
        );
        assert!(
            events.is_empty(),
            "instrument refused: {:?}",
            events.as_slice()
        );
        Bourse {
            engine,
            events,
            seq: 0,
            ids: vec![0; w.max_id as usize + 1],
            trades: 0,
            traded_qty: 0,
            rejects: 0,
        }
    }

    #[inline]
    fn limit(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        self.submit(id, side, price, qty, Tif::Gtc);
    }

    #[inline]
    fn cancel(&mut self, id: u64) {
        let seq = self.next_seq();
        let input = Input {
            seq,
            now: Timestamp(seq.0),
            command: Command::Cancel {
                owner: OwnerId(1 + id % OWNERS),
                order_id: OrderId(self.ids[id as usize]),
            },
        };
        self.engine.apply(&input, &mut self.events);
        for e in self.events.iter() {
            if let Event::Rejected { .. } = e {
                self.rejects += 1;
            }
        }
    }

    #[inline]
    fn cross(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        self.submit(id, side, price, qty, Tif::Ioc);
    }

    fn tally(&self) -> Tally {
        Tally {
            trades: Some(self.trades),
            traded_qty: self.traded_qty,
            rejects: self.rejects,
        }
    }

    fn resting(&self) -> Resting {
        let qty = [engine::Side::Buy, engine::Side::Sell]
            .into_iter()
            .flat_map(|s| self.engine.book_side(INSTRUMENT, s))
            .map(|l| l.qty.0)
            .sum();
        if let Err(e) = self.engine.validate() {
            panic!("engine invariants broken after the run: {e}");
        }
        Resting {
            orders: Some(self.engine.live_orders() as u64),
            qty,
        }
    }
}
