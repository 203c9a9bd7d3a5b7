//! Engine snapshots: the whole state as bytes, and back.
//!
//! Pure (no I/O): the caller decides where the bytes go. The format is a
//! little-endian field-by-field dump, versioned by a magic and a version
//! number. `restore` rebuilds every structure into an engine freshly
//! allocated with the caller's `EngineConfig`, refuses a snapshot that does
//! not fit those capacities, and runs `validate()` before returning, so a
//! snapshot that decodes but is inconsistent is an error, never a running
//! engine with broken invariants. Hash-table layouts are rebuilt by
//! re-insertion (the state hash does not depend on them).

use super::*;
use crate::history::{decode_record, encode_record, RECORD_LEN};
use crate::index::OwnerCoids;
use crate::ledger::{Account, TState, Transfer};
use crate::transfers::NIL as NO_SLOT;

const MAGIC: &[u8; 8] = b"BOURSESN";
/// 2: each open-chain member carries its actor (ledger authorization).
/// 3: owner records carry their newest order and a free list; the client
/// order id window's entries replace the blocks of every id ever used; the
/// ledger's hot transfer store (slab with free slots and failed ids as
/// records, eviction ring, indexed expiry heap, ledger_seq, the records hash
/// and the installed history run) replaces the append-only transfers.
/// 4: the cancel-on-disconnect arms follow the ledger (a version-3
/// snapshot restores with none).
const VERSION: u32 = 4;

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// The bytes end before the structure does.
    Truncated {
        /// Byte offset where more was needed.
        offset: usize,
    },
    /// Not a snapshot, or another format version.
    BadHeader,
    /// A value is out of range (names the field).
    BadValue {
        /// Which field.
        field: &'static str,
        /// Byte offset of the value.
        offset: usize,
    },
    /// The snapshot holds more than this engine's capacities allow.
    Capacity {
        /// Which capacity.
        what: &'static str,
    },
    /// The restored state breaks an invariant.
    Invalid(String),
    /// Bytes left over after the end of the structure.
    TrailingBytes {
        /// Byte offset of the first extra byte.
        offset: usize,
    },
}

impl core::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SnapshotError::Truncated { offset } => write!(f, "snapshot truncated at byte {offset}"),
            SnapshotError::BadHeader => {
                f.write_str("not a bourse engine snapshot (bad magic or version)")
            }
            SnapshotError::BadValue { field, offset } => {
                write!(f, "snapshot value out of range: {field} at byte {offset}")
            }
            SnapshotError::Capacity { what } => {
                write!(f, "snapshot does not fit this engine's capacity: {what}")
            }
            SnapshotError::Invalid(m) => write!(f, "restored state is inconsistent: {m}"),
            SnapshotError::TrailingBytes { offset } => {
                write!(f, "snapshot has trailing bytes at {offset}")
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        self.u8(v.is_some() as u8);
        self.u32(v.unwrap_or(0));
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        self.u8(v.is_some() as u8);
        self.u64(v.unwrap_or(0));
    }
}

struct R<'a> {
    b: &'a [u8],
    at: usize,
}

type Res<T> = Result<T, SnapshotError>;

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if self.b.len() - self.at < n {
            return Err(SnapshotError::Truncated { offset: self.at });
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Res<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn u128(&mut self) -> Res<u128> {
        Ok(u128::from_le_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }
    fn bool(&mut self, field: &'static str) -> Res<bool> {
        let at = self.at;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(SnapshotError::BadValue { field, offset: at }),
        }
    }
    fn len(&mut self, max: usize, what: &'static str) -> Res<usize> {
        let n = self.u64()?;
        if n > max as u64 {
            return Err(SnapshotError::Capacity { what });
        }
        Ok(n as usize)
    }
    fn opt_u32(&mut self, field: &'static str) -> Res<Option<u32>> {
        let some = self.bool(field)?;
        let v = self.u32()?;
        Ok(some.then_some(v))
    }
    fn opt_u64(&mut self, field: &'static str) -> Res<Option<u64>> {
        let some = self.bool(field)?;
        let v = self.u64()?;
        Ok(some.then_some(v))
    }
    fn arr<const N: usize>(&mut self) -> Res<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn enum_u8<T>(&mut self, field: &'static str, f: impl Fn(u8) -> Option<T>) -> Res<T> {
        let at = self.at;
        let v = self.u8()?;
        f(v).ok_or(SnapshotError::BadValue { field, offset: at })
    }
}

