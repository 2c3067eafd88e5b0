//! The binary's behaviour outside the protocol: startup errors, exit statuses, signals and
//! limits. Where memcached behaves the same, the test runs against both (memcached as the
//! control that proves the expectation); rampart-only rules (no UDP, unknown flags exit 64,
//! `-c` counting exactly the client connections) run against rampart alone. Replies that
//! memcached shares (`-A`, `-F`, `idle_timeout`) are in the differential suite instead.

use std::os::unix::process::CommandExt;
use std::process::ExitStatus;
use std::time::Duration;

use rampart_tests::io::End;
use rampart_tests::report::escape;
use rampart_tests::server::{Finished, run_bounded};
use rampart_tests::{Kind, Server, running_as_root};

/// `EX_USAGE` from sysexits.h: memcached's status for a bad command line.
const EX_USAGE: i32 = 64;
/// Bound for a process expected to exit at startup (it is killed after this).
const STARTUP_BOUND: Duration = Duration::from_secs(10);
/// Bound for a server to exit after SIGTERM or `shutdown`.
const EXIT_BOUND: Duration = Duration::from_secs(10);
/// Bound for the server to close a connection.
const CLOSE_BOUND: Duration = Duration::from_secs(5);
/// How many times to try a new connection while the server notices that one closed.
const RECONNECT_ATTEMPTS: u32 = 50;

/// Runs `kind` with `args` (plus `-u nobody` as root) until it exits, bounded.
fn run_to_exit(kind: Kind, args: &[&str]) -> Finished {
    let mut cmd = kind.command();
    cmd.args(args);
    run_bounded(cmd, STARTUP_BOUND)
}

fn code(status: Option<ExitStatus>) -> Option<i32> {
    status.and_then(|s| s.code())
}

fn describe(kind: Kind, args: &[&str], done: &Finished) -> String {
    format!(
        "{} {}: exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        kind.name(),
        args.join(" "),
        done.status,
        done.stdout,
        done.stderr
    )
}

#[test]
fn udp_port_is_refused_with_usage_status_and_says_why() {
    let args = ["-l", "127.0.0.1:0", "-U", "1"];
    let done = run_to_exit(Kind::Rampart, &args);
    let report = describe(Kind::Rampart, &args, &done);
    assert_eq!(code(done.status), Some(EX_USAGE), "{report}");
    assert!(
        done.stderr.to_ascii_lowercase().contains("udp"),
        "the error should mention UDP\n{report}"
    );
}

#[test]
fn unknown_flag_exits_with_usage_status_naming_it() {
    let args = ["-l", "127.0.0.1:0", "-U", "0", "--no-such-flag"];
    let done = run_to_exit(Kind::Rampart, &args);
    let report = describe(Kind::Rampart, &args, &done);
    assert_eq!(code(done.status), Some(EX_USAGE), "{report}");
    assert!(
        done.stderr.contains("--no-such-flag"),
        "the error should name the flag\n{report}"
    );
}

/// An executor that glommio cannot build (here: too little locked memory for its rings) ends
/// the start-up with an error that says why. It used to leave the process waiting, silently
/// and for ever, for a report that executor would never send.
#[test]
fn an_executor_that_cannot_start_fails_the_start_up_and_says_why() {
    const LIMIT: libc::rlim_t = 256 * 1024;
    let args = ["-l", "127.0.0.1:0", "-U", "0"];
    let mut cmd = Kind::Rampart.command();
    cmd.args(args);
    // SAFETY: setrlimit is async-signal-safe and touches only the child about to exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let done = run_bounded(cmd, STARTUP_BOUND);
    let report = describe(Kind::Rampart, &args, &done);
    assert_eq!(code(done.status), Some(1), "{report}");
    assert!(
        done.stderr.contains("could not start") && done.stderr.contains("ulimit -l: 256 KiB"),
        "the error should say which executor failed and show the memlock limit\n{report}"
    );
}

