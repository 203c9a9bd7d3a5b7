//! The output stage: one ring slot per input, read by one or more
//! independent cursors, each releasing an input's outputs only once the
//! input is durable.
//!
//! Shape: the engine thread is the ring's only writer. For every input it
//! fills the next slot with the header (caller token, sequence number,
//! command) and everything the input caused: its events and, for a transfer
//! query, its rows (the ranges in `Event::Transfers` index them). A reader
//! ([`OutputReader`]) owns one cursor; it hands out the slot under its
//! cursor once `durable_seq` has reached the slot's input, and moves on when
//! the caller drops the [`OutputRef`]. Readers are independent: the
//! order-entry server reads cursor 0 and market data cursor 1, each at its
//! own pace; the writer waits (back-pressure, as for every other ring) for
//! the slowest before it reuses a slot.
//!
//! Why one ring with several cursors rather than a ring per consumer: the
//! engine thread writes each input once whatever the number of readers, and
//! a reader that falls behind holds back the engine exactly as a full ring
//! of its own would (neither may drop: every consumer needs every input).
//!
//! Bounds: `slots` inputs in flight per partition. A slot keeps room for
//! [`EVENTS_INLINE`] events, allocated when the ring is made; an input with
//! more (a sweep through many makers, a mass cancel) is still carried whole
//! in its slot, which then grows on the engine thread (the spill path, the
//! only allocation here) and shrinks back to [`EVENTS_INLINE`] when the
//! slot is next reused, so the ring's memory stays at
//! `slots × EVENTS_INLINE` events plus the big inputs currently in it.
//! Transfer-query rows take the same path from zero.
//!
//! Invariants: no input is ever dropped, split or reordered; no reader ever
//! sees an input before it is durable; no slot is rewritten before every
//! cursor has passed it (until [`OutputRing::close`], at shutdown, after
//! which nobody reads); the `Mutex` around each slot is never contended
//! (the cursors already keep the writer and readers on different slots):
//! it only makes that exclusion checkable without `unsafe`.

use crate::idle::{IdleStrategy, Idler};
use crossbeam::utils::CachePadded;
use engine::history::TransferRecord;
use engine::{Command, Event, Events, Input, RecordRange, Seq};
use journal::record::Origin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Events a slot holds without allocating.
///
/// Four covers the common inputs (an order's accept and its cancel or a
/// fill or two; a cancel; a query's answer) at 272 + 4 × 96 bytes a slot;
/// the rest take the spill path.
pub const EVENTS_INLINE: usize = 4;

/// Most cursors (independent readers) one ring has.
pub const READERS_MAX: usize = 4;

/// What a ring slot holds: an input's outputs, or a mark the engine thread
/// writes between inputs — on a replicated partition, or one whose market
/// data checkpoints (`FeedSlots::wanted`) — so every reader learns, in
/// stream order, where the engine's state was copied or replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// An input and everything it caused.
    Input,
    /// The engine's snapshot was taken right after input `seq` (nothing
    /// follows it in the ring that the snapshot covers).
    Snapshot,
    /// The engine was replaced by one restored from a snapshot through
    /// `seq`: the inputs between the previous slot and this one were never
    /// executed here (a snapshot installed from the leader).
    Restore,
}

/// Who an input is for: the local caller waiting for it and the client
/// request it serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// Caller token (0: nobody on this node waits for it).
    pub token: u64,
    /// The client request it serves (`Origin::NONE` for inputs no client
    /// request made, and on a single node).
    pub origin: Origin,
}

/// One input and everything it caused: the unit of the output ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// What this slot holds; a mark has token 0, no events and no rows, so
    /// a reader that only looks at events passes over it.
    pub mark: Mark,
    /// Caller token (0 for inputs the runtime made itself, e.g. time ticks).
    pub token: u64,
    /// The client request the input serves (on a replicated partition, on
    /// every replica: the origin travels in the Raft log; `Origin::NONE`
    /// otherwise).
    pub origin: Origin,
    /// Input sequence number.
    pub seq: Seq,
    /// The input's command (the market-data builder needs it for icebergs'
    /// display size and stop orders).
    pub command: Command,
    events: Vec<Event>,
    rows: Vec<TransferRecord>,
}

