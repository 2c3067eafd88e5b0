//! Everything one executor's connections share: configuration, its shards, its counters.
//!
//! Passed explicitly (an `Rc<Worker>`) to every connection task; there are no globals or
//! thread-locals for shard state.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rampart_proto::text::Limits;
use rampart_tls::{ContextHolder, TlsSettings};

use crate::batch::{Batch, Op, Outcome, ShardSnapshot};
use crate::budget::ReadBudget;
use crate::config::Config;
use crate::mesh::{Gone, Ticket};
use crate::shard::{Router, ShardId};
use crate::stats::{ProcessCounters, WorkerCounters};

/// The process's TLS: the swappable context and the settings it is rebuilt from.
#[derive(Debug)]
pub struct Tls {
    pub holder: ContextHolder,
    pub settings: TlsSettings,
}

/// How a reload is named in the log and the audit trail.
#[derive(Clone, Copy)]
struct ReloadNames {
    /// The audit event.
    event: &'static str,
    /// What was read again.
    what: &'static str,
    /// What its count counts.
    count: &'static str,
    /// What serves after a failure.
    kept: &'static str,
}

const ACCESS_RELOAD: ReloadNames = ReloadNames {
    event: "acl.reload",
    what: "access policy",
    count: "rule(s)",
    kept: "the old one stays",
};

const CREDENTIALS_RELOAD: ReloadNames = ReloadNames {
    event: "credentials.reload",
    what: "credentials",
    count: "user(s)",
    kept: "the old ones stay",
};

/// State shared by every executor of the process.
#[derive(Debug, Default)]
pub struct Process {
    pub counters: ProcessCounters,
    /// Set once a shutdown has begun: listeners stop accepting, connections finish. Each
    /// executor's housekeeping waits on it, so it is seen at once.
    pub shutting_down: crate::runtime::Latch,
    /// Executors still finishing their connections after a shutdown began. Each keeps serving
    /// its shard for the others until this reaches zero: a connection being drained on one
    /// core may still need every other core's shard.
    pub draining: AtomicUsize,
    /// With `-Z`.
    pub tls: Option<Tls>,
    /// Open client connections, for `stats conns`.
    pub conns: crate::conns::ConnTable,
    /// What `lru_crawler`, `slabs automove` and `stats detail` change at run time.
    pub tunables: crate::admin::Tunables,
    /// Connections that `watch`.
    pub watchers: crate::watch::Watchers,
    /// `-o read_buf_mem_limit`: what all connections' growing read buffers may hold.
    pub read_budget: Arc<ReadBudget>,
    /// `-Y`, `-S`: the credentials every connection must present first.
    pub auth: Option<crate::auth::Authenticator>,
    /// `-o acl_file`: the access policy every request is checked against.
    pub access: Option<crate::authz::Access>,
    /// Refusals by reason, with or without a policy.
    pub access_counters: crate::authz::AccessCounters,
    /// `-o remote_admin`: without a policy, admin commands are accepted from any client.
    pub remote_admin: bool,
    /// `-o audit_log`: the audit trail.
    pub audit: Option<crate::audit::Audit>,
}

/// `refresh_certs` without `-Z`, in memcached's words.
pub const TLS_NOT_ENABLED: &str = "Error TLS not enabled";

impl Process {
    /// A process of `executors` executors.
    pub fn new(executors: usize) -> Process {
        Process::with_tls(executors, None)
    }

    /// A process of `executors` executors serving TLS with `tls`.
    pub fn with_tls(executors: usize, tls: Option<Tls>) -> Process {
        Process {
            draining: AtomicUsize::new(executors),
            tls,
            ..Process::default()
        }
    }

    /// The same process with a read budget of `limit_bytes` (`None`: no limit).
    /// The same process requiring authentication as `auth` says.
    pub fn with_auth(mut self, auth: Option<crate::auth::Authenticator>) -> Process {
        self.auth = auth;
        self
    }

