//! SplitMix64 (Steele, Lea and Flood 2014): the workspace's one seeded PRNG,
//! for tests, simulations, load generators and benches.
//!
//! The engine itself never uses it: the engine draws no random number. It
//! lives here only because every other crate can reach the engine.
//! Invariants: no entropy source is ever read (the seed is the whole state, so
//! a printed seed replays a run), and the output sequence for a seed never
//! changes: recorded failing seeds and golden values depend on it.

/// A SplitMix64 generator; the field is the whole state (the seed at start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`, and 0 when `n` is 0 (so a fuzzer can pass any
    /// length). The modulo bias is below 2^-40 for the sizes drawn here.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi` (`lo <= hi`, and not the whole `u64` range).
    #[inline]
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den` (`den > 0`).
    #[inline]
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// True with probability `pct` percent: `chance(pct, 100)`.
    #[inline]
    pub fn chance_pct(&mut self, pct: u64) -> bool {
        self.chance(pct, 100)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits (an `f64`'s precision).
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_first_values() {
        // The published reference values of SplitMix64 seeded with 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn below_and_range_stay_in_bounds() {
        let mut r = SplitMix64(7);
        for n in 1..100 {
            for _ in 0..100 {
                assert!(r.below(n) < n);
                let x = r.range(n, 2 * n);
                assert!((n..=2 * n).contains(&x));
                let f = r.next_f64();
                assert!((0.0..1.0).contains(&f));
            }
        }
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn chance_pct_is_chance_out_of_100() {
        // The copies this replaced drew percentages as `below(100) < pct`:
        // the same draws, so recorded seeds replay the same streams.
        let (mut a, mut b, mut c) = (SplitMix64(11), SplitMix64(11), SplitMix64(11));
        for pct in 0..=100 {
            let want = c.next_u64() % 100 < pct;
            assert_eq!(a.chance_pct(pct), want);
            assert_eq!(b.chance(pct, 100), want);
        }
        assert!(!SplitMix64(3).chance(0, 5));
        assert!(SplitMix64(3).chance(5, 5));
    }

    #[test]
    fn pick_draws_every_element() {
        let mut r = SplitMix64(5);
        let mut seen = [false; 4];
        for _ in 0..200 {
            seen[r.pick(&[0usize, 1, 2, 3])] = true;
        }
        assert_eq!(seen, [true; 4]);
    }
}
