//! Adapter for our engine (`bourse-engine`).
//!
//! Mapping: one instrument (`settle = false`, tick 1, lot 1, no band, no
//! circuit breaker, no fees, no per-owner limits; `Bourse::with_settlement`
//! builds the same instrument with `settle = true` and fees instead, see
//! `Settlement`); a passive op is a GTC
//! limit, a crossing op an IOC limit (`Tif::Ioc`), a cancel is
//! `Command::Cancel`. Orders are spread over 16 owners (`1 + id % 16`) with
//! self-trade prevention off, so every order trades like the reference
//! model's. Each owner numbers its client order ids 1, 2, 3, … as a
//! trading session does (the workload id, spread over 16 owners, would
//! give each owner every 16th id); the engine's `OrderId` is read from the
//! `Accepted` event into a `Vec` indexed by workload id.
//! Every event of every command is read (fills and traded lots are counted
//! from `Trade` events), as a gateway would.
//!
//! Sizing: `orders_max` ≥ 2 × the largest book, `levels_max` ≥ 2 × the most
//! levels on a side, client order ids for every order of the run.

use crate::book::{Book, Resting, Tally};
use crate::workload::{Side, Workload};
use engine::{
    AccountFlags, AccountId, AccountSpec, Amount, Asset, ClientOrderId, Command, Engine,
    EngineConfig, Event, Events, Input, InstrumentId, InstrumentSpec, NewOrder, OrderId, OrderType,
    OwnerId, Price, Qty, Seq, Stp, Symbol, Tif, Timestamp, TransferFlags, TransferId, TransferSpec,
};

const INSTRUMENT: InstrumentId = InstrumentId(1);
const OWNERS: u64 = 16;
/// The fee account of a settling instrument (quote asset, no flags).
pub const FEE_ACCOUNT: AccountId = AccountId(1_000);
/// Base and quote external (omnibus) accounts that fund the owners.
const EXTERNAL: [AccountId; 2] = [AccountId(2_000), AccountId(2_001)];
/// What each owner's base and quote trading account is funded with: far more
/// than the workload can ever hold or spend (≈ 10¹⁰ lots × 10⁶ ticks), so no
/// order is refused `insufficient_funds`, and far below the engine's 2¹²⁰
/// headroom limit.
const FUNDING: u128 = 1 << 100;

/// Ledger settlement for the benchmark instrument: `settle = true`, every
/// owner with a base and a quote trading account (`debits_must_not_exceed_
/// credits`, funded from an external account with `FUNDING`), and fees paid
/// to `FEE_ACCOUNT`. Every hold, release and fill then moves balances.
#[derive(Clone, Copy, Debug)]
pub struct Settlement {
    /// Maker fee, basis points of notional.
    pub maker_fee_bps: u32,
    /// Taker fee, basis points of notional.
    pub taker_fee_bps: u32,
}

/// The benchmark instrument: tick 1, lot 1, no band, no circuit breaker,
/// no per-owner limits, no fees and no settlement (the caller sets those).
pub fn plain_instrument(
    id: InstrumentId,
    symbol: &str,
    base: Asset,
    quote: Asset,
    mid: u64,
) -> InstrumentSpec {
    InstrumentSpec {
        id,
        symbol: Symbol::from_str_code(symbol).expect("valid symbol"),
        base,
        quote,
        tick: 1,
        lot_size: 1,
        qty_min: 1,
        qty_max: 1 << 40,
        reference_price: Price(mid),
        band_bps: None,
        circuit_bps: None,
        circuit_window_ns: 0,
        maker_fee_bps: 0,
        taker_fee_bps: 0,
        fee_account: AccountId(0),
        settle: false,
        open_orders_max: None,
        notional_max: None,
    }
}

/// The resting book of `instrument` after a run, read back untimed; the
/// engine's invariants are checked first (a broken one panics).
pub fn resting_of(engine: &Engine, instrument: InstrumentId) -> Resting {
    if let Err(e) = engine.validate() {
        panic!("engine invariants broken after the run: {e}");
    }
    let qty = [engine::Side::Buy, engine::Side::Sell]
        .into_iter()
        .flat_map(|s| engine.book_side(instrument, s))
        .map(|l| l.qty.0)
        .sum();
    Resting {
        orders: Some(engine.live_orders() as u64),
        qty,
    }
}

/// A limit order with no expiry, display size, trigger or self-trade
/// prevention, as both bourse adapters send it.
#[inline(always)]
pub fn limit_order(
    owner: OwnerId,
    instrument: InstrumentId,
    client_order_id: ClientOrderId,
    side: Side,
    price: u64,
    qty: u64,
    tif: Tif,
) -> NewOrder {
    NewOrder {
        owner,
        instrument,
        client_order_id,
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
    }
}

/// Trading account ids of owner `o` (1-based): (base, quote).
fn trading_accounts(o: u64) -> (AccountId, AccountId) {
    (
        AccountId(10_000 + 2 * o as u128),
        AccountId(10_001 + 2 * o as u128),
    )
}

