//! Arithmetic with options: meta `ma`, and binary increment/decrement (+ quiet).
//!
//! # Format
//! ```text
//! ma <key> <flag>*\r\n
//!   b base64 key   c return cas   k return key   O<opaque>   q quiet   t return ttl   v value
//!   C<cas> compare   D<delta> (1)   J<initial> (0)   N<ttl> create on miss   T<ttl> update TTL
//!   M<I|+|D|-> mode (incr)
//! ```

use super::meta::{MetaFlags, MetaKey};

/// `ma`: add to or subtract from a decimal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaArith<'a> {
    pub key: MetaKey<'a>,
    pub flags: MetaFlags,
    /// Increment (`MI`, `M+`, the default) or decrement (`MD`, `M-`).
    pub incr: bool,
    /// `D<delta>`: 1 when absent.
    pub delta: u64,
    /// `J<initial>`: the value a vivified item starts with (0 when absent).
    pub initial: u64,
    /// `N<ttl>`: create a missing item with `initial` and this TTL (binary: expiration other
    /// than 0xffffffff).
    pub vivify: Option<i64>,
    /// `T<ttl>`: the item's new TTL on success.
    pub touch: Option<i64>,
    /// `C<cas>`: only if the item's CAS unique is this one.
    pub cas: Option<u64>,
    pub opaque: Option<&'a [u8]>,
}

impl MetaArith<'_> {
    /// `q`: success (`HD`) is not answered.
    pub fn quiet(&self) -> bool {
        self.flags.quiet()
    }

    /// `v`: the reply carries the new value (`VA`), else `HD`.
    pub fn returns_value(&self) -> bool {
        self.flags.has(b'v')
    }
}
