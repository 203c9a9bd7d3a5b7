//! `IdFilter`: one fixed-size blocked Bloom filter of every transfer id in a
//! partition's on-disk history, so a lookup of a NEW id (every new transfer
//! is checked for exactly-once) costs one cache line instead of one
//! per-file filter probe per history file.
//!
//! Layout: 512-bit blocks (one cache line, eight `u64` words). One 128-bit
//! xxh3 of the id's 16 bytes picks the block (low 64 bits, multiply-shift)
//! and one bit in each of the eight words (six bits each from the high 64
//! bits): k = 8, every probe inside one line.
//!
//! Invariants, as absences: no bit is ever cleared (sized once at start,
//! never resized or reset), so no id once inserted is ever answered "absent";
//! past its design capacity the false-positive rate only rises, and a
//! "maybe" falls back to the per-file probes: never a wrong answer. Bits
//! are `AtomicU64` set with relaxed `fetch_or` and read with relaxed loads:
//! the writer sets a run's bits before it submits the run's install, and the
//! install reaches the engine thread through the inbound ring (a release /
//! acquire pair), so the engine never asks for an installed id whose bits
//! it cannot see. Bits set early (a run never installed) are only false
//! positives.

use std::sync::atomic::{AtomicU64, Ordering};
use xxhash_rust::xxh3::xxh3_128;

/// Bytes per block: one cache line.
pub const BLOCK_BYTES: usize = 64;
const WORDS_PER_BLOCK: usize = BLOCK_BYTES / 8;
/// Bits per id at the design false-positive rate (~1 % for k = 8 in
/// 512-bit blocks).
pub const DESIGN_BITS_PER_ID: u64 = 11;

/// The partition-wide id filter (see the module doc).
#[derive(Debug)]
pub struct IdFilter {
    words: Box<[AtomicU64]>,
    blocks: u64,
}

impl IdFilter {
    /// A filter of `bytes` rounded down to whole blocks; `None` below one
    /// block (`[history] filter_bytes = 0`: no filter).
    pub fn new(bytes: u64) -> Option<Self> {
        let blocks = bytes / BLOCK_BYTES as u64;
        if blocks == 0 {
            return None;
        }
        let words = (0..blocks as usize * WORDS_PER_BLOCK)
            .map(|_| AtomicU64::new(0))
            .collect();
        Some(Self { words, blocks })
    }

    /// Bytes of memory the bits take.
    pub fn bytes(&self) -> u64 {
        self.blocks * BLOCK_BYTES as u64
    }

    /// Ids it holds at about the design false-positive rate (~1 %).
    pub fn design_ids(&self) -> u64 {
        self.bytes() * 8 / DESIGN_BITS_PER_ID
    }

    /// The first word of `id`'s block and the eight bit masks.
    fn locate(&self, id: u128) -> (usize, [u64; WORDS_PER_BLOCK]) {
        let h = xxh3_128(&id.to_le_bytes());
        let block = ((h as u64 as u128 * self.blocks as u128) >> 64) as usize;
        let bits = (h >> 64) as u64;
        let mut masks = [0u64; WORDS_PER_BLOCK];
        for (i, m) in masks.iter_mut().enumerate() {
            *m = 1u64 << ((bits >> (i * 6)) & 63);
        }
        (block * WORDS_PER_BLOCK, masks)
    }

    /// Adds `id` (idempotent; any thread).
    pub fn insert(&self, id: u128) {
        let (w, masks) = self.locate(id);
        for (word, m) in self.words[w..w + WORDS_PER_BLOCK].iter().zip(masks) {
            if word.load(Ordering::Relaxed) & m != m {
                word.fetch_or(m, Ordering::Relaxed);
            }
        }
    }

    /// `false`: `id` was never inserted. `true`: it may have been.
    pub fn may_contain(&self, id: u128) -> bool {
        let (w, masks) = self.locate(id);
        self.words[w..w + WORDS_PER_BLOCK]
            .iter()
            .zip(masks)
            .all(|(word, m)| word.load(Ordering::Relaxed) & m == m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::rng::SplitMix64;

    /// Seeded (the seed is printed) random ids.
    fn ids(seed: u64, n: usize) -> impl Iterator<Item = u128> {
        let mut r = SplitMix64(seed);
        (0..n).map(move |_| ((r.next_u64() as u128) << 64) | r.next_u64() as u128)
    }

    #[test]
    fn zero_bytes_is_no_filter() {
        assert!(IdFilter::new(0).is_none());
        assert!(IdFilter::new(BLOCK_BYTES as u64 - 1).is_none());
        assert_eq!(IdFilter::new(130).unwrap().bytes(), 128);
    }

    #[test]
    fn no_false_negatives_and_design_false_positive_rate() {
        let seed = 0x1d_f11e;
        println!("seed {seed:#x}");
        let f = IdFilter::new(64 * 1024).unwrap();
        let n = f.design_ids() as usize;
        for id in ids(seed, n) {
            f.insert(id);
        }
        assert!(ids(seed, n).all(|id| f.may_contain(id)), "a false negative");
        let probes = 200_000;
        let fp = ids(seed ^ 0xdead_beef, probes)
            .filter(|&id| f.may_contain(id))
            .count();
        let rate = fp as f64 / probes as f64;
        println!(
            "{n} ids in {} bytes: false-positive rate {rate:.4}",
            f.bytes()
        );
        // The design rate is ~1 % at 11 bits per id: measured, not assumed.
        assert!((0.004..0.02).contains(&rate), "rate {rate}");
    }

    #[test]
    fn an_empty_filter_admits_nothing_and_sequential_ids_spread() {
        let f = IdFilter::new(4096).unwrap();
        assert!(ids(7, 1000).all(|id| !f.may_contain(id)));
        // Sequential ids (a client's counter) must not pile into one block.
        for id in 0..f.design_ids() as u128 {
            f.insert(id);
        }
        let fp = (1u128 << 100..(1u128 << 100) + 20_000)
            .filter(|&id| f.may_contain(id))
            .count();
        assert!(fp < 400, "{fp} false positives of 20000");
    }
}
