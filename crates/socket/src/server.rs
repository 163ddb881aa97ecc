//! Accepting connections: the server side of the opening handshake over any
//! stream, and upgrading a request another HTTP server already parsed.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use frameway_wire::deflate::{Deflate, DeflateConfig, DeflateParams};
use frameway_wire::handshake::{
    accept_response, parse_request, rejection_response, validate_request, write_accept,
    write_response, ClientOffer, HandshakeLimits, RequestError,
};
use frameway_wire::{spare, Role};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::config::WebSocketConfig;
use crate::connection::{with_timeout, WebSocket};
use crate::error::{Error, Result, TimeoutKind};
use crate::read::read_spare;

/// How an application answers an opening request: accept (choosing a
/// subprotocol, adding headers) or refuse with a status and body.
///
/// ```
/// use frameway::server::Decision;
/// use http::StatusCode;
/// let accept = Decision::accept().protocol("chat").header("x-server", "frameway");
/// let refuse = Decision::reject(StatusCode::FORBIDDEN, "no such room");
/// # let _ = (accept, refuse);
/// ```
#[derive(Debug, Clone)]
pub enum Decision {
    /// Upgrade the connection.
    Accept {
        /// The subprotocol to answer with; must be one the client offered.
        protocol: Option<String>,
        /// Extra response headers.
        headers: HeaderMap,
    },
    /// Answer with an HTTP error and close.
    Reject {
        /// The status.
        status: StatusCode,
        /// Extra response headers.
        headers: HeaderMap,
        /// The body.
        body: Bytes,
    },
}

impl Decision {
    /// Accept with no subprotocol and no extra headers.
    pub fn accept() -> Self {
        Decision::Accept {
            protocol: None,
            headers: HeaderMap::new(),
        }
    }

    /// Refuse with `status` and `body`.
    pub fn reject(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Decision::Reject {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// Chooses the subprotocol (ignored when rejecting).
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        if let Decision::Accept { protocol, .. } = &mut self {
            *protocol = Some(name.into());
        }
        self
    }

    /// Adds a response header. Invalid names or values are ignored.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            match &mut self {
                Decision::Accept { headers, .. } | Decision::Reject { headers, .. } => {
                    headers.append(name, value);
                }
            }
        }
        self
    }
}

/// Server-side settings: the connection's settings plus handshake limits.
///
/// ```
/// use frameway::server::ServerConfig;
/// use frameway::WebSocketConfig;
/// let config = ServerConfig::default().websocket(WebSocketConfig::default().max_message_len(1 << 20).max_send_len(1 << 20));
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Settings for accepted connections, shared by all of them.
    pub websocket: Arc<WebSocketConfig>,
    /// Limits on the request head.
    pub limits: HandshakeLimits,
    /// How long a client may take to send its request.
    pub handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            websocket: Arc::new(WebSocketConfig::default()),
            limits: HandshakeLimits::default(),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    /// Sets the accepted connections' settings.
    pub fn websocket(mut self, config: impl Into<Arc<WebSocketConfig>>) -> Self {
        self.websocket = config.into();
        self
    }
}

/// Accepts a WebSocket connection on `io` with default settings, taking the
/// first subprotocol the client offers (if any).
///
/// ```no_run
/// # async fn demo() -> frameway::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// let (tcp, _) = listener.accept().await?;
/// let mut ws = frameway::accept(tcp).await?;
/// ws.send_text("welcome").await?;
/// # Ok(()) }
/// ```
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> Result<WebSocket<S>> {
    accept_with(io, ServerConfig::default(), |_, offer| {
        match offer.protocols.first() {
            Some(p) => Decision::accept().protocol(p.clone()),
            None => Decision::accept(),
        }
    })
    .await
}

