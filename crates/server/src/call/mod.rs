//! What every keyed request asks of its key's owner, and what it came to: one shape for the
//! classic text commands, the meta commands and the binary protocol.
//!
//! A connection turns each keyed request into a [`Call`] (what the store must do) and a form
//! (how the reply is written, `session::form`). [`run`] executes the call on the owning
//! shard's store, whether the key is this core's (inline) or another's (in a batch, on that
//! core), and returns an [`Answer`] that borrows the item; a batch carries the answer back in
//! its owned form ([`Owned`]). The reply is written at the origin from the answer, by one
//! encoder per form. So a key behaves the same from any core and in any protocol, and what
//! applies to every keyed request (output bounds, access checks, an audit trail) is written
//! once, around [`run`].
//!
//! Depends on the store only: no sockets, no batches, no reply bytes.

pub mod meta;

use rampart_store::{
    ArithOutcome, ItemBytes, PrefixEvent, SetMode, SharedValue, Store, StoreOutcome,
};

use std::fmt::Write as _;

use rampart_proto::request::Watch;

use self::meta::{MetaCall, MetaOutcome, MetaResult};
use crate::watch::Watchers;

/// A byte range in one of a batch's arenas (where an owned answer's value is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub len: usize,
}

impl Span {
    pub(crate) fn of(arena: &[u8], span: Span) -> &[u8] {
        &arena[span.start..span.start + span.len]
    }
}

/// What a keyed request does to the store, without its wire details. `Copy`, so it can sit
/// in a batch; the data block of a store travels beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `get`/`gets`, or `gat`/`gats` with the new exptime.
    Get {
        touch: Option<i64>,
    },
    /// A classic storage command.
    Store {
        mode: SetMode,
        flags: u32,
        exptime: i64,
    },
    /// `incr`/`decr`.
    Arith {
        incr: bool,
        delta: u64,
    },
    Delete,
    Touch {
        exptime: i64,
    },
    /// A meta request, or a binary one encoded as one.
    Meta(MetaCall),
    /// A store refused before it ran, counted as memcached counts `why`. Drops the old value
    /// when memcached would (`unlink`).
    Refused {
        unlink: bool,
        why: Refusal,
    },
}

/// Why a store was refused before it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than `-I` (`store_too_large`).
    TooLarge,
    /// Its value did not fit the read budget, as memcached's failed item allocation
    /// (`store_no_memory`).
    NoMemory,
}

/// A classic get's hit. Equal hits have equal fields and bytes, wherever the bytes are.
#[derive(Debug, Clone, Copy, Eq)]
pub struct Hit<'a> {
    pub flags: u32,
    pub cas: u64,
    pub value: &'a [u8],
    /// The item's allocation, so the reply can hold the value instead of copying it.
    pub shared: Option<&'a ItemBytes>,
}

impl PartialEq for Hit<'_> {
    fn eq(&self, other: &Self) -> bool {
        (self.flags, self.cas, self.value) == (other.flags, other.cas, other.value)
    }
}

/// What a [`Call`] came to, borrowing the item from the store (or from a batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// A classic get: the item, or a miss.
    Value(Option<Hit<'a>>),
    Stored(StoreOutcome),
    Arith(ArithOutcome),
    /// `delete`: whether a live item was removed.
    Deleted(bool),
    /// `touch`: whether the key was there.
    Touched(bool),
    Meta(MetaResult<'a>),
    /// Nothing to answer ([`Call::Refused`]).
    Done,
}

/// Where a keyed request's events go (`watch`): the watchers, and the requesting connection's
/// socket (memcached's `cfd`).
#[derive(Debug, Clone, Copy)]
pub struct Log<'w> {
    pub watchers: &'w Watchers,
    pub fd: i32,
}

/// Runs `call` for `key` on `store`; `data` is a store's value. With a watcher of fetchers or
/// mutations, the outcome is logged ([`run_logged`]; the choice is the caller's, so that this,
/// the request path, stays as it was without `watch`).
#[inline]
pub fn run<'s>(store: &'s mut Store, key: &[u8], call: Call, data: &[u8], now: u64) -> Answer<'s> {
    run_unlogged(store, key, call, data, now)
}

