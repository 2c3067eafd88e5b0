//! The few Linux calls the generator needs and std does not offer: CPU pinning, a timer with
//! nanosecond resolution for open-loop send times, and the thread's timer slack; and for
//! `rampart-floor`, the one OpenSSL call the `openssl` crate does not wrap.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Pins the calling thread to `cpu`.
pub(crate) fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: cpu_set_t is a plain bit array for which all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE, checked above, so CPU_SET stays inside `set`; pid 0
    // is the calling thread and `set` lives across the call with the size we pass.
    let rc = unsafe {
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to wake this thread's timers within 1 ns rather than the default 50 us,
/// so that open-loop requests leave when they are meant to.
pub(crate) fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and touches no memory of ours. A failure
    // only leaves the default slack, which costs precision, not correctness.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// A one-shot CLOCK_MONOTONIC timerfd: readable once the armed delay has passed.
#[derive(Debug)]
pub(crate) struct Timer {
    fd: OwnedFd,
}

impl Timer {
    pub(crate) fn new() -> io::Result<Timer> {
        // SAFETY: no pointers; the return value is checked before use.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: timerfd_create returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Timer { fd })
    }

    /// Fires once, `after` from now (at least 1 ns: a zero value would disarm it).
    pub(crate) fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
                // Below 10^9, so it fits any c_long.
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the fd is ours and open; `spec` is a valid itimerspec for the duration of
        // the call; a null old-value pointer is allowed.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Consumes the expiry count so that the next expiry makes the fd readable again.
    pub(crate) fn clear(&self) {
        let mut expirations = [0u8; 8];
        // SAFETY: the fd is ours and open; the buffer is 8 writable bytes, the size a timerfd
        // read needs. EAGAIN (nothing expired) is fine and ignored.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                expirations.as_mut_ptr().cast(),
                expirations.len(),
            );
        }
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

unsafe extern "C" {
    /// OpenSSL 1.1.0 and later: whether `ssl` holds any unread input, processed or not.
    fn SSL_has_pending(ssl: *const openssl_sys::SSL) -> libc::c_int;
}

/// Whether OpenSSL holds input not yet returned by a read: plaintext of a record begun, or
/// whole records pulled in by read-ahead (which `SslRef::pending` does not count).
pub(crate) fn tls_has_pending(ssl: &openssl::ssl::SslRef) -> bool {
    use foreign_types::ForeignTypeRef;
    // SAFETY: `ssl` is a live SSL object borrowed for the call; SSL_has_pending only reads it.
    unsafe { SSL_has_pending(ssl.as_ptr()) == 1 }
}
