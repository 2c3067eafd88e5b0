//! memtier_benchmark (Redis Ltd.), an independent load generator, as a second opinion beside
//! `rampart-load`: built outside the repository by `../shared/tools/build-memtier.sh`, run
//! with `--protocol=memcache_text`, read back from its `--json-out-file`.
//!
//! Its rate limit is per connection and timer-driven: at `--rate-limiting=N` each connection
//! sends `ceil(N/50)` requests every `ceil(N/50)/N` seconds, and the connections' timers start
//! together, so requests arrive in bursts rather than evenly spaced; its latency runs from
//! each request's actual send time. Both differ from `rampart-load`'s open loop, which is why
//! the two generators' figures sit side by side instead of being merged.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The build script, relative to the workspace root (`../shared` is beside the checkout).
const BUILD_SCRIPT: &str = "../shared/tools/build-memtier.sh";
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How much of memtier's output an error quotes.
const MAX_LOG_CHARS: usize = 1500;
/// memtier reports latency in milliseconds.
const US_PER_MS: f64 = 1000.0;

/// A built memtier_benchmark.
#[derive(Debug, Clone)]
pub struct Memtier {
    pub binary: PathBuf,
    /// The first line of `--version`.
    pub version: String,
}

/// What one memtier run reports, from its JSON totals.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Requests answered.
    pub requests: u64,
    pub ops_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

/// How memtier reaches the server.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub port: u16,
    /// The CA to verify the server's certificate against; `None`: plaintext.
    pub tls_ca: Option<&'a Path>,
    /// CPUs for `taskset -c`; empty: unpinned.
    pub cpus: &'a [usize],
}

impl Memtier {
    /// Builds memtier with the shared script (or finds the build it left in /tmp/memtier).
    /// The error is the reason to print when the comparison cannot run.
    pub fn build(root: &Path) -> Result<Memtier, String> {
        let script = root.join(BUILD_SCRIPT);
        if !script.is_file() {
            return Err(format!("{} is missing", script.display()));
        }
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "{} failed ({}): {}",
                script.display(),
                out.status,
                tail(stderr.trim())
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let binary = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        if !binary.is_file() {
            return Err(format!(
                "{} printed {:?}, which is no file",
                script.display(),
                binary.display()
            ));
        }
        let version = Command::new(&binary)
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        Ok(Memtier { binary, version })
    }

    /// Runs memtier against `target` with `args` after the connection flags; `label` names
    /// its files in `dir`. An error quotes its output. `timeout` bounds the whole run.
    pub fn run(
        &self,
        target: &Target,
        args: &[String],
        dir: &Path,
        label: &str,
        timeout: Duration,
    ) -> Result<Outcome> {
        let json = dir.join(format!("memtier-{label}.json"));
        let log_path = dir.join(format!("memtier-{label}.log"));
        let _ = fs::remove_file(&json);
        let log = fs::File::create(&log_path).and_then(|f| Ok((f.try_clone()?, f)))?;
        let mut cmd = if target.cpus.is_empty() {
            Command::new(&self.binary)
        } else {
            let list: Vec<String> = target.cpus.iter().map(usize::to_string).collect();
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(list.join(",")).arg(&self.binary);
            cmd
        };
        cmd.args([
            "--protocol=memcache_text",
            "--server=127.0.0.1",
            &format!("--port={}", target.port),
            "--hide-histogram",
        ])
        .arg(format!("--json-out-file={}", json.display()));
        if let Some(ca) = target.tls_ca {
            cmd.arg("--tls").arg(format!("--cacert={}", ca.display()));
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log.0)
            .stderr(log.1);
        let rendered = crate::render(&cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {rendered}"))?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "`{rendered}` ran past {timeout:?}; its output:\n{}",
                    read_tail(&log_path)
                );
            }
            thread::sleep(POLL_INTERVAL);
        };
        if !status.success() {
            bail!(
                "`{rendered}` exited with {status}; its output:\n{}",
                read_tail(&log_path)
            );
        }
        // A reply memtier cannot parse (an error line) stalls that connection and is logged,
        // but the run still exits 0.
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = first_error(&log) {
            bail!("`{rendered}`: {line}; its output:\n{}", tail(&log));
        }
        let text = fs::read_to_string(&json)
            .with_context(|| format!("`{rendered}` wrote no {}", json.display()))?;
        let outcome = parse(&text).with_context(|| format!("{}", json.display()))?;
        if outcome.requests == 0 {
            bail!(
                "`{rendered}` got no replies; its output:\n{}",
                read_tail(&log_path)
            );
        }
        Ok(outcome)
    }
}

