//! Authentication (`-Y`, `-S`): memcached's ASCII auth answered byte for byte as memcached
//! 1.6.18 answers it, every listener and protocol closed to unauthenticated clients, real
//! clients (pymemcache's ASCII auth, python-binary-memcached's SASL PLAIN, over TLS and not),
//! hashed entries from `rampart passwd`, what hostile clients get before authenticating, and
//! the start-up checks of the credential files.

use std::ffi::OsStr;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openssl::hash::MessageDigest;

use rampart_tests::io::{Conn, End};
use rampart_tests::python::{self, require_module, run_script};
use rampart_tests::sasl::{self, packet};
use rampart_tests::tempdir::TempDir;
use rampart_tests::tls::{Pki, parse_stats, second_port, tcp_connect};
use rampart_tests::{Kind, Server, UnixServer, path_arg, write_file};

const UNAUTHENTICATED: &[u8] = b"CLIENT_ERROR unauthenticated\r\n";
const AUTH_LINE: &[u8] = b"set auth 0 0 12\r\nalice secret\r\n";
const BOUND: Duration = Duration::from_secs(5);
/// How long a reply may pause before it is taken as complete, in the differential cases
/// (whose replies have no common terminator).
const QUIET: Duration = Duration::from_millis(400);

/// Sends `bytes` on a fresh connection and reads until the server is quiet for [`QUIET`] or
/// closes (`<EOF>` is appended then).
fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut stream = quiet_tcp(port);
    stream.write_all(bytes).expect("send");
    read_quiet(&mut stream)
}

fn read_quiet(stream: &mut impl Read) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => {
                got.extend_from_slice(b"<EOF>");
                break;
            }
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => {
                got.extend_from_slice(b"<EOF>");
                break;
            }
        }
    }
    got
}

fn quiet_tcp(port: u16) -> std::net::TcpStream {
    let stream = tcp_connect(port).expect("connect");
    stream.set_read_timeout(Some(QUIET)).expect("timeout");
    stream
}

/// memcached 1.6.18 with `-Y` and rampart with `-Y` answer each case, sent alone on a fresh
/// connection, with the same bytes. (Differences by design are tested below: rampart answers
/// every pipelined request before authentication where memcached answers the first and waits,
/// and refuses a data block over 4 KiB instead of waiting for it.)
#[test]
fn ascii_auth_answers_as_memcached_does() {
    let dir = TempDir::new().expect("temp dir");
    let text = "alice:secret\nbob:pa:ss\n";
    // memcached reads its file after dropping privileges and checks no permissions.
    let for_memcached = write_file(dir.path(), "memcached-users", text, 0o644);
    let for_rampart = write_file(dir.path(), "rampart-users", text, 0o600);
    let memcached = Server::start(Kind::Memcached, &["-Y", path_arg(&for_memcached)]);
    let rampart = Server::start(Kind::Rampart, &["-Y", path_arg(&for_rampart)]);
    let long_token = [&b"set a 0 0 2000\r\n"[..], &[b'x'; 2000], b"\r\n"].concat();
    let long_password = [&b"set a 0 0 300\r\nalice "[..], &[b'y'; 294], b"\r\n"].concat();
    let cases: Vec<&[u8]> = vec![
        b"get k\r\n",
        b"version\r\n",
        b"mg k v\r\n",
        b"stats\r\n",
        b"set a 0 0 12\r\nalice secret\r\nget k\r\n",
        b"set a 0 0 11\r\nalice wrong\r\n",
        b"set a 0 0 5\r\nalice\r\n",
        b"set a 0 0 13\r\nalice secret \r\n",
        b"set a 0 0 13\r\nalice  secret\r\n",
        b"set a 0 0 12\r\nalice secretXX",
        b"set a 0 0 9\r\nbob pa:ss\r\n",
        b"set a 0 0\r\n",
        b"set a 0 0 abc\r\n",
        b"set a 0 0 -1\r\n",
        &long_token,
        &long_password,
        b"set a 0 0 12 noreply\r\nalice secret\r\n",
        b"set a 0 0 16\r\nalice secret bob\r\n",
        b"set a 0 0 12\r\nalice secret\r\nset a 0 0 12\r\nalice secret\r\n",
        b"SET a 0 0 12\r\n",
        b"set a 0 0 12\r\nalice secret\r\nset k 0 0 1\r\nv\r\nget k\r\n",
        b"\x80\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    ];
    for case in cases {
        let (expected, got) = std::thread::scope(|scope| {
            let expected = scope.spawn(|| exchange_quiet(memcached.port(), case));
            let got = exchange_quiet(rampart.port(), case);
            (expected.join().expect("memcached's side"), got)
        });
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "for {:?}",
            String::from_utf8_lossy(&case[..case.len().min(60)])
        );
    }
    // `stats settings` and the counters, after authenticating.
    for server in [&memcached, &rampart] {
        let mut stream = quiet_tcp(server.port());
        stream
            .write_all(b"set a 0 0 11\r\nalice wrong\r\nset a 0 0 12\r\nalice secret\r\n")
            .expect("send");
        let _ = read_quiet(&mut stream);
        stream.write_all(b"stats\r\n").expect("send");
        let stats = parse_stats(&read_quiet(&mut stream));
        stream.write_all(b"stats settings\r\n").expect("send");
        let settings = parse_stats(&read_quiet(&mut stream));
        assert!(
            stats["auth_cmds"].parse::<u64>().unwrap_or(0) >= 2,
            "{}: {stats:?}",
            server.kind().name()
        );
        assert!(stats["auth_errors"].parse::<u64>().unwrap_or(0) >= 1);
        assert_eq!(settings["auth_enabled_sasl"], "no");
        assert!(settings["auth_enabled_ascii"].ends_with("-users"));
    }
}

