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
//! `CoidSet` remembers every (owner, client order id) ever accepted. New keys
//! first go to a small pending buffer (in cache); every `PENDING` inserts they
//! move to the big table in one pass that first touches all their home slots,
//! so the cache misses overlap instead of costing one full miss per order.
//! Membership is the union of both; both are bounded by the set's capacity.
//!
//! Invariant: neither allocates after construction.

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
    /// Highest client order id accepted (valid when `any`).
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

/// Every (owner, client order id) ever accepted, as 64-id bitmap blocks:
/// `(owner, coid / 64) → bits`. An owner's current block lives in its
/// `OwnerCoids`; when the owner moves to another block the old one is
/// written to the big table through a small pending buffer, in batches
/// whose home slots are touched first so their cache misses overlap.
/// Increasing ids (the common case) cost one bit-set per order and one
/// table write per 64 ids.
#[derive(Clone, Debug)]
pub(crate) struct CoidSet {
    big: FixedMap<u64>,
    pending: Vec<(u128, u64)>,
    count: usize,
    max: usize,
}

#[inline]
fn block_key(owner: u64, block: u64) -> u128 {
    ((owner as u128) << 64) | block as u128
}

impl CoidSet {
    pub(crate) fn with_capacity(max: usize) -> Self {
        CoidSet {
            big: FixedMap::with_capacity_grouped(max),
            pending: Vec::with_capacity(PENDING),
            count: 0,
            max,
        }
    }

    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.count >= self.max
    }

    pub(crate) fn capacity(&self) -> usize {
        self.max
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

    /// Whether the owner used `coid` before.
    #[inline]
    pub(crate) fn contains(&self, oc: &OwnerCoids, owner: u64, coid: u64) -> bool {
        if !oc.any || coid > oc.max {
            return false; // every id used so far is ≤ max
        }
        let (block, bit) = (coid >> 6, 1u64 << (coid & 63));
        if oc.has_block && block == oc.block {
            return oc.bits & bit != 0;
        }
        self.stored_bits(block_key(owner, block)) & bit != 0
    }

    /// Remembers a new id (the caller checked `contains` and `is_full`).
    #[inline]
    pub(crate) fn insert(&mut self, oc: &mut OwnerCoids, owner: u64, coid: u64) {
        debug_assert!(!self.is_full());
        let (block, bit) = (coid >> 6, 1u64 << (coid & 63));
        if !(oc.has_block && block == oc.block) {
            if oc.has_block {
                self.persist(block_key(owner, oc.block), oc.bits);
            }
            // A block above the highest one used is new: no lookup needed.
            let known = oc.any && block <= oc.max >> 6;
            oc.bits = if known {
                self.stored_bits(block_key(owner, block))
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
        self.count += 1;
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
                let ok = self.big.insert(k, b);
                assert!(
                    ok,
                    "client order id blocks overfilled past the capacity check"
                );
            }
            self.pending.clear();
        }
    }

    /// Every block with its bits, merged (big table, then newer pending
    /// writes, then the owners' current blocks), in key order. Allocates: for
    /// state hashes and snapshots, not the hot path.
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
        m
    }

    /// Touches every page (see `FixedMap::prefault`).
    pub(crate) fn prefault(&mut self) {
        self.big.prefault();
    }

    /// Restores one block and the number of ids; `false` if it does not fit.
    pub(crate) fn restore_block(&mut self, key: u128, bits: u64) -> bool {
        self.count += bits.count_ones() as usize;
        self.count <= self.max && self.big.insert(key, bits)
    }
}
