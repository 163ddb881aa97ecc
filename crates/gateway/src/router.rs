//! Matching a request to a route, ranked as Kong 3's router ranks them
//! (its `traditional_compatible` flavour), so that a kong.yml picks the same
//! route here as in Kong, and a TOML file follows the same rules.

use std::borrow::Cow;
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
    /// Path conditions; empty matches every path.
    pub paths: Vec<RoutePath>,
    /// Breaks ties between routes matched by regular-expression paths:
    /// the higher wins.
    pub regex_priority: u32,
    /// Whether the route names HTTP methods. A WebSocket upgrade is a GET
    /// (and a route's methods must include GET), so this changes no match,
    /// only the rank: Kong counts methods among a route's conditions.
    pub methods: bool,
    /// Lower-case host names, with a wildcard as the leftmost label
    /// (`*.example.com`) or the rightmost (`example.*`) allowed; empty
    /// matches every host.
    pub hosts: Vec<String>,
    /// Request headers the route needs: each name with the values it
    /// accepts.
    pub headers: Vec<(http::HeaderName, Vec<HeaderPattern>)>,
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

/// A route's condition on the request's path.
#[derive(Debug, Clone)]
pub enum RoutePath {
    /// The path starts with this.
    Prefix(String),
    /// This regular expression matches at the path's start (Kong's `~`
    /// paths); the text it matches is what `strip_path` removes.
    Regex(regex::Regex),
}

impl RoutePath {
    /// A path as configuration writes it: `~` starts a regular expression
    /// (anchored at the path's start, as in Kong), anything else is a
    /// prefix.
    ///
    /// ```
    /// # use frameway_gateway::router::RoutePath;
    /// assert!(matches!(RoutePath::parse("/chat").unwrap(), RoutePath::Prefix(_)));
    /// assert!(matches!(RoutePath::parse(r"~/rooms/\d+$").unwrap(), RoutePath::Regex(_)));
    /// assert!(RoutePath::parse("~/rooms/(").is_err());
    /// ```
    pub fn parse(path: &str) -> Result<RoutePath, PatternError> {
        match path.strip_prefix('~') {
            Some(pattern) => regex::Regex::new(&format!("^(?:{pattern})"))
                .map(RoutePath::Regex)
                .map_err(|err| PatternError::new(path, &err)),
            None => Ok(RoutePath::Prefix(path.to_owned())),
        }
    }

    /// The length of the start of `path` this condition matches, if it
    /// matches.
    fn matched(&self, path: &str) -> Option<usize> {
        match self {
            RoutePath::Prefix(prefix) => path.starts_with(prefix.as_str()).then_some(prefix.len()),
            RoutePath::Regex(regex) => regex.find(path).map(|m| m.end()),
        }
    }
}

/// A value a route's header condition accepts.
#[derive(Debug, Clone)]
pub enum HeaderPattern {
    /// This value, compared without regard to case (stored in lower case).
    Exact(String),
    /// A value this regular expression finds, compared without regard to
    /// case (Kong's `~*` values).
    Regex(regex::Regex),
}

impl HeaderPattern {
    /// A value as configuration writes it: `~*` starts a regular
    /// expression, as in Kong.
    ///
    /// ```
    /// # use frameway_gateway::router::HeaderPattern;
    /// assert!(matches!(HeaderPattern::parse("Blue").unwrap(), HeaderPattern::Exact(v) if v == "blue"));
    /// assert!(matches!(HeaderPattern::parse(r"~*^v\d$").unwrap(), HeaderPattern::Regex(_)));
    /// ```
    pub fn parse(value: &str) -> Result<HeaderPattern, PatternError> {
        match value.strip_prefix("~*") {
            Some(pattern) => regex::RegexBuilder::new(pattern)
                .case_insensitive(true)
                .build()
                .map(HeaderPattern::Regex)
                .map_err(|err| PatternError::new(value, &err)),
            None => Ok(HeaderPattern::Exact(value.to_ascii_lowercase())),
        }
    }

    fn accepts(&self, value: &str) -> bool {
        match self {
            HeaderPattern::Exact(v) => v.eq_ignore_ascii_case(value),
            HeaderPattern::Regex(regex) => regex.is_match(value),
        }
    }
}

/// A route condition whose regular expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// The condition as configured.
    pub pattern: String,
    /// Why it does not compile, on one line.
    pub reason: String,
}

