//! Issue 14's cost proof: what authentication (`-Y`, memcached's ASCII form) costs a
//! connection, and that it costs nothing per request once the connection has authenticated.
//!
//! Handshakes: connections one after another (`rampart_perf::first_replies`), each TCP
//! connect, the TLS handshake when TLS is on, the ASCII authentication when the server has
//! `-Y`, one `get` and close; the time from connect to the get's reply (median and p99) and
//! the server's CPU over the sequence (utime + stime from `/proc/<pid>/stat`) per connection.
//! Rampart runs without `-Y` (the baseline), with a hashed entry (`rampart passwd`: one
//! PBKDF2 per authentication) and with a cleartext `user:password` entry; memcached without
//! `-Y` and with its cleartext file, the only kind it reads.
//!
//! Per request: issue 13's reference workload ([`super::reference`]) at 10,000/s and at
//! saturation, depth 1, against rampart with `-Y` and every connection authenticated, and
//! against the same binary without `-Y`, in turn within each round (the order flips every
//! other round), medians of server CPU per request. Every run starts a fresh server.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rampart_perf::{AsciiAuth, Config, Sequence};
use serde::Serialize;

use super::reference::{self, Generator, Point, RateRun};
use super::report::{Failure, median};
use super::server::{Kind, Launch, set_mode};
use super::{Bench, failed, with_exit};

/// The benchmark's throwaway credentials (the scratch directory holding them is removed).
const USER: &str = "bench";
const PASSWORD: &str = "bench-tls-not-a-secret";
/// Most connections of one handshake sequence, and of one in `--quick`.
const HANDSHAKES: u64 = 20_000;
const QUICK_HANDSHAKES: u64 = 2_000;
/// The fixed offered rate of the per-request comparison, besides saturation.
pub const RATE: u32 = 10_000;

/// What the server's credential file holds, if it has `-Y` at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credential {
    /// No `-Y`: the baseline.
    None,
    /// A `rampart passwd` entry: one PBKDF2 per authentication.
    Hashed,
    /// A memcached `user:password` line.
    Cleartext,
}

impl Credential {
    pub fn name(self) -> &'static str {
        match self {
            Credential::None => "no -Y",
            Credential::Hashed => "-Y, hashed entry",
            Credential::Cleartext => "-Y, cleartext entry",
        }
    }
}

/// The servers and files of the handshake sequences, in the order they run.
const HANDSHAKE_CASES: [(Kind, Credential); 5] = [
    (Kind::Memcached, Credential::None),
    (Kind::Memcached, Credential::Cleartext),
    (Kind::Rampart, Credential::None),
    (Kind::Rampart, Credential::Hashed),
    (Kind::Rampart, Credential::Cleartext),
];

/// One handshake sequence against a fresh server.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeRun {
    pub round: usize,
    pub kind: Kind,
    pub tls: bool,
    pub credential: Credential,
    pub connections: u64,
    pub connections_per_s: f64,
    pub cpu_ticks: u64,
    pub cpu_us_per_connection: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// One window of the reference workload, authenticated or not.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRun {
    /// `-Y` with a hashed entry and every connection authenticated; else no `-Y`.
    pub authenticated: bool,
    pub run: RateRun,
}

/// Everything the phase measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AuthResults {
    /// The hashed entry's PBKDF2 iterations, as `rampart passwd` wrote it.
    pub iterations: Option<u32>,
    pub rounds: usize,
    pub handshake_seconds: f64,
    pub handshake_limit: u64,
    pub handshakes: Vec<HandshakeRun>,
    pub requests: Vec<RequestRun>,
}

/// How the phase runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub rounds: usize,
    /// Each handshake sequence's window.
    pub handshake_seconds: f64,
    /// Each per-request window (longer where a rate needs it, as in the reference phase).
    pub seconds: f64,
    pub quick: bool,
}

/// The credential files of one run of the phase.
struct Files {
    rampart_hashed: PathBuf,
    rampart_cleartext: PathBuf,
    memcached_cleartext: PathBuf,
}

