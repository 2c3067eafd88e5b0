//! What travels between cores: a batch of operations for one shard, and, on the way back, the
//! same batch with their outcomes.
//!
//! A connection that meets keys owned by another core copies each operation into that core's
//! [`Batch`] (keys and data into one arena, a small descriptor per operation), sends the batch
//! as one message, and gets the same allocation back with the outcomes filled in: the owner
//! runs the operations in order on its store, holding each long value it returns by
//! reference (a short one is copied into the reply arena). The batch's buffers are kept by the connection and reused turn after turn, so a
//! steady stream of cross-core requests allocates nothing once they have grown.
//!
//! The shard returns data, never reply bytes: the connection encodes outcomes in its own wire
//! format, exactly as for a local request.

use std::cell::RefMut;

use rampart_store::{Store, StoreStats};

pub use crate::call::Span;
use crate::call::{self, Call, Owned, ReplyValues};
use crate::shard::ShardId;

/// Arenas and descriptor lists above this are dropped after a turn instead of kept, so one
/// huge pipeline does not pin memory for the rest of a connection's life.
const KEEP_BYTES: usize = 256 * 1024;
/// The owner stops running a batch's ops once the values it is bringing back reach this, and
/// sends the batch back answered so far; the origin writes those replies and sends the rest
/// again. A batch's values (copied or held) are therefore at most this plus one value (`-I`), however
/// many gets it carries.
pub const REPLY_PIECE_BYTES: usize = 64 * 1024;
/// Same, for the descriptor lists.
const KEEP_OPS: usize = 4096;

/// One operation for the owning shard: a keyed request's [`Call`], its key (and data) by
/// [`Span`] in the request arena, or the per-shard part of a request that needs every shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A keyed request, of any protocol; `data` is a store's value (empty otherwise).
    Key { key: Span, data: Span, call: Call },
    /// `flush_all`; `counted` on exactly one shard, so `cmd_flush` goes up once per command.
    Flush { delay: i64, counted: bool },
    /// `cache_memlimit`: this shard's share of the new limit.
    SetLimit { bytes: usize },
    /// Everything `stats` needs from the shard and its executor.
    Snapshot,
    /// `stats reset` of the shard's and its executor's counters.
    ResetStats,
    /// A piece of `stats cachedump` or `lru_crawler metadump`: live items from slot `from`,
    /// keys up to [`DUMP_PIECE_KEY_BYTES`].
    Dump { from: u32 },
    /// `stats detail on|off` (`Some(on)`), or its counters for `stats detail dump` (`None`).
    Detail { on: Option<bool> },
    /// `stats sizes_enable|sizes_disable` (`Some(on)`), or the histogram for `stats sizes`.
    Sizes { on: Option<bool> },
}

/// Key bytes one dump piece brings back (its entries are at most one per key): what a dump
/// holds at once per connection, beside the output.
pub const DUMP_PIECE_KEY_BYTES: usize = 16 * 1024;
/// Items one dump piece brings back at most.
pub const DUMP_PIECE_ITEMS: usize = 1024;

/// What an [`Op`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A keyed request's answer; a value is held, or copied into the reply arena.
    Key(Owned),
    Done,
    Snapshot(Box<ShardSnapshot>),
    Dump(Box<rampart_store::DumpPiece>),
    /// A shard's `stats detail` counters.
    Prefixes(Box<PrefixList>),
    /// A shard's size histogram, `(bucket, items)`, while sizes are tracked.
    Sizes(Box<Vec<(usize, u64)>>),
}

/// One shard's `stats detail` counters, by prefix.
pub type PrefixList = Vec<(Box<[u8]>, rampart_store::PrefixCounts)>;

/// What a batch needs of the core that runs it: its store, and its executor's figures. The
/// worker provides it; the batch knows nothing else of the executor.
pub trait Owner {
    fn store(&self) -> RefMut<'_, Store>;
    fn snapshot(&self, now: u64) -> ShardSnapshot;
    fn reset_stats(&self);
    /// Where the ops' events go (`watch`).
    fn watchers(&self) -> &crate::watch::Watchers;
}

