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
//! Transfers live in the hot store (`transfers.rs`): pending transfers and
//! every record no installed history run covers yet, plus whatever eviction
//! has not reached. Older records are answered by the attached history
//! (`ledger_history.rs`), so a transfer id is applied at most once however
//! old it is. Every stored or changed record is published on
//! `Events::changes` (rolled-back chain members never are).
//!
//! Capacities (accounts, assets, transfers in memory, linked-chain length)
//! are fixed in `EngineConfig` and allocated in `Ledger::new`; nothing
//! allocates per command. All arithmetic is checked: an overflow is the
//! `overflow` result, never a wrap.

use crate::command::*;
use crate::event::*;
use crate::fixed_map::FixedMap;
use crate::hash::StateHasher;
use crate::ledger_history::{record_hash, Found};
use crate::types::*;
use crate::BrokenInvariant;

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
/// 16. `capacity_exceeded` (transfer memory full of records that may not
///     leave yet: pending, or not covered by an installed history run; after
///     the checks that name a problem with the transfer itself)
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

pub(crate) use crate::history::TransferState as TState;
use crate::history::{TransferHistory, TransferRecord};
pub(crate) use crate::transfers::Transfer;
use crate::transfers::{HotStore, NIL};

/// What a linked chain did, in order, so that a failure undoes exactly it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Undo {
    /// A transfer was stored in `slot` and moved (or reserved) its amount.
    Created { slot: u32 },
    /// A post/void stored in `slot` resolved the pending transfer in
    /// `pending`, whose `change_seq` was `was` before.
    Resolved { slot: u32, pending: u32, was: Seq },
}

