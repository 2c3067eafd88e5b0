//! `-d`: run in the background, as memcached's `-d` does, but detach only once the server
//! serves.
//!
//! memcached forks and its parent exits at once, so `memcached -d` reports success even when
//! the child then fails to bind. Here the parent waits for the verdict:
//!
//! 1. [`fork`], before anything has started a thread (a forked child has only the thread that
//!    forked, so a lock another thread held would stay locked in it for ever). The parent
//!    keeps the read end of a pipe, the child the write end.
//! 2. The child calls `setsid`: a new session without a controlling terminal, so a terminal
//!    that closes sends it no SIGHUP (which rampart takes as "reload"), and a Ctrl-C meant for
//!    the shell's foreground job does not stop it. Then it runs the server.
//! 3. Once the server serves, [`Daemon::ready`] points stdin, stdout and stderr at
//!    `/dev/null` (unless `-v`: memcached keeps them open when verbose) and writes one byte.
//!    The parent, blocked in `read`, exits 0.
//! 4. If the server fails first, the child prints the reason on the stderr it still shares
//!    with the parent and exits. The pipe closes without a byte; the parent reaps the child
//!    and exits with its status (64 for a configuration error, 1 otherwise).
//!
//! One deliberate difference: memcached's `-d` changes directory to `/`; rampart keeps the
//! working directory, so relative paths (`-P`, `-s`, certificates, credential and ACL files,
//! which SIGHUP reads again) keep naming the files they named on the command line.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

/// The byte the daemon writes when it serves. Any byte would do: only its arrival counts.
const READY: u8 = b'R';

/// One side of a successful [`fork`].
#[derive(Debug)]
pub enum Forked {
    /// The process that was started: it waits for the daemon's verdict, then exits.
    Parent(Parent),
    /// The new process, in its own session: it runs the server.
    Daemon(Daemon),
}

/// Forks the daemon. `keep_stdio`: whether the daemon keeps the caller's stdin, stdout and
/// stderr once it serves (`-v`). Refuses when the process has more than one thread (see the
/// module comment).
pub fn fork(keep_stdio: bool) -> io::Result<Forked> {
    if let Some(threads) = thread_count()
        && threads != 1
    {
        return Err(io::Error::other(format!(
            "cannot fork with {threads} threads running (only the forking one would survive)"
        )));
    }
    let (read, write) = pipe()?;
    // SAFETY: fork has no memory-safety preconditions of its own; the hazard it brings, a
    // child with only one of several threads, is excluded above: this process has one thread,
    // so every lock (the allocator's, stdio's, the logger's) is unheld or held by us.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read);
            // SAFETY: setsid takes no arguments and touches no memory of ours.
            if unsafe { libc::setsid() } == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(Forked::Daemon(Daemon {
                ready: write,
                keep_stdio,
            }))
        }
        child => {
            drop(write);
            Ok(Forked::Parent(Parent { child, ready: read }))
        }
    }
}

/// The daemon's end of the start-up pipe.
#[derive(Debug)]
pub struct Daemon {
    ready: File,
    keep_stdio: bool,
}

impl Daemon {
    /// Tells the parent the server serves, after letting go of the caller's terminal or
    /// pipes. stdio is replaced first: a caller that reads our output to its end
    /// (`out=$(rampart -d)`, an ssh session) gets that end when the parent exits.
    pub fn ready(mut self) {
        if !self.keep_stdio
            && let Err(err) = stdio_to_dev_null()
        {
            log::warn!("-d: cannot point stdin, stdout and stderr at /dev/null: {err}");
        }
        // A failed write means the parent is gone (killed while waiting): nobody to tell.
        let _ = self.ready.write_all(&[READY]);
    }
}

/// The parent's end: the daemon's process id and the pipe's read end.
#[derive(Debug)]
pub struct Parent {
    child: libc::pid_t,
    ready: File,
}

/// How the daemon's start-up ended, as its parent saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartUp {
    /// It serves.
    Serving,
    /// It exited before serving, with this status; it printed the reason itself.
    Exited(u8),
    /// This signal killed it before it served.
    Killed(i32),
}

impl StartUp {
    /// The parent's exit status: the daemon's own, or a shell's 128 + signal.
    pub fn exit_code(self) -> u8 {
        match self {
            StartUp::Serving => 0,
            StartUp::Exited(status) => status,
            StartUp::Killed(signal) => u8::try_from(128 + signal.clamp(0, 127)).unwrap_or(255),
        }
    }

