//! Market data over loopback QUIC (`bourse-md/1`): an in-process server
//! (durability none, temporary data directory, ephemeral port), orders from
//! `gateway::client`, subscribers from `feeds::MdClient`.

mod support;

use bourse::local_cluster::LocalCluster;
use bourse::metrics::{DisconnectReason, MetricsState};
use engine::rng::SplitMix64;
use engine::Side;
use feeds::Channel;
use feeds::{md_close, Ctl, FeedView, MdClient, MdConfig, MdItem};
use gateway::client::{limit, Client, ClientConfig, Reply};
use gateway::identity::load_client_identity;
use gateway::net::Tuning;
use gateway::server::{self, ServerConfig, ServerHandle};
use gateway::wire::exec_type;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const BTC: u32 = 1;
/// The demo's settling instrument: a buy holds price × qty of USD.
const EUR_USD: u32 = 3;

struct TestServer {
    handle: ServerHandle,
    cert: Vec<u8>,
    token: String,
    _dir: tempfile::TempDir,
}

fn start(md: MdConfig) -> TestServer {
    start_with(md, None)
}

fn start_with(md: MdConfig, metrics: Option<Arc<MetricsState>>) -> TestServer {
    start_partitioned(md, metrics, 1)
}

fn start_partitioned(
    md: MdConfig,
    metrics: Option<Arc<MetricsState>>,
    partitions: usize,
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path());
    // The demo instruments, accounts and operator grant.
    cfg.demo = true;
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.pipeline.durability = journal::Durability::None;
    cfg.pipeline.runtime.pin = false;
    cfg.pipeline.runtime.idle = runtime::IdleStrategy::Yield;
    cfg.companion = Some(feeds::companion(md));
    cfg.metrics = metrics.map(|m| m as Arc<dyn gateway::counters::ServerMetrics>);
    cfg.pipeline.partitions = partitions;
    let handle = server::start(cfg).unwrap();
    let id = load_client_identity(dir.path()).unwrap();
    TestServer {
        handle,
        cert: id.cert_der,
        token: id.operator_token.unwrap(),
        _dir: dir,
    }
}

impl TestServer {
    async fn trader(&self, session_id: u64) -> Client {
        let mut c = ClientConfig::new(self.handle.addr(), self.cert.clone(), self.token.clone());
        c.session_id = session_id;
        Client::connect(&c).await.unwrap()
    }

    /// A live subscriber of one book channel with small receive windows,
    /// so a backlog shows on the server as soon as it stops reading.
    async fn tight_subscriber(
        &self,
        ch: Channel,
        stream_window_bytes: u32,
        connection_window_bytes: u32,
    ) -> (MdClient, FeedView) {
        let tight = Tuning {
            stream_window_bytes,
            connection_window_bytes,
            ..Tuning::default()
        };
        let mut c = MdClient::connect(self.handle.addr(), &self.cert, &self.token, &tight)
            .await
            .unwrap();
        let mut v = FeedView::default();
        v.track(BTC, ch);
        c.subscribe(BTC, ch).await.unwrap();
        pump(&mut c, &mut v, |v| v.books.values().all(|b| b.is_live())).await;
        (c, v)
    }

    async fn subscriber(&self, channels: &[Channel]) -> (MdClient, FeedView) {
        subscriber_at(self.handle.addr(), &self.cert, &self.token, channels).await
    }
}

/// A subscriber of BTC's `channels` at the server at `addr`.
async fn subscriber_at(
    addr: std::net::SocketAddr,
    cert: &[u8],
    token: &str,
    channels: &[Channel],
) -> (MdClient, FeedView) {
    let mut c = MdClient::connect(addr, cert, token, &Tuning::default())
        .await
        .unwrap();
    let mut v = FeedView::default();
    for inst in [BTC, EUR_USD] {
        for &ch in channels {
            v.track(inst, ch);
            c.subscribe(inst, ch).await.unwrap();
        }
    }
    (c, v)
}

