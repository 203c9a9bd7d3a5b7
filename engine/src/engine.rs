//! The matching state machine: instruments, books, orders, stops, expiry.
//!
//! Layout: orders live in one preallocated pool (`Vec<Order>` + free list)
//! and are addressed by slot; fields only some orders use (stops, GTD,
//! icebergs, settlement) are in a parallel `Vec<OrderCold>`, written only for
//! those orders, so the hot record is 64 bytes; `order_index` maps an
//! `OrderId` to its slot (O(1) cancel by id). Each price level is an
//! intrusive doubly linked FIFO of order slots. Each book side is a vector
//! of `(key, level)` pairs sorted so that the best level is *last*: O(1)
//! best price, and inserting or removing near the top of the book moves only
//! a few entries. Every owner has an intrusive list of its live orders
//! (mass cancel walks only those), and GTD orders sit in an indexed min-heap
//! keyed by `(expire_at, order_id)`.
//!
//! Invariants (checked by `validate`): levels are sorted strictly, non-empty,
//! and their quantity and count equal the sum over their orders; the book is
//! never crossed after a command; every live order is in the index, its
//! owner's list, the heap (if GTD) and exactly one level or stop list; no
//! order or level slot is referenced after being freed.
//!
//! Nothing here allocates after `Engine::new`: every vector is created with
//! its final capacity, and capacity checks come before every push.

use crate::command::*;
use crate::config::EngineConfig;
use crate::event::*;
use crate::fixed_map::FixedMap;
use crate::hash::{SetHasher, StateHasher};
use crate::history::{AccountFilter, TransferHistory, TransferRecord, ACCOUNT_TRANSFERS_LIMIT_MAX};
use crate::index::{CoidSet, IdIndex, OwnerCoids};
use crate::ledger::{Ledger, NO_ACCOUNT};
use crate::types::*;
use std::collections::VecDeque;

#[path = "snapshot.rs"]
mod snapshot;
pub use snapshot::SnapshotError;

const NIL: u32 = u32::MAX;
const BPS: u128 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OrderState {
    Free,
    /// Being matched (incoming, triggered or replaced-and-crossing).
    Active,
    /// In a price level.
    Resting,
    /// Waiting for its trigger.
    Stop,
}

/// The hot part of an order: what placing, matching, resting and cancelling
/// read and write for every order (64 bytes; checked by a test). The
/// rest is in `OrderCold` at the same slot, touched only for orders that use
/// it (see `cold_set`).
#[derive(Clone, Copy, Debug)]
struct Order {
    id: OrderId,
    coid: ClientOrderId,
    price: Price,
    remaining: Qty,
    visible: Qty,
    inst: u32,
    level: u32,
    /// The owner (`owners[owner_slot].id` is the order's `OwnerId`).
    owner_slot: u32,
    /// Settling instruments: the account the hold sits on (buy: quote,
    /// sell: base); `NO_ACCOUNT` otherwise.
    pay: u32,
    side: Side,
    otype: OrderType,
    tif: Tif,
    stp: Stp,
    post_only: bool,
    state: OrderState,
    /// `OrderCold::display > 0`: matching reads the cold part only then.
    iceberg: bool,
    /// Whether `Engine::cold[slot]` holds this order's cold part. When not,
    /// the cold part is `plain_cold(self)` (what a plain limit or market
    /// order has) and the array entry is stale: placing and cancelling a
    /// plain order never touches the cold array.
    cold_set: bool,
}

impl Default for Order {
    fn default() -> Self {
        Order {
            id: OrderId(0),
            coid: ClientOrderId(0),
            price: Price(0),
            remaining: Qty(0),
            visible: Qty(0),
            inst: NIL,
            level: NIL,
            owner_slot: NIL,
            pay: NO_ACCOUNT,
            side: Side::Buy,
            otype: OrderType::Limit,
            tif: Tif::Gtc,
            stp: Stp::None,
            post_only: false,
            state: OrderState::Free,
            iceberg: false,
            cold_set: false,
        }
    }
}

/// The cold part of an order, at the same slot as its `Order`: what only
/// stops (trigger), GTD orders (expiry and heap position), icebergs
/// (display) and settling instruments (hold and fees) use. For any other
/// order it equals `plain_cold` and is not stored (`Order::cold_set` false),
/// so a plain order's placing, fills and cancel never touch this array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OrderCold {
    trigger: Price,
    /// `u64::MAX` when the order does not expire.
    expire_at: Timestamp,
    /// 0: not an iceberg.
    display: Qty,
    /// Buy holds: the price per lot the hold covers (limit, or band edge).
    hold_price: Price,
    /// Position in the expiry heap (GTD orders), `NIL` otherwise.
    heap_pos: u32,
    /// Settling instruments: the account fills pay into; `NO_ACCOUNT` otherwise.
    recv: u32,
    /// What the hold reserves now (equals `Engine::need` between commands).
    hold: u128,
    /// Σ fill notional × fee bps so far (fee rounding is cumulative, conv. 17).
    fee_acc: u128,
}

const COLD_FREE: OrderCold = OrderCold {
    trigger: Price(0),
    expire_at: Timestamp(u64::MAX),
    display: Qty(0),
    hold_price: Price(0),
    heap_pos: NIL,
    recv: NO_ACCOUNT,
    hold: 0,
    fee_acc: 0,
};

impl Default for OrderCold {
    fn default() -> Self {
        COLD_FREE
    }
}

/// The cold part of an order that keeps none of its own: no trigger, no
/// expiry, no display, no settlement; a buy with a price holds at it
/// (`hold_price` is kept for every order, as the state hash and snapshots
/// carry it).
#[inline]
fn plain_cold(o: &Order) -> OrderCold {
    OrderCold {
        hold_price: if o.side == Side::Buy && o.otype.has_price() {
            o.price
        } else {
            Price(0)
        },
        ..COLD_FREE
    }
}

/// An order's links in its level queue and its owner's list, kept apart
/// from `Order` (16 bytes a slot): unlinking an order touches its
/// neighbours' links, not their whole records, so cancels in a deep book
/// miss the cache less.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Links {
    prev: u32,
    next: u32,
    oprev: u32,
    onext: u32,
}

const NO_LINKS: Links = Links {
    prev: NIL,
    next: NIL,
    oprev: NIL,
    onext: NIL,
};

impl Default for Links {
    fn default() -> Self {
        NO_LINKS
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Level {
    price: Price,
    qty: Qty,
    count: u32,
    head: u32,
    tail: u32,
}

/// A sorted-vector entry: `key` orders the vector, `slot` is the level (or stop order).
#[derive(Clone, Copy, Debug)]
struct Entry {
    key: u64,
    slot: u32,
}

#[derive(Clone, Debug)]
struct Instrument {
    spec: InstrumentSpec,
    /// Bid levels, key = price (ascending, best last).
    bids: Vec<Entry>,
    /// Ask levels, key = !price (ascending, best = lowest price last).
    asks: Vec<Entry>,
    /// Buy stops, key = !trigger (lowest trigger last: it fires first).
    buy_stops: Vec<Entry>,
    /// Sell stops, key = trigger (highest trigger last).
    sell_stops: Vec<Entry>,
    last_trade: Option<Price>,
    halted: Option<HaltReason>,
    window: Option<u64>,
    anchor: Price,
    /// Settling instruments: asset indexes and the fee account slot.
    base_asset: u32,
    quote_asset: u32,
    fee_slot: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct Owner {
    id: OwnerId,
    head: u32,
    tail: u32,
    /// Client order ids used (highest, and the bitmap block being filled).
    coids: OwnerCoids,
}

/// A read-only view of a live order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderView {
    /// Order id.
    pub id: OrderId,
    /// Owner.
    pub owner: OwnerId,
    /// Client order id.
    pub client_order_id: ClientOrderId,
    /// Instrument.
    pub instrument: InstrumentId,
    /// Side.
    pub side: Side,
    /// Type.
    pub order_type: OrderType,
    /// Limit price (0 for market/stop).
    pub price: Price,
    /// Remaining quantity (hidden part included).
    pub remaining: Qty,
    /// Visible quantity.
    pub visible: Qty,
    /// Whether it waits for its trigger.
    pub waiting_stop: bool,
}

/// How a match of an incoming order ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MatchEnd {
    /// Filled, or nothing more to match at acceptable prices.
    Done,
    /// The circuit breaker tripped: cancel the remainder.
    Halted,
    /// Self-trade prevention cancelled the incoming order (already reported).
    TakerCanceled,
}

/// The matching engine of one partition.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    now: Timestamp,
    next_order_id: u64,
    instruments: Vec<Instrument>,
    instrument_count: usize,
    instrument_index: FixedMap<u32>,
    orders: Vec<Order>,
    /// The cold half of each order, same slot as `orders`.
    cold: Vec<OrderCold>,
    links: Vec<Links>,
    order_free: Vec<u32>,
    order_index: IdIndex,
    levels: Vec<Level>,
    level_free: Vec<u32>,
    owners: Vec<Owner>,
    owner_index: FixedMap<u32>,
    coids: CoidSet,
    open_counts: FixedMap<u32>,
    heap: Vec<u32>,
    /// Stops triggered by the order being matched, not yet ordered.
    triggered_batch: Vec<u32>,
    /// Triggered stops waiting to fire, in firing order.
    fire_queue: VecDeque<u32>,
    ledger: Ledger,
}

#[inline]
fn side_key(side: Side, price: Price) -> u64 {
    match side {
        Side::Buy => price.0,
        Side::Sell => !price.0,
    }
}

#[inline]
fn stop_key(side: Side, trigger: Price) -> u64 {
    match side {
        Side::Buy => !trigger.0,
        Side::Sell => trigger.0,
    }
}

/// The prices a taker accepts: `lo ≤ price ≤ hi`. A limit order bounds one
/// side (its limit); a market order or triggered stop is bounded by both band
/// edges (convention 2: a sell must not lift a bid above the upper edge any
/// more than a buy may pay above it), and a settling market buy additionally
/// by its hold price. Two compares per level keep the matching loop cheap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bounds {
    lo: Price,
    hi: Price,
}

impl Bounds {
    const ANY: Bounds = Bounds {
        lo: Price(0),
        hi: Price(u64::MAX),
    };

    /// A limit order's bounds: its limit on its own side, nothing on the other.
    #[inline]
    fn limit(side: Side, limit: Price) -> Bounds {
        match side {
            Side::Buy => Bounds {
                hi: limit,
                ..Bounds::ANY
            },
            Side::Sell => Bounds {
                lo: limit,
                ..Bounds::ANY
            },
        }
    }

    /// A market order's (or triggered stop's) bounds: both band edges, the
    /// buy side further capped by a settling buy's hold price (0 = none).
    fn market(spec: &InstrumentSpec, reference: Price, hold_price: Price) -> Bounds {
        let mut b = match (
            band_edge(spec, reference, Side::Sell),
            band_edge(spec, reference, Side::Buy),
        ) {
            (Some(lo), Some(hi)) => Bounds { lo, hi },
            _ => Bounds::ANY,
        };
        if hold_price.0 != 0 {
            b.hi = b.hi.min(hold_price);
        }
        b
    }

