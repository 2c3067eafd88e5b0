//! Server-wide counters and the `stats` replies, with memcached's names.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rampart_proto::text::reply;
use rampart_store::StoreStats;

use crate::batch::ShardSnapshot;
use crate::config::Config;
use crate::worker::Tls;

/// The version `version` and `stats` report: memcached's protocol level, then ours, so that
/// clients that parse the leading `x.y.z` see a memcached they know.
pub const VERSION: &str = concat!("1.6.18-rampart-", env!("CARGO_PKG_VERSION"));

/// Counters shared by every executor of the process.
#[derive(Debug, Default)]
pub struct ProcessCounters {
    /// Open client connections (memcached's `curr_connections`), checked against `-c`.
    pub curr_connections: AtomicUsize,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    /// Connections closed by `-o idle_timeout` (memcached's `idle_kicks`).
    pub idle_kicks: AtomicU64,
    /// Set by `verbosity`; read by the logger's filter.
    pub verbosity: AtomicU64,
}

/// Counters of one executor; only its own thread touches them.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub bytes_read: Cell<u64>,
    pub bytes_written: Cell<u64>,
    pub conn_yields: Cell<u64>,
    /// Connections this executor has served (`curr_connections` per executor is the number
    /// registered with it).
    pub total_connections: Cell<u64>,
}

impl WorkerCounters {
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_add(n));
    }
}

/// memcached counters for mechanisms rampart does not have (background hash table
/// expansion, slab rebalancing, the LRU crawler and maintainer threads, the log watcher).
/// They are reported, always 0, so that monitoring that expects memcached's names keeps
/// working. `hash_power_level` is among them: rampart's key index is not a power of two long
/// (`rampart_store::index`); `hash_bytes`, reported just before these, is its real size.
const MEMCACHED_INTERNALS: &[&str] = &[
    "hash_is_expanding",
    "slab_reassign_rescues",
    "slab_reassign_chunk_rescues",
    "slab_reassign_evictions_nomem",
    "slab_reassign_inline_reclaim",
    "slab_reassign_busy_items",
    "slab_reassign_busy_deletes",
    "slab_reassign_running",
    "slabs_moved",
    "lru_crawler_running",
    "lru_crawler_starts",
    "lru_maintainer_juggles",
    "malloc_fails",
    "log_worker_dropped",
    "log_worker_written",
];

/// memcached's counters that follow its TLS ones.
const MEMCACHED_INTERNALS_AFTER_TLS: &[&str] = &["unexpected_napi_ids", "round_robin_fallback"];

/// memcached's segmented-LRU counters; rampart's LRU is a single list.
const MEMCACHED_LRU_INTERNALS: &[&str] = &[
    "crawler_items_checked",
    "lrutail_reflocked",
    "moves_to_cold",
    "moves_to_warm",
    "moves_within_lru",
    "direct_reclaims",
    "lru_bumps_dropped",
];

fn zeros(out: &mut Vec<u8>, names: &[&str]) {
    for name in names {
        reply::stat_u64(out, name, 0);
    }
}

/// What the `stats` group replies need to see: the process's counters and a snapshot of every
/// shard and its executor, in shard order.
#[derive(Debug)]
pub struct StatsView<'a> {
    pub config: &'a Config,
    pub process: &'a ProcessCounters,
    /// With `-Z`: its counters and settings.
    pub tls: Option<&'a Tls>,
    pub shards: &'a [ShardSnapshot],
    /// `-o read_buf_mem_limit`'s budget.
    pub read_budget: &'a crate::budget::ReadBudget,
    /// With `-Y` or `-S`.
    pub auth: Option<&'a crate::auth::Authenticator>,
    /// With `-o acl_file`.
    pub access: Option<&'a crate::authz::Access>,
    pub access_counters: &'a crate::authz::AccessCounters,
    /// With `-o audit_log`.
    pub audit: Option<&'a crate::audit::Audit>,
    /// What the maintenance commands changed.
    pub tunables: &'a crate::admin::Tunables,
    pub watchers: &'a crate::watch::Watchers,
    pub started_at: u64,
    pub now: u64,
}

