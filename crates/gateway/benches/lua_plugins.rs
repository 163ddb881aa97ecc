//! The per-message cost of Lua plugins against the same plugins in Rust,
//! running a route's plugin chain directly on in-memory frames (no
//! sockets): a no-op handler, one that rewrites text, and the
//! redact-field example on JSON.
//!
//! `cargo bench -p frameway-gateway --bench lua_plugins`

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use frameway_gateway::lua::LuaOptions;
use frameway_gateway::plugin::{
    Chain, Direction, FrameContext, FrameType, Plugin, PluginError, Registry, Session,
};

/// Does nothing with each message, but asks to see it.
struct NativeNoop;

impl Plugin for NativeNoop {
    fn name(&self) -> &str {
        "native-noop"
    }
    fn client_frame(&self, _ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        Ok(())
    }
}

/// Masks every "password" in text messages, as LUA_REWRITE does.
struct NativeRewrite;

impl Plugin for NativeRewrite {
    fn name(&self) -> &str {
        "native-rewrite"
    }
    fn client_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        let (data, kind, _) = ctx.get_frame();
        if kind == FrameType::Text {
            let text = std::str::from_utf8(data).map_err(|e| PluginError::new(e.to_string()))?;
            if text.contains("password") {
                let masked = text.replace("password", "********");
                ctx.set_frame_data(masked)?;
            }
        }
        Ok(())
    }
}

const LUA_NOOP: &str = r#"
local P = { PRIORITY = 0, VERSION = "1.0.0" }
function P:ws_client_frame(conf, typ, data) end
return P
"#;

const LUA_REWRITE: &str = r#"
local P = { PRIORITY = 0, VERSION = "1.0.0" }
function P:ws_client_frame(conf, typ, data)
  if typ == "text" and data:find("password", 1, true) then
    kong.websocket.client.set_frame_data((data:gsub("password", "********")))
  end
end
return P
"#;

fn lua_registry() -> Registry {
    let dir = std::env::temp_dir().join(format!("frameway-bench-lua-{}", std::process::id()));
    for (name, source) in [("lua-noop", LUA_NOOP), ("lua-rewrite", LUA_REWRITE)] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("handler.lua"), source).unwrap();
    }
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins");
    let mut registry = Registry::new();
    frameway_gateway::lua::register(&mut registry, &[dir, examples], LuaOptions::default())
        .unwrap();
    registry
}

/// A text message of `len` bytes with one "password" in it.
fn text(len: usize) -> Bytes {
    let mut s = String::from("{\"user\":\"bob\",\"password\":\"hunter2\",\"note\":\"");
    while s.len() < len - 2 {
        s.push('x');
    }
    s.push_str("\"}");
    Bytes::from(s)
}

fn session(plugin: Arc<dyn Plugin>) -> Session {
    Session::new(Chain::new(vec![plugin]))
}

fn bench(c: &mut Criterion) {
    let registry = lua_registry();
    let lua = |name: &str, config: serde_json::Value| registry.build(name, &config).unwrap();
    let cases: Vec<(&str, &str, Arc<dyn Plugin>)> = vec![
        ("noop", "native", Arc::new(NativeNoop)),
        ("noop", "lua", lua("lua-noop", serde_json::json!({}))),
        ("rewrite", "native", Arc::new(NativeRewrite)),
        ("rewrite", "lua", lua("lua-rewrite", serde_json::json!({}))),
        (
            "redact-field",
            "lua",
            lua(
                "redact-field",
                serde_json::json!({ "fields": ["password"] }),
            ),
        ),
    ];
    for size in [128usize, 4096] {
        let payload = text(size);
        let mut group = c.benchmark_group(format!("plugin chain, {size} B text"));
        group.throughput(Throughput::Elements(1));
        for (what, lang, plugin) in &cases {
            let mut session = session(plugin.clone());
            group.bench_function(BenchmarkId::new(*what, lang), |b| {
                b.iter(|| {
                    session
                        .frame(Direction::Client, FrameType::Text, payload.clone(), None)
                        .unwrap()
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
