//! Client certificates that name users (`-o ssl_cert_user`) and the `auth reload` command:
//! with `-Y`, a verified certificate whose mapped name is a user of the store authenticates the
//! connection as that user, and loses it when a reload removes the user; one whose name the
//! store lacks must authenticate as any client; without a store, the mapped name is what an
//! access policy calls `user:<name>`. Real certificates, real OpenSSL on both ends.

use std::fs;
use std::time::Duration;

use rampart_tests::io::Conn;
use rampart_tests::tempdir::TempDir;
use rampart_tests::tls::{Pki, TlsConn, parse_stats, poll, start_tls, tcp_connect};
use rampart_tests::{Kind, Server, path_arg, write_file};

const UNAUTHENTICATED: &[u8] = b"CLIENT_ERROR unauthenticated\r\n";
const DENIED: &[u8] = b"CLIENT_ERROR access denied\r\n";
const BOUND: Duration = Duration::from_secs(5);

/// The users `stats conns` shows, sorted.
fn shown_users(conn: &mut TlsConn) -> Vec<String> {
    conn.send(b"stats conns\r\n").expect("send");
    let stats = parse_stats(&conn.read_until(b"END\r\n", BOUND).bytes);
    let mut users: Vec<String> = stats
        .iter()
        .filter(|(name, _)| name.ends_with(":user"))
        .map(|(_, user)| user.clone())
        .collect();
    users.sort_unstable();
    users
}

fn stat(conn: &mut TlsConn, name: &str) -> String {
    conn.send(b"stats\r\n").expect("send");
    let stats = parse_stats(&conn.read_until(b"END\r\n", BOUND).bytes);
    stats
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {stats:?}"))
        .clone()
}

#[test]
fn certificates_name_users_of_the_store_until_a_reload_removes_them() {
    let pki = Pki::new();
    let dir = TempDir::new().expect("temp dir");
    let users = write_file(dir.path(), "users", "alice:secret\nbob:builder\n", 0o600);
    rampart_tests::give_to_nobody(&users);
    let verify = pki.ca_opts();
    // The audit trail's recent log says who failed to authenticate.
    let audit = format!("audit_log={}", dir.path().join("audit.log").display());
    let server = start_tls(
        Kind::Rampart,
        &pki,
        &[
            &verify,
            "ssl_verify_mode=1",
            "ssl_cert_user=cn:svc-",
            &audit,
        ],
        &["-Y", path_arg(&users)],
    );
    let alice_cert = pki.issue_client("svc-alice", "svc-alice", 501);
    let carol_cert = pki.issue_client("svc-carol", "svc-carol", 502);
    let bare_cert = pki.issue_client("alice", "bare-alice", 503);

    // svc-alice is alice: no password asked.
    let mut alice = pki
        .client()
        .with_issued(&alice_cert)
        .connect(server.port())
        .expect("handshake");
    assert_eq!(
        alice.roundtrip(b"set k 0 0 1\r\nv\r\n", b"\r\n"),
        b"STORED\r\n"
    );
    assert_eq!(shown_users(&mut alice), ["alice"]);
    assert_eq!(stat(&mut alice, "auth_cert_users"), "1");
    // The certificate is no password attempt.
    assert_eq!(stat(&mut alice, "auth_cmds"), "0");
    // A name the store lacks, a CN without the prefix, no certificate: authenticate first.
    for config in [
        pki.client().with_issued(&carol_cert),
        pki.client().with_issued(&bare_cert),
        pki.client(),
    ] {
        let mut conn = config.connect(server.port()).expect("handshake");
        assert_eq!(conn.roundtrip(b"get k\r\n", b"\r\n"), UNAUTHENTICATED);
    }
    let mut carol = pki
        .client()
        .with_issued(&carol_cert)
        .connect(server.port())
        .expect("handshake");
    assert_eq!(
        carol.roundtrip(b"set auth 0 0 11\r\nbob builder\r\n", b"\r\n"),
        b"STORED\r\n"
    );
    assert_eq!(
        carol.roundtrip(b"get k\r\n", b"END\r\n"),
        b"VALUE k 0 1\r\nv\r\nEND\r\n"
    );
    assert_eq!(shown_users(&mut carol), ["alice", "bob"]);
    assert_eq!(stat(&mut carol, "auth_cert_users"), "1");

    // `auth reload`: a bad file changes nothing and says where it is bad.
    fs::write(&users, "bob:builder\nbroken line\n").expect("rewrite");
    let reply = carol.roundtrip(b"auth reload\r\n", b"\r\n");
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("SERVER_ERROR credentials not reloaded: ") && text.contains("line 2"),
        "{text}"
    );
    assert!(
        !text.contains("builder"),
        "the file's text is shown: {text}"
    );
    assert_eq!(alice.roundtrip(b"get nothing\r\n", b"\r\n"), b"END\r\n");
    // A good one without alice: her certificate connection must authenticate now, and so
    // must a new one.
    fs::write(&users, "bob:builder\n").expect("rewrite");
    assert_eq!(carol.roundtrip(b"auth reload\r\n", b"\r\n"), b"OK\r\n");
    assert_eq!(alice.roundtrip(b"get k\r\n", b"\r\n"), UNAUTHENTICATED);
    // Revoked, the connection is its certificate again, not anonymous.
    assert_eq!(
        alice.roundtrip(b"set auth 0 0 12\r\nalice secret\r\n", b"\r\n"),
        b"CLIENT_ERROR authentication failure\r\n"
    );
    let failure = "ACL event=auth.failure identity=cert:svc-alice command= reason=bad_credentials";
    // The writer thread fills the recent log as it drains: asked until it has caught up.
    let mut log = String::new();
    let caught_up = poll(250, Duration::from_millis(20), || {
        log = String::from_utf8_lossy(&carol.roundtrip(b"acl log\r\n", b"END\r\n")).into_owned();
        log.contains(failure).then_some(())
    });
    assert!(caught_up.is_some(), "{log}");
    let mut again = pki
        .client()
        .with_issued(&alice_cert)
        .connect(server.port())
        .expect("handshake");
    assert_eq!(again.roundtrip(b"get k\r\n", b"\r\n"), UNAUTHENTICATED);
    assert_eq!(shown_users(&mut carol), ["bob"]);
    assert_eq!(
        carol.roundtrip(b"auth\r\n", b"\r\n"),
        b"CLIENT_ERROR usage: auth reload\r\n"
    );
    // Back in the file, the certificate names her again.
    fs::write(&users, "alice:other\nbob:builder\n").expect("rewrite");
    assert_eq!(carol.roundtrip(b"auth reload\r\n", b"\r\n"), b"OK\r\n");
    let mut back = pki
        .client()
        .with_issued(&alice_cert)
        .connect(server.port())
        .expect("handshake");
    assert_eq!(
        back.roundtrip(b"get k\r\n", b"END\r\n"),
        b"VALUE k 0 1\r\nv\r\nEND\r\n"
    );
    assert!(
        server
            .stderr()
            .contains("auth reload: credentials reloaded, 1 user(s)"),
        "{}",
        server.stderr()
    );
}

