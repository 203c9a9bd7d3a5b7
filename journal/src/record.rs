//! The journal's fixed-size record: one sequenced `engine::Input` as exactly
//! 192 plain bytes.
//!
//! Layout (all integers little-endian, alignment 1 so a record can be viewed
//! in place inside any byte buffer):
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | `seq` u64 |
//! | 8..16 | `now` u64 (engine time stamped by the sequencer) |
//! | 16 | `kind` u8: 1 instrument, 2 order, 3 cancel, 4 replace, 5 mass_cancel, 6 halt, 7 resume, 8 time, 9 query_book, 10 open_account, 11 transfer, 12 query_balance, 13 query_open_orders, 14 install_history, 15 lookup_transfer, 16 get_account_transfers, 17 cancel_by_client_id, 18 cod_arm, 19 cod_disarm, 20 sessions_lost |
//! | 17..25 | origin session key u64 (0: none; see [`Origin`]) |
//! | 25..32 | origin request number, 56-bit LE (0 exactly when the key is 0) |
//! | 32..192 | payload: the command's fields packed in declaration order, then zero |
//!
//! An `Actor` (transfer, balance query) is a byte — 0 admin, 1 + n for n
//! owners (n ≤ 8) — then 8 u64 owner slots, the unused ones zero (65 bytes;
//! a transfer's payload is 158 bytes). A record written before actors
//! existed has zeros there, which decodes as `Admin`: exactly how every
//! ledger command behaved then, so older journals replay bit-exact and the
//! record version stays 1.
//!
//! `replace`: owner u64, order_id u64, price option, qty option, then
//! `requeue` bool. A record written before `requeue` existed has a zero
//! there, which decodes as `false`: exactly how every replace behaved then,
//! so older journals replay bit-exact and the record version stays 1.
//! `cancel_by_client_id` (new kind, never in older journals): owner u64,
//! client_order_id u64. `cod_arm` (new): session u64, owner u64;
//! `cod_disarm` (new): session u64; `sessions_lost` (new): no field.
//!
//! `install_history`: run u64, through_seq u64, checksum u128.
//! `lookup_transfer`: id u128, actor. `get_account_transfers`: account u128,
//! range field u8 (0 ledger_seq, 1 time), lo u64, hi u64, limit u32,
//! newest_first bool, actor.
//!
//! The origin (bytes 17..32, zero before it existed, so older journals
//! read as inputs without one) names the client request a replicated
//! input was proposed for: the replicas' committed-request tables are
//! rebuilt from it (`replica::sessions`). It is not part of the engine's
//! `Input`: the engine never sees it.
//!
//! Encoding rules: an `Option<T>` is a presence byte (0 absent, 1 present)
//! followed by `T`'s bytes, which are zero when absent; a `bool` is one byte
//! 0/1; enums are their `repr(u8)` value; `Symbol`/`Asset` are their raw
//! bytes; every payload byte after the command's last field is zero.
//!
//! Invariants: `decode(&encode(i)) == Ok(i)` for every `Input`; `decode`
//! accepts only canonical records (known kind, enum bytes in range, presence
//! and bool bytes 0/1, absent values zero, reserved and unused payload bytes
//! zero) and names the offending field otherwise, so a record that decodes is
//! byte-identical to the one the writer produced.

use bytemuck::{Pod, Zeroable};
use engine::{
    history::{AccountFilter, RangeBy},
    AccountFlags, AccountId, AccountSpec, Actor, Amount, Asset, ClientOrderId, Command, Input,
    InstrumentId, InstrumentSpec, NewOrder, OrderId, OrderType, OwnerId, Price, Qty, Seq, Side,
    Stp, Symbol, Tif, Timestamp, TransferFlags, TransferId, TransferSpec, ACTOR_OWNERS_MAX,
};

/// Size of the payload area.
pub const PAYLOAD_LEN: usize = 160;

/// One journaled input: 192 bytes, `Pod`, alignment 1.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct InputRecord {
    /// Sequence number, u64 LE.
    pub seq: [u8; 8],
    /// Engine time, u64 LE.
    pub now: [u8; 8],
    /// Command kind (see the module table).
    pub kind: u8,
    /// The origin: session key u64 LE, then request number u56 LE (zero:
    /// none).
    pub reserved: [u8; 15],
    /// Command fields.
    pub payload: [u8; PAYLOAD_LEN],
}

/// Size of one record in bytes.
pub const RECORD_LEN: usize = 192;
const _: () = assert!(core::mem::size_of::<InputRecord>() == RECORD_LEN);
const _: () = assert!(core::mem::align_of::<InputRecord>() == 1);

/// The client request an input was proposed for: a session key stable
/// across servers (`gateway::session::origin_key`) and the request number
/// the client gave it. `NONE` (both zero) for inputs no client request
/// made (time, cancel-on-disconnect, single-node journals).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// The session key (0: none).
    pub session: u64,
    /// The request number (below 2^56; 0 exactly when `session` is 0).
    pub request: u64,
}

