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

use crate::reader::{scan, ScanReport};
use crate::record::{decode, InputRecord};
use crate::retention::{scan_archive, ArchiveReport};
use crate::{read_base, BlockFault, BlockHeader, JournalError, Storage};
use engine::Input;
use std::convert::Infallible;
use std::path::Path;

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
        println!("seed {seed}");
        let d = SimDisk::new();
        let cfg = JournalConfig {
            segment_bytes: 16384,
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
                    encode(&Input {
                        seq: Seq(s),
                        now: Timestamp(s * 10),
                        command: Command::Halt {
                            instrument: InstrumentId(s as u32),
                        },
                    })
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
}
