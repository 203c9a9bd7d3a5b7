//! The order pool and the owner records: where every live order lives.
//!
//! An order is a slot in three parallel preallocated arrays: the hot
//! `Order` (64 bytes, what matching touches), the cold `OrderCold` (stops,
//! GTD, icebergs, settlement; written only when it differs from
//! `plain_cold`) and its `Links` (level queue and owner list). A slot is
//! live exactly while the order id is in `order_index`; `end_order` is the
//! one way out and unlinks the order from every structure it joined.
//! Owner records live while the owner has a live order or an order in the
//! client order id window (the last W accepted), then are freed for reuse.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OrderState {
    Free,
    /// Being matched (incoming, triggered or replaced-and-crossing).
    Active,
    /// In a price level.
    Resting,
    /// Waiting for its trigger.
    Stop,
}

/// The hot part of an order: what placing, matching, resting and cancelling
/// read and write for every order (64 bytes; checked by a test). The
/// rest is in `OrderCold` at the same slot, touched only for orders that use
/// it (see `cold_set`). Aligned to a cache line so that reading one order
/// (a random cancel's miss) brings in one line, not the two a record
/// straddling a line boundary would (the allocator only aligns to 16).
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub(super) struct Order {
    pub(super) id: OrderId,
    pub(super) coid: ClientOrderId,
    pub(super) price: Price,
    pub(super) remaining: Qty,
    pub(super) visible: Qty,
    pub(super) inst: u32,
    pub(super) level: u32,
    /// The owner (`owners[owner_slot].id` is the order's `OwnerId`).
    pub(super) owner_slot: u32,
    /// Settling instruments: the account the hold sits on (buy: quote,
    /// sell: base); `NO_ACCOUNT` otherwise.
    pub(super) pay: u32,
    pub(super) side: Side,
    pub(super) otype: OrderType,
    pub(super) tif: Tif,
    pub(super) stp: Stp,
    pub(super) post_only: bool,
    pub(super) state: OrderState,
    /// `OrderCold::display > 0`: matching reads the cold part only then.
    pub(super) iceberg: bool,
    /// Whether `Engine::cold[slot]` holds this order's cold part. When not,
    /// the cold part is `plain_cold(self)` (what a plain limit or market
    /// order has) and the array entry is stale: placing and cancelling a
    /// plain order never touches the cold array.
    pub(super) cold_set: bool,
}

impl Default for Order {
    fn default() -> Self {
        Order {
            id: OrderId(0),
            coid: ClientOrderId(0),
            price: Price(0),
            remaining: Qty(0),
            visible: Qty(0),
            inst: NIL,
            level: NIL,
            owner_slot: NIL,
            pay: NO_ACCOUNT,
            side: Side::Buy,
            otype: OrderType::Limit,
            tif: Tif::Gtc,
            stp: Stp::None,
            post_only: false,
            state: OrderState::Free,
            iceberg: false,
            cold_set: false,
        }
    }
}

/// The cold part of an order, at the same slot as its `Order`: what only
/// stops (trigger), GTD orders (expiry and heap position), icebergs
/// (display) and settling instruments (hold and fees) use. For any other
/// order it equals `plain_cold` and is not stored (`Order::cold_set` false),
/// so a plain order's placing, fills and cancel never touch this array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OrderCold {
    pub(super) trigger: Price,
    /// `u64::MAX` when the order does not expire.
    pub(super) expire_at: Timestamp,
    /// 0: not an iceberg.
    pub(super) display: Qty,
    /// Buy holds: the price per lot the hold covers (limit, or band edge).
    pub(super) hold_price: Price,
    /// Position in the expiry heap (GTD orders), `NIL` otherwise.
    pub(super) heap_pos: u32,
    /// Settling instruments: the account fills pay into; `NO_ACCOUNT` otherwise.
    pub(super) recv: u32,
    /// What the hold reserves now (equals `Engine::need` between commands).
    pub(super) hold: u128,
    /// Σ fill notional × fee bps so far (fee rounding is cumulative, conv. 17).
    pub(super) fee_acc: u128,
}

const COLD_FREE: OrderCold = OrderCold {
    trigger: Price(0),
    expire_at: Timestamp(u64::MAX),
    display: Qty(0),
    hold_price: Price(0),
    heap_pos: NIL,
    recv: NO_ACCOUNT,
    hold: 0,
    fee_acc: 0,
};

impl Default for OrderCold {
    fn default() -> Self {
        COLD_FREE
    }
}

/// The cold part of an order that keeps none of its own: no trigger, no
/// expiry, no display, no settlement; a buy with a price holds at it
/// (`hold_price` is kept for every order, as the state hash and snapshots
/// carry it).
#[inline]
pub(super) fn plain_cold(o: &Order) -> OrderCold {
    OrderCold {
        hold_price: if o.side == Side::Buy && o.otype.has_price() {
            o.price
        } else {
            Price(0)
        },
        ..COLD_FREE
    }
}

