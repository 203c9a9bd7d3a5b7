//! The market-data hub's state (sans-IO): feed builders per partition,
//! replay rings, subscribers with their subscriptions, outgoing queues,
//! conflation and request budgets. Fed whole sequenced inputs
//! (`on_input`: the command and its events), asked by each subscriber's
//! connection task for its next write (`take`), told of requests
//! (`request`); the caller passes the time and is told whom to wake
//! through each subscriber's `Wake`.
//!
//! Shape: one `crate::FeedBuilder` per partition turns an input into
//! messages; each message is encoded once, kept in a bounded replay ring
//! per (instrument, channel) and its bytes appended to the queue of every
//! subscriber of that (instrument, channel). A subscriber's task takes its
//! whole queue in one piece (≤ `TAKE_MAX_BYTES`).
//!
//! Invariants: no I/O, no clock, no threads, no async runtime here. The
//! publisher never waits for a subscriber. A subscriber's queue is bounded
//! in bytes (`backlog_bytes`) and age (`backlog_age`); past the bound its
//! L1 / L2 updates are conflated (latest value wins, the `conflated` flag,
//! sequence jumps) until the queue drains; anything else past the bound
//! (L3, trades, status, or a full conflator) resets the subscriber: its
//! queue is dropped and fresh snapshots of all its subscriptions are owed,
//! built when its writer is free again (so a subscriber that reads nothing
//! costs the publisher no snapshot); one that does not come back for them
//! within `backlog_age`, or is reset more than `max_resets` times, is
//! closed with `SLOW_CONSUMER`. Inputs arrive whole, so every snapshot and
//! request is answered between inputs. Retransmissions come from a bounded
//! ring per (instrument, channel), found by subtraction (sequence numbers
//! are consecutive); retransmit and snapshot requests are charged to a
//! per-subscriber token bucket and refused with `THROTTLED` past it, so no
//! subscriber can make the publisher's thread do unbounded work. Every
//! subscriber connection that ends is counted under a `DisconnectReason`.
//! `channel_seq` is per partition (the per-instrument sequence is what
//! subscribers check). A partition's feed replaced from a checkpoint
//! (`restore_feed`: a Raft snapshot installed) leaves no replay ring and no
//! queued or conflated message of its instruments from before the jump:
//! their subscribers are owed snapshots exactly as after a reset, without
//! a reset counted against them.

mod queue;

use crate::control::{encode_ctl, md_close, Ctl};
use crate::msg::{Body, Channel, Flags, L3Update, Message, Snapshot};
use crate::{wire as fw, CheckpointError, FeedBuilder, FeedConfig, L2Conflator};
use engine::{Command, Event, InstrumentId, Seq};
use gateway::counters::DisconnectReason;
use gateway::session::Auth;
use queue::{Budget, Replay, SubQueue};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Market-data settings.
#[derive(Clone, Debug)]
pub struct MdConfig {
    /// Feed builder capacities (L2 depth included).
    pub feed: FeedConfig,
    /// Messages kept per (instrument, channel) for retransmission.
    pub replay: usize,
    /// Longest range one retransmit request is answered with; a longer
    /// gap gets a snapshot instead (cheaper for both sides).
    pub retransmit_max: u64,
    /// Retransmit and snapshot requests per second per subscriber (token
    /// bucket refill); a request over budget gets `THROTTLED`.
    pub requests_per_s: u32,
    /// Request budget size (burst) per subscriber.
    pub requests_burst: u32,
    /// A subscriber's queued bytes before it is treated as slow.
    pub backlog_bytes: usize,
    /// Age of a subscriber's oldest queued message before it is treated as slow.
    pub backlog_age: Duration,
    /// L2 levels a slow subscriber's conflator holds before a reset.
    pub conflate_capacity: usize,
    /// Resets before a slow subscriber is disconnected.
    pub max_resets: u32,
    /// Heartbeat interval (≤ 1 s).
    pub heartbeat: Duration,
    /// Most subscribers.
    pub max_subscribers: usize,
}

impl Default for MdConfig {
    fn default() -> Self {
        MdConfig {
            feed: FeedConfig {
                depth: 10,
                orders_max: 1 << 16,
                levels_max: 4096,
                instruments_max: 64,
                queue_max: 1 << 14,
            },
            replay: 8_192,
            retransmit_max: 1_024,
            requests_per_s: 20,
            requests_burst: 64,
            backlog_bytes: 4 << 20,
            backlog_age: Duration::from_secs(2),
            conflate_capacity: 1 << 14,
            max_resets: 3,
            heartbeat: Duration::from_millis(500),
            max_subscribers: 1024,
        }
    }
}

/// Subscriptions per subscriber connection.
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// Most bytes one `take` hands a connection task (one stream write).
pub const TAKE_MAX_BYTES: usize = 256 << 10;

