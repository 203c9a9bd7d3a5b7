//! The order-entry wire protocol (`bourse-oe/1`): fixed-layout little-endian
//! messages behind an 8-byte header, their template ids, encoders, validating
//! decoders and an incremental, bounded frame reader. `gateway/PROTOCOL.md`
//! is the reference for every layout below.
//!
//! Invariants: every message body is a `#[repr(C)]` `bytemuck::Pod` struct
//! with explicit reserved fields and a compile-time size assertion; reserved
//! bytes are written as zero and checked on decode; decoding never panics on
//! any input (bodies are copied out with `pod_read_unaligned`, so buffer
//! alignment never matters); the frame reader never holds more than
//! `MAX_FRAME` + one pushed chunk.

use bytemuck::{Pod, Zeroable};
use core::fmt;
use engine::{
    AccountFlags, AccountId, AccountSpec, Amount, Asset, ClientOrderId, Command, InstrumentId,
    InstrumentSpec, OrderId, OrderType, OwnerId, Price, Qty, Side, Stp, Symbol, Tif, Timestamp,
    TransferFlags, TransferId, TransferSpec,
};

/// ALPN of the order-entry protocol.
pub const ALPN: &[u8] = b"bourse-oe/1";
/// Schema id carried by every header.
pub const SCHEMA_ID: u8 = 1;
/// Schema version carried by every header. 2: `REPLACE` carries flags
/// (`REPLACE_REQUEUE`) and `CANCEL_BY_CLIENT_ID` exists; a version-1 frame
/// is refused `BadSchema` (its `REPLACE` would be read wrongly).
pub const VERSION: u8 = 2;
/// Header size in bytes.
pub const HEADER_LEN: usize = 8;
/// Most transfers in one `TransferBatch` (TigerBeetle's batch limit).
pub const TRANSFER_BATCH_MAX: usize = 8_190;
/// Largest frame, header included: a full transfer batch.
pub const MAX_FRAME: usize = HEADER_LEN
    + core::mem::size_of::<TransferBatchHead>()
    + TRANSFER_BATCH_MAX * core::mem::size_of::<TransferRecord>();
/// Longest frame with a bad header (unknown template, wrong schema, a
/// length its template cannot have) that is skipped and rejected; a longer
/// one leaves the stream unframeable.
pub const GARBAGE_SKIP_MAX: usize = 4096;
/// Bytes of a login token (ASCII, zero-padded).
pub const TOKEN_LEN: usize = 32;
/// Shortest token a server accepts (configured or added with `AddToken`):
/// guessing stays out of reach.
pub const TOKEN_MIN: usize = 16;
/// Most owners a `AddToken` message can grant.
pub const ADD_TOKEN_OWNERS_MAX: usize = 8;
/// Bytes of the text in a `ProtocolReject`.
pub const REJECT_TEXT_LEN: usize = 88;

/// The frame header: little-endian, 8 bytes.
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Length of the whole frame, header included.
    pub len: u32,
    /// Template id (see `template`).
    pub template: u16,
    /// `SCHEMA_ID`.
    pub schema: u8,
    /// `VERSION`.
    pub version: u8,
}

/// Template ids.
pub mod template {
    /// Client → server: log in (first frame of a connection).
    pub const LOGIN: u16 = 1;
    /// Server → client: login accepted.
    pub const LOGIN_ACCEPTED: u16 = 2;
    /// Server → client: login refused (the connection then closes).
    pub const LOGIN_REJECTED: u16 = 3;
    /// Both ways: keep-alive.
    pub const HEARTBEAT: u16 = 4;
    /// Both ways: orderly end of the session's connection.
    pub const LOGOUT: u16 = 5;
    /// Client → server: enter an order.
    pub const NEW_ORDER: u16 = 10;
    /// Client → server: cancel an order.
    pub const CANCEL: u16 = 11;
    /// Client → server: replace an order's price and/or quantity.
    pub const REPLACE: u16 = 12;
    /// Client → server: cancel all orders of an owner (optionally narrowed).
    pub const MASS_CANCEL: u16 = 13;
    /// Client → server: list the session's open orders.
    pub const QUERY_OPEN_ORDERS: u16 = 14;
    /// Client → server: cancel an order named by (owner, client order id).
    pub const CANCEL_BY_CLIENT_ID: u16 = 15;
    /// Client → server: send again a partition's execution reports after
    /// an engine seq (after a failover or a restart lost them).
    pub const REPLAY_REPORTS: u16 = 16;
    /// Client → server: a batch of transfers (head + N records).
    pub const TRANSFER_BATCH: u16 = 20;
    /// Client → server: open a ledger account.
    pub const OPEN_ACCOUNT: u16 = 21;
    /// Client → server: ask an account's balances.
    pub const QUERY_BALANCE: u16 = 22;
    /// Client → server: look up transfers by id (1..=`LOOKUP_TRANSFERS_MAX`).
    pub const LOOKUP_TRANSFERS: u16 = 23;
    /// Client → server: page through one account's transfers.
    pub const GET_ACCOUNT_TRANSFERS: u16 = 24;
    /// Client → server (admin): create an instrument.
    pub const ADD_INSTRUMENT: u16 = 30;
    /// Client → server (admin): halt an instrument.
    pub const HALT: u16 = 31;
    /// Client → server (admin): resume an instrument.
    pub const RESUME: u16 = 32;
    /// Client → server (admin): create or replace a login token.
    pub const ADD_TOKEN: u16 = 33;
    /// Server → client: an execution report (sequenced).
    pub const EXECUTION_REPORT: u16 = 50;
    /// Server → client: results of a transfer batch (head + N results).
    pub const TRANSFER_RESULTS: u16 = 51;
    /// Server → client: account balances.
    pub const BALANCE: u16 = 52;
    /// Server → client: one open order (answer to `QUERY_OPEN_ORDERS`).
    pub const OPEN_ORDER: u16 = 53;
    /// Server → client: outcome of a request that has no other reply.
    pub const REQUEST_ACK: u16 = 54;
    /// Server → client: a frame or request was refused at protocol level.
    pub const PROTOCOL_REJECT: u16 = 55;
    /// Server → client: one transfer (answer to `LOOKUP_TRANSFERS` /
    /// `GET_ACCOUNT_TRANSFERS`).
    pub const TRANSFER_ROW: u16 = 56;
    /// Server → client: the end of a transfer lookup or listing.
    pub const TRANSFERS_END: u16 = 57;
}

/// Fixed body size of a template (for `TRANSFER_BATCH` / `TRANSFER_RESULTS`:
/// the head only); `None` for unknown templates.
pub fn body_len(template: u16) -> Option<usize> {
    use core::mem::size_of;
    Some(match template {
        template::LOGIN => size_of::<Login>(),
        template::LOGIN_ACCEPTED => size_of::<LoginAccepted>(),
        template::LOGIN_REJECTED => size_of::<LoginRejected>(),
        template::HEARTBEAT => size_of::<Heartbeat>(),
        template::LOGOUT => size_of::<Logout>(),
        template::NEW_ORDER => size_of::<NewOrderMsg>(),
        template::CANCEL => size_of::<CancelMsg>(),
        template::CANCEL_BY_CLIENT_ID => size_of::<CancelByClientIdMsg>(),
        template::REPLACE => size_of::<ReplaceMsg>(),
        template::MASS_CANCEL => size_of::<MassCancelMsg>(),
        template::QUERY_OPEN_ORDERS => size_of::<QueryOpenOrders>(),
        template::REPLAY_REPORTS => size_of::<ReplayReportsMsg>(),
        template::TRANSFER_BATCH => size_of::<TransferBatchHead>(),
        template::OPEN_ACCOUNT => size_of::<OpenAccountMsg>(),
        template::QUERY_BALANCE => size_of::<QueryBalanceMsg>(),
        template::LOOKUP_TRANSFERS => size_of::<LookupTransfersMsg>(),
        template::GET_ACCOUNT_TRANSFERS => size_of::<GetAccountTransfersMsg>(),
        template::ADD_INSTRUMENT => size_of::<AddInstrumentMsg>(),
        template::HALT | template::RESUME => size_of::<HaltMsg>(),
        template::ADD_TOKEN => size_of::<AddTokenMsg>(),
        template::EXECUTION_REPORT => size_of::<ExecutionReport>(),
        template::TRANSFER_RESULTS => size_of::<TransferResultsHead>(),
        template::BALANCE => size_of::<BalanceMsg>(),
        template::OPEN_ORDER => size_of::<OpenOrderRow>(),
        template::REQUEST_ACK => size_of::<RequestAck>(),
        template::PROTOCOL_REJECT => size_of::<ProtocolRejectMsg>(),
        template::TRANSFER_ROW => size_of::<TransferRowMsg>(),
        template::TRANSFERS_END => size_of::<TransfersEndMsg>(),
        _ => return None,
    })
}

/// Size of one repeated record after a template's head (transfer batches
/// and results), 0 for fixed-size templates.
pub fn record_len(template: u16) -> usize {
    match template {
        template::TRANSFER_BATCH => core::mem::size_of::<TransferRecord>(),
        template::TRANSFER_RESULTS => core::mem::size_of::<TransferResult>(),
        _ => 0,
    }
}

// ----- login / session -------------------------------------------------

