//! The request target as the gateway routes it: the authority that decides
//! the host, and the path with its dot-segments removed.
//!
//! A gateway decides routing and authentication from the request line, often
//! behind other proxies. Each of them must read the target the same way, or a
//! request routed to one service reaches another: `/node/../admin` matched
//! against the `/node` route and sent upstream as `/up/../admin` is the
//! classic case. So the target is normalised once, before routing, and the
//! normalised path is what the upstream receives:
//!
//! - only origin-form (`/path?query`) and absolute-form
//!   (`http://host/path?query`) are WebSocket request targets (RFC 9112 §3.2);
//!   `*`, authority-form and anything else is refused;
//! - in absolute-form the target's authority is the host, whatever `Host`
//!   says (RFC 9112 §3.2.2);
//! - `.` and `..` segments are removed as RFC 3986 §5.2.4 says, so the path
//!   never climbs above `/`;
//! - an encoded `/`, `\` or `.` (`%2F`, `%5C`, `%2E`, either case) is refused
//!   rather than decoded: whether `..%2F` is a segment or a name depends on
//!   who reads it, and no legitimate WebSocket path needs one.
//!
//! The query is kept as sent.

use http::Uri;

/// Why a request target was refused; every case is answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// `*`, authority-form, or a path that does not start with `/`.
    #[error("the request target must be a path (/...) or an absolute http(s)/ws(s) URL")]
    Form,
    /// An absolute-form target whose scheme is not http, https, ws or wss.
    #[error("unsupported scheme {0:?} in the request target")]
    Scheme(String),
    /// An encoded `/`, `\` or `.` in the path.
    #[error("encoded {0:?} in the request path (send it unencoded or not at all)")]
    EncodedSeparator(char),
}

/// A request target, normalised for routing.
///
/// ```
/// use frameway_gateway::target::RequestTarget;
/// let target = RequestTarget::parse(&"/node/../admin?x=1".parse().unwrap()).unwrap();
/// assert_eq!(target.path_and_query(), "/admin?x=1");
/// assert_eq!(target.authority(), None);
///
/// let absolute = RequestTarget::parse(&"http://a.example.com/h".parse().unwrap()).unwrap();
/// assert_eq!(absolute.authority(), Some("a.example.com"));
/// assert!(RequestTarget::parse(&"/a/..%2fadmin".parse().unwrap()).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    authority: Option<String>,
    path_and_query: String,
}

impl RequestTarget {
    /// Normalises a request's target (see the module documentation).
    pub fn parse(uri: &Uri) -> Result<RequestTarget, TargetError> {
        let authority = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => {
                if !["http", "https", "ws", "wss"]
                    .iter()
                    .any(|s| scheme.eq_ignore_ascii_case(s))
                {
                    return Err(TargetError::Scheme(scheme.to_owned()));
                }
                Some(authority.as_str().to_owned())
            }
            (None, None) => None,
            _ => return Err(TargetError::Form),
        };
        let path = uri.path();
        if !path.starts_with('/') {
            return Err(TargetError::Form);
        }
        if let Some(c) = encoded_separator(path) {
            return Err(TargetError::EncodedSeparator(c));
        }
        let mut path_and_query = remove_dot_segments(path);
        if let Some(query) = uri.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        Ok(RequestTarget {
            authority,
            path_and_query,
        })
    }

    /// The authority of an absolute-form target: the host the request is for.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// The normalised path, and the query as sent.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// The normalised path.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path)
    }

    /// The query as sent, without its `?`.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, query)| query)
    }
}

/// The first percent-encoded `/`, `\` or `.` in `path`.
fn encoded_separator(path: &str) -> Option<char> {
    let bytes = path.as_bytes();
    bytes.windows(3).find_map(|w| {
        if w[0] != b'%' {
            return None;
        }
        match (w[1], w[2].to_ascii_uppercase()) {
            (b'2', b'F') => Some('/'),
            (b'5', b'C') => Some('\\'),
            (b'2', b'E') => Some('.'),
            _ => None,
        }
    })
}

/// RFC 3986 §5.2.4 on an absolute path: `.` segments go, `..` removes the
/// segment before it, and nothing climbs above the root.
fn remove_dot_segments(path: &str) -> String {
    // Each kept segment is written as `/segment`; `..` cuts the last one.
    let mut out = String::with_capacity(path.len());
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." | ".." => {
                if segment == ".." {
                    out.truncate(out.rfind('/').unwrap_or(0));
                }
                // A path ending in a dot-segment names a directory: keep the
                // trailing slash, as the RFC's output buffer does.
                if last {
                    out.push('/');
                }
            }
            _ => {
                out.push('/');
                out.push_str(segment);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(target: &str) -> Result<String, TargetError> {
        RequestTarget::parse(&target.parse().unwrap()).map(|t| t.path_and_query)
    }

    #[test]
    fn dot_segments_are_removed_as_rfc_3986_says() {
        for (raw, want) in [
            ("/", "/"),
            ("/a/b/c", "/a/b/c"),
            ("/node/../admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/../../etc", "/etc"),
            ("/a/../../b/./c/", "/b/c/"),
            ("/a//b", "/a//b"),
            ("/a/..b/c", "/a/..b/c"),
            ("/up/x?q=/../y", "/up/x?q=/../y"),
        ] {
            assert_eq!(normalised(raw).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn encoded_separators_are_refused_in_either_case() {
        for (raw, c) in [
            ("/node/..%2fadmin", '/'),
            ("/node/%2F..%2Fadmin", '/'),
            ("/node/%2e%2e/admin", '.'),
            ("/node/..%5Cadmin", '\\'),
        ] {
            assert_eq!(
                normalised(raw),
                Err(TargetError::EncodedSeparator(c)),
                "{raw}"
            );
        }
        assert_eq!(normalised("/caf%C3%A9?a=%2F").unwrap(), "/caf%C3%A9?a=%2F");
    }

    #[test]
    fn only_origin_and_absolute_forms_are_targets() {
        assert_eq!(normalised("*"), Err(TargetError::Form));
        assert_eq!(normalised("node"), Err(TargetError::Form));
        assert_eq!(normalised("example.com:443"), Err(TargetError::Form));
        assert_eq!(
            normalised("ftp://example.com/x"),
            Err(TargetError::Scheme("ftp".into()))
        );
        let absolute = RequestTarget::parse(&"WS://a.example.com:8080/h/../i?x".parse().unwrap());
        let absolute = absolute.unwrap();
        assert_eq!(absolute.authority(), Some("a.example.com:8080"));
        assert_eq!(absolute.path_and_query(), "/i?x");
        assert_eq!(absolute.path(), "/i");
    }
}
