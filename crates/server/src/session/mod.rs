//! One connection's protocol state and request execution, without any I/O.
//!
//! The connection driver hands a [`Session`] the bytes it has read; the session parses as many
//! complete requests as there are (text and meta lines, or binary packets once the first byte
//! has chosen the binary protocol), authorizes each, and runs it on the owning shard. A request
//! whose keys this core owns runs inline, synchronously, and its reply goes straight into the
//! connection's output buffer: with one shard that is every request, and being socket-free
//! and synchronous this is what the allocation test drives directly.
//!
//! A request for another core's keys is queued in that core's batch instead ([`plan`]), and
//! its reply's place in the output is remembered; the driver then calls
//! [`Session::exchange`], which sends each batch as one message, waits for the outcomes and
//! stitches their replies into place, so the client sees replies in request order. A request
//! that needs every shard (`flush_all`, `stats`, `cache_memlimit`) stops the synchronous pass
//! ([`Stop::WholeCache`]); the driver exchanges what is queued, then runs it with
//! [`Session::whole_cache`].
//!
//! The output is bounded: once it holds [`OUT_HIGH_WATER_BYTES`] the pass stops
//! ([`Stop::OutputFull`]) until the driver has written it, part-way through a multi-get if
//! need be, and the exchange hands back remote replies in pieces of the same size
//! ([`Exchanged::More`]). A request whose data the read budget cannot hold is refused
//! ([`Session::refuse_unbuffered`], in `refuse.rs`).

mod acl;
mod binary;
mod binary_reply;
mod classic;
mod form;
mod gate;
mod keyed;
mod meta;
mod meta_reply;
mod plan;
mod refuse;
mod whole;

use rampart_proto::Parsed as AnyParsed;
use rampart_proto::Request;
use rampart_proto::text::{self, Frame, Parsed, TextError, reply};

use rampart_auth::policy::{Denial, Rights};

use crate::audit::{ConnContext, Event};
use crate::authz::{self, CachedGrants, Identity};
use crate::config::ProtocolChoice;
use crate::mesh::Gone;
use crate::worker::Worker;

pub(crate) use self::gate::Gate;
pub use self::plan::Exchanged;
use self::plan::Plan;
use self::refuse::Unbuffered;
use self::whole::Whole;
use crate::call::Refusal;
use crate::output::Output;

const ACCESS_DENIED: &[u8] = b"CLIENT_ERROR access denied";

/// The first byte of every binary-protocol request.
const BINARY_REQUEST_MAGIC: u8 = 0x80;

/// The encoding a connection speaks once negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// Text lines: the classic commands and the meta commands.
    Text,
    /// 24-byte-header binary packets.
    Binary,
}

/// What the parser is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// `-B auto`: the first byte decides the protocol for the life of the connection, as in
    /// memcached.
    Negotiating,
    /// The start of a request in this encoding.
    Reading(Wire),
    /// Part-way through the text multi-get at the front of the input: its first `keys_done`
    /// keys are answered, and the output reached its high-water mark before the rest.
    ResumingGet { keys_done: usize },
    /// Discarding the rest of a refused data block, then reading `then` again.
    Swallowing { remaining: usize, then: Wire },
}

/// Whether the connection goes on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// A multi-get stopped at the output's high-water mark with `keys_done` keys answered:
    /// the request is not consumed, and resumes after the output is written.
    Paused {
        keys_done: usize,
    },
    /// Write what is in the output buffer, then close (`quit`, a line too long).
    Close,
    /// `watch`: write the output, then only the events of these streams.
    Watch(u8),
    /// The request needs every shard (or is a dump): not consumed, it runs in
    /// [`Session::whole_cache`].
    WholeCache,
}

/// Why [`Session::process`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every complete request in the input has been handled; read more.
    NeedInput,
    /// `max_requests` handled; more may be waiting in the input.
    Budget,
    /// The next request needs every shard: exchange what is queued, then run it with
    /// [`Session::whole_cache`]. It is not consumed.
    WholeCache,
    /// Write what is in the output buffer (after exchanging what is queued), then close
    /// (`quit`, a line too long).
    Close,
    /// `watch`: write the output (its `OK`), then the connection only receives the events of
    /// these streams ([`crate::watch`]).
    Watch(u8),
    /// The output reached its high-water mark: exchange what is queued, write the output,
    /// then call [`Session::process`] again, which goes on where this stopped (part-way
    /// through a multi-get, if need be).
    OutputFull,
}

/// The result of [`Session::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input that were used up; the rest must be offered again with more data.
    pub consumed: usize,
    /// Requests handled.
    pub requests: usize,
    pub stop: Stop,
}

