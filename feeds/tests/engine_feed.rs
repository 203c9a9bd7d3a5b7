//! The feed builder against the engine itself: a seeded random order flow
//! (limit, market, IOC, FOK, post-only, icebergs, stops, stop-limits, every
//! STP mode, cancels, replaces, mass cancels, halts, a circuit breaker, GTD
//! expiry) goes through `engine::Engine`; its events go through the
//! `FeedBuilder`. After every input the builder's book must equal the
//! engine's visible book (levels, order counts, queue order), the published
//! L2 its top `depth`, L1 its best prices; subscribers that join late, lose
//! messages or are conflated must end with the same book. Every message also
//! round-trips through the wire format.

use engine::rng::SplitMix64;
use engine::{
    AccountId, Asset, ClientOrderId, Command, Engine, EngineConfig, Event, Events, Input,
    InstrumentId, InstrumentSpec, LevelView, NewOrder, OrderId, OrderType, OwnerId, Price, Qty,
    Seq, Side, Stp, Symbol, Tif, Timestamp,
};
use feeds::{
    wire, Body, BookBuilder, Channel, CheckpointError, FeedBuilder, FeedConfig, L2Conflator,
    Message, Need,
};
use std::collections::HashMap;

const INSTS: [InstrumentId; 2] = [InstrumentId(1), InstrumentId(2)];

fn spec(id: InstrumentId, circuit: bool) -> InstrumentSpec {
    InstrumentSpec {
        id,
        symbol: Symbol::from_str_code("SYM").unwrap(),
        base: Asset::from_str_code("BASE").unwrap(),
        quote: Asset::from_str_code("QUOTE").unwrap(),
        tick: 1,
        lot_size: 1,
        qty_min: 1,
        qty_max: 50,
        reference_price: Price(100),
        band_bps: None,
        circuit_bps: circuit.then_some(800),
        circuit_window_ns: if circuit { 5_000 } else { 0 },
        maker_fee_bps: 0,
        taker_fee_bps: 0,
        fee_account: AccountId(0),
        settle: false,
        open_orders_max: None,
        notional_max: None,
    }
}

/// The engine, the builder and a random flow.
struct World {
    rng: SplitMix64,
    engine: Engine,
    events: Events,
    builder: FeedBuilder,
    seq: u64,
    now: u64,
    coid: u64,
    live: Vec<(OrderId, OwnerId)>,
    /// Every message published, in order.
    log: Vec<Message>,
    wire: Vec<u8>,
    /// Builders restored from checkpoints of `builder`: fed every input
    /// too, each must publish exactly what `builder` publishes.
    followers: Vec<FeedBuilder>,
    /// Every input with its events, when recording.
    tape: Option<Vec<(Input, Events)>>,
}

impl World {
    fn new(seed: u64, depth: usize) -> World {
        let mut w = World {
            rng: SplitMix64(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5851_f42d),
            engine: Engine::new(EngineConfig::small()),
            events: Events::with_capacity(8192, 4096),
            builder: FeedBuilder::new(FeedConfig {
                depth,
                ..FeedConfig::small()
            }),
            seq: 0,
            now: 1_000,
            coid: 1,
            live: Vec::new(),
            log: Vec::new(),
            wire: Vec::new(),
            followers: Vec::new(),
            tape: None,
        };
        w.apply(Command::AddInstrument(spec(INSTS[0], false)));
        w.apply(Command::AddInstrument(spec(INSTS[1], true)));
        w
    }

    fn apply(&mut self, command: Command) -> std::ops::Range<usize> {
        self.seq += 1;
        self.now += self.rng.range(0, 400);
        let input = Input {
            seq: Seq(self.seq),
            now: Timestamp(self.now),
            command,
        };
        self.engine.apply(&input, &mut self.events);
        for e in &self.events {
            match *e {
                Event::Accepted {
                    order_id, owner, ..
                } => self.live.push((order_id, owner)),
                Event::Canceled { order_id, .. } => self.live.retain(|l| l.0 != order_id),
                _ => {}
            }
        }
        self.builder.apply(&input, &self.events);
        let start = self.log.len();
        self.builder.drain_into(&mut self.log);
        for f in &mut self.followers {
            f.apply(&input, &self.events);
            let mut out = Vec::new();
            f.drain_into(&mut out);
            assert_eq!(out, self.log[start..], "a restored builder's messages");
        }
        if let Some(tape) = &mut self.tape {
            tape.push((input, self.events.clone()));
        }
        // Every message round-trips through its wire record.
        for m in &self.log[start..] {
            self.wire.clear();
            let n = wire::encode(m, &mut self.wire);
            assert_eq!(n, self.wire.len());
            let (d, k) = wire::decode(&self.wire).expect("decode");
            assert_eq!((d, k), (*m, n));
        }
        start..self.log.len()
    }

