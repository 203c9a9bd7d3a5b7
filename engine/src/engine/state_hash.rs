//! The state hash: 128 bits over the whole logical state, never over memory
//! layout.
//!
//! Books are hashed in price-time order, owners in slot order (free ones
//! too: they decide the next slot), the client order id window in order-id
//! order, then the ledger. Hash-table layouts and derived sets are not
//! hashed, so a restored snapshot hashes the same as its source.

use super::*;

impl Engine {
    /// A 128-bit hash of the whole logical state (not of memory layout).
    pub fn state_hash(&self) -> u128 {
        let mut h = StateHasher::new();
        h.bytes(b"bourse-engine-state-v1");
        h.u64(self.now.0);
        h.u64(self.next_order_id);
        h.u64(self.instrument_count as u64);
        for inst in &self.instruments[..self.instrument_count] {
            let s = &inst.spec;
            h.u64(s.id.0 as u64);
            h.bytes(&s.symbol.0);
            h.bytes(&s.base.0);
            h.bytes(&s.quote.0);
            for v in [
                s.tick,
                s.lot_size,
                s.qty_min,
                s.qty_max,
                s.reference_price.0,
                s.band_bps.map_or(u64::MAX, |v| v as u64),
                s.circuit_bps.map_or(u64::MAX, |v| v as u64),
                s.circuit_window_ns,
                s.maker_fee_bps as u64,
                s.taker_fee_bps as u64,
                s.settle as u64,
                s.open_orders_max.map_or(u64::MAX, |v| v as u64),
                s.notional_max.unwrap_or(u64::MAX),
            ] {
                h.u64(v);
            }
            h.u128(s.fee_account.0);
            h.u64(inst.last_trade.map_or(0, |p| p.0));
            h.u64(inst.halted.map_or(0, |r| r as u64 + 1));
            h.u64(inst.window.map_or(u64::MAX, |w| w));
            h.u64(inst.anchor.0);
            for side in [&inst.bids, &inst.asks] {
                h.u64(side.len() as u64);
                for e in side.iter().rev() {
                    let l = &self.levels[e.slot as usize];
                    h.u64(l.price.0);
                    h.u64(l.qty.0);
                    h.u64(l.count as u64);
                    let mut m = l.head;
                    while m != NIL {
                        self.hash_order(&mut h, m);
                        m = self.links[m as usize].next;
                    }
                }
            }
            for stops in [&inst.buy_stops, &inst.sell_stops] {
                h.u64(stops.len() as u64);
                for e in stops.iter().rev() {
                    self.hash_order(&mut h, e.slot);
                }
            }
        }
        self.hash_owners_and_coids(&mut h);
        self.ledger.hash_into(&mut h);
        // Only when armed, so that every state from before the arms existed
        // keeps its hash (recorded golden hashes, older replicas).
        if !self.cod_arms.is_empty() {
            h.bytes(b"cod-arms");
            h.u64(self.cod_arms.len() as u64);
            for &(s, o) in &self.cod_arms {
                h.u64(s);
                h.u64(o);
            }
        }
        h.finish()
    }

    /// Owner records in slot order (free ones too: they decide which slot a
    /// new owner gets), each with its newest order and its live orders in
    /// acceptance order; the free list; then the window's (owner, client
    /// order id) in order-id order. The remembered set itself is derived
    /// from these (the window's pairs and the live orders'), so it is not
    /// hashed: its layout in blocks is not state.
    fn hash_owners_and_coids(&self, h: &mut StateHasher) {
        h.u64(self.owners.len() as u64);
        for ow in &self.owners {
            h.u64(ow.id.0);
            h.u64(ow.last_order);
            let mut m = ow.head;
            while m != NIL {
                h.u64(self.orders[m as usize].id.0);
                m = self.links[m as usize].onext;
            }
            h.u64(u64::MAX); // end of this owner's list
        }
        h.u64(self.owner_free.len() as u64);
        for &s in &self.owner_free {
            h.u64(s as u64);
        }
        h.u64(self.coids.window());
        for k in self.window_ids() {
            let (s, coid) = self.coids.ring_entry(k);
            h.u64(self.owners[s as usize].id.0);
            h.u64(coid);
        }
    }

    fn hash_order(&self, h: &mut StateHasher, slot: u32) {
        let (o, c) = (&self.orders[slot as usize], self.cold_of(slot));
        for v in [
            o.id.0,
            self.owners[o.owner_slot as usize].id.0,
            o.coid.0,
            o.side as u64,
            o.otype as u64,
            o.tif as u64,
            o.stp as u64,
            o.post_only as u64,
            o.price.0,
            c.trigger.0,
            c.expire_at.0,
            o.remaining.0,
            o.visible.0,
            c.display.0,
            c.hold_price.0,
        ] {
            h.u64(v);
        }
        h.u128(c.hold);
        h.u128(c.fee_acc);
    }
}