impl Origin {
    /// No origin.
    pub const NONE: Origin = Origin {
        session: 0,
        request: 0,
    };
    /// Request numbers from here on are not kept (they do not fit the
    /// record's 56 bits): such a request is proposed without an origin.
    pub const REQUEST_LIMIT: u64 = 1 << 56;

    /// `(session, request)`, or `NONE` when either is 0 or the request
    /// does not fit.
    pub fn new(session: u64, request: u64) -> Origin {
        if session == 0 || request == 0 || request >= Self::REQUEST_LIMIT {
            Origin::NONE
        } else {
            Origin { session, request }
        }
    }

    /// Whether this is `NONE`.
    pub fn is_none(self) -> bool {
        self.session == 0
    }
}

/// `encode(input)` with `origin` in the record.
pub fn encode_from(input: &Input, origin: Origin) -> InputRecord {
    let mut rec = encode(input);
    let origin = Origin::new(origin.session, origin.request);
    rec.reserved[..8].copy_from_slice(&origin.session.to_le_bytes());
    rec.reserved[8..].copy_from_slice(&origin.request.to_le_bytes()[..7]);
    rec
}

/// The origin a record carries (`NONE` when absent); `decode` has checked
/// it is canonical.
pub fn origin_of(rec: &InputRecord) -> Origin {
    let mut session = [0u8; 8];
    session.copy_from_slice(&rec.reserved[..8]);
    let mut request = [0u8; 8];
    request[..7].copy_from_slice(&rec.reserved[8..]);
    Origin {
        session: u64::from_le_bytes(session),
        request: u64::from_le_bytes(request),
    }
}

impl core::fmt::Debug for InputRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "InputRecord(seq={}, now={}, kind={})",
            self.seq(),
            self.now(),
            self.kind
        )
    }
}

impl InputRecord {
    /// The record's sequence number.
    pub fn seq(&self) -> u64 {
        u64::from_le_bytes(self.seq)
    }
    /// The record's engine time.
    pub fn now(&self) -> u64 {
        u64::from_le_bytes(self.now)
    }
}

/// Why a record does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// `kind` is not a known command.
    #[error("unknown command kind {0}")]
    UnknownKind(u8),
    /// An enum byte out of range.
    #[error("field `{field}`: value {value} out of range")]
    BadEnum {
        /// Field name.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// A presence or bool byte other than 0/1.
    #[error("field `{field}`: flag byte {value} is neither 0 nor 1")]
    BadFlag {
        /// Field name.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// A byte that must be zero is not.
    #[error("field `{field}`: must be zero")]
    NonZero {
        /// Field name (`reserved`, `payload_tail`, or an absent option's value).
        field: &'static str,
    },
}

/// Kind bytes.
mod kind {
    pub const INSTRUMENT: u8 = 1;
    pub const ORDER: u8 = 2;
    pub const CANCEL: u8 = 3;
    pub const REPLACE: u8 = 4;
    pub const MASS_CANCEL: u8 = 5;
    pub const HALT: u8 = 6;
    pub const RESUME: u8 = 7;
    pub const TIME: u8 = 8;
    pub const QUERY_BOOK: u8 = 9;
    pub const OPEN_ACCOUNT: u8 = 10;
    pub const TRANSFER: u8 = 11;
    pub const QUERY_BALANCE: u8 = 12;
    pub const QUERY_OPEN_ORDERS: u8 = 13;
    pub const INSTALL_HISTORY: u8 = 14;
    pub const LOOKUP_TRANSFER: u8 = 15;
    pub const GET_ACCOUNT_TRANSFERS: u8 = 16;
    pub const CANCEL_BY_CLIENT_ID: u8 = 17;
    pub const COD_ARM: u8 = 18;
    pub const COD_DISARM: u8 = 19;
    pub const SESSIONS_LOST: u8 = 20;
}

struct W<'a> {
    buf: &'a mut [u8; PAYLOAD_LEN],
    at: usize,
}

impl W<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.bytes(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        self.bool(v.is_some());
        self.u32(v.unwrap_or(0));
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        self.bool(v.is_some());
        self.u64(v.unwrap_or(0));
    }
    fn opt_side(&mut self, v: Option<Side>) {
        self.bool(v.is_some());
        self.u8(v.map_or(0, |s| s as u8));
    }
    fn actor(&mut self, a: &Actor) {
        let owners: &[OwnerId] = match a {
            Actor::Admin => {
                self.u8(0);
                &[]
            }
            Actor::Owners(set) => {
                self.u8(1 + set.as_slice().len() as u8);
                set.as_slice()
            }
        };
        for i in 0..ACTOR_OWNERS_MAX {
            self.u64(owners.get(i).map_or(0, |o| o.0));
        }
    }
}

struct R<'a> {
    buf: &'a [u8; PAYLOAD_LEN],
    at: usize,
}

