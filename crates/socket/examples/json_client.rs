//! A client exchanging typed JSON messages with keep-alive pings:
//! `cargo run -p frameway --example json_client -- ws://127.0.0.1:9002`
//! (against the echo_server example or `frameway echo`).

use std::time::Duration;

use frameway::client::{connect_with, ConnectOptions};
use frameway::{CloseCode, WebSocketConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Chat {
    room: String,
    text: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> frameway::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9002".into());
    let options = ConnectOptions::default().websocket(
        WebSocketConfig::default()
            .ping_interval(Duration::from_secs(20))
            .pong_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(10)),
    );
    let (mut ws, response) = connect_with(&url, options).await?;
    println!("connected: HTTP {}", response.status());
    let sent = Chat {
        room: "lobby".into(),
        text: "hello".into(),
    };
    ws.send_json(&sent).await?;
    let echoed: Chat = ws.recv_json().await?;
    println!("echoed: {echoed:?}");
    ws.close(CloseCode::NORMAL, "done").await
}
