//! No executor sleeps through work, and none is woken without any.
//!
//! rampart has no heartbeat: no thread rings the executors in case one slept in
//! `io_uring_enter` with work waiting (`crates/server/src/runtime/mod.rs`). Every wait below is
//! bounded, far above what the work takes even on a loaded machine, so that a hang fails the
//! test instead of holding it up.
//!
//! - start-up: two executors must connect their cross-core channels to each other before the
//!   port file is written, and stop together after SIGTERM. The start-up is repeated, several
//!   at once, so that executors lose their CPUs at every point of it. Before any timer of the
//!   server's runs, an executor that sleeps through work sleeps for good: glommio 0.9.0's park
//!   after a preempted pass (third_party/glommio/PATCHES.md) failed this test in each of three
//!   runs, within its first 110 starts.
//! - cross-core requests: one at a time, for keys the other core owns, so that each one wakes
//!   both executors from sleep, while busy threads oversubscribe the CPUs. The server's
//!   housekeeping timer (every 100 ms while it has items) may end a sleep that missed
//!   its wake-up, so a missed wake-up can show as a late reply here rather than a hang;
//!   glommio 0.9.0's park still hung this test in each of three runs. The same exchange
//!   without any timer, where every missed wake-up is a hang, is
//!   `crates/server/tests/wakeups.rs`.
//! - idle: the server's threads wake only for the executors' housekeeping timer, once a second
//!   each.
//!
//! glommio's park after a preempted pass also has a test of its own, in-process and certain to
//! hit the race: `crates/server/tests/scheduler.rs`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rampart_tests::cores::{conns_by_core, key_on, stat, stats};
use rampart_tests::io::{Conn, End};
use rampart_tests::report::escape;
use rampart_tests::{Kind, Server};

const SHARDS: usize = 2;
const THREADS_ARG: &[&str] = &["-t", "2"];

/// How often the two-core server is started.
const STARTS: usize = 200;
/// How many of those start at the same time, and so compete for the CPUs.
const STARTS_AT_ONCE: usize = 4;

/// Busy threads beside the server's two executors on this machine's CPUs.
const SPINNERS: usize = 4;
/// Connections on each core that ask for the other core's keys.
const CLIENTS_PER_CORE: usize = 2;
/// Requests each of them sends, one at a time.
const REQUESTS_PER_CLIENT: usize = 1000;
/// How long one request may wait for its reply. Under the oversubscription here a reply takes
/// milliseconds; after a missed wake-up it may never come.
const ANSWER_BOUND: Duration = Duration::from_secs(2);
/// How long the spinners spin at most, should the test fail before it stops them.
const SPIN_LIMIT: Duration = Duration::from_secs(120);

/// How long the idle server is watched.
const IDLE_WATCH: Duration = Duration::from_secs(3);
/// Wake-ups per second of an executor with no connections and no items: its housekeeping
/// timer (`IDLE_HOUSEKEEPING_INTERVAL`, 1 s, in `crates/server/src/lib.rs`).
const IDLE_WAKES_PER_SECOND: f64 = 1.0;
/// Wake-ups each executor may add at the edges of the window: the first connection's close,
/// and the shorter housekeeping turn that follows it.
const EDGE_WAKES: f64 = 6.0;

/// Starts the two-core server, asks both cores something, stops it, and expects exit status 0.
fn start_ask_stop(run: usize) {
    let mut server = Server::try_start(Kind::Rampart, THREADS_ARG)
        .unwrap_or_else(|msg| panic!("start {run} did not get ready: {msg}"));
    let mut conn = server.conn();
    let reply = conn.roundtrip(b"version\r\n", b"\r\n");
    assert!(
        reply.starts_with(b"VERSION "),
        "start {run}: {}",
        escape(&reply)
    );
    // One key of each core: whichever core the connection is on, one crosses to the other.
    let get = format!(
        "get {} {}\r\n",
        key_on(0, SHARDS, "start", 0),
        key_on(1, SHARDS, "start", 0)
    );
    assert_eq!(conn.roundtrip(get.as_bytes(), b"END\r\n"), b"END\r\n");
    drop(conn);
    let status = server.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "start {run}: after SIGTERM, {status:?}\n{}",
        server.diagnostics()
    );
}

