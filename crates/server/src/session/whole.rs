//! Requests that need every shard: `flush_all`, `cache_memlimit` and `stats`.
//!
//! Each becomes one [`Op`] per shard, run on this core's shard inline and on every other core
//! by one message each; the outcomes are combined into a single reply. `flush_all` counts
//! once in `cmd_flush` however many shards it reaches.

use rampart_proto::Request;
use rampart_proto::request::{Admin, AdminCommand, LruCrawler};
use rampart_proto::text::reply;

use crate::admin;
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
    /// `stats detail` without on, off or dump.
    DetailUsage,
    /// Answered with this line alone (a refused dump, `stats sizes`, `stats extstore`).
    Refused(&'static [u8]),
}

/// memcached's checks of `stats cachedump <class> <limit>` (`-X` first).
fn cachedump(args: [Option<&[u8]>; 2], dump_enabled: bool) -> Result<Dump, &'static [u8]> {
    if !dump_enabled {
        return Err(b"CLIENT_ERROR stats cachedump not allowed");
    }
    let [Some(class), Some(limit)] = args else {
        return Err(b"CLIENT_ERROR bad command line");
    };
    let number = |bytes: &[u8]| std::str::from_utf8(bytes).ok()?.parse::<u32>().ok();
    let (Some(class), Some(limit)) = (number(class), number(limit)) else {
        return Err(b"CLIENT_ERROR bad command line format");
    };
    if class >= admin::SLAB_CLASSES {
        return Err(b"CLIENT_ERROR Illegal slab id");
    }
    Ok(Dump::Cache {
        items: class == admin::ITEM_CLASS,
        limit,
    })
}

/// A request that needs every shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Whole {
    Flush {
        delay: i64,
        noreply: bool,
    },
    Memlimit {
        megabytes: u32,
        noreply: bool,
    },
    Stats(StatsGroup),
    /// `stats detail on|off` (`Some`), `stats detail dump` (`None`).
    Detail(Option<bool>),
    /// A key dump, answered a piece at a time ([`Whole::dump_piece`]).
    Dump(Dump),
    /// `stats sizes_enable|sizes_disable` (`Some`), `stats sizes` (`None`).
    Sizes(Option<bool>),
}

/// A key dump that passed its argument checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dump {
    /// `lru_crawler metadump`; `items` false when the classes named hold none.
    Meta { items: bool },
    /// `stats cachedump <class> <limit>`: `limit` 0 is no limit (but 2 MB of lines).
    Cache { items: bool, limit: u32 },
}

/// Where a dump in progress is: the shard, the slot to go on from there, and what was
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct DumpCursor {
    shard: ShardId,
    from: u32,
    items: u32,
    bytes: usize,
}

impl Whole {
    #[inline]
    pub(crate) fn of(request: &Request<'_>, worker: &Worker) -> Option<Whole> {
        match request {
            Request::FlushAll(_)
            | Request::CacheMemlimit(_)
            | Request::Stats(_)
            | Request::Admin(Admin {
                command: AdminCommand::LruCrawler(LruCrawler::Metadump(_)),
                ..
            }) => Whole::of_command(request, worker),
            _ => None,
        }
    }

