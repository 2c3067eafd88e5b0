// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::ITEM_OVERHEAD_BYTES;

const NOW: UnixSecs = 1_700_000_000;
const BIG_BYTES: usize = 1 << 20;

fn store_with(max_bytes: usize, evict: bool) -> Store {
    Store::new(StoreConfig {
        evict,
        ..StoreConfig::single(max_bytes)
    })
}

fn big() -> Store {
    store_with(BIG_BYTES, true)
}

fn set(s: &mut Store, key: &str, value: &str, exptime: i64, now: UnixSecs) -> StoreOutcome {
    s.store(
        SetMode::Set,
        key.as_bytes(),
        0,
        exptime,
        value.as_bytes(),
        now,
    )
}

fn value(s: &mut Store, key: &str, now: UnixSecs) -> Option<String> {
    s.get(key.as_bytes(), now)
        .map(|v| String::from_utf8(v.value.to_vec()).unwrap())
}

fn charge(key: &str, value: &str) -> usize {
    key.len() + value.len() + ITEM_OVERHEAD_BYTES
}

#[test]
fn slot_is_40_bytes() {
    assert_eq!(std::mem::size_of::<crate::table::Slot>(), 40);
}

/// What a reply holds is the value as it was read, whatever the store does next: a same-length
/// `set` (written in place when nothing holds the value), `incr` (in place too), `append`,
/// `delete`, eviction.
#[test]
fn a_held_value_keeps_its_bytes() {
    use crate::SharedValue;
    let mut s = big();
    let hold = |s: &mut Store, key: &str| {
        let item = s.get(key.as_bytes(), 100).expect("hit");
        SharedValue::tail(
            item.shared.expect("a stored item is shared"),
            item.value.len(),
        )
    };
    set(&mut s, "k", "aaaa", 0, 100);
    let first = hold(&mut s, "k");
    set(&mut s, "k", "bbbb", 0, 100);
    assert_eq!(first.as_slice(), b"aaaa");
    assert_eq!(value(&mut s, "k", 100).as_deref(), Some("bbbb"));
    let second = hold(&mut s, "k");
    drop(second);
    // Nothing holds it now: written in place.
    set(&mut s, "k", "cccc", 0, 100);
    assert_eq!(value(&mut s, "k", 100).as_deref(), Some("cccc"));

    set(&mut s, "n", "10", 0, 100);
    let number = hold(&mut s, "n");
    assert_eq!(s.arith(b"n", true, 5, 100), ArithOutcome::Value(15));
    assert_eq!(number.as_slice(), b"10");
    assert_eq!(value(&mut s, "n", 100).as_deref(), Some("15"));

    let before_append = hold(&mut s, "k");
    assert_eq!(
        s.store(SetMode::Append, b"k", 0, 0, b"dd", 100),
        StoreOutcome::Stored
    );
    assert!(s.delete(b"n", 100));
    s.flush_all(0, 100);
    assert_eq!(before_append.as_slice(), b"cccc");
    assert_eq!(number.as_slice(), b"10");
}

/// The index prefetches an item's allocation from a hint it keeps; every way the store gives
/// an item a new allocation (a set of another length, append, prepend, `incr` on a held or a
/// growing value) must update it, or hits wait for a miss the hint was there to hide.
#[test]
fn index_hints_follow_new_allocations() {
    use crate::SharedValue;
    let mut s = big();
    let fresh = |s: &Store, key: &str| s.table.hint_is_fresh(key.as_bytes());
    set(&mut s, "k", "aaaa", 0, 100);
    assert!(fresh(&s, "k"));
    set(&mut s, "k", "bbbbbbbb", 0, 100);
    assert!(fresh(&s, "k"), "a set of another length");
    s.store(SetMode::Append, b"k", 0, 0, b"dd", 100);
    assert!(fresh(&s, "k"), "append");
    s.store(SetMode::Prepend, b"k", 0, 0, b"pp", 100);
    assert!(fresh(&s, "k"), "prepend");
    set(&mut s, "n", "10", 0, 100);
    let item = s.get(b"n", 100).expect("hit");
    let held = SharedValue::tail(item.shared.expect("shared"), item.value.len());
    assert_eq!(s.arith(b"n", true, 5, 100), ArithOutcome::Value(15));
    assert!(fresh(&s, "n"), "incr copies a held value");
    drop(held);
    assert_eq!(s.arith(b"n", true, 100, 100), ArithOutcome::Value(115));
    assert!(fresh(&s, "n"), "incr grows the value");
    for i in 0..200 {
        set(&mut s, &format!("fill{i}"), "v", 0, 100);
    }
    assert!(fresh(&s, "k") && fresh(&s, "n"), "the index grew");
}

