//! Clients in other languages as test drivers: Perl, PHP, Java and Go programs under
//! `tests/clients/`, each taking the server's port as its first argument and printing one
//! line per result.
//!
//! What lives here: finding each toolchain and client library (a missing one fails the test
//! with the Debian package to install, never skips it), building the compiled ones into a
//! temp dir, and [`Suite::compare`], which runs a program against a fresh memcached and a
//! fresh rampart and requires identical output ending in `# done`. [`assert_same_output`]
//! is that last check on its own, for any pair of outputs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::report::line_diff;
use crate::server::{find_on_path, run_bounded};
use crate::{Kind, Server, package_dir};

/// How long checking for a library may take (a JVM or PHP start-up, a Perl `use`).
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long compiling one program may take (javac, or `go build` with a cold cache).
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);
/// The last line every client program prints once its scenario ran to the end.
pub const DONE_LINE: &str = "# done";

/// Debian's spymemcached, from `libspymemcached-java`.
pub const SPYMEMCACHED_JAR: &str = "/usr/share/java/spymemcached.jar";
/// Where Debian's `golang-*-dev` packages put Go sources, laid out as a GOPATH.
pub const DEBIAN_GOPATH: &str = "/usr/share/gocode";
/// gomemcache's source in [`DEBIAN_GOPATH`] (`golang-github-bradfitz-gomemcache-dev`).
pub const GOMEMCACHE_SOURCE: &str =
    "/usr/share/gocode/src/github.com/bradfitz/gomemcache/memcache/memcache.go";

/// `tests/clients/<name>`.
pub fn program(name: &str) -> PathBuf {
    package_dir().join("clients").join(name)
}

/// `name` on `PATH`, or a failure naming the Debian `package` that provides it.
pub fn require_command(name: &str, package: &str) -> PathBuf {
    find_on_path(name).unwrap_or_else(|| {
        panic!(
            "{name} is not on PATH: install the Debian package {package} \
             (`cargo xtask ci` installs it when run as root)"
        )
    })
}

/// Fails, naming the Debian `package`, when `path` does not exist.
pub fn require_file(path: &Path, package: &str) {
    assert!(
        path.is_file(),
        "{} is missing: install the Debian package {package} \
         (`cargo xtask ci` installs it when run as root)",
        path.display()
    );
}

/// Runs `check` (bounded); fails with its output and the Debian `package` that provides
/// `what` when it does not succeed.
pub fn require_success(mut check: Command, what: &str, package: &str) {
    check.env("LC_ALL", "C");
    let shown = format!("{check:?}");
    let done = run_bounded(check, CHECK_TIMEOUT);
    assert!(
        done.status.is_some_and(|s| s.success()),
        "{what} is not available ({shown} ended with {:?}): install the Debian package \
         {package} (`cargo xtask ci` installs it when run as root)\n--- stdout:\n{}\n\
         --- stderr:\n{}",
        done.status,
        done.stdout,
        done.stderr
    );
}

/// Perl with `module` loadable, from the Debian `package`.
pub fn perl_with(module: &str, package: &str) -> PathBuf {
    let perl = require_command("perl", "perl");
    let mut check = Command::new(&perl);
    check.arg(format!("-M{module}")).args(["-e", "1"]);
    require_success(check, &format!("the Perl module {module}"), package);
    perl
}

/// The PHP command-line interpreter with `extension` loaded, from the Debian `package`.
pub fn php_with(extension: &str, package: &str) -> PathBuf {
    let php = require_command("php", "php-cli");
    let mut check = Command::new(&php);
    check.args([
        "-r",
        &format!("exit(extension_loaded('{extension}') ? 0 : 1);"),
    ]);
    require_success(check, &format!("the PHP extension {extension}"), package);
    php
}

/// Compiles `tests/clients/<source>` with javac against `jar` into `out`; returns the
/// classpath to run it with (`jar:out`).
pub fn javac(source: &str, jar: &Path, jar_package: &str, out: &Path) -> String {
    require_file(jar, jar_package);
    let javac = require_command("javac", "default-jdk-headless");
    let mut compile = Command::new(javac);
    compile
        .arg("-Xlint:all")
        .arg("-Werror")
        .arg("-cp")
        .arg(jar)
        .arg("-d")
        .arg(out)
        .arg(program(source));
    build(compile, source);
    format!("{}:{}", jar.display(), out.display())
}

/// Builds `tests/clients/<source>` (one Go file of package main) with `go build` in GOPATH
/// mode against [`DEBIAN_GOPATH`], with its build cache under `scratch`; returns the binary.
pub fn go_build(source: &str, scratch: &Path) -> PathBuf {
    let go = require_command("go", "golang-go");
    let binary = scratch.join(source.trim_end_matches(".go"));
    let mut compile = Command::new(go);
    compile
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(program(source))
        // GOPATH mode: Debian ships Go libraries as source trees, not modules. GOENV=off
        // keeps a developer's `go env -w` settings out of the build.
        .env("GO111MODULE", "off")
        .env("GOPATH", DEBIAN_GOPATH)
        .env("GOCACHE", scratch.join("gocache"))
        .env("GOENV", "off")
        .env("GOFLAGS", "");
    build(compile, source);
    binary
}

