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
//!
//! A session with an AEAD suite (TLS 1.3, and TLS 1.2's AES-GCM and ChaCha20-Poly1305 suites)
//! hands over to rampart's own record layer ([`crate::records`]) as its handshake ends, and OpenSSL's connection object is freed: see [`State::Protected`].

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use openssl::ex_data::Index;
use openssl::nid::Nid;
use openssl::ssl::{
    ErrorCode, ShutdownResult, ShutdownState, Ssl, SslContext, SslRef, SslSession, SslStream,
    SslVersion,
};
use openssl::x509::X509VerifyResult;

use crate::context::ListenerTls;
use crate::error::{TlsError, first_error};
use crate::holder::TlsCounters;
use crate::records::{self, Fatal, Opened, RecordLayer, Secret, Suite};

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

    /// The ciphertext not yet taken.
    fn unread(&self) -> &[u8] {
        &self.incoming[self.in_pos..self.in_end]
    }

    /// The first `n` bytes of [`Duplex::unread`] are used.
    fn taken(&mut self, n: usize) {
        self.in_pos = (self.in_pos + n).min(self.in_end);
        if self.in_pos == self.in_end {
            self.in_pos = 0;
            self.in_end = 0;
        }
    }

    /// Ciphertext written and not yet taken by the socket.
    fn unsent(&self) -> usize {
        self.outgoing.len() - self.out_pos
    }

    /// The outgoing buffer, to append records to.
    fn outgoing(&mut self) -> &mut Vec<u8> {
        if self.outgoing.capacity() == 0 {
            self.outgoing = crate::buffers::take_empty();
        }
        &mut self.outgoing
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
        if self.unsent() >= CIPHERTEXT_HIGH_WATER_BYTES {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.outgoing().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Stream = SslStream<Duplex>;

/// Each state holds only what is valid in it.
// `Protected` is the largest (440 bytes: its two directions' secrets and IVs, the cached
// session) and the state an established connection spends its life in; the server boxes
// the whole session, so boxing it again would add an allocation and 160 bytes to every
// such connection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum State {
    /// Waiting for the client's handshake messages.
    /// `ctx` is the context it was accepted on, for the hand-over (`CachedSession`).
    Handshaking {
        stream: Stream,
        ctx: Weak<SslContext>,
    },
    /// Application data flows. `staged` is the batch writer's `ssl_wbuf_size` buffer; it is
    /// non-empty only while a write waits for the socket.
    Established {
        stream: Stream,
        peer: Option<PeerIdentity>,
        staged: Vec<u8>,
    },
    /// Our close_notify is sent; waiting for the peer's.
    ShuttingDown { stream: Stream },
    /// A connection after its handshake, without OpenSSL's connection object: the
    /// keys and sequence numbers are in `layer`, what the handshake established in `facts`.
    /// Covers both `Established` and `ShuttingDown` (`closing`).
    Protected(Protected),
    /// Over. Only ciphertext still to be written remains (an alert, a close_notify).
    Closed { leftover: Duplex },
}

/// The state of [`State::Protected`].
#[derive(Debug)]
struct Protected {
    duplex: Duplex,
    layer: RecordLayer,
    facts: Facts,
    /// The peer's close_notify came: nothing after it is read.
    peer_closed: bool,
    /// Our close_notify is sent: what still comes is read and dropped.
    closing: bool,
    /// The session, where the context's server cache holds it (`ssl_session_cache`).
    cached: Option<CachedSession>,
}

/// A session in a context's server-side cache, kept past the hand-over so that a fatal
/// error can still remove it, as OpenSSL removes a failed connection's session
/// (RFC 5246 7.2.2: a connection ended by a fatal alert must not be resumed). The context
/// is held weakly: a connection must not keep a context that a certificate refresh
/// replaced (its keys, its whole session cache) alive; once it is gone there is no cache to
/// remove the session from.
struct CachedSession {
    ctx: Weak<SslContext>,
    session: SslSession,
}

impl std::fmt::Debug for CachedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachedSession")
    }
}

