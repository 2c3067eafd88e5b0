//! `rampart-floor`: the least CPU a memcached-protocol server spends per request on this
//! machine, so that `cargo xtask bench-tls` can tell a goal no server could reach from one
//! rampart misses.
//!
//! It is the smallest correct server for the benchmark's workload: `get` (one or more keys)
//! and `set` into a hash map (hashbrown's, as rampart's index; no allocation per reply, none
//! for a `set` of the same size), and nothing else: no expiry, no eviction, no CAS, no
//! stats, no limits beyond an input bound. One thread and one edge-triggered poller; a read
//! that returns less than it was offered proves the socket drained (epoll(7), stream sockets),
//! so a request costs one read and one write, not memcached's extra read that meets `EAGAIN`.
//! Every reply of a read goes out in one write (one `SSL_write` under TLS). TLS is the same
//! OpenSSL the servers use, with read-ahead, so that one socket read pulls in every record the
//! socket holds.
//!
//! [`uring`] is the same floor through io_uring (`rampart-floor --io-uring`), one system call
//! per wake-up: what that design would save a server here.
//!
//! It is a measuring instrument, not a server: it trusts its client, keeps every key until it
//! exits and answers anything it does not know with `ERROR`.

pub mod uring;

use std::fs;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use hashbrown::HashMap;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use openssl::ssl::{
    HandshakeError, MidHandshakeSslStream, Ssl, SslContext, SslFiletype, SslMethod, SslMode,
    SslStream, SslVersion,
};

const LISTENER: Token = Token(usize::MAX);
/// Input room a connection starts with and grows by; each read is offered at least
/// `MIN_READ_BYTES` of it.
const READ_BYTES: usize = 64 * 1024;
const MIN_READ_BYTES: usize = 16 * 1024;
/// A connection whose unanswered input grows past this is closed (its client is broken).
const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;
const EVENTS: usize = 256;

/// What to serve.
#[derive(Debug, Clone)]
pub struct FloorConfig {
    pub listen: SocketAddr,
    /// TLS with this certificate chain and key (PEM); plaintext when `None`.
    pub tls: Option<FloorCerts>,
    /// Where to write `TCP INET: <port>` once listening, as memcached does with
    /// `MEMCACHED_PORT_FILENAME`.
    pub port_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct FloorCerts {
    pub chain: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("TLS setup: {0}")]
    Tls(#[from] openssl::error::ErrorStack),
    #[error("poller: {0}")]
    Poll(io::Error),
    #[error("cannot write the port file {path}: {source}")]
    PortFile { path: PathBuf, source: io::Error },
}

/// A bound floor server; [`Floor::run`] serves until the process ends.
#[derive(Debug)]
pub struct Floor {
    poll: Poll,
    listener: TcpListener,
    tls: Option<SslContext>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    store: FloorStore,
}

impl Floor {
    /// Listens (and loads the certificate) and writes the port file.
    pub fn bind(config: &FloorConfig) -> Result<Floor, FloorError> {
        let tls = config.tls.as_ref().map(context).transpose()?;
        let mut listener =
            TcpListener::bind(config.listen).map_err(|source| FloorError::Listen {
                addr: config.listen,
                source,
            })?;
        let poll = Poll::new().map_err(FloorError::Poll)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(FloorError::Poll)?;
        let floor = Floor {
            poll,
            listener,
            tls,
            conns: Vec::new(),
            free: Vec::new(),
            store: FloorStore::default(),
        };
        write_port_file(config, floor.port()?)?;
        Ok(floor)
    }

    pub fn port(&self) -> Result<u16, FloorError> {
        let addr = self.listener.local_addr().map_err(FloorError::Poll)?;
        Ok(addr.port())
    }

