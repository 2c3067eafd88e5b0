//! memcached's meta protocol: `mg`, `ms`, `md`, `ma`, `mn`, `me`.
//!
//! # Format
//! ```text
//! <mg|md|ma|me> <key> <flag>*\r\n
//! ms <key> <datalen> <flag>*\r\n<data>\r\n
//! mn\r\n
//! ```
//! Meta lines share the text protocol's line framing and tokenizer (one connection may mix
//! them, as memcached allows), so [`crate::text::parse`] hands lines starting with one of
//! these commands here and returns [`crate::text::Frame::Meta`]. [`parse`] on its own reads
//! only meta commands (anything else is `ERROR`), for clients and tests. Every refusal carries
//! memcached 1.6.18's exact line; unlike `noreply`, the `q` flag never hides an error.

mod commands;
mod encode;
mod flags;
pub mod reply;

pub use encode::encode;

use crate::request::{MetaKey, Request};
use crate::text::{Limits, MAX_LINE_BYTES};

/// The outcome of looking at the front of a connection's buffer. `Close` here means a line
/// over [`MAX_LINE_BYTES`]: the peer cannot be resynchronised.
pub type Parsed<'a> = crate::Parsed<Frame<'a>>;

/// One complete frame of the meta protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A well-formed request.
    Request(Request<'a>),
    /// Refused: the reply is `error.line()` (even under `q`); then the next `swallow` bytes
    /// (an `ms` data block and its `\r\n`, 0 for other commands) are discarded as they arrive.
    Reject { error: MetaError, swallow: usize },
    /// An `ms` whose value exceeds `-I`: `SERVER_ERROR object too large for cache`, memcached
    /// also unlinks the key (whatever the mode), then `swallow` bytes are discarded.
    TooLarge { key: MetaKey<'a>, swallow: usize },
}

/// The client's mistakes the meta protocol names, each with memcached 1.6.18's exact line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("ERROR")]
    UnknownCommand,
    #[error("CLIENT_ERROR bad command line format")]
    BadCommandLine,
    #[error("CLIENT_ERROR bad data chunk")]
    BadDataChunk,
    #[error("CLIENT_ERROR invalid flag")]
    InvalidFlag,
    #[error("CLIENT_ERROR duplicate flag")]
    DuplicateFlag,
    /// `md` and `ma` report every flag problem with this one line.
    #[error("CLIENT_ERROR invalid or duplicate flag")]
    InvalidOrDuplicateFlag,
    #[error("CLIENT_ERROR bad token in command line format")]
    BadToken,
    #[error("CLIENT_ERROR incorrect length for M token")]
    ModeLength,
    #[error("CLIENT_ERROR invalid mode for ms M token")]
    InvalidSetMode,
    #[error("CLIENT_ERROR invalid mode for ma M token")]
    InvalidArithMode,
    #[error("CLIENT_ERROR error decoding key")]
    KeyDecode,
    #[error("CLIENT_ERROR invalid numeric initial value")]
    InvalidInitial,
    #[error("CLIENT_ERROR invalid numeric delta value")]
    InvalidDelta,
    #[error("CLIENT_ERROR opaque token too long")]
    OpaqueTooLong,
    /// `mg`'s wording.
    #[error("CLIENT_ERROR options flags are too long")]
    GetFlagsTooLong,
    /// `ms`, `md` and `ma`'s wording.
    #[error("CLIENT_ERROR options flags too long")]
    FlagsTooLong,
}

impl MetaError {
    /// The reply line, without `\r\n`.
    pub fn line(self) -> &'static [u8] {
        match self {
            MetaError::UnknownCommand => b"ERROR",
            MetaError::BadCommandLine => b"CLIENT_ERROR bad command line format",
            MetaError::BadDataChunk => b"CLIENT_ERROR bad data chunk",
            MetaError::InvalidFlag => b"CLIENT_ERROR invalid flag",
            MetaError::DuplicateFlag => b"CLIENT_ERROR duplicate flag",
            MetaError::InvalidOrDuplicateFlag => b"CLIENT_ERROR invalid or duplicate flag",
            MetaError::BadToken => b"CLIENT_ERROR bad token in command line format",
            MetaError::ModeLength => b"CLIENT_ERROR incorrect length for M token",
            MetaError::InvalidSetMode => b"CLIENT_ERROR invalid mode for ms M token",
            MetaError::InvalidArithMode => b"CLIENT_ERROR invalid mode for ma M token",
            MetaError::KeyDecode => b"CLIENT_ERROR error decoding key",
            MetaError::InvalidInitial => b"CLIENT_ERROR invalid numeric initial value",
            MetaError::InvalidDelta => b"CLIENT_ERROR invalid numeric delta value",
            MetaError::OpaqueTooLong => b"CLIENT_ERROR opaque token too long",
            MetaError::GetFlagsTooLong => b"CLIENT_ERROR options flags are too long",
            MetaError::FlagsTooLong => b"CLIENT_ERROR options flags too long",
        }
    }
}

/// Parses the meta request at the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parsed<'a> {
    let Some(newline) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > MAX_LINE_BYTES {
            Parsed::Close
        } else {
            Parsed::Incomplete
        };
    };
    let mut line = &buf[..newline];
    // memcached strips the '\r' only from lines longer than one byte.
    if line.len() > 1 && line.ends_with(b"\r") {
        line = &line[..line.len() - 1];
    }
    let after_line = newline + 1;
    match commands::dispatch(line, buf, after_line, limits) {
        Some(parsed) => parsed,
        None => Parsed::Complete {
            consumed: after_line,
            frame: Frame::Reject {
                error: MetaError::UnknownCommand,
                swallow: 0,
            },
        },
    }
}

/// Whether a text command token names a meta command (`text::parse` hands these over).
pub(crate) fn is_meta_command(command: &[u8]) -> bool {
    matches!(command, b"mg" | b"ms" | b"md" | b"ma" | b"mn" | b"me")
}

pub(crate) use commands::dispatch;

#[cfg(test)]
mod tests;
