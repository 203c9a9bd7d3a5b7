//! Seeded cross-check of the engine's ledger against `bourse_tests::ref_ledger`.
//!
//! Each seed generates a random stream of ledger commands (accounts, deposits,
//! transfers that may overdraw, linked chains that fail or stay open, pending
//! transfers with and without timeouts, posts and voids good and bad, retries
//! with equal and different fields, time steps, balance queries). After every
//! command the engine's events must equal the reference's and
//! `Engine::validate` must pass; every stream ends by querying every account,
//! and is then replayed on a fresh engine, which must reach the same
//! `state_hash`.
//!
//! `TEST_SEEDS=N` runs N seeds (default 300); `TEST_SEED=S` runs only S.

use bourse_tests::ref_ledger::RefLedger;
use engine::rng::SplitMix64;
use engine::*;
use std::collections::BTreeMap;

const USD: &str = "USD";
const EUR: &str = "EUR";
const JPY: &str = "JPY";
/// Account ids the generator draws from (0 and 15 are never opened successfully / usually unknown).
const MAX_ACCOUNT: u64 = 15;

/// Every account id has one asset (so the generator knows it): 13 and 14
/// JPY, other odd ids USD, even ids EUR (1 and 2 are the externals).
fn asset_of(id: u128) -> &'static str {
    match id {
        13 | 14 => JPY,
        _ if id % 2 == 1 => USD,
        _ => EUR,
    }
}

fn asset(s: &str) -> Asset {
    Asset::from_str_code(s).unwrap()
}

struct Gen {
    rng: SplitMix64,
    now: u64,
    next_id: u128,
    /// Every transfer sent, for retries.
    sent: Vec<TransferSpec>,
    /// Every pending transfer sent (successful or not), for posts and voids.
    pendings: Vec<TransferSpec>,
    out: Vec<Input>,
    /// Whether the last command left a linked chain open.
    chain_open: bool,
}

impl Gen {
    fn push(&mut self, command: Command) {
        let r = self.rng.below(100);
        let now = if let Command::Time { .. } = command {
            self.now
        } else if r < 20 {
            self.now + self.rng.range(1, 20)
        } else if r < 30 && self.now > 0 {
            self.now - self.rng.range(1, self.now.min(20))
        } else {
            self.now
        };
        self.now = self.now.max(now);
        if let Command::Time { now: t } = command {
            if t.0 >= self.now {
                self.now = t.0;
            }
        }
        let seq = self.out.len() as u64 + 1;
        self.out.push(Input {
            seq: Seq(seq),
            now: Timestamp(now),
            command,
        });
        self.chain_open = matches!(command, Command::Transfer { transfer, batch_end: false, .. } if transfer.flags.has(TransferFlags::LINKED));
        if let Command::Transfer { transfer, .. } = command {
            self.sent.push(transfer);
            if transfer.flags.has(TransferFlags::PENDING) {
                self.pendings.push(transfer);
            }
        }
    }

    fn fresh_id(&mut self) -> TransferId {
        self.next_id += 1;
        TransferId(self.next_id)
    }

    fn account(&mut self) -> AccountId {
        AccountId(self.rng.range(0, MAX_ACCOUNT) as u128)
    }

    fn user(&mut self) -> AccountId {
        if self.rng.chance_pct(90) {
            AccountId(self.rng.range(3, 12) as u128)
        } else {
            AccountId(self.rng.range(13, MAX_ACCOUNT) as u128)
        }
    }

    /// An amount in `1..=hi`, or with `huge_pct` % chance one of about u128::MAX / 3,
    /// so that the third such credit or debit on one account overflows it.
    ///
    /// (`validate_survives_sums_beyond_u128` in ledger_results.rs covers
    /// per-asset sums beyond u128.)
    fn amount(&mut self, hi: u64, huge_pct: u64) -> Amount {
        if self.rng.chance_pct(huge_pct) {
            Amount(u128::MAX / 3 + self.rng.range(1, 1000) as u128)
        } else {
            Amount(self.rng.range(1, hi) as u128)
        }
    }

