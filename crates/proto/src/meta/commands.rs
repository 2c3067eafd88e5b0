//! Meta command dispatch, checking in memcached's order so that the same mistake gets the
//! same line.

use super::flags::{Preparsed, preparse};
use super::{Frame, MetaError, Parsed};
use crate::base64;
use crate::request::{
    MAX_KEY_BYTES, MetaArith, MetaDebug, MetaDelete, MetaGet, MetaKey, MetaSet, MetaSetMode,
    Request,
};
use crate::text::{Limits, parse_i32_wrapping};

/// memcached tokenizes at most 23 tokens (plus its terminal one); more is refused anyway.
const KEPT_TOKENS: usize = 23;
/// memcached's `MFLAG_MAX_OPT_LENGTH`: more tokens than this, terminal one included, is refused.
const MAX_NTOKENS: usize = 20;

/// The letters each command keeps (others are checked, then ignored as memcached does).
const GET_FLAGS: &[u8] = b"bcfhklOqstuvNRT";
const SET_FLAGS: &[u8] = b"bckOqICFTM";
const DELETE_FLAGS: &[u8] = b"bkOqCIT";
const ARITH_FLAGS: &[u8] = b"bcktOqvCDJNTM";

struct Tokens<'a> {
    kept: [&'a [u8]; KEPT_TOKENS],
    count: usize,
}

impl<'a> Tokens<'a> {
    fn new(line: &'a [u8]) -> Self {
        let mut kept: [&'a [u8]; KEPT_TOKENS] = [&[]; KEPT_TOKENS];
        let mut count = 0;
        for token in line.split(|&b| b == b' ').filter(|t| !t.is_empty()) {
            if count == KEPT_TOKENS {
                break;
            }
            kept[count] = token;
            count += 1;
        }
        Tokens { kept, count }
    }

    fn get(&self, i: usize) -> &'a [u8] {
        if i < self.count { self.kept[i] } else { &[] }
    }

    fn from(&self, i: usize) -> &[&'a [u8]] {
        &self.kept[i.min(self.count)..self.count]
    }

    /// memcached's `ntokens`, which counts a terminal empty token.
    fn ntokens(&self) -> usize {
        self.count + 1
    }
}

fn complete(consumed: usize, frame: Frame<'_>) -> Parsed<'_> {
    Parsed::Complete { consumed, frame }
}

fn reject(after_line: usize, error: MetaError) -> Parsed<'static> {
    reject_swallowing(after_line, error, 0)
}

fn reject_swallowing(after_line: usize, error: MetaError, swallow: usize) -> Parsed<'static> {
    complete(after_line, Frame::Reject { error, swallow })
}

fn request(after_line: usize, request: Request<'_>) -> Parsed<'_> {
    complete(after_line, Frame::Request(request))
}

/// Parses a meta line; `None` when its command is not a meta command.
pub(crate) fn dispatch<'a>(
    line: &'a [u8],
    buf: &'a [u8],
    after_line: usize,
    limits: &Limits,
) -> Option<Parsed<'a>> {
    let tokens = Tokens::new(line);
    Some(match tokens.get(0) {
        b"mg" => get(&tokens, after_line),
        b"ms" => set(&tokens, buf, after_line, limits),
        b"md" => delete(&tokens, after_line),
        b"ma" => arith(&tokens, after_line),
        b"mn" => request(after_line, Request::MetaNoop),
        b"me" => debug(&tokens, after_line),
        _ => return None,
    })
}

/// The checks `mg`, `md` and `ma` share before the flags: `Err` is the refusal.
fn key_and_length<'a>(tokens: &Tokens<'a>, too_long: MetaError) -> Result<&'a [u8], MetaError> {
    if tokens.ntokens() < 3 {
        return Err(MetaError::UnknownCommand);
    }
    let key = tokens.get(1);
    if key.len() > MAX_KEY_BYTES {
        return Err(MetaError::BadCommandLine);
    }
    if tokens.ntokens() > MAX_NTOKENS {
        return Err(too_long);
    }
    Ok(key)
}

fn meta_key<'a>(raw: &'a [u8], flags: &Preparsed<'_>) -> MetaKey<'a> {
    MetaKey {
        raw,
        base64: flags.base64,
    }
}

fn get<'a>(tokens: &Tokens<'a>, after_line: usize) -> Parsed<'a> {
    let key = match key_and_length(tokens, MetaError::GetFlagsTooLong) {
        Ok(key) => key,
        Err(error) => return reject(after_line, error),
    };
    let flags = match preparse(key, tokens.from(2)) {
        Ok(flags) => flags,
        Err(error) => return reject(after_line, error),
    };
    // memcached checks the opaque while writing the reply, after the fetch; refusing it
    // before is the same line without the side effects of a request it will not answer.
    if flags.opaque_too_long {
        return reject(after_line, MetaError::OpaqueTooLong);
    }
    let get = MetaGet {
        key: meta_key(key, &flags),
        flags: flags.flags(GET_FLAGS),
        opaque: flags.opaque,
        touch: flags.touch,
        vivify: flags.vivify,
        recache: flags.recache,
    };
    request(after_line, Request::MetaGet(get))
}

