//! A naive reference model of Bourse's order books, written from
//! `shared/spec/semantics.md` and ARCHITECTURE.md ("Semantics chosen where the
//! spec leaves room"), independently of `engine/src/engine/`.
//!
//! It favours obvious correctness over speed: a price level is a `Vec` of
//! order ids in a `BTreeMap<price, Vec<id>>`, every live order sits in one
//! `BTreeMap<id, Ord>`, waiting stops are found by scanning that map, and a
//! fill-or-kill order is decided by cloning the whole model and running the
//! real match on the clone. `Reference::apply` answers an `engine::Input`
//! with the events the engine must produce, as owned `Ev` values (book
//! reports carry their levels inline), so the two can be compared with `==`.
//!
//! Out of scope: the ledger (accounts, transfers, settling instruments) and
//! capacities (random streams stay within `EngineConfig::small()`).

use engine::{
    CancelReason, ClientOrderId, Command, Event, Events, HaltReason, Input, InstrumentId,
    InstrumentSpec, LevelView, NewOrder, OrderId, OrderType, OwnerId, Price, Qty, RejectReason,
    RejectTarget, Side, Stp, Tif,
};
use std::collections::{BTreeMap, VecDeque};

/// An owned, comparable event: engine events as they are, and book reports
/// with their levels copied out of the `Events` buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    /// Any event but a book report.
    E(Event),
    /// A book report with its levels, best first.
    Book {
        /// Instrument.
        instrument: InstrumentId,
        /// Bid levels, best first.
        bids: Vec<LevelView>,
        /// Ask levels, best first.
        asks: Vec<LevelView>,
    },
}

/// Converts the engine's events buffer into owned `Ev`s.
pub fn evs_of(events: &Events) -> Vec<Ev> {
    events
        .iter()
        .map(|e| match *e {
            Event::Book {
                instrument,
                bids,
                asks,
            } => Ev::Book {
                instrument,
                bids: events.levels(bids).to_vec(),
                asks: events.levels(asks).to_vec(),
            },
            other => Ev::E(other),
        })
        .collect()
}

/// Where a live order is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the book.
    Resting,
    /// A stop waiting for its trigger.
    Waiting,
    /// A stop triggered by a trade of the current command, waiting to fire.
    Queued,
}

/// One order (live, or the incoming one being matched).
#[derive(Clone, Debug)]
struct Ord {
    id: u64,
    owner: u64,
    coid: u64,
    inst: u32,
    side: Side,
    otype: OrderType,
    /// Limit price (0 for market and stop).
    price: u64,
    trigger: u64,
    remaining: u64,
    visible: u64,
    display: Option<u64>,
    tif: Tif,
    /// Only for GTD orders.
    expire_at: Option<u64>,
    post_only: bool,
    stp: Stp,
    state: State,
}

impl Ord {
    fn is_market(&self) -> bool {
        matches!(self.otype, OrderType::Market | OrderType::Stop)
    }
}

#[derive(Clone, Debug)]
struct Inst {
    spec: InstrumentSpec,
    halted: bool,
    last_trade: Option<u64>,
    /// (circuit window index, anchor price) of the window last used.
    anchor: Option<(u64, u64)>,
    bids: BTreeMap<u64, Vec<u64>>,
    asks: BTreeMap<u64, Vec<u64>>,
}

impl Inst {
    fn reference(&self) -> u64 {
        self.last_trade.unwrap_or(self.spec.reference_price.0)
    }
    fn side(&self, side: Side) -> &BTreeMap<u64, Vec<u64>> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }
    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<u64, Vec<u64>> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
    /// Best price of a side.
    fn best(&self, side: Side) -> Option<u64> {
        match side {
            Side::Buy => self.bids.keys().next_back().copied(),
            Side::Sell => self.asks.keys().next().copied(),
        }
    }
    /// Levels of a side, best first.
    fn levels(&self, side: Side) -> Vec<(u64, &Vec<u64>)> {
        match side {
            Side::Buy => self.bids.iter().rev().map(|(p, v)| (*p, v)).collect(),
            Side::Sell => self.asks.iter().map(|(p, v)| (*p, v)).collect(),
        }
    }
    /// Whether `price` is inside the band (convention 2).
    fn in_band(&self, price: u64) -> bool {
        match self.spec.band_bps {
            None => true,
            Some(b) => {
                let r = self.reference() as u128;
                (price as u128).abs_diff(r) * 10_000 <= r * b as u128
            }
        }
    }
    /// (lower, upper) band edges, ARCHITECTURE.md 6.
    fn band_edges(&self) -> Option<(u64, u64)> {
        let b = self.spec.band_bps? as u128;
        let r = self.reference();
        let d = (r as u128 * b / 10_000) as u64;
        Some((r.saturating_sub(d), r.saturating_add(d)))
    }
}

