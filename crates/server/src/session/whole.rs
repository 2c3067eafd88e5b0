//! Requests that need every shard: `flush_all`, `cache_memlimit` and `stats`.
//!
//! Each becomes one [`Op`] per shard, run on this core's shard inline and on every other core
//! by one message each; the outcomes are combined into a single reply. `flush_all` counts
//! once in `cmd_flush` however many shards it reaches.

use rampart_proto::Request;
use rampart_proto::text::reply;

use crate::batch::{Op, Outcome, ShardSnapshot};
use crate::mesh::Gone;
use crate::shard::{ShardId, memory_share};
use crate::stats::{self, StatsView};
use crate::worker::Worker;

/// memcached's bounds on `cache_memlimit`: at least 8 MB, and a number that looks like bytes
/// rather than megabytes is refused.
const MEMLIMIT_MIN_MEGABYTES: u32 = 8;
const MEMLIMIT_MAX_MEGABYTES: u32 = 1_000_000_000;

/// Which `stats` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatsGroup {
    General,
    Settings,
    Items,
    Slabs,
    /// rampart's per-core figures.
    Shards,
    /// Open connections, from the process's table.
    Conns,
    Reset,
    Unknown,
}

/// A request that needs every shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Whole {
    Flush { delay: i64, noreply: bool },
    Memlimit { megabytes: u32, noreply: bool },
    Stats(StatsGroup),
}

impl Whole {
    pub(crate) fn of(request: &Request<'_>) -> Option<Whole> {
        Some(match request {
            // `-F` was applied by the parser, which must refuse before reading arguments.
            Request::FlushAll(req) => Whole::Flush {
                delay: req.delay,
                noreply: req.noreply,
            },
            Request::CacheMemlimit(req) => Whole::Memlimit {
                megabytes: req.megabytes,
                noreply: req.noreply,
            },
            Request::Stats(req) => Whole::Stats(match req.group {
                None => StatsGroup::General,
                Some(b"settings") => StatsGroup::Settings,
                Some(b"items") => StatsGroup::Items,
                Some(b"slabs") => StatsGroup::Slabs,
                Some(b"shards") => StatsGroup::Shards,
                Some(b"conns") => StatsGroup::Conns,
                Some(b"reset") => StatsGroup::Reset,
                Some(_) => StatsGroup::Unknown,
            }),
            _ => return None,
        })
    }

    /// Whether any shard has work to do (a refused `cache_memlimit` or an unknown `stats`
    /// group is answered without one).
    fn needs_shards(&self) -> bool {
        match *self {
            Whole::Flush { .. } => true,
            Whole::Memlimit { megabytes, .. } => {
                (MEMLIMIT_MIN_MEGABYTES..=MEMLIMIT_MAX_MEGABYTES).contains(&megabytes)
            }
            Whole::Stats(group) => !matches!(group, StatsGroup::Unknown | StatsGroup::Conns),
        }
    }

    /// What shard `shard` of `count` runs, for a request from core `me`.
    fn op(&self, me: ShardId, shard: ShardId, count: usize) -> Op {
        match *self {
            Whole::Flush { delay, .. } => Op::Flush {
                delay,
                counted: shard == me,
            },
            Whole::Memlimit { megabytes, .. } => Op::SetLimit {
                bytes: memory_share(megabytes as usize * 1024 * 1024, count, shard),
            },
            Whole::Stats(StatsGroup::Reset) => Op::ResetStats,
            Whole::Stats(_) => Op::Snapshot,
        }
    }

    /// Runs it on every shard, waiting for the other cores, and writes the reply.
    pub(crate) async fn run(
        &self,
        worker: &Worker,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), Gone> {
        let outcomes = if self.needs_shards() {
            let router = worker.router();
            let (me, count) = (router.me(), router.shard_count());
            worker
                .invoke_on_all_await(now, |shard| self.op(me, shard, count))
                .await?
        } else {
            Vec::new()
        };
        self.answer(outcomes, worker, now, out);
        Ok(())
    }

    /// Runs it with a single shard, synchronously.
    pub(crate) fn run_here(&self, worker: &Worker, now: u64, out: &mut Vec<u8>) {
        let outcomes = if self.needs_shards() {
            let me = worker.router().me();
            vec![worker.run_local(now, self.op(me, me, 1))]
        } else {
            Vec::new()
        };
        self.answer(outcomes, worker, now, out);
    }

    fn answer(&self, outcomes: Vec<Outcome>, worker: &Worker, now: u64, out: &mut Vec<u8>) {
        match *self {
            Whole::Flush { noreply, .. } => {
                if !noreply {
                    reply::line(out, reply::OK);
                }
            }
            Whole::Memlimit { megabytes, noreply } => {
                let line = if megabytes < MEMLIMIT_MIN_MEGABYTES {
                    reply::MEMLIMIT_TOO_SMALL
                } else if megabytes > MEMLIMIT_MAX_MEGABYTES {
                    reply::MEMLIMIT_NOT_BYTES
                } else {
                    reply::OK
                };
                if !noreply {
                    reply::line(out, line);
                }
            }
            Whole::Stats(StatsGroup::Reset) => {
                worker.reset_process_stats();
                reply::line(out, reply::RESET);
            }
            Whole::Stats(StatsGroup::Unknown) => reply::line(out, reply::ERROR),
            Whole::Stats(StatsGroup::Conns) => {
                worker.process_state().conns.write_stats(now, out);
                reply::line(out, reply::END);
            }
            Whole::Stats(group) => {
                let shards: Vec<ShardSnapshot> = outcomes
                    .into_iter()
                    .filter_map(|outcome| match outcome {
                        Outcome::Snapshot(snapshot) => Some(*snapshot),
                        _ => None,
                    })
                    .collect();
                let view = StatsView {
                    config: worker.config(),
                    process: worker.process(),
                    tls: worker.tls(),
                    shards: &shards,
                    read_budget: &worker.process_state().read_budget,
                    auth: worker.auth(),
                    access: worker.access(),
                    access_counters: &worker.process_state().access_counters,
                    audit: worker.audit(),
                    started_at: worker.started_at(),
                    now,
                };
                match group {
                    StatsGroup::Settings => stats::settings(&view, out),
                    StatsGroup::Items => stats::items(&view, out),
                    StatsGroup::Slabs => stats::slabs(&view, out),
                    StatsGroup::Shards => stats::shards(&view, out),
                    _ => stats::general(&view, out),
                }
            }
        }
    }
}
