//! The process limits some flags set before the executors start: `-k` locks every page into
//! memory, checked against the server's memory bound first; `-r` raises the core file limit.

use crate::ServerError;
use crate::config::Config;
use crate::runtime::memlock_limit;

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
