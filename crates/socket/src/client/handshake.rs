//! The client's side of the opening handshake over an established stream:
//! send the upgrade request, read and check the answer, and read the body
//! of a refusal so the caller can see why.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use frameway_wire::deflate::{DeflateParams, PERMESSAGE_DEFLATE};
use frameway_wire::handshake::{
    generate_key, has_token, parse_response, validate_response, write_request, ClientRequest,
    HandshakeLimits, ResponseError,
};
use frameway_wire::spare;
use http::{header, HeaderMap, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::options::ConnectOptions;
use super::tls::tls_io_error;
use super::url::WsUrl;
use crate::error::{Error, RefusedUpgrade, Result};
use crate::read::read_spare;

/// The most body kept from a refused upgrade.
const MAX_BODY: usize = 64 * 1024;
/// How long a refusal's body may take to arrive. The refusal is the answer;
/// a slow or endless body must not hold it back.
const BODY_TIMEOUT: Duration = Duration::from_secs(1);

/// The server's answer to the opening handshake.
///
/// For a connection taken from a pool ([`reused`](Self::reused) is true),
/// no handshake took place: status, headers and subprotocol are those of the
/// handshake that first opened the connection.
///
/// ```no_run
/// # async fn demo() -> frameway::Result<()> {
/// use frameway::client::ConnectOptions;
/// let options = ConnectOptions::default().protocols(["chat.v2", "chat.v1"]);
/// let (_ws, response) = frameway::client::connect_with("ws://127.0.0.1:9001/", options).await?;
/// assert_eq!(response.status(), 101);
/// println!("speaking {:?}, server {:?}", response.protocol(), response.headers().get("server"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ConnectResponse {
    head: Arc<Head>,
    reused: bool,
}

#[derive(Debug)]
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    protocol: Option<String>,
    deflate: Option<DeflateParams>,
}

impl ConnectResponse {
    fn new(
        response: Response<()>,
        protocol: Option<String>,
        deflate: Option<DeflateParams>,
    ) -> Self {
        let (parts, ()) = response.into_parts();
        ConnectResponse {
            head: Arc::new(Head {
                status: parts.status,
                headers: parts.headers,
                protocol,
                deflate,
            }),
            reused: false,
        }
    }

    /// The same answer, for a connection handed out again by a pool.
    pub(crate) fn reused_copy(&self) -> Self {
        ConnectResponse {
            head: self.head.clone(),
            reused: true,
        }
    }

    /// The status: `101 Switching Protocols`.
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.head.protocol.as_deref()
    }

    /// The permessage-deflate parameters the server accepted, if it did.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.head.deflate.as_ref()
    }

    /// Whether the connection came from a pool instead of a new handshake
    /// (lua-resty-websocket's `"connection reused"`).
    pub fn reused(&self) -> bool {
        self.reused
    }
}

/// Runs the HTTP upgrade on `io`; returns the answer and the bytes that
/// arrived after it (the first WebSocket frames).
pub(crate) async fn upgrade<S>(
    io: &mut S,
    url: &WsUrl,
    options: &ConnectOptions,
) -> Result<(ConnectResponse, Bytes)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = match &options.key {
        Some(key) => key.clone(),
        None => random_key()?,
    };
    let host = match &options.host {
        Some(host) => Cow::Borrowed(host.as_str()),
        None => Cow::Owned(url.host_header()),
    };
    let deflate = options.websocket.deflate;
    let offer = deflate.map(|ours| ours.offer().to_string());
    let mut request = Vec::with_capacity(256);
    write_request(
        &ClientRequest {
            host: &host,
            path: url.target(),
            key: &key,
            protocols: &options.protocols,
            origin: options.origin.as_deref(),
            extensions: offer.as_deref(),
            headers: &options.headers,
        },
        &mut request,
    );
    io.write_all(&request).await.map_err(tls_io_error)?;
    io.flush().await.map_err(tls_io_error)?;

    let (response, mut rest) = read_head(io, options.limits).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, ()) = response.into_parts();
        let body = read_body(io, parts.status, &parts.headers, rest).await;
        return Err(Error::UpgradeRefused(Box::new(RefusedUpgrade {
            status: parts.status,
            headers: parts.headers,
            body,
        })));
    }
    let offered: &[&str] = match deflate {
        Some(_) => &[PERMESSAGE_DEFLATE],
        None => &[],
    };
    let accepted = validate_response(&response, &key, &options.protocols, offered)?;
    let params = match deflate {
        Some(ours) => ours
            .confirm(&accepted.extensions)
            .map_err(ResponseError::from)?,
        None => None,
    };
    // An empty buffer that still owns capacity would be carried into the
    // connection; an idle connection should hold nothing.
    let rest = if rest.is_empty() {
        Bytes::new()
    } else {
        rest.split().freeze()
    };
    Ok((
        ConnectResponse::new(response, accepted.protocol, params),
        rest,
    ))
}

fn random_key() -> Result<String> {
    let mut random = [0u8; 16];
    crate::random::fill(&mut random).map_err(|e| {
        Error::Io(std::io::Error::other(format!(
            "the OS random generator failed: {e}"
        )))
    })?;
    Ok(generate_key(random))
}