/// [`run`] while someone watches: the call, then its line.
#[cold]
#[inline(never)]
pub fn run_logged<'s>(
    store: &'s mut Store,
    key: &[u8],
    call: Call,
    data: &[u8],
    now: u64,
    log: Log<'_>,
) -> Answer<'s> {
    if let Call::Touch { exptime } = call {
        // The line shows the item's size, which a touch's answer does not carry.
        let size = store.touch_len(key, exptime, now);
        log_get(key, size, log);
        return Answer::Touched(size.is_some());
    }
    if let Call::Store {
        mode: mode @ (SetMode::Append | SetMode::Prepend),
        flags,
        exptime,
    } = call
    {
        // The line shows the item as it now is: its whole size, its own exptime.
        let outcome = classic_store(store, key, mode, flags, exptime, data, now);
        let (size, ttl) = match store
            .peek(key, now)
            .filter(|_| outcome == StoreOutcome::Stored)
        {
            Some(item) => (item.value.len(), absolute_ttl(item.exptime, now)),
            None => (data.len(), 0),
        };
        log_store(key, set_mode_name(mode), outcome, ttl, size, log);
        return Answer::Stored(outcome);
    }
    let answer = run_unlogged(store, key, call, data, now);
    log_answer(&answer, key, call, data, now, log);
    answer
}

/// A classic storage command, counted for `stats detail`.
#[inline]
fn classic_store(
    store: &mut Store,
    key: &[u8],
    mode: SetMode,
    flags: u32,
    exptime: i64,
    data: &[u8],
    now: u64,
) -> StoreOutcome {
    count_prefix(store, key, PrefixEvent::Set);
    store.store(mode, key, flags, exptime, data, now)
}

/// memcached's `item_store` line.
#[cold]
fn log_store(
    key: &[u8],
    command: &str,
    outcome: StoreOutcome,
    ttl: i64,
    size: usize,
    log: Log<'_>,
) {
    let key = crate::watch::key_text(key);
    let fd = log.fd;
    log.watchers.emit(Watch::MUTATIONS, |line| {
        let status = match outcome {
            StoreOutcome::Stored => "stored",
            StoreOutcome::NotStored | StoreOutcome::OutOfMemory => "not_stored",
            StoreOutcome::Exists => "exists",
            StoreOutcome::NotFound => "not_found",
        };
        let _ = write!(
            line,
            "type=item_store key={key} status={status} cmd={command} ttl={ttl} clsid=1 \
             cfd={fd} size={size}"
        );
    });
}

/// Seconds left before an absolute exptime, 0 for none.
fn absolute_ttl(exptime: u64, now: u64) -> i64 {
    match exptime {
        0 => 0,
        at => i64::try_from(at.saturating_sub(now)).unwrap_or(i64::MAX),
    }
}

/// memcached's `item_get` line: `found` is the value's size when the key was there.
#[cold]
fn log_get(key: &[u8], found: Option<usize>, log: Log<'_>) {
    let key = crate::watch::key_text(key);
    let fd = log.fd;
    log.watchers.emit(Watch::FETCHERS, |line| {
        let (status, class, size) = match found {
            Some(size) => ("found", 1, size),
            None => ("not_found", 0, 0),
        };
        let _ = write!(
            line,
            "type=item_get key={key} status={status} clsid={class} cfd={fd} size={size}"
        );
    });
}

/// memcached's `item_get` and `item_store` lines for what `call` came to.
#[cold]
fn log_answer(answer: &Answer<'_>, key: &[u8], call: Call, data: &[u8], now: u64, log: Log<'_>) {
    let get = |found: Option<usize>| log_get(key, found, log);
    let store = |command: &str, outcome: StoreOutcome, exptime: i64| {
        log_store(
            key,
            command,
            outcome,
            watch_ttl(exptime, now),
            data.len(),
            log,
        );
    };
    match (call, answer) {
        (Call::Get { .. }, Answer::Value(hit)) => get(hit.map(|h| h.value.len())),
        (Call::Store { mode, exptime, .. }, Answer::Stored(outcome)) => {
            store(set_mode_name(mode), *outcome, exptime);
        }
        (Call::Meta(MetaCall::Get(_)), Answer::Meta(MetaResult::Hit(hit))) => {
            get(Some(hit.item.value.len()));
        }
        (Call::Meta(MetaCall::Get(_)), Answer::Meta(MetaResult::Miss)) => get(None),
        (
            Call::Meta(MetaCall::Set { mode, exptime, .. }),
            Answer::Meta(MetaResult::Stored(outcome, _)),
        ) => {
            store(set_mode_name(mode), *outcome, exptime);
        }
        _ => {}
    }
}