    fn spec(&mut self, dr: AccountId, cr: AccountId, amount: Amount, flags: u16) -> TransferSpec {
        TransferSpec {
            id: self.fresh_id(),
            debit_account: dr,
            credit_account: cr,
            amount,
            code: self.rng.range(1, 3) as u16,
            flags: TransferFlags(flags),
            pending_id: TransferId(0),
            timeout_ns: 0,
        }
    }

    /// A deposit: an external account (1 = USD, 2 = EUR) to a user account.
    fn deposit(&mut self) -> TransferSpec {
        let to = self.user();
        // Mostly from the external account of the same asset.
        let ext = match (asset_of(to.0), self.rng.chance_pct(85)) {
            (USD, true) => AccountId(1),
            (EUR, true) => AccountId(2),
            _ => AccountId(self.rng.range(1, 2) as u128),
        };
        let amt = self.amount(500, 6);
        self.spec(ext, to, amt, 0)
    }

    fn user_transfer(&mut self) -> TransferSpec {
        let (dr, cr) = (self.user(), self.user());
        let amt = if self.rng.chance_pct(3) {
            Amount(0)
        } else {
            self.amount(800, 0)
        };
        self.spec(dr, cr, amt, 0)
    }

    fn pending(&mut self) -> TransferSpec {
        let dr = if self.rng.chance_pct(40) {
            AccountId(self.rng.range(1, 2) as u128)
        } else {
            self.user()
        };
        let cr = self.user();
        let huge = if dr.0 <= 2 { 4 } else { 0 };
        let amt = self.amount(400, huge);
        let mut t = self.spec(dr, cr, amt, TransferFlags::PENDING);
        if self.rng.chance_pct(60) {
            t.timeout_ns = self.rng.range(1, 60);
        }
        t
    }

    fn post_or_void(&mut self) -> TransferSpec {
        let flag = if self.rng.chance_pct(60) {
            TransferFlags::POST_PENDING
        } else {
            TransferFlags::VOID_PENDING
        };
        let p = if self.pendings.is_empty() || self.rng.chance_pct(5) {
            // Unknown, or a transfer that is not pending.
            let mut p = self.user_transfer();
            if self.rng.chance_pct(50) && !self.sent.is_empty() {
                p = self.rng.pick(&self.sent);
            }
            p
        } else {
            let i = self.rng.below(self.pendings.len() as u64) as usize;
            // Favour recent pendings.
            let j =
                self.pendings.len() - 1 - (self.rng.below(4) as usize).min(self.pendings.len() - 1);
            self.pendings[if self.rng.chance_pct(50) { i } else { j }]
        };
        let full = p.amount.0;
        let amount = match self.rng.below(5) {
            0 | 1 => 0,
            2 => full,
            3 => self.rng.range(1, full.clamp(1, 1 << 40) as u64) as u128,
            _ => full.saturating_add(self.rng.range(1, 3) as u128),
        };
        let (dr, cr) = match self.rng.below(10) {
            0..=4 => (AccountId(0), AccountId(0)),
            5..=7 => (p.debit_account, p.credit_account),
            8 => (p.credit_account, p.debit_account),
            _ if self.rng.chance_pct(50) => (AccountId(0), self.account()),
            _ => (self.account(), AccountId(0)),
        };
        let mut t = self.spec(dr, cr, Amount(amount), flag);
        t.pending_id = p.id;
        t
    }

    /// A post or void with a fresh id of a pending transfer that an earlier post or void named.
    fn resolve_again(&mut self) -> TransferSpec {
        let pv = TransferFlags::POST_PENDING | TransferFlags::VOID_PENDING;
        let resolved: Vec<TransferSpec> = self
            .sent
            .iter()
            .filter(|t| t.flags.0 & pv != 0)
            .copied()
            .collect();
        if resolved.is_empty() {
            return self.post_or_void();
        }
        let mut t = self.rng.pick(&resolved);
        t.id = self.fresh_id();
        t.flags.0 &= !TransferFlags::LINKED;
        if self.rng.chance_pct(50) {
            t.flags.0 ^= pv;
        }
        t
    }