    /// Whether a taker with these bounds accepts a maker at `price`.
    #[inline]
    fn admits(self, price: Price) -> bool {
        self.lo <= price && price <= self.hi
    }
}

fn in_band(spec: &InstrumentSpec, reference: Price, price: Price) -> bool {
    match spec.band_bps {
        None => true,
        Some(bps) => {
            let diff = price.0.abs_diff(reference.0) as u128;
            diff * BPS <= reference.0 as u128 * bps as u128
        }
    }
}

/// The band's edge on a side: the most a buy may pay, the least a sell may take.
fn band_edge(spec: &InstrumentSpec, reference: Price, side: Side) -> Option<Price> {
    let bps = spec.band_bps?;
    let width = (reference.0 as u128 * bps as u128 / BPS).min(u64::MAX as u128) as u64;
    Some(match side {
        Side::Buy => Price(reference.0.saturating_add(width)),
        Side::Sell => Price(reference.0.saturating_sub(width)),
    })
}

impl Engine {
    /// Builds an engine, allocating every capacity in `cfg` now.
    pub fn new(cfg: EngineConfig) -> Engine {
        let orders_max = cfg.orders_max.max(1) as usize;
        let mut instruments = Vec::with_capacity(cfg.instruments_max as usize);
        for _ in 0..cfg.instruments_max {
            instruments.push(Instrument {
                spec: empty_spec(),
                bids: Vec::with_capacity(cfg.levels_max as usize),
                asks: Vec::with_capacity(cfg.levels_max as usize),
                buy_stops: Vec::with_capacity(cfg.stops_max as usize),
                sell_stops: Vec::with_capacity(cfg.stops_max as usize),
                last_trade: None,
                halted: None,
                window: None,
                anchor: Price(0),
                base_asset: NO_ACCOUNT,
                quote_asset: NO_ACCOUNT,
                fee_slot: NO_ACCOUNT,
            });
        }
        Engine {
            cfg,
            now: Timestamp(0),
            next_order_id: 1,
            instruments,
            instrument_count: 0,
            instrument_index: FixedMap::with_capacity(cfg.instruments_max as usize),
            orders: Vec::with_capacity(orders_max),
            cold: Vec::with_capacity(orders_max),
            links: Vec::with_capacity(orders_max),
            order_free: Vec::with_capacity(orders_max),
            order_index: IdIndex::with_capacity(orders_max),
            levels: Vec::with_capacity(orders_max),
            level_free: Vec::with_capacity(orders_max),
            owners: Vec::with_capacity(cfg.owners_max as usize),
            owner_index: FixedMap::with_capacity(cfg.owners_max as usize),
            coids: CoidSet::with_capacity(cfg.client_order_ids_max as usize),
            open_counts: FixedMap::with_capacity(orders_max),
            heap: Vec::with_capacity(orders_max),
            triggered_batch: Vec::with_capacity(orders_max),
            fire_queue: VecDeque::with_capacity(orders_max),
            ledger: Ledger::new(&cfg),
        }
    }

    /// Writes to every page of every preallocated table, so that the first
    /// use of any capacity never takes a page fault on the hot path. Costs
    /// start-up time and makes the resident size the configured capacity;
    /// the runtime calls it, scripts and tests need not. Changes nothing
    /// logically (the state hash is the same before and after).
    pub fn prefault(&mut self) {
        use crate::ledger::{touch_vec, touch_vec_with};
        touch_vec(&mut self.orders);
        touch_vec(&mut self.cold);
        touch_vec(&mut self.links);
        touch_vec(&mut self.order_free);
        touch_vec(&mut self.levels);
        touch_vec(&mut self.level_free);
        touch_vec(&mut self.owners);
        touch_vec(&mut self.heap);
        touch_vec(&mut self.triggered_batch);
        for i in &mut self.instruments {
            for v in [
                &mut i.bids,
                &mut i.asks,
                &mut i.buy_stops,
                &mut i.sell_stops,
            ] {
                touch_vec_with(v, Entry { key: 0, slot: 0 });
            }
        }
        self.order_index.prefault();
        self.coids.prefault();
        self.owner_index.prefault();
        self.open_counts.prefault();
        self.instrument_index.prefault();
        self.ledger.prefault();
    }

    /// An events buffer big enough for this engine's `events_max`.
    pub fn new_events(&self) -> Events {
        Events::with_capacities(
            self.cfg.events_max as usize,
            2 * self.cfg.levels_max as usize,
            ACCOUNT_TRANSFERS_LIMIT_MAX as usize,
            self.ledger.changes_max(),
        )
    }

