//! Feeds arbitrary bytes to rampart-auth's parsers and checks what must always hold:
//! - a credential file either parses or names a line that exists; every cleartext entry of a
//!   file that parses authenticates its user with its password, and with no other;
//! - a `PLAIN` message parses only with exactly two NUL separators, a non-empty user and
//!   password, and an authzid that is empty or the user's;
//! - a SCRAM secret's text form parses only back to the same text;
//! - a SCRAM exchange fed arbitrary client messages never panics, and never authenticates
//!   without the proof (random bytes never carry it); nor does a CRAM-MD5 response.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_auth::{CredentialStore, PlainMessage, ScramSecret};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => credentials(rest),
        1 => plain(rest),
        2 => scram(rest),
        _ => exchange(rest),
    }
});

fn credentials(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match CredentialStore::parse(&text) {
        Err(err) => {
            let lines = text.split('\n').count();
            assert!(err.line >= 1 && err.line <= lines, "{err} of {lines} lines");
        }
        Ok(store) => {
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.starts_with('#') || line.is_empty() {
                    continue;
                }
                let Some((user, password)) = line.split_once(':') else {
                    panic!("a file that parsed has an entry without ':'");
                };
                if password.starts_with("SCRAM-SHA-256$") {
                    continue;
                }
                assert!(
                    store.check_password(user.as_bytes(), password.as_bytes()).is_some(),
                    "a cleartext entry does not authenticate"
                );
                let other = format!("{password}\u{1}");
                // Another entry of the same user may have that password; none here does
                // unless the file says so.
                let listed = text
                    .split('\n')
                    .any(|l| l.strip_suffix('\r').unwrap_or(l) == format!("{user}:{other}"));
                if !listed {
                    assert!(store.check_password(user.as_bytes(), other.as_bytes()).is_none());
                }
            }
        }
    }
}

fn plain(data: &[u8]) {
    if let Ok(message) = PlainMessage::parse(data) {
        assert_eq!(data.iter().filter(|&&b| b == 0).count(), 2);
        assert!(!message.user.is_empty() && !message.password.is_empty());
        let authzid = &data[..data.iter().position(|&b| b == 0).unwrap_or(0)];
        assert!(authzid.is_empty() || authzid == message.user);
    }
}

fn scram(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(secret) = ScramSecret::parse(&text) {
        let again = ScramSecret::parse(&secret.to_text()).expect("its own text form parses");
        assert_eq!(again, secret);
    }
}

fn exchange(data: &[u8]) {
    thread_local! {
        static STORE: CredentialStore =
            CredentialStore::parse("alice:pencil\nbob:builder\n").expect("a fixed store");
    }
    let split = data.iter().position(|&b| b == 0xff).unwrap_or(data.len());
    let (first, last) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    STORE.with(|store| {
        if let Ok((exchange, server_first)) = store.scram_start(first, b"servernonce") {
            assert!(server_first.starts_with(b"r="));
            assert!(exchange.finish(last).is_err(), "authenticated without the proof");
        }
        let at = last.iter().rposition(|&b| b == b' ').unwrap_or(0);
        let (user, digest) = (&last[..at], last.get(at + 1..).unwrap_or_default());
        assert!(
            store.check_cram_md5(user, first, digest).is_none(),
            "CRAM-MD5 without the digest"
        );
    });
}
