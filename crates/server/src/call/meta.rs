//! The store side of the meta protocol (and of the binary protocol, which is encoded onto the
//! same requests): what a meta request asks of the owning shard, what it came to, and the
//! owned form of that result which travels back in a [`crate::batch::Batch`].
//!
//! Local requests and batched ones both go through [`run`], so an item behaves the same
//! whichever core the connection is on; only the reply's bytes are written elsewhere (the
//! connection's encoder, from a [`MetaResult`]).

use rampart_proto::meta::reply::DebugInfo;
use rampart_store::{
    ArithOptions, DeleteOutcome, GetOptions, ItemView, MetaArithOutcome, MetaHit, SetMode, Store,
    StoreOutcome, memcached_item_bytes,
};

use super::{Carried, ReplyValues};

/// memcached's smallest slab chunk (a 48-byte item header plus the default `-n 48`) and the
/// growth factor between classes (`-f 1.25`), for `me`'s `cls=`.
const SLAB_SMALLEST_BYTES: u64 = 96;
const SLAB_ALIGN_BYTES: u64 = 8;

/// What a meta request does to the store, without its wire details. `Copy`, so it can sit in
/// a batch; the data block of a set travels beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaCall {
    Get(GetOptions),
    Set {
        mode: SetMode,
        flags: u32,
        exptime: i64,
        cas: Option<u64>,
        invalidate: bool,
    },
    Delete {
        cas: Option<u64>,
        invalidate: bool,
        exptime: Option<i64>,
    },
    Arith(ArithOptions),
    /// `me`.
    Debug,
}

/// What a meta request came to, borrowing the item from the store (or from a batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaResult<'a> {
    Hit(MetaHit<'a>),
    Miss,
    /// The outcome and, when stored, the item's new unique.
    Stored(StoreOutcome, u64),
    Deleted(DeleteOutcome),
    Arith(MetaArithOutcome),
    /// `me`: the debug facts of a live item, or `None`.
    Debug(Option<DebugInfo>),
}

/// [`MetaResult`] as it travels back to the origin: the hit's value is carried as
/// [`Carried`] says, and its key is the op's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaOutcome {
    /// `hit.item.key`, `hit.item.value` and `hit.item.shared` are empty here;
    /// [`MetaOutcome::view`] puts them back.
    Hit {
        hit: MetaHit<'static>,
        value: Carried,
    },
    Other(MetaResult<'static>),
}

/// Runs `call` for `key` on `store`; `data` is a set's value.
pub fn run<'s>(
    store: &'s mut Store,
    key: &[u8],
    call: MetaCall,
    data: &[u8],
    now: u64,
) -> MetaResult<'s> {
    match call {
        MetaCall::Get(options) => match store.meta_get(key, options, now) {
            Some(hit) => MetaResult::Hit(hit),
            None => MetaResult::Miss,
        },
        MetaCall::Set {
            mode,
            flags,
            exptime,
            cas,
            invalidate,
        } => {
            let (outcome, unique) =
                store.meta_store(mode, key, flags, exptime, data, cas, invalidate, now);
            MetaResult::Stored(outcome, unique)
        }
        MetaCall::Delete {
            cas,
            invalidate,
            exptime,
        } => MetaResult::Deleted(store.meta_delete(key, cas, invalidate, exptime, now)),
        MetaCall::Arith(options) => MetaResult::Arith(store.meta_arith(key, options, now)),
        MetaCall::Debug => {
            let cas_enabled = store.cas_enabled();
            MetaResult::Debug(
                store
                    .peek(key, now)
                    .map(|item| debug_info(&item, now, cas_enabled)),
            )
        }
    }
}

impl MetaOutcome {
    /// The owned form of `result`; a hit's value goes into `values`.
    pub fn own(result: MetaResult<'_>, values: &mut ReplyValues) -> MetaOutcome {
        match result {
            MetaResult::Hit(hit) => {
                let value = values.carry(hit.item.value, hit.item.shared);
                let item = ItemView {
                    key: &[],
                    value: &[],
                    shared: None,
                    ..hit.item
                };
                MetaOutcome::Hit {
                    hit: MetaHit { item, ..hit },
                    value,
                }
            }
            MetaResult::Miss => MetaOutcome::Other(MetaResult::Miss),
            MetaResult::Stored(outcome, unique) => {
                MetaOutcome::Other(MetaResult::Stored(outcome, unique))
            }
            MetaResult::Deleted(outcome) => MetaOutcome::Other(MetaResult::Deleted(outcome)),
            MetaResult::Arith(outcome) => MetaOutcome::Other(MetaResult::Arith(outcome)),
            MetaResult::Debug(info) => MetaOutcome::Other(MetaResult::Debug(info)),
        }
    }

    /// The result again, borrowing the key and the value from the batch.
    pub fn view<'b>(&'b self, key: &'b [u8], values: &'b ReplyValues) -> MetaResult<'b> {
        match self {
            MetaOutcome::Hit { hit, value } => {
                let (value, shared) = values.view(value);
                let item = ItemView {
                    key,
                    value,
                    shared,
                    ..hit.item
                };
                MetaResult::Hit(MetaHit { item, ..*hit })
            }
            MetaOutcome::Other(result) => *result,
        }
    }
}

/// `me`'s figures for a live item at `now`.
fn debug_info(item: &ItemView<'_>, now: u64, cas_enabled: bool) -> DebugInfo {
    let size =
        memcached_item_bytes(item.key.len(), item.flags, item.value.len(), cas_enabled) as u64;
    DebugInfo {
        exp: match item.exptime {
            0 => -1,
            at => i64::try_from(at.saturating_sub(now)).unwrap_or(i64::MAX),
        },
        last_access: now.saturating_sub(item.last_access),
        cas: item.cas,
        fetched: item.fetched,
        class: slab_class(size),
        size,
    }
}

/// The memcached slab class (default `-n 48 -f 1.25`) an item of `size` bytes would go in.
fn slab_class(size: u64) -> u32 {
    let mut chunk = SLAB_SMALLEST_BYTES;
    let mut class = 1;
    while chunk < size {
        chunk = (chunk * 5 / 4).next_multiple_of(SLAB_ALIGN_BYTES);
        class += 1;
    }
    class
}

#[cfg(test)]
mod tests {
    use super::slab_class;

    /// memcached 1.6.18 with default settings: `me` of a 62-byte item says `cls=1`; classes
    /// 96, 120, 152, 192, 240 bytes (`memcached -vv` prints them).
    #[test]
    fn slab_classes_follow_memcached_defaults() {
        assert_eq!(slab_class(62), 1);
        assert_eq!(slab_class(96), 1);
        assert_eq!(slab_class(97), 2);
        assert_eq!(slab_class(120), 2);
        assert_eq!(slab_class(121), 3);
        assert_eq!(slab_class(152), 3);
        assert_eq!(slab_class(240), 5);
    }
}
