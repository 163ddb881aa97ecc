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
//! | `policy` | `"local"` | where counts live: `local`, this process (all its workers); `redis`, every gateway sharing the Redis of `redis` |
//! | `redis` | none | with `policy = "redis"`: `{ host, port, username, password, database, timeout, ssl }` (Kong's names; `timeout` in milliseconds, default 2000) |
//! | `lease` | `30` | with `policy = "redis"`: seconds a gateway's connections stay counted after it stops renewing them (it dies) |
//! | `namespace` | derived from the limit | with `policy = "redis"`: the prefix of the keys in Redis |
//! | `fault_tolerant` | `true` | with `policy = "redis"`, while Redis does not answer: `true` counts on each gateway alone, `false` refuses every handshake |
//! | `retry_after` | `5` | seconds, the `Retry-After` of a refusal |
//!
//! A connection holds its place from its handshake until it ends, however
//! it ends (closed, failed, or refused later in the handshake). As in
//! Kong, a consumer, credential or header that is not there counts by the
//! IP address; put the plugin after authentication (its priority, 915, is
//! below key-auth's).
//!
//! With `policy = "redis"` a handshake asks Redis (one round trip, atomic)
//! whether the cluster is under the limit, so the limit holds exactly
//! across gateways; a connection's end is reported at once, and a dead
//! gateway's connections are released when its `lease` runs out.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::limits::{namespace, Lease, LeaseSync, LimitBy, LocalLeases, Policy, RedisConfig};
use crate::plugin::{HandshakeContext, Plugin, PluginConfigError, PluginError, Resume, State};

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
    /// The Redis of `policy = "redis"`.
    pub redis: Option<RedisConfig>,
    /// Seconds a dead gateway's connections stay counted.
    #[serde(default = "default_lease")]
    pub lease: f64,
    /// The prefix of the keys in Redis.
    pub namespace: Option<String>,
    /// Whether to go on counting locally while Redis does not answer.
    #[serde(default = "default_fault_tolerant")]
    pub fault_tolerant: bool,
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

fn default_lease() -> f64 {
    30.0
}

fn default_fault_tolerant() -> bool {
    true
}

/// Counts open connections per key and refuses those over the limit.
#[derive(Debug)]
pub struct ConnectionLimit {
    limit: u64,
    limit_by: LimitBy,
    header_name: Option<String>,
    retry_after: HeaderValue,
    leases: Arc<LocalLeases>,
    /// With `policy = "redis"`.
    cluster: Option<Arc<LeaseSync>>,
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
        config.limit_by.check(config.header_name.as_deref())?;
        let store = config.policy.store(
            Self::NAME,
            config.redis.as_ref(),
            config.fault_tolerant,
            config.limit_by,
        )?;
        let cluster = match store {
            None => None,
            Some(store) => {
                let lease = match Duration::try_from_secs_f64(config.lease) {
                    Ok(lease) if lease >= Duration::from_millis(300) => lease,
                    _ => return err("lease must be a number of seconds, at least 0.3"),
                };
                let defining =
                    format!("{:?}", (config.limit, config.limit_by, &config.header_name));
                let namespace = namespace(Self::NAME, config.namespace, &defining);
                Some(Arc::new(LeaseSync::new(store, namespace, lease)))
            }
        };
        let leases = match cluster {
            Some(_) => LocalLeases::reporting(),
            None => LocalLeases::default(),
        };
        Ok(ConnectionLimit {
            limit: config.limit,
            limit_by: config.limit_by,
            header_name: config.header_name,
            retry_after: HeaderValue::from(config.retry_after),
            leases: Arc::new(leases),
            cluster,
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
        let Some(cluster) = &self.cluster else {
            let lease = LocalLeases::acquire(&self.leases, &key, self.limit);
            self.refusal().hold_or_refuse(ctx, &key, lease);
            return Ok(());
        };
        cluster.start(&self.leases);
        let (cluster, leases, limit) = (cluster.clone(), self.leases.clone(), self.limit);
        let refusal = self.refusal();
        ctx.wait(async move {
            // Counted here first: a report racing the answer then errs on
            // the side of one connection too many, never one too few.
            let tentative = LocalLeases::take(&leases, &key);
            let answer = cluster.acquire(&key, limit).await;
            Box::new(move |ctx: &mut HandshakeContext<'_>| {
                let lease = match answer {
                    Some(true) => Some(tentative),
                    Some(false) => None,
                    // Redis did not answer: this gateway's own count.
                    None if cluster.store().fault_tolerant() => {
                        drop(tentative);
                        LocalLeases::acquire(&leases, &key, limit)
                    }
                    None => None,
                };
                refusal.hold_or_refuse(ctx, &key, lease);
                Ok(())
            }) as Resume
        });
        Ok(())
    }
}

impl ConnectionLimit {
    fn refusal(&self) -> Refusal {
        Refusal {
            retry_after: self.retry_after.clone(),
        }
    }
}

/// What a refusal answers.
struct Refusal {
    retry_after: HeaderValue,
}

impl Refusal {
    /// Keeps `lease` in the connection's state, or answers 429 without one.
    fn hold_or_refuse(&self, ctx: &mut HandshakeContext<'_>, key: &str, lease: Option<Lease>) {
        match lease {
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
            .contains("needs a redis"));
        let redis = json!({ "host": "127.0.0.1" });
        assert!(plugin(json!({ "limit": 1, "policy": "redis", "redis": redis })).is_ok());
        assert!(
            plugin(json!({ "limit": 1, "policy": "redis", "redis": redis, "lease": 0.1 }))
                .unwrap_err()
                .contains("lease must be")
        );
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
