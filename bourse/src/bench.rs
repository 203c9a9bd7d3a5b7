//! `bourse bench`: an open-loop load generator over real QUIC connections.
//!
//! Each connection sends a seeded, realistic mix (passive limit orders,
//! cancels, replaces, crossing limit orders, IOC and FOK takers, ledger
//! transfers) on a fixed schedule: message `i` of a connection is *intended*
//! to leave at `offset + i / rate`. Latency is measured from that intended
//! time (coordinated omission corrected, as wrk2 does): when the server
//! stalls and the connection's in-flight window fills, the sender falls
//! behind its schedule and every message it could not send on time is
//! charged the delay. The same replies are also measured from the actual
//! send time (what a closed-loop tool reports) for comparison.
//!
//! Series: order → ack (first report answering the request), order → fill
//! (first trade report of a crossing order's own request), transfer →
//! result, and trade → market data: from a crossing order's intended send
//! to the moment a market-data subscriber (its own `bourse-md/1` connection
//! on the same endpoint and token, subscribed to the `Trades` channel of
//! both bench instruments before the clock starts, driven by the same client
//! runtime) reads the first trade message naming that order as taker.
//!
//! The join: the feed and the execution reports both carry global order ids
//! (partition in the top 8 bits, `runtime::globalize`), so the bench joins
//! on (instrument, order id, engine input): correct for any partition count,
//! in-process or `--server`. The engine input (`engine_seq`, partition-local on both the
//! report and the feed message) keeps a new order's own trades apart from
//! trades it takes part in later under the same id (a resting crossing
//! order replaced through the book). The taker's id and input come from the
//! crossing order's `NEW` report (a trade report of the same request may
//! name an own resting maker instead). Whichever of the report and the feed
//! message arrives second completes the pair; both maps are bounded
//! (`MdJoin`). A crossing order whose own trade reports arrived but whose
//! feed message had not by the end of the drain is charged its latency so
//! far and counted missing (as are trades lost to a feed reset or a dropped
//! feed), so a lossy feed cannot improve the percentiles. If the
//! subscription cannot be made the series is reported unavailable with the
//! reason; the rest of the run goes on.
//!
//! Output: a percentile table with ratios to the raw quinn ping-pong floor
//! measured in the same run, HdrHistogram percentile-distribution files
//! (`.hgrm`) and SVG plots (drawn with `plotters`) in the output directory, and with a sweep a
//! latency-versus-throughput plot. Progress goes to standard error once per
//! second.
//!
//! Invariants: the schedule never waits for replies except through the
//! in-flight window (bounded memory); every request sent is either answered
//! or, at the end of the drain, recorded with its latency so far (a lost or
//! stuck reply cannot make the percentiles look better); the same holds for
//! the feed message owed by each trade of the bench.

use engine::rng::SplitMix64;
use feeds::{Body, Channel};
use feeds::{MdClient, MdItem};
use gateway::client::{Client, ClientConfig, ClientError, Reply};
use gateway::wire::{self, exec_type, ord_status, NewOrderMsg, TransferRecord};
use hdrhistogram::Histogram;
use journal::Durability;
use plotters::prelude::{
    ChartBuilder, Color, IntoDrawingArea, LineSeries, RGBColor, Rectangle, SVGBackend,
    SeriesLabelPosition, TRANSPARENT, WHITE,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where and how to log in.
#[derive(Clone, Debug)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// The server certificate (DER).
    pub cert_der: Vec<u8>,
    /// Operator token (owners 1, 2, 3 of the demo set).
    pub token: String,
}

/// One load run at one rate.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Connections (sessions).
    pub connections: usize,
    /// Offered messages per second, all connections together.
    pub rate: u64,
    /// How long to offer load.
    pub duration: Duration,
    /// Seed of the message mix.
    pub seed: u64,
    /// Most requests in flight (sent, unanswered) per connection; a full
    /// window delays sending, which the intended-time measurement charges.
    pub window: usize,
    /// Poll in a loop between sends instead of sleeping on the timer
    /// (sub-millisecond send accuracy; burns a core).
    pub client_spin: bool,
    /// How long to wait for outstanding replies after the last send.
    pub drain: Duration,
    /// Print a progress line to standard error once per second.
    pub progress: bool,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            connections: 4,
            rate: 10_000,
            duration: Duration::from_secs(10),
            seed: 1,
            window: 1_000,
            client_spin: cores() >= 4,
            drain: Duration::from_secs(5),
            progress: false,
        }
    }
}

/// What one load run measured (latencies in nanoseconds).
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Offered rate.
    pub rate: u64,
    /// Seconds from the first intended send to the last reply.
    pub seconds: f64,
    /// Requests sent.
    pub sent: u64,
    /// Requests answered.
    pub answered: u64,
    /// Requests never answered within the drain (recorded at the drain's end).
    pub unanswered: u64,
    /// Rejected order requests (any reason; stale cancels included).
    pub rejected: u64,
    /// Trades seen in own reports (taker fills).
    pub fills: u64,
    /// Order, cancel and replace requests: intended send → first report.
    pub ack: Histogram<u64>,
    /// Crossing orders: intended send → first trade report.
    pub fill: Histogram<u64>,
    /// Transfer batches: intended send → results.
    pub transfer: Histogram<u64>,
    /// Order → ack measured from the actual send (not corrected).
    pub ack_uncorrected: Histogram<u64>,
    /// Crossing orders that traded: intended send → the first `Trades`
    /// message naming the order as taker at a market-data subscriber
    /// (missing ones included, charged at the end of the drain).
    pub trade_md: Histogram<u64>,
    /// Trades of the bench whose market-data message never arrived (in
    /// `trade_md` with their latency at the end of the drain).
    pub trade_md_missing: u64,
    /// Snapshots received after subscribing: the server reset the
    /// subscriber as slow and dropped the trades queued for it.
    pub trade_md_resets: u64,
    /// Why trade → market data was not measured (the subscription failed);
    /// `trade_md` is then empty.
    pub trade_md_unavailable: Option<String>,
    /// Why the feed ended during the run; trades after it count as missing.
    pub trade_md_lost: Option<String>,
}

impl LoadResult {
    /// Answered requests per second.
    pub fn achieved(&self) -> f64 {
        self.answered as f64 / self.seconds.max(1e-9)
    }
}

/// A latency histogram, 1 ns to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// Cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Order { crossing: bool },
    Modify,
    Transfer,
}

struct Pend {
    intended: u64,
    actual: u64,
    kind: Kind,
    answered: bool,
    filled: bool,
    /// A crossing order's trades on the feed, from its `NEW` report.
    taker: Option<TakerKey>,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    answered: AtomicU64,
}

/// The message mix of one connection.
struct Mix {
    rng: SplitMix64,
    owner: u64,
    other_owner: u64,
    mids: [u64; 2],
    resting: Vec<(u64, u32)>,
    coid: u64,
    transfer_id: u128,
}

impl Mix {
    fn new(seed: u64, conn: usize) -> Mix {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let owner = 1 + (conn as u64 % 3);
        Mix {
            rng: SplitMix64(seed ^ (conn as u64).wrapping_mul(0xA24B_AED4_963E_E407)),
            owner,
            other_owner: 1 + (owner % 3),
            mids: [60_000, 3_000],
            resting: Vec::new(),
            coid: (conn as u64) << 40 | (nonce & 0xFF_FFFF_FFFF),
            transfer_id: ((nonce as u128) << 64) | ((conn as u128) << 40),
        }
    }

