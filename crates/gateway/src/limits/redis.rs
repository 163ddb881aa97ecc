//! `policy = "redis"`: counts shared by every gateway of a cluster.
//!
//! Nothing on the message path waits for Redis. Each plugin instance has
//! a background thread (a runtime of its own, so the workers never wait
//! on the network) that pushes the messages counted here since its last
//! turn and pulls the cluster's totals every `sync_rate` seconds. Between
//! two turns a gateway admits up to the limit minus what it last heard,
//! so the cluster's count can exceed a limit by what the other gateways
//! admitted for that key within one `sync_rate` (never more than the
//! limit per other gateway).
//!
//! Open connections are leases: each gateway keeps, per key, its own
//! count with an expiry it renews every third of `lease`, so that the
//! connections of a gateway that dies are released when its lease runs
//! out. A handshake asks Redis (one round trip, atomic in a script) and
//! is admitted only if the cluster's count is under the limit.
//!
//! With `sync_rate = 0` each message waits instead for its count in
//! Redis (one round trip, atomic in a script): exact, and the connection
//! relays nothing else meanwhile.
//!
//! When Redis does not answer within `timeout`, a `fault_tolerant` limit
//! goes on with this gateway's own counts (each gateway then holds the
//! limit alone), logs the outage once and counts it in the metrics; the
//! counts made meanwhile are pushed when Redis answers again.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use serde::Deserialize;

use super::{now_ms, LocalCounters, LocalLeases};
use crate::plugin::PluginConfigError;
use frameway::sync::lock;

/// Where Redis is: Kong 3.x's nested `redis = { ... }` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// The host (default `127.0.0.1`).
    #[serde(default = "default_host")]
    pub host: String,
    /// The port (default 6379).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The ACL user, if any.
    pub username: Option<String>,
    /// The password, if any.
    pub password: Option<String>,
    /// The database number (default 0).
    #[serde(default)]
    pub database: i64,
    /// Milliseconds to connect or to answer (default 2000, Kong's).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// TLS (verified against the system's roots, or `SSL_CERT_FILE`).
    #[serde(default)]
    pub ssl: bool,
    sentinel_master: Option<serde_json::Value>,
    sentinel_nodes: Option<serde_json::Value>,
    cluster_nodes: Option<serde_json::Value>,
}

fn default_host() -> String {
    "127.0.0.1".into()
}

fn default_port() -> u16 {
    6379
}

fn default_timeout() -> u64 {
    2000
}

/// A process-wide tally of the stores' health, for the metrics.
static FAILED_CALLS: AtomicU64 = AtomicU64::new(0);
static OUTAGES: AtomicU64 = AtomicU64::new(0);

/// Calls to Redis that failed or timed out, since the process started.
pub fn failed_calls() -> u64 {
    FAILED_CALLS.load(Ordering::Relaxed)
}

/// Times a limit lost its Redis (each outage counts once).
pub fn outages() -> u64 {
    OUTAGES.load(Ordering::Relaxed)
}

/// A name for one plugin instance among all the cluster's: the owner of
/// its leases. Per instance, not per process: during a reload the old
/// configuration's instance and the new one hold their connections apart.
fn owner_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}-{nanos:x}-{n}", std::process::id())
}

/// One plugin instance's Redis: a connection shared by its background
/// thread and the connections that wait on it (handshakes, and messages
/// with `sync_rate = 0`), and whether Redis is answering.
pub(crate) struct Store {
    plugin: &'static str,
    client: redis::Client,
    timeout: Duration,
    connection: Mutex<Option<MultiplexedConnection>>,
    down: AtomicBool,
    /// When Redis last failed: during an outage, calls within a second
    /// of it fail at once rather than each waiting out the timeout.
    failed_at: Mutex<Option<Instant>>,
    fault_tolerant: bool,
}

