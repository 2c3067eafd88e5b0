//! The one place where a parsed request is allowed or refused.
//!
//! Every request of every protocol passes through [`authorize`] with the identity of the
//! connection that sent it, after parsing and before it touches a shard. A connection is
//! [`Identity::Anonymous`] unless its TLS client presented a verified certificate, or it
//! authenticated (`-Y`, `-S`: then it is [`Identity::User`]). No policy
//! is configured yet, so everything is allowed, as memcached allows it; access rules
//! (per-client commands and keys) plug in here.

use rampart_proto::Request;
use rampart_tls::PeerIdentity;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials presented (or none required).
    Anonymous,
    /// A TLS client whose certificate the server verified: its subject CN and SANs (boxed:
    /// every connection keeps an identity, most of them anonymous, in 8 bytes).
    Certificate(Box<PeerIdentity>),
    /// A user who authenticated with ASCII auth or SASL.
    User(Box<rampart_auth::User>),
    /// A TLS client that authenticated with a pre-shared key (`ssl_psk_file`): its identity.
    Psk(Box<str>),
}

/// The outcome of an authorization decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Answered `CLIENT_ERROR access denied` (text and meta) or status 0x08 `access denied`
    /// (binary) without running the request.
    Deny,
}

/// Decides whether `identity` may run `request`.
pub fn authorize(identity: &Identity, request: &Request<'_>) -> Decision {
    match identity {
        // Without a configured policy memcached's behaviour is the contract: everything is
        // allowed, including admin commands, which have their own switches (-A, -F).
        Identity::Anonymous | Identity::Certificate(_) | Identity::User(_) | Identity::Psk(_) => {
            let _ = request;
            Decision::Allow
        }
    }
}
