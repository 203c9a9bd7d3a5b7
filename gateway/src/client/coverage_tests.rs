//! The coverage and the recovery's replays (sans-IO) against a model
//! server, over seeded random runs: inputs that each make 0–3 reports for
//! the session; connections cut at any frame (between two reports of one
//! input, during a replay); reconnects that resume by number on the same
//! server or log in on a new one (a restart, a new leader) whose window
//! may have lost the oldest inputs. Every report must reach the caller
//! exactly once, except those of inputs in a gap the recovery named. The
//! seed prints on failure; more seeds with `COVERAGE_SEEDS=N`.

use super::super::recover::Replays;
use super::*;
use crate::wire::{code, template, RequestAck};
use engine::rng::SplitMix64;
use std::collections::VecDeque;

enum Frame {
    Report(ExecutionReport),
    Ack(RequestAck),
}

/// A report's identity in the model: its input and its place in it.
fn id(seq: u64, ordinal: u32) -> u64 {
    seq * 8 + u64::from(ordinal)
}

/// One server's copy of the session.
struct Server {
    /// Newest input at the session's first login here.
    live_from: u64,
    /// The oldest input its window holds reports of is `floor + 1`.
    floor: u64,
    /// Reports issued, by number - 1: (seq, ordinal, replayed).
    issued: Vec<(u64, u32, bool)>,
    /// Replays asked and not answered: (request, after).
    asks: VecDeque<(u64, u64)>,
}

struct World {
    rng: SplitMix64,
    /// Reports of input i (index i - 1) for the session.
    counts: Vec<u32>,
    /// Newest input.
    t: u64,
    server: Server,
    frames: VecDeque<Frame>,
    page: u32,
}

impl World {
    fn issue(&mut self, seq: u64, ordinal: u32, replayed: bool) {
        self.server.issued.push((seq, ordinal, replayed));
        let report_seq = self.server.issued.len() as u64;
        self.frames
            .push_back(frame(report_seq, seq, ordinal, replayed));
    }

    /// A new input: its reports go to the session, connected or not.
    fn input(&mut self, connected: bool) {
        self.t += 1;
        for o in 0..self.counts[self.t as usize - 1] {
            self.issue(self.t, o, false);
        }
        if !connected {
            self.frames.clear();
        }
    }

    /// The server answers the oldest replay asked.
    fn answer(&mut self) {
        let Some((request, after)) = self.server.asks.pop_front() else {
            return;
        };
        let (code, seq, count) = if after < self.server.floor {
            (code::REPLAY_GAP, self.server.floor, 0)
        } else {
            self.replay(after)
        };
        self.frames.push_back(Frame::Ack(RequestAck {
            request,
            engine_seq: seq,
            template: template::REPLAY_REPORTS,
            code,
            count,
        }));
    }

    fn replay(&mut self, after: u64) -> (u16, u64, u32) {
        let mut sent = 0;
        let mut through = after;
        for seq in after + 1..=self.server.live_from {
            let n = self.counts[seq as usize - 1];
            if n > 0 && sent >= self.page {
                return (code::REPLAY_MORE, through, sent);
            }
            for o in 0..n {
                self.issue(seq, o, true);
            }
            sent += n;
            through = seq;
        }
        (0, self.server.live_from.max(after), sent)
    }
}

fn frame(report_seq: u64, seq: u64, ordinal: u32, replayed: bool) -> Frame {
    Frame::Report(ExecutionReport {
        report_seq,
        engine_seq: seq,
        order_id: id(seq, ordinal),
        flags: if replayed { REPORT_REPLAYED } else { 0 },
        ..Default::default()
    })
}

/// With `COVERAGE_TRACE` set, what the model does, to debug a seed.
fn trace(line: impl FnOnce() -> String) {
    if std::env::var_os("COVERAGE_TRACE").is_some() {
        eprintln!("{}", line());
    }
}

/// The client: what it holds, and what reached its caller.
#[derive(Default)]
struct Caller {
    coverage: ReportCoverage,
    last_report_seq: u64,
    got: Vec<u64>,
    gaps: Vec<(u64, u64)>,
}

impl Caller {
    /// Reads one frame.
    fn read(&mut self, f: Frame, rs: &mut Replays) {
        match f {
            Frame::Report(r) => {
                self.last_report_seq = self.last_report_seq.max(r.report_seq);
                let keep = self.coverage.handle_report(&r);
                trace(|| format!("{r:?} kept {keep}: {:?}", self.coverage.parts[0]));
                if keep {
                    self.got.push(r.order_id);
                }
            }
            Frame::Ack(a) => {
                trace(|| format!("{a:?}"));
                assert!(rs.handle_ack(&a, &mut self.coverage).expect("answer"));
            }
        }
    }
}

