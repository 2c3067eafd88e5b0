//! TLS-PSK (`-o ssl_psk_file`, stunnel's `PSKsecrets` format): the RHEL guide's client-side
//! stunnel configuration (`client = yes`, `ciphers = PSK`, `PSKsecrets`) connects straight to
//! rampart, and so does `openssl s_client -psk` over TLS 1.2 and TLS 1.3; the PSK identity is
//! the connection's identity (it passes `-Y` without ASCII auth, and `stats conns` names it);
//! a wrong key or an unknown identity gets no connection, a client without a PSK gets no more
//! than any certificate-only client, and unusable PSK files stop the start-up.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_tests::server::{find_on_path, run_bounded};
use rampart_tests::tempdir::TempDir;
use rampart_tests::tls::{Pki, second_port, tcp_connect};
use rampart_tests::{Kind, Server};

/// The key as text (20 characters, not all hex digits, so stunnel reads it as bytes).
const KEY: &str = "0123456789abcdefghij";
const BOUND: Duration = Duration::from_secs(10);

fn write_private(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// rampart with a certificate, `ssl_psk_file` and ASCII auth, plus a plaintext listener.
fn start(dir: &Path, pki: &Pki) -> Server {
    let psk = write_private(dir, "psk", &format!("# stunnel's format\nclient1:{KEY}\n"));
    let users = write_private(dir, "users", "alice:secret\n");
    let opts = format!("{},ssl_psk_file={}", pki.cert_opts(), psk.display());
    Server::start(
        Kind::Rampart,
        &[
            "-Z",
            "-o",
            &opts,
            "-Y",
            users.to_str().expect("path"),
            "-l",
            "notls:127.0.0.1:0",
        ],
    )
}

/// `openssl s_client` with `args`, sending `version` then `quit`; its output.
fn s_client(port: u16, args: &str) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "printf 'version\\r\\nquit\\r\\n' | openssl s_client -quiet -connect 127.0.0.1:{port} {args}"
    ));
    let done = run_bounded(cmd, BOUND);
    format!("{}{}", done.stdout, done.stderr)
}

#[test]
fn openssl_s_client_connects_with_a_psk_over_tls_1_2_and_1_3() {
    let dir = TempDir::new().expect("temp dir");
    let pki = Pki::new();
    let server = start(dir.path(), &pki);
    let key = hex(KEY.as_bytes());
    let tls12 = s_client(
        server.port(),
        &format!("-tls1_2 -cipher PSK-AES128-GCM-SHA256 -psk_identity client1 -psk {key}"),
    );
    // Served without ASCII auth: the PSK authenticated the client.
    assert!(
        tls12.contains("VERSION "),
        "TLS 1.2: {tls12}\n{}",
        server.diagnostics()
    );
    // A TLS 1.2 client offering certificate suites first and PSK ones after gets a PSK one
    // (the server's order decides), with forward secrecy: the key it named is used.
    let both = s_client(
        server.port(),
        &format!("-tls1_2 -cipher DEFAULT:PSK -psk_identity client1 -psk {key} -brief"),
    );
    assert!(
        both.contains("VERSION ") && both.contains("ECDHE-PSK"),
        "TLS 1.2, certificate and PSK suites offered: {both}"
    );
    // TLS 1.3 with the client's default suites (TLS_AES_256_GCM_SHA384 first): the server
    // prefers a SHA-256 suite, the only hash an external PSK is defined for here.
    for suites in [
        "",
        "-ciphersuites TLS_AES_128_GCM_SHA256",
        "-ciphersuites TLS_CHACHA20_POLY1305_SHA256",
    ] {
        let tls13 = s_client(
            server.port(),
            &format!("-tls1_3 {suites} -psk_identity client1 -psk {key}"),
        );
        assert!(tls13.contains("VERSION "), "TLS 1.3 {suites}: {tls13}");
    }
    // A client that offers only a SHA-384 suite cannot use the PSK; OpenSSL carries on with
    // the certificate, and the identity it named is not the connection's, whatever its key.
    // (The callback that looked the key up once recorded the identity before OpenSSL decided:
    // any key was then taken for client1's.)
    for psk in [key.clone(), hex(b"0123456789abcdefXXXX")] {
        let declined = s_client(
            server.port(),
            &format!(
                "-tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384 -psk_identity client1 -psk {psk}"
            ),
        );
        assert!(
            declined.contains("CLIENT_ERROR unauthenticated") && !declined.contains("VERSION "),
            "a declined PSK named the connection: {declined}"
        );
    }
    for version in ["-tls1_2 -cipher PSK", "-tls1_3"] {
        let wrong = s_client(
            server.port(),
            &format!(
                "{version} -psk_identity client1 -psk {}",
                hex(b"0123456789abcdefXXXX")
            ),
        );
        assert!(
            !wrong.contains("VERSION "),
            "{version}: a wrong key was served: {wrong}"
        );
    }
    let unknown = s_client(
        server.port(),
        &format!("-tls1_2 -cipher PSK -psk_identity nobody -psk {key}"),
    );
    assert!(
        !unknown.contains("VERSION "),
        "an unknown identity was served: {unknown}"
    );
    // Without a PSK, a certificate-only client is only as trusted as any: it must authenticate.
    let plain_tls = s_client(server.port(), "");
    assert!(
        plain_tls.contains("CLIENT_ERROR unauthenticated"),
        "a client without a PSK skipped authentication: {plain_tls}"
    );
}

