//! rampart-perf: `rampart-load`, a load generator for memcached-protocol servers.
//!
//! It drives any server that speaks memcached's text protocol (rampart, upstream memcached)
//! over plaintext TCP or TLS, in a closed loop (N connections, each keeping D requests in
//! flight: throughput) or an open loop (a fixed offered rate with latency measured from each
//! request's intended send time: latency without coordinated omission). Latency goes into an
//! HDR histogram; hits, misses and every kind of error are counted, and a run with any error
//! is reported as unclean.
//!
//! Call [`run`] with a [`Config`] for a [`Report`], or [`start`] to watch a run's
//! [`Progress`] while it goes. [`Config::auth`] authenticates every connection first with
//! memcached's ASCII authentication (`-Y`); [`first_replies`] opens connections one after
//! another and times each from `connect` to its first reply. The binary `rampart-load` is a
//! thin command line over this.
//!
//! Depends on `rampart-proto` to encode requests and on nothing else of rampart's: std
//! threads and a `mio` poller per thread, not glommio, so that the generator shares no
//! runtime with the server it measures. It has its own reply parser (the codec's side is the
//! server's), and uses `openssl` directly rather than `rampart-tls`, as any other client would.
//! Its `unsafe` is confined to `sys.rs` (CPU pinning, a timerfd) and the io_uring floor
//! (`floor/uring.rs`: what its SQEs name, and the provided-buffer ring). Deliberately not here:
//! the binary and meta protocols (so no binary SASL), key distributions other than uniform,
//! and any server process management (that is the xtask's).

mod auth;
mod config;
mod conn;
mod driver;
mod error;
pub mod floor;
mod handshake;
pub mod reply;
mod run;
mod stats;
mod sys;
mod transport;
mod workload;

pub use auth::{AsciiAuth, AuthFailure, MAX_AUTH_TOKEN_BYTES};
pub use config::{
    Config, ConfigError, MAX_CONNECTIONS, MAX_PIPELINE, MAX_VALUE_SIZE_BYTES, Stop, TlsConfig,
    Verify, parse_cpu_list,
};
pub use error::Error;
pub use handshake::{FirstReplies, MAX_SEQUENCE_CONNECTIONS, Sequence, first_replies};
pub use run::{Progress, Running, run, start};
pub use stats::{Errors, Latency, Parameters, Report};
pub use workload::Op;
