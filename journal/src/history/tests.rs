//! The history store against a naive in-memory model over seeded random
//! change streams, and under simulated disk faults (torn writes, lost
//! unsynced writes, crash before rename, bit flips, missing runs): every
//! answer is the model's or a typed error naming the file, never a wrong one.

use super::format::{BLOCK_LEN, HEADER_LEN};
use super::*;
use crate::record::SplitMix64;
use crate::{SimDisk, Storage};
use engine::command::{TransferFlags, TransferSpec};
use engine::event::LedgerError;
use engine::history::RECORD_LEN;
use engine::history::{AccountFilter, RangeBy, TransferHistory, TransferRecord, TransferState};
use engine::types::{AccountId, Amount, Seq, Timestamp, TransferId};
use std::path::Path;

const DIR: &str = "/data/history";
const ACCOUNTS: u64 = 6;

/// A seeded stream of changes, one `Vec` per input seq (1, 2, …): new
/// transfers (posted or pending), pending transfers resolved later (a new
/// record of the same id), resolution records, remembered failed ids.
fn stream(seed: u64, inputs: u64) -> Vec<Vec<TransferRecord>> {
    let mut rng = SplitMix64(seed);
    let mut pending: Vec<TransferRecord> = Vec::new();
    let (mut ledger_seq, mut next_id) = (0u64, 1u128);
    let mut out = Vec::new();
    for seq in 1..=inputs {
        let mut changes = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let mut spec = TransferSpec {
                id: TransferId(next_id * 7919),
                debit_account: AccountId(1 + rng.below(ACCOUNTS) as u128),
                credit_account: AccountId(1 + rng.below(ACCOUNTS) as u128),
                amount: Amount(1 + rng.below(1000) as u128),
                code: rng.below(5) as u16,
                flags: TransferFlags::default(),
                pending_id: TransferId(0),
                timeout_ns: 0,
            };
            if spec.credit_account == spec.debit_account {
                spec.credit_account = AccountId(spec.debit_account.0 % ACCOUNTS as u128 + 1);
            }
            next_id += 1;
            let roll = rng.below(10);
            if roll == 0 && !pending.is_empty() {
                // Resolve an older pending transfer: its record changes.
                let i = rng.below(pending.len() as u64) as usize;
                let mut p = pending.swap_remove(i);
                p.state = if rng.chance(1, 2) {
                    TransferState::PendingPosted
                } else {
                    TransferState::PendingVoided
                };
                p.change_seq = Seq(seq);
                changes.push(p);
                continue;
            }
            let state = match roll {
                1 => TransferState::Failed(LedgerError::ExceedsCredits),
                2 | 3 => TransferState::Pending,
                4 => TransferState::Resolution,
                _ => TransferState::Posted,
            };
            let failed = matches!(state, TransferState::Failed(_));
            if !failed {
                ledger_seq += 1;
            }
            let resolution = state == TransferState::Resolution;
            let r = TransferRecord {
                // A post's or void's spec may name no accounts; its record
                // carries its pending transfer's, and the index uses those.
                spec: TransferSpec {
                    debit_account: AccountId(if resolution { 0 } else { spec.debit_account.0 }),
                    credit_account: AccountId(if resolution { 0 } else { spec.credit_account.0 }),
                    ..spec
                },
                debit_account: spec.debit_account,
                credit_account: spec.credit_account,
                amount: if failed { Amount(0) } else { spec.amount },
                state,
                ledger_seq: if failed { 0 } else { ledger_seq },
                created_seq: Seq(seq),
                created: Timestamp(1_000 * seq),
                change_seq: Seq(seq),
            };
            if state == TransferState::Pending {
                pending.push(r);
            }
            changes.push(r);
        }
        out.push(changes);
    }
    out
}

/// The naive model: every installed record, newest per id wins.
struct Model(Vec<TransferRecord>);

impl Model {
    fn get(&self, id: TransferId) -> Option<TransferRecord> {
        self.0
            .iter()
            .filter(|r| r.spec.id == id)
            .max_by_key(|r| r.change_seq)
            .copied()
    }

    fn account(&self, f: &AccountFilter, limit: usize) -> Vec<TransferRecord> {
        let mut newest: Vec<TransferRecord> = Vec::new();
        for r in &self.0 {
            if matches!(r.state, TransferState::Failed(_)) || self.get(r.spec.id) != Some(*r) {
                continue;
            }
            let mine = r.debit_account == f.account || r.credit_account == f.account;
            let key = match f.by {
                RangeBy::LedgerSeq => r.ledger_seq,
                RangeBy::Time => r.created.0,
            };
            if mine && (f.lo..=f.hi).contains(&key) {
                newest.push(*r);
            }
        }
        newest.sort_by_key(|r| r.ledger_seq);
        if f.newest_first {
            newest.reverse();
        }
        newest.truncate(limit);
        newest
    }
}

fn collect(h: &dyn TransferHistory, f: &AccountFilter, limit: usize) -> Vec<TransferRecord> {
    let mut out = Vec::new();
    h.account(f, &mut |r| {
        out.push(*r);
        out.len() < limit
    })
    .expect("account query");
    out
}