/// (instrument, channel).
type Key = (u32, Channel);

/// Wakes a subscriber's connection task (its queue went from empty to not,
/// or a close was decided for it).
pub trait Wake {
    /// Called on the hub's thread; must not call back into the hub.
    fn wake(&self);
}

/// A subscriber's handle (its slot; reused after `remove_sub`).
pub type SubId = usize;

/// A close decided by the hub: code (`md_close`) and reason.
pub type Close = (u32, String);

/// A subscriber's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Req {
    /// Subscribe (answered with a snapshot, then live messages).
    Subscribe((u32, Channel)),
    /// A fresh snapshot.
    Snapshot((u32, Channel)),
    /// Retransmit `from..=to`.
    Retransmit((u32, Channel), u64, u64),
}

impl Req {
    /// The request a control record from a subscriber makes (`None`: a
    /// record subscribers may not send).
    pub fn from_ctl(c: &Ctl) -> Option<Req> {
        match *c {
            Ctl::Subscribe {
                instrument,
                channel,
            } => Some(Req::Subscribe((instrument, channel))),
            Ctl::Snapshot {
                instrument,
                channel,
            } => Some(Req::Snapshot((instrument, channel))),
            Ctl::Retransmit {
                instrument,
                channel,
                from,
                to,
            } => Some(Req::Retransmit((instrument, channel), from, to)),
            _ => None,
        }
    }
}

struct Sub {
    q: SubQueue,
    keys: Vec<Key>,
    /// Last `instrument_seq` queued per subscribed key (heartbeats vouch
    /// for it). A few keys per subscriber: a vector beats hashing, and this
    /// is updated for every message delivered.
    last: Vec<(Key, u64)>,
    l2: Option<L2Conflator>,
    l1: HashMap<u32, Message>,
    reset: bool,
    /// Reset done, snapshots owed: they are built when its writer is free
    /// again (`take`), not at the reset, so a stalled subscriber costs the
    /// publisher no snapshot it would never read. Since when (ns).
    owed_since: Option<u64>,
    resets: u32,
    close: Option<Close>,
    budget: Budget,
    wake: Rc<dyn Wake>,
}

impl Sub {
    /// Queues records, waking the task if its queue was empty (it waits
    /// for a wake only then: `take` always drains at least one record).
    fn deliver(&mut self, records: &[u8], now: u64) {
        if self.q.push(records, now) {
            self.wake.wake();
        }
    }

    fn close(&mut self, code: u32, why: &str) {
        self.close = Some((code, why.to_string()));
        self.wake.wake();
    }
}

/// Counters for tests and metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct MdStats {
    /// Messages published.
    pub messages: u64,
    /// Snapshots sent.
    pub snapshots: u64,
    /// Retransmissions answered from the ring.
    pub retransmits: u64,
    /// Subscriber resets (slow consumers).
    pub resets: u64,
    /// Subscribers disconnected as slow.
    pub slow_disconnects: u64,
    /// Conflated L1 / L2 messages sent.
    pub conflated: u64,
    /// Retransmit / snapshot requests refused by the request budget.
    pub throttled: u64,
    /// Subscriber connections ended, by `DisconnectReason` (its `as usize`).
    pub disconnects: [u64; DisconnectReason::ALL.len()],
}

/// The server side: feed builders, replay rings, subscribers.
pub struct MdHub {
    cfg: MdConfig,
    builders: Vec<FeedBuilder>,
    inst_part: HashMap<u32, usize>,
    replay: HashMap<Key, Replay>,
    /// Subscribers by slot (`SubId`); `None`: a free slot.
    subs: Vec<Option<Sub>>,
    free: Vec<SubId>,
    live: usize,
    by_key: HashMap<Key, Vec<SubId>>,
    auth: Arc<Auth>,
    scratch: Vec<Message>,
    enc: Vec<u8>,
    stats: MdStats,
    /// Some subscriber is marked for reset (avoids scanning them all per input).
    reset_pending: bool,
    /// Subscribers owing snapshots after a reset (usually none).
    owed: Vec<SubId>,
    /// The transport's per-hub state (the QUIC flusher), opaque here: the
    /// hub never calls it, it only keeps it with the hub it serves.
    pub(crate) transport: Option<Rc<dyn std::any::Any>>,
}

impl std::fmt::Debug for MdHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdHub")
            .field("subscribers", &self.live)
            .field("stats", &self.stats)
            .finish()
    }
}

impl MdHub {
    /// A hub for `partitions` partitions.
    pub fn new(cfg: MdConfig, partitions: usize, auth: Arc<Auth>) -> MdHub {
        let n = partitions.max(1);
        MdHub {
            builders: (0..n).map(|_| FeedBuilder::new(cfg.feed)).collect(),
            inst_part: HashMap::new(),
            replay: HashMap::new(),
            subs: Vec::new(),
            free: Vec::new(),
            live: 0,
            by_key: HashMap::new(),
            auth,
            scratch: Vec::with_capacity(1024),
            enc: Vec::with_capacity(256),
            stats: MdStats::default(),
            reset_pending: false,
            owed: Vec::new(),
            transport: None,
            cfg,
        }
    }

