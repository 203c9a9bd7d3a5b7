//! `FixedMap`: an open-addressing hash map with a capacity fixed at
//! construction, keyed by `u128`.
//!
//! Invariants: it never allocates after `with_capacity`; it is at most half
//! full (so probes stay short and an insert into a map below its capacity
//! always succeeds); its hash is a fixed function (no random seed), so the
//! layout — and anything derived from it — is the same on every run. Deletion
//! uses backward shifting, so there are no tombstones and lookups never
//! degrade with churn. Iteration is in slot order, which is deterministic for a
//! given history; state hashes must not depend on it (combine per-entry hashes
//! commutatively instead).

/// A value a `FixedMap` can hold, stored as a `u64` so that the table is a
/// plain zeroed array (allocated lazily by the OS: untouched slots cost no
/// memory and no start-up time).
pub trait MapValue: Copy + Default {
    /// Encodes.
    fn to_u64(self) -> u64;
    /// Decodes.
    fn from_u64(v: u64) -> Self;
}

impl MapValue for u32 {
    #[inline]
    fn to_u64(self) -> u64 {
        self as u64
    }
    #[inline]
    fn from_u64(v: u64) -> Self {
        v as u32
    }
}

impl MapValue for u64 {
    #[inline]
    fn to_u64(self) -> u64 {
        self
    }
    #[inline]
    fn from_u64(v: u64) -> Self {
        v
    }
}

impl MapValue for () {
    #[inline]
    fn to_u64(self) -> u64 {
        0
    }
    #[inline]
    fn from_u64(_: u64) -> Self {}
}

/// One slot: key low, key high, value, used (0/1). All-zero is empty.
type Slot = [u64; 4];
const LO: usize = 0;
const HI: usize = 1;
const VAL: usize = 2;
const USED: usize = 3;

/// A fixed-capacity `u128 → V` map.
#[derive(Clone, Debug)]
pub struct FixedMap<V: MapValue> {
    slots: Vec<Slot>,
    mask: usize,
    len: usize,
    max: usize,
    /// Keys that differ only in their low 4 bits get neighbouring home slots
    /// (sequential ids share cache lines); see `with_capacity_grouped`.
    grouped: bool,
    _v: core::marker::PhantomData<V>,
}

#[inline]
fn mix(lo: u64, hi: u64) -> u64 {
    // murmur3's fmix64 over both halves: cheap, and spreads sequential ids.
    let mut h = lo ^ hi.rotate_left(29).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

impl<V: MapValue> FixedMap<V> {
    /// A map for up to `max` entries; allocates now, never again.
    pub fn with_capacity(max: usize) -> Self {
        let n = (max.max(1) * 2).next_power_of_two();
        FixedMap {
            // A zeroed array of primitive arrays: the allocator hands out
            // untouched (lazily mapped) zero pages.
            slots: vec![[0u64; 4]; n],
            mask: n - 1,
            len: 0,
            max,
            grouped: false,
            _v: core::marker::PhantomData,
        }
    }

    /// Like `with_capacity`, for client-chosen ids that are often sequential
    /// (transfer and account ids, TigerBeetle-style): 16 consecutive keys get
    /// 16 consecutive home slots, so a run of new ids touches one or two
    /// cache lines instead of one line each; other keys spread as usual.
    pub fn with_capacity_grouped(max: usize) -> Self {
        let mut m = Self::with_capacity(max);
        m.grouped = m.slots.len() >= 16;
        m
    }

    #[inline]
    fn home(&self, lo: u64, hi: u64) -> usize {
        if self.grouped {
            (((mix(lo >> 4, hi) << 4) | (lo & 15)) as usize) & self.mask
        } else {
            mix(lo, hi) as usize & self.mask
        }
    }

    /// Entries in the map.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether no further key can be inserted.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len >= self.max
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.max
    }

    #[inline]
    fn find(&self, key: u128) -> Result<usize, usize> {
        let (lo, hi) = (key as u64, (key >> 64) as u64);
        let mut i = self.home(lo, hi);
        loop {
            let s = &self.slots[i];
            if s[USED] == 0 {
                return Err(i);
            }
            if s[LO] == lo && s[HI] == hi {
                return Ok(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Reads `key`'s home slot without probing further (a cache warm-up for
    /// batched inserts); returns a value that only serves to keep the load.
    #[inline]
    pub fn probe_home(&self, key: u128) -> u64 {
        let i = self.home(key as u64, (key >> 64) as u64);
        self.slots[i][LO]
    }

    /// The value for `key`.
    #[inline]
    pub fn get(&self, key: u128) -> Option<V> {
        self.find(key).ok().map(|i| V::from_u64(self.slots[i][VAL]))
    }

    /// Whether `key` is present.
    #[inline]
    pub fn contains(&self, key: u128) -> bool {
        self.find(key).is_ok()
    }

    /// Inserts or overwrites. Returns `false` (and changes nothing) when the
    /// key is new and the map is full.
    #[inline]
    pub fn insert(&mut self, key: u128, val: V) -> bool {
        match self.find(key) {
            Ok(i) => {
                self.slots[i][VAL] = val.to_u64();
                true
            }
            Err(i) => {
                if self.len >= self.max {
                    return false;
                }
                self.slots[i] = [key as u64, (key >> 64) as u64, val.to_u64(), 1];
                self.len += 1;
                true
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: u128) -> Option<V> {
        let mut i = self.find(key).ok()?;
        let val = V::from_u64(self.slots[i][VAL]);
        // Backward-shift deletion: pull later members of the probe run into the hole.
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            if self.slots[j][USED] == 0 {
                break;
            }
            let home = self.home(self.slots[j][LO], self.slots[j][HI]);
            // Can slot j move to i? Only if its home is not in (i, j] cyclically.
            let in_range = if i <= j {
                home > i && home <= j
            } else {
                home > i || home <= j
            };
            if !in_range {
                self.slots[i] = self.slots[j];
                i = j;
            }
        }
        self.slots[i] = [0; 4];
        self.len -= 1;
        Some(val)
    }

    /// Writes to every memory page of the table so that first use never
    /// page-faults (call once at start-up; changes nothing logically).
    pub fn prefault(&mut self) {
        for i in (0..self.slots.len()).step_by(4096 / core::mem::size_of::<Slot>()) {
            let v = core::hint::black_box(self.slots[i][USED]);
            self.slots[i][USED] = v;
        }
    }

    /// Entries in slot order (deterministic for a given history).
    pub fn iter(&self) -> impl Iterator<Item = (u128, V)> + '_ {
        self.slots
            .iter()
            .filter(|s| s[USED] != 0)
            .map(|s| (((s[HI] as u128) << 64) | s[LO] as u128, V::from_u64(s[VAL])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_against_btreemap() {
        check(FixedMap::<u32>::with_capacity(500));
        check(FixedMap::<u32>::with_capacity_grouped(500));
    }

    fn check(mut m: FixedMap<u32>) {
        let mut r = std::collections::BTreeMap::new();
        let mut x: u64 = 0x1234_5678;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 700) as u128 | (((x >> 40) % 3) as u128) << 100;
            if x & 1 == 0 {
                let ok = m.insert(key, step);
                if ok {
                    r.insert(key, step);
                } else {
                    assert!(!r.contains_key(&key) && r.len() == 500);
                }
            } else {
                assert_eq!(m.remove(key), r.remove(&key));
            }
            assert_eq!(m.len(), r.len());
            if step % 1000 == 0 {
                for (k, v) in &r {
                    assert_eq!(m.get(*k), Some(*v));
                }
                assert_eq!(m.iter().count(), r.len());
            }
        }
    }
}
