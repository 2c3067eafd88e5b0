//! What a connection may do before it authenticates, when `-Y` or `-S` asks for it: memcached's
//! ASCII authentication on text connections and SASL on binary ones, and nothing else.
//!
//! Every listener and every protocol goes through here (TLS or not, TCP or unix socket), so an
//! unauthenticated client never reaches a shard: text and meta commands answer
//! `CLIENT_ERROR unauthenticated`, binary requests other than SASL and `version` answer
//! `Auth failure.` and close the connection (memcached's `-S` behaviour on binary listeners,
//! which rampart applies to all). Unlike memcached, a request before authentication is small
//! or the connection closes ([`PRE_AUTH_FRAME_BYTES`]), and [`MAX_FAILURES`] failed attempts
//! close it.
//!
//! ASCII auth follows memcached 1.6.18 byte for byte: `set <key> <flags> <exptime> <bytes>`
//! (only the command and the length are looked at), then a data block `<user> <password>`;
//! `STORED` on success, else `CLIENT_ERROR authentication failure`, `CLIENT_ERROR bad
//! authentication token format` (fewer than two tokens) or `CLIENT_ERROR bad command line
//! termination` (no `\r\n` after the block).

use rampart_auth::{PlainMessage, ScramHash};
use rampart_proto::Request;
use rampart_proto::Sasl;
use rampart_proto::binary::{Frame, Opcode, Status, reply};
use rampart_proto::text::reply::line;

use crate::auth::{
    Authenticated, Authenticator, MAX_FAILURES, MAX_UNAUTHENTICATED_REQUESTS, PRE_AUTH_FRAME_BYTES,
};
use crate::authz::Identity;
use crate::output::Output;
use crate::stats;

use super::{BINARY_REQUEST_MAGIC, ReadState, Session, Wire};

/// A text line before authentication longer than this, without its newline, closes the
/// connection (memcached's limit).
const PRE_AUTH_LINE_BYTES: usize = 2048;
const BINARY_HEADER_BYTES: usize = 24;

/// Where a connection is in authenticating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Nothing to do: no authentication configured, or done.
    Open,
    /// Not authenticated yet.
    Locked {
        /// ASCII auth: the `set` line has been read and its data block (with `\r\n`) of this
        /// many bytes comes next.
        block: Option<usize>,
        /// Requests answered `CLIENT_ERROR unauthenticated` so far.
        refused: u32,
    },
}

/// A connection's authentication state besides its gate: what lasts across a
/// re-authentication (boxed in the session: most connections never authenticate).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct AuthState {
    /// SASL PLAIN may be used: TLS, a unix socket, or `-o sasl_plain_cleartext`.
    plain_allowed: bool,
    /// Failed attempts (a SCRAM exchange counts from its start); reset by a success.
    failures: u32,
    /// A SCRAM exchange (SHA-256 or SHA-512) between its two steps.
    scram: Option<crate::auth::PendingScram>,
    /// A CRAM-MD5 challenge waiting for its answer.
    cram: Option<crate::auth::PendingCram>,
    /// What the connection authenticated against, to notice a reload that removed its user
    /// or changed the user's secrets.
    verified: Option<Verified>,
    /// Who the connection was when it was locked (a certificate, a unix socket's uid, or
    /// anonymous): what a revoked user falls back to.
    unproven: Option<Identity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    generation: u64,
    fingerprint: [u8; 32],
}

/// What one step before authentication did.
pub(super) enum Step {
    /// `n` bytes of input used up, a reply (if any) written.
    Consumed(usize),
    NeedInput,
    /// `n` bytes used up; write the output, then close.
    Close(usize),
}

const UNAUTHENTICATED: &[u8] = b"CLIENT_ERROR unauthenticated";
const AUTH_FAILURE: &[u8] = b"CLIENT_ERROR authentication failure";
const BAD_TOKEN_FORMAT: &[u8] = b"CLIENT_ERROR bad authentication token format";
const BAD_TERMINATION: &[u8] = b"CLIENT_ERROR bad command line termination";
const TOKEN_TOO_LONG: &[u8] = b"CLIENT_ERROR auth token too long";
const AUTHENTICATED: &[u8] = b"Authenticated";
const CRAM_MD5: &[u8] = b"CRAM-MD5";

