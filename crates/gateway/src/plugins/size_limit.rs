//! `websocket-size-limit`: per-route payload limits for each direction.

use serde::Deserialize;

use crate::config::MAX_PAYLOAD_CEILING;
use crate::plugin::{Direction, HandshakeContext, Plugin, PluginConfigError, PluginError};

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeLimitConfig {
    /// Largest client message in bytes.
    pub client_max_payload: Option<u64>,
    /// Largest upstream message in bytes.
    pub upstream_max_payload: Option<u64>,
}

/// Sets the payload limits of a connection in the handshake phase, so the
/// route stays on the fast path: an oversize message is refused from its
/// frame header with 1009 to the sender and 1001 to the other side.
///
/// ```toml
/// [[services.plugins]]
/// name = "websocket-size-limit"
/// config = { client_max_payload = 1024, upstream_max_payload = 65536 }
/// ```
#[derive(Debug)]
pub struct SizeLimit {
    config: SizeLimitConfig,
}

impl SizeLimit {
    /// The name in the configuration.
    pub const NAME: &'static str = "websocket-size-limit";

    /// Checks the limits (1 byte to 32 MiB).
    pub fn new(config: SizeLimitConfig) -> Result<Self, PluginConfigError> {
        for (key, value) in [
            ("client_max_payload", config.client_max_payload),
            ("upstream_max_payload", config.upstream_max_payload),
        ] {
            if let Some(v) = value {
                if v == 0 || v > MAX_PAYLOAD_CEILING {
                    return Err(PluginConfigError(format!(
                        "{key} must be between 1 and {MAX_PAYLOAD_CEILING}"
                    )));
                }
            }
        }
        Ok(SizeLimit { config })
    }
}

impl Plugin for SizeLimit {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn priority(&self) -> i32 {
        // Kong's websocket-size-limit priority.
        999_999
    }

    /// Handshake only: its routes stay on the fast path.
    fn handles_frames(&self) -> bool {
        false
    }

    fn handshake(&self, ctx: &mut HandshakeContext<'_>) -> Result<(), PluginError> {
        if let Some(limit) = self.config.client_max_payload {
            ctx.set_max_message_len(Direction::Client, limit);
        }
        if let Some(limit) = self.config.upstream_max_payload {
            ctx.set_max_message_len(Direction::Upstream, limit);
        }
        Ok(())
    }
}
