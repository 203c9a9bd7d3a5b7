//! Transfers exactly-once forever: the ledger's hot store, history runs
//! installed through `install_history`, eviction, and the transfer queries.
//!
//! Each test drives an engine with a `MemHistory` attached and a
//! `HistoryCutter` fed every input's `Events::changes()`, as the runtime's
//! history writer does; commands in, expected events out. Sizes are small so
//! that many installs and evictions happen in a few thousand inputs; the
//! 1,100,000-transfer run on the default configuration is behind
//! `TEST_LONG=1`.

use bourse_tests::fixtures::plain_transfer;
use bourse_tests::ref_ledger::RefLedger;
use engine::history::*;
use engine::*;
use LedgerError as E;

const D: u16 = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
const PENDING: u16 = TransferFlags::PENDING;
const POST: u16 = TransferFlags::POST_PENDING;
const VOID: u16 = TransferFlags::VOID_PENDING;
const LINKED: u16 = TransferFlags::LINKED;

/// An engine with a history and its cutter, numbering inputs 1, 2, 3, …
struct H {
    e: Engine,
    ev: Events,
    history: MemHistory,
    cutter: HistoryCutter,
    seq: u64,
    now: u64,
    /// Run `Engine::validate` after every input (it walks all of memory).
    validate: bool,
}

impl H {
    fn new(cfg: EngineConfig) -> H {
        let mut e = Engine::new(cfg);
        let history = MemHistory::new();
        e.attach_history(Box::new(history.clone()));
        let ev = e.new_events();
        H {
            e,
            ev,
            cutter: HistoryCutter::new(history.clone(), 0),
            history,
            seq: 0,
            now: 0,
            validate: true,
        }
    }

    /// Accounts 1 (USD issuer, nobody's), 10 (owner 1) and 11 (owner 2), both
    /// `debits_must_not_exceed_credits`.
    fn with_accounts(cfg: EngineConfig) -> H {
        let mut h = H::new(cfg);
        for c in accounts() {
            let Command::OpenAccount(a) = c else {
                unreachable!()
            };
            assert_eq!(h.apply(c), vec![Event::AccountOpened { id: a.id }]);
        }
        h
    }

    fn apply(&mut self, command: Command) -> Vec<Event> {
        self.seq += 1;
        let input = Input {
            seq: Seq(self.seq),
            now: Timestamp(self.now),
            command,
        };
        self.e.apply(&input, &mut self.ev);
        if self.validate {
            self.e.validate().expect("engine invariants");
        }
        self.cutter.feed(self.ev.changes());
        self.ev.as_slice().to_vec()
    }

    /// Cuts a run of every change so far and installs it.
    fn install(&mut self) {
        let through = Seq(self.seq);
        let (run, checksum) = self.cutter.cut(through);
        let got = self.apply(Command::InstallHistory {
            run,
            through_seq: through,
            checksum,
        });
        assert_eq!(
            got,
            vec![Event::HistoryInstalled {
                run,
                through_seq: through
            }]
        );
    }

    fn transfer(&mut self, t: TransferSpec) -> Vec<Event> {
        self.transfer_as(t, Actor::Admin)
    }

    fn transfer_as(&mut self, t: TransferSpec, actor: Actor) -> Vec<Event> {
        self.apply(Command::Transfer {
            transfer: t,
            batch_end: !t.flags.has(LINKED),
            actor,
        })
    }
}

fn accounts() -> Vec<Command> {
    [(1, 0, 0), (10, 1, D), (11, 2, D)]
        .map(|(id, owner, flags)| {
            Command::OpenAccount(AccountSpec {
                id: AccountId(id),
                owner: OwnerId(owner),
                asset: Asset::from_str_code("USD").unwrap(),
                flags: AccountFlags(flags),
            })
        })
        .to_vec()
}

fn t(id: u128, dr: u128, cr: u128, amount: u128) -> TransferSpec {
    plain_transfer(id, dr, cr, amount)
}

