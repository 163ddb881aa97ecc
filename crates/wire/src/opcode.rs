//! Frame opcodes (RFC 6455 §5.2).

use crate::error::ProtocolError;

/// The kind of a frame, from the low four bits of its first byte.
///
/// Reserved opcodes (3–7, 11–15) are not representable: decoding one is a
/// protocol error, so code holding an `OpCode` never has to ask.
///
/// ```
/// use frameway_wire::OpCode;
/// assert_eq!(OpCode::from_u8(0x1).unwrap(), OpCode::Text);
/// assert!(OpCode::Ping.is_control());
/// assert!(OpCode::from_u8(0x3).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// A later fragment of a text or binary message.
    Continuation,
    /// The first (or only) frame of a UTF-8 text message.
    Text,
    /// The first (or only) frame of a binary message.
    Binary,
    /// Starts or answers the closing handshake.
    Close,
    /// A keep-alive probe; the peer answers with a pong.
    Ping,
    /// The answer to a ping, or an unsolicited heartbeat.
    Pong,
}

impl OpCode {
    /// Decodes the four opcode bits; reserved values are a protocol error.
    pub fn from_u8(bits: u8) -> Result<Self, ProtocolError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::ReservedOpCode(other)),
        })
    }

    /// The four bits this opcode is sent as.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) may not be fragmented and carry at
    /// most 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }

    /// The lowercase name lua-resty-websocket uses for this frame type.
    pub fn name(self) -> &'static str {
        match self {
            OpCode::Continuation => "continuation",
            OpCode::Text => "text",
            OpCode::Binary => "binary",
            OpCode::Close => "close",
            OpCode::Ping => "ping",
            OpCode::Pong => "pong",
        }
    }
}

impl std::fmt::Display for OpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reserved_opcode_is_rejected() {
        for bits in (0x3..=0x7).chain(0xB..=0xF) {
            assert_eq!(
                OpCode::from_u8(bits),
                Err(ProtocolError::ReservedOpCode(bits))
            );
        }
    }

    #[test]
    fn known_opcodes_round_trip() {
        for bits in [0x0, 0x1, 0x2, 0x8, 0x9, 0xA] {
            assert_eq!(OpCode::from_u8(bits).unwrap().as_u8(), bits);
        }
    }
}
