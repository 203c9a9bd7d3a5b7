//! Ledger result codes as data: for every `LedgerError` (and the ledger's
//! `invalid_time` / `account_not_found` rejects) a list of commands in and the
//! exact events expected out, checked against the engine and against
//! `bourse_tests::ref_ledger` (so the reference is pinned too). Also: check
//! precedence (two problems at once → the first in
//! `ledger::TRANSFER_CHECK_ORDER` wins), that a rejected transfer and a failed
//! linked chain change nothing, two-phase resolution and expiry order, and
//! capacities with a tiny `EngineConfig`.
//!
//! Inputs carry `now = 0`; time moves only through `time` commands (a stale
//! `now` is the engine's time).

use bourse_tests::fixtures::plain_transfer;
use bourse_tests::ref_ledger::RefLedger;
use engine::*;
use LedgerError as E;

// ----- commands ------------------------------------------------------------

const D: u16 = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
const C: u16 = AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS;
const LINKED: u16 = TransferFlags::LINKED;
const PENDING: u16 = TransferFlags::PENDING;
const POST: u16 = TransferFlags::POST_PENDING;
const VOID: u16 = TransferFlags::VOID_PENDING;

fn open(id: u128, asset: &str, flags: u16) -> Command {
    open_for(id, 0, asset, flags)
}

fn open_raw(id: u128, asset: [u8; 12], flags: u16) -> Command {
    Command::OpenAccount(AccountSpec {
        id: AccountId(id),
        owner: OwnerId(0),
        asset: Asset(asset),
        flags: AccountFlags(flags),
    })
}

fn open_for(id: u128, owner: u64, asset: &str, flags: u16) -> Command {
    Command::OpenAccount(AccountSpec {
        id: AccountId(id),
        owner: OwnerId(owner),
        asset: Asset::from_str_code(asset).unwrap(),
        flags: AccountFlags(flags),
    })
}

/// A balance query by the operator (admin).
fn query(account: u128) -> Command {
    query_as(account, Actor::Admin)
}

fn query_as(account: u128, actor: Actor) -> Command {
    Command::QueryBalance {
        account: AccountId(account),
        actor,
    }
}

/// An actor for these owners.
fn owners(ids: &[u64]) -> Actor {
    Actor::owners(&ids.iter().map(|&o| OwnerId(o)).collect::<Vec<_>>()).unwrap()
}

fn time(now: u64) -> Command {
    Command::Time {
        now: Timestamp(now),
    }
}

/// A transfer under construction (`batch_end` true unless linked; admin
/// unless `by` names owners).
#[derive(Clone, Copy)]
struct T(TransferSpec, bool, Actor);

fn t(id: u128, dr: u128, cr: u128, amount: u128) -> T {
    T(plain_transfer(id, dr, cr, amount), true, Actor::Admin)
}

/// Post (`POST`) or void (`VOID`) of `pending_id`, accounts taken from it.
fn resolve(id: u128, flag: u16, pending_id: u128, amount: u128) -> T {
    t(id, 0, 0, amount).flags(flag).pid(pending_id)
}

impl T {
    fn flags(mut self, f: u16) -> T {
        self.0.flags.0 |= f;
        self
    }
    /// Linked, batch still open.
    fn linked(mut self) -> T {
        self.0.flags.0 |= LINKED;
        self.1 = false;
        self
    }
    /// Linked, and ends its batch.
    fn linked_end(mut self) -> T {
        self.0.flags.0 |= LINKED;
        self.1 = true;
        self
    }
    fn pending(self, timeout_ns: u64) -> T {
        self.flags(PENDING).timeout(timeout_ns)
    }
    fn pid(mut self, p: u128) -> T {
        self.0.pending_id = TransferId(p);
        self
    }
    fn timeout(mut self, ns: u64) -> T {
        self.0.timeout_ns = ns;
        self
    }
    fn code(mut self, c: u16) -> T {
        self.0.code = c;
        self
    }
    /// Issued for these owners only.
    fn by(mut self, ids: &[u64]) -> T {
        self.2 = owners(ids);
        self
    }
    fn c(self) -> Command {
        Command::Transfer {
            transfer: self.0,
            batch_end: self.1,
            actor: self.2,
        }
    }
}

// ----- events --------------------------------------------------------------

fn ok(id: u128) -> Event {
    Event::TransferOk { id: TransferId(id) }
}
fn rej(id: u128, reason: LedgerError) -> Event {
    Event::TransferRejected {
        id: TransferId(id),
        reason,
    }
}
fn expired(id: u128) -> Event {
    Event::TransferExpired { id: TransferId(id) }
}
fn opened(id: u128) -> Event {
    Event::AccountOpened { id: AccountId(id) }
}
fn arej(id: u128, reason: LedgerError) -> Event {
    Event::AccountRejected {
        id: AccountId(id),
        reason,
    }
}
/// Balance: debits posted, credits posted, debits pending, credits pending.
fn bal(account: u128, dpo: u128, cpo: u128, dpe: u128, cpe: u128) -> Event {
    Event::Balance {
        account: AccountId(account),
        debits_posted: Amount(dpo),
        credits_posted: Amount(cpo),
        debits_pending: Amount(dpe),
        credits_pending: Amount(cpe),
    }
}
fn not_found(account: u128) -> Event {
    Event::Rejected {
        target: RejectTarget::Account(AccountId(account)),
        reason: RejectReason::AccountNotFound,
    }
}
fn bad_time(now: u64) -> Event {
    Event::Rejected {
        target: RejectTarget::Time(Timestamp(now)),
        reason: RejectReason::InvalidTime,
    }
}

// ----- runner --------------------------------------------------------------

type Step = (Command, Vec<Event>);

/// The engine's events for each command, in order (`validate` after each).
fn engine_events(cfg: EngineConfig, cmds: &[Command]) -> Vec<Vec<Event>> {
    let mut e = Engine::new(cfg);
    let mut ev = e.new_events();
    cmds.iter()
        .enumerate()
        .map(|(i, &command)| {
            e.apply(
                &Input {
                    seq: Seq(i as u64 + 1),
                    now: Timestamp(0),
                    command,
                },
                &mut ev,
            );
            if let Err(err) = e.validate() {
                panic!("validate after command #{i} {command:?}: {err}");
            }
            ev.as_slice().to_vec()
        })
        .collect()
}

/// The reference's events for each command.
fn reference_events(cfg: EngineConfig, cmds: &[Command]) -> Vec<Vec<Event>> {
    let mut r = RefLedger::new(&cfg);
    cmds.iter()
        .enumerate()
        .map(|(i, &command)| {
            r.apply(&Input {
                seq: Seq(i as u64 + 1),
                now: Timestamp(0),
                command,
            })
        })
        .collect()
}

fn compare(who: &str, steps: &[Step], got: &[Vec<Event>]) {
    for (i, ((cmd, want), got)) in steps.iter().zip(got).enumerate() {
        assert_eq!(got, want, "{who}: command #{i} {cmd:?}");
    }
}

fn check_cfg(cfg: EngineConfig, steps: &[Step]) {
    let cmds: Vec<Command> = steps.iter().map(|s| s.0).collect();
    compare("reference", steps, &reference_events(cfg, &cmds));
    compare("engine", steps, &engine_events(cfg, &cmds));
}

/// Accounts 1 (USD) and 2 (EUR) external; 10, 11 USD and 20 EUR users
/// (`debits_must_not_exceed_credits`); 12 USD `credits_must_not_exceed_debits`;
/// transfer 1 deposits 1000 into 10.
fn setup() -> Vec<Step> {
    vec![
        (open(1, "USD", 0), vec![opened(1)]),
        (open(2, "EUR", 0), vec![opened(2)]),
        (open(10, "USD", D), vec![opened(10)]),
        (open(11, "USD", D), vec![opened(11)]),
        (open(20, "EUR", D), vec![opened(20)]),
        (open(12, "USD", C), vec![opened(12)]),
        (t(1, 1, 10, 1000).c(), vec![ok(1)]),
    ]
}

