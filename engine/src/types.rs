//! Newtypes over fixed-point integers and the small enums of the domain.
//!
//! Invariants: every id and unit is its own type, so a price can never be
//! passed where a quantity is expected. All values are plain integers: the
//! engine has no floating point anywhere. `Price` is quote minor units per
//! lot, `Qty` is a number of lots, `Amount` is ledger minor units (u128).

use core::fmt;

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident($inner:ty)) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

newtype!(
    /// Quote-asset minor units per lot; valid prices are > 0 and a multiple of the tick.
    Price(u64)
);
newtype!(
    /// A number of lots.
    Qty(u64)
);
newtype!(
    /// Engine-assigned order id: 1, 2, 3, … per accepted order in a partition.
    OrderId(u64)
);
newtype!(
    /// Client-chosen order id: an owner may not reuse one while an order of
    /// its own that used it is live or among the partition's last W accepted
    /// orders (W = `EngineConfig::client_order_ids_max`); past that it may.
    ClientOrderId(u64)
);
newtype!(
    /// The trading party (a firm, a desk, a payment user).
    OwnerId(u64)
);
newtype!(
    /// Instrument id, chosen by the operator.
    InstrumentId(u32)
);
newtype!(
    /// Ledger account id (client-chosen, like TigerBeetle's).
    AccountId(u128)
);
newtype!(
    /// Ledger transfer id (client-chosen, exactly-once).
    TransferId(u128)
);
newtype!(
    /// Ledger amount in minor units of an asset.
    Amount(u128)
);
newtype!(
    /// Input sequence number, stamped by the sequencer (or a script's line number).
    Seq(u64)
);
newtype!(
    /// Engine time in nanoseconds; the only clock the engine sees.
    Timestamp(u64)
);

/// A short ASCII code naming an asset ("BTC", "USD"), stored inline so that
/// commands stay fixed-size.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Asset(pub [u8; Asset::LEN]);

impl Asset {
    /// Longest asset code, in bytes.
    pub const LEN: usize = 12;

    /// Builds an asset code from text; `None` when empty, too long or not
    /// printable ASCII (never truncated: a longer code would merge with
    /// another asset).
    pub fn from_str_code(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > Self::LEN || !b.iter().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        let mut out = [0u8; Self::LEN];
        out[..b.len()].copy_from_slice(b);
        Some(Asset(out))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        let n = self.0.iter().position(|&c| c == 0).unwrap_or(Self::LEN);
        core::str::from_utf8(&self.0[..n]).unwrap_or("?")
    }

    /// Whether the bytes are what `from_str_code` builds: 1 to `LEN`
    /// printable ASCII characters, then zero padding. Raw bytes (wire,
    /// journal) are checked with it, so two different byte strings never
    /// name the same asset text.
    pub fn is_valid(&self) -> bool {
        canonical_code(&self.0)
    }
}

/// 1..=N printable ASCII bytes followed only by zeros.
fn canonical_code(b: &[u8]) -> bool {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    n > 0 && b[..n].iter().all(|c| c.is_ascii_graphic()) && b[n..].iter().all(|&c| c == 0)
}

impl fmt::Debug for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Asset({})", self.as_str())
    }
}
impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A short ASCII instrument symbol ("BTC-USD"), stored inline.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Symbol(pub [u8; Symbol::LEN]);

impl Symbol {
    /// Longest symbol, in bytes.
    pub const LEN: usize = 24;

    /// Builds a symbol from text; `None` when empty, too long or not printable ASCII.
    pub fn from_str_code(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > Self::LEN || !b.iter().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        let mut out = [0u8; Self::LEN];
        out[..b.len()].copy_from_slice(b);
        Some(Symbol(out))
    }

    /// The symbol as text.
    pub fn as_str(&self) -> &str {
        let n = self.0.iter().position(|&c| c == 0).unwrap_or(Self::LEN);
        core::str::from_utf8(&self.0[..n]).unwrap_or("?")
    }

    /// Whether the bytes are what `from_str_code` builds (see `Asset::is_valid`).
    pub fn is_valid(&self) -> bool {
        canonical_code(&self.0)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({})", self.as_str())
    }
}

/// Buy or sell.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum Side {
    /// Bid.
    Buy = 0,
    /// Ask.
    Sell = 1,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// Order type.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum OrderType {
    /// Trades at the limit price or better; may rest.
    Limit = 0,
    /// Trades at any price inside the band; never rests.
    Market = 1,
    /// Waits for its trigger, then behaves as a market order.
    Stop = 2,
    /// Waits for its trigger, then behaves as a limit order.
    StopLimit = 3,
}

impl OrderType {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            OrderType::Limit => "limit",
            OrderType::Market => "market",
            OrderType::Stop => "stop",
            OrderType::StopLimit => "stop_limit",
        }
    }
    /// Whether the type carries a limit price.
    pub fn has_price(self) -> bool {
        matches!(self, OrderType::Limit | OrderType::StopLimit)
    }
    /// Whether the type carries a trigger price.
    pub fn has_trigger(self) -> bool {
        matches!(self, OrderType::Stop | OrderType::StopLimit)
    }
}

/// Time in force.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum Tif {
    /// Good till cancelled: rests.
    Gtc = 0,
    /// Immediate or cancel: fill what can be filled now, cancel the rest.
    Ioc = 1,
    /// Fill or kill: fill all now or reject with no trade at all.
    Fok = 2,
    /// Good till date: rests until engine time ≥ `expire_at`.
    Gtd = 3,
}

impl Tif {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Tif::Gtc => "gtc",
            Tif::Ioc => "ioc",
            Tif::Fok => "fok",
            Tif::Gtd => "gtd",
        }
    }
}

/// Self-trade prevention mode, taken from the incoming order.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum Stp {
    /// Orders of the same owner trade with each other.
    None = 0,
    /// The incoming order's remainder is cancelled.
    CancelTaker = 1,
    /// The resting order is cancelled; the incoming order goes on matching.
    CancelMaker = 2,
    /// Both are cancelled.
    CancelBoth = 3,
    /// Both are reduced by the overlap, without a trade.
    Decrement = 4,
}

impl Stp {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Stp::None => "none",
            Stp::CancelTaker => "cancel_taker",
            Stp::CancelMaker => "cancel_maker",
            Stp::CancelBoth => "cancel_both",
            Stp::Decrement => "decrement",
        }
    }
}

/// A name that is none of a setting's values (`"fsync"` as a durability
/// mode, say): the error of every `FromStr` over a fixed set of names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {got:?} (expected {expected})")]
pub struct UnknownName {
    /// What was being named ("durability mode").
    pub what: &'static str,
    /// The text given.
    pub got: String,
    /// The accepted names, for the message ("durable, async or none").
    pub expected: &'static str,
}

impl UnknownName {
    /// The error for `got` as a `what`, listing `expected`.
    pub fn new(what: &'static str, got: &str, expected: &'static str) -> Self {
        UnknownName {
            what,
            got: got.to_string(),
            expected,
        }
    }
}
