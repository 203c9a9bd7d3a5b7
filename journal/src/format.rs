//! The commit block's on-disk format: a 128-byte header, the records, zero
//! padding to a 4 KiB multiple.
//!
//! Header layout (little-endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | magic `BOURSEJB` |
//! | 8..12 | version: 1, or 2 for a block that is a Raft log entry |
//! | 12..16 | count: records in the block (≥ 1) |
//! | 16..24 | first_seq |
//! | 24..32 | batch timestamp: engine time of the block's last record |
//! | 32..40 | body_len = count × 192 |
//! | 40..48 | version 2: the Raft log index (else zero) |
//! | 48..56 | version 2: the Raft term of the entry's leader (else zero) |
//! | 56 | version 2: the entry kind, [`RaftKind`] (else zero) |
//! | 57..64 | reserved, zero |
//! | 64..80 | body checksum: xxh3-128 of the records |
//! | 80..96 | prev checksum: the previous block's header checksum (0 for the first block) |
//! | 96..112 | header checksum: xxh3-128 of the 128 header bytes with this field zeroed |
//! | 112..128 | reserved, zero |
//!
//! 128 bytes rather than 64: three 128-bit checksums leave too little room
//! in 64. In a replicated partition each Raft log entry is one block (the
//! journal is the Raft log), so the entry's log id lives in its header and
//! is covered by the header checksum and the hash chain. Invariant: `parse` accepts a block only if every check passes,
//! and names the first one that fails.

use crate::record::{InputRecord, RECORD_LEN};
use xxhash_rust::xxh3::xxh3_128;

/// Header size.
pub const HEADER_LEN: usize = 128;
/// Block alignment and size granularity.
pub const BLOCK_ALIGN: usize = 4096;
/// Header magic.
pub const MAGIC: [u8; 8] = *b"BOURSEJB";
/// Format version of a plain block.
pub const VERSION: u32 = 1;
/// Format version of a block that is a Raft log entry (carries a [`RaftTag`]).
pub const VERSION_RAFT: u32 = 2;

/// What a Raft log entry is (header byte 56 of a version-2 block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftKind {
    /// Client inputs (one record per input).
    Normal = 1,
    /// A new leader's first entry: one `time` input at the previous time.
    Blank = 2,
    /// A membership change: one `time` input at the previous time; the
    /// membership itself is kept beside the journal (`raft.members`).
    Membership = 3,
}

impl RaftKind {
    fn from_byte(b: u8) -> Option<RaftKind> {
        match b {
            1 => Some(RaftKind::Normal),
            2 => Some(RaftKind::Blank),
            3 => Some(RaftKind::Membership),
            _ => None,
        }
    }
}

/// The Raft log id of a block (version 2): index, term and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTag {
    /// Raft log index (openraft's first entry, a cluster's initial
    /// membership, has index 0).
    pub index: u64,
    /// Term of the leader that proposed the entry.
    pub term: u64,
    /// What the entry is.
    pub kind: RaftKind,
}

/// Bytes a block of `count` records takes on disk.
pub fn block_len(count: usize) -> u64 {
    let raw = HEADER_LEN + count * RECORD_LEN;
    raw.div_ceil(BLOCK_ALIGN) as u64 * BLOCK_ALIGN as u64
}

/// A decoded block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// Records in the block.
    pub count: u32,
    /// Seq of the first record.
    pub first_seq: u64,
    /// Engine time of the last record.
    pub batch_ts: u64,
    /// Bytes of records.
    pub body_len: u64,
    /// xxh3-128 of the records.
    pub body_checksum: u128,
    /// Header checksum of the previous block.
    pub prev_checksum: u128,
    /// xxh3-128 of this header with this field zeroed.
    pub header_checksum: u128,
    /// The Raft log id (version-2 blocks only).
    pub raft: Option<RaftTag>,
}

impl BlockHeader {
    /// Seq of the last record.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.count as u64 - 1
    }
}

