//! memcached's binary protocol: request framing and parsing, request and response encoding.
//!
//! # Format
//! ```text
//! <24-byte header><extras><key><value>        lengths in the header; see [`Header`]
//! ```
//! Requests become the same logical [`Request`]s as meta commands (a `getk` is an `mg` with
//! `v f c k`); the frame keeps the opcode and opaque that the response must echo. Argument
//! checks follow memcached 1.6.18's `dispatch_bin_command` in order: lengths that contradict
//! each other are `Unknown command` and a close, a key over 250 bytes or extras of the wrong
//! size for the opcode are `Invalid arguments` and a close, an unknown opcode is
//! `Unknown command` and its body is skipped. A value over `-I` is `Too large.` and skipped.
//! Anything but the request magic closes the connection without a reply.

mod commands;
mod encode;
mod header;
pub mod reply;

pub use encode::encode;
pub use header::{HEADER_BYTES, Header, Opcode, REQUEST_MAGIC, RESPONSE_MAGIC, Status};

use crate::request::{MAX_KEY_BYTES, Request};
use crate::text::Limits;

/// memcached's `MAX_SASL_MECH_LEN`: a longer mechanism name is `Invalid arguments`.
pub const MAX_SASL_MECH_BYTES: usize = 32;

/// The outcome of looking at the front of a connection's buffer. `Close` here means the bytes
/// are not a binary request (bad magic): memcached closes without a reply.
pub type Parsed<'a> = crate::Parsed<Frame<'a>>;

/// One complete frame of the binary protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A well-formed request. Its response echoes `opcode` and `opaque`; quiet opcodes
    /// ([`Opcode::is_quiet`]) leave some responses out, which is the server's business.
    Request {
        opcode: Opcode,
        opaque: u32,
        request: Request<'a>,
    },
    /// Refused with `status` (body [`Status::message`]); the next `swallow` bytes (the rest of
    /// the body) are discarded as they arrive and the stream goes on.
    Reject {
        opcode: u8,
        opaque: u32,
        status: Status,
        swallow: usize,
    },
    /// Refused with `status`, then the connection is closed once the reply is written: the
    /// lengths cannot be trusted to find the next request.
    Fatal {
        opcode: u8,
        opaque: u32,
        status: Status,
    },
    /// A store whose value exceeds `-I`: `Too large.`, the value (`swallow` bytes) is
    /// discarded as it arrives, and memcached unlinks the key when `unlink` (set).
    TooLarge {
        opcode: Opcode,
        opaque: u32,
        key: &'a [u8],
        unlink: bool,
        swallow: usize,
    },
}

/// Parses the request at the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parsed<'a> {
    match buf.first() {
        None => return Parsed::Incomplete,
        Some(&magic) if magic != REQUEST_MAGIC => return Parsed::Close,
        Some(_) => {}
    }
    let Some(header) = Header::parse(buf) else {
        return Parsed::Incomplete;
    };
    let fatal = |status| Parsed::Complete {
        consumed: HEADER_BYTES,
        frame: Frame::Fatal {
            opcode: header.opcode,
            opaque: header.opaque,
            status,
        },
    };
    let key_len = usize::from(header.key_len);
    let extras_len = usize::from(header.extras_len);
    let body_len = header.body_len as usize;
    if key_len + extras_len > body_len {
        return fatal(Status::UnknownCommand);
    }
    if key_len > MAX_KEY_BYTES {
        return fatal(Status::InvalidArguments);
    }
    let Some(opcode) = Opcode::from_u8(header.opcode) else {
        return Parsed::Complete {
            consumed: HEADER_BYTES,
            frame: Frame::Reject {
                opcode: header.opcode,
                opaque: header.opaque,
                status: Status::UnknownCommand,
                swallow: body_len,
            },
        };
    };
    commands::dispatch(opcode, &header, buf, limits)
        .unwrap_or_else(|| fatal(Status::InvalidArguments))
}

#[cfg(test)]
mod tests;
