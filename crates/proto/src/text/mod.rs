//! memcached's text protocol: request framing and parsing, and reply encoding.
//!
//! # Format
//! ```text
//! <command> <arg>...\r\n            a request line (a bare \n is accepted too)
//! <data block>\r\n                  after storage commands, exactly <bytes> long
//! ```
//! Tokens are separated by one or more spaces and nothing else, exactly as memcached's
//! tokenizer: a tab or a control byte is part of a key. Argument counts, number syntax and every
//! error line follow memcached 1.6 (see `../shared/REFERENCE.md` and `docs/compatibility.md`).

mod commands;
mod encode;
mod numbers;
pub mod reply;

pub use encode::encode;

pub use numbers::{parse_i32, parse_i32_wrapping, parse_u32, parse_u64};

use crate::request::{MAX_KEY_BYTES, Request};

/// A request line may not exceed this without a newline, except for `get`/`gets` (memcached
/// makes the same exception for large multigets).
pub const MAX_LINE_BYTES: usize = 2048;
/// Bound on a `get`/`gets` line without a newline. memcached has none; we refuse to buffer more
/// than this for one request line.
pub const MAX_GET_LINE_BYTES: usize = 16 * 1024 * 1024;
/// memcached's `sizeof(item)` on a 64-bit host, plus the 8-byte CAS it stores with every item:
/// the per-item header that counts against `-I`.
pub const ITEM_HEADER_BYTES: usize = 48 + CAS_BYTES;

/// The CAS field of memcached's item header, absent under `-C`.
const CAS_BYTES: usize = 8;

/// The parts of the server's configuration that decide how a request line is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `-I`: the largest item, header included, as memcached measures it.
    pub item_size_max: usize,
    /// Not `-F`. memcached refuses a disabled `flush_all` before it looks at the arguments,
    /// so the parser must know.
    pub flush_enabled: bool,
    /// Not `-C`: memcached's items carry an 8-byte CAS, counted against `-I`, and binary
    /// stores honour their CAS. Under `-C` neither.
    pub cas_enabled: bool,
}

impl Limits {
    /// Whether memcached would accept an item of this shape under `-I` (its `item_size_ok`):
    /// header, key and its NUL, 4 bytes of client flags when nonzero, and the value with `\r\n`.
    pub fn item_fits(&self, key_len: usize, flags: u32, value_len: usize) -> bool {
        let flags_len = if flags == 0 { 0 } else { 4 };
        let cas_len = if self.cas_enabled { 0 } else { CAS_BYTES };
        let total = (ITEM_HEADER_BYTES - cas_len) + key_len + 1 + flags_len + value_len + 2;
        total <= self.item_size_max
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            item_size_max: 1024 * 1024,
            flush_enabled: true,
            cas_enabled: true,
        }
    }
}

/// The outcome of looking at the front of a connection's buffer. `Close` here means an
/// overlong line or an HTTP request: the peer cannot be resynchronised.
pub type Parsed<'a> = crate::Parsed<Frame<'a>>;

/// One complete frame of the text protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A well-formed request.
    Request(Request<'a>),
    /// A request refused by the parser; the stream continues after it.
    Reject { error: TextError, noreply: bool },
    /// A storage request whose value exceeds `-I`. The reply is
    /// `SERVER_ERROR object too large for cache`; the next `swallow` bytes (the data block and
    /// its `\r\n`) are discarded as they arrive. memcached also drops the old item on `set`.
    TooLarge {
        key: &'a [u8],
        unlink: bool,
        swallow: usize,
        noreply: bool,
    },
    /// A meta command (`mg`, `ms`, `md`, `ma`, `mn`, `me`): memcached reads them from the same
    /// line parser, so one connection can mix both.
    Meta(crate::meta::Frame<'a>),
}

/// The client's mistakes the text protocol names, each with memcached's exact line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("ERROR")]
    UnknownCommand,
    #[error("CLIENT_ERROR bad command line format")]
    BadCommandLine,
    #[error("CLIENT_ERROR bad data chunk")]
    BadDataChunk,
    #[error("CLIENT_ERROR invalid exptime argument")]
    InvalidExptime,
    #[error("CLIENT_ERROR invalid numeric delta argument")]
    InvalidDelta,
    #[error("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]")]
    DeleteUsage,
    #[error("CLIENT_ERROR flush_all not allowed")]
    FlushDisabled,
}

