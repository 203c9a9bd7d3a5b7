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

/// The segment files' names in `dir` (not `journal.head` or spares).
fn seg_names<S: Storage>(s: &S, dir: &Path) -> Vec<String> {
    let mut v = s.list(dir).unwrap();
    v.retain(|n| n.ends_with(".seg"));
    v
}

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
    // Tear: some sectors of the unsynced write land (some seeds keep some).
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
            continue; // every sector that matters landed: the block is whole
        }
        assert_eq!(rep.last_seq, Some(10));
        if let Some(t) = &rep.tail {
            torn = true;
            assert_eq!(t.offset, 4096);
            assert!(t.to_string().contains("journal-00000000000000000001.seg"));
            cut_torn_tail(&d2, dir, &rep).unwrap();
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
            last_good_seq,
        } => {
            assert_eq!(segment, &seg);
            assert_eq!(*offset, 8192);
            assert_eq!(*last_good_seq, 16);
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
    assert_eq!(seg_names(&d, dir), vec![segment_name(1)]);
    let (rep, _) = seqs(&d, dir);
    assert_eq!((rep.blocks, rep.trailing.len()), (0, 1));
    w.append_batch(&recs(1, 5)).unwrap();
    assert_eq!(seg_names(&d, dir), vec![segment_name(1)], "no new segment");
    // Prepared again with room left: nothing changes; a wrong seq is refused.
    w.prepare(6).unwrap();
    assert!(matches!(
        w.prepare(9),
        Err(JournalError::OutOfSequence {
            expected: 6,
            got: 9
        })
    ));
    assert_eq!(seg_names(&d, dir), vec![segment_name(1)]);
    // Fill the segment until a full block no longer fits: prepare rolls.
    let mut seq = 6;
    while seg_names(&d, dir).len() == 1 {
        w.prepare(seq).unwrap();
        if seg_names(&d, dir).len() > 1 {
            break;
        }
        w.append_batch(&recs(seq, 8)).unwrap();
        seq += 8;
    }
    assert_eq!(seg_names(&d, dir), vec![segment_name(1), segment_name(seq)]);
    drop(w);
    // Reopened: the empty prepared segment is removed; the journal is whole.
    let (mut w, rep) = JournalWriter::open(d.clone(), dir, cfg(16384, 8)).unwrap();
    assert_eq!(rep.last_seq, Some(seq - 1));
    assert_eq!(seg_names(&d, dir), vec![segment_name(1)]);
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

/// One 40-record block (two pages, 15 sectors that must hold data) with
/// parts of it landed or damaged: which outcomes are provably torn.
#[test]
fn only_a_block_with_an_unwritten_data_sector_is_provably_torn() {
    let mut whole = Vec::new();
    format::build_block(&mut whole, &recs(1, 40), 0);
    whole.extend_from_slice(&[0u8; 4096]); // the zeros after it in the segment
    let sectors = |keep: &dyn Fn(usize) -> bool| {
        let mut b = vec![0u8; whole.len()];
        for (k, s) in whole.chunks(SECTOR).enumerate() {
            if keep(k) {
                b[k * SECTOR..(k + 1) * SECTOR].copy_from_slice(s);
            }
        }
        b
    };
    let flipped = |at: usize| {
        let mut b = whole.clone();
        b[at] ^= 0x08;
        b
    };
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("header sector only", sectors(&|k| k == 0), true),
        ("all but the last data sector", sectors(&|k| k != 14), true),
        ("all but one middle sector", sectors(&|k| k != 7), true),
        ("header sector missing", sectors(&|k| k != 0), true),
        (
            "padding sectors missing (block whole)",
            sectors(&|k| k < 15),
            false,
        ),
        ("bit flip in the body", flipped(3000), false),
        (
            "bit flip in the last record",
            flipped(128 + 39 * 192 + 100),
            false,
        ),
        ("bit flip in the header", flipped(20), false),
        ("bit flip in the padding", flipped(7900), false),
    ];
    for (name, bytes, torn) in cases {
        let fault = format::parse_block(&bytes).err();
        match (fault, torn) {
            (None, false) => {} // whole: not a fault at all
            (None, true) => panic!("{name}: parses, expected a torn block"),
            (Some(f), t) => assert_eq!(provably_torn(&bytes, &f), t, "{name}: {f}"),
        }
    }
}

