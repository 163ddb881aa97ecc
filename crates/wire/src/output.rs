//! The bytes a connection has queued for sending.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::encoder::EncodedHeader;
use crate::mask::apply_mask;
use crate::spare;

/// Payloads at least this large are queued by reference rather than copied
/// when they need no masking: below it, a copy costs less than one more
/// slice in a vectored write.
const SHARE_MIN: usize = 4096;
/// A buffer is taken over by the queue ([`Output::take_front`]) only when
/// the bytes it must hand on to a spare are at most this fraction of those
/// it saves copying.
const ADOPT_REST_RATIO: usize = 4;

/// Queued output: small frames copied into one buffer, large unmasked
/// payloads kept as the caller's [`Bytes`]. Write it with one vectored
/// write ([`Buf::chunks_vectored`]) and mark what was written with
/// [`Buf::advance`]; an echoed 64 KiB message then goes out without its
/// payload ever being copied.
///
/// Holds no memory once everything is written.
///
/// ```
/// use bytes::Buf;
/// use frameway_wire::{Config, Message, Protocol, Role};
///
/// let mut server = Protocol::new(Config::new(Role::Server), |b| b.fill(0));
/// server.send(&Message::binary(vec![7u8; 100_000])).unwrap();
/// let out = server.output();
/// // The header, then the payload itself.
/// assert_eq!((out.remaining(), out.chunk().len()), (100_010, 10));
/// let mut slices = [std::io::IoSlice::new(&[]); 4];
/// assert_eq!(out.chunks_vectored(&mut slices), 2);
/// ```
#[derive(Debug, Default)]
pub struct Output {
    /// Whole segments, oldest first, written before `tail`. Boxed, as only
    /// large payloads need it: every idle connection carries an `Output`.
    #[expect(
        clippy::box_collection,
        reason = "a pointer instead of a VecDeque's four words"
    )]
    sealed: Option<Box<VecDeque<Bytes>>>,
    /// Bytes copied in after the last sealed segment.
    tail: BytesMut,
}

impl Output {
    /// The number of bytes queued.
    pub fn len(&self) -> usize {
        self.segments().map(Bytes::len).sum::<usize>() + self.tail.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.sealed.is_none() && self.tail.is_empty()
    }

    /// Whether the queued bytes are all in one piece ([`Buf::chunk`]), so a
    /// plain write takes them all.
    pub fn is_contiguous(&self) -> bool {
        self.sealed.is_none()
    }

    /// Queues a frame: `header`, then `payload` copied and masked with the
    /// header's key if it has one.
    pub(crate) fn push_frame(&mut self, header: &EncodedHeader, payload: &[u8]) {
        let head = header.as_bytes();
        self.reserve(head.len() + payload.len());
        self.tail.put_slice(head);
        let start = self.tail.len();
        self.tail.put_slice(payload);
        if let Some(key) = header.mask {
            apply_mask(&mut self.tail[start..], key, 0);
        }
    }

    /// Queues bytes that are already framed as they must go out.
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.reserve(bytes.len());
            self.tail.put_slice(bytes);
        }
    }

    /// Queues the first `len` bytes of `buf`, already framed as they must go
    /// out, and removes them from `buf`.
    ///
    /// A large front queued behind nothing takes `buf`'s memory over, and
    /// `buf` is left the bytes after it in a spare buffer: a read's worth of
    /// pushed frames goes out without being copied, only the frame the read
    /// ended inside of. Anything else is copied, as a swap would cost more
    /// than the copy, or the queue's order needs the copy.
    pub(crate) fn take_front(&mut self, buf: &mut BytesMut, len: usize) {
        let rest = buf.len() - len;
        if self.is_empty() && len >= SHARE_MIN && rest <= len / ADOPT_REST_RATIO {
            let mut front = std::mem::take(buf);
            // An empty queue may still hold its buffer: it serves the rest.
            self.release();
            if rest > 0 {
                *buf = spare::take();
                buf.extend_from_slice(&front[len..]);
                front.truncate(len);
            }
            self.tail = front;
            return;
        }
        self.push_bytes(&buf[..len]);
        if rest == 0 {
            buf.clear();
        } else {
            buf.advance(len);
        }
    }

    /// Queues a frame whose payload the caller owns as [`Bytes`]: a large
    /// unmasked payload by reference, anything else copied.
    pub(crate) fn push_frame_shared(&mut self, header: &EncodedHeader, payload: &Bytes) {
        if header.mask.is_some() || payload.len() < SHARE_MIN {
            return self.push_frame(header, payload);
        }
        let head = header.as_bytes();
        self.reserve(head.len());
        self.tail.put_slice(head);
        let head = self.tail.split().freeze();
        let sealed = self.sealed.get_or_insert_with(Default::default);
        sealed.push_back(head);
        sealed.push_back(payload.clone());
    }

    /// All queued bytes in one buffer.
    pub(crate) fn take_all(&mut self) -> BytesMut {
        let len = self.len();
        let Some(sealed) = self.sealed.take() else {
            return std::mem::take(&mut self.tail);
        };
        let mut all = BytesMut::with_capacity(len);
        for segment in sealed.iter() {
            all.put_slice(segment);
        }
        all.put_slice(&self.tail);
        self.release();
        all
    }

    fn reserve(&mut self, additional: usize) {
        if self.tail.capacity() == 0 {
            self.tail = spare::take();
        }
        self.tail.reserve(additional);
    }

    /// Lets go of the memory of an empty queue.
    fn release(&mut self) {
        self.tail.clear();
        spare::give(std::mem::take(&mut self.tail));
        self.sealed = None;
    }

    fn segments(&self) -> impl Iterator<Item = &Bytes> {
        self.sealed.iter().flat_map(|sealed| sealed.iter())
    }
}

