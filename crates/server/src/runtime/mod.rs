//! The runtime: one glommio executor per core, each connected to every other, brought up
//! together.
//!
//! It owns what any set of rampart cores needs, whether they serve a port or run a test in
//! one process, so that both bring them up the same way:
//! - **the executors** ([`start`]): one thread per core, named `rampart-<core>`, pinned to a
//!   CPU of the process's affinity mask ([`allowed_cpus`]) or left unpinned, with the I/O
//!   memory and preemption timer a cache wants ([`IO_MEMORY_BYTES`], [`PREEMPT_TIMER`]);
//! - **the cross-core mesh**: built on the main thread, and each executor's ends connected
//!   inside it before its own code runs, so every core starts with [`Core::mesh`] ready;
//! - **the start barrier** ([`Barrier`]): every core reports once whether it can serve, and
//!   none serves until the main thread has seen them all ready and lets them
//!   ([`Started::serve`]); a core that ends without reporting (glommio could not build it, or
//!   it panicked) is reported as it goes, so the main thread never waits for a report that
//!   cannot come;
//! - **the signals** ([`signals`]): blocked in every thread, taken by one;
//! - **the latch** ([`Latch`]): a flag any thread sets and every core awaits, as the stop
//!   request is, so that no core has to look at it on a timer.
//!
//! It does not know what a core serves: listeners, TLS, credentials, stores and connections
//! are the closure's business, given to [`start`].
//!
//! Nothing wakes an executor but its own work: a timer it set, I/O it started, a peer's
//! message on the mesh (glommio's shared channels write the sleeping peer's eventfd), or a
//! task another thread woke. There is no heartbeat thread ringing executors in case one
//! sleeps through work: an executor that did would be a reactor bug, to be fixed there and
//! caught by the tests (`crates/server/tests/scheduler.rs` and `wakeups.rs`,
//! `tests/tests/wakeups.rs`), not bounded from outside. An idle core wakes only for the timers
//! its owner sets. One exception, at start-up only: until its mesh is connected an executor
//! looks every millisecond whether its peers have connected their ends, because glommio wakes
//! nobody when a peer connects (`mesh::Ends::connect`).

mod affinity;
mod barrier;
mod latch;
pub mod signals;

use std::future::Future;
use std::io;
use std::sync::mpsc;
use std::time::Duration;

use glommio::{ExecutorJoinHandle, GlommioError, LocalExecutorBuilder, Placement};

use crate::ServerError;
use crate::mesh;
use crate::shard::ShardId;

pub use self::affinity::allowed_cpus;
pub use self::barrier::Barrier;
pub(crate) use self::barrier::memlock_limit;
pub use self::latch::Latch;
pub use self::signals::{Signal, Signals};

/// Memory glommio registers for each executor's I/O buffers. Network I/O does not use it; the
/// memlock limit on small machines (8 MiB) must hold one of these per executor.
pub const IO_MEMORY_BYTES: usize = 256 * 1024;
/// How long a task may run before glommio looks for I/O and for work in other task queues
/// (its default is 100 ms): a batch from another core waits at most about this long behind
/// this core's connections.
pub const PREEMPT_TIMER: Duration = Duration::from_millis(1);

/// Where the executors run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cpus {
    /// One executor per listed CPU, pinned to it: a core's shard and connections never move.
    Pinned(Vec<usize>),
    /// This many executors, wherever the kernel puts them (tests, which share their CPUs).
    Unpinned(usize),
}

/// Why the cores could not be brought up, or one of them ended badly.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot read the CPU affinity mask: {0}")]
    Affinity(io::Error),
    #[error("cannot block signals: {0}")]
    Signals(io::Error),
    #[error("failed to start executor {core}: {source}")]
    Spawn {
        core: ShardId,
        source: GlommioError<()>,
    },
    /// It ended before reporting: glommio could not build it (its rings need locked memory,
    /// the most common refusal, so the limit is part of the message) or it panicked.
    #[error(
        "executor {core} could not start: {reason} (locked-memory limit, ulimit -l: {memlock})"
    )]
    Ended {
        core: ShardId,
        reason: String,
        memlock: String,
    },
    /// Cannot happen: every barrier reports before it drops (kept so that it would be an
    /// error, not a wait).
    #[error("an executor ended unreported")]
    Unreported,
    #[error("executor {core} failed: {source}")]
    Failed {
        core: ShardId,
        source: GlommioError<()>,
    },
}

/// What an executor is handed once its mesh is connected.
#[derive(Debug)]
pub struct Core {
    /// This executor's index, which is also its shard's id.
    pub id: ShardId,
    /// How many cores there are.
    pub cores: usize,
    /// Its connected ends of the cross-core meshes.
    pub mesh: mesh::Connected,
    /// Where it reports whether it can serve, and waits to be let serve.
    pub barrier: Barrier,
}

/// Every core has reported ready and waits at the barrier.
#[derive(Debug)]
pub struct Started {
    handles: Vec<ExecutorJoinHandle<()>>,
    go: Vec<mpsc::Sender<()>>,
}

/// Every core serves.
#[derive(Debug)]
pub struct Serving {
    handles: Vec<ExecutorJoinHandle<()>>,
}

/// Starts one executor per core and waits until every one has reported ready
/// ([`Barrier::ready`]), or for the first that cannot serve.
///
/// `main` is called on this thread once per core, with the core's id, and returns what that
/// core's executor runs: a closure given the [`Core`], whose future is the executor's life.
/// Dropping the returned [`Started`] instead of serving makes every core's
/// [`Barrier::ready`] return `false`.
pub fn start<M, F, Fut>(cpus: Cpus, mut main: M) -> Result<Started, ServerError>
where
    M: FnMut(ShardId) -> F,
    F: FnOnce(Core) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let placements: Vec<Placement> = match cpus {
        Cpus::Pinned(cpus) => cpus.into_iter().map(Placement::Fixed).collect(),
        Cpus::Unpinned(cores) => (0..cores).map(|_| Placement::Unbound).collect(),
    };
    let cores = placements.len();
    let (barriers, reports, go) = barrier::barriers(cores);
    let mut handles = Vec::with_capacity(cores);
    let each = mesh::build(cores).into_iter().zip(barriers).zip(placements);
    for (id, ((ends, barrier), placement)) in each.enumerate() {
        let run = main(id);
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("rampart-{id}"))
            .io_memory(IO_MEMORY_BYTES)
            .preempt_timer(PREEMPT_TIMER)
            .spawn(move || async move {
                let mesh = ends.connect().await;
                run(Core {
                    id,
                    cores,
                    mesh,
                    barrier,
                })
                .await;
            })
            .map_err(|source| RuntimeError::Spawn { core: id, source })?;
        handles.push(handle);
    }
    reports.wait(&mut handles)?;
    Ok(Started { handles, go })
}

impl Started {
    /// Lets every core past its barrier.
    pub fn serve(self) -> Serving {
        for go in self.go {
            // A core that has ended since it reported is joined by `Serving::join`.
            let _ = go.send(());
        }
        Serving {
            handles: self.handles,
        }
    }
}

impl Serving {
    /// Waits until every core has ended; the first one that failed is the error.
    pub fn join(self) -> Result<(), RuntimeError> {
        let mut failure = None;
        for (core, handle) in self.handles.into_iter().enumerate() {
            if let Err(source) = handle.join() {
                failure.get_or_insert(RuntimeError::Failed { core, source });
            }
        }
        failure.map_or(Ok(()), Err)
    }
}
