//! memcached's `_meta_flag_preparse`: every flag token checked in order, with its error rules.
//!
//! A repeated letter (or a byte >= 127) and an unknown letter stop at once; a bad value
//! records its error and goes on, so the last bad value names the line. `F` with a bad value
//! has no line of its own and keeps the one before (or `bad command line format`).

use super::MetaError;
use crate::base64;
use crate::request::{MAX_KEY_BYTES, MAX_OPAQUE_BYTES, MetaFlags};
use crate::text::{parse_i32_wrapping, parse_u32, parse_u64};

/// The flags of one meta line, with the values of those that carry one.
#[derive(Debug, Default)]
pub(super) struct Preparsed<'a> {
    /// Every letter seen, in order.
    pub letters: MetaFlags,
    pub base64: bool,
    /// After the `O`.
    pub opaque: Option<&'a [u8]>,
    pub opaque_too_long: bool,
    pub touch: Option<i64>,
    pub vivify: Option<i64>,
    pub recache: Option<i64>,
    pub client_flags: Option<u32>,
    pub cas: Option<u64>,
    pub mode: Option<u8>,
    pub initial: Option<u64>,
    pub delta: Option<u64>,
}

impl Preparsed<'_> {
    /// The letters a command uses, in the client's order.
    pub fn flags(&self, used: &[u8]) -> MetaFlags {
        let mut flags = MetaFlags::default();
        for &letter in self.letters.as_slice() {
            if used.contains(&letter) {
                flags.push(letter);
            }
        }
        flags
    }
}

fn ttl(value: &[u8], error: &mut Option<MetaError>) -> Option<i64> {
    let parsed = parse_i32_wrapping(value).map(i64::from);
    if parsed.is_none() {
        *error = Some(MetaError::BadToken);
    }
    parsed
}

pub(super) fn preparse<'a>(key: &[u8], tokens: &[&'a [u8]]) -> Result<Preparsed<'a>, MetaError> {
    let mut out = Preparsed::default();
    let mut seen = [false; 127];
    let mut has_error = false;
    let mut error: Option<MetaError> = None;
    for &token in tokens {
        let letter = token[0];
        if letter >= 127 || seen[usize::from(letter)] {
            return Err(MetaError::DuplicateFlag);
        }
        seen[usize::from(letter)] = true;
        let value = &token[1..];
        let before = error;
        match letter {
            b'b' => {
                out.base64 = true;
                let mut scratch = [0u8; MAX_KEY_BYTES];
                if base64::decode(key, &mut scratch).is_none() {
                    error = Some(MetaError::KeyDecode);
                }
            }
            b'N' => out.vivify = ttl(value, &mut error),
            b'T' => out.touch = ttl(value, &mut error),
            b'R' => out.recache = ttl(value, &mut error),
            b'O' => {
                out.opaque = Some(value);
                out.opaque_too_long = token.len() > MAX_OPAQUE_BYTES;
            }
            b'l' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'v' | b'h' | b'u' | b'q'
            | b'I' => {}
            b'F' => {
                out.client_flags = parse_u32(value);
                has_error |= out.client_flags.is_none();
            }
            b'C' => {
                out.cas = parse_u64(value);
                if out.cas.is_none() {
                    error = Some(MetaError::BadToken);
                }
            }
            b'M' => {
                if token.len() == 2 {
                    out.mode = Some(token[1]);
                } else {
                    error = Some(MetaError::ModeLength);
                }
            }
            b'J' => {
                out.initial = parse_u64(value);
                if out.initial.is_none() {
                    error = Some(MetaError::InvalidInitial);
                }
            }
            b'D' => {
                out.delta = parse_u64(value);
                if out.delta.is_none() {
                    error = Some(MetaError::InvalidDelta);
                }
            }
            _ => return Err(MetaError::InvalidFlag),
        }
        has_error |= error != before;
        out.letters.push(letter);
    }
    if has_error {
        return Err(error.unwrap_or(MetaError::BadCommandLine));
    }
    Ok(out)
}
