//! The credential file's parser and the store's checks.

use super::*;

fn hashed(password: &str) -> String {
    hashed_as(ScramHash::Sha256, password)
}

fn hashed_as(hash: ScramHash, password: &str) -> String {
    ScramSecret::generate(hash, password.as_bytes(), DEFAULT_ITERATIONS)
        .expect("generate")
        .to_text()
}

#[test]
fn cleartext_and_hashed_entries_authenticate() {
    let text = format!(
        "# memcached's form\r\nalice:pencil\r\n\nbob:pa:ss\ncarol:{}\ncarol:{}\n\
         dave:{}\ndave:{}",
        hashed("old"),
        hashed("new"),
        hashed_as(ScramHash::Sha512, "old512"),
        hashed("new256"),
    );
    let store = CredentialStore::parse(&text).expect("parse");
    assert_eq!(store.user_count(), 4);
    assert_eq!((store.cleartext_entries(), store.hashed_entries()), (2, 4));
    assert_eq!(store.hashed_entries_of(ScramHash::Sha512), 1);
    let user = |u: &str, p: &str| store.check_password(u.as_bytes(), p.as_bytes());
    assert_eq!(
        user("alice", "pencil").map(|u| u.to_string()),
        Some("alice".into())
    );
    assert_eq!(
        user("bob", "pa:ss").map(|u| u.to_string()),
        Some("bob".into())
    );
    assert!(user("carol", "old").is_some());
    assert!(user("carol", "new").is_some());
    assert!(user("carol", "other").is_none());
    // PLAIN and ASCII auth check every entry, of either kind.
    assert!(user("dave", "old512").is_some());
    assert!(user("dave", "new256").is_some());
    assert!(user("dave", "old").is_none());
    assert!(user("alice", "pencil ").is_none());
    assert!(user("alice", "").is_none());
    assert!(user("nobody", "pencil").is_none());
    assert!(store.check_password(&[0xff, 0xfe], b"pencil").is_none());
}

#[test]
fn malformed_files_name_the_line_and_never_the_secret() {
    for (text, line) in [
        ("alice:pencil\nnocolon\n", 2),
        ("alice:pencil\n:pencil\n", 2),
        ("alice:\n", 1),
        ("al ice:pencil\n", 1),
        ("# c\n\nalice:SCRAM-SHA-256$1:c2FsdHNhbHQ=$AA==:AA==\n", 3),
        (
            "alice:pencil\nbob:SCRAM-SHA-512$4096:c2FsdHNhbHQ=$AA==:AA==\n",
            2,
        ),
    ] {
        let err = CredentialStore::parse(text).expect_err(text);
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert!(!err.to_string().contains("pencil"), "{err}");
    }
    let long = format!("u:{}\n", "p".repeat(MAX_PASSWORD_BYTES + 1));
    assert_eq!(
        CredentialStore::parse(&long)
            .map(|_| ())
            .expect_err("too long")
            .line,
        1
    );
    assert!(CredentialStore::parse("").expect("empty").user_count() == 0);
}

#[test]
fn more_than_eight_users() {
    let text: String = (0..1000).map(|i| format!("user{i}:pw{i}\n")).collect();
    let store = CredentialStore::parse(&text).expect("parse");
    assert_eq!(store.user_count(), 1000);
    assert!(store.check_password(b"user999", b"pw999").is_some());
    assert!(store.check_password(b"user999", b"pw998").is_none());
}

#[test]
fn fingerprints_change_with_a_user_s_entries_only() {
    let a = CredentialStore::parse("alice:a\nbob:b\n").expect("parse");
    let b = CredentialStore::parse("bob:b\nalice:a2\n").expect("parse");
    assert_eq!(a.fingerprint("bob"), b.fingerprint("bob"));
    assert_ne!(a.fingerprint("alice"), b.fingerprint("alice"));
    assert!(a.fingerprint("carol").is_none());
}

/// RFC 2195's example: user tim, password tanstaaftanstaaf.
#[test]
fn cram_md5_answers_for_cleartext_entries_only() {
    let store = CredentialStore::parse(&format!(
        "tim:tanstaaftanstaaf\ncarol:{}\n",
        ScramSecret::generate(ScramHash::Sha256, b"pw", DEFAULT_ITERATIONS)
            .expect("generate")
            .to_text()
    ))
    .expect("parse");
    let challenge = b"<1896.697170952@postoffice.reston.mci.net>";
    let digest = b"b913a602c7eda7a495b4e6e7334d3890";
    assert_eq!(
        store
            .check_cram_md5(b"tim", challenge, digest)
            .map(|u| u.to_string()),
        Some("tim".into())
    );
    assert!(
        store
            .check_cram_md5(b"tim", challenge, b"b913a602c7eda7a495b4e6e7334d3891")
            .is_none()
    );
    assert!(
        store
            .check_cram_md5(b"tim", challenge, b"b913a602")
            .is_none()
    );
    assert!(store.check_cram_md5(b"carol", challenge, digest).is_none());
    assert!(store.check_cram_md5(b"nobody", challenge, digest).is_none());
    assert!(store.has_cleartext());
}

#[test]
fn files_merge() {
    let mut store = CredentialStore::parse("alice:a\n").expect("parse");
    store.add_text("bob:b\nalice:c").expect("parse");
    assert!(store.check_password(b"alice", b"a").is_some());
    assert!(store.check_password(b"alice", b"c").is_some());
    assert!(store.check_password(b"bob", b"b").is_some());
}