/// `setup()` then `steps`, on `EngineConfig::small()`.
fn check(steps: Vec<Step>) {
    let mut all = setup();
    all.extend(steps);
    check_cfg(EngineConfig::small(), &all);
}

/// A single transfer after `setup()` answers `want`, and changes no balance when rejected.
fn single(tr: T, want: LedgerError) {
    let id = tr.0.id.0;
    check(vec![
        (tr.c(), vec![rej(id, want)]),
        (query(1), vec![bal(1, 1000, 0, 0, 0)]),
        (query(10), vec![bal(10, 0, 1000, 0, 0)]),
        (query(11), vec![bal(11, 0, 0, 0, 0)]),
        (query(12), vec![bal(12, 0, 0, 0, 0)]),
    ]);
}

// ----- accounts ------------------------------------------------------------

#[test]
fn open_account_results() {
    check_cfg(
        EngineConfig::small(),
        &[
            (open(0, "USD", D), vec![arej(0, E::IdMustNotBeZero)]),
            (open(5, "USD", D), vec![opened(5)]),
            (open(5, "USD", D), vec![arej(5, E::AccountExists)]),
            (open(5, "EUR", C), vec![arej(5, E::AccountExists)]),
            (
                open(6, "USD", D | C),
                vec![arej(6, E::FlagsAreMutuallyExclusive)],
            ),
            (
                open(6, "USD", 1 << 7),
                vec![arej(6, E::FlagsAreMutuallyExclusive)],
            ),
            // Precedence: id, then exists, then flags.
            (open(0, "USD", D | C), vec![arej(0, E::IdMustNotBeZero)]),
            (open(5, "USD", D | C), vec![arej(5, E::AccountExists)]),
            // Asset bytes that are no code (from the wire or a journal):
            // empty, a hole inside, not printable; after the flags check.
            (open_raw(6, [0; 12], D), vec![arej(6, E::InvalidAsset)]),
            (
                open_raw(6, *b"US\0D\0\0\0\0\0\0\0\0", D),
                vec![arej(6, E::InvalidAsset)],
            ),
            (
                open_raw(6, *b"US\tD\0\0\0\0\0\0\0\0", D),
                vec![arej(6, E::InvalidAsset)],
            ),
            (
                open_raw(6, [0; 12], D | C),
                vec![arej(6, E::FlagsAreMutuallyExclusive)],
            ),
            (open(6, "USD", C), vec![opened(6)]),
            (query(5), vec![bal(5, 0, 0, 0, 0)]),
            (query(7), vec![not_found(7)]),
            // The escrow account (id 0) is not addressable.
            (query(0), vec![not_found(0)]),
        ],
    );
}

// ----- transfer results, one per code ----------------------------------------

#[test]
fn ok_moves_posted_balances() {
    check(vec![
        (t(2, 10, 11, 300).c(), vec![ok(2)]),
        (query(10), vec![bal(10, 300, 1000, 0, 0)]),
        (query(11), vec![bal(11, 0, 300, 0, 0)]),
        (query(1), vec![bal(1, 1000, 0, 0, 0)]),
    ]);
}

#[test]
fn id_must_not_be_zero() {
    single(t(0, 10, 11, 1), E::IdMustNotBeZero);
}

#[test]
fn exists_same_fields() {
    check(vec![
        (t(2, 10, 11, 300).code(7).c(), vec![ok(2)]),
        (t(2, 10, 11, 300).code(7).c(), vec![rej(2, E::Exists)]),
        (query(10), vec![bal(10, 300, 1000, 0, 0)]),
        // The deposit of setup() too.
        (t(1, 1, 10, 1000).c(), vec![rej(1, E::Exists)]),
    ]);
}

#[test]
fn exists_with_different_fields() {
    check(vec![
        (t(2, 10, 11, 300).c(), vec![ok(2)]),
        (
            t(2, 10, 11, 300).pending(0).c(),
            vec![rej(2, E::ExistsWithDifferentFlags)],
        ),
        (
            t(2, 10, 11, 300).pid(1).c(),
            vec![rej(2, E::ExistsWithDifferentPendingId)],
        ),
        (
            t(2, 10, 11, 300).timeout(5).c(),
            vec![rej(2, E::ExistsWithDifferentTimeout)],
        ),
        (
            t(2, 11, 11, 300).c(),
            vec![rej(2, E::ExistsWithDifferentDebitAccountId)],
        ),
        (
            t(2, 10, 10, 300).c(),
            vec![rej(2, E::ExistsWithDifferentCreditAccountId)],
        ),
        (
            t(2, 10, 11, 301).c(),
            vec![rej(2, E::ExistsWithDifferentAmount)],
        ),
        (
            t(2, 10, 11, 300).code(2).c(),
            vec![rej(2, E::ExistsWithDifferentCode)],
        ),
        // Flags compare whole, `linked` included.
        (
            t(2, 10, 11, 300).linked_end().c(),
            vec![rej(2, E::LinkedEventChainOpen)],
        ),
        (t(2, 10, 11, 300).linked().c(), vec![]),
        (
            t(3, 10, 11, 1).c(),
            vec![
                rej(2, E::ExistsWithDifferentFlags),
                rej(3, E::LinkedEventFailed),
            ],
        ),
        (query(10), vec![bal(10, 300, 1000, 0, 0)]),
    ]);
}

#[test]
fn exists_with_different_pending_id_and_timeout() {
    check(vec![
        (t(2, 10, 11, 100).pending(50).c(), vec![ok(2)]),
        (t(3, 10, 11, 100).pending(0).c(), vec![ok(3)]),
        (
            t(2, 10, 11, 100).pending(51).c(),
            vec![rej(2, E::ExistsWithDifferentTimeout)],
        ),
        (t(2, 10, 11, 100).pending(50).c(), vec![rej(2, E::Exists)]),
        (resolve(4, POST, 2, 0).c(), vec![ok(4)]),
        (
            resolve(4, POST, 3, 0).c(),
            vec![rej(4, E::ExistsWithDifferentPendingId)],
        ),
        // A post is stored as sent: amount 0 and accounts 0 stay 0.
        (
            resolve(4, POST, 2, 100).c(),
            vec![rej(4, E::ExistsWithDifferentAmount)],
        ),
        (
            t(4, 10, 11, 0).flags(POST).pid(2).c(),
            vec![rej(4, E::ExistsWithDifferentDebitAccountId)],
        ),
        (
            t(4, 0, 11, 0).flags(POST).pid(2).c(),
            vec![rej(4, E::ExistsWithDifferentCreditAccountId)],
        ),
        (
            resolve(4, VOID, 2, 0).c(),
            vec![rej(4, E::ExistsWithDifferentFlags)],
        ),
        (resolve(4, POST, 2, 0).c(), vec![rej(4, E::Exists)]),
    ]);
}

#[test]
fn id_already_failed() {
    check(vec![
        (t(2, 11, 10, 5).c(), vec![rej(2, E::ExceedsCredits)]),
        // Same id again, with the same or other fields: id_already_failed, even now that it would fit.
        (t(3, 1, 11, 500).c(), vec![ok(3)]),
        (t(2, 11, 10, 5).c(), vec![rej(2, E::IdAlreadyFailed)]),
        (
            t(2, 10, 11, 1).code(9).c(),
            vec![rej(2, E::IdAlreadyFailed)],
        ),
        // Every transient code is remembered.
        (t(4, 99, 10, 1).c(), vec![rej(4, E::DebitAccountNotFound)]),
        (t(4, 99, 10, 1).c(), vec![rej(4, E::IdAlreadyFailed)]),
        (t(5, 10, 99, 1).c(), vec![rej(5, E::CreditAccountNotFound)]),
        (t(5, 10, 11, 1).c(), vec![rej(5, E::IdAlreadyFailed)]),
        (
            resolve(6, POST, 77, 0).c(),
            vec![rej(6, E::PendingTransferNotFound)],
        ),
        (
            resolve(6, POST, 77, 0).c(),
            vec![rej(6, E::IdAlreadyFailed)],
        ),
        (t(7, 1, 12, 1).c(), vec![rej(7, E::ExceedsDebits)]),
        (t(7, 1, 11, 1).c(), vec![rej(7, E::IdAlreadyFailed)]),
        // A non-transient failure is not remembered: the id may be used again.
        (t(8, 10, 11, 0).c(), vec![rej(8, E::AmountMustNotBeZero)]),
        (t(8, 10, 11, 1).c(), vec![ok(8)]),
        (
            t(9, 10, 10, 1).c(),
            vec![rej(9, E::AccountsMustBeDifferent)],
        ),
        (t(9, 10, 11, 1).c(), vec![ok(9)]),
    ]);
}

