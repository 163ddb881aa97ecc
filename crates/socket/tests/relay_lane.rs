//! `WebSocket::poll_relay`: a relay leg's reads, with the fast lane taken as
//! bytes arrive. In memory: two relay legs over `tokio::io::duplex`, their
//! far ends written and read raw.

use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use frameway::{Error, Mode, OpCode, Passed, Relayed, Role, WebSocket, WebSocketConfig};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

/// A relay leg that reads what a client sends (`client`, raw) and a relay
/// leg toward a client that reads what it is sent (`reader`, raw).
fn legs() -> (
    WebSocket<DuplexStream>,
    DuplexStream,
    WebSocket<DuplexStream>,
    DuplexStream,
) {
    let config = WebSocketConfig {
        mode: Mode::Relay,
        ..WebSocketConfig::default()
    };
    let (from_io, client) = duplex(1 << 16);
    let (to_io, reader) = duplex(1 << 16);
    let from = WebSocket::from_raw_socket(from_io, Role::Server, config.clone(), Bytes::new());
    let to = WebSocket::from_raw_socket(to_io, Role::Server, config, Bytes::new());
    (from, client, to, reader)
}

/// A client's frame: FIN, `opcode`, masked with a fixed key (payloads
/// under 64 KiB).
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1, 2, 3, 4];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..126 => frame.push(0x80 | len as u8),
        len => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

async fn relay(
    from: &mut WebSocket<DuplexStream>,
    to: &mut WebSocket<DuplexStream>,
    passed: &mut Passed,
) -> Option<frameway::Result<Relayed>> {
    poll_fn(|cx| from.poll_relay(cx, to, 1 << 16, passed)).await
}

#[tokio::test]
async fn a_data_frame_read_alone_goes_to_the_other_leg_through_the_lane() {
    let (mut from, mut client, mut to, mut reader) = legs();
    client.write_all(&masked(0x1, b"hi")).await.unwrap();
    let mut passed = Passed::default();
    let relayed = relay(&mut from, &mut to, &mut passed).await;
    assert!(matches!(relayed, Some(Ok(Relayed::Passed))), "{relayed:?}");
    assert_eq!(
        (passed.frames(OpCode::Text), passed.bytes(OpCode::Text)),
        (1, 2)
    );
    to.flush().await.unwrap();
    let mut out = [0u8; 4];
    reader.read_exact(&mut out).await.unwrap();
    assert_eq!(out, [0x81, 0x02, b'h', b'i'], "unmasked toward a client");
}

#[tokio::test]
async fn a_ping_comes_back_to_the_caller_as_a_frame() {
    let (mut from, mut client, mut to, _reader) = legs();
    client.write_all(&masked(0x9, b"p")).await.unwrap();
    let mut passed = Passed::default();
    match relay(&mut from, &mut to, &mut passed).await {
        Some(Ok(Relayed::Frame(frame))) => {
            assert_eq!(
                (frame.opcode, &frame.payload[..]),
                (OpCode::Ping, &b"p"[..])
            );
        }
        other => panic!("expected the ping back, got {other:?}"),
    }
    assert!(passed.is_empty());
    assert_eq!(to.queued_len(), 0);
}

#[tokio::test]
async fn a_violation_the_lane_finds_is_reported_by_the_same_poll() {
    let (mut from, mut client, mut to, _reader) = legs();
    // Unmasked, from a client: a protocol error (1002).
    client.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let mut passed = Passed::default();
    // Polled once, with a waker nobody will wake: the bytes are there, so
    // the poll that reads them must report what is wrong with them.
    let mut cx = Context::from_waker(Waker::noop());
    let relayed = from.poll_relay(&mut cx, &mut to, 1 << 16, &mut passed);
    assert!(
        matches!(relayed, Poll::Ready(Some(Err(Error::Protocol(_))))),
        "{relayed:?}"
    );
    assert!(passed.is_empty());
}

#[tokio::test]
async fn a_leg_is_not_read_while_the_other_leg_has_a_reads_worth_queued() {
    let (mut from, mut client, mut to, mut reader) = legs();
    let mut passed = Passed::default();
    // A few small frames queued do not hold the next read.
    client.write_all(&masked(0x2, b"one")).await.unwrap();
    let relayed = relay(&mut from, &mut to, &mut passed).await;
    assert!(matches!(relayed, Some(Ok(Relayed::Passed))), "{relayed:?}");
    client.write_all(&masked(0x2, &[7; 5000])).await.unwrap();
    let relayed = relay(&mut from, &mut to, &mut passed).await;
    assert!(matches!(relayed, Some(Ok(Relayed::Passed))), "{relayed:?}");

    // Over 4 KiB queued do: the read that would copy the next frame behind
    // them waits until they are written.
    client.write_all(&masked(0x2, b"two")).await.unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let relayed = from.poll_relay(&mut cx, &mut to, 1 << 16, &mut passed);
    assert!(
        matches!(relayed, Poll::Ready(Some(Ok(Relayed::Held)))),
        "{relayed:?}"
    );
    assert_eq!(passed.frames(OpCode::Binary), 2, "the third was not read");

    to.flush().await.unwrap();
    let relayed = relay(&mut from, &mut to, &mut passed).await;
    assert!(matches!(relayed, Some(Ok(Relayed::Passed))), "{relayed:?}");
    to.flush().await.unwrap();
    let mut out = vec![0u8; 5 + 4 + 5000 + 5];
    reader.read_exact(&mut out).await.unwrap();
    assert_eq!(&out[..5], b"\x82\x03one");
    assert_eq!(&out[5..9], b"\x82\x7e\x13\x88");
    assert!(out[9..5009].iter().all(|&b| b == 7));
    assert_eq!(&out[5009..], b"\x82\x03two", "all, in order");
}