fn pending(id: u128, dr: u128, cr: u128, amount: u128, timeout_ns: u64) -> TransferSpec {
    TransferSpec {
        flags: TransferFlags(PENDING),
        timeout_ns,
        ..t(id, dr, cr, amount)
    }
}

fn resolve(id: u128, flag: u16, pending_id: u128) -> TransferSpec {
    TransferSpec {
        flags: TransferFlags(flag),
        pending_id: TransferId(pending_id),
        ..t(id, 0, 0, 0)
    }
}

fn ok(id: u128) -> Vec<Event> {
    vec![Event::TransferOk { id: TransferId(id) }]
}

fn rej(id: u128, reason: LedgerError) -> Vec<Event> {
    vec![Event::TransferRejected {
        id: TransferId(id),
        reason,
    }]
}

fn owners(ids: &[u64]) -> Actor {
    Actor::owners(&ids.iter().map(|&o| OwnerId(o)).collect::<Vec<_>>()).unwrap()
}

fn small(transfers_max: u32) -> EngineConfig {
    EngineConfig {
        transfers_max,
        ..EngineConfig::small()
    }
}

fn balance(h: &mut H, account: u128) -> Vec<Event> {
    h.apply(Command::QueryBalance {
        account: AccountId(account),
        actor: Actor::Admin,
    })
}

/// Plain transfers 1 → 10 with fresh ids from `from`, installing every
/// `every` transfers, until `ids` are all evicted.
fn push_out(h: &mut H, from: u128, n: u128, every: u128, ids: &[u128]) {
    for k in 0..n {
        assert_eq!(h.transfer(t(from + k, 1, 10, 1)), ok(from + k));
        if (k + 1) % every == 0 {
            h.install();
        }
    }
    for &id in ids {
        assert!(
            !h.e.transfer_in_memory(TransferId(id)),
            "transfer {id} still in memory"
        );
    }
}

#[test]
fn an_id_only_in_history_answers_as_it_did_in_memory() {
    let mut h = H::with_accounts(small(16));
    assert_eq!(h.transfer(t(1, 1, 10, 1000)), ok(1));
    assert_eq!(h.transfer(t(2, 10, 11, 5000)), rej(2, E::ExceedsCredits));
    assert_eq!(h.transfer(pending(3, 10, 11, 100, 0)), ok(3));
    assert_eq!(h.transfer(resolve(4, POST, 3)), ok(4));
    assert_eq!(h.transfer(pending(5, 10, 11, 50, 0)), ok(5));
    assert_eq!(h.transfer(resolve(6, VOID, 5)), ok(6));
    assert_eq!(h.transfer(pending(7, 10, 11, 20, 10)), ok(7));
    h.now = 100;
    assert_eq!(
        h.apply(Command::Time {
            now: Timestamp(100)
        }),
        vec![Event::TransferExpired { id: TransferId(7) }]
    );
    let before = balance(&mut h, 10);
    h.install();
    push_out(&mut h, 1000, 60, 10, &[1, 2, 3, 4, 5, 6, 7]);
    assert!(h.e.transfers_in_memory() <= 16);
    let after_push = balance(&mut h, 10);
    // Every retry answers from history exactly as memory did.
    assert_eq!(h.transfer(t(1, 1, 10, 1000)), rej(1, E::Exists));
    assert_eq!(
        h.transfer(t(1, 1, 10, 999)),
        rej(1, E::ExistsWithDifferentAmount)
    );
    assert_eq!(
        h.transfer(TransferSpec {
            code: 9,
            ..t(1, 1, 10, 1000)
        }),
        rej(1, E::ExistsWithDifferentCode)
    );
    assert_eq!(
        h.transfer(t(1, 1, 11, 1000)),
        rej(1, E::ExistsWithDifferentCreditAccountId)
    );
    assert_eq!(h.transfer(t(2, 10, 11, 5000)), rej(2, E::IdAlreadyFailed));
    assert_eq!(h.transfer(t(2, 10, 11, 1)), rej(2, E::IdAlreadyFailed));
    assert_eq!(h.transfer(resolve(4, POST, 3)), rej(4, E::Exists));
    assert_eq!(
        h.transfer(resolve(20, VOID, 3)),
        rej(20, E::PendingTransferAlreadyPosted)
    );
    assert_eq!(
        h.transfer(resolve(21, POST, 5)),
        rej(21, E::PendingTransferAlreadyVoided)
    );
    assert_eq!(
        h.transfer(resolve(22, POST, 7)),
        rej(22, E::PendingTransferExpired)
    );
    assert_eq!(
        h.transfer(resolve(23, POST, 1)),
        rej(23, E::PendingTransferNotPending)
    );
    // Authorization is decided on the transfer in history too: owner 2 may
    // not post a transfer debiting owner 1's account.
    assert_eq!(
        h.transfer_as(resolve(24, POST, 3), owners(&[2])),
        rej(24, E::NotAuthorized)
    );
    // The failures just remembered are remembered too.
    assert_eq!(
        h.transfer(resolve(20, VOID, 3)),
        rej(20, E::IdAlreadyFailed)
    );
    assert_eq!(balance(&mut h, 10), after_push);
    assert_ne!(before, after_push);
}

