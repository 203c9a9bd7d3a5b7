//! The hub's bounded buffers: the replay ring of one (instrument, channel),
//! a subscriber's outgoing byte queue, and a subscriber's request budget.
//!
//! Invariants: a subscriber queue holds whole records only, back to back
//! (each starts with its `u32` length), so any prefix cut at a record
//! boundary is a valid write; its age is never underestimated (the stamp
//! of a batch is taken before any of its bytes); the replay ring holds
//! consecutive sequence numbers, oldest first.

use std::collections::VecDeque;
use std::sync::Arc;

/// The replay ring of one (instrument, channel): the last `replay`
/// messages as (instrument_seq, encoded record), oldest first. Sequence
/// numbers are consecutive, so a range is found by subtraction.
#[derive(Default)]
pub(super) struct Replay {
    q: VecDeque<(u64, Arc<[u8]>)>,
}

impl Replay {
    pub(super) fn push(&mut self, max: usize, seq: u64, b: Arc<[u8]>) {
        if self.q.len() >= max.max(1) {
            self.q.pop_front();
        }
        self.q.push_back((seq, b));
    }

    /// `from..=to`, if every one of them is still held.
    pub(super) fn range(
        &self,
        from: u64,
        to: u64,
    ) -> Option<impl Iterator<Item = &Arc<[u8]>> + '_> {
        let first = self.q.front()?.0;
        let at = usize::try_from(from.checked_sub(first)?).ok()?;
        let n = usize::try_from(to.checked_sub(from)?)
            .ok()?
            .checked_add(1)?;
        let last = self.q.get(at.checked_add(n - 1)?)?;
        // Consecutive by construction; checked because a hole would send wrong data.
        if self.q[at].0 != from || last.0 != to {
            return None;
        }
        Some(self.q.range(at..at + n).map(|(_, b)| b))
    }
}

/// Batches queued within this long of each other share one age stamp:
/// the age bound is seconds, so a millisecond of slack costs nothing and
/// saves a stamp per message.
const STAMP_NS: u64 = 1_000_000;

/// A subscriber's outgoing bytes: encoded records appended back to back
/// (one copy per subscriber, no per-message allocation or reference
/// count), taken by its connection task in one piece per write.
#[derive(Default)]
pub(super) struct SubQueue {
    buf: Vec<u8>,
    /// (absolute offset of a batch's first byte, when it was queued), oldest first.
    stamps: VecDeque<(u64, u64)>,
    /// Bytes ever taken or dropped (the absolute offset of `buf[0]`).
    gone: u64,
}

impl SubQueue {
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(super) fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// How long the oldest queued byte has waited (at least).
    pub(super) fn age_ns(&self, now: u64) -> u64 {
        self.stamps
            .front()
            .map_or(0, |&(_, t)| now.saturating_sub(t))
    }

    /// Appends one or more whole records; true when the queue was empty
    /// (its task may be waiting for a wake).
    pub(super) fn push(&mut self, records: &[u8], now: u64) -> bool {
        let was_empty = self.buf.is_empty();
        let fresh = match self.stamps.back() {
            Some(&(_, t)) => was_empty || now.saturating_sub(t) >= STAMP_NS,
            None => true,
        };
        if fresh {
            self.stamps
                .push_back((self.gone + self.buf.len() as u64, now));
        }
        self.buf.extend_from_slice(records);
        was_empty
    }

    /// Drops everything queued (a reset).
    pub(super) fn clear(&mut self) {
        self.gone += self.buf.len() as u64;
        self.buf.clear();
        self.stamps.clear();
    }

    /// Moves whole records, at most `max` bytes in all (at least one record
    /// when `out` is empty), to `out`. The common case, everything into an
    /// empty `out`, swaps the buffers: no copy, and the two vectors'
    /// capacity is reused from then on.
    pub(super) fn take_into(&mut self, out: &mut Vec<u8>, max: usize) {
        if self.buf.is_empty() {
            return;
        }
        let n = if out.is_empty() && self.buf.len() <= max {
            std::mem::swap(out, &mut self.buf);
            out.len()
        } else {
            let n = self.prefix(max.saturating_sub(out.len()), out.is_empty());
            out.extend_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            n
        };
        self.gone += n as u64;
        if self.buf.is_empty() {
            self.stamps.clear();
        } else {
            // A stamp whose batch is wholly gone says nothing about what is left.
            while self.stamps.len() >= 2 && self.stamps[1].0 <= self.gone {
                self.stamps.pop_front();
            }
        }
    }

