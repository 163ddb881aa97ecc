//! A deflate bomb against `frameway echo`: messages of a few dozen KiB
//! compressed that would inflate to 256 MiB each are closed with 1009 once
//! they pass the 1 MiB receive limit, and the server's peak memory stays
//! where one legitimate 1 MiB message puts it.

mod support;

use frameway::client::{connect_with, ConnectOptions};
use frameway::{CloseCode, DeflateConfig, Message, WebSocketConfig};
use support::echo_server;

const LIMIT: u64 = 1 << 20;

/// A `/proc/PID/status` field, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn options() -> ConnectOptions {
    // Our client may send what the server may not receive.
    let config = WebSocketConfig::default()
        .max_message_len(512 << 20)
        .max_send_len(512 << 20)
        .deflate(DeflateConfig::default());
    ConnectOptions::default().websocket(config)
}

#[tokio::test]
async fn a_deflate_bomb_closes_with_1009_and_memory_stays_flat() {
    let (server, port) = echo_server(&["--max-message", &LIMIT.to_string()]);
    let pid = server.pid();
    let url = format!("ws://127.0.0.1:{port}/");

    // Warm up: the largest legitimate message, echoed, compressed.
    let (mut ws, _) = connect_with(&url, options()).await.unwrap();
    assert!(ws.deflate().is_some(), "frameway echo negotiates deflate");
    let legit = Message::binary(vec![7u8; LIMIT as usize]);
    for _ in 0..3 {
        ws.send(legit.clone()).await.unwrap();
        assert!(ws.recv().await.unwrap().unwrap() == legit);
    }
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    let baseline = status_kib(pid, "VmHWM:");

    let bomb = Message::binary(vec![0u8; 256 << 20]);
    for _ in 0..8 {
        let (mut ws, _) = connect_with(&url, options()).await.unwrap();
        ws.send(bomb.clone()).await.unwrap();
        match ws.recv().await {
            Some(Ok(Message::Close(Some(close)))) => assert_eq!(close.code, CloseCode::TOO_BIG),
            other => panic!("expected a 1009 close, got {other:?}"),
        }
    }
    let peak = status_kib(pid, "VmHWM:");
    let now = status_kib(pid, "VmRSS:");
    eprintln!("echo server VmHWM: {baseline} KiB after warm-up, {peak} KiB after 8 bombs (VmRSS {now} KiB)");
    // One bomb inflated whole would add 256 MiB; bounded inflation adds at
    // most the limit, which the warm-up already reached.
    assert!(
        peak <= baseline + 4 * 1024,
        "peak RSS grew from {baseline} KiB to {peak} KiB"
    );
}
