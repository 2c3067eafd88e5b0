//! Shard routing: which shard owns a key, and how a connection reaches a shard's store.
//!
//! Every core owns one shard. A connection reaches its own core's shard directly
//! ([`Router::invoke_local`]) and the others' by batches sent over the [`Mesh`]
//! ([`Router::invoke_batches_await`], which waits for the replies). Ownership is one pure function,
//! [`shard_for`]: FNV-1a (64-bit, the standard offset basis as its fixed seed) of the key bytes,
//! mixed by murmur3's 64-bit finaliser (FNV alone leaves the high bits of similar short keys
//! alike), mapped onto the shard count by a multiply-shift. It must never change between releases of a
//! running cluster's configuration, so it is spelled out here rather than borrowed from a hasher
//! whose output may change.

use std::cell::RefCell;
use std::rc::Rc;

use rampart_store::{Store, StoreConfig};

use crate::batch::Batch;
use crate::mesh::{Gone, Mesh, Ticket};

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

/// Shard `shard`'s part of a memory limit of `total` bytes split over `count` shards: equal
/// shares, the remainder going one byte each to the first shards, so the shares add up.
pub fn memory_share(total: usize, count: usize, shard: ShardId) -> usize {
    let count = count.max(1);
    total / count + usize::from(shard < total % count)
}

/// One shard: a store owned by exactly one executor.
#[derive(Debug)]
pub struct Shard {
    id: ShardId,
    store: RefCell<Store>,
}

impl Shard {
    pub fn with_store(id: ShardId, store: Store) -> Self {
        Shard {
            id,
            store: RefCell::new(store),
        }
    }

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

/// A connection's way to the shards: its own core's shard directly, every other core's shard
/// by batched messages over the [`Mesh`].
#[derive(Debug, Clone)]
pub struct Router {
    /// The shard this core owns; its id is this core's index.
    local: Rc<Shard>,
    count: usize,
    /// The other cores; `None` with a single shard.
    mesh: Option<Rc<Mesh>>,
}

impl Router {
    /// The router of a single-shard server: every key is local.
    pub fn single(shard: Rc<Shard>) -> Self {
        Router {
            local: shard,
            count: 1,
            mesh: None,
        }
    }

    /// The router of core `local.id()` among `count`, reaching the others through `mesh`.
    pub fn new(local: Rc<Shard>, count: usize, mesh: Rc<Mesh>) -> Self {
        Router {
            local,
            count,
            mesh: Some(mesh),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.count
    }

    /// This core's shard.
    pub fn me(&self) -> ShardId {
        self.local.id
    }

    /// The shard that owns `key`.
    pub fn owner(&self, key: &[u8]) -> ShardId {
        if self.count == 1 {
            return 0;
        }
        shard_for(key, self.count)
    }

    pub fn is_local(&self, shard: ShardId) -> bool {
        shard == self.local.id
    }

    pub fn mesh(&self) -> Option<&Rc<Mesh>> {
        self.mesh.as_ref()
    }

    /// This core's store, borrowed until the guard is dropped (never across an `await`).
    pub fn local_store(&self) -> std::cell::RefMut<'_, Store> {
        self.local.store.borrow_mut()
    }

    /// Runs `f` on this core's store, now, and returns what it returns; `f` runs to
    /// completion before anything else touches that store.
    pub fn invoke_local<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let mut store = self.local.store.borrow_mut();
        f(&mut store)
    }

    /// Sends each batch in `batches` (indexed by shard) that has ops not run yet to its core
    /// (with the executor turn's other batches for that core: [`Mesh::post`]), then waits for
    /// every reply and puts each batch back in its place with its outcomes (the owner may
    /// answer only some of the ops: see [`Batch::run`]). `tickets` is scratch space, kept by
    /// the caller so this does not allocate.
    pub async fn invoke_batches_await(
        &self,
        batches: &mut [Option<Box<Batch>>],
        tickets: &mut Vec<Option<Ticket>>,
    ) -> Result<(), Gone> {
        let Some(mesh) = &self.mesh else {
            return Ok(());
        };
        tickets.clear();
        tickets.resize(batches.len(), None);
        let mut failed = None;
        for (shard, slot) in batches.iter_mut().enumerate() {
            if slot.as_ref().is_none_or(|batch| !batch.has_unrun()) {
                continue;
            }
            let Some(batch) = slot.take() else { continue };
            match mesh.post(shard, batch) {
                Ok(ticket) => tickets[shard] = Some(ticket),
                Err(gone) => {
                    failed = Some(gone);
                    break;
                }
            }
        }
        for shard in 0..tickets.len() {
            let Some(ticket) = tickets[shard].take() else {
                continue;
            };
            if failed.is_some() {
                mesh.abandon(ticket);
                continue;
            }
            match mesh.reply_await(ticket).await {
                Ok(batch) => batches[shard] = Some(batch),
                Err(gone) => failed = Some(gone),
            }
        }
        failed.map_or(Ok(()), Err)
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

    #[test]
    fn memory_shares_add_up() {
        for (total, count) in [(64 << 20, 1), (64 << 20, 3), (10, 4), (3, 5)] {
            let shares: Vec<usize> = (0..count).map(|i| memory_share(total, count, i)).collect();
            assert_eq!(shares.iter().sum::<usize>(), total, "{shares:?}");
            let (min, max) = (shares.iter().min(), shares.iter().max());
            assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{shares:?}");
        }
    }
}
