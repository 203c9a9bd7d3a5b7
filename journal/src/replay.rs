//! `replay`: the one way to read the journal's inputs back. Recovery, the
//! journal tools (`verify`, `dump`, `replay`) and the market-data seeding
//! all hand a closure to it instead of walking blocks themselves.
//!
//! It scans the whole journal (every block verified: checksums, hash chain,
//! contiguity, see `reader::scan`), reading the archived range first when
//! `from_seq` reaches before `journal.base` (see `retention::scan_archive`),
//! decodes every record with `from_seq <= seq <= to_seq` and hands each
//! input, in seq order, to the caller's closure.
//!
//! Invariants: the inputs handed out are verified, decoded and contiguous,
//! and the first one is `from_seq` itself (a journal whose blocks skip past
//! it is `Corrupt` with `SeqGap`), except when `from_seq` is older than
//! anything kept (an archive whose front was deleted): then it is the
//! oldest record present, and `Replayed::archive` says what is missing;
//! records outside the range are verified but never decoded; `replay` never
//! writes (a torn tail is reported in `Replayed::scan.tail`, cut by the
//! caller that owns the directory); a closure's error stops the replay at
//! once and comes back as `ReplayError::Apply`, unchanged.
//!
//! `replay_overlapped` is the same contract on two threads: a reader thread
//! runs `replay` (read, verify, decode) into a fixed set of batches while
//! the calling thread runs the closure over them, meant to hide the scan's
//! cost behind the closure's (an engine's `apply`). No input is handed out
//! before `replay` would have handed it out, in the same order; the reader
//! only reads ahead (never writes), and a fault it meets is returned after
//! every input before it was applied. Not used by recovery or `bourse
//! replay` (yet): on the 2-vCPU development machine it measured slower than
//! `replay` (`bourse replay` of 1.6 M pipeline inputs, medians of 5
//! alternated runs: 0.548 vs 0.529 s; with both threads really running at
//! once, at `nice -n -15`, 0.94 vs 0.59 s, and 0.81 vs 0.54 s of CPU):
//! every decoded input (208 bytes) crosses cores, and the two threads'
//! page faults contend. `replay_breakdown` (bourse
//! example) measures both on a given machine.

use crate::reader::{scan, ScanReport};
use crate::record::{decode, InputRecord};
use crate::retention::{scan_archive, ArchiveReport};
use crate::{read_base, BlockFault, BlockHeader, JournalError, Storage};
use engine::Input;
use std::convert::Infallible;
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender};

/// What a replay read.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The archived range, when `from_seq` reached before `journal.base`
    /// and the archive was read (`None` otherwise).
    pub archive: Option<ArchiveReport>,
    /// The journal in the directory: blocks, records, its end, a torn tail.
    pub scan: ScanReport,
    /// Inputs handed to the closure.
    pub applied: u64,
    /// Seq of the first input handed out (`None`: none).
    pub first_seq: Option<u64>,
    /// Seq of the last input handed out (`None`: none).
    pub last_seq: Option<u64>,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError<E = Infallible> {
    /// The journal (or its archive) is damaged, incomplete or unreadable.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The closure returned an error: the replay stopped at that input.
    #[error("replay stopped at an input: {0}")]
    Apply(E),
}

impl ReplayError<Infallible> {
    /// The journal error (a closure that cannot fail never stops a replay).
    pub fn into_journal(self) -> JournalError {
        match self {
            ReplayError::Journal(e) => e,
            ReplayError::Apply(never) => match never {},
        }
    }
}

