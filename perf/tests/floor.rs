//! `rampart-floor` (`rampart_perf::floor`), the benchmark's floor server, and its io_uring
//! variant: the generator runs clean against them (plaintext and TLS, pipelined), and a
//! transcript of the commands they serve gets the same bytes from each as from upstream
//! memcached.

// Tests may unwrap: a failure is a panic with the error in it either way.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rampart_perf::floor::uring::UringFloor;
use rampart_perf::floor::{Floor, FloorCerts, FloorConfig};
use rampart_perf::{Config, TlsConfig, Verify};

use common::{Memcached, TempDir, assert_clean_with_hits, config, self_signed_cert};

const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A floor server on an ephemeral loopback port, serving from a thread until the test
/// process ends; returns its address.
fn start_floor(tls: Option<FloorCerts>) -> String {
    let floor = Floor::bind(&FloorConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls,
        port_file: None,
    })
    .unwrap();
    let address = format!("127.0.0.1:{}", floor.port().unwrap());
    std::thread::spawn(move || floor.run());
    address
}

/// The io_uring floor, as [`start_floor`]; bound on the thread that serves, as its ring
/// requires. `None` on a kernel older than 6.1, after checking that the floor refuses to
/// start there with an error that names the kernel it needs.
fn start_uring_floor() -> Option<String> {
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let bound = UringFloor::bind(&FloorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            port_file: None,
        });
        match bound {
            Ok(floor) => {
                port_tx.send(Ok(floor.port().unwrap())).unwrap();
                floor.run()
            }
            Err(e) => {
                port_tx.send(Err(e.to_string())).unwrap();
                Ok(())
            }
        }
    });
    let bound = port_rx.recv().unwrap();
    if kernel_release() >= (6, 1) {
        return Some(format!("127.0.0.1:{}", bound.unwrap()));
    }
    let refusal = bound.expect_err("a kernel before 6.1 cannot run the io_uring floor");
    assert!(refusal.contains("needs Linux 6.1 or later"), "{refusal}");
    eprintln!(
        "Linux {:?}: the io_uring floor refused to start, as it must: {refusal}",
        kernel_release()
    );
    None
}

/// The running kernel's (major, minor) version.
fn kernel_release() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[test]
fn the_generator_runs_clean_against_the_floor() {
    let report = rampart_perf::run(&config(start_floor(None))).unwrap();
    assert_clean_with_hits(&report);
}

#[test]
fn the_generator_runs_clean_against_the_floor_over_tls() {
    let certs = TempDir::new();
    let (cert, key) = self_signed_cert(certs.path());
    let address = start_floor(Some(FloorCerts {
        chain: cert.clone(),
        key,
    }));
    let report = rampart_perf::run(&Config {
        tls: Some(TlsConfig {
            verify: Verify::Ca(cert),
            cert: None,
            key: None,
            server_name: None,
        }),
        connections: 3,
        pipeline: 16,
        ..config(address)
    })
    .unwrap();
    assert_clean_with_hits(&report);
}

#[test]
fn the_generator_runs_clean_against_the_io_uring_floor_pipelined_and_not() {
    let Some(address) = start_uring_floor() else {
        return;
    };
    for pipeline in [1, 16] {
        let report = rampart_perf::run(&Config {
            connections: 8,
            pipeline,
            ..config(address.clone())
        })
        .unwrap();
        assert_clean_with_hits(&report);
    }
}

/// Connections that leave free their slots for the next ones, and a value larger than any one
/// provided buffer arrives over several receives.
#[test]
fn the_io_uring_floor_outlives_its_connections_and_takes_long_values() {
    let Some(address) = start_uring_floor() else {
        return;
    };
    for i in 0..300 {
        let request = format!("set k{i} 0 0 1\r\nx\r\n");
        assert_eq!(exchange(&address, request.as_bytes(), 8), b"STORED\r\n");
    }
    let value = vec![b'v'; 100_000];
    let mut transcript = b"set long 3 0 100000\r\n".to_vec();
    transcript.extend_from_slice(&value);
    transcript.extend_from_slice(b"\r\nget long k299\r\n");
    let mut expected = b"STORED\r\nVALUE long 3 100000\r\n".to_vec();
    expected.extend_from_slice(&value);
    expected.extend_from_slice(b"\r\nVALUE k299 0 1\r\nx\r\nEND\r\n");
    assert!(exchange(&address, &transcript, expected.len()) == expected);
    let report = rampart_perf::run(&config(address)).unwrap();
    assert_clean_with_hits(&report);
}

/// Sends `transcript` in one write and reads until the reply is `expected_len` bytes long.
fn exchange(address: &str, transcript: &[u8], expected_len: usize) -> Vec<u8> {
    let mut conn = TcpStream::connect(address).unwrap();
    conn.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    conn.write_all(transcript).unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while reply.len() < expected_len {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&reply));
        reply.extend_from_slice(&buf[..n]);
    }
    reply
}

#[test]
fn the_floor_answers_its_commands_as_memcached_does() {
    let transcript: &[u8] = b"set a 5 0 3\r\nabc\r\nget a\r\nget missing a\r\n\
        set b 0 0 0 noreply\r\n\r\nset a 7 0 2\r\nxy\r\nget b a\r\nget missing\r\n";
    let expected: &[u8] = b"STORED\r\nVALUE a 5 3\r\nabc\r\nEND\r\nVALUE a 5 3\r\nabc\r\nEND\r\n\
        STORED\r\nVALUE b 0 0\r\n\r\nVALUE a 7 2\r\nxy\r\nEND\r\nEND\r\n";
    let memcached = Memcached::start(&[]);
    assert_eq!(
        String::from_utf8_lossy(&exchange(&memcached.address(), transcript, expected.len())),
        String::from_utf8_lossy(expected),
        "memcached itself"
    );
    for floor in std::iter::once(start_floor(None)).chain(start_uring_floor()) {
        assert_eq!(
            String::from_utf8_lossy(&exchange(&floor, transcript, expected.len())),
            String::from_utf8_lossy(expected)
        );
    }
}
