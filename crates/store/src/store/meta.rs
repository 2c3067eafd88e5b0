//! The meta protocol's operations (`mg`, `ms`, `md`, `ma`, `me`), which the binary protocol
//! shares: the classic commands plus memcached's stale items and recache wins.
//!
//! An item can be marked *stale* (`md <key> I`, or `ms <key> C<old cas> I` storing a value
//! older than the current one), and one client at a time is handed the *win*: the right to
//! recache a missing (`mg N`), nearly expired (`mg R`) or stale item. Later clients see that a
//! win was handed out (`Z`) until the item is replaced or invalidated again.

use crate::expiry::{self, Secs};
use crate::table::{self, NewItem};
use crate::{ArithOutcome, ItemView, SetMode, StoreOutcome, UnixSecs, arith};

use super::{Store, take_cas};

/// What an `mg` asks of the item besides reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetOptions {
    /// `T`: a new exptime (memcached's form).
    pub touch: Option<i64>,
    /// `N`: on a miss, create an empty item with this exptime and hand this client the win.
    pub vivify: Option<i64>,
    /// `R`: hand this client the win if the item expires sooner than this exptime.
    pub recache: Option<i64>,
    /// `false` for `u`: no LRU bump, the item is not marked fetched.
    pub bump: bool,
}

/// An `mg` hit (or a miss that `N` turned into a new item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaHit<'a> {
    /// The item after this request; `last_access` and `fetched` are from before it.
    pub item: ItemView<'a>,
    /// Absolute exptime before this request's `T` or `N` (0 = never; 0 for a new item).
    pub exptime_before: UnixSecs,
    /// `N` created the item.
    pub created: bool,
    /// `W`: this client won the right to recache.
    pub win: bool,
    /// `X`: the item is stale.
    pub stale: bool,
    /// `Z`: a win had already been handed out.
    pub win_sent: bool,
}

/// How an `md` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed, or with `I` marked stale.
    Deleted,
    NotFound,
    /// `C` did not match.
    Exists,
}

/// How an `ma` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaArithOutcome {
    Done {
        value: u64,
        cas: u64,
        /// Absolute exptime before this request's `T`/`N`, and after (0 = never).
        exptime_before: UnixSecs,
        exptime: UnixSecs,
        /// `N` created the item with the initial value.
        created: bool,
    },
    NotFound,
    /// `C` did not match.
    Exists,
    NonNumeric,
    /// The number grew and no memory could be found (`SERVER_ERROR out of memory`).
    OutOfMemory,
    /// `N` could not allocate the new item (`SERVER_ERROR Out of memory allocating new item`).
    VivifyOutOfMemory,
}

/// What `ma` asks for besides the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArithOptions {
    pub incr: bool,
    pub delta: u64,
    /// `C`: only if the item's unique is this one (0 matches anything, as in memcached).
    pub cas: Option<u64>,
    /// `N` and `J`: create a missing item holding `initial` with this exptime.
    pub vivify: Option<(u64, i64)>,
    /// `T`: the item's new exptime on success.
    pub touch: Option<i64>,
}

