//! Feeds arbitrary bytes to the binary parser and checks what must always hold:
//! - a complete frame consumes at least the 24-byte header and never more than it was given;
//! - appending bytes never changes a complete frame;
//! - a request's key is at most 250 bytes and lies inside the body the header announced;
//!   a store's value is exactly the rest of that body;
//! - a refusal is one of the statuses memcached sends for a malformed request;
//! - encoding a parsed request and parsing it again gives the same opcode and request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_proto::binary::{self, Frame, HEADER_BYTES, Header, Parsed, Status};
use rampart_proto::text::Limits;
use rampart_proto::{MAX_KEY_BYTES, Request};

fn check_request(
    input: &[u8],
    header: &Header,
    opcode: binary::Opcode,
    opaque: u32,
    request: &Request<'_>,
    limits: &Limits,
) {
    assert_eq!(opaque, header.opaque);
    assert_eq!(opcode.code(), header.opcode);
    let body_end = HEADER_BYTES + header.body_len as usize;
    let key = match request {
        Request::MetaGet(r) => Some(r.key.raw),
        Request::MetaDelete(r) => Some(r.key.raw),
        Request::MetaArith(r) => Some(r.key.raw),
        Request::MetaSet(r) => {
            let data_end = r.data.as_ptr() as usize - input.as_ptr() as usize + r.data.len();
            assert_eq!(data_end, body_end);
            assert!(limits.item_fits(r.key.raw.len(), r.client_flags, r.data.len()));
            Some(r.key.raw)
        }
        _ => None,
    };
    if let Some(key) = key {
        assert!(!key.is_empty() && key.len() <= MAX_KEY_BYTES);
        assert_eq!(key.len(), usize::from(header.key_len));
    }
    // `quitq` is a `Quit` like `quit` (the opcode says it is quiet); it re-encodes as `quit`.
    let opcode = if opcode == binary::Opcode::QuitQ { binary::Opcode::Quit } else { opcode };
    let mut wire = Vec::new();
    assert_eq!(binary::encode(request, opaque, &mut wire), Some(opcode));
    match binary::parse(&wire, limits) {
        Parsed::Complete { consumed, frame: Frame::Request { opcode: again_op, opaque: again_opaque, request: again } } => {
            assert_eq!(consumed, wire.len());
            assert_eq!((again_op, again_opaque), (opcode, opaque));
            assert_eq!(&again, request);
        }
        other => panic!("re-encoded {request:?} parsed as {other:?}"),
    }
}

fuzz_target!(|input: &[u8]| {
    let limits = Limits { item_size_max: 1024, ..Limits::default() };
    let parsed = binary::parse(input, &limits);
    if let Parsed::Complete { consumed, frame } = &parsed {
        assert!(*consumed >= HEADER_BYTES && *consumed <= input.len());
        let mut longer = input.to_vec();
        longer.extend_from_slice(&[0x80, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&binary::parse(&longer, &limits), &parsed);
        let header = Header::parse(input).expect("a complete frame has a header");
        match frame {
            Frame::Request { opcode, opaque, request } => {
                check_request(input, &header, *opcode, *opaque, request, &limits)
            }
            Frame::Reject { status, swallow, .. } => {
                assert!(matches!(status, Status::UnknownCommand | Status::InvalidArguments));
                assert!(*swallow <= header.body_len as usize);
            }
            Frame::Fatal { status, .. } => {
                assert!(matches!(status, Status::UnknownCommand | Status::InvalidArguments));
                assert_eq!(*consumed, HEADER_BYTES);
            }
            Frame::TooLarge { key, swallow, .. } => {
                assert!(!key.is_empty() && key.len() <= MAX_KEY_BYTES);
                assert_eq!(*consumed + *swallow, HEADER_BYTES + header.body_len as usize);
            }
        }
    }
});
