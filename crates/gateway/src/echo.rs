//! The in-process echo upstream of the built-in configuration, also served
//! by `frameway echo`.

use frameway::server::{accept_with, Decision, ServerConfig};
use frameway::{Message, WebSocket};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

/// Queued echoes above which reading waits for the socket to take them.
const ECHO_BACKLOG: usize = 64 * 1024;

/// Echoes every text and binary message back until the peer closes.
///
/// Written as one poll function that owns the connection, over its
/// poll/queue API, rather than an `async fn` around `recv().await` and
/// `send().await`: the task of an idle connection then holds the
/// connection and nothing else (an `async fn` keeps its argument and its
/// moved-out copy side by side, and each nested future adds its own state).
pub fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
) -> impl Future<Output = frameway::Result<()>> + Unpin {
    std::future::poll_fn(move |cx| poll_echo(&mut ws, cx))
}

fn poll_echo<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    cx: &mut Context<'_>,
) -> Poll<frameway::Result<()>> {
    loop {
        if ws.queued_len() >= ECHO_BACKLOG {
            ready!(ws.poll_flush_queued(cx))?;
        }
        match ws.poll_recv(cx) {
            Poll::Ready(Some(Ok(msg @ (Message::Text(_) | Message::Binary(_))))) => {
                ws.queue(&msg)?
            }
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            Poll::Ready(None) => return Poll::Ready(Ok(())),
            Poll::Pending => {
                ready!(ws.poll_flush_queued(cx))?;
                return Poll::Pending;
            }
        }
    }
}

/// Accepts a connection on `io` (taking the client's first subprotocol, if
/// any) and echoes it with limits high enough for Autobahn|Testsuite.
pub fn serve_echo<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
) -> impl Future<Output = frameway::Result<()>> + Unpin {
    let config = ServerConfig::default().websocket(
        frameway::WebSocketConfig::default()
            .max_message_len(32 << 20)
            .max_send_len(32 << 20),
    );
    serve_echo_with(io, config)
}

/// [`serve_echo`] with the given settings.
pub fn serve_echo_with<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    config: ServerConfig,
) -> impl Future<Output = frameway::Result<()>> + Unpin {
    // The handshake's state is boxed and dropped once the connection is
    // open: an idle connection holds only the connection.
    let accept = Box::pin(accept_with(io, config, |_, offer| {
        match offer.protocols.first() {
            Some(p) => Decision::accept().protocol(p.clone()),
            None => Decision::accept(),
        }
    }));
    let mut stage = Stage::Handshake(accept);
    std::future::poll_fn(move |cx| loop {
        match &mut stage {
            Stage::Handshake(accept) => stage = Stage::Echo(ready!(accept.as_mut().poll(cx))?),
            Stage::Echo(ws) => return poll_echo(ws, cx),
        }
    })
}

/// Where a served echo connection is. The small variant is short-lived, so
/// the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Stage<H, S> {
    Handshake(Pin<Box<H>>),
    Echo(WebSocket<S>),
}
