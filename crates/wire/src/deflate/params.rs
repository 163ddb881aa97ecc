//! Negotiating permessage-deflate (RFC 7692 §5, §7.1) on both sides: our
//! settings ([`DeflateConfig`]), the offer a client sends, the answer a
//! server gives to each offer, the client's check of that answer, and what
//! both ends agreed on ([`DeflateParams`]).

use std::fmt;

use crate::handshake::ExtensionOffer;

/// The extension's registered name.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The smallest LZ77 window RFC 7692 allows, as a base-2 logarithm.
pub const MIN_WINDOW_BITS: u8 = 8;
/// The largest (and default) LZ77 window: 32 KiB.
pub const MAX_WINDOW_BITS: u8 = 15;

/// Our side's permessage-deflate settings: what a client offers, and what a
/// server accepts and asks for.
///
/// Each field speaks of one direction. As a **server**, the `server_*`
/// fields bound our own compressor and the `client_*` fields are what we
/// require of the client's; as a **client**, the `server_*` fields are what
/// we ask of the server and the `client_*` fields bound our compressor.
///
/// The defaults (context takeover both ways, 15-bit windows, level 6,
/// memory level 8, every message compressed) give the best ratio; see
/// BENCHMARKS.md for what each connection then holds, and the settings that
/// keep it small (no context takeover frees nothing but makes the window
/// cost per message instead of per connection; smaller windows and a lower
/// `mem_level` shrink the state itself).
///
/// ```
/// use frameway_wire::deflate::DeflateConfig;
/// let config = DeflateConfig::default()
///     .client_no_context_takeover(true)
///     .server_max_window_bits(10)
///     .compress_if_bigger_than(64);
/// assert_eq!(
///     config.offer().to_string(),
///     "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Server: always reset our compressor after each message (and say so).
    /// Client: ask the server to reset its compressor after each message.
    pub server_no_context_takeover: bool,
    /// Server: require the client to reset its compressor after each
    /// message. Client: reset ours (and say so).
    pub client_no_context_takeover: bool,
    /// The largest window the server's compressor may use (8–15). Server: a
    /// cap on ours. Client: asked of the server when below 15.
    pub server_max_window_bits: u8,
    /// The largest window the client's compressor may use (8–15). Server:
    /// asked of the client; an offer that does not let us ask (no
    /// `client_max_window_bits` in it) is declined when this is below 15.
    /// Client: a cap on ours, offered as a hint.
    pub client_max_window_bits: u8,
    /// The zlib compression level, 0 (store) to 9 (best).
    pub level: u8,
    /// zlib's `memLevel`, 1–9: the size of the compressor's hash tables and
    /// symbol buffer, which dominate its memory at small windows.
    pub mem_level: u8,
    /// Data messages of at most this many bytes go out uncompressed (Ktor's
    /// `compressIfBiggerThan`).
    pub compress_if_bigger_than: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            level: 6,
            mem_level: 8,
            compress_if_bigger_than: 0,
        }
    }
}

