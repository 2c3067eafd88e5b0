//! A single-key store with options: meta `ms`, and binary set/add/replace/append/prepend (+ quiet).
//!
//! # Format
//! ```text
//! ms <key> <datalen> <flag>*\r\n<data>\r\n
//!   b base64 key   c return cas   k return key   O<opaque>   q quiet   I invalidate (with C)
//!   C<cas> compare   F<flags> client flags   T<ttl> exptime   M<E|A|P|R|S> mode
//! ```

use super::meta::{MetaFlags, MetaKey};

/// `M`: how the store treats an existing item (`S`et is the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaSetMode {
    /// `MS`
    Set,
    /// `ME` (add: only if absent)
    Add,
    /// `MR`
    Replace,
    /// `MA`
    Append,
    /// `MP`
    Prepend,
}

impl MetaSetMode {
    /// The letter after `M`.
    pub fn letter(self) -> u8 {
        match self {
            MetaSetMode::Set => b'S',
            MetaSetMode::Add => b'E',
            MetaSetMode::Replace => b'R',
            MetaSetMode::Append => b'A',
            MetaSetMode::Prepend => b'P',
        }
    }

    pub(crate) fn from_letter(letter: u8) -> Option<Self> {
        Some(match letter {
            b'S' => MetaSetMode::Set,
            b'E' => MetaSetMode::Add,
            b'R' => MetaSetMode::Replace,
            b'A' => MetaSetMode::Append,
            b'P' => MetaSetMode::Prepend,
            _ => return None,
        })
    }
}

/// `ms`: store one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaSet<'a> {
    pub key: MetaKey<'a>,
    pub flags: MetaFlags,
    pub mode: MetaSetMode,
    /// `C<cas>`: memcached turns set and replace into a CAS store and checks append/prepend
    /// too; add ignores it.
    pub cas: Option<u64>,
    /// `F<flags>`: client flags (0 when absent).
    pub client_flags: u32,
    /// `T<ttl>`: exptime in memcached's form (0, never, when absent).
    pub exptime: i64,
    pub opaque: Option<&'a [u8]>,
    /// The value, without the trailing `\r\n`.
    pub data: &'a [u8],
}

impl MetaSet<'_> {
    /// `q`: success (`HD`) is not answered.
    pub fn quiet(&self) -> bool {
        self.flags.quiet()
    }

    /// `I`: with a CAS that is older than the item's, store it marked stale instead of failing.
    pub fn invalidate(&self) -> bool {
        self.flags.has(b'I')
    }
}
