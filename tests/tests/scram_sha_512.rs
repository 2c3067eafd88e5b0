//! SASL `SCRAM-SHA-512` (issue 14) against the real binary: pylibmc (libmemcached with Debian's
//! Cyrus SASL, whose SCRAM plugin has SCRAM-SHA-512 and picks the strongest mechanism offered)
//! authenticates with `rampart passwd --mechanism scram-sha-512` and `both` entries and with a
//! cleartext one; a file whose users still have SCRAM-SHA-256 entries keeps the list it had, so
//! their clients stay on SCRAM-SHA-256, while SCRAM-SHA-512 is still accepted when asked for;
//! and what hostile SCRAM-SHA-512 exchanges get.

use std::process::Command;
use std::time::Duration;

use rampart_tests::io::{Conn, End};
use rampart_tests::python::require_module;
use rampart_tests::sasl::{self, packet};
use rampart_tests::tempdir::TempDir;
use rampart_tests::tls::tcp_connect;
use rampart_tests::{Kind, Server, path_arg, write_file};

const BOUND: Duration = Duration::from_secs(5);
const SASL_LIST: u8 = 0x20;
const SASL_AUTH: u8 = 0x21;
const SASL_STEP: u8 = 0x22;
const SUCCESS: u16 = 0x00;
const AUTH_ERROR: u16 = 0x20;
const AUTH_CONTINUE: u16 = 0x21;
/// The system python3, which Debian's python3-pylibmc serves.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Hashed entries as `rampart passwd --mechanism <mechanism>` writes them (one line, or two
/// for `both`), from a password on standard input.
fn passwd_lines(user: &str, password: &str, mechanism: &str) -> String {
    let text = sasl::passwd(user, password, Some(mechanism));
    let kinds: Vec<&str> = text
        .lines()
        .map(|line| {
            let secret = line
                .strip_prefix(&format!("{user}:"))
                .unwrap_or_else(|| panic!("{line}"));
            &secret[..secret.find('$').expect("a hashed entry")]
        })
        .collect();
    let expected: &[&str] = match mechanism {
        "scram-sha-256" => &["SCRAM-SHA-256"],
        "scram-sha-512" => &["SCRAM-SHA-512"],
        _ => &["SCRAM-SHA-256", "SCRAM-SHA-512"],
    };
    assert_eq!(kinds, expected, "{text}");
    text
}

/// One SASL request and its response on `conn`: (status, body).
fn roundtrip(conn: &mut Conn, opcode: u8, mechanism: &[u8], data: &[u8]) -> (u16, Vec<u8>) {
    conn.send(&packet(opcode, mechanism, data)).expect("send");
    let header = conn.read_until(b"\xde\xad\xbe\xef", BOUND);
    assert_eq!(header.end, End::Terminator, "no response: {header:?}");
    let mut reply = header.bytes;
    assert_eq!(reply[0], 0x81, "not a response: {reply:02x?}");
    let body = u32::from_be_bytes([reply[8], reply[9], reply[10], reply[11]]) as usize;
    while reply.len() < 24 + body {
        let more = conn.read_until(b"", Duration::from_millis(200));
        if more.bytes.is_empty() {
            break;
        }
        reply.extend(more.bytes);
    }
    let status = u16::from_be_bytes([reply[6], reply[7]]);
    (status, reply[24..(24 + body).min(reply.len())].to_vec())
}

fn connect(server: &Server) -> Conn {
    Conn::new(tcp_connect(server.port()).expect("connect"))
}

fn mechanisms(server: &Server) -> String {
    let (status, body) = roundtrip(&mut connect(server), SASL_LIST, b"", b"");
    assert_eq!(status, SUCCESS);
    String::from_utf8(body).expect("ASCII")
}

/// pylibmc_sasl.py for `user`: a wrong password fails, then the right one works.
fn pylibmc(server: &Server, user: &str, password: &str) {
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.arg(rampart_tests::package_dir().join("python/pylibmc_sasl.py"))
        .args(["--port", &server.port().to_string()])
        .args(["--user", user, "--password", password]);
    let done = rampart_tests::server::run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(
        done.stdout,
        "wrong: Error\n\
         right: set -> True\n\
         right: get -> 'v1'\n\
         right: get_multi -> [('k', 'v1')]\n\
         right: delete -> True\n\
         # done\n",
        "{user}: {}\n{}",
        done.stderr,
        server.diagnostics()
    );
}

/// How many SCRAM exchanges of `mechanism` failed on their proof, by the `-v` log.
fn wrong_proofs(server: &Server, mechanism: &str) -> usize {
    server
        .stderr()
        .matches(&format!(
            "SCRAM exchange failed: the proof is wrong ({mechanism})"
        ))
        .count()
}

