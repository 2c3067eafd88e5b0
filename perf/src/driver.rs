//! One client thread: its connections, one poller, and the loop that keeps them busy.
//!
//! The poller is edge-triggered and every connection is registered for both readiness
//! kinds; on any event the driver reads until the socket would block and writes what is
//! queued. That is enough for TLS too, whose reads may need the socket writable and whose
//! writes may need it readable: whichever way OpenSSL stalled, the next event retries both.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::conn::{Conn, Lost};
use crate::error::Error;
use crate::stats::Tally;
use crate::sys::Timer;
use crate::workload::{Op, Rng, Workload};

/// Longest the loop sleeps without looking at the clock (idle timeouts, the deadline).
const CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// Readiness events taken per wakeup.
const EVENTS_PER_POLL: usize = 1024;
/// The timer's token; connections use their index in the thread.
const TIMER: Token = Token(usize::MAX);
/// Most steps from the floating-point estimate of a schedule's length to the exact one.
const BOUNDARY_STEPS: usize = 4;
/// Requests in flight per connection while prepopulating unless `--prepopulate-depth` says
/// otherwise, or `--pipeline` says more.
const FILL_DEPTH: usize = 32;

/// What a phase sends on each connection.
#[derive(Debug)]
pub(crate) enum Issuer {
    /// Sets keys `next, next + stride, ...` below the key count: prepopulation.
    Fill { next: u64, stride: u64 },
    /// Random requests, as many as the depth allows; `quota` for `--requests`.
    Closed { rng: Rng, quota: Option<u64> },
    /// Random requests at fixed intended times: request `k` of connection `global` of
    /// `total` is due at `start + (k * total + global) / rate`, so the whole run offers
    /// `rate` evenly spaced requests per second.
    Open {
        rng: Rng,
        k: u64,
        global: u64,
        quota: Option<u64>,
    },
}

/// The parts of a phase common to its connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phase {
    pub(crate) start: Instant,
    /// No request is issued at or after this instant.
    pub(crate) issue_until: Instant,
    pub(crate) depth: usize,
    /// Open loop only: requests per second across all connections of the run.
    pub(crate) rate: f64,
    pub(crate) total_conns: u64,
    pub(crate) io_timeout: Duration,
}

impl Phase {
    fn intended(&self, k: u64, global: u64) -> Instant {
        let index = k as f64 * self.total_conns as f64 + global as f64;
        self.start + Duration::from_secs_f64(index / self.rate)
    }
}

/// A connection of this thread and what it is to send.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Its index among all the run's connections.
    pub(crate) global: usize,
    /// `None` once lost.
    pub(crate) conn: Option<Conn>,
    pub(crate) issuer: Issuer,
}

impl Slot {
    /// Whether the issuer may still send something at or after `now` in this phase.
    fn has_more(&self, phase: &Phase, workload: &Workload, now: Instant) -> bool {
        if now >= phase.issue_until {
            return false;
        }
        match &self.issuer {
            Issuer::Fill { next, .. } => *next < workload.keys(),
            Issuer::Closed { quota, .. } => *quota != Some(0),
            Issuer::Open {
                k, global, quota, ..
            } => *quota != Some(0) && phase.intended(*k, *global) < phase.issue_until,
        }
    }

    /// Queues what the issuer allows now; returns when the next request falls due, if it
    /// is waiting for the clock rather than for replies.
    fn top_up(&mut self, phase: &Phase, workload: &Workload, now: Instant) -> Option<Instant> {
        if now >= phase.issue_until {
            return None;
        }
        let conn = self.conn.as_mut()?;
        let room = phase.depth.saturating_sub(conn.in_flight());
        match &mut self.issuer {
            Issuer::Fill { next, stride } => {
                for _ in 0..room {
                    if *next >= workload.keys() {
                        break;
                    }
                    conn.queue(workload, Op::Set, *next, now);
                    *next += *stride;
                }
                None
            }
            Issuer::Closed { rng, quota } => {
                let room = quota.map_or(room, |q| room.min(usize::try_from(q).unwrap_or(room)));
                for _ in 0..room {
                    let (op, key) = workload.pick(rng);
                    conn.queue(workload, op, key, now);
                }
                if let Some(q) = quota {
                    *q -= room as u64;
                }
                None
            }
            Issuer::Open {
                rng,
                k,
                global,
                quota,
            } => {
                let mut room = room;
                loop {
                    if *quota == Some(0) {
                        return None;
                    }
                    let due = phase.intended(*k, *global);
                    if due >= phase.issue_until {
                        return None;
                    }
                    if due > now {
                        return (room > 0).then_some(due);
                    }
                    if room == 0 {
                        return None;
                    }
                    let (op, key) = workload.pick(rng);
                    conn.queue(workload, op, key, due);
                    *k += 1;
                    if let Some(q) = quota {
                        *q -= 1;
                    }
                    room -= 1;
                }
            }
        }
    }

