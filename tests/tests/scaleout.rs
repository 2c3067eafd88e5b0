//! rampart behind the scale-out layers of the memcached ecosystem (docs/deployment.md):
//!
//! - twemproxy (Debian's `nutcracker` 0.5.0) in front of three rampart instances answers
//!   every text command it carries exactly as one memcached answers it directly, and spreads
//!   the keys over all three;
//! - client-side consistent hashing, pymemcache's `HashClient` (also over TLS) and
//!   libmemcached's ketama through pylibmc, over three instances: keys are spread, an
//!   instance stopped mid-run fails over as the client does with memcached, and once started
//!   again on its port it gets its keys back. Each script runs against three rampart
//!   instances and against three memcached instances, and the outputs must be identical
//!   (but for notes of where keys landed, which depends on the ports);
//! - twemproxy in front of an instance that stops and comes back on its port: the same
//!   replies from rampart as from memcached (both clusters on the same ports, one after the
//!   other, so that keys land alike);
//! - pylibmc's ketama with SASL over three instances that require it.

use std::collections::HashMap;
use std::process::Command;
use std::thread;
use std::time::Duration;

use rampart_tests::io::{Conn, End, REPLY_TIMEOUT};
use rampart_tests::python::{python, require_module};
use rampart_tests::report::{escape, line_diff};
use rampart_tests::scaleout::{Cluster, Nutcracker, run_conducted};
use rampart_tests::server::run_bounded;
use rampart_tests::tempdir::TempDir;
use rampart_tests::tls::{Pki, parse_stats};
use rampart_tests::{Kind, Server, give_to_nobody, package_dir, path_arg, write_file};

/// One script run: a few thousand calls, a four-second dead timeout, two restarts.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Keys written through the proxy to see where they land.
const SPREAD_KEYS: usize = 300;
/// The pylibmc script runs under the system python3, which Debian's python3-pylibmc serves.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";
/// A value bigger than twemproxy's 16 KiB buffers, so it crosses several of them.
const LARGE_VALUE_BYTES: usize = 100 * 1024;
/// A value over both servers' default item size limit (`-I 1m`).
const TOO_LARGE_VALUE_BYTES: usize = 2 * 1024 * 1024;

/// What a step's reply looks like, so that it can be read to its end without a sentinel
/// (twemproxy would route a sentinel key to one backend of its choosing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// One line.
    Line,
    /// `VALUE` blocks up to `END`, or one error line.
    Values,
    /// Everything until the peer closes.
    Close,
}

struct Step {
    title: String,
    /// May contain `{<key>#<n>}`: the n-th CAS unique this target showed for that key.
    request: Vec<u8>,
    replies: Vec<Reply>,
}

