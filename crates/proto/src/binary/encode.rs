//! The client side of the binary protocol: requests back into bytes.
//!
//! Used by load generators and by the parser's round-trip tests: for every request the parser
//! produces, parsing `encode(request, opaque)` gives back the same opcode, opaque and request.
//! Requests with no binary form (text-only commands, `me`) append nothing and give `None`;
//! `quitq` comes back as `quit` (both are [`Request::Quit`]; only the opcode tells them apart).

use super::commands::NO_VIVIFY;
use super::{HEADER_BYTES, Header, Opcode, REQUEST_MAGIC};
use crate::request::{MetaSetMode, Request, Sasl};

/// Appends the binary form of `request`, returning the opcode used.
pub fn encode(request: &Request<'_>, opaque: u32, out: &mut Vec<u8>) -> Option<Opcode> {
    use Opcode::*;
    let mut extras = [0u8; 20];
    let (opcode, extras_len, key, value, cas): (Opcode, usize, &[u8], &[u8], Option<u64>) =
        match request {
            Request::MetaGet(get) => {
                let quiet = get.quiet();
                let keyed = get.flags.has(b'k');
                let opcode = match (get.touch, get.returns_value(), keyed, quiet) {
                    (Some(_), false, _, _) => Touch,
                    (Some(_), true, false, false) => Gat,
                    (Some(_), true, false, true) => GatQ,
                    (Some(_), true, true, false) => GatK,
                    (Some(_), true, true, true) => GatKQ,
                    (None, _, false, false) => Get,
                    (None, _, false, true) => GetQ,
                    (None, _, true, false) => GetK,
                    (None, _, true, true) => GetKQ,
                };
                let extras_len = match get.touch {
                    // Binary expirations are unsigned 32-bit; other values wrap.
                    Some(exptime) => {
                        extras[..4].copy_from_slice(&(exptime as u32).to_be_bytes());
                        4
                    }
                    None => 0,
                };
                (opcode, extras_len, get.key.raw, &[], None)
            }
            Request::MetaSet(set) => {
                let quiet = set.quiet();
                let (opcode, extras_len) = match (set.mode, quiet) {
                    (MetaSetMode::Set, false) => (Set, 8),
                    (MetaSetMode::Set, true) => (SetQ, 8),
                    (MetaSetMode::Add, false) => (Add, 8),
                    (MetaSetMode::Add, true) => (AddQ, 8),
                    (MetaSetMode::Replace, false) => (Replace, 8),
                    (MetaSetMode::Replace, true) => (ReplaceQ, 8),
                    (MetaSetMode::Append, false) => (Append, 0),
                    (MetaSetMode::Append, true) => (AppendQ, 0),
                    (MetaSetMode::Prepend, false) => (Prepend, 0),
                    (MetaSetMode::Prepend, true) => (PrependQ, 0),
                };
                if extras_len == 8 {
                    extras[..4].copy_from_slice(&set.client_flags.to_be_bytes());
                    extras[4..8].copy_from_slice(&(set.exptime as u32).to_be_bytes());
                }
                (opcode, extras_len, set.key.raw, set.data, set.cas)
            }
            Request::MetaDelete(delete) => {
                let opcode = if delete.quiet() { DeleteQ } else { Delete };
                (opcode, 0, delete.key.raw, &[], delete.cas)
            }
            Request::MetaArith(arith) => {
                let opcode = match (arith.incr, arith.quiet()) {
                    (true, false) => Increment,
                    (true, true) => IncrementQ,
                    (false, false) => Decrement,
                    (false, true) => DecrementQ,
                };
                extras[..8].copy_from_slice(&arith.delta.to_be_bytes());
                extras[8..16].copy_from_slice(&arith.initial.to_be_bytes());
                let expiration = arith.vivify.map_or(NO_VIVIFY, |exptime| exptime as u32);
                extras[16..20].copy_from_slice(&expiration.to_be_bytes());
                (opcode, 20, arith.key.raw, &[], arith.cas)
            }
            Request::MetaNoop => (Noop, 0, &[], &[], None),
            Request::Version => (Version, 0, &[], &[], None),
            Request::Quit => (Quit, 0, &[], &[], None),
            Request::FlushAll(flush) => {
                let opcode = if flush.noreply { FlushQ } else { Flush };
                let extras_len = if flush.delay == 0 {
                    0
                } else {
                    extras[..4].copy_from_slice(&(flush.delay as u32).to_be_bytes());
                    4
                };
                (opcode, extras_len, &[], &[], None)
            }
            Request::Stats(stats) => (Stat, 0, stats.group.unwrap_or_default(), &[], None),
            Request::Sasl(Sasl::ListMechanisms) => (SaslListMechs, 0, &[], &[], None),
            Request::Sasl(Sasl::Auth { mechanism, data }) => (SaslAuth, 0, mechanism, data, None),
            Request::Sasl(Sasl::Step { mechanism, data }) => (SaslStep, 0, mechanism, data, None),
            _ => return None,
        };
    let body_len = extras_len + key.len() + value.len();
    let header = Header {
        magic: REQUEST_MAGIC,
        opcode: opcode.code(),
        key_len: key.len() as u16,
        extras_len: extras_len as u8,
        data_type: 0,
        vbucket_or_status: 0,
        body_len: body_len as u32,
        opaque,
        cas: cas.unwrap_or(0),
    };
    out.reserve(HEADER_BYTES + body_len);
    header.encode(out);
    out.extend_from_slice(&extras[..extras_len]);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    Some(opcode)
}
