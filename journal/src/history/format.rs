//! The run file format: one immutable, self-checking file per history run.
//!
//! File `run-<run, 20 digits>.bhr`, little-endian throughout:
//!
//! | part | what |
//! | --- | --- |
//! | header page (4 KiB) | [`Header`] in its first [`HEADER_LEN`] bytes, zeros after |
//! | record blocks | records sorted by (id, change_seq), `RECORDS_PER_BLOCK` a block |
//! | account blocks | [`AccountEntry`]s sorted by (account, ledger_seq), `ENTRIES_PER_BLOCK` a block |
//! | fences | the first id of every record block (16 bytes each) |
//! | account fences | (account, ledger_seq) of the first entry of every account block (24 bytes each) |
//! | filter | a binary fuse filter over the run's ids: descriptor then fingerprints |
//! | members | merged files only: [`Member`] per run merged in (32 bytes each) |
//!
//! A merged file (`run-<first>-<last>.bhr`, written by compaction, see
//! `compact`) has the same layout and holds runs `first..=last`: only the
//! newest record of each id among them, and in its header `first_run` and
//! the member list (run, through_seq, checksum of each run merged in), so
//! `has_run` still answers for every run it replaced. A single run has
//! `first_run == run` and no members.
//!
//! A block is 4 KiB: packed fixed-size items, zero padding, and an 8-byte
//! trailer = xxh3-64 of the first 4088 bytes seeded with (first run, run,
//! section, block number), so a lookup verifies exactly the block it reads and a
//! block copied to the wrong place or file does not verify. Fences,
//! account fences and filter (what is kept in memory) carry xxh3-128
//! checksums in the header; the header carries its own checksum and the run's
//! content checksum: xxh3-128 over the canonically encoded records in file
//! order, which is (id, change_seq) order, the same definition as the
//! engine's in-memory history, so a run has one checksum whichever store
//! holds it.
//!
//! Invariants of a file that [`Header::decode`] and the store accept: every
//! section lies inside the file at its computed place and the file ends where
//! the header says; records are strictly ascending by (id, change_seq); each
//! account entry points at the newest record of its transfer in this run;
//! every transfer (not `Failed`) has an entry for its debit account and one
//! for its credit account.

use engine::history::RECORD_LEN;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64, xxh3_64_with_seed};

/// Block (and header page) size.
pub const BLOCK_LEN: usize = 4096;
/// Bytes of a block before its checksum trailer.
pub const BLOCK_PAYLOAD: usize = BLOCK_LEN - 8;
/// Records a block holds.
pub const RECORDS_PER_BLOCK: usize = BLOCK_PAYLOAD / RECORD_LEN;
/// Encoded size of an [`AccountEntry`].
pub const ENTRY_LEN: usize = 36;
/// Account entries a block holds.
pub const ENTRIES_PER_BLOCK: usize = BLOCK_PAYLOAD / ENTRY_LEN;
/// Encoded header size (at the start of the header page).
pub const HEADER_LEN: usize = 320;
/// Header magic.
pub const MAGIC: [u8; 8] = *b"BOURSEHR";
/// Format version.
pub const VERSION: u32 = 2;
/// Size of one record fence.
pub const FENCE_LEN: usize = 16;
/// Size of one account fence.
pub const ACCOUNT_FENCE_LEN: usize = 24;
/// Size of the filter's descriptor at the start of the filter section.
pub const FILTER_DESCRIPTOR_LEN: usize = 20;
/// Size of one [`Member`].
pub const MEMBER_LEN: usize = 32;

/// One run merged into a merged file: what `has_run` answers from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// The run number.
    pub run: u64,
    /// Its through seq.
    pub through_seq: u64,
    /// Its content checksum (the one it was installed with).
    pub checksum: u128,
}

impl Member {
    /// Encodes into `out[..MEMBER_LEN]`.
    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.run.to_le_bytes());
        out[8..16].copy_from_slice(&self.through_seq.to_le_bytes());
        out[16..32].copy_from_slice(&self.checksum.to_le_bytes());
    }

    /// Decodes from `b[..MEMBER_LEN]`.
    pub fn decode(b: &[u8]) -> Self {
        Self {
            run: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            through_seq: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            checksum: u128::from_le_bytes(b[16..32].try_into().expect("16 bytes")),
        }
    }
}