/// stunnel as the RHEL guide configures it on the client: the application speaks plaintext
/// to stunnel's port, stunnel speaks TLS-PSK to rampart, with no server-side stunnel.
#[test]
fn the_rhel_guides_stunnel_client_connects_straight_to_rampart() {
    let stunnel = find_on_path("stunnel4")
        .or_else(|| find_on_path("stunnel"))
        .expect("stunnel is not on PATH (Debian package stunnel4; `cargo xtask ci` installs it)");
    let dir = TempDir::new().expect("temp dir");
    let pki = Pki::new();
    let server = start(dir.path(), &pki);
    let secrets = write_private(dir.path(), "client-psk", &format!("client1:{KEY}\n"));
    let accept = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("address").port()
    };
    let config = write_private(
        dir.path(),
        "stunnel.conf",
        &format!(
            "foreground = yes\n[memcached]\nclient = yes\naccept = 127.0.0.1:{accept}\n\
             connect = 127.0.0.1:{}\nciphers = PSK\nPSKsecrets = {}\n",
            server.port(),
            secrets.display()
        ),
    );
    let child = Command::new(stunnel)
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stunnel");
    let mut stunnel = Stopped(child);
    let deadline = Instant::now() + BOUND;
    let mut conn = loop {
        if let Ok(conn) = tcp_connect(accept) {
            break conn;
        }
        assert!(
            Instant::now() < deadline,
            "stunnel did not listen on {accept}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    conn.set_read_timeout(Some(BOUND)).expect("timeout");
    conn.write_all(b"set k 0 0 2\r\nhi\r\nget k\r\nstats conns\r\nquit\r\n")
        .expect("send through stunnel");
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    assert!(
        reply.starts_with("STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n"),
        "through stunnel: {reply:?}\n{}\n{}",
        stunnel.output(),
        server.diagnostics()
    );
    assert!(reply.contains(":psk_identity client1\r\n"), "{reply}");
    // The plaintext listener still asks for authentication.
    let mut plain = tcp_connect(second_port(&server)).expect("connect");
    plain.set_read_timeout(Some(BOUND)).expect("timeout");
    plain.write_all(b"get k\r\n").expect("send");
    let mut line = [0u8; 30];
    plain.read_exact(&mut line).expect("read");
    assert_eq!(&line, b"CLIENT_ERROR unauthenticated\r\n");
    let _ = stunnel.0.kill();
}

/// Kills the child when dropped.
struct Stopped(Child);

impl Stopped {
    fn output(&mut self) -> String {
        let _ = self.0.kill();
        let mut text = String::new();
        if let Some(err) = self.0.stderr.as_mut() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn unusable_psk_files_stop_the_start_up() {
    let dir = TempDir::new().expect("temp dir");
    let pki = Pki::new();
    let short = write_private(dir.path(), "short", "client1:tooshort\n");
    let exposed = write_private(dir.path(), "exposed", &format!("client1:{KEY}\n"));
    fs::set_permissions(&exposed, fs::Permissions::from_mode(0o644)).expect("chmod");
    let nameless = write_private(dir.path(), "nameless", &format!(":{KEY}\n"));
    let long_name = write_private(dir.path(), "long", &format!("{}:{KEY}\n", "i".repeat(129)));
    for (file, says) in [
        (&short, "line 1: a key is 16"),
        (&exposed, "other users"),
        (&nameless, "line 1: an identity"),
        (&long_name, "line 1: an identity"),
    ] {
        let opts = format!("{},ssl_psk_file={}", pki.cert_opts(), file.display());
        let err = Server::try_start(Kind::Rampart, &["-Z", "-o", &opts]).expect_err("started");
        assert!(err.contains("Error loading the PSK file"), "{err}");
        assert!(err.contains(says), "{file:?}: {err}");
        assert!(!err.contains(KEY), "the key is shown: {err}");
    }
}

/// `openssl s_client` that waits for the server to close, without `-quiet` (so it prints
/// whether the session was `Reused`), sending `stats conns` then `quit`; its output.
fn s_client_session(port: u16, args: &str) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "printf 'stats conns\\r\\nquit\\r\\n' | openssl s_client -ign_eof -connect 127.0.0.1:{port} {args}"
    ));
    let done = run_bounded(cmd, BOUND);
    format!("{}{}", done.stdout, done.stderr)
}

