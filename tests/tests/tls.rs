//! TLS with real clients (issue #5's proof): Python's `ssl`, pymemcache and bmemcached,
//! `openssl s_client`, session resumption, a `notls:` listener beside a TLS one, the `ssl_*`
//! stats, and a thousand pipelined requests in one TLS write.
//!
//! Each test runs against memcached 1.6.18 (the control that proves the expectation) and
//! against rampart, as `<test>::memcached` and `<test>::rampart`. Every server gets its own
//! freshly generated PKI ([`Pki`]). Handshake refusals are in `tls_handshake.rs`,
//! `refresh_certs` in `tls_refresh.rs`.

use std::ffi::OsStr;
use std::fs::File;
use std::process::Command;
use std::time::Duration;

use rampart_tests::io::End;
use rampart_tests::python;
use rampart_tests::report::{escape, line_diff};
use rampart_tests::server::{find_on_path, run_bounded};
use rampart_tests::tls::{Pki, SERVER_SERIAL, parse_stats, second_port, start_tls, tcp_connect};
use rampart_tests::{Kind, Server, for_both_servers};

/// Each script mode makes a handful of calls with 10 s socket timeouts of its own.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// `openssl s_client` exits when the server closes after `quit`.
const S_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for replies that are large or come from a loaded machine.
const LONG_REPLY: Duration = Duration::from_secs(30);
/// Requests in the pipelining test: half `set`, half `get`.
const PIPELINED_REQUESTS: usize = 1000;

/// Runs `tls_clients.py <mode>` against `server` and returns its output; panics with the
/// script's and the server's output unless it exits 0.
fn run_script(server: &Server, pki: &Pki, mode: &str) -> String {
    let args = [
        OsStr::new(mode),
        OsStr::new("--ca"),
        pki.ca.cert_path.as_os_str(),
    ];
    python::run_script(
        &python::python(),
        "tls_clients.py",
        server,
        &args,
        SCRIPT_TIMEOUT,
    )
}

fn assert_output(server: &Server, mode: &str, expected: &str, actual: &str) {
    if expected != actual {
        let e: Vec<&str> = expected.lines().collect();
        let a: Vec<&str> = actual.lines().collect();
        panic!(
            "tls_clients.py {mode} against {} (- expected, + actual):\n{}\n--- full output:\n{actual}",
            server.kind().name(),
            line_diff(&e, &a).unwrap_or_else(|| "(too long to diff)".to_string())
        );
    }
}