/// The blocked sections, named in block checksum seeds and in faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Record blocks.
    Records = 1,
    /// Account index blocks.
    Accounts = 2,
}

impl Section {
    /// Name used in fault messages.
    pub fn name(self) -> &'static str {
        match self {
            Section::Records => "record",
            Section::Accounts => "account index",
        }
    }
}

/// The file name of run `run`.
pub fn run_name(run: u64) -> String {
    format!("run-{run:020}.bhr")
}

/// The file name of the merged file of runs `first..=last`.
pub fn merged_name(first: u64, last: u64) -> String {
    format!("run-{first:020}-{last:020}.bhr")
}

/// The name of the file holding runs `first..=last` (a run's or a merged one).
pub fn file_name(first: u64, last: u64) -> String {
    if first == last {
        run_name(last)
    } else {
        merged_name(first, last)
    }
}

fn digits20(s: &str) -> Option<u64> {
    if s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// The run number in a single run's file name; `None` for other names
/// (merged files and temp files included).
pub fn parse_run_name(name: &str) -> Option<u64> {
    digits20(name.strip_prefix("run-")?.strip_suffix(".bhr")?)
}

/// The runs `(first, last)` a run or merged file's name says it holds;
/// `None` for other names (temp files included) and for `first ≥ last`
/// in a merged name.
pub fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    if let Some(n) = parse_run_name(name) {
        return Some((n, n));
    }
    let mid = name.strip_prefix("run-")?.strip_suffix(".bhr")?;
    let (a, b) = mid.split_once('-')?;
    let (first, last) = (digits20(a)?, digits20(b)?);
    (first < last).then_some((first, last))
}

/// The filter's key for a transfer id.
pub fn filter_key(id: u128) -> u64 {
    xxh3_64(&id.to_le_bytes())
}

/// The transfer id of an encoded record without decoding it (the
/// canonical encoding starts with it; lookups binary-search a block by it,
/// then decode the one record they return, whose id the caller checks).
pub fn record_id(raw: &[u8]) -> u128 {
    u128::from_le_bytes(raw[..16].try_into().expect("16 bytes"))
}

/// Which file a block belongs to: (first run, run), seeding its checksum.
pub type FileKey = (u64, u64);

/// The checksum seed of block `block` of `section` in the file of runs
/// `first..=run`.
fn block_seed((first, run): FileKey, section: Section, block: u64) -> u64 {
    xxh3_64(
        &[
            first.to_le_bytes(),
            run.to_le_bytes(),
            (section as u64).to_le_bytes(),
            block.to_le_bytes(),
        ]
        .concat(),
    )
}

/// Writes the trailer of a filled block.
pub fn seal_block(buf: &mut [u8], run: FileKey, section: Section, block: u64) {
    let c = xxh3_64_with_seed(&buf[..BLOCK_PAYLOAD], block_seed(run, section, block));
    buf[BLOCK_PAYLOAD..BLOCK_LEN].copy_from_slice(&c.to_le_bytes());
}

/// Whether a block read back matches its trailer.
pub fn block_ok(buf: &[u8], run: FileKey, section: Section, block: u64) -> bool {
    let c = xxh3_64_with_seed(&buf[..BLOCK_PAYLOAD], block_seed(run, section, block));
    buf[BLOCK_PAYLOAD..BLOCK_LEN] == c.to_le_bytes()
}

/// One account index entry: where a transfer of `account` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AccountEntry {
    /// The debit or credit account.
    pub account: u128,
    /// The transfer's `ledger_seq` (the merge key across runs).
    pub ledger_seq: u64,
    /// The transfer's `created` time (time ranges filter on it).
    pub created: u64,
    /// Position of the transfer's newest record in this run.
    pub pos: u32,
}

