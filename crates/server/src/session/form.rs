//! How a keyed request's reply is written, whatever core ran it: the request's [`Form`] and
//! the store's [`Answer`] make the reply, through one [`encode`] for the local and the
//! remote path alike.

use rampart_proto::text::reply;
use rampart_store::{ArithOutcome, StoreOutcome};

use crate::call::Answer;
use crate::output::Output;

use super::binary_reply::{self, BinaryForm};
use super::meta_reply::{self, MetaForm};

/// How a keyed request's reply is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// A classic get: a `VALUE` block for a hit, nothing for a miss; `cas` for `gets`/`gats`.
    Value { cas: bool },
    /// The status line of a classic storage, arithmetic, delete or touch command.
    Status,
    /// A meta reply, echoing the request as the form says.
    Meta(MetaForm),
    /// A binary response to a request encoded as a meta one.
    Binary(BinaryForm),
}

/// Writes the reply to a request presented as `form` for `key` that came to `answer` at
/// `now`.
pub(crate) fn encode(out: &mut Output, form: &Form, key: &[u8], answer: Answer<'_>, now: u64) {
    match (form, answer) {
        (Form::Value { cas }, Answer::Value(Some(hit))) => {
            let bytes = out.bytes();
            reply::value_header(
                bytes,
                key,
                hit.flags,
                hit.value.len(),
                cas.then_some(hit.cas),
            );
            out.value(hit.value, hit.shared);
            out.bytes().extend_from_slice(reply::VALUE_END);
        }
        (Form::Value { .. }, Answer::Value(None)) => {}
        (Form::Meta(form), Answer::Meta(result)) => meta_reply::encode(out, form, key, result, now),
        (Form::Binary(form), Answer::Meta(result)) => binary_reply::encode(out, form, key, result),
        (Form::Status, Answer::Stored(outcome)) => reply::line(out.bytes(), store_line(outcome)),
        (Form::Status, Answer::Arith(outcome)) => arith_reply(out, outcome),
        (Form::Status, Answer::Deleted(deleted)) => reply::line(out.bytes(), deleted_line(deleted)),
        (Form::Status, Answer::Touched(touched)) => reply::line(out.bytes(), touched_line(touched)),
        (form, answer) => {
            // Every form is paired with its call where the request is taken apart; a mismatch
            // is a bug, and a reply keeps the client's count of replies right.
            log::error!("a {form:?} request came to {answer:?}");
            internal_error(out, form);
        }
    }
}

/// The reply for a request whose answer is missing or does not fit its form (a bug).
pub(crate) fn internal_error(out: &mut Output, form: &Form) {
    match form {
        Form::Binary(form) => form.error(out, rampart_proto::binary::Status::OutOfMemory),
        _ => reply::line(out.bytes(), b"SERVER_ERROR internal error"),
    }
}

/// The reply line of a storage command.
fn store_line(outcome: StoreOutcome) -> &'static [u8] {
    match outcome {
        StoreOutcome::Stored => reply::STORED,
        StoreOutcome::NotStored => reply::NOT_STORED,
        StoreOutcome::Exists => reply::EXISTS,
        StoreOutcome::NotFound => reply::NOT_FOUND,
        StoreOutcome::OutOfMemory => reply::OUT_OF_MEMORY_STORING,
    }
}

/// The reply of `incr`/`decr`.
fn arith_reply(out: &mut Output, outcome: ArithOutcome) {
    match outcome {
        ArithOutcome::Value(value) => reply::number(out.bytes(), value),
        ArithOutcome::NotFound => reply::line(out.bytes(), reply::NOT_FOUND),
        ArithOutcome::NonNumeric => reply::line(out.bytes(), reply::NON_NUMERIC),
        ArithOutcome::OutOfMemory => reply::line(out.bytes(), reply::OUT_OF_MEMORY),
    }
}

fn deleted_line(deleted: bool) -> &'static [u8] {
    if deleted {
        reply::DELETED
    } else {
        reply::NOT_FOUND
    }
}

fn touched_line(touched: bool) -> &'static [u8] {
    if touched {
        reply::TOUCHED
    } else {
        reply::NOT_FOUND
    }
}
