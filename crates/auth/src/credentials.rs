//! The credential file and the store built from it.
//!
//! # Format
//! One entry per line, `user:secret`, split at the first `:` (a password may contain `:`):
//! - `alice:pencil` is a cleartext password: memcached's `-Y` file and its
//!   `MEMCACHED_SASL_PWDB` file, unchanged. Accepted with a warning from the server.
//! - `alice:SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>` and
//!   `alice:SCRAM-SHA-512$4096:...` are hashed entries ([`ScramSecret`]), the recommended form
//!   (`rampart passwd` writes them). Any other secret, even one that starts `SCRAM-SHA-1$`, is
//!   a cleartext password, as memcached reads it.
//!
//! Blank lines and lines starting with `#` are skipped; `\r\n` line ends and a missing final
//! newline are accepted. A user may have several entries (a password being rotated): any of
//! them authenticates. There is no limit on the number of entries (memcached's `-Y` takes 8).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use openssl::hash::{MessageDigest, hash};
use openssl::sha::Sha256;
use thiserror::Error;

use crate::secret::{DEFAULT_ITERATIONS, ScramHash, ScramSecret};

/// Longest user name (memcached's keys are at most 250 bytes; names are far shorter).
pub const MAX_USER_BYTES: usize = 250;
/// Longest cleartext password taken from the file.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// An authenticated user's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User(Box<str>);

