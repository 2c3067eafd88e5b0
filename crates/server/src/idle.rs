//! Which connections have waited a while for input, without a timer per read.
//!
//! A connection gives its read buffers back once it has waited [`crate::conn::RELEASE_IDLE_AFTER`]
//! for input. A timer raced against every read costs about a fifth more user-space work per
//! request at pipeline depth 1 (measured with callgrind), so instead each executor keeps one
//! coarse clock: its housekeeping loop ticks it once per release period and wakes every
//! connection then waiting. A waiting read that has seen two ticks has been idle for at least
//! one period. A read that completes costs nothing here; one that waits stores its waker in
//! the connection's own slot (a comparison when it is the same waker as last time).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// One executor's idle clock and the wakers of its waiting connections.
#[derive(Debug, Default)]
pub struct IdleClock {
    epoch: Cell<u64>,
    slots: RefCell<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

/// A connection's place in its executor's [`IdleClock`], given back when dropped.
#[derive(Debug)]
pub struct IdleSlot<'a> {
    clock: &'a IdleClock,
    index: usize,
}

impl Drop for IdleSlot<'_> {
    fn drop(&mut self) {
        let mut slots = self.clock.slots.borrow_mut();
        if let Some(waker) = slots.wakers.get_mut(self.index) {
            *waker = None;
        }
        slots.free.push(self.index);
    }
}

impl IdleClock {
    /// A slot for a new connection.
    pub fn slot(&self) -> IdleSlot<'_> {
        let mut slots = self.slots.borrow_mut();
        let index = match slots.free.pop() {
            Some(index) => index,
            None => {
                slots.wakers.push(None);
                slots.wakers.len() - 1
            }
        };
        IdleSlot { clock: self, index }
    }

    /// Advances the clock and wakes every connection waiting for input, so each can see
    /// whether it has now waited long enough.
    pub fn tick(&self) {
        self.epoch.set(self.epoch.get() + 1);
        let waiting: Vec<Waker> = self
            .slots
            .borrow_mut()
            .wakers
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for waker in waiting {
            waker.wake();
        }
    }
}

impl IdleSlot<'_> {
    /// `read` until it completes (`Some`), or `None` once it has waited through two ticks of
    /// the clock: at least one release period without input.
    pub fn read_unless_idle<F: Future + Unpin>(&self, read: F) -> UnlessIdle<'_, F> {
        UnlessIdle {
            slot: self,
            started: self.clock.epoch.get(),
            read,
        }
    }

    fn park(&self, waker: &Waker) {
        let mut slots = self.clock.slots.borrow_mut();
        if let Some(entry) = slots.wakers.get_mut(self.index) {
            match entry {
                Some(parked) if parked.will_wake(waker) => {}
                _ => *entry = Some(waker.clone()),
            }
        }
    }
}

/// See [`IdleSlot::read_unless_idle`].
#[derive(Debug)]
pub struct UnlessIdle<'a, F> {
    slot: &'a IdleSlot<'a>,
    started: u64,
    read: F,
}

impl<F: Future + Unpin> Future for UnlessIdle<'_, F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = Pin::new(&mut self.read).poll(cx) {
            return Poll::Ready(Some(output));
        }
        if self.slot.clock.epoch.get() >= self.started + 2 {
            return Poll::Ready(None);
        }
        self.slot.park(cx.waker());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_waiting_read_is_idle_after_two_ticks_and_a_ready_one_never() {
        let clock = IdleClock::default();
        let slot = clock.slot();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);

        let mut ready = slot.read_unless_idle(std::future::ready(7));
        assert_eq!(Pin::new(&mut ready).poll(&mut cx), Poll::Ready(Some(7)));

        let mut waiting = slot.read_unless_idle(std::future::pending::<()>());
        assert_eq!(Pin::new(&mut waiting).poll(&mut cx), Poll::Pending);
        clock.tick();
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            1,
            "a tick wakes the waiting read"
        );
        assert_eq!(Pin::new(&mut waiting).poll(&mut cx), Poll::Pending);
        clock.tick();
        assert_eq!(Pin::new(&mut waiting).poll(&mut cx), Poll::Ready(None));
        // Nothing parked any more: a tick wakes nobody.
        clock.tick();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn slots_are_reused_and_forget_their_waker() {
        let clock = IdleClock::default();
        let first = clock.slot();
        let index = first.index;
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        first.park(&waker);
        drop(first);
        clock.tick();
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            0,
            "a closed connection is not woken"
        );
        assert_eq!(clock.slot().index, index);
    }
}