/// Who may do what: `user:web` keys under `web:`, everyone else nothing but the session.
const POLICY: &str = "\
[identity user:web]
allow get,set prefix:web:
allow @session,@stats,stats_conns,auth

[identity anonymous cert:rampart-test-client cert:other]
allow @session,@stats
";

#[test]
fn without_a_store_the_mapped_name_is_the_policy_s_user() {
    let pki = Pki::new();
    let dir = TempDir::new().expect("temp dir");
    let policy = write_file(dir.path(), "cert.acl", POLICY, 0o644);
    let acl = format!("acl_file={}", path_arg(&policy));
    let verify = pki.ca_opts();
    let server = start_tls(
        Kind::Rampart,
        &pki,
        &[
            &verify,
            "ssl_verify_mode=2",
            "ssl_cert_user=san.uri:spiffe://example.org/ns/",
            &acl,
        ],
        &[],
    );
    let web_cert = pki.issue_client_with_sans(
        "other",
        "web",
        601,
        &[
            "uri:https://example.org/ns/web",
            "email:web@example.org",
            "uri:spiffe://example.org/ns/web",
        ],
    );
    let other_cert =
        pki.issue_client_with_sans("other", "other", 602, &["uri:spiffe://example.com/ns/web"]);
    let mut web = pki
        .client()
        .with_issued(&web_cert)
        .connect(server.port())
        .expect("handshake");
    assert_eq!(
        web.roundtrip(b"set web:1 0 0 1\r\nv\r\n", b"\r\n"),
        b"STORED\r\n"
    );
    assert_eq!(web.roundtrip(b"set app:1 0 0 1\r\nv\r\n", b"\r\n"), DENIED);
    assert_eq!(shown_users(&mut web), ["web"]);
    // Another domain's URI names no one: the certificate is `cert:other`.
    let mut other = pki
        .client()
        .with_issued(&other_cert)
        .connect(server.port())
        .expect("handshake");
    assert_eq!(other.roundtrip(b"get web:1\r\n", b"\r\n"), DENIED);
    assert_eq!(other.roundtrip(b"version\r\n", b"\r\n")[..8], *b"VERSION ");
    // Without -Y there is nothing for `auth reload` to read.
    assert_eq!(
        web.roundtrip(b"auth reload\r\n", b"\r\n"),
        b"CLIENT_ERROR no credential file is configured (-Y, or -S with MEMCACHED_SASL_PWDB)\r\n"
    );
}

#[test]
fn auth_reload_is_an_admin_command() {
    let dir = TempDir::new().expect("temp dir");
    let users = write_file(dir.path(), "users", "alice:secret\n", 0o600);
    rampart_tests::give_to_nobody(&users);
    // Under a policy it needs the `auth` right; alice has everything else.
    let policy = write_file(
        dir.path(),
        "auth.acl",
        "[identity user:alice]\nallow @data prefix:\nallow @session,@stats,acl\n",
        0o644,
    );
    let acl = format!("acl_file={}", path_arg(&policy));
    let server = Server::start(Kind::Rampart, &["-Y", path_arg(&users), "-o", &acl]);
    let mut conn = Conn::new(tcp_connect(server.port()).expect("connect"));
    assert_eq!(conn.roundtrip(b"auth reload\r\n", b"\r\n"), UNAUTHENTICATED);
    assert_eq!(
        conn.roundtrip(b"set auth 0 0 12\r\nalice secret\r\n", b"\r\n"),
        b"STORED\r\n"
    );
    assert_eq!(conn.roundtrip(b"auth reload\r\n", b"\r\n"), DENIED);
    fs::write(
        &policy,
        "[identity user:alice]\nallow @data prefix:\nallow @session,@stats,acl,auth\n",
    )
    .expect("rewrite");
    assert_eq!(conn.roundtrip(b"acl reload\r\n", b"\r\n"), b"OK\r\n");
    assert_eq!(conn.roundtrip(b"auth reload\r\n", b"\r\n"), b"OK\r\n");
}
