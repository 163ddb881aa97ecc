//! Per-message compression and inflation (RFC 7692 §7.2) for one
//! connection, with the negotiated windows and context takeover.

use std::mem::MaybeUninit;

use zlib_rs::{Deflate as Compressor, DeflateConfig as ZConfig, DeflateFlush, Method, Strategy};
use zlib_rs::{Inflate as Inflater, InflateFlush, Status};

use super::params::{DeflateConfig, DeflateParams, MIN_WINDOW_BITS};
use crate::config::Role;
use crate::error::ProtocolError;

/// The empty stored block a sync flush ends with: removed from each
/// compressed message by the sender, appended again by the receiver
/// (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How much output inflation adds at a time. The buffer grows by doubling
/// up to this step and never past the limit plus one byte, so a deflate bomb
/// costs at most the limit however far it would inflate.
pub const INFLATE_CHUNK: usize = 16 * 1024;

/// The smallest window zlib's compressor supports for raw deflate.
const MIN_COMPRESSOR_BITS: u8 = 9;

/// One connection's permessage-deflate state: a compressor for what we send
/// and an inflater for what we receive, each allocated on first use and
/// kept across messages only with context takeover.
///
/// ```
/// use frameway_wire::deflate::{Deflate, DeflateConfig, DeflateParams};
/// use frameway_wire::Role;
///
/// let params = DeflateParams::default();
/// let mut client = Deflate::new(Role::Client, params, &DeflateConfig::default());
/// let mut server = Deflate::new(Role::Server, params, &DeflateConfig::default());
/// let mut wire = Vec::new();
/// client.compress(&b"hello hello hello hello"[..], true, &mut wire).unwrap();
/// assert!(wire.len() < 23);
/// let mut text = Vec::new();
/// server.inflate(&wire, true, 1 << 20, &mut text).unwrap();
/// assert_eq!(text, b"hello hello hello hello");
/// ```
pub struct Deflate {
    params: DeflateParams,
    // Boxed: an idle or uncompressed connection carries two pointers, not
    // two zlib stream structs.
    compressor: Option<Box<Compressor>>,
    compressor_config: ZConfig,
    /// Drop our compressor after each message (no context takeover).
    reset_compressor: bool,
    inflater: Option<Box<Inflater>>,
    inflater_bits: u8,
    /// Drop the inflater after each message (the peer does not take over).
    reset_inflater: bool,
    threshold: usize,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate")
            .field("params", &self.params)
            .field("compressor_allocated", &self.compressor.is_some())
            .field("inflater_allocated", &self.inflater.is_some())
            .finish_non_exhaustive()
    }
}

impl Deflate {
    /// The state for our `role` on a connection that agreed on `params`,
    /// compressing with `config`'s level, memory level and threshold.
    ///
    /// A peer that asked for an 8-bit window gets a compressor that makes no
    /// back-reference longer than one byte (zlib's run-length strategy):
    /// zlib, and zlib-rs after it, cannot compress raw deflate with a
    /// 256-byte window (it silently uses 512 bytes, which a strict 8-bit
    /// inflater rejects), while distance-1 matches are valid for any window.
    /// Inflation uses at least a 9-bit window, since zlib-based peers asked
    /// for 8 bits send 9-bit streams; a larger window decodes any valid
    /// stream the same.
    pub fn new(role: Role, params: DeflateParams, config: &DeflateConfig) -> Self {
        let (ours, theirs, our_reset, their_reset) = match role {
            Role::Server => (
                params.server_max_window_bits,
                params.client_max_window_bits,
                params.server_no_context_takeover,
                params.client_no_context_takeover,
            ),
            Role::Client => (
                params.client_max_window_bits,
                params.server_max_window_bits,
                params.client_no_context_takeover,
                params.server_no_context_takeover,
            ),
        };
        let strategy = if ours == MIN_WINDOW_BITS {
            Strategy::Rle
        } else {
            Strategy::Default
        };
        Deflate {
            params,
            compressor: None,
            compressor_config: ZConfig {
                level: i32::from(config.level.min(9)),
                method: Method::Deflated,
                // Negative: raw deflate, no zlib header.
                window_bits: -i32::from(ours.max(MIN_COMPRESSOR_BITS)),
                mem_level: i32::from(config.mem_level.clamp(1, 9)),
                strategy,
            },
            reset_compressor: our_reset,
            inflater: None,
            // A peer granted 8 bits may well compress with zlib's 9.
            inflater_bits: theirs.max(MIN_COMPRESSOR_BITS),
            reset_inflater: their_reset,
            threshold: config.compress_if_bigger_than,
        }
    }

