//! What Lua plugins run with: kong.json and kong.log, errors and limits
//! closing only their own connection (with the plugin, file and line in
//! the log), and kong.ctx living as long as its connection.

mod support;

use bytes::Bytes;
use frameway_gateway::lua::LuaOptions;
use frameway_gateway::plugin::{Chain, Direction, FrameType, Registry, Session, Verdict};
use support::lua::*;
use support::*;

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

/// kong.node.get_id is the process's id, the same on every call;
/// kong.table.new makes a table and kong.table.clear empties one in place.
#[test]
fn kong_node_and_kong_table_answer_as_in_kong() {
    let body = r#"
function P:ws_client_frame(conf, typ, data)
  local t = kong.table.new(4, 2)
  t[1], t.x = "a", "b"
  local same = t
  kong.table.clear(t)
  local id = kong.node.get_id()
  kong.websocket.client.set_frame_data(
    table.concat({ id, tostring(id == kong.node.get_id()), tostring(next(same) == nil) }, " "))
end
"#;
    let dir = plugin_dir(&[("nodey", "handler.lua", &handler(body))]);
    let mut session = Session::new(lua_chain(&dir, "nodey"));
    let out = session
        .frame(Direction::Client, FrameType::Text, Bytes::from("x"), None)
        .unwrap();
    let expected = format!("{} true true", frameway_gateway::node::id());
    assert_eq!(String::from_utf8(out.data.to_vec()).unwrap(), expected);
}
