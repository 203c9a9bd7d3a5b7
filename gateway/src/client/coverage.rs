//! Which of a session's execution reports the client holds, by engine seq,
//! per partition, across connections (sans-IO): so that getting lost
//! reports back after any cut — between two reports of one input, in the
//! middle of a replay, on a resumed or on a new server — returns every
//! report exactly once.
//!
//! Model. Reports of one input come together and in one order, live or
//! replayed; a partition's live reports come in engine-seq order; a replay
//! sends, in order, every report of the inputs after the seq it was asked
//! from. So what the client holds of a partition is a few *runs*: each
//! every report from the run's first input up to a mark `(seq, k)` (every
//! report of the inputs before `seq`, and the first `k` of `seq`'s; `k` =
//! 0: all of them). The first run starts at the session's start; a login
//! that lost reports (a restarted server, a new leader) starts a new run
//! at the next live report, leaving a hole; a replay asked from the end of
//! the first run fills the holes in order, dropping what a later run
//! already holds and merging the runs it reaches. A replay a cut
//! interrupted is asked again (its reports resent by number on a resumed
//! login are dropped: where they stood in it is not known).
//!
//! Invariants: a report counted as held is never returned again by a
//! replay this coverage drives (it is dropped); a hole is never counted as
//! held unless a replay covered it or the server named it gone (a gap,
//! returned to the caller); the runs are disjoint and ordered; their
//! number is bounded (`RUNS_MAX`: past it, live reports are returned
//! without being counted, so a later replay may send them twice rather
//! than lose them).

use super::ReplayGap;
use crate::wire::{ExecutionReport, REPORT_REPLAYED};

/// Most runs kept per partition (each is one cut during a recovery).
const RUNS_MAX: usize = 16;

/// Most gaps kept to return (past it the newest is widened).
const GAPS_MAX: usize = 64;

/// Partitions a report can name (`ExecutionReport::partition` is a byte).
const PARTITIONS_MAX: u32 = 256;

/// How far a run reaches: every report of the inputs before `seq`, and
/// the first `reports` of `seq`'s (0: every one of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mark {
    seq: u64,
    reports: u32,
}

impl Mark {
    fn through(seq: u64) -> Self {
        Mark { seq, reports: 0 }
    }

    /// Ordered by how much it covers.
    fn key(self) -> (u64, u32) {
        match self.reports {
            0 => (self.seq, u32::MAX),
            k => (self.seq, k),
        }
    }

    fn max(self, other: Mark) -> Mark {
        if other.key() > self.key() {
            other
        } else {
            self
        }
    }

    /// Whether it covers report `ordinal` (from 0) of input `seq`.
    fn covers(self, seq: u64, ordinal: u32) -> bool {
        seq < self.seq || (seq == self.seq && (self.reports == 0 || ordinal < self.reports))
    }

    /// The seq a replay is asked after to get what follows (the reports of
    /// a partly held input come whole, and the held ones are dropped).
    fn replay_after(self) -> u64 {
        match self.reports {
            0 => self.seq,
            _ => self.seq - 1,
        }
    }
}

/// Reports held from input `from` (its first report) up to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    from: u64,
    to: Mark,
}

/// The replay being read: asked after `after`; the reports of `seq` read
/// so far numbered `n`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cursor {
    after: u64,
    seq: u64,
    n: u32,
}

impl Cursor {
    /// The ordinal of a replayed report of `seq` within its input.
    fn ordinal(&mut self, seq: u64) -> u32 {
        if seq != self.seq {
            (self.seq, self.n) = (seq, 0);
        }
        self.n += 1;
        self.n - 1
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Part {
    /// Disjoint, oldest first; `runs[0]` starts at the session's start.
    runs: Vec<Run>,
    /// Live reports extend the last run (false after a login that lost
    /// reports, until the next live report starts a run).
    live_open: bool,
    /// The replay this connection is reading.
    replay: Cursor,
}

impl Default for Part {
    fn default() -> Self {
        Part {
            runs: vec![Run {
                from: 0,
                to: Mark::default(),
            }],
            live_open: true,
            replay: Cursor::default(),
        }
    }
}

/// Per partition, which of a session's reports the client holds, by
/// engine seq (`Client::coverage`; carried to the next connection in
/// `ClientConfig::coverage`). `Default`: a fresh session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportCoverage {
    parts: Vec<Part>,
    /// Reports numbered up to this are resent by number on a resumed
    /// login: replayed ones among them are dropped (asked again).
    resent_through: u64,
    /// Holes the server named gone and counted as covered, not yet
    /// returned to the caller (a cut can end a recovery before it
    /// returns); at most `GAPS_MAX`.
    gaps: Vec<ReplayGap>,
}

impl ReportCoverage {
    /// Every report of partition `p`'s inputs up to `seqs[p]` held (for a
    /// client that kept only the newest seq it received of each).
    pub fn through(seqs: &[u64]) -> Self {
        let parts = seqs
            .iter()
            .map(|&s| Part {
                runs: vec![Run {
                    from: 0,
                    to: Mark::through(s),
                }],
                ..Part::default()
            })
            .collect();
        ReportCoverage {
            parts,
            ..ReportCoverage::default()
        }
    }

    /// The newest engine seq of a report held of `partition` (0: none).
    pub fn newest(&self, partition: u32) -> u64 {
        self.parts
            .get(partition as usize)
            .and_then(|p| p.runs.last())
            .map_or(0, |r| r.to.seq)
    }

