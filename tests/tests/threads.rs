//! Thread-per-core: rampart with `-t 2` owns each key on one of two cores, and a connection on
//! either core must behave as if there were one cache. Every test here opens connections
//! until both cores have some (the kernel spreads them over the two `SO_REUSEPORT` sockets),
//! so each request is local for some connections and crosses cores for the others.
//!
//! Which core owns a key comes from [`rampart_tests::cores`].

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rampart_tests::cores::{conns_by_core, conns_on_every_core, key_on, stat, stats};
use rampart_tests::io::Conn;
use rampart_tests::report::escape;
use rampart_tests::server::run_bounded;
use rampart_tests::{Kind, Server};

const SHARDS: usize = 2;
const THREADS_ARG: &[&str] = &["-t", "2"];
/// Bound for the concurrent tests' clients.
const CLIENTS_BOUND: Duration = Duration::from_secs(60);
/// Bound for the exit after SIGTERM: well under the server's 5 s drain limit, so a core that
/// waits for a reply that never comes shows up as a failure, not as a slow exit.
const QUICK_EXIT_BOUND: Duration = Duration::from_secs(4);
const EX_USAGE: i32 = 64;

#[test]
fn more_threads_than_cpus_is_refused_with_usage_status() {
    let mut cmd = Kind::Rampart.command();
    cmd.args(["-l", "127.0.0.1:0", "-U", "0", "-t", "100000"]);
    let done = run_bounded(cmd, Duration::from_secs(10));
    assert_eq!(
        done.status.and_then(|s| s.code()),
        Some(EX_USAGE),
        "{done:?}"
    );
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].contains("-t 100000") && lines[0].contains("CPU"),
        "expected one line naming -t and the CPUs: {done:?}"
    );
}

#[test]
#[cfg_attr(one_cpu, ignore = "needs two CPUs: -t 2 cannot start on this machine")]
fn pipelined_requests_for_both_cores_keep_reply_order() {
    let server = Server::start(Kind::Rampart, THREADS_ARG);
    for (n, conn) in conns_on_every_core(&server, SHARDS).iter_mut().enumerate() {
        let (a, b) = (
            key_on(0, SHARDS, &format!("order{n}-"), 0),
            key_on(1, SHARDS, &format!("order{n}-"), 0),
        );
        let (c, d) = (
            key_on(0, SHARDS, &format!("order{n}-"), 1),
            key_on(1, SHARDS, &format!("order{n}-"), 1),
        );
        let request = format!(
            "set {a} 1 0 2\r\naa\r\nset {b} 2 0 2\r\nbb\r\nget {b}\r\nget {a}\r\n\
             set {c} 0 0 1\r\n5\r\nincr {c} 10\r\nincr {d} 1\r\nadd {d} 0 0 1\r\n7\r\n\
             decr {d} 3\r\nappend {b} 0 0 1\r\n!\r\nprepend {a} 0 0 1\r\n^\r\n\
             touch {b} 100\r\ntouch {d} 100\r\ndelete {c}\r\ndelete {c}\r\n\
             set {c} 0 0 1 noreply\r\nx\r\nversion\r\nget {a} {b} {c} {d}\r\n"
        );
        let last = format!("VALUE {d} 0 1\r\n4\r\nEND\r\n");
        let reply = conn.roundtrip(request.as_bytes(), last.as_bytes());
        let reply = String::from_utf8_lossy(&reply).into_owned();
        let version_line = reply
            .lines()
            .find(|l| l.starts_with("VERSION "))
            .unwrap_or_default()
            .to_string();
        let expected = format!(
            "STORED\r\nSTORED\r\nVALUE {b} 2 2\r\nbb\r\nEND\r\nVALUE {a} 1 2\r\naa\r\nEND\r\n\
             STORED\r\n15\r\nNOT_FOUND\r\nSTORED\r\n4\r\nSTORED\r\nSTORED\r\n\
             TOUCHED\r\nTOUCHED\r\nDELETED\r\nNOT_FOUND\r\n{version_line}\r\n\
             VALUE {a} 1 3\r\n^aa\r\nVALUE {b} 2 3\r\nbb!\r\nVALUE {c} 0 1\r\nx\r\n\
             VALUE {d} 0 1\r\n4\r\nEND\r\n"
        );
        assert_eq!(reply, expected, "connection {n}\n{}", server.diagnostics());
    }
}