/// How long an outage lets calls fail at once before Redis is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl Store {
    /// Checks the table; connects later, on first use.
    pub(crate) fn new(
        plugin: &'static str,
        config: &RedisConfig,
        fault_tolerant: bool,
    ) -> Result<Store, PluginConfigError> {
        let refuse = |m: String| Err(PluginConfigError(m));
        if config.sentinel_master.is_some() || config.sentinel_nodes.is_some() {
            return refuse(
                "redis: Redis Sentinel is not supported; give the primary's host and port".into(),
            );
        }
        if config.cluster_nodes.is_some() {
            return refuse(
                "redis: Redis Cluster is not supported; give one server's host and port".into(),
            );
        }
        if config.timeout == 0 {
            return refuse("redis.timeout must be at least 1 (milliseconds)".into());
        }
        let addr = if config.ssl {
            ConnectionAddr::TcpTls {
                host: config.host.clone(),
                port: config.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(config.host.clone(), config.port)
        };
        let mut settings = RedisConnectionInfo::default().set_db(config.database);
        if let Some(username) = &config.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &config.password {
            settings = settings.set_password(password);
        }
        let info = addr
            .into_connection_info()
            .map(|info| info.set_redis_settings(settings));
        let client = info
            .and_then(redis::Client::open)
            .map_err(|e| PluginConfigError(format!("redis: {e}")))?;
        Ok(Store {
            plugin,
            client,
            timeout: Duration::from_millis(config.timeout),
            connection: Mutex::new(None),
            down: AtomicBool::new(false),
            failed_at: Mutex::new(None),
            fault_tolerant,
        })
    }

    /// Whether a limit should refuse what it cannot count: Redis is down
    /// and the limit is not `fault_tolerant`.
    pub(crate) fn refuses(&self) -> bool {
        !self.fault_tolerant && self.is_down()
    }

    /// Whether the limit falls back on this gateway's own counts when
    /// Redis does not answer.
    pub(crate) fn fault_tolerant(&self) -> bool {
        self.fault_tolerant
    }

    /// Whether Redis failed at its last call.
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Asks Redis whether it is there (recording an outage or its end).
    pub(crate) async fn ping(&self) {
        self.call(|mut connection| async move {
            redis::cmd("PING").query_async::<()>(&mut connection).await
        })
        .await;
    }

    /// Runs `call` on the connection (made first if there is none) within
    /// the timeout; `None` if Redis failed or did not answer.
    pub(crate) async fn call<T, F, Fut>(&self, call: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let resting = lock(&self.failed_at).is_some_and(|at| at.elapsed() < RETRY_AFTER);
        if resting && self.is_down() {
            return None;
        }
        // Multiplexed: one connection serves every caller, whichever
        // runtime it is on (its driver runs where it was made).
        let connected = lock(&self.connection).clone();
        let connection = match connected {
            Some(connection) => connection,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                match self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                {
                    Ok(connection) => {
                        *lock(&self.connection) = Some(connection.clone());
                        connection
                    }
                    Err(err) => return self.failed(&err),
                }
            }
        };
        match tokio::time::timeout(self.timeout, call(connection)).await {
            Ok(Ok(answer)) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        plugin = self.plugin,
                        "Redis answers again; counts are shared with the cluster"
                    );
                }
                Some(answer)
            }
            Ok(Err(err)) => self.failed(&err),
            Err(_) => self.failed(&format!("no answer within {:?}", self.timeout)),
        }
    }

    fn failed<T>(&self, err: &dyn std::fmt::Display) -> Option<T> {
        FAILED_CALLS.fetch_add(1, Ordering::Relaxed);
        *lock(&self.connection) = None;
        *lock(&self.failed_at) = Some(Instant::now());
        if !self.down.swap(true, Ordering::Relaxed) {
            OUTAGES.fetch_add(1, Ordering::Relaxed);
            let then = if self.fault_tolerant {
                "counting on this gateway alone until it answers"
            } else {
                "refusing what the limit cannot count until it answers (fault_tolerant = false)"
            };
            tracing::warn!(plugin = self.plugin, "Redis failed: {err}; {then}");
        }
        None
    }
}

