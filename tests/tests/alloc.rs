//! Allocation test: once built and warmed up, the engine makes no heap
//! allocation per command. A counting global allocator wraps the system
//! allocator and counts only on the thread that sets the `COUNTING` flag, so
//! the test harness's own threads do not pollute the count.
#![allow(unsafe_code)]

use bourse_tests::gen::Gen;
use bourse_tests::reference::Reference;
use engine::{Engine, EngineConfig, Input};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the only extra work is a
// relaxed atomic add and a read of a const-initialised thread local, neither
// of which allocates or unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `n` mixed inputs (every order type, cancels, replaces, stops, icebergs,
/// expiries, mass cancels, halts, book queries, rejects) for `seed`.
fn stream(seed: u64, n: usize) -> Vec<Input> {
    let mut gen = Gen::new(seed);
    let mut r = Reference::new();
    let mut max_live = 0;
    let inputs = (0..n)
        .map(|_| {
            let input = gen.next(&r);
            r.apply(&input);
            max_live = max_live.max(r.live_count());
            input
        })
        .collect();
    // Stay within EngineConfig::small() so no capacity reject is involved.
    assert!(max_live < 3_000, "stream too deep: {max_live} live orders");
    inputs
}

#[test]
fn no_allocation_per_command_in_steady_state() {
    // The counter counts (sanity check of the harness itself).
    COUNTING.with(|c| c.set(true));
    drop(std::hint::black_box(Box::new(1u64)));
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCS.swap(0, Ordering::Relaxed), 1);

    let inputs = stream(7, 60_000);
    let (warmup, measured) = inputs.split_at(10_000);
    let mut engine = Engine::new(EngineConfig::small());
    let mut events = engine.new_events();
    for input in warmup {
        engine.apply(input, &mut events);
    }
    COUNTING.with(|c| c.set(true));
    for input in measured {
        engine.apply(input, &mut events);
    }
    COUNTING.with(|c| c.set(false));
    let n = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(
        n,
        0,
        "{n} heap allocations over {} commands",
        measured.len()
    );
    assert!(engine.validate().is_ok());
}
