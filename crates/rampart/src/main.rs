//! The `rampart` binary: memcached's command line in, a running server out.

mod acl_check;
mod cli;
mod daemon;
mod passwd;

use std::process::ExitCode;

use argh::FromArgs;

/// `-i`: memcached prints its and libevent's licenses; rampart, its own and what it builds on.
const LICENSE: &str = "\
rampart is licensed under the MIT license or the Apache License 2.0, at your option.
It includes glommio (MIT OR Apache-2.0, third_party/glommio) and links OpenSSL (Apache-2.0).
The licenses of every crate it is built from are listed by `cargo tree --format '{p} {l}'`.
";

/// memcached's EX_USAGE: a bad flag or value.
const EXIT_USAGE: u8 = 64;

fn init_logging(verbosity: u32) {
    let mut builder = env_logger::Builder::new();
    // The logger lets everything through and `log::set_max_level` decides, so that the
    // `verbosity` command can raise or lower it at run time. RUST_LOG, when set, is the
    // operator's explicit choice and replaces both.
    builder.filter_level(log::LevelFilter::Trace);
    match std::env::var("RUST_LOG") {
        Ok(spec) => {
            builder.parse_filters(&spec);
            builder.format_timestamp_millis().init();
        }
        Err(_) => {
            builder.format_timestamp_millis().init();
            log::set_max_level(rampart_server::verbosity_filter(verbosity));
        }
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("passwd") {
        return passwd::main(std::env::args().skip(2).collect());
    }
    if std::env::args().nth(1).as_deref() == Some("acl-check") {
        return acl_check::main(std::env::args().skip(2).collect());
    }
    let argv = cli::normalize(std::env::args().skip(1));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let args = match cli::Args::from_args(&["rampart"], &argv) {
        Ok(args) => args,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    print!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    let first = early.output.lines().next().unwrap_or("bad arguments");
                    eprintln!("rampart: {first}");
                    ExitCode::from(EXIT_USAGE)
                }
            };
        }
    };
    if args.version {
        println!("rampart {}", rampart_server::stats::VERSION);
        return ExitCode::SUCCESS;
    }
    if args.license {
        print!("{LICENSE}");
        return ExitCode::SUCCESS;
    }
    init_logging(args.verbose);
    let detach = args.daemon;
    // memcached keeps stdio open under -d when verbose, for its output to stay visible.
    let keep_stdio = args.verbose > 0;
    let port_file = std::env::var_os("MEMCACHED_PORT_FILENAME").map(Into::into);
    // memcached's SASL password file (its plaintext `user:password` format), for -S.
    let sasl_file = std::env::var_os("MEMCACHED_SASL_PWDB").map(Into::into);
    // Without the mask (it cannot fail on Linux) the default is one thread, and the server
    // checks -t against the mask again when it starts.
    let cpus = rampart_server::runtime::allowed_cpus().map_or(1, |cpus| cpus.len());
    let config = match cli::to_config(args, port_file, cpus)
        .map(|config| cli::with_sasl_file(config, sasl_file))
    {
        Ok(config) => config,
        Err(cli::UsageError(message)) => {
            eprintln!("rampart: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Forked here, after every check that needs no server and before the server starts any
    // thread (daemon.rs says why).
    let daemon = if detach {
        match daemon::fork(keep_stdio) {
            Ok(daemon::Forked::Parent(parent)) => return wait_for_daemon(parent),
            Ok(daemon::Forked::Daemon(daemon)) => Some(daemon),
            Err(err) => {
                eprintln!("rampart: -d: cannot detach: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let on_ready = move || {
        if let Some(daemon) = daemon {
            daemon.ready();
        }
    };
    match rampart_server::run_with(config, on_ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            err @ (rampart_server::ServerError::Usage(_)
            | rampart_server::ServerError::Tls(_)
            | rampart_server::ServerError::Auth(_)
            | rampart_server::ServerError::Access(_)
            | rampart_server::ServerError::Audit(_)),
        ) => {
            eprintln!("rampart: {err}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(err) => {
            eprintln!("rampart: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `-d`'s parent: exits 0 once the daemon serves, else with the daemon's own status (it has
/// printed its reason on the stderr they share).
fn wait_for_daemon(parent: daemon::Parent) -> ExitCode {
    match parent.wait() {
        Ok(daemon::StartUp::Killed(signal)) => {
            eprintln!("rampart: -d: the server was killed by signal {signal} before it served");
            ExitCode::from(daemon::StartUp::Killed(signal).exit_code())
        }
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(err) => {
            eprintln!("rampart: -d: cannot learn whether the server started: {err}");
            ExitCode::FAILURE
        }
    }
}
