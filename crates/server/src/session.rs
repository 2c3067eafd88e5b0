//! One connection's protocol state and request execution, without any I/O.
//!
//! The connection driver hands a [`Session`] the bytes it has read; the session parses as many
//! complete requests as there are, authorizes each, runs it on the owning shard through the
//! [`Router`](crate::shard::Router), and appends the replies to one output buffer, which the
//! driver then writes with a single send. Being synchronous and socket-free, it is what the
//! allocation test drives directly.

use rampart_proto::text::{self, Frame, Parsed, TextError, reply};
use rampart_proto::{Request, ShutdownMode, StoreMode};
use rampart_store::{ArithOutcome, SetMode, StoreOutcome};

use crate::authz::{self, Decision, Identity};
use crate::config::ProtocolChoice;
use crate::stats::{self, StatsView};
use crate::worker::Worker;

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

/// Whether the connection goes on after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Write what is in the output buffer, then close (`quit`, a line too long).
    Close,
}

/// The result of [`Session::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input that were used up; the rest must be offered again with more data.
    pub consumed: usize,
    pub flow: Flow,
    /// Requests executed.
    pub requests: usize,
}

/// Per-connection protocol state.
#[derive(Debug)]
pub struct Session {
    identity: Identity,
    state: ReadState,
}

impl Session {
    pub fn new(identity: Identity, protocol: ProtocolChoice) -> Self {
        let state = match protocol {
            ProtocolChoice::Auto => ReadState::Negotiating,
            ProtocolChoice::Ascii | ProtocolChoice::Binary => ReadState::ReadingLine,
        };
        Session { identity, state }
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
        while requests < max_requests {
            let rest = &input[consumed..];
            if let ReadState::Swallowing { remaining } = self.state {
                let skipped = remaining.min(rest.len());
                consumed += skipped;
                self.state = match remaining - skipped {
                    0 => ReadState::ReadingLine,
                    remaining => ReadState::Swallowing { remaining },
                };
                if remaining > skipped {
                    break;
                }
                continue;
            }
            if rest.is_empty() {
                break;
            }
            if self.state == ReadState::Negotiating {
                if rest[0] == BINARY_REQUEST_MAGIC {
                    // The binary protocol is not served by this build (issue #6); a text reply
                    // would only confuse a binary client, so hang up as on any unusable stream.
                    log::debug!("binary protocol request on a text-only server: closing");
                    return Progress {
                        consumed,
                        flow: Flow::Close,
                        requests,
                    };
                }
                self.state = ReadState::ReadingLine;
            }
            match text::parse(rest, &limits) {
                Parsed::Incomplete => break,
                Parsed::Close => {
                    return Progress {
                        consumed,
                        flow: Flow::Close,
                        requests,
                    };
                }
                Parsed::Complete { consumed: n, frame } => {
                    consumed += n;
                    requests += 1;
                    if self.execute_frame(frame, worker, now, out) == Flow::Close {
                        return Progress {
                            consumed,
                            flow: Flow::Close,
                            requests,
                        };
                    }
                }
            }
        }
        Progress {
            consumed,
            flow: Flow::Continue,
            requests,
        }
    }

