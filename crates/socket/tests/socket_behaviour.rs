//! What README promises of a `WebSocket` over a real TCP socket: the
//! `Stream` + `Sink` of messages, the read and write timeouts against a
//! peer gone silent, and permessage-deflate's `compress_if_bigger_than` as
//! the RSV1 bit a peer reads on the wire.

mod support;

use std::time::{Duration, Instant};

use frameway::client::{connect_with, ConnectOptions};
use frameway::server::{accept_with, Decision, ServerConfig};
use frameway::wire::deflate::Deflate;
use frameway::wire::FrameHeader;
use frameway::{
    CloseCode, DeflateConfig, DeflateParams, Error, Message, Role, TimeoutKind, WebSocketConfig,
};
use futures_util::{SinkExt, StreamExt};
use support::{answering, bounded, echo_server, pattern, raw_upgrade, serve};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The timeouts under test: small, so the tests are quick.
const TIMEOUT: Duration = Duration::from_millis(200);

/// How long a call may run past [`TIMEOUT`] before the timeout counts as
/// not having fired: generous, for a loaded machine.
const GRACE: Duration = Duration::from_secs(3);

// ----- Stream + Sink -----

/// `WebSocket` as a `futures` `Stream` + `Sink` of `Message` against our
/// echo server over TCP: messages queued with `feed` and flushed at once,
/// or sent one by one with `send`, come back through `next` whole and in
/// order; closing the Sink runs the closing handshake, after which the
/// Stream yields the server's close (1000) and then ends.
#[tokio::test]
async fn stream_and_sink_carry_messages_in_order_and_end_after_the_close() {
    bounded(async {
        let addr = echo_server().await;
        let (mut ws, _) = frameway::connect(&format!("ws://{addr}/")).await.unwrap();

        // Every length form and both data types, queued before any is
        // written, so their order is the Sink's own.
        let batch = [
            Message::text("first"),
            Message::binary(pattern(300)),
            Message::text(""),
            Message::binary(pattern(70_000)),
            Message::binary(Vec::new()),
            Message::text("last"),
        ];
        for msg in &batch {
            ws.feed(msg.clone()).await.unwrap();
        }
        // `WebSocket` has inherent `flush`, `send` and `close` methods; the
        // Sink's are named through the trait.
        SinkExt::flush(&mut ws).await.unwrap();
        for msg in &batch {
            assert_eq!(ws.next().await.unwrap().unwrap(), *msg);
        }

        for i in 0..20 {
            SinkExt::send(&mut ws, Message::text(format!("message {i}")))
                .await
                .unwrap();
        }
        for i in 0..20 {
            assert_eq!(
                ws.next().await.unwrap().unwrap(),
                Message::text(format!("message {i}"))
            );
        }

        SinkExt::close(&mut ws).await.unwrap();
        match ws.next().await {
            Some(Ok(Message::Close(Some(close)))) => assert_eq!(close.code, CloseCode::NORMAL),
            other => panic!("expected the server's close reply, got {other:?}"),
        }
        assert!(ws.next().await.is_none(), "the stream ends after the close");
        assert_eq!(ws.state(), frameway::State::Closed);
        assert!(ws.next().await.is_none(), "and stays ended");
    })
    .await;
}

// ----- timeouts -----

/// Connects to a server that answers the upgrade and then neither reads
/// nor writes (see [`answering`]), with `config`.
async fn connect_to_a_silent_peer(
    config: WebSocketConfig,
) -> frameway::WebSocket<frameway::client::ClientStream> {
    let addr = answering(None).await;
    let options = ConnectOptions::default().websocket(config);
    connect_with(&format!("ws://{addr}/"), options)
        .await
        .unwrap()
        .0
}

/// `WebSocketConfig::read_timeout` over TCP: against a peer that completed
/// the opening handshake and then sends nothing, `recv` and `recv_frame`
/// each fail with `Error::Timeout(TimeoutKind::Read, limit)` once the limit
/// has passed, instead of waiting for the peer.
#[tokio::test]
async fn read_timeout_fails_a_read_from_a_silent_peer() {
    bounded(async {
        let config = WebSocketConfig {
            read_timeout: Some(TIMEOUT),
            ..WebSocketConfig::default()
        };
        // A connection each: what a read does after its timeout is not
        // what is tested here.
        for frames in [false, true] {
            let mut ws = connect_to_a_silent_peer(config.clone()).await;
            let started = Instant::now();
            let read = async {
                if frames {
                    ws.recv_frame().await.map(|r| r.map(drop))
                } else {
                    ws.recv().await.map(|r| r.map(drop))
                }
            };
            let got = tokio::time::timeout(TIMEOUT + GRACE, read)
                .await
                .unwrap_or_else(|_| panic!("the read (frames: {frames}) outlived its timeout"));
            match got {
                Some(Err(Error::Timeout(TimeoutKind::Read, limit))) => assert_eq!(limit, TIMEOUT),
                other => panic!("expected a read timeout (frames: {frames}), got {other:?}"),
            }
            assert!(started.elapsed() >= TIMEOUT, "the read gave up early");
        }
    })
    .await;
}

