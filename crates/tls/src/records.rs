//! TLS record protection for established connections: TLS 1.3 (RFC 8446 section 5) and
//! TLS 1.2's AEAD suites (AES-GCM, RFC 5288; ChaCha20-Poly1305, RFC 7905).
//!
//! Once a handshake is over, OpenSSL's connection object (about 14 KiB: the `SSL`
//! itself 7.6 KiB, both key shares, the session, the handshake digest) is no longer needed
//! for what the connection does: protect and check application data. The session hands over
//! to a [`RecordLayer`], which keeps per direction only an AEAD context (OpenSSL's EVP, so
//! the cryptography is still OpenSSL's), its static IV, its sequence number and the traffic
//! secret KeyUpdate derives the next one from: about 2.3 KiB in all. It seals into and opens
//! from rampart's own buffers, without OpenSSL's record buffers and the copies in and out of
//! them. The kernel's TLS offload (kTLS) takes over the same state the same way.
//!
//! TLS 1.2 differs in the record's shape (the real content type in the header, no padding,
//! AES-GCM's 8-byte explicit nonce, which we set to the sequence number as OpenSSL does, and
//! additional data of sequence number, type, version and plaintext length) and in its key
//! schedule (one PRF key block from the master secret); it has no KeyUpdate, and
//! renegotiation (a handshake message after the handshake) is refused as OpenSSL's
//! `SSL_OP_NO_RENEGOTIATION` context refuses it, except that the refusal is fatal; a header
//! version other than 3.3 is refused (`protocol_version`), since 1.2 does not authenticate it;
//! alerts are taken as OpenSSL's record layer takes them (`RecordLayer::alert`: warnings
//! other than close_notify and `no_renegotiation` are ignored).
//!
//! What the layer does after a TLS 1.3 handshake is all a TLS 1.3 server may meet there:
//! application data, alerts (close_notify ends the peer's side; `user_canceled` is ignored,
//! as OpenSSL ignores it, and the fifth ignored alert in a row is an error; any other alert
//! ends the connection) and KeyUpdate (both directions; an update the peer requests is
//! answered once, before our next record, however many requests came: RFC 8446 4.6.3; and
//! our write key is changed after [`RECORDS_PER_KEY`] records, RFC 8446 5.5). Anything else after the
//! handshake (a record type other than application_data, a handshake message other than
//! KeyUpdate, a KeyUpdate not aligned with its record, a record without a content type) is
//! answered with the fatal alert RFC 8446 names and the connection ends. Sequence numbers
//! never wrap: the 2^64th record in one direction is an error.

use openssl::cipher::{Cipher, CipherRef};
use openssl::cipher_ctx::CipherCtx;
use openssl::error::ErrorStack;
use openssl::hash::{Hasher, MessageDigest};

/// Largest plaintext in one record (2^14).
pub(crate) const MAX_PLAINTEXT: usize = 16 * 1024;
/// Record header: type, legacy version, length.
pub(crate) const HEADER: usize = 5;
/// Largest protected payload a peer may send (2^14 + 256 in TLS 1.3; 2^14 + 2048 in 1.2).
pub(crate) const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
const MAX_CIPHERTEXT_12: usize = MAX_PLAINTEXT + 2048;
/// AES-GCM's explicit nonce in a TLS 1.2 record.
const EXPLICIT_NONCE: usize = 8;
const TAG: usize = 16;
const NONCE: usize = 12;
/// The largest hash of the suites (SHA-384).
const MAX_SECRET: usize = 48;

const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const KEY_UPDATE: u8 = 24;
/// TLS 1.2's version number, which every TLS 1.3 record carries.
const LEGACY_VERSION: [u8; 2] = [3, 3];

/// Alert descriptions (RFC 8446 6).
pub(crate) const CLOSE_NOTIFY: u8 = 0;
const UNEXPECTED_MESSAGE: u8 = 10;
const BAD_RECORD_MAC: u8 = 20;
const RECORD_OVERFLOW: u8 = 22;
const ILLEGAL_PARAMETER: u8 = 47;
const PROTOCOL_VERSION: u8 = 70;
const DECODE_ERROR: u8 = 50;
const INTERNAL_ERROR: u8 = 80;
const HANDSHAKE_FAILURE: u8 = 40;
const USER_CANCELED: u8 = 90;
const NO_RENEGOTIATION: u8 = 100;
/// Alert levels.
const WARNING: u8 = 1;
const FATAL: u8 = 2;

