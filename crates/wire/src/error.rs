//! Protocol errors, each carrying the close code it is answered with.

use crate::close::CloseCode;

/// A violation of RFC 6455 (or of a configured limit) by the peer, or a send
/// the local side may not make.
///
/// Every variant knows the close code to answer it with, so the layer above
/// never has to map errors to codes itself:
///
/// ```
/// use frameway_wire::{CloseCode, ProtocolError};
/// assert_eq!(ProtocolError::InvalidUtf8.close_code(), CloseCode::INVALID_DATA);
/// assert_eq!(
///     ProtocolError::MessageTooBig { size: 10, limit: 5 }.close_code(),
///     CloseCode::TOO_BIG
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Opcode 3–7 or 11–15.
    #[error("reserved opcode {0:#x}")]
    ReservedOpCode(u8),
    /// RSV1, RSV2 or RSV3 set without an extension that defines it.
    #[error("reserved bits {0:#05b} set without a negotiated extension")]
    ReservedBits(u8),
    /// A close, ping or pong frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A control frame with more than 125 bytes of payload.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlFrameTooLong(u64),
    /// A 64-bit length with the most significant bit set.
    #[error("frame length has its most significant bit set")]
    InvalidLength,
    /// A 16- or 64-bit length used for a length a shorter form could carry.
    #[error("frame length not in its shortest form")]
    NonMinimalLength,
    /// An unmasked frame where masking is required (client to server).
    #[error("unmasked frame from a client")]
    UnmaskedFrame,
    /// A masked frame where masking is forbidden (server to client).
    #[error("masked frame from a server")]
    MaskedFrame,
    /// A continuation frame with no message to continue.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    #[error("new data frame while a fragmented message is unfinished")]
    ExpectedContinuation,
    /// Text that is not valid UTF-8 (in a message or a close reason).
    #[error("invalid UTF-8 in text")]
    InvalidUtf8,
    /// A close frame with a one-byte payload.
    #[error("close frame payload of one byte")]
    CloseFrameTruncated,
    /// A close status not allowed on the wire.
    #[error("close code {0} is not allowed on the wire")]
    InvalidCloseCode(u16),
    /// A close reason over 123 bytes.
    #[error("close reason of {0} bytes exceeds 123")]
    CloseReasonTooLong(usize),
    /// A single frame over the frame payload limit.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooBig {
        /// The frame's declared payload length.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A message (the running total of its fragments) over the limit.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    MessageTooBig {
        /// The size the message would reach.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A message split into more fragments than allowed.
    #[error("message split into more than {0} fragments")]
    TooManyFragments(usize),
    /// A data frame after the peer's close frame.
    #[error("frame received after the close frame")]
    FrameAfterClose,
    /// An extension (permessage-deflate) could not process a message.
    #[error("extension error: {0}")]
    Extension(&'static str),
    /// The local side tried to send something the protocol forbids in the
    /// current state (data after close, a continuation without a start).
    #[error("cannot send: {0}")]
    InvalidSend(&'static str),
}

impl ProtocolError {
    /// The close code this error is answered with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::Extension(_) => CloseCode::INVALID_DATA,
            ProtocolError::FrameTooBig { .. }
            | ProtocolError::MessageTooBig { .. }
            | ProtocolError::TooManyFragments(_) => CloseCode::TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}
