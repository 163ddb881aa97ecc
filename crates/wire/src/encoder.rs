//! Turning frames to send into bytes, refusing sends the protocol forbids.

use bytes::{BufMut, BytesMut};

use crate::error::ProtocolError;
use crate::header::{FrameHeader, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use crate::opcode::OpCode;

/// An encoded header, ready to be written before its payload.
#[derive(Debug, Clone, Copy)]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
    /// The key the payload must be masked with, if any.
    pub mask: Option<[u8; 4]>,
}

impl EncodedHeader {
    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Encodes outgoing frames and tracks what may be sent next: a continuation
/// only inside a fragmented message, nothing after our close frame, control
/// frames of at most 125 bytes, messages within `max_send_len`.
///
/// ```
/// use bytes::BytesMut;
/// use frameway_wire::{FrameEncoder, OpCode};
///
/// let mut encoder = FrameEncoder::new(1 << 20);
/// let mut out = BytesMut::new();
/// encoder.encode(true, OpCode::Text, b"Hello", None, &mut out).unwrap();
/// assert_eq!(&out[..], b"\x81\x05Hello");
/// // A continuation with no message to continue is refused.
/// assert!(encoder.encode(true, OpCode::Continuation, b"", None, &mut out).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct FrameEncoder {
    max_send_len: u64,
    /// Whether a fragmented message is being sent, and its size so far.
    fragmenting: bool,
    sent: u64,
    close_sent: bool,
}

impl FrameEncoder {
    /// An encoder that refuses messages larger than `max_send_len`.
    pub fn new(max_send_len: u64) -> Self {
        FrameEncoder {
            max_send_len,
            fragmenting: false,
            sent: 0,
            close_sent: false,
        }
    }

    /// Whether our close frame has been encoded.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Whether a fragmented message is being sent.
    pub fn is_fragmenting(&self) -> bool {
        self.fragmenting
    }

    /// The largest message that may be sent now as one FIN frame, or `None`
    /// when none may (our close was sent, or a fragmented message is being
    /// sent): [`Self::check`] for every whole message at once.
    pub(crate) fn whole_message_limit(&self) -> Option<u64> {
        (!self.close_sent && !self.fragmenting).then_some(self.max_send_len)
    }

    /// Changes the send limit.
    pub fn set_max_send_len(&mut self, len: u64) {
        self.max_send_len = len;
    }

    /// Validates a frame about to be sent, updates the send state, and
    /// returns its header. The caller writes the header, then the payload
    /// masked with [`EncodedHeader::mask`].
    pub fn header(
        &mut self,
        fin: bool,
        opcode: OpCode,
        rsv1: bool,
        payload_len: u64,
        mask: Option<[u8; 4]>,
    ) -> Result<EncodedHeader, ProtocolError> {
        self.header_counted(fin, opcode, rsv1, payload_len, payload_len, mask)
    }

