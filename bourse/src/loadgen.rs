//! `bourse pipeline`: drives the real in-process pipeline (producer → ring →
//! engine → journal → durable output) with an open-loop, seeded order flow
//! and measures latency from each command's *intended* send time to the
//! release of its last durable output (coordinated omission corrected, as
//! wrk2 does: a stalled pipeline delays the sends, and the delay is counted).
//!
//! The producer never waits for responses. A full inbound ring is `busy`; the
//! producer keeps offering the same command (its latency keeps growing) and
//! counts the refusals, parking between offers until the journal's doorbell
//! rings (never spinning on a full ring). With `--acks` every released command is printed as
//! `ack SEQ COID` (COID 0 for non-orders), flushed per line: the crash test
//! reads these to know what was acknowledged before it kills the process.

use engine::rng::SplitMix64;
use engine::{
    Asset, ClientOrderId, Command, Event, InstrumentId, InstrumentSpec, NewOrder, OrderId,
    OrderType, OwnerId, Price, Qty, Side, Stp, Symbol, Tif,
};
use hdrhistogram::Histogram;
use runtime::SubmitError;
use runtime::{Pipeline, PipelineConfig};
use std::io::Write;
use std::time::{Duration, Instant};

/// Load settings.
#[derive(Clone, Copy, Debug)]
pub struct LoadConfig {
    /// Offered commands per second (all partitions together).
    pub rate: u64,
    /// How long to offer load.
    pub duration: Duration,
    /// Seed of the order flow.
    pub seed: u64,
    /// Print `ack SEQ COID` per released command.
    pub acks: bool,
}

/// What a run measured.
#[derive(Debug)]
pub struct LoadReport {
    /// Commands offered.
    pub offered: u64,
    /// Commands whose outputs were released.
    pub completed: u64,
    /// Times the inbound ring answered busy.
    pub busy: u64,
    /// Seconds of offering.
    pub seconds: f64,
    /// Latency from intended send to durable release, ns.
    pub latency: Histogram<u64>,
    /// Final state hashes per partition.
    pub state_hashes: Vec<u128>,
}

/// The instrument every partition trades in the load: matching only.
pub fn load_instrument() -> InstrumentSpec {
    InstrumentSpec {
        id: InstrumentId(1),
        symbol: Symbol::from_str_code("LOAD-USD").expect("symbol"),
        base: Asset::from_str_code("LOAD").expect("asset"),
        quote: Asset::from_str_code("USD").expect("asset"),
        tick: 1,
        lot_size: 1,
        qty_min: 1,
        qty_max: 1_000_000,
        reference_price: Price(1_000_000),
        band_bps: None,
        circuit_bps: None,
        circuit_window_ns: 0,
        maker_fee_bps: 0,
        taker_fee_bps: 0,
        fee_account: engine::AccountId(0),
        settle: false,
        open_orders_max: None,
        notional_max: None,
    }
}

/// Longest park of the producer on a full ring or while draining (the
/// doorbell normally wakes it sooner).
const BUSY_PARK: Duration = Duration::from_micros(200);

