//! Access policies: which identity may run which commands on which keys.
//!
//! A policy file (format in [`parse`] and docs/security.md) names identities and roles and
//! gives each `allow` and `deny` rules. [`Policy::parse`] checks everything (an unknown
//! command, group, identity kind, role or a malformed pattern is an error naming the line) and
//! compiles each identity's rules, roles included, into one [`Grants`]: its keyless rights,
//! and a trie plus a regex set over its key patterns. A decision is then a walk down the
//! key's bytes, whatever the number of rules.
//!
//! Meaning: everything not allowed is denied; a right is granted on a key when some rule that
//! matches the key allows it and no rule that matches the key denies it (a deny wins, in
//! whichever role or block it is written). An identity the policy does not name may do
//! nothing.

mod keys;
mod parse;
mod rights;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

pub use keys::{Entry, Pattern, REGEX_SET_BYTES};
pub use parse::PolicyError;
pub use rights::{NAMES, Rights, named};

use keys::KeyRules;

/// Longest key memcached accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 250;

/// An identity as a policy names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityName {
    /// A connection that presented no credentials.
    Anonymous,
    /// `user:<name>`: authenticated with ASCII auth or SASL.
    User(String),
    /// `cert:<CN>`: a TLS client certificate the server verified, by its subject's CN.
    Cert(String),
    /// `psk:<identity>`: a TLS pre-shared key's identity.
    Psk(String),
    /// `uid:<n>`: a unix-socket peer's user id.
    Uid(u32),
}

impl fmt::Display for IdentityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityName::Anonymous => f.write_str("anonymous"),
            IdentityName::User(name) => write!(f, "user:{name}"),
            IdentityName::Cert(name) => write!(f, "cert:{name}"),
            IdentityName::Psk(name) => write!(f, "psk:{name}"),
            IdentityName::Uid(uid) => write!(f, "uid:{uid}"),
        }
    }
}

impl IdentityName {
    /// Parses `anonymous`, `user:<name>`, `cert:<cn>`, `psk:<identity>` or `uid:<n>`.
    pub fn parse(text: &str) -> Result<IdentityName, String> {
        if text == "anonymous" {
            return Ok(IdentityName::Anonymous);
        }
        let Some((kind, name)) = text.split_once(':') else {
            return Err(format!(
                "`{text}` is no identity: write anonymous, user:<name>, cert:<CN>, psk:<identity> or uid:<n>"
            ));
        };
        if name.is_empty() {
            return Err(format!("`{text}`: the identity's name is empty"));
        }
        match kind {
            "user" => Ok(IdentityName::User(name.to_owned())),
            "cert" => Ok(IdentityName::Cert(name.to_owned())),
            "psk" => Ok(IdentityName::Psk(name.to_owned())),
            "uid" => name
                .parse()
                .map(IdentityName::Uid)
                .map_err(|_| format!("`{text}`: a uid is a number")),
            _ => Err(format!(
                "unknown identity kind `{kind}` in `{text}`: the kinds are user, cert, psk, uid (and anonymous)"
            )),
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    /// The identity may not run this command at all (on no key, or a keyless command it was
    /// not granted).
    Command,
    /// The identity may run this command, but not on one of the request's keys.
    Key,
    /// An admin command from a client that is not on this machine (the server's default
    /// without a policy).
    Admin,
}

impl Denial {
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::Command => "command",
            Denial::Key => "key",
            Denial::Admin => "admin_remote",
        }
    }
}

/// What one identity may do, compiled.
#[derive(Debug)]
pub struct Grants {
    /// Keyless rights allowed and not denied.
    keyless: Rights,
    /// Every keyed right some rule allows on some key: a command outside it is refused
    /// without looking at keys.
    keyed_anywhere: Rights,
    keys: KeyRules,
    rules: usize,
}

impl Grants {
    /// Grants of nothing at all.
    pub fn nothing() -> Grants {
        Grants {
            keyless: Rights::NONE,
            keyed_anywhere: Rights::NONE,
            keys: KeyRules::empty(),
            rules: 0,
        }
    }