/// Records sealed under one TLS 1.3 write key before the layer changes it with a KeyUpdate
/// of its own. RFC 8446 5.5 bounds AES-GCM at 2^24.5 full-size records per key; 2^24 is
/// under that for every suite (ChaCha20-Poly1305's bound is far beyond it). One connection
/// answering 50,000 requests a second reaches it in about six minutes.
const RECORDS_PER_KEY: u64 = 1 << 24;
/// Ignored alerts in a row that end the connection (OpenSSL's `MAX_WARN_ALERT_COUNT`: the
/// fifth), so a peer cannot keep the server opening nothing but alerts.
const MAX_WARNINGS: u8 = 5;

/// The AEADs and hashes the layer protects records with: TLS 1.3's suites but CCM, and the
/// same AEAD and PRF hash pairs among TLS 1.2's suites (CBC and CCM suites stay with
/// OpenSSL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suite {
    Aes128GcmSha256,
    Aes256GcmSha384,
    Chacha20Poly1305Sha256,
}

/// The protocol version whose record format the layer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Tls12,
    Tls13,
}

impl Suite {
    /// The suite of OpenSSL's (and the RFC's) name for it.
    pub(crate) fn from_name(name: &str) -> Option<Suite> {
        match name {
            "TLS_AES_128_GCM_SHA256" => Some(Suite::Aes128GcmSha256),
            "TLS_AES_256_GCM_SHA384" => Some(Suite::Aes256GcmSha384),
            "TLS_CHACHA20_POLY1305_SHA256" => Some(Suite::Chacha20Poly1305Sha256),
            _ => None,
        }
    }

    /// A TLS 1.2 suite's AEAD (OpenSSL's `SSL_CIPHER_get_cipher_nid`) and PRF hash
    /// (`SSL_CIPHER_get_handshake_digest`), if the layer has it.
    pub(crate) fn from_parts(aead: openssl::nid::Nid, prf: openssl::nid::Nid) -> Option<Suite> {
        use openssl::nid::Nid;
        match (aead, prf) {
            (Nid::AES_128_GCM, Nid::SHA256) => Some(Suite::Aes128GcmSha256),
            (Nid::AES_256_GCM, Nid::SHA384) => Some(Suite::Aes256GcmSha384),
            (Nid::CHACHA20_POLY1305, Nid::SHA256) => Some(Suite::Chacha20Poly1305Sha256),
            _ => None,
        }
    }

    /// The length of the fixed IV TLS 1.2 derives: AES-GCM's 4-byte salt, ChaCha20's 12.
    fn fixed_iv_len_12(self) -> usize {
        match self {
            Suite::Aes128GcmSha256 | Suite::Aes256GcmSha384 => 4,
            Suite::Chacha20Poly1305Sha256 => NONCE,
        }
    }

    /// Whether TLS 1.2 records carry an explicit nonce (AES-GCM).
    fn explicit_nonce_12(self) -> bool {
        self.fixed_iv_len_12() < NONCE
    }

    fn cipher(self) -> &'static CipherRef {
        match self {
            Suite::Aes128GcmSha256 => Cipher::aes_128_gcm(),
            Suite::Aes256GcmSha384 => Cipher::aes_256_gcm(),
            Suite::Chacha20Poly1305Sha256 => Cipher::chacha20_poly1305(),
        }
    }

    fn key_len(self) -> usize {
        match self {
            Suite::Aes128GcmSha256 => 16,
            Suite::Aes256GcmSha384 | Suite::Chacha20Poly1305Sha256 => 32,
        }
    }

    fn digest(self) -> MessageDigest {
        match self {
            Suite::Aes256GcmSha384 => MessageDigest::sha384(),
            Suite::Aes128GcmSha256 | Suite::Chacha20Poly1305Sha256 => MessageDigest::sha256(),
        }
    }

    /// The block length of the suite's hash (HMAC's pads).
    fn block_len(self) -> usize {
        match self {
            Suite::Aes256GcmSha384 => 128,
            Suite::Aes128GcmSha256 | Suite::Chacha20Poly1305Sha256 => 64,
        }
    }

    /// The length of the suite's hash, and so of its traffic secrets.
    pub(crate) fn secret_len(self) -> usize {
        match self {
            Suite::Aes256GcmSha384 => 48,
            Suite::Aes128GcmSha256 | Suite::Chacha20Poly1305Sha256 => 32,
        }
    }
}

/// A traffic secret, wiped when dropped.
#[derive(Clone)]
pub(crate) struct Secret {
    bytes: [u8; MAX_SECRET],
    len: u8,
}

impl Secret {
    /// `None` for more than 48 bytes.
    pub(crate) fn new(bytes: &[u8]) -> Option<Secret> {
        let mut secret = Secret {
            bytes: [0; MAX_SECRET],
            len: u8::try_from(bytes.len()).ok()?,
        };
        secret.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(secret)
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Keeps only the first `len` bytes (wiping the rest).
    fn truncate(&mut self, len: usize) {
        let len = len.min(usize::from(self.len));
        wipe(&mut self.bytes[len..]);
        self.len = len as u8;
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.bytes);
    }
}

