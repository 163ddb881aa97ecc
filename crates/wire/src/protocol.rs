//! One connection's protocol state: frames in, messages out, replies queued.

use bytes::{Buf, BytesMut};

use crate::close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
use crate::config::Config;
use crate::decoder::{Frame, FrameDecoder};
use crate::encoder::FrameEncoder;
use crate::error::ProtocolError;
use crate::message::{Message, MessageAssembler, RawMessage};
use crate::opcode::OpCode;
use crate::utf8::Utf8Bytes;

/// Fills a buffer with unpredictable bytes for masking keys (RFC 6455 §5.3
/// asks for a strong source of entropy). The core does no IO, so the caller
/// provides it.
pub type EntropySource = fn(&mut [u8]);

/// Where the closing handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseState {
    /// Neither side has sent a close frame.
    Open,
    /// We sent a close frame and wait for the peer's.
    Sent,
    /// The peer sent a close frame; ours is queued or sent.
    Received,
    /// Both close frames are through: the connection is done.
    Closed,
}

/// The protocol state of one connection, without any IO: feed it received
/// bytes, take out frames or messages, and write out what it queues.
///
/// Replies the protocol requires are queued by themselves: a pong for each
/// ping (unless turned off), the answering close frame, and the close frame
/// for a protocol error.
///
/// ```
/// use bytes::BytesMut;
/// use frameway_wire::{Config, Message, Protocol, Role};
///
/// let mut server = Protocol::new(Config::new(Role::Server), |b| b.fill(7));
/// let mut client = Protocol::new(Config::new(Role::Client), |b| b.fill(7));
/// client.send(&Message::text("hello")).unwrap();
/// client.send(&Message::Ping("p".into())).unwrap();
///
/// let mut wire = client.take_output();
/// assert_eq!(server.read_message(&mut wire).unwrap(), Some(Message::text("hello")));
/// assert_eq!(server.read_message(&mut wire).unwrap(), Some(Message::Ping("p".into())));
/// // The server queued the pong by itself.
/// let mut reply = server.take_output();
/// assert_eq!(client.read_message(&mut reply).unwrap(), Some(Message::Pong("p".into())));
/// ```
#[derive(Debug)]
pub struct Protocol {
    config: Config,
    decoder: FrameDecoder,
    assembler: MessageAssembler,
    encoder: FrameEncoder,
    out: BytesMut,
    entropy: EntropySource,
    keys: [u8; 64],
    keys_used: usize,
    auto_pong: bool,
}

impl Protocol {
    /// A connection in the open state.
    pub fn new(config: Config, entropy: EntropySource) -> Self {
        Protocol {
            decoder: FrameDecoder::new(config),
            assembler: MessageAssembler::new(),
            encoder: FrameEncoder::new(config.max_send_len),
            out: BytesMut::new(),
            entropy,
            keys: [0; 64],
            keys_used: 64,
            auto_pong: true,
            config,
        }
    }

    /// Whether pings are answered automatically (on by default).
    pub fn set_auto_pong(&mut self, on: bool) {
        self.auto_pong = on;
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the receive limits.
    pub fn set_limits(&mut self, limits: crate::Limits) {
        self.config.limits = limits;
        self.decoder.set_limits(limits);
    }

    /// Changes the send limit.
    pub fn set_max_send_len(&mut self, len: u64) {
        self.config.max_send_len = len;
        self.encoder.set_max_send_len(len);
    }

    /// The decoder, for extensions that need to adjust it.
    pub fn decoder_mut(&mut self) -> &mut FrameDecoder {
        &mut self.decoder
    }

    /// Where the closing handshake stands.
    pub fn close_state(&self) -> CloseState {
        match (self.encoder.close_sent(), self.decoder.close_received()) {
            (false, false) => CloseState::Open,
            (true, false) => CloseState::Sent,
            (false, true) => CloseState::Received,
            (true, true) => CloseState::Closed,
        }
    }

    /// Whether the frame parser is between messages with nothing pending.
    pub fn is_idle(&self) -> bool {
        self.decoder.is_idle() && !self.encoder.is_fragmenting()
    }

    /// How many more payload bytes the frame being received needs.
    pub fn bytes_wanted(&self, buffered: usize) -> usize {
        self.decoder.bytes_wanted(buffered)
    }

    /// Reads the next frame from `buf`. Control frames get their automatic
    /// replies queued; data frames are returned as they are (fragments too).
    pub fn read_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let frame = match self.decoder.decode(buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(None),
            Err(err) => {
                self.fail(&err);
                return Err(err);
            }
        };
        match frame.opcode {
            OpCode::Ping if self.auto_pong && !self.encoder.close_sent() => {
                let payload = frame.payload.clone();
                self.queue(OpCode::Pong, &payload)?;
            }
            OpCode::Close if !self.encoder.close_sent() => {
                // Echo the peer's status (the decoder validated it), as
                // RFC 6455 §5.5.1 suggests.
                let status = frame.payload.slice(..frame.payload.len().min(2));
                self.queue(OpCode::Close, &status)?;
            }
            _ => {}
        }
        Ok(Some(frame))
    }

