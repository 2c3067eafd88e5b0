//! The heartbeat: a guarantee that no executor sleeps through work for more than a few
//! milliseconds.
//!
//! A sleeping glommio executor waits in `io_uring_enter` for a completion on its main ring.
//! Executors were seen to sleep on with work waiting: for seconds under heavy CPU
//! oversubscription, and at half of capacity until the next ring of this heartbeat, which put a
//! 14 ms p99 on requests that otherwise take 0.1-0.3 ms. Any signal ended such a sleep.
//!
//! One cause is found and fixed: glommio 0.9.0 parked an executor whose scheduling pass was
//! preempted before it ran a task, so it slept with runnable tasks until something else woke
//! it (third_party/glommio/PATCHES.md). Since the fix, the busy rings below make no measurable
//! difference to the tails at half of capacity (docs/performance.md). The heartbeat stays as
//! the bound on any other cause: it costs nothing measurable.
//!
//! So each executor listens to one end of a socket pair (its *doorbell*), and a heartbeat
//! thread writes a byte to every doorbell every [`HEARTBEAT_INTERVAL`]. An executor that is
//! healthy reads it (a normal wake-up, which also runs its due timers and looks at its shared
//! channels). An executor that has not read its last byte by the next beat is sent a no-op
//! signal, which ends any sleep in `io_uring_enter`. In the common case this costs one tiny
//! write and read per executor per interval and no signal.
//!
//! An executor whose connections have read anything since the last [`BUSY_RING_INTERVAL`] is
//! rung that often; an idle one only every [`HEARTBEAT_INTERVAL`], and the kick still waits
//! for a full heartbeat without a read.

use std::io::{self, Write};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use futures_lite::AsyncReadExt;

/// How often every executor is rung, and how long it has to answer before it is kicked.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(25);
/// How often an executor whose connections are active is rung.
pub const BUSY_RING_INTERVAL: Duration = Duration::from_millis(2);
/// Busy rings an executor keeps getting after its connections' last read (100 ms).
const BUSY_WINDOW: u32 = 50;
/// Busy rings per heartbeat.
const RINGS_PER_HEARTBEAT: u32 =
    (HEARTBEAT_INTERVAL.as_micros() / BUSY_RING_INTERVAL.as_micros()) as u32;

/// What one executor shares with the heartbeat thread.
#[derive(Debug, Default)]
struct Pulse {
    /// The executor thread's kernel id, once it listens; 0 before.
    tid: AtomicI32,
    /// Doorbell reads so far.
    heard: AtomicU64,
    /// Reads by the executor's connections so far ([`Activity::note`]).
    activity: AtomicU64,
}

/// What the heartbeat remembers of an executor's activity.
#[derive(Debug, Clone, Copy, Default)]
struct Busy {
    activity: u64,
    /// Busy rings since the activity last changed.
    quiet_rings: u32,
}

/// An executor's connections report that they read something, so that it is rung often
/// while it serves (see the module comment).
#[derive(Debug, Clone)]
pub struct Activity(Arc<Pulse>);

impl Activity {
    /// One relaxed increment on a counter only this executor writes.
    pub fn note(&self) {
        self.0.activity.fetch_add(1, Ordering::Relaxed);
    }
}

/// Clears the thread id when the listening task ends, however it ends, so no signal goes to
/// a thread id the kernel may have reused.
struct Listening(Arc<Pulse>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.tid.store(0, Ordering::Release);
    }
}

/// The heartbeat's side: one bell per executor.
#[derive(Debug)]
pub struct Doorbells {
    bells: Vec<(UnixStream, Arc<Pulse>)>,
}

/// An executor's side.
#[derive(Debug)]
pub struct Doorbell {
    end: OwnedFd,
    pulse: Arc<Pulse>,
}

/// Doorbells for `executors` executors.
pub fn pairs(executors: usize) -> io::Result<(Doorbells, Vec<Doorbell>)> {
    let mut bells = Vec::with_capacity(executors);
    let mut ends = Vec::with_capacity(executors);
    for _ in 0..executors {
        let (ring, hear) = UnixStream::pair()?;
        ring.set_nonblocking(true)?;
        hear.set_nonblocking(true)?;
        let pulse = Arc::new(Pulse::default());
        bells.push((ring, Arc::clone(&pulse)));
        ends.push(Doorbell {
            end: OwnedFd::from(hear),
            pulse,
        });
    }
    Ok((Doorbells { bells }, ends))
}

