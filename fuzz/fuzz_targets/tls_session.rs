//! Feeds arbitrary bytes as ciphertext to a server `TlsSession` and checks what must always
//! hold:
//! - no plaintext comes out unless the handshake completed (random bytes cannot complete one);
//! - an error always leaves the session closed, and a closed session stays closed and silent;
//! - the ciphertext the server wants to send stays small (alerts and handshake flights only),
//!   and consuming it in pieces never loses or repeats bytes.
//!
//! The first byte picks how the input is cut into socket reads, so incremental feeding of the
//! same bytes is explored too.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rampart_tls::{ContextHolder, ListenerTls, Next, TlsSession, VerifyMode};

/// A server's first flight (certificate chain included) fits well within this.
const MAX_SERVER_FLIGHT_BYTES: usize = 64 * 1024;

fn holders() -> &'static [ContextHolder; 2] {
    static HOLDERS: OnceLock<[ContextHolder; 2]> = OnceLock::new();
    HOLDERS.get_or_init(|| {
        [
            rampart_tls::fuzzing::throwaway_holder(|_| {}),
            rampart_tls::fuzzing::throwaway_holder(|s| {
                s.verify_mode = VerifyMode::Require;
                s.session_cache = true;
            }),
        ]
    })
}

fn drain_ciphertext(session: &mut TlsSession, step: usize) -> usize {
    let mut total = 0;
    loop {
        let pending = session.take_ciphertext().len();
        if pending == 0 {
            return total;
        }
        let n = pending.min(step);
        session.consume_ciphertext(n);
        assert_eq!(session.take_ciphertext().len(), pending - n);
        total += n;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, data)) = data.split_first() else {
        return;
    };
    let holder = &holders()[usize::from(shape & 1)];
    let listener = match shape >> 6 {
        1 => ListenerTls::Mtls,
        2 => ListenerTls::Btls,
        _ => ListenerTls::Default,
    };
    let chunk = usize::from((shape >> 1) & 0x1f) * 37 + 1;
    let mut session = holder.new_session(listener).expect("session setup");
    let mut plaintext = Vec::new();
    let mut sent = 0;
    for piece in data.chunks(chunk) {
        session.feed_ciphertext(piece);
        let result = session.read_plaintext(&mut plaintext);
        if !session.is_established() {
            assert!(
                plaintext.is_empty(),
                "plaintext before the handshake completed"
            );
        }
        match result {
            Ok(progress) => {
                assert!(progress.plaintext_bytes <= plaintext.len());
                if progress.next == Next::Closed {
                    assert!(session.is_closed());
                }
            }
            Err(_) => assert!(session.is_closed(), "an error leaves the session closed"),
        }
        sent += drain_ciphertext(&mut session, chunk);
        assert!(sent <= MAX_SERVER_FLIGHT_BYTES, "server sent {sent} bytes");
        if session.is_closed() {
            session.feed_ciphertext(piece);
            let again = session.read_plaintext(&mut plaintext);
            assert_eq!(again.map(|p| p.next), Ok(Next::Closed));
            assert!(session.take_ciphertext().is_empty());
            break;
        }
    }
    assert!(plaintext.is_empty() || session.is_established() || session.is_closed());
});