impl DeflateConfig {
    /// Sets [`Self::server_no_context_takeover`].
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Sets [`Self::client_no_context_takeover`].
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Sets [`Self::server_max_window_bits`], clamped to 8–15.
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        self
    }

    /// Sets [`Self::client_max_window_bits`], clamped to 8–15.
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        self
    }

    /// Sets the compression level, clamped to 0–9.
    pub fn level(mut self, level: u8) -> Self {
        self.level = level.min(9);
        self
    }

    /// Sets zlib's `memLevel`, clamped to 1–9.
    pub fn mem_level(mut self, mem_level: u8) -> Self {
        self.mem_level = mem_level.clamp(1, 9);
        self
    }

    /// Sets the size at or below which messages are sent uncompressed.
    pub fn compress_if_bigger_than(mut self, len: usize) -> Self {
        self.compress_if_bigger_than = len;
        self
    }

    /// The offer a client sends in `Sec-WebSocket-Extensions`.
    ///
    /// `client_max_window_bits` is always included, so that a server wanting
    /// a smaller client window can ask for it instead of declining.
    pub fn offer(&self) -> ExtensionOffer {
        let mut params = Vec::new();
        if self.server_no_context_takeover {
            params.push((SERVER_NO_CONTEXT_TAKEOVER.to_owned(), None));
        }
        if self.client_no_context_takeover {
            params.push((CLIENT_NO_CONTEXT_TAKEOVER.to_owned(), None));
        }
        if self.server_max_window_bits < MAX_WINDOW_BITS {
            params.push((
                SERVER_MAX_WINDOW_BITS.to_owned(),
                Some(self.server_max_window_bits.to_string()),
            ));
        }
        let hint = (self.client_max_window_bits < MAX_WINDOW_BITS)
            .then(|| self.client_max_window_bits.to_string());
        params.push((CLIENT_MAX_WINDOW_BITS.to_owned(), hint));
        ExtensionOffer {
            name: PERMESSAGE_DEFLATE.to_owned(),
            params,
        }
    }

    /// The server's choice among a client's offers, in the client's order of
    /// preference: the first permessage-deflate offer that is valid and that
    /// we can honour within our settings. `None` declines them all (the
    /// connection goes on uncompressed). Write [`DeflateParams::response`]
    /// into the answer's `Sec-WebSocket-Extensions`.
    ///
    /// An offer is declined (RFC 7692 §7.1) when it has an unknown or
    /// repeated parameter or an invalid value, or when we cap the client's
    /// window but it did not offer `client_max_window_bits`.
    ///
    /// ```
    /// use frameway_wire::deflate::DeflateConfig;
    /// use frameway_wire::handshake::parse_extensions;
    /// let mut headers = http::HeaderMap::new();
    /// headers.append(
    ///     "sec-websocket-extensions",
    ///     "permessage-deflate; x-unknown, permessage-deflate; server_max_window_bits=10".parse().unwrap(),
    /// );
    /// let offers = parse_extensions(headers.get_all("sec-websocket-extensions")).unwrap();
    /// let params = DeflateConfig::default().accept(&offers).unwrap();
    /// assert_eq!(params.response().to_string(), "permessage-deflate; server_max_window_bits=10");
    /// ```
    pub fn accept(&self, offers: &[ExtensionOffer]) -> Option<DeflateParams> {
        offers
            .iter()
            .filter(|o| o.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
            .find_map(|o| self.accept_one(o))
    }

    fn accept_one(&self, offer: &ExtensionOffer) -> Option<DeflateParams> {
        let asked = Parsed::from_offer(offer).ok()?;
        let client_max_window_bits = match asked.client_max_window_bits {
            // Supported by the client, with or without a hint.
            Some(hint) => hint
                .unwrap_or(MAX_WINDOW_BITS)
                .min(self.client_max_window_bits),
            // RFC 7692 §7.1.2.2: no parameter in the answer then, so the
            // client may use 15 bits; decline if we want fewer.
            None if self.client_max_window_bits < MAX_WINDOW_BITS => return None,
            None => MAX_WINDOW_BITS,
        };
        Some(DeflateParams {
            server_no_context_takeover: asked.server_no_context_takeover
                || self.server_no_context_takeover,
            client_no_context_takeover: asked.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: asked
                .server_max_window_bits
                .unwrap_or(MAX_WINDOW_BITS)
                .min(self.server_max_window_bits),
            client_max_window_bits,
            client_window_answered: asked.client_max_window_bits.is_some()
                && client_max_window_bits < MAX_WINDOW_BITS,
            server_window_answered: asked.server_max_window_bits.is_some()
                || self.server_max_window_bits < MAX_WINDOW_BITS,
        })
    }

    /// The client's check of the server's answer (RFC 7692 §7.1): at most
    /// one permessage-deflate in `accepted`, every parameter known, given
    /// once, valid and within what [`Self::offer`] asked. `Ok(None)` when the
    /// server declined; an error fails the connection.
    ///
    /// ```
    /// use frameway_wire::deflate::{DeflateConfig, NegotiationError};
    /// use frameway_wire::handshake::ExtensionOffer;
    /// let answer = |params: &[(&str, Option<&str>)]| ExtensionOffer {
    ///     name: "permessage-deflate".into(),
    ///     params: params.iter().map(|(n, v)| (n.to_string(), v.map(str::to_owned))).collect(),
    /// };
    /// let config = DeflateConfig::default().server_max_window_bits(10);
    /// let params = config.confirm(&[answer(&[("server_max_window_bits", Some("9"))])]).unwrap().unwrap();
    /// assert_eq!(params.server_max_window_bits, 9);
    /// // More than we asked for is a protocol violation.
    /// assert!(config.confirm(&[answer(&[("server_max_window_bits", Some("12"))])]).is_err());
    /// assert!(config.confirm(&[answer(&[])]).is_err());
    /// ```
    pub fn confirm(
        &self,
        accepted: &[ExtensionOffer],
    ) -> Result<Option<DeflateParams>, NegotiationError> {
        let mut ours = accepted
            .iter()
            .filter(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE));
        let Some(answer) = ours.next() else {
            return Ok(None);
        };
        if ours.next().is_some() {
            return Err(NegotiationError::Repeated);
        }
        let got = Parsed::from_offer(answer)?;
        if self.server_no_context_takeover && !got.server_no_context_takeover {
            return Err(NegotiationError::Unanswered(SERVER_NO_CONTEXT_TAKEOVER));
        }
        let server_max_window_bits = got.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS);
        if server_max_window_bits > self.server_max_window_bits {
            return Err(NegotiationError::WindowTooLarge(SERVER_MAX_WINDOW_BITS));
        }
        let client_max_window_bits = match got.client_max_window_bits {
            None => self.client_max_window_bits,
            // §7.1.2.2: a value is required in an answer.
            Some(None) => return Err(NegotiationError::MissingValue(CLIENT_MAX_WINDOW_BITS)),
            // A hint we gave is a promise; a larger answer is no licence.
            Some(Some(bits)) => bits.min(self.client_max_window_bits),
        };
        Ok(Some(DeflateParams {
            server_no_context_takeover: got.server_no_context_takeover,
            client_no_context_takeover: got.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
            client_window_answered: got.client_max_window_bits.is_some(),
            server_window_answered: got.server_max_window_bits.is_some(),
        }))
    }
}

