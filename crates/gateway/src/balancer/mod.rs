//! Upstreams of several targets (Kong's upstream entity): which target a
//! new connection goes to, which targets are healthy, and how many
//! sessions each has open.
//!
//! A target is picked once per connection, at the handshake: nothing here
//! runs on the per-message path. What the workers share (each target's open
//! sessions and health, the round-robin position) is behind atomics and one
//! short lock taken per handshake.
//!
//! - `round-robin`: smooth weighted round-robin (nginx's): over any run of
//!   connections, each target gets its weight's share, interleaved.
//! - `least-connections`: the target with the fewest open WebSocket
//!   sessions per unit of weight. Sessions are counted from the pick until
//!   the connection ends, so a burst of handshakes spreads too. (Kong counts
//!   requests in flight, which a WebSocket stays for hours; its docs call
//!   the algorithm unsuitable for WebSockets for that reason. Counting open
//!   sessions is what balances long-lived connections.)
//! - `consistent-hashing`: weighted rendezvous hashing of the key `hash_on`
//!   names: a key stays on its target while others come and go, and when a
//!   target leaves only its keys move. Without a key (and without a
//!   fallback key), round-robin.

mod dns;
mod hash;
mod health;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::HeaderMap;

pub use hash::HashOn;
pub(crate) use health::ActiveCheck;
use health::Health;
pub use health::{PassiveCheck, ProbeKind};

use frameway::sync::lock;

/// How a pool picks a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// Weighted round-robin (the default).
    RoundRobin,
    /// Fewest open sessions per unit of weight.
    LeastConnections,
    /// The same key to the same target.
    ConsistentHashing,
}

impl Algorithm {
    /// Kong's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round-robin",
            Algorithm::LeastConnections => "least-connections",
            Algorithm::ConsistentHashing => "consistent-hashing",
        }
    }

    /// Parses Kong's name.
    pub fn parse(name: &str) -> Option<Algorithm> {
        [
            Algorithm::RoundRobin,
            Algorithm::LeastConnections,
            Algorithm::ConsistentHashing,
        ]
        .into_iter()
        .find(|a| a.as_str() == name)
    }
}

/// A configured target: `host:port` and its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// As written (`host:port`); sent as the Host header.
    pub name: String,
    /// The host part.
    pub host: String,
    /// The port.
    pub port: u16,
    /// Relative share (0: disabled).
    pub weight: u32,
}

/// One address of a target, with what the workers share about it.
#[derive(Debug)]
pub struct Target {
    /// The configured target it comes from.
    pub spec: Arc<TargetSpec>,
    /// The address connections go to.
    pub addr: SocketAddr,
    sessions: AtomicI64,
    health: Health,
}

impl Target {
    fn new(spec: Arc<TargetSpec>, addr: SocketAddr) -> Target {
        Target {
            spec,
            addr,
            sessions: AtomicI64::new(0),
            health: Health::default(),
        }
    }

    /// Sessions open on it now (and handshakes in progress).
    pub fn sessions(&self) -> i64 {
        self.sessions.load(Relaxed)
    }

    /// Whether new connections may go to it.
    pub fn is_healthy(&self) -> bool {
        self.health.is_healthy()
    }
}

/// A session on a target: counted open from the pick until dropped (the
/// connection's end, or a failed try).
#[derive(Debug)]
pub struct Lease(Arc<Target>);

impl Lease {
    fn new(target: Arc<Target>) -> Lease {
        target.sessions.fetch_add(1, Relaxed);
        Lease(target)
    }

    /// The target.
    pub fn target(&self) -> &Arc<Target> {
        &self.0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Relaxed);
    }
}

/// What a hash key may be taken from.
pub struct KeySource<'a> {
    /// The client's address.
    pub ip: IpAddr,
    /// The client's request headers.
    pub headers: &'a HeaderMap,
    /// The request path.
    pub path: &'a str,
    /// The request's query, if any.
    pub query: Option<&'a str>,
}

