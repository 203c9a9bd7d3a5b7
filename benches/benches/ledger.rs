//! Ledger rig: transfers per second in batches of 8,000 on one core, and what
//! settling fills on the ledger adds to matching; a markdown table for each.
//!
//! Run: `cargo bench -p bourse-benches --bench ledger`
//! (`BOURSE_BENCH_TRANSFERS=n` shortens part 1's measured phase and
//! `BOURSE_BENCH_OPS=n` part 2's — for profiling runs only; `--
//! --transfers-only` runs part 1 alone, `--kind plain|linked|two-phase|mix`
//! (repeatable) only those kinds: for `perf record` and before/after runs).
//! Besides wall-clock transfers/s, each kind's line gives the rate over the
//! time the thread was on a CPU (`/proc/thread-self/schedstat`): on a shared
//! machine the time descheduled dominates the wall-clock spread.
//!
//! Part 1 — transfers. On a fresh engine, untimed: 10,000 user accounts
//! (`debits_must_not_exceed_credits`, half in USD, half in EUR) and one
//! external account per asset are opened, and every user is funded from its
//! external account. Then 1,008,000 transfers (126 batches of 8,000,
//! `batch_end` on every 8,000th) of one kind go through `Engine::apply`, one
//! input per transfer, every event read as a gateway would:
//! * plain: posted transfers between two random users of one asset, amounts
//!   1..=1,000 against 20,000 of funding, so as balances drift some fail
//!   `exceeds_credits`;
//! * linked: chains of 2–4 such transfers (all or nothing), never crossing a
//!   batch end;
//! * two-phase: pending transfers, each posted later (80% in full, 10% in
//!   part) or voided (10%), at most 2,000 outstanding;
//! * mix: 50% plain, 25% linked-chain, 25% two-phase steps.
//!
//! The generator keeps its own model of every balance, so the expected count
//! of every result code and every final balance are known without the engine.
//! Each kind runs 5 times, kinds interleaved (round-robin, because the machine
//! is shared); transfers/s is the median run, with the whole measured phase
//! timed as one interval; batch latency is one `Instant` pair around each
//! batch of 8,000, over all runs. Each run's result counts must equal the
//! model's; after the first run of each kind every account's balances are
//! read back (`QueryBalance`) and compared with the model, and
//! `Engine::validate` must pass.
//!
//! Part 2 — settlement cost. The latency rig's seeded order workload (10k
//! resting orders, 1 M measured ops: passive limits, cancels, IOC crossers)
//! runs on a `settle: false` instrument and on a `settle: true` one where all
//! 16 owners trade through funded base and quote accounts, with a 1 bps maker
//! and a 2 bps taker fee paid to a fee account (`bourse_benches::Settlement`).
//! The two alternate (ABAB…) for 5 rounds; a round is one throughput pass of
//! each (fresh pre-filled book, the measured phase timed as one interval)
//! then one latency pass of each (every op bracketed by `Instant::now()`, the
//! empty pair's cost subtracted, into an hdrhistogram). Reported: medians
//! over the rounds; the cost ratio is the median of the rounds' paired ratios
//! (settle ns/op ÷ no-settle ns/op). Both variants must match the workload's
//! reference model with 0 rejects (no `insufficient_funds`); the settling one
//! must also pass `validate` (every hold equals its formula, conservation per
//! asset) and have collected fees.

use bourse_benches::bourse::FEE_ACCOUNT;
use bourse_benches::machine::fmt_ns as ns;
use bourse_benches::{apply, check, machine, Book, Bourse, Params, Settlement, Workload};
use engine::rng::SplitMix64;
use engine::{
    AccountFlags, AccountId, AccountSpec, Actor, Amount, Asset, Command, Engine, EngineConfig,
    Event, Events, Input, LedgerError, OwnerId, Seq, Timestamp, TransferFlags, TransferId,
    TransferSpec,
};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Instant;

/// Transfers per batch (TigerBeetle's batch is 8,190).
const BATCH: usize = 8_000;
/// User accounts, alternating between the assets.
const USERS: usize = 10_000;
const ASSETS: [&str; 2] = ["USD", "EUR"];
/// What each user is funded with.
const FUND: u128 = 20_000;
/// Transfer amounts are uniform in 1..=AMOUNT_MAX.
const AMOUNT_MAX: u64 = 1_000;
/// Most pending transfers outstanding at once.
const PENDING_MAX: usize = 2_000;
/// Runs per transfer kind, and rounds of the settlement comparison.
const RUNS: usize = 5;
/// Funding transfer ids start here (measured ids are 1, 2, 3, …).
const FUND_ID_BASE: u128 = 1 << 64;