#[test]
#[cfg_attr(one_cpu, ignore = "needs two CPUs: -t 2 cannot start on this machine")]
fn multi_get_across_cores_answers_in_key_order_with_unique_cas() {
    let server = Server::start(Kind::Rampart, THREADS_ARG);
    let mut conns = conns_on_every_core(&server, SHARDS);
    // Interleave the two cores' keys, with misses among them.
    let mut keys = Vec::new();
    for i in 0..20 {
        keys.push(key_on(i % 2, SHARDS, "multi", i / 2));
    }
    for (i, key) in keys.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
        let set = format!("set {key} {i} 0 {}\r\n{key}\r\n", key.len());
        assert_eq!(conns[0].roundtrip(set.as_bytes(), b"\r\n"), b"STORED\r\n");
    }
    let mut order: Vec<&String> = keys.iter().rev().collect();
    order.rotate_left(7);
    let request = format!(
        "gets {}\r\n",
        order
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    for conn in &mut conns {
        let reply = conn.roundtrip(request.as_bytes(), b"END\r\n");
        let text = String::from_utf8_lossy(&reply);
        let mut lines = text.split("\r\n");
        let mut uniques = HashSet::new();
        for key in &order {
            let index = keys.iter().position(|k| k == *key).unwrap_or(0);
            if index % 3 == 0 {
                continue;
            }
            let header = lines.next().unwrap_or_default();
            let fields: Vec<&str> = header.split(' ').collect();
            assert_eq!(
                &fields[..4],
                [
                    "VALUE",
                    key.as_str(),
                    &index.to_string(),
                    &key.len().to_string()
                ],
                "{text}"
            );
            assert!(
                uniques.insert(fields[4].to_string()),
                "duplicate CAS: {text}"
            );
            assert_eq!(lines.next(), Some(key.as_str()), "{text}");
        }
        assert_eq!(lines.next(), Some("END"), "{text}");
    }
}

#[test]
#[cfg_attr(one_cpu, ignore = "needs two CPUs: -t 2 cannot start on this machine")]
fn one_read_of_requests_for_another_core_is_one_message() {
    let server = Server::start(Kind::Rampart, THREADS_ARG);
    let mut conn = server.conn();
    // 16 gets for each core's keys in one write: whichever core the connection is on, the 16
    // for the other one cross as one batch.
    let mut request = String::new();
    for i in 0..16 {
        request += &format!(
            "get {}\r\nget {}\r\n",
            key_on(0, SHARDS, "batch", i),
            key_on(1, SHARDS, "batch", i)
        );
    }
    let before = stats(&mut conn, "shards");
    let reply = conn.roundtrip(request.as_bytes(), &b"END\r\n".repeat(32));
    assert_eq!(reply, b"END\r\n".repeat(32));
    let after = stats(&mut conn, "shards");
    let total = |stats: &[(String, u64)], name: &str| -> u64 {
        (0..SHARDS)
            .map(|i| stat(stats, &format!("shard:{i}:{name}")))
            .sum()
    };
    // Between the two snapshots: the first `stats shards` itself (one message to the other
    // core, one op) and the pipeline (one message, 16 ops).
    assert_eq!(
        total(&after, "batches_sent") - total(&before, "batches_sent"),
        2,
        "{after:?}"
    );
    assert_eq!(
        total(&after, "ops_served") - total(&before, "ops_served"),
        17
    );
}

/// Connections per core in the hop test: well over the spares a thread keeps (16).
const WAITING_PER_CORE: usize = 48;
/// Rounds of the hop test.
const HOP_ROUNDS: usize = 20;
/// Allocations the hop test allows over its rounds: a core's spares cover whatever one turn
/// holds at once when waiting connections hold nothing, so none are expected; this leaves
/// room for one per core (a `stats` call, a turn that found input half-read).
const HOP_ALLOCATIONS_ALLOWED: u64 = 2;

