//! The ledger's transfer history beyond memory: the record every stored
//! transfer leaves, and the read-only interface through which the engine
//! consults transfers that no longer live in its memory.
//!
//! Shape (ARCHITECTURE.md, "Transfer history"): the engine keeps the hot part
//! of the ledger in fixed memory (pending transfers and every transfer not
//! yet installed in history). Every input that stores a transfer, changes a
//! pending transfer's state or remembers a failed id pushes a
//! [`TransferRecord`] onto `Events::changes`; the runtime hands those to a
//! history writer off the engine thread, which cuts them into immutable,
//! checksummed runs and installs each run through a sequenced, journaled
//! `Command::InstallHistory`. Only records covered by an installed run may
//! leave memory, so every answer is the same whether it comes from memory or
//! from history, and replay stays bit-exact.
//!
//! Invariants: a `TransferHistory` answers only from installed runs; its
//! answer for an id is the newest record of that id (highest `change_seq`);
//! it never answers wrongly: a run it cannot read or verify is a fail-stop
//! (`HistoryFault`), which the engine turns into a loud panic, because the
//! history is part of the ledger's state.

use crate::command::TransferSpec;
use crate::event::LedgerError;
use crate::types::*;
use std::collections::BTreeMap;
// MemHistory only (tests, scripts, benches): the engine itself takes no lock.
#[allow(clippy::disallowed_types)]
use std::sync::{Arc, Mutex};

/// What became of a stored transfer (or a remembered failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferState {
    /// A plain transfer, posted when created.
    Posted,
    /// A pending transfer still reserving its amount.
    Pending,
    /// A pending transfer resolved by a post.
    PendingPosted,
    /// A pending transfer resolved by a void.
    PendingVoided,
    /// A pending transfer that timed out.
    PendingExpired,
    /// A post or void record (it resolves the transfer in `spec.pending_id`).
    Resolution,
    /// Not a transfer: an id whose transfer failed with a transient error and
    /// is remembered so a retry answers `id_already_failed` (convention 12).
    /// Queries never return these.
    Failed(LedgerError),
}

impl TransferState {
    /// A stable lower-case name (queries, CLI, dumps).
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Posted => "posted",
            TransferState::Pending => "pending",
            TransferState::PendingPosted => "pending_posted",
            TransferState::PendingVoided => "pending_voided",
            TransferState::PendingExpired => "pending_expired",
            TransferState::Resolution => "resolution",
            TransferState::Failed(_) => "failed",
        }
    }
}

/// One transfer as the ledger remembers it, in memory or in history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferRecord {
    /// The transfer as requested (id, accounts, requested amount, code,
    /// flags, pending id, timeout).
    pub spec: TransferSpec,
    /// The account debited (a post's or void's: its pending transfer's,
    /// whatever `spec` says; `spec.debit_account` for `Failed`). The
    /// account lists (`get_account_transfers`) index by this.
    pub debit_account: AccountId,
    /// The account credited (as `debit_account`).
    pub credit_account: AccountId,
    /// The amount that moved or is reserved (a post's posted amount; 0 for `Failed`).
    pub amount: Amount,
    /// State as of `change_seq`.
    pub state: TransferState,
    /// The partition-wide order of stored transfers: 1, 2, 3, … over the
    /// ledger's whole life, assigned when the transfer is stored (0 for
    /// `Failed`). Unique; the cursor of `get_account_transfers` paging.
    pub ledger_seq: u64,
    /// The input that stored the transfer (a linked chain's members share
    /// the input that closed the chain).
    pub created_seq: Seq,
    /// Engine time when it was stored.
    pub created: Timestamp,
    /// The input that last changed this record (== `created_seq` unless a
    /// pending transfer was later posted, voided or expired).
    pub change_seq: Seq,
}

/// Which field a `get_account_transfers` range bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeBy {
    /// `TransferRecord::ledger_seq`.
    LedgerSeq,
    /// `TransferRecord::created` (engine time, ns).
    Time,
}

/// An account's transfers, paged: those with `lo ≤ field ≤ hi`, at most
/// `limit`, oldest first or newest first. To page on, repeat with `lo` (or,
/// newest first, `hi`) moved past the last `ledger_seq` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountFilter {
    /// The account (debit or credit side).
    pub account: AccountId,
    /// Which field `lo`/`hi` bound.
    pub by: RangeBy,
    /// Inclusive lower bound.
    pub lo: u64,
    /// Inclusive upper bound.
    pub hi: u64,
    /// Most records returned (1 ..= `ACCOUNT_TRANSFERS_LIMIT_MAX`).
    pub limit: u32,
    /// Newest (highest `ledger_seq`) first.
    pub newest_first: bool,
}

