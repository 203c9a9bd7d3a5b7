//! A subscriber's view of the feed (sans-IO): one `BookBuilder` per tracked
//! L2 / L3 (instrument, channel), the latest quotes and recent trades; it
//! says which request to send when a gap shows (retransmit or snapshot).
//!
//! Invariants: applying any item never panics; a request is returned only
//! for a tracked (instrument, channel).

use crate::control::{Ctl, MdItem};
use crate::msg::{Body, Channel, Quote, TradeMsg};
use crate::{BookBuilder, Need};
use engine::InstrumentId;
use std::collections::{HashMap, VecDeque};

/// A subscriber's view: books (L2 / L3 via `BookBuilder`), quotes, recent
/// trades; says what to ask the server when a gap shows.
#[derive(Debug, Default)]
pub struct FeedView {
    /// Book builders per (instrument, channel code).
    pub books: HashMap<(u32, u8), BookBuilder>,
    /// Latest quote per instrument.
    pub quotes: HashMap<u32, Quote>,
    /// Recent trades (newest last, at most 20).
    pub trades: VecDeque<(u32, TradeMsg)>,
    /// Gaps detected (retransmit or snapshot requests made).
    pub gaps: u64,
    /// Requests the server refused as over budget (asked again on the
    /// next message or heartbeat, at most twice a second).
    pub throttled: u64,
}

impl FeedView {
    /// Tracks (instrument, channel): L2 / L3 get a book builder.
    pub fn track(&mut self, instrument: u32, channel: Channel) {
        if matches!(channel, Channel::L2 | Channel::L3) {
            self.books.insert(
                (instrument, channel as u8),
                BookBuilder::new(InstrumentId(instrument), channel, 1 << 14),
            );
        }
    }

    /// Applies an item; returns the request to send, if any.
    pub fn apply(&mut self, item: &MdItem) -> Option<Ctl> {
        let (key, need) = match item {
            MdItem::Snapshot(s) => {
                let ch = s.channel?;
                if ch == Channel::L1 {
                    self.quotes.insert(s.instrument.0, s.quote);
                }
                let key = (s.instrument.0, ch as u8);
                (key, self.books.get_mut(&key)?.on_snapshot(s))
            }
            MdItem::Message(m) => {
                match m.body {
                    Body::L1(q) => {
                        self.quotes.insert(m.instrument.0, q);
                    }
                    Body::Trade(t) => {
                        self.trades.push_back((m.instrument.0, t));
                        if self.trades.len() > 20 {
                            self.trades.pop_front();
                        }
                    }
                    _ => {}
                }
                let key = (m.instrument.0, m.channel() as u8);
                (key, self.books.get_mut(&key)?.on_message(m))
            }
            MdItem::Heartbeat {
                instrument,
                channel,
                last,
            } => {
                let key = (*instrument, *channel as u8);
                (key, self.books.get_mut(&key)?.sent_up_to(*last))
            }
            MdItem::Throttled {
                instrument,
                channel,
                ..
            } => {
                self.throttled += 1;
                let key = (*instrument, *channel as u8);
                self.books.get_mut(&key)?.request_refused();
                return None;
            }
            MdItem::Error(_) => return None,
        };
        let channel = Channel::from_code(key.1)?;
        match need {
            Need::Nothing => None,
            Need::Retransmit { from, to } => {
                self.gaps += 1;
                Some(Ctl::Retransmit {
                    instrument: key.0,
                    channel,
                    from,
                    to,
                })
            }
            Need::Snapshot => {
                self.gaps += 1;
                Some(Ctl::Snapshot {
                    instrument: key.0,
                    channel,
                })
            }
        }
    }
}
