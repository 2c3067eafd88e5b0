//! memcached's `ssl_*` options: names, meanings, defaults, startup errors, `stats settings`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use openssl::ssl::{SslFiletype, SslVerifyMode, SslVersion};

use crate::error::{SettingsError, StartupError};

/// `ssl_wbuf_size` default, in kilobytes (memcached's 16 KB, one full TLS record).
pub const DEFAULT_WBUF_KB: u32 = 16;
/// `ssl_handshake_timeout` default, in seconds (rampart only; memcached has no such option).
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 10;

/// `ssl_verify_mode`: 0 none, 1 request, 2 require, 3 once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyMode {
    #[default]
    None,
    Request,
    Require,
    Once,
}

impl VerifyMode {
    /// OpenSSL's bitmask, which is also what memcached's `stats settings` prints (0, 1, 3, 7).
    pub fn openssl(self) -> SslVerifyMode {
        match self {
            VerifyMode::None => SslVerifyMode::NONE,
            VerifyMode::Request => SslVerifyMode::PEER,
            VerifyMode::Require => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            VerifyMode::Once => {
                SslVerifyMode::PEER
                    | SslVerifyMode::FAIL_IF_NO_PEER_CERT
                    | SslVerifyMode::CLIENT_ONCE
            }
        }
    }
}

/// `ssl_min_version`: 0 tlsv1.0, 1 tlsv1.1, 2 tlsv1.2 (default), 3 tlsv1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinVersion {
    Tls10,
    Tls11,
    #[default]
    Tls12,
    Tls13,
}

impl MinVersion {
    pub fn openssl(self) -> SslVersion {
        match self {
            MinVersion::Tls10 => SslVersion::TLS1,
            MinVersion::Tls11 => SslVersion::TLS1_1,
            MinVersion::Tls12 => SslVersion::TLS1_2,
            MinVersion::Tls13 => SslVersion::TLS1_3,
        }
    }

    /// The name `stats settings` prints.
    pub fn name(self) -> &'static str {
        match self {
            MinVersion::Tls10 => "tlsv1.0",
            MinVersion::Tls11 => "tlsv1.1",
            MinVersion::Tls12 => "tlsv1.2",
            MinVersion::Tls13 => "tlsv1.3",
        }
    }
}

/// `ssl_keyformat`: memcached passes the number straight to `SSL_CTX_use_PrivateKey_file`,
/// so any other value fails when the key is loaded ("bad ssl filetype"), not when parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyFormat {
    #[default]
    Pem,
    Der,
    Other(i32),
}

impl KeyFormat {
    pub fn raw(self) -> i32 {
        match self {
            KeyFormat::Pem => 1,
            KeyFormat::Der => 2,
            KeyFormat::Other(raw) => raw,
        }
    }

    pub fn openssl(self) -> SslFiletype {
        SslFiletype::from_raw(self.raw())
    }
}

/// TLS settings with memcached's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `-Z`.
    pub enabled: bool,
    pub chain_cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub key_format: KeyFormat,
    pub verify_mode: VerifyMode,
    pub ciphers: Option<String>,
    pub ca_cert: Option<PathBuf>,
    /// `ssl_wbuf_size` converted to bytes.
    pub wbuf_bytes: usize,
    pub session_cache: bool,
    pub min_version: MinVersion,
    /// Checked at startup (the kernel's `tls` module must be loaded). Sessions run over
    /// memory buffers, so no record is offloaded to the kernel yet.
    pub kernel_tls: bool,
    /// rampart only: the connection driver closes a connection still handshaking after this.
    pub handshake_timeout: Duration,
    /// rampart only: `ssl_psk_file`, stunnel's `PSKsecrets` format (`IDENTITY:KEY` lines):
    /// clients may authenticate with a pre-shared key instead of (or beside) certificates.
    pub psk_file: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            enabled: false,
            chain_cert: None,
            key: None,
            key_format: KeyFormat::Pem,
            verify_mode: VerifyMode::None,
            ciphers: None,
            ca_cert: None,
            wbuf_bytes: DEFAULT_WBUF_KB as usize * 1024,
            session_cache: false,
            min_version: MinVersion::Tls12,
            kernel_tls: false,
            handshake_timeout: Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT_SECS),
            psk_file: None,
        }
    }
}

