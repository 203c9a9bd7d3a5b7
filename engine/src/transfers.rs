//! The ledger's hot transfer store: the transfers (and remembered failed
//! ids) that live in memory, in a fixed slab of `transfers_max` slots.
//!
//! Pieces, all allocated once in `HotStore::new`:
//! - the slab (`slots`, a high-water mark plus a LIFO free list: a rolled
//!   back linked chain gives back exactly the slots it took);
//! - `index`: transfer id → slot;
//! - per-account intrusive lists (debit side and credit side) of stored
//!   transfers in `ledger_seq` order, so an account query walks only that
//!   account's records. Their links live in `links`, a 16-byte entry per
//!   slot beside the slab, not in the slot: appending writes the previous
//!   tail's `next`, a slot stored long ago, and that write is a cache miss
//!   in a 224-byte-a-slot slab but usually a hit in a 16-byte-a-slot array
//!   (the ledger bench's profile blamed it for most of `store`);
//! - `ring`: the FIFO of (slot, change_seq) in change order that eviction
//!   consumes; an entry whose slot has changed since is stale and skipped;
//! - `pending_hashes`: per slot, the records-hash term of a pending
//!   transfer as published, tagged with its `ledger_seq`, so resolving or
//!   expiring it takes its old term out of the records hash without hashing
//!   the old version again; an entry whose tag differs is not used (the
//!   term is recomputed), so a stale or missing entry (a slot reused, a
//!   restored snapshot, which does not carry them) costs time, never a
//!   wrong hash;
//! - `heap`: pending transfers with a timeout, an indexed min-heap by
//!   (deadline, ledger_seq), removed eagerly on post/void so it never holds
//!   more entries than slots.
//!
//! Invariants: a live slot has a non-zero id and is indexed under it; a free
//! slot has id 0; a slot is on its accounts' lists iff it is a stored
//! transfer (not `Failed`), and a slot on no list has `UNLINKED` links; every slot has at most two ring entries (its
//! creation and, for a pending transfer, its resolution), so the ring never
//! needs more than `2 × transfers_max`. This module decides nothing about
//! money: the ledger does.

use crate::fixed_map::FixedMap;
use crate::history::{TransferRecord, TransferState};
use crate::types::*;
use std::collections::VecDeque;

pub(crate) const NIL: u32 = u32::MAX;

/// One slab slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transfer {
    /// The record (what history will hold).
    pub(crate) rec: TransferRecord,
    /// Debit account slot (`NIL` for `Failed`).
    pub(crate) debit: u32,
    /// Credit account slot (`NIL` for `Failed`).
    pub(crate) credit: u32,
    /// Expiry deadline (pending transfers with a timeout only).
    pub(crate) deadline: Timestamp,
    /// Position in the expiry heap, `NIL` when not in it.
    pub(crate) heap_pos: u32,
}

/// A slot's `[side][prev, next]` in the side's account list (side 0
/// debit, 1 credit).
pub(crate) type Links = [[u32; 2]; 2];

/// Links of a slot on no list.
pub(crate) const UNLINKED: Links = [[NIL; 2]; 2];

impl Transfer {
    /// A slot's value with nothing linked yet.
    pub(crate) fn new(rec: TransferRecord, debit: u32, credit: u32, deadline: Timestamp) -> Self {
        Transfer {
            rec,
            debit,
            credit,
            deadline,
            heap_pos: NIL,
        }
    }

    pub(crate) fn is_free(&self) -> bool {
        self.rec.spec.id.0 == 0
    }

    pub(crate) fn free_value() -> Self {
        Transfer::new(
            TransferRecord {
                spec: crate::command::TransferSpec {
                    id: TransferId(0),
                    debit_account: AccountId(0),
                    credit_account: AccountId(0),
                    amount: Amount(0),
                    code: 0,
                    flags: crate::command::TransferFlags(0),
                    pending_id: TransferId(0),
                    timeout_ns: 0,
                },
                debit_account: AccountId(0),
                credit_account: AccountId(0),
                amount: Amount(0),
                state: TransferState::Posted,
                ledger_seq: 0,
                created_seq: Seq(0),
                created: Timestamp(0),
                change_seq: Seq(0),
            },
            NIL,
            NIL,
            Timestamp(0),
        )
    }
}

/// A heap entry: (deadline, ledger_seq, slot).
pub(crate) type HeapEntry = (Timestamp, u64, u32);