    /// A transfer with every field drawn from a small domain.
    fn wild(&mut self) -> TransferSpec {
        let id = if self.rng.chance_pct(10) {
            TransferId(0)
        } else {
            self.fresh_id()
        };
        let pending_id = if self.rng.chance_pct(50) || self.sent.is_empty() {
            TransferId(self.rng.below(3) as u128)
        } else {
            self.rng.pick(&self.sent).id
        };
        TransferSpec {
            id,
            debit_account: self.account(),
            credit_account: self.account(),
            amount: Amount(self.rng.below(600) as u128),
            code: self.rng.below(3) as u16,
            flags: TransferFlags(self.rng.below(32) as u16 & !TransferFlags::LINKED),
            pending_id,
            timeout_ns: if self.rng.chance_pct(70) {
                0
            } else {
                self.rng.range(1, 40)
            },
        }
    }

    /// A previous transfer again, identical or with one field changed.
    fn retry(&mut self) -> TransferSpec {
        let mut t = self.rng.pick(&self.sent);
        // Linked retries would open chains; keep retries single.
        t.flags.0 &= !TransferFlags::LINKED;
        match self.rng.below(12) {
            0 => t.flags.0 ^= TransferFlags::PENDING,
            1 => t.pending_id.0 += 1,
            2 => t.timeout_ns += 1,
            3 => t.debit_account.0 = self.rng.range(1, MAX_ACCOUNT) as u128,
            4 => t.credit_account.0 = self.rng.range(1, MAX_ACCOUNT) as u128,
            5 => t.amount.0 = t.amount.0.wrapping_add(1),
            6 => t.code += 1,
            _ => {}
        }
        t
    }

    fn single(&mut self) -> TransferSpec {
        match self.rng.below(10) {
            0..=2 => self.deposit(),
            3..=5 => self.user_transfer(),
            6 | 7 => self.pending(),
            _ => self.post_or_void(),
        }
    }

    fn open_account(&mut self) -> Command {
        let id = self.rng.range(0, MAX_ACCOUNT) as u128;
        let a = asset_of(id);
        let flags = match self.rng.below(20) {
            0..=13 => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
            14 | 15 => 0,
            16 | 17 => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
            18 => AccountFlags::ALL,
            _ => 1 << 5,
        };
        // Now and then asset bytes that are no code (wire or journal bytes).
        let asset = match self.rng.below(40) {
            0 => Asset([0; Asset::LEN]),
            1 => Asset(*b"US\0D\0\0\0\0\0\0\0\0"),
            _ => asset(a),
        };
        Command::OpenAccount(AccountSpec {
            id: AccountId(id),
            owner: OwnerId(self.rng.range(0, 5)),
            asset,
            flags: AccountFlags(flags),
        })
    }

    /// Who acts: mostly admin, often a few owners (0..=4, so sometimes the
    /// account's owner, sometimes a foreign one, sometimes "nobody").
    fn actor(&mut self) -> Actor {
        if self.rng.chance_pct(80) {
            return Actor::Admin;
        }
        let n = self.rng.range(0, 3) as usize;
        let ids: Vec<OwnerId> = (0..n).map(|_| OwnerId(self.rng.range(0, 4))).collect();
        Actor::owners(&ids).expect("at most 3 owners")
    }

