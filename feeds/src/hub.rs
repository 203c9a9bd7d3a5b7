//! Market data over QUIC (`bourse-md/1`, feeds/PROTOCOL.md "Transport"):
//! the server-side hub the order-entry server's router feeds, the
//! per-subscriber connection task, the control records, and a client.
//!
//! Shape: market data's own task reads every durable input through its own
//! output cursor (`gateway::server::COMPANION_CURSOR`, woken by the
//! partitions' doorbells) and hands it to `MdHub::on_output`; one
//! `crate::FeedBuilder` per partition turns them into messages; at the end
//! of each input every new message is encoded once into an `Arc<[u8]>`,
//! kept in a bounded replay ring per channel and appended to the outgoing
//! queue of every subscriber of its (instrument, channel). One task per
//! subscriber connection coalesces its queue into one write per flush
//! (≤ 256 KiB), sends heartbeats (last `instrument_seq` queued per
//! subscription) every `heartbeat`, and reads requests.
//!
//! Invariants: the publisher never waits for a subscriber. A subscriber's
//! queue is bounded in bytes (`backlog_bytes`) and age (`backlog_age`); past
//! the bound its L1 / L2 updates are conflated (latest value wins, the
//! `conflated` flag, sequence jumps) until the queue drains; anything else
//! past the bound (L3, trades, status, or a full conflator) resets the
//! subscriber: its queue is dropped and fresh snapshots of all its
//! subscriptions are owed, built when its writer is free again (so a
//! subscriber that reads nothing costs the publisher no snapshot); one that
//! does not come back for them within `backlog_age`, or is reset more than
//! `max_resets` times, is disconnected with `SLOW_CONSUMER`. Snapshots are taken only between inputs of the
//! partition holding the instrument (requests wait for that in `pending`).
//! Garbage from a subscriber gets an `ERROR` record and a close.
//! Retransmissions come from a bounded ring per (instrument, channel),
//! found by subtraction (sequence numbers are consecutive); retransmit and
//! snapshot requests are charged to a per-subscriber token bucket and
//! refused with `THROTTLED` past it, so no subscriber can make the
//! publisher's thread do unbounded work. Every subscriber connection that
//! ends is counted under a `DisconnectReason`.
//!
//! After a restart the server rebuilds the builders from the journal
//! (`seed_from_journal`) before accepting subscribers. `channel_seq` is per
//! partition (the per-instrument sequence is what subscribers check).

use crate::msg::{Body, Channel, Flags, L3Update, Message, Quote, Snapshot, TradeMsg};
use crate::{wire as fw, BookBuilder, FeedBuilder, FeedConfig, L2Conflator, Need};
use engine::{Command, Event, InstrumentId, Seq};
use gateway::counters::DisconnectReason;
use gateway::net::{self, Tuning};
use gateway::session::Auth;
use runtime::OutputReader;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Control record templates (schema 2, beside the feed records).
pub mod ctl_template {
    /// Client → server: authenticate (64-byte zero-padded token).
    pub const AUTH: u16 = 30;
    /// Client → server: subscribe to (instrument, channel).
    pub const SUBSCRIBE: u16 = 31;
    /// Client → server: retransmit `from..=to` of (instrument, channel).
    pub const RETRANSMIT: u16 = 32;
    /// Client → server: a fresh snapshot of (instrument, channel).
    pub const SNAPSHOT: u16 = 33;
    /// Server → client: the last `instrument_seq` queued for (instrument, channel).
    pub const HEARTBEAT: u16 = 40;
    /// Server → client: an error code; the connection closes after it.
    pub const ERROR: u16 = 41;
    /// Server → client: a retransmit or snapshot request was over the
    /// subscriber's request budget and was not served; ask again after
    /// `retry_after_ms`.
    pub const THROTTLED: u16 = 42;
}

/// Close / error codes.
pub mod md_close {
    /// Orderly.
    pub const NORMAL: u32 = 0;
    /// Unknown token or no `read` permission.
    pub const UNAUTHORIZED: u32 = 1;
    /// Malformed or unexpected record.
    pub const PROTOCOL: u32 = 2;
    /// Could not keep up even after resets.
    pub const SLOW_CONSUMER: u32 = 3;
    /// Too many subscribers.
    pub const FULL: u32 = 4;
}

/// A control record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ctl {
    /// Authenticate.
    Auth(String),
    /// Subscribe.
    Subscribe {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
    },
    /// Retransmit (inclusive range).
    Retransmit {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
        /// First.
        from: u64,
        /// Last.
        to: u64,
    },
    /// Snapshot request.
    Snapshot {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
    },
    /// Heartbeat with the last sequence queued.
    Heartbeat {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
        /// Last `instrument_seq` queued.
        last: u64,
    },
    /// Error (the connection closes after it).
    Error(u32),
    /// A request for (instrument, channel) was refused by the request budget.
    Throttled {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
        /// When the budget has room again (milliseconds).
        retry_after_ms: u32,
    },
}

const TOKEN_LEN: usize = 64;

fn put_header(out: &mut Vec<u8>, len: usize, template: u16) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&template.to_le_bytes());
    out.push(fw::SCHEMA);
    out.push(fw::VERSION);
}

fn put_key(out: &mut Vec<u8>, instrument: u32, channel: Channel) {
    out.extend_from_slice(&instrument.to_le_bytes());
    out.push(channel as u8);
    out.extend_from_slice(&[0; 3]);
}