#[test]
fn a_flipped_bit_in_the_last_synced_block_is_damage_not_a_tear() {
    let dir = Path::new(DIR);
    for seed in 0..100 {
        let mut rng = SplitMix64(seed);
        let d = SimDisk::new();
        let (mut w, _) = JournalWriter::open(d.clone(), dir, cfg(65536, 40)).unwrap();
        let mut seq = 1;
        for _ in 0..3 {
            let n = 1 + rng.below(40);
            w.append_batch(&recs(seq, n)).unwrap();
            seq += n;
        }
        let (seg, off, _) = w.last_write().cloned().unwrap();
        let before_last = rep_last_but_one(&d, dir);
        drop(w);
        // Anywhere in the header or the records of the last block.
        let data_len = {
            let data = d.contents(&seg).unwrap();
            let h = format::parse_header(&data[off as usize..]).unwrap();
            HEADER_LEN as u64 + h.body_len
        };
        d.flip_bits(&mut rng, &seg, off..off + data_len, 1);
        let image = d.contents(&seg).unwrap();
        match scan(&d, dir, |_, _, _, _| Ok(())) {
            Err(JournalError::Corrupt {
                segment,
                offset,
                last_good_seq,
                ..
            }) => {
                assert_eq!((segment, offset), (seg.clone(), off), "seed {seed}");
                assert_eq!(last_good_seq, before_last, "seed {seed}");
            }
            other => panic!("seed {seed}: expected Corrupt, got {other:?}"),
        }
        assert!(JournalWriter::open(d.clone(), dir, cfg(65536, 40)).is_err());
        assert_eq!(d.contents(&seg).unwrap(), image, "nothing cut");
    }
}

/// The last seq of every block but the last one.
fn rep_last_but_one(d: &SimDisk, dir: &Path) -> u64 {
    let mut ends = Vec::new();
    scan(d, dir, |_, _, h, _| {
        ends.push(h.last_seq());
        Ok(())
    })
    .unwrap();
    ends[ends.len() - 2]
}

#[test]
fn repair_moves_the_damage_aside_and_the_journal_resumes_before_it() {
    let d = SimDisk::new();
    let dir = Path::new(DIR);
    let (mut w, _) = JournalWriter::open(d.clone(), dir, cfg(16384, 8)).unwrap();
    for i in 0..8 {
        w.append_batch(&recs(1 + i * 8, 8)).unwrap();
    }
    drop(w);
    // Segments hold 3 one-page blocks (the final page stays zero): seqs
    // 1..=24, 25..=48 and 49..=64.
    let first = dir.join(segment_name(1));
    let second = dir.join(segment_name(25));
    let third = dir.join(segment_name(49));
    d.flip_bits(&mut SplitMix64(4), &first, 4096 + 300..4096 + 400, 1);
    let damaged_bytes = d.contents(&first).unwrap()[4096..12288].to_vec();
    let second_bytes = d.contents(&second).unwrap();
    let third_bytes = d.contents(&third).unwrap();
    let moved = repair_journal(&d, dir).unwrap();
    let names: Vec<(String, u64, u64)> = moved
        .iter()
        .map(|m| {
            let to = m.to.strip_prefix(dir).unwrap().display().to_string();
            (to, m.offset, m.bytes)
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (format!("damaged/{}.4096.tail", segment_name(1)), 4096, 8192),
            (format!("damaged/{}.0.tail", segment_name(25)), 0, 16384),
            (format!("damaged/{}.0.tail", segment_name(49)), 0, 16384),
        ]
    );
    assert_eq!(d.contents(&moved[0].to).unwrap(), damaged_bytes);
    assert_eq!(d.contents(&moved[1].to).unwrap(), second_bytes);
    assert_eq!(d.contents(&moved[2].to).unwrap(), third_bytes);
    assert_eq!(
        read_head(&d, dir).unwrap(),
        Some(1),
        "the head names what stays"
    );
    let (rep, got) = seqs(&d, dir);
    assert_eq!(got, (1..=8).collect::<Vec<_>>());
    assert!(rep.tail.is_none() && rep.trailing.is_empty());
    let (mut w, _) = JournalWriter::open(d.clone(), dir, cfg(16384, 8)).unwrap();
    w.append_batch(&recs(9, 3)).unwrap();
    assert_eq!(seqs(&d, dir).1, (1..=11).collect::<Vec<_>>());
    // Nothing left to repair.
    assert!(repair_journal(&d, dir).unwrap().is_empty());
}