impl R<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.at..self.at + N]);
        self.at += N;
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn u128(&mut self) -> u128 {
        u128::from_le_bytes(self.take())
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, RecordError> {
        match self.u8() {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(RecordError::BadFlag { field, value }),
        }
    }
    fn opt_u32(&mut self, field: &'static str) -> Result<Option<u32>, RecordError> {
        let present = self.bool(field)?;
        let v = self.u32();
        absent_zero(field, present, v == 0)?;
        Ok(present.then_some(v))
    }
    fn opt_u64(&mut self, field: &'static str) -> Result<Option<u64>, RecordError> {
        let present = self.bool(field)?;
        let v = self.u64();
        absent_zero(field, present, v == 0)?;
        Ok(present.then_some(v))
    }
    fn side(&mut self, field: &'static str) -> Result<Side, RecordError> {
        match self.u8() {
            0 => Ok(Side::Buy),
            1 => Ok(Side::Sell),
            value => Err(RecordError::BadEnum { field, value }),
        }
    }
    fn opt_side(&mut self, field: &'static str) -> Result<Option<Side>, RecordError> {
        let present = self.bool(field)?;
        if present {
            Ok(Some(self.side(field)?))
        } else {
            absent_zero(field, false, self.u8() == 0)?;
            Ok(None)
        }
    }
    fn actor(&mut self) -> Result<Actor, RecordError> {
        let tag = self.u8();
        let mut ids = [OwnerId(0); ACTOR_OWNERS_MAX];
        for id in ids.iter_mut() {
            *id = OwnerId(self.u64());
        }
        let n = match tag {
            0 => 0,
            t if (t as usize) <= 1 + ACTOR_OWNERS_MAX => t as usize - 1,
            value => {
                return Err(RecordError::BadEnum {
                    field: "actor",
                    value,
                })
            }
        };
        if ids[n..].iter().any(|o| o.0 != 0) {
            return Err(RecordError::NonZero {
                field: "actor_owners",
            });
        }
        Ok(if tag == 0 {
            Actor::Admin
        } else {
            Actor::owners(&ids[..n]).expect("at most ACTOR_OWNERS_MAX")
        })
    }
    fn finish(&self) -> Result<(), RecordError> {
        if !crate::format::is_zero(&self.buf[self.at..]) {
            return Err(RecordError::NonZero {
                field: "payload_tail",
            });
        }
        Ok(())
    }
}

fn absent_zero(field: &'static str, present: bool, zero: bool) -> Result<(), RecordError> {
    if !present && !zero {
        return Err(RecordError::NonZero { field });
    }
    Ok(())
}

/// Encodes one input as its canonical record.
pub fn encode(input: &Input) -> InputRecord {
    let mut rec = InputRecord::zeroed();
    rec.seq = input.seq.0.to_le_bytes();
    rec.now = input.now.0.to_le_bytes();
    let mut w = W {
        buf: &mut rec.payload,
        at: 0,
    };
    let k = match input.command {
        Command::AddInstrument(s) => {
            encode_instrument(&s, &mut w);
            kind::INSTRUMENT
        }
        Command::NewOrder(o) => {
            encode_order(&o, &mut w);
            kind::ORDER
        }
        Command::Cancel { owner, order_id } => {
            w.u64(owner.0);
            w.u64(order_id.0);
            kind::CANCEL
        }
        Command::CancelByClientId {
            owner,
            client_order_id,
        } => {
            w.u64(owner.0);
            w.u64(client_order_id.0);
            kind::CANCEL_BY_CLIENT_ID
        }
        Command::Replace {
            owner,
            order_id,
            price,
            qty,
            requeue,
        } => {
            w.u64(owner.0);
            w.u64(order_id.0);
            w.opt_u64(price.map(|p| p.0));
            w.opt_u64(qty.map(|q| q.0));
            w.bool(requeue);
            kind::REPLACE
        }
        Command::MassCancel {
            owner,
            instrument,
            side,
        } => {
            w.u64(owner.0);
            w.opt_u32(instrument.map(|i| i.0));
            w.opt_side(side);
            kind::MASS_CANCEL
        }
        Command::Halt { instrument } => {
            w.u32(instrument.0);
            kind::HALT
        }
        Command::Resume { instrument } => {
            w.u32(instrument.0);
            kind::RESUME
        }
        Command::Time { now } => {
            w.u64(now.0);
            kind::TIME
        }
        Command::QueryBook { instrument, depth } => {
            w.u32(instrument.0);
            w.opt_u32(depth);
            kind::QUERY_BOOK
        }
        Command::OpenAccount(a) => {
            w.u128(a.id.0);
            w.u64(a.owner.0);
            w.bytes(&a.asset.0);
            w.u16(a.flags.0);
            kind::OPEN_ACCOUNT
        }
        Command::Transfer {
            transfer: t,
            batch_end,
            actor,
        } => {
            encode_transfer(&t, batch_end, &actor, &mut w);
            kind::TRANSFER
        }
        Command::QueryBalance { account, actor } => {
            w.u128(account.0);
            w.actor(&actor);
            kind::QUERY_BALANCE
        }
        Command::QueryOpenOrders { owner, instrument } => {
            w.u64(owner.0);
            w.opt_u32(instrument.map(|i| i.0));
            kind::QUERY_OPEN_ORDERS
        }
        Command::InstallHistory {
            run,
            through_seq,
            checksum,
        } => {
            w.u64(run);
            w.u64(through_seq.0);
            w.u128(checksum);
            kind::INSTALL_HISTORY
        }
        Command::LookupTransfer { id, actor } => {
            w.u128(id.0);
            w.actor(&actor);
            kind::LOOKUP_TRANSFER
        }
        Command::GetAccountTransfers { filter: f, actor } => {
            encode_account_filter(&f, &mut w);
            w.actor(&actor);
            kind::GET_ACCOUNT_TRANSFERS
        }
        Command::CodArm { session, owner } => {
            w.u64(session);
            w.u64(owner.0);
            kind::COD_ARM
        }
        Command::CodDisarm { session } => {
            w.u64(session);
            kind::COD_DISARM
        }
        Command::SessionsLost => kind::SESSIONS_LOST,
    };
    rec.kind = k;
    rec
}

