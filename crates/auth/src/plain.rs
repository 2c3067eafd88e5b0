//! SASL `PLAIN` (RFC 4616): `[authzid] NUL authcid NUL passwd` in one message.

use thiserror::Error;

/// The longest `PLAIN` message taken (each part is far shorter in practice).
pub const MAX_PLAIN_BYTES: usize = 1024;

/// A parsed `PLAIN` message, borrowing from the request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    pub user: &'a [u8],
    pub password: &'a [u8],
}

impl std::fmt::Debug for PlainMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainMessage")
            .field("user", &String::from_utf8_lossy(self.user))
            .finish_non_exhaustive()
    }
}

/// Why a `PLAIN` message is refused (all answered as an authentication failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PlainError {
    #[error("a PLAIN message is [authzid] NUL authcid NUL password")]
    Shape,
    #[error("a PLAIN message longer than {MAX_PLAIN_BYTES} bytes")]
    TooLong,
    #[error("the authorization identity differs from the authentication identity")]
    OtherIdentity,
    #[error("an empty user name or password")]
    Empty,
}

impl<'a> PlainMessage<'a> {
    pub fn parse(message: &'a [u8]) -> Result<PlainMessage<'a>, PlainError> {
        if message.len() > MAX_PLAIN_BYTES {
            return Err(PlainError::TooLong);
        }
        let mut parts = message.split(|&b| b == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PlainError::Shape);
        };
        if user.is_empty() || password.is_empty() {
            return Err(PlainError::Empty);
        }
        // Acting as another user is not offered: an authzid must name the same user.
        if !authzid.is_empty() && authzid != user {
            return Err(PlainError::OtherIdentity);
        }
        Ok(PlainMessage { user, password })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages() {
        assert_eq!(
            PlainMessage::parse(b"\0alice\0secret"),
            Ok(PlainMessage {
                user: b"alice",
                password: b"secret"
            })
        );
        assert!(PlainMessage::parse(b"alice\0alice\0secret").is_ok());
        assert_eq!(
            PlainMessage::parse(b"bob\0alice\0secret"),
            Err(PlainError::OtherIdentity)
        );
        assert_eq!(PlainMessage::parse(b"\0alice\0"), Err(PlainError::Empty));
        assert_eq!(PlainMessage::parse(b"\0\0secret"), Err(PlainError::Empty));
        assert_eq!(
            PlainMessage::parse(b"\0alice\0se\0cret"),
            Err(PlainError::Shape)
        );
        assert_eq!(PlainMessage::parse(b"alice secret"), Err(PlainError::Shape));
        assert_eq!(PlainMessage::parse(b""), Err(PlainError::Shape));
        assert_eq!(
            PlainMessage::parse(&[b'a'; MAX_PLAIN_BYTES + 1]),
            Err(PlainError::TooLong)
        );
        assert!(
            !format!(
                "{:?}",
                PlainMessage::parse(b"\0a\0pw").unwrap_or(PlainMessage {
                    user: b"",
                    password: b""
                })
            )
            .contains("pw")
        );
    }
}