    /// Reads the next whole message from `buf`, assembling fragments.
    pub fn read_message(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        while let Some(frame) = self.read_frame(buf)? {
            let raw = match frame.opcode {
                OpCode::Ping => return Ok(Some(Message::Ping(frame.payload))),
                OpCode::Pong => return Ok(Some(Message::Pong(frame.payload))),
                OpCode::Close => {
                    return Ok(Some(Message::Close(CloseFrame::parse(&frame.payload)?)))
                }
                _ => match self.assembler.push(frame) {
                    Some(raw) => raw,
                    None => continue,
                },
            };
            return self.finish_message(raw).map(Some);
        }
        Ok(None)
    }

    fn finish_message(&mut self, raw: RawMessage) -> Result<Message, ProtocolError> {
        if raw.compressed {
            let err = ProtocolError::Extension("compressed message without an extension");
            self.fail(&err);
            return Err(err);
        }
        Ok(match raw.opcode {
            // Validated frame by frame by the decoder.
            OpCode::Text => Message::Text(Utf8Bytes::from_validated(raw.payload)),
            _ => Message::Binary(raw.payload),
        })
    }

    /// Queues one frame for sending.
    pub fn send_frame(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), ProtocolError> {
        let mask = self.next_mask();
        self.encoder
            .encode(fin, opcode, payload, mask, &mut self.out)
    }

    /// Queues a whole message for sending, unfragmented.
    pub fn send(&mut self, message: &Message) -> Result<(), ProtocolError> {
        match message {
            Message::Close(close) => self.send_close(close.as_ref()),
            other => self.send_frame(true, other.opcode(), other.as_payload()),
        }
    }

    /// Queues our close frame, with a status or without (1005 to the peer).
    pub fn send_close(&mut self, close: Option<&CloseFrame>) -> Result<(), ProtocolError> {
        match close {
            Some(close) => {
                let payload = close.encode();
                self.send_frame(true, OpCode::Close, &payload)
            }
            None => self.send_frame(true, OpCode::Close, &[]),
        }
    }

    /// Queues the close frame answering `err`, unless ours was already sent.
    pub fn fail(&mut self, err: &ProtocolError) {
        if self.encoder.close_sent() {
            return;
        }
        let reason = truncate_reason(&err.to_string());
        if let Ok(close) = CloseFrame::new(err.close_code(), reason) {
            // Cannot fail: our close was not sent and the frame is valid.
            let _ = self.send_close(Some(&close));
        }
    }

    /// Queues a close frame with `code` and a reason cut to fit.
    pub fn close_with(&mut self, code: CloseCode, reason: &str) -> Result<(), ProtocolError> {
        let close = CloseFrame::new(code, truncate_reason(reason))?;
        self.send_close(Some(&close))
    }

    /// The bytes queued for sending.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Marks `n` queued bytes as written.
    pub fn consume_output(&mut self, n: usize) {
        self.out.advance(n);
        if self.out.is_empty() && self.out.capacity() > 0 {
            // Idle connections hold no send buffer.
            self.out = BytesMut::new();
        }
    }

