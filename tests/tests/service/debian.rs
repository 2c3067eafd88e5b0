//! Debian's memcached start-up scripts, running rampart in memcached's place.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rampart_tests::server::run_bounded;
use rampart_tests::tempdir::TempDir;
use rampart_tests::{Kind, path_arg};

use crate::{
    Adopted, Attempt, POLL_INTERVAL, Reaped, START_TIMEOUT, STOP_TIMEOUT, adopt_orphans, exit_text,
    exited_cleanly, on_a_free_port, port_taken, read_pid_file, require_root, serves, wait_child,
};

const DEBIAN_WRAPPER: &str = "/usr/share/memcached/scripts/systemd-memcached-wrapper";
const DEBIAN_START_SCRIPT: &str = "/usr/share/memcached/scripts/start-memcached";

/// A copy of one of Debian's scripts in `dir`, starting rampart instead of memcached.
fn debian_script(source: &str, dir: &Path) -> PathBuf {
    let text = fs::read_to_string(source).unwrap_or_else(|e| {
        panic!("{source}: {e} (install the Debian package `memcached`, which ships it)")
    });
    let binary = Kind::Rampart.binary();
    assert!(
        text.contains("\"/usr/bin/memcached\""),
        "{source}: no memcached path"
    );
    let text = text.replace(
        "\"/usr/bin/memcached\"",
        &format!("\"{}\"", path_arg(&binary)),
    );
    let name = Path::new(source).file_name().expect("a file name");
    let copy = dir.join(name);
    fs::write(&copy, text).expect("write the script");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod the script");
    copy
}

/// `dir/run`, owned by `memcache` as /run/memcached is, for rampart's pid file.
fn memcache_run_dir(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    fs::create_dir(&run).expect("mkdir run");
    let name = std::ffi::CString::new("memcache").expect("no NUL");
    // SAFETY: getpwnam reads a NUL-terminated name; the result is checked before use.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !entry.is_null(),
        "no memcache user (the Debian package `memcached` creates it)"
    );
    // SAFETY: `entry` is the valid passwd record returned above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    let path = std::ffi::CString::new(path_arg(&run)).expect("no NUL");
    // SAFETY: a NUL-terminated path and ids from the passwd record.
    assert_eq!(unsafe { libc::chown(path.as_ptr(), uid, gid) }, 0, "chown");
    fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).expect("chmod run");
    run
}

/// A configuration file like Debian's default /etc/memcached.conf, with our paths and port.
fn debian_conf(dir: &Path, port: u16, pid_file: &Path, extra: &str) -> PathBuf {
    let conf = dir.join("memcached.conf");
    let log = dir.join("memcached.log");
    let text = format!(
        "# memcached default config file, as Debian ships it\n\
         # Run memcached as a daemon. This command is implied, and is not needed for the\n\
         # daemon to run.\n\
         -d\n\n\
         # Log memcached's output to /var/log/memcached\n\
         logfile {log}\n\n\
         # Start with a cap of 64 megs of memory.\n\
         -m 64\n\n\
         # Default connection port is 11211\n\
         -p {port}\n\n\
         # Run the daemon as root. The start-memcached will default to running as root if no\n\
         # -u command is present in this config file\n\
         -u memcache\n\n\
         # Specify which IP address to listen on.\n\
         -l 127.0.0.1\n\n\
         # Use a pidfile\n\
         -P {pid}\n\
         {extra}",
        log = path_arg(&log),
        pid = path_arg(pid_file),
    );
    fs::write(&conf, text).expect("write the conf");
    conf
}

