//! rampart-tls: everything rampart does with OpenSSL, and the only crate that touches
//! `openssl` / `openssl-sys` (and so the home of `unsafe` for it).
//!
//! - [`TlsSettings`]: memcached's `ssl_*` options with memcached's names, defaults, startup
//!   error messages and `stats settings` lines.
//! - [`build_context`]: a complete, checked `SSL_CTX` built from the files, with
//!   `refresh_certs`' exact error lines ([`RefreshError`]).
//! - [`ContextHolder`]: the process-wide, atomically swappable context plus the TLS stats
//!   counters; a failed refresh leaves the old context serving.
//! - [`TlsSession`]: one connection's state machine (`Handshaking`, `Established`,
//!   `ShuttingDown`, `Protected`, `Closed`) over in-memory buffers, with a sendmsg-style
//!   batch writer. A finished handshake with an AEAD suite (TLS 1.3; TLS 1.2's AES-GCM and
//!   ChaCha20-Poly1305) hands over to `records`, rampart's own record layer on OpenSSL's
//!   AEAD, and OpenSSL's connection object is freed.
//!
//! It depends on nothing of ours. It does no I/O beyond reading certificate files: the server
//! owns the sockets, feeds ciphertext in and writes ciphertext out; it owns no clock either
//! (the handshake timeout is a setting the connection driver enforces).
//!
//! The connection driver's turn, for a connection accepted on a TLS listener
//! (`holder.new_session(listener)`):
//!
//! 1. read the socket once into `ciphertext_room(n)`, then `ciphertext_added(read)` (or
//!    `feed_ciphertext(bytes)` to copy bytes in);
//! 2. `read_plaintext(&mut rbuf)`: `Err` closes (after writing `take_ciphertext()`);
//!    `Next::WantRead` waits for the socket, `Next::WantWrite` flushes first,
//!    `Next::PeerClosed` answers what was read and then `shutdown()`s;
//! 3. parse and run the requests in `rbuf`, `write_plaintext_batch(&reply_slices)`;
//! 4. write `take_ciphertext()` and `consume_ciphertext(n)` until empty (partial writes resume);
//! 5. before waiting for the next request with nothing pending (`is_drained()`),
//!    `shrink_idle()`: the buffers go back to the thread's spares ([`buffers`]).
//!
//! Until `is_established()`, close the connection after `TlsSettings::handshake_timeout`.

pub mod buffers;
mod context;
mod error;
mod holder;
mod psk;
mod records;
mod session;
mod settings;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(any(test, feature = "fuzzing"))]
mod test_pki;
#[cfg(test)]
mod tests;

pub use context::{ListenerTls, build_context};
pub use error::{RefreshError, SettingsError, StartupError, TlsError};
pub use holder::{ContextHolder, TlsCounters};
pub use session::{Next, PeerIdentity, Progress, TlsSession, WriteProgress};
pub use settings::{KeyFormat, MinVersion, TlsSettings, VerifyMode};
