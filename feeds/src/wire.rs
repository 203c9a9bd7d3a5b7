//! The market-data wire format: fixed-size little-endian records
//! (`#[repr(C)]` + `bytemuck::Pod`), each starting with the 8-byte header of
//! the order-entry protocol (len u32, template u16, schema u8, version u8)
//! and a 32-byte common block (sequence numbers, instrument, channel, flags).
//! See `feeds/PROTOCOL.md` for the layout tables.
//!
//! Invariants: a record is encoded once and the same bytes go to every
//! subscriber; reserved bytes are zero on encode and checked on decode; every
//! record's size is asserted at compile time; decode never panics on any
//! input (it returns a `WireError`). Integers are little-endian (the crate
//! refuses to build on a big-endian target).

use crate::msg::*;
use bytemuck::{Pod, Zeroable};
use engine::{InstrumentId, LevelView, Price, Qty, Seq, Side};

#[cfg(not(target_endian = "little"))]
compile_error!("the market-data wire format is little-endian; this target is not");

/// QUIC ALPN of the market-data protocol.
pub const ALPN: &[u8] = b"bourse-md/1";
/// Schema id of the market-data records (order entry is another schema).
pub const SCHEMA: u8 = 2;
/// Version of this schema.
pub const VERSION: u8 = 1;

/// Template ids.
pub mod template {
    /// L3 add.
    pub const L3_ADD: u16 = 1;
    /// L3 execute.
    pub const L3_EXECUTE: u16 = 2;
    /// L3 reduce.
    pub const L3_REDUCE: u16 = 3;
    /// L3 delete.
    pub const L3_DELETE: u16 = 4;
    /// L3 replace.
    pub const L3_REPLACE: u16 = 5;
    /// L2 level.
    pub const L2_LEVEL: u16 = 10;
    /// L1 quote.
    pub const L1_QUOTE: u16 = 11;
    /// Trade.
    pub const TRADE: u16 = 12;
    /// Status.
    pub const STATUS: u16 = 13;
    /// Snapshot start.
    pub const SNAPSHOT_START: u16 = 20;
    /// Snapshot end.
    pub const SNAPSHOT_END: u16 = 21;
}

/// Record header (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Header {
    /// Record length in bytes, header included.
    pub len: u32,
    /// Template id.
    pub template: u16,
    /// Schema id (`SCHEMA`).
    pub schema: u8,
    /// Schema version (`VERSION`).
    pub version: u8,
}

/// Fields every record carries (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Common {
    /// Sequence on the channel (snapshots: last included).
    pub channel_seq: u64,
    /// Sequence on the channel for the instrument (snapshots: last included).
    pub instrument_seq: u64,
    /// Engine input sequence.
    pub engine_seq: u64,
    /// Instrument id.
    pub instrument: u32,
    /// Channel code.
    pub channel: u8,
    /// Flags.
    pub flags: u8,
    /// Zero.
    pub reserved: u16,
}

/// L3 record (templates 1–5), 88 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct L3Record {
    /// Header.
    pub h: Header,
    /// Common fields.
    pub c: Common,
    /// Order id.
    pub order_id: u64,
    /// Price.
    pub price: u64,
    /// Visible size (add, replace) or size taken (execute, reduce); 0 on delete.
    pub qty: u64,
    /// Visible size left (execute, reduce); 0 otherwise.
    pub leftover: u64,
    /// Match id (execute); 0 otherwise.
    pub match_id: u64,
    /// 0 buy, 1 sell.
    pub side: u8,
    /// Replace: 1 when the order kept its queue position.
    pub priority_kept: u8,
    /// Zero.
    pub reserved: [u8; 6],
}

/// L2 record (template 10), 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct L2Record {
    /// Header.
    pub h: Header,
    /// Common fields.
    pub c: Common,
    /// Price.
    pub price: u64,
    /// Visible size at the level (0: level deleted).
    pub qty: u64,
    /// Orders at the level (0: level deleted).
    pub orders: u32,
    /// 0 buy, 1 sell.
    pub side: u8,
    /// Zero.
    pub reserved: [u8; 3],
}

/// L1 record (template 11), 80 bytes. A price of 0 means the side is empty.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct L1Record {
    /// Header.
    pub h: Header,
    /// Common fields.
    pub c: Common,
    /// Best bid price (0: none).
    pub bid_price: u64,
    /// Size there.
    pub bid_qty: u64,
    /// Best ask price (0: none).
    pub ask_price: u64,
    /// Size there.
    pub ask_qty: u64,
    /// Orders at the best bid.
    pub bid_orders: u32,
    /// Orders at the best ask.
    pub ask_orders: u32,
}

