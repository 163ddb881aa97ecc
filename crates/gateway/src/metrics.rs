//! What the gateway counts, and its Prometheus text exposition.
//!
//! Counters are per worker: each worker's connections write only their
//! worker's counters (relaxed atomics no other core touches on the message
//! path), and a scrape sums the workers. Labels are the configuration's
//! route and service names, a direction, a frame type, a close code bucket:
//! never a client address or a path, whose values have no bound.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::plugin::{Direction, FrameType, LuaLimit, PluginError};
use frameway::sync::lock;

/// Upper bounds of the session-duration histogram, seconds.
const SESSION_BUCKETS: [f64; 9] = [
    0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0,
];

/// Upper bounds of the upstream-connect histogram, seconds.
const CONNECT_BUCKETS: [f64; 9] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

const SIDES: [Direction; 2] = [Direction::Client, Direction::Upstream];

/// The metrics of one gateway process: every worker's counters and the
/// process-wide facts (reloads, draining).
pub struct Metrics {
    workers: Mutex<Vec<Arc<WorkerMetrics>>>,
    reloads: [AtomicU64; 2],
    draining: AtomicBool,
    started: Instant,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics with no worker yet.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics {
            workers: Mutex::new(Vec::new()),
            reloads: Default::default(),
            draining: AtomicBool::new(false),
            started: Instant::now(),
        })
    }

    /// A new worker's counters.
    pub(crate) fn worker(&self) -> Arc<WorkerMetrics> {
        let worker = Arc::new(WorkerMetrics::default());
        lock(&self.workers).push(worker.clone());
        worker
    }

    /// Counts a configuration reload and its result.
    pub fn reloaded(&self, ok: bool) {
        self.reloads[usize::from(!ok)].fetch_add(1, Relaxed);
    }

    /// Marks the process as draining: readiness answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Whether the process is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Time since the process started serving.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// How many workers serve.
    pub fn workers(&self) -> usize {
        lock(&self.workers).len()
    }

    /// Connections open now, over every worker and route.
    pub fn open_connections(&self) -> i64 {
        let workers = lock(&self.workers);
        let open = workers.iter().flat_map(|w| {
            lock(&w.routes)
                .values()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
        });
        open.map(|(_, r)| r.open.load(Relaxed)).sum()
    }

    /// The Prometheus text exposition (format 0.0.4) of every counter,
    /// summed over the workers.
    pub fn render(&self) -> String {
        let workers: Vec<Arc<WorkerMetrics>> = lock(&self.workers).clone();
        let mut routes: Vec<((String, String), RouteTotals)> = Vec::new();
        let mut handshakes: HashMap<u16, u64> = HashMap::new();
        let mut plugin_errors: HashMap<String, u64> = HashMap::new();
        let mut lua_limits: HashMap<(String, LuaLimit), u64> = HashMap::new();
        let mut accept_failures = 0;
        let mut connect: HashMap<String, HistogramTotals> = HashMap::new();
        for worker in &workers {
            for (route_name, services) in lock(&worker.routes).iter() {
                for (service, route) in services {
                    let key = (route_name, service);
                    let at = match routes.iter().position(|((r, s), _)| (r, s) == key) {
                        Some(at) => at,
                        None => {
                            let key = (route_name.clone(), service.clone());
                            routes.push((key, RouteTotals::default()));
                            routes.len() - 1
                        }
                    };
                    routes[at].1.add(route);
                }
            }
            for (status, n) in lock(&worker.handshakes).iter() {
                *handshakes.entry(status).or_default() += n;
            }
            for (plugin, n) in lock(&worker.plugin_errors).iter() {
                *plugin_errors.entry(plugin.clone()).or_default() += n;
            }
            for (key, n) in lock(&worker.lua_limits).iter() {
                *lua_limits.entry(key.clone()).or_default() += n;
            }
            accept_failures += worker.accept_failures.load(Relaxed);
            for (service, h) in lock(&worker.connect).iter() {
                connect
                    .entry(service.clone())
                    .or_insert_with(|| HistogramTotals::new(&CONNECT_BUCKETS))
                    .add(h);
            }
        }
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        let labels = |(route, service): &(String, String)| {
            format!(
                "route=\"{}\",service=\"{}\"",
                escape(route),
                escape(service)
            )
        };

        family(
            &mut out,
            "frameway_connections_open",
            "gauge",
            "WebSocket connections open now.",
        );
        for (key, t) in &routes {
            let _ = writeln!(
                out,
                "frameway_connections_open{{{}}} {}",
                labels(key),
                t.open
            );
        }
        family(
            &mut out,
            "frameway_connections_total",
            "counter",
            "WebSocket connections proxied (answered 101).",
        );
        for (key, t) in &routes {
            let _ = writeln!(
                out,
                "frameway_connections_total{{{}}} {}",
                labels(key),
                t.total
            );
        }
        let tables: [(&str, &str, PerSideAndType); 2] = [
            (
                "frameway_messages_total",
                "Messages and control frames received, by the side that sent them.",
                |t| &t.messages,
            ),
            (
                "frameway_bytes_total",
                "Payload bytes received, by the side that sent them.",
                |t| &t.bytes,
            ),
        ];
        for (name, help, table) in tables {
            family(&mut out, name, "counter", help);
            for (key, t) in &routes {
                for (s, side) in SIDES.iter().enumerate() {
                    for (k, kind) in FrameType::ALL.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            "{name}{{{},direction=\"{}\",type=\"{}\"}} {}",
                            labels(key),
                            side.as_str(),
                            kind.as_str(),
                            table(t)[s][k]
                        );
                    }
                }
            }
        }
        family(
            &mut out,
            "frameway_frames_dropped_total",
            "counter",
            "Frames a plugin dropped, by the side that sent them.",
        );
        for (key, t) in &routes {
            for (s, side) in SIDES.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "frameway_frames_dropped_total{{{},direction=\"{}\"}} {}",
                    labels(key),
                    side.as_str(),
                    t.dropped[s]
                );
            }
        }
        family(&mut out, "frameway_closes_total", "counter", "Close statuses each side sent (code: the status, 3xxx/4xxx for application codes, none without one).");
        for (key, t) in &routes {
            let mut closes: Vec<_> = t.closes.iter().collect();
            closes.sort();
            for ((side, code), n) in closes {
                let _ = writeln!(
                    out,
                    "frameway_closes_total{{{},side=\"{side}\",code=\"{code}\"}} {n}",
                    labels(key)
                );
            }
        }
        family(
            &mut out,
            "frameway_session_duration_seconds",
            "histogram",
            "How long proxied connections lasted.",
        );
        for (key, t) in &routes {
            t.duration
                .write(&mut out, "frameway_session_duration_seconds", &labels(key));
        }
        family(
            &mut out,
            "frameway_handshakes_total",
            "counter",
            "Opening handshakes by the HTTP status they were answered with.",
        );
        let mut handshakes: Vec<_> = handshakes.into_iter().collect();
        handshakes.sort();
        for (status, n) in handshakes {
            let _ = writeln!(out, "frameway_handshakes_total{{status=\"{status}\"}} {n}");
        }
        family(
            &mut out,
            "frameway_upstream_connect_seconds",
            "histogram",
            "Time to open an upstream connection, handshake included.",
        );
        let mut connect: Vec<_> = connect.into_iter().collect();
        connect.sort_by(|a, b| a.0.cmp(&b.0));
        for (service, h) in &connect {
            h.write(
                &mut out,
                "frameway_upstream_connect_seconds",
                &format!("service=\"{}\"", escape(service)),
            );
        }
        family(
            &mut out,
            "frameway_plugin_errors_total",
            "counter",
            "Errors raised by plugins, by plugin.",
        );
        let mut plugin_errors: Vec<_> = plugin_errors.into_iter().collect();
        plugin_errors.sort();
        for (plugin, n) in plugin_errors {
            let _ = writeln!(
                out,
                "frameway_plugin_errors_total{{plugin=\"{}\"}} {n}",
                escape(&plugin)
            );
        }
        family(
            &mut out,
            "frameway_redis_failed_calls_total",
            "counter",
            "Calls from policy = \"redis\" limits to Redis that failed or timed out.",
        );
        let _ = writeln!(
            out,
            "frameway_redis_failed_calls_total {}",
            crate::limits::failed_calls()
        );
        family(
            &mut out,
            "frameway_redis_outages_total",
            "counter",
            "Times a policy = \"redis\" limit lost Redis and went on with local counts (or refused, fault_tolerant = false).",
        );
        let _ = writeln!(
            out,
            "frameway_redis_outages_total {}",
            crate::limits::outages()
        );
        family(
            &mut out,
            "frameway_lua_limit_hits_total",
            "counter",
            "Lua handler calls stopped by lua_max_instructions or lua_max_memory, by plugin.",
        );
        let mut lua_limits: Vec<_> = lua_limits.into_iter().collect();
        lua_limits.sort_by(|a, b| (&a.0 .0, a.0 .1.as_str()).cmp(&(&b.0 .0, b.0 .1.as_str())));
        for ((plugin, limit), n) in lua_limits {
            let _ = writeln!(
                out,
                "frameway_lua_limit_hits_total{{plugin=\"{}\",limit=\"{}\"}} {n}",
                escape(&plugin),
                limit.as_str()
            );
        }
        family(
            &mut out,
            "frameway_accept_failures_total",
            "counter",
            "Connections the listeners failed to accept (out of file descriptors, typically).",
        );
        let _ = writeln!(out, "frameway_accept_failures_total {accept_failures}");
        family(
            &mut out,
            "frameway_reloads_total",
            "counter",
            "Configuration reloads by result.",
        );
        for (i, result) in ["ok", "error"].iter().enumerate() {
            let _ = writeln!(
                out,
                "frameway_reloads_total{{result=\"{result}\"}} {}",
                self.reloads[i].load(Relaxed)
            );
        }
        family(
            &mut out,
            "frameway_workers",
            "gauge",
            "Workers (threads with their own listeners) serving.",
        );
        let _ = writeln!(out, "frameway_workers {}", workers.len());
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the exposition format quotes it.
pub(crate) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The close code label: standard codes as they are, application codes by
/// range, so that a peer choosing codes cannot grow the series without
/// bound. Kept as a number, written only when the metrics are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct CodeLabel(Option<u16>);

