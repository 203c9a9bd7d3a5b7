//! The live-order map by client order id: (owner, client order id) → order
//! slot, so an embedder can cancel or look up an order by the id it chose.
//!
//! Layout: the same shape as `IdIndex`: a direct-mapped array of order
//! slots (+1, 0 = empty), twice `orders_max` rounded up to a power of two,
//! with two candidate entries per key and a spill map. The first entry is
//! the client order id alone (`coid & mask`): embedders that number orders
//! uniquely across owners (1, 2, 3, … whoever sends them) write consecutive
//! entries, a line that is already hot, as `IdIndex` does for order ids.
//! The second, `coid + owner slot × K`, serves embedders that number each
//! owner's orders 1, 2, 3, …: the owners whose ids collide on the first
//! entry still get consecutive entries of their own. A key whose two
//! entries are taken spills to a fixed-capacity `FixedMap` keyed by the
//! exact (owner slot, client order id) pair. The key is not stored in the
//! array: a lookup checks the candidate order's own `owner_slot` and
//! `coid`. Everything is allocated in `Engine::new`.
//!
//! Invariants: the map holds exactly the live orders — the same set as
//! `order_index` — because `alloc_order` inserts and `end_order` removes
//! (one call each); an owner's client order id is unique among its live
//! orders (a new order reusing a live one's is rejected
//! `duplicate_client_order_id`), so a lookup finds at most one; the key
//! uses the owner's slot, which is stable while the owner has a live order.
//! It is derived state: neither the state hash nor the snapshot carries it,
//! and `restore` rebuilds it from the live orders. It never allocates after
//! construction.

use super::*;

/// (owner slot, client order id) → order slot for every live order.
#[derive(Debug)]
pub(super) struct ClientIds {
    /// Order slot + 1 at `home(key)`; 0 = empty.
    direct: Vec<u32>,
    mask: u64,
    /// Keys whose direct entry was taken, by their exact value.
    spill: FixedMap<u32>,
}

/// The two direct entries of a key: the client order id alone, then one
/// where an owner's consecutive ids are neighbours and owners start far
/// apart (a fixed odd multiplier, no seed).
#[inline]
fn homes(owner_slot: u32, coid: ClientOrderId, mask: u64) -> [usize; 2] {
    let spread = coid
        .0
        .wrapping_add((owner_slot as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    [(coid.0 & mask) as usize, (spread & mask) as usize]
}

/// The exact key, for the spill map.
#[inline]
fn full_key(owner_slot: u32, coid: ClientOrderId) -> u128 {
    ((owner_slot as u128) << 64) | coid.0 as u128
}

impl ClientIds {
    /// A map for up to `orders_max` live orders.
    pub(super) fn with_capacity(orders_max: usize) -> Self {
        let n = (2 * orders_max.max(1)).next_power_of_two();
        ClientIds {
            direct: vec![0; n],
            mask: (n - 1) as u64,
            spill: FixedMap::with_capacity(orders_max.max(1)),
        }
    }

    /// Writes every page now, changing nothing (see `Engine::prefault`).
    pub(super) fn prefault(&mut self) {
        for i in (0..self.direct.len()).step_by(1024) {
            let v = core::hint::black_box(self.direct[i]);
            self.direct[i] = v;
        }
        self.spill.prefault();
    }

    fn insert(&mut self, (os, coid): (u32, ClientOrderId), slot: u32) {
        let [a, b] = homes(os, coid, self.mask);
        if self.direct[a] == 0 {
            self.direct[a] = slot + 1;
        } else if self.direct[b] == 0 {
            self.direct[b] = slot + 1;
        } else {
            let ok = self.spill.insert(full_key(os, coid), slot);
            assert!(ok, "client id spill sized to orders_max");
        }
    }

    fn remove(&mut self, (os, coid): (u32, ClientOrderId), slot: u32) {
        let [a, b] = homes(os, coid, self.mask);
        if self.direct[a] == slot + 1 {
            self.direct[a] = 0;
        } else if self.direct[b] == slot + 1 {
            self.direct[b] = 0;
        } else {
            let gone = self.spill.remove(full_key(os, coid));
            assert_eq!(gone, Some(slot), "client id map lacks live slot {slot}");
        }
    }

    fn clear(&mut self) {
        self.direct.fill(0);
        self.spill = FixedMap::with_capacity(self.spill.capacity());
    }

    fn len(&self) -> usize {
        self.direct.iter().filter(|&&s| s != 0).count() + self.spill.len()
    }
}

impl Engine {
    /// Enters the order just allocated at `slot` (called by `alloc_order`).
    #[inline]
    pub(super) fn client_id_insert(&mut self, slot: u32) {
        let o = &self.orders[slot as usize];
        let key = (o.owner_slot, o.coid);
        self.client_ids.insert(key, slot);
    }

    /// Forgets the live order at `slot` (called by `end_order`, before the
    /// slot is cleared).
    #[inline]
    pub(super) fn client_id_remove(&mut self, slot: u32) {
        let o = &self.orders[slot as usize];
        let key = (o.owner_slot, o.coid);
        self.client_ids.remove(key, slot);
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
        for h in homes(os, coid, t.mask) {
            let s = t.direct[h];
            if s != 0 {
                let o = &self.orders[(s - 1) as usize];
                if o.owner_slot == os && o.coid == coid {
                    return Some(s - 1);
                }
            }
        }
        if t.spill.is_empty() {
            return None;
        }
        t.spill.get(full_key(os, coid))
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
    pub(super) fn validate_client_ids(&self) -> Result<(), BrokenInvariant> {
        let n = self.client_ids.len();
        if n != self.order_index.len() {
            return Err(broken!(
                "client id map holds {n} orders, {} are live",
                self.order_index.len()
            ));
        }
        for slot in self.order_index.slots() {
            let o = &self.orders[slot as usize];
            let owner = self.owners[o.owner_slot as usize].id;
            if self.client_id_slot(owner, o.coid) != Some(slot) {
                return Err(broken!(
                    "order {} not found by client order id ({owner}, {})",
                    o.id,
                    o.coid.0
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key whose first entry is taken goes to its second, then to the
    /// spill map; each is removed from where it is.
    #[test]
    fn collisions_take_the_second_entry_then_spill() {
        let mut t = ClientIds::with_capacity(4); // 8 entries
                                                 // Same client order id, three owners: same first entry.
        let (a, b, c) = (
            (0, ClientOrderId(1)),
            (1, ClientOrderId(1)),
            (2, ClientOrderId(1)),
        );
        let hb = homes(b.0, b.1, t.mask);
        assert_eq!(homes(a.0, a.1, t.mask)[0], hb[0]);
        // An owner's consecutive ids are neighbours in both entries.
        let next = homes(b.0, ClientOrderId(2), t.mask);
        assert_eq!((next[0], next[1]), ((hb[0] + 1) & 7, (hb[1] + 1) & 7));
        t.insert(a, 10);
        t.insert(b, 11);
        t.direct[homes(c.0, c.1, t.mask)[1]] = 99; // force c's second entry taken
        t.insert(c, 12);
        assert_eq!(t.spill.get(full_key(c.0, c.1)), Some(12));
        t.remove(a, 10);
        t.remove(c, 12);
        assert_eq!(t.direct[hb[1]], 12);
        t.remove(b, 11);
        assert_eq!((t.len(), t.spill.len()), (1, 0)); // only the forced entry
    }
}