/// Every text command twemproxy 0.5.0 forwards, with hits, misses and errors the server
/// answers, one step a line: `title | replies | request`, the replies one letter each (`L`
/// a line, `V` values or an error, `C` until the close), `\r` and `\n` in the request escaped.
/// What twemproxy refuses itself (it closes the connection: `gat`, `stats`, `flush_all`,
/// meta commands, the binary protocol, malformed lines, keys over 250 bytes, a negative
/// exptime) never reaches the instances and is described in docs/deployment.md.
const STEPS: &str = r"
get, a miss                                | V    | get k1\r\n
set                                        | L    | set k1 5 0 3\r\nabc\r\n
get, a hit                                 | V    | get k1\r\n
gets                                       | V    | gets k1\r\n
more keys, max flags, an empty value       | LLL  | set k2 0 0 1\r\n1\r\nset k3 4294967295 0 2\r\nxy\r\nset k4 0 0 0\r\n\r\n
multi-key get across instances, misses     | V    | get k1 k2 nope1 k3 k4 nope2\r\n
multi-key gets                             | V    | gets k4 k3 k2 k1 nope\r\n
the same key twice in one get              | V    | get k2 k2\r\n
multi-key get, all misses                  | V    | get nope1 nope2 nope3\r\n
add an existing key                        | L    | add k1 0 0 1\r\nz\r\n
add a new key                              | L    | add k5 0 0 1\r\nz\r\n
replace a missing key                      | L    | replace nope 0 0 1\r\nz\r\n
replace an existing key                    | L    | replace k5 3 0 2\r\nzz\r\n
append                                     | L    | append k1 0 0 2\r\nde\r\n
prepend, flags ignored                     | L    | prepend k1 9 0 2\r\n__\r\n
append to a missing key                    | L    | append nope 0 0 1\r\nx\r\n
prepend to a missing key                   | L    | prepend nope 0 0 1\r\nx\r\n
gets after append and prepend              | V    | gets k1 k5\r\n
cas with the current unique                | L    | cas k1 0 0 1 {k1#2}\r\nX\r\n
cas with a stale unique                    | L    | cas k1 0 0 1 {k1#2}\r\nY\r\n
gets after cas                             | V    | gets k1\r\n
cas on a missing key                       | L    | cas nope 0 0 1 1\r\nx\r\n
touch a hit                                | L    | touch k1 100\r\n
touch a miss                               | L    | touch nope 100\r\n
gets after touch                           | V    | gets k1\r\n
a counter                                  | L    | set n 0 0 2\r\n99\r\n
incr that adds a digit                     | L    | incr n 1\r\n
gets after incr                            | V    | gets n\r\n
decr that drops a digit                    | L    | decr n 1\r\n
get after decr                             | V    | get n\r\n
decr below zero                            | L    | decr n 1000\r\n
incr to the maximum                        | L    | incr n 18446744073709551615\r\n
incr that wraps                            | L    | incr n 1\r\n
incr a missing key                         | L    | incr nope 1\r\n
decr a missing key                         | L    | decr nope 1\r\n
incr a value that is not a number          | L    | incr k1 1\r\n
delete a hit                               | L    | delete k2\r\n
delete a miss                              | L    | delete k2\r\n
noreply set, then get                      | V    | set nr 0 0 1 noreply\r\nx\r\nget nr\r\n
noreply add of an existing key, then get   | V    | add nr 0 0 1 noreply\r\ny\r\nget nr\r\n
noreply incr, then get                     | V    | incr n 5 noreply\r\nget n\r\n
noreply delete, then get                   | V    | delete nr noreply\r\nget nr\r\n
an absolute exptime in the past            | LV   | set gone 0 1000000000 1\r\nx\r\nget gone\r\n
pipelined set, get, delete, get            | LVLV | set p1 0 0 1\r\n1\r\nget p1 k3\r\ndelete p1\r\nget p1\r\n
version                                    | L    | version\r\n
";

/// [`STEPS`], then steps with keys and values too long for a table line, then `quit`.
fn steps() -> Vec<Step> {
    let mut steps: Vec<Step> = STEPS
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut fields = line.splitn(3, " | ");
            let (Some(title), Some(replies), Some(request)) =
                (fields.next(), fields.next(), fields.next())
            else {
                panic!("a step is `title | replies | request`: {line:?}");
            };
            let replies = replies.trim().chars().map(|c| match c {
                'L' => Reply::Line,
                'V' => Reply::Values,
                'C' => Reply::Close,
                _ => panic!("unknown reply {c:?} in {line:?}"),
            });
            let request = request.replace("\\r", "\r").replace("\\n", "\n");
            Step {
                title: title.trim().to_string(),
                request: request.into_bytes(),
                replies: replies.collect(),
            }
        })
        .collect();
    let mut add = |title: &str, request: Vec<u8>, replies: &[Reply]| {
        steps.push(Step {
            title: title.to_string(),
            request,
            replies: replies.to_vec(),
        });
    };
    let set = |key: &str, value: &[u8]| {
        let header = format!("set {key} 0 0 {}\r\n", value.len());
        [header.as_bytes(), value, b"\r\n"].concat()
    };
    let long_key = "k".repeat(250);
    add(
        "a 250-byte key",
        set(&long_key, b"long key"),
        &[Reply::Line],
    );
    let get_long = format!("get {long_key}\r\n").into_bytes();
    add("get a 250-byte key", get_long, &[Reply::Values]);
    let large = set("large", &vec![b'x'; LARGE_VALUE_BYTES]);
    add("a 100 KiB value", large, &[Reply::Line]);
    add("get it", b"get large k3\r\n".to_vec(), &[Reply::Values]);
    let huge = set("huge", &vec![b'x'; TOO_LARGE_VALUE_BYTES]);
    add("a value over the item size limit", huge, &[Reply::Line]);
    add("get after it", b"get huge\r\n".to_vec(), &[Reply::Values]);
    add("quit", b"quit\r\n".to_vec(), &[Reply::Close]);
    steps
}

