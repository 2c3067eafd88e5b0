//! Starting and stopping the server under test.
//!
//! [`Server::start`] runs the real binary (rampart or upstream memcached, chosen by [`Kind`])
//! with `-l 127.0.0.1:0 -U 0` (and `-u nobody` as root) plus the caller's flags, and `MEMCACHED_PORT_FILENAME` pointing
//! into a fresh temp dir. It is ready once that file names a `TCP INET:` port: both servers
//! write it (to a temp name, then rename) only after they listen, so no test sleeps.
//!
//! memcached note: `-p 0` turns TCP off entirely, but a port inside `-l host:port` overrides
//! `-p`, so `-l 127.0.0.1:0` gives an ephemeral port without touching `-p`.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::io::Conn;
use crate::tempdir::TempDir;

/// How long a server may take to write its port file.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);
/// Read and write timeout of sockets from [`Server::connect`].
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a dead process's output pipes to reach end of file.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often bounded waits look again.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Which binary to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The server under test: `RAMPART_BIN`, else `<workspace>/target/{debug,release}/rampart`.
    Rampart,
    /// The reference: `MEMCACHED_BIN`, else `memcached` on `PATH` (Debian package `memcached`).
    Memcached,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rampart => "rampart",
            Kind::Memcached => "memcached",
        }
    }

    /// The binary's path, or a message saying where it was looked for and how to get it.
    pub fn try_binary(self) -> Result<PathBuf, String> {
        match self {
            Kind::Rampart => find_rampart(),
            Kind::Memcached => find_memcached(),
        }
    }

    /// The binary's path; panics with [`Kind::try_binary`]'s message when it is missing.
    /// A missing binary is a failure, never a skip.
    pub fn binary(self) -> PathBuf {
        self.try_binary().unwrap_or_else(|msg| panic!("{msg}"))
    }

    /// A command running this binary with `-u nobody` when running as root (both servers
    /// refuse root without `-u`) and nothing else.
    pub fn command(self) -> Command {
        let mut cmd = Command::new(self.binary());
        if crate::running_as_root() {
            cmd.args(["-u", "nobody"]);
        }
        cmd.stdin(Stdio::null());
        cmd
    }
}

fn find_rampart() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("RAMPART_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "RAMPART_BIN={} does not exist; build it with `cargo build -p rampart` \
                 or unset RAMPART_BIN",
                path.display()
            ))
        };
    }
    let root = crate::workspace_root();
    let candidates = [
        root.join("target/debug/rampart"),
        root.join("target/release/rampart"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "the rampart binary is missing: set RAMPART_BIN, or run `cargo build -p rampart` \
                 (looked for {} and {}); `cargo xtask ci` builds it and sets RAMPART_BIN",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

/// `VmRSS` of process `pid`, in bytes.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn find_memcached() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("MEMCACHED_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("MEMCACHED_BIN={} does not exist", path.display()))
        };
    }
    find_on_path("memcached").ok_or_else(|| {
        "memcached is not on PATH: install the Debian package `memcached` \
         (`cargo xtask ci` does it when run as root) or set MEMCACHED_BIN"
            .to_string()
    })
}

/// The first executable file called `name` in a `PATH` directory.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Output of a child process, filled by a reader thread while it runs.
#[derive(Debug, Clone, Default)]
struct Captured {
    buf: Arc<Mutex<Vec<u8>>>,
    /// Set by the reader thread when the pipe closes.
    closed: Arc<AtomicBool>,
}