/// Appends a control record.
pub fn encode_ctl(c: &Ctl, out: &mut Vec<u8>) {
    use ctl_template as t;
    match c {
        Ctl::Auth(tok) => {
            put_header(out, 8 + TOKEN_LEN, t::AUTH);
            let mut b = [0u8; TOKEN_LEN];
            let n = tok.len().min(TOKEN_LEN);
            b[..n].copy_from_slice(&tok.as_bytes()[..n]);
            out.extend_from_slice(&b);
        }
        Ctl::Subscribe {
            instrument,
            channel,
        } => {
            put_header(out, 16, t::SUBSCRIBE);
            put_key(out, *instrument, *channel);
        }
        Ctl::Snapshot {
            instrument,
            channel,
        } => {
            put_header(out, 16, t::SNAPSHOT);
            put_key(out, *instrument, *channel);
        }
        Ctl::Retransmit {
            instrument,
            channel,
            from,
            to,
        } => {
            put_header(out, 32, t::RETRANSMIT);
            put_key(out, *instrument, *channel);
            out.extend_from_slice(&from.to_le_bytes());
            out.extend_from_slice(&to.to_le_bytes());
        }
        Ctl::Heartbeat {
            instrument,
            channel,
            last,
        } => {
            put_header(out, 24, t::HEARTBEAT);
            put_key(out, *instrument, *channel);
            out.extend_from_slice(&last.to_le_bytes());
        }
        Ctl::Error(code) => {
            put_header(out, 16, t::ERROR);
            out.extend_from_slice(&code.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
        }
        Ctl::Throttled {
            instrument,
            channel,
            retry_after_ms,
        } => {
            put_header(out, 24, t::THROTTLED);
            put_key(out, *instrument, *channel);
            out.extend_from_slice(&retry_after_ms.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
        }
    }
}

/// A malformed control record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed market-data record")]
pub struct Malformed;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// Decodes a control record at the start of `buf`: `Ok(None)` while
/// incomplete, else the record and its length.
pub fn decode_ctl(buf: &[u8]) -> Result<Option<(Ctl, usize)>, Malformed> {
    use ctl_template as t;
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = u32_at(buf, 0) as usize;
    let template = u16::from_le_bytes([buf[4], buf[5]]);
    if buf[6] != fw::SCHEMA || buf[7] != fw::VERSION {
        return Err(Malformed);
    }
    let want = match template {
        t::AUTH => 8 + TOKEN_LEN,
        t::SUBSCRIBE | t::SNAPSHOT | t::ERROR => 16,
        t::RETRANSMIT => 32,
        t::HEARTBEAT | t::THROTTLED => 24,
        _ => return Err(Malformed),
    };
    if len != want {
        return Err(Malformed);
    }
    if buf.len() < len {
        return Ok(None);
    }
    let b = &buf[..len];
    let key = || -> Result<(u32, Channel), Malformed> {
        if b[13..16] != [0; 3] {
            return Err(Malformed);
        }
        Ok((u32_at(b, 8), Channel::from_code(b[12]).ok_or(Malformed)?))
    };
    let c = match template {
        t::AUTH => {
            let raw = &b[8..];
            let n = raw.iter().position(|&x| x == 0).unwrap_or(TOKEN_LEN);
            if raw[n..].iter().any(|&x| x != 0) {
                return Err(Malformed);
            }
            Ctl::Auth(
                std::str::from_utf8(&raw[..n])
                    .map_err(|_| Malformed)?
                    .to_string(),
            )
        }
        t::SUBSCRIBE => {
            let (instrument, channel) = key()?;
            Ctl::Subscribe {
                instrument,
                channel,
            }
        }
        t::SNAPSHOT => {
            let (instrument, channel) = key()?;
            Ctl::Snapshot {
                instrument,
                channel,
            }
        }
        t::RETRANSMIT => {
            let (instrument, channel) = key()?;
            let (from, to) = (u64_at(b, 16), u64_at(b, 24));
            if from == 0 || to < from {
                return Err(Malformed);
            }
            Ctl::Retransmit {
                instrument,
                channel,
                from,
                to,
            }
        }
        t::HEARTBEAT => {
            let (instrument, channel) = key()?;
            Ctl::Heartbeat {
                instrument,
                channel,
                last: u64_at(b, 16),
            }
        }
        t::THROTTLED => {
            let (instrument, channel) = key()?;
            if b[20..24] != [0; 4] {
                return Err(Malformed);
            }
            Ctl::Throttled {
                instrument,
                channel,
                retry_after_ms: u32_at(b, 16),
            }
        }
        _ => {
            if b[12..16] != [0; 4] {
                return Err(Malformed);
            }
            Ctl::Error(u32_at(b, 8))
        }
    };
    Ok(Some((c, len)))
}

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

type Key = (u32, Channel);

/// Subscriptions per subscriber connection.
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// The replay ring of one (instrument, channel): the last `replay`
/// messages as (instrument_seq, encoded record), oldest first. Sequence
/// numbers are consecutive, so a range is found by subtraction.
#[derive(Default)]
struct Replay {
    q: VecDeque<(u64, Arc<[u8]>)>,
}

impl Replay {
    fn push(&mut self, max: usize, seq: u64, b: Arc<[u8]>) {
        if self.q.len() >= max.max(1) {
            self.q.pop_front();
        }
        self.q.push_back((seq, b));
    }

    /// `from..=to`, if every one of them is still held.
    fn range(&self, from: u64, to: u64) -> Option<impl Iterator<Item = &Arc<[u8]>> + '_> {
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

/// A subscriber's request budget (token bucket over retransmit and
/// snapshot requests).
struct Budget {
    tokens: u32,
    refilled_ns: u64,
}

struct Sub {
    q: VecDeque<(u64, Arc<[u8]>)>,
    q_bytes: usize,
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
    close: Option<(u32, String)>,
    budget: Budget,
    wake: Rc<Notify>,
}

enum Req {
    Subscribe(Key),
    Snapshot(Key),
    Retransmit(Key, u64, u64),
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
    mid_input: Vec<bool>,
    inst_part: HashMap<u32, usize>,
    replay: HashMap<Key, Replay>,
    subs: HashMap<u64, Sub>,
    by_key: HashMap<Key, Vec<u64>>,
    pending: VecDeque<(u64, Req)>,
    next_id: u64,
    auth: Arc<Auth>,
    epoch: Instant,
    scratch: Vec<Message>,
    enc: Vec<u8>,
    stats: MdStats,
    /// Some subscriber is marked for reset (avoids scanning them all per input).
    reset_pending: bool,
    /// Subscribers owing snapshots after a reset (usually none).
    owed: Vec<u64>,
}

impl std::fmt::Debug for MdHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdHub")
            .field("subscribers", &self.subs.len())
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
            mid_input: vec![false; n],
            inst_part: HashMap::new(),
            replay: HashMap::new(),
            subs: HashMap::new(),
            by_key: HashMap::new(),
            pending: VecDeque::new(),
            next_id: 1,
            auth,
            epoch: Instant::now(),
            scratch: Vec::with_capacity(1024),
            enc: Vec::with_capacity(256),
            stats: MdStats::default(),
            reset_pending: false,
            owed: Vec::new(),
            cfg,
        }
    }

    /// Counters.
    pub fn stats(&self) -> MdStats {
        self.stats
    }

    /// Number of connected subscribers.
    pub fn subscribers(&self) -> usize {
        self.subs.len()
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// One durable input of partition `p` and its events (in order).
    pub fn on_output(&mut self, p: usize, seq: Seq, command: &Command, events: &[Event]) {
        let Some(b) = self.builders.get_mut(p) else {
            return;
        };
        if let Command::AddInstrument(spec) = command {
            self.inst_part.insert(spec.id.0, p);
        }
        b.begin_input(seq, Some(command));
        self.mid_input[p] = true;
        for ev in events {
            b.handle_event(seq, ev);
        }
        b.end_input(seq);
        self.mid_input[p] = false;
        self.publish(p);
    }

    /// Rebuilds partition `p`'s market data from its journal (after a
    /// restart the books must include everything that happened before):
    /// every journaled input is applied to a scratch engine and its events
    /// go through the builder as live outputs would. Returns the inputs
    /// replayed. Only inputs up to `up_to` (the recovered sequence) are
    /// replayed: later ones are still in the output ring. Nobody is
    /// subscribed yet, so nothing is sent; sequence numbers continue from
    /// history.
    pub fn seed_from_journal(
        &mut self,
        p: usize,
        dir: &std::path::Path,
        cfg: engine::EngineConfig,
        up_to: u64,
    ) -> Result<u64, journal::JournalError> {
        let mut eng = engine::Engine::new(cfg);
        let mut events = eng.new_events();
        let mut n = 0u64;
        journal::scan(&journal::FsStorage, dir, |_, _, _, records| {
            for r in records {
                let Ok(input) = journal::record::decode(r) else {
                    // Damaged records are caught by recovery before this runs.
                    continue;
                };
                // Later inputs (applied since start-up) arrive as live outputs.
                if input.seq.0 > up_to {
                    return Ok(());
                }
                eng.apply(&input, &mut events);
                self.on_output(p, input.seq, &input.command, events.iter().as_slice());
                n += 1;
            }
            Ok(())
        })?;
        Ok(n)
    }

    fn publish(&mut self, p: usize) {
        let mut msgs = std::mem::take(&mut self.scratch);
        self.builders[p].drain_into(&mut msgs);
        let now = self.now_ns();
        for m in msgs.drain(..) {
            self.inst_part.entry(m.instrument.0).or_insert(p);
            self.enc.clear();
            fw::encode(&globalized(p, &m), &mut self.enc);
            let bytes: Arc<[u8]> = Arc::from(&self.enc[..]);
            self.stats.messages += 1;
            let ch = m.channel();
            let key = (m.instrument.0, ch);
            // Keys are bounded: the builder refuses instruments past its capacity.
            self.replay.entry(key).or_default().push(
                self.cfg.replay,
                m.instrument_seq,
                bytes.clone(),
            );
            let Some(ids) = self.by_key.get(&key) else {
                continue;
            };
            for id in ids {
                if let Some(s) = self.subs.get_mut(id) {
                    if s.owed_since.is_none() {
                        self.reset_pending |= enqueue(&self.cfg, s, &m, &bytes, now);
                    }
                }
            }
        }
        self.scratch = msgs;
        if !self.owed.is_empty() {
            // Snapshots wait for inputs to end: wake their writers now.
            let mut owed = std::mem::take(&mut self.owed);
            owed.retain(|&id| {
                let owed = self.still_owed(id, now);
                if let Some(s) = self.subs.get(&id) {
                    s.wake.notify_one();
                }
                owed && self.subs.get(&id).is_some_and(|s| s.close.is_none())
            });
            self.owed = owed;
        }
        if self.reset_pending || !self.pending.is_empty() {
            self.service();
        }
    }

    fn partition_of(&self, inst: u32) -> usize {
        self.inst_part.get(&inst).copied().unwrap_or(0)
    }

    fn snapshot_bytes(&mut self, key: Key) -> (Snapshot, Arc<[u8]>) {
        let p = self.partition_of(key.0);
        let mut s = self.builders[p].snapshot(InstrumentId(key.0), key.1);
        for o in &mut s.orders {
            o.order_id = global_id(p, o.order_id);
        }
        self.enc.clear();
        fw::encode_snapshot(&s, &mut self.enc);
        self.stats.snapshots += 1;
        (s, Arc::from(&self.enc[..]))
    }

    /// Serves waiting requests and resets whose partitions are between inputs.
    pub fn service(&mut self) {
        let now = self.now_ns();
        let mut left = VecDeque::new();
        while let Some((id, req)) = self.pending.pop_front() {
            let key = match &req {
                Req::Subscribe(k) | Req::Snapshot(k) | Req::Retransmit(k, _, _) => *k,
            };
            if self.mid_input[self.partition_of(key.0)] {
                left.push_back((id, req));
                continue;
            }
            if !self.subs.contains_key(&id) {
                continue;
            }
            match req {
                Req::Subscribe(k) => {
                    let s = self.subs.get_mut(&id).expect("sub");
                    if s.keys.contains(&k) {
                        continue;
                    }
                    if s.keys.len() >= MAX_SUBSCRIPTIONS {
                        s.close = Some((md_close::PROTOCOL, "too many subscriptions".into()));
                        s.wake.notify_one();
                        continue;
                    }
                    s.keys.push(k);
                    self.by_key.entry(k).or_default().push(id);
                    self.send_snapshot(id, k, now);
                }
                Req::Snapshot(k) => self.send_snapshot(id, k, now),
                Req::Retransmit(k, from, to) => {
                    let small = to - from < self.cfg.retransmit_max;
                    let held = match self.replay.get(&k).and_then(|r| r.range(from, to)) {
                        Some(msgs) if small => {
                            let s = self.subs.get_mut(&id).expect("sub");
                            for b in msgs {
                                push_bytes(s, b.clone(), now);
                            }
                            s.wake.notify_one();
                            true
                        }
                        _ => false,
                    };
                    if held {
                        self.stats.retransmits += 1;
                    } else {
                        // A large gap, or one the ring no longer holds.
                        self.send_snapshot(id, k, now);
                    }
                }
            }
        }
        self.pending = left;
        if !self.reset_pending {
            return;
        }
        self.reset_pending = false;
        // Slow subscribers marked for reset: drop their queue, snapshot everything.
        let ids: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.reset && s.close.is_none())
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            let keys = self.subs[&id].keys.clone();
            if keys.iter().any(|k| self.mid_input[self.partition_of(k.0)]) {
                self.reset_pending = true;
                continue;
            }
            self.stats.resets += 1;
            let max = self.cfg.max_resets;
            let s = self.subs.get_mut(&id).expect("sub");
            s.q.clear();
            s.q_bytes = 0;
            s.l2 = None;
            s.l1.clear();
            s.reset = false;
            s.resets += 1;
            if s.resets > max {
                s.close = Some((md_close::SLOW_CONSUMER, "slow consumer".into()));
                s.wake.notify_one();
                self.stats.slow_disconnects += 1;
                continue;
            }
            s.owed_since = Some(now);
            s.wake.notify_one();
            self.owed.push(id);
        }
    }

    /// Whether subscriber `id` still owes snapshots; one whose writer has
    /// not come back for them within `backlog_age` is not reading at all,
    /// and is disconnected.
    fn still_owed(&mut self, id: u64, now: u64) -> bool {
        let Some(s) = self.subs.get_mut(&id) else {
            return false;
        };
        let Some(since) = s.owed_since else {
            return false;
        };
        if s.close.is_none() && now.saturating_sub(since) > self.cfg.backlog_age.as_nanos() as u64 {
            s.close = Some((md_close::SLOW_CONSUMER, "slow consumer".into()));
            s.wake.notify_one();
            self.stats.slow_disconnects += 1;
        }
        true
    }

    fn send_snapshot(&mut self, id: u64, k: Key, now: u64) {
        let (snap, bytes) = self.snapshot_bytes(k);
        if let Some(s) = self.subs.get_mut(&id) {
            set_last(&mut s.last, k, snap.last_instrument_seq);
            push_bytes(s, bytes, now);
            s.wake.notify_one();
        }
    }

    fn add_sub(&mut self) -> Option<(u64, Rc<Notify>)> {
        if self.subs.len() >= self.cfg.max_subscribers {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let wake = Rc::new(Notify::new());
        self.subs.insert(
            id,
            Sub {
                q: VecDeque::new(),
                q_bytes: 0,
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
                    refilled_ns: self.now_ns(),
                },
                wake: wake.clone(),
            },
        );
        Some((id, wake))
    }

    /// Charges a retransmit or snapshot request to subscriber `id`'s
    /// budget; false (and a `THROTTLED` record queued) when it is spent.
    /// Subscribing is not charged: it is bounded by `MAX_SUBSCRIPTIONS`
    /// and idempotent.
    fn admit(&mut self, id: u64, req: &Req) -> bool {
        let now = self.now_ns();
        self.admit_at(id, req, now)
    }

    fn admit_at(&mut self, id: u64, req: &Req, now: u64) -> bool {
        let key = match req {
            Req::Subscribe(_) => return true,
            Req::Snapshot(k) | Req::Retransmit(k, _, _) => *k,
        };
        let (per_s, burst) = (u64::from(self.cfg.requests_per_s), self.cfg.requests_burst);
        if per_s == 0 {
            return true;
        }
        let Some(s) = self.subs.get_mut(&id) else {
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
        push_bytes(s, Arc::from(rec), now);
        s.wake.notify_one();
        self.stats.throttled += 1;
        false
    }

    /// Counts a subscriber connection that ended.
    fn ended(&mut self, why: DisconnectReason) {
        self.stats.disconnects[why as usize] += 1;
    }

    fn remove_sub(&mut self, id: u64) {
        if let Some(s) = self.subs.remove(&id) {
            for k in s.keys {
                if let Some(v) = self.by_key.get_mut(&k) {
                    v.retain(|&x| x != id);
                    if v.is_empty() {
                        self.by_key.remove(&k);
                    }
                }
            }
        }
    }

    /// Takes up to `max` queued bytes of subscriber `id` into `out` (one
    /// write); drains its conflation buffers when its queue is empty and
    /// queues heartbeats when `heartbeat` is set. `Err` carries a close.
    fn take(
        &mut self,
        id: u64,
        out: &mut Vec<u8>,
        max: usize,
        heartbeat: bool,
    ) -> Result<(), (u32, String)> {
        let now = self.now_ns();
        let owed = match self.subs.get(&id) {
            None => return Err((md_close::NORMAL, String::new())),
            Some(s) => {
                if let Some(c) = &s.close {
                    return Err(c.clone());
                }
                s.owed_since.map(|_| s.keys.clone())
            }
        };
        if let Some(keys) = owed {
            if keys.iter().any(|k| self.mid_input[self.partition_of(k.0)]) {
                // Woken again when the input ends (`publish`).
                return Ok(());
            }
            self.subs.get_mut(&id).expect("sub").owed_since = None;
            for k in keys {
                self.send_snapshot(id, k, now);
            }
        }
        let s = self.subs.get_mut(&id).expect("sub");
        if s.q.is_empty() && !s.reset && (s.l2.is_some() || !s.l1.is_empty()) {
            // Caught up: the conflated state goes out, then live again.
            let mut msgs = Vec::new();
            if let Some(mut c) = s.l2.take() {
                c.drain_into(&mut msgs);
            }
            let mut l1: Vec<Message> = s.l1.drain().map(|(_, m)| m).collect();
            l1.sort_by_key(|m| m.channel_seq);
            msgs.extend(l1);
            for m in msgs {
                self.enc.clear();
                fw::encode(&m, &mut self.enc);
                self.stats.conflated += 1;
                set_last(&mut s.last, (m.instrument.0, m.channel()), m.instrument_seq);
                push_bytes(s, Arc::from(&self.enc[..]), now);
            }
        }
        if heartbeat {
            // Queued behind what it vouches for, so it goes out even under load.
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
                push_bytes(s, Arc::from(hb), now);
            }
        }
        while let Some((_, b)) = s.q.front() {
            if !out.is_empty() && out.len() + b.len() > max {
                break;
            }
            out.extend_from_slice(b);
            s.q_bytes -= b.len();
            s.q.pop_front();
        }
        Ok(())
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

fn push_bytes(s: &mut Sub, b: Arc<[u8]>, now: u64) {
    s.q_bytes += b.len();
    s.q.push_back((now, b));
}

/// Appends one published message to a subscriber, applying the bounds;
/// true when it marked the subscriber for a reset.
fn enqueue(cfg: &MdConfig, s: &mut Sub, m: &Message, b: &Arc<[u8]>, now: u64) -> bool {
    if s.close.is_some() || s.reset {
        return false; // the reset's snapshots will include it
    }
    let over = s.q_bytes >= cfg.backlog_bytes
        || s.q
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > cfg.backlog_age.as_nanos() as u64);
    let key = (m.instrument.0, m.channel());
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
            set_last(&mut s.last, key, m.instrument_seq);
            push_bytes(s, b.clone(), now);
            // Its task waits for a wake only with an empty queue (`take`
            // always drains at least one record): one wake per batch.
            if s.q.len() == 1 {
                s.wake.notify_one();
            }
            false
        }
    }
}