/// What is wrong with a block (or where it sits in the journal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockFault {
    /// Header bytes all zero but non-zero bytes follow in the segment.
    #[error("zero header followed by non-zero bytes (garbage after the end of the data)")]
    GarbageAfterEnd,
    /// Wrong magic.
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 8]),
    /// Unknown version.
    #[error("unknown block version {0}")]
    BadVersion(u32),
    /// A version-2 block with an unknown entry kind.
    #[error("bad Raft log id: index {index}, kind {kind}")]
    BadRaftTag {
        /// Index found.
        index: u64,
        /// Kind byte found.
        kind: u8,
    },
    /// Header checksum mismatch.
    #[error("header checksum mismatch")]
    HeaderChecksum,
    /// Reserved header bytes not zero.
    #[error("reserved header bytes not zero")]
    ReservedNonZero,
    /// count/body_len inconsistent, or the block runs past the segment end.
    #[error("bad length: count {count}, body_len {body_len}, {room} bytes left in segment")]
    BadLength {
        /// count field.
        count: u32,
        /// body_len field.
        body_len: u64,
        /// Bytes from the block to the end of the segment.
        room: u64,
    },
    /// Body checksum mismatch.
    #[error("body checksum mismatch")]
    BodyChecksum,
    /// Padding after the records not zero.
    #[error("padding after the records not zero")]
    PaddingNonZero,
    /// The block's prev checksum is not the previous block's checksum.
    #[error(
        "hash chain broken: prev checksum {found:032x}, previous block's checksum {expected:032x}"
    )]
    ChainBroken {
        /// Header checksum of the previous block.
        expected: u128,
        /// prev checksum found.
        found: u128,
    },
    /// first_seq does not continue the sequence.
    #[error("sequence gap: expected first seq {expected}, found {found}")]
    SeqGap {
        /// previous last seq + 1.
        expected: u64,
        /// first_seq found.
        found: u64,
    },
    /// The segment's name does not match its first block.
    #[error("segment named for seq {name_seq} starts with seq {first_seq}")]
    NameMismatch {
        /// From the file name.
        name_seq: u64,
        /// From the first block.
        first_seq: u64,
    },
    /// A record's own seq does not count up inside the block.
    #[error("record {index}: seq {found}, expected {expected}")]
    RecordSeq {
        /// Index in the block.
        index: usize,
        /// Expected seq.
        expected: u64,
        /// Found seq.
        found: u64,
    },
    /// A segment file shorter than any the writer makes: empty, or not a
    /// multiple of 4 KiB (segments are preallocated whole before they are
    /// named, so this is truncation, never a crash).
    #[error("short segment: {len} bytes, not a positive multiple of 4096 or not ending with a zero 4 KiB page (truncated)")]
    ShortSegment {
        /// The segment's length.
        len: u64,
    },
    /// A record that does not decode.
    #[error("record {index} (seq {seq}): {error}")]
    Record {
        /// Index in the block.
        index: usize,
        /// Its seq.
        seq: u64,
        /// Why.
        error: crate::record::RecordError,
    },
}