#[test]
fn id_already_failed_for_pending_states() {
    check(vec![
        (t(2, 10, 11, 100).pending(0).c(), vec![ok(2)]),
        (resolve(3, POST, 2, 0).c(), vec![ok(3)]),
        (
            resolve(4, VOID, 2, 0).c(),
            vec![rej(4, E::PendingTransferAlreadyPosted)],
        ),
        (resolve(4, VOID, 2, 0).c(), vec![rej(4, E::IdAlreadyFailed)]),
        (t(5, 10, 11, 100).pending(10).c(), vec![ok(5)]),
        (time(10), vec![expired(5)]),
        (
            resolve(6, POST, 5, 0).c(),
            vec![rej(6, E::PendingTransferExpired)],
        ),
        (resolve(6, POST, 5, 0).c(), vec![rej(6, E::IdAlreadyFailed)]),
    ]);
}

#[test]
fn flags_are_mutually_exclusive() {
    single(
        t(2, 10, 11, 1).flags(PENDING | POST).pid(1),
        E::FlagsAreMutuallyExclusive,
    );
    single(
        t(2, 10, 11, 1).flags(PENDING | VOID).pid(1),
        E::FlagsAreMutuallyExclusive,
    );
    single(
        t(2, 10, 11, 1).flags(POST | VOID).pid(1),
        E::FlagsAreMutuallyExclusive,
    );
    single(t(2, 10, 11, 1).flags(1 << 4), E::FlagsAreMutuallyExclusive);
    single(t(2, 10, 11, 1).flags(1 << 15), E::FlagsAreMutuallyExclusive);
}

#[test]
fn accounts_must_be_different() {
    single(t(2, 10, 10, 1), E::AccountsMustBeDifferent);
    single(t(2, 0, 0, 1), E::AccountsMustBeDifferent);
    single(t(2, 99, 99, 1), E::AccountsMustBeDifferent);
    // Post/void: only when both accounts are given.
    check(vec![
        (t(2, 10, 11, 100).pending(0).c(), vec![ok(2)]),
        (
            t(3, 10, 10, 0).flags(POST).pid(2).c(),
            vec![rej(3, E::AccountsMustBeDifferent)],
        ),
        (t(3, 10, 0, 0).flags(POST).pid(2).c(), vec![ok(3)]),
    ]);
}

#[test]
fn pending_id_must_be_zero_or_not() {
    single(t(2, 10, 11, 1).pid(1), E::PendingIdMustBeZero);
    single(t(2, 10, 11, 1).pending(0).pid(1), E::PendingIdMustBeZero);
    single(resolve(2, POST, 0, 0), E::PendingIdMustNotBeZero);
    single(resolve(2, VOID, 0, 0), E::PendingIdMustNotBeZero);
}

#[test]
fn timeout_reserved_for_pending_transfer() {
    single(
        t(2, 10, 11, 1).timeout(5),
        E::TimeoutReservedForPendingTransfer,
    );
    single(
        resolve(2, POST, 1, 0).timeout(5),
        E::TimeoutReservedForPendingTransfer,
    );
    single(
        resolve(2, VOID, 1, 0).timeout(5),
        E::TimeoutReservedForPendingTransfer,
    );
}

#[test]
fn amount_must_not_be_zero() {
    single(t(2, 10, 11, 0), E::AmountMustNotBeZero);
    single(t(2, 10, 11, 0).pending(0), E::AmountMustNotBeZero);
}

#[test]
fn account_not_found() {
    single(t(2, 99, 11, 1), E::DebitAccountNotFound);
    single(t(2, 10, 99, 1), E::CreditAccountNotFound);
    // Account 0 (an escrow's id) is not addressable.
    single(t(2, 0, 11, 1), E::DebitAccountNotFound);
    single(t(2, 10, 0, 1), E::CreditAccountNotFound);
    // Post/void: a given account must exist.
    single(t(2, 99, 0, 0).flags(POST).pid(1), E::DebitAccountNotFound);
    single(t(2, 0, 99, 0).flags(VOID).pid(1), E::CreditAccountNotFound);
}

#[test]
fn accounts_must_have_the_same_asset() {
    single(t(2, 10, 20, 1), E::AccountsMustHaveTheSameAsset);
    single(t(2, 1, 20, 1).pending(0), E::AccountsMustHaveTheSameAsset);
}

#[test]
fn pending_transfer_not_found_and_not_pending() {
    single(resolve(2, POST, 77, 0), E::PendingTransferNotFound);
    single(resolve(2, VOID, 77, 0), E::PendingTransferNotFound);
    // Transfer 1 exists but is not pending.
    single(resolve(2, POST, 1, 0), E::PendingTransferNotPending);
    single(resolve(2, VOID, 1, 0), E::PendingTransferNotPending);
    // Nor is a post.
    check(vec![
        (t(2, 10, 11, 100).pending(0).c(), vec![ok(2)]),
        (resolve(3, POST, 2, 0).c(), vec![ok(3)]),
        (
            resolve(4, VOID, 3, 0).c(),
            vec![rej(4, E::PendingTransferNotPending)],
        ),
        // A pending transfer rolled back with its chain was never stored.
        (t(5, 10, 11, 100).pending(0).linked().c(), vec![]),
        (
            t(6, 10, 11, 0).c(),
            vec![rej(5, E::LinkedEventFailed), rej(6, E::AmountMustNotBeZero)],
        ),
        (
            resolve(7, POST, 5, 0).c(),
            vec![rej(7, E::PendingTransferNotFound)],
        ),
    ]);
}

#[test]
fn pending_transfer_has_different_accounts() {
    check(vec![
        (t(2, 10, 11, 100).pending(0).c(), vec![ok(2)]),
        (
            t(3, 11, 0, 0).flags(POST).pid(2).c(),
            vec![rej(3, E::PendingTransferHasDifferentDebitAccountId)],
        ),
        (
            t(4, 0, 10, 0).flags(POST).pid(2).c(),
            vec![rej(4, E::PendingTransferHasDifferentCreditAccountId)],
        ),
        (
            t(5, 11, 10, 0).flags(VOID).pid(2).c(),
            vec![rej(5, E::PendingTransferHasDifferentDebitAccountId)],
        ),
        (
            t(6, 10, 12, 0).flags(VOID).pid(2).c(),
            vec![rej(6, E::PendingTransferHasDifferentCreditAccountId)],
        ),
        // The right accounts, given explicitly.
        (t(7, 10, 11, 0).flags(VOID).pid(2).c(), vec![ok(7)]),
        (query(10), vec![bal(10, 0, 1000, 0, 0)]),
    ]);
}

#[test]
fn exceeds_pending_transfer_amount() {
    check(vec![
        (t(2, 10, 11, 100).pending(0).c(), vec![ok(2)]),
        (
            resolve(3, POST, 2, 101).c(),
            vec![rej(3, E::ExceedsPendingTransferAmount)],
        ),
        (
            resolve(4, VOID, 2, 101).c(),
            vec![rej(4, E::ExceedsPendingTransferAmount)],
        ),
        // Not transient: the ids may be used again.
        (resolve(3, POST, 2, 100).c(), vec![ok(3)]),
        (query(10), vec![bal(10, 100, 1000, 0, 0)]),
    ]);
}