#[test]
fn memory_is_a_live_limit_not_a_lifetime_one() {
    let mut h = H::with_accounts(small(4));
    for id in 1..=4 {
        assert_eq!(h.transfer(t(id, 1, 10, 1)), ok(id));
    }
    // Nothing installed yet: memory is full.
    assert_eq!(h.transfer(t(5, 1, 10, 1)), rej(5, E::CapacityExceeded));
    h.install();
    assert_eq!(h.transfer(t(5, 1, 10, 1)), ok(5));
    // Pending transfers stay in memory however much is installed.
    h.install();
    for id in 6..=8 {
        assert_eq!(h.transfer(pending(id, 10, 11, 1, 0)), ok(id));
    }
    h.install();
    assert_eq!(h.transfer(t(9, 1, 10, 1)), ok(9));
    h.install();
    assert_eq!(h.transfer(t(10, 1, 10, 1)), ok(10));
    for id in 6..=8 {
        assert!(h.e.transfer_in_memory(TransferId(id)));
    }
    // Resolved, a pending transfer may leave too (the post needs a slot:
    // 10 must be installed first).
    assert_eq!(
        h.transfer(resolve(11, POST, 6)),
        rej(11, E::CapacityExceeded)
    );
    h.install();
    assert_eq!(h.transfer(resolve(11, POST, 6)), ok(11));
    h.install();
    assert_eq!(h.transfer(t(12, 1, 10, 1)), ok(12));
    assert_eq!(h.transfer(t(13, 1, 10, 1)), ok(13));
    assert!(!h.e.transfer_in_memory(TransferId(6)));
    assert_eq!(h.transfer(resolve(14, VOID, 6)), {
        rej(14, E::PendingTransferAlreadyPosted)
    });
}

