//! rampart-proto: memcached's wire codecs. Bytes in, requests out; replies in, bytes out.
//!
//! A [`Request`] is the logical command shared by every encoding; [`text`] parses memcached's
//! text protocol into it straight from the connection's buffer (keys and values stay slices of
//! that buffer) and encodes replies into the connection's output without allocating. The meta
//! and binary protocols will be further encodings of the same requests.
//!
//! Depends on nothing of rampart's. Deliberately does no I/O, keeps no clock, stores nothing,
//! and knows nothing of glommio or OpenSSL: what a request *does* is the server's business.

pub mod request;
pub mod text;

pub use request::{
    Arith, CacheMemlimit, Delete, FlushAll, Get, Keys, MAX_KEY_BYTES, Request, ShutdownMode, Stats,
    Store, StoreMode, Touch, Verbosity,
};
