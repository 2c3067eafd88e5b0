//! `acl reload`, `acl log [reset]` and `acl check <identity> <request>`: the access policy's
//! own commands (admin only: they need the policy's `acl` grant, and without a policy a client
//! on this machine); and `auth reload`, the credential files' (the `auth` grant).
//!
//! # Format
//! ```text
//! acl reload              OK | SERVER_ERROR policy not reloaded: <file>:<line>: <why>
//! acl log                 ACL event=<id> identity=<kind:name> command=<cmd> reason=<why>
//!                             count=<n> last_key=<key> first_seen=<unix> last_seen=<unix>
//!                         ... END
//! acl log reset           RESET
//! acl check user:a get k  ALLOWED | DENIED <command|key> [<key>] | CLIENT_ERROR <why>
//! auth reload             OK | SERVER_ERROR credentials not reloaded: <file>: <why>
//! ```

use rampart_auth::policy::IdentityName;
use rampart_proto::request::{Acl, AuthCommand};
use rampart_proto::text::reply;

use crate::authz;
use crate::output::Output;
use crate::worker::Worker;

const NO_POLICY: &[u8] = b"CLIENT_ERROR no access policy is configured (-o acl_file)";
const NO_AUDIT: &[u8] = b"CLIENT_ERROR the recent log needs the audit trail (-o audit_log)";
const NO_CREDENTIALS: &[u8] =
    b"CLIENT_ERROR no credential file is configured (-Y, or -S with MEMCACHED_SASL_PWDB)";
const AUTH_USAGE: &[u8] = b"CLIENT_ERROR usage: auth reload";
const USAGE: &[u8] =
    b"CLIENT_ERROR usage: acl reload | acl log [reset] | acl check <identity> <request>";

/// Answers one `auth` command into `out`: a reload as SIGHUP's, which a connection whose
/// user it removed or changed notices at its next request.
pub(super) fn auth(command: AuthCommand, worker: &Worker, out: &mut Output) {
    let out = out.bytes();
    match command {
        AuthCommand::Usage => reply::line(out, AUTH_USAGE),
        AuthCommand::Reload => reload_reply(
            out,
            worker.process_state().reload_credentials("auth reload"),
            NO_CREDENTIALS,
            "credentials",
        ),
    }
}

/// A reload's answer: `OK`, `SERVER_ERROR <what> not reloaded: <why>`, or `missing` when there
/// is nothing to reload.
fn reload_reply<E: std::fmt::Display>(
    out: &mut Vec<u8>,
    outcome: Option<Result<usize, E>>,
    missing: &[u8],
    what: &str,
) {
    match outcome {
        None => reply::line(out, missing),
        Some(Ok(_)) => reply::line(out, reply::OK),
        Some(Err(err)) => {
            let line = format!("SERVER_ERROR {what} not reloaded: {err}");
            reply::line(out, one_line(&line).as_bytes());
        }
    }
}

/// Answers one `acl` command into `out`.
pub(super) fn run(acl: Acl<'_>, worker: &Worker, out: &mut Output) {
    let out = out.bytes();
    match acl {
        Acl::Usage => reply::line(out, USAGE),
        Acl::Reload => reload_reply(
            out,
            worker.process_state().reload_access("acl reload"),
            NO_POLICY,
            "policy",
        ),
        Acl::Log | Acl::LogReset => {
            let Some(audit) = worker.audit() else {
                reply::line(out, NO_AUDIT);
                return;
            };
            if acl == Acl::LogReset {
                audit.reset_recent();
                reply::line(out, b"RESET");
                return;
            }
            for entry in audit.recent() {
                let identity = if entry.identity.name.is_empty() {
                    entry.identity.kind.to_owned()
                } else {
                    format!("{}:{}", entry.identity.kind, entry.identity.name)
                };
                let line = format!(
                    "ACL event={} identity={identity} command={} reason={} count={} last_key={} first_seen={} last_seen={}",
                    entry.event,
                    entry.command,
                    entry.reason.replace(' ', "_"),
                    entry.count,
                    entry.last_key,
                    entry.first_seen,
                    entry.last_seen,
                );
                reply::line(out, one_line(&line).as_bytes());
            }
            reply::line(out, reply::END);
        }
        Acl::Check { identity, request } => {
            let Some(access) = worker.access() else {
                reply::line(out, NO_POLICY);
                return;
            };
            let name = std::str::from_utf8(identity)
                .map_err(|_| "the identity is not UTF-8".to_owned())
                .and_then(IdentityName::parse);
            let outcome = name.and_then(|name| authz::dry_run(&access.policy(), &name, request));
            match outcome {
                Ok(decision) => reply::line(out, decision.to_string().as_bytes()),
                Err(why) => {
                    let line = format!("CLIENT_ERROR {why}");
                    reply::line(out, one_line(&line).as_bytes());
                }
            }
        }
    }
}

/// A reply line never carries a line break of its own.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}
