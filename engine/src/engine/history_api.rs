//! The transfer-history façade: `Engine` methods that attach the history
//! store and read transfers through the ledger.
//!
//! These are for the runtime's start-up, scripts and tests; the ones that
//! return `Vec` allocate. None changes the state hash.

use super::*;

impl Engine {
    /// Attaches the store of installed history runs (replacing any). Until
    /// one is attached nothing can be installed (`install_history` is
    /// rejected) and every transfer stays in memory, as before history
    /// existed. Attach it before replaying a journal that installed runs.
    pub fn attach_history(&mut self, h: Box<dyn TransferHistory>) {
        self.ledger.history = Some(h);
    }

    /// The last installed run: (run, through_seq, checksum).
    pub fn installed_history(&self) -> Option<(u64, Seq, u128)> {
        self.ledger.installed()
    }

    /// Every in-memory transfer record changed after input `after`, sorted
    /// by (change_seq, ledger_seq): what a history writer re-seeds from after
    /// a restart. Startup only (allocates).
    pub fn history_tail(&self, after: Seq) -> Vec<TransferRecord> {
        self.ledger.history_tail(after)
    }

    /// Transfer records (and remembered failed ids) held in memory now:
    /// the live part of the ledger, at most `transfers_max`.
    pub fn transfers_in_memory(&self) -> usize {
        self.ledger.hot.len()
    }

    /// Whether the transfer (or failed id) `id` is held in memory now (not
    /// only in history).
    pub fn transfer_in_memory(&self, id: TransferId) -> bool {
        self.ledger.hot.get(id).is_some()
    }

    /// The transfer `id` as an admin would see it (memory, then history).
    pub fn lookup_transfer(&self, id: TransferId) -> Option<TransferRecord> {
        self.ledger.visible_record(id)
    }

    /// An account's transfers as an admin's `GetAccountTransfers` would
    /// list them (allocates: scripts and tests), and whether more match.
    pub fn account_transfers(&self, filter: &AccountFilter) -> (Vec<TransferRecord>, bool) {
        let mut out = Events::with_capacities(1, 0, ACCOUNT_TRANSFERS_LIMIT_MAX as usize, 0);
        self.ledger
            .query_account_transfers(filter, &Actor::Admin, &mut out);
        match out.as_slice() {
            [Event::Transfers { rows, more }] => (out.rows(*rows).to_vec(), *more),
            _ => (Vec::new(), false),
        }
    }
}
