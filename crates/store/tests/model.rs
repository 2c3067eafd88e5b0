//! The store against a plain `HashMap` model with a fake clock.
//!
//! The model writes memcached's rules down the obvious way (dead items filtered on every
//! read, flushes kept as a list), so the two only agree if the store's incremental
//! machinery (lazy unlinking, watermarks, in-place rewrites) is right.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use proptest::prelude::*;
use rampart_store::{
    ArithOptions, ArithOutcome, DeleteOutcome, GetOptions, MetaArithOutcome, SetMode, Store,
    StoreConfig, StoreOutcome,
};

const START: u64 = 1_700_000_000;
const MAX_RELATIVE_SECS: i64 = 2_592_000;

#[derive(Debug, Clone, Copy)]
enum Ttl {
    Never,
    Relative(i64),
    Negative,
    /// An absolute unix time this many seconds from the clock (may be in the past).
    Absolute(i64),
}

impl Ttl {
    fn wire(self, now: u64) -> i64 {
        match self {
            Ttl::Never => 0,
            Ttl::Relative(s) => s,
            Ttl::Negative => -1,
            Ttl::Absolute(off) => now as i64 + off,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Store(Mode, u8, u32, Ttl, Vec<u8>),
    Get(u8),
    Gat(u8, Ttl),
    Touch(u8, Ttl),
    Delete(u8),
    Arith(u8, bool, u64),
    Flush(Ttl),
    Advance(u64),
    Maintain(usize),
    /// `mg` with `N` (vivify) and `R` (recache) TTLs.
    MetaGet(u8, Option<Ttl>, Option<Ttl>),
    /// `md`, with a right (`true`) or wrong CAS, and `I`.
    MetaDelete(u8, Option<bool>, bool),
    /// `ma` with `N`/`J` (create with an initial value) and a right or wrong CAS.
    MetaArith(u8, bool, u64, Option<(u64, Ttl)>, Option<bool>),
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// `true`: the item's current unique; `false`: a wrong one.
    Cas(bool),
}

#[derive(Debug, Clone)]
struct Item {
    value: Vec<u8>,
    flags: u32,
    exptime: u64,
    cas: u64,
    mtime: u64,
    /// Meta: invalidated (`X`), and whether the win was handed out (`Z`).
    stale: bool,
    win_sent: bool,
}

#[derive(Debug, Default)]
struct Model {
    items: HashMap<Vec<u8>, Item>,
    now: u64,
    next_cas: u64,
    /// (oldest_live, cas watermark or 0) of every flush_all not replaced while pending.
    flushes: Vec<(u64, u64)>,
}

impl Model {
    fn resolve(&self, wire: i64) -> u64 {
        match wire {
            0 => 0,
            w if w < 0 => 1,
            w if w <= MAX_RELATIVE_SECS => self.now + w as u64,
            w => w as u64,
        }
    }

    fn cas(&mut self) -> u64 {
        self.next_cas += 1;
        self.next_cas
    }

    fn is_live(&self, item: &Item) -> bool {
        let expired = item.exptime != 0 && item.exptime <= self.now;
        let flushed = self
            .flushes
            .iter()
            .any(|&(f, wm)| f <= self.now && (item.mtime <= f || item.cas < wm));
        !expired && !flushed
    }

    fn live(&mut self, key: &[u8]) -> Option<&mut Item> {
        let live = self.items.get(key).is_some_and(|i| self.is_live(i));
        if !live {
            self.items.remove(key);
        }
        self.items.get_mut(key)
    }

    fn put(&mut self, key: &[u8], flags: u32, exptime: u64, value: Vec<u8>) {
        let item = Item {
            value,
            flags,
            exptime,
            cas: self.cas(),
            mtime: self.now,
            stale: false,
            win_sent: false,
        };
        self.items.insert(key.to_vec(), item);
    }

    fn store(&mut self, mode: Mode, key: &[u8], flags: u32, wire: i64, v: &[u8]) -> StoreOutcome {
        let exptime = self.resolve(wire);
        let now = self.now;
        let live = self.live(key).is_some();
        match (mode, live) {
            (Mode::Set | Mode::Add, false) | (Mode::Set | Mode::Replace, true) => {
                self.put(key, flags, exptime, v.to_vec());
                StoreOutcome::Stored
            }
            (Mode::Add, true) => {
                self.live(key).unwrap().mtime = now;
                StoreOutcome::NotStored
            }
            (Mode::Replace | Mode::Append | Mode::Prepend, false) => StoreOutcome::NotStored,
            (Mode::Append | Mode::Prepend, true) => {
                let cas = self.cas();
                let item = self.live(key).unwrap();
                if matches!(mode, Mode::Append) {
                    item.value.extend_from_slice(v);
                } else {
                    item.value.splice(0..0, v.iter().copied());
                }
                item.cas = cas;
                item.mtime = now;
                item.stale = false;
                item.win_sent = false;
                StoreOutcome::Stored
            }
            (Mode::Cas(_), false) => StoreOutcome::NotFound,
            (Mode::Cas(false), true) => StoreOutcome::Exists,
            (Mode::Cas(true), true) => {
                self.put(key, flags, exptime, v.to_vec());
                StoreOutcome::Stored
            }
        }
    }

    /// Reads (get, gat, touch) bump the item's last-access time, as memcached's `it->time`.
    fn read(&mut self, key: &[u8], touch: Option<i64>) -> Option<(Vec<u8>, u32, u64)> {
        let exptime = touch.map(|w| self.resolve(w));
        let now = self.now;
        let item = self.live(key)?;
        item.mtime = now;
        if let Some(e) = exptime {
            item.exptime = e;
        }
        Some((item.value.clone(), item.flags, item.cas))
    }

    fn arith(&mut self, key: &[u8], incr: bool, delta: u64) -> ArithOutcome {
        let now = self.now;
        let cas = self.next_cas + 1;
        let Some(item) = self.live(key) else {
            return ArithOutcome::NotFound;
        };
        // Values here are [a-z0-9] plus padding spaces: leading digits then end or a space.
        let digits = item.value.iter().take_while(|b| b.is_ascii_digit()).count();
        let terminated = item.value.get(digits).is_none_or(|&b| b == b' ');
        let parsed = std::str::from_utf8(&item.value[..digits])
            .unwrap()
            .parse::<u64>();
        let (Ok(old), true) = (parsed, terminated) else {
            return ArithOutcome::NonNumeric;
        };
        let new = if incr {
            old.wrapping_add(delta)
        } else {
            old.saturating_sub(delta)
        };
        let mut text = new.to_string().into_bytes();
        if text.len() <= item.value.len() {
            text.resize(item.value.len(), b' ');
        }
        item.value = text;
        item.mtime = now;
        item.cas = cas;
        self.next_cas = cas;
        ArithOutcome::Value(new)
    }

    /// `mg`: (value, win, stale, win already sent, created). A miss with `vivify` creates an
    /// empty item and wins; a hit wins once if stale or expiring before `recache`.
    fn meta_get(
        &mut self,
        key: &[u8],
        vivify: Option<i64>,
        recache: Option<i64>,
    ) -> Option<(Vec<u8>, bool, bool, bool, bool)> {
        let now = self.now;
        let recache = recache.map(|w| self.resolve(w));
        if self.live(key).is_none() {
            let exptime = self.resolve(vivify?);
            self.put(key, 0, exptime, Vec::new());
            let item = self.items.get_mut(key).unwrap();
            item.win_sent = true;
            return Some((Vec::new(), true, false, false, true));
        }
        let item = self.live(key).unwrap();
        let low = recache.is_some_and(|r| item.exptime != 0 && item.exptime < r);
        let win = !item.win_sent && (low || item.stale);
        let seen = (item.value.clone(), win, item.stale, item.win_sent, false);
        item.win_sent |= win;
        item.mtime = now;
        Some(seen)
    }

    fn meta_delete(
        &mut self,
        key: &[u8],
        cas_right: Option<bool>,
        invalidate: bool,
    ) -> DeleteOutcome {
        if self.live(key).is_none() {
            return DeleteOutcome::NotFound;
        }
        if cas_right == Some(false) {
            return DeleteOutcome::Exists;
        }
        if invalidate {
            let cas = self.cas();
            let item = self.live(key).unwrap();
            item.cas = cas;
            item.stale = true;
            item.win_sent = false;
        } else {
            self.items.remove(key);
        }
        DeleteOutcome::Deleted
    }

    /// `ma`: (value, created) or the failure.
    fn meta_arith(
        &mut self,
        key: &[u8],
        incr: bool,
        delta: u64,
        vivify: Option<(u64, i64)>,
        cas_right: Option<bool>,
    ) -> Result<(u64, bool), MetaArithOutcome> {
        if self.live(key).is_none() {
            let Some((initial, wire)) = vivify else {
                return Err(MetaArithOutcome::NotFound);
            };
            let exptime = self.resolve(wire);
            self.put(key, 0, exptime, initial.to_string().into_bytes());
            return Ok((initial, true));
        }
        if cas_right == Some(false) {
            return Err(MetaArithOutcome::Exists);
        }
        match self.arith(key, incr, delta) {
            ArithOutcome::Value(v) => Ok((v, false)),
            ArithOutcome::NonNumeric => Err(MetaArithOutcome::NonNumeric),
            ArithOutcome::NotFound => Err(MetaArithOutcome::NotFound),
            ArithOutcome::OutOfMemory => Err(MetaArithOutcome::OutOfMemory),
        }
    }

    fn flush(&mut self, wire: i64) {
        let now = self.now;
        let new_oldest = if wire > 0 { self.resolve(wire) } else { now };
        let oldest_live = new_oldest - 1;
        self.flushes.retain(|&(f, _)| f <= now);
        let watermark = if oldest_live <= now { self.cas() } else { 0 };
        self.flushes.push((oldest_live, watermark));
    }
}

fn key(k: u8) -> Vec<u8> {
    format!("key{k}").into_bytes()
}

fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        (0u64..1000).prop_map(|n| n.to_string().into_bytes()),
        Just(b"18446744073709551615".to_vec()),
        proptest::collection::vec(prop_oneof![b'a'..=b'z', b'0'..=b'9'], 0..6),
    ]
}

