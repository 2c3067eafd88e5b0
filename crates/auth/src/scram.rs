//! The server side of SASL `SCRAM-SHA-256` (RFC 5802, RFC 7677) and `SCRAM-SHA-512` (the same
//! exchange with SHA-512), without channel binding: two messages from the client, two from the
//! server. The mechanism is a [`ScramHash`]; nothing below depends on which.
//!
//! ```text
//! C: n,,n=<user>,r=<client nonce>                        (SASL auth)
//! S: r=<client nonce><server nonce>,s=<salt>,i=<iterations>   (continue)
//! C: c=biws,r=<both nonces>,p=<ClientProof>               (SASL step)
//! S: v=<ServerSignature>                                  (success)
//! ```
//!
//! The secret used is the user's newest hashed entry of the mechanism's kind; a user with none
//! but a cleartext entry gets one derived on the spot (with a salt fixed per user and
//! mechanism for the store's life), so SCRAM works for every cleartext user. An unknown user,
//! and a user with only hashed entries of the other kind, gets a made-up salt and a secret that
//! matches nothing, made with the same work, so the exchange looks the same until its final
//! check fails.

use openssl::base64;
use thiserror::Error;

use crate::credentials::{CredentialStore, User};
use crate::secret::{DEFAULT_ITERATIONS, ScramHash, ScramSecret};

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
    /// Starts a `hash` exchange (the mechanism the client asked for) from the client's first
    /// message; `server_nonce` must be fresh random printable characters. Returns the exchange
    /// and the server's first message.
    pub fn scram_start(
        &self,
        hash: ScramHash,
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
        let (found, secret) = self.scram_secret(hash, &user);
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
    /// The mechanism this exchange is for.
    pub fn hash(&self) -> ScramHash {
        self.secret.hash()
    }

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
        let hash = self.secret.hash();
        let client_signature = hash
            .hmac(self.secret.stored_key(), &auth_message)
            .map_err(|_| ScramError::WrongProof)?;
        if proof.len() != client_signature.len() {
            return Err(ScramError::WrongProof);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored = hash.hash(&client_key).map_err(|_| ScramError::WrongProof)?;
        // Both are `hash.key_bytes()` long: CRYPTO_memcmp over equal lengths.
        let matched = stored.len() == self.secret.stored_key().len()
            && openssl::memcmp::eq(&stored, self.secret.stored_key());
        let user = match (&self.user, matched) {
            (Some(user), true) => user.clone(),
            _ => return Err(ScramError::WrongProof),
        };
        let signature = hash
            .hmac(self.secret.server_key(), &auth_message)
            .map_err(|_| ScramError::WrongProof)?;
        let mut server_final = b"v=".to_vec();
        server_final.extend_from_slice(base64::encode_block(&signature).as_bytes());
        Ok((user, server_final))
    }
}

fn memchr_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// A salt fixed per user and mechanism for the store's life:
/// `HMAC-SHA-256(store key, mechanism " " purpose user)`. The mechanism is part of it so that
/// a made-up salt differs between SCRAM-SHA-256 and SCRAM-SHA-512 exchanges, as two real
/// entries' random salts do.
pub(crate) fn user_salt(store_key: &[u8], hash: ScramHash, purpose: &str, user: &str) -> Vec<u8> {
    let message = format!("{} {purpose}{user}", hash.mechanism());
    ScramHash::Sha256
        .hmac(store_key, message.as_bytes())
        .ok()
        .and_then(|mac| mac.get(..16).map(<[u8]>::to_vec))
        .unwrap_or_else(|| vec![0x5a; 16])
}