    /// Serves until the poller fails.
    pub fn run(mut self) -> Result<(), FloorError> {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FloorError::Poll(e)),
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept_all(),
                    Token(index) => self.drive(index),
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors, a connection reset before accept: try at the next event.
                Err(_) => return,
            };
            let _ = stream.set_nodelay(true);
            let index = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let registered = self.poll.registry().register(
                &mut stream,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            );
            if registered.is_err() {
                self.free.push(index);
                continue;
            }
            let link = match &self.tls {
                None => Link::Plain(stream),
                Some(ctx) => match Ssl::new(ctx) {
                    Ok(ssl) => accepted(ssl.accept(Probe::new(stream))),
                    Err(_) => Link::Closed,
                },
            };
            self.conns[index] = Some(Conn {
                link,
                input: Vec::new(),
                filled: 0,
                out: Vec::new(),
                sent: 0,
            });
            // The client may have sent already: the edge for those bytes has passed.
            self.drive(index);
        }
    }

    fn drive(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if conn.serve(&mut self.store).is_ok() {
            return;
        }
        if let Some(stream) = conn.link.tcp() {
            let _ = self.poll.registry().deregister(stream);
        }
        self.conns[index] = None;
        self.free.push(index);
    }
}

/// `TCP INET: <port>` into the config's port file, if it names one.
fn write_port_file(config: &FloorConfig, port: u16) -> Result<(), FloorError> {
    let Some(path) = &config.port_file else {
        return Ok(());
    };
    fs::write(path, format!("TCP INET: {port}\n")).map_err(|source| FloorError::PortFile {
        path: path.clone(),
        source,
    })
}

fn context(certs: &FloorCerts) -> Result<SslContext, openssl::error::ErrorStack> {
    let mut builder = SslContext::builder(SslMethod::tls_server())?;
    builder.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    builder.set_certificate_chain_file(&certs.chain)?;
    builder.set_private_key_file(&certs.key, SslFiletype::PEM)?;
    builder.check_private_key()?;
    builder.set_read_ahead(true);
    builder.set_mode(SslMode::ENABLE_PARTIAL_WRITE | SslMode::ACCEPT_MOVING_WRITE_BUFFER);
    Ok(builder.build())
}

fn accepted(result: Result<SslStream<Probe>, HandshakeError<Probe>>) -> Link {
    match result {
        Ok(stream) => Link::Tls(Box::new(stream)),
        Err(HandshakeError::WouldBlock(mid)) => Link::Accepting(Box::new(mid)),
        Err(_) => Link::Closed,
    }
}

/// The socket under OpenSSL, remembering whether its last read proved it drained.
#[derive(Debug)]
struct Probe {
    stream: TcpStream,
    drained: bool,
}

impl Probe {
    fn new(stream: TcpStream) -> Probe {
        Probe {
            stream,
            drained: false,
        }
    }
}

impl Read for Probe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.stream.read(buf);
        self.drained = match &result {
            Ok(n) => *n < buf.len(),
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        };
        result
    }
}

impl Write for Probe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[derive(Debug)]
enum Link {
    Plain(TcpStream),
    Accepting(Box<MidHandshakeSslStream<Probe>>),
    Tls(Box<SslStream<Probe>>),
    Closed,
}

impl Link {
    fn tcp(&mut self) -> Option<&mut TcpStream> {
        match self {
            Link::Plain(stream) => Some(stream),
            Link::Accepting(mid) => Some(&mut mid.get_mut().stream),
            Link::Tls(tls) => Some(&mut tls.get_mut().stream),
            Link::Closed => None,
        }
    }
}

/// The connection is over (the peer left, broke the protocol or the socket failed).
#[derive(Debug)]
struct Gone;

#[derive(Debug)]
struct Conn {
    link: Link,
    /// Received bytes are `input[..filled]`; the rest is room, zeroed once, not per read.
    input: Vec<u8>,
    filled: usize,
    /// Replies not yet written, from `sent` on.
    out: Vec<u8>,
    sent: usize,
}

