//! Cache-friendly indexes for the two lookups every order pays for.
//!
//! `IdIndex` maps engine-assigned order ids (1, 2, 3, … — sequential) to pool
//! slots through a direct-mapped array indexed by `id & mask`: consecutive
//! ids share cache lines, so inserting a new order touches memory that is
//! already hot. A slot taken by a long-lived order with the same low bits
//! spills to a fixed-capacity `FixedMap`. Lookups verify the id against the
//! order itself (the caller passes `id_of`), so the array stores 4 bytes per
//! entry.
//!
//! `CoidSet` remembers the (owner, client order id) pairs that still count
//! for duplicate detection: those of the last W accepted orders (the client
//! order id window, W = `client_order_ids_max`) and those of live orders
//! older than that. It keeps a ring of the last W accepted orders' (owner
//! slot, client order id), indexed by order id, so the engine can forget the
//! pair of the order leaving the window as each new order is accepted: O(1)
//! per order, no pauses, and exact at the window edge. Finished bitmap blocks
//! first go to a small pending buffer (in cache); every `PENDING` writes they
//! move to the big table in one pass that first touches all their home slots,
//! so the cache misses overlap instead of costing one full miss per order.
//!
//! Invariants: neither allocates after construction; the set holds exactly
//! the window's pairs plus live older orders' pairs, so it never holds more
//! than W + `orders_max` ids (and never more blocks than that); no block in
//! the big table is empty after a flush.

use crate::fixed_map::FixedMap;

/// Order id → pool slot.
#[derive(Clone, Debug)]
pub(crate) struct IdIndex {
    direct: Vec<u32>,
    mask: u64,
    overflow: FixedMap<u32>,
    len: usize,
}

impl IdIndex {
    pub(crate) fn with_capacity(max: usize) -> Self {
        let n = (max.max(1) * 2).next_power_of_two();
        IdIndex {
            // Entries hold slot + 1 (0 = empty) so the array starts as lazy zero pages.
            direct: vec![0; n],
            mask: (n - 1) as u64,
            overflow: FixedMap::with_capacity(max),
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot of `id`; `id_of(slot)` must return the id stored at a slot.
    #[inline]
    pub(crate) fn get(&self, id: u64, id_of: impl Fn(u32) -> u64) -> Option<u32> {
        let s = self.direct[(id & self.mask) as usize];
        if s != 0 && id_of(s - 1) == id {
            return Some(s - 1);
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(id as u128)
    }

    /// Adds a new id (never present). `false` if the index is full.
    #[inline]
    pub(crate) fn insert(&mut self, id: u64, slot: u32) -> bool {
        let h = (id & self.mask) as usize;
        if self.direct[h] == 0 {
            self.direct[h] = slot + 1;
        } else if !self.overflow.insert(id as u128, slot) {
            return false;
        }
        self.len += 1;
        true
    }

    /// Removes an id known to be at `slot`.
    #[inline]
    pub(crate) fn remove(&mut self, id: u64, slot: u32) -> bool {
        let h = (id & self.mask) as usize;
        let found = if self.direct[h] == slot + 1 {
            self.direct[h] = 0;
            true
        } else {
            self.overflow.remove(id as u128) == Some(slot)
        };
        if found {
            self.len -= 1;
        }
        found
    }

    /// Touches every page (see `FixedMap::prefault`).
    pub(crate) fn prefault(&mut self) {
        for i in (0..self.direct.len()).step_by(1024) {
            let v = core::hint::black_box(self.direct[i]);
            self.direct[i] = v;
        }
        self.overflow.prefault();
    }

    /// Every indexed slot (direct part, then spilled), for validation and snapshots.
    pub(crate) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.direct
            .iter()
            .copied()
            .filter(|&s| s != 0)
            .map(|s| s - 1)
            .chain(self.overflow.iter().map(|(_, s)| s))
    }
}

/// Block writes buffered before one batched pass into the big table.
const PENDING: usize = 8;

/// An owner's client-order-id state, kept in its `Owner` record (hot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct OwnerCoids {
    /// Highest client order id this owner record accepted (valid when
    /// `any`): every id it holds is ≤ it, so a higher id needs no lookup.
    pub(crate) max: u64,
    /// Whether any was accepted.
    pub(crate) any: bool,
    /// The block (coid / 64) being filled, held here until the owner moves on.
    pub(crate) block: u64,
    /// Its bitmap (bit coid % 64).
    pub(crate) bits: u64,
    /// Whether `block`/`bits` hold a block.
    pub(crate) has_block: bool,
}

/// The remembered (owner, client order id) pairs, as 64-id bitmap blocks:
/// `(owner, coid / 64) → bits`, plus the ring of the window's orders that
/// says which pair to forget next. An owner's current block lives in its
/// `OwnerCoids` (and is then absent from the table and the pending buffer);
/// when the owner moves to another block the old one is written to the big
/// table through a small pending buffer, in batches whose home slots are
/// touched first so their cache misses overlap. Increasing ids (the common
/// case) cost one bit-set per order and one table write per 64 ids.
#[derive(Clone, Debug)]
pub(crate) struct CoidSet {
    big: FixedMap<u64>,
    /// Newer block writes than the big table's (a zero block means "remove").
    pending: Vec<(u128, u64)>,
    /// `[client order id, owner slot]` of order k at `(k - 1) % window`: the
    /// last `window` accepted orders (older entries are stale).
    ring: Vec<[u64; 2]>,
    /// Ring index of the next accepted order.
    cursor: usize,
}

#[inline]
fn block_key(owner: u64, block: u64) -> u128 {
    ((owner as u128) << 64) | block as u128
}

impl CoidSet {
    /// A set for a window of `window` (≥ 1) orders and `live_max` live orders.
    pub(crate) fn with_capacity(window: usize, live_max: usize) -> Self {
        let window = window.max(1);
        CoidSet {
            // Each id held is the window's or a live order's; each block holds ≥ 1.
            big: FixedMap::with_capacity_grouped(window + live_max),
            pending: Vec::with_capacity(PENDING),
            // A zeroed array of primitive arrays: lazily mapped zero pages.
            ring: vec![[0u64; 2]; window],
            cursor: 0,
        }
    }