/// `hash_bytes`: the index's bucket array, 16 bytes a bucket and 7/10 to 7/8 full.
#[test]
fn index_bytes_follow_the_item_count() {
    let mut s = big();
    assert_eq!(s.index_bytes(), 0);
    for i in 0..5000 {
        set(&mut s, &format!("k{i}"), "v", 0, 100);
    }
    let bytes = s.index_bytes();
    assert!(bytes >= 5000 * 16 * 8 / 7, "{bytes}");
    assert!(bytes <= 5000 * 16 * 10 / 7, "{bytes}");
}

#[test]
fn set_get_flags_and_strided_cas() {
    let mut s = Store::new(StoreConfig {
        max_bytes: BIG_BYTES,
        evict: true,
        cas_start: 3,
        cas_stride: 4,
        item_size_max: usize::MAX,
        cas_enabled: true,
    });
    let r = s.store(SetMode::Set, b"k", 42, 0, b"v1", NOW);
    assert_eq!(r, StoreOutcome::Stored);
    let v = s.get(b"k", NOW).unwrap();
    assert_eq!(
        (v.key, v.value, v.flags, v.cas, v.exptime),
        (&b"k"[..], &b"v1"[..], 42, 3, 0)
    );
    set(&mut s, "k", "v2", 0, NOW);
    assert_eq!(s.get(b"k", NOW).unwrap().cas, 7);
    set(&mut s, "j", "v", 0, NOW);
    assert_eq!(s.get(b"j", NOW).unwrap().cas, 11);
    let st = s.stats();
    assert_eq!((st.cmd_set, st.total_items, st.curr_items), (3, 3, 2));
    assert_eq!((st.cmd_get, st.get_hits, st.get_misses), (3, 3, 0));
}

#[test]
fn ttl_forms() {
    let mut s = big();
    set(&mut s, "rel", "v", 10, NOW);
    set(&mut s, "abs", "v", (NOW + 5) as i64, NOW);
    set(&mut s, "past", "v", (NOW - 5) as i64, NOW);
    assert_eq!(set(&mut s, "neg", "v", -1, NOW), StoreOutcome::Stored);
    // The store's clock never runs backwards, so read in time order.
    assert_eq!(s.get(b"rel", NOW).unwrap().exptime, NOW + 10);
    assert_eq!(value(&mut s, "abs", NOW + 4).as_deref(), Some("v"));
    assert_eq!(value(&mut s, "rel", NOW + 9).as_deref(), Some("v"));
    assert_eq!(value(&mut s, "rel", NOW + 10), None);
    assert_eq!(value(&mut s, "abs", NOW + 10), None);
    assert_eq!(value(&mut s, "past", NOW + 10), None);
    assert_eq!(value(&mut s, "neg", NOW + 10), None);
    assert_eq!(s.stats().get_expired, 4);
    assert!(s.is_empty(), "expired items are unlinked on access");
    assert_eq!(s.bytes(), 0);
}

#[test]
fn negative_exptime_replaces_the_old_value() {
    let mut s = big();
    set(&mut s, "k", "old", 0, NOW);
    assert_eq!(set(&mut s, "k", "new", -1, NOW), StoreOutcome::Stored);
    assert_eq!(value(&mut s, "k", NOW), None);
}

#[test]
fn cas_rules() {
    let mut s = big();
    let r = s.store(SetMode::Cas(1), b"k", 0, 0, b"v", NOW);
    assert_eq!(r, StoreOutcome::NotFound);
    set(&mut s, "k", "v", 0, NOW);
    let cas = s.get(b"k", NOW).unwrap().cas;
    assert!(s.touch(b"k", 100, NOW));
    assert_eq!(s.get(b"k", NOW).unwrap().cas, cas, "touch keeps the CAS");
    let r = s.store(SetMode::Cas(cas + 1), b"k", 0, 0, b"x", NOW);
    assert_eq!(r, StoreOutcome::Exists);
    let r = s.store(SetMode::Cas(0), b"k", 0, 0, b"x", NOW);
    assert_eq!(r, StoreOutcome::Exists);
    let r = s.store(SetMode::Cas(cas), b"k", 0, 0, b"x", NOW);
    assert_eq!(r, StoreOutcome::Stored);
    let v = s.get(b"k", NOW).unwrap();
    assert_eq!((v.value, v.exptime), (&b"x"[..], 0));
    assert!(v.cas > cas);
    let st = s.stats();
    assert_eq!((st.cas_misses, st.cas_badval, st.cas_hits), (1, 2, 1));
}