impl TlsSettings {
    /// Applies one `-o key[=value]` pair. Returns `None` when `key` is not a TLS option (the
    /// caller's other options, or memcached's `Illegal suboption`), else the outcome.
    /// Boolean options ignore their value, as memcached does (`ssl_session_cache=no` enables).
    pub fn apply_option(
        &mut self,
        key: &str,
        value: Option<&str>,
    ) -> Option<Result<(), SettingsError>> {
        let result = match key {
            "ssl_chain_cert" => {
                required("ssl_chain_cert", value).map(|v| self.chain_cert = Some(PathBuf::from(v)))
            }
            "ssl_key" => required("ssl_key", value).map(|v| self.key = Some(PathBuf::from(v))),
            "ssl_keyformat" => number::<i32>("ssl_keyformat", value).map(|raw| {
                self.key_format = match raw {
                    1 => KeyFormat::Pem,
                    2 => KeyFormat::Der,
                    other => KeyFormat::Other(other),
                }
            }),
            "ssl_verify_mode" => number::<i64>("ssl_verify_mode", value).and_then(|raw| {
                self.verify_mode = match raw {
                    0 => VerifyMode::None,
                    1 => VerifyMode::Request,
                    2 => VerifyMode::Require,
                    3 => VerifyMode::Once,
                    _ => return Err(SettingsError::Invalid("ssl_verify_mode")),
                };
                Ok(())
            }),
            "ssl_ciphers" => {
                required("ssl_ciphers", value).map(|v| self.ciphers = Some(v.to_owned()))
            }
            "ssl_ca_cert" => {
                required("ssl_ca_cert", value).map(|v| self.ca_cert = Some(PathBuf::from(v)))
            }
            "ssl_wbuf_size" => number::<u32>("ssl_wbuf_size", value).and_then(|kb| {
                if kb == 0 {
                    return Err(SettingsError::ZeroWriteBuffer);
                }
                self.wbuf_bytes = kb as usize * 1024;
                Ok(())
            }),
            "ssl_session_cache" => {
                self.session_cache = true;
                Ok(())
            }
            "ssl_kernel_tls" => {
                self.kernel_tls = true;
                Ok(())
            }
            "ssl_min_version" => number::<i64>("ssl_min_version", value).and_then(|raw| {
                self.min_version = match raw {
                    0 => MinVersion::Tls10,
                    1 => MinVersion::Tls11,
                    2 => MinVersion::Tls12,
                    3 => MinVersion::Tls13,
                    _ => return Err(SettingsError::Invalid("ssl_min_version")),
                };
                Ok(())
            }),
            "ssl_handshake_timeout" => {
                number::<u64>("ssl_handshake_timeout", value).and_then(|secs| {
                    if secs == 0 {
                        return Err(SettingsError::Invalid("ssl_handshake_timeout"));
                    }
                    self.handshake_timeout = Duration::from_secs(secs);
                    Ok(())
                })
            }
            "ssl_psk_file" => {
                required("ssl_psk_file", value).map(|v| self.psk_file = Some(PathBuf::from(v)))
            }
            _ => return None,
        };
        Some(result)
    }

    /// Startup checks that need the machine, not the files: with `ssl_kernel_tls`, the
    /// kernel's `tls` module must be loaded (`/sys/module/tls`).
    pub fn check_environment(&self) -> Result<(), StartupError> {
        self.check_kernel_tls_at(Path::new("/sys/module/tls"))
    }

