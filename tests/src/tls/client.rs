//! A blocking OpenSSL client with bounded reads, as the tests' TLS peer: trusts the test CA,
//! verifies the server's name, optionally presents the client certificate or caps the
//! protocol version.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use openssl::ssl::{
    ErrorCode, SslConnector, SslFiletype, SslMethod, SslStream, SslVerifyMode, SslVersion,
};

use crate::Server;
use crate::io::{End, REPLY_TIMEOUT, Reply};
use crate::report::escape;
use crate::server::SOCKET_TIMEOUT;
use crate::tls::{Issued, Pki, parse_stats};

const READ_CHUNK_BYTES: usize = 64 * 1024;

/// How a test client is set up; [`ClientConfig::connect`] opens a connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig<'p> {
    pki: &'p Pki,
    /// The client certificate presented, if any.
    cert: Option<&'p Issued>,
    max_version: Option<SslVersion>,
}

impl<'p> ClientConfig<'p> {
    /// No client certificate, every protocol version the library allows.
    pub fn new(pki: &'p Pki) -> Self {
        ClientConfig {
            pki,
            cert: None,
            max_version: None,
        }
    }

    /// Presents the client certificate.
    pub fn with_cert(mut self) -> Self {
        self.cert = Some(&self.pki.client);
        self
    }

    /// Presents `issued` (signed by the PKI's CA) as the client certificate.
    pub fn with_issued(mut self, issued: &'p Issued) -> Self {
        self.cert = Some(issued);
        self
    }

    /// Offers no protocol version above `version`.
    pub fn max_version(mut self, version: SslVersion) -> Self {
        self.max_version = Some(version);
        self
    }

    pub fn connector(&self) -> SslConnector {
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_ca_file(&self.pki.ca.cert_path).unwrap();
        b.set_verify(SslVerifyMode::PEER);
        if let Some(issued) = self.cert {
            b.set_certificate_file(&issued.cert_path, SslFiletype::PEM)
                .unwrap();
            b.set_private_key_file(&issued.key_path, SslFiletype::PEM)
                .unwrap();
        }
        if let Some(v) = self.max_version {
            b.set_max_proto_version(Some(v)).unwrap();
        }
        b.build()
    }

    /// Connects to 127.0.0.1:`port` and completes the handshake (bounded by the socket
    /// timeouts). `Err` says why it failed.
    pub fn connect(&self, port: u16) -> Result<TlsConn, String> {
        self.attempt_connect(port).map_err(|failure| failure.reason)
    }

    fn attempt_connect(&self, port: u16) -> Result<TlsConn, Failure> {
        let tcp = tcp_connect(port).map_err(|e| Failure {
            reason: format!("tcp connect to {port}: {e}"),
            timed_out: matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
        })?;
        let ssl = self
            .connector()
            .configure()
            .unwrap()
            .into_ssl("127.0.0.1")
            .unwrap();
        let mut stream = SslStream::new(ssl, tcp).unwrap();
        stream.connect().map_err(|e| Failure {
            timed_out: matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE)
                || e.io_error().is_some_and(|io| {
                    matches!(
                        io.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    )
                }),
            reason: format!("TLS handshake with {port}: {e}"),
        })?;
        Ok(TlsConn {
            stream,
            pending: Vec::new(),
        })
    }

    /// [`ClientConfig::try_version`] on `server`'s first listener; panics with the reason
    /// and the server's output when it fails.
    pub fn open(&self, server: &Server) -> TlsConn {
        self.try_version(server.port()).unwrap_or_else(|e| {
            panic!(
                "{}: no TLS connection: {e}\n{}",
                server.kind().name(),
                server.diagnostics()
            )
        })
    }

    /// Connects, sends `version` and expects `VERSION ...`: `Err` with what happened
    /// instead. With TLS 1.3 a refused client certificate shows here, not at connect.
    pub fn try_version(&self, port: u16) -> Result<TlsConn, String> {
        self.attempt_version(port).map_err(|failure| failure.reason)
    }

    /// Expects the server to refuse this client on `port`: a failed handshake, an alert or
    /// a close, not a timeout. Returns how it was refused; panics, saying `what`, otherwise.
    pub fn expect_refused(&self, port: u16, what: &str) -> String {
        match self.attempt_version(port) {
            Ok(conn) => panic!("{what}: the client was served ({})", conn.version()),
            Err(Failure {
                reason,
                timed_out: true,
            }) => panic!("{what}: timed out instead of being refused: {reason}"),
            Err(Failure { reason, .. }) => reason,
        }
    }

    fn attempt_version(&self, port: u16) -> Result<TlsConn, Failure> {
        let mut conn = self.attempt_connect(port)?;
        if let Err(e) = conn.send(b"version\r\n") {
            return Err(Failure {
                reason: format!("sending version: {e}"),
                timed_out: matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ),
            });
        }
        let reply = conn.read_until(b"\r\n", REPLY_TIMEOUT);
        if reply.end == End::Terminator && reply.bytes.starts_with(b"VERSION ") {
            Ok(conn)
        } else {
            Err(Failure {
                reason: format!("version got {} then {}", escape(&reply.bytes), reply.end),
                timed_out: reply.end == End::Timeout,
            })
        }
    }
}

