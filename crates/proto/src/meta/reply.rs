//! Meta replies, appended to the connection's output buffer.
//!
//! # Format
//! ```text
//! VA <size> <flag>*\r\n<data>\r\n      HD <flag>*\r\n      EN <flag>*\r\n
//! NS|EX|NF <flag>*\r\n                 MN\r\n              ME <key> exp=.. la=.. ..\r\n
//! ```
//! Returned flags follow the request's order (memcached walks the request tokens), then `Z`
//! (someone already won), `X` (stale) and `W` (this client won). `O` echoes the opaque, `k` the
//! key (base64 and followed by ` b` for a binary key), `t` is -1 for an item that never expires.

use crate::base64;
use crate::request::{MetaArith, MetaDelete, MetaFlags, MetaGet, MetaSet};

pub const NOOP: &[u8] = b"MN";
pub const MISS: &[u8] = b"EN";
pub const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache";
pub const OUT_OF_MEMORY_STORING: &[u8] = b"SERVER_ERROR out of memory storing object";
pub const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value";

/// The two-letter status of a reply without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `HD`: done.
    Stored,
    /// `NS`: not stored (add on an existing key, append/prepend/replace on a missing one).
    NotStored,
    /// `EX`: the CAS did not match.
    Exists,
    /// `NF`: not found.
    NotFound,
}

impl Status {
    pub fn code(self) -> &'static [u8] {
        match self {
            Status::Stored => b"HD",
            Status::NotStored => b"NS",
            Status::Exists => b"EX",
            Status::NotFound => b"NF",
        }
    }
}

/// What an `mg` hit reports about the item (the server reads it from the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemMeta<'k> {
    /// The item's key as stored (decoded).
    pub key: &'k [u8],
    /// The item was stored with a base64 key: `k` echoes it encoded.
    pub key_base64: bool,
    pub client_flags: u32,
    pub cas: u64,
    /// Seconds left after this request; `None` for an item that never expires (`t-1`).
    pub ttl: Option<u32>,
    /// Seconds left before this request's `T` (or, for an item `N` created, its `N`):
    /// memcached walks the flags in order, so a `t` written before them reports this.
    pub ttl_before: Option<u32>,
    /// `N` created the item on this request.
    pub created: bool,
    /// `h`: fetched before this request.
    pub fetched: bool,
    /// `l`: seconds since the last access.
    pub last_access: u32,
    /// `W`: this client won the right to recache.
    pub win: bool,
    /// `X`: the item is stale (invalidated).
    pub stale: bool,
    /// `Z`: a win was already handed out.
    pub win_sent: bool,
}

fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn flag(out: &mut Vec<u8>, letter: u8) {
    out.push(b' ');
    out.push(letter);
}