/// The payload of `AddInstrument`, field by field.
fn encode_instrument(s: &InstrumentSpec, w: &mut W<'_>) {
    w.u32(s.id.0);
    w.bytes(&s.symbol.0);
    w.bytes(&s.base.0);
    w.bytes(&s.quote.0);
    w.u64(s.tick);
    w.u64(s.lot_size);
    w.u64(s.qty_min);
    w.u64(s.qty_max);
    w.u64(s.reference_price.0);
    w.opt_u32(s.band_bps);
    w.opt_u32(s.circuit_bps);
    w.u64(s.circuit_window_ns);
    w.u32(s.maker_fee_bps);
    w.u32(s.taker_fee_bps);
    w.u128(s.fee_account.0);
    w.bool(s.settle);
    w.opt_u32(s.open_orders_max);
    w.opt_u64(s.notional_max);
}

/// The payload of `NewOrder`, field by field.
fn encode_order(o: &NewOrder, w: &mut W<'_>) {
    w.u64(o.owner.0);
    w.u32(o.instrument.0);
    w.u64(o.client_order_id.0);
    w.u8(o.side as u8);
    w.u8(o.order_type as u8);
    w.opt_u64(o.price.map(|p| p.0));
    w.u64(o.qty.0);
    w.u8(o.tif as u8);
    w.opt_u64(o.expire_at.map(|t| t.0));
    w.bool(o.post_only);
    w.u8(o.stp as u8);
    w.opt_u64(o.display_qty.map(|q| q.0));
    w.opt_u64(o.trigger_price.map(|p| p.0));
}

/// The payload of `Transfer`: the spec, the batch flag, then the actor.
fn encode_transfer(t: &TransferSpec, batch_end: bool, actor: &Actor, w: &mut W<'_>) {
    w.u128(t.id.0);
    w.u128(t.debit_account.0);
    w.u128(t.credit_account.0);
    w.u128(t.amount.0);
    w.u16(t.code);
    w.u16(t.flags.0);
    w.u128(t.pending_id.0);
    w.u64(t.timeout_ns);
    w.bool(batch_end);
    w.actor(actor);
}

/// The filter of `GetAccountTransfers`, field by field.
fn encode_account_filter(f: &AccountFilter, w: &mut W<'_>) {
    w.u128(f.account.0);
    w.u8(match f.by {
        RangeBy::LedgerSeq => 0,
        RangeBy::Time => 1,
    });
    w.u64(f.lo);
    w.u64(f.hi);
    w.u32(f.limit);
    w.bool(f.newest_first);
}

