//! Upstream services: where a route's connections go, and opening them
//! (over a balanced upstream's targets, with retries, when the service's
//! host names one).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use frameway::client::{client_handshake, connect_with, ConnectOptions, ConnectResponse, WsUrl};
use frameway::WebSocket;
use http::header::{self, HeaderName};
use http::HeaderMap;

use crate::balancer::{Lease, Pool, Target};
use crate::handshake::Legs;
use crate::plugin::Reroute;

/// Request headers the upstream handshake writes itself: never copied from
/// the client or a plugin.
static HANDSHAKE_HEADERS: [HeaderName; 6] = [
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::SEC_WEBSOCKET_PROTOCOL,
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
#[derive(Debug, Clone)]
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
    /// Extra CA certificates to trust, PEM (Kong's `ca_certificates`).
    pub ca_certificates: Vec<Vec<u8>>,
    /// The certificate presented to an upstream that asks for one.
    pub client_certificate: Option<ClientCertificate>,
    /// The gateway's keep-alive pings to the upstream (`None`: none).
    pub heartbeat: Option<frameway::wire::Heartbeat>,
    /// The balanced upstream the URL's host names, if it names one.
    pub pool: Option<Arc<Pool>>,
    /// Targets tried after the first fails (balanced upstreams only).
    pub retries: u32,
    /// permessage-deflate offered to the upstream (`None`: never).
    pub deflate: Option<DeflateOffer>,
    /// The rustls configuration of a `wss` upstream, built on the first
    /// connect from the settings above and shared by every connection after
    /// it (and by the copies a handshake plugin reroutes): per connection,
    /// the CA file would be read again each time and no TLS session would
    /// be resumed.
    pub(crate) tls: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
    /// The settings of both legs of this service's connections, built on
    /// the first handshake and shared by every connection after it: per
    /// connection, two copies were a tenth of an idle pair's memory.
    pub(crate) legs: Arc<OnceLock<Legs>>,
}

/// A certificate chain and private key a service presents to its upstream
/// (mutual TLS), PEM, checked when the configuration loads.
#[derive(Clone)]
pub struct ClientCertificate {
    /// The chain, leaf first.
    pub chain: Vec<u8>,
    /// The private key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for ClientCertificate {
    // A private key has no place in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("chain", &String::from_utf8_lossy(&self.chain))
            .finish_non_exhaustive()
    }
}

/// When a service offers permessage-deflate to its upstream, and with what
/// parameters.
///
/// By default only when the client's leg compresses: a gateway that
/// compressed toward the upstream for a client that does not would spend
/// more CPU on zlib than on relaying (3.2x per 16 KiB JSON round trip,
/// BENCHMARKS.md's `deflate/` tables) for bandwidth on a link that is
/// usually local.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeflateOffer {
    /// Offered when the client's leg agreed to permessage-deflate.
    WhenClientCompresses(frameway::DeflateConfig),
    /// Offered whatever the client's leg agreed (`always = true`).
    Always(frameway::DeflateConfig),
}

impl DeflateOffer {
    /// The parameters offered.
    pub fn config(&self) -> &frameway::DeflateConfig {
        match self {
            DeflateOffer::WhenClientCompresses(config) | DeflateOffer::Always(config) => config,
        }
    }

    /// What to offer the upstream, given whether the client's leg compresses.
    pub fn offer(&self, client_compresses: bool) -> Option<frameway::DeflateConfig> {
        match self {
            DeflateOffer::WhenClientCompresses(_) if !client_compresses => None,
            _ => Some(*self.config()),
        }
    }
}

/// What the gateway asks of the upstream.
#[derive(Clone)]
pub(crate) struct UpstreamRequest {
    /// Path and query.
    pub target: String,
    /// Headers to forward (hop-by-hop ones already removed).
    pub headers: HeaderMap,
    /// The client's subprotocol offer.
    pub protocols: Vec<String>,
    /// Settings for the upstream leg.
    pub websocket: Arc<frameway::WebSocketConfig>,
}

/// An open upstream connection, over the network or in memory.
pub(crate) enum UpstreamConn {
    Net(WebSocket<frameway::client::ClientStream>, ConnectResponse),
    Memory(WebSocket<tokio::io::DuplexStream>, ConnectResponse),
}

/// An open upstream connection, and the target's session it holds.
pub(crate) struct Opened {
    pub(crate) conn: UpstreamConn,
    /// Counts the session on its target until the connection ends.
    pub(crate) lease: Option<Lease>,
}