    fn random_command(&mut self) -> Command {
        let r = &mut self.rng;
        let inst = INSTS[r.below(2) as usize];
        let owner = OwnerId(r.range(1, 4));
        let side = if r.chance_pct(50) {
            Side::Buy
        } else {
            Side::Sell
        };
        let roll = r.below(100);
        if roll < 55 {
            let mut o = NewOrder {
                owner,
                instrument: inst,
                client_order_id: ClientOrderId(self.coid),
                side,
                order_type: OrderType::Limit,
                price: None,
                qty: Qty(r.range(1, 30)),
                tif: Tif::Gtc,
                expire_at: None,
                post_only: false,
                stp: [
                    Stp::None,
                    Stp::CancelTaker,
                    Stp::CancelMaker,
                    Stp::CancelBoth,
                    Stp::Decrement,
                ][r.below(5) as usize],
                display_qty: None,
                trigger_price: None,
            };
            self.coid += 1;
            // Prices around 100, skewed so books cross often.
            let skew: i64 = if side == Side::Buy { -2 } else { 2 };
            let p = (100 + skew + r.range(0, 12) as i64 - 6) as u64;
            match r.below(100) {
                0..=59 => o.price = Some(Price(p)),
                60..=67 => {
                    o.price = Some(Price(p));
                    o.display_qty = Some(Qty(r.range(1, o.qty.0)));
                }
                68..=73 => {
                    o.price = Some(Price(p));
                    o.tif = Tif::Ioc;
                }
                74..=77 => {
                    o.price = Some(Price(p));
                    o.tif = Tif::Fok;
                }
                78..=81 => {
                    o.price = Some(Price(p));
                    o.post_only = true;
                }
                82..=85 => {
                    o.price = Some(Price(p));
                    o.tif = Tif::Gtd;
                    o.expire_at = Some(Timestamp(self.now + r.range(0, 5_000)));
                }
                86..=90 => o.order_type = OrderType::Market,
                91..=95 => {
                    o.order_type = OrderType::Stop;
                    o.trigger_price = Some(Price(r.range(94, 106)));
                }
                _ => {
                    o.order_type = OrderType::StopLimit;
                    o.price = Some(Price(p));
                    o.trigger_price = Some(Price(r.range(94, 106)));
                    if r.chance_pct(30) {
                        o.display_qty = Some(Qty(r.range(1, o.qty.0)));
                    }
                }
            }
            return Command::NewOrder(o);
        }
        if roll < 93 && !self.live.is_empty() {
            let (id, own) = self.live[r.below(self.live.len() as u64) as usize];
            if roll < 72 {
                return Command::Cancel {
                    owner: own,
                    order_id: id,
                };
            }
            let price = r.chance_pct(60).then(|| Price(r.range(92, 108)));
            let qty = (price.is_none() || r.chance_pct(50)).then(|| Qty(r.range(1, 30)));
            return Command::Replace {
                owner: own,
                order_id: id,
                price,
                qty,
                // Some lose priority at an unchanged price (no extra draw:
                // the stream of every seed is as before).
                requeue: id.0.is_multiple_of(3),
            };
        }
        match r.below(10) {
            0..=3 => Command::MassCancel {
                owner,
                instrument: r.chance_pct(70).then_some(inst),
                side: r.chance_pct(50).then_some(side),
            },
            4..=6 => {
                if self.engine.is_halted(inst) {
                    Command::Resume { instrument: inst }
                } else if r.chance_pct(30) {
                    Command::Halt { instrument: inst }
                } else {
                    Command::Time {
                        now: Timestamp(self.now + r.range(0, 3_000)),
                    }
                }
            }
            _ => Command::Time {
                now: Timestamp(self.now + r.range(0, 3_000)),
            },
        }
    }

    fn step(&mut self) -> std::ops::Range<usize> {
        let c = self.random_command();
        self.apply(c)
    }

    fn engine_side(&self, inst: InstrumentId, side: Side) -> Vec<LevelView> {
        self.engine.book_side(inst, side)
    }

