//! Whole messages, and assembling them from fragments.

use bytes::{Bytes, BytesMut};

use crate::close::CloseFrame;
use crate::decoder::Frame;
use crate::opcode::OpCode;
use crate::utf8::Utf8Bytes;

/// A complete message: data, or a control frame (which is always a whole
/// message of its own).
///
/// ```
/// use frameway_wire::Message;
/// let msg = Message::text("hi");
/// assert!(msg.is_text());
/// assert_eq!(msg.as_payload(), b"hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// UTF-8 text.
    Text(Utf8Bytes),
    /// Arbitrary bytes.
    Binary(Bytes),
    /// A ping with its payload (at most 125 bytes).
    Ping(Bytes),
    /// A pong with its payload (at most 125 bytes).
    Pong(Bytes),
    /// A close frame; `None` when it carried no status (seen as 1005).
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Message::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Message::Binary(data.into())
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Message::Binary(_))
    }

    /// Whether this is a close frame.
    pub fn is_close(&self) -> bool {
        matches!(self, Message::Close(_))
    }

    /// The payload bytes (a close frame's reason for `Close`).
    pub fn as_payload(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b,
            Message::Close(Some(c)) => c.reason.as_bytes(),
            Message::Close(None) => &[],
        }
    }

    /// The opcode this message is sent with.
    pub fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
            Message::Ping(_) => OpCode::Ping,
            Message::Pong(_) => OpCode::Pong,
            Message::Close(_) => OpCode::Close,
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(s.into())
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::Text(s.into())
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Message::Binary(b.into())
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::Binary(b)
    }
}

/// A data message whose frames have all arrived, before any extension has
/// processed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// [`OpCode::Text`] or [`OpCode::Binary`].
    pub opcode: OpCode,
    /// RSV1 was set on the first frame: the payload is compressed.
    pub compressed: bool,
    /// The payload, as received.
    pub payload: Bytes,
}

/// Joins the frames of fragmented messages.
///
/// An unfragmented message passes through without a copy; fragments are
/// appended to one buffer. Limits and ordering were already enforced by
/// [`crate::FrameDecoder`], so this only gathers.
#[derive(Debug, Default)]
pub struct MessageAssembler {
    /// Boxed: most connections never see a fragmented message, and every
    /// one carries an assembler.
    partial: Option<Box<Partial>>,
}

/// A fragmented message being gathered.
#[derive(Debug)]
struct Partial {
    opcode: OpCode,
    compressed: bool,
    payload: BytesMut,
}

impl MessageAssembler {
    /// An assembler with no message in progress.
    pub fn new() -> Self {
        MessageAssembler { partial: None }
    }

    /// Takes a data frame; returns the message when this frame completes it.
    /// Control frames are not passed here.
    pub fn push(&mut self, frame: Frame) -> Option<RawMessage> {
        debug_assert!(!frame.opcode.is_control());
        match (frame.opcode, frame.fin, self.partial.as_deref_mut()) {
            (OpCode::Continuation, fin, Some(partial)) => {
                partial.payload.extend_from_slice(&frame.payload);
                if !fin {
                    return None;
                }
                let Partial {
                    opcode,
                    compressed,
                    payload,
                } = *self.partial.take()?;
                Some(RawMessage {
                    opcode,
                    compressed,
                    payload: payload.freeze(),
                })
            }
            (opcode, true, _) => Some(RawMessage {
                opcode,
                compressed: frame.rsv1,
                payload: frame.payload,
            }),
            (opcode, false, _) => {
                self.partial = Some(Box::new(Partial {
                    opcode,
                    compressed: frame.rsv1,
                    payload: BytesMut::from(&frame.payload[..]),
                }));
                None
            }
        }
    }
}
