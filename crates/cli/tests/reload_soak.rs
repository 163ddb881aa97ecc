//! Reloads under load: 100 connections exchange numbered, checksummed
//! messages through a real `frameway gateway` (2 workers) while its
//! configuration is reloaded 20 times, valid and invalid files alternating
//! and a plugin coming and going. No connection drops, no message is lost,
//! reordered or corrupted, and each connection opened after a reload gets
//! that reload's plugins.

mod support;

use std::time::Duration;

use frameway::{Message, WebSocket};
use support::{admin, echo_route_config, free_port, start_logged};

const CONNECTIONS: usize = 100;
const RELOADS: usize = 20;

/// What a client sends as message `seq` of connection `conn`: its
/// numbers and a checksum of them, so that a mix-up is caught.
fn numbered(conn: usize, seq: u64) -> String {
    let sum = (conn as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq.wrapping_mul(31);
    format!("{conn}:{seq}:{sum:016x}")
}

/// Sends numbered messages and checks each echo until `stop`, then closes;
/// returns how many round trips it made.
async fn exchange<S>(
    mut ws: WebSocket<S>,
    conn: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> u64
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut seq = 0;
    while !*stop.borrow() {
        let sent = numbered(conn, seq);
        ws.send_text(sent.clone())
            .await
            .unwrap_or_else(|e| panic!("connection {conn} failed to send message {seq}: {e}"));
        match ws.recv().await {
            Some(Ok(Message::Text(echo))) => assert_eq!(echo.as_str(), sent, "connection {conn}"),
            other => panic!("connection {conn}, message {seq}: expected its echo, got {other:?}"),
        }
        seq += 1;
    }
    ws.close(frameway::CloseCode::NORMAL, "done").await.unwrap();
    seq
}

/// Whether a connection opened now gets `websocket-size-limit` (8 bytes):
/// a 20-byte message is refused with 1009, else echoed.
async fn limited(url: &str) -> bool {
    let (mut ws, _) = frameway::client::connect(url).await.unwrap();
    ws.send_text("twenty bytes of text").await.unwrap();
    match ws.recv().await {
        Some(Ok(Message::Text(_))) => false,
        Some(Ok(Message::Close(Some(close)))) if close.code.as_u16() == 1009 => true,
        other => panic!("expected an echo or 1009, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_connections_lose_nothing_across_twenty_reloads() {
    tokio::time::timeout(Duration::from_secs(120), soak())
        .await
        .expect("the soak ends within two minutes");
}

async fn soak() {
    let (_echo, echo_port) = support::echo_server(&[]);
    let (port, admin_port) = (free_port(), free_port());
    let path = std::env::temp_dir().join(format!("frameway-soak-{port}.toml"));
    let gateway = format!("[admin]\nlisten = \"127.0.0.1:{admin_port}\"");
    let limit = r#"  [[services.routes.plugins]]
  name = "websocket-size-limit"
  config = { client_max_payload = 8 }
"#;
    let file = |plugins: &str| echo_route_config(port, echo_port, "", plugins) + "\n" + &gateway;
    std::fs::write(&path, file("")).unwrap();
    let (_gateway, _logs) = start_logged(&[
        "gateway",
        "--workers",
        "2",
        "--config",
        path.to_str().unwrap(),
    ]);
    let url = format!("ws://127.0.0.1:{port}/echo");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut clients = tokio::task::JoinSet::new();
    for conn in 0..CONNECTIONS {
        let (ws, _) = frameway::client::connect(&url).await.unwrap();
        clients.spawn(exchange(ws, conn, stopped.clone()));
    }

    let mut plugin_on = false;
    for reload in 0..RELOADS {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let valid = reload % 2 == 0;
        if valid {
            plugin_on = !plugin_on;
            std::fs::write(&path, file(if plugin_on { limit } else { "" })).unwrap();
        } else {
            std::fs::write(&path, file("").replace("paths = [", "paths = 7 # [")).unwrap();
        }
        let admin_port_now = admin_port;
        let (status, body) =
            tokio::task::spawn_blocking(move || admin(admin_port_now, "POST", "/reload"))
                .await
                .unwrap();
        assert_eq!(
            status,
            if valid { 200 } else { 422 },
            "reload {reload}: {body}"
        );
        assert_eq!(limited(&url).await, plugin_on, "after reload {reload}");
    }

    stop.send_replace(true);
    let mut total = 0;
    while let Some(trips) = tokio::time::timeout(Duration::from_secs(30), clients.join_next())
        .await
        .expect("every client finishes")
    {
        let trips = trips.expect("no client failed");
        assert!(trips > 0, "a connection exchanged nothing");
        total += trips;
    }
    eprintln!("{CONNECTIONS} connections, {RELOADS} reloads, {total} round trips, none lost");
    let _ = std::fs::remove_file(&path);
}
