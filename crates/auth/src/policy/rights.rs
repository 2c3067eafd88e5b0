//! What a request may do, as a set of rights, and the names an operator writes for them.
//!
//! Every command of every protocol needs a set of rights (the server maps each parsed request
//! onto them: a binary `getk` needs what `get` needs, an `mg` that sets a TTL also needs
//! `touch`). Keyed rights are granted on key patterns; keyless ones on their own.

/// A set of rights: one bit per right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Rights(u32);

impl Rights {
    pub const NONE: Rights = Rights(0);

    // Keyed: granted on keys.
    /// Read an item: its value, flags, CAS, TTL, size or whether it exists.
    pub const GET: Rights = Rights(1 << 0);
    /// Change an item's TTL (`touch`, `gat`, `mg T`).
    pub const TOUCH: Rights = Rights(1 << 1);
    pub const SET: Rights = Rights(1 << 2);
    /// Store only when absent; also what creating an item on a miss needs (`mg N`, `ma N`, a
    /// binary increment with an initial value).
    pub const ADD: Rights = Rights(1 << 3);
    pub const REPLACE: Rights = Rights(1 << 4);
    pub const APPEND: Rights = Rights(1 << 5);
    pub const PREPEND: Rights = Rights(1 << 6);
    /// A compare-and-swap store (`cas`, `ms C` in set or replace mode).
    pub const CAS: Rights = Rights(1 << 7);
    pub const DELETE: Rights = Rights(1 << 8);
    pub const INCR: Rights = Rights(1 << 9);
    pub const DECR: Rights = Rights(1 << 10);
    /// `me`: an item's metadata line.
    pub const DEBUG: Rights = Rights(1 << 11);

    // Keyless.
    pub const VERSION: Rights = Rights(1 << 16);
    pub const QUIT: Rights = Rights(1 << 17);
    /// `mn`, binary noop.
    pub const NOOP: Rights = Rights(1 << 18);
    /// `stats` and its groups that show no client or key: settings, items, slabs, shards.
    pub const STATS: Rights = Rights(1 << 19);
    pub const STATS_CONNS: Rights = Rights(1 << 20);
    pub const STATS_RESET: Rights = Rights(1 << 21);
    pub const FLUSH_ALL: Rights = Rights(1 << 22);
    pub const CACHE_MEMLIMIT: Rights = Rights(1 << 23);
    pub const VERBOSITY: Rights = Rights(1 << 24);
    pub const REFRESH_CERTS: Rights = Rights(1 << 25);
    pub const SHUTDOWN: Rights = Rights(1 << 26);
    /// The policy's own commands: reload, dry run, the denial log.
    pub const ACL: Rights = Rights(1 << 27);
    /// Commands that reveal keys: `watch`, `lru_crawler`, `stats detail`, `stats cachedump`
    /// (admin only; named so that a policy written for them loads).
    pub const DUMP: Rights = Rights(1 << 28);
    /// memcached's tuning of machinery rampart does not have: `lru`, `slabs` (accepted with
    /// no effect, but a policy should still say who may send them).
    pub const TUNE: Rights = Rights(1 << 29);
    /// `auth reload`: reading the credential files again.
    pub const AUTH: Rights = Rights(1 << 30);

    /// Every right granted on keys.
    pub const KEYED: Rights = Rights(0xffff);

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    pub const fn minus(self, other: Rights) -> Rights {
        Rights(self.0 & !other.0)
    }

    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every right in the set is granted on keys.
    pub const fn is_keyed(self) -> bool {
        self.0 & !Rights::KEYED.0 == 0
    }

    /// A name for each right in the set (the first in [`NAMES`] that grants exactly it), for
    /// messages.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        (0..32)
            .map(|bit| Rights(1 << bit))
            .filter(move |right| self.contains(*right))
            .filter_map(|right| NAMES.iter().find(|(_, r)| *r == right).map(|(n, _)| *n))
    }
}