/// Writes the stream as runs (a cut every `every` records, at the seq of
/// the record that makes the run full); returns the installed records and
/// the (run, checksum) list.
fn write_runs(
    disk: &SimDisk,
    inputs: &[Vec<TransferRecord>],
    every: usize,
) -> (Model, Vec<(u64, u128)>) {
    let mut w = RunWriter::new(disk.clone(), Path::new(DIR), 0, 0, every).unwrap();
    let (mut runs, mut cut_inputs) = (Vec::new(), 0);
    for (i, changes) in inputs.iter().enumerate() {
        w.push(changes);
        if w.due() {
            runs.push(w.cut((i + 1) as u64).unwrap());
            assert_eq!(w.pending(), 0, "a cut at the newest seq takes every change");
            cut_inputs = i + 1;
        }
    }
    let installed = inputs[..cut_inputs].iter().flatten().copied().collect();
    (Model(installed), runs)
}

/// A random account-query range over the test records' ledger_seqs
/// (1..3000) or creation times (up to 1.6 ms): (by, lo, hi), lo ≤ hi.
fn random_range(rng: &mut SplitMix64) -> (RangeBy, u64, u64) {
    let by = if rng.chance(1, 2) {
        RangeBy::LedgerSeq
    } else {
        RangeBy::Time
    };
    let top = if by == RangeBy::LedgerSeq {
        3000
    } else {
        1_600_000
    };
    let (x, y) = (rng.below(top), rng.below(top));
    (by, x.min(y), x.max(y))
}

fn filter(account: u64, by: RangeBy, lo: u64, hi: u64, newest_first: bool) -> AccountFilter {
    AccountFilter {
        account: AccountId(account as u128),
        by,
        lo,
        hi,
        limit: 1024,
        newest_first,
    }
}

#[test]
fn lookups_and_account_pages_match_the_model() {
    // No id filter; one overfilled (16 blocks for ~2,800 ids: mostly
    // "maybe"); one at its design load or below (mostly "no").
    for (seed, filter_bytes) in [(1u64, 0u64), (2, 0), (3, 0), (1, 1024), (2, 1 << 16)] {
        println!("seed {seed} filter_bytes {filter_bytes}");
        let disk = SimDisk::new();
        let inputs = stream(seed, 1500);
        let (model, runs) = write_runs(&disk, &inputs, 500);
        assert!(runs.len() >= 4, "{} runs", runs.len());
        let mut h = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap();
        if let Some(f) = IdFilter::new(filter_bytes) {
            let filled = h.attach_filter(std::sync::Arc::new(f)).unwrap();
            assert_eq!(filled, model.0.len() as u64, "every installed record read");
        }
        assert_eq!(h.runs(), runs.len() as u64);
        h.verify().unwrap();
        for &(run, sum) in &runs {
            assert!(h.has_run(run, sum).unwrap());
            assert!(!h.has_run(run, sum ^ 1).unwrap());
        }
        assert!(!h.has_run(runs.len() as u64 + 1, 0).unwrap());
        // Every id ever seen (installed or not), plus ids never used.
        for r in inputs.iter().flatten() {
            assert_eq!(
                h.get(r.spec.id).unwrap(),
                model.get(r.spec.id),
                "seed {seed} id {:?}",
                r.spec.id
            );
        }
        for id in [0u128, 1, 7918, 7920, u128::MAX] {
            assert_eq!(h.get(TransferId(id)).unwrap(), None);
        }
        let mut rng = SplitMix64(seed);
        for _ in 0..60 {
            let a = 1 + rng.below(ACCOUNTS + 1);
            let (by, x, y) = random_range(&mut rng);
            let (lo, hi) = if rng.chance(1, 5) {
                (0, u64::MAX)
            } else {
                (x, y)
            };
            let f = filter(a, by, lo, hi, rng.chance(1, 2));
            let limit = 1 + rng.below(400) as usize;
            assert_eq!(
                collect(&h, &f, limit),
                model.account(&f, limit),
                "seed {seed} {f:?} limit {limit}"
            );
        }
    }
}

#[test]
fn a_pending_transfer_resolved_in_a_later_run_answers_its_newest_state() {
    let disk = SimDisk::new();
    let spec = TransferSpec {
        id: TransferId(42),
        debit_account: AccountId(1),
        credit_account: AccountId(2),
        amount: Amount(10),
        code: 0,
        flags: TransferFlags::default(),
        pending_id: TransferId(0),
        timeout_ns: 0,
    };
    let created = TransferRecord {
        spec,
        debit_account: spec.debit_account,
        credit_account: spec.credit_account,
        amount: Amount(10),
        state: TransferState::Pending,
        ledger_seq: 1,
        created_seq: Seq(1),
        created: Timestamp(5),
        change_seq: Seq(1),
    };
    let posted = TransferRecord {
        state: TransferState::PendingPosted,
        change_seq: Seq(9),
        ..created
    };
    let mut w = RunWriter::new(disk.clone(), Path::new(DIR), 0, 0, 1).unwrap();
    w.push(&[created]);
    w.cut(3).unwrap();
    w.push(&[posted]);
    w.cut(9).unwrap();
    let h = DiskHistory::open(disk, Path::new(DIR)).unwrap();
    assert_eq!(h.get(TransferId(42)).unwrap(), Some(posted));
    for newest_first in [false, true] {
        let f = filter(2, RangeBy::LedgerSeq, 0, u64::MAX, newest_first);
        assert_eq!(
            collect(&h, &f, 10),
            vec![posted],
            "each transfer once, newest state"
        );
    }
}

