//! Text command dispatch: one function per command family, each checking argument counts and
//! numbers in memcached's order so that the same mistake gets the same line.
//!
//! # Format
//! ```text
//! get|gets <key>*                                   gat|gats <exptime> <key>*
//! set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]
//! cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]
//! incr|decr <key> <delta> [noreply]                 delete <key> [0] [noreply]
//! touch <key> <exptime> [noreply]                   flush_all [delay] [noreply]
//! verbosity <level> [noreply]                       version | quit | stats [group]
//! shutdown [graceful]                               cache_memlimit <megabytes> [noreply]
//! ```

use super::numbers::{parse_i32, parse_u32, parse_u64};
use super::{Frame, Limits, Parsed, TextError, Tokens, key_ok};
use crate::request::{
    Acl, Admin, AdminCommand, Arith, AuthCommand, CacheMemlimit, Delete, FlushAll, Get, Keys,
    LruCrawler, Request, ShutdownMode, Slabs, Stats, Store, StoreMode, Touch, Verbosity, Watch,
};

/// A frame that takes just the request line.
fn line_frame(after_line: usize, frame: Frame<'_>) -> Parsed<'_> {
    Parsed::Complete {
        consumed: after_line,
        frame,
    }
}

fn reject(after_line: usize, error: TextError, noreply: bool) -> Parsed<'static> {
    Parsed::Complete {
        consumed: after_line,
        frame: Frame::Reject { error, noreply },
    }
}

