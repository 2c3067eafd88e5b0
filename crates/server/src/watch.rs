//! `watch`: memcached's live log of what the server does, for connections that ask for it.
//!
//! A watcher follows some streams (fetchers, mutations, evictions, connection events). Every
//! core formats an event once, where it happens, into each interested watcher's queue; the
//! watcher's connection drains its queue every [`WATCH_POLL`] and writes it. A queue holds at
//! most [`WATCHER_QUEUE_BYTES`] (memcached's `watcher_logbuf_size`): a watcher that does not
//! read loses events, counted (`log_watcher_skipped`), and never grows the server. With no
//! watcher the cost on the request path is one relaxed load ([`Watchers::wants`]) per
//! connection turn and per cross-core batch, not per key; a watcher sees a connection's
//! requests from its next turn on.
//!
//! The lines are memcached's (`ts=<secs>.<micros> gid=<n> type=... cfd=<fd> ...`). What
//! differs: memcached also logs the lookups its stores, deletes and arithmetic make inside
//! (an `item_get` before each `item_store`); rampart logs the commands' own reads and writes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rampart_proto::request::Watch;

/// Bytes a watcher's queue holds before events are dropped.
pub const WATCHER_QUEUE_BYTES: usize = 256 * 1024;
/// How often a watcher's connection writes what has arrived.
pub const WATCH_POLL: Duration = Duration::from_millis(50);

/// One watching connection's queue.
#[derive(Debug)]
pub struct Watcher {
    streams: u8,
    queue: Mutex<Vec<u8>>,
    skipped: AtomicU64,
}

impl Watcher {
    /// Takes what has arrived (into `out`, which is emptied first).
    pub fn drain(&self, out: &mut Vec<u8>) {
        out.clear();
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *queue, out);
    }
}

/// Every watcher of the process.
#[derive(Debug, Default)]
pub struct Watchers {
    /// The streams some watcher follows, or'ed.
    active: AtomicU8,
    next_gid: AtomicU64,
    list: Mutex<Vec<Arc<Watcher>>>,
    /// Lines queued, and lines dropped because a queue was full (memcached's
    /// `log_watcher_sent` and `log_watcher_skipped`).
    pub sent: AtomicU64,
    pub skipped: AtomicU64,
}

/// Keeps a watcher registered until dropped.
#[derive(Debug)]
pub struct Registration<'a> {
    watchers: &'a Watchers,
    pub watcher: Arc<Watcher>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut list = self.watchers.lock();
        list.retain(|w| !Arc::ptr_eq(w, &self.watcher));
        self.watchers.recompute(&list);
    }
}

impl Watchers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Watcher>>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn recompute(&self, list: &[Arc<Watcher>]) {
        let active = list.iter().fold(0, |bits, w| bits | w.streams);
        self.active.store(active, Ordering::Relaxed);
    }

    /// Whether some watcher follows `stream` (a [`Watch`] bit): the request path's check.
    #[inline]
    pub fn wants(&self, stream: u8) -> bool {
        self.active.load(Ordering::Relaxed) & stream != 0
    }

    /// Whether a keyed request's outcome is logged ([`crate::call::run_logged`]): someone
    /// watches fetchers or mutations.
    #[inline]
    pub fn wants_keyed(&self) -> bool {
        self.wants(Watch::FETCHERS | Watch::MUTATIONS)
    }

    /// How many connections watch.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Registers a watcher of `streams` (a bare `watch` follows fetchers, as memcached's).
    pub fn register(&self, streams: u8) -> Registration<'_> {
        let streams = if streams == 0 {
            Watch::FETCHERS
        } else {
            streams
        };
        let watcher = Arc::new(Watcher {
            streams,
            queue: Mutex::new(Vec::new()),
            skipped: AtomicU64::new(0),
        });
        let mut list = self.lock();
        list.push(Arc::clone(&watcher));
        self.recompute(&list);
        Registration {
            watchers: self,
            watcher,
        }
    }

    /// Logs one event of `stream`: `body` writes what follows `gid=<n> ` (without the
    /// newline).
    #[cold]
    pub fn emit(&self, stream: u8, body: impl FnOnce(&mut String)) {
        let gid = self.next_gid.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = String::with_capacity(160);
        // memcached prints the microseconds without padding (`%d.%d`).
        let _ = write!(
            line,
            "ts={}.{} gid={gid} ",
            now.as_secs(),
            now.subsec_micros()
        );
        body(&mut line);
        line.push('\n');
        let list = self.lock();
        for watcher in list.iter().filter(|w| w.streams & stream != 0) {
            let mut queue = watcher.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.len() + line.len() > WATCHER_QUEUE_BYTES {
                watcher.skipped.fetch_add(1, Ordering::Relaxed);
                self.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            queue.extend_from_slice(line.as_bytes());
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// memcached's `eviction` line, for watchers of evictions.
pub fn log_eviction(watchers: &Watchers, evicted: rampart_store::Evicted<'_>) {
    if !watchers.wants(Watch::EVICTIONS) {
        return;
    }
    watchers.emit(Watch::EVICTIONS, |line| {
        let ttl = if evicted.exptime == 0 {
            -1
        } else {
            i64::try_from(evicted.exptime.saturating_sub(evicted.now)).unwrap_or(i64::MAX)
        };
        let _ = write!(
            line,
            "type=eviction key={} fetch={} ttl={ttl} la={} clsid=1 size={}",
            key_text(evicted.key),
            if evicted.fetched { "yes" } else { "no" },
            evicted.now.saturating_sub(evicted.last_access),
            evicted.value_len
        );
    });
}

/// What an event says about a key: memcached prints keys as they are.
pub fn key_text(key: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_the_watchers_of_their_stream_within_the_bound() {
        let watchers = Watchers::default();
        assert!(!watchers.wants(Watch::FETCHERS));
        let fetchers = watchers.register(0);
        let conns = watchers.register(Watch::CONNEVENTS);
        assert!(watchers.wants(Watch::FETCHERS) && watchers.wants(Watch::CONNEVENTS));
        assert!(!watchers.wants(Watch::MUTATIONS));
        watchers.emit(Watch::FETCHERS, |l| l.push_str("type=item_get key=a"));
        let mut out = Vec::new();
        fetchers.watcher.drain(&mut out);
        let text = String::from_utf8(out.clone()).unwrap_or_default();
        assert!(
            text.starts_with("ts=") && text.ends_with(" gid=1 type=item_get key=a\n"),
            "{text}"
        );
        conns.watcher.drain(&mut out);
        assert!(out.is_empty());
        // A watcher that never reads loses events, and the queue stays bounded.
        for _ in 0..10_000 {
            watchers.emit(Watch::FETCHERS, |l| l.push_str(&"x".repeat(100)));
        }
        fetchers.watcher.drain(&mut out);
        assert!(out.len() <= WATCHER_QUEUE_BYTES);
        assert!(watchers.skipped.load(Ordering::Relaxed) > 0);
        drop(fetchers);
        drop(conns);
        assert!(!watchers.wants(Watch::FETCHERS | Watch::CONNEVENTS));
    }
}
