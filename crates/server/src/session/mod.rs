//! One connection's protocol state and request execution, without any I/O.
//!
//! The connection driver hands a [`Session`] the bytes it has read; the session parses as many
//! complete requests as there are, authorizes each, and runs it on the owning shard. A request
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

mod meta;
mod plan;
mod whole;

use rampart_proto::text::{self, Frame, Parsed, TextError, reply};
use rampart_proto::{Request, ShutdownMode};
use rampart_store::{ArithOutcome, StoreOutcome};

use crate::authz::{self, Decision, Identity};
use crate::batch::{Op, store_mode};
use crate::config::ProtocolChoice;
use crate::mesh::Gone;
use crate::stats;
use crate::worker::Worker;

use self::plan::{Form, Plan};
use self::whole::Whole;

const ACCESS_DENIED: &[u8] = b"CLIENT_ERROR access denied";

/// The first byte of every binary-protocol request.
const BINARY_REQUEST_MAGIC: u8 = 0x80;

/// What the parser is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// `-B auto`: the first byte decides the protocol, as in memcached.
    Negotiating,
    /// The start of a request line.
    ReadingLine,
    /// Discarding the rest of a refused data block.
    Swallowing { remaining: usize },
}

/// Whether the connection goes on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Write what is in the output buffer, then close (`quit`, a line too long).
    Close,
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

/// Per-connection protocol state.
#[derive(Debug)]
pub struct Session {
    identity: Identity,
    state: ReadState,
    /// Requests for other cores' keys, waiting for [`Session::exchange`].
    plan: Plan,
}

impl Session {
    pub fn new(identity: Identity, protocol: ProtocolChoice) -> Self {
        let state = match protocol {
            ProtocolChoice::Auto => ReadState::Negotiating,
            ProtocolChoice::Ascii | ProtocolChoice::Binary => ReadState::ReadingLine,
        };
        Session {
            identity,
            state,
            plan: Plan::default(),
        }
    }

