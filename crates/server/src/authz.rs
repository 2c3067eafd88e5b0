//! The one place where a parsed request is allowed or refused.
//!
//! Every request of every protocol passes through [`Session`](crate::session::Session)'s
//! authorization with the identity of the connection that sent it, after parsing (and base64
//! key decoding) and before it touches a shard, whether its keys are this core's or another's.
//!
//! - With an access policy (`-o acl_file=<path>`, [`Access`]), what [`need`] says the
//!   request needs must be granted to the connection's identity on every key it names.
//! - Without one, behaviour is memcached's, with one secure default: `cache_memlimit`,
//!   `verbosity`, `stats reset` and `refresh_certs` are accepted only from loopback and
//!   unix-socket clients, unless `-o remote_admin` opens them ([`default_check`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rampart_auth::policy::{Denial, Grants, IdentityName, Policy, PolicyError, Rights};
use rampart_proto::request::{AdminCommand, MAX_KEY_BYTES, MetaKey, MetaSetMode};
use rampart_proto::{Request, StoreMode};
use rampart_tls::PeerIdentity;

use crate::versioned::Versioned;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials presented (or none required).
    Anonymous,
    /// A TLS client whose certificate the server verified: its subject CN and SANs (boxed:
    /// every connection keeps an identity, most of them anonymous, in 8 bytes).
    Certificate(Box<PeerIdentity>),
    /// A user who authenticated with ASCII auth or SASL.
    User(Box<rampart_auth::User>),
    /// A TLS client that authenticated with a pre-shared key (`ssl_psk_file`): its identity.
    Psk(Box<str>),
    /// A unix-socket client, by the user id the kernel reports for it (`SO_PEERCRED`).
    Uid(u32),
}

impl Identity {
    /// The name a policy gives this identity. A certificate is named by its subject's CN; one
    /// without a CN is anonymous.
    pub fn policy_name(&self) -> IdentityName {
        match self {
            Identity::Anonymous => IdentityName::Anonymous,
            Identity::Certificate(peer) => match &peer.common_name {
                Some(cn) => IdentityName::Cert(cn.clone()),
                None => IdentityName::Anonymous,
            },
            Identity::User(user) => IdentityName::User(user.as_str().to_owned()),
            Identity::Psk(name) => IdentityName::Psk(name.to_string()),
            Identity::Uid(uid) => IdentityName::Uid(*uid),
        }
    }
}

