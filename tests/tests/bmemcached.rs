//! Runs `tests/python/bmemcached_suite.py` (python-binary-memcached's `Client`, which speaks
//! the binary protocol: get, set, get_multi/set_multi, incr/decr, delete, cas, stats...)
//! against memcached and against rampart (with two cores, so multi-key calls cross them)
//! and requires identical output. The script itself normalises CAS uniques and stat values.

use std::process::Command;
use std::thread;
use std::time::Duration;

use rampart_tests::report::line_diff;
use rampart_tests::server::{find_on_path, run_bounded};
use rampart_tests::{Kind, Server, package_dir};

/// The script makes about sixty calls; each has a 5 s socket timeout of its own.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn python() -> String {
    if let Some(python) = std::env::var_os("PYTHON") {
        return python.to_string_lossy().into_owned();
    }
    match find_on_path("python3") {
        Some(path) => path.to_string_lossy().into_owned(),
        None => panic!("python3 is not on PATH (set PYTHON to use another interpreter)"),
    }
}

/// Fails, with what to install, when bmemcached cannot be imported.
fn require_bmemcached(python: &str) {
    let mut cmd = Command::new(python);
    cmd.args(["-c", "import bmemcached"]);
    let done = run_bounded(cmd, Duration::from_secs(30));
    if done.status.is_none_or(|s| !s.success()) {
        panic!(
            "{python} cannot import bmemcached: run `{python} -m pip install \
             python-binary-memcached` \
             (`cargo xtask ci` installs it when run as root)\n{}",
            done.stderr
        );
    }
}

/// The script's output against a fresh server of `kind`.
fn run_suite(python: &str, kind: Kind) -> String {
    let server = Server::start(kind, &["-t", "2"]);
    let mut cmd = Command::new(python);
    cmd.arg(package_dir().join("python/bmemcached_suite.py"))
        .args(["--port", &server.port().to_string()]);
    let done = run_bounded(cmd, SCRIPT_TIMEOUT);
    match done.status {
        Some(status) if status.success() => done.stdout,
        _ => panic!(
            "bmemcached_suite.py against {} ended with {:?}\n--- stdout:\n{}\n--- stderr:\n{}\n{}",
            kind.name(),
            done.status,
            done.stdout,
            done.stderr,
            server.diagnostics()
        ),
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn bmemcached_client_sees_the_same_results_as_with_memcached() {
    let python = python();
    require_bmemcached(&python);
    Kind::Rampart.binary();
    let (reference, candidate) = thread::scope(|scope| {
        let reference = scope.spawn(|| run_suite(&python, Kind::Memcached));
        let candidate = scope.spawn(|| run_suite(&python, Kind::Rampart));
        let join = |h: thread::ScopedJoinHandle<'_, String>| {
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        };
        (join(reference), join(candidate))
    });
    assert!(
        reference.contains("# done"),
        "the script did not finish against memcached:\n{reference}"
    );
    if reference != candidate {
        panic!(
            "python-binary-memcached results differ between memcached and rampart \
             (- memcached, + rampart):\n{}\n--- rampart's full output:\n{candidate}",
            line_diff(&lines(&reference), &lines(&candidate))
                .unwrap_or_else(|| "(too long to diff)".to_string())
        );
    }
}