    /// Length of the longest prefix of whole records within `room` bytes
    /// (one record at least when `one` is set).
    fn prefix(&self, room: usize, one: bool) -> usize {
        let mut n = 0;
        while n < self.buf.len() {
            let len = record_len(&self.buf[n..]);
            if n + len > room && !(one && n == 0) {
                break;
            }
            n += len;
        }
        n
    }

    /// The records queued (tests look at them).
    #[cfg(test)]
    pub(super) fn records(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut n = 0;
        std::iter::from_fn(move || {
            let b = self.buf.get(n..).filter(|b| !b.is_empty())?;
            let len = record_len(b);
            n += len;
            Some(&b[..len])
        })
    }
}

/// Length of the record at the start of `b` (the rest of `b` if its
/// header is short or zero, which our own encoder never writes).
fn record_len(b: &[u8]) -> usize {
    let len = b
        .get(..4)
        .map_or(0, |h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize);
    if len == 0 || len > b.len() {
        b.len()
    } else {
        len
    }
}

/// A subscriber's request budget (token bucket over retransmit and
/// snapshot requests).
pub(super) struct Budget {
    pub(super) tokens: u32,
    pub(super) refilled_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64) -> Arc<[u8]> {
        Arc::from(&seq.to_le_bytes()[..])
    }

    fn seqs<'a>(it: impl Iterator<Item = &'a Arc<[u8]>>) -> Vec<u64> {
        it.map(|b| u64::from_le_bytes(b[..8].try_into().unwrap()))
            .collect()
    }

    #[test]
    fn replay_ring_answers_held_ranges_only() {
        let mut r = Replay::default();
        assert!(r.range(1, 1).is_none(), "empty ring");
        for seq in 1..=10 {
            r.push(4, seq, rec(seq));
        }
        // Holds 7..=10.
        assert_eq!(seqs(r.range(7, 10).unwrap()), vec![7, 8, 9, 10]);
        assert_eq!(seqs(r.range(8, 8).unwrap()), vec![8]);
        assert!(r.range(6, 8).is_none(), "6 was evicted");
        assert!(r.range(9, 11).is_none(), "11 not yet published");
        assert!(r.range(u64::MAX - 1, u64::MAX).is_none());
    }

    /// A record of `len` bytes (its length, then `tag` bytes).
    fn record(len: usize, tag: u8) -> Vec<u8> {
        let mut b = (len as u32).to_le_bytes().to_vec();
        b.resize(len, tag);
        b
    }

    #[test]
    fn a_subscriber_queue_gives_whole_records_and_keeps_its_age() {
        let ms = 1_000_000;
        let mut q = SubQueue::default();
        assert!(q.push(&record(10, 1), 0), "was empty: wake its task");
        assert!(!q.push(&record(20, 2), ms / 2), "same stamp");
        assert!(!q.push(&record(30, 3), 5 * ms), "a new stamp");
        assert_eq!((q.bytes(), q.age_ns(7 * ms)), (60, 7 * ms));
        // 35 bytes of room: the first two records only.
        let mut out = Vec::new();
        q.take_into(&mut out, 35);
        assert_eq!(out, [record(10, 1), record(20, 2)].concat());
        assert_eq!(
            (q.bytes(), q.age_ns(7 * ms)),
            (30, 2 * ms),
            "age of what is left"
        );
        // A record bigger than the room still goes out alone.
        let mut out = Vec::new();
        q.take_into(&mut out, 5);
        assert_eq!(out, record(30, 3));
        assert!(q.is_empty());
        assert_eq!(q.age_ns(9 * ms), 0);
        // Everything fits: the buffers swap.
        q.push(&record(12, 4), 9 * ms);
        let mut out = Vec::with_capacity(1 << 10);
        q.take_into(&mut out, 1 << 10);
        assert_eq!(out, record(12, 4));
        assert!(
            q.buf.capacity() >= 1 << 10,
            "the write buffer's capacity comes back"
        );
        q.push(&record(8, 5), 9 * ms);
        q.clear();
        assert!(q.is_empty() && q.records().count() == 0);
    }
}