#[test]
fn debian_systemd_wrapper_runs_rampart_in_the_foreground() {
    require_root();
    let dir = TempDir::new().expect("temp dir");
    let wrapper = debian_script(DEBIAN_WRAPPER, dir.path());
    let pid_file = memcache_run_dir(dir.path()).join("memcached.pid");
    let output = dir.path().join("journal");
    let (port, mut server) = on_a_free_port(|port| {
        let conf = debian_conf(dir.path(), port, &pid_file, "");
        // As systemd runs it: in the foreground, output to the journal (here a file).
        let journal = fs::File::create(&output).expect("create the journal file");
        let child = Command::new("perl")
            .arg(&wrapper)
            .arg(&conf)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(journal.try_clone().expect("dup"))
            .stderr(journal)
            .spawn()
            .expect("run perl (Debian package `perl`)");
        let mut child = Reaped(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while read_pid_file(&pid_file, Duration::ZERO).is_none() {
            if let Some(status) = child.0.try_wait().expect("try_wait") {
                let journal = fs::read_to_string(&output).unwrap_or_default();
                if port_taken(&journal) {
                    return Attempt::PortTaken(journal);
                }
                panic!("the wrapper exited ({status}) before rampart served:\n{journal}");
            }
            assert!(
                Instant::now() < deadline,
                "no pid file within {START_TIMEOUT:?}:\n{}",
                fs::read_to_string(&output).unwrap_or_default()
            );
            thread::sleep(POLL_INTERVAL);
        }
        Attempt::Started(child)
    });
    let journal = || fs::read_to_string(&output).unwrap_or_default();
    // The wrapper execs rampart in its own process: the pid systemd tracks is the server's.
    let pid = read_pid_file(&pid_file, Duration::ZERO).expect("the pid file");
    assert_eq!(pid, server.0.id(), "the pid file names another process");
    serves(port).unwrap_or_else(|e| panic!("{e}\n{}", journal()));
    // The wrapper drops `logfile` (systemd captures the output): rampart's lines are on its
    // stdout and stderr, and no log file is made.
    let listening = format!("listening on 127.0.0.1:{port}");
    assert!(journal().contains(&listening), "{}", journal());
    assert!(!dir.path().join("memcached.log").exists());
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_child(&mut server.0, STOP_TIMEOUT)
        .unwrap_or_else(|| panic!("rampart outlived SIGTERM:\n{}", journal()));
    assert!(status.success(), "{status} after SIGTERM:\n{}", journal());
    assert!(!pid_file.exists(), "the pid file outlived a clean stop");
    assert!(journal().contains("rampart stopped"), "{}", journal());
}

#[test]
fn debian_start_memcached_script_logs_to_its_logfile() {
    require_root();
    adopt_orphans();
    let dir = TempDir::new().expect("temp dir");
    let script = debian_script(DEBIAN_START_SCRIPT, dir.path());
    let pid_file = memcache_run_dir(dir.path()).join("memcached.pid");
    let script_pid_file = dir.path().join("start-memcached.pid");
    let log = dir.path().join("memcached.log");
    let (port, (pid, mut server)) = on_a_free_port(|port| {
        let conf = debian_conf(dir.path(), port, &pid_file, "-vv\n");
        let _ = fs::remove_file(&log);
        // The script forks twice and returns; its grandchild becomes rampart.
        let mut cmd = Command::new("perl");
        cmd.arg(&script)
            .arg(&conf)
            .arg(&script_pid_file)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        let finished = run_bounded(cmd, START_TIMEOUT);
        assert!(
            finished.status.is_some_and(|s| s.success()),
            "start-memcached: {}\n{}{}",
            exit_text(finished.status),
            finished.stdout,
            finished.stderr
        );
        let script_pid = read_pid_file(&script_pid_file, START_TIMEOUT)
            .expect("start-memcached wrote no pid file");
        let mut server = Adopted::wait_for(script_pid);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(pid) = read_pid_file(&pid_file, Duration::ZERO) {
                return Attempt::Started((pid, server));
            }
            if let Some(status) = server.wait_exit(Duration::ZERO) {
                let text = fs::read_to_string(&log).unwrap_or_default();
                if port_taken(&text) {
                    return Attempt::PortTaken(text);
                }
                panic!("rampart exited (wait status {status:#x}) before serving:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "no pid file within {START_TIMEOUT:?}"
            );
            thread::sleep(POLL_INTERVAL);
        }
    });
    let logged = || fs::read_to_string(&log).unwrap_or_default();
    // The script's pid file and rampart's own name the same process: the script execs it.
    assert_eq!(
        i64::from(pid),
        i64::from(server.pid),
        "-P and the script disagree"
    );
    serves(port).unwrap_or_else(|e| panic!("{e}\n{}", logged()));
    // stdout and stderr are the log file: rampart's start-up line is there, and with -vv
    // the connection we just made.
    let listening = format!("listening on 127.0.0.1:{port}");
    assert!(logged().contains(&listening), "{}", logged());
    let status = server.terminate();
    assert!(
        exited_cleanly(status),
        "wait status {status:#x} after SIGTERM"
    );
    assert!(!pid_file.exists(), "the pid file outlived a clean stop");
    assert!(logged().contains("rampart stopped"), "{}", logged());
    assert!(
        logged().contains("DEBUG") || logged().contains("TRACE"),
        "-vv wrote nothing past INFO:\n{}",
        logged()
    );
}