/// The kick: a signal with a handler that does nothing. Its delivery is the point.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

extern "C" fn ignore_kick(_: libc::c_int) {}

fn install_kick_handler() -> io::Result<()> {
    // SAFETY: a zeroed sigaction with a handler that touches nothing is valid; sigemptyset
    // initialises its mask before use.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_kick as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(kick_signal(), &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Doorbells {
    /// One heartbeat: kicks every executor that has not read its last ring, then rings every
    /// doorbell. Returns how many executors are still listening.
    fn beat(&mut self, last_heard: &mut [u64]) -> usize {
        let mut listening = 0;
        for ((bell, pulse), last) in self.bells.iter_mut().zip(last_heard.iter_mut()) {
            let heard = pulse.heard.load(Ordering::Acquire);
            let tid = pulse.tid.load(Ordering::Acquire);
            if heard == *last && tid != 0 {
                log::debug!("executor thread {tid} missed a heartbeat: kicking it");
                // SAFETY: tgkill on a thread of this process with a signal whose handler does
                // nothing; a thread that has exited makes it fail with ESRCH, harmlessly.
                unsafe {
                    libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, kick_signal());
                }
            }
            *last = heard;
            if ring(bell) {
                listening += 1;
            }
        }
        listening
    }

    /// Between heartbeats: rings the executors whose connections read something within the
    /// last [`BUSY_WINDOW`] rings. (A stall stops the reads, so "since the last look" would
    /// stop ringing exactly when a ring is needed.)
    fn ring_busy(&mut self, busy: &mut [Busy]) {
        for ((bell, pulse), busy) in self.bells.iter_mut().zip(busy.iter_mut()) {
            let activity = pulse.activity.load(Ordering::Relaxed);
            if activity != busy.activity {
                busy.activity = activity;
                busy.quiet_rings = 0;
            } else {
                busy.quiet_rings = busy.quiet_rings.saturating_add(1);
            }
            if busy.quiet_rings <= BUSY_WINDOW {
                ring(bell);
            }
        }
    }

    /// Beats every [`HEARTBEAT_INTERVAL`], and rings busy executors every
    /// [`BUSY_RING_INTERVAL`], from a thread of its own, until no executor is left listening.
    pub fn start_heartbeat(mut self) -> io::Result<()> {
        install_kick_handler()?;
        thread::Builder::new()
            .name("rampart-heartbeat".into())
            .spawn(move || {
                let mut last_heard = vec![u64::MAX; self.bells.len()];
                let mut busy = vec![Busy::default(); self.bells.len()];
                while self.beat(&mut last_heard) > 0 {
                    for _ in 0..RINGS_PER_HEARTBEAT {
                        thread::sleep(BUSY_RING_INTERVAL);
                        self.ring_busy(&mut busy);
                    }
                }
            })
            .map(|_| ())
    }
}

/// Writes one byte to a doorbell; `false` once its executor has stopped listening (a full
/// doorbell is an executor that has not read yet, still listening).
fn ring(bell: &mut UnixStream) -> bool {
    !matches!(bell.write(&[1]), Err(err) if err.kind() != io::ErrorKind::WouldBlock)
}

impl Doorbell {
    /// The handle its connections report activity through.
    pub fn activity(&self) -> Activity {
        Activity(Arc::clone(&self.pulse))
    }

    /// Inside the executor: listens to the doorbell for as long as the executor runs. Called
    /// from the executor's default task queue, so that the reads go to its main ring.
    pub fn listen(self) {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        self.pulse.tid.store(tid, Ordering::Release);
        // SAFETY: the descriptor is one end of a socket pair made by `pairs`, owned by this
        // doorbell alone and handed over here.
        let mut stream = unsafe { glommio::net::UnixStream::from_raw_fd(self.end.into_raw_fd()) };
        let listening = Listening(self.pulse);
        glommio::spawn_local(async move {
            let mut buf = [0u8; 64];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                listening.0.heard.fetch_add(1, Ordering::Release);
            }
            drop(listening);
        })
        .detach();
    }
}
