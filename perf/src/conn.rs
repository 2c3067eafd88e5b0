//! One connection's buffers and the requests it has in flight.
//!
//! Requests are appended to the output buffer and written when the driver flushes, so every
//! request queued in one turn leaves in as few writes as the socket allows. Replies are parsed
//! straight from the read buffer and matched, in order, to the requests in flight.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::Instant;

use crate::reply::{self, Parsed};
use crate::stats::Tally;
use crate::transport::Stream;
use crate::workload::{Op, Workload};

/// Initial read buffer; it grows (up to one value plus a line) only for large values.
const READ_BUF_BYTES: usize = 64 * 1024;
/// Most bytes a read buffer may hold: the largest reply the parser waits for.
const MAX_READ_BUF_BYTES: usize = reply::MAX_VALUE_BYTES + 2 * reply::MAX_REPLY_LINE_BYTES;

/// A connection that can still carry requests.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: Stream,
    read_buf: Vec<u8>,
    /// `read_buf[parsed..filled]` holds bytes not yet parsed.
    parsed: usize,
    filled: usize,
    write_buf: Vec<u8>,
    /// `write_buf[written..]` is still to be written.
    written: usize,
    /// What each request in flight asked, and when its latency clock started.
    in_flight: VecDeque<(Op, Instant)>,
    /// When bytes last arrived, or when the first of the requests in flight was queued.
    last_progress: Instant,
}

/// Why a connection can carry no more requests.
#[derive(Debug)]
pub(crate) enum Lost {
    Io(io::Error),
    Closed,
    Unparsable,
    Unsolicited,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Io(e) => write!(f, "I/O error: {e}"),
            Lost::Closed => f.write_str("closed by the server"),
            Lost::Unparsable => f.write_str("sent bytes that are no memcached reply"),
            Lost::Unsolicited => f.write_str("sent a reply to no request"),
        }
    }
}

impl Conn {
    pub(crate) fn new(stream: Stream, now: Instant) -> Conn {
        Conn {
            stream,
            read_buf: vec![0; READ_BUF_BYTES],
            parsed: 0,
            filled: 0,
            write_buf: Vec::with_capacity(READ_BUF_BYTES),
            written: 0,
            in_flight: VecDeque::new(),
            last_progress: now,
        }
    }

    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub(crate) fn last_progress(&self) -> Instant {
        self.last_progress
    }

    /// Appends a request whose latency counts from `since` (its send or intended send time).
    pub(crate) fn queue(&mut self, workload: &Workload, op: Op, key: u64, since: Instant) {
        if self.in_flight.is_empty() {
            self.last_progress = since;
        }
        workload.encode(op, key, &mut self.write_buf);
        self.in_flight.push_back((op, since));
    }

    /// Writes what is queued until done or the socket would block.
    pub(crate) fn flush(&mut self) -> Result<(), Lost> {
        // Each turn writes at least one byte or leaves, so the loop ends.
        while self.written < self.write_buf.len() {
            match self.stream.write(&self.write_buf[self.written..]) {
                Ok(0) => return Err(Lost::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Lost::Io(e)),
            }
        }
        self.write_buf.clear();
        self.written = 0;
        Ok(())
    }

    /// Reads until the socket would block, counting every complete reply into `tally`.
    /// Returns how many replies arrived.
    pub(crate) fn receive(&mut self, tally: &mut Tally) -> Result<u64, Lost> {
        let mut replies = 0;
        // Each turn either reads at least one byte or leaves; the bytes a server may send
        // are bounded by the replies owed (anything more is `Unsolicited`).
        loop {
            self.make_room()?;
            let offered = self.read_buf.len() - self.filled;
            match self.stream.read(&mut self.read_buf[self.filled..]) {
                Ok(0) => return Err(Lost::Closed),
                Ok(n) => {
                    let now = Instant::now();
                    self.filled += n;
                    self.last_progress = now;
                    replies += self.parse_replies(now, tally)?;
                    if n < offered && self.stream.short_read_drains() {
                        // Saves the read that would only say WouldBlock.
                        return Ok(replies);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(replies),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Lost::Io(e)),
            }
        }
    }

    fn parse_replies(&mut self, now: Instant, tally: &mut Tally) -> Result<u64, Lost> {
        let mut replies = 0;
        // Each turn consumes at least one byte or leaves.
        loop {
            match reply::parse(&self.read_buf[self.parsed..self.filled]) {
                Parsed::Incomplete => break,
                Parsed::Invalid => {
                    tally.errors.unparsable += 1;
                    return Err(Lost::Unparsable);
                }
                Parsed::Complete { consumed, reply } => {
                    let Some((op, since)) = self.in_flight.pop_front() else {
                        tally.errors.unexpected += 1;
                        return Err(Lost::Unsolicited);
                    };
                    let raw = &self.read_buf[self.parsed..self.parsed + consumed];
                    tally.record(op, reply, now.saturating_duration_since(since), raw);
                    self.parsed += consumed;
                    replies += 1;
                }
            }
        }
        if self.parsed == self.filled {
            self.parsed = 0;
            self.filled = 0;
        }
        Ok(replies)
    }

    /// Ensures free space at the end of the read buffer: moves unparsed bytes to the front,
    /// or grows the buffer for a reply larger than it.
    fn make_room(&mut self) -> Result<(), Lost> {
        if self.filled < self.read_buf.len() {
            return Ok(());
        }
        if self.parsed > 0 {
            self.read_buf.copy_within(self.parsed..self.filled, 0);
            self.filled -= self.parsed;
            self.parsed = 0;
            return Ok(());
        }
        if self.read_buf.len() >= MAX_READ_BUF_BYTES {
            // The parser would have said Invalid before a reply grew this large.
            return Err(Lost::Unparsable);
        }
        let grown = (self.read_buf.len() * 2).min(MAX_READ_BUF_BYTES);
        self.read_buf.resize(grown, 0);
        Ok(())
    }
}
