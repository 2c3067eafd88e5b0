//! `auth`: rampart's command for its credential files (memcached has none; it answers
//! `ERROR`). Authenticating itself is memcached's ASCII `set` or binary SASL, never this.
//!
//! # Format
//! ```text
//! auth reload\r\n                         read the -Y / MEMCACHED_SASL_PWDB files again
//! ```

/// One `auth` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCommand {
    Reload,
    /// Anything else after `auth`.
    Usage,
}