/// How a match ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Done,
    Halted,
    TakerCanceled,
}

/// A live order as the generator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveOrder {
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
    /// Limit price (0 for a waiting stop market).
    pub price: Price,
    /// Remaining quantity.
    pub remaining: Qty,
    /// Visible quantity (the iceberg slice; the remaining qty otherwise).
    pub visible: Qty,
    /// In the book (not a waiting stop).
    pub resting: bool,
}

/// The reference model.
#[derive(Clone, Debug)]
pub struct Reference {
    now: u64,
    next_id: u64,
    insts: BTreeMap<u32, Inst>,
    orders: BTreeMap<u64, Ord>,
    /// (owner, client order id) of every accepted order, at index id − 1.
    accepted: Vec<(u64, u64)>,
    /// W: how many of the newest accepted orders count for duplicates.
    coid_window: u64,
    /// Cancel-on-disconnect arms (session, owner).
    cod_arms: std::collections::BTreeSet<(u64, u64)>,
}

impl Default for Reference {
    fn default() -> Self {
        Self::new()
    }
}

fn rej(out: &mut Vec<Ev>, target: RejectTarget, reason: RejectReason) {
    out.push(Ev::E(Event::Rejected { target, reason }));
}

/// `o` lost `qty` (its leaves before the event) for `reason`.
fn canceled(out: &mut Vec<Ev>, o: &Ord, qty: u64, reason: CancelReason) {
    out.push(Ev::E(Event::Canceled {
        order_id: OrderId(o.id),
        owner: OwnerId(o.owner),
        side: o.side,
        price: o.otype.has_price().then_some(Price(o.price)),
        qty: Qty(qty),
        reason,
    }));
}

/// Whether a price is valid on a tick.
fn bad_price(p: u64, tick: u64) -> bool {
    p == 0 || !p.is_multiple_of(tick)
}

impl Reference {
    /// An empty model at time 0, with the client order id window of
    /// `EngineConfig::small()`.
    pub fn new() -> Self {
        Self::with_coid_window(engine::EngineConfig::small().client_order_ids_max as u64)
    }

    /// An empty model whose duplicate check remembers the last `w` accepted
    /// orders (the engine's `client_order_ids_max`; 0 counts as 1).
    pub fn with_coid_window(w: u64) -> Self {
        Reference {
            now: 0,
            next_id: 1,
            insts: BTreeMap::new(),
            orders: BTreeMap::new(),
            accepted: Vec::new(),
            coid_window: w.max(1),
            cod_arms: Default::default(),
        }
    }

    /// Whether `(owner, coid)` is taken: a live order of the owner uses it,
    /// or one of the last W accepted orders did.
    fn coid_taken(&self, owner: u64, coid: u64) -> bool {
        let first = self.next_id.saturating_sub(self.coid_window).max(1);
        self.orders
            .values()
            .any(|o| o.owner == owner && o.coid == coid)
            || self.accepted[(first - 1) as usize..].contains(&(owner, coid))
    }

    // ----- views for generators and tests ----------------------------------

    /// Engine time.
    pub fn now(&self) -> u64 {
        self.now
    }
    /// The id the next accepted order will get.
    pub fn next_order_id(&self) -> u64 {
        self.next_id
    }
    /// Number of live orders (resting and waiting stops).
    pub fn live_count(&self) -> usize {
        self.orders.len()
    }
    /// Live orders in id order.
    pub fn live_orders(&self) -> Vec<LiveOrder> {
        self.orders
            .values()
            .map(|o| LiveOrder {
                id: OrderId(o.id),
                owner: OwnerId(o.owner),
                client_order_id: ClientOrderId(o.coid),
                instrument: InstrumentId(o.inst),
                side: o.side,
                price: Price(o.price),
                remaining: Qty(o.remaining),
                visible: Qty(o.visible),
                resting: o.state == State::Resting,
            })
            .collect()
    }
    /// Last trade price.
    pub fn last_trade(&self, inst: InstrumentId) -> Option<u64> {
        self.insts.get(&inst.0).and_then(|i| i.last_trade)
    }
    /// Whether an instrument is halted.
    pub fn is_halted(&self, inst: InstrumentId) -> bool {
        self.insts.get(&inst.0).is_some_and(|i| i.halted)
    }
    /// Visible levels of one side, best first.
    pub fn book_side(&self, inst: InstrumentId, side: Side) -> Vec<LevelView> {
        self.insts
            .get(&inst.0)
            .map(|i| self.level_views(i, side, None))
            .unwrap_or_default()
    }