/// Zeroes key material in a way the compiler may not elide (a plain `fill(0)` of memory
/// that is dropped next is a dead store it can remove).
pub(crate) fn wipe(bytes: &mut [u8]) {
    for byte in bytes {
        // SAFETY: `byte` is a valid, aligned, exclusively borrowed u8; the volatile
        // write only keeps the compiler from eliding the wipe.
        unsafe { std::ptr::write_volatile(byte, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.len)
    }
}

/// HMAC (RFC 2104) of the concatenated `parts`, written out over one hasher: OpenSSL's HMAC
/// through `EVP_PKEY` costs 6.4 us here against 0.7 for this, and a hand-over makes eight or
/// more. `key` is at most 48 bytes, shorter than both hashes' blocks, so it pads as it is.
/// The padded key and the inner hash are wiped; the result is a [`Secret`] (wiped on drop).
fn hmac(suite: Suite, key: &[u8], parts: &[&[u8]]) -> Result<Secret, ErrorStack> {
    let block = suite.block_len();
    let mut pad = [0u8; 128];
    pad[..key.len()].copy_from_slice(key);
    let mut hasher = Hasher::new(suite.digest())?;
    for b in &mut pad[..block] {
        *b ^= 0x36;
    }
    hasher.update(&pad[..block])?;
    for part in parts {
        hasher.update(part)?;
    }
    let mut inner = hasher.finish()?;
    for b in &mut pad[..block] {
        *b ^= 0x36 ^ 0x5c;
    }
    let outer = hasher
        .update(&pad[..block])
        .and_then(|()| hasher.update(&inner))
        .and_then(|()| hasher.finish());
    wipe(&mut pad);
    wipe(&mut inner);
    let mut outer = outer?;
    let secret = Secret::new(&outer).ok_or_else(ErrorStack::get);
    wipe(&mut outer);
    secret
}

/// HKDF-Expand-Label(secret, label, "", len) for `len` up to the hash length: one HMAC.
fn expand_label(
    suite: Suite,
    secret: &[u8],
    label: &[u8],
    len: usize,
) -> Result<Secret, ErrorStack> {
    let mut info = Vec::with_capacity(4 + 6 + label.len());
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push((6 + label.len()) as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0);
    info.push(1);
    let mut block = hmac(suite, secret, &[&info])?;
    block.truncate(len);
    Ok(block)
}

/// Key material longer than a [`Secret`] (TLS 1.2's key block), wiped when dropped.
struct KeyBlock(Vec<u8>);

impl Drop for KeyBlock {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// TLS 1.2's PRF (RFC 5246 5): P_hash(secret, label ++ seed), `len` bytes. The chain
/// values A(i) are [`Secret`]s; on an error what was made is wiped as it drops.
fn prf12(
    suite: Suite,
    secret: &[u8],
    label: &[u8],
    seed: &[&[u8]],
    len: usize,
) -> Result<KeyBlock, ErrorStack> {
    let mut parts: Vec<&[u8]> = vec![label];
    parts.extend_from_slice(seed);
    let mut a = hmac(suite, secret, &parts)?;
    // Never reallocated (each block is at most MAX_SECRET), so no unwiped copy is left.
    let mut out = KeyBlock(Vec::with_capacity(len + MAX_SECRET));
    while out.0.len() < len {
        let mut with_seed: Vec<&[u8]> = vec![a.get()];
        with_seed.extend_from_slice(&parts);
        out.0
            .extend_from_slice(hmac(suite, secret, &with_seed)?.get());
        a = hmac(suite, secret, &[a.get()])?;
    }
    wipe(&mut out.0[len..]);
    out.0.truncate(len);
    Ok(out)
}

/// One direction's keys and position.
struct Direction {
    ctx: CipherCtx,
    iv: [u8; NONCE],
    seq: u64,
    secret: Secret,
}

impl std::fmt::Debug for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direction").field("seq", &self.seq).finish()
    }
}

impl Direction {
    /// TLS 1.3: the key and IV come from the traffic secret.
    fn new(suite: Suite, secret: Secret, seq: u64, seal: bool) -> Result<Direction, ErrorStack> {
        let key = expand_label(suite, secret.get(), b"key", suite.key_len())?;
        let iv = expand_label(suite, secret.get(), b"iv", NONCE)?;
        Direction::keyed(suite, key.get(), iv.get(), seq, secret, seal)
    }