    /// What was negotiated.
    pub fn params(&self) -> &DeflateParams {
        &self.params
    }

    /// Whether a whole message of `len` bytes is worth compressing (it is
    /// larger than `compress_if_bigger_than`).
    pub fn wants(&self, len: usize) -> bool {
        len > self.threshold
    }

    /// Compresses `data`, all of a message or the next part of it, onto the
    /// end of `out`. With `fin` (the last part), the sync-flush tail is
    /// left off and, without context takeover, the compressor is dropped so
    /// that the connection holds none between messages. Each part is
    /// flushed, so a fragment carries everything given for it.
    pub fn compress(
        &mut self,
        data: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let config = self.compressor_config;
        let z = self
            .compressor
            .get_or_insert_with(|| Box::new(Compressor::new_with_config(config)));
        let start = out.len();
        let mut input = data;
        loop {
            // Deflate expands incompressible data by 5 bytes per stored
            // block; this room avoids most extra rounds.
            out.reserve(input.len() + input.len() / 64 + 16);
            let (before_in, before_out) = (z.total_in(), z.total_out());
            z.compress_uninit(input, out.spare_capacity_mut(), DeflateFlush::SyncFlush)
                .map_err(|_| ProtocolError::Extension("compression failed"))?;
            let consumed = (z.total_in() - before_in) as usize;
            let produced = (z.total_out() - before_out) as usize;
            // SAFETY: the compressor initialised `produced` spare bytes.
            unsafe { out.set_len(out.len() + produced) };
            input = &input[consumed..];
            // A flush that filled the buffer may have more to write.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if fin {
            if out.len() == start {
                // zlib writes nothing for a flush with no input since the
                // last one; the receiver's tail still needs the empty stored
                // block's header byte before it (RFC 7692 §7.2.3.6).
                out.push(0x00);
            } else if out[start..].ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            }
            if self.reset_compressor {
                self.compressor = None;
            }
        }
        Ok(())
    }

    /// Inflates `data`, all of a compressed message or the next fragment of
    /// it, onto the end of `out`; with `fin`, the removed tail is put back
    /// first. `limit` is how many bytes `out` may hold in all: past it this
    /// fails with [`ProtocolError::MessageTooBig`] (close code 1009) as
    /// soon as the output crosses it. `out` grows by doubling from
    /// [`INFLATE_CHUNK`] and never past `limit + 1` bytes, whatever the
    /// input would inflate to.
    ///
    /// Without context takeover from the peer, the inflater is dropped after
    /// the last fragment, so that the connection holds none between
    /// messages.
    pub fn inflate(
        &mut self,
        data: &[u8],
        fin: bool,
        limit: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let bits = self.inflater_bits;
        let z = self
            .inflater
            .get_or_insert_with(|| Box::new(Inflater::new(false, bits)));
        let cap = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let mut input = data;
        let mut tail_left = fin;
        let mut ended = false;
        loop {
            if input.is_empty() && tail_left {
                input = &TAIL;
                tail_left = false;
            }
            if out.len() == out.capacity() {
                if out.len() >= cap {
                    return Err(too_big(out.len(), limit));
                }
                // Double, from one chunk up, never past the cap.
                let step = out.len().max(INFLATE_CHUNK);
                out.reserve_exact(step.min(cap - out.len()));
            }
            let room = out.capacity().min(cap) - out.len();
            let spare: &mut [MaybeUninit<u8>] = &mut out.spare_capacity_mut()[..room];
            let (before_in, before_out) = (z.total_in(), z.total_out());
            let status = z
                .decompress_uninit(input, spare, InflateFlush::NoFlush)
                .map_err(|_| ProtocolError::Extension("invalid compressed data"))?;
            let consumed = (z.total_in() - before_in) as usize;
            let produced = (z.total_out() - before_out) as usize;
            // SAFETY: the inflater initialised `produced` spare bytes.
            unsafe { out.set_len(out.len() + produced) };
            if out.len() as u64 > limit {
                return Err(too_big(out.len(), limit));
            }
            input = &input[consumed..];
            if status == Status::StreamEnd {
                // A final block (BFINAL): this stream is over, and what
                // follows it in the message (the tail) carries nothing.
                ended = true;
                break;
            }
            let full = out.len() == out.capacity();
            if input.is_empty() && !tail_left && !full {
                break;
            }
            if consumed == 0 && produced == 0 {
                if input.is_empty() && !tail_left {
                    break;
                }
                // Input and room, yet no progress: not a deflate stream.
                return Err(ProtocolError::Extension("invalid compressed data"));
            }
        }
        // After a final block the next message starts a new stream, which
        // cannot refer to the old window.
        if ended || (fin && self.reset_inflater) {
            self.inflater = None;
        }
        Ok(())
    }
}

