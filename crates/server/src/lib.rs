//! rampart-server: the running cache. glommio executors, shard routing, listeners, the
//! connection driver, stats and the validated configuration.
//!
//! This is the only crate that depends on all the others: it turns bytes from sockets into
//! [`rampart_proto`] requests, runs them on [`rampart_store`] shards through the
//! [`shard::Router`], and writes the replies. Protocol rules live in `rampart-proto`, storage
//! rules in `rampart-store`; neither is re-implemented here.
//!
//! Start-up order: refuse root without `-u`, bind, start the executors ([`runtime`]) and wait
//! until each is ready, drop privileges, write the port file, then serve. SIGTERM or SIGINT (or
//! `shutdown` with `-A`) stops accepting, lets every connection finish what it has read, and
//! returns.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod batch;
pub mod budget;
pub mod call;
pub mod config;
pub mod conn;
pub mod conns;
pub mod listen;
pub mod mesh;
pub mod output;
pub mod runtime;
pub mod session;
pub mod shard;
mod startup;
pub mod stats;
pub mod versioned;
pub mod watch;
pub mod worker;

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use glommio::net::{TcpListener, UnixListener};
use rampart_store::StoreConfig;

pub use crate::config::Config;
use crate::config::Security;
use crate::listen::BoundTcp;
use crate::runtime::{Core, Cpus, RuntimeError, Signal, Signals};
use crate::shard::{Shard, memory_share};
use crate::worker::{Process, Tls, Worker};

