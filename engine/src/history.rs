//! The ledger's transfer history beyond memory: the record every stored
//! transfer leaves, and the read-only interface through which the engine
//! consults transfers that no longer live in its memory.
//!
//! Shape (ARCHITECTURE.md, "Transfer history"): the engine keeps the hot part
//! of the ledger in fixed memory (pending transfers and every transfer not
//! yet installed in history). Every input that stores a transfer, changes a
//! pending transfer's state or remembers a failed id pushes a
//! [`TransferRecord`] onto `Events::changes`; the runtime hands those to a
//! history writer off the engine thread, which cuts them into immutable,
//! checksummed runs and installs each run through a sequenced, journaled
//! `Command::InstallHistory`. Only records covered by an installed run may
//! leave memory, so every answer is the same whether it comes from memory or
//! from history, and replay stays bit-exact.
//!
//! Invariants: a `TransferHistory` answers only from installed runs; its
//! answer for an id is the newest record of that id (highest `change_seq`);
//! it never answers wrongly: a run it cannot read or verify is a fail-stop
//! (`HistoryFault`), which the engine turns into a loud panic, because the
//! history is part of the ledger's state.

use crate::command::TransferSpec;
use crate::event::LedgerError;
use crate::types::*;

/// What became of a stored transfer (or a remembered failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferState {
    /// A plain transfer, posted when created.
    Posted,
    /// A pending transfer still reserving its amount.
    Pending,
    /// A pending transfer resolved by a post.
    PendingPosted,
    /// A pending transfer resolved by a void.
    PendingVoided,
    /// A pending transfer that timed out.
    PendingExpired,
    /// A post or void record (it resolves the transfer in `spec.pending_id`).
    Resolution,
    /// Not a transfer: an id whose transfer failed with a transient error and
    /// is remembered so a retry answers `id_already_failed` (convention 12).
    /// Queries never return these.
    Failed(LedgerError),
}

impl TransferState {
    /// A stable lower-case name (queries, CLI, dumps).
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Posted => "posted",
            TransferState::Pending => "pending",
            TransferState::PendingPosted => "pending_posted",
            TransferState::PendingVoided => "pending_voided",
            TransferState::PendingExpired => "pending_expired",
            TransferState::Resolution => "resolution",
            TransferState::Failed(_) => "failed",
        }
    }
}

/// One transfer as the ledger remembers it, in memory or in history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferRecord {
    /// The transfer as requested (id, accounts, requested amount, code,
    /// flags, pending id, timeout).
    pub spec: TransferSpec,
    /// The amount that moved or is reserved (a post's posted amount; 0 for `Failed`).
    pub amount: Amount,
    /// State as of `change_seq`.
    pub state: TransferState,
    /// The partition-wide order of stored transfers: 1, 2, 3, … over the
    /// ledger's whole life, assigned when the transfer is stored (0 for
    /// `Failed`). Unique; the cursor of `get_account_transfers` paging.
    pub ledger_seq: u64,
    /// The input that stored the transfer (a linked chain's members share
    /// the input that closed the chain).
    pub created_seq: Seq,
    /// Engine time when it was stored.
    pub created: Timestamp,
    /// The input that last changed this record (== `created_seq` unless a
    /// pending transfer was later posted, voided or expired).
    pub change_seq: Seq,
}

/// Which field a `get_account_transfers` range bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeBy {
    /// `TransferRecord::ledger_seq`.
    LedgerSeq,
    /// `TransferRecord::created` (engine time, ns).
    Time,
}

/// An account's transfers, paged: those with `lo ≤ field ≤ hi`, at most
/// `limit`, oldest first or newest first. To page on, repeat with `lo` (or,
/// newest first, `hi`) moved past the last `ledger_seq` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountFilter {
    /// The account (debit or credit side).
    pub account: AccountId,
    /// Which field `lo`/`hi` bound.
    pub by: RangeBy,
    /// Inclusive lower bound.
    pub lo: u64,
    /// Inclusive upper bound.
    pub hi: u64,
    /// Most records returned (1 ..= `ACCOUNT_TRANSFERS_LIMIT_MAX`).
    pub limit: u32,
    /// Newest (highest `ledger_seq`) first.
    pub newest_first: bool,
}

/// The most records one `get_account_transfers` returns.
pub const ACCOUNT_TRANSFERS_LIMIT_MAX: u32 = 1024;

/// A history that cannot be read or does not verify: the engine cannot
/// answer without it, so this stops the partition (never a wrong answer).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transfer history unusable: {what}")]
pub struct HistoryFault {
    /// What failed, naming the run file and the check.
    pub what: String,
}

/// Read access to installed history runs. Implemented outside the engine
/// (the server's on-disk store) or by [`MemHistory`]-like stores in tests;
/// the engine only calls it for ids and accounts its memory cannot answer.
pub trait TransferHistory: Send + std::fmt::Debug {
    /// The newest record of `id` in installed runs, if any.
    fn get(&self, id: TransferId) -> Result<Option<TransferRecord>, HistoryFault>;

    /// The records of `filter.account` (as debit or credit account) in
    /// installed runs that match the filter's range, in the filter's order
    /// (by `ledger_seq`); calls `each` per record until it returns `false`
    /// or the records run out. Each transfer once, in its newest installed
    /// state; `Failed` records never. (The engine merges these with its
    /// memory, where a newer state of the same transfer may still live.)
    fn account(
        &self,
        filter: &AccountFilter,
        each: &mut dyn FnMut(&TransferRecord) -> bool,
    ) -> Result<(), HistoryFault>;

    /// Whether the run `run` with content checksum `checksum` is installed
    /// (or can be installed now): `InstallHistory` is applied only if so.
    fn has_run(&self, run: u64, checksum: u128) -> Result<bool, HistoryFault>;
}
