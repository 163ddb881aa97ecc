//! Drives Autobahn|Testsuite's fuzzing server with the frameway client:
//! fetches the case count, echoes every message of every case, then asks
//! for the reports. Used by `scripts/autobahn client`.
//!
//! Reads `AUTOBAHN_URL` (default ws://127.0.0.1:9001) and `AUTOBAHN_AGENT`
//! (default frameway). Offers permessage-deflate (groups 12 and 13) unless
//! `AUTOBAHN_NO_DEFLATE` is set.

use frameway::client::{connect_with, ConnectOptions};
use frameway::{DeflateConfig, Message, WebSocketConfig};

fn options() -> ConnectOptions {
    let mut config = WebSocketConfig::default()
        .max_message_len(16 << 20)
        .max_send_len(16 << 20);
    if std::env::var_os("AUTOBAHN_NO_DEFLATE").is_none() {
        config = config.deflate(DeflateConfig::default());
    }
    ConnectOptions::default().websocket(config)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::var("AUTOBAHN_URL").unwrap_or_else(|_| "ws://127.0.0.1:9001".into());
    let agent = std::env::var("AUTOBAHN_AGENT").unwrap_or_else(|_| "frameway".into());

    let (mut ws, _) = connect_with(&format!("{base}/getCaseCount"), options()).await?;
    let count: u32 = match ws.recv().await {
        Some(Ok(Message::Text(text))) => text.parse()?,
        other => return Err(format!("unexpected case count reply: {other:?}").into()),
    };
    while ws.recv().await.is_some() {}

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        // A case ending in an error is what some cases test; the report
        // judges it, so errors are only logged.
        let (mut ws, _) = match connect_with(&url, options()).await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("case {case}: connect failed: {e}");
                continue;
            }
        };
        while let Some(msg) = ws.recv().await {
            match msg {
                Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("case {case}: {e}");
                    break;
                }
            }
        }
    }

    let (mut ws, _) =
        connect_with(&format!("{base}/updateReports?agent={agent}"), options()).await?;
    while ws.recv().await.is_some() {}
    Ok(())
}