#[test]
fn crash_before_rename_or_sync_leaves_no_run_and_open_cleans_up() {
    let disk = SimDisk::new();
    let inputs = stream(7, 300);
    write_runs(&disk, &inputs, 100);
    let before = DiskHistory::open(disk.clone(), Path::new(DIR))
        .unwrap()
        .runs();
    // A run written to its temp name, then a crash (torn, unsynced).
    let image = build_run(before + 1, 300, 301, &inputs[0]);
    let tmp = Path::new(DIR).join(format!("{}.tmp", run_name(before + 1)));
    let mut f = disk.create(&tmp).unwrap();
    crate::StorageFile::write_at(&mut f, &image.bytes, 0).unwrap();
    disk.crash(&mut SplitMix64(3), true);
    let h = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap();
    assert_eq!(h.runs(), before);
    assert!(!disk
        .list(Path::new(DIR))
        .unwrap()
        .iter()
        .any(|n| n.ends_with(".tmp")));
    // A failed sync: the cut fails loudly, and after the crash the run is not there.
    let mut w = RunWriter::new(disk.clone(), Path::new(DIR), before, 300, 1).unwrap();
    w.push(
        &inputs[0]
            .iter()
            .map(|r| TransferRecord {
                change_seq: Seq(301),
                ..*r
            })
            .collect::<Vec<_>>(),
    );
    disk.fail_syncs();
    assert!(matches!(
        w.cut(301),
        Err(HistoryError::Io {
            op: "fdatasync",
            ..
        })
    ));
    disk.crash(&mut SplitMix64(4), true);
    assert_eq!(
        DiskHistory::open(disk, Path::new(DIR)).unwrap().runs(),
        before
    );
}

#[test]
fn synced_runs_survive_a_crash() {
    let disk = SimDisk::new();
    let inputs = stream(8, 400);
    let (model, runs) = write_runs(&disk, &inputs, 150);
    disk.crash(&mut SplitMix64(5), true);
    let h = DiskHistory::open(disk, Path::new(DIR)).unwrap();
    assert_eq!(h.runs(), runs.len() as u64);
    h.verify().unwrap();
    for r in &model.0 {
        assert_eq!(h.get(r.spec.id).unwrap(), model.get(r.spec.id));
    }
}

#[test]
fn bit_flips_give_a_fault_naming_the_file_never_a_wrong_answer() {
    for seed in 0..40u64 {
        let disk = SimDisk::new();
        let inputs = stream(100 + seed, 300);
        let (model, runs) = write_runs(&disk, &inputs, 120);
        let mut rng = SplitMix64(seed);
        let victim = 1 + rng.below(runs.len() as u64);
        let path = Path::new(DIR).join(run_name(victim));
        let len = disk.contents(&path).unwrap().len() as u64;
        // Past the header page: open still works, lookups must notice.
        disk.flip_bits(&mut rng, &path, BLOCK_LEN as u64..len, 1);
        let h = match DiskHistory::open(disk.clone(), Path::new(DIR)) {
            Ok(h) => h,
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    matches!(e, HistoryError::Corrupt { .. }),
                    "seed {seed}: {msg}"
                );
                assert!(msg.contains(&run_name(victim)), "seed {seed}: {msg}");
                continue;
            }
        };
        let v = h.verify().expect_err("a flipped bit must not verify");
        assert!(
            v.to_string().contains(&run_name(victim)),
            "seed {seed}: {v}"
        );
        for r in inputs.iter().flatten() {
            match h.get(r.spec.id) {
                Ok(got) => assert_eq!(got, model.get(r.spec.id), "seed {seed}: wrong answer"),
                Err(f) => assert!(f.what.contains(&run_name(victim)), "seed {seed}: {f}"),
            }
        }
        for a in 1..=ACCOUNTS {
            let f = filter(a, RangeBy::LedgerSeq, 0, u64::MAX, a % 2 == 0);
            let mut got = Vec::new();
            match h.account(&f, &mut |r| {
                got.push(*r);
                true
            }) {
                Ok(()) => assert_eq!(got, model.account(&f, usize::MAX), "seed {seed}"),
                Err(e) => assert!(e.what.contains(&run_name(victim)), "seed {seed}: {e}"),
            }
        }
    }
}

#[test]
fn header_damage_and_missing_runs_are_refused_naming_the_file() {
    let disk = SimDisk::new();
    let inputs = stream(9, 400);
    let (_, runs) = write_runs(&disk, &inputs, 100);
    assert!(runs.len() >= 3);
    let p2 = Path::new(DIR).join(run_name(2));
    disk.flip_bits(&mut SplitMix64(1), &p2, 0..HEADER_LEN as u64, 1);
    let e = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&run_name(2)) && msg.contains("header"),
        "{msg}"
    );
    disk.remove(&p2).unwrap();
    let e = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap_err();
    assert!(matches!(e, HistoryError::Missing { .. }), "{e}");
    assert!(e.to_string().contains(&run_name(2)), "{e}");
}

