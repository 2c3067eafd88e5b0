//! Serving meta requests (`mg`, `ms`, `md`, `ma`, `me`): each becomes a [`MetaCall`] run on
//! the key's owner like every keyed request ([`keyed::execute`]), and its answer is written
//! back as the meta reply the client asked for (`meta_reply`). `mn` needs nothing more: its
//! `MN` comes after every earlier reply because replies are written in request order.

use rampart_proto::Request;
use rampart_proto::request::{MAX_KEY_BYTES, MetaFlags, MetaKey, MetaSetMode};
use rampart_store::{ArithOptions, GetOptions, SetMode};

use crate::call::Call;
use crate::call::meta::MetaCall;
use crate::output::Output;
use crate::worker::Worker;

use super::binary_reply::BinaryForm;
use super::form::Form;
use super::keyed;
use super::meta_reply::MetaForm;
use super::plan::Plan;

/// A meta request taken apart: the store's part and the reply's part.
struct Parts<'a> {
    key: MetaKey<'a>,
    call: MetaCall,
    data: &'a [u8],
    form: MetaForm,
}

fn parts<'a>(request: &Request<'a>) -> Option<Parts<'a>> {
    let (key, call, data, flags, opaque) = match request {
        Request::MetaGet(get) => (
            get.key,
            MetaCall::Get(GetOptions {
                touch: get.touch,
                vivify: get.vivify,
                recache: get.recache,
                bump: !get.no_lru_bump(),
            }),
            &[][..],
            get.flags,
            get.opaque,
        ),
        Request::MetaSet(set) => (
            set.key,
            MetaCall::Set {
                mode: set_mode(set.mode),
                flags: set.client_flags,
                exptime: set.exptime,
                cas: set.cas,
                invalidate: set.invalidate(),
            },
            set.data,
            set.flags,
            set.opaque,
        ),
        Request::MetaDelete(delete) => (
            delete.key,
            MetaCall::Delete {
                cas: delete.cas,
                invalidate: delete.invalidate(),
                exptime: delete.exptime,
            },
            &[][..],
            delete.flags,
            delete.opaque,
        ),
        Request::MetaArith(arith) => (
            arith.key,
            MetaCall::Arith(ArithOptions {
                incr: arith.incr,
                delta: arith.delta,
                cas: arith.cas,
                vivify: arith.vivify.map(|ttl| (arith.initial, ttl)),
                touch: arith.touch,
            }),
            &[][..],
            arith.flags,
            arith.opaque,
        ),
        Request::MetaDebug(debug) => (
            debug.key,
            MetaCall::Debug,
            &[][..],
            MetaFlags::default(),
            None,
        ),
        _ => return None,
    };
    Some(Parts {
        key,
        call,
        data,
        form: MetaForm::new(key, flags, opaque),
    })
}

fn set_mode(mode: MetaSetMode) -> SetMode {
    match mode {
        MetaSetMode::Set => SetMode::Set,
        MetaSetMode::Add => SetMode::Add,
        MetaSetMode::Replace => SetMode::Replace,
        MetaSetMode::Append => SetMode::Append,
        MetaSetMode::Prepend => SetMode::Prepend,
    }
}

/// Runs a meta request (`mg`, `ms`, `md`, `ma`, `me`, or the binary request encoded as one)
/// on the key's owner: inline, writing the reply to `out`, or queued in `plan` with its
/// reply's place remembered. The reply is a meta reply, or with `binary` a binary response.
/// `false` when `request` is not one of them.
pub(super) fn execute(
    plan: &mut Plan,
    request: &Request<'_>,
    binary: Option<BinaryForm>,
    worker: &Worker,
    now: u64,
    out: &mut Output,
) -> bool {
    let Some(mut parts) = parts(request) else {
        return false;
    };
    if binary.is_some()
        && let MetaCall::Set {
            mode: mode @ SetMode::Add,
            cas: Some(unique),
            ..
        } = &mut parts.call
    {
        // memcached's binary add with a CAS is a CAS store (meta's ignores the CAS).
        *mode = SetMode::Cas(*unique);
    }
    let form = match binary {
        Some(binary) => Form::Binary(binary),
        None => Form::Meta(parts.form),
    };
    let mut scratch = [0u8; MAX_KEY_BYTES];
    let key = parts.key.decode(&mut scratch);
    let call = Call::Meta(parts.call);
    keyed::execute(plan, key, call, parts.data, Some(form), worker, now, out);
    true
}