/// Login flag: cancel the session's owners' orders when its connection drops.
pub const LOGIN_CANCEL_ON_DISCONNECT: u32 = 1 << 0;
/// Every login flag this version knows.
pub const LOGIN_FLAGS_ALL: u32 = LOGIN_CANCEL_ON_DISCONNECT;

/// `LOGIN` body (56 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Login {
    /// Token, ASCII, zero-padded.
    pub token: [u8; TOKEN_LEN],
    /// Client-chosen session id: reconnecting with the same (token, id)
    /// resumes the session.
    pub session_id: u64,
    /// Last execution report seq the client has; the server replays the rest.
    pub resume_after: u64,
    /// `LOGIN_*` flags.
    pub flags: u32,
    /// Zero.
    pub reserved: u32,
}

/// `LOGIN_ACCEPTED` body (48 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginAccepted {
    /// The session id (echo).
    pub session_id: u64,
    /// Highest request number processed so far (next must be above).
    pub last_request: u64,
    /// Highest execution report seq issued so far.
    pub last_report_seq: u64,
    /// First report seq that follows: `resume_after + 1` when every report
    /// after it is still held; otherwise `last_report_seq + 1` (nothing is
    /// sent by number; `REPLAY_REPORTS` brings the lost reports back by
    /// engine seq).
    pub replay_from: u64,
    /// Server heartbeat interval, ns.
    pub heartbeat_interval_ns: u64,
    /// New orders the throttle allows right now.
    pub throttle_budget: u32,
    /// `PERM_*` bits granted.
    pub perms: u8,
    /// Whether cancel-on-disconnect is on (0/1).
    pub cancel_on_disconnect: u8,
    /// The server's engine partitions (what `REPLAY_REPORTS` may name).
    pub partitions: u16,
}

/// `LOGIN_REJECTED` body (8 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginRejected {
    /// `login_reject::*`.
    pub code: u16,
    /// Zero.
    pub reserved: [u8; 6],
}

/// Login reject codes.
pub mod login_reject {
    /// Unknown token.
    pub const BAD_TOKEN: u16 = 1;
    /// The session id belongs to another token, or the session cannot be resumed.
    pub const SESSION_MISMATCH: u16 = 2;
    /// Already logged in on this connection.
    pub const ALREADY_LOGGED_IN: u16 = 3;
    /// A replicated server that does not lead (or has not caught up yet):
    /// nothing was done; try the next server of the cluster.
    pub const NOT_LEADER: u16 = 4;
}

/// `HEARTBEAT` body (8 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// Server → client: last report seq issued; client → server: zero or
    /// the last report seq it received (informational).
    pub last_report_seq: u64,
}

/// `LOGOUT` body (8 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Logout {
    /// Zero.
    pub reserved: u64,
}

// ----- orders ----------------------------------------------------------

/// `NewOrder` flag: post-only.
pub const ORDER_POST_ONLY: u8 = 1 << 0;

/// `NEW_ORDER` body (80 bytes). Optional prices/quantities/times are 0 for "none".
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NewOrderMsg {
    /// Request number (strictly increasing per session).
    pub request: u64,
    /// Client order id.
    pub client_order_id: u64,
    /// Owner the order is for (must be granted to the token).
    pub owner: u64,
    /// Limit price (0 = none).
    pub price: u64,
    /// Quantity in lots.
    pub qty: u64,
    /// Trigger price (0 = none).
    pub trigger_price: u64,
    /// Iceberg display quantity (0 = none).
    pub display_qty: u64,
    /// GTD expiry, engine ns (0 = none).
    pub expire_at: u64,
    /// Instrument.
    pub instrument: u32,
    /// 0 buy, 1 sell.
    pub side: u8,
    /// 0 limit, 1 market, 2 stop, 3 stop-limit.
    pub order_type: u8,
    /// 0 gtc, 1 ioc, 2 fok, 3 gtd.
    pub tif: u8,
    /// 0 none, 1 cancel-taker, 2 cancel-maker, 3 cancel-both, 4 decrement.
    pub stp: u8,
    /// `ORDER_*` flags.
    pub flags: u8,
    /// Zero.
    pub reserved: [u8; 7],
}

/// `CANCEL` body (24 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CancelMsg {
    /// Request number.
    pub request: u64,
    /// Owner.
    pub owner: u64,
    /// Global order id.
    pub order_id: u64,
}

/// `CANCEL_BY_CLIENT_ID` body (24 bytes): cancels the owner's live order
/// entered with this client order id (every partition looks; the one that
/// holds it answers, `unknown_order` when none does).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CancelByClientIdMsg {
    /// Request number.
    pub request: u64,
    /// Owner.
    pub owner: u64,
    /// The client order id the order was entered with.
    pub client_order_id: u64,
}

/// `REPLACE` flag: cancel-and-reinsert, the order always loses its queue
/// position (`Command::Replace::requeue`).
pub const REPLACE_REQUEUE: u8 = 1 << 0;

/// `REPLACE` body (48 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReplaceMsg {
    /// Request number.
    pub request: u64,
    /// Owner.
    pub owner: u64,
    /// Global order id.
    pub order_id: u64,
    /// New price (0 = keep).
    pub price: u64,
    /// New remaining quantity (0 = keep).
    pub qty: u64,
    /// `REPLACE_*` flags.
    pub flags: u8,
    /// Zero.
    pub reserved: [u8; 7],
}

/// Side value meaning "both sides" in `MASS_CANCEL`.
pub const SIDE_ANY: u8 = 255;
/// Instrument value meaning "all instruments" in `MASS_CANCEL`.
pub const INSTRUMENT_ANY: u32 = u32::MAX;

/// `MASS_CANCEL` body (24 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MassCancelMsg {
    /// Request number.
    pub request: u64,
    /// Owner.
    pub owner: u64,
    /// Instrument, or `INSTRUMENT_ANY`.
    pub instrument: u32,
    /// 0 buy, 1 sell, `SIDE_ANY`.
    pub side: u8,
    /// Zero.
    pub reserved: [u8; 3],
}

/// `QUERY_OPEN_ORDERS` body (16 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QueryOpenOrders {
    /// Request number.
    pub request: u64,
    /// Owner (0 = every owner of the session).
    pub owner: u64,
}

/// `REPLAY_REPORTS` body (24 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReplayReportsMsg {
    /// Request number.
    pub request: u64,
    /// Send again this session's reports of inputs numbered above this
    /// engine seq (the newest `engine_seq` the client holds from the
    /// partition; 0: every one the server still holds).
    pub after_seq: u64,
    /// The partition (below `LoginAccepted::partitions`).
    pub partition: u32,
    /// Zero.
    pub reserved: u32,
}

// ----- ledger ----------------------------------------------------------

/// `TRANSFER_BATCH` head (16 bytes), followed by `count` `TransferRecord`s.
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TransferBatchHead {
    /// Request number.
    pub request: u64,
    /// Number of records (1..=8,190).
    pub count: u32,
    /// Zero.
    pub reserved: u32,
}

/// One transfer of a batch (96 bytes). u128 fields are 16 little-endian bytes.
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TransferRecord {
    /// Transfer id.
    pub id: [u8; 16],
    /// Debit account.
    pub debit_account: [u8; 16],
    /// Credit account.
    pub credit_account: [u8; 16],
    /// Amount.
    pub amount: [u8; 16],
    /// Pending transfer a post/void resolves.
    pub pending_id: [u8; 16],
    /// Pending timeout, ns.
    pub timeout_ns: u64,
    /// Client's reason code.
    pub code: u16,
    /// Engine `TransferFlags` bits.
    pub flags: u16,
    /// Zero.
    pub reserved: u32,
}

/// `TRANSFER_RESULTS` head (16 bytes), followed by `count` `TransferResult`s.
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TransferResultsHead {
    /// Request number answered.
    pub request: u64,
    /// Number of results (= transfers in the batch).
    pub count: u32,
    /// Zero.
    pub reserved: u32,
}

/// One transfer's result (8 bytes), in batch order.
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TransferResult {
    /// Index in the batch.
    pub index: u32,
    /// 0 = ok; 1..=99 the engine's `LedgerError` code; ≥ 100 a gateway code (`code::*`).
    pub code: u16,
    /// Zero.
    pub reserved: u16,
}

/// `OPEN_ACCOUNT` body (48 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OpenAccountMsg {
    /// Request number.
    pub request: u64,
    /// Account id.
    pub id: [u8; 16],
    /// Owner trading through it (0 = none).
    pub owner: u64,
    /// Asset code, ASCII zero-padded.
    pub asset: [u8; 12],
    /// `AccountFlags` bits.
    pub flags: u16,
    /// Zero.
    pub reserved: u16,
}

/// `QUERY_BALANCE` body (24 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QueryBalanceMsg {
    /// Request number.
    pub request: u64,
    /// Account id.
    pub account: [u8; 16],
}

/// `BALANCE` body (88 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BalanceMsg {
    /// Request number answered.
    pub request: u64,
    /// Account.
    pub account: [u8; 16],
    /// Posted debits.
    pub debits_posted: [u8; 16],
    /// Posted credits.
    pub credits_posted: [u8; 16],
    /// Pending debits.
    pub debits_pending: [u8; 16],
    /// Pending credits.
    pub credits_pending: [u8; 16],
}