impl Output {
    fn empty() -> Self {
        Output {
            mark: Mark::Input,
            token: 0,
            origin: Origin::NONE,
            seq: Seq(0),
            command: Command::Time {
                now: engine::Timestamp(0),
            },
            events: Vec::with_capacity(EVENTS_INLINE),
            rows: Vec::new(),
        }
    }

    /// The slot `input`'s outputs would fill, standing alone (a consumer's
    /// tests build their streams with it; the engine thread fills ring
    /// slots in place).
    pub fn of(caller: Caller, input: &Input, events: &Events) -> Output {
        let mut o = Output::empty();
        o.fill(caller, input, events);
        o
    }

    /// The input's events, in order (possibly none).
    #[inline]
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The rows a `Transfers` event's range points at (a transfer query's
    /// answer, in order).
    #[inline]
    pub fn rows(&self, r: RecordRange) -> &[TransferRecord] {
        &self.rows[r.start as usize..(r.start + r.len) as usize]
    }

    /// Refills this slot with `input`'s outputs; the spill path (module doc)
    /// when they exceed the inline room.
    fn fill(&mut self, caller: Caller, input: &Input, events: &Events) {
        self.mark = Mark::Input;
        self.token = caller.token;
        self.origin = caller.origin;
        self.seq = input.seq;
        self.command = input.command;
        let list = events.iter().as_slice();
        self.events.clear();
        if self.events.capacity() > EVENTS_INLINE && list.len() <= EVENTS_INLINE {
            self.events.shrink_to(EVENTS_INLINE);
        }
        self.events.extend_from_slice(list);
        let rows = events.rows(RecordRange {
            start: 0,
            len: events.rows_len(),
        });
        self.rows.clear();
        if rows.is_empty() && self.rows.capacity() > 0 {
            self.rows = Vec::new();
        }
        self.rows.extend_from_slice(rows);
    }

    /// Refills this slot with `mark` after input `seq`.
    fn fill_mark(&mut self, seq: Seq, mark: Mark) {
        self.mark = mark;
        self.token = 0;
        self.origin = Origin::NONE;
        self.seq = seq;
        self.command = Command::Time {
            now: engine::Timestamp(0),
        };
        self.events.clear();
        self.rows.clear();
    }
}

/// One partition's output ring (module doc).
#[derive(Debug)]
pub struct OutputRing {
    slots: Box<[Mutex<Output>]>,
    /// Inputs written so far (the engine thread's; read by the readers).
    head: CachePadded<AtomicU64>,
    /// Inputs each cursor has consumed (each its reader's; read by the writer).
    cursors: Box<[CachePadded<AtomicU64>]>,
    /// Set at shutdown: the writer stops waiting for readers.
    closed: AtomicBool,
}

