//! The server side of SASL `SCRAM-SHA-256` (RFC 5802, RFC 7677), without channel binding:
//! two messages from the client, two from the server.
//!
//! ```text
//! C: n,,n=<user>,r=<client nonce>                        (SASL auth)
//! S: r=<client nonce><server nonce>,s=<salt>,i=<iterations>   (continue)
//! C: c=biws,r=<both nonces>,p=<ClientProof>               (SASL step)
//! S: v=<ServerSignature>                                  (success)
//! ```
//!
//! The secret used is the user's newest hashed entry; a user with only cleartext entries gets
//! one derived on the spot (with a salt fixed per user for the store's life), so SCRAM works
//! for every user. An unknown user gets a made-up salt and a secret that matches nothing,
//! derived the same way, so the exchange looks the same until its final check fails.

use openssl::base64;
use thiserror::Error;

use crate::credentials::{CredentialStore, User};
use crate::secret::{DEFAULT_ITERATIONS, ScramSecret, hmac, sha256};

/// The mechanism's name, as the client asks for it.
pub const SCRAM_SHA_256: &[u8] = b"SCRAM-SHA-256";
/// Longest SCRAM message taken.
const MAX_MESSAGE_BYTES: usize = 1024;

/// Why an exchange fails (all answered as an authentication failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ScramError {
    #[error("a malformed SCRAM message")]
    Malformed,
    #[error("channel binding is not offered")]
    ChannelBinding,
    #[error("the authorization identity differs from the user")]
    OtherIdentity,
    #[error("the nonce or channel binding changed between messages")]
    Mismatch,
    #[error("the proof is wrong")]
    WrongProof,
}

/// A started exchange: what the server must remember between its two messages.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramExchange {
    /// `None` for an unknown user: the exchange fails at its end.
    user: Option<User>,
    secret: ScramSecret,
    gs2_header: Vec<u8>,
    nonce: Vec<u8>,
    /// `client-first-message-bare "," server-first-message`.
    auth_prefix: Vec<u8>,
}

impl std::fmt::Debug for ScramExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramExchange").finish_non_exhaustive()
    }
}

/// `saslname` with RFC 5802's escapes (`=2C` is `,`, `=3D` is `=`) undone.
fn sasl_name(raw: &[u8]) -> Result<String, ScramError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'=' => {
                match raw.get(i + 1..i + 3) {
                    Some(b"2C") => out.push(b','),
                    Some(b"3D") => out.push(b'='),
                    _ => return Err(ScramError::Malformed),
                }
                i += 3;
            }
            b',' => return Err(ScramError::Malformed),
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ScramError::Malformed)
}

fn valid_nonce(nonce: &[u8]) -> bool {
    !nonce.is_empty()
        && nonce
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}

impl CredentialStore {
    /// Starts an exchange from the client's first message; `server_nonce` must be fresh
    /// random printable characters. Returns the exchange and the server's first message.
    pub fn scram_start(
        &self,
        client_first: &[u8],
        server_nonce: &[u8],
    ) -> Result<(ScramExchange, Vec<u8>), ScramError> {
        if client_first.len() > MAX_MESSAGE_BYTES || !valid_nonce(server_nonce) {
            return Err(ScramError::Malformed);
        }
        // gs2-header: cbind-flag "," [ "a=" authzid ] ","
        let mut parts = client_first.splitn(3, |&b| b == b',');
        let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ScramError::Malformed);
        };
        match flag {
            b"n" | b"y" => {}
            f if f.starts_with(b"p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed),
        }
        let gs2_header = client_first[..flag.len() + authzid.len() + 2].to_vec();
        let mut fields = bare.split(|&b| b == b',');
        let user = match fields.next() {
            Some(field) if field.starts_with(b"n=") => sasl_name(&field[2..])?,
            _ => return Err(ScramError::Malformed),
        };
        let client_nonce = match fields.next() {
            Some(field) if field.starts_with(b"r=") && valid_nonce(&field[2..]) => &field[2..],
            _ => return Err(ScramError::Malformed),
        };
        // Extensions, if any, are `<letter>=<value>`.
        let extension = |f: &[u8]| f.len() >= 2 && f[0].is_ascii_alphabetic() && f[1] == b'=';
        if bare.starts_with(b"m=") || user.is_empty() || !fields.all(extension) {
            return Err(ScramError::Malformed);
        }
        if !authzid.is_empty() {
            let named = authzid
                .strip_prefix(b"a=")
                .ok_or(ScramError::Malformed)
                .and_then(sasl_name)?;
            if named != user {
                return Err(ScramError::OtherIdentity);
            }
        }
        let (found, secret) = self.scram_secret(&user);
        let mut nonce = client_nonce.to_vec();
        nonce.extend_from_slice(server_nonce);
        let mut server_first = b"r=".to_vec();
        server_first.extend_from_slice(&nonce);
        server_first.extend_from_slice(b",s=");
        server_first.extend_from_slice(base64::encode_block(secret.salt()).as_bytes());
        server_first.extend_from_slice(format!(",i={}", secret.iterations()).as_bytes());
        let mut auth_prefix = bare.to_vec();
        auth_prefix.push(b',');
        auth_prefix.extend_from_slice(&server_first);
        Ok((
            ScramExchange {
                user: found,
                secret,
                gs2_header,
                nonce,
                auth_prefix,
            },
            server_first,
        ))
    }
}

