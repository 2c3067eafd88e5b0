//! The connection driver: reads, lets the [`Session`] work through what arrived, and writes
//! every reply of the batch with one send (one batch of TLS records on a TLS listener).
//!
//! A connection with nothing pending gives its buffers back to the thread's spares
//! ([`rampart_tls::buffers`]) and waits for the socket to become readable without them, so
//! a connection between requests, TLS ones included, costs only its own state.

mod input;
mod tls;

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::authz::Identity;
use crate::config::Security;
use crate::conns::{Listing, TlsDescription, tcp_addr};
use crate::output::Output;
use crate::session::{Exchanged, Session, Stop};
use crate::stats::{WorkerCounters, unix_now};
use crate::worker::Worker;

use self::input::InputBuffer;
use self::tls::{HandshakeFailure, TlsLink};

/// Requests queued for other cores past this many bytes of keys and data are exchanged
/// before more requests run.
const QUEUED_FLUSH_BYTES: usize = 1024 * 1024;

/// The byte streams a connection can run over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// The socket: what `stats conns` and `watch` name the connection by, and what a shutdown
    /// stops the reads of.
    fn socket(&self) -> Option<RawFd>;

    /// The client's and the listener's addresses, for `stats conns` (TCP only).
    fn addresses(&self) -> Option<(SocketAddr, SocketAddr)>;

    /// A unix socket: only local processes reach it.
    fn is_local(&self) -> bool;

    /// Ready once a read would not wait for the socket (it may still find nothing, and then
    /// arms the wait itself); waits without holding a buffer.
    fn poll_readable(&mut self, cx: &mut std::task::Context<'_>)
    -> std::task::Poll<io::Result<()>>;

    /// A unix socket peer's user and group ids, as the kernel reports them (`SO_PEERCRED`).
    fn peer_cred(&self) -> Option<PeerCred> {
        None
    }
}

/// Who is on the other end of a unix socket: the credentials the peer had when it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
}

impl Transport for glommio::net::TcpStream {
    fn socket(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }

    fn poll_readable(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        glommio::net::TcpStream::poll_readable(self, cx)
    }

    fn addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        Some((self.peer_addr().ok()?, self.local_addr().ok()?))
    }

    fn is_local(&self) -> bool {
        false
    }
}

impl Transport for glommio::net::UnixStream {
    fn socket(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }

    fn poll_readable(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        glommio::net::UnixStream::poll_readable(self, cx)
    }

    fn addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        None
    }

    fn is_local(&self) -> bool {
        true
    }

    fn peer_cred(&self) -> Option<PeerCred> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: the fd is this stream's open socket; `cred` and `len` are valid for writes
        // of the size passed, and the kernel writes at most `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(PeerCred {
            uid: cred.uid,
            gid: cred.gid,
        })
    }
}

/// How long a read may wait for input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Forever,
    /// `-o idle_timeout`: this long from the start of the read.
    For(Duration),
    /// A fixed deadline (a handshake's).
    Until(Instant),
}

impl Wait {
    fn idle(timeout: Option<Duration>) -> Wait {
        timeout.map_or(Wait::Forever, Wait::For)
    }

    /// The read's deadline; the clock is read only for `For`.
    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Forever => None,
            Wait::For(limit) => Some(Instant::now() + limit),
            Wait::Until(deadline) => Some(deadline),
        }
    }
}

/// Where a read puts its bytes, and what a connection waiting with nothing pending gives
/// back.
pub trait ReadBuffers {
    fn spare(&mut self) -> &mut [u8];
    /// Nothing is pending: no request bytes (nor ciphertext) wait to be used.
    fn is_idle(&self) -> bool;
    fn release(&mut self);
}

impl ReadBuffers for InputBuffer {
    fn spare(&mut self) -> &mut [u8] {
        InputBuffer::spare(self)
    }

    fn is_idle(&self) -> bool {
        self.is_empty()
    }

    fn release(&mut self) {
        InputBuffer::release(self);
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for input")
}

/// `future`'s output, or `None` once `deadline` has passed.
async fn before<T>(deadline: Instant, future: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        None
    })
    .await
}

