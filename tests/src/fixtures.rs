//! Small value builders the ledger tests share.

use engine::{AccountId, Amount, TransferFlags, TransferId, TransferSpec};

/// A plain (posted, unlinked, code 1) transfer of `amount` from account `dr`
/// to account `cr`.
pub fn plain_transfer(id: u128, dr: u128, cr: u128, amount: u128) -> TransferSpec {
    TransferSpec {
        id: TransferId(id),
        debit_account: AccountId(dr),
        credit_account: AccountId(cr),
        amount: Amount(amount),
        code: 1,
        flags: TransferFlags(0),
        pending_id: TransferId(0),
        timeout_ns: 0,
    }
}