fn user_id(i: usize) -> AccountId {
    AccountId(1 + i as u128)
}

fn external_id(asset: usize) -> AccountId {
    AccountId(1_000_000 + asset as u128)
}

/// Model index of an account id: users `0..USERS`, externals after them.
fn model_index(id: AccountId) -> usize {
    if id.0 >= 1_000_000 {
        USERS + (id.0 - 1_000_000) as usize
    } else {
        (id.0 - 1) as usize
    }
}

fn asset(i: usize) -> Asset {
    Asset::from_str_code(ASSETS[i]).expect("valid asset")
}

// ----- part 1: transfers ---------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain,
    Linked,
    TwoPhase,
    Mix,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Plain, Kind::Linked, Kind::TwoPhase, Kind::Mix];

    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain (posted)",
            Kind::Linked => "linked chains of 2–4",
            Kind::TwoPhase => "two-phase (pending → post/void)",
            Kind::Mix => "mix (50% plain / 25% chains / 25% two-phase)",
        }
    }
}

/// Result events by code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Results {
    ok: u64,
    exceeds_credits: u64,
    linked_event_failed: u64,
    other: u64,
}

impl Results {
    #[inline(always)]
    fn count(&mut self, events: &Events) {
        for e in events {
            match *e {
                Event::TransferOk { .. } => self.ok += 1,
                Event::TransferRejected { reason, .. } => match reason {
                    LedgerError::ExceedsCredits => self.exceeds_credits += 1,
                    LedgerError::LinkedEventFailed => self.linked_event_failed += 1,
                    _ => self.other += 1,
                },
                _ => self.other += 1,
            }
        }
    }
}

/// Balances of the model: debits posted, credits posted, debits pending,
/// credits pending.
type Bal = [u128; 4];

/// The generator: transfers of one kind, with the model that predicts them.
struct Gen {
    rng: SplitMix64,
    bal: Vec<Bal>,
    out: Vec<TransferSpec>,
    next_id: u128,
    expected: Results,
    /// Open pending transfers: (id, debit index, credit index, amount).
    pendings: VecDeque<(u128, usize, usize, u128)>,
    /// Undo log of the chain being modelled: (index, balances before).
    undo: Vec<(usize, Bal)>,
}

/// A generated run.
struct Generated {
    kind: Kind,
    transfers: Vec<TransferSpec>,
    expected: Results,
    /// Every account's balances after the run (model indexes).
    balances: Vec<Bal>,
}

impl Gen {
    fn new(seed: u64) -> Self {
        let mut bal = vec![[0u128; 4]; USERS + ASSETS.len()];
        for i in 0..USERS {
            bal[i][1] = FUND;
            bal[USERS + i % ASSETS.len()][0] += FUND;
        }
        Gen {
            rng: SplitMix64::new(seed),
            bal,
            out: Vec::new(),
            next_id: 1,
            expected: Results::default(),
            pendings: VecDeque::new(),
            undo: Vec::new(),
        }
    }

    fn id(&mut self) -> u128 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Two different users of one random asset.
    fn pair(&mut self) -> (usize, usize) {
        let a = self.rng.below(ASSETS.len() as u64) as usize;
        let n = (USERS / ASSETS.len()) as u64;
        let d = self.rng.below(n);
        let c = (d + 1 + self.rng.below(n - 1)) % n;
        (a + ASSETS.len() * d as usize, a + ASSETS.len() * c as usize)
    }

    fn spec(id: u128, d: usize, c: usize, amount: u128, flags: u16) -> TransferSpec {
        TransferSpec {
            id: TransferId(id),
            debit_account: user_id(d),
            credit_account: user_id(c),
            amount: Amount(amount),
            code: 1,
            flags: TransferFlags(flags),
            pending_id: TransferId(0),
            timeout_ns: 0,
        }
    }