#[test]
#[cfg_attr(one_cpu, ignore = "needs two CPUs: -t 2 cannot start on this machine")]
fn two_cores_start_answer_and_stop_200_times() {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    thread::scope(|scope| {
        for _ in 0..STARTS_AT_ONCE {
            scope.spawn(|| {
                loop {
                    let run = next.fetch_add(1, Ordering::Relaxed);
                    if run >= STARTS || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    // Marks the failure for the other threads, then fails this one.
                    let marked = Marked(&failed);
                    start_ask_stop(run);
                    std::mem::forget(marked);
                }
            });
        }
    });
}

/// Sets its flag when dropped, that is, when a start panics before it is forgotten.
struct Marked<'a>(&'a AtomicBool);

impl Drop for Marked<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Busy threads that run until `stop`, or [`SPIN_LIMIT`] at most.
fn spin(stop: &Arc<AtomicBool>) -> Vec<thread::JoinHandle<()>> {
    (0..SPINNERS)
        .map(|_| {
            let stop = Arc::clone(stop);
            thread::spawn(move || {
                let until = Instant::now() + SPIN_LIMIT;
                let mut x: u64 = 1;
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    for _ in 0..10_000 {
                        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                    }
                }
            })
        })
        .collect()
}

/// Sends `request` and waits at most [`ANSWER_BOUND`] for a reply ending in `terminator`,
/// which must be `expected`.
fn ask(
    conn: &mut Conn,
    request: &[u8],
    (expected, terminator): (&[u8], &[u8]),
    what: &str,
) -> Result<(), String> {
    conn.send(request)
        .map_err(|e| format!("{what}: sending {}: {e}", escape(request)))?;
    let reply = conn.read_until(terminator, ANSWER_BOUND);
    match reply.end {
        End::Terminator if reply.bytes == expected => Ok(()),
        End::Terminator => Err(format!(
            "{what}: {} answered {}, expected {}",
            escape(request),
            escape(&reply.bytes),
            escape(expected)
        )),
        End::Timeout => Err(format!(
            "{what}: {} unanswered after {ANSWER_BOUND:?} (a missed wake-up; got {})",
            escape(request),
            escape(&reply.bytes)
        )),
        end => Err(format!("{what}: {} ended with {end}", escape(request))),
    }
}

/// A connection on core `core` setting and getting keys of the other core, one request at a
/// time, with short pauses now and then so that both executors go to sleep between requests.
fn remote_client(mut conn: Conn, core: usize, n: usize) -> Result<(), String> {
    let other = (core + 1) % SHARDS;
    let keys: Vec<String> = (0..8)
        .map(|i| key_on(other, SHARDS, &format!("wake{core}-{n}-"), i))
        .collect();
    for i in 0..REQUESTS_PER_CLIENT / 2 {
        let key = &keys[i % keys.len()];
        let value = format!("v{i}");
        let what = format!("core {core}, connection {n}, round {i}, core {other}'s key");
        let set = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
        ask(&mut conn, set.as_bytes(), (b"STORED\r\n", b"\r\n"), &what)?;
        let get = format!("get {key}\r\n");
        let hit = format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len());
        ask(
            &mut conn,
            get.as_bytes(),
            (hit.as_bytes(), b"END\r\n"),
            &what,
        )?;
        if i % 8 == 0 {
            thread::sleep(Duration::from_millis(1 + (i % 3) as u64));
        }
    }
    Ok(())
}