    pub fn with_access(
        mut self,
        access: Option<crate::authz::Access>,
        remote_admin: bool,
    ) -> Process {
        self.access = access;
        self.remote_admin = remote_admin;
        self
    }

    pub fn with_audit(mut self, audit: Option<crate::audit::Audit>) -> Process {
        self.audit = audit;
        self
    }

    /// Reads the access policy again (`why`: SIGHUP or `acl reload`), logging and counting
    /// the outcome. `None` without a policy.
    pub fn reload_access(&self, why: &str) -> Option<Result<usize, crate::authz::AccessError>> {
        let outcome = self.access.as_ref()?.reload();
        let counter = match &outcome {
            Ok(_) => &self.access_counters.reloads,
            Err(_) => &self.access_counters.reload_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.report_reload(why, &outcome, ACCESS_RELOAD);
        Some(outcome)
    }

    /// Reads the credential files again (`why`: SIGHUP or `auth reload`), logging and
    /// auditing the outcome. `None` without `-Y` or `-S`.
    pub fn reload_credentials(&self, why: &str) -> Option<Result<usize, crate::auth::AuthError>> {
        let outcome = self.auth.as_ref()?.reload();
        self.report_reload(why, &outcome, CREDENTIALS_RELOAD);
        Some(outcome)
    }

    /// Logs a reload's outcome and writes it to the audit trail.
    fn report_reload<E: std::fmt::Display>(
        &self,
        why: &str,
        outcome: &Result<usize, E>,
        names: ReloadNames,
    ) {
        let ReloadNames {
            event,
            what,
            count,
            kept,
        } = names;
        let event = match outcome {
            Ok(n) => {
                log::info!("{why}: {what} reloaded, {n} {count}");
                crate::audit::Event::new(event, "ok").reason(format!("{n} {count}"))
            }
            Err(err) => {
                log::error!("{why}: {what} not reloaded, {kept}: {err}");
                crate::audit::Event::new(event, "failed").reason(err.to_string())
            }
        };
        if let Some(audit) = &self.audit {
            audit.emit(event);
        }
    }

    pub fn with_read_budget(mut self, limit_bytes: Option<usize>) -> Process {
        self.read_budget = Arc::new(ReadBudget::new(limit_bytes));
        self
    }

    /// `refresh_certs` and SIGHUP: rebuilds the TLS context from the configured files and
    /// swaps it in, or leaves the serving one in place. `Err` is the reply line, also logged.
    pub fn refresh_certs(&self) -> Result<(), String> {
        let Some(tls) = &self.tls else {
            return Err(TLS_NOT_ENABLED.to_string());
        };
        match tls.holder.refresh(&tls.settings) {
            Ok(()) => {
                log::info!("TLS certificates reloaded");
                Ok(())
            }
            Err(err) => {
                log::warn!("TLS certificates not reloaded, still serving the previous ones: {err}");
                Err(err.to_string())
            }
        }
    }
}

/// One executor's context.
#[derive(Debug)]
pub struct Worker {
    config: Arc<Config>,
    process: Arc<Process>,
    counters: WorkerCounters,
    router: Router,
    limits: Limits,
    started_at: u64,
    /// Sockets of the connections this executor serves, so a shutdown can stop their reads.
    connections: RefCell<HashSet<RawFd>>,
    /// Connections being served, whether or not their socket is known.
    open: Cell<usize>,
}

/// Keeps a connection's socket registered with its worker while it is served.
#[derive(Debug)]
pub struct Registration<'a> {
    worker: &'a Worker,
    fd: Option<RawFd>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some(fd) = self.fd {
            self.worker.connections.borrow_mut().remove(&fd);
        }
        self.worker.open.set(self.worker.open.get() - 1);
    }
}

impl Worker {
    pub fn new(
        config: Arc<Config>,
        process: Arc<Process>,
        router: Router,
        started_at: u64,
    ) -> Self {
        let limits = Limits {
            item_size_max: config.item_size_max,
            flush_enabled: config.flush_enabled,
            cas_enabled: config.cas_enabled,
        };
        Worker {
            config,
            process,
            counters: WorkerCounters::default(),
            router,
            limits,
            started_at,
            connections: RefCell::new(HashSet::new()),
            open: Cell::new(0),
        }
    }