    /// The capacities this engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Engine time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The earliest time at which something expires (a GTD order or stop, or
    /// a pending transfer); the runtime feeds a `time` input once it passes.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let orders = self.heap.first().map(|&s| self.cold_of(s).expire_at);
        let transfers = self.ledger.next_deadline();
        match (orders, transfers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Number of live orders (resting and waiting stops).
    pub fn live_orders(&self) -> usize {
        self.order_index.len()
    }

    /// Applies one input, replacing the contents of `out` with its events.
    pub fn apply(&mut self, input: &Input, out: &mut Events) {
        out.clear();
        out.seq = input.seq;
        if !matches!(input.command, Command::Transfer { .. }) {
            // A batch ended without closing its linked chain.
            self.ledger.close_open_chain(out);
        }
        let now = match input.command {
            Command::Time { now } => {
                if now < self.now {
                    out.push(Event::Rejected {
                        target: RejectTarget::Time(now),
                        reason: RejectReason::InvalidTime,
                    });
                    return;
                }
                now.max(input.now)
            }
            _ => input.now,
        };
        if now > self.now {
            self.now = now;
        }
        self.expire(out);
        self.ledger.expire((input.seq, self.now), out);
        match input.command {
            Command::AddInstrument(spec) => self.handle_add_instrument(&spec, out),
            Command::NewOrder(o) => self.handle_new_order(&o, out),
            Command::Cancel { owner, order_id } => self.handle_cancel(owner, order_id, out),
            Command::Replace {
                owner,
                order_id,
                price,
                qty,
            } => self.handle_replace(owner, order_id, price, qty, out),
            Command::MassCancel {
                owner,
                instrument,
                side,
            } => self.handle_mass_cancel(owner, instrument, side, out),
            Command::Halt { instrument } => self.handle_halt(instrument, out),
            Command::Resume { instrument } => self.handle_resume(instrument, out),
            Command::Time { .. } => {}
            Command::QueryBook { instrument, depth } => {
                self.handle_query_book(instrument, depth, out)
            }
            Command::OpenAccount(a) => match self.ledger.open_account(&a) {
                Ok(()) => out.push(Event::AccountOpened { id: a.id }),
                Err(reason) => out.push(Event::AccountRejected { id: a.id, reason }),
            },
            Command::Transfer {
                transfer,
                batch_end,
                actor,
            } => self.ledger.handle_transfer(
                &transfer,
                &actor,
                batch_end,
                (input.seq, self.now),
                out,
            ),
            Command::QueryOpenOrders { owner, instrument } => {
                self.handle_query_open_orders(owner, instrument, out)
            }
            Command::QueryBalance { account, actor } => {
                self.ledger.query_balance(account, &actor, out)
            }
            Command::InstallHistory {
                run,
                through_seq,
                checksum,
            } => self
                .ledger
                .install_history(run, through_seq, checksum, input.seq, out),
            Command::LookupTransfer { id, actor } => self.ledger.query_transfer(id, &actor, out),
            Command::GetAccountTransfers { filter, actor } => {
                self.ledger.query_account_transfers(&filter, &actor, out)
            }
        }
    }

    // ----- transfer history ----------------------------------------------

    /// Attaches the store of installed history runs (replacing any). Until
    /// one is attached nothing can be installed (`install_history` is
    /// rejected) and every transfer stays in memory, as before history
    /// existed. Attach it before replaying a journal that installed runs.
    pub fn attach_history(&mut self, h: Box<dyn TransferHistory>) {
        self.ledger.history = Some(h);
    }

    /// The last installed run: (run, through_seq, checksum).
    pub fn installed_history(&self) -> Option<(u64, Seq, u128)> {
        self.ledger.installed()
    }

    /// Every in-memory transfer record changed after input `after`, sorted
    /// by (change_seq, ledger_seq): what a history writer re-seeds from after
    /// a restart. Startup only (allocates).
    pub fn history_tail(&self, after: Seq) -> Vec<TransferRecord> {
        self.ledger.history_tail(after)
    }

    /// Transfer records (and remembered failed ids) held in memory now:
    /// the live part of the ledger, at most `transfers_max`.
    pub fn transfers_in_memory(&self) -> usize {
        self.ledger.hot.len()
    }

    /// Whether the transfer (or failed id) `id` is held in memory now (not
    /// only in history).
    pub fn transfer_in_memory(&self, id: TransferId) -> bool {
        self.ledger.hot.get(id).is_some()
    }

    /// The transfer `id` as an admin would see it (memory, then history).
    pub fn lookup_transfer(&self, id: TransferId) -> Option<TransferRecord> {
        self.ledger.visible_record(id)
    }

    /// An account's transfers as an admin's `GetAccountTransfers` would
    /// list them (allocates: scripts and tests), and whether more match.
    pub fn account_transfers(&self, filter: &AccountFilter) -> (Vec<TransferRecord>, bool) {
        let mut out = Events::with_capacities(1, 0, ACCOUNT_TRANSFERS_LIMIT_MAX as usize, 0);
        self.ledger
            .query_account_transfers(filter, &Actor::Admin, &mut out);
        match out.as_slice() {
            [Event::Transfers { rows, more }] => (out.rows(*rows).to_vec(), *more),
            _ => (Vec::new(), false),
        }
    }

    // ----- instruments -------------------------------------------------

    fn inst_slot(&self, id: InstrumentId) -> Option<u32> {
        self.instrument_index.get(id.0 as u128)
    }

    /// The slot of an optional instrument filter (mass cancel, open-order
    /// queries); `Err` once an unknown instrument has been rejected.
    fn inst_filter(
        &self,
        instrument: Option<InstrumentId>,
        out: &mut Events,
    ) -> Result<Option<u32>, ()> {
        let Some(id) = instrument else {
            return Ok(None);
        };
        match self.inst_slot(id) {
            Some(s) => Ok(Some(s)),
            None => {
                out.push(Event::Rejected {
                    target: RejectTarget::Instrument(id),
                    reason: RejectReason::UnknownInstrument,
                });
                Err(())
            }
        }
    }

    fn handle_add_instrument(&mut self, spec: &InstrumentSpec, out: &mut Events) {
        let reject = |out: &mut Events, reason| {
            out.push(Event::Rejected {
                target: RejectTarget::Instrument(spec.id),
                reason,
            })
        };
        if self.inst_slot(spec.id).is_some() {
            return reject(out, RejectReason::InstrumentExists);
        }
        let valid = spec.id.0 != 0
            && spec.symbol.is_valid()
            && spec.base.is_valid()
            && spec.quote.is_valid()
            && spec.tick > 0
            && spec.lot_size > 0
            && spec.qty_min > 0
            && spec.qty_min <= spec.qty_max
            && spec.reference_price.0 > 0
            && spec.reference_price.0.is_multiple_of(spec.tick)
            && spec.base != spec.quote
            && spec.maker_fee_bps <= BPS as u32
            && spec.taker_fee_bps <= BPS as u32
            && (spec.circuit_bps.is_none() || spec.circuit_window_ns > 0)
            && spec.open_orders_max != Some(0);
        if !valid {
            return reject(out, RejectReason::InvalidInstrument);
        }
        let mut fee_slot = NO_ACCOUNT;
        if spec.settle && (spec.maker_fee_bps > 0 || spec.taker_fee_bps > 0) {
            // Fees need a fee account in the quote asset that can take credits.
            let ok = self.ledger.account_slot(spec.fee_account).is_some_and(|f| {
                let a = &self.ledger.accounts[f as usize];
                fee_slot = f;
                Some(a.asset) == self.ledger.asset_idx(&spec.quote)
                    && !a.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            });
            if !ok {
                return reject(out, RejectReason::InvalidInstrument);
            }
        }
        if self.instrument_count >= self.instruments.len()
            || (spec.settle && !self.ledger.prepare_escrows([&spec.base, &spec.quote]))
        {
            return reject(out, RejectReason::CapacityExceeded);
        }
        let slot = self.instrument_count as u32;
        self.instrument_count += 1;
        let i = &mut self.instruments[slot as usize];
        i.spec = *spec;
        i.last_trade = None;
        i.halted = None;
        i.window = None;
        i.anchor = spec.reference_price;
        if spec.settle {
            i.base_asset = self.ledger.asset_idx(&spec.base).expect("escrows prepared");
            i.quote_asset = self
                .ledger
                .asset_idx(&spec.quote)
                .expect("escrows prepared");
            i.fee_slot = fee_slot;
        } else {
            i.base_asset = NO_ACCOUNT;
            i.quote_asset = NO_ACCOUNT;
            i.fee_slot = NO_ACCOUNT;
        }
        let inserted = self.instrument_index.insert(spec.id.0 as u128, slot);
        assert!(inserted, "instrument index sized to instruments_max");
    }

    fn handle_halt(&mut self, id: InstrumentId, out: &mut Events) {
        let Some(s) = self.inst_slot(id) else {
            return out.push(Event::Rejected {
                target: RejectTarget::Instrument(id),
                reason: RejectReason::UnknownInstrument,
            });
        };
        let inst = &mut self.instruments[s as usize];
        if inst.halted.is_none() {
            inst.halted = Some(HaltReason::Operator);
            out.push(Event::Halted {
                instrument: id,
                reason: HaltReason::Operator,
            });
        }
    }

    fn handle_resume(&mut self, id: InstrumentId, out: &mut Events) {
        let Some(s) = self.inst_slot(id) else {
            return out.push(Event::Rejected {
                target: RejectTarget::Instrument(id),
                reason: RejectReason::UnknownInstrument,
            });
        };
        let inst = &mut self.instruments[s as usize];
        if inst.halted.is_some() {
            inst.halted = None;
            out.push(Event::Resumed { instrument: id });
        }
    }

    fn handle_query_book(&mut self, id: InstrumentId, depth: Option<u32>, out: &mut Events) {
        let Some(s) = self.inst_slot(id) else {
            return out.push(Event::Rejected {
                target: RejectTarget::Instrument(id),
                reason: RejectReason::UnknownInstrument,
            });
        };
        let depth = depth.unwrap_or(u32::MAX) as usize;
        let inst = &self.instruments[s as usize];
        let mut ranges = [LevelRange { start: 0, len: 0 }; 2];
        for (r, side) in ranges.iter_mut().zip([&inst.bids, &inst.asks]) {
            let mut first = true;
            for e in side.iter().rev().take(depth) {
                let l = &self.levels[e.slot as usize];
                let idx = out.push_level(LevelView {
                    price: l.price,
                    qty: l.qty,
                    orders: l.count,
                });
                if first {
                    r.start = idx;
                    first = false;
                }
                r.len += 1;
            }
        }
        out.push(Event::Book {
            instrument: id,
            bids: ranges[0],
            asks: ranges[1],
        });
    }

    fn reference(&self, inst: u32) -> Price {
        let i = &self.instruments[inst as usize];
        i.last_trade.unwrap_or(i.spec.reference_price)
    }

    // ----- new orders --------------------------------------------------

    fn handle_new_order(&mut self, o: &NewOrder, out: &mut Events) {
        let reject = |out: &mut Events, reason| {
            out.push(Event::Rejected {
                target: RejectTarget::ClientOrder(o.client_order_id),
                reason,
            })
        };
        let owner_slot = self.owner_index.get(o.owner.0 as u128);
        if let Some(os) = owner_slot {
            let ow = &self.owners[os as usize];
            if self
                .coids
                .contains(&ow.coids, o.owner.0, o.client_order_id.0)
            {
                return reject(out, RejectReason::DuplicateClientOrderId);
            }
        }
        let Some(inst) = self.inst_slot(o.instrument) else {
            return reject(out, RejectReason::UnknownInstrument);
        };
        let spec = self.instruments[inst as usize].spec;
        // Price, then trigger price.
        let price_ok = match (o.order_type.has_price(), o.price) {
            (true, Some(p)) => p.0 > 0 && p.0 % spec.tick == 0,
            (false, None) => true,
            _ => false,
        };
        let trigger_ok = match (o.order_type.has_trigger(), o.trigger_price) {
            (true, Some(p)) => p.0 > 0 && p.0 % spec.tick == 0,
            (false, None) => true,
            _ => false,
        };
        if !price_ok || !trigger_ok {
            return reject(out, RejectReason::InvalidPrice);
        }
        let qty = o.qty.0;
        if qty == 0 || qty < spec.qty_min || qty > spec.qty_max {
            return reject(out, RejectReason::InvalidQty);
        }
        if let Some(d) = o.display_qty {
            let resting_type = o.order_type.has_price();
            if !resting_type || d.0 < spec.qty_min || d.0 > qty {
                return reject(out, RejectReason::InvalidQty);
            }
        }
        let price = o.price.unwrap_or(Price(0));
        if (price.0 as u128) * (qty as u128) > u64::MAX as u128
            || (qty as u128) * (spec.lot_size as u128) > u64::MAX as u128
        {
            return reject(out, RejectReason::Overflow);
        }
        let instr = &self.instruments[inst as usize];
        let (mut pay, mut recv) = (NO_ACCOUNT, NO_ACCOUNT);
        if spec.settle {
            let base = self.ledger.trading_account(o.owner, instr.base_asset);
            let quote = self.ledger.trading_account(o.owner, instr.quote_asset);
            let (Some(base), Some(quote)) = (base, quote) else {
                return reject(out, RejectReason::UnknownOwner);
            };
            (pay, recv) = match o.side {
                Side::Buy => (quote, base),
                Side::Sell => (base, quote),
            };
        }
        if instr.halted.is_some() {
            return reject(out, RejectReason::InstrumentHalted);
        }
        let reference = self.reference(inst);
        if o.order_type.has_price() && !in_band(&spec, reference, price) {
            return reject(out, RejectReason::PriceOutOfBand);
        }
        // A settling buy without a limit holds at the band's upper edge: no band, no order.
        let hold_price = match (o.side, o.order_type.has_price()) {
            (Side::Buy, true) => price,
            (Side::Buy, false) if spec.settle => match band_edge(&spec, reference, Side::Buy) {
                Some(edge) => edge,
                None => return reject(out, RejectReason::PriceOutOfBand),
            },
            _ => Price(0),
        };
        // Per-owner limits.
        if let Some(max) = spec.open_orders_max {
            let open = owner_slot
                .and_then(|s| self.open_counts.get(open_key(s, inst)))
                .unwrap_or(0);
            if open >= max {
                return reject(out, RejectReason::LimitExceeded);
            }
        }
        if let Some(max) = spec.notional_max {
            let unit = if o.order_type.has_price() {
                Some(price)
            } else {
                band_edge(&spec, reference, o.side)
            };
            match unit {
                Some(p) if (p.0 as u128) * (qty as u128) <= max as u128 => {}
                _ => return reject(out, RejectReason::LimitExceeded),
            }
        }
        // Capacities fixed at start-up.
        let needs_level = o.order_type == OrderType::Limit
            && matches!(o.tif, Tif::Gtc | Tif::Gtd)
            && self.find_level(inst, o.side, price).is_none()
            && self.side_levels(inst, o.side).len() >= self.cfg.levels_max as usize;
        let needs_stop_slot = o.order_type.has_trigger()
            && self.stop_list(inst, o.side).len() >= self.cfg.stops_max as usize;
        if self.order_free.is_empty() && self.orders.len() >= self.orders.capacity()
            || (owner_slot.is_none() && self.owners.len() >= self.cfg.owners_max as usize)
            || self.coids.is_full()
            || needs_level
            || needs_stop_slot
        {
            return reject(out, RejectReason::CapacityExceeded);
        }
        let mut hold = 0u128;
        if spec.settle {
            if o.side == Side::Buy && (hold_price.0 as u128) * (qty as u128) > u64::MAX as u128 {
                return reject(out, RejectReason::Overflow);
            }
            if !self.ledger_headroom(&[pay, recv, self.instruments[inst as usize].fee_slot]) {
                return reject(out, RejectReason::Overflow);
            }
            hold = need_of(&spec, o.side, hold_price, qty, 0);
            let a = &self.ledger.accounts[pay as usize];
            if a.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS) && a.available() < hold {
                return reject(out, RejectReason::InsufficientFunds);
            }
        }
        if o.post_only && (o.order_type != OrderType::Limit || self.crosses(inst, o.side, price)) {
            return reject(out, RejectReason::PostOnlyWouldCross);
        }
        if o.tif == Tif::Fok {
            let bounds = match o.order_type {
                OrderType::Limit => Bounds::limit(o.side, price),
                OrderType::Market => Bounds::market(&spec, reference, hold_price),
                // A stop with FOK is decided when it fires (see fire_stop).
                _ => Bounds::ANY,
            };
            if !o.order_type.has_trigger()
                && !self.fok_fillable(inst, o.side, o.owner, o.stp, qty, bounds)
            {
                return reject(out, RejectReason::FokNotFillable);
            }
        }

        // Accepted: from here on the order exists.
        let owner_slot = match owner_slot {
            Some(s) => s,
            None => {
                let s = self.owners.len() as u32;
                self.owners.push(Owner {
                    id: o.owner,
                    head: NIL,
                    tail: NIL,
                    coids: OwnerCoids::default(),
                });
                self.owner_index.insert(o.owner.0 as u128, s);
                s
            }
        };
        let ow = &mut self.owners[owner_slot as usize];
        self.coids
            .insert(&mut ow.coids, o.owner.0, o.client_order_id.0);
        let id = OrderId(self.next_order_id);
        self.next_order_id += 1;
        let display = o.display_qty.unwrap_or(Qty(0));
        let slot = self.alloc_order(
            Order {
                id,
                coid: o.client_order_id,
                price,
                remaining: o.qty,
                visible: if display.0 > 0 { display } else { o.qty },
                inst,
                level: NIL,
                owner_slot,
                pay,
                side: o.side,
                otype: o.order_type,
                tif: o.tif,
                stp: o.stp,
                post_only: o.post_only,
                state: OrderState::Active,
                iceberg: display.0 > 0,
                cold_set: false,
            },
            OrderCold {
                trigger: o.trigger_price.unwrap_or(Price(0)),
                expire_at: if o.tif == Tif::Gtd {
                    o.expire_at.unwrap_or(Timestamp(0))
                } else {
                    Timestamp(u64::MAX)
                },
                display,
                hold_price,
                heap_pos: NIL,
                recv,
                hold,
                fee_acc: 0,
            },
        );
        if pay != NO_ACCOUNT {
            self.ledger.hold_add(pay, hold);
        }
        self.link_owner(slot);
        out.push(Event::Accepted {
            order_id: id,
            client_order_id: o.client_order_id,
            owner: o.owner,
            instrument: o.instrument,
            side: o.side,
            price: if o.order_type.has_price() {
                Some(price)
            } else {
                None
            },
            qty: o.qty,
        });

        if o.order_type.has_trigger() {
            let trig = self.cold_of(slot).trigger;
            let fires_now = match self.instruments[inst as usize].last_trade {
                Some(last) => stop_condition(o.side, trig, last),
                None => false,
            };
            if fires_now {
                self.fire_stop(slot, out);
            } else if o.tif == Tif::Gtd && self.cold_of(slot).expire_at <= self.now {
                // Arrived already expired and cannot trade: it ends at once (convention 4).
                out.push(Event::Canceled {
                    order_id: id,
                    owner: o.owner,
                    qty: o.qty,
                    reason: CancelReason::Expired,
                });
                self.end_order(slot);
            } else {
                self.park_stop(slot);
            }
        } else {
            self.run_taker(slot, out);
        }
        self.drain_fire_queue(out);
    }

