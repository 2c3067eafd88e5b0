//! Feeds arbitrary bytes to the meta parser and checks what must always hold:
//! - a complete frame consumes at least one byte and never more than it was given;
//! - appending bytes never changes a complete frame (the parser only looks at what it needs);
//! - keys are at most 250 bytes, hold no space or newline, and a base64 key decodes; an `ms`
//!   data block is exactly the declared length and is followed by `\r\n`;
//! - a text connection reads a meta line exactly as the meta parser does;
//! - encoding a parsed request and parsing it again gives the same request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_proto::meta::{self, Frame, Parsed};
use rampart_proto::text::{self, Limits};
use rampart_proto::{MAX_KEY_BYTES, MetaKey, Request};

fn key_ok(key: &MetaKey<'_>) -> bool {
    let mut scratch = [0u8; MAX_KEY_BYTES];
    key.raw.len() <= MAX_KEY_BYTES
        && !key.raw.is_empty()
        && !key.raw.contains(&b' ')
        && !key.raw.contains(&b'\n')
        && !key.decode(&mut scratch).is_empty()
}

fn check_request(input: &[u8], consumed: usize, request: &Request<'_>, limits: &Limits) {
    match request {
        Request::MetaGet(r) => assert!(key_ok(&r.key)),
        Request::MetaSet(r) => {
            assert!(key_ok(&r.key));
            assert_eq!(&input[consumed - 2..consumed], b"\r\n");
            let data_end = r.data.as_ptr() as usize - input.as_ptr() as usize + r.data.len();
            assert_eq!(data_end, consumed - 2);
            let mut scratch = [0u8; MAX_KEY_BYTES];
            let key_len = r.key.decode(&mut scratch).len();
            assert!(limits.item_fits(key_len, r.client_flags, r.data.len()));
        }
        Request::MetaDelete(r) => assert!(key_ok(&r.key)),
        Request::MetaArith(r) => assert!(key_ok(&r.key)),
        Request::MetaDebug(r) => assert!(key_ok(&r.key)),
        Request::MetaNoop => {}
        other => panic!("meta parsed a non-meta request {other:?}"),
    }
    let mut wire = Vec::new();
    meta::encode(request, &mut wire);
    match meta::parse(&wire, limits) {
        Parsed::Complete { consumed, frame: Frame::Request(again) } => {
            assert_eq!(consumed, wire.len());
            assert_eq!(&again, request);
        }
        other => panic!("re-encoded {request:?} parsed as {other:?}"),
    }
}

fuzz_target!(|input: &[u8]| {
    // A small -I so that the too-large path is reachable from short inputs.
    let limits = Limits { item_size_max: 1024, ..Limits::default() };
    let parsed = meta::parse(input, &limits);
    if let Parsed::Complete { consumed, frame } = &parsed {
        assert!(*consumed > 0 && *consumed <= input.len());
        let mut longer = input.to_vec();
        longer.extend_from_slice(b"mn\r\n");
        assert_eq!(&meta::parse(&longer, &limits), &parsed);
        match frame {
            Frame::Request(request) => check_request(input, *consumed, request, &limits),
            Frame::TooLarge { key, swallow } => {
                assert!(key_ok(key));
                assert!(*swallow >= 2);
            }
            Frame::Reject { swallow, .. } => assert!(*swallow == 0 || *swallow >= 2),
        }
        let is_meta_line = !matches!(
            frame,
            Frame::Reject { error: meta::MetaError::UnknownCommand, .. }
        );
        if is_meta_line {
            match text::parse(input, &limits) {
                text::Parsed::Complete { consumed: text_consumed, frame: text::Frame::Meta(f) } => {
                    assert_eq!(text_consumed, *consumed);
                    assert_eq!(&f, frame);
                }
                other => panic!("text read a meta line as {other:?}"),
            }
        }
    }
});
