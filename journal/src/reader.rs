//! Reading the journal back: `scan` walks every block of every segment in
//! order, checking each one (see the invariants in the module above), hands
//! the records to a visitor, and classifies how the journal ends.
//!
//! End classification, at the first position P that is not a valid block:
//! - all zeros to the end of the segment: a clean end of that segment (the
//!   next segment, if any, continues the chain);
//! - a segment that is empty, not a multiple of 4 KiB long, or whose final
//!   4 KiB page is not all zeros is short (truncated: segments are
//!   preallocated whole before they are named, and the writer never writes
//!   their final page, so this catches a cut at a block boundary too):
//!   `JournalError::Corrupt` with `BlockFault::ShortSegment`, at P;
//! - otherwise a fault. It is a torn tail (an unsynced last write cut by a
//!   crash, never acknowledged) only if it is *provably torn*: no block with
//!   a valid header exists anywhere after P, the fault is one a write can
//!   leave, and one 512-byte sector of the block that must hold data is
//!   still all zeros (see `provably_torn`). Anything else is damage:
//!   `JournalError::Corrupt` naming the segment, the offset, the fault and
//!   the last intact seq.
//!
//! Before the first segment: the journal must start at seq 1, or where
//! `journal.base` says its front was retained away (see `base`); a first
//! segment that starts later lost the front (`JournalError::LostFront`).
//!
//! After the last segment: a `journal.head` naming a segment that is
//! missing, or one the journal ends before, is `JournalError::LostSegment`
//! (the newest segment was lost whole; see `head`).
//!
//! Why sectors: blocks are written whole and 4 KiB aligned into zero-filled
//! preallocated space, and a disk lands a write sector by sector (each
//! sector atomically, in any order), so a crash mid-write leaves some
//! sectors of the block new and the rest zero. Every sector of a block that
//! holds a header or a record's `kind` byte is non-zero once written. A
//! bit flip in a block that was written whole leaves no such zero sector,
//! so it is never mistaken for a tear.
//!
//! `scan` never writes; `cut_torn_tail` (the torn tail) and
//! `repair::move_damage_aside` (damage, on request) are what write.

use super::base::{read_base, Base};
use super::format::{self, BlockFault, BlockHeader, BLOCK_ALIGN, HEADER_LEN};
use super::head::{read_head, write_head, HEAD_NAME};
use super::{
    io_err, list_segments, parse_segment_name, segment_name, JournalError, Storage, StorageFile,
};
use crate::record::{InputRecord, RECORD_LEN};
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

/// The unit a disk writes atomically, as this module assumes it (the
/// smallest in use; 4 KiB-sector disks tear more coarsely, which is safe).
pub const SECTOR: usize = 512;

/// A torn tail found (and, after `cut_torn_tail`, removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Segment of the torn bytes.
    pub segment: PathBuf,
    /// Offset of the torn block (a block boundary).
    pub offset: u64,
    /// Non-zero bytes from `offset` on in that segment, rounded up to 4 KiB
    /// (what cutting it zeroes).
    pub bytes: u64,
    /// What failed there.
    pub what: BlockFault,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "torn tail in {} at offset {} ({} bytes): {}",
            self.segment.display(),
            self.offset,
            self.bytes,
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
    /// The anchor (`journal.base`) when the journal's front was retained
    /// away: the journal starts at its seq.
    pub base: Option<Base>,
    /// Segments before the base still in the directory (a retention pass
    /// cut short): not read, finished by the next pass.
    pub retired: Vec<PathBuf>,
}

/// Decodes every record of a block, handing each input to `f`; a record
/// that does not decode is the block's fault.
pub fn decode_records(
    records: &[InputRecord],
    mut f: impl FnMut(engine::Input),
) -> Result<(), BlockFault> {
    decode_records_from(records, |input, _| f(input))
}

/// `decode_records`, each input with the origin its record carries.
pub fn decode_records_from(
    records: &[InputRecord],
    mut f: impl FnMut(engine::Input, crate::record::Origin),
) -> Result<(), BlockFault> {
    for (i, r) in records.iter().enumerate() {
        let input = crate::record::decode(r).map_err(|error| BlockFault::Record {
            index: i,
            seq: r.seq(),
            error,
        })?;
        f(input, crate::record::origin_of(r));
    }
    Ok(())
}