    /// Matches an active order, then rests it or ends it.
    fn run_taker(&mut self, slot: u32, out: &mut Events) {
        let bounds = self.taker_bounds(slot);
        let end = self.match_order(slot, bounds, out);
        self.finish_taker(slot, end, out);
    }

    /// The prices an active order accepts as it starts matching now (the band
    /// is computed from the current reference; a settling buy never pays more
    /// per lot than its hold covers).
    fn taker_bounds(&self, slot: u32) -> Bounds {
        let o = &self.orders[slot as usize];
        match o.otype {
            OrderType::Limit | OrderType::StopLimit => Bounds::limit(o.side, o.price),
            OrderType::Market | OrderType::Stop => Bounds::market(
                &self.instruments[o.inst as usize].spec,
                self.reference(o.inst),
                self.cold_of(slot).hold_price,
            ),
        }
    }

    fn finish_taker(&mut self, slot: u32, end: MatchEnd, out: &mut Events) {
        self.sync_hold(slot);
        let o = self.orders[slot as usize];
        match end {
            MatchEnd::TakerCanceled => return self.end_order(slot),
            MatchEnd::Halted => {
                if o.remaining.0 > 0 {
                    return self.cancel_rest(slot, &o, CancelReason::CircuitBreaker, out);
                }
                return self.end_order(slot);
            }
            MatchEnd::Done => {}
        }
        if o.remaining.0 == 0 {
            return self.end_order(slot);
        }
        let reason = if matches!(o.otype, OrderType::Market | OrderType::Stop)
            || matches!(o.tif, Tif::Ioc | Tif::Fok)
        {
            Some(CancelReason::IocRemainder)
        } else if o.tif == Tif::Gtd && self.cold_of(slot).expire_at <= self.now {
            Some(CancelReason::Expired)
        } else if self.find_level(o.inst, o.side, o.price).is_none()
            && self.side_levels(o.inst, o.side).len() >= self.cfg.levels_max as usize
        {
            Some(CancelReason::CapacityExceeded)
        } else {
            None
        };
        match reason {
            Some(reason) => self.cancel_rest(slot, &o, reason, out),
            None => self.rest(slot),
        }
    }

    /// Cancels what is left of `o` (the order at `slot`) for `reason`, then ends it.
    #[inline]
    fn cancel_rest(&mut self, slot: u32, o: &Order, reason: CancelReason, out: &mut Events) {
        out.push(Event::Canceled {
            order_id: o.id,
            owner: self.owners[o.owner_slot as usize].id,
            qty: o.remaining,
            reason,
        });
        self.end_order(slot);
    }

    /// Fires a triggered stop: `triggered`, then it matches as market or limit.
    fn fire_stop(&mut self, slot: u32, out: &mut Events) {
        self.orders[slot as usize].state = OrderState::Active;
        let o = self.orders[slot as usize];
        out.push(Event::Triggered {
            order_id: o.id,
            owner: self.owners[o.owner_slot as usize].id,
        });
        if self.instruments[o.inst as usize].halted.is_some() {
            // Triggered by a trade just before a circuit-breaker halt.
            return self.cancel_rest(slot, &o, CancelReason::CircuitBreaker, out);
        }
        if o.tif == Tif::Fok
            && !self.fok_fillable(
                o.inst,
                o.side,
                self.owners[o.owner_slot as usize].id,
                o.stp,
                o.remaining.0,
                self.taker_bounds(slot),
            )
        {
            return self.cancel_rest(slot, &o, CancelReason::IocRemainder, out);
        }
        self.run_taker(slot, out);
    }

    fn drain_fire_queue(&mut self, out: &mut Events) {
        self.flush_triggered();
        while let Some(slot) = self.fire_queue.pop_front() {
            self.fire_stop(slot, out);
            self.flush_triggered();
        }
    }

    /// Moves the stops triggered during the last match to the fire queue.
    fn flush_triggered(&mut self) {
        for &s in &self.triggered_batch {
            self.fire_queue.push_back(s);
        }
        self.triggered_batch.clear();
    }

    // ----- matching ----------------------------------------------------

    /// Whether a would-be trade at `price` trips the circuit breaker. Sets the
    /// window anchor on first use of a window.
    fn circuit_trips(&mut self, inst: u32, price: Price) -> bool {
        let now = self.now.0;
        let i = &mut self.instruments[inst as usize];
        let Some(bps) = i.spec.circuit_bps else {
            return false;
        };
        let k = now / i.spec.circuit_window_ns;
        if i.window != Some(k) {
            i.window = Some(k);
            i.anchor = i.last_trade.unwrap_or(i.spec.reference_price);
        }
        let diff = price.0.abs_diff(i.anchor.0) as u128;
        diff * BPS > i.anchor.0 as u128 * bps as u128
    }

    /// The same test without touching state (for FOK trials).
    fn circuit_would_trip(&self, inst: u32, price: Price) -> bool {
        let i = &self.instruments[inst as usize];
        let Some(bps) = i.spec.circuit_bps else {
            return false;
        };
        let k = self.now.0 / i.spec.circuit_window_ns;
        let anchor = if i.window == Some(k) {
            i.anchor
        } else {
            i.last_trade.unwrap_or(i.spec.reference_price)
        };
        let diff = price.0.abs_diff(anchor.0) as u128;
        diff * BPS > anchor.0 as u128 * bps as u128
    }

    /// Matches the active order in `slot` against the opposite side while
    /// prices are acceptable.
    fn match_order(&mut self, slot: u32, bounds: Bounds, out: &mut Events) -> MatchEnd {
        let t = self.orders[slot as usize];
        let inst = t.inst;
        let instrument_id = self.instruments[inst as usize].spec.id;
        let mut remaining = t.remaining.0;
        let result = loop {
            if remaining == 0 {
                break MatchEnd::Done;
            }
            let Some(best) = self.side_levels(inst, t.side.opposite()).last().copied() else {
                break MatchEnd::Done;
            };
            let lslot = best.slot;
            let price = self.levels[lslot as usize].price;
            if !bounds.admits(price) {
                break MatchEnd::Done;
            }
            let mut m = self.levels[lslot as usize].head;
            let mut ended: Option<MatchEnd> = None;
            while m != NIL && remaining > 0 {
                let maker = self.orders[m as usize];
                let next = self.links[m as usize].next;
                if maker.owner_slot == t.owner_slot && t.stp != Stp::None {
                    match t.stp {
                        Stp::CancelMaker => {
                            out.push(Event::Canceled {
                                order_id: maker.id,
                                owner: self.owners[maker.owner_slot as usize].id,
                                qty: maker.remaining,
                                reason: CancelReason::Stp,
                            });
                            self.end_order(m);
                        }
                        Stp::CancelTaker | Stp::CancelBoth => {
                            if t.stp == Stp::CancelBoth {
                                out.push(Event::Canceled {
                                    order_id: maker.id,
                                    owner: self.owners[maker.owner_slot as usize].id,
                                    qty: maker.remaining,
                                    reason: CancelReason::Stp,
                                });
                                self.end_order(m);
                            }
                            out.push(Event::Canceled {
                                order_id: t.id,
                                owner: self.owners[t.owner_slot as usize].id,
                                qty: Qty(remaining),
                                reason: CancelReason::Stp,
                            });
                            remaining = 0;
                            ended = Some(MatchEnd::TakerCanceled);
                            break;
                        }
                        Stp::Decrement => {
                            let x = remaining.min(maker.visible.0);
                            self.reduce_resting(m, x, out, true);
                            remaining -= x;
                            if remaining == 0 {
                                out.push(Event::Canceled {
                                    order_id: t.id,
                                    owner: self.owners[t.owner_slot as usize].id,
                                    qty: Qty(x),
                                    reason: CancelReason::Stp,
                                });
                                ended = Some(MatchEnd::TakerCanceled);
                                break;
                            }
                            out.push(Event::Reduced {
                                order_id: t.id,
                                owner: self.owners[t.owner_slot as usize].id,
                                qty: Qty(x),
                                reason: CancelReason::Stp,
                            });
                        }
                        Stp::None => unreachable!(),
                    }
                    m = next;
                    continue;
                }
                if self.circuit_trips(inst, price) {
                    let i = &mut self.instruments[inst as usize];
                    i.halted = Some(HaltReason::CircuitBreaker);
                    out.push(Event::Halted {
                        instrument: instrument_id,
                        reason: HaltReason::CircuitBreaker,
                    });
                    ended = Some(MatchEnd::Halted);
                    break;
                }
                let fill = remaining.min(maker.visible.0);
                out.push(Event::Trade {
                    instrument: instrument_id,
                    price,
                    qty: Qty(fill),
                    maker_order_id: maker.id,
                    taker_order_id: t.id,
                    maker_owner: self.owners[maker.owner_slot as usize].id,
                    taker_owner: self.owners[t.owner_slot as usize].id,
                    taker_side: t.side,
                });
                remaining -= fill;
                self.instruments[inst as usize].last_trade = Some(price);
                if maker.pay != NO_ACCOUNT {
                    self.settle_fill(m, slot, price, fill);
                }
                self.collect_triggered(inst, price);
                self.reduce_resting(m, fill, out, false);
                m = next;
            }
            if let Some(e) = ended {
                break e;
            }
        };
        let visible = if t.iceberg {
            self.cold_of(slot).display.0.min(remaining)
        } else {
            remaining
        };
        let om = &mut self.orders[slot as usize];
        om.remaining = Qty(remaining);
        om.visible = Qty(visible);
        result
    }

