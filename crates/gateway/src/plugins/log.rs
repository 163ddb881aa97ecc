//! `websocket-log`: one JSON line per connection opened, per message and
//! control frame, and per connection closed, to a file or standard output
//! (in the manner of Kong's file-log).
//!
//! ```toml
//! [[plugins]]
//! name = "websocket-log"
//! config = { path = "/var/log/frameway/ws.jsonl" }
//! ```
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `path` | standard output | file the lines are appended to (created if missing; relative to the working directory) |
//! | `frames` | `true` | log every message and control frame; `false` logs only opens and closes, and keeps the route on the fast path |
//!
//! The lines (`time` is milliseconds since the Unix epoch):
//!
//! ```text
//! {"event":"open","time":1700000000000,"connection":7,"route":"chat","service":"chat","client_ip":"127.0.0.1","path":"/chat"}
//! {"event":"frame","time":1700000000001,"connection":7,"direction":"client","type":"text","size":5}
//! {"event":"frame","time":1700000000002,"connection":7,"direction":"client","type":"close","size":3,"status":1000}
//! {"event":"close","time":1700000000003,"connection":7,"route":"chat","service":"chat","client_ip":"127.0.0.1","client_status":1000,"upstream_status":1000,"client_messages":2,"client_bytes":8,"upstream_messages":2,"upstream_bytes":8,"duration_ms":12}
//! ```
//!
//! With its low priority (5, as Kong's log plugins) the frame lines show
//! what the plugins before it let through, as it will be forwarded; a
//! message another plugin dropped or closed on is not logged as a frame,
//! but the close line's counts include it. Connections refused in the
//! handshake by a plugin of higher priority are not logged. The open line
//! is written before the upstream is contacted, so a connection whose
//! upstream fails (502, 504) has an open line and no close line.
//!
//! The file is opened once, when the configuration loads (an unwritable
//! path is a configuration error), and each line is written whole under a
//! lock and flushed, so lines from concurrent connections never
//! interleave. A failing write is reported (once until writing works
//! again) and never disturbs the traffic.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::plugin::{
    CloseContext, FrameContext, FrameType, HandshakeContext, Plugin, PluginConfigError, PluginError,
};

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// The file lines are appended to; standard output when absent.
    pub path: Option<PathBuf>,
    /// Whether every frame is logged, or only opens and closes.
    #[serde(default = "yes")]
    pub frames: bool,
}

fn yes() -> bool {
    true
}

/// Where lines go.
#[derive(Debug)]
enum Sink {
    Stdout,
    File(Mutex<BufWriter<File>>),
}

/// Writes connection and frame events as JSON lines.
#[derive(Debug)]
pub struct Log {
    sink: Sink,
    target: String,
    frames: bool,
    /// Set while writes fail, so a full disk is reported once, not per line.
    failing: AtomicBool,
}

impl Log {
    /// The name in the configuration.
    pub const NAME: &'static str = "websocket-log";

    /// Opens the file (for appending, creating it if needed).
    pub fn new(config: LogConfig) -> Result<Self, PluginConfigError> {
        let (sink, target) = match &config.path {
            None => (Sink::Stdout, "standard output".to_owned()),
            Some(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        PluginConfigError(format!("path: cannot open {}: {e}", path.display()))
                    })?;
                (
                    Sink::File(Mutex::new(BufWriter::new(file))),
                    path.display().to_string(),
                )
            }
        };
        Ok(Log {
            sink,
            target,
            frames: config.frames,
            failing: AtomicBool::new(false),
        })
    }

    fn write(&self, mut record: Value) {
        if let Some(map) = record.as_object_mut() {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            map.insert("time".into(), millis.into());
        }
        let mut line = record.to_string();
        line.push('\n');
        let result = match &self.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes()).and_then(|()| out.flush())
            }
            Sink::File(file) => {
                // A writer that panicked mid-line left at worst a torn line;
                // the file is still usable.
                let mut file = frameway::sync::lock(file);
                file.write_all(line.as_bytes()).and_then(|()| file.flush())
            }
        };
        match result {
            Ok(()) => self.failing.store(false, Ordering::Relaxed),
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(plugin = Self::NAME, "cannot write to {}: {e}", self.target);
                }
            }
        }
    }
}

impl Plugin for Log {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn priority(&self) -> i32 {
        // Kong's log plugins run last (file-log: 9, http-log: 12).
        5
    }

    fn handles_frames(&self) -> bool {
        self.frames
    }

    fn handshake(&self, ctx: &mut HandshakeContext<'_>) -> Result<(), PluginError> {
        let conn = ctx.connection();
        self.write(json!({
            "event": "open",
            "connection": conn.id,
            "route": conn.route,
            "service": conn.service,
            "client_ip": conn.client_addr.ip().to_string(),
            "path": ctx.path(),
        }));
        Ok(())
    }

