//! Snapshots: a restored engine has the same state hash and answers the same
//! inputs with the same events; damaged snapshot bytes are refused, never a panic.
use engine::rng::SplitMix64;
use engine::*;

fn setup() -> Vec<Command> {
    let usd = Asset::from_str_code("USD").unwrap();
    let btc = Asset::from_str_code("BTC").unwrap();
    let mut v = Vec::new();
    let open = |id: u128, owner: u64, asset: Asset, flags: u16| {
        Command::OpenAccount(AccountSpec {
            id: AccountId(id),
            owner: OwnerId(owner),
            asset,
            flags: AccountFlags(flags),
        })
    };
    v.push(open(1, 0, usd, 0));
    v.push(open(2, 0, btc, 0));
    v.push(open(9, 0, usd, 0));
    for owner in 1..=4u64 {
        v.push(open(
            100 + owner as u128,
            owner,
            usd,
            AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        ));
        v.push(open(
            200 + owner as u128,
            owner,
            btc,
            AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        ));
        for (id, dr, cr, amt) in [
            (owner as u128 * 10, 1, 100 + owner as u128, 1_000_000),
            (owner as u128 * 10 + 1, 2, 200 + owner as u128, 1_000),
        ] {
            v.push(Command::Transfer {
                transfer: TransferSpec {
                    id: TransferId(id),
                    debit_account: AccountId(dr),
                    credit_account: AccountId(cr),
                    amount: Amount(amt),
                    code: 1,
                    flags: TransferFlags(0),
                    pending_id: TransferId(0),
                    timeout_ns: 0,
                },
                batch_end: true,
                actor: Actor::Admin,
            });
        }
    }
    for (id, settle) in [(1u32, true), (2, false)] {
        v.push(Command::AddInstrument(InstrumentSpec {
            id: InstrumentId(id),
            symbol: Symbol::from_str_code("BTC-USD").unwrap(),
            base: btc,
            quote: usd,
            tick: 1,
            lot_size: 1,
            qty_min: 1,
            qty_max: 1000,
            reference_price: Price(100),
            band_bps: Some(2000),
            circuit_bps: None,
            circuit_window_ns: 0,
            maker_fee_bps: 5,
            taker_fee_bps: 15,
            fee_account: AccountId(9),
            settle,
            open_orders_max: None,
            notional_max: None,
        }));
    }
    v
}

