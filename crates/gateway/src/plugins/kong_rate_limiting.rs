//! `rate-limiting`: Kong's plugin under its name and configuration. It
//! counts what Kong counts, requests, which for a WebSocket service are
//! handshakes: connections opened per second, minute, hour or day, per
//! consumer (the default), credential, IP, service or header value. Over
//! the limit the handshake is answered `error_code` (429) with
//! `{"message": error_message}` and `Retry-After`. (Messages per window
//! are `websocket-rate-limit`'s.)
//!
//! `policy = "local"` counts in this process; `policy = "redis"` counts in
//! Redis, shared by a cluster of gateways, with Kong's `redis_*` keys (or
//! the nested `redis` table): `sync_rate = -1` (Kong's default) asks Redis
//! at every handshake, a positive `sync_rate` counts locally and exchanges
//! counts that often. `policy = "cluster"` (Kong's database), calendar
//! `month` and `year` windows, `limit_by = "path"` and
//! `"consumer-group"` are refused by name.
//!
//! Unless `hide_client_headers`, each answer carries Kong's
//! `X-RateLimit-Limit-<Window>` headers (not the remaining counts, which
//! the shared counters do not give at handshake time).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;

use super::exit_json;
use crate::limits::{
    namespace, now_ms, CounterSync, LimitBy, LocalCounters, Policy, RedisConfig, WindowType,
};
use crate::plugin::{HandshakeContext, Plugin, PluginConfigError, PluginError, Resume};

/// Kong's `limit_by` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KongLimitBy {
    /// The authenticated consumer, else the IP address.
    #[default]
    Consumer,
    /// The credential, else the IP address.
    Credential,
    /// The client's IP address.
    Ip,
    /// The service.
    Service,
    /// A header's value (`header_name`), else the IP address.
    Header,
    /// Not supported.
    Path,
    /// Not supported.
    ConsumerGroup,
}

/// Kong's `policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KongPolicy {
    /// In this process.
    #[default]
    Local,
    /// In Kong's database: not supported.
    Cluster,
    /// In Redis.
    Redis,
}

/// The plugin's configuration, Kong's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingConfig {
    /// Handshakes per second.
    pub second: Option<u64>,
    /// Handshakes per minute.
    pub minute: Option<u64>,
    /// Handshakes per hour.
    pub hour: Option<u64>,
    /// Handshakes per day.
    pub day: Option<u64>,
    /// Calendar months: not supported.
    pub month: Option<u64>,
    /// Calendar years: not supported.
    pub year: Option<u64>,
    /// Whose handshakes count together.
    #[serde(default)]
    pub limit_by: KongLimitBy,
    /// The header of `limit_by = "header"`.
    pub header_name: Option<String>,
    /// The path of `limit_by = "path"` (not supported).
    pub path: Option<String>,
    /// Where counts live.
    #[serde(default)]
    pub policy: KongPolicy,
    /// Go on counting locally while Redis does not answer (default true).
    #[serde(default = "yes")]
    pub fault_tolerant: bool,
    /// Leave out the `X-RateLimit-*` headers.
    #[serde(default)]
    pub hide_client_headers: bool,
    /// The status over the limit (default 429).
    #[serde(default = "default_error_code")]
    pub error_code: u16,
    /// The message over the limit.
    #[serde(default = "default_error_message")]
    pub error_message: String,
    /// -1: ask Redis at every handshake; else seconds between exchanges.
    #[serde(default = "default_sync_rate")]
    pub sync_rate: f64,
    /// Kong 3.x's nested Redis settings.
    pub redis: Option<RedisConfig>,
    /// Kong's flat Redis settings.
    pub redis_host: Option<String>,
    /// See `redis_host`.
    pub redis_port: Option<u16>,
    /// See `redis_host`.
    pub redis_username: Option<String>,
    /// See `redis_host`.
    pub redis_password: Option<String>,
    /// See `redis_host`.
    pub redis_database: Option<i64>,
    /// See `redis_host`, ms.
    pub redis_timeout: Option<u64>,
    /// See `redis_host`.
    pub redis_ssl: Option<bool>,
    /// Always verified: only `true` is accepted.
    pub redis_ssl_verify: Option<bool>,
    /// Not supported (the host's name is used).
    pub redis_server_name: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_error_code() -> u16 {
    429
}
fn default_error_message() -> String {
    "API rate limit exceeded".to_owned()
}
fn default_sync_rate() -> f64 {
    -1.0
}

/// One window.
#[derive(Debug)]
struct Window {
    /// `Second`, `Minute`, … for the headers.
    name: &'static str,
    limit: u64,
    counters: Arc<LocalCounters>,
    tag: String,
}