/// Each key's CAS uniques, labelled `<key>#1`, `<key>#2`... in order of first appearance on
/// one target. Per key, not global: behind a proxy every instance counts uniques on its own,
/// so two keys may share a number there that one memcached would never give them both.
#[derive(Default)]
struct CasByKey {
    uniques: HashMap<Vec<u8>, Vec<Vec<u8>>>,
}

impl CasByKey {
    fn label(&mut self, key: &[u8], unique: &[u8]) -> Vec<u8> {
        let seen = self.uniques.entry(key.to_vec()).or_default();
        let n = match seen.iter().position(|u| u == unique) {
            Some(i) => i + 1,
            None => {
                seen.push(unique.to_vec());
                seen.len()
            }
        };
        [key, format!("#{n}").as_bytes()].concat()
    }

    /// `request` with each `{<key>#<n>}` replaced by that unique (left as is when unknown).
    fn fill(&self, request: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(request.len());
        let mut rest = request;
        while let Some(open) = rest.iter().position(|&b| b == b'{') {
            out.extend_from_slice(&rest[..open]);
            let tail = &rest[open..];
            let close = tail.iter().position(|&b| b == b'}');
            let found = close.and_then(|close| {
                let inner = std::str::from_utf8(&tail[1..close]).ok()?;
                let (key, n) = inner.rsplit_once('#')?;
                let n: usize = n.parse().ok()?;
                let unique = self.uniques.get(key.as_bytes())?.get(n.checked_sub(1)?)?;
                Some((unique.clone(), close))
            });
            match found {
                Some((unique, close)) => {
                    out.extend_from_slice(&unique);
                    rest = &tail[close + 1..];
                }
                None => {
                    out.push(b'{');
                    rest = &tail[1..];
                }
            }
        }
        out.extend_from_slice(rest);
        out
    }
}

/// Reads one reply of `shape`, appending it to `out` with CAS uniques labelled and the
/// version string replaced. Returns false when the connection is no longer usable.
fn read_reply(conn: &mut Conn, shape: Reply, cas: &mut CasByKey, out: &mut Vec<u8>) -> bool {
    if shape == Reply::Close {
        let reply = conn.read_to_eof(REPLY_TIMEOUT);
        out.extend_from_slice(&reply.bytes);
        out.extend_from_slice(reply.end.to_string().as_bytes());
        return false;
    }
    loop {
        let line = conn.read_until(b"\r\n", REPLY_TIMEOUT);
        if line.end != End::Terminator {
            out.extend_from_slice(&line.bytes);
            out.extend_from_slice(line.end.to_string().as_bytes());
            return false;
        }
        let text = &line.bytes[..line.bytes.len() - 2];
        let fields: Vec<&[u8]> = text.split(|&b| b == b' ').collect();
        if fields[0] == b"VERSION" {
            out.extend_from_slice(b"VERSION <version>\r\n");
            return true;
        }
        if shape != Reply::Values || fields[0] != b"VALUE" || fields.len() < 4 {
            out.extend_from_slice(&line.bytes);
            return true;
        }
        out.extend_from_slice(&fields[..4].join(&b' '));
        if let Some(unique) = fields.get(4) {
            out.push(b' ');
            out.extend_from_slice(&cas.label(fields[1], unique));
        }
        out.extend_from_slice(b"\r\n");
        let Some(len) = std::str::from_utf8(fields[3])
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
        else {
            return false;
        };
        // The data block ends with the first "\r\n" at or after `len` bytes.
        let mut data = Vec::new();
        while data.len() < len + 2 {
            let more = conn.read_until(b"\r\n", REPLY_TIMEOUT);
            data.extend_from_slice(&more.bytes);
            if more.end != End::Terminator {
                out.extend_from_slice(&data);
                out.extend_from_slice(more.end.to_string().as_bytes());
                return false;
            }
        }
        out.extend_from_slice(&data);
    }
}

