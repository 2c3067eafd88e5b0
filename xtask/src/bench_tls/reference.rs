//! Issue 13, "the benchmark measures what users run": the reference workload (50
//! connections, 32-byte values, 1:10 set:get, 50,000 keys set beforehand) at fixed offered
//! rates as well as at saturation, measured by two generators, plus the servers as shipped
//! ([`defaults`]: idle CPU, defaults against defaults). [`scorecard`] sums it up.
//!
//! Every run starts a fresh server (`-t 1` pinned to the server CPU, as in the rest of
//! bench-tls), sets the keys with `rampart-load` (one at a time per connection under TLS:
//! memcached 1.6.18 stalls on pipelined TLS sets), then measures one window with one
//! generator; the three programs take turns within each point of each round.
//! Server CPU is utime + stime from `/proc/<pid>/stat` over the window, divided by the
//! replies received in it.

use std::ffi::OsStr;
use std::time::Duration;

use anyhow::{Context, Result};
use rampart_perf::{AsciiAuth, Config, Stop};
use serde::Serialize;

use super::memtier::{Memtier, Target};
use super::server::Kind;
use super::{Bench, check_clean, failed, with_exit};
use super::{defaults, report::Failure};

pub const KEYS: u64 = 50_000;
/// The keys are `key:10000` to `key:59999`: no leading zeros, so that memtier's unpadded
/// `--key-minimum=10000 --key-maximum=59999` names the same keys as `rampart-load`.
const FIRST_KEY: u64 = 10_000;
/// `--quick` sets fewer keys: it checks for errors, and setting 50,000 keys one at a time
/// before every run would be most of its time.
pub(super) const QUICK_KEYS: u64 = 5_000;
pub const VALUE_BYTES: usize = 32;
/// 1:10 set:get.
pub const GET_RATIO: f64 = 10.0 / 11.0;
/// Offered rates of the open loop, requests per second across all connections.
pub const RATES: [u32; 3] = [1_000, 10_000, 50_000];
/// `--quick` offers the lowest rate only, besides saturation: it checks for errors.
const QUICK_RATES: [u32; 1] = [1_000];
/// A fixed-rate window holds at least this many requests: CPU time comes in clock ticks
/// (10 ms at 100 Hz), and 10,000 requests at 1,000/s cost a server 100-300 ms.
const MIN_REQUESTS_PER_WINDOW: u64 = 10_000;
/// How long memtier may run beyond its window (connecting, setting the keys, exiting).
const MEMTIER_GRACE: Duration = Duration::from_secs(60);

/// Which load generator measured a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generator {
    /// The project's own, `rampart_perf`, in this process: an open loop with evenly spaced
    /// intended send times.
    RampartLoad,
    /// memtier_benchmark, a separate process: `--rate-limiting` per connection.
    Memtier,
}

impl Generator {
    pub fn name(self) -> &'static str {
        match self {
            Generator::RampartLoad => "rampart-load",
            Generator::Memtier => "memtier",
        }
    }
}

/// One measured configuration of the reference workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Point {
    pub tls: bool,
    pub depth: usize,
    /// Offered requests per second in all; `None`: saturation (closed loop).
    pub rate: Option<u32>,
    pub generator: Generator,
}

impl Point {
    /// The points of one round, in the order they run: for each transport, each rate and
    /// then saturation at depth 1 by both generators, and saturation at depth 16 by
    /// `rampart-load` (issue 13 asks that depth 16 keep its lead).
    pub fn all(quick: bool) -> Vec<Point> {
        let rates: &[u32] = if quick { &QUICK_RATES } else { &RATES };
        let mut all = Vec::new();
        for tls in [false, true] {
            for rate in rates.iter().copied().map(Some).chain([None]) {
                for generator in [Generator::RampartLoad, Generator::Memtier] {
                    all.push(Point {
                        tls,
                        depth: 1,
                        rate,
                        generator,
                    });
                }
            }
            all.push(Point {
                tls,
                depth: 16,
                rate: None,
                generator: Generator::RampartLoad,
            });
        }
        all
    }

    /// `plain d1 1000/s`, `tls d16 saturation`: the generator is not part of the name.
    pub fn name(&self) -> String {
        let transport = if self.tls { "tls" } else { "plain" };
        let load = match self.rate {
            Some(rate) => format!("{rate}/s"),
            None => "saturation".to_string(),
        };
        format!("{transport} d{} {load}", self.depth)
    }

