//! Our server against tokio-tungstenite's client and raw sockets, over real
//! loopback TCP.

use std::net::SocketAddr;
use std::time::Duration;

use frameway::server::{accept_with, Decision, ServerConfig};
use frameway::{CloseCode, Message, WebSocketConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{
    CloseCode as TCloseCode, Data, OpCode as TOpCode,
};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as TFrame;
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame as TCloseFrame, WebSocketConfig as TConfig,
};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message as TMessage};

mod support;
use support::echo_server;

const LIMIT: Duration = Duration::from_secs(20);

async fn tungstenite_client(
    addr: SocketAddr,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let config = TConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}{path}"),
        Some(config),
        false,
    )
    .await
    .unwrap();
    ws
}

#[tokio::test]
async fn text_binary_empty_and_large_messages_echo() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server().await;
        let mut ws = tungstenite_client(addr, "/").await;
        let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
        let messages = [
            TMessage::text("héllo wörld"),
            TMessage::binary(vec![0u8, 1, 2, 255]),
            TMessage::text(""),
            TMessage::binary(Vec::new()),
            TMessage::binary(big),
        ];
        for msg in messages {
            ws.send(msg.clone()).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), msg);
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn fragmented_message_with_interleaved_ping() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server().await;
        let mut ws = tungstenite_client(addr, "/").await;
        ws.send(TMessage::Frame(TFrame::message(
            "frag",
            TOpCode::Data(Data::Text),
            false,
        )))
        .await
        .unwrap();
        ws.send(TMessage::Ping("in-between".into())).await.unwrap();
        ws.send(TMessage::Frame(TFrame::message(
            "ment",
            TOpCode::Data(Data::Continue),
            false,
        )))
        .await
        .unwrap();
        ws.send(TMessage::Frame(TFrame::message(
            "ed",
            TOpCode::Data(Data::Continue),
            true,
        )))
        .await
        .unwrap();
        // The pong for the interleaved ping comes first, then the whole message.
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            TMessage::Pong("in-between".into())
        );
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            TMessage::text("fragmented")
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn close_codes_and_reasons_both_ways() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server().await;
        // Server-initiated close.
        let mut ws = tungstenite_client(addr, "/").await;
        ws.send(TMessage::text("close:4001:custom reason"))
            .await
            .unwrap();
        match ws.next().await.unwrap().unwrap() {
            TMessage::Close(Some(f)) => {
                assert_eq!(u16::from(f.code), 4001);
                assert_eq!(f.reason.as_str(), "custom reason");
            }
            other => panic!("expected a close, got {other:?}"),
        }
        // Client-initiated close is echoed with the same code.
        let mut ws = tungstenite_client(addr, "/").await;
        ws.close(Some(TCloseFrame {
            code: TCloseCode::Away,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
        match ws.next().await.unwrap().unwrap() {
            TMessage::Close(Some(f)) => assert_eq!(f.code, TCloseCode::Away),
            other => panic!("expected a close, got {other:?}"),
        }
        // The server closes TCP after the handshake: the stream ends.
        assert!(ws.next().await.is_none());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn subprotocol_and_response_headers() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server().await;
        let mut request = format!("ws://{addr}/").into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "chat.v1, chat.v2".parse().unwrap(),
        );
        let (_ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v2");
        assert_eq!(response.headers()["x-served-by"], "frameway");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn refused_upgrade_reaches_the_client_with_status_and_body() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server().await;
        match tokio_tungstenite::connect_async(format!("ws://{addr}/forbidden")).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403);
                assert_eq!(response.headers()["x-why"], "test");
                assert_eq!(response.body().as_deref(), Some(&b"go away"[..]));
            }
            other => panic!("expected HTTP 403, got {other:?}"),
        }
    })
    .await
    .unwrap();
}

