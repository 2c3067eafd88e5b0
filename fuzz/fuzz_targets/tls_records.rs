//! Drives both ends of the TLS record layer, TLS 1.3 and 1.2
//! (`rampart_tls::fuzzing::RecordEnds`), with a script of client records, valid and not, fed
//! to the server in arbitrary cuts, and checks what must always hold:
//! - while every record sent is valid (application data, KeyUpdates), the server's plaintext
//!   is exactly the data sent, whatever the cuts, and nothing valid is refused;
//! - after the first record that is not (any content type, garbage), the plaintext still
//!   begins with exactly the data sent before it, and a refusal ends the connection;
//! - replies the server seals at any point (after KeyUpdates it was asked for) open at the
//!   client as the bytes sealed.
//!
//! The first byte picks the suite, the version (TLS 1.3 or 1.2) and the size of the socket
//! reads.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_tls::fuzzing::RecordEnds;

struct Run {
    ends: RecordEnds,
    cut: usize,
    wire: Vec<u8>,
    fed: usize,
    unopened: Vec<u8>,
    plain: Vec<u8>,
    /// The application data of the valid records sent while `exact`.
    expected: Vec<u8>,
    exact: bool,
    refused: bool,
}

impl Run {
    /// Feeds the server everything sent so far, `cut` bytes at a time.
    fn drain(&mut self) {
        while self.fed < self.wire.len() && !self.refused {
            let end = (self.fed + self.cut).min(self.wire.len());
            self.unopened.extend_from_slice(&self.wire[self.fed..end]);
            self.fed = end;
            loop {
                match self.ends.server_open(&self.unopened, &mut self.plain) {
                    Ok(Some((n, _))) => {
                        self.unopened.drain(..n);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        assert!(!self.exact, "a valid record was refused");
                        self.refused = true;
                        break;
                    }
                }
            }
        }
        if self.exact {
            assert_eq!(self.plain, self.expected);
            assert!(self.unopened.is_empty());
        } else {
            assert!(self.plain.starts_with(&self.expected));
        }
    }
}

fn take<'a>(script: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(script.len());
    let (head, rest) = script.split_at(n);
    *script = rest;
    head
}

fn byte(script: &mut &[u8]) -> u8 {
    take(script, 1).first().copied().unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, mut script)) = data.split_first() else {
        return;
    };
    let mut run = Run {
        ends: RecordEnds::new(shape),
        cut: usize::from(shape / 6) * 97 + 1,
        wire: Vec::new(),
        fed: 0,
        unopened: Vec::new(),
        plain: Vec::new(),
        expected: Vec::new(),
        exact: true,
        refused: false,
    };
    while !script.is_empty() {
        match byte(&mut script) % 5 {
            0 => {
                let len = usize::from(byte(&mut script)) * 13;
                let record = usize::from(byte(&mut script)) * 67 + 1;
                let plain: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
                run.ends.client_data(&plain, record, &mut run.wire);
                if run.exact {
                    run.expected.extend_from_slice(&plain);
                }
            }
            1 => {
                let requested = byte(&mut script) & 1 == 1;
                run.ends.client_key_update(requested, &mut run.wire);
                // TLS 1.2 has no KeyUpdate: a handshake message there ends the connection.
                run.exact &= run.ends.is_tls13();
            }
            2 => {
                let content_type = byte(&mut script);
                let len = usize::from(byte(&mut script));
                let bytes = take(&mut script, len).to_vec();
                run.ends.client_typed(content_type, &bytes, &mut run.wire);
                run.exact = false;
            }
            3 => {
                let len = usize::from(byte(&mut script));
                run.wire.extend_from_slice(take(&mut script, len));
                run.exact = false;
            }
            _ => {
                run.drain();
                if !run.refused {
                    let len = usize::from(byte(&mut script)) * 131;
                    let reply: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
                    run.ends.server_reply_round_trips(&reply);
                }
            }
        }
    }
    run.drain();
});