/// A resumed session keeps the PSK identity it was made with (TLS 1.2 and 1.3, tickets and
/// the server's session cache), and a session made with a certificate never gains one.
#[test]
fn resumed_sessions_keep_their_psk_identity() {
    let dir = TempDir::new().expect("temp dir");
    let pki = Pki::new();
    let key = hex(KEY.as_bytes());
    let psk = write_private(dir.path(), "psk", &format!("client1:{KEY}\n"));
    let users = write_private(dir.path(), "users", "alice:secret\n");
    for cache in ["", ",ssl_session_cache"] {
        let opts = format!("{},ssl_psk_file={}{cache}", pki.cert_opts(), psk.display());
        let server = Server::start(
            Kind::Rampart,
            &["-Z", "-o", &opts, "-Y", users.to_str().expect("path")],
        );
        for version in ["-tls1_3", "-tls1_2 -cipher PSK"] {
            let saved = dir.path().join("session");
            let _ = fs::remove_file(&saved);
            let first = s_client_session(
                server.port(),
                &format!(
                    "{version} -psk_identity client1 -psk {key} -sess_out {}",
                    saved.display()
                ),
            );
            assert!(first.contains(":psk_identity client1"), "{first}");
            // s_client offers TLS 1.2's PSK suites only with a key at hand: a wrong one, so
            // only the resumed session can name the connection.
            let again = s_client_session(
                server.port(),
                &format!(
                    "{version} -sess_in {} -psk_identity client1 -psk {}",
                    saved.display(),
                    hex(b"0123456789abcdefXXXX")
                ),
            );
            assert!(
                again.contains("Reused,") && again.contains(":psk_identity client1"),
                "{version}{cache}: the resumed session lost its identity: {again}"
            );
        }
        // A certificate-only session, resumed: still no PSK identity, so still unauthenticated.
        let saved = dir.path().join("cert-session");
        let _ = fs::remove_file(&saved);
        let first = s_client_session(
            server.port(),
            &format!("-tls1_3 -sess_out {}", saved.display()),
        );
        assert!(first.contains("CLIENT_ERROR unauthenticated"), "{first}");
        let again = s_client_session(
            server.port(),
            &format!("-tls1_3 -sess_in {}", saved.display()),
        );
        assert!(
            again.contains("Reused,")
                && again.contains("CLIENT_ERROR unauthenticated")
                && !again.contains("psk_identity"),
            "{cache}: {again}"
        );
    }
}

