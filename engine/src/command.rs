//! The inputs of the state machine: `Input` = sequence number + engine time +
//! `Command`.
//!
//! Invariants: every command is a fixed-size plain value (no heap data), so
//! the journal can store it as a fixed-size record and the rings can carry it
//! by copy. Every combination of field values is a legal `Command`: the engine
//! answers nonsense (a price on a market order, say) with a reject event, never
//! a panic.

use crate::history::AccountFilter;
use crate::types::*;

/// One sequenced input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input {
    /// Sequence number stamped by the sequencer; echoed on every event.
    pub seq: Seq,
    /// Engine time for this command, stamped by the sequencer. Time never goes
    /// back for the engine: a stale `now` is treated as the engine's current time.
    pub now: Timestamp,
    /// What to do.
    pub command: Command,
}

/// Everything the engine can be asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Create an instrument.
    AddInstrument(InstrumentSpec),
    /// Enter a new order.
    NewOrder(NewOrder),
    /// Cancel one live order (resting or waiting stop).
    Cancel {
        /// Who asks.
        owner: OwnerId,
        /// Which order.
        order_id: OrderId,
    },
    /// Cancel one live order named by its owner's client order id (unique
    /// among an owner's live orders); `unknown_order` when none is live.
    CancelByClientId {
        /// Whose order.
        owner: OwnerId,
        /// The client order id it was entered with.
        client_order_id: ClientOrderId,
    },
    /// Change a resting order's price and/or remaining quantity.
    Replace {
        /// Who asks.
        owner: OwnerId,
        /// Which order.
        order_id: OrderId,
        /// New limit price; `None` keeps it.
        price: Option<Price>,
        /// New remaining quantity; `None` keeps it.
        qty: Option<Qty>,
        /// Cancel-and-reinsert: the order always loses its queue position
        /// (back of its new level; trades on arrival if the price crosses),
        /// even when a plain replace would keep it. `false`: priority is
        /// kept when the price is unchanged and the quantity does not grow.
        requeue: bool,
    },
    /// Cancel every live order of an owner, optionally narrowed.
    MassCancel {
        /// Whose orders.
        owner: OwnerId,
        /// Only this instrument.
        instrument: Option<InstrumentId>,
        /// Only this side.
        side: Option<Side>,
    },
    /// Operator halt.
    Halt {
        /// Which instrument.
        instrument: InstrumentId,
    },
    /// Reopen a halted instrument.
    Resume {
        /// Which instrument.
        instrument: InstrumentId,
    },
    /// Advance engine time (expires GTD orders, stops and pending transfers).
    Time {
        /// The new time; going back is rejected `invalid_time`.
        now: Timestamp,
    },
    /// Report the visible book.
    QueryBook {
        /// Which instrument.
        instrument: InstrumentId,
        /// Levels per side; `None` = all.
        depth: Option<u32>,
    },
    /// Open a ledger account.
    OpenAccount(AccountSpec),
    /// One transfer of a batch. `batch_end` closes the batch: a linked chain
    /// still open after the member that ends the batch fails with
    /// `linked_event_chain_open`.
    Transfer {
        /// The transfer.
        transfer: TransferSpec,
        /// Whether this is the last transfer of its batch.
        batch_end: bool,
        /// Who asks: the ledger checks that it may debit the debit account
        /// (or resolve the pending transfer) before anything else is revealed.
        actor: Actor,
    },
    /// Report an account's balances.
    QueryBalance {
        /// Which account.
        account: AccountId,
        /// Who asks: only the account's owner (or an admin) may read it.
        actor: Actor,
    },
    /// List an owner's live orders (resting and waiting stops) in order-id
    /// order, optionally on one instrument: one `OpenOrder` event each.
    QueryOpenOrders {
        /// Whose orders.
        owner: OwnerId,
        /// Only this instrument.
        instrument: Option<InstrumentId>,
    },
    /// Install a history run: every transfer change with `change_seq ≤
    /// through_seq` is now durable outside memory and may leave it. Issued
    /// only by the runtime (the history writer) or an operator, never by a
    /// session. Applied only if runs arrive in order and the attached
    /// history holds run `run` with this checksum; otherwise rejected
    /// `history_run_rejected`, changing nothing.
    InstallHistory {
        /// Run number: 1, 2, 3, … (one more than the last installed).
        run: u64,
        /// The last input whose changes the run covers.
        through_seq: Seq,
        /// xxh3-128 of the run's canonical records (`history::run_checksum`).
        checksum: u128,
    },
    /// Look up one transfer by id: a `Transfers` event with one row, or
    /// `transfer_not_found` (also for a transfer the actor may not see).
    LookupTransfer {
        /// Which transfer.
        id: TransferId,
        /// Who asks: an owner of its debit or credit account, or an admin.
        actor: Actor,
    },
    /// Page through one account's transfers (debit or credit side).
    GetAccountTransfers {
        /// Account, range, limit and order.
        filter: AccountFilter,
        /// Who asks: only the account's owner (or an admin).
        actor: Actor,
    },
    /// Cancel-on-disconnect, armed: while `session` (a gateway's key for a
    /// session that asked for it) lives, a loss of every session at once
    /// (`SessionsLost`) cancels `owner`'s live orders. The arm is engine
    /// state, so it is journaled, replicated and snapshotted: it outlives
    /// the gateway process that made it. Arming twice is one arm; a full
    /// table (`COD_ARMS_MAX`) is rejected `capacity_exceeded`. No event
    /// otherwise.
    CodArm {
        /// The gateway's session key.
        session: u64,
        /// An owner the session acts for.
        owner: OwnerId,
    },
    /// The gateway saw the session's connection end and cancelled for it
    /// itself: its arms go (its next login arms again). No event.
    CodDisarm {
        /// The gateway's session key.
        session: u64,
    },
    /// Every session armed so far is gone at once: the gateway restarted or
    /// another node took over as leader. Each armed owner's live orders are
    /// cancelled (as a mass cancel, owners in ascending order), then every
    /// arm is forgotten.
    SessionsLost,
}

