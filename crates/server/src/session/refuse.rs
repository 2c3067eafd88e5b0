//! Storage requests refused before their data block is buffered, in every protocol: larger
//! than `-I` (memcached's `SERVER_ERROR object too large for cache`), or beyond the read
//! budget (`crate::budget`; memcached's answer to an item it cannot allocate). Either way the
//! reply is written at once, the old value is dropped where memcached drops it, and the data
//! block is discarded as it arrives, so the stream stays in sync and nothing is buffered.

use rampart_proto::Parsed as AnyParsed;
use rampart_proto::binary::{self, Opcode, Status};
use rampart_proto::request::{MAX_KEY_BYTES, MetaKey};
use rampart_proto::text::{self, Frame, Parsed, reply};

use crate::call::{Call, Refusal};
use crate::output::Output;
use crate::worker::Worker;

use super::{BINARY_REQUEST_MAGIC, Progress, ReadState, Session, Stop, Wire, keyed};

/// More than any request line or binary header, key and extras needs beyond its value.
const MAX_REQUEST_HEAD_BYTES: usize = 4096;

/// memcached's line when it cannot grow a connection's read buffer.
const OUT_OF_MEMORY_READING: &[u8] = b"SERVER_ERROR out of memory reading request";

/// A storage request whose data block is not buffered: what its refusal needs.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unbuffered<'a> {
    /// A classic storage command; memcached drops the old value only for `set` (`unlink`).
    Text {
        key: &'a [u8],
        unlink: bool,
        noreply: bool,
    },
    /// `ms`: memcached drops the old value whatever the mode, and `q` never hides an error.
    Meta { key: MetaKey<'a> },
    /// A binary store; the old value is dropped only for `set`.
    Binary {
        opcode: Opcode,
        opaque: u32,
        key: &'a [u8],
        unlink: bool,
    },
}

impl Unbuffered<'_> {
    fn wire(&self) -> Wire {
        match self {
            Unbuffered::Text { .. } | Unbuffered::Meta { .. } => Wire::Text,
            Unbuffered::Binary { .. } => Wire::Binary,
        }
    }
}

impl Session {
    /// Refuses `store` for `why`: writes the reply, drops the old value on the key's owner
    /// where memcached does, counts it, and discards the next `swallow` bytes (the rest of
    /// the data block) as they arrive.
    pub(super) fn refuse_store(
        &mut self,
        store: Unbuffered<'_>,
        why: Refusal,
        swallow: usize,
        worker: &Worker,
        now: u64,
        out: &mut Output,
    ) {
        let text_line = match why {
            Refusal::TooLarge => reply::TOO_LARGE,
            Refusal::NoMemory => reply::OUT_OF_MEMORY_STORING,
        };
        let mut scratch = [0u8; MAX_KEY_BYTES];
        let (key, unlink) = match &store {
            Unbuffered::Text { key, unlink, .. } => (*key, *unlink),
            Unbuffered::Meta { key } => (key.decode(&mut scratch), true),
            Unbuffered::Binary { key, unlink, .. } => (*key, *unlink),
        };
        // Dropping the old value is a write: a client that may not write the key is refused
        // instead, and the key keeps its value.
        let denied = unlink && self.may_unlink(key, worker).is_err();
        match &store {
            Unbuffered::Text { noreply, .. } => {
                if !noreply {
                    let line = if denied {
                        super::ACCESS_DENIED
                    } else {
                        text_line
                    };
                    reply::line(out.bytes(), line);
                }
            }
            Unbuffered::Meta { .. } => {
                let line = if denied {
                    super::ACCESS_DENIED
                } else {
                    text_line
                };
                reply::line(out.bytes(), line);
            }
            Unbuffered::Binary { opcode, opaque, .. } => match (denied, why) {
                (true, _) => {
                    binary::reply::error(out.bytes(), opcode.code(), *opaque, Status::AccessDenied);
                }
                (false, Refusal::TooLarge) => {
                    binary::reply::error(out.bytes(), opcode.code(), *opaque, Status::TooLarge);
                }
                // memcached's words for an item it cannot allocate.
                (false, Refusal::NoMemory) => binary::reply::error_with(
                    out.bytes(),
                    opcode.code(),
                    *opaque,
                    Status::OutOfMemory,
                    binary::reply::OUT_OF_MEMORY_STORING,
                ),
            },
        }
        if denied {
            self.swallow(swallow, store.wire());
            return;
        }
        let call = Call::Refused { unlink, why };
        // Nothing more to answer: the refusal is written above.
        keyed::execute(&mut self.plan, key, call, &[], None, worker, now, out);
        self.swallow(swallow, store.wire());
    }

