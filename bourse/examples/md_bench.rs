//! Market-data fan-out benchmark: one publishing core fanning out to 1, 10
//! and 100 subscribers over loopback QUIC at a fixed update rate, beside a
//! raw quinn fan-out of the same bytes measured in the same run.
//!
//! Publisher thread (a current-thread runtime, as in `bourse serve`): a real
//! `Engine` applies one resting order per update on the schedule; its events
//! go through `MdHub` (feed builder, encode once, per-subscriber queues and
//! connection tasks, `bourse-md/1`) exactly as market data's consumer hands
//! them over. Latency runs from the moment the input is handed to the engine
//! (the engine event) to the moment a subscriber has decoded the record's L3
//! `add`. Every order has a unique quantity, which names its send time.
//!
//! Raw floor: the same publisher thread shape, but each update is the same
//! encoded L3 record written straight to every subscriber's QUIC stream
//! (records due together are written together, one write per subscriber, as
//! the hub's flush does), and the subscribers decode it the same way: the
//! cost of QUIC fan-out itself, with no feed builder, queues or tasks.
//!
//! Also measured: publisher CPU time per delivered message (from
//! `/proc/thread-self/schedstat`) — encode-once fan-out must not cost more
//! per message as subscribers are added, beyond the per-packet cost; and
//! one stalled subscriber (connected, subscribed, never reading) among 10:
//! the other nine's percentiles beside a run of 10 healthy ones.
//!
//! Columns beside the percentiles: `p99 ×` (md p99 / raw p99), publisher
//! CPU ns per delivered message, how busy the subscriber thread was (near
//! 100%: the subscribers, not the fan-out, are being measured) and packets
//! the server's QUIC connections declared lost (each costs a retransmission
//! timeout).
//!
//! Only durable events are published in the server; here the engine runs
//! without a journal, so this measures fan-out, not fsync.
//!
//! `cargo run --release -p bourse --example md_bench -- [RATE [SECONDS [SUBS,…]]]`
//! (defaults 10,000 updates/s, 5 s, 1,10,100). Quote ratios to the raw
//! floor: the machine is shared.

use engine::{
    ClientOrderId, Command, Engine, EngineConfig, Input, InstrumentId, NewOrder, OrderType,
    OwnerId, Price, Qty, Seq, Side, Stp, Tif, Timestamp,
};
use feeds::wire as fw;
use feeds::{Body, Channel, Flags, L3Update, MdClient, MdConfig, MdHub, MdItem, Message};
use gateway::net::{self, Tuning};
use gateway::session::{Auth, Perms};
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const TOKEN: &str = "md-bench-reader";
const INSTRUMENT: u32 = 1;

/// One measurement.
struct Outcome {
    /// Healthy subscribers × updates.
    expected: u64,
    /// Records the healthy subscribers decoded.
    delivered: u64,
    /// Engine event (or raw stamp) → decoded at a healthy subscriber, ns.
    lat: Histogram<u64>,
    /// Publisher thread CPU over the run, ns (0 when unreadable).
    cpu_ns: u64,
    /// Hub counters (md runs only): resets, slow disconnects.
    resets: u64,
    slow: u64,
    /// Share of one core the subscriber thread used (1.0: saturated, so
    /// the latencies measure the subscribers, not the fan-out).
    sub_busy: f64,
    /// Packets the server's QUIC connections declared lost (each costs a
    /// retransmission timeout: the long tail when sockets overflow).
    lost: u64,
}

impl Outcome {
    fn us(&self, q: f64) -> f64 {
        self.lat.value_at_quantile(q) as f64 / 1_000.0
    }
    fn cpu_per_msg_ns(&self) -> f64 {
        self.cpu_ns as f64 / self.delivered.max(1) as f64
    }
}

#[derive(Clone, Copy)]
struct Spec {
    subs: usize,
    stalled: usize,
    rate: u64,
    secs: u64,
}

