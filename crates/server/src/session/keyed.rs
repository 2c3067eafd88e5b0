//! The one way a keyed request runs, whatever its protocol: on its key's owner, inline when
//! this core owns the key (the reply is written at once) and queued in the plan otherwise
//! (the reply's place is remembered and the exchange writes it, with the same encoder).

use crate::call::{self, Call};
use crate::output::Output;
use crate::worker::Worker;

use super::form::{self, Form};
use super::plan::Plan;

/// Runs `call` for `key` (`data`: a store's value) on the key's owner. Its reply is written
/// as `form` says; `None` writes nothing (`noreply`).
#[allow(clippy::too_many_arguments)] // the request's parts, its reply's form, and where it runs
pub(super) fn execute(
    plan: &mut Plan,
    key: &[u8],
    call: Call,
    data: &[u8],
    form: Option<Form>,
    worker: &Worker,
    now: u64,
    out: &mut Output,
) {
    let router = worker.router();
    let owner = router.owner(key);
    if router.is_local(owner) {
        let watched = plan.watched;
        router.invoke_local(|store| {
            // Whether someone watches is looked at once per turn (`Plan::watched`), and the
            // watched path is a function of its own, so that the request path keeps its one,
            // inlined, encoder (callgrind: a per-key check and a second call site of
            // `form::encode` cost about 50-80 instructions per get at depth 16).
            if watched {
                let log = call::Log {
                    watchers: &worker.process_state().watchers,
                    fd: plan.fd,
                };
                run_watched(store, key, call, data, form, now, log, out);
                return;
            }
            let answer = call::run(store, key, call, data, now);
            if let Some(form) = &form {
                form::encode(out, form, key, answer, now);
            }
        });
    } else {
        let answer = form.map(|form| (out.position(), form));
        plan.queue(router, owner, now, answer, |batch| crate::batch::Op::Key {
            key: batch.copy(key),
            data: batch.copy(data),
            call,
        });
    }
}

/// [`execute`]'s local call while someone watches: logged, then encoded.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)] // `execute`'s, and the log
fn run_watched(
    store: &mut rampart_store::Store,
    key: &[u8],
    call: Call,
    data: &[u8],
    form: Option<Form>,
    now: u64,
    log: call::Log<'_>,
    out: &mut Output,
) {
    let answer = call::run_logged(store, key, call, data, now, log);
    if let Some(form) = &form {
        form::encode(out, form, key, answer, now);
    }
}
