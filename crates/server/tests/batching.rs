//! Two cores in one process, no sockets: a connection's session on core 0 pipelines requests
//! for both cores' keys, and core 1's keys travel as one batch per turn and come back in
//! request order.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

mod common;

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rampart_server::authz::Identity;
use rampart_server::batch::{Op, Outcome};
use rampart_server::config::ProtocolChoice;
use rampart_server::output::Output;
use rampart_server::runtime::{self, Core, Cpus};
use rampart_server::session::{Exchanged, Session, Stop};
use rampart_server::shard::{ShardId, shard_for};
use rampart_server::worker::{Process, Worker};

const NOW: u64 = 1_800_000_000;
const CORES: usize = 2;

/// The `n`th key of the form `k<i>` that `shard` owns.
fn key(shard: ShardId, n: usize) -> String {
    (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| shard_for(k.as_bytes(), CORES) == shard)
        .nth(n)
        .unwrap()
}

/// Runs `client` on core 0 while core 1 serves its shard.
fn with_two_cores(client: impl AsyncFnOnce(Rc<Worker>) + Send + 'static) {
    with_cores(CORES, client);
}

/// Lets the serving cores stop once core 0's client has ended, however it ended: a failed
/// assertion must fail the test, not leave the other cores serving for ever.
struct Done(Arc<AtomicBool>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `client` on core 0 while cores 1 to `cores - 1` serve their shards.
fn with_cores(cores: usize, client: impl AsyncFnOnce(Rc<Worker>) + Send + 'static) {
    let process = Arc::new(Process::new(cores));
    let done = Arc::new(AtomicBool::new(false));
    let mut client = Some(client);
    let started = runtime::start(Cpus::Unpinned(cores), |id| {
        let client = if id == 0 { client.take() } else { None };
        let (process, done) = (Arc::clone(&process), Arc::clone(&done));
        move |core: Core| async move {
            let worker = common::start_core(core, process, NOW);
            match client {
                Some(client) => {
                    let _done = Done(done);
                    client(worker).await;
                }
                None => {
                    while !done.load(Ordering::Acquire) {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }
    })
    .unwrap();
    started.serve().join().unwrap();
}

fn snapshots(outcomes: Vec<Outcome>) -> Vec<rampart_server::batch::ShardSnapshot> {
    outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Snapshot(s) => *s,
            other => panic!("expected a snapshot, got {other:?}"),
        })
        .collect()
}

#[test]
fn pipelined_remote_requests_travel_as_one_batch_and_answer_in_order() {
    with_two_cores(async |worker: Rc<Worker>| {
        let (local, remote) = (key(0, 0), key(1, 0));
        let mut input = format!(
            "set {remote} 1 0 2\r\nr1\r\nset {local} 2 0 2\r\nl1\r\nget {local} {remote} {}\r\n\
             incr {remote} 1\r\nappend {remote} 0 0 1\r\n5\r\nget {remote}\r\n",
            key(1, 1)
        );
        let mut expected = format!(
            "STORED\r\nSTORED\r\nVALUE {local} 2 2\r\nl1\r\nVALUE {remote} 1 2\r\nr1\r\nEND\r\n\
             CLIENT_ERROR cannot increment or decrement non-numeric value\r\nSTORED\r\n\
             VALUE {remote} 1 3\r\nr15\r\nEND\r\n"
        );
        for n in 0..16 {
            input += &format!("get {}\r\n", key(1, n + 2));
            expected += "END\r\n";
        }
        let mut session = Session::new(Identity::Anonymous, ProtocolChoice::Ascii);
        let mut out = Output::new();
        let progress = session.process(input.as_bytes(), &worker, NOW, usize::MAX, &mut out);
        assert_eq!(progress.stop, Stop::NeedInput);
        assert_eq!(progress.consumed, input.len());
        session.exchange(&worker, &mut out).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.to_vec()), expected);
        assert!(!session.is_waiting());

        let mesh = worker.router().mesh().unwrap();
        assert_eq!(
            mesh.counters.batches_sent.get(),
            1,
            "one message for the whole read"
        );
        let shards = snapshots(
            worker
                .invoke_on_all_await(NOW, |_| Op::Snapshot)
                .await
                .unwrap(),
        );
        // The snapshot itself is an op of a second batch.
        assert_eq!((shards[1].batches_served, shards[1].ops_served), (1, 22));
        assert_eq!((shards[0].items, shards[1].items), (1, 1));

        // The next turn reuses the batch and sends one more message.
        out.clear();
        let input = format!("delete {remote}\r\nget {remote}\r\n");
        session.process(input.as_bytes(), &worker, NOW, usize::MAX, &mut out);
        session.exchange(&worker, &mut out).await.unwrap();
        assert_eq!(out.to_vec(), b"DELETED\r\nEND\r\n");
        assert_eq!(mesh.counters.batches_sent.get(), 3);
    });
}