/// A new order, flat so that it is a fixed-size record. Fields that do not
/// apply to the order type must be zero/`None`; the engine rejects them otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// Who sends it.
    pub owner: OwnerId,
    /// Which instrument.
    pub instrument: InstrumentId,
    /// Client's id for it.
    pub client_order_id: ClientOrderId,
    /// Buy or sell.
    pub side: Side,
    /// Limit, market, stop or stop-limit.
    pub order_type: OrderType,
    /// Limit price (limit and stop-limit only).
    pub price: Option<Price>,
    /// Total quantity.
    pub qty: Qty,
    /// Time in force.
    pub tif: Tif,
    /// Expiry for `gtd` (ignored otherwise; must be `None` otherwise).
    pub expire_at: Option<Timestamp>,
    /// Reject instead of trading on arrival.
    pub post_only: bool,
    /// Self-trade prevention mode.
    pub stp: Stp,
    /// Iceberg: visible slice size.
    pub display_qty: Option<Qty>,
    /// Trigger price (stop and stop-limit only).
    pub trigger_price: Option<Price>,
}

/// An instrument's static definition and controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstrumentSpec {
    /// Operator-chosen id.
    pub id: InstrumentId,
    /// Display symbol.
    pub symbol: Symbol,
    /// Base asset (what is bought).
    pub base: Asset,
    /// Quote asset (what is paid).
    pub quote: Asset,
    /// Price increment, in quote minor units per lot (> 0).
    pub tick: u64,
    /// Base minor units per lot (> 0).
    pub lot_size: u64,
    /// Smallest order quantity (> 0).
    pub qty_min: u64,
    /// Largest order quantity (≥ `qty_min`).
    pub qty_max: u64,
    /// Reference price before the first trade (> 0, a multiple of the tick).
    pub reference_price: Price,
    /// Price band around the reference, in basis points; `None` = no band.
    pub band_bps: Option<u32>,
    /// Circuit breaker threshold in basis points; `None` = no breaker.
    pub circuit_bps: Option<u32>,
    /// Circuit window length in ns (> 0 when `circuit_bps` is set).
    pub circuit_window_ns: u64,
    /// Maker fee, basis points of notional.
    pub maker_fee_bps: u32,
    /// Taker fee, basis points of notional.
    pub taker_fee_bps: u32,
    /// Ledger account that receives fees (settling instruments).
    pub fee_account: AccountId,
    /// Whether fills settle on the ledger.
    pub settle: bool,
    /// Per owner: most live orders on this instrument (waiting stops included).
    pub open_orders_max: Option<u32>,
    /// Per order: largest price × qty.
    pub notional_max: Option<u64>,
}

/// Account flags (a bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct AccountFlags(pub u16);