    /// Takes `x` from a resting order's visible part (a fill, or an STP
    /// decrement when `stp`): ends it at zero, replenishes an iceberg at the
    /// back of its level when its slice is used up.
    fn reduce_resting(&mut self, m: u32, x: u64, out: &mut Events, stp: bool) {
        let (lslot, id) = {
            let o = &mut self.orders[m as usize];
            o.visible.0 -= x;
            o.remaining.0 -= x;
            (o.level, o.id)
        };
        self.levels[lslot as usize].qty.0 -= x;
        self.sync_hold(m);
        let o = self.orders[m as usize];
        if o.remaining.0 == 0 {
            if stp {
                out.push(Event::Canceled {
                    order_id: id,
                    owner: self.owners[o.owner_slot as usize].id,
                    qty: Qty(x),
                    reason: CancelReason::Stp,
                });
            }
            self.end_order(m);
            return;
        }
        if stp {
            out.push(Event::Reduced {
                order_id: id,
                owner: self.owners[o.owner_slot as usize].id,
                qty: Qty(x),
                reason: CancelReason::Stp,
            });
        }
        if o.visible.0 == 0 {
            // Iceberg: the next slice goes to the back of the queue.
            let slice = self.cold_of(m).display.0.min(o.remaining.0);
            self.orders[m as usize].visible = Qty(slice);
            self.levels[lslot as usize].qty.0 += slice;
            self.unlink_level(m);
            self.push_level_tail(lslot, m);
        }
    }

    /// Buy stops fire when the trade price ≥ trigger, sell stops when ≤. The
    /// stops one trade triggers join the batch in acceptance (order id) order.
    fn collect_triggered(&mut self, inst: u32, price: Price) {
        let start = self.triggered_batch.len();
        let i = &mut self.instruments[inst as usize];
        // Buy stops: key = !trigger; fires when trigger <= price ⇔ key >= !price.
        while let Some(e) = i.buy_stops.last() {
            if e.key >= !price.0 {
                self.triggered_batch.push(e.slot);
                i.buy_stops.pop();
            } else {
                break;
            }
        }
        while let Some(e) = i.sell_stops.last() {
            if e.key >= price.0 {
                self.triggered_batch.push(e.slot);
                i.sell_stops.pop();
            } else {
                break;
            }
        }
        if self.triggered_batch.len() > start {
            for &s in &self.triggered_batch[start..] {
                self.orders[s as usize].state = OrderState::Active;
            }
            let orders = &self.orders;
            self.triggered_batch[start..].sort_unstable_by_key(|&s| orders[s as usize].id);
        }
    }

    /// FOK trial: would an incoming order fill `qty` entirely under the same
    /// STP, limit/band and circuit rules, walking queues as matching does?
    fn fok_fillable(
        &self,
        inst: u32,
        side: Side,
        owner: OwnerId,
        stp: Stp,
        qty: u64,
        bounds: Bounds,
    ) -> bool {
        let mut need = qty;
        for e in self.side_levels(inst, side.opposite()).iter().rev() {
            let l = &self.levels[e.slot as usize];
            if !bounds.admits(l.price) {
                return false;
            }
            // Orders ahead of a blocking self-order give only their visible
            // slices before the taker meets it (icebergs replenish behind it).
            let mut visible_ahead = 0u64;
            let mut total = 0u64;
            let mut blocked = false;
            let mut m = l.head;
            while m != NIL {
                let o = &self.orders[m as usize];
                if self.owners[o.owner_slot as usize].id == owner && stp != Stp::None {
                    if stp == Stp::CancelMaker {
                        m = self.links[m as usize].next;
                        continue;
                    }
                    blocked = true;
                    break;
                }
                visible_ahead = visible_ahead.saturating_add(o.visible.0);
                total = total.saturating_add(o.remaining.0);
                m = self.links[m as usize].next;
            }
            let takes = if blocked { visible_ahead } else { total };
            if takes > 0 && self.circuit_would_trip(inst, l.price) {
                return false;
            }
            if need <= takes {
                return true;
            }
            if blocked {
                return false;
            }
            need -= takes;
        }
        false
    }

    fn crosses(&self, inst: u32, side: Side, price: Price) -> bool {
        match self.side_levels(inst, side.opposite()).last() {
            None => false,
            Some(e) => {
                let best = self.levels[e.slot as usize].price;
                match side {
                    Side::Buy => best <= price,
                    Side::Sell => best >= price,
                }
            }
        }
    }

    // ----- settlement on the ledger ---------------------------------------

    /// What an order's hold must reserve now.
    fn need(&self, slot: u32) -> u128 {
        let o = &self.orders[slot as usize];
        if o.pay == NO_ACCOUNT {
            return 0;
        }
        let c = self.cold_of(slot);
        need_of(
            &self.instruments[o.inst as usize].spec,
            o.side,
            c.hold_price,
            o.remaining.0,
            c.fee_acc,
        )
    }

    /// Brings an order's hold to what it still needs (releasing price
    /// improvement, reduced quantity and unused fee reserve, or adding for a
    /// replace whose funds were checked).
    fn sync_hold(&mut self, slot: u32) {
        let pay = self.orders[slot as usize].pay;
        if pay == NO_ACCOUNT {
            return;
        }
        let need = self.need(slot);
        let hold = self.cold_of(slot).hold;
        if need < hold {
            self.ledger.hold_release(pay, hold - need);
        } else {
            self.ledger.hold_add(pay, need - hold);
        }
        self.cold[slot as usize].hold = need;
    }

    /// Settles one fill at once: base from seller to buyer, quote from buyer
    /// to seller less the seller's fee, both fees to the fee account (fees
    /// cumulative per order, convention 17). Holds are brought down by
    /// `sync_hold` (maker: in `reduce_resting`; taker: in `finish_taker`).
    fn settle_fill(&mut self, maker: u32, taker: u32, price: Price, qty: u64) {
        let (mk, tk) = (self.orders[maker as usize], self.orders[taker as usize]);
        let (mkc, tkc) = (self.cold_of(maker), self.cold_of(taker));
        let spec = &self.instruments[mk.inst as usize].spec;
        let fee_slot = self.instruments[mk.inst as usize].fee_slot;
        let notional = price.0 as u128 * qty as u128;
        let base = qty as u128 * spec.lot_size as u128;
        let (maker_bps, taker_bps) = (spec.maker_fee_bps as u128, spec.taker_fee_bps as u128);
        let maker_fee = fee_delta(mkc.fee_acc, notional * maker_bps);
        let taker_fee = fee_delta(tkc.fee_acc, notional * taker_bps);
        self.cold[maker as usize].fee_acc += notional * maker_bps;
        self.cold[taker as usize].fee_acc += notional * taker_bps;
        // (pay, recv) of each side.
        let (buyer, seller, buyer_fee, seller_fee) = match tk.side {
            Side::Buy => ((tk.pay, tkc.recv), (mk.pay, mkc.recv), taker_fee, maker_fee),
            Side::Sell => ((mk.pay, mkc.recv), (tk.pay, tkc.recv), maker_fee, taker_fee),
        };
        // Accounts: buyer.pay = buyer's quote, buyer.recv = buyer's base,
        // seller.pay = seller's base, seller.recv = seller's quote.
        self.ledger.post(seller.0, buyer.1, base);
        self.ledger.post(buyer.0, seller.1, notional - seller_fee);
        if buyer_fee + seller_fee > 0 {
            self.ledger.post(buyer.0, fee_slot, buyer_fee + seller_fee);
        }
    }

    /// Whether the accounts a settling order touches have room for any fill
    /// (counters far below u128::MAX), so settlement can never overflow.
    fn ledger_headroom(&self, slots: &[u32]) -> bool {
        const ROOM: u128 = 1 << 120;
        slots.iter().filter(|&&s| s != NO_ACCOUNT).all(|&s| {
            let a = &self.ledger.accounts[s as usize];
            a.debits_posted < ROOM
                && a.credits_posted < ROOM
                && a.debits_pending < ROOM
                && a.credits_pending < ROOM
        })
    }

    // ----- cancel, replace, mass cancel -------------------------------

    fn handle_cancel(&mut self, owner: OwnerId, id: OrderId, out: &mut Events) {
        let reject = |out: &mut Events, reason| {
            out.push(Event::Rejected {
                target: RejectTarget::Order(id),
                reason,
            })
        };
        let Some(slot) = self.order_index.get(id.0, |s| self.orders[s as usize].id.0) else {
            return reject(out, RejectReason::UnknownOrder);
        };
        let o = self.orders[slot as usize];
        if self.owners[o.owner_slot as usize].id != owner {
            return reject(out, RejectReason::NotOrderOwner);
        }
        out.push(Event::Canceled {
            order_id: id,
            owner: self.owners[o.owner_slot as usize].id,
            qty: o.remaining,
            reason: CancelReason::User,
        });
        self.end_order(slot);
    }

