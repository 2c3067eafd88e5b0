//! Access policies (`-o acl_file`): Cilium's starfighter scenario with real clients as SASL
//! users and as client certificates, the bypass attempts an attacker would try in every
//! protocol, reloads that apply to live connections (and broken files that change nothing),
//! start-up refusals, and the secure default for admin commands without a policy.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rampart_tests::io::Conn;
use rampart_tests::python::{self, require_module, run_script};
use rampart_tests::tempdir::TempDir;
use rampart_tests::tls::{Pki, parse_stats, start_tls, tcp_connect};
use rampart_tests::{Kind, Server, ascii_auth, path_arg, write_file};

const DENIED: &[u8] = b"CLIENT_ERROR access denied\r\n";
const BOUND: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(400);

/// Cilium's guide, one-to-one: each pilot may get and set its own coordinates; the tracker
/// may get both and set nothing. Each identity is named as a SASL user and as a certificate
/// CN.
const STARFIGHTER: &str = "\
[role pilot]
allow version,quit,mn

[identity user:awing cert:awing]
include pilot
allow get,set key:awing-coord

[identity user:xwing cert:xwing]
include pilot
allow get,set key:xwing-coord

[identity user:tracker cert:tracker]
include pilot
allow get key:awing-coord key:xwing-coord
";

const PILOTS: &str = "awing:awing-pass\nxwing:xwing-pass\ntracker:tracker-pass\n";

/// What each pilot's clients see, in the order acl_clients.py runs them (awing first, so
/// xwing and the tracker find awing's value; each pilot's own delete is refused).
fn expected(pilot: &str, with_auth: bool) -> String {
    let denied_text = "MemcacheClientError: b'access denied'";
    // python-binary-memcached raises its MemcachedException with the status and message
    // (its delete spells `message` in lower case).
    let denied_binary = "MemcachedException: Code: 36 Message: b'access denied' (code 36)";
    let own = match pilot {
        "awing" => Some("awing-coord"),
        "xwing" => Some("xwing-coord"),
        _ => None,
    };
    let mut lines = Vec::new();
    if with_auth {
        lines.push("text auth -> True".to_owned());
    }
    for (client, denied, value) in [
        ("text", denied_text, format!("b'{pilot}-text'")),
        ("binary", denied_binary, format!("'{pilot}-binary'")),
    ] {
        for key in ["awing-coord", "xwing-coord"] {
            let readable = own.is_none() || own == Some(key);
            let set = if own == Some(key) { "True" } else { denied };
            lines.push(format!("{client} set {key} -> {set}"));
            let get = match (own == Some(key), readable) {
                (true, _) => value.clone(),
                (false, true) => "<tracker reads>".to_owned(),
                (false, false) => denied.to_owned(),
            };
            lines.push(format!("{client} get {key} -> {get}"));
        }
        let many = if own.is_none() {
            "<tracker reads>"
        } else {
            denied
        };
        let op = if client == "text" {
            "get_many"
        } else {
            "get_multi"
        };
        lines.push(format!("{client} {op} -> {many}"));
        let delete = if client == "binary" {
            denied.replace("Message", "message")
        } else {
            denied.to_owned()
        };
        lines.push(format!("{client} delete awing-coord -> {delete}"));
    }
    lines.push("# done".to_owned());
    lines.join("\n") + "\n"
}

/// The tracker reads what the pilots stored last (their binary clients run after the text
/// ones).
fn tracker_expected(with_auth: bool) -> String {
    expected("tracker", with_auth)
        .replace(
            "text get awing-coord -> <tracker reads>",
            "text get awing-coord -> b'awing-binary'",
        )
        .replace(
            "text get xwing-coord -> <tracker reads>",
            "text get xwing-coord -> b'xwing-binary'",
        )
        .replace(
            "text get_many -> <tracker reads>",
            "text get_many -> [('awing-coord', b'awing-binary'), ('xwing-coord', b'xwing-binary')]",
        )
        .replace(
            "binary get awing-coord -> <tracker reads>",
            "binary get awing-coord -> 'awing-binary'",
        )
        .replace(
            "binary get xwing-coord -> <tracker reads>",
            "binary get xwing-coord -> 'xwing-binary'",
        )
        .replace(
            "binary get_multi -> <tracker reads>",
            "binary get_multi -> [('awing-coord', 'awing-binary'), ('xwing-coord', 'xwing-binary')]",
        )
}

