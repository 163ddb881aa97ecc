//! What the workspace's integration tests share, as h2's `tests/h2-support`
//! does: a throwaway PKI, the Python `websockets` peers, the byte pattern
//! both sides check, a Redis of its own, and bounded waits so that no test
//! hangs.
//!
//! A dev-dependency of the library, the gateway and the CLI; never
//! published.

use std::future::Future;
use std::time::Duration;

pub mod peers;
pub mod pki;
pub mod redis;

pub use peers::{
    node_client, peer_script, python, python_client, python_server, python_server_logged, PeerLog,
};
pub use pki::{self_signed_pem, self_signed_server_config, TestPki};
pub use redis::RedisServer;

/// No test may take longer than this (a Python peer takes a moment to
/// start).
pub const LIMIT: Duration = Duration::from_secs(30);

/// How long a test waits for one expected event.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs `fut`, failing the test if it takes longer than [`LIMIT`].
pub async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("test timed out")
}

/// Runs `fut` bounded by [`WAIT`], naming what was awaited if it never came.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Byte `i` of the test pattern shared with `tests/peers/ws_client.py`.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
