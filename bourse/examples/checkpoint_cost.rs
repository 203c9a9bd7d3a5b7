//! What a feed checkpoint costs the market-data thread: a book of N resting
//! orders (default 100,000; `-- 1000000` for a million) is built through a
//! real engine and `FeedBuilder`, then checkpointed and restored several
//! times; prints the median time of each and the checkpoint's size.
//!
//! A replicated node takes one per Raft snapshot (`[cluster]
//! snapshot_every_entries`, 100,000 by default) on the thread that also
//! delivers execution reports, so this is the pause those reports see.
//!
//! `cargo run --release -p bourse --example checkpoint_cost [-- N]`

use bourse::loadgen::load_instrument;
use engine::{
    ClientOrderId, Command, Engine, EngineConfig, Input, InstrumentId, NewOrder, OrderType,
    OwnerId, Price, Qty, Seq, Side, Stp, Tif, Timestamp,
};
use feeds::{FeedBuilder, FeedConfig};
use std::time::{Duration, Instant};

const RUNS: usize = 7;

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().expect("N: a number of orders"));
    let cfg = EngineConfig {
        orders_max: n + 16,
        ..EngineConfig::default()
    };
    let feed = FeedConfig {
        orders_max: n as usize,
        ..FeedConfig::small()
    };
    let builder = book_of(n, cfg, feed);
    let resting = builder.book(load_instrument().id).map_or(0, |b| b.len());
    assert_eq!(resting, n as usize, "every order rests");
    let mut bytes = Vec::new();
    let take = median(|| bytes = builder.checkpoint());
    let mut copy = None;
    let clone = median(|| copy = Some(builder.clone()));
    drop(copy);
    let restore = median(|| {
        FeedBuilder::from_checkpoint(feed, &bytes).expect("restores");
    });
    println!(
        "{n} resting orders: checkpoint {} bytes; median of {RUNS}: clone {clone:?}, \
         checkpoint {take:?}, restore {restore:?}",
        bytes.len()
    );
}

/// A builder that saw `n` resting orders rest on one instrument (both sides,
/// 1,000 levels each, never crossing).
fn book_of(n: u32, cfg: EngineConfig, feed: FeedConfig) -> FeedBuilder {
    let mut engine = Engine::new(cfg);
    let mut events = engine.new_events();
    let mut builder = FeedBuilder::new(feed);
    let inst = load_instrument().id;
    let mut seq = 0;
    let mut apply = |command: Command, builder: &mut FeedBuilder| {
        seq += 1;
        let input = Input {
            seq: Seq(seq),
            now: Timestamp(seq),
            command,
        };
        engine.apply(&input, &mut events);
        builder.apply(&input, &events);
        while builder.poll_message().is_some() {}
    };
    apply(Command::AddInstrument(load_instrument()), &mut builder);
    for i in 0..n {
        let buy = i.is_multiple_of(2);
        let level = u64::from(i / 2 % 1_000);
        let price = if buy {
            100_000 - level
        } else {
            100_001 + level
        };
        apply(Command::NewOrder(order(inst, i, buy, price)), &mut builder);
    }
    builder
}

fn order(inst: InstrumentId, i: u32, buy: bool, price: u64) -> NewOrder {
    NewOrder {
        owner: OwnerId(1 + u64::from(i % 64)),
        instrument: inst,
        client_order_id: ClientOrderId(u64::from(i) + 1),
        side: if buy { Side::Buy } else { Side::Sell },
        order_type: OrderType::Limit,
        price: Some(Price(price)),
        qty: Qty(2 + u64::from(i % 99)),
        tif: Tif::Gtc,
        expire_at: None,
        post_only: false,
        stp: Stp::None,
        // Every tenth an iceberg showing 1 of its 2..=100.
        display_qty: i.is_multiple_of(10).then_some(Qty(1)),
        trigger_price: None,
    }
}

/// Median wall time of `RUNS` calls of `f`.
fn median(mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort_unstable();
    t[RUNS / 2]
}