/// Most ids in one `LOOKUP_TRANSFERS` (a fixed-size message).
pub const LOOKUP_TRANSFERS_MAX: usize = 8;

/// `LOOKUP_TRANSFERS` body (144 bytes): `count` ids, the rest zero.
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LookupTransfersMsg {
    /// Request number.
    pub request: u64,
    /// Ids used (1..=`LOOKUP_TRANSFERS_MAX`).
    pub count: u32,
    /// Zero.
    pub reserved: u32,
    /// Transfer ids; those past `count` are zero.
    pub ids: [[u8; 16]; LOOKUP_TRANSFERS_MAX],
}

/// `GetAccountTransfers::by`: `lo`/`hi` bound the transfer's `ledger_seq`.
pub const RANGE_LEDGER_SEQ: u8 = 0;
/// `GetAccountTransfers::by`: `lo`/`hi` bound the creation time (engine ns).
pub const RANGE_TIME: u8 = 1;
/// `GetAccountTransfers::flags`: newest first.
pub const LISTING_NEWEST_FIRST: u8 = 1 << 0;

/// `GET_ACCOUNT_TRANSFERS` body (48 bytes). The range and limit are the
/// engine's to judge (`invalid_filter`), so any values decode.
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GetAccountTransfersMsg {
    /// Request number.
    pub request: u64,
    /// Account (debit or credit side).
    pub account: [u8; 16],
    /// Inclusive lower bound.
    pub lo: u64,
    /// Inclusive upper bound.
    pub hi: u64,
    /// Most rows (1..=1,024).
    pub limit: u32,
    /// `RANGE_LEDGER_SEQ` or `RANGE_TIME`.
    pub by: u8,
    /// `LISTING_*` flags.
    pub flags: u8,
    /// Zero.
    pub reserved: u16,
}

/// `TRANSFER_ROW` body (184 bytes): one transfer record, whole (the
/// engine's `history::TransferRecord`, u128s as 16 little-endian bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TransferRowMsg {
    /// Request number answered.
    pub request: u64,
    /// Transfer id.
    pub id: [u8; 16],
    /// Debit account as requested (0 on a post/void that named none).
    pub requested_debit_account: [u8; 16],
    /// Credit account as requested.
    pub requested_credit_account: [u8; 16],
    /// Amount as requested.
    pub requested_amount: [u8; 16],
    /// Pending transfer a post/void resolves.
    pub pending_id: [u8; 16],
    /// Account debited (a post/void's: its pending transfer's).
    pub debit_account: [u8; 16],
    /// Account credited.
    pub credit_account: [u8; 16],
    /// Amount moved or reserved.
    pub amount: [u8; 16],
    /// Pending timeout, ns.
    pub timeout_ns: u64,
    /// The partition's order of stored transfers (the paging cursor).
    pub ledger_seq: u64,
    /// Input that stored it.
    pub created_seq: u64,
    /// Engine time it was stored, ns.
    pub created_ns: u64,
    /// Input that last changed it.
    pub change_seq: u64,
    /// Client's reason code.
    pub code: u16,
    /// Engine `TransferFlags` bits.
    pub flags: u16,
    /// `TRANSFER_STATES` index: 0 posted, 1 pending, 2 pending_posted,
    /// 3 pending_voided, 4 pending_expired, 5 resolution.
    pub state: u8,
    /// Zero.
    pub reserved: [u8; 3],
}

/// `TRANSFERS_END` body (24 bytes): closes a lookup or listing.
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TransfersEndMsg {
    /// Request number answered.
    pub request: u64,
    /// Engine input sequence number (0 when the engine was not involved).
    pub engine_seq: u64,
    /// `TRANSFER_ROW`s sent before it.
    pub count: u32,
    /// 0 = answered (a lookup's missing ids are simply absent), else the
    /// engine's `RejectReason` code or a gateway code.
    pub code: u16,
    /// 1 = more records match the listing (page on past the last row).
    pub more: u8,
    /// Zero.
    pub reserved: u8,
}

/// The transfer states a `TRANSFER_ROW` carries, by their byte value.
pub const TRANSFER_STATES: [engine::history::TransferState; 6] = [
    engine::history::TransferState::Posted,
    engine::history::TransferState::Pending,
    engine::history::TransferState::PendingPosted,
    engine::history::TransferState::PendingVoided,
    engine::history::TransferState::PendingExpired,
    engine::history::TransferState::Resolution,
];

// ----- admin -----------------------------------------------------------

/// `AddInstrument` presence bit: `band_bps` is set.
pub const INSTR_HAS_BAND: u8 = 1 << 0;
/// `AddInstrument` presence bit: `circuit_bps` is set.
pub const INSTR_HAS_CIRCUIT: u8 = 1 << 1;
/// `AddInstrument` presence bit: `open_orders_max` is set.
pub const INSTR_HAS_OPEN_ORDERS_MAX: u8 = 1 << 2;
/// `AddInstrument` presence bit: `notional_max` is set.
pub const INSTR_HAS_NOTIONAL_MAX: u8 = 1 << 3;
const INSTR_HAS_ALL: u8 =
    INSTR_HAS_BAND | INSTR_HAS_CIRCUIT | INSTR_HAS_OPEN_ORDERS_MAX | INSTR_HAS_NOTIONAL_MAX;

/// `ADD_INSTRUMENT` body (160 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AddInstrumentMsg {
    /// Request number.
    pub request: u64,
    /// Tick.
    pub tick: u64,
    /// Lot size.
    pub lot_size: u64,
    /// Smallest quantity.
    pub qty_min: u64,
    /// Largest quantity.
    pub qty_max: u64,
    /// Reference price.
    pub reference_price: u64,
    /// Circuit window, ns.
    pub circuit_window_ns: u64,
    /// Notional limit (if `INSTR_HAS_NOTIONAL_MAX`).
    pub notional_max: u64,
    /// Fee account.
    pub fee_account: [u8; 16],
    /// Instrument id.
    pub id: u32,
    /// Band, bps (if `INSTR_HAS_BAND`).
    pub band_bps: u32,
    /// Circuit threshold, bps (if `INSTR_HAS_CIRCUIT`).
    pub circuit_bps: u32,
    /// Maker fee, bps.
    pub maker_fee_bps: u32,
    /// Taker fee, bps.
    pub taker_fee_bps: u32,
    /// Open orders limit per owner (if `INSTR_HAS_OPEN_ORDERS_MAX`).
    pub open_orders_max: u32,
    /// Symbol, ASCII zero-padded.
    pub symbol: [u8; 24],
    /// Base asset.
    pub base: [u8; 12],
    /// Quote asset.
    pub quote: [u8; 12],
    /// Whether fills settle (0/1).
    pub settle: u8,
    /// `INSTR_HAS_*` bits.
    pub present: u8,
    /// Zero.
    pub reserved: [u8; 6],
}

/// `HALT` / `RESUME` body (16 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HaltMsg {
    /// Request number.
    pub request: u64,
    /// Instrument.
    pub instrument: u32,
    /// Zero.
    pub reserved: u32,
}

/// Permission bit: trade (orders, cancels, mass cancels).
pub const PERM_TRADE: u8 = 1 << 0;
/// Permission bit: transfers and accounts.
pub const PERM_TRANSFER: u8 = 1 << 1;
/// Permission bit: admin (instruments, halts, tokens).
pub const PERM_ADMIN: u8 = 1 << 2;
/// Permission bit: read (balances, open orders).
pub const PERM_READ: u8 = 1 << 3;
/// Permission bit: ledger admin (other owners' accounts and transfers,
/// accounts without `debits_must_not_exceed_credits` as a source).
pub const PERM_LEDGER_ADMIN: u8 = 1 << 4;
/// Every permission bit.
pub const PERM_ALL: u8 = PERM_TRADE | PERM_TRANSFER | PERM_ADMIN | PERM_READ | PERM_LEDGER_ADMIN;

/// `ADD_TOKEN` body (112 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AddTokenMsg {
    /// Request number.
    pub request: u64,
    /// The new token, ASCII zero-padded (non-empty).
    pub token: [u8; TOKEN_LEN],
    /// Owners granted (first `owners_len`; the rest zero).
    pub owners: [u64; ADD_TOKEN_OWNERS_MAX],
    /// Number of owners (0..=8).
    pub owners_len: u8,
    /// `PERM_*` bits.
    pub perms: u8,
    /// Zero.
    pub reserved: [u8; 6],
}

// ----- server replies ----------------------------------------------------

/// Execution type (what happened), FIX tag 150 in spirit.
pub mod exec_type {
    /// The order was accepted.
    pub const NEW: u8 = 0;
    /// A fill (`last_qty` at `last_px`).
    pub const TRADE: u8 = 1;
    /// The order was cancelled (user, IOC remainder, mass cancel, STP, breaker).
    pub const CANCELED: u8 = 2;
    /// The order was replaced.
    pub const REPLACED: u8 = 3;
    /// The request was refused (new order, cancel or replace); see `reject_code`.
    pub const REJECTED: u8 = 4;
    /// A GTD order expired.
    pub const EXPIRED: u8 = 5;
    /// A stop order triggered.
    pub const TRIGGERED: u8 = 6;
    /// Reduced without a trade (self-trade prevention, decrement).
    pub const STP_REDUCED: u8 = 7;
}