/// `psk:` listeners accept only pre-shared keys: a certificate-only client gets no handshake,
/// not an anonymous connection; `mtls:` listeners accept no PSK in place of a certificate; and
/// a server with PSKs and no certificate at all serves PSK clients only.
#[test]
fn psk_listeners_require_a_psk_and_mtls_listeners_refuse_one() {
    let dir = TempDir::new().expect("temp dir");
    let pki = Pki::new();
    let key = hex(KEY.as_bytes());
    let psk = write_private(dir.path(), "psk", &format!("client1:{KEY}\n"));
    let with_psk = format!("{},ssl_psk_file={}", pki.cert_opts(), psk.display());
    // No -Y: the listener alone decides who connects.
    let server = Server::start(
        Kind::Rampart,
        &["-Z", "-o", &with_psk, "-l", "psk:127.0.0.1:0"],
    );
    let psk_port = second_port(&server);
    for version in ["-tls1_3", "-tls1_2 -cipher PSK"] {
        let good = s_client(
            psk_port,
            &format!("{version} -psk_identity client1 -psk {key}"),
        );
        assert!(good.contains("VERSION "), "{version}: {good}");
        let unknown = s_client(
            psk_port,
            &format!("{version} -psk_identity nobody -psk {key}"),
        );
        assert!(!unknown.contains("VERSION "), "{version}: {unknown}");
    }
    let without = s_client(psk_port, "");
    assert!(
        !without.contains("VERSION "),
        "a client without a PSK was served on psk: {without}"
    );
    // The same client on the ordinary TLS listener is served (anonymously).
    assert!(s_client(server.port(), "").contains("VERSION "));
    drop(server);

    let server = Server::start(
        Kind::Rampart,
        &["-Z", "-o", &with_psk, "-l", "mtls:127.0.0.1:0"],
    );
    let mtls_port = second_port(&server);
    for version in ["-tls1_3", "-tls1_2 -cipher PSK"] {
        let refused = s_client(
            mtls_port,
            &format!("{version} -psk_identity client1 -psk {key}"),
        );
        assert!(
            !refused.contains("VERSION "),
            "{version}: a PSK stood in for a client certificate on mtls: {refused}"
        );
    }
    drop(server);

    // Pre-shared keys instead of certificates.
    let psk_only = format!("ssl_psk_file={}", psk.display());
    let server = Server::start(Kind::Rampart, &["-Z", "-o", &psk_only]);
    let good = s_client(
        server.port(),
        &format!("-tls1_3 -psk_identity client1 -psk {key}"),
    );
    assert!(
        good.contains("VERSION "),
        "{good}\n{}",
        server.diagnostics()
    );
    assert!(!s_client(server.port(), "").contains("VERSION "));
    drop(server);

    for (args, says) in [
        (
            vec![
                "-Z",
                "-o",
                pki.cert_opts().as_str(),
                "-l",
                "psk:127.0.0.1:0",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
            "ssl_psk_file",
        ),
        (
            vec![
                "-Z".to_owned(),
                "-o".to_owned(),
                psk_only.clone(),
                "-l".to_owned(),
                "mtls:127.0.0.1:0".to_owned(),
            ],
            "ssl_chain_cert",
        ),
        (vec!["-l".to_owned(), "psk:127.0.0.1:0".to_owned()], "-Z"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = Server::try_start(Kind::Rampart, &args).expect_err("started");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
