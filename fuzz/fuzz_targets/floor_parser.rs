//! Feeds arbitrary bytes to the benchmark floor server's request handling
//! (`rampart_perf::floor::FloorStore::answer`) and checks what must always hold:
//! - it never consumes more than it was given;
//! - bytes arriving in two reads get the same replies, and the same bytes consumed, as the
//!   same bytes in one read (requests still arriving are left for the next read, whole).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_perf::floor::FloorStore;

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let mut whole_out = Vec::new();
    let whole = FloorStore::default().answer(input, &mut whole_out);
    assert!(whole <= input.len());

    let cut = usize::from(split).min(input.len());
    let mut store = FloorStore::default();
    let mut split_out = Vec::new();
    let first = store.answer(&input[..cut], &mut split_out);
    assert!(first <= cut);
    let second = store.answer(&input[first..], &mut split_out);
    assert_eq!(first + second, whole);
    assert_eq!(split_out, whole_out);
});
