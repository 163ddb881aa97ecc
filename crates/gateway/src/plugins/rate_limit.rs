//! `websocket-rate-limit`: a ceiling on the messages each connection may
//! send in each direction per time window.
//!
//! ```toml
//! [[services.plugins]]
//! name = "websocket-rate-limit"
//! config = { client_limit = 100, upstream_limit = 1000, window = 1, action = "close" }
//! ```
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `client_limit` | none | messages the client may send per window |
//! | `upstream_limit` | none | messages the upstream may send per window |
//! | `window` | `1` | the window in seconds (fractions allowed, at least 0.001) |
//! | `action` | `"close"` | `"close"`: 1008 `Rate limit exceeded` to the sender and 1001 to the other side; `"drop"`: messages over the limit are dropped |
//!
//! At least one limit is required. Text and binary messages count (a
//! fragmented message counts once); pings, pongs and close frames never
//! count and are never limited. Each connection and direction has its own
//! fixed window: it opens with the first message counted and closes
//! `window` seconds later; the next message after that opens a new one. So
//! a client may send `client_limit` messages in any one window, and at
//! most twice that across the boundary of two.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::FrameAction;
use crate::plugin::{
    Direction, FrameContext, FrameType, Plugin, PluginConfigError, PluginError, State,
};

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Messages from the client per window.
    pub client_limit: Option<u64>,
    /// Messages from the upstream per window.
    pub upstream_limit: Option<u64>,
    /// The window, in seconds.
    #[serde(default = "default_window")]
    pub window: f64,
    /// What happens to a message over the limit.
    #[serde(default)]
    pub action: FrameAction,
}

fn default_window() -> f64 {
    1.0
}

/// Limits the message rate of each connection, per direction.
#[derive(Debug)]
pub struct RateLimit {
    client_limit: Option<u64>,
    upstream_limit: Option<u64>,
    window: Duration,
    action: FrameAction,
}

/// One direction's window.
#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    count: u64,
}

impl Window {
    /// Counts a message at `now`; false when it is over `limit`.
    fn admit(&mut self, now: Instant, limit: u64, length: Duration) -> bool {
        match self.start {
            Some(start) if now.saturating_duration_since(start) < length => {}
            _ => {
                self.start = Some(now);
                self.count = 0;
            }
        }
        if self.count >= limit {
            return false;
        }
        self.count += 1;
        true
    }
}

/// A connection's windows (its per-connection state).
#[derive(Debug, Default)]
struct Windows {
    client: Window,
    upstream: Window,
}

/// Kong's wording for its rate limits.
const EXCEEDED: &str = "Rate limit exceeded";

impl RateLimit {
    /// The name in the configuration.
    pub const NAME: &'static str = "websocket-rate-limit";

    /// Checks the limits (at least one, each at least 1) and the window.
    pub fn new(config: RateLimitConfig) -> Result<Self, PluginConfigError> {
        let err = |m: &str| Err(PluginConfigError(m.to_owned()));
        if config.client_limit.is_none() && config.upstream_limit.is_none() {
            return err("set client_limit, upstream_limit or both");
        }
        if config.client_limit == Some(0) || config.upstream_limit == Some(0) {
            return err("limits must be at least 1 message per window");
        }
        let window = match Duration::try_from_secs_f64(config.window) {
            Ok(w) if w >= Duration::from_millis(1) => w,
            _ => return err("window must be a number of seconds, at least 0.001"),
        };
        Ok(RateLimit {
            client_limit: config.client_limit,
            upstream_limit: config.upstream_limit,
            window,
            action: config.action,
        })
    }

    fn count(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        let (_, kind, _) = ctx.get_frame();
        if !matches!(kind, FrameType::Text | FrameType::Binary) {
            return Ok(());
        }
        let direction = ctx.direction();
        let limit = match direction {
            Direction::Client => self.client_limit,
            Direction::Upstream => self.upstream_limit,
        };
        let Some(limit) = limit else {
            return Ok(());
        };
        let windows = ctx
            .state::<Windows>()
            .ok_or_else(|| PluginError::new("rate-limit state missing"))?;
        let window = match direction {
            Direction::Client => &mut windows.client,
            Direction::Upstream => &mut windows.upstream,
        };
        if window.admit(Instant::now(), limit, self.window) {
            return Ok(());
        }
        tracing::debug!(
            connection = ctx.connection().id,
            direction = direction.as_str(),
            action = ?self.action,
            "rate limit exceeded"
        );
        match self.action {
            FrameAction::Close => ctx.close(Some(1008), Some(EXCEEDED), Some(1001), None)?,
            FrameAction::Drop => ctx.drop_frame()?,
        }
        Ok(())
    }
}

impl Plugin for RateLimit {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn priority(&self) -> i32 {
        // Kong's rate-limiting priority: after authentication and
        // validation, so refused messages do not use up the allowance.
        910
    }

    fn handles_frames(&self) -> bool {
        true
    }

    fn new_state(&self) -> Option<State> {
        Some(Box::new(Windows::default()))
    }

