//! Conflation of L2 for a slow subscriber: instead of queueing every level
//! update, keep only the latest value of each (instrument, side, price) and
//! send those when the subscriber can take more.
//!
//! Invariants: the buffer is bounded (`capacity` distinct levels); a push
//! that does not fit returns `Overflow` and the subscriber must re-snapshot.
//! Because L2 messages are absolute, applying the drained messages to a book
//! that was current before the first conflated message gives exactly the
//! publisher's book as of the last conflated one. A drained burst for an
//! instrument that last saw sequence `S` and holds `k` levels is numbered
//! `S−k+1 … S` and flagged `CONFLATED` (the jump in sequence is on purpose;
//! every number is one the publisher used, so a later incremental `S+1`
//! follows without a gap).

use crate::msg::*;
use engine::InstrumentId;
use std::collections::HashMap;

/// The conflating buffer is full.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Overflow;

/// A bounded, conflating buffer of L2 messages.
#[derive(Debug)]
pub struct L2Conflator {
    capacity: usize,
    slots: HashMap<(u32, u8, u64), usize>,
    entries: Vec<Message>,
    /// instrument → (last instrument_seq, last channel_seq, engine seq)
    last: HashMap<u32, Message>,
    pushed: u64,
}

impl L2Conflator {
    /// A buffer for up to `capacity` distinct levels.
    pub fn new(capacity: usize) -> L2Conflator {
        L2Conflator {
            capacity,
            slots: HashMap::with_capacity(capacity),
            entries: Vec::with_capacity(capacity),
            last: HashMap::with_capacity(16),
            pushed: 0,
        }
    }

    /// Distinct levels held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Messages pushed since the last drain.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Takes one L2 message (others are ignored); the latest value of a level wins.
    pub fn push(&mut self, m: &Message) -> Result<(), Overflow> {
        let Body::L2(l) = m.body else {
            return Ok(());
        };
        let k = (m.instrument.0, l.side as u8, l.price.0);
        match self.slots.get(&k) {
            Some(&i) => self.entries[i] = *m,
            None => {
                if self.entries.len() >= self.capacity {
                    return Err(Overflow);
                }
                self.slots.insert(k, self.entries.len());
                self.entries.push(*m);
            }
        }
        self.last.insert(m.instrument.0, *m);
        self.pushed += 1;
        Ok(())
    }

    /// Moves the conflated messages to `out`, per instrument, numbered and
    /// flagged as described in the module documentation; empties the buffer.
    pub fn drain_into(&mut self, out: &mut Vec<Message>) {
        let mut insts: Vec<u32> = self.last.keys().copied().collect();
        insts.sort_unstable();
        for inst in insts {
            let last = self.last[&inst];
            let mut mine: Vec<Message> = self
                .entries
                .iter()
                .filter(|e| e.instrument == InstrumentId(inst))
                .copied()
                .collect();
            // Oldest first (as published), so deletes and re-adds keep their order.
            mine.sort_by_key(|e| e.instrument_seq);
            let k = mine.len() as u64;
            for (n, mut e) in mine.into_iter().enumerate() {
                e.instrument_seq = last.instrument_seq + 1 - k + n as u64;
                e.flags = Flags(e.flags.0 | Flags::CONFLATED);
                out.push(e);
            }
        }
        self.entries.clear();
        self.slots.clear();
        self.last.clear();
        self.pushed = 0;
    }
}