    /// Models a posted or pending transfer from user `d` to user `c`:
    /// `false` when it fails `exceeds_credits` (nothing changes then).
    fn model(&mut self, d: usize, c: usize, amount: u128, pending: bool) -> bool {
        let b = self.bal[d];
        if b[0] + b[2] + amount > b[1] {
            return false;
        }
        self.undo.push((d, self.bal[d]));
        self.undo.push((c, self.bal[c]));
        let (dk, ck) = if pending { (2, 3) } else { (0, 1) };
        self.bal[d][dk] += amount;
        self.bal[c][ck] += amount;
        true
    }

    fn room(&self) -> usize {
        BATCH - self.out.len() % BATCH
    }

    fn plain(&mut self) {
        let (d, c) = self.pair();
        let amount = self.rng.range(1, AMOUNT_MAX) as u128;
        let id = self.id();
        self.out.push(Self::spec(id, d, c, amount, 0));
        if self.model(d, c, amount, false) {
            self.expected.ok += 1;
        } else {
            self.expected.exceeds_credits += 1;
        }
    }

    fn linked(&mut self) {
        let len = (self.rng.range(2, 4) as usize).min(self.room());
        if len < 2 {
            return self.plain();
        }
        self.undo.clear();
        let mut failed = false;
        for k in 0..len {
            let (d, c) = self.pair();
            let amount = self.rng.range(1, AMOUNT_MAX) as u128;
            let id = self.id();
            let flags = if k + 1 < len {
                TransferFlags::LINKED
            } else {
                0
            };
            self.out.push(Self::spec(id, d, c, amount, flags));
            if !failed && !self.model(d, c, amount, false) {
                failed = true;
            }
        }
        if failed {
            while let Some((i, b)) = self.undo.pop() {
                self.bal[i] = b;
            }
            self.expected.exceeds_credits += 1;
            self.expected.linked_event_failed += len as u64 - 1;
        } else {
            self.expected.ok += len as u64;
        }
    }

    fn two_phase(&mut self) {
        let resolve = !self.pendings.is_empty()
            && (self.pendings.len() >= PENDING_MAX || self.rng.below(2) == 0);
        if !resolve {
            let (d, c) = self.pair();
            let amount = self.rng.range(1, AMOUNT_MAX) as u128;
            let id = self.id();
            self.out
                .push(Self::spec(id, d, c, amount, TransferFlags::PENDING));
            if self.model(d, c, amount, true) {
                self.pendings.push_back((id, d, c, amount));
                self.expected.ok += 1;
            } else {
                self.expected.exceeds_credits += 1;
            }
            return;
        }
        let (pid, d, c, amount) = self.pendings.pop_front().expect("a pending transfer");
        let id = self.id();
        let r = self.rng.below(10);
        let (flags, sent, posted) = match r {
            0..=7 => (TransferFlags::POST_PENDING, 0, amount),
            8 => {
                let part = self.rng.range(1, amount as u64) as u128;
                (TransferFlags::POST_PENDING, part, part)
            }
            _ => (TransferFlags::VOID_PENDING, 0, 0),
        };
        self.out.push(TransferSpec {
            id: TransferId(id),
            debit_account: AccountId(0),
            credit_account: AccountId(0),
            amount: Amount(sent),
            code: 1,
            flags: TransferFlags(flags),
            pending_id: TransferId(pid),
            timeout_ns: 0,
        });
        self.bal[d][2] -= amount;
        self.bal[c][3] -= amount;
        self.bal[d][0] += posted;
        self.bal[c][1] += posted;
        self.expected.ok += 1;
    }

    fn generate(kind: Kind, n: usize) -> Generated {
        let mut g = Gen::new(0x1ED6_E500_0000_0000 ^ kind as u64);
        g.out.reserve(n);
        while g.out.len() < n {
            g.undo.clear();
            match kind {
                Kind::Plain => g.plain(),
                Kind::Linked => g.linked(),
                Kind::TwoPhase => g.two_phase(),
                Kind::Mix => match g.rng.below(4) {
                    0 | 1 => g.plain(),
                    2 => g.linked(),
                    _ => g.two_phase(),
                },
            }
        }
        assert_eq!(g.out.len(), n, "chains never cross a batch end");
        Generated {
            kind,
            transfers: g.out,
            expected: g.expected,
            balances: g.bal,
        }
    }
}

/// An engine with the accounts opened and funded (untimed), sized for `n`
/// measured transfers.
fn ledger_engine(n: usize) -> (Engine, Events, u64) {
    ledger_engine_with((USERS + n + 1024) as u32)
}

