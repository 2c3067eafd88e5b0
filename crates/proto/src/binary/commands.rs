//! Binary opcodes onto logical requests, with memcached's per-opcode length checks.

use super::{Frame, HEADER_BYTES, Header, MAX_SASL_MECH_BYTES, Opcode, Parsed, Status};
use crate::request::{
    FlushAll, MetaArith, MetaDelete, MetaFlags, MetaGet, MetaKey, MetaSet, MetaSetMode, Request,
    Sasl, Stats,
};
use crate::text::Limits;

/// The binary expiration that means "do not create" in increment/decrement.
pub(super) const NO_VIVIFY: u32 = 0xffff_ffff;

/// The meta flags a binary get family opcode stands for.
pub(super) fn get_flags(opcode: Opcode) -> MetaFlags {
    let mut flags = MetaFlags::default();
    if opcode != Opcode::Touch {
        flags.push(b'v');
    }
    flags.push(b'f');
    flags.push(b'c');
    if opcode.returns_key() {
        flags.push(b'k');
    }
    if opcode.is_quiet() {
        flags.push(b'q');
    }
    flags
}

/// `q` for a quiet opcode, plus `extra`.
pub(super) fn quiet_flags(opcode: Opcode, extra: &[u8]) -> MetaFlags {
    let mut flags = MetaFlags::from_letters(extra);
    if opcode.is_quiet() {
        flags.push(b'q');
    }
    flags
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(word)
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(word)
}