impl PatternError {
    fn new(pattern: &str, err: &regex::Error) -> Self {
        // The regex crate draws the pattern and a caret over several lines,
        // then the reason; a configuration error is one line.
        let text = err.to_string();
        let last = text.lines().last().unwrap_or_default();
        PatternError {
            pattern: pattern.to_owned(),
            reason: last.strip_prefix("error: ").unwrap_or(last).to_owned(),
        }
    }
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} is not a regular expression: {}",
            self.pattern, self.reason
        )
    }
}

impl std::error::Error for PatternError {}

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
    /// `host` (the Host header, port ignored), whose `headers` the request
    /// has and one of whose paths matches, the best ranked, in Kong's order:
    /// more kinds of condition (methods, hosts, headers, paths) first; then
    /// hosts without wildcards; then more header conditions; then a
    /// regular-expression path over a prefix, the higher `regex_priority`
    /// between two of them; then the longer prefix. Ties go to the route
    /// configured first.
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
        // Route hosts are lowercase; a host that already is (nearly every
        // client's) is compared as it came, without a copy.
        let host = host.map(|h| {
            let h = strip_port(h);
            match h.bytes().any(|b| b.is_ascii_uppercase()) {
                true => Cow::Owned(h.to_ascii_lowercase()),
                false => Cow::Borrowed(h),
            }
        });
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let mut best: Option<(Rank, &Arc<Route>, usize)> = None;
        for route in &self.routes {
            if !accepts_host(&route.hosts, host.as_deref()) || !has_headers(&route.headers, headers)
            {
                continue;
            }
            let Some((path_rank, matched)) = route.path_rank(path) else {
                continue;
            };
            let rank = Rank {
                conditions: usize::from(route.methods)
                    + usize::from(!route.hosts.is_empty())
                    + usize::from(!route.headers.is_empty())
                    + usize::from(!route.paths.is_empty()),
                plain_hosts: !route.hosts.is_empty()
                    && route.hosts.iter().all(|h| !h.contains('*')),
                headers: route.headers.len(),
                path: path_rank,
            };
            if best
                .as_ref()
                .is_none_or(|(best_rank, _, _)| rank > *best_rank)
            {
                best = Some((rank, route, matched));
            }
        }
        let (_, route, matched) = best?;
        let rest = if route.strip_path {
            &path[matched..]
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

impl Route {
    /// How well the best of the route's paths matches `path`, and the
    /// length of the path's start it matched; `None` if none does.
    fn path_rank(&self, path: &str) -> Option<(PathRank, usize)> {
        if self.paths.is_empty() {
            return Some((PathRank::Prefix(0), 0));
        }
        self.paths
            .iter()
            .filter_map(|p| {
                let matched = p.matched(path)?;
                let rank = match p {
                    RoutePath::Prefix(prefix) => PathRank::Prefix(prefix.len()),
                    RoutePath::Regex(_) => PathRank::Regex(self.regex_priority),
                };
                Some((rank, matched))
            })
            .max_by_key(|(rank, _)| *rank)
    }
}

/// Whether a route's hosts accept the request's: one equal to it, or
/// covered by a wildcard; a route without hosts accepts every request.
fn accepts_host(hosts: &[String], host: Option<&str>) -> bool {
    if hosts.is_empty() {
        return true;
    }
    let Some(host) = host else { return false };
    hosts.iter().any(|h| {
        if let Some(suffix) = h.strip_prefix("*.") {
            return host
                .strip_suffix(suffix)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'));
        }
        if let Some(prefix) = h.strip_suffix(".*") {
            return host
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'));
        }
        h == host
    })
}

/// How well a route matches a request, compared field by field in order;
/// more is better. The fields are Kong's priority bits, high to low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    /// How many kinds of condition the route has.
    conditions: usize,
    /// Whether the route has hosts, none of them a wildcard.
    plain_hosts: bool,
    /// How many headers the route names.
    headers: usize,
    path: PathRank,
}

/// The matching path's part of the rank: any regular expression beats any
/// prefix (variants compare in declaration order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PathRank {
    /// A prefix, by its length.
    Prefix(usize),
    /// A regular expression, by the route's `regex_priority`.
    Regex(u32),
}