fn request(after_line: usize, request: Request<'_>) -> Parsed<'_> {
    line_frame(after_line, Frame::Request(request))
}

/// memcached's `ntokens` counts a terminal empty token; `count` does not.
fn count_in(tokens: &Tokens<'_>, min_ntokens: usize, max_ntokens: usize) -> bool {
    let ntokens = tokens.count() + 1;
    (min_ntokens..=max_ntokens).contains(&ntokens)
}

pub(super) fn dispatch<'a>(
    line: &'a [u8],
    buf: &'a [u8],
    after_line: usize,
    limits: &Limits,
) -> Parsed<'a> {
    let tokens = Tokens::new(line);
    let command = tokens.get(0);
    // No valid command is shorter than two bytes.
    if tokens.count() == 0 || command.len() < 2 {
        return reject(after_line, TextError::UnknownCommand, false);
    }
    if crate::meta::is_meta_command(command) {
        return meta(line, buf, after_line, limits);
    }
    match command {
        b"get" | b"gets" | b"gat" | b"gats" => {
            if tokens.count() + 1 < 3 {
                return reject(after_line, TextError::UnknownCommand, false);
            }
            get(&tokens, after_line, command)
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" => {
            if !count_in(&tokens, 6, 7) {
                return reject(after_line, TextError::UnknownCommand, false);
            }
            storage(&tokens, buf, after_line, limits, false)
        }
        b"cas" => {
            if !count_in(&tokens, 7, 8) {
                return reject(after_line, TextError::UnknownCommand, false);
            }
            storage(&tokens, buf, after_line, limits, true)
        }
        b"incr" | b"decr" => {
            if !count_in(&tokens, 4, 5) {
                return reject(after_line, TextError::UnknownCommand, false);
            }
            arith(&tokens, after_line, command == b"incr")
        }
        b"delete" => {
            if !count_in(&tokens, 3, 5) {
                return reject(after_line, TextError::UnknownCommand, false);
            }
            delete(&tokens, after_line)
        }
        b"touch" => {
            if !count_in(&tokens, 4, 5) {
                return reject(after_line, TextError::UnknownCommand, false);
            }
            touch(&tokens, after_line)
        }
        b"flush_all" => {
            if !count_in(&tokens, 2, 4) {
                return reject(after_line, TextError::UnknownCommand, false);
            }
            flush_all(&tokens, after_line, limits)
        }
        b"verbosity" => {
            if !count_in(&tokens, 3, 4) {
                return reject(after_line, TextError::UnknownCommand, false);
            }
            verbosity(&tokens, after_line)
        }
        b"cache_memlimit" => {
            if !count_in(&tokens, 3, 4) {
                return reject(after_line, TextError::UnknownCommand, false);
            }
            let noreply = tokens.noreply();
            match parse_u32(tokens.get(1)) {
                Some(megabytes) => request(
                    after_line,
                    Request::CacheMemlimit(CacheMemlimit { megabytes, noreply }),
                ),
                // memcached answers a bad number with a plain ERROR.
                None => reject(after_line, TextError::UnknownCommand, noreply),
            }
        }
        b"refresh_certs" => request(
            after_line,
            Request::RefreshCerts {
                noreply: tokens.noreply(),
            },
        ),
        b"version" => request(after_line, Request::Version),
        b"quit" => request(after_line, Request::Quit),
        b"shutdown" => {
            let mode = match (tokens.count(), tokens.get(1)) {
                (1, _) => ShutdownMode::Immediate,
                (2, b"graceful") => ShutdownMode::Graceful,
                _ => ShutdownMode::Invalid,
            };
            request(after_line, Request::Shutdown(mode))
        }
        b"stats" => {
            let word = |i: usize| (tokens.count() > i).then(|| tokens.get(i));
            let stats = Stats {
                group: word(1),
                args: [word(2), word(3)],
            };
            request(after_line, Request::Stats(stats))
        }
        b"lru_crawler" | b"lru" | b"slabs" | b"watch" => {
            let admin = Admin {
                command: admin_command(&tokens),
                line: trim_spaces(line),
            };
            request(after_line, Request::Admin(admin))
        }
        b"acl" => {
            let acl = match (tokens.count(), tokens.get(1), tokens.get(2)) {
                (2, b"reload", _) => Acl::Reload,
                (2, b"log", _) => Acl::Log,
                (3, b"log", b"reset") => Acl::LogReset,
                (count, b"check", identity) if count >= 4 => Acl::Check {
                    identity,
                    request: trim_spaces(tokens.rest_after(2)),
                },
                _ => Acl::Usage,
            };
            request(after_line, Request::Acl(acl))
        }
        b"auth" => {
            let command = match (tokens.count(), tokens.get(1)) {
                (2, b"reload") => AuthCommand::Reload,
                _ => AuthCommand::Usage,
            };
            request(after_line, Request::Auth(command))
        }
        _ => {
            // memcached hangs up on what looks like an HTTP request line.
            if tokens.get(tokens.count() - 1).starts_with(b"HTTP/") {
                Parsed::Close
            } else {
                reject(after_line, TextError::UnknownCommand, false)
            }
        }
    }
}

/// memcached's parse of `lru_crawler`, `lru`, `slabs` and `watch` (`proto_text.c`).
fn admin_command<'a>(tokens: &Tokens<'a>) -> AdminCommand<'a> {
    let count = tokens.count();
    match tokens.get(0) {
        b"lru_crawler" => AdminCommand::LruCrawler(match (count, tokens.get(1)) {
            (3, b"crawl") => LruCrawler::Crawl(tokens.get(2)),
            (3, b"metadump") => LruCrawler::Metadump(tokens.get(2)),
            (3, b"sleep") => LruCrawler::Sleep(parse_u32(tokens.get(2))),
            (3, b"tocrawl") => LruCrawler::ToCrawl(parse_u32(tokens.get(2))),
            (2, b"enable") => LruCrawler::Enable,
            (2, b"disable") => LruCrawler::Disable,
            _ => LruCrawler::Unknown,
        }),
        b"lru" => {
            let number = |i: usize| std::str::from_utf8(tokens.get(i)).ok()?.parse::<f64>().ok();
            let valid = match (count, tokens.get(1)) {
                (3, b"mode") => matches!(tokens.get(2), b"flat" | b"segmented"),
                (6, b"tune") => (2..6).all(|i| number(i).is_some()),
                (3, b"temp_ttl") => parse_i32(tokens.get(2)).is_some(),
                _ => false,
            };
            AdminCommand::Lru { valid }
        }
        b"slabs" => AdminCommand::Slabs(match (count, tokens.get(1)) {
            (4, b"reassign") => match (parse_i32(tokens.get(2)), parse_i32(tokens.get(3))) {
                (Some(source), Some(destination)) => Slabs::Reassign {
                    source,
                    destination,
                },
                _ => Slabs::BadFormat,
            },
            (3 | 4, b"automove") => match parse_u32(tokens.get(2)) {
                Some(level) => Slabs::Automove(level),
                None => Slabs::BadFormat,
            },
            _ => Slabs::Unknown,
        }),
        _ => {
            let mut watch = Watch {
                streams: 0,
                unknown: false,
            };
            for i in 1..count {
                match Watch::stream(tokens.get(i)) {
                    Some(stream) => watch.streams |= stream,
                    None => watch.unknown = true,
                }
            }
            AdminCommand::Watch(watch)
        }
    }
}

