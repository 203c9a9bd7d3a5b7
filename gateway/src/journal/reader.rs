//! Reading the journal back: `scan` walks every block of every segment in
//! order, checking each one (see the invariants in the module above), hands
//! the records to a visitor, and classifies how the journal ends.
//!
//! End classification, at the first position that is not a valid block:
//! - all zeros to the end of the segment: a clean end of that segment (the
//!   next segment, if any, continues the chain);
//! - anything else is a fault. If a block with a valid header exists
//!   anywhere after it (later in that segment at a 4 KiB boundary, or in a
//!   later segment), or if the fault is one a torn write cannot cause (a
//!   valid block out of chain or out of sequence), `scan` fails with
//!   `JournalError::Corrupt` naming the segment, offset and fault. Otherwise
//!   it is a torn tail: reported in `ScanReport::tail`, and `repair` zeroes
//!   it and removes the segments after the last valid block.
//!
//! `scan` never writes; `repair` is the only function here that does.

use super::format::{self, BlockFault, BlockHeader, BLOCK_ALIGN, HEADER_LEN};
use super::{io_err, list_segments, JournalError, Storage, StorageFile};
use crate::record::InputRecord;
use std::path::{Path, PathBuf};

/// Where the valid journal ends: the writer resumes here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEnd {
    /// The segment holding the last valid block.
    pub segment: PathBuf,
    /// Offset just past the last valid block.
    pub offset: u64,
    /// Seq of the last record.
    pub last_seq: u64,
    /// Header checksum of the last block (the next block's prev checksum).
    pub last_checksum: u128,
}

/// A torn tail found (and, after `repair`, removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Segment of the damaged bytes.
    pub segment: PathBuf,
    /// Offset of the first damaged byte position (a block boundary).
    pub offset: u64,
    /// What failed there.
    pub what: BlockFault,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "torn tail in {} at offset {}: {}",
            self.segment.display(),
            self.offset,
            self.what
        )
    }
}

/// What `scan` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Segment files present.
    pub segments: usize,
    /// Valid blocks.
    pub blocks: u64,
    /// Records in valid blocks.
    pub records: u64,
    /// First seq in the journal.
    pub first_seq: Option<u64>,
    /// Last seq in the journal.
    pub last_seq: Option<u64>,
    /// Where the valid data ends (`None`: no valid block).
    pub end: Option<JournalEnd>,
    /// A torn tail, if the data after the end is not clean zeros.
    pub tail: Option<TornTail>,
    /// Segments after the end segment (they hold no valid block).
    pub trailing: Vec<PathBuf>,
}

fn read_all<S: Storage>(storage: &S, path: &Path) -> Result<Vec<u8>, JournalError> {
    let f = storage.open(path).map_err(io_err("open", path))?;
    let len = f.len().map_err(io_err("stat", path))?;
    let mut data = vec![0u8; len as usize];
    f.read_at(&mut data, 0).map_err(io_err("read", path))?;
    Ok(data)
}

/// Whether any 4 KiB-aligned position at or after `from` holds a block
/// header that checks out.
fn valid_header_from(data: &[u8], from: usize) -> Option<usize> {
    let mut at = from.div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN;
    while at + HEADER_LEN <= data.len() {
        if format::parse_header(&data[at..]).is_ok() {
            return Some(at);
        }
        at += BLOCK_ALIGN;
    }
    None
}

