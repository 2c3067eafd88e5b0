//! One connection's TLS: a state machine over in-memory ciphertext buffers.
//!
//! The connection driver owns the socket. Per turn it reads the socket straight into the
//! session's ciphertext room ([`TlsSession::ciphertext_room`], then
//! [`TlsSession::ciphertext_added`]; [`TlsSession::feed_ciphertext`] copies bytes in instead),
//! drains every decryptable byte
//! ([`TlsSession::read_plaintext`], which keeps reading while OpenSSL holds buffered records,
//! so pipelined requests never wait for another socket read), hands the turn's replies to
//! [`TlsSession::write_plaintext_batch`], and writes [`TlsSession::take_ciphertext`] out,
//! calling [`TlsSession::consume_ciphertext`] with what the socket took.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use openssl::nid::Nid;
use openssl::ssl::{ErrorCode, ShutdownResult, Ssl, SslContext, SslRef, SslStream};
use openssl::x509::X509VerifyResult;

use crate::context::ListenerTls;
use crate::error::{TlsError, first_error};
use crate::holder::TlsCounters;

/// Plaintext is decrypted into the caller's buffer this much at a time (one full record).
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Ciphertext not yet taken by the socket above which OpenSSL is told to wait (`WantWrite`).
const CIPHERTEXT_HIGH_WATER_BYTES: usize = 4 * 1024 * 1024;
/// Emptied outgoing ciphertext buffers larger than this are shrunk back, so one big reply does not pin
/// its size for the connection's lifetime.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

/// What the session waits for after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// More ciphertext from the socket.
    WantRead,
    /// The socket to take the pending ciphertext ([`TlsSession::take_ciphertext`]) first.
    WantWrite,
    /// The peer sent close_notify: nothing more will be read; replies may still be written,
    /// then [`TlsSession::shutdown`].
    PeerClosed,
    /// The session is over: write out what ciphertext is left, then close the socket.
    Closed,
}

/// The outcome of [`TlsSession::read_plaintext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Plaintext bytes appended to the caller's buffer.
    pub plaintext_bytes: usize,
    pub next: Next,
}

/// The outcome of [`TlsSession::write_plaintext_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteProgress {
    /// Bytes of the slices taken (in order). Fewer than offered only with `blocked` set.
    /// Taken bytes may still sit in the session's staging buffer while `blocked`: once the
    /// socket has taken the ciphertext, call again with the rest (or with `&[]`), which
    /// writes the staged bytes first.
    pub accepted: usize,
    /// `Some(WantWrite)` when the ciphertext buffer is full (`WantRead` is possible in
    /// principle, never with renegotiation off).
    pub blocked: Option<Next>,
}

/// The verified client certificate's names, for the auth layer's `Identity`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
}

/// Ciphertext in both directions, standing in for the socket under OpenSSL.
#[derive(Debug, Default)]
struct Duplex {
    /// Ciphertext not yet taken by OpenSSL is `incoming[in_pos..in_end]`; the bytes after
    /// `in_end` are room for the next socket read (initialised once, when the room grows).
    incoming: Vec<u8>,
    in_pos: usize,
    in_end: usize,
    outgoing: Vec<u8>,
    out_pos: usize,
}

impl Duplex {
    /// Whether OpenSSL has taken every ciphertext byte fed to it.
    fn is_drained(&self) -> bool {
        self.in_pos == self.in_end
    }

    /// At least `at_least` bytes of room after the unread ciphertext, which moves to the
    /// front first.
    fn room(&mut self, at_least: usize) -> &mut [u8] {
        if self.incoming.capacity() == 0 {
            self.incoming = crate::buffers::take_filled();
        }
        if self.in_pos > 0 {
            self.incoming.copy_within(self.in_pos..self.in_end, 0);
            self.in_end -= self.in_pos;
            self.in_pos = 0;
        }
        if self.incoming.len() - self.in_end < at_least {
            self.incoming.resize(self.in_end + at_least, 0);
        }
        &mut self.incoming[self.in_end..]
    }