/// A secret no password matches, with a salt that looks like any other, made without a
/// derivation (as a hashed entry's exchange starts without one).
pub(crate) fn unmatched_secret(
    store_key: &[u8],
    hash: ScramHash,
    user: &str,
    iterations: u32,
) -> ScramSecret {
    let salt = user_salt(store_key, hash, "unknown user ", user);
    ScramSecret::unmatched(hash, iterations.max(DEFAULT_ITERATIONS), salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_CLIENT_FIRST: &[u8] = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &[u8] = b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SERVER_FIRST: &[u8] =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    fn rfc_store(hash: ScramHash) -> CredentialStore {
        let salt = base64::decode_block("W22ZaJ0SNY7soEsUEjb6gQ==").expect("base64");
        let secret = ScramSecret::derive(hash, b"pencil", &salt, 4096).expect("derive");
        CredentialStore::parse(&format!("user:{}\n", secret.to_text())).expect("parse")
    }

    /// RFC 7677's exchange, replayed against a store holding its user's secret.
    #[test]
    fn rfc_7677_exchange() {
        let store = rfc_store(ScramHash::Sha256);
        let (exchange, server_first) = store
            .scram_start(ScramHash::Sha256, RFC_CLIENT_FIRST, RFC_SERVER_NONCE)
            .expect("start");
        assert_eq!(server_first, RFC_SERVER_FIRST);
        assert_eq!(exchange.hash(), ScramHash::Sha256);
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

    /// RFC 7677's exchange with SHA-512: the client's final message and the server's
    /// signature were computed independently, with Python's hashlib and hmac (the same script
    /// gives RFC 7677's SHA-256 messages), and pinned here.
    #[test]
    fn sha_512_exchange_matches_an_independent_client() {
        let store = rfc_store(ScramHash::Sha512);
        let (exchange, server_first) = store
            .scram_start(ScramHash::Sha512, RFC_CLIENT_FIRST, RFC_SERVER_NONCE)
            .expect("start");
        assert_eq!(server_first, RFC_SERVER_FIRST);
        assert_eq!(exchange.hash(), ScramHash::Sha512);
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ==";
        let (user, server_final) = exchange.finish(client_final).expect("finish");
        assert_eq!(user.as_str(), "user");
        assert_eq!(
            server_final,
            &b"v=ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq199RVG2rR7N7Zw=="[..]
        );
        // One changed bit of the proof; SHA-256's proof (32 bytes) for the same inputs; an
        // empty proof.
        let wrong = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJg==";
        assert_eq!(exchange.finish(wrong), Err(ScramError::WrongProof));
        let sha256_proof = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(exchange.finish(sha256_proof), Err(ScramError::WrongProof));
        let empty = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=";
        assert!(exchange.finish(empty).is_err());
        // The SHA-256 mechanism finds no SHA-512 secret for the user: its exchange fails even
        // with SHA-256's right proof (the user has no SHA-256 entry).
        let (as_256, _) = store
            .scram_start(ScramHash::Sha256, RFC_CLIENT_FIRST, RFC_SERVER_NONCE)
            .expect("start");
        assert_eq!(as_256.finish(sha256_proof), Err(ScramError::WrongProof));
    }

    #[test]
    fn unknown_users_and_bad_first_messages() {
        let store = CredentialStore::parse("alice:pencil\n").expect("parse");
        for hash in ScramHash::ALL {
            // An unknown user gets a salt and iterations like anyone's, and fails at the end.
            let (exchange, first) = store
                .scram_start(hash, b"n,,n=nobody,r=abc", b"xyz")
                .expect("start");
            assert!(first.starts_with(b"r=abcxyz,s="));
            assert!(first.ends_with(b",i=4096"));
            assert!(exchange.finish(b"c=biws,r=abcxyz,p=AAAA").is_err());
            // A cleartext user gets the same salt every time.
            let (_, a) = store
                .scram_start(hash, b"n,,n=alice,r=abc", b"xyz")
                .expect("start");
            let (_, b) = store
                .scram_start(hash, b"n,,n=alice,r=abc", b"xyz")
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
                    store.scram_start(hash, message, b"xyz").map(|_| ()),
                    Err(why),
                    "{hash} {message:?}"
                );
            }
        }
        assert_eq!(sasl_name(b"a=2Cb=3Dc").as_deref(), Ok("a,b=c"));
    }

    /// The made-up salts differ between the mechanisms (as two real entries' do), and a user
    /// with only a SCRAM-SHA-256 entry starts a SCRAM-SHA-512 exchange exactly as an unknown
    /// user of that name would.
    #[test]
    fn a_user_without_a_sha_512_entry_looks_unknown_to_sha_512() {
        let key = [7u8; 32];
        let sha256 = ScramSecret::generate(ScramHash::Sha256, b"pw", 4096).expect("generate");
        let mut with_carol = CredentialStore::with_salt_key(key);
        with_carol
            .add_text(&format!("alice:pencil\ncarol:{}\n", sha256.to_text()))
            .expect("parse");
        let mut without = CredentialStore::with_salt_key(key);
        without.add_text("alice:pencil\n").expect("parse");
        let first = |store: &CredentialStore, hash, user: &str| {
            let message = format!("n,,n={user},r=abc");
            let (exchange, first) = store
                .scram_start(hash, message.as_bytes(), b"xyz")
                .expect("start");
            assert!(exchange.finish(b"c=biws,r=abcxyz,p=AAAA").is_err());
            first
        };
        assert_eq!(
            first(&with_carol, ScramHash::Sha512, "carol"),
            first(&without, ScramHash::Sha512, "carol")
        );
        for (store, user) in [(&with_carol, "alice"), (&without, "nobody")] {
            assert_ne!(
                first(store, ScramHash::Sha256, user),
                first(store, ScramHash::Sha512, user),
                "{user}"
            );
        }
    }

    /// `client-final-message` for `password`, computed here from the server's first message.
    fn client_final(
        hash: ScramHash,
        password: &[u8],
        client_first_bare: &str,
        server_first: &[u8],
    ) -> Vec<u8> {
        let server_first = std::str::from_utf8(server_first).expect("ascii");
        let field = |name: &str| {
            server_first
                .split(',')
                .find_map(|f| f.strip_prefix(name))
                .expect("a field")
                .to_string()
        };
        let (nonce, salt) = (field("r="), field("s="));
        let salt = base64::decode_block(&salt).expect("base64");
        let secret = ScramSecret::derive(hash, password, &salt, 4096).expect("derive");
        let mut salted = vec![0u8; hash.key_bytes()];
        let digest = match hash {
            ScramHash::Sha256 => openssl::hash::MessageDigest::sha256(),
            ScramHash::Sha512 => openssl::hash::MessageDigest::sha512(),
        };
        openssl::pkcs5::pbkdf2_hmac(password, &salt, 4096, digest, &mut salted).expect("pbkdf2");
        let client_key = hash.hmac(&salted, b"Client Key").expect("hmac");
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hash
            .hmac(secret.stored_key(), auth_message.as_bytes())
            .expect("hmac");
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", base64::encode_block(&proof)).into_bytes()
    }

    /// A cleartext user authenticates with either mechanism; a user with both kinds of entry
    /// with each; a user with only a SHA-256 entry not with SCRAM-SHA-512, even with the
    /// right password.
    #[test]
    fn each_mechanism_uses_its_own_entries() {
        let entry = |hash| {
            ScramSecret::generate(hash, b"pencil", 4096)
                .expect("generate")
                .to_text()
        };
        let store = CredentialStore::parse(&format!(
            "alice:pencil\nbob:{}\nbob:{}\ncarol:{}\n",
            entry(ScramHash::Sha256),
            entry(ScramHash::Sha512),
            entry(ScramHash::Sha256)
        ))
        .expect("parse");
        for (user, hash, works) in [
            ("alice", ScramHash::Sha256, true),
            ("alice", ScramHash::Sha512, true),
            ("bob", ScramHash::Sha256, true),
            ("bob", ScramHash::Sha512, true),
            ("carol", ScramHash::Sha256, true),
            ("carol", ScramHash::Sha512, false),
        ] {
            let bare = format!("n={user},r=cn");
            let (exchange, first) = store
                .scram_start(hash, format!("n,,{bare}").as_bytes(), b"sn")
                .expect("start");
            let last = client_final(hash, b"pencil", &bare, &first);
            let got = exchange.finish(&last).map(|(user, _)| user.to_string());
            assert_eq!(got.is_ok(), works, "{user} {hash}: {got:?}");
            if works {
                assert_eq!(got.as_deref(), Ok(user));
                let wrong = client_final(hash, b"pencil!", &bare, &first);
                assert_eq!(exchange.finish(&wrong), Err(ScramError::WrongProof));
            }
        }
    }
}
