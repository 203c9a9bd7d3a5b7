//! The report window: per partition, the newest engine events that
//! execution reports are made of, each with the seq and the origin (client
//! session key and request number) of the input that caused it, so a
//! session that lost reports — its server restarted, or another cluster
//! node took over as leader — can have them sent again (`REPLAY_REPORTS`).
//!
//! Why it works on a new leader: a replicated partition's inputs, origins
//! included, are the Raft log, and every replica executes them into the
//! same events; every node's window is fed by its own output stage, so the
//! node a client reconnects to holds the reports the old leader sent, under
//! the same seqs.
//!
//! Invariants: bounded (at most `events_max` events, allocated at start; the
//! oldest go first); it holds *every* reportable event of the inputs
//! numbered in `(floor, newest]` — a range query either answers all of a
//! range or says, with the floor, that it cannot; a restore (a snapshot
//! installed from the leader: the inputs before it were never executed
//! here) empties it; it never reads a clock and runs on the gateway's
//! thread, off the engine's.

use engine::Event;
use journal::record::Origin;
use runtime::{Mark, Output};
use std::collections::VecDeque;

/// One reportable event and the input it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowEvent {
    /// The input's seq.
    pub seq: u64,
    /// The client request the input served (`Origin::NONE`: none, or a
    /// single node, which keeps no origins).
    pub origin: Origin,
    /// The event.
    pub event: Event,
}

/// One partition's window (module doc).
#[derive(Debug)]
pub struct ReportWindow {
    events: VecDeque<WindowEvent>,
    events_max: usize,
    floor: u64,
    newest: u64,
}

/// Whether an execution report can be made of `event` (order events and
/// refusals; ledger and query answers are not reports). Exhaustive, like
/// the session's live dispatch (`Session::handle_event`), so a new event
/// kind is decided here too and a replay cannot silently leave it out.
fn reportable(event: &Event) -> bool {
    match event {
        Event::Accepted { .. }
        | Event::Rejected { .. }
        | Event::Trade { .. }
        | Event::Canceled { .. }
        | Event::Reduced { .. }
        | Event::Replaced { .. }
        | Event::Triggered { .. } => true,
        Event::Halted { .. }
        | Event::Resumed { .. }
        | Event::Book { .. }
        | Event::AccountOpened { .. }
        | Event::AccountRejected { .. }
        | Event::TransferOk { .. }
        | Event::TransferRejected { .. }
        | Event::TransferExpired { .. }
        | Event::OpenOrder { .. }
        | Event::Balance { .. }
        | Event::HistoryInstalled { .. }
        | Event::Transfers { .. } => false,
    }
}

impl ReportWindow {
    /// An empty window of at most `events_max` events over a partition
    /// whose output stream starts after input `start` (none through it is
    /// held).
    pub fn new(events_max: usize, start: u64) -> Self {
        ReportWindow {
            events: VecDeque::with_capacity(events_max),
            events_max,
            floor: start,
            newest: start,
        }
    }

    /// Takes one slot of the partition's output stream, in stream order.
    pub fn handle_output(&mut self, o: &Output) {
        let seq = o.seq.0;
        match o.mark {
            Mark::Snapshot => {}
            Mark::Restore => {
                self.events.clear();
                self.floor = seq;
                self.newest = seq;
            }
            // Below the floor (a stream that starts earlier than the
            // window was told): never asked for.
            Mark::Input if seq <= self.floor => {}
            Mark::Input => {
                self.newest = self.newest.max(seq);
                for &event in o.events().iter().filter(|e| reportable(e)) {
                    self.push(WindowEvent {
                        seq,
                        origin: o.origin,
                        event,
                    });
                }
            }
        }
    }

    fn push(&mut self, e: WindowEvent) {
        if self.events.len() >= self.events_max {
            match self.events.pop_front() {
                // The oldest input may lose only some of its events: it
                // goes below the floor whole.
                Some(old) => self.floor = self.floor.max(old.seq),
                None => {
                    // Holding nothing at all: everything so far is gone.
                    self.floor = e.seq;
                    return;
                }
            }
        }
        self.events.push_back(e);
    }

