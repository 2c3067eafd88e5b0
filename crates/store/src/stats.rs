//! Counters named after the lines of memcached's `stats` output.

/// One shard's counters. Each field means what the memcached 1.6 `stats` line of the same
/// name means; the server sums them over shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Keys looked up by `get`/`gets` (memcached does not count `gat` here).
    pub cmd_get: u64,
    pub get_hits: u64,
    pub get_misses: u64,
    /// Lookups (by any command) that found an expired item and unlinked it.
    pub get_expired: u64,
    /// Lookups (by any command) that found an item invalidated by `flush_all` and unlinked it.
    pub get_flushed: u64,
    /// Storage commands whose item could be allocated (not counted on `OutOfMemory`).
    pub cmd_set: u64,
    /// `touch`, `gat` and `gats` keys.
    pub cmd_touch: u64,
    pub touch_hits: u64,
    pub touch_misses: u64,
    pub delete_hits: u64,
    pub delete_misses: u64,
    pub incr_hits: u64,
    pub incr_misses: u64,
    pub decr_hits: u64,
    pub decr_misses: u64,
    pub cas_hits: u64,
    /// `cas` on a missing key.
    pub cas_misses: u64,
    /// `cas` whose unique did not match.
    pub cas_badval: u64,
    /// Items linked now, including expired ones not yet reclaimed.
    pub curr_items: u64,
    /// Every successful link: set/add/replace/cas/append/prepend, and incr/decr that had to
    /// re-create the item because the number grew longer.
    pub total_items: u64,
    /// Live items removed from the LRU tail to make room.
    pub evictions: u64,
    /// Evicted items that were never fetched.
    pub evicted_unfetched: u64,
    /// Expired items reclaimed without ever being fetched (not counted for flushed items
    /// found by the crawler, as in memcached).
    pub expired_unfetched: u64,
    /// Expired or flushed items found at the LRU tail while making room, whose memory was
    /// reused.
    pub reclaimed: u64,
    /// Expired or flushed items reclaimed by [`crate::Store::maintain`] (memcached's LRU
    /// crawler).
    pub crawler_reclaimed: u64,
    /// `flush_all` commands, refused ones included. A command counter: the server counts it,
    /// once per command however many shards it reached; `Store::flush_all` does not.
    pub cmd_flush: u64,
    /// Storage commands answered `SERVER_ERROR out of memory storing object`.
    pub store_no_memory: u64,
    /// Storage commands refused as larger than `-I` (counted by the server, which owns `-I`).
    pub store_too_large: u64,
}

impl StoreStats {
    /// Adds another shard's counters to these (for `stats` over every shard).
    pub fn add(&mut self, other: &StoreStats) {
        let StoreStats {
            cmd_get,
            get_hits,
            get_misses,
            get_expired,
            get_flushed,
            cmd_set,
            cmd_touch,
            touch_hits,
            touch_misses,
            delete_hits,
            delete_misses,
            incr_hits,
            incr_misses,
            decr_hits,
            decr_misses,
            cas_hits,
            cas_misses,
            cas_badval,
            curr_items,
            total_items,
            evictions,
            evicted_unfetched,
            expired_unfetched,
            reclaimed,
            crawler_reclaimed,
            cmd_flush,
            store_no_memory,
            store_too_large,
        } = other;
        self.cmd_get += cmd_get;
        self.get_hits += get_hits;
        self.get_misses += get_misses;
        self.get_expired += get_expired;
        self.get_flushed += get_flushed;
        self.cmd_set += cmd_set;
        self.cmd_touch += cmd_touch;
        self.touch_hits += touch_hits;
        self.touch_misses += touch_misses;
        self.delete_hits += delete_hits;
        self.delete_misses += delete_misses;
        self.incr_hits += incr_hits;
        self.incr_misses += incr_misses;
        self.decr_hits += decr_hits;
        self.decr_misses += decr_misses;
        self.cas_hits += cas_hits;
        self.cas_misses += cas_misses;
        self.cas_badval += cas_badval;
        self.curr_items += curr_items;
        self.total_items += total_items;
        self.evictions += evictions;
        self.evicted_unfetched += evicted_unfetched;
        self.expired_unfetched += expired_unfetched;
        self.reclaimed += reclaimed;
        self.crawler_reclaimed += crawler_reclaimed;
        self.cmd_flush += cmd_flush;
        self.store_no_memory += store_no_memory;
        self.store_too_large += store_too_large;
    }

    /// `stats reset`: every counter back to zero; `curr_items` is a gauge and stays.
    pub fn reset(&mut self) {
        *self = StoreStats {
            curr_items: self.curr_items,
            ..StoreStats::default()
        };
    }
}