#[test]
fn installs_are_checked_and_a_rejected_one_changes_nothing() {
    let run_rejected = |run| {
        vec![Event::Rejected {
            target: RejectTarget::HistoryRun(run),
            reason: RejectReason::HistoryRunRejected,
        }]
    };
    // No history attached: nothing can be installed.
    let mut bare = Engine::new(small(16));
    let mut ev = bare.new_events();
    bare.apply(
        &Input {
            seq: Seq(5),
            now: Timestamp(0),
            command: Command::InstallHistory {
                run: 1,
                through_seq: Seq(1),
                checksum: 0,
            },
        },
        &mut ev,
    );
    assert_eq!(ev.as_slice(), run_rejected(1).as_slice());
    assert_eq!(bare.installed_history(), None);

    let mut h = H::with_accounts(small(16));
    assert_eq!(h.transfer(t(1, 1, 10, 1)), ok(1));
    let through = Seq(h.seq);
    let (run, checksum) = h.cutter.cut(through);
    let hash = h.e.state_hash();
    let install = |run, through_seq, checksum| Command::InstallHistory {
        run,
        through_seq,
        checksum,
    };
    // Out of order, unknown checksum, through not before the install itself.
    assert_eq!(h.apply(install(2, through, checksum)), run_rejected(2));
    assert_eq!(h.apply(install(1, through, checksum ^ 1)), run_rejected(1));
    assert_eq!(
        h.apply(install(1, Seq(h.seq + 1), checksum)),
        run_rejected(1)
    );
    assert_eq!(h.apply(install(1, Seq(0), checksum)), run_rejected(1));
    assert_eq!(h.e.state_hash(), hash);
    assert_eq!(h.e.installed_history(), None);
    assert_eq!(
        h.apply(install(run, through, checksum)),
        vec![Event::HistoryInstalled {
            run,
            through_seq: through
        }]
    );
    assert_eq!(h.e.installed_history(), Some((run, through, checksum)));
    // The same run again, or one that does not move forward.
    assert_eq!(h.apply(install(run, through, checksum)), run_rejected(run));
    let (run2, checksum2) = h.cutter.cut(through);
    assert_eq!(
        h.apply(install(run2, through, checksum2)),
        run_rejected(run2)
    );
}

#[test]
fn every_change_is_published_once_with_its_new_value() {
    let mut h = H::with_accounts(small(64));
    assert_eq!(h.transfer(t(1, 1, 10, 100)), ok(1));
    let c = h.ev.changes().to_vec();
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].spec.id, c[0].state),
        (TransferId(1), TransferState::Posted)
    );
    assert_eq!(
        (c[0].ledger_seq, c[0].created_seq, c[0].change_seq),
        (1, Seq(h.seq), Seq(h.seq))
    );

    assert_eq!(h.transfer(pending(2, 10, 11, 30, 5)), ok(2));
    let created = h.seq;
    assert_eq!(h.ev.changes()[0].state, TransferState::Pending);
    assert_eq!(h.transfer(resolve(3, POST, 2)), ok(3));
    let states: Vec<_> =
        h.ev.changes()
            .iter()
            .map(|r| {
                (
                    r.spec.id.0,
                    r.state,
                    r.ledger_seq,
                    r.created_seq.0,
                    r.change_seq.0,
                )
            })
            .collect();
    assert_eq!(
        states,
        vec![
            (3, TransferState::Resolution, 3, h.seq, h.seq),
            (2, TransferState::PendingPosted, 2, created, h.seq),
        ]
    );
    assert_eq!(
        (h.ev.changes()[0].debit_account, h.ev.changes()[0].amount),
        (AccountId(10), Amount(30)),
        "a post records the accounts and amount it moved"
    );

    // A failed chain publishes only the remembered failure; its rolled-back
    // members nothing.
    let a = TransferSpec {
        flags: TransferFlags(LINKED),
        ..t(4, 1, 10, 5)
    };
    assert_eq!(h.transfer(a), vec![]);
    assert_eq!(
        h.transfer(t(5, 11, 10, 10_000)),
        vec![
            Event::TransferRejected {
                id: TransferId(4),
                reason: E::LinkedEventFailed
            },
            Event::TransferRejected {
                id: TransferId(5),
                reason: E::ExceedsCredits
            },
        ]
    );
    let c = h.ev.changes().to_vec();
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].spec.id, c[0].state, c[0].ledger_seq),
        (TransferId(5), TransferState::Failed(E::ExceedsCredits), 0)
    );
    // Queries and non-transient failures publish nothing.
    balance(&mut h, 10);
    assert!(h.ev.changes().is_empty());
    assert_eq!(
        h.transfer(t(6, 10, 10, 1)),
        rej(6, E::AccountsMustBeDifferent)
    );
    assert!(h.ev.changes().is_empty());
    // An expiry publishes the expired record.
    assert_eq!(h.transfer(pending(7, 10, 11, 1, 5)), ok(7));
    h.now = 1_000;
    assert_eq!(
        h.apply(Command::Time {
            now: Timestamp(1_000)
        }),
        vec![Event::TransferExpired { id: TransferId(7) }]
    );
    let c = h.ev.changes().to_vec();
    assert_eq!((c.len(), c[0].state), (1, TransferState::PendingExpired));
    // The next ledger_seq follows the last stored (the failed chain took none).
    assert_eq!(h.transfer(t(8, 1, 10, 1)), ok(8));
    assert_eq!(h.ev.changes()[0].ledger_seq, 5);
}

