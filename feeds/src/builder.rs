//! The feed builder (sans-IO): engine events in, sequenced market-data
//! messages out, per instrument: L3 (market by order), L2 (market by price,
//! configurable depth), L1 (best bid/offer), trades and status.
//!
//! Use: for every *durable* engine input, in sequence order, call
//! `begin_input(seq, Some(&command))`, then `handle_event` for each of its
//! events, then `end_input(seq)` (or just `apply(&input, &events)`); drain
//! messages with `poll_message` / `drain_into` between inputs; take
//! `snapshot`s between inputs.
//!
//! Invariants:
//! - Sequence numbers: every message gets the next `channel_seq` of its
//!   channel and the next `instrument_seq` of its (channel, instrument); both
//!   start at 1 and never skip. A snapshot states the last of each it includes.
//! - L3 and trade messages are emitted as their events arrive; L2 and L1 are
//!   emitted at the end of each input, as the difference between what was
//!   last published and the book now (absolute levels; a level leaving the
//!   top `depth` is deleted, one entering is stated). So subscribers never see
//!   a state in the middle of an input on L1/L2, and the published L2 always
//!   equals the top `depth` levels of the builder's book between inputs.
//! - The builder's book equals the engine's visible book after every input:
//!   same orders, same visible sizes, same queue order (tests check it against
//!   `Engine::book_side` and `Engine::queue_ids`), given the command hints
//!   below.
//! - Nothing here panics on a surprising event stream: an event that does not
//!   fit the builder's state is counted in `anomalies()` and skipped.
//!
//! What the events alone do not say, and the hints the builder takes from the
//! input's command (`begin_input`):
//! - Whether an accepted order with a price is a limit order (it rests after
//!   matching) or a stop-limit order (it waits unseen until `triggered`): the
//!   `accepted` event carries the price for both.
//! - An iceberg's display size: `accepted` carries the total size. With the
//!   hint, the builder publishes only the visible slice and replays the
//!   engine's replenishment rule itself (a used-up slice comes back as
//!   `min(display, remaining)` at the back of its level), which the engine
//!   reports with no event of its own. Without the hint an iceberg would be
//!   published with its total size (its hidden part would leak), so callers
//!   must pass the command.
//!
//! A resting order's remainder rests after its own matching: the builder
//! holds the incoming order as "pending" and rests it when the next order
//! starts (`accepted`, `triggered`) or the input ends; a `canceled` for it
//! first means it never rests.

use crate::book::{better, OrderBook};
use crate::msg::*;
use engine::{
    Command, Event, Events, Input, InstrumentId, LevelView, OrderId, OrderType, Price, Qty, Seq,
    Side,
};
use std::collections::{HashMap, VecDeque};

/// Capacities and options, fixed at construction.
#[derive(Clone, Copy, Debug)]
pub struct FeedConfig {
    /// L2 levels per side published (`usize::MAX`: all).
    pub depth: usize,
    /// Live orders tracked (resting, pending, waiting stops) before maps grow.
    pub orders_max: usize,
    /// Price levels per side per instrument before vectors grow.
    pub levels_max: usize,
    /// Instruments before tables grow.
    pub instruments_max: usize,
    /// Messages buffered between drains before the queue grows.
    pub queue_max: usize,
}

