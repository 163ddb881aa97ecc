//! Sec-WebSocket-Key and Sec-WebSocket-Accept (RFC 6455 §4.2.2).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
///
/// ```
/// // The example of RFC 6455 §1.3.
/// assert_eq!(
///     frameway_wire::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let accept = accept_bytes(key);
    String::from_utf8_lossy(&accept).into_owned()
}

/// [`accept_key`] on the stack: the handshakes compare it and write it
/// without an allocation.
pub(crate) fn accept_bytes(key: &[u8]) -> [u8; ACCEPT_LEN] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let mut accept = [0u8; ACCEPT_LEN];
    let written = STANDARD.encode_slice(sha.finalize(), &mut accept);
    debug_assert_eq!(written, Ok(ACCEPT_LEN));
    accept
}

/// A SHA-1 digest (20 bytes) in base64.
const ACCEPT_LEN: usize = 28;

/// A `Sec-WebSocket-Key` from 16 random bytes.
pub fn generate_key(random: [u8; 16]) -> String {
    STANDARD.encode(random)
}

/// Whether `key` is the base64 encoding of exactly 16 bytes, as the RFC
/// requires of a client's key.
pub fn is_valid_key(key: &[u8]) -> bool {
    // 24 characters decode to at most 18 bytes: on the stack.
    let mut decoded = [0u8; 18];
    key.len() == 24 && STANDARD.decode_slice(key, &mut decoded) == Ok(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_validation() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_valid_key(generate_key([0xff; 16]).as_bytes()));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ")); // unpadded
        assert!(!is_valid_key(b"c2hvcnQ=")); // 5 bytes
        assert!(!is_valid_key(b"!!!!!!!!!!!!!!!!!!!!!!=="));
    }
}