/// Where rampart differs from memcached on purpose: every request pipelined before
/// authentication is answered (memcached 1.6.18 answers the first and leaves the rest until
/// more input arrives), a data block over 4 KiB is refused at once (memcached waits for all
/// of it, up to 4 GB), and a length beyond 32 bits is no length (memcached truncates it).
#[test]
fn before_authentication_every_pipelined_request_is_answered() {
    let dir = TempDir::new().expect("temp dir");
    let users = write_file(dir.path(), "users", "alice:secret\n", 0o600);
    let server = Server::start(Kind::Rampart, &["-Y", path_arg(&users)]);
    assert_eq!(
        exchange(server.port(), b"get a\r\nget b\r\nversion\r\n"),
        UNAUTHENTICATED.repeat(3)
    );
    assert_eq!(
        exchange(server.port(), b"set a 0 0 4095\r\n"),
        b"CLIENT_ERROR auth token too long\r\n<EOF>"
    );
    assert_eq!(
        exchange(server.port(), b"set a 0 0 4294967297\r\n"),
        UNAUTHENTICATED
    );
}

fn exchange_quiet(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut stream = quiet_tcp(port);
    stream.write_all(bytes).expect("send");
    read_quiet(&mut stream)
}

const SASL_AUTH: u8 = 0x21;
const SASL_STEP: u8 = 0x22;
const GETK: u8 = 0x0c;

/// The status of the first binary response in `reply`, and its body.
fn status_of(reply: &[u8]) -> (u16, Vec<u8>) {
    assert!(reply.len() >= 24, "no binary response in {reply:02x?}");
    assert_eq!(reply[0], 0x81, "not a response: {reply:02x?}");
    assert_eq!(
        &reply[12..16],
        &[0xde, 0xad, 0xbe, 0xef],
        "opaque not echoed"
    );
    let body = u32::from_be_bytes([reply[8], reply[9], reply[10], reply[11]]) as usize;
    let status = u16::from_be_bytes([reply[6], reply[7]]);
    (status, reply[24..(24 + body).min(reply.len())].to_vec())
}

/// What an unauthenticated client on one transport gets, and that authenticating there works.
fn check_locked<S: Read + Write>(connect: &dyn Fn() -> S, what: &str, plain_allowed: bool) {
    for (request, reply) in [
        (&b"get k\r\n"[..], UNAUTHENTICATED),
        (b"mg k v\r\n", UNAUTHENTICATED),
        (b"stats\r\n", UNAUTHENTICATED),
        (b"flush_all\r\n", UNAUTHENTICATED),
        // A storage command is an authentication attempt: its data is no credential.
        (
            b"set k 0 0 1\r\nx\r\n",
            b"CLIENT_ERROR bad authentication token format\r\n",
        ),
    ] {
        let mut conn = connect();
        conn.write_all(request).expect("send");
        assert_eq!(
            String::from_utf8_lossy(&read_quiet(&mut conn)),
            String::from_utf8_lossy(reply),
            "{what}: {:?}",
            String::from_utf8_lossy(request)
        );
    }
    // A binary request other than SASL: Auth failure, and the connection closes.
    let mut conn = connect();
    conn.write_all(&packet(GETK, b"k", b"")).expect("send");
    let reply = read_quiet(&mut conn);
    assert_eq!(
        status_of(&reply),
        (0x20, b"Auth failure.".to_vec()),
        "{what}"
    );
    assert!(
        reply.ends_with(b"<EOF>"),
        "{what}: still open after {reply:02x?}"
    );
    // ASCII auth, then the data the refused `set` above did not store.
    let mut conn = connect();
    conn.write_all(AUTH_LINE).expect("send");
    conn.write_all(b"get k\r\n").expect("send");
    assert_eq!(read_quiet(&mut conn), b"STORED\r\nEND\r\n", "{what}");
    // SASL PLAIN.
    let mut conn = connect();
    conn.write_all(&packet(SASL_AUTH, b"PLAIN", b"\0alice\0secret"))
        .expect("send");
    conn.write_all(&packet(GETK, b"k", b"")).expect("send");
    let reply = read_quiet(&mut conn);
    if plain_allowed {
        assert_eq!(status_of(&reply), (0, b"Authenticated".to_vec()), "{what}");
        // Then the get runs: a miss (0x01) answered with the key.
        assert_eq!(status_of(&reply[24 + 13..]).0, 0x01, "{what}");
    } else {
        assert_eq!(status_of(&reply).0, 0x20, "{what}: PLAIN over plaintext");
    }
}

