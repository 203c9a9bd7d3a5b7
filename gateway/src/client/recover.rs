//! Getting lost execution reports back after a reconnect that could not
//! resume them (`Client::reports_lost`: the server restarted, another
//! cluster node leads now) or after a cut during an earlier recovery:
//! `REPLAY_REPORTS` per partition, from the end of what the client holds
//! of it (`Client::coverage`, carried over in `ClientConfig::coverage`;
//! see `coverage.rs` for how a hole is found and filled exactly once).
//!
//! Invariants: the replayed reports reach the caller through `next`, in the
//! order they arrived, after nothing they were read with is dropped; every
//! partition is asked until the server says it is covered (`REPLAY_MORE`
//! pages are followed); what the server no longer held is returned as
//! gaps, never hidden; the number of rounds is bounded.

use super::{Client, ClientError, Reply, ReportCoverage};
use crate::wire::{code, encode_frame, template, ReplayReportsMsg, RequestAck, REPORT_REPLAYED};
use std::collections::HashMap;

/// Reports of a partition the server could no longer send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayGap {
    /// The partition (`u32::MAX`: several, when more gaps were named
    /// than a coverage keeps between two recoveries).
    pub partition: u32,
    /// The replay asked for reports of inputs after this seq …
    pub after_seq: u64,
    /// … but the server held none through this one (reports of inputs
    /// numbered in `(after_seq, floor]` may be missing: query the open
    /// orders). `u64::MAX`: the client stopped asking after 1,024
    /// rounds (a window trimmed faster than it could be read).
    pub floor: u64,
}

/// What `recover_reports` got back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportRecovery {
    /// Reports sent again (`REPORT_REPLAYED`; read them with `next`).
    pub replayed: u64,
    /// What could not be sent again.
    pub gaps: Vec<ReplayGap>,
}

/// Most replay requests one partition's recovery makes (pages and gaps);
/// past it the partition is reported as a gap from where it stood.
const ROUNDS_MAX: u32 = 1_024;

/// A recovery or a re-read in progress (sans-IO): the replays awaited and
/// the ones to ask next.
#[derive(Debug, Default)]
pub(super) struct Replays {
    /// Driven by the coverage (`recover_reports`: asked from the end of
    /// each partition's first run, the coverage told what was covered) or
    /// a re-read from given seqs (`replay_after`).
    recover: bool,
    /// request → (partition, asked after, rounds).
    waiting: HashMap<u64, (u32, u64, u32)>,
    /// To ask: (partition, after (re-read), rounds so far).
    asks: Vec<(u32, u64, u32)>,
    pub(super) got: ReportRecovery,
}

impl Replays {
    /// Fill the holes of these partitions.
    pub(super) fn recover(partitions: impl Iterator<Item = u32>) -> Self {
        Replays {
            recover: true,
            asks: partitions.map(|p| (p, 0, 0)).collect(),
            ..Replays::default()
        }
    }

    /// Read again after these seqs.
    pub(super) fn reread(asks: &[(u32, u64)]) -> Self {
        Replays {
            asks: asks.iter().map(|&(p, after)| (p, after, 0)).collect(),
            ..Replays::default()
        }
    }

    /// The next replay to ask: (partition, after, rounds); pass it back
    /// with its request number to `handle_sent`.
    pub(super) fn poll_ask(&mut self, cov: &mut ReportCoverage) -> Option<(u32, u64, u32)> {
        let (p, after, rounds) = self.asks.pop()?;
        let after = if self.recover {
            cov.replay_after(p)
        } else {
            after
        };
        Some((p, after, rounds))
    }

    /// The replay `poll_ask` named went out as `request`.
    pub(super) fn handle_sent(&mut self, request: u64, ask: (u32, u64, u32)) {
        self.waiting.insert(request, ask);
    }

    /// Whether `request` is a replay awaited.
    pub(super) fn waits(&self, request: u64) -> bool {
        self.waiting.contains_key(&request)
    }

    /// Nothing awaited, nothing to ask.
    pub(super) fn done(&self) -> bool {
        self.waiting.is_empty() && self.asks.is_empty()
    }

