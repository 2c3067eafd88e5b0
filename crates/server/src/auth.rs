//! Authentication as the server runs it: the settings (`-Y`, `-S`, `MEMCACHED_SASL_PWDB`,
//! `-o sasl_plain_cleartext`, `-o auth_timeout`), the credential store loaded from them at
//! start-up, and the counters `stats` reports. The protocol side (memcached's ASCII auth,
//! binary SASL) is `session::gate`; the credential file and the mechanisms are
//! `rampart_auth`'s.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rampart_auth::{CredentialStore, ScramExchange, User};

/// How long a connection may stay unauthenticated by default.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Failed attempts one connection may make; the next closes it.
pub const MAX_FAILURES: u32 = 5;
/// Before authentication a request (an ASCII auth data block, a binary packet's body) longer
/// than this closes the connection.
pub const PRE_AUTH_FRAME_BYTES: usize = 4096;
/// The SASL mechanisms offered, strongest first, as the binary list-mechanisms reply names
/// them (Cyrus SASL clients pick the strongest both sides have).
pub const MECHANISMS: &[u8] = b"SCRAM-SHA-256 PLAIN";

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// `-Y <file>`: memcached's ASCII authentication on text connections.
    pub ascii_file: Option<PathBuf>,
    /// `-S`: SASL on binary connections.
    pub sasl: bool,
    /// `MEMCACHED_SASL_PWDB`: SASL's password file (memcached's format). Without it, `-S`
    /// uses `-Y`'s file.
    pub sasl_file: Option<PathBuf>,
    /// `-o sasl_plain_cleartext`: allow SASL PLAIN on plaintext TCP connections.
    pub plain_cleartext: bool,
    /// `-o auth_timeout=<seconds>`.
    pub timeout: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            ascii_file: None,
            sasl: false,
            sasl_file: None,
            plain_cleartext: false,
            timeout: DEFAULT_AUTH_TIMEOUT,
        }
    }
}

impl AuthSettings {
    pub fn enabled(&self) -> bool {
        self.ascii_file.is_some() || self.sasl
    }
}

/// Why authentication cannot be set up: the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("-S needs a password file: set MEMCACHED_SASL_PWDB or give -Y <file>")]
    NoSaslFile,
    #[error("{path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{path}: readable or writable by other users (mode {mode:o}); chmod o-rwx it")]
    Permissions { path: String, mode: u32 },
    #[error("{path}: {err}")]
    Malformed {
        path: String,
        err: rampart_auth::FileError,
    },
}

/// Process-wide authentication counters.
#[derive(Debug, Default)]
pub struct AuthCounters {
    /// memcached's `auth_cmds`: authentication attempts.
    pub attempts: AtomicU64,
    /// memcached's `auth_errors`: failed ones.
    pub failures: AtomicU64,
    /// Connections closed for staying unauthenticated past `auth_timeout`.
    pub timeouts: AtomicU64,
    /// Connections closed after [`MAX_FAILURES`] failed attempts.
    pub lockouts: AtomicU64,
}

/// Authentication as configured, shared by every connection.
#[derive(Debug)]
pub struct Authenticator {
    /// Replaced whole by a reload; readers take a reference for one check.
    store: RwLock<Arc<CredentialStore>>,
    /// Bumped by every reload that changed the store, so a connection notices it with one
    /// load per turn.
    generation: AtomicU64,
    /// Where the store came from, for reloads.
    settings: AuthSettings,
    /// `-Y`: text connections authenticate with memcached's `set` form.
    pub ascii: bool,
    /// `-S`: binary connections authenticate with SASL.
    pub sasl: bool,
    pub plain_cleartext: bool,
    pub timeout: Duration,
    pub counters: AuthCounters,
}

impl Authenticator {
    /// Reads and checks the files `settings` name. `None` when no authentication is asked for.
    pub fn load(settings: &AuthSettings) -> Result<Option<Authenticator>, AuthError> {
        if !settings.enabled() {
            return Ok(None);
        }
        let store = read_store(settings)?;
        log::info!(
            "authentication required: {} user(s){}{}",
            store.user_count(),
            if settings.ascii_file.is_some() {
                ", ASCII auth"
            } else {
                ""
            },
            if settings.sasl { ", SASL" } else { "" }
        );
        Ok(Some(Authenticator {
            store: RwLock::new(Arc::new(store)),
            generation: AtomicU64::new(0),
            settings: settings.clone(),
            ascii: settings.ascii_file.is_some(),
            sasl: settings.sasl,
            plain_cleartext: settings.plain_cleartext,
            timeout: settings.timeout,
            counters: AuthCounters::default(),
        }))
    }

