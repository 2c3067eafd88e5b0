//! A whole run: start the client threads, let them connect and prepopulate, give them one
//! common start instant, and merge what they counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::{Config, Stop};
use crate::conn::Conn;
use crate::driver::{Driver, Issuer, Phase, Slot, fill_depth};
use crate::error::Error;
use crate::stats::{Parameters, Report, Tally};
use crate::sys;
use crate::transport::Connector;
use crate::workload::{Rng, Workload};

/// Runs `config` to the end and reports.
pub fn run(config: &Config) -> Result<Report, Error> {
    start(config)?.finish()
}

/// Connects, prepopulates if asked, and starts the measurement; returns while it runs, so
/// that the caller can watch [`Running::progress`].
pub fn start(config: &Config) -> Result<Running, Error> {
    config.validate()?;
    let shared = Arc::new(Shared {
        connector: Connector::new(config)?,
        workload: Workload::new(config),
        config: config.clone(),
        ops: Arc::new(AtomicU64::new(0)),
    });
    let threads = config.effective_threads();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut go = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for thread in 0..threads {
        let (go_tx, go_rx) = mpsc::channel();
        go.push(go_tx);
        let shared = Arc::clone(&shared);
        let ready = ready_tx.clone();
        let cpu = (!config.cpus.is_empty()).then(|| config.cpus[thread % config.cpus.len()]);
        let handle = thread::Builder::new()
            .name(format!("rampart-load-{thread}"))
            .spawn(move || client_thread(&shared, thread, cpu, &ready, &go_rx))
            .map_err(Error::Thread)?;
        handles.push(handle);
    }
    drop(ready_tx);

    let mut prepopulated = Tally::new();
    let mut failure = None;
    let deadline = Instant::now() + config.time_limit;
    for _ in 0..threads {
        let wait = deadline.saturating_duration_since(Instant::now());
        match ready_rx.recv_timeout(wait) {
            Ok(Ok(tally)) => prepopulated.merge(&tally),
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(RecvTimeoutError::Timeout) => {
                failure.get_or_insert(Error::NotReady(config.time_limit));
                break;
            }
            Err(RecvTimeoutError::Disconnected) => {
                failure.get_or_insert(Error::ThreadPanicked);
                break;
            }
        }
    }
    if failure.is_none() && prepopulated.errors.total() > 0 {
        failure = Some(Error::Prepopulate(format!(
            "{} errors ({}): {}",
            prepopulated.errors.total(),
            prepopulated.errors,
            prepopulated.failures.join("; ")
        )));
    }
    if let Some(error) = failure {
        // Dropping the senders tells the waiting threads to leave.
        drop(go);
        for handle in handles {
            let _ = handle.join();
        }
        return Err(error);
    }
    let start = Instant::now();
    for go in &go {
        // A thread that is gone reports its own failure when joined.
        let _ = go.send(start);
    }
    Ok(Running {
        shared,
        handles,
        start,
        prepopulated: prepopulated.sets,
    })
}

/// A measurement under way.
#[derive(Debug)]
pub struct Running {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<Result<Finished, Error>>>,
    start: Instant,
    prepopulated: u64,
}

/// How far a [`Running`] measurement has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Replies received so far.
    pub ops: u64,
    pub elapsed: Duration,
}

impl Running {
    pub fn progress(&self) -> Progress {
        Progress {
            ops: self.shared.ops.load(Ordering::Relaxed),
            elapsed: self.start.elapsed(),
        }
    }

    /// Whether every client thread is done, so that [`Running::finish`] will not block.
    pub fn is_finished(&self) -> bool {
        self.handles.iter().all(JoinHandle::is_finished)
    }

