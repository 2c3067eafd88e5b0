//! The classic text commands: each keyed one becomes a [`Call`] run on its key's owner like
//! every keyed request ([`keyed::execute`]), its reply written by the same encoder wherever
//! it ran; the others are answered here.

use rampart_proto::request::AdminCommand;
use rampart_proto::text::reply;
use rampart_proto::{Request, ShutdownMode};

use crate::call::{Call, store_mode};
use crate::output::Output;
use crate::stats;
use crate::worker::Worker;

use super::form::Form;
use super::plan::Plan;
use super::whole::Whole;
use super::{Flow, keyed, meta};

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
    out: &mut Output,
) -> Flow {
    if let Some(whole) = Whole::of(&request, worker) {
        // Only reached with a single shard: every shard is this one.
        whole.run_here(worker, now, out.bytes());
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
        Request::MetaNoop => rampart_proto::meta::reply::noop(out.bytes()),
        // SASL is binary-only; not served yet.
        Request::Sasl(_) => reply::line(out.bytes(), reply::ERROR),
        Request::Acl(acl) => super::acl::run(acl, worker, out),
        Request::Auth(command) => super::acl::auth(command, worker, out),
        Request::Admin(admin) => return admin_command(admin.command, worker, out),
        Request::Get(get) => {
            let (keys_done, high_water) = resume;
            let call = Call::Get { touch: get.touch };
            let form = Form::Value { cas: get.cas };
            for (n, key) in get.keys.iter().enumerate().skip(keys_done) {
                if out.pending() >= high_water && n > keys_done {
                    // The rest waits until the socket has taken what is here.
                    return Flow::Paused { keys_done: n };
                }
                keyed::execute(plan, key, call, &[], Some(form), worker, now, out);
            }
            reply::line(out.bytes(), reply::END);
        }
        Request::Store(req) => {
            let call = Call::Store {
                mode: store_mode(req.mode),
                flags: req.flags,
                exptime: req.exptime,
            };
            let form = (!req.noreply).then_some(Form::Status);
            keyed::execute(plan, req.key, call, req.data, form, worker, now, out);
        }
        Request::Arith(req) => {
            let call = Call::Arith {
                incr: req.incr,
                delta: req.delta,
            };
            let form = (!req.noreply).then_some(Form::Status);
            keyed::execute(plan, req.key, call, &[], form, worker, now, out);
        }
        Request::Delete(req) => {
            let form = (!req.noreply).then_some(Form::Status);
            keyed::execute(plan, req.key, Call::Delete, &[], form, worker, now, out);
        }
        Request::Touch(req) => {
            let call = Call::Touch {
                exptime: req.exptime,
            };
            let form = (!req.noreply).then_some(Form::Status);
            keyed::execute(plan, req.key, call, &[], form, worker, now, out);
        }
        Request::Version => {
            out.bytes().extend_from_slice(b"VERSION ");
            reply::line(out.bytes(), stats::VERSION.as_bytes());
        }
        Request::Verbosity(req) => {
            worker.set_verbosity(req.level);
            if !req.noreply {
                reply::line(out.bytes(), reply::OK);
            }
        }
        Request::RefreshCerts { noreply } => {
            let outcome = worker.refresh_certs();
            if !noreply {
                match outcome {
                    Ok(()) => reply::line(out.bytes(), reply::OK),
                    Err(line) => reply::line(out.bytes(), line.as_bytes()),
                }
            }
        }
        Request::Quit => return Flow::Close,
        Request::Shutdown(mode) => {
            if !worker.config().shutdown_enabled {
                reply::line(out.bytes(), reply::SHUTDOWN_DISABLED);
            } else if mode == ShutdownMode::Invalid {
                reply::line(out.bytes(), reply::INVALID_SHUTDOWN_MODE);
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

/// `lru_crawler` (but `metadump`, a whole-cache request), `lru`, `slabs`, `watch`.
#[cold]
fn admin_command(command: AdminCommand<'_>, worker: &Worker, out: &mut Output) -> Flow {
    let tunables = &worker.process_state().tunables;
    match command {
        AdminCommand::LruCrawler(command) => {
            crate::admin::lru_crawler(command, tunables, out.bytes());
        }
        AdminCommand::Lru { valid } => {
            // No segmented LRU to tune: accepted where memcached accepts it.
            reply::line(out.bytes(), if valid { reply::OK } else { reply::ERROR });
        }
        AdminCommand::Slabs(command) => crate::admin::slabs(command, tunables, out.bytes()),
        AdminCommand::Watch(_) if !worker.config().watch_enabled => {
            reply::line(out.bytes(), b"CLIENT_ERROR watch commands not allowed");
        }
        AdminCommand::Watch(watch) if watch.unknown => reply::line(out.bytes(), reply::ERROR),
        AdminCommand::Watch(watch) => {
            reply::line(out.bytes(), reply::OK);
            return Flow::Watch(watch.streams);
        }
    }
    Flow::Continue
}
