//! What a connection costs before it does any work: connections opened one after another,
//! each timed from before `connect` to its first reply. Each one connects, shakes hands when
//! TLS is on, authenticates when [`Config::auth`] says so, sends one `get` and waits for its
//! reply, and closes (a TLS close_notify first). One at a time, so that the time is the
//! server's and the path's, not a queue's; the server's CPU over the sequence divided by its
//! connections is what one connection costs it (`cargo xtask bench-tls --only auth`).

use std::io::{self, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::reply::{self, Parsed, Reply};
use crate::stats::{Latency, MAX_LATENCY_NS, new_histogram};
use crate::sys;
use crate::transport::{Connector, Stream};
use crate::workload::{Op, Workload};

/// Most connections one sequence may open (a `--handshakes` bound, and the TIME_WAIT sockets
/// a sequence leaves behind stay far below the ephemeral port range).
pub const MAX_SEQUENCE_CONNECTIONS: u64 = 25_000;
const READ_CHUNK_BYTES: usize = 4096;

/// How far a sequence goes: whichever bound comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    pub connections: u64,
    /// No connection is begun at or after this long.
    pub window: Duration,
}

/// What a sequence measured.
#[derive(Debug, Clone, Serialize)]
pub struct FirstReplies {
    pub server: String,
    pub tls: bool,
    /// The user every connection authenticated as, if any.
    pub auth_user: Option<String>,
    /// Connections made, each to its first reply.
    pub connections: u64,
    /// From the first connect to the last close, seconds.
    pub elapsed_s: f64,
    pub connections_per_s: f64,
    /// From before `connect` to the first `get`'s reply, microseconds.
    pub latency_us: Latency,
}

impl FirstReplies {
    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let l = &self.latency_us;
        format!(
            "{server} {tls}{auth}: {n} connections one at a time in {elapsed:.2} s \
             ({rate:.0}/s)\n\
             connect to first reply, us: p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  max {max:.1}",
            server = self.server,
            tls = if self.tls { "TLS" } else { "plaintext" },
            auth = self
                .auth_user
                .as_ref()
                .map(|user| format!(" authenticated as {user}"))
                .unwrap_or_default(),
            n = self.connections,
            elapsed = self.elapsed_s,
            rate = self.connections_per_s,
            p50 = l.p50,
            p90 = l.p90,
            p99 = l.p99,
            max = l.max,
        )
    }
}

/// Runs one sequence against `config`'s server, on a thread of its own pinned to the first
/// of `config.cpus` (if any). Only the connection settings of `config` count (server, TLS,
/// authentication, the key space of the `get`, the I/O timeout); any failed connection
/// ends the sequence with its error.
pub fn first_replies(config: &Config, sequence: Sequence) -> Result<FirstReplies, Error> {
    config.validate()?;
    if !(1..=MAX_SEQUENCE_CONNECTIONS).contains(&sequence.connections) {
        return Err(ConfigError::Handshakes(sequence.connections).into());
    }
    if sequence.window.is_zero() {
        return Err(ConfigError::Duration.into());
    }
    let connector = Connector::new(config)?;
    let workload = Workload::new(config);
    let cpu = config.cpus.first().copied();
    let config = config.clone();
    let handle = thread::Builder::new()
        .name("rampart-load-handshakes".to_string())
        .spawn(move || {
            if let Some(cpu) = cpu {
                sys::pin_current_thread(cpu).map_err(|source| Error::Affinity { cpu, source })?;
            }
            sequence_on(&config, &connector, &workload, sequence)
        })
        .map_err(Error::Thread)?;
    handle.join().map_err(|_| Error::ThreadPanicked)?
}

fn sequence_on(
    config: &Config,
    connector: &Connector,
    workload: &Workload,
    sequence: Sequence,
) -> Result<FirstReplies, Error> {
    let mut latency_ns = new_histogram();
    let mut request = Vec::new();
    let mut buf = Vec::new();
    let start = Instant::now();
    let until = start + sequence.window;
    let mut made = 0;
    // Bounded by the count and the window; each turn ends or fails within the I/O timeout.
    while made < sequence.connections && Instant::now() < until {
        request.clear();
        workload.encode(Op::Get, made % workload.keys(), &mut request);
        let began = Instant::now();
        let mut stream = connector.connect_blocking()?;
        first_reply(&mut stream, &request, &mut buf).map_err(|message| Error::FirstReply {
            server: connector.server().to_string(),
            message,
        })?;
        let nanos = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
        latency_ns.saturating_record(nanos.clamp(1, MAX_LATENCY_NS));
        stream.close();
        made += 1;
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    Ok(FirstReplies {
        server: config.server.clone(),
        tls: config.tls.is_some(),
        auth_user: config.auth.as_ref().map(|a| a.user.clone()),
        connections: made,
        elapsed_s,
        connections_per_s: made as f64 / elapsed_s.max(f64::MIN_POSITIVE),
        latency_us: Latency::of(&latency_ns),
    })
}

/// Sends the `get` and reads until its whole reply is in; anything but a retrieval's reply is
/// an error that says what came.
fn first_reply(stream: &mut Stream, request: &[u8], buf: &mut Vec<u8>) -> Result<(), String> {
    stream
        .write_all(request)
        .map_err(|e| format!("sending the get: {e}"))?;
    buf.clear();
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    // Each turn reads at least one byte or leaves; the parser bounds a reply's length.
    loop {
        match reply::parse(buf) {
            Parsed::Complete {
                consumed,
                reply: Reply::Values { .. },
            } if consumed == buf.len() => return Ok(()),
            Parsed::Complete { consumed, .. } => {
                let shown = String::from_utf8_lossy(&buf[..consumed.min(120)]);
                return Err(format!("not a get's reply alone: {shown:?}"));
            }
            Parsed::Invalid => return Err("bytes that are no memcached reply".to_string()),
            Parsed::Incomplete => {}
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("the server closed the connection".to_string()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the reply: {e}")),
        }
    }
}