    fn handle_replace(
        &mut self,
        owner: OwnerId,
        id: OrderId,
        new_price: Option<Price>,
        new_qty: Option<Qty>,
        out: &mut Events,
    ) {
        let reject = |out: &mut Events, reason| {
            out.push(Event::Rejected {
                target: RejectTarget::Order(id),
                reason,
            })
        };
        let Some(slot) = self.order_index.get(id.0, |s| self.orders[s as usize].id.0) else {
            return reject(out, RejectReason::UnknownOrder);
        };
        let o = self.orders[slot as usize];
        if o.state != OrderState::Resting {
            return reject(out, RejectReason::UnknownOrder);
        }
        if self.owners[o.owner_slot as usize].id != owner {
            return reject(out, RejectReason::NotOrderOwner);
        }
        let spec = self.instruments[o.inst as usize].spec;
        let price = new_price.unwrap_or(o.price);
        if price.0 == 0 || !price.0.is_multiple_of(spec.tick) {
            return reject(out, RejectReason::InvalidPrice);
        }
        let qty = new_qty.unwrap_or(o.remaining);
        // A replace that names nothing to change is refused at the qty check
        // (ARCHITECTURE.md, semantics 17).
        let nothing = new_price.is_none() && new_qty.is_none();
        if nothing || qty.0 == 0 || qty.0 < spec.qty_min || qty.0 > spec.qty_max {
            return reject(out, RejectReason::InvalidQty);
        }
        if (price.0 as u128) * (qty.0 as u128) > u64::MAX as u128
            || (qty.0 as u128) * (spec.lot_size as u128) > u64::MAX as u128
        {
            return reject(out, RejectReason::Overflow);
        }
        if self.instruments[o.inst as usize].halted.is_some() {
            return reject(out, RejectReason::InstrumentHalted);
        }
        let price_changed = price != o.price;
        if price_changed && !in_band(&spec, self.reference(o.inst), price) {
            return reject(out, RejectReason::PriceOutOfBand);
        }
        if let Some(max) = spec.notional_max {
            if (price.0 as u128) * (qty.0 as u128) > max as u128 {
                return reject(out, RejectReason::LimitExceeded);
            }
        }
        if price_changed && self.find_level(o.inst, o.side, price).is_none() {
            let frees_one = self.levels[o.level as usize].count == 1;
            let len = self.side_levels(o.inst, o.side).len() - frees_one as usize;
            if len >= self.cfg.levels_max as usize {
                return reject(out, RejectReason::CapacityExceeded);
            }
        }
        let c = self.cold_of(slot);
        let new_hold_price = if o.side == Side::Buy { price } else { Price(0) };
        let new_hold = if o.pay != NO_ACCOUNT {
            need_of(&spec, o.side, new_hold_price, qty.0, c.fee_acc)
        } else {
            0
        };
        if new_hold > c.hold {
            let a = &self.ledger.accounts[o.pay as usize];
            if a.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
                && a.available() < new_hold - c.hold
            {
                return reject(out, RejectReason::InsufficientFunds);
            }
        }
        if o.post_only && self.crosses(o.inst, o.side, price) {
            return reject(out, RejectReason::PostOnlyWouldCross);
        }
        if price_changed {
            // The plain cold part follows the price; the hold price must not.
            self.keep_cold(slot);
        }
        if o.pay != NO_ACCOUNT {
            self.cold[slot as usize].hold_price = new_hold_price;
        }
        if !price_changed && qty <= o.remaining {
            // Priority kept: shrink in place (hidden part first for icebergs).
            let vis = o.visible.min(qty);
            self.levels[o.level as usize].qty.0 -= o.visible.0 - vis.0;
            let om = &mut self.orders[slot as usize];
            om.remaining = qty;
            om.visible = vis;
            self.sync_hold(slot);
            out.push(Event::Replaced {
                order_id: id,
                owner: self.owners[o.owner_slot as usize].id,
                price,
                qty,
                priority_kept: true,
            });
            return;
        }
        // Priority lost: out of its level, new terms, then in as if incoming.
        self.unlink_from_book(slot);
        {
            let om = &mut self.orders[slot as usize];
            om.price = price;
            om.remaining = qty;
            om.visible = if c.display.0 > 0 {
                Qty(c.display.0.min(qty.0))
            } else {
                qty
            };
            om.state = OrderState::Active;
        }
        self.sync_hold(slot);
        out.push(Event::Replaced {
            order_id: id,
            owner: self.owners[o.owner_slot as usize].id,
            price,
            qty,
            priority_kept: false,
        });
        self.run_taker(slot, out);
        self.drain_fire_queue(out);
    }

    fn handle_mass_cancel(
        &mut self,
        owner: OwnerId,
        instrument: Option<InstrumentId>,
        side: Option<Side>,
        out: &mut Events,
    ) {
        let Ok(inst) = self.inst_filter(instrument, out) else {
            return;
        };
        let Some(os) = self.owner_index.get(owner.0 as u128) else {
            return;
        };
        let mut m = self.owners[os as usize].head;
        while m != NIL {
            let o = self.orders[m as usize];
            let next = self.links[m as usize].onext;
            if inst.is_none_or(|i| i == o.inst) && side.is_none_or(|s| s == o.side) {
                out.push(Event::Canceled {
                    order_id: o.id,
                    owner: self.owners[o.owner_slot as usize].id,
                    qty: o.remaining,
                    reason: CancelReason::MassCancel,
                });
                self.end_order(m);
            }
            m = next;
        }
    }

    fn handle_query_open_orders(
        &mut self,
        owner: OwnerId,
        instrument: Option<InstrumentId>,
        out: &mut Events,
    ) {
        let Ok(inst) = self.inst_filter(instrument, out) else {
            return;
        };
        let Some(os) = self.owner_index.get(owner.0 as u128) else {
            return;
        };
        let mut m = self.owners[os as usize].head;
        while m != NIL {
            let o = &self.orders[m as usize];
            if inst.is_none_or(|i| i == o.inst) {
                let waiting = o.state == OrderState::Stop;
                out.push(Event::OpenOrder {
                    order_id: o.id,
                    owner: self.owners[o.owner_slot as usize].id,
                    client_order_id: o.coid,
                    instrument: self.instruments[o.inst as usize].spec.id,
                    side: o.side,
                    price: o.otype.has_price().then_some(o.price),
                    remaining: o.remaining,
                    visible: if waiting { Qty(0) } else { o.visible },
                    waiting_stop: waiting,
                });
            }
            m = self.links[m as usize].onext;
        }
    }

    // ----- expiry --------------------------------------------------------

    fn expire(&mut self, out: &mut Events) {
        while let Some(&top) = self.heap.first() {
            if self.cold_of(top).expire_at > self.now {
                break;
            }
            let o = self.orders[top as usize];
            out.push(Event::Canceled {
                order_id: o.id,
                owner: self.owners[o.owner_slot as usize].id,
                qty: o.remaining,
                reason: CancelReason::Expired,
            });
            self.end_order(top);
        }
    }

    // ----- order lifecycle ------------------------------------------------

    /// An order's cold part (stored, or the plain one).
    #[inline]
    fn cold_of(&self, slot: u32) -> OrderCold {
        let o = &self.orders[slot as usize];
        if o.cold_set {
            self.cold[slot as usize]
        } else {
            plain_cold(o)
        }
    }

    /// Whether an order with these parts must keep its cold part: it differs
    /// from the plain one, or may change (holds, fees, heap position).
    fn needs_cold(o: &Order, c: &OrderCold) -> bool {
        o.pay != NO_ACCOUNT || o.tif == Tif::Gtd || *c != plain_cold(o)
    }

    /// Stores an order's cold part from here on (before a change that the
    /// plain one cannot describe).
    fn keep_cold(&mut self, slot: u32) {
        if !self.orders[slot as usize].cold_set {
            self.cold[slot as usize] = self.cold_of(slot);
            self.orders[slot as usize].cold_set = true;
        }
    }

    fn alloc_order(&mut self, mut o: Order, c: OrderCold) -> u32 {
        o.cold_set = Self::needs_cold(&o, &c);
        let slot = match self.order_free.pop() {
            Some(s) => {
                self.orders[s as usize] = o;
                if o.cold_set {
                    self.cold[s as usize] = c;
                }
                self.links[s as usize] = NO_LINKS;
                s
            }
            None => {
                assert!(
                    self.orders.len() < self.orders.capacity(),
                    "order pool exhausted past the capacity check"
                );
                self.orders.push(o);
                self.cold.push(c);
                self.links.push(NO_LINKS);
                (self.orders.len() - 1) as u32
            }
        };
        let ok = self.order_index.insert(o.id.0, slot);
        assert!(ok, "order index sized to orders_max");
        if self.instruments[o.inst as usize]
            .spec
            .open_orders_max
            .is_some()
        {
            let key = open_key(o.owner_slot, o.inst);
            let n = self.open_counts.get(key).unwrap_or(0);
            let ok = self.open_counts.insert(key, n + 1);
            assert!(ok, "open counts sized to orders_max");
        }
        if o.tif == Tif::Gtd {
            self.heap_push(slot);
        }
        slot
    }

    /// Removes a live order from every structure and frees its slot. The
    /// caller has already reported why.
    fn end_order(&mut self, slot: u32) {
        let o = self.orders[slot as usize];
        if o.pay != NO_ACCOUNT {
            self.ledger.hold_release(o.pay, self.cold_of(slot).hold);
        }
        match o.state {
            OrderState::Resting => self.unlink_from_book(slot),
            OrderState::Stop => self.remove_stop(slot),
            OrderState::Active => {}
            OrderState::Free => panic!("end_order on a free slot {slot}"),
        }
        // A triggered stop may still sit in the fire queue or batch only
        // while Active, and Active orders are never ended from outside.
        self.unlink_owner(slot);
        // Every live GTD order, and only those, is in the expiry heap.
        if o.tif == Tif::Gtd {
            self.heap_remove(slot);
        }
        if self.instruments[o.inst as usize]
            .spec
            .open_orders_max
            .is_some()
        {
            let key = open_key(o.owner_slot, o.inst);
            match self.open_counts.get(key) {
                Some(1) => {
                    self.open_counts.remove(key);
                }
                Some(n) => {
                    self.open_counts.insert(key, n - 1);
                }
                None => panic!("open count missing for live order {}", o.id),
            }
        }
        let removed = self.order_index.remove(o.id.0, slot);
        assert!(removed, "order index out of step");
        // The cold part is left as it is: nothing reads a free slot's.
        self.orders[slot as usize] = Order::default();
        self.order_free.push(slot);
    }

    fn rest(&mut self, slot: u32) {
        let o = self.orders[slot as usize];
        let lslot = match self.find_level(o.inst, o.side, o.price) {
            Some((_, l)) => l,
            None => self.insert_level(o.inst, o.side, o.price),
        };
        self.orders[slot as usize].state = OrderState::Resting;
        self.levels[lslot as usize].qty.0 += o.visible.0;
        self.push_level_tail(lslot, slot);
    }

    fn park_stop(&mut self, slot: u32) {
        let o = self.orders[slot as usize];
        self.orders[slot as usize].state = OrderState::Stop;
        let key = stop_key(o.side, self.cold_of(slot).trigger);
        let list = self.stop_list_mut(o.inst, o.side);
        let pos = list.partition_point(|e| e.key < key);
        assert!(
            list.len() < list.capacity(),
            "stop list full past the capacity check"
        );
        list.insert(pos, Entry { key, slot });
    }

    fn remove_stop(&mut self, slot: u32) {
        let o = self.orders[slot as usize];
        let key = stop_key(o.side, self.cold_of(slot).trigger);
        let list = self.stop_list_mut(o.inst, o.side);
        let start = list.partition_point(|e| e.key < key);
        let off = list[start..]
            .iter()
            .position(|e| e.slot == slot)
            .expect("waiting stop missing from its list");
        list.remove(start + off);
    }

    fn side_levels(&self, inst: u32, side: Side) -> &Vec<Entry> {
        let i = &self.instruments[inst as usize];
        match side {
            Side::Buy => &i.bids,
            Side::Sell => &i.asks,
        }
    }

    fn side_levels_mut(&mut self, inst: u32, side: Side) -> &mut Vec<Entry> {
        let i = &mut self.instruments[inst as usize];
        match side {
            Side::Buy => &mut i.bids,
            Side::Sell => &mut i.asks,
        }
    }

    fn stop_list(&self, inst: u32, side: Side) -> &Vec<Entry> {
        let i = &self.instruments[inst as usize];
        match side {
            Side::Buy => &i.buy_stops,
            Side::Sell => &i.sell_stops,
        }
    }

    fn stop_list_mut(&mut self, inst: u32, side: Side) -> &mut Vec<Entry> {
        let i = &mut self.instruments[inst as usize];
        match side {
            Side::Buy => &mut i.buy_stops,
            Side::Sell => &mut i.sell_stops,
        }
    }

