//! Differential suite for the binary protocol: each test's steps (request packets built with
//! `rampart_tests::binary::op`) are replayed against memcached and rampart with the same
//! flags, and every response must match after the binary normalisations (CAS labels, the
//! version string, stat values) described in `rampart_tests::binary`.

use rampart_tests::binary::{Cas, Packet, Step, differential, op};

// Opcodes, as memcached's protocol_binary.h names them.
const GET: u8 = 0x00;
const SET: u8 = 0x01;
const ADD: u8 = 0x02;
const REPLACE: u8 = 0x03;
const DELETE: u8 = 0x04;
const INCREMENT: u8 = 0x05;
const DECREMENT: u8 = 0x06;
const QUIT: u8 = 0x07;
const FLUSH: u8 = 0x08;
const GETQ: u8 = 0x09;
const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const GETK: u8 = 0x0c;
const GETKQ: u8 = 0x0d;
const APPEND: u8 = 0x0e;
const PREPEND: u8 = 0x0f;
const STAT: u8 = 0x10;
const SETQ: u8 = 0x11;
const ADDQ: u8 = 0x12;
const REPLACEQ: u8 = 0x13;
const DELETEQ: u8 = 0x14;
const INCREMENTQ: u8 = 0x15;
const DECREMENTQ: u8 = 0x16;
const QUITQ: u8 = 0x17;
const FLUSHQ: u8 = 0x18;
const APPENDQ: u8 = 0x19;
const PREPENDQ: u8 = 0x1a;
const TOUCH: u8 = 0x1c;
const GAT: u8 = 0x1d;
const GATQ: u8 = 0x1e;
const SASL_LIST_MECHS: u8 = 0x20;
const GATK: u8 = 0x23;
const GATKQ: u8 = 0x24;

/// increment/decrement's expiration that means "do not create".
const NO_CREATE: u32 = 0xffff_ffff;

fn set(key: &str, value: &str) -> Packet {
    op::store(SET, key, 0, 0, value.as_bytes())
}

#[test]
fn storage_and_retrieval() {
    let steps = vec![
        Step::new(
            "set, then every get form on a hit",
            vec![
                op::store(SET, "k", 0xdead_beef, 0, b"value").opaque(1),
                op::get(GET, "k").opaque(2),
                op::get(GETK, "k").opaque(3),
                op::get(GETQ, "k").opaque(4),
                op::get(GETKQ, "k").opaque(5),
            ],
        ),
        Step::new(
            "every get form on a miss: quiet ones say nothing",
            vec![
                op::get(GET, "nokey").opaque(1),
                op::get(GETK, "nokey").opaque(2),
                op::get(GETQ, "nokey").opaque(3),
                op::get(GETKQ, "nokey").opaque(4),
            ],
        ),
        Step::new(
            "add, replace, append, prepend, hits and misses",
            vec![
                op::store(ADD, "k", 0, 0, b"x"),
                op::store(ADD, "new", 5, 0, b"fresh"),
                op::store(REPLACE, "nokey", 0, 0, b"x"),
                op::store(REPLACE, "new", 6, 0, b"again"),
                op::concat(APPEND, "new", b"-tail"),
                op::concat(PREPEND, "new", b"head-"),
                op::concat(APPEND, "nokey", b"x"),
                op::concat(PREPEND, "nokey", b"x"),
                op::get(GETK, "new"),
            ],
        ),
        Step::new(
            "quiet updates answer only their failures",
            vec![
                op::store(SETQ, "q", 0, 0, b"1").opaque(1),
                op::store(ADDQ, "q", 0, 0, b"2").opaque(2),
                op::store(ADDQ, "q2", 0, 0, b"3").opaque(3),
                op::store(REPLACEQ, "nokey", 0, 0, b"4").opaque(4),
                op::store(REPLACEQ, "q", 0, 0, b"5").opaque(5),
                op::concat(APPENDQ, "q", b"6").opaque(6),
                op::concat(PREPENDQ, "nokey", b"7").opaque(7),
                op::bare(NOOP).opaque(8),
                op::get(GETK, "q").opaque(9),
            ],
        ),
        Step::new(
            "delete and deleteq",
            vec![
                op::get(DELETE, "q").opaque(1),
                op::get(DELETE, "q").opaque(2),
                op::get(DELETEQ, "q2").opaque(3),
                op::get(DELETEQ, "q2").opaque(4),
                op::get(GET, "q2").opaque(5),
            ],
        ),
        Step::new(
            "empty and binary values",
            vec![
                set("empty", ""),
                op::get(GETK, "empty"),
                op::store(SET, "bin", 1, 0, b"\x00\r\n\x80\xff"),
                op::get(GET, "bin"),
            ],
        ),
        Step::new(
            "a large value",
            vec![
                op::store(SET, "large", 0, 0, &vec![b'L'; 500_000]),
                op::get(GET, "large"),
            ],
        ),
        Step::new(
            "a value over -I is Too large, swallowed, and set drops the old value",
            vec![
                set("toolarge", "old"),
                op::store(SET, "toolarge", 0, 0, &vec![b'x'; 1_100_000]),
                op::get(GET, "toolarge"),
                op::concat(APPEND, "k", &vec![b'x'; 1_100_000]),
                op::get(GET, "k"),
            ],
        ),
        Step::new(
            "version and noop",
            vec![op::bare(VERSION).opaque(7), op::bare(NOOP)],
        ),
    ];
    differential(&[], &steps);
}

