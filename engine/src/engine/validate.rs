//! The invariant checker: `validate` walks every structure and names the
//! first invariant broken.
//!
//! It allocates and is slow (tests, snapshot restore, tools), never runs on
//! the hot path, and changes nothing. Slot indexes it follows must be in
//! range (restore checks them first), so it never panics on a bad state.

use super::*;

impl Engine {
    /// Checks every book invariant; `Err` names the first one broken.
    pub fn validate(&self) -> Result<(), BrokenInvariant> {
        // Orders found in books and stop lists (also bounds every walk: a
        // cycle counts past the pool's size).
        let mut live = 0usize;
        for ii in 0..self.instrument_count {
            self.validate_instrument(ii, &mut live)?;
        }
        if live != self.order_index.len() {
            return Err(broken!(
                "{} orders in books and stop lists, {} in the index",
                live,
                self.order_index.len()
            ));
        }
        if self.orders.len() - self.order_free.len() != live {
            return Err("order pool leaks slots".into());
        }
        self.validate_index_and_heap()?;
        self.validate_client_ids()?;
        let per_key = self.validate_owner_lists(live)?;
        self.validate_owners_and_coids()?;
        if per_key.len() != self.open_counts.len()
            || per_key
                .iter()
                .any(|&(k, n)| self.open_counts.get(k) != Some(n))
        {
            return Err("open order counts wrong".into());
        }
        if !self.triggered_batch.is_empty() || !self.fire_queue.is_empty() {
            return Err("stops left half-fired".into());
        }
        self.validate_holds()
    }

    /// One instrument's book (both sides' levels, never crossed) and stop
    /// lists; adds the orders met to `live`.
    fn validate_instrument(&self, ii: usize, live: &mut usize) -> Result<(), BrokenInvariant> {
        let inst = &self.instruments[ii];
        let id = inst.spec.id;
        for (side, v) in [(Side::Buy, &inst.bids), (Side::Sell, &inst.asks)] {
            for w in v.windows(2) {
                if w[0].key >= w[1].key {
                    return Err(broken!("{id:?} {side:?}: levels not strictly sorted"));
                }
            }
            if v.len() > self.cfg.levels_max as usize {
                return Err(broken!("{id:?} {side:?}: more levels than levels_max"));
            }
            for e in v {
                self.validate_level(ii, side, e, live)?;
            }
        }
        self.check_level_caches(ii)?;
        if let (Some(b), Some(a)) = (inst.bids.last(), inst.asks.last()) {
            if self.levels[b.slot as usize].price >= self.levels[a.slot as usize].price {
                return Err(broken!("{id:?}: book crossed"));
            }
        }
        for (side, v) in [(Side::Buy, &inst.buy_stops), (Side::Sell, &inst.sell_stops)] {
            for w in v.windows(2) {
                if w[0].key > w[1].key {
                    return Err(broken!("{id:?} {side:?}: stops not sorted"));
                }
            }
            for e in v {
                let o = &self.orders[e.slot as usize];
                let trigger = self.cold_of(e.slot).trigger;
                if o.state != OrderState::Stop || o.side != side || e.key != stop_key(side, trigger)
                {
                    return Err(broken!("{id:?}: stop {} misfiled", o.id));
                }
                if let Some(last) = inst.last_trade {
                    if stop_condition(side, trigger, last) {
                        return Err(broken!("stop {} should have fired at {last}", o.id));
                    }
                }
                *live += 1;
            }
        }
        Ok(())
    }