    /// The level at `price` on `side`: (position in the side vector, level slot).
    #[inline]
    fn find_level(&self, inst: u32, side: Side, price: Price) -> Option<(usize, u32)> {
        let v = self.side_levels(inst, side);
        let key = side_key(side, price);
        // Most activity is near the top of the book: check the last few first.
        let n = v.len();
        for i in (n.saturating_sub(4)..n).rev() {
            if v[i].key == key {
                return Some((i, v[i].slot));
            }
            if v[i].key < key {
                return None;
            }
        }
        let pos = v[..n.saturating_sub(4)].partition_point(|e| e.key < key);
        if pos < n && v[pos].key == key {
            Some((pos, v[pos].slot))
        } else {
            None
        }
    }

    fn insert_level(&mut self, inst: u32, side: Side, price: Price) -> u32 {
        let lslot = match self.level_free.pop() {
            Some(s) => s,
            None => {
                assert!(
                    self.levels.len() < self.levels.capacity(),
                    "level pool exhausted"
                );
                self.levels.push(Level::default());
                (self.levels.len() - 1) as u32
            }
        };
        self.levels[lslot as usize] = Level {
            price,
            qty: Qty(0),
            count: 0,
            head: NIL,
            tail: NIL,
        };
        let key = side_key(side, price);
        let v = self.side_levels_mut(inst, side);
        assert!(
            v.len() < v.capacity(),
            "book side full past the capacity check"
        );
        let pos = v.partition_point(|e| e.key < key);
        v.insert(pos, Entry { key, slot: lslot });
        lslot
    }

    fn push_level_tail(&mut self, lslot: u32, slot: u32) {
        let tail = self.levels[lslot as usize].tail;
        self.orders[slot as usize].level = lslot;
        let l = &mut self.links[slot as usize];
        l.prev = tail;
        l.next = NIL;
        if tail == NIL {
            self.levels[lslot as usize].head = slot;
        } else {
            self.links[tail as usize].next = slot;
        }
        let l = &mut self.levels[lslot as usize];
        l.tail = slot;
        l.count += 1;
    }

    /// Unlinks an order from its level's queue (level bookkeeping of count only).
    fn unlink_level(&mut self, slot: u32) {
        let lslot = self.orders[slot as usize].level;
        let Links { prev, next, .. } = self.links[slot as usize];
        if prev == NIL {
            self.levels[lslot as usize].head = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next == NIL {
            self.levels[lslot as usize].tail = prev;
        } else {
            self.links[next as usize].prev = prev;
        }
        self.levels[lslot as usize].count -= 1;
        let l = &mut self.links[slot as usize];
        l.prev = NIL;
        l.next = NIL;
    }

    /// Takes a resting order out of the book, freeing its level if it empties.
    fn unlink_from_book(&mut self, slot: u32) {
        let (lslot, visible, inst, side, price) = {
            let o = &self.orders[slot as usize];
            (o.level, o.visible, o.inst, o.side, o.price)
        };
        self.unlink_level(slot);
        self.levels[lslot as usize].qty.0 -= visible.0;
        self.orders[slot as usize].level = NIL;
        if self.levels[lslot as usize].count == 0 {
            let (pos, _) = self
                .find_level(inst, side, price)
                .expect("resting order's level missing from its side");
            self.side_levels_mut(inst, side).remove(pos);
            self.level_free.push(lslot);
        }
    }

    fn link_owner(&mut self, slot: u32) {
        let os = self.orders[slot as usize].owner_slot;
        let tail = self.owners[os as usize].tail;
        let l = &mut self.links[slot as usize];
        l.oprev = tail;
        l.onext = NIL;
        if tail == NIL {
            self.owners[os as usize].head = slot;
        } else {
            self.links[tail as usize].onext = slot;
        }
        self.owners[os as usize].tail = slot;
    }

    fn unlink_owner(&mut self, slot: u32) {
        let os = self.orders[slot as usize].owner_slot;
        let Links { oprev, onext, .. } = self.links[slot as usize];
        if oprev == NIL {
            self.owners[os as usize].head = onext;
        } else {
            self.links[oprev as usize].onext = onext;
        }
        if onext == NIL {
            self.owners[os as usize].tail = oprev;
        } else {
            self.links[onext as usize].oprev = oprev;
        }
    }

    // ----- expiry heap (indexed binary min-heap on (expire_at, id)) ----

    fn heap_less(&self, a: u32, b: u32) -> bool {
        let (x, y) = (self.cold_of(a), self.cold_of(b));
        (x.expire_at, self.orders[a as usize].id) < (y.expire_at, self.orders[b as usize].id)
    }

    fn heap_set(&mut self, pos: usize, slot: u32) {
        self.heap[pos] = slot;
        self.cold[slot as usize].heap_pos = pos as u32;
    }

    fn heap_push(&mut self, slot: u32) {
        assert!(self.heap.len() < self.heap.capacity(), "expiry heap full");
        self.heap.push(slot);
        let pos = self.heap.len() - 1;
        self.cold[slot as usize].heap_pos = pos as u32;
        self.heap_up(pos);
    }

    fn heap_remove(&mut self, slot: u32) {
        let pos = self.cold_of(slot).heap_pos as usize;
        let last = self.heap.pop().expect("heap_remove on an empty heap");
        self.cold[slot as usize].heap_pos = NIL;
        if last != slot {
            self.heap_set(pos, last);
            self.heap_up(pos);
            let p = self.cold_of(last).heap_pos as usize;
            self.heap_down(p);
        }
    }

    fn heap_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.heap_less(self.heap[pos], self.heap[parent]) {
                let (a, b) = (self.heap[pos], self.heap[parent]);
                self.heap_set(pos, b);
                self.heap_set(parent, a);
                pos = parent;
            } else {
                break;
            }
        }
    }

    fn heap_down(&mut self, mut pos: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * pos + 1, 2 * pos + 2);
            let mut m = pos;
            if l < n && self.heap_less(self.heap[l], self.heap[m]) {
                m = l;
            }
            if r < n && self.heap_less(self.heap[r], self.heap[m]) {
                m = r;
            }
            if m == pos {
                break;
            }
            let (a, b) = (self.heap[pos], self.heap[m]);
            self.heap_set(pos, b);
            self.heap_set(m, a);
            pos = m;
        }
    }

    // ----- read-only views ------------------------------------------------

    /// Visible levels of one side, best first (allocates: for tests and tools).
    pub fn book_side(&self, instrument: InstrumentId, side: Side) -> Vec<LevelView> {
        let Some(s) = self.inst_slot(instrument) else {
            return Vec::new();
        };
        self.side_levels(s, side)
            .iter()
            .rev()
            .map(|e| {
                let l = &self.levels[e.slot as usize];
                LevelView {
                    price: l.price,
                    qty: l.qty,
                    orders: l.count,
                }
            })
            .collect()
    }

    /// Best bid and ask prices.
    pub fn best_prices(&self, instrument: InstrumentId) -> (Option<Price>, Option<Price>) {
        let Some(s) = self.inst_slot(instrument) else {
            return (None, None);
        };
        let best = |side| {
            self.side_levels(s, side)
                .last()
                .map(|e| self.levels[e.slot as usize].price)
        };
        (best(Side::Buy), best(Side::Sell))
    }

    /// A live order.
    pub fn order(&self, id: OrderId) -> Option<OrderView> {
        let slot = self
            .order_index
            .get(id.0, |s| self.orders[s as usize].id.0)?;
        let o = &self.orders[slot as usize];
        Some(OrderView {
            id: o.id,
            owner: self.owners[o.owner_slot as usize].id,
            client_order_id: o.coid,
            instrument: self.instruments[o.inst as usize].spec.id,
            side: o.side,
            order_type: o.otype,
            price: o.price,
            remaining: o.remaining,
            visible: o.visible,
            waiting_stop: o.state == OrderState::Stop,
        })
    }

    /// Order ids of one side's queue at each level, best level first (for tests).
    pub fn queue_ids(&self, instrument: InstrumentId, side: Side) -> Vec<Vec<OrderId>> {
        let Some(s) = self.inst_slot(instrument) else {
            return Vec::new();
        };
        self.side_levels(s, side)
            .iter()
            .rev()
            .map(|e| {
                let mut ids = Vec::new();
                let mut m = self.levels[e.slot as usize].head;
                while m != NIL {
                    ids.push(self.orders[m as usize].id);
                    m = self.links[m as usize].next;
                }
                ids
            })
            .collect()
    }

    /// Last trade price of an instrument.
    pub fn last_trade(&self, instrument: InstrumentId) -> Option<Price> {
        self.inst_slot(instrument)
            .and_then(|s| self.instruments[s as usize].last_trade)
    }

    /// Whether an instrument is halted.
    pub fn is_halted(&self, instrument: InstrumentId) -> bool {
        self.inst_slot(instrument)
            .is_some_and(|s| self.instruments[s as usize].halted.is_some())
    }

    // ----- state hash and invariants --------------------------------------

    /// A 128-bit hash of the whole logical state (not of memory layout).
    pub fn state_hash(&self) -> u128 {
        let mut h = StateHasher::new();
        h.bytes(b"bourse-engine-state-v1");
        h.u64(self.now.0);
        h.u64(self.next_order_id);
        h.u64(self.instrument_count as u64);
        for inst in &self.instruments[..self.instrument_count] {
            let s = &inst.spec;
            h.u64(s.id.0 as u64);
            h.bytes(&s.symbol.0);
            h.bytes(&s.base.0);
            h.bytes(&s.quote.0);
            for v in [
                s.tick,
                s.lot_size,
                s.qty_min,
                s.qty_max,
                s.reference_price.0,
                s.band_bps.map_or(u64::MAX, |v| v as u64),
                s.circuit_bps.map_or(u64::MAX, |v| v as u64),
                s.circuit_window_ns,
                s.maker_fee_bps as u64,
                s.taker_fee_bps as u64,
                s.settle as u64,
                s.open_orders_max.map_or(u64::MAX, |v| v as u64),
                s.notional_max.unwrap_or(u64::MAX),
            ] {
                h.u64(v);
            }
            h.u128(s.fee_account.0);
            h.u64(inst.last_trade.map_or(0, |p| p.0));
            h.u64(inst.halted.map_or(0, |r| r as u64 + 1));
            h.u64(inst.window.map_or(u64::MAX, |w| w));
            h.u64(inst.anchor.0);
            for side in [&inst.bids, &inst.asks] {
                h.u64(side.len() as u64);
                for e in side.iter().rev() {
                    let l = &self.levels[e.slot as usize];
                    h.u64(l.price.0);
                    h.u64(l.qty.0);
                    h.u64(l.count as u64);
                    let mut m = l.head;
                    while m != NIL {
                        self.hash_order(&mut h, m);
                        m = self.links[m as usize].next;
                    }
                }
            }
            for stops in [&inst.buy_stops, &inst.sell_stops] {
                h.u64(stops.len() as u64);
                for e in stops.iter().rev() {
                    self.hash_order(&mut h, e.slot);
                }
            }
        }
        // Owners in first-seen order, each with its live orders in acceptance order.
        h.u64(self.owners.len() as u64);
        for ow in &self.owners {
            h.u64(ow.id.0);
            let mut m = ow.head;
            while m != NIL {
                h.u64(self.orders[m as usize].id.0);
                m = self.links[m as usize].onext;
            }
        }
        let mut coids = SetHasher::default();
        let blocks = self
            .coids
            .blocks(self.owners.iter().map(|o| (o.id.0, &o.coids)));
        for (k, bits) in blocks {
            coids.add(&[k, bits as u128]);
        }
        h.u128(coids.value());
        self.ledger.hash_into(&mut h);
        h.finish()
    }

    fn hash_order(&self, h: &mut StateHasher, slot: u32) {
        let (o, c) = (&self.orders[slot as usize], self.cold_of(slot));
        for v in [
            o.id.0,
            self.owners[o.owner_slot as usize].id.0,
            o.coid.0,
            o.side as u64,
            o.otype as u64,
            o.tif as u64,
            o.stp as u64,
            o.post_only as u64,
            o.price.0,
            c.trigger.0,
            c.expire_at.0,
            o.remaining.0,
            o.visible.0,
            c.display.0,
            c.hold_price.0,
        ] {
            h.u64(v);
        }
        h.u128(c.hold);
        h.u128(c.fee_acc);
    }

    /// Checks every book invariant; `Err` names the first one broken.
    pub fn validate(&self) -> Result<(), String> {
        let mut live = 0usize;
        for (ii, inst) in self.instruments[..self.instrument_count].iter().enumerate() {
            let id = inst.spec.id;
            for (side, v) in [(Side::Buy, &inst.bids), (Side::Sell, &inst.asks)] {
                for w in v.windows(2) {
                    if w[0].key >= w[1].key {
                        return Err(format!("{id:?} {side:?}: levels not strictly sorted"));
                    }
                }
                if v.len() > self.cfg.levels_max as usize {
                    return Err(format!("{id:?} {side:?}: more levels than levels_max"));
                }
                for e in v {
                    let l = &self.levels[e.slot as usize];
                    if e.key != side_key(side, l.price) {
                        return Err(format!("{id:?} {side:?}: level key/price mismatch"));
                    }
                    if l.count == 0 || l.head == NIL {
                        return Err(format!("{id:?} {side:?} {}: empty level", l.price));
                    }
                    let (mut qty, mut count, mut prev) = (0u64, 0u32, NIL);
                    let mut m = l.head;
                    while m != NIL {
                        let (o, c) = (&self.orders[m as usize], self.cold_of(m));
                        if o.state != OrderState::Resting
                            || o.level != e.slot
                            || self.links[m as usize].prev != prev
                            || o.price != l.price
                            || o.side != side
                            || o.inst as usize != ii
                        {
                            return Err(format!(
                                "{id:?} order {} misfiled in level {}",
                                o.id, l.price
                            ));
                        }
                        if o.visible.0 == 0
                            || o.visible > o.remaining
                            || (c.display.0 == 0 && o.visible != o.remaining)
                            || (c.display.0 > 0 && o.visible > c.display)
                        {
                            return Err(format!("order {}: bad visible/remaining", o.id));
                        }
                        if o.tif != Tif::Gtc && o.tif != Tif::Gtd
                            || o.otype == OrderType::Market
                            || o.otype == OrderType::Stop
                        {
                            return Err(format!("order {}: a non-resting order rests", o.id));
                        }
                        if o.tif == Tif::Gtd && c.expire_at <= self.now {
                            return Err(format!("order {}: expired but resting", o.id));
                        }
                        qty = qty.checked_add(o.visible.0).ok_or("level qty overflows")?;
                        count += 1;
                        prev = m;
                        m = self.links[m as usize].next;
                        live += 1;
                        if live > self.orders.len() {
                            return Err("cycle in a level queue".into());
                        }
                    }
                    if l.tail != prev || qty != l.qty.0 || count != l.count {
                        return Err(format!("{id:?} {side:?} {}: level totals wrong", l.price));
                    }
                }
            }
            if let (Some(b), Some(a)) = (inst.bids.last(), inst.asks.last()) {
                if self.levels[b.slot as usize].price >= self.levels[a.slot as usize].price {
                    return Err(format!("{id:?}: book crossed"));
                }
            }
            for (side, v) in [(Side::Buy, &inst.buy_stops), (Side::Sell, &inst.sell_stops)] {
                for w in v.windows(2) {
                    if w[0].key > w[1].key {
                        return Err(format!("{id:?} {side:?}: stops not sorted"));
                    }
                }
                for e in v {
                    let o = &self.orders[e.slot as usize];
                    let trigger = self.cold_of(e.slot).trigger;
                    if o.state != OrderState::Stop
                        || o.side != side
                        || e.key != stop_key(side, trigger)
                    {
                        return Err(format!("{id:?}: stop {} misfiled", o.id));
                    }
                    if let Some(last) = inst.last_trade {
                        if stop_condition(side, trigger, last) {
                            return Err(format!("stop {} should have fired at {last}", o.id));
                        }
                    }
                    live += 1;
                }
            }
        }
        if live != self.order_index.len() {
            return Err(format!(
                "{} orders in books and stop lists, {} in the index",
                live,
                self.order_index.len()
            ));
        }
        if self.orders.len() - self.order_free.len() != live {
            return Err("order pool leaks slots".into());
        }
        let mut gtd = 0usize;
        for slot in self.order_index.slots() {
            let (o, c) = (&self.orders[slot as usize], self.cold_of(slot));
            if self
                .order_index
                .get(o.id.0, |s| self.orders[s as usize].id.0)
                != Some(slot)
            {
                return Err(format!("index does not find order {} at its slot", o.id));
            }
            let ow = &self.owners[o.owner_slot as usize];
            if !ow.coids.any || o.coid.0 > ow.coids.max {
                return Err(format!(
                    "order {}: client order id above its owner's maximum",
                    o.id
                ));
            }
            let ow = &self.owners[o.owner_slot as usize];
            if !self.coids.contains(&ow.coids, ow.id.0, o.coid.0) {
                return Err(format!("order {}: client order id forgotten", o.id));
            }
            if o.tif == Tif::Gtd {
                gtd += 1;
                if self.heap.get(c.heap_pos as usize) != Some(&slot) {
                    return Err(format!("order {}: heap position wrong", o.id));
                }
            }
            if o.id.0 >= self.next_order_id {
                return Err(format!("order {} from the future", o.id));
            }
            if o.iceberg != (c.display.0 > 0) {
                return Err(format!("order {}: iceberg flag wrong", o.id));
            }
        }
        if gtd != self.heap.len() {
            return Err("expiry heap holds dead orders".into());
        }
        for i in 1..self.heap.len() {
            if self.heap_less(self.heap[i], self.heap[(i - 1) / 2]) {
                return Err("expiry heap order broken".into());
            }
        }
        // Owner lists and open counts.
        let mut counted = 0usize;
        let mut per_key: Vec<(u128, u32)> = Vec::new();
        for (os, ow) in self.owners.iter().enumerate() {
            let (mut m, mut prev) = (ow.head, NIL);
            while m != NIL {
                let o = &self.orders[m as usize];
                if o.owner_slot as usize != os || self.links[m as usize].oprev != prev {
                    return Err(format!("order {}: owner list broken", o.id));
                }
                if prev != NIL && self.orders[prev as usize].id >= o.id {
                    return Err(format!("owner {}: list not in acceptance order", ow.id));
                }
                let key = open_key(os as u32, o.inst);
                if self.instruments[o.inst as usize]
                    .spec
                    .open_orders_max
                    .is_some()
                {
                    match per_key.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, n)) => *n += 1,
                        None => per_key.push((key, 1)),
                    }
                }
                counted += 1;
                if counted > self.orders.len() {
                    return Err("cycle in an owner list".into());
                }
                prev = m;
                m = self.links[m as usize].onext;
            }
            if ow.tail != prev {
                return Err(format!("owner {}: tail wrong", ow.id));
            }
        }
        if counted != live {
            return Err(format!("{counted} orders in owner lists, {live} live"));
        }
        if per_key.len() != self.open_counts.len()
            || per_key
                .iter()
                .any(|&(k, n)| self.open_counts.get(k) != Some(n))
        {
            return Err("open order counts wrong".into());
        }
        if !self.triggered_batch.is_empty() || !self.fire_queue.is_empty() {
            return Err("stops left half-fired".into());
        }
        // Every hold equals what its order can still need; the ledger checks
        // that the accounts' pending debits are exactly these holds plus
        // pending transfers, and conservation per asset.
        let mut holds = vec![0u128; self.ledger.accounts_len()];
        for slot in self.order_index.slots() {
            let (o, c) = (&self.orders[slot as usize], self.cold_of(slot));
            if o.pay == NO_ACCOUNT {
                if c.hold != 0 {
                    return Err(format!("order {}: hold without an account", o.id));
                }
                continue;
            }
            let need = self.need(slot);
            if c.hold != need {
                return Err(format!(
                    "order {}: holds {} but needs {}",
                    o.id, c.hold, need
                ));
            }
            holds[o.pay as usize] = holds[o.pay as usize]
                .checked_add(c.hold)
                .ok_or("holds overflow")?;
        }
        self.ledger.validate(&holds)
    }
}