/// Ring entries looked at per published change: eviction keeps pace with
/// storing without ever making one input long.
pub(crate) const EVICT_PER_CHANGE: usize = 4;
/// Ring entries looked at when a store needs a slot and none is free.
pub(crate) const EVICT_ON_DEMAND: usize = 64;
/// Ring entries looked at when a run is installed.
pub(crate) const EVICT_ON_INSTALL: usize = 4096;

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
    /// Transfers and failed ids in memory (`transfers.rs`).
    pub(crate) hot: HotStore,
    /// Installed history runs beyond memory (none attached: nothing installs).
    pub(crate) history: Option<Box<dyn TransferHistory>>,
    /// The last installed run: (run, through_seq, checksum).
    pub(crate) installed: Option<(u64, Seq, u128)>,
    /// The last `ledger_seq` handed out.
    pub(crate) ledger_seq: u64,
    /// Commutative hash of every record ever (newest version each), in
    /// memory or in history: the state hash does not depend on where a
    /// record lives.
    pub(crate) records_hash: u128,
    /// Most pending transfers one input expires (the rest on the next).
    pub(crate) expire_max: usize,
    /// Members of the linked chain still open (awaiting its last member).
    pub(crate) chain: Vec<TransferSpec>,
    /// Who issued each member of `chain` (same index).
    pub(crate) chain_actors: Vec<Actor>,
    pub(crate) undo: Vec<Undo>,
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
            hot: HotStore::new(cfg.transfers_max as usize, accounts),
            history: None,
            installed: None,
            ledger_seq: 0,
            records_hash: 0,
            expire_max: (cfg.events_max as usize / 2).max(1),
            chain: Vec::with_capacity(batch),
            chain_actors: Vec::with_capacity(batch),
            undo: Vec::with_capacity(batch),
        }
    }

    /// Most transfer changes one input publishes: the expiries it runs, a
    /// chain's records and the pending transfers it resolves, one failed id.
    pub(crate) fn changes_max(&self) -> usize {
        self.expire_max + 2 * self.chain.capacity() + 1
    }

    /// Touches every page of every table (see `Engine::prefault`).
    pub(crate) fn prefault(&mut self) {
        touch_vec(&mut self.accounts);
        self.hot.prefault();
        self.account_index.prefault();
        self.asset_index.prefault();
        self.trading.prefault();
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
        at: (Seq, Timestamp),
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
        self.commit_chain(at, out);
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

    fn commit_chain(&mut self, at: (Seq, Timestamp), out: &mut Events) {
        self.undo.clear();
        let mut failure = None;
        for i in 0..self.chain.len() {
            let (t, actor) = (self.chain[i], self.chain_actors[i]);
            if let Err(e) = self.create_transfer(&t, &actor, at) {
                failure = Some((i, e));
                break;
            }
        }
        let Some((k, e)) = failure else {
            for t in &self.chain {
                out.push(Event::TransferOk { id: t.id });
            }
            for k in 0..self.undo.len() {
                self.publish_undo(self.undo[k], at.0, out);
            }
            return self.chain_clear();
        };
        while let Some(u) = self.undo.pop() {
            self.rollback(u);
        }
        let t = self.chain[k];
        if is_transient(e) {
            self.remember_failed(&t, e, at, out);
        }
        self.fail_chain(k, e, out);
    }

    /// Publishes what one committed chain step stored or changed: the new
    /// records go to the outbox and the eviction ring, a pending transfer
    /// with a timeout that is still pending enters the expiry heap, a
    /// resolved one leaves it.
    fn publish_undo(&mut self, u: Undo, seq: Seq, out: &mut Events) {
        match u {
            Undo::Created { slot } => {
                let t = &self.hot.slots[slot as usize];
                if t.rec.state == TState::Pending && t.rec.spec.timeout_ns > 0 {
                    self.hot.heap_push(slot);
                }
                self.publish(slot, None, out);
            }
            Undo::Resolved { slot, pending, was } => {
                self.publish(slot, None, out);
                // A pending transfer created by this same chain was published
                // (in its final state) by its own `Created` step.
                if self.hot.slots[pending as usize].rec.created_seq != seq {
                    self.hot.heap_remove(pending);
                    self.publish(pending, Some(was), out);
                }
            }
        }
    }

    /// Hands a slot's record to the history writer and the eviction ring,
    /// and keeps the records hash. `resolved`: the record was pending (as
    /// published then, with this `change_seq`) and this input resolved or
    /// expired it, so that version's term leaves the records hash — only a
    /// pending record is ever replaced, and nothing else in it changes. Its
    /// term is remembered when published (`HotStore::pending_hashes`), so
    /// the old version is rebuilt and hashed again only when that entry is
    /// missing (a restored snapshot).
    fn publish(&mut self, slot: u32, resolved: Option<Seq>, out: &mut Events) {
        let rec = &self.hot.slots[slot as usize].rec;
        let (term, pending) = (record_hash(rec), rec.state == TState::Pending);
        let (ledger_seq, change_seq) = (rec.ledger_seq, rec.change_seq);
        out.push_change(*rec);
        if pending {
            self.hot.set_pending_hash(slot, ledger_seq, term);
        }
        if let Some(was) = resolved {
            let old = || TransferRecord {
                state: TState::Pending,
                change_seq: was,
                ..self.hot.slots[slot as usize].rec
            };
            let term = match self.hot.pending_hash(slot, ledger_seq) {
                Some(t) => {
                    debug_assert_eq!(t, record_hash(&old()), "stale pending hash");
                    t
                }
                None => record_hash(&old()),
            };
            self.records_hash = self.records_hash.wrapping_sub(term);
        }
        self.records_hash = self.records_hash.wrapping_add(term);
        self.hot.ring_push(slot, change_seq);
        self.evict_some(EVICT_PER_CHANGE);
    }

    /// Remembers an id that failed for a transient cause (convention 12).
    /// A store full of records that may not leave yet only loses this
    /// memory, never a balance: the transfer itself was refused.
    fn remember_failed(
        &mut self,
        t: &TransferSpec,
        e: LedgerError,
        (seq, now): (Seq, Timestamp),
        out: &mut Events,
    ) {
        if !self.reserve_slot() {
            return;
        }
        let rec = TransferRecord {
            spec: *t,
            debit_account: t.debit_account,
            credit_account: t.credit_account,
            amount: Amount(0),
            state: TState::Failed(e),
            ledger_seq: 0,
            created_seq: seq,
            created: now,
            change_seq: seq,
        };
        let slot = self
            .hot
            .alloc(Transfer::new(rec, NIL, NIL, Timestamp(u64::MAX)))
            .expect("slot reserved");
        self.publish(slot, None, out);
    }

    fn rollback(&mut self, u: Undo) {
        let slot = match u {
            Undo::Created { slot } | Undo::Resolved { slot, .. } => slot,
        };
        let t = self.hot.slots[slot as usize];
        let (d, c) = (t.debit as usize, t.credit as usize);
        let amount = t.rec.amount.0;
        match u {
            Undo::Created { .. } => match t.rec.state {
                TState::Posted => {
                    self.accounts[d].debits_posted -= amount;
                    self.accounts[c].credits_posted -= amount;
                }
                TState::Pending => {
                    self.accounts[d].debits_pending -= amount;
                    self.accounts[c].credits_pending -= amount;
                }
                s => panic!("undo of a created transfer in state {s:?}"),
            },
            Undo::Resolved { pending, was, .. } => {
                let p = &mut self.hot.slots[pending as usize];
                p.rec.state = TState::Pending;
                p.rec.change_seq = was;
                let reserved = p.rec.amount.0;
                self.accounts[d].debits_pending += reserved;
                self.accounts[c].credits_pending += reserved;
                if t.rec.spec.flags.has(TransferFlags::POST_PENDING) {
                    self.accounts[d].debits_posted -= amount;
                    self.accounts[c].credits_posted -= amount;
                }
            }
        }
        assert_eq!(t.rec.ledger_seq, self.ledger_seq, "undo out of step");
        self.ledger_seq -= 1;
        self.hot.unlink(slot);
        self.hot.release(slot);
    }

    /// The `exists*` answer for a retry `t` of the stored transfer `s`.
    fn exists_code(s: &TransferSpec, t: &TransferSpec) -> LedgerError {
        use LedgerError as E;
        if s.flags != t.flags {
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
        }
    }

    /// The checks every transfer shares before its accounts are looked at
    /// (steps 2–9 of `TRANSFER_CHECK_ORDER`).
    fn check_fields(&self, t: &TransferSpec, actor: &Actor) -> Result<(), LedgerError> {
        use LedgerError as E;
        if t.id.0 == 0 {
            return Err(E::IdMustNotBeZero);
        }
        if !self.authorized(t, actor) {
            return Err(E::NotAuthorized);
        }
        if let Some(f) = self.find(t.id) {
            let r = self.found_record(&f);
            return Err(match r.state {
                TState::Failed(_) => E::IdAlreadyFailed,
                _ => Self::exists_code(&r.spec, t),
            });
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
        Ok(())
    }

    /// Checks and applies one transfer; on success pushes its undo record.
    fn create_transfer(
        &mut self,
        t: &TransferSpec,
        actor: &Actor,
        at: (Seq, Timestamp),
    ) -> Result<(), LedgerError> {
        use LedgerError as E;
        self.check_fields(t, actor)?;
        let resolves = t
            .flags
            .has(TransferFlags::POST_PENDING | TransferFlags::VOID_PENDING);
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
        match (debit, credit) {
            (Some(d), Some(c)) if !resolves => self.create_plain(t, d, c, at),
            _ => self.resolve_pending(t, at),
        }
    }

    /// A plain or pending transfer between two existing accounts.
    fn create_plain(
        &mut self,
        t: &TransferSpec,
        d: u32,
        c: u32,
        (seq, now): (Seq, Timestamp),
    ) -> Result<(), LedgerError> {
        use LedgerError as E;
        let pending = t.flags.has(TransferFlags::PENDING);
        if !self.reserve_slot() {
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
        if da.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS) && d_total > da.credits_posted
        {
            return Err(E::ExceedsCredits);
        }
        if ca.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS) && c_total > ca.debits_posted
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
        let state = if pending {
            TState::Pending
        } else {
            TState::Posted
        };
        let slot = self.store(t, (d, c), amount, state, (seq, now), deadline);
        self.undo.push(Undo::Created { slot });
        Ok(())
    }

    /// Checks 12–15 of `TRANSFER_CHECK_ORDER` for a post or void `t` of the
    /// record `p` its `pending_id` names.
    fn check_pending(t: &TransferSpec, p: &TransferRecord) -> Result<(), LedgerError> {
        use LedgerError as E;
        if matches!(p.state, TState::Failed(_)) {
            // A remembered failure is not a transfer.
            return Err(E::PendingTransferNotFound);
        }
        if !p.spec.flags.has(TransferFlags::PENDING) {
            return Err(E::PendingTransferNotPending);
        }
        if t.debit_account.0 != 0 && t.debit_account != p.debit_account {
            return Err(E::PendingTransferHasDifferentDebitAccountId);
        }
        if t.credit_account.0 != 0 && t.credit_account != p.credit_account {
            return Err(E::PendingTransferHasDifferentCreditAccountId);
        }
        if t.amount.0 > p.amount.0 {
            return Err(E::ExceedsPendingTransferAmount);
        }
        match p.state {
            TState::Pending => Ok(()),
            TState::PendingPosted => Err(E::PendingTransferAlreadyPosted),
            TState::PendingVoided => Err(E::PendingTransferAlreadyVoided),
            TState::PendingExpired => Err(E::PendingTransferExpired),
            s => panic!("pending-flagged transfer in state {s:?}"),
        }
    }

    /// Post or void of a pending transfer.
    fn resolve_pending(
        &mut self,
        t: &TransferSpec,
        (seq, now): (Seq, Timestamp),
    ) -> Result<(), LedgerError> {
        use LedgerError as E;
        let post = t.flags.has(TransferFlags::POST_PENDING);
        let Some(found) = self.find(t.pending_id) else {
            return Err(E::PendingTransferNotFound);
        };
        // Checked in place: copies of the 192-byte record showed in the profile.
        let (ps, reserved) = match &found {
            Found::Hot(ps) => {
                let p = &self.hot.slots[*ps as usize].rec;
                Self::check_pending(t, p)?;
                (*ps, p.amount.0)
            }
            Found::Cold(p) => {
                Self::check_pending(t, p)?;
                panic!("pending transfer {} only in history", p.spec.id)
            }
        };
        let pt = &self.hot.slots[ps as usize];
        let (d, c) = (pt.debit, pt.credit);
        if pt.rec.spec.timeout_ns > 0 && pt.deadline <= now {
            // Past its deadline, its expiry merely not run yet (bounded per input).
            return Err(E::PendingTransferExpired);
        }
        if !self.reserve_slot() {
            return Err(E::CapacityExceeded);
        }
        let amount = if post && t.amount.0 != 0 {
            t.amount.0
        } else {
            reserved
        };
        let (d, c) = (d as usize, c as usize);
        if post {
            let (da, ca) = (&self.accounts[d], &self.accounts[c]);
            if da.debits_posted.checked_add(amount).is_none()
                || ca.credits_posted.checked_add(amount).is_none()
            {
                return Err(E::Overflow);
            }
        }
        // Moving pending to posted never raises a total: no limit can break here.
        self.accounts[d].debits_pending -= reserved;
        self.accounts[c].credits_pending -= reserved;
        if post {
            self.accounts[d].debits_posted += amount;
            self.accounts[c].credits_posted += amount;
        }
        let pr = &mut self.hot.slots[ps as usize].rec;
        let was = pr.change_seq;
        pr.state = if post {
            TState::PendingPosted
        } else {
            TState::PendingVoided
        };
        pr.change_seq = seq;
        let slot = self.store(
            t,
            (d as u32, c as u32),
            amount,
            TState::Resolution,
            (seq, now),
            Timestamp(u64::MAX),
        );
        self.undo.push(Undo::Resolved {
            slot,
            pending: ps,
            was,
        });
        Ok(())
    }

    /// Stores a transfer in a reserved slot, with the next `ledger_seq`, on
    /// its accounts' lists.
    fn store(
        &mut self,
        t: &TransferSpec,
        (d, c): (u32, u32),
        amount: u128,
        state: TState,
        (seq, now): (Seq, Timestamp),
        deadline: Timestamp,
    ) -> u32 {
        self.ledger_seq += 1;
        let rec = TransferRecord {
            spec: *t,
            debit_account: self.accounts[d as usize].id,
            credit_account: self.accounts[c as usize].id,
            amount: Amount(amount),
            state,
            ledger_seq: self.ledger_seq,
            created_seq: seq,
            created: now,
            change_seq: seq,
        };
        let slot = self
            .hot
            .alloc(Transfer::new(rec, d, c, deadline))
            .expect("slot reserved before store");
        self.hot.link(slot);
        slot
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
        let Some(found) = self.find(t.pending_id) else {
            return true;
        };
        let p = self.found_record(&found);
        if matches!(p.state, TState::Failed(_)) {
            return true;
        }
        let (Some(d), Some(c)) = (
            self.account_slot(p.debit_account),
            self.account_slot(p.credit_account),
        ) else {
            panic!("stored transfer {} names a missing account", p.spec.id);
        };
        self.may_debit(actor, d) || (!post && actor.acts_for(self.accounts[c as usize].owner))
    }

    // ----- expiry of pending transfers --------------------------------

    /// The earliest pending-transfer deadline.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.hot.heap_top().map(|(d, _, _)| d)
    }

    /// Expires pending transfers whose deadline ≤ now, by deadline then
    /// creation (`ledger_seq`), at most `expire_max` per input: the rest stay
    /// due (`next_deadline` ≤ now, so the runtime ticks again at once), and a
    /// post or void of one of them already answers `pending_transfer_expired`.
    pub(crate) fn expire(&mut self, (seq, now): (Seq, Timestamp), out: &mut Events) {
        for _ in 0..self.expire_max {
            let Some((deadline, _, slot)) = self.hot.heap_top() else {
                return;
            };
            if deadline > now {
                return;
            }
            self.hot.heap_remove(slot);
            let t = &mut self.hot.slots[slot as usize];
            assert_eq!(
                t.rec.state,
                TState::Pending,
                "expiry heap holds a resolved transfer"
            );
            let (d, c, amount, id) = (t.debit, t.credit, t.rec.amount.0, t.rec.spec.id);
            let was = t.rec.change_seq;
            t.rec.state = TState::PendingExpired;
            t.rec.change_seq = seq;
            self.accounts[d as usize].debits_pending -= amount;
            self.accounts[c as usize].credits_pending -= amount;
            self.publish(slot, Some(was), out);
            out.push(Event::TransferExpired { id });
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
        // Every transfer ever (newest versions), wherever it lives now,
        // then the installed run: the hash never depends on what memory holds.
        h.u64(self.ledger_seq);
        h.u128(self.records_hash);
        let (run, through, checksum) = self.installed.unwrap_or((0, Seq(0), 0));
        h.u64(run);
        h.u64(through.0);
        h.u128(checksum);
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
    pub(crate) fn validate(&self, holds: &[u128]) -> Result<(), BrokenInvariant> {
        let n = self.assets.len();
        let mut sums = vec![[0u128; 4]; n];
        let mut pending_out: Vec<u128> = (0..self.accounts.len())
            .map(|i| holds.get(i).copied().unwrap_or(0))
            .collect();
        let mut pending_in = vec![0u128; self.accounts.len()];
        let add = |x: &mut u128, v: u128| -> Result<(), BrokenInvariant> {
            *x = x.checked_add(v).ok_or("balance sums overflow")?;
            Ok(())
        };
        for t in self.hot.slots.iter().filter(|t| !t.is_free()) {
            if t.rec.state == TState::Pending {
                add(&mut pending_out[t.debit as usize], t.rec.amount.0)?;
                add(&mut pending_in[t.credit as usize], t.rec.amount.0)?;
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
                return Err(broken!("account {}: holds without an escrow", a.id));
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
                return Err(broken!("account {}: debits exceed credits", a.id));
            }
            if a.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
                && a.credits_posted
                    .checked_add(a.credits_pending)
                    .is_none_or(|c| c > a.debits_posted)
            {
                return Err(broken!("account {}: credits exceed debits", a.id));
            }
            if a.debits_pending != pending_out[slot] || a.credits_pending != pending_in[slot] {
                return Err(broken!(
                    "account {} (slot {slot}): pending {}/{} but holds and transfers say {}/{}",
                    a.id,
                    a.debits_pending,
                    a.credits_pending,
                    pending_out[slot],
                    pending_in[slot]
                ));
            }
        }
        self.validate_hot()?;
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
