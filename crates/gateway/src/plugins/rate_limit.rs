//! `websocket-rate-limit`: a ceiling on the messages a connection, a
//! consumer, an IP address (or another key) may send per time window, in
//! each direction.
//!
//! ```toml
//! [[services.plugins]]
//! name = "websocket-rate-limit"
//! config = { client_limit = 100, upstream_limit = 1000, window = 1, action = "close" }
//!
//! # 100 messages a second per consumer, across all its connections
//! [[plugins]]
//! name = "websocket-rate-limit"
//! config = { second = 100, limit_by = "consumer", window_type = "sliding" }
//! ```
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `client_limit` | none | messages the client may send per `window` |
//! | `upstream_limit` | none | messages the upstream may send per `window` |
//! | `window` | `1` | the window of the two above, in seconds (fractions allowed, at least 0.001) |
//! | `second`, `minute`, `hour` | none | messages the client may send per second, minute, hour (Kong's names; each given one holds) |
//! | `limit_by` | `"connection"` | whose messages count together: `connection`, `consumer`, `credential`, `ip`, `service`, `route` or `header` |
//! | `header_name` | none | the request header whose value is the key, with `limit_by = "header"` |
//! | `window_type` | `"fixed"` | `fixed`, or `sliding`: `previous × (window − elapsed) / window + current` |
//! | `policy` | `"local"` | where counts live: `local`, this process (all its workers); `redis`, every gateway sharing the Redis of `redis` |
//! | `redis` | none | with `policy = "redis"`: `{ host, port, username, password, database, timeout, ssl }` (Kong's names; `timeout` in milliseconds, default 2000) |
//! | `sync_rate` | `0.1` | with `policy = "redis"`: seconds between two exchanges of counts with Redis; `0`: every message waits for its count in Redis |
//! | `namespace` | derived from the limits | with `policy = "redis"`: the prefix of the keys in Redis |
//! | `fault_tolerant` | `true` | with `policy = "redis"`, while Redis does not answer: `true` counts on each gateway alone, `false` refuses every message as over the limit |
//! | `action` | `"close"` | `"close"`: `close_code` `Rate limit exceeded` to the sender and 1001 to the other side; `"drop"`: messages over the limit are dropped |
//! | `close_code` | `1008` | 1008 (policy violation) or 1013 (try again later) |
//!
//! At least one limit is required. Text and binary messages count (a
//! fragmented message counts once); pings, pongs and close frames never
//! count and are never limited. Windows are aligned to the clock (see
//! [`crate::limits`]): a fixed window lets `limit` through in any one
//! window, so up to twice that across the edge of two; a sliding one does
//! not. A connection whose consumer, credential or header is unknown is
//! counted by its IP address, as Kong does. Local counts start afresh
//! when the configuration is reloaded; Redis's do not.
//!
//! With `policy = "redis"` and `sync_rate > 0` no message waits for
//! Redis: each gateway counts locally and exchanges its counts every
//! `sync_rate` (see [`crate::limits`]), so across N gateways a key's count
//! can pass the limit by what the other gateways admitted for it within
//! one `sync_rate`. With `sync_rate = 0` each message waits for its count
//! in Redis (exact; the connection relays nothing else meanwhile).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::FrameAction;
use crate::limits::{
    namespace, now_ms, CounterSync, LimitBy, LocalCounters, Policy, RedisConfig, Slot, WindowType,
};
use crate::plugin::{
    Direction, FrameContext, FrameResume, FrameType, HandshakeContext, Plugin, PluginConfigError,
    PluginError, State,
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
    /// Messages from the client per second.
    pub second: Option<u64>,
    /// Messages from the client per minute.
    pub minute: Option<u64>,
    /// Messages from the client per hour.
    pub hour: Option<u64>,
    /// Whose messages count together (default `connection`).
    #[serde(default)]
    pub limit_by: LimitBy,
    /// The header whose value is the key (`limit_by = "header"`).
    pub header_name: Option<String>,
    /// Fixed or sliding windows.
    #[serde(default)]
    pub window_type: WindowType,
    /// Where the counts live.
    #[serde(default)]
    pub policy: Policy,
    /// The Redis of `policy = "redis"`.
    pub redis: Option<RedisConfig>,
    /// Seconds between two exchanges of counts with Redis.
    #[serde(default = "default_sync_rate")]
    pub sync_rate: f64,
    /// The prefix of the keys in Redis.
    pub namespace: Option<String>,
    /// Whether to go on counting locally while Redis does not answer.
    #[serde(default = "default_fault_tolerant")]
    pub fault_tolerant: bool,
    /// What happens to a message over the limit.
    #[serde(default)]
    pub action: FrameAction,
    /// The close code of `action = "close"`.
    #[serde(default = "default_close_code")]
    pub close_code: u16,
}

