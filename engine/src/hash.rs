//! State hashing helpers: a streaming 128-bit hash (XXH3-128) for ordered
//! state and a commutative accumulator for sets whose memory layout depends
//! on history (hash tables).
//!
//! Invariant: the hash covers logical state only (ids, prices, quantities,
//! queue order), never slot indices or table layouts.

use xxhash_rust::xxh3::{xxh3_128, Xxh3};

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

/// Commutative set hasher: the sum of per-element hashes, so the result does
/// not depend on the order elements are visited in.
#[derive(Default)]
pub(crate) struct SetHasher(u128);

impl SetHasher {
    #[inline]
    pub(crate) fn add(&mut self, parts: &[u128]) {
        let mut buf = [0u8; 64];
        let n = parts.len().min(4);
        for (i, p) in parts[..n].iter().enumerate() {
            buf[i * 16..i * 16 + 16].copy_from_slice(&p.to_le_bytes());
        }
        self.0 = self.0.wrapping_add(xxh3_128(&buf[..n * 16]));
    }
    pub(crate) fn value(&self) -> u128 {
        self.0
    }
}
