//! rampart-server: the running cache. glommio executors, shard routing, listeners, the
//! connection driver, stats and the validated configuration.
//!
//! This is the only crate that depends on all the others: it turns bytes from sockets into
//! [`rampart_proto`] requests, runs them on [`rampart_store`] shards through the
//! [`shard::Router`], and writes the replies. Protocol rules live in `rampart-proto`, storage
//! rules in `rampart-store`; neither is re-implemented here.
//!
//! Start-up order: refuse root without `-u`, bind, write the port file, drop privileges, then
//! serve. SIGTERM or SIGINT (or `shutdown` with `-A`) stops accepting, lets every connection
//! finish what it has read, and returns.

pub mod authz;
pub mod config;
pub mod conn;
pub mod listen;
pub mod session;
pub mod shard;
pub mod stats;
pub mod worker;

use std::os::fd::FromRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use glommio::net::{TcpListener, UnixListener};
use glommio::{LocalExecutorBuilder, Placement};
use rampart_store::StoreConfig;

use crate::authz::Identity;
pub use crate::config::Config;
use crate::listen::BoundTcp;
use crate::shard::{Router, Shard};
use crate::worker::{Process, Worker};

/// Memory glommio registers for its I/O buffers. Network I/O does not use it; the memlock
/// limit on small machines (8 MiB) must hold one of these per executor.
const IO_MEMORY_BYTES: usize = 256 * 1024;
/// How often the executor looks for a shutdown request and reclaims expired items.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);
/// Expired items examined per housekeeping turn and shard.
const RECLAIM_VISITS_PER_TURN: usize = 1000;
/// How long connections get to finish after a shutdown request before the process exits.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Why the server could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A configuration the operator must change (exit status 64, as memcached's EX_USAGE).
    #[error("{0}")]
    Usage(String),
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("failed to listen on unix socket {path}: {source}")]
    BindUnix {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to write the port file: {0}")]
    PortFile(std::io::Error),
    #[error("failed to drop privileges: {0}")]
    Privileges(std::io::Error),
    #[error("failed to start an executor: {0}")]
    Executor(String),
}

/// memcached's `-v` levels on the logger: nothing extra, then connection events, then every
/// command.
pub fn verbosity_filter(level: u32) -> log::LevelFilter {
    match level {
        0 => log::LevelFilter::Info,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// Runs the server until it is told to stop.
pub fn run(config: Config) -> Result<(), ServerError> {
    listen::check_root(&config)?;
    if config.threads > 1 {
        log::warn!(
            "-t {}: this build runs one shard on one executor; thread-per-core is not in it yet",
            config.threads
        );
    }
    let signals = signals::block()?;
    let bound = listen::bind_tcp(&config)?;
    let config = Arc::new(config);
    let process = Arc::new(Process::default());
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), ServerError>>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let listeners: Vec<(i32, std::net::SocketAddr)> =
        bound.iter().map(|b| (b.fd, b.addr)).collect();
    let executor = {
        let config = Arc::clone(&config);
        let process = Arc::clone(&process);
        LocalExecutorBuilder::new(Placement::Unbound)
            .name("rampart-0")
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || executor_main(config, process, listeners, ready_tx, go_rx))
            .map_err(|e| ServerError::Executor(e.to_string()))?
    };
    let started = ready_rx
        .recv()
        .map_err(|_| ServerError::Executor("executor exited during start-up".into()))?;
    started?;
    if let Some((path, mask)) = &config.unix_socket {
        use std::os::unix::fs::PermissionsExt;
        let permissions = std::fs::Permissions::from_mode(*mask);
        std::fs::set_permissions(path, permissions).map_err(|source| ServerError::BindUnix {
            path: path.display().to_string(),
            source,
        })?;
    }
    if let Some(path) = &config.port_file {
        listen::write_port_file(path, &bound).map_err(ServerError::PortFile)?;
    }
    announce(&config, &bound);
    if let Some(user) = &config.run_as {
        listen::drop_privileges(user)?;
    }
    let _ = go_tx.send(());
    signals::wait_in_background(signals, Arc::clone(&process));
    executor
        .join()
        .map_err(|e| ServerError::Executor(e.to_string()))?;
    log::info!("rampart stopped");
    Ok(())
}

fn announce(config: &Config, bound: &[BoundTcp]) {
    let addrs: Vec<String> = bound.iter().map(|b| b.addr.to_string()).collect();
    let unix = config
        .unix_socket
        .as_ref()
        .map(|(path, _)| format!(" unix:{}", path.display()))
        .unwrap_or_default();
    log::info!(
        "rampart {} listening on {}{unix} ({} MB, {} max connections)",
        stats::VERSION,
        if addrs.is_empty() {
            "no TCP address".to_string()
        } else {
            addrs.join(" ")
        },
        config.memory_limit_bytes / (1024 * 1024),
        config.max_connections
    );
}

