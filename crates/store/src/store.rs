//! The shard's commands: memcached 1.6's storage semantics on top of the [`Table`].

use std::fmt;

use crate::arith::{self, MAX_U64_DIGITS};
use crate::expiry::{self, Flush, Secs};
use crate::stats::StoreStats;
use crate::table::{self, MAX_KEY_BYTES, NIL, NewItem, Table};
use crate::{ArithOutcome, ItemView, PrefixStats, SetMode, StoreConfig, StoreOutcome, UnixSecs};

/// Items examined from the LRU tail for an expired one before evicting a live one
/// (memcached's `lru_pull_tail` looks at 5).
const TAIL_SEARCH_ITEMS: usize = 5;

/// One shard's item table. See the crate documentation.
pub struct Store {
    table: Table,
    max_bytes: usize,
    item_size_max: usize,
    evict: bool,
    cas_enabled: bool,
    next_cas: u64,
    cas_stride: u64,
    flush: Flush,
    stats: StoreStats,
    /// Latest `now` seen: time inside the store never goes backwards.
    clock: Secs,
    /// Next slot index [`Store::maintain`] examines.
    crawl_cursor: u32,
    /// `stats detail`.
    prefixes: PrefixStats,
    /// Told of every eviction (the server's `watch evictions`).
    on_evict: Option<EvictionHook>,
    /// `stats sizes_enable`.
    sizes: Option<Box<crate::SizeHistogram>>,
}

/// What [`Store::on_evict`] calls.
pub type EvictionHook = Box<dyn FnMut(Evicted<'_>)>;

/// An item evicted to make room, as a log shows it.
#[derive(Debug, Clone, Copy)]
pub struct Evicted<'a> {
    pub key: &'a [u8],
    pub value_len: usize,
    pub fetched: bool,
    /// Absolute unix seconds; 0 never.
    pub exptime: UnixSecs,
    pub last_access: UnixSecs,
    pub now: UnixSecs,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("items", &self.table.len())
            .field("bytes", &self.table.bytes())
            .field("max_bytes", &self.max_bytes)
            .field("evict", &self.evict)
            .finish_non_exhaustive()
    }
}

fn take_cas(next: &mut u64, stride: u64) -> u64 {
    let cas = *next;
    *next = next.wrapping_add(stride);
    cas
}

impl Store {
    /// A store with `cfg`'s budget. A zero `cas_start` or `cas_stride` is taken as 1; use
    /// [`StoreConfig::validate`] to reject such configs instead.
    pub fn new(cfg: StoreConfig) -> Self {
        Self {
            table: Table::new(),
            max_bytes: cfg.max_bytes,
            item_size_max: cfg.item_size_max,
            evict: cfg.evict,
            cas_enabled: cfg.cas_enabled,
            next_cas: cfg.cas_start.max(1),
            cas_stride: cfg.cas_stride.max(1),
            flush: Flush::default(),
            stats: StoreStats::default(),
            clock: 0,
            crawl_cursor: 0,
            prefixes: PrefixStats::new(b':'),
            on_evict: None,
            sizes: None,
        }
    }

