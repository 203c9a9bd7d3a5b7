//! The sequencer: stamps every command of a partition with its sequence
//! number and engine time, the only clock the engine ever sees.
//!
//! Invariants: sequence numbers increase by exactly 1 per command, starting
//! after the last recovered one; engine time never goes back (it starts at
//! the recovered engine's time and is the wall clock at start-up advanced by
//! a monotonic clock, clamped so it never decreases).

use engine::{Command, Input, Seq, Timestamp};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Stamps commands for one partition.
#[derive(Debug)]
pub struct Sequencer {
    next_seq: u64,
    base_ns: u64,
    start: Instant,
    last_ns: u64,
}

impl Sequencer {
    /// A sequencer continuing after `last_seq`, never earlier than `last_now`.
    pub fn new(last_seq: Seq, last_now: Timestamp) -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Sequencer {
            next_seq: last_seq.0 + 1,
            base_ns: wall.max(last_now.0),
            start: Instant::now(),
            last_ns: last_now.0,
        }
    }

    /// The next sequence number to be stamped.
    pub fn next_seq(&self) -> Seq {
        Seq(self.next_seq)
    }

    /// The last sequence number stamped.
    pub fn last_seq(&self) -> Seq {
        Seq(self.next_seq - 1)
    }

    /// Engine time now (monotonic, nanoseconds since the Unix epoch).
    #[inline]
    pub fn now(&mut self) -> Timestamp {
        let ns = self.base_ns + self.start.elapsed().as_nanos() as u64;
        self.last_ns = self.last_ns.max(ns);
        Timestamp(self.last_ns)
    }

    /// Continues after an input stamped elsewhere (a replicated partition's
    /// leader numbers its log; this engine thread only applies it): the next
    /// stamp follows `input`, and time never goes back before it.
    #[inline]
    pub fn follow(&mut self, seq: Seq, now: Timestamp) {
        self.next_seq = seq.0 + 1;
        self.last_ns = self.last_ns.max(now.0);
    }

    /// Stamps one command.
    #[inline]
    pub fn stamp(&mut self, command: Command) -> Input {
        let now = self.now();
        self.stamp_at(now, command)
    }

    /// Stamps one command with a time read earlier by `now()` (the engine
    /// thread reads the clock once per batch of requests it drains).
    #[inline]
    pub fn stamp_at(&mut self, now: Timestamp, command: Command) -> Input {
        debug_assert!(now.0 <= self.last_ns);
        let seq = Seq(self.next_seq);
        self.next_seq += 1;
        Input { seq, now, command }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_contiguous_and_time_monotonic() {
        let mut s = Sequencer::new(Seq(41), Timestamp(u64::MAX / 2));
        let mut last = Timestamp(0);
        for i in 0..1000 {
            let inp = s.stamp(Command::Time { now: Timestamp(0) });
            assert_eq!(inp.seq, Seq(42 + i));
            assert!(inp.now >= last && inp.now.0 >= u64::MAX / 2);
            last = inp.now;
        }
    }
}
