//! Matching a request to a route: by host and headers, then by the longest
//! path prefix.

use std::sync::Arc;

use http::HeaderMap;

use crate::plugin::Chain;
use crate::upstream::Service;

/// One route: where requests matching it go, and the plugins they pass.
#[derive(Debug)]
pub struct Route {
    /// The route's name.
    pub name: String,
    /// The service it proxies to.
    pub service: Arc<Service>,
    /// Path prefixes; empty matches every path.
    pub paths: Vec<String>,
    /// Lower-case host names, with a wildcard as the leftmost label
    /// (`*.example.com`) or the rightmost (`example.*`) allowed; empty
    /// matches every host.
    pub hosts: Vec<String>,
    /// Request headers the route needs: each name with the values it
    /// accepts (lower case, compared without regard to case).
    pub headers: Vec<(http::HeaderName, Vec<String>)>,
    /// Whether the matched prefix is removed before proxying.
    pub strip_path: bool,
    /// Whether the client's Host header goes upstream; if not, the
    /// service's host (or a balanced target's name) does.
    pub preserve_host: bool,
    /// The plugins, in running order.
    pub chain: Chain,
    /// The chains of consumers with plugins of their own, by consumer id:
    /// a connection switches to its consumer's once authenticated.
    pub consumer_chains: std::collections::HashMap<String, Chain>,
}

/// A routing decision.
#[derive(Debug, Clone)]
pub struct Matched {
    /// The route.
    pub route: Arc<Route>,
    /// The path and query to request from the upstream.
    pub upstream_target: String,
}

/// The routing table.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

impl Router {
    /// A table of `routes`.
    pub fn new(routes: Vec<Route>) -> Self {
        Router {
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    /// The routes, in configuration order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// Finds the route for a request: among routes whose hosts accept
    /// `host` (the Host header, port ignored) and whose `headers` the
    /// request has, the one with the longest matching path prefix; when
    /// paths tie, an exact host beats a wildcard beats none, and then more
    /// header conditions beat fewer.
    ///
    /// ```
    /// # use frameway_gateway::config::Config;
    /// # use frameway_gateway::plugin::Registry;
    /// let config = Config::parse(r#"
    /// [[services]]
    /// name = "chat"
    /// url = "ws://127.0.0.1:9000/socket"
    ///   [[services.routes]]
    ///   name = "chat"
    ///   paths = ["/chat"]
    /// "#, "example", &Registry::with_builtins()).unwrap();
    /// let headers = http::HeaderMap::new();
    /// let matched = config.router.find(Some("gw.local:8080"), "/chat/room1?x=1", &headers).unwrap();
    /// assert_eq!(matched.upstream_target, "/socket/room1?x=1");
    /// assert!(config.router.find(None, "/other", &headers).is_none());
    /// ```
    pub fn find(&self, host: Option<&str>, target: &str, headers: &HeaderMap) -> Option<Matched> {
        let host = host.map(|h| strip_port(h).to_ascii_lowercase());
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let mut best: Option<(Rank, &Arc<Route>, &str)> = None;
        for route in &self.routes {
            let Some(host_rank) = host_rank(&route.hosts, host.as_deref()) else {
                continue;
            };
            if !has_headers(&route.headers, headers) {
                continue;
            }
            let prefix = if route.paths.is_empty() {
                Some("")
            } else {
                route
                    .paths
                    .iter()
                    .filter(|p| path.starts_with(p.as_str()))
                    .max_by_key(|p| p.len())
                    .map(String::as_str)
            };
            let Some(prefix) = prefix else { continue };
            let key = (prefix.len(), host_rank, route.headers.len());
            if best.is_none_or(|(best_key, _, _)| key > best_key) {
                best = Some((key, route, prefix));
            }
        }
        let (_, route, prefix) = best?;
        let rest = if route.strip_path {
            &path[prefix.len()..]
        } else {
            path
        };
        let mut upstream_target = join_paths(route.service.upstream.path(), rest);
        if let Some(query) = query {
            upstream_target.push('?');
            upstream_target.push_str(query);
        }
        Some(Matched {
            route: route.clone(),
            upstream_target,
        })
    }
}

/// 2 for an exact host match, 1 for a wildcard, 0 for a route without
/// hosts; `None` if the route's hosts exclude this one.
fn host_rank(hosts: &[String], host: Option<&str>) -> Option<u8> {
    if hosts.is_empty() {
        return Some(0);
    }
    let host = host?;
    hosts
        .iter()
        .filter_map(|h| {
            if let Some(suffix) = h.strip_prefix("*.") {
                let sub = host.strip_suffix(suffix)?;
                return (sub.len() > 1 && sub.ends_with('.')).then_some(1);
            }
            if let Some(prefix) = h.strip_suffix(".*") {
                let rest = host.strip_prefix(prefix)?;
                return (rest.len() > 1 && rest.starts_with('.')).then_some(1);
            }
            (h == host).then_some(2)
        })
        .max()
}

/// How well a route matches: the length of its matching path prefix, its
/// host's rank, its number of header conditions; more is better, in that
/// order.
type Rank = (usize, u8, usize);

/// Whether the request has every header the route names, each with one of
/// the values it accepts.
fn has_headers(wanted: &[(http::HeaderName, Vec<String>)], headers: &HeaderMap) -> bool {
    wanted.iter().all(|(name, values)| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|value| values.iter().any(|v| v.eq_ignore_ascii_case(value.trim())))
        })
    })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// The service's path and what is left of the request's, joined by exactly