#[test]
#[cfg_attr(one_cpu, ignore = "needs two CPUs: -t 2 cannot start on this machine")]
fn connections_waiting_on_the_other_core_hold_no_read_buffer() {
    // Many connections of each core, each with a get for the other core's key in flight at
    // once: the ones waiting for their replies must not hold read buffers, or the core runs
    // out of spares and allocates one per read (`shard:N:buffers_allocated`).
    let server = Server::start(Kind::Rampart, THREADS_ARG);
    let mut by_core = conns_by_core(&server, SHARDS, WAITING_PER_CORE);
    let gets: Vec<Vec<u8>> = (0..SHARDS)
        .map(|core| {
            format!(
                "get {}\r\n",
                key_on((core + 1) % SHARDS, SHARDS, "hop", core)
            )
            .into()
        })
        .collect();
    let allocated = |conn: &mut Conn| -> u64 {
        let shards = stats(conn, "shards");
        (0..SHARDS)
            .map(|i| stat(&shards, &format!("shard:{i}:buffers_allocated")))
            .sum()
    };
    // One round: every connection's get sent, then every reply read.
    let round = |by_core: &mut [Vec<Conn>]| {
        for (core, conns) in by_core.iter_mut().enumerate() {
            for conn in conns.iter_mut() {
                conn.send(&gets[core]).expect("send");
            }
        }
        for conns in by_core.iter_mut() {
            for conn in conns.iter_mut() {
                let reply = conn.read_until(b"END\r\n", Duration::from_secs(10));
                assert_eq!(reply.bytes, b"END\r\n", "{}", server.diagnostics());
            }
        }
    };
    // A first round, so that each core has taken what its spares start with.
    round(&mut by_core);
    let before = allocated(&mut by_core[0][0]);
    for _ in 0..HOP_ROUNDS {
        round(&mut by_core);
    }
    let after = allocated(&mut by_core[0][0]);
    assert!(
        after - before <= HOP_ALLOCATIONS_ALLOWED,
        "{} buffers allocated over {HOP_ROUNDS} rounds of {WAITING_PER_CORE} waiting \
         connections per core",
        after - before
    );
}

#[test]
#[cfg_attr(one_cpu, ignore = "needs two CPUs: -t 2 cannot start on this machine")]
fn flush_all_and_stats_cover_every_core() {
    let server = Server::start(Kind::Rampart, THREADS_ARG);
    let mut conns = conns_on_every_core(&server, SHARDS);
    let keys: Vec<String> = (0..10)
        .map(|i| key_on(i % 2, SHARDS, "flush", i / 2))
        .collect();
    for key in &keys {
        let reply = conns[0].roundtrip(format!("set {key} 0 0 1\r\nv\r\n").as_bytes(), b"\r\n");
        assert_eq!(reply, b"STORED\r\n");
    }
    for conn in &mut conns {
        let general = stats(conn, "");
        assert_eq!(stat(&general, "curr_items"), 10);
        assert_eq!(stat(&general, "threads"), 2);
        assert_eq!(stat(&general, "limit_maxbytes"), 64 * 1024 * 1024);
        // Each shard's index holds its 5 items in its first allocation: 16 buckets of 16
        // bytes (rampart_store::index).
        assert_eq!(stat(&general, "hash_bytes"), 2 * 16 * 16);
        let shards = stats(conn, "shards");
        assert_eq!(stat(&shards, "shard:0:curr_items"), 5);
        assert_eq!(stat(&shards, "shard:1:curr_items"), 5);
        assert_eq!(stat(&shards, "shard:0:limit_maxbytes"), 32 * 1024 * 1024);
        let settings = stats(conn, "settings");
        assert_eq!(stat(&settings, "num_threads"), 2);
    }
    let last = conns.len() - 1;
    assert_eq!(conns[last].roundtrip(b"flush_all\r\n", b"\r\n"), b"OK\r\n");
    let get = format!("get {}\r\n", keys.join(" "));
    for conn in &mut conns {
        assert_eq!(conn.roundtrip(get.as_bytes(), b"END\r\n"), b"END\r\n");
    }
    let general = stats(&mut conns[0], "");
    assert_eq!(stat(&general, "cmd_flush"), 1, "one flush_all counts once");
    assert_eq!(
        conns[0].roundtrip(b"stats reset\r\n", b"\r\n"),
        b"RESET\r\n"
    );
    let shards = stats(&mut conns[0], "shards");
    assert_eq!(
        stat(&shards, "shard:0:get_hits") + stat(&shards, "shard:1:get_hits"),
        0
    );
}

