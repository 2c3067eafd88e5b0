//! The binary protocol's differential harness: requests built as packets in Rust, replayed
//! against memcached and rampart, responses parsed and compared packet by packet.
//!
//! # Step protocol
//!
//! After each step's packets the runner sends a `noop` with an opaque unique to the step and
//! reads until its exact 24-byte response arrives: a noop is answered after everything before
//! it, so what came before is the step's reply, and a server that lost its place in the
//! stream never answers it (the step ends in a timeout). Steps that end the connection read
//! until the server closes instead.
//!
//! # Normalisations
//!
//! The same as the text suite's (see [`crate::normalise::NORMALISATIONS`]) in binary form:
//! the CAS field of every response becomes a label (`C1`, `C2`... in order of first
//! appearance; 0 stays 0), the body of a `version` response becomes `<version>`, and the
//! value of each `stat` response is dropped, with runs of them sorted by name.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::thread;

use crate::io::{Conn, End, REPLY_TIMEOUT};
use crate::replay::CLOSE_TIMEOUT;
use crate::server::{Kind, Server};

const HEADER_BYTES: usize = 24;
const REQUEST_MAGIC: u8 = 0x80;
const RESPONSE_MAGIC: u8 = 0x81;
const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const STAT: u8 = 0x10;
/// Opaque of the step sentinels, plus the step's index.
const SENTINEL_OPAQUE: u32 = 0x5e00_0000;

/// The CAS field of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    Raw(u64),
    /// The unique this server returned that was labelled `Cn` (0 if none yet).
    Label(usize),
}

/// One request packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub opcode: u8,
    pub key: Vec<u8>,
    pub extras: Vec<u8>,
    pub value: Vec<u8>,
    pub opaque: u32,
    pub cas: Cas,
}

impl Packet {
    pub fn new(opcode: u8, key: &[u8]) -> Packet {
        Packet {
            opcode,
            key: key.to_vec(),
            extras: Vec::new(),
            value: Vec::new(),
            opaque: 0,
            cas: Cas::Raw(0),
        }
    }

    pub fn extras(mut self, extras: &[u8]) -> Packet {
        self.extras = extras.to_vec();
        self
    }

    pub fn value(mut self, value: &[u8]) -> Packet {
        self.value = value.to_vec();
        self
    }

    pub fn opaque(mut self, opaque: u32) -> Packet {
        self.opaque = opaque;
        self
    }

    pub fn cas(mut self, cas: Cas) -> Packet {
        self.cas = cas;
        self
    }

    fn encode(&self, cas: u64, out: &mut Vec<u8>) {
        let body = self.extras.len() + self.key.len() + self.value.len();
        out.push(REQUEST_MAGIC);
        out.push(self.opcode);
        out.extend_from_slice(&(self.key.len() as u16).to_be_bytes());
        out.push(self.extras.len() as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(body as u32).to_be_bytes());
        out.extend_from_slice(&self.opaque.to_be_bytes());
        out.extend_from_slice(&cas.to_be_bytes());
        out.extend_from_slice(&self.extras);
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.value);
    }
}

/// Builders for the requests memcached serves, named after their opcodes.
pub mod op {
    use super::Packet;

    pub fn get(opcode: u8, key: &str) -> Packet {
        Packet::new(opcode, key.as_bytes())
    }

    /// set (0x01), add (0x02), replace (0x03) and their quiet forms.
    pub fn store(opcode: u8, key: &str, flags: u32, exptime: u32, value: &[u8]) -> Packet {
        let mut extras = flags.to_be_bytes().to_vec();
        extras.extend_from_slice(&exptime.to_be_bytes());
        Packet::new(opcode, key.as_bytes())
            .extras(&extras)
            .value(value)
    }

    /// append (0x0e), prepend (0x0f) and their quiet forms.
    pub fn concat(opcode: u8, key: &str, value: &[u8]) -> Packet {
        Packet::new(opcode, key.as_bytes()).value(value)
    }

    /// increment (0x05), decrement (0x06) and their quiet forms.
    pub fn arith(opcode: u8, key: &str, delta: u64, initial: u64, exptime: u32) -> Packet {
        let mut extras = delta.to_be_bytes().to_vec();
        extras.extend_from_slice(&initial.to_be_bytes());
        extras.extend_from_slice(&exptime.to_be_bytes());
        Packet::new(opcode, key.as_bytes()).extras(&extras)
    }

    /// touch (0x1c), gat (0x1d), gatq, gatk (0x23), gatkq.
    pub fn touch(opcode: u8, key: &str, exptime: u32) -> Packet {
        Packet::new(opcode, key.as_bytes()).extras(&exptime.to_be_bytes())
    }

    /// noop, version, quit, flush without delay, stat without key...
    pub fn bare(opcode: u8) -> Packet {
        Packet::new(opcode, b"")
    }
}

