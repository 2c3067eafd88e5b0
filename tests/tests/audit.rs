//! The audit trail (`-o audit_log`): every cause recorded exactly once as one JSON object per
//! line, never a password or a value; reopened on SIGHUP after rotation; the recent-refusals
//! log (`acl log`); and the policy's dry run, offline (`rampart acl-check`) and online
//! (`acl check`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rampart_tests::tempdir::TempDir;
use rampart_tests::{Kind, Server, ascii_auth, path_arg, write_file};
use serde_json::Value;

const BOUND: Duration = Duration::from_secs(5);
const DENIED: &[u8] = b"CLIENT_ERROR access denied\r\n";

const POLICY: &str = "\
[identity user:admin]
allow @data prefix:
allow @session,@stats,@admin

[identity user:pilot]
allow @session
allow get,set key:mine
";

/// Passwords that must never reach the trail.
const USERS: &str = "admin:Adm1n-Secret\npilot:P1lot-Secret\n";

/// The trail's events, parsed (every line must be one JSON object).
fn events(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// Waits, bounded, until `path` holds `count` events.
fn wait_for_events(path: &Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + BOUND;
    loop {
        let got = events(path);
        if got.len() >= count || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (event, outcome, command, key, identity name) of each event, for comparison.
fn summary(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let field = |name: &str| e[name].as_str().unwrap_or("-").to_owned();
            format!(
                "{} {} {} {} {}",
                field("event"),
                field("outcome"),
                field("command"),
                field("key"),
                match e["identity"]["name"].as_str() {
                    Some("") | None => "-",
                    Some(name) => name,
                }
            )
        })
        .collect()
}

#[test]
fn every_cause_is_recorded_once_and_never_a_secret() {
    let dir = TempDir::new().expect("temp dir");
    // The server writes the trail as `nobody` after the reopen: a directory it may write.
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).expect("mkdir");
    fs::set_permissions(&logs, fs::Permissions::from_mode(0o777)).expect("chmod");
    let trail = logs.join("audit.log");
    let users = write_file(dir.path(), "users", USERS, 0o600);
    rampart_tests::give_to_nobody(&users);
    let policy = write_file(dir.path(), "policy.acl", POLICY, 0o644);
    let options = format!(
        "acl_file={},audit_log={},audit_auth_success,audit_connections",
        path_arg(&policy),
        path_arg(&trail)
    );
    let mut server = Server::start(
        Kind::Rampart,
        &["-t", "2", "-Y", path_arg(&users), "-o", &options],
    );
    let (_, reply) = ascii_auth(server.port(), "pilot", "wrong-Secret");
    assert_eq!(reply, b"CLIENT_ERROR authentication failure\r\n");
    let (mut pilot, reply) = ascii_auth(server.port(), "pilot", "P1lot-Secret");
    assert_eq!(reply, b"STORED\r\n");
    assert_eq!(
        pilot.roundtrip(b"set mine 0 0 12\r\nVALUE-Secret\r\n", b"\r\n"),
        b"STORED\r\n"
    );
    assert_eq!(pilot.roundtrip(b"get theirs\r\n", b"\r\n"), DENIED);
    assert_eq!(pilot.roundtrip(b"get mine other\r\n", b"\r\n"), DENIED);
    assert_eq!(pilot.roundtrip(b"flush_all\r\n", b"\r\n"), DENIED);
    assert_eq!(pilot.roundtrip(b"mg dGhlaXJz b v\r\n", b"\r\n"), DENIED);
    let (mut admin, reply) = ascii_auth(server.port(), "admin", "Adm1n-Secret");
    assert_eq!(reply, b"STORED\r\n");
    assert_eq!(admin.roundtrip(b"verbosity 0\r\n", b"\r\n"), b"OK\r\n");
    assert_eq!(admin.roundtrip(b"acl reload\r\n", b"\r\n"), b"OK\r\n");
    // The recent log merges by (identity, event, reason, command). The writer thread fills
    // it as it drains the rings: asked until it has caught up (bounded).
    let merged =
        "ACL event=acl.denied identity=user:pilot command=get reason=key count=2 last_key=other";
    let deadline = Instant::now() + BOUND;
    let log = loop {
        let log =
            String::from_utf8_lossy(&admin.roundtrip(b"acl log\r\n", b"END\r\n")).into_owned();
        if log.contains(merged) || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(log.contains(merged), "{log}");
    assert!(
        log.contains(
            "ACL event=auth.failure identity=anonymous command= reason=bad_credentials count=1"
        ),
        "{log}"
    );
    // Rotation: the file is moved away, SIGHUP reopens the configured path.
    let rotated = logs.join("audit.log.1");
    let before = wait_for_events(&trail, 14);
    fs::rename(&trail, &rotated).expect("rotate");
    fs::write(&policy, "[identity user:admin]\nallow gett prefix:\n").expect("break the policy");
    server.signal(libc::SIGHUP);
    let after = wait_for_events(&trail, 3);
    drop(pilot);
    drop(admin);
    let after_close = wait_for_events(&trail, 5);
    let _ = before;
    // The reopened file starts with the reopening; what happened after it is there.
    assert_eq!(
        summary(&after_close[..1]),
        ["audit.reopened ok - - -"],
        "{:#?}",
        summary(&after_close)
    );
    assert_eq!(
        summary(&after_close)
            .iter()
            .filter(|line| line.starts_with("conn.close ok - - pilot")
                || line.starts_with("conn.close ok - - admin"))
            .count(),
        2,
        "{:#?}",
        summary(&after_close)
    );
    assert!(after.len() >= 3);
    let mut all = events(&rotated);
    all.extend(after_close.iter().cloned());
    let got = summary(&all);
    let want = [
        "conn.open ok - - -",
        "auth.failure failed - - -",
        "conn.close ok - - -",
        "conn.open ok - - -",
        "auth.success ok - - pilot",
        "acl.denied denied get theirs pilot",
        "acl.denied denied get other pilot",
        "acl.denied denied flush_all - pilot",
        "acl.denied denied mg theirs pilot",
        "conn.open ok - - -",
        "auth.success ok - - admin",
        "admin.command allowed verbosity - admin",
        "acl.reload ok - - -",
    ];
    for line in want {
        assert_eq!(
            got.iter().filter(|g| g.as_str() == line).count(),
            if line.starts_with("conn.open") { 3 } else { 1 },
            "{line} in {got:#?}"
        );
    }
    // `acl reload` once, then `acl log` until the recent log had caught up: each one event.
    let acl_commands = got
        .iter()
        .filter(|g| g.as_str() == "admin.command allowed acl - admin")
        .count();
    assert!(acl_commands >= 2, "{got:#?}");
    // What the SIGHUP caused, each once: the reopen, the refused policy, and no other reload.
    for line in [
        "audit.reopened ok - - -",
        "credentials.reload ok - - -",
        "acl.reload failed - - -",
    ] {
        assert_eq!(
            got.iter().filter(|g| g.as_str() == line).count(),
            1,
            "{line} in {got:#?}"
        );
    }
    assert_eq!(
        got.iter().filter(|g| g.starts_with("conn.close")).count(),
        3,
        "{got:#?}"
    );
    for event in &all {
        for field in ["time", "event", "outcome"] {
            assert!(event[field].is_string(), "{field} missing: {event}");
        }
    }
    let everything = format!(
        "{}{}",
        fs::read_to_string(&rotated).expect("read"),
        fs::read_to_string(&trail).expect("read")
    );
    for secret in [
        "Adm1n-Secret",
        "P1lot-Secret",
        "wrong-Secret",
        "VALUE-Secret",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} in the trail:\n{everything}"
        );
    }
    assert!(
        server.stderr().contains("access policy not reloaded"),
        "{}",
        server.diagnostics()
    );
}

