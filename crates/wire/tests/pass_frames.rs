//! A proxy's fast lane in memory (`Protocol::pass_frames`): data frames go
//! from one relay leg's received bytes to the other leg's output, checked
//! as `read_frame` checks them, and what the lane does not take is left for
//! `read_frame`.

use bytes::{Buf, BytesMut};
use frameway_wire::{
    Config, Frame, Limits, Message, Mode, OpCode, Passed, Protocol, ProtocolError, Role, State,
};

/// A relay leg: a client toward the upstream, a server toward the client.
fn leg(role: Role) -> Protocol {
    let mut leg = Protocol::new(Config::new(role), |b| b.fill(0x5a));
    leg.set_mode(Mode::Relay);
    leg
}

fn endpoint(role: Role) -> Protocol {
    Protocol::new(Config::new(role), |b| b.fill(0x33))
}

/// Passes everything the lane takes from `wire`, returning what it passed.
fn pass(from: &mut Protocol, wire: &mut BytesMut, to: &mut Protocol) -> Vec<(OpCode, u64, u64)> {
    let mut passed = Passed::default();
    from.pass_frames(wire, to, usize::MAX, &mut passed).unwrap();
    tally(&passed)
}

/// (opcode, frames, payload bytes) for each opcode with frames passed.
fn tally(passed: &Passed) -> Vec<(OpCode, u64, u64)> {
    passed.iter().collect()
}

fn read_all(endpoint: &mut Protocol, wire: &mut BytesMut) -> Vec<Message> {
    std::iter::from_fn(|| endpoint.read_message(wire).unwrap()).collect()
}

#[test]
fn a_clients_masked_frames_reach_the_upstream_masked_again_and_whole() {
    let (mut client, mut upstream) = (endpoint(Role::Client), endpoint(Role::Server));
    let (mut client_leg, mut upstream_leg) = (leg(Role::Server), leg(Role::Client));
    client.send(&Message::text("héllo")).unwrap();
    client.send_frame(false, OpCode::Binary, b"ab").unwrap();
    client
        .send_frame(true, OpCode::Continuation, b"cd")
        .unwrap();
    let mut wire = client.take_output();
    let passed = pass(&mut client_leg, &mut wire, &mut upstream_leg);
    assert_eq!(
        passed,
        [
            (OpCode::Text, 1, 6),
            (OpCode::Binary, 1, 2),
            (OpCode::Continuation, 1, 2)
        ]
    );
    assert!(wire.is_empty());
    let mut toward_upstream = upstream_leg.take_output();
    assert_eq!(
        read_all(&mut upstream, &mut toward_upstream),
        [Message::text("héllo"), Message::binary(&b"abcd"[..])]
    );
}

#[test]
fn a_clients_large_frames_are_masked_again_in_the_memory_they_were_read_into() {
    let (mut client, mut upstream) = (endpoint(Role::Client), endpoint(Role::Server));
    let (mut client_leg, mut upstream_leg) = (leg(Role::Server), leg(Role::Client));
    let sent = [
        Message::binary(vec![1u8; 16 * 1024]),
        Message::text("é".repeat(8 * 1024)),
    ];
    for message in &sent {
        client.send(message).unwrap();
    }
    let mut wire = client.take_output();
    let memory = wire.as_ptr();
    pass(&mut client_leg, &mut wire, &mut upstream_leg);
    assert!(wire.is_empty());
    assert_eq!(upstream_leg.output().chunk().as_ptr(), memory);
    let mut toward_upstream = upstream_leg.take_output();
    // Masked with the relay's keys (0x5a…), not the client's (0x33…).
    assert_eq!(&toward_upstream[4..8], &[0x5a; 4]);
    assert_eq!(read_all(&mut upstream, &mut toward_upstream), sent);
}

