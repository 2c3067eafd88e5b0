//! Start-up reports: every executor tells the main thread whether it is ready to serve, and one
//! that ends without telling (glommio could not build it, so its future never ran, or it
//! panicked) tells as it goes, so the main thread never waits for a report that cannot come.

use std::sync::mpsc;

use glommio::ExecutorJoinHandle;

use crate::ServerError;
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