fn build(compile: Command, source: &str) {
    let shown = format!("{compile:?}");
    let done = run_bounded(compile, BUILD_TIMEOUT);
    assert!(
        done.status.is_some_and(|s| s.success()),
        "building {source} failed ({shown} ended with {:?}):\n{}{}",
        done.status,
        done.stdout,
        done.stderr
    );
}

/// A client program compared between the servers: `command(port)` runs it against a
/// server, with at most `bound` for the whole run.
#[derive(Debug, Clone, Copy)]
pub struct Suite<'a> {
    /// The client library as the failure messages name it.
    pub client: &'a str,
    /// Flags for both servers, after the harness's own.
    pub server_args: &'a [&'a str],
    pub bound: Duration,
}

impl Suite<'_> {
    /// Runs `command(port)` against a fresh memcached and a fresh rampart, in parallel, and
    /// requires identical output ending in [`DONE_LINE`] (the program normalises what
    /// legitimately differs between servers, such as CAS uniques and version strings).
    pub fn compare(&self, command: &(dyn Fn(u16) -> Command + Sync)) {
        Kind::Rampart.binary();
        Kind::Memcached.binary();
        let run = |kind: Kind| {
            let server = Server::start(kind, self.server_args);
            run_client(self.client, command(server.port()), &server, self.bound)
        };
        let (reference, candidate) = on_both(run);
        assert_same_output(self.client, &reference, &candidate);
    }
}

/// Runs `cmd` against `server` for at most `bound`; returns its stdout, or fails with
/// everything the client and the server printed.
pub fn run_client(client: &str, mut cmd: Command, server: &Server, bound: Duration) -> String {
    cmd.env("LC_ALL", "C");
    let shown = format!("{cmd:?}");
    let done = run_bounded(cmd, bound);
    match done.status {
        Some(status) if status.success() => done.stdout,
        status => panic!(
            "{client} ({shown}) against {} {}\n--- stdout:\n{}\n--- stderr:\n{}\n{}",
            server.kind().name(),
            match status {
                Some(status) => format!("ended with {status}"),
                None => format!("was killed after {bound:?}"),
            },
            done.stdout,
            done.stderr,
            server.diagnostics()
        ),
    }
}

/// `run(kind)` for memcached and for rampart at once (each starts its own server): the
/// results, memcached's first. A panic in either is the caller's.
pub fn on_both<T: Send>(run: impl Fn(Kind) -> T + Sync) -> (T, T) {
    thread::scope(|scope| {
        let reference = scope.spawn(|| run(Kind::Memcached));
        let candidate = scope.spawn(|| run(Kind::Rampart));
        let join = |h: thread::ScopedJoinHandle<'_, T>| {
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        };
        (join(reference), join(candidate))
    })
}

/// Fails unless memcached's output (`reference`) ran to its [`DONE_LINE`] and rampart's
/// (`candidate`) is the same; a difference is shown as a line diff.
pub fn assert_same_output(client: &str, reference: &str, candidate: &str) {
    assert!(
        reference.lines().last() == Some(DONE_LINE),
        "{client} did not reach `{DONE_LINE}` against memcached:\n{reference}"
    );
    if reference != candidate {
        let reference_lines: Vec<&str> = reference.lines().collect();
        let candidate_lines: Vec<&str> = candidate.lines().collect();
        panic!(
            "{client} results differ between memcached and rampart (- memcached, + rampart):\n\
             {}\n--- rampart's full output:\n{candidate}",
            line_diff(&reference_lines, &candidate_lines)
                .unwrap_or_else(|| "(too long to diff)".to_string())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_output_passes() {
        assert_same_output("c", "a -> 1\n# done\n", "a -> 1\n# done\n");
    }

    #[test]
    #[should_panic(expected = "  - b -> 2\n  + b -> 3\n")]
    fn a_difference_is_shown_as_a_line_diff() {
        assert_same_output("c", "a -> 1\nb -> 2\n# done\n", "a -> 1\nb -> 3\n# done\n");
    }

    #[test]
    #[should_panic(expected = "install the Debian package some-package")]
    fn a_failed_check_names_the_package() {
        require_success(Command::new("false"), "a library", "some-package");
    }

    #[test]
    #[should_panic(expected = "did not reach `# done`")]
    fn output_that_stops_early_fails_even_when_equal() {
        assert_same_output("c", "a -> 1\n", "a -> 1\n");
    }
}
