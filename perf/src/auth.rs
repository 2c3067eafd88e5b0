//! memcached's ASCII authentication (`-Y`) from the client's side: right after connecting (and
//! after the TLS handshake), one `set` whose data block is `<user> <password>`, answered
//! `STORED`. Until then a server started with `-Y` answers every command `CLIENT_ERROR
//! unauthenticated`, so the generator authenticates each connection before it counts anything
//! on it, and waits for the answer before sending more (memcached 1.6.18 answers only the first
//! of the requests pipelined before authentication).
//!
//! # Format
//! ```text
//! set <any key> 0 0 <bytes>\r\n<user> <password>\r\n   ->   STORED\r\n
//! CLIENT_ERROR authentication failure\r\n                (a wrong user or password)
//! ```

use std::io::{self, Read, Write};

/// The key of the authenticating `set`: the server ignores it and stores nothing.
const AUTH_KEY: &str = "auth";
/// Longest `<user> <password>` the generator sends: well under both servers' token limits
/// (rampart refuses 4 KiB and more at once).
pub const MAX_AUTH_TOKEN_BYTES: usize = 1024;
/// Longest reply line read while authenticating: `STORED` or a `CLIENT_ERROR` line.
const MAX_AUTH_REPLY_BYTES: usize = 1024;
const READ_CHUNK_BYTES: usize = 256;

/// The credentials every connection authenticates with (`--user`, `--password`).
#[derive(Clone, PartialEq, Eq)]
pub struct AsciiAuth {
    pub user: String,
    pub password: String,
}

// Not derived: the password stays out of logs and error messages.
impl std::fmt::Debug for AsciiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsciiAuth")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Why authenticating a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// The server refused, or answered something else than `STORED`.
    #[error("the server answered {0:?}")]
    Refused(String),
    #[error("the server closed the connection before answering")]
    Closed,
    #[error("the server's answer is no reply line")]
    Unparsable,
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl AsciiAuth {
    /// Why these credentials cannot be sent as one token, if they cannot: the server splits
    /// the token at its first space, and a line break or control byte would end it early.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        let bad = |s: &str| {
            s.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        };
        if self.user.is_empty() || self.password.is_empty() {
            Some("the user and the password may not be empty")
        } else if bad(&self.user) || bad(&self.password) {
            Some("the user and the password may not contain spaces or control bytes")
        } else if self.user.len() + 1 + self.password.len() > MAX_AUTH_TOKEN_BYTES {
            Some("the user and the password are too long")
        } else {
            None
        }
    }

    /// Appends the authenticating `set`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let token_len = self.user.len() + 1 + self.password.len();
        out.extend_from_slice(format!("set {AUTH_KEY} 0 0 {token_len}\r\n").as_bytes());
        out.extend_from_slice(self.user.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.password.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// Authenticates a blocking stream (its read timeout bounds the wait): sends the `set`,
    /// reads one line, and expects `STORED` and nothing after it.
    pub(crate) fn authenticate<S: Read + Write>(&self, stream: &mut S) -> Result<(), AuthFailure> {
        let mut request = Vec::new();
        self.encode(&mut request);
        stream.write_all(&request)?;
        stream.flush()?;
        let mut reply = Vec::new();
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        // Each turn reads at least one byte or leaves; the length bound ends it.
        let line_end = loop {
            if let Some(end) = memchr::memmem::find(&reply, b"\r\n") {
                break end;
            }
            if reply.len() > MAX_AUTH_REPLY_BYTES {
                return Err(AuthFailure::Unparsable);
            }
            match stream.read(&mut chunk) {
                Ok(0) => return Err(AuthFailure::Closed),
                Ok(n) => reply.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(AuthFailure::Io(e)),
            }
        };
        if &reply[..] == b"STORED\r\n" {
            return Ok(());
        }
        let shown = String::from_utf8_lossy(&reply[..line_end]).into_owned();
        Err(AuthFailure::Refused(shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that answers with `reply` and keeps what was written.
    struct Scripted {
        reply: io::Cursor<Vec<u8>>,
        sent: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // Three bytes at a time: the line is reassembled across reads, and bytes after
            // it arrive with its end.
            let few = buf.len().min(3);
            self.reply.read(&mut buf[..few])
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn alice() -> AsciiAuth {
        AsciiAuth {
            user: "alice".into(),
            password: "secret".into(),
        }
    }

    fn exchange(reply: &[u8]) -> (Result<(), AuthFailure>, Vec<u8>) {
        let mut stream = Scripted {
            reply: io::Cursor::new(reply.to_vec()),
            sent: Vec::new(),
        };
        let result = alice().authenticate(&mut stream);
        (result, stream.sent)
    }

    #[test]
    fn the_token_is_one_set_of_user_space_password() {
        let (result, sent) = exchange(b"STORED\r\n");
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(sent, b"set auth 0 0 12\r\nalice secret\r\n");
    }

    #[test]
    fn anything_but_stored_is_a_failure_that_quotes_the_line() {
        let (result, _) = exchange(b"CLIENT_ERROR authentication failure\r\n");
        let Err(AuthFailure::Refused(line)) = result else {
            panic!("{result:?}");
        };
        assert_eq!(line, "CLIENT_ERROR authentication failure");
        assert!(matches!(
            exchange(b"STORED\r\nEND\r\n").0,
            Err(AuthFailure::Refused(_))
        ));
        assert!(matches!(exchange(b"STOR").0, Err(AuthFailure::Closed)));
        assert!(matches!(
            exchange(&[b'x'; 2000]).0,
            Err(AuthFailure::Unparsable)
        ));
    }

    #[test]
    fn credentials_that_cannot_be_one_token_are_refused() {
        assert_eq!(alice().problem(), None);
        let with = |user: &str, password: &str| AsciiAuth {
            user: user.into(),
            password: password.into(),
        };
        assert!(with("", "x").problem().is_some());
        assert!(with("a", "").problem().is_some());
        assert!(with("a b", "x").problem().is_some());
        assert!(with("a", "x\r\n").problem().is_some());
        assert!(
            with("a", &"x".repeat(MAX_AUTH_TOKEN_BYTES))
                .problem()
                .is_some()
        );
        assert!(!format!("{:?}", alice()).contains("secret"));
    }
}
