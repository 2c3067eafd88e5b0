//! A connection's pending replies: bytes it wrote, and stored values it holds by reference
//! between them, as memcached's iovecs hold items instead of copying them.
//!
//! A hit's value of at least [`HOLD_FROM_BYTES`] is not copied: the output keeps a
//! [`SharedValue`] (a reference count on the item's allocation) at its place between the
//! bytes, and the socket takes both with one `sendmsg` (a TLS connection's batch writer copies
//! them into its records buffer of `ssl_wbuf_size`, a bounded buffer). Smaller values are
//! copied: a reference and an iovec cost more than the copy saves.
//!
//! [`Output::pending`] counts held values as bytes, so the high-water mark bounds what a
//! connection holds exactly as it bounded its copies; a held value whose item was replaced or
//! evicted meanwhile stays allocated until the socket has taken it.

use std::collections::VecDeque;
use std::io::IoSlice;

use rampart_store::{ItemBytes, SharedValue};
use smallvec::SmallVec;

/// Values this long and longer are held, not copied. Holding one costs about 200 user-space
/// instructions (two reference-count updates, its place in the output, its iovec), about what
/// copying 2 KiB costs (docs/architecture.md, "Replies that hold values").
pub const HOLD_FROM_BYTES: usize = 2048;
/// Slices a write gathers without allocating: three held values and the bytes around them.
const INLINE_SLICES: usize = 8;
/// Output buffers grown past this (a large value copied, a long multi-get) are given back
/// after their turn.
const KEEP_BYTES: usize = 64 * 1024;

/// The one rule for what is held rather than copied: a value of [`HOLD_FROM_BYTES`] or more
/// whose item is at hand (`shared`). The output and the cross-core batches both follow it.
pub fn held(value: &[u8], shared: Option<&ItemBytes>) -> Option<SharedValue> {
    shared
        .filter(|_| value.len() >= HOLD_FROM_BYTES)
        .map(|item| SharedValue::tail(item, value.len()))
}

/// A held value and where it goes.
#[derive(Debug)]
struct Held {
    /// It goes before the byte at this offset of [`Output::bytes`].
    at: usize,
    value: SharedValue,
}

/// Pending replies, in order.
#[derive(Debug, Default)]
pub struct Output {
    bytes: Vec<u8>,
    held: VecDeque<Held>,
    held_bytes: usize,
}

impl Output {
    pub fn new() -> Output {
        Output::default()
    }

    /// The bytes, for an encoder to append to (only to append: held values are placed by
    /// offset).
    #[inline]
    pub fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Bytes the socket has still to take, held values included.
    #[inline]
    pub fn pending(&self) -> usize {
        self.bytes.len() + self.held_bytes
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.held.is_empty()
    }

    /// Where the next byte goes: a place to insert replies at later ([`Output::append_run`]).
    #[inline]
    pub fn position(&self) -> usize {
        self.bytes.len()
    }

    /// Appends a stored value: held when `shared` is its item and it is long enough, else
    /// copied.
    #[inline]
    pub fn value(&mut self, value: &[u8], shared: Option<&ItemBytes>) {
        match held(value, shared) {
            Some(held) => self.hold(held),
            None => self.bytes.extend_from_slice(value),
        }
    }

    /// Appends a value held by reference.
    #[inline]
    pub fn hold(&mut self, value: SharedValue) {
        if value.is_empty() {
            return;
        }
        self.held_bytes += value.len();
        self.held.push_back(Held {
            at: self.bytes.len(),
            value,
        });
    }

    /// Moves `from`'s replies between its offsets `start` and `end` (from
    /// [`Output::position`]) to the end of this output. Runs must be moved in order and
    /// without gaps; a value held at `end` goes with the run (it came before what was placed
    /// at `end`: every reply writes a byte of its own before any value it holds).
    pub fn append_run(&mut self, from: &mut Output, start: usize, end: usize) {
        let mut at = start;
        while let Some(front) = from.held.front()
            && front.at <= end
        {
            self.bytes.extend_from_slice(&from.bytes[at..front.at]);
            at = front.at;
            if let Some(held) = from.held.pop_front() {
                from.held_bytes -= held.value.len();
                self.hold(held.value);
            }
        }
        self.bytes.extend_from_slice(&from.bytes[at..end]);
    }

    /// Moves everything from `start` (from [`Output::position`]) on.
    pub fn append_rest(&mut self, from: &mut Output, start: usize) {
        let end = from.bytes.len();
        self.append_run(from, start, end);
    }

