//! The key index: an open-addressing Robin Hood table from a key's hash to its slot.
//!
//! # Why not `hashbrown::HashTable<u32>`
//! A hit in a table larger than the caches costs one cache miss per pointer it follows, and
//! they follow one another. Through hashbrown the lookup followed four: the control bytes'
//! group, the `u32` bucket (which hashbrown keeps in another line), the slot, and the item's
//! allocation to compare the key. `perf` at 50,000 gets/s put a quarter of `Table::find`'s
//! samples on each of those four loads, and `Table::find` at 30% of the server's user time.
//!
//! Here a bucket holds the slot index, 32 bits of the key's hash and a *hint*: the address of
//! the item's allocation when the bucket last heard of it. A lookup reads one bucket line,
//! and for a bucket whose hash matches it starts fetching the hinted line while it loads the
//! slot, so the slot and the key arrive together: two misses deep instead of four.
//!
//! The hint is only ever prefetched, never read through: the key is compared through the
//! slot's own pointer. A stale hint (an allocation since replaced and freed) costs a useless
//! prefetch, never a wrong answer or a read of freed memory; the table keeps hints fresh
//! where it replaces an allocation ([`crate::table::Table`]).
//!
//! # Layout and probing
//! - Buckets are 16 bytes, four to a cache line.
//! - Robin Hood insertion (a bucket far from its home position displaces one nearer to its
//!   own), so a lookup stops at the first bucket nearer to its home than the probe is to its
//!   own; removal shifts the following run back (no tombstones).
//! - A bucket's home is its 32 hash bits scaled to the table's length (`hash * len >> 32`), so
//!   the length need not be a power of two: the table grows by a quarter when an insertion
//!   would make it more than 7/8 full, and so stays between 7/10 and 7/8 full once it has
//!   grown: 18.3 to 22.9 bytes per item. (Doubling, as hashbrown does, would leave it as
//!   little as 7/16 full, 37 bytes per item.) It never shrinks, as hashbrown did not.
//! - The hash kept in a bucket is the 64-bit hash's low 32 bits, so the table grows without
//!   rehashing keys. It grows to at most 2^32 buckets, more than the `u32` slot indices can
//!   fill.

/// An empty bucket's slot.
const EMPTY: u32 = u32::MAX;

/// Buckets in the first allocation.
const MIN_BUCKETS: usize = 16;

/// The most buckets: homes are 32 hash bits scaled to the length, so 2^32 (what `usize`
/// holds, on a 32-bit target). Slot indices are `u32` below [`EMPTY`], so this many buckets
/// always keep one empty, which ends every probe.
const MAX_BUCKETS: usize = (u32::MAX as usize).saturating_add(1);

#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Bucket {
    /// The item allocation's address when last set; prefetched, never dereferenced.
    hint: usize,
    /// Slot index, or [`EMPTY`].
    slot: u32,
    /// The key's hash, low 32 bits.
    hash: u32,
}

const VACANT: Bucket = Bucket {
    hint: 0,
    slot: EMPTY,
    hash: 0,
};

/// A map from key hashes to slot indices; the caller compares keys.
pub(crate) struct Index {
    buckets: Box<[Bucket]>,
    len: usize,
}

fn hash32(hash: u64) -> u32 {
    hash as u32
}

/// Starts loading the cache line at `addr`: a hint to the CPU, which never faults, whatever
/// the address.
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 reads nothing architecturally and cannot fault, for any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

impl Index {
    pub(crate) fn new() -> Self {
        Self {
            buckets: Box::new([]),
            len: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes the bucket array occupies.
    pub(crate) fn allocated_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buckets)
    }

    fn home(&self, hash: u32) -> usize {
        ((u64::from(hash) * self.buckets.len() as u64) >> 32) as usize
    }

    fn next(&self, pos: usize) -> usize {
        if pos + 1 == self.buckets.len() {
            0
        } else {
            pos + 1
        }
    }

    /// How far bucket `b`, at position `pos`, sits from its home.
    fn displacement(&self, b: &Bucket, pos: usize) -> usize {
        let home = self.home(b.hash);
        if pos >= home {
            pos - home
        } else {
            pos + self.buckets.len() - home
        }
    }

