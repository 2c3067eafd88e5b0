//! A delete with options: meta `md`, and binary delete (+ quiet).
//!
//! # Format
//! ```text
//! md <key> <flag>*\r\n
//!   b base64 key   k return key   O<opaque>   q quiet   C<cas> compare
//!   I invalidate: mark stale instead of removing   T<ttl> new TTL when invalidating
//! ```

use super::meta::{MetaFlags, MetaKey};

/// `md`: remove one item, or mark it stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDelete<'a> {
    pub key: MetaKey<'a>,
    pub flags: MetaFlags,
    /// `C<cas>`: only if the item's CAS unique is this one (`EX` otherwise).
    pub cas: Option<u64>,
    /// `T<ttl>`: with `I`, the stale item's new TTL.
    pub exptime: Option<i64>,
    pub opaque: Option<&'a [u8]>,
}

impl MetaDelete<'_> {
    /// `q`: success (`HD`) is not answered.
    pub fn quiet(&self) -> bool {
        self.flags.quiet()
    }

    /// `I`: mark the item stale (bump its CAS) instead of removing it.
    pub fn invalidate(&self) -> bool {
        self.flags.has(b'I')
    }
}

/// `me <key> [b]`: memcached's item debug line (`ME <key> exp=.. la=.. cas=.. fetch=.. cls=..
/// size=..`), or `EN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaDebug<'a> {
    pub key: MetaKey<'a>,
}