    /// Reads a `waitpid` status.
    fn from_wait_status(status: libc::c_int) -> StartUp {
        if libc::WIFSIGNALED(status) {
            StartUp::Killed(libc::WTERMSIG(status))
        } else {
            // WEXITSTATUS is the low 8 bits of the status the child passed to exit.
            StartUp::Exited(u8::try_from(libc::WEXITSTATUS(status)).unwrap_or(1))
        }
    }
}

impl Parent {
    /// Waits until the daemon serves or has exited.
    pub fn wait(mut self) -> io::Result<StartUp> {
        let mut byte = [0u8; 1];
        loop {
            match self.ready.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => return Ok(StartUp::Serving),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        // End of file without the byte: the daemon is exiting (or has exited) before serving.
        let mut status = 0;
        loop {
            // SAFETY: `child` is our own unreaped child; `status` is ours to write.
            if unsafe { libc::waitpid(self.child, &mut status, 0) } == self.child {
                return Ok(StartUp::from_wait_status(status));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two file descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created by pipe2 and nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(read), File::from(write)))
}

/// The number of threads in this process (`Threads:` of /proc/self/status), when readable.
fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line["Threads:".len()..].trim().parse().ok()
}

/// Replaces stdin, stdout and stderr with `/dev/null`, as memcached's daemonize does.
fn stdio_to_dev_null() -> io::Result<()> {
    // What is still buffered for the caller's terminal goes there, not to /dev/null.
    let _ = io::stdout().flush();
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for target in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2 atomically replaces a standard descriptor with a copy of `null`, which
        // stays open for the call. std's stdin/stdout/stderr hold only the numbers 0 to 2,
        // not ownership, so they keep working and now read and write /dev/null.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), target) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

    use std::process::Command;

    use super::*;

    /// A parent waiting on `child` through a fresh pipe, and the pipe's write end.
    fn parent_of(child: &std::process::Child) -> (Parent, File) {
        let (read, write) = pipe().unwrap();
        let parent = Parent {
            child: libc::pid_t::try_from(child.id()).unwrap(),
            ready: read,
        };
        (parent, write)
    }

    #[test]
    fn the_ready_byte_means_serving_without_waiting_for_the_child() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let (parent, mut write) = parent_of(&child);
        write.write_all(&[READY]).unwrap();
        assert_eq!(parent.wait().unwrap(), StartUp::Serving);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_closed_pipe_reports_the_exit_status() {
        // Reaped by `Parent::wait`'s waitpid, as the daemon would be.
        #[allow(clippy::zombie_processes)]
        let child = Command::new("sh").args(["-c", "exit 64"]).spawn().unwrap();
        let (parent, write) = parent_of(&child);
        drop(write);
        let outcome = parent.wait().unwrap();
        assert_eq!(outcome, StartUp::Exited(64));
        assert_eq!(outcome.exit_code(), 64);
    }

    #[test]
    fn a_killed_daemon_exits_like_a_shell_reports_it() {
        // Reaped by `Parent::wait`'s waitpid, as the daemon would be.
        #[allow(clippy::zombie_processes)]
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let (parent, write) = parent_of(&child);
        drop(write);
        child.kill().unwrap();
        let outcome = parent.wait().unwrap();
        assert_eq!(outcome, StartUp::Killed(libc::SIGKILL));
        assert_eq!(outcome.exit_code(), 137);
    }

    #[test]
    fn wait_statuses() {
        assert_eq!(StartUp::from_wait_status(0), StartUp::Exited(0));
        assert_eq!(StartUp::from_wait_status(1 << 8), StartUp::Exited(1));
        assert_eq!(StartUp::from_wait_status(64 << 8), StartUp::Exited(64));
        assert_eq!(
            StartUp::from_wait_status(libc::SIGTERM),
            StartUp::Killed(libc::SIGTERM)
        );
        assert_eq!(StartUp::Killed(libc::SIGTERM).exit_code(), 143);
        assert_eq!(StartUp::Serving.exit_code(), 0);
    }

    #[test]
    fn fork_refuses_a_process_with_threads() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || stopped.recv());
        let refused = match fork(false) {
            Err(err) => err.to_string(),
            Ok(Forked::Daemon(_)) => {
                // SAFETY: _exit ends the forked copy of the test process at once, running
                // nothing of the harness's that its missing threads could deadlock.
                unsafe { libc::_exit(0) }
            }
            Ok(Forked::Parent(_)) => panic!("forked with another thread running"),
        };
        assert!(refused.contains("threads running"), "{refused}");
        stop.send(()).unwrap();
        other.join().unwrap().unwrap();
    }

    #[test]
    fn thread_count_reads_proc() {
        assert!(thread_count().unwrap() >= 1);
    }
}
