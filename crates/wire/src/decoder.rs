//! Turning received bytes into validated frames: the one frame parser of the
//! project.

use bytes::{Buf, Bytes, BytesMut};

use crate::close::CloseFrame;
use crate::config::{Config, MaskPolicy};
use crate::error::ProtocolError;
use crate::header::FrameHeader;
use crate::mask::apply_mask;
use crate::opcode::OpCode;
use crate::passed::Passed;
use crate::spare;
use crate::utf8::{is_whole_text, Utf8Validator};

/// Payloads smaller than this are copied out of the read buffer rather
/// than shared with it: an application that keeps a small message must not
/// keep the whole (tens of KiB) buffer it arrived in alive with it.
const COPY_BELOW: usize = 4096;

/// A complete, validated, unmasked frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The last frame of its message (always true for control frames).
    pub fin: bool,
    /// The frame type.
    pub opcode: OpCode,
    /// RSV1: the message this frame starts is compressed.
    pub rsv1: bool,
    /// The unmasked payload (a large one shares the read buffer's memory).
    pub payload: Bytes,
}

/// A decoded frame whose payload is still in the buffer: its header, and
/// the payload's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecodedHead {
    pub(crate) fin: bool,
    pub(crate) opcode: OpCode,
    pub(crate) rsv1: bool,
    pub(crate) len: usize,
}

/// The data message being received, between its first and last frame.
#[derive(Debug, Clone, Copy)]
struct InMessage {
    total: u64,
    /// Saturating: a count past `u32::MAX` is over any limit anyway.
    fragments: u32,
    opcode: OpCode,
    compressed: bool,
}

/// A frame whose header was read and whose payload is still arriving: what
/// of its header the rest of the frame needs, kept small because every
/// connection carries one.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    len: usize,
    /// Payload bytes already unmasked (and validated, for text).
    done: usize,
    mask: Option<[u8; 4]>,
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
}

/// Reads frames out of a buffer of received bytes, enforcing every rule of
/// RFC 6455 §5 and the configured limits.
///
/// The payload is unmasked in place and split off the buffer without a copy
/// (a payload under 4 KiB is copied, so that it does not pin the buffer).
/// Text is validated as it arrives, so invalid UTF-8 fails on the read that
/// brings it even if the frame is not complete yet.
///
/// ```
/// use bytes::BytesMut;
/// use frameway_wire::{Config, FrameDecoder, OpCode, Role};
///
/// let mut decoder = FrameDecoder::new(Config::new(Role::Server));
/// // RFC 6455 §5.7: a masked "Hello" from a client, arriving in two reads.
/// let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let mut buf = BytesMut::from(&wire[..4]);
/// assert!(decoder.decode(&mut buf).unwrap().is_none());
/// buf.extend_from_slice(&wire[4..]);
/// let frame = decoder.decode(&mut buf).unwrap().unwrap();
/// assert_eq!((frame.opcode, &frame.payload[..]), (OpCode::Text, &b"Hello"[..]));
/// ```
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    config: Config,
    /// RSV bits a negotiated extension defines (RSV1 = 0b100).
    allowed_rsv: u8,
    frame: Option<InFrame>,
    message: Option<InMessage>,
    utf8: Utf8Validator,
    close_received: bool,
}

impl FrameDecoder {
    /// A decoder at the start of a connection.
    pub fn new(config: Config) -> Self {
        FrameDecoder {
            config,
            allowed_rsv: 0,
            frame: None,
            message: None,
            utf8: Utf8Validator::new(),
            close_received: false,
        }
    }

    /// Accepts RSV1 on the first frame of data messages (permessage-deflate).
    pub fn allow_rsv1(&mut self) {
        self.allowed_rsv |= 0b100;
    }

    /// Changes the receive limits, e.g. after a handshake hook raised them.
    pub fn set_limits(&mut self, limits: crate::Limits) {
        self.config.limits = limits;
    }

