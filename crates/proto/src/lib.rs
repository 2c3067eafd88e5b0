//! rampart-proto: memcached's wire codecs. Bytes in, requests out; replies in, bytes out.
//!
//! A [`Request`] is the logical command shared by every encoding; [`text`] parses memcached's
//! text protocol into it straight from the connection's buffer (keys and values stay slices of
//! that buffer) and encodes replies into the connection's output without allocating. [`meta`]
//! (reached through the text parser too, as in memcached) and [`binary`] are further encodings
//! of the same requests, with their own reply encoders.
//!
//! Depends on nothing of rampart's. Deliberately does no I/O, keeps no clock, stores nothing,
//! and knows nothing of glommio or OpenSSL: what a request *does* is the server's business.

pub mod base64;
pub mod binary;
pub mod meta;
pub mod request;
pub mod text;

pub use request::{
    Arith, CacheMemlimit, Delete, FlushAll, Get, Keys, MAX_KEY_BYTES, MAX_META_FLAGS,
    MAX_OPAQUE_BYTES, MetaArith, MetaDebug, MetaDelete, MetaFlags, MetaGet, MetaKey, MetaSet,
    MetaSetMode, Request, Sasl, ShutdownMode, Stats, Store, StoreMode, Touch, Verbosity,
};

/// The outcome of looking at the front of a connection's buffer, the same for every codec
/// (each names it `Parsed<'a>` for its own `Frame`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<F> {
    /// More bytes are needed before anything can be decided. Not an error.
    Incomplete,
    /// The peer cannot be resynchronised: close the connection (each codec says when).
    Close,
    /// `consumed` bytes make up one frame.
    Complete { consumed: usize, frame: F },
}