    /// How long the window lasts: `seconds`, or longer at a low rate so that it holds
    /// [`MIN_REQUESTS_PER_WINDOW`] requests (not in `--quick`).
    pub fn window(&self, seconds: f64, quick: bool) -> Duration {
        let floor_s = match self.rate {
            Some(rate) if !quick => MIN_REQUESTS_PER_WINDOW as f64 / f64::from(rate),
            _ => 0.0,
        };
        Duration::from_secs_f64(seconds.max(floor_s))
    }
}

/// One run of one program at one point.
#[derive(Debug, Clone, Serialize)]
pub struct RateRun {
    pub round: usize,
    pub kind: Kind,
    pub point: Point,
    pub window_s: f64,
    /// Replies in the window.
    pub requests: u64,
    pub ops_per_s: f64,
    /// Server CPU over the window, clock ticks.
    pub cpu_ticks: u64,
    pub cpu_us_per_request: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// `rampart-load`'s open loop: requests due but never sent (the server was behind).
    pub unsent: u64,
    /// memtier over TLS: its separate set-up run (connections and handshakes, 1 request
    /// each, teardown), whose CPU and requests are taken off the window's; `(ticks,
    /// requests)`.
    pub memtier_setup: Option<(u64, u64)>,
}

/// Everything the issue-13 phases measured, and what could not run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Reference {
    /// Keys set before each fixed-rate run.
    pub keys: u64,
    /// memtier's version, or why it was not run.
    pub memtier: String,
    /// Why memtier could not be built, when its phases were asked for.
    pub memtier_missing: Option<String>,
    pub rates: Vec<RateRun>,
    pub idle: Vec<defaults::IdleRun>,
    pub defaults: Vec<defaults::DefaultsRun>,
    /// The command line each program's defaults ran with.
    pub default_commands: Vec<(Kind, String)>,
}

/// Which of the issue-13 phases to run, and how.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub rates: bool,
    pub idle: bool,
    pub defaults: bool,
    pub rounds: usize,
    pub seconds: f64,
    pub idle_seconds: f64,
    pub quick: bool,
}

impl Plan {
    /// The keys set before each fixed-rate run.
    pub fn keys(&self) -> u64 {
        if self.quick { QUICK_KEYS } else { KEYS }
    }
}

/// Runs the phases `plan` asks for; failed runs go to `failures`, the rest into the result.
/// `usable` says whether a program may take part in a TLS point (the preflight's verdict).
pub fn run(
    bench: &Bench,
    plan: &Plan,
    usable: &dyn Fn(Kind, bool) -> bool,
    failures: &mut Vec<Failure>,
) -> Reference {
    let mut reference = Reference {
        keys: plan.keys(),
        ..Reference::default()
    };
    let memtier = if plan.rates || plan.defaults {
        super::step("memtier_benchmark: ../shared/tools/build-memtier.sh");
        match Memtier::build(&super::root()) {
            Ok(m) => {
                println!("{} ({})", m.binary.display(), m.version);
                reference.memtier = m.version.clone();
                Some(m)
            }
            Err(reason) => {
                eprintln!("warning: memtier_benchmark not run: {reason}");
                reference.memtier = format!("not run: {reason}");
                reference.memtier_missing = Some(reason);
                None
            }
        }
    } else {
        reference.memtier = "not needed by the phases asked for".to_string();
        None
    };
    let points: Vec<Point> = Point::all(plan.quick)
        .into_iter()
        .filter(|p| plan.rates && (p.generator == Generator::RampartLoad || memtier.is_some()))
        .collect();
    for round in 1..=plan.rounds {
        for point in &points {
            for kind in Kind::WITH_FLOOR
                .into_iter()
                .filter(|&k| usable(k, point.tls))
            {
                let name = format!("{} ({})", point.name(), point.generator.name());
                super::step(&format!(
                    "round {round}/{}: reference workload {name}, {}",
                    plan.rounds,
                    kind.name()
                ));
                let result = match (point.generator, &memtier) {
                    (Generator::Memtier, Some(m)) => {
                        memtier_run(bench, plan, m, round, kind, *point)
                    }
                    _ => load_run(bench, plan, round, kind, *point),
                };
                match result {
                    Ok(run) => reference.rates.push(run),
                    Err(e) => failures.push(failed(round, kind, &name, &e)),
                }
            }
        }
    }
    let cpus = bench.defaults_cpus();
    for kind in Kind::WITH_FLOOR {
        let command = crate::render(&bench.launch.defaults_command(kind, &cpus));
        reference.default_commands.push((kind, command));
    }
    if plan.idle {
        for round in 1..=plan.rounds {
            for kind in Kind::WITH_FLOOR {
                super::step(&format!(
                    "round {round}/{}: idle for {} s with default flags, {}",
                    plan.rounds,
                    plan.idle_seconds,
                    kind.name()
                ));
                match defaults::idle(bench, round, kind, plan.idle_seconds) {
                    Ok(run) => reference.idle.push(run),
                    Err(e) => failures.push(failed(round, kind, "idle", &e)),
                }
            }
        }
    }
    if let (true, Some(m)) = (plan.defaults, &memtier) {
        for round in 1..=plan.rounds {
            for kind in Kind::WITH_FLOOR {
                super::step(&format!(
                    "round {round}/{}: defaults vs defaults (memtier_benchmark's own), {}",
                    plan.rounds,
                    kind.name()
                ));
                match defaults::defaults(bench, m, round, kind, plan.quick) {
                    Ok(run) => reference.defaults.push(run),
                    Err(e) => failures.push(failed(round, kind, "defaults vs defaults", &e)),
                }
            }
        }
    }
    reference
}