    /// Open loop: requests scheduled before the end that were never sent.
    pub(crate) fn unsent(&self, phase: &Phase) -> u64 {
        let Issuer::Open {
            k, global, quota, ..
        } = &self.issuer
        else {
            return 0;
        };
        if let Some(q) = quota {
            return *q;
        }
        // Requests k' with intended(k') < issue_until: estimate, then settle the rounding at
        // the boundary with the very comparison the issuer makes (a step or two at most).
        let window = phase
            .issue_until
            .saturating_duration_since(phase.start)
            .as_secs_f64();
        let estimate = (window * phase.rate - *global as f64) / phase.total_conns as f64;
        let mut scheduled = estimate.ceil().max(0.0) as u64;
        for _ in 0..BOUNDARY_STEPS {
            if scheduled > 0 && phase.intended(scheduled - 1, *global) >= phase.issue_until {
                scheduled -= 1;
            } else if phase.intended(scheduled, *global) < phase.issue_until {
                scheduled += 1;
            } else {
                break;
            }
        }
        scheduled.saturating_sub(*k)
    }
}

/// A thread's connections and its poller.
#[derive(Debug)]
pub(crate) struct Driver {
    pub(crate) slots: Vec<Slot>,
    poll: Poll,
    events: Events,
    timer: Timer,
}

