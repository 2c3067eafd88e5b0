//! Real clients in other languages against memcached and against rampart, requiring
//! identical results: Perl's Cache::Memcached::Fast, PHP's memcached extension (libmemcached)
//! in text and in binary, Java's spymemcached in text and in binary, and Go's gomemcache.
//!
//! Each program under `tests/clients/` runs the same scenario as far as its library's API
//! goes (set, get, multi-get, add and replace hit and miss, append and prepend, cas with the
//! current and a stale unique, incr and decr including a missing key, delete hit and miss,
//! touch, flush) and prints one line per result, with CAS uniques and version strings
//! normalised by the program itself. A missing toolchain or library fails the test with the
//! Debian package to install.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rampart_tests::clients::{
    GOMEMCACHE_SOURCE, SPYMEMCACHED_JAR, Suite, go_build, javac, perl_with, php_with, program,
    require_command, require_file,
};
use rampart_tests::tempdir::TempDir;

/// How long one client run may take: each makes about sixty calls with a 5 s timeout of its
/// own, and takes about a second when nothing goes wrong (a JVM's start included).
const RUN_BOUND: Duration = Duration::from_secs(30);

fn suite(client: &str) -> Suite<'_> {
    Suite {
        client,
        server_args: &[],
        bound: RUN_BOUND,
    }
}

#[test]
fn perl_cache_memcached_fast_sees_the_same_results_as_with_memcached() {
    let perl = perl_with("Cache::Memcached::Fast", "libcache-memcached-fast-perl");
    let script = program("memcached_fast.pl");
    suite("Cache::Memcached::Fast").compare(&|port| {
        let mut cmd = Command::new(&perl);
        cmd.arg(&script).arg(port.to_string());
        cmd
    });
}

fn php_memcached(protocol: &str) {
    let php = php_with("memcached", "php-memcached");
    let script = program("php_memcached.php");
    suite(&format!("PHP memcached ({protocol})")).compare(&|port| {
        let mut cmd = Command::new(&php);
        cmd.arg(&script).arg(port.to_string()).arg(protocol);
        cmd
    });
}

#[test]
fn php_memcached_text_sees_the_same_results_as_with_memcached() {
    php_memcached("text");
}

/// `Memcached::OPT_BINARY_PROTOCOL`: libmemcached's binary requests (quiet gets ended by a
/// noop for getMulti, the touch opcode, flush with extras).
#[test]
fn php_memcached_binary_sees_the_same_results_as_with_memcached() {
    php_memcached("binary");
}

fn spymemcached(protocol: &str) {
    let java = require_command("java", "default-jdk-headless");
    let dir = TempDir::new().expect("temp dir");
    let classpath = javac(
        "SpyClient.java",
        Path::new(SPYMEMCACHED_JAR),
        "libspymemcached-java",
        dir.path(),
    );
    suite(&format!("spymemcached ({protocol})")).compare(&|port| {
        let mut cmd = Command::new(&java);
        // The client JVM needs no optimising compiler for sixty calls; it starts faster.
        cmd.args(["-XX:TieredStopAtLevel=1", "-Xshare:auto", "-cp", &classpath])
            .arg("SpyClient")
            .arg(port.to_string())
            .arg(protocol);
        cmd
    });
}

#[test]
fn spymemcached_text_sees_the_same_results_as_with_memcached() {
    spymemcached("text");
}

#[test]
fn spymemcached_binary_sees_the_same_results_as_with_memcached() {
    spymemcached("binary");
}

#[test]
fn gomemcache_sees_the_same_results_as_with_memcached() {
    require_file(
        Path::new(GOMEMCACHE_SOURCE),
        "golang-github-bradfitz-gomemcache-dev",
    );
    let dir = TempDir::new().expect("temp dir");
    let binary = go_build("gomemcache.go", dir.path());
    suite("gomemcache").compare(&|port| {
        let mut cmd = Command::new(&binary);
        cmd.arg(port.to_string());
        cmd
    });
}