#[test]
fn a_full_disk_fails_the_write_naming_the_file_and_nothing_is_retried() {
    let d = SimDisk::new();
    let dir = Path::new(DIR);
    let (mut w, _) = JournalWriter::open(d.clone(), dir, cfg(12288, 8)).unwrap();
    w.append_batch(&recs(1, 8)).unwrap();
    d.fill_up();
    let e = w.append_batch(&recs(9, 8)).unwrap_err().to_string();
    assert!(
        e.contains("journal-00000000000000000001.seg") && e.contains("No space left on device"),
        "{e}"
    );
    assert!(matches!(
        w.append_batch(&recs(9, 8)),
        Err(JournalError::Poisoned)
    ));
    // A roll on a full disk names the new segment.
    let d = SimDisk::new();
    let (mut w, _) = JournalWriter::open(d.clone(), dir, cfg(8192, 8)).unwrap();
    w.append_batch(&recs(1, 8)).unwrap();
    w.append_batch(&recs(9, 8)).unwrap();
    d.fill_up();
    let e = w.append_batch(&recs(17, 8)).unwrap_err().to_string();
    assert!(
        e.contains("journal-00000000000000000017.seg") && e.contains("No space left"),
        "{e}"
    );
}

/// The writer leaves every segment's final 4 KiB page zero (a segment cut
/// at a block boundary then still shows it was cut), and the configuration
/// must leave room for that page after a full block.
#[test]
fn every_segment_ends_with_a_zero_page_and_the_config_leaves_room_for_it() {
    let full = format::block_len(8);
    assert!(
        cfg(full, 8).validate().is_err(),
        "no room for the zero page"
    );
    assert!(cfg(full + BLOCK_ALIGN as u64, 8).validate().is_ok());
    let d = SimDisk::new();
    let dir = Path::new(DIR);
    let (mut w, _) = JournalWriter::open(d.clone(), dir, cfg(8192, 8)).unwrap();
    for seq in 1..=6 {
        w.append_batch(&recs(seq, 1)).unwrap();
    }
    let segments = list_segments(&d, dir).unwrap();
    assert_eq!(segments.len(), 6, "one 4 KiB block per 8 KiB segment");
    for (_, p) in &segments {
        let data = reader::read_all(&d, p).unwrap();
        assert!(
            data[data.len() - BLOCK_ALIGN..].iter().all(|&b| b == 0),
            "{p:?}"
        );
    }
    let (_, got) = seqs(&d, dir);
    assert_eq!(got, (1..=6).collect::<Vec<_>>());
}

// --- Retention (`retention`, `base`) -------------------------------------

use super::retention::{
    scan_archive, ArchiveReport, RetainPolicy, Retention, RetentionConfig, Step, ARCHIVE_DIR,
};

