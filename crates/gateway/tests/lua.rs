//! Lua plugins through the gateway, over real sockets: every usage example
//! of Kong's `kong.websocket.client` and `kong.websocket.upstream` pages run
//! as a Lua plugin with its effect asserted, the handshake PDK, PRIORITY
//! among native plugins, kong.json and kong.log, errors and limits closing
//! only their own connection, configuration errors with their locations,
//! native modules refused even to lua_unsafe, and the example plugin in
//! examples/plugins/.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use frameway::{CloseCode, CloseFrame, Message};
use frameway_gateway::config::Config;
use frameway_gateway::lua::LuaOptions;
use frameway_gateway::plugin::{Chain, Direction, FrameType, Registry, Session, Verdict};
use support::{
    bounded, connect, echo_upstream, gateway_with, next_close, next_upstream, one_route,
    plugin_dir, recv_text, scripted_upstream, within,
};

// ------------------------------------------------------------- helpers ---

/// A configuration with `[gateway]` `lua_plugin_dirs = [dir]` (plus
/// `gateway_extra` lines) and one route to `upstream` running `plugins`:
/// (name, inline TOML config table).
fn lua_config(
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
async fn lua_gateway(upstream: SocketAddr, dir: &Path, plugins: &[(&str, &str)]) -> SocketAddr {
    lua_gateway_with(upstream, dir, "", plugins).await
}

async fn lua_gateway_with(
    upstream: SocketAddr,
    dir: &Path,
    gateway_extra: &str,
    plugins: &[(&str, &str)],
) -> SocketAddr {
    let config = lua_config(upstream, dir, gateway_extra, plugins);
    gateway_with(&config, &Registry::with_builtins()).await
}

fn close_frame(code: u16, reason: &str) -> Option<CloseFrame> {
    Some(CloseFrame::new(CloseCode::new(code).unwrap(), reason).unwrap())
}

/// A handler module: `PRIORITY = 1000`/`VERSION`, then `body`, then
/// `return P`.
fn handler(body: &str) -> String {
    handler_at(1000, body)
}

/// [`handler`] with another `PRIORITY`.
fn handler_at(priority: i32, body: &str) -> String {
    format!("local P = {{ PRIORITY = {priority}, VERSION = \"1.0.0\" }}\n{body}\nreturn P\n")
}

/// The Lua plugin `name` of `dir`, configured with `{}`, alone in a chain
/// for [`Session`] tests.
fn lua_chain(dir: &Path, name: &str) -> Chain {
    let mut registry = Registry::new();
    frameway_gateway::lua::register(&mut registry, &[dir.to_path_buf()], LuaOptions::default())
        .unwrap();
    Chain::new(vec![registry.build(name, &serde_json::json!({})).unwrap()])
}

/// Runs `f` with a subscriber recording this thread's log events as
/// (level, `plugin` field, message): the gateway's log as a test can read
/// it. The subscriber is this thread's alone and a [`Session`] runs
/// handlers on the calling thread, so other tests' events never land here.
fn capture_log<R>(f: impl FnOnce() -> R) -> (R, Vec<(tracing::Level, String, String)>) {
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

// ------------------------------------- the reference pages' examples ---

#[tokio::test]
async fn get_frame_and_set_frame_data_replace_payloads_both_ways() {
    bounded(async {
        let dir = plugin_dir(&[(
            "rewrite",
            "handler.lua",
            &handler(
                r#"
function P:ws_client_frame(conf, typ, data, status)
  local data, typ, status = kong.websocket.client.get_frame()
  if typ == "text" and data == "hello" and status == nil then
    kong.websocket.client.set_frame_data("updated!")
  end
end
function P:ws_upstream_frame(conf, typ, data, status)
  local data, typ, status = kong.websocket.upstream.get_frame()
  kong.websocket.upstream.set_frame_data(data .. " (from the upstream)")
end
"#,
            ),
        )]);
        let (up, mut conns) = scripted_upstream().await;
        let gw = lua_gateway(up, &dir, &[("rewrite", "{}")]).await;
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await;

        client.send_text("hello").await.unwrap();
        assert_eq!(recv_text(&mut upstream.ws).await, "updated!");
        upstream.ws.send_text("hi").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "hi (from the upstream)");
        // Binary payloads arrive as Lua strings too.
        client
            .send_binary(Bytes::from_static(b"\x00\x01"))
            .await
            .unwrap();
        match upstream.ws.recv().await {
            Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], b"\x00\x01"),
            other => panic!("{other:?}"),
        }
    })
    .await;
}

/// Kong's set_status example, in each direction: the close frame's status
/// and payload are rewritten before it is forwarded.
#[tokio::test]
async fn set_status_rewrites_close_frames_both_ways() {
    bounded(async {
        let example = |side: &str| {
            format!(
                r#"
  local data, typ, status = kong.websocket.{side}.get_frame()
  if typ == "close" then
    kong.websocket.{side}.set_frame_data("goodbye!")
    kong.websocket.{side}.set_status(1000)
  end"#
            )
        };
        let dir = plugin_dir(&[(
            "polite",
            "handler.lua",
            &handler(&format!(
                "function P:ws_client_frame(){}\nend\nfunction P:ws_upstream_frame(){}\nend",
                example("client"),
                example("upstream")
            )),
        )]);
        let (up, mut conns) = scripted_upstream().await;
        let gw = lua_gateway(up, &dir, &[("polite", "{}")]).await;

        // The client closes with 4000: the upstream sees 1000 "goodbye!".
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await;
        client
            .send_close(close_frame(4000, "my reasons"))
            .await
            .unwrap();
        assert_eq!(
            next_close(&mut upstream.ws).await,
            (1000, "goodbye!".into())
        );

        // The upstream closes with 4001: the client sees 1000 "goodbye!".
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await;
        upstream
            .ws
            .send_close(close_frame(4001, "upstream reasons"))
            .await
            .unwrap();
        assert_eq!(next_close(&mut client).await, (1000, "goodbye!".into()));
    })
    .await;
}