/// Order status after the report, FIX tag 39 in spirit.
pub mod ord_status {
    /// Live, nothing filled.
    pub const NEW: u8 = 0;
    /// Live, partly filled.
    pub const PARTIALLY_FILLED: u8 = 1;
    /// Completely filled.
    pub const FILLED: u8 = 2;
    /// Cancelled.
    pub const CANCELED: u8 = 3;
    /// Rejected (never live).
    pub const REJECTED: u8 = 4;
    /// Expired.
    pub const EXPIRED: u8 = 5;
    /// The session does not track this order (its cum/leaves are unknown).
    pub const UNKNOWN: u8 = 6;
}

/// Gateway reject codes (≥ 100), used where engine codes do not apply.
/// Execution reports otherwise carry `RejectReason::code()`, transfer results
/// `LedgerError::code()`.
pub mod code {
    /// The token does not allow this owner or this kind of request.
    pub const NOT_AUTHORIZED: u16 = 100;
    /// The new-order throttle is empty.
    pub const THROTTLED: u16 = 101;
    /// The session's open-order limit is reached.
    pub const OPEN_ORDERS_LIMIT: u16 = 102;
    /// Back-pressure (transfer results; execution reports use the engine's `busy` = 15).
    pub const BUSY: u16 = 103;
    /// The server could not route the command (e.g. a cross-partition transfer).
    pub const UNROUTABLE: u16 = 104;
    /// Too many requests of this session are in flight.
    pub const TOO_MANY_IN_FLIGHT: u16 = 105;
    /// An `AddToken` with an empty or non-ASCII token.
    pub const INVALID_TOKEN: u16 = 106;
    /// `REPLAY_REPORTS`: one answer's worth was sent; ask again after the
    /// ack's `engine_seq` for the rest.
    pub const REPLAY_MORE: u16 = 107;
    /// `REPLAY_REPORTS`: the server no longer holds (or never held, since
    /// it started) every report right after `after_seq`; nothing was sent.
    /// The ack's `engine_seq` is the oldest seq a replay may start after.
    pub const REPLAY_GAP: u16 = 108;
    /// The engine's `busy` reject reason, as carried in execution reports.
    pub const ENGINE_BUSY: u16 = 15;
}

/// Execution report flag: the replace kept queue priority.
pub const REPORT_PRIORITY_KEPT: u8 = 1 << 0;
/// Execution report flag: the report answers this session's own request.
pub const REPORT_OWN_REQUEST: u8 = 1 << 1;
/// Execution report flag: sent again in answer to `REPLAY_REPORTS` (it
/// reports an input older than the reports sent live before it).
pub const REPORT_REPLAYED: u8 = 1 << 2;
/// `cancel_reason` value when none applies.
pub const CANCEL_REASON_NONE: u8 = 255;

/// `EXECUTION_REPORT` body (112 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExecutionReport {
    /// Per-session report sequence number (1, 2, 3, … no holes).
    pub report_seq: u64,
    /// Request number that caused it (0: unsolicited, e.g. a maker fill).
    pub request: u64,
    /// Global order id (0 for a rejected new order).
    pub order_id: u64,
    /// Client order id (0 when unknown).
    pub client_order_id: u64,
    /// Owner.
    pub owner: u64,
    /// Order's limit price (0 = none/unknown).
    pub price: u64,
    /// Order's total quantity (0 = unknown).
    pub order_qty: u64,
    /// Quantity filled so far.
    pub cum_qty: u64,
    /// Quantity still open.
    pub leaves_qty: u64,
    /// This fill's quantity (trades only).
    pub last_qty: u64,
    /// This fill's price (trades only).
    pub last_px: u64,
    /// Engine input sequence number that produced it (0 for gateway rejects).
    pub engine_seq: u64,
    /// Instrument (0 = unknown).
    pub instrument: u32,
    /// New orders the throttle allows right now (reports answering a new order).
    pub throttle_budget: u32,
    /// 0, or the engine `RejectReason` code, or a gateway code (`code::*`).
    pub reject_code: u16,
    /// `exec_type::*`.
    pub exec_type: u8,
    /// `ord_status::*`.
    pub ord_status: u8,
    /// 0 buy, 1 sell.
    pub side: u8,
    /// `REPORT_*` flags.
    pub flags: u8,
    /// Engine `CancelReason` for cancels/expiries/reductions, else `CANCEL_REASON_NONE`.
    pub cancel_reason: u8,
    /// The partition whose input `engine_seq` numbers (0 when `engine_seq`
    /// is 0).
    pub partition: u8,
}

/// `OPEN_ORDER` body (64 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OpenOrderRow {
    /// Request number answered.
    pub request: u64,
    /// Global order id.
    pub order_id: u64,
    /// Client order id.
    pub client_order_id: u64,
    /// Owner.
    pub owner: u64,
    /// Limit price (0 = none).
    pub price: u64,
    /// Filled.
    pub cum_qty: u64,
    /// Open.
    pub leaves_qty: u64,
    /// Instrument.
    pub instrument: u32,
    /// 0 buy, 1 sell.
    pub side: u8,
    /// Zero.
    pub reserved: [u8; 3],
}

/// `REQUEST_ACK` body (24 bytes): the outcome of a request with no other reply
/// (mass cancel, open account, halt, resume, add instrument, add token, the
/// end of an open-orders listing, a refused transfer batch or balance query).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RequestAck {
    /// Request number answered.
    pub request: u64,
    /// Engine input sequence number (0 when the engine was not involved).
    pub engine_seq: u64,
    /// Template of the request.
    pub template: u16,
    /// 0 = ok, else the engine code (`RejectReason` or `LedgerError` by
    /// request kind) or a gateway code.
    pub code: u16,
    /// Rows sent before it (open orders listing), else 0.
    pub count: u32,
}

/// Protocol reject codes (`ProtocolReject::code`).
pub mod reject {
    /// The frame is shorter than its template needs.
    pub const TRUNCATED: u16 = 1;
    /// The frame is longer than `MAX_FRAME`.
    pub const OVERSIZED: u16 = 2;
    /// Unknown template id.
    pub const UNKNOWN_TEMPLATE: u16 = 3;
    /// Wrong schema id or version.
    pub const BAD_SCHEMA: u16 = 4;
    /// A reserved field is not zero.
    pub const NON_ZERO_RESERVED: u16 = 5;
    /// A length that does not match the template.
    pub const BAD_LENGTH: u16 = 6;
    /// An enum field with an unknown value.
    pub const BAD_ENUM: u16 = 7;
    /// A template the client must not send (server → client only).
    pub const UNEXPECTED_TEMPLATE: u16 = 8;
    /// Request number zero.
    pub const BAD_REQUEST_NUMBER: u16 = 9;
    /// A retransmission whose outcome is no longer kept.
    pub const OUTCOME_NOT_KEPT: u16 = 10;
    /// Login while already logged in.
    pub const ALREADY_LOGGED_IN: u16 = 11;
}

/// `PROTOCOL_REJECT` body (104 bytes).
#[repr(C)]
#[derive(Pod, Zeroable, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolRejectMsg {
    /// Request number, when the frame carried a readable one; else 0.
    pub request: u64,
    /// `reject::*`.
    pub code: u16,
    /// Template of the offending frame (0 when unreadable).
    pub template: u16,
    /// Bad frames so far on this connection.
    pub garbage_count: u16,
    /// Zero.
    pub reserved: u16,
    /// What is wrong, ASCII, zero-padded.
    pub text: [u8; REJECT_TEXT_LEN],
}

