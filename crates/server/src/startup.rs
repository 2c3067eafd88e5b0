//! Start-up reports: every executor tells the main thread whether it is ready to serve, and one
//! that ends without telling (glommio could not build it, so its future never ran, or it
//! panicked) tells as it goes, so the main thread never waits for a report that cannot come.

use std::sync::mpsc;

use glommio::ExecutorJoinHandle;

use crate::ServerError;
use crate::config::Config;
use crate::shard::ShardId;

/// What an executor reports.
enum Started {
    Ready,
    Failed(ServerError),
    /// It ended before reporting: the reason is in its thread's result.
    Ended,
}

/// One executor's report, sent exactly once: by [`Report::ready`] or [`Report::failed`], or
/// as [`Started::Ended`] when it is dropped unsent.
#[derive(Debug)]
pub(crate) struct Report {
    core: ShardId,
    tx: Option<mpsc::Sender<(ShardId, Started)>>,
}

impl Report {
    pub(crate) fn ready(mut self) {
        self.send(Started::Ready);
    }

    pub(crate) fn failed(mut self, err: ServerError) {
        self.send(Started::Failed(err));
    }

    fn send(&mut self, started: Started) {
        if let Some(tx) = self.tx.take() {
            // The main thread only stops listening once it has given up on the start-up.
            let _ = tx.send((self.core, started));
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.send(Started::Ended);
    }
}

/// The main thread's side.
pub(crate) struct Reports {
    rx: mpsc::Receiver<(ShardId, Started)>,
    executors: usize,
}

/// A report for each of `executors` executors, in core order, and the receiving side.
pub(crate) fn reports(executors: usize) -> (Vec<Report>, Reports) {
    let (tx, rx) = mpsc::channel();
    let senders = (0..executors)
        .map(|core| Report {
            core,
            tx: Some(tx.clone()),
        })
        .collect();
    (senders, Reports { rx, executors })
}

impl Reports {
    /// Waits until every executor is ready, or for the first one that is not. `handles` are
    /// the executors' threads in core order: an executor that ended unreported is joined for
    /// its reason (its thread is ending, so that does not wait).
    pub(crate) fn wait(self, handles: &mut Vec<ExecutorJoinHandle<()>>) -> Result<(), ServerError> {
        for _ in 0..self.executors {
            // Every report is sent before its sender drops, so the channel cannot close first.
            let Ok((core, started)) = self.rx.recv() else {
                return Err(ServerError::Executor("an executor ended unreported".into()));
            };
            match started {
                Started::Ready => {}
                Started::Failed(err) => return Err(err),
                Started::Ended => {
                    let reason = match handles.remove(core).join() {
                        Err(err) => err.to_string(),
                        Ok(()) => "it ended".to_string(),
                    };
                    // What glommio most often refuses on (its rings need locked memory), as a
                    // number the operator can compare and raise.
                    return Err(ServerError::Executor(format!(
                        "executor {core} could not start: {reason} (locked-memory limit, \
                         ulimit -l: {})",
                        memlock_limit()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The soft `RLIMIT_MEMLOCK`, for messages.
fn memlock_limit() -> String {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return "unknown".to_string();
    }
    match limit.rlim_cur {
        libc::RLIM_INFINITY => "unlimited".to_string(),
        bytes => format!("{} KiB", bytes / 1024),
    }
}

/// Each executor's fixed cost in the memory bound (rings, `io_memory`, queues, the mesh;
/// docs/architecture.md, "Memory bounds": about 3 MB at rest), rounded up.
const EXECUTOR_FIXED_BYTES: u64 = 4 * 1024 * 1024;
/// A TLS connection's OpenSSL state and record buffers while active, in the same bound.
const TLS_CONNECTION_BYTES: u64 = 34 * 1024;

/// The most memory these flags let the server hold: the formula of docs/architecture.md,
/// "Memory bounds" (`m + R + c * (32 KiB + 2 * (256 KiB + I) + (t - 1) * (64 KiB + I) + T) +
/// t * E`). `-k` needs a locked-memory limit at least this large.
pub(crate) fn memory_bound_bytes(config: &Config) -> u64 {
    let item = config.item_size_max as u64;
    let threads = config.threads as u64;
    let tls = if config.tls.enabled {
        TLS_CONNECTION_BYTES + config.tls.wbuf_bytes as u64
    } else {
        0
    };
    let high_water = crate::session::OUT_HIGH_WATER_BYTES as u64;
    let piece = crate::batch::REPLY_PIECE_BYTES as u64;
    let per_connection =
        32 * 1024 + 2 * (high_water + item) + threads.saturating_sub(1) * (piece + item) + tls;
    (config.memory_limit_bytes as u64)
        .saturating_add(config.read_buf_limit_bytes().unwrap_or(0) as u64)
        .saturating_add((config.max_connections as u64).saturating_mul(per_connection))
        .saturating_add(threads * EXECUTOR_FIXED_BYTES)
}

/// `-k`: every page locked into memory, now and as the server grows. With `MCL_FUTURE` an
/// allocation past the locked-memory limit fails, and a failed allocation aborts the process,
/// so the limit must hold the server's whole memory bound ([`memory_bound_bytes`]); a
/// smaller one is refused at start-up rather than met at run time. (memcached warns and goes
/// on without locking when `mlockall` fails.)
pub(crate) fn lock_memory(config: &Config) -> Result<(), ServerError> {
    // MCL_CURRENT locks what is mapped already too: the program, its libraries, the heap.
    let needed = memory_bound_bytes(config).saturating_add(mapped_bytes().unwrap_or(0));
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(ServerError::Usage(format!(
            "-k: cannot read the locked-memory limit: {}",
            std::io::Error::last_os_error()
        )));
    }
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < needed {
        return Err(ServerError::Usage(format!(
            "-k: locking memory needs a locked-memory limit (ulimit -l) of at least {} MB, the \
             server's memory bound for these flags and what is mapped now, and it is {}; raise it (LimitMEMLOCK= \
             under systemd) or leave out -k",
            needed.div_ceil(1024 * 1024),
            memlock_limit()
        )));
    }
    // SAFETY: mlockall takes flags only and touches no memory of ours.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        return Err(ServerError::Usage(format!(
            "-k: mlockall failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    log::info!(
        "-k: memory locked (bound {} MB)",
        needed.div_ceil(1024 * 1024)
    );
    Ok(())
}

/// This process's mapped memory (`/proc/self/statm`'s size, in pages).
fn mapped_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf takes a constant and touches no memory of ours.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages.saturating_mul(u64::try_from(page).ok()?))
}

/// `-r`: the core file size limit raised to its hard limit, as memcached does.
pub(crate) fn raise_core_limit() -> Result<(), ServerError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_CORE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_CORE, &limit) == 0
        }
    };
    if !raised {
        return Err(ServerError::Usage(format!(
            "-r: failed to ensure corefile creation: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}
