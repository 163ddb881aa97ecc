//! `relay`: a proxy's two legs moving arbitrary bytes from one to the
//! other, with the fast lane (`Protocol::pass_frames`) and without it.
//!
//! Asserts: the lane changes nothing a relay can see. As many frames of
//! each opcode, with as many payload bytes, are relayed, the same error
//! ends the stream, and the other leg queues the same bytes (so the frames
//! went in the same order), whatever the reads and wherever the
//! lane's queue bound stops it, and whether the other leg's output was
//! written out between reads (an empty queue lets the lane hand it a read
//! buffer whole: `Output::take_front`).

use std::collections::HashMap;

use bytes::BytesMut;
use frameway_wire::{OpCode, Passed, Protocol, ProtocolError};

use crate::{endpoint, limits, Input};

/// What a relay did with a stream.
#[derive(Debug, PartialEq)]
struct Relayed {
    /// Frames relayed and their payload bytes, by opcode.
    frames: HashMap<OpCode, (u64, u64)>,
    /// The receiving leg's violation, if one ended the stream.
    error: Option<ProtocolError>,
    /// The first frame the other leg refused to send, if any.
    refused: Option<ProtocolError>,
    /// What the other leg queued.
    out: BytesMut,
}

/// The check; see the module documentation.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let role = endpoint::role(flags);
    let any_mask = flags & 2 != 0;
    let written_between_reads = flags & 4 != 0;
    let bound = input.pick(&[0, 1, 30, 200, 4096, usize::MAX]);
    let limits = limits::limits(&mut input);
    let splits = input.splits();
    let wire = input.rest();
    let chunks = splits.chunks(wire);

    let run = |lane: Option<usize>| {
        let mut from = endpoint::relay_leg(role, limits, any_mask);
        let mut to = endpoint::relay_leg(endpoint::peer(role), limits, false);
        relay(&mut from, &mut to, &chunks, lane, written_between_reads)
    };
    let per_frame = run(None);
    let with_lane = run(Some(bound));
    assert_eq!(
        per_frame, with_lane,
        "the fast lane changed what was relayed"
    );
}

/// Relays `chunks` received on `from` to `to`, one frame at a time, after
/// the fast lane has taken what it takes when `lane` gives its bound; takes
/// what `to` queued after each read if `written_between_reads`.
fn relay(
    from: &mut Protocol,
    to: &mut Protocol,
    chunks: &[&[u8]],
    lane: Option<usize>,
    written_between_reads: bool,
) -> Relayed {
    let mut relayed = Relayed {
        frames: HashMap::new(),
        error: None,
        refused: None,
        out: BytesMut::new(),
    };
    let mut buf = BytesMut::new();
    'reads: for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            if let Some(bound) = lane {
                let mut passed = Passed::default();
                let result = endpoint::pass_frames(from, &mut buf, to, bound, &mut passed);
                for (opcode, frames, bytes) in passed.iter() {
                    let tally = relayed.frames.entry(opcode).or_default();
                    tally.0 += frames;
                    tally.1 += bytes;
                }
                if let Err(err) = result {
                    relayed.error = Some(err);
                    break 'reads;
                }
            }
            let frame = match endpoint::read_frame(from, &mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(err) => {
                    relayed.error = Some(err);
                    break 'reads;
                }
            };
            if let Err(err) = endpoint::send_frame(to, frame.fin, frame.opcode, &frame.payload) {
                relayed.refused = Some(err);
                break 'reads;
            }
            let (frames, bytes) = relayed.frames.entry(frame.opcode).or_default();
            *frames += 1;
            *bytes += frame.payload.len() as u64;
        }
        if written_between_reads {
            relayed.out.extend_from_slice(&endpoint::take_output(to));
        }
    }
    relayed.out.extend_from_slice(&endpoint::take_output(to));
    relayed
}