    /// Queues the next message; returns its request number and kind.
    fn queue(&mut self, c: &mut Client) -> (u64, Kind) {
        let r = &mut self.rng;
        let inst = BENCH_INSTRUMENTS[r.below(BENCH_INSTRUMENTS.len() as u64) as usize];
        let mid = &mut self.mids[inst as usize - 1];
        if r.below(50) == 0 {
            *mid = (*mid + r.below(5)).saturating_sub(2).max(100);
        }
        let mid = *mid;
        let roll = r.below(100);
        if (40..52).contains(&roll) && !self.resting.is_empty() {
            let i = r.below(self.resting.len() as u64) as usize;
            let (id, _) = self.resting.swap_remove(i);
            return (c.cancel(self.owner, id), Kind::Modify);
        }
        if (52..60).contains(&roll) && !self.resting.is_empty() {
            let i = r.below(self.resting.len() as u64) as usize;
            let (id, inst) = self.resting[i];
            let m = self.mids[inst as usize - 1];
            let price = m - 1 - r.below(20).min(m - 2);
            return (c.replace(self.owner, id, price, 0), Kind::Modify);
        }
        if roll >= 95 {
            let (from, to) = if r.below(2) == 0 {
                (self.owner, self.other_owner)
            } else {
                (self.other_owner, self.owner)
            };
            self.transfer_id += 1;
            let rec = TransferRecord {
                id: wire::u128_bytes(self.transfer_id),
                debit_account: wire::u128_bytes(gateway::demo::trading_account(from, 1).0),
                credit_account: wire::u128_bytes(gateway::demo::trading_account(to, 1).0),
                amount: wire::u128_bytes(1 + r.below(100) as u128),
                code: 1,
                ..Default::default()
            };
            return (c.transfer_batch(&[rec]), Kind::Transfer);
        }
        let buy = r.below(2) == 0;
        // 60–95: crossing (limit, IOC, FOK); else passive.
        let crossing = roll >= 60;
        let off = if crossing {
            r.below(5)
        } else {
            1 + r.below(20)
        };
        let price = match (buy, crossing) {
            (true, false) | (false, true) => mid.saturating_sub(off).max(1),
            (true, true) | (false, false) => mid + off,
        };
        self.coid += 1;
        let mut m = NewOrderMsg {
            client_order_id: self.coid,
            owner: self.owner,
            price,
            qty: 1 + r.below(10),
            instrument: inst,
            side: if buy { 0 } else { 1 },
            ..Default::default()
        };
        if crossing {
            m.tif = match roll {
                75..=84 => 1, // IOC
                85..=89 => 2, // FOK
                _ => 0,
            };
        }
        (c.order(m), Kind::Order { crossing })
    }
}

/// A taker trade as the feed names it: (instrument, global taker order id,
/// engine input). The input tells a new order's own trades from those it
/// takes part in later under the same id (a replace that crosses).
type TakerKey = (u32, u64, u64);

/// The key of an order in the input `engine_seq` (partition-local, on the
/// report and the feed alike).
fn taker_key(instrument: u32, order_id: u64, engine_seq: u64) -> TakerKey {
    (instrument, order_id, engine_seq)
}

/// Most entries of each `MdJoin` map, whatever the rate and duration.
const MD_JOIN_MAX: usize = 4 << 20;

/// A crossing order waiting for its trade on the feed.
#[derive(Clone, Copy, Debug)]
struct Expect {
    intended: u64,
    /// Its own taker trade report arrived: a feed message is owed.
    traded: bool,
}

/// Joins crossing orders (known from their reports) with trade messages
/// (known from the feed), whichever arrives second. Times are ns since the
/// run's start.
///
/// Bounded: `expect` holds crossing orders from their `NEW` report until
/// their feed message, or until they finish without trading (forgotten);
/// at the cap a newcomer is charged at once as missing. `seen` holds feed
/// trades whose taker the bench does not know yet (the feed can beat the
/// report), and trades of takers it will never know (other clients of a
/// remote server); at the cap its older half is dropped, and a bench order
/// whose feed message was dropped so is charged as missing at the end, never
/// credited with a shorter latency.
#[derive(Debug)]
struct MdJoin {
    cap: usize,
    expect: HashMap<TakerKey, Expect>,
    seen: HashMap<TakerKey, u64>,
    /// The last (taker, input) per instrument on the feed: a taker's trades
    /// are consecutive (one engine input), only the first counts.
    last_taker: HashMap<u32, (u64, u64)>,
    /// Entries of `expect` with `traded` set.
    awaiting: usize,
    hist: Histogram<u64>,
    missing: u64,
    resets: u64,
    lost: Option<String>,
}

impl MdJoin {
    fn new(cap: usize) -> MdJoin {
        MdJoin {
            cap: cap.clamp(1 << 10, MD_JOIN_MAX),
            expect: HashMap::new(),
            seen: HashMap::new(),
            last_taker: HashMap::new(),
            awaiting: 0,
            hist: histogram(),
            missing: 0,
            resets: 0,
            lost: None,
        }
    }

    /// A crossing order's `NEW` report told its id (`now`: this moment).
    fn order(&mut self, key: TakerKey, intended: u64, now: u64) {
        if let Some(arrival) = self.seen.remove(&key) {
            let _ = self.hist.record(arrival.saturating_sub(intended).max(1));
        } else if self.expect.len() >= self.cap {
            // No room to wait for it: charge what it has waited so far.
            self.missing += 1;
            let _ = self.hist.record(now.saturating_sub(intended).max(1));
        } else {
            self.expect.insert(
                key,
                Expect {
                    intended,
                    traded: false,
                },
            );
        }
    }

    /// The order's own taker trade report arrived.
    fn traded(&mut self, key: TakerKey) {
        if let Some(e) = self.expect.get_mut(&key) {
            if !e.traded {
                e.traded = true;
                self.awaiting += 1;
            }
        }
    }

    /// The order is finished (or no longer followed) without a taker trade.
    fn untraded(&mut self, key: TakerKey) {
        if self.expect.get(&key).is_some_and(|e| !e.traded) {
            self.expect.remove(&key);
        }
    }

    /// An own order the series does not measure (passive, replaced): a
    /// feed trade it caused as taker is not waited for.
    fn unmeasured(&mut self, key: TakerKey) {
        self.seen.remove(&key);
    }

    /// A trade message arrived at the subscriber.
    fn feed_trade(&mut self, key: TakerKey, arrival: u64) {
        if self.last_taker.insert(key.0, (key.1, key.2)) == Some((key.1, key.2)) {
            return;
        }
        if let Some(e) = self.expect.remove(&key) {
            if e.traded {
                self.awaiting -= 1;
            }
            let _ = self.hist.record(arrival.saturating_sub(e.intended).max(1));
            return;
        }
        if self.seen.len() >= self.cap {
            let mut t: Vec<u64> = self.seen.values().copied().collect();
            let mid = t.len() / 2;
            let (_, &mut median, _) = t.select_nth_unstable(mid);
            self.seen.retain(|_, a| *a > median);
        }
        self.seen.entry(key).or_insert(arrival);
    }

    /// End of the run: every trade still owed a feed message is charged
    /// its latency so far.
    fn finish(&mut self, now: u64) {
        for e in self.expect.values().filter(|e| e.traded) {
            self.missing += 1;
            let _ = self.hist.record(now.saturating_sub(e.intended).max(1));
        }
        self.expect.clear();
        self.seen.clear();
        self.awaiting = 0;
    }
}

