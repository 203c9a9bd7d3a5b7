//! Feed checkpoints: a `FeedBuilder`'s whole state between inputs as bytes,
//! and a builder rebuilt from them.
//!
//! Why: a replica that installs a Raft snapshot restores its engine at some
//! sequence S, but its feed cannot be derived from the engine: sequence
//! numbers are running message counts, and the L3 state (stops parked,
//! iceberg display sizes, queue priority stamps, what was last published on
//! L1 / L2) exists only in the builder. The checkpoint travels with the
//! snapshot; the restored builder then emits, input for input, exactly the
//! messages the checkpointed one would have.
//!
//! Format: one version byte (`VERSION`), then the postcard encoding of
//! private mirror structs (engine types carry no serde: they are written as
//! plain integers). Nothing here is derived on the way back: published
//! levels and quotes, priority stamps and the next stamp are stored as they
//! were.
//!
//! Invariants:
//! - A checkpoint is taken between inputs with every message drained;
//!   anything else is a caller bug and panics.
//! - Bytes are deterministic: instruments and orders are written sorted by
//!   id, never in a hash map's order, so equal states give equal bytes and
//!   `checkpoint(from_checkpoint(x)) == x`.
//! - Restoring never panics on bad bytes: what does not decode, an unknown
//!   version, trailing bytes, a duplicate instrument or order id, an order
//!   naming an instrument not in the checkpoint, a resting order of size 0,
//!   a repeated priority stamp or one not below its book's next stamp,
//!   published levels out of order or deeper than `cfg.depth` are typed
//!   `CheckpointError`s. Links between a track and its book entry are not
//!   checked: a builder that met anomalies checkpoints them as they are,
//!   and its checkpoint must restore too.
//! - The restored book's level aggregates are rebuilt from its orders (so
//!   they are always the sums over them), through `OrderBook::insert_with_prio`.

use crate::book::{better, BookOrder, OrderBook};
use crate::builder::{FeedBuilder, FeedConfig, Stage, Track};
use crate::msg::{Quote, Top};
use engine::{InstrumentId, LevelView, Price, Qty, Seq, Side};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The format version this build writes and reads.
const VERSION: u8 = 1;

/// Why bytes are not a feed checkpoint this build can restore.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// No bytes at all.
    #[error("empty feed checkpoint")]
    Empty,
    /// A format version this build does not read.
    #[error("feed checkpoint version {found}; this build reads version {VERSION}")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// The body does not decode.
    #[error("feed checkpoint does not decode: {0}")]
    Decode(#[source] postcard::Error),
    /// Bytes left after the checkpoint.
    #[error("{bytes} bytes after the feed checkpoint")]
    TrailingBytes {
        /// How many.
        bytes: usize,
    },
    /// An instrument twice.
    #[error("instrument {instrument} twice in the feed checkpoint")]
    DuplicateInstrument {
        /// The instrument id.
        instrument: u32,
    },
    /// An order id twice (in the books or among the tracked orders).
    #[error("order {order_id} twice in the feed checkpoint")]
    DuplicateOrder {
        /// The order id.
        order_id: u64,
    },
    /// A tracked order naming an instrument the checkpoint lacks.
    #[error("order {order_id} names instrument {instrument}, not in the feed checkpoint")]
    UnknownInstrument {
        /// The order id.
        order_id: u64,
        /// The instrument id it names.
        instrument: u32,
    },
    /// A resting order of size 0.
    #[error("resting order {order_id} has size 0")]
    ZeroQty {
        /// The order id.
        order_id: u64,
    },
    /// A priority stamp that repeats in its book or is not below the book's
    /// next stamp (queue order would be ambiguous).
    #[error("order {order_id}'s priority stamp {prio} repeats or is not below {next_prio}")]
    BadPrio {
        /// The order id.
        order_id: u64,
        /// Its stamp.
        prio: u64,
        /// The book's next stamp.
        next_prio: u64,
    },
    /// Published levels not strictly best first.
    #[error("instrument {instrument}'s published levels are not strictly best first")]
    LevelsOutOfOrder {
        /// The instrument id.
        instrument: u32,
    },
    /// More published levels than the configured depth (a checkpoint of a
    /// builder configured otherwise).
    #[error("instrument {instrument} has {levels} published levels, more than depth {depth}")]
    TooDeep {
        /// The instrument id.
        instrument: u32,
        /// Levels on its deeper side.
        levels: usize,
        /// `FeedConfig::depth`.
        depth: usize,
    },
    /// An instrument another partition's feed already publishes (`MdHub`).
    #[error("instrument {instrument} belongs to partition {owner}, not {partition}")]
    OtherPartition {
        /// The instrument id.
        instrument: u32,
        /// The partition that publishes it.
        owner: usize,
        /// The partition being restored.
        partition: usize,
    },
}