impl Files {
    fn flag(&self, kind: Kind, credential: Credential) -> Option<&Path> {
        match (kind, credential) {
            (_, Credential::None) => None,
            (Kind::Memcached, _) => Some(&self.memcached_cleartext),
            (_, Credential::Hashed) => Some(&self.rampart_hashed),
            (_, Credential::Cleartext) => Some(&self.rampart_cleartext),
        }
    }
}

/// Runs the phase; failed runs go to `failures`. `usable` is the TLS preflight's verdict.
pub fn run(
    bench: &Bench,
    plan: &Plan,
    usable: &dyn Fn(Kind, bool) -> bool,
    failures: &mut Vec<Failure>,
) -> AuthResults {
    let limit = if plan.quick {
        QUICK_HANDSHAKES
    } else {
        HANDSHAKES
    };
    let mut results = AuthResults {
        rounds: plan.rounds,
        handshake_seconds: plan.handshake_seconds,
        handshake_limit: limit,
        ..AuthResults::default()
    };
    super::step("credential files: rampart passwd (hashed), user:password (cleartext)");
    let files = match write_files(bench.launch) {
        Ok((files, iterations)) => {
            results.iterations = iterations;
            files
        }
        Err(e) => {
            failures.push(failed(0, Kind::Rampart, "auth: credential files", &e));
            return results;
        }
    };
    let sequence = Sequence {
        connections: limit,
        window: Duration::from_secs_f64(plan.handshake_seconds),
    };
    for round in 1..=plan.rounds {
        for tls in [false, true] {
            for (kind, credential) in HANDSHAKE_CASES {
                if !usable(kind, tls) {
                    continue;
                }
                let name = handshake_name(tls, credential);
                super::step(&format!(
                    "round {round}/{}: {name}, {}",
                    plan.rounds,
                    kind.name()
                ));
                let file = files.flag(kind, credential);
                match handshakes(bench, round, kind, tls, credential, file, sequence) {
                    Ok(run) => results.handshakes.push(run),
                    Err(e) => failures.push(failed(round, kind, &name, &e)),
                }
            }
        }
    }
    for round in 1..=plan.rounds {
        for point in points() {
            if !usable(Kind::Rampart, point.tls) {
                continue;
            }
            // Flipped every other round, so that neither always runs first.
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for authenticated in order {
                let name = request_name(&point, authenticated);
                super::step(&format!("round {round}/{}: {name}, rampart", plan.rounds));
                let file = authenticated.then_some(files.rampart_hashed.as_path());
                match requests(bench, plan, round, point, file) {
                    Ok(run) => results.requests.push(run),
                    Err(e) => failures.push(failed(round, Kind::Rampart, &name, &e)),
                }
            }
        }
    }
    results
}

/// The per-request points: plaintext and TLS, depth 1, at [`RATE`] and at saturation.
pub fn points() -> Vec<Point> {
    let mut all = Vec::new();
    for tls in [false, true] {
        for rate in [Some(RATE), None] {
            all.push(Point {
                tls,
                depth: 1,
                rate,
                generator: Generator::RampartLoad,
            });
        }
    }
    all
}

pub fn handshake_name(tls: bool, credential: Credential) -> String {
    let transport = if tls { "tls" } else { "plain" };
    format!("auth: {transport} handshakes, {}", credential.name())
}

pub fn request_name(point: &Point, authenticated: bool) -> String {
    let with = if authenticated {
        "authenticated"
    } else {
        "no -Y"
    };
    format!("auth: {} {with}", point.name())
}

fn credentials() -> AsciiAuth {
    AsciiAuth {
        user: USER.to_string(),
        password: PASSWORD.to_string(),
    }
}

/// Writes the three files into the scratch directory; returns them and the hashed entry's
/// iteration count.
fn write_files(launch: &Launch) -> Result<(Files, Option<u32>)> {
    let line = passwd_line(&launch.rampart)?;
    let iterations = line
        .split('$')
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok());
    let files = Files {
        rampart_hashed: launch.dir.join("auth-hashed.users"),
        rampart_cleartext: launch.dir.join("auth-cleartext.users"),
        memcached_cleartext: launch.dir.join("auth-memcached.users"),
    };
    let cleartext = format!("{USER}:{PASSWORD}\n");
    fs::write(&files.rampart_hashed, line)?;
    fs::write(&files.rampart_cleartext, &cleartext)?;
    fs::write(&files.memcached_cleartext, &cleartext)?;
    // rampart refuses a credential file others may read, and reads it before dropping to
    // `nobody`; memcached reads its file after dropping privileges and checks nothing.
    set_mode(&files.rampart_hashed, 0o600)?;
    set_mode(&files.rampart_cleartext, 0o600)?;
    set_mode(&files.memcached_cleartext, 0o644)?;
    Ok((files, iterations))
}

