//! Parsing `ws://` and `wss://` URLs (RFC 6455 §3) into what the client
//! needs: where to connect, whether to speak TLS, and what to ask for.

use std::fmt;
use std::net::SocketAddr;

use http::Uri;

use crate::error::{Error, Result};

/// A parsed `ws://` or `wss://` URL: where to connect, whether to speak TLS,
/// and what to ask for. Every crate that takes a WebSocket URL from a user
/// parses it here, so they all accept and refuse the same URLs.
///
/// ```
/// use frameway::client::WsUrl;
///
/// let url = WsUrl::parse("wss://Example.com/chat?room=1")?;
/// assert!(url.is_tls());
/// assert_eq!(url.host(), "example.com");
/// assert_eq!(url.port(), 443);
/// assert_eq!(url.target(), "/chat?room=1");
/// assert_eq!(url.host_header(), "example.com");
/// assert_eq!(url.to_string(), "wss://example.com:443/chat?room=1");
///
/// let err = WsUrl::parse("http://example.com/").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid URL \"http://example.com/\": the scheme must be ws:// or wss://"
/// );
/// # Ok::<(), frameway::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`.
    tls: bool,
    /// The host, lowercased, without the brackets of an IPv6 literal.
    host: String,
    /// The port, or the scheme's default (80, 443).
    port: u16,
    /// The request target: path and query, `/` when the URL has none.
    path: String,
}

impl WsUrl {
    /// Parses `url`, reporting what is wrong with it as [`Error::InvalidUrl`].
    pub fn parse(url: &str) -> Result<WsUrl> {
        let invalid = |reason| Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        // RFC 6455 §3: fragments are meaningless in WebSocket URIs and MUST
        // NOT be used; refusing them beats silently dropping part of a URL.
        if url.contains('#') {
            return Err(invalid("a WebSocket URL must not have a fragment"));
        }
        let uri: Uri = url.parse().map_err(|_| invalid("not a valid URL"))?;
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("ws") => false,
            Some(s) if s.eq_ignore_ascii_case("wss") => true,
            Some(_) => return Err(invalid("the scheme must be ws:// or wss://")),
            None => return Err(invalid("missing scheme (ws:// or wss://)")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("missing host"))?;
        if authority.as_str().contains('@') {
            // There is no standard way to send them in a WebSocket
            // handshake; use `ConnectOptions::header("authorization", ..)`.
            return Err(invalid("credentials in the URL are not supported"));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(invalid("missing host"));
        }
        // `Authority::port` is `None` for a port that is not a u16; look at
        // the text so that `:99999` is an error rather than port 80.
        let port = match authority.as_str()[authority.host().len()..].strip_prefix(':') {
            None | Some("") if tls => 443,
            None | Some("") => 80,
            Some(port) => match port.parse::<u16>() {
                Ok(0) => return Err(invalid("port 0 is not a valid destination")),
                Ok(port) => port,
                Err(_) => return Err(invalid("the port must be a number from 1 to 65535")),
            },
        };
        let path = match uri.path_and_query().map(|pq| pq.as_str()) {
            None | Some("") => "/".to_owned(),
            Some(query) if query.starts_with('?') => format!("/{query}"),
            Some(path) => path.to_owned(),
        };
        Ok(WsUrl {
            tls,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// `wss://`: the connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host, lowercased, without the brackets of an IPv6 literal.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, or the scheme's default (80, 443).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The request target: path and query, `/` when the URL has none.
    pub fn target(&self) -> &str {
        &self.path
    }

    /// This URL asking for another request target (path and query): the
    /// one a proxy forwards, say, without parsing and formatting a whole URL
    /// for each connection. The target is checked as the request line needs
    /// it: starting with `/`, with no spaces, control characters or
    /// fragment.
    ///
    /// ```
    /// use frameway::client::WsUrl;
    /// let url = WsUrl::parse("ws://example.com/base")?.with_target("/base/chat?room=1")?;
    /// assert_eq!(url.target(), "/base/chat?room=1");
    /// assert!(WsUrl::parse("ws://example.com/")?.with_target("/a b").is_err());
    /// # Ok::<(), frameway::Error>(())
    /// ```
    pub fn with_target(mut self, target: impl Into<String>) -> Result<WsUrl> {
        let target = target.into();
        // What a request line can carry: no space or control character
        // (either would end or break the line), no `#` (RFC 6455 §3 forbids
        // fragments); bytes above ASCII pass, as `Uri` lets UTF-8 through.
        let sendable =
            target.starts_with('/') && target.bytes().all(|b| b > b' ' && b != 0x7f && b != b'#');
        if !sendable {
            return Err(Error::InvalidUrl {
                url: format!("{}://{}{target}", self.scheme(), self.authority()),
                reason: "the request target must be a path, without spaces or a fragment",
            });
        }
        self.path = target;
        Ok(self)
    }

    /// This URL at the address `addr` instead of its host and port: one
    /// target of a balanced service, say.
    ///
    /// ```
    /// use frameway::client::WsUrl;
    /// let url = WsUrl::parse("wss://backend/chat")?.with_addr("[::1]:8443".parse().unwrap());
    /// assert_eq!(url.to_string(), "wss://[::1]:8443/chat");
    /// # Ok::<(), frameway::Error>(())
    /// ```
    pub fn with_addr(mut self, addr: SocketAddr) -> WsUrl {
        self.host = addr.ip().to_string();
        self.port = addr.port();
        self
    }

    fn default_port(&self) -> u16 {
        if self.tls {
            443
        } else {
            80
        }
    }

    /// `host:port`, as a CONNECT request and pool names want it.
    pub fn authority(&self) -> String {
        let mut authority = String::with_capacity(self.host.len() + 8);
        self.push_authority(&mut authority);
        authority
    }

    /// The `Host` header: the port is left out when it is the scheme's
    /// default, as browsers do.
    pub fn host_header(&self) -> String {
        let mut host = String::with_capacity(self.host.len() + 8);
        if self.port == self.default_port() {
            self.push_host(&mut host);
        } else {
            self.push_authority(&mut host);
        }
        host
    }

    /// Appends `host:port` to `out`. Pushed piece by piece rather than
    /// formatted: a proxy names a pool and a Host header with it on every
    /// connect.
    pub(crate) fn push_authority(&self, out: &mut String) {
        self.push_host(out);
        out.push(':');
        out.push_str(itoa::Buffer::new().format(self.port));
    }

    /// Appends the host as it appears in a URL: IPv6 literals in brackets.
    fn push_host(&self, out: &mut String) {
        if self.host.contains(':') {
            out.push('[');
            out.push_str(&self.host);
            out.push(']');
        } else {
            out.push_str(&self.host);
        }
    }

    /// `ws` or `wss`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "wss"
        } else {
            "ws"
        }
    }
}

impl std::str::FromStr for WsUrl {
    type Err = Error;