/// What a request needs, read from the request alone.
#[derive(Debug, Clone, Copy)]
pub enum Need<'r, 'a> {
    /// Authentication itself (binary SASL): the gate's business, never refused here.
    Nothing,
    Keyless(Rights),
    /// Rights on every key of a multi-key request.
    Keys(Rights, rampart_proto::request::Keys<'a>),
    Key(Rights, &'a [u8]),
    /// Rights on a meta key, decoded first when it is base64.
    MetaKey(Rights, &'r MetaKey<'a>),
}

/// The rights `request` needs. A meta request's follow what its flags do: an `mg` that sets a
/// TTL also touches, one that creates on a miss also adds; an `ms` needs its mode's right.
#[inline]
pub fn need<'r, 'a>(request: &'r Request<'a>) -> Need<'r, 'a> {
    match request {
        Request::Get(get) => {
            let mut rights = Rights::GET;
            if get.touch.is_some() {
                rights |= Rights::TOUCH;
            }
            Need::Keys(rights, get.keys)
        }
        Request::Store(store) => Need::Key(store_right(store.mode), store.key),
        Request::Arith(arith) => Need::Key(
            if arith.incr {
                Rights::INCR
            } else {
                Rights::DECR
            },
            arith.key,
        ),
        Request::Delete(delete) => Need::Key(Rights::DELETE, delete.key),
        Request::Touch(touch) => Need::Key(Rights::TOUCH, touch.key),
        Request::FlushAll(_) => Need::Keyless(Rights::FLUSH_ALL),
        Request::Version => Need::Keyless(Rights::VERSION),
        Request::Verbosity(_) => Need::Keyless(Rights::VERBOSITY),
        Request::Quit => Need::Keyless(Rights::QUIT),
        Request::Shutdown(_) => Need::Keyless(Rights::SHUTDOWN),
        Request::Stats(stats) => Need::Keyless(match stats.group {
            Some(b"reset") => Rights::STATS_RESET,
            Some(b"conns") => Rights::STATS_CONNS,
            Some(b"detail" | b"cachedump") => Rights::DUMP,
            _ => Rights::STATS,
        }),
        Request::CacheMemlimit(_) => Need::Keyless(Rights::CACHE_MEMLIMIT),
        Request::RefreshCerts { .. } => Need::Keyless(Rights::REFRESH_CERTS),
        Request::MetaGet(get) => {
            // Reading anything about the item (or only whether it exists) is `get`; an `mg`
            // whose only effect is a new TTL (a binary touch) needs `touch` alone.
            let reveals = get.flags.as_slice().iter().any(|f| b"cfhlstv".contains(f));
            let mut rights = Rights::NONE;
            if reveals || get.touch.is_none() {
                rights |= Rights::GET;
            }
            if get.touch.is_some() {
                rights |= Rights::TOUCH;
            }
            if get.vivify.is_some() {
                rights |= Rights::ADD;
            }
            Need::MetaKey(rights, &get.key)
        }
        Request::MetaSet(set) => {
            let mut right = match (set.mode, set.cas.is_some()) {
                (MetaSetMode::Set | MetaSetMode::Replace, true) => Rights::CAS,
                (MetaSetMode::Set, false) => Rights::SET,
                (MetaSetMode::Replace, false) => Rights::REPLACE,
                // A binary add with a CAS is a CAS store (meta's ignores the CAS).
                (MetaSetMode::Add, true) => Rights::ADD.union(Rights::CAS),
                (MetaSetMode::Add, false) => Rights::ADD,
                (MetaSetMode::Append, _) => Rights::APPEND,
                (MetaSetMode::Prepend, _) => Rights::PREPEND,
            };
            // `I` with a CAS older than the item's stores anyway (marked stale): no compare.
            if set.invalidate() && set.cas.is_some() {
                right |= Rights::SET;
            }
            Need::MetaKey(right, &set.key)
        }
        Request::MetaDelete(delete) => Need::MetaKey(Rights::DELETE, &delete.key),
        Request::MetaArith(arith) => {
            let mut rights = if arith.incr {
                Rights::INCR
            } else {
                Rights::DECR
            };
            if arith.vivify.is_some() {
                rights |= Rights::ADD;
            }
            if arith.touch.is_some() {
                rights |= Rights::TOUCH;
            }
            Need::MetaKey(rights, &arith.key)
        }
        Request::MetaNoop => Need::Keyless(Rights::NOOP),
        Request::MetaDebug(debug) => Need::MetaKey(Rights::DEBUG, &debug.key),
        Request::Sasl(_) => Need::Nothing,
        Request::Acl(_) => Need::Keyless(Rights::ACL),
        Request::Auth(_) => Need::Keyless(Rights::AUTH),
        Request::Admin(admin) => Need::Keyless(match admin.command {
            AdminCommand::LruCrawler(_) | AdminCommand::Watch(_) => Rights::DUMP,
            AdminCommand::Lru { .. } | AdminCommand::Slabs(_) => Rights::TUNE,
        }),
    }
}

fn store_right(mode: StoreMode) -> Rights {
    match mode {
        StoreMode::Set => Rights::SET,
        StoreMode::Add => Rights::ADD,
        StoreMode::Replace => Rights::REPLACE,
        StoreMode::Append => Rights::APPEND,
        StoreMode::Prepend => Rights::PREPEND,
        StoreMode::Cas(_) => Rights::CAS,
    }
}

/// Decides `request` for a connection ([`check_cached`] of its [`need`]); the most common
/// request, a `get`, without the general mapping.
#[inline]
pub fn check_request(cached: &mut CachedGrants, request: &Request<'_>) -> Result<(), Denial> {
    let need = match request {
        Request::Get(get) if get.touch.is_none() => Need::Keys(Rights::GET, get.keys),
        _ => need(request),
    };
    check_cached(cached, need)
}

/// Decides `need` for a connection: [`check`], with the connection's memo of the key prefixes
/// that last settled an allow, so that requests on keys that share a prefix (a client working
/// on its own tenant's keys) skip the walk.
#[inline(always)]
pub fn check_cached(cached: &mut CachedGrants, need: Need<'_, '_>) -> Result<(), Denial> {
    let CachedGrants { grants, memo, .. } = cached;
    decide(grants, need, |key, rights| memo.check(grants, key, rights))
}

/// Longest key prefix a memo entry keeps, in bytes.
const MEMO_PREFIX_BYTES: usize = 22;

/// One memo entry: keys that start with `prefix[..len]` are allowed `rights`.
#[derive(Debug, Clone, Copy)]
struct Settled {
    rights: Rights,
    len: u8,
    prefix: [u8; MEMO_PREFIX_BYTES],
}

/// The last two settled allows (reads and writes alternate in most workloads).
#[derive(Debug, Clone, Default)]
struct Memo {
    entries: [Option<Settled>; 2],
    /// The entry the next one replaces.
    next: u8,
}

impl Memo {
    #[inline]
    fn check(&mut self, grants: &Grants, key: &[u8], rights: Rights) -> Result<(), Denial> {
        for settled in self.entries.iter().flatten() {
            let len = usize::from(settled.len);
            // Compared in place: a few bytes, not worth a memcmp call.
            if settled.rights == rights
                && key.len() >= len
                && key.iter().zip(&settled.prefix[..len]).all(|(a, b)| a == b)
            {
                return Ok(());
            }
        }
        if let Some(len) = grants.check_key_settled(key, rights)?
            && len <= MEMO_PREFIX_BYTES
        {
            let mut prefix = [0u8; MEMO_PREFIX_BYTES];
            prefix[..len].copy_from_slice(&key[..len]);
            self.entries[usize::from(self.next)] = Some(Settled {
                rights,
                len: len as u8,
                prefix,
            });
            self.next ^= 1;
        }
        Ok(())
    }
}

/// Decides `need` against an identity's grants. Every key of a multi-key request must be
/// allowed, or the whole request is refused.
#[inline]
pub fn check(grants: &Grants, need: Need<'_, '_>) -> Result<(), Denial> {
    decide(grants, need, |key, rights| grants.check_key(key, rights))
}

/// The decision's shape, whatever decides each key (`key_allowed`): keyless rights against
/// the grants, keyed ones first against the command, then against every key in turn (a
/// base64 meta key decoded first).
#[inline(always)]
fn decide(
    grants: &Grants,
    need: Need<'_, '_>,
    mut key_allowed: impl FnMut(&[u8], Rights) -> Result<(), Denial>,
) -> Result<(), Denial> {
    match need {
        Need::Nothing => Ok(()),
        Need::Keyless(rights) => grants.check_keyless(rights),
        Need::Key(rights, key) => {
            grants.check_command(rights)?;
            key_allowed(key, rights)
        }
        Need::Keys(rights, keys) => {
            grants.check_command(rights)?;
            keys.iter().try_for_each(|key| key_allowed(key, rights))
        }
        Need::MetaKey(rights, key) => {
            grants.check_command(rights)?;
            let mut scratch = [0u8; MAX_KEY_BYTES];
            key_allowed(key.decode(&mut scratch), rights)
        }
    }
}

/// The key an audit event names for a refused `need`: the first one `grants` refuse (the
/// first key when the command itself is refused, or without grants).
pub fn refused_key(grants: Option<&Grants>, need: Need<'_, '_>) -> Option<Vec<u8>> {
    let refused = |key: &[u8], rights| grants.is_none_or(|g| g.check_key(key, rights).is_err());
    match need {
        Need::Nothing | Need::Keyless(_) => None,
        Need::Key(_, key) => Some(key.to_vec()),
        Need::Keys(rights, keys) => keys
            .iter()
            .find(|key| refused(key, rights))
            .or_else(|| keys.iter().next())
            .map(<[u8]>::to_vec),
        Need::MetaKey(_, key) => {
            let mut scratch = [0u8; MAX_KEY_BYTES];
            Some(key.decode(&mut scratch).to_vec())
        }
    }
}

/// Whether `need` is an admin command's (what `admin.command` events record).
pub fn is_admin(need: &Need<'_, '_>) -> bool {
    const ADMIN: Rights = Rights::FLUSH_ALL
        .union(Rights::CACHE_MEMLIMIT)
        .union(Rights::VERBOSITY)
        .union(Rights::STATS_RESET)
        .union(Rights::REFRESH_CERTS)
        .union(Rights::SHUTDOWN)
        .union(Rights::ACL)
        .union(Rights::DUMP)
        .union(Rights::TUNE);
    matches!(need, Need::Keyless(rights) if rights.bits() & ADMIN.bits() != 0)
}

/// Without a policy: the admin commands that change the server for everyone are accepted
/// only from clients on this machine, unless `-o remote_admin` (`admin_allowed`).
#[inline]
pub fn default_check(request: &Request<'_>, admin_allowed: bool) -> Result<(), Denial> {
    if admin_allowed {
        return Ok(());
    }
    match request {
        Request::CacheMemlimit(_)
        | Request::Verbosity(_)
        | Request::RefreshCerts { .. }
        | Request::Acl(_)
        | Request::Auth(_)
        | Request::Admin(_) => Err(Denial::Admin),
        // Resetting counters, and what reveals keys (`stats detail`, `stats cachedump`).
        Request::Stats(stats)
            if matches!(stats.group, Some(b"reset" | b"detail" | b"cachedump")) =>
        {
            Err(Denial::Admin)
        }
        _ => Ok(()),
    }
}

/// The outcome of a dry run ([`dry_run`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRun {
    Allowed,
    /// Refused, why, and the key refused (for keyed requests).
    Denied(Denial, Option<Vec<u8>>),
}

impl std::fmt::Display for DryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DryRun::Allowed => f.write_str("ALLOWED"),
            DryRun::Denied(denial, None) => write!(f, "DENIED {}", denial.as_str()),
            DryRun::Denied(denial, Some(key)) => write!(
                f,
                "DENIED {} {}",
                denial.as_str(),
                crate::audit::escape_key(key)
            ),
        }
    }
}

