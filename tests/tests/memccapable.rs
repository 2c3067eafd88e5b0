//! `memccapable` (libmemcached-tools' protocol conformance check) must pass in full against
//! rampart, in its ASCII (`-a`) and binary (`-b`) modes; against memcached it runs as a
//! control of the harness itself.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rampart_tests::server::{find_on_path, run_bounded};
use rampart_tests::{Kind, Server};

/// memccapable's own I/O timeout, in seconds.
const IO_TIMEOUT_SECONDS: &str = "5";
/// Which half of memccapable runs.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Ascii,
    Binary,
}

impl Mode {
    fn flag(self) -> &'static str {
        match self {
            Mode::Ascii => "-a",
            Mode::Binary => "-b",
        }
    }

    /// How its result lines start.
    fn prefix(self) -> &'static str {
        match self {
            Mode::Ascii => "ascii ",
            Mode::Binary => "binary ",
        }
    }
}

/// The whole ASCII run takes about 3 s against memcached.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn memccapable() -> PathBuf {
    if let Some(path) = std::env::var_os("MEMCCAPABLE_BIN") {
        return PathBuf::from(path);
    }
    find_on_path("memccapable").unwrap_or_else(|| {
        panic!(
            "memccapable is not on PATH: install the Debian package `libmemcached-tools` \
             (`cargo xtask ci` does it when run as root) or set MEMCCAPABLE_BIN"
        )
    })
}

/// Runs `memccapable` in `mode` against a fresh server of `kind`; panics with its output
/// unless it exits 0, reports every test as `[pass]`, and ends with `All tests passed`.
fn memccapable_passes(kind: Kind, mode: Mode) {
    let tool = memccapable();
    let server = Server::start(kind, &[]);
    let mut cmd = Command::new(&tool);
    cmd.args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(["-t", IO_TIMEOUT_SECONDS, mode.flag(), "-v"]);
    let done = run_bounded(cmd, RUN_TIMEOUT);
    let failed: Vec<&str> = done
        .stdout
        .lines()
        .filter(|line| line.starts_with(mode.prefix()) && !line.trim_end().ends_with("[pass]"))
        .collect();
    let passed = done
        .stdout
        .lines()
        .filter(|l| l.ends_with("[pass]"))
        .count();
    let ok = done.status.is_some_and(|s| s.success())
        && failed.is_empty()
        && passed > 0
        && done.stdout.contains("All tests passed");
    if !ok {
        panic!(
            "memccapable {} against {} failed (exit {:?}, {passed} passed, not passed: {failed:?})\n\
             --- stdout:\n{}\n--- stderr:\n{}\n{}",
            mode.flag(),
            kind.name(),
            done.status,
            done.stdout,
            done.stderr,
            server.diagnostics()
        );
    }
    println!("{}", done.stdout);
}

#[test]
fn memccapable_ascii_passes_against_rampart() {
    memccapable_passes(Kind::Rampart, Mode::Ascii);
}

#[test]
fn memccapable_ascii_passes_against_memcached() {
    memccapable_passes(Kind::Memcached, Mode::Ascii);
}

#[test]
fn memccapable_binary_passes_against_rampart() {
    memccapable_passes(Kind::Rampart, Mode::Binary);
}

#[test]
fn memccapable_binary_passes_against_memcached() {
    memccapable_passes(Kind::Memcached, Mode::Binary);
}
