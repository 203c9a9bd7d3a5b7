//! The ledger's side of the transfer history: finding a transfer in memory
//! or in installed runs, installing runs, evicting installed records from
//! memory, and the transfer queries (lookup by id, an account's transfers).
//!
//! Invariants: a record leaves memory only once an installed run covers its
//! newest change (`change_seq ≤ through_seq`) and it is not pending, so every
//! answer is the same whether it comes from memory or from history; a
//! history that cannot answer is a panic (fail stop), never a wrong answer;
//! with nothing installed, no lookup makes a call into the history; eviction
//! does a bounded amount of work per input.

use crate::command::Actor;
use crate::event::*;
use crate::history::{
    filter_admits, AccountFilter, TransferRecord, ACCOUNT_TRANSFERS_LIMIT_MAX, RECORD_LEN,
};
use crate::ledger::{Ledger, TState, EVICT_ON_DEMAND, EVICT_ON_INSTALL};
use crate::transfers::{NIL, UNLINKED};
use crate::types::*;
use crate::BrokenInvariant;

/// Where a transfer id was found.
pub(crate) enum Found {
    /// In memory, in this slot.
    Hot(u32),
    /// Only in history (read-only: never pending).
    Cold(TransferRecord),
}

/// Whether a record the history holds is part of the state as of the
/// installed run. A record not in memory never changes again (only pending
/// transfers change, and they stay in memory), so its newest version is
/// either installed or from the future: a run written past the installed one
/// (a replay after a restart meets those) describes transfers this state has
/// not made yet, and is ignored.
fn installed_by(r: &TransferRecord, through: Seq) -> bool {
    r.change_seq <= through
}

/// A record's term in `Ledger::records_hash`.
pub(crate) fn record_hash(r: &TransferRecord) -> u128 {
    let mut b = [0u8; RECORD_LEN];
    crate::history::encode_record(r, &mut b);
    xxhash_rust::xxh3::xxh3_128(&b)
}

impl Ledger {
    /// The transfer (or remembered failure) with this id: memory first,
    /// then — only once something is installed — the history.
    #[inline]
    pub(crate) fn find(&self, id: TransferId) -> Option<Found> {
        if let Some(slot) = self.hot.get(id) {
            return Some(Found::Hot(slot));
        }
        let (_, through, _) = self.installed?;
        let h = self
            .history
            .as_ref()
            .expect("installed runs imply a history");
        match h.get(id) {
            Ok(r) => r.filter(|r| installed_by(r, through)).map(Found::Cold),
            Err(fault) => panic!("{fault}"),
        }
    }

    pub(crate) fn found_record(&self, f: &Found) -> TransferRecord {
        match f {
            Found::Hot(slot) => self.hot.slots[*slot as usize].rec,
            Found::Cold(r) => *r,
        }
    }

    /// Whether a slot can be had, evicting a few installed records if none
    /// is free. `false` is the live limit `capacity_exceeded`: memory is
    /// full of pending transfers and records no installed run covers yet.
    pub(crate) fn reserve_slot(&mut self) -> bool {
        if !self.hot.has_free() {
            self.evict_some(EVICT_ON_DEMAND);
        }
        self.hot.has_free()
    }

    /// Looks at up to `budget` entries at the head of the eviction ring and
    /// frees the records they name that an installed run covers. A pending
    /// record's entry is dropped: it re-enters the ring when resolved.
    pub(crate) fn evict_some(&mut self, budget: usize) {
        let Some((_, through, _)) = self.installed else {
            return;
        };
        for _ in 0..budget {
            let Some(&(slot, change_seq)) = self.hot.ring.front() else {
                return;
            };
            if change_seq > through {
                return;
            }
            self.hot.ring.pop_front();
            let t = &self.hot.slots[slot as usize];
            if t.is_free() || t.rec.change_seq != change_seq || t.rec.state == TState::Pending {
                continue; // stale (changed since) or pending
            }
            if !matches!(t.rec.state, TState::Failed(_)) {
                self.hot.unlink(slot);
            }
            self.hot.release(slot);
        }
    }

    /// `Command::InstallHistory`: the next run, through an earlier input,
    /// that the attached history holds with this checksum.
    pub(crate) fn install_history(
        &mut self,
        run: u64,
        through_seq: Seq,
        checksum: u128,
        seq: Seq,
        out: &mut Events,
    ) {
        let (last_run, last_through) = self.installed.map_or((0, Seq(0)), |(r, t, _)| (r, t));
        // Strictly before this input: this input's own expiries are in no run.
        let in_order =
            run == last_run.wrapping_add(1) && through_seq > last_through && through_seq < seq;
        let held = in_order
            && self
                .history
                .as_ref()
                .is_some_and(|h| h.has_run(run, checksum).unwrap_or_else(|f| panic!("{f}")));
        if !held {
            return out.push(Event::Rejected {
                target: RejectTarget::HistoryRun(run),
                reason: RejectReason::HistoryRunRejected,
            });
        }
        self.installed = Some((run, through_seq, checksum));
        self.evict_some(EVICT_ON_INSTALL);
        out.push(Event::HistoryInstalled { run, through_seq });
    }