    /// The builder equals the engine: full book, queues, published L2, L1.
    fn check_builder(&self) {
        assert_eq!(self.builder.anomalies(), 0, "builder anomalies");
        let depth = self.builder.config().depth;
        for inst in INSTS {
            let Some(book) = self.builder.book(inst) else {
                assert!(self.engine_side(inst, Side::Buy).is_empty());
                assert!(self.engine_side(inst, Side::Sell).is_empty());
                continue;
            };
            for side in [Side::Buy, Side::Sell] {
                let eng = self.engine_side(inst, side);
                assert_eq!(book.side(side).to_vec(), eng, "{inst:?} {side:?} levels");
                let q: Vec<Vec<u64>> = self
                    .engine
                    .queue_ids(inst, side)
                    .into_iter()
                    .map(|l| l.into_iter().map(|id| id.0).collect())
                    .collect();
                assert_eq!(book.queues(side), q, "{inst:?} {side:?} queues");
                let top: Vec<LevelView> = eng.iter().take(depth).copied().collect();
                assert_eq!(self.builder.published_levels(inst, side), &top[..]);
            }
            let (bid, ask) = self.engine.best_prices(inst);
            let q = self.builder.quote(inst);
            assert_eq!((q.bid.price, q.ask.price), (bid, ask), "{inst:?} L1");
            assert_eq!(self.builder.is_halted(inst), self.engine.is_halted(inst));
        }
    }

    /// A subscriber's book equals the engine's (top `depth` for L2; queues for L3).
    fn check_client(&self, c: &BookBuilder, inst: InstrumentId, channel: Channel) {
        assert!(c.is_live());
        assert_eq!(c.errors(), 0, "subscriber errors");
        let depth = self.builder.config().depth;
        for side in [Side::Buy, Side::Sell] {
            let eng = self.engine_side(inst, side);
            let want: Vec<LevelView> = match channel {
                Channel::L2 => eng.iter().take(depth).copied().collect(),
                _ => eng,
            };
            assert_eq!(c.levels(side), want, "{channel:?} {inst:?} {side:?}");
            if channel == Channel::L3 {
                let q: Vec<Vec<u64>> = self
                    .engine
                    .queue_ids(inst, side)
                    .into_iter()
                    .map(|l| l.into_iter().map(|id| id.0).collect())
                    .collect();
                assert_eq!(c.orders().queues(side), q, "L3 queues");
            }
        }
    }

    fn snapshot_via_wire(&self, inst: InstrumentId, channel: Channel) -> feeds::Snapshot {
        let s = self.builder.snapshot(inst, channel);
        let mut bytes = Vec::new();
        let n = wire::encode_snapshot(&s, &mut bytes);
        let (d, k) = wire::decode_snapshot(&bytes).expect("snapshot decodes");
        assert_eq!((&d, k), (&s, n));
        d
    }
}

/// Builder = engine after every input; live subscribers (from the start)
/// equal it too; sequence numbers have no gaps.
#[test]
fn builder_matches_engine_after_every_input() {
    for seed in 1..=8u64 {
        let depth = if seed % 2 == 0 { 5 } else { 1000 };
        let mut w = World::new(seed, depth);
        let mut subs: Vec<(BookBuilder, InstrumentId, Channel)> = Vec::new();
        for inst in INSTS {
            for ch in [Channel::L2, Channel::L3] {
                let mut b = BookBuilder::new(inst, ch, 1024);
                assert_eq!(b.on_snapshot(&w.snapshot_via_wire(inst, ch)), Need::Nothing);
                subs.push((b, inst, ch));
            }
        }
        let mut chan_seq: HashMap<Channel, u64> = HashMap::new();
        let mut inst_seq: HashMap<(Channel, u32), u64> = HashMap::new();
        let (mut trades, mut halts, mut replenish) = (0, 0, 0);
        for _ in 0..5000 {
            let r = w.step();
            for m in &w.log[r] {
                let c = chan_seq.entry(m.channel()).or_default();
                *c += 1;
                assert_eq!(m.channel_seq, *c, "channel sequence");
                let i = inst_seq.entry((m.channel(), m.instrument.0)).or_default();
                *i += 1;
                assert_eq!(m.instrument_seq, *i, "instrument sequence");
                match m.body {
                    Body::Trade(_) => trades += 1,
                    Body::Status(s) if s.halted => halts += 1,
                    _ => {}
                }
                if m.flags.has(feeds::Flags::REPLENISH) {
                    replenish += 1;
                }
                for (b, _, _) in subs.iter_mut() {
                    assert_eq!(b.on_message(m), Need::Nothing);
                }
            }
            w.check_builder();
            for (b, inst, ch) in &subs {
                w.check_client(b, *inst, *ch);
            }
        }
        println!("seed {seed}: {trades} trades, {halts} halts, {replenish} iceberg slices");
        assert!(trades > 100 && halts > 0 && replenish > 0);
    }
}