/// Replies pending for one connection stop its requests at this many bytes until the socket
/// takes them. A single value may carry the output past it (by at most `-I`), and so may
/// one remote reply per core during an exchange; nothing else does.
pub const OUT_HIGH_WATER_BYTES: usize = 256 * 1024;

/// Per-connection protocol state.
#[derive(Debug)]
pub struct Session {
    identity: Identity,
    /// With an access policy: the identity's grants, looked up once per identity and reload.
    grants: Option<Box<CachedGrants>>,
    /// Without a policy: whether admin commands are accepted (a client on this machine, or
    /// `-o remote_admin`).
    admin_allowed: bool,
    /// With `-o audit_log`: where this connection's events go, and its addresses.
    audit: Option<Box<ConnContext>>,
    /// Whether the connection must authenticate first (`-Y`, `-S`).
    gate: Gate,
    /// `-Y`, `-S`: failures, a SCRAM exchange in progress, what the connection authenticated
    /// against.
    auth: Option<Box<gate::AuthState>>,
    state: ReadState,
    /// Requests for other cores' keys, waiting for [`Session::exchange`].
    plan: Plan,
    /// [`OUT_HIGH_WATER_BYTES`], or a test's smaller mark.
    high_water: usize,
    /// A key dump answered part-way (`stats cachedump`, `lru_crawler metadump`).
    dump: Option<Box<whole::DumpCursor>>,
}

/// Whether a text request must wait for [`Session::whole_cache`]: with several shards, every
/// whole-cache request; with one, only a dump, which is answered a piece at a time.
#[inline]
fn needs_whole_cache(request: &Request<'_>, worker: &Worker) -> bool {
    let sharded = worker.router().shard_count() > 1;
    (sharded || matches!(request, Request::Stats(_) | Request::Admin(_)))
        && Whole::of(request, worker).is_some_and(|whole| sharded || whole.is_dump())
}

impl Session {
    pub fn new(identity: Identity, protocol: ProtocolChoice) -> Self {
        let state = match protocol {
            ProtocolChoice::Auto => ReadState::Negotiating,
            ProtocolChoice::Ascii => ReadState::Reading(Wire::Text),
            ProtocolChoice::Binary => ReadState::Reading(Wire::Binary),
        };
        Session {
            identity,
            grants: None,
            // Fail closed: the connection driver says whether the peer is local.
            admin_allowed: false,
            audit: None,
            gate: Gate::Open,
            auth: None,
            state,
            plan: Plan::default(),
            high_water: OUT_HIGH_WATER_BYTES,
            dump: None,
        }
    }

    /// Whether admin commands are accepted without a policy (see [`authz::default_check`]).
    pub fn with_admin_allowed(mut self, allowed: bool) -> Self {
        self.admin_allowed = allowed;
        self
    }

    /// The same session recording audit events through `context`.
    pub fn with_audit(mut self, context: Option<ConnContext>) -> Self {
        self.audit = context.map(Box::new);
        self
    }

    /// Whether `request` may run: the policy's decision for this connection's identity, or
    /// the default without one. A refusal is counted and audited; so is an admin command.
    #[inline]
    pub(super) fn authorize(
        &mut self,
        request: &Request<'_>,
        worker: &Worker,
    ) -> Result<(), Denial> {
        let decision = match worker.access() {
            Some(access) => {
                authz::check_request(access.grants(&mut self.grants, &self.identity), request)
            }
            None => authz::default_check(request, self.admin_allowed),
        };
        if decision.is_err() || self.audit.is_some() {
            self.after_decision(request, decision, worker);
        }
        decision
    }

    /// Counts a refusal, and audits it or an admin command.
    #[cold]
    fn after_decision(
        &mut self,
        request: &Request<'_>,
        decision: Result<(), Denial>,
        worker: &Worker,
    ) {
        if let Err(denial) = decision {
            worker.process_state().access_counters.count(denial);
        }
        if self.audit.is_some() {
            self.audit_decision(
                request.command_name(),
                authz::need(request),
                decision,
                worker,
            );
        }
    }

