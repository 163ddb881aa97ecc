//! `extensions`: the `Sec-WebSocket-Extensions` parser, and the
//! permessage-deflate negotiation on what it parses.
//!
//! Asserts: parsed offers, written back out, parse to the same offers; a
//! server that accepts an offer answers with parameters in range that
//! parse back; a client that confirms an answer holds the server to what
//! the client allows.

use frameway_wire::deflate::{Deflate, DeflateConfig};
use frameway_wire::handshake::parse_extensions;
use frameway_wire::Role;
use http::header::SEC_WEBSOCKET_EXTENSIONS;
use http::{HeaderMap, HeaderValue};

use crate::Input;

/// The check; see the module documentation.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let config = DeflateConfig::default()
        .server_no_context_takeover(flags & 1 != 0)
        .client_no_context_takeover(flags & 2 != 0)
        .server_max_window_bits(8 + (flags >> 2) % 8)
        .client_max_window_bits(8 + (flags >> 5));
    let mut headers = HeaderMap::new();
    for line in input.rest().split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(SEC_WEBSOCKET_EXTENSIONS, value);
        }
    }
    let Ok(offers) = parse_extensions(headers.get_all(SEC_WEBSOCKET_EXTENSIONS)) else {
        return;
    };
    assert_eq!(reparse(&offers), offers, "written out and parsed back");

    if let Some(params) = config.accept(&offers) {
        for bits in [params.client_max_window_bits, params.server_max_window_bits] {
            assert!((8..=15).contains(&bits), "window bits {bits}");
        }
        assert!(params.server_max_window_bits <= config.server_max_window_bits);
        assert!(!config.server_no_context_takeover || params.server_no_context_takeover);
        let answer = params.response();
        assert_eq!(reparse(std::slice::from_ref(&answer)), [answer]);
        Deflate::new(Role::Server, params, &config);
    }
    if let Ok(Some(params)) = config.confirm(&offers) {
        assert!(params.server_max_window_bits <= config.server_max_window_bits);
        assert!(params.client_max_window_bits <= config.client_max_window_bits);
        assert!(params.client_max_window_bits >= 8 && params.server_max_window_bits >= 8);
        Deflate::new(Role::Client, params, &config);
    }
}

fn reparse(
    offers: &[frameway_wire::handshake::ExtensionOffer],
) -> Vec<frameway_wire::handshake::ExtensionOffer> {
    let text = offers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut headers = HeaderMap::new();
    headers.append(
        SEC_WEBSOCKET_EXTENSIONS,
        HeaderValue::from_str(&text).expect("written offers are a header value"),
    );
    parse_extensions(headers.get_all(SEC_WEBSOCKET_EXTENSIONS)).expect("written offers parse")
}
