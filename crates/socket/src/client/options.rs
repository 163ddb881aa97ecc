//! [`ConnectOptions`]: everything `connect_with` can be told, named after
//! lua-resty-websocket's `connect` options.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use frameway_wire::handshake::{is_valid_key, HandshakeLimits};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::WebSocketConfig;
use crate::error::{Error, Result};

/// The pool size used when only a `backlog` is given (ngx_lua's
/// `lua_socket_pool_size` default).
pub(crate) const DEFAULT_POOL_SIZE: usize = 30;

/// Which certificate authorities to trust for `wss://` servers.
///
/// ```
/// use frameway::client::{ConnectOptions, Roots};
/// let options = ConnectOptions::default().roots(Roots::System);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Roots {
    /// Mozilla's root program, compiled in (the `webpki-roots` crate).
    #[default]
    WebPki,
    /// The operating system's trust store, loaded once per process.
    System,
    /// None: trust only the CAs given with [`ConnectOptions::ca_file`] or
    /// [`ConnectOptions::ca_pem`] (a private PKI).
    Empty,
}

/// PEM data, in memory or in a file that is read when connecting.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Pem {
    File(PathBuf),
    Data(Vec<u8>),
}

impl Pem {
    pub(crate) fn load(&self) -> Result<Vec<u8>> {
        match self {
            Pem::Data(data) => Ok(data.clone()),
            Pem::File(path) => std::fs::read(path)
                .map_err(|e| Error::TlsConfig(format!("cannot read {}: {e}", path.display()))),
        }
    }
}

impl fmt::Debug for Pem {
    // Never print the bytes: they may be a private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(path) => write!(f, "File({})", path.display()),
            Pem::Data(data) => write!(f, "Data({} bytes)", data.len()),
        }
    }
}

/// A client certificate chain and its private key, for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientCert {
    pub(crate) chain: Pem,
    pub(crate) key: Pem,
}

/// How to connect: subprotocols, headers, TLS, proxy, timeouts, pooling, and
/// the connection's own [`WebSocketConfig`].
///
/// Values that cannot be sent (a header with a line break, a malformed
/// `Sec-WebSocket-Key`, …) are reported by `connect_with` as an
/// [`Error::InvalidOption`], before
/// anything goes on the network.
///
/// ```
/// use std::time::Duration;
/// use frameway::client::ConnectOptions;
/// use frameway::WebSocketConfig;
///
/// let options = ConnectOptions::default()
///     .protocol("chat.v2")
///     .origin("https://example.com")
///     .header("authorization", "Bearer 3f9a")
///     .connect_timeout(Duration::from_secs(3))
///     .websocket(WebSocketConfig::default().ping_interval(Duration::from_secs(20)))
///     .pool_size(8);
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub(crate) protocols: Vec<String>,
    pub(crate) origin: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) host: Option<String>,
    pub(crate) server_name: Option<String>,
    pub(crate) ssl_verify: bool,
    pub(crate) roots: Roots,
    pub(crate) extra_ca: Vec<Pem>,
    pub(crate) client_cert: Option<ClientCert>,
    pub(crate) tls_config: Option<Arc<rustls::ClientConfig>>,
    pub(crate) key: Option<String>,
    pub(crate) proxy: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) limits: HandshakeLimits,
    pub(crate) websocket: Arc<WebSocketConfig>,
    pub(crate) pool: Option<String>,
    pub(crate) pool_size: Option<usize>,
    pub(crate) backlog: Option<usize>,
    /// The first unusable value given, reported when connecting (the
    /// builder stays infallible, as `http::request::Builder` does).
    invalid: Option<String>,
}

/// The default settings, one `Arc` for every [`ConnectOptions::default`]
/// (built per connect, it would allocate a copy each time).
fn default_websocket() -> Arc<WebSocketConfig> {
    static DEFAULT: std::sync::OnceLock<Arc<WebSocketConfig>> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(Default::default).clone()
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            protocols: Vec::new(),
            origin: None,
            headers: HeaderMap::new(),
            host: None,
            server_name: None,
            ssl_verify: true,
            roots: Roots::default(),
            extra_ca: Vec::new(),
            client_cert: None,
            tls_config: None,
            key: None,
            proxy: None,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            limits: HandshakeLimits::default(),
            websocket: default_websocket(),
            pool: None,
            pool_size: None,
            backlog: None,
            invalid: None,
        }
    }
}

