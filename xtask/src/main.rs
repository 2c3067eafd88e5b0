//! `cargo xtask`: the project's automation, in Rust so that it runs wherever cargo does.
//!
//! - `cargo xtask ci`: install missing test prerequisites (as root), then fmt, clippy, build
//!   and the whole workspace's tests with `RAMPART_BIN` pointing at the fresh binary, then
//!   `bench-tls --quick` (errors only, never speed). Stops at the first failing step with a
//!   non-zero exit status.
//! - `cargo xtask fuzz [TARGET] [--seconds N]`: run a cargo-fuzz target (in `fuzz/`, its
//!   own workspace; default every target in turn) for N seconds, installing cargo-fuzz
//!   first if needed.
//!
//! - `cargo xtask bench-tls [--quick]`: rampart against upstream memcached, plaintext and
//!   TLS, pinned and alternating; see `bench_tls.rs`.
//!
//! - `cargo xtask bench-cores [--quick]`: rampart `-t 1` against `-t 2`, and the cost of a
//!   cross-core hop, batched and not; see `bench_cores.rs`.
//!
//! Only std's `Command` and `anyhow` (plus the load generator and plotters for bench-tls): no
//! shell scripts to keep portable.

mod bench_cores;
mod bench_tls;

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};

/// Debian packages the integration tests need, and the command each provides.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("memcached", "memcached"),
    ("libmemcached-tools", "memccapable"),
    // The TLS tests drive `openssl s_client` (the libraries come with libssl-dev).
    ("openssl", "openssl"),
    // pylibmc (libmemcached with Cyrus SASL) for the SASL tests, for the system python3, and
    // Cyrus's SCRAM and PLAIN client plugins; a path marks what is not a command.
    (
        "python3-pylibmc",
        "/usr/lib/python3/dist-packages/pylibmc/__init__.py",
    ),
    (
        "libsasl2-modules",
        "/usr/share/doc/libsasl2-modules/copyright",
    ),
    // saslpasswd2, which makes the sasldb the binary-SASL comparison with memcached uses
    // (tests/tests/auth.rs), and stunnel, the TLS-PSK client (tests/tests/tls_psk.rs).
    ("sasl2-bin", "saslpasswd2"),
    ("stunnel4", "stunnel4"),
    // The other languages' clients (tests/tests/clients.rs): Java's spymemcached with a JDK,
    // Perl's Cache::Memcached::Fast, PHP's memcached extension, Go's gomemcache.
    ("default-jdk-headless", "javac"),
    ("libspymemcached-java", "/usr/share/java/spymemcached.jar"),
    (
        "libcache-memcached-fast-perl",
        "/usr/share/doc/libcache-memcached-fast-perl/copyright",
    ),
    ("php-cli", "php"),
    ("php-memcached", "/usr/share/doc/php-memcached/copyright"),
    ("golang-go", "go"),
    (
        "golang-github-bradfitz-gomemcache-dev",
        "/usr/share/gocode/src/github.com/bradfitz/gomemcache/memcache/memcache.go",
    ),
    // Scale-out (tests/tests/scaleout.rs): twemproxy.
    ("nutcracker", "/usr/sbin/nutcracker"),
    // The service files (tests/tests/service/): `systemd-analyze verify`, and strace to
    // check the unit's system call filter against what rampart calls.
    ("systemd", "systemd-analyze"),
    ("strace", "strace"),
];
/// PyPI packages the client tests need, and the module each provides.
const PIP_PACKAGES: &[(&str, &str)] = &[
    ("pymemcache", "pymemcache"),
    ("python-binary-memcached", "bmemcached"),
];
const DEFAULT_FUZZ_SECONDS: u64 = 60;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci                               install missing test prerequisites (as root), then
                                   fmt --check, clippy -D warnings, check the fuzz
                                   targets, build, test, bench-tls --quick
  fuzz [TARGET] [--seconds N]      run a cargo-fuzz target in fuzz/ for N seconds
                                   (default: every target, 60 s each)
  bench-tls [--quick] [--rounds N] [--seconds S] [--items N] [--out DIR]
            [--rate-rounds N] [--rate-seconds S] [--idle-seconds S]
            [--only matrix,memory,hostile,policy,rates,idle,defaults]
            [--floor-io-uring]
                                   rampart vs memcached vs the floor, plaintext and TLS,
                                   pinned CPUs: saturation, fixed offered rates (1k, 10k,
                                   50k/s, with memtier beside rampart-load), idle CPU and
                                   defaults vs defaults; report in perf/results/ (--quick:
                                   one short round, report under the target dir;
                                   --floor-io-uring: the plaintext floor is
                                   rampart-floor --io-uring)
  bench-cores [--quick] [--rounds N] [--seconds S] [--out DIR]
                                   rampart -t 1 vs -t 2 and the cross-core hop's cost;
                                   report under the target dir unless --out";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("ci") if args.len() == 1 => ci(),
        Some("fuzz") => {
            let (target, seconds) = parse_fuzz_args(&args[1..])?;
            fuzz(target.as_deref(), seconds)
        }
        Some("bench-tls") => bench_tls::bench_tls(&bench_tls::Options::parse(&args[1..])?),
        Some("bench-cores") => bench_cores::bench_cores(&bench_cores::Options::parse(&args[1..])?),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

