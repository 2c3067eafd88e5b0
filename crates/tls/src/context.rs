//! Building a complete `SSL_CTX` from [`TlsSettings`], in memcached's order and with
//! memcached's error lines.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use openssl::ssl::{
    SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslSessionCacheMode,
    SslVerifyMode,
};
use openssl::x509::X509Name;

use crate::error::{RefreshError, first_error, system_error};
use crate::holder::TlsCounters;
use crate::settings::{TlsSettings, VerifyMode};

/// memcached's session id context, so sessions stay resumable with client certificates.
const SESSION_ID_CONTEXT: &[u8] = b"memcached";
/// `EFAULT`: what OpenSSL reports when memcached hands it a NULL path.
const EFAULT: i32 = 14;

/// A listener's TLS mode (`-l` prefixes). `notls:` listeners get no session at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerTls {
    /// Plain `-l addr` with `-Z`: `ssl_verify_mode` applies.
    #[default]
    Default,
    /// `mtls:`: a verified client certificate is required, whatever `ssl_verify_mode` says;
    /// no pre-shared key is accepted in its place.
    Mtls,
    /// `btls:`: no client certificate is asked for.
    Btls,
    /// `psk:`: only a pre-shared key (`ssl_psk_file`) is accepted; the server presents no
    /// certificate, so a client without a usable PSK gets no handshake.
    Psk,
}

impl ListenerTls {
    /// The per-connection verify mode override, if any.
    pub(crate) fn verify_override(self) -> Option<SslVerifyMode> {
        match self {
            ListenerTls::Default => None,
            ListenerTls::Mtls => Some(VerifyMode::Require.openssl()),
            ListenerTls::Btls | ListenerTls::Psk => Some(VerifyMode::None.openssl()),
        }
    }

    /// The session id context of its connections. A session resumes only where its context
    /// matches, so one made on a `btls:` listener (no client certificate) can never be
    /// resumed on an `mtls:` one, where a resumption would skip the certificate check.
    pub(crate) fn session_id_context(self) -> &'static [u8] {
        match self {
            ListenerTls::Default => SESSION_ID_CONTEXT,
            ListenerTls::Mtls => b"memcached/mtls",
            ListenerTls::Btls => b"memcached/btls",
            ListenerTls::Psk => b"memcached/psk",
        }
    }
}