fn ttl_strategy() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        3 => Just(Ttl::Never),
        2 => (1i64..6).prop_map(Ttl::Relative),
        1 => Just(Ttl::Negative),
        1 => (-3i64..6).prop_map(Ttl::Absolute),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let k = 0u8..5;
    let mode = prop_oneof![
        3 => Just(Mode::Set),
        1 => Just(Mode::Add),
        1 => Just(Mode::Replace),
        1 => Just(Mode::Append),
        1 => Just(Mode::Prepend),
        1 => any::<bool>().prop_map(Mode::Cas),
    ];
    prop_oneof![
        6 => (mode, k.clone(), any::<u32>(), ttl_strategy(), value_strategy())
            .prop_map(|(m, k, f, t, v)| Op::Store(m, k, f, t, v)),
        4 => k.clone().prop_map(Op::Get),
        1 => (k.clone(), ttl_strategy()).prop_map(|(k, t)| Op::Gat(k, t)),
        1 => (k.clone(), ttl_strategy()).prop_map(|(k, t)| Op::Touch(k, t)),
        1 => k.clone().prop_map(Op::Delete),
        2 => (k.clone(), any::<bool>(), prop_oneof![0u64..200, any::<u64>()])
            .prop_map(|(k, i, d)| Op::Arith(k, i, d)),
        1 => prop_oneof![Just(Ttl::Never), (1i64..4).prop_map(Ttl::Relative), (-2i64..4).prop_map(Ttl::Absolute)]
            .prop_map(Op::Flush),
        2 => (0u64..4).prop_map(Op::Advance),
        1 => (0usize..8).prop_map(Op::Maintain),
        2 => (k.clone(), proptest::option::of(ttl_strategy()), proptest::option::of(ttl_strategy()))
            .prop_map(|(k, v, r)| Op::MetaGet(k, v, r)),
        1 => (k.clone(), proptest::option::of(any::<bool>()), any::<bool>())
            .prop_map(|(k, c, i)| Op::MetaDelete(k, c, i)),
        1 => (
            k,
            any::<bool>(),
            0u64..200,
            proptest::option::of((0u64..1000, ttl_strategy())),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|(k, i, d, v, c)| Op::MetaArith(k, i, d, v, c)),
    ]
}