/// ` k<key>`, or ` k<base64> b`.
fn key_flag(out: &mut Vec<u8>, key: &[u8], base64: bool) {
    flag(out, b'k');
    if base64 {
        base64::encode(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

fn opaque_flag(out: &mut Vec<u8>, opaque: Option<&[u8]>) {
    flag(out, b'O');
    out.extend_from_slice(opaque.unwrap_or_default());
}

fn ttl_flag(out: &mut Vec<u8>, ttl: Option<u32>) {
    flag(out, b't');
    match ttl {
        Some(secs) => number(out, secs),
        None => out.extend_from_slice(b"-1"),
    }
}

/// Writes `code`, then the `O` and `k` flags in request order (the flags every reply echoes).
fn status_line(
    out: &mut Vec<u8>,
    code: &[u8],
    flags: &MetaFlags,
    opaque: Option<&[u8]>,
    key: &[u8],
    base64: bool,
) {
    out.extend_from_slice(code);
    for &letter in flags.as_slice() {
        match letter {
            b'O' => opaque_flag(out, opaque),
            b'k' => key_flag(out, key, base64),
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The head of a reply that may carry a value: `VA <size>` when the client asked for the
/// value (`v`), else `HD`.
fn value_or_header(out: &mut Vec<u8>, returns_value: bool, value_len: usize) {
    if returns_value {
        out.extend_from_slice(b"VA ");
        number(out, value_len);
    } else {
        out.extend_from_slice(b"HD");
    }
}

/// An `mg` hit: `VA <size>` and the value when `v` was given, else `HD`.
pub fn get_hit(out: &mut Vec<u8>, request: &MetaGet<'_>, item: &ItemMeta<'_>, value: &[u8]) {
    if get_hit_head(out, request, item, value.len()) {
        out.extend_from_slice(value);
        out.extend_from_slice(VALUE_END);
    }
}

/// What follows an `mg` hit's value.
pub const VALUE_END: &[u8] = b"\r\n";

/// An `mg` hit's line, for a value of `value_len` bytes. `true` when the value and
/// [`VALUE_END`] must follow (`v`); the caller writes them.
pub fn get_hit_head(
    out: &mut Vec<u8>,
    request: &MetaGet<'_>,
    item: &ItemMeta<'_>,
    value_len: usize,
) -> bool {
    value_or_header(out, request.returns_value(), value_len);
    let mut ttl = item.ttl_before;
    for &letter in request.flags.as_slice() {
        match letter {
            b'T' => ttl = item.ttl,
            b'N' if item.created => ttl = item.ttl,
            b's' => {
                flag(out, b's');
                number(out, value_len);
            }
            b't' => ttl_flag(out, ttl),
            b'c' => {
                flag(out, b'c');
                number(out, item.cas);
            }
            b'f' => {
                flag(out, b'f');
                number(out, item.client_flags);
            }
            b'l' => {
                flag(out, b'l');
                number(out, item.last_access);
            }
            b'h' => {
                flag(out, b'h');
                out.push(if item.fetched { b'1' } else { b'0' });
            }
            b'O' => opaque_flag(out, request.opaque),
            b'k' => key_flag(out, item.key, item.key_base64),
            _ => {}
        }
    }
    if item.win_sent {
        flag(out, b'Z');
    }
    if item.stale {
        flag(out, b'X');
    }
    if item.win {
        flag(out, b'W');
    }
    out.extend_from_slice(b"\r\n");
    request.returns_value()
}

/// An `mg` miss: `EN` with `O` and `k` (the key decoded from the request). Under `q` the
/// server writes nothing instead.
pub fn get_miss(out: &mut Vec<u8>, request: &MetaGet<'_>, key: &[u8]) {
    status_line(
        out,
        MISS,
        &request.flags,
        request.opaque,
        key,
        request.key.base64,
    );
}

/// An `ms` outcome with `O`, `k` and `c` (the item's new CAS) in request order.
pub fn set_outcome(out: &mut Vec<u8>, request: &MetaSet<'_>, status: Status, key: &[u8], cas: u64) {
    out.extend_from_slice(status.code());
    for &letter in request.flags.as_slice() {
        match letter {
            b'O' => opaque_flag(out, request.opaque),
            b'k' => key_flag(out, key, request.key.base64),
            b'c' => {
                flag(out, b'c');
                number(out, cas);
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// An `md` outcome with `O` and `k`.
pub fn delete_outcome(out: &mut Vec<u8>, request: &MetaDelete<'_>, status: Status, key: &[u8]) {
    status_line(
        out,
        status.code(),
        &request.flags,
        request.opaque,
        key,
        request.key.base64,
    );
}

/// What a successful `ma` reports about the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArithDone {
    /// The new number (for an item `N` created: the initial value).
    pub value: u64,
    pub cas: u64,
    /// Seconds left after this request, `None` for never.
    pub ttl: Option<u32>,
    /// Seconds left before this request's `T` (or `N`, for an item it created).
    pub ttl_before: Option<u32>,
    pub created: bool,
}

/// A successful `ma`: `VA <len>` and the number when `v` was given, else `HD`; `c` and `t` of
/// the item (`t` in flag order, as [`get_hit`]), `O`, `k`.
pub fn arith_done(out: &mut Vec<u8>, request: &MetaArith<'_>, key: &[u8], done: &ArithDone) {
    let mut digits = itoa::Buffer::new();
    let value = digits.format(done.value).as_bytes();
    value_or_header(out, request.returns_value(), value.len());
    let mut ttl = done.ttl_before;
    for &letter in request.flags.as_slice() {
        match letter {
            b'T' => ttl = done.ttl,
            b'N' if done.created => ttl = done.ttl,
            b'c' => {
                flag(out, b'c');
                number(out, done.cas);
            }
            b't' => ttl_flag(out, ttl),
            b'O' => opaque_flag(out, request.opaque),
            b'k' => key_flag(out, key, request.key.base64),
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
    if request.returns_value() {
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// An `ma` that changed nothing (`NF`, `EX`, `NS`), with `O` and `k`.
pub fn arith_failed(out: &mut Vec<u8>, request: &MetaArith<'_>, status: Status, key: &[u8]) {
    status_line(
        out,
        status.code(),
        &request.flags,
        request.opaque,
        key,
        request.key.base64,
    );
}

/// What `me` reports about an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugInfo {
    /// Seconds left, -1 for never.
    pub exp: i64,
    /// Seconds since the last access.
    pub last_access: u64,
    pub cas: u64,
    pub fetched: bool,
    /// memcached's slab class; rampart reports its own size class.
    pub class: u32,
    /// Item size in memcached's accounting (header, key, value).
    pub size: u64,
}

/// `ME <key> exp=<s> la=<s> cas=<n> fetch=<yes|no> cls=<n> size=<n>`.
pub fn debug(out: &mut Vec<u8>, key: &[u8], base64: bool, info: &DebugInfo) {
    out.extend_from_slice(b"ME ");
    if base64 {
        base64::encode(key, out);
    } else {
        out.extend_from_slice(key);
    }
    out.extend_from_slice(b" exp=");
    number(out, info.exp);
    out.extend_from_slice(b" la=");
    number(out, info.last_access);
    out.extend_from_slice(b" cas=");
    number(out, info.cas);
    out.extend_from_slice(if info.fetched {
        b" fetch=yes"
    } else {
        b" fetch=no"
    });
    out.extend_from_slice(b" cls=");
    number(out, info.class);
    out.extend_from_slice(b" size=");
    number(out, info.size);
    out.extend_from_slice(b"\r\n");
}

/// `MN`.
pub fn noop(out: &mut Vec<u8>) {
    out.extend_from_slice(NOOP);
    out.extend_from_slice(b"\r\n");
}