fn parse_fuzz_args(args: &[String]) -> Result<(Option<String>, u64)> {
    let mut target = None;
    let mut seconds = DEFAULT_FUZZ_SECONDS;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = rest.next().context("--seconds needs a value")?;
                seconds = value
                    .parse()
                    .with_context(|| format!("--seconds {value}: not a whole number"))?;
            }
            flag if flag.starts_with('-') => bail!("unknown option {flag}\n{USAGE}"),
            name if target.is_none() => target = Some(name.to_string()),
            extra => bail!("unexpected argument {extra}\n{USAGE}"),
        }
    }
    Ok((target, seconds))
}

/// The workspace root: xtask's manifest directory's parent.
fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

fn step(title: &str) {
    println!("\n==> {title}");
}

/// Runs `cmd` with inherited output; an error unless it exits 0.
fn run_checked(cmd: &mut Command) -> Result<()> {
    println!("+ {}", render(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", render(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", render(cmd));
    }
    Ok(())
}

/// True when `cmd` exits 0; its output is discarded.
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn render(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

fn on_path(name: &str) -> bool {
    find_on_path(name).is_some()
}

/// A package's marker: a command on `PATH`, an absolute path that must exist, or
/// `dpkg:<package>`, which dpkg must report installed.
fn installed(marker: &str) -> bool {
    if let Some(package) = marker.strip_prefix("dpkg:") {
        return Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", package])
            .output()
            .is_ok_and(|out| {
                String::from_utf8_lossy(&out.stdout).contains("install ok installed")
            });
    }
    if marker.starts_with('/') {
        Path::new(marker).exists()
    } else {
        on_path(marker)
    }
}

/// The first `name` on `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    env::var_os("PATH").and_then(|path| {
        env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn is_root() -> bool {
    // `id -u` rather than libc: xtask stays free of unsafe code.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
}

fn python() -> String {
    env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn ci() -> Result<()> {
    let root = root();
    step("prerequisites");
    install_prerequisites()?;

    step("cargo fmt --all --check");
    run_checked(
        Command::new(cargo())
            .current_dir(&root)
            .args(["fmt", "--all", "--check"]),
    )?;

    step("cargo clippy --workspace --all-targets -- -D warnings");
    run_checked(Command::new(cargo()).current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;

    // The fuzz targets are their own workspace (cargo-fuzz builds them with sanitizer flags);
    // a plain check on the stable toolchain keeps them compiling as the parsers change.
    step("cargo check --manifest-path fuzz/Cargo.toml --bins");
    run_checked(Command::new(cargo()).current_dir(&root).args([
        "check",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--bins",
    ]))?;

    step("cargo build -p rampart");
    run_checked(
        Command::new(cargo())
            .current_dir(&root)
            .args(["build", "-p", "rampart"]),
    )?;
    let binary = target_dir(&root).join("debug").join("rampart");
    if !binary.is_file() {
        bail!("the build did not produce {}", binary.display());
    }

    step(&format!(
        "cargo test --workspace (RAMPART_BIN={})",
        binary.display()
    ));
    run_checked(
        Command::new(cargo())
            .current_dir(&root)
            // Every test binary runs, so one CI log shows every failure; the step still fails.
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("RAMPART_BIN", &binary),
    )?;

    // Last, so that a benchmark problem never hides a test failure. Every scenario against
    // both servers for a second; it fails on errors only (a server that does not start, an
    // error reply, a run that does not complete), never on speed. Its report goes under the
    // target dir, so the committed perf/results/ stay as they are.
    step("cargo xtask bench-tls --quick");
    bench_tls::bench_tls(&bench_tls::Options::parse(&["--quick".to_string()])?)?;

    println!("\nxtask ci: all steps passed");
    Ok(())
}

/// `CARGO_TARGET_DIR` when set (relative to the root), else `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Installs what the integration tests need and is missing: Debian packages with apt-get
/// and PyPI packages with pip, as root only. Without root, names what to install.
fn install_prerequisites() -> Result<()> {
    let missing_apt: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(_, marker)| !installed(marker))
        .map(|(package, _)| *package)
        .collect();
    let python = python();
    let modules: Vec<&str> = PIP_PACKAGES.iter().map(|(_, module)| *module).collect();
    let import = format!("import {}", modules.join(", "));
    let pip_missing = !succeeds(Command::new(&python).args(["-c", &import]));
    let missing_pip: Vec<&str> = if pip_missing {
        PIP_PACKAGES.iter().map(|(package, _)| *package).collect()
    } else {
        Vec::new()
    };
    if missing_apt.is_empty() && missing_pip.is_empty() {
        println!(
            "all present: memcached, memccapable, {}",
            modules.join(", ")
        );
        return Ok(());
    }
    if !is_root() {
        let mut what = Vec::new();
        if !missing_apt.is_empty() {
            what.push(format!("apt-get install {}", missing_apt.join(" ")));
        }
        if !missing_pip.is_empty() {
            what.push(format!("{python} -m pip install {}", missing_pip.join(" ")));
        }
        bail!(
            "missing test prerequisites and not running as root; install them with:\n  {}",
            what.join("\n  ")
        );
    }
    if !missing_apt.is_empty() {
        run_checked(Command::new("apt-get").arg("update"))?;
        run_checked(
            Command::new("apt-get")
                .args(["install", "-y"])
                .args(&missing_apt)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        for (package, command) in APT_PACKAGES {
            if !on_path(command) {
                bail!("{package} was installed but {command} is still not on PATH");
            }
        }
    }
    if !missing_pip.is_empty() {
        run_checked(
            Command::new(&python)
                .args(["-m", "pip", "install"])
                .args(&missing_pip),
        )?;
        if !succeeds(Command::new(&python).args(["-c", &import])) {
            bail!(
                "pip installed {} but `{import}` still fails",
                missing_pip.join(" ")
            );
        }
    }
    Ok(())
}

fn fuzz(target: Option<&str>, seconds: u64) -> Result<()> {
    let fuzz_dir = root().join("fuzz");
    if !fuzz_dir.join("Cargo.toml").is_file() {
        bail!("{} has no Cargo.toml", fuzz_dir.display());
    }
    step("cargo-fuzz");
    if succeeds(Command::new(cargo()).args(["fuzz", "--version"])) {
        println!("cargo-fuzz is installed");
    } else {
        run_checked(Command::new(cargo()).args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let targets = match target {
        Some(target) => vec![target.to_string()],
        None => fuzz_targets(&fuzz_dir)?,
    };
    for target in &targets {
        step(&format!("cargo fuzz run {target} for {seconds} s"));
        let mut cmd = fuzz_command(&fuzz_dir);
        cmd.args(["fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={seconds}"));
        // A target's dictionary, when it has one, is fuzz/dict/<target>.dict.
        let dict = fuzz_dir.join("dict").join(format!("{target}.dict"));
        if dict.is_file() {
            cmd.arg(format!("-dict={}", dict.display()));
        }
        run_checked(&mut cmd)?;
    }
    Ok(())
}

/// `cargo` in `fuzz/`. Only the stable toolchain exists here; cargo-fuzz needs nightly
/// flags (-Zsanitizer), which RUSTC_BOOTSTRAP=1 unlocks on stable.
fn fuzz_command(fuzz_dir: &Path) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(fuzz_dir)
        .env("RUSTC_BOOTSTRAP", OsStr::new("1"));
    cmd
}

/// The targets `cargo fuzz list` reports.
fn fuzz_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let mut cmd = fuzz_command(fuzz_dir);
    cmd.args(["fuzz", "list"]);
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", render(&cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            render(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let targets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(String::from)
        .collect();
    if targets.is_empty() {
        bail!(
            "`cargo fuzz list` found no targets in {}",
            fuzz_dir.display()
        );
    }
    Ok(targets)
}