/// drop_frame in each direction; the plugin after the dropping one (lower
/// PRIORITY) never sees the dropped frame.
#[tokio::test]
async fn drop_frame_drops_and_skips_later_plugins() {
    bounded(async {
        let dir = plugin_dir(&[
            (
                "dropper",
                "handler.lua",
                r#"
local Dropper = { PRIORITY = 20, VERSION = "1.0.0" }
function Dropper:ws_client_frame(conf, typ, data)
  if data:find("drop") then kong.websocket.client.drop_frame() end
end
function Dropper:ws_upstream_frame(conf, typ, data)
  if data:find("secret") then kong.websocket.upstream.drop_frame() end
end
return Dropper
"#,
            ),
            (
                "counter",
                "handler.lua",
                r#"
local Counter = { PRIORITY = 10, VERSION = "1.0.0" }
function Counter:ws_client_frame(conf, typ, data)
  local ctx = kong.ctx.plugin
  ctx.seen = (ctx.seen or 0) + 1
  kong.websocket.client.set_frame_data(data .. " #" .. ctx.seen)
end
return Counter
"#,
            ),
        ]);
        let gw = lua_gateway(
            echo_upstream().await,
            &dir,
            &[("counter", "{}"), ("dropper", "{}")],
        )
        .await;
        let mut client = connect(gw, "/").await;
        client.send_text("drop me").await.unwrap();
        client.send_text("keep me").await.unwrap();
        // Counted 1: the counter never saw the dropped message.
        assert_eq!(recv_text(&mut client).await, "keep me #1");
        // Echoed back, dropped on the way to the client by the upstream rule.
        client.send_text("a secret").await.unwrap();
        client.send_text("no secrets here").await.unwrap();
        client.send_text("last").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "last #4");
    })
    .await;
}

/// PRIORITY places a Lua plugin among native ones, higher first, whatever
/// the configuration's order: a Lua plugin above a native plugin's priority
/// sees the frame before it, one below sees it after.
#[tokio::test]
async fn priority_orders_lua_plugins_among_native_ones() {
    bounded(async {
        let append = |marker: &str| {
            format!(
                "function P:ws_client_frame(conf, typ, data)\n  kong.websocket.client.set_frame_data(data .. \" {marker}\")\nend"
            )
        };
        let dir = plugin_dir(&[
            ("above", "handler.lua", &handler_at(600, &append("above"))),
            ("below", "handler.lua", &handler_at(400, &append("below"))),
        ]);
        let native = support::TestPlugin::new("native")
            .priority(500)
            .on_client_frame(|ctx| {
                let data = format!("{} native", String::from_utf8_lossy(ctx.get_frame().0));
                ctx.set_frame_data(data)?;
                Ok(())
            });
        let config = lua_config(
            echo_upstream().await,
            &dir,
            "",
            &[("below", "{}"), ("native", "{}"), ("above", "{}")],
        );
        let gw = gateway_with(&config, &support::registry(vec![native])).await;
        let mut client = connect(gw, "/").await;
        client.send_text("x").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "x above native below");
    })
    .await;
}

/// close(1009, "Invalid message", 1001, "… is going away") as on both
/// reference pages: each side gets its own status and payload, and the
/// message in flight is not forwarded.
#[tokio::test]
async fn close_sends_each_side_its_status_and_payload() {
    bounded(async {
        let dir = plugin_dir(&[(
            "guard",
            "handler.lua",
            &handler(
                r#"
function P:ws_client_frame(conf, typ, data)
  if data == "bad" then
    kong.websocket.client.close(1009, "Invalid message",
                                1001, "Client is going away")
  end
end
function P:ws_upstream_frame(conf, typ, data)
  if data == "bad" then
    kong.websocket.upstream.close(1009, "Invalid message",
                                  1001, "Upstream is going away")
  end
end
"#,
            ),
        )]);
        let (up, mut conns) = scripted_upstream().await;
        let gw = lua_gateway(up, &dir, &[("guard", "{}")]).await;

        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await;
        client.send_text("bad").await.unwrap();
        assert_eq!(
            next_close(&mut client).await,
            (1009, "Invalid message".into())
        );
        assert_eq!(
            next_close(&mut upstream.ws).await,
            (1001, "Client is going away".into())
        );

        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await;
        upstream.ws.send_text("bad").await.unwrap();
        assert_eq!(
            next_close(&mut upstream.ws).await,
            (1009, "Invalid message".into())
        );
        assert_eq!(
            next_close(&mut client).await,
            (1001, "Upstream is going away".into())
        );
    })
    .await;
}