/// Trade record (template 12), 88 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct TradeRecord {
    /// Header.
    pub h: Header,
    /// Common fields.
    pub c: Common,
    /// Price.
    pub price: u64,
    /// Size.
    pub qty: u64,
    /// Match id (per instrument, from 1).
    pub match_id: u64,
    /// Resting order.
    pub maker_order_id: u64,
    /// Incoming order.
    pub taker_order_id: u64,
    /// Aggressor side: 0 buy, 1 sell.
    pub aggressor: u8,
    /// Zero.
    pub reserved: [u8; 7],
}

/// Status record (template 13), 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct StatusRecord {
    /// Header.
    pub h: Header,
    /// Common fields.
    pub c: Common,
    /// 1 halted, 0 trading.
    pub halted: u8,
    /// Halt reason (0 operator, 1 circuit breaker; 0 on resume).
    pub reason: u8,
    /// Zero.
    pub reserved: [u8; 6],
}

/// Snapshot start / end record (templates 20, 21), 48 bytes. Its common
/// block's sequence numbers are the last ones the snapshot includes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct SnapshotRecord {
    /// Header.
    pub h: Header,
    /// Common fields.
    pub c: Common,
    /// Entry records between start and end.
    pub entries: u32,
    /// 1 when the instrument is halted.
    pub halted: u8,
    /// Zero.
    pub reserved: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<Header>() == 8);
const _: () = assert!(core::mem::size_of::<Common>() == 32);
const _: () = assert!(core::mem::size_of::<L3Record>() == 88);
const _: () = assert!(core::mem::size_of::<L2Record>() == 64);
const _: () = assert!(core::mem::size_of::<L1Record>() == 80);
const _: () = assert!(core::mem::size_of::<TradeRecord>() == 88);
const _: () = assert!(core::mem::size_of::<StatusRecord>() == 48);
const _: () = assert!(core::mem::size_of::<SnapshotRecord>() == 48);

/// Why bytes are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the header or the record length says.
    Short,
    /// The length does not match the template's size.
    BadLength,
    /// Not this schema.
    BadSchema,
    /// Not this version.
    BadVersion,
    /// Unknown template id.
    UnknownTemplate,
    /// Reserved bytes or unknown flag bits not zero.
    Reserved,
    /// A field out of its range (side, channel, boolean).
    BadField,
    /// A snapshot's records are not start, entries, end.
    BadSnapshot,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for WireError {}

fn header(template: u16, len: usize) -> Header {
    Header {
        len: len as u32,
        template,
        schema: SCHEMA,
        version: VERSION,
    }
}

fn side_code(s: Side) -> u8 {
    s as u8
}

fn side_of(c: u8) -> Result<Side, WireError> {
    match c {
        0 => Ok(Side::Buy),
        1 => Ok(Side::Sell),
        _ => Err(WireError::BadField),
    }
}

fn bool_of(c: u8) -> Result<bool, WireError> {
    match c {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(WireError::BadField),
    }
}

fn common(m: &Message) -> Common {
    Common {
        channel_seq: m.channel_seq,
        instrument_seq: m.instrument_seq,
        engine_seq: m.engine_seq.0,
        instrument: m.instrument.0,
        channel: m.channel() as u8,
        flags: m.flags.0,
        reserved: 0,
    }
}

fn l3_record(c: Common, u: &L3Update) -> L3Record {
    let mut r = L3Record::zeroed();
    r.c = c;
    let (t, id, side, price) = match *u {
        L3Update::Add {
            order_id,
            side,
            price,
            qty,
        } => {
            r.qty = qty.0;
            (template::L3_ADD, order_id, side, price)
        }
        L3Update::Execute {
            order_id,
            side,
            price,
            qty,
            leftover,
            match_id,
        } => {
            r.qty = qty.0;
            r.leftover = leftover.0;
            r.match_id = match_id;
            (template::L3_EXECUTE, order_id, side, price)
        }
        L3Update::Reduce {
            order_id,
            side,
            price,
            qty,
            leftover,
        } => {
            r.qty = qty.0;
            r.leftover = leftover.0;
            (template::L3_REDUCE, order_id, side, price)
        }
        L3Update::Delete {
            order_id,
            side,
            price,
        } => (template::L3_DELETE, order_id, side, price),
        L3Update::Replace {
            order_id,
            side,
            price,
            qty,
            priority_kept,
        } => {
            r.qty = qty.0;
            r.priority_kept = priority_kept as u8;
            (template::L3_REPLACE, order_id, side, price)
        }
    };
    r.h = header(t, core::mem::size_of::<L3Record>());
    r.order_id = id;
    r.side = side_code(side);
    r.price = price.0;
    r
}