    /// W: how many of the newest accepted orders count for duplicates.
    #[inline]
    pub(crate) fn window(&self) -> u64 {
        self.ring.len() as u64
    }

    /// The stored bits of a block that is not the owner's current one.
    fn stored_bits(&self, key: u128) -> u64 {
        for &(k, b) in self.pending.iter().rev() {
            if k == key {
                return b;
            }
        }
        self.big.get(key).unwrap_or(0)
    }

    /// Whether the owner's `coid` is remembered.
    #[inline]
    pub(crate) fn contains(&self, oc: &OwnerCoids, owner: u64, coid: u64) -> bool {
        if !oc.any || coid > oc.max {
            return false; // every id held is ≤ max
        }
        let (block, bit) = (coid >> 6, 1u64 << (coid & 63));
        if oc.has_block && block == oc.block {
            return oc.bits & bit != 0;
        }
        self.stored_bits(block_key(owner, block)) & bit != 0
    }

    /// Remembers an id (the caller checked `contains`).
    #[inline]
    pub(crate) fn insert(&mut self, oc: &mut OwnerCoids, owner: u64, coid: u64) {
        let (block, bit) = (coid >> 6, 1u64 << (coid & 63));
        if !(oc.has_block && block == oc.block) {
            if oc.has_block {
                self.persist(block_key(owner, oc.block), oc.bits);
            }
            // A block above the highest one used is new: no lookup needed.
            let known = oc.any && block <= oc.max >> 6;
            oc.bits = if known {
                self.take_stored(block_key(owner, block))
            } else {
                0
            };
            oc.block = block;
            oc.has_block = true;
        }
        oc.bits |= bit;
        if !oc.any || coid > oc.max {
            oc.max = coid;
            oc.any = true;
        }
    }

    /// Moves a stored block out (it becomes an owner's current block), so
    /// that no stale copy outlives the bits cleared in the current one.
    fn take_stored(&mut self, key: u128) -> u64 {
        if let Some(i) = self.pending.iter().rposition(|&(k, _)| k == key) {
            let bits = self.pending[i].1;
            self.pending[i].1 = 0; // the flush removes the table's copy, if any
            return bits;
        }
        self.big.remove(key).unwrap_or(0)
    }