    fn transfer(&mut self, t: TransferSpec, batch_end: bool) {
        let actor = self.actor();
        self.push(Command::Transfer {
            transfer: t,
            batch_end,
            actor,
        });
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=5 => {
                let c = self.open_account();
                self.push(c);
            }
            6..=19 => {
                let t = self.deposit();
                let be = self.rng.chance_pct(50);
                self.transfer(t, be);
            }
            20..=33 => {
                let t = self.user_transfer();
                let be = self.rng.chance_pct(50);
                self.transfer(t, be);
            }
            34..=43 => {
                let t = self.pending();
                self.transfer(t, true);
            }
            44..=55 => {
                let t = if self.rng.chance_pct(25) {
                    self.resolve_again()
                } else {
                    self.post_or_void()
                };
                self.transfer(t, true);
            }
            56..=64 if !self.sent.is_empty() => {
                let t = self.retry();
                self.transfer(t, true);
            }
            65..=74 => {
                // A linked chain of 2..=4 members.
                let n = self.rng.range(2, 4);
                let ending = self.rng.below(10);
                for i in 0..n {
                    let mut t = self.single();
                    if self.rng.chance_pct(8) && !self.sent.is_empty() {
                        t = self.retry();
                    }
                    let last = i + 1 == n;
                    if !last || ending < 2 {
                        t.flags.0 |= TransferFlags::LINKED;
                    }
                    // ending 0: open at batch end; 1: left open (the next command continues or interrupts it).
                    self.transfer(t, last && ending == 0);
                }
            }
            75..=82 => {
                let t = if self.rng.chance_pct(12) && self.now > 0 {
                    self.now - self.rng.range(1, self.now.min(10))
                } else {
                    self.now + self.rng.range(0, 30)
                };
                self.push(Command::Time { now: Timestamp(t) });
            }
            83..=91 => {
                let a = self.account();
                let actor = self.actor();
                self.push(Command::QueryBalance { account: a, actor });
            }
            _ => {
                let mut t = self.wild();
                let linked = self.rng.chance_pct(10);
                if linked {
                    t.flags.0 |= TransferFlags::LINKED;
                }
                let be = self.rng.chance_pct(50);
                self.transfer(t, be);
            }
        }
    }
}

fn gen_stream(seed: u64) -> Vec<Input> {
    let mut g = Gen {
        rng: SplitMix64(seed),
        now: 0,
        next_id: 0,
        sent: Vec::new(),
        pendings: Vec::new(),
        out: Vec::new(),
        chain_open: false,
    };
    let d = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    // Issuers (1, 2, 11) belong to nobody; users 3..=10 to owners 1..=4.
    let open = |id: u128, a: &str, flags: u16| {
        Command::OpenAccount(AccountSpec {
            id: AccountId(id),
            owner: OwnerId(if flags == d { id as u64 % 4 + 1 } else { 0 }),
            asset: asset(a),
            flags: AccountFlags(flags),
        })
    };
    g.push(open(1, USD, 0));
    g.push(open(2, EUR, 0));
    for id in 3..=10 {
        g.push(open(id, asset_of(id), d));
    }
    // A USD account that may only be credited up to its debits.
    g.push(open(11, USD, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS));
    let n = g.rng.range(60, 220);
    while g.out.len() < n as usize {
        g.step();
    }
    // Query every account (the first query also interrupts any open chain).
    for id in 0..=MAX_ACCOUNT {
        g.push(Command::QueryBalance {
            account: AccountId(id as u128),
            actor: Actor::Admin,
        });
    }
    g.out
}