/// Why a bench or demo run could not be carried out (a run that completes
/// reports its losses in the result instead).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A local file, directory, thread or runtime could not be made.
    #[error("{step}: {source}")]
    Io {
        /// What was being done, with the path where there is one.
        step: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The order-entry connection failed.
    #[error("order entry: {0}")]
    Client(#[from] ClientError),
    /// The market-data connection failed.
    #[error("market data: {0}")]
    Md(#[from] feeds::MdError),
    /// The market-data server refused the subscription.
    #[error("market data: the server refused: {0}")]
    MdRefused(String),
    /// The subscription's snapshots did not all arrive in time.
    #[error("market data: no snapshot within {} s of subscribing", .0.as_secs())]
    MdTimeout(Duration),
    /// The certificate or token could not be read.
    #[error(transparent)]
    Identity(#[from] gateway::identity::IdentityError),
    /// The in-process server did not start.
    #[error(transparent)]
    Serve(#[from] gateway::server::ServeError),
    /// The ping-pong floor could not be measured.
    #[error(transparent)]
    Floor(#[from] gateway::net::FloorError),
    /// The data directory holds no operator token to run the bench with.
    #[error("no operator token in {} (start the server with `bourse serve` there)", .0.display())]
    NoOperatorToken(PathBuf),
    /// The terminal view could not be set up.
    #[error("terminal: {0}")]
    Terminal(#[source] std::io::Error),
    /// A bench thread or task panicked (a bug: its message is above).
    #[error("{0} panicked")]
    Panicked(&'static str),
}

/// Wraps an I/O error of `step` (for `map_err`).
pub(crate) fn io_step(step: &'static str) -> impl FnOnce(std::io::Error) -> RunError {
    move |source| RunError::Io {
        step: step.to_string(),
        source,
    }
}

/// Wraps an I/O error of `verb` on `path` (for `map_err`).
pub(crate) fn io_path(verb: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let step = format!("{verb} {}", path.display());
    move |source| RunError::Io { step, source }
}

/// Opens the market-data connection and subscribes to the trades of both
/// bench instruments; returns once both snapshots arrived, so no trade of
/// the run can precede the subscription.
async fn md_subscribe(target: &Target) -> Result<MdClient, RunError> {
    let mut c = MdClient::connect(
        target.addr,
        &target.cert_der,
        &target.token,
        &gateway::net::Tuning::default(),
    )
    .await?;
    for inst in BENCH_INSTRUMENTS {
        c.subscribe(inst, Channel::Trades).await?;
    }
    let mut snapshots = 0;
    while snapshots < BENCH_INSTRUMENTS.len() {
        match c.next().await? {
            MdItem::Snapshot(_) => snapshots += 1,
            MdItem::Error(code) => return Err(RunError::MdRefused(md_code(code))),
            MdItem::Message(_) | MdItem::Heartbeat { .. } | MdItem::Throttled { .. } => {}
        }
    }
    Ok(c)
}

fn md_code(code: u32) -> String {
    use feeds::md_close as m;
    match code {
        m::NORMAL => "closed".into(),
        m::UNAUTHORIZED => "unauthorized (token without read permission?)".into(),
        m::PROTOCOL => "protocol error".into(),
        m::SLOW_CONSUMER => "slow consumer".into(),
        m::FULL => "too many subscribers".into(),
        c => format!("code {c}"),
    }
}

/// Reads the feed until `stop`, handing trades to the join. A feed error
/// ends the reader and is kept as `lost` (no panic, no retry: the trades it
/// misses are charged as missing).
async fn md_read(
    mut c: MdClient,
    join: Rc<RefCell<MdJoin>>,
    start: Instant,
    stop: Rc<tokio::sync::Notify>,
) {
    loop {
        let item = tokio::select! {
            biased;
            _ = stop.notified() => break,
            r = c.next() => r,
        };
        let now = Instant::now().saturating_duration_since(start).as_nanos() as u64;
        match item {
            Ok(MdItem::Message(m)) => {
                if let Body::Trade(t) = m.body {
                    join.borrow_mut()
                        .feed_trade((m.instrument.0, t.taker_order_id, m.engine_seq.0), now);
                }
            }
            Ok(MdItem::Snapshot(_)) => join.borrow_mut().resets += 1,
            // It asks for nothing, so nothing is refused.
            Ok(MdItem::Heartbeat { .. } | MdItem::Throttled { .. }) => {}
            Ok(MdItem::Error(code)) => {
                join.borrow_mut().lost =
                    Some(format!("the server ended the feed: {}", md_code(code)));
                break;
            }
            Err(e) => {
                join.borrow_mut().lost = Some(format!("feed: {e}"));
                break;
            }
        }
    }
    c.close(feeds::md_close::NORMAL, b"bench done");
}

/// The instruments `Mix::queue` trades.
const BENCH_INSTRUMENTS: [u32; 2] = [1, 2];

struct ConnOut {
    ack: Histogram<u64>,
    fill: Histogram<u64>,
    transfer: Histogram<u64>,
    ack_uncorrected: Histogram<u64>,
    sent: u64,
    answered: u64,
    unanswered: u64,
    rejected: u64,
    fills: u64,
    last_ns: u64,
}

/// How long a connection keeps reading after its last crossing order's
/// answer (its trade reports come from the same engine input, in the same
/// or the next write).
const LINGER_NS: u64 = 100_000_000;

/// One connection's schedule: message `i` is intended at `offset + i * interval` ns.
#[derive(Clone, Copy)]
struct Schedule {
    interval: f64,
    offset: f64,
    /// Messages this connection sends.
    total: u64,
    /// No message is intended at or after this (ns from the start).
    end_sends: u64,
    /// Reading stops here, answered or not.
    deadline: u64,
    window: usize,
}

impl Schedule {
    fn new(spec: &LoadSpec, conn: usize) -> Self {
        let per_conn = spec.rate as f64 / spec.connections.max(1) as f64;
        let interval = 1e9 / per_conn.max(1e-3);
        let end_sends = spec.duration.as_nanos() as u64;
        Schedule {
            interval,
            offset: interval * conn as f64 / spec.connections.max(1) as f64,
            total: (spec.duration.as_secs_f64() * per_conn).round() as u64,
            end_sends,
            deadline: end_sends + spec.drain.as_nanos() as u64,
            window: spec.window.max(1),
        }
    }

    fn intended(&self, i: u64) -> u64 {
        (self.offset + i as f64 * self.interval) as u64
    }
}

/// One connection's state while it runs: what it sent and awaits, what it
/// measured.
struct Driver {
    sched: Schedule,
    mix: Mix,
    pending: HashMap<u64, Pend>,
    out: ConnOut,
    counters: Arc<Counters>,
    md: Option<Rc<RefCell<MdJoin>>>,
    /// Next message index.
    i: u64,
    inflight: usize,
    last_prune: u64,
    /// A crossing order's `NEW` report answers it; its trade reports follow
    /// from the same input. After the last answer, keep reading briefly so
    /// the last orders' fills are not cut off.
    linger_until: u64,
}

impl Driver {
    /// Queues every message due by `now` that the window allows; whether any was.
    fn queue_due(&mut self, c: &mut Client, now: u64) -> bool {
        let mut queued = false;
        while self.i < self.sched.total && self.inflight < self.sched.window {
            let t = self.sched.intended(self.i);
            if t > now {
                break;
            }
            let (req, kind) = self.mix.queue(c);
            self.pending.insert(
                req,
                Pend {
                    intended: t,
                    actual: now,
                    kind,
                    answered: false,
                    filled: false,
                    taker: None,
                },
            );
            self.i += 1;
            self.inflight += 1;
            self.out.sent += 1;
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
            queued = true;
        }
        queued
    }

    /// Everything sent, answered, and the linger over (or the deadline passed).
    fn finished(&self, now: u64) -> bool {
        (self.i >= self.sched.total && self.inflight == 0 && now >= self.linger_until)
            || now >= self.sched.deadline
    }

    /// When to wake if no reply comes first (ns from the start).
    fn next_wake(&self) -> u64 {
        if self.i < self.sched.total && self.inflight < self.sched.window {
            self.sched.intended(self.i)
        } else if self.i >= self.sched.total && self.inflight == 0 {
            self.linger_until
        } else {
            self.sched.deadline
        }
    }

    /// Records a reply received at `now`.
    fn on_reply(&mut self, reply: &Reply, now: u64) {
        self.out.last_ns = now;
        let (req, report) = match reply {
            Reply::Report(r) if r.flags & wire::REPORT_OWN_REQUEST != 0 => (r.request, Some(r)),
            Reply::Report(_) => return,
            Reply::TransferResults { request, .. } => (*request, None),
            Reply::Ack(a) => (a.request, None),
            Reply::ProtocolReject(p) => (p.request, None),
            _ => return,
        };
        let Some(p) = self.pending.get_mut(&req) else {
            return;
        };
        if !p.answered {
            p.answered = true;
            self.inflight -= 1;
            self.out.answered += 1;
            self.counters.answered.fetch_add(1, Ordering::Relaxed);
            let lat = now.saturating_sub(p.intended).max(1);
            let unc = now.saturating_sub(p.actual).max(1);
            match p.kind {
                Kind::Transfer => {
                    let _ = self.out.transfer.record(lat);
                }
                _ => {
                    let _ = self.out.ack.record(lat);
                    let _ = self.out.ack_uncorrected.record(unc);
                }
            }
        }
        let crossing = matches!(p.kind, Kind::Order { crossing: true });
        if crossing {
            self.linger_until = self
                .linger_until
                .max((now + LINGER_NS).min(self.sched.deadline));
        }
        if let (Some(r), Some(md)) = (report, &self.md) {
            join_feed(&mut md.borrow_mut(), p, r, crossing, now);
        }
        let done = match report {
            Some(r) => record_report(&mut self.out, &mut self.mix, p, r, now) || !crossing,
            None => !crossing,
        };
        if done {
            if let (Some(p), Some(md)) = (self.pending.remove(&req), &self.md) {
                if let Some(k) = p.taker {
                    md.borrow_mut().untraded(k);
                }
            }
        }
        self.prune(now);
    }

    /// Crossing orders that rested without trading: forget them after a
    /// second (as a resting maker they owe the feed no taker trade).
    fn prune(&mut self, now: u64) {
        if now <= self.last_prune + 1_000_000_000 {
            return;
        }
        self.last_prune = now;
        let md = &self.md;
        self.pending.retain(|_, p| {
            let keep = !p.answered || p.intended + 1_000_000_000 > now;
            if let (false, Some(k), Some(md)) = (keep, p.taker, md) {
                md.borrow_mut().untraded(k);
            }
            keep
        });
    }

    /// Whatever is still unanswered is charged its latency so far.
    fn finish(mut self, now: u64) -> ConnOut {
        for p in self.pending.values().filter(|p| !p.answered) {
            self.out.unanswered += 1;
            let lat = now.saturating_sub(p.intended).max(1);
            match p.kind {
                Kind::Transfer => {
                    let _ = self.out.transfer.record(lat);
                }
                _ => {
                    let _ = self.out.ack.record(lat);
                    let _ = self
                        .out
                        .ack_uncorrected
                        .record(now.saturating_sub(p.actual).max(1));
                }
            }
        }
        self.out.last_ns = self.out.last_ns.max(self.sched.end_sends.min(now));
        self.out
    }
}

/// The feed join's part of an own report (see the module doc).
fn join_feed(j: &mut MdJoin, p: &mut Pend, r: &wire::ExecutionReport, crossing: bool, now: u64) {
    if r.order_id == 0 {
        return;
    }
    let key = taker_key(r.instrument, r.order_id, r.engine_seq);
    if crossing && r.exec_type == exec_type::NEW && p.taker.is_none() {
        // The taker's id: trade reports of this request may
        // name an own resting maker instead.
        p.taker = Some(key);
        j.order(key, p.intended, now);
    } else if crossing && r.exec_type == exec_type::TRADE {
        // Every trade of this request's input has the new order
        // as taker (the mix places no stops), whichever side
        // this report names.
        if let Some(k) = p.taker {
            j.traded(k);
        }
    } else if !(crossing && p.taker == Some(key)) {
        j.unmeasured(key);
    }
}

/// Counts an own report (rejects, fills, the fill latency) and keeps the
/// mix's resting orders; whether the request is done with.
fn record_report(
    out: &mut ConnOut,
    mix: &mut Mix,
    p: &mut Pend,
    r: &wire::ExecutionReport,
    now: u64,
) -> bool {
    let mut done = false;
    if r.exec_type == exec_type::REJECTED {
        out.rejected += 1;
    }
    if r.exec_type == exec_type::NEW && r.leaves_qty > 0 && mix.resting.len() < 4_096 {
        mix.resting.push((r.order_id, r.instrument));
    }
    if r.exec_type == exec_type::TRADE {
        out.fills += 1;
        if !p.filled {
            p.filled = true;
            if let Kind::Order { crossing: true } = p.kind {
                let _ = out.fill.record(now.saturating_sub(p.intended).max(1));
            }
        }
        done = true;
    }
    if matches!(
        r.ord_status,
        ord_status::FILLED | ord_status::CANCELED | ord_status::REJECTED | ord_status::EXPIRED
    ) {
        done = true;
    }
    if r.ord_status == ord_status::FILLED {
        mix.resting.retain(|&(id, _)| id != r.order_id);
    }
    done
}

async fn drive(
    mut c: Client,
    conn: usize,
    spec: LoadSpec,
    start: Instant,
    counters: Arc<Counters>,
    md: Option<Rc<RefCell<MdJoin>>>,
) -> Result<ConnOut, RunError> {
    let ns = |t: Instant| t.saturating_duration_since(start).as_nanos() as u64;
    let mut d = Driver {
        sched: Schedule::new(&spec, conn),
        mix: Mix::new(spec.seed, conn),
        pending: HashMap::new(),
        out: ConnOut {
            ack: histogram(),
            fill: histogram(),
            transfer: histogram(),
            ack_uncorrected: histogram(),
            sent: 0,
            answered: 0,
            unanswered: 0,
            rejected: 0,
            fills: 0,
            last_ns: 0,
        },
        counters,
        md,
        i: 0,
        inflight: 0,
        last_prune: 0,
        linger_until: 0,
    };
    loop {
        let now = ns(Instant::now());
        if d.queue_due(&mut c, now) {
            c.flush().await?;
        }
        if d.finished(now) {
            break;
        }
        let next_send = d.next_wake();
        let reply = if spec.client_spin && next_send <= now + 1_000_000 {
            tokio::select! {
                biased;
                r = c.next() => Some(r),
                _ = tokio::task::yield_now() => None,
            }
        } else {
            let wake = start + Duration::from_nanos(next_send.min(d.sched.deadline));
            tokio::select! {
                r = c.next() => Some(r),
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => None,
            }
        };
        match reply {
            None => continue,
            Some(Ok(Some(r))) => d.on_reply(&r, ns(Instant::now())),
            Some(Ok(None)) => break,
            Some(Err(e)) => return Err(e.into()),
        }
    }
    let out = d.finish(ns(Instant::now()));
    c.close().await;
    Ok(out)
}

/// How long the market-data subscription may take before the series is
/// reported unavailable.
const MD_SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The subscriber's part of a run.
#[derive(Default)]
struct MdOut {
    hist: Option<Histogram<u64>>,
    missing: u64,
    resets: u64,
    unavailable: Option<String>,
    lost: Option<String>,
}

/// Runs one open-loop load against `target`: connects every session, then
/// offers `spec.rate` for `spec.duration` and drains. The client runtime
/// runs on its own thread; this thread prints progress when asked.
pub fn run_load(target: &Target, spec: &LoadSpec) -> Result<LoadResult, RunError> {
    let counters = Arc::new(Counters::default());
    let (target2, spec2, counters2) = (target.clone(), spec.clone(), counters.clone());
    let worker = std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || -> Result<(Vec<ConnOut>, MdOut), RunError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .event_interval(if spec2.client_spin { 1 } else { 61 })
                .build()
                .map_err(io_step("client runtime"))?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let mut clients = Vec::new();
                for _ in 0..spec2.connections.max(1) {
                    let cfg = ClientConfig::new(
                        target2.addr,
                        target2.cert_der.clone(),
                        target2.token.clone(),
                    );
                    clients.push(Client::connect(&cfg).await?);
                }
                // Subscribed (snapshots in) before the clock starts.
                let sub = match tokio::time::timeout(MD_SUBSCRIBE_TIMEOUT, md_subscribe(&target2))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(RunError::MdTimeout(MD_SUBSCRIBE_TIMEOUT)),
                };
                let start = Instant::now();
                let planned = (spec2.rate as f64 * spec2.duration.as_secs_f64()) as usize;
                let stop = Rc::new(tokio::sync::Notify::new());
                let (join, reader, unavailable) = match sub {
                    Ok(c) => {
                        let j = Rc::new(RefCell::new(MdJoin::new(planned)));
                        let t =
                            tokio::task::spawn_local(md_read(c, j.clone(), start, stop.clone()));
                        (Some(j), Some(t), None)
                    }
                    Err(e) => (None, None, Some(e.to_string())),
                };
                let tasks: Vec<_> = clients
                    .into_iter()
                    .enumerate()
                    .map(|(k, c)| {
                        tokio::task::spawn_local(drive(
                            c,
                            k,
                            spec2.clone(),
                            start,
                            counters2.clone(),
                            join.clone(),
                        ))
                    })
                    .collect();
                let mut outs = Vec::new();
                for t in tasks {
                    outs.push(
                        t.await
                            .map_err(|_| RunError::Panicked("a bench session task"))??,
                    );
                }
                let mut md = MdOut {
                    unavailable,
                    ..MdOut::default()
                };
                if let (Some(join), Some(reader)) = (join, reader) {
                    // Trades reported but not yet on the feed get until the
                    // end of the drain, like replies.
                    let deadline = start + spec2.duration + spec2.drain;
                    while join.borrow().awaiting > 0
                        && !reader.is_finished()
                        && Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    stop.notify_one();
                    let _ = reader.await;
                    let mut j = join.borrow_mut();
                    j.finish(start.elapsed().as_nanos() as u64);
                    md.hist = Some(std::mem::replace(&mut j.hist, histogram()));
                    md.missing = j.missing;
                    md.resets = j.resets;
                    md.lost = j.lost.take();
                }
                Ok((outs, md))
            })
        })
        .map_err(io_step("start the bench client thread"))?;
    let t0 = Instant::now();
    let mut last = 0u64;
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if spec.progress && t0.elapsed().as_secs() > last {
            last = t0.elapsed().as_secs();
            eprintln!(
                "  [{:>3} s / {:.0} s] {}/s offered | {} sent | {} answered",
                last,
                spec.duration.as_secs_f64(),
                spec.rate,
                counters.sent.load(Ordering::Relaxed),
                counters.answered.load(Ordering::Relaxed)
            );
        }
    }
    let (outs, md) = worker
        .join()
        .map_err(|_| RunError::Panicked("the bench client thread"))??;
    let mut r = LoadResult {
        rate: spec.rate,
        seconds: 0.0,
        sent: 0,
        answered: 0,
        unanswered: 0,
        rejected: 0,
        fills: 0,
        ack: histogram(),
        fill: histogram(),
        transfer: histogram(),
        ack_uncorrected: histogram(),
        trade_md: md.hist.unwrap_or_else(histogram),
        trade_md_missing: md.missing,
        trade_md_resets: md.resets,
        trade_md_unavailable: md.unavailable,
        trade_md_lost: md.lost,
    };
    let mut last_ns = 0;
    for o in outs {
        let _ = r.ack.add(&o.ack);
        let _ = r.fill.add(&o.fill);
        let _ = r.transfer.add(&o.transfer);
        let _ = r.ack_uncorrected.add(&o.ack_uncorrected);
        r.sent += o.sent;
        r.answered += o.answered;
        r.unanswered += o.unanswered;
        r.rejected += o.rejected;
        r.fills += o.fills;
        last_ns = last_ns.max(o.last_ns);
    }
    r.seconds = (last_ns as f64 / 1e9).max(1e-3);
    Ok(r)
}

/// The percentiles of the table.
pub const QUANTILES: [(f64, &str); 5] = [
    (0.5, "p50"),
    (0.9, "p90"),
    (0.99, "p99"),
    (0.999, "p99.9"),
    (0.9999, "p99.99"),
];

fn us(v: u64) -> f64 {
    v as f64 / 1_000.0
}

/// Writes `h` (nanoseconds) in HdrHistogram's percentile-distribution text
/// format, values in microseconds, 5 ticks per half distance.
pub fn write_hgrm(h: &Histogram<u64>, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut cum = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            cum += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                writeln!(
                    out,
                    "{:12.3} {:2.12} {:10} {:14.2}",
                    us(v.value_iterated_to()),
                    q,
                    cum,
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(
                    out,
                    "{:12.3} {:2.12} {:10}",
                    us(v.value_iterated_to()),
                    q,
                    cum
                )?;
            }
        }
    }
    writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1_000.0,
        h.stdev() / 1_000.0
    )?;
    writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        us(h.max()),
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        1u64 << (2.0 * 10f64.powi(h.sigfig() as i32)).log2().ceil() as u32
    )
}

