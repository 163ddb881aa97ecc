//! Kong's log plugins for WebSocket services, under Kong's names and
//! configurations: `file-log` (`path`), `http-log` (`http_endpoint`) and
//! `tcp-log` (`host`, `port`). Each writes one JSON entry per connection,
//! when it ends, as Kong's log phase does:
//!
//! ```text
//! {"started_at":1700000000000,"client_ip":"127.0.0.1","request":{"method":"GET","uri":"/chat?room=1"},
//!  "route":{"name":"chat"},"service":{"name":"chat"},"consumer":{"id":"alice","username":"alice"},
//!  "ws":{"client_status":1000,"upstream_status":1000,"client_messages":2,"client_bytes":8,
//!  "upstream_messages":2,"upstream_bytes":8},"latencies":{"proxy":12}}
//! ```
//!
//! (`consumer` only when one was authenticated.) Per-frame lines are
//! `websocket-log`'s. Kong's options that change nothing here are taken
//! (`keepalive`, the deprecated queue settings); the ones Frameway cannot
//! honour are refused by name (`custom_fields_by_lua`, `tls` to a TCP
//! collector, batches of more than one entry).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};

use super::log::closing_counts;
use super::remote::{Destination, Remote};
use crate::plugin::{CloseContext, HandshakeContext, Plugin, PluginConfigError, PluginError};

/// `file-log`'s configuration (Kong's names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLogConfig {
    /// The file entries are appended to.
    pub path: PathBuf,
    /// Kong reopens the file for every entry when true; Frameway keeps it
    /// open either way (log rotation: copy and truncate).
    #[serde(default)]
    pub reopen: bool,
    /// Lua that adds fields: not supported.
    pub custom_fields_by_lua: Option<Value>,
}

/// `http-log`'s configuration (Kong's names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLogConfig {
    /// `http(s)://[user:password@]host[:port]/path`; https is verified
    /// against the system's roots (or `SSL_CERT_FILE`).
    pub http_endpoint: String,
    /// `POST` (default), `PUT` or `PATCH`.
    #[serde(default = "default_method")]
    pub method: String,
    /// `application/json`, the only one Kong has.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Connect, send and answer each within this long, ms (default 10000).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Kong's idle time for kept connections; each entry has its own here.
    pub keepalive: Option<u64>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Attempts after a failed one (default 10).
    #[serde(default = "default_retries")]
    pub retry_count: u32,
    /// Kong's queue settings: `max_batch_size` must be 1 (one entry per
    /// request); the others shape Kong's queue, not this one.
    pub queue: Option<serde_json::Map<String, Value>>,
    /// Deprecated in Kong; no effect.
    pub queue_size: Option<u64>,
    /// Deprecated in Kong; no effect.
    pub flush_timeout: Option<f64>,
    /// Lua that adds fields: not supported.
    pub custom_fields_by_lua: Option<Value>,
}

/// `tcp-log`'s configuration (Kong's names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpLogConfig {
    /// The collector's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Connect and send within this long, ms (default 10000).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Kong's idle time for the kept connection; Frameway keeps it until
    /// it breaks.
    pub keepalive: Option<u64>,
    /// TLS to the collector: not supported.
    #[serde(default)]
    pub tls: bool,
    /// The SNI of `tls`.
    pub tls_sni: Option<String>,
    /// Lua that adds fields: not supported.
    pub custom_fields_by_lua: Option<Value>,
}

fn default_method() -> String {
    "POST".to_owned()
}
fn default_content_type() -> String {
    "application/json".to_owned()
}
fn default_timeout() -> u64 {
    10_000
}
fn default_retries() -> u32 {
    10
}

/// Where entries go.
#[derive(Debug)]
enum Sink {
    File(Mutex<File>),
    Remote(Remote),
}

/// One of Kong's log plugins.
#[derive(Debug)]
pub struct KongLog {
    name: &'static str,
    priority: i32,
    sink: Sink,
    target: String,
    /// Set while writes fail, so a full disk is reported once.
    failing: AtomicBool,
}

/// The request line the entry reports, kept from the handshake.
struct Requested {
    uri: String,
}

fn no_lua(fields: &Option<Value>) -> Result<(), PluginConfigError> {
    match fields {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(map)) if map.is_empty() => Ok(()),
        Some(_) => Err(PluginConfigError(
            "custom_fields_by_lua is not supported by Frameway".to_owned(),
        )),
    }
}

impl KongLog {
    /// `file-log`.
    pub const FILE: &'static str = "file-log";
    /// `http-log`.
    pub const HTTP: &'static str = "http-log";
    /// `tcp-log`.
    pub const TCP: &'static str = "tcp-log";

    /// `file-log`: opens the file for appending (created if missing).
    pub fn file(config: FileLogConfig) -> Result<Self, PluginConfigError> {
        no_lua(&config.custom_fields_by_lua)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(|e| {
                PluginConfigError(format!("path: cannot open {}: {e}", config.path.display()))
            })?;
        Ok(Self::with(
            Self::FILE,
            9,
            Sink::File(Mutex::new(file)),
            config.path.display().to_string(),
        ))
    }