fn require_clients(python: &str) {
    require_module(python, "pymemcache", "pymemcache");
    require_module(python, "bmemcached", "python-binary-memcached");
}

/// The starfighter policy with SASL users: pymemcache authenticates with ASCII auth,
/// python-binary-memcached with SASL PLAIN, and each sees exactly its grants.
#[test]
fn starfighter_with_sasl_users() {
    let python = python::python();
    require_clients(&python);
    let dir = TempDir::new().expect("temp dir");
    let users = write_file(dir.path(), "pilots", PILOTS, 0o600);
    let policy = write_file(dir.path(), "starfighter.acl", STARFIGHTER, 0o644);
    let acl = format!("acl_file={},sasl_plain_cleartext", path_arg(&policy));
    let server = Server::start(
        Kind::Rampart,
        &["-t", "2", "-Y", path_arg(&users), "-S", "-o", &acl],
    );
    for pilot in ["awing", "xwing", "tracker"] {
        let password = format!("{pilot}-pass");
        let login = [
            OsStr::new("--user"),
            OsStr::new(pilot),
            OsStr::new("--password"),
            OsStr::new(&password),
        ];
        check_pilot(&python, &server, pilot, &login, true);
    }
}

/// Runs acl_clients.py as `pilot` (identified by `identity_args`) and requires what the
/// policy grants it.
fn check_pilot(
    python: &str,
    server: &Server,
    pilot: &str,
    identity_args: &[&OsStr],
    with_auth: bool,
) {
    let mut args = vec![OsStr::new("--pilot"), OsStr::new(pilot)];
    args.extend_from_slice(identity_args);
    let out = run_script(
        python,
        "acl_clients.py",
        server,
        &args,
        Duration::from_secs(60),
    );
    let want = match pilot {
        "tracker" => tracker_expected(with_auth),
        _ => expected(pilot, with_auth),
    };
    assert_eq!(out, want, "{pilot}");
}

/// The same policy with identities from verified client certificates (their CN), over TLS.
#[test]
fn starfighter_with_client_certificates() {
    let python = python::python();
    require_clients(&python);
    let pki = Pki::new();
    let dir = TempDir::new().expect("temp dir");
    let policy = write_file(dir.path(), "starfighter.acl", STARFIGHTER, 0o644);
    let acl = format!("acl_file={}", path_arg(&policy));
    let verify = pki.ca_opts();
    let server = start_tls(
        Kind::Rampart,
        &pki,
        &[&verify, "ssl_verify_mode=2", &acl],
        &["-t", "2"],
    );
    for (serial, pilot) in [(401, "awing"), (402, "xwing"), (403, "tracker")] {
        let issued = pki.issue_client(pilot, pilot, serial);
        let certificate = [
            OsStr::new("--ca"),
            pki.ca.cert_path.as_os_str(),
            OsStr::new("--cert"),
            issued.cert_path.as_os_str(),
            OsStr::new("--key"),
            issued.key_path.as_os_str(),
        ];
        check_pilot(&python, &server, pilot, &certificate, false);
    }
}

/// Policy for the bypass attempts: `limited` has exact rights on a few keys, `admin` has
/// everything.
const LIMITED: &str = "\
[identity user:admin]
allow @data prefix:
allow @session,@stats,@admin

[identity user:limited anonymous]
allow @session
allow get,set key:allowed
allow get key:readonly
allow set key:writeonly
allow get,cas key:casonly
allow get,add key:addonly
";

const USERS: &str = "admin:admin-pass\nlimited:limited-pass\n";

/// A text connection authenticated as `user` (password `<user>-pass`) with ASCII auth.
fn ascii_login(port: u16, user: &str) -> Conn {
    let (conn, reply) = ascii_auth(port, user, &format!("{user}-pass"));
    assert_eq!(reply, b"STORED\r\n");
    conn
}

