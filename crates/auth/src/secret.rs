//! SCRAM-SHA-256 secrets (RFC 5802, RFC 7677): what the credential file stores instead of a
//! password, and from which a password is checked without being stored.
//!
//! From a password, a random salt and an iteration count `i`:
//! `SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, i)`,
//! `StoredKey = SHA-256(HMAC(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`. The file keeps salt, `i`, `StoredKey` and
//! `ServerKey` (a SCRAM exchange needs exactly these); checking a password recomputes
//! `StoredKey` and compares.
//!
//! The text form is PostgreSQL's: `SCRAM-SHA-256$<i>:<salt>$<StoredKey>:<ServerKey>`, each
//! binary part in standard base64.

use openssl::base64;
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::PKey;
use openssl::sign::Signer;
use thiserror::Error;

/// The prefix that marks a hashed entry.
pub const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";
/// RFC 7677's minimum, and the default for new entries.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Entries with fewer iterations are refused: they would be cheap to attack.
pub const MIN_ITERATIONS: u32 = 4096;
/// Entries with more are refused: each check runs on a serving thread (100,000 iterations
/// take about 50 ms).
pub const MAX_ITERATIONS: u32 = 100_000;
const KEY_BYTES: usize = 32;
const MIN_SALT_BYTES: usize = 8;

/// A hashed credential.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; KEY_BYTES],
    server_key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why a hashed entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretError {
    #[error("a SCRAM-SHA-256 entry is SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>")]
    Shape,
    #[error("the iteration count must be a number from {MIN_ITERATIONS} to {MAX_ITERATIONS}")]
    Iterations,
    #[error("the salt must be base64 of at least {MIN_SALT_BYTES} bytes")]
    Salt,
    #[error("StoredKey and ServerKey must be base64 of {KEY_BYTES} bytes each")]
    Key,
    #[error("OpenSSL failed: {0}")]
    Crypto(String),
}

fn crypto(err: openssl::error::ErrorStack) -> SecretError {
    SecretError::Crypto(err.to_string())
}

pub(crate) fn hmac(key: &[u8], message: &[u8]) -> Result<[u8; KEY_BYTES], SecretError> {
    let key = PKey::hmac(key).map_err(crypto)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &key).map_err(crypto)?;
    signer.update(message).map_err(crypto)?;
    let mut out = [0u8; KEY_BYTES];
    signer.sign(&mut out).map_err(crypto)?;
    Ok(out)
}

pub(crate) fn sha256(message: &[u8]) -> Result<[u8; KEY_BYTES], SecretError> {
    let digest = hash(MessageDigest::sha256(), message).map_err(crypto)?;
    let mut out = [0u8; KEY_BYTES];
    out.copy_from_slice(&digest);
    Ok(out)
}