/// The most records one `get_account_transfers` returns.
pub const ACCOUNT_TRANSFERS_LIMIT_MAX: u32 = 1024;

/// A history that cannot be read or does not verify: the engine cannot
/// answer without it, so this stops the partition (never a wrong answer).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transfer history unusable: {what}")]
pub struct HistoryFault {
    /// What failed, naming the run file and the check.
    pub what: String,
}

/// Read access to installed history runs. Implemented outside the engine
/// (the server's on-disk store) or by [`MemHistory`]-like stores in tests;
/// the engine only calls it for ids and accounts its memory cannot answer.
pub trait TransferHistory: Send + std::fmt::Debug {
    /// The newest record of `id` in installed runs, if any. (A store may
    /// also answer from runs written but not yet installed — a replay after
    /// a restart meets those: the engine ignores any record whose
    /// `change_seq` is past its installed `through_seq`.)
    fn get(&self, id: TransferId) -> Result<Option<TransferRecord>, HistoryFault>;

    /// The records of `filter.account` (as debit or credit account) in
    /// installed runs that match the filter's range, in the filter's order
    /// (by `ledger_seq`); calls `each` per record until it returns `false`
    /// or the records run out. Each transfer once, in its newest installed
    /// state; `Failed` records never. (The engine merges these with its
    /// memory, where a newer state of the same transfer may still live.)
    fn account(
        &self,
        filter: &AccountFilter,
        each: &mut dyn FnMut(&TransferRecord) -> bool,
    ) -> Result<(), HistoryFault>;

    /// Whether the run `run` with content checksum `checksum` is installed
    /// (or can be installed now): `InstallHistory` is applied only if so.
    fn has_run(&self, run: u64, checksum: u128) -> Result<bool, HistoryFault>;
}

// ----- canonical record encoding (shared with the on-disk store) ----------

/// Bytes of one canonically encoded [`TransferRecord`].
///
/// Layout (little-endian): 0 id u128, 16 spec.debit_account u128, 32
/// spec.credit_account u128, 48 spec.amount u128, 64 code u16, 66 flags u16,
/// 68 pending_id u128, 84 timeout_ns u64, 92 debit_account u128, 108
/// credit_account u128, 124 amount u128, 140 state u8 (0 posted, 1 pending,
/// 2 pending_posted, 3 pending_voided, 4 pending_expired, 5 resolution,
/// 6 failed), 141 failure code u16 (`LedgerError::code`, 0 unless failed),
/// 143 zero, 144 ledger_seq u64, 152 created_seq u64, 160 created u64,
/// 168 change_seq u64.
pub const RECORD_LEN: usize = 176;

/// Why bytes are not a canonical record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordDecodeError {
    /// The state byte is not a known state.
    #[error("transfer record: unknown state byte {0}")]
    BadState(u8),
    /// A failed record's code is not a ledger code (or a non-failed record has one).
    #[error("transfer record: bad failure code {0}")]
    BadFailure(u16),
    /// The padding byte is not zero.
    #[error("transfer record: padding byte is not zero")]
    NonZeroPadding,
}

fn state_code(s: TransferState) -> (u8, u16) {
    match s {
        TransferState::Posted => (0, 0),
        TransferState::Pending => (1, 0),
        TransferState::PendingPosted => (2, 0),
        TransferState::PendingVoided => (3, 0),
        TransferState::PendingExpired => (4, 0),
        TransferState::Resolution => (5, 0),
        TransferState::Failed(e) => (6, e.code()),
    }
}

fn state_of(b: u8, code: u16) -> Result<TransferState, RecordDecodeError> {
    let plain = match b {
        0 => TransferState::Posted,
        1 => TransferState::Pending,
        2 => TransferState::PendingPosted,
        3 => TransferState::PendingVoided,
        4 => TransferState::PendingExpired,
        5 => TransferState::Resolution,
        6 => {
            return LedgerError::from_code(code)
                .map(TransferState::Failed)
                .ok_or(RecordDecodeError::BadFailure(code))
        }
        _ => return Err(RecordDecodeError::BadState(b)),
    };
    if code != 0 {
        return Err(RecordDecodeError::BadFailure(code));
    }
    Ok(plain)
}

/// Words (little-endian u64s) of one canonical record.
pub const RECORD_WORDS: usize = RECORD_LEN / 8;

