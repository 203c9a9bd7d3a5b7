//! A naive reference ledger, written from `semantics.md` (Ledger, conventions
//! 10–15) and ARCHITECTURE.md ("The ledger"), independently of
//! `engine/src/ledger.rs`. It is meant to be obviously correct, not fast:
//! accounts in a `BTreeMap`, every stored transfer in a `Vec` in creation
//! order, expiry by scanning every transfer, and a linked chain rolled back by
//! restoring a clone of the whole state taken before the chain ran.
//!
//! It understands `OpenAccount`, `Transfer`, `QueryBalance`, `Time`,
//! `LookupTransfer`, `GetAccountTransfers` and `InstallHistory`; any other
//! command panics (the ledger cross-check generates no orders). Its `apply`
//! returns exactly the events the engine must produce (query rows in
//! `rows()`).
//!
//! Exactly-once is forever here: every transfer and failed id stays in this
//! model for good. Installing history changes no answer; the model only
//! checks the install's order and that the run is one `hold_run` named. Its
//! transfer capacity counts stored transfers plus remembered failed ids —
//! the engine's limit while nothing is installed; build it with a large
//! `transfers_max` to compare an engine that evicts into history.

use engine::*;
use std::collections::{BTreeMap, BTreeSet};

/// One account's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefAccount {
    /// Owner (who may debit and read it; ARCHITECTURE.md "Ledger authorization").
    pub owner: u64,
    /// Asset.
    pub asset: Asset,
    /// Flags as opened.
    pub flags: u16,
    /// Posted debits.
    pub debits_posted: u128,
    /// Posted credits.
    pub credits_posted: u128,
    /// Pending debits.
    pub debits_pending: u128,
    /// Pending credits.
    pub credits_pending: u128,
}

/// Where a pending transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingState {
    /// Not a pending transfer.
    NotPending,
    /// Reserved, unresolved.
    Pending,
    /// Resolved by a post.
    Posted,
    /// Resolved by a void.
    Voided,
    /// Timed out.
    Expired,
}

/// A transfer that took effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredTransfer {
    /// The transfer exactly as the client sent it.
    pub spec: TransferSpec,
    /// Engine time when it took effect.
    pub created: u64,
    /// Two-phase state.
    pub state: PendingState,
    /// The accounts money moved between (a post/void's: its pending transfer's).
    pub accounts: (u128, u128),
    /// The amount moved or reserved.
    pub moved: u128,
    /// 1, 2, 3, … in storing order.
    pub ledger_seq: u64,
    /// The input that stored it.
    pub created_seq: u64,
    /// The input that last changed it.
    pub change_seq: u64,
}

