//! Writing binary responses to keyed requests: how a response echoes its request
//! ([`BinaryForm`]: opcode and opaque) and the response for each answer ([`encode`]). Quiet
//! opcodes leave out what memcached leaves out: a quiet get's miss, and a quiet update's,
//! delete's or arithmetic's success. Errors are always answered.

use rampart_proto::binary::{Opcode, Status, reply};
use rampart_store::{DeleteOutcome, MetaArithOutcome, StoreOutcome};

use crate::call::meta::MetaResult;
use crate::output::Output;

/// How a binary response echoes its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BinaryForm {
    pub(crate) opcode: Opcode,
    pub(crate) opaque: u32,
}

impl BinaryForm {
    pub(super) fn error(&self, out: &mut Output, status: Status) {
        reply::error(out.bytes(), self.opcode.code(), self.opaque, status);
    }

    pub(super) fn success(&self, out: &mut Output, cas: u64) {
        if !self.opcode.is_quiet() {
            reply::success(out.bytes(), self.opcode, self.opaque, cas);
        }
    }
}

/// Writes the binary response to a keyed request presented as `form` for `key` that came to
/// `result`.
pub(crate) fn encode(out: &mut Output, form: &BinaryForm, key: &[u8], result: MetaResult<'_>) {
    let BinaryForm { opcode, opaque } = *form;
    match result {
        MetaResult::Hit(hit) => {
            let value = hit.item.value;
            if reply::get_hit_head(
                out.bytes(),
                opcode,
                opaque,
                hit.item.cas,
                hit.item.flags,
                key,
                value.len(),
            ) {
                out.value(value, hit.item.shared);
            }
        }
        MetaResult::Miss => {
            if !opcode.is_quiet() {
                reply::get_miss(out.bytes(), opcode, opaque, key);
            }
        }
        MetaResult::Stored(StoreOutcome::Stored, cas) => form.success(out, cas),
        MetaResult::Stored(StoreOutcome::Exists, _) => form.error(out, Status::Exists),
        MetaResult::Stored(StoreOutcome::NotFound, _) => form.error(out, Status::NotFound),
        // memcached fails the item's allocation before looking at the mode.
        MetaResult::Stored(StoreOutcome::OutOfMemory, _) => reply::error_with(
            out.bytes(),
            opcode.code(),
            opaque,
            Status::OutOfMemory,
            reply::OUT_OF_MEMORY_STORING,
        ),
        // memcached answers a refused store by what the mode needed.
        MetaResult::Stored(StoreOutcome::NotStored, _) => {
            let status = match opcode {
                Opcode::Add | Opcode::AddQ => Status::Exists,
                Opcode::Replace | Opcode::ReplaceQ => Status::NotFound,
                _ => Status::NotStored,
            };
            form.error(out, status);
        }
        MetaResult::Deleted(DeleteOutcome::Deleted) => form.success(out, 0),
        MetaResult::Deleted(DeleteOutcome::NotFound) => form.error(out, Status::NotFound),
        MetaResult::Deleted(DeleteOutcome::Exists) => form.error(out, Status::Exists),
        MetaResult::Arith(MetaArithOutcome::Done { value, cas, .. }) => {
            if !opcode.is_quiet() {
                reply::arith(out.bytes(), opcode, opaque, cas, value);
            }
        }
        MetaResult::Arith(MetaArithOutcome::NotFound) => form.error(out, Status::NotFound),
        MetaResult::Arith(MetaArithOutcome::Exists) => form.error(out, Status::Exists),
        MetaResult::Arith(MetaArithOutcome::NonNumeric) => form.error(out, Status::NonNumeric),
        MetaResult::Arith(MetaArithOutcome::OutOfMemory | MetaArithOutcome::VivifyOutOfMemory) => {
            form.error(out, Status::OutOfMemory)
        }
        // `me` has no binary form.
        MetaResult::Debug(_) => form.error(out, Status::UnknownCommand),
    }
}
