//! The order pool's home slots: order `id` lives at slot `id & mask` of a
//! home region twice `orders_max` (rounded up to a power of two), unless an
//! older live order still holds that slot; then it spills past the region.
//!
//! With `orders_max` 4 the home region has 8 slots, so ids 1, 9, 17, 25 share
//! a home. Each step is a command and the events it must produce; after
//! every step the engine validates, and a snapshot restores to the same
//! state hash and the same snapshot bytes. Cancels by id must find orders
//! wherever they sit (home, spilled, home reused after a spill), and the
//! `orders_max` limit counts live orders, not slots.

use bourse_tests::fixtures::instrument;
use engine::*;

const INST: InstrumentId = InstrumentId(1);
const OWNER: OwnerId = OwnerId(7);

fn buy(coid: u64, price: u64) -> Command {
    Command::NewOrder(NewOrder {
        owner: OWNER,
        instrument: INST,
        client_order_id: ClientOrderId(coid),
        side: Side::Buy,
        order_type: OrderType::Limit,
        price: Some(Price(price)),
        qty: Qty(1),
        tif: Tif::Gtc,
        expire_at: None,
        post_only: false,
        stp: Stp::None,
        display_qty: None,
        trigger_price: None,
    })
}

fn cancel(id: u64) -> Command {
    Command::Cancel {
        owner: OWNER,
        order_id: OrderId(id),
    }
}

fn accepted(id: u64, coid: u64, price: u64) -> Event {
    Event::Accepted {
        order_id: OrderId(id),
        client_order_id: ClientOrderId(coid),
        owner: OWNER,
        instrument: INST,
        side: Side::Buy,
        price: Some(Price(price)),
        qty: Qty(1),
    }
}

fn canceled(id: u64) -> Event {
    Event::Canceled {
        order_id: OrderId(id),
        owner: OWNER,
        qty: Qty(1),
        reason: CancelReason::User,
    }
}

struct Run {
    cfg: EngineConfig,
    engine: Engine,
    events: Events,
    seq: u64,
}

impl Run {
    fn new() -> Run {
        let cfg = EngineConfig {
            orders_max: 4,
            ..EngineConfig::small()
        };
        let mut run = Run {
            cfg,
            engine: Engine::new(cfg),
            events: Events::with_capacity(64, 64),
            seq: 0,
        };
        run.step(Command::AddInstrument(instrument(1)), &[]);
        run
    }

    fn step(&mut self, command: Command, want: &[Event]) {
        self.seq += 1;
        let input = Input {
            seq: Seq(self.seq),
            now: Timestamp(self.seq),
            command,
        };
        self.engine.apply(&input, &mut self.events);
        assert_eq!(self.events.as_slice(), want, "step {}: {command:?}", self.seq);
        if let Err(e) = self.engine.validate() {
            panic!("step {}: invariant broken: {e}", self.seq);
        }
        let bytes = self.engine.snapshot();
        let back = Engine::restore(self.cfg, &bytes).expect("snapshot restores");
        assert_eq!(back.state_hash(), self.engine.state_hash(), "step {}", self.seq);
        assert_eq!(back.snapshot(), bytes, "step {}: snapshot bytes", self.seq);
    }

    /// Accepts order `id` (client order id = id) at `price`, resting.
    fn rest(&mut self, id: u64, price: u64) {
        self.step(buy(id, price), &[accepted(id, id, price)]);
    }

    fn cancel(&mut self, id: u64) {
        self.step(cancel(id), &[canceled(id)]);
    }
}

#[test]
fn orders_found_at_home_spilled_and_in_reused_homes() {
    let mut run = Run::new();
    run.rest(1, 90); // home 1, lives long
    for id in 2..=8 {
        run.rest(id, 91);
        run.cancel(id);
    }
    run.rest(9, 92); // home 1 is taken by order 1: spills
    run.rest(10, 93); // home 2, free again
    run.cancel(1); // home 1 frees while 9 is spilled
    for id in 11..=16 {
        run.rest(id, 91);
        run.cancel(id);
    }
    run.rest(17, 94); // home 1 again, free now
    run.cancel(9); // the spilled order is still found
    run.rest(18, 95); // home 2 is taken by 10: spills into 9's old slot
    run.cancel(17);
    run.cancel(10);
    run.cancel(18);
    run.step(
        cancel(9),
        &[Event::Rejected {
            target: RejectTarget::Order(OrderId(9)),
            reason: RejectReason::UnknownOrder,
        }],
    );
    run.step(
        cancel(0),
        &[Event::Rejected {
            target: RejectTarget::Order(OrderId(0)),
            reason: RejectReason::UnknownOrder,
        }],
    );
}

#[test]
fn orders_max_counts_live_orders_not_slots() {
    let mut run = Run::new();
    for id in 1..=4 {
        run.rest(id, 90 + id);
    }
    run.step(
        buy(5, 99),
        &[Event::Rejected {
            target: RejectTarget::ClientOrder(ClientOrderId(5)),
            reason: RejectReason::CapacityExceeded,
        }],
    );
    // Ids 5..: homes 5, 6, 7, 0, 1 (taken by order 1: spills), …
    run.cancel(2);
    run.cancel(3);
    run.cancel(4);
    for id in 5..=20 {
        run.rest(id, 95);
        run.cancel(id);
    }
    for id in 21..=23 {
        run.rest(id, 96);
    }
    run.step(
        buy(24, 97),
        &[Event::Rejected {
            target: RejectTarget::ClientOrder(ClientOrderId(24)),
            reason: RejectReason::CapacityExceeded,
        }],
    );
    run.cancel(1);
    run.rest(24, 97);
}