    /// Every input through this seq that the window ever held is gone, or
    /// was never seen here.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The newest input seen.
    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// The events of the inputs numbered in `(after, upto]`, oldest first;
    /// `Err(floor)` when some of those inputs are no longer held.
    pub fn range(
        &self,
        after: u64,
        upto: u64,
    ) -> Result<impl Iterator<Item = &WindowEvent> + '_, u64> {
        if after < self.floor && after < upto {
            return Err(self.floor);
        }
        let start = self.events.partition_point(|e| e.seq <= after);
        Ok(self
            .events
            .range(start..)
            .take_while(move |e| e.seq <= upto))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Events, Input, OrderId, OwnerId, Qty, Seq, Timestamp};

    fn canceled(order: u64) -> Event {
        Event::Canceled {
            order_id: OrderId(order),
            owner: OwnerId(1),
            side: engine::Side::Buy,
            price: None,
            qty: Qty(1),
            reason: engine::CancelReason::User,
        }
    }

    /// The output slot of input `seq` (origin request `seq`) with `events`.
    fn output(seq: u64, events: &[Event]) -> Output {
        let mut e = Events::default();
        for &ev in events {
            e.push(ev);
        }
        let input = Input {
            seq: Seq(seq),
            now: Timestamp(0),
            command: engine::Command::Time { now: Timestamp(0) },
        };
        let origin = Origin {
            session: 9,
            request: seq,
        };
        Output::of(runtime::Caller { token: 0, origin }, &input, &e)
    }

    fn seqs(w: &ReportWindow, after: u64, upto: u64) -> Result<Vec<(u64, u64)>, u64> {
        w.range(after, upto)
            .map(|it| it.map(|e| (e.seq, e.origin.request)).collect())
    }

    #[test]
    fn a_range_is_answered_whole_or_refused_with_the_floor() {
        let mut w = ReportWindow::new(4, 10);
        let time = Event::Resumed {
            instrument: engine::InstrumentId(1),
        };
        w.handle_output(&output(11, &[canceled(1), time]));
        w.handle_output(&output(12, &[]));
        w.handle_output(&output(13, &[canceled(2), canceled(3)]));
        assert_eq!((w.floor(), w.newest()), (10, 13));
        // Non-reportable events are not held; empty inputs still count.
        assert_eq!(seqs(&w, 10, 13), Ok(vec![(11, 11), (13, 13), (13, 13)]));
        assert_eq!(seqs(&w, 11, 12), Ok(vec![]));
        assert_eq!(seqs(&w, 9, 13), Err(10), "input 10 was never seen here");
        // Over the bound the oldest input goes whole, even if only part of
        // it had to.
        w.handle_output(&output(14, &[canceled(4), canceled(5), canceled(6)]));
        assert_eq!(w.floor(), 13, "input 13 lost one of its two events");
        assert_eq!(seqs(&w, 12, 14), Err(13));
        let all_of_14 = vec![(14, 14), (14, 14), (14, 14)];
        assert_eq!(seqs(&w, 13, 14), Ok(all_of_14.clone()));
        // An input at or below the floor (before the stream start) is ignored.
        w.handle_output(&output(13, &[canceled(9)]));
        assert_eq!(seqs(&w, 13, 20), Ok(all_of_14));
        // A restore empties it: the inputs before it never ran here.
        let mut restore = output(30, &[]);
        restore.mark = Mark::Restore;
        w.handle_output(&restore);
        assert_eq!((w.floor(), w.newest()), (30, 30));
        assert_eq!(seqs(&w, 14, 30), Err(30));
        assert_eq!(seqs(&w, 30, 30), Ok(vec![]));
    }

    #[test]
    fn an_event_held_costs_128_bytes() {
        // What `[session] report_window_events` documents.
        let n = std::mem::size_of::<WindowEvent>();
        assert!(
            n <= 128,
            "{n} bytes (event {})",
            std::mem::size_of::<Event>()
        );
    }

    #[test]
    fn a_window_of_nothing_holds_nothing_and_says_so() {
        let mut w = ReportWindow::new(0, 0);
        w.handle_output(&output(1, &[canceled(1)]));
        assert_eq!(seqs(&w, 0, 1), Err(1));
        assert_eq!(seqs(&w, 1, 1), Ok(vec![]));
    }
}
