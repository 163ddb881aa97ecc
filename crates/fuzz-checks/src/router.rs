//! `router`: the gateway's [`Router`](frameway_gateway::router::Router)
//! on a routing table and a request both drawn from the input.
//!
//! The table is written as a configuration file, which must load (it is
//! valid by construction). Asserts, for any host and request target: a
//! route is found exactly when one matches; the one found matches and no
//! matching route ranks higher by Kong's order (kinds of condition, then
//! hosts without wildcards, then the longer path prefix); host case and
//! port do not change the choice; the upstream target starts with the
//! service's path and keeps the query as it came.

use frameway_gateway::config::Config;
use frameway_gateway::plugin::Registry;
use frameway_gateway::router::{Route, RoutePath};

use crate::Input;

const URLS: [&str; 4] = [
    "ws://127.0.0.1:1",
    "ws://127.0.0.1:2/base",
    "ws://127.0.0.1:3/base/",
    "internal://echo",
];
const HOSTS: [&str; 4] = [
    "a.example.com",
    "*.example.com",
    "b.example.com",
    "Mixed.Example.com",
];

/// The check; see the module documentation.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let text = table(&mut input);
    let config = Config::parse(&text, "fuzz", &Registry::new())
        .unwrap_or_else(|e| panic!("a valid table is refused: {e}\n{text}"));
    let router = &config.router;

    let host = match input.byte() % 4 {
        0 => None,
        1 => Some(
            input
                .pick(&[
                    "a.example.com",
                    "x.example.com",
                    "b.example.com:8080",
                    "[::1]:80",
                ])
                .to_owned(),
        ),
        _ => Some(String::from_utf8_lossy(input.bytes()).into_owned()),
    };
    let target = String::from_utf8_lossy(input.rest()).into_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target.as_str(), None),
    };
    let found = router.find(host.as_deref(), &target, &http::HeaderMap::new());
    let best = router
        .routes()
        .iter()
        .filter_map(|r| rank(r, host.as_deref(), path))
        .max();
    let Some(matched) = found else {
        assert_eq!(best, None, "no route found for {host:?} {target:?}");
        return;
    };
    let found_rank = rank(&matched.route, host.as_deref(), path)
        .unwrap_or_else(|| panic!("{} does not match {host:?} {target:?}", matched.route.name));
    assert_eq!(
        Some(found_rank),
        best,
        "a higher-ranked route was passed over"
    );

    let base = matched.route.service.upstream.path().trim_end_matches('/');
    assert!(matched.upstream_target.starts_with('/'));
    assert!(matched.upstream_target.starts_with(base), "{matched:?}");
    if let Some(query) = query {
        assert!(matched.upstream_target.ends_with(&format!("?{query}")));
    }

    if let Some(host) = host.as_deref().filter(|h| !h.contains([':', '['])) {
        let none = http::HeaderMap::new();
        let name = |h: &str| {
            router
                .find(Some(h), &target, &none)
                .map(|m| m.route.name.clone())
        };
        let chosen = Some(matched.route.name.clone());
        assert_eq!(name(&host.to_ascii_uppercase()), chosen, "host case");
        assert_eq!(name(&format!("{host}:8443")), chosen, "host port");
    }
}

/// How `route` ranks for `host` and `path`, if it accepts them: how many
/// kinds of condition it has, whether its hosts are all without a
/// wildcard, and the length of the longest of its paths that prefixes
/// `path`.
fn rank(route: &Route, host: Option<&str>, path: &str) -> Option<(usize, bool, usize)> {
    if !route.hosts.is_empty() {
        let host = host?;
        // The port goes; an IPv6 literal keeps its colons.
        let host = match host.find(']') {
            Some(end) if host.starts_with('[') => &host[..=end],
            _ if host.starts_with('[') => host,
            _ => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let host = host.to_ascii_lowercase();
        let accepted = route.hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(domain) => host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}")),
            None => *h == host,
        });
        if !accepted {
            return None;
        }
    }
    let conditions = usize::from(!route.hosts.is_empty()) + usize::from(!route.paths.is_empty());
    let plain_hosts = !route.hosts.is_empty() && route.hosts.iter().all(|h| !h.contains('*'));
    let prefix = if route.paths.is_empty() {
        0
    } else {
        route
            .paths
            .iter()
            .filter_map(|p| match p {
                RoutePath::Prefix(prefix) => {
                    path.starts_with(prefix.as_str()).then_some(prefix.len())
                }
                RoutePath::Regex(_) => unreachable!("the table writes prefixes only"),
            })
            .max()?
    };
    Some((conditions, plain_hosts, prefix))
}

/// A routing table as a configuration file: up to four services, each with
/// up to three routes of paths and hosts from the input.
fn table(input: &mut Input<'_>) -> String {
    let mut text = String::new();
    let services = 1 + input.byte() % 4;
    for s in 0..services {
        let url = input.pick(&URLS);
        text += &format!("[[services]]\nname = \"s{s}\"\nurl = \"{url}\"\n");
        for r in 0..1 + input.byte() % 3 {
            let flags = input.byte();
            let paths: Vec<String> = (0..flags % 3).map(|_| path(input)).collect();
            let hosts: Vec<&str> = (0..(flags >> 2) % 3).map(|_| input.pick(&HOSTS)).collect();
            let paths = if paths.is_empty() && hosts.is_empty() {
                vec!["/".to_owned()]
            } else {
                paths
            };
            text += &format!(
                "  [[services.routes]]\n  name = \"s{s}r{r}\"\n  paths = {paths:?}\n  hosts = {hosts:?}\n  strip_path = {}\n",
                flags & 0x10 == 0
            );
        }
    }
    text
}

/// A path prefix from a small alphabet, so that prefixes overlap.
fn path(input: &mut Input<'_>) -> String {
    let len = input.byte() % 6;
    let mut path = "/".to_owned();
    for _ in 0..len {
        path.push(input.pick(&['a', 'b', '/', '.', '%', '2', 'f', '-']));
    }
    path
}
