//! Runs `tests/python/pymemcache_suite.py` (every call of pymemcache's `Client`) against
//! memcached and against rampart and requires identical output. The script itself
//! normalises CAS uniques, the version string and stat values.

use std::time::Duration;

use rampart_tests::python::Suite;

#[test]
fn pymemcache_client_sees_the_same_results_as_with_memcached() {
    Suite {
        script: "pymemcache_suite.py",
        module: "pymemcache",
        package: "pymemcache",
        server_args: &[],
        // The script makes about a hundred calls; each has a 5 s socket timeout of its own.
        bound: Duration::from_secs(120),
    }
    .compare();
}
