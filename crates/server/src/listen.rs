//! Listening sockets, the port file, and giving up root: everything that happens between
//! reading the configuration and serving the first client.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};
use std::path::Path;

use socket2::{Domain, Protocol, Socket, Type};

use crate::ServerError;
use crate::config::{Config, Security, TcpListen};

/// One configured address, bound once per executor: `fds[i]` is executor `i`'s listening
/// socket, handed to it as a raw descriptor. All of them share the address through
/// `SO_REUSEPORT`, so the kernel spreads incoming connections over the executors and no core
/// hands a connection to another.
#[derive(Debug)]
pub struct BoundTcp {
    /// The address as bound (with the port the kernel chose, for port 0).
    pub addr: SocketAddr,
    pub fds: Vec<RawFd>,
    /// Plaintext or TLS, from the `-l` entry.
    pub security: Security,
}

fn bind_one(addr: SocketAddr, backlog: u32) -> io::Result<(RawFd, SocketAddr)> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    // Every executor binds its own socket on the same address; the kernel spreads accepts.
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    let bound = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listening socket has no inet address"))?;
    Ok((socket.into_raw_fd(), bound))
}

/// Binds `listen` once per executor. With port 0 the first socket's ephemeral port is used
/// for the others, so all of them share one address.
fn bind_copies(listen: &TcpListen, backlog: u32, executors: usize) -> io::Result<BoundTcp> {
    let (fd, addr) = bind_one(listen.addr, backlog)?;
    let mut bound = BoundTcp {
        addr,
        fds: vec![fd],
        security: listen.security,
    };
    for _ in 1..executors {
        match bind_one(addr, backlog) {
            Ok((fd, _)) => bound.fds.push(fd),
            Err(err) => {
                close_all(&bound);
                return Err(err);
            }
        }
    }
    Ok(bound)
}

fn close_all(bound: &BoundTcp) {
    for &fd in &bound.fds {
        // SAFETY: `fd` was returned by `into_raw_fd` above and is owned by nobody else.
        unsafe { libc::close(fd) };
    }
}

/// Binds every configured TCP address, once per executor. An optional address (half of the
/// default loopback pair) that cannot be bound is logged and skipped, unless nothing at all
/// could be bound.
pub fn bind_tcp(config: &Config, executors: usize) -> Result<Vec<BoundTcp>, ServerError> {
    let mut bound = Vec::new();
    let mut skipped = Vec::new();
    for listen in &config.tcp {
        match bind_copies(listen, config.backlog, executors) {
            Ok(socket) => bound.push(socket),
            Err(err) if listen.optional => {
                log::warn!("not listening on {}: {err}", listen.addr);
                skipped.push((listen.addr, err));
            }
            Err(err) => {
                return Err(ServerError::Bind {
                    addr: listen.addr.to_string(),
                    source: err,
                });
            }
        }
    }
    if bound.is_empty()
        && let Some((addr, source)) = skipped.into_iter().next()
    {
        return Err(ServerError::Bind {
            addr: addr.to_string(),
            source,
        });
    }
    Ok(bound)
}

/// memcached's `MEMCACHED_PORT_FILENAME`: one `TCP INET: <port>` (or `INET6`) line per
/// listener, written to a `.lck` file first and renamed, so a reader never sees half of it.
pub fn write_port_file(path: &Path, bound: &[BoundTcp]) -> io::Result<()> {
    let mut text = String::new();
    for socket in bound {
        let family = if socket.addr.is_ipv6() {
            "INET6"
        } else {
            "INET"
        };
        text.push_str(&format!("TCP {family}: {}\n", socket.addr.port()));
    }
    let mut temp = path.as_os_str().to_owned();
    temp.push(".lck");
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, path)
}

/// `-P`: this process's id and a newline, as memcached writes it.
pub fn write_pid_file(path: &Path) -> io::Result<()> {
    std::fs::write(path, format!("{}\n", std::process::id()))
}

/// Removes the pid file at a clean stop, if it still names this process (another instance
/// may have been started with the same file since). A failure (the directory is not writable
/// by the unprivileged user) is logged: the stale file names a process that no longer runs.
pub fn remove_pid_file(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .is_ok_and(|text| text.trim() == std::process::id().to_string());
    if ours && let Err(err) = std::fs::remove_file(path) {
        log::warn!("cannot remove the pid file {}: {err}", path.display());
    }
}

/// memcached refuses to run as root unless told which user to become.
pub fn check_root(config: &Config) -> Result<(), ServerError> {
    // SAFETY: getuid/geteuid cannot fail and touch no memory.
    let root = unsafe { libc::getuid() == 0 || libc::geteuid() == 0 };
    if root && config.run_as.is_none() {
        return Err(ServerError::Usage(
            "can't run as root without the -u switch".into(),
        ));
    }
    Ok(())
}

/// Becomes `user` (its uid, primary gid, and no supplementary groups) if running as root.
pub fn drop_privileges(user: &str) -> Result<(), ServerError> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let name = std::ffi::CString::new(user)
        .map_err(|_| ServerError::Usage(format!("invalid user name {user:?}")))?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the two fields
    // we need before any other call could overwrite it, and nothing else here calls getpw*.
    let (uid, gid) = unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        if entry.is_null() {
            return Err(ServerError::Usage(format!(
                "can't find the user {user} to switch to"
            )));
        }
        ((*entry).pw_uid, (*entry).pw_gid)
    };
    // SAFETY: plain system calls on integers; glibc applies them to every thread.
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
    };
    if failed {
        return Err(ServerError::Privileges(io::Error::last_os_error()));
    }
    log::info!("running as {user} (uid {uid}, gid {gid})");
    Ok(())
}