impl Store {
    /// `mg`: [`Store::get`] with `mg`'s options. Counts as a get, or a touch with `T`.
    pub fn meta_get(
        &mut self,
        key: &[u8],
        options: GetOptions,
        now: UnixSecs,
    ) -> Option<MetaHit<'_>> {
        let now = self.tick(now);
        self.stats.cmd_get += 1;
        if options.touch.is_some() {
            self.stats.cmd_touch += 1;
        }
        let mut created = false;
        let found = match self.lookup(key, now) {
            Some(i) => Some(i),
            None => match options.vivify {
                // memcached links an empty item with no expiry, then `N` sets its exptime.
                Some(_) if self.link_new(empty_item(key, now)) == StoreOutcome::Stored => {
                    created = true;
                    self.table.find(key)
                }
                _ => None,
            },
        };
        let Some(i) = found else {
            if options.touch.is_some() {
                self.stats.touch_misses += 1;
            } else {
                self.stats.get_misses += 1;
            }
            return None;
        };
        if options.touch.is_some() {
            self.stats.touch_hits += 1;
        } else {
            self.stats.get_hits += 1;
        }
        let slot = self.table.slot_mut(i);
        let exptime_before = slot.exptime;
        if created && let Some(ttl) = options.vivify {
            slot.exptime = expiry::resolve_exptime(ttl, now);
        }
        if let Some(ttl) = options.touch {
            slot.exptime = expiry::resolve_exptime(ttl, now);
        }
        let win_sent = slot.win_sent();
        let stale = slot.stale();
        let recache = options.recache.is_some_and(|ttl| {
            slot.exptime != 0 && slot.exptime < expiry::resolve_exptime(ttl, now)
        });
        // A stale item hands out a win too, once.
        let win = created || (!win_sent && (recache || stale));
        if win {
            slot.set_win_sent(true);
        }
        let item = if options.bump {
            self.access(i, now, None)
        } else {
            self.view(i)
        };
        Some(MetaHit {
            item,
            exptime_before: u64::from(exptime_before),
            created,
            win,
            stale,
            win_sent,
        })
    }

    /// `ms`: [`Store::store`] with an optional CAS for any mode and `I` (invalidate). Returns
    /// the outcome and, when stored, the item's new unique (0 otherwise).
    ///
    /// As memcached: a CAS turns set and replace into a CAS store, is checked by append and
    /// prepend, and is ignored by add. With `invalidate`, a CAS older than the item's stores
    /// the value marked stale, keeping the item's exptime and whether a win was handed out.
    #[allow(clippy::too_many_arguments)] // ms's fields, as `store` plus two
    pub fn meta_store(
        &mut self,
        mode: SetMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
        cas: Option<u64>,
        invalidate: bool,
        now: UnixSecs,
    ) -> (StoreOutcome, u64) {
        let secs = self.tick(now);
        let mode = match (mode, cas) {
            (SetMode::Set | SetMode::Replace, Some(unique)) => SetMode::Cas(unique),
            (mode, _) => mode,
        };
        let outcome = match (mode, cas) {
            (SetMode::Cas(unique), _) if invalidate => match self.lookup(key, secs) {
                Some(i) if unique < self.table.slot(i).cas => {
                    self.store_stale(i, key, flags, value, secs)
                }
                _ => self.store(mode, key, flags, exptime, value, now),
            },
            (SetMode::Append | SetMode::Prepend, Some(unique)) if unique != 0 => {
                match self.lookup(key, secs) {
                    Some(i) if self.shown_cas(self.table.slot(i).cas) != unique => {
                        StoreOutcome::Exists
                    }
                    _ => self.store(mode, key, flags, exptime, value, now),
                }
            }
            _ => self.store(mode, key, flags, exptime, value, now),
        };
        let unique = match outcome {
            StoreOutcome::Stored => self
                .table
                .find(key)
                .map_or(0, |i| self.shown_cas(self.table.slot(i).cas)),
            _ => 0,
        };
        (outcome, unique)
    }

    /// `md`: remove the item, or with `invalidate` mark it stale (a new unique, the win
    /// handed out again, and `exptime` if given).
    pub fn meta_delete(
        &mut self,
        key: &[u8],
        cas: Option<u64>,
        invalidate: bool,
        exptime: Option<i64>,
        now: UnixSecs,
    ) -> DeleteOutcome {
        let now = self.tick(now);
        let Some(i) = self.lookup(key, now) else {
            self.stats.delete_misses += 1;
            return DeleteOutcome::NotFound;
        };
        if cas.is_some_and(|unique| unique != self.shown_cas(self.table.slot(i).cas)) {
            self.stats.delete_misses += 1;
            return DeleteOutcome::Exists;
        }
        if invalidate {
            let unique = take_cas(&mut self.next_cas, self.cas_stride);
            self.untrack(i);
            let slot = self.table.slot_mut(i);
            if let Some(ttl) = exptime {
                slot.exptime = expiry::resolve_exptime(ttl, now);
            }
            slot.set_stale(true);
            slot.set_win_sent(false);
            slot.cas = unique;
            self.track(i);
        } else {
            self.stats.delete_hits += 1;
            self.remove(i);
        }
        DeleteOutcome::Deleted
    }

    /// `ma`: [`Store::arith`] with a CAS check, creation of a missing item and a new TTL.
    pub fn meta_arith(
        &mut self,
        key: &[u8],
        options: ArithOptions,
        now: UnixSecs,
    ) -> MetaArithOutcome {
        let secs = self.tick(now);
        let mut created = false;
        let value = match self.lookup(key, secs) {
            Some(i) => {
                if options.cas.is_some_and(|unique| {
                    unique != 0 && unique != self.shown_cas(self.table.slot(i).cas)
                }) {
                    return MetaArithOutcome::Exists;
                }
                match self.arith(key, options.incr, options.delta, now) {
                    ArithOutcome::Value(value) => value,
                    ArithOutcome::NotFound => return MetaArithOutcome::NotFound,
                    ArithOutcome::NonNumeric => return MetaArithOutcome::NonNumeric,
                    ArithOutcome::OutOfMemory => return MetaArithOutcome::OutOfMemory,
                }
            }
            None => {
                let Some((initial, _)) = options.vivify else {
                    if options.incr {
                        self.stats.incr_misses += 1;
                    } else {
                        self.stats.decr_misses += 1;
                    }
                    return MetaArithOutcome::NotFound;
                };
                let mut buf = [0; arith::MAX_U64_DIGITS];
                let digits = arith::format_u64(initial, &mut buf);
                if self.store(SetMode::Add, key, 0, 0, digits, now) != StoreOutcome::Stored {
                    return MetaArithOutcome::VivifyOutOfMemory;
                }
                created = true;
                initial
            }
        };
        let Some(i) = self.table.find(key) else {
            // Just stored or updated under this call: only a zero-byte budget loses it.
            return MetaArithOutcome::NotFound;
        };
        let slot = self.table.slot_mut(i);
        let exptime_before = slot.exptime;
        if created && let Some((_, ttl)) = options.vivify {
            slot.exptime = expiry::resolve_exptime(ttl, secs);
        }
        if let Some(ttl) = options.touch {
            slot.exptime = expiry::resolve_exptime(ttl, secs);
        }
        let (cas, exptime) = (slot.cas, slot.exptime);
        MetaArithOutcome::Done {
            value,
            cas: self.shown_cas(cas),
            exptime_before: u64::from(exptime_before),
            exptime: u64::from(exptime),
            created,
        }
    }

    /// `me`: the live item, without bumping it or counting anything.
    pub fn peek(&mut self, key: &[u8], now: UnixSecs) -> Option<ItemView<'_>> {
        let now = self.tick(now);
        let i = self.lookup(key, now)?;
        Some(self.view(i))
    }

    /// The item as it is, for a read that does not access it.
    fn view(&self, i: u32) -> ItemView<'_> {
        let slot = self.table.slot(i);
        ItemView {
            key: slot.key(),
            value: slot.value(),
            shared: slot.shared(),
            flags: slot.flags,
            cas: self.shown_cas(slot.cas),
            exptime: u64::from(slot.exptime),
            last_access: u64::from(slot.atime),
            fetched: slot.fetched,
        }
    }

    /// `ms ... C<older> I`: the value replaces item `i`'s, keeping its exptime, marked stale;
    /// a win already handed out stays handed out.
    fn store_stale(
        &mut self,
        i: u32,
        key: &[u8],
        flags: u32,
        value: &[u8],
        now: Secs,
    ) -> StoreOutcome {
        let slot = self.table.slot(i);
        let (exptime, win_sent) = (slot.exptime, slot.win_sent());
        let item = NewItem {
            key,
            value,
            flags,
            exptime,
            now,
            cas: 0,
        };
        if key.len() > table::MAX_KEY_BYTES
            || table::item_charge(key.len(), value.len()) > self.max_bytes
        {
            return self.out_of_memory(SetMode::Cas(0), key);
        }
        let outcome = self.overwrite(i, item);
        if outcome == StoreOutcome::OutOfMemory {
            return self.out_of_memory(SetMode::Cas(0), key);
        }
        self.stats.cmd_set += 1;
        let slot = self.table.slot_mut(i);
        slot.set_stale(true);
        slot.set_win_sent(win_sent);
        outcome
    }
}

/// The empty item `mg ... N` links.
fn empty_item(key: &[u8], now: Secs) -> NewItem<'_> {
    NewItem {
        key,
        value: &[],
        flags: 0,
        exptime: 0,
        now,
        cas: 0,
    }
}

#[cfg(test)]
mod tests;
