//! The server side of the opening handshake.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};

use super::headers::{has_token, is_tchar, parse_extensions, split_tokens, ExtensionOffer};
use super::key::{accept_bytes, accept_key, is_valid_key};
use super::{header_slots, HandshakeLimits, STACK_HEADERS, VERSION};

/// Why a client's opening request was refused, and with which status.
///
/// ```
/// use frameway_wire::handshake::RequestError;
/// use http::StatusCode;
/// assert_eq!(RequestError::UnsupportedVersion(Some("8".into())).status(), StatusCode::UPGRADE_REQUIRED);
/// let response = frameway_wire::handshake::rejection_response(&RequestError::MissingKey);
/// assert_eq!(response.status(), StatusCode::BAD_REQUEST);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not a parseable HTTP/1.x request.
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    /// The request head exceeded the size or header-count limit.
    #[error("request header too large")]
    HeadTooLarge,
    /// Not a GET.
    #[error("method {0} not allowed for a WebSocket upgrade (use GET)")]
    MethodNotAllowed(Method),
    /// Older than HTTP/1.1.
    #[error("HTTP/1.1 or later is required for a WebSocket upgrade")]
    HttpVersion,
    /// No Host header.
    #[error("missing Host header")]
    MissingHost,
    /// No `Upgrade: websocket` or no `Connection: upgrade`: a plain HTTP
    /// request reached a WebSocket endpoint.
    #[error(
        "not a WebSocket upgrade request (Upgrade: websocket and Connection: Upgrade are required)"
    )]
    NotUpgrade,
    /// A `Sec-WebSocket-Version` other than 13 (or none).
    #[error("unsupported WebSocket version {}; this server speaks 13", .0.as_deref().unwrap_or("(none)"))]
    UnsupportedVersion(Option<String>),
    /// No `Sec-WebSocket-Key`.
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// A key that is not base64 of 16 bytes.
    #[error("Sec-WebSocket-Key is not the base64 encoding of 16 bytes")]
    InvalidKey,
    /// An unparseable `Sec-WebSocket-Extensions`.
    #[error("malformed Sec-WebSocket-Extensions header")]
    MalformedExtensions,
    /// A header that may appear once appeared more than once: `Host` (RFC
    /// 9112 §3.2), `Sec-WebSocket-Key` or `Sec-WebSocket-Version` (RFC 6455
    /// §11.3). Two hosts let a proxy in front and this server disagree
    /// about where a request goes.
    #[error("more than one {0} header")]
    DuplicateHeader(HeaderName),
    /// A `Sec-WebSocket-Protocol` element that is not an HTTP token (RFC
    /// 6455 §4.1: subprotocol names are tokens, so `a b` is two mistakes,
    /// not a name).
    #[error("Sec-WebSocket-Protocol {0:?} is not a token")]
    InvalidProtocol(String),
}

impl RequestError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            RequestError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::NotUpgrade | RequestError::UnsupportedVersion(_) => {
                StatusCode::UPGRADE_REQUIRED
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// What a valid opening request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOffer {
    /// The `Sec-WebSocket-Key`.
    pub key: String,
    /// The offered subprotocols, in the client's order of preference.
    pub protocols: Vec<String>,
    /// The offered extensions, in order.
    pub extensions: Vec<ExtensionOffer>,
}