/// Every shard's figures added up.
fn total(shards: &[ShardSnapshot]) -> ShardSnapshot {
    let mut sum = ShardSnapshot::default();
    for shard in shards {
        sum.store.add(&shard.store);
        sum.bytes += shard.bytes;
        sum.items += shard.items;
        sum.limit_bytes += shard.limit_bytes;
        sum.hash_bytes += shard.hash_bytes;
        sum.oldest_age = sum.oldest_age.max(shard.oldest_age);
        sum.bytes_read += shard.bytes_read;
        sum.bytes_written += shard.bytes_written;
        sum.conn_yields += shard.conn_yields;
        sum.curr_connections += shard.curr_connections;
        sum.total_connections += shard.total_connections;
        sum.batches_sent += shard.batches_sent;
        sum.batches_served += shard.batches_served;
        sum.ops_served += shard.ops_served;
        sum.buffers_allocated += shard.buffers_allocated;
    }
    sum
}

fn rusage() -> (String, String) {
    // SAFETY: getrusage writes a plain struct we own; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let fmt = |tv: libc::timeval| format!("{}.{:06}", tv.tv_sec, tv.tv_usec);
    (fmt(usage.ru_utime), fmt(usage.ru_stime))
}

/// `stats` with no group.
pub fn general(view: &StatsView<'_>, out: &mut Vec<u8>) {
    let sum = total(view.shards);
    let store: &StoreStats = &sum.store;
    let process = view.process;
    let (user, system) = rusage();
    reply::stat_u64(out, "pid", u64::from(std::process::id()));
    reply::stat_u64(out, "uptime", view.now.saturating_sub(view.started_at));
    reply::stat_u64(out, "time", view.now);
    reply::stat(out, "version", VERSION.as_bytes());
    reply::stat(out, "libevent", b"none");
    reply::stat_u64(out, "pointer_size", usize::BITS.into());
    reply::stat(out, "rusage_user", user.as_bytes());
    reply::stat(out, "rusage_system", system.as_bytes());
    reply::stat_u64(out, "max_connections", view.config.max_connections as u64);
    let load = |c: &AtomicUsize| c.load(Ordering::Relaxed) as u64;
    let load64 = |c: &AtomicU64| c.load(Ordering::Relaxed);
    reply::stat_u64(out, "curr_connections", load(&process.curr_connections));
    reply::stat_u64(out, "total_connections", load64(&process.total_connections));
    reply::stat_u64(
        out,
        "rejected_connections",
        load64(&process.rejected_connections),
    );
    reply::stat_u64(
        out,
        "connection_structures",
        load(&process.curr_connections),
    );
    zeros(
        out,
        &[
            "response_obj_oom",
            "response_obj_count",
            "response_obj_bytes",
        ],
    );
    // Read buffers beyond each connection's first 16 KiB, and the requests refused because
    // the budget could not cover them (memcached: allocations of read buffers that failed).
    zeros(out, &["read_buf_count"]);
    reply::stat_u64(out, "read_buf_bytes", view.read_budget.used_bytes() as u64);
    zeros(out, &["read_buf_bytes_free"]);
    reply::stat_u64(out, "read_buf_oom", view.read_budget.refusals());
    zeros(out, &["reserved_fds"]);
    reply::stat_u64(out, "cmd_get", store.cmd_get);
    reply::stat_u64(out, "cmd_set", store.cmd_set);
    reply::stat_u64(out, "cmd_flush", store.cmd_flush);
    reply::stat_u64(out, "cmd_touch", store.cmd_touch);
    reply::stat_u64(out, "cmd_meta", 0);
    reply::stat_u64(out, "get_hits", store.get_hits);
    reply::stat_u64(out, "get_misses", store.get_misses);
    reply::stat_u64(out, "get_expired", store.get_expired);
    reply::stat_u64(out, "get_flushed", store.get_flushed);
    reply::stat_u64(out, "delete_misses", store.delete_misses);
    reply::stat_u64(out, "delete_hits", store.delete_hits);
    reply::stat_u64(out, "incr_misses", store.incr_misses);
    reply::stat_u64(out, "incr_hits", store.incr_hits);
    reply::stat_u64(out, "decr_misses", store.decr_misses);
    reply::stat_u64(out, "decr_hits", store.decr_hits);
    reply::stat_u64(out, "cas_misses", store.cas_misses);
    reply::stat_u64(out, "cas_hits", store.cas_hits);
    reply::stat_u64(out, "cas_badval", store.cas_badval);
    reply::stat_u64(out, "touch_hits", store.touch_hits);
    reply::stat_u64(out, "touch_misses", store.touch_misses);
    reply::stat_u64(out, "store_too_large", store.store_too_large);
    reply::stat_u64(out, "store_no_memory", store.store_no_memory);
    let auth_counter = |pick: fn(&crate::auth::AuthCounters) -> &std::sync::atomic::AtomicU64| {
        view.auth.map_or(0, |auth| {
            pick(&auth.counters).load(std::sync::atomic::Ordering::Relaxed)
        })
    };
    reply::stat_u64(out, "auth_cmds", auth_counter(|c| &c.attempts));
    reply::stat_u64(out, "auth_errors", auth_counter(|c| &c.failures));
    if view.config.idle_timeout.is_some() {
        // memcached shows it only with an idle timeout.
        reply::stat_u64(out, "idle_kicks", load64(&process.idle_kicks));
    }
    if view.auth.is_some() {
        // rampart's own: connections closed unauthenticated.
        reply::stat_u64(out, "auth_timeouts", auth_counter(|c| &c.timeouts));
        reply::stat_u64(out, "auth_lockouts", auth_counter(|c| &c.lockouts));
        reply::stat_u64(out, "auth_cert_users", auth_counter(|c| &c.cert_users));
    }
    if let Some(audit) = view.audit {
        let load = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        reply::stat_u64(out, "audit_events_written", load(&audit.counters.written));
        reply::stat_u64(out, "audit_events_dropped", load(&audit.counters.dropped));
    }
    if view.access.is_some() {
        // rampart's own: refusals by reason, and policy reloads.
        let acl = view.access_counters;
        let load = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        reply::stat_u64(out, "acl_denied_command", load(&acl.denied_command));
        reply::stat_u64(out, "acl_denied_key", load(&acl.denied_key));
        reply::stat_u64(out, "acl_reloads", load(&acl.reloads));
        reply::stat_u64(out, "acl_reload_errors", load(&acl.reload_errors));
    }
    reply::stat_u64(out, "bytes_read", sum.bytes_read);
    reply::stat_u64(out, "bytes_written", sum.bytes_written);
    reply::stat_u64(out, "limit_maxbytes", sum.limit_bytes);
    reply::stat_u64(out, "accepting_conns", 1);
    zeros(out, &["listen_disabled_num", "time_in_listen_disabled_us"]);
    reply::stat_u64(out, "threads", view.config.threads as u64);
    reply::stat_u64(out, "conn_yields", sum.conn_yields);
    zeros(out, &["hash_power_level"]);
    reply::stat_u64(out, "hash_bytes", sum.hash_bytes);
    zeros(out, MEMCACHED_INTERNALS);
    let watchers = view.watchers;
    reply::stat_u64(out, "log_watcher_skipped", load64(&watchers.skipped));
    reply::stat_u64(out, "log_watcher_sent", load64(&watchers.sent));
    reply::stat_u64(out, "log_watchers", watchers.count() as u64);
    if let Some(tls) = view.tls {
        tls.holder.stats(out, reply::stat_u64);
    }
    zeros(out, MEMCACHED_INTERNALS_AFTER_TLS);
    reply::stat_u64(out, "bytes", sum.bytes);
    reply::stat_u64(out, "curr_items", sum.items);
    reply::stat_u64(out, "total_items", store.total_items);
    zeros(out, &["slab_global_page_pool"]);
    reply::stat_u64(out, "expired_unfetched", store.expired_unfetched);
    reply::stat_u64(out, "evicted_unfetched", store.evicted_unfetched);
    zeros(out, &["evicted_active"]);
    reply::stat_u64(out, "evictions", store.evictions);
    reply::stat_u64(out, "reclaimed", store.reclaimed);
    reply::stat_u64(out, "crawler_reclaimed", store.crawler_reclaimed);
    zeros(out, MEMCACHED_LRU_INTERNALS);
    reply::line(out, reply::END);
}

