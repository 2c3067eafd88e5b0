//! Scale-out support: a [`Cluster`] of servers whose instances can be stopped and started
//! again on the same port, [`Nutcracker`] (twemproxy) in front of a cluster, and
//! [`run_conducted`], a client script that pauses at cues for the test to change the cluster.
//!
//! Ports: a cluster's instances first get ephemeral ports from the harness; an instance
//! started again, or another server kind's cluster on the same ports, adds
//! `-l 127.0.0.1:<port>` (both servers listen on every `-l` given, and set `SO_REUSEADDR`, so
//! the port is free again as soon as the old process has exited). Client-side hashing hashes
//! `host:port`, so equal ports mean equal key placement for both server kinds.
//!
//! nutcracker has no "port 0": its listen port is found by binding 127.0.0.1:0 and releasing
//! it, so another process may take it first; a start that fails is retried on new ports, a
//! bounded number of times. Readiness is nutcracker's own listening socket in `/proc`, not a
//! connect (which another process on that port would also accept) and never a sleep.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::io::Conn;
use crate::server::{Finished, find_on_path};
use crate::tempdir::TempDir;
use crate::tls::{listening_ports, tcp_connect};
use crate::{Kind, Server};

/// How many times a server or nutcracker start is tried on a port another process took.
const START_ATTEMPTS: u32 = 5;
/// How long nutcracker may take to listen.
const NUTCRACKER_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long nutcracker may take to exit after SIGTERM before it gets SIGKILL.
const NUTCRACKER_TERM_GRACE: Duration = Duration::from_secs(5);
/// How long a conducted script's stderr may take to reach end of file after it exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Instances of one server kind on fixed 127.0.0.1 ports.
#[derive(Debug)]
pub struct Cluster {
    kind: Kind,
    args: Vec<String>,
    ports: Vec<u16>,
    /// `None` while an instance is stopped.
    servers: Vec<Option<Server>>,
}

impl Cluster {
    /// `count` instances of `kind` with `args`, each on an ephemeral port.
    pub fn start(kind: Kind, count: usize, args: &[&str]) -> Cluster {
        let servers: Vec<Server> = (0..count).map(|_| Server::start(kind, args)).collect();
        Cluster {
            kind,
            args: args.iter().map(|a| a.to_string()).collect(),
            ports: servers.iter().map(Server::port).collect(),
            servers: servers.into_iter().map(Some).collect(),
        }
    }

    /// Instances of `kind` on `ports` (those of a cluster that has been dropped).
    pub fn start_on(kind: Kind, ports: &[u16], args: &[&str]) -> Cluster {
        let mut cluster = Cluster {
            kind,
            args: args.iter().map(|a| a.to_string()).collect(),
            ports: ports.to_vec(),
            servers: ports.iter().map(|_| None).collect(),
        };
        for index in 0..ports.len() {
            cluster.start_instance(index);
        }
        cluster
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The port clients use for each instance.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The ports as the scripts take them: `p0,p1,p2`.
    pub fn ports_arg(&self) -> String {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        ports.join(",")
    }

    /// Stops instance `index` with SIGTERM; panics unless it exits within the grace time.
    pub fn stop(&mut self, index: usize) {
        let mut server = self.servers[index]
            .take()
            .unwrap_or_else(|| panic!("instance {index} is not running"));
        if server.terminate().is_none() {
            panic!(
                "instance {index} did not exit on SIGTERM\n{}",
                server.diagnostics()
            );
        }
    }

    /// Starts instance `index` again on its port.
    pub fn start_instance(&mut self, index: usize) {
        assert!(self.servers[index].is_none(), "instance {index} is running");
        let listen = format!("127.0.0.1:{}", self.ports[index]);
        let mut args: Vec<&str> = vec!["-l", &listen];
        args.extend(self.args.iter().map(String::as_str));
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Server::try_start(self.kind, &args) {
                Ok(server) => {
                    self.servers[index] = Some(server);
                    return;
                }
                Err(msg) => failures.push(msg),
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} would not start on port {} ({START_ATTEMPTS} attempts):\n{}",
            self.kind.name(),
            self.ports[index],
            failures.join("\n")
        );
    }

    /// A connection to instance `index` on its client port, bypassing any proxy.
    pub fn conn(&self, index: usize) -> Conn {
        let port = self.ports[index];
        Conn::new(tcp_connect(port).unwrap_or_else(|e| {
            panic!(
                "connect to instance {index} on {port}: {e}\n{}",
                self.diagnostics()
            )
        }))
    }

