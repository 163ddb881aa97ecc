//! Counting against limits: messages per time window, and open
//! connections, per key (a consumer, an IP, a route…), shared by every
//! connection and worker of this process (`policy = "local"`).
//!
//! Windows are aligned to the Unix clock (a minute window runs from
//! :00 to :59), so that every counter, and every gateway of a cluster,
//! agrees on which window a message falls in. A sliding window estimates
//! the rate over the last `length` as Kong's rate-limiting-advanced does,
//! `previous × (length − elapsed) / length + current`, which removes the
//! burst of twice the limit that a fixed window allows across its edge.

mod redis;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::plugin::{HandshakeContext, PluginConfigError};
use frameway::sync::lock;

pub use self::redis::{failed_calls, outages, RedisConfig};
pub(crate) use self::redis::{CounterSync, LeaseSync, Store};

/// Whose messages or connections count together: the key of a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    /// Each connection on its own.
    #[default]
    Connection,
    /// The authenticated consumer (else the IP address).
    Consumer,
    /// The credential the consumer presented (else the IP address).
    Credential,
    /// The client's IP address.
    Ip,
    /// The service.
    Service,
    /// The route.
    Route,
    /// A request header's value (else the IP address).
    Header,
}

/// Where counts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// In this process, shared by its workers.
    #[default]
    Local,
    /// In Redis, shared by a cluster of gateways (see [`RedisConfig`]).
    Redis,
}

impl Policy {
    /// The store of a limit with this policy, checked: `policy =
    /// "redis"` needs a `redis` table and a key shared by connections,
    /// `policy = "local"` takes no `redis` table.
    pub(crate) fn store(
        self,
        plugin: &'static str,
        redis: Option<&RedisConfig>,
        fault_tolerant: bool,
        limit_by: LimitBy,
    ) -> Result<Option<Store>, PluginConfigError> {
        let refuse = |m: &str| Err(PluginConfigError(m.to_owned()));
        match (self, redis) {
            (Policy::Local, None) => Ok(None),
            (Policy::Local, Some(_)) => refuse("redis applies only to policy = \"redis\""),
            (Policy::Redis, None) => {
                refuse("policy = \"redis\" needs a redis = { host = \"...\", port = 6379 } table")
            }
            (Policy::Redis, Some(_)) if limit_by == LimitBy::Connection => refuse(
                "limit_by = \"connection\" counts each connection on its own gateway; \
                 policy = \"redis\" needs a key that connections share (consumer, ip, ...)",
            ),
            (Policy::Redis, Some(redis)) => Store::new(plugin, redis, fault_tolerant).map(Some),
        }
    }
}

/// The prefix of a limit's keys in Redis: `given`, or one derived from
/// what defines the limit, so that every gateway running the same
/// configuration shares the counts (and limits that differ do not).
pub(crate) fn namespace(plugin: &str, given: Option<String>, defining: &str) -> String {
    given.unwrap_or_else(|| format!("frameway:{plugin}:{:016x}", fnv1a(defining)))
}

impl LimitBy {
    /// Checks `header_name` against the key: required by `header`, and
    /// meaningless for the others.
    pub fn check(self, header_name: Option<&str>) -> Result<(), PluginConfigError> {
        let refuse = |message: String| Err(PluginConfigError(message));
        match (self, header_name) {
            (LimitBy::Header, None) => refuse("limit_by = \"header\" needs header_name".into()),
            (LimitBy::Header, Some(name)) if http::HeaderName::try_from(name).is_err() => {
                refuse(format!("header_name {name:?} is not a valid header name"))
            }
            (LimitBy::Header, Some(_)) | (_, None) => Ok(()),
            (_, Some(_)) => refuse("header_name applies only to limit_by = \"header\"".into()),
        }
    }

    /// The key a connection counts under, found in its handshake (`None`
    /// for `connection`: it counts alone). A consumer, credential or
    /// header that is not there falls back to the IP address, as in Kong.
    pub fn key(self, ctx: &HandshakeContext<'_>, header_name: Option<&str>) -> Option<Arc<str>> {
        let ip = || format!("ip:{}", ctx.client_ip());
        let key = match self {
            LimitBy::Connection => return None,
            LimitBy::Ip => ip(),
            LimitBy::Consumer => ctx
                .consumer()
                .map_or_else(ip, |who| format!("consumer:{}", who.consumer.id)),
            LimitBy::Credential => ctx
                .consumer()
                .and_then(|who| who.credential.as_ref())
                .map_or_else(ip, |credential| format!("credential:{}", credential.id)),
            LimitBy::Service => format!("service:{}", ctx.connection().service),
            LimitBy::Route => format!("route:{}", ctx.connection().route),
            LimitBy::Header => ctx
                .header(header_name.unwrap_or_default())
                .map_or_else(ip, |value| format!("header:{value}")),
        };
        Some(key.into())
    }
}