/// The reference workload for `rampart-load` against `addr`: the keys set first, one set
/// in flight per connection under TLS (memcached 1.6.18 stalls on pipelined TLS sets).
fn workload(bench: &Bench, keys: u64, point: &Point, addr: String) -> Config {
    Config {
        keys,
        first_key: FIRST_KEY,
        value_size: VALUE_BYTES,
        get_ratio: GET_RATIO,
        prepopulate: true,
        prepopulate_depth: point.tls.then_some(1),
        pipeline: point.depth,
        ..bench.config(addr, point.tls)
    }
}

/// One window of `rampart-load` against a fresh `kind`.
fn load_run(bench: &Bench, plan: &Plan, round: usize, kind: Kind, point: Point) -> Result<RateRun> {
    let window = point.window(plan.seconds, plan.quick);
    load_window(
        bench,
        round,
        kind,
        point,
        window,
        plan.keys(),
        Extra::default(),
    )
}

/// What another phase adds to a [`load_window`]: server flags after the common ones, and
/// credentials every connection authenticates with first (the authentication phase's).
#[derive(Default)]
pub(super) struct Extra<'a> {
    pub args: &'a [&'a OsStr],
    pub auth: Option<AsciiAuth>,
}

/// One window of `rampart-load` over `keys` against a fresh `kind`, with `extra`.
pub(super) fn load_window(
    bench: &Bench,
    round: usize,
    kind: Kind,
    point: Point,
    window: Duration,
    keys: u64,
    extra: Extra<'_>,
) -> Result<RateRun> {
    let launch = bench.launch;
    let mut server = launch.start_args(kind, point.tls, launch.memory_mib, None, extra.args)?;
    let result = (|| {
        let config = Config {
            auth: extra.auth,
            rate: point.rate.map(f64::from),
            stop: Stop::Duration(window),
            ..workload(bench, keys, &point, server.addr())
        };
        // start() returns once connected (and authenticated) and the keys are set: the
        // window's CPU alone.
        let running = rampart_perf::start(&config)
            .with_context(|| format!("{} {}", kind.name(), point.name()))?;
        let before = server.sample()?;
        let report = running.finish()?;
        let after = server.sample()?;
        check_clean(kind, &point.name(), &report)?;
        let cpu_ticks = after.cpu_ticks - before.cpu_ticks;
        Ok(RateRun {
            round,
            kind,
            point,
            window_s: window.as_secs_f64(),
            requests: report.ops,
            ops_per_s: report.ops_per_s,
            cpu_ticks,
            cpu_us_per_request: bench.cpu_us(cpu_ticks, report.ops),
            p50_us: report.latency_us.p50,
            p99_us: report.latency_us.p99,
            p999_us: report.latency_us.p999,
            unsent: report.unsent,
            memtier_setup: None,
        })
    })();
    with_exit(result, kind, &mut server)
}

