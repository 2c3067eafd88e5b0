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

use rampart_store::{ArithOutcome, ItemBytes, SetMode, SharedValue, Store, StoreOutcome};

use self::meta::{MetaCall, MetaOutcome, MetaResult};

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

/// Runs `call` for `key` on `store`; `data` is a store's value.
pub fn run<'s>(store: &'s mut Store, key: &[u8], call: Call, data: &[u8], now: u64) -> Answer<'s> {
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
        } => Answer::Stored(store.store(mode, key, flags, exptime, data, now)),
        Call::Arith { incr, delta } => Answer::Arith(store.arith(key, incr, delta, now)),
        Call::Delete => Answer::Deleted(store.delete(key, now)),
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
        Store::new(StoreConfig {
            max_bytes: 1 << 20,
            evict: true,
            cas_start: 1,
            cas_stride: 1,
            item_size_max: 1 << 20,
        })
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
