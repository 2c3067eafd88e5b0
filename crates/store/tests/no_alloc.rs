//! Steady-state reads and same-size overwrites must not touch the allocator.
//!
//! An integration test of its own so the counting global allocator applies only here.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rampart_store::{SetMode, Store, StoreConfig, StoreOutcome};

/// Counts allocations made by the current thread, so other test threads do not interfere.
struct CountingAlloc;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` unchanged; the thread-local counter is a const-
// initialised `Cell` that itself never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

#[test]
fn get_and_same_size_set_do_not_allocate() {
    let mut store = Store::new(StoreConfig {
        max_bytes: 1 << 20,
        evict: true,
        cas_start: 1,
        cas_stride: 1,
        item_size_max: usize::MAX,
        cas_enabled: true,
    });
    let now = 1_700_000_000;
    let value_a = [b'a'; 100];
    let value_b = [b'b'; 100];
    for i in 0..100u32 {
        let key = format!("key:{i}");
        let r = store.store(SetMode::Set, key.as_bytes(), 0, 0, &value_a, now);
        assert_eq!(r, StoreOutcome::Stored);
    }

    let n = allocations_during(|| {
        for round in 0..10 {
            let hit = store.get(b"key:42", now + round).unwrap();
            assert_eq!(hit.value.len(), 100);
            assert!(store.get(b"missing", now + round).is_none());
        }
    });
    assert_eq!(n, 0, "get allocated");

    let n = allocations_during(|| {
        for round in 0..10 {
            let value = if round % 2 == 0 { &value_b } else { &value_a };
            let r = store.store(SetMode::Set, b"key:7", 3, 60, value, now + round);
            assert_eq!(r, StoreOutcome::Stored);
        }
    });
    assert_eq!(n, 0, "same-size set allocated");
    assert_eq!(store.get(b"key:7", now + 10).unwrap().value, &value_a[..]);
}