/// one slash, as Kong's default path handling does: a route `/chat/` (or a
/// prefix match of `/chat` on `/chatroom`) leaves no leading slash, and the
/// service path `/socket` then still gets one before the rest.
fn join_paths(base: &str, rest: &str) -> String {
    match (base.ends_with('/'), rest.starts_with('/')) {
        _ if rest.is_empty() => {
            if base.is_empty() {
                "/".to_owned()
            } else {
                base.to_owned()
            }
        }
        (true, true) => format!("{base}{}", &rest[1..]),
        (false, false) => format!("{base}/{rest}"),
        _ => format!("{base}{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::plugin::Registry;

    fn router() -> Arc<Router> {
        let text = r#"
            [[services]]
            name = "a"
            url = "ws://127.0.0.1:1/base/"
              [[services.routes]]
              name = "short"
              paths = ["/api"]
              [[services.routes]]
              name = "long"
              paths = ["/api/v2"]
              [[services.routes]]
              name = "keep"
              paths = ["/keep"]
              strip_path = false
            [[services]]
            name = "b"
            url = "ws://127.0.0.1:2"
              [[services.routes]]
              name = "wild"
              hosts = ["*.example.com"]
              paths = ["/api"]
              [[services.routes]]
              name = "exact"
              hosts = ["chat.example.com"]
              paths = ["/api"]
        "#;
        Config::parse(text, "test", &Registry::with_builtins())
            .unwrap()
            .router
    }

    fn route(host: Option<&str>, path: &str) -> Option<(String, String)> {
        router()
            .find(host, path, &HeaderMap::new())
            .map(|m| (m.route.name.clone(), m.upstream_target))
    }

    #[test]
    fn longest_path_wins_and_prefix_is_stripped() {
        assert_eq!(
            route(None, "/api/v2/x"),
            Some(("long".into(), "/base/x".into()))
        );
        assert_eq!(
            route(None, "/api/x?q=1"),
            Some(("short".into(), "/base/x?q=1".into()))
        );
        assert_eq!(route(None, "/api"), Some(("short".into(), "/base/".into())));
        assert_eq!(
            route(None, "/keep/me"),
            Some(("keep".into(), "/base/keep/me".into()))
        );
        assert_eq!(route(None, "/nothing"), None);
    }

    #[test]
    fn hosts_match_exactly_or_by_wildcard() {
        assert_eq!(
            route(Some("chat.example.com:443"), "/api").unwrap().0,
            "exact"
        );
        assert_eq!(route(Some("other.example.com"), "/api").unwrap().0, "wild");
        // The bare domain is not covered by the wildcard.
        assert_eq!(route(Some("example.com"), "/api").unwrap().0, "short");
    }

    #[test]
    fn a_rightmost_wildcard_covers_every_top_level_of_its_name() {
        let text = r#"
[[services]]
name = "s"
url = "internal://echo"
  [[services.routes]]
  name = "any-tld"
  paths = ["/"]
  hosts = ["chat.*"]
"#;
        let config = Config::parse(text, "t", &Registry::with_builtins()).unwrap();
        let find = |host: &str| {
            config
                .router
                .find(Some(host), "/x", &HeaderMap::new())
                .map(|m| m.route.name.clone())
        };
        assert_eq!(find("chat.example"), Some("any-tld".into()));
        assert_eq!(find("chat.co.uk:443"), Some("any-tld".into()));
        assert_eq!(find("chat"), None);
        assert_eq!(find("chatter.example"), None);
    }

    #[test]
    fn paths_join_without_double_slashes() {
        assert_eq!(join_paths("/socket", ""), "/socket");
        assert_eq!(join_paths("/socket", "/x"), "/socket/x");
        assert_eq!(join_paths("/socket/", "/x"), "/socket/x");
        assert_eq!(join_paths("", ""), "/");
        assert_eq!(join_paths("", "x"), "/x");
        assert_eq!(join_paths("/socket", "room"), "/socket/room");
        assert_eq!(join_paths("/socket/", "room"), "/socket/room");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