impl Default for ProtocolRejectMsg {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

impl ProtocolRejectMsg {
    /// The text as a string.
    pub fn text(&self) -> &str {
        let n = self
            .text
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(REJECT_TEXT_LEN);
        core::str::from_utf8(&self.text[..n]).unwrap_or("?")
    }
}

/// Close codes (QUIC application error codes) the server closes with.
pub mod close {
    /// Orderly logout.
    pub const NORMAL: u32 = 0;
    /// Too many bad frames (`garbage_limit`).
    pub const PROTOCOL_VIOLATION: u32 = 1;
    /// Login refused.
    pub const AUTH_FAILED: u32 = 2;
    /// A first frame that is not a login.
    pub const NOT_LOGGED_IN: u32 = 3;
    /// Nothing heard for `idle_timeout_ns`.
    pub const IDLE_TIMEOUT: u32 = 4;
    /// The client does not read its replies fast enough.
    pub const SLOW_CONSUMER: u32 = 5;
    /// The byte stream cannot be re-framed (a header with length < 8).
    pub const FRAMING_LOST: u32 = 6;
    /// Another connection took the session over (server use).
    pub const TAKEN_OVER: u32 = 7;
    /// A replicated server that stopped leading (server use): what the
    /// session asked may or may not have been committed; reconnect to the
    /// cluster's leader and look it up there.
    pub const NOT_LEADER: u32 = 8;
}

const _: () = {
    use core::mem::size_of;
    assert!(size_of::<Header>() == 8);
    assert!(size_of::<Login>() == 56);
    assert!(size_of::<LoginAccepted>() == 48);
    assert!(size_of::<LoginRejected>() == 8);
    assert!(size_of::<Heartbeat>() == 8);
    assert!(size_of::<Logout>() == 8);
    assert!(size_of::<NewOrderMsg>() == 80);
    assert!(size_of::<CancelMsg>() == 24);
    assert!(size_of::<CancelByClientIdMsg>() == 24);
    assert!(size_of::<ReplaceMsg>() == 48);
    assert!(size_of::<MassCancelMsg>() == 24);
    assert!(size_of::<QueryOpenOrders>() == 16);
    assert!(size_of::<TransferBatchHead>() == 16);
    assert!(size_of::<TransferRecord>() == 96);
    assert!(size_of::<TransferResultsHead>() == 16);
    assert!(size_of::<TransferResult>() == 8);
    assert!(size_of::<OpenAccountMsg>() == 48);
    assert!(size_of::<QueryBalanceMsg>() == 24);
    assert!(size_of::<BalanceMsg>() == 88);
    assert!(size_of::<LookupTransfersMsg>() == 144);
    assert!(size_of::<GetAccountTransfersMsg>() == 48);
    assert!(size_of::<TransferRowMsg>() == 184);
    assert!(size_of::<TransfersEndMsg>() == 24);
    assert!(size_of::<AddInstrumentMsg>() == 160);
    assert!(size_of::<HaltMsg>() == 16);
    assert!(size_of::<AddTokenMsg>() == 112);
    assert!(size_of::<ExecutionReport>() == 112);
    assert!(size_of::<OpenOrderRow>() == 64);
    assert!(size_of::<RequestAck>() == 24);
    assert!(size_of::<ProtocolRejectMsg>() == 104);
    assert!(MAX_FRAME == 786_264);
};

// ----- errors ------------------------------------------------------------

/// What is wrong with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than the template needs.
    Truncated {
        /// Template.
        template: u16,
        /// Bytes needed (header included).
        need: usize,
        /// Bytes in the frame.
        got: usize,
    },
    /// Longer than `MAX_FRAME` (the stream is then unframeable).
    Oversized {
        /// Declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Unknown template id.
    UnknownTemplate(u16),
    /// Wrong schema id or version.
    BadSchema {
        /// Schema id found.
        schema: u8,
        /// Version found.
        version: u8,
    },
    /// A reserved field is not zero.
    NonZeroReserved {
        /// Which field.
        field: &'static str,
    },
    /// A length that does not fit the template (too long, or a record count
    /// that disagrees with the frame length, or a header length below 8).
    BadLength {
        /// Template (0 when the header itself is unusable).
        template: u16,
        /// Declared frame length.
        len: usize,
        /// Length the template implies (0 when none).
        expected: usize,
    },
    /// An enum field with an unknown value.
    BadEnum {
        /// Which field.
        field: &'static str,
        /// The value.
        value: u64,
    },
}

impl FrameError {
    /// The `reject::*` code for this error.
    pub fn code(&self) -> u16 {
        match self {
            FrameError::Truncated { .. } => reject::TRUNCATED,
            FrameError::Oversized { .. } => reject::OVERSIZED,
            FrameError::UnknownTemplate(_) => reject::UNKNOWN_TEMPLATE,
            FrameError::BadSchema { .. } => reject::BAD_SCHEMA,
            FrameError::NonZeroReserved { .. } => reject::NON_ZERO_RESERVED,
            FrameError::BadLength { .. } => reject::BAD_LENGTH,
            FrameError::BadEnum { .. } => reject::BAD_ENUM,
        }
    }

    /// Whether the byte stream can no longer be split into frames after it:
    /// a length below the header or above `MAX_FRAME` (skipping that many
    /// bytes would let one lying header swallow the stream).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            FrameError::BadLength { template: 0, .. } | FrameError::Oversized { .. }
        )
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated {
                template,
                need,
                got,
            } => write!(
                f,
                "truncated: template {template} needs {need} bytes, frame has {got}"
            ),
            FrameError::Oversized { len, max } => {
                write!(f, "oversized: frame of {len} bytes, limit {max}")
            }
            FrameError::UnknownTemplate(t) => write!(f, "unknown template {t}"),
            FrameError::BadSchema { schema, version } => write!(
                f,
                "bad schema: schema {schema} version {version}, expected {SCHEMA_ID}/{VERSION}"
            ),
            FrameError::NonZeroReserved { field } => {
                write!(f, "non-zero reserved field {field}")
            }
            FrameError::BadLength {
                template,
                len,
                expected,
            } => write!(
                f,
                "bad length: template {template} frame of {len} bytes, expected {expected}"
            ),
            FrameError::BadEnum { field, value } => {
                write!(f, "bad enum: {field} = {value}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

// ----- encoding ----------------------------------------------------------

fn header(template: u16, len: usize) -> Header {
    Header {
        len: len as u32,
        template,
        schema: SCHEMA_ID,
        version: VERSION,
    }
}

/// Appends one frame (header + body) to `out`.
pub fn encode_frame<T: Pod>(template: u16, body: &T, out: &mut Vec<u8>) {
    let b = bytemuck::bytes_of(body);
    out.extend_from_slice(bytemuck::bytes_of(&header(template, HEADER_LEN + b.len())));
    out.extend_from_slice(b);
}

/// Appends a frame made of a head and repeated records (transfer batches
/// and results).
pub fn encode_frame_records<H: Pod, R: Pod>(
    template: u16,
    head: &H,
    records: &[R],
    out: &mut Vec<u8>,
) {
    let hb = bytemuck::bytes_of(head);
    let rb: &[u8] = bytemuck::cast_slice(records);
    out.extend_from_slice(bytemuck::bytes_of(&header(
        template,
        HEADER_LEN + hb.len() + rb.len(),
    )));
    out.extend_from_slice(hb);
    out.extend_from_slice(rb);
}

/// Appends a `TRANSFER_BATCH` frame (`head.count` is set from `records`).
pub fn encode_transfer_batch(request: u64, records: &[TransferRecord], out: &mut Vec<u8>) {
    let head = TransferBatchHead {
        request,
        count: records.len() as u32,
        reserved: 0,
    };
    encode_frame_records(template::TRANSFER_BATCH, &head, records, out);
}

/// Copies a Pod value out of the front of `bytes` (any alignment); `None` if short.
pub fn read_pod<T: Pod>(bytes: &[u8]) -> Option<T> {
    let n = core::mem::size_of::<T>();
    bytes.get(..n).map(bytemuck::pod_read_unaligned)
}

// ----- frame reader --------------------------------------------------------

/// Checks a header against the templates: schema, template, length.
pub fn check_header(h: &Header) -> Result<(), FrameError> {
    let len = h.len as usize;
    if len < HEADER_LEN {
        return Err(FrameError::BadLength {
            template: 0,
            len,
            expected: HEADER_LEN,
        });
    }
    if len > MAX_FRAME {
        return Err(FrameError::Oversized {
            len,
            max: MAX_FRAME,
        });
    }
    if h.schema != SCHEMA_ID || h.version != VERSION {
        return Err(FrameError::BadSchema {
            schema: h.schema,
            version: h.version,
        });
    }
    let Some(body) = body_len(h.template) else {
        return Err(FrameError::UnknownTemplate(h.template));
    };
    let need = HEADER_LEN + body;
    if len < need {
        return Err(FrameError::Truncated {
            template: h.template,
            need,
            got: len,
        });
    }
    let rec = record_len(h.template);
    if rec == 0 {
        if len != need {
            return Err(FrameError::BadLength {
                template: h.template,
                len,
                expected: need,
            });
        }
    } else if !(len - need).is_multiple_of(rec) {
        return Err(FrameError::BadLength {
            template: h.template,
            len,
            expected: need + (len - need) / rec * rec,
        });
    }
    Ok(())
}

/// Splits a byte stream into frames, incrementally. Holds at most one
/// partial frame plus the last pushed chunk (never more than `MAX_FRAME` +
/// that chunk); a header with a length below 8 or above `MAX_FRAME`, or a
/// bad header with a length above `GARBAGE_SKIP_MAX`, is reported once and
/// leaves the stream unframeable (`is_broken`): nothing more is buffered or
/// returned until `reset`. Other bad frames are skipped whole and reported.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    pos: usize,
    broken: bool,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the stream. Callers push chunks of bounded size
    /// and drain `next_frame` before pushing more.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        // Compact what was consumed before growing.
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held (for tests of the memory bound).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether the stream can no longer be framed.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Forgets everything (a new connection).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.broken = false;
    }

    /// The next complete frame: its header and body (bytes after the header),
    /// or the error that makes it unusable (the frame is consumed either way).
    pub fn next_frame(&mut self) -> Option<Result<(Header, &[u8]), FrameError>> {
        if self.broken {
            return None;
        }
        let avail = &self.buf[self.pos..];
        let h: Header = read_pod(avail)?;
        let len = h.len as usize;
        if let Err(e) = check_header(&h) {
            match e {
                e if e.is_fatal() => {
                    self.broken = true;
                    self.buf = Vec::new();
                    self.pos = 0;
                    return Some(Err(e));
                }
                _ if len > GARBAGE_SKIP_MAX => {
                    // Only a transfer batch is that long: a bad header
                    // claiming it would swallow the stream.
                    self.broken = true;
                    self.buf = Vec::new();
                    self.pos = 0;
                    return Some(Err(e));
                }
                _ => {
                    if avail.len() < len {
                        return None;
                    }
                    self.pos += len;
                    return Some(Err(e));
                }
            }
        }
        if avail.len() < len {
            return None;
        }
        let start = self.pos;
        self.pos += len;
        Some(Ok((h, &self.buf[start + HEADER_LEN..start + len])))
    }
}

// ----- decoding into typed messages ---------------------------------------

/// A decoded, validated client → server message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMsg<'a> {
    /// Login.
    Login(Login),
    /// Heartbeat.
    Heartbeat(Heartbeat),
    /// Logout.
    Logout,
    /// New order.
    NewOrder(NewOrderMsg),
    /// Cancel.
    Cancel(CancelMsg),
    /// Cancel by (owner, client order id).
    CancelByClientId(CancelByClientIdMsg),
    /// Replace.
    Replace(ReplaceMsg),
    /// Mass cancel.
    MassCancel(MassCancelMsg),
    /// Open-orders listing.
    QueryOpenOrders(QueryOpenOrders),
    /// Send reports again.
    ReplayReports(ReplayReportsMsg),
    /// Transfer batch: head and the raw records (`count` × 96 bytes; read
    /// them with `transfer_record`).
    TransferBatch(TransferBatchHead, &'a [u8]),
    /// Open account.
    OpenAccount(OpenAccountMsg),
    /// Balance query.
    QueryBalance(QueryBalanceMsg),
    /// Transfer lookup by id.
    LookupTransfers(LookupTransfersMsg),
    /// One account's transfers.
    GetAccountTransfers(GetAccountTransfersMsg),
    /// Add instrument (admin).
    AddInstrument(AddInstrumentMsg),
    /// Halt (admin).
    Halt(HaltMsg),
    /// Resume (admin).
    Resume(HaltMsg),
    /// Add token (admin).
    AddToken(AddTokenMsg),
}

impl ClientMsg<'_> {
    /// The request number, for messages that carry one.
    pub fn request(&self) -> Option<u64> {
        Some(match self {
            ClientMsg::Login(_) | ClientMsg::Heartbeat(_) | ClientMsg::Logout => return None,
            ClientMsg::NewOrder(m) => m.request,
            ClientMsg::Cancel(m) => m.request,
            ClientMsg::CancelByClientId(m) => m.request,
            ClientMsg::Replace(m) => m.request,
            ClientMsg::MassCancel(m) => m.request,
            ClientMsg::QueryOpenOrders(m) => m.request,
            ClientMsg::ReplayReports(m) => m.request,
            ClientMsg::TransferBatch(h, _) => h.request,
            ClientMsg::OpenAccount(m) => m.request,
            ClientMsg::QueryBalance(m) => m.request,
            ClientMsg::LookupTransfers(m) => m.request,
            ClientMsg::GetAccountTransfers(m) => m.request,
            ClientMsg::AddInstrument(m) => m.request,
            ClientMsg::Halt(m) | ClientMsg::Resume(m) => m.request,
            ClientMsg::AddToken(m) => m.request,
        })
    }
}