    /// The settings.
    pub fn config(&self) -> &MdConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> MdStats {
        self.stats
    }

    /// Number of connected subscribers.
    pub fn subscribers(&self) -> usize {
        self.live
    }

    /// Whether `token` may read market data.
    pub fn authorized(&self, token: &str) -> bool {
        self.auth.check(token).is_some_and(|g| g.perms.read)
    }

    /// One durable input of partition `p` (in sequence order): its command
    /// (`None` when unknown) and the events it produced. Its messages are
    /// published before this returns.
    pub fn on_input(
        &mut self,
        p: usize,
        seq: Seq,
        command: Option<&Command>,
        events: &[Event],
        now_ns: u64,
    ) {
        let Some(b) = self.builders.get_mut(p) else {
            return;
        };
        if let Some(Command::AddInstrument(spec)) = command {
            self.inst_part.insert(spec.id.0, p);
        }
        b.begin_input(seq, command);
        for e in events {
            b.handle_event(seq, e);
        }
        b.end_input(seq);
        self.publish(p, now_ns);
    }

    fn publish(&mut self, p: usize, now: u64) {
        let mut msgs = std::mem::take(&mut self.scratch);
        self.builders[p].drain_into(&mut msgs);
        for m in msgs.drain(..) {
            self.inst_part.entry(m.instrument.0).or_insert(p);
            self.enc.clear();
            fw::encode(&globalized(p, &m), &mut self.enc);
            self.stats.messages += 1;
            let key = (m.instrument.0, m.channel());
            // Keys are bounded: the builder refuses instruments past its capacity.
            self.replay.entry(key).or_default().push(
                self.cfg.replay,
                m.instrument_seq,
                Arc::from(&self.enc[..]),
            );
            let Some(ids) = self.by_key.get(&key) else {
                continue;
            };
            for &id in ids {
                if let Some(Some(s)) = self.subs.get_mut(id) {
                    if s.owed_since.is_none() {
                        self.reset_pending |= enqueue(&self.cfg, s, &m, &self.enc, now);
                    }
                }
            }
        }
        self.scratch = msgs;
        if !self.owed.is_empty() {
            // Snapshots are built by `take`: wake their writers (and close
            // those that stopped coming for them).
            let mut owed = std::mem::take(&mut self.owed);
            owed.retain(|&id| self.still_owed(id, now));
            self.owed = owed;
        }
        if self.reset_pending {
            self.reset_slow(now);
        }
    }

    /// Partition `p`'s feed checkpoint (`FeedBuilder::checkpoint`): its
    /// state after its last input, as bytes. Panics on a partition the hub
    /// does not have (a caller bug).
    pub fn feed_checkpoint(&self, p: usize) -> Vec<u8> {
        self.builder(p).checkpoint()
    }

    /// The last input partition `p`'s feed has published (0: none).
    pub fn last_seq(&self, p: usize) -> Seq {
        self.builder(p).last_seq()
    }

    fn builder(&self, p: usize) -> &FeedBuilder {
        let n = self.builders.len();
        self.builders
            .get(p)
            .unwrap_or_else(|| panic!("partition {p} of a hub with {n}"))
    }

    /// Replaces partition `p`'s feed with the one `bytes` (a feed
    /// checkpoint) describe: the partition's state jumped forward (a Raft
    /// snapshot was installed), so the replay rings of its instruments
    /// (old and new) are dropped, their messages no longer leading to the
    /// new sequence numbers, and every subscriber of one of them is owed
    /// fresh snapshots (as after a reset, without counting one against
    /// it). On error nothing changes.
    pub fn restore_feed(
        &mut self,
        p: usize,
        bytes: &[u8],
        now_ns: u64,
    ) -> Result<(), CheckpointError> {
        let b = FeedBuilder::from_checkpoint(self.cfg.feed, bytes)?;
        self.replace_builder(p, b, now_ns)
    }