/// What one step writes.
#[derive(Debug, Clone)]
pub enum Write {
    Packet(Packet),
    /// Bytes as they are (malformed requests).
    Raw(Vec<u8>),
}

/// One step of a binary transcript.
#[derive(Debug, Clone)]
pub struct Step {
    pub title: String,
    pub writes: Vec<Write>,
    /// The server ends the connection (quit, a fatal error): read until it closes.
    pub expect_close: bool,
}

impl Step {
    pub fn new(title: &str, packets: Vec<Packet>) -> Step {
        Step {
            title: title.to_string(),
            writes: packets.into_iter().map(Write::Packet).collect(),
            expect_close: false,
        }
    }

    pub fn raw(mut self, bytes: &[u8]) -> Step {
        self.writes.push(Write::Raw(bytes.to_vec()));
        self
    }

    pub fn closing(mut self) -> Step {
        self.expect_close = true;
        self
    }
}

/// One parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Response {
    opcode: u8,
    status: u16,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
    opaque: u32,
    cas: u64,
}

fn parse(mut bytes: &[u8]) -> (Vec<Response>, Vec<u8>) {
    let mut out = Vec::new();
    while bytes.len() >= HEADER_BYTES && bytes[0] == RESPONSE_MAGIC {
        let be16 = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let be32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let key_len = usize::from(be16(2));
        let extras_len = usize::from(bytes[4]);
        let body_len = be32(8) as usize;
        if bytes.len() < HEADER_BYTES + body_len || key_len + extras_len > body_len {
            break;
        }
        let body = &bytes[HEADER_BYTES..HEADER_BYTES + body_len];
        out.push(Response {
            opcode: bytes[1],
            status: be16(6),
            extras: body[..extras_len].to_vec(),
            key: body[extras_len..extras_len + key_len].to_vec(),
            value: body[extras_len + key_len..].to_vec(),
            opaque: be32(12),
            cas: u64::from_be_bytes(bytes[16..24].try_into().unwrap_or([0; 8])),
        });
        bytes = &bytes[HEADER_BYTES + body_len..];
    }
    (out, bytes.to_vec())
}

