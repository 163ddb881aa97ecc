//! Target health: passive (what real connections tell) and active (probes
//! the gateway sends).
//!
//! A target takes new connections while both say it may. Passive checks
//! count consecutive failures of real connections (refused, timed out, TLS,
//! 5xx to the upgrade) and skip the target for `unhealthy_timeout` once
//! there are `failures` of them. Active checks probe every target each
//! `interval`; `unhealthy.failures` failed probes in a row take it out,
//! `healthy.successes` good ones bring it back (and end a passive
//! timeout early). Sessions open on a target that becomes unhealthy are
//! left alone: they are the backend's to end.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Pool, Target};
use frameway::sync::lock;

/// Passive health checking of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveCheck {
    /// Consecutive failures that make a target unhealthy (0: never).
    pub failures: u32,
    /// How long it is then skipped.
    pub unhealthy_timeout: Duration,
}

/// What an active probe does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeKind {
    /// Opens a TCP connection.
    Tcp,
    /// `GET http_path`; success is one of the expected statuses.
    Http,
    /// An upgrade on `http_path`, then a close.
    WebSocket,
}

impl ProbeKind {
    /// Parses the configuration's name.
    pub fn parse(name: &str) -> Option<ProbeKind> {
        match name {
            "tcp" => Some(ProbeKind::Tcp),
            "http" => Some(ProbeKind::Http),
            "websocket" => Some(ProbeKind::WebSocket),
            _ => None,
        }
    }
}

/// Active health checking of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCheck {
    /// What a probe does.
    pub kind: ProbeKind,
    /// The path `http` and `websocket` probes ask for.
    pub http_path: String,
    /// Time between probes.
    pub interval: Duration,
    /// Time a probe may take.
    pub timeout: Duration,
    /// Good probes in a row that make a target healthy again.
    pub successes: u32,
    /// Failed probes in a row that make it unhealthy (0: never).
    pub failures: u32,
    /// Statuses an `http` probe accepts (empty: 200-399).
    pub http_statuses: Vec<u16>,
}

/// What the checks know about one target.
#[derive(Debug)]
pub(super) struct Health {
    passive_failures: AtomicU32,
    unhealthy_until: Mutex<Option<Instant>>,
    active_healthy: AtomicBool,
    /// Consecutive good (positive) or failed (negative) probes; only the
    /// probing task writes it.
    active_streak: Mutex<i64>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            passive_failures: AtomicU32::new(0),
            unhealthy_until: Mutex::new(None),
            active_healthy: AtomicBool::new(true),
            active_streak: Mutex::new(0),
        }
    }
}

impl Health {
    pub(super) fn is_healthy(&self) -> bool {
        self.active_healthy.load(Relaxed)
            && lock(&self.unhealthy_until).is_none_or(|until| Instant::now() >= until)
    }

    /// Counts a failure; true when it made the target unhealthy.
    pub(super) fn passive_failure(&self, check: &PassiveCheck) -> bool {
        if check.failures == 0 {
            return false;
        }
        let failures = self.passive_failures.fetch_add(1, Relaxed) + 1;
        if failures < check.failures {
            return false;
        }
        self.passive_failures.store(0, Relaxed);
        *lock(&self.unhealthy_until) = Some(Instant::now() + check.unhealthy_timeout);
        true
    }

    pub(super) fn passive_success(&self) {
        self.passive_failures.store(0, Relaxed);
    }

    /// Records a probe's result; the new state when it changed.
    fn probed(&self, ok: bool, check: &ActiveCheck) -> Option<bool> {
        let mut streak = lock(&self.active_streak);
        *streak = match (ok, *streak) {
            (true, s) if s > 0 => s + 1,
            (true, _) => 1,
            (false, s) if s < 0 => s - 1,
            (false, _) => -1,
        };
        let healthy = self.active_healthy.load(Relaxed);
        if !healthy && ok && *streak >= i64::from(check.successes.max(1)) {
            self.active_healthy.store(true, Relaxed);
            *lock(&self.unhealthy_until) = None;
            return Some(true);
        }
        if healthy && !ok && check.failures > 0 && -*streak >= i64::from(check.failures) {
            self.active_healthy.store(false, Relaxed);
            return Some(false);
        }
        None
    }
}

/// Probes every target of the pool each `interval` until the pool is gone.
pub(super) async fn probe(pool: Weak<Pool>, check: ActiveCheck) {
    let mut every = tokio::time::interval(check.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let mut probes = tokio::task::JoinSet::new();
        for target in pool.targets().iter().cloned() {
            let check = check.clone();
            probes.spawn(async move {
                let ok = tokio::time::timeout(check.timeout, probe_once(&target, &check))
                    .await
                    .unwrap_or(false);
                (target, ok)
            });
        }
        while let Some(Ok((target, ok))) = probes.join_next().await {
            if let Some(healthy) = target.health.probed(ok, &check) {
                tracing::warn!(upstream = %pool.name, target = %target.spec.name, addr = %target.addr,
                    "active health check: target {}", if healthy { "healthy again" } else { "unhealthy" });
            }
        }
    }
}

async fn probe_once(target: &Target, check: &ActiveCheck) -> bool {
    match check.kind {
        ProbeKind::Tcp => TcpStream::connect(target.addr).await.is_ok(),
        ProbeKind::Http => http_probe(target, check).await.unwrap_or(false),
        ProbeKind::WebSocket => {
            let url = format!("ws://{}{}", target.addr, check.http_path);
            let options = frameway::client::ConnectOptions::default().host(&target.spec.name);
            match frameway::client::connect_with(&url, options).await {
                Ok((mut ws, _)) => {
                    let _ = ws.close(frameway::CloseCode::NORMAL, "health check").await;
                    true
                }
                Err(_) => false,
            }
        }
    }
}

async fn http_probe(target: &Target, check: &ActiveCheck) -> std::io::Result<bool> {
    let mut tcp = TcpStream::connect(target.addr).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: frameway-health-check\r\nConnection: close\r\n\r\n",
        check.http_path, target.spec.name
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await?;
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse::<u16>().ok());
    Ok(match status {
        Some(status) if check.http_statuses.is_empty() => (200..400).contains(&status),
        Some(status) => check.http_statuses.contains(&status),
        None => false,
    })
}