fn zero<T: Pod>(field: &'static str, v: &T) -> Result<(), FrameError> {
    if bytemuck::bytes_of(v).iter().all(|&b| b == 0) {
        Ok(())
    } else {
        Err(FrameError::NonZeroReserved { field })
    }
}

fn bad_enum(field: &'static str, value: u64) -> FrameError {
    FrameError::BadEnum { field, value }
}

fn side_of(v: u8) -> Result<Side, FrameError> {
    match v {
        0 => Ok(Side::Buy),
        1 => Ok(Side::Sell),
        _ => Err(bad_enum("side", v as u64)),
    }
}

fn need<T: Pod>(template: u16, body: &[u8]) -> Result<T, FrameError> {
    read_pod(body).ok_or(FrameError::Truncated {
        template,
        need: HEADER_LEN + core::mem::size_of::<T>(),
        got: HEADER_LEN + body.len(),
    })
}

/// A `NEW_ORDER` body with its enum bytes, flags and reserved bytes checked.
fn decode_new_order(body: &[u8]) -> Result<NewOrderMsg, FrameError> {
    let m: NewOrderMsg = need(template::NEW_ORDER, body)?;
    zero("new_order.reserved", &m.reserved)?;
    side_of(m.side)?;
    if m.order_type > 3 {
        return Err(bad_enum("new_order.order_type", m.order_type as u64));
    }
    if m.tif > 3 {
        return Err(bad_enum("new_order.tif", m.tif as u64));
    }
    if m.stp > 4 {
        return Err(bad_enum("new_order.stp", m.stp as u64));
    }
    if m.flags & !ORDER_POST_ONLY != 0 {
        return Err(bad_enum("new_order.flags", m.flags as u64));
    }
    Ok(m)
}

/// A `REPLACE` body with its flags and reserved bytes checked.
fn decode_replace(body: &[u8]) -> Result<ReplaceMsg, FrameError> {
    let m: ReplaceMsg = need(template::REPLACE, body)?;
    zero("replace.reserved", &m.reserved)?;
    if m.flags & !REPLACE_REQUEUE != 0 {
        return Err(bad_enum("replace.flags", m.flags as u64));
    }
    Ok(m)
}

/// Decodes and validates a client → server frame (header already checked by
/// the reader, but checked again here so any input is safe).
pub fn decode_client<'a>(h: &Header, body: &'a [u8]) -> Result<ClientMsg<'a>, FrameError> {
    let mut hh = *h;
    hh.len = (HEADER_LEN + body.len()).min(u32::MAX as usize) as u32;
    check_header(&hh)?;
    let t = h.template;
    Ok(match t {
        template::LOGIN => {
            let m: Login = need(t, body)?;
            zero("login.reserved", &m.reserved)?;
            if m.flags & !LOGIN_FLAGS_ALL != 0 {
                return Err(bad_enum("login.flags", m.flags as u64));
            }
            ClientMsg::Login(m)
        }
        template::HEARTBEAT => ClientMsg::Heartbeat(need(t, body)?),
        template::LOGOUT => {
            let m: Logout = need(t, body)?;
            zero("logout.reserved", &m.reserved)?;
            ClientMsg::Logout
        }
        template::NEW_ORDER => ClientMsg::NewOrder(decode_new_order(body)?),
        template::CANCEL => ClientMsg::Cancel(need(t, body)?),
        template::CANCEL_BY_CLIENT_ID => ClientMsg::CancelByClientId(need(t, body)?),
        template::REPLACE => ClientMsg::Replace(decode_replace(body)?),
        template::MASS_CANCEL => {
            let m: MassCancelMsg = need(t, body)?;
            zero("mass_cancel.reserved", &m.reserved)?;
            if m.side != SIDE_ANY {
                side_of(m.side)?;
            }
            ClientMsg::MassCancel(m)
        }
        template::QUERY_OPEN_ORDERS => ClientMsg::QueryOpenOrders(need(t, body)?),
        template::REPLAY_REPORTS => {
            let m: ReplayReportsMsg = need(t, body)?;
            zero("replay_reports.reserved", &m.reserved)?;
            ClientMsg::ReplayReports(m)
        }
        template::TRANSFER_BATCH => {
            let m: TransferBatchHead = need(t, body)?;
            zero("transfer_batch.reserved", &m.reserved)?;
            let recs = &body[core::mem::size_of::<TransferBatchHead>()..];
            let n = recs.len() / core::mem::size_of::<TransferRecord>();
            if m.count as usize != n || n == 0 || n > TRANSFER_BATCH_MAX {
                return Err(FrameError::BadLength {
                    template: t,
                    len: HEADER_LEN + body.len(),
                    expected: HEADER_LEN
                        + core::mem::size_of::<TransferBatchHead>()
                        + (m.count as usize).min(TRANSFER_BATCH_MAX)
                            * core::mem::size_of::<TransferRecord>(),
                });
            }
            for i in 0..n {
                let r = transfer_record(recs, i).unwrap_or_default();
                zero("transfer.reserved", &r.reserved)?;
                if r.flags & !TransferFlags::ALL != 0 {
                    return Err(bad_enum("transfer.flags", r.flags as u64));
                }
            }
            ClientMsg::TransferBatch(m, recs)
        }
        template::OPEN_ACCOUNT => {
            let m: OpenAccountMsg = need(t, body)?;
            zero("open_account.reserved", &m.reserved)?;
            if m.flags & !AccountFlags::ALL != 0 {
                return Err(bad_enum("open_account.flags", m.flags as u64));
            }
            ClientMsg::OpenAccount(m)
        }
        template::QUERY_BALANCE => ClientMsg::QueryBalance(need(t, body)?),
        template::LOOKUP_TRANSFERS => {
            let m: LookupTransfersMsg = need(t, body)?;
            zero("lookup_transfers.reserved", &m.reserved)?;
            let n = m.count as usize;
            if n == 0 || n > LOOKUP_TRANSFERS_MAX {
                return Err(bad_enum("lookup_transfers.count", m.count as u64));
            }
            if m.ids[n..].iter().any(|id| *id != [0; 16]) {
                return Err(FrameError::NonZeroReserved {
                    field: "lookup_transfers.ids[count..]",
                });
            }
            ClientMsg::LookupTransfers(m)
        }
        template::GET_ACCOUNT_TRANSFERS => {
            let m: GetAccountTransfersMsg = need(t, body)?;
            zero("get_account_transfers.reserved", &m.reserved)?;
            if m.by > RANGE_TIME {
                return Err(bad_enum("get_account_transfers.by", m.by as u64));
            }
            if m.flags & !LISTING_NEWEST_FIRST != 0 {
                return Err(bad_enum("get_account_transfers.flags", m.flags as u64));
            }
            ClientMsg::GetAccountTransfers(m)
        }
        template::ADD_INSTRUMENT => {
            let m: AddInstrumentMsg = need(t, body)?;
            zero("add_instrument.reserved", &m.reserved)?;
            if m.settle > 1 {
                return Err(bad_enum("add_instrument.settle", m.settle as u64));
            }
            if m.present & !INSTR_HAS_ALL != 0 {
                return Err(bad_enum("add_instrument.present", m.present as u64));
            }
            ClientMsg::AddInstrument(m)
        }
        template::HALT | template::RESUME => {
            let m: HaltMsg = need(t, body)?;
            zero("halt.reserved", &m.reserved)?;
            if t == template::HALT {
                ClientMsg::Halt(m)
            } else {
                ClientMsg::Resume(m)
            }
        }
        template::ADD_TOKEN => {
            let m: AddTokenMsg = need(t, body)?;
            zero("add_token.reserved", &m.reserved)?;
            if m.owners_len as usize > ADD_TOKEN_OWNERS_MAX {
                return Err(bad_enum("add_token.owners_len", m.owners_len as u64));
            }
            if m.owners[m.owners_len as usize..].iter().any(|&o| o != 0) {
                return Err(FrameError::NonZeroReserved {
                    field: "add_token.owners[owners_len..]",
                });
            }
            if m.perms & !PERM_ALL != 0 {
                return Err(bad_enum("add_token.perms", m.perms as u64));
            }
            ClientMsg::AddToken(m)
        }
        other => {
            return Err(FrameError::UnknownTemplate(other));
        }
    })
}