    /// Checks that a frame may be sent now, without changing any state:
    /// `counted` is what it adds to its message's size (the uncompressed
    /// length, for a compressed frame). Lets a compressor run only for
    /// frames that will be sent.
    pub(crate) fn check(
        &self,
        fin: bool,
        opcode: OpCode,
        counted: u64,
    ) -> Result<(), ProtocolError> {
        if self.close_sent {
            return Err(ProtocolError::InvalidSend(
                "the close frame was already sent",
            ));
        }
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if counted > 125 {
                return Err(ProtocolError::ControlFrameTooLong(counted));
            }
            return Ok(());
        }
        let total = self.message_total(opcode, counted)?;
        if total > self.max_send_len {
            return Err(ProtocolError::MessageTooBig {
                size: total,
                limit: self.max_send_len,
            });
        }
        Ok(())
    }

    /// The size of the message a data frame belongs to once it is sent.
    fn message_total(&self, opcode: OpCode, counted: u64) -> Result<u64, ProtocolError> {
        match (opcode, self.fragmenting) {
            (OpCode::Continuation, false) => Err(ProtocolError::InvalidSend(
                "a continuation frame needs a message to continue",
            )),
            (OpCode::Continuation, true) => Ok(self.sent + counted),
            (_, true) => Err(ProtocolError::InvalidSend(
                "the fragmented message being sent is not finished",
            )),
            (_, false) => Ok(counted),
        }
    }

    /// [`Self::header`] for a payload of `payload_len` bytes that counts as
    /// `counted` towards the send limit.
    pub(crate) fn header_counted(
        &mut self,
        fin: bool,
        opcode: OpCode,
        rsv1: bool,
        payload_len: u64,
        counted: u64,
        mask: Option<[u8; 4]>,
    ) -> Result<EncodedHeader, ProtocolError> {
        self.check(fin, opcode, counted)?;
        if !opcode.is_control() {
            let total = self.message_total(opcode, counted)?;
            self.fragmenting = !fin;
            self.sent = total;
        }
        if opcode == OpCode::Close {
            self.close_sent = true;
        }
        let mut header = FrameHeader::new(fin, opcode, mask, payload_len);
        header.rsv1 = rsv1;
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let len = header.encode(&mut bytes) as u8;
        Ok(EncodedHeader { bytes, len, mask })
    }

    /// Encodes a whole frame (header, then the payload masked if `mask` is
    /// set) onto the end of `out`.
    pub fn encode(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: &[u8],
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        self.encode_with_rsv1(fin, opcode, false, payload, mask, out)
    }

    /// [`Self::encode`] with the RSV1 bit (a compressed message's first frame).
    pub fn encode_with_rsv1(
        &mut self,
        fin: bool,
        opcode: OpCode,
        rsv1: bool,
        payload: &[u8],
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let len = payload.len() as u64;
        self.encode_counted(fin, opcode, rsv1, payload, len, mask, out)
    }

    /// [`Self::encode_with_rsv1`] for a payload that counts as `counted`
    /// bytes towards the send limit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode_counted(
        &mut self,
        fin: bool,
        opcode: OpCode,
        rsv1: bool,
        payload: &[u8],
        counted: u64,
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let header = self.header_counted(fin, opcode, rsv1, payload.len() as u64, counted, mask)?;
        out.reserve(header.as_bytes().len() + payload.len());
        out.put_slice(header.as_bytes());
        let start = out.len();
        out.put_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut out[start..], key, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, FrameDecoder, Role};

    #[test]
    fn the_whole_message_limit_answers_as_check_does_for_every_whole_message() {
        let fresh = FrameEncoder::new(10);
        let mut fragmenting = FrameEncoder::new(10);
        fragmenting
            .header(false, OpCode::Text, false, 3, None)
            .unwrap();
        let mut closed = FrameEncoder::new(10);
        closed.header(true, OpCode::Close, false, 0, None).unwrap();
        for encoder in [&fresh, &fragmenting, &closed] {
            for op in [OpCode::Text, OpCode::Binary] {
                for len in [0, 9, 10, 11] {
                    let limit = encoder.whole_message_limit();
                    assert_eq!(
                        encoder.check(true, op, len).is_ok(),
                        limit.is_some_and(|max| len <= max),
                        "{encoder:?} {op:?} {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn client_frames_decode_on_a_server() {
        let mut e = FrameEncoder::new(u64::MAX);
        let mut out = BytesMut::new();
        let payload = vec![0x5a; 70_000];
        e.encode(true, OpCode::Binary, &payload, Some([1, 2, 3, 4]), &mut out)
            .unwrap();
        let f = FrameDecoder::new(Config::new(Role::Server))
            .decode(&mut out)
            .unwrap()
            .unwrap();
        assert_eq!(&f.payload[..], &payload[..]);
    }

    #[test]
    fn control_frame_rules_apply_to_sends() {
        let mut e = FrameEncoder::new(u64::MAX);
        let mut out = BytesMut::new();
        assert_eq!(
            e.encode(true, OpCode::Ping, &[0; 126], None, &mut out),
            Err(ProtocolError::ControlFrameTooLong(126))
        );
        assert_eq!(
            e.encode(false, OpCode::Pong, b"", None, &mut out),
            Err(ProtocolError::FragmentedControlFrame)
        );
    }

    #[test]
    fn fragmented_send_state_and_running_limit() {
        let mut e = FrameEncoder::new(10);
        let mut out = BytesMut::new();
        e.encode(false, OpCode::Text, b"12345", None, &mut out)
            .unwrap();
        // Control frames may interleave; a new message may not.
        e.encode(true, OpCode::Ping, b"", None, &mut out).unwrap();
        assert!(e.encode(true, OpCode::Text, b"x", None, &mut out).is_err());
        assert_eq!(
            e.encode(true, OpCode::Continuation, b"123456", None, &mut out),
            Err(ProtocolError::MessageTooBig {
                size: 11,
                limit: 10
            })
        );
        e.encode(true, OpCode::Continuation, b"12345", None, &mut out)
            .unwrap();
        assert!(!e.is_fragmenting());
    }

    #[test]
    fn nothing_after_close() {
        let mut e = FrameEncoder::new(10);
        let mut out = BytesMut::new();
        e.encode(true, OpCode::Close, b"", None, &mut out).unwrap();
        assert!(e.close_sent());
        assert!(e.encode(true, OpCode::Ping, b"", None, &mut out).is_err());
    }
}