fn side_of(v: u8) -> Option<Side> {
    match v {
        0 => Some(Side::Buy),
        1 => Some(Side::Sell),
        _ => None,
    }
}
fn otype_of(v: u8) -> Option<OrderType> {
    [
        OrderType::Limit,
        OrderType::Market,
        OrderType::Stop,
        OrderType::StopLimit,
    ]
    .get(v as usize)
    .copied()
}
fn tif_of(v: u8) -> Option<Tif> {
    [Tif::Gtc, Tif::Ioc, Tif::Fok, Tif::Gtd]
        .get(v as usize)
        .copied()
}
fn stp_of(v: u8) -> Option<Stp> {
    [
        Stp::None,
        Stp::CancelTaker,
        Stp::CancelMaker,
        Stp::CancelBoth,
        Stp::Decrement,
    ]
    .get(v as usize)
    .copied()
}
fn state_of(v: u8) -> Option<OrderState> {
    [
        OrderState::Free,
        OrderState::Active,
        OrderState::Resting,
        OrderState::Stop,
    ]
    .get(v as usize)
    .copied()
}
fn halt_of(v: u8) -> Option<Option<HaltReason>> {
    match v {
        0 => Some(None),
        1 => Some(Some(HaltReason::Operator)),
        2 => Some(Some(HaltReason::CircuitBreaker)),
        _ => None,
    }
}
fn ostate_code(s: OrderState) -> u8 {
    match s {
        OrderState::Free => 0,
        OrderState::Active => 1,
        OrderState::Resting => 2,
        OrderState::Stop => 3,
    }
}

fn w_spec(w: &mut W, s: &InstrumentSpec) {
    w.u32(s.id.0);
    w.bytes(&s.symbol.0);
    w.bytes(&s.base.0);
    w.bytes(&s.quote.0);
    for v in [
        s.tick,
        s.lot_size,
        s.qty_min,
        s.qty_max,
        s.reference_price.0,
        s.circuit_window_ns,
    ] {
        w.u64(v);
    }
    w.opt_u32(s.band_bps);
    w.opt_u32(s.circuit_bps);
    w.u32(s.maker_fee_bps);
    w.u32(s.taker_fee_bps);
    w.u128(s.fee_account.0);
    w.u8(s.settle as u8);
    w.opt_u32(s.open_orders_max);
    w.opt_u64(s.notional_max);
}

fn r_spec(r: &mut R) -> Res<InstrumentSpec> {
    Ok(InstrumentSpec {
        id: InstrumentId(r.u32()?),
        symbol: Symbol(r.arr()?),
        base: Asset(r.arr()?),
        quote: Asset(r.arr()?),
        tick: r.u64()?,
        lot_size: r.u64()?,
        qty_min: r.u64()?,
        qty_max: r.u64()?,
        reference_price: Price(r.u64()?),
        circuit_window_ns: r.u64()?,
        band_bps: r.opt_u32("band_bps")?,
        circuit_bps: r.opt_u32("circuit_bps")?,
        maker_fee_bps: r.u32()?,
        taker_fee_bps: r.u32()?,
        fee_account: AccountId(r.u128()?),
        settle: r.bool("settle")?,
        open_orders_max: r.opt_u32("open_orders_max")?,
        notional_max: r.opt_u64("notional_max")?,
    })
}

fn w_entries(w: &mut W, v: &[Entry]) {
    w.len(v.len());
    for e in v {
        w.u64(e.key);
        w.u32(e.slot);
    }
}

fn r_entries(r: &mut R, into: &mut Vec<Entry>, what: &'static str) -> Res<()> {
    let n = r.len(into.capacity(), what)?;
    into.clear();
    for _ in 0..n {
        into.push(Entry {
            key: r.u64()?,
            slot: r.u32()?,
        });
    }
    Ok(())
}

fn w_map_u32(w: &mut W, m: &FixedMap<u32>) {
    w.len(m.len());
    for (k, v) in m.iter() {
        w.u128(k);
        w.u32(v);
    }
}

fn r_map_u32(r: &mut R, m: &mut FixedMap<u32>, what: &'static str) -> Res<()> {
    let n = r.len(m.capacity(), what)?;
    for _ in 0..n {
        let (k, v) = (r.u128()?, r.u32()?);
        if !m.insert(k, v) {
            return Err(SnapshotError::Capacity { what });
        }
    }
    Ok(())
}

fn w_u32s(w: &mut W, v: &[u32]) {
    w.len(v.len());
    for &x in v {
        w.u32(x);
    }
}

