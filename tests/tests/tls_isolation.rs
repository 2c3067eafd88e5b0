//! Rampart-only TLS rules that close holes rather than match memcached (memcached 1.6.18 has
//! neither `mtls:` listeners nor exact handshake accounting):
//! - a session made where no client certificate was asked for cannot be resumed on an
//!   `mtls:` listener, where resuming would skip the certificate check;
//! - every refused handshake counts once in `ssl_handshake_errors`, including clients that
//!   reset the connection instead of reading the alert.

use std::ffi::OsStr;
use std::io::Write;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

use rampart_tests::Kind;
use rampart_tests::python;
use rampart_tests::tls::{Pki, TlsConn, poll, second_port, start_tls, tcp_connect};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
const STATS_POLLS: u32 = 50;
const STATS_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Connections in the reset test.
const RESETTING_CLIENTS: u64 = 20;

fn handshake_errors(conn: &mut TlsConn) -> u64 {
    conn.stat_number("ssl_handshake_errors")
}

#[test]
fn a_session_without_a_client_certificate_does_not_resume_on_mtls() {
    // Tickets resume sessions with or without the server-side cache.
    for cache in [&["ssl_session_cache"][..], &[]] {
        let pki = Pki::new();
        let ca = pki.ca_opts();
        let mut opts = vec![ca.as_str()];
        opts.extend_from_slice(cache);
        let server = start_tls(Kind::Rampart, &pki, &opts, &["-l", "mtls:127.0.0.1:0"]);
        let port2 = second_port(&server).to_string();
        let args = [
            OsStr::new("resume_mtls"),
            OsStr::new("--port2"),
            OsStr::new(&port2),
            OsStr::new("--ca"),
            pki.ca.cert_path.as_os_str(),
        ];
        let out = python::run_script(
            &python::python(),
            "tls_clients.py",
            &server,
            &args,
            SCRIPT_TIMEOUT,
        );
        assert!(
            out.contains("first has a session -> True")
                && out.contains("mtls refused the certificate-less client -> True"),
            "{cache:?}: stdout:\n{out}\n{}",
            server.diagnostics()
        );
    }
}

#[test]
fn a_refused_handshake_counts_once_even_when_the_client_resets() {
    let pki = Pki::new();
    let server = start_tls(Kind::Rampart, &pki, &[], &[]);
    let mut observer = pki.client().open(&server);
    let before = handshake_errors(&mut observer);
    for _ in 0..RESETTING_CLIENTS {
        let mut stream: TcpStream = tcp_connect(server.port()).expect("tcp connect");
        // Not a TLS record: the server refuses it with an alert the client never reads.
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct; a
        // zero linger makes the close below send RST.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(stream);
    }
    let expected = before + RESETTING_CLIENTS;
    let seen = poll(STATS_POLLS, STATS_POLL_INTERVAL, || {
        (handshake_errors(&mut observer) >= expected).then_some(())
    });
    // Give a double count time to show.
    std::thread::sleep(Duration::from_millis(300));
    let count = handshake_errors(&mut observer);
    assert!(
        seen.is_some() && count == expected,
        "ssl_handshake_errors is {count}, expected {expected}\n{}",
        server.diagnostics()
    );
}