/// What a plaintext server of `kind` answers to a binary `version` request (opcode 0x0b).
fn binary_version_without_tls(kind: Kind) -> String {
    const BINARY_VERSION_REQUEST: [u8; 24] = [
        0x80, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let server = Server::start(kind, &[]);
    let mut conn = server.conn();
    if let Err(e) = conn.send(&BINARY_VERSION_REQUEST) {
        return format!("sending failed: {e}");
    }
    let reply = conn.read_to_eof(Duration::from_secs(2));
    match reply.bytes.first() {
        Some(0x81) => format!("answered ({} bytes)", reply.bytes.len()),
        _ => format!(
            "NOT AVAILABLE: got {} then {}",
            escape(&reply.bytes),
            reply.end
        ),
    }
}

fn python_ssl_module_sets_and_gets(kind: Kind) {
    let pki = Pki::new();
    let server = start_tls(kind, &pki, &[], &[]);
    let out = run_script(&server, &pki, "ssl");
    let expected = "\
handshake -> ok, certificate verified
set -> b'STORED\\r\\n'
get -> b'VALUE tls:ssl 5 6\\r\\nsecret\\r\\nEND\\r\\n'
delete -> b'DELETED\\r\\n'
get after delete -> b'END\\r\\n'
set 100000 bytes -> b'STORED\\r\\n'
get 100000 bytes intact -> True
# done
";
    assert_output(&server, "ssl", expected, &out);
}
for_both_servers!(
    python_ssl_module_sets_and_gets,
    super::python_ssl_module_sets_and_gets
);

fn pymemcache_with_tls_context(kind: Kind) {
    let pki = Pki::new();
    let server = start_tls(kind, &pki, &[], &[]);
    let out = run_script(&server, &pki, "pymemcache");
    let expected = "\
set -> True
get -> b'value'
add existing -> False
set_many -> []
get_many -> [('tls:a', b'1'), ('tls:b', b'2')]
incr -> 42
delete -> True
get after delete -> None
version is bytes -> True
# done
";
    assert_output(&server, "pymemcache", expected, &out);
}
for_both_servers!(
    pymemcache_with_tls_context,
    super::pymemcache_with_tls_context
);

/// Binary protocol over TLS: against rampart this also depends on rampart's binary protocol.
/// When the output differs, the failure says whether the binary protocol works at all without
/// TLS (a binary `version` request on a plaintext server), to tell the two causes apart.
fn bmemcached_binary_protocol_with_tls_context(kind: Kind) {
    let pki = Pki::new();
    let server = start_tls(kind, &pki, &[], &[]);
    let out = run_script(&server, &pki, "bmemcached");
    if !out.contains("stats has pid -> True") {
        eprintln!(
            "{}: binary protocol without TLS: {}",
            kind.name(),
            binary_version_without_tls(kind)
        );
    }
    let expected = "\
set -> True
get -> 'value'
add existing -> False
incr -> (True, 10)
delete -> True
get after delete -> None
stats has pid -> True
# done
";
    assert_output(&server, "bmemcached", expected, &out);
}
for_both_servers!(
    bmemcached_binary_protocol_with_tls_context,
    super::bmemcached_binary_protocol_with_tls_context
);

/// With the server-side cache, and without it (stateless tickets, as memcached 1.6.18);
/// and TLS 1.2 without tickets, resumed by session id from the cache or not at all.
fn session_resumption_reports_session_reused(kind: Kind) {
    for (opts, by_id) in [(&["ssl_session_cache"][..], true), (&[], false)] {
        resumption(kind, opts, "resume", true);
        resumption(kind, opts, "resume_ids", by_id);
    }
}

fn resumption(kind: Kind, opts: &[&str], mode: &str, resumed: bool) {
    let pki = Pki::new();
    let server = start_tls(kind, &pki, opts, &[]);
    let out = run_script(&server, &pki, mode);
    let expected = format!(
        "\
first version -> True
first session_reused -> False
first has a session -> True
second version -> True
second session_reused -> {}
first still works -> True
# done
",
        if resumed { "True" } else { "False" }
    );
    assert_output(&server, mode, &expected, &out);
}
for_both_servers!(
    session_resumption_reports_session_reused,
    super::session_resumption_reports_session_reused
);

/// `openssl s_client -quiet` with commands on stdin; `quit` makes the server close, which
/// ends s_client (`-quiet` implies `-ign_eof`).
fn openssl_s_client_pipes_commands(kind: Kind) {
    let pki = Pki::new();
    let server = start_tls(kind, &pki, &[], &[]);
    let input = pki.dir().join("s_client.in");
    std::fs::write(
        &input,
        b"version\r\nset tls:s 0 0 5\r\nhello\r\nget tls:s\r\nquit\r\n",
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", input.display()));
    let Some(openssl) = find_on_path("openssl") else {
        panic!("the openssl command is not on PATH (Debian package `openssl`)");
    };
    let mut cmd = Command::new(openssl);
    cmd.args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", server.port()))
        .args(["-quiet", "-verify_return_error", "-verify_ip", "127.0.0.1"])
        .arg("-CAfile")
        .arg(&pki.ca.cert_path)
        .stdin(File::open(&input).unwrap_or_else(|e| panic!("open {}: {e}", input.display())));
    let done = run_bounded(cmd, S_CLIENT_TIMEOUT);
    // The version string differs between the servers and releases.
    let stdout = match done.stdout.split_once("\r\n") {
        Some((version, rest)) if version.starts_with("VERSION ") => {
            format!("VERSION <version>\r\n{rest}")
        }
        _ => done.stdout.clone(),
    };
    assert_eq!(
        stdout,
        "VERSION <version>\r\nSTORED\r\nVALUE tls:s 0 5\r\nhello\r\nEND\r\n",
        "s_client against {}, exit {:?}\n--- stderr:\n{}\n{}",
        kind.name(),
        done.status,
        done.stderr,
        server.diagnostics()
    );
    assert!(
        done.stderr.contains("verify return:1") && !done.stderr.contains("verify error"),
        "s_client did not verify {}'s certificate:\n{}",
        kind.name(),
        done.stderr
    );
}
for_both_servers!(
    openssl_s_client_pipes_commands,
    super::openssl_s_client_pipes_commands
);

/// `-l notls:127.0.0.1:0` beside the harness's TLS listener: plaintext on one, TLS on the
/// other, and neither accepts the other's protocol.
fn notls_listener_beside_a_tls_listener(kind: Kind) {
    let pki = Pki::new();
    let server = start_tls(kind, &pki, &[], &["-l", "notls:127.0.0.1:0"]);
    let tls_port = server.port();
    let plain_port = second_port(&server);

    let mut tls = pki.client().open(&server);
    assert_eq!(tls.peer_serial(), SERVER_SERIAL);
    assert_eq!(
        tls.roundtrip(b"set tls:both 0 0 3\r\nabc\r\n", b"\r\n"),
        b"STORED\r\n"
    );

    let mut plain = rampart_tests::io::Conn::new(tcp_connect(plain_port).expect("tcp connect"));
    assert_eq!(
        plain.roundtrip(b"get tls:both\r\n", b"END\r\n"),
        b"VALUE tls:both 0 3\r\nabc\r\nEND\r\n",
        "plaintext on the notls: listener sees what TLS stored"
    );

    // Plaintext on the TLS port: no memcached reply, the connection is dropped.
    let mut wrong = rampart_tests::io::Conn::new(tcp_connect(tls_port).expect("tcp connect"));
    wrong.send(b"version\r\n").expect("send");
    let reply = wrong.read_to_eof(LONG_REPLY);
    assert!(
        !reply.bytes.starts_with(b"VERSION") && reply.end != End::Timeout,
        "{}: plaintext on the TLS listener got {} then {}",
        kind.name(),
        escape(&reply.bytes),
        reply.end
    );

    // TLS on the plaintext port fails the handshake.
    pki.client().expect_refused(
        plain_port,
        &format!("{}: a TLS client on the notls: listener", kind.name()),
    );
}
for_both_servers!(
    notls_listener_beside_a_tls_listener,
    super::notls_listener_beside_a_tls_listener
);

/// 500 `set`s and 500 `get`s (about 30 KB) written at once, as back-to-back TLS records,
/// before any reply is read; every reply arrives, in order, followed by a `version` marker.
/// (memcached before 1.6.39 could stall on this when it did not check `SSL_pending`.)
fn thousand_pipelined_requests_in_one_tls_write(kind: Kind) {
    let pki = Pki::new();
    let server = start_tls(kind, &pki, &[], &[]);
    let mut conn = pki.client().open(&server);
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..PIPELINED_REQUESTS / 2 {
        let value = format!("value-{i}");
        request.extend_from_slice(
            format!(
                "set pipe:{i} {i} 0 {}\r\n{value}\r\nget pipe:{i}\r\n",
                value.len()
            )
            .as_bytes(),
        );
        expected.extend_from_slice(
            format!(
                "STORED\r\nVALUE pipe:{i} {i} {}\r\n{value}\r\nEND\r\n",
                value.len()
            )
            .as_bytes(),
        );
    }
    request.extend_from_slice(b"version\r\n");
    conn.send(&request).expect("send");
    let reply = conn.read_until(b"VERSION ", LONG_REPLY);
    assert_eq!(
        reply.end,
        End::Terminator,
        "{}: the replies stopped after {} of {} bytes",
        kind.name(),
        reply.bytes.len(),
        expected.len()
    );
    let got = &reply.bytes[..reply.bytes.len() - b"VERSION ".len()];
    if got != expected.as_slice() {
        let e: Vec<&[u8]> = expected.split_inclusive(|&b| b == b'\n').collect();
        let g: Vec<&[u8]> = got.split_inclusive(|&b| b == b'\n').collect();
        panic!(
            "{}: pipelined replies differ (- expected, + got):\n{}",
            kind.name(),
            line_diff(&e, &g).unwrap_or_else(|| "(too long to diff)".to_string())
        );
    }
}
for_both_servers!(
    thousand_pipelined_requests_in_one_tls_write,
    super::thousand_pipelined_requests_in_one_tls_write
);

/// Longer than rampart waits before an idle connection gives its buffers back (its own, and
/// OpenSSL's record buffers): 1 s, checked once a second.
const PAST_IDLE_RELEASE: Duration = Duration::from_millis(2500);

/// A 10 KB value, stored and fetched before and after the connection has sat idle past
/// rampart's buffer release: the session picks up where it was. (One record each way:
/// memcached 1.6.18 stalls on a request that spans records, the bug described in
/// docs/performance.md.)
fn a_connection_idle_past_the_buffer_release_still_serves(kind: Kind) {
    let pki = Pki::new();
    let server = start_tls(kind, &pki, &[], &[]);
    let mut conn = pki.client().open(&server);
    let value: String = (0..10_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let exchange = |conn: &mut rampart_tests::tls::TlsConn, round: usize| {
        let request = format!(
            "set idle:{round} 0 0 {len}\r\n{value}\r\nget idle:{round}\r\nversion\r\n",
            len = value.len()
        );
        conn.send(request.as_bytes()).expect("send");
        let reply = conn.read_until(b"VERSION ", LONG_REPLY);
        let expected = format!(
            "STORED\r\nVALUE idle:{round} 0 {len}\r\n{value}\r\nEND\r\nVERSION ",
            len = value.len()
        );
        assert_eq!(reply.end, End::Terminator, "{}: round {round}", kind.name());
        assert!(
            reply.bytes == expected.as_bytes(),
            "{}: round {round}: {} bytes back, {} expected",
            kind.name(),
            reply.bytes.len(),
            expected.len()
        );
        // The rest of the version line.
        conn.read_until(b"\r\n", LONG_REPLY);
    };
    exchange(&mut conn, 1);
    std::thread::sleep(PAST_IDLE_RELEASE);
    exchange(&mut conn, 2);
    std::thread::sleep(PAST_IDLE_RELEASE);
    exchange(&mut conn, 3);
}
for_both_servers!(
    a_connection_idle_past_the_buffer_release_still_serves,
    super::a_connection_idle_past_the_buffer_release_still_serves
);

/// Names of the TLS lines in a `stats` reply.
fn tls_stat_names(stats: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    stats
        .keys()
        .filter(|k| k.starts_with("ssl_") || *k == "time_since_server_cert_refresh")
        .cloned()
        .collect()
}

/// `stats` lines rampart has that memcached 1.6.18 lacks, on purpose: later memcached
/// versions count protocol errors after the handshake separately.
const RAMPART_ONLY_STATS: &[&str] = &["ssl_proto_errors"];

/// The `STAT ssl_*` lines of `stats settings`, in order.
fn ssl_settings_lines(reply: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(reply)
        .lines()
        .filter(|l| l.starts_with("STAT ssl_"))
        .map(str::to_string)
        .collect()
}

/// Both servers on the same PKI with the same options: `stats settings`' `ssl_*` lines are
/// identical byte for byte (and memcached's are `expected_settings`), and `stats` has the same
/// TLS names (memcached's are `expected_names`; values differ).
fn compare_tls_stats(
    pki: &Pki,
    opts: &[&str],
    expected_settings: &[String],
    expected_names: &[&str],
) {
    let collect = |kind: Kind| {
        let server = start_tls(kind, pki, opts, &[]);
        let mut conn = pki.client().with_cert().open(&server);
        let settings = ssl_settings_lines(&conn.roundtrip(b"stats settings\r\n", b"END\r\n"));
        let stats = parse_stats(&conn.roundtrip(b"stats\r\n", b"END\r\n"));
        (settings, stats)
    };
    let (mc_settings, mc_stats) = collect(Kind::Memcached);
    assert_eq!(mc_settings, expected_settings, "memcached's stats settings");
    let mc_names = tls_stat_names(&mc_stats);
    assert_eq!(mc_names, expected_names, "memcached's TLS stats");

    let (rp_settings, rp_stats) = collect(Kind::Rampart);
    assert_eq!(
        rp_settings, mc_settings,
        "rampart's stats settings ssl_* lines (right: memcached's)"
    );
    let rp_names: Vec<String> = tls_stat_names(&rp_stats)
        .into_iter()
        .filter(|n| !RAMPART_ONLY_STATS.contains(&n.as_str()))
        .collect();
    assert_eq!(
        rp_names, mc_names,
        "rampart's TLS stats (right: memcached's)"
    );
    for name in tls_stat_names(&rp_stats) {
        let value = &rp_stats[&name];
        assert!(
            value.parse::<u64>().is_ok(),
            "rampart's {name} is not a number: {value:?}"
        );
    }
    if let Some(new_sessions) = rp_stats.get("ssl_new_sessions") {
        assert_ne!(
            new_sessions, "0",
            "rampart's ssl_new_sessions after a full handshake with ssl_session_cache"
        );
    }
}

#[test]
fn ssl_stats_match_memcached_with_defaults() {
    let pki = Pki::new();
    let expected_settings = [
        "STAT ssl_enabled yes".to_string(),
        format!("STAT ssl_chain_cert {}", pki.live_cert.display()),
        format!("STAT ssl_key {}", pki.live_key.display()),
        "STAT ssl_verify_mode 0".to_string(),
        "STAT ssl_keyformat 1".to_string(),
        "STAT ssl_ciphers NULL".to_string(),
        "STAT ssl_ca_cert NULL".to_string(),
        "STAT ssl_wbuf_size 16384".to_string(),
        "STAT ssl_session_cache no".to_string(),
        "STAT ssl_kernel_tls no".to_string(),
        "STAT ssl_min_version tlsv1.2".to_string(),
    ];
    let names = ["ssl_handshake_errors", "time_since_server_cert_refresh"];
    compare_tls_stats(&pki, &[], &expected_settings, &names);
}

#[test]
fn ssl_stats_match_memcached_with_options() {
    let pki = Pki::new();
    let ca = pki.ca_opts();
    let opts = [
        "ssl_session_cache",
        "ssl_min_version=3",
        "ssl_verify_mode=1",
        "ssl_wbuf_size=32",
        ca.as_str(),
    ];
    let expected_settings = [
        "STAT ssl_enabled yes".to_string(),
        format!("STAT ssl_chain_cert {}", pki.live_cert.display()),
        format!("STAT ssl_key {}", pki.live_key.display()),
        "STAT ssl_verify_mode 1".to_string(),
        "STAT ssl_keyformat 1".to_string(),
        "STAT ssl_ciphers NULL".to_string(),
        format!("STAT ssl_ca_cert {}", pki.live_ca.display()),
        "STAT ssl_wbuf_size 32768".to_string(),
        "STAT ssl_session_cache yes".to_string(),
        "STAT ssl_kernel_tls no".to_string(),
        "STAT ssl_min_version tlsv1.3".to_string(),
    ];
    let names = [
        "ssl_handshake_errors",
        "ssl_new_sessions",
        "time_since_server_cert_refresh",
    ];
    compare_tls_stats(&pki, &opts, &expected_settings, &names);
}

/// Without `-Z` the settings say so (memcached still lists every `ssl_*` setting), `stats`
/// has no TLS counters, and `refresh_certs` answers memcached's line.
fn stats_without_tls(kind: Kind) {
    let server = Server::start(kind, &[]);
    let mut conn = server.conn();
    let settings = ssl_settings_lines(&conn.roundtrip(b"stats settings\r\n", b"END\r\n"));
    assert_eq!(
        settings,
        [
            "STAT ssl_enabled no",
            "STAT ssl_chain_cert (null)",
            "STAT ssl_key (null)",
            "STAT ssl_verify_mode 0",
            "STAT ssl_keyformat 1",
            "STAT ssl_ciphers NULL",
            "STAT ssl_ca_cert NULL",
            "STAT ssl_wbuf_size 16384",
            "STAT ssl_session_cache no",
            "STAT ssl_kernel_tls no",
            "STAT ssl_min_version tlsv1.2",
        ],
        "{}",
        kind.name()
    );
    let stats = parse_stats(&conn.roundtrip(b"stats\r\n", b"END\r\n"));
    assert!(
        tls_stat_names(&stats).is_empty(),
        "{}: TLS stats without -Z: {:?}",
        kind.name(),
        tls_stat_names(&stats)
    );
    assert_eq!(
        conn.roundtrip(b"refresh_certs\r\n", b"\r\n"),
        b"Error TLS not enabled\r\n",
        "{}",
        kind.name()
    );
}
for_both_servers!(stats_without_tls, super::stats_without_tls);
