//! Our client against foreign servers over real loopback sockets:
//! tokio-tungstenite, and Python `websockets` (tests/peers/ws_echo_server.py,
//! run from the venv that scripts/install-test-deps makes).
//! (Our server against a Python client is in interop_python.rs.)

// tungstenite's handshake callbacks must return its large `ErrorResponse`.
#![allow(clippy::result_large_err)]

mod support;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use frameway::client::{connect_with, ClientStream, ConnectOptions, Roots};
use frameway::{CloseCode, CloseFrame, Error, Message, OpCode, WebSocket};
use futures_util::{SinkExt, StreamExt};
use support::{bounded, pattern, python_server, python_server_logged, TestPki};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TCloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame as TCloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as TMessage};
use tokio_tungstenite::WebSocketStream;

/// The size of the large messages: our default limit, inclusive.
const BIG: usize = 16 << 20;

/// Text, binary, both empty, and 16 MiB of each.
fn sample_messages() -> Vec<Message> {
    vec![
        Message::text("héllo, wörld"),
        Message::binary(vec![0u8, 1, 2, 127, 128, 255]),
        Message::text(""),
        Message::binary(Vec::new()),
        Message::binary(pattern(BIG)),
        // "é" is two bytes: 16 MiB of UTF-8 text.
        Message::text("é".repeat(BIG / 2)),
    ]
}

/// Sends `msg` and expects it back, unchanged.
async fn echoes(ws: &mut WebSocket<ClientStream>, msg: Message) {
    ws.send(msg.clone()).await.unwrap();
    let back = ws.recv().await.expect("an echo").unwrap();
    assert!(
        back == msg,
        "sent {}, got {}",
        describe(&msg),
        describe(&back)
    );
}

async fn roundtrip(ws: &mut WebSocket<ClientStream>, text: &str) {
    echoes(ws, Message::text(text)).await;
}

/// A message's kind and size, for failures (the large ones are not printed).
fn describe(msg: &Message) -> String {
    match msg {
        Message::Text(t) if t.len() <= 64 => format!("Text({:?})", t.as_str()),
        Message::Text(t) => format!("Text({} bytes)", t.len()),
        Message::Binary(b) => format!("Binary({} bytes)", b.len()),
        other => format!("{other:?}"),
    }
}

/// Sends a text message in three fragments, the middle one ending inside
/// a UTF-8 sequence, with a ping between fragments; then a binary one in
/// two fragments.
async fn send_fragments(ws: &mut WebSocket<ClientStream>) {
    ws.send_frame(false, OpCode::Text, b"frag").await.unwrap();
    // "é" is C3 A9: split across the fragments (RFC 6455 §5.6 allows it).
    ws.send_frame(false, OpCode::Continuation, b"m\xc3")
        .await
        .unwrap();
    // A control frame may come between fragments (§5.4).
    ws.send_ping(&b"between"[..]).await.unwrap();
    ws.send_frame(true, OpCode::Continuation, b"\xa9nted")
        .await
        .unwrap();
    ws.send_frame(false, OpCode::Binary, &[1, 2]).await.unwrap();
    ws.send_frame(true, OpCode::Continuation, &[3])
        .await
        .unwrap();
}

/// What our client reads back after [`send_fragments`] to an echo server.
async fn expect_fragments_echoed(ws: &mut WebSocket<ClientStream>) {
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(ws.recv().await.expect("a message").unwrap());
    }
    assert_eq!(
        got,
        [
            Message::Pong(Bytes::from_static(b"between")),
            Message::text("fragménted"),
            Message::binary(vec![1u8, 2, 3]),
        ]
    );
}

fn close_frame(code: u16, reason: &str) -> Option<CloseFrame> {
    Some(CloseFrame::new(CloseCode::new(code).unwrap(), reason).unwrap())
}

// ----- tokio-tungstenite -----

type Peer = WebSocketStream<TcpStream>;

/// A tungstenite server without limits our messages could reach.
fn tungstenite_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None)
}

/// tungstenite's handshake callback that accepts the request as it is.
fn accept_as_is(_: &Request, response: Response) -> Result<Response, ErrorResponse> {
    Ok(response)
}

