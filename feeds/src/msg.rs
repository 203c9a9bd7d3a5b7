//! Market-data messages as plain Rust values: what the builder emits, what
//! the subscriber-side book builder applies, and what `wire` encodes.
//!
//! Invariants: every incremental message names its channel and instrument and
//! carries two sequence numbers: `channel_seq` (1, 2, 3, … over every
//! instrument of the channel) and `instrument_seq` (1, 2, 3, … per channel
//! and instrument, with no gaps). A subscriber to one instrument detects a
//! loss by `instrument_seq` alone. L2 levels are absolute (size and order
//! count), so the latest message for a price is the whole truth about it.

use engine::{InstrumentId, Price, Qty, Seq, Side};

/// A feed channel. Each has its own sequence numbers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Channel {
    /// Best bid and offer.
    L1 = 1,
    /// Market by price (configurable depth).
    L2 = 2,
    /// Market by order.
    L3 = 3,
    /// Trades.
    Trades = 4,
    /// Trading status (halted / resumed).
    Status = 5,
}

impl Channel {
    /// Every channel, in code order.
    pub const ALL: [Channel; 5] = [
        Channel::L1,
        Channel::L2,
        Channel::L3,
        Channel::Trades,
        Channel::Status,
    ];

    /// Index into per-channel arrays (0..5).
    pub fn index(self) -> usize {
        self as usize - 1
    }

    /// The channel with this wire code.
    pub fn from_code(c: u8) -> Option<Channel> {
        Channel::ALL.get((c as usize).wrapping_sub(1)).copied()
    }
}

/// Message flags (a bit set on every message).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// An L2 message from a conflating buffer: sequence numbers before it were
    /// skipped on purpose (the levels they changed are restated).
    pub const CONFLATED: u8 = 1 << 0;
    /// Part of a snapshot, not an incremental.
    pub const SNAPSHOT: u8 = 1 << 1;
    /// An L3 add that is an iceberg's next slice (the order goes to the back).
    pub const REPLENISH: u8 = 1 << 2;
    /// Every flag this version knows.
    pub const ALL: u8 = Self::CONFLATED | Self::SNAPSHOT | Self::REPLENISH;

    /// Whether `bit` is set.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// A market-by-order change. `qty` is always the order's *visible* size.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum L3Update {
    /// A new order (or an iceberg's new slice) at the back of its level.
    Add {
        /// Order id.
        order_id: u64,
        /// Side.
        side: Side,
        /// Price.
        price: Price,
        /// Visible size.
        qty: Qty,
    },
    /// A resting order traded `qty`; `leftover` visible remains (0: gone).
    Execute {
        /// Order id.
        order_id: u64,
        /// Side.
        side: Side,
        /// Price (the trade price).
        price: Price,
        /// Executed size.
        qty: Qty,
        /// Visible size left; 0 removes the order.
        leftover: Qty,
        /// The trade's match id (see the trades channel).
        match_id: u64,
    },
    /// A resting order lost `qty` without a trade; `leftover` visible remains (0: gone).
    Reduce {
        /// Order id.
        order_id: u64,
        /// Side.
        side: Side,
        /// Price.
        price: Price,
        /// Removed size.
        qty: Qty,
        /// Visible size left; 0 removes the order.
        leftover: Qty,
    },
    /// A resting order left the book.
    Delete {
        /// Order id.
        order_id: u64,
        /// Side.
        side: Side,
        /// Price it rested at.
        price: Price,
    },
    /// A resting order's new price and visible size; without priority it goes
    /// to the back of its (new) level.
    Replace {
        /// Order id.
        order_id: u64,
        /// Side.
        side: Side,
        /// New price.
        price: Price,
        /// New visible size.
        qty: Qty,
        /// Whether it kept its place in the queue.
        priority_kept: bool,
    },
}