    /// A direction on `key`; `iv` is the fixed part of the nonce (AES-GCM's salt in TLS 1.2,
    /// zero-extended: the sequence number fills the rest).
    fn keyed(
        suite: Suite,
        key: &[u8],
        iv: &[u8],
        seq: u64,
        secret: Secret,
        seal: bool,
    ) -> Result<Direction, ErrorStack> {
        let mut ctx = CipherCtx::new()?;
        if seal {
            ctx.encrypt_init(Some(suite.cipher()), Some(key), None)?;
        } else {
            ctx.decrypt_init(Some(suite.cipher()), Some(key), None)?;
        }
        let mut fixed = [0; NONCE];
        fixed[..iv.len()].copy_from_slice(iv);
        Ok(Direction {
            ctx,
            iv: fixed,
            seq,
            secret,
        })
    }

    /// The next traffic secret's direction (KeyUpdate), at sequence number 0.
    fn updated(&self, suite: Suite, seal: bool) -> Result<Direction, ErrorStack> {
        let next = expand_label(suite, self.secret.get(), b"traffic upd", suite.secret_len())?;
        Direction::new(suite, next, 0, seal)
    }

    /// Takes the next sequence number; `None` once they are used up (never wraps).
    fn next_seq(&mut self) -> Option<u64> {
        let seq = self.seq;
        self.seq = seq.checked_add(1)?;
        Some(seq)
    }

    /// Starts a record: the nonce is the fixed IV xor `counter` (the sequence number, or a
    /// TLS 1.2 AES-GCM record's explicit nonce), `aad` the additional data.
    fn start(&mut self, counter: [u8; 8], aad: &[u8], seal: bool) -> Result<(), Fatal> {
        let mut nonce = self.iv;
        for (n, c) in nonce[NONCE - 8..].iter_mut().zip(counter) {
            *n ^= c;
        }
        let init = if seal {
            self.ctx.encrypt_init(None, None, Some(&nonce))
        } else {
            self.ctx.decrypt_init(None, None, Some(&nonce))
        };
        init.and_then(|()| self.ctx.cipher_update(aad, None).map(drop))
            .map_err(|e| Fatal::internal(&e))
    }
}

/// TLS 1.2's additional data: sequence number, type, version, plaintext length.
fn aad12(seq: u64, content_type: u8, len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = content_type;
    aad[9..11].copy_from_slice(&LEGACY_VERSION);
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// A fatal condition: the alert to send (if any) and what happened, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fatal {
    /// `None` when the peer ended the connection with its own alert.
    pub alert: Option<u8>,
    pub detail: String,
}

impl Fatal {
    fn new(alert: u8, detail: impl Into<String>) -> Fatal {
        Fatal {
            alert: Some(alert),
            detail: detail.into(),
        }
    }

    fn internal(e: &ErrorStack) -> Fatal {
        Fatal::new(INTERNAL_ERROR, crate::error::first_error(e))
    }
}

/// What one opened record was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opened {
    /// Application data (possibly none) was appended.
    Data,
    /// The peer's close_notify: it sends nothing more.
    PeerClosed,
    /// The peer changed its keys (KeyUpdate).
    KeyUpdate,
}

/// Both directions of an established connection, server side.
#[derive(Debug)]
pub(crate) struct RecordLayer {
    suite: Suite,
    version: Version,
    read: Direction,
    write: Direction,
    /// The peer asked us to update our keys (TLS 1.3); done before our next record.
    update_due: bool,
    /// Alerts counted (as OpenSSL counts them) since the last non-empty record that was
    /// not an alert.
    warnings: u8,
}

impl RecordLayer {
    /// The layer for a TLS 1.3 connection whose traffic secrets are `read` (the peer's) and
    /// `write` (ours), at the given sequence numbers.
    pub(crate) fn new(
        suite: Suite,
        read: Secret,
        read_seq: u64,
        write: Secret,
        write_seq: u64,
    ) -> Result<RecordLayer, ErrorStack> {
        Ok(RecordLayer {
            suite,
            version: Version::Tls13,
            read: Direction::new(suite, read, read_seq, false)?,
            write: Direction::new(suite, write, write_seq, true)?,
            update_due: false,
            warnings: 0,
        })
    }