/// `r`'s canonical bytes (see [`RECORD_LEN`]) as little-endian u64 words,
/// built in registers. Why words: the fields from offset 64 on sit 4 bytes
/// off any 8-byte boundary, and writing them field by field into a byte
/// buffer that xxh3 then reads 8 bytes at a time stalls every load on
/// store forwarding (the ledger bench's profile blamed ~10 % on it). Every
/// word written whole, and read back whole, forwards.
#[inline]
pub fn record_words(r: &TransferRecord) -> [u64; RECORD_WORDS] {
    let s = &r.spec;
    let (state, code) = state_code(r.state);
    let q32 = |x: u128| {
        [
            x as u32,
            (x >> 32) as u32,
            (x >> 64) as u32,
            (x >> 96) as u32,
        ]
    };
    let w64 = |x: u128| [x as u64, (x >> 64) as u64];
    // Bytes 64..144 as twenty u32s: code|flags, pending_id, timeout,
    // debit, credit, amount, state|failure code|zero.
    let mut q = [0u32; 20];
    q[0] = s.code as u32 | (s.flags.0 as u32) << 16;
    q[1..5].copy_from_slice(&q32(s.pending_id.0));
    q[5..7].copy_from_slice(&[s.timeout_ns as u32, (s.timeout_ns >> 32) as u32]);
    q[7..11].copy_from_slice(&q32(r.debit_account.0));
    q[11..15].copy_from_slice(&q32(r.credit_account.0));
    q[15..19].copy_from_slice(&q32(r.amount.0));
    q[19] = state as u32 | (code as u32) << 8;
    let mut w = [0u64; RECORD_WORDS];
    w[0..2].copy_from_slice(&w64(s.id.0));
    w[2..4].copy_from_slice(&w64(s.debit_account.0));
    w[4..6].copy_from_slice(&w64(s.credit_account.0));
    w[6..8].copy_from_slice(&w64(s.amount.0));
    for k in 0..10 {
        w[8 + k] = q[2 * k] as u64 | (q[2 * k + 1] as u64) << 32;
    }
    w[18] = r.ledger_seq;
    w[19] = r.created_seq.0;
    w[20] = r.created.0;
    w[21] = r.change_seq.0;
    w
}

/// Writes `r`'s canonical bytes (see [`RECORD_LEN`]), one whole word at a
/// time (see [`record_words`]).
#[inline]
pub fn encode_record(r: &TransferRecord, out: &mut [u8; RECORD_LEN]) {
    for (chunk, w) in out.chunks_exact_mut(8).zip(record_words(r)) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
}