/// Runs `task` on a thread of its own with a single-threaded runtime,
/// apart from the workers' runtimes so that they never wait on Redis.
/// The task ends when the plugin instance it serves is dropped.
fn spawn_background<F>(name: &str, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(task),
                Err(err) => tracing::error!("cannot start the Redis sync thread: {err}"),
            }
        });
    if let Err(err) = spawned {
        tracing::error!("cannot start the Redis sync thread: {err}");
    }
}

/// The message counters of one rate-limit instance, shared with the
/// cluster: pushed and pulled every `every` on a background thread
/// started by the first message, or, without `every` (`sync_rate = 0`),
/// counted in Redis message by message.
pub(crate) struct CounterSync {
    store: Arc<Store>,
    namespace: String,
    every: Option<Duration>,
    sliding: bool,
    started: OnceLock<()>,
    admit: redis::Script,
}

/// Counts one message in window KEYS[1] unless the window's count, plus
/// the previous window's KEYS[2] weighted by ARGV[2] / ARGV[3] (sliding;
/// 0 for fixed), has reached ARGV[1]: 1 if counted, 0 if not.
const ADMIT: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local estimate = math.floor(previous * tonumber(ARGV[2]) / tonumber(ARGV[3])) + current
if estimate >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

impl CounterSync {
    pub(crate) fn new(
        store: Store,
        namespace: String,
        every: Option<Duration>,
        sliding: bool,
    ) -> Self {
        CounterSync {
            store: Arc::new(store),
            namespace,
            every,
            sliding,
            started: OnceLock::new(),
            admit: redis::Script::new(ADMIT),
        }
    }

    /// Whether every message is counted in Redis (`sync_rate = 0`).
    pub(crate) fn exact(&self) -> bool {
        self.every.is_none()
    }

    /// Counts one message for `key` in Redis, under the limit `tag`
    /// (windows of `length_ms`): whether it is within `limit`, or `None`
    /// if Redis did not answer.
    pub(crate) async fn admit(
        &self,
        tag: &str,
        key: &str,
        length_ms: u64,
        limit: u64,
    ) -> Option<bool> {
        let now = now_ms();
        let index = now / length_ms;
        let prefix = format!("{}:{tag}:{key}", self.namespace);
        let weight = if self.sliding {
            length_ms - now % length_ms
        } else {
            0
        };
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .key(format!("{prefix}:{index}"))
            .key(format!("{prefix}:{}", index.wrapping_sub(1)))
            .arg(limit)
            .arg(weight)
            .arg(length_ms)
            .arg(2 * length_ms + 1000);
        self.store
            .call(|mut connection| async move {
                invocation.invoke_async::<u8>(&mut connection).await
            })
            .await
            .map(|counted| counted == 1)
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Starts the background thread once, for these counters, each under
    /// its tag (the direction and window length: limits of one instance
    /// never share keys).
    pub(crate) fn start<F>(&self, counters: F)
    where
        F: FnOnce() -> Vec<(String, Arc<LocalCounters>)>,
    {
        let Some(every) = self.every else {
            return;
        };
        self.started.get_or_init(|| {
            let counters: Vec<(String, Weak<LocalCounters>)> = counters()
                .iter()
                .map(|(tag, c)| (format!("{}:{tag}", self.namespace), Arc::downgrade(c)))
                .collect();
            let (store, sliding) = (self.store.clone(), self.sliding);
            spawn_background("frameway-rl-sync", async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut first = true;
                loop {
                    tick.tick().await;
                    let mut called = false;
                    for (prefix, counters) in &counters {
                        let Some(counters) = counters.upgrade() else {
                            return;
                        };
                        called |= push_and_pull(&store, prefix, &counters, sliding).await;
                    }
                    // With nothing to push, Redis is still asked at first
                    // and during an outage: a limit that refuses while it
                    // is down counts nothing that would ask it.
                    if !called && (first || store.is_down()) {
                        store.ping().await;
                    }
                    first = false;
                }
            });
        });
    }
}

