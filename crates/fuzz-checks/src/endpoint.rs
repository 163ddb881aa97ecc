//! Every use of [`Protocol`] by the checks, in one place: building an
//! endpoint, reading a byte stream through it in chosen reads, and decoding
//! what it queued as its peer would. When `Protocol`'s API changes, this is
//! the file to adapt.

use bytes::BytesMut;
use frameway_wire::deflate::Deflate;
use frameway_wire::{
    CloseFrame, Config, Frame, FrameDecoder, Limits, MaskPolicy, Message, Mode, OpCode, Passed,
    Protocol, ProtocolError, Role,
};

/// Masking keys that differ from frame to frame yet repeat from run to
/// run, so two runs over the same input queue the same bytes.
fn counting_entropy(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
}

/// The role a flags byte picks: its low bit set is a client.
pub fn role(flags: u8) -> Role {
    if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    }
}

/// The other end's role.
pub fn peer(role: Role) -> Role {
    match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}

/// An endpoint in `role` with receive `limits`; `any_mask` accepts frames
/// masked or not, so that raw fuzz bytes reach past the masking check.
pub fn endpoint(role: Role, limits: Limits, any_mask: bool) -> Protocol {
    let mut config = Config::new(role);
    config.limits = limits;
    if any_mask {
        config.incoming_mask = MaskPolicy::Any;
    }
    Protocol::new(config, counting_entropy)
}

/// A proxy's leg: [`endpoint`] in [`Mode::Relay`].
pub fn relay_leg(role: Role, limits: Limits, any_mask: bool) -> Protocol {
    let mut leg = endpoint(role, limits, any_mask);
    leg.set_mode(Mode::Relay);
    leg
}

/// Reads the next frame from `buf`.
pub fn read_frame(
    endpoint: &mut Protocol,
    buf: &mut BytesMut,
) -> Result<Option<Frame>, ProtocolError> {
    endpoint.read_frame(buf)
}

/// Passes the data frames at the front of `buf` from one leg to the other
/// (the relay's fast lane), counting them in `passed`.
pub fn pass_frames(
    from: &mut Protocol,
    buf: &mut BytesMut,
    to: &mut Protocol,
    max_queued: usize,
    passed: &mut Passed,
) -> Result<(), ProtocolError> {
    from.pass_frames(buf, to, max_queued, passed)
}

/// Turns permessage-deflate on, as a handshake that negotiated it would.
pub fn negotiate(endpoint: &mut Protocol, deflate: Deflate) {
    endpoint.set_deflate(deflate);
}

/// Splits outgoing messages into frames of at most `size` bytes.
pub fn fragment(endpoint: &mut Protocol, size: Option<usize>) {
    endpoint.set_fragment_size(size);
}

/// Queues `message`.
pub fn send(endpoint: &mut Protocol, message: &Message) -> Result<(), ProtocolError> {
    endpoint.send(message)
}

/// Queues one frame.
pub fn send_frame(
    endpoint: &mut Protocol,
    fin: bool,
    opcode: OpCode,
    payload: &[u8],
) -> Result<(), ProtocolError> {
    endpoint.send_frame(fin, opcode, payload)
}

/// Takes everything the endpoint queued.
pub fn take_output(endpoint: &mut Protocol) -> BytesMut {
    endpoint.take_output()
}

/// What a read loop saw: every item in order, and the first error.
#[derive(Debug, PartialEq)]
pub struct Reads<T> {
    /// Messages or frames, in order.
    pub items: Vec<T>,
    /// The error that ended the stream, if any.
    pub error: Option<ProtocolError>,
    /// Whether our close frame had gone out before that error.
    pub closed_before_error: bool,
}

/// Feeds `chunks` one read at a time, taking out every whole message.
pub fn read_messages(endpoint: &mut Protocol, chunks: &[&[u8]]) -> Reads<Message> {
    read_with(endpoint, chunks, Protocol::read_message)
}

/// Feeds `chunks` one read at a time, taking out every frame.
pub fn read_frames(endpoint: &mut Protocol, chunks: &[&[u8]]) -> Reads<Frame> {
    read_with(endpoint, chunks, Protocol::read_frame)
}

fn read_with<T>(
    endpoint: &mut Protocol,
    chunks: &[&[u8]],
    read: fn(&mut Protocol, &mut BytesMut) -> Result<Option<T>, ProtocolError>,
) -> Reads<T> {
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let closed_before_error = endpoint.close_sent();
            match read(endpoint, &mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(error) => {
                    return Reads {
                        items,
                        error: Some(error),
                        closed_before_error,
                    }
                }
            }
        }
    }
    Reads {
        items,
        error: None,
        closed_before_error: false,
    }
}

/// Decodes what an endpoint in `role` queued as its peer does, failing the
/// check if any of it is not a valid frame for that peer.
pub fn peer_frames(role: Role, mut wire: BytesMut) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new(Config::new(peer(role)));
    decoder.allow_rsv1();
    let mut frames = Vec::new();
    while !wire.is_empty() {
        match decoder.decode(&mut wire) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => panic!("queued output ends in a partial frame"),
            Err(err) => panic!("queued output is not valid for the peer: {err}"),
        }
    }
    frames
}

/// The close frame a frame carries, if it is a close.
pub fn close_of(frame: &Frame) -> Option<Option<CloseFrame>> {
    (frame.opcode == OpCode::Close)
        .then(|| CloseFrame::parse(&frame.payload).expect("a queued close frame parses"))
}