    /// Whether the request at the front of `input` is a binary one.
    fn front_is_binary(&self, input: &[u8]) -> bool {
        match self.state {
            ReadState::Reading(wire) | ReadState::Swallowing { then: wire, .. } => {
                wire == Wire::Binary
            }
            ReadState::ResumingGet { .. } => false,
            ReadState::Negotiating => input.first() == Some(&BINARY_REQUEST_MAGIC),
        }
    }

    /// The incomplete storage request at the front of `input`, read from its header alone,
    /// and the bytes it takes in all (header and data block). The parsers answer a storage
    /// header before its data arrives when there is room for no value at all.
    fn front_store<'a>(&self, input: &'a [u8], worker: &Worker) -> Option<(Unbuffered<'a>, usize)> {
        let limits = rampart_proto::text::Limits {
            item_size_max: 0,
            ..worker.limits()
        };
        if self.front_is_binary(input) {
            return match binary::parse(input, &limits) {
                AnyParsed::Complete {
                    consumed,
                    frame:
                        binary::Frame::TooLarge {
                            opcode,
                            opaque,
                            key,
                            unlink,
                            swallow,
                        },
                } => Some((
                    Unbuffered::Binary {
                        opcode,
                        opaque,
                        key,
                        unlink,
                    },
                    consumed + swallow,
                )),
                _ => None,
            };
        }
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
            } => Some((
                Unbuffered::Text {
                    key,
                    unlink,
                    noreply,
                },
                consumed + swallow,
            )),
            Parsed::Complete {
                consumed,
                frame: Frame::Meta(rampart_proto::meta::Frame::TooLarge { key, swallow }),
            } => Some((Unbuffered::Meta { key }, consumed + swallow)),
            _ => None,
        }
    }

    /// The length in bytes of the incomplete request at the front of `input`, when its header
    /// says (a storage request whose value is still arriving, a binary packet); `None` when
    /// it cannot be known yet (a request line without its newline), or when the header claims
    /// more than any request can be (`-I` and a header: the buffer then grows by doubling, each
    /// step charged).
    pub fn pending_request_bytes(&self, input: &[u8], worker: &Worker) -> Option<usize> {
        let most = worker
            .limits()
            .item_size_max
            .saturating_add(MAX_REQUEST_HEAD_BYTES);
        let bytes = match self.front_store(input, worker) {
            Some((_, bytes)) => Some(bytes),
            // Any other binary packet: its header says how long it is.
            None if self.front_is_binary(input) => binary::Header::parse(input)
                .map(|header| binary::HEADER_BYTES + header.body_len as usize),
            None => None,
        };
        bytes.filter(|&bytes| bytes <= most)
    }

    /// Refuses the request at the front of `input`, which needs more read buffer than the
    /// server's read budget can give, and uses up all of `input`: a storage request as
    /// [`Session::refuse_store`] does for [`Refusal::NoMemory`]; anything else (a multi-get
    /// line longer than the read buffer) gets `SERVER_ERROR out of memory reading request`
    /// and the connection closes, as in memcached.
    pub fn refuse_unbuffered(
        &mut self,
        input: &[u8],
        worker: &Worker,
        now: u64,
        out: &mut Output,
    ) -> Progress {
        if self.is_locked() {
            // Before authentication nothing is large enough to get here; after a revocation,
            // the store is not run for an unauthenticated connection.
            return Progress {
                consumed: 0,
                requests: 0,
                stop: Stop::Close,
            };
        }
        worker.process_state().read_budget.refused();
        let binary = self.front_is_binary(input);
        match self.front_store(input, worker) {
            Some((store, end)) => {
                self.state = ReadState::Reading(store.wire());
                // The request was incomplete, so its end lies beyond what has arrived.
                let rest = end.saturating_sub(input.len());
                self.refuse_store(store, Refusal::NoMemory, rest, worker, now, out);
                Progress {
                    consumed: input.len(),
                    requests: 1,
                    stop: Stop::NeedInput,
                }
            }
            None => {
                if !binary {
                    reply::line(out.bytes(), OUT_OF_MEMORY_READING);
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