impl L3Update {
    /// The order the update is about.
    pub fn order_id(&self) -> u64 {
        match *self {
            L3Update::Add { order_id, .. }
            | L3Update::Execute { order_id, .. }
            | L3Update::Reduce { order_id, .. }
            | L3Update::Delete { order_id, .. }
            | L3Update::Replace { order_id, .. } => order_id,
        }
    }
}

/// A market-by-price level, absolute. `orders == 0` (and `qty == 0`) deletes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct LevelUpdate {
    /// Side.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Visible size at the level.
    pub qty: Qty,
    /// Orders at the level.
    pub orders: u32,
}

impl LevelUpdate {
    /// Whether this removes the level.
    pub fn is_delete(&self) -> bool {
        self.orders == 0
    }
}

/// One side of the top of book.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub struct Top {
    /// Best price (`None`: side empty).
    pub price: Option<Price>,
    /// Visible size there.
    pub qty: Qty,
    /// Orders there.
    pub orders: u32,
}

/// Best bid and offer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub struct Quote {
    /// Best bid.
    pub bid: Top,
    /// Best offer.
    pub ask: Top,
}

/// A trade.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct TradeMsg {
    /// Price (the resting order's).
    pub price: Price,
    /// Size.
    pub qty: Qty,
    /// 1, 2, 3, … per instrument.
    pub match_id: u64,
    /// The incoming (aggressor) order's side.
    pub aggressor: Side,
    /// Resting order.
    pub maker_order_id: u64,
    /// Incoming order.
    pub taker_order_id: u64,
}

/// Trading status.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct StatusMsg {
    /// Whether trading is halted now.
    pub halted: bool,
    /// Halt reason code (`engine::HaltReason` as u8; 0 on resume).
    pub reason: u8,
}

/// A message's content.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Body {
    /// Market by order.
    L3(L3Update),
    /// Market by price.
    L2(LevelUpdate),
    /// Best bid and offer.
    L1(Quote),
    /// Trade.
    Trade(TradeMsg),
    /// Status.
    Status(StatusMsg),
}

impl Body {
    /// The channel that carries this body.
    pub fn channel(&self) -> Channel {
        match self {
            Body::L3(_) => Channel::L3,
            Body::L2(_) => Channel::L2,
            Body::L1(_) => Channel::L1,
            Body::Trade(_) => Channel::Trades,
            Body::Status(_) => Channel::Status,
        }
    }
}

/// One sequenced incremental message.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Message {
    /// Instrument.
    pub instrument: InstrumentId,
    /// Sequence on the channel (over all instruments).
    pub channel_seq: u64,
    /// Sequence on the channel for this instrument.
    pub instrument_seq: u64,
    /// The engine input that caused it.
    pub engine_seq: Seq,
    /// Flags (`Flags::*`).
    pub flags: Flags,
    /// Content (decides the channel).
    pub body: Body,
}

impl Message {
    /// The channel.
    pub fn channel(&self) -> Channel {
        self.body.channel()
    }
}

/// One resting order in an L3 snapshot.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct SnapshotOrder {
    /// Order id.
    pub order_id: u64,
    /// Side.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Visible size.
    pub qty: Qty,
}

/// A channel's state for one instrument, as of `last_instrument_seq`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Snapshot {
    /// Which channel (decides which of the lists below is filled).
    pub channel: Option<Channel>,
    /// Instrument.
    pub instrument: InstrumentId,
    /// Last channel sequence number included.
    pub last_channel_seq: u64,
    /// Last per-instrument sequence number included: apply incrementals from the next one.
    pub last_instrument_seq: u64,
    /// The engine input it reflects (all of it, never part of one).
    pub engine_seq: Seq,
    /// Whether the instrument is halted.
    pub halted: bool,
    /// L2: bids, best first, within the feed's depth.
    pub bids: Vec<engine::LevelView>,
    /// L2: asks, best first, within the feed's depth.
    pub asks: Vec<engine::LevelView>,
    /// L3: every resting order, bids then asks, best level first, queue order within a level.
    pub orders: Vec<SnapshotOrder>,
    /// L1: the quote.
    pub quote: Quote,
}
