//! Upstream services: where a route's connections go, and opening them.

use std::path::PathBuf;
use std::time::Duration;

use frameway::client::{client_handshake, connect_with, ConnectOptions, ConnectResponse, WsUrl};
use frameway::WebSocket;
use http::HeaderMap;

/// Request headers the upstream handshake writes itself: never copied from
/// the client or a plugin.
const HANDSHAKE_HEADERS: [&str; 6] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
];

/// Where a service lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// A `ws://` or `wss://` server.
    Url {
        /// The service URL as given, parsed.
        url: WsUrl,
        /// The base path requests are joined to (may be empty).
        path: String,
    },
    /// The in-process echo server (`internal://echo`).
    Echo,
}

/// Why a service's `url` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceUrlError {
    /// Not a WebSocket URL, or not one the client can connect to.
    #[error("{0}")]
    Invalid(&'static str),
    /// A scheme other than `ws`, `wss` or `internal`.
    #[error("the scheme must be ws://, wss:// or internal://echo")]
    Scheme,
    /// The request's own query is what goes upstream.
    #[error("a service URL cannot have a query")]
    Query,
}

impl Upstream {
    /// Parses a service URL: a `ws://`/`wss://` URL as [`WsUrl`] accepts it
    /// (without a query), or `internal://echo`.
    pub fn parse(url: &str) -> Result<Upstream, ServiceUrlError> {
        if url == "internal://echo" {
            return Ok(Upstream::Echo);
        }
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        if !scheme.is_some_and(|s| s.eq_ignore_ascii_case("ws") || s.eq_ignore_ascii_case("wss")) {
            return Err(ServiceUrlError::Scheme);
        }
        let url = WsUrl::parse(url).map_err(|e| match e {
            frameway::Error::InvalidUrl { reason, .. } => ServiceUrlError::Invalid(reason),
            _ => ServiceUrlError::Invalid("not a valid URL"),
        })?;
        if url.target().contains('?') {
            return Err(ServiceUrlError::Query);
        }
        // One trailing slash is kept (the upstream may tell `/a/` from
        // `/a`); a bare `/` is no base path at all.
        let trimmed = url.target().trim_end_matches('/');
        let path = if url.target().ends_with('/') && !trimmed.is_empty() {
            format!("{trimmed}/")
        } else {
            trimmed.to_owned()
        };
        Ok(Upstream::Url { url, path })
    }

    /// The base path requests are joined to.
    pub fn path(&self) -> &str {
        match self {
            Upstream::Url { path, .. } => path,
            Upstream::Echo => "",
        }
    }
}

/// A `[[services]]` entry, checked.
#[derive(Debug)]
pub struct Service {
    /// The service's name.
    pub name: String,
    /// Where it lives.
    pub upstream: Upstream,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's handshake answer.
    pub read_timeout: Duration,
    /// Write timeout.
    pub write_timeout: Duration,
    /// Verify the upstream's certificate.
    pub tls_verify: bool,
    /// Extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// The gateway's keep-alive pings to the upstream (`None`: none).
    pub heartbeat: Option<frameway::wire::Heartbeat>,
}

/// What the gateway asks of the upstream.
pub(crate) struct UpstreamRequest {
    /// Path and query.
    pub target: String,
    /// Headers to forward (hop-by-hop ones already removed).
    pub headers: HeaderMap,
    /// The client's subprotocol offer.
    pub protocols: Vec<String>,
    /// Settings for the upstream leg.
    pub websocket: frameway::WebSocketConfig,
}

/// An open upstream connection, over the network or in memory.
pub(crate) enum UpstreamConn {
    Net(WebSocket<frameway::client::ClientStream>, ConnectResponse),
    Memory(WebSocket<tokio::io::DuplexStream>, ConnectResponse),
}

impl Service {
    /// Opens the upstream connection for one client.
    pub(crate) async fn connect(&self, req: UpstreamRequest) -> frameway::Result<UpstreamConn> {
        let mut options = ConnectOptions::default()
            .protocols(req.protocols)
            .connect_timeout(self.connect_timeout)
            .handshake_timeout(self.read_timeout)
            .ssl_verify(self.tls_verify)
            .websocket(req.websocket);
        for (name, value) in &req.headers {
            let Ok(value) = value.to_str() else { continue };
            options = match name.as_str() {
                // The client library has its own options for these two, and
                // refuses them as plain headers.
                "origin" => options.origin(value),
                "host" => options.host(value),
                // Negotiated per leg by the handshake itself.
                n if HANDSHAKE_HEADERS.contains(&n) => continue,
                _ => options.header(name.as_str(), value),
            };
        }
        if let Some(ca) = &self.ca_file {
            options = options.ca_file(ca);
        }
        match &self.upstream {
            Upstream::Url { url, .. } => {
                let url = format!("{}://{}{}", url.scheme(), url.authority(), req.target);
                let (ws, response) = connect_with(&url, options).await?;
                Ok(UpstreamConn::Net(ws, response))
            }
            Upstream::Echo => {
                let (near, far) = tokio::io::duplex(64 * 1024);
                tokio::spawn(crate::echo::serve_echo(far));
                let url = format!("ws://internal{}", req.target);
                let (ws, response) = client_handshake(near, &url, options).await?;
                Ok(UpstreamConn::Memory(ws, response))
            }
        }
    }
}

impl UpstreamConn {
    pub(crate) fn response(&self) -> &ConnectResponse {
        match self {
            UpstreamConn::Net(_, r) | UpstreamConn::Memory(_, r) => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls() {
        let Ok(Upstream::Url { url, path }) = Upstream::parse("ws://127.0.0.1:9000/socket") else {
            panic!("a ws:// URL is an upstream");
        };
        assert_eq!(url.authority(), "127.0.0.1:9000");
        assert_eq!(path, "/socket");
        assert_eq!(Upstream::parse("wss://h/").unwrap().path(), "");
        assert_eq!(Upstream::parse("wss://h/a/").unwrap().path(), "/a/");
        assert_eq!(Upstream::parse("internal://echo"), Ok(Upstream::Echo));
        assert_eq!(Upstream::parse("http://h"), Err(ServiceUrlError::Scheme));
        assert_eq!(Upstream::parse("ws://h/x?y=1"), Err(ServiceUrlError::Query));
        assert_eq!(
            Upstream::parse("ws://h:0/"),
            Err(ServiceUrlError::Invalid(
                "port 0 is not a valid destination"
            ))
        );
    }
}
