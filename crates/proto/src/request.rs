//! The logical requests, shared by every wire encoding.
//!
//! A request borrows from the connection's read buffer: keys and data blocks are slices of the
//! bytes that arrived, never copies. The text codec builds the classic commands; the meta
//! commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`) are single-key requests with options, and the
//! binary protocol is encoded onto the same meta requests (a binary `getk` is an `mg` that
//! returns the flags, the value and the key), so the server runs one logical request whatever
//! the encoding and only the reply encoder differs.

mod acl;
mod admin;
mod auth;
mod meta;
mod meta_arith;
mod meta_delete;
mod meta_get;
mod meta_set;
mod sasl;

pub use acl::Acl;
pub use admin::{Admin, AdminCommand, LruCrawler, Slabs, Watch};
pub use auth::AuthCommand;
pub use meta::{MAX_META_FLAGS, MAX_OPAQUE_BYTES, MetaFlags, MetaKey};
pub use meta_arith::MetaArith;
pub use meta_delete::{MetaDebug, MetaDelete};
pub use meta_get::MetaGet;
pub use meta_set::{MetaSet, MetaSetMode};
pub use sasl::Sasl;

/// Longest key memcached accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 250;

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// `get`, `gets`, `gat`, `gats`.
    Get(Get<'a>),
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`.
    Store(Store<'a>),
    /// `incr`, `decr`.
    Arith(Arith<'a>),
    /// `delete`.
    Delete(Delete<'a>),
    /// `touch`.
    Touch(Touch<'a>),
    /// `flush_all [delay] [noreply]`.
    FlushAll(FlushAll),
    /// `version`.
    Version,
    /// `verbosity <level> [noreply]`.
    Verbosity(Verbosity),
    /// `quit`: close after what is already answered has been written.
    Quit,
    /// `shutdown [graceful]`.
    Shutdown(ShutdownMode),
    /// `stats [group]`.
    Stats(Stats<'a>),
    /// `cache_memlimit <megabytes> [noreply]`.
    CacheMemlimit(CacheMemlimit),
    /// `refresh_certs [noreply]`: reload the TLS certificates (memcached ignores other words).
    RefreshCerts { noreply: bool },
    /// `mg`; binary get, getq, getk, getkq, touch, gat, gatq, gatk, gatkq.
    MetaGet(MetaGet<'a>),
    /// `ms`; binary set, add, replace, append, prepend and their quiet forms.
    MetaSet(MetaSet<'a>),
    /// `md`; binary delete, deleteq.
    MetaDelete(MetaDelete<'a>),
    /// `ma`; binary increment, decrement and their quiet forms.
    MetaArith(MetaArith<'a>),
    /// `mn`; binary noop. Answered `MN` (binary: an empty success) once everything before it is.
    MetaNoop,
    /// `me <key> [b]`.
    MetaDebug(MetaDebug<'a>),
    /// Binary SASL list/auth/step.
    Sasl(Sasl<'a>),
    /// `acl reload|log|check`: rampart's policy commands.
    Acl(Acl<'a>),
    /// `auth reload`: rampart's credential command.
    Auth(AuthCommand),
    /// `lru_crawler`, `lru`, `slabs`, `watch`.
    Admin(Admin<'a>),
}

impl Request<'_> {
    /// A classic text command's `noreply`: its errors are not answered either. Meta requests'
    /// `q` never hides an error, so they are never `noreply` here.
    pub fn noreply(&self) -> bool {
        match self {
            Request::Store(Store { noreply, .. })
            | Request::Arith(Arith { noreply, .. })
            | Request::Delete(Delete { noreply, .. })
            | Request::Touch(Touch { noreply, .. })
            | Request::FlushAll(FlushAll { noreply, .. })
            | Request::Verbosity(Verbosity { noreply, .. })
            | Request::CacheMemlimit(CacheMemlimit { noreply, .. })
            | Request::RefreshCerts { noreply } => *noreply,
            Request::Get(_)
            | Request::Version
            | Request::Quit
            | Request::Shutdown(_)
            | Request::Stats(_)
            | Request::MetaGet(_)
            | Request::MetaSet(_)
            | Request::MetaDelete(_)
            | Request::MetaArith(_)
            | Request::MetaNoop
            | Request::MetaDebug(_)
            | Request::Sasl(_)
            | Request::Acl(_)
            | Request::Auth(_)
            | Request::Admin(_) => false,
        }
    }

    /// The command's name as an operator would write it in a rule or a log line.
    pub fn command_name(&self) -> &'static str {
        match self {
            Request::Get(g) => match (g.touch.is_some(), g.cas) {
                (false, false) => "get",
                (false, true) => "gets",
                (true, false) => "gat",
                (true, true) => "gats",
            },
            Request::Store(s) => s.mode.command_name(),
            Request::Arith(a) => {
                if a.incr {
                    "incr"
                } else {
                    "decr"
                }
            }
            Request::Delete(_) => "delete",
            Request::Touch(_) => "touch",
            Request::FlushAll(_) => "flush_all",
            Request::Version => "version",
            Request::Verbosity(_) => "verbosity",
            Request::Quit => "quit",
            Request::Shutdown(_) => "shutdown",
            Request::Stats(_) => "stats",
            Request::CacheMemlimit(_) => "cache_memlimit",
            Request::RefreshCerts { .. } => "refresh_certs",
            Request::MetaGet(_) => "mg",
            Request::MetaSet(_) => "ms",
            Request::MetaDelete(_) => "md",
            Request::MetaArith(_) => "ma",
            Request::MetaNoop => "mn",
            Request::MetaDebug(_) => "me",
            Request::Sasl(Sasl::ListMechanisms) => "sasl_list_mechs",
            Request::Sasl(Sasl::Auth { .. }) => "sasl_auth",
            Request::Sasl(Sasl::Step { .. }) => "sasl_step",
            Request::Acl(_) => "acl",
            Request::Auth(_) => "auth",
            Request::Admin(admin) => match admin.command {
                AdminCommand::LruCrawler(_) => "lru_crawler",
                AdminCommand::Lru { .. } => "lru",
                AdminCommand::Slabs(_) => "slabs",
                AdminCommand::Watch(_) => "watch",
            },
        }
    }
}

/// A retrieval of one or more keys, optionally touching them (`gat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get<'a> {
    /// The keys, in the client's order; each is at most [`MAX_KEY_BYTES`].
    pub keys: Keys<'a>,
    /// Return CAS uniques (`gets`, `gats`).
    pub cas: bool,
    /// New expiration time for `gat`/`gats`, in memcached's exptime form.
    pub touch: Option<i64>,
}

