//! The systemd unit in `crates/rampart/systemd/`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rampart_tests::server::{find_on_path, run_bounded};
use rampart_tests::tempdir::TempDir;
use rampart_tests::tls::{ClientConfig, Pki};
use rampart_tests::{Kind, path_arg};

use crate::{
    POLL_INTERVAL, Reaped, START_TIMEOUT, STOP_TIMEOUT, exit_text, read_pid_file, require_root,
    serves, wait_child,
};

const MEMCACHED_UNIT: &str = "/lib/systemd/system/memcached.service";
/// The exposure score `systemd-analyze security` gave the unit when it was written (lower is
/// better; docs/security.md, "Running under systemd"), with a little room for another
/// systemd's weights.
const UNIT_EXPOSURE_BOUND: f64 = 1.5;

fn systemd_analyze() -> PathBuf {
    find_on_path("systemd-analyze")
        .unwrap_or_else(|| panic!("systemd-analyze is not on PATH (Debian package `systemd`)"))
}

/// The shipped unit, copied into `dir` with ExecStart pointing at the binary under test
/// (verify checks that the program exists).
fn unit_under_test(dir: &Path) -> PathBuf {
    let source = rampart_tests::workspace_root().join("crates/rampart/systemd/rampart.service");
    let text = fs::read_to_string(&source).unwrap_or_else(|e| panic!("{source:?}: {e}"));
    assert!(text.contains("ExecStart=/usr/bin/rampart "));
    let text = text.replace(
        "ExecStart=/usr/bin/rampart ",
        &format!("ExecStart={} ", path_arg(&Kind::Rampart.binary())),
    );
    let unit = dir.join("rampart.service");
    fs::write(&unit, text).expect("write the unit");
    unit
}

/// `systemd-analyze security --offline=yes`'s overall exposure (0 best, 10 worst).
fn exposure(unit: &Path) -> f64 {
    let mut cmd = Command::new(systemd_analyze());
    cmd.args(["security", "--offline=yes"]).arg(unit);
    let finished = run_bounded(cmd, Duration::from_secs(30));
    let line = finished
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure for {unit:?}:\n{}{}",
                finished.stdout, finished.stderr
            )
        });
    let score = line
        .rsplit(':')
        .next()
        .and_then(|s| s.split_whitespace().next());
    score
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unreadable exposure line {line:?}"))
}

#[test]
fn systemd_unit_verifies_and_is_more_hardened_than_memcacheds() {
    let dir = TempDir::new().expect("temp dir");
    let unit = unit_under_test(dir.path());
    let mut cmd = Command::new(systemd_analyze());
    cmd.arg("verify").arg(&unit);
    let finished = run_bounded(cmd, Duration::from_secs(30));
    // Other units on the machine may draw warnings of their own; ours must draw none.
    let ours: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|l| l.contains("rampart"))
        .collect();
    assert!(
        finished.status.is_some_and(|s| s.success()) && ours.is_empty(),
        "systemd-analyze verify: {}\n{}",
        exit_text(finished.status),
        finished.stderr
    );
    let score = exposure(&unit);
    assert!(
        score <= UNIT_EXPOSURE_BOUND,
        "the unit's exposure is {score}, more than {UNIT_EXPOSURE_BOUND}"
    );
    let memcached = Path::new(MEMCACHED_UNIT);
    assert!(
        memcached.exists(),
        "{MEMCACHED_UNIT} is missing (Debian package `memcached`)"
    );
    let theirs = exposure(memcached);
    assert!(
        score < theirs,
        "rampart's unit {score}, memcached's {theirs}"
    );
}

/// A `SystemCallFilter=` item's system calls: a group (`@system-service`) expanded, as
/// `systemd-analyze syscall-filter` lists it, groups within groups too.
fn syscalls_of(item: &str) -> BTreeSet<String> {
    if !item.starts_with('@') {
        return BTreeSet::from([item.to_string()]);
    }
    let mut cmd = Command::new(systemd_analyze());
    cmd.args(["syscall-filter", item]);
    let finished = run_bounded(cmd, Duration::from_secs(30));
    assert!(
        finished.status.is_some_and(|s| s.success()),
        "systemd-analyze syscall-filter {item}:\n{}",
        finished.stderr
    );
    let mut calls = BTreeSet::new();
    // The first line names the group; then `# comments`, names and nested groups.
    for entry in finished.stdout.lines().skip(1).map(str::trim) {
        if !entry.is_empty() && !entry.starts_with('#') {
            calls.extend(syscalls_of(entry));
        }
    }
    calls
}

/// The unit's `SystemCallFilter=` lines: what they allow and what their `~` lines deny.
fn unit_syscall_filter(unit: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut allowed, mut denied) = (BTreeSet::new(), BTreeSet::new());
    for value in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        let (set, items) = match value.strip_prefix('~') {
            Some(items) => (&mut denied, items),
            None => (&mut allowed, value),
        };
        for item in items.split_whitespace() {
            set.extend(syscalls_of(item));
        }
    }
    assert!(
        !allowed.is_empty(),
        "the unit has no SystemCallFilter= allow list"
    );
    (allowed, denied)
}

