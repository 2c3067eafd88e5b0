//! What the perf crate's integration tests share: upstream memcached as a child process, a
//! temp directory, a throwaway certificate, and the short run they all make.

// Tests may unwrap: a failure is a panic with the error in it either way.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509, X509NameBuilder};

use rampart_perf::{Config, Report, Stop};

/// How long memcached may take to start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A memcached process on 127.0.0.1, killed when dropped.
pub struct Memcached {
    child: Child,
    port: u16,
    // Holds the port file until memcached is gone (fields drop after `drop`).
    _dir: TempDir,
}

impl Memcached {
    pub fn start(extra_args: &[&str]) -> Memcached {
        let binary = memcached_binary();
        let dir = TempDir::new();
        let port_file = dir.path().join("ports");
        let port = free_port();
        let mut cmd = Command::new(&binary);
        cmd.args(["-U", "0", "-l", "127.0.0.1", "-p", &port.to_string()]);
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // memcached refuses to run as root without -u.
            cmd.args(["-u", "nobody"]);
        }
        cmd.args(extra_args)
            .env("MEMCACHED_PORT_FILENAME", &port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let mut server = Memcached {
            child,
            port,
            _dir: dir,
        };
        server.wait_until_listening(&port_file);
        server
    }

    /// memcached writes the port file (to a temp name, then renamed) once it listens.
    fn wait_until_listening(&mut self, port_file: &Path) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(port_file)
                && text.contains("TCP INET:")
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "memcached exited with {status} before listening on {}",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "memcached did not listen on {} within {READY_TIMEOUT:?}",
                self.port
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `MEMCACHED_BIN`, else `/usr/bin/memcached`, else `memcached` on `PATH`. Missing is a
/// failure, never a skip.
pub fn memcached_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MEMCACHED_BIN") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("memcached"))
            .find(|candidate| candidate.is_file())
    });
    [PathBuf::from("/usr/bin/memcached")]
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "memcached is not installed: install the Debian package `memcached` \
                 (`cargo xtask ci` installs it) or set MEMCACHED_BIN"
            )
        })
}

/// A port nobody listens on right now: bind port 0, read it, close.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory under the system temp dir, removed when dropped; writable by `nobody`, which
/// memcached runs as once it has bound its port and then writes the port file.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "rampart-perf-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        set_mode(&path, 0o777);
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A short run with two connections on one thread.
pub fn config(address: String) -> Config {
    Config {
        server: address,
        connections: 2,
        pipeline: 4,
        keys: 500,
        value_size: 100,
        get_ratio: 0.9,
        prepopulate: true,
        stop: Stop::Duration(Duration::from_secs(1)),
        threads: 1,
        ..Config::default()
    }
}

pub fn assert_clean_with_hits(report: &Report) {
    assert!(report.ops > 0, "{report:#?}");
    assert_eq!(report.errors_total, 0, "{report:#?}");
    assert!(report.clean, "{report:#?}");
    assert!(report.hits > 0, "{report:#?}");
    // Every key was set before measuring and nothing is evicted at this size.
    assert_eq!(report.misses, 0, "{report:#?}");
    assert_eq!(report.prepopulated, 500, "{report:#?}");
    assert_eq!(report.ops, report.gets + report.sets, "{report:#?}");
}

/// A throwaway P-256 certificate for 127.0.0.1, written as PEM; returns (cert, key).
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_issuer_name(&name).unwrap();
    builder.set_pubkey(&key).unwrap();
    builder
        .set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&builder.x509v3_context(None, None))
        .unwrap();
    builder.append_extension(san).unwrap();
    builder.sign(&key, MessageDigest::sha256()).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, builder.build().to_pem().unwrap()).unwrap();
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    // memcached reads them as `nobody`; the key is a test's throwaway.
    set_mode(&cert_path, 0o644);
    set_mode(&key_path, 0o644);
    (cert_path, key_path)
}
