//! The client side of the opening handshake.

use std::sync::LazyLock;

use bytes::Bytes;
use http::header;
use http::{HeaderMap, Response, StatusCode, Version};

use super::headers::{has_token, parse_extensions, split_tokens, ExtensionOffer};
use super::key::accept_bytes;
use super::server::copy_headers;
use super::{header_slots, HandshakeLimits, STACK_HEADERS, VERSION};

/// What goes into a client's opening request.
#[derive(Debug, Clone)]
pub struct ClientRequest<'a> {
    /// The `Host` header value (`host` or `host:port`).
    pub host: &'a str,
    /// The request target: path and query.
    pub path: &'a str,
    /// The `Sec-WebSocket-Key`.
    pub key: &'a str,
    /// Subprotocols to offer, in order of preference.
    pub protocols: &'a [String],
    /// The `Origin` header, if any.
    pub origin: Option<&'a str>,
    /// The `Sec-WebSocket-Extensions` offer, if any.
    pub extensions: Option<&'a str>,
    /// More headers, sent as given (names as the map keeps them: lower
    /// case, which HTTP/1.1 treats as the same names).
    pub headers: &'a HeaderMap,
}

impl Default for ClientRequest<'_> {
    fn default() -> Self {
        static NO_HEADERS: LazyLock<HeaderMap> = LazyLock::new(HeaderMap::new);
        ClientRequest {
            host: "",
            path: "",
            key: "",
            protocols: &[],
            origin: None,
            extensions: None,
            headers: &NO_HEADERS,
        }
    }
}