/// pylibmc sees SCRAM-SHA-512 listed first and uses it: carol has only a SCRAM-SHA-512 entry
/// (so her login can only be SCRAM-SHA-512's), dave both kinds, bob a cleartext password;
/// each wrong password failed in a SCRAM-SHA-512 exchange, none in a SCRAM-SHA-256 one.
#[test]
fn pylibmc_authenticates_with_scram_sha_512() {
    require_module(
        SYSTEM_PYTHON,
        "pylibmc",
        "pylibmc (Debian: apt-get install python3-pylibmc)",
    );
    let dir = TempDir::new().expect("temp dir");
    let text = format!(
        "{}{}bob:builder\n",
        passwd_lines("carol", "hunter2", "scram-sha-512"),
        passwd_lines("dave", "tr0ub4dor", "both")
    );
    let users = write_file(dir.path(), "users", &text, 0o600);
    let server = Server::start(
        Kind::Rampart,
        &["-S", "-Y", path_arg(&users), "-t", "2", "-v"],
    );
    assert_eq!(
        mechanisms(&server),
        "SCRAM-SHA-512 SCRAM-SHA-256 CRAM-MD5 PLAIN"
    );
    for (user, password) in [
        ("carol", "hunter2"),
        ("dave", "tr0ub4dor"),
        ("bob", "builder"),
    ] {
        pylibmc(&server, user, password);
    }
    assert_eq!(
        (
            wrong_proofs(&server, "SCRAM-SHA-512"),
            wrong_proofs(&server, "SCRAM-SHA-256")
        ),
        (3, 0),
        "{}",
        server.stderr()
    );
}

/// A user whose newest hashed entry is SCRAM-SHA-256 (alice, from `rampart passwd`'s default)
/// keeps SCRAM-SHA-512 off the list, so her Cyrus client stays on SCRAM-SHA-256 and the entry
/// it always used; carol's SCRAM-SHA-512 entry still serves a client that asks for it.
#[test]
fn a_sha_256_user_keeps_the_list_as_it_was() {
    require_module(
        SYSTEM_PYTHON,
        "pylibmc",
        "pylibmc (Debian: apt-get install python3-pylibmc)",
    );
    let dir = TempDir::new().expect("temp dir");
    let text = format!(
        "{}{}",
        passwd_lines("alice", "pencil", "scram-sha-256"),
        passwd_lines("carol", "hunter2", "scram-sha-512")
    );
    let users = write_file(dir.path(), "users", &text, 0o600);
    let server = Server::start(Kind::Rampart, &["-S", "-Y", path_arg(&users), "-v"]);
    assert_eq!(mechanisms(&server), "SCRAM-SHA-256 PLAIN");
    pylibmc(&server, "alice", "pencil");
    assert_eq!(
        (
            wrong_proofs(&server, "SCRAM-SHA-256"),
            wrong_proofs(&server, "SCRAM-SHA-512")
        ),
        (1, 0),
        "{}",
        server.stderr()
    );
    let mut conn = connect(&server);
    let (status, server_final) = scram_client::login(&mut conn, "carol", "hunter2");
    assert_eq!(status, SUCCESS, "{}", server.diagnostics());
    assert!(server_final.starts_with(b"v="));
    // Authenticated: a request reaches the cache.
    conn.send(&packet(0x0c, b"k", b"")).expect("send");
    let reply = conn.read_until(b"\xde\xad\xbe\xef", BOUND);
    assert_eq!(&reply.bytes[6..8], &[0x00, 0x01], "not found, not refused");
}

