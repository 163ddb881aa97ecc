//! Close codes and close frames (RFC 6455 §5.5.1, §7.4).

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::utf8::Utf8Bytes;

/// The longest close reason that fits in a control frame: 125 bytes less the
/// two-byte code.
pub const MAX_CLOSE_REASON: usize = 123;

/// A status code that may appear in a close frame on the wire.
///
/// Only codes RFC 6455 §7.4.1 and the IANA registry allow on the wire can be
/// built: 1000–1003, 1007–1014 and 3000–4999. 1005 ("no status") and 1006
/// ("abnormal closure") are what an application *observes* when a close frame
/// had no code or never came; they are represented as the absence of a
/// [`CloseFrame`], never as a `CloseCode`.
///
/// ```
/// use frameway_wire::CloseCode;
/// assert_eq!(CloseCode::new(1000), Some(CloseCode::NORMAL));
/// assert_eq!(CloseCode::new(4321).map(u16::from), Some(4321));
/// assert_eq!(CloseCode::new(1005), None);
/// assert_eq!(CloseCode::new(1006), None);
/// assert_eq!(CloseCode::new(999), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1007: data inconsistent with the message type (e.g. invalid UTF-8).
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway got an invalid response from upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// The code, if it is allowed on the wire.
    pub const fn new(code: u16) -> Option<CloseCode> {
        if Self::is_allowed_on_wire(code) {
            Some(CloseCode(code))
        } else {
            None
        }
    }

    /// Whether `code` may be sent in (or received in) a close frame.
    pub const fn is_allowed_on_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// The numeric value.
    pub const fn as_u16(self) -> u16 {
        self.0
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl TryFrom<u16> for CloseCode {
    type Error = ProtocolError;

    fn try_from(code: u16) -> Result<Self, Self::Error> {
        CloseCode::new(code).ok_or(ProtocolError::InvalidCloseCode(code))
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The status and reason of a close frame that carried a status.
///
/// A close frame with an empty payload is represented as `None` where an
/// `Option<CloseFrame>` appears (the application sees status 1005).
///
/// ```
/// use frameway_wire::{CloseCode, CloseFrame};
/// let frame = CloseFrame::new(CloseCode::NORMAL, "bye").unwrap();
/// let payload = frame.encode();
/// assert_eq!(&payload[..], b"\x03\xe8bye");
/// assert_eq!(CloseFrame::parse(&payload).unwrap(), Some(frame));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most [`MAX_CLOSE_REASON`] bytes of UTF-8.
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// A close frame with `reason`; an error if the reason is too long to fit
    /// in a control frame.
    pub fn new(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Result<Self, ProtocolError> {
        let reason = reason.into();
        if reason.len() > MAX_CLOSE_REASON {
            return Err(ProtocolError::CloseReasonTooLong(reason.len()));
        }
        Ok(CloseFrame { code, reason })
    }

    /// Parses a close frame's (unmasked) payload: empty, or a wire-legal code
    /// followed by a UTF-8 reason.
    pub fn parse(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ProtocolError::CloseFrameTruncated),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let code = CloseCode::try_from(code)?;
                let reason = Utf8Bytes::try_from(Bytes::copy_from_slice(&payload[2..]))
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(CloseFrame { code, reason }))
            }
        }
    }

    /// The payload this close frame is sent with.
    pub fn encode(&self) -> Bytes {
        Bytes::copy_from_slice(ClosePayload::new(self.code, &self.reason).as_bytes())
    }
}

/// A close frame's payload on the stack (a control frame's payload is at
/// most 125 bytes): what the protocol core queues when it sends a close,
/// with no allocation on a path every connection takes once.
pub(crate) struct ClosePayload {
    bytes: [u8; 2 + MAX_CLOSE_REASON],
    len: usize,
}

impl ClosePayload {
    /// `code`, then `reason` cut to what fits ([`truncate_reason`]).
    pub(crate) fn new(code: CloseCode, reason: &str) -> Self {
        let reason = truncate_reason(reason).as_bytes();
        let mut bytes = [0u8; 2 + MAX_CLOSE_REASON];
        bytes[..2].copy_from_slice(&code.as_u16().to_be_bytes());
        bytes[2..2 + reason.len()].copy_from_slice(reason);
        ClosePayload {
            bytes,
            len: 2 + reason.len(),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// `reason` cut to at most [`MAX_CLOSE_REASON`] bytes on a character
/// boundary: what fits in a close frame, for reasons made from messages of
/// any length (an error's text).
///
/// ```
/// use frameway_wire::{truncate_reason, MAX_CLOSE_REASON};
/// let long = "é".repeat(100);
/// let cut = truncate_reason(&long);
/// assert!(cut.len() <= MAX_CLOSE_REASON && cut.chars().all(|c| c == 'é'));
/// assert_eq!(truncate_reason("bye"), "bye");
/// ```
pub fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes_follow_rfc_6455_and_iana() {
        for code in 0..=u16::MAX {
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode::new(code).is_some(), expected, "code {code}");
        }
    }

    #[test]
    fn a_close_sent_carries_its_code_and_a_reason_cut_to_fit() {
        let short = ClosePayload::new(CloseCode::GOING_AWAY, "bye");
        assert_eq!(short.as_bytes(), b"\x03\xe9bye");
        // 62 two-byte characters: 124 bytes, one more than a close can carry.
        let long = "é".repeat(62);
        let cut = ClosePayload::new(CloseCode::NORMAL, &long);
        assert_eq!(cut.as_bytes().len(), 2 + 122);
        let parsed = CloseFrame::parse(cut.as_bytes()).unwrap().unwrap();
        assert_eq!(parsed.reason.as_str(), "é".repeat(61));
    }

    #[test]
    fn empty_payload_means_no_status() {
        assert_eq!(CloseFrame::parse(b"").unwrap(), None);
    }

    #[test]
    fn one_byte_payload_is_a_protocol_error() {
        assert_eq!(
            CloseFrame::parse(b"\x03"),
            Err(ProtocolError::CloseFrameTruncated)
        );
    }

    #[test]
    fn forbidden_codes_are_protocol_errors() {
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let payload = code.to_be_bytes();
            assert_eq!(
                CloseFrame::parse(&payload),
                Err(ProtocolError::InvalidCloseCode(code))
            );
        }
    }

    #[test]
    fn reason_must_be_utf8() {
        assert_eq!(
            CloseFrame::parse(b"\x03\xe8\xff\xfe"),
            Err(ProtocolError::InvalidUtf8)
        );
        assert_eq!(
            ProtocolError::InvalidUtf8.close_code(),
            CloseCode::INVALID_DATA
        );
    }

    #[test]
    fn reason_must_fit_in_a_control_frame() {
        let long = "x".repeat(MAX_CLOSE_REASON + 1);
        assert_eq!(
            CloseFrame::new(CloseCode::NORMAL, long),
            Err(ProtocolError::CloseReasonTooLong(MAX_CLOSE_REASON + 1))
        );
        assert!(CloseFrame::new(CloseCode::NORMAL, "x".repeat(MAX_CLOSE_REASON)).is_ok());
    }
}
