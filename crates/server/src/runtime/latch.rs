//! A one-way flag that any thread may set and any core may await without polling.
//!
//! The stop request is one: the signal thread sets it, and every executor waiting on it wakes
//! at once, instead of noticing at its next timer. Setting it wakes every task waiting on it
//! (glommio takes a waker woken from another thread to its executor and writes that
//! executor's eventfd). A task that waits again registers once, so the wakers kept are one per
//! waiting task, not one per wait.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

/// See the module comment.
#[derive(Debug, Default)]
pub struct Latch {
    set: AtomicBool,
    waiting: Mutex<Vec<Waker>>,
}

impl Latch {
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Sets it and wakes every task waiting on it; `false` when it was set already.
    pub fn set(&self) -> bool {
        if self.set.swap(true, Ordering::AcqRel) {
            return false;
        }
        let waiting = std::mem::take(&mut *self.waiting());
        for waker in waiting {
            waker.wake();
        }
        true
    }

    /// Completes once it is set.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            // Looked at under the lock `set` takes after setting the flag: either the flag is
            // seen here, or the waker registered here is among those `set` wakes.
            let mut waiting = self.waiting();
            if self.is_set() {
                return Poll::Ready(());
            }
            if !waiting.iter().any(|waker| waker.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
    }

    fn waiting(&self) -> MutexGuard<'_, Vec<Waker>> {
        // A waker that panicked while woken leaves the list as it was: still usable.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context, Wake};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn setting_wakes_each_waiting_task_once_and_only_the_first_set_counts() {
        let latch = Latch::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut first = pin!(latch.wait());
        let mut second = pin!(latch.wait());
        assert_eq!(first.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(first.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(second.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(latch.waiting().len(), 1, "one task, one waker");
        assert!(latch.set());
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(!latch.set(), "set already");
        assert_eq!(first.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(second.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(pin!(latch.wait()).poll(&mut cx), Poll::Ready(()));
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
    }
}