fn set<'a>(tokens: &Tokens<'a>, buf: &'a [u8], after_line: usize, limits: &Limits) -> Parsed<'a> {
    if tokens.ntokens() < 3 {
        return reject(after_line, MetaError::UnknownCommand);
    }
    let key = tokens.get(1);
    if key.len() > MAX_KEY_BYTES || tokens.ntokens() == 3 {
        return reject(after_line, MetaError::BadCommandLine);
    }
    if tokens.ntokens() > MAX_NTOKENS {
        return reject(after_line, MetaError::FlagsTooLong);
    }
    let Some(length) = parse_i32_wrapping(tokens.get(2)).and_then(|n| usize::try_from(n).ok())
    else {
        return reject(after_line, MetaError::BadCommandLine);
    };
    if length > i32::MAX as usize - 2 {
        return reject(after_line, MetaError::BadCommandLine);
    }
    // From here on memcached knows the data length and swallows the block after an error.
    let swallow = length + 2;
    let flags = match preparse(key, tokens.from(3)) {
        Ok(flags) => flags,
        Err(error) => return reject_swallowing(after_line, error, swallow),
    };
    let mode = match flags.mode {
        None => MetaSetMode::Set,
        Some(letter) => match MetaSetMode::from_letter(letter) {
            Some(mode) => mode,
            None => return reject_swallowing(after_line, MetaError::InvalidSetMode, swallow),
        },
    };
    if flags.opaque_too_long {
        return reject_swallowing(after_line, MetaError::OpaqueTooLong, swallow);
    }
    let client_flags = flags.client_flags.unwrap_or(0);
    let key = meta_key(key, &flags);
    let mut scratch = [0u8; MAX_KEY_BYTES];
    if !limits.item_fits(key.decode(&mut scratch).len(), client_flags, length) {
        return complete(after_line, Frame::TooLarge { key, swallow });
    }
    let end = after_line + swallow;
    if buf.len() < end {
        return Parsed::Incomplete;
    }
    if &buf[end - 2..end] != b"\r\n" {
        return reject(end, MetaError::BadDataChunk);
    }
    let set = MetaSet {
        key,
        flags: flags.flags(SET_FLAGS),
        mode,
        cas: flags.cas,
        client_flags,
        exptime: flags.touch.unwrap_or(0),
        opaque: flags.opaque,
        data: &buf[after_line..end - 2],
    };
    complete(end, Frame::Request(Request::MetaSet(set)))
}

fn delete<'a>(tokens: &Tokens<'a>, after_line: usize) -> Parsed<'a> {
    let key = match key_and_length(tokens, MetaError::FlagsTooLong) {
        Ok(key) => key,
        Err(error) => return reject(after_line, error),
    };
    let Ok(flags) = preparse(key, tokens.from(2)) else {
        return reject(after_line, MetaError::InvalidOrDuplicateFlag);
    };
    if flags.opaque_too_long {
        return reject(after_line, MetaError::OpaqueTooLong);
    }
    let delete = MetaDelete {
        key: meta_key(key, &flags),
        flags: flags.flags(DELETE_FLAGS),
        cas: flags.cas,
        exptime: flags.touch,
        opaque: flags.opaque,
    };
    request(after_line, Request::MetaDelete(delete))
}

fn arith<'a>(tokens: &Tokens<'a>, after_line: usize) -> Parsed<'a> {
    let key = match key_and_length(tokens, MetaError::FlagsTooLong) {
        Ok(key) => key,
        Err(error) => return reject(after_line, error),
    };
    let Ok(flags) = preparse(key, tokens.from(2)) else {
        return reject(after_line, MetaError::InvalidOrDuplicateFlag);
    };
    let incr = match flags.mode {
        None | Some(b'I' | b'+') => true,
        Some(b'D' | b'-') => false,
        Some(_) => return reject(after_line, MetaError::InvalidArithMode),
    };
    // memcached checks the opaque while writing the reply, after the arithmetic is done.
    if flags.opaque_too_long {
        return reject(after_line, MetaError::OpaqueTooLong);
    }
    let arith = MetaArith {
        key: meta_key(key, &flags),
        flags: flags.flags(ARITH_FLAGS),
        incr,
        delta: flags.delta.unwrap_or(1),
        initial: flags.initial.unwrap_or(0),
        vivify: flags.vivify,
        touch: flags.touch,
        cas: flags.cas,
        opaque: flags.opaque,
    };
    request(after_line, Request::MetaArith(arith))
}

fn debug<'a>(tokens: &Tokens<'a>, after_line: usize) -> Parsed<'a> {
    let key = tokens.get(1);
    if tokens.ntokens() < 3 || key.len() > MAX_KEY_BYTES {
        return reject(after_line, MetaError::BadCommandLine);
    }
    let base64 = tokens.ntokens() >= 4 && tokens.get(2) == b"b";
    if base64 && base64::decode(key, &mut [0u8; MAX_KEY_BYTES]).is_none() {
        return reject(after_line, MetaError::BadCommandLine);
    }
    let key = MetaKey { raw: key, base64 };
    request(after_line, Request::MetaDebug(MetaDebug { key }))
}
