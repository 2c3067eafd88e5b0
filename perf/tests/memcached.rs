//! `rampart_perf::run` against upstream memcached (Debian package `memcached`): a closed and an
//! open loop over plaintext, one over TLS, a run the server answers with errors, and ASCII
//! authentication (`-Y`): authenticated runs, a wrong password, and connect-to-first-reply
//! sequences.
//! Counts are checked, never timings: those belong to benchmarks.

// Tests may unwrap: a failure is a panic with the error in it either way.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use rampart_perf::{AsciiAuth, Config, Sequence, Stop, TlsConfig, Verify};

use common::{Memcached, TempDir, assert_clean_with_hits, config, self_signed_cert};

#[test]
fn closed_loop_against_memcached() {
    let server = Memcached::start(&[]);
    let report = rampart_perf::run(&config(server.address())).unwrap();
    assert_clean_with_hits(&report);
    assert_eq!(report.parameters.mode, "closed");
}

#[test]
fn open_loop_against_memcached() {
    let server = Memcached::start(&[]);
    let report = rampart_perf::run(&Config {
        rate: Some(2_000.0),
        ..config(server.address())
    })
    .unwrap();
    assert_clean_with_hits(&report);
    assert_eq!(report.parameters.mode, "open");
}

#[test]
fn a_request_count_is_sent_exactly() {
    let server = Memcached::start(&[]);
    let report = rampart_perf::run(&Config {
        stop: Stop::Requests(1_001),
        connections: 3,
        threads: 2,
        ..config(server.address())
    })
    .unwrap();
    assert_clean_with_hits(&report);
    assert_eq!(report.ops, 1_001);
}

#[test]
fn error_replies_make_the_run_unclean() {
    // Items over 64 KiB are refused with SERVER_ERROR object too large for cache.
    let server = Memcached::start(&["-I", "64k", "-o", "slab_chunk_max=16384"]);
    let report = rampart_perf::run(&Config {
        value_size: 70_000,
        get_ratio: 0.0,
        prepopulate: false,
        stop: Stop::Requests(50),
        ..config(server.address())
    })
    .unwrap();
    assert_eq!(report.ops, 50);
    assert_eq!(report.errors.server_error, 50, "{report:#?}");
    assert!(!report.clean);
    assert!(
        report.failures.iter().any(|f| f.contains("SERVER_ERROR")),
        "{:?}",
        report.failures
    );
}

#[test]
fn closed_loop_over_tls_against_memcached() {
    let certs = TempDir::new();
    let (cert, key) = self_signed_cert(certs.path());
    let chain = format!(
        "ssl_chain_cert={},ssl_key={}",
        cert.display(),
        key.display()
    );
    let server = Memcached::start(&["-Z", "-o", &chain]);
    let report = rampart_perf::run(&Config {
        tls: Some(TlsConfig {
            verify: Verify::Ca(cert.clone()),
            cert: None,
            key: None,
            server_name: None,
        }),
        ..config(server.address())
    })
    .unwrap();
    assert_clean_with_hits(&report);
    assert!(report.parameters.tls);
}

/// memcached with `-Y` and a cleartext `user:password` file (memcached reads it after dropping
/// privileges and checks no permissions, so it may be readable by all).
fn memcached_with_users(dir: &TempDir) -> Memcached {
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:secret\n").unwrap();
    common::set_mode(&users, 0o644);
    Memcached::start(&["-Y", users.to_str().unwrap()])
}

fn alice(password: &str) -> Option<AsciiAuth> {
    Some(AsciiAuth {
        user: "alice".into(),
        password: password.into(),
    })
}

#[test]
fn authenticated_connections_run_clean_against_memcached_with_ascii_auth() {
    let dir = TempDir::new();
    let server = memcached_with_users(&dir);
    let report = rampart_perf::run(&Config {
        auth: alice("secret"),
        ..config(server.address())
    })
    .unwrap();
    assert_clean_with_hits(&report);
    assert_eq!(report.parameters.auth_user.as_deref(), Some("alice"));
}

#[test]
fn without_authentication_memcached_with_ascii_auth_refuses_every_request() {
    let dir = TempDir::new();
    let server = memcached_with_users(&dir);
    let report = rampart_perf::run(&Config {
        prepopulate: false,
        stop: Stop::Requests(10),
        connections: 1,
        // One at a time: memcached answers only the first of a pipeline before authentication.
        pipeline: 1,
        get_ratio: 1.0,
        ..config(server.address())
    })
    .unwrap();
    assert!(!report.clean);
    assert_eq!(report.errors.client_error, 10, "{report:#?}");
}

#[test]
fn a_wrong_password_fails_the_connection_with_the_servers_answer() {
    let dir = TempDir::new();
    let server = memcached_with_users(&dir);
    let error = rampart_perf::run(&Config {
        auth: alice("wrong"),
        ..config(server.address())
    })
    .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, rampart_perf::Error::Auth { .. }), "{text}");
    assert!(text.contains("CLIENT_ERROR"), "{text}");
    assert!(!text.contains("wrong"), "the password is shown: {text}");
}

#[test]
fn handshakes_time_each_connection_to_its_first_reply() {
    let dir = TempDir::new();
    let server = memcached_with_users(&dir);
    let sequence = Sequence {
        connections: 25,
        window: Duration::from_secs(10),
    };
    let replies = rampart_perf::first_replies(
        &Config {
            auth: alice("secret"),
            ..config(server.address())
        },
        sequence,
    )
    .unwrap();
    assert_eq!(replies.connections, 25);
    assert_eq!(replies.auth_user.as_deref(), Some("alice"));
    assert!(replies.latency_us.p50 > 0.0 && replies.latency_us.p50 <= replies.latency_us.max);
    // Unauthenticated, the first get is answered CLIENT_ERROR: the sequence says so.
    let error = rampart_perf::first_replies(&config(server.address()), sequence).unwrap_err();
    assert!(error.to_string().contains("unauthenticated"), "{error}");
}