/// memcached's `ttl=` of a store: the seconds given, 0 for none.
fn watch_ttl(exptime: i64, now: u64) -> i64 {
    const MONTH: i64 = 60 * 60 * 24 * 30;
    match exptime {
        0 => 0,
        t if t > MONTH => t - i64::try_from(now).unwrap_or(i64::MAX),
        t => t,
    }
}

fn set_mode_name(mode: SetMode) -> &'static str {
    match mode {
        SetMode::Set => "set",
        SetMode::Add => "add",
        SetMode::Replace => "replace",
        SetMode::Append => "append",
        SetMode::Prepend => "prepend",
        SetMode::Cas(_) => "cas",
    }
}

#[inline(always)]
fn run_unlogged<'s>(
    store: &'s mut Store,
    key: &[u8],
    call: Call,
    data: &[u8],
    now: u64,
) -> Answer<'s> {
    match call {
        Call::Get { touch } => {
            let item = match touch {
                None => store.get(key, now),
                Some(exptime) => store.get_and_touch(key, exptime, now),
            };
            Answer::Value(item.map(|item| Hit {
                flags: item.flags,
                cas: item.cas,
                value: item.value,
                shared: item.shared,
            }))
        }
        Call::Store {
            mode,
            flags,
            exptime,
        } => Answer::Stored(classic_store(store, key, mode, flags, exptime, data, now)),
        Call::Arith { incr, delta } => Answer::Arith(store.arith(key, incr, delta, now)),
        Call::Delete => {
            count_prefix(store, key, PrefixEvent::Delete);
            Answer::Deleted(store.delete(key, now))
        }
        Call::Touch { exptime } => Answer::Touched(store.touch(key, exptime, now)),
        Call::Meta(call) => Answer::Meta(meta::run(store, key, call, data, now)),
        Call::Refused { unlink, why } => {
            let stats = store.stats_mut();
            match why {
                Refusal::TooLarge => stats.store_too_large += 1,
                Refusal::NoMemory => stats.store_no_memory += 1,
            }
            if unlink {
                // memcached drops the old value so that a failed `set` cannot leave stale
                // data behind.
                store.unlink(key);
            }
            Answer::Done
        }
    }
}

/// `stats detail`: a classic store or delete counts on its key's prefix (the store counts
/// gets, which it alone knows hit or miss).
#[inline]
fn count_prefix(store: &mut Store, key: &[u8], event: PrefixEvent) {
    if store.prefix_stats().enabled {
        store.prefix_stats_mut().record(key, event);
    }
}

/// The store's mode for a storage command.
pub fn store_mode(mode: rampart_proto::StoreMode) -> SetMode {
    use rampart_proto::StoreMode;
    match mode {
        StoreMode::Set => SetMode::Set,
        StoreMode::Add => SetMode::Add,
        StoreMode::Replace => SetMode::Replace,
        StoreMode::Append => SetMode::Append,
        StoreMode::Prepend => SetMode::Prepend,
        StoreMode::Cas(unique) => SetMode::Cas(unique),
    }
}

/// A hit's value as a batch brings it back: copied into the batch's reply arena, or held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    Copied(Span),
    Held(SharedValue),
}

/// Where a batch puts the values it brings back.
#[derive(Debug, Default)]
pub struct ReplyValues {
    /// Copies of short values.
    pub arena: Vec<u8>,
    /// Bytes of the values held (not in the arena).
    pub held_bytes: usize,
}

impl ReplyValues {
    /// Bytes of values brought back, copied or held.
    pub fn bytes(&self) -> usize {
        self.arena.len() + self.held_bytes
    }

    pub fn clear(&mut self) {
        self.arena.clear();
        self.held_bytes = 0;
    }

    /// Carries `value` back: held when it is long and `shared` is its item (as the output
    /// would hold it), else copied.
    pub fn carry(&mut self, value: &[u8], shared: Option<&ItemBytes>) -> Carried {
        if let Some(held) = crate::output::held(value, shared) {
            self.held_bytes += held.len();
            return Carried::Held(held);
        }
        let span = Span {
            start: self.arena.len(),
            len: value.len(),
        };
        self.arena.extend_from_slice(value);
        Carried::Copied(span)
    }

