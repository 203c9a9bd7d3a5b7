//! Smoke test of trading on the ledger: holds, settlement with fees, conservation.
use engine::*;

fn input(seq: u64, command: Command) -> Input {
    Input {
        seq: Seq(seq),
        now: Timestamp(0),
        command,
    }
}

#[test]
fn a_settled_trade_moves_base_quote_and_fees() {
    let mut e = Engine::new(EngineConfig::small());
    let mut ev = e.new_events();
    let usd = Asset::from_str_code("USD").unwrap();
    let btc = Asset::from_str_code("BTC").unwrap();
    let mut seq = 0;
    let mut run = |e: &mut Engine, c: Command| {
        seq += 1;
        e.apply(&input(seq, c), &mut ev);
        if let Err(err) = e.validate() {
            panic!("after {c:?}: {err}");
        }
        ev.as_slice().to_vec()
    };
    let open = |id: u128, owner: u64, asset: Asset, flags: u16| {
        Command::OpenAccount(AccountSpec {
            id: AccountId(id),
            owner: OwnerId(owner),
            asset,
            flags: AccountFlags(flags),
        })
    };
    let d = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    for c in [
        open(1, 0, usd, 0),
        open(2, 0, btc, 0),
        open(9, 0, usd, 0),
        open(101, 7, usd, d),
        open(102, 7, btc, d),
        open(201, 8, usd, d),
        open(202, 8, btc, d),
    ] {
        assert!(matches!(run(&mut e, c)[0], Event::AccountOpened { .. }));
    }
    let tr = |id: u128, dr: u128, cr: u128, amount: u128| Command::Transfer {
        transfer: TransferSpec {
            id: TransferId(id),
            debit_account: AccountId(dr),
            credit_account: AccountId(cr),
            amount: Amount(amount),
            code: 1,
            flags: TransferFlags(0),
            pending_id: TransferId(0),
            timeout_ns: 0,
        },
        batch_end: true,
        actor: Actor::Admin,
    };
    assert_eq!(
        run(&mut e, tr(1, 1, 101, 100_000)),
        vec![Event::TransferOk { id: TransferId(1) }]
    );
    assert_eq!(
        run(&mut e, tr(2, 2, 202, 50)),
        vec![Event::TransferOk { id: TransferId(2) }]
    );
    let spec = InstrumentSpec {
        id: InstrumentId(1),
        symbol: Symbol::from_str_code("BTC-USD").unwrap(),
        base: btc,
        quote: usd,
        tick: 1,
        lot_size: 1,
        qty_min: 1,
        qty_max: 1000,
        reference_price: Price(100),
        band_bps: Some(1000),
        circuit_bps: None,
        circuit_window_ns: 0,
        maker_fee_bps: 10,
        taker_fee_bps: 20,
        fee_account: AccountId(9),
        settle: true,
        open_orders_max: None,
        notional_max: None,
    };
    assert!(run(&mut e, Command::AddInstrument(spec)).is_empty());
    let order = |owner: u64, coid: u64, side: Side, price: u64, qty: u64| {
        Command::NewOrder(NewOrder {
            owner: OwnerId(owner),
            instrument: InstrumentId(1),
            client_order_id: ClientOrderId(coid),
            side,
            order_type: OrderType::Limit,
            price: Some(Price(price)),
            qty: Qty(qty),
            tif: Tif::Gtc,
            expire_at: None,
            post_only: false,
            stp: Stp::None,
            display_qty: None,
            trigger_price: None,
        })
    };
    // Seller rests 10 @ 100; buyer lifts 4 @ up to 105 (pays 100: improvement released).
    assert!(matches!(
        run(&mut e, order(8, 1, Side::Sell, 100, 10))[0],
        Event::Accepted { .. }
    ));
    let evs = run(&mut e, order(7, 1, Side::Buy, 105, 4));
    assert!(matches!(
        evs[1],
        Event::Trade {
            qty: Qty(4),
            price: Price(100),
            ..
        }
    ));
    let bal = |e: &mut Engine, id: u128| {
        let mut ev = e.new_events();
        e.apply(
            &input(
                0,
                Command::QueryBalance {
                    account: AccountId(id),
                    actor: Actor::Admin,
                },
            ),
            &mut ev,
        );
        match ev.as_slice()[0] {
            Event::Balance {
                debits_posted,
                credits_posted,
                debits_pending,
                credits_pending,
                ..
            } => (
                debits_posted.0,
                credits_posted.0,
                debits_pending.0,
                credits_pending.0,
            ),
            ref x => panic!("{x:?}"),
        }
    };
    // Buyer: notional 400 + taker fee ceil(400*20/10000)=1.
    assert_eq!(bal(&mut e, 101), (401, 100_000, 0, 0));
    assert_eq!(bal(&mut e, 102), (0, 4, 0, 0));
    // Seller: gets 400 - maker fee ceil(400*10/10000)=1; 6 BTC still held.
    assert_eq!(bal(&mut e, 201), (0, 399, 0, 0));
    assert_eq!(bal(&mut e, 202), (4, 50, 6, 0));
    assert_eq!(bal(&mut e, 9), (0, 2, 0, 0));
    // Not enough USD for a big buy.
    let evs = run(&mut e, order(7, 2, Side::Buy, 100, 1000));
    assert_eq!(
        evs,
        vec![Event::Rejected {
            target: RejectTarget::ClientOrder(ClientOrderId(2)),
            reason: RejectReason::InsufficientFunds
        }]
    );
    // Cancel releases the seller's hold.
    run(
        &mut e,
        Command::Cancel {
            owner: OwnerId(8),
            order_id: OrderId(1),
        },
    );
    assert_eq!(bal(&mut e, 202), (4, 50, 0, 0));
}