/// Headers that the handshake itself writes or checks; setting them with
/// [`ConnectOptions::header`] would send them twice or break validation.
const RESERVED: &[(&str, &str)] = &[
    ("host", "use ConnectOptions::host"),
    ("origin", "use ConnectOptions::origin"),
    ("sec-websocket-protocol", "use ConnectOptions::protocols"),
    ("sec-websocket-key", "use ConnectOptions::key"),
    ("upgrade", "the handshake sets it"),
    ("connection", "the handshake sets it"),
    ("sec-websocket-version", "the handshake sets it"),
    (
        "sec-websocket-extensions",
        "use WebSocketConfig::deflate for permessage-deflate",
    ),
];

/// RFC 9110 `token`: what a subprotocol name must be (RFC 6455 §4.1).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl ConnectOptions {
    fn invalid(&mut self, problem: String) {
        self.invalid.get_or_insert(problem);
    }

    /// Whether `value` can be sent as a header value; if not, the problem
    /// is kept to be reported.
    fn header_value(&mut self, what: &str, value: &str) -> bool {
        // The octets `http::HeaderValue` accepts, checked without copying.
        let valid = value
            .bytes()
            .all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t');
        if !valid {
            self.invalid(format!("{what} {value:?} is not a valid header value"));
        }
        valid
    }

    /// The problem with a value given, if any.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.invalid {
            Some(problem) => Err(invalid_input(problem.clone())),
            None => Ok(()),
        }
    }

    /// Offers these subprotocols (`Sec-WebSocket-Protocol`), in order of
    /// preference, replacing any offered before.
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols.clear();
        for protocol in protocols {
            self = self.protocol(protocol);
        }
        self
    }

    /// Offers one more subprotocol.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        let protocol = protocol.into();
        if !is_token(&protocol) {
            self.invalid(format!("subprotocol {protocol:?} is not an HTTP token"));
        }
        self.protocols.push(protocol);
        self
    }

    /// Sends an `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        let origin = origin.into();
        self.header_value("origin", &origin);
        self.origin = Some(origin);
        self
    }

    /// Adds a request header; call again for more (a name may repeat).
    /// The handshake's own headers (`Host`, `Origin`, `Upgrade`,
    /// `Sec-WebSocket-*`, …) are refused: they have their own options.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        let Ok(parsed) = HeaderName::from_bytes(name.as_bytes()) else {
            self.invalid(format!("{name:?} is not a valid header name"));
            return self;
        };
        if !self.header_value(&name, &value) {
            return self;
        }
        // From the `String` itself: its buffer becomes the value's.
        match HeaderValue::try_from(value) {
            Ok(value) => self.headers(HeaderMap::from_iter([(parsed, value)])),
            Err(_) => self,
        }
    }

    /// Adds these request headers, as [`header`](ConnectOptions::header)
    /// would one by one, without parsing them again: for a caller that
    /// already holds them as a map (a proxy forwarding its client's
    /// headers, say).
    ///
    /// ```
    /// use frameway::client::ConnectOptions;
    /// use http::{HeaderMap, HeaderValue};
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-request-id", HeaderValue::from_static("7f3a"));
    /// let options = ConnectOptions::default().headers(headers);
    /// # let _ = options;
    /// ```
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        for name in headers.keys() {
            if let Some((_, hint)) = RESERVED.iter().find(|(n, _)| *n == name.as_str()) {
                self.invalid(format!(
                    "header {name:?} cannot be set as a plain header: {hint}"
                ));
            }
        }
        if self.headers.is_empty() {
            self.headers = headers;
        } else {
            // `extend` would replace a name already set; a header option
            // adds, as `header` does.
            let mut name = None;
            for (next, value) in headers {
                name = next.or(name);
                if let Some(name) = &name {
                    self.headers.append(name.clone(), value);
                }
            }
        }
        self
    }

    /// Overrides the `Host` header (by default the URL's host, with its
    /// port unless it is the default one). Unless [`server_name`] is set,
    /// TLS also sends this host (without a port) as the SNI, as
    /// lua-resty-websocket does.
    ///
    /// [`server_name`]: ConnectOptions::server_name
    pub fn host(mut self, host: impl Into<String>) -> Self {
        let host = host.into();
        self.header_value("host", &host);
        self.host = Some(host);
        self
    }

    /// The name to send as TLS SNI and to verify the certificate against
    /// (a DNS name or an IP address). Default: the `host` option, else the
    /// URL's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Whether to verify the server's certificate (default `true`).
    ///
    /// **`false` accepts any certificate from anyone**: the connection is
    /// encrypted but not authenticated, so anyone on the path can read and
    /// change it. Use it only for tests and diagnostics.
    pub fn ssl_verify(mut self, verify: bool) -> Self {
        self.ssl_verify = verify;
        self
    }

    /// Which CAs to trust (default [`Roots::WebPki`]).
    pub fn roots(mut self, roots: Roots) -> Self {
        self.roots = roots;
        self
    }

    /// Also trusts the CA certificates in this PEM file (read when
    /// connecting).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.extra_ca.push(Pem::File(path.into()));
        self
    }

    /// Also trusts the CA certificates in this PEM data.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_ca.push(Pem::Data(pem.into()));
        self
    }

    /// Presents this client certificate chain (PEM, leaf first) with its
    /// private key (PEM: PKCS#8, PKCS#1 or SEC1) when the server asks for
    /// one (mutual TLS).
    pub fn client_cert(
        mut self,
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_cert = Some(ClientCert {
            chain: Pem::Data(cert_chain_pem.into()),
            key: Pem::Data(key_pem.into()),
        });
        self
    }

    /// Like [`client_cert`](ConnectOptions::client_cert), from PEM files
    /// read when connecting.
    pub fn client_cert_files(
        mut self,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Self {
        self.client_cert = Some(ClientCert {
            chain: Pem::File(cert_path.into()),
            key: Pem::File(key_path.into()),
        });
        self
    }

    /// Uses this rustls configuration as is, instead of building one from
    /// `ssl_verify`, `roots`, `ca_*` and `client_cert` for every connection.
    /// Sharing one `Arc` across connects also shares its TLS session cache,
    /// so reconnections can resume sessions. Its ALPN list should be empty
    /// or `http/1.1`.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// Builds the rustls configuration these options describe (`ssl_verify`,
    /// `roots`, `ca_*`, `client_cert`; or the one given to
    /// [`tls_config`](ConnectOptions::tls_config)), reading their files now:
    /// what a caller that connects many times builds once and hands back
    /// with `tls_config`, so that its connections resume TLS sessions and
    /// no file is read per connect.
    ///
    /// ```
    /// use frameway::client::ConnectOptions;
    /// let options = ConnectOptions::default().ssl_verify(false);
    /// let config = options.build_tls_config()?;
    /// let shared = options.tls_config(config);
    /// # let _ = shared;
    /// # Ok::<(), frameway::Error>(())
    /// ```
    pub fn build_tls_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        super::tls::client_config(self)
    }

    /// Sends this `Sec-WebSocket-Key` instead of a random one. It must be
    /// the base64 encoding of 16 bytes. Only for tests: RFC 6455 asks for a
    /// fresh random key per connection.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        if !is_valid_key(key.as_bytes()) {
            self.invalid(format!(
                "Sec-WebSocket-Key {key:?} is not the base64 encoding of 16 bytes"
            ));
        }
        self.key = Some(key);
        self
    }

    /// Connects through an HTTP proxy with `CONNECT`: `http://host:port`
    /// (or `host:port`), with `http://user:password@host:port` for Basic
    /// authentication. An invalid proxy URL is reported as
    /// [`Error::InvalidUrl`] when connecting.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Limit on resolving, connecting and the proxy's `CONNECT`, and on
    /// waiting in a pool's backlog (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Limit on the TLS and HTTP handshakes (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Limits on the size of the server's response head.
    pub fn handshake_limits(mut self, limits: HandshakeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The connection's settings: message limits, read and write timeouts,
    /// keep-alive pings. An `Arc` is shared with the connection as it is:
    /// a program opening many connections with the same settings holds
    /// them once, not once per connection.
    pub fn websocket(mut self, config: impl Into<Arc<WebSocketConfig>>) -> Self {
        self.websocket = config.into();
        self
    }

    /// Names the connection pool, overriding the default name (see
    /// [`set_keepalive`](crate::WebSocket::set_keepalive)).
    pub fn pool(mut self, name: impl Into<String>) -> Self {
        self.pool = Some(name.into());
        self
    }

    /// Creates the pool, if it does not exist yet, keeping at most `size`
    /// idle connections; with a [`backlog`](ConnectOptions::backlog), also
    /// the most connections open at once. A pool's settings are fixed when
    /// it is created.
    pub fn pool_size(mut self, size: usize) -> Self {
        if size == 0 {
            self.invalid("pool_size must be at least 1".into());
        }
        self.pool_size = Some(size);
        self
    }

    /// Limits the pool's open connections to its size, and lets at most
    /// `backlog` more connects wait (in order, up to the connect timeout)
    /// for one to close or return to the pool; beyond that, connects fail
    /// with [`Error::PoolBacklogFull`]. Without `pool_size`, the pool size
    /// is 30.
    pub fn backlog(mut self, backlog: usize) -> Self {
        self.backlog = Some(backlog);
        self
    }

    /// The size and backlog to create the pool with, if asked to.
    pub(crate) fn pool_settings(&self) -> Option<(usize, Option<usize>)> {
        match (self.pool_size, self.backlog) {
            (None, None) => None,
            (size, backlog) => Some((size.unwrap_or(DEFAULT_POOL_SIZE), backlog)),
        }
    }
}