    /// Registers a connection's socket until the returned guard is dropped.
    pub fn register_connection(&self, fd: Option<RawFd>) -> Registration<'_> {
        if let Some(fd) = fd {
            self.connections.borrow_mut().insert(fd);
        }
        self.open.set(self.open.get() + 1);
        WorkerCounters::add(&self.counters.total_connections, 1);
        Registration { worker: self, fd }
    }

    /// Connections this executor is serving.
    pub fn open_connections(&self) -> usize {
        self.open.get()
    }

    /// Shutdown: every connection's next read sees end-of-stream once it has handled what it
    /// already read, so it answers that and closes.
    pub fn stop_reading_connections(&self) {
        for &fd in self.connections.borrow().iter() {
            // SAFETY: `fd` is registered only while its connection owns the open socket.
            unsafe { libc::shutdown(fd, libc::SHUT_RD) };
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn process(&self) -> &ProcessCounters {
        &self.process.counters
    }

    /// The process's TLS, with `-Z`.
    pub fn tls(&self) -> Option<&Tls> {
        self.process.tls.as_ref()
    }

    /// See [`Process::refresh_certs`].
    pub fn refresh_certs(&self) -> Result<(), String> {
        self.process.refresh_certs()
    }

    pub fn counters(&self) -> &WorkerCounters {
        &self.counters
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn started_at(&self) -> u64 {
        self.started_at
    }

    pub fn shutting_down(&self) -> bool {
        self.process.shutting_down.is_set()
    }

    /// The process's shared state (shutdown flags).
    /// The authenticator, when connections must authenticate.
    pub fn auth(&self) -> Option<&crate::auth::Authenticator> {
        self.process_state().auth.as_ref()
    }

    pub fn audit(&self) -> Option<&crate::audit::Audit> {
        self.process_state().audit.as_ref()
    }

    pub fn access(&self) -> Option<&crate::authz::Access> {
        self.process_state().access.as_ref()
    }

    pub fn process_state(&self) -> &Process {
        &self.process
    }

    /// `verbosity <level>`: memcached's levels mapped onto the logger (see the binary).
    pub fn set_verbosity(&self, level: u32) {
        self.process
            .counters
            .verbosity
            .store(level.min(2).into(), Ordering::Relaxed);
        log::set_max_level(crate::verbosity_filter(level));
    }

    /// `shutdown`: the same path as SIGTERM, so that it drains the same way.
    pub fn request_shutdown(&self) {
        // SAFETY: kill(2) on our own pid with a valid signal number has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
    }

    /// `stats reset` of the process-wide counters; each shard's part is
    /// [`Worker::reset_own_stats`], run on its own core.
    pub fn reset_process_stats(&self) {
        let p = &self.process.counters;
        p.total_connections.store(0, Ordering::Relaxed);
        p.rejected_connections.store(0, Ordering::Relaxed);
        p.idle_kicks.store(0, Ordering::Relaxed);
    }

    /// `stats reset` of this executor's counters and its shard's.
    pub fn reset_own_stats(&self) {
        let c = &self.counters;
        for cell in [
            &c.bytes_read,
            &c.bytes_written,
            &c.conn_yields,
            &c.total_connections,
        ] {
            cell.set(0);
        }
        if let Some(mesh) = self.router.mesh() {
            mesh.counters.reset();
        }
        rampart_tls::buffers::reset_allocated();
        self.router.invoke_local(|store| {
            store.stats_mut().reset();
            store.prefix_stats_mut().clear();
        });
    }

    /// This executor's and its shard's figures, for `stats`.
    pub fn snapshot(&self, now: u64) -> ShardSnapshot {
        let c = &self.counters;
        let mut snapshot = self.router.invoke_local(|store| ShardSnapshot {
            store: store.stats().clone(),
            bytes: store.bytes() as u64,
            items: store.len() as u64,
            limit_bytes: store.limit_bytes() as u64,
            hash_bytes: store.index_bytes() as u64,
            oldest_age: store.oldest_item_age(now),
            ..ShardSnapshot::default()
        });
        snapshot.bytes_read = c.bytes_read.get();
        snapshot.bytes_written = c.bytes_written.get();
        snapshot.conn_yields = c.conn_yields.get();
        snapshot.curr_connections = self.open.get() as u64;
        snapshot.total_connections = c.total_connections.get();
        snapshot.buffers_allocated = rampart_tls::buffers::allocated();
        if let Some(mesh) = self.router.mesh() {
            snapshot.batches_sent = mesh.counters.batches_sent.get();
            snapshot.batches_served = mesh.counters.batches_served.get();
            snapshot.ops_served = mesh.counters.ops_served.get();
        }
        snapshot
    }

    /// Runs a whole-shard operation on this core's shard, now.
    pub fn run_local(&self, now: u64, op: Op) -> Outcome {
        let mut batch = Batch::at(now);
        batch.push(op);
        batch.run(self);
        batch.take_outcomes().next().unwrap_or(Outcome::Done)
    }

    /// Runs `op` on shard `shard` (inline when it is this core's) and waits for its outcome.
    pub async fn invoke_on_await(&self, shard: ShardId, now: u64, op: Op) -> Result<Outcome, Gone> {
        if self.router.is_local(shard) {
            return Ok(self.run_local(now, op));
        }
        let count = self.router.shard_count();
        let mut batches: Vec<Option<Box<Batch>>> = (0..count).map(|_| None).collect();
        let mut batch = Box::new(Batch::at(now));
        batch.push(op);
        batches[shard] = Some(batch);
        let mut tickets: Vec<Option<Ticket>> = Vec::new();
        self.router
            .invoke_batches_await(&mut batches, &mut tickets)
            .await?;
        Ok(batches[shard]
            .as_mut()
            .and_then(|b| b.take_outcomes().next())
            .unwrap_or(Outcome::Done))
    }

    /// Runs `op(shard)` on every shard, this core's inline and the others' by one message
    /// each, and waits for all of them (Seastar's `map` over `invoke_on_all`): the per-shard
    /// part of `flush_all`, `stats`, `cache_memlimit`. Outcomes come back in shard order.
    pub async fn invoke_on_all_await(
        &self,
        now: u64,
        op: impl Fn(ShardId) -> Op,
    ) -> Result<Vec<Outcome>, Gone> {
        let count = self.router.shard_count();
        let mut batches: Vec<Option<Box<Batch>>> = (0..count)
            .map(|shard| {
                let mut batch = Box::new(Batch::at(now));
                batch.push(op(shard));
                Some(batch)
            })
            .collect();
        let me = self.router.me();
        if let Some(Some(local)) = batches.get_mut(me) {
            local.run(self);
        }
        let mut local = batches.get_mut(me).and_then(Option::take);
        let mut tickets: Vec<Option<Ticket>> = Vec::new();
        self.router
            .invoke_batches_await(&mut batches, &mut tickets)
            .await?;
        if let Some(slot) = batches.get_mut(me) {
            *slot = local.take();
        }
        Ok(batches
            .iter_mut()
            .map(|batch| {
                batch
                    .as_mut()
                    .and_then(|b| b.take_outcomes().next())
                    .unwrap_or(Outcome::Done)
            })
            .collect())
    }
}

impl crate::batch::Owner for Worker {
    fn store(&self) -> std::cell::RefMut<'_, rampart_store::Store> {
        self.router.local_store()
    }

    fn snapshot(&self, now: u64) -> ShardSnapshot {
        Worker::snapshot(self, now)
    }

    fn reset_stats(&self) {
        self.reset_own_stats();
    }

    fn watchers(&self) -> &crate::watch::Watchers {
        &self.process.watchers
    }
}