pub(crate) fn read_all<S: Storage>(storage: &S, path: &Path) -> Result<Vec<u8>, JournalError> {
    let mut data = Vec::new();
    read_into(storage, path, &mut data)?;
    Ok(data)
}

/// Reads the whole file at `path` into `data` (resized to its length): a
/// walk reuses one buffer for every segment, so only the first segment pays
/// for faulting in fresh pages.
fn read_into<S: Storage>(storage: &S, path: &Path, data: &mut Vec<u8>) -> Result<(), JournalError> {
    let f = storage.open_read(path).map_err(io_err("open", path))?;
    let len = f.len().map_err(io_err("stat", path))?;
    // No clear first: what remains is overwritten by the read.
    data.resize(len as usize, 0);
    f.read_at(data, 0).map_err(io_err("read", path))
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

/// End of the non-zero bytes of `data` at or after `from`, rounded up to
/// 4 KiB (capped at the data's length); `from` when there are none.
pub(crate) fn nonzero_end(data: &[u8], from: usize) -> usize {
    match data[from..].iter().rposition(|&b| b != 0) {
        Some(i) => (from + i + 1)
            .div_ceil(BLOCK_ALIGN)
            .saturating_mul(BLOCK_ALIGN)
            .min(data.len()),
        None => from,
    }
}

/// Whether the bytes at the start of `data` (a block position, running to
/// the end of the segment), which failed with `what`, are a torn write: a
/// block whose header sector is still zero (nothing of it that matters
/// landed), or one whose header sector parses and where some sector that
/// must hold data (the header's, or one holding a record's non-zero `kind`
/// byte) is still all zeros. A header sector that landed is whole, so a
/// non-zero one that fails its checks is damage, as is a block that runs
/// past the end of its segment (segments never shrink).
pub fn provably_torn(data: &[u8], what: &BlockFault) -> bool {
    let zero = |from: usize| {
        data[from..(from + SECTOR).min(data.len())]
            .iter()
            .all(|&b| b == 0)
    };
    if zero(0) {
        return true;
    }
    if !what.tearable() {
        return false;
    }
    let Ok(h) = format::parse_header(data) else {
        return false;
    };
    let count = h.count as usize;
    if count == 0
        || h.body_len != (count * RECORD_LEN) as u64
        || format::block_len(count) > data.len() as u64
    {
        return false;
    }
    // The `kind` byte sits at offset 16 of every record and is never zero.
    (0..count).any(|i| zero((HEADER_LEN + i * RECORD_LEN + 16) / SECTOR * SECTOR))
}

/// Whether the fault `what` at `off` in a segment's `data` is a torn tail:
/// provably torn bytes, and no valid block header after them, in this
/// segment or in the `later` ones. Anything else is damage.
fn torn_tail_at<S: Storage>(
    storage: &S,
    later: &[(u64, PathBuf)],
    data: &[u8],
    off: usize,
    what: &BlockFault,
) -> Result<bool, JournalError> {
    if valid_header_from(data, off + 1).is_some() || !provably_torn(&data[off..], what) {
        return Ok(false);
    }
    for (_, p) in later {
        if valid_header_from(&read_all(storage, p)?, 0).is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Walks the journal in `dir`, calling `visit(segment, offset, header,
/// records)` for every valid block in order. A fault returned by `visit`
/// (say, a record that does not decode) is reported as corruption of that
/// block.
///
/// The journal starts where `journal.base` says (see `base`), else at seq 1
/// with a zero `prev_checksum`; a first segment that starts later is
/// `JournalError::LostFront`. Segments before the base (left by a crash in
/// the middle of a retention pass) are not read: they are listed in
/// `ScanReport::retired` for the next pass to finish.
pub fn scan<S, F>(storage: &S, dir: &Path, mut visit: F) -> Result<ScanReport, JournalError>
where
    S: Storage,
    F: FnMut(&Path, u64, &BlockHeader, &[InputRecord]) -> Result<(), BlockFault>,
{
    let all = list_segments(storage, dir)?;
    let head = read_head(storage, dir)?;
    let base = read_base(storage, dir)?;
    let first_seq = base.map_or(1, |b| b.first_seq);
    let split = all.partition_point(|(s, _)| *s < first_seq);
    let (retired, segments) = all.split_at(split);
    if let Some((found, path)) = segments.first() {
        if *found != first_seq {
            return Err(JournalError::LostFront {
                dir: dir.to_path_buf(),
                first_segment: path.clone(),
                found: *found,
                expected: first_seq,
                base: base.is_some(),
            });
        }
    }
    let mut rep = ScanReport {
        segments: segments.len(),
        base,
        retired: retired.iter().map(|(_, p)| p.clone()).collect(),
        ..ScanReport::default()
    };
    let start = Chain {
        last_seq: first_seq - 1,
        last_checksum: Some(base.map_or(0, |b| b.prev_checksum)),
    };
    walk(storage, segments, start, &mut visit, &mut rep)?;
    if rep.end.is_none() {
        if let (Some(b), Some((_, path))) = (base, segments.first()) {
            // Nothing written since the base: the writer resumes at the
            // start of the first kept segment, continuing the anchor.
            rep.end = Some(JournalEnd {
                segment: path.clone(),
                offset: 0,
                last_seq: b.retained_through(),
                last_checksum: b.prev_checksum,
            });
        }
    }
    if rep.last_seq.is_none() {
        rep.last_seq = base.map(|b| b.retained_through());
    }
    rep.trailing = trailing_after_end(&rep, segments);
    check_head(dir, head, &all, &rep)?;
    Ok(rep)
}

/// Where a walk starts: the seq before its first record and, when known,
/// the header checksum its first block must name as `prev_checksum`
/// (unknown only for an archive whose oldest segments were deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// Seq of the record before the first one.
    pub last_seq: u64,
    /// Header checksum of the block before the first one.
    pub last_checksum: Option<u128>,
}

/// Walks `segments` in order from `start` (see `scan`), filling `rep`:
/// counts, first and last seq, the end, a torn tail. Stops with `Ok` at a
/// torn tail (in `rep.tail`) or after the last segment.
pub(crate) fn walk<S, F>(
    storage: &S,
    segments: &[(u64, PathBuf)],
    start: Chain,
    visit: &mut F,
    rep: &mut ScanReport,
) -> Result<(), JournalError>
where
    S: Storage,
    F: FnMut(&Path, u64, &BlockHeader, &[InputRecord]) -> Result<(), BlockFault>,
{
    let mut prev = start;
    let mut buf = Vec::new();
    for (si, (name_seq, path)) in segments.iter().enumerate() {
        read_into(storage, path, &mut buf)?;
        let data = &buf[..];
        let short = data.is_empty()
            || data.len() % BLOCK_ALIGN != 0
            || !format::is_zero(&data[data.len() - BLOCK_ALIGN..]);
        let mut off = 0usize;
        let mut first_in_segment = true;
        loop {
            let last_good_seq = prev.last_seq;
            let corrupt = |offset: usize, what: BlockFault| JournalError::Corrupt {
                segment: path.clone(),
                offset: offset as u64,
                what,
                last_good_seq,
            };
            let short_at = |offset: usize| {
                corrupt(
                    offset,
                    BlockFault::ShortSegment {
                        len: data.len() as u64,
                    },
                )
            };
            let header_zero = format::is_zero(&data[off..(off + HEADER_LEN).min(data.len())]);
            if header_zero && format::is_zero(&data[off..]) {
                if short {
                    return Err(short_at(off));
                }
                break; // clean end of this segment
            }
            let parsed = if header_zero || off + HEADER_LEN > data.len() {
                Err(BlockFault::GarbageAfterEnd)
            } else {
                format::parse_block(&data[off..])
            };
            let (h, len) = match parsed {
                Ok(x) => x,
                Err(_) if short => return Err(short_at(off)),
                Err(what) => {
                    if !torn_tail_at(storage, &segments[si + 1..], data, off, &what)? {
                        return Err(corrupt(off, what));
                    }
                    rep.tail = Some(TornTail {
                        segment: path.clone(),
                        offset: off as u64,
                        bytes: (nonzero_end(data, off) - off) as u64,
                        what,
                    });
                    return Ok(());
                }
            };
            check_links(&h, prev, first_in_segment, *name_seq).map_err(|w| corrupt(off, w))?;
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
            prev = Chain {
                last_seq: h.last_seq(),
                last_checksum: Some(h.header_checksum),
            };
            off += len as usize;
            first_in_segment = false;
            rep.end = Some(JournalEnd {
                segment: path.clone(),
                offset: off as u64,
                last_seq: h.last_seq(),
                last_checksum: h.header_checksum,
            });
            if off >= data.len() {
                if short {
                    // Cut right after this block: what is intact ends here.
                    return Err(JournalError::Corrupt {
                        segment: path.clone(),
                        offset: off as u64,
                        what: BlockFault::ShortSegment {
                            len: data.len() as u64,
                        },
                        last_good_seq: h.last_seq(),
                    });
                }
                break;
            }
        }
    }
    Ok(())
}

/// A valid block must continue the sequence and the hash chain from `prev`,
/// and the first block of a segment must be the one its name says.
fn check_links(
    h: &BlockHeader,
    prev: Chain,
    first_in_segment: bool,
    name_seq: u64,
) -> Result<(), BlockFault> {
    let expected = prev.last_seq + 1;
    if h.first_seq != expected {
        return Err(BlockFault::SeqGap {
            expected,
            found: h.first_seq,
        });
    }
    if let Some(c) = prev.last_checksum {
        if h.prev_checksum != c {
            return Err(BlockFault::ChainBroken {
                expected: c,
                found: h.prev_checksum,
            });
        }
    }
    if first_in_segment && h.first_seq != name_seq {
        return Err(BlockFault::NameMismatch {
            name_seq,
            first_seq: h.first_seq,
        });
    }
    Ok(())
}

/// Refuses a journal that lost its newest segment: `journal.head` names the
/// segment starting at seq H, so that segment must exist and the journal
/// must reach at least seq H - 1 (see `head`). No head: nothing to check.
fn check_head(
    dir: &Path,
    head: Option<u64>,
    segments: &[(u64, PathBuf)],
    rep: &ScanReport,
) -> Result<(), JournalError> {
    let Some(head_seq) = head else {
        return Ok(());
    };
    let present = segments.iter().any(|(s, _)| *s == head_seq);
    let last_good_seq = rep.last_seq.unwrap_or(0);
    if present && last_good_seq + 1 >= head_seq {
        return Ok(());
    }
    Err(JournalError::LostSegment {
        head: dir.join(HEAD_NAME),
        segment: segment_name(head_seq),
        head_seq,
        present,
        last_good_seq,
    })
}

/// The first seq of the segment at `path`, from its name.
pub(crate) fn segment_seq(path: &Path) -> Option<u64> {
    parse_segment_name(path.file_name()?.to_str()?)?.ok()
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

/// Cuts a torn tail found by `scan` (an unsynced write that was never
/// acknowledged): zeroes the end segment from the end of its last valid
/// block (if the tail is there), removes every segment after it (they hold
/// no valid block; `journal.head` first names the end segment), makes both
/// durable, and logs a WARN naming the segment,
/// the offset and the bytes. Returns the tail it cut.
pub fn cut_torn_tail<S: Storage>(
    storage: &S,
    dir: &Path,
    rep: &ScanReport,
) -> Result<Option<TornTail>, JournalError> {
    if let Some(tail) = &rep.tail {
        tracing::warn!(
            segment = %tail.segment.display(),
            offset = tail.offset,
            bytes = tail.bytes,
            what = %tail.what,
            "cutting a torn journal tail: an unsynced write cut short by a crash, never acknowledged"
        );
    }
    if let (Some(tail), Some(end)) = (&rep.tail, &rep.end) {
        if tail.segment == end.segment && tail.bytes > 0 {
            let mut f = storage
                .open(&end.segment)
                .map_err(io_err("open", &end.segment))?;
            let zeros = vec![0u8; tail.bytes as usize];
            f.write_at(&zeros, tail.offset)
                .map_err(io_err("write", &end.segment))?;
            f.sync_data().map_err(io_err("fdatasync", &end.segment))?;
        }
    }
    if !rep.trailing.is_empty() {
        // The head moves back to the end segment before any later segment
        // goes (see `head`).
        let end_seq = rep.end.as_ref().and_then(|e| segment_seq(&e.segment));
        write_head(storage, dir, end_seq)?;
        for p in &rep.trailing {
            storage.remove(p).map_err(io_err("remove", p))?;
        }
        storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
    }
    Ok(rep.tail.clone())
}