/// set_max_payload_size in ws_handshake: 1024 bytes pass, 1025 get 1009;
/// `0` restores the default.
#[tokio::test]
async fn set_max_payload_size_limits_each_direction() {
    bounded(async {
        let dir = plugin_dir(&[
            (
                "client-1k",
                "handler.lua",
                &handler("function P:ws_handshake(conf)\n  kong.websocket.client.set_max_payload_size(1024)\nend"),
            ),
            (
                "upstream-1k",
                "handler.lua",
                &handler("function P:ws_handshake(conf)\n  kong.websocket.upstream.set_max_payload_size(1024)\nend"),
            ),
            (
                "reset",
                "handler.lua",
                &handler(
                    "function P:ws_handshake(conf)\n  kong.websocket.client.set_max_payload_size(1024)\n  kong.websocket.client.set_max_payload_size(0)\nend",
                ),
            ),
        ]);
        let echo = echo_upstream().await;

        let gw = lua_gateway(echo, &dir, &[("client-1k", "{}")]).await;
        let mut client = connect(gw, "/").await;
        client.send_text("x".repeat(1024)).await.unwrap();
        assert_eq!(recv_text(&mut client).await.len(), 1024);
        client.send_text("x".repeat(1025)).await.unwrap();
        assert_eq!(next_close(&mut client).await.0, 1009);

        // The echo sends back 2000 bytes: too many for the upstream leg,
        // so the upstream is told 1009 and the client 1001.
        let gw = lua_gateway(echo, &dir, &[("upstream-1k", "{}")]).await;
        let mut client = connect(gw, "/").await;
        client.send_text("y".repeat(1000)).await.unwrap();
        assert_eq!(recv_text(&mut client).await.len(), 1000);
        client.send_text("y".repeat(2000)).await.unwrap();
        assert_eq!(next_close(&mut client).await.0, 1001);

        let gw = lua_gateway(echo, &dir, &[("reset", "{}")]).await;
        let mut client = connect(gw, "/").await;
        client.send_text("z".repeat(4096)).await.unwrap();
        assert_eq!(recv_text(&mut client).await.len(), 4096);
    })
    .await;
}

// -------------------------------------------------- the handshake PDK ---

