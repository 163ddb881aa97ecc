//! Checking `[[upstreams]]` into balancer pools.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;

use super::schema::{HealthchecksSection, UpstreamSection};
use super::{Loader, MAX_TIMER_MS};
use crate::balancer::{
    ActiveCheck, Algorithm, HashOn, PassiveCheck, Pool, PoolConfig, ProbeKind, TargetSpec,
};

/// The most targets one upstream may list.
const MAX_TARGETS: usize = 1000;

impl Loader<'_> {
    /// Every valid upstream by name (errors recorded for the others).
    pub(super) fn upstreams(&mut self, list: &[UpstreamSection]) -> HashMap<String, Arc<Pool>> {
        let mut pools = HashMap::new();
        for u in list {
            let name = u.name.get_ref();
            if pools.contains_key(name) {
                self.error(
                    Some(u.name.span()),
                    format!("duplicate upstream name {name:?}"),
                );
                continue;
            }
            if let Some(config) = self.upstream(u) {
                pools.insert(name.clone(), Arc::new(Pool::new(config)));
            }
        }
        pools
    }

    fn upstream(&mut self, u: &UpstreamSection) -> Option<PoolConfig> {
        let before = self.errors.len();
        let name = u.name.get_ref();
        if name.is_empty() || name.contains(['/', ':', ' ', '@']) {
            self.error(
                Some(u.name.span()),
                format!("upstream name {name:?} must be a host name (it stands for one in service URLs)"),
            );
        }
        let algorithm = match &u.algorithm {
            None => Algorithm::RoundRobin,
            Some(a) => Algorithm::parse(a.get_ref()).unwrap_or_else(|| {
                self.error(
                    Some(a.span()),
                    format!(
                        "algorithm {:?}: use round-robin, least-connections or consistent-hashing",
                        a.get_ref()
                    ),
                );
                Algorithm::RoundRobin
            }),
        };
        let hash_on = self.hash_on(
            &u.hash_on,
            [&u.hash_on_header, &u.hash_on_cookie, &u.hash_on_query_arg],
            "hash_on",
        );
        let hash_fallback = self.hash_on(
            &u.hash_fallback,
            [
                &u.hash_fallback_header,
                &u.hash_fallback_cookie,
                &u.hash_fallback_query_arg,
            ],
            "hash_fallback",
        );
        if hash_on != HashOn::None && algorithm != Algorithm::ConsistentHashing {
            self.error(
                u.hash_on.as_ref().map(Spanned::span),
                "hash_on needs algorithm = \"consistent-hashing\"",
            );
        }
        if u.targets.is_empty() || u.targets.len() > MAX_TARGETS {
            self.error(
                Some(u.name.span()),
                format!("upstream {name:?} needs 1 to {MAX_TARGETS} targets"),
            );
        }
        let mut targets = Vec::new();
        for t in &u.targets {
            let Some((host, port)) = split_target(t.target.get_ref()) else {
                self.error(
                    Some(t.target.span()),
                    format!(
                        "target {:?} must be host:port (or [v6]:port)",
                        t.target.get_ref()
                    ),
                );
                continue;
            };
            if *t.weight.get_ref() > 65_535 {
                self.error(Some(t.weight.span()), "weight must be from 0 to 65535");
                continue;
            }
            targets.push(TargetSpec {
                name: t.target.get_ref().clone(),
                host,
                port,
                weight: *t.weight.get_ref() as u32,
            });
        }
        if !(1_000..=MAX_TIMER_MS).contains(&u.dns_refresh) {
            self.error(
                Some(u.name.span()),
                format!("upstream {name:?}: dns_refresh must be from 1000 to {MAX_TIMER_MS} ms"),
            );
        }
        let (passive, active) = self.healthchecks(&u.healthchecks, &u.name);
        if self.errors.len() > before {
            return None;
        }
        Some(PoolConfig {
            name: name.clone(),
            algorithm,
            hash_on,
            hash_fallback,
            targets,
            dns_refresh: Duration::from_millis(u.dns_refresh),
            passive,
            active,
        })
    }

    fn hash_on(
        &mut self,
        kind: &Option<Spanned<String>>,
        [header, cookie, query_arg]: [&Option<Spanned<String>>; 3],
        key: &str,
    ) -> HashOn {
        let Some(kind) = kind else {
            return HashOn::None;
        };
        let mut named = |field: &Option<Spanned<String>>, what: &str| match field {
            Some(value) if !value.get_ref().is_empty() => Some(value.get_ref().clone()),
            _ => {
                self.error(
                    Some(kind.span()),
                    format!("{key} = {:?} needs {key}_{what}", kind.get_ref()),
                );
                None
            }
        };
        match kind.get_ref().as_str() {
            "none" => HashOn::None,
            "ip" => HashOn::Ip,
            "path" => HashOn::Path,
            "header" => match named(header, "header")
                .map(|h| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()))
            {
                Some(Ok(name)) => HashOn::Header(name),
                Some(Err(_)) => {
                    self.error(
                        Some(kind.span()),
                        format!("{key}_header is not a header name"),
                    );
                    HashOn::None
                }
                None => HashOn::None,
            },
            "cookie" => named(cookie, "cookie").map_or(HashOn::None, HashOn::Cookie),
            "query_arg" => named(query_arg, "query_arg").map_or(HashOn::None, HashOn::QueryArg),
            other => {
                self.error(
                    Some(kind.span()),
                    format!("{key} {other:?}: use none, ip, header, cookie, query_arg or path"),
                );
                HashOn::None
            }
        }
    }

    fn healthchecks(
        &mut self,
        h: &HealthchecksSection,
        name: &Spanned<String>,
    ) -> (PassiveCheck, Option<ActiveCheck>) {
        let what = format!("upstream {:?}", name.get_ref());
        if h.passive.unhealthy_timeout == 0 || h.passive.unhealthy_timeout > MAX_TIMER_MS {
            self.error(
                Some(name.span()),
                format!("{what}: passive unhealthy_timeout must be from 1 to {MAX_TIMER_MS} ms"),
            );
        }
        let passive = PassiveCheck {
            failures: h.passive.unhealthy.failures,
            unhealthy_timeout: Duration::from_millis(h.passive.unhealthy_timeout),
        };
        let active = h.active.as_ref().map(|a| {
            let kind = match &a.kind {
                None => ProbeKind::WebSocket,
                Some(k) => ProbeKind::parse(k.get_ref()).unwrap_or_else(|| {
                    self.error(
                        Some(k.span()),
                        format!(
                            "active check type {:?}: use tcp, http or websocket",
                            k.get_ref()
                        ),
                    );
                    ProbeKind::Tcp
                }),
            };
            for (value, key) in [(a.interval, "interval"), (a.timeout, "timeout")] {
                if value == 0 || value > MAX_TIMER_MS {
                    self.error(
                        Some(name.span()),
                        format!("{what}: active {key} must be from 1 to {MAX_TIMER_MS} ms"),
                    );
                }
            }
            if !a.http_path.starts_with('/') {
                self.error(
                    Some(name.span()),
                    format!("{what}: active http_path must start with /"),
                );
            }
            let statuses = a.healthy.http_statuses.clone().unwrap_or_default();
            if statuses.iter().any(|s| !(100..=599).contains(s)) {
                self.error(
                    Some(name.span()),
                    format!("{what}: http_statuses must be HTTP statuses (100-599)"),
                );
            }
            ActiveCheck {
                kind,
                http_path: a.http_path.clone(),
                interval: Duration::from_millis(a.interval.max(1)),
                timeout: Duration::from_millis(a.timeout.max(1)),
                successes: a.healthy.successes.max(1),
                failures: a.unhealthy.failures,
                http_statuses: statuses,
            }
        });
        (passive, active)
    }
}

