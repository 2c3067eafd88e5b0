//! The two servers under test, and the floor server that measures what any server must spend,
//! as child processes: started pinned (the two servers with identical flags), ready once
//! their port file names a port, and sampled through `/proc/<pid>/{stat,status}`.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// How long a server may take to write its port file.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How much of a server's output an error quotes.
const MAX_LOG_CHARS: usize = 2000;
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Memcached,
    Rampart,
    /// `rampart-floor` (`rampart_perf::floor`): the smallest correct server for the workload.
    Floor,
}

impl Kind {
    /// The servers compared.
    pub const BOTH: [Kind; 2] = [Kind::Memcached, Kind::Rampart];
    /// Everything the closed loop measures: the servers and the floor.
    pub const WITH_FLOOR: [Kind; 3] = [Kind::Memcached, Kind::Rampart, Kind::Floor];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Memcached => "memcached",
            Kind::Rampart => "rampart",
            Kind::Floor => "floor",
        }
    }
}

/// What both servers get: the same binary flags apart from the binary itself.
#[derive(Debug, Clone)]
pub struct Launch {
    pub memcached: PathBuf,
    pub rampart: PathBuf,
    pub floor: PathBuf,
    /// The plaintext floor is `rampart-floor --io-uring` (`--floor-io-uring`).
    pub floor_io_uring: bool,
    /// CPU list for `taskset -c`.
    pub server_cpu: usize,
    pub memory_mib: usize,
    pub certs: Certs,
    /// Scratch directory for port files and server output.
    pub dir: PathBuf,
}

/// Throwaway PEM files made by [`Certs::generate`].
#[derive(Debug, Clone)]
pub struct Certs {
    pub ca: PathBuf,
    pub chain: PathBuf,
    pub key: PathBuf,
}

/// A running server; killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub port: u16,
    /// Its stdout and stderr.
    log: PathBuf,
}

/// CPU time and memory of a process at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    /// Peak resident set (VmHWM).
    pub hwm_kib: u64,
    /// Threads of the process.
    pub threads: u64,
}

impl Certs {
    /// A CA and a server certificate for 127.0.0.1 (IP SAN) signed by it, with the `openssl`
    /// command line, into `dir`. The keys are readable by all: the servers drop to `nobody`.
    pub fn generate(dir: &Path) -> Result<Certs> {
        let certs = Certs {
            ca: dir.join("ca.pem"),
            chain: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        let ca_key = dir.join("ca.key");
        let csr = dir.join("server.csr");
        let ext = dir.join("server.ext");
        fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )?;
        let p = |path: &Path| path.to_string_lossy().into_owned();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=rampart bench CA",
            "-keyout",
            &p(&ca_key),
            "-out",
            &p(&certs.ca),
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &p(&certs.key),
            "-out",
            &p(&csr),
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&certs.ca),
            "-CAkey",
            &p(&ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p(&ext),
            "-out",
            &p(&certs.chain),
        ])?;
        for path in [&certs.ca, &certs.chain, &certs.key] {
            set_mode(path, 0o644)?;
        }
        Ok(certs)
    }
}