#[test]
fn arithmetic() {
    let steps = vec![
        Step::new(
            "increment and decrement an existing number",
            vec![
                set("n", "10"),
                op::arith(INCREMENT, "n", 5, 0, NO_CREATE),
                op::arith(DECREMENT, "n", 3, 0, NO_CREATE),
                op::arith(DECREMENT, "n", 100, 0, NO_CREATE),
                op::get(GET, "n"),
            ],
        ),
        Step::new(
            "a miss without creation is Not found; with it, the initial value",
            vec![
                op::arith(INCREMENT, "none", 1, 0, NO_CREATE),
                op::arith(INCREMENT, "made", 1, 42, 0),
                op::arith(INCREMENT, "made", 1, 42, 0),
                op::arith(DECREMENT, "made2", 1, 7, 100),
                op::get(GET, "made"),
            ],
        ),
        Step::new(
            "wrap at 2^64, non-numeric values",
            vec![
                set("max", "18446744073709551615"),
                op::arith(INCREMENT, "max", 2, 0, NO_CREATE),
                set("word", "abc"),
                op::arith(INCREMENT, "word", 1, 0, NO_CREATE),
                op::arith(INCREMENTQ, "word", 1, 0, NO_CREATE),
            ],
        ),
        Step::new(
            "quiet arithmetic answers only failures",
            vec![
                op::arith(INCREMENTQ, "n", 1, 0, NO_CREATE).opaque(1),
                op::arith(DECREMENTQ, "n", 1, 0, NO_CREATE).opaque(2),
                op::arith(INCREMENTQ, "none", 1, 0, NO_CREATE).opaque(3),
                op::arith(INCREMENTQ, "madeq", 1, 9, 0).opaque(4),
                op::get(GET, "madeq").opaque(5),
            ],
        ),
    ];
    differential(&[], &steps);
}

#[test]
fn compare_and_swap() {
    let steps = vec![
        Step::new(
            "set returns the new cas, get returns it",
            vec![set("c", "a"), op::get(GET, "c")],
        ),
        Step::new(
            "set with the right cas stores, with a stale one is Exists",
            vec![
                set("c", "b").cas(Cas::Label(1)),
                set("c", "c").cas(Cas::Label(1)),
                op::get(GET, "c"),
            ],
        ),
        Step::new(
            "replace, add, append and prepend check the cas; a missing key is Not found",
            vec![
                op::store(REPLACE, "c", 0, 0, b"d").cas(Cas::Raw(1)),
                op::store(ADD, "c", 0, 0, b"d").cas(Cas::Raw(1)),
                op::store(ADD, "absent", 0, 0, b"d").cas(Cas::Raw(1)),
                op::concat(APPEND, "c", b"d").cas(Cas::Raw(1)),
                op::concat(PREPEND, "c", b"d").cas(Cas::Raw(1)),
                set("absent", "x").cas(Cas::Raw(1)),
                op::get(GET, "c"),
            ],
        ),
        Step::new(
            "append with the right cas",
            vec![
                op::concat(APPEND, "c", b"+").cas(Cas::Label(2)),
                op::get(GET, "c"),
            ],
        ),
        Step::new(
            "delete and increment with a wrong cas are Exists",
            vec![
                op::get(DELETE, "c").cas(Cas::Raw(1)),
                set("num", "1"),
                op::arith(INCREMENT, "num", 1, 0, NO_CREATE).cas(Cas::Raw(1)),
            ],
        ),
        Step::new(
            "increment with the right cas",
            vec![op::arith(INCREMENT, "num", 1, 0, NO_CREATE).cas(Cas::Label(4))],
        ),
        Step::new(
            "delete with the right cas",
            vec![op::get(DELETE, "c").cas(Cas::Label(3)), op::get(GET, "c")],
        ),
    ];
    differential(&[], &steps);
}

