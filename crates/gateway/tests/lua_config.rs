//! Lua plugins in the configuration: errors with their locations, schemas
//! and their defaults, native modules refused even to lua_unsafe, and the
//! example plugin in examples/plugins/.

mod support;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use frameway_gateway::config::Config;
use frameway_gateway::lua::LuaOptions;
use frameway_gateway::plugin::{Chain, Direction, FrameType, Registry, Session};
use support::lua::*;
use support::*;

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