impl AccountEntry {
    /// Encodes into `out[..ENTRY_LEN]`.
    pub fn encode(&self, out: &mut [u8]) {
        out[0..16].copy_from_slice(&self.account.to_le_bytes());
        out[16..24].copy_from_slice(&self.ledger_seq.to_le_bytes());
        out[24..32].copy_from_slice(&self.created.to_le_bytes());
        out[32..36].copy_from_slice(&self.pos.to_le_bytes());
    }

    /// Decodes from `b[..ENTRY_LEN]`.
    pub fn decode(b: &[u8]) -> Self {
        Self {
            account: u128::from_le_bytes(b[0..16].try_into().expect("16 bytes")),
            ledger_seq: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            created: u64::from_le_bytes(b[24..32].try_into().expect("8 bytes")),
            pos: u32::from_le_bytes(b[32..36].try_into().expect("4 bytes")),
        }
    }
}

/// A section's place in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub len: u64,
}

/// The decoded run header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Run number (1, 2, 3, … per partition).
    pub run: u64,
    /// The previous run's through seq: this run holds every change with
    /// change_seq in (after_seq, through_seq].
    pub after_seq: u64,
    /// The last input seq the run covers.
    pub through_seq: u64,
    /// Records in the run.
    pub records: u64,
    /// Account index entries.
    pub entries: u64,
    /// Lowest id (0 when empty).
    pub min_id: u128,
    /// Highest id (0 when empty).
    pub max_id: u128,
    /// Content checksum (see the module doc).
    pub checksum: u128,
    /// Record blocks.
    pub record_span: Span,
    /// Account index blocks.
    pub account_span: Span,
    /// Record fences.
    pub fence_span: Span,
    /// Account fences.
    pub account_fence_span: Span,
    /// Filter.
    pub filter_span: Span,
    /// xxh3-128 of the fences section.
    pub fence_checksum: u128,
    /// xxh3-128 of the account fences section.
    pub account_fence_checksum: u128,
    /// xxh3-128 of the filter section.
    pub filter_checksum: u128,
    /// Total file length.
    pub file_len: u64,
    /// The first run the file holds (`run` for a single run).
    pub first_run: u64,
    /// Member list (merged files; empty for a single run).
    pub member_span: Span,
    /// xxh3-128 of the member list.
    pub member_checksum: u128,
}

/// Why a header is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderFault {
    /// Wrong magic.
    #[error("bad magic")]
    BadMagic,
    /// Header checksum mismatch.
    #[error("header checksum mismatch")]
    Checksum,
    /// Unknown version.
    #[error("unknown version {0}")]
    Version(u32),
    /// Written with another record encoding.
    #[error("record length {0}, this build uses {RECORD_LEN}")]
    RecordLen(u32),
    /// Sections not where the counts put them, or the file length differs.
    #[error("section layout inconsistent with the counts")]
    Layout,
}

fn blocks(items: u64, per_block: usize) -> u64 {
    items.div_ceil(per_block as u64)
}

impl Header {
    /// Computes the section layout from the counts and filter length.
    pub fn lay_out(&mut self, filter_len: u64) {
        let rb = blocks(self.records, RECORDS_PER_BLOCK);
        let ab = blocks(self.entries, ENTRIES_PER_BLOCK);
        let (rb, ab) = (rb.min(u32::MAX as u64), ab.min(u32::MAX as u64));
        let mut at = BLOCK_LEN as u64;
        // Saturating: a header's counts are checked against these spans, and
        // garbage counts must fail that check, not overflow.
        let mut next = |len: u64| {
            let s = Span { offset: at, len };
            at = at.saturating_add(len);
            s
        };
        self.record_span = next(rb * BLOCK_LEN as u64);
        self.account_span = next(ab * BLOCK_LEN as u64);
        self.fence_span = next(rb * FENCE_LEN as u64);
        self.account_fence_span = next(ab * ACCOUNT_FENCE_LEN as u64);
        self.filter_span = next(filter_len);
        self.member_span = next(self.members() * MEMBER_LEN as u64);
        self.file_len = at;
    }

    /// Members listed: 0 for a single run, else every run merged in.
    pub fn members(&self) -> u64 {
        if self.first_run >= self.run {
            0
        } else {
            self.run - self.first_run + 1
        }
    }