/// The keys of a multi-key request: a slice of the request line, split lazily on spaces so that
/// a thousand-key `get` costs no allocation. The parser hands a request of one key over as
/// that key alone, so the most common `get` is never scanned for spaces again.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    raw: &'a [u8],
    /// `raw` is exactly one key.
    single: bool,
}

impl<'a> Keys<'a> {
    /// Keys separated by one or more spaces. The caller has checked every key's length.
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Keys { raw, single: false }
    }

    /// Exactly one key (no spaces in it).
    pub(crate) fn one(key: &'a [u8]) -> Self {
        Keys {
            raw: key,
            single: true,
        }
    }

    /// Iterates over the keys in order.
    #[inline]
    pub fn iter(&self) -> KeysIter<'a> {
        KeysIter {
            rest: self.raw,
            single: self.single,
        }
    }
}

/// The same keys, however they were split.
impl PartialEq for Keys<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Keys<'_> {}

impl std::fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|k| String::from_utf8_lossy(k)))
            .finish()
    }
}

impl<'a> IntoIterator for Keys<'a> {
    type Item = &'a [u8];
    type IntoIter = KeysIter<'a>;

    fn into_iter(self) -> KeysIter<'a> {
        self.iter()
    }
}

/// Below this many bytes a key's end is found by a plain scan.
const SHORT_SCAN_BYTES: usize = 32;

/// Iterator over [`Keys`].
#[derive(Debug, Clone)]
pub struct KeysIter<'a> {
    rest: &'a [u8],
    single: bool,
}

impl<'a> Iterator for KeysIter<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.single {
            self.single = false;
            return Some(std::mem::take(&mut self.rest));
        }
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let rest = &self.rest[start..];
        // Most keys are short: a plain scan beats memchr's setup below a few words.
        let end = if rest.len() <= SHORT_SCAN_BYTES {
            rest.iter().position(|&b| b == b' ')
        } else {
            memchr::memchr(b' ', rest)
        }
        .unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }
}

/// How a storage command treats an existing item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Store unconditionally.
    Set,
    /// Store only if absent.
    Add,
    /// Store only if present.
    Replace,
    /// Add the data after the existing value.
    Append,
    /// Add the data before the existing value.
    Prepend,
    /// Store only if the item's CAS unique is still this one.
    Cas(u64),
}

impl StoreMode {
    /// The text command that carries this mode.
    pub fn command_name(self) -> &'static str {
        match self {
            StoreMode::Set => "set",
            StoreMode::Add => "add",
            StoreMode::Replace => "replace",
            StoreMode::Append => "append",
            StoreMode::Prepend => "prepend",
            StoreMode::Cas(_) => "cas",
        }
    }
}

/// A storage request with its data block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    /// Opaque client flags (32 bits, as memcached 1.6).
    pub flags: u32,
    /// Expiration in memcached's form: 0 never, up to 30 days relative, else absolute; negative
    /// means already expired.
    pub exptime: i64,
    /// The value, without the trailing `\r\n`.
    pub data: &'a [u8],
    pub noreply: bool,
}

/// `incr`/`decr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arith<'a> {
    pub incr: bool,
    pub key: &'a [u8],
    pub delta: u64,
    pub noreply: bool,
}

/// `delete <key> [0] [noreply]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete<'a> {
    pub key: &'a [u8],
    pub noreply: bool,
}

/// `touch <key> <exptime> [noreply]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch<'a> {
    pub key: &'a [u8],
    pub exptime: i64,
    pub noreply: bool,
}

/// `flush_all [delay] [noreply]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushAll {
    /// Delay in memcached's exptime form; 0 flushes now.
    pub delay: i64,
    pub noreply: bool,
}

/// `verbosity <level> [noreply]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verbosity {
    pub level: u32,
    pub noreply: bool,
}

/// `shutdown` or `shutdown graceful`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    Immediate,
    Graceful,
    /// Any other argument: memcached answers `CLIENT_ERROR invalid shutdown mode` (once
    /// shutdown is enabled at all).
    Invalid,
}

/// `stats [group [arguments]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats<'a> {
    /// The first argument (`settings`, `items`, `slabs`, `reset`, ...), if any.
    pub group: Option<&'a [u8]>,
    /// The words after the group (`stats detail on`, `stats cachedump 1 10`), at most the
    /// first two; `None` where absent.
    pub args: [Option<&'a [u8]>; 2],
}

impl<'a> Stats<'a> {
    /// `stats <group>`, without arguments.
    pub fn group(group: Option<&'a [u8]>) -> Self {
        Stats {
            group,
            args: [None, None],
        }
    }
}

/// `cache_memlimit <megabytes> [noreply]`: change the memory limit at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheMemlimit {
    pub megabytes: u32,
    pub noreply: bool,
}
