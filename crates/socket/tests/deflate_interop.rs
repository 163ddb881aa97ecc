//! permessage-deflate against Python `websockets` (which compresses by
//! default), both directions, with context takeover on and off and small
//! windows: our server with its client, our client with its server.

mod support;

use frameway::client::{connect_with, ConnectOptions};
use frameway::server::{accept_with, Decision, ServerConfig};
use frameway::{DeflateConfig, Message, OpCode, WebSocketConfig};
use serde_json::json;
use support::{pattern, python_client, python_server_logged, serve};

/// Our echo server with `deflate` (and 1 KiB frames when `fragment`).
async fn deflate_echo_server(deflate: DeflateConfig, fragment: bool) -> std::net::SocketAddr {
    let mut websocket = WebSocketConfig::default()
        .max_message_len(32 << 20)
        .max_send_len(32 << 20)
        .deflate(deflate);
    if fragment {
        websocket = websocket.fragment_size(1024);
    }
    let config = ServerConfig::default().websocket(websocket);
    let (addr, _) = serve(move |tcp| {
        let config = config.clone();
        async move {
            let Ok(ws) = accept_with(tcp, config, |_, _| Decision::accept()).await else {
                return;
            };
            assert!(ws.deflate().is_some(), "every client here offers deflate");
            support::echo_messages(ws).await;
        }
    })
    .await;
    addr
}

/// Messages of several sizes, compressible and not, both kinds, one of
/// them fragmented, for the Python client to send and expect back.
fn python_script(expect_extensions: &str) -> serde_json::Value {
    let text = "permessage-deflate interop, ".repeat(3000);
    json!([
        {"expect_extensions": expect_extensions},
        {"send_text": "hi"}, {"expect_text": "hi"},
        {"send_text": ""}, {"expect_text": ""},
        {"send_text": text}, {"expect_text": text},
        {"send_text": text}, {"expect_text": text},
        {"send_binary_len": 70_000}, {"expect_binary_len": 70_000, "pattern": true},
        {"send_binary_len": 1 << 20}, {"expect_binary_len": 1 << 20, "pattern": true},
        {"send_fragments": ["fragmé", "nted ", "and compressed ".repeat(100)], "binary": false},
        {"expect_text": format!("fragménted {}", "and compressed ".repeat(100))},
        {"ping": "70696e67"},
        {"close": [1000, "done"]}
    ])
}

#[tokio::test]
async fn python_client_with_context_takeover() {
    let addr = deflate_echo_server(DeflateConfig::default(), false).await;
    // websockets offers `permessage-deflate; client_max_window_bits`, which
    // needs no parameter in the answer.
    let out = python_client(
        &format!("ws://{addr}/"),
        python_script("permessage-deflate"),
        &[],
    )
    .await;
    assert_eq!(out, "OK");
}

#[tokio::test]
async fn python_client_without_context_takeover_and_small_windows() {
    let addr = deflate_echo_server(DeflateConfig::default(), true).await;
    let script = python_script(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=9; client_max_window_bits=9",
    );
    let args = [
        "--deflate-no-context-takeover",
        "--deflate-window-bits",
        "9",
    ];
    assert_eq!(
        python_client(&format!("ws://{addr}/"), script, &args).await,
        "OK"
    );
}

#[tokio::test]
async fn python_client_gets_what_our_server_requires() {
    let ours = DeflateConfig::default()
        .server_no_context_takeover(true)
        .client_no_context_takeover(true)
        .client_max_window_bits(10)
        .server_max_window_bits(11);
    let addr = deflate_echo_server(ours, false).await;
    let script = python_script(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=11; client_max_window_bits=10",
    );
    assert_eq!(
        python_client(&format!("ws://{addr}/"), script, &[]).await,
        "OK"
    );
}

#[tokio::test]
async fn python_client_with_an_8_bit_server_window() {
    // Python's zlib cannot compress with 8 bits, but it can inflate with
    // them; our server compresses to fit.
    let ours = DeflateConfig::default().server_max_window_bits(8);
    let addr = deflate_echo_server(ours, false).await;
    let script = python_script("permessage-deflate; server_max_window_bits=8");
    assert_eq!(
        python_client(&format!("ws://{addr}/"), script, &[]).await,
        "OK"
    );
}

/// Our client against the Python server started with `server_args`:
/// messages of several sizes (one fragmented by us) echo back intact.
async fn our_client_against_python(server_args: &[&str], ours: DeflateConfig, expected: &str) {
    let (_server, port, mut log) = python_server_logged(server_args).await;
    let options = ConnectOptions::default().websocket(
        WebSocketConfig::default()
            .max_message_len(32 << 20)
            .max_send_len(32 << 20)
            .deflate(ours),
    );
    let (mut ws, response) = connect_with(&format!("ws://127.0.0.1:{port}/"), options)
        .await
        .unwrap();
    let params = *ws.deflate().expect("permessage-deflate negotiated");
    assert_eq!(response.deflate(), Some(&params));
    assert_eq!(
        response.headers()["sec-websocket-extensions"],
        expected,
        "the server's answer"
    );
    log.wait_for(&format!("extensions: {expected}")).await;

    let text = "our client, compressing. ".repeat(4000);
    let messages = [
        Message::text("x"),
        Message::text(""),
        Message::text(text.as_str()),
        Message::text(text.as_str()),
        Message::binary(pattern(70_000)),
        Message::binary(pattern(1 << 20)),
        Message::binary(vec![0u8; 4 << 20]),
    ];
    for msg in messages {
        ws.send(msg.clone()).await.unwrap();
        let echo = ws.recv().await.unwrap().unwrap();
        assert!(
            echo == msg,
            "echo of a {}-byte message differs",
            msg.as_payload().len()
        );
    }
    // A compressed message sent fragment by fragment.
    ws.send_frame(false, OpCode::Text, "stream ".repeat(500).as_bytes())
        .await
        .unwrap();
    ws.send_frame(false, OpCode::Continuation, "ing ".repeat(500).as_bytes())
        .await
        .unwrap();
    ws.send_frame(true, OpCode::Continuation, b"!")
        .await
        .unwrap();
    let expected_text = "stream ".repeat(500) + &"ing ".repeat(500) + "!";
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text(expected_text)
    );
    ws.close(frameway::CloseCode::NORMAL, "bye").await.unwrap();
    log.wait_for("closed: code=1000").await;
}

#[tokio::test]
async fn our_client_against_python_defaults() {
    // websockets' server answers our plain offer with 12-bit windows (its
    // default), which our client then keeps to.
    our_client_against_python(
        &[],
        DeflateConfig::default(),
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
    )
    .await;
}

#[tokio::test]
async fn our_client_against_python_without_context_takeover() {
    our_client_against_python(
        &[
            "--deflate-no-context-takeover",
            "--deflate-window-bits",
            "10",
        ],
        DeflateConfig::default(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=10",
    )
    .await;
}

#[tokio::test]
async fn our_client_asks_python_for_no_context_takeover() {
    let ours = DeflateConfig::default()
        .server_no_context_takeover(true)
        .client_no_context_takeover(true)
        .server_max_window_bits(9)
        .client_max_window_bits(8);
    our_client_against_python(
        &[],
        ours,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=9; client_max_window_bits=8",
    )
    .await;
}
