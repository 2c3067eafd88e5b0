//! What the meta and binary encodings share: the key form and the ordered flag list.
//!
//! # Format
//! ```text
//! <cmd> <key> <flag>*\r\n          flags are one letter, some followed by a token: T30 O9 b
//! ```

use crate::base64;
use crate::request::MAX_KEY_BYTES;

/// At most this many flags fit on a meta line (memcached refuses more than 20 tokens).
pub const MAX_META_FLAGS: usize = 20;

/// The longest opaque token memcached echoes, the leading `O` included.
pub const MAX_OPAQUE_BYTES: usize = 32;

/// A key as the client sent it: raw bytes, or base64 when the `b` flag is set. It stays a slice
/// of the read buffer; [`MetaKey::decode`] gives the bytes the store indexes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MetaKey<'a> {
    /// The key token as it appears on the wire (encoded when `base64`).
    pub raw: &'a [u8],
    /// `b`: the key is base64; replies echo it re-encoded, followed by ` b`.
    pub base64: bool,
}

impl<'a> MetaKey<'a> {
    /// A plain (not base64) key.
    pub fn plain(raw: &'a [u8]) -> Self {
        MetaKey { raw, base64: false }
    }

    /// The key the store sees. A base64 key is decoded into `scratch`; the parser has already
    /// checked that it decodes (a request whose key does not is refused), so a key that does
    /// not decode here can only come from a hand-built request and gives an empty slice.
    pub fn decode<'s>(&'s self, scratch: &'s mut [u8; MAX_KEY_BYTES]) -> &'s [u8] {
        if !self.base64 {
            return self.raw;
        }
        let len = base64::decode(self.raw, scratch).unwrap_or(0);
        &scratch[..len]
    }
}

impl std::fmt::Debug for MetaKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = String::from_utf8_lossy(self.raw);
        if self.base64 {
            write!(f, "{key:?} (base64)")
        } else {
            write!(f, "{key:?}")
        }
    }
}

/// The flag letters of a meta request, in the client's order. memcached writes the returned
/// flags in exactly this order, so the reply encoders walk it; values that flags carry (`T30`,
/// `O9`) live in the typed fields of each request.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct MetaFlags {
    letters: [u8; MAX_META_FLAGS],
    len: u8,
}

impl MetaFlags {
    /// Flags from letters in order; letters past [`MAX_META_FLAGS`] and repeats are dropped.
    pub fn from_letters(letters: &[u8]) -> Self {
        let mut flags = MetaFlags::default();
        for &letter in letters {
            flags.push(letter);
        }
        flags
    }

    pub(crate) fn push(&mut self, letter: u8) {
        let len = usize::from(self.len);
        if len < MAX_META_FLAGS && !self.has(letter) {
            self.letters[len] = letter;
            self.len += 1;
        }
    }

    /// Whether `letter` was given.
    pub fn has(&self, letter: u8) -> bool {
        self.as_slice().contains(&letter)
    }

    /// The letters in the client's order.
    pub fn as_slice(&self) -> &[u8] {
        &self.letters[..usize::from(self.len)]
    }

    /// `q`: suppress the nominal reply (`EN` for mg; `HD` for ms, md, ma).
    pub fn quiet(&self) -> bool {
        self.has(b'q')
    }
}

impl std::fmt::Debug for MetaFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}
