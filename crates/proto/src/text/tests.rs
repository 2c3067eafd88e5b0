#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

use proptest::prelude::*;

use super::*;
use crate::request::{
    Arith, Delete, FlushAll, Get, Keys, ShutdownMode, Stats, Store, StoreMode, Touch, Verbosity,
};

fn parse_one(input: &[u8]) -> Parsed<'_> {
    parse(input, &Limits::default())
}

fn rejected(input: &[u8]) -> (TextError, bool) {
    match parse_one(input) {
        Parsed::Complete {
            frame: Frame::Reject { error, noreply },
            ..
        } => (error, noreply),
        other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(input)),
    }
}

fn accepted(input: &[u8]) -> (Request<'_>, usize) {
    match parse_one(input) {
        Parsed::Complete {
            frame: Frame::Request(request),
            consumed,
        } => (request, consumed),
        other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn requests_parse_to_their_logical_form() {
    let (req, used) = accepted(b"get a bb  ccc\r\nrest");
    assert_eq!(used, 15);
    let Request::Get(get) = req else { panic!() };
    assert_eq!(
        get.keys.iter().collect::<Vec<_>>(),
        [&b"a"[..], b"bb", b"ccc"]
    );
    assert!(!get.cas && get.touch.is_none());

    let (req, _) = accepted(b"gats -1 k\n");
    let Request::Get(get) = req else { panic!() };
    assert!(get.cas);
    assert_eq!(get.touch, Some(-1));

    let (req, used) = accepted(b"cas k 4294967295 100 3 77 noreply\r\nabc\r\n");
    assert_eq!(used, 40);
    assert_eq!(
        req,
        Request::Store(Store {
            mode: StoreMode::Cas(77),
            key: b"k",
            flags: u32::MAX,
            exptime: 100,
            data: b"abc",
            noreply: true,
        })
    );
    assert_eq!(
        accepted(b"decr k 5\r\n").0,
        Request::Arith(Arith {
            incr: false,
            key: b"k",
            delta: 5,
            noreply: false
        })
    );
    assert_eq!(
        accepted(b"delete k 0 noreply\r\n").0,
        Request::Delete(Delete {
            key: b"k",
            noreply: true
        })
    );
    assert_eq!(
        accepted(b"touch k 10\r\n").0,
        Request::Touch(Touch {
            key: b"k",
            exptime: 10,
            noreply: false
        })
    );
    assert_eq!(
        accepted(b"flush_all noreply\r\n").0,
        Request::FlushAll(FlushAll {
            delay: 0,
            noreply: true
        })
    );
    assert_eq!(
        accepted(b"flush_all 10 20\r\n").0,
        Request::FlushAll(FlushAll {
            delay: 10,
            noreply: false
        })
    );
    assert_eq!(
        accepted(b"verbosity 1\r\n").0,
        Request::Verbosity(Verbosity {
            level: 1,
            noreply: false
        })
    );
    assert_eq!(accepted(b"version extra\r\n").0, Request::Version);
    // memcached ignores words after `refresh_certs` other than a final `noreply`.
    assert_eq!(
        accepted(b"refresh_certs x y\r\n").0,
        Request::RefreshCerts { noreply: false }
    );
    assert_eq!(
        accepted(b"refresh_certs noreply\r\n").0,
        Request::RefreshCerts { noreply: true }
    );
    assert_eq!(
        accepted(b"cache_memlimit 100 noreply\r\n").0,
        Request::CacheMemlimit(crate::CacheMemlimit {
            megabytes: 100,
            noreply: true
        })
    );
    assert_eq!(
        accepted(b"shutdown graceful\r\n").0,
        Request::Shutdown(ShutdownMode::Graceful)
    );
    assert_eq!(
        accepted(b"shutdown now\r\n").0,
        Request::Shutdown(ShutdownMode::Invalid)
    );
    assert_eq!(
        accepted(b"stats settings\r\n").0,
        Request::Stats(Stats::group(Some(b"settings")))
    );
    assert_eq!(
        accepted(b"stats cachedump 1 10\r\n").0,
        Request::Stats(Stats {
            group: Some(b"cachedump"),
            args: [Some(b"1"), Some(b"10")],
        })
    );
    // A sixth token that is not `noreply` is ignored, as memcached ignores it.
    let (req, _) = accepted(b"set k 0 0 1 whatever\r\nx\r\n");
    assert!(matches!(req, Request::Store(Store { noreply: false, .. })));
}

#[test]
fn errors_match_memcached() {
    use TextError::*;
    let long_key = [b'k'; 251];
    let cases: Vec<(Vec<u8>, TextError, bool)> = vec![
        (b"\r\n".to_vec(), UnknownCommand, false),
        (b"GET a\r\n".to_vec(), UnknownCommand, false),
        (b"get\r\n".to_vec(), UnknownCommand, false),
        (b"set a 0 0\r\n".to_vec(), UnknownCommand, false),
        (
            b"set a 0 0 1 noreply extra\r\n".to_vec(),
            UnknownCommand,
            false,
        ),
        (b"cas a 0 0 1\r\n".to_vec(), UnknownCommand, false),
        (b"set a 0 0 -1\r\n".to_vec(), BadCommandLine, false),
        (b"set a 0 0 abc noreply\r\n".to_vec(), BadCommandLine, true),
        (b"set a -1 0 1\r\n".to_vec(), BadCommandLine, false),
        (b"cas a 0 0 1 abc\r\n".to_vec(), BadCommandLine, false),
        (
            [&b"get a "[..], &long_key, b"\r\n"].concat(),
            BadCommandLine,
            false,
        ),
        (
            [&b"set "[..], &long_key, b" 0 0 1\r\n"].concat(),
            BadCommandLine,
            false,
        ),
        (b"incr a x\r\n".to_vec(), InvalidDelta, false),
        (b"incr a -1 noreply\r\n".to_vec(), InvalidDelta, true),
        (b"touch a x\r\n".to_vec(), InvalidExptime, false),
        (b"gat x a\r\n".to_vec(), InvalidExptime, false),
        (b"flush_all x\r\n".to_vec(), InvalidExptime, false),
        (b"delete a 1\r\n".to_vec(), DeleteUsage, false),
        (b"delete a 0 x\r\n".to_vec(), DeleteUsage, false),
        (b"verbosity x\r\n".to_vec(), BadCommandLine, false),
        (b"verbosity\r\n".to_vec(), UnknownCommand, false),
        (b"cache_memlimit x\r\n".to_vec(), UnknownCommand, false),
        (b"set a 0 0 1\r\nxyz\r\n".to_vec(), BadDataChunk, false),
    ];
    let no_flush = Limits {
        flush_enabled: false,
        ..Limits::default()
    };
    for input in [&b"flush_all bad\r\n"[..], b"flush_all\r\n"] {
        assert!(matches!(
            parse(input, &no_flush),
            Parsed::Complete {
                frame: Frame::Reject {
                    error: FlushDisabled,
                    noreply: false
                },
                ..
            }
        ));
    }
    for (input, error, noreply) in cases {
        assert_eq!(
            rejected(&input),
            (error, noreply),
            "{:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn bad_data_chunk_consumes_exactly_the_declared_block() {
    let input = b"set a 0 0 1\r\nxyz\r\n";
    let Parsed::Complete { consumed, .. } = parse_one(input) else {
        panic!()
    };
    // "x" plus the two bytes that should have been "\r\n"; memcached then reads "\r\n" as an
    // empty command.
    assert_eq!(&input[consumed..], b"\r\n");
}

#[test]
fn too_large_values_are_swallowed() {
    let limits = Limits {
        item_size_max: 1024,
        ..Limits::default()
    };
    let input = b"set k 0 0 2000 noreply\r\n";
    assert_eq!(
        parse(input, &limits),
        Parsed::Complete {
            consumed: input.len(),
            frame: Frame::TooLarge {
                key: b"k",
                unlink: true,
                swallow: 2002,
                noreply: true
            }
        }
    );
    // memcached's boundary: 56-byte header, key and NUL, flags when nonzero, value and CRLF.
    assert!(limits.item_fits(1, 0, 1024 - 56 - 2 - 2));
    assert!(!limits.item_fits(1, 0, 1024 - 56 - 2 - 1));
    assert!(!limits.item_fits(1, 1, 1024 - 56 - 2 - 2));
}

#[test]
fn overlong_lines_close_except_multigets() {
    let junk = vec![b'a'; MAX_LINE_BYTES + 1];
    assert_eq!(parse_one(&junk), Parsed::Close);
    assert_eq!(parse_one(&junk[..MAX_LINE_BYTES]), Parsed::Incomplete);
    let mut multiget = b"get ".to_vec();
    multiget.extend(b"k ".repeat(MAX_LINE_BYTES));
    assert_eq!(parse_one(&multiget), Parsed::Incomplete);
    assert_eq!(parse_one(b"GET / HTTP/1.1\r\n"), Parsed::Close);
}

#[test]
fn keys_may_hold_any_byte_but_space_and_newline() {
    let (req, _) = accepted(b"get a\x01b c\td\r\n");
    let Request::Get(get) = req else { panic!() };
    assert_eq!(
        get.keys.iter().collect::<Vec<_>>(),
        [&b"a\x01b"[..], b"c\td"]
    );
}

#[test]
fn every_truncation_of_a_valid_request_is_incomplete() {
    let inputs: [&[u8]; 4] = [
        b"set key 1 2 5\r\nhello\r\n",
        b"gets a b c\r\n",
        b"cas k 0 0 3 9 noreply\r\nabc\r\n",
        b"incr counter 1\r\n",
    ];
    for input in inputs {
        for cut in 0..input.len() {
            assert_eq!(
                parse_one(&input[..cut]),
                Parsed::Incomplete,
                "{:?} cut at {cut}",
                String::from_utf8_lossy(input)
            );
        }
        assert!(
            matches!(parse_one(input), Parsed::Complete { consumed, .. } if consumed == input.len())
        );
    }
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no separators", |b| !matches!(b, b' ' | b'\n' | b'\r')),
        1..=MAX_KEY_BYTES,
    )
    // A key that spells `noreply` would be read as the flag in the last position.
    .prop_filter("not noreply", |k| k != b"noreply")
}

fn request_parts() -> impl Strategy<Value = (u8, Vec<Vec<u8>>, u32, i32, Vec<u8>, u64, bool)> {
    (
        0u8..9,
        proptest::collection::vec(key(), 1..5),
        any::<u32>(),
        any::<i32>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<u64>(),
        any::<bool>(),
    )
}

proptest! {
    #[test]
    fn parse_inverts_encode((kind, keys, flags, exptime, data, number, noreply) in request_parts()) {
        let joined = keys.join(&b' ');
        let key = &keys[0][..];
        let request = match kind {
            0 => Request::Get(Get { keys: Keys::new(&joined), cas: number % 2 == 0, touch: None }),
            1 => Request::Get(Get { keys: Keys::new(&joined), cas: noreply, touch: Some(i64::from(exptime)) }),
            2 => Request::Store(Store { mode: StoreMode::Set, key, flags, exptime: i64::from(exptime), data: &data, noreply }),
            3 => Request::Store(Store { mode: StoreMode::Cas(number), key, flags, exptime: i64::from(exptime), data: &data, noreply }),
            4 => Request::Arith(Arith { incr: noreply, key, delta: number, noreply }),
            5 => Request::Delete(Delete { key, noreply }),
            6 => Request::Touch(Touch { key, exptime: i64::from(exptime), noreply }),
            7 => Request::FlushAll(FlushAll { delay: i64::from(exptime), noreply }),
            _ => Request::Verbosity(Verbosity { level: flags, noreply }),
        };
        let mut wire = Vec::new();
        encode(&request, &mut wire);
        let limits = Limits { item_size_max: usize::MAX / 2, ..Limits::default() };
        match parse(&wire, &limits) {
            Parsed::Complete { consumed, frame: Frame::Request(parsed) } => {
                prop_assert_eq!(consumed, wire.len());
                // Keys compare by content: the parsed ones borrow from `wire`.
                prop_assert_eq!(format!("{parsed:?}"), format!("{request:?}"));
            }
            other => prop_assert!(false, "{:?}", other),
        }
        for cut in 0..wire.len() {
            prop_assert_eq!(parse(&wire[..cut], &limits), Parsed::Incomplete);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_overrun(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        match parse(&input, &Limits::default()) {
            Parsed::Complete { consumed, .. } => prop_assert!(consumed > 0 && consumed <= input.len()),
            Parsed::Incomplete | Parsed::Close => {}
        }
    }
}

/// The server's read budget relies on this: with no room for any value, a storage request
/// whose data block has not all arrived is answered from its header alone (as too large, with
/// the bytes to discard), for every storage command and for `ms`.
#[test]
fn a_zero_item_limit_answers_a_storage_header_before_its_data_arrives() {
    let none = Limits {
        item_size_max: 0,
        ..Limits::default()
    };
    for (input, header, value) in [
        (&b"set k 0 0 100000\r\nabc"[..], 18, 100_000),
        (b"cas k 0 0 10 77 noreply\r\n", 25, 10),
        (b"append k 0 0 5\r\n", 16, 5),
    ] {
        match parse(input, &none) {
            Parsed::Complete {
                consumed,
                frame: Frame::TooLarge { key, swallow, .. },
            } => {
                assert_eq!((consumed, swallow, key), (header, value + 2, &b"k"[..]));
            }
            other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(input)),
        }
        // With the real limit the same bytes are simply incomplete.
        assert_eq!(parse_one(input), Parsed::Incomplete);
    }
    match parse(b"ms k 100000 T0\r\nabc", &none) {
        Parsed::Complete {
            consumed: 16,
            frame: Frame::Meta(crate::meta::Frame::TooLarge { swallow, .. }),
        } => assert_eq!(swallow, 100_002),
        other => panic!("ms parsed as {other:?}"),
    }
}

#[test]
fn acl_commands_parse() {
    use crate::request::Acl;
    let cases: &[(&[u8], Acl<'_>)] = &[
        (b"acl reload\r\n", Acl::Reload),
        (b"acl log\r\n", Acl::Log),
        (b"acl log reset\r\n", Acl::LogReset),
        (
            b"acl check user:alice get a b  \r\n",
            Acl::Check {
                identity: b"user:alice",
                request: b"get a b",
            },
        ),
        (
            b"acl  check  cert:x   set k 0 0 5 noreply\r\n",
            Acl::Check {
                identity: b"cert:x",
                request: b"set k 0 0 5 noreply",
            },
        ),
        (b"acl\r\n", Acl::Usage),
        (b"acl check user:alice\r\n", Acl::Usage),
        (b"acl reload now\r\n", Acl::Usage),
        (b"acl frobnicate\r\n", Acl::Usage),
    ];
    for (line, want) in cases {
        let (request, used) = accepted(line);
        assert_eq!(
            request,
            Request::Acl(*want),
            "{}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(used, line.len());
    }
    // The round trip.
    for acl in [Acl::Reload, Acl::Log, Acl::LogReset] {
        let mut bytes = Vec::new();
        crate::text::encode(&Request::Acl(acl), &mut bytes);
        assert_eq!(accepted(&bytes).0, Request::Acl(acl));
    }
}

#[test]
fn auth_commands_parse() {
    use crate::request::AuthCommand;
    let cases: &[(&[u8], AuthCommand)] = &[
        (b"auth reload\r\n", AuthCommand::Reload),
        (b"auth  reload \r\n", AuthCommand::Reload),
        (b"auth\r\n", AuthCommand::Usage),
        (b"auth reload now\r\n", AuthCommand::Usage),
        (b"auth alice secret\r\n", AuthCommand::Usage),
    ];
    for (line, want) in cases {
        let (request, used) = accepted(line);
        assert_eq!(
            request,
            Request::Auth(*want),
            "{}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(used, line.len());
    }
    let mut bytes = Vec::new();
    crate::text::encode(&Request::Auth(AuthCommand::Reload), &mut bytes);
    assert_eq!(accepted(&bytes).0, Request::Auth(AuthCommand::Reload));
}

#[test]
fn maintenance_commands_keep_memcached_argument_checks() {
    use crate::request::{Admin, AdminCommand, LruCrawler, Slabs, Watch};
    fn command(line: &[u8]) -> AdminCommand<'_> {
        match accepted(line).0 {
            Request::Admin(Admin { command, .. }) => command,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        command(b"lru_crawler metadump all\r\n"),
        AdminCommand::LruCrawler(LruCrawler::Metadump(b"all"))
    );
    assert_eq!(
        command(b"lru_crawler sleep x\r\n"),
        AdminCommand::LruCrawler(LruCrawler::Sleep(None))
    );
    assert_eq!(
        command(b"lru_crawler crawl all extra\r\n"),
        AdminCommand::LruCrawler(LruCrawler::Unknown)
    );
    assert_eq!(
        command(b"lru tune 10 25 0.1 2.0\r\n"),
        AdminCommand::Lru { valid: true }
    );
    assert_eq!(
        command(b"lru tune 10 25 0.1\r\n"),
        AdminCommand::Lru { valid: false }
    );
    assert_eq!(
        command(b"slabs reassign 1 x\r\n"),
        AdminCommand::Slabs(Slabs::BadFormat)
    );
    assert_eq!(
        command(b"watch fetchers mutations\r\n"),
        AdminCommand::Watch(Watch {
            streams: Watch::FETCHERS | Watch::MUTATIONS,
            unknown: false
        })
    );
    // The encoder writes the line back as it came.
    for line in [
        &b"lru_crawler metadump 1,2\r\n"[..],
        b"slabs automove 2\r\n",
        b"stats detail on\r\n",
    ] {
        let (request, _) = accepted(line);
        let mut bytes = Vec::new();
        crate::text::encode(&request, &mut bytes);
        assert_eq!(bytes, line);
    }
}
