//! The library's error type: one variant per kind of failure a caller may
//! want to handle differently.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

pub use frameway_wire::handshake::{RequestError, ResponseError};
pub use frameway_wire::ProtocolError;

/// Which timeout expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Opening the TCP connection (or waiting in a pool's backlog).
    Connect,
    /// The opening handshake (TLS and HTTP).
    Handshake,
    /// Waiting for a frame.
    Read,
    /// Writing a frame.
    Write,
    /// Waiting for the peer's close frame.
    Close,
}

/// Everything that can go wrong on a WebSocket connection.
///
/// ```
/// use frameway::Error;
/// fn describe(err: &Error) -> &'static str {
///     match err {
///         Error::UpgradeRefused(refused) if refused.status == 401 => "log in first",
///         Error::UpgradeRefused(_) => "the server said no",
///         Error::Timeout(..) => "too slow",
///         Error::Protocol(_) => "the peer broke the protocol",
///         _ => "something else",
///     }
/// }
/// # let _ = describe;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer violated RFC 6455 or a limit; the matching close frame was sent.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A client's opening request was invalid; the HTTP error was sent.
    #[error("bad handshake request: {0}")]
    BadRequest(#[from] RequestError),
    /// The server's answer was not a valid upgrade.
    #[error("bad handshake response: {0}")]
    BadResponse(#[from] ResponseError),
    /// The server answered the upgrade with a status other than 101
    /// (Ktor's `WebSocketException` for a refused upgrade).
    #[error("upgrade refused with HTTP {}", .0.status)]
    UpgradeRefused(Box<RefusedUpgrade>),
    /// An application's handshake callback refused the request.
    #[error("upgrade refused by the application with HTTP {0}")]
    Refused(StatusCode),
    /// A timeout expired.
    #[error("{0:?} timeout after {1:?}")]
    Timeout(TimeoutKind, Duration),
    /// No pong arrived within the deadline after a keep-alive ping.
    #[error("no pong within {0:?} of a ping: the connection is dead")]
    PongTimeout(Duration),
    /// TLS failed.
    #[error("TLS error: {0}")]
    Tls(#[from] rustls::Error),
    /// An option given to the library cannot be used (an invalid header,
    /// key, subprotocol or pool size), or the call is not allowed now.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A certificate, key or CA file could not be used.
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// The URL is not a usable `ws://` or `wss://` URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An HTTP proxy refused the CONNECT request.
    #[error("proxy refused CONNECT with HTTP {0}")]
    Proxy(StatusCode),
    /// The connection pool's backlog is full.
    #[error("too many waiting connect operations")]
    PoolBacklogFull,
    /// The connection closed without a complete closing handshake (1006).
    #[error("connection closed abnormally (1006)")]
    AbnormalClose,
    /// The connection is closed; nothing more can be read or sent.
    #[error("connection closed")]
    Closed,
    /// A message could not be (de)serialised as JSON.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// `recv_json` got a message that is not text or binary.
    #[error("expected a data message, got {0}")]
    UnexpectedMessage(&'static str),
}

/// The server's answer to an upgrade it refused.
#[derive(Debug, Clone)]
pub struct RefusedUpgrade {
    /// The status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The response body (up to 64 KiB).
    pub body: Bytes,
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