    #[cold]
    fn audit_decision(
        &mut self,
        command: &'static str,
        need: authz::Need<'_, '_>,
        decision: Result<(), Denial>,
        worker: &Worker,
    ) {
        let event = match decision {
            Err(denial) => {
                let grants = worker
                    .access()
                    .map(|access| access.grants(&mut self.grants, &self.identity).grants());
                let mut event = Event::new("acl.denied", "denied")
                    .command(command)
                    .reason(denial.as_str());
                if let Some(key) = authz::refused_key(grants, need) {
                    event = event.key(&key);
                }
                event
            }
            // A flush refused by -F or a shutdown without -A is no command run.
            Ok(())
                if matches!(need, authz::Need::Keyless(rights)
                if (rights == Rights::FLUSH_ALL && !worker.config().flush_enabled)
                    || (rights == Rights::SHUTDOWN && !worker.config().shutdown_enabled)) =>
            {
                return;
            }
            Ok(()) if authz::is_admin(&need) => {
                Event::new("admin.command", "allowed").command(command)
            }
            Ok(()) => return,
        };
        self.emit(event.identity(&self.identity));
    }

    /// Sends an audit event with this connection's context (nothing without a trail).
    pub(super) fn emit(&self, event: Event) {
        if let Some(audit) = &self.audit {
            let protocol = match self.state {
                ReadState::Reading(Wire::Binary)
                | ReadState::Swallowing {
                    then: Wire::Binary, ..
                } => "binary",
                ReadState::Negotiating => "unknown",
                _ => "text",
            };
            audit.emit(event, Some(protocol));
        }
    }

    /// The connection is closing: `conn.close`, with `-o audit_connections`.
    pub fn audit_closed(&self) {
        if self.audit.as_ref().is_some_and(|audit| audit.connections) {
            self.emit(Event::new("conn.close", "ok").identity(&self.identity));
        }
    }

    /// Whether authentication successes are audited.
    pub(super) fn audits_auth_success(&self) -> bool {
        self.audit.as_ref().is_some_and(|audit| audit.auth_success)
    }

    /// Whether a refused store may drop the old value of `key` (memcached drops it): that
    /// needs `set` on the key. Without a policy it always may.
    pub(super) fn may_unlink(&mut self, key: &[u8], worker: &Worker) -> Result<(), Denial> {
        let Some(access) = worker.access() else {
            return Ok(());
        };
        let grants = access.grants(&mut self.grants, &self.identity).grants();
        let decision = authz::check(grants, authz::Need::Key(Rights::SET, key));
        if let Err(denial) = decision {
            worker.process_state().access_counters.count(denial);
            let event = Event::new("acl.denied", "denied")
                .command("set")
                .key(key)
                .reason(format!(
                    "{}: a too-large store would drop the old value",
                    denial.as_str()
                ))
                .identity(&self.identity);
            self.emit(event);
        }
        decision
    }

    /// The connection's identity changed (it authenticated, or must again).
    pub(super) fn set_identity(&mut self, identity: Identity) {
        self.identity = identity;
        self.grants = None;
    }

    /// The same session with another output high-water mark (tests of the resumable path).
    pub fn with_high_water(mut self, bytes: usize) -> Self {
        self.high_water = bytes.max(1);
        self
    }