/// Runs `steps` in order on connections from `connect` (a new one after a close) and
/// returns each step's normalised reply.
fn run_steps(connect: impl Fn() -> Conn, steps: &[Step]) -> Vec<Vec<u8>> {
    let mut cas = CasByKey::default();
    let mut conn = connect();
    let mut replies = Vec::with_capacity(steps.len());
    for step in steps {
        let mut out = Vec::new();
        let mut usable = true;
        match conn.send(&cas.fill(&step.request)) {
            Ok(()) => {
                for &shape in &step.replies {
                    usable = read_reply(&mut conn, shape, &mut cas, &mut out);
                    if !usable {
                        break;
                    }
                }
            }
            Err(e) => {
                out.extend_from_slice(format!("<send failed: {e}>").as_bytes());
                usable = false;
            }
        }
        if !usable {
            conn = connect();
        }
        replies.push(out);
    }
    replies
}

/// The values of `get <key>` on one instance (`None` for a miss).
fn direct_get(conn: &mut Conn, key: &str) -> Option<Vec<u8>> {
    let reply = conn.roundtrip(format!("get {key}\r\n").as_bytes(), b"END\r\n");
    (reply != b"END\r\n").then_some(reply)
}

#[test]
fn twemproxy_over_three_rampart_instances_answers_as_one_memcached() {
    let cluster = Cluster::start(Kind::Rampart, 3, &[]);
    let proxy = Nutcracker::start(cluster.ports());
    let reference = Server::start(Kind::Memcached, &[]);
    let steps = steps();
    let through_proxy = run_steps(|| proxy.conn(), &steps);
    let direct = run_steps(|| reference.conn(), &steps);

    let mut report = String::new();
    for (i, step) in steps.iter().enumerate() {
        let (expected, got) = (&direct[i], &through_proxy[i]);
        let ended_early = expected.ends_with(b">") && step.replies.last() != Some(&Reply::Close);
        if ended_early {
            report.push_str(&format!(
                "step {} {:?}: memcached itself did not answer in full: {}\n",
                i + 1,
                step.title,
                escape(expected)
            ));
        }
        if expected != got {
            report.push_str(&format!(
                "step {} {:?}\n  request:   {}\n  memcached: {}\n  proxy:     {}\n",
                i + 1,
                step.title,
                escape(&step.request),
                escape(expected),
                escape(got)
            ));
        }
    }
    assert!(
        report.is_empty(),
        "twemproxy over rampart differs from memcached:\n{report}\n{}\n{}",
        proxy.diagnostics(),
        cluster.diagnostics()
    );

    // Keys written through the proxy land on every instance, each on exactly one. The
    // number is not at the end of the key: twemproxy's fnv1a_64 maps keys that differ only
    // in their last digit close together, so `spread:0`...`spread:89` can all land on one
    // instance (docs/deployment.md).
    let mut conn = proxy.conn();
    for i in 0..SPREAD_KEYS {
        let reply = conn.roundtrip(
            format!("set spread:{i}:key 0 0 1\r\n{}\r\n", i % 10).as_bytes(),
            b"\r\n",
        );
        assert_eq!(reply, b"STORED\r\n", "spread:{i}:key through the proxy");
    }
    let mut direct: Vec<Conn> = (0..3).map(|i| cluster.conn(i)).collect();
    let mut per_instance = [0usize; 3];
    for i in 0..SPREAD_KEYS {
        let key = format!("spread:{i}:key");
        let holders: Vec<usize> = (0..3)
            .filter(|&n| direct_get(&mut direct[n], &key).is_some())
            .collect();
        assert_eq!(holders.len(), 1, "{key} is held by instances {holders:?}");
        per_instance[holders[0]] += 1;
    }
    for (n, conn) in direct.iter_mut().enumerate() {
        let stats = parse_stats(&conn.roundtrip(b"stats\r\n", b"END\r\n"));
        let items: usize = stats["curr_items"].parse().expect("curr_items is a number");
        assert!(
            per_instance[n] > 0 && items >= per_instance[n],
            "instance {n} holds {} of {SPREAD_KEYS} spread keys and curr_items {items}: \
             {per_instance:?}",
            per_instance[n]
        );
    }
}

/// Keys written through the proxy before an instance is stopped behind it.
const FAILOVER_KEYS: usize = 60;

