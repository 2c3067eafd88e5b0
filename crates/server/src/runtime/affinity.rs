//! Which CPUs this process may run on, and so how many executors `-t` may ask for.
//!
//! The answer is the process's affinity mask (`sched_getaffinity`), not the machine's CPU
//! count: under a container's cpuset or `taskset` an executor pinned elsewhere would fail to
//! start, and two executors on one CPU would take turns instead of running in parallel.

use std::io;

/// The CPUs in this process's affinity mask, in increasing order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: `set` is a plain bitmask we own, zeroed before use; sched_getaffinity writes at
    // most `size_of::<cpu_set_t>()` bytes into it, and CPU_ISSET only reads it for indices
    // below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        let max = usize::try_from(libc::CPU_SETSIZE).unwrap_or(1024);
        Ok((0..max).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_thread_may_run_somewhere() {
        let cpus = allowed_cpus().expect("sched_getaffinity");
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]), "{cpus:?}");
    }
}