/// `None`: the lengths do not fit the opcode (`Invalid arguments`, then close).
pub(super) fn dispatch<'a>(
    opcode: Opcode,
    header: &Header,
    buf: &'a [u8],
    limits: &Limits,
) -> Option<Parsed<'a>> {
    use Opcode::*;
    let key_len = usize::from(header.key_len);
    let extras_len = usize::from(header.extras_len);
    let body_len = header.body_len as usize;
    let opaque = header.opaque;
    let cas = (header.cas != 0).then_some(header.cas);
    // The bytes memcached reads before acting: extras and key (a value is read later).
    let head_end = HEADER_BYTES + extras_len + key_len;
    let empty = key_len == 0 && extras_len == 0 && body_len == 0;
    let done = |consumed: usize, request: Request<'a>| {
        Some(Parsed::Complete {
            consumed,
            frame: Frame::Request {
                opcode,
                opaque,
                request,
            },
        })
    };
    // Wait for the bytes the opcode reads; `body_end` for those that read the value too.
    let body_end = HEADER_BYTES + body_len;
    macro_rules! need {
        ($end:expr) => {
            if buf.len() < $end {
                return Some(Parsed::Incomplete);
            }
        };
    }
    match opcode {
        Version | Noop | Quit | QuitQ | SaslListMechs => {
            if !empty {
                return None;
            }
            let request = match opcode {
                Version => Request::Version,
                Noop => Request::MetaNoop,
                SaslListMechs => Request::Sasl(Sasl::ListMechanisms),
                _ => Request::Quit,
            };
            done(HEADER_BYTES, request)
        }
        Flush | FlushQ => {
            if key_len != 0 || body_len != extras_len || !(extras_len == 0 || extras_len == 4) {
                return None;
            }
            need!(head_end);
            let delay = if extras_len == 4 {
                i64::from(be_u32(&buf[HEADER_BYTES..]))
            } else {
                0
            };
            let flush = FlushAll {
                delay,
                noreply: opcode.is_quiet(),
            };
            done(head_end, Request::FlushAll(flush))
        }
        Set | SetQ | Add | AddQ | Replace | ReplaceQ | Append | AppendQ | Prepend | PrependQ => {
            let with_extras = matches!(opcode, Set | SetQ | Add | AddQ | Replace | ReplaceQ);
            let valid = if with_extras {
                extras_len == 8 && key_len != 0 && body_len >= key_len + 8
            } else {
                key_len != 0 && extras_len == 0
            };
            if !valid {
                return None;
            }
            let value_len = body_len - key_len - extras_len;
            need!(head_end);
            let (client_flags, exptime) = if with_extras {
                let extras = &buf[HEADER_BYTES..];
                (be_u32(extras), i64::from(be_u32(&extras[4..])))
            } else {
                (0, 0)
            };
            let key = &buf[head_end - key_len..head_end];
            if !limits.item_fits(key_len, client_flags, value_len) {
                return Some(Parsed::Complete {
                    consumed: head_end,
                    frame: Frame::TooLarge {
                        opcode,
                        opaque,
                        key,
                        // memcached drops the old value only for set.
                        unlink: matches!(opcode, Set | SetQ),
                        swallow: value_len,
                    },
                });
            }
            need!(body_end);
            let mode = match opcode {
                Set | SetQ => MetaSetMode::Set,
                Add | AddQ => MetaSetMode::Add,
                Replace | ReplaceQ => MetaSetMode::Replace,
                Append | AppendQ => MetaSetMode::Append,
                _ => MetaSetMode::Prepend,
            };
            let set = MetaSet {
                key: MetaKey::plain(key),
                flags: quiet_flags(opcode, b""),
                mode,
                // memcached under -C sets the CAS on an item that has none: it is ignored.
                cas: cas.filter(|_| limits.cas_enabled),
                client_flags,
                exptime,
                opaque: None,
                data: &buf[head_end..body_end],
            };
            done(body_end, Request::MetaSet(set))
        }
        Get | GetQ | GetK | GetKQ => {
            if extras_len != 0 || body_len != key_len || key_len == 0 {
                return None;
            }
            need!(head_end);
            let get = MetaGet {
                key: MetaKey::plain(&buf[HEADER_BYTES..head_end]),
                flags: get_flags(opcode),
                opaque: None,
                touch: None,
                vivify: None,
                recache: None,
            };
            done(head_end, Request::MetaGet(get))
        }
        Touch | Gat | GatQ | GatK | GatKQ => {
            if extras_len != 4 || key_len == 0 {
                return None;
            }
            need!(head_end);
            let get = MetaGet {
                key: MetaKey::plain(&buf[HEADER_BYTES + 4..head_end]),
                flags: get_flags(opcode),
                opaque: None,
                touch: Some(i64::from(be_u32(&buf[HEADER_BYTES..]))),
                vivify: None,
                recache: None,
            };
            // memcached reads extras and key only; extra body bytes start the next header.
            done(head_end, Request::MetaGet(get))
        }
        Delete | DeleteQ => {
            if key_len == 0 || extras_len != 0 || body_len != key_len {
                return None;
            }
            need!(head_end);
            let delete = MetaDelete {
                key: MetaKey::plain(&buf[HEADER_BYTES..head_end]),
                flags: quiet_flags(opcode, b""),
                cas,
                exptime: None,
                opaque: None,
            };
            done(head_end, Request::MetaDelete(delete))
        }
        Increment | IncrementQ | Decrement | DecrementQ => {
            if key_len == 0 || extras_len != 20 || body_len != key_len + 20 {
                return None;
            }
            need!(head_end);
            let extras = &buf[HEADER_BYTES..HEADER_BYTES + 20];
            let expiration = be_u32(&extras[16..]);
            let arith = MetaArith {
                key: MetaKey::plain(&buf[HEADER_BYTES + 20..head_end]),
                flags: quiet_flags(opcode, b"vc"),
                incr: matches!(opcode, Increment | IncrementQ),
                delta: be_u64(extras),
                initial: be_u64(&extras[8..]),
                vivify: (expiration != NO_VIVIFY).then_some(i64::from(expiration)),
                touch: None,
                cas,
                opaque: None,
            };
            done(head_end, Request::MetaArith(arith))
        }
        Stat => {
            if extras_len != 0 {
                return None;
            }
            need!(head_end);
            let group = (key_len > 0).then(|| &buf[HEADER_BYTES..head_end]);
            // memcached reads the key only.
            done(head_end, Request::Stats(Stats::group(group)))
        }
        SaslAuth | SaslStep => {
            if extras_len != 0 || key_len == 0 {
                return None;
            }
            let data_len = body_len - key_len;
            need!(head_end);
            if key_len > MAX_SASL_MECH_BYTES || data_len > limits.item_size_max {
                return Some(Parsed::Complete {
                    consumed: head_end,
                    frame: Frame::Reject {
                        opcode: opcode.code(),
                        opaque,
                        status: Status::InvalidArguments,
                        swallow: data_len,
                    },
                });
            }
            need!(body_end);
            let mechanism = &buf[HEADER_BYTES..head_end];
            let data = &buf[head_end..body_end];
            let sasl = if opcode == SaslAuth {
                Sasl::Auth { mechanism, data }
            } else {
                Sasl::Step { mechanism, data }
            };
            done(body_end, Request::Sasl(sasl))
        }
    }
}