/// Deterministic orders around 60,000 (some cross, most rest); waits until
/// the last one is acknowledged, so its outputs are published.
async fn trade(c: &mut Client, n: u64, salt: u64) {
    let mut last = 0;
    let mut rng = SplitMix64(salt);
    for i in 0..n {
        let x = rng.next_u64();
        let buy = x.is_multiple_of(2);
        let off = (x >> 8) % 40;
        let (side, price, owner) = if buy {
            (Side::Buy, 59_990 - off + (x >> 20) % 12, 1)
        } else {
            (Side::Sell, 60_010 + off - (x >> 24) % 12, 2)
        };
        let qty = 1 + (x >> 32) % 9;
        last = c.order(limit(
            owner,
            BTC,
            side,
            price,
            qty,
            salt * 1_000_000 + i + 1,
        ));
        if i % 64 == 63 {
            c.flush().await.unwrap();
        }
    }
    c.flush().await.unwrap();
    // The last request answered (new, trade or reject: any report for it).
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match c.next().await.unwrap().expect("stream") {
                Reply::Report(e) if e.request == last && e.exec_type != exec_type::TRADE => return,
                _ => {}
            }
        }
    })
    .await
    .expect("orders acknowledged");
}

/// Reads and applies items (answering the view's requests) until `done`.
async fn pump(c: &mut MdClient, v: &mut FeedView, mut done: impl FnMut(&FeedView) -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !done(v) {
            let item = c.next().await.unwrap();
            if let Some(req) = v.apply(&item) {
                c.request(&req).await.unwrap();
            }
        }
    })
    .await
    .expect("subscriber caught up");
}

/// The server's current books: a fresh subscriber's snapshots.
/// Whether `v`'s book of `instrument` on `channel` has a bid resting.
fn has_bids(v: &FeedView, instrument: u32, channel: Channel) -> bool {
    !v.books[&(instrument, channel as u8)]
        .levels(Side::Buy)
        .is_empty()
}

async fn reference(s: &TestServer) -> FeedView {
    reference_at(s.handle.addr(), &s.cert, &s.token).await
}

/// The current books of the server at `addr`.
async fn reference_at(addr: std::net::SocketAddr, cert: &[u8], token: &str) -> FeedView {
    let (mut c, mut v) = subscriber_at(addr, cert, token, &[Channel::L2, Channel::L3]).await;
    pump(&mut c, &mut v, |v| v.books.values().all(|b| b.is_live())).await;
    v
}