/// Accepts a WebSocket connection on `io`, letting `decide` see the request
/// and accept (with a subprotocol and headers) or refuse it.
///
/// With [`WebSocketConfig::deflate`](crate::WebSocketConfig::deflate) set,
/// the first of the client's permessage-deflate offers that can be honoured
/// is accepted and answered in `Sec-WebSocket-Extensions`
/// ([`WebSocket::deflate`] tells what was agreed); without one, or if every
/// offer is declined, the connection is uncompressed.
///
/// A bad request is answered with its status (400, 405, 426 with
/// `Sec-WebSocket-Version: 13`, 431) and reported as [`Error::BadRequest`];
/// a refusal as [`Error::Refused`].
pub async fn accept_with<S, F>(mut io: S, config: ServerConfig, decide: F) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request<()>, &ClientOffer) -> Decision,
{
    let read = async {
        read_request(&mut io, config.limits)
            .await
            .map_err(Error::from)
    };
    let (request, rest) =
        match with_timeout(Some(config.handshake_timeout), TimeoutKind::Handshake, read).await?? {
            Ok(parsed) => parsed,
            Err(err) => return Err(refuse(&mut io, err).await),
        };
    let offer = match validate_request(&request) {
        Ok(offer) => offer,
        Err(err) => return Err(refuse(&mut io, err).await),
    };
    match decide(&request, &offer) {
        Decision::Accept { protocol, headers } => {
            let protocol = protocol.filter(|p| offer.protocols.contains(p));
            let mut out = Vec::with_capacity(256);
            let deflate = write_upgrade(
                &offer,
                protocol.as_deref(),
                &config.websocket,
                &headers,
                &mut out,
            );
            io.write_all(&out).await?;
            io.flush().await?;
            let mut ws = WebSocket::from_raw_socket(io, Role::Server, config.websocket, rest)
                .with_subprotocol(protocol);
            if let Some(deflate) = deflate {
                ws = ws.with_deflate(deflate);
            }
            Ok(ws)
        }
        Decision::Reject {
            status,
            headers,
            body,
        } => {
            let mut response = Response::new(());
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            let mut out = Vec::new();
            write_response(&response, &body, &mut out);
            io.write_all(&out).await?;
            let _ = io.shutdown().await;
            Err(Error::Refused(status))
        }
    }
}

/// Reads from `io` until a whole request head has arrived, within
/// `limits`; returns the request and the bytes that came after it (the
/// start of the WebSocket stream). The inner error is the client's bad
/// request, to be answered with its status
/// ([`rejection_response`]);
/// the outer one is the connection's (`UnexpectedEof` when the client left
/// first). What [`accept_with`] and the gateway read a handshake with.
///
/// ```
/// # async fn demo() -> std::io::Result<()> {
/// use frameway::server::read_request;
/// use frameway::wire::handshake::HandshakeLimits;
/// let mut wire: &[u8] = b"GET /chat HTTP/1.1\r\nHost: example.com\r\n\r\nrest";
/// let (request, rest) = read_request(&mut wire, HandshakeLimits::default())
///     .await?
///     .expect("a well-formed head");
/// assert_eq!(request.uri(), "/chat");
/// assert_eq!(&rest[..], b"rest");
/// # Ok(()) }
/// ```
pub async fn read_request<S: AsyncRead + Unpin>(
    io: &mut S,
    limits: HandshakeLimits,
) -> std::io::Result<std::result::Result<(Request<()>, Bytes), RequestError>> {
    // A spare read buffer, held only while bytes of the head are in it: in
    // a reconnect storm thousands of clients are waited for at once. What
    // came after the head is copied out.
    let mut buf = BytesMut::new();
    let read = async {
        loop {
            if read_spare(io, &mut buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            match parse_request(&buf, limits) {
                Ok(Some((request, len))) => {
                    return Ok(Ok((request, Bytes::copy_from_slice(&buf[len..]))))
                }
                Ok(None) => continue,
                Err(err) => return Ok(Err(err)),
            }
        }
    }
    .await;
    spare::give(buf);
    read
}

async fn refuse<S: AsyncWrite + Unpin>(io: &mut S, err: RequestError) -> Error {
    let response = rejection_response(&err);
    let mut out = Vec::new();
    write_response(&response, response.body().as_bytes(), &mut out);
    // The client may be gone; the error to report is the request's.
    let _ = io.write_all(&out).await;
    let _ = io.shutdown().await;
    Error::BadRequest(err)
}

/// Checks a request that an HTTP server (hyper, axum) already parsed and
/// builds the `101` response to send, choosing `protocol` if the client
/// offered it. After sending it, take the upgraded stream and wrap it with
/// [`WebSocket::from_raw_socket`] (`Role::Server`), passing any bytes the
/// HTTP server read past the request. The connection is uncompressed: use
/// [`upgrade_response_with`] to answer a permessage-deflate offer.
///
/// ```
/// let request = http::Request::get("/ws")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .body(())
///     .unwrap();
/// let response = frameway::server::upgrade_response(&request, None).unwrap();
/// assert_eq!(response.status(), 101);
/// assert_eq!(response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn upgrade_response<B>(
    request: &Request<B>,
    protocol: Option<&str>,
) -> std::result::Result<Response<()>, RequestError> {
    upgrade_response_with(request, protocol, &WebSocketConfig::default()).map(|u| u.response)
}