/// Reads until the response head is complete (bounded by `limits`).
async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    limits: HandshakeLimits,
) -> Result<(Response<()>, BytesMut)> {
    // A spare read buffer, held only while bytes of the head are in it, as
    // the server side reads its request head.
    let mut buf = BytesMut::new();
    let read = async {
        loop {
            if read_spare(io, &mut buf).await.map_err(tls_io_error)? == 0 {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before answering the upgrade",
                )));
            }
            if let Some((response, len)) = parse_response(&buf, limits)? {
                return Ok((response, BytesMut::from(&buf[len..])));
            }
        }
    }
    .await;
    spare::give(buf);
    read
}

/// How a response body ends (RFC 9112 §6.3).
enum Framing {
    Chunked,
    Length(usize),
    Eof,
}

/// Reads the body of a refusal, best effort: at most [`MAX_BODY`] bytes and
/// [`BODY_TIMEOUT`]; what arrived by then is what is returned.
async fn read_body<S: AsyncRead + Unpin>(
    io: &mut S,
    status: StatusCode,
    headers: &HeaderMap,
    mut buf: BytesMut,
) -> Bytes {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Bytes::new();
    }
    let framing = if has_token(headers.get_all(header::TRANSFER_ENCODING), "chunked") {
        Framing::Chunked
    } else if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Framing::Length(usize::try_from(len).unwrap_or(usize::MAX))
    } else {
        Framing::Eof
    };
    // Room for chunk framing on top of the body itself.
    let raw_cap = match framing {
        Framing::Chunked => MAX_BODY + MAX_BODY / 4,
        Framing::Length(len) => len.min(MAX_BODY),
        Framing::Eof => MAX_BODY,
    };
    let complete = |buf: &BytesMut| match framing {
        Framing::Chunked => dechunk(buf).1,
        Framing::Length(_) | Framing::Eof => buf.len() >= raw_cap,
    };
    let read = async {
        while !complete(&buf) && buf.len() < raw_cap {
            buf.reserve(8 * 1024);
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(BODY_TIMEOUT, read).await;
    match framing {
        Framing::Chunked => dechunk(&buf).0.into(),
        Framing::Length(_) | Framing::Eof => {
            buf.truncate(raw_cap);
            buf.freeze()
        }
    }
}

/// Decodes as much of a chunked body as `raw` holds, up to [`MAX_BODY`]
/// bytes; also says whether the last chunk was seen.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Ok(httparse::Status::Complete((used, size))) = httparse::parse_chunk_size(raw) else {
            return (body, false);
        };
        if size == 0 {
            return (body, true);
        }
        raw = &raw[used..];
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let room = MAX_BODY - body.len();
        body.extend_from_slice(&raw[..size.min(raw.len()).min(room)]);
        if body.len() == MAX_BODY {
            return (body, true);
        }
        // The chunk's data and its CRLF must both be there to go on.
        match raw.get(size..size.saturating_add(2)) {
            Some(b"\r\n") => raw = &raw[size + 2..],
            _ => return (body, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(dechunk(b"4\r\nnope\r\n0\r\n\r\n"), (b"nope".to_vec(), true));
        assert_eq!(
            dechunk(b"2;ext=1\r\nno\r\n2\r\npe\r\n0\r\n\r\n"),
            (b"nope".to_vec(), true)
        );
        // Incomplete: what is there so far.
        assert_eq!(dechunk(b"4\r\nno"), (b"no".to_vec(), false));
        assert_eq!(dechunk(b"4\r\nnope\r\n"), (b"nope".to_vec(), false));
        assert_eq!(dechunk(b"zz\r\n"), (Vec::new(), false));
    }

    #[tokio::test]
    async fn refusal_bodies_follow_their_framing() {
        let headers = |name, value| {
            let mut map = HeaderMap::new();
            map.insert(name, http::HeaderValue::from_static(value));
            map
        };
        let body = |raw: &'static [u8], already: &'static [u8], h: HeaderMap| async move {
            let mut io = raw;
            read_body(&mut io, StatusCode::FORBIDDEN, &h, BytesMut::from(already)).await
        };
        let length = headers(header::CONTENT_LENGTH, "4");
        assert_eq!(body(b"pe and more", b"no", length).await, "nope");
        let chunked = headers(header::TRANSFER_ENCODING, "chunked");
        assert_eq!(body(b"e\r\n0\r\n\r\n", b"4\r\nnop", chunked).await, "nope");
        assert_eq!(body(b"until eof", b"", HeaderMap::new()).await, "until eof");
        let mut io: &[u8] = b"ignored";
        let none = read_body(
            &mut io,
            StatusCode::NO_CONTENT,
            &HeaderMap::new(),
            BytesMut::new(),
        )
        .await;
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn bodies_are_capped() {
        let big = vec![b'x'; MAX_BODY * 2];
        let mut io = &big[..];
        let body = read_body(
            &mut io,
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            BytesMut::new(),
        )
        .await;
        assert_eq!(body.len(), MAX_BODY);
    }
}
