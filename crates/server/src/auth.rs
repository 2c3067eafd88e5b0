//! Authentication as the server runs it: the settings (`-Y`, `-S`, `MEMCACHED_SASL_PWDB`,
//! `-o sasl_plain_cleartext`, `-o auth_timeout`), the credential store loaded from them at
//! start-up, and the counters `stats` reports. The protocol side (memcached's ASCII auth,
//! binary SASL) is `session::gate`; the credential file and the mechanisms are
//! `rampart_auth`'s.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rampart_auth::{CredentialStore, ScramExchange, ScramHash, User};

use crate::versioned::Versioned;

/// How long a connection may stay unauthenticated by default.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Failed attempts one connection may make (a SCRAM exchange counts when it starts); the
/// last closes it.
pub const MAX_FAILURES: u32 = 5;
/// Requests an unauthenticated connection may make that are no authentication attempt
/// (each answered `CLIENT_ERROR unauthenticated`); the next closes it.
pub const MAX_UNAUTHENTICATED_REQUESTS: u32 = 16;
/// Before authentication a request (an ASCII auth data block, a binary packet's body) longer
/// than this closes the connection.
pub const PRE_AUTH_FRAME_BYTES: usize = 4096;
/// The SASL mechanisms offered, strongest first, as the binary list-mechanisms reply names
/// them (Cyrus SASL clients pick the strongest both sides have). `CRAM-MD5` only when some
/// entry is cleartext: it cannot be answered from a hashed one. `SCRAM-SHA-512` only by
/// [`CredentialStore::lists`]'s rule (a file with SCRAM-SHA-512 entries and no user whose
/// newest hashed entry is SCRAM-SHA-256), so that a client picking the strongest is never
/// moved off the entry it authenticates with; it is accepted whenever a client asks for it.
pub const MECHANISMS: &[u8] = b"SCRAM-SHA-256 PLAIN";
pub const MECHANISMS_WITH_CRAM_MD5: &[u8] = b"SCRAM-SHA-256 CRAM-MD5 PLAIN";
pub const MECHANISMS_WITH_SHA_512: &[u8] = b"SCRAM-SHA-512 SCRAM-SHA-256 PLAIN";
pub const MECHANISMS_WITH_SHA_512_AND_CRAM_MD5: &[u8] =
    b"SCRAM-SHA-512 SCRAM-SHA-256 CRAM-MD5 PLAIN";

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
    /// `-o auth_exempt_unix_socket`: connections on the unix socket (`-s`) need no
    /// authentication (whoever may open the socket, per `-a`, is trusted).
    pub exempt_unix_socket: bool,
    /// `-o ssl_cert_user=<rule>`: a verified client certificate names a user. With `-Y` or
    /// `-S`, a user of the store is authenticated by the certificate alone; without them, the
    /// name is what an access policy calls `user:<name>`.
    pub cert_user: Option<rampart_auth::CertUserRule>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            ascii_file: None,
            sasl: false,
            sasl_file: None,
            plain_cleartext: false,
            timeout: DEFAULT_AUTH_TIMEOUT,
            exempt_unix_socket: false,
            cert_user: None,
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
    /// Connections authenticated by a client certificate that names a user of the store
    /// (`-o ssl_cert_user`).
    pub cert_users: AtomicU64,
}

/// Authentication as configured, shared by every connection.
#[derive(Debug)]
pub struct Authenticator {
    /// The store and its generation (bumped by every reload); readers take a reference for
    /// one check, and every authenticated connection compares the generation once per turn.
    store: Versioned<CredentialStore>,
    /// The made-up SCRAM salts' key, the same across reloads.
    salt_key: [u8; 32],
    /// Where the store came from, for reloads.
    settings: AuthSettings,
    /// `-Y`: text connections authenticate with memcached's `set` form.
    pub ascii: bool,
    /// `-S`: binary connections authenticate with SASL.
    pub sasl: bool,
    pub plain_cleartext: bool,
    pub timeout: Duration,
    /// Unix-socket connections skip authentication (`-o auth_exempt_unix_socket`).
    pub exempt_unix_socket: bool,
    pub counters: AuthCounters,
}