    /// The output's high-water mark: the driver writes the output once it holds this much.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// Handles up to `max_requests` complete requests from the front of `input`.
    pub fn process(
        &mut self,
        input: &[u8],
        worker: &Worker,
        now: u64,
        max_requests: usize,
        out: &mut Output,
    ) -> Progress {
        let mut consumed = 0;
        let mut requests = 0;
        let limits = worker.limits();
        let sharded = worker.router().shard_count() > 1;
        self.plan.watched = worker.process_state().watchers.wants_keyed();
        if self.auth.is_some()
            && let Some(auth) = worker.auth()
        {
            self.recheck(auth);
        }
        let progress = |consumed, requests, stop| Progress {
            consumed,
            requests,
            stop,
        };
        loop {
            if out.pending() >= self.high_water {
                return progress(consumed, requests, Stop::OutputFull);
            }
            if requests >= max_requests {
                return progress(consumed, requests, Stop::Budget);
            }
            let rest = &input[consumed..];
            let mut keys_done = 0;
            let wire = match self.state {
                ReadState::Swallowing { remaining, then } => {
                    let skipped = remaining.min(rest.len());
                    consumed += skipped;
                    self.state = match remaining - skipped {
                        0 => ReadState::Reading(then),
                        remaining => ReadState::Swallowing { remaining, then },
                    };
                    if remaining > skipped {
                        return progress(consumed, requests, Stop::NeedInput);
                    }
                    continue;
                }
                _ if rest.is_empty() => return progress(consumed, requests, Stop::NeedInput),
                _ if self.gate != Gate::Open => {
                    let Some(auth) = worker.auth() else {
                        // Cannot happen: only a configured authenticator locks a session.
                        self.gate = Gate::Open;
                        continue;
                    };
                    match self.gate_step(rest, auth, out) {
                        gate::Step::Consumed(n) => {
                            consumed += n;
                            requests += 1;
                            continue;
                        }
                        gate::Step::NeedInput => {
                            return progress(consumed, requests, Stop::NeedInput);
                        }
                        gate::Step::Close(n) => {
                            return progress(consumed + n, requests + 1, Stop::Close);
                        }
                    }
                }
                ReadState::Negotiating => self.negotiate(rest[0], true),
                ReadState::Reading(wire) => wire,
                ReadState::ResumingGet { keys_done: done } => {
                    keys_done = done;
                    self.state = ReadState::Reading(Wire::Text);
                    Wire::Text
                }
            };
            let (n, flow) = match wire {
                Wire::Text => match text::parse(rest, &limits) {
                    Parsed::Incomplete => return progress(consumed, requests, Stop::NeedInput),
                    Parsed::Close => return progress(consumed, requests, Stop::Close),
                    Parsed::Complete { consumed: n, frame } => {
                        (n, self.execute_frame(frame, keys_done, worker, now, out))
                    }
                },
                Wire::Binary => match rampart_proto::binary::parse(rest, &limits) {
                    AnyParsed::Incomplete => {
                        return progress(consumed, requests, Stop::NeedInput);
                    }
                    AnyParsed::Close => return progress(consumed, requests, Stop::Close),
                    AnyParsed::Complete { consumed: n, frame } => {
                        if sharded && binary::needs_every_shard(&frame, worker) {
                            return progress(consumed, requests, Stop::WholeCache);
                        }
                        (n, binary::execute_frame(self, frame, worker, now, out))
                    }
                },
            };
            match flow {
                Flow::Continue => {}
                Flow::Close => return progress(consumed + n, requests + 1, Stop::Close),
                Flow::Watch(streams) => {
                    return progress(consumed + n, requests + 1, Stop::Watch(streams));
                }
                Flow::WholeCache => return progress(consumed, requests, Stop::WholeCache),
                Flow::Paused { keys_done } => {
                    self.state = ReadState::ResumingGet { keys_done };
                    return progress(consumed, requests, Stop::OutputFull);
                }
            }
            consumed += n;
            requests += 1;
        }
    }

    /// Whether requests are queued for other cores: [`Session::exchange`] must run before the
    /// output is written.
    pub fn is_waiting(&self) -> bool {
        self.plan.is_waiting()
    }

    /// Bytes of keys and data queued for other cores.
    pub fn queued_bytes(&self) -> usize {
        self.plan.queued_bytes()
    }

    /// Sends every queued request to its core (one batch per core), waits for the outcomes
    /// and writes the replies in request order into `out`, up to the high-water mark. On
    /// [`Exchanged::More`] the caller writes `out`, empties it and calls again. On `Err` a
    /// peer has stopped (the very end of a shutdown) and `out` is incomplete: the connection
    /// must close without writing it.
    pub async fn exchange(&mut self, worker: &Worker, out: &mut Output) -> Result<Exchanged, Gone> {
        self.plan
            .exchange(worker.router(), out, self.high_water)
            .await
    }

    /// Runs the request at the front of `input`, which needs every shard (after
    /// [`Stop::WholeCache`], and after [`Session::exchange`]), waiting for the other cores.
    pub async fn whole_cache(
        &mut self,
        input: &[u8],
        worker: &Worker,
        now: u64,
        out: &mut Output,
    ) -> Result<Progress, Gone> {
        let limits = worker.limits();
        if let Some(auth) = worker.auth() {
            // A reload may have come while the queued requests were exchanged.
            self.recheck(auth);
            if self.is_locked() {
                return Ok(self.process(input, worker, now, 1, out));
            }
        }
        if self.state == ReadState::Reading(Wire::Binary) {
            if let AnyParsed::Complete { consumed, frame } =
                rampart_proto::binary::parse(input, &limits)
                && binary::whole_cache(self, frame, worker, now, out).await?
            {
                return Ok(Progress {
                    consumed,
                    requests: 1,
                    stop: Stop::Budget,
                });
            }
            return Ok(self.process(input, worker, now, 1, out));
        }
        if let Parsed::Complete {
            consumed,
            frame: Frame::Request(request),
        } = text::parse(input, &limits)
            && let Some(whole) = Whole::of(&request, worker)
        {
            // A dump in progress was allowed before its first piece.
            let resumed = self.dump.take();
            if resumed.is_none() && self.authorize(&request, worker).is_err() {
                if !request.noreply() {
                    reply::line(out.bytes(), ACCESS_DENIED);
                }
            } else if whole.is_dump() {
                let cursor = resumed.map(|c| *c).unwrap_or_default();
                // With a policy, a dump shows only the keys the identity may read.
                let grants = match worker.access() {
                    Some(access) => Some(access.grants(&mut self.grants, &self.identity).grants()),
                    None => None,
                };
                let shown = |key: &[u8]| {
                    grants
                        .is_none_or(|g| g.check_key(key, rampart_auth::policy::Rights::GET).is_ok())
                };
                if let Some(next) = whole
                    .dump_piece(cursor, worker, now, shown, out.bytes())
                    .await?
                {
                    // Not consumed: the driver writes this piece and calls again.
                    self.dump = Some(Box::new(next));
                    return Ok(Progress {
                        consumed: 0,
                        requests: 1,
                        stop: Stop::WholeCache,
                    });
                }
            } else {
                whole.run(worker, now, out.bytes()).await?;
            }
            return Ok(Progress {
                consumed,
                requests: 1,
                stop: Stop::Budget,
            });
        }
        // Not a whole-cache request after all: the ordinary way.
        Ok(self.process(input, worker, now, 1, out))
    }