fn l2_record(c: Common, l: &LevelUpdate) -> L2Record {
    L2Record {
        h: header(template::L2_LEVEL, core::mem::size_of::<L2Record>()),
        c,
        price: l.price.0,
        qty: l.qty.0,
        orders: l.orders,
        side: side_code(l.side),
        reserved: [0; 3],
    }
}

fn l1_record(c: Common, q: &Quote) -> L1Record {
    L1Record {
        h: header(template::L1_QUOTE, core::mem::size_of::<L1Record>()),
        c,
        bid_price: q.bid.price.map_or(0, |p| p.0),
        bid_qty: q.bid.qty.0,
        ask_price: q.ask.price.map_or(0, |p| p.0),
        ask_qty: q.ask.qty.0,
        bid_orders: q.bid.orders,
        ask_orders: q.ask.orders,
    }
}

/// Appends the record of one message to `out`; returns its length.
pub fn encode(m: &Message, out: &mut Vec<u8>) -> usize {
    let c = common(m);
    let start = out.len();
    match &m.body {
        Body::L3(u) => out.extend_from_slice(bytemuck::bytes_of(&l3_record(c, u))),
        Body::L2(l) => out.extend_from_slice(bytemuck::bytes_of(&l2_record(c, l))),
        Body::L1(q) => out.extend_from_slice(bytemuck::bytes_of(&l1_record(c, q))),
        Body::Trade(t) => {
            let r = TradeRecord {
                h: header(template::TRADE, core::mem::size_of::<TradeRecord>()),
                c,
                price: t.price.0,
                qty: t.qty.0,
                match_id: t.match_id,
                maker_order_id: t.maker_order_id,
                taker_order_id: t.taker_order_id,
                aggressor: side_code(t.aggressor),
                reserved: [0; 7],
            };
            out.extend_from_slice(bytemuck::bytes_of(&r));
        }
        Body::Status(s) => {
            let r = StatusRecord {
                h: header(template::STATUS, core::mem::size_of::<StatusRecord>()),
                c,
                halted: s.halted as u8,
                reason: s.reason,
                reserved: [0; 6],
            };
            out.extend_from_slice(bytemuck::bytes_of(&r));
        }
    }
    out.len() - start
}

fn read<T: Pod>(buf: &[u8]) -> Result<T, WireError> {
    let n = core::mem::size_of::<T>();
    if buf.len() < n {
        return Err(WireError::Short);
    }
    Ok(bytemuck::pod_read_unaligned(&buf[..n]))
}

/// Reads and checks a record's header; returns it (the record is `buf[..len]`).
pub fn peek_header(buf: &[u8]) -> Result<Header, WireError> {
    let h: Header = read(buf)?;
    if h.schema != SCHEMA {
        return Err(WireError::BadSchema);
    }
    if h.version != VERSION {
        return Err(WireError::BadVersion);
    }
    let want = match h.template {
        template::L3_ADD..=template::L3_REPLACE => core::mem::size_of::<L3Record>(),
        template::L2_LEVEL => core::mem::size_of::<L2Record>(),
        template::L1_QUOTE => core::mem::size_of::<L1Record>(),
        template::TRADE => core::mem::size_of::<TradeRecord>(),
        template::STATUS => core::mem::size_of::<StatusRecord>(),
        template::SNAPSHOT_START | template::SNAPSHOT_END => core::mem::size_of::<SnapshotRecord>(),
        _ => return Err(WireError::UnknownTemplate),
    };
    if h.len as usize != want {
        return Err(WireError::BadLength);
    }
    if buf.len() < want {
        return Err(WireError::Short);
    }
    Ok(h)
}

fn check_common(c: &Common, want: Channel) -> Result<(), WireError> {
    if c.reserved != 0 || c.flags & !Flags::ALL != 0 {
        return Err(WireError::Reserved);
    }
    if Channel::from_code(c.channel) != Some(want) {
        return Err(WireError::BadField);
    }
    Ok(())
}

