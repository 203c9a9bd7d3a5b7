//! GTD expiry: an indexed binary min-heap of order slots keyed by
//! `(expire_at, order_id)`.
//!
//! Every live GTD order, and only those, is in the heap, and its cold part
//! holds its position (`heap_pos`), so removal by slot is O(log n). `expire`
//! runs before each command and cancels every order whose time has come,
//! earliest first (ties by order id).

use super::*;

impl Engine {
    pub(super) fn expire(&mut self, out: &mut Events) {
        while let Some(&top) = self.heap.first() {
            if self.cold_of(top).expire_at > self.now {
                break;
            }
            let o = self.orders[top as usize];
            out.push(self.canceled(&o, o.remaining, CancelReason::Expired));
            self.end_order(top);
        }
    }

    pub(super) fn heap_less(&self, a: u32, b: u32) -> bool {
        let (x, y) = (self.cold_of(a), self.cold_of(b));
        (x.expire_at, self.orders[a as usize].id) < (y.expire_at, self.orders[b as usize].id)
    }

    fn heap_set(&mut self, pos: usize, slot: u32) {
        self.heap[pos] = slot;
        self.cold[slot as usize].heap_pos = pos as u32;
    }

    pub(super) fn heap_push(&mut self, slot: u32) {
        assert!(self.heap.len() < self.heap.capacity(), "expiry heap full");
        self.heap.push(slot);
        let pos = self.heap.len() - 1;
        self.cold[slot as usize].heap_pos = pos as u32;
        self.heap_up(pos);
    }

    pub(super) fn heap_remove(&mut self, slot: u32) {
        let pos = self.cold_of(slot).heap_pos as usize;
        let last = self.heap.pop().expect("heap_remove on an empty heap");
        self.cold[slot as usize].heap_pos = NIL;
        if last != slot {
            self.heap_set(pos, last);
            self.heap_up(pos);
            let p = self.cold_of(last).heap_pos as usize;
            self.heap_down(p);
        }
    }

    fn heap_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.heap_less(self.heap[pos], self.heap[parent]) {
                let (a, b) = (self.heap[pos], self.heap[parent]);
                self.heap_set(pos, b);
                self.heap_set(parent, a);
                pos = parent;
            } else {
                break;
            }
        }
    }

    fn heap_down(&mut self, mut pos: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * pos + 1, 2 * pos + 2);
            let mut m = pos;
            if l < n && self.heap_less(self.heap[l], self.heap[m]) {
                m = l;
            }
            if r < n && self.heap_less(self.heap[r], self.heap[m]) {
                m = r;
            }
            if m == pos {
                break;
            }
            let (a, b) = (self.heap[pos], self.heap[m]);
            self.heap_set(pos, b);
            self.heap_set(m, a);
            pos = m;
        }
    }
}