    pub(crate) fn installed(&self) -> Option<(u64, Seq, u128)> {
        self.installed
    }

    /// Every hot record changed after `after`, by (change_seq, ledger_seq).
    pub(crate) fn history_tail(&self, after: Seq) -> Vec<TransferRecord> {
        let mut v: Vec<TransferRecord> = self
            .hot
            .slots
            .iter()
            .filter(|t| !t.is_free() && t.rec.change_seq > after)
            .map(|t| t.rec)
            .collect();
        v.sort_by_key(|r| (r.change_seq, r.ledger_seq, r.spec.id.0));
        v
    }

    /// A stored transfer (not a remembered failure), as an admin sees it.
    pub(crate) fn visible_record(&self, id: TransferId) -> Option<TransferRecord> {
        let r = self.found_record(&self.find(id)?);
        (!matches!(r.state, TState::Failed(_))).then_some(r)
    }

    /// Whether the actor owns one side of the transfer (by the accounts'
    /// current owners), or is an admin.
    fn may_see(&self, actor: &Actor, r: &TransferRecord) -> bool {
        matches!(actor, Actor::Admin)
            || [r.debit_account, r.credit_account].iter().any(|&a| {
                self.account_slot(a)
                    .is_some_and(|s| self.may_read(actor, s))
            })
    }

    /// `Command::LookupTransfer`: one row, or `transfer_not_found` for an
    /// absent id, a remembered failure and a transfer the actor may not see
    /// alike (a stranger learns nothing).
    pub(crate) fn query_transfer(&self, id: TransferId, actor: &Actor, out: &mut Events) {
        match self.visible_record(id) {
            Some(r) if self.may_see(actor, &r) => {
                let start = out.push_row(r);
                out.push(Event::Transfers {
                    rows: RecordRange { start, len: 1 },
                    more: false,
                });
            }
            _ => out.push(Event::Rejected {
                target: RejectTarget::Transfer(id),
                reason: RejectReason::TransferNotFound,
            }),
        }
    }

    /// `Command::GetAccountTransfers`: `account_not_found`, `not_authorized`,
    /// `invalid_filter`, then up to `limit` rows merged from memory and
    /// history by `ledger_seq` (memory wins for a transfer in both).
    pub(crate) fn query_account_transfers(
        &self,
        f: &AccountFilter,
        actor: &Actor,
        out: &mut Events,
    ) {
        let reject = |reason| Event::Rejected {
            target: RejectTarget::Account(f.account),
            reason,
        };
        let Some(acct) = self.account_slot(f.account) else {
            return out.push(reject(RejectReason::AccountNotFound));
        };
        if !self.may_read(actor, acct) {
            return out.push(reject(RejectReason::NotAuthorized));
        }
        if f.limit == 0 || f.limit > ACCOUNT_TRANSFERS_LIMIT_MAX || f.lo > f.hi {
            return out.push(reject(RejectReason::InvalidFilter));
        }
        let start = out.rows_len();
        let mut m = Merge {
            ledger: self,
            f,
            through: self.installed.map_or(Seq(0), |(_, t, _)| t),
            next: [0, 1].map(|side| {
                let [head, tail] = self.hot.list(acct, side);
                if f.newest_first {
                    tail
                } else {
                    head
                }
            }),
            out,
            n: 0,
            more: false,
        };
        let go_on = match (self.installed, self.history.as_ref()) {
            (Some(_), Some(h)) => {
                let mut each = |r: &TransferRecord| m.cold(r);
                h.account(f, &mut each)
                    .unwrap_or_else(|fault| panic!("{fault}"));
                !m.more
            }
            _ => true,
        };
        if go_on {
            m.hot_until(None);
        }
        let (n, more) = (m.n, m.more);
        out.push(Event::Transfers {
            rows: RecordRange { start, len: n },
            more,
        });
    }
}

/// The merge of an account's in-memory lists (debit side and credit side,
/// each in `ledger_seq` order) with the history's records.
struct Merge<'a> {
    ledger: &'a Ledger,
    f: &'a AccountFilter,
    /// The installed run's last input (history records past it are ignored).
    through: Seq,
    /// Next slot on each side's list (`NIL` when done).
    next: [u32; 2],
    out: &'a mut Events,
    n: u32,
    more: bool,
}