    /// The layer for a TLS 1.2 connection (server side) from its master secret and the
    /// hellos' randoms, at the given sequence numbers. `server` false gives the client's
    /// side (tests, fuzzing).
    pub(crate) fn new_tls12(
        suite: Suite,
        master: &[u8],
        client_random: &[u8],
        server_random: &[u8],
        seqs: (u64, u64),
        server: bool,
    ) -> Result<RecordLayer, ErrorStack> {
        let (key, iv) = (suite.key_len(), suite.fixed_iv_len_12());
        let block = prf12(
            suite,
            master,
            b"key expansion",
            &[server_random, client_random],
            2 * key + 2 * iv,
        )?;
        let (client_key, rest) = block.0.split_at(key);
        let (server_key, rest) = rest.split_at(key);
        let (client_iv, server_iv) = rest.split_at(iv);
        let none = || Secret::new(&[]).ok_or_else(ErrorStack::get);
        let (read_key, read_iv, write_key, write_iv) = if server {
            (client_key, client_iv, server_key, server_iv)
        } else {
            (server_key, server_iv, client_key, client_iv)
        };
        // `block` is wiped as it drops, on every return.
        Ok(RecordLayer {
            suite,
            version: Version::Tls12,
            read: Direction::keyed(suite, read_key, read_iv, seqs.0, none()?, false)?,
            write: Direction::keyed(suite, write_key, write_iv, seqs.1, none()?, true)?,
            update_due: false,
            warnings: 0,
        })
    }