fn r_u32s(r: &mut R, into: &mut Vec<u32>, what: &'static str) -> Res<()> {
    let n = r.len(into.capacity(), what)?;
    into.clear();
    for _ in 0..n {
        into.push(r.u32()?);
    }
    Ok(())
}

fn w_transfer_spec(w: &mut W, t: &TransferSpec) {
    w.u128(t.id.0);
    w.u128(t.debit_account.0);
    w.u128(t.credit_account.0);
    w.u128(t.amount.0);
    w.u16(t.code);
    w.u16(t.flags.0);
    w.u128(t.pending_id.0);
    w.u64(t.timeout_ns);
}

fn r_transfer_spec(r: &mut R) -> Res<TransferSpec> {
    Ok(TransferSpec {
        id: TransferId(r.u128()?),
        debit_account: AccountId(r.u128()?),
        credit_account: AccountId(r.u128()?),
        amount: Amount(r.u128()?),
        code: r.u16()?,
        flags: TransferFlags(r.u16()?),
        pending_id: TransferId(r.u128()?),
        timeout_ns: r.u64()?,
    })
}

/// The ledger's transfer part (see `snapshot`): counters, the installed
/// run, the slab, free list, eviction ring and expiry heap. The index and
/// the account lists are rebuilt, not read.
fn r_hot(r: &mut R, l: &mut crate::ledger::Ledger) -> Res<()> {
    l.ledger_seq = r.u64()?;
    l.records_hash = r.u128()?;
    let has = r.bool("installed")?;
    let (run, through, checksum) = (r.u64()?, Seq(r.u64()?), r.u128()?);
    l.installed = has.then_some((run, through, checksum));
    let n = r.len(l.hot.slots.capacity(), "transfers_max")?;
    for _ in 0..n {
        if !r.bool("slot_live")? {
            l.hot.slots.push(Transfer::free_value());
            continue;
        }
        let at = r.at;
        let rec = decode_record(&r.arr::<RECORD_LEN>()?).map_err(|_| SnapshotError::BadValue {
            field: "transfer_record",
            offset: at,
        })?;
        if rec.spec.id.0 == 0 {
            return Err(SnapshotError::BadValue {
                field: "transfer_id",
                offset: at,
            });
        }
        let (debit, credit, deadline) = (r.u32()?, r.u32()?, Timestamp(r.u64()?));
        l.hot
            .slots
            .push(Transfer::new(rec, debit, credit, deadline));
        if !l
            .hot
            .index
            .insert(rec.spec.id.0, (l.hot.slots.len() - 1) as u32)
        {
            return Err(SnapshotError::Capacity {
                what: "transfers_max",
            });
        }
    }
    r_u32s(r, &mut l.hot.free, "transfers_max")?;
    let n = r.len(l.hot.ring.capacity(), "transfers_max")?;
    for _ in 0..n {
        let e = (r.u32()?, Seq(r.u64()?));
        l.hot.ring.push_back(e);
    }
    let n = r.len(l.hot.heap.capacity(), "transfers_max")?;
    for _ in 0..n {
        l.hot.heap.push((Timestamp(r.u64()?), r.u64()?, r.u32()?));
    }
    Ok(())
}

/// Relinks what `r_hot` read once its slot references are known in range.
fn relink_hot(l: &mut crate::ledger::Ledger) -> Result<(), SnapshotError> {
    let slots = l.hot.slots.len();
    let bad = |what: &str| Err(SnapshotError::Invalid(format!("{what} out of range")));
    for i in 0..l.hot.heap.len() {
        let slot = l.hot.heap[i].2 as usize;
        if slot >= slots || l.hot.slots[slot].is_free() || l.hot.slots[slot].heap_pos != NO_SLOT {
            return bad("expiry heap slot");
        }
        l.hot.slots[slot].heap_pos = i as u32;
    }
    if l.hot
        .free
        .iter()
        .any(|&s| s as usize >= slots || !l.hot.slots[s as usize].is_free())
        || l.hot.ring.iter().any(|&(s, _)| s as usize >= slots)
        || slots - l.hot.len() != l.hot.free.len()
    {
        return bad("hot store slot");
    }
    let mut stored: Vec<(u64, u32)> = (0..slots as u32)
        .filter(|&s| {
            let t = &l.hot.slots[s as usize];
            !t.is_free() && !matches!(t.rec.state, TState::Failed(_))
        })
        .map(|s| (l.hot.slots[s as usize].rec.ledger_seq, s))
        .collect();
    stored.sort_unstable();
    for (_, s) in stored {
        l.hot.link(s);
    }
    Ok(())
}

