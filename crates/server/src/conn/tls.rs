//! A connection's TLS: the socket side of a [`TlsSession`].
//!
//! Each socket read feeds the session everything that arrived and decrypts everything it can
//! (OpenSSL's buffered records included), so pipelined requests never wait on a read that
//! will not come; each turn's replies are handed to the session's batch writer together and
//! the resulting records leave in one write. A request therefore costs one read and one
//! write, and the handshake's own messages are written as soon as the session produces them.

use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use rampart_tls::{Next, PeerIdentity, TlsSession};

use super::input::{InputBuffer, READ_BUF_BYTES};
use super::{ReadBuffers, Transport, Wait, before, read_or_release};

/// The socket side of one TLS session. Socket reads land in the session's own ciphertext
/// room: no copy, and no second ciphertext buffer.
#[derive(Debug)]
pub struct TlsLink {
    session: TlsSession,
    /// The peer sent close_notify: what was decrypted is answered, then nothing more is read.
    peer_closed: bool,
}

/// Why a handshake did not complete.
#[derive(Debug)]
pub enum HandshakeFailure {
    /// Not finished within `ssl_handshake_timeout`.
    TimedOut,
    /// The peer hung up, or the socket failed.
    Closed,
    /// OpenSSL refused it (already counted by the session).
    Refused(String),
}

impl TlsLink {
    pub fn new(session: TlsSession) -> Self {
        TlsLink {
            session,
            peer_closed: false,
        }
    }

    /// Runs the handshake to completion within `limit`. Requests that arrived with the
    /// client's last handshake flight are left decrypted in `input`.
    pub async fn handshake<S: Transport>(
        &mut self,
        stream: &mut S,
        input: &mut InputBuffer,
        limit: Duration,
    ) -> Result<(), HandshakeFailure> {
        let deadline = Instant::now() + limit;
        // The deadline bounds the writes too: a client that never reads cannot hold it open.
        before(deadline, self.handshake_until(stream, input, deadline))
            .await
            .unwrap_or(Err(HandshakeFailure::TimedOut))
    }

    async fn handshake_until<S: Transport>(
        &mut self,
        stream: &mut S,
        input: &mut InputBuffer,
        deadline: Instant,
    ) -> Result<(), HandshakeFailure> {
        while self.session.is_handshaking() {
            match self.read(stream, input, Wait::Until(deadline)).await {
                Ok(_) if !self.session.is_handshaking() => break,
                // End of stream before the handshake finished.
                Ok(0) => return Err(HandshakeFailure::Closed),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                    return Err(HandshakeFailure::TimedOut);
                }
                Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                    return Err(HandshakeFailure::Refused(err.to_string()));
                }
                Err(_) => return Err(HandshakeFailure::Closed),
            }
        }
        if self.session.is_established() {
            Ok(())
        } else {
            Err(HandshakeFailure::Closed)
        }
    }

    /// The negotiated protocol and cipher.
    pub fn negotiated(&self) -> Option<(&'static str, &'static str)> {
        self.session.negotiated()
    }

    /// The verified client certificate's names.
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.session.peer_identity()
    }

    /// The PSK identity the client authenticated with.
    pub fn psk_identity(&self) -> Option<String> {
        self.session.psk_identity()
    }

    /// Reads from the socket until there is plaintext in `input` (its length is returned),
    /// the handshake advanced, or the stream ended (`Ok(0)`). A TLS failure is
    /// `InvalidData`, after the alert has been written.
    pub async fn read<S: Transport>(
        &mut self,
        stream: &mut S,
        input: &mut InputBuffer,
        wait: Wait,
    ) -> io::Result<usize> {
        if self.peer_closed {
            return Ok(0);
        }
        loop {
            let handshaking = self.session.is_handshaking();
            let mut buffers = TlsBuffers {
                session: &mut self.session,
                input: &mut *input,
            };
            let n = read_or_release(stream, &mut buffers, wait).await?;
            if n == 0 {
                return Ok(0);
            }
            self.session.ciphertext_added(n);
            let mut plaintext_bytes = 0;
            loop {
                let progress = match input.append_with(|plain| self.session.read_plaintext(plain)) {
                    Ok(progress) => progress,
                    Err(err) => {
                        // Refused (and counted by the session): the alert goes out if the
                        // peer is still there to take it.
                        let _ = self.flush(stream).await;
                        return Err(io::Error::new(io::ErrorKind::InvalidData, err));
                    }
                };
                plaintext_bytes += progress.plaintext_bytes;
                // Handshake messages, tickets: whatever the session wants to send.
                self.flush(stream).await?;
                match progress.next {
                    // OpenSSL wanted the socket to take its output first: it has, go on.
                    Next::WantWrite => continue,
                    Next::PeerClosed | Next::Closed => {
                        self.peer_closed = true;
                        return Ok(plaintext_bytes);
                    }
                    Next::WantRead => {
                        // A finished handshake returns even without plaintext, so the caller
                        // learns the peer's identity before the first request runs.
                        if plaintext_bytes > 0 || (handshaking && !self.session.is_handshaking()) {
                            return Ok(plaintext_bytes);
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Encrypts one turn's replies with the batch writer and writes the records.
    pub async fn write<S: Transport>(
        &mut self,
        stream: &mut S,
        mut out: &mut [IoSlice<'_>],
    ) -> io::Result<()> {
        IoSlice::advance_slices(&mut out, 0);
        loop {
            let progress = self
                .session
                .write_plaintext_batch(out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            IoSlice::advance_slices(&mut out, progress.accepted);
            self.flush(stream).await?;
            match progress.blocked {
                None if out.is_empty() => return Ok(()),
                None | Some(Next::WantWrite) => {}
                // Only a renegotiation could make a write wait for input, and it is refused.
                Some(other) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("TLS write stalled waiting for {other:?}"),
                    ));
                }
            }
        }
    }

    /// Gives the read buffers back if nothing is pending in them (see `Link::release_idle`).
    pub fn release_idle(&mut self, input: &mut InputBuffer) {
        let mut buffers = TlsBuffers {
            session: &mut self.session,
            input,
        };
        if buffers.is_idle() {
            buffers.release();
        }
    }

    /// Sends close_notify (best effort) and anything else still pending.
    pub async fn close<S: Transport>(&mut self, stream: &mut S) {
        self.session.shutdown();
        let _ = self.flush(stream).await;
    }

    /// Writes the ciphertext the session has ready.
    async fn flush<S: Transport>(&mut self, stream: &mut S) -> io::Result<()> {
        let pending = self.session.take_ciphertext();
        if pending.is_empty() {
            return Ok(());
        }
        stream.write_all(pending).await?;
        let written = pending.len();
        self.session.consume_ciphertext(written);
        Ok(())
    }
}

/// What a TLS connection reads into (the session's ciphertext room) and gives back while
/// idle.
struct TlsBuffers<'a> {
    session: &'a mut TlsSession,
    input: &'a mut InputBuffer,
}

impl ReadBuffers for TlsBuffers<'_> {
    fn spare(&mut self) -> &mut [u8] {
        self.session.ciphertext_room(READ_BUF_BYTES)
    }

    fn is_idle(&self) -> bool {
        self.input.is_empty() && self.session.is_drained()
    }

    fn release(&mut self) {
        self.session.shrink_idle();
        self.input.release();
    }
}