/// Series colours, in order (matplotlib's first six).
const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
];
/// Size of both plots, pixels.
const PLOT_SIZE_PX: (u32, u32) = (900, 520);
/// Percentile decades on the x axis of [`percentile_svg`]: up to 99.999%.
const DECADES: f64 = 5.0;

/// The label of `d` decades: 0 → "0%", 1 → "90%", 3 → "99.9%".
fn decade_label(d: f64) -> String {
    let n = d.round();
    if (d - n).abs() > 1e-9 {
        return format!("{:.3}%", 100.0 * (1.0 - 10f64.powf(-d)));
    }
    match n as usize {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        n => format!("99.{}%", "9".repeat(n - 2)),
    }
}

/// The x axis of a chart: its end (it starts at 0), its legend, its labels.
struct XAxis<'a> {
    max: f64,
    desc: &'a str,
    label: &'a dyn Fn(&f64) -> String,
}

/// One line chart in SVG (`plotters`): grey grid, labelled axes, no axis
/// lines (the grid is the frame), a legend box in the upper left; each
/// series is one `<polyline>` and each legend mark a `<rect>`.
fn line_chart_svg(
    title: &str,
    x: XAxis<'_>,
    (y_max, y_desc): (f64, &str),
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, PLOT_SIZE_PX).into_drawing_area();
        // Drawing into a String cannot fail except by a plotters bug.
        root.fill(&WHITE).expect("svg fill");
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 19))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x.max, 0.0..y_max)
            .expect("svg chart");
        chart
            .configure_mesh()
            .axis_style(TRANSPARENT)
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(x.label)
            .y_label_formatter(&|v| fmt_num(*v))
            .x_desc(x.desc)
            .y_desc(y_desc)
            .label_style(("sans-serif", 15))
            .draw()
            .expect("svg mesh");
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .expect("svg series")
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 2), (x + 14, y + 2)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(RGBColor(0xdd, 0xdd, 0xdd))
            .label_font(("sans-serif", 15))
            .draw()
            .expect("svg legend");
        root.present().expect("svg present");
    }
    out.push('\n');
    out
}