/// Reads a record written by [`encode_record`]; only canonical bytes decode,
/// so `encode_record(decode_record(b)) == b`.
pub fn decode_record(b: &[u8; RECORD_LEN]) -> Result<TransferRecord, RecordDecodeError> {
    let u128_at = |at: usize| u128::from_le_bytes(b[at..at + 16].try_into().expect("16 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    if b[143] != 0 {
        return Err(RecordDecodeError::NonZeroPadding);
    }
    Ok(TransferRecord {
        spec: TransferSpec {
            id: TransferId(u128_at(0)),
            debit_account: AccountId(u128_at(16)),
            credit_account: AccountId(u128_at(32)),
            amount: Amount(u128_at(48)),
            code: u16_at(64),
            flags: crate::command::TransferFlags(u16_at(66)),
            pending_id: TransferId(u128_at(68)),
            timeout_ns: u64_at(84),
        },
        debit_account: AccountId(u128_at(92)),
        credit_account: AccountId(u128_at(108)),
        amount: Amount(u128_at(124)),
        state: state_of(b[140], u16_at(141))?,
        ledger_seq: u64_at(144),
        created_seq: Seq(u64_at(152)),
        created: Timestamp(u64_at(160)),
        change_seq: Seq(u64_at(168)),
    })
}

/// A run's content checksum: xxh3-128 over its records' canonical bytes in
/// (id, change_seq) order. Sorts `records` in place (the order is part of
/// the definition, so any store computes the same value).
pub fn run_checksum(records: &mut [TransferRecord]) -> u128 {
    records.sort_unstable_by_key(|r| (r.spec.id.0, r.change_seq.0));
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = [0u8; RECORD_LEN];
    for r in records.iter() {
        encode_record(r, &mut buf);
        h.update(&buf);
    }
    h.digest128()
}

// ----- an in-memory history (tests, scripts, benches) ----------------------

/// One stored run.
#[derive(Debug)]
struct MemRun {
    run: u64,
    checksum: u128,
}

#[derive(Debug, Default)]
struct MemRuns {
    runs: Vec<MemRun>,
    /// Newest record per id.
    by_id: BTreeMap<u128, TransferRecord>,
    /// (account, ledger_seq) → id, for both sides of every stored transfer.
    by_account: BTreeMap<(u128, u64), u128>,
}

/// A [`TransferHistory`] kept in memory: the runs a [`HistoryCutter`] cut.
/// A cheap handle (clones share the runs), so a test can keep one while the
/// engine owns another. Its lock is never contended in its intended use (the
/// engine and the cutter on one thread); a server uses the on-disk store.
#[derive(Clone, Debug, Default)]
#[allow(clippy::disallowed_types)] // see the type's doc: never contended
pub struct MemHistory(Arc<Mutex<MemRuns>>);

impl MemHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    #[allow(clippy::disallowed_types, clippy::disallowed_methods)]
    fn inner(&self) -> std::sync::MutexGuard<'_, MemRuns> {
        // A poisoned lock means a panic elsewhere already failed the test.
        self.0.lock().expect("MemHistory lock poisoned")
    }

    /// Stores a run (records in any order) and returns its checksum.
    pub fn add_run(&self, run: u64, records: &mut [TransferRecord]) -> u128 {
        let checksum = run_checksum(records);
        let mut m = self.inner();
        for r in records.iter() {
            let newer = m
                .by_id
                .get(&r.spec.id.0)
                .is_none_or(|old| old.change_seq <= r.change_seq);
            if !newer {
                continue;
            }
            if !matches!(r.state, TransferState::Failed(_)) {
                for a in [r.debit_account, r.credit_account] {
                    m.by_account.insert((a.0, r.ledger_seq), r.spec.id.0);
                }
            }
            m.by_id.insert(r.spec.id.0, *r);
        }
        m.runs.push(MemRun { run, checksum });
        checksum
    }

    /// Number of distinct transfer ids held (failed ids included).
    pub fn len(&self) -> usize {
        self.inner().by_id.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of runs.
    pub fn runs(&self) -> usize {
        self.inner().runs.len()
    }
}

/// Whether `r` lies in the filter's range.
pub fn filter_admits(f: &AccountFilter, r: &TransferRecord) -> bool {
    let v = match f.by {
        RangeBy::LedgerSeq => r.ledger_seq,
        RangeBy::Time => r.created.0,
    };
    f.lo <= v && v <= f.hi && (r.debit_account == f.account || r.credit_account == f.account)
}

impl TransferHistory for MemHistory {
    fn get(&self, id: TransferId) -> Result<Option<TransferRecord>, HistoryFault> {
        Ok(self.inner().by_id.get(&id.0).copied())
    }

