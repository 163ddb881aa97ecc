//! The in-process echo upstream of the built-in configuration, also served
//! by `frameway echo`.

use frameway::server::{accept_with, Decision, ServerConfig};
use frameway::{Message, WebSocket};
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};

/// Queued echoes above which reading waits for the socket to take them.
const ECHO_BACKLOG: usize = 64 * 1024;

/// Echoes every text and binary message back until the peer closes.
///
/// Written as one poll function over the connection's poll/queue API
/// rather than `recv().await` and `send().await`: the task of an idle
/// connection then holds the connection and little else.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocket<S>) -> frameway::Result<()> {
    std::future::poll_fn(|cx| loop {
        if ws.queued_len() >= ECHO_BACKLOG {
            std::task::ready!(ws.poll_flush_queued(cx))?;
        }
        match ws.poll_recv(cx) {
            Poll::Ready(Some(Ok(msg @ (Message::Text(_) | Message::Binary(_))))) => {
                ws.queue(&msg)?
            }
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            Poll::Ready(None) => return Poll::Ready(Ok(())),
            Poll::Pending => {
                std::task::ready!(ws.poll_flush_queued(cx))?;
                return Poll::Pending;
            }
        }
    })
    .await
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