    /// The slot of the entry with this hash for which `eq` is true. `eq` is called only for
    /// entries whose 32 hash bits match, after their hint has been prefetched.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.position(hash32(hash), |b| {
            prefetch(b.hint);
            eq(b.slot)
        })
        .map(|pos| self.buckets[pos].slot)
    }

    /// Position of the bucket with hash `h` that `accept` takes.
    #[inline]
    fn position(&self, h: u32, mut accept: impl FnMut(&Bucket) -> bool) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mut pos = self.home(h);
        let mut probe = 0;
        loop {
            let b = &self.buckets[pos];
            if b.slot == EMPTY || self.displacement(b, pos) < probe {
                return None;
            }
            if b.hash == h && accept(b) {
                return Some(pos);
            }
            pos = self.next(pos);
            probe += 1;
        }
    }

    /// Adds slot `slot` under `hash`, with the allocation address `hint`. The caller
    /// guarantees no entry for the same key exists.
    pub(crate) fn insert(&mut self, hash: u64, slot: u32, hint: usize) {
        debug_assert_ne!(slot, EMPTY);
        if (self.len + 1) * 8 > self.buckets.len() * 7 {
            self.grow();
        }
        self.place(Bucket {
            hint,
            slot,
            hash: hash32(hash),
        });
        self.len += 1;
    }

    /// Robin Hood placement into a table with room.
    fn place(&mut self, mut carried: Bucket) {
        let mut pos = self.home(carried.hash);
        let mut probe = 0;
        loop {
            let b = self.buckets[pos];
            if b.slot == EMPTY {
                self.buckets[pos] = carried;
                return;
            }
            let theirs = self.displacement(&b, pos);
            if theirs < probe {
                self.buckets[pos] = carried;
                carried = b;
                probe = theirs;
            }
            pos = self.next(pos);
            probe += 1;
        }
    }

    fn grow(&mut self) {
        let len = self.buckets.len();
        let new_len = (len + len / 4).clamp(MIN_BUCKETS, MAX_BUCKETS);
        if new_len == len {
            return;
        }
        let old = std::mem::replace(&mut self.buckets, vec![VACANT; new_len].into_boxed_slice());
        for b in old.iter().filter(|b| b.slot != EMPTY) {
            self.place(*b);
        }
    }

    /// Removes slot `slot`'s entry (filed under `hash`); nothing if there is none.
    pub(crate) fn remove(&mut self, hash: u64, slot: u32) {
        let Some(mut pos) = self.position(hash32(hash), |b| b.slot == slot) else {
            return;
        };
        loop {
            let next = self.next(pos);
            let b = self.buckets[next];
            if b.slot == EMPTY || self.displacement(&b, next) == 0 {
                self.buckets[pos] = VACANT;
                break;
            }
            self.buckets[pos] = b;
            pos = next;
        }
        self.len -= 1;
    }

    /// Records slot `slot`'s new allocation address.
    pub(crate) fn set_hint(&mut self, hash: u64, slot: u32, hint: usize) {
        if let Some(pos) = self.position(hash32(hash), |b| b.slot == slot) {
            self.buckets[pos].hint = hint;
        }
    }

    /// The hint slot `slot`'s entry holds (tests check hints stay fresh).
    #[cfg(test)]
    pub(crate) fn hint(&self, hash: u64, slot: u32) -> Option<usize> {
        self.position(hash32(hash), |b| b.slot == slot)
            .map(|pos| self.buckets[pos].hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Hashes that collide in their low bits as often as the test wants.
    fn h(key: u64, spread: u64) -> u64 {
        (key % spread) | (key << 40)
    }

    #[test]
    fn finds_what_it_holds_and_nothing_else() {
        let mut index = Index::new();
        assert_eq!(index.find(7, |_| true), None);
        for slot in 0..1000u32 {
            index.insert(h(u64::from(slot), 64), slot, slot as usize * 16);
        }
        assert_eq!(index.len(), 1000);
        for slot in 0..1000u32 {
            let hash = h(u64::from(slot), 64);
            assert_eq!(index.find(hash, |s| s == slot), Some(slot));
            assert_eq!(index.hint(hash, slot), Some(slot as usize * 16));
        }
        assert_eq!(index.find(h(5000, 1 << 20), |_| true), None);
    }

    /// Against a `HashMap` model: inserts, removals and hint updates in a pseudo-random
    /// order, with hashes crowded into few home positions so runs are long and wrap.
    #[test]
    fn agrees_with_a_model_under_collisions_and_removals() {
        let mut index = Index::new();
        let mut model: HashMap<u32, (u64, usize)> = HashMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000u64 {
            let r = next();
            let slot = (r % 3000) as u32;
            // Seven home positions at the very end of the table, so runs wrap.
            let hash = if r & (1 << 20) == 0 {
                (u64::from(slot) << 40) | 0xffff_fff8 | (u64::from(slot) % 7)
            } else {
                h(u64::from(slot).wrapping_mul(0x5851_f42d), 1 << 30)
            };
            match model.get(&slot).copied() {
                Some((old_hash, _)) if r & 3 == 0 => {
                    index.set_hint(old_hash, slot, round as usize);
                    model.insert(slot, (old_hash, round as usize));
                }
                Some((old_hash, _)) => {
                    index.remove(old_hash, slot);
                    model.remove(&slot);
                }
                None => {
                    index.insert(hash, slot, round as usize);
                    model.insert(slot, (hash, round as usize));
                }
            }
            if round % 997 == 0 {
                for (&slot, &(hash, hint)) in &model {
                    assert_eq!(index.find(hash, |s| s == slot), Some(slot));
                    assert_eq!(index.hint(hash, slot), Some(hint));
                }
            }
        }
        assert_eq!(index.len(), model.len());
        for (&slot, &(hash, _)) in &model {
            assert_eq!(index.find(hash, |s| s == slot), Some(slot));
        }
        for slot in 0..3000u32 {
            if !model.contains_key(&slot) {
                let hash = h(u64::from(slot), 7);
                assert_eq!(index.find(hash, |s| s == slot), None);
            }
        }
    }

    #[test]
    fn stays_between_seven_tenths_and_seven_eighths_full() {
        let mut index = Index::new();
        for slot in 0..100_000u32 {
            index.insert(u64::from(slot).wrapping_mul(0x9e37_79b9_7f4a_7c15), slot, 0);
            let buckets = index.allocated_bytes() / 16;
            assert!(index.len() * 8 <= buckets * 7);
            if buckets > MIN_BUCKETS {
                assert!(
                    index.len() * 10 >= buckets * 7 - 10,
                    "{} in {buckets}",
                    index.len()
                );
            }
        }
    }
}
