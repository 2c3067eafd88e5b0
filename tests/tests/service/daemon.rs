//! `-d` and `-P`: the parent returns once the daemon serves, or with its failure.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::Duration;

use rampart_tests::path_arg;
use rampart_tests::server::run_bounded;
use rampart_tests::tempdir::TempDir;

use crate::{
    Adopted, Attempt, START_TIMEOUT, adopt_orphans, exit_text, exited_cleanly, on_a_free_port,
    port_taken, rampart, read_pid_file, require_root, serves,
};

/// Runs `cmd` (output to files in `dir`) and returns as soon as it exits, with its stderr: a
/// check made right after sees the state the exit promised, not one a moment later.
fn run_to_exit(mut cmd: Command, dir: &Path) -> (ExitStatus, String) {
    let stderr_path = dir.join("stderr");
    let stderr = fs::File::create(&stderr_path).expect("create the stderr file");
    cmd.stdout(stderr.try_clone().expect("dup")).stderr(stderr);
    let mut child = cmd.spawn().expect("run rampart");
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    let (done, exited) = std::sync::mpsc::channel();
    thread::spawn(move || done.send(child.wait()));
    let status = match exited.recv_timeout(START_TIMEOUT) {
        Ok(status) => status.expect("wait for rampart"),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions; the pid is our child, which
            // the waiting thread has not reaped (it would have sent the status).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("rampart -d did not return within {START_TIMEOUT:?}");
        }
    };
    (status, fs::read_to_string(&stderr_path).unwrap_or_default())
}

#[test]
fn daemon_returns_once_it_serves_and_sigterm_removes_its_pid_file() {
    require_root();
    adopt_orphans();
    let dir = TempDir::new().expect("temp dir");
    let pid_file = dir.path().join("r.pid");
    let (port, (status, stderr)) = on_a_free_port(|port| {
        let cmd = daemon_on(&pid_file, port);
        let (status, stderr) = run_to_exit(cmd, dir.path());
        if !status.success() && port_taken(&stderr) {
            return Attempt::PortTaken(stderr);
        }
        Attempt::Started((status, stderr))
    });
    assert!(
        status.success(),
        "rampart -d: {status}\n--- stderr:\n{stderr}"
    );
    // Ready means ready: the pid file is there and the port answers, without waiting.
    let pid = read_pid_file(&pid_file, Duration::ZERO)
        .unwrap_or_else(|| panic!("no pid in {} once rampart -d returned", pid_file.display()));
    let mut daemon = Adopted::wait_for(pid);
    serves(port).unwrap_or_else(|e| panic!("rampart -d returned but does not serve: {e}"));
    // Its own session, no terminal, and the caller's pipes let go (stdio on /dev/null) ...
    // SAFETY: getsid takes a pid and touches no memory.
    assert_eq!(unsafe { libc::getsid(daemon.pid) }, daemon.pid, "setsid");
    for fd in 0..3 {
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).expect("read the daemon's fd");
        assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
    }
    // ... but the working directory kept (memcached's -d changes to /).
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).expect("read the daemon's cwd");
    assert_eq!(cwd, std::env::current_dir().expect("our cwd"));
    let status = daemon.terminate();
    assert!(
        exited_cleanly(status),
        "wait status {status:#x} after SIGTERM"
    );
    assert!(!pid_file.exists(), "the pid file outlived a clean stop");
}

#[test]
fn daemon_with_the_port_taken_fails_attached_without_a_pid_file() {
    require_root();
    let dir = TempDir::new().expect("temp dir");
    let pid_file = dir.path().join("r.pid");
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let port = taken.local_addr().expect("a bound address").port();
    let finished = run_bounded(daemon_on(&pid_file, port), START_TIMEOUT);
    let code = finished.status.and_then(|s| s.code());
    assert_eq!(
        code,
        Some(1),
        "rampart -d on a taken port: {}\n--- stderr:\n{}",
        exit_text(finished.status),
        finished.stderr
    );
    assert!(
        finished
            .stderr
            .contains(&format!("failed to listen on 127.0.0.1:{port}")),
        "the reason is not on stderr:\n{}",
        finished.stderr
    );
    assert!(!pid_file.exists(), "a pid file for a server that never ran");
}

#[test]
fn daemon_with_a_missing_certificate_exits_64() {
    require_root();
    let dir = TempDir::new().expect("temp dir");
    let missing = dir.path().join("missing.pem");
    let mut cmd = rampart();
    cmd.args(["-d", "-Z", "-l", "127.0.0.1:0", "-U", "0", "-o"])
        .arg(format!(
            "ssl_chain_cert={0},ssl_key={0}",
            path_arg(&missing)
        ));
    let finished = run_bounded(cmd, START_TIMEOUT);
    assert_eq!(
        finished.status.and_then(|s| s.code()),
        Some(64),
        "rampart -d with a missing certificate: {}\n--- stderr:\n{}",
        exit_text(finished.status),
        finished.stderr
    );
    assert!(
        finished.stderr.contains("missing.pem"),
        "the reason is not on stderr:\n{}",
        finished.stderr
    );
}

/// `rampart -d -P <pid_file>` on 127.0.0.1:`port`.
fn daemon_on(pid_file: &Path, port: u16) -> Command {
    let mut cmd = rampart();
    cmd.args(["-d", "-P", path_arg(pid_file), "-l", "127.0.0.1", "-U", "0"])
        .args(["-p", &port.to_string()]);
    cmd
}
