//! Issue 12: a connection waiting for its next request holds no buffer, so a burst of
//! connections that each made a request costs the server their state and nothing more.
//!
//! Each test opens its connections one after another, each making one request, and reads
//! the server's resident memory (`VmRSS`) right after the last reply. Before rampart lent
//! its buffers per turn, every connection kept its read buffers (and, under TLS, its
//! ciphertext buffers) until it had waited a second or more, and the same bursts measured
//! 19 KiB per plaintext connection and 30-33 KiB per TLS one; with the buffers lent, 2.5 and
//! 17.5 (debug and release builds alike). Since a TLS 1.3 connection's records are rampart's
//! own after the handshake and OpenSSL's connection object is freed (`rampart_tls`'s record
//! layer), a TLS one measures about 5.5 KiB. The bounds sit between, the TLS one below
//! memcached's 14.4 KiB (issue 12's target).

use openssl::ssl::SslVersion;
use rampart_tests::io::Conn;
use rampart_tests::tls::{ClientConfig, Pki, start_tls, tcp_connect};
use rampart_tests::{Kind, Server};

/// Connections opened before the measured ones: the first allocations (the thread's spare
/// buffers, the connection table, the allocator's own) are not the connections'.
const WARM_UP: usize = 50;
const PLAIN_CONNECTIONS: usize = 400;
/// Few enough to open within the old hold of a second or two, so that a regression shows.
const TLS_CONNECTIONS: usize = 100;
/// Per plaintext connection: below one 16 KiB read buffer by half.
const PLAIN_BOUND_BYTES: u64 = 8 * 1024;
/// Per TLS connection (1.3, or 1.2 with an AEAD suite): the record layer's state (two AEAD
/// contexts, about 2.3 KiB) and the connection's, with room for the allocator's rounding;
/// below OpenSSL's connection object alone (about 14 KiB), which a regression that kept it
/// would add.
const TLS_BOUND_BYTES: u64 = 10 * 1024;

fn resident(server: &Server) -> u64 {
    server
        .resident_bytes()
        .unwrap_or_else(|| panic!("the server is gone\n{}", server.diagnostics()))
}

/// Resident bytes per connection that `open` added, over `n` connections after the warm-up.
fn growth_per_connection<C>(server: &Server, n: usize, mut open: impl FnMut() -> C) -> u64 {
    let mut conns: Vec<C> = (0..WARM_UP).map(|_| open()).collect();
    let before = resident(server);
    conns.extend((0..n).map(|_| open()));
    let after = resident(server);
    drop(conns);
    after.saturating_sub(before) / n as u64
}

#[test]
fn plaintext_connections_between_requests_hold_no_read_buffer() {
    let server = Server::start(Kind::Rampart, &["-t", "1", "-c", "2000"]);
    let port = server.port();
    let per_conn = growth_per_connection(&server, PLAIN_CONNECTIONS, || {
        let stream = tcp_connect(port).unwrap_or_else(|e| panic!("connect: {e}"));
        let mut conn = Conn::new(stream);
        let reply = conn.roundtrip(b"version\r\n", b"\r\n");
        assert!(reply.starts_with(b"VERSION "), "{reply:?}");
        conn
    });
    assert!(
        per_conn < PLAIN_BOUND_BYTES,
        "{PLAIN_CONNECTIONS} plaintext connections, each after one request, cost {per_conn} \
         bytes each (bound {PLAIN_BOUND_BYTES})\n{}",
        server.diagnostics()
    );
}

#[test]
fn tls_connections_between_requests_hold_no_buffers() {
    let pki = Pki::new();
    let server = start_tls(Kind::Rampart, &pki, &[], &["-t", "1", "-c", "2000"]);
    let client = ClientConfig::new(&pki);
    let per_conn = growth_per_connection(&server, TLS_CONNECTIONS, || client.open(&server));
    assert!(
        per_conn < TLS_BOUND_BYTES,
        "{TLS_CONNECTIONS} TLS connections, each after one request, cost {per_conn} bytes \
         each (bound {TLS_BOUND_BYTES})\n{}",
        server.diagnostics()
    );
}

/// TLS 1.2 with an AEAD suite (OpenSSL's default choice) hands over as TLS 1.3 does: before
/// it did, the same burst measured 16.6 KiB per connection.
#[test]
fn tls12_connections_between_requests_hold_no_openssl_connection() {
    let pki = Pki::new();
    let server = start_tls(Kind::Rampart, &pki, &[], &["-t", "1", "-c", "2000"]);
    let client = ClientConfig::new(&pki).max_version(SslVersion::TLS1_2);
    let per_conn = growth_per_connection(&server, TLS_CONNECTIONS, || client.open(&server));
    assert!(
        per_conn < TLS_BOUND_BYTES,
        "{TLS_CONNECTIONS} TLS 1.2 connections, each after one request, cost {per_conn} \
         bytes each (bound {TLS_BOUND_BYTES})\n{}",
        server.diagnostics()
    );
}
