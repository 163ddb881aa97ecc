//! # frameway-fuzz-checks
//!
//! The body of every fuzz target, as a plain library: each check takes the
//! fuzzer's raw bytes and panics if something that must hold does not. The
//! cargo-fuzz targets in `fuzz/` are one line each around these functions,
//! and `tests/corpus.rs` replays every file of `fuzz/corpus/` through them
//! on stable, in the normal test run, so one body serves both and a crash
//! once found stays a regression test.
//!
//! A crate rather than a module of the crates under test: the checks cross
//! the wire crate and the gateway, and neither should carry fuzzing code.
//!
//! ```
//! // Two reads of a masked "Hi" from a client: the same as one read.
//! let mut input = vec![0, 6, 6, 5, 1, 3];
//! input.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2]);
//! frameway_fuzz_checks::protocol::check(&input);
//! ```

#![deny(missing_docs)]

pub mod config;
pub mod endpoint;
pub mod extensions;
pub mod frame_decoder;
pub mod handshake;
mod input;
mod limits;
pub mod protocol;
pub mod protocol_deflate;
pub mod relay;
pub mod request_target;
pub mod roundtrip;
pub mod router;
pub mod utf8;

pub use input::{Input, Splits};

/// A target's check: the fuzzer's bytes in, a panic if something is wrong.
pub type Check = fn(&[u8]);

/// Every target: its name (a directory of `fuzz/corpus/`, a binary of
/// `fuzz/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("frame_decoder", frame_decoder::check),
    ("protocol", protocol::check),
    ("protocol_deflate", protocol_deflate::check),
    ("relay", relay::check),
    ("utf8", utf8::check),
    ("handshake_request", handshake::check_request),
    ("handshake_response", handshake::check_response),
    ("extensions", extensions::check),
    ("roundtrip", roundtrip::check),
    ("router", router::check),
    ("request_target", request_target::check),
    ("config", config::check),
];