    /// The value again, with its item when it is held.
    pub fn view<'b>(&'b self, carried: &'b Carried) -> (&'b [u8], Option<&'b ItemBytes>) {
        match carried {
            Carried::Copied(span) => (Span::of(&self.arena, *span), None),
            Carried::Held(value) => (value.as_slice(), Some(value.item())),
        }
    }
}

/// [`Answer`] as it travels back in a batch: a hit's value is carried as [`Carried`] says,
/// and its key is the op's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    Hit {
        flags: u32,
        cas: u64,
        value: Carried,
    },
    Meta(MetaOutcome),
    /// Answers that borrow nothing.
    Other(Answer<'static>),
}

impl Owned {
    /// The owned form of `answer`; a value goes into `values`.
    pub fn own(answer: Answer<'_>, values: &mut ReplyValues) -> Owned {
        match answer {
            Answer::Value(Some(hit)) => Owned::Hit {
                flags: hit.flags,
                cas: hit.cas,
                value: values.carry(hit.value, hit.shared),
            },
            Answer::Value(None) => Owned::Other(Answer::Value(None)),
            Answer::Meta(result) => Owned::Meta(MetaOutcome::own(result, values)),
            Answer::Stored(outcome) => Owned::Other(Answer::Stored(outcome)),
            Answer::Arith(outcome) => Owned::Other(Answer::Arith(outcome)),
            Answer::Deleted(deleted) => Owned::Other(Answer::Deleted(deleted)),
            Answer::Touched(touched) => Owned::Other(Answer::Touched(touched)),
            Answer::Done => Owned::Other(Answer::Done),
        }
    }

    /// The answer again, borrowing the key and the values from the batch.
    pub fn view<'b>(&'b self, key: &'b [u8], values: &'b ReplyValues) -> Answer<'b> {
        match self {
            Owned::Hit { flags, cas, value } => {
                let (value, shared) = values.view(value);
                Answer::Value(Some(Hit {
                    flags: *flags,
                    cas: *cas,
                    value,
                    shared,
                }))
            }
            Owned::Meta(outcome) => Answer::Meta(outcome.view(key, values)),
            Owned::Other(answer) => *answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use rampart_store::{Store, StoreConfig};

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn store() -> Store {
        Store::new(StoreConfig::single(1 << 20))
    }

    #[test]
    fn an_owned_answer_views_back_as_the_same_answer() {
        let mut store = store();
        let set = Call::Store {
            mode: SetMode::Set,
            flags: 7,
            exptime: 0,
        };
        assert_eq!(
            run(&mut store, b"k", set, b"value", NOW),
            Answer::Stored(StoreOutcome::Stored)
        );
        let mut values = ReplyValues::default();
        values.arena.extend_from_slice(b"earlier");
        let answer = run(&mut store, b"k", Call::Get { touch: None }, &[], NOW);
        let owned = Owned::own(answer, &mut values);
        assert!(matches!(
            owned,
            Owned::Hit {
                value: Carried::Copied(_),
                ..
            }
        ));
        let viewed = owned.view(b"k", &values);
        assert_eq!(viewed, answer_of(&mut store));
        // A long value is held, not copied, and views back the same.
        let long = vec![b'l'; crate::output::HOLD_FROM_BYTES];
        run(&mut store, b"long", set, &long, NOW);
        let answer = run(&mut store, b"long", Call::Get { touch: None }, &[], NOW);
        let arena_before = values.arena.len();
        let owned = Owned::own(answer, &mut values);
        assert_eq!(values.arena.len(), arena_before);
        assert_eq!(values.bytes(), arena_before + long.len());
        let Answer::Value(Some(hit)) = owned.view(b"long", &values) else {
            panic!("a hit");
        };
        assert_eq!(hit.value, &long[..]);
        assert!(hit.shared.is_some());
        let refused = Call::Refused {
            unlink: true,
            why: Refusal::TooLarge,
        };
        assert_eq!(run(&mut store, b"k", refused, &[], NOW), Answer::Done);
        assert_eq!(
            run(&mut store, b"k", Call::Get { touch: None }, &[], NOW),
            Answer::Value(None)
        );
        assert_eq!(store.stats().store_too_large, 1);
    }

    fn answer_of(store: &mut Store) -> Answer<'_> {
        run(store, b"k", Call::Get { touch: None }, &[], NOW)
    }
}