#[test]
fn a_lost_run_is_repaired_from_records_supplied_again_only_if_identical() {
    let disk = SimDisk::new();
    let inputs = stream(10, 400);
    let (model, runs) = write_runs(&disk, &inputs, 100);
    let h = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap();
    let r2 = h.header(2).unwrap();
    let (after, through) = (r2.after_seq, r2.through_seq);
    drop(h);
    let p2 = Path::new(DIR).join(run_name(2));
    disk.remove(&p2).unwrap();
    let records: Vec<TransferRecord> = inputs
        .iter()
        .flatten()
        .filter(|r| r.change_seq.0 > after && r.change_seq.0 <= through)
        .copied()
        .collect();
    // Records that are not the run's: refused, nothing written.
    let e = repair_run(
        &disk,
        Path::new(DIR),
        2,
        (after, through),
        &records[1..],
        runs[1].1,
    )
    .unwrap_err();
    assert!(matches!(e, HistoryError::RepairMismatch { .. }), "{e}");
    assert!(DiskHistory::open(disk.clone(), Path::new(DIR)).is_err());
    repair_run(
        &disk,
        Path::new(DIR),
        2,
        (after, through),
        &records,
        runs[1].1,
    )
    .unwrap();
    let h = DiskHistory::open(disk, Path::new(DIR)).unwrap();
    assert!(h.has_run(2, runs[1].1).unwrap());
    for r in &records {
        assert_eq!(h.get(r.spec.id).unwrap(), model.get(r.spec.id));
    }
}

#[test]
fn a_run_rewritten_after_a_restart_is_reloaded_by_has_run() {
    // Run 2 written but never installed; after the restart the writer
    // removes it and cuts the same changes elsewhere.
    let disk = SimDisk::new();
    let inputs = stream(11, 300);
    let mut w = RunWriter::new(disk.clone(), Path::new(DIR), 0, 0, 1000).unwrap();
    for c in &inputs[..100] {
        w.push(c);
    }
    let (_, sum1) = w.cut(100).unwrap();
    for c in &inputs[100..200] {
        w.push(c);
    }
    let (_, stale) = w.cut(200).unwrap();
    let h = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap();
    assert!(h.has_run(2, stale).unwrap());
    let mut w = RunWriter::new(disk.clone(), Path::new(DIR), 1, 100, 1000).unwrap();
    for c in &inputs[100..250] {
        w.push(c);
    }
    let (run, fresh) = w.cut(250).unwrap();
    assert_eq!(run, 2);
    assert_ne!(fresh, stale);
    assert!(h.has_run(1, sum1).unwrap());
    assert!(h.has_run(2, fresh).unwrap());
    let last = inputs[240][0];
    assert_eq!(
        h.get(last.spec.id).unwrap().map(|r| r.spec),
        Some(last.spec)
    );
}

#[test]
fn a_run_has_one_checksum_whichever_store_holds_it() {
    let records: Vec<TransferRecord> = stream(12, 200).into_iter().flatten().collect();
    let image = build_run(1, 0, 200, &records);
    let mut copy = records.clone();
    assert_eq!(
        image.header.checksum,
        engine::history::run_checksum(&mut copy)
    );
    let mem = engine::history::MemHistory::new();
    assert_eq!(image.header.checksum, mem.add_run(1, &mut records.clone()));
    let mut other = records.clone();
    other[3].amount = Amount(other[3].amount.0 + 1);
    assert_ne!(
        build_run(1, 0, 200, &other).header.checksum,
        image.header.checksum
    );
}

#[test]
fn lookups_read_the_id_where_the_canonical_encoding_puts_it() {
    let mut buf = [0u8; RECORD_LEN];
    for r in stream(13, 50).iter().flatten() {
        engine::history::encode_record(r, &mut buf);
        assert_eq!(super::format::record_id(&buf), r.spec.id.0);
    }
}

// ----- compaction ---------------------------------------------------------

use super::compact::{merge, pick_group, remove_members, FileSpan};
use super::format::merged_name;

/// Every answer the store gives for `inputs`' ids and a seeded set of
/// account queries (both orders, ranges by seq and time, paged limits).
fn answers(h: &dyn TransferHistory, inputs: &[Vec<TransferRecord>], seed: u64) -> Vec<String> {
    let mut out: Vec<String> = inputs
        .iter()
        .flatten()
        .map(|r| format!("{:?}", h.get(r.spec.id).unwrap()))
        .collect();
    let mut rng = SplitMix64(seed);
    for _ in 0..80 {
        let (by, lo, hi) = random_range(&mut rng);
        let f = filter(1 + rng.below(ACCOUNTS), by, lo, hi, rng.chance(1, 2));
        out.push(format!("{:?}", collect(h, &f, 1 + rng.below(300) as usize)));
    }
    out
}

fn span_of(h: &DiskHistory<SimDisk>, run: u64) -> FileSpan {
    let hd = h.header(run).unwrap();
    FileSpan {
        first: hd.first_run,
        last: hd.run,
        records: hd.records,
    }
}

/// Merges runs `first..=last` as they are open now (durably, members removed).
fn merge_range(disk: &SimDisk, first: u64, last: u64) {
    let h = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap();
    let mut group = vec![span_of(&h, first)];
    while group.last().unwrap().last < last {
        group.push(span_of(&h, group.last().unwrap().last + 1));
    }
    merge(disk, Path::new(DIR), &group).unwrap();
    remove_members(disk, Path::new(DIR), &group).unwrap();
}

