//! # frameway-wire
//!
//! The sans-IO core of Frameway: everything RFC 6455 says about bytes on the
//! wire, with no sockets and no runtime. Server, client and gateway all parse
//! and build frames here, so there is one frame parser in the project.
//!
//! - [`FrameHeader`]: decode and encode headers, every length form.
//! - [`apply_mask`]: masking at memory speed.
//! - [`FrameDecoder`]: bytes to validated frames (masking direction, reserved
//!   bits, control-frame rules, fragmentation order, limits from the header,
//!   UTF-8 validated as it arrives).
//! - [`MessageAssembler`] and [`Message`]: whole messages.
//! - [`FrameEncoder`]: frames to bytes, refusing sends the protocol forbids.
//! - [`CloseCode`] and [`CloseFrame`]: only wire-legal codes can be built.
//! - [`Protocol`]: one connection's state, with the replies the protocol
//!   requires (pong, close echo, close on error) queued for you.
//! - [`handshake`]: the opening handshake on both sides.
//! - [`deflate`]: permessage-deflate (RFC 7692), negotiated and applied by
//!   [`Protocol`].
//!
//! Every error knows its answer: [`ProtocolError::close_code`] for frames,
//! [`handshake::RequestError::status`] for handshakes.
//!
//! ```
//! use bytes::BytesMut;
//! use frameway_wire::{CloseCode, Config, Message, Protocol, Role};
//!
//! let mut server = Protocol::new(Config::new(Role::Server), |b| b.fill(0));
//! // A client's masked text frame with invalid UTF-8.
//! let mut wire = BytesMut::from(&[0x81, 0x81, 0, 0, 0, 0, 0xff][..]);
//! let err = server.read_message(&mut wire).unwrap_err();
//! assert_eq!(err.close_code(), CloseCode::INVALID_DATA);
//! // The 1007 close frame is already queued.
//! let out = server.take_output();
//! assert_eq!((out[0], &out[2..4]), (0x88, &[0x03, 0xef][..]));
//! ```

#![deny(missing_docs)]

mod close;
mod config;
mod decoder;
pub mod deflate;
mod encoder;
mod error;
pub mod handshake;
mod header;
mod lifecycle;
mod mask;
mod message;
mod opcode;
mod output;
mod passed;
mod protocol;
pub mod spare;
mod timers;
mod utf8;

pub use close::{truncate_reason, CloseCode, CloseFrame, MAX_CLOSE_REASON};
pub use config::{Config, Limits, MaskPolicy, Role};
pub use decoder::{Frame, FrameDecoder};
pub use encoder::{EncodedHeader, FrameEncoder};
pub use error::ProtocolError;
pub use header::{FrameHeader, MAX_HEADER_LEN};
pub use lifecycle::{Failure, Mode, State};
pub use mask::apply_mask;
pub use message::{Message, MessageAssembler, RawMessage};
pub use opcode::OpCode;
pub use output::Output;
pub use passed::Passed;
pub use protocol::{EntropySource, Protocol};
pub use timers::{Expired, Heartbeat};
pub use utf8::{InvalidUtf8, Utf8Bytes, Utf8Validator};