    fn check_kernel_tls_at(&self, module: &Path) -> Result<(), StartupError> {
        if self.enabled && self.kernel_tls && !module.exists() {
            return Err(StartupError::KernelTlsUnavailable);
        }
        Ok(())
    }

    /// The `stats settings` lines, in memcached 1.6.18's order and format. `line` writes one
    /// `STAT <name> <value>\r\n` line into `out`.
    pub fn stats_settings<F>(&self, out: &mut Vec<u8>, mut line: F)
    where
        F: FnMut(&mut Vec<u8>, &str, &str),
    {
        let path = |p: &Option<PathBuf>, none: &str| {
            p.as_ref()
                .map_or_else(|| none.to_owned(), |p| p.to_string_lossy().into_owned())
        };
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        line(out, "ssl_enabled", yes_no(self.enabled));
        // memcached printf()s a NULL path as "(null)" but prints NULL ciphers/CA as "NULL".
        line(out, "ssl_chain_cert", &path(&self.chain_cert, "(null)"));
        line(out, "ssl_key", &path(&self.key, "(null)"));
        line(
            out,
            "ssl_verify_mode",
            &self.verify_mode.openssl().bits().to_string(),
        );
        line(out, "ssl_keyformat", &self.key_format.raw().to_string());
        line(
            out,
            "ssl_ciphers",
            self.ciphers.as_deref().unwrap_or("NULL"),
        );
        line(out, "ssl_ca_cert", &path(&self.ca_cert, "NULL"));
        line(out, "ssl_wbuf_size", &self.wbuf_bytes.to_string());
        line(out, "ssl_session_cache", yes_no(self.session_cache));
        line(out, "ssl_kernel_tls", yes_no(self.kernel_tls));
        line(out, "ssl_min_version", self.min_version.name());
    }
}

fn required<'v>(name: &'static str, value: Option<&'v str>) -> Result<&'v str, SettingsError> {
    value.ok_or(SettingsError::Missing(name))
}