/// Serves one accepted `bourse-md/1` connection.
pub async fn connection(hub: Rc<RefCell<MdHub>>, conn: quinn::Connection) {
    let Ok(Ok((mut send, mut recv))) =
        tokio::time::timeout(Duration::from_secs(10), conn.accept_bi()).await
    else {
        conn.close(quinn::VarInt::from_u32(md_close::PROTOCOL), b"no stream");
        return;
    };
    let mut inbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(256 << 10);
    let fail = |code: u32| {
        let mut b = Vec::new();
        encode_ctl(&Ctl::Error(code), &mut b);
        b
    };
    // Authentication first.
    let authed = loop {
        match decode_ctl(&inbuf) {
            Ok(Some((Ctl::Auth(t), n))) => {
                inbuf.drain(..n);
                let ok = hub.borrow().auth.check(&t).is_some_and(|g| g.perms.read);
                break if ok {
                    Ok(())
                } else {
                    Err((md_close::UNAUTHORIZED, "unauthorized"))
                };
            }
            Ok(Some(_)) | Err(_) => break Err((md_close::PROTOCOL, "expected auth")),
            Ok(None) => {}
        }
        match tokio::time::timeout(Duration::from_secs(10), recv.read_chunk(4096, true)).await {
            Ok(Ok(Some(c))) => inbuf.extend_from_slice(&c.bytes),
            _ => break Err((md_close::PROTOCOL, "no auth")),
        }
    };
    if let Err((code, why)) = authed {
        hub.borrow_mut().ended(if code == md_close::UNAUTHORIZED {
            DisconnectReason::AuthFailed
        } else {
            DisconnectReason::NotLoggedIn
        });
        let _ = send.write_all(&fail(code)).await;
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_millis(100), send.stopped()).await;
        conn.close(quinn::VarInt::from_u32(code), why.as_bytes());
        return;
    }
    let Some((id, wake)) = hub.borrow_mut().add_sub() else {
        hub.borrow_mut().ended(DisconnectReason::ServerFull);
        let _ = send.write_all(&fail(md_close::FULL)).await;
        conn.close(
            quinn::VarInt::from_u32(md_close::FULL),
            b"too many subscribers",
        );
        return;
    };
    let hb_every = hub.borrow().cfg.heartbeat;
    let mut next_hb = tokio::time::Instant::now() + hb_every;
    // One timer for the connection's life, reset when it fires (a new one
    // per loop turn would cost a timer-wheel insert per flush).
    let hb_timer = tokio::time::sleep_until(next_hb);
    tokio::pin!(hb_timer);
    let mut close: Option<(u32, String)> = None;
    // Why the connection ended when no close of ours says it.
    let mut gone = DisconnectReason::ConnectionLost;
    'conn: loop {
        // Requests already read.
        loop {
            match decode_ctl(&inbuf) {
                Ok(None) => break,
                Ok(Some((c, n))) => {
                    inbuf.drain(..n);
                    let req = match c {
                        Ctl::Subscribe {
                            instrument,
                            channel,
                        } => Req::Subscribe((instrument, channel)),
                        Ctl::Snapshot {
                            instrument,
                            channel,
                        } => Req::Snapshot((instrument, channel)),
                        Ctl::Retransmit {
                            instrument,
                            channel,
                            from,
                            to,
                        } => Req::Retransmit((instrument, channel), from, to),
                        _ => {
                            close = Some((md_close::PROTOCOL, "unexpected record".into()));
                            break 'conn;
                        }
                    };
                    let mut h = hub.borrow_mut();
                    if h.admit(id, &req) {
                        h.pending.push_back((id, req));
                        h.service();
                    }
                }
                Err(_) => {
                    close = Some((md_close::PROTOCOL, "malformed record".into()));
                    break 'conn;
                }
            }
        }
        if inbuf.len() > 4096 {
            close = Some((md_close::PROTOCOL, "oversized record".into()));
            break;
        }
        let now = tokio::time::Instant::now();
        let hb = now >= next_hb;
        if hb {
            // Behind (a long write): no catch-up burst, the next one at
            // least half an interval from now.
            next_hb = (next_hb + hb_every).max(now + hb_every / 2);
            hb_timer.as_mut().reset(next_hb);
        }
        out.clear();
        if let Err(c) = hub.borrow_mut().take(id, &mut out, 256 << 10, hb) {
            close = Some(c);
            break;
        }
        if !out.is_empty() {
            // The publisher does not wait for this: it only appends to the
            // queue. A write stuck on a stalled peer still notices a close
            // decided by the hub (slow consumer).
            let w = send.write_all(&out);
            tokio::pin!(w);
            loop {
                tokio::select! {
                    r = &mut w => {
                        if r.is_err() {
                            break 'conn;
                        }
                        break;
                    }
                    _ = wake.notified() => {
                        let c = hub.borrow().subs.get(&id).and_then(|s| s.close.clone());
                        if let Some((code, why)) = c {
                            let mut h = hub.borrow_mut();
                            h.remove_sub(id);
                            h.ended(close_reason(code));
                            drop(h);
                            conn.close(quinn::VarInt::from_u32(code), why.as_bytes());
                            return;
                        }
                    }
                }
            }
            continue;
        }
        tokio::select! {
            r = recv.read_chunk(4096, true) => match r {
                Ok(Some(c)) => inbuf.extend_from_slice(&c.bytes),
                Ok(None) => {
                    gone = DisconnectReason::Normal;
                    break;
                }
                Err(quinn::ReadError::ConnectionLost(
                    quinn::ConnectionError::ApplicationClosed(a),
                )) if a.error_code.into_inner() == 0 => {
                    gone = DisconnectReason::Normal;
                    break;
                }
                Err(_) => break,
            },
            _ = wake.notified() => {}
            _ = &mut hb_timer => {}
        }
    }
    {
        let mut h = hub.borrow_mut();
        h.remove_sub(id);
        h.ended(close.as_ref().map_or(gone, |(code, _)| close_reason(*code)));
    }
    if let Some((code, why)) = close {
        let _ = send.write_all(&fail(code)).await;
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_millis(100), send.stopped()).await;
        conn.close(quinn::VarInt::from_u32(code), why.as_bytes());
    }
}

