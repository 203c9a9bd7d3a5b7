//! Journal measurements on the real disk, each beside its floor in the same
//! run: commit latency vs a raw pwrite + fdatasync of the same bytes into a
//! preallocated file (interleaved, so both see the same disk), durable
//! command throughput through the real runtime (ring → engine → journal
//! thread with group commit → durable output release), and replay
//! throughput (read + verify + decode + apply). Every line names the
//! durability mode.
//!
//! `cargo run --release -p bourse --example journal_bench [RECORDS [IDLE]]`
//! (default 2,000,000 records for the throughput and replay parts; IDLE is
//! the engine threads' idle strategy, `spin`, `yield` or `park`, default
//! the runtime's);
//! `BOURSE_BENCH_DIR` picks the directory (default: the system temp dir).

use bourse::journal_cli::replay_dir;
use engine::*;
use hdrhistogram::Histogram;
use journal::record::{decode, encode, InputRecord, SplitMix64};
use journal::{block_len, Durability, FsStorage, JournalConfig, JournalWriter};
use runtime::FsPersistence;
use runtime::{IdleStrategy, PartitionStart, Runtime, RuntimeConfig, SubmitError};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn bench_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("BOURSE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!(
        "bourse-journal-bench-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("bench dir");
    d
}

fn instrument() -> Command {
    Command::AddInstrument(InstrumentSpec {
        id: InstrumentId(1),
        symbol: Symbol::from_str_code("BTC-USD").unwrap(),
        base: Asset::from_str_code("BTC").unwrap(),
        quote: Asset::from_str_code("USD").unwrap(),
        tick: 1,
        lot_size: 1,
        qty_min: 1,
        qty_max: 1_000_000,
        reference_price: Price(10_000),
        band_bps: None,
        circuit_bps: None,
        circuit_window_ns: 0,
        maker_fee_bps: 0,
        taker_fee_bps: 0,
        fee_account: AccountId(0),
        settle: false,
        open_orders_max: None,
        notional_max: None,
    })
}