/// One client's share of the concurrent test: `rounds` increments of each counter key and
/// `rounds` compare-and-swap increments of the CAS key, retried until they win.
fn counting_client(mut conn: Conn, counters: &[String], cas_key: &str, rounds: u32) {
    let deadline = Instant::now() + CLIENTS_BOUND;
    for _ in 0..rounds {
        let incrs: String = counters.iter().map(|k| format!("incr {k} 1\r\n")).collect();
        let reply = conn.roundtrip(incrs.as_bytes(), b"\r\n");
        let mut got = reply;
        for _ in 1..counters.len() {
            got.extend(conn.read_until(b"\r\n", Duration::from_secs(5)).bytes);
        }
        assert_eq!(
            String::from_utf8_lossy(&got).matches("\r\n").count(),
            counters.len(),
            "{}",
            escape(&got)
        );
        loop {
            assert!(Instant::now() < deadline, "cas loop did not finish in time");
            let reply = conn.roundtrip(format!("gets {cas_key}\r\n").as_bytes(), b"END\r\n");
            let text = String::from_utf8_lossy(&reply).into_owned();
            let mut lines = text.split("\r\n");
            let header: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
            let value: u64 = lines.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let unique = header.get(4).copied().unwrap_or("0");
            let next = (value + 1).to_string();
            let request = format!("cas {cas_key} 0 0 {} {unique}\r\n{next}\r\n", next.len());
            match &conn.roundtrip(request.as_bytes(), b"\r\n")[..] {
                b"STORED\r\n" => break,
                b"EXISTS\r\n" => continue,
                other => panic!("cas got {}", escape(other)),
            }
        }
    }
}

#[test]
#[cfg_attr(one_cpu, ignore = "needs two CPUs: -t 2 cannot start on this machine")]
fn concurrent_incr_and_cas_loops_on_both_cores_end_with_exact_totals() {
    const CLIENTS: usize = 4;
    const CONNS_PER_CLIENT: usize = 2;
    const ROUNDS: u32 = 250;
    let server = Server::start(Kind::Rampart, THREADS_ARG);
    // Keys on both cores: each client's increments cross cores for some of its connections.
    let counters: Vec<String> = vec![key_on(0, SHARDS, "count", 0), key_on(1, SHARDS, "count", 0)];
    let cas_key = key_on(1, SHARDS, "cas", 0);
    let mut setup = server.conn();
    for key in counters.iter().chain([&cas_key]) {
        assert_eq!(
            setup.roundtrip(format!("set {key} 0 0 1\r\n0\r\n").as_bytes(), b"\r\n"),
            b"STORED\r\n"
        );
    }
    // The kernel spreads connections over the cores' listeners by a hash, so eight may all
    // land on one core (0.4% of runs failed so): connect until both cores have some.
    let port = server.port();
    let connect = || {
        let stream =
            TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect: {e}"));
        let _ = stream.set_nodelay(true);
        Conn::new(stream)
    };
    let per_core = |setup: &mut Conn| -> Vec<u64> {
        let shards = stats(setup, "shards");
        (0..SHARDS)
            .map(|i| stat(&shards, &format!("shard:{i}:curr_connections")))
            .collect()
    };
    let setup_core = per_core(&mut setup);
    let mut conns: Vec<Conn> = (0..CLIENTS * CONNS_PER_CLIENT).map(|_| connect()).collect();
    while per_core(&mut setup)
        .iter()
        .zip(&setup_core)
        .any(|(all, setup)| all == setup)
    {
        assert!(conns.len() < 64, "64 connections all on one core");
        conns.push(connect());
    }
    let clients_len = conns.len();
    let started = Instant::now();
    let clients: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            let (counters, cas_key) = (counters.clone(), cas_key.clone());
            thread::spawn(move || counting_client(conn, &counters, &cas_key, ROUNDS))
        })
        .collect();
    for client in clients {
        if let Err(panic) = client.join() {
            std::panic::resume_unwind(panic);
        }
    }
    assert!(started.elapsed() < CLIENTS_BOUND);
    let total = clients_len as u64 * u64::from(ROUNDS);
    let get = format!("get {} {} {cas_key}\r\n", counters[0], counters[1]);
    let reply = String::from_utf8_lossy(&setup.roundtrip(get.as_bytes(), b"END\r\n")).into_owned();
    let values: Vec<u64> = reply
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with("VALUE") && *l != "END")
        .map(|v| v.trim().parse().unwrap_or(u64::MAX))
        .collect();
    assert_eq!(
        values,
        [total, total, total],
        "{reply}\n{}",
        server.diagnostics()
    );
    let shards = stats(&mut setup, "shards");
    assert!(
        (0..SHARDS).all(|i| stat(&shards, &format!("shard:{i}:total_connections")) > 0),
        "every core served some of the clients: {shards:?}"
    );
}

/// What a request of the shutdown test expects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Stored,
    Value,
}