impl AccountFlags {
    /// Debits (posted + pending) may never exceed posted credits.
    pub const DEBITS_MUST_NOT_EXCEED_CREDITS: u16 = 1 << 0;
    /// Credits (posted + pending) may never exceed posted debits.
    pub const CREDITS_MUST_NOT_EXCEED_DEBITS: u16 = 1 << 1;
    /// Every flag this version knows.
    pub const ALL: u16 =
        Self::DEBITS_MUST_NOT_EXCEED_CREDITS | Self::CREDITS_MUST_NOT_EXCEED_DEBITS;

    /// Whether `bit` is set.
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// A ledger account to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountSpec {
    /// Client-chosen id (non-zero).
    pub id: AccountId,
    /// The owner trading through it (0 for none).
    pub owner: OwnerId,
    /// Which asset it holds.
    pub asset: Asset,
    /// Balance constraints.
    pub flags: AccountFlags,
}

/// Transfer flags (a bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct TransferFlags(pub u16);

impl TransferFlags {
    /// Joined to the next transfer of the batch: all or nothing.
    pub const LINKED: u16 = 1 << 0;
    /// Two-phase: reserve now, post or void later.
    pub const PENDING: u16 = 1 << 1;
    /// Resolve a pending transfer by posting it.
    pub const POST_PENDING: u16 = 1 << 2;
    /// Resolve a pending transfer by voiding it.
    pub const VOID_PENDING: u16 = 1 << 3;
    /// Every flag this version knows.
    pub const ALL: u16 = Self::LINKED | Self::PENDING | Self::POST_PENDING | Self::VOID_PENDING;

    /// Whether `bit` is set.
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// A ledger transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferSpec {
    /// Client-chosen id (non-zero, exactly-once).
    pub id: TransferId,
    /// Account debited.
    pub debit_account: AccountId,
    /// Account credited.
    pub credit_account: AccountId,
    /// How much; 0 on post/void means the full pending amount.
    pub amount: Amount,
    /// Client's reason code.
    pub code: u16,
    /// Flags.
    pub flags: TransferFlags,
    /// The pending transfer a post/void resolves.
    pub pending_id: TransferId,
    /// Pending transfers only: expiry after creation, in ns (0 = never).
    pub timeout_ns: u64,
}

/// Most owners one actor acts for: a token grants at most this many
/// (`wire::ADD_TOKEN_OWNERS_MAX` in the gateway).
pub const ACTOR_OWNERS_MAX: usize = 8;

/// Who issues a ledger command: the ledger's authorization input, journaled
/// with the command (audit trail; replay decides exactly as the first run).
///
/// `Admin` (a `ledger_admin` token, the operator's script, the demo) may act
/// on any account. `Owners` may debit only accounts of those owners that
/// have `debits_must_not_exceed_credits`, read only their balances and
/// resolve only pending transfers they are party to (ARCHITECTURE.md, "Ledger
/// authorization"). Owner 0 means "nobody": it never matches an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// Any account, any transfer.
    Admin,
    /// Only these owners' accounts.
    Owners(OwnerSet),
}

impl Actor {
    /// An actor for these owners; `None` when there are more than
    /// `ACTOR_OWNERS_MAX`.
    pub fn owners(ids: &[OwnerId]) -> Option<Actor> {
        OwnerSet::new(ids).map(Actor::Owners)
    }

    /// Whether the actor acts for `owner` (never for owner 0, unless admin).
    #[inline]
    pub fn acts_for(&self, owner: OwnerId) -> bool {
        match self {
            Actor::Admin => true,
            Actor::Owners(s) => owner.0 != 0 && s.contains(owner),
        }
    }
}

/// A bounded set of owners, stored inline so that commands stay fixed-size.
/// Canonical: the slots past `len` are zero, so equal sets compare equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OwnerSet {
    len: u8,
    ids: [OwnerId; ACTOR_OWNERS_MAX],
}

impl OwnerSet {
    /// The set of `ids` (in the order given); `None` when more than
    /// `ACTOR_OWNERS_MAX`.
    pub fn new(ids: &[OwnerId]) -> Option<OwnerSet> {
        if ids.len() > ACTOR_OWNERS_MAX {
            return None;
        }
        let mut s = OwnerSet {
            len: ids.len() as u8,
            ..OwnerSet::default()
        };
        s.ids[..ids.len()].copy_from_slice(ids);
        Some(s)
    }

    /// The owners.
    pub fn as_slice(&self) -> &[OwnerId] {
        &self.ids[..self.len as usize]
    }

    /// Whether `owner` is in the set.
    #[inline]
    pub fn contains(&self, owner: OwnerId) -> bool {
        self.as_slice().contains(&owner)
    }
}
