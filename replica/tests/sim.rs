//! A deterministic simulation of a three-node partition group: the real
//! openraft, the real journal-backed log store and engine state machine on
//! simulated disks, a simulated network (delay, loss, reordering, isolated
//! nodes), crashes with torn unsynced writes, restarts, and bit flips in
//! synced journal data, all on virtual time (tokio's paused clock) with
//! every random choice drawn from one seed.
//!
//! Checked on every run: no two replicas ever execute different inputs at
//! the same seq, nor reach different state hashes there; every batch a
//! client saw acknowledged was executed; once healed, every live replica
//! reaches the same last seq and state hash; damage to a replica's synced
//! journal is detected when it restarts (it is never applied).
//!
//! `cargo test` runs `SIM_SEEDS` seeds (1,000 by default); `TEST_SIM_SEEDS=N`
//! runs N, `TEST_SIM_SEED=S` runs one. A failure prints its seed.

use engine::rng::SplitMix64;
use engine::{
    Asset, ClientOrderId, Command, EngineConfig, Input, InstrumentId, InstrumentSpec, NewOrder,
    OrderType, OwnerId, Price, Qty, Side, Stp, Symbol, Tif,
};
use journal::record::{encode, Origin};
use journal::SimDisk;
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use openraft_rt::deterministic_rng::DeterministicRng;
use openraft_rt::WatchReceiver;
use replica::{
    serve_rpc, Batch, CallFuture, CommittedTable, EngineSm, Executor, InlineExecutor, Item,
    JournalLog, LogStore, Network, NodeId, SnapshotStamps, Transport, TransportError,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xxhash_rust::xxh3::xxh3_128;

type Rt = DeterministicRng<openraft::TokioRuntime>;
type Sm = EngineSm<SimDisk, Recorder>;
type Node = Raft<replica::Cfg, Sm>;

const NODES: [NodeId; 3] = [1, 2, 3];
const DIR: &str = "/p0";

fn engine_config() -> EngineConfig {
    EngineConfig {
        orders_max: 1024,
        levels_max: 256,
        stops_max: 64,
        instruments_max: 4,
        owners_max: 16,
        client_order_ids_max: 4096,
        accounts_max: 64,
        transfers_max: 256,
        events_max: 1024,
        assets_max: 16,
        batch_max: 8190,
    }
}

/// What a replica executed: per seq, the input's digest and the state hash after it.
type Trail = BTreeMap<u64, (u128, u128)>;

/// The shared record of the run: trails and the first invariant broken.
#[derive(Default)]
struct Record {
    trails: BTreeMap<NodeId, Trail>,
    /// Each replica's state hash now (after its last execute or restore).
    now: BTreeMap<NodeId, u128>,
    /// Digests of every command any replica executed (seq and time aside).
    commands: BTreeSet<u128>,
    broken: Option<String>,
}

impl Record {
    fn note(&mut self, node: NodeId, seq: u64, digest: u128, hash: u128) {
        for (other, t) in &self.trails {
            if let Some(&(d, h)) = t.get(&seq) {
                if (d, h) != (digest, hash) && self.broken.is_none() {
                    self.broken = Some(format!(
                        "seq {seq}: node {node} executed {digest:x} reaching {hash:x}, \
                         node {other} executed {d:x} reaching {h:x}"
                    ));
                }
            }
        }
        self.trails
            .entry(node)
            .or_default()
            .insert(seq, (digest, hash));
        self.now.insert(node, hash);
    }
}

/// The engine, recording every input it executes.
struct Recorder {
    node: NodeId,
    inner: InlineExecutor,
    record: Arc<Mutex<Record>>,
}

fn digest(input: &Input) -> u128 {
    xxh3_128(bytemuck::bytes_of(&encode(input)))
}

fn command_digest(command: &Command) -> u128 {
    digest(&Input {
        seq: engine::Seq(1),
        now: engine::Timestamp(0),
        command: *command,
    })
}

impl Executor for Recorder {
    fn execute(&mut self, input: &Input, token: u64, origin: Origin) {
        self.inner.execute(input, token, origin);
        let hash = self.inner.engine().state_hash();
        let mut r = self.record.lock().unwrap();
        // Every replica must see the same origin with the same input (the
        // gateway's report replay finds a session's own requests by it).
        let of_origin = (u128::from(origin.session) << 64) | u128::from(origin.request);
        r.note(self.node, input.seq.0, digest(input) ^ of_origin, hash);
        r.commands.insert(command_digest(&input.command));
    }
    fn snapshot(&mut self) -> replica::Taken {
        self.inner.snapshot()
    }
    fn restore(
        &mut self,
        bytes: &[u8],
        last_seq: engine::Seq,
        feed: Option<&[u8]>,
    ) -> Result<u128, replica::RestoreError> {
        let hash = self.inner.restore(bytes, last_seq, feed)?;
        self.record.lock().unwrap().now.insert(self.node, hash);
        Ok(hash)
    }
}

/// The simulated network and the nodes on it.
struct World {
    rng: Mutex<SplitMix64>,
    rafts: Mutex<BTreeMap<NodeId, Node>>,
    /// Each replica's committed-request table (the running incarnation's).
    tables: Mutex<BTreeMap<NodeId, CommittedTable>>,
    isolated: Mutex<BTreeSet<NodeId>>,
    loss_pct: u64,
    delay_ms_max: u64,
}

impl World {
    fn draw(&self, below: u64) -> u64 {
        self.rng.lock().unwrap().below(below.max(1))
    }
    /// One hop from `a` to `b`: its delay, and whether it is lost.
    fn hop(&self, a: NodeId, b: NodeId) -> (Duration, bool) {
        let cut = {
            let iso = self.isolated.lock().unwrap();
            iso.contains(&a) || iso.contains(&b)
        };
        let delay = Duration::from_micros(200 + self.draw(self.delay_ms_max * 1000));
        (delay, cut || self.draw(100) < self.loss_pct)
    }
}

struct SimTransport {
    world: Arc<World>,
    from: NodeId,
}

impl Transport for SimTransport {
    fn call(
        &self,
        target: NodeId,
        addr: &str,
        _group: u32,
        kind: u8,
        body: Vec<u8>,
        timeout: Duration,
    ) -> CallFuture {
        let (world, from, addr) = (self.world.clone(), self.from, addr.to_string());
        Box::pin(async move {
            let err = |what: &str| TransportError {
                target,
                addr: addr.clone(),
                what: what.into(),
            };
            let trip = async {
                let (d, lost) = world.hop(from, target);
                tokio::time::sleep(d).await;
                if lost {
                    std::future::pending::<()>().await;
                }
                let raft = world.rafts.lock().unwrap().get(&target).cloned();
                let raft = raft.ok_or_else(|| err("node down"))?;
                let answer = serve_rpc(&raft, kind, &body)
                    .await
                    .map_err(|e| err(&e.to_string()))?;
                let (d, lost) = world.hop(target, from);
                tokio::time::sleep(d).await;
                if lost {
                    std::future::pending::<()>().await;
                }
                Ok(answer)
            };
            tokio::time::timeout(timeout, trip)
                .await
                .map_err(|_| err("timeout"))?
        })
    }
}

fn raft_config() -> Arc<Config> {
    let c = Config {
        cluster_name: "sim".into(),
        election_timeout_min: 150,
        election_timeout_max: 300,
        heartbeat_interval: 50,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(16),
        max_in_snapshot_log_to_keep: 2,
        purge_batch_size: 1,
        enable_pre_vote: Some(true),
        ..Config::default()
    };
    Arc::new(c.validate().expect("raft config"))
}

/// Starts (or restarts) `node` from its disk. `Err` when the disk is refused.
async fn start(
    world: &Arc<World>,
    record: &Arc<Mutex<Record>>,
    disk: &SimDisk,
    node: NodeId,
    epoch: u64,
) -> Result<(), String> {
    let dir = Path::new(DIR);
    let stamps = SnapshotStamps::default();
    let exec = Recorder {
        node,
        inner: InlineExecutor::new(engine_config()),
        record: record.clone(),
    };
    let (sm, anchor) = EngineSm::open(disk.clone(), dir, Some((node, epoch)), exec, stamps.clone())
        .map_err(|e| e.to_string())?;
    world.tables.lock().unwrap().insert(node, sm.committed());
    let log = JournalLog::open(
        disk.clone(),
        dir,
        256 << 10,
        anchor,
        replica::SyncMode::Inline,
    )
    .map_err(|e| e.to_string())?;
    let transport = Arc::new(SimTransport {
        world: world.clone(),
        from: node,
    });
    let raft = Raft::new(
        node,
        raft_config(),
        Network::new(transport, 0),
        LogStore::new(log, stamps),
        sm,
    )
    .await
    .map_err(|e| e.to_string())?;
    world.rafts.lock().unwrap().insert(node, raft);
    Ok(())
}

async fn stop(world: &World, node: NodeId) {
    let raft = world.rafts.lock().unwrap().remove(&node);
    if let Some(r) = raft {
        let _ = r.shutdown().await;
    }
}

fn instrument() -> Command {
    Command::AddInstrument(InstrumentSpec {
        id: InstrumentId(1),
        symbol: Symbol::from_str_code("SIM").expect("symbol"),
        base: Asset::from_str_code("BAS").expect("asset"),
        quote: Asset::from_str_code("QUO").expect("asset"),
        tick: 1,
        lot_size: 1,
        qty_min: 1,
        qty_max: 1 << 20,
        reference_price: Price(1000),
        band_bps: None,
        circuit_bps: None,
        circuit_window_ns: 0,
        maker_fee_bps: 0,
        taker_fee_bps: 0,
        fee_account: engine::AccountId(0),
        settle: false,
        open_orders_max: None,
        notional_max: None,
    })
}

fn order(rng: &mut SplitMix64, coid: u64) -> Command {
    Command::NewOrder(NewOrder {
        owner: OwnerId(1 + rng.below(4)),
        instrument: InstrumentId(1),
        client_order_id: ClientOrderId(coid),
        side: if rng.chance(1, 2) {
            Side::Buy
        } else {
            Side::Sell
        },
        order_type: OrderType::Limit,
        price: Some(Price(990 + rng.below(21))),
        qty: Qty(1 + rng.below(5)),
        tif: if rng.chance(1, 5) { Tif::Ioc } else { Tif::Gtc },
        expire_at: None,
        post_only: false,
        stp: Stp::None,
        display_qty: None,
        trigger_price: None,
    })
}

/// The current leader's handle, if some node believes it leads.
fn leader(world: &World) -> Option<Node> {
    let rafts = world.rafts.lock().unwrap();
    rafts
        .values()
        .find(|r| {
            let m = r.metrics().borrow_watched().clone();
            m.current_leader == Some(m.id)
        })
        .cloned()
}

struct Run {
    world: Arc<World>,
    record: Arc<Mutex<Record>>,
    disks: BTreeMap<NodeId, SimDisk>,
    rng: SplitMix64,
    damaged: Option<NodeId>,
    epochs: u64,
    acked: Vec<(u64, Command)>,
}

impl Run {
    async fn restart(&mut self, node: NodeId, flip: bool) -> Result<(), String> {
        stop(&self.world, node).await;
        let disk = self.disks[&node].clone();
        disk.crash(&mut self.rng, true);
        let mut flipped = false;
        if flip {
            flipped = self.flip_synced_block(&disk);
        }
        self.epochs += 1;
        let started = start(&self.world, &self.record, &disk, node, self.epochs).await;
        match (flipped, started) {
            (false, Ok(())) => Ok(()),
            (false, Err(e)) => Err(format!("node {node} does not restart after a crash: {e}")),
            (true, Err(_)) => {
                // Detected: the damaged replica stays down (it is never applied).
                self.damaged = Some(node);
                Ok(())
            }
            (true, Ok(())) => Err(format!(
                "node {node} restarted over a flipped bit in synced journal data"
            )),
        }
    }

    /// Flips one bit inside a synced block's records; false if there is none.
    fn flip_synced_block(&mut self, disk: &SimDisk) -> bool {
        let dir = Path::new(DIR);
        let Ok(segs) = journal::list_segments(disk, dir) else {
            return false;
        };
        let Some((_, seg)) = segs.first() else {
            return false;
        };
        let Some(data) = disk.contents(seg) else {
            return false;
        };
        // The first block's records (it exists once anything was appended).
        let Ok(h) = journal::parse_header(&data) else {
            return false;
        };
        let lo = journal::HEADER_LEN as u64;
        let hi = lo + h.body_len;
        !disk.flip_bits(&mut self.rng, seg, lo..hi, 1).is_empty()
    }

    async fn write(&mut self, items: Vec<Item>) {
        let Some(l) = leader(&self.world) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        };
        let batch = Batch {
            leader: 0,
            epoch: 0,
            time: engine::Timestamp(tokio::time::Instant::now().elapsed().as_nanos() as u64),
            items: items.clone(),
        };
        let res = tokio::time::timeout(Duration::from_secs(2), l.client_write(batch)).await;
        if let Ok(Ok(resp)) = res {
            for it in items {
                self.acked.push((resp.log_id.index, it.command));
            }
        }
    }
}

