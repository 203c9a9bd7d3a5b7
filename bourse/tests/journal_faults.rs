//! Seeded crash/fault simulation of the journal, snapshots and recovery on
//! `SimDisk`.
//!
//! Each seed: a random command stream written through `JournalWriter` in
//! random batch sizes (segments are tiny so they roll often), snapshots now
//! and then, and several crash rounds. A crash happens either between
//! commits or during one (the write is issued, the fdatasync fails, so the
//! batch is never acknowledged), may tear that last write at a random byte,
//! and may flip bits inside that unacknowledged write. After each crash,
//! recovery must either succeed or (only when bits were flipped, and the
//! result is no longer provably a torn write) refuse with `Corrupt` naming
//! exactly that write's segment and offset, after which recovery with
//! `repair` succeeds. Then: every acknowledged seq is present; the
//! recovered seqs are exactly 1..=L with the journal's records equal to the
//! inputs written; the recovered state hash equals a fresh engine replaying
//! inputs 1..=L. Then writing resumes from L + 1. A lost unsynced write is
//! never an acknowledged one; damage is refused or repaired, never a wrong
//! answer.
//!
//! A second test flips bits inside a block that has valid blocks after it:
//! recovery must halt with `Corrupt` naming that segment and offset.
//!
//! `TEST_FAULT_SEEDS` (default 1000) sets the number of seeds.

use bourse_tests::fixtures;
use engine::*;
use journal::record::{decode, encode, InputRecord, SplitMix64, RECORD_LEN};
use journal::write_snapshot;
use journal::{
    self, BlockFault, Durability, JournalConfig, JournalError, JournalWriter, ScanReport, SimDisk,
};
use journal::{recover, recover_with, RecoveryError};
use std::path::{Path, PathBuf};