/// The part-1 engine (accounts opened and funded) with `transfers_max` slots
/// of transfer memory.
fn ledger_engine_with(transfers_max: u32) -> (Engine, Events, u64) {
    let mut engine = Engine::new(EngineConfig {
        orders_max: 16,
        levels_max: 16,
        stops_max: 16,
        instruments_max: 1,
        owners_max: 16,
        client_order_ids_max: 16,
        accounts_max: (USERS + ASSETS.len()) as u32,
        transfers_max,
        events_max: 64,
        assets_max: ASSETS.len() as u32,
        batch_max: 8190,
    });
    // As the runtime does: no page faults in the measured phase.
    engine.prefault();
    let mut events = engine.new_events();
    let mut seq = 0u64;
    let mut setup = |engine: &mut Engine, command: Command, events: &mut Events| {
        seq += 1;
        engine.apply(
            &Input {
                seq: Seq(seq),
                now: Timestamp(seq),
                command,
            },
            events,
        );
        let ok = events
            .iter()
            .all(|e| matches!(e, Event::AccountOpened { .. } | Event::TransferOk { .. }));
        assert!(ok, "set-up refused: {:?}", events.as_slice());
    };
    for a in 0..ASSETS.len() {
        let spec = AccountSpec {
            id: external_id(a),
            owner: OwnerId(0),
            asset: asset(a),
            flags: AccountFlags(0),
        };
        setup(&mut engine, Command::OpenAccount(spec), &mut events);
    }
    for i in 0..USERS {
        let spec = AccountSpec {
            id: user_id(i),
            owner: OwnerId(1 + i as u64),
            asset: asset(i % ASSETS.len()),
            flags: AccountFlags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        };
        setup(&mut engine, Command::OpenAccount(spec), &mut events);
    }
    for i in 0..USERS {
        let transfer = TransferSpec {
            id: TransferId(FUND_ID_BASE + i as u128),
            debit_account: external_id(i % ASSETS.len()),
            credit_account: user_id(i),
            amount: Amount(FUND),
            code: 1,
            flags: TransferFlags(0),
            pending_id: TransferId(0),
            timeout_ns: 0,
        };
        let batch_end = i % BATCH == BATCH - 1 || i == USERS - 1;
        setup(
            &mut engine,
            Command::Transfer {
                transfer,
                batch_end,
                actor: Actor::Admin,
            },
            &mut events,
        );
    }
    (engine, events, seq)
}

