//! `rampart acl-check <policy file> <identity> <request line...>`: the policy's dry run,
//! offline. Loads the file as the server would (the same errors, with the line), then says
//! whether the identity may run the request, without a server.
//!
//! Prints `ALLOWED` (exit 0) or `DENIED <command|key> [<key>]` (exit 1); a file or request
//! that cannot be used exits 64 with the reason.

use std::process::ExitCode;

use rampart_auth::policy::{IdentityName, Policy};

const EXIT_USAGE: u8 = 64;

pub fn main(args: Vec<String>) -> ExitCode {
    let [file, identity, request @ ..] = args.as_slice() else {
        eprintln!("usage: rampart acl-check <policy file> <identity> <request line...>");
        return ExitCode::from(EXIT_USAGE);
    };
    if request.is_empty() {
        eprintln!("usage: rampart acl-check <policy file> <identity> <request line...>");
        return ExitCode::from(EXIT_USAGE);
    }
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("rampart: {file}: {err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let policy = match Policy::parse(&text) {
        Ok(policy) => policy,
        Err(err) => {
            eprintln!("rampart: {file}:{}: {}", err.line, err.message);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let identity = match IdentityName::parse(identity) {
        Ok(identity) => identity,
        Err(why) => {
            eprintln!("rampart: {why}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if !policy.names(&identity) {
        eprintln!("note: the policy does not name {identity}: it may do nothing");
    }
    let line = request.join(" ");
    match rampart_server::authz::dry_run(&policy, &identity, line.as_bytes()) {
        Ok(decision) => {
            println!("{decision}");
            if decision == rampart_server::authz::DryRun::Allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(why) => {
            eprintln!("rampart: `{line}`: {why}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