    fn client_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        self.count(ctx)
    }

    fn upstream_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        self.count(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{PlannedClose, Verdict};
    use std::sync::Arc;

    use crate::plugins::testing::FrameHarness;
    use frameway_wire::CloseCode;
    use serde_json::json;

    fn plugin(config: serde_json::Value) -> Result<RateLimit, String> {
        let config: RateLimitConfig = serde_json::from_value(config).map_err(|e| e.to_string())?;
        RateLimit::new(config).map_err(|e| e.0)
    }

    #[test]
    fn config_errors() {
        assert!(plugin(json!({}))
            .unwrap_err()
            .contains("client_limit, upstream_limit"));
        assert!(plugin(json!({ "client_limit": 0 }))
            .unwrap_err()
            .contains("at least 1"));
        assert!(plugin(json!({ "upstream_limit": -1 })).is_err());
        assert!(plugin(json!({ "client_limit": 1, "window": 0 }))
            .unwrap_err()
            .contains("window"));
        assert!(plugin(json!({ "client_limit": 1, "window": -2 }))
            .unwrap_err()
            .contains("window"));
        assert!(plugin(json!({ "client_limit": 1, "window": 1e300 }))
            .unwrap_err()
            .contains("window"));
        assert!(plugin(json!({ "client_limit": 1, "action": "slow" }))
            .unwrap_err()
            .contains("unknown variant"));
        assert!(plugin(json!({ "client_limit": 1, "burst": 2 }))
            .unwrap_err()
            .contains("unknown field"));
        let p = plugin(json!({ "upstream_limit": 5, "window": 0.25 })).unwrap();
        assert_eq!(p.window, Duration::from_millis(250));
        assert_eq!(p.action, FrameAction::Close);
        assert_eq!(p.priority(), 910);
        let p = plugin(json!({ "client_limit": 5 })).unwrap();
        assert_eq!(p.window, Duration::from_secs(1));
    }

    #[test]
    fn windows_count_and_reset() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut w = Window::default();
        assert!(w.admit(t0, 2, second));
        assert!(w.admit(t0 + Duration::from_millis(10), 2, second));
        assert!(!w.admit(t0 + Duration::from_millis(20), 2, second));
        assert!(!w.admit(t0 + Duration::from_millis(999), 2, second));
        // The window ends a second after its first message.
        assert!(w.admit(t0 + second, 2, second));
        assert!(w.admit(t0 + second, 2, second));
        assert!(!w.admit(t0 + Duration::from_millis(1500), 2, second));
        assert!(w.admit(t0 + Duration::from_secs(5), 2, second));
    }

    #[test]
    fn close_mode_closes_with_1008() {
        let p = plugin(json!({ "client_limit": 2, "window": 60 })).unwrap();
        let p = Arc::new(p);
        let mut h = FrameHarness::new(p.clone());
        let text = FrameType::Text;
        assert_eq!(
            h.frame(Direction::Client, text, "1").unwrap(),
            Verdict::Forward
        );
        assert_eq!(
            h.frame(Direction::Client, FrameType::Binary, "2").unwrap(),
            Verdict::Forward
        );
        // Control frames and the unlimited direction are not counted.
        for kind in [FrameType::Ping, FrameType::Pong, FrameType::Close] {
            assert_eq!(
                h.frame(Direction::Client, kind, "").unwrap(),
                Verdict::Forward
            );
        }
        for _ in 0..10 {
            assert_eq!(
                h.frame(Direction::Upstream, text, "u").unwrap(),
                Verdict::Forward
            );
        }
        assert_eq!(
            h.frame(Direction::Client, text, "3").unwrap(),
            Verdict::Close {
                sender: PlannedClose {
                    status: CloseCode::new(1008).unwrap(),
                    message: EXCEEDED.into(),
                },
                peer: PlannedClose {
                    status: CloseCode::new(1001).unwrap(),
                    message: String::new(),
                },
            }
        );
    }

    #[test]
    fn drop_mode_drops_extras_per_direction() {
        let p = plugin(
            json!({ "client_limit": 1, "upstream_limit": 2, "window": 60, "action": "drop" }),
        )
        .unwrap();
        let p = Arc::new(p);
        let mut h = FrameHarness::new(p.clone());
        let text = FrameType::Text;
        assert_eq!(
            h.frame(Direction::Client, text, "").unwrap(),
            Verdict::Forward
        );
        assert_eq!(h.frame(Direction::Client, text, "").unwrap(), Verdict::Drop);
        assert_eq!(
            h.frame(Direction::Upstream, text, "").unwrap(),
            Verdict::Forward
        );
        assert_eq!(
            h.frame(Direction::Upstream, text, "").unwrap(),
            Verdict::Forward
        );
        assert_eq!(
            h.frame(Direction::Upstream, text, "").unwrap(),
            Verdict::Drop
        );
        assert_eq!(
            h.frame(Direction::Client, FrameType::Ping, "").unwrap(),
            Verdict::Forward
        );
        // Another connection has its own windows.
        let mut other = FrameHarness::new(p.clone());
        assert_eq!(
            other.frame(Direction::Client, text, "").unwrap(),
            Verdict::Forward
        );
    }
}