    /// `http-log`: a sender thread for the endpoint.
    pub fn http(config: HttpLogConfig) -> Result<Self, PluginConfigError> {
        no_lua(&config.custom_fields_by_lua)?;
        let refuse = |m: String| PluginConfigError(m);
        if !["POST", "PUT", "PATCH"].contains(&config.method.as_str()) {
            return Err(refuse(format!(
                "method must be POST, PUT or PATCH, not {:?}",
                config.method
            )));
        }
        if config.content_type != "application/json" {
            return Err(refuse(format!(
                "content_type {:?} is not supported (application/json)",
                config.content_type
            )));
        }
        if let Some(size) = config.queue.as_ref().and_then(|q| q.get("max_batch_size")) {
            if size.as_u64() != Some(1) {
                return Err(refuse(format!(
                    "queue.max_batch_size {size} is not supported by Frameway (one entry per request)"
                )));
            }
        }
        let headers: Vec<(String, String)> = config.headers.into_iter().collect();
        let destination = Destination::http(
            &config.http_endpoint,
            &config.method,
            &headers,
            config.retry_count,
        )
        .map_err(refuse)?;
        Self::remote(Self::HTTP, 12, destination, config.timeout)
    }

    /// `tcp-log`: a sender thread for `host:port`.
    pub fn tcp(config: TcpLogConfig) -> Result<Self, PluginConfigError> {
        no_lua(&config.custom_fields_by_lua)?;
        if config.tls || config.tls_sni.is_some() {
            return Err(PluginConfigError(
                "tls: TLS to a TCP log collector is not supported by Frameway".to_owned(),
            ));
        }
        let destination = Destination::Tcp {
            host: config.host,
            port: config.port,
        };
        Self::remote(Self::TCP, 7, destination, config.timeout)
    }

    fn remote(
        name: &'static str,
        priority: i32,
        destination: Destination,
        timeout_ms: u64,
    ) -> Result<Self, PluginConfigError> {
        let timeout = Duration::from_millis(timeout_ms.max(1));
        let remote = Remote::start(destination, timeout)
            .map_err(|e| PluginConfigError(format!("cannot start the sender: {e}")))?;
        Ok(Self::with(
            name,
            priority,
            Sink::Remote(remote),
            String::new(),
        ))
    }

    fn with(name: &'static str, priority: i32, sink: Sink, target: String) -> Self {
        KongLog {
            name,
            priority,
            sink,
            target,
            failing: AtomicBool::new(false),
        }
    }

    fn write(&self, entry: &Value) {
        let mut line = entry.to_string().into_bytes();
        match &self.sink {
            Sink::Remote(remote) => remote.send(line),
            Sink::File(file) => {
                line.push(b'\n');
                let result = frameway::sync::lock(file).write_all(&line);
                match result {
                    Ok(()) => self.failing.store(false, Ordering::Relaxed),
                    Err(e) => {
                        if !self.failing.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                plugin = self.name,
                                "cannot write to {}: {e}",
                                self.target
                            );
                        }
                    }
                }
            }
        }
    }
}

impl Plugin for KongLog {
    fn name(&self) -> &str {
        self.name
    }

    fn priority(&self) -> i32 {
        // Kong's own: http-log 12, file-log 9, tcp-log 7.
        self.priority
    }

    fn handles_frames(&self) -> bool {
        false
    }

    fn new_state(&self) -> Option<crate::plugin::State> {
        Some(Box::new(Requested { uri: String::new() }))
    }

    fn handshake(&self, ctx: &mut HandshakeContext<'_>) -> Result<(), PluginError> {
        let uri = match ctx.query() {
            Some(query) => format!("{}?{query}", ctx.path()),
            None => ctx.path().to_owned(),
        };
        if let Some(requested) = ctx.state::<Requested>() {
            requested.uri = uri;
        }
        Ok(())
    }

    fn close(&self, ctx: &mut CloseContext<'_>) {
        let uri = ctx
            .state::<Requested>()
            .map(|r| std::mem::take(&mut r.uri))
            .unwrap_or_default();
        let conn = ctx.connection();
        let started_at = SystemTime::now()
            .checked_sub(conn.started.elapsed())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        let mut entry = json!({
            "started_at": started_at,
            "client_ip": conn.client_addr.ip().to_string(),
            "request": { "method": "GET", "uri": uri },
            "route": { "name": conn.route },
            "service": { "name": conn.service },
            "ws": closing_counts(ctx),
            "latencies": { "proxy": ctx.duration().as_millis() as u64 },
        });
        if let Some(who) = &conn.consumer {
            entry["consumer"] = json!({
                "id": who.consumer.id,
                "username": who.consumer.username,
                "custom_id": who.consumer.custom_id,
            });
        }
        self.write(&entry);
    }
}
