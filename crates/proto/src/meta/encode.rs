//! The client side of the meta protocol: requests back into bytes.
//!
//! Used by load generators and by the parser's round-trip tests; `parse(encode(r)) == r` for
//! every meta request the parser produces. Classic text requests are not meta: use
//! [`crate::text::encode`] for those (this appends nothing for them).

use crate::request::{MetaFlags, MetaKey, MetaSetMode, Request};

/// The value of one flag letter, written after it.
enum Value<'v> {
    None,
    Bytes(&'v [u8]),
    Signed(i64),
    Unsigned(u64),
}

fn line<'v>(
    out: &mut Vec<u8>,
    command: &[u8],
    key: &MetaKey<'_>,
    length: Option<usize>,
    flags: &MetaFlags,
    value_of: impl Fn(u8) -> Value<'v>,
) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(command);
    out.push(b' ');
    out.extend_from_slice(key.raw);
    if let Some(length) = length {
        out.push(b' ');
        out.extend_from_slice(digits.format(length).as_bytes());
    }
    for &letter in flags.as_slice() {
        out.push(b' ');
        out.push(letter);
        match value_of(letter) {
            Value::None => {}
            Value::Bytes(bytes) => out.extend_from_slice(bytes),
            Value::Signed(n) => out.extend_from_slice(digits.format(n).as_bytes()),
            Value::Unsigned(n) => out.extend_from_slice(digits.format(n).as_bytes()),
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn signed(n: Option<i64>) -> Value<'static> {
    n.map_or(Value::None, Value::Signed)
}

fn unsigned(n: Option<u64>) -> Value<'static> {
    n.map_or(Value::None, Value::Unsigned)
}

/// Appends the wire form of a meta `request`.
pub fn encode(request: &Request<'_>, out: &mut Vec<u8>) {
    match request {
        Request::MetaGet(get) => {
            let flags = with_letter(get.flags, b'b', get.key.base64);
            let flags = with_letter(flags, b'O', get.opaque.is_some());
            let flags = with_letter(flags, b'T', get.touch.is_some());
            let flags = with_letter(flags, b'N', get.vivify.is_some());
            let flags = with_letter(flags, b'R', get.recache.is_some());
            line(out, b"mg", &get.key, None, &flags, |f| match f {
                b'O' => get.opaque.map_or(Value::None, Value::Bytes),
                b'T' => signed(get.touch),
                b'N' => signed(get.vivify),
                b'R' => signed(get.recache),
                _ => Value::None,
            })
        }
        Request::MetaSet(set) => {
            let mode = [set.mode.letter()];
            let flags = with_letter(set.flags, b'M', set.mode != MetaSetMode::Set);
            let flags = with_letter(flags, b'C', set.cas.is_some());
            let flags = with_letter(flags, b'F', set.client_flags != 0);
            let flags = with_letter(flags, b'T', set.exptime != 0);
            let flags = with_letter(flags, b'O', set.opaque.is_some());
            let flags = with_letter(flags, b'b', set.key.base64);
            line(
                out,
                b"ms",
                &set.key,
                Some(set.data.len()),
                &flags,
                |f| match f {
                    b'O' => set.opaque.map_or(Value::None, Value::Bytes),
                    b'M' => Value::Bytes(&mode),
                    b'C' => unsigned(set.cas),
                    b'F' => Value::Unsigned(u64::from(set.client_flags)),
                    b'T' => Value::Signed(set.exptime),
                    _ => Value::None,
                },
            );
            out.extend_from_slice(set.data);
            out.extend_from_slice(b"\r\n");
        }
        Request::MetaDelete(delete) => {
            let flags = with_letter(delete.flags, b'b', delete.key.base64);
            let flags = with_letter(flags, b'O', delete.opaque.is_some());
            let flags = with_letter(flags, b'C', delete.cas.is_some());
            let flags = with_letter(flags, b'T', delete.exptime.is_some());
            line(out, b"md", &delete.key, None, &flags, |f| match f {
                b'O' => delete.opaque.map_or(Value::None, Value::Bytes),
                b'C' => unsigned(delete.cas),
                b'T' => signed(delete.exptime),
                _ => Value::None,
            })
        }
        Request::MetaArith(arith) => {
            let mode: &[u8] = if arith.incr { b"I" } else { b"D" };
            let flags = with_letter(arith.flags, b'M', !arith.incr);
            let flags = with_letter(flags, b'D', arith.delta != 1);
            let flags = with_letter(flags, b'J', arith.initial != 0);
            let flags = with_letter(flags, b'b', arith.key.base64);
            let flags = with_letter(flags, b'O', arith.opaque.is_some());
            let flags = with_letter(flags, b'N', arith.vivify.is_some());
            let flags = with_letter(flags, b'T', arith.touch.is_some());
            let flags = with_letter(flags, b'C', arith.cas.is_some());
            line(out, b"ma", &arith.key, None, &flags, |f| match f {
                b'O' => arith.opaque.map_or(Value::None, Value::Bytes),
                b'M' => Value::Bytes(mode),
                b'D' => Value::Unsigned(arith.delta),
                b'J' => Value::Unsigned(arith.initial),
                b'N' => signed(arith.vivify),
                b'T' => signed(arith.touch),
                b'C' => unsigned(arith.cas),
                _ => Value::None,
            });
        }
        Request::MetaNoop => out.extend_from_slice(b"mn\r\n"),
        Request::MetaDebug(debug) => {
            out.extend_from_slice(b"me ");
            out.extend_from_slice(debug.key.raw);
            if debug.key.base64 {
                out.extend_from_slice(b" b");
            }
            out.extend_from_slice(b"\r\n");
        }
        _ => {}
    }
}

/// `flags` with `letter` added at the end when `wanted` and absent (a request built by hand,
/// or from the binary protocol, need not list the letters its values imply).
fn with_letter(flags: MetaFlags, letter: u8, wanted: bool) -> MetaFlags {
    let mut flags = flags;
    if wanted {
        flags.push(letter);
    }
    flags
}
