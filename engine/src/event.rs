//! The outputs of the state machine: events, reject reasons and ledger result
//! codes.
//!
//! Invariants: every reason has a fixed numeric code and a fixed snake_case
//! name; both are part of the wire and journal contracts and never change
//! meaning. `Events` is a buffer allocated once and reused: `apply` clears and
//! refills it, so steady-state use allocates nothing.

use crate::history::TransferRecord;
use crate::types::*;

macro_rules! coded_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $code:literal => $text:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
        #[repr(u16)]
        pub enum $name {
            $($(#[$vm])* $variant = $code,)*
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The stable numeric code (the wire carries this).
            pub fn code(self) -> u16 {
                self as u16
            }

            /// The stable snake_case name (CLI, logs and scripts carry this).
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The value with this code.
            pub fn from_code(code: u16) -> Option<Self> {
                match code {
                    $($code => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// The value with this name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

coded_enum!(
    /// Why an order, cancel, replace, instrument, time or query command was
    /// rejected. Numbers are stable wire codes.
    RejectReason {
        /// No instrument with that id.
        UnknownInstrument = 1 => "unknown_instrument",
        /// Settling instrument and the owner has no trading account in its base or quote asset.
        UnknownOwner = 2 => "unknown_owner",
        /// Price (or trigger) ≤ 0, off the tick, or present/absent against the order type.
        InvalidPrice = 3 => "invalid_price",
        /// Quantity (or display quantity) zero or outside the instrument's limits.
        InvalidQty = 4 => "invalid_qty",
        /// price × qty or qty × lot_size beyond u64.
        Overflow = 5 => "overflow",
        /// Limit price outside the band (or a settling market buy without a band).
        PriceOutOfBand = 6 => "price_out_of_band",
        /// The instrument is halted.
        InstrumentHalted = 7 => "instrument_halted",
        /// A post-only order would trade on arrival.
        PostOnlyWouldCross = 8 => "post_only_would_cross",
        /// A fill-or-kill order could not be filled entirely.
        FokNotFillable = 9 => "fok_not_fillable",
        /// The hold does not fit the owner's available balance.
        InsufficientFunds = 10 => "insufficient_funds",
        /// The owner already used that client order id.
        DuplicateClientOrderId = 11 => "duplicate_client_order_id",
        /// The order is not live (unknown, filled, cancelled, or a waiting stop on replace).
        UnknownOrder = 12 => "unknown_order",
        /// The order belongs to another owner.
        NotOrderOwner = 13 => "not_order_owner",
        /// A per-owner limit (open orders, notional) would be exceeded.
        LimitExceeded = 14 => "limit_exceeded",
        /// Back-pressure: the engine's inbound ring is full (from the gateway).
        Busy = 15 => "busy",
        /// An instrument with that id already exists.
        InstrumentExists = 16 => "instrument_exists",
        /// The instrument definition is inconsistent.
        InvalidInstrument = 17 => "invalid_instrument",
        /// A time that goes back.
        InvalidTime = 18 => "invalid_time",
        /// No account with that id.
        AccountNotFound = 19 => "account_not_found",
        /// A capacity fixed at start-up (orders, levels, stops, owners, instruments) is full.
        CapacityExceeded = 20 => "capacity_exceeded",
        /// The actor may not read this account (a balance query).
        NotAuthorized = 21 => "not_authorized",
        /// An `install_history` out of order, or naming a run the attached
        /// history does not hold with that checksum (or no history attached).
        HistoryRunRejected = 22 => "history_run_rejected",
        /// No transfer with that id that the actor may see.
        TransferNotFound = 23 => "transfer_not_found",
        /// A transfer query's filter is malformed (limit 0 or above the
        /// maximum, or `lo > hi`).
        InvalidFilter = 24 => "invalid_filter",
    }
);

coded_enum!(
    /// Ledger result codes (accounts and transfers), TigerBeetle's names.
    /// Numbers are stable wire codes. The precedence is documented on
    /// `ledger::check_transfer` and in ARCHITECTURE.md.
    LedgerError {
        /// A member of a failed linked chain that did not fail itself.
        LinkedEventFailed = 1 => "linked_event_failed",
        /// A linked chain still open at the end of the batch.
        LinkedEventChainOpen = 2 => "linked_event_chain_open",
        /// Id zero.
        IdMustNotBeZero = 3 => "id_must_not_be_zero",
        /// Same id, different flags.
        ExistsWithDifferentFlags = 4 => "exists_with_different_flags",
        /// Same id, different pending id.
        ExistsWithDifferentPendingId = 5 => "exists_with_different_pending_id",
        /// Same id, different timeout.
        ExistsWithDifferentTimeout = 6 => "exists_with_different_timeout",
        /// Same id, different debit account.
        ExistsWithDifferentDebitAccountId = 7 => "exists_with_different_debit_account",
        /// Same id, different credit account.
        ExistsWithDifferentCreditAccountId = 8 => "exists_with_different_credit_account",
        /// Same id, different amount.
        ExistsWithDifferentAmount = 9 => "exists_with_different_amount",
        /// Same id, different code.
        ExistsWithDifferentCode = 10 => "exists_with_different_code",
        /// Same id, same fields: already done.
        Exists = 11 => "exists",
        /// The id failed before for a transient cause.
        IdAlreadyFailed = 12 => "id_already_failed",
        /// Flags that cannot go together (or unknown flag bits).
        FlagsAreMutuallyExclusive = 13 => "flags_are_mutually_exclusive",
        /// Debit and credit account are the same.
        AccountsMustBeDifferent = 14 => "accounts_must_be_different",
        /// A pending id on a transfer that is not post/void.
        PendingIdMustBeZero = 15 => "pending_id_must_be_zero",
        /// Post/void without a pending id.
        PendingIdMustNotBeZero = 16 => "pending_id_must_not_be_zero",
        /// A timeout on a transfer that is not pending.
        TimeoutReservedForPendingTransfer = 17 => "timeout_reserved_for_pending_transfer",
        /// Amount zero (outside post/void).
        AmountMustNotBeZero = 18 => "amount_must_not_be_zero",
        /// No such debit account.
        DebitAccountNotFound = 19 => "debit_account_not_found",
        /// No such credit account.
        CreditAccountNotFound = 20 => "credit_account_not_found",
        /// The accounts hold different assets.
        AccountsMustHaveTheSameAsset = 21 => "accounts_must_have_the_same_asset",
        /// Post/void of a pending transfer that does not exist.
        PendingTransferNotFound = 22 => "pending_transfer_not_found",
        /// The referenced transfer is not pending.
        PendingTransferNotPending = 23 => "pending_transfer_not_pending",
        /// Post/void names another debit account than the pending transfer.
        PendingTransferHasDifferentDebitAccountId = 24 => "pending_transfer_has_different_debit_account",
        /// Post/void names another credit account than the pending transfer.
        PendingTransferHasDifferentCreditAccountId = 25 => "pending_transfer_has_different_credit_account",
        /// Post of more than is pending.
        ExceedsPendingTransferAmount = 26 => "exceeds_pending_transfer_amount",
        /// The pending transfer was posted already.
        PendingTransferAlreadyPosted = 27 => "pending_transfer_already_posted",
        /// The pending transfer was voided already.
        PendingTransferAlreadyVoided = 28 => "pending_transfer_already_voided",
        /// The pending transfer expired.
        PendingTransferExpired = 29 => "pending_transfer_expired",
        /// A balance counter would overflow u128.
        Overflow = 30 => "overflow",
        /// The debit would take a `debits_must_not_exceed_credits` account below zero.
        ExceedsCredits = 31 => "exceeds_credits",
        /// The credit would break a `credits_must_not_exceed_debits` account.
        ExceedsDebits = 32 => "exceeds_debits",
        /// An account with that id exists.
        AccountExists = 33 => "account_exists",
        /// A capacity fixed at start-up (accounts, transfers) is full.
        CapacityExceeded = 34 => "capacity_exceeded",
        /// The actor may not debit the debit account (or resolve the pending
        /// transfer); never remembered for `id_already_failed`.
        NotAuthorized = 35 => "not_authorized",
        /// `open_account` with asset bytes that are not a code (empty, not
        /// printable ASCII, or not zero-padded).
        InvalidAsset = 36 => "invalid_asset",
    }
);

/// Why a live order ended without being filled.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum CancelReason {
    /// The owner cancelled it.
    User = 0,
    /// IOC or market remainder.
    IocRemainder = 1,
    /// GTD expiry.
    Expired = 2,
    /// Self-trade prevention.
    Stp = 3,
    /// Mass cancel.
    MassCancel = 4,
    /// The instrument's circuit breaker tripped.
    CircuitBreaker = 5,
    /// A triggered stop-limit could not rest: its book side is at `levels_max`.
    CapacityExceeded = 6,
}

impl CancelReason {
    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            CancelReason::User => "user",
            CancelReason::IocRemainder => "ioc_remainder",
            CancelReason::Expired => "expired",
            CancelReason::Stp => "stp",
            CancelReason::MassCancel => "mass_cancel",
            CancelReason::CircuitBreaker => "circuit_breaker",
            CancelReason::CapacityExceeded => "capacity_exceeded",
        }
    }
}

/// Why an instrument halted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum HaltReason {
    /// An operator's `halt`.
    Operator = 0,
    /// A would-be trade moved too far within the circuit window.
    CircuitBreaker = 1,
}

impl HaltReason {
    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            HaltReason::Operator => "operator",
            HaltReason::CircuitBreaker => "circuit_breaker",
        }
    }
}