/// One turn for one limit: adds this gateway's new counts to Redis's and
/// takes the totals (the current window's, and the previous one's for a
/// sliding window) back as what every gateway has counted. Whether there
/// was anything to exchange.
async fn push_and_pull(
    store: &Store,
    prefix: &str,
    counters: &LocalCounters,
    sliding: bool,
) -> bool {
    let now = now_ms();
    let length = counters.length_ms();
    let index = now / length;
    let batch = counters.unsynced(index);
    if batch.is_empty() {
        return false;
    }
    // Keys outlive the window after theirs, which a sliding window reads.
    let expire = (2 * length + 1000) as i64;
    let mut pipe = redis::pipe();
    for item in &batch {
        let current = format!("{prefix}:{}:{index}", item.key);
        pipe.incr(&current, item.current)
            .pexpire(&current, expire)
            .ignore();
        if sliding || item.previous > 0 {
            let previous = format!("{prefix}:{}:{}", item.key, index.wrapping_sub(1));
            pipe.incr(&previous, item.previous)
                .pexpire(&previous, expire)
                .ignore();
        }
    }
    let totals: Option<Vec<u64>> = store
        .call(|mut connection| async move { pipe.query_async(&mut connection).await })
        .await;
    let Some(totals) = totals else {
        return true;
    };
    let mut totals = totals.into_iter();
    for item in batch {
        let current = totals.next().unwrap_or(0);
        let previous = if sliding || item.previous > 0 {
            totals.next()
        } else {
            None
        };
        counters.synced(index, item, current, previous.filter(|_| sliding));
    }
    true
}

/// Keys of `websocket-connection-limit` leases: a hash of each gateway's
/// open connections (node → count) and a sorted set of when each
/// gateway's count expires. Every script first forgets the gateways whose
/// lease ran out (Redis's own clock, so gateways' clocks need not agree).
const PRUNE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node, lease = ARGV[1], tonumber(ARGV[2])
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('HDEL', KEYS[1], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local function hold(count)
  if count > 0 then
    redis.call('HSET', KEYS[1], node, count)
    redis.call('ZADD', KEYS[2], now + lease, node)
    redis.call('PEXPIRE', KEYS[1], lease)
    redis.call('PEXPIRE', KEYS[2], lease)
  else
    redis.call('HDEL', KEYS[1], node)
    redis.call('ZREM', KEYS[2], node)
  end
end
";

/// Takes one more connection for this gateway if the cluster's count is
/// under ARGV[3]: 1 if taken, 0 if not.
const ACQUIRE: &str = r"
local total = 0
for _, n in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(n) end
if total >= tonumber(ARGV[3]) then return 0 end
hold(tonumber(redis.call('HGET', KEYS[1], node) or '0') + 1)
return 1
";

/// Sets this gateway's count to ARGV[3] and renews its lease.
const REPORT: &str = r"
hold(tonumber(ARGV[3]))
return 1
";

impl std::fmt::Debug for CounterSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterSync")
            .field("namespace", &self.namespace)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LeaseSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseSync")
            .field("namespace", &self.owner.namespace)
            .field("lease", &self.owner.lease)
            .finish_non_exhaustive()
    }
}

/// The open connections of one connection-limit instance, shared with
/// the cluster as leases.
pub(crate) struct LeaseSync {
    owner: Arc<LeaseOwner>,
    acquire: redis::Script,
    started: OnceLock<()>,
}

/// One plugin instance's leases in Redis: where they are, and under
/// which owner.
struct LeaseOwner {
    store: Arc<Store>,
    namespace: String,
    node: String,
    lease: Duration,
}