/// Limits handshakes per window per key.
#[derive(Debug)]
pub struct RateLimiting {
    windows: Vec<Window>,
    limit_by: LimitBy,
    header_name: Option<String>,
    answer: Answer,
    cluster: Option<Arc<CounterSync>>,
}

/// What a handshake is told: the limits' headers, and over a limit the
/// refusal.
#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    message: String,
    headers: HeaderMap,
}

impl Answer {
    /// `refused_by`: the length in seconds of the window that refused, if
    /// one did.
    fn give(
        &self,
        ctx: &mut HandshakeContext<'_>,
        refused_by: Option<u64>,
    ) -> Result<(), PluginError> {
        match refused_by {
            Some(window) => {
                let mut headers = self.headers.clone();
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from(window.max(1)));
                exit_json(ctx, self.status, &self.message, headers);
            }
            None => {
                for (name, value) in &self.headers {
                    if let Ok(value) = value.to_str() {
                        ctx.set_response_header(name.as_str(), value)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl RateLimiting {
    /// The name in the configuration.
    pub const NAME: &'static str = "rate-limiting";

    /// Checks the configuration.
    pub fn new(config: RateLimitingConfig) -> Result<Self, PluginConfigError> {
        let refuse = |m: String| Err(PluginConfigError(m));
        if config.month.is_some() || config.year.is_some() {
            return refuse(
                "month and year (calendar periods) are not supported by Frameway; use day".into(),
            );
        }
        let limit_by = match config.limit_by {
            KongLimitBy::Consumer => LimitBy::Consumer,
            KongLimitBy::Credential => LimitBy::Credential,
            KongLimitBy::Ip => LimitBy::Ip,
            KongLimitBy::Service => LimitBy::Service,
            KongLimitBy::Header => LimitBy::Header,
            KongLimitBy::Path | KongLimitBy::ConsumerGroup => {
                let name = match config.limit_by {
                    KongLimitBy::Path => "path",
                    _ => "consumer-group",
                };
                return refuse(format!(
                    "limit_by = \"{name}\" is not supported by Frameway (consumer, credential, \
                     ip, service, header)"
                ));
            }
        };
        if config.path.is_some() {
            return refuse(
                "path applies only to limit_by = \"path\", which Frameway has not".into(),
            );
        }
        limit_by.check(config.header_name.as_deref())?;
        let windows: Vec<Window> = [
            ("Second", config.second, 1),
            ("Minute", config.minute, 60),
            ("Hour", config.hour, 3600),
            ("Day", config.day, 86_400),
        ]
        .into_iter()
        .filter_map(|(name, limit, secs)| {
            Some(Window {
                name,
                limit: limit?,
                counters: Arc::new(LocalCounters::new(Duration::from_secs(secs))),
                tag: format!("handshakes:{secs}"),
            })
        })
        .collect();
        if windows.is_empty() {
            return refuse("set second, minute, hour or day".into());
        }
        if windows.iter().any(|w| w.limit == 0) {
            return refuse("limits must be at least 1 per window".into());
        }
        let status = match StatusCode::from_u16(config.error_code) {
            Ok(s) if (400..600).contains(&s.as_u16()) => s,
            _ => {
                return refuse(format!(
                    "error_code {} is not a 4xx or 5xx status",
                    config.error_code
                ))
            }
        };
        let redis = match (config.policy, &config.redis, &config.redis_host) {
            (KongPolicy::Cluster, _, _) => {
                return refuse(
                    "policy = \"cluster\" counts in Kong's database, which Frameway has not; use \
                     local or redis"
                        .into(),
                )
            }
            (KongPolicy::Local, None, None) => None,
            (KongPolicy::Local, _, _) => {
                return refuse("redis settings apply only to policy = \"redis\"".into())
            }
            (KongPolicy::Redis, Some(_), Some(_)) => {
                return refuse("give either redis = { ... } or the redis_* keys, not both".into())
            }
            (KongPolicy::Redis, Some(nested), None) => Some(nested.clone()),
            (KongPolicy::Redis, None, _) => Some(flat_redis(&config)?),
        };
        let policy = if redis.is_some() {
            Policy::Redis
        } else {
            Policy::Local
        };
        let store = policy.store(Self::NAME, redis.as_ref(), config.fault_tolerant, limit_by)?;
        let cluster = match store {
            None => None,
            Some(store) => {
                let every = if config.sync_rate < 0.0 {
                    None
                } else {
                    match Duration::try_from_secs_f64(config.sync_rate) {
                        Ok(every) if every >= Duration::from_millis(1) => Some(every),
                        _ => return refuse("sync_rate must be -1 (every handshake in Redis) or a number of seconds, at least 0.001".into()),
                    }
                };
                let defining = format!(
                    "{:?}",
                    (
                        windows
                            .iter()
                            .map(|w| (&w.tag, w.limit))
                            .collect::<Vec<_>>(),
                        limit_by,
                        &config.header_name,
                    )
                );
                let namespace = namespace(Self::NAME, None, &defining);
                Some(Arc::new(CounterSync::new(store, namespace, every, false)))
            }
        };
        let mut headers = HeaderMap::new();
        if !config.hide_client_headers {
            for w in &windows {
                let name = HeaderName::try_from(format!(
                    "x-ratelimit-limit-{}",
                    w.name.to_ascii_lowercase()
                ))
                .expect("a valid header name");
                headers.insert(name, HeaderValue::from(w.limit));
            }
        }
        Ok(RateLimiting {
            windows,
            limit_by,
            header_name: config.header_name,
            answer: Answer {
                status,
                message: config.error_message,
                headers,
            },
            cluster,
        })
    }
}

/// The nested table from Kong's flat `redis_*` keys.
fn flat_redis(config: &RateLimitingConfig) -> Result<RedisConfig, PluginConfigError> {
    if config.redis_ssl_verify == Some(false) {
        return Err(PluginConfigError(
            "redis_ssl_verify = false is not supported by Frameway (Redis over TLS is verified)"
                .into(),
        ));
    }
    if config.redis_server_name.is_some() {
        return Err(PluginConfigError(
            "redis_server_name is not supported by Frameway (redis_host names the server)".into(),
        ));
    }
    let mut table = serde_json::Map::new();
    let mut set = |key: &str, value: serde_json::Value| {
        table.insert(key.to_owned(), value);
    };
    if let Some(host) = &config.redis_host {
        set("host", host.clone().into());
    }
    if let Some(port) = config.redis_port {
        set("port", port.into());
    }
    if let Some(user) = &config.redis_username {
        set("username", user.clone().into());
    }
    if let Some(password) = &config.redis_password {
        set("password", password.clone().into());
    }
    if let Some(database) = config.redis_database {
        set("database", database.into());
    }
    if let Some(timeout) = config.redis_timeout {
        set("timeout", timeout.into());
    }
    if let Some(ssl) = config.redis_ssl {
        set("ssl", ssl.into());
    }
    serde_json::from_value(serde_json::Value::Object(table))
        .map_err(|e| PluginConfigError(format!("redis_*: {e}")))
}

impl Plugin for RateLimiting {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn priority(&self) -> i32 {
        // Kong's: after authentication, so the consumer is known.
        910
    }

    fn handles_frames(&self) -> bool {
        false
    }

    fn handshake(&self, ctx: &mut HandshakeContext<'_>) -> Result<(), PluginError> {
        let key = self
            .limit_by
            .key(ctx, self.header_name.as_deref())
            .unwrap_or_else(|| format!("ip:{}", ctx.client_ip()).into());
        if let Some(cluster) = &self.cluster {
            if cluster.exact() && !cluster.store().refuses() {
                let windows: Vec<_> = self
                    .windows
                    .iter()
                    .map(|w| (w.tag.clone(), w.limit, w.counters.clone()))
                    .collect();
                let cluster = cluster.clone();
                let answer = self.answer.clone();
                ctx.wait(async move {
                    let mut refused_by = None;
                    for (tag, limit, counters) in windows {
                        let length = counters.length_ms();
                        let admitted = match cluster.admit(&tag, &key, length, limit).await {
                            Some(counted) => counted,
                            None if cluster.store().fault_tolerant() => {
                                counters.admit(&key, now_ms(), limit, WindowType::Fixed)
                            }
                            None => false,
                        };
                        if !admitted && refused_by.is_none() {
                            refused_by = Some(length / 1000);
                        }
                    }
                    Box::new(move |ctx: &mut HandshakeContext<'_>| answer.give(ctx, refused_by))
                        as Resume
                });
                return Ok(());
            }
            cluster.start(|| {
                self.windows
                    .iter()
                    .map(|w| (w.tag.clone(), w.counters.clone()))
                    .collect()
            });
        }
        let refused = self.cluster.as_ref().is_some_and(|c| c.store().refuses());
        let now = now_ms();
        let mut refused_by = None;
        for w in &self.windows {
            let admitted = !refused && w.counters.admit(&key, now, w.limit, WindowType::Fixed);
            if !admitted && refused_by.is_none() {
                refused_by = Some(w.counters.length_ms() / 1000);
            }
        }
        self.answer.give(ctx, refused_by)
    }
}
