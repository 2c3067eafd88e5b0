//! Pre-shared keys (`ssl_psk_file`), in stunnel's `PSKsecrets` format: one `IDENTITY:KEY`
//! per line; a key of hexadecimal digits (an even number of them) is those bytes, any other
//! key is its characters, as stunnel reads it; at least 16 bytes; the identity at most 128
//! bytes. The file must not be readable or writable by other users. Blank lines and `#`
//! comments are skipped.
//!
//! # How a connection's PSK identity is known
//! Only from what the finished handshake proved, never from what a callback was asked:
//! - TLS 1.2: OpenSSL's PSK server callback gives the key; a handshake on a PSK cipher suite
//!   finishes only when the client holds it, and OpenSSL records the identity in the session
//!   (`SSL_get_psk_identity`), which a resumed session (ticket or cache) carries too.
//! - TLS 1.3: the find-session callback turns a known identity into a session on
//!   `TLS_AES_128_GCM_SHA256` (an external PSK's hash is SHA-256 unless provisioned
//!   otherwise, RFC 8446 4.2.11) and tags the session's ticket data with the identity. OpenSSL
//!   may still decline that PSK (a binder it cannot check with the suite it chose, a later
//!   ticket it prefers) and carry on with a certificate; the connection then has a PSK
//!   identity only if the handshake resumed a session (`SSL_session_reused`) whose ticket data
//!   carries the tag: our own external-PSK session, or a ticket issued on one (tickets copy
//!   it, encrypted under the context's ticket keys, so no client can forge it).
//!
//! Contexts with PSKs order TLS 1.3's suites SHA-256 first and by the server's preference, so
//! ordinary clients (which list `TLS_AES_256_GCM_SHA384` first) negotiate a suite the external
//! PSK can be used with. A refresh builds a new context with new ticket keys and a new table:
//! sessions of a removed identity no longer resume.

use std::collections::HashMap;
use std::ffi::{c_int, c_uchar, c_void};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslContext, SslContextBuilder, SslRef, SslVersion};

use crate::error::RefreshError;

/// stunnel's minimum key length.
pub const MIN_KEY_BYTES: usize = 16;
/// OpenSSL's (`PSK_MAX_IDENTITY_LEN`).
pub const MAX_IDENTITY_BYTES: usize = 128;
/// OpenSSL's largest PSK (`PSK_MAX_PSK_LEN`).
pub const MAX_KEY_BYTES: usize = 512;

/// Identities and their keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PskTable {
    keys: HashMap<Vec<u8>, Vec<u8>>,
}