    /// Reads the files again (SIGHUP). A file that cannot be used changes nothing; a good one
    /// replaces the store at once, and connections whose user was removed or given other
    /// secrets must authenticate again at their next request.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let store = read_store(&self.settings)?;
        let users = store.user_count();
        *self
            .store
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(store);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(users)
    }

    /// The store's generation: connections compare it with the one they authenticated in.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn current(&self) -> Arc<CredentialStore> {
        Arc::clone(
            &self
                .store
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// What `user`'s entries are now (`None`: the user is gone).
    pub fn fingerprint(&self, user: &User) -> Option<[u8; 32]> {
        self.current().fingerprint(user.as_str())
    }

    /// An authenticator over `store` (tests).
    pub fn with_store(store: CredentialStore, ascii: bool, sasl: bool) -> Authenticator {
        Authenticator {
            store: RwLock::new(Arc::new(store)),
            generation: AtomicU64::new(0),
            settings: AuthSettings::default(),
            ascii,
            sasl,
            plain_cleartext: true,
            timeout: DEFAULT_AUTH_TIMEOUT,
            counters: AuthCounters::default(),
        }
    }

    /// Checks a user's password, counting the attempt.
    pub fn check(&self, user: &[u8], password: &[u8]) -> Option<User> {
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        let found = self.current().check_password(user, password);
        if found.is_none() {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Starts a SCRAM-SHA-256 exchange: the exchange to keep and the server's first message.
    pub fn scram_start(&self, client_first: &[u8]) -> Option<(ScramExchange, Vec<u8>)> {
        let mut random = [0u8; 18];
        openssl::rand::rand_bytes(&mut random).ok()?;
        let nonce = openssl::base64::encode_block(&random);
        match self.current().scram_start(client_first, nonce.as_bytes()) {
            Ok(started) => Some(started),
            Err(err) => {
                log::debug!("SCRAM exchange refused: {err}");
                self.count_failure();
                None
            }
        }
    }

    /// Ends a SCRAM-SHA-256 exchange, counting the attempt: the user and the server's final
    /// message.
    pub fn scram_finish(
        &self,
        exchange: &ScramExchange,
        client_final: &[u8],
    ) -> Option<(User, Vec<u8>)> {
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        match exchange.finish(client_final) {
            Ok(done) => Some(done),
            Err(err) => {
                log::debug!("SCRAM exchange failed: {err}");
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Counts an attempt that failed before any password was checked (a malformed SASL
    /// message, an unknown mechanism).
    pub fn count_failure(&self) {
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// The store `settings`' files make (the server warns about cleartext entries).
fn read_store(settings: &AuthSettings) -> Result<CredentialStore, AuthError> {
    let mut store = CredentialStore::empty();
    let mut files: Vec<&Path> = Vec::new();
    if let Some(path) = &settings.ascii_file {
        files.push(path);
    }
    if settings.sasl {
        match (&settings.sasl_file, &settings.ascii_file) {
            (Some(path), _) => {
                if settings.ascii_file.as_deref() != Some(path.as_path()) {
                    files.push(path);
                }
            }
            (None, Some(_)) => {}
            (None, None) => return Err(AuthError::NoSaslFile),
        }
    }
    for path in files {
        let text = read_private(path)?;
        store.add_text(&text).map_err(|err| AuthError::Malformed {
            path: path.display().to_string(),
            err,
        })?;
    }
    if store.cleartext_entries() > 0 {
        log::warn!(
            "{} credential entr{} stored in cleartext; `rampart passwd <user>` writes a \
             hashed (SCRAM-SHA-256) entry instead",
            store.cleartext_entries(),
            if store.cleartext_entries() == 1 {
                "y is"
            } else {
                "ies are"
            }
        );
    }
    Ok(store)
}

/// A credential file's text, refused when other users may read or write it.
fn read_private(path: &Path) -> Result<String, AuthError> {
    let shown = || path.display().to_string();
    let metadata = std::fs::metadata(path).map_err(|err| AuthError::Read { path: shown(), err })?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(AuthError::Permissions {
            path: shown(),
            mode,
        });
    }
    std::fs::read_to_string(path).map_err(|err| AuthError::Read { path: shown(), err })
}
