//! A connection's unread request bytes.

/// Initial size of a connection's read buffer.
pub const READ_BUF_BYTES: usize = 16 * 1024;
/// A buffer grown past this for a large value is given back once it is empty again.
pub const SHRINK_ABOVE_BYTES: usize = 4 * READ_BUF_BYTES;

/// `buf[start..end]` holds bytes not yet consumed. The buffer is allocated on first use and
/// can be given back while the connection sleeps ([`InputBuffer::release`]).
#[derive(Debug, Default)]
pub struct InputBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InputBuffer {
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
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.buf.truncate(self.end);
        let result = append(&mut self.buf);
        self.end = self.buf.len();
        result
    }

    /// Gives the memory back when nothing is pending (a connection going to sleep).
    pub fn release(&mut self) {
        if self.is_empty() {
            *self = InputBuffer::default();
        }
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
    fn a_request_larger_than_the_buffer_grows_it() {
        let mut input = InputBuffer::default();
        let n = input.spare().len();
        input.filled(n);
        assert!(input.spare().len() >= READ_BUF_BYTES);
        assert_eq!(input.data().len(), n);
    }
}