/// An `[[upstreams]]` entry at run time.
#[derive(Debug)]
pub struct Pool {
    /// The name services use as their URL's host.
    pub name: String,
    /// How targets are picked.
    pub algorithm: Algorithm,
    hash_on: HashOn,
    hash_fallback: HashOn,
    specs: Vec<Arc<TargetSpec>>,
    targets: RwLock<Arc<[Arc<Target>]>>,
    /// Smooth weighted round-robin's current weights, by address.
    round_robin: Mutex<HashMap<SocketAddr, i64>>,
    /// Where least-connections starts looking, so that ties rotate.
    rotation: AtomicUsize,
    passive: PassiveCheck,
    active: Option<ActiveCheck>,
    dns_refresh: Duration,
    upkeep: AtomicBool,
}

/// An upstream's settings, checked (see `[[upstreams]]` in the README).
#[derive(Debug)]
pub struct PoolConfig {
    /// Its name.
    pub name: String,
    /// How targets are picked.
    pub algorithm: Algorithm,
    /// The key of consistent hashing.
    pub hash_on: HashOn,
    /// The key when `hash_on` finds none.
    pub hash_fallback: HashOn,
    /// The configured targets.
    pub targets: Vec<TargetSpec>,
    /// How often host names are resolved again.
    pub dns_refresh: Duration,
    /// Passive health checking.
    pub passive: PassiveCheck,
    /// Active health checking, if on.
    pub active: Option<ActiveCheck>,
}

impl Pool {
    /// A pool with its targets resolved now (a host name that does not
    /// resolve is logged and has no address until it does).
    pub fn new(config: PoolConfig) -> Pool {
        let specs: Vec<Arc<TargetSpec>> = config.targets.into_iter().map(Arc::new).collect();
        let mut targets = Vec::new();
        for spec in &specs {
            match dns::resolve_now(spec) {
                Ok(addrs) => targets.extend(
                    addrs
                        .into_iter()
                        .map(|a| Arc::new(Target::new(spec.clone(), a))),
                ),
                Err(e) => {
                    tracing::warn!(upstream = %config.name, target = %spec.name, "cannot resolve: {e}")
                }
            }
        }
        Pool {
            name: config.name,
            algorithm: config.algorithm,
            hash_on: config.hash_on,
            hash_fallback: config.hash_fallback,
            specs,
            targets: RwLock::new(targets.into()),
            round_robin: Mutex::new(HashMap::new()),
            rotation: AtomicUsize::new(0),
            passive: config.passive,
            active: config.active,
            dns_refresh: config.dns_refresh,
            upkeep: AtomicBool::new(false),
        }
    }

    /// Every target address now.
    pub fn targets(&self) -> Arc<[Arc<Target>]> {
        frameway::sync::read(&self.targets).clone()
    }

    /// The hash key of a request (consistent hashing only).
    pub fn key(&self, source: &KeySource<'_>) -> Option<u64> {
        if self.algorithm != Algorithm::ConsistentHashing {
            return None;
        }
        self.hash_on
            .key(source)
            .or_else(|| self.hash_fallback.key(source))
    }

    /// Picks a healthy target with weight, other than those `tried`, and
    /// counts a session on it; `None` when there is none.
    pub fn pick(&self, key: Option<u64>, tried: &[SocketAddr]) -> Option<Lease> {
        let targets = self.targets();
        let candidates: Vec<&Arc<Target>> = targets
            .iter()
            .filter(|t| t.spec.weight > 0 && t.is_healthy() && !tried.contains(&t.addr))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let picked = match (self.algorithm, key) {
            (Algorithm::ConsistentHashing, Some(key)) => hash::rendezvous(key, &candidates),
            (Algorithm::LeastConnections, _) => self.least_connections(&candidates),
            _ => self.round_robin(&candidates),
        };
        Some(Lease::new(picked.clone()))
    }