#[test]
fn control_frames_and_a_partial_frame_are_left_for_read_frame() {
    let (mut server, mut upstream_leg, mut client_leg) =
        (endpoint(Role::Server), leg(Role::Client), leg(Role::Server));
    server.send(&Message::binary(&b"one"[..])).unwrap();
    server.send(&Message::Ping("p".into())).unwrap();
    server.send(&Message::binary(&b"two"[..])).unwrap();
    let mut wire = server.take_output();
    // The last frame lacks its final byte.
    let last = wire.split_off(wire.len() - 1);
    assert_eq!(
        pass(&mut upstream_leg, &mut wire, &mut client_leg),
        [(OpCode::Binary, 1, 3)]
    );
    let ping = upstream_leg.read_frame(&mut wire).unwrap().unwrap();
    assert_eq!((ping.opcode, &ping.payload[..]), (OpCode::Ping, &b"p"[..]));
    assert!(pass(&mut upstream_leg, &mut wire, &mut client_leg).is_empty());
    wire.unsplit(last);
    assert_eq!(
        pass(&mut upstream_leg, &mut wire, &mut client_leg),
        [(OpCode::Binary, 1, 3)]
    );
}

#[test]
fn text_split_across_frames_must_still_be_utf8() {
    let (mut server, mut upstream_leg, mut client_leg) =
        (endpoint(Role::Server), leg(Role::Client), leg(Role::Server));
    // "é" is 0xC3 0xA9: a frame may end inside it, a message may not.
    server
        .send_frame(false, OpCode::Text, &[b'a', 0xC3])
        .unwrap();
    server
        .send_frame(false, OpCode::Continuation, &[0xA9])
        .unwrap();
    server
        .send_frame(true, OpCode::Continuation, &[0xC3])
        .unwrap();
    let mut wire = server.take_output();
    let mut passed = Passed::default();
    let result = upstream_leg.pass_frames(&mut wire, &mut client_leg, usize::MAX, &mut passed);
    assert_eq!(result, Err(ProtocolError::InvalidUtf8));
    assert_eq!(
        tally(&passed),
        [(OpCode::Text, 1, 2), (OpCode::Continuation, 1, 1)],
        "the frames before the bad one went"
    );
    assert!(matches!(upstream_leg.state(), State::Failed(_)));
}

#[test]
fn the_receive_limits_hold_on_the_lane() {
    let (mut server, mut client_leg) = (endpoint(Role::Server), leg(Role::Server));
    let mut upstream_leg = leg(Role::Client);
    upstream_leg.set_limits(Limits {
        max_message_len: 4,
        ..Limits::DEFAULT
    });
    server.send_frame(false, OpCode::Binary, b"abc").unwrap();
    server
        .send_frame(true, OpCode::Continuation, b"de")
        .unwrap();
    let mut wire = server.take_output();
    let result = upstream_leg.pass_frames(
        &mut wire,
        &mut client_leg,
        usize::MAX,
        &mut Passed::default(),
    );
    assert!(matches!(
        result,
        Err(ProtocolError::MessageTooBig { size: 5, limit: 4 })
    ));
}

#[test]
fn a_frame_the_other_leg_may_not_send_is_left_for_the_caller() {
    let (mut server, mut upstream_leg) = (endpoint(Role::Server), leg(Role::Client));
    let mut client_leg = leg(Role::Server);
    client_leg.set_max_send_len(3);
    server.send(&Message::binary(&b"ok"[..])).unwrap();
    server.send(&Message::binary(&b"too long"[..])).unwrap();
    let mut wire = server.take_output();
    assert_eq!(
        pass(&mut upstream_leg, &mut wire, &mut client_leg),
        [(OpCode::Binary, 1, 2)]
    );
    let Frame { payload, .. } = upstream_leg.read_frame(&mut wire).unwrap().unwrap();
    assert_eq!(&payload[..], b"too long");
}

