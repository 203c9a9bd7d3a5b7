//! Unit tests of the journal on the simulated disk and the real file system.

use super::*;
use crate::record::{decode, encode, InputRecord, SplitMix64};
use engine::{Command, Input, InstrumentId, Seq, Timestamp};
use std::path::Path;

fn rec(seq: u64) -> InputRecord {
    encode(&Input {
        seq: Seq(seq),
        now: Timestamp(seq * 10),
        command: Command::Halt {
            instrument: InstrumentId(seq as u32),
        },
    })
}

fn recs(from: u64, n: u64) -> Vec<InputRecord> {
    (from..from + n).map(rec).collect()
}

fn cfg(segment_bytes: u64, max_batch: usize) -> JournalConfig {
    JournalConfig {
        segment_bytes,
        max_batch,
        durability: Durability::Durable,
    }
}

fn seqs<S: Storage>(s: &S, dir: &Path) -> (ScanReport, Vec<u64>) {
    let mut out = Vec::new();
    let rep = scan(s, dir, |_, _, _, rs| {
        for r in rs {
            out.push(decode(r).expect("decodes").seq.0);
        }
        Ok(())
    })
    .expect("scan");
    (rep, out)
}

const DIR: &str = "/j";

#[test]
fn append_scan_roll_and_resume() {
    let d = SimDisk::new();
    let dir = Path::new(DIR);
    let (mut w, rep) = JournalWriter::open(d.clone(), dir, cfg(16384, 40)).unwrap();
    assert_eq!(rep.blocks, 0);
    let mut seq = 1;
    let mut rng = SplitMix64(5);
    for _ in 0..30 {
        let n = 1 + rng.below(40);
        assert_eq!(w.append_batch(&recs(seq, n)).unwrap(), seq + n - 1);
        seq += n;
    }
    let (rep, got) = seqs(&d, dir);
    assert_eq!(got, (1..seq).collect::<Vec<_>>());
    assert!(rep.segments > 3, "rolled: {}", rep.segments);
    assert_eq!(rep.blocks, 30);
    assert!(rep.tail.is_none());
    // Out of sequence is refused before any I/O.
    assert!(matches!(
        w.append_batch(&recs(seq + 1, 1)),
        Err(JournalError::OutOfSequence { .. })
    ));
    drop(w);
    d.crash(&mut SplitMix64(1), true);
    let (mut w, rep) = JournalWriter::open(d.clone(), dir, cfg(16384, 40)).unwrap();
    assert_eq!(rep.last_seq, Some(seq - 1));
    w.append_batch(&recs(seq, 3)).unwrap();
    let (_, got) = seqs(&d, dir);
    assert_eq!(got, (1..seq + 3).collect::<Vec<_>>());
}

#[test]
fn torn_tail_is_reported_truncated_and_overwritten() {
    let dir = Path::new(DIR);
    let c = JournalConfig {
        durability: Durability::Async,
        ..cfg(65536, 64)
    };
    // Tear: keep a prefix of the unsynced write (seed chosen to keep some).
    let mut rng = SplitMix64(0);
    let mut torn = false;
    for seed in 0..50 {
        let d2 = SimDisk::new();
        let (mut w, _) = JournalWriter::open(d2.clone(), dir, cfg(65536, 64)).unwrap();
        w.append_batch(&recs(1, 10)).unwrap();
        drop(w);
        let (mut w, _) = JournalWriter::open(d2.clone(), dir, c).unwrap();
        w.append_batch(&recs(11, 30)).unwrap();
        drop(w);
        rng.0 = seed;
        d2.crash(&mut rng, true);
        let rep = scan(&d2, dir, |_, _, _, _| Ok(())).unwrap();
        if rep.last_seq == Some(40) {
            continue; // the tear fell in the zero padding: the block is whole
        }
        assert_eq!(rep.last_seq, Some(10));
        if let Some(t) = &rep.tail {
            torn = true;
            assert_eq!(t.offset, 4096);
            assert!(t.to_string().contains("journal-00000000000000000001.seg"));
            repair(&d2, dir, &rep).unwrap();
            let rep = scan(&d2, dir, |_, _, _, _| Ok(())).unwrap();
            assert!(rep.tail.is_none());
            let (mut w, _) = JournalWriter::open(d2.clone(), dir, cfg(65536, 64)).unwrap();
            w.append_batch(&recs(11, 2)).unwrap();
            assert_eq!(seqs(&d2, dir).1, (1..13).collect::<Vec<_>>());
        }
    }
    assert!(torn, "some seed tears a prefix");
}