#[tokio::test]
async fn handshake_pdk_reads_the_request_sets_headers_and_shares_ctx() {
    bounded(async {
        let dir = plugin_dir(&[
            (
                "auth",
                "handler.lua",
                r#"
local cjson = require("cjson")
local Auth = { PRIORITY = 100, VERSION = "1.0.0" }
function Auth:access(conf)
  if kong.request.get_query_arg("apikey") ~= conf.key then
    kong.response.exit(401, { message = "no key" }, { ["X-Why"] = "missing" })
    error("not reached: exit ends the handler")
  end
  local headers = kong.request.get_headers()
  kong.service.request.set_header("X-Seen", table.concat({
    kong.request.get_method(),
    kong.request.get_path(),
    kong.request.get_header("x_custom") or "-",
    headers["X-Custom"] or "-",
    kong.client.get_ip(),
    tostring(kong.request.get_query_arg("flag")),
  }, " "))
  kong.service.request.set_header("X-Answer", 42)
  kong.service.request.clear_header("X-Remove")
  kong.ctx.shared.user = cjson.decode('{"name":"alice"}').name
  kong.log.info("authenticated ", kong.ctx.shared.user)
end
return Auth
"#,
            ),
            (
                "greet",
                "handler.lua",
                r#"
local Greet = { PRIORITY = 10, VERSION = "1.0.0" }
function Greet:ws_client_frame(conf, typ, data)
  kong.ctx.plugin.n = (kong.ctx.plugin.n or 0) + 1
  kong.websocket.client.set_frame_data(kong.ctx.shared.user .. " " .. kong.ctx.plugin.n .. ": " .. data)
end
return Greet
"#,
            ),
        ]);
        let (up, mut conns) = scripted_upstream().await;
        let gw = lua_gateway(up, &dir, &[("auth", "{ key = \"s3cret\" }"), ("greet", "{}")]).await;

        let refused = frameway::connect(&format!("ws://{gw}/?apikey=wrong")).await;
        match refused {
            Err(frameway::Error::UpgradeRefused(r)) => {
                assert_eq!(r.status, 401);
                assert_eq!(r.headers["x-why"], "missing");
                assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
                assert_eq!(&r.body[..], br#"{"message":"no key"}"#);
            }
            other => panic!("expected a 401, got {:?}", other.map(|_| ())),
        }

        let options = frameway::client::ConnectOptions::default()
            .header("X-Custom", "custom")
            .header("X-Remove", "gone");
        let (mut client, _) = frameway::client::connect_with(
            &format!("ws://{gw}/room?apikey=s3cret&flag"),
            options,
        )
        .await
        .unwrap();
        let mut upstream = next_upstream(&mut conns).await;
        let headers = upstream.request.headers();
        assert_eq!(headers["x-seen"], "GET /room custom custom 127.0.0.1 true");
        assert_eq!(headers["x-answer"], "42");
        assert!(headers.get("x-remove").is_none());

        client.send_text("hi").await.unwrap();
        assert_eq!(recv_text(&mut upstream.ws).await, "alice 1: hi");
        client.send_text("again").await.unwrap();
        assert_eq!(recv_text(&mut upstream.ws).await, "alice 2: again");

        // kong.ctx is per connection.
        let (mut other, _) = frameway::connect(&format!("ws://{gw}/?apikey=s3cret"))
            .await
            .unwrap();
        let mut other_up = conns.recv().await.unwrap();
        other.send_text("new").await.unwrap();
        assert_eq!(recv_text(&mut other_up.ws).await, "alice 1: new");
    })
    .await;
}

/// kong.request.get_raw_query gives the query string as the client sent it
/// (undecoded, repeated and valueless arguments kept, in order), and ""
/// when there is none, as Kong's does.
#[tokio::test]
async fn get_raw_query_returns_the_query_as_sent() {
    bounded(async {
        let dir = plugin_dir(&[(
            "raw",
            "handler.lua",
            &handler(
                r#"
function P:ws_handshake(conf)
  kong.service.request.set_header("X-Raw-Query", "[" .. kong.request.get_raw_query() .. "]")
end
"#,
            ),
        )]);
        let (up, mut conns) = scripted_upstream().await;
        let gw = lua_gateway(up, &dir, &[("raw", "{}")]).await;
        for (path, expected) in [
            ("/room?b=x%20y&a=1&flag&a=2", "[b=x%20y&a=1&flag&a=2]"),
            ("/room", "[]"),
        ] {
            let _client = connect(gw, path).await;
            let upstream = next_upstream(&mut conns).await;
            assert_eq!(
                upstream.request.headers()["x-raw-query"],
                expected,
                "{path}"
            );
        }
    })
    .await;
}

/// `log` (Kong's name for `ws_close`) runs when the connection ends, with
/// its `kong.ctx`; `lua_unsafe` gives it `io`.
#[tokio::test]
async fn close_phase_runs_with_the_connection_ctx() {
    close_handler_tallies_the_connection("log").await;
}

/// `ws_close`, under its own name, runs when the connection ends, with its
/// `kong.ctx`.
#[tokio::test]
async fn ws_close_runs_when_the_connection_ends() {
    close_handler_tallies_the_connection("ws_close").await;
}

/// A plugin whose close handler, defined as `P:<phase>`, writes how many
/// messages the connection sent to a file (`io`, hence `lua_unsafe`):
/// asserts the file appears with the right count once the client closes.
async fn close_handler_tallies_the_connection(phase: &str) {
    bounded(async {
        let dir = plugin_dir(&[(
            "tally",
            "handler.lua",
            &handler(&format!(
                r#"
function P:ws_client_frame(conf, typ, data)
  if typ == "text" then kong.ctx.plugin.n = (kong.ctx.plugin.n or 0) + 1 end
end
function P:{phase}(conf)
  local f = assert(io.open(conf.path, "w"))
  f:write(kong.client.get_ip(), " sent ", kong.ctx.plugin.n, " messages")
  f:close()
end
"#
            )),
        )]);
        let out = dir.join("tally.txt");
        let config = format!("{{ path = {:?} }}", out.display().to_string());
        let gw = lua_gateway_with(
            echo_upstream().await,
            &dir,
            "lua_unsafe = true",
            &[("tally", &config)],
        )
        .await;
        let mut client = connect(gw, "/").await;
        for text in ["a", "b", "c"] {
            client.send_text(text).await.unwrap();
            assert_eq!(recv_text(&mut client).await, text);
        }
        client.send_close(close_frame(1000, "")).await.unwrap();
        assert_eq!(next_close(&mut client).await.0, 1000);
        let written = within(&format!("{out:?}, written by {phase}"), async {
            loop {
                match std::fs::read_to_string(&out) {
                    Ok(text) if !text.is_empty() => break text,
                    _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                }
            }
        })
        .await;
        assert_eq!(written, "127.0.0.1 sent 3 messages");
    })
    .await;
}

// ------------------------------------------------ kong.json, kong.log ---

/// kong.json encodes a Lua table and decodes it back to an equal one:
/// nested tables, integers and floats, booleans, UTF-8, `kong.json.null`
/// and `kong.json.empty_array` survive, and what it encodes is the JSON a
/// peer expects.
#[test]
fn kong_json_round_trips_a_table() {
    let dir = plugin_dir(&[(
        "json",
        "handler.lua",
        &handler(
            r#"
function P:ws_client_frame(conf, typ, data)
  local t = { name = "café", n = 42, x = 1.5, yes = true,
              list = { 1, "two", { three = 3 } },
              none = kong.json.null, empty = kong.json.empty_array, obj = {} }
  local back = kong.json.decode(kong.json.encode(t))
  local same = back.name == t.name and back.n == 42 and math.type(back.n) == "integer"
    and back.x == 1.5 and back.yes == true and back.list[1] == 1 and back.list[2] == "two"
    and back.list[3].three == 3 and back.none == kong.json.null
    and #back.empty == 0 and next(back.obj) == nil
  -- Encoded again: [] and {} can only be told apart in the text.
  kong.websocket.client.set_frame_data(tostring(same) .. " " .. kong.json.encode(back))
end
"#,
        ),
    )]);
    let mut session = Session::new(lua_chain(&dir, "json"));
    let out = session
        .frame(Direction::Client, FrameType::Text, Bytes::from("?"), None)
        .unwrap();
    let text = String::from_utf8(out.data.to_vec()).unwrap();
    let (same, json) = text.split_once(' ').unwrap();
    assert_eq!(same, "true", "{text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(json).unwrap(),
        serde_json::json!({
            "name": "café", "n": 42, "x": 1.5, "yes": true,
            "list": [1, "two", { "three": 3 }],
            "none": null, "empty": [], "obj": {},
        })
    );
}

/// Every kong.log level (README's debug, info, notice, warn, err and crit,
/// and Kong's alert and emerg) can be called from a frame handler, which
/// goes on; each message reaches the gateway's log at its level, with the
/// plugin's name and the caller's file:line.
#[test]
fn kong_log_levels_reach_the_gateway_log() {
    let dir = plugin_dir(&[(
        "loud",
        "handler.lua",
        &handler(
            r#"
function P:ws_client_frame(conf, typ, data)
  for _, level in ipairs({ "debug", "info", "notice", "warn", "err", "crit", "alert", "emerg" }) do
    kong.log[level](level, " ", data, " ", 42, " ", true)
  end
  kong.websocket.client.set_frame_data(data .. " logged")
end
"#,
        ),
    )]);
    let mut session = Session::new(lua_chain(&dir, "loud"));
    let (out, logged) = capture_log(|| {
        session
            .frame(Direction::Client, FrameType::Text, Bytes::from("hi"), None)
            .unwrap()
    });
    assert_eq!(&out.data[..], b"hi logged");
    use tracing::Level;
    let expected = [
        (Level::DEBUG, "debug"),
        (Level::INFO, "info"),
        (Level::INFO, "notice"),
        (Level::WARN, "warn"),
        (Level::ERROR, "err"),
        (Level::ERROR, "crit"),
        (Level::ERROR, "alert"),
        (Level::ERROR, "emerg"),
    ];
    assert_eq!(logged.len(), expected.len(), "{logged:?}");
    for ((level, plugin, message), (want_level, name)) in logged.iter().zip(expected) {
        assert_eq!((*level, plugin.as_str()), (want_level, "loud"), "{message}");
        // The path before the plugin's directory is the temporary one,
        // shortened by Lua when long.
        let tail = format!("loud/handler.lua:5: {name} hi 42 true");
        assert!(
            message.ends_with(&tail),
            "{message:?} does not end with {tail:?}"
        );
    }
}

// ------------------------------------------ errors close only their own ---

/// A plugin raising an error, a runaway loop, a misuse (set_status on a
/// text frame), an allocation past the memory cap: each closes its own
/// connection with 1011 while the others keep working.
#[tokio::test]
async fn failures_close_only_their_connection_with_1011() {
    bounded(async {
        let dir = plugin_dir(&[(
            "faulty",
            "handler.lua",
            &handler(
                r#"
function P:ws_client_frame(conf, typ, data)
  if data == "raise" then
    error("boom")
  elseif data == "loop" then
    while true do end
  elseif data == "misuse" then
    kong.websocket.client.set_status(1000)
  elseif data == "hog" then
    -- 64 KiB a step: the 4 MiB memory cap stops it within a hundred
    -- steps, long before the instruction budget would.
    local t = {}
    for i = 1, 1e8 do t[i] = ("x"):rep(65536) .. i end
  end
end
"#,
            ),
        )]);
        let gw = lua_gateway_with(
            echo_upstream().await,
            &dir,
            "lua_max_instructions = 200000\nlua_max_memory = 4194304",
            &[("faulty", "{}")],
        )
        .await;
        let mut bystanders = Vec::new();
        for _ in 0..3 {
            bystanders.push(connect(gw, "/").await);
        }
        for trigger in ["raise", "loop", "misuse", "hog"] {
            let mut victim = connect(gw, "/").await;
            victim.send_text("fine").await.unwrap();
            assert_eq!(recv_text(&mut victim).await, "fine");
            victim.send_text(trigger).await.unwrap();
            assert_eq!(
                next_close(&mut victim).await,
                (1011, "plugin error".into()),
                "{trigger}"
            );
            for (i, ws) in bystanders.iter_mut().enumerate() {
                let text = format!("{trigger}: bystander {i} still served");
                ws.send_text(text.clone()).await.unwrap();
                assert_eq!(recv_text(ws).await, text);
            }
        }
    })
    .await;
}

/// An error in the handshake phase answers 500; the gateway goes on.
#[tokio::test]
async fn handshake_errors_answer_500() {
    bounded(async {
        let dir = plugin_dir(&[(
            "picky",
            "handler.lua",
            &handler(
                r#"
function P:ws_handshake(conf)
  if kong.request.get_query_arg("fail") then error("refused") end
end
"#,
            ),
        )]);
        let gw = lua_gateway(echo_upstream().await, &dir, &[("picky", "{}")]).await;
        match frameway::connect(&format!("ws://{gw}/?fail")).await {
            Err(frameway::Error::UpgradeRefused(r)) => assert_eq!(r.status, 500),
            other => panic!("expected a 500, got {:?}", other.map(|_| ())),
        }
        let mut client = connect(gw, "/").await;
        client.send_text("ok").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "ok");
    })
    .await;
}