/// memcached's `tokenize_command`: tokens separated by spaces, empty ones skipped.
fn tokens(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ').filter(|t| !t.is_empty())
}

/// memcached's `safe_strtoul` for the data length: digits, then nothing or whitespace.
fn length(token: &[u8]) -> Option<usize> {
    let digits = token.strip_suffix(b"\r").unwrap_or(token);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // memcached reads it into 32 bits: a longer number is no length at all.
    let length: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(length as usize)
}

impl Session {
    /// Requires authentication before anything else. `plain_allowed`: SASL PLAIN may be
    /// used on this connection.
    pub fn lock(&mut self, plain_allowed: bool) {
        let state = self.auth.get_or_insert_with(Box::default);
        state.plain_allowed = plain_allowed;
        if state.unproven.is_none() {
            state.unproven = Some(self.identity.clone());
        }
        state.verified = None;
        state.scram = None;
        state.cram = None;
        self.gate = Gate::Locked {
            block: None,
            refused: 0,
        };
    }

    /// Whether the connection has still to authenticate.
    pub fn is_locked(&self) -> bool {
        self.gate != Gate::Open
    }

    /// One request before authentication, from the front of `rest` (not empty).
    pub(super) fn gate_step(
        &mut self,
        rest: &[u8],
        auth: &Authenticator,
        out: &mut Output,
    ) -> Step {
        let wire = match self.state {
            // With ASCII auth only, connections speak text (memcached's -Y does not serve the
            // binary protocol): a binary packet is just a bad line.
            ReadState::Negotiating => self.negotiate(rest[0], auth.sasl),
            ReadState::Reading(wire) => wire,
            // Neither starts before authentication.
            ReadState::ResumingGet { .. } | ReadState::Swallowing { .. } => Wire::Text,
        };
        match wire {
            Wire::Text => self.ascii_step(rest, auth, out),
            Wire::Binary => self.binary_step(rest, auth, out),
        }
    }

    fn ascii_step(&mut self, rest: &[u8], auth: &Authenticator, out: &mut Output) -> Step {
        let Gate::Locked { block, .. } = self.gate else {
            return Step::Consumed(0);
        };
        if let Some(len) = block {
            if rest.len() < len {
                return Step::NeedInput;
            }
            self.set_block(None);
            let data = &rest[..len];
            let Some(payload) = data.strip_suffix(b"\r\n") else {
                line(out.bytes(), BAD_TERMINATION);
                return Step::Consumed(len);
            };
            let mut parts = tokens(payload);
            let (Some(user), Some(password)) = (parts.next(), parts.next()) else {
                line(out.bytes(), BAD_TOKEN_FORMAT);
                return Step::Consumed(len);
            };
            return match auth.check(user, password) {
                Some(done) => {
                    self.open(done);
                    line(out.bytes(), b"STORED");
                    Step::Consumed(len)
                }
                None => {
                    line(out.bytes(), AUTH_FAILURE);
                    self.failed(auth, len)
                }
            };
        }
        let Some(newline) = memchr::memchr(b'\n', rest) else {
            if rest.len() > PRE_AUTH_LINE_BYTES {
                return Step::Close(rest.len());
            }
            return Step::NeedInput;
        };
        let consumed = newline + 1;
        if !auth.ascii {
            // SASL only: a text connection has no way to authenticate.
            return self.unauthenticated(out, consumed);
        }
        let words: Vec<&[u8]> = tokens(&rest[..newline]).take(6).collect();
        let size = match words.as_slice() {
            [b"set", _, _, _, size, ..] => length(size),
            _ => None,
        };
        let Some(size) = size else {
            return self.unauthenticated(out, consumed);
        };
        if size.saturating_add(2) > PRE_AUTH_FRAME_BYTES {
            line(out.bytes(), TOKEN_TOO_LONG);
            auth.count_failure();
            return Step::Close(consumed);
        }
        self.set_block(Some(size + 2));
        Step::Consumed(consumed)
    }