#[test]
fn compaction_answers_exactly_as_the_runs_did() {
    for seed in [11u64, 12, 13] {
        println!("seed {seed}");
        let disk = SimDisk::new();
        let inputs = stream(seed, 2400);
        let (model, runs) = write_runs(&disk, &inputs, 150);
        assert!(runs.len() >= 12, "{} runs", runs.len());
        let before = answers(
            &DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap(),
            &inputs,
            seed,
        );
        // Two tiers: 1..4 and 5..8, then those two merged, then 9..12.
        merge_range(&disk, 1, 4);
        merge_range(&disk, 5, 8);
        merge_range(&disk, 1, 8);
        merge_range(&disk, 9, 12);
        let h = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap();
        h.verify().unwrap();
        assert_eq!(h.runs(), runs.len() as u64);
        assert_eq!(h.files(), runs.len() as u64 - 12 + 2);
        assert_eq!(answers(&h, &inputs, seed), before, "seed {seed}");
        for r in inputs.iter().flatten() {
            assert_eq!(h.get(r.spec.id).unwrap(), model.get(r.spec.id));
        }
        // Runs merged away still install (replay), only under their checksum.
        for &(run, sum) in &runs {
            assert!(h.has_run(run, sum).unwrap(), "run {run}");
            assert!(!h.has_run(run, sum ^ 1).unwrap(), "run {run}");
            h.check_installed(run, sum).unwrap();
        }
        assert!(h.check_installed(3, runs[2].1 ^ 1).is_err());
        let names = disk.list(Path::new(DIR)).unwrap();
        assert!(names.contains(&merged_name(1, 8)), "{names:?}");
        assert!(!names.contains(&run_name(3)), "{names:?}");
    }
}

#[test]
fn a_merged_file_only_keeps_each_ids_newest_record() {
    let disk = SimDisk::new();
    let inputs = stream(21, 1200);
    let (model, runs) = write_runs(&disk, &inputs, 100);
    let total: u64 = {
        let h = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap();
        (1..=runs.len() as u64)
            .map(|r| h.header(r).unwrap().records)
            .sum()
    };
    merge_range(&disk, 1, runs.len() as u64);
    let h = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap();
    let merged = h.header(1).unwrap().records;
    let mut ids: Vec<u128> = model.0.iter().map(|r| r.spec.id.0).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(merged, ids.len() as u64);
    assert!(merged < total, "resolved pending transfers had two records");
}

#[test]
fn a_crash_at_each_compaction_step_is_repaired_or_refused_never_wrong() {
    let disk = SimDisk::new();
    let inputs = stream(31, 1200);
    let (_, runs) = write_runs(&disk, &inputs, 150);
    let dir = Path::new(DIR);
    let before = answers(&DiskHistory::open(disk.clone(), dir).unwrap(), &inputs, 31);
    let h = DiskHistory::open(disk.clone(), dir).unwrap();
    let group: Vec<FileSpan> = (1..=4).map(|r| span_of(&h, r)).collect();
    drop(h);
    // 1. Crash while the merged file is being written (temp name, unsynced).
    let mut probe = disk.clone();
    merge(&probe, dir, &group).unwrap();
    let name = merged_name(1, 4);
    probe
        .rename(&dir.join(&name), &dir.join(format!("{name}.tmp")))
        .unwrap();
    probe.sync_dir(dir).unwrap();
    probe.crash(&mut SplitMix64(1), true);
    let h = DiskHistory::open(disk.clone(), dir).unwrap();
    assert_eq!(answers(&h, &inputs, 31), before);
    assert_eq!(h.files(), runs.len() as u64);
    assert!(!disk.list(dir).unwrap().iter().any(|n| n.ends_with(".tmp")));
    drop(h);
    // 2. Crash after the rename, before any member is removed; 3. after
    // some are: open removes the members, the merged file answers.
    probe = disk.clone();
    merge(&probe, dir, &group).unwrap();
    probe.crash(&mut SplitMix64(2), true);
    let h = DiskHistory::open_read_only(disk.clone(), dir).unwrap();
    assert_eq!(answers(&h, &inputs, 31), before);
    assert!(
        disk.list(dir).unwrap().contains(&run_name(2)),
        "read-only removes nothing"
    );
    probe.remove(&dir.join(run_name(1))).unwrap();
    probe.crash(&mut SplitMix64(3), false);
    let h = DiskHistory::open(disk.clone(), dir).unwrap();
    assert_eq!(answers(&h, &inputs, 31), before);
    assert_eq!(h.files(), runs.len() as u64 - 3);
    let names = disk.list(dir).unwrap();
    assert!((1..=4).all(|r| !names.contains(&run_name(r))), "{names:?}");
    drop(h);
    // Overlapping merged files (neither holds the other): refused, named.
    let h = DiskHistory::open(disk.clone(), dir).unwrap();
    let g2: Vec<FileSpan> = (5..=6).map(|r| span_of(&h, r)).collect();
    drop(h);
    merge(&disk, dir, &g2).unwrap();
    let img = disk.contents(&dir.join(merged_name(5, 6))).unwrap();
    let mut f = disk.create(&dir.join(merged_name(4, 5))).unwrap();
    crate::StorageFile::write_at(&mut f, &img, 0).unwrap();
    assert!(matches!(
        DiskHistory::open(disk.clone(), dir),
        Err(HistoryError::Overlap { .. })
    ));
}