/// 16 KiB segments of three 10-record blocks: segments start at 1, 31, 61, …
fn retention_journal(d: &SimDisk, records: u64) -> JournalWriter<SimDisk> {
    let (mut w, _) = JournalWriter::open(d.clone(), Path::new(DIR), cfg(16384, 10)).unwrap();
    for from in (1..=records).step_by(10) {
        w.append_batch(&recs(from, 10)).unwrap();
    }
    w
}

fn retention(policy: RetainPolicy, archive_bytes_max: u64) -> Retention {
    Retention::new(
        Path::new(DIR),
        RetentionConfig {
            policy,
            archive_bytes_max,
        },
    )
}

/// The seqs the archived range and then the journal hold, in reading order.
fn archived_and_kept(d: &SimDisk) -> (Option<ArchiveReport>, Vec<u64>) {
    let mut out = Vec::new();
    let mut push = |_: &Path, _, _: &BlockHeader, rs: &[InputRecord]| {
        out.extend(rs.iter().map(|r| r.seq()));
        Ok(())
    };
    let a = scan_archive(d, Path::new(DIR), &mut push).expect("archive");
    scan(d, Path::new(DIR), &mut push).expect("scan");
    (a, out)
}

#[test]
fn archive_moves_segments_before_the_oldest_snapshot_and_reading_crosses_the_base() {
    let d = SimDisk::new();
    let dir = Path::new(DIR);
    let mut w = retention_journal(&d, 200);
    let mut r = retention(RetainPolicy::Archive, 0);
    r.snapshot_kept(95);
    let steps = r.run(&d, 200, w.current_segment()).unwrap();
    // The base goes first, then three segments (1, 31, 61) leave, oldest first.
    let b = Base {
        first_seq: 91,
        prev_checksum: first_block_prev(&d, 91),
    };
    assert_eq!(steps[0], Step::Anchored(b), "{steps:?}");
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert_eq!(
        seg_names(&d, &dir.join(ARCHIVE_DIR)),
        vec![segment_name(1), segment_name(31), segment_name(61)]
    );
    d.crash(&mut SplitMix64(9), false);
    let (rep, got) = seqs(&d, dir);
    assert_eq!((rep.base, rep.first_seq), (Some(b), Some(91)));
    assert_eq!(got, (91..=200).collect::<Vec<_>>());
    let (a, all) = archived_and_kept(&d);
    let a = a.expect("an archive");
    assert!(a.complete(), "{a}");
    assert_eq!(
        a.to_string(),
        "seq 1..=90 archived in /j/archive (verified)"
    );
    assert_eq!(all, (1..=200).collect::<Vec<_>>());
    // The writer goes on; a later pass moves the base on.
    w.append_batch(&recs(201, 10)).unwrap();
    drop(w);
    let (mut w, rep) = JournalWriter::open(d.clone(), dir, cfg(16384, 10)).unwrap();
    assert_eq!(rep.last_seq, Some(210));
    w.append_batch(&recs(211, 10)).unwrap();
    r.snapshot_kept(150);
    r.run(&d, 220, w.current_segment()).unwrap();
    assert_eq!(read_base(&d, dir).unwrap().map(|b| b.first_seq), Some(151));
    assert_eq!(archived_and_kept(&d).1, (1..=220).collect::<Vec<_>>());
}

fn first_block_prev(d: &SimDisk, seq: u64) -> u128 {
    let data = d.contents(&Path::new(DIR).join(segment_name(seq))).unwrap();
    format::parse_header(&data).unwrap().prev_checksum
}

#[test]
fn the_segments_holding_the_last_record_and_the_head_stay() {
    let d = SimDisk::new();
    let w = retention_journal(&d, 100); // segments 1, 31, 61, 91 (91..=100 in it)
    let mut r = retention(RetainPolicy::Delete, 0);
    r.snapshot_kept(100);
    r.run(&d, 100, w.current_segment()).unwrap();
    assert_eq!(seg_names(&d, Path::new(DIR)), vec![segment_name(91)]);
    // Even a snapshot past everything never takes the last segment.
    r.snapshot_kept(10_000);
    assert_eq!(r.run(&d, 100, w.current_segment()).unwrap(), vec![]);
    assert_eq!(seqs(&d, Path::new(DIR)).1, (91..=100).collect::<Vec<_>>());
}