    fn execute_frame(
        &mut self,
        frame: Frame<'_>,
        worker: &Worker,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Flow {
        match frame {
            // The meta protocol is parsed but not yet served (issue #6): answer as before.
            Frame::Meta(_) => {
                reply::line(out, reply::ERROR);
                Flow::Continue
            }
            Frame::Request(request) => {
                if authz::authorize(&self.identity, &request) == Decision::Deny {
                    reply::line(out, ACCESS_DENIED);
                    return Flow::Continue;
                }
                execute(request, worker, now, out)
            }
            Frame::Reject { error, noreply } => {
                if !noreply {
                    reply::line(out, error.line());
                }
                if error == TextError::FlushDisabled {
                    // memcached counts refused flushes too.
                    worker
                        .router()
                        .invoke_on(0, |store| store.stats_mut().cmd_flush += 1);
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
                worker.router().invoke_for(key, |store| {
                    store.stats_mut().store_too_large += 1;
                    if unlink {
                        // memcached drops the old value so that a failed `set` cannot leave
                        // stale data behind.
                        store.unlink(key);
                    }
                });
                self.state = ReadState::Swallowing { remaining: swallow };
                Flow::Continue
            }
        }
    }
}

/// Runs one authorized request and appends its reply.
fn execute(request: Request<'_>, worker: &Worker, now: u64, out: &mut Vec<u8>) -> Flow {
    let router = worker.router();
    match request {
        // Meta and binary requests are not served yet (issue #6).
        Request::MetaGet(_)
        | Request::MetaSet(_)
        | Request::MetaDelete(_)
        | Request::MetaArith(_)
        | Request::MetaNoop
        | Request::MetaDebug(_)
        | Request::Sasl(_) => reply::line(out, reply::ERROR),
        Request::Get(get) => {
            for key in get.keys.iter() {
                router.invoke_for(key, |store| {
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
            }
            reply::line(out, reply::END);
        }
        Request::Store(req) => {
            let mode = match req.mode {
                StoreMode::Set => SetMode::Set,
                StoreMode::Add => SetMode::Add,
                StoreMode::Replace => SetMode::Replace,
                StoreMode::Append => SetMode::Append,
                StoreMode::Prepend => SetMode::Prepend,
                StoreMode::Cas(unique) => SetMode::Cas(unique),
            };
            let outcome = router.invoke_for(req.key, |store| {
                store.store(mode, req.key, req.flags, req.exptime, req.data, now)
            });
            let line = match outcome {
                StoreOutcome::Stored => reply::STORED,
                StoreOutcome::NotStored => reply::NOT_STORED,
                StoreOutcome::Exists => reply::EXISTS,
                StoreOutcome::NotFound => reply::NOT_FOUND,
                StoreOutcome::OutOfMemory => reply::OUT_OF_MEMORY_STORING,
            };
            if !req.noreply {
                reply::line(out, line);
            }
        }
        Request::Arith(req) => {
            let outcome = router.invoke_for(req.key, |store| {
                store.arith(req.key, req.incr, req.delta, now)
            });
            if !req.noreply {
                match outcome {
                    ArithOutcome::Value(value) => reply::number(out, value),
                    ArithOutcome::NotFound => reply::line(out, reply::NOT_FOUND),
                    ArithOutcome::NonNumeric => reply::line(out, reply::NON_NUMERIC),
                    ArithOutcome::OutOfMemory => reply::line(out, reply::OUT_OF_MEMORY),
                }
            }
        }
        Request::Delete(req) => {
            let deleted = router.invoke_for(req.key, |store| store.delete(req.key, now));
            if !req.noreply {
                reply::line(
                    out,
                    if deleted {
                        reply::DELETED
                    } else {
                        reply::NOT_FOUND
                    },
                );
            }
        }
        Request::Touch(req) => {
            let touched =
                router.invoke_for(req.key, |store| store.touch(req.key, req.exptime, now));
            if !req.noreply {
                reply::line(
                    out,
                    if touched {
                        reply::TOUCHED
                    } else {
                        reply::NOT_FOUND
                    },
                );
            }
        }
        Request::FlushAll(req) => {
            // `-F` was applied by the parser, which must refuse before reading arguments.
            router.map_reduce((), |store| store.flush_all(req.delay, now), |(), ()| ());
            if !req.noreply {
                reply::line(out, reply::OK);
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
        Request::CacheMemlimit(req) => {
            // memcached's bounds: at least 8 MB, and a number that looks like bytes is refused.
            let line = if req.megabytes < 8 {
                reply::MEMLIMIT_TOO_SMALL
            } else if req.megabytes > 1_000_000_000 {
                reply::MEMLIMIT_NOT_BYTES
            } else {
                let total = req.megabytes as usize * 1024 * 1024;
                let per_shard = total / router.shard_count();
                router.map_reduce(
                    (),
                    |store| store.set_limit_bytes(per_shard, now),
                    |(), ()| (),
                );
                reply::OK
            };
            if !req.noreply {
                reply::line(out, line);
            }
        }
        Request::Stats(req) => {
            let view = StatsView {
                config: worker.config(),
                process: worker.process(),
                worker: worker.counters(),
                router,
                started_at: worker.started_at(),
                now,
            };
            match req.group {
                None => stats::general(&view, out),
                Some(b"settings") => stats::settings(&view, out),
                Some(b"items") => stats::items(&view, out),
                Some(b"slabs") => stats::slabs(&view, out),
                Some(b"reset") => {
                    worker.reset_stats();
                    reply::line(out, reply::RESET);
                }
                Some(_) => reply::line(out, reply::ERROR),
            }
        }
    }
    Flow::Continue
}