/// `stats settings`.
pub fn settings(view: &StatsView<'_>, out: &mut Vec<u8>) {
    let config = view.config;
    let yes_no = |b: bool| if b { &b"yes"[..] } else { &b"no"[..] };
    // `cache_memlimit` may have changed it since start-up.
    let maxbytes: u64 = view.shards.iter().map(|s| s.limit_bytes).sum();
    reply::stat_u64(out, "maxbytes", maxbytes);
    reply::stat_u64(out, "maxconns", config.max_connections as u64);
    let port = config.tcp.first().map_or(0, |l| l.addr.port());
    reply::stat_u64(out, "tcpport", port.into());
    reply::stat_u64(out, "udpport", 0);
    let inter = config
        .tcp
        .iter()
        .map(|l| l.addr.ip().to_string())
        .collect::<Vec<_>>()
        .join(",");
    reply::stat(
        out,
        "inter",
        if inter.is_empty() {
            b"NULL"
        } else {
            inter.as_bytes()
        },
    );
    reply::stat_u64(
        out,
        "verbosity",
        view.process.verbosity.load(Ordering::Relaxed),
    );
    reply::stat_u64(out, "oldest", 0);
    reply::stat(out, "evictions", if config.evict { b"on" } else { b"off" });
    match &config.unix_socket {
        Some((path, mask)) => {
            reply::stat(out, "domain_socket", path.to_string_lossy().as_bytes());
            reply::stat(out, "umask", format!("{mask:o}").as_bytes());
        }
        None => {
            reply::stat(out, "domain_socket", b"NULL");
            reply::stat(out, "umask", b"700");
        }
    }
    reply::stat(out, "shutdown_command", yes_no(config.shutdown_enabled));
    // -f and -n: accepted and shown; rampart has one size class.
    reply::stat(
        out,
        "growth_factor",
        format!("{:.2}", config.growth_factor).as_bytes(),
    );
    reply::stat_u64(out, "chunk_size", config.chunk_size as u64);
    reply::stat_u64(out, "num_threads", config.threads as u64);
    reply::stat(out, "stat_key_prefix", &[config.stat_key_prefix]);
    let tunables = view.tunables;
    reply::stat(
        out,
        "detail_enabled",
        yes_no(tunables.detail_enabled.load(Ordering::Relaxed)),
    );
    reply::stat_u64(out, "reqs_per_event", config.requests_per_event as u64);
    reply::stat(out, "cas_enabled", yes_no(config.cas_enabled));
    reply::stat_u64(out, "tcp_backlog", config.backlog.into());
    reply::stat(
        out,
        "binding_protocol",
        config.protocol.stats_name().as_bytes(),
    );
    reply::stat(
        out,
        "auth_enabled_sasl",
        yes_no(view.auth.is_some_and(|a| a.sasl)),
    );
    // memcached shows -Y's path here, or `no`.
    match &config.auth.ascii_file {
        Some(path) => reply::stat(
            out,
            "auth_enabled_ascii",
            path.display().to_string().as_bytes(),
        ),
        None => reply::stat(out, "auth_enabled_ascii", b"no"),
    }
    // rampart's own, shown when set.
    if let Some(path) = &config.acl_file {
        reply::stat(out, "acl_file", path.display().to_string().as_bytes());
    }
    if config.remote_admin {
        reply::stat(out, "remote_admin", b"yes");
    }
    reply::stat_u64(out, "item_size_max", config.item_size_max as u64);
    reply::stat_u64(
        out,
        "slab_automove",
        tunables.slab_automove.load(Ordering::Relaxed).into(),
    );
    // The reclaim pass each executor runs (memcached's crawler thread).
    reply::stat(
        out,
        "lru_crawler",
        yes_no(tunables.lru_crawler.load(Ordering::Relaxed)),
    );
    reply::stat_u64(
        out,
        "lru_crawler_sleep",
        tunables.lru_crawler_sleep.load(Ordering::Relaxed).into(),
    );
    reply::stat_u64(
        out,
        "lru_crawler_tocrawl",
        tunables.lru_crawler_tocrawl.load(Ordering::Relaxed).into(),
    );
    reply::stat_u64(
        out,
        "read_buf_mem_limit",
        view.read_budget.limit_bytes().unwrap_or(0) as u64,
    );
    reply::stat(out, "flush_enabled", yes_no(config.flush_enabled));
    reply::stat(out, "dump_enabled", yes_no(config.dump_enabled));
    reply::stat_u64(
        out,
        "idle_timeout",
        config.idle_timeout.map_or(0, |d| d.as_secs()),
    );
    config.tls.stats_settings(out, |out, name, value| {
        reply::stat(out, name, value.as_bytes());
    });
    reply::stat(
        out,
        "track_sizes",
        yes_no(tunables.track_sizes.load(Ordering::Relaxed)),
    );
    match &config.memory_file {
        Some(path) => reply::stat(out, "memory_file", path.display().to_string().as_bytes()),
        None => reply::stat(out, "memory_file", b"(null)"),
    }
    reply::line(out, reply::END);
}