/// A subscriber that starts listening at a random moment, gets its snapshot
/// a little later (the snapshot includes some of what it buffered), then
/// follows: its book equals the engine's from then on.
#[test]
fn join_at_a_random_moment() {
    for seed in 10..22u64 {
        let mut w = World::new(seed, if seed % 2 == 0 { 5 } else { 1000 });
        let warmup = w.rng.range(200, 1500);
        for _ in 0..warmup {
            w.step();
        }
        let inst = INSTS[(seed % 2) as usize];
        let ch = if seed % 3 == 0 {
            Channel::L2
        } else {
            Channel::L3
        };
        let mut b = BookBuilder::new(inst, ch, 1 << 16);
        let delay = w.rng.range(0, 50);
        let mut listened = w.log.len();
        for _ in 0..delay {
            w.step();
            for m in &w.log[listened..] {
                assert!(matches!(b.on_message(m), Need::Snapshot | Need::Nothing));
            }
            listened = w.log.len();
        }
        assert!(!b.is_live());
        let snap = w.snapshot_via_wire(inst, ch);
        assert_eq!(b.on_snapshot(&snap), Need::Nothing);
        w.check_client(&b, inst, ch);
        for _ in 0..500 {
            let r = w.step();
            for m in &w.log[r] {
                assert_eq!(b.on_message(m), Need::Nothing);
            }
            w.check_client(&b, inst, ch);
        }
    }
}

/// Messages lost on the way: the subscriber notices the hole by sequence,
/// asks for exactly the missing range, and the retransmission (from the
/// publisher's log) repairs the book.
#[test]
fn dropped_messages_are_detected_and_repaired() {
    for seed in 30..42u64 {
        let mut w = World::new(seed, if seed % 2 == 0 { 5 } else { 1000 });
        let inst = INSTS[(seed % 2) as usize];
        let ch = if seed % 3 == 0 {
            Channel::L2
        } else {
            Channel::L3
        };
        let mut b = BookBuilder::new(inst, ch, 1 << 12);
        b.on_snapshot(&w.snapshot_via_wire(inst, ch));
        // The publisher's retransmission store for this (channel, instrument).
        let mut sent: Vec<Message> = Vec::new();
        let (mut dropped, mut asked) = (0u64, 0u64);
        let mut open: Option<(u64, u64)> = None;
        for step in 0..2500 {
            let r = w.step();
            for m in &w.log[r] {
                if m.instrument != inst || m.channel() != ch {
                    continue;
                }
                sent.push(*m);
                assert_eq!(sent.len() as u64, m.instrument_seq);
                if w.rng.chance_pct(3) {
                    dropped += 1;
                    continue;
                }
                match b.on_message(m) {
                    Need::Nothing => {}
                    Need::Retransmit { from, to } => {
                        assert!(from <= to && to < m.instrument_seq);
                        asked += 1;
                        open = Some((from, to));
                    }
                    Need::Snapshot => panic!("buffer is large enough"),
                }
            }
            // Retransmissions arrive a few inputs later.
            if let Some((from, to)) = open.filter(|_| step % 4 == 0) {
                open = None;
                for m in &sent[from as usize - 1..to as usize] {
                    if let Need::Retransmit { from, to } = b.on_message(m) {
                        open = Some((from, to));
                    }
                }
            }
            // End of the publisher's batch: it says how far it has sent.
            if let Need::Retransmit { from, to } = b.sent_up_to(sent.len() as u64) {
                asked += 1;
                open = Some((from, to));
            }
            if open.is_none() && b.buffered() == 0 {
                w.check_client(&b, inst, ch);
            }
        }
        // Whatever is still missing at the end is repaired too.
        let mut guard = 0;
        while let Some((from, to)) = open.take() {
            for m in &sent[from as usize - 1..to as usize] {
                if let Need::Retransmit { from, to } = b.on_message(m) {
                    open = Some((from, to));
                }
            }
            if let Need::Retransmit { from, to } = b.sent_up_to(sent.len() as u64) {
                open = Some((from, to));
            }
            guard += 1;
            assert!(guard < 100);
        }
        assert_eq!(b.buffered(), 0);
        assert_eq!(b.last_seq(), sent.len() as u64);
        w.check_client(&b, inst, ch);
        println!("seed {seed} {ch:?}: {dropped} dropped, {asked} retransmit requests");
        assert!(dropped > 0 && asked > 0);
    }
}