/// Hands every input with `from_seq <= seq <= to_seq` of the journal in
/// `dir` to `apply`, in order, after verifying the whole journal (and the
/// archive first, when `from_seq` is before `journal.base`). See the module
/// doc for what is guaranteed. Pass `from_seq` 1 (or 0) and `to_seq`
/// `u64::MAX` for everything; after a snapshot at seq S, `from_seq` S + 1.
pub fn replay<S, E, F>(
    storage: &S,
    dir: &Path,
    from_seq: u64,
    to_seq: u64,
    mut apply: F,
) -> Result<Replayed, ReplayError<E>>
where
    S: Storage,
    F: FnMut(&Input) -> Result<(), E>,
{
    let from_seq = from_seq.max(1);
    let with_archive = read_base(storage, dir)?.is_some_and(|b| from_seq < b.first_seq);
    let mut cursor = Cursor {
        next: from_seq,
        to_seq,
        // Older than anything kept: start at the oldest record present.
        lenient: with_archive,
        applied: 0,
        first_seq: None,
        stopped: None,
    };
    let mut visit = |_: &Path, _: u64, h: &BlockHeader, records: &[InputRecord]| {
        cursor.block(h, records, &mut apply)
    };
    let read = (|| {
        let archive = match with_archive {
            true => scan_archive(storage, dir, &mut visit)?,
            false => None,
        };
        let scan = scan(storage, dir, &mut visit)?;
        Ok::<_, JournalError>((archive, scan))
    })();
    if let Some(e) = cursor.stopped.take() {
        return Err(ReplayError::Apply(e));
    }
    let (archive, scan) = read?;
    Ok(Replayed {
        archive,
        scan,
        applied: cursor.applied,
        first_seq: cursor.first_seq,
        last_seq: cursor.first_seq.map(|f| f + cursor.applied - 1),
    })
}

/// Inputs per batch handed from the reader thread to the applying one:
/// big enough that a hand-off (a channel send and receive, often a futex
/// wake and a context switch: microseconds on a loaded machine) is noise
/// per input (256 made 15,700 context switches for 1.6 M inputs), small
/// enough that a batch (1024 × 208-byte inputs, about 210 KiB) stays in
/// the caches between the two threads.
pub const OVERLAP_BATCH: usize = 1024;
/// Batches in circulation: how far the reader may run ahead (8 × 1024
/// inputs). All of them are allocated when a replay starts and recycled,
/// so the replay allocates nothing per input.
pub const OVERLAP_BATCHES: usize = 8;

/// The reader stopped because the applying side went away (its closure
/// failed, or it panicked): not a journal error.
#[derive(Debug)]
struct Stopped;

/// `replay` with the read, verify and decode on a second (scoped) thread,
/// overlapped with `apply` on this one. Same arguments, same inputs in the
/// same order, same result, same errors (see the module doc); `apply` needs
/// no `Send`, as it never leaves this thread. A fault of the journal is
/// returned only after every input before it was applied, exactly as
/// `replay` does; a closure error stops the reader (it may have read,
/// verified and decoded up to `OVERLAP_BATCHES` batches ahead).
pub fn replay_overlapped<S, E, F>(
    storage: &S,
    dir: &Path,
    from_seq: u64,
    to_seq: u64,
    mut apply: F,
) -> Result<Replayed, ReplayError<E>>
where
    S: Storage,
    F: FnMut(&Input) -> Result<(), E>,
{
    let (full_tx, full_rx) = channel::<Vec<Input>>();
    let (empty_tx, empty_rx) = channel::<Vec<Input>>();
    for _ in 0..OVERLAP_BATCHES {
        empty_tx
            .send(Vec::with_capacity(OVERLAP_BATCH))
            .expect("the receiver is alive");
    }
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("replay-reader".into())
            .spawn_scoped(scope, move || {
                read_ahead(storage, dir, from_seq, to_seq, full_tx, empty_rx)
            })
            .map_err(|source| JournalError::Io {
                op: "spawn the replay reader thread",
                path: dir.to_path_buf(),
                source,
            })?;
        // Both channel ends of this side are dropped when this returns (or
        // unwinds), which stops a reader waiting on either.
        let failed = apply_batches(full_rx, empty_tx, &mut apply);
        let read = match reader.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match (failed, read) {
            (Some(e), _) => Err(ReplayError::Apply(e)),
            (None, Ok(r)) => Ok(r),
            (None, Err(ReplayError::Journal(e))) => Err(ReplayError::Journal(e)),
            (None, Err(ReplayError::Apply(Stopped))) => {
                unreachable!("the reader stops early only after the closure failed")
            }
        }
    })
}

