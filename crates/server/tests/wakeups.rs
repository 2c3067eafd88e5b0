//! Cross-core wake-ups under oversubscription, in one process and with no timer to make up for
//! a missed one.
//!
//! Core 0 asks for core 1's keys one request at a time while busy threads oversubscribe the
//! CPUs, so every reply needs two wake-ups from sleep: core 1 by core 0's batch, then core 0 by
//! core 1's reply, both through glommio's shared channels. Nothing else runs on either core: no
//! housekeeping timer (the server's, every 100 ms, would end a missed wake-up's sleep), no
//! heartbeat. So a wake-up missed is a hang for good, and the main thread fails the test once
//! no reply has come for [`STALL_BOUND`], far longer than one takes even here.
//!
//! From outside, against the real binary, `tests/tests/wakeups.rs` does the same with its
//! timers running, and starts two cores 200 times.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

mod common;

use std::future::poll_fn;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use rampart_server::authz::Identity;
use rampart_server::config::ProtocolChoice;
use rampart_server::output::Output;
use rampart_server::runtime::{self, Core, Cpus};
use rampart_server::session::Session;
use rampart_server::shard::shard_for;
use rampart_server::worker::{Process, Worker};

const NOW: u64 = 1_800_000_000;
const CORES: usize = 2;
/// Requests core 0 sends, one at a time.
/// (glommio 0.9.0's park after a preempted pass, third_party/glommio/PATCHES.md, hung this
/// test within its first thousand in each of five runs.)
const REQUESTS: usize = 5_000;
/// Busy threads beside the two executors.
const SPINNERS: usize = 4;
/// How long without a reply is a hang.
const STALL_BOUND: Duration = Duration::from_secs(2);
/// How long the whole exchange may take, so that a very slow machine fails instead of running
/// on.
const TEST_BOUND: Duration = Duration::from_secs(120);

/// Tells core 1 that core 0's client has ended, however it ended, without a timer: a waker
/// woken from core 0's thread (glommio hands it to core 1 and writes its eventfd).
#[derive(Debug, Default)]
struct Finish {
    finished: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Finish {
    fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        if let Some(waker) = self.waker.lock().unwrap().take() {
            waker.wake();
        }
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            // Checked under the lock `finish` takes after setting the flag: either the flag is
            // seen here or the waker stored here is woken there.
            let mut waker = self.waker.lock().unwrap();
            if self.is_finished() {
                Poll::Ready(())
            } else {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

/// Finishes when dropped: at the client's end, or when it panics.
struct Finishing(Arc<Finish>);

impl Drop for Finishing {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Core 0's side: sets and gets of core 1's keys, one at a time, each reply checked.
async fn ask_core_1(worker: Rc<Worker>, replies: &AtomicUsize) {
    let keys: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| shard_for(k.as_bytes(), CORES) == 1)
        .take(8)
        .collect();
    let mut session = Session::new(Identity::Anonymous, ProtocolChoice::Ascii);
    let mut out = Output::new();
    for i in 0..REQUESTS {
        // Each pair: a set, then a get of the same key.
        let key = &keys[(i / 2) % keys.len()];
        let value = format!("v{}", i / 2);
        let (input, expected) = if i % 2 == 0 {
            (
                format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()),
                "STORED\r\n".to_string(),
            )
        } else {
            (
                format!("get {key}\r\n"),
                format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len()),
            )
        };
        out.clear();
        let progress = session.process(input.as_bytes(), &worker, NOW, usize::MAX, &mut out);
        assert_eq!(progress.consumed, input.len(), "request {i}");
        assert!(session.is_waiting(), "request {i} stayed on core 0");
        session.exchange(&worker, &mut out).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.to_vec()),
            expected,
            "request {i}"
        );
        replies.fetch_add(1, Ordering::Release);
        // Now and then a pause, so that core 1 has been asleep for a while when the next
        // request comes, not just between two batches.
        if i % 256 == 0 {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Busy threads that run until `stop`, or [`TEST_BOUND`] at most.
fn spin(stop: &Arc<AtomicBool>) -> Vec<thread::JoinHandle<()>> {
    (0..SPINNERS)
        .map(|_| {
            let stop = Arc::clone(stop);
            thread::spawn(move || {
                let until = Instant::now() + TEST_BOUND;
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

#[test]
fn one_request_at_a_time_across_cores_is_always_answered_on_oversubscribed_cpus() {
    let cpus = runtime::allowed_cpus().unwrap();
    // Pinned as the server pins them, where there are two CPUs to pin to.
    let placement = if cpus.len() >= CORES {
        Cpus::Pinned(cpus[..CORES].to_vec())
    } else {
        Cpus::Unpinned(CORES)
    };
    let process = Arc::new(Process::new(CORES));
    let finish = Arc::new(Finish::default());
    let replies = Arc::new(AtomicUsize::new(0));
    let started = runtime::start(placement, |id| {
        let (process, finish, replies) = (
            Arc::clone(&process),
            Arc::clone(&finish),
            Arc::clone(&replies),
        );
        move |core: Core| async move {
            let worker = common::start_core(core, process, NOW);
            if id == 0 {
                let _finishing = Finishing(finish);
                ask_core_1(worker, &replies).await;
            } else {
                finish.wait().await;
            }
        }
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spinners = spin(&stop);
    let serving = started.serve();
    let began = Instant::now();
    let (mut seen, mut last_reply) = (0, Instant::now());
    let stalled = loop {
        if finish.is_finished() {
            break None;
        }
        let now = replies.load(Ordering::Acquire);
        if now != seen {
            (seen, last_reply) = (now, Instant::now());
        }
        if last_reply.elapsed() > STALL_BOUND || began.elapsed() > TEST_BOUND {
            break Some(now);
        }
        thread::sleep(Duration::from_millis(10));
    };
    stop.store(true, Ordering::Relaxed);
    for spinner in spinners {
        let _ = spinner.join();
    }
    if let Some(answered) = stalled {
        // The executors are asleep for good (or too slow); leave them to the process's exit.
        panic!(
            "{answered} of {REQUESTS} requests answered in {:?}, the last {:?} ago: an \
             executor slept through work",
            began.elapsed(),
            last_reply.elapsed()
        );
    }
    serving.join().unwrap();
    assert_eq!(replies.load(Ordering::Acquire), REQUESTS);
}
