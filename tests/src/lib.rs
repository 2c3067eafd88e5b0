//! Integration-test harness for rampart: starts the real `rampart` binary, or upstream
//! `memcached` as the reference, on an ephemeral 127.0.0.1 port and talks to it over TCP
//! the way a client would.
//!
//! What lives here:
//! - [`server`]: [`Server::start`] spawns either binary with the same flags, waits for
//!   readiness from the port file (`MEMCACHED_PORT_FILENAME`, never a sleep), captures its
//!   output and stops it on drop.
//! - [`cores`]: which core owns a key and which core a connection is on (`-t` tests).
//! - [`io`]: bounded reads (until a terminator, until the peer closes) and writes.
//! - [`transcript`], [`replay`], [`normalise`], [`report`]: the differential suite's data
//!   format, its step protocol, the one list of reply normalisations, and the mismatch report.
//! - [`binary`]: the same for the binary protocol, with requests built as packets.
//!
//! - [`tls`]: a test PKI generated per test, and a bounded OpenSSL client.
//! - [`python`]: Python client scripts as drivers, and suites compared between the servers.
//!
//! Dependencies: std, `libc` (signals, euid), `memchr`, and `openssl` (the TLS tests' PKI and
//! client). It does not depend on any rampart
//! crate on purpose: the binary is tested only from outside, through its sockets and exit
//! status, so these tests hold for any implementation.
//!
//! Every wait is bounded in time; every server binds 127.0.0.1 only; every test starts its own
//! servers, so tests run in parallel.

pub mod binary;
pub mod clients;
pub mod cores;
pub mod io;
pub mod normalise;
pub mod python;
pub mod replay;
pub mod report;
pub mod sasl;
pub mod scaleout;
pub mod server;
pub mod tempdir;
pub mod tls;
pub mod transcript;

pub use server::{Kind, Server, UnixServer};

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this package's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// This package's directory (`<workspace>/tests`), where transcripts and scripts live.
pub fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True when running as root, where both servers refuse to start without `-u`.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Makes `path` belong to `nobody` when running as root: the servers run as `nobody` then
/// (`-u nobody`) and read their files again on SIGHUP after dropping privileges, as an
/// operator's files would be the `-u` user's. Does nothing otherwise.
pub fn give_to_nobody(path: &Path) {
    if !running_as_root() {
        return;
    }
    let name = std::ffi::CString::new("nobody").expect("no NUL in a constant");
    // SAFETY: getpwnam reads a NUL-terminated name; the result is checked before use.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!entry.is_null(), "no nobody account");
    // SAFETY: `entry` is a valid passwd record returned above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    let c_path =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("a path without NUL");
    // SAFETY: a NUL-terminated path and ids from the passwd record.
    assert_eq!(
        unsafe { libc::chown(c_path.as_ptr(), uid, gid) },
        0,
        "chown {path:?}"
    );
}

/// Writes `text` to `dir/name` with permissions `mode` (policy, credential and key files the
/// server checks), returning the path.
pub fn write_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    path
}

/// A temporary path as a command-line argument.
pub fn path_arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// A text connection that sent memcached's ASCII auth (`set auth 0 0 <n>` with
/// `<user> <password>`), and the server's reply to it.
pub fn ascii_auth(port: u16, user: &str, password: &str) -> (io::Conn, Vec<u8>) {
    let stream = tls::tcp_connect(port).unwrap_or_else(|e| panic!("connect to {port}: {e}"));
    let mut conn = io::Conn::new(stream);
    let token = format!("{user} {password}");
    let line = format!("set auth 0 0 {}\r\n{token}\r\n", token.len());
    let reply = conn.roundtrip(line.as_bytes(), b"\r\n");
    (conn, reply)
}