/// `bytes` without leading and trailing spaces.
fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// Hands a meta line to the meta codec.
fn meta<'a>(line: &'a [u8], buf: &'a [u8], after_line: usize, limits: &Limits) -> Parsed<'a> {
    match crate::meta::dispatch(line, buf, after_line, limits) {
        Some(crate::meta::Parsed::Complete { consumed, frame }) => Parsed::Complete {
            consumed,
            frame: Frame::Meta(frame),
        },
        Some(crate::meta::Parsed::Incomplete) => Parsed::Incomplete,
        Some(crate::meta::Parsed::Close) => Parsed::Close,
        // Not reached: the caller checked the command.
        None => reject(after_line, TextError::UnknownCommand, false),
    }
}

fn get<'a>(tokens: &Tokens<'a>, after_line: usize, command: &[u8]) -> Parsed<'a> {
    let cas = command.ends_with(b"s");
    let touching = command.starts_with(b"gat");
    let (touch, keys_after) = if touching {
        match parse_i32(tokens.get(1)) {
            Some(exptime) => (Some(i64::from(exptime)), 1),
            None => return reject(after_line, TextError::InvalidExptime, false),
        }
    } else {
        (None, 0)
    };
    let keys = if tokens.count() == keys_after + 2 {
        Keys::one(tokens.get(keys_after + 1))
    } else {
        Keys::new(tokens.rest_after(keys_after))
    };
    if !keys.iter().all(key_ok) {
        return reject(after_line, TextError::BadCommandLine, false);
    }
    request(after_line, Request::Get(Get { keys, cas, touch }))
}

fn storage<'a>(
    tokens: &Tokens<'a>,
    buf: &'a [u8],
    after_line: usize,
    limits: &Limits,
    with_cas: bool,
) -> Parsed<'a> {
    let noreply = tokens.noreply();
    let key = tokens.get(1);
    if !key_ok(key) {
        return reject(after_line, TextError::BadCommandLine, noreply);
    }
    let (Some(flags), Some(exptime), Some(length)) = (
        parse_u32(tokens.get(2)),
        parse_i32(tokens.get(3)),
        parse_i32(tokens.get(4)),
    ) else {
        return reject(after_line, TextError::BadCommandLine, noreply);
    };
    let mode = if with_cas {
        match parse_u64(tokens.get(5)) {
            Some(unique) => StoreMode::Cas(unique),
            None => return reject(after_line, TextError::BadCommandLine, noreply),
        }
    } else {
        match tokens.get(0) {
            b"set" => StoreMode::Set,
            b"add" => StoreMode::Add,
            b"replace" => StoreMode::Replace,
            b"append" => StoreMode::Append,
            _ => StoreMode::Prepend,
        }
    };
    let Ok(length) = usize::try_from(length) else {
        return reject(after_line, TextError::BadCommandLine, noreply);
    };
    if length > i32::MAX as usize - 2 {
        return reject(after_line, TextError::BadCommandLine, noreply);
    }
    if !limits.item_fits(key.len(), flags, length) {
        return line_frame(
            after_line,
            Frame::TooLarge {
                key,
                unlink: mode == StoreMode::Set,
                swallow: length + 2,
                noreply,
            },
        );
    }
    let end = after_line + length + 2;
    if buf.len() < end {
        return Parsed::Incomplete;
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Parsed::Complete {
            consumed: end,
            frame: Frame::Reject {
                error: TextError::BadDataChunk,
                noreply,
            },
        };
    }
    let store = Store {
        mode,
        key,
        flags,
        exptime: i64::from(exptime),
        data: &buf[after_line..end - 2],
        noreply,
    };
    Parsed::Complete {
        consumed: end,
        frame: Frame::Request(Request::Store(store)),
    }
}