#[test]
fn pending_transfer_already_resolved() {
    check(vec![
        (t(2, 10, 11, 100).pending(0).c(), vec![ok(2)]),
        (t(3, 10, 11, 100).pending(0).c(), vec![ok(3)]),
        (t(4, 10, 11, 100).pending(5).c(), vec![ok(4)]),
        (resolve(5, POST, 2, 40).c(), vec![ok(5)]),
        (resolve(6, VOID, 3, 0).c(), vec![ok(6)]),
        (time(5), vec![expired(4)]),
        (
            resolve(7, POST, 2, 0).c(),
            vec![rej(7, E::PendingTransferAlreadyPosted)],
        ),
        (
            resolve(8, VOID, 2, 0).c(),
            vec![rej(8, E::PendingTransferAlreadyPosted)],
        ),
        (
            resolve(9, POST, 3, 0).c(),
            vec![rej(9, E::PendingTransferAlreadyVoided)],
        ),
        (
            resolve(10, VOID, 3, 0).c(),
            vec![rej(10, E::PendingTransferAlreadyVoided)],
        ),
        (
            resolve(11, POST, 4, 0).c(),
            vec![rej(11, E::PendingTransferExpired)],
        ),
        (
            resolve(12, VOID, 4, 0).c(),
            vec![rej(12, E::PendingTransferExpired)],
        ),
        // Partial post: 40 posted, 60 released; the void and the expiry released all.
        (query(10), vec![bal(10, 40, 1000, 0, 0)]),
        (query(11), vec![bal(11, 0, 40, 0, 0)]),
    ]);
}

#[test]
fn overflow() {
    let big = u128::MAX - 500;
    check(vec![
        // 10 has 1000 credits: 1000 + (MAX - 500) overflows.
        (t(2, 1, 10, big).c(), vec![rej(2, E::Overflow)]),
        (t(3, 1, 11, big).c(), vec![rej(3, E::Overflow)]),
        (t(4, 2, 20, big).c(), vec![ok(4)]),
        (t(5, 2, 20, 1).c(), vec![ok(5)]),
        (t(6, 2, 20, u128::MAX - big).c(), vec![rej(6, E::Overflow)]),
        // Pending amounts count too.
        (t(7, 2, 20, 400).pending(0).c(), vec![ok(7)]),
        (t(8, 2, 20, 100).pending(0).c(), vec![rej(8, E::Overflow)]),
        (t(9, 2, 20, 99).c(), vec![ok(9)]),
        (query(20), vec![bal(20, 0, u128::MAX - 400, 0, 400)]),
        // Not transient.
        (t(8, 2, 20, 0).c(), vec![rej(8, E::AmountMustNotBeZero)]),
    ]);
}

#[test]
fn exceeds_credits_and_debits() {
    check(vec![
        (t(2, 10, 11, 1001).c(), vec![rej(2, E::ExceedsCredits)]),
        (t(3, 10, 11, 1000).c(), vec![ok(3)]),
        (
            t(4, 11, 10, 1001).pending(0).c(),
            vec![rej(4, E::ExceedsCredits)],
        ),
        // Pending debits count against the limit.
        (t(5, 11, 10, 600).pending(0).c(), vec![ok(5)]),
        (t(6, 11, 10, 401).c(), vec![rej(6, E::ExceedsCredits)]),
        (t(7, 11, 10, 400).c(), vec![ok(7)]),
        // 12 may only be credited up to its debits (none yet).
        (t(8, 1, 12, 1).c(), vec![rej(8, E::ExceedsDebits)]),
        (t(9, 12, 1, 50).c(), vec![ok(9)]),
        (t(10, 1, 12, 30).pending(0).c(), vec![ok(10)]),
        (t(11, 1, 12, 21).c(), vec![rej(11, E::ExceedsDebits)]),
        (t(12, 1, 12, 20).c(), vec![ok(12)]),
        (query(11), vec![bal(11, 400, 1000, 600, 0)]),
        (query(12), vec![bal(12, 50, 20, 0, 30)]),
    ]);
}

#[test]
fn linked_event_failed_and_chain_open() {
    check(vec![
        // A chain that succeeds reports when it closes, in order.
        (t(2, 10, 11, 100).linked().c(), vec![]),
        (t(3, 11, 10, 50).linked().c(), vec![]),
        (t(4, 10, 11, 10).c(), vec![ok(2), ok(3), ok(4)]),
        // A member in the middle fails: its own code, the rest linked_event_failed.
        (t(5, 10, 11, 100).linked().c(), vec![]),
        (t(6, 10, 11, 5000).linked().c(), vec![]),
        (
            t(7, 10, 11, 1).c(),
            vec![
                rej(5, E::LinkedEventFailed),
                rej(6, E::ExceedsCredits),
                rej(7, E::LinkedEventFailed),
            ],
        ),
        // Open at the end of the batch.
        (t(8, 10, 11, 1).linked().c(), vec![]),
        (
            t(9, 10, 11, 1).linked_end().c(),
            vec![
                rej(8, E::LinkedEventFailed),
                rej(9, E::LinkedEventChainOpen),
            ],
        ),
        // A chain of one, open at the end of its batch.
        (
            t(10, 10, 11, 1).linked_end().c(),
            vec![rej(10, E::LinkedEventChainOpen)],
        ),
        // Interrupted by a non-transfer command (its own events follow).
        (t(11, 10, 11, 1).linked().c(), vec![]),
        (
            query(10),
            vec![rej(11, E::LinkedEventChainOpen), bal(10, 110, 1050, 0, 0)],
        ),
        (t(12, 10, 11, 1).linked().c(), vec![]),
        (
            open(13, "USD", D),
            vec![rej(12, E::LinkedEventChainOpen), opened(13)],
        ),
        (t(14, 10, 11, 1).linked().c(), vec![]),
        (
            open(13, "USD", D),
            vec![rej(14, E::LinkedEventChainOpen), arej(13, E::AccountExists)],
        ),
        (t(15, 10, 11, 1).linked().c(), vec![]),
        (
            query(99),
            vec![rej(15, E::LinkedEventChainOpen), not_found(99)],
        ),
        (t(16, 10, 11, 1).linked().c(), vec![]),
        (time(3), vec![rej(16, E::LinkedEventChainOpen)]),
        // linked_event_failed / chain_open members are not remembered: retry works.
        (t(5, 10, 11, 100).c(), vec![ok(5)]),
        (t(9, 10, 11, 1).c(), vec![ok(9)]),
        (t(11, 10, 11, 1).c(), vec![ok(11)]),
        // The member that failed for a transient cause is.
        (t(6, 10, 11, 1).c(), vec![rej(6, E::IdAlreadyFailed)]),
        (query(10), vec![bal(10, 212, 1050, 0, 0)]),
    ]);
}

#[test]
fn chain_open_members_are_not_evaluated() {
    // An open chain fails as a whole with chain_open on its last member; members
    // that would fail on their own still report linked_event_failed.
    check(vec![
        (t(0, 10, 11, 1).linked().c(), vec![]),
        (t(2, 10, 10, 0).linked().c(), vec![]),
        (
            t(3, 10, 11, 1).linked_end().c(),
            vec![
                rej(0, E::LinkedEventFailed),
                rej(2, E::LinkedEventFailed),
                rej(3, E::LinkedEventChainOpen),
            ],
        ),
        (t(4, 10, 11, 5000).linked().c(), vec![]),
        (
            query(11),
            vec![rej(4, E::LinkedEventChainOpen), bal(11, 0, 0, 0, 0)],
        ),
        // Not evaluated, so not remembered.
        (t(4, 10, 11, 5).c(), vec![ok(4)]),
    ]);
}

