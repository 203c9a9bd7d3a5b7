//! Subscriber-side book builder (sans-IO): one instrument, one book channel
//! (L2 or L3). Apply a snapshot and the incrementals (buffered while no
//! snapshot is in hand or while a gap is open); the builder says what it
//! needs — nothing, a retransmission of a sequence range, or a new snapshot.
//!
//! Invariants:
//! - Incrementals are applied strictly in `instrument_seq` order, each once:
//!   older or duplicate sequence numbers are ignored, later ones wait in a
//!   bounded buffer until the gap before them is filled.
//! - A gap is reported once per hole as `Need::Retransmit { from, to }`
//!   (inclusive); when the buffer is full the builder gives up on
//!   retransmission and asks for a snapshot (`Need::Snapshot`), dropping the
//!   buffer.
//! - An L2 message flagged `CONFLATED` may jump the sequence forward on
//!   purpose (the skipped levels are restated), so it is applied at once.
//! - While `is_live()`, the book equals the publisher's book as of the last
//!   applied sequence number.

use crate::book::{Levels, OrderBook};
use crate::msg::*;
use engine::{InstrumentId, LevelView, Side};
use std::collections::VecDeque;

/// What the builder needs from the network.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Need {
    /// Nothing.
    Nothing,
    /// Retransmit these instrument sequence numbers (inclusive).
    Retransmit {
        /// First missing.
        from: u64,
        /// Last missing.
        to: u64,
    },
    /// A snapshot (none yet, or too much missing).
    Snapshot,
}

/// A subscriber's book for one instrument from the L2 or L3 channel.
#[derive(Debug)]
pub struct BookBuilder {
    channel: Channel,
    instrument: InstrumentId,
    /// Next instrument_seq to apply; `None` until a snapshot is applied.
    next: Option<u64>,
    buffer: VecDeque<Message>,
    buffer_max: usize,
    /// The hole already reported (from, to).
    asked: Option<(u64, u64)>,
    l3: OrderBook,
    bids: Levels,
    asks: Levels,
    halted: bool,
    applied: u64,
    errors: u64,
}

impl BookBuilder {
    /// A builder for `instrument` on `channel` (`L2` or `L3`), buffering up to
    /// `buffer_max` messages.
    pub fn new(instrument: InstrumentId, channel: Channel, buffer_max: usize) -> BookBuilder {
        assert!(
            matches!(channel, Channel::L2 | Channel::L3),
            "a book channel"
        );
        BookBuilder {
            channel,
            instrument,
            next: None,
            buffer: VecDeque::with_capacity(buffer_max),
            buffer_max,
            asked: None,
            l3: OrderBook::with_capacity(1024, 256),
            bids: Levels::with_capacity(Side::Buy, 256),
            asks: Levels::with_capacity(Side::Sell, 256),
            halted: false,
            applied: 0,
            errors: 0,
        }
    }

    /// Whether a snapshot was applied and no snapshot is needed.
    pub fn is_live(&self) -> bool {
        self.next.is_some()
    }

    /// The last applied instrument sequence number (0 before a snapshot).
    pub fn last_seq(&self) -> u64 {
        self.next.map_or(0, |n| n - 1)
    }

    /// Messages waiting for a gap to close (or for a snapshot).
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Incrementals applied so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Messages that did not fit the book (an L3 update for an unknown order, …).
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Whether the last snapshot said the instrument was halted.
    pub fn snapshot_halted(&self) -> bool {
        self.halted
    }

    /// One side's levels (L3: aggregated from the orders).
    pub fn side(&self, side: Side) -> &Levels {
        match (self.channel, side) {
            (Channel::L3, s) => self.l3.side(s),
            (_, Side::Buy) => &self.bids,
            (_, Side::Sell) => &self.asks,
        }
    }

    /// One side's levels best first (allocates).
    pub fn levels(&self, side: Side) -> Vec<LevelView> {
        self.side(side).to_vec()
    }

    /// The market-by-order book (L3 channel; empty on L2).
    pub fn orders(&self) -> &OrderBook {
        &self.l3
    }

    /// Applies a snapshot, then whatever buffered incrementals follow it.
    pub fn on_snapshot(&mut self, s: &Snapshot) -> Need {
        if s.instrument != self.instrument || s.channel != Some(self.channel) {
            return Need::Nothing;
        }
        self.l3.clear();
        self.bids.clear();
        self.asks.clear();
        match self.channel {
            Channel::L3 => {
                for o in &s.orders {
                    if !self.l3.add(o.order_id, o.side, o.price, o.qty) {
                        self.errors += 1;
                    }
                }
            }
            _ => {
                for l in &s.bids {
                    self.bids.set(l.price, l.qty, l.orders);
                }
                for l in &s.asks {
                    self.asks.set(l.price, l.qty, l.orders);
                }
            }
        }
        self.halted = s.halted;
        self.next = Some(s.last_instrument_seq + 1);
        self.asked = None;
        self.drain()
    }