/// One window of memtier against a fresh `kind`. `rampart-load` sets the same keys as in its
/// own runs (memtier would take a second or two more to do it); memtier makes its
/// connections inside the window, so over TLS a set-up run (every connection made and its
/// handshake done, one request each, closed) is measured first and its CPU and requests
/// are taken off the window's. Plaintext connections cost well under a clock tick.
fn memtier_run(
    bench: &Bench,
    plan: &Plan,
    memtier: &Memtier,
    round: usize,
    kind: Kind,
    point: Point,
) -> Result<RateRun> {
    let window = point.window(plan.seconds, plan.quick);
    let keys = plan.keys();
    let mut server = bench.launch.start(kind, point.tls)?;
    let result = (|| {
        let fill = Config {
            stop: Stop::Requests(1),
            ..workload(bench, plan.keys(), &point, server.addr())
        };
        let filled = rampart_perf::run(&fill)
            .with_context(|| format!("{}: setting the keys", kind.name()))?;
        check_clean(kind, "setting the keys", &filled)?;
        let ca = bench.launch.certs.ca.as_path();
        let target = Target {
            port: server.port,
            tls_ca: point.tls.then_some(ca),
            cpus: bench.client_cpus,
        };
        let dir = &bench.launch.dir;
        let label = format!("{}-{round}", kind.name());
        let secs = window.as_secs_f64().ceil().max(1.0) as u64;
        let timeout = Duration::from_secs(secs) + MEMTIER_GRACE;
        let before_setup = server.sample()?;
        let setup = if point.tls {
            let args = memtier_args(keys, None, &["--requests=1"]);
            let outcome = memtier
                .run(&target, &args, dir, &label, timeout)
                .with_context(|| format!("{}: memtier's set-up run", kind.name()))?;
            Some(outcome.requests)
        } else {
            None
        };
        let before = server.sample()?;
        let test_time = format!("--test-time={secs}");
        let outcome = memtier
            .run(
                &target,
                &memtier_args(keys, point.rate, &[&test_time]),
                dir,
                &label,
                timeout,
            )
            .with_context(|| format!("{} {} (memtier)", kind.name(), point.name()))?;
        let after = server.sample()?;
        let window_ticks = after.cpu_ticks - before.cpu_ticks;
        let setup = setup.map(|requests| (before.cpu_ticks - before_setup.cpu_ticks, requests));
        let (setup_ticks, setup_requests) = setup.unwrap_or((0, 0));
        let ticks = window_ticks.saturating_sub(setup_ticks);
        let requests = outcome.requests.saturating_sub(setup_requests);
        Ok(RateRun {
            round,
            kind,
            point,
            window_s: secs as f64,
            requests: outcome.requests,
            ops_per_s: outcome.ops_per_s,
            cpu_ticks: window_ticks,
            cpu_us_per_request: bench.cpu_us(ticks, requests),
            p50_us: outcome.p50_us,
            p99_us: outcome.p99_us,
            p999_us: outcome.p999_us,
            unsent: 0,
            memtier_setup: setup,
        })
    })();
    with_exit(result, kind, &mut server)
}

/// memtier's flags for the reference workload on one thread of 50 connections, depth 1:
/// `rampart-load`'s keys (`key:10000` to `key:<10000 + keys - 1>`); `rate` in all (memtier's
/// is per connection).
fn memtier_args(keys: u64, rate: Option<u32>, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--threads=1".to_string(),
        format!("--clients={}", super::CONNECTIONS),
        "--ratio=1:10".to_string(),
        format!("--data-size={VALUE_BYTES}"),
        "--key-prefix=key:".to_string(),
        format!("--key-minimum={FIRST_KEY}"),
        format!("--key-maximum={}", FIRST_KEY + keys - 1),
        "--key-pattern=R:R".to_string(),
        "--pipeline=1".to_string(),
    ];
    if let Some(rate) = rate {
        args.push(format!(
            "--rate-limiting={}",
            per_connection(rate, super::CONNECTIONS)
        ));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// memtier's rate is a whole number of requests per second per connection; every rate of
/// [`RATES`] divides evenly by the 50 connections.
fn per_connection(rate: u32, connections: usize) -> u32 {
    let connections = u32::try_from(connections).unwrap_or(u32::MAX).max(1);
    (rate / connections).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rate_splits_evenly_over_the_connections() {
        for rate in RATES {
            let each = per_connection(rate, super::super::CONNECTIONS);
            assert_eq!(each as usize * super::super::CONNECTIONS, rate as usize);
        }
    }

    #[test]
    fn a_round_has_both_generators_at_every_rate_and_depth_16_at_saturation() {
        let points = Point::all(false);
        // 2 transports x (3 rates + saturation) x 2 generators + 2 depth-16 points.
        assert_eq!(points.len(), 2 * 4 * 2 + 2);
        let names: std::collections::HashSet<String> = points.iter().map(Point::name).collect();
        assert!(names.contains("plain d1 1000/s"));
        assert!(names.contains("tls d1 50000/s"));
        assert!(names.contains("tls d16 saturation"));
        assert_eq!(Point::all(true).len(), 2 * 2 * 2 + 2);
    }

    #[test]
    fn a_low_rate_gets_a_longer_window_except_in_quick() {
        let slow = Point {
            tls: false,
            depth: 1,
            rate: Some(1_000),
            generator: Generator::RampartLoad,
        };
        assert_eq!(slow.window(3.0, false), Duration::from_secs(10));
        assert_eq!(slow.window(3.0, true), Duration::from_secs(3));
        let fast = Point {
            rate: Some(50_000),
            ..slow
        };
        assert_eq!(fast.window(3.0, false), Duration::from_secs(3));
    }
}