/// How a window counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowType {
    /// Messages in the current aligned window.
    #[default]
    Fixed,
    /// The current window's messages plus the previous window's, weighted
    /// by how much of it the last `length` still covers.
    Sliding,
}

/// Milliseconds since the Unix epoch: the clock windows are aligned to.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One key's count in one window length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot {
    /// The current window's number (`now_ms / length`).
    index: u64,
    current: u64,
    previous: u64,
}

impl Slot {
    /// Counts one message at `now_ms` unless the window's count (or
    /// estimate) has reached `limit`; whether it was admitted.
    ///
    /// ```
    /// use frameway_gateway::limits::{Slot, WindowType};
    ///
    /// let mut slot = Slot::default();
    /// // Two per second, fixed: the third in the same second is refused,
    /// // the next second starts afresh.
    /// assert!(slot.admit(10_000, 1000, 2, WindowType::Fixed));
    /// assert!(slot.admit(10_500, 1000, 2, WindowType::Fixed));
    /// assert!(!slot.admit(10_999, 1000, 2, WindowType::Fixed));
    /// assert!(slot.admit(11_000, 1000, 2, WindowType::Fixed));
    /// ```
    pub fn admit(&mut self, now_ms: u64, length_ms: u64, limit: u64, kind: WindowType) -> bool {
        let length_ms = length_ms.max(1);
        self.roll(now_ms / length_ms);
        if self.estimate(now_ms, length_ms, kind) >= limit {
            return false;
        }
        self.current += 1;
        true
    }

    /// The count (fixed) or estimate (sliding) at `now_ms`.
    pub fn estimate(&self, now_ms: u64, length_ms: u64, kind: WindowType) -> u64 {
        match kind {
            WindowType::Fixed => self.current,
            WindowType::Sliding => {
                let elapsed = now_ms % length_ms;
                let weight = (length_ms - elapsed) as u128;
                (self.previous as u128 * weight / length_ms as u128) as u64 + self.current
            }
        }
    }

    fn roll(&mut self, index: u64) {
        if index == self.index {
            return;
        }
        self.previous = if index == self.index + 1 {
            self.current
        } else {
            0
        };
        self.current = 0;
        self.index = index;
    }
}

/// Shards of the shared counters: enough that workers on different cores
/// rarely wait for the same lock.
const SHARDS: usize = 16;

/// Keys kept per shard before stale ones are swept.
const SWEEP_ABOVE: usize = 4096;

/// One key's counts: the admission view (this gateway's messages plus
/// what the cluster reported), and this gateway's messages not yet
/// pushed to the cluster, for the current and the previous window.
#[derive(Debug, Default)]
struct Tally {
    slot: Slot,
    unsynced: u64,
    unsynced_previous: u64,
}

impl Tally {
    fn admit(&mut self, now_ms: u64, length_ms: u64, limit: u64, kind: WindowType) -> bool {
        let index = self.slot.index;
        let admitted = self.slot.admit(now_ms, length_ms, limit, kind);
        self.follow(index);
        self.unsynced += u64::from(admitted);
        admitted
    }

    /// Moves the unsynced counts along after the slot rolled on from
    /// window `index`.
    fn follow(&mut self, index: u64) {
        if self.slot.index != index {
            self.unsynced_previous = if self.slot.index == index + 1 {
                self.unsynced
            } else {
                0
            };
            self.unsynced = 0;
        }
    }
}

/// A key's messages not yet pushed to the cluster, in the current window
/// and the previous one.
#[derive(Debug)]
pub(crate) struct Unsynced {
    pub(crate) key: Box<str>,
    pub(crate) current: u64,
    pub(crate) previous: u64,
}

/// Message counters per key, shared by every connection of a plugin
/// instance.
#[derive(Debug)]
pub struct LocalCounters {
    length_ms: u64,
    shards: Vec<Mutex<HashMap<Box<str>, Tally>>>,
}