#[test]
fn the_lane_stops_at_the_queue_bound() {
    let (mut server, mut upstream_leg, mut client_leg) =
        (endpoint(Role::Server), leg(Role::Client), leg(Role::Server));
    for _ in 0..10 {
        server.send(&Message::binary(vec![1u8; 100])).unwrap();
    }
    let mut wire = server.take_output();
    let mut passed = Passed::default();
    upstream_leg
        .pass_frames(&mut wire, &mut client_leg, 250, &mut passed)
        .unwrap();
    // 102 bytes a frame: the third reaches the bound.
    assert_eq!(passed.frames(OpCode::Binary), 3);
    assert_eq!(wire.len(), 7 * 102);
}

#[test]
fn a_leg_that_is_closing_passes_nothing() {
    let (mut server, mut upstream_leg, mut client_leg) =
        (endpoint(Role::Server), leg(Role::Client), leg(Role::Server));
    client_leg.send_close(None).unwrap();
    server.send(&Message::binary(&b"late"[..])).unwrap();
    let mut wire = server.take_output();
    assert!(pass(&mut upstream_leg, &mut wire, &mut client_leg).is_empty());
    assert_eq!(wire.len(), 6);
}

#[test]
fn pushed_messages_reach_the_client_byte_for_byte() {
    let (mut server, mut upstream_leg, mut client_leg) =
        (endpoint(Role::Server), leg(Role::Client), leg(Role::Server));
    let long = "x".repeat(70_000);
    server.send(&Message::text("twenty bytes of text")).unwrap();
    server.send(&Message::binary(vec![7u8; 1024])).unwrap();
    server.send(&Message::text(long.as_str())).unwrap();
    server.send_frame(false, OpCode::Text, b"frag").unwrap();
    server
        .send_frame(true, OpCode::Continuation, b"ment")
        .unwrap();
    server.send(&Message::text("ünïcödé")).unwrap();
    let mut wire = server.take_output();
    let sent = wire.clone();
    assert_eq!(
        pass(&mut upstream_leg, &mut wire, &mut client_leg),
        [
            (OpCode::Text, 4, 20 + 70_000 + 4 + 11),
            (OpCode::Binary, 1, 1024),
            (OpCode::Continuation, 1, 4)
        ]
    );
    assert!(wire.is_empty());
    assert_eq!(client_leg.take_output(), sent);
}

#[test]
fn a_run_of_pushed_frames_is_counted_by_kind_whatever_their_header_lengths() {
    let (mut server, mut upstream_leg, mut client_leg) =
        (endpoint(Role::Server), leg(Role::Client), leg(Role::Server));
    let sizes = [0, 20, 125, 126, 1000, 65_535];
    for (i, &size) in sizes.iter().enumerate() {
        server.send(&Message::binary(vec![i as u8; size])).unwrap();
        server.send(&Message::text("é".repeat(size / 2))).unwrap();
    }
    server.send(&Message::Ping("p".into())).unwrap();
    server
        .send(&Message::binary(&b"after the ping"[..]))
        .unwrap();
    let mut wire = server.take_output();
    let text_bytes: u64 = sizes.iter().map(|&size| (size / 2 * 2) as u64).sum();
    let binary_bytes: u64 = sizes.iter().map(|&size| size as u64).sum();
    assert_eq!(
        pass(&mut upstream_leg, &mut wire, &mut client_leg),
        [
            (OpCode::Text, 6, text_bytes),
            (OpCode::Binary, 6, binary_bytes)
        ]
    );
    assert_eq!(wire[0], 0x89, "the lane stops at the ping");
}

