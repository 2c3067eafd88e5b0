//! Reading the whole table a piece at a time (`stats cachedump`, `lru_crawler metadump`), and
//! the per-prefix counters of `stats detail`.
//!
//! A dump walks slot indices, so a cursor stays valid whatever is stored or removed between
//! pieces: an item linked behind the cursor is missed and one removed ahead of it is not
//! shown, as with memcached's crawler. Each piece is bounded by the caller's byte budget.

use std::collections::{BTreeMap, HashMap};

use crate::store::Store;
use crate::{UnixSecs, memcached_item_bytes};

/// One live item as a dump shows it; its key is `keys[key_start..key_start + key_len]` of the
/// piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpEntry {
    pub key_start: usize,
    pub key_len: usize,
    pub value_len: usize,
    pub flags: u32,
    /// Absolute unix seconds; 0 never.
    pub exptime: UnixSecs,
    pub last_access: UnixSecs,
    pub cas: u64,
    pub fetched: bool,
    /// memcached's size of the item (`size=` in a metadump).
    pub size: usize,
}

/// A piece of a dump: live items from one cursor to the next.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DumpPiece {
    pub keys: Vec<u8>,
    pub entries: Vec<DumpEntry>,
    /// Where the next piece starts; `None` once the table is done.
    pub next: Option<u32>,
}

impl DumpPiece {
    pub fn key(&self, entry: &DumpEntry) -> &[u8] {
        &self.keys[entry.key_start..entry.key_start + entry.key_len]
    }
}

impl Store {
    /// Live items from slot `from` on, until their keys reach `max_key_bytes` or `max_items`
    /// entries (at least one item when any is left). Nothing is bumped, counted or reclaimed.
    pub fn dump(
        &self,
        from: u32,
        max_key_bytes: usize,
        max_items: usize,
        now: UnixSecs,
    ) -> DumpPiece {
        let now = crate::expiry::secs(now).max(self.clock());
        let slots = self.table().slot_count();
        let mut piece = DumpPiece::default();
        let mut i = from;
        while i < slots {
            if piece.keys.len() >= max_key_bytes || piece.entries.len() >= max_items {
                piece.next = Some(i);
                return piece;
            }
            let slot = self.table().slot(i);
            if slot.linked() && !self.is_dead(i, now) {
                let key = slot.key();
                piece.entries.push(DumpEntry {
                    key_start: piece.keys.len(),
                    key_len: key.len(),
                    value_len: slot.value().len(),
                    flags: slot.flags,
                    exptime: u64::from(slot.exptime),
                    last_access: u64::from(slot.atime),
                    cas: self.shown_cas(slot.cas),
                    fetched: slot.fetched,
                    size: memcached_item_bytes(
                        key.len(),
                        slot.flags,
                        slot.value().len(),
                        self.cas_enabled(),
                    ),
                });
                piece.keys.extend_from_slice(key);
            }
            i += 1;
        }
        piece
    }
}

/// Prefixes a shard counts at most; a new prefix past this is not counted (memcached has no
/// bound: one client naming endless prefixes would grow it without end).
pub const MAX_PREFIXES: usize = 4096;

/// One prefix's counters (memcached's `PREFIX <p> get <n> hit <n> set <n> del <n>`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PrefixCounts {
    pub gets: u64,
    pub hits: u64,
    pub sets: u64,
    pub deletes: u64,
}

impl PrefixCounts {
    pub fn add(&mut self, other: &PrefixCounts) {
        self.gets += other.gets;
        self.hits += other.hits;
        self.sets += other.sets;
        self.deletes += other.deletes;
    }
}

/// `stats detail`: counters per key prefix (what comes before the delimiter), kept while on.
#[derive(Debug, Default)]
pub struct PrefixStats {
    /// Counting (`stats detail on`, or `-D`).
    pub enabled: bool,
    pub delimiter: u8,
    counts: HashMap<Box<[u8]>, PrefixCounts>,
    /// Operations on a prefix not counted because [`MAX_PREFIXES`] were already.
    pub dropped: u64,
}

/// What happened to a key, for its prefix's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixEvent {
    Get { hit: bool },
    Set,
    Delete,
}

impl PrefixStats {
    pub fn new(delimiter: u8) -> Self {
        PrefixStats {
            delimiter,
            ..PrefixStats::default()
        }
    }