#[test]
fn a_failed_linked_chain_changes_nothing() {
    check(vec![
        (t(2, 10, 11, 100).pending(0).c(), vec![ok(2)]),
        (t(3, 1, 11, 500).linked().c(), vec![]),
        (t(4, 10, 11, 100).pending(0).linked().c(), vec![]),
        (resolve(5, POST, 2, 0).linked().c(), vec![]),
        (
            t(6, 11, 12, 1).c(),
            vec![
                rej(3, E::LinkedEventFailed),
                rej(4, E::LinkedEventFailed),
                rej(5, E::LinkedEventFailed),
                rej(6, E::ExceedsDebits),
            ],
        ),
        (query(1), vec![bal(1, 1000, 0, 0, 0)]),
        (query(10), vec![bal(10, 0, 1000, 100, 0)]),
        (query(11), vec![bal(11, 0, 0, 0, 100)]),
        (query(12), vec![bal(12, 0, 0, 0, 0)]),
        // The post was rolled back: transfer 2 is still pending, transfer 4 never existed.
        (
            resolve(7, VOID, 4, 0).c(),
            vec![rej(7, E::PendingTransferNotFound)],
        ),
        (resolve(5, POST, 2, 0).c(), vec![ok(5)]),
        (query(10), vec![bal(10, 100, 1000, 0, 0)]),
    ]);
}

#[test]
fn a_chain_sees_its_own_members() {
    check(vec![
        // A later member may spend what an earlier one credited, and resolve its pending transfer.
        (t(2, 1, 11, 300).linked().c(), vec![]),
        (t(3, 11, 10, 300).pending(0).linked().c(), vec![]),
        (resolve(4, POST, 3, 100).c(), vec![ok(2), ok(3), ok(4)]),
        (query(11), vec![bal(11, 100, 300, 0, 0)]),
        // A repeated id inside a chain is `exists` (and fails the chain).
        (t(5, 10, 11, 1).linked().c(), vec![]),
        (t(5, 10, 11, 1).linked().c(), vec![]),
        (
            t(6, 10, 11, 1).c(),
            vec![
                rej(5, E::LinkedEventFailed),
                rej(5, E::Exists),
                rej(6, E::LinkedEventFailed),
            ],
        ),
        (query(10), vec![bal(10, 0, 1100, 0, 0)]),
    ]);
}

// ----- two-phase and expiry ------------------------------------------------

#[test]
fn two_phase_post_and_void() {
    check(vec![
        (t(2, 10, 11, 100).pending(0).c(), vec![ok(2)]),
        (query(10), vec![bal(10, 0, 1000, 100, 0)]),
        (query(11), vec![bal(11, 0, 0, 0, 100)]),
        // Amount 0 posts the full amount.
        (resolve(3, POST, 2, 0).c(), vec![ok(3)]),
        (query(10), vec![bal(10, 100, 1000, 0, 0)]),
        (query(11), vec![bal(11, 0, 100, 0, 0)]),
        // A void releases all, whatever amount (≤ pending) it names.
        (t(4, 10, 11, 200).pending(0).c(), vec![ok(4)]),
        (resolve(5, VOID, 4, 10).c(), vec![ok(5)]),
        (query(10), vec![bal(10, 100, 1000, 0, 0)]),
        // A partial post releases the rest.
        (t(6, 10, 11, 200).pending(0).c(), vec![ok(6)]),
        (resolve(7, POST, 6, 1).c(), vec![ok(7)]),
        (query(10), vec![bal(10, 101, 1000, 0, 0)]),
        (query(11), vec![bal(11, 0, 101, 0, 0)]),
    ]);
}

#[test]
fn expiry_by_deadline_then_creation() {
    check(vec![
        (time(10), vec![]),
        (t(2, 10, 11, 1).pending(30).c(), vec![ok(2)]), // deadline 40
        (time(20), vec![]),
        (t(3, 10, 11, 2).pending(10).c(), vec![ok(3)]), // deadline 30
        (t(4, 10, 11, 4).pending(20).c(), vec![ok(4)]), // deadline 40
        (t(5, 10, 11, 8).pending(0).c(), vec![ok(5)]),  // never
        (time(29), vec![]),
        (query(10), vec![bal(10, 0, 1000, 15, 0)]),
        (time(30), vec![expired(3)]),
        (time(30), vec![]),
        (time(25), vec![bad_time(25)]),
        (time(1000), vec![expired(2), expired(4)]),
        (query(10), vec![bal(10, 0, 1000, 8, 0)]),
        (query(11), vec![bal(11, 0, 0, 0, 8)]),
    ]);
}

#[test]
fn expiry_runs_before_the_command() {
    // With inputs that carry time themselves.
    let cfg = EngineConfig::small();
    let mut steps = setup();
    steps.push((t(2, 10, 11, 100).pending(10).c(), vec![ok(2)]));
    let mut inputs: Vec<Input> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| Input {
            seq: Seq(i as u64 + 1),
            now: Timestamp(0),
            command: s.0,
        })
        .collect();
    let post = resolve(3, POST, 2, 0).c();
    inputs.push(Input {
        seq: Seq(100),
        now: Timestamp(10),
        command: post,
    });
    // A stale `now` is the engine's time.
    inputs.push(Input {
        seq: Seq(101),
        now: Timestamp(3),
        command: query(10),
    });
    let mut e = Engine::new(cfg);
    let mut ev = e.new_events();
    let mut r = RefLedger::new(&cfg);
    let mut got = Vec::new();
    for input in &inputs {
        e.apply(input, &mut ev);
        e.validate().unwrap();
        let want = r.apply(input);
        assert_eq!(ev.as_slice(), want.as_slice(), "{input:?}");
        assert_eq!(ev.seq, input.seq);
        got.push(want);
    }
    assert_eq!(
        got[got.len() - 2],
        vec![expired(2), rej(3, E::PendingTransferExpired)]
    );
    assert_eq!(got[got.len() - 1], vec![bal(10, 0, 1000, 0, 0)]);
    assert_eq!(e.now(), Timestamp(10));
}

#[test]
fn expiry_reported_before_a_closing_chain_and_after_an_interrupted_one() {
    check(vec![
        (t(2, 10, 11, 100).pending(10).c(), vec![ok(2)]),
        (t(3, 10, 11, 1).linked().c(), vec![]),
        (time(10), vec![rej(3, E::LinkedEventChainOpen), expired(2)]),
        (t(4, 10, 11, 100).pending(10).c(), vec![ok(4)]),
        (t(5, 10, 11, 1).linked().c(), vec![]),
        (time(19), vec![rej(5, E::LinkedEventChainOpen)]),
        (t(6, 10, 11, 1).linked().c(), vec![]),
        (time(20), vec![rej(6, E::LinkedEventChainOpen), expired(4)]),
    ]);
}

// ----- precedence ----------------------------------------------------------

/// The position of a code in `TRANSFER_CHECK_ORDER`.
fn rank(e: LedgerError) -> usize {
    ledger::TRANSFER_CHECK_ORDER
        .iter()
        .position(|x| *x == e)
        .unwrap_or_else(|| panic!("{e:?} not ranked"))
}