/// Why no upstream connection could be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The one upstream, or a target that answered for the backend (a 4xx
    /// to the upgrade), refused: answered as it says.
    #[error("{0}")]
    Upstream(frameway::Error),
    /// Every try failed (`tried`: each target and why, in order).
    #[error("every target tried failed: {}", tries(tried))]
    Exhausted {
        tried: Vec<(SocketAddr, frameway::Error)>,
    },
    /// The upstream has no healthy target to try.
    #[error("no healthy target")]
    NoTarget,
}

fn tries(tried: &[(SocketAddr, frameway::Error)]) -> String {
    let tries: Vec<String> = tried
        .iter()
        .map(|(addr, e)| format!("{addr} ({e})"))
        .collect();
    tries.join(", ")
}

impl Service {
    /// The rustls configuration for this service's `wss` upstream: see
    /// [`Service::tls`]. A failed build (an unreadable CA file) is not kept,
    /// and the next connect tries again.
    fn tls_config(&self) -> frameway::Result<Arc<rustls::ClientConfig>> {
        if let Some(config) = self.tls.get() {
            return Ok(config.clone());
        }
        let mut options = ConnectOptions::default().ssl_verify(self.tls_verify);
        if let Some(ca) = &self.ca_file {
            options = options.ca_file(ca);
        }
        for ca in &self.ca_certificates {
            options = options.ca_pem(ca.clone());
        }
        if let Some(cert) = &self.client_certificate {
            options = options.client_cert(cert.chain.clone(), cert.key.clone());
        }
        let config = options.build_tls_config()?;
        Ok(self.tls.get_or_init(|| config).clone())
    }

