//! Host names in targets: resolved at load and again every `dns_refresh`.
//! Every address a name resolves to is a target of the name's weight (a
//! Kubernetes headless service works unchanged). A failed resolution keeps
//! the last good answer and is logged.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Pool, Target, TargetSpec};

/// Resolves `spec` now (blocking: at configuration load).
pub(super) fn resolve_now(spec: &TargetSpec) -> std::io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = spec.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, spec.port)]);
    }
    let mut addrs: Vec<SocketAddr> = (spec.host.as_str(), spec.port).to_socket_addrs()?.collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// Resolves the pool's host names every `every` until the pool is gone.
pub(super) async fn refresh(pool: Weak<Pool>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        for spec in pool
            .specs
            .iter()
            .filter(|s| s.host.parse::<IpAddr>().is_err())
        {
            let name = (spec.host.clone(), spec.port);
            match tokio::net::lookup_host(name).await {
                Ok(addrs) => pool.set_addresses(spec, addrs.collect()),
                Err(e) => tracing::warn!(upstream = %pool.name, target = %spec.name,
                    "cannot resolve, keeping the last answer: {e}"),
            }
        }
    }
}

impl Pool {
    /// Makes `addrs` the addresses of `spec`: targets that stay keep their
    /// sessions and health, new ones start healthy, gone ones take no new
    /// connections (their open sessions go on).
    pub(crate) fn set_addresses(&self, spec: &Arc<TargetSpec>, mut addrs: Vec<SocketAddr>) {
        addrs.sort();
        addrs.dedup();
        let mut targets = frameway::sync::write(&self.targets);
        let same_spec = |t: &Arc<Target>| Arc::ptr_eq(&t.spec, spec);
        let unchanged = {
            let mut now: Vec<SocketAddr> = targets
                .iter()
                .filter(|t| same_spec(t))
                .map(|t| t.addr)
                .collect();
            now.sort();
            now == addrs
        };
        if unchanged {
            return;
        }
        tracing::info!(upstream = %self.name, target = %spec.name, ?addrs, "target addresses changed");
        let mut next: Vec<Arc<Target>> = targets
            .iter()
            .filter(|t| !same_spec(t) || addrs.contains(&t.addr))
            .cloned()
            .collect();
        for addr in addrs {
            if !next.iter().any(|t| same_spec(t) && t.addr == addr) {
                next.push(Arc::new(Target::new(spec.clone(), addr)));
            }
        }
        *targets = next.into();
    }
}
