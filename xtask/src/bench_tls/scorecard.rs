//! Issue 13's scorecard: every figure of the [`reference`](super::reference) phases as the
//! median over the rounds for memcached, rampart and the floor, rampart's ratio to each, and
//! the goals, each marked met or not.

use std::fmt::Write as _;

use serde::Serialize;

use super::reference::{Generator, Point, RateRun, Reference};
use super::report::{median, number};
use super::server::Kind;

/// rampart's CPU per request at depth 1, against memcached's, at every rate and saturation.
const D1_CPU_VS_MEMCACHED: f64 = 0.9;
/// Depth 16 keeps its lead.
const D16_CPU_VS_MEMCACHED: f64 = 0.26;
/// Latency at a fixed rate: no worse than memcached's.
const LATENCY_VS_MEMCACHED: f64 = 1.0;
/// Stretch: CPU per request against the floor's, at saturation and at the lowest rate.
const SATURATION_VS_FLOOR: f64 = 1.1;
const LOW_RATE_VS_FLOOR: f64 = 1.3;
const LOW_RATE: u32 = 1_000;
/// The default rampart, idle, in percent of one CPU.
const IDLE_PERCENT_BELOW: f64 = 0.2;

/// The CPU rows' metric, also what the chart looks for.
pub const CPU: &str = "server CPU, µs per request";

/// The scenarios of the idle and defaults-vs-defaults rows.
const IDLE: &str = "idle, default flags";
const DEFAULTS: &str = "defaults vs defaults";

/// One figure of a fixed-rate run.
type RateFigure = fn(&RateRun) -> f64;

/// A goal on one figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Goal {
    /// rampart / memcached at most this.
    VsMemcachedAtMost(f64),
    /// rampart / memcached at least this.
    VsMemcachedAtLeast(f64),
    /// A stretch goal: rampart / floor at most this.
    VsFloorAtMost(f64),
    /// rampart's own figure below this.
    Below(f64),
}

impl Goal {
    fn describe(self) -> String {
        match self {
            Goal::VsMemcachedAtMost(x) => format!("≤ {x}× memcached"),
            Goal::VsMemcachedAtLeast(x) => format!("≥ {x}× memcached"),
            Goal::VsFloorAtMost(x) => format!("stretch: ≤ {x}× floor"),
            Goal::Below(x) => format!("< {x}"),
        }
    }

    fn is_stretch(self) -> bool {
        matches!(self, Goal::VsFloorAtMost(_))
    }
}

/// One figure: medians, ratios, goals and verdicts.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub scenario: String,
    /// Which generator measured it; empty for the idle rows.
    pub generator: String,
    pub metric: String,
    pub memcached: Option<f64>,
    pub rampart: Option<f64>,
    pub floor: Option<f64>,
    /// rampart / memcached.
    pub vs_memcached: Option<f64>,
    /// rampart / floor.
    pub vs_floor: Option<f64>,
    pub goals: Vec<Goal>,
    /// One per goal: `yes`, `no`, `no; below the floor` (a CPU goal the floor misses too) or
    /// `n/a`.
    pub met: Vec<String>,
}

impl Figure {
    fn new(
        scenario: &str,
        generator: &str,
        metric: &str,
        of: &dyn Fn(Kind) -> Option<f64>,
        goals: Vec<Goal>,
    ) -> Figure {
        let (memcached, rampart, floor) = (of(Kind::Memcached), of(Kind::Rampart), of(Kind::Floor));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let vs_memcached = ratio(rampart, memcached);
        let vs_floor = ratio(rampart, floor);
        // The floor is what a request must cost in CPU; its latency is no bound on anyone's.
        let floor_vs_memcached = ratio(floor, memcached).filter(|_| metric.starts_with(CPU));
        let met = goals
            .iter()
            .map(|&goal| {
                let yes = match goal {
                    Goal::VsMemcachedAtMost(x) => vs_memcached.map(|r| r <= x),
                    Goal::VsMemcachedAtLeast(x) => vs_memcached.map(|r| r >= x),
                    Goal::VsFloorAtMost(x) => vs_floor.map(|r| r <= x),
                    Goal::Below(x) => rampart.map(|v| v < x),
                };
                match (yes, goal, floor_vs_memcached) {
                    (None, ..) => "n/a",
                    (Some(true), ..) => "yes",
                    (Some(false), Goal::VsMemcachedAtMost(x), Some(f)) if f > x => {
                        "no; below the floor"
                    }
                    (Some(false), ..) => "no",
                }
                .to_string()
            })
            .collect();
        Figure {
            scenario: scenario.to_string(),
            generator: generator.to_string(),
            metric: metric.to_string(),
            memcached,
            rampart,
            floor,
            vs_memcached,
            vs_floor,
            goals,
            met,
        }
    }
}