fn message(c: &Common, body: Body) -> Message {
    Message {
        instrument: InstrumentId(c.instrument),
        channel_seq: c.channel_seq,
        instrument_seq: c.instrument_seq,
        engine_seq: Seq(c.engine_seq),
        flags: Flags(c.flags),
        body,
    }
}

/// Decodes one message record from the start of `buf`; returns it and its length.
pub fn decode(buf: &[u8]) -> Result<(Message, usize), WireError> {
    let h = peek_header(buf)?;
    let len = h.len as usize;
    let m = match h.template {
        template::L3_ADD..=template::L3_REPLACE => {
            let r: L3Record = read(buf)?;
            check_common(&r.c, Channel::L3)?;
            if r.reserved != [0; 6] {
                return Err(WireError::Reserved);
            }
            let (order_id, side, price) = (r.order_id, side_of(r.side)?, Price(r.price));
            let zero_extra = |ok: bool| if ok { Ok(()) } else { Err(WireError::Reserved) };
            let u = match h.template {
                template::L3_ADD => {
                    zero_extra(r.leftover == 0 && r.match_id == 0 && r.priority_kept == 0)?;
                    L3Update::Add {
                        order_id,
                        side,
                        price,
                        qty: Qty(r.qty),
                    }
                }
                template::L3_EXECUTE => {
                    zero_extra(r.priority_kept == 0)?;
                    L3Update::Execute {
                        order_id,
                        side,
                        price,
                        qty: Qty(r.qty),
                        leftover: Qty(r.leftover),
                        match_id: r.match_id,
                    }
                }
                template::L3_REDUCE => {
                    zero_extra(r.match_id == 0 && r.priority_kept == 0)?;
                    L3Update::Reduce {
                        order_id,
                        side,
                        price,
                        qty: Qty(r.qty),
                        leftover: Qty(r.leftover),
                    }
                }
                template::L3_DELETE => {
                    zero_extra(
                        r.qty == 0 && r.leftover == 0 && r.match_id == 0 && r.priority_kept == 0,
                    )?;
                    L3Update::Delete {
                        order_id,
                        side,
                        price,
                    }
                }
                _ => {
                    zero_extra(r.leftover == 0 && r.match_id == 0)?;
                    L3Update::Replace {
                        order_id,
                        side,
                        price,
                        qty: Qty(r.qty),
                        priority_kept: bool_of(r.priority_kept)?,
                    }
                }
            };
            message(&r.c, Body::L3(u))
        }
        template::L2_LEVEL => {
            let r: L2Record = read(buf)?;
            check_common(&r.c, Channel::L2)?;
            if r.reserved != [0; 3] {
                return Err(WireError::Reserved);
            }
            message(
                &r.c,
                Body::L2(LevelUpdate {
                    side: side_of(r.side)?,
                    price: Price(r.price),
                    qty: Qty(r.qty),
                    orders: r.orders,
                }),
            )
        }
        template::L1_QUOTE => {
            let r: L1Record = read(buf)?;
            check_common(&r.c, Channel::L1)?;
            message(&r.c, Body::L1(quote_of(&r)))
        }
        template::TRADE => {
            let r: TradeRecord = read(buf)?;
            check_common(&r.c, Channel::Trades)?;
            if r.reserved != [0; 7] {
                return Err(WireError::Reserved);
            }
            message(
                &r.c,
                Body::Trade(TradeMsg {
                    price: Price(r.price),
                    qty: Qty(r.qty),
                    match_id: r.match_id,
                    aggressor: side_of(r.aggressor)?,
                    maker_order_id: r.maker_order_id,
                    taker_order_id: r.taker_order_id,
                }),
            )
        }
        template::STATUS => {
            let r: StatusRecord = read(buf)?;
            check_common(&r.c, Channel::Status)?;
            if r.reserved != [0; 6] {
                return Err(WireError::Reserved);
            }
            message(
                &r.c,
                Body::Status(StatusMsg {
                    halted: bool_of(r.halted)?,
                    reason: r.reason,
                }),
            )
        }
        _ => return Err(WireError::BadSnapshot),
    };
    Ok((m, len))
}

fn quote_of(r: &L1Record) -> Quote {
    let top = |p: u64, q: u64, n: u32| Top {
        price: (p != 0).then_some(Price(p)),
        qty: Qty(q),
        orders: n,
    };
    Quote {
        bid: top(r.bid_price, r.bid_qty, r.bid_orders),
        ask: top(r.ask_price, r.ask_qty, r.ask_orders),
    }
}

