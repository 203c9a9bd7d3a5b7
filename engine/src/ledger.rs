//! The double-entry ledger: accounts, transfers (single, linked, two-phase),
//! expiry, and the holds and settlement that trading on the ledger uses.
//!
//! Modelled on TigerBeetle. Invariants (checked by `validate`): per asset,
//! Σ debits = Σ credits, posted and pending; no account with
//! `debits_must_not_exceed_credits` has debits (posted + pending) above its
//! posted credits, and symmetrically for `credits_must_not_exceed_debits`; a
//! transfer id is stored at most once and never changes once stored; a
//! rejected transfer and a failed linked chain change no balance.
//!
//! Holds for open orders are pending debits on the owner's trading account
//! whose counter-side is an internal escrow account per asset (not
//! addressable by commands), so conservation holds for pending amounts too.
//!
//! Capacities (accounts, assets, transfers, linked-chain length) are fixed in
//! `EngineConfig` and allocated in `Ledger::new`; nothing allocates per command.
//! All arithmetic is checked: an overflow is the `overflow` result, never a wrap.

use crate::command::*;
use crate::event::*;
use crate::fixed_map::FixedMap;
use crate::hash::{SetHasher, StateHasher};
use crate::types::*;

pub(crate) const NO_ACCOUNT: u32 = u32::MAX;

/// Faults in a vector's spare capacity without changing its contents: fill
/// it to capacity with copies of a value, then truncate back.
pub(crate) fn touch_vec<T: Clone + Default>(v: &mut Vec<T>) {
    touch_vec_with(v, T::default());
}

/// `touch_vec` with an explicit filler.
pub(crate) fn touch_vec_with<T: Clone>(v: &mut Vec<T>, fill: T) {
    let len = v.len();
    v.resize(v.capacity(), fill);
    v.truncate(len);
}

/// Transfer check precedence, first failure wins (semantics.md convention 11):
///
/// 1. linked-chain outcome (`linked_event_failed`, `linked_event_chain_open`)
/// 2. `id_must_not_be_zero`, then `not_authorized` (the actor may not debit
///    the debit account, or resolve the pending transfer; decided on the
///    accounts and pending transfer that exist, so before `exists*`: an
///    actor cannot learn anything about a transfer it could not have made)
/// 3. `exists_with_different_flags`, `_pending_id`, `_timeout`,
///    `_debit_account`, `_credit_account`, `_amount`, `_code`, then `exists`
/// 4. `id_already_failed`
/// 5. `flags_are_mutually_exclusive`
/// 6. `accounts_must_be_different`
/// 7. `pending_id_must_be_zero` / `pending_id_must_not_be_zero`
/// 8. `timeout_reserved_for_pending_transfer`
/// 9. `amount_must_not_be_zero` (not for post/void: 0 means the full amount)
/// 10. `debit_account_not_found`, `credit_account_not_found`
/// 11. `accounts_must_have_the_same_asset`
/// 12. `pending_transfer_not_found`, `pending_transfer_not_pending`
/// 13. `pending_transfer_has_different_debit_account` / `_credit_account`
/// 14. `exceeds_pending_transfer_amount`
/// 15. `pending_transfer_already_posted` / `_voided` / `_expired`
/// 16. `capacity_exceeded` (transfer store full; after the checks that
///     name a problem with the transfer itself)
/// 17. `overflow`
/// 18. `exceeds_credits`, `exceeds_debits`
pub const TRANSFER_CHECK_ORDER: &[LedgerError] = &[
    LedgerError::LinkedEventFailed,
    LedgerError::LinkedEventChainOpen,
    LedgerError::IdMustNotBeZero,
    LedgerError::NotAuthorized,
    LedgerError::ExistsWithDifferentFlags,
    LedgerError::ExistsWithDifferentPendingId,
    LedgerError::ExistsWithDifferentTimeout,
    LedgerError::ExistsWithDifferentDebitAccountId,
    LedgerError::ExistsWithDifferentCreditAccountId,
    LedgerError::ExistsWithDifferentAmount,
    LedgerError::ExistsWithDifferentCode,
    LedgerError::Exists,
    LedgerError::IdAlreadyFailed,
    LedgerError::FlagsAreMutuallyExclusive,
    LedgerError::AccountsMustBeDifferent,
    LedgerError::PendingIdMustBeZero,
    LedgerError::PendingIdMustNotBeZero,
    LedgerError::TimeoutReservedForPendingTransfer,
    LedgerError::AmountMustNotBeZero,
    LedgerError::DebitAccountNotFound,
    LedgerError::CreditAccountNotFound,
    LedgerError::AccountsMustHaveTheSameAsset,
    LedgerError::PendingTransferNotFound,
    LedgerError::PendingTransferNotPending,
    LedgerError::PendingTransferHasDifferentDebitAccountId,
    LedgerError::PendingTransferHasDifferentCreditAccountId,
    LedgerError::ExceedsPendingTransferAmount,
    LedgerError::PendingTransferAlreadyPosted,
    LedgerError::PendingTransferAlreadyVoided,
    LedgerError::PendingTransferExpired,
    LedgerError::CapacityExceeded,
    LedgerError::Overflow,
    LedgerError::ExceedsCredits,
    LedgerError::ExceedsDebits,
];