/// What a `rejected` event names.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum RejectTarget {
    /// A new order (it has no order id).
    ClientOrder(ClientOrderId),
    /// A cancel or replace.
    Order(OrderId),
    /// An instrument, halt, resume, book query or mass cancel.
    Instrument(InstrumentId),
    /// A time command.
    Time(Timestamp),
    /// A balance query or an account's transfer query.
    Account(AccountId),
    /// A transfer lookup.
    Transfer(TransferId),
    /// An `install_history` (its run number).
    HistoryRun(u64),
    /// A `cod_arm` (its session key).
    Session(u64),
}

/// One price level in a book report: price, visible qty, order count.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct LevelView {
    /// Level price.
    pub price: Price,
    /// Visible quantity.
    pub qty: Qty,
    /// Orders at the level.
    pub orders: u32,
}

/// A range inside `Events::levels` (a book report's side).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct LevelRange {
    /// First index.
    pub start: u32,
    /// Number of levels.
    pub len: u32,
}

/// A range inside `Events::rows` (a transfer query's answer).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub struct RecordRange {
    /// First index.
    pub start: u32,
    /// Number of rows.
    pub len: u32,
}

/// Everything the engine reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Event {
    /// A new order passed every check and got an id.
    Accepted {
        /// Engine-assigned id.
        order_id: OrderId,
        /// Client's id.
        client_order_id: ClientOrderId,
        /// Owner.
        owner: OwnerId,
        /// Instrument.
        instrument: InstrumentId,
        /// Side.
        side: Side,
        /// Limit price; `None` for market and stop orders.
        price: Option<Price>,
        /// Quantity.
        qty: Qty,
    },
    /// A command was refused; nothing changed.
    Rejected {
        /// What was refused.
        target: RejectTarget,
        /// Why.
        reason: RejectReason,
    },
    /// A fill at the maker's price.
    Trade {
        /// Instrument.
        instrument: InstrumentId,
        /// Trade price (the maker's).
        price: Price,
        /// Quantity.
        qty: Qty,
        /// Resting order.
        maker_order_id: OrderId,
        /// Incoming order.
        taker_order_id: OrderId,
        /// Resting order's owner.
        maker_owner: OwnerId,
        /// Incoming order's owner.
        taker_owner: OwnerId,
        /// Incoming order's side.
        taker_side: Side,
    },
    /// A live order ended with `qty` unfilled. A cancel always ends the
    /// order: its leaves after the event are 0, and `qty` is what it had
    /// left before (so an acknowledgement needs no lookup).
    Canceled {
        /// Order.
        order_id: OrderId,
        /// Its owner (so reports reach the owner's sessions without a lookup).
        owner: OwnerId,
        /// The order's side.
        side: Side,
        /// The order's limit price; `None` for market and stop orders.
        price: Option<Price>,
        /// Quantity removed: the order's leaves before the event.
        qty: Qty,
        /// Why.
        reason: CancelReason,
    },
    /// A live order was reduced without a trade (self-trade prevention).
    Reduced {
        /// Order.
        order_id: OrderId,
        /// Its owner (so reports reach the owner's sessions without a lookup).
        owner: OwnerId,
        /// Quantity removed.
        qty: Qty,
        /// Why (always `stp` today).
        reason: CancelReason,
    },
    /// A replace took effect. When the order lost priority and its new
    /// price crosses, trades follow under the same seq.
    Replaced {
        /// Order.
        order_id: OrderId,
        /// Its owner (so reports reach the owner's sessions without a lookup).
        owner: OwnerId,
        /// The order's side.
        side: Side,
        /// New price.
        price: Price,
        /// New remaining quantity: the order's leaves after the event.
        qty: Qty,
        /// Whether the order kept its queue position.
        priority_kept: bool,
    },
    /// A stop's condition held; it now matches.
    Triggered {
        /// Order.
        order_id: OrderId,
        /// Its owner (so reports reach the owner's sessions without a lookup).
        owner: OwnerId,
    },
    /// Trading stopped on an instrument.
    Halted {
        /// Instrument.
        instrument: InstrumentId,
        /// Why.
        reason: HaltReason,
    },
    /// Trading reopened.
    Resumed {
        /// Instrument.
        instrument: InstrumentId,
    },
    /// Visible book report; the levels live in `Events::levels`.
    Book {
        /// Instrument.
        instrument: InstrumentId,
        /// Bids, best first.
        bids: LevelRange,
        /// Asks, best first.
        asks: LevelRange,
    },
    /// An account was opened.
    AccountOpened {
        /// Account id.
        id: AccountId,
    },
    /// An account was refused.
    AccountRejected {
        /// Account id.
        id: AccountId,
        /// Why.
        reason: LedgerError,
    },
    /// A transfer took effect.
    TransferOk {
        /// Transfer id.
        id: TransferId,
    },
    /// A transfer was refused; no balance changed.
    TransferRejected {
        /// Transfer id.
        id: TransferId,
        /// Why.
        reason: LedgerError,
    },
    /// A pending transfer timed out and released its amount.
    TransferExpired {
        /// Transfer id.
        id: TransferId,
    },
    /// One live order, answering `QueryOpenOrders`.
    OpenOrder {
        /// Order.
        order_id: OrderId,
        /// Owner.
        owner: OwnerId,
        /// Client's id.
        client_order_id: ClientOrderId,
        /// Instrument.
        instrument: InstrumentId,
        /// Side.
        side: Side,
        /// Limit price; `None` for market and stop orders.
        price: Option<Price>,
        /// Remaining quantity (hidden part included).
        remaining: Qty,
        /// Visible quantity (0 while a stop waits).
        visible: Qty,
        /// Whether it waits for its trigger.
        waiting_stop: bool,
    },
    /// Account balances.
    Balance {
        /// Account.
        account: AccountId,
        /// Posted debits.
        debits_posted: Amount,
        /// Posted credits.
        credits_posted: Amount,
        /// Pending debits.
        debits_pending: Amount,
        /// Pending credits.
        credits_pending: Amount,
    },
    /// A history run was installed: records changed at or before
    /// `through_seq` may now be answered from history.
    HistoryInstalled {
        /// Run number.
        run: u64,
        /// The last input the run covers.
        through_seq: Seq,
    },
    /// Transfer query answer; the records live in `Events::rows`.
    Transfers {
        /// The rows, in the query's order.
        rows: RecordRange,
        /// Whether another matching record exists past the last row.
        more: bool,
    },
}