/// Splits complete replies off the front of `buf`; returns how many, and whether the rest is
/// a well-formed beginning of the next one (not garbage).
fn complete_replies(buf: &[u8], expects: &[Expect]) -> Result<(usize, usize), String> {
    let mut at = 0;
    let mut count = 0;
    for expect in expects {
        let rest = &buf[at..];
        let line_end = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(end) => end,
            None => return Ok((count, at)),
        };
        let line = &rest[..line_end];
        let used = match expect {
            Expect::Stored if line == b"STORED" => line_end + 2,
            Expect::Value if line == b"END" => line_end + 2,
            Expect::Value if line.starts_with(b"VALUE ") => {
                let text = String::from_utf8_lossy(line);
                let len: usize = text
                    .split(' ')
                    .nth(3)
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("bad header {text}"))?;
                let block = line_end + 2 + len + 2;
                if rest.len() < block + 5 {
                    return Ok((count, at));
                }
                if &rest[block - 2..block] != b"\r\n" || &rest[block..block + 5] != b"END\r\n" {
                    return Err(format!("bad value block after {text}"));
                }
                block + 5
            }
            _ => return Err(format!("unexpected {} for {expect:?}", escape(line))),
        };
        at += used;
        count += 1;
    }
    Ok((count, at))
}

/// Pipelines rounds of sets and gets of both cores' keys until the server closes the
/// connection; returns (requests sent, complete replies received).
fn pipelining_client(
    stream: TcpStream,
    id: usize,
    sending: &AtomicBool,
) -> Result<(usize, usize), String> {
    const DEPTH: usize = 16;
    let mut stream = stream;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut expects = Vec::new();
    let mut received = Vec::new();
    let mut round = 0;
    while sending.load(Ordering::Acquire) {
        let mut request = String::new();
        for i in 0..DEPTH {
            let key = key_on(i % SHARDS, SHARDS, &format!("load{id}-"), i / SHARDS);
            if i % 4 == 0 {
                let value = format!("v{round}-{i}");
                request += &format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
                expects.push(Expect::Stored);
            } else {
                request += &format!("get {key}\r\n");
                expects.push(Expect::Value);
            }
        }
        if stream.write_all(request.as_bytes()).is_err() {
            break;
        }
        round += 1;
        let (mut done, _) = complete_replies(&received, &expects)?;
        let mut chunk = [0u8; 16 * 1024];
        while done < expects.len() {
            match stream.read(&mut chunk) {
                Ok(0) => return finish(&received, &expects),
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return finish(&received, &expects);
                }
                Err(e) => return Err(format!("read: {e}")),
            }
            done = complete_replies(&received, &expects)?.0;
        }
    }
    // Told to stop: nothing more to send, so the server sees the end and closes.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    received.extend(rest);
    finish(&received, &expects)
}

fn finish(received: &[u8], expects: &[Expect]) -> Result<(usize, usize), String> {
    let (count, used) = complete_replies(received, expects)?;
    if used != received.len() {
        return Err(format!(
            "a reply cut short after {count} complete ones: {}",
            escape(&received[used..])
        ));
    }
    Ok((expects.len(), count))
}

#[test]
#[cfg_attr(one_cpu, ignore = "needs two CPUs: -t 2 cannot start on this machine")]
fn sigterm_during_cross_core_pipelines_answers_or_closes_and_exits_zero() {
    const CLIENTS: usize = 8;
    let mut server = Server::start(Kind::Rampart, THREADS_ARG);
    let sending = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let stream = server.connect();
            let sending = Arc::clone(&sending);
            thread::spawn(move || pipelining_client(stream, id, &sending))
        })
        .collect();
    // Let the load build up: some rounds must have been answered before the signal.
    let mut probe = server.conn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stat(&stats(&mut probe, ""), "cmd_get") < 2_000 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    drop(probe);
    server.signal(libc::SIGTERM);
    let signalled = Instant::now();
    thread::sleep(Duration::from_millis(20));
    sending.store(false, Ordering::Release);
    let mut answered = 0;
    for client in clients {
        match client.join() {
            Ok(Ok((sent, replies))) => {
                assert!(replies <= sent);
                answered += replies;
            }
            Ok(Err(problem)) => panic!("{problem}\n{}", server.diagnostics()),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    assert!(answered > 0, "no reply at all\n{}", server.diagnostics());
    let status = server.wait_exit(QUICK_EXIT_BOUND.saturating_sub(signalled.elapsed()));
    assert!(
        status.is_some_and(|s| s.success()),
        "after SIGTERM: {status:?}\n{}",
        server.diagnostics()
    );
}
