//! `REPLAY_REPORTS`: a session's execution reports sent again from the
//! partition's report window (`crate::window`), after a login that could
//! not resume them (the server restarted, or another cluster node now
//! leads).
//!
//! What a replay sends: for the inputs numbered in `(after_seq, live_from]`
//! — `live_from` being the newest input of the partition when this session
//! first logged in on this server, after which every report reached it
//! live — the reports this session would have issued, made the way live
//! ones are: about orders of the session's owners, and refusals of its own
//! requests (found by the input's origin, which every replica executes
//! with). They are numbered on as new reports, flagged `REPORT_REPLAYED`,
//! and carry the original request number; the replay's own answer is a
//! `RequestAck` (`count` reports; `engine_seq` through which the partition
//! is now covered; `REPLAY_MORE` to ask again from there, `REPLAY_GAP`
//! when the window no longer holds what was asked).
//!
//! Invariants: a replay changes no live state (the order tracking it
//! builds for cum/leaves is its own, and is dropped); one answer sends at
//! most a page of reports, ending on an input boundary; at most as many
//! replays wait for the server as there are partitions (it answers them
//! right after the bytes that asked); the tracking a paged replay built is
//! kept for the page that continues it (one at a time, bounded like live
//! tracking), so every page reports as one replay would; a replayed report
//! is never recorded as the outcome of the request it reports (only the
//! ack is the replay request's outcome).

use super::{EventCtx, ReportCtx, Session, Tracked};
use crate::window::{ReportWindow, WindowEvent};
use crate::wire::*;
use engine::{Event, RejectTarget};
use std::collections::HashMap;

/// A `REPLAY_REPORTS` the server has still to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ReplayAsk {
    request: u64,
    template: u16,
    partition: usize,
    after_seq: u64,
}

/// What one `REPLAY_REPORTS` answer was (for the server's metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayAnswer {
    /// 0 (complete), `code::REPLAY_MORE` or `code::REPLAY_GAP`.
    pub code: u16,
    /// Reports sent.
    pub reports: u32,
}

/// The order tracking a paged replay built so far, for its next page.
#[derive(Debug)]
pub(super) struct ReplayPages {
    partition: usize,
    /// The page ended after this input.
    through: u64,
    orders: HashMap<u64, Tracked>,
}

/// Most reports one replay answer sends (a page ends on an input boundary,
/// so an input with more events still goes whole).
const REPLAY_PAGE_MAX: usize = 4_096;

impl Session {
    /// A `REPLAY_REPORTS` request: checked, then queued for the server
    /// (`poll_replay` / `handle_replay`).
    pub(super) fn replay_reports(&mut self, request: u64, template: u16, m: ReplayReportsMsg) {
        let perms = self.grant.perms;
        let code = if !(perms.read || perms.trade) {
            code::NOT_AUTHORIZED
        } else if m.partition as usize >= self.cfg.partitions.max(1) {
            code::UNROUTABLE
        } else if self.replays.len() >= self.cfg.partitions.max(1) {
            code::TOO_MANY_IN_FLIGHT
        } else {
            0
        };
        if code != 0 {
            return self.ack_now(request, template, code);
        }
        self.replays.push_back(ReplayAsk {
            request,
            template,
            partition: m.partition as usize,
            after_seq: m.after_seq,
        });
    }

    /// Set by the server when this session first logs in on it (and again
    /// after a login its replay store could not resume, see `login`): the
    /// newest input of each partition then. Reports of later inputs reach
    /// the session live; a replay covers the ones up to these.
    pub fn handle_live_from(&mut self, newest_by_partition: Vec<u64>) {
        if self.live_from.is_empty() {
            self.live_from = newest_by_partition;
        }
    }

    /// Whether `handle_live_from` was called.
    pub fn live(&self) -> bool {
        !self.live_from.is_empty()
    }