/// The errors the gateway logs name the plugin, the file and the line.
#[test]
fn plugin_errors_name_the_plugin_file_and_line() {
    let dir = plugin_dir(&[(
        "faulty",
        "handler.lua",
        &handler(
            r#"
function P:ws_client_frame(conf, typ, data)
  if data == "raise" then
    error("boom")
  elseif data == "loop" then
    while true do end
  elseif data == "misuse" then
    kong.websocket.client.set_status(1000)
  elseif data == "drop-close" then
    kong.websocket.client.drop_frame()
  elseif data == "wrong-side" then
    kong.websocket.upstream.get_frame()
  elseif data == "bad-utf8" then
    kong.websocket.client.set_frame_data("\xff")
  end
end
"#,
        ),
    )]);
    let mut registry = Registry::new();
    let options = LuaOptions {
        max_instructions: 50_000,
        ..LuaOptions::default()
    };
    frameway_gateway::lua::register(&mut registry, &[dir.to_path_buf()], options).unwrap();
    let plugin = registry.build("faulty", &serde_json::json!({})).unwrap();
    let chain = Chain::new(vec![plugin]);
    for (data, kind, expected) in [
        ("raise", FrameType::Text, "faulty/handler.lua:5: boom"),
        (
            "loop",
            FrameType::Text,
            "faulty/handler.lua:7: instruction budget of 50000 exceeded",
        ),
        (
            "misuse",
            FrameType::Text,
            "faulty/handler.lua:9: kong.websocket.client.set_status: cannot set the status of a text frame",
        ),
        (
            "drop-close",
            FrameType::Close,
            "faulty/handler.lua:11: kong.websocket.client.drop_frame: close frames cannot be dropped",
        ),
        (
            "wrong-side",
            FrameType::Text,
            "faulty/handler.lua:13: kong.websocket.upstream.get_frame: function cannot be called in ws_client_frame phase",
        ),
        (
            "bad-utf8",
            FrameType::Text,
            "faulty/handler.lua:15: kong.websocket.client.set_frame_data: text must be UTF-8",
        ),
    ] {
        let mut session = Session::new(chain.clone());
        let status = (kind == FrameType::Close).then_some(1000);
        let err = session
            .frame(Direction::Client, kind, Bytes::from(data), status)
            .unwrap_err();
        assert_eq!(err.plugin, "faulty");
        let message = err.error.to_string();
        assert!(message.contains(expected), "{data}: {message}");
    }
}

