//! `websocket-connection-limit`: at most `limit` open connections per
//! consumer, credential, IP address, route, service or header value;
//! a handshake over the limit is answered `429 Too Many Requests` with
//! `Retry-After`.
//!
//! ```toml
//! [[plugins]]
//! name = "websocket-connection-limit"
//! config = { limit = 5, limit_by = "consumer" }
//! ```
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `limit` | (required) | open connections allowed per key |
//! | `limit_by` | `"consumer"` | `consumer`, `credential`, `ip`, `service`, `route` or `header` |
//! | `header_name` | none | the request header whose value is the key, with `limit_by = "header"` |
//! | `policy` | `"local"` | where counts live: `local`, this process (all its workers) |
//! | `retry_after` | `5` | seconds, the `Retry-After` of a refusal |
//!
//! A connection holds its place from its handshake until it ends, however
//! it ends (closed, failed, or refused later in the handshake). As in
//! Kong, a consumer, credential or header that is not there counts by the
//! IP address; put the plugin after authentication (its priority, 915, is
//! below key-auth's).

use std::sync::Arc;

use http::header::{HeaderValue, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::limits::{Lease, LimitBy, LocalLeases, Policy};
use crate::plugin::{HandshakeContext, Plugin, PluginConfigError, PluginError, State};

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionLimitConfig {
    /// Open connections allowed per key.
    pub limit: u64,
    /// Whose connections count together.
    #[serde(default = "default_limit_by")]
    pub limit_by: LimitBy,
    /// The header whose value is the key (`limit_by = "header"`).
    pub header_name: Option<String>,
    /// Where the counts live.
    #[serde(default)]
    pub policy: Policy,
    /// Seconds, the `Retry-After` of a refusal.
    #[serde(default = "default_retry_after")]
    pub retry_after: u64,
}

fn default_limit_by() -> LimitBy {
    LimitBy::Consumer
}

fn default_retry_after() -> u64 {
    5
}

/// Counts open connections per key and refuses those over the limit.
#[derive(Debug)]
pub struct ConnectionLimit {
    limit: u64,
    limit_by: LimitBy,
    header_name: Option<String>,
    retry_after: HeaderValue,
    leases: Arc<LocalLeases>,
}

const TOO_MANY: &str = "Too many open connections";

impl ConnectionLimit {
    /// The name in the configuration.
    pub const NAME: &'static str = "websocket-connection-limit";

    /// Checks the limit (at least 1), the key and the policy.
    pub fn new(config: ConnectionLimitConfig) -> Result<Self, PluginConfigError> {
        let err = |m: &str| Err(PluginConfigError(m.to_owned()));
        if config.limit == 0 {
            return err("limit must be at least 1 connection");
        }
        if config.limit_by == LimitBy::Connection {
            return err("limit_by = \"connection\" counts nothing: use consumer, credential, ip, service, route or header");
        }
        config
            .limit_by
            .check(config.header_name.as_deref())
            .and_then(|()| config.policy.check())?;
        Ok(ConnectionLimit {
            limit: config.limit,
            limit_by: config.limit_by,
            header_name: config.header_name,
            retry_after: HeaderValue::from(config.retry_after),
            leases: Arc::default(),
        })
    }
}

/// A connection's place, given back when its state is dropped.
struct Held {
    _lease: Option<Lease>,
}

impl Plugin for ConnectionLimit {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn priority(&self) -> i32 {
        // After authentication (key-auth 1250) and ip-restriction, before
        // the message rate limit (910).
        915
    }

    fn handles_frames(&self) -> bool {
        false
    }

    fn new_state(&self) -> Option<State> {
        Some(Box::new(Held { _lease: None }))
    }

    fn handshake(&self, ctx: &mut HandshakeContext<'_>) -> Result<(), PluginError> {
        let Some(key) = self.limit_by.key(ctx, self.header_name.as_deref()) else {
            return Ok(());
        };
        match LocalLeases::acquire(&self.leases, &key, self.limit) {
            Some(lease) => {
                if let Some(held) = ctx.state::<Held>() {
                    held._lease = Some(lease);
                }
            }
            None => {
                tracing::debug!(connection = ctx.connection().id, %key, "connection limit reached");
                let mut headers = HeaderMap::new();
                headers.insert(RETRY_AFTER, self.retry_after.clone());
                super::exit_json(ctx, StatusCode::TOO_MANY_REQUESTS, TOO_MANY, headers);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::HandshakeHarness;
    use serde_json::json;

    fn plugin(config: serde_json::Value) -> Result<ConnectionLimit, String> {
        let config: ConnectionLimitConfig =
            serde_json::from_value(config).map_err(|e| e.to_string())?;
        ConnectionLimit::new(config).map_err(|e| e.0)
    }

    #[test]
    fn config_errors() {
        assert!(plugin(json!({})).unwrap_err().contains("limit"));
        assert!(plugin(json!({ "limit": 0 }))
            .unwrap_err()
            .contains("at least 1"));
        assert!(plugin(json!({ "limit": 1, "limit_by": "connection" }))
            .unwrap_err()
            .contains("counts nothing"));
        assert!(plugin(json!({ "limit": 1, "limit_by": "header" }))
            .unwrap_err()
            .contains("header_name"));
        assert!(plugin(json!({ "limit": 1, "policy": "redis" }))
            .unwrap_err()
            .contains("not available"));
        let p = plugin(json!({ "limit": 2 })).unwrap();
        assert_eq!((p.limit_by, p.priority()), (LimitBy::Consumer, 915));
        assert!(!p.handles_frames());
    }

    #[test]
    fn places_are_held_until_the_connection_state_is_dropped() {
        let p = plugin(json!({ "limit": 2, "limit_by": "ip", "retry_after": 7 })).unwrap();
        let handshake = || {
            let mut h = HandshakeHarness::new("/", &[]);
            h.run(&p);
            h
        };
        let first = handshake();
        let second = handshake();
        assert!(first.exit.is_none() && second.exit.is_none());
        let third = handshake();
        let exit = third.exit.as_ref().expect("refused");
        assert_eq!(exit.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(exit.headers[RETRY_AFTER], "7");
        let body: serde_json::Value = serde_json::from_slice(&exit.body).unwrap();
        assert_eq!(body["message"], TOO_MANY);
        // Another address has its own places.
        let mut other = HandshakeHarness::new("/", &[]).client_addr("10.0.0.2:1");
        other.run(&p);
        assert!(other.exit.is_none());
        drop(first);
        assert!(handshake().exit.is_none());
    }
}