/// The disconnect reason of one of our close codes.
fn close_reason(code: u32) -> DisconnectReason {
    match code {
        md_close::NORMAL => DisconnectReason::Normal,
        md_close::UNAUTHORIZED => DisconnectReason::AuthFailed,
        md_close::SLOW_CONSUMER => DisconnectReason::SlowConsumer,
        md_close::FULL => DisconnectReason::ServerFull,
        _ => DisconnectReason::ProtocolViolation,
    }
}

/// What a market-data client receives.
#[derive(Clone, Debug, PartialEq)]
pub enum MdItem {
    /// An incremental (or retransmitted / conflated) message.
    Message(Message),
    /// A snapshot.
    Snapshot(Snapshot),
    /// A heartbeat.
    Heartbeat {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
        /// Last sequence queued.
        last: u64,
    },
    /// An error; the server closes next.
    Error(u32),
    /// A retransmit / snapshot request was over the request budget and was
    /// not served; ask again after `retry_after_ms`.
    Throttled {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
        /// When to ask again.
        retry_after_ms: u32,
    },
}

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum MdError {
    /// Socket / TLS.
    #[error(transparent)]
    Net(#[from] gateway::net::NetError),
    /// Connecting.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing.
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading.
    #[error("read: {0}")]
    Read(#[from] quinn::ReadError),
    /// Stream ended.
    #[error("stream closed")]
    Closed,
    /// Bad bytes from the server.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A market-data subscriber connection.
#[derive(Debug)]
pub struct MdClient {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: Vec<u8>,
    at: usize,
}

fn entry_size(channel: u8) -> usize {
    match Channel::from_code(channel) {
        Some(Channel::L2) => core::mem::size_of::<fw::L2Record>(),
        Some(Channel::L3) => core::mem::size_of::<fw::L3Record>(),
        Some(Channel::L1) => core::mem::size_of::<fw::L1Record>(),
        _ => 0,
    }
}

impl MdClient {
    /// Connects to `addr` trusting `cert_der` and authenticates with `token`.
    pub async fn connect(
        addr: SocketAddr,
        cert_der: &[u8],
        token: &str,
        tuning: &Tuning,
    ) -> Result<MdClient, MdError> {
        let qc = net::client_config(cert_der, fw::ALPN, tuning)?;
        let endpoint = net::client_endpoint(addr, qc, tuning)?;
        let conn = endpoint
            .connect(addr, gateway::identity::SERVER_NAME)?
            .await?;
        let (send, recv) = conn.open_bi().await?;
        let mut c = MdClient {
            _endpoint: endpoint,
            conn,
            send,
            recv,
            buf: Vec::with_capacity(256 << 10),
            at: 0,
        };
        c.request(&Ctl::Auth(token.to_string())).await?;
        Ok(c)
    }

    /// The QUIC connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Sends a control record.
    pub async fn request(&mut self, c: &Ctl) -> Result<(), MdError> {
        let mut b = Vec::with_capacity(80);
        encode_ctl(c, &mut b);
        self.send_raw(&b).await
    }

    /// Sends raw bytes (tests send garbage with it).
    pub async fn send_raw(&mut self, b: &[u8]) -> Result<(), MdError> {
        self.send.write_all(b).await?;
        Ok(())
    }

    /// Subscribes to (instrument, channel).
    pub async fn subscribe(&mut self, instrument: u32, channel: Channel) -> Result<(), MdError> {
        self.request(&Ctl::Subscribe {
            instrument,
            channel,
        })
        .await
    }

    fn parse(&mut self) -> Result<Option<MdItem>, MdError> {
        let b = &self.buf[self.at..];
        if b.len() < 8 {
            return Ok(None);
        }
        let len = u32_at(b, 0) as usize;
        let template = u16::from_le_bytes([b[4], b[5]]);
        if !(8..=4096).contains(&len) {
            return Err(MdError::Protocol(format!("record length {len}")));
        }
        if b.len() < len {
            return Ok(None);
        }
        let perr = |e: fw::WireError| MdError::Protocol(format!("{e:?}"));
        if template == fw::template::SNAPSHOT_START {
            let start = core::mem::size_of::<fw::SnapshotRecord>();
            let entries = u32_at(b, 40) as usize;
            let need = 2 * start + entries * entry_size(b[36]);
            if b.len() < need {
                return Ok(None);
            }
            let (s, n) = fw::decode_snapshot(b).map_err(perr)?;
            self.at += n;
            return Ok(Some(MdItem::Snapshot(s)));
        }
        if template >= ctl_template::AUTH {
            let (c, n) = decode_ctl(b)
                .map_err(|e| MdError::Protocol(e.to_string()))?
                .ok_or_else(|| MdError::Protocol("short".into()))?;
            self.at += n;
            return Ok(Some(match c {
                Ctl::Heartbeat {
                    instrument,
                    channel,
                    last,
                } => MdItem::Heartbeat {
                    instrument,
                    channel,
                    last,
                },
                Ctl::Error(code) => MdItem::Error(code),
                Ctl::Throttled {
                    instrument,
                    channel,
                    retry_after_ms,
                } => MdItem::Throttled {
                    instrument,
                    channel,
                    retry_after_ms,
                },
                _ => return Err(MdError::Protocol("unexpected control record".into())),
            }));
        }
        let (m, n) = fw::decode(b).map_err(perr)?;
        self.at += n;
        Ok(Some(MdItem::Message(m)))
    }

    /// The next item.
    pub async fn next(&mut self) -> Result<MdItem, MdError> {
        loop {
            if let Some(i) = self.parse()? {
                return Ok(i);
            }
            if self.at > 0 {
                self.buf.drain(..self.at);
                self.at = 0;
            }
            match self.recv.read_chunk(256 << 10, true).await? {
                Some(c) => self.buf.extend_from_slice(&c.bytes),
                None => return Err(MdError::Closed),
            }
        }
    }
}

/// A subscriber's view: books (L2 / L3 via `BookBuilder`), quotes, recent
/// trades; says what to ask the server when a gap shows.
#[derive(Debug, Default)]
pub struct FeedView {
    /// Book builders per (instrument, channel code).
    pub books: HashMap<(u32, u8), BookBuilder>,
    /// Latest quote per instrument.
    pub quotes: HashMap<u32, Quote>,
    /// Recent trades (newest last, at most 20).
    pub trades: VecDeque<(u32, TradeMsg)>,
    /// Gaps detected (retransmit or snapshot requests made).
    pub gaps: u64,
    /// Requests the server refused as over budget (asked again on the
    /// next message or heartbeat, at most twice a second).
    pub throttled: u64,
}

impl FeedView {
    /// Tracks (instrument, channel): L2 / L3 get a book builder.
    pub fn track(&mut self, instrument: u32, channel: Channel) {
        if matches!(channel, Channel::L2 | Channel::L3) {
            self.books.insert(
                (instrument, channel as u8),
                BookBuilder::new(InstrumentId(instrument), channel, 1 << 14),
            );
        }
    }

    /// Applies an item; returns the request to send, if any.
    pub fn apply(&mut self, item: &MdItem) -> Option<Ctl> {
        let (key, need) = match item {
            MdItem::Snapshot(s) => {
                let ch = s.channel?;
                if ch == Channel::L1 {
                    self.quotes.insert(s.instrument.0, s.quote);
                }
                let key = (s.instrument.0, ch as u8);
                (key, self.books.get_mut(&key)?.on_snapshot(s))
            }
            MdItem::Message(m) => {
                match m.body {
                    Body::L1(q) => {
                        self.quotes.insert(m.instrument.0, q);
                    }
                    Body::Trade(t) => {
                        self.trades.push_back((m.instrument.0, t));
                        if self.trades.len() > 20 {
                            self.trades.pop_front();
                        }
                    }
                    _ => {}
                }
                let key = (m.instrument.0, m.channel() as u8);
                (key, self.books.get_mut(&key)?.on_message(m))
            }
            MdItem::Heartbeat {
                instrument,
                channel,
                last,
            } => {
                let key = (*instrument, *channel as u8);
                (key, self.books.get_mut(&key)?.sent_up_to(*last))
            }
            MdItem::Throttled {
                instrument,
                channel,
                ..
            } => {
                self.throttled += 1;
                let key = (*instrument, *channel as u8);
                self.books.get_mut(&key)?.request_refused();
                return None;
            }
            MdItem::Error(_) => return None,
        };
        let channel = Channel::from_code(key.1)?;
        match need {
            Need::Nothing => None,
            Need::Retransmit { from, to } => {
                self.gaps += 1;
                Some(Ctl::Retransmit {
                    instrument: key.0,
                    channel,
                    from,
                    to,
                })
            }
            Need::Snapshot => {
                self.gaps += 1;
                Some(Ctl::Snapshot {
                    instrument: key.0,
                    channel,
                })
            }
        }
    }
}

/// The market-data hub as the order-entry server's companion protocol
/// (`bourse-md/1` on the same endpoint).
struct MdCompanion {
    hub: Rc<RefCell<MdHub>>,
    /// Counters already folded into the gateway's.
    seen: RefCell<MdStats>,
    /// Its readers (one per partition) and their doorbell, until `consume`
    /// takes them.
    readers: RefCell<Option<(Vec<OutputReader>, Arc<Notify>)>>,
}

impl gateway::server::Companion for MdCompanion {
    fn consume(&self, busy_poll: bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        let hub = self.hub.clone();
        let taken = self.readers.borrow_mut().take();
        Box::pin(async move {
            if let Some((readers, wake)) = taken {
                consume(hub, readers, wake, busy_poll).await;
            }
        })
    }

    fn serve(
        &self,
        conn: quinn::Connection,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        Box::pin(connection(self.hub.clone(), conn))
    }

    fn sweep(&self, m: &gateway::counters::GatewayMetrics) {
        let hub = self.hub.borrow();
        let st = hub.stats();
        let mut seen = self.seen.borrow_mut();
        m.set_subscribers(hub.subscribers() as i64);
        m.conflated(st.conflated - seen.conflated);
        for r in DisconnectReason::ALL {
            let i = r as usize;
            m.md_disconnected(r, st.disconnects[i] - seen.disconnects[i]);
        }
        m.md_throttled(st.throttled - seen.throttled);
        *seen = st;
    }
}

/// Market data's own consumer of the durable outputs: drains every
/// partition's cursor into the hub, at most `BATCH` inputs per partition
/// between yields (so order entry's delivery, on the same thread, waits for
/// at most one batch of feed building), and sleeps on the partitions'
/// doorbells when nothing durable is waiting (`busy_poll`: yields instead).
async fn consume(
    hub: Rc<RefCell<MdHub>>,
    mut readers: Vec<OutputReader>,
    wake: Arc<Notify>,
    busy_poll: bool,
) {
    const BATCH: usize = 256;
    loop {
        let mut n = 0;
        {
            let mut h = hub.borrow_mut();
            for (p, r) in readers.iter_mut().enumerate() {
                let mut k = 0;
                while k < BATCH {
                    let Some(o) = r.poll() else { break };
                    h.on_output(p, o.seq, &o.command, o.events());
                    k += 1;
                }
                n += k;
            }
        }
        if n > 0 || busy_poll {
            tokio::task::yield_now().await;
        } else {
            // `Notify` keeps one permit: a ring after the empty poll is not lost.
            wake.notified().await;
        }
    }
}

/// Market data on the order-entry endpoint: the server builds the hub once
/// the pipeline has recovered, seeded from each partition's journal so the
/// books show the recovered state, not an empty one; it then reads every
/// later input through its own output cursor.
pub fn companion(cfg: MdConfig) -> gateway::server::CompanionSpec {
    let build = move |p: &runtime::Pipeline,
                      pc: &runtime::PipelineConfig,
                      auth: Arc<Auth>|
          -> Result<
        Rc<dyn gateway::server::Companion>,
        gateway::server::CompanionError,
    > {
        let partitions = p.runtime().partitions();
        let mut hub = MdHub::new(cfg.clone(), partitions, auth);
        if pc.durability != journal::Durability::None {
            for part in 0..partitions {
                let dir = runtime::pipeline::partition_dir(&pc.data_dir, part);
                let up_to = p.recovered().get(part).map_or(0, |r| r.last_seq);
                match hub.seed_from_journal(part, &dir, pc.engine, up_to) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        partition = part,
                        inputs = n,
                        "market data rebuilt from the journal"
                    ),
                    Err(e) => {
                        return Err(
                            format!("market data rebuild from {}: {e}", dir.display()).into()
                        )
                    }
                }
            }
        }
        let wake = Arc::new(Notify::new());
        let mut readers = Vec::with_capacity(partitions);
        for part in 0..partitions {
            let w = wake.clone();
            p.runtime()
                .shared(part)
                .doorbell
                .register(Box::new(move || w.notify_one()))?;
            readers.push(
                p.runtime()
                    .reader_at(part, gateway::server::COMPANION_CURSOR),
            );
        }
        Ok(Rc::new(MdCompanion {
            hub: Rc::new(RefCell::new(hub)),
            seen: RefCell::new(MdStats::default()),
            readers: RefCell::new(Some((readers, wake))),
        }))
    };
    gateway::server::CompanionSpec {
        alpn: crate::wire::ALPN,
        build: Arc::new(build),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_records_round_trip_and_reject_garbage() {
        let all = [
            Ctl::Auth("tok".into()),
            Ctl::Subscribe {
                instrument: 7,
                channel: Channel::L3,
            },
            Ctl::Retransmit {
                instrument: 7,
                channel: Channel::L2,
                from: 3,
                to: 9,
            },
            Ctl::Snapshot {
                instrument: 1,
                channel: Channel::L1,
            },
            Ctl::Heartbeat {
                instrument: 1,
                channel: Channel::Trades,
                last: 42,
            },
            Ctl::Error(md_close::PROTOCOL),
            Ctl::Throttled {
                instrument: 2,
                channel: Channel::L2,
                retry_after_ms: 50,
            },
        ];
        let mut b = Vec::new();
        for c in &all {
            encode_ctl(c, &mut b);
        }
        let mut at = 0;
        for c in &all {
            assert_eq!(decode_ctl(&b[at..at + 7]), Ok(None));
            let (d, n) = decode_ctl(&b[at..]).unwrap().unwrap();
            assert_eq!(&d, c);
            at += n;
        }
        assert_eq!(at, b.len());
        // Every single-byte corruption of a subscribe decodes or is refused, never panics.
        let mut s = Vec::new();
        encode_ctl(&all[2], &mut s);
        for i in 0..s.len() {
            for v in [0u8, 1, 0x7F, 0xFF] {
                let mut x = s.clone();
                x[i] = v;
                let _ = decode_ctl(&x);
            }
        }
        // A backwards range is refused.
        let mut r = Vec::new();
        encode_ctl(
            &Ctl::Retransmit {
                instrument: 1,
                channel: Channel::L3,
                from: 9,
                to: 3,
            },
            &mut r,
        );
        assert_eq!(decode_ctl(&r), Err(Malformed));
    }

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

    fn hub(per_s: u32, burst: u32) -> (MdHub, u64) {
        let cfg = MdConfig {
            requests_per_s: per_s,
            requests_burst: burst,
            ..MdConfig::default()
        };
        let mut h = MdHub::new(cfg, 1, Arc::new(Auth::default()));
        let (id, _) = h.add_sub().unwrap();
        (h, id)
    }

    fn queued_throttles(h: &MdHub, id: u64) -> usize {
        h.subs[&id]
            .q
            .iter()
            .filter(|(_, b)| {
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
        h.subs.get_mut(&id).unwrap().budget.refilled_ns = t0;
        let snap = Req::Snapshot((1, Channel::L2));
        let admitted = (0..5).filter(|_| h.admit_at(id, &snap, t0)).count();
        assert_eq!(admitted, 3, "the burst");
        assert_eq!(queued_throttles(&h, id), 2);
        assert_eq!(h.stats().throttled, 2);
        let (_, b) = h.subs[&id].q.back().unwrap();
        let Ok(Some((Ctl::Throttled { retry_after_ms, .. }, _))) = decode_ctl(b) else {
            panic!("a throttled record");
        };
        assert_eq!(retry_after_ms, 100);
        // Subscribing is never charged.
        assert!(h.admit_at(id, &Req::Subscribe((1, Channel::L3)), t0));
        // The bucket refills at 10/s: one token after 100 ms, not before.
        assert!(!h.admit_at(id, &snap, t0 + 99_000_000));
        assert!(h.admit_at(id, &snap, t0 + 100_000_000));
        assert!(!h.admit_at(id, &snap, t0 + 150_000_000));
        // A long pause refills to the burst, no further.
        let later = t0 + 60_000_000_000;
        assert_eq!((0..10).filter(|_| h.admit_at(id, &snap, later)).count(), 3);
        // 0 per second: no budget at all.
        let (mut h, id) = hub(0, 0);
        assert!((0..100).all(|_| h.admit(id, &snap)));
    }
}