fn openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("cannot run openssl (needed for the benchmark's throwaway certificates)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A fresh directory under the system's temporary one, `<name>-<pid>`, that the servers may
/// write their port files into after dropping to `nobody` (as root).
pub fn scratch_dir(name: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    set_mode(&dir, 0o777)?;
    Ok(dir)
}

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

impl Launch {
    /// Starts `kind` pinned to the server CPU with one thread, the memory limit, and TLS when
    /// asked (the same flags and files for both servers; the floor gets the same certificate
    /// and nothing else); returns once it listens. An error quotes the command line and the
    /// server's output.
    pub fn start(&self, kind: Kind, tls: bool) -> Result<Server> {
        self.start_with(kind, tls, self.memory_mib)
    }

    /// [`Launch::start`] with `-m memory_mib` instead of the benchmark's limit.
    pub fn start_with(&self, kind: Kind, tls: bool, memory_mib: usize) -> Result<Server> {
        self.start_options(kind, tls, memory_mib, None)
    }

    /// [`Launch::start`] with `-o <options>` too (rampart and memcached only).
    pub fn start_options(
        &self,
        kind: Kind,
        tls: bool,
        memory_mib: usize,
        options: Option<&str>,
    ) -> Result<Server> {
        self.start_args(kind, tls, memory_mib, options, &[])
    }

    /// [`Launch::start_options`] with further flags after the common ones (rampart and
    /// memcached only: `-Y <file>`).
    pub fn start_args(
        &self,
        kind: Kind,
        tls: bool,
        memory_mib: usize,
        options: Option<&str>,
        args: &[&OsStr],
    ) -> Result<Server> {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(self.server_cpu.to_string())
            .arg(self.binary(kind));
        if kind == Kind::Floor {
            cmd.args(["--listen", "127.0.0.1:0"]);
            if self.floor_io_uring && !tls {
                cmd.arg("--io-uring");
            }
            if tls {
                cmd.arg("--cert")
                    .arg(&self.certs.chain)
                    .arg("--key")
                    .arg(&self.certs.key);
            }
        } else {
            cmd.args(["-t", "1", "-U", "0", "-l", "127.0.0.1:0"])
                .arg("-m")
                .arg(memory_mib.to_string());
            if crate::is_root() {
                cmd.args(["-u", "nobody"]);
            }
            if tls {
                cmd.arg("-Z").arg("-o").arg(format!(
                    "ssl_chain_cert={},ssl_key={}",
                    self.certs.chain.display(),
                    self.certs.key.display()
                ));
            }
            if let Some(options) = options {
                cmd.arg("-o").arg(options);
            }
            cmd.args(args);
        }
        self.spawn(kind, cmd)
    }

    /// Starts `kind` as a newcomer would: its default flags, plaintext, with only the
    /// listening address given (127.0.0.1, a port the kernel picks) and, as root, the user to
    /// drop to, which both servers refuse to run without; confined to `cpus` (`taskset -c`),
    /// which is all a server's defaults see (rampart's default `-t` is one per allowed CPU).
    pub fn start_defaults(&self, kind: Kind, cpus: &[usize]) -> Result<Server> {
        self.spawn(kind, self.defaults_command(kind, cpus))
    }

    /// The command line of [`Launch::start_defaults`].
    pub fn defaults_command(&self, kind: Kind, cpus: &[usize]) -> Command {
        let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(list.join(",")).arg(self.binary(kind));
        if kind == Kind::Floor {
            cmd.args(["--listen", "127.0.0.1:0"]);
            if self.floor_io_uring {
                cmd.arg("--io-uring");
            }
        } else {
            cmd.args(["-l", "127.0.0.1:0"]);
            if crate::is_root() {
                cmd.args(["-u", "nobody"]);
            }
        }
        cmd
    }

    fn binary(&self, kind: Kind) -> &Path {
        match kind {
            Kind::Memcached => &self.memcached,
            Kind::Rampart => &self.rampart,
            Kind::Floor => &self.floor,
        }
    }

    /// Runs `cmd` with its output to a log file and returns once its port file names a port.
    /// An error quotes the command line and the server's output.
    fn spawn(&self, kind: Kind, mut cmd: Command) -> Result<Server> {
        let name = format!("{}-{}", kind.name(), std::process::id());
        let port_file = self.dir.join(format!("{name}.port"));
        let log_file = self.dir.join(format!("{name}.log"));
        let _ = fs::remove_file(&port_file);
        let log = fs::File::create(&log_file).and_then(|f| Ok((f.try_clone()?, f)))?;
        cmd.env("MEMCACHED_PORT_FILENAME", &port_file)
            .stdin(Stdio::null())
            .stdout(log.0)
            .stderr(log.1);
        let rendered = crate::render(&cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {rendered}"))?;
        let mut server = Server {
            child,
            port: 0,
            log: log_file,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(port) = read_port_file(&port_file) {
                server.port = port;
                return Ok(server);
            }
            if let Some(exit) = server.exited() {
                bail!("{} did not start: `{rendered}` {exit}", kind.name());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not start: `{rendered}` did not write {} within {READY_TIMEOUT:?}; \
                     its output:\n{}",
                    kind.name(),
                    port_file.display(),
                    server.output()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

/// The first `TCP INET: <port>` line of a port file.
fn read_port_file(path: &Path) -> Option<u16> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("TCP INET: "))
        .and_then(|port| port.trim().parse().ok())
}

impl Server {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn sample(&self) -> Result<Sample> {
        sample(self.child.id())
    }

    /// `Some("exited with <status>; its output: ...")` once the process has ended.
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        Some(format!(
            "exited with {status}; its output:\n{}",
            self.output()
        ))
    }

    /// The end of what the server printed.
    fn output(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let skip = text.chars().count().saturating_sub(MAX_LOG_CHARS);
        text.chars().skip(skip).collect()
    }

    /// `curr_items` from a plaintext `stats` command.
    pub fn curr_items(&self) -> Result<u64> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut conn = TcpStream::connect_timeout(&addr, STATS_TIMEOUT)?;
        conn.set_read_timeout(Some(STATS_TIMEOUT))?;
        conn.write_all(b"stats\r\n")?;
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while !text.ends_with(b"END\r\n") {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                bail!("the server closed the connection during `stats`");
            }
            text.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&text)
            .lines()
            .find_map(|line| line.strip_prefix("STAT curr_items "))
            .and_then(|n| n.trim().parse().ok())
            .context("`stats` has no curr_items")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime from `/proc/<pid>/stat` (summed over the process's threads by the kernel),
/// VmRSS, VmHWM and Threads from `/proc/<pid>/status`.
fn sample(pid: u32) -> Result<Sample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields after its ')' are fixed.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("malformed /proc/<pid>/stat")
    };
    let cpu_ticks = tick(11)? + tick(12)?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("/proc/{pid}/status has no {name}"))
    };
    Ok(Sample {
        cpu_ticks,
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        threads: field("Threads:")?,
    })
}