impl LocalCounters {
    /// Counters for windows of `length`.
    pub fn new(length: Duration) -> Self {
        LocalCounters {
            length_ms: (length.as_millis() as u64).max(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The window length in milliseconds.
    pub fn length_ms(&self) -> u64 {
        self.length_ms
    }

    /// Counts one message for `key` at `now_ms`; whether it is within
    /// `limit`.
    pub fn admit(&self, key: &str, now_ms: u64, limit: u64, kind: WindowType) -> bool {
        let mut shard = lock(&self.shards[shard_of(key)]);
        if shard.len() > SWEEP_ABOVE {
            // Keys idle for two windows count nothing any more.
            let index = now_ms / self.length_ms;
            shard.retain(|_, tally| tally.slot.index + 1 >= index);
        }
        match shard.get_mut(key) {
            Some(tally) => tally.admit(now_ms, self.length_ms, limit, kind),
            None => {
                let mut tally = Tally::default();
                let admitted = tally.admit(now_ms, self.length_ms, limit, kind);
                shard.insert(key.into(), tally);
                admitted
            }
        }
    }

    /// What the keys counted in window `index` or the one before have not
    /// yet pushed to the cluster (zero counts too: the sync also pulls
    /// what the other gateways counted).
    pub(crate) fn unsynced(&self, index: u64) -> Vec<Unsynced> {
        let mut batch = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            for (key, tally) in shard.iter_mut() {
                let at = tally.slot.index;
                if at + 1 < index {
                    continue;
                }
                tally.slot.roll(index);
                tally.follow(at);
                batch.push(Unsynced {
                    key: key.clone(),
                    current: tally.unsynced,
                    previous: tally.unsynced_previous,
                });
            }
        }
        batch
    }

    /// Takes the cluster's totals for `item`'s key in window `index` (and
    /// the previous one), which include `item`'s counts: they become the
    /// admission view, plus what was counted here since.
    pub(crate) fn synced(&self, index: u64, item: Unsynced, current: u64, previous: Option<u64>) {
        let mut shard = lock(&self.shards[shard_of(&item.key)]);
        let Some(tally) = shard.get_mut(&item.key) else {
            return;
        };
        if tally.slot.index == index {
            tally.unsynced = tally.unsynced.saturating_sub(item.current);
            tally.unsynced_previous = tally.unsynced_previous.saturating_sub(item.previous);
            tally.slot.current = current + tally.unsynced;
            if let Some(previous) = previous {
                tally.slot.previous = previous + tally.unsynced_previous;
            }
        } else if tally.slot.index == index + 1 {
            tally.unsynced_previous = tally.unsynced_previous.saturating_sub(item.current);
            tally.slot.previous = current + tally.unsynced_previous;
        }
    }
}

fn shard_of(key: &str) -> usize {
    (fnv1a(key) % SHARDS as u64) as usize
}

/// FNV-1a: a fixed hash, the same in every process and build.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Open connections per key, shared by every connection of a plugin
/// instance; each is held by a [`Lease`] and released when it drops.
#[derive(Debug, Default)]
pub struct LocalLeases {
    open: Mutex<HashMap<Box<str>, u64>>,
    /// With `policy = "redis"`: keys whose count fell since the cluster
    /// was last told, and the bell that wakes the thread that tells it.
    reporting: bool,
    changed: Mutex<HashSet<Box<str>>>,
    bell: Arc<tokio::sync::Notify>,
}

/// One open connection counted against its key until dropped.
#[derive(Debug)]
pub struct Lease {
    leases: Arc<LocalLeases>,
    key: Box<str>,
}

impl LocalLeases {
    /// Leases whose releases are reported to the cluster.
    pub(crate) fn reporting() -> Self {
        LocalLeases {
            reporting: true,
            ..LocalLeases::default()
        }
    }

    /// Takes a lease for `key` unless `limit` are already open.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use frameway_gateway::limits::LocalLeases;
    ///
    /// let leases = Arc::new(LocalLeases::default());
    /// let first = LocalLeases::acquire(&leases, "alice", 1).unwrap();
    /// assert!(LocalLeases::acquire(&leases, "alice", 1).is_none());
    /// drop(first);
    /// assert!(LocalLeases::acquire(&leases, "alice", 1).is_some());
    /// ```
    pub fn acquire(leases: &Arc<LocalLeases>, key: &str, limit: u64) -> Option<Lease> {
        let mut open = lock(&leases.open);
        let count = open.entry(key.into()).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(Lease {
            leases: leases.clone(),
            key: key.into(),
        })
    }

    /// Takes a lease for `key` whatever the count: the cluster, not this
    /// process, decides.
    pub(crate) fn take(leases: &Arc<LocalLeases>, key: &str) -> Lease {
        *lock(&leases.open).entry(key.into()).or_insert(0) += 1;
        Lease {
            leases: leases.clone(),
            key: key.into(),
        }
    }

    /// How many leases `key` holds.
    pub fn open(&self, key: &str) -> u64 {
        lock(&self.open).get(key).copied().unwrap_or(0)
    }

    /// The keys holding leases.
    pub(crate) fn keys(&self) -> Vec<Box<str>> {
        lock(&self.open).keys().cloned().collect()
    }

    /// The keys whose count fell since the last call.
    pub(crate) fn take_changed(&self) -> HashSet<Box<str>> {
        std::mem::take(&mut *lock(&self.changed))
    }

    /// Rings when a count falls.
    pub(crate) fn bell(&self) -> Arc<tokio::sync::Notify> {
        self.bell.clone()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut open = lock(&self.leases.open);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
        drop(open);
        if self.leases.reporting {
            lock(&self.leases.changed).insert(self.key.clone());
            self.leases.bell.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sliding_window_weighs_the_previous_window_by_what_it_still_covers() {
        let mut slot = Slot::default();
        for _ in 0..10 {
            assert!(slot.admit(1_000, 1000, 10, WindowType::Sliding));
        }
        // A quarter into the next second, three quarters of the previous
        // ten still count: 7 (7.5 rounded down) + 0 < 10, so three more.
        for _ in 0..3 {
            assert!(slot.admit(2_250, 1000, 10, WindowType::Sliding));
        }
        assert!(!slot.admit(2_250, 1000, 10, WindowType::Sliding));
        // A fixed window would have allowed ten at once.
        let mut fixed = Slot::default();
        for _ in 0..10 {
            assert!(fixed.admit(1_999, 1000, 10, WindowType::Fixed));
        }
        for _ in 0..10 {
            assert!(fixed.admit(2_000, 1000, 10, WindowType::Fixed));
        }
        // After a whole idle window nothing is carried over.
        assert_eq!(slot.estimate(2_250, 1000, WindowType::Sliding), 10);
        slot.roll(4);
        assert_eq!(slot.estimate(4_000, 1000, WindowType::Sliding), 0);
    }

    #[test]
    fn the_clusters_totals_replace_what_was_pushed_and_keep_what_came_since() {
        let counters = LocalCounters::new(Duration::from_secs(1));
        for _ in 0..3 {
            assert!(counters.admit("k", 5_100, 100, WindowType::Fixed));
        }
        let mut batch = counters.unsynced(5);
        assert_eq!((batch[0].current, batch[0].previous), (3, 0));
        // Two more arrive while the exchange is on its way; Redis answers
        // 40 in this window (these 3 and 37 from elsewhere), 500 before.
        for _ in 0..2 {
            assert!(counters.admit("k", 5_200, 100, WindowType::Fixed));
        }
        counters.synced(5, batch.remove(0), 40, Some(500));
        let tally = |c: &LocalCounters| {
            let shard = lock(&c.shards[shard_of("k")]);
            let t = &shard["k"];
            (t.slot.current, t.slot.previous, t.unsynced)
        };
        assert_eq!(tally(&counters), (42, 500, 2));
        // Only the two not yet pushed go in the next exchange.
        assert_eq!(counters.unsynced(5)[0].current, 2);
        // A window later they are the previous window's, still owed.
        let next = counters.unsynced(6);
        assert_eq!((next[0].current, next[0].previous), (0, 2));
    }

    #[test]
    fn local_counters_are_per_key_and_forget_idle_keys() {
        let counters = LocalCounters::new(Duration::from_secs(1));
        assert!(counters.admit("a", 1_000, 1, WindowType::Fixed));
        assert!(!counters.admit("a", 1_500, 1, WindowType::Fixed));
        assert!(counters.admit("b", 1_500, 1, WindowType::Fixed));
        for n in 0..(SWEEP_ABOVE * SHARDS * 2) {
            counters.admit(&format!("ip-{n}"), 1_000, 1, WindowType::Fixed);
        }
        counters.admit("late", 9_000, 1, WindowType::Fixed);
        let kept: usize = counters.shards.iter().map(|s| lock(s).len()).sum();
        assert!(kept < SWEEP_ABOVE * SHARDS * 2, "{kept} keys kept");
    }
}