    fn added(&mut self, n: usize) {
        self.in_end = (self.in_end + n).min(self.incoming.len());
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = &self.incoming[self.in_pos..self.in_end];
        if available.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.in_pos += n;
        if self.in_pos == self.in_end {
            // The room stays for the next read; an idle connection frees it (`shrink_idle`).
            self.in_pos = 0;
            self.in_end = 0;
        }
        Ok(n)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.outgoing.len() - self.out_pos >= CIPHERTEXT_HIGH_WATER_BYTES {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.outgoing.capacity() == 0 {
            self.outgoing = crate::buffers::take_empty();
        }
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Stream = SslStream<Duplex>;

/// Each state holds only what is valid in it.
#[derive(Debug)]
enum State {
    /// Waiting for the client's handshake messages.
    Handshaking { stream: Stream },
    /// Application data flows. `staged` is the batch writer's `ssl_wbuf_size` buffer; it is
    /// non-empty only while a write waits for the socket.
    Established {
        stream: Stream,
        peer: Option<PeerIdentity>,
        staged: Vec<u8>,
    },
    /// Our close_notify is sent; waiting for the peer's.
    ShuttingDown { stream: Stream },
    /// Over. Only ciphertext still to be written remains (an alert, a close_notify).
    Closed { leftover: Duplex },
}

/// One server-side TLS connection.
#[derive(Debug)]
pub struct TlsSession {
    state: State,
    counters: Arc<TlsCounters>,
    wbuf_bytes: usize,
}

impl TlsSession {
    /// A server session on `ctx` for a connection accepted on a `listener`.
    pub fn accept(
        ctx: &SslContext,
        listener: ListenerTls,
        counters: Arc<TlsCounters>,
        wbuf_bytes: usize,
    ) -> Result<Self, TlsError> {
        let setup = |e: openssl::error::ErrorStack| TlsError::Setup(first_error(&e));
        let mut ssl = Ssl::new(ctx).map_err(setup)?;
        if let Some(mode) = listener.verify_override() {
            ssl.set_verify(mode);
        }
        match listener {
            ListenerTls::Mtls => crate::psk::refuse(&mut ssl),
            ListenerTls::Psk => crate::psk::require(&mut ssl),
            ListenerTls::Default | ListenerTls::Btls => {}
        }
        set_session_id_context(&mut ssl, listener.session_id_context()).map_err(setup)?;
        ssl.set_accept_state();
        let stream = SslStream::new(ssl, Duplex::default()).map_err(setup)?;
        Ok(TlsSession {
            state: State::Handshaking { stream },
            counters,
            wbuf_bytes: wbuf_bytes.max(1),
        })
    }

    /// Room for at least `at_least` bytes of ciphertext: read the socket into it, then call
    /// [`TlsSession::ciphertext_added`] with the count. A closed session still offers room;
    /// what lands there is never read.
    pub fn ciphertext_room(&mut self, at_least: usize) -> &mut [u8] {
        self.state.duplex_mut().room(at_least)
    }

    /// Queues the first `n` bytes of the last [`TlsSession::ciphertext_room`].
    pub fn ciphertext_added(&mut self, n: usize) {
        match &mut self.state {
            State::Handshaking { stream }
            | State::Established { stream, .. }
            | State::ShuttingDown { stream } => stream.get_mut().added(n),
            // Nothing is read any more.
            State::Closed { .. } => {}
        }
    }

    /// Queues a copy of `bytes` (for callers that did not read into the room).
    pub fn feed_ciphertext(&mut self, bytes: &[u8]) {
        self.ciphertext_room(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        self.ciphertext_added(bytes.len());
    }

    /// Drives the handshake and then decrypts everything available into `out`, including
    /// records OpenSSL had already buffered. A handshake failure is counted in
    /// `ssl_handshake_errors`, a later protocol failure in `ssl_proto_errors`; either closes
    /// the session (an alert may wait in [`TlsSession::take_ciphertext`]).
    pub fn read_plaintext(&mut self, out: &mut Vec<u8>) -> Result<Progress, TlsError> {
        let state = std::mem::replace(&mut self.state, State::placeholder());
        let (next_state, result) = state.read(out, &self.counters);
        self.state = next_state;
        result
    }

    /// Encrypts a turn's reply slices like memcached's `ssl_sendmsg`: packs them into
    /// `ssl_wbuf_size` buffers and issues one `SSL_write` per buffer, so many small pipelined
    /// replies become one record.
    pub fn write_plaintext_batch<S: std::ops::Deref<Target = [u8]>>(
        &mut self,
        slices: &[S],
    ) -> Result<WriteProgress, TlsError> {
        let wbuf_bytes = self.wbuf_bytes;
        let State::Established { stream, staged, .. } = &mut self.state else {
            return Err(TlsError::WrongState(self.state.name()));
        };
        if staged.capacity() == 0 {
            *staged = crate::buffers::take_empty();
        }
        let mut accepted = 0;
        let mut result = flush_staged(stream, staged);
        'slices: for slice in slices {
            let mut rest: &[u8] = slice;
            while result == Ok(None) && !rest.is_empty() {
                let n = rest.len().min(wbuf_bytes - staged.len());
                staged.extend_from_slice(&rest[..n]);
                accepted += n;
                rest = &rest[n..];
                if staged.len() == wbuf_bytes {
                    result = flush_staged(stream, staged);
                }
            }
            if result != Ok(None) {
                break 'slices;
            }
        }
        if result == Ok(None) {
            result = flush_staged(stream, staged);
        }
        match result {
            Ok(blocked) => Ok(WriteProgress { accepted, blocked }),
            Err(detail) => {
                self.counters.proto_errors.fetch_add(1, Ordering::Relaxed);
                self.close();
                Err(TlsError::Protocol(detail))
            }
        }
    }

    /// The ciphertext waiting for the socket.
    pub fn take_ciphertext(&self) -> &[u8] {
        let d = self.state.duplex();
        &d.outgoing[d.out_pos..]
    }

    /// Records that the socket took the first `n` bytes of [`TlsSession::take_ciphertext`].
    pub fn consume_ciphertext(&mut self, n: usize) {
        let d = self.state.duplex_mut();
        d.out_pos = (d.out_pos + n).min(d.outgoing.len());
        if d.out_pos == d.outgoing.len() {
            d.outgoing.clear();
            d.outgoing.shrink_to(KEEP_BUFFER_BYTES);
            d.out_pos = 0;
        }
    }

    /// Gives back the buffers a connection waiting for its next request does not need (the
    /// batch writer's staging buffer and the ciphertext buffers, each once it is empty, to
    /// the thread's spares: [`crate::buffers`]); call it before the connection waits. The
    /// next read or write takes them again. OpenSSL's own record buffers need no call: the
    /// contexts release them after every record (`SSL_MODE_RELEASE_BUFFERS`).
    pub fn shrink_idle(&mut self) {
        if let State::Established { staged, .. } = &mut self.state
            && staged.is_empty()
        {
            crate::buffers::give(std::mem::take(staged));
        }
        let d = self.state.duplex_mut();
        if d.is_drained() {
            crate::buffers::give(std::mem::take(&mut d.incoming));
            d.in_pos = 0;
            d.in_end = 0;
        }
        if d.out_pos == d.outgoing.len() {
            crate::buffers::give(std::mem::take(&mut d.outgoing));
            d.out_pos = 0;
        }
    }

    /// Whether the session holds no ciphertext it has not yet decrypted, so that the
    /// connection may wait without its buffers ([`TlsSession::shrink_idle`]).
    pub fn is_drained(&self) -> bool {
        self.state.duplex().is_drained()
    }

    /// Sends close_notify. Returns `ShuttingDown`'s wait (`WantRead`) or `Closed` when the
    /// peer had already closed. A session still handshaking is simply closed.
    pub fn shutdown(&mut self) -> Next {
        let state = std::mem::replace(&mut self.state, State::placeholder());
        self.state = match state {
            State::Established { mut stream, .. } => match stream.shutdown() {
                Ok(ShutdownResult::Sent) => State::ShuttingDown { stream },
                Ok(ShutdownResult::Received) | Err(_) => State::closed_from(stream),
            },
            State::Handshaking { stream } => State::closed_from(stream),
            other => other,
        };
        match self.state {
            State::ShuttingDown { .. } => Next::WantRead,
            _ => Next::Closed,
        }
    }

    pub fn is_handshaking(&self) -> bool {
        matches!(self.state, State::Handshaking { .. })
    }

    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established { .. })
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// The verified client certificate's names, once established (None: no certificate).
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        match &self.state {
            State::Established { peer, .. } => peer.as_ref(),
            _ => None,
        }
    }

    /// The PSK identity the client authenticated with (`ssl_psk_file`), once established.
    pub fn psk_identity(&self) -> Option<String> {
        if !self.is_established() {
            return None;
        }
        crate::psk::identity(self.ssl()?)
    }

    /// The negotiated protocol and cipher (`TLSv1.3`, `TLS_AES_256_GCM_SHA384`), once known.
    pub fn negotiated(&self) -> Option<(&'static str, &'static str)> {
        let ssl = self.ssl()?;
        let cipher = ssl.current_cipher()?;
        Some((ssl.version_str(), cipher.name()))
    }

    /// The OpenSSL connection, for inspection (version, cipher, resumption, peer chain).
    pub fn ssl(&self) -> Option<&SslRef> {
        match &self.state {
            State::Handshaking { stream }
            | State::Established { stream, .. }
            | State::ShuttingDown { stream } => Some(stream.ssl()),
            State::Closed { .. } => None,
        }
    }

    fn close(&mut self) {
        let state = std::mem::replace(&mut self.state, State::placeholder());
        self.state = match state {
            State::Handshaking { stream }
            | State::Established { stream, .. }
            | State::ShuttingDown { stream } => State::closed_from(stream),
            closed @ State::Closed { .. } => closed,
        };
    }
}

impl State {
    fn placeholder() -> State {
        State::Closed {
            leftover: Duplex::default(),
        }
    }