impl CachedSession {
    /// The session of `ssl` (on `ctx`) if the context caches sessions server-side and
    /// this one can be there: a TLS 1.2 session with an id (one resumed from a ticket has
    /// the id the client chose; removing by it is what OpenSSL's own fatal alerts do). TLS
    /// 1.3 sessions are not cached: the server's tickets are always stateless (the context
    /// never sets `SSL_OP_NO_TICKET`, `crate::context`).
    fn of(ssl: &SslRef, ctx: &Weak<SslContext>) -> Option<CachedSession> {
        use foreign_types::ForeignTypeRef;
        if ssl.version2() == Some(SslVersion::TLS1_3) {
            return None;
        }
        let owner = ctx.upgrade()?;
        let ctx = ssl.ssl_context();
        if owner.as_ptr() != ctx.as_ptr() {
            return None;
        }
        // SAFETY: `ctx` is a live SSL_CTX; SSL_CTRL_GET_SESS_CACHE_MODE only reads its mode
        // (the SSL_CTX_get_session_cache_mode macro).
        let mode = unsafe {
            openssl_sys::SSL_CTX_ctrl(
                ctx.as_ptr(),
                SSL_CTRL_GET_SESS_CACHE_MODE,
                0,
                std::ptr::null_mut(),
            )
        };
        let session = ssl.session()?;
        (mode & openssl_sys::SSL_SESS_CACHE_SERVER != 0 && !session.id().is_empty()).then(|| {
            CachedSession {
                ctx: Arc::downgrade(&owner),
                session: session.to_owned(),
            }
        })
    }

    /// Removes the session from the cache, if its context is still in use: its connection
    /// failed.
    fn forget(self) {
        if let Some(ctx) = self.ctx.upgrade() {
            // SAFETY: the session was made on `ctx` (the context of the connection that made
            // it, checked in `of`) and used with no other context, as `remove_session`
            // requires.
            unsafe { ctx.remove_session(&self.session) };
        }
    }
}

/// <openssl/ssl.h>'s SSL_CTRL_GET_SESS_CACHE_MODE, which openssl-sys does not define.
const SSL_CTRL_GET_SESS_CACHE_MODE: std::ffi::c_int = 45;

