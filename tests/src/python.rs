//! Python clients as test drivers: find the interpreter, check a client library is
//! importable (naming what to install when not), run a script against a server, and compare
//! a suite's output between memcached and rampart.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::server::{find_on_path, run_bounded};
use crate::{Kind, Server, package_dir};

/// How long checking an import may take.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// `PYTHON`, else `python3` on `PATH`.
pub fn python() -> String {
    if let Some(python) = std::env::var_os("PYTHON") {
        return python.to_string_lossy().into_owned();
    }
    match find_on_path("python3") {
        Some(path) => path.to_string_lossy().into_owned(),
        None => panic!("python3 is not on PATH (set PYTHON to use another interpreter)"),
    }
}

/// Fails, with what to install, when `module` (from PyPI's `package`) cannot be imported.
pub fn require_module(python: &str, module: &str, package: &str) {
    let mut cmd = Command::new(python);
    cmd.args(["-c", &format!("import {module}")]);
    let done = run_bounded(cmd, IMPORT_TIMEOUT);
    if done.status.is_none_or(|s| !s.success()) {
        panic!(
            "{python} cannot import {module}: run `{python} -m pip install {package}` \
             (`cargo xtask ci` installs it when run as root)\n{}",
            done.stderr
        );
    }
}

/// Runs `tests/python/<script>` with `args` against `server` (which it is told with
/// `--port`); returns its stdout, or panics with everything both sides printed.
pub fn run_script(
    python: &str,
    script: &str,
    server: &Server,
    args: &[&OsStr],
    bound: Duration,
) -> String {
    let mut cmd = Command::new(python);
    cmd.arg(package_dir().join("python").join(Path::new(script)))
        .args(["--port", &server.port().to_string()]);
    cmd.args(args);
    let done = run_bounded(cmd, bound);
    match done.status {
        Some(status) if status.success() => done.stdout,
        _ => panic!(
            "{script} against {} ended with {:?}\n--- stdout:\n{}\n--- stderr:\n{}\n{}",
            server.kind().name(),
            done.status,
            done.stdout,
            done.stderr,
            server.diagnostics()
        ),
    }
}

/// A client suite: `script` (using `module`, from PyPI's `package`) runs against a fresh
/// memcached and a fresh rampart, both started with `server_args`, in parallel; the outputs
/// must be identical (the script normalises what legitimately differs) and end in `# done`.
#[derive(Debug, Clone, Copy)]
pub struct Suite<'a> {
    pub script: &'a str,
    pub module: &'a str,
    pub package: &'a str,
    pub server_args: &'a [&'a str],
    pub bound: Duration,
}

impl Suite<'_> {
    pub fn compare(&self) {
        let python = python();
        require_module(&python, self.module, self.package);
        Kind::Rampart.binary();
        let run = |kind: Kind| {
            let server = Server::start(kind, self.server_args);
            run_script(&python, self.script, &server, &[], self.bound)
        };
        let (reference, candidate) = crate::clients::on_both(run);
        crate::clients::assert_same_output(self.module, &reference, &candidate);
    }
}
