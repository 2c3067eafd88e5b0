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
        router.invoke_local(|store| {
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
