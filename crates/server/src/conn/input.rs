//! A connection's unread request bytes.

use std::sync::Arc;

use crate::budget::ReadBudget;

/// Initial size of a connection's read buffer.
pub const READ_BUF_BYTES: usize = 16 * 1024;
/// A buffer grown past this for a large value is given back once it is empty again.
pub const SHRINK_ABOVE_BYTES: usize = 4 * READ_BUF_BYTES;

/// `buf[start..end]` holds bytes not yet consumed. The buffer is allocated on first use and
/// can be given back while the connection sleeps ([`InputBuffer::release`]). Its capacity
/// beyond [`READ_BUF_BYTES`] is charged to the server's [`ReadBudget`] by
/// [`InputBuffer::settle`], and given back as the buffer shrinks or goes.
#[derive(Debug, Default)]
pub struct InputBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    budget: Arc<ReadBudget>,
    /// Bytes taken from `budget`.
    charged: usize,
}

/// The read budget cannot cover the room the request at the front of the buffer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

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
        }
    }

    /// Makes room for a plaintext read into [`InputBuffer::spare`]: moves pending bytes to
    /// the front, or grows the buffer when one incomplete request fills it.
    pub fn make_room(&mut self) {
        let _ = self.spare();
    }

    /// Charges the budget for the capacity beyond [`READ_BUF_BYTES`], or gives back what is
    /// no longer used. Called before every read, so no buffer waits for input on growth the
    /// budget has not covered. On `Err` the request at the front must be refused (and the
    /// buffer [`InputBuffer::clear`]ed): the budget cannot hold more of it.
    pub fn settle(&mut self) -> Result<(), OverBudget> {
        let want = self.buf.capacity().saturating_sub(READ_BUF_BYTES);
        if want > self.charged {
            if !self.budget.try_take(want - self.charged) {
                return Err(OverBudget);
            }
            self.charged = want;
        } else {
            self.recharge_down();
        }
        Ok(())
    }

    /// Gives back the charge above the current capacity.
    fn recharge_down(&mut self) {
        let want = self.buf.capacity().saturating_sub(READ_BUF_BYTES);
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
                self.buf = vec![0; READ_BUF_BYTES];
                self.recharge_down();
            }
        }
    }

    /// Free space to read into, after moving pending bytes to the front or growing when a
    /// single request needs more room than there is.
    pub fn spare(&mut self) -> &mut [u8] {
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
        self.compact();
        self.buf.truncate(self.end);
        let result = append(&mut self.buf);
        self.end = self.buf.len();
        result
    }

    /// Gives the memory back when nothing is pending (a connection going to sleep).
    pub fn release(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
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
            self.buf = vec![0; READ_BUF_BYTES];
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
        assert!(input.buf.capacity() < 1024, "{}", input.buf.capacity());
    }

    #[test]
    fn growth_is_charged_before_the_next_read_and_given_back() {
        let budget = Arc::new(ReadBudget::new(Some(3 * READ_BUF_BYTES)));
        let mut input = InputBuffer::new(budget.clone());
        let fill = |input: &mut InputBuffer| {
            input.make_room();
            let n = input.spare().len();
            input.filled(n);
        };
        fill(&mut input);
        assert_eq!(input.settle(), Ok(()));
        assert_eq!(budget.used_bytes(), 0);
        // One incomplete request fills 16 KiB, then 32: the buffer doubles, charged.
        fill(&mut input);
        assert_eq!(input.settle(), Ok(()));
        assert_eq!(budget.used_bytes(), READ_BUF_BYTES);
        fill(&mut input);
        assert_eq!(input.settle(), Ok(()));
        assert_eq!(budget.used_bytes(), 3 * READ_BUF_BYTES);
        // 128 KiB would be 7 * 16 KiB over the base: refused, then cleared and given back.
        fill(&mut input);
        assert_eq!(input.settle(), Err(OverBudget));
        input.clear();
        assert_eq!(budget.used_bytes(), 0);
        assert_eq!(input.settle(), Ok(()));
        // A dropped buffer gives its charge back too.
        fill(&mut input);
        fill(&mut input);
        assert_eq!(input.settle(), Ok(()));
        assert!(budget.used_bytes() > 0);
        drop(input);
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
