//! What a benchmark run keeps (every run, raw, for the JSON) and how it is summed up: medians
//! per server, scenario and metric, their ratio, and the goals, as a Markdown table.
//! The floor server's closed-loop figures sit beside them: a goal whose ratio is below the
//! floor's own ratio to memcached is one no server could meet on this machine.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::Result;
use rampart_perf::Report;
use serde::Serialize;

use super::hostile::{Case, Hostile};
use super::server::Kind;
use super::{CONNECTIONS, GET_RATIO, KEYS, MEMORY_VALUE_BYTES, Options, Scenario};

/// memcached 1.6.18 on this machine class, CPU-seconds per million requests (issue #7), and
/// rampart's goal as a fraction of it: (tls, pipeline, baseline, factor); 32-byte values.
const CPU_GOALS: &[(bool, usize, f64, f64)] = &[
    (false, 1, 9.1, 0.8),
    (true, 1, 14.6, 0.7),
    (false, 16, 6.4, 0.5),
    (true, 16, 16.3, 0.3),
];
const GOAL_VALUE_BYTES: usize = 32;
const KIB_PER_MIB: f64 = 1024.0;
/// How much of a failed run's error the report quotes.
const MAX_ERROR_CHARS: usize = 1000;

/// One figure of a run.
type RunMetric<'a> = &'a dyn Fn(&Run) -> f64;
/// The most rampart/memcached may be, and how the report says so.
type Goal = Option<(f64, String)>;

/// Where and how the benchmark ran.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub date: String,
    pub host: String,
    pub commit: String,
    pub kernel: String,
    pub cpus: usize,
    pub quick: bool,
    /// Whether the load generator (this process) was built optimized.
    pub generator_optimized: bool,
    pub rounds: usize,
    pub seconds_per_run: f64,
    pub server_cpu: usize,
    pub client_cpus: Vec<usize>,
    pub memory_limit_mib: usize,
    pub connections: usize,
    pub keys: u64,
    pub get_ratio: f64,
    pub memory_items: u64,
    pub warm_sets_per_key: u64,
    /// The phases run (`--only`).
    pub phases: Vec<&'static str>,
    /// Issue 13's phases: rounds, fixed-rate window and idle window.
    pub rate_rounds: usize,
    pub rate_seconds: f64,
    pub idle_seconds: f64,
    /// The plaintext floor was `rampart-floor --io-uring` (`--floor-io-uring`).
    pub floor_io_uring: bool,
    pub memcached_version: String,
    /// `/proc/loadavg` before and after: the other work on the machine.
    pub loadavg_before: String,
    pub loadavg_after: String,
}

/// One closed-loop or open-loop run of one server on one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub round: usize,
    pub kind: Kind,
    pub scenario: String,
    /// `None`: closed loop; `Some`: open loop at this offered rate.
    pub rate: Option<f64>,
    pub ops_per_s: f64,
    pub cpu_s_per_mreq: f64,
    pub peak_rss_kib: u64,
    pub report: Report,
}

/// One memory run: `items` values stored into a fresh server.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub round: usize,
    pub kind: Kind,
    pub items: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub peak_rss_kib: u64,
    pub bytes_per_item: f64,
}

/// One line of the summary: the medians of one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub metric: String,
    pub memcached: Option<f64>,
    pub rampart: Option<f64>,
    /// The floor server's figure (closed-loop throughput and CPU only).
    pub floor: Option<f64>,
    /// rampart / memcached.
    pub ratio: Option<f64>,
    /// floor / memcached: the lowest ratio any server reaches here.
    pub floor_ratio: Option<f64>,
    /// Most the ratio may be, where the issue sets a goal.
    pub goal_ratio: Option<f64>,
    pub goal: String,
}

/// A run that did not complete, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub round: usize,
    pub kind: Kind,
    pub scenario: String,
    pub error: String,
}