/// Connections of one core that meet the same owner in the same executor turn share a message:
/// each gets its own batch back, with its own answers.
#[test]
fn batches_of_one_turn_for_one_owner_travel_as_one_message() {
    with_two_cores(async |worker: Rc<Worker>| {
        const SESSIONS: usize = 3;
        let mut sessions: Vec<(Session, Output)> = (0..SESSIONS)
            .map(|_| {
                (
                    Session::new(Identity::Anonymous, ProtocolChoice::Ascii),
                    Output::new(),
                )
            })
            .collect();
        let mut expected = Vec::new();
        for (i, (session, out)) in sessions.iter_mut().enumerate() {
            let (remote, other) = (key(1, i), key(1, SESSIONS + i));
            let input = format!("set {remote} {i} 0 2\r\nv{i}\r\nget {remote} {other}\r\n");
            let progress = session.process(input.as_bytes(), &worker, NOW, usize::MAX, out);
            assert_eq!(progress.consumed, input.len());
            expected.push(format!("STORED\r\nVALUE {remote} {i} 2\r\nv{i}\r\nEND\r\n"));
        }
        let mesh = Rc::clone(worker.router().mesh().unwrap());
        let sent = mesh.counters.batches_sent.get();
        // All three exchanges post in the same turn (the first poll of each), then wait.
        let [a, b, c] = &mut sessions[..] else {
            unreachable!()
        };
        let exchanges = futures_lite::future::zip(
            a.0.exchange(&worker, &mut a.1),
            futures_lite::future::zip(
                b.0.exchange(&worker, &mut b.1),
                c.0.exchange(&worker, &mut c.1),
            ),
        );
        let (ra, (rb, rc)) = exchanges.await;
        for result in [ra, rb, rc] {
            assert!(matches!(result, Ok(Exchanged::Done)), "{result:?}");
        }
        for ((_, out), expected) in sessions.iter().zip(&expected) {
            assert_eq!(String::from_utf8_lossy(&out.to_vec()), *expected);
        }
        assert_eq!(
            mesh.counters.batches_sent.get() - sent,
            1,
            "one message for the three connections' batches"
        );
        let shards = snapshots(
            worker
                .invoke_on_all_await(NOW, |_| Op::Snapshot)
                .await
                .unwrap(),
        );
        assert_eq!((shards[1].batches_served, shards[1].ops_served), (1, 9));
    });
}

#[test]
fn flush_all_reaches_every_shard_and_counts_once() {
    with_two_cores(async |worker: Rc<Worker>| {
        let mut session = Session::new(Identity::Anonymous, ProtocolChoice::Ascii);
        let mut out = Output::new();
        let input = format!(
            "set {} 0 0 1\r\na\r\nset {} 0 0 1\r\nb\r\nflush_all\r\n",
            key(0, 0),
            key(1, 0)
        );
        let progress = session.process(input.as_bytes(), &worker, NOW, usize::MAX, &mut out);
        assert_eq!(progress.stop, Stop::WholeCache);
        session.exchange(&worker, &mut out).await.unwrap();
        let rest = &input.as_bytes()[progress.consumed..];
        let flushed = session
            .whole_cache(rest, &worker, NOW, &mut out)
            .await
            .unwrap();
        assert_eq!(flushed.consumed, rest.len());
        assert_eq!(out.to_vec(), b"STORED\r\nSTORED\r\nOK\r\n");
        let shards = snapshots(
            worker
                .invoke_on_all_await(NOW, |_| Op::Snapshot)
                .await
                .unwrap(),
        );
        let flushes: u64 = shards.iter().map(|s| s.store.cmd_flush).sum();
        assert_eq!(flushes, 1);
        out.clear();
        let input = format!("get {} {}\r\n", key(0, 0), key(1, 0));
        session.process(input.as_bytes(), &worker, NOW + 1, usize::MAX, &mut out);
        session.exchange(&worker, &mut out).await.unwrap();
        assert_eq!(out.to_vec(), b"END\r\n");
    });
}