fn run_against_model(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut store = Store::new(StoreConfig {
        max_bytes: 1 << 30,
        evict: true,
        cas_start: 1,
        cas_stride: 1,
        item_size_max: usize::MAX,
        cas_enabled: true,
    });
    let mut model = Model {
        now: START,
        ..Model::default()
    };
    for op in ops {
        let now = model.now;
        match op.clone() {
            Op::Store(mode, k, flags, ttl, v) => {
                let key = key(k);
                let live_cas = model.live(&key).map_or(0, |i| i.cas);
                let set_mode = match mode {
                    Mode::Set => SetMode::Set,
                    Mode::Add => SetMode::Add,
                    Mode::Replace => SetMode::Replace,
                    Mode::Append => SetMode::Append,
                    Mode::Prepend => SetMode::Prepend,
                    Mode::Cas(true) => SetMode::Cas(live_cas),
                    Mode::Cas(false) => SetMode::Cas(live_cas + 1000),
                };
                let wire = ttl.wire(now);
                let want = model.store(mode, &key, flags, wire, &v);
                let got = store.store(set_mode, &key, flags, wire, &v, now);
                prop_assert_eq!(got, want, "{:?}", op);
            }
            Op::Get(k) => {
                let want = model.read(&key(k), None);
                let got = store
                    .get(&key(k), now)
                    .map(|v| (v.value.to_vec(), v.flags, v.cas));
                prop_assert_eq!(got, want, "{:?}", op);
            }
            Op::Gat(k, ttl) => {
                let wire = ttl.wire(now);
                let want = model.read(&key(k), Some(wire));
                let got = store
                    .get_and_touch(&key(k), wire, now)
                    .map(|v| (v.value.to_vec(), v.flags, v.cas));
                prop_assert_eq!(got, want, "{:?}", op);
            }
            Op::Touch(k, ttl) => {
                let wire = ttl.wire(now);
                let want = model.read(&key(k), Some(wire)).is_some();
                prop_assert_eq!(store.touch(&key(k), wire, now), want, "{:?}", op);
            }
            Op::Delete(k) => {
                let want = model.live(&key(k)).is_some();
                model.items.remove(&key(k));
                prop_assert_eq!(store.delete(&key(k), now), want, "{:?}", op);
            }
            Op::Arith(k, incr, delta) => {
                let want = model.arith(&key(k), incr, delta);
                prop_assert_eq!(store.arith(&key(k), incr, delta, now), want, "{:?}", op);
            }
            Op::Flush(ttl) => {
                let wire = ttl.wire(now);
                model.flush(wire);
                store.flush_all(wire, now);
            }
            Op::Advance(secs) => model.now += secs,
            Op::Maintain(visits) => {
                store.maintain(now, visits);
            }
            Op::MetaGet(k, vivify, recache) => {
                let (vivify, recache) = (vivify.map(|t| t.wire(now)), recache.map(|t| t.wire(now)));
                let want = model.meta_get(&key(k), vivify, recache);
                let options = GetOptions {
                    touch: None,
                    vivify,
                    recache,
                    bump: true,
                };
                let got = store.meta_get(&key(k), options, now).map(|hit| {
                    let value = hit.item.value.to_vec();
                    (value, hit.win, hit.stale, hit.win_sent, hit.created)
                });
                prop_assert_eq!(got, want, "{:?}", op);
            }
            Op::MetaDelete(k, cas_right, invalidate) => {
                let live_cas = model.live(&key(k)).map_or(0, |i| i.cas);
                let cas = cas_right.map(|right| if right { live_cas } else { live_cas + 1000 });
                let want = model.meta_delete(&key(k), cas_right, invalidate);
                let got = store.meta_delete(&key(k), cas, invalidate, None, now);
                prop_assert_eq!(got, want, "{:?}", op);
            }
            Op::MetaArith(k, incr, delta, vivify, cas_right) => {
                let live_cas = model.live(&key(k)).map_or(0, |i| i.cas);
                let cas = cas_right.map(|right| if right { live_cas } else { live_cas + 1000 });
                let vivify = vivify.map(|(initial, ttl)| (initial, ttl.wire(now)));
                let want = model.meta_arith(&key(k), incr, delta, vivify, cas_right);
                let options = ArithOptions {
                    incr,
                    delta,
                    cas,
                    vivify,
                    touch: None,
                };
                let got = match store.meta_arith(&key(k), options, now) {
                    MetaArithOutcome::Done { value, created, .. } => Ok((value, created)),
                    other => Err(other),
                };
                prop_assert_eq!(got, want, "{:?}", op);
            }
        }
        prop_assert!(store.len() >= model.items.values().filter(|i| model.is_live(i)).count());
    }
    for k in 0..5 {
        let want = model.read(&key(k), None);
        let got = store
            .get(&key(k), model.now)
            .map(|v| (v.value.to_vec(), v.flags, v.cas));
        prop_assert_eq!(got, want, "final read of key{}", k);
    }
    // Everything reclaimable is reclaimed and the accounting drains to zero.
    store.flush_all(0, model.now);
    store.maintain(model.now, usize::MAX);
    prop_assert_eq!((store.len(), store.bytes()), (0, 0));
    Ok(())
}