#[test]
fn touch_and_get_and_touch() {
    let steps = vec![
        Step::new(
            "touch, gat and gatk on a hit and on a miss",
            vec![
                op::store(SET, "t", 3, 0, b"v"),
                op::touch(TOUCH, "t", 100),
                op::touch(GAT, "t", 100),
                op::touch(GATK, "t", 100),
                op::touch(TOUCH, "none", 100),
                op::touch(GAT, "none", 100),
                op::touch(GATK, "none", 100),
            ],
        ),
        Step::new(
            "quiet gat forms: hits only",
            vec![
                op::touch(GATQ, "t", 100).opaque(1),
                op::touch(GATKQ, "t", 100).opaque(2),
                op::touch(GATQ, "none", 100).opaque(3),
                op::touch(GATKQ, "none", 100).opaque(4),
            ],
        ),
        Step::new(
            "gat with a far-future absolute expiration keeps the item",
            vec![op::touch(GAT, "t", u32::MAX), op::get(GET, "t")],
        ),
        Step::new(
            "gat with an absolute expiration in the past expires it",
            vec![
                op::touch(GAT, "t", 1_000_000_000),
                op::get(GET, "t"),
                op::touch(TOUCH, "t", 100),
            ],
        ),
    ];
    differential(&[], &steps);
}

#[test]
fn whole_cache_commands_and_connection() {
    let steps = vec![
        Step::new(
            "flush, then the items are gone",
            vec![set("f", "1"), op::bare(FLUSH).opaque(3), op::get(GET, "f")],
        ),
        Step::new(
            "flushq is silent, flush with a delay of 0 extras",
            vec![
                set("f", "1"),
                op::bare(FLUSHQ).opaque(1),
                op::get(GETQ, "f").opaque(2),
                Packet::new(FLUSH, b"")
                    .extras(&0u32.to_be_bytes())
                    .opaque(3),
            ],
        ),
        Step::new(
            "stat: every general statistic, then an empty packet",
            vec![op::bare(STAT).opaque(9)],
        ),
        // `stat settings`, `items` and `slabs` name memcached's slab and LRU internals, which
        // rampart does not have (docs/compatibility.md); their framing is checked below.
        Step::new(
            "stat reset answers only the end packet, an unknown group Not found",
            vec![Packet::new(STAT, b"reset"), Packet::new(STAT, b"nonsense")],
        ),
        Step::new(
            "SASL is not enabled: Unknown command",
            vec![op::bare(SASL_LIST_MECHS).opaque(5)],
        ),
        Step::new("quitq closes silently", vec![op::bare(QUITQ)]).closing(),
        Step::new("quit answers, then closes", vec![op::bare(QUIT).opaque(4)]).closing(),
    ];
    differential(&[], &steps);
}

#[test]
fn flush_disabled_is_an_auth_failure() {
    let steps = vec![Step::new(
        "flush and flushq with -F",
        vec![
            set("f", "1"),
            op::bare(FLUSH),
            op::bare(FLUSHQ),
            op::get(GET, "f"),
        ],
    )];
    differential(&["-F"], &steps);
}