    /// One incremental message (others' instruments and channels are ignored).
    pub fn on_message(&mut self, m: &Message) -> Need {
        if m.instrument != self.instrument || m.channel() != self.channel {
            return Need::Nothing;
        }
        let Some(next) = self.next else {
            return self.buffer_msg(m);
        };
        if m.instrument_seq < next {
            return Need::Nothing;
        }
        if m.instrument_seq == next || m.flags.has(Flags::CONFLATED) {
            self.apply(m);
            return self.drain();
        }
        self.buffer_msg(m)
    }

    /// The publisher says it has sent this stream up to `last` (a heartbeat,
    /// or the end of a batch): a loss at the tail, with no later message to
    /// reveal it, is reported here.
    pub fn sent_up_to(&mut self, last: u64) -> Need {
        let Some(next) = self.next else {
            return Need::Snapshot;
        };
        if last < next {
            return Need::Nothing;
        }
        let to = self
            .buffer
            .front()
            .map_or(last, |f| f.instrument_seq.saturating_sub(1));
        if to < next {
            return Need::Nothing;
        }
        let hole = (next, to);
        if self.asked == Some(hole) {
            return Need::Nothing;
        }
        self.asked = Some(hole);
        Need::Retransmit {
            from: hole.0,
            to: hole.1,
        }
    }

    /// The server refused the last request (its request budget was spent):
    /// the open hole is reported again by the next message or heartbeat.
    pub fn request_refused(&mut self) {
        self.asked = None;
    }

    fn buffer_msg(&mut self, m: &Message) -> Need {
        if self.buffer.len() >= self.buffer_max {
            self.buffer.clear();
            self.next = None;
            self.asked = None;
            return Need::Snapshot;
        }
        // Keep the buffer sorted by sequence (retransmissions arrive late).
        let pos = self
            .buffer
            .iter()
            .rposition(|b| b.instrument_seq <= m.instrument_seq)
            .map_or(0, |p| p + 1);
        if pos > 0 && self.buffer[pos - 1].instrument_seq == m.instrument_seq {
            return Need::Nothing;
        }
        self.buffer.insert(pos, *m);
        match self.next {
            None => Need::Snapshot,
            Some(_) => self.gap(),
        }
    }

    /// Applies buffered messages that are now in sequence; reports a hole.
    fn drain(&mut self) -> Need {
        let Some(mut next) = self.next else {
            return Need::Snapshot;
        };
        while let Some(f) = self.buffer.front() {
            if f.instrument_seq < next {
                self.buffer.pop_front();
            } else if f.instrument_seq == next || f.flags.has(Flags::CONFLATED) {
                let m = self.buffer.pop_front().expect("front");
                self.apply(&m);
                next = self.next.expect("live");
            } else {
                break;
            }
        }
        self.gap()
    }

    fn gap(&mut self) -> Need {
        let (Some(next), Some(f)) = (self.next, self.buffer.front()) else {
            self.asked = None;
            return Need::Nothing;
        };
        let hole = (next, f.instrument_seq - 1);
        if self.asked == Some(hole) {
            return Need::Nothing;
        }
        self.asked = Some(hole);
        Need::Retransmit {
            from: hole.0,
            to: hole.1,
        }
    }

    fn apply(&mut self, m: &Message) {
        self.next = Some(m.instrument_seq + 1);
        self.applied += 1;
        match m.body {
            Body::L2(l) => {
                let s = match l.side {
                    Side::Buy => &mut self.bids,
                    Side::Sell => &mut self.asks,
                };
                s.set(l.price, l.qty, l.orders);
            }
            Body::L3(u) => {
                let ok = match u {
                    L3Update::Add {
                        order_id,
                        side,
                        price,
                        qty,
                    } => self.l3.add(order_id, side, price, qty),
                    L3Update::Execute {
                        order_id, leftover, ..
                    }
                    | L3Update::Reduce {
                        order_id, leftover, ..
                    } => self.l3.set_qty(order_id, leftover).is_some(),
                    L3Update::Delete { order_id, .. } => self.l3.remove(order_id).is_some(),
                    L3Update::Replace {
                        order_id,
                        price,
                        qty,
                        priority_kept,
                        ..
                    } => self
                        .l3
                        .replace(order_id, price, qty, priority_kept)
                        .is_some(),
                };
                if !ok {
                    self.errors += 1;
                }
            }
            _ => {}
        }
    }
}