/// Appends a snapshot as records: start, entries (L2 levels, L3 adds or one
/// L1 quote, flagged `SNAPSHOT`), end. Returns the bytes written.
pub fn encode_snapshot(s: &Snapshot, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    let channel = s.channel.unwrap_or(Channel::Status);
    let c = Common {
        channel_seq: s.last_channel_seq,
        instrument_seq: s.last_instrument_seq,
        engine_seq: s.engine_seq.0,
        instrument: s.instrument.0,
        channel: channel as u8,
        flags: Flags::SNAPSHOT,
        reserved: 0,
    };
    let entries = match channel {
        Channel::L2 => s.bids.len() + s.asks.len(),
        Channel::L3 => s.orders.len(),
        Channel::L1 => 1,
        _ => 0,
    };
    let mut rec = SnapshotRecord {
        h: header(
            template::SNAPSHOT_START,
            core::mem::size_of::<SnapshotRecord>(),
        ),
        c,
        entries: entries as u32,
        halted: s.halted as u8,
        reserved: [0; 3],
    };
    out.extend_from_slice(bytemuck::bytes_of(&rec));
    match channel {
        Channel::L2 => {
            for (side, levels) in [(Side::Buy, &s.bids), (Side::Sell, &s.asks)] {
                for l in levels.iter() {
                    let u = LevelUpdate {
                        side,
                        price: l.price,
                        qty: l.qty,
                        orders: l.orders,
                    };
                    out.extend_from_slice(bytemuck::bytes_of(&l2_record(c, &u)));
                }
            }
        }
        Channel::L3 => {
            for o in &s.orders {
                let u = L3Update::Add {
                    order_id: o.order_id,
                    side: o.side,
                    price: o.price,
                    qty: o.qty,
                };
                out.extend_from_slice(bytemuck::bytes_of(&l3_record(c, &u)));
            }
        }
        Channel::L1 => out.extend_from_slice(bytemuck::bytes_of(&l1_record(c, &s.quote))),
        _ => {}
    }
    rec.h.template = template::SNAPSHOT_END;
    out.extend_from_slice(bytemuck::bytes_of(&rec));
    out.len() - start
}

/// Decodes a snapshot (start, entries, end) from the start of `buf`;
/// returns it and the bytes it took.
pub fn decode_snapshot(buf: &[u8]) -> Result<(Snapshot, usize), WireError> {
    let h = peek_header(buf)?;
    if h.template != template::SNAPSHOT_START {
        return Err(WireError::BadSnapshot);
    }
    let start: SnapshotRecord = read(buf)?;
    let channel = Channel::from_code(start.c.channel).ok_or(WireError::BadField)?;
    check_common(&start.c, channel)?;
    if start.reserved != [0; 3] || start.c.flags != Flags::SNAPSHOT {
        return Err(WireError::Reserved);
    }
    let mut s = Snapshot {
        channel: Some(channel),
        instrument: InstrumentId(start.c.instrument),
        last_channel_seq: start.c.channel_seq,
        last_instrument_seq: start.c.instrument_seq,
        engine_seq: Seq(start.c.engine_seq),
        halted: bool_of(start.halted)?,
        ..Snapshot::default()
    };
    let mut at = h.len as usize;
    for _ in 0..start.entries {
        let (m, n) = decode(&buf[at..])?;
        if !m.flags.has(Flags::SNAPSHOT) || m.instrument != s.instrument {
            return Err(WireError::BadSnapshot);
        }
        match m.body {
            Body::L2(l) if channel == Channel::L2 => {
                let v = LevelView {
                    price: l.price,
                    qty: l.qty,
                    orders: l.orders,
                };
                match l.side {
                    Side::Buy => s.bids.push(v),
                    Side::Sell => s.asks.push(v),
                }
            }
            Body::L3(L3Update::Add {
                order_id,
                side,
                price,
                qty,
            }) if channel == Channel::L3 => s.orders.push(SnapshotOrder {
                order_id,
                side,
                price,
                qty,
            }),
            Body::L1(q) if channel == Channel::L1 => s.quote = q,
            _ => return Err(WireError::BadSnapshot),
        }
        at += n;
    }
    let eh = peek_header(&buf[at..])?;
    let end: SnapshotRecord = read(&buf[at..])?;
    if eh.template != template::SNAPSHOT_END || end.c != start.c || end.entries != start.entries {
        return Err(WireError::BadSnapshot);
    }
    at += eh.len as usize;
    Ok((s, at))
}