    fn binary_step(&mut self, rest: &[u8], auth: &Authenticator, out: &mut Output) -> Step {
        if rest.len() < BINARY_HEADER_BYTES {
            return Step::NeedInput;
        }
        let (opcode, opaque) = (
            rest[1],
            u32::from_be_bytes([rest[12], rest[13], rest[14], rest[15]]),
        );
        let body = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
        if rest[0] != BINARY_REQUEST_MAGIC || !auth.sasl || body > PRE_AUTH_FRAME_BYTES {
            reply::error(out.bytes(), opcode, opaque, Status::AuthError);
            return Step::Close(rest.len());
        }
        if rest.len() < BINARY_HEADER_BYTES + body {
            return Step::NeedInput;
        }
        let limits = rampart_proto::text::Limits {
            item_size_max: PRE_AUTH_FRAME_BYTES,
            ..rampart_proto::text::Limits::default()
        };
        let frame = match rampart_proto::binary::parse(rest, &limits) {
            rampart_proto::Parsed::Complete { consumed, frame } => (consumed, frame),
            rampart_proto::Parsed::Incomplete => return Step::NeedInput,
            rampart_proto::Parsed::Close => return Step::Close(rest.len()),
        };
        match frame {
            (
                consumed,
                Frame::Request {
                    opcode,
                    opaque,
                    request: Request::Sasl(sasl),
                },
            ) => self.sasl(sasl, opcode, opaque, auth, out, consumed),
            (
                consumed,
                Frame::Request {
                    opcode,
                    opaque,
                    request: Request::Version,
                },
            ) => {
                let _ = opcode;
                reply::version(out.bytes(), opaque, stats::VERSION.as_bytes());
                Step::Consumed(consumed)
            }
            (consumed, _) => {
                reply::error(out.bytes(), opcode, opaque, Status::AuthError);
                Step::Close(consumed.max(BINARY_HEADER_BYTES))
            }
        }
    }

