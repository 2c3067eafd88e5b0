//! The binary protocol under command-line options: `-B binary`, and `-M` out of memory.

use rampart_tests::Kind;
use rampart_tests::binary::{Cas, Packet, Step, differential, op, replay};

const SET: u8 = 0x01;
const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const GETK: u8 = 0x0c;

fn set(key: &str, value: &str) -> Packet {
    op::store(SET, key, 0, 0, value.as_bytes())
}

#[test]
fn binary_only_with_dash_b_binary() {
    let steps = vec![Step::new(
        "-B binary serves binary requests",
        vec![
            set("b", "1"),
            op::get(GETK, "b").opaque(2),
            op::bare(VERSION),
            op::bare(NOOP),
        ],
    )];
    differential(&["-B", "binary"], &steps);
}

#[test]
fn out_of_memory_under_dash_m_is_status_0x82() {
    // How many 400 KB items fit in 2 MB differs (slabs against rampart's accounting), so the
    // replies are not compared one for one: both servers must refuse some with memcached's
    // status and body, and answer every set with either that or a success.
    let big = vec![b'x'; 400 * 1024];
    let sets: Vec<Packet> = (0..20)
        .map(|i| op::store(SET, &format!("big{i}"), 0, 0, &big).opaque(i))
        .collect();
    let steps = vec![Step::new("sets past -m with -M", sets)];
    for kind in [Kind::Memcached, Kind::Rampart] {
        let (outcomes, diagnostics) = replay(kind, &["-m", "2", "-M", "-I", "512k"], &steps);
        let lines = &outcomes[0].lines;
        let refused = lines
            .iter()
            .filter(|l| {
                l.contains("status=82") && l.ends_with("value=Out of memory allocating item")
            })
            .count();
        let stored = lines.iter().filter(|l| l.contains("status=0 ")).count();
        assert!(
            refused > 0 && refused + stored == 20,
            "{}: {lines:#?}\n{diagnostics}",
            kind.name()
        );
    }
}

#[test]
fn binary_cas_fields_under_dash_c() {
    // memcached -C: every reply's CAS is 0, a store's CAS is ignored (the item has none to
    // compare), and delete or increment with a CAS compares it against 0.
    const ADD: u8 = 0x02;
    const DELETE: u8 = 0x04;
    const INCREMENT: u8 = 0x05;
    let steps = vec![
        Step::new(
            "stores answer CAS 0 and ignore the request's",
            vec![
                set("k", "v"),
                op::get(GETK, "k"),
                set("k", "w").cas(Cas::Raw(77)),
                op::get(GETK, "k"),
                op::store(ADD, "k", 0, 0, b"x").cas(Cas::Raw(1)),
            ],
        ),
        Step::new(
            "delete and increment compare their CAS with 0",
            vec![
                op::arith(INCREMENT, "n", 1, 5, 0),
                op::arith(INCREMENT, "n", 1, 5, 0).cas(Cas::Raw(3)),
                op::arith(INCREMENT, "n", 1, 5, 0).cas(Cas::Raw(0)),
                op::get(DELETE, "k").cas(Cas::Raw(9)),
                op::get(DELETE, "k"),
                op::get(GETK, "k"),
            ],
        ),
    ];
    differential(&["-C"], &steps);
}
