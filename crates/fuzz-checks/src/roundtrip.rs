//! `roundtrip`: encode, then decode.
//!
//! Asserts: a frame header encodes in the fewest bytes and decodes to
//! itself; masking twice gives back the payload from any key offset; a
//! close frame parses to itself; messages from the input, sent by one
//! role (fragmented or not, with pings between fragments) and read by
//! the other in arbitrary reads, come back unchanged and in order.

use frameway_wire::{
    apply_mask, CloseCode, CloseFrame, FrameHeader, Limits, Message, OpCode, Role,
    MAX_CLOSE_REASON, MAX_HEADER_LEN,
};

use crate::endpoint;
use crate::Input;

/// The check; see the module documentation.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    header(&mut input);
    mask(&mut input);
    close(&mut input);
    messages(&mut input);
}

fn header(input: &mut Input<'_>) {
    let flags = input.byte();
    let opcode = input.pick(&[
        OpCode::Continuation,
        OpCode::Text,
        OpCode::Binary,
        OpCode::Close,
        OpCode::Ping,
        OpCode::Pong,
    ]);
    let len_bytes: Vec<u8> = (0..8).map(|_| input.byte()).collect();
    // RFC 6455 §5.2: the 64-bit length has its top bit clear.
    let mut len = u64::from_be_bytes(len_bytes.try_into().expect("8 bytes")) >> (flags >> 2) >> 1;
    if opcode.is_control() {
        len %= 126;
    }
    let mask = (flags & 1 != 0).then(|| [input.byte(), input.byte(), input.byte(), input.byte()]);
    let mut header = FrameHeader::new(opcode.is_control() || flags & 2 != 0, opcode, mask, len);
    header.rsv1 = flags & 0x40 != 0;
    let mut out = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut out);
    let minimal = match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    } + if mask.is_some() { 4 } else { 0 };
    assert_eq!(n, minimal, "{header:?}");
    assert_eq!(FrameHeader::decode(&out[..n]), Ok(Some((header, n))));
    assert_eq!(FrameHeader::decode(&out[..n - 1]), Ok(None));
}

fn mask(input: &mut Input<'_>) {
    let key = [input.byte(), input.byte(), input.byte(), input.byte()];
    let offset = usize::from(input.byte());
    let payload = input.bytes().to_vec();
    let mut masked = payload.clone();
    apply_mask(&mut masked, key, offset);
    for (i, (m, p)) in masked.iter().zip(&payload).enumerate() {
        assert_eq!(m ^ p, key[(offset + i) % 4], "byte {i}");
    }
    apply_mask(&mut masked, key, offset);
    assert_eq!(masked, payload);
}

fn close(input: &mut Input<'_>) {
    let code = input.u16();
    let reason = String::from_utf8_lossy(input.bytes()).into_owned();
    let Some(code) = CloseCode::new(code) else {
        return;
    };
    match CloseFrame::new(code, reason.clone()) {
        Ok(frame) => {
            assert!(reason.len() <= MAX_CLOSE_REASON);
            assert_eq!(CloseFrame::parse(&frame.encode()), Ok(Some(frame)));
        }
        Err(_) => assert!(reason.len() > MAX_CLOSE_REASON),
    }
}

fn messages(input: &mut Input<'_>) {
    let sender_role = if input.bool() {
        Role::Client
    } else {
        Role::Server
    };
    let receiver_role = endpoint::peer(sender_role);
    let splits = input.splits();
    let mut sender = endpoint::endpoint(sender_role, Limits::default(), false);
    let mut sent = Vec::new();
    while !input.is_empty() && sent.len() < 32 {
        let kind = input.byte();
        let payload = input.bytes();
        let message = match kind % 4 {
            0 => Message::text(String::from_utf8_lossy(payload).into_owned()),
            1 => Message::binary(payload.to_vec()),
            2 => Message::Ping(payload[..payload.len().min(125)].to_vec().into()),
            _ => Message::Pong(payload[..payload.len().min(125)].to_vec().into()),
        };
        if kind & 4 != 0 && !message.opcode().is_control() {
            // By hand, in two fragments with a ping between them.
            let bytes = message.as_payload();
            let at = usize::from(kind >> 3).min(bytes.len());
            endpoint::send_frame(&mut sender, false, message.opcode(), &bytes[..at])
                .expect("a first fragment sends");
            endpoint::send_frame(&mut sender, true, OpCode::Ping, b"between")
                .expect("a ping between fragments sends");
            endpoint::send_frame(&mut sender, true, OpCode::Continuation, &bytes[at..])
                .expect("the last fragment sends");
            sent.push(Message::Ping(b"between".to_vec().into()));
        } else {
            let size = (kind & 8 != 0).then_some(usize::from(kind >> 4) + 1);
            endpoint::fragment(&mut sender, size);
            endpoint::send(&mut sender, &message).expect("an open endpoint sends");
        }
        sent.push(message);
    }
    let close = CloseFrame::new(CloseCode::NORMAL, "bye").expect("a valid close");
    endpoint::send(&mut sender, &Message::Close(Some(close.clone()))).expect("close sends");
    sent.push(Message::Close(Some(close)));

    let wire = endpoint::take_output(&mut sender);
    let mut receiver = endpoint::endpoint(receiver_role, Limits::default(), false);
    let reads = endpoint::read_messages(&mut receiver, &splits.chunks(&wire));
    assert_eq!(reads.error, None);
    assert_eq!(reads.items, sent);
}