/// A trading stream: limit orders around a price (some crossing), and
/// cancels of recent orders, so the book stays a realistic size.
fn workload(n: u64) -> Vec<InputRecord> {
    let mut rng = SplitMix64(2026);
    let mut out = Vec::with_capacity(n as usize);
    let mut orders = 0u64;
    for seq in 1..=n {
        let command = if seq == 1 {
            instrument()
        } else if orders > 100 && rng.chance(2, 5) {
            Command::Cancel {
                owner: OwnerId(1 + rng.below(100)),
                order_id: OrderId(orders - rng.below(100)),
            }
        } else {
            orders += 1;
            let side = if rng.chance(1, 2) {
                Side::Buy
            } else {
                Side::Sell
            };
            let off = rng.below(50);
            let price = match side {
                Side::Buy => 10_000 - off + 2,
                Side::Sell => 10_000 + off - 2,
            };
            Command::NewOrder(NewOrder {
                owner: OwnerId(1 + rng.below(100)),
                instrument: InstrumentId(1),
                client_order_id: ClientOrderId(seq),
                side,
                order_type: OrderType::Limit,
                price: Some(Price(price)),
                qty: Qty(1 + rng.below(20)),
                tif: Tif::Gtc,
                expire_at: None,
                post_only: false,
                stp: Stp::None,
                display_qty: None,
                trigger_price: None,
            })
        };
        out.push(encode(&Input {
            seq: Seq(seq),
            now: Timestamp(seq * 1_000),
            command,
        }));
    }
    out
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`;
/// 0 where there is none): on a machine other work keeps busy, wall time
/// also counts the waits for a core.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds this process has used, user + system (`/proc/self/stat`, in
/// clock ticks of 10 ms; 0 where there is none).
fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which ends with the last ')').
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line: indexes 11 and 12
    // here, where the state (field 3) is index 0.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1_000.0
}

fn latency(recs: &[InputRecord]) {
    let iters = 200usize;
    for &batch in &[1usize, 16, 64, 256, 1024] {
        let bytes = block_len(batch) as usize;
        // The floor: a preallocated (zero-filled, synced) file.
        let dir = bench_dir(&format!("raw{batch}"));
        let raw_path = dir.join("raw.bin");
        let raw = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&raw_path)
            .expect("raw file");
        let raw_len = (bytes * (iters + 1)) as u64;
        let zeros = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < raw_len {
            let n = (raw_len - off).min(zeros.len() as u64) as usize;
            raw.write_all_at(&zeros[..n], off).expect("fill");
            off += n as u64;
        }
        raw.sync_all().expect("sync");
        let payload = vec![0xA5u8; bytes];

        let cfg = JournalConfig {
            segment_bytes: raw_len.div_ceil(4096) * 4096 + block_len(batch) * 2,
            max_batch: batch,
            durability: Durability::Durable,
        };
        let (mut w, _) = JournalWriter::open(FsStorage, &dir, cfg).expect("journal");
        w.append_batch(&recs[..batch])
            .expect("warm-up (creates the segment)");
        let mut seq = batch;
        let mut hr = Histogram::<u64>::new(3).unwrap();
        let mut hj = Histogram::<u64>::new(3).unwrap();
        for i in 0..iters {
            let t = Instant::now();
            raw.write_all_at(&payload, (i * bytes) as u64)
                .expect("write");
            raw.sync_data().expect("fdatasync");
            hr.record(t.elapsed().as_nanos() as u64).unwrap();
            let t = Instant::now();
            w.append_batch(&recs[seq..seq + batch]).expect("append");
            hj.record(t.elapsed().as_nanos() as u64).unwrap();
            seq += batch;
        }
        println!(
            "commit latency [durability=durable] batch={batch} records ({bytes} B): raw write+fdatasync p50 {:.1} us p99 {:.1} us | journal commit p50 {:.1} us p99 {:.1} us | p50 ratio {:.2} (target <= 1.3)",
            us(&hr, 0.5),
            us(&hr, 0.99),
            us(&hj, 0.5),
            us(&hj, 0.99),
            us(&hj, 0.5) / us(&hr, 0.5)
        );
        drop(w);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn throughput(
    recs: &[InputRecord],
    mode: Durability,
    idle: Option<IdleStrategy>,
) -> Option<PathBuf> {
    let dir = bench_dir(&format!("tp-{mode}"));
    let cfg = JournalConfig {
        durability: mode,
        ..JournalConfig::default()
    };
    let persistence: Option<Box<dyn runtime::Persistence>> = match mode {
        Durability::None => None,
        _ => Some(Box::new(FsPersistence::open(&dir, cfg).expect("journal"))),
    };
    let defaults = RuntimeConfig::default();
    let rt = Runtime::start(
        RuntimeConfig {
            idle: idle.unwrap_or(defaults.idle),
            ..defaults
        },
        mode,
        vec![PartitionStart {
            engine: Engine::new(EngineConfig::default()),
            last_seq: Seq(0),
            persistence,
        }],
    );
    let n = recs.len() as u64;
    let commands: Vec<Command> = recs
        .iter()
        .map(|r| decode(r).expect("decodes").command)
        .collect();
    let mut reader = rt.reader(0);
    // The producer parks on a full ring until the journal publishes a
    // durable seq (the doorbell) instead of spinning on `busy`: on 2 cores a
    // spinning producer takes the time the journal thread needs.
    let me = std::thread::current();
    rt.shared(0)
        .doorbell
        .register(Box::new(move || me.unpark()))
        .expect("a doorbell slot");
    let (t0, cpu0) = (Instant::now(), process_cpu_secs());
    let (mut sent, mut done, mut busy, mut parks) = (0usize, 0u64, 0u64, 0u64);
    while done < n {
        let mut progressed = false;
        while sent < commands.len() {
            match rt.submit(0, 1, commands[sent]) {
                Ok(()) => {
                    sent += 1;
                    progressed = true;
                }
                Err(SubmitError::Busy) => {
                    busy += 1;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        while reader.poll().is_some() {
            progressed = true;
            done += 1;
        }
        if !progressed {
            parks += 1;
            std::thread::park_timeout(std::time::Duration::from_micros(200));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = process_cpu_secs() - cpu0;
    let placement = rt.placement().clone();
    let c = &rt.shared(0).counters;
    let (commits, records, sync_us) = (
        c.journal_blocks.get(),
        c.journal_records.get(),
        c.fsync_us_sum.get(),
    );
    rt.shutdown();
    println!(
        "durable command throughput [durability={mode}]: {n} commands through ring → engine → journal → durable release in {secs:.3} s = {:.2} M commands/s (target >= 2 M/s durable); CPU {cpu:.2} s ({:.2} us per command); busy {busy}, producer parks {parks}; journal commits {commits} ({:.0} records each, {:.0} us each, {:.0}% of the run in commit); engine threads {:?}, idle {}",
        n as f64 / secs / 1e6,
        cpu * 1e6 / n as f64,
        records as f64 / commits.max(1) as f64,
        sync_us as f64 / commits.max(1) as f64,
        sync_us as f64 / 1e4 / secs,
        placement.cores,
        placement.idle
    );
    if mode == Durability::Durable {
        Some(dir)
    } else {
        let _ = std::fs::remove_dir_all(&dir);
        None
    }
}

fn replay(dir: &Path, recs: &[InputRecord]) {
    // Decoding alone, from memory: the floor of the decode stage.
    let t0 = Instant::now();
    for r in recs {
        std::hint::black_box(decode(std::hint::black_box(r)).expect("decodes"));
    }
    let decode_secs = t0.elapsed().as_secs_f64();
    // The stages apart, to see where replay's time goes: the bytes read,
    // then read + verify (no decode), then `journal::replay` (read + verify
    // + decode, each input handed to a closure that keeps it).
    let t0 = Instant::now();
    let mut bytes = 0u64;
    for (_, p) in journal::list_segments(&FsStorage, dir).expect("segments") {
        bytes += std::fs::read(&p).expect("read segment").len() as u64;
    }
    let read_secs = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let rep = journal::scan(&FsStorage, dir, |_, _, _, _| Ok(())).expect("scan");
    let verify_secs = t0.elapsed().as_secs_f64();
    // The closure only folds the inputs in: collecting them into memory
    // would measure page faults on the collection (what the line measured
    // before: 200 MB of fresh pages for 1 M inputs), not the replay.
    let (t0, cpu0) = (Instant::now(), thread_cpu_ns());
    let mut fold = 0u64;
    let r = journal::replay(&FsStorage, dir, 1, u64::MAX, |i| {
        fold = fold.wrapping_add(std::hint::black_box(i).seq.0);
        Ok(())
    })
    .map_err(journal::ReplayError::into_journal)
    .expect("replay");
    let secs = t0.elapsed().as_secs_f64();
    let cpu_secs = (thread_cpu_ns() - cpu0) as f64 / 1e9;
    std::hint::black_box(fold);
    let n = r.applied;
    let mut inputs: Vec<Input> = Vec::with_capacity(n as usize);
    journal::replay(&FsStorage, dir, 1, u64::MAX, |i| {
        inputs.push(*i);
        Ok(())
    })
    .map_err(journal::ReplayError::into_journal)
    .expect("replay");
    println!(
        "replay [durability=durable]: journal of {n} records in {} blocks ({:.0} records each), {} segments, {:.0} MB: read {:.3} s, read + verify {:.3} s; decode alone from memory {:.3} s",
        rep.blocks,
        n as f64 / rep.blocks.max(1) as f64,
        rep.segments,
        bytes as f64 / 1e6,
        read_secs,
        verify_secs,
        decode_secs
    );
    println!(
        "replay [durability=durable]: journal::replay() read + verify + decode {n} records in {secs:.3} s = {:.2} M records/s (target >= 10.9 M/s); on the CPU {cpu_secs:.3} s = {:.2} M records per CPU-second",
        n as f64 / secs / 1e6,
        n as f64 / cpu_secs.max(1e-9) / 1e6
    );
    let (_, r) = replay_dir(dir, EngineConfig::default()).expect("replay");
    // The same inputs applied from memory: the engine's own rate.
    let mut e = Engine::new(EngineConfig::default());
    let mut ev = e.new_events();
    let t0 = Instant::now();
    for i in &inputs {
        e.apply(i, &mut ev);
    }
    let esecs = t0.elapsed().as_secs_f64();
    assert_eq!(
        e.state_hash(),
        r.state_hash,
        "replay reproduces the state hash"
    );
    println!(
        "replay [durability=durable]: read + verify + decode + apply {} records in {:.3} s = {:.2} M commands/s (target >= 10 M/s); engine alone from memory {:.2} M commands/s; state hash {:032x} (matches)",
        r.commands,
        r.seconds,
        r.commands as f64 / r.seconds / 1e6,
        inputs.len() as f64 / esecs / 1e6,
        r.state_hash
    );
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    // The engine threads' idle strategy (spin, yield, park; default: the
    // runtime's).
    let idle: Option<IdleStrategy> = std::env::args()
        .nth(2)
        .map(|s| s.parse().expect("idle strategy: spin, yield or park"));
    let probe = bench_dir("probe");
    println!(
        "journal bench: {} records of 192 B, dir {}",
        n,
        probe.display()
    );
    let _ = std::fs::remove_dir_all(&probe);
    let recs = workload(n.max(300_000));
    latency(&recs);
    let recs = &recs[..n as usize];
    for mode in [Durability::None, Durability::Async] {
        throughput(recs, mode, idle);
    }
    if let Some(dir) = throughput(recs, Durability::Durable, idle) {
        replay(&dir, recs);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