/// One connection: logs in (resuming, or on a new server), recovers and
/// reads until cut (`cut_per_mille` per step) or, uncut, until every input
/// happened and the recovery ended. Whether it ended uncut.
fn connection(w: &mut World, c: &mut Caller, new_server: bool, cut_per_mille: u64) -> bool {
    if new_server {
        let floor = match w.rng.next_u64() % 3 {
            0 => w.rng.next_u64() % (w.t + 1),
            _ => 0,
        };
        w.server = Server {
            live_from: w.t,
            floor,
            issued: Vec::new(),
            asks: VecDeque::new(),
        };
        c.last_report_seq = 0;
    }
    w.frames.clear();
    w.server.asks.clear();
    let resend_from = c.last_report_seq as usize;
    for (i, &(seq, o, replayed)) in w.server.issued[resend_from..].iter().enumerate() {
        let f = frame((resend_from + i + 1) as u64, seq, o, replayed);
        w.frames.push_back(f);
    }
    c.coverage
        .handle_login(new_server, 1, w.server.issued.len() as u64);
    trace(|| {
        let s = &w.server;
        let (t, l, f) = (w.t, s.live_from, s.floor);
        format!("login: new server {new_server}, inputs {t}, live from {l}, floor {f}")
    });
    let mut rs = Replays::recover((0..1).filter(|&p| c.coverage.pending(p)));
    let mut request = 0;
    for _ in 0..100_000 {
        if w.rng.next_u64() % 1000 < cut_per_mille {
            return false;
        }
        if let Some(ask) = rs.poll_ask(&mut c.coverage) {
            request += 1;
            c.coverage.handle_asked(ask.0, ask.1);
            rs.handle_sent(request, ask);
            w.server.asks.push_back((request, ask.1));
            continue;
        }
        match w.rng.next_u64() % 4 {
            0 if (w.t as usize) < w.counts.len() => w.input(true),
            1 => w.answer(),
            _ => match w.frames.pop_front() {
                Some(f) => c.read(f, &mut rs),
                None if rs.done() && w.t as usize == w.counts.len() => break,
                None => w.answer(),
            },
        }
    }
    let gaps = c.coverage.take_gaps();
    c.gaps.extend(
        gaps.iter()
            .chain(&rs.got.gaps)
            .map(|g| (g.after_seq, g.floor)),
    );
    assert!(
        rs.done() && w.frames.is_empty(),
        "a connection ends recovered"
    );
    true
}

/// One seeded run: cut connections, then one that is not.
fn run(seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let inputs = 5 + rng.next_u64() % 60;
    let counts = (0..inputs).map(|_| (rng.next_u64() % 4) as u32).collect();
    let page = 1 + (rng.next_u64() % 6) as u32;
    let mut w = World {
        rng,
        counts,
        t: 0,
        server: Server {
            live_from: 0,
            floor: 0,
            issued: Vec::new(),
            asks: VecDeque::new(),
        },
        frames: VecDeque::new(),
        page,
    };
    let mut c = Caller::default();
    let cuts = w.rng.next_u64() % 8;
    for i in 0..=cuts {
        let new_server = i > 0 && w.rng.next_u64().is_multiple_of(2);
        let cut = if i == cuts {
            0
        } else {
            5 + w.rng.next_u64() % 60
        };
        if connection(&mut w, &mut c, new_server, cut) {
            break;
        }
        for _ in 0..w.rng.next_u64() % 3 {
            if (w.t as usize) < w.counts.len() {
                w.input(false);
            }
        }
    }
    check(&w.counts, &c);
}

/// Every report once; a missing one only in a named gap.
fn check(counts: &[u32], c: &Caller) {
    let mut got = c.got.clone();
    got.sort_unstable();
    let n = got.len();
    got.dedup();
    assert_eq!(got.len(), n, "a report came twice: {:?}", c.got);
    let all: Vec<u64> = (1..=counts.len() as u64)
        .flat_map(|s| (0..counts[s as usize - 1]).map(move |o| id(s, o)))
        .collect();
    for g in &got {
        assert!(all.contains(g), "a report that never was: {g}");
    }
    for a in &all {
        let seq = a / 8;
        let in_gap = c
            .gaps
            .iter()
            .any(|&(after, floor)| seq > after && seq <= floor);
        assert!(
            got.contains(a) || in_gap,
            "report {} of input {seq} lost (gaps {:?}); got {:?}",
            a % 8,
            c.gaps,
            c.got
        );
    }
}

#[test]
fn every_report_once_across_cuts_resumes_and_new_servers() {
    let seeds: u64 = std::env::var("COVERAGE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let first: u64 = std::env::var("COVERAGE_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for seed in first..first + seeds {
        let r = std::panic::catch_unwind(|| run(seed));
        if let Err(e) = r {
            eprintln!("coverage seed {seed} failed");
            std::panic::resume_unwind(e);
        }
    }
}

/// Data: a cut after the first of an input's two reports; the new server
/// replays the input whole and only its second report comes.
#[test]
fn a_cut_between_two_reports_of_one_input_loses_neither() {
    let mut cov = ReportCoverage::default();
    cov.handle_login(false, 1, 0);
    let live = |report_seq, seq, ordinal| match frame(report_seq, seq, ordinal, false) {
        Frame::Report(r) => r,
        Frame::Ack(_) => unreachable!(),
    };
    assert!(cov.handle_report(&live(1, 7, 0)));
    cov.handle_login(true, 1, 0);
    assert!(cov.pending(0));
    assert_eq!(cov.replay_after(0), 6, "input 7 again, whole");
    cov.handle_asked(0, 6);
    let replayed = |report_seq, seq, ordinal| match frame(report_seq, seq, ordinal, true) {
        Frame::Report(r) => r,
        Frame::Ack(_) => unreachable!(),
    };
    assert!(!cov.handle_report(&replayed(1, 7, 0)), "held: dropped");
    assert!(cov.handle_report(&replayed(2, 7, 1)));
    assert!(cov.handle_report(&replayed(3, 9, 0)));
    cov.handle_covered(0, 12, true);
    assert!(!cov.pending(0));
    assert_eq!(cov.newest(0), 12);
}

/// A partition number out of any report's range (`bourse reports
/// --partition 4000000000`) costs nothing: the server refuses it, and the
/// coverage keeps at most 256 partitions whatever it is told.
#[test]
fn a_partition_no_report_can_name_allocates_nothing() {
    let mut cov = ReportCoverage::default();
    cov.handle_asked(4_000_000_000, 0);
    cov.handle_login(true, u16::MAX, 0);
    assert!(cov.parts.len() <= 256, "{}", cov.parts.len());
    assert!(!cov.pending(4_000_000_000));
}