/// An actor: a byte (0 admin, 1 + n for n owners), then its n owners.
fn w_actor(w: &mut W, a: &Actor) {
    match a {
        Actor::Admin => w.u8(0),
        Actor::Owners(set) => {
            w.u8(1 + set.as_slice().len() as u8);
            for o in set.as_slice() {
                w.u64(o.0);
            }
        }
    }
}

fn r_actor(r: &mut R) -> Res<Actor> {
    let at = r.at;
    let n = match r.u8()? {
        0 => return Ok(Actor::Admin),
        b if (b as usize) <= 1 + ACTOR_OWNERS_MAX => b as usize - 1,
        _ => {
            return Err(SnapshotError::BadValue {
                field: "actor",
                offset: at,
            })
        }
    };
    let mut ids = [OwnerId(0); ACTOR_OWNERS_MAX];
    for id in ids.iter_mut().take(n) {
        *id = OwnerId(r.u64()?);
    }
    Ok(Actor::owners(&ids[..n]).expect("at most ACTOR_OWNERS_MAX"))
}

/// The ledger: accounts, assets, escrows, trading accounts, the hot
/// transfer store (slab, free list, eviction ring, expiry heap) and the
/// open linked chain with its actors.
fn w_ledger(w: &mut W, l: &crate::ledger::Ledger) {
    w.len(l.accounts.len());
    for a in &l.accounts {
        w.u128(a.id.0);
        w.u64(a.owner.0);
        w.u32(a.asset);
        w.u16(a.flags.0);
        w.u128(a.debits_posted);
        w.u128(a.credits_posted);
        w.u128(a.debits_pending);
        w.u128(a.credits_pending);
    }
    w_map_u32(w, &l.account_index);
    w.len(l.assets.len());
    for a in &l.assets {
        w.bytes(&a.0);
    }
    w_map_u32(w, &l.asset_index);
    w_u32s(w, &l.escrow);
    w_map_u32(w, &l.trading);
    w.u64(l.ledger_seq);
    w.u128(l.records_hash);
    let (run, through, checksum) = l.installed.unwrap_or((0, Seq(0), 0));
    w.u8(l.installed.is_some() as u8);
    w.u64(run);
    w.u64(through.0);
    w.u128(checksum);
    w.len(l.hot.slots.len());
    let mut rec = [0u8; RECORD_LEN];
    for t in &l.hot.slots {
        w.u8(!t.is_free() as u8);
        if !t.is_free() {
            encode_record(&t.rec, &mut rec);
            w.bytes(&rec);
            w.u32(t.debit);
            w.u32(t.credit);
            w.u64(t.deadline.0);
        }
    }
    w_u32s(w, &l.hot.free);
    w.len(l.hot.ring.len());
    for &(slot, cs) in &l.hot.ring {
        w.u32(slot);
        w.u64(cs.0);
    }
    w.len(l.hot.heap.len());
    for &(d, ls, slot) in &l.hot.heap {
        w.u64(d.0);
        w.u64(ls);
        w.u32(slot);
    }
    w.len(l.chain.len());
    for (t, a) in l.chain.iter().zip(&l.chain_actors) {
        w_transfer_spec(w, t);
        w_actor(w, a);
    }
}

/// Reads what `w_ledger` wrote into a freshly built ledger.
fn r_ledger(r: &mut R, l: &mut crate::ledger::Ledger) -> Res<()> {
    let n = r.len(l.accounts.capacity(), "accounts_max")?;
    for _ in 0..n {
        l.accounts.push(Account {
            id: AccountId(r.u128()?),
            owner: OwnerId(r.u64()?),
            asset: r.u32()?,
            flags: AccountFlags(r.u16()?),
            debits_posted: r.u128()?,
            credits_posted: r.u128()?,
            debits_pending: r.u128()?,
            credits_pending: r.u128()?,
        });
    }
    r_map_u32(r, &mut l.account_index, "accounts_max")?;
    let n = r.len(l.assets.capacity(), "assets_max")?;
    for _ in 0..n {
        l.assets.push(Asset(r.arr()?));
    }
    r_map_u32(r, &mut l.asset_index, "assets_max")?;
    r_u32s(r, &mut l.escrow, "assets_max")?;
    r_map_u32(r, &mut l.trading, "accounts_max")?;
    r_hot(r, l)?;
    let n = r.len(l.chain.capacity(), "batch_max")?;
    for _ in 0..n {
        l.chain.push(r_transfer_spec(r)?);
        l.chain_actors.push(r_actor(r)?);
    }
    Ok(())
}