/// A slow subscriber gets L2 through a conflating buffer drained now and
/// then: once drained, its book equals the true L2.
#[test]
fn conflated_l2_equals_true_l2_once_drained() {
    for seed in 50..56u64 {
        let mut w = World::new(seed, if seed % 2 == 0 { 5 } else { 1000 });
        let mut subs: Vec<BookBuilder> = INSTS
            .iter()
            .map(|&i| {
                let mut b = BookBuilder::new(i, Channel::L2, 64);
                b.on_snapshot(&w.snapshot_via_wire(i, Channel::L2));
                b
            })
            .collect();
        let mut conf = L2Conflator::new(4096);
        let (mut pushed, mut sent) = (0usize, 0usize);
        let mut out = Vec::new();
        for _ in 0..3000 {
            let r = w.step();
            for m in &w.log[r] {
                if m.channel() == Channel::L2 {
                    conf.push(m).expect("room");
                    pushed += 1;
                }
            }
            if w.rng.chance_pct(5) {
                out.clear();
                conf.drain_into(&mut out);
                sent += out.len();
                for m in &out {
                    for b in subs.iter_mut() {
                        assert_eq!(b.on_message(m), Need::Nothing);
                    }
                }
                for (b, &i) in subs.iter().zip(INSTS.iter()) {
                    w.check_client(b, i, Channel::L2);
                }
            }
        }
        println!("seed {seed}: {pushed} L2 messages conflated into {sent}");
        assert!(sent < pushed);
    }
}

/// Decoding refuses what it should and never panics on garbage.
#[test]
fn wire_rejects_bad_records() {
    let mut w = World::new(99, 5);
    while w.log.len() < 200 {
        w.step();
    }
    let mut bytes = Vec::new();
    for m in &w.log {
        bytes.clear();
        wire::encode(m, &mut bytes);
        // Truncated.
        assert_eq!(
            wire::decode(&bytes[..bytes.len() - 1]).err(),
            Some(wire::WireError::Short)
        );
        // Wrong schema, version, length.
        for (at, want) in [
            (6, wire::WireError::BadSchema),
            (7, wire::WireError::BadVersion),
            (0, wire::WireError::BadLength),
        ] {
            let mut b = bytes.clone();
            b[at] ^= 0x40;
            assert_eq!(wire::decode(&b).err(), Some(want));
        }
        // Reserved bytes of the common block.
        let mut b = bytes.clone();
        b[8 + 30] = 1;
        assert_eq!(wire::decode(&b).err(), Some(wire::WireError::Reserved));
        // Any single corrupted byte: an error or a message, never a panic.
        let mut rng = SplitMix64(m.channel_seq);
        for _ in 0..8 {
            let mut b = bytes.clone();
            let at = rng.below(b.len() as u64) as usize;
            b[at] = rng.next_u64() as u8;
            let _ = wire::decode(&b);
        }
    }
}

/// Every channel's snapshot of every instrument: `a`'s equal `b`'s, and so
/// do the books' queues.
fn assert_same_state(a: &FeedBuilder, b: &FeedBuilder, seed: u64) {
    assert_eq!(a.last_seq(), b.last_seq(), "seed {seed}: last_seq");
    assert_eq!(a.anomalies(), b.anomalies(), "seed {seed}: anomalies");
    for inst in INSTS {
        for ch in Channel::ALL {
            assert_eq!(
                a.snapshot(inst, ch),
                b.snapshot(inst, ch),
                "seed {seed}: {inst:?} {ch:?} snapshot"
            );
        }
    }
}

