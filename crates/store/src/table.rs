//! The item table: slots, the key index, the intrusive LRU list and byte accounting.
//!
//! # Layout
//! - Items live in [`Slot`]s (40 bytes each) kept in fixed chunks of [`CHUNK_SLOTS`], so the
//!   slot array never reallocates or doubles; freed slots go on a free list threaded through
//!   `next` and are reused before a new chunk is made.
//! - A slot owns one heap allocation holding `key ++ value` exactly behind an 8-byte header
//!   ([`ItemBytes`]: a reference count and the length), so a reply can hold the value
//!   without copying it; a value shared with a reply is never written in place.
//! - The LRU list is intrusive: `prev`/`next` are `u32` slot indices, head = most recent
//!   store. A read does not move its item ([`Table::bump`] would touch two other slots' cache
//!   lines, cold in a large table, on every hit): it marks it active ([`Table::mark_active`],
//!   a bit in the slot the lookup already touched), and eviction gives an active item at the
//!   tail a second chance at the head ([`Table::take_active`]). This is the CLOCK
//!   approximation of LRU, and memcached's own answer (its `ITEM_ACTIVE` bit) to the same cost.
//! - The index ([`Index`]) maps a key's hash to its slot, with a prefetch hint to the slot's
//!   allocation so a hit waits for two cache misses, not four; the hash comes from the key
//!   bytes through hashbrown's default hasher (foldhash: fast, and seeded per process so
//!   clients cannot aim collisions at a shard).

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

use crate::index::Index;

use crate::expiry::Secs;
use crate::shared::ItemBytes;

/// Bytes charged per item on top of its key and value bytes.
///
/// Derivation (64-bit Linux, glibc malloc):
/// - 40: the slot itself (data pointer 8, CAS 8, LRU links 2×4, flags 4, exptime 4, last
///   access 4, key length 2, two flags 2; checked by a test).
/// - 20: the index entry: a 16-byte bucket (slot, hash bits, prefetch hint) in a table kept
///   between 7/10 and 7/8 full: 18.3 to 22.9 bytes ([`crate::index`]; hashbrown's 5-byte
///   buckets cost about 8, but a hit through them waited for four cache misses, not two).
/// - 24: the `key ++ value` allocation's own cost: its 8-byte header (reference count and
///   length, [`ItemBytes`]), glibc's 8-byte chunk header and rounding to 16 bytes (7.5 on
///   average). Before the header (a `Box<[u8]>`, a 16-byte slot pointer) the slot was 8
///   bytes larger and this 8 smaller: the same total.
///
/// memcached charges more per item: a 48-byte header, 8-byte CAS, the key's NUL, `"\r\n"`
/// after the value, 4 bytes of flags when nonzero, an 8-byte hash bucket, then rounds the
/// whole up to its slab class (factor 1.25): 67 bytes before rounding, ~75 to 90 after.
pub const ITEM_OVERHEAD_BYTES: usize = 40 + 20 + 24;

/// Longest key a slot can hold (its length is a `u16`); memcached's protocols cap keys at
/// 250 bytes, well below.
pub const MAX_KEY_BYTES: usize = u16::MAX as usize;

/// End of an LRU or free list.
pub(crate) const NIL: u32 = u32::MAX;

const CHUNK_SHIFT: u32 = 10;
/// Slots per chunk of the slot array (40 KiB per chunk).
const CHUNK_SLOTS: usize = 1 << CHUNK_SHIFT;
const CHUNK_MASK: u32 = (1 << CHUNK_SHIFT) - 1;

/// Bytes charged for an item with these key and value lengths.
pub(crate) fn item_charge(key_len: usize, value_len: usize) -> usize {
    key_len
        .saturating_add(value_len)
        .saturating_add(ITEM_OVERHEAD_BYTES)
}