/// The hot store (see the module doc).
#[derive(Debug)]
pub(crate) struct HotStore {
    pub(crate) slots: Vec<Transfer>,
    pub(crate) free: Vec<u32>,
    pub(crate) index: FixedMap<u32>,
    /// Per slot: its account-list links; grown with the slab's high-water
    /// mark (within capacity) when a slot is first linked.
    pub(crate) links: Vec<Links>,
    /// Per slot: (ledger_seq, records-hash term as two u64 halves: 24
    /// bytes, not a u128's 32) of the pending transfer last published
    /// there; grown like `links`.
    pub(crate) pending_hashes: Vec<(u64, [u64; 2])>,
    /// Per account slot: `[side][head, tail]`; grown (within capacity) on first use.
    pub(crate) heads: Vec<[[u32; 2]; 2]>,
    pub(crate) ring: VecDeque<(u32, Seq)>,
    pub(crate) heap: Vec<HeapEntry>,
}

impl HotStore {
    pub(crate) fn new(transfers_max: usize, accounts_max: usize) -> Self {
        HotStore {
            slots: Vec::with_capacity(transfers_max),
            free: Vec::with_capacity(transfers_max),
            index: FixedMap::with_capacity_grouped(transfers_max),
            links: Vec::with_capacity(transfers_max),
            pending_hashes: Vec::with_capacity(transfers_max),
            heads: Vec::with_capacity(accounts_max),
            ring: VecDeque::with_capacity(2 * transfers_max),
            heap: Vec::with_capacity(transfers_max),
        }
    }

    pub(crate) fn prefault(&mut self) {
        crate::ledger::touch_vec_with(&mut self.slots, Transfer::free_value());
        crate::ledger::touch_vec(&mut self.free);
        crate::ledger::touch_vec_with(&mut self.links, UNLINKED);
        crate::ledger::touch_vec(&mut self.pending_hashes);
        crate::ledger::touch_vec(&mut self.heads);
        crate::ledger::touch_vec(&mut self.heap);
        let (len, cap) = (self.ring.len(), self.ring.capacity());
        self.ring.resize(cap, (NIL, Seq(0)));
        self.ring.truncate(len);
        self.index.prefault();
    }

    /// Records in memory (live slots).
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    #[inline]
    pub(crate) fn get(&self, id: TransferId) -> Option<u32> {
        self.index.get(id.0)
    }

    /// Whether a slot is free now (no eviction attempted).
    pub(crate) fn has_free(&self) -> bool {
        !self.free.is_empty() || self.slots.len() < self.slots.capacity()
    }

