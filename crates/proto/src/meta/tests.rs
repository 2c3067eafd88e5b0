#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

use proptest::prelude::*;

use super::reply::{self, ItemMeta, Status};
use super::*;
use crate::request::{MetaArith, MetaFlags, MetaGet, MetaSet, MetaSetMode};
use crate::text;

fn parse_one(input: &[u8]) -> Parsed<'_> {
    parse(input, &Limits::default())
}

fn accepted(input: &[u8]) -> Request<'_> {
    match parse_one(input) {
        Parsed::Complete {
            frame: Frame::Request(request),
            consumed,
        } => {
            assert_eq!(
                consumed,
                input.len(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            request
        }
        other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(input)),
    }
}

fn rejected(input: &[u8]) -> (MetaError, usize, usize) {
    match parse_one(input) {
        Parsed::Complete {
            frame: Frame::Reject { error, swallow },
            consumed,
        } => (error, consumed, swallow),
        other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(input)),
    }
}

/// Each line is what memcached 1.6.18 answered to the same request.
#[test]
fn refusals_match_memcached() {
    let cases: &[(&[u8], &[u8], usize)] = &[
        (b"mg\r\n", b"ERROR", 0),
        (b"mg \r\n", b"ERROR", 0),
        (b"md\r\n", b"ERROR", 0),
        (b"mg k v v\r\n", b"CLIENT_ERROR duplicate flag", 0),
        (b"mg k k k\r\n", b"CLIENT_ERROR duplicate flag", 0),
        (b"mg k !\r\n", b"CLIENT_ERROR invalid flag", 0),
        (b"mg k E5\r\n", b"CLIENT_ERROR invalid flag", 0),
        (b"mg k P L x\r\n", b"CLIENT_ERROR invalid flag", 0),
        (
            b"mg k N\r\n",
            b"CLIENT_ERROR bad token in command line format",
            0,
        ),
        (
            b"mg k Nx\r\n",
            b"CLIENT_ERROR bad token in command line format",
            0,
        ),
        (
            b"mg k T\r\n",
            b"CLIENT_ERROR bad token in command line format",
            0,
        ),
        (b"mg Zm9 b k\r\n", b"CLIENT_ERROR error decoding key", 0),
        (b"mg Zm9v== b k\r\n", b"CLIENT_ERROR error decoding key", 0),
        (b"mg ==== b k\r\n", b"CLIENT_ERROR error decoding key", 0),
        (
            b"mg k a b c d e f g h i j k l m n o p q r s\r\n",
            b"CLIENT_ERROR options flags are too long",
            0,
        ),
        (
            b"mg k Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
            b"CLIENT_ERROR opaque token too long",
            0,
        ),
        (
            b"md k Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
            b"CLIENT_ERROR opaque token too long",
            0,
        ),
        (b"ms k\r\n", b"CLIENT_ERROR bad command line format", 0),
        (b"ms k x\r\n", b"CLIENT_ERROR bad command line format", 0),
        (b"ms k -1\r\n", b"CLIENT_ERROR bad command line format", 0),
        (
            b"ms k 2 MX\r\n",
            b"CLIENT_ERROR invalid mode for ms M token",
            4,
        ),
        (
            b"ms k 2 M\r\n",
            b"CLIENT_ERROR incorrect length for M token",
            4,
        ),
        (
            b"ms k 2 T\r\n",
            b"CLIENT_ERROR bad token in command line format",
            4,
        ),
        (b"ms k 2 F\r\n", b"CLIENT_ERROR bad command line format", 4),
        (b"ms k 2 S3\r\n", b"CLIENT_ERROR invalid flag", 4),
        (
            b"ms k 2 c k s t f O1 b\r\n",
            b"CLIENT_ERROR error decoding key",
            4,
        ),
        (
            b"ms k 2 Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
            b"CLIENT_ERROR opaque token too long",
            4,
        ),
        (b"md k x\r\n", b"CLIENT_ERROR invalid or duplicate flag", 0),
        (
            b"md k C5 I T30 q x\r\n",
            b"CLIENT_ERROR invalid or duplicate flag",
            0,
        ),
        (
            b"ma k MX\r\n",
            b"CLIENT_ERROR invalid mode for ma M token",
            0,
        ),
        (b"ma k Dx\r\n", b"CLIENT_ERROR invalid or duplicate flag", 0),
        (
            b"ma k D-1\r\n",
            b"CLIENT_ERROR invalid or duplicate flag",
            0,
        ),
        (
            b"ma k J-1 N0\r\n",
            b"CLIENT_ERROR invalid or duplicate flag",
            0,
        ),
        (b"me\r\n", b"CLIENT_ERROR bad command line format", 0),
        (b"me k b\r\n", b"CLIENT_ERROR bad command line format", 0),
        (b"mx k\r\n", b"ERROR", 0),
    ];
    for &(input, line, swallow) in cases {
        let (error, consumed, swallowed) = rejected(input);
        let shown = String::from_utf8_lossy(input);
        assert_eq!(error.line(), line, "{shown:?}");
        assert_eq!(error.to_string().as_bytes(), line, "{shown:?}");
        assert_eq!((consumed, swallowed), (input.len(), swallow), "{shown:?}");
    }
    let long_key = [b"mg ".as_slice(), &[b'k'; 251], b" v\r\n"].concat();
    assert_eq!(rejected(&long_key).0, MetaError::BadCommandLine);
    let long_key = [b"ms ".as_slice(), &[b'k'; 251], b" 2\r\n"].concat();
    // No data length is known yet, so nothing is swallowed (memcached reads `ab` as a command).
    assert_eq!(
        rejected(&long_key),
        (MetaError::BadCommandLine, long_key.len(), 0)
    );
}

