//! The in-process echo upstream of the built-in configuration, also served
//! by `frameway echo`.

use frameway::server::{accept_with, Decision, ServerConfig};
use frameway::{Message, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};

/// Echoes every text and binary message back until the peer closes.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocket<S>) -> frameway::Result<()> {
    while let Some(msg) = ws.recv().await {
        if let msg @ (Message::Text(_) | Message::Binary(_)) = msg? {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

/// Accepts a connection on `io` (taking the client's first subprotocol, if
/// any) and echoes it with limits high enough for Autobahn|Testsuite.
pub async fn serve_echo<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> frameway::Result<()> {
    let config = ServerConfig::default()
        .websocket(frameway::WebSocketConfig::default().max_payload_len(32 << 20));
    serve_echo_with(io, config).await
}

/// [`serve_echo`] with the given settings.
pub async fn serve_echo_with<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    config: ServerConfig,
) -> frameway::Result<()> {
    // The handshake's state is boxed so that it is freed once the
    // connection is open: an idle connection holds only the echo loop.
    let ws = Box::pin(accept_with(io, config, |_, offer| {
        match offer.protocols.first() {
            Some(p) => Decision::accept().protocol(p.clone()),
            None => Decision::accept(),
        }
    }))
    .await?;
    echo(ws).await
}
