//! The process's table of open client connections, for `stats conns`.
//!
//! Each TCP connection registers itself once it is set up (after its TLS handshake) and is
//! removed when its task ends; the table is touched per connection, never per request. Per
//! turn a connection only stores its clock and state into its own entry (relaxed atomics).
//! Lines are memcached's (`<fd>:addr`, `<fd>:listen_addr`, `<fd>:state`,
//! `<fd>:secs_since_last_cmd`), plus, for TLS connections, `<fd>:tls_version`,
//! `<fd>:tls_cipher` and the verified client certificate's `<fd>:peer_cn` and `<fd>:peer_san`,
//! `<fd>:psk_identity` for a pre-shared key, for a unix socket's client `<fd>:peer_uid` and
//! `<fd>:peer_gid` (`SO_PEERCRED`), and, once a connection has a user (`-Y`, `-S`,
//! `-o ssl_cert_user`), `<fd>:user`. A unix socket's client is `unix:` and its listener
//! `unix:<path>`, as memcached writes them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rampart_proto::text::reply;
use rampart_tls::PeerIdentity;

/// What `stats conns` says about a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsDescription {
    pub version: &'static str,
    pub cipher: &'static str,
    pub peer: Option<PeerIdentity>,
    /// The pre-shared key's identity, when the client used one.
    pub psk: Option<String>,
}

/// What a connection is listed with, fixed for its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// `tcp:<ip>:<port>` of the client, `unix:` for a unix socket's.
    pub addr: String,
    /// `tcp:<ip>:<port>` of the listener that accepted it, `unix:<path>`.
    pub listen_addr: String,
    pub tls: Option<TlsDescription>,
    /// A unix socket client's uid and gid.
    pub peer_cred: Option<(u32, u32)>,
}

/// One open connection.
#[derive(Debug)]
pub struct ConnEntry {
    listing: Listing,
    /// Unix time of the last turn that ran requests.
    last_cmd: AtomicU64,
    /// Waiting for input (`conn_waiting`) rather than running requests (`conn_parse_cmd`).
    waiting: AtomicBool,
    /// The authenticated user, when there is one.
    user: Mutex<Option<Box<str>>>,
}

impl ConnEntry {
    /// A turn with requests began at `now`.
    pub fn working(&self, now: u64) {
        self.last_cmd.store(now, Ordering::Relaxed);
        self.waiting.store(false, Ordering::Relaxed);
    }

    /// The connection is about to wait for input.
    pub fn waiting(&self) {
        self.waiting.store(true, Ordering::Relaxed);
    }

    /// The connection authenticated as `user` (or lost its authentication: `None`).
    pub fn set_user(&self, user: Option<&str>) {
        *self.user.lock().unwrap_or_else(PoisonError::into_inner) = user.map(Into::into);
    }
}

/// Every open client connection of the process, by socket, and the listening sockets.
#[derive(Debug, Default)]
pub struct ConnTable {
    entries: Mutex<BTreeMap<RawFd, Arc<ConnEntry>>>,
    /// Listening sockets: their address and when they started listening.
    listeners: Mutex<BTreeMap<RawFd, (String, u64)>>,
}

/// Keeps a connection in the table until dropped.
#[derive(Debug)]
pub struct Listed<'a> {
    table: &'a ConnTable,
    fd: RawFd,
    pub entry: Arc<ConnEntry>,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        self.table.lock().remove(&self.fd);
    }
}

/// memcached's form of a socket address.
pub fn tcp_addr(addr: std::net::SocketAddr) -> String {
    format!("tcp:{addr}")
}

impl ConnTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<RawFd, Arc<ConnEntry>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lists the connection on socket `fd` until the returned guard is dropped.
    pub fn insert(&self, fd: RawFd, listing: Listing, now: u64) -> Listed<'_> {
        let entry = Arc::new(ConnEntry {
            listing,
            last_cmd: AtomicU64::new(now),
            waiting: AtomicBool::new(true),
            user: Mutex::new(None),
        });
        self.lock().insert(fd, Arc::clone(&entry));
        Listed {
            table: self,
            fd,
            entry,
        }
    }

    /// Lists a listening socket (`addr` in memcached's form: `tcp:host:port`, `unix:path`),
    /// shown by `stats conns` as memcached shows it, `conn_listening`.
    pub fn insert_listener(&self, fd: RawFd, addr: String, now: u64) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(fd, (addr, now));
    }

    /// The `stats conns` lines of every listening socket and listed connection, in socket
    /// order as memcached writes them (without the closing `END`).
    pub fn write_stats(&self, now: u64, out: &mut Vec<u8>) {
        let entries: Vec<(RawFd, Arc<ConnEntry>)> = self
            .lock()
            .iter()
            .map(|(fd, entry)| (*fd, Arc::clone(entry)))
            .collect();
        let listeners: Vec<(RawFd, (String, u64))> = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(fd, listener)| (*fd, listener.clone()))
            .collect();
        let mut name = String::new();
        let mut stat = |out: &mut Vec<u8>, fd: RawFd, field: &str, value: &[u8]| {
            name.clear();
            let _ = write!(name, "{fd}:{field}");
            reply::stat(out, &name, value);
        };
        let mut listeners = listeners.into_iter().peekable();
        for (fd, entry) in entries {
            while let Some((listen_fd, (addr, since))) =
                listeners.next_if(|(listen_fd, _)| *listen_fd < fd)
            {
                write_listener(&mut stat, out, listen_fd, &addr, now.saturating_sub(since));
            }
            let listing = &entry.listing;
            stat(out, fd, "addr", listing.addr.as_bytes());
            stat(out, fd, "listen_addr", listing.listen_addr.as_bytes());
            let state = if entry.waiting.load(Ordering::Relaxed) {
                "conn_waiting"
            } else {
                "conn_parse_cmd"
            };
            stat(out, fd, "state", state.as_bytes());
            let idle = now.saturating_sub(entry.last_cmd.load(Ordering::Relaxed));
            stat(out, fd, "secs_since_last_cmd", idle.to_string().as_bytes());
            if let Some((uid, gid)) = listing.peer_cred {
                stat(out, fd, "peer_uid", uid.to_string().as_bytes());
                stat(out, fd, "peer_gid", gid.to_string().as_bytes());
            }
            if let Some(tls) = &listing.tls {
                stat(out, fd, "tls_version", tls.version.as_bytes());
                stat(out, fd, "tls_cipher", tls.cipher.as_bytes());
                if let Some(peer) = &tls.peer {
                    if let Some(cn) = &peer.common_name {
                        stat(out, fd, "peer_cn", cn.as_bytes());
                    }
                    let sans = subject_alt_names(peer);
                    if !sans.is_empty() {
                        stat(out, fd, "peer_san", sans.as_bytes());
                    }
                }
                if let Some(psk) = &tls.psk {
                    stat(out, fd, "psk_identity", psk.as_bytes());
                }
            }
            let user = entry
                .user
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(user) = user {
                stat(out, fd, "user", user.as_bytes());
            }
        }
        for (listen_fd, (addr, since)) in listeners {
            write_listener(&mut stat, out, listen_fd, &addr, now.saturating_sub(since));
        }
    }
}