    fn closed_from(mut stream: Stream) -> State {
        State::Closed {
            leftover: std::mem::take(stream.get_mut()),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            State::Handshaking { .. } => "handshaking",
            State::Established { .. } => "established",
            State::ShuttingDown { .. } => "shutting down",
            State::Closed { .. } => "closed",
        }
    }

    fn duplex(&self) -> &Duplex {
        match self {
            State::Handshaking { stream }
            | State::Established { stream, .. }
            | State::ShuttingDown { stream } => stream.get_ref(),
            State::Closed { leftover } => leftover,
        }
    }

    fn duplex_mut(&mut self) -> &mut Duplex {
        match self {
            State::Handshaking { stream }
            | State::Established { stream, .. }
            | State::ShuttingDown { stream } => stream.get_mut(),
            State::Closed { leftover } => leftover,
        }
    }

    /// The read transition: consumes the state, returns the next one and the outcome.
    fn read(
        self,
        out: &mut Vec<u8>,
        counters: &TlsCounters,
    ) -> (State, Result<Progress, TlsError>) {
        match self {
            State::Handshaking { mut stream } => match stream.do_handshake() {
                Ok(()) => {
                    let peer = peer_identity(stream.ssl());
                    let established = State::Established {
                        stream,
                        peer,
                        staged: Vec::new(),
                    };
                    // The client's first requests may have come with its Finished.
                    established.read(out, counters)
                }
                Err(e) => match stall(&e) {
                    Some(next) => (
                        State::Handshaking { stream },
                        Ok(Progress {
                            plaintext_bytes: 0,
                            next,
                        }),
                    ),
                    None => {
                        counters.handshake_errors.fetch_add(1, Ordering::Relaxed);
                        (
                            State::closed_from(stream),
                            Err(TlsError::Handshake(detail(&e))),
                        )
                    }
                },
            },
            State::Established {
                mut stream,
                peer,
                staged,
            } => {
                let start = out.len();
                let outcome = drain(&mut stream, out);
                let plaintext_bytes = out.len() - start;
                match outcome {
                    Ok(next) => (
                        State::Established {
                            stream,
                            peer,
                            staged,
                        },
                        Ok(Progress {
                            plaintext_bytes,
                            next,
                        }),
                    ),
                    Err(detail) => {
                        counters.proto_errors.fetch_add(1, Ordering::Relaxed);
                        (State::closed_from(stream), Err(TlsError::Protocol(detail)))
                    }
                }
            }
            State::ShuttingDown { mut stream } => {
                // Application data after our close_notify is read and dropped.
                let mut discard = Vec::new();
                match drain(&mut stream, &mut discard) {
                    Ok(Next::PeerClosed) => (State::closed_from(stream), Ok(closed())),
                    Ok(next) => (
                        State::ShuttingDown { stream },
                        Ok(Progress {
                            plaintext_bytes: 0,
                            next,
                        }),
                    ),
                    // The peer's misbehaviour after we closed changes nothing for it.
                    Err(_) => (State::closed_from(stream), Ok(closed())),
                }
            }
            closed @ State::Closed { .. } => (closed, Ok(self::closed())),
        }
    }
}

fn closed() -> Progress {
    Progress {
        plaintext_bytes: 0,
        next: Next::Closed,
    }
}

/// Reads until OpenSSL has nothing more to give: `SSL_read` returns buffered (`SSL_pending`)
/// records before it asks the transport, so looping to `WANT_READ` drains them all. Once
/// the fed ciphertext is used up and OpenSSL holds nothing (`SSL_has_pending`), the next
/// `SSL_read` could only fail with `WANT_READ`, so it is not made: at depth 1 that failing
/// call (OpenSSL's error queue, the BIO's retry flags) is a tenth of a request's TLS work.
fn drain(stream: &mut Stream, out: &mut Vec<u8>) -> Result<Next, String> {
    loop {
        out.reserve(READ_CHUNK_BYTES);
        let len = out.len();
        match stream.ssl_read_uninit(out.spare_capacity_mut()) {
            Ok(n) => {
                // SAFETY: ssl_read_uninit initialised the first `n` bytes of the spare
                // capacity, and `n` is at most the spare capacity it was given.
                unsafe { out.set_len(len + n) };
                if stream.get_ref().is_drained() && !has_pending(stream.ssl()) {
                    return Ok(Next::WantRead);
                }
            }
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Ok(Next::PeerClosed),
            Err(e) => return stall(&e).ok_or_else(|| detail(&e)),
        }
    }
}

/// `Ok(None)` once `staged` is written; `Ok(Some(next))` when OpenSSL must wait.
fn flush_staged(stream: &mut Stream, staged: &mut Vec<u8>) -> Result<Option<Next>, String> {
    while !staged.is_empty() {
        match stream.ssl_write(staged) {
            Ok(n) => {
                staged.drain(..n);
            }
            Err(e) => return stall(&e).map(Some).ok_or_else(|| detail(&e)),
        }
    }
    Ok(None)
}

unsafe extern "C" {
    // libssl's per-connection form of SSL_CTX_set_session_id_context, which openssl-sys does
    // not bind. <openssl/ssl.h>: int SSL_set_session_id_context(SSL *ssl,
    // const unsigned char *sid_ctx, unsigned int sid_ctx_len).
    fn SSL_set_session_id_context(
        ssl: *mut openssl_sys::SSL,
        sid_ctx: *const std::ffi::c_uchar,
        sid_ctx_len: std::ffi::c_uint,
    ) -> std::ffi::c_int;
}

unsafe extern "C" {
    // OpenSSL 1.1.0 and later, not bound by openssl-sys. <openssl/ssl.h>:
    // int SSL_has_pending(const SSL *s).
    fn SSL_has_pending(ssl: *const openssl_sys::SSL) -> std::ffi::c_int;
}

/// Whether OpenSSL holds input not yet returned: plaintext of a record begun, or ciphertext
/// read from the BIO but not yet processed (`SslRef::pending` counts only the former).
fn has_pending(ssl: &SslRef) -> bool {
    use foreign_types::ForeignTypeRef;
    // SAFETY: `ssl` is a live SSL borrowed for the call; SSL_has_pending only reads it.
    unsafe { SSL_has_pending(ssl.as_ptr()) == 1 }
}

/// Sets the connection's session id context (at most 32 bytes, as OpenSSL requires).
fn set_session_id_context(ssl: &mut Ssl, context: &[u8]) -> Result<(), openssl::error::ErrorStack> {
    use foreign_types::ForeignType;
    let len = std::ffi::c_uint::try_from(context.len()).unwrap_or(std::ffi::c_uint::MAX);
    // SAFETY: `ssl` is a live SSL owned by `Ssl`; OpenSSL copies `len` bytes from `context`,
    // a valid slice, and refuses (returns 0) a length over SSL_MAX_SID_CTX_LENGTH.
    let ok = unsafe { SSL_set_session_id_context(ssl.as_ptr(), context.as_ptr(), len) };
    if ok == 1 {
        Ok(())
    } else {
        Err(openssl::error::ErrorStack::get())
    }
}

/// A retryable stall, in its direction; `None` for a real failure.
fn stall(e: &openssl::ssl::Error) -> Option<Next> {
    match e.code() {
        ErrorCode::WANT_READ => Some(Next::WantRead),
        ErrorCode::WANT_WRITE => Some(Next::WantWrite),
        _ => None,
    }
}

fn detail(e: &openssl::ssl::Error) -> String {
    match e.ssl_error() {
        Some(stack) if !stack.errors().is_empty() => first_error(stack),
        _ => e.to_string(),
    }
}

/// Names from the client certificate, only if OpenSSL verified it.
fn peer_identity(ssl: &SslRef) -> Option<PeerIdentity> {
    let cert = ssl.peer_certificate()?;
    if ssl.verify_result() != X509VerifyResult::OK {
        return None;
    }
    let mut id = PeerIdentity {
        common_name: cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|entry| entry.data().to_string().ok()),
        ..PeerIdentity::default()
    };
    for name in cert.subject_alt_names().iter().flatten() {
        if let Some(dns) = name.dnsname() {
            id.dns_names.push(dns.to_owned());
        } else if let Some(ip) = name.ipaddress() {
            if let Ok(v4) = <[u8; 4]>::try_from(ip) {
                id.ip_addresses.push(IpAddr::from(v4));
            } else if let Ok(v6) = <[u8; 16]>::try_from(ip) {
                id.ip_addresses.push(IpAddr::from(v6));
            }
        } else if let Some(uri) = name.uri() {
            id.uris.push(uri.to_owned());
        } else if let Some(email) = name.email() {
            id.emails.push(email.to_owned());
        }
    }
    Some(id)
}
