// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::StoreConfig;

const NOW: UnixSecs = 1_700_000_000;

fn store() -> Store {
    Store::new(StoreConfig::single(1 << 20))
}

fn set(s: &mut Store, key: &str, value: &str) -> u64 {
    let (outcome, cas) = s.meta_store(
        SetMode::Set,
        key.as_bytes(),
        0,
        0,
        value.as_bytes(),
        None,
        false,
        NOW,
    );
    assert_eq!(outcome, StoreOutcome::Stored);
    cas
}

fn get(s: &mut Store, key: &str, options: GetOptions) -> Option<(String, bool, bool, bool)> {
    s.meta_get(key.as_bytes(), options, NOW).map(|hit| {
        let value = String::from_utf8(hit.item.value.to_vec()).unwrap();
        (value, hit.win, hit.stale, hit.win_sent)
    })
}

const PLAIN: GetOptions = GetOptions {
    touch: None,
    vivify: None,
    recache: None,
    bump: true,
};

#[test]
fn store_returns_the_new_unique_and_zero_when_not_stored() {
    let mut s = store();
    let cas = set(&mut s, "k", "a");
    assert_ne!(cas, 0);
    let add = s.meta_store(SetMode::Add, b"k", 0, 0, b"b", None, false, NOW);
    assert_eq!(add, (StoreOutcome::NotStored, 0));
    assert_eq!(s.peek(b"k", NOW).unwrap().cas, cas);
}

#[test]
fn a_cas_turns_set_and_replace_into_cas_and_is_checked_by_append() {
    let mut s = store();
    let cas = set(&mut s, "k", "a");
    let wrong = Some(cas + 100);
    for mode in [
        SetMode::Set,
        SetMode::Replace,
        SetMode::Append,
        SetMode::Prepend,
    ] {
        let (outcome, _) = s.meta_store(mode, b"k", 0, 0, b"x", wrong, false, NOW);
        assert_eq!(outcome, StoreOutcome::Exists, "{mode:?}");
    }
    // add ignores the cas: the key exists, so not stored.
    let (outcome, _) = s.meta_store(SetMode::Add, b"k", 0, 0, b"x", wrong, false, NOW);
    assert_eq!(outcome, StoreOutcome::NotStored);
    let (outcome, new) = s.meta_store(SetMode::Append, b"k", 0, 0, b"b", Some(cas), false, NOW);
    assert_eq!(outcome, StoreOutcome::Stored);
    assert!(new > cas);
    assert_eq!(get(&mut s, "k", PLAIN).unwrap().0, "ab");
    let (outcome, _) = s.meta_store(SetMode::Set, b"gone", 0, 0, b"x", Some(1), false, NOW);
    assert_eq!(outcome, StoreOutcome::NotFound);
}

#[test]
fn vivify_creates_once_and_hands_out_one_win() {
    let mut s = store();
    let vivify = GetOptions {
        vivify: Some(30),
        ..PLAIN
    };
    let hit = s.meta_get(b"v", vivify, NOW).unwrap();
    assert!(hit.created && hit.win && !hit.win_sent);
    assert_eq!(hit.item.exptime, NOW + 30);
    assert_eq!(hit.exptime_before, 0);
    assert_eq!(
        get(&mut s, "v", vivify),
        Some((String::new(), false, false, true))
    );
    // A store replaces the placeholder and clears the win.
    set(&mut s, "v", "real");
    assert_eq!(
        get(&mut s, "v", PLAIN),
        Some(("real".into(), false, false, false))
    );
}

#[test]
fn recache_wins_only_below_the_threshold_and_once() {
    let mut s = store();
    s.store(SetMode::Set, b"r", 0, 10, b"a", NOW);
    let recache = |secs| GetOptions {
        recache: Some(secs),
        ..PLAIN
    };
    assert!(!get(&mut s, "r", recache(5)).unwrap().1);
    assert!(get(&mut s, "r", recache(30)).unwrap().1);
    let (_, win, _, win_sent) = get(&mut s, "r", recache(30)).unwrap();
    assert!(!win && win_sent);
    // An item that never expires is never recached.
    set(&mut s, "forever", "a");
    assert!(!get(&mut s, "forever", recache(30)).unwrap().1);
}

