//! Bounded socket I/O: write bytes, read until an exact terminator or until the peer closes.
//!
//! Nothing here waits without a deadline, and nothing here sleeps to "let the server catch
//! up": a reply is complete when its terminator arrives or the connection ends.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Default bound for one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The expected terminator arrived (it is included in the bytes).
    Terminator,
    /// The peer closed the connection (orderly).
    Eof,
    /// The peer reset the connection.
    Reset,
    /// The bound passed first.
    Timeout,
    /// Any other socket error.
    Error(io::ErrorKind),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Terminator => f.write_str("terminator"),
            End::Eof => f.write_str("<connection closed>"),
            End::Reset => f.write_str("<connection reset>"),
            End::Timeout => f.write_str("<timed out>"),
            End::Error(kind) => write!(f, "<socket error: {kind}>"),
        }
    }
}

/// Bytes read and why reading stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub end: End,
}

/// A client connection that keeps bytes read past a terminator for the next read.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
    closed: bool,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            pending: Vec::new(),
            closed: false,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// True once a read saw the peer close or reset the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Closes both directions and marks the connection closed.
    pub fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        self.closed = true;
    }

    /// Closes our writing half (the server sees end of file).
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// Reads until `terminator` has arrived (the reply then ends with it; anything after it
    /// is kept for the next read), the peer closes, or `bound` passes.
    pub fn read_until(&mut self, terminator: &[u8], bound: Duration) -> Reply {
        let mut buf = std::mem::take(&mut self.pending);
        let mut searched: usize = 0;
        let deadline = Instant::now() + bound;
        loop {
            if !terminator.is_empty() {
                let from = searched.saturating_sub(terminator.len() - 1);
                if let Some(at) = memchr::memmem::find(&buf[from..], terminator) {
                    let end = from + at + terminator.len();
                    self.pending = buf.split_off(end);
                    return Reply {
                        bytes: buf,
                        end: End::Terminator,
                    };
                }
            }
            searched = buf.len();
            if let Some(end) = self.read_some(&mut buf, deadline) {
                return Reply { bytes: buf, end };
            }
        }
    }

    /// Reads until the peer closes the connection or `bound` passes.
    pub fn read_to_eof(&mut self, bound: Duration) -> Reply {
        let mut buf = std::mem::take(&mut self.pending);
        let deadline = Instant::now() + bound;
        loop {
            if let Some(end) = self.read_some(&mut buf, deadline) {
                return Reply { bytes: buf, end };
            }
        }
    }

    /// Sends `request` and reads until `terminator`; panics, showing what arrived, when the
    /// reply does not end with it in [`REPLY_TIMEOUT`]. For tests that know the exact reply.
    pub fn roundtrip(&mut self, request: &[u8], terminator: &[u8]) -> Vec<u8> {
        if let Err(e) = self.send(request) {
            panic!("sending {}: {e}", crate::report::escape(request));
        }
        let reply = self.read_until(terminator, REPLY_TIMEOUT);
        if reply.end != End::Terminator {
            panic!(
                "request {} expected a reply ending {}, got {} then {}",
                crate::report::escape(request),
                crate::report::escape(terminator),
                crate::report::escape(&reply.bytes),
                reply.end
            );
        }
        reply.bytes
    }

    /// One read into `buf`; `Some(end)` when reading must stop.
    fn read_some(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> Option<End> {
        let now = Instant::now();
        if now >= deadline {
            return Some(End::Timeout);
        }
        let remaining = (deadline - now).max(Duration::from_millis(1));
        if let Err(e) = self.stream.set_read_timeout(Some(remaining)) {
            return Some(End::Error(e.kind()));
        }
        let start = buf.len();
        buf.resize(start + READ_CHUNK_BYTES, 0);
        let result = self.stream.read(&mut buf[start..]);
        buf.truncate(start + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => {
                self.closed = true;
                Some(End::Eof)
            }
            Ok(_) => None,
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    (Instant::now() >= deadline).then_some(End::Timeout)
                }
                io::ErrorKind::Interrupted => None,
                io::ErrorKind::ConnectionReset => {
                    self.closed = true;
                    Some(End::Reset)
                }
                kind => Some(End::Error(kind)),
            },
        }
    }
}