impl ScramExchange {
    /// Checks the client's final message. On success: the user and the server's final
    /// message (`v=<ServerSignature>`), which the client checks in turn.
    pub fn finish(&self, client_final: &[u8]) -> Result<(User, Vec<u8>), ScramError> {
        if client_final.len() > MAX_MESSAGE_BYTES {
            return Err(ScramError::Malformed);
        }
        let proof_at = memchr_last(client_final, b",p=").ok_or(ScramError::Malformed)?;
        let without_proof = &client_final[..proof_at];
        let proof = base64::decode_block(
            std::str::from_utf8(&client_final[proof_at + 3..])
                .map_err(|_| ScramError::Malformed)?,
        )
        .map_err(|_| ScramError::Malformed)?;
        let mut fields = without_proof.split(|&b| b == b',');
        let binding = match fields.next() {
            Some(field) if field.starts_with(b"c=") => base64::decode_block(
                std::str::from_utf8(&field[2..]).map_err(|_| ScramError::Malformed)?,
            )
            .map_err(|_| ScramError::Malformed)?,
            _ => return Err(ScramError::Malformed),
        };
        let nonce = match fields.next() {
            Some(field) if field.starts_with(b"r=") => &field[2..],
            _ => return Err(ScramError::Malformed),
        };
        if binding != self.gs2_header || nonce != self.nonce.as_slice() {
            return Err(ScramError::Mismatch);
        }
        let mut auth_message = self.auth_prefix.clone();
        auth_message.push(b',');
        auth_message.extend_from_slice(without_proof);
        let client_signature =
            hmac(self.secret.stored_key(), &auth_message).map_err(|_| ScramError::WrongProof)?;
        if proof.len() != client_signature.len() {
            return Err(ScramError::WrongProof);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored = sha256(&client_key).map_err(|_| ScramError::WrongProof)?;
        let matched = openssl::memcmp::eq(&stored, self.secret.stored_key());
        let user = match (&self.user, matched) {
            (Some(user), true) => user.clone(),
            _ => return Err(ScramError::WrongProof),
        };
        let signature =
            hmac(self.secret.server_key(), &auth_message).map_err(|_| ScramError::WrongProof)?;
        let mut server_final = b"v=".to_vec();
        server_final.extend_from_slice(base64::encode_block(&signature).as_bytes());
        Ok((user, server_final))
    }
}

fn memchr_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// A salt fixed per user for the store's life: `HMAC(store key, purpose ++ user)`.
pub(crate) fn user_salt(store_key: &[u8], purpose: &[u8], user: &str) -> Vec<u8> {
    let mut message = purpose.to_vec();
    message.extend_from_slice(user.as_bytes());
    hmac(store_key, &message)
        .map(|mac| mac[..16].to_vec())
        .unwrap_or_else(|_| vec![0x5a; 16])
}

/// A secret no password matches, with a salt that looks like any other, made without a
/// derivation (as a hashed entry's exchange starts without one).
pub(crate) fn unmatched_secret(store_key: &[u8], user: &str, iterations: u32) -> ScramSecret {
    let salt = user_salt(store_key, b"unknown user ", user);
    let mut keys = [0u8; 64];
    let _ = openssl::rand::rand_bytes(&mut keys);
    let mut stored = [0u8; 32];
    let mut server = [0u8; 32];
    stored.copy_from_slice(&keys[..32]);
    server.copy_from_slice(&keys[32..]);
    ScramSecret::from_parts(iterations.max(DEFAULT_ITERATIONS), salt, stored, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's exchange, replayed against a store holding its user's secret.
    #[test]
    fn rfc_7677_exchange() {
        let salt = base64::decode_block("W22ZaJ0SNY7soEsUEjb6gQ==").expect("base64");
        let secret = ScramSecret::derive(b"pencil", &salt, 4096).expect("derive");
        let store = CredentialStore::parse(&format!("user:{}\n", secret.to_text())).expect("parse");
        let (exchange, server_first) = store
            .scram_start(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            )
            .expect("start");
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let (user, server_final) = exchange.finish(client_final).expect("finish");
        assert_eq!(user.as_str(), "user");
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // A changed proof, nonce or binding fails.
        let wrong = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU=";
        assert_eq!(exchange.finish(wrong), Err(ScramError::WrongProof));
        let other_nonce =
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(exchange.finish(other_nonce), Err(ScramError::Mismatch));
        let other_binding = b"c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(exchange.finish(other_binding), Err(ScramError::Mismatch));
    }

    #[test]
    fn unknown_users_and_bad_first_messages() {
        let store = CredentialStore::parse("alice:pencil\n").expect("parse");
        // An unknown user gets a salt and iterations like anyone's, and fails at the end.
        let (exchange, first) = store
            .scram_start(b"n,,n=nobody,r=abc", b"xyz")
            .expect("start");
        assert!(first.starts_with(b"r=abcxyz,s="));
        assert!(first.ends_with(b",i=4096"));
        assert!(exchange.finish(b"c=biws,r=abcxyz,p=AAAA").is_err());
        // A cleartext user gets the same salt every time.
        let (_, a) = store
            .scram_start(b"n,,n=alice,r=abc", b"xyz")
            .expect("start");
        let (_, b) = store
            .scram_start(b"n,,n=alice,r=abc", b"xyz")
            .expect("start");
        assert_eq!(a, b);
        for (message, why) in [
            (
                &b"p=tls-unique,,n=alice,r=abc"[..],
                ScramError::ChannelBinding,
            ),
            (b"n,a=bob,n=alice,r=abc", ScramError::OtherIdentity),
            (b"x,,n=alice,r=abc", ScramError::Malformed),
            (b"n,,n=alice", ScramError::Malformed),
            (b"n,,n=al=ice,r=abc", ScramError::Malformed),
            (b"n,,m=ext,n=alice,r=abc", ScramError::Malformed),
            (b"n,,n=,r=abc", ScramError::Malformed),
            (b"n,,n=alice,r=a,c", ScramError::Malformed),
        ] {
            assert_eq!(
                store.scram_start(message, b"xyz").map(|_| ()),
                Err(why),
                "{message:?}"
            );
        }
        assert_eq!(sasl_name(b"a=2Cb=3Dc").as_deref(), Ok("a,b=c"));
    }

    /// A client computed here with the password: a cleartext user authenticates by SCRAM.
    #[test]
    fn cleartext_users_authenticate_with_scram() {
        let store = CredentialStore::parse("alice:pencil\n").expect("parse");
        let (exchange, first) = store.scram_start(b"n,,n=alice,r=cn", b"sn").expect("start");
        let first = String::from_utf8(first).expect("ascii");
        let salt = first
            .split(",s=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .expect("salt");
        let salt = base64::decode_block(salt).expect("base64");
        let secret = ScramSecret::derive(b"pencil", &salt, 4096).expect("derive");
        let without_proof = b"c=biws,r=cnsn";
        let auth_message = format!("n=alice,r=cn,{first},c=biws,r=cnsn");
        let mut salted = [0u8; 32];
        openssl::pkcs5::pbkdf2_hmac(
            b"pencil",
            &salt,
            4096,
            openssl::hash::MessageDigest::sha256(),
            &mut salted,
        )
        .expect("pbkdf2");
        let client_key = hmac(&salted, b"Client Key").expect("hmac");
        let signature = hmac(secret.stored_key(), auth_message.as_bytes()).expect("hmac");
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let mut client_final = without_proof.to_vec();
        client_final.extend_from_slice(format!(",p={}", base64::encode_block(&proof)).as_bytes());
        let (user, _) = exchange.finish(&client_final).expect("finish");
        assert_eq!(user.as_str(), "alice");
    }
}