/// The totals of memtier's JSON report; connection errors make it an error.
fn parse(text: &str) -> Result<Outcome> {
    let root: Value = serde_json::from_str(text).context("memtier's JSON does not parse")?;
    let totals = &root["ALL STATS"]["Totals"];
    let number = |v: &Value, what: &str| -> Result<f64> {
        v.as_f64()
            .with_context(|| format!("memtier's JSON has no {what}"))
    };
    let errors = totals["Connection Errors"].as_f64().unwrap_or(0.0);
    if errors > 0.0 {
        bail!("memtier counted {errors} connection errors");
    }
    let percentiles = &totals["Percentile Latencies"];
    let ms = |key: &str| number(&percentiles[key], key).map(|ms| ms * US_PER_MS);
    Ok(Outcome {
        requests: number(&totals["Count"], "Totals.Count")? as u64,
        ops_per_s: number(&totals["Ops/sec"], "Totals.Ops/sec")?,
        p50_us: ms("p50.00")?,
        p99_us: ms("p99.00")?,
        p999_us: ms("p99.90")?,
    })
}

/// The first line of memtier's output that reports an error (`error: response parsing
/// failed.`, `Connection error: ...`).
fn first_error(log: &str) -> Option<&str> {
    log.lines()
        .map(str::trim)
        .find(|line| line.to_ascii_lowercase().contains("error:"))
}

fn read_tail(path: &Path) -> String {
    tail(&fs::read_to_string(path).unwrap_or_default())
}

/// The last [`MAX_LOG_CHARS`] characters of `text`.
fn tail(text: &str) -> String {
    let skip = text.chars().count().saturating_sub(MAX_LOG_CHARS);
    text.chars().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of memtier 2.x's `--json-out-file`, cut down to what is read.
    const REPORT: &str = r#"{"ALL STATS": {"Totals": {"Count": 2050, "Ops/sec": 1022.45,
        "Connection Errors": 0, "Percentile Latencies": {"p50.00": 1.663, "p99.00": 11.071,
        "p99.90": 22.015}}}}"#;

    #[test]
    fn the_totals_are_read_in_microseconds() {
        let o = parse(REPORT).expect("parses");
        assert_eq!(o.requests, 2050);
        assert_eq!(o.ops_per_s, 1022.45);
        assert!((o.p50_us - 1663.0).abs() < 1e-6, "{o:?}");
        assert!((o.p999_us - 22015.0).abs() < 1e-6, "{o:?}");
    }

    #[test]
    fn connection_errors_and_missing_figures_are_errors() {
        let errors = REPORT.replace("\"Connection Errors\": 0", "\"Connection Errors\": 3");
        assert!(parse(&errors).is_err());
        assert!(parse(r#"{"ALL STATS": {"Totals": {}}}"#).is_err());
        assert!(parse("not json").is_err());
    }

    #[test]
    fn an_error_line_in_the_output_is_found() {
        let log = "1         Threads\nerror: response parsing failed.\nTotals 1.0\n";
        assert_eq!(first_error(log), Some("error: response parsing failed."));
        assert_eq!(first_error("ALL STATS\nTotals 12.0 0.00\n"), None);
    }
}