    /// Every running instance's command line and output.
    pub fn diagnostics(&self) -> String {
        self.servers
            .iter()
            .flatten()
            .map(Server::diagnostics)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `NUTCRACKER_BIN`, else `/usr/sbin/nutcracker` (where Debian puts it), else `PATH`.
pub fn nutcracker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NUTCRACKER_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "NUTCRACKER_BIN={} does not exist (twemproxy is the Debian package `nutcracker`)",
            path.display()
        );
        return path;
    }
    let debian = PathBuf::from("/usr/sbin/nutcracker");
    if debian.is_file() {
        return debian;
    }
    find_on_path("nutcracker").unwrap_or_else(|| {
        panic!(
            "nutcracker (twemproxy) is missing: install the Debian package `nutcracker` \
             (`cargo xtask ci` does it when run as root) or set NUTCRACKER_BIN"
        )
    })
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// The nutcracker configuration of one memcache pool on `listen` over `backends`.
pub fn nutcracker_config(listen: u16, backends: &[u16]) -> String {
    let mut yaml = format!(
        "rampart:\n  listen: 127.0.0.1:{listen}\n  hash: fnv1a_64\n  distribution: ketama\n  \
         timeout: 5000\n  auto_eject_hosts: false\n  servers:\n"
    );
    for port in backends {
        yaml.push_str(&format!("   - 127.0.0.1:{port}:1\n"));
    }
    yaml
}

/// twemproxy running one memcache pool; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Nutcracker {
    child: Child,
    port: u16,
    config: String,
    log: PathBuf,
    // Holds the configuration and the log; removed after the child is gone.
    _dir: TempDir,
}

impl Nutcracker {
    /// nutcracker with [`nutcracker_config`] over `backends`, on free ports, once it listens.
    pub fn start(backends: &[u16]) -> Nutcracker {
        let binary = nutcracker_binary();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Nutcracker::try_start(&binary, backends) {
                Ok(proxy) => return proxy,
                Err(msg) => failures.push(msg),
            }
        }
        panic!(
            "nutcracker would not start ({START_ATTEMPTS} attempts):\n{}",
            failures.join("\n")
        );
    }

    fn try_start(binary: &Path, backends: &[u16]) -> Result<Nutcracker, String> {
        let dir = TempDir::new().map_err(|e| format!("temp dir: {e}"))?;
        let (port, stats_port) = (free_port(), free_port());
        let config = nutcracker_config(port, backends);
        let conf_path = crate::write_file(dir.path(), "nutcracker.yml", &config, 0o644);
        let log = dir.path().join("nutcracker.log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .args(["-s", &stats_port.to_string(), "-a", "127.0.0.1", "-o"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let mut proxy = Nutcracker {
            child,
            port,
            config,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + NUTCRACKER_READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                return Err(format!(
                    "nutcracker exited with {status}\n{}",
                    proxy.diagnostics()
                ));
            }
            if listening_ports(proxy.child.id()).contains(&port) {
                return Ok(proxy);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "nutcracker did not listen on {port} within {NUTCRACKER_READY_TIMEOUT:?}\n{}",
                    proxy.diagnostics()
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client connection to the proxy.
    pub fn conn(&self) -> Conn {
        Conn::new(tcp_connect(self.port).unwrap_or_else(|e| {
            panic!(
                "connect to nutcracker on {}: {e}\n{}",
                self.port,
                self.diagnostics()
            )
        }))
    }

    /// Its configuration and log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!(
            "--- nutcracker.yml:\n{}--- nutcracker.log:\n{log}",
            self.config
        )
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id())
            && matches!(self.child.try_wait(), Ok(None))
        {
            // SAFETY: kill has no memory-safety preconditions; the pid is our own child,
            // not yet reaped (try_wait returned None), so it cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + NUTCRACKER_TERM_GRACE;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` (a script using `scaleout_common.cue`) to completion within `bound`. Each
/// stdout line starting with `@` is a cue: `on_cue` gets the rest of the line and acts, and
/// the script is answered `ok`; the other lines are the result. Panics with everything the
/// script printed when it fails, outlives `bound`, or `on_cue` fails.
pub fn run_conducted(
    mut cmd: Command,
    bound: Duration,
    mut on_cue: impl FnMut(&str) -> Result<(), String>,
) -> Finished {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let (err_tx, err_rx) = mpsc::channel::<String>();
    let mut stderr = child.stderr.take().expect("piped stderr");
    thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = err_tx.send(text);
    });
    let deadline = Instant::now() + bound;
    let mut out = String::new();
    let mut failure = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => match line.strip_prefix('@') {
                Some(what) => {
                    if let Err(msg) = on_cue(what) {
                        failure = Some(format!("cue {what:?} failed: {msg}"));
                        break;
                    }
                    if writeln!(stdin, "ok").and_then(|()| stdin.flush()).is_err() {
                        failure = Some(format!("the script stopped reading at cue {what:?}"));
                        break;
                    }
                }
                None => {
                    out.push_str(&line);
                    out.push('\n');
                }
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                failure = Some(format!("still running after {bound:?}"));
                break;
            }
        }
    }
    drop(stdin);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if failure.is_none() && Instant::now() < deadline => {
                thread::sleep(POLL_INTERVAL)
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stderr = err_rx.recv_timeout(DRAIN_TIMEOUT).unwrap_or_default();
    let finished = Finished {
        status,
        stdout: out,
        stderr,
    };
    let ok = failure.is_none() && finished.status.is_some_and(|s| s.success());
    if !ok {
        panic!(
            "{program}: {}; exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            failure.as_deref().unwrap_or("failed"),
            finished.status,
            finished.stdout,
            finished.stderr
        );
    }
    finished
}