impl CodeLabel {
    fn of(status: Option<u16>) -> CodeLabel {
        CodeLabel(match status {
            Some(3000..=3999) => Some(3000),
            Some(4000..=4999) => Some(4000),
            other => other,
        })
    }
}

impl std::fmt::Display for CodeLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("none"),
            Some(3000) => f.write_str("3xxx"),
            Some(4000) => f.write_str("4xxx"),
            Some(code) => write!(f, "{code}"),
        }
    }
}

/// One route's counters by service name (more than one when plugins
/// reroute). Routes are found by name and then services by a scan, so
/// that a connection looks its counters up by `&str`, building no key.
type RouteServices = Vec<(String, Arc<RouteMetrics>)>;

/// One worker's counters.
#[derive(Default)]
pub(crate) struct WorkerMetrics {
    routes: Mutex<HashMap<String, RouteServices>>,
    handshakes: Mutex<Tally<u16>>,
    plugin_errors: Mutex<HashMap<String, u64>>,
    lua_limits: Mutex<HashMap<(String, LuaLimit), u64>>,
    connect: Mutex<HashMap<String, Histogram>>,
    accept_failures: AtomicU64,
}

impl WorkerMetrics {
    /// The counters of `route` of `service` on this worker: looked up once
    /// per connection, then written without a lock.
    pub(crate) fn route(&self, route: &str, service: &str) -> Arc<RouteMetrics> {
        let mut routes = lock(&self.routes);
        let known = routes
            .get(route)
            .and_then(|services| services.iter().find(|(s, _)| s == service));
        if let Some((_, metrics)) = known {
            return metrics.clone();
        }
        let metrics = Arc::new(RouteMetrics::default());
        routes
            .entry(route.to_owned())
            .or_default()
            .push((service.to_owned(), metrics.clone()));
        metrics
    }