impl Engine {
    /// The whole state as bytes (allocates; call it between commands).
    pub fn snapshot(&self) -> Vec<u8> {
        assert!(
            self.triggered_batch.is_empty() && self.fire_queue.is_empty(),
            "snapshot in the middle of a command"
        );
        let mut w = W(Vec::with_capacity(1 << 16));
        w.bytes(MAGIC);
        w.u32(VERSION);
        w.u64(self.now.0);
        w.u64(self.next_order_id);
        self.write_instruments(&mut w);
        self.write_orders(&mut w);
        self.write_levels(&mut w);
        self.write_owners_and_coids(&mut w);
        w_map_u32(&mut w, &self.open_counts);
        w_u32s(&mut w, &self.heap);
        w_ledger(&mut w, &self.ledger);
        w.len(self.cod_arms.len());
        for &(s, o) in &self.cod_arms {
            w.u64(s);
            w.u64(o);
        }
        w.0
    }

    /// Each instrument: spec, book sides, stop lists, trading state, ledger slots.
    fn write_instruments(&self, w: &mut W) {
        w.len(self.instrument_count);
        for i in &self.instruments[..self.instrument_count] {
            w_spec(w, &i.spec);
            w_entries(w, &i.bids);
            w_entries(w, &i.asks);
            w_entries(w, &i.buy_stops);
            w_entries(w, &i.sell_stops);
            w.opt_u64(i.last_trade.map(|p| p.0));
            w.u8(match i.halted {
                None => 0,
                Some(HaltReason::Operator) => 1,
                Some(HaltReason::CircuitBreaker) => 2,
            });
            w.opt_u64(i.window);
            w.u64(i.anchor.0);
            w.u32(i.base_asset);
            w.u32(i.quote_asset);
            w.u32(i.fee_slot);
        }
    }

    /// The order pool, every slot (free ones too: their place is state), with
    /// the owner id next to each slot for the restore's cross-check; then the
    /// free list and the id index.
    fn write_orders(&self, w: &mut W) {
        w.len(self.orders.len());
        for ((o, c), l) in self.orders.iter().zip(&self.cold).zip(&self.links) {
            let c = if o.cold_set { *c } else { plain_cold(o) };
            // A free slot's owner is 0 (the record is reset when freed).
            let owner = match o.state {
                OrderState::Free => 0,
                _ => self.owners[o.owner_slot as usize].id.0,
            };
            w.u64(o.id.0);
            w.u64(owner);
            w.u64(o.coid.0);
            w.u32(o.inst);
            w.u8(o.side as u8);
            w.u8(o.otype as u8);
            w.u8(o.tif as u8);
            w.u8(o.stp as u8);
            w.u8(o.post_only as u8);
            w.u8(ostate_code(o.state));
            for v in [
                o.price.0,
                c.trigger.0,
                c.expire_at.0,
                o.remaining.0,
                o.visible.0,
                c.display.0,
            ] {
                w.u64(v);
            }
            for v in [
                o.level,
                l.prev,
                l.next,
                o.owner_slot,
                l.oprev,
                l.onext,
                c.heap_pos,
                o.pay,
                c.recv,
            ] {
                w.u32(v);
            }
            w.u128(c.hold);
            w.u64(c.hold_price.0);
            w.u128(c.fee_acc);
        }
        w_u32s(w, &self.order_free);
        w.len(self.order_index.len());
        for slot in self.order_index.slots() {
            w.u64(self.orders[slot as usize].id.0);
            w.u32(slot);
        }
    }

    /// The level pool and its free list.
    fn write_levels(&self, w: &mut W) {
        w.len(self.levels.len());
        for l in &self.levels {
            w.u64(l.price.0);
            w.u64(l.qty.0);
            w.u32(l.count);
            w.u32(l.head);
            w.u32(l.tail);
        }
        w_u32s(w, &self.level_free);
    }

