//! TLS test support: [`Pki`], a throwaway PKI generated per test; [`start_tls`], a server
//! started with `-Z` on it; [`ClientConfig`] / [`TlsConn`], a blocking OpenSSL client with
//! bounded reads; [`listening_ports`], every listener a server has (the harness's port file
//! reader keeps only the first); and [`for_both_servers!`], one test per server kind.

// Test support: a PKI that cannot be generated or written is a failed test run.
#![allow(clippy::unwrap_used)]

mod client;
mod pki;

pub use client::{ClientConfig, TlsConn, tcp_connect};
pub use pki::{CLIENT_CN, CLIENT_SANS, CLIENT_SERIAL, Issued, Pki, SERVER_SERIAL, SERVER2_SERIAL};

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::thread;
use std::time::Duration;

use crate::{Kind, Server};

/// The `st` column of a listening socket in `/proc/<pid>/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Starts `kind` with `-Z`, the live chain and key, `opts` appended to that `-o` list (e.g.
/// `["ssl_verify_mode=2"]`) and then `args`.
pub fn start_tls(kind: Kind, pki: &Pki, opts: &[&str], args: &[&str]) -> Server {
    let mut o = pki.cert_opts();
    for opt in opts {
        o.push(',');
        o.push_str(opt);
    }
    let mut all = vec!["-Z", "-o", o.as_str()];
    all.extend_from_slice(args);
    Server::start(kind, &all)
}

/// `STAT name value` lines as a map (the value is everything after the name).
pub fn parse_stats(reply: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(reply)
        .lines()
        .filter_map(|line| line.strip_prefix("STAT "))
        .map(|rest| match rest.split_once(' ') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => (rest.to_string(), String::new()),
        })
        .collect()
}

/// The TCP ports `pid` listens on (IPv4 and IPv6), sorted, from `/proc`: the port file names
/// every listener, but the harness keeps only the first. Both servers write their port file
/// after binding every listener, so after [`Server::start`] the list is complete.
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: BTreeSet<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| fs::read_link(e.path()).ok())
                .filter_map(|target| {
                    let t = target.to_string_lossy().into_owned();
                    t.strip_prefix("socket:[")
                        .and_then(|s| s.strip_suffix(']'))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() > 9
                && cols[3] == TCP_LISTEN
                && inodes.contains(cols[9])
                && let Some(port) = cols[1]
                    .rsplit_once(':')
                    .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
            {
                ports.insert(port);
            }
        }
    }
    ports.into_iter().collect()
}

/// The listening port of `server` other than its first (`server.port()`); panics unless there
/// is exactly one.
pub fn second_port(server: &Server) -> u16 {
    let others: Vec<u16> = listening_ports(server.pid())
        .into_iter()
        .filter(|&p| p != server.port())
        .collect();
    match others.as_slice() {
        [port] => *port,
        _ => panic!(
            "expected exactly one listener besides {}, found {others:?}\n{}",
            server.port(),
            server.diagnostics()
        ),
    }
}

/// Polls `probe` up to `attempts` times, `interval` apart, until it returns `Some`.
pub fn poll<T>(
    attempts: u32,
    interval: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    for attempt in 0..attempts {
        if let Some(found) = probe() {
            return Some(found);
        }
        if attempt + 1 < attempts {
            thread::sleep(interval);
        }
    }
    None
}

/// Runs one test body once per server kind, each as its own `#[test]` (`name::memcached`,
/// `name::rampart`), so a failure names the server.
#[macro_export]
macro_rules! for_both_servers {
    ($name:ident, $body:path) => {
        mod $name {
            #[test]
            fn memcached() {
                $body($crate::Kind::Memcached);
            }
            #[test]
            fn rampart() {
                $body($crate::Kind::Rampart);
            }
        }
    };
}