impl StoredTransfer {
    /// The record the engine reports for it.
    pub fn record(&self) -> history::TransferRecord {
        use history::TransferState as S;
        let resolves = self.spec.flags.0 & (POST | VOID) != 0;
        history::TransferRecord {
            spec: self.spec,
            debit_account: AccountId(self.accounts.0),
            credit_account: AccountId(self.accounts.1),
            amount: Amount(self.moved),
            state: match self.state {
                PendingState::NotPending if resolves => S::Resolution,
                PendingState::NotPending => S::Posted,
                PendingState::Pending => S::Pending,
                PendingState::Posted => S::PendingPosted,
                PendingState::Voided => S::PendingVoided,
                PendingState::Expired => S::PendingExpired,
            },
            ledger_seq: self.ledger_seq,
            created_seq: Seq(self.created_seq),
            created: Timestamp(self.created),
            change_seq: Seq(self.change_seq),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct State {
    accounts: BTreeMap<u128, RefAccount>,
    transfers: Vec<StoredTransfer>,
}

impl State {
    fn find(&self, id: u128) -> Option<usize> {
        self.transfers.iter().position(|t| t.spec.id.0 == id)
    }
}

/// The reference ledger.
#[derive(Clone, Debug)]
pub struct RefLedger {
    now: u64,
    /// The input being applied.
    seq: u64,
    /// Rows of the last query.
    rows: Vec<history::TransferRecord>,
    /// Runs an install may name: (run, checksum).
    held: BTreeSet<(u64, u128)>,
    /// The last installed (run, through_seq).
    installed: (u64, u64),
    st: State,
    failed: BTreeSet<u128>,
    chain: Vec<(TransferSpec, Actor)>,
    accounts_max: usize,
    transfers_max: usize,
    assets_max: usize,
    batch_max: usize,
}

const LINKED: u16 = TransferFlags::LINKED;
const PENDING: u16 = TransferFlags::PENDING;
const POST: u16 = TransferFlags::POST_PENDING;
const VOID: u16 = TransferFlags::VOID_PENDING;
const DMNEC: u16 = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;

/// Whether `actor` acts for the owner of an account (owner 0 is nobody's).
fn acts_for(actor: &Actor, owner: u64) -> bool {
    match actor {
        Actor::Admin => true,
        Actor::Owners(set) => owner != 0 && set.as_slice().contains(&OwnerId(owner)),
    }
}
const CMNED: u16 = AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS;

impl RefLedger {
    /// An empty ledger with the capacities of `cfg`.
    pub fn new(cfg: &EngineConfig) -> RefLedger {
        RefLedger {
            now: 0,
            seq: 0,
            rows: Vec::new(),
            held: BTreeSet::new(),
            installed: (0, 0),
            st: State::default(),
            failed: BTreeSet::new(),
            chain: Vec::new(),
            accounts_max: cfg.accounts_max as usize,
            transfers_max: cfg.transfers_max as usize,
            assets_max: cfg.assets_max as usize,
            batch_max: cfg.batch_max as usize,
        }
    }

    /// Engine time.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// An account's state.
    pub fn account(&self, id: u128) -> Option<&RefAccount> {
        self.st.accounts.get(&id)
    }

    /// Every account id, ascending.
    pub fn account_ids(&self) -> Vec<u128> {
        self.st.accounts.keys().copied().collect()
    }

    /// Every stored transfer, in creation order.
    pub fn transfers(&self) -> &[StoredTransfer] {
        &self.st.transfers
    }

    /// A stored transfer by id.
    pub fn transfer(&self, id: u128) -> Option<&StoredTransfer> {
        self.st.find(id).map(|i| &self.st.transfers[i])
    }

    /// Whether a linked chain is buffered, waiting to close.
    pub fn chain_open(&self) -> bool {
        !self.chain.is_empty()
    }

    /// The rows of the last `apply`'s query (a `Transfers` event's range
    /// points into these).
    pub fn rows(&self) -> &[history::TransferRecord] {
        &self.rows
    }

    /// Lets `install_history` accept run `run` with this checksum (the
    /// history the engine consults holds it).
    pub fn hold_run(&mut self, run: u64, checksum: u128) {
        self.held.insert((run, checksum));
    }

    /// Applies one input and returns the events the engine must emit.
    pub fn apply(&mut self, input: &Input) -> Vec<Event> {
        let mut out = Vec::new();
        self.rows.clear();
        self.seq = input.seq.0;
        // Time never goes back for the engine: a stale `now` is the engine's time.
        self.now = self.now.max(input.now.0);
        match input.command {
            Command::Transfer {
                transfer,
                batch_end,
                actor,
            } => {
                // Expiry runs before every command.
                self.expire(&mut out);
                self.chain.push((transfer, actor));
                if transfer.flags.has(LINKED) {
                    if batch_end {
                        self.fail_open_chain(LedgerError::LinkedEventChainOpen, &mut out);
                    } else if self.chain.len() >= self.batch_max {
                        // It would need one more member than the longest chain allowed.
                        self.fail_open_chain(LedgerError::CapacityExceeded, &mut out);
                    }
                } else {
                    self.run_chain(&mut out);
                }
            }
            other => {
                // Any non-transfer command interrupts an open chain (its
                // failure is reported before this command's expiries).
                self.fail_open_chain(LedgerError::LinkedEventChainOpen, &mut out);
                self.expire(&mut out);
                match other {
                    Command::OpenAccount(spec) => out.push(self.open_account(&spec)),
                    Command::QueryBalance { account, actor } => {
                        out.push(self.query(account, &actor))
                    }
                    Command::LookupTransfer { id, actor } => out.push(self.lookup(id, &actor)),
                    Command::GetAccountTransfers { filter, actor } => {
                        out.push(self.account_transfers(&filter, &actor))
                    }
                    Command::InstallHistory {
                        run,
                        through_seq,
                        checksum,
                    } => out.push(self.install(run, through_seq.0, checksum)),
                    Command::Time { now } => {
                        if now.0 < self.now {
                            out.push(Event::Rejected {
                                target: RejectTarget::Time(now),
                                reason: RejectReason::InvalidTime,
                            });
                        } else {
                            self.now = now.0;
                            self.expire(&mut out);
                        }
                    }
                    c => panic!("RefLedger does not model {c:?}"),
                }
            }
        }
        out
    }

    fn query(&self, account: AccountId, actor: &Actor) -> Event {
        match self.st.accounts.get(&account.0) {
            Some(a) if !acts_for(actor, a.owner) => Event::Rejected {
                target: RejectTarget::Account(account),
                reason: RejectReason::NotAuthorized,
            },
            Some(a) => Event::Balance {
                account,
                debits_posted: Amount(a.debits_posted),
                credits_posted: Amount(a.credits_posted),
                debits_pending: Amount(a.debits_pending),
                credits_pending: Amount(a.credits_pending),
            },
            None => Event::Rejected {
                target: RejectTarget::Account(account),
                reason: RejectReason::AccountNotFound,
            },
        }
    }

    fn install(&mut self, run: u64, through: u64, checksum: u128) -> Event {
        let (last_run, last_through) = self.installed;
        if run == last_run + 1
            && through > last_through
            && through < self.seq
            && self.held.contains(&(run, checksum))
        {
            self.installed = (run, through);
            Event::HistoryInstalled {
                run,
                through_seq: Seq(through),
            }
        } else {
            Event::Rejected {
                target: RejectTarget::HistoryRun(run),
                reason: RejectReason::HistoryRunRejected,
            }
        }
    }

    /// Whether the actor owns either account of a transfer (or is admin).
    fn may_see(&self, actor: &Actor, t: &StoredTransfer) -> bool {
        [t.accounts.0, t.accounts.1].iter().any(|a| {
            self.st
                .accounts
                .get(a)
                .is_some_and(|a| acts_for(actor, a.owner))
        })
    }

    fn lookup(&mut self, id: TransferId, actor: &Actor) -> Event {
        match self.st.find(id.0).map(|i| self.st.transfers[i]) {
            Some(t) if self.may_see(actor, &t) => {
                self.rows.push(t.record());
                Event::Transfers {
                    rows: RecordRange { start: 0, len: 1 },
                    more: false,
                }
            }
            _ => Event::Rejected {
                target: RejectTarget::Transfer(id),
                reason: RejectReason::TransferNotFound,
            },
        }
    }

    fn account_transfers(&mut self, f: &history::AccountFilter, actor: &Actor) -> Event {
        let reject = |reason| Event::Rejected {
            target: RejectTarget::Account(f.account),
            reason,
        };
        let Some(a) = self.st.accounts.get(&f.account.0) else {
            return reject(RejectReason::AccountNotFound);
        };
        if !acts_for(actor, a.owner) {
            return reject(RejectReason::NotAuthorized);
        }
        if f.limit == 0 || f.limit > history::ACCOUNT_TRANSFERS_LIMIT_MAX || f.lo > f.hi {
            return reject(RejectReason::InvalidFilter);
        }
        let mut all: Vec<history::TransferRecord> = self
            .st
            .transfers
            .iter()
            .filter(|t| t.accounts.0 == f.account.0 || t.accounts.1 == f.account.0)
            .filter(|t| {
                let v = match f.by {
                    history::RangeBy::LedgerSeq => t.ledger_seq,
                    history::RangeBy::Time => t.created,
                };
                f.lo <= v && v <= f.hi
            })
            .map(|t| t.record())
            .collect();
        if f.newest_first {
            all.reverse();
        }
        let more = all.len() > f.limit as usize;
        all.truncate(f.limit as usize);
        let len = all.len() as u32;
        self.rows = all;
        Event::Transfers {
            rows: RecordRange { start: 0, len },
            more,
        }
    }

    fn open_account(&mut self, spec: &AccountSpec) -> Event {
        let id = spec.id;
        let reject = |reason| Event::AccountRejected { id, reason };
        let f = spec.flags.0;
        if id.0 == 0 {
            return reject(LedgerError::IdMustNotBeZero);
        }
        if self.st.accounts.contains_key(&id.0) {
            return reject(LedgerError::AccountExists);
        }
        if f & !AccountFlags::ALL != 0 || (f & DMNEC != 0 && f & CMNED != 0) {
            return reject(LedgerError::FlagsAreMutuallyExclusive);
        }
        // An asset is 1..=12 printable ASCII bytes, zero-padded.
        let text: Vec<u8> = spec
            .asset
            .0
            .iter()
            .copied()
            .take_while(|&b| b != 0)
            .collect();
        let padded = spec.asset.0[text.len()..].iter().all(|&b| b == 0);
        if text.is_empty() || !padded || !text.iter().all(u8::is_ascii_graphic) {
            return reject(LedgerError::InvalidAsset);
        }
        let assets: BTreeSet<Asset> = self.st.accounts.values().map(|a| a.asset).collect();
        if self.st.accounts.len() >= self.accounts_max
            || (!assets.contains(&spec.asset) && assets.len() >= self.assets_max)
        {
            return reject(LedgerError::CapacityExceeded);
        }
        self.st.accounts.insert(
            id.0,
            RefAccount {
                owner: spec.owner.0,
                asset: spec.asset,
                flags: f,
                debits_posted: 0,
                credits_posted: 0,
                debits_pending: 0,
                credits_pending: 0,
            },
        );
        Event::AccountOpened { id }
    }

    /// Expires every pending transfer whose deadline has come, by deadline then creation.
    fn expire(&mut self, out: &mut Vec<Event>) {
        let mut due: Vec<(u64, usize)> = Vec::new();
        for (i, t) in self.st.transfers.iter().enumerate() {
            if t.state == PendingState::Pending && t.spec.timeout_ns != 0 {
                let deadline = t.created.saturating_add(t.spec.timeout_ns);
                if deadline <= self.now {
                    due.push((deadline, i));
                }
            }
        }
        due.sort();
        for (_, i) in due {
            let t = self.st.transfers[i];
            let amt = t.spec.amount.0;
            let dr = self
                .st
                .accounts
                .get_mut(&t.spec.debit_account.0)
                .expect("pending debit account");
            dr.debits_pending -= amt;
            let cr = self
                .st
                .accounts
                .get_mut(&t.spec.credit_account.0)
                .expect("pending credit account");
            cr.credits_pending -= amt;
            self.st.transfers[i].state = PendingState::Expired;
            self.st.transfers[i].change_seq = self.seq;
            out.push(Event::TransferExpired { id: t.spec.id });
        }
    }

    /// An open chain fails as a whole: its last member reports `last`
    /// (`linked_event_chain_open`), every other `linked_event_failed`;
    /// nothing is evaluated, nothing is remembered.
    fn fail_open_chain(&mut self, last: LedgerError, out: &mut Vec<Event>) {
        let n = self.chain.len();
        for (i, (t, _)) in self.chain.drain(..).enumerate() {
            let reason = if i + 1 == n {
                last
            } else {
                LedgerError::LinkedEventFailed
            };
            out.push(Event::TransferRejected { id: t.id, reason });
        }
    }

    /// Applies a closed chain (its last member has no `linked`) all or nothing.
    fn run_chain(&mut self, out: &mut Vec<Event>) {
        let chain = std::mem::take(&mut self.chain);
        let before = self.st.clone();
        let mut failure = None;
        for (i, (t, actor)) in chain.iter().enumerate() {
            if let Err(e) = self.create(t, actor) {
                failure = Some((i, e));
                break;
            }
        }
        match failure {
            None => out.extend(chain.iter().map(|(t, _)| Event::TransferOk { id: t.id })),
            Some((fi, e)) => {
                self.st = before;
                // A full memory forgets the failure, as the engine's does.
                if ledger::is_transient(e) && self.stored() < self.transfers_max {
                    self.failed.insert(chain[fi].0.id.0);
                }
                for (i, (t, _)) in chain.iter().enumerate() {
                    let reason = if i == fi {
                        e
                    } else {
                        LedgerError::LinkedEventFailed
                    };
                    out.push(Event::TransferRejected { id: t.id, reason });
                }
            }
        }
    }

    /// The `not_authorized` rule, from ARCHITECTURE.md "Ledger
    /// authorization": admin may do anything; otherwise a new transfer needs
    /// its debit account (if it exists) to be the actor's and to have
    /// `debits_must_not_exceed_credits`; a post needs that of the resolved
    /// transfer's debit account, a void that or the resolved transfer's
    /// credit account being the actor's. Unknown accounts/transfers pass.
    fn authorized(&self, t: &TransferSpec, actor: &Actor) -> bool {
        if *actor == Actor::Admin {
            return true;
        }
        let debitable = |id: u128| {
            self.st
                .accounts
                .get(&id)
                .is_some_and(|a| acts_for(actor, a.owner) && a.flags & DMNEC != 0)
        };
        let f = t.flags.0;
        if f & (POST | VOID) == 0 {
            return !self.st.accounts.contains_key(&t.debit_account.0)
                || debitable(t.debit_account.0);
        }
        let Some(i) = self.st.find(t.pending_id.0) else {
            return true;
        };
        // A post/void record names its accounts as the client sent them
        // (maybe 0): its real accounts are those of the transfer it resolved.
        let mut p = self.st.transfers[i].spec;
        if p.flags.0 & (POST | VOID) != 0 {
            let j = self
                .st
                .find(p.pending_id.0)
                .expect("resolved a stored transfer");
            p = self.st.transfers[j].spec;
        }
        debitable(p.debit_account.0)
            || (f & POST == 0
                && self
                    .st
                    .accounts
                    .get(&p.credit_account.0)
                    .is_some_and(|a| acts_for(actor, a.owner)))
    }

    /// Checks one transfer (convention 11 / `TRANSFER_CHECK_ORDER`) and applies it.
    fn create(&mut self, t: &TransferSpec, actor: &Actor) -> Result<(), LedgerError> {
        use LedgerError as E;
        let id = t.id.0;
        let f = t.flags.0;
        if id == 0 {
            return Err(E::IdMustNotBeZero);
        }
        if !self.authorized(t, actor) {
            return Err(E::NotAuthorized);
        }
        if let Some(i) = self.st.find(id) {
            return Err(exists_error(&self.st.transfers[i].spec, t));
        }
        if self.failed.contains(&id) {
            return Err(E::IdAlreadyFailed);
        }
        check_shape(t)?;
        let pv = f & (POST | VOID) != 0;
        let (dr_id, cr_id) = (t.debit_account.0, t.credit_account.0);
        let dr = if pv && dr_id == 0 {
            None
        } else {
            Some(
                *self
                    .st
                    .accounts
                    .get(&dr_id)
                    .ok_or(E::DebitAccountNotFound)?,
            )
        };
        let cr = if pv && cr_id == 0 {
            None
        } else {
            Some(
                *self
                    .st
                    .accounts
                    .get(&cr_id)
                    .ok_or(E::CreditAccountNotFound)?,
            )
        };
        if let (Some(d), Some(c)) = (dr, cr) {
            if d.asset != c.asset {
                return Err(E::AccountsMustHaveTheSameAsset);
            }
        }
        if pv {
            return self.post_or_void(t);
        }
        let (d, c) = (dr.unwrap(), cr.unwrap());
        self.apply_new(t, d, c)
    }

    /// A post or void of a pending transfer: checked against it, then (part
    /// of) its amount moved to posted, or released.
    fn post_or_void(&mut self, t: &TransferSpec) -> Result<(), LedgerError> {
        use LedgerError as E;
        let f = t.flags.0;
        let (dr_id, cr_id) = (t.debit_account.0, t.credit_account.0);
        let pi = self
            .st
            .find(t.pending_id.0)
            .ok_or(E::PendingTransferNotFound)?;
        let p = self.st.transfers[pi];
        if p.spec.flags.0 & PENDING == 0 {
            return Err(E::PendingTransferNotPending);
        }
        if dr_id != 0 && dr_id != p.spec.debit_account.0 {
            return Err(E::PendingTransferHasDifferentDebitAccountId);
        }
        if cr_id != 0 && cr_id != p.spec.credit_account.0 {
            return Err(E::PendingTransferHasDifferentCreditAccountId);
        }
        if t.amount.0 > p.spec.amount.0 {
            return Err(E::ExceedsPendingTransferAmount);
        }
        match p.state {
            PendingState::Posted => return Err(E::PendingTransferAlreadyPosted),
            PendingState::Voided => return Err(E::PendingTransferAlreadyVoided),
            PendingState::Expired => return Err(E::PendingTransferExpired),
            PendingState::Pending => {}
            PendingState::NotPending => unreachable!(),
        }
        if self.stored() >= self.transfers_max {
            return Err(E::CapacityExceeded);
        }
        // Posting moves (part of) the pending amount to posted: no limit can break, nothing can overflow.
        let full = p.spec.amount.0;
        let posted = if f & POST != 0 {
            if t.amount.0 == 0 {
                full
            } else {
                t.amount.0
            }
        } else {
            0
        };
        let d = self.st.accounts.get_mut(&p.spec.debit_account.0).unwrap();
        d.debits_pending -= full;
        d.debits_posted += posted;
        let c = self.st.accounts.get_mut(&p.spec.credit_account.0).unwrap();
        c.credits_pending -= full;
        c.credits_posted += posted;
        self.st.transfers[pi].state = if f & POST != 0 {
            PendingState::Posted
        } else {
            PendingState::Voided
        };
        self.st.transfers[pi].change_seq = self.seq;
        let moved = if f & POST != 0 { posted } else { full };
        let accounts = (p.spec.debit_account.0, p.spec.credit_account.0);
        self.push_stored(t, PendingState::NotPending, accounts, moved);
        Ok(())
    }

    /// A new (plain or pending) transfer between existing accounts `d` and
    /// `c`: capacity, overflow and balance limits checked, then applied.
    fn apply_new(
        &mut self,
        t: &TransferSpec,
        d: RefAccount,
        c: RefAccount,
    ) -> Result<(), LedgerError> {
        use LedgerError as E;
        let f = t.flags.0;
        let (dr_id, cr_id) = (t.debit_account.0, t.credit_account.0);
        if self.stored() >= self.transfers_max {
            return Err(E::CapacityExceeded);
        }
        let amt = t.amount.0;
        let d_total = d
            .debits_posted
            .checked_add(d.debits_pending)
            .and_then(|x| x.checked_add(amt));
        let c_total = c
            .credits_posted
            .checked_add(c.credits_pending)
            .and_then(|x| x.checked_add(amt));
        let (Some(d_total), Some(c_total)) = (d_total, c_total) else {
            return Err(E::Overflow);
        };
        if f & PENDING != 0 && t.timeout_ns != 0 && self.now.checked_add(t.timeout_ns).is_none() {
            return Err(E::Overflow);
        }
        if d.flags & DMNEC != 0 && d_total > d.credits_posted {
            return Err(E::ExceedsCredits);
        }
        if c.flags & CMNED != 0 && c_total > c.debits_posted {
            return Err(E::ExceedsDebits);
        }
        let pending = f & PENDING != 0;
        let d = self.st.accounts.get_mut(&dr_id).unwrap();
        if pending {
            d.debits_pending += amt;
        } else {
            d.debits_posted += amt;
        }
        let c = self.st.accounts.get_mut(&cr_id).unwrap();
        if pending {
            c.credits_pending += amt;
        } else {
            c.credits_posted += amt;
        }
        let state = if pending {
            PendingState::Pending
        } else {
            PendingState::NotPending
        };
        self.push_stored(t, state, (dr_id, cr_id), amt);
        Ok(())
    }

    /// Stored transfers plus remembered failed ids (the engine's memory use
    /// while nothing is installed).
    fn stored(&self) -> usize {
        self.st.transfers.len() + self.failed.len()
    }

    fn push_stored(
        &mut self,
        t: &TransferSpec,
        state: PendingState,
        accounts: (u128, u128),
        moved: u128,
    ) {
        let ledger_seq = self.st.transfers.len() as u64 + 1;
        self.st.transfers.push(StoredTransfer {
            spec: *t,
            created: self.now,
            state,
            accounts,
            moved,
            ledger_seq,
            created_seq: self.seq,
            change_seq: self.seq,
        });
    }
}
/// Why a transfer whose id is already stored fails: the first field that
/// differs, in `TRANSFER_CHECK_ORDER`, else `Exists`.
fn exists_error(e: &TransferSpec, t: &TransferSpec) -> LedgerError {
    use LedgerError as E;
    if e.flags != t.flags {
        E::ExistsWithDifferentFlags
    } else if e.pending_id != t.pending_id {
        E::ExistsWithDifferentPendingId
    } else if e.timeout_ns != t.timeout_ns {
        E::ExistsWithDifferentTimeout
    } else if e.debit_account != t.debit_account {
        E::ExistsWithDifferentDebitAccountId
    } else if e.credit_account != t.credit_account {
        E::ExistsWithDifferentCreditAccountId
    } else if e.amount != t.amount {
        E::ExistsWithDifferentAmount
    } else if e.code != t.code {
        E::ExistsWithDifferentCode
    } else {
        E::Exists
    }
}

/// The checks that need nothing but the transfer itself: flags, accounts
/// distinct, pending id, timeout, amount.
fn check_shape(t: &TransferSpec) -> Result<(), LedgerError> {
    use LedgerError as E;
    let f = t.flags.0;
    let kinds = [PENDING, POST, VOID]
        .iter()
        .filter(|&&b| f & b != 0)
        .count();
    if f & !TransferFlags::ALL != 0 || kinds > 1 {
        return Err(E::FlagsAreMutuallyExclusive);
    }
    let pv = f & (POST | VOID) != 0;
    let (dr_id, cr_id) = (t.debit_account.0, t.credit_account.0);
    let same = if pv {
        dr_id != 0 && dr_id == cr_id
    } else {
        dr_id == cr_id
    };
    if same {
        return Err(E::AccountsMustBeDifferent);
    }
    if !pv && t.pending_id.0 != 0 {
        return Err(E::PendingIdMustBeZero);
    }
    if pv && t.pending_id.0 == 0 {
        return Err(E::PendingIdMustNotBeZero);
    }
    if t.timeout_ns != 0 && f & PENDING == 0 {
        return Err(E::TimeoutReservedForPendingTransfer);
    }
    if !pv && t.amount.0 == 0 {
        return Err(E::AmountMustNotBeZero);
    }
    Ok(())
}
