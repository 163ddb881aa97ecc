//! What the Lua plugin tests share: configurations with `lua_plugin_dirs`,
//! handler modules, a chain of one Lua plugin for [`Session`](frameway_gateway::plugin::Session) tests, and
//! the gateway's log as a test can read it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use frameway_gateway::lua::LuaOptions;
use frameway_gateway::plugin::{Chain, Registry};

use super::{gateway_with, one_route};

/// A configuration with `[gateway]` `lua_plugin_dirs = [dir]` (plus
/// `gateway_extra` lines) and one route to `upstream` running `plugins`:
/// (name, inline TOML config table).
pub fn lua_config(
    upstream: SocketAddr,
    dir: &Path,
    gateway_extra: &str,
    plugins: &[(&str, &str)],
) -> String {
    let entries: String = plugins
        .iter()
        .map(|(name, config)| {
            format!("  [[services.routes.plugins]]\n  name = \"{name}\"\n  config = {config}\n")
        })
        .collect();
    format!(
        "[gateway]\nlua_plugin_dirs = [{:?}]\n{gateway_extra}\n{}",
        dir.display().to_string(),
        one_route(upstream, &entries)
    )
}

/// A gateway running the Lua `plugins` of `dir` on one route to `upstream`.
pub async fn lua_gateway(upstream: SocketAddr, dir: &Path, plugins: &[(&str, &str)]) -> SocketAddr {
    lua_gateway_with(upstream, dir, "", plugins).await
}

pub async fn lua_gateway_with(
    upstream: SocketAddr,
    dir: &Path,
    gateway_extra: &str,
    plugins: &[(&str, &str)],
) -> SocketAddr {
    let config = lua_config(upstream, dir, gateway_extra, plugins);
    gateway_with(&config, &Registry::with_builtins()).await
}

/// A handler module: `PRIORITY = 1000`/`VERSION`, then `body`, then
/// `return P`.
pub fn handler(body: &str) -> String {
    handler_at(1000, body)
}

/// [`handler`] with another `PRIORITY`.
pub fn handler_at(priority: i32, body: &str) -> String {
    format!("local P = {{ PRIORITY = {priority}, VERSION = \"1.0.0\" }}\n{body}\nreturn P\n")
}

/// The Lua plugin `name` of `dir`, configured with `{}`, alone in a chain
/// for [`Session`](frameway_gateway::plugin::Session) tests.
pub fn lua_chain(dir: &Path, name: &str) -> Chain {
    let mut registry = Registry::new();
    frameway_gateway::lua::register(&mut registry, &[dir.to_path_buf()], LuaOptions::default())
        .unwrap();
    Chain::new(vec![registry.build(name, &serde_json::json!({})).unwrap()])
}

/// Runs `f` with a subscriber recording this thread's log events as
/// (level, `plugin` field, message): the gateway's log as a test can read
/// it. The subscriber is this thread's alone and a [`Session`](frameway_gateway::plugin::Session) runs
/// handlers on the calling thread, so other tests' events never land here.
pub fn capture_log<R>(f: impl FnOnce() -> R) -> (R, Vec<(tracing::Level, String, String)>) {
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<(tracing::Level, String, String)>>>);

    #[derive(Default)]
    struct Fields {
        plugin: String,
        message: String,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "plugin" {
                self.plugin = value.to_owned();
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.message = format!("{value:?}");
            }
        }
    }

    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let level = *event.metadata().level();
            self.0
                .lock()
                .unwrap()
                .push((level, fields.plugin, fields.message));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    let capture = Capture::default();
    let result = tracing::subscriber::with_default(capture.clone(), f);
    let events = capture.0.lock().unwrap().clone();
    (result, events)
}