/// `stats items`: rampart has no slab classes, so everything is reported as class 1.
pub fn items(view: &StatsView<'_>, out: &mut Vec<u8>) {
    let sum = total(view.shards);
    let store = &sum.store;
    if sum.items > 0 {
        reply::stat_u64(out, "items:1:number", sum.items);
        reply::stat_u64(out, "items:1:age", sum.oldest_age.unwrap_or(0));
        reply::stat_u64(out, "items:1:evicted", store.evictions);
        reply::stat_u64(out, "items:1:outofmemory", store.store_no_memory);
        reply::stat_u64(out, "items:1:reclaimed", store.reclaimed);
        reply::stat_u64(out, "items:1:expired_unfetched", store.expired_unfetched);
        reply::stat_u64(out, "items:1:evicted_unfetched", store.evicted_unfetched);
    }
    reply::line(out, reply::END);
}

/// `stats slabs`: one pseudo-class holding every item.
pub fn slabs(view: &StatsView<'_>, out: &mut Vec<u8>) {
    let sum = total(view.shards);
    let store = &sum.store;
    if sum.items > 0 {
        reply::stat_u64(out, "1:used_chunks", sum.items);
        reply::stat_u64(out, "1:get_hits", store.get_hits);
        reply::stat_u64(out, "1:cmd_set", store.cmd_set);
        reply::stat_u64(out, "1:delete_hits", store.delete_hits);
        reply::stat_u64(out, "1:incr_hits", store.incr_hits);
        reply::stat_u64(out, "1:decr_hits", store.decr_hits);
        reply::stat_u64(out, "1:cas_hits", store.cas_hits);
        reply::stat_u64(out, "1:cas_badval", store.cas_badval);
        reply::stat_u64(out, "1:touch_hits", store.touch_hits);
        reply::stat_u64(out, "active_slabs", 1);
    } else {
        reply::stat_u64(out, "active_slabs", 0);
    }
    reply::stat_u64(out, "total_malloced", sum.bytes);
    reply::line(out, reply::END);
}