fn write_listener(
    stat: &mut impl FnMut(&mut Vec<u8>, RawFd, &str, &[u8]),
    out: &mut Vec<u8>,
    fd: RawFd,
    addr: &str,
    secs: u64,
) {
    stat(out, fd, "addr", addr.as_bytes());
    stat(out, fd, "state", b"conn_listening");
    stat(out, fd, "secs_since_last_cmd", secs.to_string().as_bytes());
}

/// The SANs in OpenSSL's printed form: `DNS:a,IP:127.0.0.1,URI:...,email:...`.
fn subject_alt_names(peer: &PeerIdentity) -> String {
    let names = peer
        .dns_names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .chain(peer.ip_addresses.iter().map(|ip| format!("IP:{ip}")))
        .chain(peer.uris.iter().map(|u| format!("URI:{u}")))
        .chain(peer.emails.iter().map(|e| format!("email:{e}")));
    names.collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(addr: &str, listen_addr: &str, tls: Option<TlsDescription>) -> Listing {
        Listing {
            addr: addr.into(),
            listen_addr: listen_addr.into(),
            tls,
            peer_cred: None,
        }
    }

    #[test]
    fn lists_connections_while_they_are_open() {
        let table = ConnTable::default();
        let plain = table.insert(
            7,
            tcp("tcp:127.0.0.1:5000", "tcp:127.0.0.1:11211", None),
            100,
        );
        {
            let peer = PeerIdentity {
                common_name: Some("client-a".into()),
                dns_names: vec!["a.example".into()],
                ip_addresses: vec![
                    "127.0.0.1"
                        .parse()
                        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
                ],
                ..PeerIdentity::default()
            };
            let tls = TlsDescription {
                version: "TLSv1.3",
                cipher: "TLS_AES_256_GCM_SHA384",
                peer: Some(peer),
                psk: None,
            };
            let _tls = table.insert(
                9,
                tcp("tcp:127.0.0.1:5001", "tcp:127.0.0.1:11212", Some(tls)),
                100,
            );
            let unix = Listing {
                addr: "unix:".into(),
                listen_addr: "unix:/run/rampart.sock".into(),
                tls: None,
                peer_cred: Some((1000, 100)),
            };
            let _unix = table.insert(11, unix, 100);
            plain.entry.working(103);
            let mut out = Vec::new();
            table.write_stats(105, &mut out);
            let text = String::from_utf8_lossy(&out);
            assert_eq!(
                text,
                "STAT 7:addr tcp:127.0.0.1:5000\r\n\
                 STAT 7:listen_addr tcp:127.0.0.1:11211\r\n\
                 STAT 7:state conn_parse_cmd\r\n\
                 STAT 7:secs_since_last_cmd 2\r\n\
                 STAT 9:addr tcp:127.0.0.1:5001\r\n\
                 STAT 9:listen_addr tcp:127.0.0.1:11212\r\n\
                 STAT 9:state conn_waiting\r\n\
                 STAT 9:secs_since_last_cmd 5\r\n\
                 STAT 9:tls_version TLSv1.3\r\n\
                 STAT 9:tls_cipher TLS_AES_256_GCM_SHA384\r\n\
                 STAT 9:peer_cn client-a\r\n\
                 STAT 9:peer_san DNS:a.example,IP:127.0.0.1\r\n\
                 STAT 11:addr unix:\r\n\
                 STAT 11:listen_addr unix:/run/rampart.sock\r\n\
                 STAT 11:state conn_waiting\r\n\
                 STAT 11:secs_since_last_cmd 5\r\n\
                 STAT 11:peer_uid 1000\r\n\
                 STAT 11:peer_gid 100\r\n"
            );
        }
        drop(plain);
        let mut out = Vec::new();
        table.write_stats(105, &mut out);
        assert!(out.is_empty());
    }
}