/// One shard's and its executor's figures, for `stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardSnapshot {
    pub store: StoreStats,
    /// Bytes charged for items.
    pub bytes: u64,
    pub items: u64,
    pub limit_bytes: u64,
    /// Bytes of the shard's key index (`hash_bytes`).
    pub hash_bytes: u64,
    /// Seconds since the least recently used item was touched; `None` when empty.
    pub oldest_age: Option<u64>,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub conn_yields: u64,
    pub curr_connections: u64,
    pub total_connections: u64,
    /// Messages this executor sent to other cores (each one executor turn's batches for one
    /// core).
    pub batches_sent: u64,
    /// Messages this executor ran for other cores, and the operations in them.
    pub batches_served: u64,
    pub ops_served: u64,
    /// Connection buffers this executor allocated because its spares had run out
    /// (`rampart_tls::buffers::allocated`).
    pub buffers_allocated: u64,
}

/// Operations for one shard from one connection's turn, then their outcomes.
#[derive(Debug, Default)]
pub struct Batch {
    /// The core whose connection sent it, where the reply goes.
    pub origin: ShardId,
    /// The origin's handle for the waiting connection.
    pub ticket: u32,
    /// The origin's clock, so a batch sees the same time as the requests run inline.
    pub now: u64,
    /// The origin connection's socket, for the events its ops log (`watch`).
    pub fd: i32,
    ops: Vec<Op>,
    /// Keys and data blocks of `ops`.
    request: Vec<u8>,
    /// Ops run so far, over every trip to the owner: `ops[..ran]` have run.
    ran: usize,
    /// The first op whose outcome is in `outcomes`: the last trip ran `ops[base..ran]`.
    base: usize,
    /// Outcomes of `ops[base..ran]`.
    outcomes: Vec<Outcome>,
    /// Values of those ops' hits.
    values: ReplyValues,
    /// Other connections' batches for the same owner from the same executor turn, which
    /// travel in the same message ([`crate::mesh`]); none once a batch is back with its
    /// connection.
    pub(crate) next: Option<Box<Batch>>,
}

impl Batch {
    /// An empty batch stamped with the origin's clock.
    pub fn at(now: u64) -> Batch {
        Batch {
            now,
            ..Batch::default()
        }
    }

    /// Operations queued.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Whether some ops have not run yet: the batch must go (again) to its owner.
    pub fn has_unrun(&self) -> bool {
        self.ran < self.ops.len()
    }

    /// Whether op `index` ran on the batch's last trip, so its outcome is here.
    pub fn is_answered(&self, index: u32) -> bool {
        (self.base..self.ran).contains(&(index as usize))
    }

    /// Bytes of values brought back by the last trip, copied or held.
    pub fn reply_bytes(&self) -> usize {
        self.values.bytes()
    }

    /// Bytes held in the request arena (what the message carries besides descriptors).
    pub fn request_bytes(&self) -> usize {
        self.request.len()
    }

    /// Copies `bytes` into the request arena.
    pub fn copy(&mut self, bytes: &[u8]) -> Span {
        let span = Span {
            start: self.request.len(),
            len: bytes.len(),
        };
        self.request.extend_from_slice(bytes);
        span
    }

    /// Queues `op`; returns its index, which names its outcome.
    pub fn push(&mut self, op: Op) -> u32 {
        self.ops.push(op);
        // A turn holds at most a read buffer's worth of requests, far below 2^32.
        u32::try_from(self.ops.len() - 1).unwrap_or(u32::MAX)
    }

    /// The key of op `index`.
    pub fn key(&self, index: u32) -> &[u8] {
        match self.ops.get(index as usize) {
            Some(Op::Key { key, .. }) => Span::of(&self.request, *key),
            Some(
                Op::Flush { .. }
                | Op::SetLimit { .. }
                | Op::Snapshot
                | Op::ResetStats
                | Op::Dump { .. }
                | Op::Detail { .. }
                | Op::Sizes { .. },
            )
            | None => &[],
        }
    }

    /// The outcome of op `index`, when it ran on the batch's last trip.
    pub fn outcome(&self, index: u32) -> Option<&Outcome> {
        (index as usize)
            .checked_sub(self.base)
            .and_then(|i| self.outcomes.get(i))
    }