impl Merge<'_> {
    /// Whether `a` comes before `b` in the query's order.
    fn before(&self, a: u64, b: u64) -> bool {
        if self.f.newest_first {
            a > b
        } else {
            a < b
        }
    }

    /// The next in-memory record in order (not consumed).
    fn peek(&self) -> Option<(usize, u32)> {
        let seq = |s: u32| self.ledger.hot.slots[s as usize].rec.ledger_seq;
        match self.next {
            [NIL, NIL] => None,
            [a, NIL] => Some((0, a)),
            [NIL, b] => Some((1, b)),
            [a, b] => Some(if self.before(seq(a), seq(b)) {
                (0, a)
            } else {
                (1, b)
            }),
        }
    }

    fn advance(&mut self, side: usize, slot: u32) {
        let dir = if self.f.newest_first { 0 } else { 1 };
        self.next[side] = self.ledger.hot.links[slot as usize][side][dir];
    }

    /// Adds a row; `false` once the limit is reached (and one more exists).
    fn emit(&mut self, r: &TransferRecord) -> bool {
        if self.n == self.f.limit {
            self.more = true;
            return false;
        }
        self.out.push_row(*r);
        self.n += 1;
        true
    }

    /// Emits the in-memory records that come before `bound` (all if `None`);
    /// `false` once the limit is reached.
    fn hot_until(&mut self, bound: Option<u64>) -> bool {
        while let Some((side, slot)) = self.peek() {
            let r = self.ledger.hot.slots[slot as usize].rec;
            if bound.is_some_and(|b| !self.before(r.ledger_seq, b)) {
                return true;
            }
            self.advance(side, slot);
            if filter_admits(self.f, &r) && !self.emit(&r) {
                return false;
            }
        }
        true
    }

    /// One record from history: the in-memory records before it first; it
    /// is skipped if memory holds the same transfer (a newer state).
    fn cold(&mut self, r: &TransferRecord) -> bool {
        if !self.hot_until(Some(r.ledger_seq)) {
            return false;
        }
        if self.ledger.hot.get(r.spec.id).is_some()
            || !filter_admits(self.f, r)
            || !installed_by(r, self.through)
        {
            return true;
        }
        self.emit(r)
    }
}