    fn round_robin<'t>(&self, candidates: &[&'t Arc<Target>]) -> &'t Arc<Target> {
        let mut current = lock(&self.round_robin);
        let total: i64 = candidates.iter().map(|t| i64::from(t.spec.weight)).sum();
        let mut best = 0;
        let mut best_weight = i64::MIN;
        for (i, t) in candidates.iter().enumerate() {
            let weight = current.entry(t.addr).or_insert(0);
            *weight += i64::from(t.spec.weight);
            if *weight > best_weight {
                best = i;
                best_weight = *weight;
            }
        }
        *current.entry(candidates[best].addr).or_insert(0) -= total;
        candidates[best]
    }

    fn least_connections<'t>(&self, candidates: &[&'t Arc<Target>]) -> &'t Arc<Target> {
        let start = self.rotation.fetch_add(1, Relaxed) % candidates.len();
        let mut best = candidates[start];
        for t in candidates.iter().cycle().skip(start).take(candidates.len()) {
            // (sessions + 1) / weight, compared without division.
            let load = |t: &Target| (t.sessions().max(0) as i128 + 1, i128::from(t.spec.weight));
            let ((a, wa), (b, wb)) = (load(t), load(best));
            if a * wb < b * wa {
                best = t;
            }
        }
        best
    }

    /// A connection to `target` failed in a way that is the target's fault
    /// (refused, timed out, TLS, 5xx): counted by the passive check.
    pub fn failed(&self, target: &Target) {
        if target.health.passive_failure(&self.passive) {
            tracing::warn!(upstream = %self.name, target = %target.spec.name, addr = %target.addr,
                "target unhealthy for {:?} after {} failures in a row",
                self.passive.unhealthy_timeout, self.passive.failures);
        }
    }

    /// A connection to `target` succeeded.
    pub fn succeeded(&self, target: &Target) {
        target.health.passive_success();
    }

    /// The pool as `GET /upstreams` shows it.
    pub fn status(&self) -> serde_json::Value {
        let targets: Vec<serde_json::Value> = self
            .targets()
            .iter()
            .map(|t| {
                serde_json::json!({
                    "target": t.spec.name,
                    "address": t.addr.to_string(),
                    "weight": t.spec.weight,
                    "health": if t.is_healthy() { "healthy" } else { "unhealthy" },
                    "sessions": t.sessions(),
                })
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "algorithm": self.algorithm.as_str(),
            "targets": targets,
        })
    }
}

/// Starts the background work of `pools` (re-resolving host names, active
/// probes) on the current tokio runtime, once per pool. Each task ends when
/// its pool is gone (the configuration was replaced and its last
/// connection ended).
pub fn start_upkeep(pools: &[Arc<Pool>]) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    for pool in pools {
        if pool.upkeep.swap(true, Relaxed) {
            continue;
        }
        if pool.specs.iter().any(|s| s.host.parse::<IpAddr>().is_err()) {
            runtime.spawn(dns::refresh(Arc::downgrade(pool), pool.dns_refresh));
        }
        if let Some(active) = pool.active.clone() {
            runtime.spawn(health::probe(Arc::downgrade(pool), active));
        }
    }
}

/// The health and sessions of every target of `pools`, in the Prometheus
/// text format (appended to `/metrics`).
pub fn render_metrics(pools: &[Arc<Pool>]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let families = [
        (
            "frameway_upstream_target_health",
            "gauge",
            "1 while a target takes new connections, 0 while it is unhealthy.",
        ),
        (
            "frameway_upstream_target_sessions",
            "gauge",
            "WebSocket sessions open on a target (and handshakes in progress).",
        ),
    ];
    for (i, (name, kind, help)) in families.into_iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for pool in pools {
            for t in pool.targets().iter() {
                let value = if i == 0 {
                    i64::from(t.is_healthy())
                } else {
                    t.sessions()
                };
                let _ = writeln!(
                    out,
                    "{name}{{upstream=\"{}\",target=\"{}\",address=\"{}\"}} {value}",
                    crate::metrics::escape(&pool.name),
                    crate::metrics::escape(&t.spec.name),
                    t.addr
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
