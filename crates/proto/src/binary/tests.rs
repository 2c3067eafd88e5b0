#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

use proptest::prelude::*;

use super::*;
use crate::request::{
    FlushAll, MetaArith, MetaDelete, MetaGet, MetaKey, MetaSet, MetaSetMode, Sasl, Stats,
};

const OPAQUE: u32 = 0x1122_3344;

/// A request with the given lengths; `body` is extras, key and value together.
fn packet(opcode: u8, key_len: u16, extras_len: u8, body: &[u8], cas: u64) -> Vec<u8> {
    let mut out = Vec::new();
    Header {
        magic: REQUEST_MAGIC,
        opcode,
        key_len,
        extras_len,
        data_type: 0,
        vbucket_or_status: 0,
        body_len: body.len() as u32,
        opaque: OPAQUE,
        cas,
    }
    .encode(&mut out);
    out.extend_from_slice(body);
    out
}

fn simple(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = [extras, key, value].concat();
    packet(opcode, key.len() as u16, extras.len() as u8, &body, 0)
}

fn parse_one(input: &[u8]) -> Parsed<'_> {
    parse(input, &Limits::default())
}

fn accepted(input: &[u8]) -> (Opcode, Request<'_>, usize) {
    match parse_one(input) {
        Parsed::Complete {
            consumed,
            frame:
                Frame::Request {
                    opcode,
                    opaque,
                    request,
                },
        } => {
            assert_eq!(opaque, OPAQUE);
            (opcode, request, consumed)
        }
        other => panic!("{input:02x?} parsed as {other:?}"),
    }
}

#[test]
fn header_round_trips() {
    let header = Header {
        magic: RESPONSE_MAGIC,
        opcode: 0x0c,
        key_len: 0x0102,
        extras_len: 4,
        data_type: 0,
        vbucket_or_status: 0x0081,
        body_len: 0x0a0b_0c0d,
        opaque: OPAQUE,
        cas: 0x0102_0304_0506_0708,
    };
    let mut out = Vec::new();
    header.encode(&mut out);
    assert_eq!(out.len(), HEADER_BYTES);
    assert_eq!(&out[..8], &[0x81, 0x0c, 0x01, 0x02, 4, 0, 0x00, 0x81]);
    assert_eq!(Header::parse(&out), Some(header));
    assert_eq!(Header::parse(&out[..23]), None);
}

#[test]
fn requests_parse_to_their_logical_form() {
    let getkq = simple(0x0d, &[], b"k", &[]);
    let (opcode, request, used) = accepted(&getkq);
    assert_eq!((opcode, used), (Opcode::GetKQ, 25));
    let Request::MetaGet(get) = request else {
        panic!()
    };
    assert_eq!(get.flags.as_slice(), b"vfckq");
    assert!(opcode.is_quiet() && opcode.returns_key());

    let set = packet(0x11, 1, 8, b"\0\0\0\x05\0\0\0\x3ckab", 9);
    assert_eq!(
        accepted(&set).1,
        Request::MetaSet(MetaSet {
            key: MetaKey::plain(b"k"),
            flags: crate::request::MetaFlags::from_letters(b"q"),
            mode: MetaSetMode::Set,
            cas: Some(9),
            client_flags: 5,
            exptime: 60,
            opaque: None,
            data: b"ab",
        })
    );
    let appendq = simple(0x19, &[], b"k", b"tail");
    let (opcode, request, _) = accepted(&appendq);
    assert_eq!(opcode, Opcode::AppendQ);
    let Request::MetaSet(append) = request else {
        panic!()
    };
    assert_eq!(
        (append.mode, append.data),
        (MetaSetMode::Append, &b"tail"[..])
    );

    let mut extras = Vec::new();
    extras.extend_from_slice(&5u64.to_be_bytes());
    extras.extend_from_slice(&10u64.to_be_bytes());
    extras.extend_from_slice(&0xffff_ffffu32.to_be_bytes());
    let decr = simple(0x06, &extras, b"n", &[]);
    let Request::MetaArith(arith) = accepted(&decr).1 else {
        panic!()
    };
    assert_eq!(
        (arith.incr, arith.delta, arith.initial, arith.vivify),
        (false, 5, 10, None)
    );
    let _: &MetaArith<'_> = &arith;

    let touch = simple(0x1c, &[0, 0, 0, 30], b"k", &[]);
    let Request::MetaGet(touch) = accepted(&touch).1 else {
        panic!()
    };
    assert_eq!((touch.touch, touch.returns_value()), (Some(30), false));
    let _: &MetaGet<'_> = &touch;

    assert_eq!(
        accepted(&simple(0x14, &[], b"k", &[])).1,
        Request::MetaDelete(MetaDelete {
            key: MetaKey::plain(b"k"),
            flags: crate::request::MetaFlags::from_letters(b"q"),
            cas: None,
            exptime: None,
            opaque: None,
        })
    );
    assert_eq!(
        accepted(&simple(0x18, &[0, 0, 0, 9], &[], &[])).1,
        Request::FlushAll(FlushAll {
            delay: 9,
            noreply: true
        })
    );
    assert_eq!(accepted(&simple(0x0a, &[], &[], &[])).1, Request::MetaNoop);
    assert_eq!(accepted(&simple(0x0b, &[], &[], &[])).1, Request::Version);
    assert_eq!(accepted(&simple(0x17, &[], &[], &[])).0, Opcode::QuitQ);
    assert_eq!(
        accepted(&simple(0x10, &[], b"items", &[])).1,
        Request::Stats(Stats::group(Some(b"items")))
    );
    assert_eq!(
        accepted(&simple(0x21, &[], b"PLAIN", b"\0u\0p")).1,
        Request::Sasl(Sasl::Auth {
            mechanism: b"PLAIN",
            data: b"\0u\0p"
        })
    );
    assert_eq!(
        accepted(&simple(0x20, &[], &[], &[])).1,
        Request::Sasl(Sasl::ListMechanisms)
    );
}