    /// Whether a replay of `partition` has reports to bring back: a hole
    /// between runs, or a login that lost reports since.
    pub fn pending(&self, partition: u32) -> bool {
        self.parts
            .get(partition as usize)
            .is_some_and(|p| p.runs.len() > 1 || !p.live_open)
    }

    /// Partition `partition`'s part (reports name at most 256 partitions:
    /// a larger number is clamped, and no report of it can come).
    fn part(&mut self, partition: u32) -> &mut Part {
        let p = partition.min(PARTITIONS_MAX - 1) as usize;
        if self.parts.len() <= p {
            self.parts.resize_with(p + 1, Part::default);
        }
        &mut self.parts[p]
    }

    /// A login: `lost` when it could not resume every report (the next
    /// live report of each partition starts a new run); `last_report_seq`,
    /// the newest report number the server had issued (what it resends).
    pub(super) fn handle_login(&mut self, lost: bool, partitions: u16, last_report_seq: u64) {
        self.resent_through = last_report_seq;
        for p in 0..u32::from(partitions.max(1)).min(PARTITIONS_MAX) {
            let part = self.part(p);
            part.replay = Cursor::default();
            if lost {
                part.live_open = false;
            }
        }
    }

    /// The seq a replay of `partition` is asked after to fill its oldest
    /// hole; the replay's reports are read from there.
    pub(super) fn replay_after(&mut self, partition: u32) -> u64 {
        self.part(partition).runs[0].to.replay_after()
    }

    /// A `REPLAY_REPORTS` was sent: its reports are read from `after`.
    pub(super) fn handle_asked(&mut self, partition: u32, after: u64) {
        if partition >= PARTITIONS_MAX {
            // Refused `unroutable`: nothing to read.
            return;
        }
        self.part(partition).replay = Cursor {
            after,
            ..Cursor::default()
        };
    }

    /// A report read: whether to return it (false: already held).
    pub(super) fn handle_report(&mut self, r: &ExecutionReport) -> bool {
        if r.engine_seq == 0 {
            return true;
        }
        let resent = r.report_seq <= self.resent_through;
        let part = self.part(u32::from(r.partition));
        if r.flags & REPORT_REPLAYED == 0 {
            part.live(r.engine_seq);
            return true;
        }
        if resent {
            // The rest of a replay a cut interrupted, resent by number: its
            // place in that replay is not known here, and the hole it was
            // filling is still pending, asked again from its start.
            return false;
        }
        let extends = part.replay.after <= part.runs[0].to.replay_after();
        let ordinal = part.replay.ordinal(r.engine_seq);
        part.replayed(r.engine_seq, ordinal, extends)
    }

    /// A replay answer `REPLAY_GAP`: the reports of `partition`'s inputs in
    /// `(after, floor]` are gone; counted as covered, and kept to return.
    pub(super) fn handle_gap(&mut self, partition: u32, after: u64, floor: u64) {
        if self.gaps.len() >= GAPS_MAX {
            // Widen the newest instead: still names every input that may
            // be missing.
            let g = self.gaps.pop().expect("GAPS_MAX > 0");
            self.gaps.push(ReplayGap {
                partition: u32::MAX,
                after_seq: g.after_seq.min(after),
                floor: g.floor.max(floor),
            });
        } else {
            self.gaps.push(ReplayGap {
                partition,
                after_seq: after,
                floor,
            });
        }
        self.handle_covered(partition, floor, false);
    }

    /// The gaps named since the last call.
    pub(super) fn take_gaps(&mut self) -> Vec<ReplayGap> {
        std::mem::take(&mut self.gaps)
    }

    /// A replay answer: every report of `partition`'s inputs through `seq`
    /// was sent (or is gone, named as a gap); `complete`: through the
    /// newest input before the live reports this connection gets.
    pub(super) fn handle_covered(&mut self, partition: u32, seq: u64, complete: bool) {
        let part = self.part(partition);
        part.runs[0].to = part.runs[0].to.max(Mark::through(seq));
        if complete {
            // Every later run is this connection's live reports or older.
            let last = part.runs.last().map_or(part.runs[0].to, |r| r.to);
            part.runs[0].to = part.runs[0].to.max(last);
            part.runs.truncate(1);
            part.live_open = true;
        } else {
            part.merge_through(seq.saturating_add(1));
        }
    }
}

impl Part {
    fn live(&mut self, seq: u64) {
        if !self.live_open {
            if self.runs.len() >= RUNS_MAX {
                return;
            }
            self.runs.push(Run {
                from: seq,
                to: Mark { seq, reports: 1 },
            });
            self.live_open = true;
            return;
        }
        let last = self.runs.len() - 1;
        let to = &mut self.runs[last].to;
        if seq == to.seq && to.reports > 0 {
            to.reports += 1;
        } else if seq > to.seq {
            *to = Mark { seq, reports: 1 };
        }
    }

    /// Later runs starting at or before `seq` join the first.
    fn merge_through(&mut self, seq: u64) {
        while self.runs.len() > 1 && self.runs[1].from <= seq {
            let to = self.runs.remove(1).to;
            self.runs[0].to = self.runs[0].to.max(to);
        }
    }

    fn replayed(&mut self, seq: u64, ordinal: u32, extends: bool) -> bool {
        if extends {
            self.merge_through(seq);
        }
        if self
            .runs
            .iter()
            .any(|r| seq >= r.from && r.to.covers(seq, ordinal))
        {
            return false;
        }
        if extends {
            let to = &mut self.runs[0].to;
            *to = to.max(Mark {
                seq,
                reports: ordinal + 1,
            });
        }
        true
    }
}

#[cfg(test)]
#[path = "coverage_tests.rs"]
mod tests;