    /// Answers a SASL request (before authentication, or to authenticate again after it).
    pub(super) fn sasl(
        &mut self,
        sasl: Sasl<'_>,
        opcode: Opcode,
        opaque: u32,
        auth: &Authenticator,
        out: &mut Output,
        consumed: usize,
    ) -> Step {
        let plain_allowed = self.auth.as_ref().is_some_and(|state| state.plain_allowed);
        match sasl {
            Sasl::ListMechanisms => {
                reply::sasl(
                    out.bytes(),
                    opcode,
                    opaque,
                    Status::Success,
                    auth.mechanisms(),
                );
                Step::Consumed(consumed)
            }
            Sasl::Auth { mechanism, data } if mechanism == b"PLAIN" && plain_allowed => {
                let done = match PlainMessage::parse(data) {
                    Ok(message) => auth.check(message.user, message.password),
                    Err(_) => {
                        auth.count_failure();
                        None
                    }
                };
                match done {
                    Some(done) => {
                        self.open(done);
                        reply::sasl(out.bytes(), opcode, opaque, Status::Success, AUTHENTICATED);
                        Step::Consumed(consumed)
                    }
                    None => {
                        reply::error(out.bytes(), opcode.code(), opaque, Status::AuthError);
                        self.failed(auth, consumed)
                    }
                }
            }
            Sasl::Auth { mechanism, data }
                if let Some(hash) = ScramHash::from_mechanism(mechanism) =>
            {
                // An exchange counts as a failure from its start, so starts cannot be repeated
                // for free (each may cost a key derivation); a success clears the count.
                if let Step::Close(n) = self.count_failure(auth, consumed) {
                    reply::error(out.bytes(), opcode.code(), opaque, Status::AuthError);
                    return Step::Close(n);
                }
                let started = auth.scram_start(hash, data);
                let state = self.auth.get_or_insert_with(Box::default);
                state.scram = None;
                match started {
                    Some((pending, server_first)) => {
                        state.scram = Some(pending);
                        reply::sasl(
                            out.bytes(),
                            opcode,
                            opaque,
                            Status::AuthContinue,
                            &server_first,
                        );
                    }
                    None => reply::error(out.bytes(), opcode.code(), opaque, Status::AuthError),
                }
                Step::Consumed(consumed)
            }
            // A step naming the other SCRAM mechanism than its start is a step of no exchange.
            Sasl::Step { mechanism, data }
                if self.auth.as_ref().is_some_and(|state| {
                    state.scram.as_ref().is_some_and(|pending| {
                        ScramHash::from_mechanism(mechanism) == Some(pending.hash())
                    })
                }) =>
            {
                let pending = self.auth.as_mut().and_then(|state| state.scram.take());
                let finished = pending.and_then(|pending| auth.scram_finish(&pending, data));
                match finished {
                    Some((done, server_final)) => {
                        self.open(done);
                        reply::sasl(out.bytes(), opcode, opaque, Status::Success, &server_final);
                    }
                    // Counted when the exchange started.
                    None => {
                        self.audit_failure();
                        reply::error(out.bytes(), opcode.code(), opaque, Status::AuthError);
                    }
                }
                Step::Consumed(consumed)
            }
            Sasl::Auth { mechanism, .. } if mechanism == CRAM_MD5 => {
                // Counted from its start, as SCRAM.
                if let Step::Close(n) = self.count_failure(auth, consumed) {
                    reply::error(out.bytes(), opcode.code(), opaque, Status::AuthError);
                    return Step::Close(n);
                }
                let pending = auth.cram_challenge();
                let state = self.auth.get_or_insert_with(Box::default);
                match pending {
                    Some(pending) => {
                        reply::sasl(
                            out.bytes(),
                            opcode,
                            opaque,
                            Status::AuthContinue,
                            pending.challenge(),
                        );
                        state.cram = Some(pending);
                    }
                    // No cleartext entry: nobody can answer it.
                    None => {
                        state.cram = None;
                        auth.count_failure();
                        reply::error(out.bytes(), opcode.code(), opaque, Status::AuthError);
                    }
                }
                Step::Consumed(consumed)
            }
            Sasl::Step { mechanism, data }
                if mechanism == CRAM_MD5
                    && self.auth.as_ref().is_some_and(|state| state.cram.is_some()) =>
            {
                let pending = self.auth.as_mut().and_then(|state| state.cram.take());
                match pending.and_then(|pending| auth.cram_finish(&pending, data)) {
                    Some(done) => {
                        self.open(done);
                        reply::sasl(out.bytes(), opcode, opaque, Status::Success, AUTHENTICATED);
                    }
                    None => {
                        self.audit_failure();
                        reply::error(out.bytes(), opcode.code(), opaque, Status::AuthError);
                    }
                }
                Step::Consumed(consumed)
            }
            Sasl::Auth { mechanism, .. } => {
                if mechanism == b"PLAIN" {
                    log::debug!(
                        "SASL PLAIN refused on a plaintext TCP connection (-o sasl_plain_cleartext allows it)"
                    );
                }
                auth.count_failure();
                reply::error(out.bytes(), opcode.code(), opaque, Status::AuthError);
                self.failed(auth, consumed)
            }
            // A step of no exchange in progress.
            Sasl::Step { .. } => {
                if let Some(state) = self.auth.as_mut() {
                    state.scram = None;
                    state.cram = None;
                }
                auth.count_failure();
                reply::error(out.bytes(), opcode.code(), opaque, Status::AuthError);
                self.failed(auth, consumed)
            }
        }
    }

    fn set_block(&mut self, to: Option<usize>) {
        if let Gate::Locked { block, .. } = &mut self.gate {
            *block = to;
        }
    }