/// Seconds this thread has run on a CPU (Linux `schedstat`; `None`
/// elsewhere): on a shared machine, the time a run was descheduled is noise
/// that the on-CPU rate leaves out (cache contention from the other
/// processes still counts).
fn thread_cpu_secs() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// One measured run: (seconds for the whole phase, seconds of it on a CPU
/// when known, results, the engine).
fn run_transfers(
    g: &Generated,
    batches: &mut Histogram<u64>,
) -> (f64, Option<f64>, Results, Engine) {
    let (mut engine, mut events, mut seq) = ledger_engine(g.transfers.len());
    let mut results = Results::default();
    let cpu = thread_cpu_secs();
    let t = Instant::now();
    for batch in g.transfers.chunks(BATCH) {
        let tb = Instant::now();
        let last = batch.len() - 1;
        for (i, transfer) in batch.iter().enumerate() {
            seq += 1;
            let input = Input {
                seq: Seq(seq),
                now: Timestamp(seq),
                command: Command::Transfer {
                    transfer: *transfer,
                    batch_end: i == last,
                    // The measured path: the operator's (admin) rights.
                    actor: Actor::Admin,
                },
            };
            engine.apply(black_box(&input), &mut events);
            results.count(&events);
        }
        batches.saturating_record(tb.elapsed().as_nanos() as u64);
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu.zip(thread_cpu_secs()).map(|(a, b)| b - a);
    black_box(&mut engine);
    (secs, cpu, results, engine)
}

/// Compares every account's balances with the model and runs `validate`.
fn check_state(engine: &mut Engine, g: &Generated) -> Result<(), String> {
    engine.validate().map_err(|b| b.0)?;
    let mut events = engine.new_events();
    let ids = (0..USERS)
        .map(user_id)
        .chain((0..ASSETS.len()).map(external_id));
    let mut diffs = 0;
    let mut first = String::new();
    for id in ids {
        engine.apply(
            &Input {
                seq: Seq(u64::MAX / 2),
                now: engine.now(),
                command: Command::QueryBalance {
                    account: id,
                    actor: Actor::Admin,
                },
            },
            &mut events,
        );
        let got = match events.as_slice() {
            [Event::Balance {
                debits_posted,
                credits_posted,
                debits_pending,
                credits_pending,
                ..
            }] => [
                debits_posted.0,
                credits_posted.0,
                debits_pending.0,
                credits_pending.0,
            ],
            other => return Err(format!("balance of {id:?}: {other:?}")),
        };
        let want = g.balances[model_index(id)];
        if got != want {
            if diffs == 0 {
                first = format!("{id:?}: {got:?}, model {want:?}");
            }
            diffs += 1;
        }
    }
    if diffs > 0 {
        return Err(format!(
            "{diffs} balances differ from the model, e.g. {first}"
        ));
    }
    Ok(())
}

struct TransferRow {
    kind: Kind,
    n: usize,
    expected: Results,
    secs: Vec<f64>,
    /// On-CPU seconds per run (empty where the platform does not say).
    cpu_secs: Vec<f64>,
    batches: Histogram<u64>,
    check: Result<(), String>,
}

fn measure_transfers(n: usize, kinds: &[Kind]) -> Vec<TransferRow> {
    let gens: Vec<Generated> = kinds.iter().map(|&k| Gen::generate(k, n)).collect();
    let mut rows: Vec<TransferRow> = gens
        .iter()
        .map(|g| TransferRow {
            kind: g.kind,
            n,
            expected: g.expected,
            secs: Vec::new(),
            cpu_secs: Vec::new(),
            batches: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds"),
            check: Ok(()),
        })
        .collect();
    for run in 0..RUNS {
        for (g, row) in gens.iter().zip(rows.iter_mut()) {
            eprintln!("transfers: {} run {}/{RUNS}…", g.kind.name(), run + 1);
            let (secs, cpu, results, mut engine) = run_transfers(g, &mut row.batches);
            row.secs.push(secs);
            row.cpu_secs.extend(cpu);
            if row.check.is_ok() && results != g.expected {
                row.check = Err(format!(
                    "run {}: results {results:?}, model {:?}",
                    run + 1,
                    g.expected
                ));
            }
            if run == 0 && row.check.is_ok() {
                row.check = check_state(&mut engine, g);
            }
        }
    }
    rows
}

// ----- part 2: settlement cost ---------------------------------------------

const FEES: Settlement = Settlement {
    maker_fee_bps: 1,
    taker_fee_bps: 2,
};

struct SettleRow {
    name: &'static str,
    settlement: Option<Settlement>,
    ns_per_op: Vec<f64>,
    p50: Vec<u64>,
    p99: Vec<u64>,
    p999: Vec<u64>,
    check: Result<(), String>,
}

fn prefilled_with(w: &Workload, s: Option<Settlement>) -> Bourse {
    let mut b = Bourse::with_settlement(w, s);
    for op in &w.prefill {
        apply(&mut b, op);
    }
    b
}

fn throughput_pass(w: &Workload, row: &mut SettleRow, first: bool) {
    let mut b = prefilled_with(w, row.settlement);
    let t = Instant::now();
    for op in &w.ops {
        apply(&mut b, black_box(op));
    }
    let elapsed = t.elapsed();
    black_box(&mut b);
    row.ns_per_op
        .push(elapsed.as_nanos() as f64 / w.ops.len() as f64);
    if first {
        row.check = check(b.tally(), b.resting(), &w.expected);
        if row.check.is_ok() && row.settlement.is_some() {
            match b.balance(FEE_ACCOUNT) {
                Some([_, credits, _, _]) if credits > 0 => {}
                other => row.check = Err(format!("no fees collected: {other:?}")),
            }
        }
    }
}

fn latency_pass(w: &Workload, row: &mut SettleRow, overhead: u64) {
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    let mut b = prefilled_with(w, row.settlement);
    for op in &w.ops {
        let t0 = Instant::now();
        apply(&mut b, black_box(op));
        let ns = t0.elapsed().as_nanos() as u64;
        hist.saturating_record(ns.saturating_sub(overhead).max(1));
    }
    black_box(&mut b);
    row.p50.push(hist.value_at_quantile(0.50));
    row.p99.push(hist.value_at_quantile(0.99));
    row.p999.push(hist.value_at_quantile(0.999));
}

fn measure_settlement(w: &Workload, overhead: u64) -> Vec<SettleRow> {
    let mut rows = vec![
        SettleRow {
            name: "settle: false",
            settlement: None,
            ns_per_op: Vec::new(),
            p50: Vec::new(),
            p99: Vec::new(),
            p999: Vec::new(),
            check: Ok(()),
        },
        SettleRow {
            name: "settle: true (maker 1 bps, taker 2 bps)",
            settlement: Some(FEES),
            ns_per_op: Vec::new(),
            p50: Vec::new(),
            p99: Vec::new(),
            p999: Vec::new(),
            check: Ok(()),
        },
    ];
    for round in 0..RUNS {
        eprintln!("settlement: round {}/{RUNS}…", round + 1);
        for row in rows.iter_mut() {
            throughput_pass(w, row, round == 0);
        }
        for row in rows.iter_mut() {
            latency_pass(w, row, overhead);
        }
    }
    rows
}

// ----- report --------------------------------------------------------------

fn median_f(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median_u(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

fn mops(r: f64) -> String {
    format!("{:.2} M", r / 1e6)
}

// ----- part 3: history ---------------------------------------------------

/// Hot transfer memory for part 3: a quarter of the default.
const HOT: u32 = 1 << 18;
/// A run is cut and installed every this many changes.
const RUN_CHANGES: usize = 100_000;

/// One history size's numbers.
struct HistoryRow {
    history: usize,
    fill_per_s: f64,
    new_ns: f64,
    hit_ns: f64,
}

/// Plain posted transfers user → user (amount 1, same asset) with ids from
/// `first`: none fails for lack of funds in these runs.
fn plain_transfer(rng: &mut SplitMix64, id: u128) -> TransferSpec {
    let d = rng.below(USERS as u64) as usize;
    let mut c = rng.below(USERS as u64) as usize;
    if c % ASSETS.len() != d % ASSETS.len() || c == d {
        c = (d + ASSETS.len()) % USERS;
    }
    Gen::spec(id, d, c, 1, 0)
}

/// Fills a `HOT`-slot engine with `history` transfers through a
/// `MemHistory` (a run every `RUN_CHANGES` changes), then times 200,000 new
/// ids and 200,000 retries of ids only in history (each must be `exists`).
fn measure_history(history: usize) -> HistoryRow {
    use engine::history::{HistoryCutter, MemHistory};
    let (mut engine, mut events, mut seq) = ledger_engine_with(HOT);
    let store = MemHistory::new();
    engine.attach_history(Box::new(store.clone()));
    let mut cutter = HistoryCutter::new(store, 0);
    let mut rng = SplitMix64::new(0x4157);
    let apply_one = |engine: &mut Engine, events: &mut Events, seq: &mut u64, t: TransferSpec| {
        *seq += 1;
        let input = Input {
            seq: Seq(*seq),
            now: Timestamp(*seq),
            command: Command::Transfer {
                transfer: t,
                batch_end: true,
                actor: Actor::Admin,
            },
        };
        engine.apply(black_box(&input), events);
    };
    let install =
        |engine: &mut Engine, events: &mut Events, seq: &mut u64, cutter: &mut HistoryCutter| {
            let (run, checksum) = cutter.cut(Seq(*seq));
            let through_seq = Seq(*seq);
            *seq += 1;
            engine.apply(
                &Input {
                    seq: Seq(*seq),
                    now: Timestamp(*seq),
                    command: Command::InstallHistory {
                        run,
                        through_seq,
                        checksum,
                    },
                },
                events,
            );
            assert!(matches!(
                events.as_slice(),
                [Event::HistoryInstalled { .. }]
            ));
        };
    // Fill: the cutter's work (the history writer's, off the engine thread in
    // a server) is inside this interval, so it is a lower bound for the engine.
    let t = Instant::now();
    for k in 0..history {
        let spec = plain_transfer(&mut rng, k as u128 + 1);
        apply_one(&mut engine, &mut events, &mut seq, spec);
        assert!(
            matches!(events.as_slice(), [Event::TransferOk { .. }]),
            "{:?}",
            events.as_slice()
        );
        cutter.feed(events.changes());
        if cutter.pending() >= RUN_CHANGES {
            install(&mut engine, &mut events, &mut seq, &mut cutter);
        }
    }
    let fill_per_s = history as f64 / t.elapsed().as_secs_f64();
    install(&mut engine, &mut events, &mut seq, &mut cutter);
    const N: usize = 200_000;
    // New ids, engine only (no cutter in the interval).
    let t = Instant::now();
    for k in 0..N {
        let spec = plain_transfer(&mut rng, (history + k) as u128 + 1);
        apply_one(&mut engine, &mut events, &mut seq, spec);
    }
    let new_ns = t.elapsed().as_secs_f64() * 1e9 / N as f64;
    // Retries of old ids: all answered from history.
    let old: Vec<u128> = (0..N)
        .map(|_| rng.below(history as u64 / 2) as u128 + 1)
        .collect();
    let mut exists = 0usize;
    let t = Instant::now();
    for &id in &old {
        let spec = TransferSpec {
            id: TransferId(id),
            ..plain_transfer(&mut rng, id)
        };
        apply_one(&mut engine, &mut events, &mut seq, spec);
        exists += matches!(
            events.as_slice(),
            [Event::TransferRejected {
                reason: LedgerError::Exists
                    | LedgerError::ExistsWithDifferentDebitAccountId
                    | LedgerError::ExistsWithDifferentCreditAccountId,
                ..
            }]
        ) as usize;
    }
    let hit_ns = t.elapsed().as_secs_f64() * 1e9 / N as f64;
    assert_eq!(exists, N, "every retry of an old id must be exists*");
    assert!(!engine.transfer_in_memory(TransferId(1)));
    engine.validate().expect("validate");
    HistoryRow {
        history,
        fill_per_s,
        new_ns,
        hit_ns,
    }
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The kinds named by `--kind NAME` arguments (plain, linked, two-phase,
/// mix), all when none is named.
fn kinds_from_args() -> Vec<Kind> {
    let args: Vec<String> = std::env::args().collect();
    let named: Vec<Kind> = args
        .windows(2)
        .filter(|w| w[0] == "--kind")
        .map(|w| match w[1].as_str() {
            "plain" => Kind::Plain,
            "linked" => Kind::Linked,
            "two-phase" => Kind::TwoPhase,
            "mix" => Kind::Mix,
            other => panic!("--kind {other}: plain, linked, two-phase or mix"),
        })
        .collect();
    if named.is_empty() {
        Kind::ALL.to_vec()
    } else {
        named
    }
}

/// Part 1's table, one line per kind against the target, and every check
/// mismatch; exits non-zero on a mismatch.
fn print_transfers(rows: &[TransferRow]) {
    println!("\n## Transfers, batches of {BATCH}, one core\n");
    println!("| kind | transfers | ok | exceeds_credits | linked_event_failed | transfers/s | ns/transfer | batch p50 | batch p99 | batch max | check |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in rows {
        let secs = median_f(&r.secs);
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            r.kind.name(),
            r.n,
            r.expected.ok,
            r.expected.exceeds_credits,
            r.expected.linked_event_failed,
            mops(r.n as f64 / secs),
            secs * 1e9 / r.n as f64,
            ns(r.batches.value_at_quantile(0.50)),
            ns(r.batches.value_at_quantile(0.99)),
            ns(r.batches.max()),
            if r.check.is_ok() { "ok" } else { "MISMATCH" },
        );
    }

    println!();
    for r in rows {
        let rate = r.n as f64 / median_f(&r.secs);
        println!(
            "- {}: {} transfers/s (target ≥ 5 M/s: {}); runs: {}",
            r.kind.name(),
            mops(rate),
            if rate >= 5e6 { "met" } else { "NOT met" },
            r.secs
                .iter()
                .map(|s| format!("{:.2}", r.n as f64 / s / 1e6))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if !r.cpu_secs.is_empty() {
            println!(
                "  - on-CPU time only: {} transfers/s; runs: {}",
                mops(r.n as f64 / median_f(&r.cpu_secs)),
                r.cpu_secs
                    .iter()
                    .map(|s| format!("{:.2}", r.n as f64 / s / 1e6))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
    }
    for r in rows {
        if let Err(e) = &r.check {
            println!("- check MISMATCH, {}: {e}", r.kind.name());
        }
    }
    if rows.iter().any(|r| r.check.is_err()) {
        eprintln!("the engine disagrees with the model");
        std::process::exit(1);
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Profiling and before/after runs: part 1 alone (`--transfers-only`),
    // optionally for some kinds (`--kind plain` …).
    let transfers_only = std::env::args().any(|a| a == "--transfers-only");
    let sizes: &[usize] = match (transfers_only, quick) {
        (true, _) => &[],
        (false, true) => &[1_000_000],
        (false, false) => &[1_000_000, 10_000_000],
    };
    let history: Vec<HistoryRow> = sizes
        .iter()
        .map(|&h| {
            eprintln!("history: {h} transfers…");
            measure_history(h)
        })
        .collect();
    println!("## Transfer history (hot memory {HOT} transfers, a run every {RUN_CHANGES} changes, MemHistory)\n");
    println!("| history transfers | fill transfers/s (incl. cutter) | new id ns/transfer | retry of an id only in history ns |");
    println!("| ---: | ---: | ---: | ---: |");
    for r in &history {
        println!(
            "| {} | {} | {:.0} | {:.0} |",
            r.history,
            mops(r.fill_per_s),
            r.new_ns,
            r.hit_ns
        );
    }
    println!();
    let overhead = machine::timer_overhead_ns(200_000);
    let default_n = if quick { 208_000 } else { 1_008_000 };
    let n = env_count("BOURSE_BENCH_TRANSFERS", default_n).div_ceil(BATCH) * BATCH;
    println!("# Bourse ledger: transfers and the cost of settlement\n");
    println!("- machine: {}", machine::describe());
    println!("- empty `Instant::now()` pair: {overhead} ns (median; subtracted from every per-op sample)");
    println!(
        "- transfers: {USERS} user accounts (debits_must_not_exceed_credits, {} assets) funded with {FUND} each, \
         amounts 1..={AMOUNT_MAX}; {n} transfers a run = {} batches of {BATCH}; median of {RUNS} runs per kind, kinds interleaved",
        ASSETS.len(),
        n / BATCH,
    );
    let rows = measure_transfers(n, &kinds_from_args());
    if transfers_only {
        return print_transfers(&rows);
    }

    let w = Workload::generate(Params {
        ops: bourse_benches::ops_from_env(),
        ..Params::standard(10_000)
    });
    let nops = w.ops.len() as f64;
    println!(
        "- settlement: workload 10k, {} pre-fill + {} measured ops (limit {:.1}% / cancel {:.1}% / cross {:.1}%), \
         {} fills; 16 owners; {RUNS} ABAB rounds",
        w.prefill.len(),
        w.ops.len(),
        100.0 * w.mix.limits as f64 / nops,
        100.0 * w.mix.cancels as f64 / nops,
        100.0 * w.mix.crosses as f64 / nops,
        w.expected.trades,
    );
    let settle = measure_settlement(&w, overhead);

    print_transfers(&rows);
    println!("\n## Matching with settlement vs without, same workload\n");
    println!("| instrument | ops/s | ns/op | p50 | p99 | p99.9 | check |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in &settle {
        let nsop = median_f(&r.ns_per_op);
        println!(
            "| {} | {} | {:.1} | {} | {} | {} | {} |",
            r.name,
            mops(1e9 / nsop),
            nsop,
            ns(median_u(&r.p50)),
            ns(median_u(&r.p99)),
            ns(median_u(&r.p999)),
            if r.check.is_ok() { "ok" } else { "MISMATCH" },
        );
    }

    println!();
    let mut ok = true;
    let ratios: Vec<f64> = settle[1]
        .ns_per_op
        .iter()
        .zip(&settle[0].ns_per_op)
        .map(|(s, m)| s / m)
        .collect();
    let ratio = median_f(&ratios);
    println!(
        "- settlement cost per command: {ratio:.2}× matching alone (median of {RUNS} paired rounds: {}; target ≤ 1.30×: {})",
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        if ratio <= 1.30 { "met" } else { "NOT met" },
    );
    let p50_ratio = median_u(&settle[1].p50) as f64 / median_u(&settle[0].p50) as f64;
    let p99_ratio = median_u(&settle[1].p99) as f64 / median_u(&settle[0].p99) as f64;
    println!("- latency ratio settle / no-settle: p50 {p50_ratio:.2}×, p99 {p99_ratio:.2}×");
    for r in &rows {
        ok &= r.check.is_ok();
    }
    for r in &settle {
        if let Err(e) = &r.check {
            println!("- check MISMATCH, {}: {e}", r.name);
            ok = false;
        }
    }
    if !ok {
        eprintln!("the engine disagrees with the model");
        std::process::exit(1);
    }
}
