//! Replays a transcript against one server and records what each step got back.
//!
//! # Step protocol
//!
//! The client cannot know in general where a reply ends (a `noreply` step has none, an error
//! may or may not swallow a data block), so after each step's request the runner writes, as a
//! separate write on the same connection,
//!
//! ```text
//! set __sentinel 0 0 <n> noreply\r\n<token>\r\nget __sentinel\r\n
//! ```
//!
//! with a token unique to the step, and reads until `VALUE __sentinel 0 <n>\r\n<token>\r\nEND\r\n`
//! arrives. Everything before it is the step's reply. This also proves that the server is
//! back in sync after the step: a server that swallowed the wrong number of bytes never
//! returns the sentinel and the step ends with a timeout. Steps marked `expect close` read
//! until the server closes instead.

use std::thread;
use std::time::Duration;

use crate::io::{Conn, End, REPLY_TIMEOUT, Reply};
use crate::normalise::Normaliser;
use crate::server::Server;
use crate::transcript::{Part, Step, Transcript};

/// Key the runner uses for its sentinel; transcripts must not use it.
pub const SENTINEL_KEY: &str = "__sentinel";
/// Pause between the writes of a split request, so that the server reads them separately.
/// It shapes the input; no result depends on its length.
pub const SPLIT_PAUSE: Duration = Duration::from_millis(50);
/// Bound for a step that ends with the server closing (covers `-o idle_timeout=1`, which
/// memcached enforces with up to a few seconds of lag).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for reading the rest of a connection that closed unexpectedly.
const CLOSED_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// How a step's reply ended. Compared between servers along with the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The sentinel came back: the server answered and is in sync.
    InSync,
    /// The server closed (or reset) the connection.
    Closed,
    /// Neither the sentinel nor the close arrived in time.
    TimedOut,
    /// A socket error or a failed connect.
    Failed(String),
}

/// What one step sent and got.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// The request bytes actually sent (CAS labels replaced by this server's uniques).
    pub sent: Vec<u8>,
    /// The reply, sentinel removed, before normalisation.
    pub raw: Vec<u8>,
    /// The reply after [`crate::normalise`]; this is what is compared.
    pub normalised: Vec<u8>,
    pub ending: Ending,
}

/// Replays every step of `transcript` against `server`, in order.
pub fn run(server: &Server, transcript: &Transcript) -> Vec<StepOutcome> {
    let mut conns: Vec<(String, Conn)> = Vec::new();
    let mut normaliser = Normaliser::new();
    let mut outcomes = Vec::with_capacity(transcript.steps.len());
    for (index, step) in transcript.steps.iter().enumerate() {
        let outcome = run_step(server, step, index, &mut conns, &mut normaliser);
        outcomes.push(outcome);
    }
    outcomes
}

fn run_step(
    server: &Server,
    step: &Step,
    index: usize,
    conns: &mut Vec<(String, Conn)>,
    normaliser: &mut Normaliser,
) -> StepOutcome {
    let writes: Vec<Vec<u8>> = step
        .writes
        .iter()
        .map(|parts| substitute(parts, normaliser))
        .collect();
    let sent = writes.concat();
    let failed = |why: String| StepOutcome {
        sent: sent.clone(),
        raw: Vec::new(),
        normalised: Vec::new(),
        ending: Ending::Failed(why),
    };
    // A closed connection (quit, a protocol error, a timed-out step) is replaced by a new one.
    conns.retain(|(_, conn)| !conn.is_closed());
    let at = match conns.iter().position(|(name, _)| *name == step.conn) {
        Some(at) => at,
        None => match server.try_connect() {
            Ok(stream) => {
                conns.push((step.conn.clone(), Conn::new(stream)));
                conns.len() - 1
            }
            Err(e) => return failed(format!("connect: {e}")),
        },
    };
    let conn = &mut conns[at].1;
    if let Some(pause) = step.sleep {
        thread::sleep(pause);
    }
    let (reply, sentinel_len) = exchange(conn, step, &writes, index);
    if reply.end == End::Timeout {
        // Out of sync: later steps on this connection name get a fresh connection.
        conn.close();
    }
    finish(reply, sent, normaliser, sentinel_len)
}

/// Writes the step and reads its reply: until the sentinel (whose length is returned, to be
/// cut off), or until the server closes.
fn exchange(
    conn: &mut Conn,
    step: &Step,
    writes: &[Vec<u8>],
    index: usize,
) -> (Reply, Option<usize>) {
    for (i, write) in writes.iter().enumerate() {
        if i > 0 {
            thread::sleep(SPLIT_PAUSE);
        }
        if write.is_empty() {
            continue;
        }
        if conn.send(write).is_err() {
            // The server closed early; what it said before closing is still the reply.
            return (conn.read_to_eof(CLOSED_DRAIN_TIMEOUT), None);
        }
    }
    if step.hangup {
        // An error here means the server already closed, which the read below shows.
        let _ = conn.shutdown_write();
    }
    if step.expect_close {
        return (conn.read_to_eof(CLOSE_TIMEOUT), None);
    }
    let token = format!("s{index}");
    let request = format!(
        "set {SENTINEL_KEY} 0 0 {} noreply\r\n{token}\r\nget {SENTINEL_KEY}\r\n",
        token.len()
    );
    let expected = format!(
        "VALUE {SENTINEL_KEY} 0 {}\r\n{token}\r\nEND\r\n",
        token.len()
    );
    if conn.send(request.as_bytes()).is_err() {
        return (conn.read_to_eof(CLOSED_DRAIN_TIMEOUT), None);
    }
    (
        conn.read_until(expected.as_bytes(), REPLY_TIMEOUT),
        Some(expected.len()),
    )
}

fn finish(
    reply: Reply,
    sent: Vec<u8>,
    normaliser: &mut Normaliser,
    sentinel_len: Option<usize>,
) -> StepOutcome {
    let mut raw = reply.bytes;
    let ending = match reply.end {
        End::Terminator => {
            let keep = raw.len().saturating_sub(sentinel_len.unwrap_or(0));
            raw.truncate(keep);
            Ending::InSync
        }
        End::Eof | End::Reset => Ending::Closed,
        End::Timeout => Ending::TimedOut,
        End::Error(kind) => Ending::Failed(kind.to_string()),
    };
    let normalised = normaliser.normalise(&raw);
    StepOutcome {
        sent,
        raw,
        normalised,
        ending,
    }
}

/// The bytes of one write, with `{Cn}` replaced by this server's unique for label `Cn`
/// (`0` when it has shown none: the step then differs visibly wherever the unique was due).
fn substitute(parts: &[Part], normaliser: &Normaliser) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        match part {
            Part::Bytes(bytes) => out.extend_from_slice(bytes),
            Part::Cas(label) => out.extend_from_slice(normaliser.unique(*label).unwrap_or(b"0")),
        }
    }
    out
}
