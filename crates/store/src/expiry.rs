//! Time: memcached's exptime rules and `flush_all`'s invalidation watermarks.
//!
//! Times inside the store are `u32` unix seconds (enough until 2106; larger values saturate),
//! which keeps a slot at 48 bytes.

/// Internal time: unix seconds, saturated to `u32`.
pub(crate) type Secs = u32;

/// Largest exptime taken as relative to now: 30 days (memcached's `REALTIME_MAXDELTA`).
pub(crate) const MAX_RELATIVE_EXPTIME_SECS: i64 = 60 * 60 * 24 * 30;

/// The stored exptime of an item that is expired from the start (a negative exptime).
/// memcached maps it to the second the server started; any past second does.
const ALREADY_EXPIRED: Secs = 1;

/// Saturates a caller's unix time to the internal width.
pub(crate) fn secs(t: u64) -> Secs {
    Secs::try_from(t).unwrap_or(Secs::MAX)
}

/// memcached's `realtime(EXPTIME_TO_POSITIVE_TIME(e))`, in absolute unix seconds:
/// 0 = never, up to 30 days is relative to `now`, larger is an absolute unix time (already
/// expired if not after `now`), negative is already expired.
pub(crate) fn resolve_exptime(exptime: i64, now: Secs) -> Secs {
    match exptime {
        0 => 0,
        e if e < 0 => ALREADY_EXPIRED,
        e if e <= MAX_RELATIVE_EXPTIME_SECS => {
            secs(u64::from(now).saturating_add(e.unsigned_abs()))
        }
        e => secs(e.unsigned_abs()),
    }
}

/// Whether an item with this stored exptime is expired at `now`.
pub(crate) fn is_expired(exptime: Secs, now: Secs) -> bool {
    exptime != 0 && exptime <= now
}

/// `flush_all` state: memcached's `oldest_live` (a time) and `oldest_cas` (a CAS watermark).
///
/// An item is flushed once a flush time `F <= now` and the item was last updated at or
/// before `F`, or (for a flush that took effect at once) its CAS unique predates the flush.
/// Flushes that already took effect are kept in `done_*` so that a later delayed flush does
/// not bring their victims back (memcached overwrites `oldest_live` and can resurrect items
/// its crawler has not reclaimed yet; that is a race, not a feature, and is not copied).
#[derive(Debug, Default)]
pub(crate) struct Flush {
    done_time: Option<Secs>,
    done_cas: u64,
    pending: Option<Secs>,
}

impl Flush {
    /// Whether an item last updated at `atime` with unique `cas` is invalid at `now`.
    pub(crate) fn is_flushed(&self, atime: Secs, cas: u64, now: Secs) -> bool {
        cas < self.done_cas
            || self.done_time.is_some_and(|f| atime <= f)
            || self.pending.is_some_and(|f| f <= now && atime <= f)
    }

    /// Applies `flush_all <delay>` at `now`. `watermark` hands out a fresh CAS unique, taken
    /// only when the flush takes effect at once (memcached's `oldest_cas = get_cas_id()`).
    pub(crate) fn flush_all(&mut self, delay: i64, now: Secs, watermark: impl FnOnce() -> u64) {
        if let Some(f) = self.pending.take_if(|f| *f <= now) {
            self.done_time = self.done_time.max(Some(f));
        }
        // memcached: a non-positive delay means now; otherwise realtime(delay). Then
        // oldest_live = new_oldest - 1, so `flush_all 1` also takes effect at once.
        let new_oldest = if delay > 0 {
            resolve_exptime(delay, now)
        } else {
            now
        };
        let oldest_live = new_oldest.saturating_sub(1);
        if oldest_live <= now {
            self.done_time = self.done_time.max(Some(oldest_live));
            self.done_cas = watermark();
            self.pending = None;
        } else {
            // A later flush_all replaces an earlier pending one.
            self.pending = Some(oldest_live);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Secs = 1_700_000_000;

    #[test]
    fn exptime_forms() {
        assert_eq!(resolve_exptime(0, NOW), 0);
        assert_eq!(resolve_exptime(1, NOW), NOW + 1);
        assert_eq!(resolve_exptime(2_592_000, NOW), NOW + 2_592_000);
        assert_eq!(resolve_exptime(2_592_001, NOW), 2_592_001);
        assert_eq!(resolve_exptime(i64::from(NOW) + 5, NOW), NOW + 5);
        assert!(is_expired(resolve_exptime(-1, NOW), NOW));
        assert!(is_expired(resolve_exptime(i64::from(NOW), NOW), NOW));
        assert!(is_expired(resolve_exptime(2_592_001, NOW), NOW));
        assert!(!is_expired(resolve_exptime(10, NOW), NOW + 9));
        assert!(is_expired(resolve_exptime(10, NOW), NOW + 10));
        assert_eq!(resolve_exptime(i64::MAX, NOW), Secs::MAX);
    }

    #[test]
    fn immediate_flush_uses_the_cas_watermark() {
        let mut f = Flush::default();
        f.flush_all(0, NOW, || 10);
        // Stored earlier in the same second, before the flush: gone.
        assert!(f.is_flushed(NOW, 9, NOW));
        // Stored in the same second after the flush: alive.
        assert!(!f.is_flushed(NOW, 11, NOW));
        assert!(f.is_flushed(NOW - 1, 11, NOW));
    }

    #[test]
    fn delayed_flush_takes_effect_one_second_early_like_memcached() {
        let mut f = Flush::default();
        let mut took_cas = false;
        f.flush_all(10, NOW, || {
            took_cas = true;
            1
        });
        assert!(!took_cas);
        assert!(!f.is_flushed(NOW, 5, NOW + 8));
        assert!(f.is_flushed(NOW, 5, NOW + 9));
        assert!(f.is_flushed(NOW + 9, 5, NOW + 9));
        assert!(!f.is_flushed(NOW + 10, 5, NOW + 10));
    }

    #[test]
    fn flush_all_1_is_immediate() {
        let mut f = Flush::default();
        f.flush_all(1, NOW, || 7);
        assert!(f.is_flushed(NOW, 6, NOW));
    }

    #[test]
    fn later_flush_replaces_pending_but_not_done() {
        let mut f = Flush::default();
        f.flush_all(100, NOW, || 1);
        f.flush_all(200, NOW, || 1);
        assert!(!f.is_flushed(NOW, 5, NOW + 150));
        assert!(f.is_flushed(NOW, 5, NOW + 199));

        let mut g = Flush::default();
        g.flush_all(0, NOW, || 10);
        g.flush_all(100, NOW + 1, || 20);
        assert!(
            g.is_flushed(NOW, 9, NOW + 2),
            "done flush must not resurrect"
        );
        assert!(!g.is_flushed(NOW + 1, 11, NOW + 2));
    }

    #[test]
    fn absolute_flush_time() {
        let mut f = Flush::default();
        f.flush_all(i64::from(NOW) + 50, NOW, || 1);
        assert!(!f.is_flushed(NOW, 5, NOW + 48));
        assert!(f.is_flushed(NOW, 5, NOW + 49));
        let mut g = Flush::default();
        g.flush_all(i64::from(NOW) - 50, NOW, || 3);
        assert!(g.is_flushed(NOW, 2, NOW));
    }
}
