//! Determinism: the same random stream applied to two fresh engines gives
//! identical events and identical `state_hash()` after every command; a
//! different stream ends in a different hash; the hash moves when the state
//! does and stays put when a command is rejected.

use bourse_tests::gen::{instrument, Gen};
use bourse_tests::reference::{evs_of, Reference};
use engine::*;

/// A stream of `n` inputs for `seed` (aimed with the reference model).
fn stream(seed: u64, n: usize) -> Vec<Input> {
    let mut gen = Gen::new(seed);
    let mut r = Reference::new();
    (0..n)
        .map(|_| {
            let input = gen.next(&r);
            r.apply(&input);
            input
        })
        .collect()
}

fn final_hash(inputs: &[Input]) -> u128 {
    let mut e = Engine::new(EngineConfig::small());
    let mut ev = e.new_events();
    for i in inputs {
        e.apply(i, &mut ev);
    }
    e.state_hash()
}

#[test]
fn same_stream_same_events_and_hashes() {
    for seed in 0..20 {
        let inputs = stream(seed, 600);
        let mut a = Engine::new(EngineConfig::small());
        let mut b = Engine::new(EngineConfig::small());
        let (mut ea, mut eb) = (a.new_events(), b.new_events());
        assert_eq!(a.state_hash(), b.state_hash());
        for (k, input) in inputs.iter().enumerate() {
            a.apply(input, &mut ea);
            b.apply(input, &mut eb);
            assert_eq!(evs_of(&ea), evs_of(&eb), "seed {seed} command #{k}");
            assert_eq!(ea.seq, input.seq);
            assert_eq!(a.state_hash(), b.state_hash(), "seed {seed} command #{k}");
        }
    }
}

#[test]
fn different_streams_different_hashes() {
    let h1 = final_hash(&stream(1, 500));
    let h2 = final_hash(&stream(2, 500));
    assert_ne!(h1, h2);
    assert_eq!(h1, final_hash(&stream(1, 500)));
}

fn limit(owner: u64, coid: u64, side: Side, price: u64, qty: u64) -> Command {
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
}

#[test]
fn hash_follows_state() {
    let mut e = Engine::new(EngineConfig::small());
    let mut ev = e.new_events();
    let mut seq = 0;
    let mut run = |e: &mut Engine, c: Command| {
        seq += 1;
        let input = Input {
            seq: Seq(seq),
            now: Timestamp(100),
            command: c,
        };
        e.apply(&input, &mut ev);
        e.state_hash()
    };
    let h0 = e.state_hash();
    let h1 = run(&mut e, Command::AddInstrument(instrument(1, 1, 100)));
    assert_ne!(h0, h1, "adding an instrument changes the hash");
    let h2 = run(&mut e, limit(1, 1, Side::Sell, 101, 5));
    assert_ne!(h1, h2, "an accepted order changes the hash");
    let h3 = run(&mut e, limit(1, 1, Side::Sell, 101, 5));
    assert_eq!(h2, h3, "a rejected order (duplicate id) changes nothing");
    let h4 = run(&mut e, limit(2, 1, Side::Buy, 101, 2));
    assert_ne!(h3, h4, "a trade changes the hash");
    let h5 = run(
        &mut e,
        Command::Cancel {
            owner: OwnerId(1),
            order_id: OrderId(1),
        },
    );
    assert_ne!(h4, h5, "a cancel changes the hash");
    let h6 = run(
        &mut e,
        Command::Cancel {
            owner: OwnerId(1),
            order_id: OrderId(1),
        },
    );
    assert_eq!(h5, h6, "a rejected cancel changes nothing");
    let h7 = run(
        &mut e,
        Command::QueryBook {
            instrument: InstrumentId(1),
            depth: None,
        },
    );
    assert_eq!(h6, h7, "a query changes nothing");
}