impl Captured {
    fn spawn_reader(from: Option<impl Read + Send + 'static>) -> Captured {
        let captured = Captured::default();
        let Some(mut from) = from else {
            captured.closed.store(true, Ordering::Release);
            return captured;
        };
        let sink = captured.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            // Ends when the child closes its end (exit or kill).
            while let Ok(n) = from.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if let Ok(mut buf) = sink.buf.lock() {
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
            sink.closed.store(true, Ordering::Release);
        });
        captured
    }

    /// Waits at most `bound` for the pipe to close, so that output printed just before an
    /// exit is not missed.
    fn drain(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        while !self.closed.load(Ordering::Acquire) && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn text(&self) -> String {
        match self.buf.lock() {
            Ok(buf) => String::from_utf8_lossy(&buf).into_owned(),
            Err(_) => String::from("<output lock poisoned>"),
        }
    }
}

/// A running server on 127.0.0.1; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Server {
    kind: Kind,
    child: Child,
    port: u16,
    args: Vec<String>,
    exit: Option<ExitStatus>,
    stdout: Captured,
    stderr: Captured,
    // Holds the port file; removed after the child is gone (fields drop after `drop`).
    _dir: TempDir,
}

impl Server {
    /// Starts `kind` with `extra_args` after the harness's own flags and waits for it to
    /// listen. Panics with the server's output when it does not become ready.
    pub fn start(kind: Kind, extra_args: &[&str]) -> Server {
        Server::try_start(kind, extra_args).unwrap_or_else(|msg| panic!("{msg}"))
    }

    /// Like [`Server::start`], returning the failure (with the server's output) instead.
    pub fn try_start(kind: Kind, extra_args: &[&str]) -> Result<Server, String> {
        Server::try_start_from(kind, kind.command(), extra_args)
    }

    /// Like [`Server::start`], under `prlimit --as=<address_space_bytes>`: a server whose
    /// memory runs away fails its allocation (and the test) at once instead of exhausting the
    /// machine.
    pub fn start_limited(kind: Kind, address_space_bytes: u64, extra_args: &[&str]) -> Server {
        let prlimit = find_on_path("prlimit")
            .unwrap_or_else(|| panic!("prlimit is not on PATH (Debian package util-linux)"));
        let mut cmd = Command::new(prlimit);
        cmd.arg(format!("--as={address_space_bytes}"))
            .arg("--")
            .arg(kind.binary());
        if crate::running_as_root() {
            cmd.args(["-u", "nobody"]);
        }
        cmd.stdin(Stdio::null());
        Server::try_start_from(kind, cmd, extra_args).unwrap_or_else(|msg| panic!("{msg}"))
    }

    /// Like [`Server::try_start`] with `env` set for the server (`MEMCACHED_SASL_PWDB`).
    pub fn try_start_with_env(
        kind: Kind,
        env: &[(&str, &std::ffi::OsStr)],
        extra_args: &[&str],
    ) -> Result<Server, String> {
        let mut cmd = kind.command();
        for (name, value) in env {
            cmd.env(name, value);
        }
        Server::try_start_from(kind, cmd, extra_args)
    }

    /// Resident memory of the server process now (`VmRSS`), in bytes; `None` once it is gone.
    pub fn resident_bytes(&self) -> Option<u64> {
        resident_bytes(self.pid())
    }

    /// Like [`Server::start`] but without the `-u nobody` the harness adds as root: the
    /// server is started exactly as an operator typing its name would start it.
    pub fn start_as_invoked(kind: Kind, extra_args: &[&str]) -> Server {
        let mut cmd = Command::new(kind.binary());
        cmd.stdin(Stdio::null());
        Server::try_start_from(kind, cmd, extra_args).unwrap_or_else(|msg| panic!("{msg}"))
    }