/// A builder restored from a checkpoint taken at a random moment publishes,
/// input for input, exactly what the original does (sequence numbers,
/// stops, iceberg slices and queue order included), and stays in the same
/// state; a checkpoint of a restored builder is the same bytes.
#[test]
fn a_builder_restored_from_a_checkpoint_continues_exactly_like_the_original() {
    let mut totals = (0u64, 0u64);
    for seed in 60..68u64 {
        println!("seed {seed}");
        let depth = if seed % 2 == 0 { 5 } else { 1000 };
        let mut w = World::new(seed, depth);
        let cfg = *w.builder.config();
        let points: Vec<u64> = (0..3).map(|_| w.rng.range(0, 1500)).collect();
        // Orders live at the first checkpoint: stops parked and icebergs
        // across it must come out right on the restored side.
        let mut before: Vec<u64> = Vec::new();
        for step in 0..1500 {
            if points.contains(&step) {
                let bytes = w.builder.checkpoint();
                let b = FeedBuilder::from_checkpoint(cfg, &bytes).expect("a checkpoint restores");
                assert_eq!(
                    b.checkpoint(),
                    bytes,
                    "seed {seed}: checkpoint(restore(x)) == x"
                );
                assert_same_state(&w.builder, &b, seed);
                if w.followers.is_empty() {
                    before = w.live.iter().map(|l| l.0 .0).collect();
                }
                w.followers.push(b);
            }
            let r = w.step();
            for m in &w.log[r] {
                if let Body::L3(feeds::L3Update::Add { order_id, .. }) = m.body {
                    if m.flags.has(feeds::Flags::REPLENISH) && before.contains(&order_id) {
                        totals.1 += 1;
                    }
                }
            }
            for e in &w.events {
                if let Event::Triggered { order_id, .. } = e {
                    totals.0 += u64::from(before.contains(&order_id.0));
                }
            }
            for f in &w.followers {
                assert_same_state(&w.builder, f, seed);
            }
        }
        w.check_builder();
        for f in &w.followers {
            assert_eq!(
                f.checkpoint(),
                w.builder.checkpoint(),
                "seed {seed}: same bytes"
            );
        }
        println!("seed {seed}: restored at {points:?}");
        assert!(!w.followers.is_empty());
    }
    println!(
        "across checkpoints: {} stops triggered, {} iceberg slices",
        totals.0, totals.1
    );
    assert!(totals.0 > 0 && totals.1 > 0);
}

/// Bytes that are not a checkpoint are refused with a typed error, never
/// a panic: every truncation of a real one, a wrong version, trailing
/// bytes, seeded garbage; a single corrupted byte gives an error or a
/// builder that takes the rest of the stream without panicking.
#[test]
fn bad_checkpoints_are_refused_without_panicking() {
    let seed = 70;
    println!("seed {seed}");
    let mut w = World::new(seed, 5);
    for _ in 0..800 {
        w.step();
    }
    let cfg = *w.builder.config();
    let bytes = w.builder.checkpoint();
    assert!(bytes.len() > 200, "a checkpoint with some state");
    for n in 0..bytes.len() {
        let r = FeedBuilder::from_checkpoint(cfg, &bytes[..n]);
        assert!(r.is_err(), "truncated to {n} bytes");
    }
    let mut b = bytes.clone();
    b[0] ^= 0xff;
    assert!(matches!(
        FeedBuilder::from_checkpoint(cfg, &b),
        Err(CheckpointError::Version { .. })
    ));
    let mut b = bytes.clone();
    b.push(0);
    assert!(matches!(
        FeedBuilder::from_checkpoint(cfg, &b),
        Err(CheckpointError::TrailingBytes { bytes: 1 })
    ));
    assert!(matches!(
        FeedBuilder::from_checkpoint(cfg, &[]),
        Err(CheckpointError::Empty)
    ));
    // A narrower depth than the checkpointed builder's.
    let narrow = FeedConfig { depth: 2, ..cfg };
    assert!(matches!(
        FeedBuilder::from_checkpoint(narrow, &bytes),
        Err(CheckpointError::TooDeep { .. })
    ));
    let mut rng = SplitMix64(seed);
    for _ in 0..2000 {
        let mut g: Vec<u8> = (0..rng.range(1, 400))
            .map(|_| rng.next_u64() as u8)
            .collect();
        g[0] = bytes[0];
        assert!(
            FeedBuilder::from_checkpoint(cfg, &g).is_err(),
            "garbage {g:?}"
        );
    }
    // One corrupted byte, then the rest of the stream.
    w.tape = Some(Vec::new());
    for _ in 0..200 {
        w.step();
    }
    let tape = w.tape.take().expect("recorded");
    let (mut refused, mut restored) = (0, 0);
    for _ in 0..300 {
        let mut b = bytes.clone();
        let at = 1 + rng.below(b.len() as u64 - 1) as usize;
        b[at] = rng.next_u64() as u8;
        let Ok(mut f) = FeedBuilder::from_checkpoint(cfg, &b) else {
            refused += 1;
            continue;
        };
        restored += 1;
        for (input, events) in &tape {
            f.apply(input, events);
            f.drain_into(&mut Vec::new());
        }
        let _ = f.checkpoint();
    }
    println!("corrupted: {refused} refused, {restored} restored and fed");
    assert!(refused > 0);
}