    /// Takes all queued bytes.
    pub fn take_output(&mut self) -> BytesMut {
        std::mem::take(&mut self.out)
    }

    /// Whether anything is queued for sending.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    fn queue(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), ProtocolError> {
        self.send_frame(true, opcode, payload)
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        if !self.config.mask_outgoing {
            return None;
        }
        if self.keys_used + 4 > self.keys.len() {
            (self.entropy)(&mut self.keys);
            self.keys_used = 0;
        }
        let at = self.keys_used;
        self.keys_used += 4;
        Some([
            self.keys[at],
            self.keys[at + 1],
            self.keys[at + 2],
            self.keys[at + 3],
        ])
    }
}

/// Cuts `reason` to at most 123 bytes on a character boundary.
fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn pair() -> (Protocol, Protocol) {
        (
            Protocol::new(Config::new(Role::Client), |b| b.fill(0x5c)),
            Protocol::new(Config::new(Role::Server), |b| b.fill(0)),
        )
    }

    #[test]
    fn close_handshake_echoes_the_code() {
        let (mut client, mut server) = pair();
        client.close_with(CloseCode::NORMAL, "done").unwrap();
        assert_eq!(client.close_state(), CloseState::Sent);
        let mut wire = client.take_output();
        let msg = server.read_message(&mut wire).unwrap().unwrap();
        assert_eq!(
            msg,
            Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "done").unwrap()))
        );
        assert_eq!(server.close_state(), CloseState::Closed);
        let mut reply = server.take_output();
        let echo = client.read_message(&mut reply).unwrap().unwrap();
        assert_eq!(
            echo,
            Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "").unwrap()))
        );
        assert_eq!(client.close_state(), CloseState::Closed);
        // Nothing more may be sent.
        assert!(client.send(&Message::text("late")).is_err());
    }

    #[test]
    fn protocol_error_queues_the_right_close_code() {
        let (mut client, mut server) = pair();
        client.send_frame(true, OpCode::Text, b"\xff").unwrap();
        let mut wire = client.take_output();
        assert_eq!(
            server.read_message(&mut wire),
            Err(ProtocolError::InvalidUtf8)
        );
        let mut reply = server.take_output();
        match client.read_message(&mut reply).unwrap() {
            Some(Message::Close(Some(close))) => assert_eq!(close.code, CloseCode::INVALID_DATA),
            other => panic!("expected a 1007 close, got {other:?}"),
        }
    }

    #[test]
    fn fragmented_message_is_assembled() {
        let (mut client, mut server) = pair();
        client.send_frame(false, OpCode::Text, b"frag").unwrap();
        client.send_frame(true, OpCode::Ping, b"").unwrap();
        client
            .send_frame(true, OpCode::Continuation, "mént".as_bytes())
            .unwrap();
        let mut wire = client.take_output();
        assert_eq!(
            server.read_message(&mut wire).unwrap(),
            Some(Message::Ping("".into()))
        );
        assert_eq!(
            server.read_message(&mut wire).unwrap(),
            Some(Message::text("fragmént"))
        );
    }

    #[test]
    fn client_masks_with_fresh_keys() {
        let mut client = Protocol::new(Config::new(Role::Client), |b| {
            for (i, x) in b.iter_mut().enumerate() {
                *x = i as u8;
            }
        });
        client.send(&Message::binary(vec![0u8; 4])).unwrap();
        client.send(&Message::binary(vec![0u8; 4])).unwrap();
        let out = client.take_output();
        // Masking zeros reveals the keys: two different keys.
        assert_eq!(&out[2..6], &out[6..10]);
        assert_eq!(&out[12..16], &out[16..20]);
        assert_ne!(&out[6..10], &out[16..20]);
    }

    #[test]
    fn long_error_reasons_are_cut_on_a_char_boundary() {
        let reason = truncate_reason(&"é".repeat(100));
        assert!(reason.len() <= MAX_CLOSE_REASON);
        assert!(reason.chars().all(|c| c == 'é'));
    }
}