    /// The limits in force.
    pub fn limits(&self) -> crate::Limits {
        self.config.limits
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Whether a close frame has been received.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// Whether the decoder is between messages (no fragmented message and no
    /// frame begun). A binary frame left whole in the caller's buffer until
    /// it has all arrived (see [`Self::decode`]) is not begun: its bytes are
    /// the buffer's.
    pub fn is_idle(&self) -> bool {
        self.frame.is_none() && self.message.is_none()
    }

    /// The number of payload bytes the frame in progress still needs, if one
    /// has been begun (0 for a binary frame waiting whole in the buffer,
    /// which fits a read buffer); lets the caller size its next read.
    pub fn bytes_wanted(&self, buffered: usize) -> usize {
        match self.frame {
            Some(f) => f.len.saturating_sub(buffered),
            None => 0,
        }
    }

    /// Decodes the next frame from the front of `buf`, consuming it.
    /// A binary frame that fits a read buffer ([`crate::spare::BUFFER_SIZE`])
    /// is left untouched in `buf` until all of it is there.
    /// `Ok(None)` means more bytes are needed; everything decoded so far is
    /// remembered, so call again after appending to `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let Some(head) = self.decode_in_place(buf)? else {
            return Ok(None);
        };
        let payload = if head.len < COPY_BELOW {
            let payload = Bytes::copy_from_slice(&buf[..head.len]);
            if buf.len() == head.len {
                buf.clear();
            } else {
                buf.advance(head.len);
            }
            payload
        } else {
            buf.split_to(head.len).freeze()
        };
        Ok(Some(Frame {
            fin: head.fin,
            opcode: head.opcode,
            rsv1: head.rsv1,
            payload,
        }))
    }

    /// [`Self::decode`] without taking the payload out: the next complete
    /// frame's header is consumed and its payload, unmasked and validated,
    /// is left as the first [`DecodedHead::len`] bytes of `buf`.
    fn decode_in_place(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<DecodedHead>, ProtocolError> {
        let mut frame = match self.frame {
            Some(frame) => frame,
            None => {
                let Some((header, header_len)) = FrameHeader::decode(buf)? else {
                    return Ok(None);
                };
                self.check(&header)?;
                // A binary frame that fits a read buffer is left in `buf`
                // until all of it has arrived: a relay's fast lane then
                // takes it with the frames after it, where a frame begun
                // here would go the slow way, one per read that ends inside
                // a frame. Its payload would wait in `buf` all the same;
                // only a larger frame is begun, so that its length sizes
                // the reads (`bytes_wanted`). Text is begun at once, to
                // fail fast on invalid UTF-8 as it arrives.
                let whole = header_len as u64 + header.payload_len;
                let fits = buf.capacity().max(spare::BUFFER_SIZE) as u64;
                if header.opcode == OpCode::Binary && whole > buf.len() as u64 && whole <= fits {
                    return Ok(None);
                }
                buf.advance(header_len);
                self.begin(&header);
                InFrame {
                    // Checked against the limits, so it fits in memory.
                    len: header.payload_len as usize,
                    done: 0,
                    mask: header.mask,
                    opcode: header.opcode,
                    fin: header.fin,
                    rsv1: header.rsv1,
                }
            }
        };
        let available = buf.len().min(frame.len);
        if available > frame.done {
            let fresh = &mut buf[frame.done..available];
            self.arrived(frame.opcode, frame.mask, fresh, frame.done)?;
            frame.done = available;
        }
        if frame.done < frame.len {
            self.frame = Some(frame);
            return Ok(None);
        }
        self.frame = None;
        self.finish(frame.opcode, frame.fin, &buf[..frame.len])?;
        Ok(Some(DecodedHead {
            fin: frame.fin,
            opcode: frame.opcode,
            rsv1: frame.rsv1,
            len: frame.len,
        }))
    }

    /// The next frame, if all of it is in `bytes` (no frame partly decoded
    /// before) and `accept` takes its header: checked, unmasked and
    /// validated in place, with the length of its header (its payload
    /// follows). Otherwise `Ok(None)`, and nothing changed: the frame is
    /// left for [`Self::decode`]. A proxy's fast lane decodes a run of
    /// frames this way and consumes them from its buffer at once.
    pub(crate) fn decode_whole(
        &mut self,
        bytes: &mut [u8],
        accept: impl FnOnce(&FrameHeader) -> bool,
    ) -> Result<Option<(DecodedHead, usize)>, ProtocolError> {
        if self.frame.is_some() {
            return Ok(None);
        }
        let Some((header, header_len)) = FrameHeader::decode(bytes)? else {
            return Ok(None);
        };
        if header.payload_len > (bytes.len() - header_len) as u64 {
            return Ok(None);
        }
        self.check(&header)?;
        if !accept(&header) {
            return Ok(None);
        }
        self.begin(&header);
        // Whole, and checked against the limits: it fits in memory.
        let len = header.payload_len as usize;
        let payload = &mut bytes[header_len..header_len + len];
        self.arrived(header.opcode, header.mask, payload, 0)?;
        self.finish(header.opcode, header.fin, payload)?;
        let head = DecodedHead {
            fin: header.fin,
            opcode: header.opcode,
            rsv1: header.rsv1,
            len,
        };
        Ok(Some((head, header_len)))
    }

    /// Takes the leading run of frames in `bytes` that are each a whole
    /// message in one frame: FIN, text or binary, no RSV bits, unmasked,
    /// under 64 KiB. That is what a pushing server sends most, and such a
    /// frame can be judged from its two or four header bytes.
    /// The checks are [`Self::check`]'s and [`Self::arrived`]'s for exactly
    /// these frames, and a whole message leaves the decoder as it found it,
    /// so the run needs no per-frame state. Stops before any other frame,
    /// an incomplete one, one longer than `limit` (what the other leg may
    /// send), invalid text (left for [`Self::decode`] to report), and once
    /// `budget` bytes were taken; counts the frames taken in `passed`.
    /// Returns the bytes taken.
    pub(crate) fn skim(
        &self,
        bytes: &[u8],
        budget: usize,
        limit: u64,
        passed: &mut Passed,
    ) -> usize {
        let limits = &self.config.limits;
        let between_messages = self.frame.is_none() && self.message.is_none();
        if !between_messages
            || self.close_received
            || self.config.incoming_mask == MaskPolicy::Required
            || limits.max_fragments == 0
        {
            return 0;
        }
        let max_len = limits.max_frame_len.min(limits.max_message_len).min(limit);
        // A length byte up to this is the whole length of a frame that fits
        // (126 and 127 announce longer lengths; a set mask bit is above it):
        // one comparison for most pushed frames.
        let short_max = max_len.min(125) as u8;
        // Frames are taken one by one until one is followed by another of
        // the same length byte; from there runs of alike frames are taken
        // four at a time. With the call for a run outside the walk's loop,
        // each loop keeps its counts in registers.
        let mut counts = Skimmed::default();
        let mut at = 0;
        loop {
            let run;
            (at, run) = walk(bytes, at, budget, short_max, max_len, &mut counts);
            let Some(run) = run else {
                break;
            };
            let alike = if run.text {
                alike_frames::<true>(bytes, at, run.stride, run.header_len, budget)
            } else {
                alike_frames::<false>(bytes, at, run.stride, run.header_len, budget)
            };
            counts.frames += alike;
            counts.long_frames += alike * u64::from(run.header_len == 4);
            if run.text {
                counts.texts += alike;
                counts.text_bytes += alike * (run.stride - run.header_len) as u64;
            }
            at += alike as usize * run.stride;
        }
        // The binary frames and the payload bytes follow from the span
        // taken, so a binary frame adds nothing but its count to the loops.
        let Skimmed {
            frames,
            long_frames,
            texts,
            text_bytes,
        } = counts;
        let payload_bytes = at as u64 - 2 * frames - 2 * long_frames;
        passed.add(OpCode::Text, texts, text_bytes);
        passed.add(OpCode::Binary, frames - texts, payload_bytes - text_bytes);
        at
    }

    /// Payload bytes of a frame arrived, `offset` bytes into its payload:
    /// unmasked in place, and validated as they come if they are text.
    fn arrived(
        &mut self,
        opcode: OpCode,
        mask: Option<[u8; 4]>,
        fresh: &mut [u8],
        offset: usize,
    ) -> Result<(), ProtocolError> {
        if let Some(key) = mask {
            apply_mask(fresh, key, offset);
        }
        if self.validating_utf8(opcode) {
            self.utf8
                .feed(fresh)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// Connection-level checks a header must pass before its payload is read.
    fn check(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        if self.close_received {
            return Err(ProtocolError::FrameAfterClose);
        }
        let rsv = h.rsv_bits();
        let rsv1_misplaced = h.rsv1 && !matches!(h.opcode, OpCode::Text | OpCode::Binary);
        if rsv & !self.allowed_rsv != 0 || rsv1_misplaced {
            return Err(ProtocolError::ReservedBits(rsv));
        }
        match (self.config.incoming_mask, h.mask.is_some()) {
            (MaskPolicy::Required, false) => return Err(ProtocolError::UnmaskedFrame),
            (MaskPolicy::Forbidden, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let limits = &self.config.limits;
        if h.payload_len > limits.max_frame_len {
            return Err(ProtocolError::FrameTooBig {
                size: h.payload_len,
                limit: limits.max_frame_len,
            });
        }
        let (total, fragments) = match (h.opcode, self.message) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            (OpCode::Continuation, Some(m)) => {
                (m.total + h.payload_len, m.fragments.saturating_add(1))
            }
            (OpCode::Text | OpCode::Binary, None) => (h.payload_len, 1),
            _ => return Ok(()),
        };
        if total > limits.max_message_len {
            return Err(ProtocolError::MessageTooBig {
                size: total,
                limit: limits.max_message_len,
            });
        }
        if fragments as usize > limits.max_fragments {
            return Err(ProtocolError::TooManyFragments(limits.max_fragments));
        }
        Ok(())
    }

    /// Updates the message state for a header that passed [`Self::check`].
    fn begin(&mut self, h: &FrameHeader) {
        match h.opcode {
            OpCode::Text | OpCode::Binary => {
                self.utf8.reset();
                self.message = Some(InMessage {
                    opcode: h.opcode,
                    compressed: h.rsv1,
                    total: h.payload_len,
                    fragments: 1,
                });
            }
            OpCode::Continuation => {
                if let Some(m) = &mut self.message {
                    m.total += h.payload_len;
                    m.fragments = m.fragments.saturating_add(1);
                }
            }
            _ => {}
        }
    }

    /// Text is validated here unless it is compressed, in which case the
    /// inflated message is validated by the layer that inflates it.
    fn validating_utf8(&self, opcode: OpCode) -> bool {
        match opcode {
            OpCode::Text | OpCode::Continuation => self
                .message
                .is_some_and(|m| m.opcode == OpCode::Text && !m.compressed),
            _ => false,
        }
    }

    fn finish(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) -> Result<(), ProtocolError> {
        match opcode {
            OpCode::Close => {
                CloseFrame::parse(payload)?;
                self.close_received = true;
            }
            OpCode::Ping | OpCode::Pong => {}
            _ if fin => {
                if self.validating_utf8(opcode) {
                    self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                self.message = None;
            }
            _ => {}
        }
        Ok(())
    }
}

/// What [`FrameDecoder::skim`] took: the frames, those with a 16-bit
/// length, and the text ones with their payload bytes.
#[derive(Debug, Default, Clone, Copy)]
struct Skimmed {
    frames: u64,
    long_frames: u64,
    texts: u64,
    text_bytes: u64,
}

/// A frame followed by one with the same length byte: maybe the first of a
/// run of frames alike, `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
struct Run {
    stride: usize,
    header_len: usize,
    text: bool,
}

/// Takes frames one by one from `at` (those [`FrameDecoder::skim`] takes,
/// up to `short_max` in the length byte or `max_len` in a 16-bit length)
/// until one it cannot take or `budget`, or until a frame is followed by
/// one with the same length byte: then it also returns that [`Run`].
/// Returns where it stopped, having added what it took to `counts`.
// Inlined: a read of one frame (a proxied round trip) would pay a call's
// 50 instructions, 0.9% of the round trip's (callgrind).
#[inline(always)]
fn walk(
    bytes: &[u8],
    mut at: usize,
    budget: usize,
    short_max: u8,
    max_len: u64,
    counts: &mut Skimmed,
) -> (usize, Option<Run>) {
    let Skimmed {
        mut frames,
        mut long_frames,
        mut texts,
        mut text_bytes,
    } = *counts;
    let mut run = None;
    while at < budget {
        let Some(&[first, second]) = bytes.get(at..at + 2) else {
            break;
        };
        // A 16-bit length follows 126, in its shortest form; 127 (a 64-bit
        // length) and a mask bit end the run.
        let (len, header_len) = if second <= short_max {
            (usize::from(second), 2)
        } else {
            match bytes.get(at + 2..at + 4) {
                Some(&[hi, lo]) if second == 126 => {
                    let len = u16::from_be_bytes([hi, lo]);
                    if len < 126 || u64::from(len) > max_len {
                        break;
                    }
                    (usize::from(len), 4)
                }
                _ => break,
            }
        };
        let start = at + header_len;
        let Some(payload) = bytes.get(start..start + len) else {
            break;
        };
        match first {
            0x82 => {}
            0x81 if is_whole_text(payload) => {
                texts += 1;
                text_bytes += len as u64;
            }
            _ => break,
        }
        frames += 1;
        long_frames += u64::from(header_len == 4);
        at = start + len;
        // A feed's messages are often alike in length.
        if bytes.get(at + 1) == Some(&second) {
            run = Some(Run {
                stride: header_len + len,
                header_len,
                text: first == 0x81,
            });
            break;
        }
    }
    *counts = Skimmed {
        frames,
        long_frames,
        texts,
        text_bytes,
    };
    (at, run)
}

/// The frames from `from` on that are alike the one of `stride` bytes
/// before it (the same `header_len` header bytes; valid text if `TEXT`),
/// counted four at a time while they start before `until`. Their headers are
/// read four at a time, loads that do not wait on one another, where
/// [`walk`] waits for each length byte to find the next frame
/// (`cargo bench -p frameway-wire --bench core -- pass/`: `20B binary`
/// against `16-24B binary`).
// Not inlined, and one copy for text and one for binary frames: on its
// own each loop keeps its few values in registers, where inlined into
// `skim` it spilled them to the stack.
#[inline(never)]
fn alike_frames<const TEXT: bool>(
    bytes: &[u8],
    from: usize,
    stride: usize,
    header_len: usize,
    until: usize,
) -> u64 {
    // A word holds the header and, after a short one, payload bytes.
    let header_bits = if header_len == 2 { 0xffff } else { u32::MAX };
    // Four frames from `at` start before `until`, and a word can be read
    // after the fourth's start: one bound for the loop.
    let bound = until
        .saturating_sub(3 * stride)
        .min((bytes.len() + 1).saturating_sub(4 * stride + 2));
    let word = |at: usize| {
        debug_assert!(at + 4 <= bytes.len());
        // SAFETY: every `at` read is at most three strides after a start
        // below `bound`, or the start one stride before `from` (itself
        // below `bound`), and `bound + 4 * stride + 2 <= bytes.len()`; a
        // stride is at least the two bytes of a header, so `at + 4 <=
        // bytes.len()`. The bounds checks this saves were a third of the
        // loop's instructions.
        let four = unsafe { bytes.as_ptr().add(at).cast::<[u8; 4]>().read_unaligned() };
        u32::from_le_bytes(four) & header_bits
    };
    let mut at = from;
    if at >= bound {
        return 0;
    }
    let header = word(from - stride);
    while at < bound {
        let differ = (0..4).fold(0, |differ, i| differ | (word(at + i * stride) ^ header));
        let payload = |i: usize| &bytes[at + i * stride + header_len..at + (i + 1) * stride];
        if differ != 0 || TEXT && !(0..4).all(|i| is_whole_text(payload(i))) {
            break;
        }
        at += 4 * stride;
    }
    ((at - from) / stride) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::Limits;

    fn frame(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader::new(fin, opcode, mask, payload.len() as u64);
        let mut out = [0u8; crate::MAX_HEADER_LEN];
        let n = header.encode(&mut out);
        let mut bytes = out[..n].to_vec();
        let start = bytes.len();
        bytes.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut bytes[start..], key, 0);
        }
        bytes
    }

    const KEY: Option<[u8; 4]> = Some([9, 8, 7, 6]);

    fn server() -> FrameDecoder {
        FrameDecoder::new(Config::new(Role::Server))
    }

    fn decode_all(d: &mut FrameDecoder, bytes: &[u8]) -> Result<Vec<Frame>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = d.decode(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn decodes_byte_by_byte() {
        let wire = frame(true, OpCode::Text, KEY, "héllo wörld".as_bytes());
        let mut d = server();
        let mut buf = BytesMut::new();
        let mut got = None;
        for b in &wire {
            assert!(got.is_none());
            buf.extend_from_slice(std::slice::from_ref(b));
            got = d.decode(&mut buf).unwrap();
        }
        assert_eq!(&got.unwrap().payload[..], "héllo wörld".as_bytes());
        assert!(buf.is_empty());
    }

    #[test]
    fn server_requires_masking_and_client_forbids_it() {
        let mut d = server();
        assert_eq!(
            decode_all(&mut d, &frame(true, OpCode::Binary, None, b"x")),
            Err(ProtocolError::UnmaskedFrame)
        );
        let mut d = FrameDecoder::new(Config::new(Role::Client));
        assert_eq!(
            decode_all(&mut d, &frame(true, OpCode::Binary, KEY, b"x")),
            Err(ProtocolError::MaskedFrame)
        );
        let mut relaxed = Config::new(Role::Server);
        relaxed.incoming_mask = MaskPolicy::Any;
        let mut d = FrameDecoder::new(relaxed);
        assert_eq!(
            decode_all(&mut d, &frame(true, OpCode::Binary, None, b"x"))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn reserved_bits_need_an_extension() {
        let mut wire = frame(true, OpCode::Text, KEY, b"x");
        wire[0] |= 0x40;
        assert_eq!(
            decode_all(&mut server(), &wire),
            Err(ProtocolError::ReservedBits(0b100))
        );
        let mut d = server();
        d.allow_rsv1();
        assert!(decode_all(&mut d, &wire).unwrap()[0].rsv1);
        // Even with the extension, RSV1 on a control frame or RSV2 is an error.
        let mut ping = frame(true, OpCode::Ping, KEY, b"");
        ping[0] |= 0x40;
        assert_eq!(
            decode_all(&mut d, &ping),
            Err(ProtocolError::ReservedBits(0b100))
        );
        let mut rsv2 = frame(true, OpCode::Text, KEY, b"x");
        rsv2[0] |= 0x20;
        assert_eq!(
            decode_all(&mut server(), &rsv2),
            Err(ProtocolError::ReservedBits(0b010))
        );
    }

    #[test]
    fn fragments_with_interleaved_control_frames() {
        let mut wire = frame(false, OpCode::Text, KEY, b"Hel");
        wire.extend(frame(true, OpCode::Ping, KEY, b"p"));
        wire.extend(frame(false, OpCode::Continuation, KEY, b"lo "));
        wire.extend(frame(true, OpCode::Continuation, KEY, b"there"));
        let frames = decode_all(&mut server(), &wire).unwrap();
        let kinds: Vec<_> = frames.iter().map(|f| (f.opcode, f.fin)).collect();
        assert_eq!(
            kinds,
            [
                (OpCode::Text, false),
                (OpCode::Ping, true),
                (OpCode::Continuation, false),
                (OpCode::Continuation, true)
            ]
        );
    }

    #[test]
    fn continuation_sequence_errors() {
        assert_eq!(
            decode_all(&mut server(), &frame(true, OpCode::Continuation, KEY, b"x")),
            Err(ProtocolError::UnexpectedContinuation)
        );
        let mut wire = frame(false, OpCode::Text, KEY, b"x");
        wire.extend(frame(true, OpCode::Binary, KEY, b"y"));
        assert_eq!(
            decode_all(&mut server(), &wire),
            Err(ProtocolError::ExpectedContinuation)
        );
    }

    #[test]
    fn invalid_utf8_fails_before_the_frame_is_complete() {
        let payload =
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64";
        let wire = frame(true, OpCode::Text, KEY, payload);
        let mut d = server();
        // Header plus the first 13 payload bytes: valid text then 0xF4 0x90,
        // in a buffer with room for the whole frame (a binary frame would
        // wait there whole).
        let mut buf = BytesMut::with_capacity(4096);
        buf.extend_from_slice(&wire[..6 + 13]);
        assert_eq!(d.decode(&mut buf), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn a_binary_frame_that_fits_a_read_buffer_waits_there_whole() {
        let wire = frame(true, OpCode::Binary, KEY, &[7; 100]);
        let mut d = server();
        let mut buf = BytesMut::with_capacity(4096);
        buf.extend_from_slice(&wire[..50]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], &wire[..50], "nothing taken yet");
        buf.extend_from_slice(&wire[50..]);
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().payload, vec![7; 100]);
        // So does one that fits a read buffer, in a buffer without room.
        let mut buf = BytesMut::from(&wire[..50]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 50);
        // One larger than a read buffer is taken as it comes.
        let wire = frame(true, OpCode::Binary, KEY, &[7; spare::BUFFER_SIZE]);
        let mut buf = BytesMut::from(&wire[..50]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 50 - 14);
        assert_eq!(d.bytes_wanted(buf.len()), spare::BUFFER_SIZE - (50 - 14));
    }

    #[test]
    fn invalid_utf8_across_fragments() {
        let mut wire = frame(false, OpCode::Text, KEY, b"ok \xe2\x82");
        wire.extend(frame(true, OpCode::Continuation, KEY, b"\xac fine"));
        assert_eq!(decode_all(&mut server(), &wire).unwrap().len(), 2);
        let mut wire = frame(false, OpCode::Text, KEY, b"ok \xe2\x82");
        wire.extend(frame(true, OpCode::Continuation, KEY, b"\x41"));
        assert_eq!(
            decode_all(&mut server(), &wire),
            Err(ProtocolError::InvalidUtf8)
        );
        // Text that ends mid-code-point.
        let wire = frame(true, OpCode::Text, KEY, b"ok \xe2\x82");
        assert_eq!(
            decode_all(&mut server(), &wire),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn binary_is_not_utf8_checked() {
        let wire = frame(true, OpCode::Binary, KEY, b"\xff\xfe");
        assert_eq!(decode_all(&mut server(), &wire).unwrap().len(), 1);
    }

    #[test]
    fn limits_are_checked_from_the_header_and_on_the_running_total() {
        let mut config = Config::new(Role::Server);
        config.limits = Limits::default()
            .with_max_frame_len(10)
            .with_max_message_len(15)
            .with_max_fragments(3);
        // The header alone (no payload yet) trips the frame limit.
        let wire = frame(true, OpCode::Binary, KEY, &[0; 11]);
        let mut d = FrameDecoder::new(config);
        assert_eq!(
            d.decode(&mut BytesMut::from(&wire[..6])),
            Err(ProtocolError::FrameTooBig {
                size: 11,
                limit: 10
            })
        );
        let mut wire = frame(false, OpCode::Binary, KEY, &[0; 8]);
        wire.extend(frame(true, OpCode::Continuation, KEY, &[0; 8]));
        assert_eq!(
            decode_all(&mut FrameDecoder::new(config), &wire),
            Err(ProtocolError::MessageTooBig {
                size: 16,
                limit: 15
            })
        );
        let mut wire = Vec::new();
        wire.extend(frame(false, OpCode::Binary, KEY, b"a"));
        for _ in 0..3 {
            wire.extend(frame(false, OpCode::Continuation, KEY, b"a"));
        }
        assert_eq!(
            decode_all(&mut FrameDecoder::new(config), &wire),
            Err(ProtocolError::TooManyFragments(3))
        );
    }

    #[test]
    fn close_frames_are_validated_and_end_the_stream() {
        let wire = frame(true, OpCode::Close, KEY, &1005u16.to_be_bytes());
        assert_eq!(
            decode_all(&mut server(), &wire),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        let mut wire = frame(true, OpCode::Close, KEY, &1000u16.to_be_bytes());
        wire.extend(frame(true, OpCode::Text, KEY, b"late"));
        let mut d = server();
        assert_eq!(
            decode_all(&mut d, &wire),
            Err(ProtocolError::FrameAfterClose)
        );
        assert!(d.close_received());
    }

    #[test]
    fn large_payloads_share_the_read_buffer_and_small_ones_do_not() {
        let wire = frame(true, OpCode::Binary, KEY, &[7; COPY_BELOW]);
        let mut buf = BytesMut::from(&wire[..]);
        let start = buf.as_ptr() as usize;
        let f = server().decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.payload.as_ptr() as usize, start + 8);

        let wire = frame(true, OpCode::Binary, KEY, &[7; COPY_BELOW - 1]);
        let mut buf = BytesMut::from(&wire[..]);
        let (start, end) = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len());
        let f = server().decode(&mut buf).unwrap().unwrap();
        let at = f.payload.as_ptr() as usize;
        assert!(at < start || at >= end, "a small payload is copied out");
        assert_eq!(&f.payload[..], &[7; COPY_BELOW - 1][..]);
    }

    /// `skim` takes runs of alike frames four at a time: whatever a run
    /// holds (a frame of another length or kind, invalid text, a cut frame)
    /// and wherever the budget ends, it must take exactly the frames a
    /// frame-by-frame skim takes, and count them alike.
    #[test]
    fn skim_takes_a_run_of_alike_frames_as_it_takes_them_one_by_one() {
        let decoder = FrameDecoder::new(Config::new(Role::Client));
        let alike = |first: u8, len: usize| {
            let mut bytes = vec![first];
            match len {
                0..=125 => bytes.push(len as u8),
                _ => bytes.extend_from_slice(&[126, (len >> 8) as u8, len as u8]),
            }
            bytes.resize(bytes.len() + len, b'a');
            bytes
        };
        // The last one is cut: the bytes end with it.
        let odd_ones: [&dyn Fn(u8, usize) -> Vec<u8>; 5] = [
            &|first, len| alike(first, len + 1),
            &|first, len| alike(first ^ 0x03, len),
            &|_, len| alike(0x02, len),
            &|first, len| {
                let mut bytes = alike(first, len);
                *bytes.last_mut().unwrap() = 0xff;
                bytes
            },
            &|first, len| alike(first, len)[..len / 2 + 1].to_vec(),
        ];
        for first in [0x81, 0x82] {
            for len in [0, 3, 20, 125, 126, 300] {
                let one = alike(first, len);
                for (kind, odd_one) in odd_ones.iter().enumerate() {
                    for odd_at in [0, 1, 3, 4, 5, 8, 9, 12] {
                        let mut frames = vec![one.clone(); 13];
                        frames[odd_at] = odd_one(first, len);
                        if kind == odd_ones.len() - 1 {
                            frames.truncate(odd_at + 1);
                        }
                        let bytes = frames.concat();
                        for budget in [1, one.len() * 4, one.len() * 4 + 1, usize::MAX] {
                            let (mut expected, mut counted) = (0, Passed::default());
                            for frame in &frames {
                                if expected >= budget {
                                    break;
                                }
                                let taken = decoder.skim(frame, usize::MAX, u64::MAX, &mut counted);
                                expected += taken;
                                if taken < frame.len() {
                                    break;
                                }
                            }
                            let mut passed = Passed::default();
                            let taken = decoder.skim(&bytes, budget, u64::MAX, &mut passed);
                            let context = format!("{first:#x} x {len}, odd at {odd_at}, {budget}");
                            assert_eq!(taken, expected, "{context}");
                            assert_eq!(passed, counted, "{context}");
                        }
                    }
                }
            }
        }
    }

    /// `skim` reads a frame's first bytes a second time, for speed: every
    /// frame it takes must be one `decode_whole` takes alike, leaving the
    /// decoder as it was, and it must take every such frame it can judge
    /// (whole, unmasked, FIN, text or binary, a shortest-form length under
    /// 64 KiB). Every first two bytes, several length fields, valid and
    /// invalid text, and decoders that differ in role, limits and state.
    #[test]
    fn skim_takes_exactly_the_frames_decode_whole_takes_whole() {
        let client = || FrameDecoder::new(Config::new(Role::Client));
        let mut small = Config::new(Role::Client);
        small.limits = Limits {
            max_message_len: 1000,
            ..Limits::DEFAULT
        };
        let mut mid_message = client();
        let opening = frame(false, OpCode::Text, None, b"a");
        mid_message
            .decode_whole(&mut opening.clone(), |_| true)
            .unwrap()
            .unwrap();
        let decoders = [client(), server(), FrameDecoder::new(small), mid_message];
        for decoder in &decoders {
            for first in 0..=255u8 {
                for second in 0..=255u8 {
                    let lengths: &[Option<u16>] = match second & 0x7f {
                        126 => &[Some(5), Some(126), Some(1000), Some(1001)],
                        127 => &[Some(0)],
                        _ => &[None],
                    };
                    for &length in lengths {
                        for fill in [b'a', 0xff] {
                            let mut bytes = vec![first, second];
                            let mut len = usize::from(second & 0x7f);
                            if let Some(length) = length {
                                if second & 0x7f == 127 {
                                    bytes.extend_from_slice(&3u64.to_be_bytes());
                                    len = 3;
                                } else {
                                    bytes.extend_from_slice(&length.to_be_bytes());
                                    len = usize::from(length);
                                }
                            }
                            if second & 0x80 != 0 {
                                bytes.extend_from_slice(&[1, 2, 3, 4]);
                            }
                            bytes.resize(bytes.len() + len, fill);
                            let mut passed = Passed::default();
                            let taken = decoder.skim(&bytes, usize::MAX, u64::MAX, &mut passed);
                            let mut after = decoder.clone();
                            let decoded = after.decode_whole(&mut bytes.clone(), |_| true);
                            let judged = match &decoded {
                                Ok(Some((head, _))) => {
                                    head.fin
                                        && !head.rsv1
                                        && matches!(head.opcode, OpCode::Text | OpCode::Binary)
                                        && second & 0x80 == 0
                                        && second != 127
                                        && length.is_none_or(|l| l >= 126)
                                }
                                _ => false,
                            };
                            let context = format!("{bytes:02x?} on {decoder:?}");
                            if judged {
                                let Ok(Some((head, header_len))) = decoded else {
                                    unreachable!()
                                };
                                assert_eq!(taken, header_len + head.len, "{context}");
                                let counted =
                                    (passed.frames(head.opcode), passed.bytes(head.opcode));
                                assert_eq!(counted, (1, head.len as u64), "{context}");
                                assert_eq!(format!("{after:?}"), format!("{decoder:?}"));
                            } else {
                                assert_eq!(taken, 0, "{context}");
                                assert!(passed.is_empty(), "{context}");
                            }
                        }
                    }
                }
            }
        }
    }
}