/// Decodes and validates one record.
pub fn decode(rec: &InputRecord) -> Result<Input, RecordError> {
    let origin = origin_of(rec);
    if (origin.session == 0) != (origin.request == 0) {
        return Err(RecordError::NonZero { field: "origin" });
    }
    let mut r = R {
        buf: &rec.payload,
        at: 0,
    };
    let command = match rec.kind {
        kind::INSTRUMENT => Command::AddInstrument(decode_instrument(&mut r)?),
        kind::ORDER => Command::NewOrder(decode_order(&mut r)?),
        kind::CANCEL => Command::Cancel {
            owner: OwnerId(r.u64()),
            order_id: OrderId(r.u64()),
        },
        kind::CANCEL_BY_CLIENT_ID => Command::CancelByClientId {
            owner: OwnerId(r.u64()),
            client_order_id: ClientOrderId(r.u64()),
        },
        kind::REPLACE => Command::Replace {
            owner: OwnerId(r.u64()),
            order_id: OrderId(r.u64()),
            price: r.opt_u64("price")?.map(Price),
            qty: r.opt_u64("qty")?.map(Qty),
            requeue: r.bool("requeue")?,
        },
        kind::MASS_CANCEL => Command::MassCancel {
            owner: OwnerId(r.u64()),
            instrument: r.opt_u32("instrument")?.map(InstrumentId),
            side: r.opt_side("side")?,
        },
        kind::HALT => Command::Halt {
            instrument: InstrumentId(r.u32()),
        },
        kind::RESUME => Command::Resume {
            instrument: InstrumentId(r.u32()),
        },
        kind::TIME => Command::Time {
            now: Timestamp(r.u64()),
        },
        kind::QUERY_BOOK => Command::QueryBook {
            instrument: InstrumentId(r.u32()),
            depth: r.opt_u32("depth")?,
        },
        kind::OPEN_ACCOUNT => Command::OpenAccount(AccountSpec {
            id: AccountId(r.u128()),
            owner: OwnerId(r.u64()),
            asset: Asset(r.take()),
            flags: AccountFlags(r.u16()),
        }),
        kind::TRANSFER => Command::Transfer {
            transfer: TransferSpec {
                id: TransferId(r.u128()),
                debit_account: AccountId(r.u128()),
                credit_account: AccountId(r.u128()),
                amount: Amount(r.u128()),
                code: r.u16(),
                flags: TransferFlags(r.u16()),
                pending_id: TransferId(r.u128()),
                timeout_ns: r.u64(),
            },
            batch_end: r.bool("batch_end")?,
            actor: r.actor()?,
        },
        kind::QUERY_BALANCE => Command::QueryBalance {
            account: AccountId(r.u128()),
            actor: r.actor()?,
        },
        kind::QUERY_OPEN_ORDERS => Command::QueryOpenOrders {
            owner: OwnerId(r.u64()),
            instrument: r.opt_u32("instrument")?.map(InstrumentId),
        },
        kind::INSTALL_HISTORY => Command::InstallHistory {
            run: r.u64(),
            through_seq: Seq(r.u64()),
            checksum: r.u128(),
        },
        kind::LOOKUP_TRANSFER => Command::LookupTransfer {
            id: TransferId(r.u128()),
            actor: r.actor()?,
        },
        kind::GET_ACCOUNT_TRANSFERS => Command::GetAccountTransfers {
            filter: decode_account_filter(&mut r)?,
            actor: r.actor()?,
        },
        kind::COD_ARM => Command::CodArm {
            session: r.u64(),
            owner: OwnerId(r.u64()),
        },
        kind::COD_DISARM => Command::CodDisarm { session: r.u64() },
        kind::SESSIONS_LOST => Command::SessionsLost,
        k => return Err(RecordError::UnknownKind(k)),
    };
    r.finish()?;
    Ok(Input {
        seq: Seq(rec.seq()),
        now: Timestamp(rec.now()),
        command,
    })
}

/// The payload of `AddInstrument`, field by field.
fn decode_instrument(r: &mut R<'_>) -> Result<InstrumentSpec, RecordError> {
    Ok(InstrumentSpec {
        id: InstrumentId(r.u32()),
        symbol: Symbol(r.take()),
        base: Asset(r.take()),
        quote: Asset(r.take()),
        tick: r.u64(),
        lot_size: r.u64(),
        qty_min: r.u64(),
        qty_max: r.u64(),
        reference_price: Price(r.u64()),
        band_bps: r.opt_u32("band_bps")?,
        circuit_bps: r.opt_u32("circuit_bps")?,
        circuit_window_ns: r.u64(),
        maker_fee_bps: r.u32(),
        taker_fee_bps: r.u32(),
        fee_account: AccountId(r.u128()),
        settle: r.bool("settle")?,
        open_orders_max: r.opt_u32("open_orders_max")?,
        notional_max: r.opt_u64("notional_max")?,
    })
}

/// The payload of `NewOrder`, field by field, its enums checked.
fn decode_order(r: &mut R<'_>) -> Result<NewOrder, RecordError> {
    Ok(NewOrder {
        owner: OwnerId(r.u64()),
        instrument: InstrumentId(r.u32()),
        client_order_id: ClientOrderId(r.u64()),
        side: r.side("side")?,
        order_type: match r.u8() {
            0 => OrderType::Limit,
            1 => OrderType::Market,
            2 => OrderType::Stop,
            3 => OrderType::StopLimit,
            value => {
                return Err(RecordError::BadEnum {
                    field: "order_type",
                    value,
                })
            }
        },
        price: r.opt_u64("price")?.map(Price),
        qty: Qty(r.u64()),
        tif: match r.u8() {
            0 => Tif::Gtc,
            1 => Tif::Ioc,
            2 => Tif::Fok,
            3 => Tif::Gtd,
            value => {
                return Err(RecordError::BadEnum {
                    field: "tif",
                    value,
                })
            }
        },
        expire_at: r.opt_u64("expire_at")?.map(Timestamp),
        post_only: r.bool("post_only")?,
        stp: match r.u8() {
            0 => Stp::None,
            1 => Stp::CancelTaker,
            2 => Stp::CancelMaker,
            3 => Stp::CancelBoth,
            4 => Stp::Decrement,
            value => {
                return Err(RecordError::BadEnum {
                    field: "stp",
                    value,
                })
            }
        },
        display_qty: r.opt_u64("display_qty")?.map(Qty),
        trigger_price: r.opt_u64("trigger_price")?.map(Price),
    })
}