#[test]
fn append_prepend_keep_flags_and_ttl() {
    let mut s = big();
    let r = s.store(SetMode::Append, b"k", 0, 0, b"x", NOW);
    assert_eq!(r, StoreOutcome::NotStored);
    let r = s.store(SetMode::Prepend, b"k", 0, 0, b"x", NOW);
    assert_eq!(r, StoreOutcome::NotStored);
    s.store(SetMode::Set, b"k", 7, 100, b"mid", NOW);
    let cas = s.get(b"k", NOW).unwrap().cas;
    assert_eq!(
        s.store(SetMode::Append, b"k", 9, 0, b">", NOW),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.store(SetMode::Prepend, b"k", 9, -1, b"<", NOW),
        StoreOutcome::Stored
    );
    let v = s.get(b"k", NOW).unwrap();
    assert_eq!((v.value, v.flags, v.exptime), (&b"<mid>"[..], 7, NOW + 100));
    assert!(v.cas > cas);
    assert_eq!(s.bytes(), charge("k", "<mid>"));
}

#[test]
fn add_and_replace() {
    let mut s = big();
    assert_eq!(
        s.store(SetMode::Replace, b"k", 0, 0, b"v", NOW),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.store(SetMode::Add, b"k", 0, 0, b"v", NOW),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.store(SetMode::Add, b"k", 0, 0, b"w", NOW),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.store(SetMode::Replace, b"k", 0, 0, b"r", NOW),
        StoreOutcome::Stored
    );
    assert_eq!(value(&mut s, "k", NOW).as_deref(), Some("r"));
    set(&mut s, "e", "v", 1, NOW);
    let r = s.store(SetMode::Add, b"e", 0, 0, b"new", NOW + 1);
    assert_eq!(r, StoreOutcome::Stored, "add over an expired item");
    assert_eq!(s.stats().cmd_set, 6);
}

#[test]
fn arith_pads_in_place_and_regrows() {
    let mut s = big();
    set(&mut s, "n", "100", 0, NOW);
    let cas = s.get(b"n", NOW).unwrap().cas;
    assert_eq!(s.arith(b"n", false, 95, NOW), ArithOutcome::Value(5));
    let v = s.get(b"n", NOW).unwrap();
    assert_eq!(v.value, b"5  ");
    assert!(v.cas > cas);
    assert_eq!(s.arith(b"n", true, 995, NOW), ArithOutcome::Value(1000));
    assert_eq!(s.get(b"n", NOW).unwrap().value, b"1000");
    assert_eq!(s.bytes(), charge("n", "1000"));
    assert_eq!(s.arith(b"n", false, 5000, NOW), ArithOutcome::Value(0));
    assert_eq!(s.get(b"n", NOW).unwrap().value, b"0   ");
    set(&mut s, "max", "18446744073709551615", 0, NOW);
    assert_eq!(s.arith(b"max", true, 2, NOW), ArithOutcome::Value(1));
    let padded = format!("1{}", " ".repeat(19));
    assert_eq!(s.get(b"max", NOW).unwrap().value, padded.as_bytes());
    set(&mut s, "text", "abc", 0, NOW);
    assert_eq!(s.arith(b"text", true, 1, NOW), ArithOutcome::NonNumeric);
    set(&mut s, "empty", "", 0, NOW);
    assert_eq!(s.arith(b"empty", true, 1, NOW), ArithOutcome::NonNumeric);
    assert_eq!(s.arith(b"none", true, 1, NOW), ArithOutcome::NotFound);
    assert_eq!(s.arith(b"none", false, 1, NOW), ArithOutcome::NotFound);
    let st = s.stats();
    assert_eq!(
        (st.incr_hits, st.decr_hits, st.incr_misses, st.decr_misses),
        (2, 2, 1, 1)
    );
    assert_eq!(st.total_items, 5, "four sets plus the one regrow");
}

#[test]
fn arith_keeps_flags_and_ttl() {
    let mut s = big();
    s.store(SetMode::Set, b"n", 5, 100, b"9", NOW);
    assert_eq!(s.arith(b"n", true, 1, NOW), ArithOutcome::Value(10));
    let v = s.get(b"n", NOW).unwrap();
    assert_eq!((v.flags, v.exptime), (5, NOW + 100));
}