#[test]
fn a_bit_flip_in_a_merged_file_is_a_fault_naming_it() {
    let disk = SimDisk::new();
    let inputs = stream(41, 900);
    write_runs(&disk, &inputs, 150);
    merge_range(&disk, 1, 4);
    let path = Path::new(DIR).join(merged_name(1, 4));
    let h = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap();
    let data_end = h.header(1).unwrap().record_span.offset + h.header(1).unwrap().record_span.len;
    drop(h);
    disk.flip_bits(&mut SplitMix64(5), &path, BLOCK_LEN as u64..data_end, 64);
    let h = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap();
    let e = h.verify().unwrap_err().to_string();
    assert!(e.contains(&merged_name(1, 4)), "{e}");
    let mut faults = 0;
    for r in inputs.iter().flatten() {
        match h.get(r.spec.id) {
            Ok(_) => {}
            Err(f) => {
                assert!(f.what.contains(&merged_name(1, 4)), "{f}");
                faults += 1;
            }
        }
    }
    assert!(faults > 0);
}

#[test]
fn the_engines_store_adopts_a_merged_file_handed_over_without_reading_it() {
    let disk = SimDisk::new();
    let inputs = stream(51, 1200);
    let (_, runs) = write_runs(&disk, &inputs, 150);
    let dir = Path::new(DIR);
    let h = DiskHistory::open(disk.clone(), dir).unwrap();
    let before = answers(&h, &inputs, 51);
    for &(run, sum) in &runs {
        assert!(h.has_run(run, sum).unwrap());
    }
    // A compactor on "another thread": learns installs through the link.
    let mut c = Compactor::new(disk.clone(), dir, h.link(), (4, u64::MAX), (0, 0)).unwrap();
    c.observe(|| 1000).unwrap();
    assert!(!c.step().unwrap(), "no snapshot: nothing eligible");
    // A snapshot at seq 1001 covers every install applied by then.
    disk.create(&Path::new("/data").join(crate::snapshot::snapshot_name(1001)))
        .unwrap();
    c.observe(|| 1000).unwrap();
    assert!(c.step().unwrap());
    assert_eq!(
        c.files()[0],
        FileSpan {
            first: 1,
            last: 4,
            records: c.files()[0].records
        }
    );
    // Members are gone from disk; the store swaps in the merged file at its
    // next call, and answers exactly as before.
    assert_eq!(answers(&h, &inputs, 51), before);
    assert_eq!(h.files(), runs.len() as u64 - 3);
    while c.step().unwrap() {}
    assert_eq!(answers(&h, &inputs, 51), before);
    assert!(h.files() <= 4, "{} files", h.files());
}

#[test]
fn the_policy_merges_the_oldest_full_tier_of_eligible_files() {
    let one = |r: u64| FileSpan {
        first: r,
        last: r,
        records: 10,
    };
    let files: Vec<FileSpan> = (1..=9).map(one).collect();
    assert_eq!(pick_group(&files, 4, 1000, 9), Some(0));
    assert_eq!(pick_group(&files, 4, 1000, 3), None, "run 4 not eligible");
    assert_eq!(pick_group(&files, 4, 39, 9), None, "records_max");
    let mut files = vec![FileSpan {
        first: 1,
        last: 4,
        records: 40,
    }];
    files.extend((5..=9).map(one));
    assert_eq!(
        pick_group(&files, 4, 1000, 9),
        Some(1),
        "tier 0 window after a tier-1 file"
    );
    assert_eq!(pick_group(&files[..4], 4, 1000, 9), None);
}

/// The writer adds each run's ids to the filter before `cut` returns (so
/// before the install): a filter fed only by the writer admits every
/// installed id, and one filled from disk at a restart admits the same.
#[test]
fn the_writer_and_a_restart_fill_the_id_filter_with_every_installed_id() {
    let seed = 11;
    println!("seed {seed}");
    let disk = SimDisk::new();
    let inputs = stream(seed, 1200);
    let live = std::sync::Arc::new(IdFilter::new(1 << 16).unwrap());
    let mut w = RunWriter::new(disk.clone(), Path::new(DIR), 0, 0, 400)
        .unwrap()
        .with_filter(live.clone());
    let mut installed = Vec::new();
    for (i, changes) in inputs.iter().enumerate() {
        w.push(changes);
        if w.due() {
            w.cut((i + 1) as u64).unwrap();
            installed = inputs[..=i].iter().flatten().copied().collect();
            assert!(installed.iter().all(|r| live.may_contain(r.spec.id.0)));
        }
    }
    assert!(installed.len() > 800, "{} installed", installed.len());
    let restarted = std::sync::Arc::new(IdFilter::new(1 << 16).unwrap());
    let mut h = DiskHistory::open(disk, Path::new(DIR)).unwrap();
    h.attach_filter(restarted.clone()).unwrap();
    let model = Model(installed.clone());
    for r in &installed {
        assert!(
            restarted.may_contain(r.spec.id.0),
            "{:?} not filled",
            r.spec.id
        );
        assert_eq!(h.get(r.spec.id).unwrap(), model.get(r.spec.id));
    }
    // New ids: at this load the filter answers almost all of them itself.
    let fresh = (0..10_000u128).map(|i| (1u128 << 90) + i);
    let maybe = fresh
        .clone()
        .filter(|&id| restarted.may_contain(id))
        .count();
    assert!(maybe < 200, "{maybe} of 10000 new ids pass the filter");
    assert!(fresh
        .take(500)
        .all(|id| h.get(TransferId(id)).unwrap().is_none()));
}