    /// Takes the outcomes out (for whole-shard operations, whose outcomes are owned data).
    pub fn take_outcomes(&mut self) -> std::vec::Drain<'_, Outcome> {
        self.outcomes.drain(..)
    }

    /// The values brought back by the last trip.
    pub fn values(&self) -> &ReplyValues {
        &self.values
    }

    /// Ready for the next turn: empty, keeping buffers of a reasonable size.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.request.clear();
        self.outcomes.clear();
        self.values.clear();
        self.ran = 0;
        self.base = 0;
        if self.request.capacity() > KEEP_BYTES {
            self.request = Vec::new();
        }
        if self.values.arena.capacity() > KEEP_BYTES {
            self.values.arena = Vec::new();
        }
        if self.ops.capacity() > KEEP_OPS {
            self.ops = Vec::new();
        }
        if self.outcomes.capacity() > KEEP_OPS {
            self.outcomes = Vec::new();
        }
    }

    /// Runs the ops not run yet, in order, on `owner`'s shard, on the core that owns it,
    /// until the values brought back reach [`REPLY_PIECE_BYTES`] (at least one op runs).
    /// Returns how many ran; the outcomes of earlier trips are dropped.
    pub fn run(&mut self, owner: &impl Owner) -> usize {
        let Batch {
            now,
            fd,
            ops,
            request,
            ran,
            base,
            outcomes,
            values,
            ..
        } = self;
        outcomes.clear();
        values.clear();
        *base = *ran;
        let now = *now;
        // Whether someone watches, once per trip rather than per op.
        let watched = owner.watchers().wants_keyed();
        for op in &ops[*ran..] {
            if values.bytes() >= REPLY_PIECE_BYTES {
                break;
            }
            *ran += 1;
            let outcome = match *op {
                Op::Snapshot => Outcome::Snapshot(Box::new(owner.snapshot(now))),
                Op::ResetStats => {
                    owner.reset_stats();
                    Outcome::Done
                }
                op => {
                    let log = watched.then_some(crate::call::Log {
                        watchers: owner.watchers(),
                        fd: *fd,
                    });
                    run_op(&mut owner.store(), op, request, values, now, log)
                }
            };
            outcomes.push(outcome);
        }
        *ran - *base
    }
}

/// [`run_op`]'s keyed call while someone watches, apart so that the request path keeps one
/// inlined `Owned::own`.
#[cold]
#[inline(never)]
fn run_watched(
    store: &mut Store,
    key: &[u8],
    call: Call,
    data: &[u8],
    values: &mut ReplyValues,
    now: u64,
    log: call::Log<'_>,
) -> Outcome {
    let answer = call::run_logged(store, key, call, data, now, log);
    Outcome::Key(Owned::own(answer, values))
}

/// Runs one store operation; values of hits go into `values`. `log`: where a keyed op's
/// events go, while someone watches.
fn run_op(
    store: &mut Store,
    op: Op,
    request: &[u8],
    values: &mut ReplyValues,
    now: u64,
    log: Option<crate::call::Log<'_>>,
) -> Outcome {
    let bytes = |span: Span| Span::of(request, span);
    match op {
        Op::Key { key, data, call } => {
            let (key, data) = (bytes(key), bytes(data));
            if let Some(log) = log {
                return run_watched(store, key, call, data, values, now, log);
            }
            let answer = call::run(store, key, call, data, now);
            Outcome::Key(Owned::own(answer, values))
        }
        Op::Flush { delay, counted } => {
            store.flush_all(delay, now);
            if counted {
                // A command counter: one flush_all counts once however many shards it reached.
                store.stats_mut().cmd_flush += 1;
            }
            Outcome::Done
        }
        Op::SetLimit { bytes } => {
            store.set_limit_bytes(bytes);
            Outcome::Done
        }
        Op::Dump { from } => Outcome::Dump(Box::new(store.dump(
            from,
            DUMP_PIECE_KEY_BYTES,
            DUMP_PIECE_ITEMS,
            now,
        ))),
        Op::Detail { on: Some(on) } => {
            store.prefix_stats_mut().enabled = on;
            Outcome::Done
        }
        Op::Sizes { on: Some(on) } => {
            store.track_sizes(on);
            Outcome::Done
        }
        Op::Sizes { on: None } => match store.sizes() {
            Some(sizes) => Outcome::Sizes(Box::new(sizes.iter().collect())),
            None => Outcome::Done,
        },
        Op::Detail { on: None } => {
            let prefixes = store.prefix_stats();
            let counts = prefixes.iter().map(|(k, v)| (k.into(), *v)).collect();
            Outcome::Prefixes(Box::new(counts))
        }
        // Handled by the caller, which has the executor's counters.
        Op::Snapshot | Op::ResetStats => Outcome::Done,
    }
}
