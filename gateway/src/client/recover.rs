//! Getting lost execution reports back after a reconnect that could not
//! resume them (`Client::reports_lost`: the server restarted, another
//! cluster node leads now): `REPLAY_REPORTS` per partition, from the
//! newest engine seq this client holds of it (`Client::seen_seqs`, carried
//! over in `ClientConfig::seen_seqs`).
//!
//! Invariants: the replayed reports reach the caller through `next`, in the
//! order they arrived, after nothing they were read with is dropped; every
//! partition is asked until the server says it is covered (`REPLAY_MORE`
//! pages are followed); what the server no longer held is returned as
//! gaps, never hidden; the number of rounds is bounded.

use super::{Client, ClientError, Reply};
use crate::wire::{code, encode_frame, template, ExecutionReport, ReplayReportsMsg};
use std::collections::HashMap;

/// Reports of a partition the server could no longer send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayGap {
    /// The partition.
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

impl Client {
    /// Queues a `REPLAY_REPORTS`: this session's reports of `partition`'s
    /// inputs after engine seq `after_seq`, sent again.
    pub fn replay_reports(&mut self, partition: u32, after_seq: u64) -> u64 {
        let request = self.take_request();
        let m = ReplayReportsMsg {
            request,
            after_seq,
            partition,
            reserved: 0,
        };
        encode_frame(template::REPLAY_REPORTS, &m, &mut self.out);
        request
    }

    /// Notes a received report's engine seq.
    pub(super) fn saw(&mut self, r: &ExecutionReport) {
        if r.engine_seq == 0 {
            return;
        }
        let p = r.partition as usize;
        if self.seen_seqs.len() <= p {
            self.seen_seqs.resize(p + 1, 0);
        }
        self.seen_seqs[p] = self.seen_seqs[p].max(r.engine_seq);
    }

    /// After a login that could not resume every report
    /// (`reports_lost`), asks every partition for this session's reports
    /// after the newest engine seq held of it (from the start of what the
    /// server holds for a partition none was received from: that may
    /// include reports from before this session's first login). Returns
    /// once every partition answered; the reports (and anything else read
    /// meanwhile) are waiting for `next`. Nothing to do without a loss.
    pub async fn recover_reports(&mut self) -> Result<ReportRecovery, ClientError> {
        if !self.reports_lost {
            return Ok(ReportRecovery::default());
        }
        let asks: Vec<(u32, u64)> = (0..u32::from(self.login.partitions.max(1)))
            .map(|p| (p, self.seen_seqs.get(p as usize).copied().unwrap_or(0)))
            .collect();
        self.replay_after(&asks).await
    }

    /// Asks each `(partition, after_seq)` for this session's reports of the
    /// inputs after that seq, as the server still holds them (`bourse
    /// reports` asks this way), and returns once every one is answered;
    /// the reports wait for `next`. What `recover_reports` does after a
    /// loss, for any seqs.
    pub async fn replay_after(
        &mut self,
        asks: &[(u32, u64)],
    ) -> Result<ReportRecovery, ClientError> {
        let mut got = ReportRecovery::default();
        // request → (partition, after_seq, rounds)
        let mut waiting: HashMap<u64, (u32, u64, u32)> = HashMap::new();
        for &(p, after) in asks {
            waiting.insert(self.replay_reports(p, after), (p, after, 1));
        }
        let mut stash = Vec::new();
        let result = self.await_replays(&mut waiting, &mut got, &mut stash).await;
        self.stash.extend(stash);
        result.map(|()| got)
    }

    async fn await_replays(
        &mut self,
        waiting: &mut HashMap<u64, (u32, u64, u32)>,
        got: &mut ReportRecovery,
        stash: &mut Vec<Reply>,
    ) -> Result<(), ClientError> {
        while !waiting.is_empty() {
            self.flush().await?;
            let reply = self.read_reply().await?.ok_or(ClientError::Closed)?;
            let (a, (p, after, rounds)) = match reply {
                Reply::Ack(a) if a.template == template::REPLAY_REPORTS => {
                    match waiting.remove(&a.request) {
                        Some(w) => (a, w),
                        None => {
                            stash.push(Reply::Ack(a));
                            continue;
                        }
                    }
                }
                Reply::ProtocolReject(r) if waiting.contains_key(&r.request) => {
                    return Err(ClientError::Protocol(r.text().to_string()))
                }
                other => {
                    stash.push(other);
                    continue;
                }
            };
            got.replayed += u64::from(a.count);
            let next_after = match a.code {
                0 => continue,
                code::REPLAY_MORE => a.engine_seq,
                code::REPLAY_GAP => {
                    got.gaps.push(ReplayGap {
                        partition: p,
                        after_seq: after,
                        floor: a.engine_seq,
                    });
                    a.engine_seq
                }
                c => return Err(ClientError::Refused(c)),
            };
            if rounds >= ROUNDS_MAX {
                got.gaps.push(ReplayGap {
                    partition: p,
                    after_seq: next_after,
                    floor: u64::MAX,
                });
                continue;
            }
            let q = self.replay_reports(p, next_after);
            waiting.insert(q, (p, next_after, rounds + 1));
        }
        Ok(())
    }
}