/// An order's links in its level queue and its owner's list, kept apart
/// from `Order` (16 bytes a slot): unlinking an order touches its
/// neighbours' links, not their whole records, so cancels in a deep book
/// miss the cache less.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Links {
    pub(super) prev: u32,
    pub(super) next: u32,
    pub(super) oprev: u32,
    pub(super) onext: u32,
}

const NO_LINKS: Links = Links {
    prev: NIL,
    next: NIL,
    oprev: NIL,
    onext: NIL,
};

impl Default for Links {
    fn default() -> Self {
        NO_LINKS
    }
}

/// An owner record: live while the owner has a live order or an order in
/// the client order id window, then free for another owner (see
/// `release_owner_if_idle`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Owner {
    pub(super) id: OwnerId,
    pub(super) head: u32,
    pub(super) tail: u32,
    /// The owner's newest accepted order id; 0 marks a free record.
    pub(super) last_order: u64,
    /// Client order ids held (highest, and the bitmap block being filled).
    pub(super) coids: OwnerCoids,
}

#[inline]
pub(super) fn open_key(owner_slot: u32, inst: u32) -> u128 {
    ((owner_slot as u128) << 32) | inst as u128
}

impl Engine {
    pub(super) fn alloc_order(&mut self, mut o: Order, c: OrderCold) -> u32 {
        o.cold_set = Self::needs_cold(&o, &c);
        let slot = match self.order_free.pop() {
            Some(s) => {
                self.orders[s as usize] = o;
                if o.cold_set {
                    self.cold[s as usize] = c;
                }
                self.links[s as usize] = NO_LINKS;
                s
            }
            None => {
                assert!(
                    self.orders.len() < self.orders.capacity(),
                    "order pool exhausted past the capacity check"
                );
                self.orders.push(o);
                self.cold.push(c);
                self.links.push(NO_LINKS);
                (self.orders.len() - 1) as u32
            }
        };
        let ok = self.order_index.insert(o.id.0, slot);
        assert!(ok, "order index sized to orders_max");
        self.client_id_insert(slot);
        if self.instruments[o.inst as usize]
            .spec
            .open_orders_max
            .is_some()
        {
            let key = open_key(o.owner_slot, o.inst);
            let n = self.open_counts.get(key).unwrap_or(0);
            let ok = self.open_counts.insert(key, n + 1);
            assert!(ok, "open counts sized to orders_max");
        }
        if o.tif == Tif::Gtd {
            self.heap_push(slot);
        }
        slot
    }

    /// Removes a live order from every structure and frees its slot. The
    /// caller has already reported why.
    pub(super) fn end_order(&mut self, slot: u32) {
        let o = self.orders[slot as usize];
        if o.pay != NO_ACCOUNT {
            self.ledger.hold_release(o.pay, self.cold_of(slot).hold);
        }
        match o.state {
            OrderState::Resting => self.unlink_from_book(slot),
            OrderState::Stop => self.remove_stop(slot),
            OrderState::Active => {}
            OrderState::Free => panic!("end_order on a free slot {slot}"),
        }
        // A triggered stop may still sit in the fire queue or batch only
        // while Active, and Active orders are never ended from outside.
        self.unlink_owner(slot);
        if self.before_window(o.id.0) {
            // Kept past the window only because it was live.
            let ow = &mut self.owners[o.owner_slot as usize];
            self.coids.remove(&mut ow.coids, ow.id.0, o.coid.0);
        }
        // Every live GTD order, and only those, is in the expiry heap.
        if o.tif == Tif::Gtd {
            self.heap_remove(slot);
        }
        if self.instruments[o.inst as usize]
            .spec
            .open_orders_max
            .is_some()
        {
            let key = open_key(o.owner_slot, o.inst);
            match self.open_counts.get(key) {
                Some(1) => {
                    self.open_counts.remove(key);
                }
                Some(n) => {
                    self.open_counts.insert(key, n - 1);
                }
                None => panic!("open count missing for live order {}", o.id),
            }
        }
        let removed = self.order_index.remove(o.id.0, slot);
        assert!(removed, "order index out of step");
        self.client_id_remove(slot);
        // The cold part is left as it is: nothing reads a free slot's.
        self.orders[slot as usize] = Order::default();
        self.order_free.push(slot);
        self.release_owner_if_idle(o.owner_slot);
    }

    /// Cancels what is left of `o` (the order at `slot`) for `reason`, then ends it.
    #[inline]
    pub(super) fn cancel_rest(
        &mut self,
        slot: u32,
        o: &Order,
        reason: CancelReason,
        out: &mut Events,
    ) {
        out.push(self.canceled(o, o.remaining, reason));
        self.end_order(slot);
    }

    /// An order's cold part (stored, or the plain one).
    #[inline]
    pub(super) fn cold_of(&self, slot: u32) -> OrderCold {
        let o = &self.orders[slot as usize];
        if o.cold_set {
            self.cold[slot as usize]
        } else {
            plain_cold(o)
        }
    }