    /// Opens the first record of `input` if it is complete, appending its application data
    /// to `out`. Returns the bytes of `input` it took and what the record was, or `None`
    /// while the record is incomplete. `out` is unchanged by a record that is not data.
    pub(crate) fn open(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<(usize, Opened)>, Fatal> {
        let Some(header) = input.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let outer = header[0];
        let allowed = match self.version {
            Version::Tls13 => outer == APPLICATION_DATA,
            Version::Tls12 => matches!(outer, APPLICATION_DATA | ALERT | HANDSHAKE),
        };
        if !allowed {
            return Err(Fatal::new(
                UNEXPECTED_MESSAGE,
                format!("record type {outer} after the handshake"),
            ));
        }
        // TLS 1.2's additional data carries the negotiated version, not the header's, so the
        // header's is checked here (as OpenSSL checks it); TLS 1.3 authenticates the header.
        if self.version == Version::Tls12 && header[1..3] != LEGACY_VERSION {
            return Err(Fatal::new(
                PROTOCOL_VERSION,
                format!("record version {}.{}", header[1], header[2]),
            ));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let max = match self.version {
            Version::Tls13 => MAX_CIPHERTEXT,
            Version::Tls12 => MAX_CIPHERTEXT_12,
        };
        if len > max {
            return Err(Fatal::new(
                RECORD_OVERFLOW,
                format!("record of {len} bytes"),
            ));
        }
        let Some(body) = input.get(HEADER..HEADER + len) else {
            return Ok(None);
        };
        let start = out.len();
        let opened = match self.version {
            Version::Tls13 => self.open_13(header, body, out),
            Version::Tls12 => self.open_12(outer, body, out),
        };
        let content_type = match opened {
            Ok(content_type) => content_type,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        let content = out.len() - start;
        if content > MAX_PLAINTEXT {
            out.truncate(start);
            return Err(Fatal::new(
                RECORD_OVERFLOW,
                format!("record of {content} plaintext bytes"),
            ));
        }
        let taken = HEADER + len;
        // As OpenSSL counts them: any non-empty record but an alert ends a run of alerts.
        if content_type != ALERT && content > 0 {
            self.warnings = 0;
        }
        match content_type {
            APPLICATION_DATA => Ok(Some((taken, Opened::Data))),
            ALERT => {
                let alert = out.split_off(start);
                let tls13 = self.version == Version::Tls13;
                match alert[..] {
                    [level, description] => {
                        // OpenSSL counts warnings, and TLS 1.3's user_canceled at any level.
                        if level == WARNING || (tls13 && description == USER_CANCELED) {
                            self.warnings += 1;
                            if self.warnings >= MAX_WARNINGS {
                                return Err(Fatal::new(
                                    UNEXPECTED_MESSAGE,
                                    "too many warning alerts",
                                ));
                            }
                        }
                        self.alert(level, description)
                            .map(|opened| Some((taken, opened)))
                    }
                    _ => Err(Fatal::new(DECODE_ERROR, "malformed alert")),
                }
            }
            HANDSHAKE if self.version == Version::Tls13 => {
                let message = out.split_off(start);
                self.handshake(&message)?;
                Ok(Some((taken, Opened::KeyUpdate)))
            }
            HANDSHAKE => {
                out.truncate(start);
                Err(Fatal::new(
                    UNEXPECTED_MESSAGE,
                    "handshake message after a TLS 1.2 handshake (renegotiation is off)",
                ))
            }
            other => {
                out.truncate(start);
                Err(Fatal::new(
                    UNEXPECTED_MESSAGE,
                    format!("content type {other} after the handshake"),
                ))
            }
        }
    }

    /// A TLS 1.3 record: decrypts into `out`, strips the padding and the inner content type,
    /// and returns that type.
    fn open_13(
        &mut self,
        header: &[u8; HEADER],
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u8, Fatal> {
        let Some(sealed_len) = body.len().checked_sub(TAG) else {
            return Err(Fatal::new(BAD_RECORD_MAC, "record shorter than its tag"));
        };
        let (sealed, tag) = body.split_at(sealed_len);
        let seq = self
            .read
            .next_seq()
            .ok_or_else(|| Fatal::new(INTERNAL_ERROR, "read sequence numbers used up"))?;
        self.read.start(seq.to_be_bytes(), header, false)?;
        let start = out.len();
        decrypt(&mut self.read.ctx, sealed, tag, out)?;
        // The content type is the last non-zero byte; zeroes after it are padding.
        let Some(end) = out[start..].iter().rposition(|&b| b != 0) else {
            return Err(Fatal::new(
                UNEXPECTED_MESSAGE,
                "record without a content type",
            ));
        };
        let content_type = out[start + end];
        out.truncate(start + end);
        Ok(content_type)
    }

    /// A TLS 1.2 record of type `outer`: decrypts into `out` and returns the type.
    fn open_12(&mut self, outer: u8, body: &[u8], out: &mut Vec<u8>) -> Result<u8, Fatal> {
        let explicit = if self.suite.explicit_nonce_12() {
            EXPLICIT_NONCE
        } else {
            0
        };
        let Some(sealed_len) = body.len().checked_sub(explicit + TAG) else {
            return Err(Fatal::new(BAD_RECORD_MAC, "record shorter than its tag"));
        };
        let (nonce, rest) = body.split_at(explicit);
        let (sealed, tag) = rest.split_at(sealed_len);
        let seq = self
            .read
            .next_seq()
            .ok_or_else(|| Fatal::new(INTERNAL_ERROR, "read sequence numbers used up"))?;
        let counter = match nonce.first_chunk::<8>() {
            Some(explicit) => *explicit,
            None => seq.to_be_bytes(),
        };
        self.read
            .start(counter, &aad12(seq, outer, sealed_len), false)?;
        decrypt(&mut self.read.ctx, sealed, tag, out)?;
        Ok(outer)
    }

    /// What an alert from the peer does, as in OpenSSL's record layer: TLS 1.3 ignores
    /// `user_canceled`; close_notify (at warning level in 1.2) ends the peer's side; any
    /// other alert in 1.3 and a fatal one in 1.2 end the connection; in 1.2 a
    /// `no_renegotiation` warning is a `handshake_failure` and other warnings are ignored.
    fn alert(&self, level: u8, description: u8) -> Result<Opened, Fatal> {
        let tls13 = self.version == Version::Tls13;
        if tls13 && description == USER_CANCELED {
            Ok(Opened::Data)
        } else if description == CLOSE_NOTIFY && (tls13 || level == WARNING) {
            Ok(Opened::PeerClosed)
        } else if tls13 || level != WARNING {
            Err(Fatal {
                alert: None,
                detail: format!("peer sent alert {description}"),
            })
        } else if description == NO_RENEGOTIATION {
            Err(Fatal::new(HANDSHAKE_FAILURE, "peer sent no_renegotiation"))
        } else {
            Ok(Opened::Data)
        }
    }

    /// Post-handshake handshake messages in TLS 1.3: only KeyUpdate, alone in its record.
    /// One that does not end where its record ends (cut short, or more after it) is not
    /// aligned with the key change it makes: `unexpected_message` (RFC 8446 5.1).
    fn handshake(&mut self, message: &[u8]) -> Result<(), Fatal> {
        if let [KEY_UPDATE, rest @ ..] = message {
            let aligned = match rest {
                [a, b, c, body @ ..] => u32::from_be_bytes([0, *a, *b, *c]) as usize == body.len(),
                _ => false,
            };
            if !aligned {
                return Err(Fatal::new(
                    UNEXPECTED_MESSAGE,
                    "KeyUpdate not aligned with its record",
                ));
            }
        }
        match *message {
            [KEY_UPDATE, 0, 0, 1, request @ (0 | 1)] => {
                self.read = self
                    .read
                    .updated(self.suite, false)
                    .map_err(|e| Fatal::internal(&e))?;
                self.update_due |= request == 1;
                Ok(())
            }
            [KEY_UPDATE, 0, 0, 1, _] => Err(Fatal::new(
                ILLEGAL_PARAMETER,
                "KeyUpdate with a bad request",
            )),
            [KEY_UPDATE, ..] => Err(Fatal::new(DECODE_ERROR, "malformed KeyUpdate")),
            [kind, ..] => Err(Fatal::new(
                UNEXPECTED_MESSAGE,
                format!("handshake message {kind} after the handshake"),
            )),
            [] => Err(Fatal::new(UNEXPECTED_MESSAGE, "empty handshake record")),
        }
    }

    /// Starts a record of `len` bytes (at most [`MAX_PLAINTEXT`]) of `content_type` at the
    /// end of `out`: push the bytes with [`Sealing::push`], then [`Sealing::finish`]. A
    /// KeyUpdate that is due goes out first ([`RecordLayer::seal_update`]).
    pub(crate) fn seal<'a>(
        &'a mut self,
        out: &'a mut Vec<u8>,
        len: usize,
        content_type: u8,
    ) -> Result<Sealing<'a>, Fatal> {
        if len > MAX_PLAINTEXT {
            return Err(Fatal::new(INTERNAL_ERROR, "record over 2^14 bytes"));
        }
        self.seal_update(out)?;
        self.seal_raw(out, len, content_type)
    }

    /// Sends a KeyUpdate, not requesting one back, and moves the write key on, if one is
    /// due: the peer asked for it, or the key has sealed [`RECORDS_PER_KEY`] records.
    pub(crate) fn seal_update(&mut self, out: &mut Vec<u8>) -> Result<(), Fatal> {
        if !self.update_due() {
            return Ok(());
        }
        self.update_due = false;
        let mut update = self.seal_raw(out, 5, HANDSHAKE)?;
        update.push(&[KEY_UPDATE, 0, 0, 1, 0])?;
        update.finish()?;
        self.write = self
            .write
            .updated(self.suite, true)
            .map_err(|e| Fatal::internal(&e))?;
        Ok(())
    }

    /// Whether the layer speaks TLS 1.3 (rather than 1.2).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn is_tls13(&self) -> bool {
        self.version == Version::Tls13
    }

    /// Whether a KeyUpdate is due before our next record: the peer asked for one we have
    /// not yet sent, or the write key has sealed its share of records (TLS 1.3 only).
    pub(crate) fn update_due(&self) -> bool {
        self.update_due || (self.version == Version::Tls13 && self.write.seq >= RECORDS_PER_KEY)
    }

    fn seal_raw<'a>(
        &'a mut self,
        out: &'a mut Vec<u8>,
        len: usize,
        content_type: u8,
    ) -> Result<Sealing<'a>, Fatal> {
        let seq = self
            .write
            .next_seq()
            .ok_or_else(|| Fatal::new(INTERNAL_ERROR, "write sequence numbers used up"))?;
        let (outer, body_len, inner) = match self.version {
            Version::Tls13 => (APPLICATION_DATA, len + 1 + TAG, Some(content_type)),
            Version::Tls12 => {
                let explicit = if self.suite.explicit_nonce_12() {
                    EXPLICIT_NONCE
                } else {
                    0
                };
                (content_type, explicit + len + TAG, None)
            }
        };
        let [hi, lo] = (body_len as u16).to_be_bytes();
        let header = [outer, LEGACY_VERSION[0], LEGACY_VERSION[1], hi, lo];
        match self.version {
            Version::Tls13 => self.write.start(seq.to_be_bytes(), &header, true)?,
            // The explicit nonce is the sequence number, as OpenSSL's is.
            Version::Tls12 => self
                .write
                .start(seq.to_be_bytes(), &aad12(seq, outer, len), true)?,
        }
        out.reserve(HEADER + body_len);
        out.extend_from_slice(&header);
        if self.version == Version::Tls12 && self.suite.explicit_nonce_12() {
            out.extend_from_slice(&seq.to_be_bytes());
        }
        Ok(Sealing {
            direction: &mut self.write,
            out,
            left: len,
            inner,
        })
    }

    /// Seals an alert (close_notify or a fatal one).
    pub(crate) fn seal_alert(&mut self, out: &mut Vec<u8>, description: u8) -> Result<(), Fatal> {
        let level = if description == CLOSE_NOTIFY {
            WARNING
        } else {
            FATAL
        };
        let mut alert = self.seal(out, 2, ALERT)?;
        alert.push(&[level, description])?;
        alert.finish()
    }
}

