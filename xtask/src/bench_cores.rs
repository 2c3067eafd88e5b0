//! `cargo xtask bench-cores`: what thread-per-core buys, and what a cross-core hop costs.
//!
//! rampart runs with `-t 1` and `-t 2` under the same closed-loop load from `rampart-perf`
//! (uniform keys, so with two shards about half of all requests are owned by the other core),
//! at pipeline depth 1 (every remote request is a message of its own) and depth 16 (a read
//! holds about 8 remote requests per destination, and they travel as one message). For each
//! run: throughput, server CPU per request (`/proc/<pid>/stat`, all threads), and from
//! `stats shards` the cross-core messages and the operations they carried. The hop's cost is
//! what `-t 2` spends per request beyond `-t 1` at the same depth, divided by the fraction of
//! requests that crossed: it includes the sending side (copying into the batch, posting,
//! waking, stitching) and the owner's (the service task and its reply).
//!
//! Every run starts a fresh server and the scenarios take turns within each round, so drifting
//! background load hits all of them alike; the report shows medians over the rounds. It fails
//! only on errors (a server that does not start, an unclean load run), never on speed.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rampart_perf::{Config, Stop};

use crate::{cargo, is_root, root, run_checked, step, target_dir};

const CONNECTIONS: usize = 16;
const KEYS: u64 = 10_000;
const VALUE_BYTES: usize = 32;
const GET_RATIO: f64 = 0.9;
const MEMORY_LIMIT_MIB: usize = 1024;
const DEPTHS: [usize; 2] = [1, 16];
const THREADS: [usize; 2] = [1, 2];
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub seconds: f64,
    pub out: Option<PathBuf>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            rounds: 3,
            seconds: 5.0,
            out: None,
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let mut value = |name: &str| {
                rest.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                "--quick" => {
                    options.rounds = 1;
                    options.seconds = 1.5;
                }
                "--rounds" => options.rounds = value("--rounds")?.parse()?,
                "--seconds" => options.seconds = value("--seconds")?.parse()?,
                "--out" => options.out = Some(PathBuf::from(value("--out")?)),
                other => bail!("bench-cores: unknown argument {other}"),
            }
        }
        if options.rounds == 0 || options.seconds.is_nan() || options.seconds <= 0.0 {
            bail!("bench-cores: --rounds and --seconds must be positive");
        }
        Ok(options)
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ops_per_s: f64,
    /// Server CPU per reply.
    cpu_ns_per_op: f64,
    /// Replies that crossed cores, as a fraction of all replies.
    remote_fraction: f64,
    /// Operations per cross-core message.
    ops_per_message: f64,
}

pub fn bench_cores(options: &Options) -> Result<()> {
    let root = root();
    step("build rampart (release)");
    run_checked(Command::new(cargo()).current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "rampart",
    ]))?;
    let binary = target_dir(&root).join("release/rampart");
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| target_dir(&root).join("bench-cores"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // The servers write their port files after dropping to `nobody` (as root), so into a
    // directory of their own that anyone may write, not the report's.
    let ports = crate::bench_tls::server::scratch_dir("rampart-bench-cores")?;
    let cpus = allowed_cpus()?;
    if cpus.len() < 2 {
        bail!("bench-cores needs 2 CPUs for -t 2; this process may use {cpus:?}");
    }
    let ticks = clock_ticks()?;
    let scenarios: Vec<(usize, usize)> = THREADS
        .iter()
        .flat_map(|&t| DEPTHS.iter().map(move |&d| (t, d)))
        .collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); scenarios.len()];
    let mut failures = Vec::new();
    for round in 0..options.rounds {
        for (i, &(threads, depth)) in scenarios.iter().enumerate() {
            step(&format!(
                "round {}/{}: -t {threads}, depth {depth}",
                round + 1,
                options.rounds
            ));
            let run = Run {
                binary: &binary,
                dir: &ports,
                threads,
                depth,
                seconds: options.seconds,
                client_cpu: cpus[cpus.len() - 1],
                ticks,
            };
            match run.measure() {
                Ok(sample) => {
                    println!(
                        "  {:.0} ops/s, {:.0} ns CPU/op, {:.0}% remote, {:.1} ops/message",
                        sample.ops_per_s,
                        sample.cpu_ns_per_op,
                        sample.remote_fraction * 100.0,
                        sample.ops_per_message
                    );
                    samples[i].push(sample);
                }
                Err(err) => failures.push(format!("-t {threads} depth {depth}: {err:#}")),
            }
        }
    }
    let _ = fs::remove_dir_all(&ports);
    let report = render(&scenarios, &samples, &failures, options, &cpus);
    println!("\n{report}");
    let path = out.join("report.md");
    fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    println!("written to {}", path.display());
    if !failures.is_empty() {
        bail!("{} runs failed", failures.len());
    }
    Ok(())
}