/// [`Slot::marks`] bits.
const LINKED: u8 = 1;
/// Invalidated by meta `md ... I` or stored stale by `ms ... I` (memcached's `ITEM_STALE`).
const STALE: u8 = 2;
/// A meta client was handed the right to recache (memcached's `ITEM_TOKEN_SENT`).
const WIN_SENT: u8 = 4;
/// Read since it last moved to the LRU head (memcached's `ITEM_ACTIVE`).
const ACTIVE: u8 = 8;

/// One item, or a free slot when not linked.
#[derive(Default)]
pub(crate) struct Slot {
    /// `key ++ value`; `None` in a free slot.
    data: Option<ItemBytes>,
    pub(crate) cas: u64,
    prev: u32,
    next: u32,
    pub(crate) flags: u32,
    /// Absolute unix seconds; 0 = never.
    pub(crate) exptime: Secs,
    /// Last store or access (memcached's `it->time`).
    pub(crate) atime: Secs,
    key_len: u16,
    pub(crate) fetched: bool,
    /// `LINKED`, `STALE`, `WIN_SENT`, `ACTIVE`: bits, so the slot stays 40 bytes.
    marks: u8,
}

impl Slot {
    fn bytes(&self) -> &[u8] {
        self.data.as_ref().map_or(&[], ItemBytes::as_slice)
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.bytes()[..usize::from(self.key_len)]
    }

    pub(crate) fn value(&self) -> &[u8] {
        &self.bytes()[usize::from(self.key_len)..]
    }

    /// The item's allocation, for a reply that holds the value ([`crate::SharedValue`]).
    pub(crate) fn shared(&self) -> Option<&ItemBytes> {
        self.data.as_ref()
    }

    /// The value, writable in place. A value a reply still holds is copied first (the reply
    /// keeps the old bytes), so this may allocate.
    fn value_mut(&mut self) -> &mut [u8] {
        let key_len = usize::from(self.key_len);
        let data = self.data.get_or_insert_with(|| ItemBytes::join(&[]));
        &mut data.make_mut()[key_len..]
    }

    /// Makes the allocation this slot's own (a copy when a reply holds it) and returns its
    /// address ([`Slot::hint`]).
    fn make_unique(&mut self) -> usize {
        if let Some(data) = self.data.as_mut() {
            data.make_mut();
        }
        self.hint()
    }

    /// The allocation's address, the index's prefetch hint (0 for a free slot).
    fn hint(&self) -> usize {
        self.data.as_ref().map_or(0, ItemBytes::addr)
    }

    /// The value, writable in place when no reply holds it.
    fn value_in_place(&mut self) -> Option<&mut [u8]> {
        let key_len = usize::from(self.key_len);
        Some(&mut self.data.as_mut()?.get_mut()?[key_len..])
    }

    pub(crate) fn linked(&self) -> bool {
        self.marks & LINKED != 0
    }

    /// Meta's stale mark (`X` in replies).
    pub(crate) fn stale(&self) -> bool {
        self.marks & STALE != 0
    }

    /// Whether a meta client already won the right to recache (`Z` in replies).
    pub(crate) fn win_sent(&self) -> bool {
        self.marks & WIN_SENT != 0
    }

    pub(crate) fn set_stale(&mut self, on: bool) {
        self.set_mark(STALE, on);
    }

    pub(crate) fn set_win_sent(&mut self, on: bool) {
        self.set_mark(WIN_SENT, on);
    }

    fn set_mark(&mut self, bit: u8, on: bool) {
        if on {
            self.marks |= bit;
        } else {
            self.marks &= !bit;
        }
    }

    pub(crate) fn prev(&self) -> u32 {
        self.prev
    }

    fn charge(&self) -> usize {
        item_charge(0, self.bytes().len())
    }
}

/// What a new item starts with.
pub(crate) struct NewItem<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
    pub(crate) flags: u32,
    pub(crate) exptime: Secs,
    pub(crate) now: Secs,
    pub(crate) cas: u64,
}