impl std::ops::BitOr for Rights {
    type Output = Rights;
    fn bitor(self, other: Rights) -> Rights {
        self.union(other)
    }
}

impl std::ops::BitOrAssign for Rights {
    fn bitor_assign(&mut self, other: Rights) {
        *self = self.union(other);
    }
}

/// Every command name and group a policy may write, and what it grants. A command name
/// grants what the command needs in its plain form: `gat` is `get` and `touch`; `mg` is
/// `get` (an `mg` with `T` needs `touch` too). Binary opcodes need what their text forms need.
pub const NAMES: &[(&str, Rights)] = &[
    ("get", Rights::GET),
    ("gets", Rights::GET),
    ("mg", Rights::GET),
    ("gat", Rights::GET.union(Rights::TOUCH)),
    ("gats", Rights::GET.union(Rights::TOUCH)),
    ("touch", Rights::TOUCH),
    ("set", Rights::SET),
    ("ms", Rights::SET),
    ("add", Rights::ADD),
    ("replace", Rights::REPLACE),
    ("append", Rights::APPEND),
    ("prepend", Rights::PREPEND),
    ("cas", Rights::CAS),
    ("delete", Rights::DELETE),
    ("md", Rights::DELETE),
    ("incr", Rights::INCR),
    ("decr", Rights::DECR),
    ("ma", Rights::INCR.union(Rights::DECR)),
    ("me", Rights::DEBUG),
    ("version", Rights::VERSION),
    ("quit", Rights::QUIT),
    ("mn", Rights::NOOP),
    ("stats", Rights::STATS),
    ("stats_conns", Rights::STATS_CONNS),
    ("stats_reset", Rights::STATS_RESET),
    ("flush_all", Rights::FLUSH_ALL),
    ("cache_memlimit", Rights::CACHE_MEMLIMIT),
    ("verbosity", Rights::VERBOSITY),
    ("refresh_certs", Rights::REFRESH_CERTS),
    ("shutdown", Rights::SHUTDOWN),
    ("acl", Rights::ACL),
    ("auth", Rights::AUTH),
    ("watch", Rights::DUMP),
    ("lru_crawler", Rights::DUMP),
    ("stats_detail", Rights::DUMP),
    ("stats_cachedump", Rights::DUMP),
    ("lru", Rights::TUNE),
    ("slabs", Rights::TUNE),
    // Groups.
    ("@read", Rights::GET),
    ("@write", WRITE),
    ("@delete", Rights::DELETE),
    ("@touch", Rights::TOUCH),
    ("@arith", Rights::INCR.union(Rights::DECR)),
    ("@data", DATA),
    ("@session", SESSION),
    ("@stats", Rights::STATS),
    ("@dump", Rights::DUMP),
    ("@admin", ADMIN),
];

const WRITE: Rights = Rights::SET
    .union(Rights::ADD)
    .union(Rights::REPLACE)
    .union(Rights::APPEND)
    .union(Rights::PREPEND)
    .union(Rights::CAS);
const DATA: Rights = Rights::GET
    .union(Rights::TOUCH)
    .union(WRITE)
    .union(Rights::DELETE)
    .union(Rights::INCR)
    .union(Rights::DECR)
    .union(Rights::DEBUG);
const SESSION: Rights = Rights::VERSION.union(Rights::QUIT).union(Rights::NOOP);
const ADMIN: Rights = Rights::STATS_CONNS
    .union(Rights::STATS_RESET)
    .union(Rights::FLUSH_ALL)
    .union(Rights::CACHE_MEMLIMIT)
    .union(Rights::VERBOSITY)
    .union(Rights::REFRESH_CERTS)
    .union(Rights::SHUTDOWN)
    .union(Rights::ACL)
    .union(Rights::AUTH)
    .union(Rights::DUMP)
    .union(Rights::TUNE);

/// What `name` (a command or an `@group`) grants.
pub fn named(name: &str) -> Option<Rights> {
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}