    /// Whether an order with these parts must keep its cold part: it differs
    /// from the plain one, or may change (holds, fees, heap position).
    pub(super) fn needs_cold(o: &Order, c: &OrderCold) -> bool {
        o.pay != NO_ACCOUNT || o.tif == Tif::Gtd || *c != plain_cold(o)
    }

    /// Stores an order's cold part from here on (before a change that the
    /// plain one cannot describe).
    pub(super) fn keep_cold(&mut self, slot: u32) {
        if !self.orders[slot as usize].cold_set {
            self.cold[slot as usize] = self.cold_of(slot);
            self.orders[slot as usize].cold_set = true;
        }
    }

    pub(super) fn link_owner(&mut self, slot: u32) {
        let os = self.orders[slot as usize].owner_slot;
        let tail = self.owners[os as usize].tail;
        let l = &mut self.links[slot as usize];
        l.oprev = tail;
        l.onext = NIL;
        if tail == NIL {
            self.owners[os as usize].head = slot;
        } else {
            self.links[tail as usize].onext = slot;
        }
        self.owners[os as usize].tail = slot;
    }

    fn unlink_owner(&mut self, slot: u32) {
        let os = self.orders[slot as usize].owner_slot;
        let Links { oprev, onext, .. } = self.links[slot as usize];
        if oprev == NIL {
            self.owners[os as usize].head = onext;
        } else {
            self.links[oprev as usize].onext = onext;
        }
        if onext == NIL {
            self.owners[os as usize].tail = oprev;
        } else {
            self.links[onext as usize].oprev = oprev;
        }
    }

    /// A record for an owner not seen in the window and without live
    /// orders: a freed one if any (the caller checked capacity).
    pub(super) fn new_owner(&mut self, id: OwnerId) -> u32 {
        let rec = Owner {
            id,
            head: NIL,
            tail: NIL,
            last_order: 0,
            coids: OwnerCoids::default(),
        };
        let s = match self.owner_free.pop() {
            Some(s) => {
                self.owners[s as usize] = rec;
                s
            }
            None => {
                assert!(
                    self.owners.len() < self.owners.capacity(),
                    "owner table full past the capacity check"
                );
                self.owners.push(rec);
                (self.owners.len() - 1) as u32
            }
        };
        let ok = self.owner_index.insert(id.0 as u128, s);
        assert!(ok, "owner index sized to owners_max");
        s
    }

    /// Whether order `id` is outside the client order id window (older than
    /// the last W accepted orders).
    #[inline]
    pub(super) fn before_window(&self, id: u64) -> bool {
        id.saturating_add(self.coids.window()) < self.next_order_id
    }

    /// The ids of the orders in the client order id window (the last W accepted).
    pub(super) fn window_ids(&self) -> core::ops::Range<u64> {
        let first = self
            .next_order_id
            .saturating_sub(self.coids.window())
            .max(1);
        first..self.next_order_id
    }

    /// Remembers the client order id of the order just accepted as `id` and
    /// forgets the one of the order that left the window with it, unless
    /// that order is still live (then `end_order` forgets it).
    #[inline]
    pub(super) fn remember_coid(&mut self, owner_slot: u32, coid: ClientOrderId, id: OrderId) {
        let ow = &mut self.owners[owner_slot as usize];
        ow.last_order = id.0;
        self.coids.insert(&mut ow.coids, ow.id.0, coid.0);
        let Some((old_slot, old_coid)) = self.coids.push_order(id.0, owner_slot, coid.0) else {
            return;
        };
        let old_id = id.0 - self.coids.window();
        let live = self
            .order_index
            .get(old_id, |s| self.orders[s as usize].id.0)
            .is_some();
        if !live {
            let ow = &mut self.owners[old_slot as usize];
            self.coids.remove(&mut ow.coids, ow.id.0, old_coid);
            self.release_owner_if_idle(old_slot);
        }
    }

    /// Frees an owner record once nothing in it matters any more: no live
    /// order and no order in the window (so it holds no client order id).
    #[inline]
    pub(super) fn release_owner_if_idle(&mut self, s: u32) {
        let ow = &self.owners[s as usize];
        if ow.head != NIL || !self.before_window(ow.last_order) {
            return;
        }
        assert!(
            !ow.coids.has_block || ow.coids.bits == 0,
            "owner {} freed holding client order ids",
            ow.id
        );
        let removed = self.owner_index.remove(ow.id.0 as u128);
        assert_eq!(removed, Some(s), "owner index out of step");
        self.owners[s as usize] = Owner {
            head: NIL,
            tail: NIL,
            ..Owner::default()
        };
        self.owner_free.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hot order record stays within one cache line's worth of bytes
    /// (the cold rest is in `OrderCold`).
    #[test]
    fn hot_order_is_64_bytes_at_most() {
        let (hot, cold) = (
            std::mem::size_of::<Order>(),
            std::mem::size_of::<OrderCold>(),
        );
        assert!(hot <= 64, "size_of::<Order>() = {hot}");
        assert_eq!(
            std::mem::align_of::<Order>(),
            64,
            "one order, one cache line"
        );
        assert!(cold <= 96, "size_of::<OrderCold>() = {cold}");
    }
}