#[test]
fn flush_now_invalidates_same_second_items_only_before_it() {
    let mut s = big();
    set(&mut s, "old", "v", 0, NOW);
    set(&mut s, "same", "v", 0, NOW + 1);
    s.flush_all(0, NOW + 1);
    set(&mut s, "after", "v", 0, NOW + 1);
    assert_eq!(value(&mut s, "old", NOW + 1), None);
    assert_eq!(value(&mut s, "same", NOW + 1), None);
    assert_eq!(value(&mut s, "after", NOW + 1).as_deref(), Some("v"));
    let st = s.stats();
    // cmd_flush is a command counter, kept by the server (once per command, not per shard).
    assert_eq!((st.cmd_flush, st.get_flushed), (0, 2));
}

#[test]
fn delayed_flush() {
    let mut s = big();
    set(&mut s, "a", "v", 0, NOW);
    s.flush_all(10, NOW);
    set(&mut s, "b", "v", 0, NOW + 5);
    assert_eq!(value(&mut s, "a", NOW + 8).as_deref(), Some("v"));
    // memcached's oldest_live is now + delay - 1.
    assert_eq!(value(&mut s, "a", NOW + 9), None);
    assert_eq!(value(&mut s, "b", NOW + 9), None);
    set(&mut s, "c", "v", 0, NOW + 10);
    assert_eq!(value(&mut s, "c", NOW + 10).as_deref(), Some("v"));
}

#[test]
fn touch_and_gat_stats_and_views() {
    let mut s = big();
    set(&mut s, "k", "v", 0, NOW);
    assert!(!s.touch(b"none", 10, NOW));
    let v = s.get_and_touch(b"k", 10, NOW + 3).unwrap();
    assert_eq!(
        (v.exptime, v.last_access, v.fetched),
        (NOW + 13, NOW, false)
    );
    let v = s.get(b"k", NOW + 4).unwrap();
    assert_eq!((v.last_access, v.fetched), (NOW + 3, true));
    assert!(s.get_and_touch(b"none", 10, NOW).is_none());
    assert_eq!(value(&mut s, "k", NOW + 13), None);
    let st = s.stats();
    assert_eq!((st.cmd_touch, st.touch_hits, st.touch_misses), (3, 1, 2));
    assert_eq!((st.cmd_get, st.get_hits, st.get_misses), (2, 1, 1));
}

#[test]
fn delete_and_unlink_return_bytes_to_zero() {
    let mut s = big();
    set(&mut s, "a", "12345", 0, NOW);
    set(&mut s, "bb", "1", 0, NOW);
    assert_eq!(s.bytes(), charge("a", "12345") + charge("bb", "1"));
    assert!(s.delete(b"a", NOW));
    assert!(!s.delete(b"a", NOW));
    s.unlink(b"bb");
    assert_eq!((s.bytes(), s.len()), (0, 0));
    let st = s.stats();
    assert_eq!((st.delete_hits, st.delete_misses, st.curr_items), (1, 1, 0));
}

#[test]
fn eviction_is_lru_and_get_protects() {
    let item = charge("k0", "vvvv");
    let mut s = store_with(item * 3, true);
    for k in ["k0", "k1", "k2"] {
        set(&mut s, k, "vvvv", 0, NOW);
    }
    assert!(s.get(b"k0", NOW).is_some());
    set(&mut s, "k3", "vvvv", 0, NOW);
    assert_eq!(value(&mut s, "k1", NOW), None, "k1 was least recently used");
    assert!(value(&mut s, "k0", NOW).is_some());
    // add on an existing item also promotes it.
    s.store(SetMode::Add, b"k2", 0, 0, b"x", NOW);
    set(&mut s, "k4", "vvvv", 0, NOW);
    assert_eq!(value(&mut s, "k3", NOW), None);
    assert!(value(&mut s, "k2", NOW).is_some());
    let st = s.stats();
    assert_eq!((st.evictions, st.evicted_unfetched), (2, 2));
    assert!(s.bytes() <= s.limit_bytes());
}

