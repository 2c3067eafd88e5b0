//! The server-wide budget for request bytes still being received: memcached's
//! `-o read_buf_mem_limit`, in the same unit (megabytes) and with the same meaning (a bound on
//! the memory of connections' read buffers).
//!
//! Every connection's read buffer starts at `conn::input::READ_BUF_BYTES` (16 KiB; twice that on
//! TLS), which is not charged (it is part of the per-connection cost, bounded by `-c`). A request that does not
//! fit, a value of a `set` still arriving, a binary packet's body, a long multi-get line,
//! grows the buffer, and the growth is charged here before the connection reads again.
//! When the budget cannot cover it the request is refused the way memcached refuses an
//! allocation it cannot make: `SERVER_ERROR out of memory storing object` and the rest of the
//! value discarded as it arrives, or, for a request line, `SERVER_ERROR out of memory reading
//! request` and the connection closed. So however many clients stall part-way through a large
//! value, the read buffers of all of them together stay within the limit.
//!
//! Unlike memcached, whose default is no limit, rampart's default is `-m`: with `-I` at most
//! half of `-m`, two values of the largest size can always be in flight. `0` lifts the limit,
//! as in memcached.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The bytes of growing read buffers, server-wide.
#[derive(Debug, Default)]
pub struct ReadBudget {
    /// `None`: no limit (`-o read_buf_mem_limit=0`).
    limit_bytes: Option<usize>,
    used_bytes: AtomicUsize,
    /// Requests refused because the budget could not cover them (`stats`: `read_buf_oom`).
    refusals: AtomicU64,
}

impl ReadBudget {
    pub fn new(limit_bytes: Option<usize>) -> ReadBudget {
        ReadBudget {
            limit_bytes,
            ..ReadBudget::default()
        }
    }

    /// Takes `bytes` from the budget, or nothing when they are not there.
    pub fn try_take(&self, bytes: usize) -> bool {
        let Some(limit) = self.limit_bytes else {
            self.used_bytes.fetch_add(bytes, Ordering::Relaxed);
            return true;
        };
        self.used_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    /// Gives back `bytes` taken earlier.
    pub fn give_back(&self, bytes: usize) {
        self.used_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Counts a request refused for want of budget.
    pub fn refused(&self) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
    }

    pub fn limit_bytes(&self) -> Option<usize> {
        self.limit_bytes
    }

    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::ReadBudget;

    #[test]
    fn takes_up_to_the_limit_and_gets_it_back() {
        let budget = ReadBudget::new(Some(100));
        assert!(budget.try_take(60));
        assert!(!budget.try_take(41));
        assert!(budget.try_take(40));
        assert_eq!(budget.used_bytes(), 100);
        budget.give_back(60);
        assert!(budget.try_take(50));
        assert!(!budget.try_take(usize::MAX));
    }

    #[test]
    fn without_a_limit_everything_is_counted_and_granted() {
        let budget = ReadBudget::new(None);
        assert!(budget.try_take(1 << 40));
        assert_eq!(budget.used_bytes(), 1 << 40);
    }
}
