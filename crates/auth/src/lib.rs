//! Authentication for rampart, without I/O: the credential file (memcached's `user:password`
//! lines and salted, iterated SCRAM secrets), password checks that take the same work whether
//! or not the user exists, and the SASL mechanisms' message parsing.
//!
//! The server owns one [`CredentialStore`] (built from `-Y`, `-S`'s `MEMCACHED_SASL_PWDB` or
//! both) and asks it [`CredentialStore::check_password`] for ASCII auth and SASL `PLAIN`, and
//! [`CredentialStore::scram_start`] then [`ScramExchange::finish`] for `SCRAM-SHA-256` and
//! `SCRAM-SHA-512` (a [`ScramHash`] names which; [`CredentialStore::lists`] says which to
//! offer). The store never logs, formats or returns a secret; comparisons are constant-time
//! (`CRYPTO_memcmp`). [`CertUserRule`] says which user a verified client certificate names
//! (`-o ssl_cert_user`).
//!
//! Non-goals: reading files (the server reads and checks permissions, then hands the text
//! here), sockets, clocks, counters.

mod certmap;
mod credentials;
mod plain;
pub mod policy;
mod scram;
mod secret;

pub use certmap::{CertField, CertNames, CertRuleError, CertUserRule};
pub use credentials::{CredentialStore, FileError, User};
pub use plain::{PlainError, PlainMessage};
pub use scram::{ScramError, ScramExchange};
pub use secret::{
    DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS, ScramHash, ScramSecret, SecretError,
};
