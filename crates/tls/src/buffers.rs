//! Connection buffers lent for a turn: each executor thread keeps a few spare 16 KiB byte
//! buffers, so a connection that waits for its next request gives its buffers back and takes
//! them again when input arrives, at the cost of a pop and a push, without touching the
//! allocator or zeroing anything.
//!
//! A connection holds a buffer only while it has input or output pending (a request still
//! arriving, ciphertext the socket has not taken). That is memcached's design (its read
//! buffers belong to the worker thread, not the connection), and it is what keeps an idle
//! connection at its own state: without it, every connection of a burst held about 50 KiB
//! for as long as the old idle release waited, and what a burst freed stayed resident between
//! the connections that came after it.
//!
//! Bound: at most [`KEPT`] buffers of [`BUFFER_BYTES`] in each of the two lists per thread
//! (512 KiB); a buffer given back past that, or grown beyond [`BUFFER_BYTES`], is freed.
//! A take that finds no spare allocates, and is counted ([`allocated`], `stats shards`).
//! Shared by the TLS session's ciphertext and the connection driver's plaintext input.

use std::cell::{Cell, RefCell};

/// The size of a lent buffer: one socket read, one TLS record's worth.
pub const BUFFER_BYTES: usize = 16 * 1024;
/// Spare buffers kept per list and thread.
pub const KEPT: usize = 16;

struct Spares {
    /// `len == capacity == BUFFER_BYTES`: initialised, ready to read into.
    filled: Vec<Vec<u8>>,
    /// `len == 0`, `capacity == BUFFER_BYTES`.
    empty: Vec<Vec<u8>>,
}

thread_local! {
    // `const`: no lazy initialisation to check on every take and give.
    static SPARES: RefCell<Spares> = const {
        RefCell::new(Spares {
            filled: Vec::new(),
            empty: Vec::new(),
        })
    };
}

thread_local! {
    /// Buffers this thread allocated because it had no spare (`stats shards`).
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

/// How many buffers this thread has allocated because no spare was left, since it started or
/// since [`reset_allocated`]: the thread's steady state allocates none.
pub fn allocated() -> u64 {
    ALLOCATED.get()
}

/// Restarts [`allocated`]'s count (`stats reset`).
pub fn reset_allocated() {
    ALLOCATED.set(0);
}

fn count_allocation() {
    ALLOCATED.set(ALLOCATED.get().wrapping_add(1));
}

/// A buffer of `BUFFER_BYTES` initialised bytes, to read into.
pub fn take_filled() -> Vec<u8> {
    let spare = SPARES.with_borrow_mut(|s| s.filled.pop().or_else(|| s.empty.pop()));
    match spare {
        Some(mut buf) => {
            // Zeroes only a buffer that came from the empty list.
            buf.resize(BUFFER_BYTES, 0);
            buf
        }
        None => {
            count_allocation();
            vec![0; BUFFER_BYTES]
        }
    }
}

/// An empty buffer with room for `BUFFER_BYTES`, to append to.
pub fn take_empty() -> Vec<u8> {
    let spare = SPARES.with_borrow_mut(|s| s.empty.pop().or_else(|| s.filled.pop()));
    match spare {
        Some(mut buf) => {
            buf.clear();
            buf
        }
        None => {
            count_allocation();
            Vec::with_capacity(BUFFER_BYTES)
        }
    }
}

/// Gives `buf` back (its contents are discarded). Kept only at exactly [`BUFFER_BYTES`] of
/// capacity and while the thread keeps fewer than [`KEPT`] of its kind; freed otherwise.
pub fn give(mut buf: Vec<u8>) {
    if buf.capacity() != BUFFER_BYTES {
        return;
    }
    SPARES.with_borrow_mut(|s| {
        if buf.len() == BUFFER_BYTES {
            if s.filled.len() < KEPT {
                s.filled.push(buf);
            }
        } else if s.empty.len() < KEPT {
            buf.clear();
            s.empty.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_without_being_zeroed_again_and_the_lists_are_bounded() {
        let mut buf = take_filled();
        assert_eq!(buf.len(), BUFFER_BYTES);
        buf[0] = 7;
        let ptr = buf.as_ptr();
        give(buf);
        let again = take_filled();
        assert_eq!((again.as_ptr(), again[0]), (ptr, 7));
        // An empty buffer serves as a filled one (zeroed then), and the other way round.
        give(again);
        let empty = take_empty();
        assert_eq!(
            (empty.len(), empty.capacity(), empty.as_ptr()),
            (0, BUFFER_BYTES, ptr)
        );
        give(empty);
        assert_eq!(take_filled(), vec![0; BUFFER_BYTES]);
        // A grown buffer is freed, and no list keeps more than KEPT.
        give(Vec::with_capacity(2 * BUFFER_BYTES));
        let many: Vec<_> = (0..KEPT + 5).map(|_| take_filled()).collect();
        many.into_iter().for_each(give);
        SPARES.with_borrow(|s| assert_eq!((s.filled.len(), s.empty.len()), (KEPT, 0)));
        // Only the takes that found no spare allocated: the first, and each of `many` (the
        // buffer compared above was dropped, so none was left).
        assert_eq!(allocated(), 1 + KEPT as u64 + 5);
        reset_allocated();
        assert_eq!(allocated(), 0);
    }
}
