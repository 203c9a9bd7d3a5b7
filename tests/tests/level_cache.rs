//! The price → level lookup (`LevelCache`, one per book side): a direct-mapped
//! array of 1024 entries (with `EngineConfig::small()`'s `levels_max`)
//! indexed by the price in ticks, plus a count of levels whose entry another
//! level holds. Prices 1024 ticks apart share an entry, so these tests rest
//! orders at such prices and check that every level is still found (orders
//! join the existing level, not a second one), freed and found again in any
//! order, with and without a tick whose power of two is shifted out. After
//! every step the engine validates (which checks the cache against the
//! sorted side) and a snapshot restores to the same hash and bytes.

use bourse_tests::fixtures::instrument;
use engine::*;

const INST: InstrumentId = InstrumentId(1);

struct Run {
    cfg: EngineConfig,
    engine: Engine,
    events: Events,
    seq: u64,
    coid: u64,
}

impl Run {
    fn new(tick: u64) -> Run {
        let cfg = EngineConfig::small();
        let mut run = Run {
            cfg,
            engine: Engine::new(cfg),
            events: Events::with_capacity(64, 64),
            seq: 0,
            coid: 0,
        };
        let spec = InstrumentSpec {
            tick,
            reference_price: Price(1_000_000 * tick),
            ..instrument(1)
        };
        run.apply(Command::AddInstrument(spec));
        assert!(run.events.is_empty());
        run
    }

    fn apply(&mut self, command: Command) {
        self.seq += 1;
        let input = Input {
            seq: Seq(self.seq),
            now: Timestamp(self.seq),
            command,
        };
        self.engine.apply(&input, &mut self.events);
        if let Err(e) = self.engine.validate() {
            panic!("step {}: invariant broken: {e}", self.seq);
        }
        let bytes = self.engine.snapshot();
        let back = Engine::restore(self.cfg, &bytes).expect("snapshot restores");
        assert_eq!(back.state_hash(), self.engine.state_hash());
        assert_eq!(back.snapshot(), bytes);
    }

    /// Rests a buy of `qty` at `price`; returns its order id.
    fn buy(&mut self, price: u64, qty: u64) -> OrderId {
        self.coid += 1;
        self.apply(Command::NewOrder(NewOrder {
            owner: OwnerId(1),
            instrument: INST,
            client_order_id: ClientOrderId(self.coid),
            side: Side::Buy,
            order_type: OrderType::Limit,
            price: Some(Price(price)),
            qty: Qty(qty),
            tif: Tif::Gtc,
            expire_at: None,
            post_only: false,
            stp: Stp::None,
            display_qty: None,
            trigger_price: None,
        }));
        match self.events.as_slice() {
            [Event::Accepted { order_id, .. }] => *order_id,
            other => panic!("buy at {price} not simply accepted: {other:?}"),
        }
    }

    fn cancel(&mut self, id: OrderId) {
        self.apply(Command::Cancel {
            owner: OwnerId(1),
            order_id: id,
        });
        assert!(
            matches!(self.events.as_slice(), [Event::Canceled { order_id, .. }] if *order_id == id),
            "{:?}",
            self.events.as_slice()
        );
    }

    /// The bid side as (price, qty, orders), best first.
    fn bids(&self) -> Vec<(u64, u64, u32)> {
        self.engine
            .book_side(INST, Side::Buy)
            .into_iter()
            .map(|l| (l.price.0, l.qty.0, l.orders))
            .collect()
    }
}

/// Levels 1024 ticks apart share a cache entry; each is still one level.
fn colliding_levels(tick: u64) {
    let mut run = Run::new(tick);
    let p = |ticks: u64| (1_000_000 + ticks) * tick;
    let a = run.buy(p(0), 1); // takes the entry
    let b = run.buy(p(1024), 2); // same entry: uncached
    let c = run.buy(p(2048), 3); // same entry: uncached
    let a2 = run.buy(p(0), 10); // joins a's level
    let b2 = run.buy(p(1024), 20); // joins b's level (found by search)
    assert_eq!(
        run.bids(),
        vec![(p(2048), 3, 1), (p(1024), 22, 2), (p(0), 11, 2)]
    );
    run.cancel(a);
    run.cancel(a2); // a's level goes: the entry is free, b and c still uncached
    let b3 = run.buy(p(1024), 300); // found by search, not a new level
    assert_eq!(run.bids(), vec![(p(2048), 3, 1), (p(1024), 322, 3)]);
    let d = run.buy(p(0), 4000); // a new level at the free entry
    run.cancel(c);
    for id in [b, b2, b3] {
        run.cancel(id);
    }
    assert_eq!(run.bids(), vec![(p(0), 4000, 1)]);
    let e = run.buy(p(1), 5); // neighbouring ticks never collide
    let f = run.buy(p(1023), 6);
    assert_eq!(
        run.bids(),
        vec![(p(1023), 6, 1), (p(1), 5, 1), (p(0), 4000, 1)]
    );
    for id in [d, e, f] {
        run.cancel(id);
    }
    assert!(run.bids().is_empty());
}

#[test]
fn colliding_levels_tick_1() {
    colliding_levels(1);
}

#[test]
fn colliding_levels_tick_100() {
    colliding_levels(100);
}
