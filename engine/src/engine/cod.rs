//! Cancel-on-disconnect arms: which owners' orders a loss of every session
//! at once must cancel.
//!
//! A gateway arms `(session, owner)` when a session that asked for
//! cancel-on-disconnect logs in. A disconnect the gateway sees is handled by
//! the gateway (a mass cancel per owner, then a disarm: the session is
//! armed again only by its next login); what it cannot see — its own crash, or another node taking over
//! as leader — is `SessionsLost`, which the next gateway to serve issues
//! before it takes a login. Because the arms are engine state, they are in
//! the journal, the replicated log and the snapshot: the node that issues
//! `SessionsLost` knows every arm of the one that died.
//!
//! Invariants: the table is sorted by `(session, owner)` without
//! duplicates and never holds more than `COD_ARMS_MAX` entries (allocated
//! at construction; nothing allocates afterwards).

use super::*;

/// Most cancel-on-disconnect arms a partition holds: 8,192 sessions of 8
/// owners (a token names at most 8). 16 bytes each, allocated at start.
pub const COD_ARMS_MAX: usize = 1 << 16;

impl Engine {
    /// `CodArm`: arm `owner` for `session` (idempotent).
    pub(super) fn handle_cod_arm(&mut self, session: u64, owner: OwnerId, out: &mut Events) {
        let key = (session, owner.0);
        match self.cod_arms.binary_search(&key) {
            Ok(_) => {}
            Err(_) if self.cod_arms.len() >= COD_ARMS_MAX => out.push(Event::Rejected {
                target: RejectTarget::Session(session),
                reason: RejectReason::CapacityExceeded,
            }),
            Err(at) => self.cod_arms.insert(at, key),
        }
    }

    /// `CodDisarm`: forget the session's arms.
    pub(super) fn handle_cod_disarm(&mut self, session: u64) {
        self.cod_arms.retain(|&(s, _)| s != session);
    }

    /// `SessionsLost`: cancel every armed owner's live orders, owners in
    /// ascending order, each once; then forget every arm.
    pub(super) fn handle_sessions_lost(&mut self, out: &mut Events) {
        // Sorted by owner in place (the table is cleared below): no allocation.
        self.cod_arms.sort_unstable_by_key(|&(_, o)| o);
        let mut last = None;
        for i in 0..self.cod_arms.len() {
            let owner = self.cod_arms[i].1;
            if last != Some(owner) {
                last = Some(owner);
                self.handle_mass_cancel(OwnerId(owner), None, None, out);
            }
        }
        self.cod_arms.clear();
    }

    /// The armed `(session, owner)` pairs, sorted.
    pub fn cod_arms(&self) -> &[(u64, u64)] {
        &self.cod_arms
    }
}