/// Clock ticks per second, from `getconf` (xtask stays free of libc and unsafe).
pub fn clock_ticks_per_s() -> Result<u64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK printed no number")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_exits_at_once_is_an_error_quoting_its_output() {
        if !crate::on_path("taskset") {
            return;
        }
        let dir = std::env::temp_dir().join(format!("bench-tls-start-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let refuses = dir.join("refuses");
        fs::write(
            &refuses,
            "#!/bin/sh\necho 'cannot load the certificate' >&2\nexit 64\n",
        )
        .expect("script");
        set_mode(&refuses, 0o755).expect("chmod");
        let launch = Launch {
            memcached: refuses.clone(),
            rampart: refuses.clone(),
            floor: refuses,
            floor_io_uring: false,
            server_cpu: 0,
            memory_mib: 64,
            certs: Certs {
                ca: dir.join("ca.pem"),
                chain: dir.join("server.pem"),
                key: dir.join("server.key"),
            },
            dir: dir.clone(),
        };
        let error = format!(
            "{:#}",
            launch.start(Kind::Rampart, true).expect_err("exits")
        );
        let _ = fs::remove_dir_all(&dir);
        assert!(error.contains("rampart did not start"), "{error}");
        assert!(error.contains("-Z -o ssl_chain_cert="), "{error}");
        assert!(error.contains("cannot load the certificate"), "{error}");
    }

    #[test]
    fn our_own_process_can_be_sampled() {
        let s = sample(std::process::id()).expect("sample self");
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
        assert!(s.threads >= 1);
    }
}
