//! Lua plugins' PDK through the gateway, over real sockets: every usage
//! example of Kong's `kong.websocket.client` and `kong.websocket.upstream`
//! pages run as a Lua plugin with its effect asserted, PRIORITY among
//! native plugins, the handshake PDK and the close phase.

mod support;

use bytes::Bytes;
use frameway::Message;
use support::lua::*;
use support::*;

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