/// How often an executor with items reclaims expired ones.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);
/// How often an executor without items does: its only wake-up while the server is idle
/// (tests/tests/wakeups.rs counts them). A stop request wakes it at once.
const IDLE_HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// Expired items examined per housekeeping turn.
const RECLAIM_VISITS_PER_TURN: usize = 1000;
/// How long connections get to finish after a shutdown request before the process exits.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// How long an executor that has drained its own connections keeps serving its shard for the
/// others, at most, after the shutdown began.
const PEER_DRAIN_LIMIT: Duration = Duration::from_secs(6);

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
    #[error("could not write the pid file {path}: {source}")]
    PidFile {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to drop privileges: {0}")]
    Privileges(std::io::Error),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The store settings the flags made cannot be used (a bug: the flags are checked first).
    #[error("invalid store settings: {0}")]
    Store(#[from] rampart_store::ConfigError),
    /// TLS could not be set up from the configured files (memcached's line; exit status 64).
    #[error("{0}")]
    Tls(#[from] rampart_tls::StartupError),
    /// A credential file that cannot be used (exit status 64).
    #[error("{0}")]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Access(#[from] authz::AccessError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
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
    run_with(config, || {})
}

/// [`run`], calling `on_ready` once every listener accepts, privileges are dropped and the
/// port and pid files are written: the point at which a daemonizing parent may exit.
pub fn run_with(config: Config, on_ready: impl FnOnce()) -> Result<(), ServerError> {
    listen::check_root(&config)?;
    let cpus = runtime::allowed_cpus().map_err(RuntimeError::Affinity)?;
    let executors = config.threads;
    if executors == 0 || executors > cpus.len() {
        return Err(ServerError::Usage(too_many_threads(executors, cpus.len())));
    }
    if config.enable_coredumps {
        startup::raise_core_limit()?;
    }
    if config.lock_memory {
        startup::lock_memory(&config)?;
    }
    let signals = Signals::block()?;
    // Certificates are loaded before anything listens, so a bad file stops the start-up.
    let tls = if config.tls.enabled {
        Some(Tls {
            holder: rampart_tls::ContextHolder::new(&config.tls)?,
            settings: config.tls.clone(),
        })
    } else {
        None
    };
    // Credential files too: a missing, exposed or malformed one stops the start-up.
    let auth = auth::Authenticator::load(&config.auth)?;
    // The audit trail, opened before privileges are dropped.
    let audit = audit::Audit::start(&config.audit, executors)?;
    // And the access policy: a file with a mistake in it stops the start-up, naming the line.
    let access = config
        .acl_file
        .as_deref()
        .map(authz::Access::load)
        .transpose()?;
    let bound = listen::bind_tcp(&config, executors)?;
    let config = Arc::new(config);
    let process = Arc::new(
        Process::with_tls(executors, tls)
            .with_read_budget(config.read_buf_limit_bytes())
            .with_auth(auth)
            .with_access(access, config.remote_admin)
            .with_audit(audit),
    );
    process
        .tunables
        .detail_enabled
        .store(config.detail_enabled, std::sync::atomic::Ordering::Relaxed);
    let started_at = stats::unix_now();
    for socket in &bound {
        for &fd in &socket.fds {
            process
                .conns
                .insert_listener(fd, conns::tcp_addr(socket.addr), started_at);
        }
    }
    let serve = Serve {
        config: Arc::clone(&config),
        process: Arc::clone(&process),
        listeners: Arc::new(
            (0..executors)
                .map(|core| {
                    bound
                        .iter()
                        .map(|b| Listener {
                            fd: b.fds[core],
                            addr: b.addr,
                            security: b.security,
                        })
                        .collect()
                })
                .collect(),
        ),
    };
    let started = runtime::start(Cpus::Pinned(cpus[..executors].to_vec()), |_| {
        let serve = serve.clone();
        move |core| executor_main(serve, core)
    })?;
    if let Some((path, mask)) = &config.unix_socket {
        use std::os::unix::fs::PermissionsExt;
        let permissions = std::fs::Permissions::from_mode(*mask);
        std::fs::set_permissions(path, permissions).map_err(|source| ServerError::BindUnix {
            path: path.display().to_string(),
            source,
        })?;
    }
    if let Some(user) = &config.run_as {
        listen::drop_privileges(user)?;
    }
    // Written after privileges are dropped, as memcached does, so that a reader who sees the
    // file knows the server listens and no longer runs as root.
    if let Some(path) = &config.port_file {
        listen::write_port_file(path, &bound).map_err(ServerError::PortFile)?;
    }
    if let Some(path) = &config.pid_file {
        listen::write_pid_file(path).map_err(|source| ServerError::PidFile {
            path: path.display().to_string(),
            source,
        })?;
    }
    announce(&config, &bound, &cpus[..executors]);
    on_ready();
    let serving = started.serve();
    let signalled = Arc::clone(&process);
    if let Err(err) = signals.handle(move |signal| on_signal(&signalled, signal)) {
        log::error!("{err}: signals stay blocked");
    }
    let failure = serving.join().err();
    // What the executors recorded last (a `shutdown`, the connections' closing) is written
    // before the process ends.
    if let Some(audit) = &process.audit {
        audit.finish();
    }
    if let Some(path) = &config.pid_file {
        listen::remove_pid_file(path);
    }
    if let Some(err) = failure {
        return Err(err.into());
    }
    log::info!("rampart stopped");
    Ok(())
}

/// The refusal of a `-t` the affinity mask cannot give distinct CPUs to.
pub fn too_many_threads(threads: usize, cpus: usize) -> String {
    format!(
        "-t {threads}: this process may run on {cpus} CPU{} (its affinity mask), and each \
         thread needs its own; use -t {cpus} or fewer",
        if cpus == 1 { "" } else { "s" }
    )
}

fn announce(config: &Config, bound: &[BoundTcp], cpus: &[usize]) {
    let addrs: Vec<String> = bound
        .iter()
        .map(|b| match b.security {
            Security::Plain => b.addr.to_string(),
            Security::Tls(rampart_tls::ListenerTls::Default) => format!("{} (TLS)", b.addr),
            Security::Tls(rampart_tls::ListenerTls::Mtls) => format!("{} (mTLS)", b.addr),
            Security::Tls(rampart_tls::ListenerTls::Btls) => {
                format!("{} (TLS, no client certificates)", b.addr)
            }
            Security::Tls(rampart_tls::ListenerTls::Psk) => {
                format!("{} (TLS, pre-shared keys only)", b.addr)
            }
        })
        .collect();
    let unix = config
        .unix_socket
        .as_ref()
        .map(|(path, _)| format!(" unix:{}", path.display()))
        .unwrap_or_default();
    let cpus: Vec<String> = cpus.iter().map(usize::to_string).collect();
    log::info!(
        "rampart {} listening on {}{unix} ({} MB, {} max connections, {} threads on CPUs {})",
        stats::VERSION,
        if addrs.is_empty() {
            "no TCP address".to_string()
        } else {
            addrs.join(" ")
        },
        config.memory_limit_bytes / (1024 * 1024),
        config.max_connections,
        cpus.len(),
        cpus.join(",")
    );
}

/// One executor's listening socket for one configured address.
#[derive(Debug, Clone, Copy)]
struct Listener {
    fd: RawFd,
    addr: SocketAddr,
    security: Security,
}

/// What every executor is handed by the main thread.
#[derive(Clone)]
struct Serve {
    config: Arc<Config>,
    process: Arc<Process>,
    /// Each core's own listening socket for each configured address, by core.
    listeners: Arc<Vec<Vec<Listener>>>,
}

async fn executor_main(serve: Serve, core: Core) {
    let Serve {
        config,
        process,
        listeners,
    } = serve;
    let Core {
        id: core,
        cores,
        mesh,
        barrier,
    } = core;
    // One list per core, for as many cores as the runtime starts.
    let listeners = listeners[core].clone();
    // glommio's unix listener cannot be made from a descriptor, so the first executor binds
    // it, before the main thread drops privileges; its connections are served on that core.
    let unix = match &config.unix_socket {
        Some((path, _)) if core == 0 => {
            // A socket file left by an earlier run would make bind fail; memcached removes it too.
            let _ = std::fs::remove_file(path);
            match UnixListener::bind(path) {
                Ok(listener) => {
                    use std::os::fd::AsRawFd;
                    process.conns.insert_listener(
                        listener.as_raw_fd(),
                        format!("unix:{}", path.display()),
                        stats::unix_now(),
                    );
                    Some(listener)
                }
                Err(source) => {
                    barrier.failed(ServerError::BindUnix {
                        path: path.display().to_string(),
                        source: std::io::Error::other(source.to_string()),
                    });
                    return;
                }
            }
        }
        _ => None,
    };
    let store_config = StoreConfig {
        max_bytes: memory_share(config.memory_limit_bytes, cores, core),
        evict: config.evict,
        cas_start: core as u64 + 1,
        cas_stride: cores as u64,
        item_size_max: config.item_size_max,
        cas_enabled: config.cas_enabled,
    };
    if let Err(err) = store_config.validate() {
        barrier.failed(err.into());
        return;
    }
    let mut store = rampart_store::Store::new(store_config);
    // `-D`: `stats detail` counts from the start, on this delimiter.
    let prefixes = store.prefix_stats_mut();
    prefixes.delimiter = config.stat_key_prefix;
    prefixes.enabled = config.detail_enabled;
    let logged = Arc::clone(&process);
    store.on_evict(Box::new(move |evicted| {
        watch::log_eviction(&logged.watchers, evicted)
    }));
    let (router, services) = mesh.into_router(Rc::new(Shard::with_store(core, store)));
    let worker = Rc::new(Worker::new(config, process, router, stats::unix_now()));
    mesh::spawn_services(&worker, services);
    if !barrier.ready() {
        return;
    }
    for &Listener { fd, addr, security } in &listeners {
        // SAFETY: `fd` is a listening socket bound by `listen::bind_tcp` for this executor
        // alone, owned by nobody else.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        let worker = Rc::clone(&worker);
        glommio::spawn_local(async move {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        admit(stream, &worker, security);
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
            // Unix sockets stay plaintext, as in memcached.
            while let Ok(stream) = listener.accept().await {
                admit(stream, &worker, Security::Plain);
            }
        })
        .detach();
    }
    let stop = &worker.process_state().shutting_down;
    loop {
        let turn = glommio::timer::sleep(housekeeping_interval(&worker));
        futures_lite::future::or(turn, stop.wait()).await;
        if worker.shutting_down() {
            break;
        }
        let now = stats::unix_now();
        worker.router().invoke_local(|store| {
            store.maintain(now, RECLAIM_VISITS_PER_TURN);
        });
    }
    drain(&worker, &listeners).await;
}

/// How long housekeeping sleeps until its next turn: [`HOUSEKEEPING_INTERVAL`] while the
/// executor has items (their expiry) to look after, [`IDLE_HOUSEKEEPING_INTERVAL`]
/// otherwise. Connections need no housekeeping: one that waits holds no buffer.
fn housekeeping_interval(worker: &Worker) -> Duration {
    let idle = worker.router().invoke_local(|store| store.is_empty());
    if idle {
        IDLE_HOUSEKEEPING_INTERVAL
    } else {
        HOUSEKEEPING_INTERVAL
    }
}

/// Shutdown: stop accepting, let this core's connections answer what they have read, then
/// keep serving this core's shard until every core has done the same (their connections may
/// still be waiting on it), so no request in flight between cores is lost.
async fn drain(worker: &Worker, listeners: &[Listener]) {
    let began = Instant::now();
    log::info!("shutting down: no new connections; finishing open ones");
    for listener in listeners {
        // SAFETY: shutdown(2) on a descriptor we own; it only stops the listener accepting.
        unsafe { libc::shutdown(listener.fd, libc::SHUT_RD) };
    }
    worker.stop_reading_connections();
    while worker.open_connections() > 0 && began.elapsed() < DRAIN_LIMIT {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    if worker.open_connections() > 0 {
        log::warn!(
            "{} connections still open after {DRAIN_LIMIT:?}: closing them",
            worker.open_connections()
        );
    }
    let draining = &worker.process_state().draining;
    draining.fetch_sub(1, Ordering::AcqRel);
    while draining.load(Ordering::Acquire) > 0 && began.elapsed() < PEER_DRAIN_LIMIT {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts serving an accepted connection, or refuses it over the `-c` limit.
fn admit<S: conn::Transport + 'static>(stream: S, worker: &Rc<Worker>, security: Security) {
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
        conn::serve(stream, Rc::clone(&worker), security).await;
        worker
            .process()
            .curr_connections
            .fetch_sub(1, Ordering::AcqRel);
    })
    .detach();
}

/// What a signal means to the server: SIGTERM or SIGINT starts a graceful stop and a second
/// one exits at once; SIGHUP reopens the audit log and reloads the TLS certificates, the
/// credential files and the access policy, each of which logs its outcome.
fn on_signal(process: &Process, signal: Signal) {
    match signal {
        Signal::Stop => {
            if !process.shutting_down.set() {
                log::warn!("second stop signal: exiting now");
                std::process::exit(0);
            }
        }
        Signal::Reload => reload(process),
    }
}

fn reload(process: &Process) {
    // The audit log is reopened (rotation) first: what the reloads below record goes to the
    // new file.
    if let Some(audit) = &process.audit {
        audit.reopen();
    }
    // memcached reloads its certificates on SIGHUP; the outcome is logged.
    if process.tls.is_some() {
        let _ = process.refresh_certs();
    }
    // The credential files too: a bad one changes nothing.
    let _ = process.reload_credentials("SIGHUP");
    // And the access policy: a bad file changes nothing.
    if process.access.is_some() {
        let _ = process.reload_access("SIGHUP");
    }
    if process.tls.is_none()
        && process.auth.is_none()
        && process.access.is_none()
        && process.audit.is_none()
    {
        log::info!("SIGHUP: nothing to reload without TLS, credentials, a policy or an audit log");
    }
}