fn too_big(size: usize, limit: u64) -> ProtocolError {
    ProtocolError::MessageTooBig {
        size: size as u64,
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(params: DeflateParams) -> (Deflate, Deflate) {
        let config = DeflateConfig::default();
        (
            Deflate::new(Role::Client, params, &config),
            Deflate::new(Role::Server, params, &config),
        )
    }

    fn compress(d: &mut Deflate, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        d.compress(data, true, &mut out).unwrap();
        out
    }

    fn inflate(d: &mut Deflate, data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::new();
        d.inflate(data, true, 64 << 20, &mut out).map(|()| out)
    }

    /// Text with repeats at every distance up to a few KiB.
    fn sample(len: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_u32;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if x % 3 == 0 && out.len() > 600 {
                let back = (x as usize >> 8) % out.len().min(4000) + 1;
                let start = out.len() - back;
                for i in 0..(x as usize % 40).min(len - out.len()) {
                    out.push(out[start + i]);
                }
            } else {
                out.push(b'a' + (x % 26) as u8);
            }
        }
        out
    }

    #[test]
    fn rfc_7692_examples_inflate() {
        let (_, mut server) = pair(DeflateParams::default());
        // §7.2.3.1: "Hello" compressed; §7.2.3.2: again, with takeover.
        assert_eq!(
            inflate(&mut server, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(),
            b"Hello"
        );
        assert_eq!(
            inflate(&mut server, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
            b"Hello"
        );
        // §7.2.3.3: a stored (uncompressed) block.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate(&mut server, &stored).unwrap(), b"Hello");
        // §7.2.3.5: a final block (BFINAL set) ends the stream; the next
        // message starts a new one.
        let (_, mut server) = pair(DeflateParams::default());
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate(&mut server, &bfinal).unwrap(), b"Hello");
        assert!(server.inflater.is_none());
        assert_eq!(
            inflate(&mut server, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(),
            b"Hello"
        );
        // §7.2.3.1 fragmented: the two payloads of one message.
        let (_, mut server) = pair(DeflateParams::default());
        let mut out = Vec::new();
        server
            .inflate(&[0xf2, 0x48, 0xcd], false, 100, &mut out)
            .unwrap();
        server
            .inflate(&[0xc9, 0xc9, 0x07, 0x00], true, 100, &mut out)
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn our_output_has_no_tail_and_matches_the_rfc() {
        let (mut client, _) = pair(DeflateParams::default());
        let once = compress(&mut client, b"Hello");
        assert_eq!(once, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        // With context takeover the second "Hello" is a back-reference.
        assert_eq!(
            compress(&mut client, b"Hello"),
            [0xf2, 0x00, 0x11, 0x00, 0x00]
        );
        // An empty message is the single byte 0x00 (§7.2.3.6).
        let (mut client, mut server) = pair(DeflateParams::default());
        assert_eq!(compress(&mut client, b""), [0x00]);
        assert_eq!(inflate(&mut server, &[0x00]).unwrap(), b"");
    }

    #[test]
    fn round_trips_at_every_window_and_takeover_setting() {
        let data = sample(100_000);
        for bits in 8..=15 {
            for no_takeover in [false, true] {
                let mut params = DeflateParams::default();
                params.server_no_context_takeover = no_takeover;
                params.client_no_context_takeover = no_takeover;
                params.server_max_window_bits = bits;
                params.client_max_window_bits = bits;
                let (mut client, mut server) = pair(params);
                for len in [0, 1, 200, 5_000, 100_000] {
                    for _ in 0..2 {
                        let wire = compress(&mut client, &data[..len]);
                        assert!(!wire.ends_with(&TAIL) || len == 0);
                        assert_eq!(
                            inflate(&mut server, &wire).unwrap(),
                            &data[..len],
                            "{bits} {no_takeover} {len}"
                        );
                        let back = compress(&mut server, &data[..len]);
                        assert_eq!(inflate(&mut client, &back).unwrap(), &data[..len]);
                    }
                }
                // Without takeover nothing is held between messages.
                assert_eq!(client.compressor.is_none(), no_takeover);
                assert_eq!(server.inflater.is_none(), no_takeover);
            }
        }
    }

    #[test]
    fn context_takeover_shrinks_repeats_and_no_takeover_does_not() {
        let data = sample(2_000);
        let (mut with, _) = pair(DeflateParams::default());
        let first = compress(&mut with, &data).len();
        assert!(compress(&mut with, &data).len() < first / 10);
        let mut params = DeflateParams::default();
        params.client_no_context_takeover = true;
        let (mut without, mut server) = pair(params);
        let a = compress(&mut without, &data);
        let b = compress(&mut without, &data);
        assert_eq!(a, b);
        // The receiver need not know: its takeover window does no harm.
        assert_eq!(inflate(&mut server, &a).unwrap(), data);
        assert_eq!(inflate(&mut server, &b).unwrap(), data);
    }

    #[test]
    fn an_8_bit_window_is_honoured_strictly() {
        let data = sample(50_000);
        let mut params = DeflateParams::default();
        params.client_max_window_bits = 8;
        let (mut client, _) = pair(params);
        let first = compress(&mut client, &data);
        let second = compress(&mut client, &data);
        // A strict 256-byte-window inflater accepts what we send.
        let mut strict = Inflater::new(false, 8);
        for wire in [first, second] {
            let mut input = wire.clone();
            input.extend_from_slice(&TAIL);
            let mut out = vec![0u8; data.len() + 1];
            let before = strict.total_out();
            strict
                .decompress(&input, &mut out, InflateFlush::SyncFlush)
                .unwrap();
            assert_eq!(strict.total_out() - before, data.len() as u64);
            assert_eq!(&out[..data.len()], &data[..]);
        }
        // Still compression: runs are encoded, letters entropy-coded.
        let zeros = compress(&mut pair(params).0, &[0u8; 10_000]);
        assert!(zeros.len() < 100, "{}", zeros.len());
    }

    #[test]
    fn a_deflate_bomb_stops_at_the_limit_without_allocating_its_size() {
        let (mut client, mut server) = pair(DeflateParams::default());
        let bomb = compress(&mut client, &vec![0u8; 64 << 20]);
        assert!(bomb.len() < 128 * 1024, "{}", bomb.len());
        let limit = 1 << 20;
        let mut out = Vec::new();
        let err = server.inflate(&bomb, true, limit, &mut out).unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooBig { limit: l, .. } if l == limit));
        assert_eq!(err.close_code(), crate::CloseCode::TOO_BIG);
        assert!(
            out.capacity() as u64 <= limit + INFLATE_CHUNK as u64,
            "{}",
            out.capacity()
        );
        // Fragment by fragment too: each one is held to what is left.
        let (mut client, mut server) = pair(DeflateParams::default());
        let bomb = compress(&mut client, &vec![b'x'; 8 << 20]);
        let mut out = Vec::new();
        let mut failed = false;
        for (i, part) in bomb.chunks(1024).enumerate() {
            let fin = (i + 1) * 1024 >= bomb.len();
            if server.inflate(part, fin, limit, &mut out).is_err() {
                failed = true;
                break;
            }
            assert!(out.len() as u64 <= limit);
        }
        assert!(failed);
        assert!(out.capacity() as u64 <= limit + INFLATE_CHUNK as u64);
        // Exactly at the limit is fine.
        let (mut client, mut server) = pair(DeflateParams::default());
        let wire = compress(&mut client, &vec![7u8; 1000]);
        let mut out = Vec::new();
        server.inflate(&wire, true, 1000, &mut out).unwrap();
        assert_eq!(out.len(), 1000);
    }

    #[test]
    fn garbage_is_invalid_data() {
        let (_, mut server) = pair(DeflateParams::default());
        let err = inflate(&mut server, &[0xff, 0xff, 0xff, 0xff, 0x00]).unwrap_err();
        assert_eq!(err, ProtocolError::Extension("invalid compressed data"));
        assert_eq!(err.close_code(), crate::CloseCode::INVALID_DATA);
    }

    #[test]
    fn fragments_compress_to_one_stream() {
        let data = sample(30_000);
        let (mut client, mut server) = pair(DeflateParams::default());
        let mut parts = Vec::new();
        let chunks: Vec<_> = data.chunks(7_000).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut out = Vec::new();
            client
                .compress(chunk, i + 1 == chunks.len(), &mut out)
                .unwrap();
            parts.push(out);
        }
        let mut out = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            server
                .inflate(part, i + 1 == parts.len(), 1 << 20, &mut out)
                .unwrap();
        }
        assert_eq!(out, data);
        // The whole message, then again as one: still in step.
        let wire = compress(&mut client, &data);
        assert_eq!(inflate(&mut server, &wire).unwrap(), data);
    }

    #[test]
    fn threshold_is_strictly_bigger_than() {
        let config = DeflateConfig::default().compress_if_bigger_than(100);
        let d = Deflate::new(Role::Server, DeflateParams::default(), &config);
        assert!(!d.wants(100));
        assert!(d.wants(101));
    }
}