#[test]
fn data_blocks_frame_like_set() {
    assert_eq!(
        parse_one(b"ms k 2\r\nabc\r\n"),
        Parsed::Complete {
            consumed: 12,
            frame: Frame::Reject {
                error: MetaError::BadDataChunk,
                swallow: 0
            }
        }
    );
    let limits = Limits {
        item_size_max: 1024,
        ..Limits::default()
    };
    match parse(b"ms Zm9v 2000 b\r\n", &limits) {
        Parsed::Complete {
            consumed: 16,
            frame: Frame::TooLarge { key, swallow: 2002 },
        } => assert_eq!((key.raw, key.base64), (&b"Zm9v"[..], true)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn requests_parse_to_their_logical_form() {
    let Request::MetaGet(get) = accepted(b"mg k s t v f c O123 k h l q R30 T-1 N5 u\r\n") else {
        panic!()
    };
    assert_eq!(get.key, MetaKey::plain(b"k"));
    assert_eq!(get.flags.as_slice(), b"stvfcOkhlqRTNu");
    assert_eq!(get.opaque, Some(&b"123"[..]));
    assert_eq!(
        (get.touch, get.vivify, get.recache),
        (Some(-1), Some(5), Some(30))
    );
    assert!(get.returns_value() && get.quiet() && get.no_lru_bump());

    // Flags memcached checks but ignores for mg are dropped.
    let Request::MetaGet(get) = accepted(b"mg k F5 C7 v\r\n") else {
        panic!()
    };
    assert_eq!(get.flags.as_slice(), b"v");

    assert_eq!(
        accepted(b"ms Zm9v 3 b MA C9 F7 T60 I q c k O1\r\nabc\r\n"),
        Request::MetaSet(MetaSet {
            key: MetaKey {
                raw: b"Zm9v",
                base64: true
            },
            flags: MetaFlags::from_letters(b"bMCFTIqckO"),
            mode: MetaSetMode::Append,
            cas: Some(9),
            client_flags: 7,
            exptime: 60,
            opaque: Some(b"1"),
            data: b"abc",
        })
    );
    assert_eq!(
        accepted(b"ma n MD D3 J10 N0 v\r\n"),
        Request::MetaArith(MetaArith {
            key: MetaKey::plain(b"n"),
            flags: MetaFlags::from_letters(b"MDJNv"),
            incr: false,
            delta: 3,
            initial: 10,
            vivify: Some(0),
            touch: None,
            cas: None,
            opaque: None,
        })
    );
    let Request::MetaDelete(delete) = accepted(b"md k C5 I T30 q\r\n") else {
        panic!()
    };
    assert_eq!((delete.cas, delete.exptime), (Some(5), Some(30)));
    assert!(delete.invalidate() && delete.quiet());
    assert_eq!(accepted(b"mn x y\r\n"), Request::MetaNoop);
    let Request::MetaDebug(debug) = accepted(b"me Zm9v b\r\n") else {
        panic!()
    };
    assert!(debug.key.base64);
    // Tabs belong to keys, a bare \n ends a line, runs of spaces separate tokens.
    let Request::MetaGet(get) = accepted(b"mg k\tx  v   \n") else {
        panic!()
    };
    assert_eq!(get.key.raw, b"k\tx");
}

#[test]
fn text_connections_read_meta_commands() {
    let limits = Limits::default();
    match text::parse(b"mn\r\n", &limits) {
        text::Parsed::Complete {
            consumed: 4,
            frame: text::Frame::Meta(Frame::Request(Request::MetaNoop)),
        } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        text::parse(b"ms k 2\r\na", &limits),
        text::Parsed::Incomplete
    );
    // Other words starting with m are still text's `ERROR`.
    for line in [&b"mx k\r\n"[..], b"mgg k\r\n", b"m\r\n"] {
        match text::parse(line, &limits) {
            text::Parsed::Complete {
                frame:
                    text::Frame::Reject {
                        error: text::TextError::UnknownCommand,
                        ..
                    },
                ..
            } => {}
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn every_truncation_is_incomplete() {
    let inputs: &[&[u8]] = &[
        b"mg k v f O1\r\n",
        b"ms k 3 T0 F5\r\nabc\r\n",
        b"md k q\r\n",
        b"ma k D2 v\r\n",
        b"mn\r\n",
        b"me k\r\n",
        b"ms k 2 MX\r\n",
    ];
    for input in inputs {
        for cut in 0..input.len() {
            assert_eq!(
                parse_one(&input[..cut]),
                Parsed::Incomplete,
                "{cut} of {input:?}"
            );
        }
        assert!(matches!(parse_one(input), Parsed::Complete { .. }));
    }
    assert_eq!(parse_one(&[b'm'; 3000]), Parsed::Close);
}

fn item<'k>(key: &'k [u8]) -> ItemMeta<'k> {
    ItemMeta {
        key,
        key_base64: false,
        client_flags: 0,
        cas: 1,
        ttl: None,
        ttl_before: None,
        created: false,
        fetched: false,
        last_access: 0,
        win: false,
        stale: false,
        win_sent: false,
    }
}

fn get_of(input: &[u8]) -> MetaGet<'_> {
    match accepted(input) {
        Request::MetaGet(get) => get,
        other => panic!("{other:?}"),
    }
}

/// Replies compared with memcached 1.6.18's bytes for the same requests.
#[test]
fn replies_match_memcached() {
    let mut out = Vec::new();
    reply::get_hit(&mut out, &get_of(b"mg k v c t s f\r\n"), &item(b"k"), b"ab");
    assert_eq!(out, b"VA 2 c1 t-1 s2 f0\r\nab\r\n");

    out.clear();
    reply::get_hit(&mut out, &get_of(b"mg k v q k O1\r\n"), &item(b"k"), b"ab");
    assert_eq!(out, b"VA 2 kk O1\r\nab\r\n");

    out.clear();
    let foo = ItemMeta {
        key_base64: true,
        ..item(b"foo")
    };
    reply::get_hit(&mut out, &get_of(b"mg Zm9v b k v\r\n"), &foo, b"x");
    assert_eq!(out, b"VA 1 kZm9v b\r\nx\r\n");

    out.clear();
    let stale = ItemMeta {
        stale: true,
        win: true,
        win_sent: true,
        ..item(b"k")
    };
    reply::get_hit(&mut out, &get_of(b"mg k\r\n"), &stale, b"");
    assert_eq!(out, b"HD Z X W\r\n");

    out.clear();
    reply::get_miss(&mut out, &get_of(b"mg k Oabc v\r\n"), b"k");
    reply::get_miss(&mut out, &get_of(b"mg Z=9v b k\r\n"), b"d\x0f");
    assert_eq!(out, b"EN Oabc\r\nEN kZA8= b\r\n");

    out.clear();
    let Request::MetaSet(set) = accepted(b"ms k 2 O5 c k\r\nab\r\n") else {
        panic!()
    };
    reply::set_outcome(&mut out, &set, Status::Stored, b"k", 7);
    reply::set_outcome(&mut out, &set, Status::NotStored, b"k", 0);
    assert_eq!(out, b"HD O5 c7 kk\r\nNS O5 c0 kk\r\n");

    out.clear();
    let Request::MetaArith(arith) = accepted(b"ma n v t c\r\n") else {
        panic!()
    };
    let done = reply::ArithDone {
        value: 13,
        cas: 4,
        ttl: None,
        ttl_before: None,
        created: false,
    };
    reply::arith_done(&mut out, &arith, b"n", &done);
    reply::arith_failed(&mut out, &arith, Status::NotFound, b"n");
    reply::noop(&mut out);
    assert_eq!(out, b"VA 2 t-1 c4\r\n13\r\nNF\r\nMN\r\n");
}

/// memcached walks the flags in order: a `t` before `N` (on a new item) or `T` shows the TTL
/// from before them (1.6.18: `mg x t N30 v` -> `VA 0 t-1 W`, `mg x N30 t v` -> `VA 0 t30 W`).
#[test]
fn ttl_follows_flag_order() {
    let vivified = ItemMeta {
        ttl: Some(30),
        created: true,
        win: true,
        ..item(b"x")
    };
    let mut out = Vec::new();
    reply::get_hit(&mut out, &get_of(b"mg x t N30 v\r\n"), &vivified, b"");
    reply::get_hit(&mut out, &get_of(b"mg x N30 t v\r\n"), &vivified, b"");
    assert_eq!(out, b"VA 0 t-1 W\r\n\r\nVA 0 t30 W\r\n\r\n");

    // `N` on an item that was there changes nothing; `T` does.
    let touched = ItemMeta {
        ttl: Some(30),
        ttl_before: Some(100),
        ..item(b"x")
    };
    out.clear();
    reply::get_hit(&mut out, &get_of(b"mg x t N5 T30\r\n"), &touched, b"");
    reply::get_hit(&mut out, &get_of(b"mg x N5 T30 t\r\n"), &touched, b"");
    assert_eq!(out, b"HD t100\r\nHD t30\r\n");
}

/// Meta lines built from parts the parser accepts.
fn meta_line() -> impl Strategy<Value = Vec<u8>> {
    let key = "[a-zA-Z0-9_:.]{1,40}";
    let num = "(0|[1-9][0-9]{0,8})";
    let get_flag = prop_oneof![
        "[cfhklqstuv]".prop_map(|s| s.into_bytes()),
        "O[a-z0-9]{0,8}".prop_map(|s| s.into_bytes()),
        "[NRT]-?(0|[1-9][0-9]{0,8})".prop_map(|s| s.into_bytes()),
    ];
    let get = (key, proptest::collection::vec(get_flag, 0..8)).prop_map(|(k, flags)| {
        let mut line = format!("mg {k}").into_bytes();
        for f in flags {
            line.push(b' ');
            line.extend(f);
        }
        line.extend_from_slice(b"\r\n");
        line
    });
    let set = (
        key,
        "[ -~]{0,30}",
        proptest::option::of("[EAPRS]"),
        proptest::option::of(num),
        "[ckqI]{0,3}",
    )
        .prop_map(|(k, data, mode, cas, letters)| {
            let mut line = format!("ms {k} {}", data.len());
            if let Some(mode) = mode {
                line += &format!(" M{mode}");
            }
            if let Some(cas) = cas {
                line += &format!(" C{cas} F{cas} T{cas}");
            }
            for letter in letters.chars() {
                line += &format!(" {letter}");
            }
            format!("{line}\r\n{data}\r\n").into_bytes()
        });
    let other = (
        key,
        "(md|ma)",
        proptest::option::of(num),
        "[kqOv]{0,2}",
        "(|MI|M\\+|MD|M-)",
    )
        .prop_map(|(k, command, n, letters, mode)| {
            let mut line = format!("{command} {k}");
            if let Some(n) = n {
                line += &format!(" C{n}");
                if command == "ma" {
                    line += &format!(" D{n} J{n} N{n}");
                } else {
                    line += &format!(" T{n} I");
                }
            }
            for letter in letters.chars() {
                if command == "ma" || letter != 'v' {
                    line += &format!(" {letter}");
                }
            }
            if command == "ma" && !mode.is_empty() {
                line += &format!(" {mode}");
            }
            format!("{line}\r\n").into_bytes()
        });
    prop_oneof![
        get,
        set,
        other,
        Just(b"mn\r\n".to_vec()),
        Just(b"me k\r\n".to_vec())
    ]
}

fn dedup_letters(line: &[u8]) -> bool {
    // memcached refuses a repeated flag letter; generated lines may repeat one.
    let text = String::from_utf8_lossy(line);
    let mut seen = std::collections::HashSet::new();
    text.trim_end()
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .skip(if text.starts_with("ms") { 3 } else { 2 })
        .all(|token| seen.insert(token.as_bytes()[0]))
}

proptest! {
    #[test]
    fn encode_then_parse_gives_the_request_back(line in meta_line()) {
        prop_assume!(dedup_letters(&line));
        let request = accepted(&line);
        let mut wire = Vec::new();
        encode(&request, &mut wire);
        prop_assert_eq!(accepted(&wire), request.clone());
        // A text connection reads the same bytes the same way.
        let mut again = Vec::new();
        text::encode(&request, &mut again);
        prop_assert_eq!(again, wire);
    }

    #[test]
    fn parsing_never_panics_and_stays_in_bounds(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Parsed::Complete { consumed, .. } = parse_one(&input) {
            prop_assert!(consumed > 0 && consumed <= input.len());
        }
    }
}