fn default_window() -> f64 {
    1.0
}

fn default_close_code() -> u16 {
    1008
}

fn default_sync_rate() -> f64 {
    0.1
}

fn default_fault_tolerant() -> bool {
    true
}

/// One limit: messages from one side per window.
#[derive(Debug)]
struct Rule {
    direction: Direction,
    limit: u64,
    /// Shared counts (every key but `connection`), under a tag that
    /// names the rule in Redis.
    counters: Arc<LocalCounters>,
    tag: String,
}

/// Limits the message rate per connection, consumer or other key, per
/// direction.
#[derive(Debug)]
pub struct RateLimit {
    rules: Vec<Rule>,
    limit_by: LimitBy,
    header_name: Option<String>,
    window_type: WindowType,
    action: FrameAction,
    close_code: u16,
    /// With `policy = "redis"`.
    cluster: Option<Arc<CounterSync>>,
}

/// A connection's state: its key, and its own windows when it counts
/// alone.
#[derive(Debug, Default)]
struct Counting {
    key: Option<Arc<str>>,
    slots: Vec<Slot>,
}

/// Kong's wording for its rate limits.
const EXCEEDED: &str = "Rate limit exceeded";

impl RateLimit {
    /// The name in the configuration.
    pub const NAME: &'static str = "websocket-rate-limit";

    /// Checks the limits (at least one, each at least 1), the window, the
    /// key and the close code.
    pub fn new(config: RateLimitConfig) -> Result<Self, PluginConfigError> {
        let err = |m: &str| Err(PluginConfigError(m.to_owned()));
        let window = match Duration::try_from_secs_f64(config.window) {
            Ok(w) if w >= Duration::from_millis(1) => w,
            _ => return err("window must be a number of seconds, at least 0.001"),
        };
        let rules: Vec<(Direction, Option<u64>, Duration)> = vec![
            (Direction::Client, config.client_limit, window),
            (Direction::Upstream, config.upstream_limit, window),
            (Direction::Client, config.second, Duration::from_secs(1)),
            (Direction::Client, config.minute, Duration::from_secs(60)),
            (Direction::Client, config.hour, Duration::from_secs(3600)),
        ];
        let rules: Vec<Rule> = rules
            .into_iter()
            .filter_map(|(direction, limit, length)| {
                Some(Rule {
                    direction,
                    limit: limit?,
                    counters: Arc::new(LocalCounters::new(length)),
                    tag: format!("{}:{}", direction.as_str(), length.as_millis()),
                })
            })
            .collect();
        if rules.is_empty() {
            return err("set client_limit, upstream_limit, second, minute or hour");
        }
        if rules.iter().any(|r| r.limit == 0) {
            return err("limits must be at least 1 message per window");
        }
        config.limit_by.check(config.header_name.as_deref())?;
        if !matches!(config.close_code, 1008 | 1013) {
            return err("close_code must be 1008 (policy violation) or 1013 (try again later)");
        }
        let store = config.policy.store(
            Self::NAME,
            config.redis.as_ref(),
            config.fault_tolerant,
            config.limit_by,
        )?;
        let cluster = match store {
            None => None,
            Some(store) => {
                let every = match Duration::try_from_secs_f64(config.sync_rate) {
                    Ok(every) if every >= Duration::from_millis(1) => Some(every),
                    Ok(every) if every.is_zero() => None,
                    _ => return err("sync_rate must be 0 (every message in Redis) or a number of seconds, at least 0.001"),
                };
                let defining = format!(
                    "{:?}",
                    (
                        rules.iter().map(|r| (&r.tag, r.limit)).collect::<Vec<_>>(),
                        config.limit_by,
                        &config.header_name,
                        config.window_type,
                    )
                );
                let namespace = namespace(Self::NAME, config.namespace, &defining);
                let sliding = config.window_type == WindowType::Sliding;
                Some(Arc::new(CounterSync::new(store, namespace, every, sliding)))
            }
        };
        Ok(RateLimit {
            rules,
            limit_by: config.limit_by,
            header_name: config.header_name,
            window_type: config.window_type,
            action: config.action,
            close_code: config.close_code,
            cluster,
        })
    }