/// The `TCP INET:` ports of a port file once it lists `count` of them.
fn ports_in(path: &Path, count: usize) -> Option<Vec<u16>> {
    let text = fs::read_to_string(path).ok()?;
    let ports: Vec<u16> = text
        .lines()
        .filter_map(|l| l.strip_prefix("TCP INET:"))
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    (ports.len() == count).then_some(ports)
}

/// Waits at most `bound` for `path` to contain `needle`.
fn wait_for_text(path: &Path, needle: &str, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while !fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
    true
}

/// Without systemd to run the unit, its system call filter is checked against a trace: every
/// call rampart makes while it starts (plaintext and TLS), serves, reloads on SIGHUP and
/// stops must be allowed, or the server would get EPERM where it needs to succeed. It runs
/// as an unprivileged user and without `-u`, as under the unit.
#[test]
fn systemd_unit_syscall_filter_allows_every_call_rampart_makes() {
    require_root();
    let source = rampart_tests::workspace_root().join("crates/rampart/systemd/rampart.service");
    let unit = fs::read_to_string(&source).unwrap_or_else(|e| panic!("{source:?}: {e}"));
    let (allowed, denied) = unit_syscall_filter(&unit);
    let strace = find_on_path("strace")
        .unwrap_or_else(|| panic!("strace is not on PATH (Debian package `strace`)"));
    let setpriv = find_on_path("setpriv")
        .unwrap_or_else(|| panic!("setpriv is not on PATH (Debian package `util-linux`)"));
    let dir = TempDir::new().expect("temp dir");
    let pki = Pki::new();
    let (trace, output) = (dir.path().join("trace"), dir.path().join("output"));
    let (port_file, pid_file) = (dir.path().join("ports"), dir.path().join("r.pid"));
    let binary = Kind::Rampart.binary();
    let log = fs::File::create(&output).expect("create the output file");
    let child = Command::new(strace)
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(setpriv)
        .args(["--reuid=memcache", "--regid=memcache", "--clear-groups"])
        .arg(&binary)
        .args([
            "-l",
            "notls:127.0.0.1:0",
            "-l",
            "127.0.0.1:0",
            "-U",
            "0",
            "-Z",
        ])
        .args(["-o", &pki.cert_opts(), "-P", path_arg(&pid_file)])
        .env("MEMCACHED_PORT_FILENAME", &port_file)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("run strace");
    let mut child = Reaped(child);
    let printed = || fs::read_to_string(&output).unwrap_or_default();
    // Slower under strace: the bound is twice the usual.
    let deadline = Instant::now() + 2 * START_TIMEOUT;
    let ports = loop {
        if let Some(ports) = ports_in(&port_file, 2) {
            break ports;
        }
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            panic!(
                "rampart under strace exited ({status}) before serving:\n{}",
                printed()
            );
        }
        assert!(Instant::now() < deadline, "no port file:\n{}", printed());
        thread::sleep(POLL_INTERVAL);
    };
    serves(ports[0]).unwrap_or_else(|e| panic!("{e}\n{}", printed()));
    let mut tls = ClientConfig::new(&pki)
        .connect(ports[1])
        .unwrap_or_else(|e| panic!("TLS connect: {e}\n{}", printed()));
    assert!(
        tls.roundtrip(b"version\r\n", b"\r\n")
            .starts_with(b"VERSION ")
    );
    drop(tls);
    let pid = read_pid_file(&pid_file, Duration::ZERO).expect("the pid file");
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill has no memory-safety preconditions; the pid is strace's unreaped child
    // (strace is still running: it exits after it).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert!(
        wait_for_text(&output, "TLS certificates reloaded", START_TIMEOUT),
        "no reload after SIGHUP:\n{}",
        printed()
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_child(&mut child.0, 2 * STOP_TIMEOUT)
        .unwrap_or_else(|| panic!("rampart outlived SIGTERM:\n{}", printed()));
    assert!(status.success(), "{status} after SIGTERM:\n{}", printed());
    // The calls from rampart's execve on (strace's and setpriv's own come before).
    let text = fs::read_to_string(&trace).expect("read the trace");
    let exec = format!("execve(\"{}\"", path_arg(&binary));
    let from = text
        .find(&exec)
        .unwrap_or_else(|| panic!("no {exec} in the trace"));
    let made: BTreeSet<String> = text[from..]
        .lines()
        .filter_map(|line| {
            // `<pid> <name>(...`; resumed calls and signals have no name followed by `(`.
            let call = line.split_once(' ')?.1.trim_start();
            let name = call.split_once('(')?.0;
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                .then(|| name.to_string())
        })
        .filter(|name| !name.is_empty() && name != "execve")
        .collect();
    assert!(
        made.contains("io_uring_enter"),
        "an implausible trace: {made:?}"
    );
    let refused: Vec<&String> = made
        .iter()
        .filter(|c| !allowed.contains(*c) || denied.contains(*c))
        .collect();
    assert!(
        refused.is_empty(),
        "the unit's SystemCallFilter= refuses system calls rampart makes: {refused:?}"
    );
}