impl Ledger {
    /// The hot store's structure: every live slot indexed under its id,
    /// every stored transfer on exactly its two accounts' lists in
    /// `ledger_seq` order, the expiry heap exactly the pending transfers
    /// with a timeout, ordered.
    pub(crate) fn validate_hot(&self) -> Result<(), BrokenInvariant> {
        let h = &self.hot;
        let mut live = 0usize;
        let mut linked = 0usize;
        let mut timed = 0usize;
        for (slot, t) in h.slots.iter().enumerate() {
            if t.is_free() {
                if h.links_of(slot as u32) != UNLINKED {
                    return Err(broken!("free slot {slot} on a list"));
                }
                continue;
            }
            live += 1;
            let r = &t.rec;
            if h.get(r.spec.id) != Some(slot as u32) {
                return Err(broken!("transfer {} not indexed", r.spec.id));
            }
            if r.ledger_seq > self.ledger_seq {
                return Err(broken!("transfer {}: ledger_seq ahead", r.spec.id));
            }
            if !matches!(r.state, TState::Failed(_)) {
                linked += 1;
            } else if h.links_of(slot as u32) != UNLINKED {
                return Err(broken!("remembered failure {} on a list", r.spec.id));
            }
            if r.state == TState::Pending && r.spec.timeout_ns > 0 {
                timed += 1;
                let p = t.heap_pos as usize;
                if h.heap.get(p).map(|e| e.2) != Some(slot as u32) {
                    return Err(broken!(
                        "pending transfer {} not in the expiry heap",
                        r.spec.id
                    ));
                }
            } else if t.heap_pos != NIL {
                return Err(broken!("transfer {} in the expiry heap", r.spec.id));
            }
        }
        if live != h.len() || timed != h.heap.len() {
            return Err("hot store counts disagree".into());
        }
        for i in 1..h.heap.len() {
            if h.heap[i] < h.heap[(i - 1) / 2] {
                return Err("expiry heap out of order".into());
            }
        }
        let mut on_lists = 0usize;
        for acct in 0..h.heads.len() as u32 {
            for side in 0..2 {
                let [mut s, tail] = h.list(acct, side);
                let (mut prev, mut last_seq) = (NIL, 0u64);
                while s != NIL {
                    let t = &h.slots[s as usize];
                    let on = if side == 0 { t.debit } else { t.credit };
                    let link = h.links_of(s)[side];
                    if t.is_free() || on != acct || link[0] != prev {
                        return Err(broken!("account list of slot {acct} broken at {s}"));
                    }
                    if t.rec.ledger_seq <= last_seq {
                        return Err(broken!("account list of slot {acct} out of order"));
                    }
                    (prev, last_seq) = (s, t.rec.ledger_seq);
                    on_lists += 1;
                    s = link[1];
                }
                if prev != tail {
                    return Err(broken!("account list of slot {acct}: bad tail"));
                }
            }
        }
        if on_lists != 2 * linked {
            return Err("a stored transfer is missing from its account lists".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::command::*;
    use crate::event::Event;
    use crate::types::*;
    use crate::{Engine, EngineConfig};

    fn open(id: u128, flags: u16) -> Command {
        Command::OpenAccount(AccountSpec {
            id: AccountId(id),
            owner: OwnerId(id as u64),
            asset: Asset::from_str_code("USD").expect("asset"),
            flags: AccountFlags(flags),
        })
    }

    fn transfer(
        id: u128,
        (d, c): (u128, u128),
        amount: u128,
        flags: u16,
        pending: u128,
    ) -> Command {
        Command::Transfer {
            transfer: TransferSpec {
                id: TransferId(id),
                debit_account: AccountId(d),
                credit_account: AccountId(c),
                amount: Amount(amount),
                code: 1,
                flags: TransferFlags(flags),
                pending_id: TransferId(pending),
                timeout_ns: if flags & TransferFlags::PENDING != 0 && id == 12 {
                    50
                } else {
                    0
                },
            },
            batch_end: true,
            actor: Actor::Admin,
        }
    }

    fn apply(e: &mut Engine, seq: u64, now: u64, command: Command) -> Vec<Event> {
        let mut out = e.new_events();
        let input = Input {
            seq: Seq(seq),
            now: Timestamp(now),
            command,
        };
        e.apply(&input, &mut out);
        out.as_slice().to_vec()
    }

    /// Pending transfers resolved (post, void) and expired after a snapshot
    /// round trip, which carries no remembered records-hash terms (the
    /// restored engine recomputes them), reach the hash and events of the
    /// engine that remembered them, and of a fresh replay.
    #[test]
    fn pending_terms_survive_a_snapshot_round_trip() {
        use TransferFlags as F;
        let before = [
            open(1, 0),
            open(2, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            transfer(10, (1, 2), 1_000, 0, 0),
            transfer(11, (2, 1), 100, F::PENDING, 0),
            transfer(12, (2, 1), 200, F::PENDING, 0), // timeout 50 ns
            transfer(13, (2, 1), 300, F::PENDING, 0),
        ];
        let after = [
            (20, transfer(20, (0, 0), 60, F::POST_PENDING, 11)),
            (21, transfer(21, (0, 0), 0, F::VOID_PENDING, 13)),
            (200, transfer(22, (2, 1), 5, 0, 0)), // expires 12 first
        ];
        let cfg = EngineConfig::small();
        let mut a = Engine::new(cfg);
        for (i, c) in before.iter().enumerate() {
            let ev = apply(&mut a, i as u64 + 1, 10, *c);
            assert!(!matches!(ev[0], Event::TransferRejected { .. }), "{ev:?}");
        }
        let mut b = Engine::restore(cfg, &a.snapshot()).expect("restore");
        let mut fresh = Engine::new(cfg);
        for (i, c) in before.iter().enumerate() {
            apply(&mut fresh, i as u64 + 1, 10, *c);
        }
        for (k, (now, c)) in after.iter().enumerate() {
            let seq = (before.len() + k) as u64 + 1;
            let ev = apply(&mut a, seq, *now, *c);
            assert!(
                ev.iter()
                    .all(|e| !matches!(e, Event::TransferRejected { .. })),
                "{ev:?}"
            );
            assert_eq!(apply(&mut b, seq, *now, *c), ev);
            assert_eq!(apply(&mut fresh, seq, *now, *c), ev);
            assert_eq!(b.state_hash(), a.state_hash(), "after input {seq}");
            assert_eq!(fresh.state_hash(), a.state_hash(), "after input {seq}");
        }
        for e in [&a, &b, &fresh] {
            let state = e.lookup_transfer(TransferId(12)).map(|r| r.state);
            assert_eq!(state, Some(crate::history::TransferState::PendingExpired));
        }
        let expired = apply(
            &mut a,
            100,
            300,
            Command::Time {
                now: Timestamp(300),
            },
        );
        assert!(expired.is_empty(), "12 expired already: {expired:?}");
        a.validate().expect("validate");
        b.validate().expect("validate");
    }
}