fn random_command(r: &mut SplitMix64, coid: &mut u64, transfer_id: &mut u128) -> Command {
    let owner = OwnerId(1 + r.below(4));
    match r.below(10) {
        0..=5 => {
            *coid += 1;
            let side = if r.below(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let gtd = r.below(5) == 0;
            Command::NewOrder(NewOrder {
                owner,
                instrument: InstrumentId(1 + r.below(2) as u32),
                client_order_id: ClientOrderId(*coid),
                side,
                order_type: OrderType::Limit,
                price: Some(Price(95 + r.below(11))),
                qty: Qty(1 + r.below(20)),
                tif: if gtd {
                    Tif::Gtd
                } else if r.below(6) == 0 {
                    Tif::Ioc
                } else {
                    Tif::Gtc
                },
                expire_at: gtd.then(|| Timestamp(r.below(2000))),
                post_only: false,
                stp: if r.below(3) == 0 {
                    Stp::Decrement
                } else {
                    Stp::None
                },
                display_qty: (r.below(5) == 0).then_some(Qty(1)),
                trigger_price: None,
            })
        }
        6 if coid.is_multiple_of(2) => Command::CancelByClientId {
            owner,
            client_order_id: ClientOrderId(1 + r.below(*coid + 1)),
        },
        6 => Command::Cancel {
            owner,
            order_id: OrderId(1 + r.below(*coid + 1)),
        },
        7 => Command::Replace {
            owner,
            order_id: OrderId(1 + r.below(*coid + 1)),
            price: Some(Price(95 + r.below(11))),
            qty: Some(Qty(1 + r.below(10))),
            requeue: coid.is_multiple_of(3),
        },
        8 => {
            *transfer_id += 1;
            let pending = r.below(2) == 0;
            // Some chains are left open across a snapshot, with their actors.
            let linked = r.below(4) == 0;
            let flags = if pending { TransferFlags::PENDING } else { 0 }
                | if linked { TransferFlags::LINKED } else { 0 };
            Command::Transfer {
                transfer: TransferSpec {
                    id: TransferId(1000 + *transfer_id),
                    debit_account: AccountId(100 + 1 + r.below(4) as u128),
                    credit_account: AccountId(100 + 1 + r.below(4) as u128),
                    amount: Amount(1 + r.below(500) as u128),
                    code: 1,
                    flags: TransferFlags(flags),
                    pending_id: TransferId(0),
                    timeout_ns: if pending { r.below(1000) } else { 0 },
                },
                batch_end: !linked,
                actor: if r.below(2) == 0 {
                    Actor::Admin
                } else {
                    Actor::owners(&[owner, OwnerId(r.below(4))]).unwrap()
                },
            }
        }
        _ => Command::Time { now: Timestamp(0) },
    }
}

fn cfg() -> EngineConfig {
    EngineConfig {
        client_order_ids_max: 4096,
        transfers_max: 4096,
        accounts_max: 64,
        orders_max: 2048,
        ..EngineConfig::small()
    }
}

#[test]
fn restore_reproduces_state_and_future_events() {
    for seed in 0..20u64 {
        let mut r = SplitMix64(seed);
        let mut a = Engine::new(cfg());
        let mut ev = a.new_events();
        let mut now = 0u64;
        let (mut coid, mut tid) = (0u64, 0u128);
        let mut seq = 0u64;
        let step = |e: &mut Engine, c: &Command, now: u64, seq: u64, ev: &mut Events| {
            let c = match c {
                Command::Time { .. } => Command::Time {
                    now: Timestamp(now),
                },
                c => *c,
            };
            e.apply(
                &Input {
                    seq: Seq(seq),
                    now: Timestamp(now),
                    command: c,
                },
                ev,
            );
        };
        for c in setup() {
            seq += 1;
            step(&mut a, &c, now, seq, &mut ev);
        }
        for _ in 0..300 {
            seq += 1;
            now += r.below(20);
            let c = random_command(&mut r, &mut coid, &mut tid);
            step(&mut a, &c, now, seq, &mut ev);
        }
        a.validate().unwrap();
        let bytes = a.snapshot();
        let mut b = Engine::restore(cfg(), &bytes).unwrap();
        // Faulting pages in changes nothing logically.
        b.prefault();
        assert_eq!(a.state_hash(), b.state_hash(), "seed {seed}");
        let c = Engine::restore(cfg(), &b.snapshot()).unwrap();
        assert_eq!(
            c.state_hash(),
            a.state_hash(),
            "seed {seed}: restoring twice changes the state"
        );
        let mut ev_b = b.new_events();
        for i in 0..300 {
            seq += 1;
            now += r.below(20);
            let c = random_command(&mut r, &mut coid, &mut tid);
            step(&mut a, &c, now, seq, &mut ev);
            step(&mut b, &c, now, seq, &mut ev_b);
            assert_eq!(ev.as_slice(), ev_b.as_slice(), "seed {seed} step {i}");
            assert_eq!(a.state_hash(), b.state_hash(), "seed {seed} step {i}");
        }
        b.validate().unwrap();
    }
}

#[test]
fn damaged_snapshots_are_refused_without_panic() {
    let mut r = SplitMix64(7);
    let mut a = Engine::new(cfg());
    let mut ev = a.new_events();
    let (mut coid, mut tid) = (0u64, 0u128);
    for (i, c) in setup().into_iter().enumerate() {
        a.apply(
            &Input {
                seq: Seq(i as u64 + 1),
                now: Timestamp(0),
                command: c,
            },
            &mut ev,
        );
    }
    for i in 0..200u64 {
        let c = random_command(&mut r, &mut coid, &mut tid);
        a.apply(
            &Input {
                seq: Seq(100 + i),
                now: Timestamp(i),
                command: c,
            },
            &mut ev,
        );
    }
    let bytes = a.snapshot();
    for cut in [0, 7, 12, bytes.len() / 2, bytes.len() - 1] {
        assert!(Engine::restore(cfg(), &bytes[..cut]).is_err());
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(matches!(
        Engine::restore(cfg(), &extra),
        Err(SnapshotError::TrailingBytes { .. })
    ));
    // Single-byte damage anywhere: an error or a consistent engine, never a panic.
    let mut refused = 0;
    for _ in 0..1500 {
        let mut d = bytes.clone();
        let at = r.below(d.len() as u64) as usize;
        d[at] ^= 1 << r.below(8);
        if Engine::restore(cfg(), &d).is_err() {
            refused += 1;
        }
    }
    assert!(
        refused > 500,
        "only {refused} of 1500 damaged snapshots refused"
    );
}
