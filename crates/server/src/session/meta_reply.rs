//! Writing meta replies: how a reply echoes its request ([`MetaForm`]: the flag letters in
//! order, the opaque, base64 keys) and the reply for each answer ([`encode`]). Quiet mode
//! (`q`) is a property of the reply, not of the request: the nominal outcome (`HD` of a
//! store, delete or arithmetic, `EN` of a get) is simply not written, wherever the request
//! ran, and errors always are.

use rampart_proto::meta::reply::{self, ArithDone, ItemMeta, Status};
use rampart_proto::request::{MAX_OPAQUE_BYTES, MetaFlags, MetaGet, MetaKey, MetaSet, MetaSetMode};
use rampart_proto::{MetaArith, MetaDelete};
use rampart_store::{DeleteOutcome, MetaArithOutcome, StoreOutcome};

use crate::call::meta::MetaResult;
use crate::output::Output;

const VIVIFY_OUT_OF_MEMORY: &[u8] = b"SERVER_ERROR Out of memory allocating new item";
const OUT_OF_MEMORY: &[u8] = b"SERVER_ERROR out of memory";

/// How a meta reply echoes its request: the flag letters in order, the opaque, whether the
/// key was base64. Small and `Copy`, so it waits in the plan while the request runs remotely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetaForm {
    flags: MetaFlags,
    opaque: [u8; MAX_OPAQUE_BYTES],
    /// `None` without `O`, else the opaque's length.
    opaque_len: Option<u8>,
    base64: bool,
}

impl MetaForm {
    pub(super) fn new(key: MetaKey<'_>, flags: MetaFlags, opaque: Option<&[u8]>) -> MetaForm {
        let mut form = MetaForm {
            flags,
            opaque: [0; MAX_OPAQUE_BYTES],
            opaque_len: None,
            base64: key.base64,
        };
        if let Some(opaque) = opaque {
            // The parser refused longer opaques (`O` plus at most 31 bytes).
            let len = opaque.len().min(MAX_OPAQUE_BYTES);
            form.opaque[..len].copy_from_slice(&opaque[..len]);
            form.opaque_len = u8::try_from(len).ok();
        }
        form
    }

    fn opaque(&self) -> Option<&[u8]> {
        self.opaque_len.map(|len| &self.opaque[..usize::from(len)])
    }

    fn key<'k>(&self, key: &'k [u8]) -> MetaKey<'k> {
        MetaKey {
            raw: key,
            base64: self.base64,
        }
    }
}

/// Seconds left for an absolute exptime (`None`: never).
fn ttl(exptime: u64, now: u64) -> Option<u32> {
    (exptime != 0).then(|| u32::try_from(exptime.saturating_sub(now)).unwrap_or(u32::MAX))
}

fn line(out: &mut Output, line: &[u8]) {
    let out = out.bytes();
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

/// Writes the meta reply to a request presented as `form` for `key` (decoded) that came to
/// `result` at `now`.
pub(crate) fn encode(
    out: &mut Output,
    form: &MetaForm,
    key: &[u8],
    result: MetaResult<'_>,
    now: u64,
) {
    let quiet = form.flags.quiet();
    let opaque = form.opaque();
    match result {
        MetaResult::Hit(hit) => {
            let request = get_request(form, key);
            let item = ItemMeta {
                key: hit.item.key,
                key_base64: form.base64,
                client_flags: hit.item.flags,
                cas: hit.item.cas,
                ttl: ttl(hit.item.exptime, now),
                ttl_before: ttl(hit.exptime_before, now),
                created: hit.created,
                fetched: hit.item.fetched,
                last_access: u32::try_from(now.saturating_sub(hit.item.last_access))
                    .unwrap_or(u32::MAX),
                win: hit.win,
                stale: hit.stale,
                win_sent: hit.win_sent,
            };
            let value = hit.item.value;
            if reply::get_hit_head(out.bytes(), &request, &item, value.len()) {
                out.value(value, hit.item.shared);
                out.bytes().extend_from_slice(reply::VALUE_END);
            }
        }
        MetaResult::Miss => {
            if !quiet {
                reply::get_miss(out.bytes(), &get_request(form, key), key);
            }
        }
        MetaResult::Stored(outcome, unique) => {
            let status = match outcome {
                StoreOutcome::Stored if quiet => return,
                StoreOutcome::Stored => Status::Stored,
                StoreOutcome::NotStored => Status::NotStored,
                StoreOutcome::Exists => Status::Exists,
                StoreOutcome::NotFound => Status::NotFound,
                StoreOutcome::OutOfMemory => return line(out, reply::OUT_OF_MEMORY_STORING),
            };
            let request = MetaSet {
                key: form.key(key),
                flags: form.flags,
                mode: MetaSetMode::Set,
                cas: None,
                client_flags: 0,
                exptime: 0,
                opaque,
                data: &[],
            };
            reply::set_outcome(out.bytes(), &request, status, key, unique);
        }
        MetaResult::Deleted(outcome) => {
            let status = match outcome {
                DeleteOutcome::Deleted if quiet => return,
                DeleteOutcome::Deleted => Status::Stored,
                DeleteOutcome::NotFound => Status::NotFound,
                DeleteOutcome::Exists => Status::Exists,
            };
            let request = MetaDelete {
                key: form.key(key),
                flags: form.flags,
                cas: None,
                exptime: None,
                opaque,
            };
            reply::delete_outcome(out.bytes(), &request, status, key);
        }
        MetaResult::Arith(outcome) => {
            let request = MetaArith {
                key: form.key(key),
                flags: form.flags,
                incr: true,
                delta: 1,
                initial: 0,
                vivify: None,
                touch: None,
                cas: None,
                opaque,
            };
            let status = match outcome {
                MetaArithOutcome::Done { .. } if quiet => return,
                MetaArithOutcome::Done {
                    value,
                    cas,
                    exptime_before,
                    exptime,
                    created,
                } => {
                    let done = ArithDone {
                        value,
                        cas,
                        ttl: ttl(exptime, now),
                        ttl_before: ttl(exptime_before, now),
                        created,
                    };
                    return reply::arith_done(out.bytes(), &request, key, &done);
                }
                MetaArithOutcome::NotFound => Status::NotFound,
                MetaArithOutcome::Exists => Status::Exists,
                MetaArithOutcome::NonNumeric => return line(out, reply::NON_NUMERIC),
                MetaArithOutcome::OutOfMemory => return line(out, OUT_OF_MEMORY),
                MetaArithOutcome::VivifyOutOfMemory => return line(out, VIVIFY_OUT_OF_MEMORY),
            };
            reply::arith_failed(out.bytes(), &request, status, key);
        }
        MetaResult::Debug(Some(info)) => reply::debug(out.bytes(), key, form.base64, &info),
        MetaResult::Debug(None) => line(out, reply::MISS),
    }
}

/// The parts of an `mg` that its reply encoders read.
fn get_request<'a>(form: &'a MetaForm, key: &'a [u8]) -> MetaGet<'a> {
    MetaGet {
        key: form.key(key),
        flags: form.flags,
        opaque: form.opaque(),
        touch: None,
        vivify: None,
        recache: None,
    }
}