async fn executor_main(
    config: Arc<Config>,
    process: Arc<Process>,
    listeners: Vec<(i32, std::net::SocketAddr)>,
    ready: mpsc::Sender<Result<(), ServerError>>,
    go: mpsc::Receiver<()>,
) {
    let unix = match &config.unix_socket {
        None => None,
        Some((path, _)) => {
            // A socket file left by an earlier run would make bind fail; memcached removes it too.
            let _ = std::fs::remove_file(path);
            match UnixListener::bind(path) {
                Ok(listener) => Some(listener),
                Err(source) => {
                    let _ = ready.send(Err(ServerError::BindUnix {
                        path: path.display().to_string(),
                        source: std::io::Error::other(source.to_string()),
                    }));
                    return;
                }
            }
        }
    };
    let _ = ready.send(Ok(()));
    if go.recv().is_err() {
        return;
    }
    let store_config = StoreConfig {
        max_bytes: config.memory_limit_bytes,
        evict: config.evict,
        cas_start: 1,
        cas_stride: 1,
        item_size_max: config.item_size_max,
    };
    let router = Router::new(vec![Rc::new(Shard::new(0, store_config))]);
    let worker = Rc::new(Worker::new(config, process, router, stats::unix_now()));
    for &(fd, addr) in &listeners {
        // SAFETY: `fd` is a listening socket bound by `listen::bind_tcp`, owned by nobody else.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        let worker = Rc::clone(&worker);
        glommio::spawn_local(async move {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        admit(stream, &worker);
                    }
                    Err(err) if worker.shutting_down() => {
                        log::debug!("listener {addr} closed: {err}");
                        break;
                    }
                    Err(err) => {
                        log::warn!("accept on {addr} failed: {err}");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        })
        .detach();
    }
    if let Some(listener) = unix {
        let worker = Rc::clone(&worker);
        glommio::spawn_local(async move {
            while let Ok(stream) = listener.accept().await {
                admit(stream, &worker);
            }
        })
        .detach();
    }
    while !worker.shutting_down() {
        glommio::timer::sleep(HOUSEKEEPING_INTERVAL).await;
        let now = stats::unix_now();
        worker.router().map_reduce(
            (),
            |store| {
                store.maintain(now, RECLAIM_VISITS_PER_TURN);
            },
            |(), ()| (),
        );
    }
    log::info!("shutting down: no new connections; finishing open ones");
    for &(fd, _) in &listeners {
        // SAFETY: shutdown(2) on a descriptor we own; it only stops the listener accepting.
        unsafe { libc::shutdown(fd, libc::SHUT_RD) };
    }
    worker.stop_reading_connections();
    let deadline = Instant::now() + DRAIN_LIMIT;
    while worker.open_connections() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts serving an accepted connection, or refuses it over the `-c` limit.
fn admit<S: conn::Transport + 'static>(stream: S, worker: &Rc<Worker>) {
    let counters = worker.process();
    if worker.shutting_down() {
        return;
    }
    let open = counters.curr_connections.fetch_add(1, Ordering::AcqRel) + 1;
    counters.total_connections.fetch_add(1, Ordering::Relaxed);
    if open > worker.config().max_connections {
        counters.curr_connections.fetch_sub(1, Ordering::AcqRel);
        counters
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        glommio::spawn_local(conn::reject_over_limit(stream)).detach();
        return;
    }
    let worker = Rc::clone(worker);
    glommio::spawn_local(async move {
        conn::serve(stream, Rc::clone(&worker), Identity::Anonymous).await;
        worker
            .process()
            .curr_connections
            .fetch_sub(1, Ordering::AcqRel);
    })
    .detach();
}

mod signals {
    //! SIGTERM and SIGINT start a graceful stop; a second one exits at once. The signals are
    //! blocked in every thread and taken synchronously by one waiting thread, so no handler
    //! runs on an executor.

    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use crate::ServerError;
    use crate::worker::Process;

    #[derive(Debug)]
    pub struct Blocked(libc::sigset_t);

    /// Blocks the stop signals in this thread and every thread it starts afterwards.
    pub fn block() -> Result<Blocked, ServerError> {
        // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask only reads it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGHUP);
            // A peer that disappears mid-write must be an error on the write, not our death.
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(ServerError::Executor("cannot block signals".into()));
            }
            Ok(Blocked(set))
        }
    }

    pub fn wait_in_background(blocked: Blocked, process: Arc<Process>) {
        let spawned = std::thread::Builder::new()
            .name("rampart-signals".into())
            .spawn(move || {
                let set = blocked.0;
                loop {
                    let mut signal = 0;
                    // SAFETY: `set` is a valid, initialised signal set; `signal` is ours.
                    if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                        continue;
                    }
                    if signal == libc::SIGHUP {
                        log::info!("SIGHUP: nothing to reload in this configuration");
                        continue;
                    }
                    if process.shutting_down.swap(true, Ordering::AcqRel) {
                        log::warn!("second stop signal: exiting now");
                        std::process::exit(0);
                    }
                }
            });
        if let Err(err) = spawned {
            log::error!("cannot start the signal thread: {err}");
        }
    }
}