    fn count(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        let (_, kind, _) = ctx.get_frame();
        if !matches!(kind, FrameType::Text | FrameType::Binary) {
            return Ok(());
        }
        let direction = ctx.direction();
        let now = now_ms();
        let counting = ctx
            .state::<Counting>()
            .ok_or_else(|| PluginError::new("rate-limit state missing"))?;
        if let (Some(cluster), Some(key)) = (&self.cluster, &counting.key) {
            if cluster.exact() && !cluster.store().refuses() {
                let key = key.clone();
                self.count_in_redis(ctx, cluster.clone(), key);
                return Ok(());
            }
        }
        let mut admitted = true;
        // Without Redis, and not fault-tolerant: nothing is admitted that
        // the cluster cannot count.
        let refused = self.cluster.as_ref().is_some_and(|c| c.store().refuses());
        for (rule, slot) in self.rules.iter().zip(&mut counting.slots) {
            if rule.direction != direction {
                continue;
            }
            admitted &= match &counting.key {
                Some(_) if refused => false,
                Some(key) => rule.counters.admit(key, now, rule.limit, self.window_type),
                None => slot.admit(now, rule.counters.length_ms(), rule.limit, self.window_type),
            };
        }
        if admitted {
            return Ok(());
        }
        self.over_limit().apply(ctx)
    }

    /// `sync_rate = 0`: the message waits for its count in Redis, rule by
    /// rule; if Redis does not answer, a fault-tolerant limit counts it
    /// here.
    fn count_in_redis(&self, ctx: &mut FrameContext<'_>, cluster: Arc<CounterSync>, key: Arc<str>) {
        let direction = ctx.direction();
        let window_type = self.window_type;
        let rules: Vec<_> = self
            .rules
            .iter()
            .filter(|rule| rule.direction == direction)
            .map(|rule| (rule.tag.clone(), rule.limit, rule.counters.clone()))
            .collect();
        let over = self.over_limit();
        ctx.wait(async move {
            let mut admitted = true;
            for (tag, limit, counters) in rules {
                let length = counters.length_ms();
                admitted &= match cluster.admit(&tag, &key, length, limit).await {
                    Some(counted) => counted,
                    None if cluster.store().fault_tolerant() => {
                        counters.admit(&key, now_ms(), limit, window_type)
                    }
                    None => false,
                };
            }
            Box::new(move |ctx: &mut FrameContext<'_>| match admitted {
                true => Ok(()),
                false => over.apply(ctx),
            }) as FrameResume
        });
    }

    fn over_limit(&self) -> OverLimit {
        OverLimit {
            action: self.action,
            close_code: self.close_code,
        }
    }
}

/// What happens to a message over the limit.
#[derive(Debug, Clone, Copy)]
struct OverLimit {
    action: FrameAction,
    close_code: u16,
}