impl OutputRing {
    /// A ring of `slots` inputs (rounded up to a power of two, at least 16)
    /// read by `readers` cursors (1..=[`READERS_MAX`]).
    pub fn new(slots: usize, readers: usize) -> Self {
        assert!(
            (1..=READERS_MAX).contains(&readers),
            "output readers: 1 to {READERS_MAX}, not {readers}"
        );
        let n = slots.max(16).next_power_of_two();
        OutputRing {
            slots: (0..n).map(|_| Mutex::new(Output::empty())).collect(),
            head: CachePadded::new(AtomicU64::new(0)),
            cursors: (0..readers)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
            closed: AtomicBool::new(false),
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Number of slots (what a queue's `capacity` is to a metrics reader).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Inputs written that the slowest cursor has not consumed yet.
    pub fn len(&self) -> usize {
        (self.head.load(Ordering::Acquire) - self.slowest()) as usize
    }

    /// Whether every cursor has consumed everything written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of cursors.
    pub fn readers(&self) -> usize {
        self.cursors.len()
    }

    /// Stops the writer from waiting for readers (shutdown: nobody reads
    /// what comes after).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn slot(&self, at: u64) -> MutexGuard<'_, Output> {
        // Never contended and never poisoned in practice: a reader that
        // panicked mid-read left the slot's data intact.
        self.slots[(at as usize) & (self.slots.len() - 1)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn slowest(&self) -> u64 {
        self.cursors
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .min()
            .expect("at least one cursor")
    }
}

/// The engine thread's side of the ring: where it writes next and how far
/// the slowest reader was when last looked at (read again only when the
/// ring seems full, so a write costs no load of the readers' lines).
#[derive(Debug)]
pub(crate) struct OutputWriter {
    next: u64,
    slowest_seen: u64,
}

impl OutputWriter {
    pub(crate) fn new(ring: &OutputRing) -> Self {
        let next = ring.head.load(Ordering::Acquire);
        OutputWriter {
            next,
            slowest_seen: ring.slowest(),
        }
    }

    /// Writes one input's outputs into the next slot, waiting (`idle`)
    /// while the slowest reader still needs it.
    pub(crate) fn write(
        &mut self,
        ring: &OutputRing,
        caller: Caller,
        input: &Input,
        events: &Events,
        idle: IdleStrategy,
    ) {
        self.wait_free_slot(ring, idle);
        ring.slot(self.next).fill(caller, input, events);
        self.publish_slot(ring);
    }

    /// Writes `mark` after input `seq` into the next slot (waiting as
    /// `write` does).
    pub(crate) fn write_mark(
        &mut self,
        ring: &OutputRing,
        seq: Seq,
        mark: Mark,
        idle: IdleStrategy,
    ) {
        self.wait_free_slot(ring, idle);
        ring.slot(self.next).fill_mark(seq, mark);
        self.publish_slot(ring);
    }

    /// Hands the slot just filled to the readers.
    #[inline]
    fn publish_slot(&mut self, ring: &OutputRing) {
        self.next += 1;
        ring.head.store(self.next, Ordering::Release);
    }

    /// Waits (`idle`) until the slowest reader has passed the next slot.
    fn wait_free_slot(&mut self, ring: &OutputRing, idle: IdleStrategy) {
        let n = ring.slots.len() as u64;
        if self.next - self.slowest_seen >= n {
            let mut idler = Idler::new(idle);
            loop {
                self.slowest_seen = ring.slowest();
                if self.next - self.slowest_seen < n || ring.closed.load(Ordering::Acquire) {
                    break;
                }
                idler.idle(false);
            }
        }
    }
}

/// Releases one partition's outputs in order through one cursor, each only
/// once its input is durable. One reader per cursor at a time; a new reader
/// of a cursor continues where the previous one stopped.
pub struct OutputReader {
    shared: Arc<crate::Shared>,
    cursor: usize,
    next: u64,
}

impl std::fmt::Debug for OutputReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputReader")
            .field("cursor", &self.cursor)
            .field("next", &self.next)
            .finish()
    }
}

/// A released input's outputs; the reader moves past it when this drops.
pub struct OutputRef<'a> {
    slot: MutexGuard<'a, Output>,
    next: &'a mut u64,
    cursor: &'a AtomicU64,
}

impl std::fmt::Debug for OutputRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (*self.slot).fmt(f)
    }
}

impl std::ops::Deref for OutputRef<'_> {
    type Target = Output;
    fn deref(&self) -> &Output {
        &self.slot
    }
}

impl Drop for OutputRef<'_> {
    fn drop(&mut self) {
        *self.next += 1;
        // Plain store: this reader is the cursor's only writer.
        self.cursor.store(*self.next, Ordering::Release);
    }
}

impl OutputReader {
    pub(crate) fn new(shared: Arc<crate::Shared>, cursor: usize) -> Self {
        assert!(
            cursor < shared.outbound.readers(),
            "output cursor {cursor} of {}",
            shared.outbound.readers()
        );
        let next = shared.outbound.cursors[cursor].load(Ordering::Acquire);
        OutputReader {
            shared,
            cursor,
            next,
        }
    }