/// What the handshake established, kept when OpenSSL's connection goes.
#[derive(Debug)]
struct Facts {
    version: &'static str,
    cipher: &'static str,
    peer: Option<PeerIdentity>,
    psk: Option<Box<str>>,
    reused: bool,
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
        ctx: &Arc<SslContext>,
        listener: ListenerTls,
        counters: Arc<TlsCounters>,
        wbuf_bytes: usize,
    ) -> Result<Self, TlsError> {
        let setup = |e: openssl::error::ErrorStack| TlsError::Setup(first_error(&e));
        let mut ssl = Ssl::new(ctx).map_err(setup)?;
        // Freed with OpenSSL's connection at the hand-over (`hand_over`).
        ssl.set_ex_data(secrets_index(), Mutex::new(CapturedSecrets::default()));
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
            state: State::Handshaking {
                stream,
                ctx: Arc::downgrade(ctx),
            },
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
            State::Handshaking { stream, .. }
            | State::Established { stream, .. }
            | State::ShuttingDown { stream } => stream.get_mut().added(n),
            State::Protected(p) => p.duplex.added(n),
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
        if let State::Protected(p) = &mut self.state
            && !p.closing
        {
            return match p.write(slices, wbuf_bytes) {
                Ok(progress) => Ok(progress),
                Err(fatal) => {
                    self.counters.proto_errors.fetch_add(1, Ordering::Relaxed);
                    p.failed();
                    self.close();
                    Err(TlsError::Protocol(fatal.detail))
                }
            };
        }
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
            State::Handshaking { stream, .. } => State::closed_from(stream),
            State::Protected(mut p) if !p.closing => {
                let sent = p
                    .layer
                    .seal_alert(p.duplex.outgoing(), records::CLOSE_NOTIFY);
                if sent.is_ok() && !p.peer_closed {
                    p.closing = true;
                    State::Protected(p)
                } else {
                    State::Closed { leftover: p.duplex }
                }
            }
            other => other,
        };
        match &self.state {
            State::ShuttingDown { .. } => Next::WantRead,
            State::Protected(p) if p.closing => Next::WantRead,
            _ => Next::Closed,
        }
    }

    pub fn is_handshaking(&self) -> bool {
        matches!(self.state, State::Handshaking { .. })
    }

    pub fn is_established(&self) -> bool {
        match &self.state {
            State::Established { .. } => true,
            State::Protected(p) => !p.closing,
            _ => false,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// The verified client certificate's names, once established (None: no certificate).
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        match &self.state {
            State::Established { peer, .. } => peer.as_ref(),
            State::Protected(p) if !p.closing => p.facts.peer.as_ref(),
            _ => None,
        }
    }

    /// The PSK identity the client authenticated with (`ssl_psk_file`), once established.
    pub fn psk_identity(&self) -> Option<String> {
        match &self.state {
            State::Established { stream, .. } => crate::psk::identity(stream.ssl()),
            State::Protected(p) if !p.closing => p.facts.psk.as_deref().map(str::to_owned),
            _ => None,
        }
    }

    /// The negotiated protocol and cipher (`TLSv1.3`, `TLS_AES_256_GCM_SHA384`), once known.
    pub fn negotiated(&self) -> Option<(&'static str, &'static str)> {
        if let State::Protected(p) = &self.state {
            return Some((p.facts.version, p.facts.cipher));
        }
        let ssl = self.ssl()?;
        let cipher = ssl.current_cipher()?;
        Some((ssl.version_str(), cipher.name()))
    }

    /// Whether the handshake resumed a session (a ticket or the session cache).
    pub fn session_reused(&self) -> bool {
        match &self.state {
            State::Protected(p) => p.facts.reused,
            _ => self.ssl().is_some_and(SslRef::session_reused),
        }
    }

    /// Whether rampart's record layer protects the records, OpenSSL's connection object
    /// freed (an AES-GCM or ChaCha20-Poly1305 suite, TLS 1.2 or 1.3, once established).
    pub fn is_handed_over(&self) -> bool {
        matches!(self.state, State::Protected(_))
    }

    /// The OpenSSL connection while OpenSSL still has it (not after the hand-over to the
    /// record layer), for inspection (version, cipher, resumption, peer chain).
    pub fn ssl(&self) -> Option<&SslRef> {
        match &self.state {
            State::Handshaking { stream, .. }
            | State::Established { stream, .. }
            | State::ShuttingDown { stream } => Some(stream.ssl()),
            State::Protected(_) | State::Closed { .. } => None,
        }
    }

    fn close(&mut self) {
        let state = std::mem::replace(&mut self.state, State::placeholder());
        self.state = match state {
            State::Handshaking { stream, .. }
            | State::Established { stream, .. }
            | State::ShuttingDown { stream } => State::closed_from(stream),
            State::Protected(p) => State::Closed { leftover: p.duplex },
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
            State::Protected(p) if p.closing => "shutting down",
            State::Protected(_) => "established",
            State::Closed { .. } => "closed",
        }
    }

    fn duplex(&self) -> &Duplex {
        match self {
            State::Handshaking { stream, .. }
            | State::Established { stream, .. }
            | State::ShuttingDown { stream } => stream.get_ref(),
            State::Protected(p) => &p.duplex,
            State::Closed { leftover } => leftover,
        }
    }

    fn duplex_mut(&mut self) -> &mut Duplex {
        match self {
            State::Handshaking { stream, .. }
            | State::Established { stream, .. }
            | State::ShuttingDown { stream } => stream.get_mut(),
            State::Protected(p) => &mut p.duplex,
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
            State::Handshaking { mut stream, ctx } => {
                let written_before = stream.get_ref().outgoing.len();
                match stream.do_handshake() {
                    Ok(()) => {
                        let established = hand_over(stream, written_before, &ctx);
                        // The client's first requests may have come with its Finished.
                        established.read(out, counters)
                    }
                    Err(e) => match stall(&e) {
                        Some(next) => (
                            State::Handshaking { stream, ctx },
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
                }
            }
            State::Protected(mut p) => {
                let start = out.len();
                let outcome = if p.closing {
                    // Application data after our close_notify is read and dropped.
                    p.read(&mut Vec::new())
                } else {
                    p.read(out)
                };
                let plaintext_bytes = out.len() - start;
                match outcome {
                    Ok(Next::PeerClosed) if p.closing => {
                        (State::Closed { leftover: p.duplex }, Ok(closed()))
                    }
                    Ok(next) => (
                        State::Protected(p),
                        Ok(Progress {
                            plaintext_bytes,
                            next,
                        }),
                    ),
                    // The peer's misbehaviour after we closed changes nothing for it.
                    Err(_) if p.closing => (State::Closed { leftover: p.duplex }, Ok(closed())),
                    Err(fatal) => {
                        counters.proto_errors.fetch_add(1, Ordering::Relaxed);
                        p.failed();
                        if let Some(alert) = fatal.alert {
                            // Best effort: the connection ends either way.
                            let _ = p.layer.seal_alert(p.duplex.outgoing(), alert);
                        }
                        (
                            State::Closed { leftover: p.duplex },
                            Err(TlsError::Protocol(fatal.detail)),
                        )
                    }
                }
            }
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

impl Protected {
    /// The connection failed (a fatal alert either way): its session must not resume.
    fn failed(&mut self) {
        if let Some(cached) = self.cached.take() {
            cached.forget();
        }
    }

    /// Opens every complete record of the unread ciphertext into `out`; `WantRead` once only
    /// an incomplete record (or nothing) is left.
    fn read(&mut self, out: &mut Vec<u8>) -> Result<Next, Fatal> {
        while !self.peer_closed {
            match self.layer.open(self.duplex.unread(), out)? {
                None => return Ok(Next::WantRead),
                Some((taken, opened)) => {
                    self.duplex.taken(taken);
                    self.peer_closed = opened == Opened::PeerClosed;
                }
            }
        }
        Ok(Next::PeerClosed)
    }

    /// The batch writer: the slices go out as records of at most `wbuf_bytes` (and 16 KiB)
    /// each, encrypted straight from the slices into the outgoing ciphertext (memcached's
    /// `ssl_sendmsg` packs them into `ssl_wbuf_size` buffers for one `SSL_write` each: the
    /// records are the same, without the copy).
    fn write<S: std::ops::Deref<Target = [u8]>>(
        &mut self,
        slices: &[S],
        wbuf_bytes: usize,
    ) -> Result<WriteProgress, Fatal> {
        let record_bytes = wbuf_bytes.clamp(1, records::MAX_PLAINTEXT);
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let mut accepted = 0;
        let (mut slice, mut offset) = (0, 0);
        while accepted < total || self.layer.update_due() {
            if self.duplex.unsent() >= CIPHERTEXT_HIGH_WATER_BYTES {
                return Ok(WriteProgress {
                    accepted,
                    blocked: Some(Next::WantWrite),
                });
            }
            let len = (total - accepted).min(record_bytes);
            if len == 0 {
                // Only the KeyUpdate that is due, without a record after it.
                self.layer.seal_update(self.duplex.outgoing())?;
                break;
            }
            let mut record = self
                .layer
                .seal(self.duplex.outgoing(), len, records::DATA)?;
            let mut left = len;
            while left > 0 {
                let piece = &slices[slice][offset..];
                let n = piece.len().min(left);
                record.push(&piece[..n])?;
                left -= n;
                offset += n;
                if offset == slices[slice].len() {
                    slice += 1;
                    offset = 0;
                }
            }
            record.finish()?;
            accepted += len;
        }
        Ok(WriteProgress {
            accepted,
            blocked: None,
        })
    }
}

/// Where the key log callback leaves a handshake's application traffic secrets.
#[derive(Debug, Default)]
pub(crate) struct CapturedSecrets {
    client: Option<Secret>,
    server: Option<Secret>,
}

fn secrets_index() -> Index<Ssl, Mutex<CapturedSecrets>> {
    static INDEX: OnceLock<Index<Ssl, Mutex<CapturedSecrets>>> = OnceLock::new();
    *INDEX.get_or_init(|| {
        // An ex-data index only fails to be made when OpenSSL cannot allocate one at all.
        #[allow(clippy::expect_used)]
        Ssl::new_ex_index().expect("an OpenSSL ex-data index for the traffic secrets")
    })
}

/// The context's key log callback (`SSL_CTX_set_keylog_callback`): OpenSSL gives each
/// secret it derives as `LABEL <client random> <secret>` in hex. The two first application
/// traffic secrets of a TLS 1.3 handshake are kept for the hand-over; nothing is logged.
pub(crate) fn capture_secret(ssl: &SslRef, line: &str) {
    let mut words = line.split(' ');
    let (Some(label), Some(_random), Some(hex), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return;
    };
    let server = match label {
        "SERVER_TRAFFIC_SECRET_0" => true,
        "CLIENT_TRAFFIC_SECRET_0" => false,
        _ => return,
    };
    let Some(secret) = decode_secret(hex) else {
        return;
    };
    let Some(Ok(mut captured)) = ssl.ex_data(secrets_index()).map(Mutex::lock) else {
        return;
    };
    if server {
        captured.server = Some(secret);
    } else {
        captured.client = Some(secret);
    }
}

fn decode_secret(hex: &str) -> Option<Secret> {
    let hex = hex.as_bytes();
    if !hex.len().is_multiple_of(2) || hex.len() > 96 {
        return None;
    }
    let mut bytes = [0u8; 48];
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    for (i, pair) in hex.chunks(2).enumerate() {
        bytes[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    let secret = Secret::new(&bytes[..hex.len() / 2]);
    records::wipe(&mut bytes);
    secret
}

/// The state after a finished handshake: [`State::Protected`] where the record layer can
/// take over, OpenSSL's connection freed; `Established` (OpenSSL keeps the records) for
/// the CBC and CCM suites, for TLS 1.1 and older, and if anything the hand-over needs is
/// missing.
/// `written_before` is where the outgoing ciphertext ended before the call that finished
/// the handshake.
fn hand_over(mut stream: Stream, written_before: usize, ctx: &Weak<SslContext>) -> State {
    let peer = peer_identity(stream.ssl());
    let Some(layer) = record_layer(&stream, written_before) else {
        // OpenSSL keeps the records; the TLS 1.3 secrets captured for the hand-over go.
        if let Some(Ok(mut captured)) = stream.ssl().ex_data(secrets_index()).map(Mutex::lock) {
            *captured = CapturedSecrets::default();
        }
        return State::Established {
            stream,
            peer,
            staged: Vec::new(),
        };
    };
    let ssl = stream.ssl();
    let facts = Facts {
        version: ssl.version_str(),
        cipher: ssl.current_cipher().map_or("", |c| c.name()),
        peer,
        psk: crate::psk::identity(ssl).map(String::into_boxed_str),
        reused: ssl.session_reused(),
    };
    let cached = CachedSession::of(ssl, ctx);
    let duplex = std::mem::take(stream.get_mut());
    // The connection goes on without OpenSSL, so for OpenSSL it ended cleanly: SSL_free
    // takes a connection without a shutdown for a failed one and removes its session from
    // the cache (ssl_clear_bad_session), which would break `ssl_session_cache` resumption.
    stream.set_shutdown(ShutdownState::SENT | ShutdownState::RECEIVED);
    // `stream` (OpenSSL's SSL, its BIO and their state) is freed here.
    drop(stream);
    State::Protected(Protected {
        duplex,
        layer,
        facts,
        peer_closed: false,
        closing: false,
        cached,
    })
}

/// The record layer for a finished handshake, at OpenSSL's sequence numbers.
///
/// TLS 1.2 (AEAD suites only): the keys come from the session's master secret and the
/// hellos' randoms; each side has sent one protected record, its Finished, whichever side
/// finished first (a full handshake or a resumed one), and OpenSSL has opened no more than
/// the client's (no read-ahead; checked: it holds no input), so both numbers are 1.
///
/// TLS 1.3, the client's records: OpenSSL reads one record at a time (no read-ahead), so it has
/// opened none with the client's application key when the handshake ends on the client's
/// Finished, and what came after that is still unread in the duplex (checked: OpenSSL holds
/// no input). Ours: in the call that finished the handshake OpenSSL wrote only what follows
/// our Finished, under our application key: its NewSessionTicket records, counted here (the
/// earlier flights were written by earlier calls, since the client's Finished answers them).
fn record_layer(stream: &Stream, written_before: usize) -> Option<RecordLayer> {
    let ssl = stream.ssl();
    if has_pending(ssl) {
        return None;
    }
    if ssl.version2() == Some(SslVersion::TLS1_2) {
        return tls12_record_layer(ssl);
    }
    if ssl.version2() != Some(SslVersion::TLS1_3) {
        return None;
    }
    let suite = Suite::from_name(ssl.current_cipher()?.name())?;
    let write_seq = application_records(stream.get_ref().outgoing.get(written_before..)?)?;
    let captured = ssl.ex_data(secrets_index())?.lock().ok()?;
    let (client, server) = (captured.client.clone()?, captured.server.clone()?);
    drop(captured);
    RecordLayer::new(suite, client, 0, server, write_seq).ok()
}

fn tls12_record_layer(ssl: &SslRef) -> Option<RecordLayer> {
    let cipher = ssl.current_cipher()?;
    let suite = Suite::from_parts(cipher.cipher_nid()?, cipher.handshake_digest()?.type_())?;
    let mut master = [0u8; 48];
    let mut randoms = [[0u8; 32]; 2];
    let lengths = (
        ssl.session()?.master_key(&mut master),
        ssl.client_random(&mut randoms[0]),
        ssl.server_random(&mut randoms[1]),
    );
    let layer = (lengths == (48, 32, 32))
        .then(|| RecordLayer::new_tls12(suite, &master, &randoms[0], &randoms[1], (1, 1), true))
        .and_then(Result::ok);
    records::wipe(&mut master);
    layer
}

/// How many whole records `ciphertext` is, if it is only whole protected records.
fn application_records(ciphertext: &[u8]) -> Option<u64> {
    let mut rest = ciphertext;
    let mut count = 0;
    while let Some(header) = rest.first_chunk::<{ records::HEADER }>() {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[0] != records::DATA || rest.len() < records::HEADER + len {
            return None;
        }
        rest = &rest[records::HEADER + len..];
        count += 1;
    }
    rest.is_empty().then_some(count)
}
