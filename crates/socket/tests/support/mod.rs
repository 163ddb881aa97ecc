//! Shared pieces of the library's integration tests: an echo server and raw
//! HTTP peers that do the opening handshake by hand.

#![allow(dead_code)]

// The pieces every crate's tests share (PKI, Python peers, bounded waits)
// live in the test-support crate; not every test binary uses all of them.
#[allow(unused_imports)]
pub use frameway_test_support::*;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use frameway::server::{accept_with, Decision, ServerConfig};
use frameway::{CloseCode, Message, WebSocket, WebSocketConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves one echo session on `io` (see [`echo_messages`]). Requests to
/// `/forbidden` are refused with 403; the subprotocol is the first offered
/// `chat.v2*` one, else the client's first choice (as `frameway::accept`
/// takes), else none.
pub async fn echo_session<S: AsyncRead + AsyncWrite + Unpin>(io: S) {
    let config = ServerConfig::default().websocket(
        WebSocketConfig::default()
            .max_message_len(32 << 20)
            .max_send_len(32 << 20),
    );
    let decide = |req: &http::Request<()>, offer: &frameway::wire::handshake::ClientOffer| {
        if req.uri().path() == "/forbidden" {
            return Decision::reject(http::StatusCode::FORBIDDEN, "go away")
                .header("x-why", "test");
        }
        match offer.protocols.iter().find(|p| p.starts_with("chat.v2")) {
            Some(p) => Decision::accept()
                .protocol(p.clone())
                .header("x-served-by", "frameway"),
            None => match offer.protocols.first() {
                Some(p) => Decision::accept().protocol(p.clone()),
                None => Decision::accept(),
            },
        }
    };
    let Ok(ws) = accept_with(io, config, decide).await else {
        return;
    };
    echo_messages(ws).await;
}

/// Echoes data messages as they are until the connection ends; the text
/// `close:CODE:REASON` closes with that code and reason.
pub async fn echo_messages<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocket<S>) {
    while let Some(Ok(msg)) = ws.recv().await {
        match msg {
            Message::Text(t) if t.starts_with("close:") => {
                let mut parts = t.splitn(3, ':').skip(1);
                let code: u16 = parts.next().unwrap().parse().unwrap();
                let reason = parts.next().unwrap_or("");
                let _ = ws.close(CloseCode::new(code).unwrap(), reason).await;
                return;
            }
            m @ (Message::Text(_) | Message::Binary(_)) => {
                if let Err(_closed) = ws.send(m).await {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// Serves every connection to a fresh port on 127.0.0.1 with `handle`;
/// returns the address and a count of the connections accepted.
pub async fn serve<F, Fut>(handle: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handle(tcp));
        }
    });
    (addr, accepted)
}

/// A plain-TCP echo server on 127.0.0.1; see [`echo_session`].
pub async fn echo_server() -> SocketAddr {
    counted_echo_server().await.0
}

/// [`echo_server`], with a count of the TCP connections it accepted.
pub async fn counted_echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
    serve(echo_session).await
}

/// Reads from `tcp` to the end of an HTTP head (its blank line); returns
/// the head and the bytes that arrived after it, or `None` if the
/// connection ended first.
pub async fn read_head(tcp: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut got = Vec::new();
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got.split_off(end + 4);
            return Some((String::from_utf8_lossy(&got).into_owned(), rest));
        }
        if tcp.read_buf(&mut got).await.ok()? == 0 {
            return None;
        }
    }
}

/// A raw server that answers every upgrade with 101 (and
/// `Sec-WebSocket-Extensions: EXTENSIONS` when given), then holds the
/// connection for 5 s without reading or writing another byte: a server
/// whose answer the client judges alone, or a peer gone silent.
pub async fn answering(extensions: Option<&'static str>) -> SocketAddr {
    serve(move |mut tcp| async move {
        let Some((request, _)) = read_head(&mut tcp).await else {
            return;
        };
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        let accept = frameway::wire::handshake::accept_key(key.as_bytes());
        let extensions = extensions
            .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
            .unwrap_or_default();
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n{extensions}\r\n"
        );
        tcp.write_all(response.as_bytes()).await.unwrap();
        // Longer than any test waits on a silent peer: closing sooner would
        // end a read or a write that a timeout should have ended.
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await
    .0
}

/// Opens a raw TCP connection to `addr` and sends an upgrade request with
/// `headers` (each line ending in CRLF) added; returns the stream, the
/// response head and the bytes that followed it.
pub async fn raw_upgrade(addr: SocketAddr, headers: &str) -> (TcpStream, String, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut tcp)
        .await
        .expect("the server answered the upgrade");
    (tcp, head, rest)
}

/// A wss echo server with `pki`'s server certificate; with `client_auth`,
/// clients must present a certificate signed by the test CA.
pub async fn tls_echo_server(pki: &TestPki, client_auth: bool) -> SocketAddr {
    tls_echo_server_with(pki.server_config(client_auth)).await
}

/// A wss echo server with this TLS configuration; see [`echo_session`].
pub async fn tls_echo_server_with(config: rustls::ServerConfig) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    serve(move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                echo_session(tls).await;
            }
        }
    })
    .await
    .0
}