#[test]
fn reads_give_items_a_second_chance_in_read_order() {
    let item = charge("k0", "vvvv");
    let mut s = store_with(item * 3, true);
    for k in ["k0", "k1", "k2"] {
        set(&mut s, k, "vvvv", 0, NOW);
    }
    // Every item read: each goes back to the head once, then the least recently stored of
    // them is evicted.
    for k in ["k0", "k1", "k2"] {
        assert!(s.get(k.as_bytes(), NOW).is_some());
    }
    set(&mut s, "k3", "vvvv", 0, NOW);
    assert_eq!(value(&mut s, "k0", NOW), None);
    for k in ["k1", "k2", "k3"] {
        assert!(value(&mut s, k, NOW).is_some(), "{k}");
    }
    assert_eq!(s.stats().evictions, 1);
    // A single read item still makes room when it is the only one.
    let mut one = store_with(item, true);
    set(&mut one, "k0", "vvvv", 0, NOW);
    assert!(one.get(b"k0", NOW).is_some());
    assert_eq!(set(&mut one, "k1", "vvvv", 0, NOW), StoreOutcome::Stored);
    assert_eq!(value(&mut one, "k0", NOW), None);
    // A read that comes after the second chance counts again.
    let mut s = store_with(item * 2, true);
    set(&mut s, "a", "vvvv", 0, NOW);
    set(&mut s, "b", "vvvv", 0, NOW);
    assert!(s.get(b"a", NOW).is_some());
    set(&mut s, "c", "vvvv", 0, NOW); // a goes to the head, b is evicted
    assert!(s.get(b"a", NOW).is_some());
    set(&mut s, "d", "vvvv", 0, NOW); // a again, c is evicted
    assert_eq!(value(&mut s, "b", NOW), None);
    assert_eq!(value(&mut s, "c", NOW), None);
    assert!(value(&mut s, "a", NOW).is_some());
}

#[test]
fn expired_tail_items_are_reclaimed_before_evicting() {
    let item = charge("k0", "vvvv");
    let mut s = store_with(item * 3, true);
    set(&mut s, "k0", "vvvv", 0, NOW);
    set(&mut s, "k1", "vvvv", 5, NOW);
    set(&mut s, "k2", "vvvv", 0, NOW);
    set(&mut s, "k3", "vvvv", 0, NOW + 5);
    assert!(value(&mut s, "k0", NOW + 5).is_some());
    let st = s.stats();
    assert_eq!(
        (st.reclaimed, st.expired_unfetched, st.evictions),
        (1, 1, 0)
    );
}

#[test]
fn growing_in_place_never_evicts_itself() {
    let mut s = store_with(charge("k", "vv") + 2, true);
    set(&mut s, "k", "vv", 0, NOW);
    assert_eq!(set(&mut s, "k", "vvvv", 0, NOW), StoreOutcome::Stored);
    assert_eq!(value(&mut s, "k", NOW).as_deref(), Some("vvvv"));
    assert_eq!(set(&mut s, "k", "vvvvv", 0, NOW), StoreOutcome::OutOfMemory);
}

#[test]
fn no_evict_mode_answers_out_of_memory() {
    let item = charge("k0", "vvvv");
    let mut s = store_with(item * 2, false);
    set(&mut s, "k0", "vvvv", 0, NOW);
    set(&mut s, "k1", "vvvv", 1, NOW);
    assert_eq!(set(&mut s, "k2", "vvvv", 0, NOW), StoreOutcome::OutOfMemory);
    assert_eq!(s.stats().store_no_memory, 1);
    // An expired item may still be reclaimed under -M.
    assert_eq!(set(&mut s, "k2", "vvvv", 0, NOW + 1), StoreOutcome::Stored);
    // A set that cannot be stored drops the old value; append just says NOT_STORED.
    assert_eq!(
        s.store(SetMode::Append, b"k0", 0, 0, b"x", NOW + 1),
        StoreOutcome::NotStored
    );
    assert_eq!(value(&mut s, "k0", NOW + 1).as_deref(), Some("vvvv"));
    assert_eq!(
        set(&mut s, "k0", "vvvvvv", 0, NOW + 1),
        StoreOutcome::OutOfMemory
    );
    assert_eq!(value(&mut s, "k0", NOW + 1), None);
    // Exactly full: growing "99999" to "100000" needs one more byte.
    set(&mut s, "n", "99999", 0, NOW + 1);
    assert_eq!(s.bytes(), s.limit_bytes());
    assert_eq!(s.arith(b"n", true, 1, NOW + 1), ArithOutcome::OutOfMemory);
    assert_eq!(value(&mut s, "n", NOW + 1).as_deref(), Some("99999"));
    assert_eq!(s.stats().cmd_set, 5);
}

#[test]
fn item_bigger_than_the_budget() {
    let mut s = store_with(100, true);
    let huge = "x".repeat(100);
    assert_eq!(set(&mut s, "k", &huge, 0, NOW), StoreOutcome::OutOfMemory);
    assert_eq!(s.stats().evictions, 0);
}