#[test]
fn precedence_two_problems_at_once() {
    // (transfer with two problems, the code that must win, the code it beats)
    let cases: Vec<(T, LedgerError, LedgerError)> = vec![
        (
            t(0, 10, 10, 0),
            E::IdMustNotBeZero,
            E::AccountsMustBeDifferent,
        ),
        (
            t(0, 10, 11, 1).flags(POST | VOID),
            E::IdMustNotBeZero,
            E::FlagsAreMutuallyExclusive,
        ),
        (
            t(1, 1, 10, 1000).flags(PENDING).code(5),
            E::ExistsWithDifferentFlags,
            E::ExistsWithDifferentCode,
        ),
        (
            t(1, 1, 10, 999).code(5),
            E::ExistsWithDifferentAmount,
            E::ExistsWithDifferentCode,
        ),
        (
            t(1, 1, 11, 999),
            E::ExistsWithDifferentCreditAccountId,
            E::ExistsWithDifferentAmount,
        ),
        (
            t(1, 2, 11, 1000),
            E::ExistsWithDifferentDebitAccountId,
            E::ExistsWithDifferentCreditAccountId,
        ),
        (
            t(1, 1, 10, 1000).timeout(1).pid(3),
            E::ExistsWithDifferentPendingId,
            E::ExistsWithDifferentTimeout,
        ),
        (
            t(1, 1, 10, 1000).timeout(1),
            E::ExistsWithDifferentTimeout,
            E::TimeoutReservedForPendingTransfer,
        ),
        (
            t(2, 10, 10, 1).flags(PENDING | POST),
            E::FlagsAreMutuallyExclusive,
            E::AccountsMustBeDifferent,
        ),
        (
            t(2, 10, 10, 1).pid(1),
            E::AccountsMustBeDifferent,
            E::PendingIdMustBeZero,
        ),
        (
            t(2, 10, 11, 1).pid(1).timeout(5),
            E::PendingIdMustBeZero,
            E::TimeoutReservedForPendingTransfer,
        ),
        (
            resolve(2, POST, 0, 0).timeout(5),
            E::PendingIdMustNotBeZero,
            E::TimeoutReservedForPendingTransfer,
        ),
        (
            t(2, 10, 11, 0).timeout(5),
            E::TimeoutReservedForPendingTransfer,
            E::AmountMustNotBeZero,
        ),
        (
            t(2, 99, 11, 0),
            E::AmountMustNotBeZero,
            E::DebitAccountNotFound,
        ),
        (
            t(2, 98, 99, 1),
            E::DebitAccountNotFound,
            E::CreditAccountNotFound,
        ),
        (
            t(2, 99, 20, 1),
            E::DebitAccountNotFound,
            E::AccountsMustHaveTheSameAsset,
        ),
        (
            t(2, 11, 20, 1),
            E::AccountsMustHaveTheSameAsset,
            E::ExceedsCredits,
        ),
        (
            t(2, 99, 0, 0).flags(POST).pid(77),
            E::DebitAccountNotFound,
            E::PendingTransferNotFound,
        ),
        (
            t(2, 11, 0, 0).flags(POST).pid(1),
            E::PendingTransferNotPending,
            E::PendingTransferHasDifferentDebitAccountId,
        ),
        (
            t(2, 10, 12, 1).flags(PENDING).pid(0),
            E::ExceedsDebits,
            E::ExceedsDebits,
        ),
        (t(2, 11, 12, 1), E::ExceedsCredits, E::ExceedsDebits),
    ];
    for (tr, wins, beats) in cases {
        assert!(
            rank(wins) <= rank(beats),
            "{wins:?} should come before {beats:?} in TRANSFER_CHECK_ORDER"
        );
        let id = tr.0.id.0;
        check(vec![
            (tr.c(), vec![rej(id, wins)]),
            (query(10), vec![bal(10, 0, 1000, 0, 0)]),
        ]);
    }
}

#[test]
fn precedence_on_post_and_void() {
    check(vec![
        (t(2, 10, 11, 100).pending(0).c(), vec![ok(2)]),
        (resolve(3, POST, 2, 0).c(), vec![ok(3)]),
        // Different debit account and too much: the account wins.
        (
            t(4, 11, 0, 500).flags(POST).pid(2).c(),
            vec![rej(4, E::PendingTransferHasDifferentDebitAccountId)],
        ),
        (
            t(5, 10, 10, 500).flags(POST).pid(2).c(),
            vec![rej(5, E::AccountsMustBeDifferent)],
        ),
        // Too much and already posted: the amount wins.
        (
            resolve(6, VOID, 2, 500).c(),
            vec![rej(6, E::ExceedsPendingTransferAmount)],
        ),
        (
            resolve(7, VOID, 2, 100).c(),
            vec![rej(7, E::PendingTransferAlreadyPosted)],
        ),
        // Different credit account and already posted.
        (
            t(8, 0, 10, 0).flags(VOID).pid(2).c(),
            vec![rej(8, E::PendingTransferHasDifferentCreditAccountId)],
        ),
        // Not found and a timeout: the timeout wins.
        (
            resolve(9, POST, 77, 0).timeout(1).c(),
            vec![rej(9, E::TimeoutReservedForPendingTransfer)],
        ),
    ]);
}

#[test]
fn check_order_is_the_documented_one() {
    use LedgerError::*;
    let doc = [
        LinkedEventFailed,
        LinkedEventChainOpen,
        IdMustNotBeZero,
        NotAuthorized,
        ExistsWithDifferentFlags,
        ExistsWithDifferentPendingId,
        ExistsWithDifferentTimeout,
        ExistsWithDifferentDebitAccountId,
        ExistsWithDifferentCreditAccountId,
        ExistsWithDifferentAmount,
        ExistsWithDifferentCode,
        Exists,
        IdAlreadyFailed,
        FlagsAreMutuallyExclusive,
        AccountsMustBeDifferent,
        PendingIdMustBeZero,
        PendingIdMustNotBeZero,
        TimeoutReservedForPendingTransfer,
        AmountMustNotBeZero,
        DebitAccountNotFound,
        CreditAccountNotFound,
        AccountsMustHaveTheSameAsset,
        PendingTransferNotFound,
        PendingTransferNotPending,
        PendingTransferHasDifferentDebitAccountId,
        PendingTransferHasDifferentCreditAccountId,
        ExceedsPendingTransferAmount,
        PendingTransferAlreadyPosted,
        PendingTransferAlreadyVoided,
        PendingTransferExpired,
        CapacityExceeded,
        Overflow,
        ExceedsCredits,
        ExceedsDebits,
    ];
    assert_eq!(ledger::TRANSFER_CHECK_ORDER, &doc[..]);
    // Every transfer code is ranked; account_exists is not a transfer code.
    for e in LedgerError::ALL {
        assert_eq!(
            ledger::TRANSFER_CHECK_ORDER.contains(e),
            !matches!(e, AccountExists | InvalidAsset),
            "{e:?}"
        );
    }
    let transient: Vec<LedgerError> = LedgerError::ALL
        .iter()
        .copied()
        .filter(|e| ledger::is_transient(*e))
        .collect();
    assert_eq!(
        transient,
        [
            DebitAccountNotFound,
            CreditAccountNotFound,
            PendingTransferNotFound,
            PendingTransferAlreadyPosted,
            PendingTransferAlreadyVoided,
            PendingTransferExpired,
            ExceedsCredits,
            ExceedsDebits
        ]
    );
}

// ----- ledger authorization (ARCHITECTURE.md "Ledger authorization") -------

fn not_authorized(account: u128) -> Event {
    Event::Rejected {
        target: RejectTarget::Account(AccountId(account)),
        reason: RejectReason::NotAuthorized,
    }
}

/// Owner 1 holds 101 (USD, funded 1000), owner 2 holds 201 (USD); 1 is the
/// USD issuer (owner 0, no `debits_must_not_exceed_credits`), 102 a credit
/// line of owner 1 (no limit), 103 owner 1's EUR account.
fn owners_setup() -> Vec<Step> {
    vec![
        (open(1, "USD", 0), vec![opened(1)]),
        (open_for(101, 1, "USD", D), vec![opened(101)]),
        (open_for(102, 1, "USD", 0), vec![opened(102)]),
        (open_for(201, 2, "USD", D), vec![opened(201)]),
        (t(1, 1, 101, 1000).c(), vec![ok(1)]),
    ]
}

fn check_owners(steps: Vec<Step>) {
    let mut all = owners_setup();
    all.extend(steps);
    check_cfg(EngineConfig::small(), &all);
}

#[test]
fn a_foreign_debit_is_not_authorized() {
    check_owners(vec![
        // Owner 2 moves 777 out of owner 1's account into its own.
        (
            t(2, 101, 201, 777).by(&[2]).c(),
            vec![rej(2, E::NotAuthorized)],
        ),
        // A token of several owners, none of them 101's.
        (
            t(2, 101, 201, 777).by(&[2, 3, 0]).c(),
            vec![rej(2, E::NotAuthorized)],
        ),
        (query(101), vec![bal(101, 0, 1000, 0, 0)]),
        // Its own money it may send anywhere (credits need no right).
        (t(3, 101, 201, 7).by(&[1]).c(), vec![ok(3)]),
        (t(4, 101, 201, 7).by(&[5, 1]).c(), vec![ok(4)]),
        (query(201), vec![bal(201, 0, 14, 0, 0)]),
    ]);
}