/// The events of one `apply`, plus two side buffers: the level rows of any
/// book reports and the transfer rows of transfer queries, and the outbox of
/// transfer changes for the history writer.
/// Allocated once (see `Events::with_capacity`) and reused.
#[derive(Clone, Debug, Default)]
pub struct Events {
    /// Sequence number of the input that produced these events.
    pub seq: Seq,
    list: Vec<Event>,
    levels: Vec<LevelView>,
    rows: Vec<TransferRecord>,
    changes: Vec<TransferRecord>,
}

impl Events {
    /// A buffer for up to `events` events and `levels` book rows without
    /// reallocating (and one query's rows; no change outbox room: engines
    /// size theirs with `Engine::new_events`).
    pub fn with_capacity(events: usize, levels: usize) -> Self {
        Self::with_capacities(events, levels, 0, 0)
    }

    /// A buffer with room for `rows` transfer-query rows and `changes`
    /// transfer changes as well (`Engine::new_events` sizes them).
    pub fn with_capacities(events: usize, levels: usize, rows: usize, changes: usize) -> Self {
        Events {
            seq: Seq(0),
            list: Vec::with_capacity(events),
            levels: Vec::with_capacity(levels),
            rows: Vec::with_capacity(rows),
            changes: Vec::with_capacity(changes),
        }
    }