    /// Rebuilds an engine from `snapshot()` bytes into the capacities of `cfg`.
    pub fn restore(cfg: EngineConfig, bytes: &[u8]) -> Result<Engine, SnapshotError> {
        let mut e = Engine::new(cfg);
        let mut r = R { b: bytes, at: 0 };
        if r.take(8)? != MAGIC {
            return Err(SnapshotError::BadHeader);
        }
        let version = r.u32()?;
        if !(3..=VERSION).contains(&version) {
            return Err(SnapshotError::BadHeader);
        }
        e.now = Timestamp(r.u64()?);
        e.next_order_id = r.u64()?;
        e.read_instruments(&mut r)?;
        let order_owners = e.read_orders(&mut r)?;
        e.read_levels(&mut r)?;
        e.read_owners_and_coids(&mut r)?;
        r_map_u32(&mut r, &mut e.open_counts, "orders_max")?;
        r_u32s(&mut r, &mut e.heap, "orders_max")?;
        r_ledger(&mut r, &mut e.ledger)?;
        if version >= 4 {
            e.read_cod_arms(&mut r)?;
        }
        if r.at != bytes.len() {
            return Err(SnapshotError::TrailingBytes { offset: r.at });
        }
        e.check_slots()?;
        relink_hot(&mut e.ledger)?;
        e.rebuild_level_caches();
        for (o, &owner) in e.orders.iter().zip(&order_owners) {
            if o.state != OrderState::Free && e.owners[o.owner_slot as usize].id.0 != owner {
                return Err(SnapshotError::Invalid(format!(
                    "order {}: owner {owner} is not its owner slot's",
                    o.id
                )));
            }
        }
        // Derived state, not in the bytes: rebuilt from the live orders.
        e.rebuild_client_ids();
        e.validate().map_err(|b| SnapshotError::Invalid(b.0))?;
        Ok(e)
    }

    /// Reads the cancel-on-disconnect arms: sorted, unique, within
    /// `COD_ARMS_MAX`.
    fn read_cod_arms(&mut self, r: &mut R) -> Res<()> {
        let n = r.len(COD_ARMS_MAX, "cod_arms_max")?;
        for _ in 0..n {
            let at = r.at;
            let arm = (r.u64()?, r.u64()?);
            if self.cod_arms.last().is_some_and(|&l| l >= arm) {
                return Err(SnapshotError::BadValue {
                    field: "cod_arms order",
                    offset: at,
                });
            }
            self.cod_arms.push(arm);
        }
        Ok(())
    }

    /// Reads what `write_instruments` wrote and indexes each instrument.
    fn read_instruments(&mut self, r: &mut R) -> Res<()> {
        self.instrument_count = r.len(self.instruments.len(), "instruments_max")?;
        for ii in 0..self.instrument_count {
            let spec = r_spec(r)?;
            let i = &mut self.instruments[ii];
            i.spec = spec;
            r_entries(r, &mut i.bids, "levels_max")?;
            r_entries(r, &mut i.asks, "levels_max")?;
            r_entries(r, &mut i.buy_stops, "stops_max")?;
            r_entries(r, &mut i.sell_stops, "stops_max")?;
            i.last_trade = r.opt_u64("last_trade")?.map(Price);
            i.halted = r.enum_u8("halted", halt_of)?;
            i.window = r.opt_u64("window")?;
            i.anchor = Price(r.u64()?);
            i.base_asset = r.u32()?;
            i.quote_asset = r.u32()?;
            i.fee_slot = r.u32()?;
            if !self.instrument_index.insert(spec.id.0 as u128, ii as u32) {
                return Err(SnapshotError::Capacity {
                    what: "instruments_max",
                });
            }
        }
        Ok(())
    }

    /// Reads what `write_orders` wrote; returns each slot's owner id, checked
    /// against its owner slot once the owners are read (memory keeps only the
    /// slot).
    fn read_orders(&mut self, r: &mut R) -> Res<Vec<u64>> {
        let n = r.len(self.orders.capacity(), "orders_max")?;
        let mut order_owners = Vec::with_capacity(n);
        for _ in 0..n {
            // Fields in the snapshot's order (the layout of the format, not of memory).
            let id = OrderId(r.u64()?);
            order_owners.push(r.u64()?);
            let coid = ClientOrderId(r.u64()?);
            let inst = r.u32()?;
            let side = r.enum_u8("side", side_of)?;
            let otype = r.enum_u8("order_type", otype_of)?;
            let tif = r.enum_u8("tif", tif_of)?;
            let stp = r.enum_u8("stp", stp_of)?;
            let post_only = r.bool("post_only")?;
            let state = r.enum_u8("order_state", state_of)?;
            let price = Price(r.u64()?);
            let trigger = Price(r.u64()?);
            let expire_at = Timestamp(r.u64()?);
            let remaining = Qty(r.u64()?);
            let visible = Qty(r.u64()?);
            let display = Qty(r.u64()?);
            let level = r.u32()?;
            let (prev, next) = (r.u32()?, r.u32()?);
            let owner_slot = r.u32()?;
            let (oprev, onext) = (r.u32()?, r.u32()?);
            let l = Links {
                prev,
                next,
                oprev,
                onext,
            };
            let heap_pos = r.u32()?;
            let pay = r.u32()?;
            let c = OrderCold {
                trigger,
                expire_at,
                display,
                heap_pos,
                recv: r.u32()?,
                hold: r.u128()?,
                hold_price: Price(r.u64()?),
                fee_acc: r.u128()?,
            };
            let mut o = Order {
                id,
                coid,
                price,
                remaining,
                visible,
                inst,
                level,
                owner_slot,
                pay,
                side,
                otype,
                tif,
                stp,
                post_only,
                state,
                iceberg: display.0 > 0,
                cold_set: false,
            };
            o.cold_set = Engine::needs_cold(&o, &c);
            self.orders.push(o);
            self.cold.push(c);
            self.links.push(l);
        }
        r_u32s(r, &mut self.order_free, "orders_max")?;
        let n = r.len(self.orders.capacity(), "orders_max")?;
        for _ in 0..n {
            let (id, slot) = (r.u64()?, r.u32()?);
            if slot as usize >= self.orders.len() || self.orders[slot as usize].id.0 != id {
                return Err(SnapshotError::Invalid(format!(
                    "order index entry {id} → {slot}"
                )));
            }
            if !self.order_index.insert(id, slot) {
                return Err(SnapshotError::Capacity { what: "orders_max" });
            }
        }
        Ok(order_owners)
    }