#[test]
fn corruption_before_a_valid_block_halts_with_segment_and_offset() {
    let d = SimDisk::new();
    let dir = Path::new(DIR);
    let (mut w, _) = JournalWriter::open(d.clone(), dir, cfg(65536, 8)).unwrap();
    for i in 0..5 {
        w.append_batch(&recs(1 + i * 8, 8)).unwrap();
    }
    let seg = dir.join(segment_name(1));
    let mut rng = SplitMix64(9);
    // Block 2 (offset 8192): flip a bit in its body.
    d.flip_bits(&mut rng, &seg, 8192 + 200..8192 + 300, 1);
    let e = scan(&d, dir, |_, _, _, _| Ok(())).unwrap_err();
    match &e {
        JournalError::Corrupt {
            segment,
            offset,
            what,
        } => {
            assert_eq!(segment, &seg);
            assert_eq!(*offset, 8192);
            assert_eq!(*what, BlockFault::BodyChecksum);
        }
        other => panic!("{other}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("journal-00000000000000000001.seg") && msg.contains("offset 8192"));
    // Recovery-style open refuses too.
    assert!(JournalWriter::open(d.clone(), dir, cfg(65536, 8)).is_err());
}

#[test]
fn sync_failure_poisons_the_writer() {
    let d = SimDisk::new();
    let dir = Path::new(DIR);
    let (mut w, _) = JournalWriter::open(d.clone(), dir, cfg(65536, 8)).unwrap();
    w.append_batch(&recs(1, 2)).unwrap();
    d.fail_syncs();
    let e = w.append_batch(&recs(3, 2)).unwrap_err();
    assert!(e.to_string().contains("fdatasync"), "{e}");
    assert!(matches!(
        w.append_batch(&recs(3, 2)),
        Err(JournalError::Poisoned)
    ));
}

#[test]
fn durability_names_parse() {
    for d in [Durability::Durable, Durability::Async, Durability::None] {
        assert_eq!(d.to_string().parse::<Durability>(), Ok(d));
    }
    assert!("fsync".parse::<Durability>().is_err());
    assert_eq!(Durability::default(), Durability::Durable);
}

#[test]
fn real_files_round_trip() {
    let dir = std::env::temp_dir().join(format!("bourse-journal-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut w, _) = JournalWriter::open(FsStorage, &dir, cfg(16384, 16)).unwrap();
    let mut seq = 1;
    for n in [1u64, 16, 7, 16, 16, 3] {
        w.append_batch(&recs(seq, n)).unwrap();
        seq += n;
    }
    drop(w);
    let (rep, got) = seqs(&FsStorage, &dir);
    assert_eq!(got, (1..seq).collect::<Vec<_>>());
    assert_eq!(rep.segments, 2);
    let names = FsStorage.list(&dir).unwrap();
    assert_eq!(names[0], "journal-00000000000000000001.seg");
    assert_eq!(std::fs::metadata(dir.join(&names[0])).unwrap().len(), 16384);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_prepared_segment_takes_the_first_block_and_an_unused_one_is_removed() {
    let d = SimDisk::new();
    let dir = Path::new(DIR);
    let (mut w, _) = JournalWriter::open(d.clone(), dir, cfg(16384, 8)).unwrap();
    w.prepare(1).unwrap();
    // The segment exists, full size, before any block.
    assert_eq!(d.list(dir).unwrap(), vec![segment_name(1)]);
    let (rep, _) = seqs(&d, dir);
    assert_eq!((rep.blocks, rep.trailing.len()), (0, 1));
    w.append_batch(&recs(1, 5)).unwrap();
    assert_eq!(
        d.list(dir).unwrap(),
        vec![segment_name(1)],
        "no new segment"
    );
    // Prepared again with room left: nothing changes; a wrong seq is refused.
    w.prepare(6).unwrap();
    assert!(matches!(
        w.prepare(9),
        Err(JournalError::OutOfSequence {
            expected: 6,
            got: 9
        })
    ));
    assert_eq!(d.list(dir).unwrap(), vec![segment_name(1)]);
    // Fill the segment until a full block no longer fits: prepare rolls.
    let mut seq = 6;
    while d.list(dir).unwrap().len() == 1 {
        w.prepare(seq).unwrap();
        if d.list(dir).unwrap().len() > 1 {
            break;
        }
        w.append_batch(&recs(seq, 8)).unwrap();
        seq += 8;
    }
    assert_eq!(
        d.list(dir).unwrap(),
        vec![segment_name(1), segment_name(seq)]
    );
    drop(w);
    // Reopened: the empty prepared segment is removed; the journal is whole.
    let (mut w, rep) = JournalWriter::open(d.clone(), dir, cfg(16384, 8)).unwrap();
    assert_eq!(rep.last_seq, Some(seq - 1));
    assert_eq!(d.list(dir).unwrap(), vec![segment_name(1)]);
    w.prepare(seq).unwrap();
    w.append_batch(&recs(seq, 2)).unwrap();
    let (rep, got) = seqs(&d, dir);
    assert_eq!(got, (1..seq + 2).collect::<Vec<_>>());
    assert!(rep.trailing.is_empty() && rep.tail.is_none());
}

#[test]
fn the_next_segment_is_prepared_ahead_and_a_roll_renames_it() {
    let d = SimDisk::new();
    let dir = Path::new(DIR);
    let size = 4 * SPARE_SLICE_BYTES;
    let (mut w, _) = JournalWriter::open(d.clone(), dir, cfg(size, 64)).unwrap();
    w.prepare(1).unwrap();
    // Nothing to do while the current segment is less than a quarter used,
    // and, unless idle, until it is three quarters used.
    assert!(!w.background(true).unwrap());
    let mut seq = 1;
    while !w.background(true).unwrap() {
        assert!(!w.background(false).unwrap(), "not urgent yet");
        w.append_batch(&recs(seq, 64)).unwrap();
        seq += 64;
    }
    // Four slices make the spare (one done above); then nothing more to do.
    assert!(w.background(true).unwrap());
    assert!(w.background(true).unwrap());
    assert!(
        !w.background(true).unwrap(),
        "the fourth slice completes it"
    );
    assert!(!w.background(true).unwrap());
    assert!(d.list(dir).unwrap().contains(&SPARE_NAME.to_string()));
    // Scans ignore the spare.
    let (rep, _) = seqs(&d, dir);
    assert_eq!(rep.segments, 1);
    // Fill the first segment: the roll takes the spare.
    while d
        .list(dir)
        .unwrap()
        .iter()
        .filter(|n| n.ends_with(".seg"))
        .count()
        < 2
    {
        w.append_batch(&recs(seq, 64)).unwrap();
        seq += 64;
    }
    assert_eq!(w.rolls_from_spare(), 1);
    assert!(!d.list(dir).unwrap().contains(&SPARE_NAME.to_string()));
    let (rep, got) = seqs(&d, dir);
    assert_eq!(got, (1..seq).collect::<Vec<_>>());
    assert!(rep.tail.is_none() && rep.trailing.is_empty());
    // A half-made spare left behind is removed at the next open; the
    // journal survives a crash around all this.
    while !w.background(true).unwrap() {
        w.append_batch(&recs(seq, 64)).unwrap();
        seq += 64;
    }
    drop(w);
    d.crash(&mut SplitMix64(3), true);
    let (mut w, rep) = JournalWriter::open(d.clone(), dir, cfg(size, 64)).unwrap();
    assert_eq!(rep.last_seq, Some(seq - 1));
    assert!(!d.list(dir).unwrap().contains(&SPARE_NAME.to_string()));
    w.append_batch(&recs(seq, 3)).unwrap();
    let (_, got) = seqs(&d, dir);
    assert_eq!(got, (1..seq + 3).collect::<Vec<_>>());
}