#[test]
fn delete_deletes_and_the_archive_is_pruned_to_its_bound() {
    let d = SimDisk::new();
    let w = retention_journal(&d, 200);
    let mut r = retention(RetainPolicy::Delete, 0);
    r.snapshot_kept(95);
    r.run(&d, 200, w.current_segment()).unwrap();
    assert!(seg_names(&d, &Path::new(DIR).join(ARCHIVE_DIR)).is_empty());
    let (a, got) = archived_and_kept(&d);
    let a = a.unwrap();
    assert!(!a.complete() && a.first_seq.is_none());
    assert_eq!(
        a.to_string(),
        "seq 1..=90 archived or deleted (not present in /j/archive)"
    );
    assert_eq!(got, (91..=200).collect::<Vec<_>>());

    // Archive bounded to two segments: the oldest one goes.
    let d = SimDisk::new();
    let w = retention_journal(&d, 200);
    let mut r = retention(RetainPolicy::Archive, 2 * 16384);
    r.snapshot_kept(95);
    let steps = r.run(&d, 200, w.current_segment()).unwrap();
    assert!(
        matches!(steps.last(), Some(Step::Pruned(p)) if p.len() == 1),
        "{steps:?}"
    );
    let (a, got) = archived_and_kept(&d);
    let a = a.unwrap();
    assert_eq!((a.first_seq, a.last_seq), (Some(31), Some(90)));
    assert!(a.covers(31, 90) && !a.covers(1, 90));
    assert!(
        a.to_string().contains("seq 1..=30 not present (deleted)"),
        "{a}"
    );
    assert_eq!(got, (31..=200).collect::<Vec<_>>());
}

#[test]
fn keep_never_removes_anything() {
    let d = SimDisk::new();
    let w = retention_journal(&d, 200);
    let mut r = retention(RetainPolicy::Keep, 0);
    r.snapshot_kept(195);
    assert_eq!(r.run(&d, 200, w.current_segment()).unwrap(), vec![]);
    assert_eq!(seg_names(&d, Path::new(DIR)).len(), 7);
    assert!(read_base(&d, Path::new(DIR)).unwrap().is_none());
}

#[test]
fn a_crash_between_anchor_and_move_or_between_the_two_syncs_is_read_and_finished() {
    let dir = Path::new(DIR);
    let adir = dir.join(ARCHIVE_DIR);
    // (1) Anchor written, nothing moved yet: the scan starts at the base and
    // lists the segments before it; the archive walk reads them in place.
    let d = SimDisk::new();
    let w = retention_journal(&d, 200);
    let mut r = retention(RetainPolicy::Archive, 0);
    r.snapshot_kept(95);
    assert!(matches!(
        r.step(&d, 200, w.current_segment()).unwrap(),
        Step::Anchored(_)
    ));
    d.crash(&mut SplitMix64(3), true);
    let (rep, got) = seqs(&d, dir);
    assert_eq!(rep.retired.len(), 3);
    assert_eq!(got, (91..=200).collect::<Vec<_>>());
    assert_eq!(archived_and_kept(&d).1, (1..=200).collect::<Vec<_>>());
    // A new process finishes the pass.
    let (w, _) = JournalWriter::open(d.clone(), dir, cfg(16384, 10)).unwrap();
    let mut r = retention(RetainPolicy::Archive, 0);
    r.snapshot_kept(95);
    assert_eq!(r.run(&d, 200, w.current_segment()).unwrap().len(), 3);
    assert!(seqs(&d, dir).0.retired.is_empty());

    // (2) Renamed into the archive, the archive synced, the journal
    // directory not: after a crash the segment is in both places.
    let d = SimDisk::new();
    let w = retention_journal(&d, 200);
    let mut r = retention(RetainPolicy::Archive, 0);
    r.snapshot_kept(35);
    r.step(&d, 200, w.current_segment()).unwrap(); // base 31
    let seg = dir.join(segment_name(1));
    d.rename(&seg, &adir.join(segment_name(1))).unwrap();
    d.sync_dir(&adir).unwrap();
    d.crash(&mut SplitMix64(4), true);
    assert!(d.contents(&seg).is_some() && d.contents(&adir.join(segment_name(1))).is_some());
    let (a, got) = archived_and_kept(&d);
    assert!(a.unwrap().complete());
    assert_eq!(got, (1..=200).collect::<Vec<_>>());
    let mut r = retention(RetainPolicy::Archive, 0);
    r.snapshot_kept(35);
    let steps = r.run(&d, 200, w.current_segment()).unwrap();
    assert_eq!(
        steps,
        vec![Step::Retired {
            from: seg.clone(),
            to: Some(adir.join(segment_name(1)))
        }]
    );
    assert!(d.contents(&seg).is_none());
    assert_eq!(archived_and_kept(&d).1, (1..=200).collect::<Vec<_>>());
}