fn now_ns(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// One line per partition saying what recovery found.
pub(crate) fn announce_recovered(pipeline: &Pipeline, out: &mut impl Write) {
    for (i, r) in pipeline.recovered().iter().enumerate() {
        let _ = writeln!(
            out,
            "recovered p{i}: last_seq={} snapshot={:?} replayed={} truncated_tail={} moved_aside={} state_hash={:032x}",
            r.last_seq, r.snapshot_seq, r.replayed, r.truncated_tail, r.moved_aside.len(), r.state_hash
        );
    }
    let _ = out.flush();
}

/// Engine threads own cores 1..; when they are pinned, the load generator
/// (the calling thread) moves to core 0 so that it does not compete.
pub(crate) fn keep_off_engine_cores(pipeline: &Pipeline) {
    if pipeline
        .runtime()
        .placement()
        .cores
        .iter()
        .any(Option::is_some)
    {
        if let Some(core0) = core_affinity::get_core_ids().and_then(|c| c.first().copied()) {
            core_affinity::set_for_current(core0);
        }
    }
}

/// Opens the pipeline, offers the load, drains, shuts down (snapshot) and
/// reports. Progress and acks go to `out`.
pub fn run_load(
    cfg: &PipelineConfig,
    load: LoadConfig,
    out: &mut impl Write,
) -> Result<LoadReport, runtime::PipelineError> {
    let pipeline = Pipeline::open(cfg)?;
    let parts = pipeline.runtime().partitions();
    announce_recovered(&pipeline, out);
    // Client order ids unique across restarts: above every recovered sequence.
    let base_coid = pipeline
        .recovered()
        .iter()
        .map(|r| r.last_seq)
        .max()
        .unwrap_or(0)
        * 4
        + 1_000_000_000;
    let total = (load.rate as u128 * load.duration.as_nanos() / 1_000_000_000) as usize + parts + 1;
    // Intended send time per token (token = index), preallocated.
    let intended = vec![0u64; total + 1];
    let latest_order = vec![0u64; parts];
    let readers: Vec<_> = (0..parts).map(|p| pipeline.runtime().reader(p)).collect();
    keep_off_engine_cores(&pipeline);
    let latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let coid_of = vec![0u64; parts];
    let start = Instant::now();
    let (tx, printer) = spawn_ack_printer();
    let mut c = Collector {
        readers,
        latency,
        completed: 0,
        intended,
        latest_order,
        coid_of,
        start,
        acks: load.acks,
        tx,
    };
    add_instruments(&pipeline, parts);
    register_doorbells(&pipeline, parts);
    let mut rng = SplitMix64(load.seed);
    let mut busy = 0u64;
    let mut mid = 1_000_000u64;
    let interval_ns = 1_000_000_000f64 / load.rate.max(1) as f64;
    let t_begin = now_ns(start);
    let mut offered = 0u64;
    for i in 1..total as u64 {
        let t_int = t_begin + (i as f64 * interval_ns) as u64;
        if t_int > t_begin + load.duration.as_nanos() as u64 {
            break;
        }
        while now_ns(start) < t_int {
            if !c.drain() {
                std::hint::spin_loop();
            }
        }
        c.intended[i as usize] = t_int;
        let p = (i as usize) % parts;
        let command = next_command(&mut rng, &mut mid, c.latest_order[p], base_coid + i);
        loop {
            match pipeline.runtime().submit(p, i, command) {
                Ok(()) => break,
                Err(SubmitError::Busy) => {
                    busy += 1;
                    if !c.drain() {
                        std::thread::park_timeout(BUSY_PARK);
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
        offered += 1;
    }
    let seconds = (now_ns(start) - t_begin) as f64 / 1e9;
    // Drain: every offered command's outputs (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.completed < offered && Instant::now() < deadline {
        if !c.drain() {
            std::thread::park_timeout(BUSY_PARK);
        }
    }
    drop(c.tx);
    printer.join().expect("printer thread");
    let state_hashes = pipeline.shutdown();
    Ok(LoadReport {
        offered,
        completed: c.completed,
        busy,
        seconds,
        latency: c.latency,
        state_hashes,
    })
}

/// Ack printer: one line per released command, straight to standard
/// output and flushed, so a process killed a moment later has already
/// told its reader everything it acknowledged. It blocks, never spins.
fn spawn_ack_printer() -> (
    std::sync::mpsc::Sender<(u64, u64)>,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = std::sync::mpsc::channel::<(u64, u64)>();
    let printer = std::thread::spawn(move || {
        let mut so = std::io::stdout().lock();
        for (seq, coid) in rx {
            let _ = writeln!(so, "ack {seq} {coid}");
            let _ = so.flush();
        }
    });
    (tx, printer)
}

/// The output side of the load: one thread offers the load and drains the
/// outputs between sends, so on a small machine it does not compete with
/// itself for a core.
struct Collector {
    readers: Vec<runtime::OutputReader>,
    latency: Histogram<u64>,
    completed: u64,
    /// Intended send time per token (token = index).
    intended: Vec<u64>,
    /// Per partition, the newest accepted order id (cancels aim below it).
    latest_order: Vec<u64>,
    /// Per partition, the client order id of the output being read.
    coid_of: Vec<u64>,
    start: Instant,
    acks: bool,
    tx: std::sync::mpsc::Sender<(u64, u64)>,
}

impl Collector {
    /// Reads every output ready: latency per token, acks; whether any was.
    fn drain(&mut self) -> bool {
        let mut any = false;
        for (p, r) in self.readers.iter_mut().enumerate() {
            while let Some(o) = r.poll() {
                any = true;
                for ev in o.events() {
                    match *ev {
                        Event::Accepted {
                            order_id,
                            client_order_id,
                            ..
                        } => {
                            self.latest_order[p] = order_id.0;
                            self.coid_of[p] = client_order_id.0;
                        }
                        Event::Rejected {
                            target: engine::RejectTarget::ClientOrder(c),
                            ..
                        } => self.coid_of[p] = c.0,
                        _ => {}
                    }
                }
                if o.token != 0 && (o.token as usize) < self.intended.len() {
                    let lat = now_ns(self.start)
                        .saturating_sub(self.intended[o.token as usize])
                        .max(1);
                    let _ = self.latency.record(lat);
                    self.completed += 1;
                }
                if self.acks {
                    let _ = self.tx.send((o.seq.0, self.coid_of[p]));
                }
                self.coid_of[p] = 0;
            }
        }
        any
    }
}

/// The load's instrument on every partition (retried while a ring is full).
fn add_instruments(pipeline: &Pipeline, parts: usize) {
    for p in 0..parts {
        while let Err(e) =
            pipeline
                .runtime()
                .submit(p, 0, Command::AddInstrument(load_instrument()))
        {
            match e {
                SubmitError::Busy => std::thread::yield_now(),
                e => panic!("{e}"),
            }
        }
    }
}

/// A full inbound ring means the pipeline is behind, mostly waiting for a
/// sync: the producer parks until the journal publishes a durable seq
/// (the doorbell unparks it; the timeout bounds a missed ring) instead of
/// spinning on `busy` and taking the core the journal thread needs.
fn register_doorbells(pipeline: &Pipeline, parts: usize) {
    let me = std::thread::current();
    for p in 0..parts {
        let me = me.clone();
        // A doorbell without a free slot leaves only the timeout: still correct.
        let _ = pipeline
            .runtime()
            .shared(p)
            .doorbell
            .register(Box::new(move || me.unpark()));
    }
}

/// The next command of the seeded stream: 30 % cancels near the
/// partition's newest order, else limit orders around a drifting `mid`
/// (10 % crossing, IOC).
fn next_command(rng: &mut SplitMix64, mid: &mut u64, latest_order: u64, coid: u64) -> Command {
    if rng.below(100) == 0 {
        *mid = (*mid + rng.below(21)).saturating_sub(10).max(1000);
    }
    let mid = *mid;
    let roll = rng.below(100);
    let owner = OwnerId(1 + rng.below(8));
    if roll < 30 {
        Command::Cancel {
            owner,
            order_id: OrderId(latest_order.saturating_sub(rng.below(2000)).max(1)),
        }
    } else {
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let crossing = roll >= 90;
        let off = 1 + rng.below(50);
        let price = match (side, crossing) {
            (Side::Buy, false) => mid - off,
            (Side::Sell, false) => mid + off,
            (Side::Buy, true) => mid + off,
            (Side::Sell, true) => mid - off,
        };
        Command::NewOrder(NewOrder {
            owner,
            instrument: InstrumentId(1),
            client_order_id: ClientOrderId(coid),
            side,
            order_type: OrderType::Limit,
            price: Some(Price(price)),
            qty: Qty(1 + rng.below(100)),
            tif: if crossing { Tif::Ioc } else { Tif::Gtc },
            expire_at: None,
            post_only: false,
            stp: Stp::None,
            display_qty: None,
            trigger_price: None,
        })
    }
}