/// A small deterministic generator (xorshift64*), so that a failing case can be replayed from
/// its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A pipeline of text requests over both cores' keys whose replies do not depend on the
/// store's clock or CAS counter: sets of values up to 8 KB, multi-gets with repeats and
/// misses, meta gets, deletes and arithmetic.
fn random_pipeline(rng: &mut Rng, cores: usize) -> Vec<u8> {
    let key = |rng: &mut Rng| {
        let shard = rng.below(cores);
        let n = rng.below(6);
        (0..)
            .map(|i| format!("k{i}"))
            .filter(|k| shard_for(k.as_bytes(), cores) == shard)
            .nth(n)
            .unwrap()
    };
    let mut input = Vec::new();
    for _ in 0..5 + rng.below(40) {
        match rng.below(6) {
            0 | 1 => {
                let len = rng.below(8000);
                let fill = b'a' + rng.below(26) as u8;
                input.extend(format!("set {} {} 0 {len}\r\n", key(rng), rng.below(9)).bytes());
                input.extend(std::iter::repeat_n(fill, len));
                input.extend(b"\r\n");
            }
            2 => {
                input.extend(b"get");
                for _ in 0..1 + rng.below(24) {
                    input.extend(format!(" {}", key(rng)).bytes());
                }
                input.extend(b"\r\n");
            }
            3 => input.extend(format!("mg {} v f k\r\n", key(rng)).bytes()),
            4 => input.extend(format!("delete {}\r\n", key(rng)).bytes()),
            _ => input.extend(format!("incr {} 1\r\n", key(rng)).bytes()),
        }
    }
    input
}

/// Feeds `input` to a fresh session in the pieces `rng` picks, with an output high-water mark
/// of `high_water` and `-R` of 1 to 4, writing (collecting) the output whenever the driver
/// would: at each stop, and at each piece of an exchange.
async fn serve_in_pieces(
    worker: &Worker,
    input: &[u8],
    high_water: usize,
    rng: &mut Rng,
) -> Vec<u8> {
    let mut session =
        Session::new(Identity::Anonymous, ProtocolChoice::Ascii).with_high_water(high_water);
    let (mut buffered, mut fed) = (Vec::new(), 0);
    let (mut out, mut written) = (Output::new(), Vec::new());
    loop {
        let per_event = 1 + rng.below(4);
        let progress = session.process(&buffered, worker, NOW, per_event, &mut out);
        buffered.drain(..progress.consumed);
        while session.is_waiting() {
            let exchanged = session.exchange(worker, &mut out).await.unwrap();
            assert!(
                out.pending() <= high_water + 2 * 9000,
                "an exchange piece of {} bytes",
                out.pending()
            );
            written.extend(out.to_vec());
            out.clear();
            if exchanged == Exchanged::Done {
                break;
            }
        }
        written.extend(out.to_vec());
        out.clear();
        match progress.stop {
            Stop::Budget | Stop::OutputFull => {}
            Stop::NeedInput if fed == input.len() => return written,
            Stop::NeedInput => {
                let piece = (1 + rng.below(3000)).min(input.len() - fed);
                buffered.extend_from_slice(&input[fed..fed + piece]);
                fed += piece;
            }
            stop => panic!("unexpected {stop:?}"),
        }
    }
}

/// The resumable reply path: whatever the high-water mark, however the input is split and
/// however often the output is written in between, the client gets exactly the bytes of one
/// unbounded pass over the whole input.
#[test]
fn replies_in_bounded_pieces_are_the_bytes_of_an_unbounded_run() {
    bounded_pieces_match_an_unbounded_run(CORES);
}

/// With three cores a connection waits on two batches at once, and one may have to be held
/// back while the other is sent again (`Plan::run_unanswered`).
#[test]
fn replies_in_bounded_pieces_are_the_bytes_of_an_unbounded_run_on_three_cores() {
    bounded_pieces_match_an_unbounded_run(3);
}

fn bounded_pieces_match_an_unbounded_run(cores: usize) {
    with_cores(cores, async move |worker: Rc<Worker>| {
        for seed in 1..=150u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let input = random_pipeline(&mut rng, cores);
            let flush = |_| Op::Flush {
                delay: 0,
                counted: false,
            };
            worker.invoke_on_all_await(NOW, flush).await.unwrap();
            let unbounded = {
                let mut session = Session::new(Identity::Anonymous, ProtocolChoice::Ascii)
                    .with_high_water(usize::MAX);
                let mut out = Output::new();
                let progress = session.process(&input, &worker, NOW, usize::MAX, &mut out);
                assert_eq!(progress.consumed, input.len(), "seed {seed}");
                let done = session.exchange(&worker, &mut out).await.unwrap();
                assert_eq!(done, Exchanged::Done);
                out.to_vec()
            };
            worker.invoke_on_all_await(NOW, flush).await.unwrap();
            let high_water = 1 + rng.below(20_000);
            let pieces = serve_in_pieces(&worker, &input, high_water, &mut rng).await;
            if pieces != unbounded {
                let at = pieces.iter().zip(&unbounded).position(|(a, b)| a != b);
                panic!(
                    "{cores} cores, seed {seed}, high-water mark {high_water}: {} bytes against {}, first \
                     difference at {at:?}\ninput: {}",
                    pieces.len(),
                    unbounded.len(),
                    String::from_utf8_lossy(&input[..input.len().min(2000)])
                );
            }
        }
    });
}