impl FeedConfig {
    /// Small capacities for tests (depth 10).
    pub fn small() -> FeedConfig {
        FeedConfig {
            depth: 10,
            orders_max: 4096,
            levels_max: 1024,
            instruments_max: 16,
            queue_max: 4096,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stage {
    /// A stop waiting for its trigger (not in the book).
    Parked,
    /// Matching as the incoming order (not in the book).
    Pending,
    /// In the book.
    Resting,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Track {
    pub(crate) inst: u32,
    pub(crate) side: Side,
    /// Limit price; `None`: market or stop (never rests).
    pub(crate) price: Option<Price>,
    /// Total remaining (visible + hidden).
    pub(crate) remaining: Qty,
    /// Iceberg display size (0: not an iceberg).
    pub(crate) display: Qty,
    pub(crate) stage: Stage,
    /// Priority-losing replace in progress: the price subscribers still see it at.
    pub(crate) shown_at: Option<Price>,
}

#[derive(Clone, Debug)]
pub(crate) struct Inst {
    pub(crate) id: InstrumentId,
    pub(crate) book: OrderBook,
    /// Last instrument_seq per channel.
    pub(crate) seq: [u64; 5],
    pub(crate) match_id: u64,
    pub(crate) halted: bool,
    pub(crate) pub_bids: Vec<LevelView>,
    pub(crate) pub_asks: Vec<LevelView>,
    pub(crate) scratch: Vec<LevelView>,
    pub(crate) pub_quote: Quote,
    pub(crate) dirty: bool,
}

/// The feed builder. See the module documentation.
#[derive(Clone, Debug)]
pub struct FeedBuilder {
    pub(crate) cfg: FeedConfig,
    pub(crate) insts: Vec<Inst>,
    pub(crate) inst_index: HashMap<u32, u32>,
    pub(crate) orders: HashMap<u64, Track>,
    pub(crate) channel_seq: [u64; 5],
    pub(crate) out: VecDeque<Message>,
    pub(crate) seq: Seq,
    pub(crate) last_done: Seq,
    pub(crate) in_input: bool,
    pub(crate) pending: Option<u64>,
    pub(crate) hint: Option<(OrderType, Qty)>,
    pub(crate) dirty: Vec<u32>,
    pub(crate) anomalies: u64,
}

impl FeedBuilder {
    /// A builder with the given capacities.
    pub fn new(cfg: FeedConfig) -> FeedBuilder {
        FeedBuilder {
            cfg,
            insts: Vec::with_capacity(cfg.instruments_max),
            inst_index: HashMap::with_capacity(cfg.instruments_max),
            orders: HashMap::with_capacity(cfg.orders_max),
            channel_seq: [0; 5],
            out: VecDeque::with_capacity(cfg.queue_max),
            seq: Seq(0),
            last_done: Seq(0),
            in_input: false,
            pending: None,
            hint: None,
            dirty: Vec::with_capacity(cfg.instruments_max),
            anomalies: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FeedConfig {
        &self.cfg
    }

    /// Events that did not fit the builder's state (0 for a correct stream).
    pub fn anomalies(&self) -> u64 {
        self.anomalies
    }

    /// The last completed input (0 before any): the engine sequence number
    /// the builder's state stands at between inputs.
    pub fn last_seq(&self) -> Seq {
        self.last_done
    }

    /// The instruments the builder knows, in the order it met them.
    pub fn instruments(&self) -> impl Iterator<Item = InstrumentId> + '_ {
        self.insts.iter().map(|st| st.id)
    }

    /// The next message, oldest first.
    pub fn poll_message(&mut self) -> Option<Message> {
        self.out.pop_front()
    }

    /// Moves every buffered message to `dst`.
    pub fn drain_into(&mut self, dst: &mut Vec<Message>) {
        dst.extend(self.out.drain(..));
    }

    /// Messages waiting to be polled.
    pub fn pending_messages(&self) -> usize {
        self.out.len()
    }

    /// The builder's market-by-order book of an instrument (between inputs it
    /// equals the engine's visible book).
    pub fn book(&self, instrument: InstrumentId) -> Option<&OrderBook> {
        let i = *self.inst_index.get(&instrument.0)?;
        Some(&self.insts[i as usize].book)
    }

    /// The published L2 of one side (top `depth`, best first).
    pub fn published_levels(&self, instrument: InstrumentId, side: Side) -> &[LevelView] {
        match self.inst_index.get(&instrument.0) {
            Some(&i) => match side {
                Side::Buy => &self.insts[i as usize].pub_bids,
                Side::Sell => &self.insts[i as usize].pub_asks,
            },
            None => &[],
        }
    }

    /// The published best bid and offer.
    pub fn quote(&self, instrument: InstrumentId) -> Quote {
        self.inst_index
            .get(&instrument.0)
            .map(|&i| self.insts[i as usize].pub_quote)
            .unwrap_or_default()
    }

    /// Whether the builder knows the instrument as halted.
    pub fn is_halted(&self, instrument: InstrumentId) -> bool {
        self.inst_index
            .get(&instrument.0)
            .is_some_and(|&i| self.insts[i as usize].halted)
    }

    /// Registers an instrument (otherwise it appears with its first event).
    pub fn add_instrument(&mut self, instrument: InstrumentId) {
        self.inst(instrument);
    }

    pub(crate) fn inst(&mut self, id: InstrumentId) -> u32 {
        if let Some(&i) = self.inst_index.get(&id.0) {
            return i;
        }
        let i = self.insts.len() as u32;
        let depth = self.cfg.depth.min(self.cfg.levels_max);
        self.insts.push(Inst {
            id,
            book: OrderBook::with_capacity(self.cfg.orders_max, self.cfg.levels_max),
            seq: [0; 5],
            match_id: 0,
            halted: false,
            pub_bids: Vec::with_capacity(depth),
            pub_asks: Vec::with_capacity(depth),
            scratch: Vec::with_capacity(depth),
            pub_quote: Quote::default(),
            dirty: false,
        });
        self.inst_index.insert(id.0, i);
        i
    }

    fn emit(&mut self, inst: u32, flags: u8, body: Body) {
        let c = body.channel().index();
        self.channel_seq[c] += 1;
        let st = &mut self.insts[inst as usize];
        st.seq[c] += 1;
        self.out.push_back(Message {
            instrument: st.id,
            channel_seq: self.channel_seq[c],
            instrument_seq: st.seq[c],
            engine_seq: self.seq,
            flags: Flags(flags),
            body,
        });
    }

    fn touch(&mut self, inst: u32) {
        let st = &mut self.insts[inst as usize];
        if !st.dirty {
            st.dirty = true;
            self.dirty.push(inst);
        }
    }

    /// Everything for one input: `begin_input`, each event, `end_input`.
    pub fn apply(&mut self, input: &Input, events: &Events) {
        self.begin_input(input.seq, Some(&input.command));
        for e in events {
            self.handle_event(input.seq, e);
        }
        self.end_input(input.seq);
    }

    /// Starts an input. `command` (when known) tells stop-limit orders from
    /// limit orders and gives icebergs' display size (see the module docs).
    pub fn begin_input(&mut self, seq: Seq, command: Option<&Command>) {
        if self.in_input {
            self.end_input(self.seq);
        }
        self.in_input = true;
        self.seq = seq;
        self.hint = match command {
            Some(Command::NewOrder(o)) => Some((o.order_type, o.display_qty.unwrap_or(Qty(0)))),
            _ => None,
        };
    }

    /// One engine event of the current input.
    pub fn handle_event(&mut self, seq: Seq, event: &Event) {
        if !self.in_input || seq != self.seq {
            self.begin_input(seq, None);
        }
        match *event {
            Event::Accepted {
                order_id,
                instrument,
                side,
                price,
                qty,
                ..
            } => self.on_accepted(order_id, instrument, side, price, qty),
            Event::Triggered { order_id, .. } => self.on_triggered(order_id),
            Event::Trade {
                instrument,
                price,
                qty,
                maker_order_id,
                taker_order_id,
                taker_side,
                ..
            } => self.on_trade(
                instrument,
                price,
                qty,
                maker_order_id,
                taker_order_id,
                taker_side,
            ),
            Event::Reduced { order_id, qty, .. } => self.on_reduced(order_id, qty),
            Event::Canceled { order_id, .. } => self.on_canceled(order_id),
            Event::Replaced {
                order_id,
                price,
                qty,
                priority_kept,
                ..
            } => self.on_replaced(order_id, price, qty, priority_kept),
            Event::Halted {
                instrument, reason, ..
            } => self.on_status(instrument, true, reason as u8),
            Event::Resumed { instrument } => self.on_status(instrument, false, 0),
            _ => {}
        }
    }

    /// A new order: tracked, parked (a stop) or pending until it rests.
    fn on_accepted(
        &mut self,
        order_id: OrderId,
        instrument: InstrumentId,
        side: Side,
        price: Option<Price>,
        qty: Qty,
    ) {
        self.flush_pending();
        let inst = self.inst(instrument);
        let (parked, display) = match self.hint.take() {
            Some((t, d)) => (t.has_trigger(), d),
            None => (false, Qty(0)),
        };
        let track = Track {
            inst,
            side,
            price,
            remaining: qty,
            display,
            stage: if parked {
                Stage::Parked
            } else {
                Stage::Pending
            },
            shown_at: None,
        };
        if self.orders.insert(order_id.0, track).is_some() {
            self.anomalies += 1;
        }
        if !parked {
            self.pending = Some(order_id.0);
        }
    }

    /// A stop order triggered: pending from now on, as if incoming.
    fn on_triggered(&mut self, order_id: OrderId) {
        if self.pending != Some(order_id.0) {
            self.flush_pending();
        }
        match self.orders.get_mut(&order_id.0) {
            Some(t) if t.stage != Stage::Resting => {
                t.stage = Stage::Pending;
                self.pending = Some(order_id.0);
            }
            _ => self.anomalies += 1,
        }
    }

    /// A trade: the maker's resting size reduced, the taker's remaining
    /// reduced, the trade published.
    fn on_trade(
        &mut self,
        instrument: InstrumentId,
        price: Price,
        qty: Qty,
        maker_order_id: OrderId,
        taker_order_id: OrderId,
        taker_side: Side,
    ) {
        let inst = self.inst(instrument);
        let st = &mut self.insts[inst as usize];
        st.match_id += 1;
        let match_id = st.match_id;
        self.take_from_resting(maker_order_id.0, qty, Some(match_id));
        if let Some(t) = self.orders.get_mut(&taker_order_id.0) {
            if t.stage == Stage::Pending {
                t.remaining.0 = t.remaining.0.saturating_sub(qty.0);
            }
        }
        self.emit(
            inst,
            0,
            Body::Trade(TradeMsg {
                price,
                qty,
                match_id,
                aggressor: taker_side,
                maker_order_id: maker_order_id.0,
                taker_order_id: taker_order_id.0,
            }),
        );
    }

    /// An order's size reduced without a trade.
    fn on_reduced(&mut self, order_id: OrderId, qty: Qty) {
        match self.orders.get(&order_id.0) {
            Some(t) if t.stage == Stage::Resting => {
                self.take_from_resting(order_id.0, qty, None);
            }
            Some(t) if t.stage == Stage::Pending => {
                let t = self.orders.get_mut(&order_id.0).expect("present");
                t.remaining.0 = t.remaining.0.saturating_sub(qty.0);
            }
            _ => self.anomalies += 1,
        }
    }

    /// An order canceled: deleted from the book (or its shown place).
    fn on_canceled(&mut self, order_id: OrderId) {
        let Some(t) = self.orders.remove(&order_id.0) else {
            self.anomalies += 1;
            return;
        };
        if self.pending == Some(order_id.0) {
            self.pending = None;
        }
        match t.stage {
            Stage::Resting => {
                let st = &mut self.insts[t.inst as usize];
                match st.book.remove(order_id.0) {
                    Some(o) => {
                        self.touch(t.inst);
                        self.emit(
                            t.inst,
                            0,
                            Body::L3(L3Update::Delete {
                                order_id: order_id.0,
                                side: o.side,
                                price: o.price,
                            }),
                        );
                    }
                    None => self.anomalies += 1,
                }
            }
            Stage::Pending => {
                if let Some(p) = t.shown_at {
                    self.emit(
                        t.inst,
                        0,
                        Body::L3(L3Update::Delete {
                            order_id: order_id.0,
                            side: t.side,
                            price: p,
                        }),
                    );
                }
            }
            Stage::Parked => {}
        }
    }

    /// An order replaced: in place when it kept priority, else out of the
    /// book and pending as if incoming.
    fn on_replaced(&mut self, order_id: OrderId, price: Price, qty: Qty, priority_kept: bool) {
        self.flush_pending();
        let Some(t) = self.orders.get(&order_id.0).copied() else {
            self.anomalies += 1;
            return;
        };
        let st = &mut self.insts[t.inst as usize];
        let Some(o) = st.book.get(order_id.0) else {
            self.anomalies += 1;
            return;
        };
        self.touch(t.inst);
        let st = &mut self.insts[t.inst as usize];
        let tm = self.orders.get_mut(&order_id.0).expect("present");
        tm.remaining = qty;
        if priority_kept && price == o.price {
            let vis = Qty(o.qty.0.min(qty.0));
            st.book.set_qty(order_id.0, vis);
            self.emit(
                t.inst,
                0,
                Body::L3(L3Update::Replace {
                    order_id: order_id.0,
                    side: o.side,
                    price,
                    qty: vis,
                    priority_kept: true,
                }),
            );
        } else {
            // Out of the book; it matches as if incoming, then rests
            // (published as a replace) or ends (published as a delete).
            st.book.remove(order_id.0);
            tm.price = Some(price);
            tm.stage = Stage::Pending;
            tm.shown_at = Some(o.price);
            self.pending = Some(order_id.0);
        }
    }

    /// Trading halted (`halted`, with its reason) or resumed.
    fn on_status(&mut self, instrument: InstrumentId, halted: bool, reason: u8) {
        let inst = self.inst(instrument);
        self.insts[inst as usize].halted = halted;
        self.emit(inst, 0, Body::Status(StatusMsg { halted, reason }));
    }

    /// Takes `qty` from a resting order's visible size (a fill when
    /// `match_id` is set, else a reduction); ends it or replenishes an iceberg.
    fn take_from_resting(&mut self, id: u64, qty: Qty, match_id: Option<u64>) {
        let Some(t) = self.orders.get(&id).copied() else {
            self.anomalies += 1;
            return;
        };
        let st = &mut self.insts[t.inst as usize];
        let Some(o) = st.book.get(id).filter(|_| t.stage == Stage::Resting) else {
            self.anomalies += 1;
            return;
        };
        if qty.0 > o.qty.0 {
            self.anomalies += 1;
        }
        let x = qty.0.min(o.qty.0);
        let leftover = Qty(o.qty.0 - x);
        let remaining = Qty(t.remaining.0.saturating_sub(x));
        st.book.set_qty(id, leftover);
        self.touch(t.inst);
        let body = match match_id {
            Some(match_id) => L3Update::Execute {
                order_id: id,
                side: o.side,
                price: o.price,
                qty: Qty(x),
                leftover,
                match_id,
            },
            None => L3Update::Reduce {
                order_id: id,
                side: o.side,
                price: o.price,
                qty: Qty(x),
                leftover,
            },
        };
        self.emit(t.inst, 0, Body::L3(body));
        if remaining.0 == 0 {
            if leftover.0 != 0 {
                self.anomalies += 1;
                self.insts[t.inst as usize].book.remove(id);
            }
            self.orders.remove(&id);
            return;
        }
        self.orders.get_mut(&id).expect("present").remaining = remaining;
        if leftover.0 == 0 {
            // An iceberg's next slice, at the back of its level.
            let slice = Qty(if t.display.0 > 0 {
                t.display.0.min(remaining.0)
            } else {
                remaining.0
            });
            self.insts[t.inst as usize]
                .book
                .add(id, o.side, o.price, slice);
            self.emit(
                t.inst,
                Flags::REPLENISH,
                Body::L3(L3Update::Add {
                    order_id: id,
                    side: o.side,
                    price: o.price,
                    qty: slice,
                }),
            );
        }
    }

    /// Rests (or forgets) the order that was matching.
    fn flush_pending(&mut self) {
        let Some(id) = self.pending.take() else {
            return;
        };
        let Some(t) = self.orders.get(&id).copied() else {
            return;
        };
        let price = match t.price {
            Some(p) if t.remaining.0 > 0 => p,
            _ => {
                // Filled (or a market remainder the engine did not cancel).
                if t.remaining.0 > 0 {
                    self.anomalies += 1;
                }
                self.orders.remove(&id);
                if let Some(p) = t.shown_at {
                    self.emit(
                        t.inst,
                        0,
                        Body::L3(L3Update::Delete {
                            order_id: id,
                            side: t.side,
                            price: p,
                        }),
                    );
                }
                return;
            }
        };
        let vis = Qty(if t.display.0 > 0 {
            t.display.0.min(t.remaining.0)
        } else {
            t.remaining.0
        });
        if !self.insts[t.inst as usize].book.add(id, t.side, price, vis) {
            self.anomalies += 1;
            return;
        }
        let tm = self.orders.get_mut(&id).expect("present");
        tm.stage = Stage::Resting;
        tm.shown_at = None;
        self.touch(t.inst);
        let body = match t.shown_at {
            Some(_) => L3Update::Replace {
                order_id: id,
                side: t.side,
                price,
                qty: vis,
                priority_kept: false,
            },
            None => L3Update::Add {
                order_id: id,
                side: t.side,
                price,
                qty: vis,
            },
        };
        self.emit(t.inst, 0, Body::L3(body));
    }

    /// Ends the current input: rests the pending order, publishes L2 and L1
    /// changes of every instrument the input touched.
    pub fn end_input(&mut self, seq: Seq) {
        if !self.in_input {
            return;
        }
        debug_assert_eq!(seq, self.seq);
        self.flush_pending();
        self.hint = None;
        let mut k = 0;
        while k < self.dirty.len() {
            let inst = self.dirty[k];
            self.publish_levels(inst, Side::Buy);
            self.publish_levels(inst, Side::Sell);
            self.publish_quote(inst);
            self.insts[inst as usize].dirty = false;
            k += 1;
        }
        self.dirty.clear();
        self.in_input = false;
        self.last_done = self.seq;
    }

    fn publish_levels(&mut self, inst: u32, side: Side) {
        let depth = self.cfg.depth;
        let st = &mut self.insts[inst as usize];
        let mut new = std::mem::take(&mut st.scratch);
        new.clear();
        new.extend(st.book.side(side).iter().take(depth));
        let old = match side {
            Side::Buy => std::mem::take(&mut st.pub_bids),
            Side::Sell => std::mem::take(&mut st.pub_asks),
        };
        // Merge the two best-first lists.
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            let take_old = match (old.get(i), new.get(j)) {
                (Some(a), Some(b)) if a.price == b.price => {
                    if a != b {
                        self.emit_level(inst, side, *b);
                    }
                    i += 1;
                    j += 1;
                    continue;
                }
                (Some(a), Some(b)) => better(side, a.price, b.price),
                (Some(_), None) => true,
                _ => false,
            };
            if take_old {
                let a = old[i];
                self.emit_level(
                    inst,
                    side,
                    LevelView {
                        price: a.price,
                        qty: Qty(0),
                        orders: 0,
                    },
                );
                i += 1;
            } else {
                self.emit_level(inst, side, new[j]);
                j += 1;
            }
        }
        let st = &mut self.insts[inst as usize];
        st.scratch = old;
        match side {
            Side::Buy => st.pub_bids = new,
            Side::Sell => st.pub_asks = new,
        }
    }

    fn emit_level(&mut self, inst: u32, side: Side, l: LevelView) {
        self.emit(
            inst,
            0,
            Body::L2(LevelUpdate {
                side,
                price: l.price,
                qty: l.qty,
                orders: l.orders,
            }),
        );
    }

    fn publish_quote(&mut self, inst: u32) {
        let st = &self.insts[inst as usize];
        let top = |side| {
            st.book
                .side(side)
                .best()
                .map(|l| Top {
                    price: Some(l.price),
                    qty: l.qty,
                    orders: l.orders,
                })
                .unwrap_or_default()
        };
        let q = Quote {
            bid: top(Side::Buy),
            ask: top(Side::Sell),
        };
        if q != st.pub_quote {
            self.insts[inst as usize].pub_quote = q;
            self.emit(inst, 0, Body::L1(q));
        }
    }

    /// A channel's state for one instrument, as of the last completed input
    /// (call between inputs). An instrument never seen gives an empty snapshot
    /// at sequence 0.
    pub fn snapshot(&self, instrument: InstrumentId, channel: Channel) -> Snapshot {
        let c = channel.index();
        let mut s = Snapshot {
            channel: Some(channel),
            instrument,
            last_channel_seq: self.channel_seq[c],
            last_instrument_seq: 0,
            engine_seq: self.last_done,
            ..Snapshot::default()
        };
        let Some(&i) = self.inst_index.get(&instrument.0) else {
            return s;
        };
        let st = &self.insts[i as usize];
        s.last_instrument_seq = st.seq[c];
        s.halted = st.halted;
        match channel {
            Channel::L2 => {
                s.bids = st.pub_bids.clone();
                s.asks = st.pub_asks.clone();
            }
            Channel::L3 => {
                for side in [Side::Buy, Side::Sell] {
                    s.orders
                        .extend(st.book.orders_in_order(side).into_iter().map(|(id, o)| {
                            SnapshotOrder {
                                order_id: id,
                                side,
                                price: o.price,
                                qty: o.qty,
                            }
                        }));
                }
            }
            Channel::L1 => s.quote = st.pub_quote,
            Channel::Trades | Channel::Status => {}
        }
        s
    }
}
