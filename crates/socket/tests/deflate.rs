//! permessage-deflate between our own client and server: what each side
//! agrees to, declining, bad answers, fragments, pooled connections.

mod support;

use std::time::Duration;

use frameway::client::{connect_with, ConnectOptions};
use frameway::server::{accept_with, Decision, ServerConfig};
use frameway::wire::deflate::NegotiationError;
use frameway::wire::handshake::ResponseError;
use frameway::{CloseCode, DeflateConfig, Error, Message, OpCode, WebSocketConfig};
use support::{answering, echo_messages, pattern, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server(config: WebSocketConfig) -> std::net::SocketAddr {
    let config = ServerConfig::default().websocket(config);
    serve(move |tcp| {
        let config = config.clone();
        async move {
            if let Ok(ws) = accept_with(tcp, config, |_, _| Decision::accept()).await {
                echo_messages(ws).await;
            }
        }
    })
    .await
    .0
}

fn client(deflate: DeflateConfig) -> ConnectOptions {
    ConnectOptions::default().websocket(WebSocketConfig::default().deflate(deflate))
}

async fn round_trips(ws: &mut frameway::WebSocket<frameway::client::ClientStream>) {
    let text = "a message that compresses well. ".repeat(2000);
    for msg in [
        Message::text(text.as_str()),
        Message::text(text.as_str()),
        Message::binary(pattern(100_000)),
        Message::text("tiny"),
    ] {
        ws.send(msg.clone()).await.unwrap();
        assert!(ws.recv().await.unwrap().unwrap() == msg);
    }
}

#[tokio::test]
async fn both_sides_agree_on_the_parameters() {
    let ours = DeflateConfig::default()
        .server_no_context_takeover(true)
        .client_max_window_bits(9);
    let addr = server(WebSocketConfig::default().deflate(ours).fragment_size(4096)).await;
    let offer = DeflateConfig::default()
        .client_no_context_takeover(true)
        .server_max_window_bits(10);
    let (mut ws, response) = connect_with(&format!("ws://{addr}/"), client(offer))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["sec-websocket-extensions"],
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=9"
    );
    let params = ws.deflate().unwrap();
    assert!(params.server_no_context_takeover && params.client_no_context_takeover);
    assert_eq!(
        (params.server_max_window_bits, params.client_max_window_bits),
        (10, 9)
    );
    round_trips(&mut ws).await;
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

#[tokio::test]
async fn a_server_without_deflate_declines_and_the_client_goes_on() {
    let addr = server(WebSocketConfig::default()).await;
    let (mut ws, response) =
        connect_with(&format!("ws://{addr}/"), client(DeflateConfig::default()))
            .await
            .unwrap();
    assert!(response.headers().get("sec-websocket-extensions").is_none());
    assert!(ws.deflate().is_none() && response.deflate().is_none());
    round_trips(&mut ws).await;
}

#[tokio::test]
async fn a_server_needing_a_small_client_window_declines_a_plain_offer() {
    // Our client always offers client_max_window_bits; a hand-written offer
    // without it cannot be held to 10 bits, so it is declined.
    let addr = server(
        WebSocketConfig::default().deflate(DeflateConfig::default().client_max_window_bits(10)),
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = vec![0; 1024];
    let n = tcp.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
}

#[tokio::test]
async fn answers_that_break_rfc_7692_fail_the_connection() {
    for (answer, expected) in [
        (
            "permessage-deflate; client_max_window_bits",
            NegotiationError::MissingValue("client_max_window_bits"),
        ),
        (
            "permessage-deflate; server_max_window_bits=7",
            NegotiationError::InvalidValue("server_max_window_bits"),
        ),
        (
            "permessage-deflate; mystery",
            NegotiationError::UnknownParameter("mystery".into()),
        ),
        (
            "permessage-deflate, permessage-deflate",
            NegotiationError::Repeated,
        ),
    ] {
        let addr = answering(Some(answer)).await;
        let err = connect_with(&format!("ws://{addr}/"), client(DeflateConfig::default()))
            .await
            .unwrap_err();
        match err {
            Error::BadResponse(ResponseError::Deflate(got)) => {
                assert_eq!(got, expected, "{answer}")
            }
            other => panic!("{answer}: expected a deflate negotiation error, got {other:?}"),
        }
    }
    // An extension that was not offered at all.
    let addr = answering(Some("permessage-deflate")).await;
    let err = connect_with(&format!("ws://{addr}/"), ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadResponse(ResponseError::UnofferedExtension(_))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn compressed_fragments_both_ways() {
    let addr = server(
        WebSocketConfig::default()
            .deflate(DeflateConfig::default())
            .fragment_size(1000),
    )
    .await;
    let (mut ws, _) = connect_with(&format!("ws://{addr}/"), client(DeflateConfig::default()))
        .await
        .unwrap();
    // The echo comes back in 1000-byte compressed frames.
    let data = pattern(300_000);
    ws.send_binary(data.clone()).await.unwrap();
    let first = ws.recv_frame().await.unwrap().unwrap();
    assert_eq!((first.opcode, first.fin), (OpCode::Binary, false));
    let mut got = first.payload.to_vec();
    loop {
        let frame = ws.recv_frame().await.unwrap().unwrap();
        assert_eq!(frame.opcode, OpCode::Continuation);
        got.extend_from_slice(&frame.payload);
        if frame.fin {
            break;
        }
    }
    assert_eq!(got, data);
    // And we stream one out fragment by fragment.
    for (i, part) in ["stream", "ed ", "text"].iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        ws.send_frame(i == 2, opcode, part.as_bytes())
            .await
            .unwrap();
    }
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("streamed text")
    );
}

#[tokio::test]
async fn a_pooled_connection_keeps_its_windows() {
    let addr = server(WebSocketConfig::default().deflate(DeflateConfig::default())).await;
    let options = client(DeflateConfig::default()).pool_size(2);
    let url = format!("ws://{addr}/");
    let text = Message::text("context takeover across the pool. ".repeat(100));
    let (mut ws, _) = connect_with(&url, options.clone()).await.unwrap();
    ws.send(text.clone()).await.unwrap();
    assert!(ws.recv().await.unwrap().unwrap() == text);
    ws.set_keepalive(Duration::from_secs(60), 2).unwrap();
    // Both ends refer back to the first message; fresh windows on either
    // side would corrupt it.
    let (mut ws, response) = connect_with(&url, options).await.unwrap();
    assert!(response.reused());
    assert!(ws.deflate().is_some());
    for _ in 0..3 {
        ws.send(text.clone()).await.unwrap();
        assert!(ws.recv().await.unwrap().unwrap() == text);
    }
}
