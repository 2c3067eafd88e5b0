//! `rampart-load`: the command line over `rampart_perf::run`.
//!
//! Exit status: 0 for a clean run, 1 when the server answered with errors, garbage or not at
//! all (the report says which), 2 when the run could not be carried out.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use argh::FromArgs;
use indicatif::{ProgressBar, ProgressStyle};

use rampart_perf::{
    AsciiAuth, Config, Report, Running, Sequence, Stop, TlsConfig, Verify, parse_cpu_list,
};

/// How often the progress bar is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Load generator for memcached-protocol servers (text protocol, plaintext or TLS).
/// Closed loop by default (connections x pipeline requests in flight); --rate makes it an
/// open loop with latency measured from each request's intended send time; --handshakes
/// times connections one after another from connect to first reply.
#[derive(FromArgs, Debug)]
struct Args {
    /// server address, host:port (default 127.0.0.1:11211)
    #[argh(option, default = "String::from(\"127.0.0.1:11211\")")]
    server: String,
    /// connections in all (default 4)
    #[argh(option, default = "4")]
    connections: usize,
    /// requests in flight per connection, sent as one write (default 1)
    #[argh(option, default = "1")]
    pipeline: usize,
    /// size of the key space (default 10000)
    #[argh(option, default = "10_000")]
    keys: u64,
    /// key prefix; keys are <prefix><zero-padded index> (default "key:")
    #[argh(option, default = "String::from(\"key:\")")]
    key_prefix: String,
    /// the first key's index; the keys are <first-key> to <first-key + keys - 1> (default 0)
    #[argh(option, default = "0")]
    first_key: u64,
    /// bytes per stored value (default 32)
    #[argh(option, default = "32")]
    value_size: usize,
    /// fraction of requests that are gets, the rest sets (default 0.9)
    #[argh(option, default = "0.9")]
    get_ratio: f64,
    /// set every key once before measuring
    #[argh(switch)]
    prepopulate: bool,
    /// sets in flight per connection while prepopulating (default: the larger of
    /// --pipeline and 32)
    #[argh(option)]
    prepopulate_depth: Option<usize>,
    /// seconds to measure (default 10; exclusive with --requests)
    #[argh(option)]
    duration: Option<f64>,
    /// requests to send in all (exclusive with --duration)
    #[argh(option)]
    requests: Option<u64>,
    /// open loop: offered requests per second across all connections
    #[argh(option)]
    rate: Option<f64>,
    /// client threads (default 1; at most one per connection)
    #[argh(option, default = "1")]
    threads: usize,
    /// CPUs to pin the client threads to, round-robin: "3", "0,2", "0-3"
    #[argh(option)]
    cpu: Option<String>,
    /// use TLS
    #[argh(switch)]
    tls: bool,
    /// verify the server's certificate against this CA file (PEM)
    #[argh(option)]
    ca: Option<PathBuf>,
    /// do not verify the server's certificate
    #[argh(switch)]
    insecure: bool,
    /// client certificate chain (PEM)
    #[argh(option)]
    cert: Option<PathBuf>,
    /// client private key (PEM; default: the --cert file)
    #[argh(option)]
    key: Option<PathBuf>,
    /// TLS server name for SNI and verification (default: the host of --server)
    #[argh(option)]
    server_name: Option<String>,
    /// authenticate every connection as this user right after connecting (after the TLS
    /// handshake), with memcached's ASCII authentication (-Y); needs --password
    #[argh(option)]
    user: Option<String>,
    /// the password for --user (visible to other local users in the process list: for
    /// benchmark credentials only)
    #[argh(option)]
    password: Option<String>,
    /// instead of a load run: open this many connections one after another (at most
    /// --duration, default 10 s), each connecting, shaking hands, authenticating if asked,
    /// sending one get and closing; reports connect-to-first-reply times
    #[argh(option)]
    handshakes: Option<u64>,
    /// seconds without a reply before a connection counts as failed (default 5)
    #[argh(option, default = "5.0")]
    timeout: f64,
    /// hard bound on the measurement in seconds, whatever else is asked (default 3600)
    #[argh(option, default = "3600.0")]
    time_limit: f64,
    /// seed for key and command choices
    #[argh(option)]
    seed: Option<u64>,
    /// print the report as JSON on stdout (no progress bar)
    #[argh(switch)]
    json: bool,
    /// no progress bar
    #[argh(switch)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    if args.handshakes.is_some() {
        return match handshakes(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // A failed connection ends the sequence: the server refused or broke it.
                eprintln!("rampart-load: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    match run(&args) {
        Ok(report) if report.clean => ExitCode::SUCCESS,
        Ok(report) => {
            eprintln!(
                "FAILED: {} errors ({}){}",
                report.errors_total,
                report.errors,
                report
                    .failures
                    .iter()
                    .map(|f| format!("\n  {f}"))
                    .collect::<String>()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("rampart-load: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<Report> {
    let config = config(args)?;
    let show_progress = !(args.quiet || args.json);
    let running = if show_progress {
        let spinner = ProgressBar::new_spinner();
        spinner.set_message(if config.prepopulate {
            "connecting and prepopulating"
        } else {
            "connecting"
        });
        spinner.enable_steady_tick(PROGRESS_INTERVAL);
        let running = rampart_perf::start(&config);
        spinner.finish_and_clear();
        running?
    } else {
        rampart_perf::start(&config)?
    };
    if show_progress {
        watch(&running, &config);
    }
    let report = running.finish()?;
    let text = if args.json {
        serde_json::to_string_pretty(&report)?
    } else {
        report.summary()
    };
    // Not println!: a closed stdout (`| head`) is an error to report, not a panic.
    writeln!(std::io::stdout().lock(), "{text}").context("writing the report")?;
    Ok(report)
}

/// `--handshakes`: one sequence, its summary or JSON on stdout.
fn handshakes(args: &Args) -> anyhow::Result<()> {
    let config = config(args)?;
    let sequence = Sequence {
        connections: args.handshakes.unwrap_or(1),
        window: match config.stop {
            Stop::Duration(d) => d,
            Stop::Requests(_) => bail!("--handshakes takes --duration, not --requests"),
        },
    };
    let replies = rampart_perf::first_replies(&config, sequence)?;
    let text = if args.json {
        serde_json::to_string_pretty(&replies)?
    } else {
        replies.summary()
    };
    writeln!(std::io::stdout().lock(), "{text}").context("writing the report")?;
    Ok(())
}

/// Draws the progress bar until the run is over (which its own deadline bounds).
fn watch(running: &Running, config: &Config) {
    let (length, template) = match config.stop {
        Stop::Duration(d) => (
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            "{bar:40} {elapsed}/{duration} {msg}",
        ),
        Stop::Requests(n) => (n, "{bar:40} {pos}/{len} requests {msg}"),
    };
    let bar = ProgressBar::new(length);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    while !running.is_finished() {
        std::thread::sleep(PROGRESS_INTERVAL);
        let progress = running.progress();
        let secs = progress.elapsed.as_secs_f64();
        match config.stop {
            Stop::Duration(_) => {
                bar.set_position(u64::try_from(progress.elapsed.as_millis()).unwrap_or(u64::MAX))
            }
            Stop::Requests(_) => bar.set_position(progress.ops),
        }
        if secs > 0.0 {
            bar.set_message(format!("{:.0} ops/s", progress.ops as f64 / secs));
        }
    }
    bar.finish_and_clear();
}

fn config(args: &Args) -> anyhow::Result<Config> {
    let stop = match (args.duration, args.requests) {
        (Some(_), Some(_)) => bail!("--duration and --requests are exclusive"),
        (None, Some(n)) => Stop::Requests(n),
        (Some(secs), None) => Stop::Duration(seconds("--duration", secs)?),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    };
    let tls = match (args.tls, &args.ca, args.insecure) {
        (false, None, false) if args.cert.is_none() && args.server_name.is_none() => None,
        (false, ..) => bail!("--ca, --insecure, --cert and --server-name need --tls"),
        (true, Some(_), true) => bail!("--ca and --insecure are exclusive"),
        (true, ca, insecure) => Some(TlsConfig {
            verify: match ca {
                Some(path) => Verify::Ca(path.clone()),
                None if insecure => Verify::Insecure,
                None => Verify::SystemRoots,
            },
            cert: args.cert.clone(),
            key: args.key.clone(),
            server_name: args.server_name.clone(),
        }),
    };
    if args.key.is_some() && args.cert.is_none() {
        bail!("--key needs --cert");
    }
    let auth = match (&args.user, &args.password) {
        (None, None) => None,
        (Some(user), Some(password)) => Some(AsciiAuth {
            user: user.clone(),
            password: password.clone(),
        }),
        _ => bail!("--user and --password go together"),
    };
    let cpus = match &args.cpu {
        Some(list) => parse_cpu_list(list).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let defaults = Config::default();
    let config = Config {
        server: args.server.clone(),
        tls,
        auth,
        connections: args.connections,
        pipeline: args.pipeline,
        keys: args.keys,
        key_prefix: args.key_prefix.clone(),
        first_key: args.first_key,
        value_size: args.value_size,
        get_ratio: args.get_ratio,
        prepopulate: args.prepopulate,
        prepopulate_depth: args.prepopulate_depth,
        stop,
        rate: args.rate,
        threads: args.threads,
        cpus,
        io_timeout: seconds("--timeout", args.timeout)?,
        time_limit: seconds("--time-limit", args.time_limit)?,
        seed: args.seed.unwrap_or(defaults.seed),
    };
    config.validate()?;
    Ok(config)
}

fn seconds(option: &str, secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{option} must be a positive number of seconds, got {secs}"))
}