/// Hostile SCRAM-SHA-512 exchanges, each on its own connection: a wrong proof, garbage and
/// SCRAM-SHA-256-sized proofs, a step naming the other mechanism (which ends the exchange),
/// and an unknown user and a user with only a SCRAM-SHA-256 entry, who get a server-first
/// message like anyone's and fail at the end. Each answers `Auth failure.` and leaves the
/// connection open.
#[test]
fn hostile_scram_sha_512_exchanges() {
    let dir = TempDir::new().expect("temp dir");
    let text = format!(
        "{}{}",
        passwd_lines("carol", "hunter2", "scram-sha-512"),
        passwd_lines("alice", "pencil", "scram-sha-256")
    );
    let users = write_file(dir.path(), "users", &text, 0o600);
    let server = Server::start(Kind::Rampart, &["-S", "-Y", path_arg(&users)]);
    let failure = (AUTH_ERROR, b"Auth failure.".to_vec());
    let start = |conn: &mut Conn, user: &str| {
        let (status, first) = roundtrip(
            conn,
            SASL_AUTH,
            b"SCRAM-SHA-512",
            format!("n,,n={user},r=clientnonce").as_bytes(),
        );
        assert_eq!(status, AUTH_CONTINUE, "{user}");
        String::from_utf8(first).expect("ASCII")
    };
    let garbage_finals = |first: &str| -> Vec<(&'static str, Vec<u8>)> {
        let nonce = first
            .split(',')
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .expect("nonce")
            .to_string();
        let right = scram_client::final_message("hunter2", "n=carol,r=clientnonce", first);
        let short = format!(
            "c=biws,r={nonce},p={}",
            openssl::base64::encode_block(&[7u8; 32])
        );
        vec![
            (
                "the wrong password",
                scram_client::final_message("hunter3", "n=carol,r=clientnonce", first).into_bytes(),
            ),
            ("bytes", b"\xff\x00\x01garbage".to_vec()),
            ("no proof", format!("c=biws,r={nonce}").into_bytes()),
            (
                "a proof that is no base64",
                format!("c=biws,r={nonce},p=!!!!").into_bytes(),
            ),
            ("a SCRAM-SHA-256-sized proof", short.into_bytes()),
            (
                "another nonce",
                right
                    .replacen("r=clientnonce", "r=clientnoncf", 1)
                    .into_bytes(),
            ),
            (
                "a long message",
                [right.as_bytes(), &[b'A'; 2000][..]].concat(),
            ),
        ]
    };
    // Carol's exchange with each garbage final, each against its own exchange's nonce.
    let cases = garbage_finals(&start(&mut connect(&server), "carol")).len();
    for case in 0..cases {
        let mut conn = connect(&server);
        let (what, last) = garbage_finals(&start(&mut conn, "carol")).swap_remove(case);
        assert_eq!(
            roundtrip(&mut conn, SASL_STEP, b"SCRAM-SHA-512", &last),
            failure,
            "{what}"
        );
        // Still open: a whole exchange works now.
        let (status, _) = scram_client::login(&mut conn, "carol", "hunter2");
        assert_eq!(status, SUCCESS, "{what}: {}", server.diagnostics());
    }
    // A step naming SCRAM-SHA-256 for a SCRAM-SHA-512 exchange fails and ends the exchange:
    // the right final message afterwards is a step of no exchange.
    let mut conn = connect(&server);
    let first = start(&mut conn, "carol");
    let right = scram_client::final_message("hunter2", "n=carol,r=clientnonce", &first);
    assert_eq!(
        roundtrip(&mut conn, SASL_STEP, b"SCRAM-SHA-256", right.as_bytes()),
        failure
    );
    assert_eq!(
        roundtrip(&mut conn, SASL_STEP, b"SCRAM-SHA-512", right.as_bytes()),
        failure
    );
    // An unknown user, and alice, who has no SCRAM-SHA-512 entry: a server-first message of
    // the same shape as carol's (a 16-byte salt, 4096 iterations), then a failure even with
    // alice's right password.
    let shape = |first: &str| {
        let fields: Vec<&str> = first.split(',').collect();
        let salt = fields[1].strip_prefix("s=").expect("salt");
        let salt = openssl::base64::decode_block(salt).expect("base64");
        (fields.len(), salt.len(), fields[2].to_string())
    };
    let carol = shape(&start(&mut connect(&server), "carol"));
    assert_eq!(carol, (3, 16, "i=4096".to_string()));
    for user in ["nobody", "alice"] {
        let mut conn = connect(&server);
        let first = start(&mut conn, user);
        assert_eq!(shape(&first), carol, "{user}");
        let bare = format!("n={user},r=clientnonce");
        let last = scram_client::final_message("pencil", &bare, &first);
        assert_eq!(
            roundtrip(&mut conn, SASL_STEP, b"SCRAM-SHA-512", last.as_bytes()),
            failure,
            "{user}"
        );
    }
}

/// A SCRAM-SHA-512 client (RFC 5802 with SHA-512), to drive the exchange step by step.
mod scram_client {
    use openssl::base64;
    use openssl::hash::MessageDigest;
    use rampart_tests::io::Conn;
    use rampart_tests::sasl;

    use super::{AUTH_CONTINUE, SASL_AUTH, SASL_STEP, roundtrip};

    fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
        sasl::hmac(MessageDigest::sha512(), key, message)
    }

    /// `client-final-message` for `password`, given the client-first-bare and server-first.
    pub fn final_message(password: &str, client_first_bare: &str, server_first: &str) -> String {
        sasl::scram_final(
            MessageDigest::sha512(),
            password,
            client_first_bare,
            server_first,
        )
    }

    /// A whole exchange on `conn`: the final status and body, whose server signature is
    /// checked when it succeeds.
    pub fn login(conn: &mut Conn, user: &str, password: &str) -> (u16, Vec<u8>) {
        let bare = format!("n={user},r=loginnonce");
        let (status, first) = roundtrip(
            conn,
            SASL_AUTH,
            b"SCRAM-SHA-512",
            format!("n,,{bare}").as_bytes(),
        );
        assert_eq!(status, AUTH_CONTINUE);
        let first = String::from_utf8(first).expect("ASCII");
        let last = final_message(password, &bare, &first);
        let (status, body) = roundtrip(conn, SASL_STEP, b"SCRAM-SHA-512", last.as_bytes());
        if status == 0 {
            let salt = first.split(",s=").nth(1).and_then(|s| s.split(',').next());
            let salt = base64::decode_block(salt.expect("salt")).expect("base64");
            let salted = sasl::salted_password(MessageDigest::sha512(), password, &salt, 4096);
            let server_key = hmac(&salted, b"Server Key");
            let without_proof = &last[..last.rfind(",p=").expect("proof")];
            let auth_message = format!("{bare},{first},{without_proof}");
            let expected = format!(
                "v={}",
                base64::encode_block(&hmac(&server_key, auth_message.as_bytes()))
            );
            assert_eq!(
                String::from_utf8_lossy(&body),
                expected,
                "the server's signature"
            );
        }
        (status, body)
    }
}
