//! `frame_decoder`: [`FrameDecoder`] on arbitrary bytes in arbitrary reads.
//!
//! Asserts: cutting the stream into different reads changes nothing (the
//! same frames, then the same error); every frame respects the limits and
//! the control-frame rules; an uncompressed text message is valid UTF-8.

use bytes::BytesMut;
use frameway_wire::{Config, Frame, FrameDecoder, MaskPolicy, OpCode, ProtocolError, Role};

use crate::{limits, Input};

/// The check; see the module documentation.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let mut config = Config::new(if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    });
    config.limits = limits::limits(&mut input);
    if flags & 2 != 0 {
        config.incoming_mask = MaskPolicy::Any;
    }
    let rsv1 = flags & 4 != 0;
    let splits = input.splits();
    let wire = input.rest();

    let whole = decode(config, rsv1, &[wire]);
    let split = decode(config, rsv1, &splits.chunks(wire));
    assert_eq!(whole, split, "the reads changed what was decoded");

    let (frames, _) = whole;
    let mut text: Option<Vec<u8>> = None;
    let mut fragments = 0;
    let mut message_len = 0u64;
    for frame in &frames {
        assert!(frame.payload.len() as u64 <= config.limits.max_frame_len);
        if frame.opcode.is_control() {
            assert!(frame.fin && frame.payload.len() <= 125, "{frame:?}");
            assert!(!frame.rsv1, "a control frame with RSV1 was accepted");
            continue;
        }
        assert!(rsv1 || !frame.rsv1, "RSV1 accepted without an extension");
        if frame.opcode != OpCode::Continuation {
            text = (frame.opcode == OpCode::Text && !frame.rsv1).then(Vec::new);
            fragments = 0;
            message_len = 0;
        }
        fragments += 1;
        message_len += frame.payload.len() as u64;
        assert!(fragments <= config.limits.max_fragments);
        if !frame.rsv1 || frame.opcode == OpCode::Continuation {
            assert!(message_len <= config.limits.max_message_len);
        }
        if let Some(text) = text.as_mut() {
            text.extend_from_slice(&frame.payload);
            if frame.fin {
                assert!(std::str::from_utf8(text).is_ok(), "invalid UTF-8 passed");
            }
        }
    }
}

type Decoded = (Vec<Frame>, Option<ProtocolError>);

fn decode(config: Config, rsv1: bool, chunks: &[&[u8]]) -> Decoded {
    let mut decoder = FrameDecoder::new(config);
    if rsv1 {
        decoder.allow_rsv1();
    }
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(err) => return (frames, Some(err)),
            }
        }
    }
    (frames, None)
}
