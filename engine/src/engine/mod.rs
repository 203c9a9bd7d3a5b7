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
//! a few entries; beside it a direct-mapped `LevelCache` finds the level for
//! a price in O(1) (searching the vector only after a collision). Every owner has an intrusive list of its live orders
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
//!
//! This file holds the `Engine` record, its construction and `apply`'s
//! dispatch; each concern is one child module, all of them `impl Engine`
//! blocks over the same private fields:
//! - `orders`: the order pool (hot `Order`, cold `OrderCold`, `Links`),
//!   allocating and ending orders, owner records and the client order id window;
//! - `book`: price levels, the sorted book sides and their level caches;
//! - `new_order`: checking and accepting a new order;
//! - `amend`: cancel, replace, mass cancel;
//! - `client_ids`: the live-order map by (owner, client order id);
//! - `matching`: taker bounds, the matching loop, FOK trials, circuit breaker;
//! - `stops`: stop lists, triggering and firing;
//! - `expiry`: the GTD expiry heap;
//! - `cod`: cancel-on-disconnect arms and `SessionsLost`;
//! - `settle`: holds and fill settlement on the ledger;
//! - `instruments`: adding, halting and resuming instruments;
//! - `views`: queries and read-only accessors;
//! - `state_hash`, `validate`, `snapshot`: the state's hash, its invariant
//!   checker and its byte form;
//! - `history_api`: the transfer-history façade over the ledger.

use crate::command::*;
use crate::config::EngineConfig;
use crate::event::*;
use crate::fixed_map::FixedMap;
use crate::hash::StateHasher;
use crate::history::{AccountFilter, TransferHistory, TransferRecord, ACCOUNT_TRANSFERS_LIMIT_MAX};
use crate::index::{CoidSet, IdIndex, OwnerCoids};
use crate::ledger::{Ledger, NO_ACCOUNT};
use crate::types::*;
use crate::BrokenInvariant;
use std::collections::VecDeque;

mod amend;
mod book;
mod client_ids;
mod cod;
mod expiry;
mod history_api;
mod instruments;
mod matching;
mod new_order;
mod orders;
mod settle;
mod snapshot;
mod state_hash;
mod stops;
mod validate;
mod views;

// Every child module reads these through `use super::*`.
use book::{side_key, Entry, Instrument, Level, LevelCache};
pub use cod::COD_ARMS_MAX;
use instruments::empty_spec;
use matching::{band_edge, in_band, Bounds};
use orders::{open_key, plain_cold, Links, Order, OrderCold, OrderState, Owner};
use settle::need_of;
pub use snapshot::SnapshotError;
use stops::{stop_condition, stop_key};
pub use views::OrderView;

/// No slot: an absent order, level, owner, link or heap position.
const NIL: u32 = u32::MAX;

/// Basis points in one (fees, bands and the circuit breaker are in bps).
const BPS: u128 = 10_000;

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
    /// Free owner records (no live order, no order in the window), reused last-freed first.
    owner_free: Vec<u32>,
    owner_index: FixedMap<u32>,
    coids: CoidSet,
    /// (owner, client order id) → slot of every live order (derived state).
    client_ids: client_ids::ClientIds,
    open_counts: FixedMap<u32>,
    heap: Vec<u32>,
    /// Stops triggered by the order being matched, not yet ordered.
    triggered_batch: Vec<u32>,
    /// Triggered stops waiting to fire, in firing order.
    fire_queue: VecDeque<u32>,
    /// Cancel-on-disconnect arms `(session, owner)`, sorted (see `cod`).
    cod_arms: Vec<(u64, u64)>,
    ledger: Ledger,
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
                bid_cache: LevelCache::new(cfg.levels_max),
                ask_cache: LevelCache::new(cfg.levels_max),
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
            owner_free: Vec::with_capacity(cfg.owners_max as usize),
            owner_index: FixedMap::with_capacity(cfg.owners_max as usize),
            coids: CoidSet::with_capacity(cfg.client_order_ids_max as usize, orders_max),
            client_ids: client_ids::ClientIds::with_capacity(orders_max),
            open_counts: FixedMap::with_capacity(orders_max),
            heap: Vec::with_capacity(orders_max),
            triggered_batch: Vec::with_capacity(orders_max),
            fire_queue: VecDeque::with_capacity(orders_max),
            cod_arms: Vec::with_capacity(COD_ARMS_MAX),
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
        touch_vec(&mut self.owner_free);
        touch_vec(&mut self.heap);
        touch_vec(&mut self.triggered_batch);
        touch_vec(&mut self.cod_arms);
        for i in &mut self.instruments {
            for v in [
                &mut i.bids,
                &mut i.asks,
                &mut i.buy_stops,
                &mut i.sell_stops,
            ] {
                touch_vec_with(v, Entry { key: 0, slot: 0 });
            }
            i.bid_cache.prefault();
            i.ask_cache.prefault();
        }
        self.order_index.prefault();
        self.coids.prefault();
        self.client_ids.prefault();
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
            Command::CancelByClientId {
                owner,
                client_order_id,
            } => self.handle_cancel_by_client_id(owner, client_order_id, out),
            Command::Replace {
                owner,
                order_id,
                price,
                qty,
                requeue,
            } => self.handle_replace(owner, order_id, (price, qty), requeue, out),
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
            Command::CodArm { session, owner } => self.handle_cod_arm(session, owner, out),
            Command::CodDisarm { session } => self.handle_cod_disarm(session),
            Command::SessionsLost => self.handle_sessions_lost(out),
        }
    }
}
