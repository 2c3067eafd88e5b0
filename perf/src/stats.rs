//! Counting what came back: per-thread tallies, merged into one [`Report`] at the end.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::{Config, Stop};
use crate::reply::{ErrorKind, Reply};
use crate::workload::Op;

/// Longest latency the histogram holds exactly; longer ones are recorded as this.
pub(crate) const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// Three significant figures: 0.1% resolution at every magnitude.
const LATENCY_SIGFIGS: u8 = 3;
/// How many failure messages a report keeps.
const MAX_FAILURES: usize = 16;
/// How much of an error reply a failure message quotes.
const MAX_QUOTED_REPLY_BYTES: usize = 120;

/// What one thread saw in one phase.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    pub(crate) ops: u64,
    pub(crate) gets: u64,
    pub(crate) sets: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) errors: Errors,
    /// Open loop: requests that were due before the end but never sent, because every
    /// connection already had `pipeline` requests waiting for replies.
    pub(crate) unsent: u64,
    pub(crate) latency_ns: Histogram<u64>,
    pub(crate) failures: Vec<String>,
}

/// Everything that makes a run unclean, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// `ERROR` replies.
    pub error: u64,
    /// `CLIENT_ERROR` replies.
    pub client_error: u64,
    /// `SERVER_ERROR` replies.
    pub server_error: u64,
    /// Bytes that are no memcached reply.
    pub unparsable: u64,
    /// Well-formed replies that do not answer the request (`NOT_STORED` to a `set`, `STORED`
    /// to a `get`, a reply with no request waiting).
    pub unexpected: u64,
    /// Connections lost to an I/O error or closed by the server.
    pub io: u64,
    /// Requests whose reply never came (lost connections, the I/O timeout).
    pub unanswered: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.error
            + self.client_error
            + self.server_error
            + self.unparsable
            + self.unexpected
            + self.io
            + self.unanswered
    }

    /// Whether some count that was 0 in `before` no longer is.
    fn first_of_a_kind(&self, before: &Errors) -> bool {
        let now = [
            self.error,
            self.client_error,
            self.server_error,
            self.unparsable,
            self.unexpected,
        ];
        let then = [
            before.error,
            before.client_error,
            before.server_error,
            before.unparsable,
            before.unexpected,
        ];
        now.iter().zip(then).any(|(&n, t)| t == 0 && n > 0)
    }

    fn add(&mut self, other: &Errors) {
        self.error += other.error;
        self.client_error += other.client_error;
        self.server_error += other.server_error;
        self.unparsable += other.unparsable;
        self.unexpected += other.unexpected;
        self.io += other.io;
        self.unanswered += other.unanswered;
    }
}

impl std::fmt::Display for Errors {
    /// The non-zero counts, `server_error 3, unanswered 1`, or `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counts = [
            ("error", self.error),
            ("client_error", self.client_error),
            ("server_error", self.server_error),
            ("unparsable", self.unparsable),
            ("unexpected", self.unexpected),
            ("io", self.io),
            ("unanswered", self.unanswered),
        ];
        let mut any = false;
        for (name, count) in counts.iter().filter(|(_, n)| *n > 0) {
            if any {
                f.write_str(", ")?;
            }
            write!(f, "{name} {count}")?;
            any = true;
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            ops: 0,
            gets: 0,
            sets: 0,
            hits: 0,
            misses: 0,
            errors: Errors::default(),
            unsent: 0,
            latency_ns: new_histogram(),
            failures: Vec::new(),
        }
    }

    /// Counts the reply to `op` that took `latency`; `raw` is the reply's bytes, quoted in
    /// the failures the first time each kind of error shows up.
    pub(crate) fn record(&mut self, op: Op, reply: Reply, latency: Duration, raw: &[u8]) {
        let errors_before = self.errors;
        self.ops += 1;
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_ns
            .saturating_record(nanos.clamp(1, MAX_LATENCY_NS));
        match op {
            Op::Get => self.gets += 1,
            Op::Set => self.sets += 1,
        }
        match (op, reply) {
            (Op::Get, Reply::Values { found: 0 }) => self.misses += 1,
            (Op::Get, Reply::Values { .. }) => self.hits += 1,
            (Op::Set, Reply::Stored) => {}
            (_, Reply::Error(ErrorKind::Error)) => self.errors.error += 1,
            (_, Reply::Error(ErrorKind::Client)) => self.errors.client_error += 1,
            (_, Reply::Error(ErrorKind::Server)) => self.errors.server_error += 1,
            (_, Reply::Unknown) => self.errors.unparsable += 1,
            _ => self.errors.unexpected += 1,
        }
        if self.errors != errors_before && self.errors.first_of_a_kind(&errors_before) {
            let shown = &raw[..raw.len().min(MAX_QUOTED_REPLY_BYTES)];
            self.fail(format!(
                "{op:?} answered {:?}",
                String::from_utf8_lossy(shown).trim_end()
            ));
        }
    }

    /// Keeps a message saying why the run is unclean (the first few only).
    pub(crate) fn fail(&mut self, message: String) {
        if self.failures.len() < MAX_FAILURES {
            self.failures.push(message);
        }
    }

    pub(crate) fn merge(&mut self, other: &Tally) {
        self.ops += other.ops;
        self.gets += other.gets;
        self.sets += other.sets;
        self.hits += other.hits;
        self.misses += other.misses;
        self.errors.add(&other.errors);
        self.unsent += other.unsent;
        // Both histograms have the same bounds and values are clamped into them on record,
        // so adding cannot fail; a failure would only lose latency samples, not counts.
        let _ = self.latency_ns.add(&other.latency_ns);
        for failure in &other.failures {
            self.fail(failure.clone());
        }
    }
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, MAX_LATENCY_NS, LATENCY_SIGFIGS) {
        Ok(histogram) => histogram,
        // The bounds are constants that hdrhistogram accepts (1 <= low, high >= 2 * low,
        // sigfigs <= 5); a unit test creates this histogram.
        Err(e) => unreachable!("constant histogram bounds rejected: {e}"),
    }
}

