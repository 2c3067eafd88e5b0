//! Everything one executor's connections share: configuration, its shards, its counters.
//!
//! Passed explicitly (an `Rc<Worker>`) to every connection task; there are no globals or
//! thread-locals for shard state.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rampart_proto::text::Limits;

use crate::config::Config;
use crate::shard::Router;
use crate::stats::{ProcessCounters, WorkerCounters};

/// State shared by every executor of the process.
#[derive(Debug, Default)]
pub struct Process {
    pub counters: ProcessCounters,
    /// Set once a shutdown has begun: listeners stop accepting, connections finish.
    pub shutting_down: AtomicBool,
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
        self.process.shutting_down.load(Ordering::Acquire)
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

    /// `stats reset`.
    pub fn reset_stats(&self) {
        let c = &self.counters;
        for cell in [&c.bytes_read, &c.bytes_written, &c.conn_yields] {
            cell.set(0);
        }
        let p = &self.process.counters;
        p.total_connections.store(0, Ordering::Relaxed);
        p.rejected_connections.store(0, Ordering::Relaxed);
        self.router
            .map_reduce((), |store| store.stats_mut().reset(), |(), ()| ());
    }
}
