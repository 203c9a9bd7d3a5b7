//! Seeded check of trading on the ledger: random limit GTC/IOC orders,
//! cancels, deposits and withdrawals on one settling instrument with fees.
//! After every command `Engine::validate` must pass and every account's
//! balances (queried with `QueryBalance`) must equal what
//! `bourse_tests::ref_settle::SettleModel` computes from the engine's order
//! events; orders and withdrawals must be refused exactly when the model says
//! funds are short.
//!
//! `TEST_SEEDS=N` runs N seeds (default 60); `TEST_SEED=S` runs only S.

use bourse_tests::fixtures::{instrument, plain_transfer};
use bourse_tests::ref_settle::SettleModel;
use engine::rng::SplitMix64;
use engine::*;

const OWNERS: u64 = 4;
const EXT_USD: u128 = 1;
const EXT_BTC: u128 = 2;
const FEES: u128 = 9;

fn quote_acct(owner: u64) -> u128 {
    100 + owner as u128
}
fn base_acct(owner: u64) -> u128 {
    200 + owner as u128
}

struct Run {
    engine: Engine,
    ev: Events,
    seq: u64,
    log: Vec<Command>,
    seed: u64,
}

impl Run {
    fn apply(&mut self, command: Command) -> Vec<Event> {
        self.seq += 1;
        self.log.push(command);
        let input = Input {
            seq: Seq(self.seq),
            now: Timestamp(0),
            command,
        };
        self.engine.apply(&input, &mut self.ev);
        if let Err(e) = self.engine.validate() {
            self.fail(&format!("validate: {e}"));
        }
        self.ev.as_slice().to_vec()
    }

    fn fail(&self, what: &str) -> ! {
        let mut msg = format!(
            "seed {} (TEST_SEED={}), command #{}: {what}\nrecent commands:\n",
            self.seed,
            self.seed,
            self.log.len()
        );
        for c in self
            .log
            .iter()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            msg += &format!("  {c:?}\n");
        }
        panic!("{msg}");
    }

    fn balance(&mut self, account: u128) -> (u128, u128, u128, u128) {
        match self.apply(Command::QueryBalance {
            account: AccountId(account),
            actor: Actor::Admin,
        })[..]
        {
            [Event::Balance {
                debits_posted,
                credits_posted,
                debits_pending,
                credits_pending,
                ..
            }] => (
                debits_posted.0,
                credits_posted.0,
                debits_pending.0,
                credits_pending.0,
            ),
            ref x => self.fail(&format!("query {account}: {x:?}")),
        }
    }
}

fn transfer(id: u128, dr: u128, cr: u128, amount: u128) -> Command {
    Command::Transfer {
        transfer: plain_transfer(id, dr, cr, amount),
        batch_end: true,
        actor: Actor::Admin,
    }
}

