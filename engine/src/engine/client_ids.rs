//! The live-order map by client order id: (owner, client order id) → order
//! slot, so an embedder can cancel or look up an order by the id it chose.
//!
//! Layout: an open-addressing table of 8-byte entries (order slot, 32-bit
//! hash), twice `orders_max` rounded up to a power of two, allocated in
//! `Engine::new`. The key is not stored: a lookup checks the candidate
//! order's own `owner_slot` and `coid`, and deletion (backward shift) reads
//! only the stored hash, so insert and remove touch one table line and
//! never the order or owner records.
//!
//! Invariants: the table holds exactly the live orders — the same set as
//! `order_index` — because `alloc_order` inserts and `end_order` removes
//! (one call each); an owner's client order id is unique among its live
//! orders (a new order reusing a live one's is rejected
//! `duplicate_client_order_id`), so a lookup finds at most one; the key
//! uses the owner's slot, which is stable while the owner has a live order.
//! It is derived state: neither the state hash nor the snapshot carries it,
//! and `restore` rebuilds it from the live orders. It never allocates after
//! construction and is at most half full, so probes stay short.

use super::*;

/// An empty table entry.
const EMPTY: Entry32 = Entry32 { slot: NIL, hash: 0 };

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry32 {
    /// The order's slot, `NIL` when empty.
    slot: u32,
    /// The key's hash (its low bits are the home position).
    hash: u32,
}

/// (owner slot, client order id) → order slot for every live order.
#[derive(Debug)]
pub(super) struct ClientIds {
    table: Vec<Entry32>,
    mask: usize,
}

/// A fixed mix of the key (no seed: the layout is the same on every run).
#[inline]
fn hash_of(owner_slot: u32, coid: ClientOrderId) -> u32 {
    let x = coid.0 ^ ((owner_slot as u64) << 40) ^ (owner_slot as u64);
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    (x ^ (x >> 33)) as u32
}

impl ClientIds {
    /// A table for up to `orders_max` live orders (at most half full).
    pub(super) fn with_capacity(orders_max: usize) -> Self {
        let n = (2 * orders_max.max(1)).next_power_of_two();
        ClientIds {
            table: vec![EMPTY; n],
            mask: n - 1,
        }
    }

    /// Writes every page now, changing nothing (see `Engine::prefault`).
    pub(super) fn prefault(&mut self) {
        for e in self.table.iter_mut().step_by(4096 / core::mem::size_of::<Entry32>()) {
            *e = core::hint::black_box(*e);
        }
    }

    fn insert(&mut self, slot: u32, hash: u32) {
        let mut i = hash as usize & self.mask;
        while self.table[i].slot != NIL {
            i = (i + 1) & self.mask;
        }
        self.table[i] = Entry32 { slot, hash };
    }

    fn remove(&mut self, slot: u32, hash: u32) {
        let mut i = hash as usize & self.mask;
        while self.table[i].slot != slot {
            assert!(self.table[i].slot != NIL, "client id map lacks live slot {slot}");
            i = (i + 1) & self.mask;
        }
        // Backward-shift deletion: no tombstones, probes never degrade.
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let e = self.table[j];
            if e.slot == NIL {
                break;
            }
            let home = e.hash as usize & self.mask;
            let stays = if i <= j {
                home > i && home <= j
            } else {
                home > i || home <= j
            };
            if !stays {
                self.table[i] = e;
                i = j;
            }
        }
        self.table[i] = EMPTY;
    }

    fn clear(&mut self) {
        self.table.fill(EMPTY);
    }

    fn len(&self) -> usize {
        self.table.iter().filter(|e| e.slot != NIL).count()
    }
}

impl Engine {
    /// Enters the order just allocated at `slot` (called by `alloc_order`).
    #[inline]
    pub(super) fn client_id_insert(&mut self, slot: u32) {
        let o = &self.orders[slot as usize];
        let h = hash_of(o.owner_slot, o.coid);
        self.client_ids.insert(slot, h);
    }

    /// Forgets the live order at `slot` (called by `end_order`, before the
    /// slot is cleared).
    #[inline]
    pub(super) fn client_id_remove(&mut self, slot: u32) {
        let o = &self.orders[slot as usize];
        let h = hash_of(o.owner_slot, o.coid);
        self.client_ids.remove(slot, h);
    }

    /// Rebuilds the map from the live orders (after `restore`).
    pub(super) fn rebuild_client_ids(&mut self) {
        self.client_ids.clear();
        let slots: Vec<u32> = self.order_index.slots().collect();
        for slot in slots {
            self.client_id_insert(slot);
        }
    }

    /// The slot of `owner`'s live order entered as `coid`.
    fn client_id_slot(&self, owner: OwnerId, coid: ClientOrderId) -> Option<u32> {
        let os = self.owner_index.get(owner.0 as u128)?;
        let t = &self.client_ids;
        let h = hash_of(os, coid);
        let mut i = h as usize & t.mask;
        loop {
            let e = t.table[i];
            if e.slot == NIL {
                return None;
            }
            let o = &self.orders[e.slot as usize];
            if e.hash == h && o.owner_slot == os && o.coid == coid {
                return Some(e.slot);
            }
            i = (i + 1) & t.mask;
        }
    }

    /// `owner`'s live order (resting or waiting stop) entered with client
    /// order id `coid`, if any.
    pub fn order_by_client_id(&self, owner: OwnerId, coid: ClientOrderId) -> Option<OrderView> {
        let slot = self.client_id_slot(owner, coid)?;
        self.order(self.orders[slot as usize].id)
    }

    pub(super) fn handle_cancel_by_client_id(
        &mut self,
        owner: OwnerId,
        coid: ClientOrderId,
        out: &mut Events,
    ) {
        let Some(slot) = self.client_id_slot(owner, coid) else {
            return out.push(Event::Rejected {
                target: RejectTarget::ClientOrder(coid),
                reason: RejectReason::UnknownOrder,
            });
        };
        let o = self.orders[slot as usize];
        out.push(self.canceled(&o, o.remaining, CancelReason::User));
        self.end_order(slot);
    }

    /// Checks the map against the live orders (for `validate`).
    pub(super) fn validate_client_ids(&self) -> Result<(), String> {
        let n = self.client_ids.len();
        if n != self.order_index.len() {
            return Err(format!(
                "client id map holds {n} orders, {} are live",
                self.order_index.len()
            ));
        }
        for slot in self.order_index.slots() {
            let o = &self.orders[slot as usize];
            let owner = self.owners[o.owner_slot as usize].id;
            if self.client_id_slot(owner, o.coid) != Some(slot) {
                return Err(format!(
                    "order {} not found by client order id ({owner}, {})",
                    o.id, o.coid.0
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removing from the middle of a probe run keeps every other key
    /// reachable (backward shift), including runs that wrap the table end.
    #[test]
    fn backward_shift_keeps_runs_reachable() {
        let mut t = ClientIds::with_capacity(4); // 8 entries
        let homes = [7u32, 7, 7, 0, 1];
        for (s, &h) in homes.iter().enumerate() {
            t.insert(s as u32, h);
        }
        t.remove(1, 7);
        for (s, &h) in homes.iter().enumerate().filter(|(s, _)| *s != 1) {
            let mut i = h as usize & t.mask;
            while t.table[i].slot != s as u32 {
                assert_ne!(t.table[i].slot, NIL, "slot {s} lost after a removal");
                i = (i + 1) & t.mask;
            }
        }
        assert_eq!(t.len(), 4);
    }
}
