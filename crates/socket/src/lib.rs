//! # frameway
//!
//! An async WebSocket server and client for tokio, built on the sans-IO
//! [`frameway_wire`] core: RFC 6455 to the letter, no copies or allocations
//! per frame on the hot path, and no buffers held by idle connections.
//!
//! - [`accept`] / [`server::accept_with`]: the server side, over any stream;
//!   [`server::upgrade_response`] to upgrade a request hyper or axum parsed.
//! - [`connect`] / [`client::connect_with`]: the client, with TLS (rustls),
//!   subprotocols, custom headers, an HTTP CONNECT proxy, timeouts and
//!   connection pools.
//! - [`WebSocket`]: frames (`recv_frame`, `send_frame`, `send_text`, …) and
//!   messages (a `Stream` + `Sink` of [`Message`]), split into halves,
//!   with keep-alive pings and typed JSON messages.
//! - permessage-deflate (RFC 7692), off unless
//!   [`WebSocketConfig::deflate`] asks for it: negotiated by both sides,
//!   inflation bounded by the receive limit.
//!
//! ```no_run
//! # async fn demo() -> frameway::Result<()> {
//! let (mut ws, response) = frameway::connect("ws://127.0.0.1:9001/chat").await?;
//! println!("upgraded with status {}", response.status());
//! ws.send_text("hello").await?;
//! if let Some(reply) = ws.recv().await {
//!     println!("got {:?}", reply?);
//! }
//! ws.close(frameway::CloseCode::NORMAL, "bye").await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod client;
mod config;
mod connection;
mod error;
mod json;
mod random;
mod read;
pub mod server;
mod split;
pub mod sync;

pub use client::connect;
pub use config::WebSocketConfig;
pub use connection::{Relayed, WebSocket};
pub use error::{Error, RefusedUpgrade, Result, TimeoutKind};
pub use frameway_wire::deflate::{DeflateConfig, DeflateParams};
pub use frameway_wire::{
    CloseCode, CloseFrame, Failure, Frame, Limits, MaskPolicy, Message, Mode, OpCode, Passed,
    ProtocolError, Role, State, Utf8Bytes,
};
pub use server::accept;
pub use split::{ReadHalf, WriteHalf};

/// The protocol core, for raw frame work (lua-resty-websocket's
/// `resty.websocket.protocol`).
pub use frameway_wire as wire;

/// README.md's Rust examples, compiled with the doc tests (and its other
/// code blocks skipped by their language tags), so that the README cannot
/// drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;