impl Conn {
    /// Everything a readiness event allows: the handshake, output left over, then read,
    /// answer and write until the socket is drained.
    fn serve(&mut self, store: &mut FloorStore) -> Result<(), Gone> {
        self.link = match std::mem::replace(&mut self.link, Link::Closed) {
            Link::Accepting(mid) => accepted(mid.handshake()),
            link => link,
        };
        match self.link {
            Link::Accepting(_) => return Ok(()),
            Link::Closed => return Err(Gone),
            Link::Plain(_) | Link::Tls(_) => {}
        }
        loop {
            if !self.flush()? {
                return Ok(());
            }
            let drained = self.fill()?;
            let consumed = store.answer(&self.input[..self.filled], &mut self.out);
            self.input.copy_within(consumed..self.filled, 0);
            self.filled -= consumed;
            if self.filled > MAX_INPUT_BYTES {
                return Err(Gone);
            }
            if !self.flush()? || drained {
                return Ok(());
            }
        }
    }

    /// Reads what the socket holds into `input`; `true` once a read proves it drained.
    fn fill(&mut self) -> Result<bool, Gone> {
        loop {
            if self.input.len() - self.filled < MIN_READ_BYTES {
                self.input.resize(self.filled + READ_BYTES, 0);
            }
            let room = &mut self.input[self.filled..];
            let offered = room.len();
            let result = match &mut self.link {
                Link::Plain(stream) => stream.read(room),
                Link::Tls(tls) => tls.read(room),
                Link::Accepting(_) | Link::Closed => return Err(Gone),
            };
            let n = match result {
                Ok(0) => return Err(Gone),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(Gone),
            };
            self.filled += n;
            let drained = match &self.link {
                Link::Plain(_) => n < offered,
                // A record's plaintext per read: drained once OpenSSL holds nothing more and
                // its last socket read came back short.
                Link::Tls(tls) => tls.get_ref().drained && !crate::sys::tls_has_pending(tls.ssl()),
                Link::Accepting(_) | Link::Closed => true,
            };
            if drained {
                return Ok(true);
            }
        }
    }

    /// Writes pending output; `false` while some is left for the next writable event.
    fn flush(&mut self) -> Result<bool, Gone> {
        while self.sent < self.out.len() {
            let pending = &self.out[self.sent..];
            let result = match &mut self.link {
                Link::Plain(stream) => stream.write(pending),
                Link::Tls(tls) => tls.write(pending),
                Link::Accepting(_) | Link::Closed => return Err(Gone),
            };
            match result {
                Ok(0) => return Err(Gone),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Gone),
            }
        }
        self.out.clear();
        self.sent = 0;
        Ok(true)
    }
}

#[derive(Debug)]
struct Item {
    flags: u32,
    data: Box<[u8]>,
}

/// The floor's whole cache: a map, with the two commands the benchmark sends.
#[derive(Debug, Default)]
pub struct FloorStore {
    items: HashMap<Box<[u8]>, Item>,
}