/// Sends a raw request and returns the response head.
async fn raw_request(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn bad_handshakes_get_their_http_status() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server().await;
        let good = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let wrong_version = raw_request(addr, &good.replace("Version: 13", "Version: 8")).await;
        assert!(wrong_version.starts_with("HTTP/1.1 426 "), "{wrong_version}");
        assert!(wrong_version.to_ascii_lowercase().contains("sec-websocket-version: 13\r\n"));
        let plain = raw_request(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(plain.starts_with("HTTP/1.1 426 "), "{plain}");
        let no_key = raw_request(addr, &good.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")).await;
        assert!(no_key.starts_with("HTTP/1.1 400 "), "{no_key}");
        assert!(no_key.contains("Sec-WebSocket-Key"), "the body says what is wrong: {no_key}");
        let post = raw_request(addr, &good.replace("GET", "POST")).await;
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        let garbage = raw_request(addr, "\x16\x03\x01 not http\r\n\r\n").await;
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(40_000));
        assert!(raw_request(addr, &huge).await.starts_with("HTTP/1.1 431 "));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn bytes_sent_with_the_request_are_not_lost() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server().await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // The request and a masked "Hi" text frame in one write.
        let mut bytes = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .to_vec();
        bytes.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'H', b'i']);
        tcp.write_all(&bytes).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.ends_with(&[0x81, 0x02, b'H', b'i']) {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the echo: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn protocol_violations_close_with_the_rfc_code() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server().await;
        let cases: [(&[u8], u16); 4] = [
            (&[0x81, 0x81, 0, 0, 0, 0, 0xff], 1007), // invalid UTF-8
            (&[0x83, 0x80, 0, 0, 0, 0], 1002),       // reserved opcode
            (&[0x81, 0x00], 1002),                   // unmasked client frame
            (&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xed], 1002), // close code 1005
        ];
        for (frame, code) in cases {
            let mut ws = tungstenite_client(addr, "/").await;
            let tcp = match ws.get_mut() {
                tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
                _ => unreachable!(),
            };
            tcp.write_all(frame).await.unwrap();
            let mut reply = Vec::new();
            tcp.read_to_end(&mut reply).await.unwrap();
            assert_eq!(reply[0], 0x88, "a close frame for {frame:?}");
            assert_eq!(
                u16::from_be_bytes([reply[2], reply[3]]),
                code,
                "for {frame:?}"
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn oversized_message_is_refused_with_1009_before_it_arrives() {
    tokio::time::timeout(LIMIT, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let config = ServerConfig::default().websocket(
                WebSocketConfig::default()
                    .max_message_len(1024)
                    .max_send_len(1024),
            );
            let mut ws = accept_with(tcp, config, |_, _| Decision::accept())
                .await
                .unwrap();
            ws.recv().await
        });
        let mut ws = tungstenite_client(addr, "/").await;
        // Only the header of a 1 MiB frame is needed for the refusal.
        let tcp = match ws.get_mut() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
            _ => unreachable!(),
        };
        tcp.write_all(&[0x82, 0xFF, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4])
            .await
            .unwrap();
        let mut reply = [0u8; 4];
        tcp.read_exact(&mut reply).await.unwrap();
        assert_eq!(u16::from_be_bytes([reply[2], reply[3]]), 1009);
        // The server reads on until we close, then reports the error.
        drop(ws);
        match server.await.unwrap() {
            Some(Err(frameway::Error::Protocol(e))) => {
                assert_eq!(e.close_code(), CloseCode::TOO_BIG)
            }
            other => panic!("expected a 1009 protocol error, got {other:?}"),
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn split_halves_answer_pings_while_the_writer_is_busy() {
    tokio::time::timeout(LIMIT, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = frameway::accept(tcp).await.unwrap();
            let (mut read, mut write) = ws.split();
            let writer = tokio::spawn(async move {
                for i in 0..100 {
                    write
                        .send(Message::text(format!("tick {i}")))
                        .await
                        .unwrap();
                }
                write
            });
            // Only reading: pings must still be answered.
            while let Some(Ok(msg)) = read.recv().await {
                if msg.is_close() {
                    break;
                }
            }
            let write = writer.await.unwrap();
            drop(read.unsplit(write));
        });
        let mut ws = tungstenite_client(addr, "/").await;
        ws.send(TMessage::Ping("are you there".into()))
            .await
            .unwrap();
        let mut ticks = 0;
        let mut pong = false;
        while ticks < 100 || !pong {
            match ws.next().await.unwrap().unwrap() {
                TMessage::Text(_) => ticks += 1,
                TMessage::Pong(p) => {
                    assert_eq!(&p[..], b"are you there");
                    pong = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        ws.close(None).await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn keepalive_closes_a_dead_connection() {
    tokio::time::timeout(LIMIT, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let config = ServerConfig::default().websocket(
                WebSocketConfig::default()
                    .ping_interval(Duration::from_millis(100))
                    .pong_timeout(Duration::from_millis(200)),
            );
            let mut ws = accept_with(tcp, config, |_, _| Decision::accept())
                .await
                .unwrap();
            // The pongs that answer the heartbeat are the protocol's own:
            // never returned.
            let mut pongs_seen = 0;
            loop {
                match ws.recv().await {
                    Some(Ok(Message::Pong(_))) => pongs_seen += 1,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return (pongs_seen, e),
                    None => panic!("ended without an error"),
                }
            }
        });
        // A raw client that completes the handshake, answers two pings, then
        // goes silent without closing. The second ping comes only if the
        // first pong was taken as the answer.
        let mut ws = tungstenite_client(addr, "/").await;
        for _ in 0..2 {
            assert!(matches!(
                ws.next().await.unwrap().unwrap(),
                TMessage::Ping(_)
            ));
            ws.flush().await.unwrap(); // tungstenite queues the pong; flush sends it
        }
        let (pongs_seen, err) = server.await.unwrap();
        assert_eq!(pongs_seen, 0);
        assert!(matches!(err, frameway::Error::PongTimeout(_)), "{err}");
        // After the unanswered ping, the dead peer still got a 1001 close frame.
        assert!(matches!(ws.next().await, Some(Ok(TMessage::Ping(_)))));
        match ws.next().await {
            Some(Ok(TMessage::Close(Some(f)))) => assert_eq!(f.code, TCloseCode::Away),
            other => panic!("expected a 1001 close, got {other:?}"),
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn split_client_pipelining_large_messages_does_not_stall() {
    // The writer queues more than the socket takes while the server, which
    // does not read while it writes, echoes: the reader must keep reading
    // whatever the writer has queued, or both ends wait on each other.
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server().await;
        let config = WebSocketConfig::default()
            .max_message_len(32 << 20)
            .max_send_len(32 << 20);
        let options = frameway::client::ConnectOptions::default().websocket(config);
        let (ws, _) = frameway::client::connect_with(&format!("ws://{addr}/"), options)
            .await
            .unwrap();
        let (mut read, mut write) = ws.split();
        let big = vec![7u8; 8 << 20];
        let writer = tokio::spawn(async move {
            for _ in 0..4 {
                write.send(Message::binary(big.clone())).await.unwrap();
            }
            write
        });
        for _ in 0..4 {
            match read.recv().await {
                Some(Ok(Message::Binary(b))) => assert_eq!(b.len(), 8 << 20),
                other => panic!("expected an 8 MiB echo, got {other:?}"),
            }
        }
        writer.await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn oversized_message_sent_whole_still_gets_its_1009() {
    // The client writes the whole 4 MiB frame. The server refuses it from
    // the header, but must read what follows until the client closes: a
    // socket closed with unread data resets the connection, and the reset
    // would destroy the 1009 before the client reads it.
    tokio::time::timeout(LIMIT, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let config = ServerConfig::default().websocket(
                WebSocketConfig::default()
                    .max_message_len(1024)
                    .max_send_len(1024),
            );
            let mut ws = accept_with(tcp, config, |_, _| Decision::accept())
                .await
                .unwrap();
            while ws.recv().await.is_some() {}
        });
        let mut ws = tungstenite_client(addr, "/").await;
        let tcp = match ws.get_mut() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
            _ => unreachable!(),
        };
        let len = 4u64 << 20;
        let mut frame = vec![0x82, 0xFF];
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.resize(frame.len() + len as usize, 0);
        let (mut rd, mut wr) = tcp.split();
        let (_, reply) = tokio::join!(wr.write_all(&frame), async {
            let mut reply = [0u8; 4];
            rd.read_exact(&mut reply).await.map(|_| reply)
        });
        let reply = reply.expect("the close frame arrives instead of a reset");
        assert_eq!(
            (reply[0], u16::from_be_bytes([reply[2], reply[3]])),
            (0x88, 1009)
        );
    })
    .await
    .unwrap();
}