/// The result of a run: the parameters, the counts and the latency distribution.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub parameters: Parameters,
    /// From the common start to the last reply, in seconds.
    pub elapsed_s: f64,
    /// Replies received.
    pub ops: u64,
    pub ops_per_s: f64,
    pub gets: u64,
    pub sets: u64,
    pub hits: u64,
    pub misses: u64,
    pub errors: Errors,
    pub errors_total: u64,
    /// Open loop: due requests never sent (the server fell behind the offered rate); their
    /// latency is missing from the percentiles, which therefore flatter the server.
    pub unsent: u64,
    pub latency_us: Latency,
    /// Keys set before measuring (0 without `--prepopulate`).
    pub prepopulated: u64,
    /// The first few reasons the run is unclean.
    pub failures: Vec<String>,
    /// No errors of any kind and nothing unanswered.
    pub clean: bool,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// The percentiles of a histogram of nanoseconds; all 0 when it is empty.
    pub(crate) fn of(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Latency {
                min: 0.0,
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        Latency {
            min: us(h.min()),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// The run's parameters, as the report shows them.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    pub server: String,
    pub tls: bool,
    /// Whether every connection authenticated first (`--user`), and as whom.
    pub auth_user: Option<String>,
    /// `closed` (fixed concurrency) or `open` (fixed offered rate).
    pub mode: &'static str,
    pub connections: usize,
    pub pipeline: usize,
    pub threads: usize,
    pub cpus: Vec<usize>,
    pub keys: u64,
    pub first_key: u64,
    pub value_size: usize,
    pub get_ratio: f64,
    pub prepopulate: bool,
    /// Sets in flight per connection while prepopulating, when asked for.
    pub prepopulate_depth: Option<usize>,
    pub duration_s: Option<f64>,
    pub requests: Option<u64>,
    /// Offered requests per second (open loop only).
    pub rate: Option<f64>,
    pub seed: u64,
}

impl Parameters {
    pub(crate) fn new(config: &Config) -> Parameters {
        let (duration_s, requests) = match config.stop {
            Stop::Duration(d) => (Some(d.as_secs_f64()), None),
            Stop::Requests(n) => (None, Some(n)),
        };
        Parameters {
            server: config.server.clone(),
            tls: config.tls.is_some(),
            auth_user: config.auth.as_ref().map(|a| a.user.clone()),
            mode: if config.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            connections: config.connections,
            pipeline: config.pipeline,
            threads: config.effective_threads(),
            cpus: config.cpus.clone(),
            keys: config.keys,
            first_key: config.first_key,
            value_size: config.value_size,
            get_ratio: config.get_ratio,
            prepopulate: config.prepopulate,
            prepopulate_depth: config.prepopulate_depth,
            duration_s,
            requests,
            rate: config.rate,
            seed: config.seed,
        }
    }
}

impl Report {
    pub(crate) fn new(
        parameters: Parameters,
        tally: &Tally,
        elapsed: Duration,
        prepopulated: u64,
    ) -> Report {
        let latency_us = Latency::of(&tally.latency_ns);
        let elapsed_s = elapsed.as_secs_f64();
        let errors_total = tally.errors.total();
        Report {
            parameters,
            elapsed_s,
            ops: tally.ops,
            ops_per_s: if elapsed_s > 0.0 {
                tally.ops as f64 / elapsed_s
            } else {
                0.0
            },
            gets: tally.gets,
            sets: tally.sets,
            hits: tally.hits,
            misses: tally.misses,
            errors: tally.errors,
            errors_total,
            unsent: tally.unsent,
            latency_us,
            prepopulated,
            failures: tally.failures.clone(),
            clean: errors_total == 0,
        }
    }

    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let p = &self.parameters;
        let l = &self.latency_us;
        let mut text = format!(
            "{server} {tls}{auth} {mode} loop: {conns} conns x depth {depth} on {threads} threads, \
             {keys} keys, {size} B values, {ratio}% gets\n\
             {ops} ops in {elapsed:.2} s = {rate:.0} ops/s{offered}\n\
             gets {gets} (hits {hits}, misses {misses}), sets {sets}, errors {errors}\n\
             latency us: p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}",
            server = p.server,
            tls = if p.tls { "TLS" } else { "plaintext" },
            auth = p
                .auth_user
                .as_ref()
                .map(|user| format!(" authenticated as {user}"))
                .unwrap_or_default(),
            mode = p.mode,
            conns = p.connections,
            depth = p.pipeline,
            threads = p.threads,
            keys = p.keys,
            size = p.value_size,
            ratio = p.get_ratio * 100.0,
            ops = self.ops,
            elapsed = self.elapsed_s,
            rate = self.ops_per_s,
            offered = p
                .rate
                .map(|r| format!(" (offered {r:.0}/s)"))
                .unwrap_or_default(),
            gets = self.gets,
            hits = self.hits,
            misses = self.misses,
            sets = self.sets,
            errors = self.errors_total,
            p50 = l.p50,
            p90 = l.p90,
            p99 = l.p99,
            p999 = l.p999,
            max = l.max,
        );
        if self.unsent > 0 {
            text.push_str(&format!(
                "\nWARNING: {} due requests were never sent: the server fell behind the offered \
                 rate, so these percentiles flatter it",
                self.unsent
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_counted_by_what_they_answer() {
        let mut t = Tally::new();
        let us = Duration::from_micros(1);
        t.record(Op::Get, Reply::Values { found: 1 }, us, b"");
        t.record(Op::Get, Reply::Values { found: 0 }, us, b"END\r\n");
        t.record(Op::Set, Reply::Stored, us, b"STORED\r\n");
        t.record(Op::Set, Reply::NotStored, us, b"NOT_STORED\r\n");
        t.record(
            Op::Get,
            Reply::Error(ErrorKind::Server),
            us,
            b"SERVER_ERROR x\r\n",
        );
        t.record(
            Op::Get,
            Reply::Error(ErrorKind::Server),
            us,
            b"SERVER_ERROR y\r\n",
        );
        t.record(Op::Get, Reply::Unknown, us, b"HUH\r\n");
        assert_eq!((t.ops, t.gets, t.sets, t.hits, t.misses), (7, 5, 2, 1, 1));
        assert_eq!(
            t.errors,
            Errors {
                server_error: 2,
                unparsable: 1,
                unexpected: 1,
                ..Errors::default()
            }
        );
        assert_eq!(
            t.errors.to_string(),
            "server_error 2, unparsable 1, unexpected 1"
        );
        // The first of each kind is quoted, not every one.
        assert_eq!(
            t.failures,
            [
                "Set answered \"NOT_STORED\"",
                "Get answered \"SERVER_ERROR x\"",
                "Get answered \"HUH\""
            ]
        );
    }

    #[test]
    fn merged_tallies_add_up() {
        let mut a = Tally::new();
        let mut b = Tally::new();
        a.record(
            Op::Get,
            Reply::Values { found: 1 },
            Duration::from_micros(10),
            b"",
        );
        b.record(
            Op::Get,
            Reply::Values { found: 1 },
            Duration::from_micros(1000),
            b"",
        );
        b.fail("lost".into());
        a.merge(&b);
        assert_eq!(a.ops, 2);
        assert_eq!(a.latency_ns.len(), 2);
        assert_eq!(a.failures, vec!["lost".to_string()]);
    }

    #[test]
    fn an_unclean_run_says_so() {
        let mut t = Tally::new();
        t.record(
            Op::Get,
            Reply::Error(ErrorKind::Error),
            Duration::from_micros(5),
            b"ERROR\r\n",
        );
        let report = Report::new(
            Parameters::new(&Config::default()),
            &t,
            Duration::from_secs(1),
            0,
        );
        assert!(!report.clean);
        assert_eq!(report.errors_total, 1);
        assert!((report.latency_us.p50 - 5.0).abs() < 0.01);
    }
}
