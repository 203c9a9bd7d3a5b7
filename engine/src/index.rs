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

const NIL: u32 = u32::MAX;

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
            direct: vec![NIL; n],
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
        if s != NIL && id_of(s) == id {
            return Some(s);
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
        if self.direct[h] == NIL {
            self.direct[h] = slot;
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
        let found = if self.direct[h] == slot {
            self.direct[h] = NIL;
            true
        } else {
            self.overflow.remove(id as u128) == Some(slot)
        };
        if found {
            self.len -= 1;
        }
        found
    }

    /// Every indexed slot (direct part, then spilled), for validation and snapshots.
    pub(crate) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.direct
            .iter()
            .copied()
            .filter(|&s| s != NIL)
            .chain(self.overflow.iter().map(|(_, s)| s))
    }
}

/// Keys moved to the big table per flush.
const PENDING: usize = 64;

/// The set of (owner, client order id) keys ever accepted.
#[derive(Clone, Debug)]
pub(crate) struct CoidSet {
    big: FixedMap<()>,
    pending: Vec<u128>,
    max: usize,
}

impl CoidSet {
    pub(crate) fn with_capacity(max: usize) -> Self {
        CoidSet {
            big: FixedMap::with_capacity(max),
            pending: Vec::with_capacity(PENDING),
            max,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.big.len() + self.pending.len()
    }

    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.len() >= self.max
    }

    pub(crate) fn capacity(&self) -> usize {
        self.max
    }

    #[inline]
    pub(crate) fn contains(&self, key: u128) -> bool {
        self.pending.contains(&key) || self.big.contains(key)
    }

    /// Adds a key known to be absent; the caller checked `is_full`.
    #[inline]
    pub(crate) fn insert(&mut self, key: u128) {
        debug_assert!(!self.is_full());
        self.pending.push(key);
        if self.pending.len() == PENDING {
            self.flush();
        }
    }

    fn flush(&mut self) {
        // Touch every home slot first: independent loads overlap their misses.
        let mut sink = 0u64;
        for &k in &self.pending {
            sink = sink.wrapping_add(self.big.probe_home(k));
        }
        std::hint::black_box(sink);
        for i in 0..self.pending.len() {
            let ok = self.big.insert(self.pending[i], ());
            assert!(ok, "client order id set overfilled past its capacity check");
        }
        self.pending.clear();
    }

    /// Every key (order unspecified).
    pub(crate) fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        self.big
            .iter()
            .map(|(k, ())| k)
            .chain(self.pending.iter().copied())
    }

    /// Adds a key while restoring a snapshot; `false` if full.
    pub(crate) fn restore_insert(&mut self, key: u128) -> bool {
        !self.is_full() && self.big.insert(key, ())
    }
}
