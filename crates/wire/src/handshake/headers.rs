//! Header value grammar: comma-separated token lists and extension offers.

use http::header::{GetAll, HeaderValue};

/// Splits every value of a header into its comma-separated, trimmed, non-empty
/// elements.
///
/// ```
/// use http::HeaderMap;
/// let mut headers = HeaderMap::new();
/// headers.append("connection", "keep-alive, Upgrade".parse().unwrap());
/// let tokens: Vec<_> = frameway_wire::handshake::split_tokens(headers.get_all("connection")).collect();
/// assert_eq!(tokens, ["keep-alive", "Upgrade"]);
/// ```
pub fn split_tokens<'a>(values: GetAll<'a, HeaderValue>) -> impl Iterator<Item = &'a str> + 'a {
    values
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether a header lists `token`, compared case-insensitively (as
/// `Connection: keep-alive, Upgrade` lists `upgrade`).
///
/// ```
/// use http::HeaderMap;
/// let mut headers = HeaderMap::new();
/// headers.append("connection", "keep-alive, Upgrade".parse().unwrap());
/// assert!(frameway_wire::handshake::has_token(headers.get_all("connection"), "upgrade"));
/// assert!(!frameway_wire::handshake::has_token(headers.get_all("connection"), "close"));
/// ```
pub fn has_token(values: GetAll<'_, HeaderValue>, token: &str) -> bool {
    // On the bytes: every handshake asks twice, and a token is ASCII, so
    // the values need not be checked as text first.
    values.into_iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// One offered or accepted extension: a name and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// The extension's name, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters in order; a parameter without `=` has no value.
    pub params: Vec<(String, Option<String>)>,
}

impl ExtensionOffer {
    /// The value of a parameter: `None` if absent, `Some(None)` if present
    /// without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

impl std::fmt::Display for ExtensionOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        for (name, value) in &self.params {
            match value {
                Some(value) => write!(f, "; {name}={value}")?,
                None => write!(f, "; {name}")?,
            }
        }
        Ok(())
    }
}

/// A `Sec-WebSocket-Extensions` header that does not follow RFC 6455 §9.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Sec-WebSocket-Extensions header")]
pub struct MalformedExtensions;

/// Parses every `Sec-WebSocket-Extensions` value into offers, in order:
/// `ext; param; param=value; param="quoted", other-ext`.
///
/// ```
/// use http::HeaderMap;
/// let mut headers = HeaderMap::new();
/// headers.append(
///     "sec-websocket-extensions",
///     "permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=\"10\""
///         .parse()
///         .unwrap(),
/// );
/// let offers =
///     frameway_wire::handshake::parse_extensions(headers.get_all("sec-websocket-extensions")).unwrap();
/// assert_eq!(offers.len(), 2);
/// assert_eq!(offers[0].param("client_max_window_bits"), Some(None));
/// assert_eq!(offers[1].param("server_max_window_bits"), Some(Some("10")));
/// ```
pub fn parse_extensions(
    values: GetAll<'_, HeaderValue>,
) -> Result<Vec<ExtensionOffer>, MalformedExtensions> {
    let mut offers = Vec::new();
    for value in values {
        let value = value.to_str().map_err(|_| MalformedExtensions)?;
        let mut p = Parser { rest: value };
        loop {
            p.skip_ws();
            if p.rest.is_empty() {
                break;
            }
            let name = p.token()?;
            let mut params = Vec::new();
            loop {
                p.skip_ws();
                if !p.eat(';') {
                    break;
                }
                p.skip_ws();
                let param = p.token()?;
                p.skip_ws();
                let value = if p.eat('=') {
                    p.skip_ws();
                    Some(p.value()?)
                } else {
                    None
                };
                params.push((param.to_owned(), value));
            }
            offers.push(ExtensionOffer {
                name: name.to_owned(),
                params,
            });
            p.skip_ws();
            if !p.eat(',') && !p.rest.is_empty() {
                return Err(MalformedExtensions);
            }
        }
    }
    Ok(offers)
}

struct Parser<'a> {
    rest: &'a str,
}

impl<'a> Parser<'a> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn token(&mut self) -> Result<&'a str, MalformedExtensions> {
        let end = self
            .rest
            .find(|c: char| !is_tchar(c))
            .unwrap_or(self.rest.len());
        if end == 0 {
            return Err(MalformedExtensions);
        }
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        Ok(token)
    }

    /// A token or a quoted string whose content is a token (RFC 6455 §9.1).
    fn value(&mut self) -> Result<String, MalformedExtensions> {
        if !self.eat('"') {
            return self.token().map(str::to_owned);
        }
        let mut out = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    if out.is_empty() || !out.chars().all(is_tchar) {
                        return Err(MalformedExtensions);
                    }
                    return Ok(out);
                }
                '\\' => out.push(chars.next().ok_or(MalformedExtensions)?.1),
                c => out.push(c),
            }
        }
        Err(MalformedExtensions)
    }
}

/// RFC 7230 `tchar`.
pub(super) fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn parse(value: &str) -> Result<Vec<ExtensionOffer>, MalformedExtensions> {
        let mut h = HeaderMap::new();
        h.append("x", value.parse().unwrap());
        parse_extensions(h.get_all("x"))
    }

    #[test]
    fn several_offers_and_parameters() {
        let offers = parse(
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10 , x-foo",
        )
        .unwrap();
        assert_eq!(offers.len(), 2);
        assert_eq!(
            offers[0].to_string(),
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10"
        );
        assert_eq!(offers[1].name, "x-foo");
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn malformed_offers_are_errors() {
        for bad in [
            "; x",
            "a;",
            "a; b=",
            "a b",
            "a; b=\"\"",
            "a; b=\"1 2\"",
            "a; b=\"1",
        ] {
            assert_eq!(parse(bad), Err(MalformedExtensions), "{bad}");
        }
    }

    #[test]
    fn token_lists_are_case_insensitive() {
        let mut h = HeaderMap::new();
        h.append("connection", "keep-alive".parse().unwrap());
        h.append("connection", "UPGRADE".parse().unwrap());
        assert!(has_token(h.get_all("connection"), "upgrade"));
        assert!(!has_token(h.get_all("connection"), "close"));
    }
}