impl Buf for Output {
    fn remaining(&self) -> usize {
        self.len()
    }

    fn chunk(&self) -> &[u8] {
        match self.segments().next() {
            Some(segment) => segment,
            None => &self.tail,
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let segments = self.segments().map(|b| &b[..]);
        let all = segments.chain(Some(&self.tail[..]).filter(|t| !t.is_empty()));
        let mut n = 0;
        for (slot, bytes) in dst.iter_mut().zip(all) {
            *slot = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        if let Some(sealed) = &mut self.sealed {
            while let Some(front) = sealed.front_mut() {
                if cnt < front.len() {
                    front.advance(cnt);
                    return;
                }
                cnt -= front.len();
                sealed.pop_front();
            }
            self.sealed = None;
        }
        assert!(cnt <= self.tail.len(), "advanced past the queued output");
        if cnt == self.tail.len() {
            // All written: the buffer goes back whole, its room unused.
            self.release();
        } else {
            self.tail.advance(cnt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameEncoder, OpCode};

    fn header(len: usize, mask: Option<[u8; 4]>) -> EncodedHeader {
        FrameEncoder::new(u64::MAX)
            .header(true, OpCode::Binary, false, len as u64, mask)
            .unwrap()
    }

    #[test]
    fn large_unmasked_payloads_are_not_copied_and_order_is_kept() {
        let mut out = Output::default();
        out.push_frame(&header(3, None), b"abc");
        let big = Bytes::from(vec![9u8; SHARE_MIN]);
        out.push_frame_shared(&header(big.len(), None), &big);
        out.push_frame(&header(1, None), b"z");
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(out.chunks_vectored(&mut slices), 3);
        assert_eq!(slices[1].as_ptr(), big.as_ptr());
        let expected = out.take_all();
        assert_eq!(expected.len(), 5 + 4 + SHARE_MIN + 3);
        assert_eq!(&expected[..5], b"\x82\x03abc");
        assert_eq!(&expected[expected.len() - 3..], b"\x82\x01z");
        assert!(out.is_empty());
    }

    #[test]
    fn a_large_front_queued_behind_nothing_takes_the_buffer_over() {
        let mut out = Output::default();
        let mut buf = BytesMut::from(&[7u8; SHARE_MIN + 10][..]);
        buf[SHARE_MIN..].copy_from_slice(b"0123456789");
        let memory = buf.as_ptr();
        out.take_front(&mut buf, SHARE_MIN);
        assert_eq!(out.chunk().as_ptr(), memory, "the front was copied");
        assert_eq!(out.len(), SHARE_MIN);
        assert_eq!(&buf[..], b"0123456789");
        assert_ne!(buf.as_ptr(), memory);
    }

    #[test]
    fn a_front_behind_queued_bytes_or_before_a_large_rest_is_copied() {
        let mut out = Output::default();
        out.push_bytes(b"queued");
        let mut buf = BytesMut::from(&[1u8; SHARE_MIN][..]);
        let memory = buf.as_ptr();
        out.take_front(&mut buf, SHARE_MIN);
        assert_eq!(out.take_all().len(), 6 + SHARE_MIN);
        assert_eq!((buf.len(), buf.as_ptr()), (0, memory));

        let mut buf = BytesMut::from(&[2u8; 2 * SHARE_MIN][..]);
        let memory = buf.as_ptr();
        out.take_front(&mut buf, SHARE_MIN);
        assert_ne!(out.chunk().as_ptr(), memory);
        assert_eq!((out.len(), buf.len()), (SHARE_MIN, SHARE_MIN));
    }

    #[test]
    fn advancing_across_segments_and_masked_payloads_are_copied() {
        let mut out = Output::default();
        let big = Bytes::from(vec![1u8; SHARE_MIN]);
        out.push_frame_shared(&header(big.len(), Some([0, 0, 0, 1])), &big);
        assert!(out.sealed.is_none(), "a masked payload must be copied");
        out.advance(out.len());
        out.push_frame_shared(&header(big.len(), None), &big);
        out.push_frame(&header(2, None), b"hi");
        let total = out.len();
        out.advance(3);
        assert_eq!(out.remaining(), total - 3);
        out.advance(1 + SHARE_MIN);
        assert_eq!(out.chunk(), b"\x82\x02hi");
        out.advance(4);
        assert!(out.is_empty());
        assert_eq!(out.tail.capacity(), 0, "an empty queue holds no buffer");
    }
}