/// An SVG latency-by-percentile plot in the style of HdrHistogram's
/// plotter: x is the percentile on a log scale of 1/(1-p) (labels 0%, 90%,
/// 99%, … 99.999%), y is latency in microseconds; one line per series.
pub fn percentile_svg(title: &str, series: &[(&str, &Histogram<u64>)]) -> String {
    let x_of = |q: f64| (1.0 / (1.0 - q.min(0.999_99))).log10().clamp(0.0, DECADES);
    let y_max = series
        .iter()
        .map(|(_, h)| us(h.max()))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let lines: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, hist)| {
            let mut pts = Vec::new();
            if !hist.is_empty() {
                for v in hist.iter_quantiles(5) {
                    let q = v.quantile_iterated_to();
                    pts.push((x_of(q), us(v.value_iterated_to())));
                    if q >= 0.999_99 {
                        break;
                    }
                }
            }
            (name.to_string(), pts)
        })
        .collect();
    line_chart_svg(
        title,
        XAxis {
            max: DECADES,
            desc: "percentile",
            label: &|d| decade_label(*d),
        },
        (nice_ceiling(y_max), "latency (µs)"),
        &lines,
    )
}

/// An SVG of latency percentiles against achieved throughput (one line per
/// percentile), for a sweep of rates.
pub fn sweep_svg(title: &str, points: &[(f64, &Histogram<u64>)]) -> String {
    let x_max = nice_ceiling(points.iter().map(|p| p.0).fold(1.0, f64::max));
    let y_max = nice_ceiling(
        points
            .iter()
            .map(|p| us(p.1.value_at_quantile(0.999)))
            .fold(1.0, f64::max),
    );
    let lines: Vec<(String, Vec<(f64, f64)>)> = [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")]
        .iter()
        .map(|&(q, name)| {
            let pts = points
                .iter()
                .map(|(x, h)| (*x, us(h.value_at_quantile(q))))
                .collect();
            (name.to_string(), pts)
        })
        .collect();
    line_chart_svg(
        title,
        XAxis {
            max: x_max,
            desc: "achieved throughput (messages/s)",
            label: &|v| fmt_num(*v),
        },
        (y_max, "order → ack latency (µs)"),
        &lines,
    )
}

fn nice_ceiling(v: f64) -> f64 {
    let mag = 10f64.powf(v.max(1e-9).log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt_num(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 10_000.0 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The whole `bourse bench` run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Target a running server (else one is started in-process).
    pub server: Option<SocketAddr>,
    /// With `server`: the data directory holding its certificate and token;
    /// without: the in-process server's data directory (else a temporary one).
    pub data_dir: Option<PathBuf>,
    /// Durability of the in-process server.
    pub durability: Durability,
    /// The load (the rate is replaced by each rate of a sweep).
    pub load: LoadSpec,
    /// Rates to step through (empty: just `load.rate`).
    pub sweep: Vec<u64>,
    /// Output directory of the `.hgrm` and `.svg` files.
    pub out_dir: PathBuf,
    /// Round trips of the ping-pong floor.
    pub pingpong_rounds: u64,
}

/// What `run_bench` measured.
#[derive(Debug)]
pub struct BenchReport {
    /// One result per rate.
    pub runs: Vec<LoadResult>,
    /// The raw quinn ping-pong round trip, ns.
    pub floor: Histogram<u64>,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// The machine line.
    pub machine: String,
}

/// An in-process server for load: ephemeral port, generous session limits
/// (throttles, in-flight, open orders), engine idling suited to the core count.
pub fn in_process_server(
    dir: &Path,
    durability: Durability,
) -> Result<gateway::server::ServerHandle, RunError> {
    in_process_server_partitioned(dir, durability, 1)
}

/// `in_process_server` with `partitions` engine partitions (the demo
/// instruments round-robin over them, `server::partition_map`).
pub fn in_process_server_partitioned(
    dir: &Path,
    durability: Durability,
    partitions: usize,
) -> Result<gateway::server::ServerHandle, RunError> {
    let mut cfg = gateway::server::ServerConfig::new(dir);
    // The demo instruments, accounts and operator grant.
    cfg.demo = true;
    cfg.companion = Some(feeds::companion(feeds::MdConfig::default()));
    cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.pipeline.durability = durability;
    cfg.pipeline.partitions = partitions.max(1);
    if cores() < 4 {
        // Three parties on few cores: the engine parks when idle.
        cfg.pipeline.runtime.idle = runtime::UNPINNED_IDLE;
    }
    cfg.busy_poll = cores() >= 4;
    cfg.session.throttle_per_s = 100_000_000;
    cfg.session.throttle_burst = 10_000_000;
    cfg.session.max_in_flight = 1 << 16;
    cfg.session.max_open_orders = 1 << 20;
    Ok(gateway::server::start(cfg)?)
}

/// Starts (or targets) the server, measures the floor, runs every rate,
/// writes the files and prints the table to `out`.
pub fn run_bench(cfg: &BenchConfig, out: &mut impl Write) -> Result<BenchReport, RunError> {
    // Both live until the runs are over: the server's data may be in `tmp`.
    let mut tmp = None;
    let (target, mode, server) = bench_target(cfg, &mut tmp)?;
    let machine = machine_line(cfg);
    let _ = writeln!(out, "bourse bench: {mode}");
    let _ = writeln!(out, "  machine: {machine}");
    let _ = out.flush();
    // The floor, measured beside the load (not during it).
    let floor_dir = TempDir::new()?;
    let floor = histogram_of(&gateway::net::pingpong_floor(
        &floor_dir.0,
        gateway::net::PingPong {
            rounds: cfg.pingpong_rounds,
            bytes: 64,
            busy_poll: cfg.load.client_spin,
        },
    )?);
    drop(floor_dir);
    let rates = if cfg.sweep.is_empty() {
        vec![cfg.load.rate]
    } else {
        cfg.sweep.clone()
    };
    let mut runs = Vec::new();
    for &rate in &rates {
        let mut spec = cfg.load.clone();
        spec.rate = rate.max(1);
        if cfg.load.progress {
            eprintln!(
                "bench: {} connections, {}/s for {:.1} s",
                spec.connections,
                spec.rate,
                spec.duration.as_secs_f64()
            );
        }
        runs.push(run_load(&target, &spec)?);
    }
    drop(server);
    drop(tmp);
    let files = write_results(cfg, &runs, &floor, out)?;
    let _ = writeln!(
        out,
        "files: {}",
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(BenchReport {
        runs,
        floor,
        files,
        machine,
    })
}

/// The server to load: `--server` (its certificate and token from the data
/// directory) or one started in-process (in `tmp` when no directory is
/// given); with a line saying which.
fn bench_target(
    cfg: &BenchConfig,
    tmp: &mut Option<TempDir>,
) -> Result<(Target, String, Option<gateway::server::ServerHandle>), RunError> {
    if let Some(addr) = cfg.server {
        let dir = cfg
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("bourse-data"));
        let id = gateway::identity::load_client_identity(&dir)?;
        let token = id
            .operator_token
            .ok_or_else(|| RunError::NoOperatorToken(dir.clone()))?;
        let target = Target {
            addr,
            cert_der: id.cert_der,
            token,
        };
        let mode = format!("remote server {addr} (durability: as configured there)");
        return Ok((target, mode, None));
    }
    let dir = match &cfg.data_dir {
        Some(d) => d.clone(),
        None => tmp.insert(TempDir::new()?).0.clone(),
    };
    let s = in_process_server(&dir, cfg.durability)?;
    let id = gateway::identity::load_client_identity(&dir)?;
    let target = Target {
        addr: s.addr(),
        cert_der: id.cert_der,
        token: id
            .operator_token
            .ok_or_else(|| RunError::NoOperatorToken(dir.clone()))?,
    };
    let mode = format!(
        "in-process server, durability {} | gateway {}",
        cfg.durability,
        match s.info().pinned_core {
            Some(c) => format!("pinned to core {c}, busy-polling"),
            None => "not pinned".into(),
        }
    );
    Ok((target, mode, Some(s)))
}

/// What the machine and the client do while measuring, in one line.
fn machine_line(cfg: &BenchConfig) -> String {
    format!(
        "{} cores{} | client {}",
        cores(),
        if cfg.server.is_some() {
            " (this machine)"
        } else if cores() < 4 {
            " | engine threads park when idle (fewer than 4 cores)"
        } else {
            " | engine threads spin, pinned when a core is free"
        },
        if cfg.load.client_spin {
            "busy-polls"
        } else {
            "sleeps on the 1 ms timer between sends"
        }
    )
}

/// Prints each run's table and writes its `.hgrm` and `.svg` files, the
/// floor's `.hgrm`, and with a sweep `sweep.svg` and the sweep table;
/// returns the files written.
fn write_results(
    cfg: &BenchConfig,
    runs: &[LoadResult],
    floor: &Histogram<u64>,
    out: &mut impl Write,
) -> Result<Vec<PathBuf>, RunError> {
    std::fs::create_dir_all(&cfg.out_dir).map_err(io_path("create", &cfg.out_dir))?;
    let mut files = Vec::new();
    let mut write = |name: String, bytes: Vec<u8>| -> Result<(), RunError> {
        let p = cfg.out_dir.join(name);
        std::fs::write(&p, bytes).map_err(io_path("write", &p))?;
        files.push(p);
        Ok(())
    };
    for r in runs {
        print_table(r, floor, out);
        let tag = if runs.len() > 1 {
            format!("-{}", r.rate)
        } else {
            String::new()
        };
        // Trade → market data only when it was measured (an empty file
        // would read as a measurement).
        let md = r.trade_md_unavailable.is_none().then_some((
            "trade-market-data",
            "trade → market data",
            &r.trade_md,
        ));
        for (name, h) in [
            ("order-ack", &r.ack),
            ("order-fill", &r.fill),
            ("transfer-result", &r.transfer),
            ("order-ack-uncorrected", &r.ack_uncorrected),
        ]
        .into_iter()
        .chain(md.map(|(file, _, h)| (file, h)))
        {
            let mut b = Vec::new();
            write_hgrm(h, &mut b).map_err(io_step("encode a histogram"))?;
            write(format!("{name}{tag}.hgrm"), b)?;
        }
        let mut series = vec![
            ("order → ack", &r.ack),
            ("order → fill", &r.fill),
            ("transfer → result", &r.transfer),
        ];
        series.extend(md.map(|(_, label, h)| (label, h)));
        series.push(("ack, uncorrected", &r.ack_uncorrected));
        series.push(("quinn ping-pong", floor));
        let svg = percentile_svg(
            &format!(
                "bourse bench: {}/s offered, {:.0}/s achieved, {} connections",
                r.rate,
                r.achieved(),
                cfg.load.connections
            ),
            &series,
        );
        write(format!("latency{tag}.svg"), svg.into_bytes())?;
    }
    let mut b = Vec::new();
    write_hgrm(floor, &mut b).map_err(io_step("encode a histogram"))?;
    write("quinn-pingpong.hgrm".into(), b)?;
    if runs.len() > 1 {
        let pts: Vec<(f64, &Histogram<u64>)> =
            runs.iter().map(|r| (r.achieved(), &r.ack)).collect();
        write(
            "sweep.svg".into(),
            sweep_svg("bourse bench: latency against throughput", &pts).into_bytes(),
        )?;
        print_sweep(runs, out);
    }
    Ok(files)
}

/// The sweep's table: order → ack percentiles by offered rate.
fn print_sweep(runs: &[LoadResult], out: &mut impl Write) {
    let _ = writeln!(out, "\nsweep (order → ack, µs):");
    let _ = writeln!(
        out,
        "{:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "offered/s", "achieved/s", "p50", "p99", "p99.9", "max"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:>10} {:>10.0} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            r.rate,
            r.achieved(),
            us(r.ack.value_at_quantile(0.5)),
            us(r.ack.value_at_quantile(0.99)),
            us(r.ack.value_at_quantile(0.999)),
            us(r.ack.max())
        );
    }
}

/// Prints one run's percentile table (µs) with ratios to the floor.
pub fn print_table(r: &LoadResult, floor: &Histogram<u64>, out: &mut impl Write) {
    let _ = writeln!(
        out,
        "\nrate {}/s offered | {:.0}/s achieved over {:.2} s | sent {} answered {} unanswered {} | rejected {} | taker fills {}",
        r.rate,
        r.achieved(),
        r.seconds,
        r.sent,
        r.answered,
        r.unanswered,
        r.rejected,
        r.fills
    );
    let _ = write!(out, "{:<28}", "latency µs");
    for (_, n) in QUANTILES {
        let _ = write!(out, " {n:>9}");
    }
    let _ = writeln!(out, " {:>9} {:>9}", "max", "count");
    let row = |out: &mut dyn Write, name: &str, h: &Histogram<u64>| {
        let _ = write!(out, "{name:<28}");
        for (q, _) in QUANTILES {
            let _ = write!(out, " {:>9.1}", us(h.value_at_quantile(q)));
        }
        let _ = writeln!(out, " {:>9.1} {:>9}", us(h.max()), h.len());
        if !h.is_empty() && !floor.is_empty() {
            let _ = write!(out, "{:<28}", "  × ping-pong floor");
            for (q, _) in QUANTILES {
                let f = floor.value_at_quantile(q).max(1) as f64;
                let _ = write!(out, " {:>8.1}×", h.value_at_quantile(q) as f64 / f);
            }
            let _ = writeln!(out, " {:>8.1}×", h.max() as f64 / floor.max().max(1) as f64);
        }
    };
    row(out, "order → ack", &r.ack);
    row(out, "order → fill (takers)", &r.fill);
    row(out, "transfer → result", &r.transfer);
    let _ = write!(out, "{:<28}", "quinn 64 B ping-pong floor");
    for (q, _) in QUANTILES {
        let _ = write!(out, " {:>9.1}", us(floor.value_at_quantile(q)));
    }
    let _ = writeln!(out, " {:>9.1} {:>9}", us(floor.max()), floor.len());
    match &r.trade_md_unavailable {
        Some(why) => {
            let _ = writeln!(out, "{:<28} unavailable: {why}", "trade → market data");
        }
        None => {
            row(out, "trade → market data", &r.trade_md);
            let _ = writeln!(
                out,
                "  (taker's first trade message at a separate subscriber: {} missing, charged at the drain's end | {} feed resets{})",
                r.trade_md_missing,
                r.trade_md_resets,
                match &r.trade_md_lost {
                    Some(why) => format!("; feed lost: {why}"),
                    None => String::new(),
                }
            );
        }
    }
    let _ = writeln!(
        out,
        "uncorrected order → ack (from actual send, what a closed-loop tool reports): p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}",
        us(r.ack_uncorrected.value_at_quantile(0.5)),
        us(r.ack_uncorrected.value_at_quantile(0.99)),
        us(r.ack_uncorrected.value_at_quantile(0.999)),
        us(r.ack_uncorrected.max())
    );
}

/// One run as JSON (latencies in µs).
pub fn result_json(r: &LoadResult, floor: &Histogram<u64>) -> serde_json::Value {
    let pct = |h: &Histogram<u64>| {
        let mut m = serde_json::Map::new();
        for (q, n) in QUANTILES {
            m.insert(n.into(), us(h.value_at_quantile(q)).into());
        }
        m.insert("max".into(), us(h.max()).into());
        m.insert("count".into(), h.len().into());
        serde_json::Value::Object(m)
    };
    serde_json::json!({
        "rate_offered": r.rate,
        "rate_achieved": r.achieved(),
        "seconds": r.seconds,
        "sent": r.sent,
        "answered": r.answered,
        "unanswered": r.unanswered,
        "rejected": r.rejected,
        "order_ack_us": pct(&r.ack),
        "order_fill_us": pct(&r.fill),
        "transfer_result_us": pct(&r.transfer),
        "order_ack_uncorrected_us": pct(&r.ack_uncorrected),
        "pingpong_floor_us": pct(floor),
        "trade_market_data_us": match r.trade_md_unavailable {
            Some(_) => serde_json::Value::Null,
            None => pct(&r.trade_md),
        },
        "trade_market_data_missing": r.trade_md_missing,
        "trade_market_data_resets": r.trade_md_resets,
        "trade_market_data_unavailable": r.trade_md_unavailable,
        "trade_market_data_lost": r.trade_md_lost,
    })
}

/// A temporary directory removed on drop (no dependency on `tempfile`).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, RunError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "bourse-bench-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        std::fs::create_dir_all(&p).map_err(io_path("create", &p))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A latency histogram (ns, 1 ns .. 60 s, 3 significant digits) of samples.
pub fn histogram_of(samples_ns: &[u64]) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    for &s in samples_ns {
        h.saturating_record(s.max(1));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_has_the_columns_and_footer() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            h.record(v * 1_000).unwrap();
        }
        let mut b = Vec::new();
        write_hgrm(&h, &mut b).unwrap();
        let s = String::from_utf8(b).unwrap();
        assert!(s.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(s.contains("#[Mean    ="));
        assert!(s.contains("Total count    =         1000]"));
        let last_data = s.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert!(last_data.contains("1.000000000000"), "{last_data}");
        let svg = percentile_svg("t", &[("a", &h)]);
        assert!(svg.contains("<polyline") && svg.contains("99.99%"));
        for (d, label) in [(0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (5.0, "99.999%")] {
            assert_eq!(decade_label(d), label);
        }
        let sweep = sweep_svg("s", &[(1_000.0, &h), (2_000.0, &h)]);
        assert_eq!(sweep.matches("<polyline").count(), 3, "p50, p99, p99.9");
    }

    #[test]
    fn md_join_pairs_reports_and_feed_trades_in_either_order() {
        let mut j = MdJoin::new(0);
        // Report first, then the feed (a taker's later trades are ignored).
        j.order((1, 10, 100), 1_000, 1_500);
        j.traded((1, 10, 100));
        assert_eq!(j.awaiting, 1);
        j.feed_trade((1, 10, 100), 5_000);
        j.feed_trade((1, 10, 100), 5_100);
        assert_eq!((j.hist.len(), j.awaiting), (1, 0));
        assert!(j.hist.equivalent(j.hist.max(), 4_000));
        assert!(j.seen.is_empty(), "the second trade of a taker is not kept");
        // Feed first, then the report.
        j.feed_trade((2, 11, 101), 9_000);
        j.order((2, 11, 101), 2_000, 9_500);
        assert_eq!(j.hist.len(), 2);
        assert!(j.hist.equivalent(j.hist.max(), 7_000));
        // A rested crossing order later crossing through a replace (another
        // input) is not credited to the original send.
        j.order((1, 12, 102), 3_000, 3_500);
        j.feed_trade((1, 12, 250), 60_000);
        assert_eq!(j.hist.len(), 2);
        j.unmeasured((1, 12, 250));
        j.untraded((1, 12, 102));
        assert!(j.expect.is_empty() && j.seen.is_empty());
        // Traded, never on the feed: charged at the end; untraded: not.
        j.order((2, 13, 103), 4_000, 4_500);
        j.traded((2, 13, 103));
        j.order((2, 14, 104), 4_000, 4_500);
        j.finish(1_004_000);
        assert_eq!((j.hist.len(), j.missing), (3, 1));
        assert!(j.hist.equivalent(j.hist.max(), 1_000_000));
    }

    #[test]
    fn md_join_is_bounded() {
        let mut j = MdJoin::new(0);
        let cap = j.cap as u64;
        for i in 0..3 * cap {
            j.feed_trade((1, i, i), i); // trades of takers the bench never sees
        }
        assert!(j.seen.len() as u64 <= cap);
        // Past the cap a crossing order is charged at once, not kept.
        for i in 0..cap + 5 {
            j.order((2, i, i), 0, 7_000);
        }
        assert_eq!(j.expect.len() as u64, cap);
        assert_eq!((j.missing, j.hist.len()), (5, 5));
    }

    #[test]
    fn md_subscription_failure_is_an_error_not_a_panic() {
        let dir = TempDir::new().unwrap();
        let server = in_process_server(&dir.0, Durability::None).expect("server");
        let id = gateway::identity::load_client_identity(&dir.0).unwrap();
        let target = Target {
            addr: server.addr(),
            cert_der: id.cert_der,
            token: "not-a-token".into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(async {
            tokio::time::timeout(MD_SUBSCRIBE_TIMEOUT, md_subscribe(&target)).await
        });
        match r {
            Ok(Err(why)) => assert!(
                matches!(why, RunError::MdRefused(_) | RunError::Md(_)),
                "{why}"
            ),
            Ok(Ok(_)) => panic!("subscribed with a bad token"),
            Err(_) => panic!("no answer to a bad token"),
        }
        drop(server);
    }
}