    /// `restore_feed` with the builder already made (start-up seeding).
    pub(crate) fn replace_builder(
        &mut self,
        p: usize,
        b: FeedBuilder,
        now_ns: u64,
    ) -> Result<(), CheckpointError> {
        let _ = self.builder(p); // a partition the hub lacks is a caller bug
        for i in b.instruments() {
            match self.inst_part.get(&i.0) {
                Some(&owner) if owner != p => {
                    return Err(CheckpointError::OtherPartition {
                        instrument: i.0,
                        owner,
                        partition: p,
                    })
                }
                _ => {}
            }
        }
        let old = std::mem::replace(&mut self.builders[p], b);
        let mut insts: Vec<u32> = old.instruments().map(|i| i.0).collect();
        insts.extend(self.builders[p].instruments().map(|i| i.0));
        insts.sort_unstable();
        insts.dedup();
        let mut stale: Vec<SubId> = Vec::new();
        for &inst in &insts {
            self.inst_part.insert(inst, p);
            for c in Channel::ALL {
                self.replay.remove(&(inst, c));
                stale.extend(self.by_key.get(&(inst, c)).into_iter().flatten());
            }
        }
        stale.sort_unstable();
        stale.dedup();
        for id in stale {
            if self.subs[id].as_ref().is_some_and(|s| s.close.is_none()) {
                self.owe_snapshots(id, now_ns);
            }
        }
        Ok(())
    }

    fn partition_of(&self, inst: u32) -> usize {
        self.inst_part.get(&inst).copied().unwrap_or(0)
    }

    fn sub(&mut self, id: SubId) -> Option<&mut Sub> {
        self.subs.get_mut(id).and_then(Option::as_mut)
    }

    fn snapshot_bytes(&mut self, key: Key) -> Snapshot {
        let p = self.partition_of(key.0);
        let mut s = self.builders[p].snapshot(InstrumentId(key.0), key.1);
        for o in &mut s.orders {
            o.order_id = global_id(p, o.order_id);
        }
        self.enc.clear();
        fw::encode_snapshot(&s, &mut self.enc);
        self.stats.snapshots += 1;
        s
    }

    /// A subscriber's request, answered now (inputs arrive whole, so the
    /// builders are always between inputs here). Retransmit and snapshot
    /// requests are charged to its budget first.
    pub fn request(&mut self, id: SubId, req: Req, now_ns: u64) {
        if !self.admit(id, &req, now_ns) {
            return;
        }
        match req {
            Req::Subscribe(k) => self.subscribe(id, k, now_ns),
            Req::Snapshot(k) => self.send_snapshot(id, k, now_ns),
            Req::Retransmit(k, from, to) => {
                let small = to - from < self.cfg.retransmit_max;
                let held = match self.replay.get(&k).and_then(|r| r.range(from, to)) {
                    Some(msgs) if small => match self.subs.get_mut(id).and_then(Option::as_mut) {
                        Some(s) => {
                            for b in msgs {
                                s.deliver(b, now_ns);
                            }
                            true
                        }
                        None => return,
                    },
                    _ => false,
                };
                if held {
                    self.stats.retransmits += 1;
                } else {
                    // A large gap, or one the ring no longer holds.
                    self.send_snapshot(id, k, now_ns);
                }
            }
        }
    }

    fn subscribe(&mut self, id: SubId, k: Key, now: u64) {
        let Some(s) = self.sub(id) else {
            return;
        };
        if s.keys.contains(&k) {
            return;
        }
        if s.keys.len() >= MAX_SUBSCRIPTIONS {
            s.close(md_close::PROTOCOL, "too many subscriptions");
            return;
        }
        s.keys.push(k);
        self.by_key.entry(k).or_default().push(id);
        self.send_snapshot(id, k, now);
    }

    /// Slow subscribers marked for reset: drop their queue, owe snapshots
    /// of everything (or close those reset too often).
    fn reset_slow(&mut self, now: u64) {
        self.reset_pending = false;
        let max = self.cfg.max_resets;
        for id in 0..self.subs.len() {
            let Some(s) = self.subs[id].as_mut() else {
                continue;
            };
            if !s.reset || s.close.is_some() {
                continue;
            }
            self.stats.resets += 1;
            s.resets += 1;
            if s.resets > max {
                drop_queued(s);
                s.close(md_close::SLOW_CONSUMER, "slow consumer");
                self.stats.slow_disconnects += 1;
                continue;
            }
            self.owe_snapshots(id, now);
        }
    }

    /// Drops subscriber `id`'s queue and conflated state (nothing stale
    /// goes out after what replaces it) and owes it fresh snapshots of all
    /// its subscriptions, built by `take` when its writer is free. An owed
    /// subscriber keeps its first `owed_since` (the time it has to come
    /// back for them).
    fn owe_snapshots(&mut self, id: SubId, now: u64) {
        let Some(s) = self.subs.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        drop_queued(s);
        if s.owed_since.is_none() {
            s.owed_since = Some(now);
            self.owed.push(id);
        }
        s.wake.wake();
    }