/// Parses a request head from the start of `buf`: `Ok(None)` until the blank
/// line has arrived, then the request and the head's length (bytes after it
/// belong to the WebSocket stream and must be kept).
///
/// ```
/// let raw = b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n\x81";
/// let (req, len) = frameway_wire::handshake::parse_request(raw, Default::default())
///     .unwrap()
///     .unwrap();
/// assert_eq!(req.uri().path(), "/chat");
/// assert_eq!(&raw[len..], b"\x81");
/// ```
pub fn parse_request(
    buf: &[u8],
    limits: HandshakeLimits,
) -> Result<Option<(Request<()>, usize)>, RequestError> {
    let (mut stack, mut heap) = ([httparse::EMPTY_HEADER; STACK_HEADERS], Vec::new());
    let headers = header_slots(&mut stack, &mut heap, limits.max_headers);
    let mut req = httparse::Request::new(headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= limits.max_head_len => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Err(RequestError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_len => {
            return Err(RequestError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(RequestError::Malformed(e.to_string())),
    };
    let malformed = |what: &str| RequestError::Malformed(what.to_owned());
    let head = Bytes::copy_from_slice(&buf[..len]);
    let uri = Uri::from_maybe_shared(shared(buf, &head, req.path.unwrap_or_default().as_bytes()))
        .map_err(|_| malformed("invalid request target"))?;
    let mut builder = Request::builder()
        .method(
            Method::from_bytes(req.method.unwrap_or_default().as_bytes())
                .map_err(|_| malformed("invalid method"))?,
        )
        .uri(uri)
        .version(if req.version == Some(1) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        });
    let map = builder
        .headers_mut()
        .ok_or_else(|| malformed("invalid request target"))?;
    copy_headers(buf, &head, req.headers, map).map_err(|_| malformed("invalid header"))?;
    let request = builder
        .body(())
        .map_err(|e| RequestError::Malformed(e.to_string()))?;
    Ok(Some((request, len)))
}

/// Copies headers parsed from `buf` into a map, their values sharing
/// `head`, the one copy of the head that outlives `buf`, rather than each
/// allocated on its own.
pub(super) fn copy_headers(
    buf: &[u8],
    head: &Bytes,
    from: &[httparse::Header<'_>],
    to: &mut HeaderMap,
) -> Result<(), ()> {
    to.reserve(from.len());
    for h in from {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| ())?;
        let value = HeaderValue::from_maybe_shared(shared(buf, head, h.value)).map_err(|_| ())?;
        to.append(name, value);
    }
    Ok(())
}

/// The bytes of `head` that `part`, a slice of `buf`, was: `head` is a copy
/// of `buf`'s start, so `part` sits at the same offset in it.
pub(super) fn shared(buf: &[u8], head: &Bytes, part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    match head.get(start..start.wrapping_add(part.len())) {
        Some(_) => head.slice(start..start + part.len()),
        // Not a slice of `buf`: httparse's empty default for a missing part.
        None => Bytes::copy_from_slice(part),
    }
}

/// Checks that a request is a valid WebSocket opening handshake (RFC 6455
/// §4.2.1) and returns what it offers. Works on any parsed request, so a
/// request that hyper or axum already parsed can be upgraded.
pub fn validate_request<B>(req: &Request<B>) -> Result<ClientOffer, RequestError> {
    if req.method() != Method::GET {
        return Err(RequestError::MethodNotAllowed(req.method().clone()));
    }
    if req.version() < Version::HTTP_11 {
        return Err(RequestError::HttpVersion);
    }
    let headers = req.headers();
    // A header that may appear once, looked up once for its value and
    // whether another follows.
    let once = |name: header::HeaderName| {
        let mut values = headers.get_all(&name).into_iter();
        let first = values.next();
        match values.next() {
            Some(_) => Err(RequestError::DuplicateHeader(name)),
            None => Ok(first),
        }
    };
    let host = once(header::HOST)?;
    let key = once(header::SEC_WEBSOCKET_KEY)?;
    let version = once(header::SEC_WEBSOCKET_VERSION)?;
    if host.is_none() && req.uri().authority().is_none() {
        return Err(RequestError::MissingHost);
    }
    if !has_token(headers.get_all(header::UPGRADE), "websocket")
        || !has_token(headers.get_all(header::CONNECTION), "upgrade")
    {
        return Err(RequestError::NotUpgrade);
    }
    if version.map(HeaderValue::as_bytes) != Some(VERSION.as_bytes()) {
        return Err(RequestError::UnsupportedVersion(
            version.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        ));
    }
    let key = key.ok_or(RequestError::MissingKey)?;
    if !is_valid_key(key.as_bytes()) {
        return Err(RequestError::InvalidKey);
    }
    let protocols = split_tokens(headers.get_all(header::SEC_WEBSOCKET_PROTOCOL))
        .map(|p| match p.chars().all(is_tchar) {
            true => Ok(p.to_owned()),
            false => Err(RequestError::InvalidProtocol(p.to_owned())),
        })
        .collect::<Result<_, _>>()?;
    let extensions = parse_extensions(headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS))
        .map_err(|_| RequestError::MalformedExtensions)?;
    Ok(ClientOffer {
        // Checked above: 24 base64 characters.
        key: String::from_utf8_lossy(key.as_bytes()).into_owned(),
        protocols,
        extensions,
    })
}

/// The `101 Switching Protocols` answer to `offer`, with the chosen
/// subprotocol and the accepted extensions, if any.
pub fn accept_response(
    offer: &ClientOffer,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> Result<Response<()>, http::Error> {
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        // Static values and the key's own `String`: no copies.
        .header(header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(header::CONNECTION, HeaderValue::from_static("Upgrade"))
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            accept_key(offer.key.as_bytes()),
        );
    if let Some(protocol) = protocol {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    if let Some(extensions) = extensions {
        response = response.header(header::SEC_WEBSOCKET_EXTENSIONS, extensions);
    }
    response.body(())
}

/// Writes the `101 Switching Protocols` answer to `offer` onto `out`: what
/// [`write_response`] writes for [`accept_response`]'s answer with
/// `headers` added (a header there replaces the answer's own of that name),
/// without building a `Response`. A server or proxy answering thousands of
/// handshakes a second saves the map's allocations.
///
/// ```
/// use frameway_wire::handshake::{parse_request, validate_request, write_accept};
/// let raw = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// let (request, _) = parse_request(raw, Default::default()).unwrap().unwrap();
/// let offer = validate_request(&request).unwrap();
/// let mut out = Vec::new();
/// write_accept(&offer, None, None, &http::HeaderMap::new(), &mut out);
/// assert_eq!(
///     out,
///     b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
///       sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
/// );
/// ```
pub fn write_accept(
    offer: &ClientOffer,
    protocol: Option<&str>,
    extensions: Option<&str>,
    headers: &HeaderMap,
    out: &mut Vec<u8>,
) {
    let accept = accept_bytes(offer.key.as_bytes());
    let own: [(HeaderName, Option<&[u8]>); 5] = [
        (header::UPGRADE, Some(b"websocket")),
        (header::CONNECTION, Some(b"Upgrade")),
        (header::SEC_WEBSOCKET_ACCEPT, Some(&accept)),
        (header::SEC_WEBSOCKET_PROTOCOL, protocol.map(str::as_bytes)),
        (
            header::SEC_WEBSOCKET_EXTENSIONS,
            extensions.map(str::as_bytes),
        ),
    ];
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in own {
        if let Some(value) = value.filter(|_| !headers.contains_key(&name)) {
            write_header(out, name.as_str().as_bytes(), value);
        }
    }
    for (name, value) in headers {
        write_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The error response for a refused request: its status, a one-line body a
/// person can act on, and `Sec-WebSocket-Version: 13` where RFC 6455 §4.4
/// asks for it.
pub fn rejection_response(err: &RequestError) -> Response<String> {
    let mut response = Response::builder()
        .status(err.status())
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONNECTION, "close");
    match err {
        RequestError::UnsupportedVersion(_) | RequestError::NotUpgrade => {
            response = response
                .header(header::UPGRADE, "websocket")
                .header(header::SEC_WEBSOCKET_VERSION, VERSION);
        }
        RequestError::MethodNotAllowed(_) => response = response.header(header::ALLOW, "GET"),
        _ => {}
    }
    response
        .body(format!("{err}\n"))
        .expect("static header names and values are valid")
}

/// Serialises a response head (and `body`, with its Content-Length unless
/// the status is 101) onto `out`.
pub fn write_response<B>(response: &Response<B>, body: &[u8], out: &mut Vec<u8>) {
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        write_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if status != StatusCode::SWITCHING_PROTOCOLS
        && !response.headers().contains_key(header::CONTENT_LENGTH)
    {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn check(raw: &str) -> Result<ClientOffer, RequestError> {
        let (req, _) =
            parse_request(raw.as_bytes(), HandshakeLimits::default())?.expect("complete");
        validate_request(&req)
    }

    #[test]
    fn headers_and_target_keep_their_bytes_whatever_the_buffer_held_after_the_head() {
        let raw = "GET /a/b?c=d HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Bytes: café\r\n\r\nFRAMES";
        let (req, len) = parse_request(raw.as_bytes(), HandshakeLimits::default())
            .unwrap()
            .expect("complete");
        assert_eq!(&raw[len..], "FRAMES");
        assert_eq!(req.uri(), "/a/b?c=d");
        assert_eq!(req.headers()["host"], "h");
        assert_eq!(req.headers()["x-empty"], "");
        assert_eq!(req.headers()["x-bytes"].as_bytes(), "café".as_bytes());
    }

    #[test]
    fn rfc_example_is_accepted() {
        let offer = check(GOOD).unwrap();
        assert_eq!(offer.protocols, ["chat", "superchat"]);
        let response = accept_response(&offer, Some("chat"), None).unwrap();
        let mut out = Vec::new();
        write_response(&response, b"", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("sec-websocket-protocol: chat\r\n"));
    }

    /// The answer as `write_response` writes `accept_response`'s, with
    /// `headers` added as a caller of `accept_response` adds them.
    fn answer_through_a_response(
        offer: &ClientOffer,
        protocol: Option<&str>,
        extensions: Option<&str>,
        headers: &HeaderMap,
    ) -> Vec<u8> {
        let mut response = accept_response(offer, protocol, extensions).unwrap();
        response.headers_mut().extend(headers.clone());
        let mut out = Vec::new();
        write_response(&response, b"", &mut out);
        out
    }

    #[test]
    fn the_written_answer_is_the_one_a_response_would_give() {
        let offer = check(GOOD).unwrap();
        let none = HeaderMap::new();
        let mut out = Vec::new();
        write_accept(
            &offer,
            Some("chat"),
            Some("permessage-deflate"),
            &none,
            &mut out,
        );
        let same =
            answer_through_a_response(&offer, Some("chat"), Some("permessage-deflate"), &none);
        assert_eq!(out, same);

        // Headers added replace the answer's own of the same name, and may
        // come in another order: the heads parse to the same response.
        let mut added = HeaderMap::new();
        added.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("superchat"),
        );
        added.append("x-trace", HeaderValue::from_static("a"));
        added.append("x-trace", HeaderValue::from_static("b"));
        let mut out = Vec::new();
        write_accept(&offer, Some("chat"), None, &added, &mut out);
        let same = answer_through_a_response(&offer, Some("chat"), None, &added);
        let parse = |head: &[u8]| {
            let limits = HandshakeLimits::default();
            let (response, _) = crate::handshake::parse_response(head, limits)
                .unwrap()
                .unwrap();
            response
        };
        let (written, through) = (parse(&out), parse(&same));
        assert_eq!(written.headers(), through.headers());
        assert_eq!(written.headers()["sec-websocket-protocol"], "superchat");
        assert_eq!(written.headers().get_all("x-trace").iter().count(), 2);
    }

    #[test]
    fn upgrade_tokens_are_case_insensitive() {
        let raw = GOOD
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("keep-alive, Upgrade", "UPGRADE");
        assert!(check(&raw).is_ok());
    }

    #[test]
    fn each_violation_gets_its_status() {
        let cases: [(String, StatusCode); 8] = [
            (GOOD.replace("GET", "POST"), StatusCode::METHOD_NOT_ALLOWED),
            (
                GOOD.replace("HTTP/1.1", "HTTP/1.0"),
                StatusCode::BAD_REQUEST,
            ),
            (
                GOOD.replace("Host: server.example.com\r\n", ""),
                StatusCode::BAD_REQUEST,
            ),
            (
                GOOD.replace("Upgrade: websocket\r\n", ""),
                StatusCode::UPGRADE_REQUIRED,
            ),
            (
                GOOD.replace("Version: 13", "Version: 8"),
                StatusCode::UPGRADE_REQUIRED,
            ),
            (
                GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                StatusCode::BAD_REQUEST,
            ),
            (
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
                StatusCode::BAD_REQUEST,
            ),
            (
                "GET / HTTP/1.1\r\nHost x\r\n\r\n".to_owned(),
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (raw, status) in cases {
            assert_eq!(check(&raw).unwrap_err().status(), status, "{raw}");
        }
    }

    #[test]
    fn headers_that_may_appear_once_are_refused_twice() {
        let twice = |header: &str| GOOD.replace("\r\n\r\n", &format!("\r\n{header}\r\n\r\n"));
        for (extra, name) in [
            ("Host: evil.example.com", header::HOST),
            (
                "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==",
                header::SEC_WEBSOCKET_KEY,
            ),
            ("Sec-WebSocket-Version: 13", header::SEC_WEBSOCKET_VERSION),
        ] {
            let err = check(&twice(extra)).unwrap_err();
            assert_eq!(err, RequestError::DuplicateHeader(name), "{extra}");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn subprotocols_must_be_tokens() {
        let err = check(&GOOD.replace("chat, superchat", "a b")).unwrap_err();
        assert_eq!(err, RequestError::InvalidProtocol("a b".into()));
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let offer = check(&GOOD.replace("chat, superchat", "v1.chat+json, x_y")).unwrap();
        assert_eq!(offer.protocols, ["v1.chat+json", "x_y"]);
    }

    #[test]
    fn wrong_version_answer_names_version_13() {
        let err = check(&GOOD.replace("Version: 13", "Version: 8")).unwrap_err();
        let response = rejection_response(&err);
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        assert!(response.body().contains("13"));
    }

    #[test]
    fn head_size_is_limited() {
        let limits = HandshakeLimits {
            max_head_len: 64,
            max_headers: 4,
        };
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(100));
        assert_eq!(
            parse_request(big.as_bytes(), limits).unwrap_err(),
            RequestError::HeadTooLarge
        );
        assert_eq!(
            parse_request(GOOD.as_bytes(), limits).unwrap_err(),
            RequestError::HeadTooLarge
        );
        assert!(parse_request(b"GET / HTTP/1.1\r\n", limits)
            .unwrap()
            .is_none());
    }
}