    /// The next durable input's outputs, if any.
    #[inline]
    pub fn poll(&mut self) -> Option<OutputRef<'_>> {
        let ring = &self.shared.outbound;
        if self.next >= ring.head.load(Ordering::Acquire) {
            return None;
        }
        let slot = ring.slot(self.next);
        if slot.seq.0 > self.shared.durable_seq.load(Ordering::Acquire) {
            return None;
        }
        Some(OutputRef {
            slot,
            next: &mut self.next,
            cursor: &ring.cursors[self.cursor],
        })
    }

    /// Whether an input is written but not yet released (not durable yet,
    /// or simply not read yet).
    pub fn pending(&self) -> bool {
        self.next < self.shared.outbound.head.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shared;
    use engine::{InstrumentId, Timestamp};

    fn input(seq: u64) -> Input {
        Input {
            seq: Seq(seq),
            now: Timestamp(seq),
            command: Command::Halt {
                instrument: InstrumentId(seq as u32),
            },
        }
    }

    fn events(n: usize) -> Events {
        let mut e = Events::with_capacities(64, 0, 0, 0);
        for i in 0..n {
            e.push(Event::Resumed {
                instrument: InstrumentId(i as u32),
            });
        }
        e
    }

    /// (seq, token, events) read through `r` until it has nothing released.
    fn drain(r: &mut OutputReader) -> Vec<(u64, u64, usize)> {
        let mut got = Vec::new();
        while let Some(o) = r.poll() {
            // The origin travels with the token (see `caller`).
            assert_eq!(o.origin, caller(o.token).origin, "seq {}", o.seq.0);
            got.push((o.seq.0, o.token, o.events().len()));
        }
        got
    }

    /// Token `t` serves request `t` of session 7 (none for token 0).
    fn caller(token: u64) -> Caller {
        let origin = if token == 0 {
            Origin::NONE
        } else {
            Origin {
                session: 7,
                request: token,
            }
        };
        Caller { token, origin }
    }

    #[test]
    fn each_cursor_sees_every_durable_input_whole_and_in_order() {
        let shared = Arc::new(Shared::new(16, 16, None, Seq(0)).with_readers(2));
        let mut w = OutputWriter::new(&shared.outbound);
        // Input i carries i events: 0 (none), inline, and spilled past EVENTS_INLINE.
        let sizes = [0usize, 1, EVENTS_INLINE, EVENTS_INLINE + 1, 40, 2];
        for (i, &n) in sizes.iter().enumerate() {
            let s = i as u64 + 1;
            w.write(
                &shared.outbound,
                caller(100 + s),
                &input(s),
                &events(n),
                IdleStrategy::Yield,
            );
        }
        let mut a = OutputReader::new(shared.clone(), 0);
        let mut b = OutputReader::new(shared.clone(), 1);
        assert_eq!(drain(&mut a), vec![], "released before durable");
        shared.publish_durable(Seq(3));
        let want: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (i as u64 + 1, 101 + i as u64, n))
            .collect();
        assert_eq!(drain(&mut a), want[..3]);
        shared.publish_durable(Seq(6));
        assert_eq!(drain(&mut a), want[3..]);
        // The second cursor has not moved: it reads everything on its own.
        assert_eq!(drain(&mut b), want);
        // A new reader of a cursor continues where the last one stopped.
        assert_eq!(drain(&mut OutputReader::new(shared.clone(), 0)), vec![]);
        // The spilled slot shrinks back on reuse.
        for s in 7..=(7 + 16) {
            w.write(
                &shared.outbound,
                caller(0),
                &input(s),
                &events(1),
                IdleStrategy::Yield,
            );
            shared.publish_durable(Seq(s));
            drain(&mut a);
            drain(&mut b);
        }
        let caps: Vec<usize> = (0..16)
            .map(|i| shared.outbound.slot(i).events.capacity())
            .collect();
        assert!(caps.iter().all(|&c| c == EVENTS_INLINE), "{caps:?}");
    }

    #[test]
    fn the_writer_waits_for_the_slowest_cursor_until_closed() {
        let shared = Arc::new(Shared::new(16, 16, None, Seq(0)).with_readers(2));
        let s2 = shared.clone();
        let writer = std::thread::spawn(move || {
            let mut w = OutputWriter::new(&s2.outbound);
            for s in 1..=40u64 {
                let c = caller(s);
                w.write(&s2.outbound, c, &input(s), &events(1), IdleStrategy::Yield);
                s2.publish_durable(Seq(s));
            }
        });
        let mut fast = OutputReader::new(shared.clone(), 0);
        let mut seen = Vec::new();
        let t0 = std::time::Instant::now();
        // Cursor 1 never reads: the writer stops after one ring's worth.
        while seen.len() < 16 {
            seen.extend(drain(&mut fast).into_iter().map(|x| x.0));
            assert!(
                t0.elapsed().as_secs() < 10,
                "the writer never filled the ring"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        seen.extend(drain(&mut fast).into_iter().map(|x| x.0));
        assert_eq!(
            seen,
            (1..=16).collect::<Vec<_>>(),
            "overwrote an unread slot"
        );
        // Closed (shutdown): the writer finishes without anyone reading.
        shared.outbound.close();
        writer.join().unwrap();
        assert_eq!(shared.outbound.head.load(Ordering::Acquire), 40);
    }
}
