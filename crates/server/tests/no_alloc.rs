//! In steady state a `get` of an existing key and a `set` that replaces a value of the same
//! size allocate nothing: the parser borrows from the read buffer, the store reuses the item's
//! allocation, and replies go into the connection's retained output buffer.
//!
//! This is a property, checked by counting allocations, not a timing.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use rampart_server::authz::Identity;
use rampart_server::config::{Config, ProtocolChoice};
use rampart_server::output::{HOLD_FROM_BYTES, Output};
use rampart_server::session::Session;
use rampart_server::shard::{Router, Shard};
use rampart_server::worker::{Process, Worker};
use rampart_store::StoreConfig;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only a
// thread-local integer.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn worker() -> Worker {
    let config = Arc::new(Config::default());
    let store = StoreConfig {
        max_bytes: config.memory_limit_bytes,
        evict: true,
        cas_start: 1,
        cas_stride: 1,
        item_size_max: usize::MAX,
        cas_enabled: true,
    };
    let router = Router::single(Rc::new(Shard::new(0, store)));
    Worker::new(config, Arc::new(Process::default()), router, 0)
}

#[test]
fn steady_state_get_and_same_size_set_allocate_nothing() {
    let worker = worker();
    let mut session = Session::new(Identity::Anonymous, ProtocolChoice::Auto);
    let mut out = Output::with_capacity(64 * 1024);
    let now = 1_800_000_000;
    let set_a = [&b"set k 0 0 100\r\n"[..], &[b'a'; 100], b"\r\n"].concat();
    let set_b = [&b"set k 7 0 100\r\n"[..], &[b'b'; 100], b"\r\n"].concat();
    let get = b"get k\r\n";
    let multi_get = b"gets k missing k\r\n";

    // The counter itself works: a test that cannot fail proves nothing.
    let probe = allocations_during(|| {
        std::hint::black_box(Vec::<u8>::with_capacity(8));
    });
    assert_eq!(probe, 1);

    // Warm up: the item exists and every buffer has reached its working size.
    for input in [&set_a[..], get, multi_get, &set_b] {
        session.process(input, &worker, now, 20, &mut out);
        out.clear();
    }

    let n = allocations_during(|| {
        session.process(get, &worker, now, 20, &mut out);
    });
    assert!(
        out.to_vec().starts_with(b"VALUE k 7 100\r\nbbbb"),
        "{:?}",
        String::from_utf8_lossy(&out.to_vec())
    );
    assert_eq!(n, 0, "get of an existing key allocated");
    out.clear();

    let n = allocations_during(|| {
        session.process(multi_get, &worker, now, 20, &mut out);
    });
    assert_eq!(n, 0, "multi-key gets allocated");
    out.clear();

    for input in [&set_a, &set_b] {
        let n = allocations_during(|| {
            session.process(input, &worker, now, 20, &mut out);
        });
        assert_eq!(out.to_vec(), b"STORED\r\n");
        assert_eq!(n, 0, "same-size set allocated");
        out.clear();
    }

    // A long value is held, not copied: the output's bytes are only the reply's lines.
    let long = vec![b'L'; 4 * HOLD_FROM_BYTES];
    let set_long = [
        format!("set long 0 0 {}\r\n", long.len()).as_bytes(),
        &long,
        b"\r\n",
    ]
    .concat();
    let get_long = b"get long\r\nmg long v\r\n";
    for input in [&set_long[..], get_long] {
        session.process(input, &worker, now, 20, &mut out);
        out.clear();
    }
    let n = allocations_during(|| {
        session.process(get_long, &worker, now, 20, &mut out);
    });
    assert_eq!(n, 0, "a get of a held value allocated");
    assert!(!out.is_contiguous());
    let head = format!("VALUE long 0 {}\r\n", long.len());
    let mg_head = format!("VA {}\r\n", long.len());
    let expected = [
        head.as_bytes(),
        &long,
        b"\r\nEND\r\n",
        mg_head.as_bytes(),
        &long,
        b"\r\n",
    ]
    .concat();
    assert_eq!(out.to_vec(), expected);
    assert_eq!(out.pending(), expected.len());
    out.clear();
}
