//! Drop-in behaviour that transcripts cannot compare byte for byte: what the key dumps list
//! (their order and access times differ), `cache_memlimit` lowered under a full cache,
//! `idle_kicks`, memcached's other flags, and the dumps under an access policy.

use std::collections::BTreeSet;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use rampart_tests::clients::on_both;
use rampart_tests::io::{Conn, End};
use rampart_tests::server::run_bounded;
use rampart_tests::tempdir::TempDir;
use rampart_tests::{Kind, Server, ascii_auth, path_arg, write_file};

const BOUND: Duration = Duration::from_secs(30);

fn lines(reply: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(reply)
        .split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A metadump line without what differs between servers and runs: the access time, the
/// CAS unique and an absolute expiry (one second apart at a boundary).
fn metadump_shape(line: &str) -> String {
    line.split(' ')
        .filter(|f| !f.starts_with("la=") && !f.starts_with("cas="))
        .map(|f| match f.strip_prefix("exp=") {
            Some("-1") => f.to_string(),
            Some(_) => "exp=<time>".to_string(),
            None => f.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A cachedump line with its absolute expiry masked.
fn cachedump_shape(line: &str) -> String {
    match line.split_once("b; ") {
        Some((head, "0 s]")) => format!("{head}b; 0 s]"),
        Some((head, _)) => format!("{head}b; <time> s]"),
        None => line.to_string(),
    }
}

fn dumps(kind: Kind) -> (BTreeSet<String>, BTreeSet<String>) {
    // memcached's cachedump lists only the hot LRU of its segmented LRU; without the LRU
    // maintainer it has one LRU per class, as rampart has one per shard.
    let server = Server::start(kind, &["-o", "no_lru_maintainer"]);
    let mut conn = server.conn();
    let mut setup = Vec::new();
    for (i, key) in ["plain", "with:colon", "a%b", "k~1", "x"]
        .iter()
        .enumerate()
    {
        let exptime = if i % 2 == 0 { 0 } else { 1000 };
        setup.extend_from_slice(format!("set {key} {i} {exptime} {}\r\n", i + 1).as_bytes());
        setup.extend_from_slice(&vec![b'v'; i + 1]);
        setup.extend_from_slice(b"\r\n");
    }
    setup.extend_from_slice(b"get plain\r\n");
    conn.roundtrip(&setup, b"END\r\n");
    let cachedump = conn.roundtrip(b"stats cachedump 1 0\r\n", b"END\r\n");
    let metadump = conn.roundtrip(b"lru_crawler metadump all\r\n", b"END\r\n");
    (
        lines(&metadump).iter().map(|l| metadump_shape(l)).collect(),
        lines(&cachedump)
            .iter()
            .map(|l| cachedump_shape(l))
            .collect(),
    )
}

#[test]
fn dumps_list_the_same_items_as_memcached() {
    let (memcached, rampart) = on_both(dumps);
    assert_eq!(memcached.0, rampart.0, "lru_crawler metadump all");
    assert!(
        memcached
            .0
            .contains("key=with%3Acolon exp=<time> fetch=no cls=1 size=75"),
        "{:?}",
        memcached.0
    );
    assert_eq!(memcached.1, rampart.1, "stats cachedump 1 0");
}

/// A dump far larger than the output's high-water mark is written a piece at a time, across
/// both cores' shards, each live key once, and the connection goes on serving afterwards.
#[test]
fn a_large_metadump_comes_in_pieces_with_every_key_once() {
    const ITEMS: usize = 30_000;
    let server = Server::start(Kind::Rampart, &["-t", "2"]);
    let mut conn = server.conn();
    conn.roundtrip(&noreply_sets("key:", ITEMS, b"v"), b"MN\r\n");
    let reply = conn.roundtrip(b"lru_crawler metadump all\r\nversion\r\n", b"VERSION ");
    let text = String::from_utf8_lossy(&reply);
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("key=") {
            let key = rest.split(' ').next().unwrap_or_default();
            assert!(keys.insert(key.to_string()), "{key} listed twice");
        }
    }
    assert_eq!(keys.len(), ITEMS);
    assert!(
        text.contains("\nEND\r\nVERSION "),
        "END, then the next reply"
    );
}

const POLICY: &str = "\
[identity user:ops]
allow @session,@stats,@dump
allow get prefix:public:

[identity user:app]
allow @data prefix:
allow @session
";

const USERS: &str = "ops:ops-pass\napp:app-pass\n";

/// With a policy, a dump needs `@dump` and lists only the keys the identity may read.
#[test]
fn dumps_show_only_the_keys_the_policy_lets_one_read() {
    let dir = TempDir::new().expect("temp dir");
    let users = write_file(dir.path(), "users", USERS, 0o600);
    let policy = write_file(dir.path(), "dump.acl", POLICY, 0o644);
    rampart_tests::give_to_nobody(&users);
    rampart_tests::give_to_nobody(&policy);
    let acl = format!("acl_file={}", path_arg(&policy));
    let server = Server::start(Kind::Rampart, &["-Y", path_arg(&users), "-o", &acl]);
    let (mut app, reply) = ascii_auth(server.port(), "app", "app-pass");
    assert_eq!(reply, b"STORED\r\n");
    let mut setup = Vec::new();
    for key in ["public:a", "public:b", "secret:c", "secret:d"] {
        setup.extend_from_slice(format!("set {key} 0 0 1\r\nv\r\n").as_bytes());
    }
    setup.extend_from_slice(b"mn\r\n");
    app.roundtrip(&setup, b"MN\r\n");
    assert_eq!(
        app.roundtrip(b"lru_crawler metadump all\r\n", b"\r\n"),
        b"CLIENT_ERROR access denied\r\n"
    );
    assert_eq!(
        app.roundtrip(b"stats cachedump 1 0\r\n", b"\r\n"),
        b"CLIENT_ERROR access denied\r\n"
    );
    let (mut ops, reply) = ascii_auth(server.port(), "ops", "ops-pass");
    assert_eq!(reply, b"STORED\r\n");
    let metadump = ops.roundtrip(b"lru_crawler metadump all\r\n", b"END\r\n");
    let cachedump = ops.roundtrip(b"stats cachedump 1 0\r\n", b"END\r\n");
    for dump in [&metadump, &cachedump] {
        let text = String::from_utf8_lossy(dump);
        assert!(
            text.contains("public%3Aa") || text.contains("public:a"),
            "{text}"
        );
        assert!(
            text.contains("public%3Ab") || text.contains("public:b"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }
}

fn stat(conn: &mut Conn, group: &str, name: &str) -> Option<String> {
    let reply = conn.roundtrip(format!("stats{group}\r\n").as_bytes(), b"END\r\n");
    lines(&reply).iter().find_map(|line| {
        let rest = line.strip_prefix("STAT ")?;
        let (stat, value) = rest.split_once(' ')?;
        (stat == name).then(|| value.to_string())
    })
}

/// `count` pipelined `set <prefix><i> ... noreply` of `value`, then `mn` to wait on.
fn noreply_sets(prefix: &str, count: usize, value: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..count {
        let line = format!("set {prefix}{i} 0 0 {} noreply\r\n", value.len());
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"mn\r\n");
    bytes
}

fn memlimit_run(kind: Kind) -> (u64, u64, u64) {
    let server = Server::start(kind, &["-m", "64"]);
    let mut conn = server.conn();
    conn.roundtrip(&noreply_sets("k", 40_000, &[b'v'; 100]), b"MN\r\n");
    let count = |conn: &mut Conn| {
        stat(conn, "", "curr_items")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default()
    };
    let before = count(&mut conn);
    assert_eq!(conn.roundtrip(b"cache_memlimit 8\r\n", b"\r\n"), b"OK\r\n");
    let after = count(&mut conn);
    // New items then take the room of old ones, the count staying about where it was.
    conn.roundtrip(&noreply_sets("n", 1_000, &[b'w'; 100]), b"MN\r\n");
    (before, after, count(&mut conn))
}

/// memcached lowers `cache_memlimit` without evicting: every item stays until new ones need
/// the room (issue 16: rampart used to evict down to the new limit at once).
#[test]
fn a_lower_memlimit_keeps_the_items_as_memcached_does() {
    for kind in [Kind::Memcached, Kind::Rampart] {
        let (before, after, later) = memlimit_run(kind);
        assert_eq!(before, 40_000, "{}", kind.name());
        assert_eq!(after, 40_000, "{}: nothing evicted at once", kind.name());
        assert!(
            (39_000..=41_000).contains(&later),
            "{}: each new item evicts about one old one: {later}",
            kind.name()
        );
    }
}

/// `-o idle_timeout` closes count into `idle_kicks`, as in memcached.
#[test]
fn idle_closes_count_as_idle_kicks() {
    thread::scope(|s| {
        for kind in [Kind::Memcached, Kind::Rampart] {
            s.spawn(move || {
                let server = Server::start(kind, &["-o", "idle_timeout=1"]);
                let mut idle = server.conn();
                let closed = idle.read_to_eof(Duration::from_secs(10));
                assert!(
                    matches!(closed.end, End::Eof | End::Reset),
                    "{}: the idle connection was closed: {}",
                    kind.name(),
                    closed.end
                );
                let deadline = Instant::now() + BOUND;
                let mut conn = server.conn();
                loop {
                    let kicks = stat(&mut conn, "", "idle_kicks");
                    if kicks.as_deref() == Some("1") {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{}: idle_kicks {kicks:?}",
                        kind.name()
                    );
                    thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
}

/// Every flag of memcached 1.6.18's `-h` starts rampart; those that tune machinery rampart
/// does not have are shown in `stats settings` where memcached shows them.
#[test]
fn memcached_flags_start_rampart_and_show_in_stats_settings() {
    let dir = TempDir::new().expect("temp dir");
    let memory_file = dir.path().join("memory_file");
    let server = Server::start(
        Kind::Rampart,
        &[
            "-C",
            "-X",
            "-W",
            "-r",
            "-L",
            "-f",
            "1.5",
            "-n",
            "64",
            "-D",
            "/",
            "-e",
            path_arg(&memory_file),
            "-b",
            "512",
            "-R",
            "10",
        ],
    );
    let mut conn = server.conn();
    let settings = conn.roundtrip(b"stats settings\r\n", b"END\r\n");
    let settings = lines(&settings);
    for want in [
        "STAT cas_enabled no",
        "STAT dump_enabled no",
        "STAT growth_factor 1.50",
        "STAT chunk_size 64",
        "STAT stat_key_prefix /",
        "STAT detail_enabled yes",
        "STAT tcp_backlog 512",
        "STAT reqs_per_event 10",
    ] {
        assert!(
            settings.iter().any(|l| l == want),
            "{want} in {settings:#?}"
        );
    }
    assert!(
        settings
            .iter()
            .any(|l| l == &format!("STAT memory_file {}", memory_file.display()))
    );
    // -W and -X in memcached's words.
    assert_eq!(
        conn.roundtrip(b"watch\r\n", b"\r\n"),
        b"CLIENT_ERROR watch commands not allowed\r\n"
    );
    // -D / with detail on from the start.
    conn.roundtrip(b"set a/b 0 0 1\r\nv\r\nget a/b\r\n", b"END\r\n");
    assert_eq!(
        conn.roundtrip(b"stats detail dump\r\n", b"END\r\n"),
        b"PREFIX a get 1 hit 1 set 1 del 0\r\nEND\r\n"
    );
}

/// `-k` locks every page, now and later: a locked-memory limit that cannot hold the server's
/// bound is refused at start-up with one line naming the flag, not met at run time.
#[test]
fn lock_memory_with_a_low_limit_is_refused_with_the_reason() {
    // A 4 MiB locked-memory limit (set for the child, whatever this host's is) cannot hold
    // the bound of any flags: the binary alone maps more.
    let mut cmd = Command::new("prlimit");
    cmd.args(["--memlock=4194304:4194304", "--"])
        .arg(Kind::Rampart.binary())
        .args(["-k", "-p", "0", "-s"])
        .arg(std::env::temp_dir().join(format!("rampart-k-{}.sock", std::process::id())));
    let done = run_bounded(cmd, BOUND);
    assert_eq!(
        done.status.and_then(|s| s.code()),
        Some(64),
        "{}",
        done.stderr
    );
    let line = done.stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("rampart: -k: locking memory needs a locked-memory limit"),
        "{}",
        done.stderr
    );
}

/// What a metadump of an empty class and a disabled crawler answer (memcached's crawler
/// thread makes these slow and timing-dependent there, so they are checked on rampart alone,
/// against the replies memcached 1.6.18 gives once its crawler has settled).
#[test]
fn crawler_replies_for_empty_classes_and_when_disabled() {
    let server = Server::start(Kind::Rampart, &[]);
    let mut conn = server.conn();
    conn.roundtrip(b"set k 0 0 1\r\nv\r\n", b"\r\n");
    for request in [
        &b"lru_crawler metadump 2\r\n"[..],
        b"lru_crawler metadump 63\r\n",
    ] {
        assert_eq!(conn.roundtrip(request, b"END\r\n"), b"END\r\n");
    }
    assert_eq!(
        conn.roundtrip(b"lru_crawler disable\r\n", b"\r\n"),
        b"OK\r\n"
    );
    for request in [
        &b"lru_crawler crawl all\r\n"[..],
        b"lru_crawler metadump all\r\n",
    ] {
        assert_eq!(
            conn.roundtrip(request, b"\r\n"),
            b"CLIENT_ERROR lru crawler disabled\r\n"
        );
    }
    assert_eq!(
        conn.roundtrip(b"lru_crawler enable\r\n", b"\r\n"),
        b"OK\r\n"
    );
    assert!(
        conn.roundtrip(b"lru_crawler metadump all\r\n", b"END\r\n")
            .starts_with(b"key=k ")
    );
}

/// `watch`'s lines with what differs between runs masked: the time, the event id and the
/// sockets.
fn watch_shape(line: &str) -> String {
    line.split(' ')
        .filter(|f| !f.starts_with("ts=") && !f.starts_with("gid="))
        .map(|f| {
            if f.starts_with("cfd=") || f.starts_with("rport=") {
                format!("{}=N", f.split('=').next().unwrap_or_default())
            } else {
                f.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `requests` (one at a time, each read to its reply's end) while a watcher follows
/// `streams`; the watcher's lines.
fn watched(server: &Server, streams: &str, requests: &[(&[u8], &[u8])]) -> Vec<String> {
    let mut watcher = server.conn();
    assert_eq!(
        watcher.roundtrip(format!("watch {streams}\r\n").as_bytes(), b"\r\n"),
        b"OK\r\n"
    );
    let mut client = server.conn();
    for (request, end) in requests {
        client.roundtrip(request, end);
    }
    client.close();
    // Everything up to the last line expected: this client's close, or the last request's.
    let last: &[u8] = if streams.contains("connevents") {
        b"reason=normal cfd="
    } else {
        b"\n"
    };
    let mut bytes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let reply = watcher.read_until(last, Duration::from_millis(200));
        bytes.extend_from_slice(&reply.bytes);
        let text = String::from_utf8_lossy(&bytes);
        let done = if streams.contains("connevents") {
            text.contains("reason=normal")
        } else {
            text.matches('\n').count() >= requests.len()
        };
        if done {
            break;
        }
    }
    // The rest of the last line.
    bytes.extend_from_slice(&watcher.read_until(b"\n", Duration::from_millis(200)).bytes);
    let events: Vec<String> = lines(&bytes).iter().map(|l| watch_shape(l)).collect();
    events
}

fn watch_run(kind: Kind) -> (Vec<String>, Vec<String>, Vec<String>) {
    let server = Server::start(kind, &[]);
    let mut setup = server.conn();
    setup.roundtrip(b"set hit 3 0 5\r\nhello\r\n", b"\r\n");
    const LINE: &[u8] = b"\r\n";
    const END: &[u8] = b"END\r\n";
    let fetches = watched(
        &server,
        "fetchers",
        &[
            (b"get hit\r\n", END),
            (b"get miss\r\n", END),
            (b"gets hit\r\n", END),
            (b"mg hit v\r\n", b"hello\r\n"),
            (b"mg miss v\r\n", LINE),
            (b"touch hit 100\r\n", LINE),
            (b"gat 0 hit\r\n", END),
        ],
    );
    let stores = watched(
        &server,
        "mutations",
        &[
            (b"set s 0 0 1\r\na\r\n", LINE),
            (b"set t 0 100 2\r\nbb\r\n", LINE),
            (b"add s 0 0 1\r\nc\r\n", LINE),
            (b"replace nothere 0 0 1\r\nd\r\n", LINE),
            (b"append s 0 0 2\r\nee\r\n", LINE),
            (b"cas s 0 0 1 1\r\nf\r\n", LINE),
            (b"ms m 3 T50\r\nabc\r\n", LINE),
        ],
    );
    let conns = watched(&server, "connevents", &[(b"version\r\n", LINE)]);
    (fetches, stores, conns)
}

/// `watch` shows the gets and stores of other connections in memcached's format. (memcached
/// also logs the lookups inside its stores, an `item_get` before each `item_store`, so the
/// two streams are compared apart.)
#[test]
fn watch_lines_match_memcached() {
    let (memcached, rampart) = on_both(watch_run);
    assert_eq!(memcached.0, rampart.0, "fetchers");
    assert_eq!(memcached.0.len(), 7, "{:#?}", memcached.0);
    let stores = |events: &[String]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.contains("type=item_store"))
            .cloned()
            .collect()
    };
    assert_eq!(stores(&memcached.1), stores(&rampart.1), "mutations");
    assert_eq!(stores(&memcached.1).len(), 7, "{:#?}", memcached.1);
    // Earlier watchers' connections may close while this one watches: this client's lines.
    let client = |events: &[String]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.contains("conn_new") || e.contains("reason=normal"))
            .cloned()
            .collect()
    };
    assert_eq!(
        client(&memcached.2),
        client(&rampart.2),
        "connevents: {:#?}",
        memcached.2
    );
    assert_eq!(client(&memcached.2).len(), 2, "{:#?}", memcached.2);
}

/// A watcher of evictions sees each item evicted to make room; one that never reads loses
/// lines (counted) and costs no more than its bounded queue.
#[test]
fn watch_evictions_and_a_watcher_that_never_reads() {
    let server = Server::start(Kind::Rampart, &["-m", "2", "-t", "1"]);
    let mut watcher = server.conn();
    assert_eq!(
        watcher.roundtrip(b"watch evictions\r\n", b"\r\n"),
        b"OK\r\n"
    );
    let mut stuck = server.conn();
    assert_eq!(stuck.roundtrip(b"watch fetchers\r\n", b"\r\n"), b"OK\r\n");
    let mut client = server.conn();
    let value = vec![b'x'; 100_000];
    for i in 0..40 {
        let mut set = format!("set big{i} 0 0 {}\r\n", value.len()).into_bytes();
        set.extend_from_slice(&value);
        set.extend_from_slice(b"\r\n");
        assert_eq!(client.roundtrip(&set, b"\r\n"), b"STORED\r\n");
    }
    let reply = watcher.read_until(b"type=eviction key=big1 ", Duration::from_secs(5));
    let text = String::from_utf8_lossy(&reply.bytes);
    assert!(
        text.contains("type=eviction key=big0 fetch=no ttl=-1 la=0 clsid=1 size=100000"),
        "{text}"
    );
    // 20,000 gets of a miss: far more lines than the stuck watcher's queue holds.
    let mut gets = Vec::new();
    for i in 0..20_000 {
        gets.extend_from_slice(format!("get missing-key-with-a-long-name-{i}\r\n").as_bytes());
    }
    gets.extend_from_slice(b"mn\r\n");
    client.roundtrip(&gets, b"MN\r\n");
    let deadline = Instant::now() + BOUND;
    loop {
        let skipped = stat(&mut client, "", "log_watcher_skipped")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default();
        if skipped > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no line was skipped");
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(stat(&mut client, "", "log_watchers").as_deref(), Some("2"));
}
