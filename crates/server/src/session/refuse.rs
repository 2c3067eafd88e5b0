//! Requests refused for want of read budget (`crate::budget`): the request at the front of
//! the input needs more read buffer than the server can give it, and is answered the way
//! memcached answers an allocation it cannot make.

use rampart_proto::Parsed as AnyParsed;
use rampart_proto::text::{self, Frame, Parsed, reply};

use crate::call::{Call, Refusal};
use crate::worker::Worker;

use super::{BINARY_REQUEST_MAGIC, Progress, ReadState, Session, Stop, Wire, keyed};

/// More than any request line or binary header, key and extras needs beyond its value.
const MAX_REQUEST_HEAD_BYTES: usize = 4096;

/// memcached's line when it cannot grow a connection's read buffer.
const OUT_OF_MEMORY_READING: &[u8] = b"SERVER_ERROR out of memory reading request";

impl Session {
    /// A store refused: drops the old value on the key's owner when `unlink`, and counts it
    /// in `store_too_large` when `counted`.
    pub(super) fn refused_store(
        &mut self,
        key: &[u8],
        unlink: bool,
        why: Refusal,
        worker: &Worker,
        now: u64,
    ) {
        let call = Call::Refused { unlink, why };
        // Nothing to answer: the caller has written the refusal.
        let mut nothing = Vec::new();
        keyed::execute(
            &mut self.plan,
            key,
            call,
            &[],
            None,
            worker,
            now,
            &mut nothing,
        );
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
        self.pending_length(input, worker)
            .filter(|&bytes| bytes <= most)
    }

    fn pending_length(&self, input: &[u8], worker: &Worker) -> Option<usize> {
        // With no room for any value, the parsers answer a storage request's header alone.
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
        if binary {
            return match rampart_proto::binary::parse(input, &limits) {
                AnyParsed::Complete {
                    consumed,
                    frame: rampart_proto::binary::Frame::TooLarge { swallow, .. },
                } => Some(consumed + swallow),
                // Any other packet: its header says how long it is.
                _ => rampart_proto::binary::Header::parse(input)
                    .map(|header| rampart_proto::binary::HEADER_BYTES + header.body_len as usize),
            };
        }
        match text::parse(input, &limits) {
            Parsed::Complete {
                consumed,
                frame: Frame::TooLarge { swallow, .. },
            }
            | Parsed::Complete {
                consumed,
                frame: Frame::Meta(rampart_proto::meta::Frame::TooLarge { swallow, .. }),
            } => Some(consumed + swallow),
            _ => None,
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
                    // memcached's words for an item it cannot allocate.
                    rampart_proto::binary::reply::error_with(
                        out,
                        opcode.code(),
                        opaque,
                        rampart_proto::binary::Status::OutOfMemory,
                        rampart_proto::binary::reply::OUT_OF_MEMORY_STORING,
                    );
                    self.refused_store(key, unlink, Refusal::NoMemory, worker, now);
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
                    self.refused_store(key, unlink, Refusal::NoMemory, worker, now);
                    Some((consumed + swallow, Wire::Text))
                }
                Parsed::Complete {
                    consumed,
                    frame: Frame::Meta(rampart_proto::meta::Frame::TooLarge { key, swallow }),
                } => {
                    reply::line(out, reply::OUT_OF_MEMORY_STORING);
                    let mut scratch = [0u8; rampart_proto::MAX_KEY_BYTES];
                    self.refused_store(
                        key.decode(&mut scratch),
                        true,
                        Refusal::NoMemory,
                        worker,
                        now,
                    );
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
