//! The client side of memcached's text protocol replies: bytes in, one reply out.
//!
//! # Format
//! ```text
//! VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n   zero or more, then
//! END\r\n                                            the end of a retrieval
//! STORED\r\n | NOT_STORED\r\n | EXISTS\r\n | NOT_FOUND\r\n | DELETED\r\n | TOUCHED\r\n | OK\r\n
//! <number>\r\n                                       incr / decr
//! VERSION <text>\r\n
//! ERROR\r\n | CLIENT_ERROR <text>\r\n | SERVER_ERROR <text>\r\n
//! ```
//! A retrieval's reply is every `VALUE` block up to and including `END`, so one request gives
//! exactly one [`Reply`]. Nothing is copied: the parser only measures how many bytes a reply
//! spans, and the driver drops them.

/// A reply line longer than this without a newline means the stream is not memcached's.
pub const MAX_REPLY_LINE_BYTES: usize = 8 * 1024;
/// Largest data block the parser will wait for; memcached's own ceiling (`-I`) is 1 GiB, but a
/// load generator never asks for more than its `--value-size`.
pub const MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;

/// The outcome of looking at the front of a connection's read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed. Not an error.
    Incomplete,
    /// `consumed` bytes are one whole reply.
    Complete { consumed: usize, reply: Reply },
    /// The bytes cannot be a memcached reply and the stream cannot be resynchronised (a
    /// malformed `VALUE` header, a data block without its `\r\n`, an endless line).
    Invalid,
}

/// One reply, reduced to what a load generator counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The end of a retrieval with this many `VALUE` blocks: 0 is a miss.
    Values {
        found: u32,
    },
    Stored,
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched,
    Ok,
    /// The new value after `incr`/`decr`.
    Number(u64),
    Version,
    /// `ERROR`, `CLIENT_ERROR ...` or `SERVER_ERROR ...`.
    Error(ErrorKind),
    /// A whole line that is no reply memcached sends. The stream can continue after it.
    Unknown,
}

/// Who the server says was at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `ERROR`: an unknown command.
    Error,
    /// `CLIENT_ERROR <message>`.
    Client,
    /// `SERVER_ERROR <message>`.
    Server,
}

/// Parses the reply at the front of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut at = 0;
    let mut found: u32 = 0;
    // Each turn consumes one `VALUE` block, so the loop ends within `buf.len()` turns.
    loop {
        let rest = &buf[at..];
        let Some((line, after_line)) = next_line(rest) else {
            return if rest.len() > MAX_REPLY_LINE_BYTES {
                Parsed::Invalid
            } else {
                Parsed::Incomplete
            };
        };
        if let Some(header) = line.strip_prefix(b"VALUE ") {
            let Some(bytes) = value_bytes(header) else {
                return Parsed::Invalid;
            };
            // The data block and its `\r\n`.
            let block_end = after_line + bytes + 2;
            if rest.len() < block_end {
                return Parsed::Incomplete;
            }
            if &rest[block_end - 2..block_end] != b"\r\n" {
                return Parsed::Invalid;
            }
            at += block_end;
            found = found.saturating_add(1);
            continue;
        }
        let consumed = at + after_line;
        if line == b"END" {
            return Parsed::Complete {
                consumed,
                reply: Reply::Values { found },
            };
        }
        if found > 0 {
            // Only `END` may follow a `VALUE` block.
            return Parsed::Invalid;
        }
        return Parsed::Complete {
            consumed,
            reply: single_line(line),
        };
    }
}

/// The first line of `buf` without its `\r\n` (a bare `\n` is accepted), and the offset just
/// past the newline.
fn next_line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let newline = memchr::memchr(b'\n', buf)?;
    let line = &buf[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, newline + 1))
}

/// The `<bytes>` field of `<key> <flags> <bytes> [<cas>]`, if the header is well formed.
fn value_bytes(header: &[u8]) -> Option<usize> {
    let mut fields = header.split(|&b| b == b' ');
    let key = fields.next()?;
    let flags = fields.next()?;
    let bytes = fields.next()?;
    let cas = fields.next();
    if key.is_empty() || fields.next().is_some() {
        return None;
    }
    decimal(flags)?;
    if let Some(cas) = cas {
        decimal(cas)?;
    }
    let bytes = usize::try_from(decimal(bytes)?).ok()?;
    (bytes <= MAX_VALUE_BYTES).then_some(bytes)
}