    /// Reads what `write_levels` wrote.
    fn read_levels(&mut self, r: &mut R) -> Res<()> {
        let n = r.len(self.levels.capacity(), "levels")?;
        for _ in 0..n {
            self.levels.push(Level {
                price: Price(r.u64()?),
                qty: Qty(r.u64()?),
                count: r.u32()?,
                head: r.u32()?,
                tail: r.u32()?,
            });
        }
        r_u32s(r, &mut self.level_free, "levels")?;
        Ok(())
    }

    /// Owner records (id, list ends, newest order), the free list, the owner
    /// index, then the client order id window: its length and each order's
    /// (owner slot, client order id), oldest first. The remembered set is
    /// not written: `read_owners_and_coids` rebuilds it from the window and
    /// the live orders.
    fn write_owners_and_coids(&self, w: &mut W) {
        w.len(self.owners.len());
        for o in &self.owners {
            w.u64(o.id.0);
            w.u32(o.head);
            w.u32(o.tail);
            w.u64(o.last_order);
        }
        w_u32s(w, &self.owner_free);
        w_map_u32(w, &self.owner_index);
        let ids = self.window_ids();
        w.len((ids.end - ids.start) as usize);
        for k in ids {
            let (s, coid) = self.coids.ring_entry(k);
            w.u32(s);
            w.u64(coid);
        }
    }

    /// Reads what `write_owners_and_coids` wrote (the orders are already
    /// read) and rebuilds the remembered set: the window's pairs, then live
    /// orders older than the window. A pair held twice is an error.
    fn read_owners_and_coids(&mut self, r: &mut R) -> Res<()> {
        let n = r.len(self.owners.capacity(), "owners_max")?;
        for _ in 0..n {
            self.owners.push(Owner {
                id: OwnerId(r.u64()?),
                head: r.u32()?,
                tail: r.u32()?,
                last_order: r.u64()?,
                coids: OwnerCoids::default(),
            });
        }
        r_u32s(r, &mut self.owner_free, "owners_max")?;
        r_map_u32(r, &mut self.owner_index, "owners_max")?;
        // The snapshot's window may be longer than this engine's (a smaller
        // client_order_ids_max: its older entries are skipped), never shorter.
        let first = self.window_ids().start;
        let n = r.len(self.next_order_id as usize, "client_order_ids_max")? as u64;
        if n >= self.next_order_id.max(1) || self.next_order_id - n > first {
            return Err(SnapshotError::Capacity {
                what: "client_order_ids_max (longer than the snapshot's window)",
            });
        }
        self.coids.set_next(self.next_order_id);
        for k in self.next_order_id - n..self.next_order_id {
            let (s, coid) = (r.u32()?, r.u64()?);
            if k >= first {
                self.restore_coid(s, coid)?;
                self.coids.restore_ring_entry(k, s, coid);
            }
        }
        for slot in 0..self.orders.len() {
            let o = self.orders[slot];
            if o.state != OrderState::Free && self.before_window(o.id.0) {
                self.restore_coid(o.owner_slot, o.coid.0)?;
            }
        }
        // Owners whose orders all fell out of a shorter window are free now.
        // (Anything odd is left for `validate` to report, never to panic on.)
        for s in 0..self.owners.len() as u32 {
            let ow = &self.owners[s as usize];
            if ow.last_order != 0
                && ow.head == NIL
                && !ow.coids.any
                && self.before_window(ow.last_order)
                && self.owner_index.get(ow.id.0 as u128) == Some(s)
            {
                self.release_owner_if_idle(s);
            }
        }
        Ok(())
    }

