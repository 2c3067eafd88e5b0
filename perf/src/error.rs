//! Why a run could not be carried out. Faults of the server under load during the run (error
//! replies, dropped connections) are not here: they are counted in the
//! [`Report`](crate::Report), which says whether the run was clean.

use std::io;

use crate::config::ConfigError;

/// A run that could not start or could not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot resolve {server}: {source}")]
    Resolve { server: String, source: io::Error },
    #[error("cannot connect to {server}: {source}")]
    Connect { server: String, source: io::Error },
    #[error("TLS setup: {what}: {source}")]
    TlsSetup {
        what: String,
        source: openssl::error::ErrorStack,
    },
    #[error("TLS handshake with {server} failed: {message}")]
    Handshake { server: String, message: String },
    #[error("authenticating with {server} failed: {source}")]
    Auth {
        server: String,
        source: crate::auth::AuthFailure,
    },
    #[error("the first reply from {server}: {message}")]
    FirstReply { server: String, message: String },
    #[error("cannot pin a client thread to CPU {cpu}: {source}")]
    Affinity { cpu: usize, source: io::Error },
    #[error("cannot start a client thread: {0}")]
    Thread(io::Error),
    #[error("poller: {0}")]
    Poll(io::Error),
    #[error("prepopulating failed: {0}")]
    Prepopulate(String),
    #[error("the client threads did not get ready within {0:?}")]
    NotReady(std::time::Duration),
    #[error("a client thread panicked")]
    ThreadPanicked,
}