fn escape(bytes: &[u8]) -> String {
    if bytes.len() > 64 {
        return format!("<{} bytes>", bytes.len());
    }
    bytes
        .iter()
        .map(|&b| match b {
            b' '..=b'~' if b != b'\\' => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

/// Per-server CAS labels.
#[derive(Debug, Default)]
struct Labels {
    labels: HashMap<u64, usize>,
    uniques: Vec<u64>,
}

impl Labels {
    fn label(&mut self, cas: u64) -> String {
        if cas == 0 {
            return "0".into();
        }
        let next = self.uniques.len() + 1;
        let n = *self.labels.entry(cas).or_insert(next);
        if n == next {
            self.uniques.push(cas);
        }
        format!("C{n}")
    }

    fn unique(&self, label: usize) -> u64 {
        label
            .checked_sub(1)
            .and_then(|i| self.uniques.get(i))
            .copied()
            .unwrap_or(0)
    }
}

/// The normalised description of a step's responses, one line per response.
fn describe(responses: &[Response], labels: &mut Labels) -> Vec<String> {
    let mut lines = Vec::new();
    let mut stats: Vec<String> = Vec::new();
    for r in responses {
        if r.opcode == STAT && r.status == 0 && !r.key.is_empty() {
            stats.push(format!(
                "stat opaque={:x} {}=<value>",
                r.opaque,
                escape(&r.key)
            ));
            continue;
        }
        stats.sort();
        lines.append(&mut stats);
        let value = if r.opcode == VERSION && r.status == 0 {
            "<version>".to_string()
        } else {
            escape(&r.value)
        };
        let mut line = String::new();
        let _ = write!(
            line,
            "op={:02x} status={:x} opaque={:x} cas={} extras={} key={} value={}",
            r.opcode,
            r.status,
            r.opaque,
            labels.label(r.cas),
            escape(&r.extras),
            escape(&r.key),
            value
        );
        lines.push(line);
    }
    stats.sort();
    lines.append(&mut stats);
    lines
}

/// What one step got on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub lines: Vec<String>,
    /// How it ended: `in sync`, `closed`, `timed out`, or a socket error.
    pub ending: String,
}

/// Replays `steps` against a fresh server of `kind` started with `args`.
pub fn replay(kind: Kind, args: &[&str], steps: &[Step]) -> (Vec<Outcome>, String) {
    let mut server = Server::start(kind, args);
    let mut labels = Labels::default();
    let mut conn: Option<Conn> = None;
    let mut outcomes = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        if conn.as_ref().is_none_or(Conn::is_closed) {
            conn = server.try_connect().ok().map(Conn::new);
        }
        let Some(c) = conn.as_mut() else {
            outcomes.push(Outcome {
                lines: Vec::new(),
                ending: "connect failed".into(),
            });
            continue;
        };
        outcomes.push(run_step(c, step, index, &mut labels));
    }
    server.terminate();
    server.drain_output();
    (outcomes, server.diagnostics())
}

fn run_step(conn: &mut Conn, step: &Step, index: usize, labels: &mut Labels) -> Outcome {
    let mut request = Vec::new();
    for write in &step.writes {
        match write {
            Write::Packet(packet) => {
                let cas = match packet.cas {
                    Cas::Raw(cas) => cas,
                    Cas::Label(label) => labels.unique(label),
                };
                packet.encode(cas, &mut request);
            }
            Write::Raw(bytes) => request.extend_from_slice(bytes),
        }
    }
    let sentinel = Packet::new(NOOP, b"").opaque(SENTINEL_OPAQUE + index as u32);
    let mut expected = Vec::new();
    expected.extend_from_slice(&[RESPONSE_MAGIC, NOOP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(&sentinel.opaque.to_be_bytes());
    expected.extend_from_slice(&[0; 8]);
    // A failed write means the server closed early; what it said before is the reply.
    let reply = if conn.send(&request).is_err() || step.expect_close {
        conn.read_to_eof(CLOSE_TIMEOUT)
    } else {
        let mut noop = Vec::new();
        sentinel.encode(0, &mut noop);
        match conn.send(&noop) {
            Ok(()) => conn.read_until(&expected, REPLY_TIMEOUT),
            Err(_) => conn.read_to_eof(CLOSE_TIMEOUT),
        }
    };
    let mut bytes = reply.bytes;
    let ending = match reply.end {
        End::Terminator => {
            bytes.truncate(bytes.len().saturating_sub(expected.len()));
            "in sync".to_string()
        }
        End::Eof | End::Reset => "closed".to_string(),
        End::Timeout => {
            conn.close();
            "timed out".to_string()
        }
        End::Error(kind) => kind.to_string(),
    };
    let (responses, rest) = parse(&bytes);
    let mut lines = describe(&responses, labels);
    if !rest.is_empty() {
        lines.push(format!("unparsed: {}", escape(&rest)));
    }
    Outcome { lines, ending }
}

/// Replays `steps` on memcached and rampart (both with `args`) at once; panics with a report
/// of every step that differs.
pub fn differential(args: &[&str], steps: &[Step]) {
    Kind::Memcached.binary();
    Kind::Rampart.binary();
    let ((reference, _), (candidate, log)) = thread::scope(|scope| {
        let reference = scope.spawn(|| replay(Kind::Memcached, args, steps));
        let candidate = scope.spawn(|| replay(Kind::Rampart, args, steps));
        let join = |h: thread::ScopedJoinHandle<'_, (Vec<Outcome>, String)>| {
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        };
        (join(reference), join(candidate))
    });
    let mut report = String::new();
    for ((step, want), got) in steps.iter().zip(&reference).zip(&candidate) {
        if want != got {
            let _ = writeln!(report, "=== step {:?}", step.title);
            let _ = writeln!(report, "memcached ({}):", want.ending);
            for line in &want.lines {
                let _ = writeln!(report, "  {line}");
            }
            let _ = writeln!(report, "rampart ({}):", got.ending);
            for line in &got.lines {
                let _ = writeln!(report, "  {line}");
            }
        }
    }
    if std::env::var_os("TRANSCRIPT_DUMP").is_some() {
        for (step, want) in steps.iter().zip(&reference) {
            println!("--- {} ({})", step.title, want.ending);
            for line in &want.lines {
                println!("  {line}");
            }
        }
    }
    assert!(
        report.is_empty(),
        "binary replies differ between memcached and rampart:\n{report}\n{log}"
    );
    // A run where memcached itself lost sync proves nothing: every step must end as planned.
    for (step, want) in steps.iter().zip(&reference) {
        let planned = if step.expect_close {
            "closed"
        } else {
            "in sync"
        };
        assert_eq!(want.ending, planned, "memcached, step {:?}", step.title);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_and_normalise() {
        let mut bytes = vec![RESPONSE_MAGIC, 0x00, 0, 1, 4, 0, 0, 0, 0, 0, 0, 7];
        bytes.extend_from_slice(&9u32.to_be_bytes());
        bytes.extend_from_slice(&77u64.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 5, b'k', b'a', b'b']);
        let (responses, rest) = parse(&bytes);
        assert!(rest.is_empty());
        let mut labels = Labels::default();
        assert_eq!(
            describe(&responses, &mut labels),
            ["op=00 status=0 opaque=9 cas=C1 extras=\\x00\\x00\\x00\\x05 key=k value=ab"]
        );
        assert_eq!(labels.unique(1), 77);
        assert_eq!(labels.unique(2), 0);
    }
}