/// The filter of `GetAccountTransfers`, field by field.
fn decode_account_filter(r: &mut R<'_>) -> Result<AccountFilter, RecordError> {
    Ok(AccountFilter {
        account: AccountId(r.u128()),
        by: match r.u8() {
            0 => RangeBy::LedgerSeq,
            1 => RangeBy::Time,
            value => {
                return Err(RecordError::BadEnum {
                    field: "range_by",
                    value,
                })
            }
        },
        lo: r.u64(),
        hi: r.u64(),
        limit: r.u32(),
        newest_first: r.bool("newest_first")?,
    })
}

/// The workspace's one seeded PRNG, re-exported where the journal's
/// simulations (`SimDisk::crash`, `flip_bits`) and their users have always
/// found it; the one definition is `engine::rng::SplitMix64`.
pub use engine::rng::SplitMix64;

#[cfg(test)]
mod tests {
    use super::*;

    fn any_u64(r: &mut SplitMix64) -> u64 {
        match r.below(4) {
            0 => 0,
            1 => u64::MAX,
            _ => r.next_u64(),
        }
    }
    fn any_u128(r: &mut SplitMix64) -> u128 {
        ((any_u64(r) as u128) << 64) | any_u64(r) as u128
    }
    fn opt<T>(r: &mut SplitMix64, f: impl FnOnce(&mut SplitMix64) -> T) -> Option<T> {
        if r.chance(1, 2) {
            Some(f(r))
        } else {
            None
        }
    }
    fn bytes<const N: usize>(r: &mut SplitMix64) -> [u8; N] {
        let mut b = [0u8; N];
        for x in &mut b {
            *x = r.next_u64() as u8;
        }
        b
    }

    fn any_actor(r: &mut SplitMix64) -> Actor {
        if r.chance(1, 3) {
            return Actor::Admin;
        }
        let n = r.below(ACTOR_OWNERS_MAX as u64 + 1) as usize;
        let ids: Vec<OwnerId> = (0..n).map(|_| OwnerId(any_u64(r))).collect();
        Actor::owners(&ids).expect("at most ACTOR_OWNERS_MAX")
    }