/// Walks the journal in `dir`, calling `visit(segment, offset, header,
/// records)` for every valid block in order. A fault returned by `visit`
/// (say, a record that does not decode) is reported as corruption of that
/// block.
pub fn scan<S, F>(storage: &S, dir: &Path, mut visit: F) -> Result<ScanReport, JournalError>
where
    S: Storage,
    F: FnMut(&Path, u64, &BlockHeader, &[InputRecord]) -> Result<(), BlockFault>,
{
    let segments = list_segments(storage, dir)?;
    let mut rep = ScanReport {
        segments: segments.len(),
        ..ScanReport::default()
    };
    let mut prev: Option<(u64, u128)> = None; // (last seq, last header checksum)
    for (si, (name_seq, path)) in segments.iter().enumerate() {
        let data = read_all(storage, path)?;
        let mut off = 0usize;
        let mut first_in_segment = true;
        loop {
            let corrupt = |offset: usize, what: BlockFault| JournalError::Corrupt {
                segment: path.clone(),
                offset: offset as u64,
                what,
            };
            let header_zero = data[off..(off + HEADER_LEN).min(data.len())]
                .iter()
                .all(|&b| b == 0);
            if header_zero && data[off..].iter().all(|&b| b == 0) {
                break; // clean end of this segment
            }
            let parsed = if header_zero || off + HEADER_LEN > data.len() {
                Err(BlockFault::GarbageAfterEnd)
            } else {
                format::parse_block(&data[off..])
            };
            let (h, len) = match parsed {
                Ok(x) => x,
                Err(what) => {
                    // A fault: torn tail only if nothing valid follows.
                    if valid_header_from(&data, off + 1).is_some() {
                        return Err(corrupt(off, what));
                    }
                    for (_, later) in &segments[si + 1..] {
                        if valid_header_from(&read_all(storage, later)?, 0).is_some() {
                            return Err(corrupt(off, what));
                        }
                    }
                    rep.tail = Some(TornTail {
                        segment: path.clone(),
                        offset: off as u64,
                        what,
                    });
                    rep.trailing = trailing_after_end(&rep, &segments);
                    return Ok(rep);
                }
            };
            // A valid block: it must continue the chain and the sequence.
            let (expected_seq, expected_prev) = match prev {
                Some((s, c)) => (Some(s + 1), c),
                None => (None, 0),
            };
            if let Some(e) = expected_seq {
                if h.first_seq != e {
                    return Err(corrupt(
                        off,
                        BlockFault::SeqGap {
                            expected: e,
                            found: h.first_seq,
                        },
                    ));
                }
            }
            if prev.is_some() && h.prev_checksum != expected_prev {
                return Err(corrupt(
                    off,
                    BlockFault::ChainBroken {
                        expected: expected_prev,
                        found: h.prev_checksum,
                    },
                ));
            }
            if first_in_segment && h.first_seq != *name_seq {
                return Err(corrupt(
                    off,
                    BlockFault::NameMismatch {
                        name_seq: *name_seq,
                        first_seq: h.first_seq,
                    },
                ));
            }
            let records = format::block_records(&data[off..], &h);
            for (i, r) in records.iter().enumerate() {
                let expected = h.first_seq + i as u64;
                if r.seq() != expected {
                    return Err(corrupt(
                        off,
                        BlockFault::RecordSeq {
                            index: i,
                            expected,
                            found: r.seq(),
                        },
                    ));
                }
            }
            visit(path, off as u64, &h, records).map_err(|what| corrupt(off, what))?;
            rep.blocks += 1;
            rep.records += h.count as u64;
            rep.first_seq.get_or_insert(h.first_seq);
            rep.last_seq = Some(h.last_seq());
            prev = Some((h.last_seq(), h.header_checksum));
            off += len as usize;
            first_in_segment = false;
            rep.end = Some(JournalEnd {
                segment: path.clone(),
                offset: off as u64,
                last_seq: h.last_seq(),
                last_checksum: h.header_checksum,
            });
            if off >= data.len() {
                break;
            }
        }
    }
    rep.trailing = trailing_after_end(&rep, &segments);
    Ok(rep)
}

/// The segments after the one holding the last valid block (all of them
/// when there is none): they hold no valid block.
fn trailing_after_end(rep: &ScanReport, segments: &[(u64, PathBuf)]) -> Vec<PathBuf> {
    let keep_upto = match &rep.end {
        Some(end) => segments
            .iter()
            .position(|(_, p)| *p == end.segment)
            .map_or(0, |i| i + 1),
        None => 0,
    };
    segments[keep_upto..]
        .iter()
        .map(|(_, p)| p.clone())
        .collect()
}

/// Removes a torn tail found by `scan`: zeroes the end segment from the end
/// of its last valid block (if the tail is there), removes every segment
/// after it, and makes both durable.
pub fn repair<S: Storage>(storage: &S, dir: &Path, rep: &ScanReport) -> Result<(), JournalError> {
    if let (Some(tail), Some(end)) = (&rep.tail, &rep.end) {
        if tail.segment == end.segment {
            let mut f = storage
                .open(&end.segment)
                .map_err(io_err("open", &end.segment))?;
            let len = f.len().map_err(io_err("stat", &end.segment))?;
            if len > end.offset {
                let zeros = vec![0u8; (len - end.offset) as usize];
                f.write_at(&zeros, end.offset)
                    .map_err(io_err("write", &end.segment))?;
                f.sync_data().map_err(io_err("fdatasync", &end.segment))?;
            }
        }
    }
    if !rep.trailing.is_empty() {
        for p in &rep.trailing {
            storage.remove(p).map_err(io_err("remove", p))?;
        }
        storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    }
    Ok(())
}