#[test]
fn expiries_beyond_one_inputs_bound_wait_and_still_answer_expired() {
    // events_max 8 → at most 4 expiries per input.
    let cfg = EngineConfig {
        events_max: 8,
        ..small(64)
    };
    let mut h = H::with_accounts(cfg);
    assert_eq!(h.transfer(t(1, 1, 10, 100)), ok(1));
    for id in 10..20 {
        assert_eq!(h.transfer(pending(id, 10, 11, 1, 10)), ok(id));
    }
    h.now = 50;
    let expired = |ids: std::ops::Range<u128>| -> Vec<Event> {
        ids.map(|id| Event::TransferExpired { id: TransferId(id) })
            .collect()
    };
    assert_eq!(
        h.apply(Command::Time { now: Timestamp(50) }),
        expired(10..14)
    );
    assert!(h.e.next_deadline().is_some_and(|d| d.0 <= 50));
    // This input expires four more first; 19 is due but not yet expired.
    let mut want = expired(14..18);
    want.extend(rej(30, E::PendingTransferExpired));
    assert_eq!(h.transfer(resolve(30, POST, 19)), want);
    let mut want = expired(18..20);
    want.extend(ok(31));
    assert_eq!(h.transfer(t(31, 1, 10, 1)), want);
    assert_eq!(h.e.next_deadline(), None);
}

/// A deterministic mix: plain transfers, pending ones posted or voided
/// later, some failures; installs every `every` changes.
fn churn(h: &mut H, n: u128, every: usize, first_id: u128) -> Vec<u128> {
    let mut ids = Vec::new();
    let mut open_pending = Vec::new();
    let mut since = 0;
    for k in 0..n {
        let id = first_id + k;
        let spec = match k % 7 {
            3 => pending(id, 10, 11, 1, 0),
            5 if !open_pending.is_empty() => {
                let p = open_pending.remove(0);
                resolve(id, if k % 2 == 0 { POST } else { VOID }, p)
            }
            6 => t(id, 11, 10, u128::MAX / 4), // exceeds_credits: a failed id
            _ => t(id, 1, 10, 2),
        };
        let got = h.transfer(spec);
        assert!(
            !got.iter().any(|e| matches!(
                e,
                Event::TransferRejected {
                    reason: E::CapacityExceeded,
                    ..
                }
            )),
            "transfer #{k} hit capacity_exceeded with {} in memory",
            h.e.transfers_in_memory()
        );
        if got == ok(id) && spec.flags.has(PENDING) {
            open_pending.push(id);
        }
        ids.push(id);
        since += h.ev.changes().len();
        if since >= every {
            h.install();
            since = 0;
        }
    }
    ids
}