/// What a client of twemproxy sees when instance 1 of `cluster` stops and comes back on its
/// port: one line per request, the reply escaped. Depends only on the servers' behaviour
/// and the ports (which decide where keys land).
fn proxy_failover_trace(mut cluster: Cluster) -> String {
    let proxy = Nutcracker::start(cluster.ports());
    let mut trace = String::new();
    let mut conn = proxy.conn();
    let keys: Vec<String> = (0..FAILOVER_KEYS).map(|i| format!("k:{i}:x")).collect();
    for key in &keys {
        let reply = conn.roundtrip(format!("set {key} 0 0 1\r\nx\r\n").as_bytes(), b"\r\n");
        assert_eq!(reply, b"STORED\r\n", "{key}\n{}", proxy.diagnostics());
    }
    let mut direct: Vec<Conn> = (0..3).map(|i| cluster.conn(i)).collect();
    let owner: Vec<usize> = keys
        .iter()
        .map(|key| {
            (0..3)
                .find(|&n| direct_get(&mut direct[n], key).is_some())
                .unwrap_or_else(|| panic!("{key} is on no instance"))
        })
        .collect();
    drop(direct);
    trace.push_str(&format!("owners {owner:?}\n"));
    let on = |n: usize| {
        let at = owner.iter().position(|&o| o == n);
        keys[at.unwrap_or_else(|| panic!("no key on instance {n}: {owner:?}"))].clone()
    };
    let (on0, on1) = (on(0), on(1));
    cluster.stop(1);
    let mut exchange = |request: String, shapes: &'static [Reply]| {
        let step = Step {
            title: String::new(),
            request: request.into_bytes(),
            replies: shapes.to_vec(),
        };
        let reply = run_steps(|| proxy.conn(), std::slice::from_ref(&step));
        trace.push_str(&format!(
            "{} -> {}\n",
            escape(&step.request),
            escape(&reply[0])
        ));
    };
    for key in &keys {
        exchange(format!("get {key}\r\n"), &[Reply::Values]);
    }
    exchange(format!("get {on0} {on1}\r\n"), &[Reply::Close]);
    exchange(format!("set {on1} 0 0 1\r\ny\r\n"), &[Reply::Line]);
    exchange(format!("set {on0} 0 0 1\r\ny\r\n"), &[Reply::Line]);
    cluster.start_instance(1);
    exchange(format!("get {on1}\r\n"), &[Reply::Values]);
    exchange(
        format!("set {on1} 0 0 1\r\nz\r\nget {on1}\r\n"),
        &[Reply::Line, Reply::Values],
    );
    trace
}

/// twemproxy with `auto_eject_hosts: false` in front of three instances, one of which stops
/// and comes back on its port: the same replies from rampart instances as from memcached.
#[test]
fn twemproxy_reports_a_stopped_instance_and_reconnects_as_with_memcached() {
    Kind::Memcached.binary();
    let rampart = Cluster::start(Kind::Rampart, 3, &[]);
    let ports = rampart.ports().to_vec();
    let candidate = proxy_failover_trace(rampart);
    let reference = proxy_failover_trace(Cluster::start_on(Kind::Memcached, &ports, &[]));
    assert!(
        reference.contains("SERVER_ERROR Connection refused"),
        "memcached's trace shows no refused backend:\n{reference}"
    );
    if reference != candidate {
        let a: Vec<&str> = reference.lines().collect();
        let b: Vec<&str> = candidate.lines().collect();
        panic!(
            "behind twemproxy, a stopped rampart instance differs from a stopped memcached \
             (- memcached, + rampart):\n{}",
            line_diff(&a, &b).unwrap_or_else(|| "(too long to diff)".to_string())
        );
    }
}

