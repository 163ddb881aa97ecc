//! The frame header (RFC 6455 §5.2): decoding and encoding, every length form.

use crate::error::ProtocolError;
use crate::opcode::OpCode;

/// The longest header: 2 bytes, a 64-bit length and a masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header.
///
/// Decoding checks only what the header alone can tell (reserved opcodes,
/// control-frame rules, the length's form); what depends on the connection
/// (negotiated extensions, masking direction, limits, fragmentation state)
/// is checked by [`crate::FrameDecoder`].
///
/// ```
/// use frameway_wire::{FrameHeader, OpCode};
/// let header = FrameHeader::new(true, OpCode::Text, None, 300);
/// let mut out = [0u8; 14];
/// let n = header.encode(&mut out);
/// assert_eq!(n, 4); // 16-bit length form
/// let (decoded, len) = FrameHeader::decode(&out[..n]).unwrap().unwrap();
/// assert_eq!((decoded, len), (header, 4));
/// // A partial header asks for more bytes.
/// assert_eq!(FrameHeader::decode(&out[..3]).unwrap(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The final fragment of a message.
    pub fin: bool,
    /// RSV1: "per-message compressed" under permessage-deflate.
    pub rsv1: bool,
    /// RSV2: no extension we know defines it.
    pub rsv2: bool,
    /// RSV3: no extension we know defines it.
    pub rsv3: bool,
    /// The frame type.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// A header with the reserved bits clear.
    pub fn new(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload_len: u64) -> Self {
        FrameHeader {
            fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            payload_len,
        }
    }

    /// Decodes a header from the start of `buf`: `Ok(None)` if `buf` holds
    /// only part of it, otherwise the header and its length in bytes.
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let opcode = OpCode::from_u8(b0 & 0x0F)?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if len7 > 125 {
                return Err(ProtocolError::ControlFrameTooLong(u64::from(len7)));
            }
        }
        let len_bytes = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + len_bytes + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(None);
        }
        let payload_len = match len7 {
            126 => {
                let len = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                len
            }
            127 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(bytes);
                if len >> 63 != 0 {
                    return Err(ProtocolError::InvalidLength);
                }
                if len <= u64::from(u16::MAX) {
                    return Err(ProtocolError::NonMinimalLength);
                }
                len
            }
            n => u64::from(n),
        };
        let mask = masked.then(|| {
            let at = 2 + len_bytes;
            [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
        });
        Ok(Some((
            FrameHeader {
                fin,
                rsv1: b0 & 0x40 != 0,
                rsv2: b0 & 0x20 != 0,
                rsv3: b0 & 0x10 != 0,
                opcode,
                mask,
                payload_len,
            },
            header_len,
        )))
    }

    /// Writes the header in its shortest form; returns its length.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (u8::from(self.fin) << 7)
            | (u8::from(self.rsv1) << 6)
            | (u8::from(self.rsv2) << 5)
            | (u8::from(self.rsv3) << 4)
            | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.payload_len {
            len @ 0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }

    /// The bits RSV1–RSV3 as the three low bits of a byte (RSV1 highest).
    pub fn rsv_bits(&self) -> u8 {
        (u8::from(self.rsv1) << 2) | (u8::from(self.rsv2) << 1) | u8::from(self.rsv3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(header: FrameHeader) -> usize {
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut out);
        for cut in 0..n {
            assert_eq!(FrameHeader::decode(&out[..cut]).unwrap(), None);
        }
        assert_eq!(FrameHeader::decode(&out[..n]).unwrap(), Some((header, n)));
        n
    }

    #[test]
    fn every_length_form_round_trips() {
        for (len, expected) in [
            (0, 2),
            (125, 2),
            (126, 4),
            (0xFFFF, 4),
            (0x1_0000, 10),
            (u64::MAX >> 1, 10),
        ] {
            assert_eq!(
                round_trip(FrameHeader::new(true, OpCode::Binary, None, len)),
                expected
            );
            assert_eq!(
                round_trip(FrameHeader::new(
                    false,
                    OpCode::Text,
                    Some([1, 2, 3, 4]),
                    len
                )),
                expected + 4
            );
        }
    }

    #[test]
    fn flags_and_reserved_bits_are_decoded() {
        let (h, _) = FrameHeader::decode(&[0b0111_0010, 0]).unwrap().unwrap();
        assert!(!h.fin && h.rsv1 && h.rsv2 && h.rsv3);
        assert_eq!(h.rsv_bits(), 0b111);
        assert_eq!(h.opcode, OpCode::Binary);
    }

    #[test]
    fn top_bit_of_64_bit_length_is_rejected() {
        let mut buf = vec![0x82, 127];
        buf.extend_from_slice(&(1u64 << 63 | 0x1_0000).to_be_bytes());
        assert_eq!(FrameHeader::decode(&buf), Err(ProtocolError::InvalidLength));
    }

    #[test]
    fn non_minimal_lengths_are_rejected() {
        assert_eq!(
            FrameHeader::decode(&[0x82, 126, 0, 125]),
            Err(ProtocolError::NonMinimalLength)
        );
        let mut buf = vec![0x82, 127];
        buf.extend_from_slice(&0xFFFFu64.to_be_bytes());
        assert_eq!(
            FrameHeader::decode(&buf),
            Err(ProtocolError::NonMinimalLength)
        );
    }

    #[test]
    fn control_frame_rules() {
        // Ping without FIN.
        assert_eq!(
            FrameHeader::decode(&[0x09, 0]),
            Err(ProtocolError::FragmentedControlFrame)
        );
        // Close with a 126-byte payload.
        assert_eq!(
            FrameHeader::decode(&[0x88, 126, 0, 126]),
            Err(ProtocolError::ControlFrameTooLong(126))
        );
        // Pong with exactly 125 bytes is fine.
        assert!(FrameHeader::decode(&[0x8A, 125]).unwrap().is_some());
    }

    #[test]
    fn reserved_opcode_is_rejected_from_the_first_byte() {
        assert_eq!(
            FrameHeader::decode(&[0x83, 0]),
            Err(ProtocolError::ReservedOpCode(3))
        );
    }
}