impl std::fmt::Debug for PskTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PskTable")
            .field("identities", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl PskTable {
    /// Parses the file's text; `Err` names the line, never the key.
    pub fn parse(text: &str) -> Result<PskTable, String> {
        let mut keys = HashMap::new();
        for (index, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let at = index + 1;
            let Some((identity, key)) = line.split_once(':') else {
                return Err(format!("line {at}: an entry is IDENTITY:KEY"));
            };
            if identity.is_empty() || identity.len() > MAX_IDENTITY_BYTES {
                return Err(format!(
                    "line {at}: an identity is 1 to {MAX_IDENTITY_BYTES} bytes"
                ));
            }
            let key = stunnel_key(key);
            if key.len() < MIN_KEY_BYTES || key.len() > MAX_KEY_BYTES {
                return Err(format!(
                    "line {at}: a key is {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"
                ));
            }
            keys.insert(identity.as_bytes().to_vec(), key);
        }
        if keys.is_empty() {
            return Err("no IDENTITY:KEY entry".into());
        }
        Ok(PskTable { keys })
    }

    /// Reads and parses `path`, refusing a file other users may read or write.
    pub fn load(path: &Path) -> Result<PskTable, RefreshError> {
        let fail = |detail: String| RefreshError::Psk {
            path: path.display().to_string(),
            detail,
        };
        let metadata = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o007 != 0 {
            return Err(fail(format!(
                "readable or writable by other users (mode {mode:o}); chmod o-rwx it"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        PskTable::parse(&text).map_err(fail)
    }

    /// The key of `identity`.
    pub fn key(&self, identity: &[u8]) -> Option<&[u8]> {
        self.keys.get(identity).map(Vec::as_slice)
    }
}

/// stunnel's reading of a key: hexadecimal digits (an even number) are converted to bytes.
fn stunnel_key(key: &str) -> Vec<u8> {
    let hex = !key.is_empty()
        && key.len().is_multiple_of(2)
        && key.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return key.as_bytes().to_vec();
    }
    key.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            digit(pair[0]) << 4 | digit(pair[1])
        })
        .collect()
}

/// What a TLS 1.3 session made from a PSK carries in its ticket data, before the identity.
const TAG: &[u8] = b"rampart-psk:";
/// `TLS_AES_128_GCM_SHA256`, the suite of the sessions made from external PSKs.
const TLS13_AES_128_GCM_SHA256: [u8; 2] = [0x13, 0x01];
/// TLS 1.3's suites with PSKs: SHA-256 first (see the module's text).
const TLS13_SUITES_WITH_PSK: &str =
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384";

/// Where a context keeps its table, for the callbacks.
fn table_index() -> Result<Index<SslContext, PskTable>, ErrorStack> {
    static INDEX: OnceLock<Index<SslContext, PskTable>> = OnceLock::new();
    if let Some(index) = INDEX.get() {
        return Ok(*index);
    }
    let index = SslContext::new_ex_index::<PskTable>()?;
    Ok(*INDEX.get_or_init(|| index))
}

/// Serves `table`'s keys on the context: TLS 1.2 PSK suites through the PSK server callback,
/// TLS 1.3 PSKs through the find-session callback, and TLS 1.3's suites SHA-256 first.
pub(crate) fn install(ctx: &mut SslContextBuilder, table: PskTable) -> Result<(), ErrorStack> {
    ctx.set_ciphersuites(TLS13_SUITES_WITH_PSK)?;
    ctx.set_options(openssl::ssl::SslOptions::CIPHER_SERVER_PREFERENCE);
    ctx.set_psk_server_callback(|ssl, identity, psk| {
        let key = identity.and_then(|identity| table_of(ssl)?.key(identity));
        match key {
            Some(key) if key.len() <= psk.len() => {
                psk[..key.len()].copy_from_slice(key);
                Ok(key.len())
            }
            // An unknown identity: no key, and the handshake fails.
            _ => Ok(0),
        }
    });
    ctx.set_ex_data(table_index()?, table);
    // SAFETY: `ctx` is a live SSL_CTX being built; the callback is a plain function that
    // lives as long as the program.
    unsafe { SSL_CTX_set_psk_find_session_callback(ctx.as_ptr(), Some(find_session)) };
    Ok(())
}

/// The table of the context `ssl` was made on.
fn table_of(ssl: &SslRef) -> Option<&PskTable> {
    ssl.ssl_context().ex_data(table_index().ok()?)
}

/// A connection that must not use a PSK (`mtls:` listeners require a certificate).
pub(crate) fn refuse(ssl: &mut Ssl) {
    // SAFETY: `ssl` is a live SSL not yet handshaking; clearing its callbacks (NULL is
    // allowed for both) makes OpenSSL offer no PSK suite and accept no PSK.
    unsafe {
        SSL_set_psk_find_session_callback(ssl.as_ptr(), None);
        SSL_set_psk_server_callback(ssl.as_ptr(), None);
    }
}

/// A connection that may only use a PSK (`psk:` listeners): it has no certificate to fall
/// back to, so a client without a usable PSK gets no handshake at all.
pub(crate) fn require(ssl: &mut Ssl) {
    // SAFETY: `ssl` is a live SSL not yet handshaking; SSL_certs_clear drops its own copy
    // of the context's certificate and key, nothing else.
    unsafe { SSL_certs_clear(ssl.as_ptr()) };
}

/// The PSK identity the finished handshake proved (see the module's text), if any.
pub(crate) fn identity(ssl: &SslRef) -> Option<String> {
    let identity = if ssl.version2() == Some(SslVersion::TLS1_3) {
        if !ssl.session_reused() {
            return None;
        }
        let session = ssl.session()?;
        let mut data: *mut c_void = std::ptr::null_mut();
        let mut len: usize = 0;
        // SAFETY: `session` is the connection's live session, borrowed for the call; OpenSSL
        // points `data` at its own copy of the ticket data (or leaves it NULL).
        let ok =
            unsafe { SSL_SESSION_get0_ticket_appdata(session.as_ptr(), &mut data, &mut len) == 1 };
        if !ok || data.is_null() {
            return None;
        }
        // SAFETY: OpenSSL returned `len` readable bytes at `data`, owned by the session,
        // which outlives this borrow.
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
        bytes.strip_prefix(TAG)?.to_vec()
    } else {
        ssl.psk_identity()?.to_vec()
    };
    // Still in the table this context serves (the two are built together).
    table_of(ssl)?.key(&identity)?;
    String::from_utf8(identity).ok()
}

/// OpenSSL's `SSL_psk_find_session_cb_func`: a known identity becomes a TLS 1.3 session on
/// its key, tagged with the identity; an unknown one no session (OpenSSL then tries the
/// client's other PSKs, or a certificate).
unsafe extern "C" fn find_session(
    ssl: *mut openssl_sys::SSL,
    identity: *const c_uchar,
    identity_len: usize,
    out: *mut *mut openssl_sys::SSL_SESSION,
) -> c_int {
    // SAFETY: OpenSSL passes its live SSL, `identity_len` readable bytes at `identity` and a
    // writable `out`, for the duration of the call.
    unsafe {
        *out = std::ptr::null_mut();
        let ssl_ref = SslRef::from_ptr(ssl);
        let identity = if identity.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(identity, identity_len)
        };
        let Some(key) = table_of(ssl_ref).and_then(|table| table.key(identity)) else {
            return 1;
        };
        let cipher = SSL_CIPHER_find(ssl, TLS13_AES_128_GCM_SHA256.as_ptr());
        if cipher.is_null() {
            return 1;
        }
        let session = SSL_SESSION_new();
        if session.is_null() {
            return 0;
        }
        let mut tag = Vec::with_capacity(TAG.len() + identity.len());
        tag.extend_from_slice(TAG);
        tag.extend_from_slice(identity);
        let built = SSL_SESSION_set1_master_key(session, key.as_ptr(), key.len()) == 1
            && SSL_SESSION_set_cipher(session, cipher) == 1
            && SSL_SESSION_set_protocol_version(session, openssl_sys::TLS1_3_VERSION) == 1
            && SSL_SESSION_set1_ticket_appdata(session, tag.as_ptr().cast(), tag.len()) == 1;
        if !built {
            openssl_sys::SSL_SESSION_free(session);
            return 0;
        }
        // OpenSSL takes this reference.
        *out = session;
        1
    }
}

type FindSessionCallback = unsafe extern "C" fn(
    *mut openssl_sys::SSL,
    *const c_uchar,
    usize,
    *mut *mut openssl_sys::SSL_SESSION,
) -> c_int;

type ServerCallback = unsafe extern "C" fn(
    *mut openssl_sys::SSL,
    *const std::ffi::c_char,
    *mut c_uchar,
    std::ffi::c_uint,
) -> std::ffi::c_uint;

unsafe extern "C" {
    // OpenSSL 1.1.1 and later, not bound by openssl-sys. <openssl/ssl.h>.
    fn SSL_CTX_set_psk_find_session_callback(
        ctx: *mut openssl_sys::SSL_CTX,
        cb: Option<FindSessionCallback>,
    );
    fn SSL_set_psk_find_session_callback(
        ssl: *mut openssl_sys::SSL,
        cb: Option<FindSessionCallback>,
    );
    fn SSL_set_psk_server_callback(ssl: *mut openssl_sys::SSL, cb: Option<ServerCallback>);
    fn SSL_certs_clear(ssl: *mut openssl_sys::SSL);
    fn SSL_SESSION_new() -> *mut openssl_sys::SSL_SESSION;
    fn SSL_CIPHER_find(
        ssl: *mut openssl_sys::SSL,
        id: *const c_uchar,
    ) -> *const openssl_sys::SSL_CIPHER;
    fn SSL_SESSION_set1_master_key(
        session: *mut openssl_sys::SSL_SESSION,
        key: *const c_uchar,
        len: usize,
    ) -> c_int;
    fn SSL_SESSION_set_cipher(
        session: *mut openssl_sys::SSL_SESSION,
        cipher: *const openssl_sys::SSL_CIPHER,
    ) -> c_int;
    fn SSL_SESSION_set_protocol_version(
        session: *mut openssl_sys::SSL_SESSION,
        version: c_int,
    ) -> c_int;
    fn SSL_SESSION_set1_ticket_appdata(
        session: *mut openssl_sys::SSL_SESSION,
        data: *const c_void,
        len: usize,
    ) -> c_int;
    fn SSL_SESSION_get0_ticket_appdata(
        session: *mut openssl_sys::SSL_SESSION,
        data: *mut *mut c_void,
        len: *mut usize,
    ) -> c_int;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stunnel_psk_secrets() {
        let table = PskTable::parse(
            "# stunnel\r\nclient1:0123456789abcdefghij\nother:a:b:0123456789abcdef\nhex:00112233445566778899aabbccddeeff\n",
        )
        .expect("parse");
        assert_eq!(table.key(b"client1"), Some(&b"0123456789abcdefghij"[..]));
        assert_eq!(table.key(b"other"), Some(&b"a:b:0123456789abcdef"[..]));
        let hex: Vec<u8> = (0..16).map(|i| i * 0x11).collect();
        assert_eq!(table.key(b"hex"), Some(&hex[..]));
        assert_eq!(table.key(b"nobody"), None);
        for (text, says) in [
            ("client1:short\n", "line 1: a key"),
            // 16 hex digits are 8 bytes, as stunnel reads them: too short.
            ("client1:0123456789abcdef\n", "line 1: a key"),
            (":0123456789abcdef\n", "line 1: an identity"),
            (
                &format!("{}:0123456789abcdef", "i".repeat(129)),
                "line 1: an identity",
            ),
            ("ok:0123456789abcdefghij\nnocolon\n", "line 2"),
            ("# only a comment\n", "no IDENTITY:KEY"),
        ] {
            let err = PskTable::parse(text).expect_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(!err.contains("0123456789"));
        }
    }
}