#[test]
fn a_binary_frame_a_read_ends_inside_of_waits_whole_for_the_lane() {
    let (mut server, mut upstream_leg, mut client_leg) =
        (endpoint(Role::Server), leg(Role::Client), leg(Role::Server));
    for byte in 1..=3u8 {
        server.send(&Message::binary(vec![byte; 20])).unwrap();
    }
    let sent = server.take_output();
    let mut wire = BytesMut::with_capacity(64 * 1024);
    wire.extend_from_slice(&sent[..2 * 22 + 10]);
    assert_eq!(
        pass(&mut upstream_leg, &mut wire, &mut client_leg),
        [(OpCode::Binary, 2, 40)]
    );
    // What the relay does when the lane leaves something: read a frame.
    assert_eq!(upstream_leg.read_frame(&mut wire).unwrap(), None);
    assert_eq!(
        &wire[..],
        &sent[2 * 22..2 * 22 + 10],
        "the header was taken"
    );
    wire.extend_from_slice(&sent[2 * 22 + 10..]);
    assert_eq!(
        pass(&mut upstream_leg, &mut wire, &mut client_leg),
        [(OpCode::Binary, 1, 20)]
    );
    assert_eq!(client_leg.take_output(), sent);
}

#[test]
fn a_read_of_pushed_frames_goes_out_in_the_memory_it_was_read_into() {
    let (mut server, mut upstream_leg, mut client_leg) =
        (endpoint(Role::Server), leg(Role::Client), leg(Role::Server));
    for _ in 0..8 {
        server.send(&Message::binary(vec![7u8; 1024])).unwrap();
    }
    server
        .send(&Message::text("the read ends inside this one"))
        .unwrap();
    let sent = server.take_output();
    let mut wire = BytesMut::from(&sent[..sent.len() - 3]);
    let memory = wire.as_ptr();
    assert_eq!(
        pass(&mut upstream_leg, &mut wire, &mut client_leg),
        [(OpCode::Binary, 8, 8 * 1024)]
    );
    assert_eq!(client_leg.output().chunk().as_ptr(), memory);
    assert_eq!(&wire[..], &sent[8 * 1028..sent.len() - 3]);
    wire.extend_from_slice(&sent[sent.len() - 3..]);
    assert_eq!(
        pass(&mut upstream_leg, &mut wire, &mut client_leg),
        [(OpCode::Text, 1, 29)]
    );
    assert_eq!(client_leg.take_output(), sent);
}

#[test]
fn invalid_text_among_whole_messages_is_the_legs_violation() {
    let (mut server, mut upstream_leg, mut client_leg) =
        (endpoint(Role::Server), leg(Role::Client), leg(Role::Server));
    server.send_frame(true, OpCode::Text, b"fine").unwrap();
    server
        .send_frame(true, OpCode::Text, &[b'a', 0xC3])
        .unwrap();
    server.send_frame(true, OpCode::Text, b"never").unwrap();
    let mut wire = server.take_output();
    let mut passed = Passed::default();
    let result = upstream_leg.pass_frames(&mut wire, &mut client_leg, usize::MAX, &mut passed);
    assert_eq!(result, Err(ProtocolError::InvalidUtf8));
    assert_eq!(tally(&passed), [(OpCode::Text, 1, 4)]);
    assert_eq!(&client_leg.take_output()[..], b"\x81\x04fine");
}

#[test]
fn a_whole_message_over_the_limit_is_refused_on_the_lane() {
    let (mut server, mut client_leg) = (endpoint(Role::Server), leg(Role::Server));
    let mut upstream_leg = leg(Role::Client);
    upstream_leg.set_limits(Limits {
        max_message_len: 4,
        ..Limits::DEFAULT
    });
    server.send(&Message::binary(&b"ab"[..])).unwrap();
    server.send(&Message::binary(&b"abcdef"[..])).unwrap();
    let mut wire = server.take_output();
    let mut passed = Passed::default();
    let result = upstream_leg.pass_frames(&mut wire, &mut client_leg, usize::MAX, &mut passed);
    assert!(matches!(
        result,
        Err(ProtocolError::MessageTooBig { size: 6, limit: 4 })
    ));
    assert_eq!(tally(&passed), [(OpCode::Binary, 1, 2)]);
}