    fn client_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        self.frame(ctx);
        Ok(())
    }

    fn upstream_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        self.frame(ctx);
        Ok(())
    }

    fn close(&self, ctx: &mut CloseContext<'_>) {
        let conn = ctx.connection();
        let mut record = json!({
            "event": "close",
            "connection": conn.id,
            "route": conn.route,
            "service": conn.service,
            "client_ip": conn.client_addr.ip().to_string(),
        });
        if let (Some(record), Value::Object(counts)) = (record.as_object_mut(), closing_counts(ctx))
        {
            record.extend(counts);
        }
        record["duration_ms"] = (ctx.duration().as_millis() as u64).into();
        self.write(record);
    }
}

/// How a connection ended and what crossed it: the close codes of both
/// sides and the messages and bytes each sent (`websocket-log`'s close
/// line, Kong's log plugins' `ws` entry).
pub(crate) fn closing_counts(ctx: &CloseContext<'_>) -> Value {
    json!({
        "client_status": ctx.client_status,
        "upstream_status": ctx.upstream_status,
        "client_messages": ctx.client.messages,
        "client_bytes": ctx.client.bytes,
        "upstream_messages": ctx.upstream.messages,
        "upstream_bytes": ctx.upstream.bytes,
    })
}

impl Log {
    fn frame(&self, ctx: &FrameContext<'_>) {
        let (data, kind, status) = ctx.get_frame();
        let mut record = json!({
            "event": "frame",
            "connection": ctx.connection().id,
            "direction": ctx.direction().as_str(),
            "type": kind.as_str(),
            "size": data.len(),
        });
        if kind == FrameType::Close {
            record["status"] = status.into();
        }
        self.write(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{Direction, Verdict};
    use std::sync::Arc;

    use crate::plugins::testing::{FrameHarness, HandshakeHarness};

    fn temp_path(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "frameway-log-unit-{name}-{}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn lines(path: &PathBuf) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn config() {
        let log: LogConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        let log = Log::new(log).unwrap();
        assert!(matches!(log.sink, Sink::Stdout));
        assert!(log.handles_frames());
        assert_eq!(log.priority(), 5);
        let bad: Result<LogConfig, _> = serde_json::from_value(serde_json::json!({ "file": "x" }));
        assert!(bad.unwrap_err().to_string().contains("unknown field"));
        let missing_dir = std::env::temp_dir().join("frameway-no-such-dir/x/log.jsonl");
        let e = Log::new(LogConfig {
            path: Some(missing_dir),
            frames: true,
        })
        .unwrap_err();
        assert!(e.0.starts_with("path: cannot open"), "{}", e.0);
        let quiet = Log::new(LogConfig {
            path: Some(temp_path("quiet")),
            frames: false,
        })
        .unwrap();
        assert!(!quiet.handles_frames());
    }

    #[test]
    fn lines_for_open_frames_and_close() {
        let path = temp_path("lines");
        std::fs::write(&path, "{\"kept\":true}\n").unwrap();
        let log = Log::new(LogConfig {
            path: Some(path.clone()),
            frames: true,
        })
        .unwrap();
        let mut hs = HandshakeHarness::new("/chat?x=1", &[]);
        hs.run(&log);
        assert!(hs.exit.is_none());
        let log = Arc::new(log);
        let mut h = FrameHarness::new(log.clone());
        assert_eq!(
            h.frame(Direction::Client, FrameType::Text, "hello")
                .unwrap(),
            Verdict::Forward
        );
        h.frame(Direction::Upstream, FrameType::Binary, vec![0u8; 3])
            .unwrap();
        h.frame(Direction::Client, FrameType::Close, "bye").unwrap();
        h.close(Some(1000), None);
        let lines = lines(&path);
        assert_eq!(lines.len(), 6, "{lines:?}");
        assert_eq!(lines[0], serde_json::json!({ "kept": true }));
        let open = &lines[1];
        assert_eq!(open["event"], "open");
        assert_eq!(open["connection"], 7);
        assert_eq!(open["route"], "route");
        assert_eq!(open["service"], "svc");
        assert_eq!(open["client_ip"], "127.0.0.1");
        assert_eq!(open["path"], "/chat");
        assert!(open["time"].as_u64().unwrap() > 1_600_000_000_000);
        let text = &lines[2];
        assert_eq!(text["event"], "frame");
        assert_eq!(text["connection"], 7);
        assert_eq!(text["direction"], "client");
        assert_eq!(text["type"], "text");
        assert_eq!(text["size"], 5);
        assert!(text.get("status").is_none());
        let binary = &lines[3];
        assert_eq!(binary["direction"], "upstream");
        assert_eq!(binary["type"], "binary");
        assert_eq!(binary["size"], 3);
        let close_frame = &lines[4];
        assert_eq!(close_frame["type"], "close");
        assert_eq!(close_frame["status"], 1000);
        assert_eq!(close_frame["size"], 3);
        let close = &lines[5];
        assert_eq!(close["event"], "close");
        assert_eq!(close["client_status"], 1000);
        assert_eq!(close["upstream_status"], Value::Null);
        assert_eq!(close["client_messages"], 2);
        assert_eq!(close["client_bytes"], 8);
        assert_eq!(close["upstream_messages"], 1);
        assert_eq!(close["upstream_bytes"], 3);
        assert!(close["duration_ms"].is_u64());
        let _ = std::fs::remove_file(&path);
    }
}
