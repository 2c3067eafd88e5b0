//! The process's signals. SIGTERM, SIGINT and SIGHUP are blocked in every thread and taken
//! synchronously (`sigwait`) by one thread of their own, `rampart-signals`, so no handler ever
//! runs on an executor: its waits in `io_uring_enter` are never interrupted, and what a signal
//! means is ordinary code on an ordinary thread. SIGPIPE is ignored: a peer that goes away
//! mid-write is an error on that write, not the process's death.
//!
//! What each signal means is the caller's ([`Signals::handle`]); the runtime only delivers.

use std::thread;

use super::RuntimeError;

/// A signal, by what it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
}

/// The blocked signals, to be taken by [`Signals::handle`].
#[derive(Debug)]
pub struct Signals(libc::sigset_t);

impl Signals {
    /// Blocks the signals in this thread and so in every thread it starts afterwards: call it
    /// before starting any.
    pub fn block() -> Result<Signals, RuntimeError> {
        // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask only reads
        // it; signal(SIGPIPE, SIG_IGN) installs no handler code.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            let err = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if err != 0 {
                return Err(RuntimeError::Signals(std::io::Error::from_raw_os_error(
                    err,
                )));
            }
            Ok(Signals(set))
        }
    }

    /// Takes the signals one at a time on a thread of its own, for the rest of the process's
    /// life, and hands each to `handle`.
    pub fn handle(
        self,
        mut handle: impl FnMut(Signal) + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let set = self.0;
        thread::Builder::new()
            .name("rampart-signals".into())
            .spawn(move || {
                loop {
                    let mut signal = 0;
                    // SAFETY: `set` is a valid, initialised signal set; `signal` is ours.
                    if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                        continue;
                    }
                    handle(if signal == libc::SIGHUP {
                        Signal::Reload
                    } else {
                        Signal::Stop
                    });
                }
            })
            .map(drop)
            .map_err(RuntimeError::Signals)
    }
}