/// With `-S -Y`, nothing reaches a shard before authentication, on a plaintext TCP listener,
/// a TLS one and a unix socket, in text, meta and binary. (memcached 1.6.18 with `-S` serves
/// unauthenticated text requests on a negotiating listener.)
#[test]
fn every_listener_and_protocol_requires_authentication() {
    let dir = TempDir::new().expect("temp dir");
    let users = write_file(dir.path(), "users", "alice:secret\n", 0o600);
    let pki = Pki::new();
    let opts = pki.cert_opts();
    let server = Server::start(
        Kind::Rampart,
        &[
            "-S",
            "-Y",
            path_arg(&users),
            "-Z",
            "-o",
            &opts,
            "-l",
            "notls:127.0.0.1:0",
        ],
    );
    let plain_port = second_port(&server);
    check_locked(&|| quiet_tcp(plain_port), "plaintext TCP", false);
    let tls_port = server.port();
    check_locked(
        &|| {
            let conn = pki.client().connect(tls_port).expect("TLS connect");
            QuietTls(conn)
        },
        "TLS",
        true,
    );
    let socket = dir.path().join("rampart.sock");
    let unix = UnixServer::start(
        &[
            "-S",
            "-Y",
            path_arg(&users),
            "-s",
            path_arg(&socket),
            "-a",
            "0777",
        ],
        &socket,
    );
    check_locked(
        &|| {
            let stream = UnixStream::connect(&socket).expect("unix connect");
            stream.set_read_timeout(Some(QUIET)).expect("timeout");
            stream
        },
        "unix socket",
        true,
    );
    drop(unix);
}

/// `-o auth_exempt_unix_socket`: the operator trusts the unix socket's permissions, so its
/// connections need no authentication (without the option they do: see
/// `every_listener_and_protocol_requires_authentication`).
#[test]
fn an_exempted_unix_socket_needs_no_authentication() {
    let dir = TempDir::new().expect("temp dir");
    let users = write_file(dir.path(), "users", "alice:secret\n", 0o600);
    let socket = dir.path().join("exempt.sock");
    let _server = UnixServer::start(
        &[
            "-S",
            "-Y",
            path_arg(&users),
            "-s",
            path_arg(&socket),
            "-a",
            "0777",
            "-o",
            "auth_exempt_unix_socket",
        ],
        &socket,
    );
    let mut stream = UnixStream::connect(&socket).expect("unix connect");
    stream.set_read_timeout(Some(QUIET)).expect("timeout");
    stream
        .write_all(b"set k 0 0 1\r\nv\r\nget k\r\n")
        .expect("send");
    assert_eq!(
        read_quiet(&mut stream),
        b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
    );
}

/// A TLS connection read with [`read_quiet`] (its reads time out like the socket's).
struct QuietTls(rampart_tests::tls::TlsConn);

impl Read for QuietTls {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let reply = self.0.read_until(b"\xff\xfe\xfd", QUIET);
        let n = reply.bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&reply.bytes[..n]);
        match reply.end {
            _ if n > 0 => Ok(n),
            rampart_tests::io::End::Eof | rampart_tests::io::End::Reset => Ok(0),
            _ => Err(std::io::Error::from(ErrorKind::WouldBlock)),
        }
    }
}