    /// Runs one text frame; `keys_done` keys of a resumed multi-get are already answered.
    /// Inlined: called with the frame by value, it would be copied (136 bytes, a `memcpy` per
    /// request).
    #[inline(always)]
    fn execute_frame(
        &mut self,
        frame: Frame<'_>,
        keys_done: usize,
        worker: &Worker,
        now: u64,
        out: &mut Output,
    ) -> Flow {
        match frame {
            Frame::Meta(rampart_proto::meta::Frame::Reject { error, swallow }) => {
                // `q` never hides an error.
                reply::line(out.bytes(), error.line());
                self.swallow(swallow, Wire::Text);
                Flow::Continue
            }
            Frame::Meta(rampart_proto::meta::Frame::TooLarge { key, swallow }) => {
                let store = Unbuffered::Meta { key };
                self.refuse_store(store, Refusal::TooLarge, swallow, worker, now, out);
                Flow::Continue
            }
            Frame::Meta(rampart_proto::meta::Frame::Request(request)) | Frame::Request(request) => {
                if needs_whole_cache(&request, worker) {
                    return Flow::WholeCache;
                }
                // A resumed multi-get was allowed whole before its first key was answered.
                if keys_done == 0 && self.authorize(&request, worker).is_err() {
                    if !request.noreply() {
                        reply::line(out.bytes(), ACCESS_DENIED);
                    }
                    return Flow::Continue;
                }
                let high_water = self.high_water;
                classic::execute(
                    &mut self.plan,
                    request,
                    (keys_done, high_water),
                    worker,
                    now,
                    out,
                )
            }
            Frame::Reject { error, noreply } => {
                if !noreply {
                    reply::line(out.bytes(), error.line());
                }
                if error == TextError::FlushDisabled {
                    // memcached counts refused flushes too (once, here).
                    worker
                        .router()
                        .invoke_local(|store| store.stats_mut().cmd_flush += 1);
                }
                Flow::Continue
            }
            Frame::TooLarge {
                key,
                unlink,
                swallow,
                noreply,
            } => {
                let store = Unbuffered::Text {
                    key,
                    unlink,
                    noreply,
                };
                self.refuse_store(store, Refusal::TooLarge, swallow, worker, now, out);
                Flow::Continue
            }
        }
    }

    /// `-B auto`: the first byte chooses the protocol for the life of the connection (binary
    /// only where `binary_allowed`).
    fn negotiate(&mut self, first: u8, binary_allowed: bool) -> Wire {
        let wire = if first == BINARY_REQUEST_MAGIC && binary_allowed {
            Wire::Binary
        } else {
            Wire::Text
        };
        self.state = ReadState::Reading(wire);
        wire
    }

    /// The connection's socket, which the events of its requests name (`watch`).
    pub fn set_fd(&mut self, fd: i32) {
        self.plan.fd = fd;
    }

    /// The authenticated user's name, when there is one.
    pub fn user(&self) -> Option<&str> {
        match &self.identity {
            Identity::User(user) => Some(user.as_str()),
            Identity::Anonymous
            | Identity::Certificate(_)
            | Identity::Psk(_)
            | Identity::Uid(_) => None,
        }
    }

    /// Who the connection is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Discards the next `bytes` of input as they arrive (a refused data block), then goes
    /// on reading `then`.
    fn swallow(&mut self, bytes: usize, then: Wire) {
        if bytes > 0 {
            self.state = ReadState::Swallowing {
                remaining: bytes,
                then,
            };
        }
    }
}