/// Runs one seed; adds the name of every outcome seen to `seen`.
fn run_seed(seed: u64, seen: &mut BTreeMap<&'static str, usize>) {
    let stream = gen_stream(seed);
    let cfg = EngineConfig::small();
    let mut engine = Engine::new(cfg);
    let mut ev = engine.new_events();
    let mut reference = RefLedger::new(&cfg);
    for (i, input) in stream.iter().enumerate() {
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.apply(input, &mut ev);
            engine.validate()
        }));
        let fail = |what: String| -> ! {
            let from = i.saturating_sub(15);
            let mut msg =
                format!("seed {seed} (TEST_SEED={seed}), command #{i}: {what}\nrecent commands:\n");
            for (j, inp) in stream.iter().enumerate().take(i + 1).skip(from) {
                msg += &format!("  #{j} now={} {:?}\n", inp.now.0, inp.command);
            }
            panic!("{msg}");
        };
        let valid = match applied {
            Ok(v) => v,
            Err(_) => fail("the engine panicked (message above)".into()),
        };
        let want = reference.apply(input);
        if ev.as_slice() != want.as_slice() {
            fail(format!(
                "events differ\n  engine:    {:?}\n  reference: {:?}",
                ev.as_slice(),
                want
            ));
        }
        if ev.seq != input.seq {
            fail(format!("events carry seq {:?}", ev.seq));
        }
        if let Err(e) = valid {
            fail(format!("validate: {e}"));
        }
        for e in &want {
            let name = match e {
                Event::TransferOk { .. } => "transfer_ok",
                Event::TransferExpired { .. } => "transfer_expired",
                Event::AccountOpened { .. } => "account_opened",
                Event::Balance { .. } => "balance",
                Event::Rejected { reason, .. } => reason.name(),
                Event::TransferRejected { reason, .. } => reason.name(),
                Event::AccountRejected { reason, .. } => match reason {
                    LedgerError::IdMustNotBeZero => "account:id_must_not_be_zero",
                    LedgerError::FlagsAreMutuallyExclusive => {
                        "account:flags_are_mutually_exclusive"
                    }
                    r => r.name(),
                },
                _ => "other",
            };
            *seen.entry(name).or_default() += 1;
        }
    }
    // Determinism: the same stream on a fresh engine reaches the same state hash.
    let mut again = Engine::new(cfg);
    for input in &stream {
        again.apply(input, &mut ev);
    }
    assert_eq!(
        engine.state_hash(),
        again.state_hash(),
        "seed {seed}: state_hash differs on replay"
    );
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("TEST_SEED") {
        return vec![s.trim().parse().expect("TEST_SEED must be a u64")];
    }
    let n = std::env::var("TEST_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(300u64);
    (0..n).map(|i| 0x1ED6_E500_0000 + i).collect()
}

#[test]
fn ledger_matches_reference() {
    let mut seen = BTreeMap::new();
    let seeds = seeds();
    for &seed in &seeds {
        run_seed(seed, &mut seen);
    }
    println!("outcomes over {} seeds: {seen:?}", seeds.len());
    if seeds.len() >= 200 {
        // The generator must reach every outcome it is meant to cover.
        let mut want: Vec<&str> = LedgerError::ALL
            .iter()
            .filter(|e| **e != LedgerError::CapacityExceeded)
            .map(|e| e.name())
            .collect();
        want.extend([
            "transfer_ok",
            "transfer_expired",
            "account_opened",
            "balance",
            "invalid_time",
            "account_not_found",
            "account:id_must_not_be_zero",
            "account:flags_are_mutually_exclusive",
        ]);
        let missing: Vec<&str> = want.into_iter().filter(|w| !seen.contains_key(w)).collect();
        assert!(
            missing.is_empty(),
            "the generator never produced {missing:?}"
        );
    }
}

#[test]
fn state_hash_depends_on_the_stream() {
    // Two different streams must (practically always) reach different states.
    let cfg = EngineConfig::small();
    let hash = |seed| {
        let mut e = Engine::new(cfg);
        let mut ev = e.new_events();
        for input in gen_stream(seed) {
            e.apply(&input, &mut ev);
        }
        e.state_hash()
    };
    assert_ne!(hash(1), hash(2));
    assert_eq!(hash(3), hash(3));
}

/// A query or install slipped into a stream: `None` for nothing.
fn extra(rng: &mut SplitMix64, ids: &[TransferId]) -> Option<Command> {
    let actor = match rng.below(3) {
        0 => Actor::Admin,
        _ => Actor::owners(&[OwnerId(rng.range(0, 4))]).unwrap(),
    };
    match rng.below(100) {
        0..=7 if !ids.is_empty() => Some(Command::LookupTransfer {
            id: if rng.chance_pct(10) {
                TransferId(rng.next_u64() as u128)
            } else {
                rng.pick(ids)
            },
            actor,
        }),
        8..=15 => {
            let by = if rng.chance_pct(50) {
                history::RangeBy::LedgerSeq
            } else {
                history::RangeBy::Time
            };
            let lo = rng.below(40);
            Some(Command::GetAccountTransfers {
                filter: history::AccountFilter {
                    account: AccountId(rng.range(0, MAX_ACCOUNT) as u128),
                    by,
                    lo,
                    hi: if rng.chance_pct(5) {
                        lo.saturating_sub(1)
                    } else if rng.chance_pct(50) {
                        u64::MAX
                    } else {
                        lo + rng.below(60)
                    },
                    limit: [0, 1, 3, 10, 1024, 1025][rng.below(6) as usize],
                    newest_first: rng.chance_pct(50),
                },
                actor,
            })
        }
        _ => None,
    }
}