/// An error for a value the caller gave that cannot be used.
pub(crate) fn invalid_input(problem: impl Into<String>) -> Error {
    Error::InvalidOption(problem.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(options: ConnectOptions) -> String {
        match options.check() {
            Err(Error::InvalidOption(problem)) => problem,
            other => panic!("expected InvalidOption, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = ConnectOptions::default();
        assert!(o.ssl_verify);
        assert_eq!(o.roots, Roots::WebPki);
        assert_eq!(o.connect_timeout, Duration::from_secs(10));
        assert_eq!(o.handshake_timeout, Duration::from_secs(10));
        assert_eq!(o.pool_settings(), None);
        assert!(o.check().is_ok());
    }

    #[test]
    fn pool_settings_follow_lua_resty() {
        assert_eq!(
            ConnectOptions::default().pool_size(4).pool_settings(),
            Some((4, None))
        );
        assert_eq!(
            ConnectOptions::default().backlog(2).pool_settings(),
            Some((30, Some(2)))
        );
        assert!(problem(ConnectOptions::default().pool_size(0)).contains("pool_size"));
    }

    #[test]
    fn unsendable_values_are_reported() {
        assert!(problem(ConnectOptions::default().key("short")).contains("16 bytes"));
        assert!(
            problem(ConnectOptions::default().header("x-a", "b\r\nx-evil: 1"))
                .contains("header value")
        );
        assert!(problem(ConnectOptions::default().header("bad name", "v")).contains("header name"));
        assert!(
            problem(ConnectOptions::default().header("Sec-WebSocket-Key", "v")).contains("key")
        );
        assert!(problem(ConnectOptions::default().protocol("a, b")).contains("token"));
        // The first problem is the one reported.
        let o = ConnectOptions::default().protocol("").origin("\n");
        assert!(problem(o).contains("subprotocol"));
        let ok = ConnectOptions::default()
            .key("dGhlIHNhbXBsZSBub25jZQ==")
            .protocols(["chat", "superchat"])
            .header("X-Trace", "1");
        assert!(ok.check().is_ok());
        assert_eq!(ok.protocols, ["chat", "superchat"]);
    }

    #[test]
    fn a_header_map_adds_to_the_headers_set_before_and_is_held_to_the_same_rules() {
        let mut map = HeaderMap::new();
        map.append("x-a", HeaderValue::from_static("2"));
        map.append("x-a", HeaderValue::from_static("3"));
        map.append("x-b", HeaderValue::from_static("4"));
        let o = ConnectOptions::default().header("X-A", "1").headers(map);
        assert!(o.check().is_ok());
        let a: Vec<_> = o.headers.get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2", "3"]);
        assert_eq!(o.headers["x-b"], "4");

        let mut reserved = HeaderMap::new();
        reserved.insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
        let o = ConnectOptions::default().headers(reserved);
        assert!(problem(o).contains("ConnectOptions::protocols"));
    }

    #[test]
    fn debug_hides_key_material() {
        let o = ConnectOptions::default().client_cert("CERT", "-----BEGIN PRIVATE KEY----- secret");
        let shown = format!("{o:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