/// kong.ctx data lives as long as its connection: a connection with the
/// same id after the close starts afresh.
#[test]
fn ctx_data_is_removed_when_the_connection_ends() {
    let dir = plugin_dir(&[(
        "count",
        "handler.lua",
        &handler(
            r#"
function P:ws_client_frame(conf, typ, data)
  kong.ctx.plugin.n = (kong.ctx.plugin.n or 0) + 1
  kong.ctx.shared.n = (kong.ctx.shared.n or 0) + 10
  kong.websocket.client.set_frame_data(kong.ctx.plugin.n .. "/" .. kong.ctx.shared.n)
end
"#,
        ),
    )]);
    let mut registry = Registry::new();
    frameway_gateway::lua::register(&mut registry, &[dir.to_path_buf()], LuaOptions::default())
        .unwrap();
    let chain = Chain::new(vec![registry
        .build("count", &serde_json::json!({}))
        .unwrap()]);
    let conn = || frameway_gateway::plugin::ConnectionInfo {
        id: 7,
        client_addr: "127.0.0.1:1".parse().unwrap(),
        route: "r".into(),
        service: "s".into(),
        started: std::time::Instant::now(),
        consumer: None,
    };
    let text = |session: &mut Session| {
        let out = session
            .frame(Direction::Client, FrameType::Text, Bytes::from("x"), None)
            .unwrap();
        assert_eq!(out.verdict, Verdict::Forward);
        String::from_utf8(out.data.to_vec()).unwrap()
    };
    let mut first = Session::with_connection(chain.clone(), conn());
    assert_eq!(text(&mut first), "1/10");
    assert_eq!(text(&mut first), "2/20");
    first.close(Some(1000), None);
    let mut second = Session::with_connection(chain, conn());
    assert_eq!(text(&mut second), "1/10");
}

/// kong.ctx belongs to a connection's call: code that runs while a handler
/// loads (Kong's init phase) gets an error, even after other connections'
/// calls have run in the same state.
#[test]
fn ctx_is_refused_while_a_handler_loads() {
    let dir = plugin_dir(&[
        (
            "count",
            "handler.lua",
            &handler(
                r#"
function P:ws_client_frame(conf, typ, data)
  kong.ctx.plugin.n = (kong.ctx.plugin.n or 0) + 1
  kong.websocket.client.set_frame_data(tostring(kong.ctx.plugin.n))
end
"#,
            ),
        ),
        (
            "early",
            "handler.lua",
            "local seen = kong.ctx.plugin\nreturn { PRIORITY = 1, VERSION = \"1\" }\n",
        ),
    ]);
    let mut registry = Registry::new();
    frameway_gateway::lua::register(&mut registry, &[dir.to_path_buf()], LuaOptions::default())
        .unwrap();
    let chain = Chain::new(vec![registry
        .build("count", &serde_json::json!({}))
        .unwrap()]);
    // Connection ids pick the state (one per CPU): a call on each.
    let states = std::thread::available_parallelism().map_or(1, |n| n.get());
    for id in 0..states as u64 {
        let mut session = Session::with_connection(
            chain.clone(),
            frameway_gateway::plugin::ConnectionInfo {
                id,
                client_addr: "127.0.0.1:1".parse().unwrap(),
                route: "r".into(),
                service: "s".into(),
                started: std::time::Instant::now(),
                consumer: None,
            },
        );
        let out = session
            .frame(Direction::Client, FrameType::Text, Bytes::from("x"), None)
            .unwrap();
        assert_eq!(&out.data[..], b"1");
    }
    let err = registry
        .build("early", &serde_json::json!({}))
        .err()
        .expect("a handler reading kong.ctx at load time was accepted");
    assert!(
        err.to_string()
            .contains("early/handler.lua:1: kong.ctx: function cannot be called in init phase"),
        "{err}"
    );
}

// --------------------------------------------------- configuration ---

