//! Tunnelling through an HTTP proxy with `CONNECT` (RFC 9110 §9.3.6).

use std::io;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{StatusCode, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// The most bytes of the proxy's response head.
const MAX_HEAD: usize = 8 * 1024;
/// The most header fields in the proxy's response.
const MAX_HEADERS: usize = 32;

/// An HTTP proxy to tunnel through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    /// Host and port to dial, as `TcpStream::connect` takes them.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `Proxy-Authorization` value, from credentials in the proxy URL.
    authorization: Option<String>,
}

impl Proxy {
    /// Parses `http://[user:password@]host[:port]` (the scheme may be left
    /// out; the port defaults to 80).
    pub(crate) fn parse(url: &str) -> Result<Proxy> {
        let invalid = |reason| Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|_| invalid("not a valid proxy URL"))?;
        match uri.scheme_str() {
            None => {}
            Some(s) if s.eq_ignore_ascii_case("http") => {}
            Some(_) => return Err(invalid("only http:// proxies are supported")),
        }
        if uri
            .path_and_query()
            .is_some_and(|pq| !matches!(pq.as_str(), "" | "/"))
        {
            return Err(invalid("a proxy URL has no path"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("missing proxy host"))?;
        let authorization = authority
            .as_str()
            .rsplit_once('@')
            .map(|(credentials, _)| format!("Basic {}", STANDARD.encode(credentials)));
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(invalid("missing proxy host"));
        }
        Ok(Proxy {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authorization,
        })
    }

    /// Asks the proxy, over `tcp`, for a tunnel to `target` (`host:port`).
    /// Reads exactly the proxy's response head, so whatever follows it
    /// stays in the socket for the TLS or WebSocket handshake.
    pub(crate) async fn tunnel(&self, tcp: &mut TcpStream, target: &str) -> Result<()> {
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(authorization) = &self.authorization {
            request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes()).await?;

        // Peek, then consume only bytes known to belong to the head: never
        // read past it, since any buffer here would be lost to the TLS layer.
        let mut head = Vec::new();
        let mut peeked = vec![0u8; 1024];
        loop {
            let n = tcp.peek(&mut peeked).await?;
            if n == 0 {
                return Err(malformed(
                    "the proxy closed the connection before answering CONNECT",
                ));
            }
            let seen = head.len();
            head.extend_from_slice(&peeked[..n]);
            match parse_connect_response(&head)? {
                Some((status, len)) => {
                    // `len - seen` ≤ `n`: the rest of the peeked bytes stay queued.
                    let mut taken = vec![0u8; len - seen];
                    tcp.read_exact(&mut taken).await?;
                    if !status.is_success() {
                        return Err(Error::Proxy(status));
                    }
                    return Ok(());
                }
                None => {
                    let mut taken = vec![0u8; n];
                    tcp.read_exact(&mut taken).await?;
                }
            }
        }
    }
}

/// Parses the proxy's response head: `None` until it is complete, then
/// the status and the head's length.
fn parse_connect_response(buf: &[u8]) -> Result<Option<(StatusCode, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => {
            let status = response
                .code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| malformed("invalid status in the proxy's response"))?;
            Ok(Some((status, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            Err(malformed("the proxy's response head is too large"))
        }
        Err(e) => Err(malformed(&format!("malformed proxy response: {e}"))),
    }
}

fn malformed(why: &str) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::InvalidData, why.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let p = Proxy::parse("http://proxy.local:3128").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.authorization),
            ("proxy.local", 3128, None)
        );
        let p = Proxy::parse("proxy.local:8080").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.local", 8080));
        assert_eq!(Proxy::parse("http://[::1]").unwrap().host, "::1");
        assert_eq!(Proxy::parse("http://[::1]").unwrap().port, 80);
        let p = Proxy::parse("http://aladdin:opensesame@proxy:1").unwrap();
        assert_eq!(
            p.authorization.as_deref(),
            Some("Basic YWxhZGRpbjpvcGVuc2VzYW1l")
        );
        assert!(matches!(
            Proxy::parse("socks5://p:1"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            Proxy::parse("http://p:1/path"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(Proxy::parse(""), Err(Error::InvalidUrl { .. })));
    }

    #[test]
    fn connect_responses() {
        let ok = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n\x16\x03";
        assert_eq!(
            parse_connect_response(ok).unwrap(),
            Some((StatusCode::OK, ok.len() - 2))
        );
        assert_eq!(
            parse_connect_response(b"HTTP/1.1 200 OK\r\n").unwrap(),
            None
        );
        let denied = b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n";
        assert_eq!(
            parse_connect_response(denied).unwrap(),
            Some((StatusCode::PROXY_AUTHENTICATION_REQUIRED, denied.len()))
        );
        assert!(matches!(
            parse_connect_response(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(Error::Io(_))
        ));
        let endless = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
        assert!(matches!(
            parse_connect_response(&endless),
            Err(Error::Io(_))
        ));
    }

    #[tokio::test]
    async fn tunnel_leaves_bytes_after_the_head_unread() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 256];
            let n = tcp.read(&mut request).await.unwrap();
            assert!(request[..n]
                .starts_with(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"));
            // Head split across writes, then early tunnel bytes in the same write.
            tcp.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
            tcp.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tcp.write_all(b"\r\nearly").await.unwrap();
            tcp
        });
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let p = Proxy::parse(&format!("http://{addr}")).unwrap();
        p.tunnel(&mut tcp, "example.com:443").await.unwrap();
        let mut early = [0u8; 5];
        tcp.read_exact(&mut early).await.unwrap();
        assert_eq!(&early, b"early");
        drop(proxy.await.unwrap());
    }
}