impl Driver {
    pub(crate) fn new(slots: Vec<Slot>) -> Result<Driver, Error> {
        let poll = Poll::new().map_err(Error::Poll)?;
        let timer = Timer::new().map_err(Error::Poll)?;
        let registry = poll.registry();
        registry
            .register(&mut SourceFd(&timer.raw_fd()), TIMER, Interest::READABLE)
            .map_err(Error::Poll)?;
        for (i, slot) in slots.iter().enumerate() {
            if let Some(conn) = &slot.conn {
                registry
                    .register(
                        &mut SourceFd(&conn.stream().raw_fd()),
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .map_err(Error::Poll)?;
            }
        }
        Ok(Driver {
            slots,
            poll,
            events: Events::with_capacity(EVENTS_PER_POLL),
            timer,
        })
    }

    /// Runs one phase to its end: until nothing is left to send and every reply is in, or
    /// every connection is lost, bounded by the phase's deadline plus the I/O timeout.
    /// Returns when the last reply arrived.
    pub(crate) fn drive(
        &mut self,
        phase: &Phase,
        workload: &Workload,
        tally: &mut Tally,
        progress: Option<&Arc<AtomicU64>>,
    ) -> Result<Instant, Error> {
        let hard_stop = phase.issue_until + phase.io_timeout;
        let mut last_reply = phase.start;
        // Every turn either waits for I/O or a timer, or ends the loop; `hard_stop` bounds it.
        loop {
            let now = Instant::now();
            let mut busy = false;
            let mut next_due: Option<Instant> = None;
            for slot in &mut self.slots {
                let due = slot.top_up(phase, workload, now);
                next_due = match (next_due, due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let Some(conn) = slot.conn.as_mut() else {
                    continue;
                };
                if let Err(lost) = conn.flush() {
                    lose(slot, lost, tally);
                    continue;
                }
                if conn.in_flight() > 0 {
                    if now.saturating_duration_since(conn.last_progress()) > phase.io_timeout
                        || now >= hard_stop
                    {
                        let waited = now.saturating_duration_since(conn.last_progress());
                        timed_out(slot, waited, tally);
                        continue;
                    }
                    busy = true;
                } else if slot.has_more(phase, workload, now) {
                    busy = true;
                }
            }
            if !busy {
                return Ok(last_reply);
            }
            let mut timeout = CHECK_INTERVAL;
            if now < phase.issue_until {
                timeout = timeout.min(phase.issue_until - now);
            }
            if let Some(due) = next_due {
                let wait = due.saturating_duration_since(now);
                if wait < timeout {
                    self.timer.arm(wait).map_err(Error::Poll)?;
                }
            }
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Poll(e)),
            }
            let mut replies = 0;
            for event in self.events.iter() {
                if event.token() == TIMER {
                    self.timer.clear();
                    continue;
                }
                let Some(slot) = self.slots.get_mut(event.token().0) else {
                    continue;
                };
                let Some(conn) = slot.conn.as_mut() else {
                    continue;
                };
                let result = conn.receive(tally).and_then(|n| {
                    conn.flush()?;
                    Ok(n)
                });
                match result {
                    Ok(n) => replies += n,
                    Err(lost) => lose(slot, lost, tally),
                }
            }
            if replies > 0 {
                last_reply = Instant::now();
                if let Some(progress) = progress {
                    progress.fetch_add(replies, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Drops a connection, counting what it still owed.
fn lose(slot: &mut Slot, lost: Lost, tally: &mut Tally) {
    let Some(conn) = slot.conn.take() else {
        return;
    };
    if matches!(lost, Lost::Io(_) | Lost::Closed) {
        tally.errors.io += 1;
    }
    tally.errors.unanswered += conn.in_flight() as u64;
    tally.fail(format!(
        "connection {}: {lost} ({} requests unanswered)",
        slot.global,
        conn.in_flight()
    ));
}

fn timed_out(slot: &mut Slot, waited: Duration, tally: &mut Tally) {
    let Some(conn) = slot.conn.take() else {
        return;
    };
    tally.errors.unanswered += conn.in_flight() as u64;
    tally.fail(format!(
        "connection {}: no reply for {waited:.1?} ({} requests unanswered)",
        slot.global,
        conn.in_flight()
    ));
}

/// The depth of a prepopulation phase: `asked` (`--prepopulate-depth`), or else the larger
/// of the pipeline and [`FILL_DEPTH`].
pub(crate) fn fill_depth(pipeline: usize, asked: Option<usize>) -> usize {
    asked.unwrap_or(pipeline.max(FILL_DEPTH))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_slot(k: u64, global: u64) -> Slot {
        Slot {
            global: global as usize,
            conn: None,
            issuer: Issuer::Open {
                rng: Rng::new(0),
                k,
                global,
                quota: None,
            },
        }
    }

    #[test]
    fn prepopulation_runs_as_deep_as_asked_or_else_at_least_32() {
        assert_eq!(fill_depth(1, None), FILL_DEPTH);
        assert_eq!(fill_depth(64, None), 64);
        assert_eq!(fill_depth(16, Some(1)), 1);
    }

    #[test]
    fn unsent_counts_the_schedule_exactly() {
        let start = Instant::now();
        let phase = Phase {
            start,
            issue_until: start + Duration::from_secs(5),
            depth: 1,
            rate: 20_000.0,
            total_conns: 50,
            io_timeout: Duration::from_secs(1),
        };
        // 100_000 requests over 50 connections: 2_000 each, the last due just before the end.
        assert_eq!(open_slot(0, 0).unsent(&phase), 2_000);
        assert_eq!(open_slot(2_000, 0).unsent(&phase), 0);
        assert_eq!(open_slot(1_990, 49).unsent(&phase), 10);
        let odd = Phase {
            rate: 7.0,
            total_conns: 3,
            issue_until: start + Duration::from_secs(1),
            ..phase
        };
        // Global indices 0..7 are due within the second: 0,3,6 / 1,4 / 2,5.
        assert_eq!(open_slot(0, 0).unsent(&odd), 3);
        assert_eq!(open_slot(0, 1).unsent(&odd), 2);
        assert_eq!(open_slot(0, 2).unsent(&odd), 2);
    }
}
