//! The unit the relay works on, made from what a leg received: a whole
//! message when the route aggregates, else a frame as it arrived.

use bytes::Bytes;
use frameway::{CloseFrame, Frame, Message, OpCode};

use crate::plugin::FrameType;

/// One unit received from a leg: a whole message, or a frame on the fast path.
pub(crate) struct Unit {
    pub(crate) kind: FrameType,
    pub(crate) fin: bool,
    pub(crate) data: Bytes,
    pub(crate) status: Option<u16>,
    /// The first frame of a message compressed by the sender and passed
    /// through as it is (see `Protocol::pass_compressed`).
    pub(crate) compressed: bool,
}

impl Unit {
    pub(crate) fn from_message(msg: Message) -> Unit {
        let (kind, data, status) = match msg {
            Message::Text(t) => (FrameType::Text, t.into_bytes(), None),
            Message::Binary(b) => (FrameType::Binary, b, None),
            Message::Ping(b) => (FrameType::Ping, b, None),
            Message::Pong(b) => (FrameType::Pong, b, None),
            Message::Close(Some(c)) => (
                FrameType::Close,
                c.reason.into_bytes(),
                Some(c.code.as_u16()),
            ),
            Message::Close(None) => (FrameType::Close, Bytes::new(), None),
        };
        Unit {
            kind,
            fin: true,
            data,
            status,
            compressed: false,
        }
    }

    pub(crate) fn from_frame(frame: Frame) -> Unit {
        if frame.opcode == OpCode::Close {
            // The decoder validated the close payload.
            let (status, data) = match CloseFrame::parse(&frame.payload) {
                Ok(Some(c)) => (Some(c.code.as_u16()), c.reason.into_bytes()),
                _ => (None, Bytes::new()),
            };
            return Unit {
                kind: FrameType::Close,
                fin: true,
                data,
                status,
                compressed: false,
            };
        }
        Unit {
            kind: frame.opcode.into(),
            fin: frame.fin,
            data: frame.payload,
            status: None,
            compressed: frame.rsv1,
        }
    }
}