impl Spec {
    fn total(&self) -> u64 {
        self.rate * self.secs
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rate: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let subs: Vec<usize> = args
        .get(3)
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 10, 100]);
    let dir = tempfile::tempdir().expect("temp dir");
    let id = gateway::identity::ensure_server_identity(dir.path()).expect("identity");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "md_bench: {rate} updates/s for {secs} s, L3, one publishing thread, {cores} cores; latency µs, engine event → decoded at subscriber"
    );
    println!(
        "{:>5} {:>15} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>7} | {:>9} {:>9} | {:>9} | {:>9}",
        "subs",
        "delivered",
        "md p50",
        "md p99",
        "md p99.9",
        "md max",
        "raw p50",
        "raw p99",
        "raw p99.9",
        "p99 ×",
        "md ns/msg",
        "raw ns/msg",
        "sub core",
        "lost pkts"
    );
    for &n in &subs {
        let spec = Spec {
            subs: n,
            stalled: 0,
            rate,
            secs,
        };
        let m = run_md(&id, spec);
        let r = run_raw(&id, spec);
        println!(
            "{n:>5} {:>15} | {:>8.1} {:>8.1} {:>8.1} {:>8.1} | {:>8.1} {:>8.1} {:>8.1} | {:>6.2}× | {:>9.0} {:>9.0} | {:>3.0}%/{:>3.0}% | {:>4}/{:<4}{}",
            format!("{}/{}", m.delivered, m.expected),
            m.us(0.5),
            m.us(0.99),
            m.us(0.999),
            m.lat.max() as f64 / 1_000.0,
            r.us(0.5),
            r.us(0.99),
            r.us(0.999),
            m.us(0.99) / r.us(0.99).max(1e-3),
            m.cpu_per_msg_ns(),
            r.cpu_per_msg_ns(),
            m.sub_busy * 100.0,
            r.sub_busy * 100.0,
            m.lost,
            r.lost,
            if m.resets + m.slow > 0 {
                format!("  (resets {}, slow disconnects {})", m.resets, m.slow)
            } else {
                String::new()
            },
        );
    }
    // One stalled subscriber among ten.
    let base = run_md(
        &id,
        Spec {
            subs: 10,
            stalled: 0,
            rate,
            secs,
        },
    );
    let stalled = run_md(
        &id,
        Spec {
            subs: 10,
            stalled: 1,
            rate,
            secs,
        },
    );
    println!("stalled subscriber: 10 subscribers, one of them never reads");
    for (name, o) in [("10 healthy", &base), ("9 healthy + 1 stalled", &stalled)] {
        println!(
            "  {name:<22} delivered {:>9}/{:<9} p50 {:>7.1} p99 {:>7.1} p99.9 {:>7.1} (resets {}, slow disconnects {})",
            o.delivered,
            o.expected,
            o.us(0.5),
            o.us(0.99),
            o.us(0.999),
            o.resets,
            o.slow
        );
    }
    println!(
        "  p99 of the others changed by {:+.1}%",
        (stalled.us(0.99) / base.us(0.99).max(1e-3) - 1.0) * 100.0
    );
}

/// Nanoseconds of CPU this thread has used (Linux schedstat; 0 elsewhere).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn order(i: u64) -> Command {
    Command::NewOrder(NewOrder {
        owner: OwnerId(1 + i % 2),
        instrument: InstrumentId(INSTRUMENT),
        client_order_id: ClientOrderId(i + 1),
        // Buys below, sells above: nothing crosses, every update is one L3 add.
        side: if i.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        },
        order_type: OrderType::Limit,
        price: Some(Price(if i.is_multiple_of(2) {
            999_000 - (i % 64) * 10
        } else {
            1_001_000 + (i % 64) * 10
        })),
        // The unique quantity names the update at the subscriber.
        qty: Qty(i + 1),
        tif: Tif::Gtc,
        expire_at: None,
        post_only: false,
        stp: Stp::None,
        display_qty: None,
        trigger_price: None,
    })
}

/// The record of update `i` as the hub encodes it (for the raw floor).
fn record(i: u64, out: &mut Vec<u8>) {
    let m = Message {
        instrument: InstrumentId(INSTRUMENT),
        channel_seq: i + 1,
        instrument_seq: i + 1,
        engine_seq: Seq(i + 2),
        flags: Flags::default(),
        body: Body::L3(L3Update::Add {
            order_id: i + 1,
            side: Side::Buy,
            price: Price(999_000),
            qty: Qty(i + 1),
        }),
    };
    fw::encode(&m, out);
}

