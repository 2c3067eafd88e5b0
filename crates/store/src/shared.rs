//! An item's bytes in one allocation that replies can share: [`ItemBytes`] is a thin pointer
//! to `refs: u32, len: u32, key ++ value`, reference-counted atomically, so a reply (on this
//! core or another) can hold the stored value instead of a copy of it, as memcached's iovecs
//! hold its items.
//!
//! Why not `Arc<[u8]>` or `triomphe::ThinArc`: both keep a `usize` count (and `Arc` a weak
//! count and a fat pointer), 8 to 16 bytes more per item. Here the slot's pointer shrinks
//! from 16 bytes (`Box<[u8]>`) to 8 and the allocation grows by the 8-byte header, so an item
//! costs what it cost before.
//!
//! The bytes never change while they are shared: the store changes them in place only
//! through [`ItemBytes::get_mut`], which is `None` unless the store holds the only reference
//! (the store then copies, and readers keep the old bytes).

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering, fence};

/// The allocation's header; the bytes follow it.
#[repr(C)]
struct Header {
    refs: AtomicU32,
    len: u32,
}

const HEADER_BYTES: usize = std::mem::size_of::<Header>();

/// Counts past this abort, as `Arc` does: a count cannot wrap and free live bytes.
const MAX_REFS: u32 = i32::MAX as u32;

/// Longest item an allocation can hold (its length is a `u32`).
pub const MAX_ITEM_BYTES: usize = u32::MAX as usize - HEADER_BYTES;

/// A stored item's `key ++ value`, shared by reference count. Cloning is one atomic
/// increment; the bytes are freed with the last reference, on whichever thread drops it.
pub struct ItemBytes {
    header: NonNull<Header>,
}

// SAFETY: the bytes are immutable while more than one `ItemBytes` refers to them (mutation
// needs `&mut self` and a count of one, `get_mut`), and the count is atomic, so references
// may move to and be used from other threads.
unsafe impl Send for ItemBytes {}
// SAFETY: `&ItemBytes` only reads the bytes and the count.
unsafe impl Sync for ItemBytes {}

fn layout(len: usize) -> Layout {
    // `len` is at most MAX_ITEM_BYTES, so the size cannot overflow `isize`.
    Layout::from_size_align(HEADER_BYTES + len, std::mem::align_of::<Header>())
        .unwrap_or_else(|_| panic!("an item of {len} bytes cannot be allocated"))
}