/// Decrypts `sealed` onto `out` and checks `tag`; nothing decrypted may be used unless this
/// returns `Ok` (the caller truncates `out` on an error).
fn decrypt(ctx: &mut CipherCtx, sealed: &[u8], tag: &[u8], out: &mut Vec<u8>) -> Result<(), Fatal> {
    let start = out.len();
    out.resize(start + sealed.len(), 0);
    ctx.cipher_update(sealed, Some(&mut out[start..]))
        .and_then(|_| ctx.set_tag(tag))
        .map_err(|e| Fatal::internal(&e))?;
    ctx.cipher_final(&mut [])
        .map(drop)
        .map_err(|_| Fatal::new(BAD_RECORD_MAC, "record failed authentication"))
}

/// A record being sealed: [`Sealing::push`] exactly the length given to
/// [`RecordLayer::seal`], then [`Sealing::finish`]. A record dropped unfinished leaves a
/// torn record in the output: the connection must end (every error here ends it).
pub(crate) struct Sealing<'a> {
    direction: &'a mut Direction,
    out: &'a mut Vec<u8>,
    left: usize,
    /// TLS 1.3's inner content type, sealed after the data.
    inner: Option<u8>,
}

impl Sealing<'_> {
    /// Encrypts `bytes` onto the record.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(), Fatal> {
        if bytes.len() > self.left {
            return Err(Fatal::new(INTERNAL_ERROR, "record overfilled"));
        }
        self.left -= bytes.len();
        self.encrypt(bytes)
    }

    fn encrypt(&mut self, bytes: &[u8]) -> Result<(), Fatal> {
        let start = self.out.len();
        self.out.resize(start + bytes.len(), 0);
        self.direction
            .ctx
            .cipher_update(bytes, Some(&mut self.out[start..]))
            .map(drop)
            .map_err(|e| Fatal::internal(&e))
    }

    /// Ends the record (TLS 1.3: with its content type) and appends its tag.
    pub(crate) fn finish(mut self) -> Result<(), Fatal> {
        if self.left != 0 {
            return Err(Fatal::new(INTERNAL_ERROR, "record underfilled"));
        }
        if let Some(content_type) = self.inner {
            self.encrypt(&[content_type])?;
        }
        let ctx = &mut self.direction.ctx;
        ctx.cipher_final(&mut []).map_err(|e| Fatal::internal(&e))?;
        let start = self.out.len();
        self.out.resize(start + TAG, 0);
        ctx.tag(&mut self.out[start..])
            .map_err(|e| Fatal::internal(&e))
    }
}