/// The figures, in the order of the table: every point (both generators), idle, defaults.
pub fn figures(reference: &Reference) -> Vec<Figure> {
    let mut figures = Vec::new();
    for point in Point::all(false) {
        let runs: Vec<&RateRun> = reference
            .rates
            .iter()
            .filter(|r| r.point == point)
            .collect();
        if runs.is_empty() {
            continue;
        }
        let of = |f: fn(&RateRun) -> f64| {
            let runs = &runs;
            move |kind: Kind| median(runs.iter().filter(|r| r.kind == kind).map(|r| f(r)))
        };
        let (scenario, generator) = (point.name(), point.generator.name());
        let mut cpu_goals = Vec::new();
        if point.depth == 1 {
            cpu_goals.push(Goal::VsMemcachedAtMost(D1_CPU_VS_MEMCACHED));
            match point.rate {
                None => cpu_goals.push(Goal::VsFloorAtMost(SATURATION_VS_FLOOR)),
                Some(LOW_RATE) => cpu_goals.push(Goal::VsFloorAtMost(LOW_RATE_VS_FLOOR)),
                Some(_) => {}
            }
        } else {
            cpu_goals.push(Goal::VsMemcachedAtMost(D16_CPU_VS_MEMCACHED));
        }
        let latency_goals = || match point.rate {
            Some(_) => vec![Goal::VsMemcachedAtMost(LATENCY_VS_MEMCACHED)],
            None => Vec::new(),
        };
        let rows: [(&str, RateFigure, Vec<Goal>); 4] = [
            ("ops/s", |r| r.ops_per_s, Vec::new()),
            (
                "server CPU, µs per request",
                |r| r.cpu_us_per_request,
                cpu_goals,
            ),
            ("p50, µs", |r| r.p50_us, latency_goals()),
            ("p99, µs", |r| r.p99_us, latency_goals()),
        ];
        for (metric, f, goals) in rows {
            figures.push(Figure::new(&scenario, generator, metric, &of(f), goals));
        }
    }
    if !reference.idle.is_empty() {
        // Pooled over the rounds, not a median: a 10 s window holds only a few clock ticks
        // of an idle server, so the rounds' windows are added up instead.
        let pooled = |kind: Kind| {
            let runs = reference.idle.iter().filter(|r| r.kind == kind);
            let seconds: f64 = runs.clone().map(|r| r.seconds).sum();
            let weighted: f64 = runs.map(|r| r.percent_of_a_cpu * r.seconds).sum();
            (seconds > 0.0).then(|| weighted / seconds)
        };
        let threads = |kind: Kind| {
            median(
                reference
                    .idle
                    .iter()
                    .filter(|r| r.kind == kind)
                    .map(|r| r.threads as f64),
            )
        };
        let scenario = IDLE;
        figures.push(Figure::new(scenario, "", "threads", &threads, Vec::new()));
        figures.push(Figure::new(
            scenario,
            "",
            "CPU, % of one CPU",
            &pooled,
            vec![Goal::Below(IDLE_PERCENT_BELOW)],
        ));
    }
    if !reference.defaults.is_empty() {
        let scenario = DEFAULTS;
        let generator = Generator::Memtier.name();
        type Of = fn(&super::defaults::DefaultsRun) -> f64;
        let rows: [(&str, Of, Vec<Goal>); 4] = [
            (
                "ops/s",
                |r| r.ops_per_s,
                vec![Goal::VsMemcachedAtLeast(1.0)],
            ),
            (
                CPU,
                |r| r.cpu_us_per_request,
                vec![Goal::VsMemcachedAtMost(1.0)],
            ),
            ("p50, µs", |r| r.p50_us, Vec::new()),
            ("p99, µs", |r| r.p99_us, Vec::new()),
        ];
        for (metric, f, goals) in rows {
            let of =
                |kind: Kind| median(reference.defaults.iter().filter(|r| r.kind == kind).map(f));
            figures.push(Figure::new(scenario, generator, metric, &of, goals));
        }
    }
    figures
}