/// Reads once into `buffers`. A connection with nothing pending waits for the socket to
/// become readable without them: they go back to the thread's spares first
/// ([`ReadBuffers::release`]) and are taken again for the read, so a connection between
/// requests holds no buffer. One with input pending (a request still arriving) waits
/// holding them. Either wait ends at `wait`'s deadline, if it has one.
async fn read_or_release<S: Transport, B: ReadBuffers>(
    stream: &mut S,
    buffers: &mut B,
    wait: Wait,
) -> io::Result<usize> {
    let deadline = wait.deadline();
    loop {
        let idle = buffers.is_idle();
        if idle {
            buffers.release();
            until(
                deadline,
                futures_lite::future::poll_fn(|cx| stream.poll_readable(cx)),
            )
            .await??;
        }
        let read = stream.read(buffers.spare());
        if !idle {
            return until(deadline, read).await?;
        }
        // Readable, or not known not to be: a read that finds nothing arms the readiness
        // wait, and the buffers go back before it is waited for.
        if let Some(result) = futures_lite::future::poll_once(read).await {
            return result;
        }
    }
}

/// `future`'s output, or a timeout error once `deadline` (if any) has passed.
async fn until<T>(deadline: Option<Instant>, future: impl Future<Output = T>) -> io::Result<T> {
    match deadline {
        None => Ok(future.await),
        Some(deadline) => before(deadline, future).await.ok_or_else(timed_out),
    }
}

/// The stream under a connection, plaintext or TLS.
#[derive(Debug)]
enum Link {
    Plain,
    Tls(Box<TlsLink>),
}

impl Link {
    /// Reads the next input into `input`; `Ok(0)` at the end of the stream.
    async fn read<S: Transport>(
        &mut self,
        stream: &mut S,
        input: &mut InputBuffer,
        wait: Wait,
    ) -> io::Result<usize> {
        match self {
            Link::Plain => {
                let n = read_or_release(stream, input, wait).await?;
                input.filled(n);
                Ok(n)
            }
            Link::Tls(tls) => tls.read(stream, input, wait).await,
        }
    }

    /// Gives the read buffers back, if nothing is pending in them, while the connection waits
    /// for something other than its socket (other cores' replies): without it a core whose
    /// connections wait on hops holds one buffer per such connection, more than the thread
    /// keeps ([`rampart_tls::buffers::KEPT`]), and every read beyond allocates and zeroes one.
    fn release_idle(&mut self, input: &mut InputBuffer) {
        match self {
            Link::Plain => input.release(),
            Link::Tls(tls) => tls.release_idle(input),
        }
    }

    /// Writes all of `out`: one plain write when it is contiguous, else a vectored one that
    /// sends the held values from the items themselves.
    async fn write<S: Transport>(&mut self, stream: &mut S, out: &Output) -> io::Result<()> {
        match (self, out.as_contiguous()) {
            (Link::Plain, Some(bytes)) => stream.write_all(bytes).await,
            (Link::Plain, None) => write_all_vectored(stream, &mut out.slices()).await,
            (Link::Tls(tls), Some(bytes)) => tls.write(stream, &mut [IoSlice::new(bytes)]).await,
            (Link::Tls(tls), None) => tls.write(stream, &mut out.slices()).await,
        }
    }

    /// What `stats conns` shows about the link.
    fn describe(&self, identity: &Identity) -> Option<TlsDescription> {
        let Link::Tls(tls) = self else {
            return None;
        };
        let (version, cipher) = tls.negotiated()?;
        let (peer, psk) = match identity {
            Identity::Certificate(peer) => (Some((**peer).clone()), None),
            Identity::Psk(name) => (None, Some(name.to_string())),
            Identity::Anonymous | Identity::User(_) | Identity::Uid(_) => (None, None),
        };
        Some(TlsDescription {
            version,
            cipher,
            peer,
            psk,
        })
    }

    async fn close<S: Transport>(&mut self, stream: &mut S) {
        if let Link::Tls(tls) = self {
            tls.close(stream).await;
        }
        let _ = stream.close().await;
    }
}