impl Failure {
    pub fn new(round: usize, kind: Kind, scenario: &str, error: &anyhow::Error) -> Failure {
        Failure {
            round,
            kind,
            scenario: scenario.to_string(),
            error: format!("{error:#}").chars().take(MAX_ERROR_CHARS).collect(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Round 0 is the TLS preflight, before the rounds.
        if self.round > 0 {
            write!(f, "round {} ", self.round)?;
        }
        write!(f, "{} {}: {}", self.kind.name(), self.scenario, self.error)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub meta: Meta,
    pub failures: Vec<Failure>,
    pub summary: Vec<Row>,
    pub runs: Vec<Run>,
    pub memory: Vec<Memory>,
    /// The hostile phase's runs.
    pub hostile: Vec<Hostile>,
    /// The access-policy phase's runs.
    pub policy: Vec<super::policy::PolicyRun>,
    /// The authentication phase's runs.
    pub auth: super::auth::AuthResults,
    /// Issue 13's scorecard, summed up from `reference`.
    pub scorecard: Vec<super::scorecard::Figure>,
    /// Issue 13's phases' runs.
    pub reference: super::reference::Reference,
}

impl Meta {
    pub fn collect(
        root: &Path,
        options: &Options,
        client_cpus: &[usize],
        server_cpu: usize,
        memory_limit_mib: usize,
    ) -> Result<Meta> {
        let commit = match output(Command::new("git").current_dir(root).args([
            "rev-parse",
            "--short",
            "HEAD",
        ])) {
            Some(hash) => {
                let dirty = output(
                    Command::new("git")
                        .current_dir(root)
                        .args(["status", "--porcelain"]),
                )
                .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{hash} + uncommitted changes")
                } else {
                    hash
                }
            }
            None => "unknown".to_string(),
        };
        Ok(Meta {
            date: output(Command::new("date").args(["-u", "+%Y-%m-%d"])).unwrap_or_default(),
            host: read_trimmed("/proc/sys/kernel/hostname"),
            commit,
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            quick: options.quick,
            generator_optimized: !cfg!(debug_assertions),
            rounds: options.rounds,
            seconds_per_run: options.seconds,
            server_cpu,
            client_cpus: client_cpus.to_vec(),
            memory_limit_mib,
            connections: CONNECTIONS,
            keys: KEYS,
            get_ratio: GET_RATIO,
            memory_items: options.memory_items,
            warm_sets_per_key: options.warm_sets_per_key,
            phases: options.phases.iter().map(|p| p.name()).collect(),
            rate_rounds: options.rate_rounds,
            rate_seconds: options.rate_seconds,
            idle_seconds: options.idle_seconds,
            floor_io_uring: options.floor_io_uring,
            memcached_version: output(Command::new("memcached").arg("-V")).unwrap_or_default(),
            loadavg_before: read_trimmed("/proc/loadavg"),
            loadavg_after: String::new(),
        })
    }

    pub fn finish(&mut self) {
        self.loadavg_after = read_trimmed("/proc/loadavg");
    }
}

fn read_trimmed(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The median (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

impl Results {
    pub fn new(
        meta: Meta,
        runs: Vec<Run>,
        memory: Vec<Memory>,
        hostile: Vec<Hostile>,
        failures: Vec<Failure>,
    ) -> Results {
        let mut summary = Vec::new();
        // A phase left out (`--only`) leaves out its rows too.
        let scenarios = if runs.is_empty() {
            Vec::new()
        } else {
            Scenario::all()
        };
        for scenario in scenarios {
            let name = scenario.name();
            let closed = |kind: Kind, f: &dyn Fn(&Run) -> f64| {
                median(
                    runs.iter()
                        .filter(|r| r.kind == kind && r.scenario == name && r.rate.is_none())
                        .map(f),
                )
            };
            let open = |kind: Kind, f: &dyn Fn(&Run) -> f64| {
                median(
                    runs.iter()
                        .filter(|r| r.kind == kind && r.scenario == name && r.rate.is_some())
                        .map(f),
                )
            };
            let rate = runs
                .iter()
                .find(|r| r.scenario == name && r.rate.is_some())
                .and_then(|r| r.rate)
                .unwrap_or(0.0);
            let cpu_goal = CPU_GOALS
                .iter()
                .find(|g| {
                    scenario.value_size == GOAL_VALUE_BYTES
                        && g.0 == scenario.tls
                        && g.1 == scenario.pipeline
                })
                .map(|&(_, _, base, factor)| {
                    (
                        factor,
                        format!("≤ {factor:.1}× ({base} → {:.2})", base * factor),
                    )
                });
            let no_goal = None;
            let equal = Some((1.0, "≤ 1.0×".to_string()));
            // (metric, figure, open loop?, floor figure beside it?, goal)
            let metrics: [(String, RunMetric, bool, bool, &Goal); 8] = [
                (
                    "throughput, ops/s".into(),
                    &|r| r.ops_per_s,
                    false,
                    true,
                    &no_goal,
                ),
                (
                    "server CPU, s per M requests".into(),
                    &|r| r.cpu_s_per_mreq,
                    false,
                    true,
                    &cpu_goal,
                ),
                (
                    "closed-loop p50, µs".into(),
                    &|r| r.report.latency_us.p50,
                    false,
                    false,
                    &no_goal,
                ),
                (
                    "closed-loop p99, µs".into(),
                    &|r| r.report.latency_us.p99,
                    false,
                    false,
                    &no_goal,
                ),
                (
                    format!("open-loop p99 at {rate:.0}/s, µs"),
                    &|r| r.report.latency_us.p99,
                    true,
                    false,
                    &equal,
                ),
                (
                    format!("open-loop p99.9 at {rate:.0}/s, µs"),
                    &|r| r.report.latency_us.p999,
                    true,
                    false,
                    &no_goal,
                ),
                (
                    "open-loop requests never sent (server behind)".into(),
                    &|r| r.report.unsent as f64,
                    true,
                    false,
                    &no_goal,
                ),
                (
                    "peak RSS, MiB".into(),
                    &|r| r.peak_rss_kib as f64 / KIB_PER_MIB,
                    false,
                    false,
                    &no_goal,
                ),
            ];
            for (metric, f, is_open, with_floor, goal) in metrics {
                let pick = |kind| {
                    if is_open {
                        open(kind, f)
                    } else {
                        closed(kind, f)
                    }
                };
                let mut row = row(
                    &name,
                    metric,
                    pick(Kind::Memcached),
                    pick(Kind::Rampart),
                    goal,
                );
                if with_floor {
                    row.set_floor(closed(Kind::Floor, f));
                }
                summary.push(row);
            }
        }
        let mem = |kind: Kind, f: &dyn Fn(&Memory) -> f64| {
            median(memory.iter().filter(|m| m.kind == kind).map(f))
        };
        let items = meta.memory_items;
        let scenario = format!("memory: {items} × {MEMORY_VALUE_BYTES} B");
        let per_item = |m: &Memory| m.bytes_per_item;
        let peak = |m: &Memory| m.peak_rss_kib as f64 / KIB_PER_MIB;
        let equal = Some((1.0, "≤ 1.0×".to_string()));
        if !memory.is_empty() {
            summary.push(row(
                &scenario,
                "resident bytes per item".into(),
                mem(Kind::Memcached, &per_item),
                mem(Kind::Rampart, &per_item),
                &equal,
            ));
            summary.push(row(
                &scenario,
                "peak RSS, MiB".into(),
                mem(Kind::Memcached, &peak),
                mem(Kind::Rampart, &peak),
                &None,
            ));
        }
        for case in Case::ALL.into_iter().filter(|_| !hostile.is_empty()) {
            let of = |kind: Kind, f: &dyn Fn(&Hostile) -> f64| {
                median(
                    hostile
                        .iter()
                        .filter(|h| h.kind == kind && h.case == case)
                        .map(f),
                )
            };
            let growth = |h: &Hostile| h.growth_mib;
            let probe = |h: &Hostile| h.probe_max_ms;
            summary.push(row(
                case.name(),
                "RSS growth, MiB".into(),
                of(Kind::Memcached, &growth),
                of(Kind::Rampart, &growth),
                &None,
            ));
            summary.push(row(
                case.name(),
                "probe's slowest reply, ms".into(),
                of(Kind::Memcached, &probe),
                of(Kind::Rampart, &probe),
                &None,
            ));
        }
        Results {
            meta,
            failures,
            summary,
            runs,
            memory,
            hostile,
            policy: Vec::new(),
            auth: super::auth::AuthResults::default(),
            scorecard: Vec::new(),
            reference: super::reference::Reference::default(),
        }
    }
}

fn row(
    scenario: &str,
    metric: String,
    memcached: Option<f64>,
    rampart: Option<f64>,
    goal: &Goal,
) -> Row {
    let ratio = match (memcached, rampart) {
        (Some(m), Some(r)) if m > 0.0 => Some(r / m),
        _ => None,
    };
    Row {
        scenario: scenario.to_string(),
        metric,
        memcached,
        rampart,
        floor: None,
        ratio,
        floor_ratio: None,
        goal_ratio: goal.as_ref().map(|g| g.0),
        goal: goal.as_ref().map_or_else(String::new, |g| g.1.clone()),
    }
}

impl Row {
    fn set_floor(&mut self, floor: Option<f64>) {
        self.floor = floor;
        self.floor_ratio = match (self.memcached, floor) {
            (Some(m), Some(f)) if m > 0.0 => Some(f / m),
            _ => None,
        };
    }

    /// The "met" column: a missed goal below the floor's ratio is one no server reaches here.
    fn verdict(&self) -> &'static str {
        match (self.ratio, self.goal_ratio, self.floor_ratio) {
            (Some(r), Some(g), _) if r <= g => "yes",
            (Some(_), Some(g), Some(f)) if f > g => "no; below the floor",
            (Some(_), Some(_), _) => "no",
            (None, Some(_), _) => "n/a",
            _ => "",
        }
    }
}

/// A figure with three or so significant digits.
pub fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The summary as a Markdown table; empty when no phase of it ran.
pub fn markdown(results: &Results) -> String {
    if results.summary.is_empty() {
        return String::new();
    }
    let mut t = String::from(
        "| scenario | metric | memcached | rampart | rampart/memcached | floor | floor/memcached | goal | met |\n\
         |---|---|---:|---:|---:|---:|---:|---|---|\n",
    );
    for row in &results.summary {
        let memcached = row.memcached.map_or_else(|| "–".into(), number);
        let rampart = row.rampart.map_or_else(|| "–".into(), number);
        let ratio = row.ratio.map_or_else(|| "–".into(), |r| format!("{r:.2}×"));
        let floor = row.floor.map_or_else(String::new, number);
        let floor_ratio = row
            .floor_ratio
            .map_or_else(String::new, |r| format!("{r:.2}×"));
        let _ = writeln!(
            t,
            "| {} | {} | {memcached} | {rampart} | {ratio} | {floor} | {floor_ratio} | {} | {} |",
            row.scenario,
            row.metric,
            row.goal,
            row.verdict()
        );
    }
    t
}

/// The whole results page: conditions, parameters, tables and charts (alt text, file name).
pub fn document(results: &Results, table: &str, charts: &[(&str, String)]) -> String {
    let m = &results.meta;
    let mut d = String::new();
    let _ = writeln!(
        d,
        "# bench-tls: {} on {}{}\n",
        m.date,
        m.host,
        if m.quick { " (--quick)" } else { "" }
    );
    let _ = writeln!(d, "- commit: {}", m.commit);
    let _ = writeln!(
        d,
        "- machine: {} CPUs, Linux {}; {}",
        m.cpus, m.kernel, m.memcached_version
    );
    let _ = writeln!(
        d,
        "- load average (1, 5, 15 min) before: {}; after: {}",
        m.loadavg_before, m.loadavg_after
    );
    let _ = writeln!(
        d,
        "- servers: 1 thread pinned to CPU {}, `-m {}`, fresh process per run; load generator on CPU(s) {:?}",
        m.server_cpu, m.memory_limit_mib, m.client_cpus
    );
    let _ = writeln!(
        d,
        "- workload: {} connections, {} warm keys ({} with {} KiB values), {:.0}% gets; {} round(s) \
         of {} s per run, medians; the hostile cases run each server with -m 64",
        m.connections,
        m.keys,
        super::LARGE_VALUE_KEYS,
        super::LARGE_VALUE_BYTES / 1024,
        m.get_ratio * 100.0,
        m.rounds,
        m.seconds_per_run
    );
    if !m.generator_optimized {
        let _ = writeln!(
            d,
            "- load generator: unoptimized (dev profile), too slow to keep rampart busy at \
             depth 16; fine for finding errors, not for comparing figures"
        );
    }
    let _ = writeln!(
        d,
        "- phases: {}; issue 13's: {} round(s), fixed-rate windows of {} s (at least 10 s at \
         1,000/s unless --quick), idle windows of {} s",
        m.phases.join(", "),
        m.rate_rounds,
        m.rate_seconds,
        m.idle_seconds
    );
    if m.floor_io_uring {
        let _ = writeln!(
            d,
            "- floor: `rampart-floor --io-uring` in plaintext (multishot receives into provided \
             buffers, sends submitted by the waiting enter: one system call per wake-up), the \
             epoll floor under TLS"
        );
    }
    let _ = writeln!(d, "\n{table}");
    for (alt, name) in charts {
        let _ = writeln!(d, "![{alt}]({name})\n");
    }
    if !results.failures.is_empty() {
        let _ = writeln!(
            d,
            "Runs that failed (their rounds are left out of the medians):\n"
        );
        for failure in &results.failures {
            let _ = writeln!(d, "- {failure}");
        }
        let _ = writeln!(d);
    }
    let _ = writeln!(
        d,
        "Warm keys: {} random set(s) per key before each run (4: about 98% of keys present). \
         Open loop: half the lower server's median closed-loop throughput, the same rate for \
         both. Raw runs (every generator report, CPU per request, RSS) are in the JSON file \
         beside this one. Goals are from issue #7; \"met\" compares the ratio measured here. \
         The floor is `rampart-floor`, the smallest correct server for this workload (a hash \
         map, one read and one write per request, the same OpenSSL), run closed loop on the \
         same CPU: about the least a server on this kernel and this OpenSSL can spend, so a \
         goal below floor/memcached is marked \"below the floor\". \
         A load average near or above the CPU count means other work shared the machine: \
         compare ratios, not absolute figures.",
        m.warm_sets_per_key
    );
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_or_the_mean_of_the_middle_two() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn the_ratio_is_rampart_over_memcached() {
        let r = row("s", "m".into(), Some(2.0), Some(1.0), &None);
        assert_eq!(r.ratio, Some(0.5));
        assert_eq!(row("s", "m".into(), Some(2.0), None, &None).ratio, None);
    }

    #[test]
    fn a_goal_below_the_floor_says_so() {
        let goal = Some((0.7, "≤ 0.7×".to_string()));
        let mut missed = row("s", "m".into(), Some(10.0), Some(9.0), &goal);
        assert_eq!(missed.verdict(), "no");
        missed.set_floor(Some(8.0));
        assert_eq!(missed.floor_ratio, Some(0.8));
        assert_eq!(missed.verdict(), "no; below the floor");
        let mut reachable = row("s", "m".into(), Some(10.0), Some(9.0), &goal);
        reachable.set_floor(Some(5.0));
        assert_eq!(reachable.verdict(), "no");
        let mut met = row("s", "m".into(), Some(10.0), Some(6.0), &goal);
        met.set_floor(Some(8.0));
        assert_eq!(met.verdict(), "yes");
    }
}
