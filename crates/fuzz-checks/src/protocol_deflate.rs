//! `protocol_deflate`: [`Protocol`](frameway_wire::Protocol) with
//! permessage-deflate negotiated, for every window size (8–15, both
//! directions) with and without context takeover.
//!
//! The parameters go through the real negotiation (the client's offer, the
//! server's acceptance, the client's confirmation), which must agree on
//! both sides. Then, by the input's choice:
//! - round trip: messages from the input are sent compressed (fragmented
//!   or not) and read back in arbitrary reads: each one that fits the
//!   receiver's limit comes back unchanged, each one over it is refused
//!   with 1009;
//! - raw: arbitrary bytes are read frame by frame: the inflated bytes of a
//!   message never exceed the limit, and the reads change nothing.

use frameway_wire::deflate::{Deflate, DeflateConfig, DeflateParams};
use frameway_wire::{CloseCode, Limits, Message, ProtocolError, Role};

use crate::endpoint::{self, Reads};
use crate::Input;

/// The check; see the module documentation.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let Some((client, server)) = negotiate(&mut input) else {
        return;
    };
    let flags = input.byte();
    let (sender_role, receiver_role) = if flags & 1 == 0 {
        (Role::Client, Role::Server)
    } else {
        (Role::Server, Role::Client)
    };
    let limit = u64::from(input.u16()) * 4;
    let limits = Limits::default()
        .with_max_frame_len(u64::MAX >> 1)
        .with_max_message_len(limit);
    let deflates = move |role| match role {
        Role::Client => client.0(),
        Role::Server => server.0(),
    };
    let receiver = || {
        let mut p = endpoint::endpoint(receiver_role, limits, flags & 4 != 0);
        endpoint::negotiate(&mut p, deflates(receiver_role));
        p
    };
    if flags & 2 == 0 {
        round_trip(&mut input, limit, &receiver, || {
            let mut p = endpoint::endpoint(sender_role, Limits::default(), false);
            endpoint::negotiate(&mut p, deflates(sender_role));
            p
        });
    } else {
        raw(input, limit, &receiver);
    }
}

/// Builds a codec for one side once the parameters are known.
struct Side(Box<dyn Fn() -> Deflate>);

impl Side {
    fn new(role: Role, params: DeflateParams, config: DeflateConfig) -> Self {
        Side(Box::new(move || Deflate::new(role, params, &config)))
    }
}

/// Negotiates from the input's configurations; `None` when the server
/// declines (its configuration may ask for what the offer cannot give).
fn negotiate(input: &mut Input<'_>) -> Option<(Side, Side)> {
    let mut config = || {
        let flags = input.byte();
        DeflateConfig::default()
            .server_no_context_takeover(flags & 1 != 0)
            .client_no_context_takeover(flags & 2 != 0)
            .server_max_window_bits(8 + (flags >> 2) % 8)
            .client_max_window_bits(8 + (flags >> 5))
            .level(input.byte() % 10)
            .mem_level(1 + input.byte() % 9)
            .compress_if_bigger_than(usize::from(input.byte()))
    };
    let client_config = config();
    let server_config = config();
    let offer = client_config.offer();
    let server_params = server_config.accept(&[offer])?;
    let client_params = client_config
        .confirm(&[server_params.response()])
        .expect("the client confirms the server's answer to its own offer")
        .expect("the answer names permessage-deflate");
    let agreed = |p: &DeflateParams| {
        (
            p.server_no_context_takeover,
            p.client_no_context_takeover,
            p.server_max_window_bits,
            p.client_max_window_bits,
        )
    };
    assert_eq!(agreed(&client_params), agreed(&server_params));
    if client_config.client_no_context_takeover {
        assert!(client_params.client_no_context_takeover);
    }
    if server_config.server_no_context_takeover {
        assert!(server_params.server_no_context_takeover);
    }
    assert!(client_params.client_max_window_bits <= client_config.client_max_window_bits);
    assert!(server_params.server_max_window_bits <= server_config.server_max_window_bits);
    assert!(client_params.server_max_window_bits <= client_config.server_max_window_bits);
    Some((
        Side::new(Role::Client, client_params, client_config),
        Side::new(Role::Server, server_params, server_config),
    ))
}

fn round_trip(
    input: &mut Input<'_>,
    limit: u64,
    receiver: &dyn Fn() -> frameway_wire::Protocol,
    sender: impl Fn() -> frameway_wire::Protocol,
) {
    let mut sender = sender();
    let mut sent = Vec::new();
    let mut wire = Vec::new();
    let splits = input.splits();
    while !input.is_empty() && sent.len() < 16 {
        let kind = input.byte();
        let seed = input.bytes();
        // Repeating the input makes messages far larger than it, and
        // compressible: the kind of message a bomb is made of.
        let repeat = usize::from(input.byte() >> 4) + 1;
        let payload = seed.repeat(repeat.pow(2));
        let message = if kind & 1 == 0 {
            Message::text(String::from_utf8_lossy(&payload).into_owned())
        } else {
            Message::binary(payload)
        };
        let size = (kind & 2 != 0).then_some(usize::from(kind >> 2) + 1);
        endpoint::fragment(&mut sender, size);
        endpoint::send(&mut sender, &message).expect("an open endpoint sends a data message");
        let bytes = endpoint::take_output(&mut sender);
        sent.push((message, bytes.len() as u64));
        wire.extend_from_slice(&bytes);
    }
    let mut receiver = receiver();
    let reads = endpoint::read_messages(&mut receiver, &splits.chunks(&wire));
    let mut got = reads.items.iter();
    for (message, wire_len) in &sent {
        let len = message.as_payload().len() as u64;
        match got.next() {
            Some(back) => {
                assert_eq!(back, message, "a message changed on the way");
                assert!(len <= limit, "a message over the limit came through");
            }
            None => {
                let err = reads.error.as_ref().expect("a message went missing");
                assert!(
                    matches!(err, ProtocolError::MessageTooBig { .. }),
                    "{err}: a valid compressed message was refused"
                );
                assert_eq!(err.close_code(), CloseCode::TOO_BIG);
                // Refused only if it, or its compressed form, is over.
                assert!(
                    len > limit || *wire_len > limit,
                    "refused at {len} <= {limit}"
                );
                return;
            }
        }
    }
    assert!(reads.error.is_none() && got.next().is_none());
}

fn raw(mut input: Input<'_>, limit: u64, receiver: &dyn Fn() -> frameway_wire::Protocol) {
    let splits = input.splits();
    let wire = input.rest();
    let whole = endpoint::read_frames(&mut receiver(), &[wire]);
    let split = endpoint::read_frames(&mut receiver(), &splits.chunks(wire));
    assert_eq!(whole, split, "the reads changed what was read");
    inflated_within(&whole, limit);
    let messages = endpoint::read_messages(&mut receiver(), &[wire]);
    crate::protocol::check_messages(&messages, limit);
}

fn inflated_within(reads: &Reads<frameway_wire::Frame>, limit: u64) {
    let mut message = 0u64;
    for frame in &reads.items {
        assert!(!frame.rsv1, "a frame came out still compressed");
        if frame.opcode.is_control() {
            continue;
        }
        if frame.opcode != frameway_wire::OpCode::Continuation {
            message = 0;
        }
        message += frame.payload.len() as u64;
        assert!(message <= limit, "inflated {message} bytes, limit {limit}");
    }
}