/// Both books (BTC-USD, EUR-USD), on L2 and L3, the same.
fn same_books(a: &FeedView, b: &FeedView) {
    for inst in [BTC, EUR_USD] {
        for ch in [Channel::L2, Channel::L3] {
            let (x, y) = (&a.books[&(inst, ch as u8)], &b.books[&(inst, ch as u8)]);
            assert_eq!(x.last_seq(), y.last_seq(), "{inst} {ch:?} sequence");
            for side in [Side::Buy, Side::Sell] {
                let what = format!("{inst} {ch:?} {side:?}");
                assert_eq!(x.levels(side), y.levels(side), "{what} levels");
                if ch == Channel::L3 {
                    // Order id, price and visible size in queue order (the
                    // builders' internal priority counters differ).
                    let q = |b: &feeds::FeedView| {
                        b.books[&(inst, ch as u8)]
                            .orders()
                            .orders_in_order(side)
                            .into_iter()
                            .map(|(id, o)| (id, o.price, o.qty))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(q(a), q(b), "{what} queue");
                }
            }
        }
    }
}

fn seq(v: &FeedView, ch: Channel) -> u64 {
    v.books[&(BTC, ch as u8)].last_seq()
}

#[tokio::test(flavor = "current_thread")]
async fn subscriber_joining_mid_stream_reproduces_the_book() {
    let s = start(MdConfig::default());
    let mut t = s.trader(1).await;
    trade(&mut t, 300, 1).await;
    let (mut c, mut v) = s
        .subscriber(&[Channel::L2, Channel::L3, Channel::L1, Channel::Trades])
        .await;
    trade(&mut t, 300, 2).await;
    let r = reference(&s).await;
    assert!(seq(&r, Channel::L3) > 300);
    pump(&mut c, &mut v, |v| {
        seq(v, Channel::L3) == seq(&r, Channel::L3) && seq(v, Channel::L2) == seq(&r, Channel::L2)
    })
    .await;
    same_books(&v, &r);
    assert_eq!(v.gaps, 0);
    assert!(v.quotes.contains_key(&BTC));
    assert!(!v.trades.is_empty(), "the second batch crossed");
    // L1 agrees with the L2 top.
    let q = v.quotes[&BTC];
    let l2 = &v.books[&(BTC, Channel::L2 as u8)];
    assert_eq!(q.bid.price, l2.levels(Side::Buy).first().map(|l| l.price));
    assert_eq!(q.ask.price, l2.levels(Side::Sell).first().map(|l| l.price));
}

#[tokio::test(flavor = "current_thread")]
async fn a_dropped_message_is_detected_and_repaired() {
    let s = start(MdConfig::default());
    let mut t = s.trader(1).await;
    trade(&mut t, 50, 3).await;
    let (mut c, mut v) = s.subscriber(&[Channel::L2, Channel::L3]).await;
    trade(&mut t, 200, 4).await;
    let r = reference(&s).await;
    // Drop the 10th L3 incremental on the floor.
    let mut seen = 0;
    tokio::time::timeout(Duration::from_secs(20), async {
        while !(seq(&v, Channel::L3) == seq(&r, Channel::L3)
            && seq(&v, Channel::L2) == seq(&r, Channel::L2))
        {
            let item = c.next().await.unwrap();
            if let MdItem::Message(m) = &item {
                if m.channel() == Channel::L3 {
                    seen += 1;
                    if seen == 10 {
                        continue;
                    }
                }
            }
            if let Some(req) = v.apply(&item) {
                assert!(matches!(req, Ctl::Retransmit { .. } | Ctl::Snapshot { .. }));
                c.request(&req).await.unwrap();
            }
        }
    })
    .await
    .expect("repaired");
    assert!(v.gaps >= 1, "the hole was noticed");
    same_books(&v, &r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_does_not_hold_back_the_others() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let s = start(MdConfig {
        backlog_bytes: 1 << 20,
        backlog_age: Duration::from_millis(600),
        max_resets: 2,
        ..MdConfig::default()
    });
    let mut t = s.trader(1).await;
    // The stalled one subscribes and never reads again.
    // Small receive windows, so its backlog shows on the server at once.
    let tight = Tuning {
        stream_window_bytes: 16 << 10,
        connection_window_bytes: 32 << 10,
        ..Tuning::default()
    };
    let mut stalled = MdClient::connect(s.handle.addr(), &s.cert, &s.token, &tight)
        .await
        .unwrap();
    stalled.subscribe(BTC, Channel::L3).await.unwrap();
    stalled.subscribe(BTC, Channel::L2).await.unwrap();
    // The others read on their own tasks until told where the stream ends.
    let target = Arc::new([AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)]);
    let mut live = Vec::new();
    for _ in 0..3 {
        let (mut c, mut v) = s.subscriber(&[Channel::L3, Channel::L2]).await;
        let target = target.clone();
        live.push(tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(60), async {
                while !(seq_or0(&v, Channel::L3) == target[0].load(Ordering::Acquire)
                    && seq_or0(&v, Channel::L2) == target[1].load(Ordering::Acquire))
                {
                    let item = c.next().await.unwrap();
                    assert!(!matches!(item, MdItem::Error(_)), "{item:?}");
                    if let Some(req) = v.apply(&item) {
                        c.request(&req).await.unwrap();
                    }
                }
            })
            .await
            .expect("live subscriber caught up");
            v
        }));
    }
    // A steady flow over a few seconds: the stalled one's backlog ages.
    for round in 0..12 {
        trade(&mut t, 150, 10 + round).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let r = reference(&s).await;
    target[0].store(seq(&r, Channel::L3), Ordering::Release);
    target[1].store(seq(&r, Channel::L2), Ordering::Release);
    for h in live {
        let v = h.await.unwrap();
        same_books(&v, &r);
        assert_eq!(v.gaps, 0, "live subscribers saw every message in order");
    }
    // The stalled one was reset, then disconnected as a slow consumer.
    let why = tokio::time::timeout(Duration::from_secs(10), stalled.connection().closed())
        .await
        .expect("the stalled subscriber is disconnected");
    match why {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(
                c.error_code,
                quinn::VarInt::from_u32(md_close::SLOW_CONSUMER)
            )
        }
        other => panic!("closed with {other:?}"),
    }
}

