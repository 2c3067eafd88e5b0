//! The classic text commands: each runs on its key's owner, inline for this core's keys and
//! queued in the plan for the others', and its reply line is written here (or, for a queued
//! one, by the plan in the same words).

use rampart_proto::text::reply;
use rampart_proto::{Request, ShutdownMode};
use rampart_store::{ArithOutcome, StoreOutcome};

use crate::batch::{Op, store_mode};
use crate::stats;
use crate::worker::Worker;

use super::Flow;
use super::meta;
use super::plan::{Form, Plan};
use super::whole::Whole;

/// The reply line of a storage command.
pub(super) fn store_line(outcome: StoreOutcome) -> &'static [u8] {
    match outcome {
        StoreOutcome::Stored => reply::STORED,
        StoreOutcome::NotStored => reply::NOT_STORED,
        StoreOutcome::Exists => reply::EXISTS,
        StoreOutcome::NotFound => reply::NOT_FOUND,
        StoreOutcome::OutOfMemory => reply::OUT_OF_MEMORY_STORING,
    }
}

/// The reply of `incr`/`decr`.
pub(super) fn arith_reply(out: &mut Vec<u8>, outcome: ArithOutcome) {
    match outcome {
        ArithOutcome::Value(value) => reply::number(out, value),
        ArithOutcome::NotFound => reply::line(out, reply::NOT_FOUND),
        ArithOutcome::NonNumeric => reply::line(out, reply::NON_NUMERIC),
        ArithOutcome::OutOfMemory => reply::line(out, reply::OUT_OF_MEMORY),
    }
}

pub(super) fn deleted_line(deleted: bool) -> &'static [u8] {
    if deleted {
        reply::DELETED
    } else {
        reply::NOT_FOUND
    }
}

pub(super) fn touched_line(touched: bool) -> &'static [u8] {
    if touched {
        reply::TOUCHED
    } else {
        reply::NOT_FOUND
    }
}

/// Runs one authorized request: inline for this core's keys, queued in `plan` for the
/// others'. Replies go to `out`, or their place in it is remembered. A multi-get skips its
/// first `resume.0` keys (answered before a pause) and pauses once `out` reaches `resume.1`
/// bytes with keys left.
pub(super) fn execute(
    plan: &mut Plan,
    request: Request<'_>,
    resume: (usize, usize),
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
    if meta::execute(plan, &request, None, worker, now, out) {
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
            let (keys_done, high_water) = resume;
            for (n, key) in get.keys.iter().enumerate().skip(keys_done) {
                if out.len() >= high_water && n > keys_done {
                    // The rest waits until the socket has taken what is here.
                    return Flow::Paused { keys_done: n };
                }
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
        Request::RefreshCerts { noreply } => {
            let outcome = worker.refresh_certs();
            if !noreply {
                match outcome {
                    Ok(()) => reply::line(out, reply::OK),
                    Err(line) => reply::line(out, line.as_bytes()),
                }
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
