//! Pre-shared keys (`ssl_psk_file`), in stunnel's `PSKsecrets` format: one `IDENTITY:KEY`
//! per line; a key of hexadecimal digits (an even number of them) is those bytes, any other
//! key is its characters, as stunnel reads it; at least 16 bytes; the identity at most 128
//! bytes. The
//! file must not be readable or writable by other users. Blank lines and `#` comments are
//! skipped. The keys are given to OpenSSL's PSK server callback, which serves TLS 1.2 PSK
//! cipher suites and TLS 1.3 PSK alike.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use std::sync::OnceLock;

use openssl::ex_data::Index;
use openssl::ssl::Ssl;

use crate::error::RefreshError;

/// Where the PSK callback leaves the identity it accepted, on the connection's `SSL`.
pub(crate) fn identity_index() -> Result<Index<Ssl, String>, openssl::error::ErrorStack> {
    static INDEX: OnceLock<Index<Ssl, String>> = OnceLock::new();
    if let Some(index) = INDEX.get() {
        return Ok(*index);
    }
    let index = Ssl::new_ex_index::<String>()?;
    Ok(*INDEX.get_or_init(|| index))
}

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