/// Our engine behind the `Book` trait.
#[derive(Debug)]
pub struct Bourse {
    engine: Engine,
    events: Events,
    seq: u64,
    /// Workload id → engine order id.
    ids: Vec<u64>,
    /// Each owner's next client order id: an owner numbers its own orders
    /// 1, 2, 3, … as a trading session does (ClOrdID per session).
    next_coid: [u64; OWNERS as usize],
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
        accounts_max: 64,
        transfers_max: 64,
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

    /// A fresh, empty book sized for `w`; with `Some(settlement)` the
    /// instrument settles on the ledger (accounts opened and funded here,
    /// untimed), with `None` it is the plain `settle = false` one of
    /// `Book::new`.
    pub fn with_settlement(w: &Workload, settlement: Option<Settlement>) -> Self {
        let mut engine = Engine::new(config_for(w));
        // As the runtime does: no page faults in the measured phase.
        engine.prefault();
        let mut events = engine.new_events();
        let mut seq = 0u64;
        let mut setup = |engine: &mut Engine, command: Command| {
            seq += 1;
            engine.apply(
                &Input {
                    seq: Seq(seq),
                    now: Timestamp(0),
                    command,
                },
                &mut events,
            );
            let ok = events
                .iter()
                .all(|e| matches!(e, Event::AccountOpened { .. } | Event::TransferOk { .. }));
            assert!(ok, "set-up refused: {:?}", events.as_slice());
        };
        let base = Asset::from_str_code("BENCH").expect("valid asset");
        let quote = Asset::from_str_code("USD").expect("valid asset");
        if settlement.is_some() {
            let open = |id, owner, asset, flags| {
                Command::OpenAccount(AccountSpec {
                    id,
                    owner: OwnerId(owner),
                    asset,
                    flags: AccountFlags(flags),
                })
            };
            setup(&mut engine, open(FEE_ACCOUNT, 0, quote, 0));
            setup(&mut engine, open(EXTERNAL[0], 0, base, 0));
            setup(&mut engine, open(EXTERNAL[1], 0, quote, 0));
            let mut transfer_id = 0u128;
            for o in 1..=OWNERS {
                let (b, q) = trading_accounts(o);
                let flags = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
                setup(&mut engine, open(b, o, base, flags));
                setup(&mut engine, open(q, o, quote, flags));
                for (from, to) in [(EXTERNAL[0], b), (EXTERNAL[1], q)] {
                    transfer_id += 1;
                    setup(
                        &mut engine,
                        Command::Transfer {
                            transfer: TransferSpec {
                                id: TransferId(transfer_id),
                                debit_account: from,
                                credit_account: to,
                                amount: Amount(FUNDING),
                                code: 1,
                                flags: TransferFlags(0),
                                pending_id: TransferId(0),
                                timeout_ns: 0,
                            },
                            batch_end: true,
                            actor: engine::Actor::Admin,
                        },
                    );
                }
            }
        }
        let spec = InstrumentSpec {
            maker_fee_bps: settlement.map_or(0, |s| s.maker_fee_bps),
            taker_fee_bps: settlement.map_or(0, |s| s.taker_fee_bps),
            fee_account: if settlement.is_some() {
                FEE_ACCOUNT
            } else {
                AccountId(0)
            },
            settle: settlement.is_some(),
            ..plain_instrument(INSTRUMENT, "BENCH-USD", base, quote, w.params.start_mid)
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
            next_coid: [1; OWNERS as usize],
            trades: 0,
            traded_qty: 0,
            rejects: 0,
        }
    }

    /// An account's balances now (untimed; goes through `QueryBalance`):
    /// (debits posted, credits posted, debits pending, credits pending).
    pub fn balance(&mut self, account: AccountId) -> Option<[u128; 4]> {
        let seq = self.next_seq();
        self.engine.apply(
            &Input {
                seq,
                now: Timestamp(seq.0),
                command: Command::QueryBalance {
                    account,
                    actor: engine::Actor::Admin,
                },
            },
            &mut self.events,
        );
        match self.events.as_slice() {
            [Event::Balance {
                debits_posted,
                credits_posted,
                debits_pending,
                credits_pending,
                ..
            }] => Some([
                debits_posted.0,
                credits_posted.0,
                debits_pending.0,
                credits_pending.0,
            ]),
            _ => None,
        }
    }

    fn next_seq(&mut self) -> Seq {
        self.seq += 1;
        Seq(self.seq)
    }

    #[inline(always)]
    fn submit(&mut self, id: u64, side: Side, price: u64, qty: u64, tif: Tif) {
        let seq = self.next_seq();
        let coid = &mut self.next_coid[(id % OWNERS) as usize];
        let client_order_id = ClientOrderId(*coid);
        *coid += 1;
        let input = Input {
            seq,
            now: Timestamp(seq.0),
            command: Command::NewOrder(limit_order(
                OwnerId(1 + id % OWNERS),
                INSTRUMENT,
                client_order_id,
                side,
                price,
                qty,
                tif,
            )),
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
        Bourse::with_settlement(w, None)
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
        resting_of(&self.engine, INSTRUMENT)
    }
}