async fn simulate(seed: u64) -> Result<(), String> {
    let mut rng = SplitMix64::new(seed);
    let world = Arc::new(World {
        rng: Mutex::new(SplitMix64::new(rng.next_u64())),
        rafts: Mutex::new(BTreeMap::new()),
        tables: Mutex::new(BTreeMap::new()),
        isolated: Mutex::new(BTreeSet::new()),
        loss_pct: rng.below(8),
        delay_ms_max: 1 + rng.below(15),
    });
    let record = Arc::new(Mutex::new(Record::default()));
    let disks: BTreeMap<NodeId, SimDisk> = NODES.iter().map(|&n| (n, SimDisk::new())).collect();
    for &n in &NODES {
        start(&world, &record, &disks[&n], n, n).await?;
    }
    let members: BTreeMap<NodeId, BasicNode> = NODES
        .iter()
        .map(|&n| (n, BasicNode::new(format!("sim-{n}"))))
        .collect();
    let first = world.rafts.lock().unwrap()[&1].clone();
    first.initialize(members).await.map_err(|e| e.to_string())?;
    let mut run = Run {
        world: world.clone(),
        record: record.clone(),
        disks,
        rng,
        damaged: None,
        epochs: 10,
        acked: Vec::new(),
    };
    run.write(vec![Item::internal(instrument())]).await;
    let steps = 24 + run.rng.below(24);
    for step in 0..steps {
        let n = 1 + run.rng.below(3) as usize;
        let items = (0..n)
            .map(|i| {
                let coid = step * 8 + i as u64 + 1;
                Item {
                    token: 0,
                    command: order(&mut run.rng, coid),
                    // Three client sessions, requests numbered by coid.
                    origin: Origin::new(1 + coid % 3, coid),
                }
            })
            .collect();
        run.write(items).await;
        fault(&mut run).await?;
        if let Some(b) = &record.lock().unwrap().broken {
            return Err(b.clone());
        }
    }
    settle(&mut run).await
}