/// [`upgrade_response`] with the connection's settings: with
/// [`WebSocketConfig::deflate`](crate::WebSocketConfig::deflate) set, the
/// first permessage-deflate offer that can be honoured is accepted in the
/// response, and [`Upgrade::deflate`] is the codec to give the upgraded
/// stream with [`WebSocket::with_deflate`].
///
/// ```
/// use frameway::wire::deflate::DeflateConfig;
/// use frameway::WebSocketConfig;
/// let request = http::Request::get("/ws")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("sec-websocket-extensions", "permessage-deflate; client_max_window_bits")
///     .body(())
///     .unwrap();
/// let config = WebSocketConfig::default().deflate(DeflateConfig::default());
/// let upgrade = frameway::server::upgrade_response_with(&request, None, &config).unwrap();
/// assert_eq!(upgrade.response.status(), 101);
/// assert!(upgrade.response.headers()["sec-websocket-extensions"]
///     .to_str()
///     .unwrap()
///     .starts_with("permessage-deflate"));
/// assert!(upgrade.deflate.is_some());
/// ```
pub fn upgrade_response_with<B>(
    request: &Request<B>,
    protocol: Option<&str>,
    config: &WebSocketConfig,
) -> std::result::Result<Upgrade, RequestError> {
    let offer = validate_request(request)?;
    let protocol = protocol.filter(|p| offer.protocols.iter().any(|o| o == p));
    Ok(accept_offer(&offer, protocol, config))
}

/// An accepted opening handshake: the `101` response and the
/// permessage-deflate codec agreed in it, if any.
#[derive(Debug)]
pub struct Upgrade {
    /// The response to send.
    pub response: Response<()>,
    /// The codec for [`WebSocket::with_deflate`], when the response accepted
    /// the client's permessage-deflate offer.
    pub deflate: Option<Deflate>,
}

/// The `101` answer to a valid `offer`, with `protocol` (already checked
/// against the offer) and permessage-deflate if `config` has it and the
/// client offered parameters it can honour. For servers (a proxy) that read
/// and check the request themselves.
///
/// ```
/// use frameway::server::accept_offer;
/// use frameway::wire::deflate::DeflateConfig;
/// use frameway::wire::handshake::validate_request;
/// use frameway::WebSocketConfig;
///
/// let request = http::Request::get("/")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-extensions", "permessage-deflate")
///     .body(())
///     .unwrap();
/// let offer = validate_request(&request).unwrap();
/// let config = WebSocketConfig::default().deflate(DeflateConfig::default());
/// let upgrade = accept_offer(&offer, None, &config);
/// assert_eq!(upgrade.response.status(), 101);
/// assert!(upgrade.deflate.is_some());
/// ```
pub fn accept_offer(
    offer: &ClientOffer,
    protocol: Option<&str>,
    config: &WebSocketConfig,
) -> Upgrade {
    let agreed = agree_deflate(offer, config);
    let extensions = agreed.map(|(params, _)| params.to_string());
    let response = accept_response(offer, protocol, extensions.as_deref())
        .expect("handshake headers are valid");
    Upgrade {
        response,
        deflate: agreed.map(|(params, ours)| Deflate::new(Role::Server, params, &ours)),
    }
}

/// Writes the `101` answer to a valid `offer` onto `out`: [`accept_offer`]'s
/// response with `headers` added (replacing its own of the same names), as
/// bytes, without building the response. Returns the permessage-deflate
/// codec agreed in it, if any.
///
/// ```
/// use frameway::server::write_upgrade;
/// use frameway::wire::deflate::DeflateConfig;
/// use frameway::wire::handshake::validate_request;
/// use frameway::WebSocketConfig;
///
/// let request = http::Request::get("/")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-extensions", "permessage-deflate")
///     .body(())
///     .unwrap();
/// let offer = validate_request(&request).unwrap();
/// let config = WebSocketConfig::default().deflate(DeflateConfig::default());
/// let mut out = Vec::new();
/// let deflate = write_upgrade(&offer, None, &config, &http::HeaderMap::new(), &mut out);
/// assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
/// assert!(deflate.is_some());
/// ```
pub fn write_upgrade(
    offer: &ClientOffer,
    protocol: Option<&str>,
    config: &WebSocketConfig,
    headers: &HeaderMap,
    out: &mut Vec<u8>,
) -> Option<Deflate> {
    let agreed = agree_deflate(offer, config);
    let extensions = agreed.map(|(params, _)| params.to_string());
    write_accept(offer, protocol, extensions.as_deref(), headers, out);
    agreed.map(|(params, ours)| Deflate::new(Role::Server, params, &ours))
}

/// The permessage-deflate parameters agreed with `offer`, and our own
/// settings, when `config` has deflate and the client offered terms it
/// can honour.
fn agree_deflate(
    offer: &ClientOffer,
    config: &WebSocketConfig,
) -> Option<(DeflateParams, DeflateConfig)> {
    config
        .deflate
        .and_then(|ours| Some((ours.accept(&offer.extensions)?, ours)))
}