    /// Counts `event` on `key`'s prefix; a key without the delimiter has none.
    pub fn record(&mut self, key: &[u8], event: PrefixEvent) {
        let Some(end) = key.iter().position(|&b| b == self.delimiter) else {
            return;
        };
        let prefix = &key[..end];
        if !self.counts.contains_key(prefix) {
            if self.counts.len() >= MAX_PREFIXES {
                self.dropped += 1;
                return;
            }
            self.counts.insert(prefix.into(), PrefixCounts::default());
        }
        let Some(counts) = self.counts.get_mut(prefix) else {
            return;
        };
        match event {
            PrefixEvent::Get { hit } => {
                counts.gets += 1;
                counts.hits += u64::from(hit);
            }
            PrefixEvent::Set => counts.sets += 1,
            PrefixEvent::Delete => counts.deletes += 1,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &PrefixCounts)> {
        self.counts.iter().map(|(k, v)| (&k[..], v))
    }

    /// `stats reset`.
    pub fn clear(&mut self) {
        self.counts.clear();
        self.dropped = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SetMode, StoreConfig};

    fn store() -> Store {
        Store::new(StoreConfig::single(1 << 20))
    }

    #[test]
    fn a_dump_in_pieces_shows_every_live_item_once() {
        let mut s = store();
        for i in 0..100u32 {
            let exptime = if i % 10 == 0 { 150 } else { 0 };
            s.store(
                SetMode::Set,
                format!("k{i}").as_bytes(),
                i,
                exptime,
                b"v",
                100,
            );
        }
        // At 300 the ten with exptime 150 have expired.
        let mut seen = Vec::new();
        let mut from = Some(0);
        let mut pieces = 0;
        while let Some(at) = from {
            let piece = s.dump(at, 16, usize::MAX, 300);
            assert!(piece.keys.len() < 16 + 4, "a piece stops at its budget");
            for entry in &piece.entries {
                seen.push(String::from_utf8(piece.key(entry).to_vec()).unwrap_or_default());
                assert_eq!(
                    entry.size,
                    memcached_item_bytes(entry.key_len, entry.flags, 1, true)
                );
            }
            from = piece.next;
            pieces += 1;
        }
        assert!(pieces > 10);
        seen.sort();
        let mut want: Vec<String> = (0..100)
            .filter(|i| i % 10 != 0)
            .map(|i| format!("k{i}"))
            .collect();
        want.sort();
        assert_eq!(seen, want);
        // Dumping touched nothing.
        assert_eq!(s.len(), 100);
    }

    #[test]
    fn sizes_count_items_linked_since_tracking_began() {
        let mut s = store();
        s.store(SetMode::Set, b"old", 0, 0, b"v", 100);
        s.track_sizes(true);
        s.store(SetMode::Set, b"a", 0, 0, b"1", 100);
        s.store(SetMode::Set, b"bb", 0, 0, &[b'x'; 40], 100);
        s.store(SetMode::Set, b"c", 0, 0, b"2", 100);
        let sizes = |s: &Store| s.sizes().map(|h| h.iter().collect::<Vec<_>>());
        // memcached's sizes: 61 bytes in the 64 bucket, 101 in 128.
        assert_eq!(sizes(&s), Some(vec![(64, 2), (128, 1)]));
        s.delete(b"c", 100);
        // An item from before tracking leaves no mark.
        s.delete(b"old", 100);
        s.store(SetMode::Append, b"a", 0, 0, &[b'y'; 10], 100);
        // A number that grows is replaced, counted once.
        s.store(SetMode::Set, b"n", 0, 0, b"9", 100);
        s.arith(b"n", true, 1, 100);
        assert_eq!(sizes(&s), Some(vec![(64, 1), (96, 1), (128, 1)]));
        s.track_sizes(false);
        assert_eq!(sizes(&s), None);
    }

    #[test]
    fn prefixes_are_counted_up_to_the_bound() {
        let mut p = PrefixStats::new(b':');
        p.record(b"a:1", PrefixEvent::Get { hit: true });
        p.record(b"a:2", PrefixEvent::Get { hit: false });
        p.record(b"a:3", PrefixEvent::Set);
        p.record(b":x", PrefixEvent::Delete);
        p.record(b"plain", PrefixEvent::Set);
        let mut all: Vec<(Vec<u8>, PrefixCounts)> =
            p.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
        all.sort();
        assert_eq!(
            all,
            [
                (
                    b"".to_vec(),
                    PrefixCounts {
                        deletes: 1,
                        ..PrefixCounts::default()
                    }
                ),
                (
                    b"a".to_vec(),
                    PrefixCounts {
                        gets: 2,
                        hits: 1,
                        sets: 1,
                        deletes: 0
                    }
                ),
            ]
        );
        for i in 0..MAX_PREFIXES + 10 {
            p.record(format!("p{i}:k").as_bytes(), PrefixEvent::Set);
        }
        assert_eq!(p.iter().count(), MAX_PREFIXES);
        assert_eq!(p.dropped, 12);
    }
}

/// memcached's `stats sizes` buckets: item sizes rounded up to 32 bytes.
pub const SIZE_BUCKET_BYTES: usize = 32;

/// `stats sizes_enable`: how many items of each size bucket were linked since tracking
/// began. Items linked before it (their CAS below `since_cas`) are not counted, in or out,
/// as in memcached.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SizeHistogram {
    since_cas: u64,
    buckets: BTreeMap<usize, u64>,
}

impl SizeHistogram {
    pub fn new(since_cas: u64) -> Self {
        SizeHistogram {
            since_cas,
            buckets: BTreeMap::new(),
        }
    }

    fn bucket(size: usize) -> usize {
        size.div_ceil(SIZE_BUCKET_BYTES) * SIZE_BUCKET_BYTES
    }

    pub(crate) fn add(&mut self, size: usize, cas: u64) {
        if cas >= self.since_cas {
            *self.buckets.entry(Self::bucket(size)).or_default() += 1;
        }
    }

    pub(crate) fn remove(&mut self, size: usize, cas: u64) {
        if cas < self.since_cas {
            return;
        }
        let bucket = Self::bucket(size);
        if let Some(count) = self.buckets.get_mut(&bucket) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.buckets.remove(&bucket);
            }
        }
    }

    /// `(bucket, items)`, smallest first.
    pub fn iter(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.buckets.iter().map(|(b, n)| (*b, *n))
    }
}
