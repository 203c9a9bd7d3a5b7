//! Allocation test: once built and warmed up, the engine makes no heap
//! allocation per command. A counting global allocator wraps the system
//! allocator and counts only on the thread that sets the `COUNTING` flag, so
//! the test harness's own threads do not pollute the count.
#![allow(unsafe_code)]

use bourse_tests::gen::Gen;
use bourse_tests::reference::Reference;
use engine::{Engine, EngineConfig, Input};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the only extra work is a
// relaxed atomic add and a read of a const-initialised thread local, neither
// of which allocates or unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `n` mixed inputs (every order type, cancels, replaces, stops, icebergs,
/// expiries, mass cancels, halts, book queries, rejects) for `seed`.
fn stream(seed: u64, n: usize) -> Vec<Input> {
    let mut gen = Gen::new(seed);
    let mut r = Reference::new();
    let mut max_live = 0;
    let inputs = (0..n)
        .map(|_| {
            let input = gen.next(&r);
            r.apply(&input);
            max_live = max_live.max(r.live_count());
            input
        })
        .collect();
    // Stay within EngineConfig::small() so no capacity reject is involved.
    assert!(max_live < 3_000, "stream too deep: {max_live} live orders");
    inputs
}

#[test]
fn no_allocation_per_command_in_steady_state() {
    // The counter counts (sanity check of the harness itself).
    COUNTING.with(|c| c.set(true));
    drop(std::hint::black_box(Box::new(1u64)));
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCS.swap(0, Ordering::Relaxed), 1);

    let inputs = stream(7, 60_000);
    let (warmup, measured) = inputs.split_at(10_000);
    let mut engine = Engine::new(EngineConfig::small());
    let mut events = engine.new_events();
    for input in warmup {
        engine.apply(input, &mut events);
    }
    COUNTING.with(|c| c.set(true));
    for input in measured {
        engine.apply(input, &mut events);
    }
    COUNTING.with(|c| c.set(false));
    let n = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(
        n,
        0,
        "{n} heap allocations over {} commands",
        measured.len()
    );
    assert!(engine.validate().is_ok());
}

/// The ledger with a history attached: transfers, posts, failures, retries
/// answered from history, lookups, account queries and installs allocate
/// nothing in the engine (the history writer's side, here the cutter, is
/// not counted: it runs off the engine thread in a server).
#[test]
fn no_allocation_per_ledger_command_with_history() {
    use engine::history::*;
    use engine::*;
    let mut cfg = EngineConfig::small();
    cfg.transfers_max = 1024;
    let mut engine = Engine::new(cfg);
    let store = MemHistory::new();
    engine.attach_history(Box::new(store.clone()));
    let mut cutter = HistoryCutter::new(store, 0);
    let mut events = engine.new_events();
    let d = AccountFlags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS);
    let mut seq = 0u64;
    let mut run =
        |command: Command, counted: bool, engine: &mut Engine, cutter: &mut HistoryCutter| {
            seq += 1;
            let input = Input {
                seq: Seq(seq),
                now: Timestamp(seq),
                command,
            };
            COUNTING.with(|c| c.set(counted));
            engine.apply(&input, &mut events);
            COUNTING.with(|c| c.set(false));
            cutter.feed(events.changes());
            if seq.is_multiple_of(300) {
                let (run, checksum) = cutter.cut(Seq(seq));
                COUNTING.with(|c| c.set(counted));
                engine.apply(
                    &Input {
                        seq: Seq(seq + 1),
                        now: Timestamp(seq),
                        command: Command::InstallHistory {
                            run,
                            through_seq: Seq(seq),
                            checksum,
                        },
                    },
                    &mut events,
                );
                COUNTING.with(|c| c.set(false));
                assert!(matches!(
                    events.as_slice(),
                    [Event::HistoryInstalled { .. }]
                ));
                seq += 1;
            }
        };
    for (id, owner, flags) in [(1u128, 0u64, AccountFlags(0)), (10, 1, d), (11, 2, d)] {
        let spec = AccountSpec {
            id: AccountId(id),
            owner: OwnerId(owner),
            asset: Asset::from_str_code("USD").unwrap(),
            flags,
        };
        run(Command::OpenAccount(spec), false, &mut engine, &mut cutter);
    }
    let transfer = |id: u128, k: u128| {
        let mut t = TransferSpec {
            id: TransferId(id),
            debit_account: AccountId(1),
            credit_account: AccountId(10),
            amount: Amount(5),
            code: 1,
            flags: TransferFlags(0),
            pending_id: TransferId(0),
            timeout_ns: 0,
        };
        match k % 6 {
            1 => {
                t.flags.0 = TransferFlags::PENDING;
                t.debit_account = AccountId(10);
                t.credit_account = AccountId(11);
                t.timeout_ns = if id.is_multiple_of(2) { 50 } else { 0 };
            }
            2 => {
                t.flags.0 = TransferFlags::POST_PENDING;
                t.pending_id = TransferId(id - 1);
                (t.debit_account, t.credit_account, t.amount) =
                    (AccountId(0), AccountId(0), Amount(0));
            }
            3 => {
                (t.debit_account, t.credit_account, t.amount) =
                    (AccountId(11), AccountId(10), Amount(u128::MAX / 2))
            }
            4 => t.id = TransferId(id / 3 + 1), // a retry, often of an id only in history
            _ => {}
        }
        Command::Transfer {
            transfer: t,
            batch_end: true,
            actor: Actor::Admin,
        }
    };
    let query = |k: u128| match k % 3 {
        0 => Command::LookupTransfer {
            id: TransferId(k / 2 + 1),
            actor: Actor::Admin,
        },
        _ => Command::GetAccountTransfers {
            filter: AccountFilter {
                account: AccountId(10),
                by: RangeBy::LedgerSeq,
                lo: (k as u64) / 4,
                hi: u64::MAX,
                limit: 64,
                newest_first: k.is_multiple_of(2),
            },
            actor: Actor::Admin,
        },
    };
    for k in 0..10_000u128 {
        run(transfer(k + 1, k), false, &mut engine, &mut cutter);
    }
    for k in 10_000..40_000u128 {
        run(transfer(k + 1, k), true, &mut engine, &mut cutter);
        if k % 10 == 0 {
            run(query(k), true, &mut engine, &mut cutter);
        }
    }
    let n = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(n, 0, "{n} heap allocations in ledger commands");
    assert!(engine.validate().is_ok());
    assert!(!engine.transfer_in_memory(TransferId(1)));
}