#[test]
fn a_small_memory_crosses_many_installs_and_every_id_stays_exactly_once() {
    let mut h = H::with_accounts(small(512));
    let ids = churn(&mut h, 20_000, 200, 1);
    assert!(h.history.runs() >= 50, "only {} runs", h.history.runs());
    assert!(h.e.transfers_in_memory() <= 512);
    for &id in ids
        .iter()
        .step_by(97)
        .chain([ids[0], ids[3], ids[5], ids[6]].iter())
    {
        let r = h.e.lookup_transfer(TransferId(id));
        let want = match r {
            Some(r) => {
                // Every stored transfer, retried as sent, is `exists`.
                let got = h.transfer(r.spec);
                assert_eq!(got, rej(id, E::Exists), "retry of {id}");
                continue;
            }
            None => rej(id, E::IdAlreadyFailed),
        };
        let got = h.transfer(t(id, 11, 10, u128::MAX / 4));
        assert_eq!(got, want, "retry of failed id {id}");
    }
}

#[test]
fn snapshots_round_trip_after_installs() {
    let mut h = H::with_accounts(small(256));
    let ids = churn(&mut h, 3_000, 100, 1);
    let bytes = h.e.snapshot();
    let mut back = Engine::restore(*h.e.config(), &bytes).expect("restore");
    back.attach_history(Box::new(h.history.clone()));
    assert_eq!(back.state_hash(), h.e.state_hash());
    assert_eq!(back.installed_history(), h.e.installed_history());
    assert_eq!(back.snapshot(), bytes);
    for &id in ids.iter().step_by(37) {
        assert_eq!(
            back.lookup_transfer(TransferId(id)),
            h.e.lookup_transfer(TransferId(id))
        );
    }
    let f = AccountFilter {
        account: AccountId(10),
        by: RangeBy::LedgerSeq,
        lo: 0,
        hi: u64::MAX,
        limit: 1024,
        newest_first: true,
    };
    assert_eq!(back.account_transfers(&f), h.e.account_transfers(&f));
    // And both go on identically.
    let mut ev = back.new_events();
    let input = Input {
        seq: Seq(h.seq + 1),
        now: Timestamp(h.now),
        command: Command::Transfer {
            transfer: t(ids[0], 1, 10, 2),
            batch_end: true,
            actor: Actor::Admin,
        },
    };
    back.apply(&input, &mut ev);
    assert_eq!(ev.as_slice(), h.transfer(t(ids[0], 1, 10, 2)).as_slice());
    assert_eq!(back.state_hash(), h.e.state_hash());
}