/// Whether a retry of the same id should answer `id_already_failed`
/// (convention 12).
pub fn is_transient(e: LedgerError) -> bool {
    matches!(
        e,
        LedgerError::DebitAccountNotFound
            | LedgerError::CreditAccountNotFound
            | LedgerError::PendingTransferNotFound
            | LedgerError::PendingTransferAlreadyPosted
            | LedgerError::PendingTransferAlreadyVoided
            | LedgerError::PendingTransferExpired
            | LedgerError::ExceedsCredits
            | LedgerError::ExceedsDebits
    )
}

/// One account's balances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Account {
    pub(crate) id: AccountId,
    pub(crate) owner: OwnerId,
    pub(crate) asset: u32,
    pub(crate) flags: AccountFlags,
    pub(crate) debits_posted: u128,
    pub(crate) credits_posted: u128,
    pub(crate) debits_pending: u128,
    pub(crate) credits_pending: u128,
}

impl Account {
    /// What a `debits_must_not_exceed_credits` account may still spend.
    pub(crate) fn available(&self) -> u128 {
        self.credits_posted
            .saturating_sub(self.debits_posted)
            .saturating_sub(self.debits_pending)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TState {
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
    /// A post or void record (resolves another transfer).
    Resolution,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Transfer {
    pub(crate) spec: TransferSpec,
    pub(crate) state: TState,
    pub(crate) debit: u32,
    pub(crate) credit: u32,
    /// The amount that moved or is reserved (a post's posted amount).
    pub(crate) amount: u128,
    pub(crate) created: Timestamp,
    pub(crate) deadline: Timestamp,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Undo {
    /// A transfer was stored (always the last one) and moved its amount.
    Created,
    /// A post/void also changed a pending transfer's state.
    Resolved { pending: u32 },
}

/// The ledger of one partition.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(crate) accounts: Vec<Account>,
    pub(crate) account_index: FixedMap<u32>,
    pub(crate) assets: Vec<Asset>,
    pub(crate) asset_index: FixedMap<u32>,
    /// Escrow account slot per asset index (`NO_ACCOUNT` until needed).
    pub(crate) escrow: Vec<u32>,
    /// (owner, asset index) → the owner's trading account slot.
    pub(crate) trading: FixedMap<u32>,
    pub(crate) transfers: Vec<Transfer>,
    pub(crate) transfer_index: FixedMap<u32>,
    pub(crate) failed: FixedMap<()>,
    /// Pending transfers with a deadline: (deadline, slot), lazily deleted.
    pub(crate) expiry: Vec<(Timestamp, u32)>,
    /// Members of the linked chain still open (awaiting its last member).
    pub(crate) chain: Vec<TransferSpec>,
    /// Who issued each member of `chain` (same index).
    pub(crate) chain_actors: Vec<Actor>,
    pub(crate) undo: Vec<Undo>,
    /// Pending transfers the chain being applied created (heap pushes wait for commit).
    pub(crate) chain_pending: Vec<u32>,
}

impl Ledger {
    pub(crate) fn new(cfg: &crate::EngineConfig) -> Self {
        let accounts = cfg.accounts_max as usize + cfg.assets_max as usize;
        let batch = cfg.batch_max.max(1) as usize;
        Ledger {
            accounts: Vec::with_capacity(accounts),
            account_index: FixedMap::with_capacity_grouped(cfg.accounts_max as usize),
            assets: Vec::with_capacity(cfg.assets_max as usize),
            asset_index: FixedMap::with_capacity(cfg.assets_max as usize),
            escrow: Vec::with_capacity(cfg.assets_max as usize),
            trading: FixedMap::with_capacity(cfg.accounts_max as usize),
            transfers: Vec::with_capacity(cfg.transfers_max as usize),
            transfer_index: FixedMap::with_capacity_grouped(cfg.transfers_max as usize),
            failed: FixedMap::with_capacity_grouped(cfg.transfers_max as usize),
            expiry: Vec::with_capacity(cfg.transfers_max as usize),
            chain: Vec::with_capacity(batch),
            chain_actors: Vec::with_capacity(batch),
            undo: Vec::with_capacity(batch),
            chain_pending: Vec::with_capacity(batch),
        }
    }

    /// Touches every page of every table (see `Engine::prefault`).
    pub(crate) fn prefault(&mut self) {
        touch_vec(&mut self.accounts);
        let filler = Transfer {
            spec: TransferSpec {
                id: TransferId(0),
                debit_account: AccountId(0),
                credit_account: AccountId(0),
                amount: Amount(0),
                code: 0,
                flags: TransferFlags(0),
                pending_id: TransferId(0),
                timeout_ns: 0,
            },
            state: TState::Posted,
            debit: 0,
            credit: 0,
            amount: 0,
            created: Timestamp(0),
            deadline: Timestamp(0),
        };
        touch_vec_with(&mut self.transfers, filler);
        touch_vec(&mut self.expiry);
        self.account_index.prefault();
        self.asset_index.prefault();
        self.trading.prefault();
        self.transfer_index.prefault();
        self.failed.prefault();
    }

    // ----- assets, escrow, trading accounts ---------------------------

    fn asset_key(a: &Asset) -> u128 {
        let mut b = [0u8; 16];
        b[..Asset::LEN].copy_from_slice(&a.0);
        u128::from_le_bytes(b)
    }

    pub(crate) fn asset_idx(&self, a: &Asset) -> Option<u32> {
        self.asset_index.get(Self::asset_key(a))
    }

    /// The asset's index, registering it; `None` when the asset table is full.
    fn intern_asset(&mut self, a: &Asset) -> Option<u32> {
        if let Some(i) = self.asset_idx(a) {
            return Some(i);
        }
        if self.assets.len() >= self.assets.capacity() {
            return None;
        }
        let i = self.assets.len() as u32;
        self.assets.push(*a);
        self.escrow.push(NO_ACCOUNT);
        self.asset_index.insert(Self::asset_key(a), i);
        Some(i)
    }

    /// Makes sure both assets and their escrow accounts exist (settling
    /// instruments). `false` when a capacity is full (nothing changed then
    /// that matters: registered assets stay registered).
    pub(crate) fn prepare_escrows(&mut self, assets: [&Asset; 2]) -> bool {
        let free_assets = self.assets.capacity() - self.assets.len();
        let new_assets = assets
            .iter()
            .filter(|a| self.asset_idx(a).is_none())
            .count();
        if new_assets > free_assets {
            return false;
        }
        let mut need = 0;
        for a in assets {
            match self.asset_idx(a) {
                Some(i) if self.escrow[i as usize] != NO_ACCOUNT => {}
                _ => need += 1,
            }
        }
        if self.accounts.len() + need > self.accounts.capacity() {
            return false;
        }
        for a in assets {
            let i = self.intern_asset(a).expect("asset capacity checked");
            if self.escrow[i as usize] == NO_ACCOUNT {
                let slot = self.accounts.len() as u32;
                self.accounts.push(Account {
                    id: AccountId(0),
                    owner: OwnerId(0),
                    asset: i,
                    flags: AccountFlags(0),
                    ..Account::default()
                });
                self.escrow[i as usize] = slot;
            }
        }
        true
    }

    pub(crate) fn escrow_of(&self, asset: u32) -> u32 {
        self.escrow[asset as usize]
    }

    /// The owner's trading account for an asset.
    pub(crate) fn trading_account(&self, owner: OwnerId, asset: u32) -> Option<u32> {
        self.trading.get(((owner.0 as u128) << 32) | asset as u128)
    }

    pub(crate) fn account_slot(&self, id: AccountId) -> Option<u32> {
        self.account_index.get(id.0)
    }

    // ----- accounts ----------------------------------------------------

    pub(crate) fn open_account(&mut self, a: &AccountSpec) -> Result<(), LedgerError> {
        if a.id.0 == 0 {
            return Err(LedgerError::IdMustNotBeZero);
        }
        if self.account_index.contains(a.id.0) {
            return Err(LedgerError::AccountExists);
        }
        let both = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
            | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS;
        if a.flags.0 & !AccountFlags::ALL != 0 || a.flags.0 & both == both {
            return Err(LedgerError::FlagsAreMutuallyExclusive);
        }
        if !a.asset.is_valid() {
            return Err(LedgerError::InvalidAsset);
        }
        if self.account_index.is_full() || self.accounts.len() >= self.accounts.capacity() {
            return Err(LedgerError::CapacityExceeded);
        }
        let Some(asset) = self.intern_asset(&a.asset) else {
            return Err(LedgerError::CapacityExceeded);
        };
        let slot = self.accounts.len() as u32;
        self.accounts.push(Account {
            id: a.id,
            owner: a.owner,
            asset,
            flags: a.flags,
            ..Account::default()
        });
        self.account_index.insert(a.id.0, slot);
        // The first eligible account of an owner in an asset is its trading account.
        if a.owner.0 != 0 && !a.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS) {
            let key = ((a.owner.0 as u128) << 32) | asset as u128;
            if !self.trading.contains(key) {
                self.trading.insert(key, slot);
            }
        }
        Ok(())
    }

    /// Answers a balance query: `account_not_found`, then `not_authorized`
    /// unless the actor owns the account (or is admin), then `balance`.
    pub(crate) fn query_balance(&self, id: AccountId, actor: &Actor, out: &mut Events) {
        let reason = match self.account_slot(id) {
            None => RejectReason::AccountNotFound,
            Some(slot) if !self.may_read(actor, slot) => RejectReason::NotAuthorized,
            Some(_) => {
                return out.push(self.balance_event(id).expect("account found"));
            }
        };
        out.push(Event::Rejected {
            target: RejectTarget::Account(id),
            reason,
        });
    }

    pub(crate) fn balance_event(&self, id: AccountId) -> Option<Event> {
        let a = &self.accounts[self.account_slot(id)? as usize];
        Some(Event::Balance {
            account: id,
            debits_posted: Amount(a.debits_posted),
            credits_posted: Amount(a.credits_posted),
            debits_pending: Amount(a.debits_pending),
            credits_pending: Amount(a.credits_pending),
        })
    }

    // ----- transfers ---------------------------------------------------

    /// One transfer of a batch. Linked members wait until their chain
    /// closes; then the whole chain is decided and reported at once.
    pub(crate) fn handle_transfer(
        &mut self,
        t: &TransferSpec,
        actor: &Actor,
        batch_end: bool,
        now: Timestamp,
        out: &mut Events,
    ) {
        let linked = t.flags.has(TransferFlags::LINKED);
        if linked && !batch_end {
            if self.chain.len() + 1 >= self.chain.capacity() {
                // The chain cannot grow further: it fails as a whole here.
                self.chain_push(t, actor);
                return self.fail_chain(self.chain.len() - 1, LedgerError::CapacityExceeded, out);
            }
            self.chain_push(t, actor);
            return;
        }
        self.chain_push(t, actor);
        if linked {
            // Linked, but the batch ends here: the chain is left open.
            let last = self.chain.len() - 1;
            return self.fail_chain(last, LedgerError::LinkedEventChainOpen, out);
        }
        self.commit_chain(now, out);
    }

    fn chain_push(&mut self, t: &TransferSpec, actor: &Actor) {
        self.chain.push(*t);
        self.chain_actors.push(*actor);
    }

    fn chain_clear(&mut self) {
        self.chain.clear();
        self.chain_actors.clear();
    }

    /// Closes an open chain because something other than a transfer arrived
    /// (the batch ended without its closing member).
    pub(crate) fn close_open_chain(&mut self, out: &mut Events) {
        if !self.chain.is_empty() {
            let last = self.chain.len() - 1;
            self.fail_chain(last, LedgerError::LinkedEventChainOpen, out);
        }
    }

    fn fail_chain(&mut self, failed: usize, code: LedgerError, out: &mut Events) {
        for (i, t) in self.chain.iter().enumerate() {
            out.push(Event::TransferRejected {
                id: t.id,
                reason: if i == failed {
                    code
                } else {
                    LedgerError::LinkedEventFailed
                },
            });
        }
        self.chain_clear();
    }

    fn commit_chain(&mut self, now: Timestamp, out: &mut Events) {
        self.undo.clear();
        self.chain_pending.clear();
        let mut failure = None;
        for i in 0..self.chain.len() {
            let (t, actor) = (self.chain[i], self.chain_actors[i]);
            if let Err(e) = self.create_transfer(&t, &actor, now) {
                failure = Some((i, e));
                break;
            }
        }
        match failure {
            None => {
                for t in &self.chain {
                    out.push(Event::TransferOk { id: t.id });
                }
                for k in 0..self.chain_pending.len() {
                    let slot = self.chain_pending[k];
                    let deadline = self.transfers[slot as usize].deadline;
                    self.expiry_push(deadline, slot);
                }
            }
            Some((k, e)) => {
                while let Some(u) = self.undo.pop() {
                    self.rollback(u);
                }
                let t = self.chain[k];
                if is_transient(e) && !self.failed.contains(t.id.0) {
                    // A full table only loses the id_already_failed memory,
                    // never a balance: the transfer itself was refused.
                    let _ = self.failed.insert(t.id.0, ());
                }
                self.fail_chain(k, e, out);
                return;
            }
        }
        self.chain_clear();
    }

    fn rollback(&mut self, u: Undo) {
        let t = self.transfers.pop().expect("undo log out of step");
        self.transfer_index.remove(t.spec.id.0);
        let (d, c) = (t.debit as usize, t.credit as usize);
        match u {
            Undo::Created => match t.state {
                TState::Posted => {
                    self.accounts[d].debits_posted -= t.amount;
                    self.accounts[c].credits_posted -= t.amount;
                }
                TState::Pending => {
                    self.accounts[d].debits_pending -= t.amount;
                    self.accounts[c].credits_pending -= t.amount;
                }
                s => panic!("undo of a created transfer in state {s:?}"),
            },
            Undo::Resolved { pending } => {
                let p = self.transfers[pending as usize];
                self.accounts[d].debits_pending += p.amount;
                self.accounts[c].credits_pending += p.amount;
                if t.spec.flags.has(TransferFlags::POST_PENDING) {
                    self.accounts[d].debits_posted -= t.amount;
                    self.accounts[c].credits_posted -= t.amount;
                }
                self.transfers[pending as usize].state = TState::Pending;
            }
        }
    }

    /// Checks and applies one transfer; on success pushes its undo record.
    fn create_transfer(
        &mut self,
        t: &TransferSpec,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        use LedgerError as E;
        if t.id.0 == 0 {
            return Err(E::IdMustNotBeZero);
        }
        if !self.authorized(t, actor) {
            return Err(E::NotAuthorized);
        }
        if let Some(slot) = self.transfer_index.get(t.id.0) {
            let s = &self.transfers[slot as usize].spec;
            return Err(if s.flags != t.flags {
                E::ExistsWithDifferentFlags
            } else if s.pending_id != t.pending_id {
                E::ExistsWithDifferentPendingId
            } else if s.timeout_ns != t.timeout_ns {
                E::ExistsWithDifferentTimeout
            } else if s.debit_account != t.debit_account {
                E::ExistsWithDifferentDebitAccountId
            } else if s.credit_account != t.credit_account {
                E::ExistsWithDifferentCreditAccountId
            } else if s.amount != t.amount {
                E::ExistsWithDifferentAmount
            } else if s.code != t.code {
                E::ExistsWithDifferentCode
            } else {
                E::Exists
            });
        }
        if !self.failed.is_empty() && self.failed.contains(t.id.0) {
            return Err(E::IdAlreadyFailed);
        }
        let f = t.flags;
        let pending = f.has(TransferFlags::PENDING);
        let post = f.has(TransferFlags::POST_PENDING);
        let void = f.has(TransferFlags::VOID_PENDING);
        if f.0 & !TransferFlags::ALL != 0 || (pending as u8 + post as u8 + void as u8) > 1 {
            return Err(E::FlagsAreMutuallyExclusive);
        }
        let resolves = post || void;
        if resolves {
            if t.debit_account.0 != 0 && t.debit_account == t.credit_account {
                return Err(E::AccountsMustBeDifferent);
            }
        } else if t.debit_account == t.credit_account {
            return Err(E::AccountsMustBeDifferent);
        }
        if !resolves && t.pending_id.0 != 0 {
            return Err(E::PendingIdMustBeZero);
        }
        if resolves && t.pending_id.0 == 0 {
            return Err(E::PendingIdMustNotBeZero);
        }
        if !pending && t.timeout_ns != 0 {
            return Err(E::TimeoutReservedForPendingTransfer);
        }
        if !resolves && t.amount.0 == 0 {
            return Err(E::AmountMustNotBeZero);
        }
        let debit = self.account_slot(t.debit_account);
        let credit = self.account_slot(t.credit_account);
        if debit.is_none() && (!resolves || t.debit_account.0 != 0) {
            return Err(E::DebitAccountNotFound);
        }
        if credit.is_none() && (!resolves || t.credit_account.0 != 0) {
            return Err(E::CreditAccountNotFound);
        }
        if let (Some(d), Some(c)) = (debit, credit) {
            if self.accounts[d as usize].asset != self.accounts[c as usize].asset {
                return Err(E::AccountsMustHaveTheSameAsset);
            }
        }
        if !resolves {
            let (d, c) = (debit.unwrap(), credit.unwrap());
            if self.store_full() {
                return Err(E::CapacityExceeded);
            }
            // A deadline beyond u64 is an overflow (TigerBeetle: overflows_timeout).
            let deadline = if pending && t.timeout_ns > 0 {
                match now.0.checked_add(t.timeout_ns) {
                    Some(d) => Timestamp(d),
                    None => return Err(E::Overflow),
                }
            } else {
                Timestamp(u64::MAX) // unused: only transfers with a timeout enter the expiry heap
            };
            let amount = t.amount.0;
            let (da, ca) = (&self.accounts[d as usize], &self.accounts[c as usize]);
            let (d_new, c_new) = if pending {
                (
                    da.debits_pending.checked_add(amount),
                    ca.credits_pending.checked_add(amount),
                )
            } else {
                (
                    da.debits_posted.checked_add(amount),
                    ca.credits_posted.checked_add(amount),
                )
            };
            let (Some(_), Some(_)) = (d_new, c_new) else {
                return Err(E::Overflow);
            };
            let d_total = da
                .debits_posted
                .checked_add(da.debits_pending)
                .and_then(|x| x.checked_add(amount));
            let c_total = ca
                .credits_posted
                .checked_add(ca.credits_pending)
                .and_then(|x| x.checked_add(amount));
            let (Some(d_total), Some(c_total)) = (d_total, c_total) else {
                return Err(E::Overflow);
            };
            if da.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
                && d_total > da.credits_posted
            {
                return Err(E::ExceedsCredits);
            }
            if ca.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
                && c_total > ca.debits_posted
            {
                return Err(E::ExceedsDebits);
            }
            if pending {
                self.accounts[d as usize].debits_pending += amount;
                self.accounts[c as usize].credits_pending += amount;
            } else {
                self.accounts[d as usize].debits_posted += amount;
                self.accounts[c as usize].credits_posted += amount;
            }
            let slot = self.store(Transfer {
                spec: *t,
                state: if pending {
                    TState::Pending
                } else {
                    TState::Posted
                },
                debit: d,
                credit: c,
                amount,
                created: now,
                deadline,
            });
            if pending && t.timeout_ns > 0 {
                self.chain_pending.push(slot);
            }
            self.undo.push(Undo::Created);
            return Ok(());
        }
        // Post or void of a pending transfer.
        let Some(ps) = self.transfer_index.get(t.pending_id.0) else {
            return Err(E::PendingTransferNotFound);
        };
        let p = self.transfers[ps as usize];
        if !p.spec.flags.has(TransferFlags::PENDING) {
            return Err(E::PendingTransferNotPending);
        }
        if t.debit_account.0 != 0 && t.debit_account != p.spec.debit_account {
            return Err(E::PendingTransferHasDifferentDebitAccountId);
        }
        if t.credit_account.0 != 0 && t.credit_account != p.spec.credit_account {
            return Err(E::PendingTransferHasDifferentCreditAccountId);
        }
        if t.amount.0 > p.amount {
            return Err(E::ExceedsPendingTransferAmount);
        }
        match p.state {
            TState::Pending => {}
            TState::PendingPosted => return Err(E::PendingTransferAlreadyPosted),
            TState::PendingVoided => return Err(E::PendingTransferAlreadyVoided),
            TState::PendingExpired => return Err(E::PendingTransferExpired),
            s => panic!("pending-flagged transfer in state {s:?}"),
        }
        if self.store_full() {
            return Err(E::CapacityExceeded);
        }
        let amount = if post {
            if t.amount.0 == 0 {
                p.amount
            } else {
                t.amount.0
            }
        } else {
            p.amount
        };
        let (d, c) = (p.debit as usize, p.credit as usize);
        if post {
            let (da, ca) = (&self.accounts[d], &self.accounts[c]);
            if da.debits_posted.checked_add(amount).is_none()
                || ca.credits_posted.checked_add(amount).is_none()
            {
                return Err(E::Overflow);
            }
        }
        // Moving pending to posted never raises a total: no limit can break here.
        self.accounts[d].debits_pending -= p.amount;
        self.accounts[c].credits_pending -= p.amount;
        if post {
            self.accounts[d].debits_posted += amount;
            self.accounts[c].credits_posted += amount;
        }
        self.transfers[ps as usize].state = if post {
            TState::PendingPosted
        } else {
            TState::PendingVoided
        };
        self.store(Transfer {
            spec: *t,
            state: TState::Resolution,
            debit: p.debit,
            credit: p.credit,
            amount,
            created: now,
            deadline: Timestamp(u64::MAX),
        });
        self.undo.push(Undo::Resolved { pending: ps });
        Ok(())
    }

    // ----- authorization -------------------------------------------------

    /// Whether `actor` may debit the account in `slot`: it is one of the
    /// actor's owners' accounts and has `debits_must_not_exceed_credits`
    /// (an account without it — issuer, omnibus, credit line — can be
    /// drawn on without limit, so only an admin may debit it).
    fn may_debit(&self, actor: &Actor, slot: u32) -> bool {
        let a = &self.accounts[slot as usize];
        matches!(actor, Actor::Admin)
            || (actor.acts_for(a.owner)
                && a.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS))
    }

    /// Whether `actor` may read the account in `slot`.
    pub(crate) fn may_read(&self, actor: &Actor, slot: u32) -> bool {
        actor.acts_for(self.accounts[slot as usize].owner)
    }

    /// The `not_authorized` check (ARCHITECTURE.md, "Ledger authorization").
    /// A new transfer needs the right to debit its debit account; a post
    /// needs the right to debit the resolved transfer's debit account (the
    /// payer releases the money); a void needs that or ownership of its
    /// credit account (the payee may refuse it). Accounts and transfers that
    /// do not exist pass here and are reported later by their own codes.
    fn authorized(&self, t: &TransferSpec, actor: &Actor) -> bool {
        if matches!(actor, Actor::Admin) {
            return true;
        }
        let post = t.flags.has(TransferFlags::POST_PENDING);
        let void = t.flags.has(TransferFlags::VOID_PENDING);
        if !(post || void) {
            return self
                .account_slot(t.debit_account)
                .is_none_or(|d| self.may_debit(actor, d));
        }
        let Some(ps) = self.transfer_index.get(t.pending_id.0) else {
            return true;
        };
        let p = &self.transfers[ps as usize];
        self.may_debit(actor, p.debit)
            || (!post && actor.acts_for(self.accounts[p.credit as usize].owner))
    }

    fn store_full(&self) -> bool {
        self.transfers.len() >= self.transfers.capacity() || self.transfer_index.is_full()
    }

    fn store(&mut self, t: Transfer) -> u32 {
        let slot = self.transfers.len() as u32;
        self.transfers.push(t);
        let ok = self.transfer_index.insert(t.spec.id.0, slot);
        assert!(ok, "transfer index checked before store");
        slot
    }

    // ----- expiry of pending transfers --------------------------------

    fn expiry_push(&mut self, deadline: Timestamp, slot: u32) {
        assert!(
            self.expiry.len() < self.expiry.capacity(),
            "expiry heap sized to transfers_max"
        );
        self.expiry.push((deadline, slot));
        let mut i = self.expiry.len() - 1;
        while i > 0 {
            let p = (i - 1) / 2;
            if self.expiry[i] < self.expiry[p] {
                self.expiry.swap(i, p);
                i = p;
            } else {
                break;
            }
        }
    }

    fn expiry_pop(&mut self) -> Option<(Timestamp, u32)> {
        if self.expiry.is_empty() {
            return None;
        }
        let top = self.expiry.swap_remove(0);
        let n = self.expiry.len();
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && self.expiry[l] < self.expiry[m] {
                m = l;
            }
            if r < n && self.expiry[r] < self.expiry[m] {
                m = r;
            }
            if m == i {
                break;
            }
            self.expiry.swap(i, m);
            i = m;
        }
        Some(top)
    }