#[test]
fn malformed_requests() {
    let steps = vec![
        Step::new(
            "an unknown opcode without a body is Unknown command, and the stream goes on",
            vec![op::bare(0x50).opaque(1), op::bare(NOOP).opaque(2)],
        ),
        Step::new(
            "a key over 250 bytes closes the connection",
            vec![op::get(GET, &"k".repeat(251))],
        )
        .closing(),
        Step::new(
            "extras of the wrong size close the connection",
            vec![Packet::new(SET, b"k").extras(&[0; 4]).value(b"v")],
        )
        .closing(),
        Step::new(
            "key and extras longer than the body close the connection",
            vec![],
        )
        .raw(&[
            0x80, GET, 0, 10, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ])
        // memcached reads key and extras before it looks at the lengths; rampart needs only
        // the header (docs/compatibility.md). With the bytes there both answer the same.
        .raw(b"0123456789")
        .closing(),
        // The first byte of a connection picks the protocol: make this one binary first.
        Step::new(
            "(a binary request on a new connection)",
            vec![op::bare(NOOP)],
        ),
        // Alone: memcached also drops the replies still queued for earlier requests of the
        // same read, rampart sends them first (docs/compatibility.md).
        Step::new("a bad magic byte closes without a reply", vec![])
            .raw(&[0x81; 24])
            .closing(),
    ];
    differential(&[], &steps);
}

/// Keys `k0`, `k1`...: with two cores about half are owned by the other one.
fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k{i}")).collect()
}

#[test]
fn quiet_pipelines_and_multi_gets_across_cores() {
    let keys = keys(24);
    let mut sets: Vec<Packet> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| op::store(SETQ, k, i as u32, 0, k.as_bytes()).opaque(i as u32))
        .collect();
    // A failure in the middle of the quiet run must come back in its place.
    sets.insert(10, op::store(ADDQ, &keys[3], 0, 0, b"dup").opaque(99));
    sets.push(op::bare(NOOP).opaque(100));
    let mut multi_get: Vec<Packet> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        multi_get.push(op::get(GETKQ, k).opaque(i as u32));
        multi_get.push(op::get(GETKQ, &format!("miss-{k}")).opaque(1000 + i as u32));
    }
    multi_get.push(op::bare(NOOP).opaque(200));
    let mut mixed: Vec<Packet> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        mixed.push(op::arith(INCREMENTQ, &format!("n-{k}"), 1, i as u64, 0).opaque(i as u32));
        mixed.push(op::get(DELETEQ, &format!("miss-{k}")).opaque(500 + i as u32));
        mixed.push(op::get(GETQ, k).opaque(600 + i as u32));
        mixed.push(op::concat(APPENDQ, k, b"+").opaque(700 + i as u32));
    }
    mixed.push(op::bare(NOOP).opaque(300));
    for k in &keys {
        mixed.push(op::get(GET, k));
        mixed.push(op::get(GET, &format!("n-{k}")));
    }
    let steps = vec![
        Step::new("a quiet run of sets across both cores, ended by noop", sets),
        Step::new("a multi-get of hits and misses with getkq", multi_get),
        Step::new(
            "quiet increments, deletes, gets and appends across cores",
            mixed,
        ),
        Step::new(
            "stat and flush after cross-core work",
            vec![
                op::bare(FLUSH),
                op::get(GET, &keys[0]),
                op::get(GET, &keys[1]),
            ],
        ),
    ];
    differential(&["-t", "2"], &steps);
}

/// `stat settings`, `items`, `slabs` and rampart's `shards`: one packet per statistic (with
/// a name and a value) and an empty one at the end, on one core and across two.
#[test]
fn stat_groups_are_framed_as_memcached_frames_them() {
    use rampart_tests::Kind;
    use rampart_tests::binary::replay;
    for args in [&["-t", "1"][..], &["-t", "2"][..]] {
        let groups: [&[u8]; 4] = [b"settings", b"items", b"slabs", b"shards"];
        let steps: Vec<Step> = groups
            .iter()
            .map(|group| {
                Step::new(
                    &String::from_utf8_lossy(group),
                    vec![set("s", "1"), Packet::new(STAT, group).opaque(7)],
                )
            })
            .collect();
        let (outcomes, log) = replay(Kind::Rampart, args, &steps);
        for (step, outcome) in steps.iter().zip(&outcomes) {
            assert_eq!(outcome.ending, "in sync", "{}\n{log}", step.title);
            let lines = &outcome.lines;
            let stats = lines
                .iter()
                .filter(|l| l.starts_with("stat opaque=7 "))
                .count();
            assert!(stats >= 3, "stat {}: {lines:?}", step.title);
            let end = "op=10 status=0 opaque=7 cas=0 extras= key= value=";
            assert_eq!(
                lines.last().map(String::as_str),
                Some(end),
                "stat {}",
                step.title
            );
            assert_eq!(lines.len(), stats + 2, "stat {}: {lines:?}", step.title);
        }
    }
}