#[test]
fn invalidation_marks_stale_bumps_cas_and_hands_out_a_new_win() {
    let mut s = store();
    let cas = set(&mut s, "k", "a");
    assert_eq!(
        s.meta_delete(b"k", Some(cas + 1), true, None, NOW),
        DeleteOutcome::Exists
    );
    assert_eq!(
        s.meta_delete(b"k", Some(cas), true, Some(30), NOW),
        DeleteOutcome::Deleted
    );
    let item = s.peek(b"k", NOW).unwrap();
    assert!(item.cas > cas);
    assert_eq!(item.exptime, NOW + 30);
    assert_eq!(
        get(&mut s, "k", PLAIN),
        Some(("a".into(), true, true, false))
    );
    assert_eq!(
        get(&mut s, "k", PLAIN),
        Some(("a".into(), false, true, true))
    );
    // Invalidating again hands the win out again.
    s.meta_delete(b"k", None, true, None, NOW);
    assert!(get(&mut s, "k", PLAIN).unwrap().1);
}

#[test]
fn an_older_cas_with_invalidate_stores_a_stale_value() {
    let mut s = store();
    let old = set(&mut s, "k", "a");
    s.meta_delete(b"k", None, true, Some(100), NOW);
    get(&mut s, "k", PLAIN); // takes the win
    let (outcome, cas) = s.meta_store(SetMode::Set, b"k", 0, 0, b"b", Some(old), true, NOW);
    assert_eq!(outcome, StoreOutcome::Stored);
    let item = s.peek(b"k", NOW).unwrap();
    assert_eq!(
        (item.value, item.cas, item.exptime),
        (&b"b"[..], cas, NOW + 100)
    );
    // Still stale, and the win stays handed out.
    assert_eq!(
        get(&mut s, "k", PLAIN),
        Some(("b".into(), false, true, true))
    );
    // A newer (wrong) cas still fails.
    let (outcome, _) = s.meta_store(SetMode::Set, b"k", 0, 0, b"c", Some(cas + 9), true, NOW);
    assert_eq!(outcome, StoreOutcome::Exists);
    // The matching cas stores a fresh item: no longer stale.
    s.meta_store(SetMode::Set, b"k", 0, 0, b"d", Some(cas), true, NOW);
    assert_eq!(
        get(&mut s, "k", PLAIN),
        Some(("d".into(), false, false, false))
    );
}

#[test]
fn meta_arith_checks_cas_vivifies_and_touches() {
    let mut s = store();
    let options = ArithOptions {
        incr: true,
        delta: 5,
        ..ArithOptions::default()
    };
    assert_eq!(s.meta_arith(b"n", options, NOW), MetaArithOutcome::NotFound);
    let vivify = ArithOptions {
        vivify: Some((7, 50)),
        ..options
    };
    let MetaArithOutcome::Done {
        value,
        exptime,
        created,
        ..
    } = s.meta_arith(b"n", vivify, NOW)
    else {
        panic!()
    };
    // A new item holds the initial value, without the delta.
    assert_eq!((value, exptime, created), (7, NOW + 50, true));
    let MetaArithOutcome::Done { value, cas, .. } = s.meta_arith(b"n", vivify, NOW) else {
        panic!()
    };
    assert_eq!(value, 12);
    let wrong = ArithOptions {
        cas: Some(cas + 1),
        ..options
    };
    assert_eq!(s.meta_arith(b"n", wrong, NOW), MetaArithOutcome::Exists);
    let touch = ArithOptions {
        cas: Some(cas),
        touch: Some(0),
        ..options
    };
    let MetaArithOutcome::Done {
        value,
        exptime_before,
        exptime,
        ..
    } = s.meta_arith(b"n", touch, NOW)
    else {
        panic!()
    };
    assert_eq!((value, exptime_before, exptime), (17, NOW + 50, 0));
    set(&mut s, "word", "abc");
    assert_eq!(
        s.meta_arith(b"word", options, NOW),
        MetaArithOutcome::NonNumeric
    );
}

#[test]
fn no_bump_reads_without_marking_fetched() {
    let mut s = store();
    set(&mut s, "k", "a");
    let quiet = GetOptions {
        bump: false,
        ..PLAIN
    };
    assert!(!s.meta_get(b"k", quiet, NOW).unwrap().item.fetched);
    assert!(!s.meta_get(b"k", quiet, NOW).unwrap().item.fetched);
    assert!(!s.meta_get(b"k", PLAIN, NOW).unwrap().item.fetched);
    assert!(s.meta_get(b"k", PLAIN, NOW).unwrap().item.fetched);
}
