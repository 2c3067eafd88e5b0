//! Serving the binary protocol. The codec encodes each binary request onto the same logical
//! request as a meta command (a `getk` is an `mg` returning flags, value and key), so keyed
//! requests run exactly as meta ones do ([`super::meta::execute`]), inline or batched; only
//! the response is written here, from the same results, echoing the request's opcode and
//! opaque.
//!
//! Quiet opcodes leave out what memcached leaves out: a quiet get's miss, and a quiet
//! update's, delete's, arithmetic's, flush's or quit's success. Errors are always answered.
//! Since responses are written in request order, a `noop` (or any non-quiet request) after a
//! run of quiet ones comes back after everything they produced.
//!
//! `flush` and `stat` need every shard: they go through [`Whole`] like their text forms, whose
//! text reply is turned into binary responses here (one per statistic, then an empty one).

use rampart_proto::Request;
use rampart_proto::binary::{Frame, Status, reply};

use crate::mesh::Gone;
use crate::stats;
use crate::worker::Worker;

use super::binary_reply::BinaryForm;
use super::refuse::Unbuffered;
use super::whole::{StatsGroup, Whole};
use super::{Flow, Session, Wire, meta};
use crate::call::Refusal;
use crate::output::Output;

/// A `flush` refused by `-F`: memcached answers `Auth failure.` (quiet or not) and counts it.
fn flush_refused(request: &Request<'_>, worker: &Worker) -> bool {
    let refused = matches!(request, Request::FlushAll(_)) && !worker.config().flush_enabled;
    if refused {
        worker
            .router()
            .invoke_local(|store| store.stats_mut().cmd_flush += 1);
    }
    refused
}

/// Whether `frame` must wait for [`Session::whole_cache`] (with more than one shard).
pub(super) fn needs_every_shard(frame: &Frame<'_>, worker: &Worker) -> bool {
    match frame {
        // A refused flush is answered without the shards.
        Frame::Request { request, .. } => {
            Whole::of_binary(request, worker).is_some()
                && (worker.config().flush_enabled || !matches!(request, Request::FlushAll(_)))
        }
        _ => false,
    }
}

/// Handles one binary frame from [`Session::process`].
pub(super) fn execute_frame(
    session: &mut Session,
    frame: Frame<'_>,
    worker: &Worker,
    now: u64,
    out: &mut Output,
) -> Flow {
    match frame {
        Frame::Request {
            opcode,
            opaque,
            request,
        } => {
            let form = BinaryForm { opcode, opaque };
            // Quiet or not: a refusal is an error, and errors are always answered.
            if session.authorize(&request, worker).is_err() {
                form.error(out, Status::AccessDenied);
                return Flow::Continue;
            }
            if flush_refused(&request, worker) {
                form.error(out, Status::AuthError);
                return Flow::Continue;
            }
            if let Some(whole) = Whole::of_binary(&request, worker) {
                // Only reached with a single shard: every shard is this one.
                let mut text = Vec::new();
                whole.run_here(worker, now, &mut text);
                answer_whole(&whole, &text, &form, out);
                return Flow::Continue;
            }
            if meta::execute(&mut session.plan, &request, Some(form), worker, now, out) {
                return Flow::Continue;
            }
            match request {
                Request::Version => reply::version(out.bytes(), opaque, stats::VERSION.as_bytes()),
                Request::MetaNoop => reply::success(out.bytes(), opcode, opaque, 0),
                Request::Quit => {
                    form.success(out, 0);
                    return Flow::Close;
                }
                // Authenticating again on an authenticated connection.
                Request::Sasl(sasl) if worker.auth().is_some_and(|auth| auth.sasl) => {
                    if let Some(auth) = worker.auth()
                        && let super::gate::Step::Close(_) =
                            session.sasl(sasl, opcode, opaque, auth, out, 0)
                    {
                        return Flow::Close;
                    }
                }
                // No SASL without `-S`: as memcached.
                _ => form.error(out, Status::UnknownCommand),
            }
            Flow::Continue
        }
        Frame::Reject {
            opcode,
            opaque,
            status,
            swallow,
        } => {
            reply::error(out.bytes(), opcode, opaque, status);
            session.swallow(swallow, Wire::Binary);
            Flow::Continue
        }
        Frame::Fatal {
            opcode,
            opaque,
            status,
        } => {
            reply::error(out.bytes(), opcode, opaque, status);
            Flow::Close
        }
        Frame::TooLarge {
            opcode,
            opaque,
            key,
            unlink,
            swallow,
        } => {
            let store = Unbuffered::Binary {
                opcode,
                opaque,
                key,
                unlink,
            };
            session.refuse_store(store, Refusal::TooLarge, swallow, worker, now, out);
            Flow::Continue
        }
    }
}

/// Runs the whole-cache request of `frame` on every shard, waiting for the other cores.
/// `false` when the frame is not one (the caller goes the ordinary way).
pub(super) async fn whole_cache(
    session: &mut Session,
    frame: Frame<'_>,
    worker: &Worker,
    now: u64,
    out: &mut Output,
) -> Result<bool, Gone> {
    let Frame::Request {
        opcode,
        opaque,
        request,
    } = frame
    else {
        return Ok(false);
    };
    let Some(whole) = Whole::of_binary(&request, worker) else {
        return Ok(false);
    };
    if flush_refused(&request, worker) {
        return Ok(false);
    }
    let form = BinaryForm { opcode, opaque };
    if session.authorize(&request, worker).is_err() {
        form.error(out, Status::AccessDenied);
    } else {
        let mut text = Vec::new();
        whole.run(worker, now, &mut text).await?;
        answer_whole(&whole, &text, &form, out);
    }
    Ok(true)
}

/// Turns the text reply of a whole-cache request into binary responses.
fn answer_whole(whole: &Whole, text: &[u8], form: &BinaryForm, out: &mut Output) {
    match whole {
        Whole::Flush { .. } => form.success(out, 0),
        Whole::Stats(StatsGroup::Unknown) => form.error(out, Status::NotFound),
        Whole::Stats(_) | Whole::Sizes(_) => {
            for line in text.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if let Some(stat) = line.strip_prefix(b"STAT ") {
                    let space = memchr::memchr(b' ', stat).unwrap_or(stat.len());
                    let value = stat.get(space + 1..).unwrap_or_default();
                    reply::stat(out.bytes(), form.opaque, &stat[..space], value);
                }
            }
            reply::stat_end(out.bytes(), form.opaque);
        }
        // `cache_memlimit` has no binary form.
        Whole::Memlimit { .. } => form.error(out, Status::UnknownCommand),
        // Not made by `Whole::of_binary`.
        Whole::Detail(_) | Whole::Dump(_) => form.error(out, Status::NotFound),
    }
}