/// SCRAM-SHA-512 is listed only when a file has a SCRAM-SHA-512 entry and every user's
/// newest hashed entry is one (or the user has none): a file that lists SCRAM-SHA-256
/// alone today keeps that list, and no listed mechanism takes a user away from the entry
/// SCRAM-SHA-256 answers from.
#[test]
fn scram_sha_512_is_listed_only_when_no_user_would_change_entries() {
    let (old, new) = (
        hashed_as(ScramHash::Sha256, "a"),
        hashed_as(ScramHash::Sha512, "b"),
    );
    for (text, listed) in [
        // Files from before SCRAM-SHA-512: the same list as before.
        (String::new(), false),
        ("alice:pencil\n".to_string(), false),
        (format!("alice:pencil\nbob:{old}\n"), false),
        // Opted in, and every user ready.
        (format!("bob:{new}\n"), true),
        (format!("alice:pencil\nbob:{new}\n"), true),
        (format!("bob:{old}\nbob:{new}\n"), true),
        (format!("bob:{new}\nbob:pencil\n"), true),
        // A user whose newest hashed entry is SCRAM-SHA-256.
        (format!("bob:{new}\ncarol:{old}\n"), false),
        (format!("bob:{new}\nbob:{old}\n"), false),
        (format!("bob:{new}\ncarol:{old}\ncarol:pencil\n"), false),
    ] {
        let store = CredentialStore::parse(&text).expect("parse");
        assert!(store.lists(ScramHash::Sha256), "{text}");
        assert_eq!(store.lists(ScramHash::Sha512), listed, "{text}");
    }
    // Recomputed when another file is added.
    let mut store = CredentialStore::parse(&format!("bob:{new}\n")).expect("parse");
    store.add_text(&format!("carol:{old}\n")).expect("parse");
    assert!(!store.lists(ScramHash::Sha512));
}

/// An unknown user's password is checked against a secret of the kind most entries have.
#[test]
fn the_dummy_secret_has_the_files_kind() {
    let kind = |text: &str| match CredentialStore::parse(text).expect("parse").dummy {
        Secret::Scram(scram) => Some((scram.hash(), scram.iterations())),
        Secret::Clear { .. } => None,
    };
    let sha512 = hashed_as(ScramHash::Sha512, "x");
    let sha256 = hashed_as(ScramHash::Sha256, "y");
    let slow = ScramSecret::generate(ScramHash::Sha256, b"z", 5000)
        .expect("generate")
        .to_text();
    assert_eq!(kind("a:b\n"), None);
    assert_eq!(
        kind(&format!("a:{sha512}\nb:{sha512}\nc:{sha256}\n")),
        Some((ScramHash::Sha512, 4096))
    );
    assert_eq!(
        kind(&format!("a:{sha512}\nb:{sha256}\nc:{slow}\n")),
        Some((ScramHash::Sha256, 5000))
    );
    assert_eq!(
        kind(&format!("a:{sha512}\nb:{sha256}\n")),
        Some((ScramHash::Sha512, 4096))
    );
    let store = CredentialStore::parse(&format!("a:{sha512}\n")).expect("parse");
    assert!(store.check_password(b"a", b"x").is_some());
    assert!(store.check_password(b"nobody", b"x").is_none());
}

#[test]
fn a_verified_password_is_remembered_for_its_user_only() {
    let text = format!(
        "alice:{}\nbob:{}\ncarol:pencil\n",
        hashed("pencil"),
        hashed("builder")
    );
    let store = CredentialStore::parse(&text).expect("parse");
    let check = |u: &str, p: &str| store.check_password(u.as_bytes(), p.as_bytes()).is_some();
    assert!(store.verified.lock().is_empty());
    assert!(check("alice", "pencil"));
    assert_eq!(store.verified.lock().len(), 1);
    // Again: from the tag, and still only with the right password.
    assert!(check("alice", "pencil"));
    assert!(!check("alice", "pencil2"));
    assert!(!check("alice", ""));
    // Another user with the same password has their own entries.
    assert!(!check("bob", "pencil"));
    assert!(!check("nobody", "pencil"));
    // Cleartext entries are cheap to check: nothing to remember.
    assert!(check("carol", "pencil"));
    assert_eq!(store.verified.lock().len(), 1);
    // A copy (and so a reloaded store) starts with nothing remembered.
    assert!(store.clone().verified.lock().is_empty());
    // The bound: past it, everything is forgotten and counting starts again.
    for n in 0..MAX_VERIFIED_TAGS {
        let mut tag = [7u8; 32];
        tag[..8].copy_from_slice(&(n as u64).to_le_bytes());
        store.verified.insert(tag);
    }
    assert!(store.verified.lock().len() <= MAX_VERIFIED_TAGS);
    assert!(check("alice", "pencil"));
    assert!(store.verified.lock().len() <= MAX_VERIFIED_TAGS);
}

#[test]
fn tags_are_rfc_2104_hmac_sha_256() {
    let key = [0x0bu8; 32];
    let tags = VerifiedTags::new(&key);
    let pkey = openssl::pkey::PKey::hmac(&key).expect("key");
    let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &pkey).expect("signer");
    signer.update(b"verified\0alice\0pencil").expect("update");
    assert_eq!(
        tags.tag(b"alice", b"pencil").to_vec(),
        signer.sign_to_vec().expect("sign")
    );
    assert_ne!(
        tags.tag(b"alice", b"pencil"),
        tags.tag(b"alice", b"pencil2")
    );
}