/// Whether a (known) template is one the server sends, never the client.
pub fn is_server_template(t: u16) -> bool {
    matches!(
        t,
        template::LOGIN_ACCEPTED
            | template::LOGIN_REJECTED
            | template::EXECUTION_REPORT
            | template::TRANSFER_RESULTS
            | template::BALANCE
            | template::OPEN_ORDER
            | template::REQUEST_ACK
            | template::PROTOCOL_REJECT
            | template::TRANSFER_ROW
            | template::TRANSFERS_END
    )
}

/// A decoded server → client message (for clients and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMsg<'a> {
    /// Login accepted.
    LoginAccepted(LoginAccepted),
    /// Login refused.
    LoginRejected(LoginRejected),
    /// Heartbeat.
    Heartbeat(Heartbeat),
    /// Logout.
    Logout,
    /// Execution report.
    ExecutionReport(ExecutionReport),
    /// Transfer results: head and raw results (read with `transfer_result`).
    TransferResults(TransferResultsHead, &'a [u8]),
    /// Balance.
    Balance(BalanceMsg),
    /// Open order row.
    OpenOrder(OpenOrderRow),
    /// Request outcome.
    RequestAck(RequestAck),
    /// Protocol reject.
    ProtocolReject(ProtocolRejectMsg),
    /// One transfer of a lookup or listing (validated: read it with
    /// `transfer_row_record`).
    TransferRow(TransferRowMsg),
    /// The end of a lookup or listing.
    TransfersEnd(TransfersEndMsg),
}

/// Decodes a server → client frame.
pub fn decode_server<'a>(h: &Header, body: &'a [u8]) -> Result<ServerMsg<'a>, FrameError> {
    let mut hh = *h;
    hh.len = (HEADER_LEN + body.len()).min(u32::MAX as usize) as u32;
    check_header(&hh)?;
    let t = h.template;
    Ok(match t {
        template::LOGIN_ACCEPTED => ServerMsg::LoginAccepted(need(t, body)?),
        template::LOGIN_REJECTED => ServerMsg::LoginRejected(need(t, body)?),
        template::HEARTBEAT => ServerMsg::Heartbeat(need(t, body)?),
        template::LOGOUT => ServerMsg::Logout,
        template::EXECUTION_REPORT => ServerMsg::ExecutionReport(need(t, body)?),
        template::TRANSFER_RESULTS => {
            let m: TransferResultsHead = need(t, body)?;
            ServerMsg::TransferResults(m, &body[core::mem::size_of::<TransferResultsHead>()..])
        }
        template::BALANCE => ServerMsg::Balance(need(t, body)?),
        template::OPEN_ORDER => ServerMsg::OpenOrder(need(t, body)?),
        template::REQUEST_ACK => ServerMsg::RequestAck(need(t, body)?),
        template::PROTOCOL_REJECT => ServerMsg::ProtocolReject(need(t, body)?),
        template::TRANSFER_ROW => {
            let m: TransferRowMsg = need(t, body)?;
            zero("transfer_row.reserved", &m.reserved)?;
            if m.state as usize >= TRANSFER_STATES.len() {
                return Err(bad_enum("transfer_row.state", m.state as u64));
            }
            if m.flags & !TransferFlags::ALL != 0 {
                return Err(bad_enum("transfer_row.flags", m.flags as u64));
            }
            ServerMsg::TransferRow(m)
        }
        template::TRANSFERS_END => {
            let m: TransfersEndMsg = need(t, body)?;
            zero("transfers_end.reserved", &m.reserved)?;
            if m.more > 1 {
                return Err(bad_enum("transfers_end.more", m.more as u64));
            }
            ServerMsg::TransfersEnd(m)
        }
        other => return Err(FrameError::UnknownTemplate(other)),
    })
}

/// The `i`-th transfer record of a batch's record bytes.
pub fn transfer_record(records: &[u8], i: usize) -> Option<TransferRecord> {
    let n = core::mem::size_of::<TransferRecord>();
    records.get(i * n..).and_then(read_pod)
}

/// The `i`-th result of a `TRANSFER_RESULTS` frame's result bytes.
pub fn transfer_result(results: &[u8], i: usize) -> Option<TransferResult> {
    let n = core::mem::size_of::<TransferResult>();
    results.get(i * n..).and_then(read_pod)
}

/// Parses the first frame of a connection as a login, without consuming
/// anything (the server uses it to pick the session object).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginInfo {
    /// The token bytes (ASCII, zero-padded).
    pub token: [u8; TOKEN_LEN],
    /// Client-chosen session id.
    pub session_id: u64,
    /// Last report seq the client has.
    pub resume_after: u64,
    /// `LOGIN_*` flags.
    pub flags: u32,
}

impl LoginInfo {
    /// The token as text (`None` when not ASCII).
    pub fn token_str(&self) -> Option<&str> {
        token_str(&self.token)
    }
}

/// A token field as text: bytes up to the first zero, printable ASCII only.
pub fn token_str(t: &[u8; TOKEN_LEN]) -> Option<&str> {
    let n = t.iter().position(|&c| c == 0).unwrap_or(TOKEN_LEN);
    let s = &t[..n];
    if s.is_empty() || !s.iter().all(|c| c.is_ascii_graphic()) || t[n..].iter().any(|&c| c != 0) {
        return None;
    }
    core::str::from_utf8(s).ok()
}

/// A token as the wire's 32-byte field (`None` if empty, too long or not printable ASCII).
pub fn token_bytes(token: &str) -> Option<[u8; TOKEN_LEN]> {
    let b = token.as_bytes();
    if b.is_empty() || b.len() > TOKEN_LEN || !b.iter().all(|c| c.is_ascii_graphic()) {
        return None;
    }
    let mut out = [0u8; TOKEN_LEN];
    out[..b.len()].copy_from_slice(b);
    Some(out)
}

/// If `frame_bytes` starts with a complete, valid `LOGIN` frame, its fields.
pub fn peek_login(frame_bytes: &[u8]) -> Option<LoginInfo> {
    let h: Header = read_pod(frame_bytes)?;
    if h.template != template::LOGIN || check_header(&h).is_err() {
        return None;
    }
    let body = frame_bytes.get(HEADER_LEN..h.len as usize)?;
    match decode_client(&h, body) {
        Ok(ClientMsg::Login(m)) => Some(LoginInfo {
            token: m.token,
            session_id: m.session_id,
            resume_after: m.resume_after,
            flags: m.flags,
        }),
        _ => None,
    }
}

// ----- conversions to and from engine values --------------------------------

/// u128 from its 16 little-endian bytes.
pub fn u128_from(b: [u8; 16]) -> u128 {
    u128::from_le_bytes(b)
}

/// u128 as 16 little-endian bytes.
pub fn u128_bytes(v: u128) -> [u8; 16] {
    v.to_le_bytes()
}