impl LeaseOwner {
    /// Runs a lease script (one of [`PRUNE`]'s followers) for `key`, with
    /// `n` as its ARGV[3]; its answer, or `None` if Redis did not answer.
    async fn run(&self, script: &redis::Script, key: &str, n: u64) -> Option<u8> {
        let counts = format!("{}:{key}", self.namespace);
        let expiries = format!("{counts}:leases");
        let mut invocation = script.prepare_invoke();
        invocation
            .key(counts)
            .key(expiries)
            .arg(&self.node)
            .arg(self.lease.as_millis() as u64)
            .arg(n);
        self.store
            .call(|mut connection| async move {
                invocation.invoke_async::<u8>(&mut connection).await
            })
            .await
    }
}

impl LeaseSync {
    pub(crate) fn new(store: Store, namespace: String, lease: Duration) -> Self {
        LeaseSync {
            owner: Arc::new(LeaseOwner {
                store: Arc::new(store),
                namespace,
                node: owner_id(),
                lease,
            }),
            acquire: redis::Script::new(&format!("{PRUNE}{ACQUIRE}")),
            started: OnceLock::new(),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.owner.store
    }

    /// Asks Redis for one more connection under `key`: whether the
    /// cluster had room, or `None` if Redis did not answer.
    pub(crate) async fn acquire(&self, key: &str, limit: u64) -> Option<bool> {
        let taken = self.owner.run(&self.acquire, key, limit).await;
        taken.map(|taken| taken == 1)
    }

    /// Starts the background thread once: it reports each changed key's
    /// count as soon as it changes, and renews every held lease each
    /// third of the lease time.
    pub(crate) fn start(&self, leases: &Arc<LocalLeases>) {
        self.started.get_or_init(|| {
            let leases = Arc::downgrade(leases);
            let reporter = Reporter {
                owner: self.owner.clone(),
                script: redis::Script::new(&format!("{PRUNE}{REPORT}")),
            };
            spawn_background("frameway-cl-sync", async move {
                let renew = reporter.owner.lease / 3;
                let mut renewed = tokio::time::Instant::now();
                // Keys whose count Redis may not have yet, and keys Redis
                // was last told a count above zero for.
                let mut unreported: HashSet<Box<str>> = HashSet::new();
                let mut held: HashSet<Box<str>> = HashSet::new();
                while let Some(bell) = leases.upgrade().map(|l| l.bell()) {
                    let _ = tokio::time::timeout_at(renewed + renew, bell.notified()).await;
                    // Gone once the plugin instance and its last connection
                    // are: then every count it held is zero.
                    let Some(local) = leases.upgrade() else {
                        break;
                    };
                    unreported.extend(local.take_changed());
                    if renewed.elapsed() >= renew {
                        unreported.extend(local.keys());
                        renewed = tokio::time::Instant::now();
                    }
                    let counts = unreported.drain().map(|key| {
                        let open = local.open(&key);
                        (key, open)
                    });
                    let counts: Vec<_> = counts.collect();
                    drop(local);
                    unreported = reporter.tell(counts, &mut held).await;
                }
                let zeros = held.iter().chain(&unreported).map(|key| (key.clone(), 0));
                let zeros: Vec<_> = zeros.collect();
                reporter.tell(zeros, &mut held).await;
            });
        });
    }
}

/// What the lease thread tells Redis: this gateway's counts per key.
struct Reporter {
    owner: Arc<LeaseOwner>,
    script: redis::Script,
}

impl Reporter {
    /// Reports each key's count, and renews the lease; the keys Redis did
    /// not hear about (told again on a later turn: counts missed during
    /// an outage reach Redis when it answers).
    async fn tell(
        &self,
        mut counts: Vec<(Box<str>, u64)>,
        held: &mut HashSet<Box<str>>,
    ) -> HashSet<Box<str>> {
        while let Some((key, open)) = counts.pop() {
            if self.owner.run(&self.script, &key, open).await.is_none() {
                let mut missed: HashSet<Box<str>> = counts.into_iter().map(|(k, _)| k).collect();
                missed.insert(key);
                return missed;
            }
            if open > 0 {
                held.insert(key);
            } else {
                held.remove(&key);
            }
        }
        HashSet::new()
    }
}
