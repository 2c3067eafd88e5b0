//! rampart as a service: `-d` and `-P`, Debian's memcached start-up scripts driving rampart
//! in memcached's place, and the systemd unit in `crates/rampart/systemd/`.
//!
//! Runs as root (CI does): Debian's scripts refuse anyone else, and the servers switch to an
//! unprivileged user (`memcache`, from the Debian package `memcached`, or `nobody`) as an
//! installed one would. A missing tool or script is a failure that names its package, never a
//! skip.
//!
//! A daemon's parent exits, so the daemon would be re-parented to init and its exit status
//! lost: this test process makes itself a child subreaper ([`adopt_orphans`]), so that those
//! daemons become its children, and [`Adopted`] waits for them by pid. Nothing here waits for
//! "any child" (another test's children are not ours to reap).

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use rampart_tests::{Kind, running_as_root};

/// How long a server may take to serve, or a start-up script to return.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM (it drains for 5 s at most).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many free ports to try when another process takes ours between probe and bind.
const PORT_ATTEMPTS: usize = 5;
const POLL_INTERVAL: Duration = Duration::from_millis(10);

fn require_root() {
    assert!(
        running_as_root(),
        "tests/tests/service/ runs as root: Debian's memcached scripts refuse anyone else \
         and the servers switch to the memcache user (run it as root, as `cargo xtask ci` does)"
    );
}

/// Makes this process the reaper of its orphaned descendants (see the module comment).
fn adopt_orphans() {
    static SUBREAPER: Once = Once::new();
    SUBREAPER.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer and touches no memory.
        let set = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(set, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
    });
}

/// A server whose parent has exited and which is now this process's child.
#[derive(Debug)]
struct Adopted {
    pid: libc::pid_t,
    reaped: bool,
}

impl Adopted {
    /// Waits until `pid`'s parent is this process, that is until its own parent has exited.
    fn wait_for(pid: u32) -> Adopted {
        let us = std::process::id().to_string();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let parent = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .map(str::trim);
            if parent == Some(us.as_str()) {
                let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
                return Adopted { pid, reaped: false };
            }
            assert!(
                Instant::now() < deadline,
                "process {pid} was not re-parented to the test within {START_TIMEOUT:?} \
                 (its parent: {parent:?})"
            );
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn signal(&self, signal: libc::c_int) {
        assert!(!self.reaped);
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child,
        // so it cannot have been reused.
        assert_eq!(
            unsafe { libc::kill(self.pid, signal) },
            0,
            "kill {}",
            self.pid
        );
    }

    /// The raw wait status once it exits within `bound`.
    fn wait_exit(&mut self, bound: Duration) -> Option<libc::c_int> {
        let deadline = Instant::now() + bound;
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child, writing into `status`, which we own.
            let got = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if got == self.pid {
                self.reaped = true;
                return Some(status);
            }
            assert!(got == 0, "waitpid {}: {}", self.pid, last_error());
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// SIGTERM, and the exit status it then left with.
    fn terminate(&mut self) -> libc::c_int {
        self.signal(libc::SIGTERM);
        self.wait_exit(STOP_TIMEOUT)
            .unwrap_or_else(|| panic!("{} outlived SIGTERM by {STOP_TIMEOUT:?}", self.pid))
    }
}

impl Drop for Adopted {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
            let _ = self.wait_exit(STOP_TIMEOUT);
        }
    }
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn exited_cleanly(status: libc::c_int) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// A port nobody listens on now: bound to 127.0.0.1:0 and released.
fn free_port() -> u16 {
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    probe.local_addr().expect("a bound address").port()
}

/// How an attempt to start a server on a port ended.
enum Attempt<T> {
    Started(T),
    /// Someone took the port between the probe and the server's bind: try another.
    PortTaken(String),
}

/// Runs `start` with free ports until one is not taken by someone else meanwhile.
fn on_a_free_port<T>(mut start: impl FnMut(u16) -> Attempt<T>) -> (u16, T) {
    let mut last = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        match start(port) {
            Attempt::Started(started) => return (port, started),
            Attempt::PortTaken(output) => last = output,
        }
    }
    panic!("every one of {PORT_ATTEMPTS} free ports was taken before the server bound it:\n{last}")
}

fn port_taken(output: &str) -> bool {
    output.contains("failed to listen") && output.contains("Address already in use")
}

/// `version` over a fresh connection, once: the server must serve already.
fn serves(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, START_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(START_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"version\r\n")
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => reply.push(byte[0]),
            Ok(_) => break,
            Err(e) => return Err(format!("read from {addr}: {e}")),
        }
    }
    if reply.starts_with(b"VERSION ") && reply.ends_with(b"\r\n") {
        Ok(())
    } else {
        Err(format!(
            "`version` on {addr}: {:?}",
            String::from_utf8_lossy(&reply)
        ))
    }
}

/// The pid a pid file names, once it exists with a whole line, waiting at most `bound`.
fn read_pid_file(path: &Path, bound: Duration) -> Option<u32> {
    let deadline = Instant::now() + bound;
    loop {
        if let Ok(text) = fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return Some(pid);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

fn rampart() -> Command {
    let mut cmd = Command::new(Kind::Rampart.binary());
    cmd.env_remove("RUST_LOG")
        .env_remove("MEMCACHED_PORT_FILENAME")
        .stdin(Stdio::null());
    cmd
}

fn exit_text(status: Option<ExitStatus>) -> String {
    status.map_or_else(
        || "no exit (killed at the bound)".to_string(),
        |s| s.to_string(),
    )
}

/// Waits at most `bound` for `child` to exit.
fn wait_child(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Kills the child on drop unless it has been waited for.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

mod daemon;
mod debian;
mod unit;