/// Why a server's permessage-deflate answer fails the connection
/// (RFC 7692 §7.1: the client must _Fail the WebSocket Connection_).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// permessage-deflate accepted more than once.
    #[error("permessage-deflate answered more than once")]
    Repeated,
    /// A parameter RFC 7692 does not define.
    #[error("unknown permessage-deflate parameter {0:?}")]
    UnknownParameter(String),
    /// A parameter given twice.
    #[error("permessage-deflate parameter {0} given twice")]
    DuplicateParameter(&'static str),
    /// A value where none is allowed, or one outside its range.
    #[error("invalid value for permessage-deflate parameter {0}")]
    InvalidValue(&'static str),
    /// `client_max_window_bits` without a value in an answer.
    #[error("permessage-deflate answer has {0} without a value")]
    MissingValue(&'static str),
    /// A window larger than the one asked for.
    #[error("permessage-deflate answer has {0} above the offered value")]
    WindowTooLarge(&'static str),
    /// A parameter we asked for that the answer left out.
    #[error("permessage-deflate answer does not grant the requested {0}")]
    Unanswered(&'static str),
}

/// What both ends agreed on: the four parameters of RFC 7692 §7.1, with
/// absent window sizes as 15.
///
/// ```
/// use frameway_wire::deflate::DeflateParams;
/// let params = DeflateParams::default();
/// assert_eq!((params.server_max_window_bits, params.client_max_window_bits), (15, 15));
/// assert_eq!(params.response().to_string(), "permessage-deflate");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server's compressor window (8–15).
    pub server_max_window_bits: u8,
    /// The client's compressor window (8–15).
    pub client_max_window_bits: u8,
    /// Whether the answer carries `client_max_window_bits`.
    client_window_answered: bool,
    /// Whether the answer carries `server_max_window_bits`.
    server_window_answered: bool,
}

impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            client_window_answered: false,
            server_window_answered: false,
        }
    }
}

impl DeflateParams {
    /// The server's answer, for its `Sec-WebSocket-Extensions` header.
    ///
    /// Window sizes appear only where RFC 7692 allows: `server_max_window_bits`
    /// when offered or below 15 (some browsers fail a connection whose
    /// answer carries it unasked at 15), `client_max_window_bits` only when
    /// offered and below 15.
    pub fn response(&self) -> ExtensionOffer {
        let mut params = Vec::new();
        if self.server_no_context_takeover {
            params.push((SERVER_NO_CONTEXT_TAKEOVER.to_owned(), None));
        }
        if self.client_no_context_takeover {
            params.push((CLIENT_NO_CONTEXT_TAKEOVER.to_owned(), None));
        }
        if self.server_window_answered {
            params.push((
                SERVER_MAX_WINDOW_BITS.to_owned(),
                Some(self.server_max_window_bits.to_string()),
            ));
        }
        if self.client_window_answered {
            params.push((
                CLIENT_MAX_WINDOW_BITS.to_owned(),
                Some(self.client_max_window_bits.to_string()),
            ));
        }
        ExtensionOffer {
            name: PERMESSAGE_DEFLATE.to_owned(),
            params,
        }
    }
}

impl fmt::Display for DeflateParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.response().fmt(f)
    }
}