/// Largest data block a dry run makes up for a storage command's line, in bytes.
const DRY_RUN_DATA_BYTES: usize = 1 << 20;

/// Whether `identity` may run the request written as `line` (no `\r\n`; a storage
/// command's data block is made up) under `policy`. `Err` says why the line is no request.
pub fn dry_run(policy: &Policy, identity: &IdentityName, line: &[u8]) -> Result<DryRun, String> {
    let mut bytes = line.to_vec();
    bytes.extend_from_slice(b"\r\n");
    let limits = rampart_proto::text::Limits {
        item_size_max: DRY_RUN_DATA_BYTES * 2,
        ..rampart_proto::text::Limits::default()
    };
    let parsed = |bytes: &[u8]| dry_run_parsed(policy, identity, bytes, &limits);
    if let Some(outcome) = parsed(&bytes)? {
        return Ok(outcome);
    }
    // A storage command: its line says how long the data block is.
    let words: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .collect();
    let length_at = match words.first().copied() {
        Some(b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas") => 4,
        Some(b"ms") => 2,
        _ => return Err("an incomplete request".to_owned()),
    };
    let length = words
        .get(length_at)
        .and_then(|w| std::str::from_utf8(w).ok())
        .and_then(|w| w.parse::<usize>().ok())
        .filter(|&n| n <= DRY_RUN_DATA_BYTES)
        .ok_or_else(|| format!("the data length must be at most {DRY_RUN_DATA_BYTES} bytes"))?;
    bytes.resize(bytes.len() + length, b'x');
    bytes.extend_from_slice(b"\r\n");
    parsed(&bytes)?.ok_or_else(|| "an incomplete request".to_owned())
}

/// The decision for the complete request in `bytes`; `None` when it is incomplete.
fn dry_run_parsed(
    policy: &Policy,
    identity: &IdentityName,
    bytes: &[u8],
    limits: &rampart_proto::text::Limits,
) -> Result<Option<DryRun>, String> {
    use rampart_proto::text::{Frame, Parsed};
    let grants = policy.grants(identity);
    match rampart_proto::text::parse(bytes, limits) {
        Parsed::Complete {
            frame:
                Frame::Request(request) | Frame::Meta(rampart_proto::meta::Frame::Request(request)),
            ..
        } => {
            let need = need(&request);
            Ok(Some(match check(&grants, need) {
                Ok(()) => DryRun::Allowed,
                Err(denial) => DryRun::Denied(denial, refused_key(Some(&grants), need)),
            }))
        }
        Parsed::Complete { .. } | Parsed::Close => {
            Err("not a request memcached accepts".to_owned())
        }
        Parsed::Incomplete => Ok(None),
    }
}

/// Why an access policy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{path}:{}: {}", err.line, err.message)]
    Malformed { path: String, err: PolicyError },
    #[error("{path}: writable by other users (mode {mode:o}); chmod o-w it")]
    Writable { path: String, mode: u32 },
}