/// Seals `plain` as application data records of at most `record_bytes` each, one empty
/// record for empty `plain` (tests, fuzzing).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn seal_all(
    layer: &mut RecordLayer,
    plain: &[u8],
    record_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), Fatal> {
    let empty: &[&[u8]] = &[&[]];
    let chunks: Box<dyn Iterator<Item = &[u8]>> = if plain.is_empty() {
        Box::new(empty.iter().copied())
    } else {
        Box::new(plain.chunks(record_bytes.clamp(1, MAX_PLAINTEXT)))
    };
    for chunk in chunks {
        let mut record = layer.seal(out, chunk.len(), APPLICATION_DATA)?;
        record.push(chunk)?;
        record.finish()?;
    }
    Ok(())
}

/// Seals one record of any `content_type` holding `bytes` of any length up to 2^16 - 18
/// (tests, fuzzing: the malformed records a hostile peer could send).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn seal_typed(
    layer: &mut RecordLayer,
    content_type: u8,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Fatal> {
    let mut record = layer.seal_raw(out, bytes.len(), content_type)?;
    record.push(bytes)?;
    record.finish()
}

/// Sends a KeyUpdate and moves the layer's write keys on, as a peer does (tests, fuzzing).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn send_key_update(
    layer: &mut RecordLayer,
    requested: bool,
    out: &mut Vec<u8>,
) -> Result<(), Fatal> {
    seal_typed(
        layer,
        HANDSHAKE,
        &[KEY_UPDATE, 0, 0, 1, u8::from(requested)],
        out,
    )?;
    layer.write = layer
        .write
        .updated(layer.suite, true)
        .map_err(|e| Fatal::internal(&e))?;
    Ok(())
}

/// The layers of both ends of one connection: (server, client), sequence numbers at 0.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn pair_at(suite: Suite, c2s: u64, s2c: u64) -> (RecordLayer, RecordLayer) {
    let secret = |fill: u8| Secret::new(&vec![fill; suite.secret_len()]);
    let make = |read: u8, read_seq, write: u8, write_seq| {
        RecordLayer::new(suite, secret(read)?, read_seq, secret(write)?, write_seq).ok()
    };
    match (make(1, c2s, 2, s2c), make(2, s2c, 1, c2s)) {
        (Some(server), Some(client)) => (server, client),
        _ => panic!("record layers for {suite:?}"),
    }
}

/// The content type of application data, for callers sealing records.
pub(crate) const DATA: u8 = APPLICATION_DATA;

#[cfg(test)]
mod tests;
