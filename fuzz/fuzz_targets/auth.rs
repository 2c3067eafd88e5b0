//! Feeds arbitrary bytes to rampart-auth's parsers and checks what must always hold:
//! - a credential file either parses or names a line that exists; every cleartext entry of a
//!   file that parses authenticates its user with its password, and with no other;
//! - a `PLAIN` message parses only with exactly two NUL separators, a non-empty user and
//!   password, and an authzid that is empty or the user's;
//! - a SCRAM secret's text form (SCRAM-SHA-256 or SCRAM-SHA-512) parses only back to the same
//!   secret, of the kind its prefix names, with keys of that kind's length;
//! - a SCRAM exchange of either mechanism fed arbitrary client messages never panics, keeps
//!   the mechanism it was started for, answers with a salt and iteration count like any
//!   user's, and never authenticates without the proof (random bytes never carry it); nor
//!   does a CRAM-MD5 response. A mechanism name is a SCRAM one only when it is exactly its
//!   name;
//! - a certificate-user rule (`-o ssl_cert_user`, fed the same bytes as a SCRAM secret) parses
//!   only back to its own text, and maps a certificate name only to a valid user name that
//!   followed its prefix.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_auth::{
    CertNames, CertUserRule, CredentialStore, PlainMessage, ScramHash, ScramSecret,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => credentials(rest),
        1 => plain(rest),
        2 => {
            scram(rest);
            cert_rule(rest);
        }
        // The selector's other bits pick the mechanism, so inputs kept from before
        // SCRAM-SHA-512 still mean what they meant.
        _ => exchange(
            ScramHash::ALL[usize::from(selector / 4) % ScramHash::ALL.len()],
            rest,
        ),
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
                if ScramHash::of_entry(password).is_some() {
                    continue;
                }
                assert!(
                    store
                        .check_password(user.as_bytes(), password.as_bytes())
                        .is_some(),
                    "a cleartext entry does not authenticate"
                );
                let other = format!("{password}\u{1}");
                // Another entry of the same user may have that password; none here does
                // unless the file says so.
                let listed = text
                    .split('\n')
                    .any(|l| l.strip_suffix('\r').unwrap_or(l) == format!("{user}:{other}"));
                if !listed {
                    assert!(
                        store
                            .check_password(user.as_bytes(), other.as_bytes())
                            .is_none()
                    );
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
    if let Some(hash) = ScramHash::from_mechanism(data) {
        assert_eq!(hash.mechanism().as_bytes(), data);
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(secret) = ScramSecret::parse(&text) {
        assert_eq!(Some(secret.hash()), ScramHash::of_entry(&text));
        let again = ScramSecret::parse(&secret.to_text()).expect("its own text form parses");
        assert_eq!(again, secret);
        // `<prefix>$<i>:<salt>$<StoredKey>:<ServerKey>`: both keys base64 of the kind's length.
        let own = secret.to_text();
        let keys = own.rsplit('$').next().unwrap_or_default();
        for key in keys.split(':') {
            let bytes = openssl::base64::decode_block(key).expect("base64 keys");
            assert_eq!(bytes.len(), secret.hash().key_bytes());
        }
    }
}

fn exchange(hash: ScramHash, data: &[u8]) {
    thread_local! {
        // Cleartext users, and hashed ones of each kind (carol has both).
        static STORE: CredentialStore = {
            let entry = |hash, password: &[u8]| {
                ScramSecret::generate(hash, password, 4096)
                    .expect("a secret")
                    .to_text()
            };
            let text = format!(
                "alice:pencil\nbob:builder\ncarol:{}\ncarol:{}\ndave:{}\n",
                entry(ScramHash::Sha256, b"pencil"),
                entry(ScramHash::Sha512, b"pencil"),
                entry(ScramHash::Sha512, b"builder"),
            );
            CredentialStore::parse(&text).expect("a fixed store")
        };
    }
    let split = data.iter().position(|&b| b == 0xff).unwrap_or(data.len());
    let (first, last) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    STORE.with(|store| {
        if let Ok((exchange, server_first)) = store.scram_start(hash, first, b"servernonce") {
            assert_eq!(exchange.hash(), hash);
            let server_first = std::str::from_utf8(&server_first).expect("ASCII");
            let fields: Vec<&str> = server_first.split(',').collect();
            assert!(
                fields.len() == 3 && fields[0].starts_with("r="),
                "{server_first}"
            );
            let salt = fields[1].strip_prefix("s=").expect("a salt");
            assert_eq!(
                openssl::base64::decode_block(salt).map(|s| s.len()).ok(),
                Some(16)
            );
            assert_eq!(fields[2], "i=4096");
            assert!(
                exchange.finish(last).is_err(),
                "authenticated without the proof"
            );
        }
        let at = last.iter().rposition(|&b| b == b' ').unwrap_or(0);
        let (user, digest) = (&last[..at], last.get(at + 1..).unwrap_or_default());
        assert!(
            store.check_cram_md5(user, first, digest).is_none(),
            "CRAM-MD5 without the digest"
        );
    });
}

fn cert_rule(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // The rule up to a NUL, a certificate name after it.
    let (rule, name) = text.split_once('\0').unwrap_or((&text, "svc-alice"));
    let Ok(parsed) = CertUserRule::parse(rule) else {
        return;
    };
    assert_eq!(parsed.to_string(), rule);
    let names = [name.to_owned()];
    let cert = CertNames {
        common_name: Some(name),
        dns: &names,
        emails: &names,
        uris: &names,
    };
    if let Some(user) = parsed.user(&cert) {
        let prefix = parsed.prefix.as_deref().unwrap_or("");
        assert_eq!(format!("{prefix}{user}"), name);
        assert!(!user.as_str().is_empty());
        assert!(
            !user
                .as_str()
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        );
    }
}