    /// The key seeding this file's block checksums.
    pub fn key(&self) -> FileKey {
        (self.first_run, self.run)
    }

    /// Record blocks.
    pub fn record_blocks(&self) -> u64 {
        blocks(self.records, RECORDS_PER_BLOCK)
    }

    /// Account index blocks.
    pub fn account_blocks(&self) -> u64 {
        blocks(self.entries, ENTRIES_PER_BLOCK)
    }

    /// Encodes the header with its checksum.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        let mut w = 0;
        let mut put = |b: &[u8]| {
            h[w..w + b.len()].copy_from_slice(b);
            w += b.len();
        };
        put(&MAGIC);
        put(&VERSION.to_le_bytes());
        put(&(RECORD_LEN as u32).to_le_bytes());
        for v in [
            self.run,
            self.after_seq,
            self.through_seq,
            self.records,
            self.entries,
        ] {
            put(&v.to_le_bytes());
        }
        for v in [self.min_id, self.max_id, self.checksum] {
            put(&v.to_le_bytes());
        }
        for s in self.spans() {
            put(&s.offset.to_le_bytes());
            put(&s.len.to_le_bytes());
        }
        for v in [
            self.fence_checksum,
            self.account_fence_checksum,
            self.filter_checksum,
        ] {
            put(&v.to_le_bytes());
        }
        put(&self.file_len.to_le_bytes());
        put(&self.first_run.to_le_bytes());
        put(&self.member_span.offset.to_le_bytes());
        put(&self.member_span.len.to_le_bytes());
        put(&self.member_checksum.to_le_bytes());
        let c = xxh3_128(&h[..HEADER_LEN - 16]);
        h[HEADER_LEN - 16..].copy_from_slice(&c.to_le_bytes());
        h
    }

    fn spans(&self) -> [Span; 5] {
        [
            self.record_span,
            self.account_span,
            self.fence_span,
            self.account_fence_span,
            self.filter_span,
        ]
    }

    /// Decodes and checks a header: magic, checksum, version, record
    /// length, and that every section is where the counts put it.
    pub fn decode(h: &[u8; HEADER_LEN]) -> Result<Header, HeaderFault> {
        if h[0..8] != MAGIC {
            return Err(HeaderFault::BadMagic);
        }
        let stored = u128::from_le_bytes(h[HEADER_LEN - 16..].try_into().expect("16 bytes"));
        if xxh3_128(&h[..HEADER_LEN - 16]) != stored {
            return Err(HeaderFault::Checksum);
        }
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
        let u128_at = |o: usize| u128::from_le_bytes(h[o..o + 16].try_into().expect("16 bytes"));
        if u32_at(8) != VERSION {
            return Err(HeaderFault::Version(u32_at(8)));
        }
        if u32_at(12) as usize != RECORD_LEN {
            return Err(HeaderFault::RecordLen(u32_at(12)));
        }
        let span = |o: usize| Span {
            offset: u64_at(o),
            len: u64_at(o + 8),
        };
        let got = Header {
            run: u64_at(16),
            after_seq: u64_at(24),
            through_seq: u64_at(32),
            records: u64_at(40),
            entries: u64_at(48),
            min_id: u128_at(56),
            max_id: u128_at(72),
            checksum: u128_at(88),
            record_span: span(104),
            account_span: span(120),
            fence_span: span(136),
            account_fence_span: span(152),
            filter_span: span(168),
            fence_checksum: u128_at(184),
            account_fence_checksum: u128_at(200),
            filter_checksum: u128_at(216),
            file_len: u64_at(232),
            first_run: u64_at(240),
            member_span: span(248),
            member_checksum: u128_at(264),
        };
        let mut want = got;
        want.lay_out(got.filter_span.len);
        let sane = got.records <= u32::MAX as u64
            && got.entries <= 2 * got.records
            && got.after_seq <= got.through_seq
            && (1..=got.run).contains(&got.first_run)
            && want == got;
        if !sane {
            return Err(HeaderFault::Layout);
        }
        Ok(got)
    }
}