/// The reader thread: `replay` into batches, each sent when full (and the
/// last one when the scan ends, even with a fault), then recycled by the
/// applying side. Returns `replay`'s result; `Apply(Stopped)` when the
/// applying side went away.
fn read_ahead<S: Storage>(
    storage: &S,
    dir: &Path,
    from_seq: u64,
    to_seq: u64,
    full: Sender<Vec<Input>>,
    empty: Receiver<Vec<Input>>,
) -> Result<Replayed, ReplayError<Stopped>> {
    let mut batch = empty.recv().map_err(|_| ReplayError::Apply(Stopped))?;
    let r = replay(storage, dir, from_seq, to_seq, |input| {
        batch.push(*input);
        if batch.len() == OVERLAP_BATCH {
            full.send(std::mem::take(&mut batch)).map_err(|_| Stopped)?;
            batch = empty.recv().map_err(|_| Stopped)?;
        }
        Ok(())
    });
    if !batch.is_empty() && full.send(batch).is_err() {
        return Err(ReplayError::Apply(Stopped));
    }
    r
}

/// The applying side: `apply` over every batch in order, each batch sent
/// back empty for reuse. Returns the closure's error, if it failed (the
/// rest is then not applied, and the channels are dropped).
fn apply_batches<E, F>(
    full: Receiver<Vec<Input>>,
    empty: Sender<Vec<Input>>,
    apply: &mut F,
) -> Option<E>
where
    F: FnMut(&Input) -> Result<(), E>,
{
    while let Ok(mut batch) = full.recv() {
        for input in &batch {
            if let Err(e) = apply(input) {
                return Some(e);
            }
        }
        batch.clear();
        // The reader may be done with its last batch: then nobody takes it.
        let _ = empty.send(batch);
    }
    None
}

/// Where a replay stands: the next seq it hands out, and what it handed.
struct Cursor<E> {
    next: u64,
    to_seq: u64,
    lenient: bool,
    applied: u64,
    first_seq: Option<u64>,
    /// The closure's error, once it failed (the scan is then stopped).
    stopped: Option<E>,
}

