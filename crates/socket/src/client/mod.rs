//! The client: [`connect`] and [`connect_with`] open a WebSocket connection
//! to a `ws://` or `wss://` URL, with the options of lua-resty-websocket's
//! `connect` ([`ConnectOptions`]): subprotocols, origin, headers, `Host` and
//! SNI overrides, TLS verification, roots and client certificates, an HTTP
//! `CONNECT` proxy, timeouts, and connection pools with
//! [`WebSocket::set_keepalive`].
//!
//! ```no_run
//! # async fn demo() -> frameway::Result<()> {
//! use std::time::Duration;
//! use frameway::client::{connect_with, ConnectOptions};
//! use frameway::Error;
//!
//! let options = ConnectOptions::default()
//!     .protocol("chat")
//!     .header("authorization", "Bearer 3f9a")
//!     .handshake_timeout(Duration::from_secs(5));
//! match connect_with("wss://example.com/chat", options).await {
//!     Ok((mut ws, response)) => {
//!         println!("connected, subprotocol {:?}", response.protocol());
//!         ws.send_text("hi").await?;
//!     }
//!     Err(Error::UpgradeRefused(refused)) => {
//!         println!("refused with {}: {}", refused.status, String::from_utf8_lossy(&refused.body));
//!     }
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```

mod handshake;
mod options;
mod pool;
mod proxy;
mod stream;
mod tls;
mod url;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use frameway_wire::Role;
use tokio::net::TcpStream;
use tokio::time::error::Elapsed;
use tokio::time::{timeout_at, Instant};

pub use handshake::ConnectResponse;
pub use options::{ConnectOptions, Roots};
pub use stream::ClientStream;
pub use url::{IntoWsUrl, WsUrl};

/// The rustls client configuration and TLS server name that
/// [`connect_with`] uses for a `wss://` URL whose host is `host`, for
/// callers that open the TLS stream themselves (a load generator with its
/// own framing, say): the options' roots, extra CAs, client certificate
/// and `ssl_verify`.
///
/// ```
/// use frameway::client::{tls_client_config, ConnectOptions};
/// let options = ConnectOptions::default().ssl_verify(false);
/// let (config, name) = tls_client_config(&options, "example.com")?;
/// assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
/// assert_eq!(name.to_str(), "example.com");
/// # Ok::<(), frameway::Error>(())
/// ```
pub fn tls_client_config(
    options: &ConnectOptions,
    host: &str,
) -> Result<(
    std::sync::Arc<rustls::ClientConfig>,
    rustls_pki_types::ServerName<'static>,
)> {
    Ok((
        tls::client_config(options)?,
        tls::server_name(options, host)?,
    ))
}

use crate::connection::WebSocket;
use crate::error::{Error, Result, TimeoutKind};
use frameway_wire::deflate::Deflate;
use pool::Checkout;
use proxy::Proxy;
use stream::Transport;

/// Connects to `url` (`ws://` or `wss://`) with default options: no
/// subprotocol, certificates checked against the webpki roots, 10 s
/// connect and handshake timeouts.
///
/// ```no_run
/// # async fn demo() -> frameway::Result<()> {
/// let (mut ws, _response) = frameway::connect("ws://127.0.0.1:9001/echo").await?;
/// ws.send_text("hello").await?;
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<(WebSocket<ClientStream>, ConnectResponse)> {
    connect_with(url, ConnectOptions::default()).await
}

/// Connects to `url` (text, or a [`WsUrl`] already parsed) with
/// `options`.
///
/// In order: the URL and options are checked; the pool is consulted (a
/// live idle connection is returned as is, with
/// [`ConnectResponse::reused`] set); a TCP connection is opened (through
/// the proxy's `CONNECT` tunnel if there is one) within the connect
/// timeout; TLS and the HTTP upgrade run within the handshake timeout.
/// With [`WebSocketConfig::deflate`](crate::WebSocketConfig::deflate) set,
/// permessage-deflate is offered and the server's answer checked
/// ([`ConnectResponse::deflate`], [`WebSocket::deflate`]); an answer that
/// breaks RFC 7692 fails with [`Error::BadResponse`].
///
/// Errors: [`Error::InvalidUrl`]; [`Error::Io`] with
/// [`Error::InvalidOption`] for an unusable
/// option; [`Error::PoolBacklogFull`]; [`Error::Timeout`] with
/// [`TimeoutKind::Connect`] or [`TimeoutKind::Handshake`];
/// [`Error::Proxy`]; [`Error::TlsConfig`] and [`Error::Tls`];
/// [`Error::UpgradeRefused`] when the server answers with another status
/// than 101 (with its body, up to 64 KiB); [`Error::BadResponse`] when its
/// 101 is not a valid upgrade; [`Error::Io`] for network failures.
///
/// ```no_run
/// # async fn demo() -> frameway::Result<()> {
/// use frameway::client::{connect_with, ConnectOptions};
/// let options = ConnectOptions::default()
///     .protocols(["v2.chat", "v1.chat"])
///     .origin("https://example.com")
///     .proxy("http://proxy.internal:3128");
/// let (ws, response) = connect_with("wss://example.com/socket", options).await?;
/// assert_eq!(ws.protocol(), response.protocol());
/// # Ok(()) }
/// ```
pub fn connect_with(
    url: impl IntoWsUrl,
    options: ConnectOptions,
) -> impl Future<Output = Result<(WebSocket<ClientStream>, ConnectResponse)>> {
    // The future works on the options by reference: moved into an inner
    // `async fn`, they would take their room twice in it (rustc keeps an
    // argument's slot beside the local it is moved to), and every proxied
    // handshake of the gateway carries this future.
    let target = url.into_ws_url();
    async move { connect_to(&target?, &options).await }
}

