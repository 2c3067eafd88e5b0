//! Binary responses, appended to the connection's output buffer.
//!
//! # Format
//! ```text
//! 0x81 <opcode> <key len> <extras len> 0 <status> <body len> <opaque> <cas> <extras><key><value>
//! ```
//! Every response echoes the request's opcode and opaque. Errors carry memcached's message as
//! the body ([`Status::message`]) and CAS 0. A get hit has 4 bytes of client flags as extras
//! (and the key for getk/gatk); arithmetic answers the new value as 8 big-endian bytes; `stat`
//! answers one response per statistic (key = name, value = value) and an empty one to end.

use super::{Header, Opcode, RESPONSE_MAGIC, Status};

/// Appends one response.
#[allow(clippy::too_many_arguments)] // reason: one argument per header field, as on the wire.
pub fn response(
    out: &mut Vec<u8>,
    opcode: u8,
    status: Status,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) {
    let header = Header {
        magic: RESPONSE_MAGIC,
        opcode,
        // Keys are at most 250 bytes and extras at most 20: both fit.
        key_len: key.len() as u16,
        extras_len: extras.len() as u8,
        data_type: 0,
        vbucket_or_status: status.code(),
        body_len: (extras.len() + key.len() + value.len()) as u32,
        opaque,
        cas,
    };
    header.encode(out);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// An error response: `status` with its message as the body.
pub fn error(out: &mut Vec<u8>, opcode: u8, opaque: u32, status: Status) {
    error_with(out, opcode, opaque, status, status.message());
}

/// The body memcached sends with `OutOfMemory` when a store cannot allocate its item (other
/// out-of-memory errors carry the status's own message).
pub const OUT_OF_MEMORY_STORING: &[u8] = b"Out of memory allocating item";

/// An error response with a body of its own.
pub fn error_with(out: &mut Vec<u8>, opcode: u8, opaque: u32, status: Status, message: &[u8]) {
    response(out, opcode, status, opaque, 0, &[], &[], message);
}

/// An empty success (noop, quit, flush, delete, and set/add/replace/append/prepend with the
/// item's new CAS).
pub fn success(out: &mut Vec<u8>, opcode: Opcode, opaque: u32, cas: u64) {
    response(
        out,
        opcode.code(),
        Status::Success,
        opaque,
        cas,
        &[],
        &[],
        &[],
    );
}

/// A hit of the get family: client flags as extras, the key for getk/gatk, the value except
/// for touch.
pub fn get_hit(
    out: &mut Vec<u8>,
    opcode: Opcode,
    opaque: u32,
    cas: u64,
    client_flags: u32,
    key: &[u8],
    value: &[u8],
) {
    if get_hit_head(out, opcode, opaque, cas, client_flags, key, value.len()) {
        out.extend_from_slice(value);
    }
}

/// A get-family hit's header, extras and key, for a value of `value_len` bytes. `true` when
/// the value must follow as the rest of the body (all but touch); the caller writes it.
pub fn get_hit_head(
    out: &mut Vec<u8>,
    opcode: Opcode,
    opaque: u32,
    cas: u64,
    client_flags: u32,
    key: &[u8],
    value_len: usize,
) -> bool {
    let key: &[u8] = if opcode.returns_key() { key } else { &[] };
    let with_value = opcode != Opcode::Touch;
    let value_len = if with_value { value_len } else { 0 };
    let extras = client_flags.to_be_bytes();
    let header = Header {
        magic: RESPONSE_MAGIC,
        opcode: opcode.code(),
        key_len: key.len() as u16,
        extras_len: extras.len() as u8,
        data_type: 0,
        vbucket_or_status: Status::Success.code(),
        // Values are bounded by `-I` (at most 1 GiB), far below 4 GiB.
        body_len: (extras.len() + key.len() + value_len) as u32,
        opaque,
        cas,
    };
    header.encode(out);
    out.extend_from_slice(&extras);
    out.extend_from_slice(key);
    with_value
}

/// A miss of the get family: getk/gatk answer the key as the body and no message, the others
/// `Not found`. Quiet gets answer nothing (the server's choice).
pub fn get_miss(out: &mut Vec<u8>, opcode: Opcode, opaque: u32, key: &[u8]) {
    if opcode.returns_key() {
        response(
            out,
            opcode.code(),
            Status::NotFound,
            opaque,
            0,
            &[],
            key,
            &[],
        );
    } else {
        error(out, opcode.code(), opaque, Status::NotFound);
    }
}

/// The new value of an increment or decrement.
pub fn arith(out: &mut Vec<u8>, opcode: Opcode, opaque: u32, cas: u64, value: u64) {
    let value = value.to_be_bytes();
    response(
        out,
        opcode.code(),
        Status::Success,
        opaque,
        cas,
        &[],
        &[],
        &value,
    );
}

/// The version string.
pub fn version(out: &mut Vec<u8>, opaque: u32, version: &[u8]) {
    let opcode = Opcode::Version.code();
    response(out, opcode, Status::Success, opaque, 0, &[], &[], version);
}

/// One statistic of a `stat` reply.
pub fn stat(out: &mut Vec<u8>, opaque: u32, name: &[u8], value: &[u8]) {
    let opcode = Opcode::Stat.code();
    response(out, opcode, Status::Success, opaque, 0, &[], name, value);
}

/// The empty response that ends a `stat` reply.
pub fn stat_end(out: &mut Vec<u8>, opaque: u32) {
    stat(out, opaque, &[], &[]);
}

/// A SASL step: the mechanism list, `Authenticated`, or a challenge with
/// [`Status::AuthContinue`].
pub fn sasl(out: &mut Vec<u8>, opcode: Opcode, opaque: u32, status: Status, body: &[u8]) {
    response(out, opcode.code(), status, opaque, 0, &[], &[], body);
}
