//! Query strings and header names as Kong's PDK reads them: one
//! implementation for native plugins, the Lua binding and `key-auth`.
//!
//! Arguments are `application/x-www-form-urlencoded`: `+` is a space and
//! `%XX` a byte; a `%` not followed by two hex digits stays as it is (what
//! `ngx.decode_args` does).
//!
//! ```
//! use frameway_gateway::plugin::query;
//!
//! assert_eq!(query::arg("a=1&flag&c=x%20y+z", "c"), Some(Some("x y z".into())));
//! assert_eq!(query::arg("a=1&flag", "flag"), Some(None));
//! assert_eq!(query::values("a=1&b=2&a=3", "a"), ["1", "3"]);
//! assert_eq!(query::without_arg("/p?token=x&a=1", "token"), "/p?a=1");
//! assert_eq!(query::decode("%+f"), "%+f".replace('+', " "));
//! assert_eq!(query::header_name("X_Api_Key"), "x-api-key");
//! ```

/// The first occurrence of argument `name`: `Some(None)` when it is present
/// without `=` (Kong gives `true` for it).
pub fn arg(query: &str, name: &str) -> Option<Option<String>> {
    pairs(query).find_map(|(key, value)| (decode(key) == name).then(|| value.map(decode)))
}

/// Every value of argument `name`, decoded, in request order; an argument
/// without `=` counts as an empty value.
pub fn values(query: &str, name: &str) -> Vec<String> {
    pairs(query)
        .filter(|(key, _)| decode(key) == name)
        .map(|(_, value)| value.map(decode).unwrap_or_default())
        .collect()
}

/// `target` (a path and query) without any occurrence of argument `name`;
/// the `?` goes too when no argument is left.
pub fn without_arg(target: &str, name: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            decode(key) != name
        })
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// Percent-encodes every byte but the unreserved ones (RFC 3986: letters,
/// digits, `-`, `.`, `_`, `~`), as OpenResty's `ngx.escape_uri` does.
///
/// ```
/// use frameway_gateway::plugin::query;
/// assert_eq!(query::encode(b"a b/\xc3\xa9"), "a%20b%2F%C3%A9");
/// ```
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes one form-encoded key or value; bytes that are not UTF-8 become
/// U+FFFD.
pub fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Two hex digits exactly: `u8::from_str_radix` would also take a
        // sign, decoding `%+f` to 0x0F.
        let escaped = match bytes.get(i..i + 3) {
            Some(&[b'%', hi, lo]) => hex(hi).zip(hex(lo)).map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The header a name given to `kong.request.get_header` means: header
/// names ignore case, and Kong takes `_` as `-` (`x_api_key` finds
/// `X-Api-Key`).
pub fn header_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// The non-empty `key[=value]` pairs of a query string.
fn pairs(query: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (pair, None),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_kong() {
        assert_eq!(arg("a=1&b&c=x%20y&a=2", "a"), Some(Some("1".into())));
        assert_eq!(arg("a=1&b&c=x%20y", "b"), Some(None));
        assert_eq!(arg("a=1&b&c=x%20y+z", "c"), Some(Some("x y z".into())));
        assert_eq!(arg("a=1", "z"), None);
        assert_eq!(arg("k%61y=%zz", "kay"), Some(Some("%zz".into())));
        assert_eq!(arg("a=caf%C3%A9", "a"), Some(Some("café".into())));
    }

    #[test]
    fn a_percent_without_two_hex_digits_stays_literal() {
        assert_eq!(decode("%+f"), "% f");
        assert_eq!(decode("%-1"), "%-1");
        assert_eq!(decode("%2"), "%2");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%41%4a"), "AJ");
    }

    #[test]
    fn values_are_percent_decoded() {
        assert_eq!(decode("a%20b+c%2"), "a b c%2");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("caf%C3%A9"), "café");
    }

    #[test]
    fn arguments_are_removed_by_decoded_name() {
        assert_eq!(without_arg("/a?apikey=1&b=2", "apikey"), "/a?b=2");
        assert_eq!(without_arg("/a?api%6Bey=1&apikey&x", "apikey"), "/a?x");
        assert_eq!(without_arg("/a?b=apikey", "apikey"), "/a?b=apikey");
    }

    #[test]
    fn repeated_arguments_keep_their_order_and_removal_takes_them_all() {
        assert_eq!(values("t=1&x=2&t=3&t", "t"), ["1", "3", ""]);
        assert_eq!(without_arg("/p?t=1&x=2&t=3", "t"), "/p?x=2");
        assert_eq!(without_arg("/p?t=1", "t"), "/p");
        assert_eq!(without_arg("/p", "t"), "/p");
    }
}