fn config_errors(dir: &Path, gateway_extra: &str, plugins: &[(&str, &str)]) -> String {
    let text = lua_config("127.0.0.1:9".parse().unwrap(), dir, gateway_extra, plugins);
    match Config::parse(&text, "gateway.toml", &Registry::with_builtins()) {
        Ok(_) => panic!("the configuration was accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn lua_syntax_errors_are_config_errors_with_file_and_line() {
    let dir = plugin_dir(&[(
        "broken",
        "handler.lua",
        "local P = { PRIORITY = 1, VERSION = \"1\" }\n\nfunction P:ws_client_frame(\n  kong.log.err(\nend\nreturn P\n",
    )]);
    let err = config_errors(&dir, "", &[("broken", "{}")]);
    assert!(err.contains("plugin \"broken\""), "{err}");
    assert!(err.contains("broken/handler.lua:4:"), "{err}");
    // Located at the plugin's entry in the file (line 13 of lua_config's layout).
    assert!(err.starts_with("gateway.toml:13:"), "{err}");
}

#[test]
fn handlers_must_declare_priority_and_version() {
    let dir = plugin_dir(&[
        ("nopri", "handler.lua", "return { VERSION = \"1\" }"),
        ("nover", "handler.lua", "return { PRIORITY = 1 }"),
        ("notable", "handler.lua", "return 42"),
    ]);
    for (name, expected) in [
        ("nopri", "nopri/handler.lua: PRIORITY must be an integer"),
        ("nover", "nover/handler.lua: VERSION must be a string"),
        (
            "notable",
            "notable/handler.lua: must return the handler table, returned integer",
        ),
    ] {
        let err = config_errors(&dir, "", &[(name, "{}")]);
        assert!(err.contains(expected), "{err}");
    }
}

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "limited",
  fields = {
    { consumer = typedefs.no_consumer },
    { config = {
        type = "record",
        fields = {
          { limit = { type = "integer", required = true, between = { 1, 100 } } },
          { mode = { type = "string", default = "drop", one_of = { "drop", "close" } } },
          { port = typedefs.port },
        },
    } },
  },
}
"#;

#[test]
fn schema_violations_are_config_errors_naming_the_plugin() {
    let dir = plugin_dir(&[
        ("limited", "handler.lua", &handler("")),
        ("limited", "schema.lua", SCHEMA),
    ]);
    let err = config_errors(
        &dir,
        "",
        &[(
            "limited",
            "{ limit = 1.5, mode = \"shout\", colour = \"red\", port = 70000 }",
        )],
    );
    for expected in [
        "gateway.toml:13:",
        "plugin \"limited\"",
        "config.limit: expected an integer",
        "config.mode: expected one of: drop, close",
        "config.colour: unknown field",
        "config.port: value should be between 0 and 65535",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
    let err = config_errors(&dir, "", &[("limited", "{}")]);
    assert!(
        err.contains("config.limit: required field missing"),
        "{err}"
    );
}

#[tokio::test]
async fn schema_defaults_reach_conf() {
    bounded(async {
        let dir = plugin_dir(&[
            (
                "limited",
                "handler.lua",
                &handler(
                    "function P:ws_client_frame(conf, typ, data)\n  kong.websocket.client.set_frame_data(conf.limit .. ' ' .. conf.mode)\nend",
                ),
            ),
            ("limited", "schema.lua", SCHEMA),
        ]);
        let gw = lua_gateway(echo_upstream().await, &dir, &[("limited", "{ limit = 5 }")]).await;
        let mut client = connect(gw, "/").await;
        client.send_text("?").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "5 drop");
    })
    .await;
}

#[test]
fn bad_lua_settings_and_directories_are_located() {
    let dir = plugin_dir(&[("fine", "handler.lua", &handler(""))]);
    let err = config_errors(&dir.join("missing"), "", &[]);
    assert!(err.contains("gateway.toml:2:"), "{err}");
    assert!(err.contains("lua_plugin_dirs: cannot read"), "{err}");
    let err = config_errors(
        &dir,
        "lua_max_instructions = 10\nlua_max_memory = 1000",
        &[("fine", "{}")],
    );
    // The plugins are still found: no "unknown plugin" besides the real errors.
    assert!(!err.contains("unknown plugin"), "{err}");
    assert!(
        err.contains("gateway.toml:3:24: lua_max_instructions must be at least 1000"),
        "{err}"
    );
    assert!(
        err.contains("gateway.toml:4:18: lua_max_memory must be at least 1048576 bytes"),
        "{err}"
    );
}

/// `os`, `io` and arbitrary modules are out of reach unless
/// `lua_unsafe = true`; a plugin's own modules and cjson always load.
#[tokio::test]
async fn require_is_restricted_unless_unsafe() {
    bounded(async {
        let dir = plugin_dir(&[
            (
                "shell",
                "handler.lua",
                &handler(
                    "local os = require(\"os\")\nfunction P:ws_client_frame()\n  kong.websocket.client.set_frame_data(tostring(os.time() > 0))\nend",
                ),
            ),
            (
                "modular",
                "handler.lua",
                &handler(
                    "local util = require(\"kong.plugins.modular.util\")\nlocal safe = require(\"cjson.safe\")\nfunction P:ws_client_frame(conf, typ, data)\n  kong.websocket.client.set_frame_data(util.shout(data) .. tostring(safe.decode('nope')) .. tostring(io))\nend",
                ),
            ),
            ("modular", "util.lua", "return { shout = function(s) return s:upper() end }"),
        ]);
        let err = config_errors(&dir, "", &[("shell", "{}")]);
        assert!(err.contains("shell/handler.lua:2: module 'os' not found"), "{err}");

        let echo = echo_upstream().await;
        let gw = lua_gateway(echo, &dir, &[("modular", "{}")]).await;
        let mut client = connect(gw, "/").await;
        client.send_text("hey").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "HEYnilnil");

        let gw = lua_gateway_with(echo, &dir, "lua_unsafe = true", &[("shell", "{}")]).await;
        let mut client = connect(gw, "/").await;
        client.send_text("?").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "true");
    })
    .await;
}