    /// Empties the buffer, keeping its memory.
    pub fn clear(&mut self) {
        self.list.clear();
        self.levels.clear();
        self.rows.clear();
        self.changes.clear();
    }

    /// Appends one transfer-query row and returns its index.
    #[inline]
    pub fn push_row(&mut self, r: TransferRecord) -> u32 {
        self.rows.push(r);
        (self.rows.len() - 1) as u32
    }

    /// Number of transfer-query rows so far (the next row's index).
    #[inline]
    pub fn rows_len(&self) -> u32 {
        self.rows.len() as u32
    }

    /// The transfer rows a `Transfers` event's range points at.
    pub fn rows(&self, r: RecordRange) -> &[TransferRecord] {
        &self.rows[r.start as usize..(r.start + r.len) as usize]
    }

    /// Appends one transfer change (the record's new full value) for the
    /// history writer.
    #[inline]
    pub fn push_change(&mut self, r: TransferRecord) {
        self.changes.push(r);
    }

    /// Every transfer record this input created or changed, in change order
    /// (the runtime forwards them to the history writer).
    pub fn changes(&self) -> &[TransferRecord] {
        &self.changes
    }

    /// Appends one event.
    #[inline]
    pub fn push(&mut self, e: Event) {
        self.list.push(e);
    }

    /// Appends one book row and returns its index.
    #[inline]
    pub fn push_level(&mut self, l: LevelView) -> u32 {
        self.levels.push(l);
        (self.levels.len() - 1) as u32
    }

    /// The events, in order.
    pub fn as_slice(&self) -> &[Event] {
        &self.list
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The book rows a `Book` event's range points at.
    pub fn levels(&self, r: LevelRange) -> &[LevelView] {
        &self.levels[r.start as usize..(r.start + r.len) as usize]
    }

    /// Iterates the events.
    pub fn iter(&self) -> core::slice::Iter<'_, Event> {
        self.list.iter()
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = core::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}