/// [`connect_with`] once the URL is parsed.
async fn connect_to(
    target: &WsUrl,
    options: &ConnectOptions,
) -> Result<(WebSocket<ClientStream>, ConnectResponse)> {
    options.check()?;
    let proxy = options.proxy.as_deref().map(Proxy::parse).transpose()?;
    // Everything that can fail without the network fails before it.
    let tls = if target.is_tls() {
        Some((
            tls::client_config(options)?,
            tls::server_name(options, target.host())?,
        ))
    } else {
        None
    };
    let pool_name = pool::pool_name(options, target, tls.as_ref().map(|(_, name)| name));

    let lease =
        match pool::checkout(&pool_name, options.pool_settings(), options.connect_timeout).await? {
            Checkout::Reused(mut stream) => {
                let response = stream.response().reused_copy();
                let protocol = response.protocol().map(str::to_owned);
                let deflate = stream.deflate.take();
                let mut ws = WebSocket::from_raw_socket(
                    stream,
                    Role::Client,
                    options.websocket.clone(),
                    Bytes::new(),
                )
                .with_subprotocol(protocol);
                if let Some(deflate) = deflate {
                    ws = ws.with_deflate(deflate);
                }
                return Ok((ws, response));
            }
            Checkout::Fresh(lease) => lease,
        };

    let connect_deadline = Instant::now() + options.connect_timeout;
    let tcp = timeout_at(connect_deadline, open_tcp(target, proxy.as_ref()))
        .await
        .map_err(expired(TimeoutKind::Connect, options.connect_timeout))??;

    let deadline = Instant::now() + options.handshake_timeout;
    let timed_out = expired(TimeoutKind::Handshake, options.handshake_timeout);
    let mut io = match tls {
        Some((config, name)) => {
            // Boxed: the TLS handshake's state is larger than the rest of
            // a connect, and only `wss` needs it.
            let handshake = Box::pin(tls::handshake(config, name, tcp));
            let tls = timeout_at(deadline, handshake)
                .await
                .map_err(&timed_out)??;
            Transport::Tls(Box::new(tls))
        }
        None => Transport::Plain(tcp),
    };
    let (response, rest) = timeout_at(deadline, handshake::upgrade(&mut io, target, options))
        .await
        .map_err(&timed_out)??;

    let stream = ClientStream::new(io, pool_name, lease, response.clone());
    Ok((client_socket(stream, options, &response, rest), response))
}

/// Runs the client handshake over a stream the caller already opened (an
/// in-memory pipe, a Unix socket, a stream with its own TLS): `url` gives
/// the Host header and the request path; TCP, TLS, proxy and pool options
/// are not used.
///
/// ```
/// # async fn demo() -> frameway::Result<()> {
/// use frameway::client::{client_handshake, ConnectOptions};
/// let (client_io, server_io) = tokio::io::duplex(64 * 1024);
/// tokio::spawn(async move { frameway::accept(server_io).await });
/// let (mut ws, response) = client_handshake(client_io, "ws://in-memory/chat", ConnectOptions::default()).await?;
/// assert_eq!(response.status(), 101);
/// # ws.send_text("hi").await?;
/// # Ok(()) }
/// ```
pub fn client_handshake<S>(
    io: S,
    url: impl IntoWsUrl,
    options: ConnectOptions,
) -> impl Future<Output = Result<(WebSocket<S>, ConnectResponse)>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // By reference in the future, as in `connect_with`.
    let target = url.into_ws_url();
    async move { handshake_over(io, &target?, &options).await }
}

/// [`client_handshake`] once the URL is parsed.
async fn handshake_over<S>(
    mut io: S,
    target: &WsUrl,
    options: &ConnectOptions,
) -> Result<(WebSocket<S>, ConnectResponse)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    options.check()?;
    let limit = options.handshake_timeout;
    let (response, rest) = timeout_at(
        Instant::now() + limit,
        handshake::upgrade(&mut io, target, options),
    )
    .await
    .map_err(expired(TimeoutKind::Handshake, limit))??;
    Ok((client_socket(io, options, &response, rest), response))
}

/// The connection after a successful upgrade, with what the server agreed
/// to: subprotocol and compression.
fn client_socket<S>(
    io: S,
    options: &ConnectOptions,
    response: &ConnectResponse,
    rest: Bytes,
) -> WebSocket<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let protocol = response.protocol().map(str::to_owned);
    let ws = WebSocket::from_raw_socket(io, Role::Client, options.websocket.clone(), rest)
        .with_subprotocol(protocol);
    match (response.deflate(), &options.websocket.deflate) {
        (Some(params), Some(ours)) => ws.with_deflate(Deflate::new(Role::Client, *params, ours)),
        _ => ws,
    }
}

/// Opens the TCP connection to the server, or to the proxy and through it.
async fn open_tcp(target: &WsUrl, proxy: Option<&Proxy>) -> Result<TcpStream> {
    let (host, port) = match proxy {
        Some(proxy) => (proxy.host.as_str(), proxy.port),
        None => (target.host(), target.port()),
    };
    let mut tcp = TcpStream::connect((host, port)).await?;
    // Frames are written whole and flushed; Nagle's algorithm would only
    // hold small ones (pings, short messages) back for an ACK.
    tcp.set_nodelay(true)?;
    if let Some(proxy) = proxy {
        proxy.tunnel(&mut tcp, &target.authority()).await?;
    }
    Ok(tcp)
}

/// The error of a step that ran out of its `limit` (of `kind`). Steps are
/// awaited under `timeout_at` directly rather than through an `async fn`
/// wrapper, which would hold each step's future twice.
fn expired(kind: TimeoutKind, limit: Duration) -> impl Fn(Elapsed) -> Error {
    move |_| Error::Timeout(kind, limit)
}
