//! Error types, grouped by who is at fault, and OpenSSL's error text in memcached's format.

use std::ffi::{c_char, c_ulong};

use openssl::error::ErrorStack;
// openssl-sys links libcrypto, which provides `ERR_error_string_n` below.
use openssl_sys as _;
use thiserror::Error;

/// A bad `-o ssl_*` option: the operator's fault, reported at startup (memcached exits 1).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingsError {
    /// `-o ssl_key` without `=value`.
    #[error("Missing {0} argument")]
    Missing(&'static str),
    /// Not a number where one is needed.
    #[error("could not parse argument to {0}")]
    Parse(&'static str),
    /// A number outside the option's range.
    #[error("Invalid {0}. Use help to see valid options.")]
    Invalid(&'static str),
    /// rampart only: `ssl_wbuf_size=0` would leave the batch writer no buffer.
    #[error("ssl_wbuf_size must be at least 1 (kilobytes)")]
    ZeroWriteBuffer,
}

impl SettingsError {
    /// memcached's exit status for a bad option.
    pub fn exit_code(&self) -> i32 {
        1
    }
}

/// Why a context could not be built. `Display` is memcached's `refresh_certs` reply line
/// (no `ERROR` prefix, no CRLF); at startup the same line goes to stderr.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RefreshError {
    #[error("Error loading the certificate chain: {path} : {detail}")]
    Chain { path: String, detail: String },
    #[error("Error loading the key: {path} : {detail}")]
    Key { path: String, detail: String },
    #[error("Error validating the certificate: {detail}")]
    Validate { detail: String },
    #[error("Error loading the CA certificate: {path} : {detail}")]
    Ca { path: String, detail: String },
    #[error("Error setting the provided cipher(s): {ciphers}")]
    Ciphers { ciphers: String },
    /// `ssl_psk_file` cannot be used (rampart only).
    #[error("Error loading the PSK file: {path} : {detail}")]
    Psk { path: String, detail: String },
    /// Allocation or option failures inside OpenSSL: the server's fault, not the files'.
    #[error("Error creating the TLS context: {detail}")]
    Context { detail: String },
}

/// A TLS startup failure. memcached exits with `EX_USAGE` (64) for these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StartupError {
    #[error("{0}")]
    Context(#[from] RefreshError),
    /// rampart only: memcached 1.6.18 silently runs without kTLS instead.
    #[error(
        "ssl_kernel_tls requires the kernel's tls module, which is not loaded (no /sys/module/tls)"
    )]
    KernelTlsUnavailable,
}

impl StartupError {
    /// `EX_USAGE`, as memcached exits when TLS cannot be initialised.
    pub fn exit_code(&self) -> i32 {
        64
    }
}

/// A connection-level TLS failure. Every variant ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TlsError {
    /// The peer's handshake failed (bad record, no certificate, version too old...): the
    /// client's fault; counted in `ssl_handshake_errors`.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// A protocol error after the handshake (bad MAC, unexpected record): the client's fault;
    /// counted in `ssl_proto_errors`.
    #[error("TLS protocol error: {0}")]
    Protocol(String),
    /// The caller used the session in a state that does not allow it (a bug in the driver).
    #[error("TLS session is {0}")]
    WrongState(&'static str),
    /// OpenSSL could not set the session up: the server's fault.
    #[error("TLS session setup failed: {0}")]
    Setup(String),
}

unsafe extern "C" {
    // libcrypto's own formatter, which openssl-sys does not bind. The signature is
    // <openssl/err.h>'s: void ERR_error_string_n(unsigned long e, char *buf, size_t len).
    fn ERR_error_string_n(e: c_ulong, buf: *mut c_char, len: usize);
}

/// `ERR_error_string` of one packed error code: `error:80000002:system library::No such file
/// or directory` on OpenSSL 3, exactly as memcached prints it.
pub(crate) fn error_string(code: c_ulong) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is a writable 256-byte buffer and we pass its exact length;
    // ERR_error_string_n always NUL-terminates within `len` and reads no other memory.
    unsafe { ERR_error_string_n(code, buf.as_mut_ptr().cast::<c_char>(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The first (earliest) error of a stack, as memcached's `ERR_get_error()` picks it.
pub(crate) fn first_error(stack: &ErrorStack) -> String {
    match stack.errors().first() {
        Some(err) => error_string(err.code()),
        None => String::from("error:00000000:lib(0)::reason(0)"),
    }
}

/// A system error as OpenSSL 3 packs it (`ERR_SYSTEM_FLAG | errno`).
pub(crate) fn system_error(errno: i32) -> String {
    const ERR_SYSTEM_FLAG: c_ulong = 0x8000_0000;
    error_string(ERR_SYSTEM_FLAG | errno as c_ulong)
}