impl<E> Cursor<E> {
    /// One verified block: decodes and hands out the records in range.
    fn block<F>(
        &mut self,
        h: &BlockHeader,
        records: &[InputRecord],
        apply: &mut F,
    ) -> Result<(), BlockFault>
    where
        F: FnMut(&Input) -> Result<(), E>,
    {
        if std::mem::take(&mut self.lenient) && h.first_seq > self.next {
            self.next = h.first_seq;
        }
        if h.last_seq() < self.next || self.next > self.to_seq || self.stopped.is_some() {
            return Ok(());
        }
        if h.first_seq > self.next {
            return Err(BlockFault::SeqGap {
                expected: self.next,
                found: h.first_seq,
            });
        }
        let skip = (self.next - h.first_seq) as usize;
        let take = (self.to_seq.min(h.last_seq()) - self.next + 1) as usize;
        for (i, r) in records.iter().enumerate().skip(skip).take(take) {
            let input = decode(r).map_err(|error| BlockFault::Record {
                index: i,
                seq: r.seq(),
                error,
            })?;
            if let Err(e) = apply(&input) {
                // Stops the scan here; `replay` returns this error, not the
                // fault the scan reports for the block.
                self.stopped = Some(e);
                return Err(BlockFault::SeqGap {
                    expected: self.next,
                    found: input.seq.0,
                });
            }
            self.first_seq.get_or_insert(input.seq.0);
            self.applied += 1;
            self.next = input.seq.0 + 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode, SplitMix64};
    use crate::{Durability, JournalConfig, JournalWriter, SimDisk};
    use engine::{Command, InstrumentId, Seq, Timestamp};

    const DIR: &str = "/replay";

    /// A journal of inputs 1..=`n` in random batches (seeded, printed).
    fn journal(n: u64, seed: u64) -> SimDisk {
        journal_in(n, seed, 16384, None)
    }

    /// `journal` with segments of `segment_bytes`, and the record of
    /// `bad_seq` (if any) made undecodable: its reserved byte set, inside a
    /// block whose checksums are right (damage only decoding finds).
    fn journal_in(n: u64, seed: u64, segment_bytes: u64, bad_seq: Option<u64>) -> SimDisk {
        println!("seed {seed}");
        let d = SimDisk::new();
        let cfg = JournalConfig {
            segment_bytes,
            max_batch: 40,
            durability: Durability::Durable,
        };
        let (mut w, _) = JournalWriter::open(d.clone(), Path::new(DIR), cfg).unwrap();
        let mut rng = SplitMix64(seed);
        let mut seq = 1;
        while seq <= n {
            let k = (1 + rng.below(40)).min(n + 1 - seq);
            let batch: Vec<_> = (seq..seq + k)
                .map(|s| {
                    let mut r = encode(&Input {
                        seq: Seq(s),
                        now: Timestamp(s * 10),
                        command: Command::Halt {
                            instrument: InstrumentId(s as u32),
                        },
                    });
                    r.reserved[0] = u8::from(bad_seq == Some(s));
                    r
                })
                .collect();
            w.append_batch(&batch).unwrap();
            seq += k;
        }
        d
    }

    fn seqs_of(d: &SimDisk, from: u64, to: u64) -> (Replayed, Vec<u64>) {
        let mut got = Vec::new();
        let r = replay(d, Path::new(DIR), from, to, |i| {
            got.push(i.seq.0);
            Ok::<(), Infallible>(())
        })
        .map_err(ReplayError::into_journal)
        .unwrap();
        (r, got)
    }

    #[test]
    fn hands_out_exactly_the_range_in_order() {
        let d = journal(200, 13);
        // (from, to) → the seqs expected, first and last.
        type Case = (u64, u64, Option<(u64, u64)>);
        let cases: [Case; 7] = [
            (0, u64::MAX, Some((1, 200))),
            (1, 200, Some((1, 200))),
            (57, u64::MAX, Some((57, 200))),
            (57, 57, Some((57, 57))),
            (3, 150, Some((3, 150))),
            (200, 500, Some((200, 200))),
            (201, u64::MAX, None),
        ];
        for (from, to, want) in cases {
            let (r, got) = seqs_of(&d, from, to);
            let expected: Vec<u64> = match want {
                Some((a, b)) => (a..=b).collect(),
                None => Vec::new(),
            };
            assert_eq!(got, expected, "range {from}..={to}");
            assert_eq!(r.applied, expected.len() as u64, "range {from}..={to}");
            assert_eq!(r.first_seq, want.map(|w| w.0), "range {from}..={to}");
            assert_eq!(r.last_seq, want.map(|w| w.1), "range {from}..={to}");
            // The whole journal is verified whatever the range.
            assert_eq!(r.scan.records, 200, "range {from}..={to}");
            assert_eq!(r.scan.last_seq, Some(200));
        }
    }

    #[test]
    fn a_closure_error_stops_the_replay_at_that_input() {
        #[derive(Debug, PartialEq)]
        struct Refused(u64);
        let d = journal(120, 7);
        let mut calls = Vec::new();
        let err = replay(&d, Path::new(DIR), 10, u64::MAX, |i| {
            calls.push(i.seq.0);
            match i.seq.0 {
                77 => Err(Refused(77)),
                _ => Ok(()),
            }
        })
        .unwrap_err();
        assert!(matches!(err, ReplayError::Apply(Refused(77))), "{err:?}");
        assert_eq!(calls, (10..=77).collect::<Vec<_>>());
    }

    #[test]
    fn an_empty_directory_replays_nothing() {
        let d = SimDisk::new();
        let (r, got) = seqs_of(&d, 1, u64::MAX);
        assert!(got.is_empty());
        assert_eq!((r.applied, r.first_seq, r.last_seq), (0, None, None));
        assert_eq!(r.scan.blocks, 0);
    }

    /// What a replay did: the seqs handed out, then its result (the error
    /// as text, `JournalError` having no `PartialEq`).
    type Run = (
        Vec<u64>,
        Result<(u64, Option<u64>, Option<u64>, u64), String>,
    );

    /// Runs `replay` (or `replay_overlapped`) over `from..=to`, the closure
    /// refusing the input `refuse` (if any).
    fn run(d: &SimDisk, overlapped: bool, from: u64, to: u64, refuse: Option<u64>) -> Run {
        let mut got = Vec::new();
        let apply = |i: &Input| {
            got.push(i.seq.0);
            match Some(i.seq.0) == refuse {
                true => Err(i.seq.0),
                false => Ok(()),
            }
        };
        let r = match overlapped {
            true => replay_overlapped(d, Path::new(DIR), from, to, apply),
            false => replay(d, Path::new(DIR), from, to, apply),
        };
        let r = r
            .map(|r| (r.applied, r.first_seq, r.last_seq, r.scan.records))
            .map_err(|e| match e {
                ReplayError::Apply(seq) => format!("refused {seq}"),
                ReplayError::Journal(e) => e.to_string(),
            });
        (got, r)
    }

    /// Big enough that the reader runs ahead by every batch in circulation
    /// and each one is recycled many times.
    const MANY: u64 = (OVERLAP_BATCH * OVERLAP_BATCHES * 3) as u64 + 77;

    #[test]
    fn overlapped_hands_out_what_replay_hands_out() {
        let d = journal_in(MANY, 21, 1 << 20, None);
        let b = OVERLAP_BATCH as u64;
        for (from, to) in [
            (0, u64::MAX),
            (1, MANY),
            (b, b + 1),
            (b + 1, 3 * b),
            (MANY - 1, u64::MAX),
            (MANY + 1, u64::MAX),
        ] {
            let want = run(&d, false, from, to, None);
            assert_eq!(run(&d, true, from, to, None), want, "range {from}..={to}");
            assert!(want.1.is_ok(), "range {from}..={to}: {:?}", want.1);
        }
    }

    #[test]
    fn overlapped_closure_error_stops_at_that_input() {
        let d = journal_in(MANY, 22, 1 << 20, None);
        let b = OVERLAP_BATCH as u64;
        for refuse in [
            3,
            b - 1,
            b,
            b + 1,
            b * OVERLAP_BATCHES as u64 + 1,
            MANY - 1,
            MANY,
        ] {
            let (got, r) = run(&d, true, 2, u64::MAX, Some(refuse));
            assert_eq!(got, (2..=refuse).collect::<Vec<_>>(), "refuse {refuse}");
            assert_eq!(r, Err(format!("refused {refuse}")));
        }
    }

    #[test]
    fn overlapped_reports_damage_after_every_input_before_it() {
        // Damage the checksums find (bit flips), and a record that only
        // decoding refuses, at seeded places in several segments.
        for seed in 0..6u64 {
            let mut rng = SplitMix64(100 + seed);
            let bad_seq = (seed % 2 == 0).then(|| 1 + rng.below(MANY));
            let d = journal_in(MANY, 30 + seed, 65536, bad_seq);
            if bad_seq.is_none() {
                let segs = crate::list_segments(&d, Path::new(DIR)).unwrap();
                let (_, seg) = &segs[rng.below(segs.len() as u64) as usize];
                d.flip_bits(&mut rng, seg, 0..65536, 1);
            }
            let want = run(&d, false, 1, u64::MAX, None);
            let (got, r) = run(&d, true, 1, u64::MAX, None);
            println!(
                "seed {seed}: bad record {bad_seq:?}, {} applied, {r:?}",
                got.len()
            );
            assert_eq!((got, r), want, "seed {seed}");
        }
        // The undecodable record's own error, after the inputs before it.
        let d = journal_in(MANY, 40, 65536, Some(1000));
        let (got, r) = run(&d, true, 1, u64::MAX, None);
        assert_eq!(got, (1..1000).collect::<Vec<_>>());
        let e = r.unwrap_err();
        assert!(e.contains("seq 1000") && e.contains("origin"), "{e}");
    }

    #[test]
    fn overlapped_closure_panic_stops_the_reader_and_propagates() {
        // A bug in the closure fails stop: the panic comes out of
        // `replay_overlapped` (the reader thread, stopped, is joined first)
        // instead of a reader left waiting for batches.
        let d = journal_in(MANY, 23, 1 << 20, None);
        let stop = OVERLAP_BATCH as u64 + 5;
        let r = std::panic::catch_unwind(|| {
            replay_overlapped(&d, Path::new(DIR), 1, u64::MAX, |i| {
                assert!(i.seq.0 < stop, "refusing seq {}", i.seq.0);
                Ok::<(), Infallible>(())
            })
        });
        let panic = r.expect_err("the closure's panic propagates");
        let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(msg, format!("refusing seq {stop}"));
    }
}