    /// Order ids of one side's queue at each level, best level first.
    pub fn queue_ids(&self, inst: InstrumentId, side: Side) -> Vec<Vec<OrderId>> {
        self.insts
            .get(&inst.0)
            .map(|i| {
                i.levels(side)
                    .into_iter()
                    .map(|(_, ids)| ids.iter().map(|&id| OrderId(id)).collect())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn level_views(&self, i: &Inst, side: Side, depth: Option<u32>) -> Vec<LevelView> {
        let n = depth.map_or(usize::MAX, |d| d as usize);
        i.levels(side)
            .into_iter()
            .take(n)
            .map(|(p, ids)| LevelView {
                price: Price(p),
                qty: Qty(ids.iter().map(|id| self.orders[id].visible).sum()),
                orders: ids.len() as u32,
            })
            .collect()
    }

    // ----- apply ------------------------------------------------------------

    /// Applies one input and returns the events the engine must produce.
    pub fn apply(&mut self, input: &Input) -> Vec<Ev> {
        let mut out = Vec::new();
        let now = match input.command {
            Command::Time { now } => {
                if now.0 < self.now {
                    rej(&mut out, RejectTarget::Time(now), RejectReason::InvalidTime);
                    return out;
                }
                now.0.max(input.now.0)
            }
            _ => input.now.0,
        };
        self.now = self.now.max(now);
        self.expire(&mut out);
        match input.command {
            Command::AddInstrument(spec) => self.add_instrument(spec, &mut out),
            Command::NewOrder(n) => self.new_order(&n, &mut out),
            Command::Cancel { owner, order_id } => self.cancel(owner.0, order_id.0, &mut out),
            Command::CancelByClientId {
                owner,
                client_order_id,
            } => self.cancel_by_client_id(owner.0, client_order_id, &mut out),
            Command::Replace {
                owner,
                order_id,
                price,
                qty,
                requeue,
            } => self.replace(
                owner.0,
                order_id.0,
                (price.map(|p| p.0), qty.map(|q| q.0)),
                requeue,
                &mut out,
            ),
            Command::MassCancel {
                owner,
                instrument,
                side,
            } => self.mass_cancel(owner.0, instrument, side, &mut out),
            Command::QueryOpenOrders { owner, instrument } => {
                if let Some(i) = instrument {
                    if !self.insts.contains_key(&i.0) {
                        rej(
                            &mut out,
                            RejectTarget::Instrument(i),
                            RejectReason::UnknownInstrument,
                        );
                        return out;
                    }
                }
                for o in self.orders.values() {
                    if o.owner != owner.0 || instrument.is_some_and(|i| i.0 != o.inst) {
                        continue;
                    }
                    let waiting = o.state == State::Waiting;
                    out.push(Ev::E(Event::OpenOrder {
                        order_id: OrderId(o.id),
                        owner,
                        client_order_id: engine::ClientOrderId(o.coid),
                        instrument: InstrumentId(o.inst),
                        side: o.side,
                        price: o.otype.has_price().then_some(Price(o.price)),
                        remaining: Qty(o.remaining),
                        visible: Qty(if waiting { 0 } else { o.visible }),
                        waiting_stop: waiting,
                    }));
                }
            }
            Command::Halt { instrument } => match self.insts.get_mut(&instrument.0) {
                None => rej(
                    &mut out,
                    RejectTarget::Instrument(instrument),
                    RejectReason::UnknownInstrument,
                ),
                // Unspecified by the spec; like resume, halting a halted
                // instrument is a no-op without an event.
                Some(i) if i.halted => {}
                Some(i) => {
                    i.halted = true;
                    out.push(Ev::E(Event::Halted {
                        instrument,
                        reason: HaltReason::Operator,
                    }));
                }
            },
            Command::Resume { instrument } => match self.insts.get_mut(&instrument.0) {
                None => rej(
                    &mut out,
                    RejectTarget::Instrument(instrument),
                    RejectReason::UnknownInstrument,
                ),
                // Unspecified by the spec; the engine answers a resume of a
                // running instrument with no event (a no-op).
                Some(i) if i.halted => {
                    i.halted = false;
                    out.push(Ev::E(Event::Resumed { instrument }));
                }
                Some(_) => {}
            },
            Command::Time { .. } => {}
            Command::QueryBook { instrument, depth } => match self.insts.get(&instrument.0) {
                None => rej(
                    &mut out,
                    RejectTarget::Instrument(instrument),
                    RejectReason::UnknownInstrument,
                ),
                Some(i) => out.push(Ev::Book {
                    instrument,
                    bids: self.level_views(i, Side::Buy, depth),
                    asks: self.level_views(i, Side::Sell, depth),
                }),
            },
            Command::CodArm { session, owner } => {
                let arm = (session, owner.0);
                if !self.cod_arms.contains(&arm) && self.cod_arms.len() >= engine::COD_ARMS_MAX {
                    rej(
                        &mut out,
                        RejectTarget::Session(session),
                        RejectReason::CapacityExceeded,
                    );
                } else {
                    self.cod_arms.insert(arm);
                }
            }
            Command::CodDisarm { session } => self.cod_arms.retain(|&(s, _)| s != session),
            Command::SessionsLost => {
                let owners: std::collections::BTreeSet<u64> = std::mem::take(&mut self.cod_arms)
                    .into_iter()
                    .map(|(_, o)| o)
                    .collect();
                for o in owners {
                    self.mass_cancel(o, None, None, &mut out);
                }
            }
            Command::OpenAccount(_)
            | Command::Transfer { .. }
            | Command::QueryBalance { .. }
            | Command::InstallHistory { .. }
            | Command::LookupTransfer { .. }
            | Command::GetAccountTransfers { .. } => {
                panic!("the reference does not model the ledger")
            }
        }
        out
    }

    /// Convention 10 / ARCHITECTURE.md 12: cancel every live order with
    /// expire_at ≤ now, by (expire_at, id).
    fn expire(&mut self, out: &mut Vec<Ev>) {
        let mut due: Vec<(u64, u64)> = self
            .orders
            .values()
            .filter_map(|o| o.expire_at.filter(|&e| e <= self.now).map(|e| (e, o.id)))
            .collect();
        due.sort();
        for (_, id) in due {
            let o = self.remove_order(id);
            canceled(out, &o, o.remaining, CancelReason::Expired);
        }
    }

    fn add_instrument(&mut self, s: InstrumentSpec, out: &mut Vec<Ev>) {
        let target = RejectTarget::Instrument(s.id);
        if self.insts.contains_key(&s.id.0) {
            return rej(out, target, RejectReason::InstrumentExists);
        }
        // Instrument 0 is no instrument; codes must be what text would make.
        let invalid = s.id.0 == 0
            || !s.symbol.is_valid()
            || !s.base.is_valid()
            || !s.quote.is_valid()
            || s.tick == 0
            || s.lot_size == 0
            || s.qty_min == 0
            || s.qty_min > s.qty_max
            || bad_price(s.reference_price.0, s.tick)
            || s.base == s.quote
            || s.maker_fee_bps > 10_000
            || s.taker_fee_bps > 10_000
            || (s.circuit_bps.is_some() && s.circuit_window_ns == 0)
            || s.open_orders_max == Some(0);
        if invalid {
            return rej(out, target, RejectReason::InvalidInstrument);
        }
        if self.insts.len() >= 16 {
            return rej(out, target, RejectReason::CapacityExceeded);
        }
        self.insts.insert(
            s.id.0,
            Inst {
                spec: s,
                halted: false,
                last_trade: None,
                anchor: None,
                bids: BTreeMap::new(),
                asks: BTreeMap::new(),
            },
        );
    }

    /// Removes a live order from the map and, if resting, from its level.
    fn remove_order(&mut self, id: u64) -> Ord {
        let o = self.orders.remove(&id).expect("live order");
        if o.state == State::Resting {
            let side = self.insts.get_mut(&o.inst).unwrap().side_mut(o.side);
            let level = side.get_mut(&o.price).expect("level");
            level.retain(|&x| x != id);
            if level.is_empty() {
                side.remove(&o.price);
            }
        }
        o
    }

    /// Puts an order at the back of its level and into the live map.
    fn rest(&mut self, mut o: Ord) {
        o.state = State::Resting;
        self.insts
            .get_mut(&o.inst)
            .unwrap()
            .side_mut(o.side)
            .entry(o.price)
            .or_default()
            .push(o.id);
        self.orders.insert(o.id, o);
    }

    /// Whether a limit price would trade against the opposite side's best.
    fn crosses(&self, inst: u32, side: Side, price: u64) -> bool {
        let i = &self.insts[&inst];
        match side {
            Side::Buy => i.best(Side::Sell).is_some_and(|a| a <= price),
            Side::Sell => i.best(Side::Buy).is_some_and(|b| b >= price),
        }
    }

    fn new_order(&mut self, n: &NewOrder, out: &mut Vec<Ev>) {
        let target = RejectTarget::ClientOrder(n.client_order_id);
        let (owner, coid) = (n.owner.0, n.client_order_id.0);
        if self.coid_taken(owner, coid) {
            return rej(out, target, RejectReason::DuplicateClientOrderId);
        }
        let Some(inst) = self.insts.get(&n.instrument.0) else {
            return rej(out, target, RejectReason::UnknownInstrument);
        };
        let spec = inst.spec;
        let ot = n.order_type;
        // invalid_price: the price, then the trigger price.
        let price = match (ot.has_price(), n.price) {
            (true, Some(p)) if !bad_price(p.0, spec.tick) => p.0,
            (false, None) => 0,
            _ => return rej(out, target, RejectReason::InvalidPrice),
        };
        let trigger = match (ot.has_trigger(), n.trigger_price) {
            (true, Some(p)) if !bad_price(p.0, spec.tick) => p.0,
            (false, None) => 0,
            _ => return rej(out, target, RejectReason::InvalidPrice),
        };
        // invalid_qty: the qty, then the display qty.
        let qty = n.qty.0;
        if qty < spec.qty_min || qty > spec.qty_max {
            return rej(out, target, RejectReason::InvalidQty);
        }
        if let Some(d) = n.display_qty {
            let market = matches!(ot, OrderType::Market | OrderType::Stop);
            if market || d.0 < spec.qty_min || d.0 > qty {
                return rej(out, target, RejectReason::InvalidQty);
            }
        }
        // overflow
        if (ot.has_price() && price.checked_mul(qty).is_none())
            || qty.checked_mul(spec.lot_size).is_none()
        {
            return rej(out, target, RejectReason::Overflow);
        }
        if inst.halted {
            return rej(out, target, RejectReason::InstrumentHalted);
        }
        if ot.has_price() && !inst.in_band(price) {
            return rej(out, target, RejectReason::PriceOutOfBand);
        }
        // limit_exceeded: open orders (waiting stops included), then notional.
        if let Some(max) = spec.open_orders_max {
            let open = self
                .orders
                .values()
                .filter(|o| o.owner == owner && o.inst == spec.id.0)
                .count();
            if open >= max as usize {
                return rej(out, target, RejectReason::LimitExceeded);
            }
        }
        if let Some(max) = spec.notional_max {
            let notional = if ot.has_price() {
                Some(price as u128 * qty as u128)
            } else {
                inst.band_edges().map(|(lo, hi)| {
                    let edge = if n.side == Side::Buy { hi } else { lo };
                    edge as u128 * qty as u128
                })
            };
            match notional {
                Some(v) if v <= max as u128 => {}
                _ => return rej(out, target, RejectReason::LimitExceeded),
            }
        }
        // post_only: only limit orders may carry it; never crosses.
        if n.post_only && (ot != OrderType::Limit || self.crosses(spec.id.0, n.side, price)) {
            return rej(out, target, RejectReason::PostOnlyWouldCross);
        }
        let o = Ord {
            id: self.next_id,
            owner,
            coid: n.client_order_id.0,
            inst: spec.id.0,
            side: n.side,
            otype: ot,
            price,
            trigger,
            remaining: qty,
            visible: n.display_qty.map_or(qty, |d| d.0.min(qty)),
            display: n.display_qty.map(|d| d.0),
            tif: n.tif,
            expire_at: if n.tif == Tif::Gtd {
                n.expire_at.map(|t| t.0)
            } else {
                None
            },
            post_only: n.post_only,
            stp: n.stp,
            state: State::Resting,
        };
        if n.tif == Tif::Fok && !ot.has_trigger() && !self.fok_fillable(&o) {
            return rej(out, target, RejectReason::FokNotFillable);
        }
        // Accepted.
        self.next_id += 1;
        self.accepted.push((owner, coid));
        out.push(Ev::E(Event::Accepted {
            order_id: OrderId(o.id),
            client_order_id: n.client_order_id,
            owner: n.owner,
            instrument: n.instrument,
            side: n.side,
            price: ot.has_price().then_some(Price(price)),
            qty: n.qty,
        }));
        let mut queue = VecDeque::new();
        if ot.has_trigger() {
            let last = self.insts[&o.inst].last_trade;
            let holds = last.is_some_and(|p| match o.side {
                Side::Buy => p >= trigger,
                Side::Sell => p <= trigger,
            });
            let mut o = o;
            if holds {
                o.state = State::Queued;
                queue.push_back(o.id);
                self.orders.insert(o.id, o);
            } else if o.expire_at.is_some_and(|e| e <= self.now) {
                canceled(out, &o, o.remaining, CancelReason::Expired);
            } else {
                o.state = State::Waiting;
                self.orders.insert(o.id, o);
            }
        } else {
            self.execute(o, out, &mut queue);
        }
        self.drain(out, &mut queue);
    }

    /// Convention 5 / ARCHITECTURE.md 8: run the real match on a clone; the
    /// order is fillable iff trades alone fill it.
    fn fok_fillable(&self, o: &Ord) -> bool {
        let mut trial = self.clone();
        let mut t = o.clone();
        let mut evs = Vec::new();
        let mut queue = VecDeque::new();
        let (limit, band) = trial.limits(&t);
        trial.match_taker(&mut t, limit, band, &mut evs, &mut queue);
        let traded: u64 = evs
            .iter()
            .filter_map(|e| match e {
                Ev::E(Event::Trade {
                    taker_order_id,
                    qty,
                    ..
                }) if taker_order_id.0 == o.id => Some(qty.0),
                _ => None,
            })
            .sum();
        traded == o.remaining
    }

    /// The limit price and the band (market orders, computed now) of a taker.
    fn limits(&self, t: &Ord) -> (Option<u64>, Option<(u64, u64)>) {
        if t.is_market() {
            (None, self.insts[&t.inst].band_edges())
        } else {
            (Some(t.price), None)
        }
    }

    /// Matches an incoming order, then disposes of its remainder (cancel or rest).
    fn execute(&mut self, mut t: Ord, out: &mut Vec<Ev>, queue: &mut VecDeque<u64>) {
        let (limit, band) = self.limits(&t);
        let end = self.match_taker(&mut t, limit, band, out, queue);
        if end != End::Done || t.remaining == 0 {
            return;
        }
        if t.is_market() || matches!(t.tif, Tif::Ioc | Tif::Fok) {
            canceled(out, &t, t.remaining, CancelReason::IocRemainder);
        } else if t.expire_at.is_some_and(|e| e <= self.now) {
            canceled(out, &t, t.remaining, CancelReason::Expired);
        } else {
            t.visible = t.display.map_or(t.remaining, |d| d.min(t.remaining));
            self.rest(t);
        }
    }

    /// Fires queued stops one by one (ARCHITECTURE.md 10).
    fn drain(&mut self, out: &mut Vec<Ev>, queue: &mut VecDeque<u64>) {
        while let Some(id) = queue.pop_front() {
            let s = self.orders.remove(&id).expect("queued stop");
            out.push(Ev::E(Event::Triggered {
                order_id: OrderId(id),
                owner: OwnerId(s.owner),
            }));
            if self.insts[&s.inst].halted {
                canceled(out, &s, s.remaining, CancelReason::CircuitBreaker);
                continue;
            }
            if s.tif == Tif::Fok && !self.fok_fillable(&s) {
                canceled(out, &s, s.remaining, CancelReason::IocRemainder);
                continue;
            }
            self.execute(s, out, queue);
        }
    }

    /// The matching loop: price-time priority, STP, circuit breaker, icebergs,
    /// stop triggering. Trades at the maker's price.
    fn match_taker(
        &mut self,
        t: &mut Ord,
        limit: Option<u64>,
        band: Option<(u64, u64)>,
        out: &mut Vec<Ev>,
        queue: &mut VecDeque<u64>,
    ) -> End {
        let iid = t.inst;
        let opp = t.side.opposite();
        loop {
            if t.remaining == 0 {
                return End::Done;
            }
            let inst = &self.insts[&iid];
            let Some(px) = inst.best(opp) else {
                return End::Done;
            };
            let ok = match t.side {
                Side::Buy => limit.is_none_or(|l| px <= l),
                Side::Sell => limit.is_none_or(|l| px >= l),
            } && band.is_none_or(|(lo, hi)| lo <= px && px <= hi);
            if !ok {
                return End::Done;
            }
            let mid = inst.side(opp)[&px][0];
            let m = self.orders[&mid].clone();
            if m.owner == t.owner && t.stp != Stp::None {
                match t.stp {
                    Stp::CancelTaker => {
                        canceled(out, t, t.remaining, CancelReason::Stp);
                        t.remaining = 0;
                        return End::TakerCanceled;
                    }
                    Stp::CancelMaker => {
                        self.remove_order(mid);
                        canceled(out, &m, m.remaining, CancelReason::Stp);
                        continue;
                    }
                    Stp::CancelBoth => {
                        self.remove_order(mid);
                        canceled(out, &m, m.remaining, CancelReason::Stp);
                        canceled(out, t, t.remaining, CancelReason::Stp);
                        t.remaining = 0;
                        return End::TakerCanceled;
                    }
                    Stp::Decrement => {
                        let x = t.remaining.min(m.visible);
                        if m.remaining == x {
                            self.remove_order(mid);
                            canceled(out, &m, x, CancelReason::Stp);
                        } else {
                            out.push(Ev::E(Event::Reduced {
                                order_id: OrderId(mid),
                                owner: OwnerId(m.owner),
                                qty: Qty(x),
                                reason: CancelReason::Stp,
                            }));
                            self.take_from_maker(mid, x);
                        }
                        t.remaining -= x;
                        if t.remaining == 0 {
                            canceled(out, t, x, CancelReason::Stp);
                            return End::TakerCanceled;
                        }
                        out.push(Ev::E(Event::Reduced {
                            order_id: OrderId(t.id),
                            owner: OwnerId(t.owner),
                            qty: Qty(x),
                            reason: CancelReason::Stp,
                        }));
                        continue;
                    }
                    Stp::None => unreachable!(),
                }
            }
            // Circuit breaker (convention 9, ARCHITECTURE.md 11).
            let inst = self.insts.get_mut(&iid).unwrap();
            if let Some(bps) = inst.spec.circuit_bps {
                let w = self.now / inst.spec.circuit_window_ns;
                let anchor = match inst.anchor {
                    Some((k, a)) if k == w => a,
                    _ => {
                        let a = inst.reference();
                        inst.anchor = Some((w, a));
                        a
                    }
                };
                if (px as u128).abs_diff(anchor as u128) * 10_000 > anchor as u128 * bps as u128 {
                    inst.halted = true;
                    out.push(Ev::E(Event::Halted {
                        instrument: InstrumentId(iid),
                        reason: HaltReason::CircuitBreaker,
                    }));
                    canceled(out, t, t.remaining, CancelReason::CircuitBreaker);
                    t.remaining = 0;
                    return End::Halted;
                }
            }
            let q = t.remaining.min(m.visible);
            out.push(Ev::E(Event::Trade {
                instrument: InstrumentId(iid),
                price: Price(px),
                qty: Qty(q),
                maker_order_id: OrderId(mid),
                taker_order_id: OrderId(t.id),
                maker_owner: OwnerId(m.owner),
                taker_owner: OwnerId(t.owner),
                taker_side: t.side,
            }));
            inst.last_trade = Some(px);
            t.remaining -= q;
            if m.remaining == q {
                self.remove_order(mid);
            } else {
                self.take_from_maker(mid, q);
            }
            // Stops this trade triggers, in acceptance order.
            for o in self.orders.values_mut() {
                let hit = o.inst == iid
                    && o.state == State::Waiting
                    && match o.side {
                        Side::Buy => px >= o.trigger,
                        Side::Sell => px <= o.trigger,
                    };
                if hit {
                    o.state = State::Queued;
                    queue.push_back(o.id);
                }
            }
        }
    }

    /// Takes `x` (< remaining) from a resting maker's visible slice; a used-up
    /// slice is replenished at the back of its level.
    fn take_from_maker(&mut self, id: u64, x: u64) {
        let o = self.orders.get_mut(&id).unwrap();
        o.remaining -= x;
        o.visible -= x;
        if o.visible == 0 {
            o.visible = o.display.map_or(o.remaining, |d| d.min(o.remaining));
            let (inst, side, price) = (o.inst, o.side, o.price);
            let level = self
                .insts
                .get_mut(&inst)
                .unwrap()
                .side_mut(side)
                .get_mut(&price)
                .unwrap();
            level.retain(|&x| x != id);
            level.push(id);
        }
    }

    fn cancel(&mut self, owner: u64, id: u64, out: &mut Vec<Ev>) {
        let target = RejectTarget::Order(OrderId(id));
        let Some(o) = self.orders.get(&id) else {
            return rej(out, target, RejectReason::UnknownOrder);
        };
        if o.owner != owner {
            return rej(out, target, RejectReason::NotOrderOwner);
        }
        let o = self.remove_order(id);
        canceled(out, &o, o.remaining, CancelReason::User);
    }

    fn mass_cancel(
        &mut self,
        owner: u64,
        inst: Option<InstrumentId>,
        side: Option<Side>,
        out: &mut Vec<Ev>,
    ) {
        if let Some(i) = inst {
            if !self.insts.contains_key(&i.0) {
                return rej(
                    out,
                    RejectTarget::Instrument(i),
                    RejectReason::UnknownInstrument,
                );
            }
        }
        let ids: Vec<u64> = self
            .orders
            .values()
            .filter(|o| {
                o.owner == owner
                    && inst.is_none_or(|i| i.0 == o.inst)
                    && side.is_none_or(|s| s == o.side)
            })
            .map(|o| o.id)
            .collect();
        for id in ids {
            let o = self.remove_order(id);
            canceled(out, &o, o.remaining, CancelReason::MassCancel);
        }
    }

    /// The live order (resting or waiting) of `owner` entered as `coid`:
    /// a plain search, no index (the engine keeps a map).
    fn cancel_by_client_id(&mut self, owner: u64, coid: ClientOrderId, out: &mut Vec<Ev>) {
        let found = self
            .orders
            .values()
            .find(|o| o.owner == owner && o.coid == coid.0)
            .map(|o| o.id);
        let Some(id) = found else {
            let target = RejectTarget::ClientOrder(coid);
            return rej(out, target, RejectReason::UnknownOrder);
        };
        let o = self.remove_order(id);
        canceled(out, &o, o.remaining, CancelReason::User);
    }

    fn replace(
        &mut self,
        owner: u64,
        id: u64,
        (price, qty): (Option<u64>, Option<u64>),
        requeue: bool,
        out: &mut Vec<Ev>,
    ) {
        let target = RejectTarget::Order(OrderId(id));
        let Some(o) = self.orders.get(&id).filter(|o| o.state == State::Resting) else {
            return rej(out, target, RejectReason::UnknownOrder);
        };
        if o.owner != owner {
            return rej(out, target, RejectReason::NotOrderOwner);
        }
        let inst = &self.insts[&o.inst];
        let spec = inst.spec;
        if price.is_some_and(|p| bad_price(p, spec.tick)) {
            return rej(out, target, RejectReason::InvalidPrice);
        }
        let new_price = price.unwrap_or(o.price);
        let new_qty = qty.unwrap_or(o.remaining);
        // The spec leaves open whether an omitted qty is checked; the engine
        // checks the resulting remaining quantity (a partly filled order left
        // below qty_min cannot be replaced without a valid qty).
        // A replace that changes nothing is refused as `invalid_qty`
        // (ARCHITECTURE.md, semantics 17).
        if (price.is_none() && qty.is_none()) || new_qty < spec.qty_min || new_qty > spec.qty_max {
            return rej(out, target, RejectReason::InvalidQty);
        }
        if new_price.checked_mul(new_qty).is_none() || new_qty.checked_mul(spec.lot_size).is_none()
        {
            return rej(out, target, RejectReason::Overflow);
        }
        if inst.halted {
            return rej(out, target, RejectReason::InstrumentHalted);
        }
        if new_price != o.price && !inst.in_band(new_price) {
            return rej(out, target, RejectReason::PriceOutOfBand);
        }
        if spec
            .notional_max
            .is_some_and(|max| new_price as u128 * new_qty as u128 > max as u128)
        {
            return rej(out, target, RejectReason::LimitExceeded);
        }
        if o.post_only && self.crosses(o.inst, o.side, new_price) {
            return rej(out, target, RejectReason::PostOnlyWouldCross);
        }
        let keep = new_price == o.price && new_qty <= o.remaining && !requeue;
        out.push(Ev::E(Event::Replaced {
            order_id: OrderId(id),
            owner: OwnerId(o.owner),
            side: o.side,
            price: Price(new_price),
            qty: Qty(new_qty),
            priority_kept: keep,
        }));
        if keep {
            let o = self.orders.get_mut(&id).unwrap();
            o.remaining = new_qty;
            o.visible = o.visible.min(new_qty);
            return;
        }
        let mut o = self.remove_order(id);
        o.price = new_price;
        o.remaining = new_qty;
        o.visible = o.display.map_or(new_qty, |d| d.min(new_qty));
        let mut queue = VecDeque::new();
        self.execute(o, out, &mut queue);
        self.drain(out, &mut queue);
    }
}