#[test]
fn transfer_queries_merge_memory_and_history() {
    let mut h = H::new(small(64));
    let mut model = RefLedger::new(&EngineConfig {
        transfers_max: u32::MAX,
        ..EngineConfig::small()
    });
    // The model sees every input the engine does.
    let mut inputs = Vec::new();
    fn apply(h: &mut H, c: Command, inputs: &mut Vec<Input>) {
        h.apply(c);
        inputs.push(Input {
            seq: Seq(h.seq),
            now: Timestamp(h.now),
            command: c,
        });
    }
    for c in accounts() {
        apply(&mut h, c, &mut inputs);
    }
    for k in 0..300u128 {
        h.now = k as u64 * 10;
        let spec = match k % 5 {
            0 => pending(5000 + k, 10, 11, 1, 0),
            1 => resolve(9000 + k, POST, 5000 + k - 1),
            2 => t(k + 1, 11, 10, 1),
            _ => t(k + 1, 1, 10, 3),
        };
        if k == 0 {
            for seed in [t(1_000_000, 1, 11, 1_000), t(1_000_001, 1, 10, 1_000)] {
                let c = Command::Transfer {
                    transfer: seed,
                    batch_end: true,
                    actor: Actor::Admin,
                };
                apply(&mut h, c, &mut inputs);
            }
        }
        apply(
            &mut h,
            Command::Transfer {
                transfer: spec,
                batch_end: true,
                actor: Actor::Admin,
            },
            &mut inputs,
        );
        if k % 40 == 39 {
            h.install();
            let (run, _, checksum) = h.e.installed_history().unwrap();
            model.hold_run(run, checksum);
            inputs.push(Input {
                seq: Seq(h.seq),
                now: Timestamp(h.now),
                command: Command::InstallHistory {
                    run,
                    through_seq: h.e.installed_history().unwrap().1,
                    checksum,
                },
            });
        }
    }
    for i in &inputs {
        model.apply(i);
    }
    assert!(
        !h.e.transfer_in_memory(TransferId(3)),
        "the oldest left memory"
    );
    let check = |h: &mut H, model: &mut RefLedger, command: Command| {
        let got = h.apply(command);
        let want = model.apply(&Input {
            seq: Seq(h.seq),
            now: Timestamp(h.now),
            command,
        });
        assert_eq!(got, want, "{command:?}");
        if let [Event::Transfers { rows, .. }] = got.as_slice() {
            assert_eq!(h.ev.rows(*rows), model.rows(), "{command:?}");
        }
        got
    };
    let q = |account: u128, by, lo, hi, limit, newest_first, actor| Command::GetAccountTransfers {
        filter: AccountFilter {
            account: AccountId(account),
            by,
            lo,
            hi,
            limit,
            newest_first,
        },
        actor,
    };
    use RangeBy::{LedgerSeq, Time};
    let admin = Actor::Admin;
    for (newest, limit) in [(false, 7), (true, 7), (false, 1024), (true, 1)] {
        check(
            &mut h,
            &mut model,
            q(10, LedgerSeq, 0, u64::MAX, limit, newest, admin),
        );
        check(
            &mut h,
            &mut model,
            q(11, LedgerSeq, 20, 200, limit, newest, owners(&[2])),
        );
        check(
            &mut h,
            &mut model,
            q(10, Time, 500, 2_400, limit, newest, owners(&[1, 9])),
        );
        check(&mut h, &mut model, q(1, Time, 0, 10, limit, newest, admin));
    }
    // Paging oldest first by ledger_seq reaches every row once.
    let (mut lo, mut all) = (0u64, Vec::new());
    loop {
        let got = check(
            &mut h,
            &mut model,
            q(10, LedgerSeq, lo, u64::MAX, 25, false, admin),
        );
        let [Event::Transfers { rows, more }] = got.as_slice() else {
            panic!("{got:?}")
        };
        let page = h.ev.rows(*rows).to_vec();
        lo = page.last().unwrap().ledger_seq + 1;
        all.extend(page);
        if !*more {
            break;
        }
    }
    assert!(all.windows(2).all(|w| w[0].ledger_seq < w[1].ledger_seq));
    // Every transfer of the mix touches account 10, and one seed.
    assert_eq!(all.len(), 301);
    // Rejections, in order: account_not_found, not_authorized, invalid_filter.
    for (c, reason) in [
        (
            q(99, LedgerSeq, 0, 9, 5, false, admin),
            RejectReason::AccountNotFound,
        ),
        (
            q(10, LedgerSeq, 0, 9, 5, false, owners(&[2])),
            RejectReason::NotAuthorized,
        ),
        (
            q(10, LedgerSeq, 0, 9, 0, false, admin),
            RejectReason::InvalidFilter,
        ),
        (
            q(10, LedgerSeq, 0, 9, 1025, false, admin),
            RejectReason::InvalidFilter,
        ),
        (
            q(10, Time, 9, 8, 5, false, admin),
            RejectReason::InvalidFilter,
        ),
        (
            q(1, Time, 9, 8, 5, false, owners(&[1])),
            RejectReason::NotAuthorized,
        ),
    ] {
        assert_eq!(
            check(&mut h, &mut model, c),
            vec![Event::Rejected {
                target: RejectTarget::Account(match c {
                    Command::GetAccountTransfers { filter, .. } => filter.account,
                    _ => unreachable!(),
                }),
                reason
            }]
        );
    }
    // Lookups: one's own (either side), a stranger's, a failed id, an absent one.
    let lookup = |id: u128, actor| Command::LookupTransfer {
        id: TransferId(id),
        actor,
    };
    let not_found = |id| {
        vec![Event::Rejected {
            target: RejectTarget::Transfer(TransferId(id)),
            reason: RejectReason::TransferNotFound,
        }]
    };
    for id in [3, 5000, 9001, 298, 1_000_000] {
        for actor in [admin, owners(&[1]), owners(&[2])] {
            check(&mut h, &mut model, lookup(id, actor));
        }
    }
    assert_eq!(
        check(&mut h, &mut model, lookup(4, owners(&[3]))),
        not_found(4)
    );
    assert_eq!(
        check(&mut h, &mut model, lookup(1_000_000, owners(&[1]))),
        not_found(1_000_000)
    );
    assert_eq!(
        h.transfer(t(77, 11, 10, u128::MAX / 2)),
        rej(77, E::ExceedsCredits)
    );
    assert_eq!(check(&mut h, &mut model, lookup(77, admin)), not_found(77));
    assert_eq!(
        check(&mut h, &mut model, lookup(123_456, admin)),
        not_found(123_456)
    );
    let got = check(&mut h, &mut model, lookup(5000, owners(&[2])));
    let [Event::Transfers { rows, .. }] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!(h.ev.rows(*rows)[0].state, TransferState::PendingPosted);
}