    fn from_str(url: &str) -> Result<WsUrl> {
        WsUrl::parse(url)
    }
}

/// The URL with every part written out: `scheme://host:port/target`.
impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.authority(), self.path)
    }
}

/// What [`connect_with`](super::connect_with) and
/// [`client_handshake`](super::client_handshake) take as the URL: text,
/// parsed there, or a [`WsUrl`] already parsed (a proxy building one per
/// connection with [`WsUrl::with_target`] needs no text in between).
///
/// ```
/// # async fn demo() -> frameway::Result<()> {
/// use frameway::client::{connect_with, ConnectOptions, WsUrl};
/// let base = WsUrl::parse("ws://127.0.0.1:9001/")?;
/// let url = base.clone().with_target("/rooms/7")?;
/// let (_ws, _response) = connect_with(url, ConnectOptions::default()).await?;
/// # Ok(()) }
/// ```
pub trait IntoWsUrl: sealed::Sealed {
    /// The parsed URL, or why the text is not one.
    fn into_ws_url(self) -> Result<WsUrl>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for &str {}
    impl Sealed for &String {}
    impl Sealed for String {}
    impl Sealed for super::WsUrl {}
}

impl IntoWsUrl for &str {
    fn into_ws_url(self) -> Result<WsUrl> {
        WsUrl::parse(self)
    }
}

impl IntoWsUrl for &String {
    fn into_ws_url(self) -> Result<WsUrl> {
        WsUrl::parse(self)
    }
}

impl IntoWsUrl for String {
    fn into_ws_url(self) -> Result<WsUrl> {
        WsUrl::parse(&self)
    }
}

