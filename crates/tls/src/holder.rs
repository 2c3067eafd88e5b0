//! The process-wide context holder: the current context, swapped whole on `refresh_certs`,
//! and the TLS counters `stats` reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use openssl::ssl::SslContext;

use crate::context::{ListenerTls, build_context};
use crate::error::{RefreshError, StartupError, TlsError};
use crate::session::TlsSession;
use crate::settings::TlsSettings;

/// Counters for `stats`, shared by every executor.
#[derive(Debug, Default)]
pub struct TlsCounters {
    pub handshake_errors: AtomicU64,
    pub proto_errors: AtomicU64,
    pub new_sessions: AtomicU64,
}

/// The current `SslContext` for new connections.
///
/// Choice: `RwLock<Arc<SslContext>>` rather than the arc-swap crate. `current()` is one
/// uncontended read-lock plus an `Arc` clone per accepted TLS connection (not per request),
/// and writers come only from `refresh_certs`/SIGHUP; a dependency is not worth that. The
/// lock is never held across anything but an `Arc` clone or assignment.
#[derive(Debug)]
pub struct ContextHolder {
    current: RwLock<Arc<SslContext>>,
    counters: Arc<TlsCounters>,
    last_refresh: Mutex<Instant>,
    session_cache: bool,
    wbuf_bytes: usize,
}

impl ContextHolder {
    /// Startup: checks the machine (kTLS) and builds the first context. The error's `Display`
    /// is the line memcached prints; exit with [`StartupError::exit_code`].
    pub fn new(settings: &TlsSettings) -> Result<Self, StartupError> {
        settings.check_environment()?;
        let counters = Arc::new(TlsCounters::default());
        let ctx = build_context(settings, &counters)?;
        Ok(ContextHolder {
            current: RwLock::new(Arc::new(ctx)),
            counters,
            last_refresh: Mutex::new(Instant::now()),
            session_cache: settings.session_cache,
            wbuf_bytes: settings.wbuf_bytes,
        })
    }

    /// The context for a connection being accepted now.
    pub fn current(&self) -> Arc<SslContext> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// `refresh_certs` / SIGHUP: builds and checks a complete new context from `settings`'
    /// files and swaps it in only on success. Open sessions keep the context they started
    /// with. `Err`'s `Display` is the reply line.
    pub fn refresh(&self, settings: &TlsSettings) -> Result<(), RefreshError> {
        let ctx = Arc::new(build_context(settings, &self.counters)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = ctx;
        *self
            .last_refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        Ok(())
    }

    /// A server session on the current context for a connection accepted on a listener.
    pub fn new_session(&self, listener: ListenerTls) -> Result<TlsSession, TlsError> {
        TlsSession::accept(
            &self.current(),
            listener,
            Arc::clone(&self.counters),
            self.wbuf_bytes,
        )
    }

    pub fn counters(&self) -> &Arc<TlsCounters> {
        &self.counters
    }

    /// Whole seconds since the last successful (re)load.
    pub fn time_since_refresh_secs(&self) -> u64 {
        self.last_refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
            .as_secs()
    }

    /// The `stats` lines, in memcached 1.6.18's order (`ssl_new_sessions` only with
    /// `ssl_session_cache`; `ssl_proto_errors` as later memcached versions have it).
    pub fn stats<F>(&self, out: &mut Vec<u8>, mut line: F)
    where
        F: FnMut(&mut Vec<u8>, &str, u64),
    {
        let c = &self.counters;
        if self.session_cache {
            line(
                out,
                "ssl_new_sessions",
                c.new_sessions.load(Ordering::Relaxed),
            );
        }
        line(
            out,
            "ssl_handshake_errors",
            c.handshake_errors.load(Ordering::Relaxed),
        );
        line(
            out,
            "ssl_proto_errors",
            c.proto_errors.load(Ordering::Relaxed),
        );
        line(
            out,
            "time_since_server_cert_refresh",
            self.time_since_refresh_secs(),
        );
    }
}