impl TextError {
    /// The reply line, without `\r\n`.
    pub fn line(self) -> &'static [u8] {
        match self {
            TextError::UnknownCommand => b"ERROR",
            TextError::BadCommandLine => b"CLIENT_ERROR bad command line format",
            TextError::BadDataChunk => b"CLIENT_ERROR bad data chunk",
            TextError::InvalidExptime => b"CLIENT_ERROR invalid exptime argument",
            TextError::InvalidDelta => b"CLIENT_ERROR invalid numeric delta argument",
            TextError::DeleteUsage => {
                b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"
            }
            TextError::FlushDisabled => b"CLIENT_ERROR flush_all not allowed",
        }
    }
}

/// Parses the request at the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parsed<'a> {
    let Some(newline) = memchr::memchr(b'\n', buf) else {
        return if unterminated_line_allowed(buf) {
            Parsed::Incomplete
        } else {
            Parsed::Close
        };
    };
    let mut line = &buf[..newline];
    // memcached strips the '\r' only from lines longer than one byte.
    if line.len() > 1 && line.ends_with(b"\r") {
        line = &line[..line.len() - 1];
    }
    let after_line = newline + 1;
    commands::dispatch(line, buf, after_line, limits)
}

/// Whether to keep waiting for the newline of a line that has none yet.
fn unterminated_line_allowed(buf: &[u8]) -> bool {
    if buf.len() <= MAX_LINE_BYTES {
        return true;
    }
    let leading_spaces = buf.iter().take_while(|&&b| b == b' ').count();
    let rest = &buf[leading_spaces..];
    leading_spaces <= 100
        && (rest.starts_with(b"get ") || rest.starts_with(b"gets "))
        && buf.len() <= MAX_GET_LINE_BYTES
}

/// No command other than the get family needs more tokens than this.
const KEPT_TOKENS: usize = 8;

/// The first few tokens of a line, and how many there are in all.
pub(crate) struct Tokens<'a> {
    line: &'a [u8],
    first: [&'a [u8]; KEPT_TOKENS],
    /// Every token of the line, counted even past `KEPT`.
    count: usize,
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(line: &'a [u8]) -> Self {
        let mut first: [&'a [u8]; KEPT_TOKENS] = [&[]; KEPT_TOKENS];
        let mut count = 0;
        for token in line.split(|&b| b == b' ').filter(|t| !t.is_empty()) {
            if count < KEPT_TOKENS {
                first[count] = token;
            }
            count += 1;
        }
        Tokens { line, first, count }
    }

    /// Token `i`, or empty past the end (memcached's terminal token).
    pub(crate) fn get(&self, i: usize) -> &'a [u8] {
        if i < self.count.min(KEPT_TOKENS) {
            self.first[i]
        } else {
            &[]
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// memcached's `set_noreply_maybe`: the last token is `noreply`.
    pub(crate) fn noreply(&self) -> bool {
        self.count > 0 && self.count <= KEPT_TOKENS && self.first[self.count - 1] == b"noreply"
    }

    /// The rest of the line after token `i` (which must exist).
    pub(crate) fn rest_after(&self, i: usize) -> &'a [u8] {
        let token = self.get(i);
        let start = token.as_ptr() as usize - self.line.as_ptr() as usize + token.len();
        &self.line[start..]
    }
}

/// Whether a key is acceptable to memcached's text protocol.
pub(crate) fn key_ok(key: &[u8]) -> bool {
    key.len() <= MAX_KEY_BYTES
}

#[cfg(test)]
mod tests;