#[test]
fn a_pending_hold_on_a_foreign_account_is_not_authorized() {
    check_owners(vec![
        (
            t(2, 101, 201, 999).pending(0).by(&[2]).c(),
            vec![rej(2, E::NotAuthorized)],
        ),
        (query(101), vec![bal(101, 0, 1000, 0, 0)]),
    ]);
}

#[test]
fn debiting_an_issuer_or_credit_line_needs_an_admin() {
    check_owners(vec![
        // The issuer belongs to nobody.
        (
            t(2, 1, 201, 1_000_000_000).by(&[2]).c(),
            vec![rej(2, E::NotAuthorized)],
        ),
        (t(2, 1, 201, 1).by(&[0]).c(), vec![rej(2, E::NotAuthorized)]),
        // Owner 1's own credit line is unlimited: only an admin draws on it.
        (
            t(2, 102, 101, 50).by(&[1]).c(),
            vec![rej(2, E::NotAuthorized)],
        ),
        (t(2, 102, 101, 50).c(), vec![ok(2)]),
        (t(3, 1, 201, 5).c(), vec![ok(3)]),
        (query(201), vec![bal(201, 0, 5, 0, 0)]),
    ]);
}

#[test]
fn a_foreign_balance_read_is_not_authorized() {
    check_owners(vec![
        (query_as(101, owners(&[2])), vec![not_authorized(101)]),
        (query_as(1, owners(&[1, 2])), vec![not_authorized(1)]),
        (query_as(101, owners(&[])), vec![not_authorized(101)]),
        // Not found comes first; the owner and the admin read it.
        (query_as(999, owners(&[2])), vec![not_found(999)]),
        (
            query_as(101, owners(&[2, 1])),
            vec![bal(101, 0, 1000, 0, 0)],
        ),
        (query(101), vec![bal(101, 0, 1000, 0, 0)]),
    ]);
}

#[test]
fn post_and_void_of_a_foreign_pending_transfer() {
    check_owners(vec![
        (t(2, 101, 201, 100).pending(0).by(&[1]).c(), vec![ok(2)]),
        (t(3, 101, 201, 100).pending(0).by(&[1]).c(), vec![ok(3)]),
        // A stranger may neither post nor void.
        (
            resolve(4, POST, 2, 0).by(&[3]).c(),
            vec![rej(4, E::NotAuthorized)],
        ),
        (
            resolve(4, VOID, 2, 0).by(&[3]).c(),
            vec![rej(4, E::NotAuthorized)],
        ),
        // The payee may refuse (void) but not take (post) the money.
        (
            resolve(4, POST, 2, 0).by(&[2]).c(),
            vec![rej(4, E::NotAuthorized)],
        ),
        (resolve(4, VOID, 2, 0).by(&[2]).c(), vec![ok(4)]),
        // The payer posts.
        (resolve(5, POST, 3, 60).by(&[1]).c(), vec![ok(5)]),
        // Resolving through a resolution record is judged on its accounts.
        (
            resolve(6, POST, 5, 0).by(&[3]).c(),
            vec![rej(6, E::NotAuthorized)],
        ),
        (
            resolve(6, POST, 5, 0).by(&[1]).c(),
            vec![rej(6, E::PendingTransferNotPending)],
        ),
        (query(101), vec![bal(101, 60, 1000, 0, 0)]),
        (query(201), vec![bal(201, 0, 60, 0, 0)]),
    ]);
}

#[test]
fn not_authorized_burns_no_id_and_reveals_no_transfer() {
    check_owners(vec![
        // Owner 2 tries owner 1's next transfer id first: refused, not remembered.
        (
            t(7, 101, 201, 10).by(&[2]).c(),
            vec![rej(7, E::NotAuthorized)],
        ),
        (t(7, 101, 201, 10).by(&[1]).c(), vec![ok(7)]),
        // Probing an existing id through the victim's accounts reveals nothing
        // (`not_authorized`, not `exists` / `exists_with_different_amount`).
        (
            t(7, 101, 201, 10).by(&[2]).c(),
            vec![rej(7, E::NotAuthorized)],
        ),
        (
            t(7, 101, 201, 11).by(&[2]).c(),
            vec![rej(7, E::NotAuthorized)],
        ),
        // Inside a chain: the chain fails, nothing is remembered.
        (t(8, 101, 201, 1).linked().by(&[1]).c(), vec![]),
        (
            t(9, 101, 201, 1).by(&[2]).c(),
            vec![rej(8, E::LinkedEventFailed), rej(9, E::NotAuthorized)],
        ),
        (t(9, 101, 201, 1).by(&[1]).c(), vec![ok(9)]),
        (query(101), vec![bal(101, 11, 1000, 0, 0)]),
    ]);
}

#[test]
fn ledger_admin_may_do_all_of_it() {
    check_owners(vec![
        (t(2, 101, 201, 777).c(), vec![ok(2)]),
        (t(3, 101, 201, 100).pending(0).c(), vec![ok(3)]),
        (resolve(4, POST, 3, 0).c(), vec![ok(4)]),
        (t(5, 1, 201, 1_000_000_000).c(), vec![ok(5)]),
        (query(101), vec![bal(101, 877, 1000, 0, 0)]),
        (
            query_as(201, Actor::Admin),
            vec![bal(201, 0, 1_000_000_877, 0, 0)],
        ),
    ]);
}

// ----- a rejected transfer changes nothing ---------------------------------

#[test]
fn a_rejected_transfer_changes_no_balance() {
    let mut steps = vec![(t(2, 10, 11, 100).pending(0).c(), vec![ok(2)])];
    let rejected: Vec<(T, LedgerError)> = vec![
        (t(3, 10, 11, 5000), E::ExceedsCredits),
        (t(4, 10, 11, 901).pending(0), E::ExceedsCredits),
        (t(5, 1, 12, 1), E::ExceedsDebits),
        (resolve(6, POST, 2, 101), E::ExceedsPendingTransferAmount),
        (t(7, 1, 10, u128::MAX), E::Overflow),
        (t(8, 10, 20, 1), E::AccountsMustHaveTheSameAsset),
        (t(2, 10, 11, 100).pending(0), E::Exists),
        (t(2, 10, 11, 99).pending(0), E::ExistsWithDifferentAmount),
    ];
    for (tr, e) in rejected {
        steps.push((tr.c(), vec![rej(tr.0.id.0, e)]));
        steps.push((query(10), vec![bal(10, 0, 1000, 100, 0)]));
        steps.push((query(11), vec![bal(11, 0, 0, 0, 100)]));
        steps.push((query(1), vec![bal(1, 1000, 0, 0, 0)]));
    }
    check(steps);
}

// ----- time ------------------------------------------------------------------

#[test]
fn time_going_back_is_invalid() {
    check(vec![
        (time(100), vec![]),
        (time(99), vec![bad_time(99)]),
        (time(100), vec![]),
        (time(0), vec![bad_time(0)]),
    ]);
}

// ----- capacities ------------------------------------------------------------

