//! Runs `tests/python/bmemcached_suite.py` (python-binary-memcached's `Client`, which speaks
//! the binary protocol: get, set, get_multi/set_multi, incr/decr, delete, cas, stats...)
//! against memcached and against rampart (with two cores, so multi-key calls cross them)
//! and requires identical output. The script itself normalises CAS uniques and stat values.

use std::time::Duration;

use rampart_tests::python::Suite;

#[test]
fn bmemcached_client_sees_the_same_results_as_with_memcached() {
    Suite {
        script: "bmemcached_suite.py",
        module: "bmemcached",
        package: "python-binary-memcached",
        server_args: &["-t", "2"],
        // The script makes about sixty calls; each has a 5 s socket timeout of its own.
        bound: Duration::from_secs(120),
    }
    .compare();
}