    fn account(
        &self,
        filter: &AccountFilter,
        each: &mut dyn FnMut(&TransferRecord) -> bool,
    ) -> Result<(), HistoryFault> {
        let m = self.inner();
        let (lo, hi) = match filter.by {
            RangeBy::LedgerSeq => (filter.lo, filter.hi),
            RangeBy::Time => (0, u64::MAX),
        };
        if lo > hi {
            return Ok(());
        }
        let range = m
            .by_account
            .range((filter.account.0, lo)..=(filter.account.0, hi));
        let mut visit = |id: &u128| {
            let r = &m.by_id[id];
            !filter_admits(filter, r) || each(r)
        };
        if filter.newest_first {
            for (_, id) in range.rev() {
                if !visit(id) {
                    break;
                }
            }
        } else {
            for (_, id) in range {
                if !visit(id) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn has_run(&self, run: u64, checksum: u128) -> Result<bool, HistoryFault> {
        Ok(self
            .inner()
            .runs
            .iter()
            .any(|r| r.run == run && r.checksum == checksum))
    }
}

/// Cuts the engine's change stream into runs of a [`MemHistory`]: feed it
/// every input's `Events::changes()`, then `cut(through_seq)` stores the run
/// of every change at or before `through_seq` not yet cut and returns
/// `(run, checksum)` for a `Command::InstallHistory`.
#[derive(Debug)]
pub struct HistoryCutter {
    history: MemHistory,
    pending: Vec<TransferRecord>,
    last_run: u64,
}

impl HistoryCutter {
    /// A cutter storing into `history`, continuing after run `last_run`
    /// (0 for a fresh history).
    pub fn new(history: MemHistory, last_run: u64) -> Self {
        HistoryCutter {
            history,
            pending: Vec::new(),
            last_run,
        }
    }

    /// Takes one input's changes (in input order).
    pub fn feed(&mut self, changes: &[TransferRecord]) {
        self.pending.extend_from_slice(changes);
    }

    /// Changes fed and not yet cut.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Makes the next run of every fed change with `change_seq ≤
    /// through_seq` and stores it; returns `(run, checksum)`.
    pub fn cut(&mut self, through_seq: Seq) -> (u64, u128) {
        // Changes arrive in seq order, so the run is a prefix.
        let n = self
            .pending
            .partition_point(|r| r.change_seq <= through_seq);
        let mut run: Vec<TransferRecord> = self.pending.drain(..n).collect();
        self.last_run += 1;
        let checksum = self.history.add_run(self.last_run, &mut run);
        (self.last_run, checksum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::TransferFlags;
    use crate::rng::SplitMix64;

    /// The layout of `RECORD_LEN`, written field by field at its offsets:
    /// the word-built encoding must produce exactly these bytes.
    fn encode_by_field(r: &TransferRecord) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        let s = &r.spec;
        let (state, code) = state_code(r.state);
        b[0..16].copy_from_slice(&s.id.0.to_le_bytes());
        b[16..32].copy_from_slice(&s.debit_account.0.to_le_bytes());
        b[32..48].copy_from_slice(&s.credit_account.0.to_le_bytes());
        b[48..64].copy_from_slice(&s.amount.0.to_le_bytes());
        b[64..66].copy_from_slice(&s.code.to_le_bytes());
        b[66..68].copy_from_slice(&s.flags.0.to_le_bytes());
        b[68..84].copy_from_slice(&s.pending_id.0.to_le_bytes());
        b[84..92].copy_from_slice(&s.timeout_ns.to_le_bytes());
        b[92..108].copy_from_slice(&r.debit_account.0.to_le_bytes());
        b[108..124].copy_from_slice(&r.credit_account.0.to_le_bytes());
        b[124..140].copy_from_slice(&r.amount.0.to_le_bytes());
        b[140] = state;
        b[141..143].copy_from_slice(&code.to_le_bytes());
        b[144..152].copy_from_slice(&r.ledger_seq.to_le_bytes());
        b[152..160].copy_from_slice(&r.created_seq.0.to_le_bytes());
        b[160..168].copy_from_slice(&r.created.0.to_le_bytes());
        b[168..176].copy_from_slice(&r.change_seq.0.to_le_bytes());
        b
    }

    fn random_record(rng: &mut SplitMix64) -> TransferRecord {
        let mut u128 = || (rng.next_u64() as u128) << 64 | rng.next_u64() as u128;
        let ids = [
            u128(),
            u128(),
            u128(),
            u128(),
            u128(),
            u128(),
            u128(),
            u128(),
        ];
        let words = [
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
        ];
        let states = [
            TransferState::Posted,
            TransferState::Pending,
            TransferState::PendingPosted,
            TransferState::PendingVoided,
            TransferState::PendingExpired,
            TransferState::Resolution,
            TransferState::Failed(LedgerError::ExceedsCredits),
            TransferState::Failed(LedgerError::PendingTransferNotFound),
        ];
        TransferRecord {
            spec: TransferSpec {
                id: TransferId(ids[0]),
                debit_account: AccountId(ids[1]),
                credit_account: AccountId(ids[2]),
                amount: Amount(ids[3]),
                code: rng.next_u64() as u16,
                flags: TransferFlags(rng.next_u64() as u16),
                pending_id: TransferId(ids[4]),
                timeout_ns: rng.next_u64(),
            },
            debit_account: AccountId(ids[5]),
            credit_account: AccountId(ids[6]),
            amount: Amount(ids[7]),
            state: rng.pick(&states),
            ledger_seq: words[0],
            created_seq: Seq(words[1]),
            created: Timestamp(words[2]),
            change_seq: Seq(words[3]),
        }
    }

    #[test]
    fn word_encoding_is_the_field_layout() {
        let seed = 0x5EED_0014;
        eprintln!("seed {seed:#x}");
        let mut rng = SplitMix64::new(seed);
        for _ in 0..2_000 {
            let r = random_record(&mut rng);
            let mut b = [0u8; RECORD_LEN];
            encode_record(&r, &mut b);
            assert_eq!(b, encode_by_field(&r), "{r:?}");
            assert_eq!(decode_record(&b), Ok(r));
        }
    }
}
