//! Binary SASL: list mechanisms (0x20), start (0x21) and continue (0x22) an authentication.
//!
//! # Format
//! ```text
//! 0x20 no key, no body                     -> mechanism names, space-separated
//! 0x21 key = mechanism, value = initial response (PLAIN: authzid \0 user \0 password)
//! 0x22 key = mechanism, value = the next response
//! ```

/// One SASL step; the server answers it (rampart-auth holds the mechanisms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sasl<'a> {
    ListMechanisms,
    Auth { mechanism: &'a [u8], data: &'a [u8] },
    Step { mechanism: &'a [u8], data: &'a [u8] },
}
