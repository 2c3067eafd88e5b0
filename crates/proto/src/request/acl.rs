//! `acl`: rampart's commands for its access policy (memcached has none; it answers `ERROR`).
//!
//! # Format
//! ```text
//! acl reload\r\n                          read the policy file again
//! acl log [reset]\r\n                     recent refusals and authentication failures
//! acl check <identity> <request>\r\n      would <identity> be allowed <request>? (dry run)
//! ```

/// One `acl` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acl<'a> {
    Reload,
    Log,
    LogReset,
    /// `identity` as a policy names it (`user:alice`); `request` is a request line, without
    /// its `\r\n` (a storage command's data block is not needed).
    Check {
        identity: &'a [u8],
        request: &'a [u8],
    },
    /// Anything else after `acl`.
    Usage,
}