/// Serialises the opening request onto `out`.
///
/// ```
/// use frameway_wire::handshake::{write_request, ClientRequest};
/// let mut out = Vec::new();
/// write_request(
///     &ClientRequest { host: "example.com", path: "/chat", key: "dGhlIHNhbXBsZSBub25jZQ==", ..Default::default() },
///     &mut out,
/// );
/// assert!(out.starts_with(b"GET /chat HTTP/1.1\r\nHost: example.com\r\n"));
/// ```
pub fn write_request(req: &ClientRequest<'_>, out: &mut Vec<u8>) {
    let path = if req.path.is_empty() { "/" } else { req.path };
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |name: &str, value: &[u8]| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    line("Host", req.host.as_bytes());
    line("Upgrade", b"websocket");
    line("Connection", b"Upgrade");
    line("Sec-WebSocket-Key", req.key.as_bytes());
    line("Sec-WebSocket-Version", VERSION.as_bytes());
    if !req.protocols.is_empty() {
        line(
            "Sec-WebSocket-Protocol",
            req.protocols.join(", ").as_bytes(),
        );
    }
    if let Some(origin) = req.origin {
        line("Origin", origin.as_bytes());
    }
    if let Some(extensions) = req.extensions {
        line("Sec-WebSocket-Extensions", extensions.as_bytes());
    }
    for (name, value) in req.headers {
        line(name.as_str(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Why a server's answer to the opening request is not a valid upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// Not a parseable HTTP/1.x response.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The response head exceeded the size or header-count limit.
    #[error("response header too large")]
    HeadTooLarge,
    /// The server answered with a status other than 101: it refused.
    #[error("server refused the upgrade with status {0}")]
    NotSwitching(StatusCode),
    /// No `Upgrade: websocket` or `Connection: upgrade` in a 101.
    #[error("101 response without Upgrade: websocket and Connection: Upgrade")]
    NotUpgrade,
    /// `Sec-WebSocket-Accept` missing or not matching our key.
    #[error("Sec-WebSocket-Accept does not match the key sent")]
    BadAccept,
    /// The server chose a subprotocol we did not offer.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    UnofferedProtocol(String),
    /// The server accepted an extension we did not offer.
    #[error("server accepted extension {0:?}, which was not offered")]
    UnofferedExtension(String),
    /// The server's permessage-deflate answer breaks RFC 7692 §7.1.
    #[error("invalid permessage-deflate answer: {0}")]
    Deflate(#[from] crate::deflate::NegotiationError),
}

/// Parses a response head from the start of `buf`: `Ok(None)` until the
/// blank line has arrived, then the response and the head's length.
pub fn parse_response(
    buf: &[u8],
    limits: HandshakeLimits,
) -> Result<Option<(Response<()>, usize)>, ResponseError> {
    let (mut stack, mut heap) = ([httparse::EMPTY_HEADER; STACK_HEADERS], Vec::new());
    let headers = header_slots(&mut stack, &mut heap, limits.max_headers);
    let mut res = httparse::Response::new(headers);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= limits.max_head_len => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Err(ResponseError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_len => {
            return Err(ResponseError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::Malformed(e.to_string())),
    };
    let status = StatusCode::from_u16(res.code.unwrap_or_default())
        .map_err(|_| ResponseError::Malformed("invalid status code".into()))?;
    let mut builder = Response::builder()
        .status(status)
        .version(if res.version == Some(1) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        });
    if let Some(map) = builder.headers_mut() {
        let head = Bytes::copy_from_slice(&buf[..len]);
        copy_headers(buf, &head, res.headers, map)
            .map_err(|_| ResponseError::Malformed("invalid header".into()))?;
    }
    let response = builder
        .body(())
        .map_err(|e| ResponseError::Malformed(e.to_string()))?;
    Ok(Some((response, len)))
}

/// What the server accepted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// The chosen subprotocol, if any.
    pub protocol: Option<String>,
    /// The accepted extensions, with the server's parameters.
    pub extensions: Vec<ExtensionOffer>,
}

/// Checks a server's response against the request we sent (RFC 6455 §4.1):
/// status 101, the upgrade headers, the accept key, and a subprotocol and
/// extensions from among those offered.
pub fn validate_response<B>(
    res: &Response<B>,
    key: &str,
    offered_protocols: &[String],
    offered_extensions: &[&str],
) -> Result<Accepted, ResponseError> {
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(ResponseError::NotSwitching(res.status()));
    }
    let headers = res.headers();
    if !has_token(headers.get_all(header::UPGRADE), "websocket")
        || !has_token(headers.get_all(header::CONNECTION), "upgrade")
    {
        return Err(ResponseError::NotUpgrade);
    }
    let expected = accept_bytes(key.as_bytes());
    if headers
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .map(|v| v.as_bytes())
        != Some(&expected[..])
    {
        return Err(ResponseError::BadAccept);
    }
    let mut chosen = split_tokens(headers.get_all(header::SEC_WEBSOCKET_PROTOCOL));
    let protocol = match (chosen.next(), chosen.next()) {
        (None, _) => None,
        (Some(p), None) if offered_protocols.iter().any(|o| o == p) => Some(p.to_owned()),
        (Some(p), _) => return Err(ResponseError::UnofferedProtocol(p.to_owned())),
    };
    let extensions = parse_extensions(headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS))
        .map_err(|_| ResponseError::Malformed("malformed Sec-WebSocket-Extensions".into()))?;
    if let Some(ext) = extensions.iter().find(|e| {
        !offered_extensions
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&e.name))
    }) {
        return Err(ResponseError::UnofferedExtension(ext.name.clone()));
    }
    Ok(Accepted {
        protocol,
        extensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{accept_response, parse_request, validate_request, write_response};

    fn round(protocol_answer: Option<&str>, offered: &[String]) -> Result<Accepted, ResponseError> {
        let key = crate::handshake::generate_key([3; 16]);
        let mut out = Vec::new();
        write_request(
            &ClientRequest {
                host: "h:1",
                path: "/p?q=1",
                key: &key,
                protocols: offered,
                ..Default::default()
            },
            &mut out,
        );
        let (req, _) = parse_request(&out, HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(req.uri(), "/p?q=1");
        let offer = validate_request(&req).unwrap();
        let res = accept_response(&offer, protocol_answer, None).unwrap();
        let mut raw = Vec::new();
        write_response(&res, b"", &mut raw);
        let (res, len) = parse_response(&raw, HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(len, raw.len());
        validate_response(&res, &key, offered, &[])
    }

    #[test]
    fn our_request_passes_our_server_validation() {
        let offered = vec!["chat".to_owned()];
        assert_eq!(
            round(Some("chat"), &offered).unwrap().protocol.as_deref(),
            Some("chat")
        );
        assert_eq!(round(None, &offered).unwrap().protocol, None);
        assert_eq!(
            round(Some("other"), &offered),
            Err(ResponseError::UnofferedProtocol("other".into()))
        );
    }

    #[test]
    fn wrong_accept_and_refusals_are_reported() {
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        let (res, _) = parse_response(raw, HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            validate_response(&res, "k", &[], &[]),
            Err(ResponseError::BadAccept)
        );
        let raw = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        let (res, _) = parse_response(raw, HandshakeLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            validate_response(&res, "k", &[], &[]),
            Err(ResponseError::NotSwitching(StatusCode::FORBIDDEN))
        );
    }
}
