//! `protocol`: the [`Protocol`](frameway_wire::Protocol) state machine, in
//! either role, reading arbitrary bytes in arbitrary reads.
//!
//! Asserts: the reads change neither the messages, nor the error, nor the
//! bytes queued in reply; everything queued is a valid frame for the peer
//! (masked exactly when we are the client), and only control frames; an
//! error queues a close frame with that error's code unless ours was
//! already sent; messages respect the limits and text is UTF-8.

use frameway_wire::Message;

use crate::endpoint::{self, Reads};
use crate::{limits, Input};

/// The check; see the module documentation.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let role = endpoint::role(flags);
    let any_mask = flags & 2 != 0;
    let limits = limits::limits(&mut input);
    let splits = input.splits();
    let wire = input.rest();

    let run = |chunks: &[&[u8]]| {
        let mut p = endpoint::endpoint(role, limits, any_mask);
        let reads = endpoint::read_messages(&mut p, chunks);
        (reads, endpoint::take_output(&mut p))
    };
    let (whole, whole_out) = run(&[wire]);
    let (split, split_out) = run(&splits.chunks(wire));
    assert_eq!(whole, split, "the reads changed what was read");
    assert_eq!(whole_out, split_out, "the reads changed what was queued");

    check_messages(&whole, limits.max_message_len);
    let queued = endpoint::peer_frames(role, whole_out);
    for frame in &queued {
        assert!(frame.opcode.is_control(), "a data frame was queued unasked");
    }
    if let Some(err) = &whole.error {
        if !whole.closed_before_error {
            let last = queued.last().expect("an error queues a close frame");
            match endpoint::close_of(last) {
                Some(Some(close)) => assert_eq!(close.code, err.close_code(), "{err}"),
                other => panic!("{err}: last queued frame is {other:?}, not its close"),
            }
        }
    }
}

/// What every message read must satisfy.
pub fn check_messages(reads: &Reads<Message>, max_message_len: u64) {
    for message in &reads.items {
        match message {
            Message::Text(text) => {
                assert!(std::str::from_utf8(text.as_bytes()).is_ok());
                assert!(text.len() as u64 <= max_message_len);
            }
            Message::Binary(data) => assert!(data.len() as u64 <= max_message_len),
            Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
            Message::Close(_) => {}
        }
    }
}
