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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::plugin::{HandshakeContext, PluginConfigError};
use frameway::sync::lock;

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
    /// In Redis, shared by a cluster of gateways.
    Redis,
}

impl Policy {
    /// Whether this build can count this way.
    pub fn check(self) -> Result<(), PluginConfigError> {
        match self {
            Policy::Local => Ok(()),
            Policy::Redis => Err(PluginConfigError(
                "policy = \"redis\" is not available in this build yet; use \"local\" \
                 (counts shared by this process's workers)"
                    .into(),
            )),
        }
    }
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

    /// Adds `n` messages counted elsewhere (another gateway) to the
    /// window `index`, if it is the current or the previous one.
    pub fn add(&mut self, index: u64, n: u64) {
        self.roll(index.max(self.index));
        if index == self.index {
            self.current += n;
        } else if index + 1 == self.index {
            self.previous += n;
        }
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

/// Message counters per key, shared by every connection of a plugin
/// instance.
#[derive(Debug)]
pub struct LocalCounters {
    length_ms: u64,
    shards: Vec<Mutex<HashMap<Box<str>, Slot>>>,
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
            shard.retain(|_, slot| slot.index + 1 >= index);
        }
        match shard.get_mut(key) {
            Some(slot) => slot.admit(now_ms, self.length_ms, limit, kind),
            None => {
                let mut slot = Slot::default();
                let admitted = slot.admit(now_ms, self.length_ms, limit, kind);
                shard.insert(key.into(), slot);
                admitted
            }
        }
    }
}

fn shard_of(key: &str) -> usize {
    // FNV-1a: a fixed hash is enough to spread keys over the shards.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    (hash % SHARDS as u64) as usize
}

/// Open connections per key, shared by every connection of a plugin
/// instance; each is held by a [`Lease`] and released when it drops.
#[derive(Debug, Default)]
pub struct LocalLeases {
    open: Mutex<HashMap<Box<str>, u64>>,
}

/// One open connection counted against its key until dropped.
#[derive(Debug)]
pub struct Lease {
    leases: Arc<LocalLeases>,
    key: Box<str>,
}

impl LocalLeases {
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

    /// How many leases `key` holds.
    pub fn open(&self, key: &str) -> u64 {
        lock(&self.open).get(key).copied().unwrap_or(0)
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
        slot.add(4, 0);
        assert_eq!(slot.estimate(4_000, 1000, WindowType::Sliding), 0);
    }

    #[test]
    fn counts_from_elsewhere_land_in_their_window() {
        let mut slot = Slot::default();
        assert!(slot.admit(5_100, 1000, 100, WindowType::Fixed));
        slot.add(5, 40);
        slot.add(4, 1000);
        assert_eq!(slot.estimate(5_500, 1000, WindowType::Fixed), 41);
        assert_eq!(slot.estimate(5_500, 1000, WindowType::Sliding), 541);
        // An old window's count is ignored.
        slot.add(2, 7);
        assert_eq!(slot.estimate(5_500, 1000, WindowType::Fixed), 41);
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