impl IntoWsUrl for WsUrl {
    fn into_ws_url(self) -> Result<WsUrl> {
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> &'static str {
        match WsUrl::parse(url) {
            Err(Error::InvalidUrl { reason, .. }) => reason,
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }

    #[test]
    fn plain_and_tls_with_default_ports() {
        let url = WsUrl::parse("ws://Example.com/chat?room=1").unwrap();
        assert_eq!(
            url,
            WsUrl {
                tls: false,
                host: "example.com".into(),
                port: 80,
                path: "/chat?room=1".into()
            }
        );
        assert_eq!(url.host_header(), "example.com");
        assert_eq!(url.authority(), "example.com:80");

        let url = WsUrl::parse("WSS://example.com").unwrap();
        assert!(url.tls);
        assert_eq!(url.port, 443);
        assert_eq!(url.path, "/");
        assert_eq!(url.scheme(), "wss");
    }

    #[test]
    fn explicit_ports_go_into_the_host_header() {
        let url = WsUrl::parse("wss://example.com:8443/x").unwrap();
        assert_eq!(url.port, 8443);
        assert_eq!(url.host_header(), "example.com:8443");
        // The default port written out is still the default.
        assert_eq!(WsUrl::parse("ws://h:80/").unwrap().host_header(), "h");
        assert_eq!(WsUrl::parse("ws://h:/").unwrap().port, 80);
    }

    #[test]
    fn ipv6_literals() {
        let url = WsUrl::parse("ws://[::1]:9001/socket").unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.port, 9001);
        assert_eq!(url.host_header(), "[::1]:9001");
        assert_eq!(url.authority(), "[::1]:9001");
        assert_eq!(WsUrl::parse("wss://[::1]").unwrap().host_header(), "[::1]");
    }

    #[test]
    fn a_new_target_must_be_sendable_in_a_request_line() {
        let base = WsUrl::parse("ws://h:9000/base").unwrap();
        let url = base.clone().with_target("/base/x?y=%20").unwrap();
        assert_eq!(url.to_string(), "ws://h:9000/base/x?y=%20");
        for bad in ["", "x", "/a b", "/a\r\nHost: evil", "/a#top", "/\x7f"] {
            match base.clone().with_target(bad) {
                Err(Error::InvalidUrl { reason, .. }) => {
                    assert!(reason.contains("path"), "{bad:?}")
                }
                other => panic!("{bad:?}: expected InvalidUrl, got {other:?}"),
            }
        }
        assert_eq!(base.with_target("/é").unwrap().target(), "/é");
    }

    #[test]
    fn another_address_replaces_host_and_port_only() {
        let url = WsUrl::parse("wss://backend/chat?x=1").unwrap();
        let v4 = url.clone().with_addr("10.0.0.7:8443".parse().unwrap());
        assert_eq!(v4.to_string(), "wss://10.0.0.7:8443/chat?x=1");
        let v6 = url.with_addr("[::1]:443".parse().unwrap());
        assert_eq!((v6.host(), v6.host_header()), ("::1", "[::1]".to_owned()));
    }

    #[test]
    fn text_and_parsed_urls_are_both_urls() {
        let parsed = WsUrl::parse("ws://h/x").unwrap();
        assert_eq!("ws://h/x".into_ws_url().unwrap(), parsed);
        assert_eq!(String::from("ws://h/x").into_ws_url().unwrap(), parsed);
        assert_eq!(parsed.clone().into_ws_url().unwrap(), parsed);
        assert!("http://h/".into_ws_url().is_err());
    }

    #[test]
    fn query_without_path() {
        assert_eq!(WsUrl::parse("ws://h?a=b").unwrap().path, "/?a=b");
    }

    #[test]
    fn bad_urls_say_why() {
        assert_eq!(
            reason("http://example.com/"),
            "the scheme must be ws:// or wss://"
        );
        assert_eq!(reason("example.com/chat"), "not a valid URL");
        assert_eq!(reason("/chat"), "missing scheme (ws:// or wss://)");
        assert_eq!(reason("ws:///chat"), "not a valid URL");
        assert_eq!(
            reason("ws://h/chat#top"),
            "a WebSocket URL must not have a fragment"
        );
        assert_eq!(
            reason("ws://user:pw@h/"),
            "credentials in the URL are not supported"
        );
        assert_eq!(reason("ws://h:0/"), "port 0 is not a valid destination");
        assert_eq!(
            reason("ws://h:65536/"),
            "the port must be a number from 1 to 65535"
        );
        assert_eq!(reason("ws://exa mple.com/"), "not a valid URL");
        assert_eq!(reason(""), "not a valid URL");
    }
}
