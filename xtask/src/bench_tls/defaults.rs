//! The servers as shipped (issue 13): each with its default flags, given only where to listen
//! (and, as root, whom to run as), confined to the benchmark's two CPUs. Idle: no connection
//! at all, CPU over a window, as a percentage of one CPU. Defaults against defaults, the
//! newcomer's comparison: memtier_benchmark with its own defaults but the memcached text
//! protocol (4 threads x 50 connections, 10,000 requests each, 1:10 set:get over 10 million
//! keys), on the same CPUs as the server.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::Bench;
use super::memtier::{Memtier, Target};
use super::server::Kind;

/// How long a server may settle after it listens before the idle window opens (start-up's
/// allocations and first timers are not idling).
const IDLE_SETTLE: Duration = Duration::from_secs(1);
/// `--quick`'s requests per memtier connection instead of its default 10,000.
const QUICK_REQUESTS_PER_CLIENT: u32 = 500;
/// The most a defaults run may take (memtier's 2,000,000 requests).
const DEFAULTS_TIMEOUT: Duration = Duration::from_secs(600);

/// One idle window of one server.
#[derive(Debug, Clone, Serialize)]
pub struct IdleRun {
    pub round: usize,
    pub kind: Kind,
    /// Threads of the server process.
    pub threads: u64,
    pub seconds: f64,
    pub cpu_ticks: u64,
    pub percent_of_a_cpu: f64,
}

/// One defaults-against-defaults run.
#[derive(Debug, Clone, Serialize)]
pub struct DefaultsRun {
    pub round: usize,
    pub kind: Kind,
    pub threads: u64,
    pub requests: u64,
    pub ops_per_s: f64,
    /// Server CPU over memtier's whole run (its connections included) per request.
    pub cpu_us_per_request: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Starts `kind` with its defaults and reads its CPU over `seconds` with no connection.
pub fn idle(bench: &Bench, round: usize, kind: Kind, seconds: f64) -> Result<IdleRun> {
    let mut server = bench.launch.start_defaults(kind, &bench.defaults_cpus())?;
    let result = (|| {
        thread::sleep(IDLE_SETTLE);
        let before = server.sample()?;
        let started = Instant::now();
        thread::sleep(Duration::from_secs_f64(seconds));
        let after = server.sample()?;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_ticks = after.cpu_ticks - before.cpu_ticks;
        Ok(IdleRun {
            round,
            kind,
            threads: after.threads,
            seconds: elapsed,
            cpu_ticks,
            percent_of_a_cpu: cpu_ticks as f64 / bench.ticks as f64 / elapsed * 100.0,
        })
    })();
    super::with_exit(result, kind, &mut server)
}

/// Starts `kind` with its defaults and lets memtier's defaults loose on it.
pub fn defaults(
    bench: &Bench,
    memtier: &Memtier,
    round: usize,
    kind: Kind,
    quick: bool,
) -> Result<DefaultsRun> {
    let cpus = bench.defaults_cpus();
    let mut server = bench.launch.start_defaults(kind, &cpus)?;
    let result = (|| {
        let target = Target {
            port: server.port,
            tls_ca: None,
            cpus: &cpus,
        };
        let args: Vec<String> = if quick {
            vec![format!("--requests={QUICK_REQUESTS_PER_CLIENT}")]
        } else {
            Vec::new()
        };
        let label = format!("defaults-{}-{round}", kind.name());
        let before = server.sample()?;
        let outcome = memtier
            .run(&target, &args, &bench.launch.dir, &label, DEFAULTS_TIMEOUT)
            .with_context(|| format!("{}: memtier with its defaults", kind.name()))?;
        let after = server.sample()?;
        Ok(DefaultsRun {
            round,
            kind,
            threads: after.threads,
            requests: outcome.requests,
            ops_per_s: outcome.ops_per_s,
            cpu_us_per_request: bench.cpu_us(after.cpu_ticks - before.cpu_ticks, outcome.requests),
            p50_us: outcome.p50_us,
            p99_us: outcome.p99_us,
        })
    })();
    super::with_exit(result, kind, &mut server)
}