/// The dry run answers what the server would, offline from the file and online for admins.
#[test]
fn the_dry_run_answers_what_the_server_would() {
    let dir = TempDir::new().expect("temp dir");
    let policy = write_file(dir.path(), "policy.acl", POLICY, 0o644);
    let offline = |identity: &str, request: &[&str]| {
        let out = Command::new(Kind::Rampart.binary())
            .args(["acl-check", path_arg(&policy), identity])
            .args(request)
            .output()
            .expect("run acl-check");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    };
    assert_eq!(
        offline("user:pilot", &["get", "mine"]),
        (Some(0), "ALLOWED".into())
    );
    assert_eq!(
        offline("user:pilot", &["get", "mine", "theirs"]),
        (Some(1), "DENIED key theirs".into())
    );
    assert_eq!(
        offline("user:pilot", &["set", "mine", "0", "0", "5"]),
        (Some(0), "ALLOWED".into())
    );
    assert_eq!(
        offline("user:pilot", &["ms", "bWluZQ==", "2", "b", "MA"]),
        (Some(1), "DENIED command mine".into())
    );
    assert_eq!(
        offline("user:pilot", &["flush_all"]),
        (Some(1), "DENIED command".into())
    );
    assert_eq!(
        offline("user:nobody", &["version"]),
        (Some(1), "DENIED command".into())
    );
    assert_eq!(offline("human:x", &["version"]).0, Some(64));
    assert_eq!(offline("user:pilot", &["frobnicate"]).0, Some(64));

    let users = write_file(dir.path(), "users", USERS, 0o600);
    let acl = format!("acl_file={}", path_arg(&policy));
    let server = Server::start(Kind::Rampart, &["-Y", path_arg(&users), "-o", &acl]);
    let (mut admin, _) = ascii_auth(server.port(), "admin", "Adm1n-Secret");
    for (line, want) in [
        (&b"acl check user:pilot get mine theirs\r\n"[..], &b"DENIED key theirs\r\n"[..]),
        (b"acl check user:pilot set mine 0 0 3\r\n", b"ALLOWED\r\n"),
        (b"acl check user:admin flush_all\r\n", b"ALLOWED\r\n"),
        (
            b"acl check person:x get k\r\n",
            b"CLIENT_ERROR unknown identity kind `person` in `person:x`: the kinds are user, cert, psk, uid (and anonymous)\r\n",
        ),
        (b"acl bogus\r\n", b"CLIENT_ERROR usage: acl reload | acl log [reset] | acl check <identity> <request>\r\n"),
    ] {
        assert_eq!(admin.roundtrip(line, b"\r\n"), want, "{}", String::from_utf8_lossy(line));
    }
    // The dry run is an admin command: the pilot may not ask.
    let (mut pilot, _) = ascii_auth(server.port(), "pilot", "P1lot-Secret");
    assert_eq!(
        pilot.roundtrip(b"acl check user:admin get x\r\n", b"\r\n"),
        DENIED
    );
    // Nothing ran: the dry run of a set stored nothing.
    assert_eq!(admin.roundtrip(b"get mine\r\n", b"\r\n"), b"END\r\n");
}