/// A tokio-tungstenite server for one connection on 127.0.0.1: the
/// handshake goes through `callback`, then `session` runs on the
/// connection. Returns the URL and the server task, which gives the
/// session's result or the handshake's error.
async fn tungstenite_server<C, F, Fut, T>(
    callback: C,
    session: F,
) -> (String, JoinHandle<Result<T, tungstenite::Error>>)
where
    C: Callback + Unpin + Send + 'static,
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_hdr_async_with_config(
            tcp,
            callback,
            Some(tungstenite_config()),
        )
        .await?;
        Ok(session(ws).await)
    });
    (url, server)
}

/// Echoes data messages until the connection ends (tungstenite answers
/// pings and the close frame itself); returns every message received.
async fn tungstenite_echo(mut ws: Peer) -> Vec<TMessage> {
    let mut seen = Vec::new();
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg.clone()).await.is_err() {
            break;
        }
        seen.push(msg);
    }
    seen
}

/// The same message as tungstenite represents it.
fn as_tungstenite(msg: &Message) -> TMessage {
    match msg {
        Message::Text(t) => TMessage::text(t.as_str()),
        Message::Binary(b) => TMessage::binary(b.clone()),
        other => panic!("not a data message: {other:?}"),
    }
}

#[tokio::test]
async fn tungstenite_echoes_text_binary_empty_and_16_mib() {
    bounded(async {
        let (url, server) = tungstenite_server(accept_as_is, tungstenite_echo).await;
        let (mut ws, response) = frameway::connect(&url).await.unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(response.protocol(), None);
        for msg in sample_messages() {
            echoes(&mut ws, msg).await;
        }
        ws.close(CloseCode::NORMAL, "").await.unwrap();

        let seen = server.await.unwrap().unwrap();
        let sent = sample_messages();
        assert_eq!(seen.len(), sent.len() + 1, "the messages and the close");
        for (seen, sent) in seen.iter().zip(&sent) {
            assert!(*seen == as_tungstenite(sent), "{}", describe(sent));
        }
        assert_eq!(
            seen.last().unwrap(),
            &TMessage::Close(Some(TCloseFrame {
                code: TCloseCode::Normal,
                reason: "".into()
            }))
        );
    })
    .await;
}