/// Why a client did not get served.
#[derive(Debug)]
struct Failure {
    reason: String,
    /// The bound passed: the server neither served nor refused.
    timed_out: bool,
}

/// A TCP connection to 127.0.0.1:`port` with [`SOCKET_TIMEOUT`]s and no Nagle delay.
pub fn tcp_connect(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, SOCKET_TIMEOUT)?;
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// An established TLS client connection with bounded reads.
#[derive(Debug)]
pub struct TlsConn {
    stream: SslStream<TcpStream>,
    pending: Vec<u8>,
}

impl TlsConn {
    /// Writes `bytes` (one `SSL_write` per call of `write`, records of up to 16 KB).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// The serial number of the certificate the server presented.
    pub fn peer_serial(&self) -> u32 {
        let cert = self
            .stream
            .ssl()
            .peer_certificate()
            .expect("the server presented no certificate");
        let serial = cert.serial_number().to_bn().unwrap();
        serial.to_dec_str().unwrap().parse().unwrap()
    }

    /// The negotiated protocol, e.g. `TLSv1.3`.
    pub fn version(&self) -> &'static str {
        self.stream.ssl().version_str()
    }

    /// Reads until `terminator` arrives (kept bytes after it for the next read), the peer
    /// closes, or `bound` passes.
    pub fn read_until(&mut self, terminator: &[u8], bound: Duration) -> Reply {
        let mut buf = std::mem::take(&mut self.pending);
        let deadline = Instant::now() + bound;
        loop {
            if let Some(at) = memchr::memmem::find(&buf, terminator) {
                self.pending = buf.split_off(at + terminator.len());
                return Reply {
                    bytes: buf,
                    end: End::Terminator,
                };
            }
            if let Some(end) = self.read_some(&mut buf, deadline) {
                return Reply { bytes: buf, end };
            }
        }
    }

    /// Reads until the peer closes (or fails the connection) or `bound` passes.
    pub fn read_to_eof(&mut self, bound: Duration) -> Reply {
        let mut buf = std::mem::take(&mut self.pending);
        let deadline = Instant::now() + bound;
        loop {
            if let Some(end) = self.read_some(&mut buf, deadline) {
                return Reply { bytes: buf, end };
            }
        }
    }

    /// Sends `request` and reads until `terminator`; `Err` with what arrived otherwise.
    pub fn try_roundtrip(&mut self, request: &[u8], terminator: &[u8]) -> Result<Vec<u8>, String> {
        self.send(request)
            .map_err(|e| format!("sending {}: {e}", escape(request)))?;
        let reply = self.read_until(terminator, REPLY_TIMEOUT);
        if reply.end == End::Terminator {
            Ok(reply.bytes)
        } else {
            Err(format!(
                "request {} expected a reply ending {}, got {} then {}",
                escape(request),
                escape(terminator),
                escape(&reply.bytes),
                reply.end
            ))
        }
    }

    /// [`TlsConn::try_roundtrip`] that panics on failure.
    pub fn roundtrip(&mut self, request: &[u8], terminator: &[u8]) -> Vec<u8> {
        self.try_roundtrip(request, terminator)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `stats` (or `stats settings` with `which = "settings"`) as a name -> value map.
    pub fn stats(&mut self, which: &str) -> BTreeMap<String, String> {
        let request = if which.is_empty() {
            "stats\r\n".to_string()
        } else {
            format!("stats {which}\r\n")
        };
        parse_stats(&self.roundtrip(request.as_bytes(), b"END\r\n"))
    }

    /// One numeric line of `stats`; panics when it is missing or not a number.
    pub fn stat_number(&mut self, name: &str) -> u64 {
        let stats = self.stats("");
        stats
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no numeric {name} in stats: {stats:?}"))
    }

    fn read_some(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> Option<End> {
        let now = Instant::now();
        if now >= deadline {
            return Some(End::Timeout);
        }
        let remaining = (deadline - now).max(Duration::from_millis(1));
        if let Err(e) = self.stream.get_ref().set_read_timeout(Some(remaining)) {
            return Some(End::Error(e.kind()));
        }
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        match self.stream.read(&mut chunk) {
            Ok(0) => Some(End::Eof),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                None
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    (Instant::now() >= deadline).then_some(End::Timeout)
                }
                io::ErrorKind::Interrupted => None,
                io::ErrorKind::ConnectionReset => Some(End::Reset),
                // A TLS alert or a broken record from the server ends the connection too.
                kind => Some(End::Error(kind)),
            },
        }
    }
}