#[derive(Serialize, Deserialize, Clone, Copy)]
enum SideC {
    Buy,
    Sell,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
enum StageC {
    Parked,
    Pending,
    Resting,
}

/// (price, qty, orders).
type LevelC = (u64, u64, u32);
/// (price, qty, orders) of one side's best level.
type TopC = (Option<u64>, u64, u32);

#[derive(Serialize, Deserialize)]
struct OrderC {
    id: u64,
    side: SideC,
    price: u64,
    qty: u64,
    prio: u64,
}

#[derive(Serialize, Deserialize)]
struct InstC {
    id: u32,
    seq: [u64; 5],
    match_id: u64,
    halted: bool,
    next_prio: u64,
    /// Sorted by id.
    orders: Vec<OrderC>,
    pub_bids: Vec<LevelC>,
    pub_asks: Vec<LevelC>,
    pub_quote: (TopC, TopC),
}

#[derive(Serialize, Deserialize)]
struct TrackC {
    id: u64,
    instrument: u32,
    side: SideC,
    price: Option<u64>,
    remaining: u64,
    display: u64,
    stage: StageC,
    shown_at: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct Ckpt {
    seq: u64,
    last_done: u64,
    channel_seq: [u64; 5],
    anomalies: u64,
    /// Sorted by id.
    insts: Vec<InstC>,
    /// Sorted by id.
    tracks: Vec<TrackC>,
}

impl FeedBuilder {
    /// The builder's whole state as bytes (see the module docs). Call it
    /// between inputs with every message drained: anything else is a bug
    /// and panics.
    pub fn checkpoint(&self) -> Vec<u8> {
        assert!(
            !self.in_input,
            "feed checkpoint in the middle of input {}",
            self.seq.0
        );
        assert!(
            self.out.is_empty(),
            "feed checkpoint with {} messages not drained",
            self.out.len()
        );
        assert!(
            self.pending.is_none() && self.dirty.is_empty(),
            "feed checkpoint with an input's work unfinished"
        );
        let mut insts: Vec<InstC> = self.insts.iter().map(inst_c).collect();
        insts.sort_unstable_by_key(|i| i.id);
        let mut tracks: Vec<TrackC> = self
            .orders
            .iter()
            .map(|(&id, t)| track_c(id, t, self.insts[t.inst as usize].id))
            .collect();
        tracks.sort_unstable_by_key(|t| t.id);
        let c = Ckpt {
            seq: self.seq.0,
            last_done: self.last_done.0,
            channel_seq: self.channel_seq,
            anomalies: self.anomalies,
            insts,
            tracks,
        };
        postcard::to_extend(&c, vec![VERSION]).expect("postcard encodes into a vector")
    }