#[test]
#[cfg_attr(one_cpu, ignore = "needs two CPUs: -t 2 cannot start on this machine")]
fn cross_core_requests_are_answered_while_busy_threads_oversubscribe_the_cpus() {
    let server = Server::start(Kind::Rampart, THREADS_ARG);
    let by_core = conns_by_core(&server, SHARDS, CLIENTS_PER_CORE);
    let stop = Arc::new(AtomicBool::new(false));
    let spinners = spin(&stop);
    let clients: Vec<_> = by_core
        .into_iter()
        .enumerate()
        .flat_map(|(core, conns)| {
            conns
                .into_iter()
                .enumerate()
                .map(move |(n, conn)| thread::spawn(move || remote_client(conn, core, n)))
        })
        .collect();
    let outcomes: Vec<_> = clients.into_iter().map(thread::JoinHandle::join).collect();
    stop.store(true, Ordering::Relaxed);
    for spinner in spinners {
        let _ = spinner.join();
    }
    let mut failures = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => failures.push(failure),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        server.diagnostics()
    );
    let shards = stats(&mut server.conn(), "shards");
    for core in 0..SHARDS {
        assert!(
            stat(&shards, &format!("shard:{core}:ops_served")) >= REQUESTS_PER_CLIENT as u64,
            "core {core} served its peer's requests: {shards:?}"
        );
    }
}

/// One of a process's threads: its name and how often it has blocked (each block is followed
/// by a wake-up: `voluntary_ctxt_switches` in `/proc/<pid>/task/<tid>/status`).
#[derive(Debug)]
struct Task {
    name: String,
    blocked: u64,
}

fn tasks(pid: u32) -> Vec<Task> {
    let dir = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
    entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let status = std::fs::read_to_string(path.join("status")).ok()?;
            let blocked = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                .trim()
                .parse()
                .ok()?;
            Some(Task {
                name: name.trim_end().to_string(),
                blocked,
            })
        })
        .collect()
}

/// What would show a heartbeat, or any other waker: a thread of its own, or executors woken
/// more often than their own timers. The count is of wake-ups, not of time spent: a slow or
/// loaded machine can only make it smaller (timers coalesce, nothing is added), so it is no
/// timing assertion. The heartbeat this replaces woke each executor every 25 ms (twenty times
/// this bound's rate before its slack) and itself every 2 ms; housekeeping every 100 ms, as it
/// ran with no connections and no items before, would be five times the rate.
#[test]
fn an_idle_server_wakes_only_for_its_housekeeping() {
    let server = Server::start(Kind::Rampart, &[]);
    let executors = stat(&stats(&mut server.conn(), ""), "threads");
    let main = std::fs::read_to_string(format!("/proc/{}/comm", server.pid()))
        .unwrap_or_default()
        .trim_end()
        .to_string();
    let before = tasks(server.pid());
    let started = Instant::now();
    thread::sleep(IDLE_WATCH);
    let after = tasks(server.pid());
    let watched = started.elapsed();
    let strangers: Vec<&Task> = after
        .iter()
        .filter(|t| {
            let executor = t
                .name
                .strip_prefix("rampart-")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
            !(t.name == main || t.name == "rampart-signals" || executor)
        })
        .collect();
    assert!(
        strangers.is_empty(),
        "threads other than the main one, the executors (and their glommio helpers) and the \
         signal thread: {strangers:?}"
    );
    let total = |tasks: &[Task]| tasks.iter().map(|t| t.blocked).sum::<u64>();
    let wakes = total(&after).saturating_sub(total(&before));
    // Twice the housekeeping timer's rate, and a few more each for the edges of the window.
    let bound =
        executors as f64 * (2.0 * IDLE_WAKES_PER_SECOND * watched.as_secs_f64() + EDGE_WAKES);
    assert!(
        (wakes as f64) <= bound,
        "{executors} idle executors woke {wakes} times in {watched:?} (at most {bound:.0} \
         expected)\nbefore: {before:?}\nafter: {after:?}"
    );
    // And it was idle, not gone.
    let reply = server.conn().roundtrip(b"version\r\n", b"\r\n");
    assert!(reply.starts_with(b"VERSION "), "{}", escape(&reply));
}