/// ceil((acc + add) / 10 000) − ceil(acc / 10 000): the fee a fill adds when
/// rounding is cumulative per order.
#[inline]
fn fee_delta(acc: u128, add: u128) -> u128 {
    // Saturating only matters for corrupted snapshots (entry checks bound
    // real values far below u128::MAX); `validate` then reports the mismatch.
    acc.saturating_add(add).div_ceil(BPS) - acc.div_ceil(BPS)
}

/// A hold's need: a buy reserves price × qty plus the fee at the higher of
/// the two rates on top of the fees accrued so far; a sell reserves the base.
fn need_of(spec: &InstrumentSpec, side: Side, hold_price: Price, qty: u64, fee_acc: u128) -> u128 {
    match side {
        Side::Buy => {
            let notional = hold_price.0 as u128 * qty as u128;
            let bps = spec.maker_fee_bps.max(spec.taker_fee_bps) as u128;
            notional.saturating_add(fee_delta(fee_acc, notional.saturating_mul(bps)))
        }
        Side::Sell => qty as u128 * spec.lot_size as u128,
    }
}

#[inline]
fn open_key(owner_slot: u32, inst: u32) -> u128 {
    ((owner_slot as u128) << 32) | inst as u128
}

#[inline]
fn stop_condition(side: Side, trigger: Price, last: Price) -> bool {
    match side {
        Side::Buy => last >= trigger,
        Side::Sell => last <= trigger,
    }
}

fn empty_spec() -> InstrumentSpec {
    InstrumentSpec {
        id: InstrumentId(0),
        symbol: Symbol::default(),
        base: Asset::default(),
        quote: Asset::default(),
        tick: 1,
        lot_size: 1,
        qty_min: 1,
        qty_max: 1,
        reference_price: Price(1),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The hot order record stays within one cache line's worth of bytes
    /// (the cold rest is in `OrderCold`).
    #[test]
    fn hot_order_is_64_bytes_at_most() {
        let (hot, cold) = (
            std::mem::size_of::<Order>(),
            std::mem::size_of::<OrderCold>(),
        );
        assert!(hot <= 64, "size_of::<Order>() = {hot}");
        assert!(cold <= 96, "size_of::<OrderCold>() = {cold}");
    }
}