/// `WebSocketConfig::write_timeout` over TCP: against a peer that
/// completed the opening handshake and then never reads, 1 MiB messages
/// fill the socket's buffers, and the send that can no longer be written
/// fails with `Error::Timeout(TimeoutKind::Write, limit)` after the limit,
/// instead of waiting for the peer to read.
#[tokio::test]
async fn write_timeout_fails_a_send_to_a_peer_that_stopped_reading() {
    bounded(async {
        let mut ws = connect_to_a_silent_peer(WebSocketConfig {
            write_timeout: Some(TIMEOUT),
            ..WebSocketConfig::default()
        })
        .await;
        let message = Message::binary(pattern(1 << 20));
        // Loopback buffers hold a few MiB; 64 MiB unread is far past them.
        for sent in 0..64 {
            let started = Instant::now();
            let result = tokio::time::timeout(TIMEOUT + GRACE, ws.send(message.clone()))
                .await
                .unwrap_or_else(|_| panic!("send {sent} outlived the write timeout"));
            match result {
                Ok(()) => continue,
                Err(Error::Timeout(TimeoutKind::Write, limit)) => {
                    assert_eq!(limit, TIMEOUT);
                    assert!(started.elapsed() >= TIMEOUT, "the send gave up early");
                    return;
                }
                Err(other) => panic!("expected a write timeout, got {other}"),
            }
        }
        panic!("64 MiB went to a peer that reads nothing without a write timeout");
    })
    .await;
}

// ----- permessage-deflate on the wire -----

/// Reads the next frame a raw peer receives: its header as
/// `FrameHeader::decode` reads it (which reports the RSV bits without
/// judging them) and its payload.
async fn raw_frame(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> (FrameHeader, Vec<u8>) {
    loop {
        if let Some((header, at)) = FrameHeader::decode(buf).unwrap() {
            let end = at + usize::try_from(header.payload_len).unwrap();
            if buf.len() >= end {
                let payload = buf[at..end].to_vec();
                buf.drain(..end);
                return (header, payload);
            }
        }
        let n = tcp.read_buf(buf).await.unwrap();
        assert!(n > 0, "the connection ended inside a frame");
    }
}

/// `DeflateConfig::compress_if_bigger_than` on the wire: our server, with
/// permessage-deflate negotiated by a raw client's offer, sends text and
/// binary messages of exactly the threshold's length as they are (RSV1
/// clear, the payload the message itself) and messages one byte longer
/// compressed (RSV1 set, the payload inflating back to the message).
#[tokio::test]
async fn compress_if_bigger_than_decides_rsv1_on_the_wire() {
    const THRESHOLD: usize = 64;
    bounded(async {
        let messages = [
            (Message::text("a".repeat(THRESHOLD)), false),
            (Message::text("a".repeat(THRESHOLD + 1)), true),
            (Message::binary(pattern(THRESHOLD)), false),
            (Message::binary(pattern(THRESHOLD + 1)), true),
            (Message::text("short"), false),
            (Message::binary(pattern(10_000)), true),
        ];
        let to_send: Vec<Message> = messages.iter().map(|(m, _)| m.clone()).collect();
        let config = ServerConfig::default().websocket(
            WebSocketConfig::default()
                .deflate(DeflateConfig::default().compress_if_bigger_than(THRESHOLD)),
        );
        let (addr, _) = serve(move |tcp| {
            let (config, to_send) = (config.clone(), to_send.clone());
            async move {
                let mut ws = accept_with(tcp, config, |_, _| Decision::accept())
                    .await
                    .unwrap();
                for msg in to_send {
                    ws.send(msg).await.unwrap();
                }
                // Held open until the raw client is done.
                let _ = ws.recv().await;
            }
        })
        .await;

        let (mut tcp, head, mut buf) =
            raw_upgrade(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        // The parameters the inflater below is built with are the agreed ones.
        let params = DeflateParams::default();
        let agreed = format!("sec-websocket-extensions: {params}\r\n");
        assert!(head.to_ascii_lowercase().contains(&agreed), "{head}");
        let mut inflater = Deflate::new(Role::Client, params, &DeflateConfig::default());

        for (msg, compressed) in &messages {
            let len = msg.as_payload().len();
            let (header, payload) = raw_frame(&mut tcp, &mut buf).await;
            assert_eq!(
                (header.fin, header.opcode, header.mask),
                (true, msg.opcode(), None),
                "the {len}-byte message"
            );
            assert_eq!(
                (header.rsv1, header.rsv2, header.rsv3),
                (*compressed, false, false),
                "RSV1 of the {len}-byte message (threshold {THRESHOLD})"
            );
            let data = if header.rsv1 {
                let mut out = Vec::new();
                inflater.inflate(&payload, true, 1 << 20, &mut out).unwrap();
                out
            } else {
                payload
            };
            assert_eq!(data, msg.as_payload(), "the {len}-byte message's payload");
        }
    })
    .await;
}