/// Builds a complete new server context from the files named in `settings`: ciphers, the
/// certificate chain, the key (`ssl_keyformat`), the key/certificate check, the client CA,
/// verify mode, minimum version, the session cache (tickets are always on). Renegotiation is refused and idle
/// connections release their buffers. New sessions are counted into `counters`.
///
/// Nothing is shared with a previous context, so a failure leaves whatever is serving intact.
pub fn build_context(
    settings: &TlsSettings,
    counters: &Arc<TlsCounters>,
) -> Result<SslContext, RefreshError> {
    let internal = |e: openssl::error::ErrorStack| RefreshError::Context {
        detail: first_error(&e),
    };
    let mut ctx = SslContextBuilder::new(SslMethod::tls_server()).map_err(internal)?;
    ctx.set_min_proto_version(Some(settings.min_version.openssl()))
        .map_err(internal)?;
    if let Some(ciphers) = &settings.ciphers {
        ctx.set_cipher_list(ciphers)
            .map_err(|_| RefreshError::Ciphers {
                ciphers: ciphers.clone(),
            })?;
    } else if settings.psk_file.is_some() {
        // OpenSSL's default list leaves out the TLS 1.2 PSK suites. They come first (ECDHE ones,
        // with forward secrecy, before plain PSK), since the server's order decides with
        // PSKs: a client that offers a PSK suite besides certificate ones means its key, and
        // would otherwise get a certificate suite and no identity. Clients without a PSK do
        // not offer PSK suites (OpenSSL's default list has none).
        ctx.set_cipher_list("ECDHEPSK:PSK:DEFAULT")
            .map_err(internal)?;
    }
    if let Some(path) = &settings.psk_file {
        // Read with the context, so a refresh reads the keys again too.
        let table = crate::psk::PskTable::load(path)?;
        crate::psk::install(&mut ctx, table).map_err(internal)?;
    }
    // With pre-shared keys, a certificate is optional: without one only PSK clients connect.
    if settings.chain_cert.is_some() || settings.psk_file.is_none() {
        load_certificates(&mut ctx, settings)?;
    }
    ctx.set_verify(settings.verify_mode.openssl());
    ctx.set_options(SslOptions::NO_RENEGOTIATION);
    // The application traffic secrets, for the record layer that takes over from OpenSSL
    // once a TLS 1.3 handshake ends (`crate::records`; TLS 1.2's come from the session's
    // master secret). Nothing is written anywhere.
    ctx.set_keylog_callback(crate::session::capture_secret);
    // The batch writer keeps its buffer still while a write is retried, but be tolerant.
    // OpenSSL's record buffers (about 34 KiB) are freed after every record that leaves them
    // empty, so a connection between requests holds none (as rampart's own buffers,
    // `crate::buffers`). Measured against keeping them until the connection idles: no cost
    // at 10,000/s or at saturation (docs/performance.md, "Idle connections").
    let mode = SslMode::ACCEPT_MOVING_WRITE_BUFFER | SslMode::RELEASE_BUFFERS;
    ctx.set_mode(mode);
    // Each listener kind overrides it per connection (ListenerTls::session_id_context).
    ctx.set_session_id_context(SESSION_ID_CONTEXT)
        .map_err(internal)?;
    if settings.session_cache {
        ctx.set_session_cache_mode(SslSessionCacheMode::SERVER);
        let counters = Arc::clone(counters);
        ctx.set_new_session_callback(move |_ssl, _session| {
            counters.new_sessions.fetch_add(1, Ordering::Relaxed);
        });
    } else {
        // No server-side cache; stateless tickets still resume sessions, as in memcached
        // 1.6.18 without ssl_session_cache (checked live, TLS 1.2 and 1.3).
        ctx.set_session_cache_mode(SslSessionCacheMode::OFF);
    }
    Ok(ctx.build())
}

/// memcached's `load_server_certificates`: chain, key, check, CA, in that order.
fn load_certificates(
    ctx: &mut SslContextBuilder,
    settings: &TlsSettings,
) -> Result<(), RefreshError> {
    let (chain_path, chain) = shown(settings.chain_cert.as_deref());
    let chain = chain.ok_or_else(|| RefreshError::Chain {
        path: chain_path.clone(),
        detail: system_error(EFAULT),
    })?;
    ctx.set_certificate_chain_file(chain)
        .map_err(|e| RefreshError::Chain {
            path: chain_path,
            detail: first_error(&e),
        })?;

    let (key_path, key) = shown(settings.key.as_deref());
    let key = key.ok_or_else(|| RefreshError::Key {
        path: key_path.clone(),
        detail: system_error(EFAULT),
    })?;
    // SSL_CTX_use_PrivateKey_file itself rejects a key that does not match the chain, so a
    // mismatch is reported as "Error loading the key" (as memcached 1.6.18 on OpenSSL 3 does).
    ctx.set_private_key_file(key, settings.key_format.openssl())
        .map_err(|e| RefreshError::Key {
            path: key_path,
            detail: first_error(&e),
        })?;
    ctx.check_private_key()
        .map_err(|e| RefreshError::Validate {
            detail: first_error(&e),
        })?;

    if let Some(ca) = settings.ca_cert.as_deref() {
        let ca_error = |e: openssl::error::ErrorStack| RefreshError::Ca {
            path: ca.to_string_lossy().into_owned(),
            detail: first_error(&e),
        };
        ctx.set_ca_file(ca).map_err(ca_error)?;
        ctx.set_client_ca_list(X509Name::load_client_ca_file(ca).map_err(ca_error)?);
    }
    Ok(())
}

/// A path as memcached prints it (`(null)` when unset), and the path itself.
fn shown(path: Option<&Path>) -> (String, Option<&Path>) {
    match path {
        Some(p) => (p.to_string_lossy().into_owned(), Some(p)),
        None => (String::from("(null)"), None),
    }
}