/// A run installed without its ids in the filter (a writer that skipped
/// them) would answer "no such transfer" for them: debug builds probe the
/// files behind every "no" and stop loudly.
#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "history id filter lacks transfer")]
fn a_filter_missing_an_installed_id_is_caught() {
    let disk = SimDisk::new();
    let mut h = DiskHistory::open(disk.clone(), Path::new(DIR)).unwrap();
    h.attach_filter(std::sync::Arc::new(IdFilter::new(4096).unwrap()))
        .unwrap();
    let inputs = stream(5, 300);
    // This writer has no filter: the store's never learns the run's ids.
    let (model, runs) = write_runs(&disk, &inputs, 100);
    let (run, sum) = runs[0];
    assert!(h.has_run(run, sum).unwrap());
    let id = model.0[0].spec.id;
    let _ = h.get(id);
}

/// A replicated partition's writer and its runs between replicas: a held
/// cut keeps its changes until it is settled (so writing it again gives
/// the same bytes), a writer behind catches up in runs of at most twice
/// `run_records` (whole inputs), a reset restarts from a restored engine's
/// tail; a peer's file is adopted only as exactly the run and checksum
/// asked for, after the run before it, and its ids reach the filter.
#[test]
fn replicated_runs_are_held_until_installed_and_adopted_only_as_named() {
    let (leader, follower) = (SimDisk::new(), SimDisk::new());
    let dir = Path::new(DIR);
    let inputs = stream(41, 400);
    let mut w = RunWriter::replicated(leader.clone(), dir, 100).unwrap();
    assert_eq!(w.catch_up_through(u64::MAX), None, "nothing waits yet");
    for c in &inputs {
        w.push(c);
    }
    let waiting = w.pending();
    assert!(waiting > 200, "{waiting}");
    // Behind: at most 200 records (plus the last input's other changes).
    let through = w.catch_up_through(400).unwrap();
    let taken = inputs
        .iter()
        .flatten()
        .filter(|r| r.change_seq.0 <= through)
        .count();
    assert!((200..200 + 3).contains(&taken), "{taken}");
    assert!(w.catch_up_through(w.due_through().unwrap() - 1).is_none());
    let (run, checksum) = w.cut_held(through).unwrap();
    assert_eq!((run, w.pending()), (1, waiting), "held: nothing settled");
    assert_eq!(
        w.cut_held(through).unwrap(),
        (run, checksum),
        "the same bytes again"
    );
    // Shipping: the follower adopts exactly this run.
    let bytes = read_run_bytes(&leader, dir, 1).unwrap().unwrap();
    let filter = IdFilter::new(1 << 16).unwrap();
    let e = adopt_run(&follower, dir, (1, checksum ^ 1), &bytes, None).unwrap_err();
    assert!(matches!(e, HistoryError::Corrupt { .. }), "{e}");
    let mut torn = bytes.clone();
    let header = format::Header::decode(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
    torn[header.record_span.offset as usize + 10] ^= 1;
    let e = adopt_run(&follower, dir, (1, checksum), &torn, None).unwrap_err();
    assert!(matches!(e, HistoryError::Corrupt { .. }), "{e}");
    let e = adopt_run(&follower, dir, (2, checksum), &bytes, None).unwrap_err();
    assert!(
        matches!(e, HistoryError::Corrupt { .. }),
        "another run's bytes: {e}"
    );
    adopt_run(&follower, dir, (1, checksum), &bytes, Some(&filter)).unwrap();
    let listed = FileEntry {
        first: 1,
        last: 1,
        checksum,
    };
    assert_eq!(list_files(&follower, dir).unwrap(), vec![listed]);
    let first = inputs
        .iter()
        .flatten()
        .find(|r| r.change_seq.0 <= through)
        .unwrap();
    assert!(
        filter.may_contain(first.spec.id.0),
        "adopted ids are in the filter"
    );
    // Settled: its changes stop waiting; the next run follows it.
    w.settle(1, through);
    assert_eq!(w.pending(), waiting - taken);
    let (two, c2) = w.cut_held(w.catch_up_through(400).unwrap()).unwrap();
    assert_eq!(two, 2);
    let bytes2 = read_run_bytes(&leader, dir, 2).unwrap().unwrap();
    let e = adopt_run(&SimDisk::new(), dir, (2, c2), &bytes2, None).unwrap_err();
    assert!(matches!(e, HistoryError::Missing { .. }), "a gap: {e}");
    adopt_run(&follower, dir, (2, c2), &bytes2, None).unwrap();
    DiskHistory::open(follower.clone(), dir)
        .unwrap()
        .check_installed(2, c2)
        .unwrap();
    // A reset (a restored engine): run 1 installed, its tail waiting again.
    let tail: Vec<TransferRecord> = inputs
        .iter()
        .flatten()
        .filter(|r| r.change_seq.0 > through)
        .copied()
        .collect();
    w.reset(1, through, &tail);
    assert_eq!((w.last(), w.pending()), ((1, through), tail.len()));
    assert_eq!(
        w.cut_held(w.catch_up_through(400).unwrap()).unwrap(),
        (2, c2)
    );
}

/// A peer's merged file is adopted in place of the runs it holds: only as
/// the file holding the run asked for under its checksum, only right after
/// a file boundary, only with every installed member under the checksum
/// held here; it travels in chunks; the engine's live store swaps it in
/// and answers as the runs did; a restart opens the result.
#[test]
fn a_peers_merged_file_takes_the_place_of_the_runs_it_holds() {
    let dir = Path::new(DIR);
    let inputs = stream(61, 1200);
    let (leader, follower, reference) = (SimDisk::new(), SimDisk::new(), SimDisk::new());
    let (_, runs) = write_runs(&leader, &inputs, 150);
    assert!(runs.len() >= 6, "{} runs", runs.len());
    for d in [&follower, &reference] {
        assert_eq!(
            write_runs(d, &inputs, 150).1,
            runs,
            "runs are deterministic"
        );
    }
    merge_range(&leader, 1, 4);
    for run in 3..=runs.len() as u64 {
        follower.remove(&dir.join(run_name(run))).unwrap();
        if run > 4 {
            reference.remove(&dir.join(run_name(run))).unwrap();
        }
    }
    let live = DiskHistory::open(follower.clone(), dir).unwrap();
    for &(run, sum) in &runs[..2] {
        assert!(live.has_run(run, sum).unwrap());
    }
    // In chunks, as a peer sends it.
    let mut bytes = Vec::new();
    loop {
        let c = read_file_chunk(&leader, dir, 3, (bytes.len() as u64, 1000))
            .unwrap()
            .unwrap();
        assert_eq!((c.file.first, c.file.last), (1, 4));
        bytes.extend_from_slice(&c.bytes);
        if bytes.len() as u64 == c.len {
            break;
        }
    }
    let (c3, c4) = (runs[2].1, runs[3].1);
    let want = Expect::Run {
        run: 3,
        checksum: c3,
    };
    let wrong = Expect::Run {
        run: 3,
        checksum: c3 ^ 1,
    };
    let e = adopt_file(&follower, dir, wrong, &bytes, (None, 3)).unwrap_err();
    assert!(matches!(e, HistoryError::Corrupt { .. }), "{e}");
    // A node whose installed run 2 differs refuses it.
    let other = SimDisk::new();
    write_runs(&other, &stream(62, 400), 150);
    let e = adopt_file(&other, dir, want, &bytes, (None, 3)).unwrap_err();
    assert!(matches!(e, HistoryError::Corrupt { .. }), "{e}");
    // A node with a gap before it refuses a later file.
    let five = read_file_chunk(&leader, dir, 5, (0, u64::MAX))
        .unwrap()
        .unwrap();
    let e = adopt_file(
        &follower,
        dir,
        Expect::File(five.file),
        &five.bytes,
        (None, 5),
    );
    assert!(matches!(e, Err(HistoryError::Missing { .. })), "{e:?}");
    let filter = IdFilter::new(1 << 16).unwrap();
    let adopted = adopt_file(&follower, dir, want, &bytes, (Some(&filter), 3)).unwrap();
    assert_eq!(adopted, (1, 4));
    assert_eq!(
        list_files(&follower, dir).unwrap(),
        vec![FileEntry {
            first: 1,
            last: 4,
            checksum: list_files(&leader, dir).unwrap()[0].checksum
        }]
    );
    assert_eq!(checksum_held(&follower, dir, 4).unwrap(), Some(c4));
    assert!(inputs[..300]
        .iter()
        .flatten()
        .all(|r| filter.may_contain(r.spec.id.0)));
    // The live store: members swapped for the merged file, same answers.
    live.link()
        .offer_adopted(&follower, &dir.join(merged_name(1, 4)))
        .unwrap();
    assert!(live.has_run(3, c3).unwrap() && live.has_run(4, c4).unwrap());
    assert!(!live.has_run(4, c4 ^ 1).unwrap());
    assert_eq!(live.files(), 1);
    let expected = answers(
        &DiskHistory::open(reference.clone(), dir).unwrap(),
        &inputs,
        61,
    );
    assert_eq!(answers(&live, &inputs, 61), expected);
    let reopened = DiskHistory::open(follower.clone(), dir).unwrap();
    reopened.check_installed(4, c4).unwrap();
    assert_eq!(answers(&reopened, &inputs, 61), expected);
    // A file starting inside one held here is refused (grouped otherwise).
    let regrouped = SimDisk::new();
    write_runs(&regrouped, &inputs, 150);
    merge_range(&regrouped, 3, 6);
    let c = read_file_chunk(&regrouped, dir, 3, (0, u64::MAX))
        .unwrap()
        .unwrap();
    let e = adopt_file(&follower, dir, Expect::File(c.file), &c.bytes, (None, 3));
    assert!(matches!(e, Err(HistoryError::Overlap { .. })), "{e:?}");
    // A snapshot's fetch (nothing installed binds it) takes the peer's
    // grouping over its own: files overlapping an adopted one go, and the
    // chain is whole again once the peer's next files are in.
    let one_four = list_files(&leader, dir).unwrap()[0];
    adopt_file(&regrouped, dir, Expect::File(one_four), &bytes, (None, 0)).unwrap();
    let e = DiskHistory::open(regrouped.clone(), dir).unwrap_err();
    assert!(
        matches!(e, HistoryError::Missing { .. }),
        "runs 5, 6 went: {e}"
    );
    for run in [5, 6] {
        let c = read_file_chunk(&leader, dir, run, (0, u64::MAX))
            .unwrap()
            .unwrap();
        adopt_file(&regrouped, dir, Expect::File(c.file), &c.bytes, (None, 0)).unwrap();
    }
    let h = DiskHistory::open(regrouped.clone(), dir).unwrap();
    assert_eq!(h.runs(), runs.len() as u64);
    assert_eq!(
        answers(&h, &inputs, 61),
        answers(
            &DiskHistory::open(leader.clone(), dir).unwrap(),
            &inputs,
            61
        )
    );
}
