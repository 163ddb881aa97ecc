//! The opening handshake (RFC 6455 §4): parsing and validating the client's
//! request and the server's response, on bytes, without IO.
//!
//! The server side answers every bad request with the right HTTP status
//! ([`RequestError::status`]); the client side reports exactly what was wrong
//! with a response ([`ResponseError`]).

mod client;
mod headers;
mod key;
mod server;

pub use client::{
    parse_response, validate_response, write_request, Accepted, ClientRequest, ResponseError,
};
pub use headers::{has_token, parse_extensions, split_tokens, ExtensionOffer};
pub use key::{accept_key, generate_key, is_valid_key};
pub use server::{
    accept_response, parse_request, rejection_response, validate_request, write_accept,
    write_response, ClientOffer, RequestError,
};

/// Limits on the size of a handshake, so a peer cannot make us buffer an
/// unbounded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// The most bytes of request or response head (up to the blank line).
    pub max_head_len: usize,
    /// The most header fields.
    pub max_headers: usize,
}

/// 100 header fields and 32 KiB: a request that has crossed two or three
/// proxies, each adding its forwarding and tracing headers, still fits.
impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            max_head_len: 32 * 1024,
            max_headers: 100,
        }
    }
}

/// Header slots kept on the stack: the default [`HandshakeLimits::max_headers`].
const STACK_HEADERS: usize = 100;

/// Room for `max` parsed header fields: `stack` up to [`STACK_HEADERS`],
/// `heap` beyond. A proxied connection parses two heads; taking 3 KiB from
/// the heap for each showed in a reconnect storm's profile.
fn header_slots<'a, 'b>(
    stack: &'a mut [httparse::Header<'b>; STACK_HEADERS],
    heap: &'a mut Vec<httparse::Header<'b>>,
    max: usize,
) -> &'a mut [httparse::Header<'b>] {
    match stack.get_mut(..max) {
        Some(slots) => slots,
        None => {
            heap.resize(max, httparse::EMPTY_HEADER);
            heap
        }
    }
}

/// The `Sec-WebSocket-Version` we speak.
pub const VERSION: &str = "13";