    /// The partition whose window the next waiting replay needs.
    pub fn poll_replay(&self) -> Option<usize> {
        self.replays.front().map(|a| a.partition)
    }

    /// Answers the next waiting replay from `window`, the window of the
    /// partition `poll_replay` named; what it answered (`None`: nothing
    /// was waiting).
    pub fn handle_replay(&mut self, window: &ReportWindow) -> Option<ReplayAnswer> {
        let ask = self.replays.pop_front()?;
        let upto = self.live_from.get(ask.partition).copied().unwrap_or(0);
        let events = match window.range(ask.after_seq, upto) {
            Ok(events) => events,
            Err(floor) => {
                self.ack(ask.request, ask.template, code::REPLAY_GAP, floor, 0);
                self.finish_outcome(ask.request);
                return Some(ReplayAnswer {
                    code: code::REPLAY_GAP,
                    reports: 0,
                });
            }
        };
        // The replay's own tracking (carried over from the page this one
        // continues): live tracking is not touched.
        let scratch = match self.replay_pages.take() {
            Some(p) if (p.partition, p.through) == (ask.partition, ask.after_seq) => p.orders,
            _ => HashMap::new(),
        };
        let live_orders = std::mem::replace(&mut self.orders, scratch);
        let live_open = self.open_own;
        let page = (self.cfg.replay_reports_max / 2).clamp(1, REPLAY_PAGE_MAX);
        let first = self.report_seq;
        let mut through = ask.after_seq;
        let mut more = false;
        self.report_ctx = ReportCtx {
            partition: ask.partition as u8,
            flags: REPORT_REPLAYED,
        };
        for e in events {
            if e.seq != through && (self.report_seq - first) as usize >= page {
                more = true;
                break;
            }
            through = e.seq;
            self.replay_event(ask.partition, e);
        }
        self.report_ctx = Default::default();
        let scratch = std::mem::replace(&mut self.orders, live_orders);
        self.open_own = live_open;
        if more {
            self.replay_pages = Some(ReplayPages {
                partition: ask.partition,
                through,
                orders: scratch,
            });
        }
        let count = (self.report_seq - first).min(u32::MAX as u64) as u32;
        let (code, through) = if more {
            (code::REPLAY_MORE, through)
        } else {
            (0, upto.max(ask.after_seq))
        };
        self.ack(ask.request, ask.template, code, through, count);
        self.finish_outcome(ask.request);
        Some(ReplayAnswer {
            code,
            reports: count,
        })
    }

    /// The reports one held event makes for this session.
    fn replay_event(&mut self, partition: usize, e: &WindowEvent) {
        let own = e.origin.session != 0 && e.origin.session == self.origin_key;
        let request = own.then_some(e.origin.request);
        let cx = EventCtx {
            partition,
            request,
            own,
            base: ExecutionReport {
                request: request.unwrap_or(0),
                engine_seq: e.seq,
                cancel_reason: CANCEL_REASON_NONE,
                ..Default::default()
            },
        };
        match e.event {
            Event::Rejected { target, reason } if own => {
                self.replay_reject(&cx, target, reason.code())
            }
            Event::Rejected { .. } => {}
            event => self.order_event(&cx, None, &event),
        }
    }

    /// A refusal of this session's own new order, cancel or replace (what
    /// the event names; the rest of the request went with the server that
    /// took it).
    fn replay_reject(&mut self, cx: &EventCtx, target: RejectTarget, code: u16) {
        let mut r = ExecutionReport {
            reject_code: code,
            exec_type: exec_type::REJECTED,
            ord_status: ord_status::REJECTED,
            flags: REPORT_OWN_REQUEST,
            ..cx.base
        };
        match target {
            RejectTarget::ClientOrder(id) => r.client_order_id = id.0,
            RejectTarget::Order(id) => r.order_id = cx.global(id),
            // Not an order request: no execution report.
            _ => return,
        }
        self.report(r, None);
    }
}