    /// Forgets an id the set holds; panics if it does not (a broken invariant).
    pub(crate) fn remove(&mut self, oc: &mut OwnerCoids, owner: u64, coid: u64) {
        let (block, bit) = (coid >> 6, 1u64 << (coid & 63));
        let held = if oc.has_block && block == oc.block {
            let held = oc.bits & bit != 0;
            oc.bits &= !bit;
            held
        } else {
            let key = block_key(owner, block);
            if let Some(i) = self.pending.iter().rposition(|&(k, _)| k == key) {
                let held = self.pending[i].1 & bit != 0;
                self.pending[i].1 &= !bit;
                held
            } else {
                match self.big.get(key) {
                    Some(b) if b & bit != 0 => {
                        if b == bit {
                            self.big.remove(key);
                        } else {
                            self.big.insert(key, b & !bit);
                        }
                        true
                    }
                    _ => false,
                }
            }
        };
        assert!(
            held,
            "client order id {coid} of owner {owner} forgotten early"
        );
    }

    /// Records order `id` (the next one: ids are consecutive) in the ring and
    /// returns the `(owner slot, client order id)` of order `id − W`, which
    /// has just left the window (`None` while fewer than W were accepted).
    #[inline]
    pub(crate) fn push_order(&mut self, id: u64, owner_slot: u32, coid: u64) -> Option<(u32, u64)> {
        let c = self.cursor;
        let old = self.ring[c];
        self.ring[c] = [coid, owner_slot as u64];
        self.cursor = if c + 1 == self.ring.len() { 0 } else { c + 1 };
        (id > self.window()).then_some((old[1] as u32, old[0]))
    }

    /// `(owner slot, client order id)` of order `id`, which must be in the window.
    pub(crate) fn ring_entry(&self, id: u64) -> (u32, u64) {
        let e = self.ring[((id - 1) % self.window()) as usize];
        (e[1] as u32, e[0])
    }

    /// Restores the ring entry of order `id` (snapshots; any order of ids).
    pub(crate) fn restore_ring_entry(&mut self, id: u64, owner_slot: u32, coid: u64) {
        let w = self.window();
        self.ring[((id - 1) % w) as usize] = [coid, owner_slot as u64];
    }

    /// Points the ring at `next_order_id` (after a restore).
    pub(crate) fn set_next(&mut self, next_order_id: u64) {
        self.cursor = ((next_order_id.max(1) - 1) % self.window()) as usize;
    }

    fn persist(&mut self, key: u128, bits: u64) {
        self.pending.push((key, bits));
        if self.pending.len() == PENDING {
            // Touch every home slot first: independent loads overlap their misses.
            let mut sink = 0u64;
            for &(k, _) in &self.pending {
                sink = sink.wrapping_add(self.big.probe_home(k));
            }
            std::hint::black_box(sink);
            for i in 0..PENDING {
                let (k, b) = self.pending[i];
                if b == 0 {
                    self.big.remove(k);
                } else {
                    let ok = self.big.insert(k, b);
                    assert!(ok, "client order id blocks past window + live orders");
                }
            }
            self.pending.clear();
        }
    }

    /// Every non-empty block with its bits, merged (big table, then newer
    /// pending writes, then the owners' current blocks), in key order.
    /// Allocates: for validation, not the hot path.
    pub(crate) fn blocks<'a>(
        &self,
        owners: impl Iterator<Item = (u64, &'a OwnerCoids)>,
    ) -> std::collections::BTreeMap<u128, u64> {
        let mut m: std::collections::BTreeMap<u128, u64> = self.big.iter().collect();
        for &(k, b) in &self.pending {
            m.insert(k, b);
        }
        for (owner, oc) in owners {
            if oc.has_block {
                m.insert(block_key(owner, oc.block), oc.bits);
            }
        }
        m.retain(|_, b| *b != 0);
        m
    }

    /// Touches every page (see `FixedMap::prefault`).
    pub(crate) fn prefault(&mut self) {
        self.big.prefault();
        for i in (0..self.ring.len()).step_by(256) {
            let v = core::hint::black_box(self.ring[i]);
            self.ring[i] = v;
        }
    }
}