#[tokio::test]
async fn tungstenite_receives_fragmented_messages_whole() {
    bounded(async {
        let (url, server) = tungstenite_server(accept_as_is, tungstenite_echo).await;
        let (mut ws, _) = frameway::connect(&url).await.unwrap();
        send_fragments(&mut ws).await;
        expect_fragments_echoed(&mut ws).await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();

        let seen = server.await.unwrap().unwrap();
        assert_eq!(
            seen[..3],
            [
                TMessage::Ping(Bytes::from_static(b"between")),
                TMessage::text("fragménted"),
                TMessage::binary(vec![1u8, 2, 3]),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn tungstenite_answers_our_pings() {
    bounded(async {
        let (url, server) = tungstenite_server(accept_as_is, tungstenite_echo).await;
        let (mut ws, _) = frameway::connect(&url).await.unwrap();
        for payload in [&b"are you there?"[..], b"", &[0x5a; 125]] {
            ws.send_ping(Bytes::copy_from_slice(payload)).await.unwrap();
            assert_eq!(
                ws.recv().await.unwrap().unwrap(),
                Message::Pong(Bytes::copy_from_slice(payload))
            );
        }
        // The connection still carries data after the control frames.
        roundtrip(&mut ws, "after pings").await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();

        let seen = server.await.unwrap().unwrap();
        assert_eq!(
            seen[0],
            TMessage::Ping(Bytes::from_static(b"are you there?"))
        );
        assert_eq!(seen[1], TMessage::Ping(Bytes::new()));
    })
    .await;
}

#[tokio::test]
async fn tungstenite_close_code_and_reason_reach_us() {
    bounded(async {
        let (url, server) = tungstenite_server(accept_as_is, |mut ws: Peer| async move {
            // Close as soon as the client says so; then read its answer.
            let go = ws.next().await.unwrap().unwrap();
            ws.close(Some(TCloseFrame {
                code: TCloseCode::from(4001),
                reason: "reason".into(),
            }))
            .await
            .unwrap();
            let mut after = vec![go];
            while let Some(Ok(msg)) = ws.next().await {
                after.push(msg);
            }
            after
        })
        .await;
        let (mut ws, _) = frameway::connect(&url).await.unwrap();
        ws.send_text("close, please").await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::Close(close_frame(4001, "reason"))
        );
        // The closing handshake completes cleanly: no more messages.
        assert!(ws.recv().await.is_none());

        let seen = server.await.unwrap().unwrap();
        assert_eq!(seen[0], TMessage::text("close, please"));
        // Our answer echoes the code (RFC 6455 §5.5.1).
        match &seen[1..] {
            [TMessage::Close(Some(frame))] => assert_eq!(u16::from(frame.code), 4001),
            other => panic!("expected our close answer, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn our_close_code_and_reason_reach_tungstenite() {
    bounded(async {
        let (url, server) = tungstenite_server(accept_as_is, tungstenite_echo).await;
        let (mut ws, _) = frameway::connect(&url).await.unwrap();
        roundtrip(&mut ws, "before closing").await;
        ws.close(CloseCode::GOING_AWAY, "bye").await.unwrap();

        let seen = server.await.unwrap().unwrap();
        assert_eq!(
            seen.last().unwrap(),
            &TMessage::Close(Some(TCloseFrame {
                code: TCloseCode::Away,
                reason: "bye".into()
            }))
        );
        assert_eq!(u16::from(TCloseCode::Away), 1001);
    })
    .await;
}

#[tokio::test]
async fn tungstenite_chooses_the_subprotocol() {
    bounded(async {
        let offered = Arc::new(Mutex::new(None::<String>));
        let record = offered.clone();
        // The server's preference, which is not the client's first choice.
        let choose = move |request: &Request, mut response: Response| {
            let header = request.headers()["sec-websocket-protocol"]
                .to_str()
                .unwrap()
                .to_owned();
            if header.split(',').any(|p| p.trim() == "v2.chat") {
                response
                    .headers_mut()
                    .insert("sec-websocket-protocol", "v2.chat".parse().unwrap());
            }
            *record.lock().unwrap() = Some(header);
            Ok(response)
        };
        let (url, server) = tungstenite_server(choose, tungstenite_echo).await;
        let options = ConnectOptions::default().protocols(["v1.chat", "v2.chat"]);
        let (mut ws, response) = connect_with(&url, options).await.unwrap();
        assert_eq!(response.protocol(), Some("v2.chat"));
        assert_eq!(ws.protocol(), Some("v2.chat"));
        assert_eq!(response.headers()["sec-websocket-protocol"], "v2.chat");
        roundtrip(&mut ws, "in v2").await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        server.await.unwrap().unwrap();
        assert_eq!(offered.lock().unwrap().as_deref(), Some("v1.chat, v2.chat"));
    })
    .await;
}

#[tokio::test]
async fn tungstenite_subprotocol_that_was_not_offered_is_refused() {
    bounded(async {
        let answer = |_: &Request, mut response: Response| {
            response
                .headers_mut()
                .insert("sec-websocket-protocol", "v3.chat".parse().unwrap());
            Ok(response)
        };
        let (url, _server) = tungstenite_server(answer, tungstenite_echo).await;
        let options = ConnectOptions::default().protocols(["v1.chat", "v2.chat"]);
        match connect_with(&url, options).await {
            Err(Error::BadResponse(_)) => {}
            other => panic!("expected BadResponse, got {:?}", other.map(|(_, r)| r)),
        }
    })
    .await;
}

#[tokio::test]
async fn tungstenite_refusal_is_upgrade_refused() {
    bounded(async {
        let refuse = |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
            Err(tungstenite::http::Response::builder()
                .status(403)
                .header("x-reason", "banned")
                .body(Some("no entry for you".to_owned()))
                .unwrap())
        };
        let (url, server) = tungstenite_server(refuse, tungstenite_echo).await;
        match frameway::connect(&url).await {
            Err(Error::UpgradeRefused(refused)) => {
                assert_eq!(refused.status, 403);
                assert_eq!(refused.headers["x-reason"], "banned");
                assert_eq!(refused.body, "no entry for you");
            }
            other => panic!("expected UpgradeRefused, got {:?}", other.map(|(_, r)| r)),
        }
        assert!(matches!(
            server.await.unwrap(),
            Err(tungstenite::Error::Http(_))
        ));
    })
    .await;
}

// ----- Python websockets -----

fn ws_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/")
}

#[tokio::test]
async fn python_echoes_text_binary_empty_and_16_mib() {
    bounded(async {
        // No --max-size: the server takes messages of any size.
        let (_server, port, mut log) = python_server_logged(&[]).await;
        let (mut ws, response) = frameway::connect(&ws_url(port)).await.unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(response.protocol(), None);
        // We offer no extension: nothing may be negotiated.
        assert!(response.headers().get("sec-websocket-extensions").is_none());
        for msg in sample_messages() {
            echoes(&mut ws, msg).await;
        }
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        log.wait_for("closed: code=1000").await;
    })
    .await;
}

#[tokio::test]
async fn python_receives_fragmented_messages_whole() {
    bounded(async {
        let (_server, port) = python_server(&[]).await;
        let (mut ws, _) = frameway::connect(&ws_url(port)).await.unwrap();
        send_fragments(&mut ws).await;
        expect_fragments_echoed(&mut ws).await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn python_answers_our_pings() {
    bounded(async {
        let (_server, port) = python_server(&[]).await;
        let (mut ws, _) = frameway::connect(&ws_url(port)).await.unwrap();
        for payload in [&b"are you there?"[..], b"", &[0x5a; 125]] {
            ws.send_ping(Bytes::copy_from_slice(payload)).await.unwrap();
            assert_eq!(
                ws.recv().await.unwrap().unwrap(),
                Message::Pong(Bytes::copy_from_slice(payload))
            );
        }
        roundtrip(&mut ws, "after pings").await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn python_close_code_and_reason_reach_us() {
    bounded(async {
        let (_server, port, mut log) = python_server_logged(&[]).await;
        let (mut ws, _) = frameway::connect(&ws_url(port)).await.unwrap();
        ws.send_text("close:4001:reason").await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::Close(close_frame(4001, "reason"))
        );
        assert!(ws.recv().await.is_none());
        // Dropped at once: websockets waits for our end of TCP to close
        // (see we_close_tcp_after_a_server_initiated_close).
        drop(ws);
        // The server got our answer, with the code echoed.
        log.wait_for("closed: code=4001").await;
    })
    .await;
}

/// RFC 6455 §5.5.1: after sending and receiving a close frame, an endpoint
/// MUST close the underlying TCP connection; the server closes first
/// (§7.1.1). websockets half-closes (sends FIN) after the closing handshake
/// and waits for the client's FIN, up to its close_timeout (10 s).
#[tokio::test]
async fn we_close_tcp_after_a_server_initiated_close() {
    bounded(async {
        let (_server, port, mut log) = python_server_logged(&[]).await;
        let (mut ws, _) = frameway::connect(&ws_url(port)).await.unwrap();
        ws.send_text("close:4001:reason").await.unwrap();
        assert!(matches!(ws.recv().await, Some(Ok(Message::Close(_)))));
        assert!(ws.recv().await.is_none());
        // The application still holds the connection: the closing
        // handshake is over, so our end of TCP must be closed already.
        tokio::time::timeout(Duration::from_secs(3), log.wait_for("closed: code=4001"))
            .await
            .expect("the server still waits for our end of TCP to close");
        drop(ws);
    })
    .await;
}

#[tokio::test]
async fn our_close_code_and_reason_reach_python() {
    bounded(async {
        let (_server, port, mut log) = python_server_logged(&[]).await;
        let (mut ws, _) = frameway::connect(&ws_url(port)).await.unwrap();
        roundtrip(&mut ws, "before closing").await;
        ws.close(CloseCode::GOING_AWAY, "bye").await.unwrap();
        log.wait_for("closed: code=1001 reason='bye'").await;
    })
    .await;
}

#[tokio::test]
async fn python_chooses_the_subprotocol() {
    bounded(async {
        let (_server, port, mut log) =
            python_server_logged(&["--subprotocols", "chat.v1,chat.v2"]).await;
        // The server takes the client's first choice it supports.
        let options = ConnectOptions::default().protocols(["x.unknown", "chat.v2", "chat.v1"]);
        let (mut ws, response) = connect_with(&ws_url(port), options).await.unwrap();
        assert_eq!(response.protocol(), Some("chat.v2"));
        assert_eq!(ws.protocol(), Some("chat.v2"));
        roundtrip(&mut ws, "in v2").await;
        log.wait_for("subprotocol: chat.v2").await;

        // Offering none it supports: no subprotocol, still connected.
        let options = ConnectOptions::default().protocol("x.unknown");
        let (mut ws, response) = connect_with(&ws_url(port), options).await.unwrap();
        assert_eq!(response.protocol(), None);
        assert_eq!(ws.protocol(), None);
        roundtrip(&mut ws, "no subprotocol").await;
    })
    .await;
}

#[tokio::test]
async fn python_refusal_is_upgrade_refused() {
    bounded(async {
        let (_server, port) = python_server(&["--reject-status", "403"]).await;
        match frameway::connect(&ws_url(port)).await {
            Err(Error::UpgradeRefused(refused)) => {
                assert_eq!(refused.status, 403);
                assert_eq!(refused.body, "rejected by test");
            }
            other => panic!("expected UpgradeRefused, got {:?}", other.map(|(_, r)| r)),
        }
    })
    .await;
}

/// The Python server's TLS arguments for `pki`'s server certificate.
fn tls_args(pki: &TestPki) -> Vec<String> {
    vec![
        "--certfile".into(),
        pki.path("server.pem"),
        "--keyfile".into(),
        pki.path("server.key"),
    ]
}

#[tokio::test]
async fn python_over_wss_with_the_test_ca() {
    bounded(async {
        let pki = TestPki::new("interop-py-wss");
        let args = tls_args(&pki);
        let (_server, port) =
            python_server(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let url = format!("wss://localhost:{port}/");

        // The CA from a file, on top of the webpki roots.
        let options = ConnectOptions::default().ca_file(pki.path("ca.pem"));
        let (mut ws, _) = connect_with(&url, options).await.unwrap();
        assert!(ws.get_ref().tls().is_some());
        for msg in sample_messages().into_iter().take(4) {
            echoes(&mut ws, msg).await;
        }
        ws.close(CloseCode::NORMAL, "").await.unwrap();

        // Only the CA, from memory.
        let options = ConnectOptions::default()
            .roots(Roots::Empty)
            .ca_pem(pki.ca_pem.clone());
        let (mut ws, _) = connect_with(&url, options).await.unwrap();
        roundtrip(&mut ws, "trusting only the test CA").await;

        // Without the CA, the certificate is unknown.
        match frameway::connect(&url).await {
            Err(Error::Tls(rustls::Error::InvalidCertificate(_))) => {}
            other => panic!(
                "expected an invalid certificate, got {:?}",
                other.map(|(_, r)| r)
            ),
        }
    })
    .await;
}

#[tokio::test]
async fn python_mutual_tls_requires_our_certificate() {
    bounded(async {
        let pki = TestPki::new("interop-py-mtls");
        let mut args = tls_args(&pki);
        args.extend([
            "--cafile".into(),
            pki.path("ca.pem"),
            "--require-client-cert".into(),
        ]);
        let (_server, port) =
            python_server(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let url = format!("wss://localhost:{port}/");

        let options = ConnectOptions::default()
            .ca_pem(pki.ca_pem.clone())
            .client_cert(pki.client_cert_pem.clone(), pki.client_key_pem.clone());
        let (mut ws, _) = connect_with(&url, options).await.unwrap();
        roundtrip(&mut ws, "mutual").await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();

        // Without a certificate, OpenSSL refuses the connection. With TLS
        // 1.3 our side of the handshake is already done: the refusal comes
        // on the first read, as the certificate_required alert or (when
        // asyncio drops the connection before the alert is out) as an EOF.
        let options = ConnectOptions::default().ca_pem(pki.ca_pem.clone());
        match connect_with(&url, options).await {
            Err(Error::Tls(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired,
            ))) => {}
            Err(Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) => {}
            other => panic!("expected a TLS refusal, got {:?}", other.map(|(_, r)| r)),
        }
    })
    .await;
}

#[tokio::test]
async fn python_pooled_connection_is_reused() {
    bounded(async {
        let (_server, port, mut log) = python_server_logged(&[]).await;
        let url = ws_url(port);
        let options = ConnectOptions::default().pool_size(2);

        let (mut ws, response) = connect_with(&url, options.clone()).await.unwrap();
        assert!(!response.reused());
        roundtrip(&mut ws, "first").await;
        let local = ws.get_ref().tcp().local_addr().unwrap();
        ws.set_keepalive(Duration::from_secs(60), 2).unwrap();

        let (mut ws, response) = connect_with(&url, options).await.unwrap();
        assert!(response.reused());
        assert_eq!(response.status(), 101);
        assert_eq!(
            ws.get_ref().tcp().local_addr().unwrap(),
            local,
            "the same TCP connection"
        );
        roundtrip(&mut ws, "second").await;
        echoes(&mut ws, Message::binary(pattern(1 << 20))).await;
        ws.close(CloseCode::NORMAL, "done").await.unwrap();
        log.wait_for("closed: code=1000 reason='done'").await;
    })
    .await;
}