    /// Waits for the client threads (each bounded by the run's deadline plus the I/O
    /// timeout) and merges their counts.
    pub fn finish(self) -> Result<Report, Error> {
        let mut tally = Tally::new();
        let mut end = self.start;
        let mut failure = None;
        for handle in self.handles {
            match handle.join() {
                Ok(Ok(finished)) => {
                    tally.merge(&finished.tally);
                    end = end.max(finished.last_reply);
                }
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert(Error::ThreadPanicked);
                }
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        Ok(Report::new(
            Parameters::new(&self.shared.config),
            &tally,
            end.saturating_duration_since(self.start),
            self.prepopulated,
        ))
    }
}

/// What every client thread reads.
#[derive(Debug)]
struct Shared {
    connector: Connector,
    workload: Workload,
    config: Config,
    /// Replies received in the measurement, for [`Running::progress`].
    ops: Arc<AtomicU64>,
}

/// What a client thread hands back.
#[derive(Debug)]
struct Finished {
    tally: Tally,
    last_reply: Instant,
}

impl Finished {
    /// The result of a thread that never measured.
    fn nothing() -> Finished {
        Finished {
            tally: Tally::new(),
            last_reply: Instant::now(),
        }
    }
}

/// One client thread: connect, prepopulate its share, report ready, wait for the common start,
/// measure.
fn client_thread(
    shared: &Shared,
    thread: usize,
    cpu: Option<usize>,
    ready: &Sender<Result<Tally, Error>>,
    go: &Receiver<Instant>,
) -> Result<Finished, Error> {
    let config = &shared.config;
    let mut driver = match prepare(shared, thread, cpu) {
        Ok((driver, tally)) => {
            // The receiver is gone only if start() already gave up; go.recv then says so.
            let _ = ready.send(Ok(tally));
            driver
        }
        Err(e) => {
            // start() reports the error it receives here; this thread's result is unused.
            let _ = ready.send(Err(e));
            return Ok(Finished::nothing());
        }
    };
    let start = match go.recv_timeout(config.time_limit) {
        Ok(start) => start,
        // start() failed elsewhere and dropped the sender: it reports why.
        Err(_) => return Ok(Finished::nothing()),
    };
    if config.rate.is_some() {
        sys::tighten_timer_slack();
    }
    let total = config.connections as u64;
    for slot in &mut driver.slots {
        let rng = Rng::new(config.seed ^ (slot.global as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let quota = match config.stop {
            Stop::Requests(n) => {
                let global = slot.global as u64;
                Some(n / total + u64::from(global < n % total))
            }
            Stop::Duration(_) => None,
        };
        slot.issuer = match config.rate {
            None => Issuer::Closed { rng, quota },
            Some(_) => Issuer::Open {
                rng,
                k: 0,
                global: slot.global as u64,
                quota,
            },
        };
    }
    let window = match config.stop {
        Stop::Duration(d) => d.min(config.time_limit),
        Stop::Requests(_) => config.time_limit,
    };
    let phase = Phase {
        start,
        issue_until: start + window,
        depth: config.pipeline,
        rate: config.rate.unwrap_or(1.0),
        total_conns: total,
        io_timeout: config.io_timeout,
    };
    let mut tally = Tally::new();
    let last_reply = driver.drive(&phase, &shared.workload, &mut tally, Some(&shared.ops))?;
    tally.unsent = driver.slots.iter().map(|s| s.unsent(&phase)).sum();
    Ok(Finished { tally, last_reply })
}

/// Pins the thread, opens its connections and prepopulates their share of the keys.
fn prepare(shared: &Shared, thread: usize, cpu: Option<usize>) -> Result<(Driver, Tally), Error> {
    let config = &shared.config;
    if let Some(cpu) = cpu {
        sys::pin_current_thread(cpu).map_err(|source| Error::Affinity { cpu, source })?;
    }
    let threads = config.effective_threads();
    let total = config.connections as u64;
    let mut slots = Vec::new();
    for global in (thread..config.connections).step_by(threads) {
        let stream = shared.connector.connect()?;
        slots.push(Slot {
            global,
            conn: Some(Conn::new(stream, Instant::now())),
            issuer: Issuer::Fill {
                next: global as u64,
                stride: total,
            },
        });
    }
    let mut driver = Driver::new(slots)?;
    let mut tally = Tally::new();
    if config.prepopulate {
        let start = Instant::now();
        let phase = Phase {
            start,
            issue_until: start + config.time_limit,
            depth: fill_depth(config.pipeline, config.prepopulate_depth),
            rate: 1.0,
            total_conns: total,
            io_timeout: config.io_timeout,
        };
        driver.drive(&phase, &shared.workload, &mut tally, None)?;
    }
    Ok((driver, tally))
}