fn salted_password(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Result<[u8; KEY_BYTES], SecretError> {
    let mut out = [0u8; KEY_BYTES];
    openssl::pkcs5::pbkdf2_hmac(
        password,
        salt,
        iterations as usize,
        MessageDigest::sha256(),
        &mut out,
    )
    .map_err(crypto)?;
    Ok(out)
}

fn decode_key(text: &str) -> Result<[u8; KEY_BYTES], SecretError> {
    let bytes = base64::decode_block(text).map_err(|_| SecretError::Key)?;
    bytes.try_into().map_err(|_| SecretError::Key)
}

impl ScramSecret {
    /// The secret of `password` with `salt` and `iterations`.
    pub fn derive(
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramSecret, SecretError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(SecretError::Iterations);
        }
        if salt.len() < MIN_SALT_BYTES {
            return Err(SecretError::Salt);
        }
        let salted = salted_password(password, salt, iterations)?;
        Ok(ScramSecret {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&hmac(&salted, b"Client Key")?)?,
            server_key: hmac(&salted, b"Server Key")?,
        })
    }

    /// A secret from its parts (a made-up one for an unknown user).
    pub(crate) fn from_parts(
        iterations: u32,
        salt: Vec<u8>,
        stored_key: [u8; KEY_BYTES],
        server_key: [u8; KEY_BYTES],
    ) -> ScramSecret {
        ScramSecret {
            iterations,
            salt,
            stored_key,
            server_key,
        }
    }

    /// A new secret for `password` with a random 16-byte salt.
    pub fn generate(password: &[u8], iterations: u32) -> Result<ScramSecret, SecretError> {
        let mut salt = [0u8; 16];
        openssl::rand::rand_bytes(&mut salt).map_err(crypto)?;
        ScramSecret::derive(password, &salt, iterations)
    }

    /// Parses the text form (with its `SCRAM-SHA-256$` prefix).
    pub fn parse(text: &str) -> Result<ScramSecret, SecretError> {
        let rest = text.strip_prefix(SCRAM_PREFIX).ok_or(SecretError::Shape)?;
        let (params, keys) = rest.split_once('$').ok_or(SecretError::Shape)?;
        let (iterations, salt) = params.split_once(':').ok_or(SecretError::Shape)?;
        let (stored, server) = keys.split_once(':').ok_or(SecretError::Shape)?;
        let iterations: u32 = iterations.parse().map_err(|_| SecretError::Iterations)?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(SecretError::Iterations);
        }
        let salt = base64::decode_block(salt).map_err(|_| SecretError::Salt)?;
        if salt.len() < MIN_SALT_BYTES {
            return Err(SecretError::Salt);
        }
        Ok(ScramSecret {
            iterations,
            salt,
            stored_key: decode_key(stored)?,
            server_key: decode_key(server)?,
        })
    }

    /// The text form, for the credential file.
    pub fn to_text(&self) -> String {
        format!(
            "{SCRAM_PREFIX}{}:{}${}:{}",
            self.iterations,
            base64::encode_block(&self.salt),
            base64::encode_block(&self.stored_key),
            base64::encode_block(&self.server_key)
        )
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub(crate) fn salt(&self) -> &[u8] {
        &self.salt
    }

    pub(crate) fn stored_key(&self) -> &[u8; KEY_BYTES] {
        &self.stored_key
    }

    pub(crate) fn server_key(&self) -> &[u8; KEY_BYTES] {
        &self.server_key
    }

    /// Whether `password` is the one this secret was made from (the full derivation, then a
    /// constant-time comparison).
    pub fn matches(&self, password: &[u8]) -> bool {
        let Ok(salted) = salted_password(password, &self.salt, self.iterations) else {
            return false;
        };
        let Ok(client_key) = hmac(&salted, b"Client Key") else {
            return false;
        };
        let Ok(stored) = sha256(&client_key) else {
            return false;
        };
        openssl::memcmp::eq(&stored, &self.stored_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example: user "user", password "pencil", salt
    /// "W22ZaJ0SNY7soEsUEjb6gQ==", 4096 iterations; its ServerSignature checks out only with
    /// the right ServerKey, and StoredKey follows from the ClientProof, so both are fixed by it.
    #[test]
    fn derivation_matches_rfc_7677() {
        let salt = base64::decode_block("W22ZaJ0SNY7soEsUEjb6gQ==").expect("base64");
        let secret = ScramSecret::derive(b"pencil", &salt, 4096).expect("derive");
        // The RFC's AuthMessage and signatures, recomputed from the keys.
        let auth_message = b"n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature = hmac(&secret.server_key, auth_message).expect("hmac");
        assert_eq!(
            base64::encode_block(&server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let client_signature = hmac(&secret.stored_key, auth_message).expect("hmac");
        let proof = base64::decode_block("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap_or_default();
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(sha256(&client_key).expect("sha"), secret.stored_key);
        assert!(secret.matches(b"pencil"));
        assert!(!secret.matches(b"pencil "));
        assert!(!secret.matches(b""));
    }

    #[test]
    fn the_text_form_round_trips_and_is_checked() {
        let secret = ScramSecret::generate(b"s3cret", DEFAULT_ITERATIONS).expect("generate");
        let text = secret.to_text();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        let parsed = ScramSecret::parse(&text).expect("parse");
        assert_eq!(parsed, secret);
        assert!(parsed.matches(b"s3cret"));
        assert!(!format!("{parsed:?}").contains(&base64::encode_block(&parsed.stored_key)));
        for (bad, why) in [
            ("SCRAM-SHA-256$4096:c2FsdHNhbHQ=", SecretError::Shape),
            (
                "SCRAM-SHA-256$10:c2FsdHNhbHQ=$AA==:AA==",
                SecretError::Iterations,
            ),
            (
                "SCRAM-SHA-256$x:c2FsdHNhbHQ=$AA==:AA==",
                SecretError::Iterations,
            ),
            ("SCRAM-SHA-256$4096:c2E=$AA==:AA==", SecretError::Salt),
            (
                "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$AA==:AA==",
                SecretError::Key,
            ),
            ("MD5$x", SecretError::Shape),
        ] {
            assert_eq!(ScramSecret::parse(bad), Err(why), "{bad}");
        }
    }
}
