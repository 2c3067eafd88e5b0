//! A connection's unread request bytes.

use std::sync::Arc;

use crate::budget::ReadBudget;

/// Initial size of a connection's read buffer: one of the thread's spare buffers
/// ([`rampart_tls::buffers`]), taken for a read and given back once nothing is pending.
pub const READ_BUF_BYTES: usize = rampart_tls::buffers::BUFFER_BYTES;
/// A buffer grown past this for a large value is given back once it is empty again.
pub const SHRINK_ABOVE_BYTES: usize = 4 * READ_BUF_BYTES;
/// A TLS connection's uncharged room: decrypting reserves a read's worth beyond what is
/// pending, so an ordinary pipelined turn takes up to two read buffers.
pub const TLS_BASE_BYTES: usize = 2 * READ_BUF_BYTES;

/// `buf[start..end]` holds bytes not yet consumed. The buffer is taken from the thread's
/// spares on first use and given back while the connection waits with nothing pending
/// ([`InputBuffer::release`]). Its capacity
/// beyond [`READ_BUF_BYTES`] is charged to the server's [`ReadBudget`] by
/// [`InputBuffer::settle`], and given back as the buffer shrinks or goes.
#[derive(Debug)]
pub struct InputBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    budget: Arc<ReadBudget>,
    /// Bytes taken from `budget`: the capacity beyond `base`.
    charged: usize,
    /// Capacity that is never charged: [`READ_BUF_BYTES`], or [`TLS_BASE_BYTES`].
    base: usize,
}

/// The read budget cannot cover the room the request at the front of the buffer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

impl Default for InputBuffer {
    /// A buffer with no limit on its growth (tests).
    fn default() -> Self {
        InputBuffer::new(Arc::new(ReadBudget::new(None)))
    }
}

impl Drop for InputBuffer {
    fn drop(&mut self) {
        self.budget.give_back(self.charged);
    }
}

