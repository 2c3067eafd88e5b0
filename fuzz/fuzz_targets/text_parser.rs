//! Feeds arbitrary bytes to the text parser and checks what must always hold:
//! - a complete frame consumes at least one byte and never more than it was given;
//! - appending bytes never changes a complete frame (the parser only looks at what it needs);
//! - keys are at most 250 bytes and hold no space or newline; a data block is exactly the
//!   declared length and is followed by `\r\n`;
//! - encoding a parsed request and parsing it again gives the same request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_proto::text::{self, Frame, Limits, Parsed};
use rampart_proto::{MAX_KEY_BYTES, Request};

fn key_ok(key: &[u8]) -> bool {
    key.len() <= MAX_KEY_BYTES && !key.contains(&b' ') && !key.contains(&b'\n')
}

fn check_request(input: &[u8], consumed: usize, request: &Request<'_>, limits: &Limits) {
    match request {
        Request::Get(get) => assert!(get.keys.iter().all(key_ok)),
        Request::Store(store) => {
            assert!(key_ok(store.key) && !store.key.is_empty());
            assert_eq!(&input[consumed - 2..consumed], b"\r\n");
            let data_end = store.data.as_ptr() as usize - input.as_ptr() as usize + store.data.len();
            assert_eq!(data_end, consumed - 2);
            assert!(limits.item_fits(store.key.len(), store.flags, store.data.len()));
        }
        Request::Arith(r) => assert!(key_ok(r.key)),
        Request::Delete(r) => assert!(key_ok(r.key)),
        Request::Touch(r) => assert!(key_ok(r.key)),
        _ => {}
    }
    let mut wire = Vec::new();
    text::encode(request, &mut wire);
    match text::parse(&wire, limits) {
        Parsed::Complete { consumed, frame: Frame::Request(again) } => {
            assert_eq!(consumed, wire.len());
            assert_eq!(format!("{again:?}"), format!("{request:?}"));
        }
        other => panic!("re-encoded {request:?} parsed as {other:?}"),
    }
}

fuzz_target!(|input: &[u8]| {
    // A small -I so that the too-large path is reachable from short inputs.
    let limits = Limits { item_size_max: 1024, ..Limits::default() };
    let parsed = text::parse(input, &limits);
    if let Parsed::Complete { consumed, frame } = &parsed {
        assert!(*consumed > 0 && *consumed <= input.len());
        let mut longer = input.to_vec();
        longer.extend_from_slice(b"get x\r\n");
        assert_eq!(&text::parse(&longer, &limits), &parsed);
        match frame {
            Frame::Request(request) => check_request(input, *consumed, request, &limits),
            Frame::TooLarge { key, swallow, .. } => {
                assert!(key_ok(key));
                assert!(*swallow >= 2);
            }
            Frame::Reject { .. } => {}
            // Meta lines are handed to the meta parser; the meta_parser target checks those.
            Frame::Meta(_) => {}
        }
    }
});
