//! `handshake_request` and `handshake_response`: the opening handshake's
//! parsers on arbitrary bytes.
//!
//! Request: a parsed head never claims more bytes than it had or than the
//! limit; the head parses the same without the bytes after it and is
//! incomplete one byte short; a request that validates is answered with a
//! 101 that our own client parses and accepts, with the chosen subprotocol;
//! a refused one gets a 4xx answer that parses back with its status.
//!
//! Response: a parsed head is written out and parsed back unchanged; an
//! accepted response chose only what was offered, and a permessage-deflate
//! answer our client confirms has window sizes in range.

use frameway_wire::deflate::DeflateConfig;
use frameway_wire::handshake::{
    accept_response, generate_key, is_valid_key, parse_request, parse_response, rejection_response,
    validate_request, validate_response, write_response, HandshakeLimits,
};
use frameway_wire::Role;
use http::{HeaderMap, Request, StatusCode};

use crate::Input;

fn limits(input: &mut Input<'_>) -> HandshakeLimits {
    HandshakeLimits {
        max_headers: input.pick(&[1, 8, 64, 100]),
        max_head_len: input.pick(&[64, 1024, 16 * 1024, 32 * 1024]),
    }
}

/// The request check; see the module documentation.
pub fn check_request(data: &[u8]) {
    let mut input = Input::new(data);
    let limits = limits(&mut input);
    let buf = input.rest();
    let (request, len) = match parse_request(buf, limits) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            assert!(
                buf.len() <= limits.max_head_len,
                "an over-long head is pending"
            );
            return;
        }
        Err(err) => return refused(err),
    };
    assert!(len <= buf.len() && len <= limits.max_head_len);
    let (again, again_len) = parse_request(&buf[..len], limits)
        .expect("the head alone parses")
        .expect("the head alone is complete");
    assert_eq!(again_len, len);
    assert_same_request(&request, &again);
    assert!(matches!(parse_request(&buf[..len - 1], limits), Ok(None)));

    let offer = match validate_request(&request) {
        Ok(offer) => offer,
        Err(err) => return refused(err),
    };
    assert!(is_valid_key(offer.key.as_bytes()));
    let protocol = offer.protocols.first().map(String::as_str);
    let deflate = DeflateConfig::default();
    let answer = deflate
        .accept(&offer.extensions)
        .map(|params| params.response().to_string());
    let response = accept_response(&offer, protocol, answer.as_deref())
        .expect("the 101 for a valid request builds");
    let mut out = Vec::new();
    write_response(&response, b"", &mut out);
    let (parsed, parsed_len) = parse_response(&out, HandshakeLimits::default())
        .expect("our 101 parses")
        .expect("our 101 is complete");
    assert_eq!(parsed_len, out.len());
    let accepted = validate_response(
        &parsed,
        &offer.key,
        &offer.protocols,
        &["permessage-deflate"],
    )
    .expect("our client accepts our server's 101");
    assert_eq!(accepted.protocol.as_deref(), protocol);
    assert_eq!(accepted.extensions.len(), usize::from(answer.is_some()));
}

fn refused(err: frameway_wire::handshake::RequestError) {
    let status = err.status();
    assert!(status.is_client_error(), "{err}: {status}");
    let response = rejection_response(&err);
    let mut out = Vec::new();
    write_response(&response, response.body().as_bytes(), &mut out);
    let (parsed, len) = parse_response(&out, HandshakeLimits::default())
        .expect("our refusal parses")
        .expect("our refusal is complete");
    assert_eq!(parsed.status(), status);
    assert_eq!(&out[len..], response.body().as_bytes());
}

fn assert_same_request(a: &Request<()>, b: &Request<()>) {
    assert_eq!(a.method(), b.method());
    assert_eq!(a.uri(), b.uri());
    assert_eq!(a.version(), b.version());
    assert_eq!(a.headers(), b.headers());
}

/// The response check; see the module documentation.
pub fn check_response(data: &[u8]) {
    let mut input = Input::new(data);
    let limits = limits(&mut input);
    let key = generate_key([input.byte(); 16]);
    let offered: Vec<String> = ["chat", "superchat", "v2.json"][..usize::from(input.byte() % 4)]
        .iter()
        .map(|p| (*p).to_owned())
        .collect();
    let buf = input.rest();
    let Ok(Some((response, len))) = parse_response(buf, limits) else {
        return;
    };
    assert!(len <= buf.len() && len <= limits.max_head_len);

    let mut out = Vec::new();
    write_response(&response, b"", &mut out);
    let (again, _) = parse_response(
        &out,
        HandshakeLimits {
            max_head_len: usize::MAX,
            max_headers: limits.max_headers + 1,
        },
    )
    .expect("a response we parsed is written out parseable")
    .expect("and complete");
    assert_eq!(again.status(), response.status());
    assert_eq!(
        without_length(again.headers()),
        without_length(response.headers())
    );

    let Ok(accepted) = validate_response(&response, &key, &offered, &["permessage-deflate"]) else {
        return;
    };
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    if let Some(p) = &accepted.protocol {
        assert!(offered.contains(p), "{p} was not offered");
    }
    for e in &accepted.extensions {
        assert!(e.name.eq_ignore_ascii_case("permessage-deflate"));
    }
    if let Ok(Some(params)) = DeflateConfig::default().confirm(&accepted.extensions) {
        for bits in [params.client_max_window_bits, params.server_max_window_bits] {
            assert!((8..=15).contains(&bits), "window bits {bits}");
        }
        frameway_wire::deflate::Deflate::new(Role::Client, params, &DeflateConfig::default());
    }
}

/// `write_response` adds a Content-Length to every non-101 answer.
fn without_length(headers: &HeaderMap) -> HeaderMap {
    let mut headers = headers.clone();
    headers.remove(http::header::CONTENT_LENGTH);
    headers
}