impl User {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A user by a name from elsewhere than the store (a client certificate,
    /// [`CertUserRule`](crate::CertUserRule)); `None` when the name is not one a credential
    /// file could hold.
    pub fn named(name: &str) -> Option<User> {
        valid_user(name).ok()?;
        Some(User(name.into()))
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A malformed credential file: which line, and why (never the line's text, which may hold a
/// password).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {reason}")]
pub struct FileError {
    pub line: usize,
    pub reason: String,
}

#[derive(Clone)]
enum Secret {
    /// A cleartext password: its SHA-256 (compared in constant time without revealing the
    /// length) and the password itself, from which a SCRAM exchange derives its keys.
    Clear {
        digest: [u8; 32],
        password: Box<[u8]>,
    },
    Scram(ScramSecret),
}

/// Users and their secrets.
#[derive(Clone)]
pub struct CredentialStore {
    users: HashMap<Box<str>, Vec<Secret>>,
    cleartext_entries: usize,
    /// Hashed entries of each kind, indexed by `ScramHash as usize`.
    hashed_entries: [usize; ScramHash::ALL.len()],
    /// What an unknown user's password is checked against, so that the reply to an unknown
    /// user and to a wrong password take the same work: a hashed secret of the kind most
    /// entries have, when the file holds any (with the most iterations that kind uses), else a
    /// cleartext digest.
    dummy: Secret,
    /// Whether SCRAM-SHA-512 is listed (see [`CredentialStore::lists`]): computed once per
    /// file, not for each list-mechanisms request.
    lists_sha_512: bool,
    /// Random per store: the salts of SCRAM exchanges for cleartext entries and unknown users.
    store_key: [u8; 32],
    /// Passwords checked against a hashed entry and found right, as keyed tags (see
    /// [`CredentialStore::check_password`]); a new store (a reload) starts without any.
    verified: VerifiedTags,
}

/// Most tags a store remembers; past it they are all forgotten and counting starts again
/// (32 bytes each: about 130 KiB at most, with the set's overhead).
pub const MAX_VERIFIED_TAGS: usize = 4096;

/// `HMAC-SHA-256(store key, "verified" 0 user 0 password)` of passwords that matched a hashed
/// entry. Not a secret the file holds: a client that reconnects with a password already
/// checked costs one HMAC instead of one PBKDF2 per entry.
struct VerifiedTags {
    tags: Mutex<HashSet<[u8; 32]>>,
    /// SHA-256 having absorbed the key's inner and outer pads (RFC 2104): a tag is two
    /// copies of these and two short hashes, with no allocation.
    inner: Sha256,
    outer: Sha256,
}

impl Clone for VerifiedTags {
    /// A copy of a store remembers nothing: it is checked afresh.
    fn clone(&self) -> Self {
        VerifiedTags {
            tags: Mutex::default(),
            inner: self.inner.clone(),
            outer: self.outer.clone(),
        }
    }
}

impl VerifiedTags {
    fn new(key: &[u8; 32]) -> VerifiedTags {
        const BLOCK: usize = 64;
        let pad = |byte: u8| {
            let mut block = [byte; BLOCK];
            for (b, k) in block.iter_mut().zip(key) {
                *b ^= k;
            }
            let mut sha = Sha256::new();
            sha.update(&block);
            sha
        };
        VerifiedTags {
            tags: Mutex::default(),
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }

    /// The tag of a user and password.
    fn tag(&self, user: &[u8], password: &[u8]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        for part in [b"verified\0".as_slice(), user, b"\0", password] {
            inner.update(part);
        }
        let mut outer = self.outer.clone();
        outer.update(&inner.finish());
        outer.finish()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.tags.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn contains(&self, tag: &[u8; 32]) -> bool {
        self.lock().contains(tag)
    }

    fn insert(&self, tag: [u8; 32]) {
        let mut tags = self.lock();
        if tags.len() >= MAX_VERIFIED_TAGS {
            tags.clear();
        }
        tags.insert(tag);
    }
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialStore")
            .field("users", &self.users.len())
            .field("cleartext_entries", &self.cleartext_entries)
            .field("hashed_entries", &self.hashed_entries)
            .finish_non_exhaustive()
    }
}

fn digest(password: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(d) = hash(MessageDigest::sha256(), password) {
        out.copy_from_slice(&d);
    }
    out
}

fn valid_user(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the user name is empty".into());
    }
    if name.len() > MAX_USER_BYTES {
        return Err(format!(
            "the user name is longer than {MAX_USER_BYTES} bytes"
        ));
    }
    if name
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("the user name contains a space or control character".into());
    }
    Ok(())
}

impl CredentialStore {
    /// An empty store (no user can authenticate), with a random salt key.
    pub fn empty() -> CredentialStore {
        let mut store_key = [0u8; 32];
        let _ = openssl::rand::rand_bytes(&mut store_key);
        CredentialStore::with_salt_key(store_key)
    }

    /// An empty store whose made-up SCRAM salts (for cleartext entries and unknown users)
    /// come from `store_key`: keep it across reloads, so that those salts do not change when
    /// real ones do not, which would tell made-up users from real ones.
    pub fn with_salt_key(store_key: [u8; 32]) -> CredentialStore {
        CredentialStore {
            users: HashMap::new(),
            cleartext_entries: 0,
            hashed_entries: [0; ScramHash::ALL.len()],
            dummy: clear(b""),
            lists_sha_512: false,
            store_key,
            verified: VerifiedTags::new(&store_key),
        }
    }

    /// Parses a credential file's text.
    pub fn parse(text: &str) -> Result<CredentialStore, FileError> {
        let mut store = CredentialStore::empty();
        store.add_text(text)?;
        Ok(store)
    }

    /// Adds the entries of another file's text (`-Y` and `MEMCACHED_SASL_PWDB` share one
    /// store).
    pub fn add_text(&mut self, text: &str) -> Result<(), FileError> {
        for (index, line) in text.split('\n').enumerate() {
            let fail = |reason: String| FileError {
                line: index + 1,
                reason,
            };
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, secret)) = line.split_once(':') else {
                return Err(fail("an entry is user:password (no ':' found)".into()));
            };
            valid_user(user).map_err(fail)?;
            if secret.is_empty() {
                return Err(fail("the password is empty".into()));
            }
            let secret = if let Some(hash) = ScramHash::of_entry(secret) {
                self.hashed_entries[hash as usize] += 1;
                Secret::Scram(ScramSecret::parse(secret).map_err(|e| fail(e.to_string()))?)
            } else {
                if secret.len() > MAX_PASSWORD_BYTES {
                    return Err(fail(format!(
                        "the password is longer than {MAX_PASSWORD_BYTES} bytes"
                    )));
                }
                self.cleartext_entries += 1;
                clear(secret.as_bytes())
            };
            self.users.entry(user.into()).or_default().push(secret);
        }
        self.dummy = self.make_dummy();
        self.lists_sha_512 = self.every_user_is_sha_512_ready();
        Ok(())
    }

    fn make_dummy(&self) -> Secret {
        // The kind most hashed entries have (SHA-512, the costlier, on a tie), so that an
        // unknown user costs what most known users' single entry costs.
        let hash = ScramHash::ALL
            .into_iter()
            .filter(|&hash| self.hashed_entries_of(hash) > 0)
            .max_by_key(|&hash| (self.hashed_entries_of(hash), hash));
        let Some(hash) = hash else {
            return clear(b"\0no such user\0");
        };
        let iterations = self
            .users
            .values()
            .flatten()
            .filter_map(|secret| match secret {
                Secret::Scram(scram) if scram.hash() == hash => Some(scram.iterations()),
                Secret::Scram(_) | Secret::Clear { .. } => None,
            })
            .max()
            .unwrap_or(DEFAULT_ITERATIONS);
        let mut salt = [0u8; 16];
        let _ = openssl::rand::rand_bytes(&mut salt);
        match ScramSecret::derive(hash, &salt, &salt, iterations.max(DEFAULT_ITERATIONS)) {
            Ok(secret) => Secret::Scram(secret),
            Err(_) => clear(&salt),
        }
    }

    /// The rule for listing SCRAM-SHA-512 (see [`CredentialStore::lists`]).
    fn every_user_is_sha_512_ready(&self) -> bool {
        self.hashed_entries_of(ScramHash::Sha512) > 0
            && self.users.values().all(|secrets| {
                newest_hashed(secrets, None).is_none_or(|scram| scram.hash() == ScramHash::Sha512)
            })
    }

    /// Whether the SASL mechanism list names `hash`'s mechanism. Every SCRAM mechanism is
    /// accepted when a client asks for it; the list only steers clients that pick the
    /// strongest mechanism offered (Cyrus SASL: libmemcached, pylibmc), so it must never
    /// steer one away from the entry it authenticates with today:
    /// - SCRAM-SHA-256 is always listed.
    /// - SCRAM-SHA-512 is listed only when the file has a SCRAM-SHA-512 entry (an operator
    ///   asked for it: a file written before SCRAM-SHA-512 existed gets the same list as
    ///   before) and every user's newest hashed entry is a SCRAM-SHA-512 one, or the user has
    ///   no hashed entry (cleartext ones serve either mechanism). A user whose newest hashed
    ///   entry is SCRAM-SHA-256 would otherwise be moved by the client to SCRAM-SHA-512 and an
    ///   older secret, or none; with the rule, the mechanism a client picks answers from the
    ///   user's newest hashed entry, as SCRAM-SHA-256 always has.
    pub fn lists(&self, hash: ScramHash) -> bool {
        match hash {
            ScramHash::Sha256 => true,
            ScramHash::Sha512 => self.lists_sha_512,
        }
    }

    /// Users with at least one entry.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Cleartext entries (the server warns about them).
    pub fn cleartext_entries(&self) -> usize {
        self.cleartext_entries
    }

    pub fn hashed_entries(&self) -> usize {
        self.hashed_entries.iter().sum()
    }

    /// Hashed entries of one kind.
    pub fn hashed_entries_of(&self, hash: ScramHash) -> usize {
        self.hashed_entries[hash as usize]
    }

    /// The secret a `hash` SCRAM exchange for `user` uses: the newest hashed entry of that
    /// kind, else one derived from the newest cleartext entry (salt fixed per user and
    /// mechanism), else, for an unknown user or one with only entries of the other kind, one
    /// that matches nothing, made with the same work as a known user's.
    pub(crate) fn scram_secret(&self, hash: ScramHash, user: &str) -> (Option<User>, ScramSecret) {
        use crate::scram::user_salt;
        let Some((name, secrets)) = self.users.get_key_value(user) else {
            return (None, self.unmatched_scram_secret(hash, user));
        };
        if let Some(secret) = newest_hashed(secrets, Some(hash)) {
            return (Some(User(name.clone())), secret.clone());
        }
        let derived = secrets.iter().rev().find_map(|secret| match secret {
            Secret::Clear { password, .. } => {
                let salt = user_salt(&self.store_key, hash, "cleartext ", user);
                ScramSecret::derive(hash, password, &salt, DEFAULT_ITERATIONS).ok()
            }
            Secret::Scram(_) => None,
        });
        match derived {
            Some(secret) => (Some(User(name.clone())), secret),
            None => (None, self.unmatched_scram_secret(hash, user)),
        }
    }

    /// An unknown user's secret for a `hash` exchange.
    fn unmatched_scram_secret(&self, hash: ScramHash, user: &str) -> ScramSecret {
        // The iteration count new entries get, as most real users' will be.
        let secret =
            crate::scram::unmatched_secret(&self.store_key, hash, user, DEFAULT_ITERATIONS);
        if self.hashed_entries_of(hash) == 0 {
            // Only cleartext users can complete this exchange, and each costs a derivation
            // here; so does an unknown one.
            let _ = ScramSecret::derive(hash, b"", secret.salt(), DEFAULT_ITERATIONS);
        }
        secret
    }

    /// A digest of `user`'s entries: equal across two stores exactly when the user has the
    /// same secrets in both (a reload revokes a connection whose user's digest changed).
    pub fn fingerprint(&self, user: &str) -> Option<[u8; 32]> {
        let secrets = self.users.get(user)?;
        let mut material = Vec::new();
        for secret in secrets {
            match secret {
                Secret::Clear { digest, .. } => {
                    material.push(b'c');
                    material.extend_from_slice(digest);
                }
                Secret::Scram(scram) => {
                    material.push(b's');
                    material.extend_from_slice(scram.to_text().as_bytes());
                }
            }
        }
        Some(digest(&material))
    }

    /// Whether any entry is cleartext: only those can answer SASL `CRAM-MD5`.
    pub fn has_cleartext(&self) -> bool {
        self.cleartext_entries > 0
    }

    /// SASL `CRAM-MD5` (RFC 2195): the user, when `digest` (lowercase hex) is
    /// `HMAC-MD5(password, challenge)` for one of `user`'s cleartext entries. Hashed entries
    /// cannot answer it (the password is not stored); an unknown user costs the same HMAC.
    pub fn check_cram_md5(&self, user: &[u8], challenge: &[u8], digest: &[u8]) -> Option<User> {
        let name = std::str::from_utf8(user).ok();
        let entry = name.and_then(|name| self.users.get_key_value(name));
        let mut matched = false;
        let mut tried = false;
        if let Some((_, secrets)) = entry {
            for secret in secrets {
                if let Secret::Clear { password, .. } = secret {
                    tried = true;
                    matched |= openssl::memcmp::eq(
                        hmac_md5_hex(password, challenge).as_bytes(),
                        &padded(digest, 32),
                    ) && digest.len() == 32;
                }
            }
        }
        if !tried {
            let _ = hmac_md5_hex(b"\0no such user\0", challenge);
        }
        match (entry, matched) {
            (Some((name, _)), true) => Some(User(name.clone())),
            _ => None,
        }
    }

    /// The user, when `password` is one of `user`'s. Every entry of the user is checked (no
    /// early exit), and an unknown user is checked against a dummy secret of the file's kind.
    ///
    /// A password that matched a user with hashed entries is remembered as a keyed tag, so
    /// that the same user and password again (a client's reconnections, a pool's connections)
    /// cost one HMAC, not a PBKDF2 per entry. Only a right password can hit a tag, so a wrong
    /// password and an unknown user still take the same work, and the tags (random key, memory
    /// only) reveal nothing that the passwords arriving in the read buffers do not.
    pub fn check_password(&self, user: &[u8], password: &[u8]) -> Option<User> {
        let name = std::str::from_utf8(user).ok();
        let entry = name.and_then(|name| self.users.get_key_value(name));
        let tag = self.verified.tag(user, password);
        // Looked up for unknown users too, so that the lookup's time says nothing about them.
        let remembered = self.verified.contains(&tag);
        if let (Some((name, _)), true) = (entry, remembered) {
            return Some(User(name.clone()));
        }
        let Some((name, secrets)) = entry else {
            let _ = matches(&self.dummy, password);
            return None;
        };
        let mut matched = false;
        for secret in secrets {
            matched |= matches(secret, password);
        }
        if matched && secrets.iter().any(|s| matches!(s, Secret::Scram(_))) {
            self.verified.insert(tag);
        }
        matched.then(|| User(name.clone()))
    }
}

/// `HMAC-MD5(key, message)` in lowercase hex.
fn hmac_md5_hex(key: &[u8], message: &[u8]) -> String {
    let mac = openssl::pkey::PKey::hmac(key)
        .and_then(|key| {
            let mut signer = openssl::sign::Signer::new(MessageDigest::md5(), &key)?;
            signer.update(message)?;
            signer.sign_to_vec()
        })
        .unwrap_or_default();
    mac.iter().map(|b| format!("{b:02x}")).collect()
}

/// `bytes` cut or zero-padded to `len`, so a comparison takes the same time whatever came in.
fn padded(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut out = bytes[..bytes.len().min(len)].to_vec();
    out.resize(len, 0);
    out
}

/// The newest hashed entry among `secrets`, of kind `hash` when one is given.
fn newest_hashed(secrets: &[Secret], hash: Option<ScramHash>) -> Option<&ScramSecret> {
    secrets.iter().rev().find_map(|secret| match secret {
        Secret::Scram(scram) if hash.is_none_or(|hash| scram.hash() == hash) => Some(scram),
        Secret::Scram(_) | Secret::Clear { .. } => None,
    })
}

fn clear(password: &[u8]) -> Secret {
    Secret::Clear {
        digest: digest(password),
        password: password.into(),
    }
}

fn matches(secret: &Secret, password: &[u8]) -> bool {
    match secret {
        Secret::Clear {
            digest: expected, ..
        } => openssl::memcmp::eq(&digest(password), expected),
        Secret::Scram(scram) => scram.matches(password),
    }
}

#[cfg(test)]
mod tests;