    fn try_start_from(kind: Kind, mut cmd: Command, extra_args: &[&str]) -> Result<Server, String> {
        let binary = kind.try_binary()?;
        let dir = TempDir::new().map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let port_file = dir.path().join("ports");
        cmd.args(["-l", "127.0.0.1:0", "-U", "0"])
            .args(extra_args)
            .env("MEMCACHED_PORT_FILENAME", &port_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let stdout = Captured::spawn_reader(child.stdout.take());
        let stderr = Captured::spawn_reader(child.stderr.take());
        let mut server = Server {
            kind,
            child,
            port: 0,
            args,
            exit: None,
            stdout,
            stderr,
            _dir: dir,
        };
        server.port = server.wait_for_port_file(&port_file)?;
        Ok(server)
    }

    fn wait_for_port_file(&mut self, port_file: &Path) -> Result<u16, String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(port) = read_port_file(port_file) {
                return Ok(port);
            }
            if let Some(status) = self.try_wait() {
                self.drain_output();
                return Err(format!(
                    "{} exited with {status} before listening\n{}",
                    self.kind.name(),
                    self.diagnostics()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not write {} within {READY_TIMEOUT:?}\n{}",
                    self.kind.name(),
                    port_file.display(),
                    self.diagnostics()
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new connection with read and write timeouts of [`SOCKET_TIMEOUT`] and no Nagle
    /// delay (so split writes really arrive split).
    pub fn connect(&self) -> TcpStream {
        self.try_connect()
            .unwrap_or_else(|e| panic!("connect to {}: {e}\n{}", self.port, self.diagnostics()))
    }

    /// [`Server::connect`] wrapped in a [`Conn`] for bounded reads.
    pub fn conn(&self) -> Conn {
        Conn::new(self.connect())
    }

    pub fn try_connect(&self) -> std::io::Result<TcpStream> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let stream = TcpStream::connect_timeout(&addr, SOCKET_TIMEOUT)?;
        stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
        stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// What the server printed to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// What the server printed to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Command line, exit status and output, for failure messages.
    pub fn diagnostics(&self) -> String {
        let exit = match self.exit {
            Some(status) => status.to_string(),
            None => "still running".to_string(),
        };
        format!(
            "--- {} {} ({exit})\n--- stdout:\n{}\n--- stderr:\n{}",
            self.kind.name(),
            self.args.join(" "),
            self.stdout(),
            self.stderr()
        )
    }

    /// After the process exited: waits (bounded) until its output has been read to the end.
    pub fn drain_output(&self) {
        self.stdout.drain(DRAIN_TIMEOUT);
        self.stderr.drain(DRAIN_TIMEOUT);
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) unless the process has already been reaped.
    pub fn signal(&mut self, signal: libc::c_int) {
        if self.try_wait().is_some() {
            return;
        }
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child, which
        // has not been reaped (try_wait returned None), so it cannot have been reused.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// The exit status if the process has exited (reaping it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits at most `bound` for the process to exit.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// SIGTERM, then at most [`TERM_GRACE`] for the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait_exit(TERM_GRACE)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.terminate().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `TCP INET: <port>` line of a port file, once the file exists.
fn read_port_file(path: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("TCP INET:"))
        .and_then(|port| port.trim().parse().ok())
}

/// How a process run by [`run_bounded`] ended.
#[derive(Debug)]
pub struct Finished {
    /// `None` when it outlived the bound and was killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion, killing it after `bound`; stdout and stderr are captured.
pub fn run_bounded(mut cmd: Command, bound: Duration) -> Finished {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let program = format!("{:?}", cmd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = Captured::spawn_reader(child.stdout.take());
    let stderr = Captured::spawn_reader(child.stderr.take());
    let deadline = Instant::now() + bound;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    stdout.drain(DRAIN_TIMEOUT);
    stderr.drain(DRAIN_TIMEOUT);
    Finished {
        status,
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

/// rampart on a unix socket only ([`Server`] waits for a TCP port file, which a server with
/// `-s` never writes). Killed on drop.
#[derive(Debug)]
pub struct UnixServer(std::process::Child);

impl UnixServer {
    /// Starts rampart with `args` (which include `-s <socket>`) and waits, bounded, until
    /// `socket` accepts connections.
    pub fn start(args: &[&str], socket: &Path) -> UnixServer {
        let child = Kind::Rampart
            .command()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rampart");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "rampart did not listen on {socket:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        UnixServer(child)
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