struct Run<'a> {
    binary: &'a Path,
    dir: &'a Path,
    threads: usize,
    depth: usize,
    seconds: f64,
    client_cpu: usize,
    ticks: f64,
}

impl Run<'_> {
    fn measure(&self) -> Result<Sample> {
        let server = Server::start(self.binary, self.dir, self.threads)?;
        let config = Config {
            server: format!("127.0.0.1:{}", server.port),
            connections: CONNECTIONS,
            pipeline: self.depth,
            keys: KEYS,
            key_prefix: "key:".to_string(),
            value_size: VALUE_BYTES,
            get_ratio: GET_RATIO,
            prepopulate: true,
            stop: Stop::Duration(Duration::from_secs_f64(self.seconds)),
            threads: 1,
            cpus: vec![self.client_cpu],
            io_timeout: IO_TIMEOUT,
            ..Config::default()
        };
        let running = rampart_perf::start(&config).context("starting the load")?;
        let cpu_before = server.cpu_seconds(self.ticks)?;
        let shards_before = server.cross_core()?;
        let report = running.finish().context("the load run")?;
        let cpu_after = server.cpu_seconds(self.ticks)?;
        let shards_after = server.cross_core()?;
        if !report.clean {
            bail!("unclean load run: {}", report.failures.join("; "));
        }
        let ops = report.ops.max(1) as f64;
        // The first `stats shards` itself sent one message with one op per peer.
        let peers = (self.threads - 1) as f64;
        let messages = (shards_after.0 - shards_before.0) as f64 - peers;
        let remote_ops = (shards_after.1 - shards_before.1) as f64 - peers;
        Ok(Sample {
            ops_per_s: report.ops_per_s,
            cpu_ns_per_op: (cpu_after - cpu_before) * 1e9 / ops,
            remote_fraction: remote_ops.max(0.0) / ops,
            ops_per_message: if messages > 0.0 {
                remote_ops / messages
            } else {
                0.0
            },
        })
    }
}

