//! State hashing helper: a streaming 128-bit hash (XXH3-128) of state
//! visited in a deterministic order.
//!
//! Invariant: the hash covers logical state (ids, prices, quantities, queue
//! order) and, where a table's slot assignment is itself deterministic state
//! that snapshots carry (owner records, the transfer store's records hash),
//! that order; never a hash table's internal layout.

use xxhash_rust::xxh3::Xxh3;

/// Ordered state hasher.
pub(crate) struct StateHasher(Xxh3);

impl StateHasher {
    pub(crate) fn new() -> Self {
        StateHasher(Xxh3::new())
    }
    #[inline]
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.update(&v.to_le_bytes());
    }
    #[inline]
    pub(crate) fn u128(&mut self, v: u128) {
        self.0.update(&v.to_le_bytes());
    }
    #[inline]
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.0.update(b);
    }
    pub(crate) fn finish(self) -> u128 {
        self.0.digest128()
    }
}