/// `stats shards` (rampart only): each core's shard and connections, for operators chasing
/// an imbalance. Names are `shard:<i>:<name>`, as `stats items` names `items:<class>:<name>`.
pub fn shards(view: &StatsView<'_>, out: &mut Vec<u8>) {
    for (i, shard) in view.shards.iter().enumerate() {
        let store = &shard.store;
        for (field, value) in [
            ("curr_items", shard.items),
            ("bytes", shard.bytes),
            ("limit_maxbytes", shard.limit_bytes),
            ("cmd_get", store.cmd_get),
            ("get_hits", store.get_hits),
            ("get_misses", store.get_misses),
            ("cmd_set", store.cmd_set),
            ("cmd_touch", store.cmd_touch),
            ("evictions", store.evictions),
            ("curr_connections", shard.curr_connections),
            ("total_connections", shard.total_connections),
            ("bytes_read", shard.bytes_read),
            ("bytes_written", shard.bytes_written),
            ("conn_yields", shard.conn_yields),
            ("batches_sent", shard.batches_sent),
            ("batches_served", shard.batches_served),
            ("ops_served", shard.ops_served),
            ("buffers_allocated", shard.buffers_allocated),
        ] {
            reply::stat_u64(out, &format!("shard:{i}:{field}"), value);
        }
    }
    reply::line(out, reply::END);
}

/// Seconds since the unix epoch.
///
/// Read from the kernel's coarse clock, which the vDSO returns without reading the timestamp
/// counter and which trails the precise one by at most a clock tick (a few milliseconds):
/// every connection turn reads it, and everything it feeds counts in whole seconds
/// (memcached's own clock ticks once a second).
pub fn unix_now() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid `timespec` for the call to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) } == 0 {
        return u64::try_from(now.tv_sec).unwrap_or(0);
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
