//! `rampart_perf::run` against upstream memcached (Debian package `memcached`): a closed and an
//! open loop over plaintext, one over TLS, and a run the server answers with errors.
//! Counts are checked, never timings: those belong to benchmarks.

// Tests may unwrap: a failure is a panic with the error in it either way.
#![allow(clippy::unwrap_used)]

mod common;

use rampart_perf::{Config, Stop, TlsConfig, Verify};

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