    /// Adds one remembered pair while restoring.
    fn restore_coid(&mut self, owner_slot: u32, coid: u64) -> Res<()> {
        let Some(ow) = self.owners.get_mut(owner_slot as usize) else {
            return Err(SnapshotError::Invalid(format!(
                "client order id {coid}: owner slot {owner_slot} out of range"
            )));
        };
        if self.coids.contains(&ow.coids, ow.id.0, coid) {
            return Err(SnapshotError::Invalid(format!(
                "client order id {coid} of owner {} held twice",
                ow.id
            )));
        }
        self.coids.insert(&mut ow.coids, ow.id.0, coid);
        Ok(())
    }

    /// Bounds of every stored slot index, so `validate` cannot index out of range.
    fn check_slots(&self) -> Result<(), SnapshotError> {
        let bad = |what: &'static str| Err(SnapshotError::Invalid(format!("{what} out of range")));
        let (no, nl, nw, ni) = (
            self.orders.len() as u32,
            self.levels.len() as u32,
            self.owners.len() as u32,
            self.instrument_count as u32,
        );
        let na = self.ledger.accounts.len() as u32;
        let ok_o = |s: u32| s == NIL || s < no;
        for ((o, c), l) in self.orders.iter().zip(&self.cold).zip(&self.links) {
            if o.state == OrderState::Free {
                continue;
            }
            if o.inst >= ni || o.owner_slot >= nw || !(o.level == NIL || o.level < nl) {
                return bad("order reference");
            }
            if ![l.prev, l.next, l.oprev, l.onext].iter().all(|&s| ok_o(s)) {
                return bad("order link");
            }
            if !(o.pay == NO_ACCOUNT || o.pay < na) || !(c.recv == NO_ACCOUNT || c.recv < na) {
                return bad("order account");
            }
            if !(c.heap_pos == NIL || (c.heap_pos as usize) < self.heap.len()) {
                return bad("order heap position");
            }
        }
        for l in &self.levels {
            if !ok_o(l.head) || !ok_o(l.tail) {
                return bad("level link");
            }
        }
        for ow in &self.owners {
            if !ok_o(ow.head) || !ok_o(ow.tail) {
                return bad("owner link");
            }
        }
        if self.owner_free.iter().any(|&s| s >= nw) {
            return bad("free owner slot");
        }
        for i in &self.instruments[..self.instrument_count] {
            for e in i.bids.iter().chain(&i.asks) {
                if e.slot >= nl {
                    return bad("level slot");
                }
            }
            for e in i.buy_stops.iter().chain(&i.sell_stops) {
                if e.slot >= no {
                    return bad("stop slot");
                }
            }
            if i.spec.settle
                && (i.base_asset as usize >= self.ledger.assets.len()
                    || i.quote_asset as usize >= self.ledger.assets.len()
                    || !(i.fee_slot == NO_ACCOUNT || i.fee_slot < na))
            {
                return bad("instrument ledger reference");
            }
        }
        if self.heap.iter().any(|&s| s >= no)
            || self.order_free.iter().any(|&s| s >= no)
            || self.level_free.iter().any(|&s| s >= nl)
            || self.order_index.slots().any(|s| s >= no)
            || self.owner_index.iter().any(|(_, s)| s >= nw)
            || self.instrument_index.iter().any(|(_, s)| s >= ni)
        {
            return bad("pool slot");
        }
        let l = &self.ledger;
        let account_ok = |t: &Transfer| {
            matches!(t.rec.state, TState::Failed(_)) || (t.debit < na && t.credit < na)
        };
        if l.accounts
            .iter()
            .any(|a| a.asset as usize >= l.assets.len())
            || l.hot.slots.iter().any(|t| !t.is_free() && !account_ok(t))
            || l.escrow.iter().any(|&s| !(s == NO_ACCOUNT || s < na))
            || l.escrow.len() != l.assets.len()
            || l.account_index.iter().any(|(_, s)| s >= na)
            || l.trading.iter().any(|(_, s)| s >= na)
            || l.asset_index
                .iter()
                .any(|(_, s)| s as usize >= l.assets.len())
        {
            return bad("ledger reference");
        }
        Ok(())
    }
}