impl FloorStore {
    /// Answers every whole request at the front of `input` into `out`; returns the bytes
    /// it consumed (a request still arriving stays in `input`).
    pub fn answer(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut at = 0;
        while let Some(eol) = memchr::memchr(b'\n', &input[at..]) {
            let rest = &input[at..];
            let line = rest[..eol].strip_suffix(b"\r").unwrap_or(&rest[..eol]);
            let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
            match words.next() {
                Some(b"get") => {
                    for key in words {
                        if let Some(item) = self.items.get(key) {
                            let mut digits = itoa::Buffer::new();
                            out.extend_from_slice(b"VALUE ");
                            out.extend_from_slice(key);
                            out.push(b' ');
                            out.extend_from_slice(digits.format(item.flags).as_bytes());
                            out.push(b' ');
                            out.extend_from_slice(digits.format(item.data.len()).as_bytes());
                            out.extend_from_slice(b"\r\n");
                            out.extend_from_slice(&item.data);
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    out.extend_from_slice(b"END\r\n");
                    at += eol + 1;
                }
                Some(b"set") => {
                    let Some(set) = SetLine::parse(words) else {
                        out.extend_from_slice(b"CLIENT_ERROR bad command line format\r\n");
                        at += eol + 1;
                        continue;
                    };
                    if set.bytes > MAX_INPUT_BYTES {
                        out.extend_from_slice(b"SERVER_ERROR object too large for cache\r\n");
                        at += eol + 1;
                        continue;
                    }
                    let data_at = eol + 1;
                    let whole = data_at + set.bytes + 2;
                    if rest.len() < whole {
                        break;
                    }
                    if &rest[data_at + set.bytes..whole] != b"\r\n" {
                        out.extend_from_slice(b"CLIENT_ERROR bad data chunk\r\n");
                    } else {
                        let data = &rest[data_at..data_at + set.bytes];
                        match self.items.get_mut(set.key) {
                            Some(item) => {
                                item.flags = set.flags;
                                // Same size (the benchmark's case): no allocation.
                                if item.data.len() == data.len() {
                                    item.data.copy_from_slice(data);
                                } else {
                                    item.data = data.into();
                                }
                            }
                            None => {
                                let item = Item {
                                    flags: set.flags,
                                    data: data.into(),
                                };
                                self.items.insert(set.key.into(), item);
                            }
                        }
                        if !set.noreply {
                            out.extend_from_slice(b"STORED\r\n");
                        }
                    }
                    at += whole;
                }
                _ => {
                    out.extend_from_slice(b"ERROR\r\n");
                    at += eol + 1;
                }
            }
        }
        at
    }
}

/// `set <key> <flags> <exptime> <bytes> [noreply]`, after the command word.
#[derive(Debug)]
struct SetLine<'a> {
    key: &'a [u8],
    flags: u32,
    bytes: usize,
    noreply: bool,
}

impl<'a> SetLine<'a> {
    fn parse(mut words: impl Iterator<Item = &'a [u8]>) -> Option<SetLine<'a>> {
        let key = words.next()?;
        let flags = number(words.next()?)?;
        let _exptime: i64 = number(words.next()?)?;
        let bytes = number(words.next()?)?;
        let noreply = match words.next() {
            None => false,
            Some(b"noreply") => true,
            Some(_) => return None,
        };
        Some(SetLine {
            key,
            flags,
            bytes,
            noreply,
        })
    }
}

fn number<T: std::str::FromStr>(word: &[u8]) -> Option<T> {
    std::str::from_utf8(word).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(store: &mut FloorStore, input: &[u8]) -> (usize, String) {
        let mut out = Vec::new();
        let consumed = store.answer(input, &mut out);
        (consumed, String::from_utf8(out).expect("text"))
    }

    #[test]
    fn a_set_then_gets_answer_like_memcached() {
        let mut store = FloorStore::default();
        let input = b"set k 5 0 3\r\nabc\r\nget k\r\nget nope k\r\nget nope\r\n";
        let (consumed, out) = answer(&mut store, input);
        assert_eq!(consumed, input.len());
        assert_eq!(
            out,
            "STORED\r\nVALUE k 5 3\r\nabc\r\nEND\r\nVALUE k 5 3\r\nabc\r\nEND\r\nEND\r\n"
        );
        let (_, out) = answer(&mut store, b"set k 1 0 1 noreply\r\nx\r\nget k\r\n");
        assert_eq!(out, "VALUE k 1 1\r\nx\r\nEND\r\n");
    }

    #[test]
    fn requests_still_arriving_stay_unconsumed() {
        let mut store = FloorStore::default();
        let input = b"get a\r\nset k 0 0 10\r\nabc";
        let (consumed, out) = answer(&mut store, input);
        assert_eq!((consumed, out.as_str()), (7, "END\r\n"));
        assert_eq!(answer(&mut store, b"get a").0, 0);
    }

    #[test]
    fn anything_else_is_an_error_and_the_stream_goes_on() {
        let mut store = FloorStore::default();
        let (consumed, out) = answer(&mut store, b"stats\r\nset k x 0 1\r\nget k\r\n");
        assert_eq!(consumed, 27);
        assert_eq!(
            out,
            "ERROR\r\nCLIENT_ERROR bad command line format\r\nEND\r\n"
        );
        let (consumed, out) = answer(&mut store, b"set k 0 0 18446744073709551615\r\n");
        assert_eq!(
            (consumed, out.as_str()),
            (32, "SERVER_ERROR object too large for cache\r\n")
        );
    }
}
