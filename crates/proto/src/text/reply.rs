//! Text protocol replies, appended to the connection's output buffer.
//!
//! # Format
//! ```text
//! VALUE <key> <flags> <bytes> [<cas unique>]\r\n<data>\r\n ... END\r\n
//! STORED | NOT_STORED | EXISTS | NOT_FOUND | DELETED | TOUCHED | OK\r\n
//! <decimal value>\r\n                         (incr/decr)
//! STAT <name> <value>\r\n ... END\r\n
//! ```
//! Nothing here allocates except when the output buffer itself must grow; a connection keeps
//! its buffer between requests, so in steady state no reply allocates.

pub const END: &[u8] = b"END";
pub const STORED: &[u8] = b"STORED";
pub const NOT_STORED: &[u8] = b"NOT_STORED";
pub const EXISTS: &[u8] = b"EXISTS";
pub const NOT_FOUND: &[u8] = b"NOT_FOUND";
pub const DELETED: &[u8] = b"DELETED";
pub const TOUCHED: &[u8] = b"TOUCHED";
pub const OK: &[u8] = b"OK";
pub const RESET: &[u8] = b"RESET";
pub const ERROR: &[u8] = b"ERROR";
pub const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache";
pub const OUT_OF_MEMORY: &[u8] = b"SERVER_ERROR out of memory";
pub const OUT_OF_MEMORY_STORING: &[u8] = b"SERVER_ERROR out of memory storing object";
pub const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value";
pub const SHUTDOWN_DISABLED: &[u8] = b"ERROR: shutdown not enabled";
pub const INVALID_SHUTDOWN_MODE: &[u8] = b"CLIENT_ERROR invalid shutdown mode";
pub const MEMLIMIT_TOO_SMALL: &[u8] = b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m";
pub const MEMLIMIT_NOT_BYTES: &[u8] = b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes";
pub const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections";

/// Appends `line` and `\r\n`.
pub fn line(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

/// Appends one `VALUE` block of a retrieval reply.
pub fn value(out: &mut Vec<u8>, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
    value_header(out, key, flags, data.len(), cas);
    out.extend_from_slice(data);
    out.extend_from_slice(VALUE_END);
}

/// What follows a `VALUE` block's data.
pub const VALUE_END: &[u8] = b"\r\n";

/// Appends the line that opens a `VALUE` block of `len` bytes; the data and [`VALUE_END`]
/// follow it (a server that sends the data from elsewhere writes them itself).
pub fn value_header(out: &mut Vec<u8>, key: &[u8], flags: u32, len: usize, cas: Option<u64>) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    out.extend_from_slice(digits.format(flags).as_bytes());
    out.push(b' ');
    out.extend_from_slice(digits.format(len).as_bytes());
    if let Some(cas) = cas {
        out.push(b' ');
        out.extend_from_slice(digits.format(cas).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a decimal number line (the reply to `incr`/`decr`).
pub fn number(out: &mut Vec<u8>, n: u64) {
    let mut digits = itoa::Buffer::new();
    line(out, digits.format(n).as_bytes());
}

/// Appends `STAT <name> <value>` for a numeric value.
pub fn stat_u64(out: &mut Vec<u8>, name: &str, value: u64) {
    let mut digits = itoa::Buffer::new();
    stat(out, name, digits.format(value).as_bytes());
}

/// Appends `STAT <name> <value>`.
pub fn stat(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(b"STAT ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_lines_match_memcached() {
        let mut out = Vec::new();
        value(&mut out, b"k", 5, b"abc", None);
        value(&mut out, b"k", 0, b"", Some(42));
        line(&mut out, END);
        assert_eq!(out, b"VALUE k 5 3\r\nabc\r\nVALUE k 0 0 42\r\n\r\nEND\r\n");
    }

    #[test]
    fn numbers_and_stats() {
        let mut out = Vec::new();
        number(&mut out, u64::MAX);
        stat_u64(&mut out, "curr_items", 7);
        stat(&mut out, "version", b"1.6.18");
        assert_eq!(
            out,
            b"18446744073709551615\r\nSTAT curr_items 7\r\nSTAT version 1.6.18\r\n"
        );
    }
}