    /// One level of instrument `ii`'s `side`: its key, its queue (each order
    /// resting there, restable, with sane visible and remaining parts) and
    /// its totals; adds the orders met to `live`.
    fn validate_level(
        &self,
        ii: usize,
        side: Side,
        e: &Entry,
        live: &mut usize,
    ) -> Result<(), BrokenInvariant> {
        let id = self.instruments[ii].spec.id;
        let l = &self.levels[e.slot as usize];
        if e.key != side_key(side, l.price) {
            return Err(broken!("{id:?} {side:?}: level key/price mismatch"));
        }
        if l.count == 0 || l.head == NIL {
            return Err(broken!("{id:?} {side:?} {}: empty level", l.price));
        }
        let (mut qty, mut count, mut prev) = (0u64, 0u32, NIL);
        let mut m = l.head;
        while m != NIL {
            let (o, c) = (&self.orders[m as usize], self.cold_of(m));
            if o.state != OrderState::Resting
                || o.level != e.slot
                || self.links[m as usize].prev != prev
                || o.price != l.price
                || o.side != side
                || o.inst as usize != ii
            {
                return Err(broken!(
                    "{id:?} order {} misfiled in level {}",
                    o.id,
                    l.price
                ));
            }
            if o.visible.0 == 0
                || o.visible > o.remaining
                || (c.display.0 == 0 && o.visible != o.remaining)
                || (c.display.0 > 0 && o.visible > c.display)
            {
                return Err(broken!("order {}: bad visible/remaining", o.id));
            }
            if o.tif != Tif::Gtc && o.tif != Tif::Gtd
                || o.otype == OrderType::Market
                || o.otype == OrderType::Stop
            {
                return Err(broken!("order {}: a non-resting order rests", o.id));
            }
            if o.tif == Tif::Gtd && c.expire_at <= self.now {
                return Err(broken!("order {}: expired but resting", o.id));
            }
            qty = qty.checked_add(o.visible.0).ok_or("level qty overflows")?;
            count += 1;
            prev = m;
            m = self.links[m as usize].next;
            *live += 1;
            if *live > self.orders.len() {
                return Err("cycle in a level queue".into());
            }
        }
        if l.tail != prev || qty != l.qty.0 || count != l.count {
            return Err(broken!("{id:?} {side:?} {}: level totals wrong", l.price));
        }
        Ok(())
    }

    /// Every indexed order: found at its slot, its client order id held and
    /// in its window entry, older than its owner's newest and the next id,
    /// in the expiry heap exactly when GTD; the heap holds only those and is
    /// ordered.
    fn validate_index_and_heap(&self) -> Result<(), BrokenInvariant> {
        let mut gtd = 0usize;
        for slot in self.order_index.slots() {
            let (o, c) = (&self.orders[slot as usize], self.cold_of(slot));
            if self
                .order_index
                .get(o.id.0, |s| self.orders[s as usize].id.0)
                != Some(slot)
            {
                return Err(broken!("index does not find order {} at its slot", o.id));
            }
            let ow = &self.owners[o.owner_slot as usize];
            if !ow.coids.any || o.coid.0 > ow.coids.max {
                return Err(broken!(
                    "order {}: client order id above its owner's maximum",
                    o.id
                ));
            }
            if !self.coids.contains(&ow.coids, ow.id.0, o.coid.0) {
                return Err(broken!("order {}: client order id forgotten", o.id));
            }
            if ow.last_order < o.id.0 {
                return Err(broken!("order {}: newer than its owner's newest", o.id));
            }
            if !self.before_window(o.id.0)
                && self.coids.ring_entry(o.id.0) != (o.owner_slot, o.coid.0)
            {
                return Err(broken!("order {}: window entry differs", o.id));
            }
            if o.tif == Tif::Gtd {
                gtd += 1;
                if self.heap.get(c.heap_pos as usize) != Some(&slot) {
                    return Err(broken!("order {}: heap position wrong", o.id));
                }
            }
            if o.id.0 >= self.next_order_id {
                return Err(broken!("order {} from the future", o.id));
            }
            if o.iceberg != (c.display.0 > 0) {
                return Err(broken!("order {}: iceberg flag wrong", o.id));
            }
        }
        if gtd != self.heap.len() {
            return Err("expiry heap holds dead orders".into());
        }
        for i in 1..self.heap.len() {
            if self.heap_less(self.heap[i], self.heap[(i - 1) / 2]) {
                return Err("expiry heap order broken".into());
            }
        }
        Ok(())
    }