    /// The earliest pending-transfer deadline (possibly of one already
    /// resolved: entries are deleted lazily, so this may fire a harmless tick).
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.expiry.first().map(|&(d, _)| d)
    }

    /// Expires pending transfers whose deadline ≤ now, by deadline then
    /// creation (slots are in creation order).
    pub(crate) fn expire(&mut self, now: Timestamp, out: &mut Events) {
        while let Some(&(deadline, _)) = self.expiry.first() {
            if deadline > now {
                break;
            }
            let (_, slot) = self.expiry_pop().expect("non-empty");
            let t = self.transfers[slot as usize];
            if t.state != TState::Pending {
                continue; // resolved before its deadline
            }
            self.accounts[t.debit as usize].debits_pending -= t.amount;
            self.accounts[t.credit as usize].credits_pending -= t.amount;
            self.transfers[slot as usize].state = TState::PendingExpired;
            out.push(Event::TransferExpired { id: t.spec.id });
        }
    }

    // ----- holds and settlement (used by the matching engine) ----------

    /// Adds `amount` to a hold: pending debit on `acct`, pending credit on
    /// the asset's escrow.
    pub(crate) fn hold_add(&mut self, acct: u32, amount: u128) {
        if amount == 0 {
            return;
        }
        let esc = self.escrow_of(self.accounts[acct as usize].asset);
        let a = &mut self.accounts[acct as usize];
        a.debits_pending = a.debits_pending.checked_add(amount).expect("hold overflow");
        let e = &mut self.accounts[esc as usize];
        e.credits_pending = e
            .credits_pending
            .checked_add(amount)
            .expect("escrow overflow");
    }

    /// Releases `amount` of a hold.
    pub(crate) fn hold_release(&mut self, acct: u32, amount: u128) {
        if amount == 0 {
            return;
        }
        let esc = self.escrow_of(self.accounts[acct as usize].asset);
        let a = &mut self.accounts[acct as usize];
        a.debits_pending = a
            .debits_pending
            .checked_sub(amount)
            .expect("hold underflow");
        let e = &mut self.accounts[esc as usize];
        e.credits_pending = e
            .credits_pending
            .checked_sub(amount)
            .expect("escrow underflow");
    }

    /// Posts `amount` from one account to another; a transfer from an account
    /// to itself moves nothing (convention 19).
    pub(crate) fn post(&mut self, from: u32, to: u32, amount: u128) {
        if amount == 0 || from == to {
            return;
        }
        let a = &mut self.accounts[from as usize];
        a.debits_posted = a
            .debits_posted
            .checked_add(amount)
            .expect("settlement overflow");
        let b = &mut self.accounts[to as usize];
        b.credits_posted = b
            .credits_posted
            .checked_add(amount)
            .expect("settlement overflow");
    }

    // ----- state hash and invariants ------------------------------------

    pub(crate) fn hash_into(&self, h: &mut StateHasher) {
        h.bytes(b"ledger");
        h.u64(self.assets.len() as u64);
        for a in &self.assets {
            h.bytes(&a.0);
        }
        h.u64(self.accounts.len() as u64);
        for a in &self.accounts {
            h.u128(a.id.0);
            h.u64(a.owner.0);
            h.u64(a.asset as u64);
            h.u64(a.flags.0 as u64);
            h.u128(a.debits_posted);
            h.u128(a.credits_posted);
            h.u128(a.debits_pending);
            h.u128(a.credits_pending);
        }
        h.u64(self.transfers.len() as u64);
        for t in &self.transfers {
            let s = &t.spec;
            h.u128(s.id.0);
            h.u128(s.debit_account.0);
            h.u128(s.credit_account.0);
            h.u128(s.amount.0);
            h.u64(s.code as u64 | (s.flags.0 as u64) << 16 | (t.state as u64) << 32);
            h.u128(s.pending_id.0);
            h.u64(s.timeout_ns);
            h.u128(t.amount);
            h.u64(t.created.0);
            h.u64(t.deadline.0);
        }
        let mut failed = SetHasher::default();
        for (k, ()) in self.failed.iter() {
            failed.add(&[k]);
        }
        h.u128(failed.value());
        h.u64(self.chain.len() as u64);
        for a in &self.chain_actors {
            hash_actor(h, a);
        }
        for s in &self.chain {
            h.u128(s.id.0);
            h.u128(s.debit_account.0);
            h.u128(s.credit_account.0);
            h.u128(s.amount.0);
            h.u64(s.code as u64 | (s.flags.0 as u64) << 16);
            h.u128(s.pending_id.0);
            h.u64(s.timeout_ns);
        }
    }

    /// Conservation and balance limits; `holds[slot]` is what open orders
    /// hold on each account (computed by the engine from its orders).
    pub(crate) fn validate(&self, holds: &[u128]) -> Result<(), String> {
        let n = self.assets.len();
        let mut sums = vec![[0u128; 4]; n];
        let mut pending_out: Vec<u128> = (0..self.accounts.len())
            .map(|i| holds.get(i).copied().unwrap_or(0))
            .collect();
        let mut pending_in = vec![0u128; self.accounts.len()];
        let add = |x: &mut u128, v: u128| -> Result<(), String> {
            *x = x.checked_add(v).ok_or("balance sums overflow")?;
            Ok(())
        };
        for t in &self.transfers {
            if t.state == TState::Pending {
                add(&mut pending_out[t.debit as usize], t.amount)?;
                add(&mut pending_in[t.credit as usize], t.amount)?;
            }
        }
        // An escrow's pending credits mirror the holds in its asset.
        for (slot, a) in self.accounts.iter().enumerate() {
            let esc = self.escrow[a.asset as usize];
            if esc != NO_ACCOUNT {
                add(
                    &mut pending_in[esc as usize],
                    holds.get(slot).copied().unwrap_or(0),
                )?;
            } else if holds.get(slot).copied().unwrap_or(0) != 0 {
                return Err(format!("account {}: holds without an escrow", a.id));
            }
        }
        for (slot, a) in self.accounts.iter().enumerate() {
            // Per-asset sums may legitimately pass u128 across many accounts:
            // compare them modulo 2^128.
            let s = &mut sums[a.asset as usize];
            s[0] = s[0].wrapping_add(a.debits_posted);
            s[1] = s[1].wrapping_add(a.credits_posted);
            s[2] = s[2].wrapping_add(a.debits_pending);
            s[3] = s[3].wrapping_add(a.credits_pending);
            if a.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
                && a.debits_posted
                    .checked_add(a.debits_pending)
                    .is_none_or(|d| d > a.credits_posted)
            {
                return Err(format!("account {}: debits exceed credits", a.id));
            }
            if a.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
                && a.credits_posted
                    .checked_add(a.credits_pending)
                    .is_none_or(|c| c > a.debits_posted)
            {
                return Err(format!("account {}: credits exceed debits", a.id));
            }
            if a.debits_pending != pending_out[slot] || a.credits_pending != pending_in[slot] {
                return Err(format!(
                    "account {} (slot {slot}): pending {}/{} but holds and transfers say {}/{}",
                    a.id, a.debits_pending, a.credits_pending, pending_out[slot], pending_in[slot]
                ));
            }
        }
        for t in &self.transfers {
            if self
                .transfer_index
                .get(t.spec.id.0)
                .map(|s| self.transfers[s as usize].spec.id)
                != Some(t.spec.id)
            {
                return Err(format!("transfer {} not indexed", t.spec.id));
            }
        }
        Ok(())
    }

    pub(crate) fn accounts_len(&self) -> usize {
        self.accounts.len()
    }
}

/// Feeds an actor into the state hash (admin and an empty owner set differ).
fn hash_actor(h: &mut StateHasher, a: &Actor) {
    match a {
        Actor::Admin => h.u64(u64::MAX),
        Actor::Owners(set) => {
            h.u64(set.as_slice().len() as u64);
            for o in set.as_slice() {
                h.u64(o.0);
            }
        }
    }
}
