//! A single-key retrieval with options: meta `mg`, and binary get/getk/gat/gatk/touch (+ quiet).
//!
//! # Format
//! ```text
//! mg <key> <flag>*\r\n
//!   b base64 key   c cas   f client flags   h hit before   k key   l secs since last access
//!   O<opaque>      q quiet s size           t ttl (-1 none) u no LRU bump   v value
//!   N<ttl> vivify on miss  R<ttl> recache win below ttl      T<ttl> touch
//! ```

use super::meta::{MetaFlags, MetaKey};

/// `mg`: fetch one item, returning what the flags ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaGet<'a> {
    pub key: MetaKey<'a>,
    /// Every flag letter, in order (the returned ones are echoed in this order).
    pub flags: MetaFlags,
    /// `O<opaque>`: echoed as given, without the `O`.
    pub opaque: Option<&'a [u8]>,
    /// `T<ttl>`: update the TTL (memcached's exptime form).
    pub touch: Option<i64>,
    /// `N<ttl>`: on a miss create an empty item with this TTL and hand this client the win.
    pub vivify: Option<i64>,
    /// `R<ttl>`: if the remaining TTL is below this, hand this client the win (recache).
    pub recache: Option<i64>,
}

impl MetaGet<'_> {
    /// `v`: the reply carries the value (`VA`), else `HD`.
    pub fn returns_value(&self) -> bool {
        self.flags.has(b'v')
    }

    /// `q`: a miss (`EN`) is not answered.
    pub fn quiet(&self) -> bool {
        self.flags.quiet()
    }

    /// `u`: do not bump the item in the LRU.
    pub fn no_lru_bump(&self) -> bool {
        self.flags.has(b'u')
    }
}
