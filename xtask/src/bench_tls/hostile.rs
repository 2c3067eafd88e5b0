//! bench-tls's hostile phase (issue 12): what a few misbehaving clients make each server spend.
//! Each case starts a fresh server with `-m 64`, stores one 500,000-byte item, lets the hostile
//! clients loose for a few seconds while a probe client asks for a small key every 50 ms, and
//! reports the growth of resident memory (the peak of the samples and of VmHWM, less the
//! resident memory before) and the probe's slowest answer. The integration tests
//! (`tests/tests/hostile.rs`) check the bounds; this measures them beside memcached.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::server::{Kind, Launch, Server};

/// The memory limit of the hostile phase, as in issue 12's reproduction.
const HOSTILE_MEMORY_MIB: usize = 64;
const BIG_BYTES: usize = 500_000;
const RUN: Duration = Duration::from_secs(3);
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// One hostile case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Case {
    /// 3 clients each send one `get` of the item 12,000 times over and never read.
    UnreadMultiGet,
    /// 100 clients each pipeline 10,000 `get`s of the item and never read.
    UnreadPipelines,
    /// 400 clients each send a 1,000,000-byte `set` header and 900,000 bytes of the value.
    UnfinishedSets,
}

impl Case {
    pub const ALL: [Case; 3] = [
        Case::UnreadMultiGet,
        Case::UnreadPipelines,
        Case::UnfinishedSets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::UnreadMultiGet => "hostile: 3 unread 12,000-key gets of 500 KB",
            Case::UnreadPipelines => "hostile: 100 unread pipelines of 10,000 gets of 500 KB",
            Case::UnfinishedSets => "hostile: 400 unfinished 1 MB sets",
        }
    }
}

/// What one case cost one server.
#[derive(Debug, Clone, Serialize)]
pub struct Hostile {
    pub round: usize,
    pub kind: Kind,
    pub case: Case,
    pub rss_before_kib: u64,
    pub peak_rss_kib: u64,
    pub growth_mib: f64,
    /// The probe's slowest reply while the hostile clients ran.
    pub probe_max_ms: f64,
}

/// Runs `case` against a fresh `kind`.
pub fn run(launch: &Launch, round: usize, kind: Kind, case: Case) -> Result<Hostile> {
    let mut server = launch.start_with(kind, false, HOSTILE_MEMORY_MIB)?;
    let result = run_on(&server, round, kind, case);
    super::with_exit(result, kind, &mut server)
}

fn connect(server: &Server) -> Result<TcpStream> {
    let stream = TcpStream::connect(server.addr()).context("connect")?;
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads until `reply` ends with `end`.
fn read_reply(stream: &mut TcpStream, end: &[u8]) -> Result<Vec<u8>> {
    let mut reply = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while !reply.ends_with(end) {
        let n = stream.read(&mut chunk).context("read a reply")?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    Ok(reply)
}

/// Writes what the socket takes of `bytes` within a short bound (a hostile client's server
/// stops reading once it is full).
fn push(stream: &mut TcpStream, bytes: &[u8]) -> Result<()> {
    stream.set_write_timeout(Some(Duration::from_millis(200)))?;
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("a hostile write"),
        }
    }
    Ok(())
}

fn run_on(server: &Server, round: usize, kind: Kind, case: Case) -> Result<Hostile> {
    let mut setup = connect(server)?;
    let mut set = format!("set big 0 0 {BIG_BYTES}\r\n").into_bytes();
    set.extend(std::iter::repeat_n(b'b', BIG_BYTES));
    set.extend_from_slice(b"\r\nset small 0 0 5\r\nsmall\r\n");
    setup.write_all(&set)?;
    let stored = read_reply(&mut setup, b"STORED\r\nSTORED\r\n")?;
    if stored != b"STORED\r\nSTORED\r\n" {
        bail!(
            "{}: storing the item: {:?}",
            kind.name(),
            String::from_utf8_lossy(&stored)
        );
    }
    let before = server.sample()?;
    let mut clients = Vec::new();
    match case {
        Case::UnreadMultiGet => {
            let mut line = b"get".to_vec();
            for _ in 0..12_000 {
                line.extend_from_slice(b" big");
            }
            line.extend_from_slice(b"\r\n");
            for _ in 0..3 {
                let mut client = connect(server)?;
                client.write_all(&line)?;
                clients.push(client);
            }
        }
        Case::UnreadPipelines => {
            let pipeline = b"get big\r\n".repeat(10_000);
            for _ in 0..100 {
                let mut client = connect(server)?;
                push(&mut client, &pipeline)?;
                clients.push(client);
            }
        }
        Case::UnfinishedSets => {
            let part = vec![b'p'; 900_000];
            for i in 0..400 {
                let mut client = connect(server)?;
                client.write_all(format!("set p{i} 0 0 1000000\r\n").as_bytes())?;
                push(&mut client, &part)?;
                clients.push(client);
            }
        }
    }
    let mut probe = connect(server)?;
    let mut peak = before.rss_kib;
    let mut slowest = Duration::ZERO;
    let end = Instant::now() + RUN;
    while Instant::now() < end {
        let asked = Instant::now();
        probe.write_all(b"get small\r\n")?;
        read_reply(&mut probe, b"END\r\n")
            .with_context(|| format!("{}: the probe during {}", kind.name(), case.name()))?;
        slowest = slowest.max(asked.elapsed());
        peak = peak.max(server.sample()?.rss_kib);
        std::thread::sleep(PROBE_INTERVAL);
    }
    peak = peak.max(server.sample()?.hwm_kib);
    drop(clients);
    Ok(Hostile {
        round,
        kind,
        case,
        rss_before_kib: before.rss_kib,
        peak_rss_kib: peak,
        growth_mib: peak.saturating_sub(before.rss_kib) as f64 / 1024.0,
        probe_max_ms: slowest.as_secs_f64() * 1e3,
    })
}