/// `host:port` or `[v6]:port`.
fn split_target(target: &str) -> Option<(String, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')?
            .parse::<std::net::Ipv6Addr>()
            .ok()?
            .to_string(),
        None if !host.is_empty() && !host.contains([':', '/', ' ']) => host.to_owned(),
        None => return None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::plugin::Registry;

    fn errors(upstream: &str) -> String {
        let text = format!(
            "[[upstreams]]\n{upstream}\n\n[[services]]\nname = \"s\"\nurl = \"ws://backends/\"\n  [[services.routes]]\n  name = \"r\"\n  paths = [\"/\"]\n"
        );
        match Config::parse(&text, "t.toml", &Registry::with_builtins()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_mistake_in_an_upstream_is_reported_with_its_line() {
        let said = errors(
            "name = \"backends\"\nalgorithm = \"fastest\"\nhash_on = \"header\"\ntargets = [{ target = \"nohost\" }, { target = \"h:1\", weight = 70000 }]",
        );
        for expected in [
            "t.toml:3:13: algorithm \"fastest\"",
            "t.toml:4:11: hash_on = \"header\" needs hash_on_header",
            "t.toml:5:23: target \"nohost\" must be host:port",
            "weight must be from 0 to 65535",
        ] {
            assert!(said.contains(expected), "{expected} missing from:\n{said}");
        }
    }

    #[test]
    fn a_service_whose_host_names_an_upstream_is_balanced_and_others_are_not() {
        let text = "[[upstreams]]\nname = \"backends\"\ntargets = [{ target = \"127.0.0.1:9\" }, { target = \"[::1]:9\", weight = 0 }]\n\n\
            [[services]]\nname = \"s\"\nurl = \"ws://backends/\"\n  [[services.routes]]\n  name = \"r\"\n  paths = [\"/\"]\n\n\
            [[services]]\nname = \"plain\"\nurl = \"ws://127.0.0.1:9/\"\n  [[services.routes]]\n  name = \"p\"\n  paths = [\"/p\"]\n";
        let config = Config::parse(text, "t.toml", &Registry::with_builtins()).unwrap();
        let routes = config.router.routes();
        let service = |name: &str| {
            routes
                .iter()
                .find(|r| r.service.name == name)
                .unwrap()
                .service
                .clone()
        };
        assert_eq!(service("s").retries, 5, "Kong's default");
        let pool = service("s").pool.clone().expect("balanced");
        assert_eq!(pool.targets().len(), 2);
        assert!(service("plain").pool.is_none());
        assert_eq!(config.upstreams.len(), 1);
    }
}