#[test]
fn maintain_reclaims_expired_and_flushed() {
    let mut s = big();
    for i in 0..10 {
        set(&mut s, &format!("e{i}"), "v", 5, NOW);
        set(&mut s, &format!("l{i}"), "v", 0, NOW);
    }
    assert_eq!(s.maintain(NOW + 5, 4), 2);
    assert_eq!(s.maintain(NOW + 5, 1000), 8);
    assert_eq!(s.len(), 10);
    s.flush_all(0, NOW + 6);
    assert_eq!(s.maintain(NOW + 6, 1000), 10);
    assert_eq!((s.len(), s.bytes()), (0, 0));
    let st = s.stats();
    assert_eq!((st.crawler_reclaimed, st.expired_unfetched), (20, 10));
}

#[test]
fn oldest_item_age_follows_the_lru_tail() {
    let mut s = big();
    assert_eq!(s.oldest_item_age(NOW), None);
    set(&mut s, "a", "v", 0, NOW);
    set(&mut s, "b", "v", 0, NOW + 10);
    assert_eq!(s.oldest_item_age(NOW + 20), Some(20));
    // A read does not move the item (its second chance comes at eviction): the tail is
    // still `a`, last accessed 5 s ago, as memcached's tail may be.
    s.get(b"a", NOW + 15);
    assert_eq!(s.oldest_item_age(NOW + 20), Some(5));
    // A store does move it.
    set(&mut s, "a", "v", 0, NOW + 16);
    assert_eq!(s.oldest_item_age(NOW + 20), Some(10));
}

#[test]
fn clock_never_goes_backwards() {
    let mut s = big();
    set(&mut s, "k", "v", 10, NOW);
    assert_eq!(value(&mut s, "k", NOW + 10), None);
    set(&mut s, "k", "v", 10, NOW + 10);
    assert_eq!(value(&mut s, "k", NOW).as_deref(), Some("v"));
}

#[test]
fn append_and_prepend_respect_the_item_size_limit() {
    let mut s = Store::new(StoreConfig {
        max_bytes: 1 << 20,
        evict: true,
        cas_start: 1,
        cas_stride: 1,
        item_size_max: 1024,
        cas_enabled: true,
    });
    // 56 header + 1 key + 1 NUL + value + 2: a 964-byte value is exactly 1024.
    assert_eq!(
        s.store(SetMode::Set, b"k", 0, 0, &[b'a'; 900], 100),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.store(SetMode::Append, b"k", 0, 0, &[b'b'; 64], 100),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.store(SetMode::Append, b"k", 0, 0, b"c", 100),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.store(SetMode::Prepend, b"k", 0, 0, b"c", 100),
        StoreOutcome::NotStored
    );
    assert_eq!(s.get(b"k", 100).map(|i| i.value.len()), Some(964));
}

#[test]
fn a_lower_limit_evicts_only_as_new_items_need_room() {
    let mut s = Store::new(StoreConfig {
        max_bytes: 1 << 20,
        evict: true,
        cas_start: 1,
        cas_stride: 1,
        item_size_max: usize::MAX,
        cas_enabled: true,
    });
    for i in 0..100u32 {
        s.store(SetMode::Set, &i.to_be_bytes(), 0, 0, &[0; 1000], 100);
    }
    let full = s.bytes();
    s.set_limit_bytes(10_000);
    // memcached keeps every item: the lower limit only stops growth.
    assert_eq!((s.len(), s.bytes()), (100, full));
    // Each new item of the same size takes the room of one old one, the least recent.
    for i in 100..110u32 {
        s.store(SetMode::Set, &i.to_be_bytes(), 0, 0, &[0; 1000], 100);
        assert_eq!(s.len(), 100);
        assert!(s.bytes() <= full);
    }
    assert!(s.get(&0u32.to_be_bytes(), 100).is_none());
    assert!(s.get(&10u32.to_be_bytes(), 100).is_some());
    // A larger one frees as many as its size needs; smaller ones shrink the total.
    s.store(SetMode::Set, b"big", 0, 0, &[0; 3000], 100);
    assert!(s.bytes() <= full && s.len() < 100);
    for i in 0..200u32 {
        s.store(SetMode::Set, &(1000 + i).to_be_bytes(), 0, 0, &[0; 10], 100);
    }
    assert!(s.bytes() < full / 4, "{}", s.bytes());
}
