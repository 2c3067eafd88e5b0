//! What the authentication tests share: credential entries written by `rampart passwd`,
//! binary SASL requests, and a SCRAM client (RFC 5802) of either hash to drive an exchange
//! step by step.

use std::io::Write;
use std::process::{Command, Stdio};

use openssl::base64;
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::PKey;
use openssl::sign::Signer;

use crate::Kind;

/// `rampart passwd [--mechanism <mechanism>] <user>` with `password` on standard input: its
/// output (one line, or two for `both`), which must not contain the password.
pub fn passwd(user: &str, password: &str, mechanism: Option<&str>) -> String {
    let mut cmd = Command::new(Kind::Rampart.binary());
    cmd.arg("passwd");
    if let Some(mechanism) = mechanism {
        cmd.args(["--mechanism", mechanism]);
    }
    let mut child = cmd
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rampart passwd");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("rampart passwd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(!text.contains(password), "the password is in the entry");
    text
}

/// A binary request: `opcode`, `key`, `value`, no extras, opaque `0xdeadbeef`.
pub fn packet(opcode: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&((key.len() + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// `HMAC(digest, key, message)`.
pub fn hmac(digest: MessageDigest, key: &[u8], message: &[u8]) -> Vec<u8> {
    let key = PKey::hmac(key).expect("hmac key");
    let mut signer = Signer::new(digest, &key).expect("signer");
    signer.update(message).expect("update");
    signer.sign_to_vec().expect("sign")
}

/// SCRAM's `SaltedPassword`: PBKDF2 of `password` with `digest`'s length.
pub fn salted_password(
    digest: MessageDigest,
    password: &str,
    salt: &[u8],
    iterations: usize,
) -> Vec<u8> {
    let mut salted = vec![0u8; digest.size()];
    openssl::pkcs5::pbkdf2_hmac(password.as_bytes(), salt, iterations, digest, &mut salted)
        .expect("pbkdf2");
    salted
}

/// The `client-final-message` for `password` (SHA-256 or SHA-512 by `digest`), given the
/// client-first-message-bare and the server-first-message.
pub fn scram_final(
    digest: MessageDigest,
    password: &str,
    client_first_bare: &str,
    server_first: &str,
) -> String {
    let field = |name: &str| {
        server_first
            .split(',')
            .find_map(|f| f.strip_prefix(name))
            .expect("a server-first field")
            .to_string()
    };
    let (nonce, salt, iterations) = (field("r="), field("s="), field("i="));
    let salt = base64::decode_block(&salt).expect("salt");
    let iterations = iterations.parse().expect("iterations");
    let salted = salted_password(digest, password, &salt, iterations);
    let client_key = hmac(digest, &salted, b"Client Key");
    let stored_key = hash(digest, &client_key).expect("hash");
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(digest, &stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    format!("{without_proof},p={}", base64::encode_block(&proof))
}
