//! Shard routing: which shard owns a key, and how a connection reaches a shard's store.
//!
//! Every request reaches the store through a [`Router`], even with a single shard, so that
//! adding cores changes this module and not the protocol code. Ownership is one pure function,
//! [`shard_for`]: FNV-1a (64-bit, the standard offset basis as its fixed seed) of the key bytes,
//! mixed by murmur3's 64-bit finaliser (FNV alone leaves the high bits of similar short keys
//! alike), mapped onto the shard count by a multiply-shift. It must never change between releases of a
//! running cluster's configuration, so it is spelled out here rather than borrowed from a hasher
//! whose output may change.

use std::cell::RefCell;
use std::rc::Rc;

use rampart_store::{Store, StoreConfig};

/// Index of a shard, `0..shard_count`.
pub type ShardId = usize;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The shard that owns `key` among `shard_count` shards.
pub fn shard_for(key: &[u8], shard_count: usize) -> ShardId {
    let mut hash = FNV_OFFSET_BASIS;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    // murmur3 fmix64.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    // Lemire's multiply-shift: uniform over 0..shard_count without a division.
    ((u128::from(hash) * shard_count as u128) >> 64) as ShardId
}

/// One shard: a store owned by exactly one executor.
#[derive(Debug)]
pub struct Shard {
    id: ShardId,
    store: RefCell<Store>,
}

impl Shard {
    pub fn new(id: ShardId, config: StoreConfig) -> Self {
        Shard {
            id,
            store: RefCell::new(Store::new(config)),
        }
    }

    pub fn id(&self) -> ShardId {
        self.id
    }
}

/// A connection's way to its shards.
#[derive(Debug, Clone)]
pub struct Router {
    /// The shards this executor owns, indexed by [`ShardId`]. Today every executor owns every
    /// shard (there is one); shards owned by other cores will be reached by batched messages.
    local: Vec<Rc<Shard>>,
}

impl Router {
    pub fn new(local: Vec<Rc<Shard>>) -> Self {
        debug_assert!(local.iter().enumerate().all(|(i, s)| s.id() == i));
        Router { local }
    }

    pub fn shard_count(&self) -> usize {
        self.local.len()
    }

    /// The shard that owns `key`.
    pub fn shard_for(&self, key: &[u8]) -> ShardId {
        shard_for(key, self.local.len())
    }

    /// Runs `f` on the store of `shard` and returns what it returns; `f` runs to completion
    /// before anything else touches that store.
    pub fn invoke_on<R>(&self, shard: ShardId, f: impl FnOnce(&mut Store) -> R) -> R {
        let mut store = self.local[shard].store.borrow_mut();
        f(&mut store)
    }

    /// Runs `f` on the store that owns `key`.
    pub fn invoke_for<R>(&self, key: &[u8], f: impl FnOnce(&mut Store) -> R) -> R {
        self.invoke_on(self.shard_for(key), f)
    }

    /// Runs `map` on every shard and folds the results with `reduce`, for whole-cache work
    /// (`flush_all`, `stats`).
    pub fn map_reduce<T, A>(
        &self,
        init: A,
        mut map: impl FnMut(&mut Store) -> T,
        mut reduce: impl FnMut(A, T) -> A,
    ) -> A {
        let mut acc = init;
        for shard in &self.local {
            let value = map(&mut shard.store.borrow_mut());
            acc = reduce(acc, value);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_fixed_and_spread() {
        // Pinned values: changing the function re-homes every key of a running cache.
        assert_eq!(shard_for(b"", 4), 3);
        assert_eq!(shard_for(b"foo", 4), 2);
        assert_eq!(shard_for(b"foo", 1), 0);
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[shard_for(format!("key:{i}").as_bytes(), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