    /// The replies as slices in order, for one vectored write.
    pub fn slices(&self) -> SmallVec<[IoSlice<'_>; INLINE_SLICES]> {
        let mut slices = SmallVec::with_capacity(2 * self.held.len() + 1);
        let mut at = 0;
        for held in &self.held {
            if held.at > at {
                slices.push(IoSlice::new(&self.bytes[at..held.at]));
            }
            slices.push(IoSlice::new(held.value.as_slice()));
            at = held.at;
        }
        if at < self.bytes.len() || slices.is_empty() {
            slices.push(IoSlice::new(&self.bytes[at..]));
        }
        slices
    }

    /// Whether everything is in [`Output::bytes`] (no value is held): one plain write.
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        self.held.is_empty()
    }

    /// The bytes, when nothing is held.
    #[inline]
    pub fn as_contiguous(&self) -> Option<&[u8]> {
        self.is_contiguous().then_some(self.bytes.as_slice())
    }

    /// Empties the output (the socket took it), dropping held values and a buffer that grew
    /// large.
    #[inline]
    pub fn clear(&mut self) {
        self.bytes.clear();
        if !self.held.is_empty() {
            self.held.clear();
            self.held_bytes = 0;
        }
        if self.bytes.capacity() > KEEP_BYTES {
            self.bytes = Vec::new();
        }
    }

    /// An empty output whose bytes have room for `bytes` before they grow.
    pub fn with_capacity(bytes: usize) -> Output {
        Output {
            bytes: Vec::with_capacity(bytes),
            ..Output::default()
        }
    }

    /// Everything, copied into one buffer (for tests and tools; the connection writes the
    /// slices).
    pub fn to_vec(&self) -> Vec<u8> {
        self.slices()
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rampart_store::ItemBytes;

    use super::*;

    fn item(key: &[u8], value: &[u8]) -> ItemBytes {
        ItemBytes::join(&[key, value])
    }

    #[test]
    fn small_values_are_copied_and_large_ones_held() {
        let small = item(b"k", b"tiny");
        let large_value = vec![b'x'; HOLD_FROM_BYTES];
        let large = item(b"key", &large_value);
        let mut out = Output::new();
        out.bytes().extend_from_slice(b"A ");
        out.value(b"tiny", Some(&small));
        out.bytes().extend_from_slice(b" B ");
        out.value(&large_value, Some(&large));
        out.bytes().extend_from_slice(b" C");
        assert_eq!(out.held.len(), 1);
        assert_eq!(out.pending(), 2 + 4 + 3 + HOLD_FROM_BYTES + 2);
        let mut expected = b"A tiny B ".to_vec();
        expected.extend_from_slice(&large_value);
        expected.extend_from_slice(b" C");
        assert_eq!(out.to_vec(), expected);
        assert_eq!(out.slices().len(), 3);
        drop(large);
        assert_eq!(out.to_vec(), expected);
        out.clear();
        assert!(out.is_empty());
        assert_eq!(out.pending(), 0);
    }

    #[test]
    fn runs_move_with_their_held_values() {
        let value = vec![b'v'; 2000];
        let bytes = item(b"k", &value);
        let mut local = Output::new();
        local.bytes().extend_from_slice(b"1:");
        local.value(&value, Some(&bytes));
        // A reply placed here (offset 2) comes after the held value.
        let place = local.position();
        local.bytes().extend_from_slice(b"|3:");
        local.value(&value, Some(&bytes));
        local.bytes().extend_from_slice(b"|");
        let mut out = Output::new();
        out.append_run(&mut local, 0, place);
        out.bytes().extend_from_slice(b"[remote]");
        out.append_rest(&mut local, place);
        let mut expected = b"1:".to_vec();
        expected.extend_from_slice(&value);
        expected.extend_from_slice(b"[remote]|3:");
        expected.extend_from_slice(&value);
        expected.extend_from_slice(b"|");
        assert_eq!(out.to_vec(), expected);
        assert_eq!(out.pending(), expected.len());
        assert_eq!(local.pending(), local.bytes.len());
    }

    #[test]
    fn an_output_of_only_a_held_value_is_one_slice() {
        let value = vec![1u8; 4096];
        let bytes = item(b"", &value);
        let mut out = Output::new();
        out.value(&value, Some(&bytes));
        assert_eq!(out.slices().len(), 1);
        assert_eq!(out.to_vec(), value);
        let empty = Output::new();
        assert_eq!(empty.slices().len(), 1);
        assert!(empty.as_contiguous().is_some());
    }
}
