//! The connection driver: reads, lets the [`Session`] work through what arrived, and writes
//! every reply of the batch with one send.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::authz::Identity;
use crate::session::{Session, Stop};
use crate::stats::{WorkerCounters, unix_now};
use crate::worker::Worker;

/// Initial (and idle) size of a connection's read buffer.
pub const READ_BUF_BYTES: usize = 16 * 1024;
/// Replies accumulated past this are written before more requests run, bounding a
/// connection's output memory under a deep pipeline.
const OUT_FLUSH_BYTES: usize = 1024 * 1024;
/// A buffer grown past this for a large value is given back once it is empty again.
const SHRINK_ABOVE_BYTES: usize = 4 * READ_BUF_BYTES;

/// A connection's unread input: `buf[start..end]` holds bytes not yet consumed.
#[derive(Debug)]
struct InputBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InputBuffer {
    fn new() -> Self {
        InputBuffer {
            buf: vec![0; READ_BUF_BYTES],
            start: 0,
            end: 0,
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
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
    fn spare(&mut self) -> &mut [u8] {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    fn filled(&mut self, n: usize) {
        self.end += n;
    }
}

/// The byte streams a connection can run over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// The socket, when a shutdown can stop its reads (glommio's unix streams do not expose it;
    /// those connections are closed when the drain limit runs out).
    fn socket(&self) -> Option<RawFd>;
}

impl Transport for glommio::net::TcpStream {
    fn socket(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }
}

impl Transport for glommio::net::UnixStream {
    fn socket(&self) -> Option<RawFd> {
        None
    }
}

async fn read_some<S: Transport>(
    stream: &mut S,
    buf: &mut [u8],
    idle_timeout: Option<Duration>,
) -> io::Result<usize> {
    match idle_timeout {
        None => stream.read(buf).await,
        Some(limit) => {
            futures_lite::future::or(stream.read(buf), async {
                glommio::timer::sleep(limit).await;
                Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"))
            })
            .await
        }
    }
}

/// Serves one client until it leaves, misbehaves beyond resynchronising, or the server stops.
pub async fn serve<S: Transport>(mut stream: S, worker: Rc<Worker>, identity: Identity) {
    let fd = stream.socket().unwrap_or(-1);
    let _registration = worker.register_connection(stream.socket());
    let mut session = Session::new(identity, worker.config().protocol);
    let mut input = InputBuffer::new();
    let mut out: Vec<u8> = Vec::with_capacity(READ_BUF_BYTES);
    let per_event = worker.config().requests_per_event.max(1);
    let idle_timeout = worker.config().idle_timeout;
    'reading: loop {
        let n = match read_some(&mut stream, input.spare(), idle_timeout).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) => {
                log::debug!("connection fd {fd}: read failed: {err}");
                break;
            }
        };
        input.filled(n);
        WorkerCounters::add(&worker.counters().bytes_read, n as u64);
        // One turn: everything this read completed. Requests for other cores' keys are
        // queued across the `-R` slices and exchanged once, when the turn ends (or when its
        // output or queue reaches OUT_FLUSH_BYTES).
        let stop = loop {
            let mut progress =
                session.process(input.data(), &worker, unix_now(), per_event, &mut out);
            input.consume(progress.consumed);
            let budget_spent = progress.requests >= per_event;
            if progress.stop == Stop::WholeCache {
                // Everything before it has run first, so its view includes them.
                if let Err(gone) = session.exchange(&worker, &mut out).await {
                    log::warn!("connection fd {fd}: {gone}; closing");
                    break 'reading;
                }
                match session
                    .whole_cache(input.data(), &worker, unix_now(), &mut out)
                    .await
                {
                    Ok(next) => {
                        input.consume(next.consumed);
                        progress.stop = next.stop;
                    }
                    Err(gone) => {
                        log::warn!("connection fd {fd}: {gone}; closing");
                        break 'reading;
                    }
                }
            }
            let more = matches!(progress.stop, Stop::Budget | Stop::WholeCache);
            let flush =
                !more || out.len() >= OUT_FLUSH_BYTES || session.queued_bytes() >= OUT_FLUSH_BYTES;
            if flush
                && session.is_waiting()
                && let Err(gone) = session.exchange(&worker, &mut out).await
            {
                log::warn!("connection fd {fd}: {gone}; closing");
                break 'reading;
            }
            if flush && !out.is_empty() {
                if let Err(err) = stream.write_all(&out).await {
                    log::debug!("connection fd {fd}: write failed: {err}");
                    return;
                }
                WorkerCounters::add(&worker.counters().bytes_written, out.len() as u64);
                out.clear();
            }
            if !more {
                break progress.stop;
            }
            if budget_spent {
                // `-R` requests done: give other connections a turn before going on.
                WorkerCounters::add(&worker.counters().conn_yields, 1);
                glommio::yield_if_needed().await;
            }
        };
        if stop == Stop::Close {
            break;
        }
        if out.capacity() > SHRINK_ABOVE_BYTES {
            out = Vec::with_capacity(READ_BUF_BYTES);
        }
    }
    let _ = stream.close().await;
}

/// Refuses a connection over `-c` the way memcached does.
pub async fn reject_over_limit<S: Transport>(mut stream: S) {
    let _ = stream
        .write_all(b"ERROR Too many open connections\r\n")
        .await;
    let _ = stream.close().await;
}
