//! The server's settings, already validated: the binary turns memcached's command line into
//! this, and everything below trusts it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use rampart_tls::{ListenerTls, TlsSettings, VerifyMode};

/// memcached's default `-I`.
pub const DEFAULT_ITEM_SIZE_MAX_BYTES: usize = 1024 * 1024;

/// Which protocols a connection may speak (`-B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolChoice {
    /// The first byte decides (memcached's `auto-negotiate`).
    Auto,
    Ascii,
    Binary,
}

impl ProtocolChoice {
    /// The name `stats settings` shows for it (`binding_protocol`).
    pub fn stats_name(self) -> &'static str {
        match self {
            ProtocolChoice::Auto => "auto-negotiate",
            ProtocolChoice::Ascii => "ascii",
            ProtocolChoice::Binary => "binary",
        }
    }
}

/// Whether a listener's connections speak TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plaintext: every listener without `-Z`, and `notls:` ones with it.
    Plain,
    /// TLS in the listener's mode (`-Z`, `mtls:`, `btls:`).
    Tls(ListenerTls),
}

/// One TCP address to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpListen {
    pub addr: SocketAddr,
    /// Part of the default loopback pair: failing to bind it is logged, not fatal, as long as
    /// the other one binds.
    pub optional: bool,
    pub security: Security,
}

/// Everything the running server needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP listeners; empty with `-p 0` or `-s`.
    pub tcp: Vec<TcpListen>,
    /// `-s`: a unix socket path, and its `-a` permission bits.
    pub unix_socket: Option<(PathBuf, u32)>,
    /// `-b`: listen backlog.
    pub backlog: u32,
    /// `-m` in bytes.
    pub memory_limit_bytes: usize,
    /// `-c`.
    pub max_connections: usize,
    /// `-t`.
    pub threads: usize,
    /// `-I` in bytes.
    pub item_size_max: usize,
    /// Not `-M`: evict instead of failing stores when memory is full.
    pub evict: bool,
    /// `-A`.
    pub shutdown_enabled: bool,
    /// Not `-F`.
    pub flush_enabled: bool,
    /// `-R`: requests handled per connection before it yields to others.
    pub requests_per_event: usize,
    /// `-B`.
    pub protocol: ProtocolChoice,
    /// `-v` count.
    pub verbosity: u32,
    /// `-o idle_timeout`: close connections idle this long; `None` never.
    pub idle_timeout: Option<Duration>,
    /// `-o read_buf_mem_limit` in bytes, for the read buffers of requests still arriving
    /// (`crate::budget`): `None` means the default, `-m`; `Some(0)` no limit.
    pub read_buf_mem_limit: Option<usize>,
    /// `MEMCACHED_PORT_FILENAME`.
    pub port_file: Option<PathBuf>,
    /// `-P`: the process id is written here once the server listens (after privileges are
    /// dropped, as memcached does), and the file is removed when it stops cleanly.
    pub pid_file: Option<PathBuf>,
    /// Not `-C`: CAS uniques are shown and compared. Without, every unique shows as 0 (the
    /// store keeps its own order for `flush_all`), a text `cas` or meta `ms C` never matches
    /// an existing item and binary stores ignore their CAS, as in memcached.
    pub cas_enabled: bool,
    /// Not `-X`: `stats cachedump` and `lru_crawler metadump` answer.
    pub dump_enabled: bool,
    /// Not `-W`: `watch` answers.
    pub watch_enabled: bool,
    /// `-k`: lock every page into memory at start-up (refused when `ulimit -l` cannot hold
    /// the server's bound).
    pub lock_memory: bool,
    /// `-r`: raise the core file size limit to its hard limit.
    pub enable_coredumps: bool,
    /// `-f`: shown in `stats settings` (`growth_factor`); rampart has one size class.
    pub growth_factor: f64,
    /// `-n`: shown in `stats settings` (`chunk_size`).
    pub chunk_size: usize,
    /// `-D` given: `stats detail` starts on.
    pub detail_enabled: bool,
    /// `-D`: the byte that ends a key's prefix for `stats detail` (default `:`).
    pub stat_key_prefix: u8,
    /// `-e`: shown in `stats settings` (`memory_file`); not used.
    pub memory_file: Option<PathBuf>,
    /// `-u`: the user to switch to after binding, when started as root.
    pub run_as: Option<String>,
    /// `-Z` and `-o ssl_*`; the files are loaded when the server starts (and on
    /// `refresh_certs`/SIGHUP), not when the command line is read.
    pub tls: TlsSettings,
    /// `-Y`, `-S`, `MEMCACHED_SASL_PWDB`, `-o sasl_plain_cleartext`, `-o auth_timeout`; the
    /// files are read when the server starts.
    pub auth: crate::auth::AuthSettings,
    /// `-o acl_file=<path>`: the access policy (read at start-up, on SIGHUP and `acl reload`).
    pub acl_file: Option<PathBuf>,
    /// `-o remote_admin`: without a policy, accept admin commands from remote clients too.
    pub remote_admin: bool,
    /// `-o audit_log`, `audit_auth_success`, `audit_connections`.
    pub audit: crate::audit::AuditSettings,
}

impl Config {
    /// The read budget's limit in bytes, `None` for none: `-o read_buf_mem_limit`, else
    /// `-m`.
    pub fn read_buf_limit_bytes(&self) -> Option<usize> {
        match self.read_buf_mem_limit {
            None => Some(self.memory_limit_bytes),
            Some(0) => None,
            Some(bytes) => Some(bytes),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tcp: Vec::new(),
            unix_socket: None,
            backlog: 1024,
            memory_limit_bytes: 64 * 1024 * 1024,
            max_connections: 1024,
            threads: 1,
            item_size_max: DEFAULT_ITEM_SIZE_MAX_BYTES,
            evict: true,
            shutdown_enabled: false,
            flush_enabled: true,
            requests_per_event: 20,
            protocol: ProtocolChoice::Auto,
            verbosity: 0,
            idle_timeout: None,
            read_buf_mem_limit: None,
            port_file: None,
            pid_file: None,
            cas_enabled: true,
            dump_enabled: true,
            watch_enabled: true,
            lock_memory: false,
            enable_coredumps: false,
            growth_factor: 1.25,
            chunk_size: 48,
            detail_enabled: false,
            stat_key_prefix: b':',
            memory_file: None,
            run_as: None,
            tls: TlsSettings::default(),
            auth: crate::auth::AuthSettings::default(),
            acl_file: None,
            remote_admin: false,
            audit: crate::audit::AuditSettings::default(),
        }
    }
}