fn opt(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

/// The engine command of a (validated) new order; the order id space is untouched.
pub fn new_order_command(m: &NewOrderMsg) -> Command {
    let side = if m.side == 1 { Side::Sell } else { Side::Buy };
    let order_type = match m.order_type {
        1 => OrderType::Market,
        2 => OrderType::Stop,
        3 => OrderType::StopLimit,
        _ => OrderType::Limit,
    };
    let tif = match m.tif {
        1 => Tif::Ioc,
        2 => Tif::Fok,
        3 => Tif::Gtd,
        _ => Tif::Gtc,
    };
    let stp = match m.stp {
        1 => Stp::CancelTaker,
        2 => Stp::CancelMaker,
        3 => Stp::CancelBoth,
        4 => Stp::Decrement,
        _ => Stp::None,
    };
    Command::NewOrder(engine::NewOrder {
        owner: OwnerId(m.owner),
        instrument: InstrumentId(m.instrument),
        client_order_id: ClientOrderId(m.client_order_id),
        side,
        order_type,
        price: opt(m.price).map(Price),
        qty: Qty(m.qty),
        tif,
        expire_at: opt(m.expire_at).map(Timestamp),
        post_only: m.flags & ORDER_POST_ONLY != 0,
        stp,
        display_qty: opt(m.display_qty).map(Qty),
        trigger_price: opt(m.trigger_price).map(Price),
    })
}

/// A wire `NewOrderMsg` for an engine order (clients, tests).
pub fn new_order_msg(request: u64, o: &engine::NewOrder) -> NewOrderMsg {
    NewOrderMsg {
        request,
        client_order_id: o.client_order_id.0,
        owner: o.owner.0,
        price: o.price.map_or(0, |p| p.0),
        qty: o.qty.0,
        trigger_price: o.trigger_price.map_or(0, |p| p.0),
        display_qty: o.display_qty.map_or(0, |q| q.0),
        expire_at: o.expire_at.map_or(0, |t| t.0),
        instrument: o.instrument.0,
        side: o.side as u8,
        order_type: o.order_type as u8,
        tif: o.tif as u8,
        stp: o.stp as u8,
        flags: if o.post_only { ORDER_POST_ONLY } else { 0 },
        reserved: [0; 7],
    }
}

/// The engine transfer of a wire record.
pub fn transfer_spec(r: &TransferRecord) -> TransferSpec {
    TransferSpec {
        id: TransferId(u128_from(r.id)),
        debit_account: AccountId(u128_from(r.debit_account)),
        credit_account: AccountId(u128_from(r.credit_account)),
        amount: Amount(u128_from(r.amount)),
        code: r.code,
        flags: TransferFlags(r.flags),
        pending_id: TransferId(u128_from(r.pending_id)),
        timeout_ns: r.timeout_ns,
    }
}

/// The wire record of an engine transfer.
pub fn transfer_record_of(t: &TransferSpec) -> TransferRecord {
    TransferRecord {
        id: u128_bytes(t.id.0),
        debit_account: u128_bytes(t.debit_account.0),
        credit_account: u128_bytes(t.credit_account.0),
        amount: u128_bytes(t.amount.0),
        pending_id: u128_bytes(t.pending_id.0),
        timeout_ns: t.timeout_ns,
        code: t.code,
        flags: t.flags.0,
        reserved: 0,
    }
}

/// The wire row of a transfer record answering `request`; `None` for a
/// record queries never return (a remembered failure).
pub fn transfer_row_msg(
    request: u64,
    r: &engine::history::TransferRecord,
) -> Option<TransferRowMsg> {
    let state = TRANSFER_STATES.iter().position(|s| *s == r.state)? as u8;
    let s = &r.spec;
    Some(TransferRowMsg {
        request,
        id: u128_bytes(s.id.0),
        requested_debit_account: u128_bytes(s.debit_account.0),
        requested_credit_account: u128_bytes(s.credit_account.0),
        requested_amount: u128_bytes(s.amount.0),
        pending_id: u128_bytes(s.pending_id.0),
        debit_account: u128_bytes(r.debit_account.0),
        credit_account: u128_bytes(r.credit_account.0),
        amount: u128_bytes(r.amount.0),
        timeout_ns: s.timeout_ns,
        ledger_seq: r.ledger_seq,
        created_seq: r.created_seq.0,
        created_ns: r.created.0,
        change_seq: r.change_seq.0,
        code: s.code,
        flags: s.flags.0,
        state,
        reserved: [0; 3],
    })
}

/// The engine record of a wire row (`None` for a state byte no record has;
/// `decode_server` has already refused those).
pub fn transfer_row_record(m: &TransferRowMsg) -> Option<engine::history::TransferRecord> {
    Some(engine::history::TransferRecord {
        spec: TransferSpec {
            id: TransferId(u128_from(m.id)),
            debit_account: AccountId(u128_from(m.requested_debit_account)),
            credit_account: AccountId(u128_from(m.requested_credit_account)),
            amount: Amount(u128_from(m.requested_amount)),
            code: m.code,
            flags: TransferFlags(m.flags),
            pending_id: TransferId(u128_from(m.pending_id)),
            timeout_ns: m.timeout_ns,
        },
        debit_account: AccountId(u128_from(m.debit_account)),
        credit_account: AccountId(u128_from(m.credit_account)),
        amount: Amount(u128_from(m.amount)),
        state: *TRANSFER_STATES.get(m.state as usize)?,
        ledger_seq: m.ledger_seq,
        created_seq: engine::Seq(m.created_seq),
        created: Timestamp(m.created_ns),
        change_seq: engine::Seq(m.change_seq),
    })
}

/// The engine filter of a (validated) `GetAccountTransfers` message.
pub fn account_filter(m: &GetAccountTransfersMsg) -> engine::history::AccountFilter {
    engine::history::AccountFilter {
        account: AccountId(u128_from(m.account)),
        by: if m.by == RANGE_TIME {
            engine::history::RangeBy::Time
        } else {
            engine::history::RangeBy::LedgerSeq
        },
        lo: m.lo,
        hi: m.hi,
        limit: m.limit,
        newest_first: m.flags & LISTING_NEWEST_FIRST != 0,
    }
}

/// The wire message of an engine filter.
pub fn get_account_transfers_msg(
    request: u64,
    f: &engine::history::AccountFilter,
) -> GetAccountTransfersMsg {
    GetAccountTransfersMsg {
        request,
        account: u128_bytes(f.account.0),
        lo: f.lo,
        hi: f.hi,
        limit: f.limit,
        by: match f.by {
            engine::history::RangeBy::LedgerSeq => RANGE_LEDGER_SEQ,
            engine::history::RangeBy::Time => RANGE_TIME,
        },
        flags: if f.newest_first {
            LISTING_NEWEST_FIRST
        } else {
            0
        },
        reserved: 0,
    }
}

/// The engine account spec of an `OpenAccount` message.
pub fn account_spec(m: &OpenAccountMsg) -> AccountSpec {
    AccountSpec {
        id: AccountId(u128_from(m.id)),
        owner: OwnerId(m.owner),
        asset: Asset(m.asset),
        flags: AccountFlags(m.flags),
    }
}

/// The engine instrument spec of an `AddInstrument` message.
pub fn instrument_spec(m: &AddInstrumentMsg) -> InstrumentSpec {
    let has = |bit: u8| m.present & bit != 0;
    InstrumentSpec {
        id: InstrumentId(m.id),
        symbol: Symbol(m.symbol),
        base: Asset(m.base),
        quote: Asset(m.quote),
        tick: m.tick,
        lot_size: m.lot_size,
        qty_min: m.qty_min,
        qty_max: m.qty_max,
        reference_price: Price(m.reference_price),
        band_bps: has(INSTR_HAS_BAND).then_some(m.band_bps),
        circuit_bps: has(INSTR_HAS_CIRCUIT).then_some(m.circuit_bps),
        circuit_window_ns: m.circuit_window_ns,
        maker_fee_bps: m.maker_fee_bps,
        taker_fee_bps: m.taker_fee_bps,
        fee_account: AccountId(u128_from(m.fee_account)),
        settle: m.settle != 0,
        open_orders_max: has(INSTR_HAS_OPEN_ORDERS_MAX).then_some(m.open_orders_max),
        notional_max: has(INSTR_HAS_NOTIONAL_MAX).then_some(m.notional_max),
    }
}

/// The wire message of an engine instrument spec.
pub fn add_instrument_msg(request: u64, s: &InstrumentSpec) -> AddInstrumentMsg {
    let mut present = 0;
    if s.band_bps.is_some() {
        present |= INSTR_HAS_BAND;
    }
    if s.circuit_bps.is_some() {
        present |= INSTR_HAS_CIRCUIT;
    }
    if s.open_orders_max.is_some() {
        present |= INSTR_HAS_OPEN_ORDERS_MAX;
    }
    if s.notional_max.is_some() {
        present |= INSTR_HAS_NOTIONAL_MAX;
    }
    AddInstrumentMsg {
        request,
        tick: s.tick,
        lot_size: s.lot_size,
        qty_min: s.qty_min,
        qty_max: s.qty_max,
        reference_price: s.reference_price.0,
        circuit_window_ns: s.circuit_window_ns,
        notional_max: s.notional_max.unwrap_or(0),
        fee_account: u128_bytes(s.fee_account.0),
        id: s.id.0,
        band_bps: s.band_bps.unwrap_or(0),
        circuit_bps: s.circuit_bps.unwrap_or(0),
        maker_fee_bps: s.maker_fee_bps,
        taker_fee_bps: s.taker_fee_bps,
        open_orders_max: s.open_orders_max.unwrap_or(0),
        symbol: s.symbol.0,
        base: s.base.0,
        quote: s.quote.0,
        settle: s.settle as u8,
        present,
        reserved: [0; 6],
    }
}

/// The order id of a report as an engine id (global).
pub fn order_id(r: &ExecutionReport) -> OrderId {
    OrderId(r.order_id)
}