impl Write for QuietTls {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A hashed entry as `rampart passwd` writes it, from a password on standard input.
fn passwd_line(user: &str, password: &str) -> String {
    let line = sasl::passwd(user, password, None);
    assert!(
        line.starts_with(&format!("{user}:SCRAM-SHA-256$4096:")),
        "{line}"
    );
    line
}

/// pymemcache sends memcached's ASCII auth `set`; python-binary-memcached SASL PLAIN over
/// TLS, and over plaintext where `-o sasl_plain_cleartext` allows it, with a hashed entry
/// from `rampart passwd` in `MEMCACHED_SASL_PWDB`'s file. A wrong password fails each.
#[test]
fn real_clients_authenticate_and_wrong_passwords_fail() {
    let python = python::python();
    require_module(&python, "pymemcache", "pymemcache");
    require_module(&python, "bmemcached", "python-binary-memcached");
    let dir = TempDir::new().expect("temp dir");
    let ascii = write_file(dir.path(), "ascii", "alice:secret\n", 0o600);
    let server = Server::start(Kind::Rampart, &["-Y", path_arg(&ascii), "-t", "2"]);
    let out = run_script(
        &python,
        "auth_clients.py",
        &server,
        &[
            OsStr::new("ascii"),
            OsStr::new("--user"),
            OsStr::new("alice"),
            OsStr::new("--password"),
            OsStr::new("secret"),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(
        out,
        "get before auth -> b'unauthenticated'\n\
         auth wrong -> b'authentication failure'\n\
         auth right -> stored=True\n\
         set -> True\n\
         get -> b'v1'\n\
         delete -> True\n\
         get after delete -> None\n\
         # done\n"
    );

    let sasl = write_file(dir.path(), "sasl", &passwd_line("carol", "hunter2"), 0o600);
    let env = [("MEMCACHED_SASL_PWDB", sasl.as_os_str())];
    let pki = Pki::new();
    let opts = format!("{},sasl_plain_cleartext", pki.cert_opts());
    let server = Server::try_start_with_env(
        Kind::Rampart,
        &env,
        &[
            "-S",
            "-t",
            "2",
            "-Z",
            "-o",
            &opts,
            "-l",
            "notls:127.0.0.1:0",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let expected = "wrong: MemcachedException\n\
                    right: set -> True\n\
                    right: get -> 'v1'\n\
                    right: get_multi -> [('k', 'v1'), ('k2', 'v2')]\n\
                    right: delete -> True\n\
                    # done\n";
    let over_tls = run_script(
        &python,
        "auth_clients.py",
        &server,
        &sasl_args(Some(pki.ca.cert_path.as_os_str())),
        Duration::from_secs(60),
    );
    assert_eq!(over_tls, expected, "over TLS");
    let plain = PlainPort {
        server: &server,
        port: second_port(&server),
    };
    let over_plaintext = plain.run(&python, &sasl_args(None));
    assert_eq!(over_plaintext, expected, "over plaintext, allowed");
}

/// `auth_clients.py sasl` arguments for carol, with `--ca` for TLS.
fn sasl_args(ca: Option<&OsStr>) -> Vec<&OsStr> {
    let mut args = vec![
        OsStr::new("sasl"),
        OsStr::new("--user"),
        OsStr::new("carol"),
        OsStr::new("--password"),
        OsStr::new("hunter2"),
    ];
    if let Some(ca) = ca {
        args.extend([OsStr::new("--ca"), ca]);
    }
    args
}

/// pylibmc (libmemcached with Cyrus SASL; Debian's python3-pylibmc for the system python3)
/// sees `SCRAM-SHA-256 PLAIN` offered and authenticates with SCRAM-SHA-256, the strongest,
/// over plaintext TCP (SCRAM never sends the password), with a hashed entry and with a
/// cleartext one; a wrong password fails.
#[test]
fn pylibmc_authenticates_with_scram_sha_256() {
    let python = "/usr/bin/python3";
    require_module(
        python,
        "pylibmc",
        "pylibmc (Debian: apt-get install python3-pylibmc)",
    );
    let dir = TempDir::new().expect("temp dir");
    let text = format!("{}bob:builder\n", passwd_line("carol", "hunter2"));
    let users = write_file(dir.path(), "users", &text, 0o600);
    let trail = dir.path().join("audit.log");
    let audit = format!("audit_log={},audit_auth_success", path_arg(&trail));
    let server = Server::start(
        Kind::Rampart,
        &["-S", "-Y", path_arg(&users), "-t", "2", "-v", "-o", &audit],
    );
    for (user, password) in [("carol", "hunter2"), ("bob", "builder")] {
        let mut cmd = Command::new(python);
        cmd.arg(rampart_tests::package_dir().join("python/pylibmc_sasl.py"))
            .args(["--port", &server.port().to_string()])
            .args(["--user", user, "--password", password]);
        let done = rampart_tests::server::run_bounded(cmd, Duration::from_secs(60));
        assert_eq!(
            done.stdout,
            "wrong: Error\n\
             right: set -> True\n\
             right: get -> 'v1'\n\
             right: get_multi -> [('k', 'v1')]\n\
             right: delete -> True\n\
             # done\n",
            "{user}: {}\n{}",
            done.stderr,
            server.diagnostics()
        );
    }
    // Both wrong passwords failed in the SCRAM exchange itself, not earlier.
    let mut admin = Conn::new(tcp_connect(server.port()).expect("connect"));
    admin
        .send(b"set auth 0 0 11\r\nbob builder\r\nstats\r\n")
        .expect("send");
    let stats = parse_stats(&admin.read_until(b"END\r\n", BOUND).bytes);
    assert_eq!(stats["auth_errors"], "2", "{stats:?}");
    // `-v` logs why: the proof, so the exchange was SCRAM's.
    assert_eq!(
        server
            .stderr()
            .matches("SCRAM exchange failed: the proof is wrong")
            .count(),
        2,
        "{}",
        server.stderr()
    );
    // The audit trail has each failure once, and no failure for a SCRAM exchange that
    // succeeded (an exchange is counted against the limit from its start, but recorded as
    // failed only when it fails): two SCRAM logins and the ASCII one above succeeded.
    let count = |id: &str| {
        fs::read_to_string(&trail)
            .unwrap_or_default()
            .matches(&format!("\"event\":\"{id}\""))
            .count()
    };
    let deadline = Instant::now() + BOUND;
    while count("auth.success") < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        (count("auth.success"), count("auth.failure")),
        (3, 2),
        "{}",
        fs::read_to_string(&trail).unwrap_or_default()
    );
}

/// spymemcached (Debian's libspymemcached-java, the Java client whose default mechanisms are
/// CRAM-MD5 and PLAIN) authenticates with each: CRAM-MD5 is offered because the file has a
/// cleartext entry, PLAIN over plaintext because `-o sasl_plain_cleartext` allows it. A wrong
/// password fails.
#[test]
fn spymemcached_authenticates_with_cram_md5_and_plain() {
    let jar = Path::new("/usr/share/java/spymemcached.jar");
    assert!(
        jar.is_file(),
        "{} is missing (Debian package libspymemcached-java; `cargo xtask ci` installs it)",
        jar.display()
    );
    let javac = rampart_tests::server::find_on_path("javac")
        .expect("javac is not on PATH (Debian package default-jdk-headless)");
    let dir = TempDir::new().expect("temp dir");
    let mut compile = Command::new(javac);
    compile
        .arg("-cp")
        .arg(jar)
        .arg("-d")
        .arg(dir.path())
        .arg(rampart_tests::package_dir().join("java/SpyAuth.java"));
    let compiled = rampart_tests::server::run_bounded(compile, Duration::from_secs(120));
    assert!(
        compiled.status.is_some_and(|s| s.success()),
        "{}",
        compiled.stderr
    );
    let users = write_file(dir.path(), "users", "alice:secret\n", 0o600);
    let server = Server::start(
        Kind::Rampart,
        &["-S", "-Y", path_arg(&users), "-o", "sasl_plain_cleartext"],
    );
    let classpath = format!("{}:{}", jar.display(), dir.path().display());
    for (mechanism, password, expected) in [
        ("CRAM-MD5", "secret", "set -> true\nget -> v1\n# done\n"),
        ("PLAIN", "secret", "set -> true\nget -> v1\n# done\n"),
        ("CRAM-MD5", "wrong", "failed\n# done\n"),
    ] {
        let mut java = Command::new("java");
        java.args(["-cp", &classpath, "SpyAuth"])
            .arg(server.port().to_string())
            .args([mechanism, "alice", password]);
        let done = rampart_tests::server::run_bounded(java, Duration::from_secs(60));
        assert_eq!(
            done.stdout,
            expected,
            "{mechanism} with {password}: {}\n{}",
            done.stderr,
            server.diagnostics()
        );
    }
}

/// Binary SASL answered as memcached 1.6.18 with `-S` answers it (its Cyrus sasldb made with
/// `saslpasswd2`, `mech_list: plain`): PLAIN with the right and a wrong password, a request
/// before authenticating (Auth failure, then the connection closes), a step with nothing
/// started, an unknown mechanism, and a get after authenticating. Each case on a fresh
/// connection; the responses (opcode, status, opaque, body) must be the same bytes.
#[test]
fn binary_sasl_answers_as_memcached_does() {
    let saslpasswd2 = rampart_tests::server::find_on_path("saslpasswd2")
        .expect("saslpasswd2 is not on PATH (Debian package sasl2-bin)");
    let dir = TempDir::new().expect("temp dir");
    let sasldb = dir.path().join("sasldb2");
    let mut make = Command::new(saslpasswd2);
    make.args(["-p", "-a", "memcached", "-c", "-f"])
        .arg(&sasldb)
        .arg("alice")
        .stdin(Stdio::piped());
    let mut child = make
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("saslpasswd2");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"secret")
        .expect("password");
    assert!(
        child.wait().expect("saslpasswd2").success(),
        "saslpasswd2 failed"
    );
    // memcached runs as nobody under the harness.
    fs::set_permissions(&sasldb, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(
        dir.path().join("memcached.conf"),
        format!("mech_list: plain\nsasldb_path: {}\n", sasldb.display()),
    )
    .expect("sasl conf");
    let env = [("SASL_CONF_PATH", dir.path().as_os_str())];
    let memcached = Server::try_start_with_env(Kind::Memcached, &env, &["-S"])
        .unwrap_or_else(|e| panic!("{e}"));
    let users = write_file(dir.path(), "users", "alice:secret\n", 0o600);
    let rampart = Server::start(
        Kind::Rampart,
        &[
            "-S",
            "-Y",
            path_arg(&users),
            "-B",
            "binary",
            "-o",
            "sasl_plain_cleartext",
        ],
    );
    let plain = |password: &str| {
        packet(
            SASL_AUTH,
            b"PLAIN",
            format!("\0alice\0{password}").as_bytes(),
        )
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("PLAIN", plain("secret")),
        ("PLAIN, wrong password", plain("wrong")),
        ("a get before authenticating", packet(GETK, b"k", b"")),
        (
            "a step with nothing started",
            packet(SASL_STEP, b"PLAIN", b"x"),
        ),
        ("an unknown mechanism", packet(SASL_AUTH, b"FOO", b"x")),
        (
            "PLAIN, then a get",
            [plain("secret"), packet(GETK, b"k", b"")].concat(),
        ),
        (
            "a wrong password, then the right one",
            [plain("wrong"), plain("secret")].concat(),
        ),
    ];
    for (what, request) in cases {
        let (expected, got) = std::thread::scope(|scope| {
            let expected = scope.spawn(|| exchange_quiet(memcached.port(), &request));
            let got = exchange_quiet(rampart.port(), &request);
            (expected.join().expect("memcached's side"), got)
        });
        assert_eq!(
            got, expected,
            "{what}: rampart {got:02x?}\nmemcached {expected:02x?}"
        );
    }
}

/// [`run_script`] against a server's second (plaintext) listener.
struct PlainPort<'a> {
    server: &'a Server,
    port: u16,
}

impl PlainPort<'_> {
    fn run(&self, python: &str, args: &[&OsStr]) -> String {
        let mut cmd = Command::new(python);
        cmd.arg(rampart_tests::package_dir().join("python/auth_clients.py"))
            .args(args)
            .args(["--port", &self.port.to_string()]);
        let done = rampart_tests::server::run_bounded(cmd, Duration::from_secs(60));
        assert!(
            done.status.is_some_and(|s| s.success()),
            "{}\n{}\n{}",
            done.stdout,
            done.stderr,
            self.server.diagnostics()
        );
        done.stdout
    }
}

/// Before authenticating, a client gets small answers and few tries: five wrong passwords
/// close the connection (however many were pipelined), a data block or binary body over
/// 4 KiB closes it, a line of 2 KiB without a newline closes it, SASL messages that are
/// malformed or of an unknown mechanism fail, and an idle unauthenticated connection is
/// closed after `auth_timeout`. The counters say so.
#[test]
fn hostile_clients_before_authentication() {
    let dir = TempDir::new().expect("temp dir");
    let users = write_file(dir.path(), "users", "alice:secret\n", 0o600);
    let server = Server::start(
        Kind::Rampart,
        &[
            "-S",
            "-Y",
            path_arg(&users),
            "-o",
            "auth_timeout=1,sasl_plain_cleartext",
        ],
    );
    let failure = b"CLIENT_ERROR authentication failure\r\n";
    let wrong = b"set a 0 0 11\r\nalice wrong\r\n".repeat(1000);
    let reply = exchange(server.port(), &wrong);
    assert_eq!(reply, [&failure.repeat(5)[..], b"<EOF>"].concat());

    let reply = exchange(server.port(), b"set a 0 0 2147483648\r\nalice secret\r\n");
    assert_eq!(reply, b"CLIENT_ERROR auth token too long\r\n<EOF>");

    let mut huge = packet(SASL_AUTH, b"PLAIN", b"");
    huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    let reply = exchange(server.port(), &huge);
    assert_eq!(status_of(&reply).0, 0x20);
    assert!(reply.ends_with(b"<EOF>"));

    assert_eq!(exchange(server.port(), &[b'g'; 3000]), b"<EOF>");

    for (what, request) in [
        ("a step before any auth", packet(SASL_STEP, b"PLAIN", b"x")),
        (
            "a SCRAM step before its start",
            packet(SASL_STEP, b"SCRAM-SHA-256", b"c=biws,r=x,p=AAAA"),
        ),
        (
            "a SCRAM start with channel binding",
            packet(SASL_AUTH, b"SCRAM-SHA-256", b"p=tls-unique,,n=alice,r=abc"),
        ),
        ("an unknown mechanism", packet(SASL_AUTH, b"CRAM-MD6", b"x")),
        (
            "another authzid",
            packet(SASL_AUTH, b"PLAIN", b"bob\0alice\0secret"),
        ),
        (
            "a NUL in the password",
            packet(SASL_AUTH, b"PLAIN", b"\0alice\0sec\0ret"),
        ),
        (
            "an empty password",
            packet(SASL_AUTH, b"PLAIN", b"\0alice\0"),
        ),
        (
            "no separators",
            packet(SASL_AUTH, b"PLAIN", b"alice secret"),
        ),
    ] {
        let reply = exchange(server.port(), &request);
        assert_eq!(
            status_of(&reply),
            (0x20, b"Auth failure.".to_vec()),
            "{what}"
        );
        assert!(
            !reply.ends_with(b"<EOF>"),
            "{what}: one failure closed the connection"
        );
    }

    let started = Instant::now();
    let mut idle = Conn::new(tcp_connect(server.port()).expect("connect"));
    let reply = idle.read_to_eof(Duration::from_secs(10));
    assert_eq!((reply.bytes.as_slice(), reply.end), (&b""[..], End::Eof));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let mut admin = Conn::new(tcp_connect(server.port()).expect("connect"));
    admin.send(AUTH_LINE).expect("send");
    assert_eq!(
        admin.read_until(b"\r\n", BOUND).bytes,
        b"STORED\r\n",
        "{}",
        server.diagnostics()
    );
    admin.send(b"stats\r\n").expect("send");
    let stats = parse_stats(&admin.read_until(b"END\r\n", BOUND).bytes);
    assert_eq!(stats["auth_lockouts"], "1");
    assert_eq!(stats["auth_timeouts"], "1");
    // 5 wrong passwords, the long token, 8 SASL failures and the right one.
    assert_eq!(stats["auth_cmds"], "15", "{stats:?}");
    assert_eq!(stats["auth_errors"], "14");
}

/// SIGHUP reloads the credential files at once: a connection whose user's password changed
/// must authenticate again at its next request, one whose user is unchanged goes on, the new
/// password works and the old one does not; a malformed file changes nothing.
#[test]
fn sighup_reloads_credentials_and_revokes_changed_users() {
    let dir = TempDir::new().expect("temp dir");
    let users = write_file(dir.path(), "users", "alice:secret\nbob:builder\n", 0o600);
    // The server reloads as the user it runs as (`nobody` when the tests run as root), so
    // the file must be that user's, as an operator's would be the `-u` user's.
    rampart_tests::give_to_nobody(&users);
    let mut server = Server::start(Kind::Rampart, &["-Y", path_arg(&users)]);
    let mut alice = Conn::new(tcp_connect(server.port()).expect("connect"));
    assert_eq!(alice.roundtrip(AUTH_LINE, b"\r\n"), b"STORED\r\n");
    let mut bob = Conn::new(tcp_connect(server.port()).expect("connect"));
    assert_eq!(
        bob.roundtrip(b"set auth 0 0 11\r\nbob builder\r\n", b"\r\n"),
        b"STORED\r\n"
    );
    // `stats conns` names who authenticated.
    bob.send(b"stats conns\r\n").expect("send");
    let conns = parse_stats(&bob.read_until(b"END\r\n", BOUND).bytes);
    let mut names: Vec<&str> = conns
        .iter()
        .filter(|(name, _)| name.ends_with(":user"))
        .map(|(_, user)| user.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["alice", "bob"], "{conns:?}");
    fs::write(&users, "alice:changed\nbob:builder\n").expect("rewrite");
    let reloads = |server: &Server| server.stderr().matches("SIGHUP: credentials").count();
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + BOUND;
    while reloads(&server) < 1 {
        assert!(
            Instant::now() < deadline,
            "no reload logged\n{}",
            server.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server
            .stderr()
            .contains("SIGHUP: credentials reloaded, 2 user(s)"),
        "{}",
        server.stderr()
    );
    assert_eq!(alice.roundtrip(b"get k\r\n", b"\r\n"), UNAUTHENTICATED);
    assert_eq!(bob.roundtrip(b"get k\r\n", b"\r\n"), b"END\r\n");
    bob.send(b"stats conns\r\n").expect("send");
    let conns = parse_stats(&bob.read_until(b"END\r\n", BOUND).bytes);
    let names: Vec<&String> = conns
        .iter()
        .filter(|(n, _)| n.ends_with(":user"))
        .map(|(_, u)| u)
        .collect();
    assert_eq!(names, ["bob"], "revoked alice is still shown: {conns:?}");
    // The revoked connection may authenticate again, with the new password only.
    assert_eq!(
        alice.roundtrip(AUTH_LINE, b"\r\n"),
        b"CLIENT_ERROR authentication failure\r\n"
    );
    assert_eq!(
        alice.roundtrip(b"set auth 0 0 13\r\nalice changed\r\n", b"\r\n"),
        b"STORED\r\n"
    );
    fs::write(&users, "alice:changed\nbroken line\n").expect("rewrite");
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + BOUND;
    while reloads(&server) < 2 {
        assert!(
            Instant::now() < deadline,
            "no reload logged\n{}",
            server.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.stderr().contains("not reloaded, the old ones stay"));
    assert!(server.stderr().contains("line 2"), "{}", server.stderr());
    assert_eq!(bob.roundtrip(b"get k\r\n", b"\r\n"), b"END\r\n");
    assert_eq!(
        exchange(server.port(), b"set auth 0 0 11\r\nbob builder\r\n"),
        b"STORED\r\n"
    );
}

/// One SASL request and its response on `conn`: (status, body).
fn sasl_roundtrip(conn: &mut Conn, opcode: u8, mechanism: &[u8], data: &[u8]) -> (u16, Vec<u8>) {
    conn.send(&packet(opcode, mechanism, data)).expect("send");
    let header = conn.read_until(b"\xde\xad\xbe\xef", BOUND);
    assert_eq!(header.end, End::Terminator, "no response: {header:?}");
    let mut reply = header.bytes;
    let body = u32::from_be_bytes([reply[8], reply[9], reply[10], reply[11]]) as usize;
    // The rest of the header (CAS) and the body.
    while reply.len() < 24 + body {
        let more = conn.read_until(b"", Duration::from_millis(200));
        if more.bytes.is_empty() {
            break;
        }
        reply.extend(more.bytes);
    }
    status_of(&reply)
}

/// SCRAM by hand: the exchange works step by step; one begun before a reload that changed the
/// user's password fails even with the old password's proof (it would otherwise let a holder
/// of the old password in after the rotation); an authenticated client that guesses other
/// users' passwords is closed after five failures; an unauthenticated one that sends 16
/// requests without authenticating is closed.
#[test]
fn scram_exchanges_do_not_survive_a_reload_and_guessing_is_capped() {
    let dir = TempDir::new().expect("temp dir");
    let users = write_file(dir.path(), "users", &passwd_line("alice", "old"), 0o600);
    rampart_tests::give_to_nobody(&users);
    let mut server = Server::start(Kind::Rampart, &["-S", "-Y", path_arg(&users)]);
    let first_bare = "n=alice,r=clientnonce";
    let start = |conn: &mut Conn| {
        let (status, server_first) = sasl_roundtrip(
            conn,
            SASL_AUTH,
            b"SCRAM-SHA-256",
            format!("n,,{first_bare}").as_bytes(),
        );
        assert_eq!(status, 0x21, "continue");
        String::from_utf8(server_first).expect("ascii")
    };
    // A whole exchange.
    let mut conn = Conn::new(tcp_connect(server.port()).expect("connect"));
    let server_first = start(&mut conn);
    let last = sasl::scram_final(MessageDigest::sha256(), "old", first_bare, &server_first);
    let (status, server_final) =
        sasl_roundtrip(&mut conn, SASL_STEP, b"SCRAM-SHA-256", last.as_bytes());
    assert_eq!(status, 0);
    assert!(server_final.starts_with(b"v="));
    // One begun before a reload.
    let mut pending = Conn::new(tcp_connect(server.port()).expect("connect"));
    let server_first = start(&mut pending);
    fs::write(&users, passwd_line("alice", "new")).expect("rewrite");
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + BOUND;
    while !server.stderr().contains("SIGHUP: credentials reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload\n{}",
            server.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let last = sasl::scram_final(MessageDigest::sha256(), "old", first_bare, &server_first);
    let (status, _) = sasl_roundtrip(&mut pending, SASL_STEP, b"SCRAM-SHA-256", last.as_bytes());
    assert_eq!(
        status, 0x20,
        "an exchange from before the reload let the old password in"
    );
    // The authenticated connection from before was revoked (its password changed): a
    // binary request now gets Auth failure and the connection closes.
    conn.send(&packet(GETK, b"k", b"")).expect("send");
    let reply = conn.read_to_eof(BOUND);
    assert_eq!(status_of(&reply.bytes).0, 0x20);
    // Guessing after authenticating: five failures close the connection.
    let mut guesser = Conn::new(tcp_connect(server.port()).expect("connect"));
    let server_first = start(&mut guesser);
    let last = sasl::scram_final(MessageDigest::sha256(), "new", first_bare, &server_first);
    assert_eq!(
        sasl_roundtrip(&mut guesser, SASL_STEP, b"SCRAM-SHA-256", last.as_bytes()).0,
        0
    );
    let guesses = packet(SASL_AUTH, b"SCRAM-SHA-256", b"n,,n=bob,r=x").repeat(6);
    guesser.send(&guesses).expect("send");
    let reply = guesser.read_to_eof(BOUND);
    assert_eq!(reply.end, End::Eof, "still open after guesses: {reply:?}");
    // Sixteen requests without authenticating, then the connection closes.
    let reply = exchange(server.port(), &b"get k\r\n".repeat(20));
    assert_eq!(reply, [&UNAUTHENTICATED.repeat(16)[..], b"<EOF>"].concat());
}

/// A credential file others may read, a malformed one, and `-S` without any file stop the
/// start-up with one line that says which and why, never the secret.
#[test]
fn credential_files_are_checked_at_start() {
    let dir = TempDir::new().expect("temp dir");
    let exposed = write_file(dir.path(), "exposed", "alice:secret\n", 0o644);
    let malformed = write_file(dir.path(), "malformed", "alice:secret\nbob\n", 0o600);
    let cases: [(&[&str], &str); 4] = [
        (
            &["-Y", path_arg(&exposed)],
            "readable or writable by other users",
        ),
        (&["-Y", path_arg(&malformed)], "line 2"),
        (&["-S"], "MEMCACHED_SASL_PWDB"),
        (&["-Y", "/nonexistent/users"], "/nonexistent/users"),
    ];
    for (args, says) in cases {
        let err = Server::try_start(Kind::Rampart, args).expect_err("started");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(
            !err.contains("secret"),
            "{args:?} shows the password: {err}"
        );
        assert!(err.contains("exit status: 64"), "{args:?}: {err}");
    }
}
