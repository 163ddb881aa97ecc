//! [`ClientStream`]: the byte stream under a client connection (TCP or TLS
//! over TCP), and what it needs to find its way back into a pool.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use frameway_wire::deflate::Deflate;

use super::handshake::ConnectResponse;
use super::pool::Lease;

/// TCP, or TLS over TCP.
pub(crate) enum Transport {
    Plain(TcpStream),
    // Boxed: a TLS session is ~1 KiB, a TcpStream a few words.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The stream under a [`WebSocket`](crate::WebSocket) opened by
/// [`connect`](super::connect): plain TCP for `ws://`, TLS for `wss://`.
///
/// It also remembers which pool it belongs to, so that
/// [`WebSocket::set_keepalive`](crate::WebSocket::set_keepalive) can put it
/// back, and holds its place among the pool's open connections when the
/// pool has a backlog (given back when the stream is dropped).
///
/// ```no_run
/// # async fn demo() -> frameway::Result<()> {
/// let (ws, _) = frameway::connect("wss://example.com/socket").await?;
/// println!("peer {}", ws.get_ref().tcp().peer_addr()?);
/// if let Some(tls) = ws.get_ref().tls() {
///     println!("TLS {:?}", tls.protocol_version());
/// }
/// # Ok(()) }
/// ```
pub struct ClientStream {
    io: Transport,
    pool: Arc<str>,
    /// Held for its `Drop`, which gives the pool place back.
    _lease: Option<Lease>,
    response: ConnectResponse,
    /// permessage-deflate state kept while the connection waits in a pool.
    pub(crate) deflate: Option<Deflate>,
}

impl std::fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStream")
            .field("tls", &self.tls().is_some())
            .field("peer", &self.tcp().peer_addr().ok())
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl ClientStream {
    pub(crate) fn new(
        io: Transport,
        pool: Arc<str>,
        lease: Option<Lease>,
        response: ConnectResponse,
    ) -> Self {
        ClientStream {
            io,
            pool,
            _lease: lease,
            response,
            deflate: None,
        }
    }

    /// The TCP connection (for addresses and socket options). Reading or
    /// writing it directly corrupts the connection.
    pub fn tcp(&self) -> &TcpStream {
        match &self.io {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(tls) => tls.get_ref().0,
        }
    }

    /// The TLS session (negotiated version, cipher suite, ALPN, the
    /// server's certificates), for `wss://` connections.
    pub fn tls(&self) -> Option<&rustls::ClientConnection> {
        match &self.io {
            Transport::Plain(_) => None,
            Transport::Tls(tls) => Some(tls.get_ref().1),
        }
    }

    /// The name of the pool this connection returns to.
    pub fn pool_name(&self) -> &str {
        &self.pool
    }

    pub(crate) fn pool_key(&self) -> &Arc<str> {
        &self.pool
    }

    /// The answer to the handshake that opened this connection.
    pub(crate) fn response(&self) -> &ConnectResponse {
        &self.response
    }

    /// Whether an idle connection still looks usable: nothing to read and
    /// no end of stream. Anything readable on an idle WebSocket is the
    /// server closing or pinging it, so it is not worth handing out. Needs
    /// the tokio runtime; does not block.
    pub(crate) fn is_alive(&mut self) -> bool {
        let waker = Waker::from(Arc::new(NoopWaker));
        let mut cx = Context::from_waker(&waker);
        let mut scratch = [0u8; 64];
        let mut buf = ReadBuf::new(&mut scratch);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }
}

struct NoopWaker;

impl Wake for NoopWaker {
    fn wake(self: Arc<Self>) {}
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Transport::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Transport::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Transport::Tls(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(io) => io.is_write_vectored(),
            Transport::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(io) => Pin::new(io).poll_flush(cx),
            Transport::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Transport::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
