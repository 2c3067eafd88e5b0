//! One shard's item table for rampart: the key index, the items, expiry, LRU eviction, CAS
//! uniques and memory accounting, with memcached 1.6's storage semantics.
//!
//! The server owns one [`Store`] per shard and calls it from that shard's thread only, so the
//! store is synchronous and `!Sync` by design. It may depend on `hashbrown` and `thiserror`
//! and nothing else in the workspace.
//!
//! Non-goals: no I/O, no clock of its own (every call takes `now` in unix seconds), no
//! knowledge of wire protocols (the connection turns outcomes into reply lines), no item size
//! limit (`-I` is the server's rule), and no cross-shard coordination beyond the CAS
//! striding set up in [`StoreConfig`].

mod arith;
mod dump;
mod expiry;
mod index;
mod shared;
mod stats;
mod store;
mod table;

use thiserror::Error;

pub use dump::{
    DumpEntry, DumpPiece, MAX_PREFIXES, PrefixCounts, PrefixEvent, PrefixStats, SIZE_BUCKET_BYTES,
    SizeHistogram,
};
pub use shared::{ItemBytes, MAX_ITEM_BYTES, SharedValue};
pub use stats::StoreStats;
pub use store::{
    ArithOptions, DeleteOutcome, Evicted, GetOptions, MetaArithOutcome, MetaHit, Store,
};
pub use table::{ITEM_OVERHEAD_BYTES, MAX_KEY_BYTES};

/// Seconds since the unix epoch, passed in by the caller.
pub type UnixSecs = u64;

/// How one shard's store is set up.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// This shard's memory budget in bytes (its share of `-m`).
    pub max_bytes: usize,
    /// `true`: evict from the LRU tail when full; `false` (`-M`): answer `OutOfMemory`.
    pub evict: bool,
    /// First CAS unique this shard hands out (shard `i` of `n`: `i + 1`).
    pub cas_start: u64,
    /// Step between uniques (`n`), so uniques never collide across shards.
    pub cas_stride: u64,
    /// `-I`, measured as memcached measures an item (see [`memcached_item_bytes`]). Storage
    /// commands check it before the data arrives; append and prepend, which grow an item
    /// here, are refused (`NotStored`) when the combined item would exceed it.
    pub item_size_max: usize,
    /// Not `-C`: CAS uniques are shown and compared. Without, every unique a reply shows is
    /// 0 and checks compare against 0, while the store keeps its own order (which
    /// `flush_all` needs); a `cas` or `ms C` store on an existing item is `Exists`, as in
    /// memcached.
    pub cas_enabled: bool,
}

/// memcached's size of an item, which `-I` limits: its 48-byte header, the 8-byte CAS (not
/// under `-C`), the key and its NUL, 4 bytes of client flags when they are nonzero, and the
/// value with its `\r\n`. (rampart-proto applies the same rule to incoming storage
/// commands.)
pub fn memcached_item_bytes(key_len: usize, flags: u32, value_len: usize, cas: bool) -> usize {
    let flags_len = if flags == 0 { 0 } else { 4 };
    let cas_len = if cas { 8 } else { 0 };
    48 + cas_len + key_len + 1 + flags_len + value_len + 2
}

/// Why a [`StoreConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("cas_stride must be at least 1")]
    ZeroCasStride,
    #[error("cas_start must be in 1..=cas_stride (got {start}, stride {stride})")]
    CasStartOutOfRange { start: u64, stride: u64 },
}

impl StoreConfig {
    /// A lone shard of `max_bytes` that evicts, hands out uniques from 1 and has no item
    /// size limit of its own: the store as the unit tests and tools use it.
    pub fn single(max_bytes: usize) -> Self {
        StoreConfig {
            max_bytes,
            evict: true,
            cas_start: 1,
            cas_stride: 1,
            item_size_max: usize::MAX,
            cas_enabled: true,
        }
    }

    /// Checks that the CAS striding gives every shard its own uniques, none of them 0.
    /// [`Store::new`] clamps bad values instead of failing, so call this at startup.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cas_stride == 0 {
            return Err(ConfigError::ZeroCasStride);
        }
        if self.cas_start == 0 || self.cas_start > self.cas_stride {
            return Err(ConfigError::CasStartOutOfRange {
                start: self.cas_start,
                stride: self.cas_stride,
            });
        }
        Ok(())
    }
}

/// Which storage command a [`Store::store`] call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// `cas` with the unique the client last saw.
    Cas(u64),
}

/// The result of a storage command; `OutOfMemory` is memcached's
/// `SERVER_ERROR out of memory storing object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    NotStored,
    Exists,
    NotFound,
    OutOfMemory,
}

/// The result of `incr`/`decr`; `OutOfMemory` is memcached's `SERVER_ERROR out of memory`
/// (only possible when the number grows longer and the store may not evict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOutcome {
    Value(u64),
    NotFound,
    NonNumeric,
    OutOfMemory,
}

/// A live item as a read returns it, borrowed from the store. Equal views have equal fields
/// and bytes, whether or not they hold the item's allocation (`shared`).
#[derive(Debug, Clone, Copy, Eq)]
pub struct ItemView<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
    pub cas: u64,
    /// Absolute expiry in unix seconds; 0 = never.
    pub exptime: UnixSecs,
    /// When the item was last stored or accessed, *before* this access (meta `l`).
    pub last_access: UnixSecs,
    /// Whether the item had been fetched before this access (meta `h`).
    pub fetched: bool,
    /// The item's allocation, so a reply can hold the value past this borrow
    /// ([`SharedValue::tail`]) instead of copying it; `None` where the view was rebuilt from
    /// parts (the server's cross-core answers).
    pub shared: Option<&'a ItemBytes>,
}

impl PartialEq for ItemView<'_> {
    fn eq(&self, other: &Self) -> bool {
        let fields = |v: &Self| {
            (
                v.key,
                v.value,
                v.flags,
                v.cas,
                v.exptime,
                v.last_access,
                v.fetched,
            )
        };
        fields(self) == fields(other)
    }
}