#[test]
fn capacity_exceeded() {
    let mut cfg = EngineConfig::small();
    cfg.accounts_max = 3;
    cfg.assets_max = 1;
    cfg.transfers_max = 4;
    check_cfg(
        cfg,
        &[
            (open(1, "USD", 0), vec![opened(1)]),
            // A second asset does not fit.
            (open(2, "EUR", 0), vec![arej(2, E::CapacityExceeded)]),
            (open(10, "USD", D), vec![opened(10)]),
            (open(11, "USD", D), vec![opened(11)]),
            // Nor a fourth account (escrow accounts do not count).
            (open(12, "USD", D), vec![arej(12, E::CapacityExceeded)]),
            // Checks before capacity still win.
            (open(10, "USD", D), vec![arej(10, E::AccountExists)]),
            (t(1, 1, 10, 100).c(), vec![ok(1)]),
            // A remembered failed id is a record in the transfer store too.
            (t(2, 10, 11, 500).c(), vec![rej(2, E::ExceedsCredits)]),
            (t(3, 10, 11, 50).pending(0).c(), vec![ok(3)]),
            (resolve(4, POST, 3, 0).c(), vec![ok(4)]),
            (t(5, 1, 10, 1).c(), vec![rej(5, E::CapacityExceeded)]),
            // Transient, but a full store cannot remember it: a retry is
            // evaluated again (and fails the same way).
            (
                resolve(6, VOID, 3, 0).c(),
                vec![rej(6, E::PendingTransferAlreadyPosted)],
            ),
            (
                resolve(6, VOID, 3, 0).c(),
                vec![rej(6, E::PendingTransferAlreadyPosted)],
            ),
            (t(2, 10, 11, 500).c(), vec![rej(2, E::IdAlreadyFailed)]),
            (t(7, 10, 11, 5000).c(), vec![rej(7, E::CapacityExceeded)]),
            (t(1, 1, 10, 100).c(), vec![rej(1, E::Exists)]),
            // Not transient.
            (t(5, 1, 10, 1).c(), vec![rej(5, E::CapacityExceeded)]),
            (query(10), vec![bal(10, 50, 100, 0, 0)]),
        ],
    );
}

#[test]
fn capacity_exceeded_for_a_chain_longer_than_batch_max() {
    let mut cfg = EngineConfig::small();
    cfg.batch_max = 3;
    check_cfg(
        cfg,
        &[
            (open(1, "USD", 0), vec![opened(1)]),
            (open(10, "USD", D), vec![opened(10)]),
            // A chain of batch_max members is fine.
            (t(1, 1, 10, 1).linked().c(), vec![]),
            (t(2, 1, 10, 1).linked().c(), vec![]),
            (t(3, 1, 10, 1).c(), vec![ok(1), ok(2), ok(3)]),
            // One that would need more fails as soon as it is full.
            (t(4, 1, 10, 1).linked().c(), vec![]),
            (t(5, 1, 10, 1).linked().c(), vec![]),
            (
                t(6, 1, 10, 1).linked().c(),
                vec![
                    rej(4, E::LinkedEventFailed),
                    rej(5, E::LinkedEventFailed),
                    rej(6, E::CapacityExceeded),
                ],
            ),
            (t(7, 1, 10, 1).c(), vec![ok(7)]),
            (query(10), vec![bal(10, 0, 4, 0, 0)]),
        ],
    );
}

// ----- found by the cross-check (once divergences, now fixed) ---------------

/// Was a divergence, fixed in the engine: TRANSFER_CHECK_ORDER puts `accounts_must_have_the_same_asset`
/// before `pending_transfer_not_found` and `pending_transfer_has_different_*`,
/// and ARCHITECTURE.md exempts post/void only from `accounts_must_be_different`
/// (when the accounts are not given); the engine never checks the assets of the
/// accounts a post/void names.
fn post_or_void_naming_accounts_of_different_assets() -> Vec<Step> {
    vec![
        (t(2, 10, 11, 100).pending(0).c(), vec![ok(2)]),
        (
            t(3, 10, 20, 0).flags(VOID).pid(2).c(),
            vec![rej(3, E::AccountsMustHaveTheSameAsset)],
        ),
        (
            t(4, 10, 20, 0).flags(POST).pid(77).c(),
            vec![rej(4, E::AccountsMustHaveTheSameAsset)],
        ),
        // Not transient, so the id may be used again.
        (t(4, 10, 11, 0).flags(POST).pid(2).c(), vec![ok(4)]),
    ]
}

/// Was a divergence, fixed in the engine: ARCHITECTURE.md: a chain "that any non-transfer command
/// interrupts" fails with `linked_event_chain_open`; the engine keeps the chain
/// open across a `time` rejected `invalid_time` (other rejects — an unknown
/// account's query, `account_exists` — do interrupt it).
fn a_rejected_time_interrupts_an_open_chain() -> Vec<Step> {
    vec![
        (time(10), vec![]),
        (t(2, 10, 11, 1).linked().c(), vec![]),
        (time(5), vec![rej(2, E::LinkedEventChainOpen), bad_time(5)]),
        (t(3, 10, 11, 1).c(), vec![ok(3)]),
        (query(10), vec![bal(10, 1, 1000, 0, 0)]),
    ]
}

/// Was a divergence, fixed in the engine: `Engine::validate` sums every account's counters per asset
/// with `+=`; in a build with overflow checks (the test profile) it panics
/// "attempt to add with overflow" once Σ debits of an asset passes u128::MAX,
/// although every account is within bounds and the ledger accepted every step.
fn validate_survives_sums_beyond_u128() -> Vec<Step> {
    let big = u128::MAX - 2000;
    vec![
        (t(2, 1, 11, big).c(), vec![ok(2)]),
        // Σ debits posted over USD is now 1000 + 2 × big.
        (t(3, 11, 10, big).c(), vec![ok(3)]),
        (query(10), vec![bal(10, 0, 1000 + big, 0, 0)]),
    ]
}

/// Was a divergence, fixed in the engine: "All arithmetic is checked; overflow is a reject, never a
/// wrap" (semantics.md, Units): a pending transfer whose deadline (creation +
/// `timeout_ns`) is beyond u64 should be rejected `overflow` (TigerBeetle:
/// `overflows_timeout`); the engine accepts it, and it never expires.
fn pending_deadline_beyond_u64_is_overflow() -> Vec<Step> {
    vec![
        (time(100), vec![]),
        (t(2, 1, 11, 5).pending(u64::MAX - 101).c(), vec![ok(2)]),
        (
            t(3, 1, 11, 5).pending(u64::MAX - 99).c(),
            vec![rej(3, E::Overflow)],
        ),
        // ... which wins over exceeds_credits.
        (
            t(4, 11, 10, 500).pending(u64::MAX).c(),
            vec![rej(4, E::Overflow)],
        ),
        (time(u64::MAX - 1), vec![expired(2)]),
        (query(11), vec![bal(11, 0, 0, 0, 0)]),
    ]
}

/// Was a divergence, fixed in the engine: ARCHITECTURE.md, ledger 4: a pending transfer "expires
/// when engine time ≥ creation + timeout"; with a deadline of exactly u64::MAX
/// the engine never expires it, not even at time u64::MAX (one less works).
fn a_deadline_of_u64_max_expires() -> Vec<Step> {
    vec![
        (time(100), vec![]),
        (t(2, 1, 11, 5).pending(u64::MAX - 100).c(), vec![ok(2)]),
        (time(u64::MAX - 1), vec![]),
        (time(u64::MAX), vec![expired(2)]),
        (query(11), vec![bal(11, 0, 0, 0, 0)]),
    ]
}

fn with_setup(steps: Vec<Step>) -> Vec<Step> {
    let mut all = setup();
    all.extend(steps);
    all
}

#[test]
fn fixed_divergences_hold_for_the_reference() {
    for steps in [
        post_or_void_naming_accounts_of_different_assets(),
        a_rejected_time_interrupts_an_open_chain(),
        validate_survives_sums_beyond_u128(),
        pending_deadline_beyond_u64_is_overflow(),
        a_deadline_of_u64_max_expires(),
    ] {
        let all = with_setup(steps);
        let cmds: Vec<Command> = all.iter().map(|s| s.0).collect();
        compare(
            "reference",
            &all,
            &reference_events(EngineConfig::small(), &cmds),
        );
    }
}

#[test]
fn engine_post_or_void_naming_accounts_of_different_assets() {
    check(post_or_void_naming_accounts_of_different_assets());
}

#[test]
fn engine_a_rejected_time_interrupts_an_open_chain() {
    check(a_rejected_time_interrupts_an_open_chain());
}

#[test]
fn engine_validate_survives_sums_beyond_u128() {
    check(validate_survives_sums_beyond_u128());
}

#[test]
fn engine_pending_deadline_beyond_u64_is_overflow() {
    check(pending_deadline_beyond_u64_is_overflow());
}

#[test]
fn engine_a_deadline_of_u64_max_expires() {
    check(a_deadline_of_u64_max_expires());
}
