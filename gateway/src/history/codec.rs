//! Stand-in for the engine's canonical record encoding
//! (`engine::history::{encode_record, decode_record, RECORD_LEN}`), used only
//! until that interface lands on this branch; then this file goes and
//! `format.rs` imports the engine's (one copy of the encoding).
//!
//! Little-endian, fixed `RECORD_LEN` bytes; decode refuses any byte pattern
//! encode cannot produce (unknown state tag, unknown failure code, non-zero
//! padding), so a damaged record never decodes into a plausible wrong one.

use engine::command::{TransferFlags, TransferSpec};
use engine::event::LedgerError;
use engine::history::{TransferRecord, TransferState};
use engine::types::{AccountId, Amount, Seq, Timestamp, TransferId};

/// Encoded size of one record.
pub const RECORD_LEN: usize = 144;

fn state_tag(s: TransferState) -> (u8, u16) {
    match s {
        TransferState::Posted => (1, 0),
        TransferState::Pending => (2, 0),
        TransferState::PendingPosted => (3, 0),
        TransferState::PendingVoided => (4, 0),
        TransferState::PendingExpired => (5, 0),
        TransferState::Resolution => (6, 0),
        TransferState::Failed(e) => (7, e.code()),
    }
}

/// Encodes `r` canonically into `out`.
pub fn encode_record(r: &TransferRecord, out: &mut [u8; RECORD_LEN]) {
    let s = &r.spec;
    let (tag, code) = state_tag(r.state);
    let mut w = 0;
    let mut put = |b: &[u8]| {
        out[w..w + b.len()].copy_from_slice(b);
        w += b.len();
    };
    put(&s.id.0.to_le_bytes());
    put(&s.debit_account.0.to_le_bytes());
    put(&s.credit_account.0.to_le_bytes());
    put(&s.amount.0.to_le_bytes());
    put(&s.pending_id.0.to_le_bytes());
    put(&r.amount.0.to_le_bytes());
    put(&s.timeout_ns.to_le_bytes());
    put(&r.ledger_seq.to_le_bytes());
    put(&r.created_seq.0.to_le_bytes());
    put(&r.created.0.to_le_bytes());
    put(&r.change_seq.0.to_le_bytes());
    put(&s.code.to_le_bytes());
    put(&s.flags.0.to_le_bytes());
    put(&code.to_le_bytes());
    put(&[tag, 0]);
}

/// Decodes a record encoded by [`encode_record`]; `None` for bytes it
/// cannot have produced.
pub fn decode_record(b: &[u8; RECORD_LEN]) -> Option<TransferRecord> {
    let u128_at = |o: usize| u128::from_le_bytes(b[o..o + 16].try_into().expect("16 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().expect("2 bytes"));
    let code = u16_at(140);
    let state = match (b[142], code) {
        (1, 0) => TransferState::Posted,
        (2, 0) => TransferState::Pending,
        (3, 0) => TransferState::PendingPosted,
        (4, 0) => TransferState::PendingVoided,
        (5, 0) => TransferState::PendingExpired,
        (6, 0) => TransferState::Resolution,
        (7, c) => TransferState::Failed(LedgerError::from_code(c)?),
        _ => return None,
    };
    if b[143] != 0 {
        return None;
    }
    Some(TransferRecord {
        spec: TransferSpec {
            id: TransferId(u128_at(0)),
            debit_account: AccountId(u128_at(16)),
            credit_account: AccountId(u128_at(32)),
            amount: Amount(u128_at(48)),
            pending_id: TransferId(u128_at(64)),
            timeout_ns: u64_at(96),
            code: u16_at(136),
            flags: TransferFlags(u16_at(138)),
        },
        amount: Amount(u128_at(80)),
        state,
        ledger_seq: u64_at(104),
        created_seq: Seq(u64_at(112)),
        created: Timestamp(u64_at(120)),
        change_seq: Seq(u64_at(128)),
    })
}