    /// A keyless command that needs `need`.
    #[inline]
    pub fn check_keyless(&self, need: Rights) -> Result<(), Denial> {
        if self.keyless.contains(need) {
            Ok(())
        } else {
            Err(Denial::Command)
        }
    }

    /// Whether the command that needs `need` may run at all, before its keys are looked at.
    #[inline]
    pub fn check_command(&self, need: Rights) -> Result<(), Denial> {
        if self.keyed_anywhere.contains(need) {
            Ok(())
        } else {
            Err(Denial::Command)
        }
    }

    /// One key of a keyed command that needs `need` (after [`Grants::check_command`]).
    #[inline]
    pub fn check_key(&self, key: &[u8], need: Rights) -> Result<(), Denial> {
        if self.keys.allows(key, need) {
            Ok(())
        } else {
            Err(Denial::Key)
        }
    }

    /// [`Grants::check_key`], with how many of the key's first bytes settled an allow
    /// (every key that starts with them is allowed `need` as well), when they did.
    #[inline]
    pub fn check_key_settled(&self, key: &[u8], need: Rights) -> Result<Option<usize>, Denial> {
        match self.keys.decide(key, need) {
            (true, settled) => Ok(settled),
            (false, _) => Err(Denial::Key),
        }
    }

    /// The rules this identity's grants were compiled from, its roles' included.
    pub fn rule_count(&self) -> usize {
        self.rules
    }
}

/// A loaded policy.
#[derive(Debug)]
pub struct Policy {
    by_identity: HashMap<IdentityName, Arc<Grants>>,
    nothing: Arc<Grants>,
    rules: usize,
}

impl Policy {
    /// Parses and compiles a policy file's text.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let file = parse::parse(text)?;
        let mut by_identity = HashMap::new();
        for block in &file.identities {
            let rules = file.resolve(block)?;
            let grants =
                Arc::new(compile(&rules).map_err(|(line, message)| PolicyError { line, message })?);
            for name in &block.names {
                by_identity.insert(name.clone(), Arc::clone(&grants));
            }
        }
        Ok(Policy {
            by_identity,
            nothing: Arc::new(Grants::nothing()),
            rules: file.rule_count,
        })
    }

    /// What `who` may do: nothing when the policy does not name it.
    pub fn grants(&self, who: &IdentityName) -> Arc<Grants> {
        Arc::clone(self.by_identity.get(who).unwrap_or(&self.nothing))
    }

    /// Whether the policy names `who`.
    pub fn names(&self, who: &IdentityName) -> bool {
        self.by_identity.contains_key(who)
    }

    /// Rules written in the file.
    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// Identities the file names.
    pub fn identity_count(&self) -> usize {
        self.by_identity.len()
    }
}

/// One rule after roles are resolved.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub line: usize,
    pub allow: bool,
    pub rights: Rights,
    pub patterns: Vec<Pattern>,
}

fn compile(rules: &[Rule]) -> Result<Grants, (usize, String)> {
    let mut keyless = keys::Entry::default();
    let mut keyed = Vec::new();
    let mut lines = Vec::new();
    let mut keyed_anywhere = Rights::NONE;
    for rule in rules {
        let entry = if rule.allow {
            Entry {
                allow: rule.rights,
                deny: Rights::NONE,
            }
        } else {
            Entry {
                allow: Rights::NONE,
                deny: rule.rights,
            }
        };
        if rule.patterns.is_empty() {
            keyless.allow |= entry.allow;
            keyless.deny |= entry.deny;
            continue;
        }
        if rule.allow {
            keyed_anywhere |= rule.rights;
        }
        for pattern in &rule.patterns {
            keyed.push((pattern.clone(), entry));
            lines.push(rule.line);
        }
    }
    let keys = KeyRules::build(&keyed).map_err(|(index, message)| {
        let line = lines.get(index).copied().unwrap_or(0);
        (line, format!("regex set: {message}"))
    })?;
    Ok(Grants {
        keyless: keyless.allow.minus(keyless.deny),
        keyed_anywhere,
        keys,
        rules: rules.len(),
    })
}

#[cfg(test)]
mod tests;
