//! The journal thread of a partition: group commit of the engine's stamped
//! inputs, snapshots once their inputs are durable, deferred segment work
//! when there is time for it, and `durable_seq` published (the doorbell
//! rung) after every group.
//!
//! Group commit: everything that queued while the previous write + sync ran
//! becomes the next group (up to `max` inputs, the journal queue's size), so
//! a slower disk makes groups larger, not the queue longer; the persistence
//! side writes a group as one block per write (`Persistence::commit`).
//!
//! Invariants: `durable_seq` moves only after the group's commit returned
//! (in `durable` mode: after its fdatasync), so no output is released before
//! its input is on disk; a failed commit or snapshot is never retried: the
//! thread marks the journal failed, calls `fatal` and stops for good
//! (nothing more becomes durable); a snapshot is written only once every
//! input it covers is durable; the thread stops only after the engine thread
//! stopped and everything it left (inputs, its final snapshot) is on disk.
//! It sleeps (a short backoff, never a blocking wait) when there is nothing
//! to commit, so it leaves the core to the engine and the producers.

use crate::idle::{IdleStrategy, Idler};
use crate::partition::{Request, Shared, SnapshotBytes};
use crate::Persistence;
use engine::{Input, Seq};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Longest sleep of the journal thread between polls of an empty queue: the
/// most a lone command waits for its commit to start.
const IDLE_SLEEP_US_MAX: u32 = 50;

/// The journal thread's loop (see the module doc); returns when the engine
/// stopped and everything is on disk, or after a failure (`fatal` called).
pub(crate) fn journal_loop(
    mut persist: Box<dyn Persistence>,
    shared: Arc<Shared>,
    max: usize,
    snapshot_every: u64,
    fatal: fn(&str),
) {
    let q = shared
        .journal
        .as_ref()
        .expect("journal queue in durable/async mode");
    let mut group: Vec<Input> = Vec::with_capacity(max.max(1));
    let mut idler = Idler::new(IdleStrategy::Park {
        max_sleep_us: IDLE_SLEEP_US_MAX,
    });
    let mut snapshots = SnapshotStep::default();
    loop {
        group.clear();
        while group.len() < group.capacity() {
            match q.pop() {
                Some(i) => group.push(i),
                None => break,
            }
        }
        let worked = !group.is_empty();
        if worked && commit_group(&mut *persist, &shared, &group, fatal).is_err() {
            return;
        }
        if snapshots
            .step(&mut *persist, &shared, snapshot_every, fatal)
            .is_err()
        {
            return;
        }
        // Stop once the engine thread has stopped and everything it left in
        // the queues is on disk (its final snapshot included).
        if !worked
            && shared.stopped.load(Ordering::Acquire)
            && q.is_empty()
            && snapshots.pending.is_none()
            && shared.snapshots.is_empty()
        {
            persist.settle();
            publish_disk_usage(&*persist, &shared);
            return;
        }
        // A slice of deferred work (the next segment): with `idle`, because
        // nothing waits; without, only what cannot wait longer.
        let worked = persist.background(q.is_empty()) || worked;
        publish_disk_usage(&*persist, &shared);
        idler.idle(worked);
    }
}

/// Failed for good: `fatal` was called and the thread must stop.
struct Stopped;

/// Commits one group, counts it, and publishes its last seq as durable.
fn commit_group(
    persist: &mut dyn Persistence,
    shared: &Shared,
    group: &[Input],
    fatal: fn(&str),
) -> Result<(), Stopped> {
    let t0 = std::time::Instant::now();
    if let Err(e) = persist.commit(group) {
        // Never retried: after a failed fsync the durable state is unknown.
        shared.journal_failed.store(true, Ordering::Release);
        fatal(&format!("journal write/fsync failed: {e}"));
        return Err(Stopped);
    }
    let us = t0.elapsed().as_micros() as u64;
    let c = &shared.counters;
    let bucket = (64 - us.max(1).leading_zeros() as usize).min(c.fsync_us_buckets.len() - 1);
    c.fsync_us_buckets[bucket].add(1);
    c.fsync_us_sum.add(us);
    c.journal_blocks.add(1);
    c.journal_records.add(group.len() as u64);
    c.journal_bytes
        .add(persist.bytes_written() - c.journal_bytes.get());
    let last = group.last().expect("a group is never empty");
    c.durable_time_ns.set(last.now.0);
    shared.publish_durable(last.seq);
    Ok(())
}

/// Snapshots: the one waiting for its inputs to become durable, and whether
/// one was asked for by size.
#[derive(Default)]
struct SnapshotStep {
    pending: Option<SnapshotBytes>,
    asked: bool,
    /// The seq of market data's last answer to a snapshot mark seen here.
    feed_seen: Option<Seq>,
}

impl SnapshotStep {
    /// Writes the pending snapshot once durable, and asks the engine for one
    /// when `snapshot_every` journal bytes accumulated since the last.
    fn step(
        &mut self,
        persist: &mut dyn Persistence,
        shared: &Shared,
        snapshot_every: u64,
        fatal: fn(&str),
    ) -> Result<(), Stopped> {
        if self.pending.is_none() {
            self.pending = shared.snapshots.pop();
        }
        self.write_feed(persist, shared);
        if let Some(snap) = &self.pending {
            if shared.durable_seq.load(Ordering::Acquire) >= snap.seq.0 {
                if let Err(e) = persist.snapshot(snap) {
                    shared.journal_failed.store(true, Ordering::Release);
                    fatal(&format!("snapshot write failed: {e}"));
                    return Err(Stopped);
                }
                shared.counters.snapshots.add(1);
                shared.counters.last_snapshot_unix_ns.set(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64),
                );
                self.pending = None;
                self.asked = false;
            }
        }
        if snapshot_every > 0 && !self.asked && persist.bytes_since_snapshot() >= snapshot_every {
            self.asked = shared.inbound.push(Request::Snapshot).is_ok();
        }
        Ok(())
    }
}

impl SnapshotStep {
    /// Writes market data's newest answer to a snapshot mark beside the
    /// snapshots (every answer, not only the last snapshot's: market data
    /// may lag more than a snapshot interval; the file side drops those
    /// whose snapshot is gone). A failure costs only start-up time
    /// (market data then starts from an older pair or the journal's
    /// start): logged, never fatal.
    fn write_feed(&mut self, persist: &mut dyn Persistence, shared: &Shared) {
        let Some((seq, answer)) = shared.feed.taken_since(self.feed_seen) else {
            return;
        };
        self.feed_seen = Some(seq);
        if let Some(bytes) = answer {
            if let Err(e) = persist.feed_checkpoint(seq, &bytes) {
                tracing::warn!(seq = seq.0, error = %e, "market-data checkpoint not written");
            }
        }
    }
}

/// Copies the persistence side's last disk-use measurement into the counters.
fn publish_disk_usage(persist: &dyn Persistence, shared: &Shared) {
    if let Some(u) = persist.disk_usage() {
        let c = &shared.counters;
        c.disk_journal_bytes.set(u.journal_bytes);
        c.disk_archive_bytes.set(u.archive_bytes);
        c.disk_snapshot_bytes.set(u.snapshot_bytes);
        c.retained_through_seq.set(u.retained_through_seq);
    }
}