fn seq_or0(v: &FeedView, ch: Channel) -> u64 {
    v.books.get(&(BTC, ch as u8)).map_or(0, |b| b.last_seq())
}

#[tokio::test(flavor = "current_thread")]
async fn garbage_gets_an_error_and_a_close() {
    let metrics = MetricsState::new();
    let s = start_with(MdConfig::default(), Some(metrics.clone()));
    // Garbage instead of authentication.
    let mut c = MdClient::connect(
        s.handle.addr(),
        &s.cert,
        "no-such-token",
        &Tuning::default(),
    )
    .await
    .unwrap();
    let item = c.next().await.unwrap();
    assert_eq!(item, MdItem::Error(md_close::UNAUTHORIZED));
    // Authenticated, then garbage.
    for junk in [
        vec![0xFFu8; 64],
        vec![16, 0, 0, 0, 31, 0, 2, 1, 1, 0, 0, 0, 9, 0, 0, 0], // bad channel
        vec![200, 0, 0, 0, 99, 0, 2, 1],                        // unknown template
        vec![8, 0, 0, 0, 31, 0, 7, 7],                          // bad schema
    ] {
        let (mut c, _) = s.subscriber(&[]).await;
        c.send_raw(&junk).await.unwrap();
        let item = tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(item, MdItem::Error(md_close::PROTOCOL), "{junk:?}");
        let why = tokio::time::timeout(Duration::from_secs(5), c.connection().closed())
            .await
            .expect("closed");
        assert!(matches!(why, quinn::ConnectionError::ApplicationClosed(_)));
    }
    // The server still serves.
    let mut t = s.trader(1).await;
    trade(&mut t, 20, 5).await;
    let r = reference(&s).await;
    assert!(seq(&r, Channel::L3) >= 20);
    // Each close is counted under its reason (the gateway copies the
    // market-data counters into the metrics twice a second).
    let g = &metrics.gateway;
    tokio::time::timeout(Duration::from_secs(5), async {
        while g.md_disconnects(DisconnectReason::ProtocolViolation) < 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("protocol closes counted");
    assert_eq!(g.md_disconnects(DisconnectReason::ProtocolViolation), 4);
    assert_eq!(g.md_disconnects(DisconnectReason::AuthFailed), 1);
    assert_eq!(g.md_disconnects(DisconnectReason::SlowConsumer), 0);
    assert_eq!(
        g.disconnects(DisconnectReason::AuthFailed),
        0,
        "not order entry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_l2_subscriber_is_conflated_and_converges() {
    let s = start(MdConfig {
        backlog_bytes: 1 << 20,
        backlog_age: Duration::from_millis(300),
        ..MdConfig::default()
    });
    let mut t = s.trader(1).await;
    let (mut c, mut v) = s.tight_subscriber(Channel::L2, 8 << 10, 16 << 10).await;
    // It stops reading while the book moves for a while.
    for round in 0..8 {
        trade(&mut t, 150, 40 + round).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let r = reference(&s).await;
    let mut conflated = 0u64;
    tokio::time::timeout(Duration::from_secs(20), async {
        while seq(&v, Channel::L2) != seq(&r, Channel::L2) {
            let item = c.next().await.unwrap();
            assert!(!matches!(item, MdItem::Error(_)), "{item:?}");
            if let MdItem::Message(m) = &item {
                conflated += m.flags.has(feeds::Flags::CONFLATED) as u64;
            }
            if let Some(req) = v.apply(&item) {
                c.request(&req).await.unwrap();
            }
        }
    })
    .await
    .expect("the slow subscriber converges");
    assert!(conflated > 0, "its backlog was conflated");
    let (x, y) = (&v.books[&(BTC, 2)], &r.books[&(BTC, 2)]);
    for side in [Side::Buy, Side::Sell] {
        assert_eq!(x.levels(side), y.levels(side), "{side:?}");
    }
}

/// A durable single node with market data on `dir` (the demo; `tune`
/// adjusts its configuration last).
fn durable_server(dir: &Path, tune: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut cfg = ServerConfig::new(dir);
    // The demo instruments, accounts and operator grant.
    cfg.demo = true;
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.pipeline.durability = journal::Durability::Async;
    cfg.pipeline.runtime.pin = false;
    cfg.pipeline.runtime.idle = runtime::IdleStrategy::Yield;
    cfg.companion = Some(feeds::companion(feeds::MdConfig::default()));
    tune(&mut cfg);
    let handle = server::start(cfg).unwrap();
    let id = load_client_identity(dir).unwrap();
    TestServer {
        handle,
        cert: id.cert_der,
        token: id.operator_token.unwrap(),
        _dir: tempfile::tempdir().unwrap(),
    }
}

/// Trades on a durable single node, restarts it, and returns the market
/// data before and after.
async fn restart_durable(dir: &Path, snapshot_every_bytes: u64) -> (FeedView, FeedView) {
    // Snapshots every `snapshot_every_bytes` journal bytes (0: only at
    // shutdown).
    let snapshots =
        |c: &mut ServerConfig| c.pipeline.runtime.snapshot_every_bytes = snapshot_every_bytes;
    let s = durable_server(dir, snapshots);
    let mut t = s.trader(61).await;
    trade(&mut t, 300, 7).await;
    if snapshot_every_bytes > 0 {
        // Market data answers a snapshot's mark while the node runs (it
        // may lag far behind the engine on a loaded machine).
        let part = runtime::partition_dir(dir, 0);
        // A snapshot taken while market data cannot answer its mark (its
        // books not at the mark yet) gets none: more trading takes more.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut salt = 8;
        while files_in(&part).iter().all(|n| !n.starts_with("feed-")) {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint beside the snapshots: {:?}",
                files_in(&part)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            trade(&mut t, 30, salt).await;
            salt += 1;
        }
    }
    let before = reference(&s).await;
    assert!(
        has_bids(&before, BTC, Channel::L2),
        "the test needs resting orders"
    );
    t.close().await;
    shut_down(s).await;
    let s = durable_server(dir, snapshots);
    let after = reference(&s).await;
    shut_down(s).await;
    (before, after)
}

/// Stops a test server (off the async runtime: shutdown blocks).
async fn shut_down(s: TestServer) {
    let TestServer { handle, .. } = s;
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
}

/// Places `o` and returns its first execution report.
async fn placed(c: &mut Client, o: gateway::wire::NewOrderMsg) -> gateway::wire::ExecutionReport {
    let r = c.order(o);
    c.flush().await.unwrap();
    support::ledger::reply(c, "report", |m| match m {
        Reply::Report(e) if e.request == r => Some(*e),
        _ => None,
    })
    .await
}

/// A node whose ledger outgrew its memory restarts with the same books:
/// market data's scratch engine replays the journal with the partition's
/// transfer history attached, as the real engine did, so the history
/// installs are accepted and memory evicts. (Without it the scratch ledger
/// fills at 256 transfers, the funding transfer after them fails there
/// `capacity_exceeded`, and the big order it paid for is missing from the
/// rebuilt book.)
#[tokio::test(flavor = "current_thread")]
async fn market_data_after_a_restart_follows_a_ledger_past_its_memory() {
    use support::ledger::{open_accounts, send, transfer_of, transfers, BASE};
    let dir = tempfile::tempdir().unwrap();
    let boot = || {
        durable_server(dir.path(), |c| {
            c.pipeline.engine.transfers_max = 256;
            c.pipeline.history_run_records = 48;
        })
    };
    let s = boot();
    let mut c = s.trader(71).await;
    open_accounts(&mut c).await;
    let codes = transfers(&mut c, 1..601).await;
    assert!(codes.iter().all(|&x| x == 0), "{codes:?}");
    // Owner 1 cannot pay for the big order with what the demo gave...
    let big = |coid| limit(1, EUR_USD, Side::Buy, 108, 1_000_000, coid);
    let e = placed(&mut c, big(7_000)).await;
    assert_eq!(e.exec_type, exec_type::REJECTED, "unfunded: {e:?}");
    // ...and is funded past it (from the USD issuer, account 1).
    let fund = transfer_of(BASE + 10_000, (1, 101), 100_000_000);
    assert_eq!(send(&mut c, &[fund]).await, vec![0]);
    let e = placed(&mut c, big(7_001)).await;
    assert_eq!(e.exec_type, exec_type::NEW, "the funded order rests: {e:?}");
    let before = reference(&s).await;
    assert!(
        has_bids(&before, EUR_USD, Channel::L3),
        "the funded order is on the book"
    );
    c.close().await;
    shut_down(s).await;
    let s = boot();
    let after = reference(&s).await;
    shut_down(s).await;
    same_books(&before, &after);
}

/// The names of the files in `dir`.
fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// After a restart the market data shows the recovered books, not empty
/// ones: the hub is rebuilt from the journal before anyone subscribes.
#[tokio::test(flavor = "current_thread")]
async fn market_data_after_a_restart_shows_the_recovered_books() {
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = restart_durable(dir.path(), 0).await;
    same_books(&before, &after);
}

/// A single node that took snapshots while it ran keeps market data's
/// checkpoint beside them, and a restart seeds the hub from the newest one
/// plus the journal after it, not from the whole journal: the books and
/// sequence numbers are the same as before. (Seeded from the checkpoint
/// without the journal after it, they stop at the checkpoint.)
#[tokio::test(flavor = "current_thread")]
async fn market_data_after_a_restart_starts_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = restart_durable(dir.path(), 4 << 10).await;
    let names = files_in(&runtime::partition_dir(dir.path(), 0));
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("feed-") && n.ends_with(".ckpt")),
        "a checkpoint beside the snapshots: {names:?}"
    );

    same_books(&before, &after);
}

/// A cluster node with market data and a snapshot every 16 entries.
fn md_node(cfg: &mut ServerConfig) {
    cfg.demo = true;
    cfg.pipeline.engine = engine::EngineConfig::small();
    cfg.pipeline.prefault = false;
    cfg.pipeline.runtime.idle = runtime::IdleStrategy::Park { max_sleep_us: 50 };
    cfg.companion = Some(feeds::companion(MdConfig::default()));
    if let Some(c) = &mut cfg.cluster {
        c.config.heartbeat_ms = 60;
        c.config.snapshot_every_entries = 16;
    }
}

/// `md_node` keeping no log behind a snapshot: a follower that missed
/// anything before the leader's newest snapshot is sent the snapshot.
fn md_node_short_log(cfg: &mut ServerConfig) {
    md_node(cfg);
    if let Some(c) = &mut cfg.cluster {
        c.config.log_kept_after_snapshot_entries = 0;
    }
}

/// Waits until node `n` publishes what the leader does (its L3 sequence
/// reaches the leader's), then compares every book and sequence number.
async fn same_market_data(cluster: &LocalCluster, dir: &Path, leader: u64, n: u64, what: &str) {
    let id = load_client_identity(dir).unwrap();
    let token = id.operator_token.unwrap();
    let addrs = cluster.client_addrs();
    let lead = reference_at(addrs[leader as usize - 1], &id.cert_der, &token).await;
    assert!(
        has_bids(&lead, BTC, Channel::L3),
        "the test needs resting orders"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = reference_at(addrs[n as usize - 1], &id.cert_der, &token).await;
        if seq(&v, Channel::L3) >= seq(&lead, Channel::L3) {
            same_books(&lead, &v);
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: node {n} never caught up: L3 seq {} of {}",
            seq(&v, Channel::L3),
            seq(&lead, Channel::L3)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A replica restarted after its group took a snapshot publishes the same
/// books and sequence numbers as the leader: its hub is rebuilt from the
/// snapshot's market-data checkpoint (or its journal), and what follows is
/// applied live. (Seeded from nothing, its books lacked every order
/// resting since before the snapshot.)
#[tokio::test(flavor = "current_thread")]
async fn a_restarted_replicas_market_data_covers_what_its_snapshot_covered() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(root.path(), 3, md_node).unwrap();
    let (leader, mut t) = cluster.leader(1, Duration::from_secs(20)).await.unwrap();
    for salt in 1..=40 {
        trade(&mut t, 3, salt).await;
    }
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    cluster.stop(follower);
    let dir = root.path().join(format!("n{follower}"));
    let snapshot = runtime::partition_dir(&dir, 0).join(replica::SNAPSHOT_FILE);
    assert!(
        snapshot.exists(),
        "the follower took a snapshot: {snapshot:?}"
    );
    cluster.restart(follower).unwrap();
    trade(&mut t, 3, 41).await;
    same_market_data(&cluster, &dir, leader, follower, "restarted").await;
    drop(t);
    cluster.shutdown();
}

/// A follower that fell behind the leader's purged log is sent the
/// leader's snapshot and installs it while it runs: its market data
/// follows from the checkpoint the snapshot carries — at once, and again
/// after a restart, when its journal starts after that snapshot. (Without
/// the checkpoint its books lacked everything the snapshot covered.)
#[tokio::test(flavor = "current_thread")]
async fn a_follower_that_installs_the_leaders_snapshot_publishes_the_leaders_books() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(root.path(), 3, md_node_short_log).unwrap();
    let (leader, mut t) = cluster.leader(1, Duration::from_secs(20)).await.unwrap();
    for salt in 1..=20 {
        trade(&mut t, 3, salt).await;
    }
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    cluster.stop(follower);
    // Orders that rest while it is away, then snapshots that purge them
    // from the leader's log.
    for salt in 21..=60 {
        trade(&mut t, 3, salt).await;
    }
    cluster.restart(follower).unwrap();
    trade(&mut t, 3, 61).await;
    let dir = root.path().join(format!("n{follower}"));
    same_market_data(&cluster, &dir, leader, follower, "installed").await;
    cluster.stop(follower);
    cluster.restart(follower).unwrap();
    trade(&mut t, 3, 62).await;
    same_market_data(
        &cluster,
        &dir,
        leader,
        follower,
        "restarted after the install",
    )
    .await;
    drop(t);
    cluster.shutdown();
}

/// Reads items for `quiet` after the last one arrives.
async fn drain_items(c: &mut MdClient, quiet: Duration) -> Vec<MdItem> {
    let mut got = Vec::new();
    while let Ok(item) = tokio::time::timeout(quiet, c.next()).await {
        got.push(item.unwrap());
    }
    got
}

#[tokio::test(flavor = "current_thread")]
async fn requests_over_budget_are_throttled_and_big_gaps_get_a_snapshot() {
    let s = start(MdConfig {
        requests_per_s: 2,
        requests_burst: 5,
        retransmit_max: 4,
        ..MdConfig::default()
    });
    let mut t = s.trader(1).await;
    trade(&mut t, 40, 6).await;
    let (mut c, mut v) = s.subscriber(&[Channel::L3]).await;
    pump(&mut c, &mut v, |v| v.books.values().all(|b| b.is_live())).await;
    let last = seq(&v, Channel::L3);
    assert!(last >= 40);
    // A small gap still in the ring: exactly those messages.
    let rt = |from, to| Ctl::Retransmit {
        instrument: BTC,
        channel: Channel::L3,
        from,
        to,
    };
    c.request(&rt(last - 2, last)).await.unwrap();
    let got = drain_items(&mut c, Duration::from_millis(300)).await;
    let seqs: Vec<u64> = got
        .iter()
        .filter_map(|i| match i {
            MdItem::Message(m) => Some(m.instrument_seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![last - 2, last - 1, last], "{got:?}");
    // A gap longer than retransmit_max: a snapshot instead.
    c.request(&rt(last - 9, last)).await.unwrap();
    let got = drain_items(&mut c, Duration::from_millis(300)).await;
    assert!(
        got.iter().any(|i| matches!(i, MdItem::Snapshot(_)))
            && !got.iter().any(|i| matches!(i, MdItem::Message(_))),
        "{got:?}"
    );
    // Two of the five-request burst are spent; a flood of 30 more: 3 (or 4,
    // if a token was earned meanwhile) are served, the rest are refused by
    // name with a retry time, and the connection stays up.
    for _ in 0..30 {
        c.request(&Ctl::Snapshot {
            instrument: BTC,
            channel: Channel::L3,
        })
        .await
        .unwrap();
    }
    let got = drain_items(&mut c, Duration::from_millis(300)).await;
    let snaps = got
        .iter()
        .filter(|i| matches!(i, MdItem::Snapshot(_)))
        .count();
    let throttled: Vec<u32> = got
        .iter()
        .filter_map(|i| match i {
            MdItem::Throttled {
                instrument: BTC,
                channel: Channel::L3,
                retry_after_ms,
            } => Some(*retry_after_ms),
            _ => None,
        })
        .collect();
    assert!((3..=4).contains(&snaps), "{snaps} snapshots served");
    assert_eq!(snaps + throttled.len(), 30);
    assert!(throttled.iter().all(|&ms| (1..=500).contains(&ms)));
    for item in &got {
        v.apply(item);
    }
    assert!(v.throttled >= 26);
    // Still subscribed and live: new orders reach the book.
    trade(&mut t, 10, 7).await;
    let target = last + 10;
    pump(&mut c, &mut v, |v| seq(v, Channel::L3) >= target).await;
}

/// Places a resting order and returns its (global) order id from the report.
async fn rest(c: &mut Client, instrument: u32, price: u64, coid: u64) -> u64 {
    let req = c.order(limit(1, instrument, Side::Buy, price, 1, coid));
    c.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Reply::Report(e) = c.next().await.unwrap().expect("stream") {
                if e.request == req {
                    assert_eq!(e.exec_type, exec_type::NEW, "{e:?}");
                    return e.order_id;
                }
            }
        }
    })
    .await
    .expect("acknowledged")
}

#[tokio::test(flavor = "current_thread")]
async fn feed_order_ids_are_the_global_ids_clients_see() {
    let s = start_partitioned(MdConfig::default(), None, 2);
    // Instrument 2 must live in partition 1, or this proves nothing.
    const ETH: u32 = 2;
    let mut t = s.trader(1).await;
    let before = rest(&mut t, ETH, 2_900, 1).await;
    assert_eq!(before >> 56, 1, "instrument 2 in partition 1: {before:#x}");
    let mut c = MdClient::connect(s.handle.addr(), &s.cert, &s.token, &Tuning::default())
        .await
        .unwrap();
    c.subscribe(ETH, Channel::L3).await.unwrap();
    let snap = loop {
        if let MdItem::Snapshot(x) = c.next().await.unwrap() {
            break x;
        }
    };
    assert_eq!(
        snap.orders.iter().map(|o| o.order_id).collect::<Vec<_>>(),
        vec![before],
        "snapshot ids"
    );
    let after = rest(&mut t, ETH, 2_901, 2).await;
    let added = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let MdItem::Message(m) = c.next().await.unwrap() {
                if let feeds::Body::L3(u) = m.body {
                    return u.order_id();
                }
            }
        }
    })
    .await
    .expect("an L3 add");
    assert_eq!(added, after, "incremental ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_l3_subscriber_is_reset_and_recovers_from_its_owed_snapshot() {
    let s = start(MdConfig {
        backlog_bytes: 16 << 10,
        // Long enough that a loaded CI machine does not turn the owed
        // snapshot into a slow-consumer disconnect before it reads again.
        backlog_age: Duration::from_secs(15),
        ..MdConfig::default()
    });
    let mut t = s.trader(1).await;
    let (mut c, mut v) = s.tight_subscriber(Channel::L3, 16 << 10, 32 << 10).await;
    // It stops reading while far more than its backlog bound is published
    // (about 88 bytes per L3 record), then reads again well within backlog_age.
    // Far more than the windows (48 KiB) and the bound together, however
    // the writer happened to batch what came before its stream blocked.
    trade(&mut t, 6_000, 21).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = reference(&s).await;
    let target = seq(&r, Channel::L3);
    let mut snapshots = 0;
    tokio::time::timeout(Duration::from_secs(20), async {
        while seq(&v, Channel::L3) < target {
            let item = c.next().await.unwrap();
            assert!(!matches!(item, MdItem::Error(_)), "{item:?}");
            snapshots += usize::from(matches!(item, MdItem::Snapshot(_)));
            if let Some(req) = v.apply(&item) {
                c.request(&req).await.unwrap();
            }
        }
    })
    .await
    .expect("the slow subscriber caught up");
    assert!(snapshots >= 1, "it was reset and sent a fresh snapshot");
    let book = &v.books[&(BTC, Channel::L3 as u8)];
    let reference = &r.books[&(BTC, Channel::L3 as u8)];
    assert_eq!(book.last_seq(), reference.last_seq());
    for side in [Side::Buy, Side::Sell] {
        assert_eq!(book.levels(side), reference.levels(side), "{side:?}");
    }
}
