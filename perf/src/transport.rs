//! Connections to the server: plaintext TCP or TLS through OpenSSL, established (and
//! authenticated, when asked) blocking and then switched to non-blocking for the poller.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslStream, SslVerifyMode};

use crate::auth::AsciiAuth;
use crate::config::{Config, TlsConfig, Verify};
use crate::error::Error;

/// An established connection.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }

    /// Whether a read that returned less than it was offered proves the socket drained, so
    /// that the edge-triggered poller will report the next bytes (epoll(7) says so for stream
    /// sockets). Not for TLS: OpenSSL returns one record per read whatever is left behind.
    pub(crate) fn short_read_drains(&self) -> bool {
        matches!(self, Stream::Plain(_))
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }

    /// Closes the connection as a polite client does: a TLS close_notify first (sent, not
    /// waited for), then the socket.
    pub(crate) fn close(self) {
        if let Stream::Tls(mut tls) = self {
            // The connection ends either way; a server that is gone already is no error here.
            let _ = tls.shutdown();
        }
    }
}

// With a non-blocking socket OpenSSL's want-read and want-write both surface as `WouldBlock`;
// the driver copes by retrying reads and writes on every readiness event of either kind.
impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// Everything needed to open connections to one server, shared by the client threads.
#[derive(Debug)]
pub(crate) struct Connector {
    server: String,
    addr: SocketAddr,
    tls: Option<Tls>,
    auth: Option<AsciiAuth>,
    timeout: Duration,
}

#[derive(Debug)]
struct Tls {
    connector: SslConnector,
    server_name: String,
    verify: bool,
}

impl Connector {
    pub(crate) fn new(config: &Config) -> Result<Connector, Error> {
        let resolve_error = |source| Error::Resolve {
            server: config.server.clone(),
            source,
        };
        let addr = config
            .server
            .to_socket_addrs()
            .map_err(resolve_error)?
            .next()
            .ok_or_else(|| resolve_error(io::ErrorKind::NotFound.into()))?;
        let tls = match &config.tls {
            Some(tls) => Some(Tls::new(tls, config.host())?),
            None => None,
        };
        Ok(Connector {
            server: config.server.clone(),
            addr,
            tls,
            auth: config.auth.clone(),
            timeout: config.io_timeout,
        })
    }

    /// Connects (shakes hands, authenticates) within the I/O timeout; returns a
    /// non-blocking stream.
    pub(crate) fn connect(&self) -> Result<Stream, Error> {
        let stream = self.connect_blocking()?;
        stream
            .tcp()
            .set_nonblocking(true)
            .map_err(|source| Error::Connect {
                server: self.server.clone(),
                source,
            })?;
        Ok(stream)
    }

    /// [`Connector::connect`], leaving the stream blocking with the I/O timeout on its reads
    /// and writes.
    pub(crate) fn connect_blocking(&self) -> Result<Stream, Error> {
        let connect_error = |source| Error::Connect {
            server: self.server.clone(),
            source,
        };
        let tcp = TcpStream::connect_timeout(&self.addr, self.timeout).map_err(connect_error)?;
        tcp.set_nodelay(true).map_err(connect_error)?;
        tcp.set_read_timeout(Some(self.timeout))
            .map_err(connect_error)?;
        tcp.set_write_timeout(Some(self.timeout))
            .map_err(connect_error)?;
        let mut stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(tls) => Stream::Tls(Box::new(tls.handshake(tcp, &self.server)?)),
        };
        if let Some(auth) = &self.auth {
            auth.authenticate(&mut stream)
                .map_err(|source| Error::Auth {
                    server: self.server.clone(),
                    source,
                })?;
        }
        Ok(stream)
    }

    /// The `host:port` connected to, for error messages.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }
}

impl Tls {
    fn new(config: &TlsConfig, host: &str) -> Result<Tls, Error> {
        let setup = |what: &str| {
            let what = what.to_string();
            move |source| Error::TlsSetup { what, source }
        };
        let mut builder =
            SslConnector::builder(SslMethod::tls_client()).map_err(setup("context"))?;
        let verify = match &config.verify {
            Verify::Ca(path) => {
                builder
                    .set_ca_file(path)
                    .map_err(setup(&format!("CA file {}", path.display())))?;
                true
            }
            Verify::SystemRoots => true,
            Verify::Insecure => {
                builder.set_verify(SslVerifyMode::NONE);
                false
            }
        };
        if let Some(cert) = &config.cert {
            builder
                .set_certificate_chain_file(cert)
                .map_err(setup(&format!("certificate {}", cert.display())))?;
            let key = config.key.as_ref().unwrap_or(cert);
            builder
                .set_private_key_file(key, SslFiletype::PEM)
                .map_err(setup(&format!("private key {}", key.display())))?;
            builder
                .check_private_key()
                .map_err(setup("the private key does not match the certificate"))?;
        }
        Ok(Tls {
            connector: builder.build(),
            server_name: config
                .server_name
                .clone()
                .unwrap_or_else(|| host.to_string()),
            verify,
        })
    }

    fn handshake(&self, tcp: TcpStream, server: &str) -> Result<SslStream<TcpStream>, Error> {
        let handshake_error = |message: String| Error::Handshake {
            server: server.to_string(),
            message,
        };
        let mut session = self
            .connector
            .configure()
            .map_err(|e| handshake_error(e.to_string()))?;
        session.set_verify_hostname(self.verify);
        session
            .connect(&self.server_name, tcp)
            .map_err(|e| handshake_error(e.to_string()))
    }
}
