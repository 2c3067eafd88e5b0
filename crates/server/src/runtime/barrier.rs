//! The start barrier: every core tells the main thread whether it is ready to serve, then waits
//! until the main thread lets them all serve. A core that ends without telling (glommio could
//! not build it, so its future never ran, or it panicked) tells as it goes, so the main thread
//! never waits for a report that cannot come.

use std::sync::mpsc;

use glommio::ExecutorJoinHandle;

use super::RuntimeError;
use crate::ServerError;
use crate::shard::ShardId;

/// What a core reports.
#[derive(Debug)]
enum Started {
    Ready,
    Failed(ServerError),
    /// It ended before reporting: the reason is in its thread's result.
    Ended,
}

/// One core's side: its report, sent exactly once (by [`Barrier::ready`] or
/// [`Barrier::failed`], or as `Ended` when dropped unsent), and the main thread's go.
#[derive(Debug)]
pub struct Barrier {
    core: ShardId,
    report: Option<mpsc::Sender<(ShardId, Started)>>,
    go: mpsc::Receiver<()>,
}

impl Barrier {
    /// Reports this core ready, then blocks its thread until the main thread lets every core
    /// serve. `false` when the start-up was given up instead (another core could not serve, or
    /// the main thread failed after the cores were ready): the core should end.
    pub fn ready(mut self) -> bool {
        self.send(Started::Ready);
        self.go.recv().is_ok()
    }

    /// Reports why this core cannot serve: the start-up fails with `err`.
    pub fn failed(mut self, err: ServerError) {
        self.send(Started::Failed(err));
    }

    fn send(&mut self, started: Started) {
        if let Some(tx) = self.report.take() {
            // The main thread only stops listening once it has given up on the start-up.
            let _ = tx.send((self.core, started));
        }
    }
}

impl Drop for Barrier {
    fn drop(&mut self) {
        self.send(Started::Ended);
    }
}

/// The main thread's side of the reports.
#[derive(Debug)]
pub(super) struct Reports {
    rx: mpsc::Receiver<(ShardId, Started)>,
    cores: usize,
}

/// A barrier for each of `cores` cores, in core order, the main thread's side of their
/// reports, and the senders that let each past.
pub(super) fn barriers(cores: usize) -> (Vec<Barrier>, Reports, Vec<mpsc::Sender<()>>) {
    let (tx, rx) = mpsc::channel();
    let (barriers, go) = (0..cores)
        .map(|core| {
            let (go_tx, go_rx) = mpsc::channel();
            let barrier = Barrier {
                core,
                report: Some(tx.clone()),
                go: go_rx,
            };
            (barrier, go_tx)
        })
        .unzip();
    (barriers, Reports { rx, cores }, go)
}

impl Reports {
    /// Waits until every core is ready, or for the first one that is not. `handles` are the
    /// cores' threads in core order: a core that ended unreported is joined for its reason
    /// (its thread is ending, so that does not wait).
    pub(super) fn wait(self, handles: &mut Vec<ExecutorJoinHandle<()>>) -> Result<(), ServerError> {
        for _ in 0..self.cores {
            // Every barrier reports before it drops and the barriers hold the only senders,
            // so the channel cannot close before the last report.
            let Ok((core, started)) = self.rx.recv() else {
                return Err(RuntimeError::Unreported.into());
            };
            match started {
                Started::Ready => {}
                Started::Failed(err) => return Err(err),
                Started::Ended => {
                    let reason = match handles.remove(core).join() {
                        Err(err) => err.to_string(),
                        Ok(()) => "it ended".to_string(),
                    };
                    return Err(RuntimeError::Ended {
                        core,
                        reason,
                        memlock: memlock_limit(),
                    }
                    .into());
                }
            }
        }
        Ok(())
    }
}

/// The soft `RLIMIT_MEMLOCK`, for messages: what glommio most often refuses on (its rings
/// need locked memory), as a number the operator can compare and raise.
pub(crate) fn memlock_limit() -> String {
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