    pub(crate) fn random_input(r: &mut SplitMix64, variant: u64) -> Input {
        let side = |r: &mut SplitMix64| {
            if r.chance(1, 2) {
                Side::Buy
            } else {
                Side::Sell
            }
        };
        let command = match variant % 19 {
            16..=18 => any_cod(r, variant % 19),
            0 => Command::AddInstrument(InstrumentSpec {
                id: InstrumentId(r.next_u64() as u32),
                symbol: Symbol(bytes(r)),
                base: Asset(bytes(r)),
                quote: Asset(bytes(r)),
                tick: any_u64(r),
                lot_size: any_u64(r),
                qty_min: any_u64(r),
                qty_max: any_u64(r),
                reference_price: Price(any_u64(r)),
                band_bps: opt(r, |r| r.next_u64() as u32),
                circuit_bps: opt(r, |r| r.next_u64() as u32),
                circuit_window_ns: any_u64(r),
                maker_fee_bps: r.next_u64() as u32,
                taker_fee_bps: r.next_u64() as u32,
                fee_account: AccountId(any_u128(r)),
                settle: r.chance(1, 2),
                open_orders_max: opt(r, |r| r.next_u64() as u32),
                notional_max: opt(r, any_u64),
            }),
            1 => Command::NewOrder(NewOrder {
                owner: OwnerId(any_u64(r)),
                instrument: InstrumentId(r.next_u64() as u32),
                client_order_id: ClientOrderId(any_u64(r)),
                side: side(r),
                order_type: [
                    OrderType::Limit,
                    OrderType::Market,
                    OrderType::Stop,
                    OrderType::StopLimit,
                ][r.below(4) as usize],
                price: opt(r, any_u64).map(Price),
                qty: Qty(any_u64(r)),
                tif: [Tif::Gtc, Tif::Ioc, Tif::Fok, Tif::Gtd][r.below(4) as usize],
                expire_at: opt(r, any_u64).map(Timestamp),
                post_only: r.chance(1, 2),
                stp: [
                    Stp::None,
                    Stp::CancelTaker,
                    Stp::CancelMaker,
                    Stp::CancelBoth,
                    Stp::Decrement,
                ][r.below(5) as usize],
                display_qty: opt(r, any_u64).map(Qty),
                trigger_price: opt(r, any_u64).map(Price),
            }),
            2 => Command::Cancel {
                owner: OwnerId(any_u64(r)),
                order_id: OrderId(any_u64(r)),
            },
            3 => Command::Replace {
                owner: OwnerId(any_u64(r)),
                order_id: OrderId(any_u64(r)),
                price: opt(r, any_u64).map(Price),
                qty: opt(r, any_u64).map(Qty),
                requeue: r.chance(1, 2),
            },
            15 => Command::CancelByClientId {
                owner: OwnerId(any_u64(r)),
                client_order_id: ClientOrderId(any_u64(r)),
            },
            4 => Command::MassCancel {
                owner: OwnerId(any_u64(r)),
                instrument: opt(r, |r| InstrumentId(r.next_u64() as u32)),
                side: opt(r, side),
            },
            5 => Command::Halt {
                instrument: InstrumentId(r.next_u64() as u32),
            },
            6 => Command::Resume {
                instrument: InstrumentId(r.next_u64() as u32),
            },
            7 => Command::Time {
                now: Timestamp(any_u64(r)),
            },
            8 => Command::QueryBook {
                instrument: InstrumentId(r.next_u64() as u32),
                depth: opt(r, |r| r.next_u64() as u32),
            },
            9 => Command::OpenAccount(AccountSpec {
                id: AccountId(any_u128(r)),
                owner: OwnerId(any_u64(r)),
                asset: Asset(bytes(r)),
                flags: AccountFlags(r.next_u64() as u16),
            }),
            10 => Command::Transfer {
                transfer: TransferSpec {
                    id: TransferId(any_u128(r)),
                    debit_account: AccountId(any_u128(r)),
                    credit_account: AccountId(any_u128(r)),
                    amount: Amount(any_u128(r)),
                    code: r.next_u64() as u16,
                    flags: TransferFlags(r.next_u64() as u16),
                    pending_id: TransferId(any_u128(r)),
                    timeout_ns: any_u64(r),
                },
                batch_end: r.chance(1, 2),
                actor: any_actor(r),
            },
            11 => Command::QueryBalance {
                account: AccountId(any_u128(r)),
                actor: any_actor(r),
            },
            12 => Command::InstallHistory {
                run: any_u64(r),
                through_seq: Seq(any_u64(r)),
                checksum: any_u128(r),
            },
            13 => Command::LookupTransfer {
                id: TransferId(any_u128(r)),
                actor: any_actor(r),
            },
            14 => Command::GetAccountTransfers {
                filter: AccountFilter {
                    account: AccountId(any_u128(r)),
                    by: if r.chance(1, 2) {
                        RangeBy::LedgerSeq
                    } else {
                        RangeBy::Time
                    },
                    lo: any_u64(r),
                    hi: any_u64(r),
                    limit: r.next_u64() as u32,
                    newest_first: r.chance(1, 2),
                },
                actor: any_actor(r),
            },
            _ => Command::QueryOpenOrders {
                owner: OwnerId(any_u64(r)),
                instrument: opt(r, |r| InstrumentId(r.next_u64() as u32)),
            },
        };
        Input {
            seq: Seq(any_u64(r)),
            now: Timestamp(any_u64(r)),
            command,
        }
    }

    /// A cancel-on-disconnect command (`v` 16, 17 or 18).
    fn any_cod(r: &mut SplitMix64, v: u64) -> Command {
        match v {
            16 => Command::CodArm {
                session: any_u64(r),
                owner: OwnerId(any_u64(r)),
            },
            17 => Command::CodDisarm {
                session: any_u64(r),
            },
            _ => Command::SessionsLost,
        }
    }

    #[test]
    fn round_trip_every_variant() {
        let mut r = SplitMix64(7);
        for i in 0..24_000u64 {
            let input = random_input(&mut r, i);
            let rec = encode(&input);
            assert_eq!(decode(&rec), Ok(input), "case {i}");
            // The bytes view is the same record.
            let bytes: &[u8] = bytemuck::bytes_of(&rec);
            assert_eq!(bytemuck::pod_read_unaligned::<InputRecord>(bytes), rec);
        }
    }

    /// An origin rides in the record beside the input and changes nothing
    /// the engine sees; one that does not fit is dropped, never truncated.
    #[test]
    fn origins_round_trip_beside_the_input() {
        let mut r = SplitMix64(13);
        for i in 0..2_000u64 {
            let input = random_input(&mut r, i);
            let origin = Origin::new(r.next_u64() | 1, (r.next_u64() >> 8).max(1));
            let rec = encode_from(&input, origin);
            assert_eq!(decode(&rec), Ok(input), "case {i}");
            assert_eq!(origin_of(&rec), origin, "case {i}");
            for pos in 0..RECORD_LEN {
                let mut bad = rec;
                bytemuck::bytes_of_mut(&mut bad)[pos] ^= 1 << (r.below(8) as u8);
                if let Ok(other) = decode(&bad) {
                    assert!(
                        other != input || origin_of(&bad) != origin,
                        "case {i} byte {pos}"
                    );
                }
            }
        }
        assert_eq!(origin_of(&encode(&random_input(&mut r, 0))), Origin::NONE);
        assert_eq!(Origin::new(1, Origin::REQUEST_LIMIT), Origin::NONE);
        assert_eq!(Origin::new(0, 5), Origin::NONE);
    }