/// Whether the request has every header the route names, each with one of
/// the values it accepts.
fn has_headers(wanted: &[(http::HeaderName, Vec<HeaderPattern>)], headers: &HeaderMap) -> bool {
    wanted.iter().all(|(name, patterns)| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|value| patterns.iter().any(|p| p.accepts(value.trim())))
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
        // Host names are case-insensitive (RFC 9110 §4.2.3).
        assert_eq!(route(Some("Chat.EXAMPLE.com"), "/api").unwrap().0, "exact");
        assert_eq!(
            route(Some("OTHER.example.com:80"), "/api").unwrap().0,
            "wild"
        );
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

    /// A request: its host, path and headers.
    type Request<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    fn names(text: &str, requests: &[Request<'_>]) -> Vec<Option<String>> {
        let config = Config::parse(text, "t", &Registry::with_builtins()).unwrap();
        requests
            .iter()
            .map(|(host, path, headers)| {
                let mut map = HeaderMap::new();
                for (name, value) in *headers {
                    map.append(
                        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        value.parse().unwrap(),
                    );
                }
                config
                    .router
                    .find(Some(host), path, &map)
                    .map(|m| m.route.name.clone())
            })
            .collect()
    }

    #[test]
    fn routes_rank_by_kinds_of_condition_before_path_length() {
        let text = r#"
[[services]]
name = "s"
url = "internal://echo"
  [[services.routes]]
  name = "long-path"
  paths = ["/chat/room/long"]
  [[services.routes]]
  name = "get"
  paths = ["/chat/room"]
  methods = ["GET"]
  [[services.routes]]
  name = "wild-host"
  paths = ["/chat"]
  hosts = ["*.example.com"]
  [[services.routes]]
  name = "plain-host"
  paths = ["/chat"]
  hosts = ["*.example.com", "a.test"]
  [[services.routes]]
  name = "plain-host-only"
  paths = ["/chat"]
  hosts = ["b.test"]
  [[services.routes]]
  name = "two-headers"
  paths = ["/chat"]
  hosts = ["b.test"]
  headers = { x-a = ["1"] }
"#;
        let found = names(
            text,
            &[
                ("x.test", "/chat/room/long", &[]),
                ("x.example.com", "/chat", &[]),
                // Both accept it by a wildcard: the first configured wins.
                ("a.example.com", "/chat", &[]),
                ("a.test", "/chat", &[]),
                ("b.test", "/chat", &[]),
                ("b.test", "/chat", &[("x-a", "1")]),
            ],
        );
        let want = [
            "get",
            "wild-host",
            "wild-host",
            "plain-host",
            "plain-host-only",
            "two-headers",
        ];
        assert_eq!(found, want.map(|n| Some(n.to_owned())));
    }

    #[test]
    fn regular_expressions_beat_prefixes_and_rank_by_priority() {
        let text = r#"
[[services]]
name = "s"
url = "ws://127.0.0.1:1/up"
  [[services.routes]]
  name = "prefix"
  paths = ["/rooms/lobby/and/more"]
  [[services.routes]]
  name = "digits"
  paths = ['~/rooms/\d+']
  regex_priority = 2
  [[services.routes]]
  name = "any"
  paths = ['~/rooms/\w+']
  regex_priority = 1
"#;
        let found = names(
            text,
            &[
                ("h", "/rooms/42", &[]),
                ("h", "/rooms/lobby/and/more", &[]),
                ("h", "/x/rooms/42", &[]),
            ],
        );
        assert_eq!(found, [Some("digits".into()), Some("any".into()), None]);
        let config = Config::parse(text, "t", &Registry::with_builtins()).unwrap();
        let matched = config
            .router
            .find(None, "/rooms/42/sub?q", &HeaderMap::new())
            .unwrap();
        assert_eq!(matched.upstream_target, "/up/sub?q");
    }

    #[test]
    fn header_expressions_match_without_regard_to_case() {
        let text = r#"
[[services]]
name = "s"
url = "internal://echo"
  [[services.routes]]
  name = "v2"
  headers = { x-version = ['~*^v2(\.\d+)?$', "beta"] }
"#;
        let found = names(
            text,
            &[
                ("h", "/", &[("x-version", "V2.1")]),
                ("h", "/", &[("x-version", "BETA")]),
                ("h", "/", &[("x-version", "v21")]),
            ],
        );
        assert_eq!(found, [Some("v2".into()), Some("v2".into()), None]);
    }

    #[test]
    fn a_pattern_that_does_not_compile_is_refused_on_one_line() {
        let err = RoutePath::parse("~/rooms/(").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#""~/rooms/(" is not a regular expression: unclosed group"#
        );
        assert!(HeaderPattern::parse("~*[").is_err());
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