/// Runs one seed; counts trades, refusals for funds, self-trades and fees collected in `tally`.
fn run_seed(seed: u64, tally: &mut [u128; 4]) {
    let mut rng = SplitMix64(seed);
    let usd = Asset::from_str_code("USD").unwrap();
    let btc = Asset::from_str_code("BTC").unwrap();
    let mut r = Run {
        engine: Engine::new(EngineConfig::small()),
        ev: Events::default(),
        seq: 0,
        log: Vec::new(),
        seed,
    };
    r.ev = r.engine.new_events();
    let lot_size = rng.range(1, 3);
    let maker_bps = rng.pick(&[0u32, 1, 7, 10, 25]);
    let taker_bps = rng.pick(&[0u32, 3, 10, 20, 50]);
    let mut accounts = vec![EXT_USD, EXT_BTC, FEES];
    let open = |id: u128, owner: u64, asset: Asset, flags: u16| {
        Command::OpenAccount(AccountSpec {
            id: AccountId(id),
            owner: OwnerId(owner),
            asset,
            flags: AccountFlags(flags),
        })
    };
    let d = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    let mut setup = vec![
        open(EXT_USD, 0, usd, 0),
        open(EXT_BTC, 0, btc, 0),
        open(FEES, 0, usd, 0),
    ];
    for o in 1..=OWNERS {
        setup.push(open(quote_acct(o), o, usd, d));
        setup.push(open(base_acct(o), o, btc, d));
        accounts.extend([quote_acct(o), base_acct(o)]);
    }
    for c in setup {
        assert!(matches!(r.apply(c)[..], [Event::AccountOpened { .. }]));
    }
    let mut m = SettleModel::new(lot_size, maker_bps, taker_bps, FEES, &accounts);
    for o in 1..=OWNERS {
        m.trading.insert(o, (quote_acct(o), base_acct(o)));
    }
    let spec = InstrumentSpec {
        lot_size,
        qty_max: 1000,
        maker_fee_bps: maker_bps,
        taker_fee_bps: taker_bps,
        fee_account: AccountId(FEES),
        settle: true,
        ..instrument(1)
    };
    let evs = r.apply(Command::AddInstrument(spec));
    assert!(evs.is_empty(), "{evs:?}");
    let mut next_transfer = 0u128;
    let mut next_coid = 0u64;
    let steps = rng.range(80, 200);
    for _ in 0..steps {
        let owner = rng.range(1, OWNERS);
        match rng.below(100) {
            0..=14 => {
                // Deposit.
                next_transfer += 1;
                let (ext, acct, amt) = if rng.chance_pct(50) {
                    (EXT_USD, quote_acct(owner), rng.range(100, 3000) as u128)
                } else {
                    (EXT_BTC, base_acct(owner), rng.range(1, 40) as u128)
                };
                let evs = r.apply(transfer(next_transfer, ext, acct, amt));
                if evs
                    != [Event::TransferOk {
                        id: TransferId(next_transfer),
                    }]
                {
                    r.fail(&format!("deposit: {evs:?}"));
                }
                m.transfer(ext, acct, amt);
            }
            15..=24 => {
                // Withdrawal: refused exactly when it exceeds what is available (holds included).
                next_transfer += 1;
                let (acct, ext, amt) = if rng.chance_pct(50) {
                    (quote_acct(owner), EXT_USD, rng.range(1, 2000) as u128)
                } else {
                    (base_acct(owner), EXT_BTC, rng.range(1, 30) as u128)
                };
                let fits = m.balance(acct).available() >= amt as i128;
                let evs = r.apply(transfer(next_transfer, acct, ext, amt));
                let id = TransferId(next_transfer);
                let want = if fits {
                    Event::TransferOk { id }
                } else {
                    Event::TransferRejected {
                        id,
                        reason: LedgerError::ExceedsCredits,
                    }
                };
                if evs != [want] {
                    r.fail(&format!(
                        "withdrawal of {amt} from {acct}: {evs:?}, want {want:?}"
                    ));
                }
                if fits {
                    m.transfer(acct, ext, amt);
                }
            }
            25..=34 => {
                // Cancel one of the owner's live orders, or a random id.
                let live = m.live_orders();
                let id = if !live.is_empty() && rng.chance_pct(80) {
                    rng.pick(&live)
                } else {
                    rng.range(1, 50)
                };
                let evs = r.apply(Command::Cancel {
                    owner: OwnerId(owner),
                    order_id: OrderId(id),
                });
                m.on_events(&evs);
            }
            _ => {
                next_coid += 1;
                let side = if rng.chance_pct(50) {
                    Side::Buy
                } else {
                    Side::Sell
                };
                let price = rng.range(90, 110);
                let qty = rng.range(1, 12);
                let tif = if rng.chance_pct(25) {
                    Tif::Ioc
                } else {
                    Tif::Gtc
                };
                let acct = if side == Side::Buy {
                    quote_acct(owner)
                } else {
                    base_acct(owner)
                };
                let fits =
                    m.balance(acct).available() >= m.new_order_hold(side, price, qty) as i128;
                let evs = r.apply(Command::NewOrder(NewOrder {
                    owner: OwnerId(owner),
                    instrument: InstrumentId(1),
                    client_order_id: ClientOrderId(next_coid),
                    side,
                    order_type: OrderType::Limit,
                    price: Some(Price(price)),
                    qty: Qty(qty),
                    tif,
                    expire_at: None,
                    post_only: false,
                    stp: Stp::None,
                    display_qty: None,
                    trigger_price: None,
                }));
                for e in &evs {
                    if let Event::Trade {
                        maker_owner,
                        taker_owner,
                        ..
                    } = e
                    {
                        tally[0] += 1;
                        tally[2] += (maker_owner == taker_owner) as u128;
                    }
                }
                let refused = matches!(
                    evs[..],
                    [Event::Rejected {
                        reason: RejectReason::InsufficientFunds,
                        ..
                    }]
                );
                tally[1] += refused as u128;
                if refused == fits {
                    r.fail(&format!(
                        "order {side:?} {qty}@{price}: model says fits={fits}, engine: {evs:?}"
                    ));
                }
                m.on_events(&evs);
            }
        }
        for &a in &accounts {
            let got = r.balance(a);
            let b = m.balance(a);
            // The escrow's pending credits are not visible; user accounts have no pending credits.
            let want = (b.dpo, b.cpo, b.dpe, b.cpe);
            if got != want {
                r.fail(&format!(
                    "account {a}: engine (dpo, cpo, dpe, cpe) = {got:?}, model = {want:?} \
                     (lot {lot_size}, maker {maker_bps} bps, taker {taker_bps} bps)"
                ));
            }
        }
    }
    tally[3] += m.balance(FEES).cpo;
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("TEST_SEED") {
        return vec![s.trim().parse().expect("TEST_SEED must be a u64")];
    }
    let n = std::env::var("TEST_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(60u64);
    (0..n).map(|i| 0x5E77_1E00_0000 + i).collect()
}

#[test]
fn settlement_matches_model() {
    let mut tally = [0u128; 4];
    let seeds = seeds();
    for &seed in &seeds {
        run_seed(seed, &mut tally);
    }
    let [trades, refused, self_trades, fees] = tally;
    println!("{} seeds: {trades} trades ({self_trades} self-trades), {refused} orders refused for funds, {fees} fees", seeds.len());
    if seeds.len() >= 20 {
        assert!(
            trades > 0 && refused > 0 && self_trades > 0 && fees > 0,
            "{tally:?}"
        );
    }
}
