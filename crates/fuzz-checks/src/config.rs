//! `config`: the gateway's TOML configuration loader on arbitrary text.
//!
//! Asserts: a refused file has at least one error, each pointing inside
//! the text, in file order; an accepted one has a listener, limits within
//! the ceiling, routes whose paths start with `/` and whose hosts are
//! lower-case, and every route is reachable: a request for one of its paths
//! (with one of its hosts) is routed to a route at least as specific.
//!
//! `websocket-log` is replaced by a plugin that does nothing: it creates
//! the file its `path` names when the configuration loads, and a fuzzer
//! must not write files wherever its input says.

use std::sync::Arc;

use frameway_gateway::config::{Config, MAX_PAYLOAD_CEILING};
use frameway_gateway::plugin::{Plugin, Registry};
use frameway_gateway::router::RoutePath;

/// The check; see the module documentation.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let config = match Config::parse(&text, "fuzz", &registry()) {
        Ok(config) => config,
        Err(errors) => {
            assert!(!errors.errors.is_empty(), "refused without a reason");
            let lines = text.split('\n').count();
            for e in &errors.errors {
                if let Some((line, col)) = e.location {
                    assert!(
                        (1..=lines).contains(&line) && col >= 1,
                        "{e} in {lines} lines"
                    );
                }
            }
            let located: Vec<_> = errors.errors.iter().map(|e| e.location).collect();
            assert!(located.is_sorted(), "errors out of file order: {located:?}");
            return;
        }
    };
    assert!(!config.listen.is_empty() || !config.tls_listen.is_empty());
    for limit in [config.client_max_payload, config.upstream_max_payload] {
        assert!((1..=MAX_PAYLOAD_CEILING).contains(&limit));
    }
    let router = &config.router;
    for route in router.routes() {
        assert!(!route.paths.is_empty() || !route.hosts.is_empty());
        let host = route.hosts.first().map(|h| match h.strip_prefix("*.") {
            Some(domain) => format!("w.{domain}"),
            None => h.clone(),
        });
        assert!(route.hosts.iter().all(|h| *h == h.to_ascii_lowercase()));
        let mut paths: Vec<&str> = route
            .paths
            .iter()
            .filter_map(|p| match p {
                RoutePath::Prefix(prefix) => Some(prefix.as_str()),
                RoutePath::Regex(_) => None,
            })
            .collect();
        if route.paths.is_empty() {
            paths.push("/");
        }
        for path in paths {
            assert!(path.starts_with('/'));
            // `?` would start the query and `#` is no part of a target.
            if path.contains(['?', '#']) {
                continue;
            }
            // Another route may rank higher (more kinds of condition), but
            // some route must take a request this one accepts.
            let matched = router
                .find(host.as_deref(), path, &http::HeaderMap::new())
                .unwrap_or_else(|| panic!("route {} unreachable at {path}", route.name));
            assert!(
                matched.route.paths.is_empty()
                    || matched.route.paths.iter().any(|p| match p {
                        RoutePath::Prefix(prefix) => path.starts_with(prefix.as_str()),
                        RoutePath::Regex(regex) => regex.is_match(path),
                    }),
                "{path} went to {}, whose paths do not match it",
                matched.route.name
            );
        }
    }
}

fn registry() -> Registry {
    let mut registry = Registry::with_builtins();
    registry.register(
        "websocket-log",
        Arc::new(|_| Ok(Arc::new(Inert) as Arc<dyn Plugin>)),
    );
    registry
}

struct Inert;

impl Plugin for Inert {
    fn name(&self) -> &str {
        "websocket-log"
    }
}