impl OverLimit {
    fn apply(self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        tracing::debug!(
            connection = ctx.connection().id,
            direction = ctx.direction().as_str(),
            action = ?self.action,
            "rate limit exceeded"
        );
        match self.action {
            FrameAction::Close => {
                ctx.close(Some(self.close_code), Some(EXCEEDED), Some(1001), None)?
            }
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
        Some(Box::new(Counting {
            key: None,
            slots: vec![Slot::default(); self.rules.len()],
        }))
    }

    fn handshake(&self, ctx: &mut HandshakeContext<'_>) -> Result<(), PluginError> {
        let key = self.limit_by.key(ctx, self.header_name.as_deref());
        if let Some(cluster) = &self.cluster {
            cluster.start(|| {
                self.rules
                    .iter()
                    .map(|r| (r.tag.clone(), r.counters.clone()))
                    .collect()
            });
        }
        if let Some(counting) = ctx.state::<Counting>() {
            counting.key = key;
        }
        Ok(())
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
        assert!(plugin(json!({ "second": 1, "limit_by": "header" }))
            .unwrap_err()
            .contains("needs header_name"));
        assert!(plugin(json!({ "second": 1, "header_name": "x" }))
            .unwrap_err()
            .contains("only to limit_by"));
        assert!(plugin(json!({ "second": 1, "limit_by": "user" }))
            .unwrap_err()
            .contains("unknown variant"));
        assert!(plugin(json!({ "second": 1, "close_code": 1000 }))
            .unwrap_err()
            .contains("1008"));
        let redis = |extra: serde_json::Value| {
            let mut config = json!({ "second": 1, "limit_by": "ip", "policy": "redis",
                                     "redis": { "host": "127.0.0.1" } });
            config
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            plugin(config)
        };
        assert!(redis(json!({})).is_ok());
        assert!(redis(json!({ "redis": null }))
            .unwrap_err()
            .contains("needs a redis = {"));
        assert!(redis(json!({ "policy": "local" }))
            .unwrap_err()
            .contains("applies only to policy"));
        assert!(redis(json!({ "limit_by": "connection" }))
            .unwrap_err()
            .contains("key that connections share"));
        assert!(redis(json!({ "sync_rate": 0 })).is_ok());
        assert!(redis(json!({ "sync_rate": -1 }))
            .unwrap_err()
            .contains("sync_rate must be"));
        assert!(redis(json!({ "redis": { "sentinel_master": "m" } }))
            .unwrap_err()
            .contains("Sentinel is not supported"));
        assert!(redis(json!({ "redis": { "cluster_nodes": [] } }))
            .unwrap_err()
            .contains("Cluster is not supported"));
        assert!(redis(json!({ "redis": { "hots": "x" } }))
            .unwrap_err()
            .contains("unknown field `hots`"));
        assert!(plugin(json!({ "hour": 0 }))
            .unwrap_err()
            .contains("at least 1"));
        let p = plugin(json!({ "upstream_limit": 5, "window": 0.25 })).unwrap();
        assert_eq!(p.rules[0].counters.length_ms(), 250);
        assert_eq!(p.action, FrameAction::Close);
        assert_eq!(p.close_code, 1008);
        assert_eq!(p.priority(), 910);
        let p = plugin(json!({ "client_limit": 5, "minute": 100, "hour": 1000 })).unwrap();
        let lengths: Vec<u64> = p.rules.iter().map(|r| r.counters.length_ms()).collect();
        assert_eq!(lengths, [1000, 60_000, 3_600_000]);
    }

    impl RateLimit {
        /// The key a handshake gave the connection.
        fn key_of(&self, h: &crate::plugins::testing::HandshakeHarness) -> Option<Arc<str>> {
            let state = h.state.as_ref()?.downcast_ref::<Counting>()?;
            state.key.clone()
        }
    }

    #[test]
    fn keys_follow_limit_by_and_fall_back_to_the_ip() {
        use crate::consumer::{ConsumerSpec, Consumers};
        use crate::plugins::testing::HandshakeHarness;
        let key = |config: serde_json::Value, headers: &[(&str, &str)]| {
            let p = plugin(config).unwrap();
            let consumers = Consumers::new(vec![ConsumerSpec {
                username: Some("alice".into()),
                keys: vec![("k".into(), None)],
                ..Default::default()
            }])
            .unwrap();
            let mut h = HandshakeHarness::new("/", headers).consumers(consumers);
            if let Some((_, key)) = headers.iter().find(|(n, _)| *n == "apikey") {
                let credential = h.consumers.by_key(key.as_bytes()).unwrap().clone();
                h.authenticated = Some(Arc::new(crate::consumer::Authenticated {
                    consumer: credential.consumer.clone(),
                    credential: Some(credential),
                }));
            }
            h.run(&p);
            p.key_of(&h)
        };
        let by = |limit_by: &str| json!({ "second": 1, "limit_by": limit_by });
        assert_eq!(key(by("connection"), &[]), None);
        assert_eq!(key(by("ip"), &[]).as_deref(), Some("ip:127.0.0.1"));
        assert_eq!(
            key(by("consumer"), &[("apikey", "k")]).as_deref(),
            Some("consumer:alice")
        );
        assert_eq!(key(by("consumer"), &[]).as_deref(), Some("ip:127.0.0.1"));
        assert_eq!(
            key(by("credential"), &[("apikey", "k")]).as_deref(),
            Some("credential:alice:key-1")
        );
        assert_eq!(key(by("route"), &[]).as_deref(), Some("route:route"));
        assert_eq!(key(by("service"), &[]).as_deref(), Some("service:svc"));
        let header = json!({ "second": 1, "limit_by": "header", "header_name": "x-tenant" });
        assert_eq!(
            key(header.clone(), &[("x-tenant", "acme")]).as_deref(),
            Some("header:acme")
        );
        assert_eq!(key(header, &[]).as_deref(), Some("ip:127.0.0.1"));
    }

    #[test]
    fn close_mode_closes_with_1008() {
        let p = plugin(json!({ "client_limit": 2, "window": 3600 })).unwrap();
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
            json!({ "client_limit": 1, "upstream_limit": 2, "window": 3600, "action": "drop" }),
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