/// A rampart process with an ephemeral port; killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(binary: &Path, dir: &Path, threads: usize) -> Result<Server> {
        let port_file = dir.join(format!("port-{}", std::process::id()));
        let _ = fs::remove_file(&port_file);
        let mut cmd = Command::new(binary);
        cmd.args(["-l", "127.0.0.1:0", "-U", "0", "-c", "4096"])
            .args(["-t", &threads.to_string()])
            .args(["-m", &MEMORY_LIMIT_MIB.to_string()])
            .env("MEMCACHED_PORT_FILENAME", &port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = Server { child, port: 0 };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(text) = fs::read_to_string(&port_file)
                && let Some(port) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("TCP INET:"))
                    .and_then(|p| p.trim().parse().ok())
            {
                server.port = port;
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("rampart -t {threads} exited with {status} before listening");
            }
            if Instant::now() > deadline {
                bail!("rampart -t {threads} did not listen within {READY_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// utime + stime of every thread, in seconds.
    fn cpu_seconds(&self, ticks: f64) -> Result<f64> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |i: usize| -> Result<f64> {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .context("malformed /proc/<pid>/stat")
        };
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
        Ok((field(11)? + field(12)?) / ticks)
    }

    /// Summed over shards: (batches_sent, ops_served).
    fn cross_core(&self) -> Result<(u64, u64)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.write_all(b"stats shards\r\n")?;
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        while !reply.ends_with(b"END\r\n") {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                bail!("the server closed the stats connection");
            }
            reply.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&reply);
        let sum = |name: &str| -> u64 {
            text.lines()
                .filter_map(|l| l.strip_prefix("STAT shard:"))
                .filter_map(|l| {
                    let (key, value) = l.split_once(' ')?;
                    key.ends_with(name)
                        .then(|| value.trim().parse::<u64>().ok())?
                })
                .sum()
        };
        Ok((sum(":batches_sent"), sum(":ops_served")))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CPUs this process may run on (`taskset -cp` style list from /proc).
fn allowed_cpus() -> Result<Vec<usize>> {
    let status = fs::read_to_string("/proc/self/status")?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .context("no Cpus_allowed_list in /proc/self/status")?;
    rampart_perf::parse_cpu_list(list.trim()).map_err(|e| anyhow::anyhow!("{e}"))
}

fn clock_ticks() -> Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().context("getconf CLK_TCK")
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn render(
    scenarios: &[(usize, usize)],
    samples: &[Vec<Sample>],
    failures: &[String],
    options: &Options,
    cpus: &[usize],
) -> String {
    let medians: Vec<Sample> = samples
        .iter()
        .map(|runs| Sample {
            ops_per_s: median(runs.iter().map(|s| s.ops_per_s)),
            cpu_ns_per_op: median(runs.iter().map(|s| s.cpu_ns_per_op)),
            remote_fraction: median(runs.iter().map(|s| s.remote_fraction)),
            ops_per_message: median(runs.iter().map(|s| s.ops_per_message)),
        })
        .collect();
    let mut text = format!(
        "# bench-cores\n\n{} round(s) x {:.1} s per run; {CONNECTIONS} connections, {KEYS} keys, \
         {VALUE_BYTES}-byte values, {:.0}% gets; load generator pinned to CPU {}, server on \
         CPUs {:?} (its -t first ones); medians.\n\n\
         | -t | depth | ops/s | server CPU ns/op | remote ops | ops/message |\n\
         |---:|---:|---:|---:|---:|---:|\n",
        options.rounds,
        options.seconds,
        GET_RATIO * 100.0,
        cpus[cpus.len() - 1],
        cpus
    );
    for (&(threads, depth), m) in scenarios.iter().zip(&medians) {
        text += &format!(
            "| {threads} | {depth} | {:.0} | {:.0} | {:.0}% | {:.1} |\n",
            m.ops_per_s,
            m.cpu_ns_per_op,
            m.remote_fraction * 100.0,
            m.ops_per_message
        );
    }
    text += "\nCross-core hop, per request that crossed (CPU at -t 2 minus -t 1, divided by the \
             remote fraction):\n\n";
    for depth in DEPTHS {
        let find = |t: usize| {
            scenarios
                .iter()
                .position(|&s| s == (t, depth))
                .map(|i| medians[i])
        };
        if let (Some(one), Some(two)) = (find(1), find(2))
            && two.remote_fraction > 0.0
        {
            let hop = (two.cpu_ns_per_op - one.cpu_ns_per_op) / two.remote_fraction;
            text += &format!(
                "- depth {depth} ({:.1} ops per message): {hop:.0} ns\n",
                two.ops_per_message
            );
        }
    }
    if !failures.is_empty() {
        text += "\nFailed runs (left out of the medians):\n\n";
        for failure in failures {
            text += &format!("- {failure}\n");
        }
    }
    text
}