    /// `get`/`gets`: counts a hit or miss, bumps the item in the LRU and marks it fetched.
    pub fn get(&mut self, key: &[u8], now: UnixSecs) -> Option<ItemView<'_>> {
        let now = self.tick(now);
        self.stats.cmd_get += 1;
        let found = self.lookup(key, now);
        self.count_prefix_get(key, found.is_some());
        match found {
            Some(i) => {
                self.stats.get_hits += 1;
                Some(self.access(i, now, None))
            }
            None => {
                self.stats.get_misses += 1;
                None
            }
        }
    }

    /// `stats detail`: a classic get of `key` counts on its prefix (meta and binary reads do
    /// not, as in memcached).
    #[inline]
    fn count_prefix_get(&mut self, key: &[u8], hit: bool) {
        if self.prefixes.enabled {
            self.prefixes.record(key, crate::PrefixEvent::Get { hit });
        }
    }

    /// `gat`/`gats`: like `touch`, and returns the item. memcached counts these as touches
    /// only (`cmd_touch`, `touch_hits`/`touch_misses`), not as gets.
    pub fn get_and_touch(
        &mut self,
        key: &[u8],
        exptime: i64,
        now: UnixSecs,
    ) -> Option<ItemView<'_>> {
        self.touch_counted(key, exptime, now, true)
    }

    fn touch_counted(
        &mut self,
        key: &[u8],
        exptime: i64,
        now: UnixSecs,
        prefix_get: bool,
    ) -> Option<ItemView<'_>> {
        let now = self.tick(now);
        self.stats.cmd_touch += 1;
        let found = self.lookup(key, now);
        if prefix_get {
            self.count_prefix_get(key, found.is_some());
        }
        match found {
            Some(i) => {
                self.stats.touch_hits += 1;
                let exptime = expiry::resolve_exptime(exptime, now);
                Some(self.access(i, now, Some(exptime)))
            }
            None => {
                self.stats.touch_misses += 1;
                None
            }
        }
    }

    /// `touch`: sets a new exptime (the CAS unique stays); `false` if the key is missing.
    pub fn touch(&mut self, key: &[u8], exptime: i64, now: UnixSecs) -> bool {
        self.touch_counted(key, exptime, now, false).is_some()
    }

    /// [`Store::touch`], answering the value's length when the key was there (for a log).
    pub fn touch_len(&mut self, key: &[u8], exptime: i64, now: UnixSecs) -> Option<usize> {
        self.touch_counted(key, exptime, now, false)
            .map(|item| item.value.len())
    }

    /// set/add/replace/append/prepend/cas. append and prepend keep the item's flags and
    /// exptime and ignore the given ones.
    pub fn store(
        &mut self,
        mode: SetMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
        now: UnixSecs,
    ) -> StoreOutcome {
        let now = self.tick(now);
        if key.len() > MAX_KEY_BYTES || table::item_charge(key.len(), value.len()) > self.max_bytes
        {
            return self.out_of_memory(mode, key);
        }
        let item = NewItem {
            key,
            value,
            flags,
            exptime: expiry::resolve_exptime(exptime, now),
            now,
            cas: 0,
        };
        let outcome = match (mode, self.lookup(key, now)) {
            (SetMode::Set | SetMode::Add, None) => self.link_new(item),
            (SetMode::Set | SetMode::Replace, Some(i)) => self.overwrite(i, item),
            (SetMode::Add, Some(i)) => {
                // memcached promotes the existing item (do_item_update).
                self.table.bump(i);
                self.table.slot_mut(i).atime = now;
                StoreOutcome::NotStored
            }
            (SetMode::Replace | SetMode::Append | SetMode::Prepend, None) => {
                StoreOutcome::NotStored
            }
            (SetMode::Append, Some(i)) => self.extend(i, value, false, now),
            (SetMode::Prepend, Some(i)) => self.extend(i, value, true, now),
            (SetMode::Cas(_), None) => {
                self.stats.cas_misses += 1;
                StoreOutcome::NotFound
            }
            (SetMode::Cas(unique), Some(i))
                if !self.cas_enabled || self.table.slot(i).cas != unique =>
            {
                self.stats.cas_badval += 1;
                StoreOutcome::Exists
            }
            (SetMode::Cas(_), Some(i)) => {
                let outcome = self.overwrite(i, item);
                if outcome == StoreOutcome::Stored {
                    self.stats.cas_hits += 1;
                }
                outcome
            }
        };
        if outcome == StoreOutcome::OutOfMemory {
            return self.out_of_memory(mode, key);
        }
        self.stats.cmd_set += 1;
        outcome
    }

    /// `delete`: `true` if a live item was removed.
    pub fn delete(&mut self, key: &[u8], now: UnixSecs) -> bool {
        let now = self.tick(now);
        match self.lookup(key, now) {
            Some(i) => {
                self.stats.delete_hits += 1;
                self.remove(i);
                true
            }
            None => {
                self.stats.delete_misses += 1;
                false
            }
        }
    }

    /// Removes `key` without counting anything (memcached drops the old item when a `set`
    /// is refused as too large, so a stale value is not served).
    pub fn unlink(&mut self, key: &[u8]) {
        if let Some(i) = self.table.find(key) {
            self.remove(i);
        }
    }

    /// `incr`/`decr` as memcached's `do_add_delta`: the value must parse as a decimal u64;
    /// a result no longer than the old value is written in place padded with spaces,
    /// otherwise the value is replaced by the exact digits. Either way a new CAS unique.
    pub fn arith(&mut self, key: &[u8], incr: bool, delta: u64, now: UnixSecs) -> ArithOutcome {
        let now = self.tick(now);
        let Some(i) = self.lookup(key, now) else {
            if incr {
                self.stats.incr_misses += 1;
            } else {
                self.stats.decr_misses += 1;
            }
            return ArithOutcome::NotFound;
        };
        let old_value = self.table.slot(i).value();
        let Some(old) = arith::parse_u64(old_value) else {
            return ArithOutcome::NonNumeric;
        };
        let old_len = old_value.len();
        let new = arith::apply_delta(old, incr, delta);
        if incr {
            self.stats.incr_hits += 1;
        } else {
            self.stats.decr_hits += 1;
        }
        let mut buf = [0; MAX_U64_DIGITS];
        let digits = arith::format_u64(new, &mut buf);
        self.untrack(i);
        if digits.len() <= old_len {
            arith::write_padded(self.table.value_mut(i), digits);
        } else {
            if !self.make_room(digits.len() - old_len, i, now) {
                self.track(i);
                return ArithOutcome::OutOfMemory;
            }
            // memcached links a new item here: unfetched, and counted in total_items.
            self.table.set_value(i, digits);
            self.table.slot_mut(i).fetched = false;
            self.stats.total_items += 1;
        }
        let cas = take_cas(&mut self.next_cas, self.cas_stride);
        let slot = self.table.slot_mut(i);
        slot.cas = cas;
        slot.atime = now;
        self.table.bump(i);
        self.track(i);
        ArithOutcome::Value(new)
    }

    /// `flush_all [delay]`: 0 (or negative) invalidates everything stored before this call;
    /// a delay (exptime rules: relative up to 30 days, else absolute) invalidates, once that
    /// time comes, every item last updated before it. Memory is reclaimed lazily.
    pub fn flush_all(&mut self, delay_secs: i64, now: UnixSecs) {
        let now = self.tick(now);
        let Self {
            flush,
            next_cas,
            cas_stride,
            ..
        } = self;
        flush.flush_all(delay_secs, now, || take_cas(next_cas, *cas_stride));
    }

    /// Background reclaim (memcached's LRU crawler): examines up to `max_visits` slots,
    /// resuming where the last call stopped, and unlinks expired or flushed items.
    /// Returns how many were reclaimed.
    pub fn maintain(&mut self, now: UnixSecs, max_visits: usize) -> usize {
        let now = self.tick(now);
        let slots = self.table.slot_count();
        let mut reclaimed = 0;
        for _ in 0..max_visits.min(slots as usize) {
            let i = self.crawl_cursor;
            self.crawl_cursor = if i + 1 >= slots { 0 } else { i + 1 };
            let slot = self.table.slot(i);
            if !slot.linked() {
                continue;
            }
            let flushed = self.flush.is_flushed(slot.atime, slot.cas, now);
            if !flushed && !expiry::is_expired(slot.exptime, now) {
                continue;
            }
            if !flushed && !slot.fetched {
                self.stats.expired_unfetched += 1;
            }
            self.stats.crawler_reclaimed += 1;
            self.remove(i);
            reclaimed += 1;
        }
        reclaimed
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// For counters the server observes before the store is reached (`store_too_large`, a
    /// `flush_all` refused by `-F`).
    pub fn stats_mut(&mut self) -> &mut StoreStats {
        &mut self.stats
    }

    /// Items linked, including expired ones not reclaimed yet (memcached's `curr_items`).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// Bytes charged for linked items: key + value + [`crate::ITEM_OVERHEAD_BYTES`] each.
    pub fn bytes(&self) -> usize {
        self.table.bytes()
    }

    /// Bytes the key index's bucket array occupies (memcached's `hash_bytes`); part of the
    /// per-item charge, reported for operators who watch the table itself.
    pub fn index_bytes(&self) -> usize {
        self.table.index_bytes()
    }

    /// `cache_memlimit`: a new budget. As in memcached, whose lower limit only stops new slab
    /// pages, nothing is evicted at once: while the items exceed the new limit, each store
    /// frees room for itself from the LRU tail (see [`Store::make_room`]), so the charged
    /// bytes never grow past what they were and fall as items expire, are deleted or
    /// replaced by smaller ones.
    pub fn set_limit_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    pub fn limit_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Seconds since the item at the LRU tail, the next candidate for eviction, was last
    /// stored or accessed (memcached's `age`). A read does not move an item, so the tail may
    /// have been read more recently than other items were.
    pub fn oldest_item_age(&self, now: UnixSecs) -> Option<u64> {
        let tail = self.table.tail();
        (tail != NIL).then(|| now.saturating_sub(u64::from(self.table.slot(tail).atime)))
    }

    /// Not `-C`.
    pub fn cas_enabled(&self) -> bool {
        self.cas_enabled
    }

    /// The unique a client sees for an item's `cas`: 0 throughout under `-C`.
    pub(crate) fn shown_cas(&self, cas: u64) -> u64 {
        if self.cas_enabled { cas } else { 0 }
    }

    pub(crate) fn table(&self) -> &Table {
        &self.table
    }

    pub(crate) fn clock(&self) -> Secs {
        self.clock
    }

    /// `stats sizes_enable` (`true`: a new histogram of the items linked from now on) and
    /// `stats sizes_disable`.
    pub fn track_sizes(&mut self, on: bool) {
        match (on, self.sizes.is_some()) {
            (true, false) => {
                self.sizes = Some(Box::new(crate::SizeHistogram::new(self.next_cas)));
            }
            (false, _) => self.sizes = None,
            (true, true) => {}
        }
    }

    /// The histogram while sizes are tracked.
    pub fn sizes(&self) -> Option<&crate::SizeHistogram> {
        self.sizes.as_deref()
    }

    /// Item `i` leaves the histogram (before it is removed or replaced).
    #[inline]
    pub(crate) fn untrack(&mut self, i: u32) {
        if self.sizes.is_some() {
            let (size, cas) = self.size_and_cas(i);
            if let Some(sizes) = &mut self.sizes {
                sizes.remove(size, cas);
            }
        }
    }

    /// Item `i` enters the histogram (once linked or replaced).
    #[inline]
    pub(crate) fn track(&mut self, i: u32) {
        if self.sizes.is_some() {
            let (size, cas) = self.size_and_cas(i);
            if let Some(sizes) = &mut self.sizes {
                sizes.add(size, cas);
            }
        }
    }

    /// Item `i`'s size as memcached measures it, and its unique.
    fn size_and_cas(&self, i: u32) -> (usize, u64) {
        let slot = self.table.slot(i);
        let size = crate::memcached_item_bytes(
            slot.key().len(),
            slot.flags,
            slot.value().len(),
            self.cas_enabled,
        );
        (size, slot.cas)
    }

    /// Calls `hook` with every item evicted from now on.
    pub fn on_evict(&mut self, hook: EvictionHook) {
        self.on_evict = Some(hook);
    }

    /// `stats detail`'s counters.
    pub fn prefix_stats(&self) -> &PrefixStats {
        &self.prefixes
    }

    pub fn prefix_stats_mut(&mut self) -> &mut PrefixStats {
        &mut self.prefixes
    }

    fn tick(&mut self, now: UnixSecs) -> Secs {
        self.clock = self.clock.max(expiry::secs(now));
        self.clock
    }

    pub(crate) fn is_dead(&self, i: u32, now: Secs) -> bool {
        let slot = self.table.slot(i);
        self.flush.is_flushed(slot.atime, slot.cas, now) || expiry::is_expired(slot.exptime, now)
    }

    /// memcached's `do_item_get`: finds a live item, unlinking (and counting) a flushed or
    /// expired one on the way.
    fn lookup(&mut self, key: &[u8], now: Secs) -> Option<u32> {
        let i = self.table.find(key)?;
        let slot = self.table.slot(i);
        if self.flush.is_flushed(slot.atime, slot.cas, now) {
            self.stats.get_flushed += 1;
        } else if expiry::is_expired(slot.exptime, now) {
            self.stats.get_expired += 1;
        } else {
            return Some(i);
        }
        self.remove(i);
        None
    }

    /// A read hit: mark active (the LRU's second chance, [`Table::mark_active`]) and fetched,
    /// maybe set a new exptime; the view shows the last-access time and fetched flag from
    /// before this access.
    fn access(&mut self, i: u32, now: Secs, exptime: Option<Secs>) -> ItemView<'_> {
        self.table.mark_active(i);
        let slot = self.table.slot_mut(i);
        let last_access = slot.atime;
        let fetched = slot.fetched;
        slot.atime = now;
        slot.fetched = true;
        if let Some(exptime) = exptime {
            slot.exptime = exptime;
        }
        let slot = self.table.slot(i);
        ItemView {
            key: slot.key(),
            value: slot.value(),
            shared: slot.shared(),
            flags: slot.flags,
            cas: self.shown_cas(slot.cas),
            exptime: u64::from(slot.exptime),
            last_access: u64::from(last_access),
            fetched,
        }
    }

    fn remove(&mut self, i: u32) {
        self.untrack(i);
        self.table.remove(i);
        self.stats.curr_items = self.table.len() as u64;
    }

    fn out_of_memory(&mut self, mode: SetMode, key: &[u8]) -> StoreOutcome {
        self.stats.store_no_memory += 1;
        if mode == SetMode::Set {
            // memcached: "Avoid stale data persisting in cache because we failed alloc."
            self.unlink(key);
        }
        StoreOutcome::OutOfMemory
    }

    fn link_new(&mut self, item: NewItem<'_>) -> StoreOutcome {
        let charge = table::item_charge(item.key.len(), item.value.len());
        if !self.make_room(charge, NIL, item.now) {
            return StoreOutcome::OutOfMemory;
        }
        let cas = take_cas(&mut self.next_cas, self.cas_stride);
        let Some(i) = self.table.insert(NewItem { cas, ..item }) else {
            return StoreOutcome::OutOfMemory;
        };
        self.track(i);
        self.stats.total_items += 1;
        self.stats.curr_items = self.table.len() as u64;
        StoreOutcome::Stored
    }

    /// set/replace/cas over a live item: memcached links a new item, so everything but the
    /// key is new. The allocation is reused when the value length is unchanged.
    fn overwrite(&mut self, i: u32, item: NewItem<'_>) -> StoreOutcome {
        let old_len = self.table.slot(i).value().len();
        let grow = item.value.len().saturating_sub(old_len);
        if grow > 0 && !self.make_room(grow, i, item.now) {
            return StoreOutcome::OutOfMemory;
        }
        self.untrack(i);
        self.table.set_value(i, item.value);
        let cas = take_cas(&mut self.next_cas, self.cas_stride);
        let slot = self.table.slot_mut(i);
        slot.flags = item.flags;
        slot.exptime = item.exptime;
        slot.atime = item.now;
        slot.cas = cas;
        slot.fetched = false;
        // A new item in memcached: not stale, no win handed out.
        slot.set_stale(false);
        slot.set_win_sent(false);
        self.table.bump(i);
        self.track(i);
        self.stats.total_items += 1;
        StoreOutcome::Stored
    }

    /// append/prepend: a new item with the old flags and exptime. memcached answers
    /// NOT_STORED when the combined item cannot be allocated.
    fn extend(&mut self, i: u32, data: &[u8], prepend: bool, now: Secs) -> StoreOutcome {
        let slot = self.table.slot(i);
        let new_len = slot.value().len().saturating_add(data.len());
        if crate::memcached_item_bytes(slot.key().len(), slot.flags, new_len, self.cas_enabled)
            > self.item_size_max
            || table::item_charge(slot.key().len(), new_len) > self.max_bytes
            || !self.make_room(data.len(), i, now)
        {
            return StoreOutcome::NotStored;
        }
        self.untrack(i);
        self.table.extend_value(i, data, prepend);
        let cas = take_cas(&mut self.next_cas, self.cas_stride);
        let slot = self.table.slot_mut(i);
        slot.atime = now;
        slot.cas = cas;
        slot.fetched = false;
        slot.set_stale(false);
        slot.set_win_sent(false);
        self.table.bump(i);
        self.track(i);
        self.stats.total_items += 1;
        StoreOutcome::Stored
    }

    /// Frees memory until `need` more bytes fit, never touching item `protect`. Over a
    /// lowered limit (`cache_memlimit`) it frees `need` bytes and no more: the store takes
    /// the room of what it evicted, as in memcached, instead of emptying the cache down to
    /// the new limit at once.
    fn make_room(&mut self, need: usize, protect: u32, now: Secs) -> bool {
        let before = self.table.bytes();
        while self.table.bytes().saturating_add(need) > self.max_bytes {
            if before.saturating_sub(self.table.bytes()) >= need {
                break;
            }
            if !self.pull_tail(protect, now) {
                return false;
            }
        }
        true
    }

    /// Frees one item near the LRU tail: an expired or flushed one among the last
    /// [`TAIL_SEARCH_ITEMS`] if any (`reclaimed`), else the last one not read since it moved
    /// when evicting is allowed (`evictions`). A live item read since it last moved is not
    /// counted but goes back to the head, unmarked ([`Table::take_active`]), and the walk
    /// goes on through its old neighbour; the head, which has nowhere to go, is examined
    /// unmarked. Moving an item to the head makes it the old head's `prev`, so the walk meets
    /// the moved items again, unmarked, after the others: each moves at most once per call,
    /// so this ends. Returns whether anything was freed.
    fn pull_tail(&mut self, protect: u32, now: Secs) -> bool {
        let mut victim = NIL;
        let mut cur = self.table.tail();
        let mut searched = 0;
        while cur != NIL && searched < TAIL_SEARCH_ITEMS {
            let prev = self.table.slot(cur).prev();
            if cur != protect {
                if self.is_dead(cur, now) {
                    self.stats.reclaimed += 1;
                    if !self.table.slot(cur).fetched {
                        self.stats.expired_unfetched += 1;
                    }
                    self.remove(cur);
                    return true;
                }
                if self.table.take_active(cur) && prev != NIL {
                    cur = prev;
                    continue;
                }
                if victim == NIL {
                    victim = cur;
                }
            }
            searched += 1;
            cur = prev;
        }
        if !self.evict || victim == NIL {
            return false;
        }
        self.stats.evictions += 1;
        if !self.table.slot(victim).fetched {
            self.stats.evicted_unfetched += 1;
        }
        if let Some(hook) = &mut self.on_evict {
            let slot = self.table.slot(victim);
            hook(Evicted {
                key: slot.key(),
                value_len: slot.value().len(),
                fetched: slot.fetched,
                exptime: u64::from(slot.exptime),
                last_access: u64::from(slot.atime),
                now: u64::from(now),
            });
        }
        self.remove(victim);
        true
    }
}

mod meta;
#[cfg(test)]
mod tests;

pub use meta::{ArithOptions, DeleteOutcome, GetOptions, MetaArithOutcome, MetaHit};