impl InputBuffer {
    /// An empty buffer whose growth is charged to `budget`.
    pub fn new(budget: Arc<ReadBudget>) -> InputBuffer {
        InputBuffer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            budget,
            charged: 0,
            base: READ_BUF_BYTES,
        }
    }

    /// The same buffer on a TLS connection (see [`TLS_BASE_BYTES`]).
    pub fn for_tls(&mut self) {
        self.base = TLS_BASE_BYTES;
        self.recharge_down();
    }

    /// Whether the next read needs more room than the buffer has for the incomplete request
    /// at its front (only then does [`InputBuffer::prepare_read`] use its length): a full
    /// plaintext buffer, or a TLS one holding a read's worth.
    pub fn needs_room(&self, tls: bool) -> bool {
        let pending = self.end - self.start;
        if tls {
            pending >= READ_BUF_BYTES
        } else {
            pending > 0 && self.start == 0 && self.end == self.buf.len()
        }
    }

    /// Makes room for the next read, charging the budget for the capacity beyond the base
    /// before anything is allocated. Called before every read, so no buffer waits for input
    /// on growth the budget has not covered.
    ///
    /// A buffer grown beyond its base whose pending bytes fit one read buffer is given back
    /// first. A plaintext buffer that one incomplete request fills grows to `need` (the whole
    /// request, when its header says how long it is) or else to twice its size; a TLS buffer,
    /// which decryption appends to ([`InputBuffer::append_with`]), gets room for `need` and
    /// one read beyond, so decrypting does not double it. On `Err` nothing was allocated and
    /// the request at the front, which needs the room, must be refused (and the buffer
    /// [`InputBuffer::clear`]ed): the budget cannot hold more of it.
    pub fn prepare_read(&mut self, need: Option<usize>, tls: bool) -> Result<(), OverBudget> {
        if self.buf.capacity() == 0 {
            // Nothing pending and no buffer (it went back while the connection waited): the
            // read takes one from the thread's spares, and there is nothing to charge.
            return Ok(());
        }
        let pending = self.end - self.start;
        if pending < READ_BUF_BYTES && self.buf.capacity() > self.base {
            let mut fresh = rampart_tls::buffers::take_filled();
            fresh[..pending].copy_from_slice(&self.buf[self.start..self.end]);
            self.buf = fresh;
            self.start = 0;
            self.end = pending;
        }
        let len = self.buf.len();
        let target = if tls {
            need.map_or(0, |need| need.saturating_add(READ_BUF_BYTES))
        } else if self.end == len && self.start == 0 {
            need.filter(|&need| need > len)
                .unwrap_or(len * 2)
                .max(READ_BUF_BYTES)
        } else {
            0
        };
        let capacity = self.buf.capacity().max(target);
        let want = capacity.saturating_sub(self.base);
        if want > self.charged {
            if !self.budget.try_take(want - self.charged) {
                return Err(OverBudget);
            }
            self.charged = want;
        }
        if target > self.buf.capacity() {
            self.compact();
            if tls {
                self.buf.truncate(self.end);
                self.buf.reserve_exact(target - self.buf.len());
            } else {
                self.buf.resize(target, 0);
            }
        }
        if !tls {
            // Pending bytes to the front when the end is reached.
            let _ = self.spare();
        }
        self.recharge_down();
        Ok(())
    }

    /// Gives back the charge above the current capacity.
    fn recharge_down(&mut self) {
        let want = self.buf.capacity().saturating_sub(self.base);
        if want < self.charged {
            self.budget.give_back(self.charged - want);
            self.charged = want;
        }
    }

    /// Moves pending bytes to the front.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > SHRINK_ABOVE_BYTES {
                self.buf = rampart_tls::buffers::take_filled();
                self.recharge_down();
            }
        }
    }

    /// Free space to read into, after moving pending bytes to the front or growing when a
    /// single request needs more room than there is.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.buf.capacity() == 0 {
            self.buf = rampart_tls::buffers::take_filled();
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let grown = (self.buf.len() * 2).max(READ_BUF_BYTES);
                self.buf.resize(grown, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Records `n` bytes read into [`InputBuffer::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// Lets `append` add bytes at the end (a TLS session decrypting into the buffer). Bytes
    /// already consumed are dropped first, so a pipeline whose reads never end on a request
    /// boundary does not grow the buffer.
    pub fn append_with<R>(&mut self, append: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        if self.buf.capacity() == 0 {
            self.buf = rampart_tls::buffers::take_empty();
        }
        self.compact();
        self.buf.truncate(self.end);
        let result = append(&mut self.buf);
        self.end = self.buf.len();
        result
    }

    /// Gives the buffer back to the thread's spares when nothing is pending (a connection
    /// waiting for its next request).
    pub fn release(&mut self) {
        if self.is_empty() {
            rampart_tls::buffers::give(std::mem::take(&mut self.buf));
            self.start = 0;
            self.end = 0;
            self.recharge_down();
        }
    }

    /// Drops every pending byte (a refused request), keeping the buffer.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        if self.buf.capacity() > READ_BUF_BYTES {
            self.buf = rampart_tls::buffers::take_filled();
        }
        self.recharge_down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_appends_and_releases() {
        let mut input = InputBuffer::default();
        assert!(input.is_empty());
        let spare = input.spare();
        assert_eq!(spare.len(), READ_BUF_BYTES);
        spare[..5].copy_from_slice(b"hello");
        input.filled(5);
        input.append_with(|v| v.extend_from_slice(b" world"));
        assert_eq!(input.data(), b"hello world");
        input.consume(6);
        assert_eq!(input.data(), b"world");
        // Nothing is given back while bytes are pending.
        input.release();
        assert_eq!(input.data(), b"world");
        let spare = input.spare();
        spare[..1].copy_from_slice(b"!");
        input.filled(1);
        assert_eq!(input.data(), b"world!");
        input.consume(6);
        input.release();
        assert_eq!(input.buf.capacity(), 0);
        input.append_with(|v| v.extend_from_slice(b"again"));
        assert_eq!(input.data(), b"again");
    }

    #[test]
    fn appending_behind_a_partial_request_keeps_the_buffer_bounded() {
        let mut input = InputBuffer::default();
        for _ in 0..10_000 {
            // A read that completes one request and starts the next.
            input.append_with(|v| v.extend_from_slice(b"set k 0 0 1\r\nx\r\nset k"));
            let complete = input.data().len() - b"set k".len();
            input.consume(complete);
        }
        assert_eq!(input.data(), b"set k");
        assert_eq!(input.buf.capacity(), READ_BUF_BYTES);
    }

    #[test]
    fn growth_is_charged_before_the_next_read_and_given_back() {
        let budget = Arc::new(ReadBudget::new(Some(3 * READ_BUF_BYTES)));
        let mut input = InputBuffer::new(budget.clone());
        let fill = |input: &mut InputBuffer| {
            let n = input.spare().len();
            input.filled(n);
        };
        assert_eq!(input.prepare_read(None, false), Ok(()));
        fill(&mut input);
        assert_eq!(budget.used_bytes(), 0);
        // One incomplete request fills 16 KiB, then 32: the buffer doubles, charged.
        assert_eq!(input.prepare_read(None, false), Ok(()));
        assert_eq!(budget.used_bytes(), READ_BUF_BYTES);
        fill(&mut input);
        assert_eq!(input.prepare_read(None, false), Ok(()));
        assert_eq!(budget.used_bytes(), 3 * READ_BUF_BYTES);
        fill(&mut input);
        // 128 KiB would be 7 * 16 KiB over the base: refused before anything is allocated.
        assert_eq!(input.prepare_read(None, false), Err(OverBudget));
        assert_eq!(input.buf.capacity(), 4 * READ_BUF_BYTES);
        input.clear();
        assert_eq!(budget.used_bytes(), 0);
        // A request whose length is known grows the buffer once, to that length.
        assert_eq!(input.prepare_read(None, false), Ok(()));
        fill(&mut input);
        assert_eq!(input.prepare_read(Some(40_000), false), Ok(()));
        assert_eq!(input.buf.len(), 40_000);
        assert_eq!(budget.used_bytes(), 40_000 - READ_BUF_BYTES);
        // A dropped buffer gives its charge back too.
        drop(input);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn a_tls_buffer_is_charged_only_beyond_two_read_buffers_and_shrinks_back() {
        let budget = Arc::new(ReadBudget::new(Some(1 << 20)));
        let mut input = InputBuffer::new(budget.clone());
        input.for_tls();
        // Decrypting a pipelined turn leaves a partial request and 32 KiB of capacity.
        input.append_with(|v| {
            v.reserve(2 * READ_BUF_BYTES);
            v.extend_from_slice(b"get a\r\nge");
        });
        input.consume(b"get a\r\n".len());
        assert_eq!(input.prepare_read(None, true), Ok(()));
        assert_eq!(budget.used_bytes(), 0);
        // A value still arriving: room for all of it and one read, charged beyond the base.
        input.append_with(|v| v.extend_from_slice(&[b'x'; 20_000]));
        assert_eq!(input.prepare_read(Some(100_000), true), Ok(()));
        assert!(input.buf.capacity() >= 100_000 + READ_BUF_BYTES);
        assert_eq!(budget.used_bytes(), input.buf.capacity() - TLS_BASE_BYTES);
        // Once it is answered and a small request is pending, the growth is given back.
        input.consume(input.data().len() - 3);
        assert_eq!(input.prepare_read(None, true), Ok(()));
        assert_eq!(input.data(), b"xxx");
        assert_eq!(budget.used_bytes(), 0);
    }

    #[test]
    fn a_request_larger_than_the_buffer_grows_it() {
        let mut input = InputBuffer::default();
        let n = input.spare().len();
        input.filled(n);
        assert!(input.spare().len() >= READ_BUF_BYTES);
        assert_eq!(input.data().len(), n);
    }
}