    /// A handshake was answered with `status`.
    pub(crate) fn handshake(&self, status: u16) {
        lock(&self.handshakes).count(status);
    }

    /// A plugin failed with `error`.
    pub(crate) fn plugin_error(&self, plugin: &str, error: &PluginError) {
        *lock(&self.plugin_errors)
            .entry(plugin.to_owned())
            .or_default() += 1;
        if let PluginError::LuaLimit { limit, .. } = error {
            *lock(&self.lua_limits)
                .entry((plugin.to_owned(), *limit))
                .or_default() += 1;
        }
    }

    /// Accepting a connection failed (out of file descriptors, typically).
    pub(crate) fn accept_failed(&self) {
        self.accept_failures.fetch_add(1, Relaxed);
    }

    /// An upstream connection of `service` took `elapsed` to open.
    pub(crate) fn connected(&self, service: &str, elapsed: Duration) {
        let mut connect = lock(&self.connect);
        match connect.get_mut(service) {
            Some(histogram) => histogram.observe(elapsed),
            None => {
                let mut histogram = Histogram::new(&CONNECT_BUCKETS);
                histogram.observe(elapsed);
                connect.insert(service.to_owned(), histogram);
            }
        }
    }
}

/// One route's counters on one worker.
pub(crate) struct RouteMetrics {
    open: AtomicI64,
    total: AtomicU64,
    messages: [[AtomicU64; 6]; 2],
    bytes: [[AtomicU64; 6]; 2],
    dropped: [AtomicU64; 2],
    closes: Mutex<Tally<(&'static str, CodeLabel)>>,
    duration: Mutex<Histogram>,
}

impl Default for RouteMetrics {
    fn default() -> Self {
        RouteMetrics {
            open: AtomicI64::new(0),
            total: AtomicU64::new(0),
            messages: Default::default(),
            bytes: Default::default(),
            dropped: Default::default(),
            closes: Mutex::default(),
            duration: Mutex::new(Histogram::new(&SESSION_BUCKETS)),
        }
    }
}

impl RouteMetrics {
    /// A connection on this route answered 101.
    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, Relaxed);
        self.total.fetch_add(1, Relaxed);
    }

    /// `messages` units of `kind` with `bytes` payload bytes in all came
    /// from `side`: the message path.
    pub(crate) fn received(&self, side: Direction, kind: FrameType, messages: u64, bytes: u64) {
        let (s, k) = (side.index(), kind.index());
        self.messages[s][k].fetch_add(messages, Relaxed);
        self.bytes[s][k].fetch_add(bytes, Relaxed);
    }

    /// A plugin dropped a frame from `side`.
    pub(crate) fn dropped(&self, side: Direction) {
        self.dropped[side.index()].fetch_add(1, Relaxed);
    }

    /// A connection ended after `duration`, each side having sent its
    /// close status (or none).
    pub(crate) fn closed(&self, duration: Duration, client: Option<u16>, upstream: Option<u16>) {
        self.open.fetch_sub(1, Relaxed);
        let mut closes = lock(&self.closes);
        closes.count(("client", CodeLabel::of(client)));
        closes.count(("upstream", CodeLabel::of(upstream)));
        drop(closes);
        lock(&self.duration).observe(duration);
    }
}