fn number<T: std::str::FromStr>(
    name: &'static str,
    value: Option<&str>,
) -> Result<T, SettingsError> {
    required(name, value)?
        .trim_start()
        .parse()
        .map_err(|_| SettingsError::Parse(name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

    use super::*;

    fn apply(pairs: &[(&str, Option<&str>)]) -> Result<TlsSettings, SettingsError> {
        let mut s = TlsSettings::default();
        for &(k, v) in pairs {
            s.apply_option(k, v).expect("a TLS option")?;
        }
        Ok(s)
    }

    fn stats(s: &TlsSettings) -> String {
        let mut out = Vec::new();
        s.stats_settings(&mut out, |out, name, value| {
            out.extend_from_slice(format!("STAT {name} {value}\r\n").as_bytes())
        });
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn stats_settings_defaults_match_memcached() {
        // Captured from memcached 1.6.18 started without -Z.
        assert_eq!(
            stats(&TlsSettings::default()),
            "STAT ssl_enabled no\r\nSTAT ssl_chain_cert (null)\r\nSTAT ssl_key (null)\r\n\
             STAT ssl_verify_mode 0\r\nSTAT ssl_keyformat 1\r\nSTAT ssl_ciphers NULL\r\n\
             STAT ssl_ca_cert NULL\r\nSTAT ssl_wbuf_size 16384\r\nSTAT ssl_session_cache no\r\n\
             STAT ssl_kernel_tls no\r\nSTAT ssl_min_version tlsv1.2\r\n"
        );
    }

    #[test]
    fn stats_settings_with_options_match_memcached() {
        // memcached -Z -o ssl_chain_cert=cert.pem,ssl_key=key.pem,ssl_verify_mode=3,
        //   ssl_session_cache,ssl_min_version=3,ssl_wbuf_size=4,ssl_ca_cert=cert.pem,ssl_ciphers=HIGH
        let mut s = apply(&[
            ("ssl_chain_cert", Some("cert.pem")),
            ("ssl_key", Some("key.pem")),
            ("ssl_verify_mode", Some("3")),
            ("ssl_session_cache", None),
            ("ssl_min_version", Some("3")),
            ("ssl_wbuf_size", Some("4")),
            ("ssl_ca_cert", Some("cert.pem")),
            ("ssl_ciphers", Some("HIGH")),
        ])
        .unwrap();
        s.enabled = true;
        assert_eq!(
            stats(&s),
            "STAT ssl_enabled yes\r\nSTAT ssl_chain_cert cert.pem\r\nSTAT ssl_key key.pem\r\n\
             STAT ssl_verify_mode 7\r\nSTAT ssl_keyformat 1\r\nSTAT ssl_ciphers HIGH\r\n\
             STAT ssl_ca_cert cert.pem\r\nSTAT ssl_wbuf_size 4096\r\nSTAT ssl_session_cache yes\r\n\
             STAT ssl_kernel_tls no\r\nSTAT ssl_min_version tlsv1.3\r\n"
        );
        for (mode, bits) in [("0", 0), ("1", 1), ("2", 3), ("3", 7)] {
            let s = apply(&[("ssl_verify_mode", Some(mode))]).unwrap();
            assert_eq!(s.verify_mode.openssl().bits(), bits);
        }
    }

    #[test]
    fn bad_options_give_memcached_messages() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("ssl_chain_cert", None, "Missing ssl_chain_cert argument"),
            ("ssl_key", None, "Missing ssl_key argument"),
            ("ssl_ca_cert", None, "Missing ssl_ca_cert argument"),
            ("ssl_ciphers", None, "Missing ssl_ciphers argument"),
            ("ssl_verify_mode", None, "Missing ssl_verify_mode argument"),
            (
                "ssl_keyformat",
                Some("x"),
                "could not parse argument to ssl_keyformat",
            ),
            (
                "ssl_wbuf_size",
                Some("x"),
                "could not parse argument to ssl_wbuf_size",
            ),
            (
                "ssl_wbuf_size",
                Some("-1"),
                "could not parse argument to ssl_wbuf_size",
            ),
            (
                "ssl_verify_mode",
                Some("1x"),
                "could not parse argument to ssl_verify_mode",
            ),
            (
                "ssl_min_version",
                Some("x"),
                "could not parse argument to ssl_min_version",
            ),
            (
                "ssl_verify_mode",
                Some("4"),
                "Invalid ssl_verify_mode. Use help to see valid options.",
            ),
            (
                "ssl_verify_mode",
                Some("-1"),
                "Invalid ssl_verify_mode. Use help to see valid options.",
            ),
            (
                "ssl_min_version",
                Some("4"),
                "Invalid ssl_min_version. Use help to see valid options.",
            ),
        ];
        for &(key, value, message) in cases {
            let err = apply(&[(key, value)]).unwrap_err();
            assert_eq!(err.to_string(), message, "{key}={value:?}");
            assert_eq!(err.exit_code(), 1);
        }
        assert!(
            TlsSettings::default()
                .apply_option("ssl_bogus", Some("1"))
                .is_none()
        );
        let s = apply(&[
            ("ssl_keyformat", Some("3")),
            ("ssl_session_cache", Some("no")),
        ]);
        let s = s.unwrap();
        assert_eq!(s.key_format, KeyFormat::Other(3));
        assert!(
            s.session_cache,
            "memcached ignores a boolean option's value"
        );
    }

    #[test]
    fn kernel_tls_without_the_module_is_a_startup_error() {
        let mut s = TlsSettings {
            enabled: true,
            kernel_tls: true,
            ..TlsSettings::default()
        };
        let err = s
            .check_kernel_tls_at(Path::new("/nonexistent/module/tls"))
            .unwrap_err();
        assert_eq!(err.exit_code(), 64);
        assert!(err.to_string().contains("tls module"));
        s.kernel_tls = false;
        assert!(s.check_kernel_tls_at(Path::new("/nonexistent")).is_ok());
    }
}