    #[cold]
    fn of_command(request: &Request<'_>, worker: &Worker) -> Option<Whole> {
        let dump_enabled = || worker.config().dump_enabled;
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
            Request::Stats(req) if req.group == Some(b"detail") => match req.args[0] {
                Some(b"on") => Whole::Detail(Some(true)),
                Some(b"off") => Whole::Detail(Some(false)),
                Some(b"dump") => Whole::Detail(None),
                _ => Whole::Stats(StatsGroup::DetailUsage),
            },
            Request::Stats(req) if req.group == Some(b"cachedump") => {
                match cachedump(req.args, dump_enabled()) {
                    Ok(dump) => Whole::Dump(dump),
                    Err(line) => Whole::Stats(StatsGroup::Refused(line)),
                }
            }
            Request::Admin(Admin {
                command: AdminCommand::LruCrawler(LruCrawler::Metadump(classes)),
                ..
            }) => {
                let crawler = &worker.process_state().tunables.lru_crawler;
                if !dump_enabled() {
                    Whole::Stats(StatsGroup::Refused(b"ERROR metadump not allowed"))
                } else if !crawler.load(std::sync::atomic::Ordering::Relaxed) {
                    Whole::Stats(StatsGroup::Refused(b"CLIENT_ERROR lru crawler disabled"))
                } else {
                    match admin::names_item_class(classes, true) {
                        Some(items) => Whole::Dump(Dump::Meta { items }),
                        None => Whole::Stats(StatsGroup::Refused(b"BADCLASS invalid class id")),
                    }
                }
            }
            Request::Stats(req) => Whole::Stats(match req.group {
                None => StatsGroup::General,
                Some(b"sizes") => return Some(Whole::Sizes(None)),
                Some(b"sizes_enable") => return Some(Whole::Sizes(Some(true))),
                Some(b"sizes_disable") => return Some(Whole::Sizes(Some(false))),
                Some(b"extstore") => StatsGroup::Refused(reply::END),
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

    /// [`Whole::of`] for a binary request: `stats detail` and the dumps have no binary form
    /// here (an unknown stats group).
    pub(crate) fn of_binary(request: &Request<'_>, worker: &Worker) -> Option<Whole> {
        Whole::of(request, worker).map(|whole| match whole {
            Whole::Detail(_) | Whole::Dump(_) => Whole::Stats(StatsGroup::Unknown),
            whole => whole,
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
            Whole::Stats(group) => !matches!(
                group,
                StatsGroup::Unknown
                    | StatsGroup::Conns
                    | StatsGroup::DetailUsage
                    | StatsGroup::Refused(_)
            ),
            Whole::Detail(_) => true,
            Whole::Sizes(_) => true,
            // Run a piece at a time by `dump_piece`.
            Whole::Dump(_) => false,
        }
    }

    /// A dump: answered a piece at a time, never in one go.
    pub(crate) fn is_dump(&self) -> bool {
        matches!(self, Whole::Dump(_))
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
            Whole::Stats(_) | Whole::Dump(_) => Op::Snapshot,
            Whole::Detail(on) => Op::Detail { on },
            Whole::Sizes(on) => Op::Sizes { on },
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
            Whole::Stats(StatsGroup::DetailUsage) => {
                reply::line(out, b"CLIENT_ERROR usage: stats detail on|off|dump");
            }
            Whole::Stats(StatsGroup::Refused(line)) => reply::line(out, line),
            Whole::Detail(Some(on)) => {
                worker
                    .process_state()
                    .tunables
                    .detail_enabled
                    .store(on, std::sync::atomic::Ordering::Relaxed);
                reply::line(out, reply::OK);
            }
            Whole::Detail(None) => detail_dump(outcomes, out),
            Whole::Sizes(Some(on)) => {
                let tunables = &worker.process_state().tunables;
                tunables
                    .track_sizes
                    .store(on, std::sync::atomic::Ordering::Relaxed);
                // memcached's replies, without `END`.
                reply::line(
                    out,
                    if on {
                        b"STAT sizes_status enabled"
                    } else {
                        b"STAT sizes_status disabled"
                    },
                );
            }
            Whole::Sizes(None) => sizes(outcomes, out),
            // Answered by `dump_piece`.
            Whole::Dump(_) => {}
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
                    tunables: &worker.process_state().tunables,
                    watchers: &worker.process_state().watchers,
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

/// `stats sizes`: every shard's histogram added up, or `disabled` when no shard tracks.
fn sizes(outcomes: Vec<Outcome>, out: &mut Vec<u8>) {
    let mut merged: std::collections::BTreeMap<usize, u64> = std::collections::BTreeMap::new();
    let mut tracked = false;
    for outcome in outcomes {
        if let Outcome::Sizes(sizes) = outcome {
            tracked = true;
            for (bucket, items) in *sizes {
                *merged.entry(bucket).or_default() += items;
            }
        }
    }
    if !tracked {
        reply::line(out, b"STAT sizes_status disabled");
    }
    for (bucket, items) in merged.into_iter().filter(|(_, items)| *items > 0) {
        out.extend_from_slice(format!("STAT {bucket} {items}\r\n").as_bytes());
    }
    reply::line(out, reply::END);
}

/// `stats detail dump`: every shard's counters added up per prefix, in byte order.
fn detail_dump(outcomes: Vec<Outcome>, out: &mut Vec<u8>) {
    let mut merged: std::collections::BTreeMap<Box<[u8]>, rampart_store::PrefixCounts> =
        std::collections::BTreeMap::new();
    for outcome in outcomes {
        if let Outcome::Prefixes(prefixes) = outcome {
            for (prefix, counts) in *prefixes {
                merged.entry(prefix).or_default().add(&counts);
            }
        }
    }
    for (prefix, c) in merged {
        out.extend_from_slice(b"PREFIX ");
        out.extend_from_slice(&prefix);
        out.extend_from_slice(
            format!(
                " get {} hit {} set {} del {}\r\n",
                c.gets, c.hits, c.sets, c.deletes
            )
            .as_bytes(),
        );
    }
    reply::line(out, reply::END);
}

impl Whole {
    /// Runs the next piece of a dump from `cursor` (a fresh one for the first), writing its
    /// lines for the keys `shown` allows; `None` when the dump is done (its `END` written).
    pub(crate) async fn dump_piece(
        &self,
        cursor: DumpCursor,
        worker: &Worker,
        now: u64,
        mut shown: impl FnMut(&[u8]) -> bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<DumpCursor>, Gone> {
        let Whole::Dump(dump) = *self else {
            return Ok(None);
        };
        let (items, limit) = match dump {
            Dump::Meta { items } => (items, 0),
            Dump::Cache { items, limit } => (items, limit),
        };
        let shards = worker.router().shard_count();
        if !items || cursor.shard >= shards {
            reply::line(out, reply::END);
            return Ok(None);
        }
        let mut cursor = cursor;
        let outcome = worker
            .invoke_on_await(cursor.shard, now, Op::Dump { from: cursor.from })
            .await?;
        let Outcome::Dump(piece) = outcome else {
            reply::line(out, reply::END);
            return Ok(None);
        };
        for entry in &piece.entries {
            if !shown(piece.key(entry)) {
                continue;
            }
            let before = out.len();
            match dump {
                Dump::Meta { .. } => admin::metadump_line(&piece, entry, out),
                Dump::Cache { .. } => {
                    admin::cachedump_line(&piece, entry, out);
                    // memcached stops before a line would take it past 2 MB.
                    if cursor.bytes + (out.len() - before) > admin::CACHEDUMP_MAX_BYTES {
                        out.truncate(before);
                        reply::line(out, reply::END);
                        return Ok(None);
                    }
                }
            }
            cursor.bytes += out.len() - before;
            cursor.items += 1;
            if limit != 0 && cursor.items >= limit {
                reply::line(out, reply::END);
                return Ok(None);
            }
        }
        match piece.next {
            Some(from) => cursor.from = from,
            None => {
                cursor.shard += 1;
                cursor.from = 0;
            }
        }
        if cursor.shard >= shards {
            reply::line(out, reply::END);
            return Ok(None);
        }
        Ok(Some(cursor))
    }
}