    /// Whether subscriber `id` still owes snapshots (waking its writer if
    /// so); one whose writer has not come back for them within
    /// `backlog_age` is not reading at all, and is closed.
    fn still_owed(&mut self, id: SubId, now: u64) -> bool {
        let age_ns = self.cfg.backlog_age.as_nanos() as u64;
        let Some(s) = self.subs.get_mut(id).and_then(Option::as_mut) else {
            return false;
        };
        let Some(since) = s.owed_since else {
            return false;
        };
        if s.close.is_some() {
            return false;
        }
        if now.saturating_sub(since) > age_ns {
            s.close(md_close::SLOW_CONSUMER, "slow consumer");
            self.stats.slow_disconnects += 1;
            return false;
        }
        s.wake.wake();
        true
    }

    fn send_snapshot(&mut self, id: SubId, k: Key, now: u64) {
        if self.sub(id).is_none() {
            return;
        }
        let snap = self.snapshot_bytes(k);
        let s = self.subs[id].as_mut().expect("checked above");
        set_last(&mut s.last, k, snap.last_instrument_seq);
        s.deliver(&self.enc, now);
    }

    /// A new subscriber (`None`: `max_subscribers` reached).
    pub fn add_sub(&mut self, wake: Rc<dyn Wake>, now_ns: u64) -> Option<SubId> {
        if self.live >= self.cfg.max_subscribers {
            return None;
        }
        let sub = Sub {
            q: SubQueue::default(),
            keys: Vec::new(),
            last: Vec::new(),
            l2: None,
            l1: HashMap::new(),
            reset: false,
            owed_since: None,
            resets: 0,
            close: None,
            budget: Budget {
                tokens: self.cfg.requests_burst,
                refilled_ns: now_ns,
            },
            wake,
        };
        self.live += 1;
        Some(match self.free.pop() {
            Some(id) => {
                self.subs[id] = Some(sub);
                id
            }
            None => {
                self.subs.push(Some(sub));
                self.subs.len() - 1
            }
        })
    }

    /// Charges a retransmit or snapshot request to subscriber `id`'s
    /// budget; false (and a `THROTTLED` record queued) when it is spent.
    /// Subscribing is not charged: it is bounded by `MAX_SUBSCRIPTIONS`
    /// and idempotent.
    fn admit(&mut self, id: SubId, req: &Req, now: u64) -> bool {
        let key = match req {
            Req::Subscribe(_) => return true,
            Req::Snapshot(k) | Req::Retransmit(k, _, _) => *k,
        };
        let (per_s, burst) = (u64::from(self.cfg.requests_per_s), self.cfg.requests_burst);
        if per_s == 0 {
            return true;
        }
        let Some(s) = self.subs.get_mut(id).and_then(Option::as_mut) else {
            return false;
        };
        let b = &mut s.budget;
        let earned = now.saturating_sub(b.refilled_ns).saturating_mul(per_s) / 1_000_000_000;
        if earned > 0 {
            b.tokens = u64::from(b.tokens)
                .saturating_add(earned)
                .min(u64::from(burst)) as u32;
            // Keep the fraction of a token already earned.
            b.refilled_ns += earned * 1_000_000_000 / per_s;
        }
        if b.tokens > 0 {
            b.tokens -= 1;
            return true;
        }
        let next_ns = b.refilled_ns + 1_000_000_000 / per_s;
        let retry_after_ms = next_ns.saturating_sub(now).div_ceil(1_000_000).max(1) as u32;
        let mut rec = Vec::with_capacity(24);
        encode_ctl(
            &Ctl::Throttled {
                instrument: key.0,
                channel: key.1,
                retry_after_ms,
            },
            &mut rec,
        );
        s.deliver(&rec, now);
        self.stats.throttled += 1;
        false
    }

    /// The close the hub decided for subscriber `id`, if any.
    pub fn close_of(&self, id: SubId) -> Option<Close> {
        self.subs.get(id)?.as_ref()?.close.clone()
    }

    /// Counts a subscriber connection that ended.
    pub fn ended(&mut self, why: DisconnectReason) {
        self.stats.disconnects[why as usize] += 1;
    }