    /// A builder in the state `bytes` (from `checkpoint`) describe, with
    /// capacities from `cfg` (which must have the checkpointed builder's
    /// `depth`). Never panics on bad bytes.
    pub fn from_checkpoint(cfg: FeedConfig, bytes: &[u8]) -> Result<FeedBuilder, CheckpointError> {
        let (&version, body) = bytes.split_first().ok_or(CheckpointError::Empty)?;
        if version != VERSION {
            return Err(CheckpointError::Version { found: version });
        }
        let (c, rest) = postcard::take_from_bytes::<Ckpt>(body).map_err(CheckpointError::Decode)?;
        if !rest.is_empty() {
            return Err(CheckpointError::TrailingBytes { bytes: rest.len() });
        }
        let mut b = FeedBuilder::new(cfg);
        b.seq = Seq(c.seq);
        b.last_done = Seq(c.last_done);
        b.channel_seq = c.channel_seq;
        b.anomalies = c.anomalies;
        let mut resting = HashSet::new();
        for i in &c.insts {
            restore_inst(&mut b, i, &mut resting)?;
        }
        for t in &c.tracks {
            restore_track(&mut b, t)?;
        }
        Ok(b)
    }
}

fn side_c(s: Side) -> SideC {
    match s {
        Side::Buy => SideC::Buy,
        Side::Sell => SideC::Sell,
    }
}

fn side_of(s: SideC) -> Side {
    match s {
        SideC::Buy => Side::Buy,
        SideC::Sell => Side::Sell,
    }
}

fn level_c(l: &LevelView) -> LevelC {
    (l.price.0, l.qty.0, l.orders)
}

fn level_of(l: &LevelC) -> LevelView {
    LevelView {
        price: Price(l.0),
        qty: Qty(l.1),
        orders: l.2,
    }
}

fn top_c(t: &Top) -> TopC {
    (t.price.map(|p| p.0), t.qty.0, t.orders)
}

fn top_of(t: &TopC) -> Top {
    Top {
        price: t.0.map(Price),
        qty: Qty(t.1),
        orders: t.2,
    }
}

fn inst_c(st: &crate::builder::Inst) -> InstC {
    let mut orders: Vec<OrderC> = st
        .book
        .orders()
        .map(|(id, o)| OrderC {
            id,
            side: side_c(o.side),
            price: o.price.0,
            qty: o.qty.0,
            prio: o.prio,
        })
        .collect();
    orders.sort_unstable_by_key(|o| o.id);
    InstC {
        id: st.id.0,
        seq: st.seq,
        match_id: st.match_id,
        halted: st.halted,
        next_prio: st.book.next_prio(),
        orders,
        pub_bids: st.pub_bids.iter().map(level_c).collect(),
        pub_asks: st.pub_asks.iter().map(level_c).collect(),
        pub_quote: (top_c(&st.pub_quote.bid), top_c(&st.pub_quote.ask)),
    }
}

fn track_c(id: u64, t: &Track, instrument: InstrumentId) -> TrackC {
    TrackC {
        id,
        instrument: instrument.0,
        side: side_c(t.side),
        price: t.price.map(|p| p.0),
        remaining: t.remaining.0,
        display: t.display.0,
        stage: match t.stage {
            Stage::Parked => StageC::Parked,
            Stage::Pending => StageC::Pending,
            Stage::Resting => StageC::Resting,
        },
        shown_at: t.shown_at.map(|p| p.0),
    }
}

/// One instrument back into `b`; `resting` collects the book order ids of
/// every instrument (an id rests in one book at most).
fn restore_inst(
    b: &mut FeedBuilder,
    c: &InstC,
    resting: &mut HashSet<u64>,
) -> Result<(), CheckpointError> {
    let instrument = c.id;
    if b.inst_index.contains_key(&instrument) {
        return Err(CheckpointError::DuplicateInstrument { instrument });
    }
    let (depth, levels) = (b.cfg.depth, c.pub_bids.len().max(c.pub_asks.len()));
    if levels > depth {
        return Err(CheckpointError::TooDeep {
            instrument,
            levels,
            depth,
        });
    }
    let pub_bids = published(instrument, Side::Buy, &c.pub_bids)?;
    let pub_asks = published(instrument, Side::Sell, &c.pub_asks)?;
    let book = restore_book(b.cfg, c, resting)?;
    let i = b.inst(InstrumentId(instrument));
    let st = &mut b.insts[i as usize];
    st.book = book;
    st.seq = c.seq;
    st.match_id = c.match_id;
    st.halted = c.halted;
    st.pub_bids.extend(pub_bids);
    st.pub_asks.extend(pub_asks);
    st.pub_quote = Quote {
        bid: top_of(&c.pub_quote.0),
        ask: top_of(&c.pub_quote.1),
    };
    Ok(())
}

/// Published levels of one side, checked strictly best first.
fn published(
    instrument: u32,
    side: Side,
    levels: &[LevelC],
) -> Result<impl Iterator<Item = LevelView> + '_, CheckpointError> {
    if levels
        .windows(2)
        .any(|w| !better(side, Price(w[0].0), Price(w[1].0)))
    {
        return Err(CheckpointError::LevelsOutOfOrder { instrument });
    }
    Ok(levels.iter().map(level_of))
}

fn restore_book(
    cfg: FeedConfig,
    c: &InstC,
    resting: &mut HashSet<u64>,
) -> Result<OrderBook, CheckpointError> {
    let mut book = OrderBook::restored(cfg.orders_max, cfg.levels_max, c.next_prio);
    let mut prios = HashSet::with_capacity(c.orders.len());
    for o in &c.orders {
        let order_id = o.id;
        if !resting.insert(order_id) {
            return Err(CheckpointError::DuplicateOrder { order_id });
        }
        if o.qty == 0 {
            return Err(CheckpointError::ZeroQty { order_id });
        }
        let bo = BookOrder {
            side: side_of(o.side),
            price: Price(o.price),
            qty: Qty(o.qty),
            prio: o.prio,
        };
        if !prios.insert(o.prio) || !book.insert_with_prio(order_id, bo) {
            return Err(CheckpointError::BadPrio {
                order_id,
                prio: o.prio,
                next_prio: c.next_prio,
            });
        }
    }
    Ok(book)
}

fn restore_track(b: &mut FeedBuilder, c: &TrackC) -> Result<(), CheckpointError> {
    let order_id = c.id;
    let Some(&inst) = b.inst_index.get(&c.instrument) else {
        return Err(CheckpointError::UnknownInstrument {
            order_id,
            instrument: c.instrument,
        });
    };
    let t = Track {
        inst,
        side: side_of(c.side),
        price: c.price.map(Price),
        remaining: Qty(c.remaining),
        display: Qty(c.display),
        stage: match c.stage {
            StageC::Parked => Stage::Parked,
            StageC::Pending => Stage::Pending,
            StageC::Resting => Stage::Resting,
        },
        shown_at: c.shown_at.map(Price),
    };
    if b.orders.insert(order_id, t).is_some() {
        return Err(CheckpointError::DuplicateOrder { order_id });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: u64, price: u64, qty: u64, prio: u64) -> OrderC {
        OrderC {
            id,
            side: SideC::Buy,
            price,
            qty,
            prio,
        }
    }

    fn inst(id: u32, orders: Vec<OrderC>) -> InstC {
        InstC {
            id,
            seq: [0; 5],
            match_id: 0,
            halted: false,
            next_prio: 10,
            orders,
            pub_bids: Vec::new(),
            pub_asks: Vec::new(),
            pub_quote: ((None, 0, 0), (None, 0, 0)),
        }
    }

    fn track(id: u64, instrument: u32) -> TrackC {
        TrackC {
            id,
            instrument,
            side: SideC::Buy,
            price: Some(100),
            remaining: 5,
            display: 0,
            stage: StageC::Resting,
            shown_at: None,
        }
    }

    fn ckpt(insts: Vec<InstC>, tracks: Vec<TrackC>) -> Ckpt {
        Ckpt {
            seq: 9,
            last_done: 9,
            channel_seq: [3, 0, 0, 0, 0],
            anomalies: 0,
            insts,
            tracks,
        }
    }

    fn restore(c: &Ckpt) -> Result<FeedBuilder, CheckpointError> {
        let bytes = postcard::to_extend(c, vec![VERSION]).expect("encodes");
        FeedBuilder::from_checkpoint(FeedConfig::small(), &bytes)
    }

    /// Two orders at 100 (queue order by stamp, not id), one at 99.
    fn good() -> Ckpt {
        let mut i = inst(
            1,
            vec![order(7, 100, 5, 3), order(8, 100, 2, 1), order(9, 99, 4, 2)],
        );
        i.pub_bids = vec![(100, 7, 2), (99, 4, 1)];
        ckpt(vec![i], vec![track(7, 1), track(8, 1), track(9, 1)])
    }

    #[test]
    fn a_restored_book_keeps_stamps_and_sums_its_levels() {
        let b = restore(&good()).expect("restores");
        let book = b.book(InstrumentId(1)).expect("instrument");
        assert_eq!(book.queues(Side::Buy), vec![vec![8, 7], vec![9]]);
        let l = book.side(Side::Buy).best().expect("a level");
        assert_eq!((l.price, l.qty, l.orders), (Price(100), Qty(7), 2));
        assert_eq!(book.next_prio(), 10);
        assert_eq!(b.last_seq(), Seq(9));
    }

    /// Each case breaks `good()` one way; the error says which.
    #[test]
    fn inconsistent_checkpoints_name_what_is_wrong() {
        type Break = fn(&mut Ckpt);
        let cases: [(Break, &str); 9] = [
            (
                |c| c.insts.push(inst(1, Vec::new())),
                "instrument 1 twice in the feed checkpoint",
            ),
            (
                |c| c.insts.push(inst(2, vec![order(7, 100, 1, 1)])),
                "order 7 twice in the feed checkpoint",
            ),
            (
                |c| c.tracks.push(track(7, 1)),
                "order 7 twice in the feed checkpoint",
            ),
            (
                |c| c.tracks.push(track(20, 5)),
                "order 20 names instrument 5, not in the feed checkpoint",
            ),
            (
                |c| c.insts[0].orders[1].qty = 0,
                "resting order 8 has size 0",
            ),
            (
                |c| c.insts[0].orders[1].prio = 3,
                "order 8's priority stamp 3 repeats or is not below 10",
            ),
            (
                |c| c.insts[0].next_prio = 3,
                "order 7's priority stamp 3 repeats or is not below 3",
            ),
            (
                |c| c.insts[0].pub_bids.reverse(),
                "instrument 1's published levels are not strictly best first",
            ),
            (
                |c| c.insts[0].pub_asks = (0..11).map(|k| (200 + k, 1, 1)).collect(),
                "instrument 1 has 11 published levels, more than depth 10",
            ),
        ];
        for (k, (break_it, want)) in cases.iter().enumerate() {
            let mut c = good();
            break_it(&mut c);
            match restore(&c) {
                Err(e) => assert_eq!(e.to_string(), *want, "case {k}"),
                Ok(_) => panic!("case {k} restored; wanted: {want}"),
            }
        }
    }
}