/// The scorecard as Markdown: what ran, the table, and the count of goals met; empty when
/// none of its phases ran.
pub fn markdown(reference: &Reference, figures: &[Figure], rounds: usize) -> String {
    let mut t = String::new();
    if figures.is_empty() && reference.memtier_missing.is_none() {
        return t;
    }
    let _ = write!(t, "Issue 13, medians of {rounds} round(s). ");
    if !reference.rates.is_empty() {
        let _ = write!(
            t,
            "The reference workload: {} connections, {}-byte values, 1:10 set:get over {} keys \
             set beforehand, depth 1 unless d16; each server `-t 1` on the server CPU, the \
             generator on the others. ",
            super::CONNECTIONS,
            super::reference::VALUE_BYTES,
            reference.keys,
        );
    }
    let _ = writeln!(t, "memtier_benchmark: {}.\n", reference.memtier);
    if let Some(reason) = &reference.memtier_missing {
        let _ = writeln!(
            t,
            "**Not run: the memtier cross-check and the defaults-vs-defaults comparison** \
             (memtier_benchmark could not be built: {reason}).\n"
        );
    }
    let shipped = !(reference.idle.is_empty() && reference.defaults.is_empty());
    if shipped && !reference.default_commands.is_empty() {
        let _ = writeln!(t, "Default flags (idle and defaults vs defaults):\n");
        for (kind, command) in &reference.default_commands {
            let _ = writeln!(t, "- {}: `{command}`", kind.name());
        }
        let _ = writeln!(t);
    }
    if figures.is_empty() {
        return t;
    }
    let _ = writeln!(
        t,
        "| scenario | generator | metric | memcached | rampart | floor | rampart/memcached | rampart/floor | goal | met |\n\
         |---|---|---|---:|---:|---:|---:|---:|---|---|"
    );
    let cell = |v: Option<f64>| v.map_or_else(|| "–".to_string(), number);
    let ratio = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |r| format!("{r:.2}×"));
    for f in figures {
        let goals: Vec<String> = f.goals.iter().map(|g| g.describe()).collect();
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f.scenario,
            f.generator,
            f.metric,
            cell(f.memcached),
            cell(f.rampart),
            cell(f.floor),
            ratio(f.vs_memcached),
            ratio(f.vs_floor),
            goals.join("; "),
            f.met.join("; ")
        );
    }
    let _ = writeln!(t);
    for (label, stretch) in [("Goals", false), ("Stretch goals", true)] {
        let mut parts = Vec::new();
        for group in ["rampart-load", "memtier", IDLE, DEFAULTS] {
            let verdicts: Vec<&str> = figures
                .iter()
                .filter(|f| self::group(f) == group)
                .flat_map(|f| f.goals.iter().zip(&f.met))
                .filter(|(g, _)| g.is_stretch() == stretch)
                .map(|(_, m)| m.as_str())
                .collect();
            if verdicts.is_empty() {
                continue;
            }
            let met = verdicts.iter().filter(|m| **m == "yes").count();
            parts.push(format!("{met} of {} ({group})", verdicts.len()));
        }
        if !parts.is_empty() {
            let _ = writeln!(t, "{label} met: {}.", parts.join(", "));
        }
    }
    t
}

/// Whose goals a figure's count under: its generator, or the idle or defaults phase.
fn group(figure: &Figure) -> &str {
    match figure.scenario.as_str() {
        IDLE => IDLE,
        DEFAULTS => DEFAULTS,
        _ => &figure.generator,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(m: f64, r: f64, f: f64, goals: Vec<Goal>) -> Figure {
        let of = move |kind: Kind| {
            Some(match kind {
                Kind::Memcached => m,
                Kind::Rampart => r,
                Kind::Floor => f,
            })
        };
        Figure::new("s", "g", CPU, &of, goals)
    }

    #[test]
    fn ratios_are_rampart_over_memcached_and_over_the_floor() {
        let f = figure(10.0, 8.0, 4.0, Vec::new());
        assert_eq!((f.vs_memcached, f.vs_floor), (Some(0.8), Some(2.0)));
    }

    #[test]
    fn each_goal_gets_its_own_verdict() {
        let cpu = vec![Goal::VsMemcachedAtMost(0.9), Goal::VsFloorAtMost(1.1)];
        assert_eq!(figure(10.0, 8.0, 4.0, cpu.clone()).met, ["yes", "no"]);
        assert_eq!(
            figure(10.0, 9.5, 9.2, cpu.clone()).met,
            ["no; below the floor", "yes"]
        );
        assert_eq!(figure(10.0, 9.5, 8.0, cpu).met, ["no", "no"]);
        let ops = vec![Goal::VsMemcachedAtLeast(1.0)];
        assert_eq!(figure(100.0, 120.0, 150.0, ops).met, ["yes"]);
        let p99 = Figure::new(
            "s",
            "g",
            "p99, µs",
            &|_| Some(2.0),
            vec![Goal::VsMemcachedAtMost(0.9)],
        );
        assert_eq!(p99.met, ["no"]);
        let idle = vec![Goal::Below(0.2)];
        assert_eq!(figure(0.0, 0.1, 0.0, idle.clone()).met, ["yes"]);
        assert_eq!(figure(0.0, 0.5, 0.0, idle).vs_memcached, None);
    }

    #[test]
    fn a_missing_figure_is_not_applicable() {
        let of = |kind: Kind| (kind != Kind::Rampart).then_some(1.0);
        let f = Figure::new("s", "g", "m", &of, vec![Goal::VsMemcachedAtMost(0.9)]);
        assert_eq!(f.met, ["n/a"]);
    }
}
