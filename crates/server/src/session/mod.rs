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

mod binary;
mod classic;
mod meta;
mod plan;
mod whole;

use rampart_proto::Parsed as AnyParsed;
use rampart_proto::text::{self, Frame, Parsed, TextError, reply};

use crate::authz::{self, Decision, Identity};
use crate::batch::Op;
use crate::config::ProtocolChoice;
use crate::mesh::Gone;
use crate::worker::Worker;

pub use self::plan::Exchanged;
use self::plan::Plan;
use self::whole::Whole;

const ACCESS_DENIED: &[u8] = b"CLIENT_ERROR access denied";
/// memcached's line when it cannot grow a connection's read buffer.
const OUT_OF_MEMORY_READING: &[u8] = b"SERVER_ERROR out of memory reading request";

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
    state: ReadState,
    /// Requests for other cores' keys, waiting for [`Session::exchange`].
    plan: Plan,
    /// [`OUT_HIGH_WATER_BYTES`], or a test's smaller mark.
    high_water: usize,
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
            state,
            plan: Plan::default(),
            high_water: OUT_HIGH_WATER_BYTES,
        }
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
            if out.len() >= self.high_water {
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
                ReadState::Negotiating => {
                    let wire = if rest[0] == BINARY_REQUEST_MAGIC {
                        Wire::Binary
                    } else {
                        Wire::Text
                    };
                    self.state = ReadState::Reading(wire);
                    wire
                }
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
                        if sharded
                            && let Frame::Request(request) = &frame
                            && Whole::of(request).is_some()
                        {
                            return progress(consumed, requests, Stop::WholeCache);
                        }
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

    /// Sends every queued request to its core (one message per core), waits for the outcomes
    /// and writes the replies in request order into `out`, up to the high-water mark. On
    /// [`Exchanged::More`] the caller writes `out`, empties it and calls again. On `Err` a
    /// peer has stopped (the very end of a shutdown) and `out` is incomplete: the connection
    /// must close without writing it.
    pub async fn exchange(
        &mut self,
        worker: &Worker,
        out: &mut Vec<u8>,
    ) -> Result<Exchanged, Gone> {
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
        out: &mut Vec<u8>,
    ) -> Result<Progress, Gone> {
        let limits = worker.limits();
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

    /// Runs one text frame; `keys_done` keys of a resumed multi-get are already answered.
    fn execute_frame(
        &mut self,
        frame: Frame<'_>,
        keys_done: usize,
        worker: &Worker,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Flow {
        match frame {
            Frame::Meta(rampart_proto::meta::Frame::Reject { error, swallow }) => {
                // `q` never hides an error.
                reply::line(out, error.line());
                self.swallow(swallow, Wire::Text);
                Flow::Continue
            }
            Frame::Meta(rampart_proto::meta::Frame::TooLarge { key, swallow }) => {
                reply::line(out, reply::TOO_LARGE);
                let mut scratch = [0u8; rampart_proto::MAX_KEY_BYTES];
                // memcached unlinks the key whatever the mode.
                self.too_large(key.decode(&mut scratch), true, worker, now);
                self.swallow(swallow, Wire::Text);
                Flow::Continue
            }
            Frame::Meta(rampart_proto::meta::Frame::Request(request)) | Frame::Request(request) => {
                if authz::authorize(&self.identity, &request) == Decision::Deny {
                    reply::line(out, ACCESS_DENIED);
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
                self.swallow(swallow, Wire::Text);
                Flow::Continue
            }
        }
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

    /// Counts a store refused as larger than `-I` on the key's owner, and drops the old value
    /// when `unlink`.
    fn too_large(&mut self, key: &[u8], unlink: bool, worker: &Worker, now: u64) {
        self.refused_store(key, unlink, true, worker, now);
    }

    /// A store refused: drops the old value on the key's owner when `unlink`, and counts it
    /// in `store_too_large` when `counted`.
    fn refused_store(
        &mut self,
        key: &[u8],
        unlink: bool,
        counted: bool,
        worker: &Worker,
        now: u64,
    ) {
        let router = worker.router();
        let owner = router.owner(key);
        if router.is_local(owner) {
            router.invoke_local(|store| {
                if counted {
                    store.stats_mut().store_too_large += 1;
                }
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
                    counted,
                });
        }
    }

    /// Refuses the request at the front of `input`, which needs more read buffer than the
    /// server's read budget can give (`crate::budget`), and uses up all of `input`.
    ///
    /// A storage request gets memcached's reply to an item it cannot allocate,
    /// `SERVER_ERROR out of memory storing object` (binary: `Out of memory`), its old value is
    /// dropped as memcached drops it, and the rest of its data block is discarded as it
    /// arrives: the stream stays in sync and nothing more is buffered. Anything else (a
    /// multi-get line longer than the read buffer) gets `SERVER_ERROR out of memory reading
    /// request` and the connection closes, as in memcached.
    pub fn refuse_unbuffered(
        &mut self,
        input: &[u8],
        worker: &Worker,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Progress {
        worker.process_state().read_budget.refused();
        // With no room for any value, the parsers answer a storage request's header alone
        // (as "too large"), whatever of its data block has arrived.
        let limits = rampart_proto::text::Limits {
            item_size_max: 0,
            ..worker.limits()
        };
        let binary = match self.state {
            ReadState::Reading(wire) | ReadState::Swallowing { then: wire, .. } => {
                wire == Wire::Binary
            }
            ReadState::ResumingGet { .. } => false,
            ReadState::Negotiating => input.first() == Some(&BINARY_REQUEST_MAGIC),
        };
        let refused = if binary {
            self.state = ReadState::Reading(Wire::Binary);
            match rampart_proto::binary::parse(input, &limits) {
                AnyParsed::Complete {
                    consumed,
                    frame:
                        rampart_proto::binary::Frame::TooLarge {
                            opcode,
                            opaque,
                            key,
                            unlink,
                            swallow,
                        },
                } => {
                    rampart_proto::binary::reply::error(
                        out,
                        opcode.code(),
                        opaque,
                        rampart_proto::binary::Status::OutOfMemory,
                    );
                    self.refused_store(key, unlink, false, worker, now);
                    Some((consumed + swallow, Wire::Binary))
                }
                _ => None,
            }
        } else {
            self.state = ReadState::Reading(Wire::Text);
            match text::parse(input, &limits) {
                Parsed::Complete {
                    consumed,
                    frame:
                        Frame::TooLarge {
                            key,
                            unlink,
                            swallow,
                            noreply,
                        },
                } => {
                    if !noreply {
                        reply::line(out, reply::OUT_OF_MEMORY_STORING);
                    }
                    self.refused_store(key, unlink, false, worker, now);
                    Some((consumed + swallow, Wire::Text))
                }
                Parsed::Complete {
                    consumed,
                    frame: Frame::Meta(rampart_proto::meta::Frame::TooLarge { key, swallow }),
                } => {
                    reply::line(out, reply::OUT_OF_MEMORY_STORING);
                    let mut scratch = [0u8; rampart_proto::MAX_KEY_BYTES];
                    self.refused_store(key.decode(&mut scratch), true, false, worker, now);
                    Some((consumed + swallow, Wire::Text))
                }
                _ => None,
            }
        };
        match refused {
            Some((end, wire)) => {
                // The request was incomplete, so its end lies beyond what has arrived.
                self.swallow(end.saturating_sub(input.len()), wire);
                Progress {
                    consumed: input.len(),
                    requests: 1,
                    stop: Stop::NeedInput,
                }
            }
            None => {
                if !binary {
                    reply::line(out, OUT_OF_MEMORY_READING);
                }
                Progress {
                    consumed: input.len(),
                    requests: 1,
                    stop: Stop::Close,
                }
            }
        }
    }
}