    /// Handles up to `max_requests` complete requests from the front of `input`.
    pub fn process(
        &mut self,
        input: &[u8],
        worker: &Worker,
        now: u64,
        max_requests: usize,
        out: &mut Vec<u8>,
    ) -> Progress {
        let mut consumed = 0;
        let mut requests = 0;
        let limits = worker.limits();
        let sharded = worker.router().shard_count() > 1;
        let progress = |consumed, requests, stop| Progress {
            consumed,
            requests,
            stop,
        };
        loop {
            if requests >= max_requests {
                return progress(consumed, requests, Stop::Budget);
            }
            let rest = &input[consumed..];
            if let ReadState::Swallowing { remaining } = self.state {
                let skipped = remaining.min(rest.len());
                consumed += skipped;
                self.state = match remaining - skipped {
                    0 => ReadState::ReadingLine,
                    remaining => ReadState::Swallowing { remaining },
                };
                if remaining > skipped {
                    return progress(consumed, requests, Stop::NeedInput);
                }
                continue;
            }
            if rest.is_empty() {
                return progress(consumed, requests, Stop::NeedInput);
            }
            if self.state == ReadState::Negotiating {
                if rest[0] == BINARY_REQUEST_MAGIC {
                    // The binary protocol is not served by this build (issue #6); a text reply
                    // would only confuse a binary client, so hang up as on any unusable stream.
                    log::debug!("binary protocol request on a text-only server: closing");
                    return progress(consumed, requests, Stop::Close);
                }
                self.state = ReadState::ReadingLine;
            }
            match text::parse(rest, &limits) {
                Parsed::Incomplete => return progress(consumed, requests, Stop::NeedInput),
                Parsed::Close => return progress(consumed, requests, Stop::Close),
                Parsed::Complete { consumed: n, frame } => {
                    if sharded
                        && let Frame::Request(request) = &frame
                        && Whole::of(request).is_some()
                    {
                        return progress(consumed, requests, Stop::WholeCache);
                    }
                    consumed += n;
                    requests += 1;
                    if self.execute_frame(frame, worker, now, out) == Flow::Close {
                        return progress(consumed, requests, Stop::Close);
                    }
                }
            }
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

    /// Sends every queued request to its core (one message per core), waits for the outcomes
    /// and puts their replies in place in `out`. On `Err` a peer has stopped (the very end of
    /// a shutdown) and `out` is incomplete: the connection must close without writing it.
    pub async fn exchange(&mut self, worker: &Worker, out: &mut Vec<u8>) -> Result<(), Gone> {
        self.plan.exchange(worker.router(), out).await
    }

    /// Runs the request at the front of `input`, which needs every shard (after
    /// [`Stop::WholeCache`], and after [`Session::exchange`]), waiting for the other cores.
    pub async fn whole_cache(
        &mut self,
        input: &[u8],
        worker: &Worker,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<Progress, Gone> {
        let limits = worker.limits();
        if let Parsed::Complete {
            consumed,
            frame: Frame::Request(request),
        } = text::parse(input, &limits)
            && let Some(whole) = Whole::of(&request)
        {
            if authz::authorize(&self.identity, &request) == Decision::Deny {
                reply::line(out, ACCESS_DENIED);
            } else {
                whole.run(worker, now, out).await?;
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

    fn execute_frame(
        &mut self,
        frame: Frame<'_>,
        worker: &Worker,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Flow {
        match frame {
            Frame::Meta(rampart_proto::meta::Frame::Reject { error, swallow }) => {
                // `q` never hides an error.
                reply::line(out, error.line());
                self.swallow(swallow);
                Flow::Continue
            }
            Frame::Meta(rampart_proto::meta::Frame::TooLarge { key, swallow }) => {
                reply::line(out, reply::TOO_LARGE);
                let mut scratch = [0u8; rampart_proto::MAX_KEY_BYTES];
                // memcached unlinks the key whatever the mode.
                self.too_large(key.decode(&mut scratch), true, worker, now);
                self.swallow(swallow);
                Flow::Continue
            }
            Frame::Meta(rampart_proto::meta::Frame::Request(request)) | Frame::Request(request) => {
                if authz::authorize(&self.identity, &request) == Decision::Deny {
                    reply::line(out, ACCESS_DENIED);
                    return Flow::Continue;
                }
                execute(&mut self.plan, request, worker, now, out)
            }
            Frame::Reject { error, noreply } => {
                if !noreply {
                    reply::line(out, error.line());
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
                if !noreply {
                    reply::line(out, reply::TOO_LARGE);
                }
                self.too_large(key, unlink, worker, now);
                self.swallow(swallow);
                Flow::Continue
            }
        }
    }

    /// Discards the next `bytes` of input as they arrive (a refused data block).
    fn swallow(&mut self, bytes: usize) {
        if bytes > 0 {
            self.state = ReadState::Swallowing { remaining: bytes };
        }
    }

    /// Counts a store refused as larger than `-I` on the key's owner, and drops the old value
    /// when `unlink`.
    fn too_large(&mut self, key: &[u8], unlink: bool, worker: &Worker, now: u64) {
        let router = worker.router();
        let owner = router.owner(key);
        if router.is_local(owner) {
            router.invoke_local(|store| {
                store.stats_mut().store_too_large += 1;
                if unlink {
                    // memcached drops the old value so that a failed `set` cannot leave stale
                    // data behind.
                    store.unlink(key);
                }
            });
        } else {
            self.plan
                .queue(router, owner, now, None, |batch| Op::TooLarge {
                    key: batch.copy(key),
                    unlink,
                });
        }
    }
}

/// The reply line of a storage command.
fn store_line(outcome: StoreOutcome) -> &'static [u8] {
    match outcome {
        StoreOutcome::Stored => reply::STORED,
        StoreOutcome::NotStored => reply::NOT_STORED,
        StoreOutcome::Exists => reply::EXISTS,
        StoreOutcome::NotFound => reply::NOT_FOUND,
        StoreOutcome::OutOfMemory => reply::OUT_OF_MEMORY_STORING,
    }
}

/// The reply of `incr`/`decr`.
fn arith_reply(out: &mut Vec<u8>, outcome: ArithOutcome) {
    match outcome {
        ArithOutcome::Value(value) => reply::number(out, value),
        ArithOutcome::NotFound => reply::line(out, reply::NOT_FOUND),
        ArithOutcome::NonNumeric => reply::line(out, reply::NON_NUMERIC),
        ArithOutcome::OutOfMemory => reply::line(out, reply::OUT_OF_MEMORY),
    }
}

fn deleted_line(deleted: bool) -> &'static [u8] {
    if deleted {
        reply::DELETED
    } else {
        reply::NOT_FOUND
    }
}

fn touched_line(touched: bool) -> &'static [u8] {
    if touched {
        reply::TOUCHED
    } else {
        reply::NOT_FOUND
    }
}

/// Runs one authorized request: inline for this core's keys, queued in `plan` for the
/// others'. Replies go to `out`, or their place in it is remembered.
fn execute(
    plan: &mut Plan,
    request: Request<'_>,
    worker: &Worker,
    now: u64,
    out: &mut Vec<u8>,
) -> Flow {
    let router = worker.router();
    if let Some(whole) = Whole::of(&request) {
        // Only reached with a single shard: every shard is this one.
        whole.run_here(worker, now, out);
        return Flow::Continue;
    }
    if meta::execute(plan, &request, worker, now, out) {
        return Flow::Continue;
    }
    match request {
        // Handled by `meta::execute` above.
        Request::MetaGet(_)
        | Request::MetaSet(_)
        | Request::MetaDelete(_)
        | Request::MetaArith(_)
        | Request::MetaDebug(_) => {}
        Request::MetaNoop => rampart_proto::meta::reply::noop(out),
        // SASL is binary-only; not served yet.
        Request::Sasl(_) => reply::line(out, reply::ERROR),
        Request::Get(get) => {
            for key in get.keys.iter() {
                let owner = router.owner(key);
                if router.is_local(owner) {
                    router.invoke_local(|store| {
                        let item = match get.touch {
                            None => store.get(key, now),
                            Some(exptime) => store.get_and_touch(key, exptime, now),
                        };
                        if let Some(item) = item {
                            reply::value(
                                out,
                                key,
                                item.flags,
                                item.value,
                                get.cas.then_some(item.cas),
                            );
                        }
                    });
                } else {
                    let form = Form::Value { cas: get.cas };
                    plan.queue(router, owner, now, Some((out.len(), form)), |batch| {
                        Op::Get {
                            key: batch.copy(key),
                            touch: get.touch,
                        }
                    });
                }
            }
            reply::line(out, reply::END);
        }
        Request::Store(req) => {
            let mode = store_mode(req.mode);
            let owner = router.owner(req.key);
            if router.is_local(owner) {
                let outcome = router.invoke_local(|store| {
                    store.store(mode, req.key, req.flags, req.exptime, req.data, now)
                });
                if !req.noreply {
                    reply::line(out, store_line(outcome));
                }
            } else {
                let answer = (!req.noreply).then_some((out.len(), Form::Status));
                plan.queue(router, owner, now, answer, |batch| Op::Store {
                    mode,
                    key: batch.copy(req.key),
                    flags: req.flags,
                    exptime: req.exptime,
                    data: batch.copy(req.data),
                });
            }
        }
        Request::Arith(req) => {
            let owner = router.owner(req.key);
            if router.is_local(owner) {
                let outcome =
                    router.invoke_local(|store| store.arith(req.key, req.incr, req.delta, now));
                if !req.noreply {
                    arith_reply(out, outcome);
                }
            } else {
                let answer = (!req.noreply).then_some((out.len(), Form::Status));
                plan.queue(router, owner, now, answer, |batch| Op::Arith {
                    key: batch.copy(req.key),
                    incr: req.incr,
                    delta: req.delta,
                });
            }
        }
        Request::Delete(req) => {
            let owner = router.owner(req.key);
            if router.is_local(owner) {
                let deleted = router.invoke_local(|store| store.delete(req.key, now));
                if !req.noreply {
                    reply::line(out, deleted_line(deleted));
                }
            } else {
                let answer = (!req.noreply).then_some((out.len(), Form::Status));
                plan.queue(router, owner, now, answer, |batch| Op::Delete {
                    key: batch.copy(req.key),
                });
            }
        }
        Request::Touch(req) => {
            let owner = router.owner(req.key);
            if router.is_local(owner) {
                let touched = router.invoke_local(|store| store.touch(req.key, req.exptime, now));
                if !req.noreply {
                    reply::line(out, touched_line(touched));
                }
            } else {
                let answer = (!req.noreply).then_some((out.len(), Form::Status));
                plan.queue(router, owner, now, answer, |batch| Op::Touch {
                    key: batch.copy(req.key),
                    exptime: req.exptime,
                });
            }
        }
        Request::Version => {
            out.extend_from_slice(b"VERSION ");
            reply::line(out, stats::VERSION.as_bytes());
        }
        Request::Verbosity(req) => {
            worker.set_verbosity(req.level);
            if !req.noreply {
                reply::line(out, reply::OK);
            }
        }
        Request::Quit => return Flow::Close,
        Request::Shutdown(mode) => {
            if !worker.config().shutdown_enabled {
                reply::line(out, reply::SHUTDOWN_DISABLED);
            } else if mode == ShutdownMode::Invalid {
                reply::line(out, reply::INVALID_SHUTDOWN_MODE);
            } else {
                log::info!("shutdown requested by a client");
                worker.request_shutdown();
                return Flow::Close;
            }
        }
        // Whole-cache requests were handled above.
        Request::FlushAll(_) | Request::CacheMemlimit(_) | Request::Stats(_) => {}
    }
    Flow::Continue
}
