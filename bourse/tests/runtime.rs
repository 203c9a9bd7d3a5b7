//! The runtime's promises, end to end in one process: a stalled journal
//! backs pressure up to the producer as `busy` (never a block, never a drop);
//! no output is released before its input is durable; after the stall every
//! accepted command's outputs arrive, in sequence order, exactly once.

use bourse::loadgen::load_instrument;
use engine::{Command, Engine, EngineConfig, Input, OrderType, Seq};
use journal::Durability;
use runtime::{
    IdleStrategy, PartitionStart, Persistence, Runtime, RuntimeConfig, SnapshotBytes, SubmitError,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A journal that can be held shut, to stall the pipeline on purpose.
struct Gate {
    open: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
}

impl Persistence for Gate {
    fn commit(&mut self, batch: &[Input]) -> std::io::Result<()> {
        while !self.open.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut last = self.committed.load(Ordering::Relaxed);
        for i in batch {
            assert_eq!(i.seq.0, last + 1, "journal got inputs out of order");
            last = i.seq.0;
        }
        self.committed.store(last, Ordering::Release);
        Ok(())
    }
    fn snapshot(&mut self, _snap: &SnapshotBytes) -> std::io::Result<()> {
        Ok(())
    }
    fn bytes_since_snapshot(&self) -> u64 {
        0
    }
}

fn order(coid: u64) -> Command {
    Command::NewOrder(engine::NewOrder {
        owner: engine::OwnerId(1),
        instrument: engine::InstrumentId(1),
        client_order_id: engine::ClientOrderId(coid),
        side: engine::Side::Buy,
        order_type: OrderType::Limit,
        price: Some(engine::Price(999_000 + coid % 100)),
        qty: engine::Qty(1),
        tif: engine::Tif::Gtc,
        expire_at: None,
        post_only: false,
        stp: engine::Stp::None,
        display_qty: None,
        trigger_price: None,
    })
}

/// A runtime of one fresh partition whose journal is `persistence` (a
/// test double).
fn one_partition(
    cfg: RuntimeConfig,
    durability: Durability,
    engine: EngineConfig,
    persistence: Box<dyn Persistence>,
) -> Runtime {
    Runtime::start(
        cfg,
        durability,
        vec![PartitionStart {
            engine: Engine::new(engine),
            last_seq: Seq(0),
            persistence: Some(persistence),
        }],
    )
}

#[test]
fn stalled_journal_means_busy_and_no_early_outputs_then_everything_arrives() {
    let open = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let cfg = RuntimeConfig {
        inbound_ring: 8,
        output_ring: 1 << 12,
        output_readers: 1,
        journal_queue: 8,
        idle: IdleStrategy::Yield,
        pin: false,
        snapshot_every_bytes: 0,
        ..RuntimeConfig::default()
    };
    let rt = one_partition(
        cfg,
        Durability::Durable,
        EngineConfig::small(),
        Box::new(Gate {
            open: open.clone(),
            committed: committed.clone(),
        }),
    );
    rt.submit(0, 1, Command::AddInstrument(load_instrument()))
        .unwrap();
    let mut reader = rt.reader(0);
    // Offer until the stalled pipeline pushes back.
    let mut accepted = vec![1u64];
    let mut busy = 0;
    let t0 = Instant::now();
    let mut token = 2u64;
    // Keep offering for a while so the engine thread fills the journal queue.
    while t0.elapsed() < Duration::from_millis(300) {
        match rt.submit(0, token, order(token)) {
            Ok(()) => {
                accepted.push(token);
                token += 1;
            }
            Err(SubmitError::Busy) => {
                busy += 1;
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
        assert!(
            reader.poll().is_none(),
            "an output left before its input was durable"
        );
    }
    assert!(busy >= 100, "a full pipeline never answered busy");
    // Bounded: inbound ring (8) + journal queue (8) + the group the journal
    // thread holds (≤ 8) + the input in the engine thread's hands (1).
    assert!(
        accepted.len() <= 8 + 8 + 8 + 1,
        "accepted {} with every queue of 8",
        accepted.len()
    );
    assert!(rt.shared(0).applied_seq.load(Ordering::Acquire) > 0);
    assert_eq!(committed.load(Ordering::Acquire), 0);
    open.store(true, Ordering::Release);
    // Everything accepted comes back, in order, once.
    let mut ends = Vec::new();
    let mut last_seq = 0;
    let t1 = Instant::now();
    while ends.len() < accepted.len() && t1.elapsed() < Duration::from_secs(10) {
        if let Some(o) = reader.poll() {
            assert!(o.seq.0 >= last_seq, "outputs out of order");
            assert!(
                o.seq.0 <= committed.load(Ordering::Acquire),
                "released before durable"
            );
            last_seq = o.seq.0;
            // One output per input: each is its input's end.
            ends.push(o.token);
        }
    }
    assert_eq!(ends, accepted, "outputs lost, duplicated or reordered");
    let engines = rt.shutdown();
    assert_eq!(engines[0].live_orders(), accepted.len() - 1);
}

static FATAL_CALLS: AtomicU64 = AtomicU64::new(0);

fn record_fatal(_msg: &str) {
    FATAL_CALLS.fetch_add(1, Ordering::SeqCst);
}

/// A journal whose second sync fails.
struct FailingSync {
    commits: Arc<AtomicU64>,
}

impl Persistence for FailingSync {
    fn commit(&mut self, _batch: &[Input]) -> std::io::Result<()> {
        let n = self.commits.fetch_add(1, Ordering::SeqCst);
        if n >= 1 {
            return Err(std::io::Error::other("fdatasync: EIO"));
        }
        Ok(())
    }
    fn snapshot(&mut self, _snap: &SnapshotBytes) -> std::io::Result<()> {
        Ok(())
    }
    fn bytes_since_snapshot(&self) -> u64 {
        0
    }
}

#[test]
fn a_failed_sync_stops_the_journal_for_good_and_releases_nothing_more() {
    let commits = Arc::new(AtomicU64::new(0));
    let cfg = RuntimeConfig {
        inbound_ring: 64,
        output_ring: 1 << 10,
        output_readers: 1,
        journal_queue: 64,
        idle: IdleStrategy::Yield,
        pin: false,
        snapshot_every_bytes: 0,
        fatal: record_fatal,
        replicated: false,
    };
    let rt = one_partition(
        cfg,
        Durability::Durable,
        EngineConfig::small(),
        Box::new(FailingSync {
            commits: commits.clone(),
        }),
    );
    rt.submit(0, 1, Command::AddInstrument(load_instrument()))
        .unwrap();
    let mut reader = rt.reader(0);
    // The first commit succeeds: its outputs are released.
    let t0 = Instant::now();
    while reader.poll().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "first commit never released"
        );
    }
    let durable = rt.shared(0).durable_seq.load(Ordering::Acquire);
    for t in 2..20 {
        rt.submit(0, t, order(t)).unwrap();
    }
    let t1 = Instant::now();
    while FATAL_CALLS.load(Ordering::SeqCst) == 0 {
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "the failed sync was not reported"
        );
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        FATAL_CALLS.load(Ordering::SeqCst),
        1,
        "fatal reported more than once"
    );
    assert_eq!(
        commits.load(Ordering::SeqCst),
        2,
        "the failed sync was retried"
    );
    assert_eq!(rt.shared(0).durable_seq.load(Ordering::Acquire), durable);
    assert!(
        reader.poll().is_none(),
        "an output was released after the journal failed"
    );
}