/// `rampart passwd bench`, the password on standard input: one hashed line.
fn passwd_line(rampart: &Path) -> Result<String> {
    let mut child = Command::new(rampart)
        .args(["passwd", USER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {} passwd", rampart.display()))?;
    child
        .stdin
        .take()
        .context("rampart passwd: no standard input")?
        .write_all(format!("{PASSWORD}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !line.starts_with(&format!("{USER}:")) {
        bail!(
            "rampart passwd failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(line)
}

fn flag_args(file: Option<&Path>) -> Vec<&OsStr> {
    match file {
        Some(path) => vec![OsStr::new("-Y"), path.as_os_str()],
        None => Vec::new(),
    }
}

/// One handshake sequence against a fresh `kind`, with `-Y file` when given.
fn handshakes(
    bench: &Bench,
    round: usize,
    kind: Kind,
    tls: bool,
    credential: Credential,
    file: Option<&Path>,
    sequence: Sequence,
) -> Result<HandshakeRun> {
    let launch = bench.launch;
    let mut server = launch.start_args(kind, tls, launch.memory_mib, None, &flag_args(file))?;
    let result = (|| {
        let config = Config {
            auth: file.map(|_| credentials()),
            ..bench.config(server.addr(), tls)
        };
        let before = server.sample()?;
        let replies = rampart_perf::first_replies(&config, sequence)
            .with_context(|| format!("{} {}", kind.name(), handshake_name(tls, credential)))?;
        let after = server.sample()?;
        let cpu_ticks = after.cpu_ticks - before.cpu_ticks;
        Ok(HandshakeRun {
            round,
            kind,
            tls,
            credential,
            connections: replies.connections,
            connections_per_s: replies.connections_per_s,
            cpu_ticks,
            cpu_us_per_connection: bench.cpu_us(cpu_ticks, replies.connections),
            p50_us: replies.latency_us.p50,
            p99_us: replies.latency_us.p99,
            max_us: replies.latency_us.max,
        })
    })();
    with_exit(result, kind, &mut server)
}

/// One window of the reference workload against a fresh rampart; with `-Y file` and every
/// connection authenticated when a file is given.
fn requests(
    bench: &Bench,
    plan: &Plan,
    round: usize,
    point: Point,
    file: Option<&Path>,
) -> Result<RequestRun> {
    let keys = if plan.quick {
        reference::QUICK_KEYS
    } else {
        reference::KEYS
    };
    let extra = reference::Extra {
        args: &flag_args(file),
        auth: file.map(|_| credentials()),
    };
    let window = point.window(plan.seconds, plan.quick);
    let run = reference::load_window(bench, round, Kind::Rampart, point, window, keys, extra)?;
    Ok(RequestRun {
        authenticated: file.is_some(),
        run,
    })
}

/// The phase's tables: per transport and server, the handshake sequences' medians and what
/// `-Y` adds to them; per point, rampart's server CPU per request with every connection
/// authenticated against no `-Y` at all. "No measurable cost" means the two sets of rounds
/// overlap (the lowest authenticated run is no higher than the highest run without `-Y`):
/// with a few rounds a difference inside the rounds' own spread is not one this can measure.
pub fn table(results: &AuthResults) -> String {
    let mut t = String::new();
    if !results.handshakes.is_empty() {
        let _ = writeln!(
            t,
            "Authentication, per connection (`-Y`, ASCII authentication; hashed entry: \
             PBKDF2-SHA-256, {} iterations): connections one at a time, each connect, TLS \
             handshake, authentication, one get and close; medians over {} rounds of up to \
             {} connections in {:.0} s, with the lowest round's CPU in brackets (noise only \
             adds). A hashed entry costs one PBKDF2 at a user's first authentication; after \
             it the server remembers the password's tag (docs/security.md).\n",
            results
                .iterations
                .map_or_else(|| "?".to_string(), |n| n.to_string()),
            results.rounds,
            results.handshake_limit,
            results.handshake_seconds,
        );
        let _ = writeln!(
            t,
            "| transport | server | credential | connections/s | first reply p50 (us) | \
             p99 (us) | server CPU per connection (us) [lowest] | CPU added by -Y (us) [lowest] |"
        );
        let _ = writeln!(t, "|---|---|---|---:|---:|---:|---:|---:|");
        for tls in [false, true] {
            for (kind, credential) in HANDSHAKE_CASES {
                let runs = || {
                    results.handshakes.iter().filter(move |r| {
                        r.tls == tls && r.kind == kind && r.credential == credential
                    })
                };
                let Some(cpu) = median(runs().map(|r| r.cpu_us_per_connection)) else {
                    continue;
                };
                let low = lowest(runs().map(|r| r.cpu_us_per_connection));
                let baseline = || {
                    results.handshakes.iter().filter(|r| {
                        r.tls == tls && r.kind == kind && r.credential == Credential::None
                    })
                };
                let base = median(baseline().map(|r| r.cpu_us_per_connection));
                let base_low = lowest(baseline().map(|r| r.cpu_us_per_connection));
                let added = match (credential, base) {
                    (Credential::None, _) => "-".to_string(),
                    (_, Some(base)) => format!("{:+.1} [{:+.1}]", cpu - base, low - base_low),
                    (_, None) => "?".to_string(),
                };
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {cpu:.1} [{low:.1}] | {added} |",
                    if tls { "tls" } else { "plain" },
                    kind.name(),
                    credential.name(),
                    median(runs().map(|r| r.connections_per_s)).unwrap_or(0.0),
                    median(runs().map(|r| r.p50_us)).unwrap_or(0.0),
                    median(runs().map(|r| r.p99_us)).unwrap_or(0.0),
                );
            }
        }
        t.push('\n');
    }
    if !results.requests.is_empty() {
        let _ = writeln!(
            t,
            "Authentication, per request: rampart's server CPU per request (us) on issue 13's \
             reference workload, every connection authenticated (`-Y`, hashed entry) against \
             no `-Y`, medians over {} rounds (ranges in brackets); no measurable cost when \
             the rounds overlap.\n",
            results.rounds
        );
        let _ = writeln!(
            t,
            "| point | no -Y | authenticated | authenticated/no -Y | verdict |"
        );
        let _ = writeln!(t, "|---|---:|---:|---:|---|");
        for point in points() {
            let cpu = |authenticated: bool| -> Vec<f64> {
                results
                    .requests
                    .iter()
                    .filter(|r| r.run.point == point && r.authenticated == authenticated)
                    .map(|r| r.run.cpu_us_per_request)
                    .collect()
            };
            let (without, with) = (cpu(false), cpu(true));
            let (Some(m_without), Some(m_with)) = (
                median(without.iter().copied()),
                median(with.iter().copied()),
            ) else {
                let _ = writeln!(t, "| {} | - | - | - | not measured |", point.name());
                continue;
            };
            let range = |v: &[f64]| {
                let lo = lowest(v.iter().copied());
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (lo, hi)
            };
            let (lo_without, hi_without) = range(&without);
            let (lo_with, hi_with) = range(&with);
            let overlap = lo_with <= hi_without && lo_without <= hi_with;
            let _ = writeln!(
                t,
                "| {} | {m_without:.3} [{lo_without:.3}-{hi_without:.3}] | \
                 {m_with:.3} [{lo_with:.3}-{hi_with:.3}] | {:.3} | {} |",
                point.name(),
                m_with / m_without.max(f64::MIN_POSITIVE),
                if overlap {
                    "no measurable cost"
                } else if m_with > m_without {
                    "costs more"
                } else {
                    "costs less"
                }
            );
        }
    }
    t
}

/// The lowest of `values` (infinity for none: callers have at least one).
fn lowest(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(f64::INFINITY, f64::min)
}