/// `lua_unsafe = true` gives Lua's own require, which loads Lua modules
/// from package.path, but never native code: the C searchers are gone (a
/// `.so` on package.cpath is not even opened) and package.loadlib raises.
#[tokio::test]
async fn unsafe_require_never_loads_native_modules() {
    bounded(async {
        let dir = plugin_dir(&[
            ("mods", "pure.lua", "return 'pure Lua'"),
            // Not a shared object: a C searcher would try to open it and
            // fail with "error loading module", a refusal never looks.
            ("mods", "native.so", "not a shared object"),
            (
                "loader",
                "handler.lua",
                &handler(
                    r#"
function P:ws_client_frame(conf, typ, data)
  package.path = conf.dir .. "/?.lua"
  package.cpath = conf.dir .. "/?.so"
  local results = {}
  for _, try in ipairs({
    function() return require("pure") end,
    function() return require("native") end,
    function() return package.loadlib(conf.dir .. "/native.so", "*") end,
  }) do
    local ok, value = pcall(try)
    results[#results + 1] = tostring(ok) .. ": " .. tostring(value)
  end
  kong.websocket.client.set_frame_data(table.concat(results, "\0"))
end
"#,
                ),
            ),
        ]);
        let config = format!("{{ dir = {:?} }}", dir.join("mods").display().to_string());
        let gw = lua_gateway_with(
            echo_upstream().await,
            &dir,
            "lua_unsafe = true",
            &[("loader", &config)],
        )
        .await;
        let mut client = connect(gw, "/").await;
        client.send_text("?").await.unwrap();
        let text = recv_text(&mut client).await;
        let results: Vec<&str> = text.split('\0').collect();
        let [pure, native, loadlib] = results[..] else {
            panic!("{results:?}");
        };
        assert_eq!(pure, "true: pure Lua");
        assert!(
            native.starts_with("false: ")
                && native.contains("module 'native' not found")
                && native.contains("can't load C modules")
                && !native.contains("error loading module"),
            "{native}"
        );
        assert!(
            loadlib.starts_with("false: ") && loadlib.contains("package.loadlib is disabled"),
            "{loadlib}"
        );
    })
    .await;
}

// ------------------------------------------------- the example plugin ---

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins")
}

/// examples/plugins/redact-field redacts a JSON field in both directions.
#[tokio::test]
async fn example_redact_field_plugin_redacts_both_ways() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let config = lua_config(
            up,
            &examples_dir(),
            "",
            &[("redact-field", "{ fields = [\"password\", \"token\"] }")],
        );
        let gw = gateway_with(&config, &Registry::with_builtins()).await;
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await;

        client
            .send_text(r#"{"user":"bob","password":"hunter2","items":[]}"#)
            .await
            .unwrap();
        let seen: serde_json::Value =
            serde_json::from_str(&recv_text(&mut upstream.ws).await).unwrap();
        assert_eq!(
            seen,
            serde_json::json!({ "user": "bob", "password": "[redacted]", "items": [] })
        );

        upstream
            .ws
            .send_text(r#"{"session":{"token":"abc","ttl":60}}"#)
            .await
            .unwrap();
        let got: serde_json::Value = serde_json::from_str(&recv_text(&mut client).await).unwrap();
        assert_eq!(
            got,
            serde_json::json!({ "session": { "token": "[redacted]", "ttl": 60 } })
        );

        // Not JSON, or nothing to redact: forwarded untouched.
        client.send_text("plain text").await.unwrap();
        assert_eq!(recv_text(&mut upstream.ws).await, "plain text");
        client.send_text(r#"{"b": 1, "a": 2}"#).await.unwrap();
        assert_eq!(recv_text(&mut upstream.ws).await, r#"{"b": 1, "a": 2}"#);
    })
    .await;
}

#[test]
fn example_redact_field_plugin_checks_its_config() {
    let err = config_errors(
        &examples_dir(),
        "",
        &[("redact-field", "{ fields = \"password\" }")],
    );
    assert!(err.contains("config.fields: expected an array"), "{err}");
    let err = config_errors(
        &examples_dir(),
        "",
        &[(
            "redact-field",
            "{ fields = [\"a\"], on_invalid = \"explode\" }",
        )],
    );
    assert!(
        err.contains("config.on_invalid: expected one of: forward, drop, close"),
        "{err}"
    );
}

/// Two instances of one plugin (one state set, loaded once) each see their
/// own `conf`.
#[test]
fn instances_keep_their_own_conf() {
    let dir = plugin_dir(&[(
        "tag",
        "handler.lua",
        &handler("function P:ws_upstream_frame(conf, typ, data)\n  kong.websocket.upstream.set_frame_data(data .. conf.tag)\nend"),
    )]);
    let mut registry = Registry::new();
    frameway_gateway::lua::register(&mut registry, &[dir.to_path_buf()], LuaOptions::default())
        .unwrap();
    let a = registry
        .build("tag", &serde_json::json!({ "tag": "a" }))
        .unwrap();
    let b = registry
        .build("tag", &serde_json::json!({ "tag": "b" }))
        .unwrap();
    assert!(a.handles_frames());
    assert_eq!(a.priority(), 1000);
    let mut session = Session::new(Chain::new(vec![a, b]));
    for _ in 0..100 {
        let out = session
            .frame(Direction::Upstream, FrameType::Text, Bytes::from("x"), None)
            .unwrap();
        assert_eq!(&out.data[..], b"xab");
    }
}