fn seeds() -> u64 {
    std::env::var("TEST_FAULT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

fn instrument() -> Command {
    Command::AddInstrument(fixtures::instrument(1))
}

/// A random but mostly valid command stream: orders, cancels, replaces,
/// time, queries, halts, accounts, transfers.
fn stream(rng: &mut SplitMix64, n: usize) -> Vec<Input> {
    let mut out = Vec::with_capacity(n);
    let mut now = 1_000u64;
    for i in 0..n {
        let seq = i as u64 + 1;
        now += rng.below(3) * 1_000;
        let command = if i == 0 {
            instrument()
        } else {
            match rng.below(100) {
                0..=54 => Command::NewOrder(NewOrder {
                    owner: OwnerId(1 + rng.below(4)),
                    instrument: InstrumentId(1),
                    client_order_id: ClientOrderId(seq),
                    side: if rng.chance(1, 2) {
                        Side::Buy
                    } else {
                        Side::Sell
                    },
                    order_type: OrderType::Limit,
                    price: Some(Price(95 + rng.below(11))),
                    qty: Qty(1 + rng.below(10)),
                    tif: if rng.chance(1, 8) { Tif::Ioc } else { Tif::Gtc },
                    expire_at: None,
                    post_only: false,
                    stp: Stp::None,
                    display_qty: None,
                    trigger_price: None,
                }),
                55..=74 => Command::Cancel {
                    owner: OwnerId(1 + rng.below(4)),
                    order_id: OrderId(1 + rng.below(seq)),
                },
                75..=82 => Command::Replace {
                    owner: OwnerId(1 + rng.below(4)),
                    order_id: OrderId(1 + rng.below(seq)),
                    price: Some(Price(95 + rng.below(11))),
                    qty: None,
                    requeue: seq.is_multiple_of(2),
                },
                83..=86 => Command::Time {
                    now: Timestamp(now),
                },
                87..=89 => Command::QueryBook {
                    instrument: InstrumentId(1),
                    depth: Some(5),
                },
                90 => Command::Halt {
                    instrument: InstrumentId(1),
                },
                91..=92 => Command::Resume {
                    instrument: InstrumentId(1),
                },
                93..=95 => Command::OpenAccount(AccountSpec {
                    id: AccountId(1 + rng.below(8) as u128),
                    owner: OwnerId(1),
                    asset: Asset::from_str_code("USD").unwrap(),
                    flags: AccountFlags(0),
                }),
                _ => Command::Transfer {
                    transfer: TransferSpec {
                        id: TransferId(seq as u128),
                        debit_account: AccountId(1 + rng.below(8) as u128),
                        credit_account: AccountId(1 + rng.below(8) as u128),
                        amount: Amount(1 + rng.below(100) as u128),
                        code: 1,
                        flags: TransferFlags(0),
                        pending_id: TransferId(0),
                        timeout_ns: 0,
                    },
                    batch_end: true,
                    actor: engine::Actor::Admin,
                },
            }
        };
        out.push(Input {
            seq: Seq(seq),
            now: Timestamp(now),
            command,
        });
    }
    out
}

/// Capacities just big enough for these streams (≤ 300 commands): building
/// an engine is then cheap enough to do several times per seed.
fn tiny() -> EngineConfig {
    EngineConfig {
        orders_max: 512,
        levels_max: 64,
        stops_max: 16,
        instruments_max: 2,
        owners_max: 16,
        client_order_ids_max: 1024,
        accounts_max: 32,
        transfers_max: 1024,
        events_max: 1024,
        assets_max: 4,
        batch_max: 64,
    }
}

fn replay_hash(inputs: &[Input]) -> u128 {
    let mut e = Engine::new(tiny());
    let mut ev = e.new_events();
    for i in inputs {
        e.apply(i, &mut ev);
    }
    e.state_hash()
}

/// Test snapshots: the body is the records 1..=seq; restoring replays them.
fn fake_snapshot_body(inputs: &[Input]) -> Vec<u8> {
    let recs: Vec<InputRecord> = inputs.iter().map(encode).collect();
    bytemuck::cast_slice(&recs).to_vec()
}

fn fake_restore(cfg: EngineConfig, body: &[u8]) -> Result<Engine, String> {
    if !body.len().is_multiple_of(RECORD_LEN) {
        return Err("body is not whole records".into());
    }
    let mut e = Engine::new(cfg);
    let mut ev = e.new_events();
    for chunk in body.chunks_exact(RECORD_LEN) {
        let r: InputRecord = bytemuck::pod_read_unaligned(chunk);
        e.apply(&decode(&r).map_err(|x| x.to_string())?, &mut ev);
    }
    Ok(e)
}

fn journal_inputs(d: &SimDisk, dir: &Path) -> (ScanReport, Vec<Input>) {
    let mut out = Vec::new();
    let rep = journal::scan(d, dir, |_, _, _, rs| {
        for r in rs {
            out.push(decode(r).expect("a valid block decodes"));
        }
        Ok(())
    })
    .expect("scan after recovery");
    (rep, out)
}

#[derive(Default, Debug)]
struct Stats {
    crashes: u64,
    in_flight: u64,
    torn_tails: u64,
    flipped: u64,
    from_snapshot: u64,
    beyond_ack: u64,
    refused_then_repaired: u64,
}

fn one_seed(seed: u64, st: &mut Stats) {
    let mut rng = SplitMix64(seed);
    let dir = Path::new("/data");
    let d = SimDisk::new();
    let n = 20 + rng.below(280) as usize;
    let inputs = stream(&mut rng, n);
    let jcfg = JournalConfig {
        segment_bytes: [12288u64, 16384, 65536][rng.below(3) as usize],
        max_batch: 1 + rng.below(32) as usize,
        durability: Durability::Durable,
    };
    let mut acked = 0u64; // every seq ≤ acked was acknowledged durable
    let mut next = 1u64; // next seq to write
    let rounds = 1 + rng.below(3);
    let mut writer = JournalWriter::open(d.clone(), dir, jcfg).expect("open").0;
    for round in 0..rounds {
        // Commit some batches.
        let batches = rng.below(12);
        for _ in 0..batches {
            if next > n as u64 {
                break;
            }
            let k = (1 + rng.below(jcfg.max_batch as u64)).min(n as u64 + 1 - next);
            let batch = &inputs[next as usize - 1..(next + k) as usize - 1];
            let last = writer.append_inputs(batch).expect("append");
            assert_eq!(last, next + k - 1);
            acked = last;
            next = last + 1;
            if rng.chance(1, 10) {
                write_snapshot(
                    &d,
                    dir,
                    acked,
                    replay_hash(&inputs[..acked as usize]),
                    &fake_snapshot_body(&inputs[..acked as usize]),
                )
                .expect("snapshot");
            }
        }
        // Crash, maybe during a commit that is never acknowledged.
        let in_flight = next <= n as u64 && rng.chance(2, 3);
        let mut flip: Option<(PathBuf, u64, u64)> = None;
        if in_flight {
            let k = (1 + rng.below(jcfg.max_batch as u64)).min(n as u64 + 1 - next);
            d.fail_syncs();
            let batch = &inputs[next as usize - 1..(next + k) as usize - 1];
            assert!(writer.append_inputs(batch).is_err(), "sync fails");
            if rng.chance(1, 3) {
                flip = writer.last_write().cloned();
            }
        }
        drop(writer);
        let tear = rng.chance(1, 2);
        d.crash(&mut rng, tear);
        if let Some((seg, off, len)) = flip.clone() {
            // Only inside the unacknowledged write: recovery must still work.
            let bits = 1 + rng.below(3) as usize;
            d.flip_bits(&mut rng, &seg, off..off + len, bits);
        }
        st.crashes += 1;
        st.in_flight += in_flight as u64;
        st.flipped += flip.is_some() as u64;
        let rec = match recover(&d, dir, tiny(), fake_restore) {
            Ok(r) => r,
            Err(RecoveryError::Journal(JournalError::Corrupt {
                segment, offset, ..
            })) if flip.is_some() => {
                let (fseg, foff, _) = flip.as_ref().expect("flipped");
                assert_eq!(
                    (&segment, offset),
                    (fseg, *foff),
                    "seed {seed} round {round}: refused, naming the damaged write"
                );
                st.refused_then_repaired += 1;
                recover_with(&d, dir, tiny(), fake_restore, true)
                    .unwrap_or_else(|e| panic!("seed {seed} round {round}: repair: {e}"))
            }
            Err(e) => panic!("seed {seed} round {round}: recovery failed: {e}"),
        };
        let l = rec.last_seq;
        st.torn_tails += rec.scan.tail.is_some() as u64;
        st.from_snapshot += rec.snapshot_seq.is_some() as u64;
        st.beyond_ack += (l > acked) as u64;
        assert!(
            l >= acked,
            "seed {seed} round {round}: acked {acked}, recovered {l}"
        );
        assert!(
            l < next + jcfg.max_batch as u64,
            "seed {seed}: phantom seqs"
        );
        let (rep, got) = journal_inputs(&d, dir);
        assert!(
            rep.tail.is_none() && rep.trailing.is_empty(),
            "seed {seed}: repaired"
        );
        assert_eq!(rep.last_seq.unwrap_or(0), l, "seed {seed}");
        assert_eq!(
            got.as_slice(),
            &inputs[..l as usize],
            "seed {seed}: contiguous prefix"
        );
        assert_eq!(
            rec.state_hash,
            replay_hash(&inputs[..l as usize]),
            "seed {seed} round {round}: state hash"
        );
        assert_eq!(rec.engine.state_hash(), rec.state_hash);
        if let Some(s) = rec.snapshot_seq {
            assert!(s <= l);
            assert_eq!(rec.replayed, l - s);
        }
        acked = l;
        next = l + 1;
        writer = JournalWriter::resume(d.clone(), dir, jcfg, rep.end).expect("resume");
    }
}

#[test]
fn acknowledged_commands_survive_seeded_crashes() {
    let t0 = std::time::Instant::now();
    let n = seeds();
    let mut st = Stats::default();
    for seed in 0..n {
        one_seed(seed, &mut st);
    }
    eprintln!("{n} seeds in {:.2?}: {st:?}", t0.elapsed());
    // The schedules really exercise every case.
    assert!(st.in_flight > 0 && st.torn_tails > 0 && st.flipped > 0);
    assert!(st.from_snapshot > 0 && st.beyond_ack > 0 && st.refused_then_repaired > 0);
}

#[test]
fn corrupt_middle_block_halts_naming_segment_and_offset() {
    let n = (seeds() / 4).max(250);
    for seed in 0..n {
        let mut rng = SplitMix64(seed ^ 0xC0FFEE);
        let dir = Path::new("/data");
        let d = SimDisk::new();
        let inputs = stream(&mut rng, 120);
        let jcfg = JournalConfig {
            segment_bytes: [12288u64, 16384][rng.below(2) as usize],
            max_batch: 4 + rng.below(20) as usize,
            durability: Durability::Durable,
        };
        let mut w = JournalWriter::open(d.clone(), dir, jcfg).unwrap().0;
        let mut next = 1usize;
        while next <= inputs.len() {
            let k = (1 + rng.below(jcfg.max_batch as u64) as usize).min(inputs.len() + 1 - next);
            w.append_inputs(&inputs[next - 1..next - 1 + k]).unwrap();
            next += k;
        }
        drop(w);
        let mut blocks: Vec<(PathBuf, u64, u64)> = Vec::new();
        journal::scan(&d, dir, |seg, off, h, _| {
            blocks.push((
                seg.to_path_buf(),
                off,
                journal::HEADER_LEN as u64 + h.body_len,
            ));
            Ok(())
        })
        .unwrap();
        assert!(blocks.len() >= 3);
        let victim = rng.below(blocks.len() as u64 - 1) as usize; // never the last
        let (seg, off, len) = blocks[victim].clone();
        d.flip_bits(&mut rng, &seg, off..off + len, 1);
        let err = recover(&d, dir, tiny(), fake_restore).unwrap_err();
        match &err {
            RecoveryError::Journal(JournalError::Corrupt {
                segment,
                offset,
                what,
                ..
            }) => {
                assert_eq!((segment, *offset), (&seg, off), "seed {seed}: {err}");
                assert!(what.tearable() || matches!(what, BlockFault::Record { .. }));
            }
            other => panic!("seed {seed}: expected Corrupt, got {other}"),
        }
        let msg = err.to_string();
        let name = seg.file_name().unwrap().to_str().unwrap();
        assert!(
            msg.contains(name) && msg.contains(&format!("offset {off}")),
            "{msg}"
        );
        // Nothing was repaired or removed: the damage stays for a human.
        assert!(d.contents(&seg).is_some());
    }
}