    /// This service sent elsewhere by a handshake plugin: to one target,
    /// with the service's scheme and path, or over an upstream's targets.
    pub(crate) fn rerouted(&self, reroute: &Reroute, pools: &[Arc<Pool>]) -> Service {
        let mut service = self.clone();
        let (scheme, path) = match &self.upstream {
            Upstream::Url { url, path } => (url.scheme(), path.as_str()),
            Upstream::Echo => ("ws", ""),
        };
        let authority = match reroute {
            Reroute::Target { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Reroute::Target { host, port } => format!("{host}:{port}"),
            Reroute::Upstream(name) => name.clone(),
        };
        // `set_target` and `set_upstream` checked what they were given,
        // and the scheme and path come from a URL that parsed.
        if let Ok(upstream) = Upstream::parse(&format!("{scheme}://{authority}{path}")) {
            service.upstream = upstream;
        }
        service.pool = match reroute {
            Reroute::Target { .. } => None,
            Reroute::Upstream(name) => pools.iter().find(|p| &p.name == name).cloned(),
        };
        service
    }

    /// Opens the upstream connection for one client: to the service's URL,
    /// or to a target of its upstream picked for `key`, trying up to
    /// `retries` more targets when one fails (refused, timed out, TLS, 5xx
    /// to the upgrade), all within the connect timeout.
    ///
    /// Every handshake in flight carries this future, so it is kept small:
    /// each connect's options are built before its future (see
    /// [`Service::connect`]), and the request is held once, not once per
    /// `async fn` it passes through.
    // As an `async fn` (clippy's suggestion) the future is 320 bytes
    // larger: rustc keeps the request's argument slot beside its local.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn open(
        &self,
        req: UpstreamRequest,
        key: Option<u64>,
    ) -> impl Future<Output = Result<Opened, OpenError>> + Send + '_ {
        async move {
            let Some(pool) = &self.pool else {
                return match self.connect(req, None, self.connect_timeout).await {
                    Ok(conn) => Ok(Opened { conn, lease: None }),
                    Err(err) => Err(OpenError::Upstream(err)),
                };
            };
            let deadline = Instant::now() + self.connect_timeout;
            let mut tried: Vec<(SocketAddr, frameway::Error)> = Vec::new();
            loop {
                let addrs: Vec<SocketAddr> = tried.iter().map(|(addr, _)| *addr).collect();
                let Some(lease) = pool.pick(key, &addrs) else {
                    return Err(if tried.is_empty() {
                        OpenError::NoTarget
                    } else {
                        OpenError::Exhausted { tried }
                    });
                };
                let target = lease.target().clone();
                let left = deadline.saturating_duration_since(Instant::now());
                let result = if left.is_zero() {
                    Err(frameway::Error::Timeout(
                        frameway::TimeoutKind::Connect,
                        self.connect_timeout,
                    ))
                } else {
                    self.connect(req.clone(), Some(&target), left).await
                };
                match result {
                    Ok(conn) => {
                        pool.succeeded(&target);
                        return Ok(Opened {
                            conn,
                            lease: Some(lease),
                        });
                    }
                    Err(err) if is_target_failure(&err) => {
                        pool.failed(&target);
                        tried.push((target.addr, err));
                        if tried.len() > self.retries as usize || Instant::now() >= deadline {
                            return Err(OpenError::Exhausted { tried });
                        }
                    }
                    Err(err) => return Err(OpenError::Upstream(err)),
                }
            }
        }
    }

    /// Opens the upstream connection to `target`, or to the URL's host. The
    /// options are built here, before the future, so that it holds neither
    /// the request nor the headers they were built from.
    fn connect(
        &self,
        req: UpstreamRequest,
        target: Option<&Target>,
        connect_timeout: Duration,
    ) -> impl Future<Output = frameway::Result<UpstreamConn>> + Send + 'static {
        let prepared = self.connect_options(req, target, connect_timeout);
        let in_memory = self.upstream == Upstream::Echo;
        async move {
            let (url, options) = prepared?;
            if in_memory {
                let (near, far) = tokio::io::duplex(64 * 1024);
                tokio::spawn(crate::echo::serve_echo(far));
                let (ws, response) = client_handshake(near, url, options).await?;
                return Ok(UpstreamConn::Memory(ws, response));
            }
            let (ws, response) = connect_with(url, options).await?;
            Ok(UpstreamConn::Net(ws, response))
        }
    }

    /// Where [`Service::connect`] connects (for the in-process echo, a URL
    /// that names only the target) and with which options.
    fn connect_options(
        &self,
        req: UpstreamRequest,
        target: Option<&Target>,
        connect_timeout: Duration,
    ) -> frameway::Result<(WsUrl, ConnectOptions)> {
        let mut headers = req.headers;
        // Only a plugin puts these here: a scan of the few headers, not a
        // lookup of each name, in the common case that none did.
        if headers.keys().any(|name| HANDSHAKE_HEADERS.contains(name)) {
            for name in &HANDSHAKE_HEADERS {
                headers.remove(name);
            }
        }
        // The client library has its own options for these two, and refuses
        // them as plain headers.
        let origin = headers.remove(header::ORIGIN);
        let host = headers.remove(header::HOST);
        let mut options = ConnectOptions::default()
            .protocols(req.protocols)
            .connect_timeout(connect_timeout)
            .handshake_timeout(self.read_timeout)
            .websocket(req.websocket)
            .headers(headers);
        if let Some(origin) = origin.as_ref().and_then(|v| v.to_str().ok()) {
            options = options.origin(origin);
        }
        if let Some(host) = host.as_ref().and_then(|v| v.to_str().ok()) {
            options = options.host(host);
        }
        let Upstream::Url { url, .. } = &self.upstream else {
            let url = WsUrl::parse("ws://internal/")?.with_target(req.target)?;
            return Ok((url, options));
        };
        if url.is_tls() {
            options = options.tls_config(self.tls_config()?);
        }
        let url = match target {
            Some(target) => {
                if host.is_none() {
                    options = options.host(&target.spec.name);
                }
                url.clone().with_addr(target.addr)
            }
            None => url.clone(),
        };
        Ok((url.with_target(req.target)?, options))
    }
}

/// Whether `err` is the target's failure (so another target is tried and
/// the passive health check counts it), rather than the backend's answer.
fn is_target_failure(err: &frameway::Error) -> bool {
    use frameway::Error;
    match err {
        Error::UpgradeRefused(refused) => refused.status.is_server_error(),
        Error::Io(_) | Error::Timeout(..) | Error::Tls(_) | Error::BadResponse(_) => true,
        Error::AbnormalClose | Error::Closed => true,
        _ => false,
    }
}

impl UpstreamConn {
    /// See [`WebSocket::pass_compressed`].
    pub(crate) fn pass_compressed(&mut self, received: bool, sent: bool) {
        match self {
            UpstreamConn::Net(ws, _) => ws.pass_compressed(received, sent),
            UpstreamConn::Memory(ws, _) => ws.pass_compressed(received, sent),
        }
    }

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