    /// Owner lists: each links exactly its owner's `live` orders in
    /// acceptance order. Returns the open-order count per (owner, instrument)
    /// for instruments that limit them.
    fn validate_owner_lists(&self, live: usize) -> Result<Vec<(u128, u32)>, BrokenInvariant> {
        let mut counted = 0usize;
        let mut per_key: Vec<(u128, u32)> = Vec::new();
        for (os, ow) in self.owners.iter().enumerate() {
            let (mut m, mut prev) = (ow.head, NIL);
            while m != NIL {
                let o = &self.orders[m as usize];
                if o.owner_slot as usize != os || self.links[m as usize].oprev != prev {
                    return Err(broken!("order {}: owner list broken", o.id));
                }
                if prev != NIL && self.orders[prev as usize].id >= o.id {
                    return Err(broken!("owner {}: list not in acceptance order", ow.id));
                }
                let key = open_key(os as u32, o.inst);
                if self.instruments[o.inst as usize]
                    .spec
                    .open_orders_max
                    .is_some()
                {
                    match per_key.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, n)) => *n += 1,
                        None => per_key.push((key, 1)),
                    }
                }
                counted += 1;
                if counted > self.orders.len() {
                    return Err("cycle in an owner list".into());
                }
                prev = m;
                m = self.links[m as usize].onext;
            }
            if ow.tail != prev {
                return Err(broken!("owner {}: tail wrong", ow.id));
            }
        }
        if counted != live {
            return Err(broken!("{counted} orders in owner lists, {live} live"));
        }
        Ok(per_key)
    }

    /// Every hold equals what its order can still need; the ledger checks
    /// that the accounts' pending debits are exactly these holds plus
    /// pending transfers, and conservation per asset.
    fn validate_holds(&self) -> Result<(), BrokenInvariant> {
        let mut holds = vec![0u128; self.ledger.accounts_len()];
        for slot in self.order_index.slots() {
            let (o, c) = (&self.orders[slot as usize], self.cold_of(slot));
            if o.pay == NO_ACCOUNT {
                if c.hold != 0 {
                    return Err(broken!("order {}: hold without an account", o.id));
                }
                continue;
            }
            let need = self.need(slot);
            if c.hold != need {
                return Err(broken!(
                    "order {}: holds {} but needs {}",
                    o.id,
                    c.hold,
                    need
                ));
            }
            holds[o.pay as usize] = holds[o.pay as usize]
                .checked_add(c.hold)
                .ok_or("holds overflow")?;
        }
        self.ledger.validate(&holds)
    }

    /// Owner records (free ones empty and listed once, the others indexed and
    /// still needed) and the remembered set: exactly the window's pairs plus
    /// live older orders' pairs (`validate` has checked live orders' pairs
    /// are held and match their window entries).
    fn validate_owners_and_coids(&self) -> Result<(), BrokenInvariant> {
        let mut free = vec![false; self.owners.len()];
        for &s in &self.owner_free {
            match free.get_mut(s as usize) {
                Some(f) if !*f => *f = true,
                _ => return Err(broken!("owner free list: slot {s} bad or twice")),
            }
        }
        for (s, ow) in self.owners.iter().enumerate() {
            if free[s] != (ow.last_order == 0) {
                return Err(broken!("owner slot {s}: free list and record disagree"));
            }
            if free[s] {
                if ow.head != NIL || ow.coids != OwnerCoids::default() {
                    return Err(broken!("owner slot {s}: free but not empty"));
                }
                continue;
            }
            if self.owner_index.get(ow.id.0 as u128) != Some(s as u32) {
                return Err(broken!("owner {}: not indexed at its slot", ow.id));
            }
            if ow.last_order >= self.next_order_id {
                return Err(broken!("owner {}: newest order from the future", ow.id));
            }
            if ow.head == NIL && self.before_window(ow.last_order) {
                return Err(broken!("owner {}: idle but not freed", ow.id));
            }
        }
        if self.owner_index.len() + self.owner_free.len() != self.owners.len() {
            return Err("owner index and free list do not cover the owners".into());
        }
        // The window's pairs, each held once, on a live owner record.
        let mut held = 0u64;
        for k in self.window_ids() {
            let (s, coid) = self.coids.ring_entry(k);
            let Some(ow) = self.owners.get(s as usize).filter(|o| o.last_order >= k) else {
                return Err(broken!("order {k}: window entry names owner slot {s}"));
            };
            if !self.coids.contains(&ow.coids, ow.id.0, coid) {
                return Err(broken!("order {k}: client order id {coid} forgotten"));
            }
            held += 1;
        }
        for slot in self.order_index.slots() {
            held += self.before_window(self.orders[slot as usize].id.0) as u64;
        }
        let bits: u64 = self
            .coids
            .blocks(self.owners.iter().map(|o| (o.id.0, &o.coids)))
            .values()
            .map(|b| b.count_ones() as u64)
            .sum();
        if bits != held {
            return Err(broken!(
                "{bits} client order ids held, {held} in the window or live"
            ));
        }
        Ok(())
    }
}