impl BlockFault {
    /// Whether a torn write could have caused this fault (as opposed to a
    /// block that is internally valid but out of place, or a truncated
    /// segment). Necessary, not sufficient: `reader` also checks that the
    /// bytes look torn (see `reader::provably_torn`).
    pub fn tearable(&self) -> bool {
        !matches!(
            self,
            BlockFault::ChainBroken { .. }
                | BlockFault::SeqGap { .. }
                | BlockFault::NameMismatch { .. }
                | BlockFault::RecordSeq { .. }
                | BlockFault::Record { .. }
                | BlockFault::ShortSegment { .. }
        )
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn u128_at(b: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(b[at..at + 16].try_into().expect("16 bytes"))
}

/// Whether every byte of `data` is zero. Word-wise (the compiler makes it
/// vector code), a kilobyte at a time so damage stops it early: replay
/// checks every record's tail, every block's padding and each segment's zero
/// tail (megabytes) with it.
pub fn is_zero(data: &[u8]) -> bool {
    let mut chunks = data.chunks_exact(1024);
    for c in &mut chunks {
        if !words_zero(c) {
            return false;
        }
    }
    words_zero(chunks.remainder())
}

/// `is_zero` without the early stop.
fn words_zero(data: &[u8]) -> bool {
    const WORD: usize = 16;
    let mut words = data.chunks_exact(WORD);
    let any = (&mut words).fold(0u128, |acc, w| {
        acc | u128::from_ne_bytes(w.try_into().expect("a whole word"))
    });
    any == 0 && words.remainder().iter().all(|&b| b == 0)
}

/// Writes a block for `records` into `buf` (cleared first) and returns its
/// header. `buf.len()` is then a multiple of 4 KiB.
pub fn build_block(buf: &mut Vec<u8>, records: &[InputRecord], prev_checksum: u128) -> BlockHeader {
    build_tagged_block(buf, records, prev_checksum, None)
}

/// `build_block`, for a Raft log entry when `raft` is given (version 2).
pub fn build_tagged_block(
    buf: &mut Vec<u8>,
    records: &[InputRecord],
    prev_checksum: u128,
    raft: Option<RaftTag>,
) -> BlockHeader {
    buf.clear();
    let count = records.len();
    let total = block_len(count) as usize;
    buf.resize(HEADER_LEN, 0);
    buf.extend_from_slice(bytemuck::cast_slice(records));
    buf.resize(total, 0);
    let body_len = (count * RECORD_LEN) as u64;
    let body_checksum = xxh3_128(&buf[HEADER_LEN..HEADER_LEN + body_len as usize]);
    let first_seq = records[0].seq();
    let batch_ts = records[count - 1].now();
    let h = &mut buf[..HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    let version = if raft.is_some() {
        VERSION_RAFT
    } else {
        VERSION
    };
    h[8..12].copy_from_slice(&version.to_le_bytes());
    if let Some(t) = raft {
        h[40..48].copy_from_slice(&t.index.to_le_bytes());
        h[48..56].copy_from_slice(&t.term.to_le_bytes());
        h[56] = t.kind as u8;
    }
    h[12..16].copy_from_slice(&(count as u32).to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    h[24..32].copy_from_slice(&batch_ts.to_le_bytes());
    h[32..40].copy_from_slice(&body_len.to_le_bytes());
    h[64..80].copy_from_slice(&body_checksum.to_le_bytes());
    h[80..96].copy_from_slice(&prev_checksum.to_le_bytes());
    let header_checksum = xxh3_128(h);
    h[96..112].copy_from_slice(&header_checksum.to_le_bytes());
    BlockHeader {
        count: count as u32,
        first_seq,
        batch_ts,
        body_len,
        body_checksum,
        prev_checksum,
        header_checksum,
        raft,
    }
}

/// Checks only the header at `data[0..128]` (magic, version, reserved,
/// checksum). Used to look for valid blocks after a damaged one.
pub fn parse_header(data: &[u8]) -> Result<BlockHeader, BlockFault> {
    let h = &data[..HEADER_LEN];
    let magic: [u8; 8] = h[0..8].try_into().expect("8 bytes");
    if magic != MAGIC {
        return Err(BlockFault::BadMagic(magic));
    }
    let mut copy = [0u8; HEADER_LEN];
    copy.copy_from_slice(h);
    copy[96..112].fill(0);
    let header_checksum = u128_at(h, 96);
    if xxh3_128(&copy) != header_checksum {
        return Err(BlockFault::HeaderChecksum);
    }
    let version = u32_at(h, 8);
    let raft = match version {
        VERSION => {
            if h[40..57].iter().any(|&b| b != 0) {
                return Err(BlockFault::ReservedNonZero);
            }
            None
        }
        VERSION_RAFT => {
            let (index, kind) = (u64_at(h, 40), h[56]);
            match RaftKind::from_byte(kind) {
                Some(kind) => Some(RaftTag {
                    index,
                    term: u64_at(h, 48),
                    kind,
                }),
                _ => return Err(BlockFault::BadRaftTag { index, kind }),
            }
        }
        _ => return Err(BlockFault::BadVersion(version)),
    };
    if h[57..64].iter().chain(&h[112..128]).any(|&b| b != 0) {
        return Err(BlockFault::ReservedNonZero);
    }
    Ok(BlockHeader {
        count: u32_at(h, 12),
        first_seq: u64_at(h, 16),
        batch_ts: u64_at(h, 24),
        body_len: u64_at(h, 32),
        body_checksum: u128_at(h, 64),
        prev_checksum: u128_at(h, 80),
        header_checksum,
        raft,
    })
}

/// Parses and checks the block at the start of `data` (which runs to the
/// end of the segment). Returns the header and the block's length on disk.
pub fn parse_block(data: &[u8]) -> Result<(BlockHeader, u64), BlockFault> {
    let h = parse_header(data)?;
    let room = data.len() as u64;
    let bad_len = BlockFault::BadLength {
        count: h.count,
        body_len: h.body_len,
        room,
    };
    if h.count == 0 || h.body_len != h.count as u64 * RECORD_LEN as u64 {
        return Err(bad_len);
    }
    let len = block_len(h.count as usize);
    if len > room {
        return Err(bad_len);
    }
    let body_end = HEADER_LEN + h.body_len as usize;
    if xxh3_128(&data[HEADER_LEN..body_end]) != h.body_checksum {
        return Err(BlockFault::BodyChecksum);
    }
    if !is_zero(&data[body_end..len as usize]) {
        return Err(BlockFault::PaddingNonZero);
    }
    Ok((h, len))
}

/// The records of a block that `parse_block` accepted.
pub fn block_records<'a>(data: &'a [u8], h: &BlockHeader) -> &'a [InputRecord] {
    bytemuck::cast_slice(&data[HEADER_LEN..HEADER_LEN + h.body_len as usize])
}

#[cfg(test)]
mod tests {
    use super::is_zero;

    #[test]
    fn is_zero_finds_a_single_non_zero_byte_anywhere() {
        for len in [0usize, 1, 15, 16, 17, 100, 1023, 1024, 1025, 3000] {
            let mut data = vec![0u8; len];
            assert!(is_zero(&data), "len {len}");
            for at in 0..len {
                data[at] = 0x80;
                assert!(!is_zero(&data), "len {len}, non-zero at {at}");
                data[at] = 0;
            }
        }
    }
}