    /// Takes a slot for `t` and indexes it; `None` when the slab is full.
    pub(crate) fn alloc(&mut self, t: Transfer) -> Option<u32> {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = t;
                s
            }
            None if self.slots.len() < self.slots.capacity() => {
                self.slots.push(t);
                (self.slots.len() - 1) as u32
            }
            None => return None,
        };
        let ok = self.index.insert(t.rec.spec.id.0, slot);
        assert!(ok, "transfer index sized to the slab");
        Some(slot)
    }

    /// Frees a slot (unlinked and out of the heap already). The last slot of
    /// the high-water mark is popped, so a rollback restores the slab exactly.
    pub(crate) fn release(&mut self, slot: u32) {
        let t = &self.slots[slot as usize];
        assert!(
            self.links_of(slot) == UNLINKED && t.heap_pos == NIL && !t.is_free(),
            "release of a linked or free slot {slot}"
        );
        self.index.remove(t.rec.spec.id.0);
        if slot as usize + 1 == self.slots.len() {
            self.slots.pop();
        } else {
            self.slots[slot as usize] = Transfer::free_value();
            assert!(
                self.free.len() < self.free.capacity(),
                "free list sized to the slab"
            );
            self.free.push(slot);
        }
    }

    // ----- account lists -----------------------------------------------

    fn head_mut(&mut self, acct: u32) -> &mut [[u32; 2]; 2] {
        let a = acct as usize;
        if a >= self.heads.len() {
            assert!(
                a < self.heads.capacity(),
                "account list heads sized to accounts"
            );
            self.heads.resize(a + 1, [[NIL; 2]; 2]);
        }
        &mut self.heads[a]
    }

    /// `[head, tail]` of an account's list on one side.
    pub(crate) fn list(&self, acct: u32, side: usize) -> [u32; 2] {
        self.heads.get(acct as usize).map_or([NIL; 2], |h| h[side])
    }

    /// A slot's links (`UNLINKED` for one never linked).
    #[inline]
    pub(crate) fn links_of(&self, slot: u32) -> Links {
        self.links.get(slot as usize).copied().unwrap_or(UNLINKED)
    }

    /// Appends a stored transfer to its two accounts' lists (it has the
    /// highest ledger_seq so far, so the lists stay sorted).
    pub(crate) fn link(&mut self, slot: u32) {
        let s = slot as usize;
        if s >= self.links.len() {
            assert!(s < self.links.capacity(), "list links sized to the slab");
            self.links.resize(s + 1, UNLINKED);
        }
        let t = &self.slots[s];
        for (side, acct) in [(0, t.debit), (1, t.credit)] {
            let head = self.head_mut(acct);
            let tail = head[side][1];
            head[side][1] = slot;
            if tail == NIL {
                head[side][0] = slot;
            } else {
                self.links[tail as usize][side][1] = slot;
            }
            self.links[s][side] = [tail, NIL];
        }
    }

    /// Takes a stored transfer off its accounts' lists.
    pub(crate) fn unlink(&mut self, slot: u32) {
        let s = slot as usize;
        let (debit, credit) = (self.slots[s].debit, self.slots[s].credit);
        for (side, acct) in [(0, debit), (1, credit)] {
            let [prev, next] = self.links[s][side];
            if prev == NIL {
                self.head_mut(acct)[side][0] = next;
            } else {
                self.links[prev as usize][side][1] = next;
            }
            if next == NIL {
                self.head_mut(acct)[side][1] = prev;
            } else {
                self.links[next as usize][side][0] = prev;
            }
            self.links[s][side] = [NIL; 2];
        }
    }

    // ----- records-hash terms of pending transfers ----------------------

    /// Remembers the term of the pending transfer with `ledger_seq` in `slot`.
    pub(crate) fn set_pending_hash(&mut self, slot: u32, ledger_seq: u64, term: u128) {
        let s = slot as usize;
        if s >= self.pending_hashes.len() {
            assert!(
                s < self.pending_hashes.capacity(),
                "pending hashes sized to the slab"
            );
            self.pending_hashes.resize(s + 1, (0, [0; 2]));
        }
        self.pending_hashes[s] = (ledger_seq, [term as u64, (term >> 64) as u64]);
    }

    /// The remembered term of the pending transfer with `ledger_seq` in
    /// `slot`, if this slot's entry is that transfer's.
    pub(crate) fn pending_hash(&self, slot: u32, ledger_seq: u64) -> Option<u128> {
        match self.pending_hashes.get(slot as usize) {
            Some(&(seq, [lo, hi])) if seq == ledger_seq && seq != 0 => {
                Some((hi as u128) << 64 | lo as u128)
            }
            _ => None,
        }
    }

    // ----- eviction ring -------------------------------------------------

    pub(crate) fn ring_push(&mut self, slot: u32, change_seq: Seq) {
        assert!(
            self.ring.len() < self.ring.capacity(),
            "eviction ring sized to two entries per slot"
        );
        self.ring.push_back((slot, change_seq));
    }

    // ----- expiry heap ---------------------------------------------------

    fn heap_set(&mut self, i: usize, e: HeapEntry) {
        self.heap[i] = e;
        self.slots[e.2 as usize].heap_pos = i as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        let e = self.heap[i];
        while i > 0 {
            let p = (i - 1) / 2;
            if self.heap[p] <= e {
                break;
            }
            self.heap_set(i, self.heap[p]);
            i = p;
        }
        self.heap_set(i, e);
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        let e = self.heap[i];
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            let mut best = e;
            if l < n && self.heap[l] < best {
                m = l;
                best = self.heap[l];
            }
            if r < n && self.heap[r] < best {
                m = r;
            }
            if m == i {
                break;
            }
            self.heap_set(i, self.heap[m]);
            i = m;
        }
        self.heap_set(i, e);
    }

    /// Adds a pending transfer's deadline.
    pub(crate) fn heap_push(&mut self, slot: u32) {
        assert!(
            self.heap.len() < self.heap.capacity(),
            "expiry heap sized to the slab"
        );
        let t = &self.slots[slot as usize];
        self.heap.push((t.deadline, t.rec.ledger_seq, slot));
        self.sift_up(self.heap.len() - 1);
    }

    /// Removes a slot's deadline if it has one.
    pub(crate) fn heap_remove(&mut self, slot: u32) {
        let pos = self.slots[slot as usize].heap_pos;
        if pos == NIL {
            return;
        }
        self.slots[slot as usize].heap_pos = NIL;
        let last = self.heap.pop().expect("heap position in range");
        if pos as usize == self.heap.len() {
            return;
        }
        self.heap_set(pos as usize, last);
        self.sift_down(pos as usize);
        self.sift_up(self.slots[last.2 as usize].heap_pos as usize);
    }

    /// The earliest deadline.
    pub(crate) fn heap_top(&self) -> Option<HeapEntry> {
        self.heap.first().copied()
    }
}