    /// Forgets subscriber `id` (its connection ended); its slot is reused.
    pub fn remove_sub(&mut self, id: SubId) {
        let Some(s) = self.subs.get_mut(id).and_then(Option::take) else {
            return;
        };
        for k in s.keys {
            if let Some(v) = self.by_key.get_mut(&k) {
                v.retain(|&x| x != id);
                if v.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
        self.owed.retain(|&x| x != id);
        self.free.push(id);
        self.live -= 1;
    }

    /// Takes up to `max` queued bytes of subscriber `id` into `out` (one
    /// write): first any snapshots it is owed, then its conflated state
    /// once its queue is empty, then heartbeats when `heartbeat` is set.
    /// `Err` carries a close.
    pub fn take(
        &mut self,
        id: SubId,
        out: &mut Vec<u8>,
        max: usize,
        heartbeat: bool,
        now_ns: u64,
    ) -> Result<(), Close> {
        let owed = match self.subs.get_mut(id).and_then(Option::as_mut) {
            None => return Err((md_close::NORMAL, String::new())),
            Some(s) => {
                if let Some(c) = &s.close {
                    return Err(c.clone());
                }
                s.owed_since.take().map(|_| s.keys.clone())
            }
        };
        for k in owed.into_iter().flatten() {
            self.send_snapshot(id, k, now_ns);
        }
        let s = self.subs[id].as_mut().expect("checked above");
        if s.q.is_empty() && !s.reset && (s.l2.is_some() || !s.l1.is_empty()) {
            self.stats.conflated += drain_conflated(s, &mut self.enc, now_ns);
        }
        if heartbeat {
            queue_heartbeats(s, now_ns);
        }
        s.q.take_into(out, max);
        Ok(())
    }
}

/// A caught-up subscriber's conflated state goes out (it is live again
/// after it); returns the messages queued.
fn drain_conflated(s: &mut Sub, enc: &mut Vec<u8>, now: u64) -> u64 {
    let mut msgs = Vec::new();
    if let Some(mut c) = s.l2.take() {
        c.drain_into(&mut msgs);
    }
    let mut l1: Vec<Message> = s.l1.drain().map(|(_, m)| m).collect();
    l1.sort_by_key(|m| m.channel_seq);
    msgs.extend(l1);
    for m in &msgs {
        enc.clear();
        fw::encode(m, enc);
        set_last(&mut s.last, (m.instrument.0, m.channel()), m.instrument_seq);
        s.q.push(enc, now);
    }
    msgs.len() as u64
}

/// Drops everything queued for a subscriber, conflated state included.
fn drop_queued(s: &mut Sub) {
    s.q.clear();
    s.l2 = None;
    s.l1.clear();
    s.reset = false;
}

/// Queues one heartbeat per subscription, behind what it vouches for, so
/// it goes out even under load.
fn queue_heartbeats(s: &mut Sub, now: u64) {
    let mut hb = Vec::with_capacity(24 * s.keys.len());
    for k in &s.keys {
        let last = s.last.iter().find(|(x, _)| x == k).map_or(0, |&(_, l)| l);
        encode_ctl(
            &Ctl::Heartbeat {
                instrument: k.0,
                channel: k.1,
                last,
            },
            &mut hb,
        );
    }
    if !hb.is_empty() {
        s.q.push(&hb, now);
    }
}

/// A partition-local order id as clients know it (execution reports, cancels).
fn global_id(p: usize, id: u64) -> u64 {
    runtime::globalize(p, engine::OrderId(id)).0
}

/// `m` with its order ids global: the builders work in partition-local ids
/// (they follow one engine each), subscribers see the ids execution reports
/// carry. Partition 0's ids are already global.
fn globalized(p: usize, m: &Message) -> Message {
    let mut m = *m;
    if p == 0 {
        return m;
    }
    match &mut m.body {
        Body::L3(
            L3Update::Add { order_id, .. }
            | L3Update::Execute { order_id, .. }
            | L3Update::Reduce { order_id, .. }
            | L3Update::Delete { order_id, .. }
            | L3Update::Replace { order_id, .. },
        ) => *order_id = global_id(p, *order_id),
        Body::Trade(t) => {
            t.maker_order_id = global_id(p, t.maker_order_id);
            t.taker_order_id = global_id(p, t.taker_order_id);
        }
        _ => {}
    }
    m
}

fn set_last(last: &mut Vec<(Key, u64)>, key: Key, seq: u64) {
    match last.iter_mut().find(|(k, _)| *k == key) {
        Some((_, l)) => *l = seq,
        None => last.push((key, seq)),
    }
}

/// Appends one published message (`m`, encoded as `b`) to a subscriber,
/// applying the bounds; true when it marked the subscriber for a reset.
fn enqueue(cfg: &MdConfig, s: &mut Sub, m: &Message, b: &[u8], now: u64) -> bool {
    if s.close.is_some() || s.reset {
        return false; // the reset's snapshots will include it
    }
    let over =
        s.q.bytes() >= cfg.backlog_bytes || s.q.age_ns(now) > cfg.backlog_age.as_nanos() as u64;
    match m.channel() {
        Channel::L2 if over || s.l2.is_some() => {
            let c =
                s.l2.get_or_insert_with(|| L2Conflator::new(cfg.conflate_capacity));
            if c.push(m).is_err() {
                s.reset = true;
            }
            s.reset
        }
        Channel::L1 if over || !s.l1.is_empty() => {
            let mut c = *m;
            c.flags = Flags(c.flags.0 | Flags::CONFLATED);
            s.l1.insert(m.instrument.0, c);
            false
        }
        _ if over => {
            s.reset = true;
            true
        }
        _ => {
            set_last(&mut s.last, (m.instrument.0, m.channel()), m.instrument_seq);
            s.deliver(b, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{decode_ctl, decode_item, MdItem};
    use engine::{ClientOrderId, OrderId, OwnerId, Price, Qty, Side};
    use std::cell::Cell;

    struct NoWake;
    impl Wake for NoWake {
        fn wake(&self) {}
    }

    fn hub(per_s: u32, burst: u32) -> (MdHub, SubId) {
        let cfg = MdConfig {
            requests_per_s: per_s,
            requests_burst: burst,
            ..MdConfig::default()
        };
        let mut h = MdHub::new(cfg, 1, Arc::new(Auth::default()));
        let id = h.add_sub(Rc::new(NoWake), 0).unwrap();
        (h, id)
    }

    fn queued(h: &MdHub, id: SubId) -> Vec<&[u8]> {
        h.subs[id].as_ref().unwrap().q.records().collect()
    }

    fn queued_throttles(h: &MdHub, id: SubId) -> usize {
        queued(h, id)
            .iter()
            .filter(|b| {
                matches!(
                    decode_ctl(b),
                    Ok(Some((Ctl::Throttled { instrument: 1, .. }, _)))
                )
            })
            .count()
    }

    #[test]
    fn requests_over_the_budget_are_throttled_with_a_retry_time() {
        let (mut h, id) = hub(10, 3);
        let t0 = 5_000_000_000;
        h.sub(id).unwrap().budget.refilled_ns = t0;
        let snap = Req::Snapshot((1, Channel::L2));
        let admitted = (0..5).filter(|_| h.admit(id, &snap, t0)).count();
        assert_eq!(admitted, 3, "the burst");
        assert_eq!(queued_throttles(&h, id), 2);
        assert_eq!(h.stats().throttled, 2);
        let b = *queued(&h, id).last().unwrap();
        let Ok(Some((Ctl::Throttled { retry_after_ms, .. }, _))) = decode_ctl(b) else {
            panic!("a throttled record");
        };
        assert_eq!(retry_after_ms, 100);
        // Subscribing is never charged.
        assert!(h.admit(id, &Req::Subscribe((1, Channel::L3)), t0));
        // The bucket refills at 10/s: one token after 100 ms, not before.
        assert!(!h.admit(id, &snap, t0 + 99_000_000));
        assert!(h.admit(id, &snap, t0 + 100_000_000));
        assert!(!h.admit(id, &snap, t0 + 150_000_000));
        // A long pause refills to the burst, no further.
        let later = t0 + 60_000_000_000;
        assert_eq!((0..10).filter(|_| h.admit(id, &snap, later)).count(), 3);
        // 0 per second: no budget at all.
        let (mut h, id) = hub(0, 0);
        assert!((0..100).all(|_| h.admit(id, &snap, t0)));
    }

    /// Counts its wakes.
    #[derive(Default)]
    struct Wakes(Cell<u32>);
    impl Wake for Wakes {
        fn wake(&self) {
            self.0.set(self.0.get() + 1);
        }
    }

    /// The event of a buy order `i` resting at `1000 - i` for `i` lots.
    fn rests(i: u64) -> Event {
        Event::Accepted {
            order_id: OrderId(i),
            client_order_id: ClientOrderId(i),
            owner: OwnerId(1),
            instrument: InstrumentId(1),
            side: Side::Buy,
            price: Some(Price(1000 - i)),
            qty: Qty(i),
        }
    }

    /// Everything `take` hands over, decoded.
    fn taken(h: &mut MdHub, id: SubId) -> Vec<MdItem> {
        let mut out = Vec::new();
        h.take(id, &mut out, TAKE_MAX_BYTES, false, 0).unwrap();
        let (mut items, mut at) = (Vec::new(), 0);
        while let Some((item, n)) = decode_item(&out[at..]).unwrap() {
            items.push(item);
            at += n;
        }
        assert_eq!(at, out.len());
        items
    }

    fn l3_seqs(items: &[MdItem]) -> Vec<u64> {
        items
            .iter()
            .filter_map(|i| match i {
                MdItem::Message(m) => Some(m.instrument_seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn inputs_in_records_out_and_a_reader_that_never_takes_is_reset() {
        let cfg = MdConfig {
            backlog_bytes: 4 << 10,
            ..MdConfig::default()
        };
        let mut h = MdHub::new(cfg, 1, Arc::new(Auth::default()));
        h.on_input(0, Seq(1), None, &[rests(1)], 0);
        let wakes = Rc::new(Wakes::default());
        let id = h.add_sub(wakes.clone(), 0).unwrap();
        h.request(id, Req::Subscribe((1, Channel::L3)), 0);
        for i in 2..=4 {
            h.on_input(0, Seq(i), None, &[rests(i)], 0);
        }
        let items = taken(&mut h, id);
        let MdItem::Snapshot(s) = &items[0] else {
            panic!("a snapshot first: {items:?}");
        };
        assert_eq!((s.last_instrument_seq, s.orders.len()), (1, 1));
        assert_eq!(l3_seqs(&items), vec![2, 3, 4], "then every add, in order");
        assert_eq!(wakes.0.get(), 1, "one wake for the whole batch");
        // Never taken again: past 4 KiB it is reset, its queue dropped.
        for i in 5..=200 {
            h.on_input(0, Seq(i), None, &[rests(i)], 0);
        }
        assert_eq!(h.stats().resets, 1);
        // What it gets when it comes back: one fresh snapshot, nothing stale.
        let items = taken(&mut h, id);
        let [MdItem::Snapshot(s)] = &items[..] else {
            panic!("only a snapshot: {items:?}");
        };
        assert_eq!((s.last_instrument_seq, s.orders.len()), (200, 200));
        // Live again.
        h.on_input(0, Seq(201), None, &[rests(201)], 0);
        assert_eq!(l3_seqs(&taken(&mut h, id)), vec![201]);
    }

    /// Feeds `b` the inputs `from..=to`, each resting `rests(i)`.
    fn feed_rests(b: &mut FeedBuilder, from: u64, to: u64) {
        for i in from..=to {
            b.begin_input(Seq(i), None);
            b.handle_event(Seq(i), &rests(i));
            b.end_input(Seq(i));
            b.drain_into(&mut Vec::new());
        }
    }

    #[test]
    fn a_restored_feed_owes_its_subscribers_snapshots_with_the_new_sequences() {
        let mut h = MdHub::new(MdConfig::default(), 1, Arc::new(Auth::default()));
        // The leader's feed, further along.
        let mut leader = FeedBuilder::new(h.config().feed);
        feed_rests(&mut leader, 1, 10);
        let ckpt = leader.checkpoint();
        for i in 1..=3 {
            h.on_input(0, Seq(i), None, &[rests(i)], 0);
        }
        let wakes = Rc::new(Wakes::default());
        let id = h.add_sub(wakes.clone(), 0).unwrap();
        h.request(id, Req::Subscribe((1, Channel::L3)), 0);
        let items = taken(&mut h, id);
        assert!(matches!(&items[..], [MdItem::Snapshot(s)] if s.last_instrument_seq == 3));
        // Queued, not taken: stale once the feed jumps.
        h.on_input(0, Seq(4), None, &[rests(4)], 0);
        // Bad bytes change nothing.
        let err = h.restore_feed(0, &ckpt[..ckpt.len() - 1], 5).unwrap_err();
        assert!(matches!(err, CheckpointError::Decode(_)), "{err}");
        assert_eq!((h.last_seq(0), h.owed.len()), (Seq(4), 0));
        let woken = wakes.0.get();
        h.restore_feed(0, &ckpt, 5).unwrap();
        assert_eq!(h.last_seq(0), Seq(10));
        assert_eq!(h.feed_checkpoint(0), ckpt);
        assert_eq!(h.owed, vec![id]);
        assert!(wakes.0.get() > woken, "its writer is woken");
        assert_eq!(h.stats().resets, 0, "not counted against it");
        // One fresh snapshot at the new sequence, nothing stale before it.
        let items = taken(&mut h, id);
        let [MdItem::Snapshot(s)] = &items[..] else {
            panic!("only a snapshot: {items:?}");
        };
        assert_eq!((s.last_instrument_seq, s.orders.len()), (10, 10));
        assert_eq!(s.engine_seq, Seq(10));
        // The old messages left the replay ring: a retransmit gets a snapshot.
        h.request(id, Req::Retransmit((1, Channel::L3), 2, 3), 6);
        assert!(
            matches!(&taken(&mut h, id)[..], [MdItem::Snapshot(s)] if s.last_instrument_seq == 10)
        );
        assert_eq!(h.stats().retransmits, 0);
        // Live again, from the new sequence.
        h.on_input(0, Seq(11), None, &[rests(11)], 0);
        assert_eq!(l3_seqs(&taken(&mut h, id)), vec![11]);
        h.request(id, Req::Retransmit((1, Channel::L3), 11, 11), 7);
        assert_eq!(l3_seqs(&taken(&mut h, id)), vec![11]);
    }

    #[test]
    fn a_feed_restored_into_the_wrong_partition_is_refused() {
        let mut h = MdHub::new(MdConfig::default(), 2, Arc::new(Auth::default()));
        h.on_input(0, Seq(1), None, &[rests(1)], 0);
        let mut other = FeedBuilder::new(h.config().feed);
        feed_rests(&mut other, 1, 2);
        let err = h.restore_feed(1, &other.checkpoint(), 0).unwrap_err();
        assert!(matches!(
            err,
            CheckpointError::OtherPartition {
                instrument: 1,
                owner: 0,
                partition: 1
            }
        ));
        assert_eq!(h.last_seq(1), Seq(0));
    }
}