/// One random fault (or none) between writes; none before the group has
/// committed its first write (its membership is then on a majority).
async fn fault(run: &mut Run) -> Result<(), String> {
    if run.acked.is_empty() {
        return Ok(());
    }
    let node = NODES[run.rng.below(3) as usize];
    if Some(node) == run.damaged {
        return Ok(());
    }
    match run.rng.below(20) {
        0 | 1 => run.restart(node, false).await,
        2 if run.damaged.is_none() => run.restart(node, true).await,
        3 | 4 => {
            run.world.isolated.lock().unwrap().insert(node);
            Ok(())
        }
        5 | 6 => {
            run.world.isolated.lock().unwrap().clear();
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Heals the network and waits for every live replica to apply the same
/// last entry; then checks that they reached the same state and that every
/// acknowledged command was executed.
async fn settle(run: &mut Run) -> Result<(), String> {
    run.world.isolated.lock().unwrap().clear();
    // Liveness: once healed, the group accepts a write within 30 s.
    let acked = run.acked.len();
    for i in 0..60 {
        let item = Item::internal(order(&mut run.rng, 1_000_000 + i));
        run.write(vec![item]).await;
        if run.acked.len() > acked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if run.acked.len() == acked {
        let rafts = run.world.rafts.lock().unwrap();
        let view: Vec<String> = rafts
            .values()
            .map(|r| {
                let m = r.metrics().borrow_watched().clone();
                format!(
                    "node {}: {:?} term {} leader {:?} log {:?} applied {:?} vote {}",
                    m.id,
                    m.state,
                    m.current_term,
                    m.current_leader,
                    m.last_log_index,
                    m.last_applied,
                    m.vote
                )
            })
            .collect();
        return Err(format!(
            "no write was acknowledged within 30 s of healing (damaged {:?}): {view:#?}",
            run.damaged
        ));
    }
    let mut view = BTreeMap::new();
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        view = {
            let rafts = run.world.rafts.lock().unwrap();
            rafts
                .iter()
                .map(|(n, r)| {
                    let m = r.metrics().borrow_watched().clone();
                    (*n, (m.last_applied.map(|l| l.index), m.last_log_index))
                })
                .collect::<BTreeMap<_, _>>()
        };
        let states: BTreeSet<_> = view.values().collect();
        if states.len() == 1 && states.iter().all(|(a, l)| a == l && a.is_some()) {
            break;
        }
    }
    let rec = run.record.lock().unwrap();
    if let Some(b) = &rec.broken {
        return Err(b.clone());
    }
    let states: BTreeSet<_> = view.values().collect();
    if states.len() != 1 {
        return Err(format!(
            "replicas did not converge: node → (applied, last log) {view:?}"
        ));
    }
    let hashes: BTreeSet<u128> = view
        .keys()
        .filter_map(|n| rec.now.get(n).copied())
        .collect();
    if hashes.len() != 1 {
        return Err(format!(
            "replicas applied the same log to different states: {hashes:x?}"
        ));
    }
    let tables: BTreeSet<Vec<replica::Row>> = {
        let t = run.world.tables.lock().unwrap();
        view.keys().map(|n| t[n].lock().rows()).collect()
    };
    if tables.len() != 1 {
        return Err(format!(
            "replicas applied the same log to different committed-request tables: {tables:?}"
        ));
    }
    let with_origin = run
        .acked
        .iter()
        .any(|(_, c)| matches!(c, Command::NewOrder(o) if o.client_order_id.0 < 1_000_000));
    if tables.iter().all(|t| t.is_empty()) && with_origin {
        return Err("no committed request was recorded".into());
    }
    for (index, cmd) in &run.acked {
        if !rec.commands.contains(&command_digest(cmd)) {
            return Err(format!("acknowledged entry {index} was never executed"));
        }
    }
    if std::env::var("TEST_SIM_VERBOSE").is_ok() {
        eprintln!(
            "acked {} commands, damaged {:?}, epochs {}, view {view:?}, loss {}%",
            run.acked.len(),
            run.damaged,
            run.epochs,
            run.world.loss_pct
        );
    }
    Ok(())
}

fn run_seed(seed: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let res = rt.block_on(Rt::scope(seed, simulate(seed)));
    if let Err(e) = res {
        panic!("simulation seed {seed} failed (rerun: TEST_SIM_SEED={seed}): {e}");
    }
}

#[test]
fn three_replicas_agree_under_crashes_partitions_loss_and_disk_faults() {
    if let Ok(s) = std::env::var("TEST_SIM_SEED") {
        run_seed(s.parse().expect("TEST_SIM_SEED is a number"));
        return;
    }
    let seeds: u64 = std::env::var("TEST_SIM_SEEDS")
        .map_or(1000, |s| s.parse().expect("TEST_SIM_SEEDS is a number"));
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4) as u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || (0..seeds).filter(|s| s % threads == t).for_each(run_seed))
        })
        .collect();
    for h in handles {
        h.join()
            .expect("a seed failed (its number is printed above)");
    }
}