fn start_limited_server(dir: &TempDir, extra: &[&str]) -> (Server, PathBuf) {
    let users = write_file(dir.path(), "users", USERS, 0o600);
    let policy = write_file(dir.path(), "limited.acl", LIMITED, 0o644);
    rampart_tests::give_to_nobody(&policy);
    let acl = format!("acl_file={}", path_arg(&policy));
    let mut args = vec!["-t", "2", "-Y", path_arg(&users), "-o", &acl];
    args.extend_from_slice(extra);
    (Server::start(Kind::Rampart, &args), policy)
}

/// Every way around the rules an attacker would try on the text and meta protocols is
/// refused, and nothing it targets changes.
#[test]
fn bypass_attempts_are_denied_and_change_nothing() {
    let dir = TempDir::new().expect("temp dir");
    let (server, _) = start_limited_server(&dir, &[]);
    let mut admin = ascii_login(server.port(), "admin");
    for (key, value) in [
        ("forbidden", "secret"),
        ("readonly", "5"),
        ("writeonly", "w"),
    ] {
        let line = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
        assert_eq!(admin.roundtrip(line.as_bytes(), b"\r\n"), b"STORED\r\n");
    }
    let mut limited = ascii_login(server.port(), "limited");
    let cas_of_readonly = {
        let reply = admin.roundtrip(b"gets readonly\r\n", b"END\r\n");
        let text = String::from_utf8(reply).expect("ascii");
        text.split_whitespace().nth(4).expect("a cas").to_owned()
    };
    let cas_line = format!("cas readonly 0 0 1 {cas_of_readonly}\r\n6\r\n");
    let denied_single: &[(&[u8], &str)] = &[
        // A base64 meta key that decodes to a forbidden key.
        (b"mg Zm9yYmlkZGVu b v\r\n", "base64 key"),
        (b"md Zm9yYmlkZGVu b\r\n", "base64 delete"),
        // One forbidden key refuses the whole multi-key request.
        (b"get allowed forbidden\r\n", "multi-get"),
        (b"gets forbidden allowed\r\n", "multi-gets"),
        // Read-only rights.
        (b"incr readonly 1\r\n", "incr on read-only"),
        (b"decr readonly 1\r\n", "decr on read-only"),
        (b"touch readonly 10\r\n", "touch on read-only"),
        (b"gat 10 readonly\r\n", "gat on read-only"),
        (b"mg readonly T30 v\r\n", "mg with a TTL on read-only"),
        (b"ma readonly\r\n", "ma on read-only"),
        (cas_line.as_bytes(), "cas on read-only"),
        (b"set readonly 0 0 1\r\n7\r\n", "set on read-only"),
        // Write-only rights.
        (b"append writeonly 0 0 1\r\nx\r\n", "append on write-only"),
        (b"prepend writeonly 0 0 1\r\nx\r\n", "prepend on write-only"),
        (
            b"ms writeonly 1 MA\r\nx\r\n",
            "ms append mode on write-only",
        ),
        (b"get writeonly\r\n", "get on write-only"),
        (b"mg writeonly s\r\n", "mg size on write-only"),
        (b"mg writeonly N30 v\r\n", "mg vivify on write-only"),
        (b"me writeonly\r\n", "me on write-only"),
        // `I` with an old CAS stores anyway: no compare, so `cas` alone is not enough.
        (b"ms casonly 1 C1 I\r\nx\r\n", "ms C I with cas only"),
        (b"delete writeonly\r\n", "delete on write-only"),
        // Admin commands.
        (b"flush_all\r\n", "flush_all"),
        (b"flush_all 0\r\n", "flush_all delay"),
        (b"cache_memlimit 100\r\n", "cache_memlimit"),
        (b"verbosity 1\r\n", "verbosity"),
        (b"stats\r\n", "stats"),
        (b"stats reset\r\n", "stats reset"),
        (b"stats conns\r\n", "stats conns"),
        (b"stats settings\r\n", "stats settings"),
        (b"refresh_certs\r\n", "refresh_certs"),
        (b"shutdown\r\n", "shutdown"),
    ];
    for (request, what) in denied_single {
        assert_eq!(limited.roundtrip(request, b"\r\n"), DENIED, "{what}");
    }
    // A too-large store on a forbidden key must not unlink it (memcached drops the old value
    // of a too-large set): text and meta. Each line is followed by a 2,000,000-byte data block
    // (over -I's 1 MiB).
    let too_large = |line: &[u8]| {
        let mut request = line.to_vec();
        request.extend(std::iter::repeat_n(b'x', 2_000_000));
        request.extend_from_slice(b"\r\n");
        request
    };
    // (request, what its reply ends with, the reply, what it tries).
    type Step = (Vec<u8>, &'static [u8], &'static [u8], &'static str);
    let steps: &[Step] = &[
        (
            too_large(b"set forbidden 0 0 2000000\r\n"),
            b"\r\n",
            DENIED,
            "too-large set",
        ),
        (
            too_large(b"ms forbidden 2000000 T0\r\n"),
            b"\r\n",
            DENIED,
            "too-large ms",
        ),
        // On a key it may write, the too-large set is refused as memcached refuses it.
        (
            too_large(b"set allowed 0 0 2000000\r\n"),
            b"\r\n",
            b"SERVER_ERROR object too large for cache\r\n",
            "too-large set, allowed key",
        ),
        // noreply hides a refusal as it hides memcached's errors; the stream stays in step.
        (
            b"set forbidden 0 0 1 noreply\r\nx\r\nmn\r\n".to_vec(),
            b"\r\n",
            b"MN\r\n",
            "noreply",
        ),
        // What it may do still works, on the same connection.
        (
            b"set allowed 0 0 2\r\nok\r\n".to_vec(),
            b"\r\n",
            b"STORED\r\n",
            "set",
        ),
        (
            b"get allowed readonly\r\n".to_vec(),
            b"END\r\n",
            b"VALUE allowed 0 2\r\nok\r\nVALUE readonly 0 1\r\n5\r\nEND\r\n",
            "multi-get",
        ),
        (
            b"mg YWxsb3dlZA== b v\r\n".to_vec(),
            b"\r\nok\r\n",
            b"VA 2\r\nok\r\n",
            "mg b",
        ),
        (
            b"set writeonly 0 0 2\r\nw2\r\n".to_vec(),
            b"\r\n",
            b"STORED\r\n",
            "set, write-only",
        ),
    ];
    for (request, terminator, want, what) in steps {
        assert_eq!(limited.roundtrip(request, terminator), *want, "{what}");
    }
    // Nothing targeted changed.
    assert_eq!(
        admin.roundtrip(b"get forbidden readonly\r\n", b"END\r\n"),
        b"VALUE forbidden 0 6\r\nsecret\r\nVALUE readonly 0 1\r\n5\r\nEND\r\n"
    );
    admin.send(b"stats\r\n").expect("send");
    let stats = parse_stats(&admin.read_until(b"END\r\n", BOUND).bytes);
    let count = |name: &str| stats.get(name).map(String::as_str);
    let refused = denied_single.len() + 3;
    assert_eq!(count("cmd_flush"), Some("0"), "{stats:?}");
    let denied = count("acl_denied_command")
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(0)
        + count("acl_denied_key")
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(0);
    assert_eq!(denied, refused, "{stats:?}");
}

/// A binary packet: header, extras, key, value.
fn packet(opcode: u8, opaque: u32, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    let body = extras.len() + key.len() + value.len();
    p.extend_from_slice(&(body as u32).to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// (opcode, status, opaque) of each response in `bytes`.
fn responses(bytes: &[u8]) -> Vec<(u8, u16, u32)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 24 {
        let body = u32::from_be_bytes(rest[8..12].try_into().expect("4 bytes")) as usize;
        out.push((
            rest[1],
            u16::from_be_bytes([rest[6], rest[7]]),
            u32::from_be_bytes(rest[12..16].try_into().expect("4 bytes")),
        ));
        rest = &rest[(24 + body).min(rest.len())..];
    }
    out
}

/// Binary: a refusal answers status 0x24 with the request's opcode and opaque, quiet or not,
/// in pipeline order; a too-large set on a forbidden key does not unlink it.
#[test]
fn binary_refusals_keep_opcode_opaque_and_order() {
    let dir = TempDir::new().expect("temp dir");
    // Anonymous binary clients have `limited`'s rights (no -S: nothing to authenticate).
    let policy = write_file(dir.path(), "limited.acl", LIMITED, 0o644);
    let acl = format!("acl_file={}", path_arg(&policy));
    let server = Server::start(Kind::Rampart, &["-t", "2", "-o", &acl]);
    let set_extras = [0u8; 8];
    let mut conn = Conn::new(tcp_connect(server.port()).expect("connect"));
    let mut pipeline = Vec::new();
    pipeline.extend(packet(0x11, 1, &set_extras, b"allowed", b"v")); // setq allowed
    pipeline.extend(packet(0x11, 2, &set_extras, b"forbidden", b"v")); // setq forbidden
    pipeline.extend(packet(0x09, 3, &[], b"forbidden", b"")); // getq forbidden
    pipeline.extend(packet(0x0d, 4, &[], b"allowed", b"")); // getkq allowed
    pipeline.extend(packet(0x04, 5, &[], b"readonly", b"")); // delete readonly
    pipeline.extend(packet(0x05, 6, &[0; 20], b"readonly", b"")); // increment
    pipeline.extend(packet(0x08, 7, &[], b"", b"")); // flush
    pipeline.extend(packet(0x0a, 8, &[], b"", b"")); // noop
    conn.send(&pipeline).expect("send");
    let reply = conn.read_until(&noop_response(8), BOUND).bytes;
    assert_eq!(
        responses(&reply),
        [
            (0x11, 0x24, 2),
            (0x09, 0x24, 3),
            (0x0d, 0, 4),
            (0x04, 0x24, 5),
            (0x05, 0x24, 6),
            (0x08, 0x24, 7),
            (0x0a, 0, 8),
        ]
    );
    // A binary add with a CAS is a CAS store: `add` alone may not overwrite.
    let mut add = packet(0x02, 13, &set_extras, b"addonly", b"v");
    add[16..24].copy_from_slice(&1u64.to_be_bytes());
    add.extend(packet(0x02, 14, &set_extras, b"addonly", b"v"));
    add.extend(packet(0x0a, 15, &[], b"", b""));
    conn.send(&add).expect("send");
    let reply = conn.read_until(&noop_response(15), BOUND).bytes;
    assert_eq!(
        responses(&reply),
        [(0x02, 0x24, 13), (0x02, 0, 14), (0x0a, 0, 15)]
    );
    // A too-large binary set on a forbidden key.
    let big = vec![b'x'; 2_000_000];
    let mut request = packet(0x01, 9, &set_extras, b"forbidden", &big);
    request.extend(packet(0x0a, 10, &[], b"", b""));
    conn.send(&request).expect("send");
    let reply = conn.read_until(&noop_response(10), BOUND).bytes;
    assert_eq!(responses(&reply), [(0x01, 0x24, 9), (0x0a, 0, 10)]);
    assert_eq!(&reply[24..24 + 13], b"access denied");
    let mut check = Conn::new(tcp_connect(server.port()).expect("connect"));
    let mut request = packet(0x00, 11, &[], b"forbidden", b"");
    request.extend(packet(0x0a, 12, &[], b"", b""));
    check.send(&request).expect("send");
    // `forbidden` was never stored here: a miss would be 0x01; the refusal shows the key was
    // not even looked up.
    let reply = check.read_until(&noop_response(12), BOUND).bytes;
    assert_eq!(responses(&reply), [(0x00, 0x24, 11), (0x0a, 0, 12)]);
}

/// The exact response to a noop with `opaque`: what a pipeline's reader waits for.
fn noop_response(opaque: u32) -> Vec<u8> {
    let mut r = vec![0x81, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    r.extend_from_slice(&opaque.to_be_bytes());
    r.extend_from_slice(&[0; 8]);
    r
}

/// Waits, bounded, until the server's log mentions `what` `count` times.
fn wait_for_log(server: &Server, what: &str, count: usize) {
    let deadline = Instant::now() + BOUND;
    while server.stderr().matches(what).count() < count {
        assert!(
            Instant::now() < deadline,
            "`{what}` not logged {count} time(s)\n{}",
            server.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGHUP reloads the policy: a good file applies to live connections at their next request;
/// a broken one changes nothing, is reported with its line, and is counted.
#[test]
fn reloads_apply_to_live_connections_and_broken_files_change_nothing() {
    let dir = TempDir::new().expect("temp dir");
    let (mut server, policy) = start_limited_server(&dir, &[]);
    let mut admin = ascii_login(server.port(), "admin");
    assert_eq!(
        admin.roundtrip(b"set forbidden 0 0 1\r\ns\r\n", b"\r\n"),
        b"STORED\r\n"
    );
    let mut limited = ascii_login(server.port(), "limited");
    assert_eq!(limited.roundtrip(b"get forbidden\r\n", b"\r\n"), DENIED);
    let opened = LIMITED.replace(
        "allow get key:readonly",
        "allow get key:readonly key:forbidden",
    );
    fs::write(&policy, opened).expect("rewrite");
    server.signal(libc::SIGHUP);
    wait_for_log(&server, "SIGHUP: access policy reloaded", 1);
    assert_eq!(
        limited.roundtrip(b"get forbidden\r\n", b"END\r\n"),
        b"VALUE forbidden 0 1\r\ns\r\nEND\r\n"
    );
    // A misspelled command must not become "allow all" (Cilium's failure), nor change
    // anything: the previous policy stays.
    fs::write(&policy, "[identity user:limited]\nallow gett prefix:\n").expect("rewrite");
    server.signal(libc::SIGHUP);
    wait_for_log(&server, "access policy not reloaded, the old one stays", 1);
    let log = server.stderr();
    assert!(
        log.contains(&format!(
            "{}:2: unknown command or group `gett`",
            path_arg(&policy)
        )),
        "{log}"
    );
    assert_eq!(
        limited.roundtrip(b"get forbidden\r\n", b"END\r\n"),
        b"VALUE forbidden 0 1\r\ns\r\nEND\r\n"
    );
    assert_eq!(limited.roundtrip(b"get other\r\n", b"\r\n"), DENIED);
    admin.send(b"stats\r\n").expect("send");
    let stats = parse_stats(&admin.read_until(b"END\r\n", BOUND).bytes);
    assert_eq!(stats.get("acl_reloads").map(String::as_str), Some("1"));
    assert_eq!(
        stats.get("acl_reload_errors").map(String::as_str),
        Some("1")
    );
    // A new connection gets the same, current policy.
    let mut again = ascii_login(server.port(), "limited");
    assert_eq!(again.roundtrip(b"get other\r\n", b"\r\n"), DENIED);
}

/// A policy with a mistake stops the start-up with the file, the line and what is wrong.
#[test]
fn a_broken_policy_stops_the_start_up() {
    let dir = TempDir::new().expect("temp dir");
    let cases = [
        (
            "[identity user:a]\nallow get key:x\nallow gett key:y\n",
            ":3: unknown command or group `gett`",
        ),
        (
            "[identity person:a]\n",
            ":1: unknown identity kind `person`",
        ),
        (
            "[identity user:a]\nallow get regex:(unclosed\n",
            ":2: `regex:(unclosed`",
        ),
        (
            "[identity user:a]\nallow get\n",
            ":2: `get` names commands on keys but no key pattern",
        ),
    ];
    for (index, (text, says)) in cases.iter().enumerate() {
        let path = write_file(dir.path(), &format!("bad{index}.acl"), text, 0o644);
        let acl = format!("acl_file={}", path_arg(&path));
        let err = Server::try_start(Kind::Rampart, &["-o", &acl]).expect_err("started");
        assert!(
            err.contains(&format!("{}{says}", path_arg(&path))),
            "{text}: {err}"
        );
        assert!(err.contains("exit status: 64"), "{text}: {err}");
    }
    let err = Server::try_start(Kind::Rampart, &["-o", "acl_file=/nonexistent/policy"])
        .expect_err("started");
    assert!(err.contains("/nonexistent/policy"), "{err}");
    // Whoever may write the policy may grant themselves anything: refused.
    let open = write_file(
        dir.path(),
        "open.acl",
        "[identity anonymous]\nallow version\n",
        0o666,
    );
    let acl = format!("acl_file={}", path_arg(&open));
    let err = Server::try_start(Kind::Rampart, &["-o", &acl]).expect_err("started");
    assert!(err.contains("writable by other users (mode 666)"), "{err}");
}

/// A unix-socket client is its uid (`SO_PEERCRED`): the policy can name it.
#[test]
fn a_unix_socket_client_is_known_by_its_uid() {
    let dir = TempDir::new().expect("temp dir");
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let text = format!(
        "[identity uid:{uid}]\nallow get,set prefix:mine-\n[identity anonymous]\nallow version\n"
    );
    let policy = write_file(dir.path(), "uid.acl", &text, 0o644);
    let socket = dir.path().join("uid.sock");
    let acl = format!("acl_file={}", path_arg(&policy));
    let _server = rampart_tests::UnixServer::start(
        &["-s", path_arg(&socket), "-a", "0777", "-o", &acl],
        &socket,
    );
    let mut stream = UnixStream::connect(&socket).expect("unix connect");
    stream.set_read_timeout(Some(QUIET)).expect("timeout");
    stream
        .write_all(b"set mine-1 0 0 1\r\nv\r\nget mine-1\r\nset other 0 0 1\r\nv\r\nversion\r\n")
        .expect("send");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.ends_with(b"\r\n") || got.split(|&b| b == b'\n').count() < 6 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    // `version` is anonymous's only: the uid's block does not grant it.
    assert_eq!(
        String::from_utf8_lossy(&got),
        "STORED\r\nVALUE mine-1 0 1\r\nv\r\nEND\r\nCLIENT_ERROR access denied\r\nCLIENT_ERROR access denied\r\n"
    );
}

/// `stats conns` lists a unix socket's clients with their uid and gid; the listener's address is
/// memcached's (`unix:<path>`; memcached 1.6.18 writes the client's as `?:<AF 0>`, rampart
/// `unix:`).
#[test]
fn a_unix_socket_client_is_listed_with_its_uid_and_gid() {
    let dir = TempDir::new().expect("temp dir");
    let socket = dir.path().join("conns.sock");
    let _server =
        rampart_tests::UnixServer::start(&["-s", path_arg(&socket), "-a", "0777"], &socket);
    let mut stream = UnixStream::connect(&socket).expect("unix connect");
    stream.set_read_timeout(Some(QUIET)).expect("timeout");
    stream.write_all(b"stats conns\r\n").expect("send");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.ends_with(b"END\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    let stats = parse_stats(&got);
    let fd = stats
        .iter()
        .find(|(name, value)| name.ends_with(":addr") && value.as_str() == "unix:")
        .map(|(name, _)| name.trim_end_matches(":addr").to_owned())
        .unwrap_or_else(|| panic!("no unix client listed: {stats:?}"));
    // SAFETY: getuid and getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let field = |name: &str| stats.get(&format!("{fd}:{name}")).cloned();
    assert_eq!(
        field("listen_addr"),
        Some(format!("unix:{}", socket.display()))
    );
    assert_eq!(field("peer_uid"), Some(uid.to_string()), "{stats:?}");
    assert_eq!(field("peer_gid"), Some(gid.to_string()), "{stats:?}");
    assert_eq!(field("state").as_deref(), Some("conn_parse_cmd"));
}

/// Without a policy, memcached's behaviour: a loopback client may run every admin command.
#[test]
fn without_a_policy_loopback_clients_keep_memcached_admin_commands() {
    let server = Server::start(Kind::Rampart, &[]);
    let mut conn = Conn::new(tcp_connect(server.port()).expect("connect"));
    assert_eq!(conn.roundtrip(b"verbosity 0\r\n", b"\r\n"), b"OK\r\n");
    assert_eq!(conn.roundtrip(b"stats reset\r\n", b"\r\n"), b"RESET\r\n");
    assert_eq!(conn.roundtrip(b"cache_memlimit 64\r\n", b"\r\n"), b"OK\r\n");
    conn.send(b"stats\r\n").expect("send");
    let stats = parse_stats(&conn.read_until(b"END\r\n", BOUND).bytes);
    assert!(
        !stats.keys().any(|name| name.starts_with("acl_")),
        "no policy, no acl counters: {stats:?}"
    );
}