/// A journal that checks, at every commit, that each input it is handed
/// already has its output slot in the ring: the doorbell rings once the
/// group is durable, and a consumer it wakes must find the slots there (a
/// slot written after its input reached the journal was a lost wake-up:
/// the answer waited for the next commit).
struct SlotsFirst {
    shared: Arc<std::sync::OnceLock<Arc<runtime::Shared>>>,
    checked: Arc<AtomicU64>,
}

impl Persistence for SlotsFirst {
    fn commit(&mut self, batch: &[Input]) -> std::io::Result<()> {
        let shared = loop {
            match self.shared.get() {
                Some(s) => break s,
                None => std::thread::yield_now(),
            }
        };
        let last = batch.last().expect("a group holds an input").seq.0;
        // Nobody reads: the ring holds every slot written so far.
        let written = shared.outbound.len() as u64;
        assert!(
            written >= last,
            "input {last} reached the journal before its output slot ({written} slots written)"
        );
        self.checked
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn snapshot(&mut self, _snap: &SnapshotBytes) -> std::io::Result<()> {
        Ok(())
    }
    fn bytes_since_snapshot(&self) -> u64 {
        0
    }
}

#[test]
fn every_input_the_journal_sees_already_has_its_output_slot() {
    const INPUTS: u64 = 20_000;
    let cell = Arc::new(std::sync::OnceLock::new());
    let checked = Arc::new(AtomicU64::new(0));
    let cfg = RuntimeConfig {
        output_ring: 1 << 16,
        output_readers: 1,
        idle: IdleStrategy::Yield,
        pin: false,
        snapshot_every_bytes: 0,
        ..RuntimeConfig::default()
    };
    let rt = one_partition(
        cfg,
        Durability::Async,
        EngineConfig::default(),
        Box::new(SlotsFirst {
            shared: cell.clone(),
            checked: checked.clone(),
        }),
    );
    cell.set(rt.shared(0).clone()).expect("set once");
    let mut token = 1u64;
    let mut command = Command::AddInstrument(load_instrument());
    while token <= INPUTS {
        match rt.submit(0, token, command) {
            Ok(()) => {
                token += 1;
                command = order(token);
            }
            Err(SubmitError::Busy) => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    let t0 = Instant::now();
    while checked.load(Ordering::Relaxed) < INPUTS {
        assert!(t0.elapsed() < Duration::from_secs(20), "journal stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
    rt.shutdown();
}