#[test]
fn records_encode_canonically() {
    let r = TransferRecord {
        spec: resolve(5, POST, 4),
        debit_account: AccountId(10),
        credit_account: AccountId(u128::MAX),
        amount: Amount(7),
        state: TransferState::Failed(E::ExceedsCredits),
        ledger_seq: 0,
        created_seq: Seq(9),
        created: Timestamp(u64::MAX),
        change_seq: Seq(9),
    };
    let mut b = [0u8; RECORD_LEN];
    encode_record(&r, &mut b);
    assert_eq!(decode_record(&b), Ok(r));
    assert_eq!(&b[0..16], &5u128.to_le_bytes());
    assert_eq!(b[140], 6);
    assert_eq!(&b[141..143], &E::ExceedsCredits.code().to_le_bytes());
    let mut bad = b;
    bad[140] = 7;
    assert_eq!(decode_record(&bad), Err(RecordDecodeError::BadState(7)));
    let mut bad = b;
    bad[143] = 1;
    assert_eq!(decode_record(&bad), Err(RecordDecodeError::NonZeroPadding));
    let mut bad = b;
    bad[140] = 0; // posted with a failure code
    assert!(decode_record(&bad).is_err());
    // The run checksum does not depend on the order records come in.
    let other = TransferRecord {
        spec: t(3, 1, 10, 1),
        state: TransferState::Posted,
        ..r
    };
    assert_eq!(run_checksum(&mut [r, other]), run_checksum(&mut [other, r]));
    assert_ne!(run_checksum(&mut [r]), run_checksum(&mut [other]));
}

/// `TEST_LONG=1`: 1,100,000 transfers on the default configuration (memory
/// for 1,048,576), a run cut every ~100,000 changes.
#[test]
fn more_transfers_than_memory_holds_on_the_default_configuration() {
    if std::env::var("TEST_LONG").is_err() {
        eprintln!("skipped: set TEST_LONG=1 to run 1,100,000 transfers");
        return;
    }
    let mut h = H::with_accounts(EngineConfig::default());
    h.validate = false;
    let n = 1_100_000u128;
    let mut since = 0;
    for id in 1..=n {
        let got = h.transfer(t(id, 1, 10, 1));
        assert_eq!(got, ok(id), "transfer {id}");
        since += 1;
        if since == 100_000 {
            h.install();
            since = 0;
        }
    }
    for id in (1..=n).step_by(10_007).chain([1, 2, n]) {
        assert_eq!(
            h.transfer(t(id, 1, 10, 1)),
            rej(id, E::Exists),
            "retry {id}"
        );
    }
}