/// `-I` is at least 1k, at most 1g, and at most half of `-m`; memcached exits 64 for each.
#[test]
fn invalid_item_size_exits_with_usage_status() {
    let cases: [&[&str]; 3] = [&["-m", "1", "-I", "600k"], &["-I", "512"], &["-I", "2g"]];
    let mut failures = Vec::new();
    for kind in [Kind::Memcached, Kind::Rampart] {
        for case in cases {
            let args = [&["-l", "127.0.0.1:0", "-U", "0"], case].concat();
            let done = run_to_exit(kind, &args);
            if code(done.status) != Some(EX_USAGE) || done.stderr.trim().is_empty() {
                failures.push(describe(kind, &args, &done));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "expected exit status {EX_USAGE} and a message on stderr:\n{}",
        failures.join("\n")
    );
}

/// memcached refuses to start as root without `-u`; rampart never keeps root either, but
/// switches to `nobody` on its own (docs/compatibility.md), so `cargo run` works as root.
#[test]
fn as_root_without_user_memcached_refuses_and_rampart_serves_as_nobody() {
    if !running_as_root() {
        println!("not running as root: nothing to check here");
        return;
    }
    let args = ["-l", "127.0.0.1:0", "-U", "0"];
    let mut cmd = std::process::Command::new(Kind::Memcached.binary());
    cmd.args(args);
    let done = run_bounded(cmd, STARTUP_BOUND);
    assert!(
        done.status.is_some_and(|s| !s.success())
            && done.stderr.to_ascii_lowercase().contains("root"),
        "memcached should refuse root without -u:\n{}",
        describe(Kind::Memcached, &args, &done)
    );

    let server = Server::start_as_invoked(Kind::Rampart, &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("the server's /proc status is readable");
    let uids: Vec<&str> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("/proc status has a Uid line")
        .split_whitespace()
        .collect();
    assert!(
        uids.iter().all(|&uid| uid != "0"),
        "rampart kept root: Uid {uids:?}\n{}",
        server.diagnostics()
    );
    let mut conn = server.conn();
    conn.send(b"set k 0 0 1\r\nv\r\nget k\r\n")
        .expect("the request is sent");
    let reply = conn.read_until(b"END\r\n", CLOSE_BOUND);
    assert_eq!(reply.bytes, b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n");
    assert!(
        server.stderr().contains("nobody"),
        "{}",
        server.diagnostics()
    );
}

#[test]
fn third_connection_over_a_limit_of_two_is_told_and_closed() {
    let server = Server::start(Kind::Rampart, &["-c", "2"]);
    let mut first = server.conn();
    let mut second = server.conn();
    // Both are accepted and served before the third arrives.
    assert!(
        first
            .roundtrip(b"version\r\n", b"\r\n")
            .starts_with(b"VERSION ")
    );
    assert!(
        second
            .roundtrip(b"version\r\n", b"\r\n")
            .starts_with(b"VERSION ")
    );
    let mut third = server.conn();
    let reply = third.read_to_eof(CLOSE_BOUND);
    assert!(
        reply.bytes == b"ERROR Too many open connections\r\n"
            && matches!(reply.end, End::Eof | End::Reset),
        "third connection got \"{}\" then {}\n{}",
        escape(&reply.bytes),
        reply.end,
        server.diagnostics()
    );
    // The two admitted connections are unaffected.
    assert_eq!(first.roundtrip(b"get k\r\n", b"END\r\n"), b"END\r\n");
    // Once one leaves, a new connection is admitted (the server notices the close
    // asynchronously, hence a bounded number of attempts).
    drop(second);
    let admitted = (0..RECONNECT_ATTEMPTS).any(|_| {
        let mut conn = server.conn();
        conn.send(b"version\r\n").is_ok()
            && conn
                .read_until(b"\r\n", CLOSE_BOUND)
                .bytes
                .starts_with(b"VERSION ")
    });
    assert!(
        admitted,
        "no connection admitted after one closed\n{}",
        server.diagnostics()
    );
}

/// SIGTERM after the replies to everything sent have arrived: exit status 0, and the open
/// connection is closed.
#[test]
fn sigterm_exits_zero() {
    for kind in [Kind::Memcached, Kind::Rampart] {
        let mut server = Server::start(kind, &[]);
        let mut conn = server.conn();
        let reply = conn.roundtrip(b"set k 0 0 1\r\nv\r\nget k\r\n", b"END\r\n");
        assert_eq!(reply, b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n");
        server.signal(libc::SIGTERM);
        let status = server.wait_exit(EXIT_BOUND);
        assert!(
            status.is_some_and(|s| s.success()),
            "{} after SIGTERM: {status:?}\n{}",
            kind.name(),
            server.diagnostics()
        );
        let rest = conn.read_to_eof(CLOSE_BOUND);
        assert!(
            rest.bytes.is_empty() && matches!(rest.end, End::Eof | End::Reset),
            "{}: the open connection got \"{}\" then {}",
            kind.name(),
            escape(&rest.bytes),
            rest.end
        );
    }
}

/// Requests already written on an accepted connection when SIGTERM arrives are answered
/// before it closes (they are in the server's socket buffer before the signal is sent; a
/// connection still in the accept queue may be reset instead), an idle connection
/// does not hold up the exit, and the exit status is 0. memcached does not promise this.
#[test]
fn sigterm_answers_requests_already_sent() {
    let mut server = Server::start(Kind::Rampart, &[]);
    let mut idle = server.conn();
    assert!(
        idle.roundtrip(b"version\r\n", b"\r\n")
            .starts_with(b"VERSION ")
    );
    let mut busy = server.conn();
    // Accepted and served once, so the race is only with reading what follows.
    assert!(
        busy.roundtrip(b"version\r\n", b"\r\n")
            .starts_with(b"VERSION ")
    );
    busy.send(b"set k 0 0 1\r\nv\r\nget k\r\n")
        .unwrap_or_else(|e| panic!("sending: {e}"));
    server.signal(libc::SIGTERM);
    let reply = busy.read_to_eof(CLOSE_BOUND);
    assert!(
        reply.bytes == b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
            && matches!(reply.end, End::Eof | End::Reset),
        "got \"{}\" then {}\n{}",
        escape(&reply.bytes),
        reply.end,
        server.diagnostics()
    );
    let rest = idle.read_to_eof(CLOSE_BOUND);
    assert!(
        rest.bytes.is_empty() && matches!(rest.end, End::Eof | End::Reset),
        "the idle connection got \"{}\" then {}",
        escape(&rest.bytes),
        rest.end
    );
    let status = server.wait_exit(EXIT_BOUND);
    assert!(
        status.is_some_and(|s| s.success()),
        "after SIGTERM: {status:?}\n{}",
        server.diagnostics()
    );
}

/// With `-A`, `shutdown` closes the connection and the process exits with status 0. (The
/// reply bytes, with and without `-A`, are compared in the differential suite.)
#[test]
fn shutdown_with_dash_a_exits_zero() {
    for kind in [Kind::Memcached, Kind::Rampart] {
        let mut server = Server::start(kind, &["-A"]);
        let mut conn = server.conn();
        conn.send(b"shutdown\r\n")
            .unwrap_or_else(|e| panic!("{}: sending shutdown: {e}", kind.name()));
        let reply = conn.read_to_eof(CLOSE_BOUND);
        assert!(
            matches!(reply.end, End::Eof | End::Reset),
            "{}: shutdown got \"{}\" then {}",
            kind.name(),
            escape(&reply.bytes),
            reply.end
        );
        let status = server.wait_exit(EXIT_BOUND);
        assert!(
            status.is_some_and(|s| s.success()),
            "{} after shutdown: {status:?}\n{}",
            kind.name(),
            server.diagnostics()
        );
    }
}

/// Without `-A` the server keeps running after `shutdown` is refused.
#[test]
fn shutdown_without_dash_a_keeps_serving() {
    for kind in [Kind::Memcached, Kind::Rampart] {
        let mut server = Server::start(kind, &[]);
        let mut conn = server.conn();
        let reply = conn.roundtrip(b"shutdown\r\nversion\r\n", b"VERSION ");
        assert_eq!(
            reply,
            b"ERROR: shutdown not enabled\r\nVERSION ",
            "{}",
            kind.name()
        );
        assert!(server.try_wait().is_none(), "{} exited", kind.name());
    }
}
