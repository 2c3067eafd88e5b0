//! Feeds arbitrary text to the access-policy parser and checks what must always hold:
//! - a policy either loads or names a line that exists;
//! - a policy that loads grants nothing to an identity it does not name;
//! - decisions are deterministic, and a right denied on a key stays denied when more rights
//!   are asked for at once (asking for more never allows more);
//! - every `key:`/`prefix:` of the text, as a key, is decided without a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_auth::policy::{IdentityName, NAMES, Policy, Rights};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let policy = match Policy::parse(&text) {
        Err(err) => {
            let lines = text.lines().count().max(1);
            assert!(err.line >= 1 && err.line <= lines, "{err} of {lines} lines");
            return;
        }
        Ok(policy) => policy,
    };
    let stranger = IdentityName::User("\u{0}never named".into());
    assert!(!policy.names(&stranger));
    let nothing = policy.grants(&stranger);
    // Every key the text mentions, and one it cannot.
    let mut keys: Vec<Vec<u8>> = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("key:").or_else(|| w.strip_prefix("prefix:")))
        .map(|k| k.as_bytes().to_vec())
        .collect();
    keys.push(b"\x00unlikely".to_vec());
    let identities: Vec<IdentityName> = text
        .split_whitespace()
        .filter_map(|w| IdentityName::parse(w.trim_end_matches(']')).ok())
        .collect();
    for key in &keys {
        for (_, rights) in NAMES {
            assert!(nothing.check_key(key, *rights).is_err());
            assert!(nothing.check_keyless(*rights).is_err() || rights.is_empty());
            for identity in &identities {
                let grants = policy.grants(identity);
                let once = grants.check_key(key, *rights).is_ok();
                assert_eq!(once, grants.check_key(key, *rights).is_ok());
                let more = rights.union(Rights::GET).union(Rights::DELETE);
                if !once {
                    assert!(grants.check_key(key, more).is_err());
                }
            }
        }
    }
});