impl ItemBytes {
    /// One allocation holding `parts` back to back.
    ///
    /// # Panics
    /// When the parts together exceed [`MAX_ITEM_BYTES`] (the server's `-I` is far below).
    pub fn join(parts: &[&[u8]]) -> ItemBytes {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        assert!(len <= MAX_ITEM_BYTES, "an item of {len} bytes is too long");
        let layout = layout(len);
        // SAFETY: the layout's size is at least HEADER_BYTES, never zero.
        let raw = unsafe { alloc(layout) };
        let Some(header) = NonNull::new(raw.cast::<Header>()) else {
            handle_alloc_error(layout);
        };
        // SAFETY: `raw` is a fresh allocation of HEADER_BYTES + len bytes, aligned for
        // Header; the header is written once, then each part into the bytes after it, which
        // do not overlap the parts (they are borrowed from elsewhere).
        unsafe {
            header.as_ptr().write(Header {
                refs: AtomicU32::new(1),
                len: len as u32,
            });
            let mut at = raw.add(HEADER_BYTES);
            for part in parts {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
        }
        ItemBytes { header }
    }

    fn header(&self) -> &Header {
        // SAFETY: the header lives as long as any reference to it, and `self` is one.
        unsafe { self.header.as_ref() }
    }

    fn data_ptr(&self) -> *mut u8 {
        // SAFETY: the bytes start right after the header, inside the allocation.
        unsafe { self.header.as_ptr().cast::<u8>().add(HEADER_BYTES) }
    }

    pub fn len(&self) -> usize {
        self.header().len as usize
    }

    /// The allocation's address (the store's index prefetches it).
    pub fn addr(&self) -> usize {
        self.header.as_ptr() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` bytes were initialised by `join`; they are not written while shared
        // (`get_mut` needs the only reference), and live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.len()) }
    }

    /// The bytes, writable, when this is the only reference to them.
    pub fn get_mut(&mut self) -> Option<&mut [u8]> {
        // Acquire: every other reference's uses happen before its drop, which this load sees.
        if self.header().refs.load(Ordering::Acquire) != 1 {
            return None;
        }
        // SAFETY: the only reference, borrowed mutably: nobody else can read or clone it.
        Some(unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), self.len()) })
    }

    /// The bytes, writable: when another reference holds them, this one first becomes a copy
    /// of its own (the others keep the old bytes).
    pub fn make_mut(&mut self) -> &mut [u8] {
        if !self.is_unique() {
            *self = ItemBytes::join(&[self.as_slice()]);
        }
        // SAFETY: the only reference now (a fresh copy, or unique already), borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), self.len()) }
    }

    /// Whether this is the only reference (the store's, with no reply holding the bytes).
    pub fn is_unique(&self) -> bool {
        self.header().refs.load(Ordering::Acquire) == 1
    }
}

impl Clone for ItemBytes {
    fn clone(&self) -> Self {
        // Relaxed, as in `Arc`: a new reference is made from an existing one, which keeps the
        // bytes alive meanwhile.
        let before = self.header().refs.fetch_add(1, Ordering::Relaxed);
        if before > MAX_REFS {
            std::process::abort();
        }
        ItemBytes {
            header: self.header,
        }
    }
}

impl Drop for ItemBytes {
    fn drop(&mut self) {
        if self.header().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Every other reference's last use happens before this free.
        fence(Ordering::Acquire);
        let layout = layout(self.len());
        // SAFETY: the last reference: the allocation came from `alloc` with this layout.
        unsafe { dealloc(self.header.as_ptr().cast::<u8>(), layout) };
    }
}

impl fmt::Debug for ItemBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemBytes")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for ItemBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for ItemBytes {}

/// A value held by reference: the tail of an item's bytes (its value, after the key), kept
/// alive by the reference however the store changes meanwhile.
#[derive(Clone)]
pub struct SharedValue {
    bytes: ItemBytes,
    start: u32,
}

impl SharedValue {
    /// The last `value_len` bytes of `bytes` (clamped to all of them).
    pub fn tail(bytes: &ItemBytes, value_len: usize) -> SharedValue {
        let start = bytes.len().saturating_sub(value_len);
        SharedValue {
            bytes: bytes.clone(),
            // Below the item's length, which is a u32.
            start: start as u32,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes.as_slice()[self.start as usize..]
    }

    /// The whole item it is the tail of.
    pub fn item(&self) -> &ItemBytes {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len() - self.start as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for SharedValue {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SharedValue {}

impl fmt::Debug for SharedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedValue")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_lays_the_parts_back_to_back() {
        let bytes = ItemBytes::join(&[b"key", b"", b"value"]);
        assert_eq!(bytes.as_slice(), b"keyvalue");
        assert_eq!(bytes.len(), 8);
        let empty = ItemBytes::join(&[]);
        assert!(empty.is_empty());
        assert_eq!(empty.as_slice(), b"");
    }

    #[test]
    fn a_shared_value_outlives_the_store_s_reference() {
        let bytes = ItemBytes::join(&[b"k", b"hello"]);
        let value = SharedValue::tail(&bytes, 5);
        drop(bytes);
        assert_eq!(value.as_slice(), b"hello");
        let again = value.clone();
        drop(value);
        assert_eq!(again.as_slice(), b"hello");
        assert_eq!(
            SharedValue::tail(&ItemBytes::join(&[b"ab"]), 9).as_slice(),
            b"ab"
        );
    }

    #[test]
    fn only_the_only_reference_may_write() {
        let mut bytes = ItemBytes::join(&[b"k", b"1234"]);
        assert!(bytes.is_unique());
        bytes.get_mut().expect("unique")[1] = b'9';
        let held = SharedValue::tail(&bytes, 4);
        assert!(!bytes.is_unique());
        assert!(bytes.get_mut().is_none());
        assert_eq!(held.as_slice(), b"9234");
        let mut other = bytes.clone();
        other.make_mut()[0] = b'x';
        assert_eq!(other.as_slice(), b"x9234");
        assert_eq!(held.as_slice(), b"9234");
        drop(held);
        assert!(bytes.get_mut().is_some());
    }

    #[test]
    fn references_cross_threads() {
        let bytes = ItemBytes::join(&[b"key", &[7u8; 4096]]);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let value = SharedValue::tail(&bytes, 4096);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let copy = value.clone();
                        assert!(copy.as_slice().iter().all(|&b| b == 7));
                    }
                    value.len()
                })
            })
            .collect();
        drop(bytes);
        for handle in handles {
            assert_eq!(handle.join().expect("thread"), 4096);
        }
    }
}