/// Sets up a connection's link: nothing for plaintext; for TLS, a session on the current
/// context and a completed handshake. `None` when the connection must simply be dropped.
async fn establish<S: Transport>(
    stream: &mut S,
    worker: &Worker,
    security: Security,
    input: &mut InputBuffer,
) -> Option<(Link, Identity)> {
    let Security::Tls(mode) = security else {
        return Some((Link::Plain, Identity::Anonymous));
    };
    let tls = worker.tls()?;
    let session = match tls.holder.new_session(mode) {
        Ok(session) => session,
        Err(err) => {
            log::warn!("cannot start a TLS session: {err}");
            return None;
        }
    };
    let mut link = TlsLink::new(session);
    let limit = tls.settings.handshake_timeout;
    match link.handshake(stream, input, limit).await {
        Ok(()) => {}
        Err(failure) => {
            let counters = tls.holder.counters();
            match failure {
                // The session counted its own refusals.
                HandshakeFailure::Refused(detail) => log::debug!("TLS handshake refused: {detail}"),
                HandshakeFailure::TimedOut => {
                    counters.handshake_errors.fetch_add(1, Ordering::Relaxed);
                    log::debug!("TLS handshake not finished after {limit:?}: closing");
                }
                HandshakeFailure::Closed => {
                    counters.handshake_errors.fetch_add(1, Ordering::Relaxed);
                    log::debug!("peer left during the TLS handshake");
                }
            }
            Link::Tls(Box::new(link)).close(stream).await;
            return None;
        }
    }
    // A pre-shared key is the stronger proof: it names the client's identity.
    let identity = match (link.psk_identity(), link.peer()) {
        (Some(psk), _) => Identity::Psk(psk.into_boxed_str()),
        (None, Some(peer)) => Identity::Certificate(Box::new(peer.clone())),
        (None, None) => Identity::Anonymous,
    };
    // A `psk:` listener presents no certificate, so only a PSK handshake finishes there; this
    // holds even if OpenSSL ever finished one some other way.
    if mode == rampart_tls::ListenerTls::Psk && !matches!(identity, Identity::Psk(_)) {
        tls.holder
            .counters()
            .handshake_errors
            .fetch_add(1, Ordering::Relaxed);
        log::debug!("a psk: listener's handshake proved no pre-shared key: closing");
        Link::Tls(Box::new(link)).close(stream).await;
        return None;
    }
    Some((Link::Tls(Box::new(link)), identity))
}

/// The connection's session: its identity (a unix socket's client is known by its uid when
/// it presented nothing stronger), whether it may run admin commands without a policy (a
/// client on this machine, or -o remote_admin) and its audit context. Apart from `serve`
/// so that what it computes takes no room in the connection's future.
fn new_session<S: Transport>(
    stream: &S,
    addresses: Option<(SocketAddr, SocketAddr)>,
    worker: &Worker,
    link: &Link,
    identity: Identity,
) -> Session {
    let identity = match (identity, stream.peer_cred()) {
        (Identity::Anonymous, Some(cred)) => Identity::Uid(cred.uid),
        (identity, _) => identity,
    };
    let admin_allowed = worker.process_state().remote_admin
        || stream.is_local()
        || addresses
            .is_some_and(|(peer, _)| peer.ip().is_loopback() || is_mapped_loopback(peer.ip()));
    let audit = worker.audit().map(|audit| {
        let (remote, local) = addresses.unzip();
        let listener = match (link, stream.is_local()) {
            (_, true) => "unix",
            (Link::Tls(_), false) => "tls",
            (Link::Plain, false) => "tcp",
        };
        audit.conn(worker.router().me(), remote, local, listener)
    });
    if let Some(context) = audit.as_ref().filter(|context| context.connections) {
        context.emit(
            crate::audit::Event::new("conn.open", "ok").identity(&identity),
            None,
        );
    }
    Session::new(identity, worker.config().protocol)
        .with_admin_allowed(admin_allowed)
        .with_audit(audit)
}

/// `::ffff:127.0.0.1` and the like: a loopback client on a dual-stack socket.
fn is_mapped_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        std::net::IpAddr::V4(_) => false,
    }
}