    /// A replay's answer (false: not one awaited).
    pub(super) fn handle_ack(
        &mut self,
        a: &RequestAck,
        cov: &mut ReportCoverage,
    ) -> Result<bool, ClientError> {
        let Some((p, after, rounds)) = self.waiting.remove(&a.request) else {
            return Ok(false);
        };
        let complete = match a.code {
            0 => true,
            code::REPLAY_MORE => false,
            code::REPLAY_GAP if self.recover => {
                cov.handle_gap(p, after, a.engine_seq);
                false
            }
            code::REPLAY_GAP => {
                self.got.gaps.push(ReplayGap {
                    partition: p,
                    after_seq: after,
                    floor: a.engine_seq,
                });
                false
            }
            c => return Err(ClientError::Refused(c)),
        };
        if self.recover && a.code != code::REPLAY_GAP {
            cov.handle_covered(p, a.engine_seq, complete);
        }
        if complete {
            return Ok(true);
        }
        if rounds + 1 >= ROUNDS_MAX {
            self.got.gaps.push(ReplayGap {
                partition: p,
                after_seq: a.engine_seq,
                floor: u64::MAX,
            });
            return Ok(true);
        }
        self.asks.push((p, a.engine_seq, rounds + 1));
        Ok(true)
    }
}

impl Client {
    /// Queues a `REPLAY_REPORTS`: this session's reports of `partition`'s
    /// inputs after engine seq `after_seq`, sent again (those the
    /// coverage counts as held are dropped as they are read).
    pub fn replay_reports(&mut self, partition: u32, after_seq: u64) -> u64 {
        let request = self.take_request();
        let m = ReplayReportsMsg {
            request,
            after_seq,
            partition,
            reserved: 0,
        };
        encode_frame(template::REPLAY_REPORTS, &m, &mut self.out);
        self.coverage.handle_asked(partition, after_seq);
        request
    }

    /// Gets back the reports this session lacks: for every partition with
    /// a hole in what the client holds (`Client::coverage`: a login that
    /// could not resume every report, `reports_lost`, or a cut during an
    /// earlier recovery), asks a replay from the end of what it holds and
    /// follows it until the server says the partition is covered. Returns
    /// once every partition answered; the reports (and anything else read
    /// meanwhile) wait for `next`; none comes twice. What the server no
    /// longer held is returned as gaps. Nothing to do without a hole.
    pub async fn recover_reports(&mut self) -> Result<ReportRecovery, ClientError> {
        let partitions = u32::from(self.login.partitions.max(1));
        let pending: Vec<u32> = (0..partitions)
            .filter(|&p| self.coverage.pending(p))
            .collect();
        self.run_replays(Replays::recover(pending.into_iter()))
            .await
    }

    /// Asks each `(partition, after_seq)` for this session's reports of the
    /// inputs after that seq, as the server still holds them (`bourse
    /// reports` asks this way), and returns once every one is answered;
    /// the reports wait for `next` (only those not already held: the
    /// coverage drops the others).
    pub async fn replay_after(
        &mut self,
        asks: &[(u32, u64)],
    ) -> Result<ReportRecovery, ClientError> {
        self.run_replays(Replays::reread(asks)).await
    }

    async fn run_replays(&mut self, mut rs: Replays) -> Result<ReportRecovery, ClientError> {
        let mut stash = Vec::new();
        let result = self.await_replays(&mut rs, &mut stash).await;
        self.stash.extend(stash);
        result?;
        // Gaps named by this recovery or one a cut ended (they are counted
        // as covered: returned once).
        let mut named = self.coverage.take_gaps();
        named.append(&mut rs.got.gaps);
        rs.got.gaps = named;
        Ok(rs.got)
    }

    async fn await_replays(
        &mut self,
        rs: &mut Replays,
        stash: &mut Vec<Reply>,
    ) -> Result<(), ClientError> {
        loop {
            while let Some(ask) = rs.poll_ask(&mut self.coverage) {
                let request = self.replay_reports(ask.0, ask.1);
                rs.handle_sent(request, ask);
            }
            if rs.done() {
                return Ok(());
            }
            self.flush().await?;
            let reply = self.read_reply().await?.ok_or(ClientError::Closed)?;
            match reply {
                Reply::Ack(a) if a.template == template::REPLAY_REPORTS => {
                    if !rs.handle_ack(&a, &mut self.coverage)? {
                        stash.push(Reply::Ack(a));
                    }
                }
                Reply::ProtocolReject(r) if rs.waits(r.request) => {
                    return Err(ClientError::Protocol(r.text().to_string()))
                }
                Reply::Report(r) => {
                    if r.flags & REPORT_REPLAYED != 0 {
                        rs.got.replayed += 1;
                    }
                    stash.push(Reply::Report(r));
                }
                other => stash.push(other),
            }
        }
    }
}