#[derive(Debug, Clone)]
enum SmallOp {
    Set(u8, Vec<u8>),
    Append(u8, Vec<u8>),
    Get(u8),
    Delete(u8),
    Incr(u8),
}

fn small_op_strategy() -> impl Strategy<Value = SmallOp> {
    let k = 0u8..12;
    let v = || {
        prop_oneof![
            proptest::collection::vec(b'a'..=b'z', 0..120),
            (0u64..100_000).prop_map(|n| n.to_string().into_bytes()),
        ]
    };
    prop_oneof![
        4 => (k.clone(), v()).prop_map(|(k, v)| SmallOp::Set(k, v)),
        1 => (k.clone(), v()).prop_map(|(k, v)| SmallOp::Append(k, v)),
        4 => k.clone().prop_map(SmallOp::Get),
        1 => k.clone().prop_map(SmallOp::Delete),
        1 => k.prop_map(SmallOp::Incr),
    ]
}

/// With a budget that forces eviction (or `OutOfMemory` under `-M`), the budget holds and
/// whatever is still present is exactly what was last written.
fn run_small_budget(ops: &[SmallOp], max_bytes: usize, evict: bool) -> Result<(), TestCaseError> {
    let mut store = Store::new(StoreConfig {
        max_bytes,
        evict,
        cas_start: 1,
        cas_stride: 1,
        item_size_max: usize::MAX,
        cas_enabled: true,
    });
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for op in ops {
        match op.clone() {
            SmallOp::Set(k, v) => match store.store(SetMode::Set, &key(k), 0, 0, &v, START) {
                StoreOutcome::Stored => {
                    model.insert(key(k), v);
                }
                StoreOutcome::OutOfMemory => {
                    let fits =
                        key(k).len() + v.len() + rampart_store::ITEM_OVERHEAD_BYTES <= max_bytes;
                    prop_assert!(!evict || !fits, "evicting store refused {:?}", op);
                    model.remove(&key(k));
                }
                other => prop_assert!(false, "{:?} gave {:?}", op, other),
            },
            SmallOp::Append(k, v) => {
                match store.store(SetMode::Append, &key(k), 0, 0, &v, START) {
                    StoreOutcome::Stored => {
                        let old = model.get_mut(&key(k));
                        prop_assert!(old.is_some(), "append stored on a key never set");
                        old.unwrap().extend_from_slice(&v);
                    }
                    _ => {
                        // Missing, evicted, or the combined item does not fit.
                        if store.get(&key(k), START).is_none() {
                            model.remove(&key(k));
                        }
                    }
                }
            }
            SmallOp::Get(k) => match store.get(&key(k), START) {
                Some(v) => prop_assert_eq!(Some(&v.value.to_vec()), model.get(&key(k))),
                None => {
                    model.remove(&key(k));
                }
            },
            SmallOp::Delete(k) => {
                let deleted = store.delete(&key(k), START);
                prop_assert!(!deleted || model.contains_key(&key(k)));
                model.remove(&key(k));
            }
            SmallOp::Incr(k) => {
                if let ArithOutcome::Value(_) = store.arith(&key(k), true, 1, START) {
                    let now_value = store.get(&key(k), START).unwrap().value.to_vec();
                    model.insert(key(k), now_value);
                } else if store.get(&key(k), START).is_none() {
                    model.remove(&key(k));
                }
            }
        }
        prop_assert!(store.bytes() <= store.limit_bytes());
        prop_assert!(store.len() <= model.len());
    }
    for k in 0..12 {
        if let Some(v) = store.get(&key(k), START) {
            prop_assert_eq!(Some(&v.value.to_vec()), model.get(&key(k)));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op_strategy(), 1..120)) {
        run_against_model(&ops)?;
    }

    #[test]
    fn small_budget_stays_within_limit_and_correct(
        ops in proptest::collection::vec(small_op_strategy(), 1..200),
        max_bytes in 100usize..1200,
        evict in any::<bool>(),
    ) {
        run_small_budget(&ops, max_bytes, evict)?;
    }
}