/// The update a decoded L3 add stands for.
fn update_of(m: &Message) -> Option<usize> {
    match m.body {
        Body::L3(L3Update::Add { qty, .. }) => Some(qty.0 as usize - 1),
        _ => None,
    }
}

/// What the subscriber side shares with the publisher.
struct Shared {
    epoch: Instant,
    /// Stamp of update i (ns since `epoch`).
    sent: Vec<AtomicU64>,
    /// Subscribers ready (snapshot in hand, or connected for the raw run).
    ready: AtomicUsize,
    /// Healthy subscribers finished.
    done: AtomicUsize,
    stop: AtomicBool,
}

impl Shared {
    fn new(total: u64) -> Arc<Shared> {
        Arc::new(Shared {
            epoch: Instant::now(),
            sent: (0..total).map(|_| AtomicU64::new(0)).collect(),
            ready: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        })
    }
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
    fn stamp(&self, i: u64) {
        self.sent[i as usize].store(self.now(), Ordering::Release);
    }
    fn latency(&self, i: usize) -> Option<u64> {
        let t = self.sent.get(i)?.load(Ordering::Acquire);
        (t > 0).then(|| self.now().saturating_sub(t).max(1))
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds")
}

/// The publisher's schedule: update `i` is due `i / rate` after the start.
/// Each round publishes everything due, then sleeps until the next update is
/// due (the connection tasks share the thread; tokio's timer ticks in
/// milliseconds, so updates leave in bursts, as they would from a router
/// woken by a burst of engine outputs). Latency starts at the publish, not
/// at the due time: this measures fan-out, not the timer.
struct Schedule {
    gap_ns: f64,
    start: tokio::time::Instant,
    total: u64,
    next: u64,
}

impl Schedule {
    /// Waits for every subscriber to be ready, then starts the clock.
    async fn start(sh: &Shared, spec: Spec) -> Schedule {
        while sh.ready.load(Ordering::Acquire) < spec.subs {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Schedule {
            gap_ns: 1e9 / spec.rate.max(1) as f64,
            start: tokio::time::Instant::now(),
            total: spec.total(),
            next: 0,
        }
    }

    fn due(&self, i: u64) -> tokio::time::Instant {
        self.start + Duration::from_nanos((i as f64 * self.gap_ns) as u64)
    }

    /// The updates due now (empty when finished).
    fn round(&mut self) -> std::ops::Range<u64> {
        let now = tokio::time::Instant::now();
        let from = self.next;
        while self.next < self.total && self.due(self.next) <= now {
            self.next += 1;
        }
        from..self.next
    }

    /// Sleeps until the next update is due; false when all are published.
    async fn wait(&self) -> bool {
        if self.next >= self.total {
            return false;
        }
        tokio::time::sleep_until(self.due(self.next)).await;
        true
    }
}

/// After the last update: waits (sleeping, so the CPU figure stays honest)
/// for the healthy subscribers, at most 10 s, then tells everyone to stop.
async fn finish(sh: &Shared, spec: Spec) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sh.done.load(Ordering::Acquire) < spec.subs - spec.stalled && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sh.stop.store(true, Ordering::Release);
}

fn run_md(id: &gateway::identity::ServerIdentity, spec: Spec) -> Outcome {
    let sh = Shared::new(spec.total());
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let (cert, key) = (id.cert_der.clone(), id.key_der.clone());
    let sh2 = sh.clone();
    let publisher = std::thread::Builder::new()
        .name("md-publisher".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let tuning = Tuning::default();
                let sc = net::server_config(&cert, &key, fw::ALPN, &tuning).expect("tls");
                let ep = net::server_endpoint("127.0.0.1:0".parse().expect("addr"), sc, &tuning)
                    .expect("endpoint");
                addr_tx.send(ep.local_addr().expect("addr")).expect("send");
                let auth = Arc::new(Auth::new());
                let perms = Perms {
                    read: true,
                    ..Perms::default()
                };
                auth.add_token(TOKEN, Vec::new(), perms);
                let hub = Rc::new(RefCell::new(MdHub::new(MdConfig::default(), 1, auth)));
                let h = hub.clone();
                let ep2 = ep.clone();
                let conns: Rc<RefCell<Vec<quinn::Connection>>> = Rc::default();
                let conns2 = conns.clone();
                tokio::task::spawn_local(async move {
                    while let Some(inc) = ep2.accept().await {
                        let h = h.clone();
                        let conns = conns2.clone();
                        tokio::task::spawn_local(async move {
                            if let Ok(conn) = inc.await {
                                conns.borrow_mut().push(conn.clone());
                                feeds::connection(h, conn).await;
                            }
                        });
                    }
                });
                let mut eng = Engine::new(EngineConfig::default());
                let mut events = eng.new_events();
                let mut seq = 0u64;
                let mut apply = |cmd: Command, hub: &mut MdHub| {
                    seq += 1;
                    let input = Input {
                        seq: Seq(seq),
                        now: Timestamp(seq),
                        command: cmd,
                    };
                    eng.apply(&input, &mut events);
                    hub.on_input(
                        0,
                        Seq(seq),
                        Some(&cmd),
                        events.iter().as_slice(),
                        feeds::now_ns(),
                    );
                };
                apply(
                    Command::AddInstrument(bourse::loadgen::load_instrument()),
                    &mut hub.borrow_mut(),
                );
                let mut sched = Schedule::start(&sh2, spec).await;
                let cpu0 = thread_cpu_ns();
                loop {
                    for i in sched.round() {
                        sh2.stamp(i);
                        apply(order(i), &mut hub.borrow_mut());
                    }
                    if !sched.wait().await {
                        break;
                    }
                }
                finish(&sh2, spec).await;
                let cpu = thread_cpu_ns().saturating_sub(cpu0);
                let st = hub.borrow().stats();
                let lost = conns
                    .borrow()
                    .iter()
                    .map(|c| c.stats().path.lost_packets)
                    .sum::<u64>();
                ep.close(0u32.into(), b"done");
                (cpu, st.resets, st.slow_disconnects, lost)
            })
        });
    let publisher = publisher.expect("publisher thread");
    let addr = addr_rx.recv().expect("publisher started");
    let (delivered, lat, sub_busy) = subscribers(spec, &sh, |healthy| {
        let cert = id.cert_der.clone();
        let sh = sh.clone();
        async move {
            let mut c = MdClient::connect(addr, &cert, TOKEN, &Tuning::default())
                .await
                .expect("connect");
            c.subscribe(INSTRUMENT, Channel::L3)
                .await
                .expect("subscribe");
            let mut h = hist();
            let mut got = 0u64;
            if !healthy {
                // Subscribed and then never reads: its flow-control window fills.
                sh.ready.fetch_add(1, Ordering::AcqRel);
                while !sh.stop.load(Ordering::Acquire) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                return (0, h, c);
            }
            let total = spec.total();
            let mut counted = false;
            // Ends when all arrived or when the publisher closes (no timer
            // per record: it would cost the subscriber more than the record).
            while got < total {
                match c.next().await {
                    Ok(MdItem::Snapshot(_)) if !counted => {
                        counted = true;
                        sh.ready.fetch_add(1, Ordering::AcqRel);
                    }
                    Ok(MdItem::Message(m)) => {
                        if let Some(l) = update_of(&m).and_then(|i| sh.latency(i)) {
                            let _ = h.record(l);
                            got += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            sh.done.fetch_add(1, Ordering::AcqRel);
            (got, h, c)
        }
    });
    let (cpu_ns, resets, slow, lost) = publisher.join().expect("publisher");
    Outcome {
        expected: spec.total() * (spec.subs - spec.stalled) as u64,
        delivered,
        lat,
        cpu_ns,
        resets,
        slow,
        sub_busy,
        lost,
    }
}

fn run_raw(id: &gateway::identity::ServerIdentity, spec: Spec) -> Outcome {
    let sh = Shared::new(spec.total());
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let (cert, key) = (id.cert_der.clone(), id.key_der.clone());
    let sh2 = sh.clone();
    let publisher = std::thread::Builder::new()
        .name("raw-publisher".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let tuning = Tuning::default();
                let sc = net::server_config(&cert, &key, b"raw", &tuning).expect("tls");
                let ep = net::server_endpoint("127.0.0.1:0".parse().expect("addr"), sc, &tuning)
                    .expect("endpoint");
                addr_tx.send(ep.local_addr().expect("addr")).expect("send");
                let mut streams = Vec::new();
                for _ in 0..spec.subs {
                    let conn = ep.accept().await.expect("incoming").await.expect("conn");
                    let (send, recv) = conn.accept_bi().await.expect("stream");
                    streams.push((conn, send, recv));
                }
                let mut sched = Schedule::start(&sh2, spec).await;
                let cpu0 = thread_cpu_ns();
                let mut batch = Vec::with_capacity(64 << 10);
                loop {
                    // Records due together are written together, once per
                    // subscriber (the hub's flush does the same).
                    batch.clear();
                    for i in sched.round() {
                        sh2.stamp(i);
                        record(i, &mut batch);
                    }
                    if !batch.is_empty() {
                        for (_, s, _) in streams.iter_mut() {
                            let _ = s.write_all(&batch).await;
                        }
                    }
                    if !sched.wait().await {
                        break;
                    }
                }
                finish(&sh2, spec).await;
                let cpu = thread_cpu_ns().saturating_sub(cpu0);
                let lost = streams
                    .iter()
                    .map(|(c, _, _)| c.stats().path.lost_packets)
                    .sum::<u64>();
                ep.close(0u32.into(), b"done");
                drop(streams);
                (cpu, lost)
            })
        });
    let publisher = publisher.expect("publisher thread");
    let addr = addr_rx.recv().expect("publisher started");
    let (delivered, lat, sub_busy) = subscribers(spec, &sh, |_| {
        let cert = id.cert_der.clone();
        let sh = sh.clone();
        async move {
            let tuning = Tuning::default();
            let cc = net::client_config(&cert, b"raw", &tuning).expect("tls");
            let ep = net::client_endpoint(addr, cc, &tuning).expect("endpoint");
            let conn = ep
                .connect(addr, gateway::identity::SERVER_NAME)
                .expect("connect")
                .await
                .expect("handshake");
            let (mut send, mut recv) = conn.open_bi().await.expect("stream");
            // The stream exists for the server once it carries a byte.
            send.write_all(&[0]).await.expect("open");
            sh.ready.fetch_add(1, Ordering::AcqRel);
            let mut h = hist();
            let mut got = 0u64;
            let mut buf: Vec<u8> = Vec::with_capacity(256 << 10);
            let total = spec.total();
            while got < total {
                let Ok(Some(c)) = recv.read_chunk(256 << 10, true).await else {
                    break;
                };
                buf.extend_from_slice(&c.bytes);
                let mut at = 0;
                while let Ok((m, n)) = fw::decode(&buf[at..]) {
                    at += n;
                    if let Some(l) = update_of(&m).and_then(|i| sh.latency(i)) {
                        let _ = h.record(l);
                        got += 1;
                    }
                }
                buf.drain(..at);
            }
            sh.done.fetch_add(1, Ordering::AcqRel);
            (got, h, (ep, conn, send))
        }
    });
    let (cpu_ns, lost) = publisher.join().expect("publisher");
    Outcome {
        expected: spec.total() * spec.subs as u64,
        delivered,
        lat,
        cpu_ns,
        resets: 0,
        slow: 0,
        sub_busy,
        lost,
    }
}

/// Runs `spec.subs` subscriber tasks (the first `spec.stalled` of them
/// stalled) on this thread's runtime; sums what the healthy ones measured.
fn subscribers<F, Fut, K>(spec: Spec, sh: &Arc<Shared>, make: F) -> (u64, Histogram<u64>, f64)
where
    F: Fn(bool) -> Fut,
    Fut: std::future::Future<Output = (u64, Histogram<u64>, K)> + 'static,
    K: 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let _ = sh;
    let (cpu0, t0) = (thread_cpu_ns(), Instant::now());
    let (n, all) = local.block_on(&rt, async {
        let tasks: Vec<_> = (0..spec.subs)
            .map(|k| tokio::task::spawn_local(make(k >= spec.stalled)))
            .collect();
        let mut all = hist();
        let mut n = 0;
        let mut keep = Vec::new();
        for t in tasks {
            let (got, h, k) = t.await.expect("subscriber");
            n += got;
            all.add(&h).expect("histogram");
            keep.push(k);
        }
        (n, all)
    });
    let busy = thread_cpu_ns().saturating_sub(cpu0) as f64 / t0.elapsed().as_nanos() as f64;
    (n, all, busy)
}
