//! permessage-deflate (RFC 7692): negotiation on both sides and
//! per-message compression, sans IO.
//!
//! - [`DeflateConfig`]: our settings; [`DeflateConfig::offer`] is a
//!   client's offer, [`DeflateConfig::accept`] a server's choice among
//!   offers, [`DeflateConfig::confirm`] a client's check of the answer.
//! - [`DeflateParams`]: what both ends agreed on.
//! - [`Deflate`]: one connection's compressor and inflater. Hand it to
//!   [`Protocol::set_deflate`](crate::Protocol::set_deflate), which then
//!   inflates what arrives and compresses what is sent, frame by frame.
//!
//! # Implementation
//!
//! Compression is [zlib-rs] used directly, with only its `std` feature (it
//! then allocates through Rust's global allocator, so a counting allocator
//! sees a connection's whole deflate state). zlib-rs is the zlib port that
//! flate2's `zlib-rs` backend itself wraps, maintained by the Trifecta Tech
//! Foundation, fuzzed and checked against zlib; it has no dependencies of
//! its own. flate2 was not enough on top of it: its `Compress`/`Decompress`
//! panic on 8-bit windows and hide `memLevel` and the strategy, and those
//! three are what keeps per-connection memory small and what makes an 8-bit
//! window strictly correct (see [`Deflate::new`]).
//!
//! # Window bits 8
//!
//! zlib (and zlib-rs) cannot compress raw deflate with a 256-byte window:
//! asked for 8 bits it uses 9, and its back-references up to 512 bytes are
//! rejected by an inflater that took the RFC at its word. So when a peer
//! asks our compressor for an 8-bit window we accept, and compress with
//! zlib's run-length strategy, whose only back-references are one byte
//! long, valid in any window. Inflating, we always use at least 9 bits, so
//! that zlib-based peers that were granted 8 bits still get through.
//!
//! [zlib-rs]: https://crates.io/crates/zlib-rs

mod codec;
mod params;

pub use codec::{Deflate, INFLATE_CHUNK};
pub use params::{
    DeflateConfig, DeflateParams, NegotiationError, MAX_WINDOW_BITS, MIN_WINDOW_BITS,
    PERMESSAGE_DEFLATE,
};