/// A non-empty run of ASCII digits that fits in a `u64`.
fn decimal(token: &[u8]) -> Option<u64> {
    if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    token.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn single_line(line: &[u8]) -> Reply {
    match line {
        b"STORED" => Reply::Stored,
        b"NOT_STORED" => Reply::NotStored,
        b"EXISTS" => Reply::Exists,
        b"NOT_FOUND" => Reply::NotFound,
        b"DELETED" => Reply::Deleted,
        b"TOUCHED" => Reply::Touched,
        b"OK" => Reply::Ok,
        b"ERROR" => Reply::Error(ErrorKind::Error),
        _ if line.starts_with(b"CLIENT_ERROR ") => Reply::Error(ErrorKind::Client),
        _ if line.starts_with(b"SERVER_ERROR ") => Reply::Error(ErrorKind::Server),
        _ if line.starts_with(b"VERSION ") => Reply::Version,
        _ => match decimal(line) {
            Some(n) => Reply::Number(n),
            None => Reply::Unknown,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every complete reply kind, with what it must parse to.
    const TABLE: &[(&[u8], Reply)] = &[
        (b"END\r\n", Reply::Values { found: 0 }),
        (
            b"VALUE k 0 5\r\nhello\r\nEND\r\n",
            Reply::Values { found: 1 },
        ),
        (b"VALUE k 7 0 99\r\n\r\nEND\r\n", Reply::Values { found: 1 }),
        (
            b"VALUE a 0 3\r\nx\r\n\r\nVALUE b 4294967295 2\r\nEN\r\nEND\r\n",
            Reply::Values { found: 2 },
        ),
        (b"STORED\r\n", Reply::Stored),
        (b"NOT_STORED\r\n", Reply::NotStored),
        (b"EXISTS\r\n", Reply::Exists),
        (b"NOT_FOUND\r\n", Reply::NotFound),
        (b"DELETED\r\n", Reply::Deleted),
        (b"TOUCHED\r\n", Reply::Touched),
        (b"OK\r\n", Reply::Ok),
        (b"42\r\n", Reply::Number(42)),
        (b"18446744073709551615\r\n", Reply::Number(u64::MAX)),
        (b"VERSION 1.6.18\r\n", Reply::Version),
        (b"ERROR\r\n", Reply::Error(ErrorKind::Error)),
        (
            b"CLIENT_ERROR bad data chunk\r\n",
            Reply::Error(ErrorKind::Client),
        ),
        (
            b"SERVER_ERROR out of memory storing object\r\n",
            Reply::Error(ErrorKind::Server),
        ),
        (b"STORED\n", Reply::Stored),
        (b"WHAT\r\n", Reply::Unknown),
        (b"18446744073709551616\r\n", Reply::Unknown),
        (b"\r\n", Reply::Unknown),
    ];

    /// Bytes that can never become a reply, however many more arrive.
    const INVALID: &[&[u8]] = &[
        b"VALUE k 0\r\n",
        b"VALUE k 0 x\r\n",
        b"VALUE  0 1\r\nx\r\nEND\r\n",
        b"VALUE k 0 1 2 3\r\nx\r\nEND\r\n",
        b"VALUE k 0 1 z\r\nx\r\nEND\r\n",
        b"VALUE k 0 99999999999999999999\r\n",
        b"VALUE k 0 3\r\nabcXY",
        b"VALUE k 0 1\r\nx\r\nSTORED\r\n",
    ];

    #[test]
    fn every_reply_kind_parses_whole() {
        for (bytes, reply) in TABLE {
            assert_eq!(
                parse(bytes),
                Parsed::Complete {
                    consumed: bytes.len(),
                    reply: *reply
                },
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete() {
        for (bytes, _) in TABLE {
            for cut in 0..bytes.len() {
                assert_eq!(
                    parse(&bytes[..cut]),
                    Parsed::Incomplete,
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }

    #[test]
    fn replies_back_to_back_parse_one_at_a_time() {
        let mut stream = Vec::new();
        for (bytes, _) in TABLE {
            stream.extend_from_slice(bytes);
        }
        let mut at = 0;
        for (bytes, reply) in TABLE {
            assert_eq!(
                parse(&stream[at..]),
                Parsed::Complete {
                    consumed: bytes.len(),
                    reply: *reply
                }
            );
            at += bytes.len();
        }
        assert_eq!(parse(&stream[at..]), Parsed::Incomplete);
    }

    #[test]
    fn a_stream_split_at_every_byte_gives_the_same_replies() {
        let mut stream = Vec::new();
        for (bytes, _) in TABLE {
            stream.extend_from_slice(bytes);
        }
        let expected: Vec<Reply> = TABLE.iter().map(|(_, reply)| *reply).collect();
        for split in 0..=stream.len() {
            // Bytes arrive in two reads; replies are taken off the front as they complete.
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                buf.extend_from_slice(chunk);
                while let Parsed::Complete { consumed, reply } = parse(&buf) {
                    got.push(reply);
                    buf.drain(..consumed);
                }
            }
            assert_eq!(got, expected, "split at {split}");
            assert!(buf.is_empty(), "split at {split}");
        }
    }

    #[test]
    fn garbage_is_invalid_not_incomplete() {
        for bytes in INVALID {
            assert_eq!(
                parse(bytes),
                Parsed::Invalid,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn an_endless_line_is_invalid() {
        let line = vec![b'A'; MAX_REPLY_LINE_BYTES];
        assert_eq!(parse(&line), Parsed::Incomplete);
        let line = vec![b'A'; MAX_REPLY_LINE_BYTES + 1];
        assert_eq!(parse(&line), Parsed::Invalid);
    }

    #[test]
    fn a_value_larger_than_the_bound_is_invalid() {
        let header = format!("VALUE k 0 {}\r\n", MAX_VALUE_BYTES + 1);
        assert_eq!(parse(header.as_bytes()), Parsed::Invalid);
        let header = format!("VALUE k 0 {}\r\n", MAX_VALUE_BYTES);
        assert_eq!(parse(header.as_bytes()), Parsed::Incomplete);
    }
}
