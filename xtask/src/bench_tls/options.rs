//! bench-tls's command line: how many rounds of what, how long, and which phases.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// Random sets per key before measuring: 1 - e^-4, 98% of the keys are warm.
const WARM_SETS_PER_KEY: u64 = 4;
/// `--quick` warms with one set per key (63% of the keys): it checks for errors, not speed.
const QUICK_WARM_SETS_PER_KEY: u64 = 1;

/// One part of the benchmark, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The scenario matrix: closed loop, then open loop at half the lower throughput.
    Matrix,
    Memory,
    Hostile,
    Policy,
    /// Issue 14: what authentication costs a connection and a request.
    Auth,
    /// Issue 13: the reference workload at fixed rates and saturation, both generators.
    Rates,
    /// Issue 13: each server idle with its default flags.
    Idle,
    /// Issue 13: default flags against memtier's defaults.
    Defaults,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Matrix,
        Phase::Memory,
        Phase::Hostile,
        Phase::Policy,
        Phase::Auth,
        Phase::Rates,
        Phase::Idle,
        Phase::Defaults,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Matrix => "matrix",
            Phase::Memory => "memory",
            Phase::Hostile => "hostile",
            Phase::Policy => "policy",
            Phase::Auth => "auth",
            Phase::Rates => "rates",
            Phase::Idle => "idle",
            Phase::Defaults => "defaults",
        }
    }

    /// A comma-separated list of phase names.
    fn parse_list(list: &str) -> Result<Vec<Phase>> {
        let mut phases = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let phase = Phase::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .with_context(|| {
                    let names: Vec<&str> = Phase::ALL.iter().map(|p| p.name()).collect();
                    format!(
                        "--only: no phase {name:?}; the phases are {}",
                        names.join(",")
                    )
                })?;
            if !phases.contains(&phase) {
                phases.push(phase);
            }
        }
        if phases.is_empty() {
            bail!("--only needs at least one phase");
        }
        Ok(phases)
    }
}

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub rounds: usize,
    pub seconds: f64,
    pub memory_items: u64,
    pub warm_sets_per_key: u64,
    /// Rounds of issue 13's phases (fixed rates, idle, defaults).
    pub rate_rounds: usize,
    /// Seconds per fixed-rate window (longer at 1,000/s: see `reference::Point::window`).
    pub rate_seconds: f64,
    /// Seconds of each idle window.
    pub idle_seconds: f64,
    /// The phases to run, in the benchmark's own order whatever the order asked.
    pub phases: Vec<Phase>,
    /// Where the report goes; default perf/results (full) or <target>/bench-tls (quick).
    pub out: Option<PathBuf>,
    /// The plaintext floor runs `rampart-floor --io-uring` (multishot receives, sends in the
    /// waiting enter) instead of the epoll floor; TLS keeps the epoll floor.
    pub floor_io_uring: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut quick = false;
        let mut rounds = None;
        let mut seconds = None;
        let mut items = None;
        let mut rate_rounds = None;
        let mut rate_seconds = None;
        let mut idle_seconds = None;
        let mut phases = Phase::ALL.to_vec();
        let mut out = None;
        let mut floor_io_uring = false;
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let mut value = |name: &str| {
                rest.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                "--quick" => quick = true,
                "--rounds" => rounds = Some(value("--rounds")?.parse()?),
                "--seconds" => seconds = Some(value("--seconds")?.parse()?),
                "--items" => items = Some(value("--items")?.parse()?),
                "--rate-rounds" => rate_rounds = Some(value("--rate-rounds")?.parse()?),
                "--rate-seconds" => rate_seconds = Some(value("--rate-seconds")?.parse()?),
                "--idle-seconds" => idle_seconds = Some(value("--idle-seconds")?.parse()?),
                "--only" => phases = Phase::parse_list(&value("--only")?)?,
                "--out" => out = Some(PathBuf::from(value("--out")?)),
                "--floor-io-uring" => floor_io_uring = true,
                other => bail!("bench-tls: unknown argument {other}"),
            }
        }
        let options = Options {
            quick,
            rounds: rounds.unwrap_or(if quick { 1 } else { 3 }),
            seconds: seconds.unwrap_or(if quick { 1.0 } else { 5.0 }),
            memory_items: items.unwrap_or(if quick { 100_000 } else { 1_000_000 }),
            warm_sets_per_key: if quick {
                QUICK_WARM_SETS_PER_KEY
            } else {
                WARM_SETS_PER_KEY
            },
            rate_rounds: rate_rounds.unwrap_or(if quick { 1 } else { 5 }),
            rate_seconds: rate_seconds.unwrap_or(if quick { 1.0 } else { 3.0 }),
            idle_seconds: idle_seconds.unwrap_or(if quick { 1.0 } else { 10.0 }),
            phases: Phase::ALL
                .into_iter()
                .filter(|p| phases.contains(p))
                .collect(),
            out,
            floor_io_uring,
        };
        if options.rounds == 0
            || options.rate_rounds == 0
            || options.memory_items == 0
            || [options.seconds, options.rate_seconds, options.idle_seconds]
                .iter()
                .any(|s| !(s.is_finite() && *s > 0.0))
        {
            bail!(
                "--rounds, --rate-rounds, --seconds, --rate-seconds, --idle-seconds and \
                 --items must be positive"
            );
        }
        Ok(options)
    }

    /// The command-line arguments that [`Options::parse`] turns into these options.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.quick {
            args.push("--quick".to_string());
        }
        let phases: Vec<&str> = self.phases.iter().map(|p| p.name()).collect();
        args.extend([
            "--rounds".to_string(),
            self.rounds.to_string(),
            "--seconds".to_string(),
            self.seconds.to_string(),
            "--items".to_string(),
            self.memory_items.to_string(),
            "--rate-rounds".to_string(),
            self.rate_rounds.to_string(),
            "--rate-seconds".to_string(),
            self.rate_seconds.to_string(),
            "--idle-seconds".to_string(),
            self.idle_seconds.to_string(),
            "--only".to_string(),
            phases.join(","),
        ]);
        if let Some(out) = &self.out {
            args.extend(["--out".to_string(), out.display().to_string()]);
        }
        if self.floor_io_uring {
            args.push("--floor-io-uring".to_string());
        }
        args
    }

    /// Whether `phase` is to run.
    pub fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn quick_is_one_short_round_and_flags_override_it() {
        let quick = Options::parse(&args(&["--quick"])).expect("parses");
        assert_eq!((quick.rounds, quick.memory_items), (1, 100_000));
        assert_eq!((quick.seconds, quick.warm_sets_per_key), (1.0, 1));
        assert_eq!((quick.rate_rounds, quick.idle_seconds), (1, 1.0));
        let full = Options::parse(&args(&["--rounds", "5", "--seconds", "2"])).expect("parses");
        assert_eq!((full.rounds, full.seconds), (5, 2.0));
        assert_eq!((full.rate_rounds, full.rate_seconds), (5, 3.0));
        assert_eq!(full.phases, Phase::ALL);
        let again = Options::parse(&full.to_args()).expect("parses its own arguments");
        assert_eq!(
            (again.rounds, again.seconds, again.memory_items, again.quick),
            (5, 2.0, full.memory_items, false)
        );
        assert_eq!(again.phases, Phase::ALL);
        assert!(!again.floor_io_uring);
        let uring = Options::parse(&args(&["--floor-io-uring"])).expect("parses");
        assert!(
            Options::parse(&uring.to_args())
                .expect("again")
                .floor_io_uring
        );
        assert!(Options::parse(&args(&["--rounds", "0"])).is_err());
        assert!(Options::parse(&args(&["--idle-seconds", "0"])).is_err());
        assert!(Options::parse(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn only_keeps_the_benchmarks_order_and_refuses_unknown_phases() {
        let some = Options::parse(&args(&["--only", "idle,rates, idle"])).expect("parses");
        assert_eq!(some.phases, [Phase::Rates, Phase::Idle]);
        assert!(some.runs(Phase::Idle) && !some.runs(Phase::Matrix));
        let again = Options::parse(&some.to_args()).expect("parses its own arguments");
        assert_eq!(again.phases, some.phases);
        assert!(Options::parse(&args(&["--only", "speed"])).is_err());
        assert!(Options::parse(&args(&["--only", ","])).is_err());
    }
}