/// Counts by a key of which there are few (statuses, close codes): a scan
/// of a short list, where a map hashed the key on every connection.
struct Tally<K>(Vec<(K, u64)>);

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Tally(Vec::new())
    }
}

impl<K: Copy + PartialEq> Tally<K> {
    fn count(&mut self, key: K) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => self.0.push((key, 1)),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (K, u64)> + '_ {
        self.0.iter().copied()
    }
}

/// A histogram with fixed upper bounds (seconds).
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: Duration) {
        let secs = value.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.counts[i] += 1;
        }
        self.sum += secs;
        self.count += 1;
    }
}

/// One of a route's counter tables, by side and frame type.
type PerSideAndType = fn(&RouteTotals) -> &[[u64; 6]; 2];

/// Totals of one route over the workers.
#[derive(Default)]
struct RouteTotals {
    open: i64,
    total: u64,
    messages: [[u64; 6]; 2],
    bytes: [[u64; 6]; 2],
    dropped: [u64; 2],
    closes: HashMap<(&'static str, CodeLabel), u64>,
    duration: HistogramTotals,
}

impl RouteTotals {
    fn add(&mut self, route: &RouteMetrics) {
        self.open += route.open.load(Relaxed);
        self.total += route.total.load(Relaxed);
        for s in 0..2 {
            for k in 0..6 {
                self.messages[s][k] += route.messages[s][k].load(Relaxed);
                self.bytes[s][k] += route.bytes[s][k].load(Relaxed);
            }
            self.dropped[s] += route.dropped[s].load(Relaxed);
        }
        for (key, n) in lock(&route.closes).iter() {
            *self.closes.entry(key).or_default() += n;
        }
        if self.duration.bounds.is_empty() {
            self.duration = HistogramTotals::new(&SESSION_BUCKETS);
        }
        self.duration.add(&lock(&route.duration));
    }
}

/// A histogram summed over the workers.
#[derive(Default)]
struct HistogramTotals {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl HistogramTotals {
    fn new(bounds: &'static [f64]) -> HistogramTotals {
        HistogramTotals {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn add(&mut self, h: &Histogram) {
        for (total, n) in self.counts.iter_mut().zip(&h.counts) {
            *total += n;
        }
        self.sum += h.sum;
        self.count += h.count;
    }

    /// The `_bucket` (cumulative), `_sum` and `_count` lines.
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_of_every_worker_are_summed_per_route() {
        let metrics = Metrics::new();
        let (a, b) = (metrics.worker(), metrics.worker());
        for worker in [&a, &b] {
            let route = worker.route("chat", "backend");
            route.opened();
            route.received(Direction::Client, FrameType::Text, 1, 5);
            worker.handshake(101);
        }
        a.route("chat", "backend")
            .closed(Duration::from_millis(20), Some(1000), Some(4001));
        let text = metrics.render();
        let has =
            |line: &str| assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        has(r#"frameway_connections_open{route="chat",service="backend"} 1"#);
        has(r#"frameway_connections_total{route="chat",service="backend"} 2"#);
        has(
            r#"frameway_messages_total{route="chat",service="backend",direction="client",type="text"} 2"#,
        );
        has(
            r#"frameway_bytes_total{route="chat",service="backend",direction="client",type="text"} 10"#,
        );
        has(
            r#"frameway_closes_total{route="chat",service="backend",side="upstream",code="4xxx"} 1"#,
        );
        has(
            r#"frameway_session_duration_seconds_bucket{route="chat",service="backend",le="0.1"} 1"#,
        );
        has(r#"frameway_handshakes_total{status="101"} 2"#);
        has("frameway_workers 2");
        assert_eq!(metrics.open_connections(), 1);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