    #[test]
    fn every_single_byte_change_is_rejected_or_decodes_differently() {
        let mut r = SplitMix64(11);
        for i in 0..240u64 {
            let input = random_input(&mut r, i);
            let rec = encode(&input);
            for pos in 0..RECORD_LEN {
                let mut bad = rec;
                bytemuck::bytes_of_mut(&mut bad)[pos] ^= 1 << (r.below(8) as u8);
                if let Ok(other) = decode(&bad) {
                    assert_ne!(other, input, "case {i} byte {pos}");
                }
            }
        }
    }

    #[test]
    fn actors_are_journaled_and_a_record_without_one_is_admin() {
        let transfer = |actor| Input {
            seq: Seq(1),
            now: Timestamp(2),
            command: Command::Transfer {
                transfer: TransferSpec {
                    id: TransferId(1),
                    debit_account: AccountId(2),
                    credit_account: AccountId(3),
                    amount: Amount(4),
                    code: 0,
                    flags: TransferFlags(0),
                    pending_id: TransferId(0),
                    timeout_ns: 0,
                },
                batch_end: true,
                actor,
            },
        };
        // 4 × u128 + code + flags + pending_id + timeout + batch_end.
        const ACTOR_AT: usize = 93;
        // Admin is all zeros: what records written before actors hold.
        let admin = encode(&transfer(Actor::Admin));
        assert!(admin.payload[ACTOR_AT..].iter().all(|&b| b == 0));
        assert_eq!(decode(&admin), Ok(transfer(Actor::Admin)));
        let two = transfer(Actor::owners(&[OwnerId(7), OwnerId(9)]).unwrap());
        let mut rec = encode(&two);
        assert_eq!(rec.payload[ACTOR_AT], 3);
        assert_eq!(decode(&rec), Ok(two));
        // An owner beyond the count, or a count beyond 8, is refused.
        rec.payload[ACTOR_AT + 1 + 2 * 8] = 1;
        assert_eq!(
            decode(&rec),
            Err(RecordError::NonZero {
                field: "actor_owners"
            })
        );
        let mut rec = encode(&two);
        rec.payload[ACTOR_AT] = 10;
        assert_eq!(
            decode(&rec),
            Err(RecordError::BadEnum {
                field: "actor",
                value: 10
            })
        );
    }

    /// A replace record from before `requeue` existed (a zero byte after
    /// the quantity) decodes as a plain replace; `requeue` is the byte at 34
    /// and only 0/1 are accepted there.
    #[test]
    fn replace_records_without_requeue_decode_as_before() {
        let input = |requeue| Input {
            seq: Seq(9),
            now: Timestamp(10),
            command: Command::Replace {
                owner: OwnerId(1),
                order_id: OrderId(2),
                price: Some(Price(101)),
                qty: None,
                requeue,
            },
        };
        // owner, order_id, price (1 + 8), qty (1 + 8).
        const REQUEUE_AT: usize = 34;
        let old = encode(&input(false));
        assert!(old.payload[REQUEUE_AT..].iter().all(|&b| b == 0));
        assert_eq!(decode(&old), Ok(input(false)));
        let rec = encode(&input(true));
        assert_eq!(rec.payload[REQUEUE_AT], 1);
        assert_eq!(decode(&rec), Ok(input(true)));
        let mut bad = rec;
        bad.payload[REQUEUE_AT] = 2;
        assert_eq!(
            decode(&bad),
            Err(RecordError::BadFlag {
                field: "requeue",
                value: 2
            })
        );
    }

    #[test]
    fn errors_name_the_field() {
        let input = Input {
            seq: Seq(1),
            now: Timestamp(2),
            command: Command::Replace {
                owner: OwnerId(1),
                order_id: OrderId(2),
                price: None,
                qty: Some(Qty(3)),
                requeue: false,
            },
        };
        let mut rec = encode(&input);
        rec.reserved[3] = 1;
        assert_eq!(decode(&rec), Err(RecordError::NonZero { field: "origin" }));
        let mut rec = encode_from(&input, Origin::new(5, 6));
        rec.reserved[8] = 0;
        assert_eq!(decode(&rec), Err(RecordError::NonZero { field: "origin" }));
        let mut rec = encode(&input);
        rec.kind = 0;
        assert_eq!(decode(&rec), Err(RecordError::UnknownKind(0)));
        let mut rec = encode(&input);
        rec.payload[17] = 5; // price's absent value
        assert_eq!(decode(&rec), Err(RecordError::NonZero { field: "price" }));
        let mut rec = encode(&input);
        rec.payload[16] = 2; // price's presence byte
        let e = decode(&rec).unwrap_err();
        assert_eq!(
            e,
            RecordError::BadFlag {
                field: "price",
                value: 2
            }
        );
        assert!(e.to_string().contains("price"));
        let mut rec = encode(&input);
        rec.payload[PAYLOAD_LEN - 1] = 1;
        assert_eq!(
            decode(&rec),
            Err(RecordError::NonZero {
                field: "payload_tail"
            })
        );
    }
}