fn arith<'a>(tokens: &Tokens<'a>, after_line: usize, incr: bool) -> Parsed<'a> {
    let noreply = tokens.noreply();
    let key = tokens.get(1);
    if !key_ok(key) {
        return reject(after_line, TextError::BadCommandLine, noreply);
    }
    let Some(delta) = parse_u64(tokens.get(2)) else {
        return reject(after_line, TextError::InvalidDelta, noreply);
    };
    let arith = Arith {
        incr,
        key,
        delta,
        noreply,
    };
    request(after_line, Request::Arith(arith))
}

fn delete<'a>(tokens: &Tokens<'a>, after_line: usize) -> Parsed<'a> {
    let mut noreply = false;
    if tokens.count() > 2 {
        // memcached still accepts the old `delete <key> 0` form, and nothing else.
        let hold_is_zero = tokens.get(2) == b"0";
        noreply = tokens.noreply();
        let valid = (tokens.count() == 3 && (hold_is_zero || noreply))
            || (tokens.count() == 4 && hold_is_zero && noreply);
        if !valid {
            return reject(after_line, TextError::DeleteUsage, noreply);
        }
    }
    let key = tokens.get(1);
    if !key_ok(key) {
        return reject(after_line, TextError::BadCommandLine, noreply);
    }
    request(after_line, Request::Delete(Delete { key, noreply }))
}

fn touch<'a>(tokens: &Tokens<'a>, after_line: usize) -> Parsed<'a> {
    let noreply = tokens.noreply();
    let key = tokens.get(1);
    if !key_ok(key) {
        return reject(after_line, TextError::BadCommandLine, noreply);
    }
    let Some(exptime) = parse_i32(tokens.get(2)) else {
        return reject(after_line, TextError::InvalidExptime, noreply);
    };
    let touch = Touch {
        key,
        exptime: i64::from(exptime),
        noreply,
    };
    request(after_line, Request::Touch(touch))
}

fn flush_all<'a>(tokens: &Tokens<'a>, after_line: usize, limits: &Limits) -> Parsed<'a> {
    let noreply = tokens.noreply();
    if !limits.flush_enabled {
        return reject(after_line, TextError::FlushDisabled, noreply);
    }
    let bare = if noreply { 2 } else { 1 };
    let delay = if tokens.count() == bare {
        0
    } else {
        match parse_i32(tokens.get(1)) {
            Some(delay) => i64::from(delay),
            None => return reject(after_line, TextError::InvalidExptime, noreply),
        }
    };
    request(after_line, Request::FlushAll(FlushAll { delay, noreply }))
}

fn verbosity<'a>(tokens: &Tokens<'a>, after_line: usize) -> Parsed<'a> {
    let noreply = tokens.noreply();
    let Some(level) = parse_u32(tokens.get(1)) else {
        return reject(after_line, TextError::BadCommandLine, noreply);
    };
    request(after_line, Request::Verbosity(Verbosity { level, noreply }))
}