    /// Answers `CLIENT_ERROR unauthenticated`; past [`MAX_UNAUTHENTICATED_REQUESTS`] of them
    /// the connection closes (a client that does not authenticate gets little of the server).
    fn unauthenticated(&mut self, out: &mut Output, consumed: usize) -> Step {
        line(out.bytes(), UNAUTHENTICATED);
        if let Gate::Locked { refused, .. } = &mut self.gate {
            *refused += 1;
            if *refused >= MAX_UNAUTHENTICATED_REQUESTS {
                log::debug!(
                    "{MAX_UNAUTHENTICATED_REQUESTS} requests without authenticating: closing"
                );
                return Step::Close(consumed);
            }
        }
        Step::Consumed(consumed)
    }

    /// A locked connection (the caller checks) whose verified client certificate names
    /// `done`'s user (`-o ssl_cert_user`): authenticated as if it had sent the user's password.
    pub fn open_by_certificate(&mut self, done: Authenticated) {
        self.open(done);
    }

    fn open(&mut self, done: Authenticated) {
        let state = self.auth.get_or_insert_with(Box::default);
        state.failures = 0;
        state.scram = None;
        state.cram = None;
        state.verified = Some(Verified {
            generation: done.generation,
            fingerprint: done.fingerprint,
        });
        self.gate = Gate::Open;
        self.set_identity(Identity::User(Box::new(done.user)));
        if self.audits_auth_success() {
            let event = crate::audit::Event::new("auth.success", "ok").identity(&self.identity);
            self.emit(event);
        }
    }

    /// After a reload: a connection whose user is gone or has other secrets now must
    /// authenticate again (its next request answers as an unauthenticated one's would). A
    /// connection part-way through discarding a refused data block finishes that first.
    pub(super) fn recheck(&mut self, auth: &Authenticator) {
        if matches!(self.state, ReadState::Swallowing { .. }) {
            return;
        }
        let Some(state) = self.auth.as_mut() else {
            return;
        };
        let Some(verified) = state.verified.as_mut() else {
            return;
        };
        if verified.generation == auth.generation() {
            return;
        }
        if let Identity::User(user) = &self.identity {
            let (generation, valid) = auth.still_valid(user, &verified.fingerprint);
            if valid {
                verified.generation = generation;
                return;
            }
        }
        log::info!(
            "credentials reloaded: a connection's user was removed or changed; it must authenticate again"
        );
        let plain_allowed = state.plain_allowed;
        let unproven = state.unproven.clone().unwrap_or(Identity::Anonymous);
        self.set_identity(unproven);
        if let ReadState::ResumingGet { .. } = self.state {
            // The half-answered multi-get is not resumed for an unauthenticated client.
            self.state = ReadState::Reading(Wire::Text);
        }
        self.lock(plain_allowed);
    }

    /// One more failed attempt, recorded in the audit trail; the connection closes at
    /// [`MAX_FAILURES`], authenticated or not (an authenticated client may not guess other
    /// users' passwords either).
    fn failed(&mut self, auth: &Authenticator, consumed: usize) -> Step {
        self.audit_failure();
        self.count_failure(auth, consumed)
    }

    /// `auth.failure`. The name a client claimed is not recorded: a password typed into the
    /// user field would end up in the trail.
    fn audit_failure(&self) {
        self.emit(
            crate::audit::Event::new("auth.failure", "failed")
                .reason("bad credentials")
                .identity(&self.identity),
        );
    }

    /// Counts an attempt as failed (a SCRAM or CRAM-MD5 exchange is counted from its start, and
    /// audited only if it fails); at [`MAX_FAILURES`] the connection closes (`auth.lockout`).
    fn count_failure(&mut self, auth: &Authenticator, consumed: usize) -> Step {
        let state = self.auth.get_or_insert_with(Box::default);
        state.failures += 1;
        if state.failures >= MAX_FAILURES {
            auth.counters
                .lockouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log::debug!("{MAX_FAILURES} failed authentication attempts: closing");
            self.emit(
                crate::audit::Event::new("auth.lockout", "closed")
                    .reason("repeated authentication failures")
                    .identity(&self.identity),
            );
            return Step::Close(consumed);
        }
        Step::Consumed(consumed)
    }
}