/// Runs `script` with `args` against `cluster`, carrying out its cues, and returns its output.
fn run_against(python: &str, script: &str, args: &[&str], mut cluster: Cluster) -> String {
    let mut cmd = Command::new(python);
    cmd.env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(package_dir().join("python").join(script))
        .args(["--ports", &cluster.ports_arg()])
        .args(args);
    let kind = cluster.kind().name();
    let done = run_conducted(cmd, SCRIPT_TIMEOUT, |cue| {
        let (what, index) = cue.split_once(' ').ok_or("a cue is `<what> <index>`")?;
        let index: usize = index.parse().map_err(|_| format!("bad index in {cue:?}"))?;
        match what {
            "stop" => cluster.stop(index),
            "start" => cluster.start_instance(index),
            _ => return Err(format!("unknown cue {cue:?}")),
        }
        Ok(())
    });
    assert!(
        done.stdout.ends_with("# done\n") && !done.stdout.contains(": NO\n"),
        "{script} against three {kind} instances:\n{}\n--- stderr:\n{}",
        done.stdout,
        done.stderr
    );
    done.stdout
}

/// `script` against three rampart instances and, at the same time, against three memcached
/// instances, both started with `server_args`; the outputs must be identical but for notes
/// (`~ ` lines: where keys landed, which depends on the ports).
fn compare_clusters(python: &str, script: &str, script_args: &[&str], server_args: &[&str]) {
    Kind::Memcached.binary();
    let run = |kind: Kind| {
        let cluster = Cluster::start(kind, 3, server_args);
        run_against(python, script, script_args, cluster)
    };
    let (reference, candidate) = thread::scope(|scope| {
        let reference = scope.spawn(|| run(Kind::Memcached));
        let candidate = scope.spawn(|| run(Kind::Rampart));
        let join = |h: thread::ScopedJoinHandle<'_, String>| {
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        };
        (join(reference), join(candidate))
    });
    let compared = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|line| !line.starts_with("~ "))
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (compared(&reference), compared(&candidate));
    if a != b {
        panic!(
            "{script}: three rampart instances differ from three memcached \
             (- memcached, + rampart):\n{}\n--- rampart's output:\n{candidate}",
            line_diff(&a, &b).unwrap_or_else(|| "(too long to diff)".to_string())
        );
    }
}

#[test]
fn pymemcache_hash_client_fails_over_and_rehashes_as_with_memcached() {
    let python = python();
    require_module(&python, "pymemcache", "pymemcache");
    compare_clusters(&python, "scaleout_hashclient.py", &[], &[]);
}

#[test]
fn pymemcache_hash_client_over_tls_to_each_instance() {
    let python = python();
    require_module(&python, "pymemcache", "pymemcache");
    let pki = Pki::new();
    let cert_opts = pki.cert_opts();
    let ca = pki.ca.cert_path.to_str().expect("a UTF-8 temp path");
    compare_clusters(
        &python,
        "scaleout_hashclient.py",
        &["--ca", ca],
        &["-Z", "-o", &cert_opts],
    );
}

#[test]
fn pylibmc_ketama_fails_over_and_rehashes_as_with_memcached() {
    require_module(
        SYSTEM_PYTHON,
        "pylibmc",
        "pylibmc (Debian: apt-get install python3-pylibmc)",
    );
    compare_clusters(SYSTEM_PYTHON, "scaleout_pylibmc.py", &[], &[]);
}

/// Client-side hashing keeps authentication: pylibmc's ketama over three instances with
/// `-S -Y`, each connection authenticating with SASL (twemproxy cannot carry it).
#[test]
fn pylibmc_ketama_with_sasl_spreads_over_three_instances() {
    require_module(
        SYSTEM_PYTHON,
        "pylibmc",
        "pylibmc (Debian: apt-get install python3-pylibmc)",
    );
    let dir = TempDir::new().expect("temp dir");
    let users = write_file(dir.path(), "users", "carol:hunter2\n", 0o600);
    give_to_nobody(&users);
    let cluster = Cluster::start(Kind::Rampart, 3, &["-S", "-Y", path_arg(&users)]);
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(package_dir().join("python/scaleout_pylibmc_sasl.py"))
        .args(["--ports", &cluster.ports_arg()])
        .args(["--user", "carol", "--password", "hunter2"]);
    let done = run_bounded(cmd, SCRIPT_TIMEOUT);
    assert_eq!(
        done.stdout,
        "every set is stored: yes\n\
         get_multi reads every key back: yes\n\
         each instance holds some keys: yes\n\
         the instances hold every key once: yes\n\
         a wrong password is refused: yes\n\
         # done\n",
        "exit {:?}\n--- stderr:\n{}\n{}",
        done.status,
        done.stderr,
        cluster.diagnostics()
    );
}