#[test]
fn a_lost_front_segment_is_an_error_naming_the_missing_seqs_with_or_without_a_base() {
    let dir = Path::new(DIR);
    let d = SimDisk::new();
    drop(retention_journal(&d, 200));
    d.remove(&dir.join(segment_name(1))).unwrap();
    let e = scan(&d, dir, |_, _, _, _| Ok(())).unwrap_err();
    assert!(
        matches!(
            e,
            JournalError::LostFront {
                found: 31,
                expected: 1,
                base: false,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("seqs 1..=30 are missing") && msg.contains("no journal.base"),
        "{msg}"
    );
    // The writer refuses too.
    assert!(JournalWriter::open(d.clone(), dir, cfg(16384, 10)).is_err());

    // With a base at 91, losing segment 91 is as much an error.
    let d = SimDisk::new();
    let w = retention_journal(&d, 200);
    let mut r = retention(RetainPolicy::Delete, 0);
    r.snapshot_kept(95);
    r.run(&d, 200, w.current_segment()).unwrap();
    d.remove(&dir.join(segment_name(91))).unwrap();
    let e = scan(&d, dir, |_, _, _, _| Ok(())).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("journal.base says the journal starts at seq 91")
            && msg.contains("seqs 91..=120 are missing"),
        "{msg}"
    );
    // A damaged base is named, never guessed around.
    let mut f = d.open(&dir.join(BASE_NAME)).unwrap();
    f.write_at(b"X", 0).unwrap();
    assert!(matches!(
        scan(&d, dir, |_, _, _, _| Ok(())),
        Err(JournalError::BadBase { .. })
    ));
}

#[test]
fn a_writer_with_every_segment_gone_continues_the_base() {
    let dir = Path::new(DIR);
    let d = SimDisk::new();
    let w = retention_journal(&d, 100);
    let mut r = retention(RetainPolicy::Delete, 0);
    r.snapshot_kept(100);
    r.run(&d, 100, w.current_segment()).unwrap();
    drop(w);
    // As a repair that moved the last segment aside would leave it.
    d.remove(&dir.join(segment_name(91))).unwrap();
    d.remove(&dir.join(HEAD_NAME)).unwrap();
    let (mut w, rep) = JournalWriter::open(d.clone(), dir, cfg(16384, 10)).unwrap();
    assert_eq!(rep.last_seq, Some(90));
    w.append_batch(&recs(91, 10)).unwrap();
    let (rep, got) = seqs(&d, dir);
    assert_eq!((rep.first_seq, got.len()), (Some(91), 10));
}