/// One seed's stream with installs (a run cut every few inputs) and transfer
/// queries slipped in, on an engine whose memory holds only 64 transfers;
/// the reference keeps everything forever. Events and query rows must be
/// equal; no `capacity_exceeded` may appear (the writer keeps up); the
/// engine must leave records in history; snapshot and replay reach the same
/// state hash.
fn run_history_seed(seed: u64) -> usize {
    let cfg = EngineConfig {
        transfers_max: 64,
        ..EngineConfig::small()
    };
    let mut engine = Engine::new(cfg);
    let store = history::MemHistory::new();
    engine.attach_history(Box::new(store.clone()));
    let mut cutter = history::HistoryCutter::new(store.clone(), 0);
    let mut ev = engine.new_events();
    let mut reference = RefLedger::new(&EngineConfig {
        transfers_max: u32::MAX,
        ..cfg
    });
    let mut rng = SplitMix64(seed ^ 0x4157_0000);
    let mut applied: Vec<Input> = Vec::new();
    let mut ids = Vec::new();
    let mut evicted = 0;
    for input in gen_stream(seed) {
        let mut cmds = Vec::new();
        if rng.chance_pct(25) && !applied.is_empty() {
            let through = Seq(applied.len() as u64);
            let (run, checksum) = cutter.cut(through);
            reference.hold_run(run, checksum);
            cmds.push(Command::InstallHistory {
                run,
                through_seq: through,
                checksum,
            });
        }
        cmds.extend(extra(&mut rng, &ids));
        cmds.push(input.command);
        for command in cmds {
            let input = Input {
                seq: Seq(applied.len() as u64 + 1),
                now: input.now,
                command,
            };
            engine.apply(&input, &mut ev);
            cutter.feed(ev.changes());
            let want = reference.apply(&input);
            let ctx = || format!("seed {seed} (TEST_SEED={seed}) input {input:?}");
            assert_eq!(ev.as_slice(), want.as_slice(), "{}", ctx());
            if let [Event::Transfers { rows, .. }] = ev.as_slice() {
                assert_eq!(ev.rows(*rows), reference.rows(), "{}", ctx());
            }
            if let Err(e) = engine.validate() {
                panic!("{}: validate: {e}", ctx());
            }
            if let Command::Transfer { transfer, .. } = command {
                ids.push(transfer.id);
            }
            applied.push(input);
        }
        evicted = evicted.max(
            ids.iter()
                .filter(|&&id| !engine.transfer_in_memory(id))
                .count(),
        );
    }
    let mut back = Engine::restore(cfg, &engine.snapshot()).expect("restore");
    back.attach_history(Box::new(store.clone()));
    assert_eq!(
        back.state_hash(),
        engine.state_hash(),
        "seed {seed}: snapshot"
    );
    let mut again = Engine::new(cfg);
    again.attach_history(Box::new(store));
    for input in &applied {
        again.apply(input, &mut ev);
    }
    assert_eq!(
        again.state_hash(),
        engine.state_hash(),
        "seed {seed}: replay"
    );
    evicted
}

#[test]
fn ledger_with_history_matches_reference() {
    let seeds: Vec<u64> = seeds().into_iter().take(120).collect();
    let evicted: usize = seeds.iter().map(|&s| run_history_seed(s)).sum();
    println!(
        "over {} seeds, {evicted} transfer ids answered from history",
        seeds.len()
    );
    assert!(evicted > seeds.len(), "too little left memory: {evicted}");
}