/// The four parameters of one offer or answer, each checked for syntax.
#[derive(Debug, Default)]
struct Parsed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// Absent, present without a value, or with one.
    client_max_window_bits: Option<Option<u8>>,
}

impl Parsed {
    fn from_offer(offer: &ExtensionOffer) -> Result<Parsed, NegotiationError> {
        let mut p = Parsed::default();
        let mut seen = [false; 4];
        for (name, value) in &offer.params {
            let (index, key) = [
                SERVER_NO_CONTEXT_TAKEOVER,
                CLIENT_NO_CONTEXT_TAKEOVER,
                SERVER_MAX_WINDOW_BITS,
                CLIENT_MAX_WINDOW_BITS,
            ]
            .into_iter()
            .enumerate()
            .find(|(_, k)| name.eq_ignore_ascii_case(k))
            .ok_or_else(|| NegotiationError::UnknownParameter(name.clone()))?;
            if std::mem::replace(&mut seen[index], true) {
                return Err(NegotiationError::DuplicateParameter(key));
            }
            let value = value.as_deref();
            match index {
                0 | 1 if value.is_some() => return Err(NegotiationError::InvalidValue(key)),
                0 => p.server_no_context_takeover = true,
                1 => p.client_no_context_takeover = true,
                2 => {
                    let bits = value.ok_or(NegotiationError::MissingValue(key))?;
                    p.server_max_window_bits =
                        Some(window_bits(bits).ok_or(NegotiationError::InvalidValue(key))?);
                }
                _ => {
                    p.client_max_window_bits = Some(match value {
                        None => None,
                        Some(bits) => {
                            Some(window_bits(bits).ok_or(NegotiationError::InvalidValue(key))?)
                        }
                    })
                }
            }
        }
        Ok(p)
    }
}