/// Serves one client until it leaves, misbehaves beyond resynchronising, or the server stops.
// Not an `async fn`: see the comment on the block.
#[allow(clippy::manual_async_fn)]
pub fn serve<S: Transport>(
    mut stream: S,
    worker: Rc<Worker>,
    security: Security,
) -> impl Future<Output = ()> {
    // A block, not an `async fn`: the function's arguments are then the future's only copy
    // of the stream and the worker (an `async fn` keeps its arguments and the moved-in
    // locals side by side, 128 bytes more in every connection's future).
    async move {
        let fd = stream.socket().unwrap_or(-1);
        let _registration = worker.register_connection(stream.socket());
        let mut input = InputBuffer::new(worker.process_state().read_budget.clone());
        // The handshake's future is large and needed once: boxed, so the connection's own future
        // (what an idle connection keeps) is not the size of it. `whole_cache` likewise.
        let Some((mut link, identity)) =
            Box::pin(establish(&mut stream, &worker, security, &mut input)).await
        else {
            return;
        };
        // Asked for once (getpeername and getsockname): the table, the session and its audit.
        let addresses = stream.addresses();
        let conns = &worker.process_state().conns;
        let listed = match (stream.socket(), addresses, &worker.config().unix_socket) {
            (Some(fd), Some((peer, local)), _) => Some(conns.insert(
                fd,
                Listing {
                    addr: tcp_addr(peer),
                    listen_addr: tcp_addr(local),
                    tls: link.describe(&identity),
                    peer_cred: None,
                },
                unix_now(),
            )),
            // memcached's form for a unix socket's client: the peer has no path of its own.
            (Some(fd), None, Some((path, _))) => Some(conns.insert(
                fd,
                Listing {
                    addr: "unix:".to_owned(),
                    listen_addr: format!("unix:{}", path.display()),
                    tls: None,
                    peer_cred: stream.peer_cred().map(|c| (c.uid, c.gid)),
                },
                unix_now(),
            )),
            _ => None,
        };
        if matches!(link, Link::Tls(_)) {
            input.for_tls();
        }
        // `-o ssl_cert_user`: a verified certificate may name a user. Without a credential store
        // that name is the connection's identity; with one, the store decides below.
        let cert_user = match (&identity, &worker.config().auth.cert_user) {
            (Identity::Certificate(peer), Some(rule)) => rule.user(&rampart_auth::CertNames {
                common_name: peer.common_name.as_deref(),
                dns: &peer.dns_names,
                emails: &peer.emails,
                uris: &peer.uris,
            }),
            _ => None,
        };
        let (identity, cert_user) = match (cert_user, worker.auth()) {
            (Some(user), None) => (Identity::User(Box::new(user)), None),
            (cert_user, _) => (identity, cert_user),
        };
        let mut session = new_session(&stream, addresses, &worker, &link, identity);
        session.set_fd(fd);
        conn_event(&worker, "conn_new", &stream, None, fd);
        let mut close_reason = "normal";
        let mut watching = None;
        // With -Y or -S nothing runs before the client authenticates, within `auth_timeout`.
        // A pre-shared key already authenticated the client; the operator may trust the unix
        // socket's permissions instead.
        let psk = matches!(session.identity(), Identity::Psk(_));
        let exempt =
            |auth: &&crate::auth::Authenticator| auth.exempt_unix_socket && stream.is_local();
        let mut auth_deadline = worker
            .auth()
            .filter(|auth| !psk && !exempt(auth))
            .map(|auth| {
                // PLAIN sends the password as it is: only over TLS, a unix socket, or when allowed.
                let plain_allowed =
                    matches!(link, Link::Tls(_)) || stream.is_local() || auth.plain_cleartext;
                session.lock(plain_allowed);
                Instant::now() + auth.timeout
            });
        // A certificate that names a user of the store authenticates the connection as that
        // user; one whose name the store lacks leaves it to authenticate as any other.
        if let (Some(auth), Some(user)) = (worker.auth(), cert_user)
            && session.is_locked()
            && let Some(done) = auth.certificate_user(user)
        {
            session.open_by_certificate(done);
            auth_deadline = None;
        }
        let mut shown_user: Option<Box<str>> = None;
        // Only -Y, -S and -o ssl_cert_user give a connection a user.
        let has_users = worker.auth().is_some() || worker.config().auth.cert_user.is_some();
        let mut out = Output::new();
        let per_event = worker.config().requests_per_event.max(1);
        let idle_wait = Wait::idle(worker.config().idle_timeout);
        // Requests may have arrived with the handshake's last flight.
        let mut arrived_early = !input.is_empty();
        'reading: loop {
            if !std::mem::take(&mut arrived_early) {
                // An incomplete request that fills the buffer: room for all of it when its
                // length is known (a value still arriving), so the buffer grows once, not by
                // doubling. Looked at only then, so an ordinary read parses nothing twice.
                let tls = matches!(link, Link::Tls(_));
                let need = if input.needs_room(tls) {
                    session.pending_request_bytes(input.data(), &worker)
                } else {
                    None
                };
                if input.prepare_read(need, tls).is_err() {
                    // The request being received needs more buffer than the read budget has.
                    let progress =
                        session.refuse_unbuffered(input.data(), &worker, unix_now(), &mut out);
                    input.clear();
                    if let Err(err) =
                        drain(&mut session, &worker, &mut link, &mut stream, &mut out).await
                    {
                        err.log(fd);
                        break;
                    }
                    if let Err(err) = send(&worker, &mut link, &mut stream, &mut out).await {
                        log::debug!("connection fd {fd}: write failed: {err}");
                        close_reason = "error";
                        break;
                    }
                    if progress.stop == Stop::Close {
                        break;
                    }
                }
                if let Some(listed) = &listed {
                    listed.entry.waiting();
                }
                // The deadline runs from the connection's start, or from when a credential reload
                // made it authenticate again.
                let wait = match worker.auth() {
                    Some(auth) if session.is_locked() => Wait::Until(
                        *auth_deadline.get_or_insert_with(|| Instant::now() + auth.timeout),
                    ),
                    _ => {
                        auth_deadline = None;
                        idle_wait
                    }
                };
                match link.read(&mut stream, &mut input, wait).await {
                    Ok(0) => break,
                    Ok(n) => WorkerCounters::add(&worker.counters().bytes_read, n as u64),
                    Err(err) => {
                        if err.kind() == io::ErrorKind::TimedOut
                            && session.is_locked()
                            && let Some(auth) = worker.auth()
                        {
                            auth.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                            log::debug!("connection fd {fd}: not authenticated in time: closing");
                        } else if err.kind() == io::ErrorKind::TimedOut {
                            let kicks = &worker.process().idle_kicks;
                            kicks.fetch_add(1, Ordering::Relaxed);
                            close_reason = "idle_timeout";
                            log::debug!("connection fd {fd}: idle past idle_timeout: closing");
                        } else {
                            close_reason = "error";
                            log::debug!("connection fd {fd}: read failed: {err}");
                        }
                        break;
                    }
                }
            }
            // One clock reading per turn (memcached itself keeps a clock that ticks once a second).
            let now = unix_now();
            if let Some(listed) = &listed {
                listed.entry.working(now);
            }
            // One turn: everything this read completed. Requests for other cores' keys are
            // queued across the `-R` slices and exchanged once, when the turn ends (or when the
            // output reaches the session's high-water mark or the queue QUEUED_FLUSH_BYTES). A
            // full output is written before any more requests run.
            let stop = loop {
                let mut progress = session.process(input.data(), &worker, now, per_event, &mut out);
                input.consume(progress.consumed);
                if let Stop::Watch(streams) = progress.stop {
                    // Registered before its `OK` goes out, so that every event after the client
                    // has read it reaches it.
                    watching = Some(worker.process_state().watchers.register(streams));
                }
                // `stats conns` shows who authenticated, before the replies that say so go out
                // (looked at only where connections can have users).
                if has_users && shown_user.as_deref() != session.user() {
                    shown_user = session.user().map(Into::into);
                    if let Some(listed) = &listed {
                        listed.entry.set_user(session.user());
                    }
                }
                let budget_spent = progress.requests >= per_event;
                if progress.stop == Stop::WholeCache {
                    // Everything before it has run first, so its view includes them.
                    if let Err(err) =
                        drain(&mut session, &worker, &mut link, &mut stream, &mut out).await
                    {
                        err.log(fd);
                        close_reason = "error";
                        break 'reading;
                    }
                    match Box::pin(session.whole_cache(input.data(), &worker, unix_now(), &mut out))
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
                let more = matches!(
                    progress.stop,
                    Stop::Budget | Stop::WholeCache | Stop::OutputFull
                );
                let flush = !more
                    || out.pending() >= session.high_water()
                    || session.queued_bytes() >= QUEUED_FLUSH_BYTES;
                if flush {
                    if session.is_waiting() {
                        link.release_idle(&mut input);
                    }
                    if let Err(err) =
                        drain(&mut session, &worker, &mut link, &mut stream, &mut out).await
                    {
                        err.log(fd);
                        close_reason = "error";
                        break 'reading;
                    }
                    if !out.is_empty()
                        && let Err(err) = send(&worker, &mut link, &mut stream, &mut out).await
                    {
                        log::debug!("connection fd {fd}: write failed: {err}");
                        close_reason = "error";
                        break 'reading;
                    }
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
            if let Some(registration) = watching.take() {
                watch(
                    &registration,
                    &worker,
                    &mut link,
                    &mut stream,
                    &mut input,
                    &mut out,
                )
                .await;
                // memcached notices a watcher's end only as a failed read or write.
                close_reason = "error";
                break;
            }
        }
        session.audit_closed();
        conn_event(&worker, "conn_close", &stream, Some(close_reason), fd);
        link.close(&mut stream).await;
    }
}

/// memcached's `conn_new` and `conn_close` lines, for watchers of connection events. The
/// peer's address (two syscalls) is asked for only when someone watches.
fn conn_event<S: Transport>(
    worker: &Worker,
    kind: &str,
    stream: &S,
    reason: Option<&str>,
    fd: RawFd,
) {
    use rampart_proto::request::Watch;
    let watchers = &worker.process_state().watchers;
    if !watchers.wants(Watch::CONNEVENTS) {
        return;
    }
    let peer = stream.addresses().map(|(peer, _)| peer);
    watchers.emit(Watch::CONNEVENTS, |line| {
        use std::fmt::Write as _;
        let _ = match peer {
            Some(peer) => write!(
                line,
                "type={kind} rip={} rport={} transport=tcp",
                peer.ip(),
                peer.port()
            ),
            None => write!(line, "type={kind} transport=local"),
        };
        if let Some(reason) = reason {
            let _ = write!(line, " reason={reason}");
        }
        let _ = write!(line, " cfd={fd}");
    });
}

/// `watch`: writes the events `registration` receives, every [`crate::watch::WATCH_POLL`],
/// until the client leaves or the server stops. What the client sends is read and dropped
/// (memcached stops reading a watcher), so it cannot make the server hold input.
async fn watch<S: Transport>(
    registration: &crate::watch::Registration<'_>,
    worker: &Worker,
    link: &mut Link,
    stream: &mut S,
    input: &mut InputBuffer,
    out: &mut Output,
) {
    let mut events = Vec::new();
    while !worker.shutting_down() {
        let deadline = Instant::now() + crate::watch::WATCH_POLL;
        match link.read(stream, input, Wait::Until(deadline)).await {
            Ok(0) => break,
            Ok(_) => input.clear(),
            Err(err) if err.kind() == io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        registration.watcher.drain(&mut events);
        if !events.is_empty() {
            out.bytes().extend_from_slice(&events);
            if send(worker, link, stream, out).await.is_err() {
                break;
            }
        }
    }
}

/// Why a connection stops in the middle of answering.
#[derive(Debug, thiserror::Error)]
enum Broken {
    #[error("write failed: {0}")]
    Write(#[from] io::Error),
    #[error(transparent)]
    Gone(#[from] crate::mesh::Gone),
}

impl Broken {
    fn log(&self, fd: RawFd) {
        match self {
            Broken::Write(err) => log::debug!("connection fd {fd}: write failed: {err}"),
            Broken::Gone(gone) => log::warn!("connection fd {fd}: {gone}; closing"),
        }
    }
}

/// Writes `out` and empties it.
async fn send<S: Transport>(
    worker: &Worker,
    link: &mut Link,
    stream: &mut S,
    out: &mut Output,
) -> io::Result<()> {
    link.write(stream, out).await?;
    WorkerCounters::add(&worker.counters().bytes_written, out.pending() as u64);
    out.clear();
    Ok(())
}

/// Slices one `sendmsg` takes at most (Linux's `IOV_MAX`).
const MAX_SLICES_PER_WRITE: usize = 1024;

/// Writes every byte of `slices`, as few writes as the socket allows.
async fn write_all_vectored<S: Transport>(
    stream: &mut S,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let batch = slices.len().min(MAX_SLICES_PER_WRITE);
        let written = stream.write_vectored(&slices[..batch]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

/// Answers everything queued for other cores. The replies come in pieces bounded by the
/// output's high-water mark, and each full piece is written before the next is asked for,
/// so what a turn asked for never sits in memory whole; what fits is left in `out`.
async fn drain<S: Transport>(
    session: &mut Session,
    worker: &Worker,
    link: &mut Link,
    stream: &mut S,
    out: &mut Output,
) -> Result<(), Broken> {
    while session.is_waiting() {
        if session.exchange(worker, out).await? == Exchanged::Done {
            break;
        }
        send(worker, link, stream, out).await?;
    }
    Ok(())
}

/// Refuses a connection over `-c` the way memcached does.
pub async fn reject_over_limit<S: Transport>(mut stream: S) {
    let _ = stream
        .write_all(b"ERROR Too many open connections\r\n")
        .await;
    let _ = stream.close().await;
}