/// Counters `stats` reports.
#[derive(Debug, Default)]
pub struct AccessCounters {
    /// Requests refused because the command was not granted (`acl_denied_command`).
    pub denied_command: AtomicU64,
    /// Requests refused because a key was not granted (`acl_denied_key`).
    pub denied_key: AtomicU64,
    /// Admin commands refused from a remote client without a policy (`acl_denied_admin`).
    pub denied_admin: AtomicU64,
    /// Policy reloads that applied, and ones refused for a bad file.
    pub reloads: AtomicU64,
    pub reload_errors: AtomicU64,
}

impl AccessCounters {
    pub fn count(&self, denial: Denial) {
        let counter = match denial {
            Denial::Command => &self.denied_command,
            Denial::Key => &self.denied_key,
            Denial::Admin => &self.denied_admin,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The configured access policy, shared by every connection and replaced whole on reload.
#[derive(Debug)]
pub struct Access {
    /// The policy and its generation (bumped by every reload), compared once per request.
    policy: Versioned<Policy>,
    path: PathBuf,
}

/// A connection's grants, the policy generation they were looked up in, and its memo of
/// settled prefixes (valid for these grants only: a new lookup starts a new memo).
#[derive(Debug, Clone)]
pub struct CachedGrants {
    generation: u64,
    grants: Arc<Grants>,
    memo: Memo,
}

impl CachedGrants {
    pub fn grants(&self) -> &Grants {
        &self.grants
    }
}

impl Access {
    /// Reads and compiles the policy at `path`.
    pub fn load(path: &Path) -> Result<Access, AccessError> {
        let policy = read_policy(path)?;
        log::info!(
            "access policy {}: {} rule(s) for {} identit(ies)",
            path.display(),
            policy.rule_count(),
            policy.identity_count()
        );
        Ok(Access {
            policy: Versioned::new(policy),
            path: path.to_owned(),
        })
    }

    /// Reads the file again (SIGHUP, `acl reload`). A file that cannot be used changes
    /// nothing; a good one applies to every connection at its next request.
    pub fn reload(&self) -> Result<usize, AccessError> {
        let policy = read_policy(&self.path)?;
        let rules = policy.rule_count();
        self.policy.replace(policy);
        Ok(rules)
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.snapshot().1
    }

    /// `identity`'s grants, from `cached` while the policy has not changed since (one atomic
    /// load per request).
    #[inline]
    pub fn grants<'c>(
        &self,
        cached: &'c mut Option<Box<CachedGrants>>,
        identity: &Identity,
    ) -> &'c mut CachedGrants {
        let generation = self.policy.generation();
        match cached {
            Some(current) if current.generation == generation => {}
            _ => *cached = Some(Box::new(self.lookup(identity))),
        }
        cached.get_or_insert_with(|| Box::new(self.lookup(identity)))
    }

    /// `identity`'s grants in the current policy, with its generation.
    #[cold]
    fn lookup(&self, identity: &Identity) -> CachedGrants {
        let (generation, policy) = self.policy.snapshot();
        CachedGrants {
            generation,
            grants: policy.grants(&identity.policy_name()),
            memo: Memo::default(),
        }
    }
}

fn read_policy(path: &Path) -> Result<Policy, AccessError> {
    use std::os::unix::fs::PermissionsExt;
    let display = path.display().to_string();
    // Whoever may write the policy may grant themselves anything at the next reload.
    let mode = std::fs::metadata(path)
        .map_err(|err| AccessError::Read {
            path: display.clone(),
            err,
        })?
        .permissions()
        .mode();
    if mode & 0o002 != 0 {
        return Err(AccessError::Writable {
            path: display,
            mode: mode & 0o7777,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|err| AccessError::Read {
        path: display.clone(),
        err,
    })?;
    Policy::parse(&text).map_err(|err| AccessError::Malformed { path: display, err })
}

#[cfg(test)]
mod tests {
    use rampart_proto::text::{self, Frame, Limits, Parsed};

    use super::*;

    fn limits() -> Limits {
        Limits {
            item_size_max: 1024 * 1024,
            ..Limits::default()
        }
    }

    /// The rights (and, for keyed requests, the keys) `line` needs.
    fn needs(line: &[u8]) -> (Rights, Vec<Vec<u8>>) {
        let Parsed::Complete { frame, .. } = text::parse(line, &limits()) else {
            panic!("{line:?} does not parse");
        };
        let request = match frame {
            Frame::Request(request) => request,
            Frame::Meta(rampart_proto::meta::Frame::Request(request)) => request,
            other => panic!("{line:?}: {other:?}"),
        };
        let mut scratch = [0u8; MAX_KEY_BYTES];
        match need(&request) {
            Need::Nothing => (Rights::NONE, vec![]),
            Need::Keyless(rights) => (rights, vec![]),
            Need::Key(rights, key) => (rights, vec![key.to_vec()]),
            Need::Keys(rights, keys) => (rights, keys.iter().map(<[u8]>::to_vec).collect()),
            Need::MetaKey(rights, key) => (rights, vec![key.decode(&mut scratch).to_vec()]),
        }
    }

    #[test]
    fn each_request_needs_what_it_does() {
        let k = |s: &str| vec![s.as_bytes().to_vec()];
        type Case = (&'static [u8], Rights, Vec<Vec<u8>>);
        let cases: &[Case] = &[
            (
                b"get a b\r\n",
                Rights::GET,
                vec![b"a".to_vec(), b"b".to_vec()],
            ),
            (b"gat 10 a\r\n", Rights::GET | Rights::TOUCH, k("a")),
            (b"set a 0 0 1\r\nx\r\n", Rights::SET, k("a")),
            (b"cas a 0 0 1 5\r\nx\r\n", Rights::CAS, k("a")),
            (b"append a 0 0 1\r\nx\r\n", Rights::APPEND, k("a")),
            (b"incr a 1\r\n", Rights::INCR, k("a")),
            (b"decr a 1\r\n", Rights::DECR, k("a")),
            (b"touch a 1\r\n", Rights::TOUCH, k("a")),
            (b"delete a\r\n", Rights::DELETE, k("a")),
            // Meta: the rights follow the flags; base64 keys are decoded.
            (b"mg YQ== b v\r\n", Rights::GET, k("a")),
            (b"mg a\r\n", Rights::GET, k("a")),
            (b"mg a T30\r\n", Rights::TOUCH, k("a")),
            (b"mg a T30 v\r\n", Rights::GET | Rights::TOUCH, k("a")),
            (b"mg a T30 t\r\n", Rights::GET | Rights::TOUCH, k("a")),
            (b"mg a N30 v\r\n", Rights::GET | Rights::ADD, k("a")),
            (b"ms a 1\r\nx\r\n", Rights::SET, k("a")),
            (b"ms a 1 C5\r\nx\r\n", Rights::CAS, k("a")),
            (b"ms a 1 MA\r\nx\r\n", Rights::APPEND, k("a")),
            (b"ms a 1 MP\r\nx\r\n", Rights::PREPEND, k("a")),
            (b"ms a 1 ME\r\nx\r\n", Rights::ADD, k("a")),
            (b"ms a 1 MR\r\nx\r\n", Rights::REPLACE, k("a")),
            (b"ms a 1 MR C5\r\nx\r\n", Rights::CAS, k("a")),
            (b"ms a 1 C5 I\r\nx\r\n", Rights::CAS | Rights::SET, k("a")),
            (b"ms a 1 ME C5\r\nx\r\n", Rights::ADD | Rights::CAS, k("a")),
            (b"md a\r\n", Rights::DELETE, k("a")),
            (b"ma a\r\n", Rights::INCR, k("a")),
            (
                b"ma a MD N0 T5\r\n",
                Rights::DECR | Rights::ADD | Rights::TOUCH,
                k("a"),
            ),
            (b"me a\r\n", Rights::DEBUG, k("a")),
            // Keyless.
            (b"mn\r\n", Rights::NOOP, vec![]),
            (b"version\r\n", Rights::VERSION, vec![]),
            (b"stats\r\n", Rights::STATS, vec![]),
            (b"stats items\r\n", Rights::STATS, vec![]),
            (b"stats reset\r\n", Rights::STATS_RESET, vec![]),
            (b"stats conns\r\n", Rights::STATS_CONNS, vec![]),
            (b"flush_all\r\n", Rights::FLUSH_ALL, vec![]),
            (b"verbosity 1\r\n", Rights::VERBOSITY, vec![]),
            (b"cache_memlimit 10\r\n", Rights::CACHE_MEMLIMIT, vec![]),
        ];
        for (line, rights, keys) in cases {
            assert_eq!(
                needs(line),
                (*rights, keys.clone()),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn binary_requests_need_what_their_text_forms_need() {
        // A binary touch (opcode 0x1c) answers the item's flags and CAS as memcached does, so
        // it reads as well as touches, like a gat.
        let packet = |opcode: u8, extras: &[u8], key: &[u8]| {
            let mut p = vec![
                0x80,
                opcode,
                0,
                key.len() as u8,
                extras.len() as u8,
                0,
                0,
                0,
            ];
            p.extend_from_slice(&((extras.len() + key.len()) as u32).to_be_bytes());
            p.extend_from_slice(&[0; 12]);
            p.extend_from_slice(extras);
            p.extend_from_slice(key);
            p
        };
        for (opcode, extras, want) in [
            (0x1c, &[0u8, 0, 0, 10][..], Rights::GET | Rights::TOUCH),
            (0x1d, &[0, 0, 0, 10][..], Rights::GET | Rights::TOUCH),
            (0x0c, &[][..], Rights::GET),
            (0x04, &[][..], Rights::DELETE),
        ] {
            let bytes = packet(opcode, extras, b"k");
            let rampart_proto::Parsed::Complete {
                frame: rampart_proto::binary::Frame::Request { request, .. },
                ..
            } = rampart_proto::binary::parse(&bytes, &limits())
            else {
                panic!("opcode {opcode:#x} does not parse");
            };
            let Need::MetaKey(rights, _) = need(&request) else {
                panic!("opcode {opcode:#x} is keyed");
            };
            assert_eq!(rights, want, "opcode {opcode:#x}");
        }
    }

    #[test]
    fn without_a_policy_admin_commands_need_a_local_client() {
        let request = |line: &'static [u8]| {
            let Parsed::Complete {
                frame: Frame::Request(request),
                ..
            } = text::parse(line, &limits())
            else {
                panic!("{line:?}");
            };
            request
        };
        for line in [
            &b"cache_memlimit 10\r\n"[..],
            b"verbosity 1\r\n",
            b"stats reset\r\n",
            b"refresh_certs\r\n",
            b"acl reload\r\n",
            b"stats detail dump\r\n",
            b"stats cachedump 1 0\r\n",
            b"lru_crawler metadump all\r\n",
            b"lru mode flat\r\n",
            b"slabs automove 1\r\n",
            b"watch\r\n",
        ] {
            assert_eq!(default_check(&request(line), false), Err(Denial::Admin));
            assert_eq!(default_check(&request(line), true), Ok(()));
        }
        for line in [
            &b"stats\r\n"[..],
            b"stats items\r\n",
            b"flush_all\r\n",
            b"version\r\n",
            b"get k\r\n",
        ] {
            assert_eq!(default_check(&request(line), false), Ok(()));
        }
    }
}

#[cfg(test)]
mod memo_tests {
    use rampart_auth::policy::Policy;

    use super::*;

    /// Every key over a small alphabet, up to `max` bytes, in order.
    fn keys(max: usize) -> Vec<Vec<u8>> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..max {
            let mut next = Vec::new();
            for key in &last {
                for &b in b"ab:" {
                    let mut k = key.clone();
                    k.push(b);
                    next.push(k);
                }
            }
            all.extend(next.iter().cloned());
            last = next;
        }
        all.retain(|k| !k.is_empty());
        all
    }

    /// The memo never changes a decision: for several policies, every key of a sequence is
    /// decided with the memo exactly as without it, whatever was decided before it.
    #[test]
    fn the_memo_never_changes_a_decision() {
        let policies = [
            "allow get,set prefix:a:\nallow get key:ab\n",
            "allow get prefix:a\ndeny get prefix:a:b\n",
            "allow get prefix:\ndeny set key:a\n",
            "allow get,set prefix:ab\nallow get regex:b.*a\ndeny set regex:ab:.*\n",
            "allow get key:a: key:a:a key:b\nallow set prefix:b:\n",
            "allow @data prefix:a\ndeny delete prefix:a:\n",
        ];
        let all_keys = keys(4);
        for text in policies {
            let policy = Policy::parse(&format!("[identity anonymous]\n{text}")).expect("parses");
            let mut cached = CachedGrants {
                generation: 0,
                grants: policy.grants(&rampart_auth::policy::IdentityName::Anonymous),
                memo: Memo::default(),
            };
            for rights in [
                Rights::GET,
                Rights::SET,
                Rights::GET | Rights::TOUCH,
                Rights::DELETE,
            ] {
                // Forwards and backwards, so each key follows many different memo states.
                for key in all_keys.iter().chain(all_keys.iter().rev()) {
                    let fresh = check(&cached.grants.clone(), Need::Key(rights, key));
                    let memoized = check_cached(&mut cached, Need::Key(rights, key));
                    assert_eq!(
                        memoized,
                        fresh,
                        "{text} {rights:?} {}",
                        String::from_utf8_lossy(key)
                    );
                }
            }
        }
    }
}