impl Authenticator {
    /// Reads and checks the files `settings` name. `None` when no authentication is asked for.
    pub fn load(settings: &AuthSettings) -> Result<Option<Authenticator>, AuthError> {
        if !settings.enabled() {
            return Ok(None);
        }
        let mut salt_key = [0u8; 32];
        let _ = openssl::rand::rand_bytes(&mut salt_key);
        let store = read_store(settings, salt_key)?;
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
            store: Versioned::new(store),
            salt_key,
            settings: settings.clone(),
            ascii: settings.ascii_file.is_some(),
            sasl: settings.sasl,
            plain_cleartext: settings.plain_cleartext,
            timeout: settings.timeout,
            exempt_unix_socket: settings.exempt_unix_socket,
            counters: AuthCounters::default(),
        }))
    }

    /// Reads the files again (SIGHUP). A file that cannot be used changes nothing; a good one
    /// replaces the store at once, and connections whose user was removed or given other
    /// secrets must authenticate again at their next request.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let store = read_store(&self.settings, self.salt_key)?;
        let users = store.user_count();
        self.store.replace(store);
        Ok(users)
    }

    /// The store and its generation, as one consistent pair.
    fn snapshot(&self) -> (u64, Arc<CredentialStore>) {
        self.store.snapshot()
    }

    /// The store's generation: connections compare it with the one they authenticated in.
    pub fn generation(&self) -> u64 {
        self.store.generation()
    }

    /// Whether `user` still has the entries `fingerprint` describes; with the generation
    /// that answer holds for.
    pub fn still_valid(&self, user: &User, fingerprint: &[u8; 32]) -> (u64, bool) {
        let (generation, store) = self.snapshot();
        let now = store.fingerprint(user.as_str());
        (generation, now.as_ref() == Some(fingerprint))
    }

    /// A user named by a verified client certificate (`-o ssl_cert_user`), authenticated
    /// when the store has entries for it (and so revoked as a password's user is, when a
    /// reload removes or changes them); `None` when it has none.
    pub fn certificate_user(&self, user: User) -> Option<Authenticated> {
        let (generation, store) = self.snapshot();
        let done = Authenticated::in_store(&store, generation, user);
        if done.is_some() {
            self.counters.cert_users.fetch_add(1, Ordering::Relaxed);
        }
        done
    }

    /// Checks a user's password, counting the attempt.
    pub fn check(&self, user: &[u8], password: &[u8]) -> Option<Authenticated> {
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        let (generation, store) = self.snapshot();
        let found = store
            .check_password(user, password)
            .and_then(|user| Authenticated::in_store(&store, generation, user));
        if found.is_none() {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Starts a `hash` SCRAM exchange (the mechanism the client named): the exchange to keep
    /// and the server's first message.
    pub fn scram_start(
        &self,
        hash: ScramHash,
        client_first: &[u8],
    ) -> Option<(PendingScram, Vec<u8>)> {
        let mut random = [0u8; 18];
        openssl::rand::rand_bytes(&mut random).ok()?;
        let nonce = openssl::base64::encode_block(&random);
        let (generation, store) = self.snapshot();
        match store.scram_start(hash, client_first, nonce.as_bytes()) {
            Ok((exchange, server_first)) => Some((
                PendingScram {
                    generation,
                    exchange,
                },
                server_first,
            )),
            Err(err) => {
                log::debug!("SCRAM exchange refused: {err} ({hash})");
                self.count_failure();
                None
            }
        }
    }

    /// Ends a SCRAM exchange, counting the attempt: the user and the server's final
    /// message. An exchange begun before a reload fails (it used the old secrets).
    pub fn scram_finish(
        &self,
        pending: &PendingScram,
        client_final: &[u8],
    ) -> Option<(Authenticated, Vec<u8>)> {
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        let (generation, store) = self.snapshot();
        let finished = if generation == pending.generation {
            pending
                .exchange
                .finish(client_final)
                .map_err(|err| err.to_string())
        } else {
            Err("the credentials were reloaded during the exchange".to_string())
        };
        let done = finished.and_then(|(user, server_final)| {
            let done = Authenticated::in_store(&store, generation, user)
                .ok_or_else(|| "the user is gone".to_string())?;
            Ok((done, server_final))
        });
        match done {
            Ok(done) => Some(done),
            Err(err) => {
                log::debug!("SCRAM exchange failed: {err} ({})", pending.hash());
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The SASL mechanisms to list.
    pub fn mechanisms(&self) -> &'static [u8] {
        let store = self.snapshot().1;
        match (store.lists(ScramHash::Sha512), store.has_cleartext()) {
            (false, false) => MECHANISMS,
            (false, true) => MECHANISMS_WITH_CRAM_MD5,
            (true, false) => MECHANISMS_WITH_SHA_512,
            (true, true) => MECHANISMS_WITH_SHA_512_AND_CRAM_MD5,
        }
    }

    /// A CRAM-MD5 challenge (RFC 2195's form) and the generation it belongs to.
    pub fn cram_challenge(&self) -> Option<PendingCram> {
        let mut random = [0u8; 12];
        openssl::rand::rand_bytes(&mut random).ok()?;
        let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (generation, store) = self.snapshot();
        store.has_cleartext().then(|| PendingCram {
            generation,
            challenge: format!("<{token}.{now}@rampart>").into_bytes(),
        })
    }

    /// Checks a CRAM-MD5 response (`<user> <hex digest>`), counting the attempt.
    pub fn cram_finish(&self, pending: &PendingCram, response: &[u8]) -> Option<Authenticated> {
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        let (generation, store) = self.snapshot();
        let split = response.iter().rposition(|&b| b == b' ');
        let found = split
            .filter(|_| generation == pending.generation)
            .and_then(|at| {
                store.check_cram_md5(&response[..at], &pending.challenge, &response[at + 1..])
            })
            .and_then(|user| Authenticated::in_store(&store, generation, user));
        if found.is_none() {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Counts an attempt that failed before any password was checked (a malformed SASL
    /// message, an unknown mechanism).
    pub fn count_failure(&self) {
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// A successful authentication: who, and against which store generation and entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: User,
    pub generation: u64,
    pub fingerprint: [u8; 32],
}

impl Authenticated {
    /// `user`, authenticated against `store` of `generation`, with its entries' fingerprint
    /// (`None` when the user has none, which a check that just succeeded rules out).
    fn in_store(store: &CredentialStore, generation: u64, user: User) -> Option<Authenticated> {
        let fingerprint = store.fingerprint(user.as_str())?;
        Some(Authenticated {
            user,
            generation,
            fingerprint,
        })
    }
}

/// A CRAM-MD5 challenge sent, and the store generation it was sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCram {
    generation: u64,
    challenge: Vec<u8>,
}

impl PendingCram {
    pub fn challenge(&self) -> &[u8] {
        &self.challenge
    }
}

/// A SCRAM exchange between its two steps, and the store generation it began in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingScram {
    generation: u64,
    exchange: ScramExchange,
}

impl PendingScram {
    /// The mechanism the exchange is for: its step must name the same one.
    pub fn hash(&self) -> ScramHash {
        self.exchange.hash()
    }
}

/// The store `settings`' files make (the server warns about cleartext entries).
fn read_store(settings: &AuthSettings, salt_key: [u8; 32]) -> Result<CredentialStore, AuthError> {
    let mut store = CredentialStore::with_salt_key(salt_key);
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
             hashed (SCRAM) entry instead",
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