/// Each refusal is what memcached 1.6.18 answered to the same packet.
#[test]
fn refusals_match_memcached() {
    let fatal = |input: &[u8]| match parse_one(input) {
        Parsed::Complete {
            consumed: HEADER_BYTES,
            frame: Frame::Fatal { status, opaque, .. },
        } => {
            assert_eq!(opaque, OPAQUE);
            status
        }
        other => panic!("{other:?}"),
    };
    // Key longer than the body: `Unknown command`, then memcached closes.
    assert_eq!(fatal(&packet(0x00, 5, 0, b"k", 0)), Status::UnknownCommand);
    assert_eq!(
        fatal(&simple(0x00, &[], &[b'k'; 251], &[])),
        Status::InvalidArguments
    );
    assert_eq!(
        fatal(&simple(0x00, &[0; 4], b"k", &[])),
        Status::InvalidArguments
    );
    assert_eq!(
        fatal(&simple(0x0a, &[], &[], b"x")),
        Status::InvalidArguments
    );
    assert_eq!(
        fatal(&simple(0x04, &[0; 4], b"k", &[])),
        Status::InvalidArguments
    );
    assert_eq!(
        fatal(&simple(0x08, &[0; 5], &[], &[])),
        Status::InvalidArguments
    );
    assert_eq!(
        fatal(&simple(0x0e, &[0; 4], b"k", b"z")),
        Status::InvalidArguments
    );
    assert_eq!(
        fatal(&simple(0x10, &[0], &[], &[])),
        Status::InvalidArguments
    );

    // Unknown opcodes (verbosity included) skip their body and go on.
    for input in [
        simple(0x40, &[], b"abc", &[]),
        simple(0x1b, &[0, 0, 0, 1], &[], &[]),
    ] {
        match parse_one(&input) {
            Parsed::Complete {
                consumed: HEADER_BYTES,
                frame:
                    Frame::Reject {
                        status: Status::UnknownCommand,
                        swallow,
                        ..
                    },
            } => assert_eq!(swallow, input.len() - HEADER_BYTES),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(parse_one(b"\x81"), Parsed::Close);
    assert_eq!(parse_one(b"get k\r\n"), Parsed::Close);
}

#[test]
fn too_large_values_are_skipped() {
    let value = vec![b'x'; 1024 * 1024];
    let input = simple(0x01, &[0; 8], b"big", &value);
    match parse_one(&input[..HEADER_BYTES + 11]) {
        Parsed::Complete {
            consumed,
            frame:
                Frame::TooLarge {
                    key,
                    unlink: true,
                    swallow,
                    ..
                },
        } => {
            assert_eq!(
                (consumed, key, swallow),
                (HEADER_BYTES + 11, &b"big"[..], value.len())
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_truncation_is_incomplete() {
    let inputs = [
        simple(0x01, &[0; 8], b"key", b"value"),
        simple(0x0c, &[], b"key", &[]),
        simple(0x05, &[0; 20], b"n", &[]),
        simple(0x1d, &[0; 4], b"k", &[]),
        simple(0x0a, &[], &[], &[]),
        simple(0x21, &[], b"PLAIN", b"\0a\0b"),
    ];
    for input in &inputs {
        for cut in 0..input.len() {
            assert_eq!(
                parse_one(&input[..cut]),
                Parsed::Incomplete,
                "{cut} of {input:02x?}"
            );
        }
        assert!(matches!(parse_one(input), Parsed::Complete { .. }));
    }
}

fn response_of(out: &[u8]) -> (Header, &[u8]) {
    let header = Header::parse(out).unwrap();
    assert_eq!(out.len(), HEADER_BYTES + header.body_len as usize);
    (header, &out[HEADER_BYTES..])
}

/// Responses compared with memcached 1.6.18's bytes for the same requests.
#[test]
fn responses_match_memcached() {
    let mut out = Vec::new();
    reply::get_hit(&mut out, Opcode::GetK, OPAQUE, 5, 5, b"k", b"ab");
    let (header, body) = response_of(&out);
    assert_eq!(
        (
            header.magic,
            header.opcode,
            header.key_len,
            header.extras_len
        ),
        (0x81, 0x0c, 1, 4)
    );
    assert_eq!((header.cas, header.opaque), (5, OPAQUE));
    assert_eq!(body, b"\0\0\0\x05kab");

    out.clear();
    reply::get_hit(&mut out, Opcode::Touch, OPAQUE, 5, 5, b"k", b"ab");
    assert_eq!(response_of(&out).1, b"\0\0\0\x05");

    out.clear();
    reply::get_miss(&mut out, Opcode::GatK, OPAQUE, b"zz");
    let (header, body) = response_of(&out);
    assert_eq!(
        (header.vbucket_or_status, header.key_len, body),
        (1, 2, &b"zz"[..])
    );

    for (status, message) in [
        (Status::NotFound, &b"Not found"[..]),
        (Status::Exists, b"Data exists for key."),
        (Status::TooLarge, b"Too large."),
        (Status::InvalidArguments, b"Invalid arguments"),
        (Status::NotStored, b"Not stored."),
        (
            Status::NonNumeric,
            b"Non-numeric server-side value for incr or decr",
        ),
        (Status::UnknownCommand, b"Unknown command"),
        (Status::OutOfMemory, b"Out of memory"),
        (Status::AuthError, b"Auth failure."),
    ] {
        out.clear();
        reply::error(&mut out, 0x05, OPAQUE, status);
        let (header, body) = response_of(&out);
        assert_eq!(header.vbucket_or_status, status.code());
        assert_eq!(Status::from_code(status.code()), Some(status));
        assert_eq!((header.opcode, header.cas, body), (0x05, 0, message));
    }

    out.clear();
    reply::arith(&mut out, Opcode::Decrement, OPAQUE, 7, 4);
    assert_eq!(response_of(&out).1, 4u64.to_be_bytes());
    out.clear();
    reply::version(&mut out, OPAQUE, b"1.6.18");
    assert_eq!(response_of(&out).1, b"1.6.18");
    out.clear();
    reply::success(&mut out, Opcode::Noop, OPAQUE, 0);
    reply::stat_end(&mut out, OPAQUE);
    assert_eq!(out.len(), 2 * HEADER_BYTES);
}

fn request_packet() -> impl Strategy<Value = Vec<u8>> {
    let key = proptest::collection::vec(any::<u8>(), 1..40);
    let value = proptest::collection::vec(any::<u8>(), 0..40);
    let opcode = prop_oneof![
        Just(0x00u8),
        Just(0x09),
        Just(0x0c),
        Just(0x0d),
        Just(0x01),
        Just(0x02),
        Just(0x03),
        Just(0x11),
        Just(0x12),
        Just(0x13),
        Just(0x0e),
        Just(0x0f),
        Just(0x19),
        Just(0x1a),
        Just(0x04),
        Just(0x14),
        Just(0x05),
        Just(0x06),
        Just(0x15),
        Just(0x16),
        Just(0x07),
        Just(0x08),
        Just(0x18),
        Just(0x0a),
        Just(0x0b),
        Just(0x10),
        Just(0x1c),
        Just(0x1d),
        Just(0x1e),
        Just(0x23),
        Just(0x24),
        Just(0x20),
        Just(0x21),
        Just(0x22),
    ];
    (
        opcode,
        key,
        value,
        any::<[u8; 20]>(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(opcode, key, value, extras, cas, with_delay)| {
            let cas = if matches!(opcode, 0x01..=0x06 | 0x11..=0x16 | 0x0e | 0x0f | 0x19 | 0x1a) {
                cas
            } else {
                0
            };
            let (extras, key, value): (&[u8], &[u8], &[u8]) = match opcode {
                0x00 | 0x09 | 0x0c | 0x0d | 0x04 | 0x14 => (&[], &key, &[]),
                0x01..=0x03 | 0x11..=0x13 => (&extras[..8], &key, &value),
                0x0e | 0x0f | 0x19 | 0x1a => (&[], &key, &value),
                0x05 | 0x06 | 0x15 | 0x16 => (&extras, &key, &[]),
                0x1c..=0x1e | 0x23 | 0x24 => (&extras[..4], &key, &[]),
                0x08 | 0x18 if with_delay => (&extras[..4], &[], &[]),
                0x10 if with_delay => (&[], &key, &[]),
                0x21 | 0x22 => (&[], &key[..key.len().min(20)], &value),
                _ => (&[], &[], &[]),
            };
            let body = [extras, key, value].concat();
            packet(opcode, key.len() as u16, extras.len() as u8, &body, cas)
        })
}

proptest! {
    #[test]
    fn encode_then_parse_gives_the_request_back(input in request_packet()) {
        let (opcode, request, used) = accepted(&input);
        prop_assert_eq!(used, input.len());
        let mut wire = Vec::new();
        prop_assert_eq!(encode(&request, OPAQUE, &mut wire), Some(opcode));
        let (again_opcode, again, _) = accepted(&wire);
        prop_assert_eq!(again_opcode, opcode);
        prop_assert_eq!(again, request);
    }

    #[test]
    fn parsing_never_panics_and_stays_in_bounds(input in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut input = input;
        if let Some(first) = input.first_mut() {
            *first = REQUEST_MAGIC;
        }
        if let Parsed::Complete { consumed, .. } = parse_one(&input) {
            prop_assert!(consumed >= HEADER_BYTES && consumed <= input.len());
        }
    }
}

#[test]
fn overlong_sasl_mechanism_waits_for_its_key() {
    let input = simple(0x21, &[], &[b'M'; 40], b"data");
    for cut in 0..HEADER_BYTES + 40 {
        assert_eq!(parse_one(&input[..cut]), Parsed::Incomplete);
    }
    match parse_one(&input) {
        Parsed::Complete {
            consumed,
            frame:
                Frame::Reject {
                    status: Status::InvalidArguments,
                    swallow: 4,
                    ..
                },
        } => assert_eq!(consumed, HEADER_BYTES + 40),
        other => panic!("{other:?}"),
    }
}

/// The server's read budget relies on this: with no room for any value, a binary set whose
/// value has not all arrived is answered from its header, extras and key alone.
#[test]
fn a_zero_item_limit_answers_a_set_before_its_value_arrives() {
    let none = Limits {
        item_size_max: 0,
        ..Limits::default()
    };
    let packet = simple(0x01, &[0; 8], b"key", &[b'v'; 1000]);
    let cut = &packet[..HEADER_BYTES + 8 + 3 + 10];
    match parse(cut, &none) {
        Parsed::Complete {
            consumed,
            frame: Frame::TooLarge { key, swallow, .. },
        } => assert_eq!(
            (consumed, swallow, key),
            (HEADER_BYTES + 11, 1000, &b"key"[..])
        ),
        other => panic!("parsed as {other:?}"),
    }
    assert_eq!(parse_one(cut), Parsed::Incomplete);
}