/// A window size as RFC 7692 §7.1.2 writes it: a decimal 8–15 with no
/// leading zero.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.len() > 2 {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS)
        .contains(&bits)
        .then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::parse_extensions;

    fn offers(header: &str) -> Vec<ExtensionOffer> {
        let mut h = http::HeaderMap::new();
        h.append("x", header.parse().unwrap());
        parse_extensions(h.get_all("x")).unwrap()
    }

    fn accept(config: DeflateConfig, header: &str) -> Option<String> {
        config
            .accept(&offers(header))
            .map(|p| p.response().to_string())
    }

    fn confirm(
        config: DeflateConfig,
        header: &str,
    ) -> Result<Option<DeflateParams>, NegotiationError> {
        config.confirm(&offers(header))
    }

    const PMD: &str = "permessage-deflate";

    #[test]
    fn server_accepts_a_plain_offer_as_is() {
        let d = DeflateConfig::default();
        assert_eq!(accept(d, PMD).as_deref(), Some(PMD));
        // A browser's offer: client_max_window_bits without a value needs no answer.
        assert_eq!(
            accept(d, "permessage-deflate; client_max_window_bits").as_deref(),
            Some(PMD)
        );
        assert_eq!(accept(d, "x-webkit-deflate-frame"), None);
        assert_eq!(accept(d, "PerMessage-Deflate").as_deref(), Some(PMD));
    }

    #[test]
    fn server_honours_context_takeover_requests_and_requires_its_own() {
        let d = DeflateConfig::default();
        assert_eq!(
            accept(
                d,
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
            )
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        let strict = d
            .server_no_context_takeover(true)
            .client_no_context_takeover(true);
        assert_eq!(
            accept(strict, PMD).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        let params = strict.accept(&offers(PMD)).unwrap();
        assert!(params.server_no_context_takeover && params.client_no_context_takeover);
    }

    #[test]
    fn server_window_is_the_smaller_of_offer_and_cap() {
        let d = DeflateConfig::default();
        for bits in 8..=15 {
            let header = format!("permessage-deflate; server_max_window_bits={bits}");
            assert_eq!(accept(d, &header), Some(header.clone()));
        }
        let capped = d.server_max_window_bits(10);
        assert_eq!(
            accept(capped, "permessage-deflate; server_max_window_bits=12").as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
        assert_eq!(
            accept(capped, "permessage-deflate; server_max_window_bits=9").as_deref(),
            Some("permessage-deflate; server_max_window_bits=9")
        );
        // Not offered: a cap below 15 is announced (§7.1.2.1 allows it).
        assert_eq!(
            accept(capped, PMD).as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
    }

    #[test]
    fn client_window_needs_the_clients_support() {
        let d = DeflateConfig::default();
        assert_eq!(
            accept(d, "permessage-deflate; client_max_window_bits=10").as_deref(),
            Some("permessage-deflate; client_max_window_bits=10")
        );
        let capped = d.client_max_window_bits(9);
        assert_eq!(
            accept(capped, "permessage-deflate; client_max_window_bits").as_deref(),
            Some("permessage-deflate; client_max_window_bits=9")
        );
        assert_eq!(
            accept(capped, "permessage-deflate; client_max_window_bits=8").as_deref(),
            Some("permessage-deflate; client_max_window_bits=8")
        );
        // No client_max_window_bits in the offer: we may not ask, so decline.
        assert_eq!(accept(capped, PMD), None);
        // ... but a later offer that allows it is taken.
        assert_eq!(
            accept(
                capped,
                "permessage-deflate, permessage-deflate; client_max_window_bits"
            )
            .as_deref(),
            Some("permessage-deflate; client_max_window_bits=9")
        );
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_one_taken() {
        let d = DeflateConfig::default();
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=ten",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
        ] {
            assert_eq!(accept(d, bad), None, "{bad}");
            let with_fallback = format!("{bad}, permessage-deflate; client_no_context_takeover");
            assert_eq!(
                accept(d, &with_fallback).as_deref(),
                Some("permessage-deflate; client_no_context_takeover"),
                "{bad}"
            );
        }
        // Quoted values are the same values (RFC 6455 §9.1).
        assert_eq!(
            accept(d, "permessage-deflate; server_max_window_bits=\"12\"").as_deref(),
            Some("permessage-deflate; server_max_window_bits=12")
        );
    }

    #[test]
    fn client_offer_reflects_its_settings() {
        assert_eq!(
            DeflateConfig::default().offer().to_string(),
            "permessage-deflate; client_max_window_bits"
        );
        let all = DeflateConfig::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .server_max_window_bits(8)
            .client_max_window_bits(12);
        assert_eq!(
            all.offer().to_string(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=8; client_max_window_bits=12"
        );
        // Our own offer is one our own server accepts, with the same terms.
        let params = DeflateConfig::default().accept(&[all.offer()]).unwrap();
        assert_eq!(
            (
                params.server_no_context_takeover,
                params.client_no_context_takeover,
                params.server_max_window_bits,
                params.client_max_window_bits
            ),
            (true, true, 8, 12)
        );
    }

    #[test]
    fn client_checks_the_answer() {
        let d = DeflateConfig::default();
        assert_eq!(confirm(d, "x-other"), Ok(None));
        assert_eq!(
            confirm(d, PMD),
            Ok(Some(DeflateParams {
                client_window_answered: false,
                ..DeflateParams::default()
            }))
        );
        let p = confirm(
            d,
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=9; server_max_window_bits=12",
        )
        .unwrap()
        .unwrap();
        assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (12, 9)
        );
        for (bad, err) in [
            (
                "permessage-deflate, permessage-deflate",
                NegotiationError::Repeated,
            ),
            (
                "permessage-deflate; client_max_window_bits",
                NegotiationError::MissingValue(CLIENT_MAX_WINDOW_BITS),
            ),
            (
                "permessage-deflate; bogus",
                NegotiationError::UnknownParameter("bogus".into()),
            ),
            (
                "permessage-deflate; server_max_window_bits=20",
                NegotiationError::InvalidValue(SERVER_MAX_WINDOW_BITS),
            ),
            (
                "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                NegotiationError::DuplicateParameter(CLIENT_NO_CONTEXT_TAKEOVER),
            ),
        ] {
            assert_eq!(confirm(d, bad), Err(err), "{bad}");
        }
        // What we asked for must be granted.
        let asking = d
            .server_no_context_takeover(true)
            .server_max_window_bits(10);
        assert_eq!(
            confirm(asking, "permessage-deflate; server_max_window_bits=10"),
            Err(NegotiationError::Unanswered(SERVER_NO_CONTEXT_TAKEOVER))
        );
        assert_eq!(
            confirm(asking, "permessage-deflate; server_no_context_takeover"),
            Err(NegotiationError::WindowTooLarge(SERVER_MAX_WINDOW_BITS))
        );
        assert!(confirm(
            asking,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8"
        )
        .unwrap()
        .is_some());
        // Our own client_no_context_takeover holds whatever the answer says.
        let p = confirm(d.client_no_context_takeover(true), PMD)
            .unwrap()
            .unwrap();
        assert!(p.client_no_context_takeover);
        // Our window hint caps us even if the server answers a larger one.
        let p = confirm(
            d.client_max_window_bits(10),
            "permessage-deflate; client_max_window_bits=14",
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.client_max_window_bits, 10);
    }
}