/// Slots, index and LRU list; knows nothing of time, stats or commands.
pub(crate) struct Table {
    chunks: Vec<Box<[Slot]>>,
    /// Slots ever handed out; indices below this exist in `chunks`.
    high_water: u32,
    free_head: u32,
    index: Index,
    hasher: DefaultHashBuilder,
    head: u32,
    tail: u32,
    len: usize,
    bytes: usize,
}

fn slot_at(chunks: &[Box<[Slot]>], i: u32) -> &Slot {
    &chunks[(i >> CHUNK_SHIFT) as usize][(i & CHUNK_MASK) as usize]
}

/// One exact-size allocation holding the parts back to back.
fn join(parts: &[&[u8]]) -> Option<ItemBytes> {
    Some(ItemBytes::join(parts))
}

impl Table {
    pub(crate) fn new() -> Self {
        Self {
            chunks: Vec::new(),
            high_water: 0,
            free_head: NIL,
            index: Index::new(),
            hasher: DefaultHashBuilder::default(),
            head: NIL,
            tail: NIL,
            len: 0,
            bytes: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn index_bytes(&self) -> usize {
        self.index.allocated_bytes()
    }

    /// Least recently used item, or `NIL`.
    pub(crate) fn tail(&self) -> u32 {
        self.tail
    }

    /// Number of slot indices in use or on the free list (for the crawler's sweep).
    pub(crate) fn slot_count(&self) -> u32 {
        self.high_water
    }

    pub(crate) fn slot(&self, i: u32) -> &Slot {
        slot_at(&self.chunks, i)
    }

    pub(crate) fn slot_mut(&mut self, i: u32) -> &mut Slot {
        &mut self.chunks[(i >> CHUNK_SHIFT) as usize][(i & CHUNK_MASK) as usize]
    }

    pub(crate) fn find(&self, key: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |i| slot_at(&self.chunks, i).key() == key)
    }

    /// Links a new item at the LRU head. `None` only if the `u32` slot space is exhausted.
    /// The key must not be present and must fit [`MAX_KEY_BYTES`].
    pub(crate) fn insert(&mut self, item: NewItem<'_>) -> Option<u32> {
        let key_len = u16::try_from(item.key.len()).ok()?;
        let i = self.alloc_slot()?;
        *self.slot_mut(i) = Slot {
            data: join(&[item.key, item.value]),
            cas: item.cas,
            prev: NIL,
            next: NIL,
            flags: item.flags,
            exptime: item.exptime,
            atime: item.now,
            key_len,
            fetched: false,
            marks: LINKED,
        };
        let hash = self.hasher.hash_one(item.key);
        let hint = self.slot(i).hint();
        self.index.insert(hash, i, hint);
        self.link_head(i);
        self.len += 1;
        self.bytes += self.slot(i).charge();
        Some(i)
    }

    /// Unlinks item `i` and frees its allocation; the slot goes on the free list.
    pub(crate) fn remove(&mut self, i: u32) {
        let hash = self.hasher.hash_one(self.slot(i).key());
        self.index.remove(hash, i);
        self.unlink_lru(i);
        self.bytes -= self.slot(i).charge();
        self.len -= 1;
        let free_head = self.free_head;
        let slot = self.slot_mut(i);
        slot.data = None;
        slot.marks = 0;
        slot.next = free_head;
        self.free_head = i;
    }

    /// Replaces item `i`'s value, copying in place (no allocation) when the length is unchanged
    /// and no reply holds the old value.
    pub(crate) fn set_value(&mut self, i: u32, value: &[u8]) {
        let slot = self.slot_mut(i);
        if slot.value().len() == value.len()
            && let Some(in_place) = slot.value_in_place()
        {
            in_place.copy_from_slice(value);
            return;
        }
        self.rebuild(i, value, false, &[]);
    }

    /// Appends (or prepends) `data` to item `i`'s value.
    pub(crate) fn extend_value(&mut self, i: u32, data: &[u8], prepend: bool) {
        if prepend {
            self.rebuild(i, data, true, &[]);
        } else {
            self.rebuild(i, &[], true, data);
        }
    }

    /// Gives item `i` a new allocation `key ++ before ++ (old value if kept) ++ after`.
    fn rebuild(&mut self, i: u32, before: &[u8], keep_old: bool, after: &[u8]) {
        let slot = self.slot(i);
        let old_charge = slot.charge();
        let old: &[u8] = if keep_old { slot.value() } else { &[] };
        let data = join(&[slot.key(), before, old, after]);
        let slot = self.slot_mut(i);
        slot.data = data;
        let new_charge = slot.charge();
        self.bytes = self.bytes - old_charge + new_charge;
        self.refresh_hint(i);
    }

    /// Item `i`'s value, writable in place; a value a reply still holds is copied first
    /// ([`Slot::value_mut`]), and the index hears of the new allocation.
    pub(crate) fn value_mut(&mut self, i: u32) -> &mut [u8] {
        let before = self.slot(i).hint();
        if self.slot_mut(i).make_unique() != before {
            self.refresh_hint(i);
        }
        self.slot_mut(i).value_mut()
    }

    /// Whether the index's hint for `key` is its item's allocation (tests).
    #[cfg(test)]
    pub(crate) fn hint_is_fresh(&self, key: &[u8]) -> bool {
        let Some(i) = self.find(key) else {
            return false;
        };
        let hash = self.hasher.hash_one(key);
        self.index.hint(hash, i) == Some(self.slot(i).hint())
    }

    /// Tells the index where item `i`'s allocation now is.
    fn refresh_hint(&mut self, i: u32) {
        let slot = self.slot(i);
        let hash = self.hasher.hash_one(slot.key());
        let hint = slot.hint();
        self.index.set_hint(hash, i, hint);
    }

    /// Moves item `i` to the LRU head.
    pub(crate) fn bump(&mut self, i: u32) {
        self.slot_mut(i).set_mark(ACTIVE, false);
        if self.head != i {
            self.unlink_lru(i);
            self.link_head(i);
        }
    }

    /// Item `i` was read: it moves to the head only if it reaches the tail before it is read
    /// again ([`Table::take_active`]).
    pub(crate) fn mark_active(&mut self, i: u32) {
        self.slot_mut(i).set_mark(ACTIVE, true);
    }

    /// If item `i` was read since it last moved, moves it to the head (unmarked) and says
    /// so: the eviction's second chance.
    pub(crate) fn take_active(&mut self, i: u32) -> bool {
        if self.slot(i).marks & ACTIVE == 0 {
            return false;
        }
        self.bump(i);
        true
    }

    fn alloc_slot(&mut self) -> Option<u32> {
        if self.free_head != NIL {
            let i = self.free_head;
            self.free_head = self.slot(i).next;
            return Some(i);
        }
        let i = self.high_water;
        if i == NIL {
            return None;
        }
        if (i as usize) == self.chunks.len() * CHUNK_SLOTS {
            let chunk: Vec<Slot> = std::iter::repeat_with(Slot::default)
                .take(CHUNK_SLOTS)
                .collect();
            self.chunks.push(chunk.into_boxed_slice());
        }
        self.high_water += 1;
        Some(i)
    }

    fn link_head(&mut self, i: u32) {
        let old_head = self.head;
        {
            let slot = self.slot_mut(i);
            slot.prev = NIL;
            slot.next = old_head;
        }
        if old_head == NIL {
            self.tail = i;
        } else {
            self.slot_mut(old_head).prev = i;
        }
        self.head = i;
    }

    fn unlink_lru(&mut self, i: u32) {
        let (prev, next) = {
            let slot = self.slot(i);
            (slot.prev, slot.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slot_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slot_mut(next).prev = prev;
        }
    }
}
