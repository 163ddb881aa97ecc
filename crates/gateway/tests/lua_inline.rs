//! Kong's pre-function and post-function: inline Lua chunks per phase, as
//! a kong.yml writes them, over real sockets; and the chunks that cannot
//! run, refused at load.

mod support;

use frameway::client::connect;
use frameway::Message;
use support::{bounded, echo_upstream, gateway, recv, refused_config};

/// A configuration with `[gateway]` lines, the built-in echo on `/`, and a
/// global pre-function whose `[plugins.config]` table holds `chunks`.
fn echo_with_pre_function(gateway: &str, chunks: &str) -> String {
    format!(
        "[gateway]\n{gateway}\n\n[[services]]\nname = \"echo\"\nurl = \"internal://echo\"\n  \
         [[services.routes]]\n  name = \"echo\"\n  paths = [\"/\"]\n\n[[plugins]]\n\
         name = \"pre-function\"\n  [plugins.config]\n{chunks}\n"
    )
}

/// The handshake chunk answers with a header; the client-frame chunk is
/// Kong's closure form (it returns the function that runs from then on,
/// keeping a count); post-function runs after it on the way back.
#[tokio::test]
async fn inline_chunks_run_in_their_phases_first_and_last() {
    bounded(async {
        let up = echo_upstream().await;
        let kong = format!(
            r#"_format_version: "3.0"
services:
- name: echo
  url: ws://{up}
  routes: [{{ name: echo, paths: [/] }}]
plugins:
- name: pre-function
  config:
    ws_handshake:
    - kong.response.set_header("X-Inline", "pre")
    ws_client_frame:
    - |
      local count = 0
      return function()
        count = count + 1
        local data = kong.websocket.client.get_frame()
        kong.websocket.client.set_frame_data(data .. " #" .. count)
      end
- name: post-function
  config:
    ws_upstream_frame:
    - local data = kong.websocket.upstream.get_frame(); kong.websocket.upstream.set_frame_data(data:upper())
"#
        );
        let gw = gateway(&kong).await;
        let (mut ws, response) = connect(format!("ws://{gw}/").as_str()).await.unwrap();
        assert_eq!(response.headers()["x-inline"], "pre");
        for (sent, back) in [("a", "A #1"), ("b", "B #2")] {
            ws.send(Message::text(sent)).await.unwrap();
            assert_eq!(recv(&mut ws).await, Message::text(back));
        }
    })
    .await;
}

/// A chunk that does not compile is refused with its place, and a chunk
/// for a phase a WebSocket has not (`rewrite`) is refused by name.
#[test]
fn inline_chunks_that_cannot_run_are_refused_at_load() {
    let load = |config: &str| {
        let text = format!(
            "[[services]]\nname = \"s\"\nurl = \"internal://echo\"\n  [[services.routes]]\n  name = \"r\"\n  paths = [\"/\"]\n[[plugins]]\nname = \"pre-function\"\nconfig = {config}\n"
        );
        refused_config(&text, "t.toml")
    };
    let syntax = load(r#"{ ws_close = ["ngx.log(ngx.ERR, 'a'", "return"] }"#);
    assert!(
        syntax.starts_with("t.toml:9:")
            && syntax.contains("plugin \"pre-function\": config.ws_close[1]:1:"),
        "{syntax}"
    );
    let rewrite = load(r#"{ rewrite = ["return"] }"#);
    assert!(
        rewrite.contains("config.rewrite: a WebSocket connection has no rewrite phase"),
        "{rewrite}"
    );
    let unknown = load(r#"{ ws_open = [] }"#);
    assert!(unknown.contains("ws_open"), "{unknown}");
}

/// `ngx.shared.DICT`, declared in `[gateway] lua_shared_dicts`, is one
/// dictionary for every connection: counts, `add` that refuses a second
/// time, values read back in a frame phase, and a clear error for a
/// dictionary nobody declared.
#[tokio::test]
async fn shared_dictionaries_are_common_to_every_connection() {
    bounded(async {
        let config = echo_with_pre_function(
            r#"lua_shared_dicts = { counts = "1m" }"#,
            r#"
  ws_handshake = ['''
    local counts = ngx.shared.counts
    local n = counts:incr("conns", 1, 0)
    local ok, err = counts:add("first", "conn-" .. n, 60)
    local missing = select(2, pcall(function() return ngx.shared.nope end))
    kong.response.set_header("X-Count", n .. " " .. tostring(ok) .. " " .. tostring(err))
    kong.response.set_header("X-Missing", missing)
  ''']
  ws_client_frame = ['''
    kong.websocket.client.set_frame_data(ngx.shared.counts:get("first") .. " of " .. ngx.shared.counts:get("conns"))
  ''']
"#,
        );
        let gw = gateway(&config).await;
        let mut seen = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let (ws, response) = connect(format!("ws://{gw}/").as_str()).await.unwrap();
            seen.push(response.headers()["x-count"].to_str().unwrap().to_owned());
            assert!(response.headers()["x-missing"]
                .to_str()
                .unwrap()
                .ends_with("ngx.shared.nope is not declared (add it to [gateway] lua_shared_dicts)"));
            clients.push(ws);
        }
        assert_eq!(seen, ["1 true nil", "2 false exists"]);
        let ws = &mut clients[0];
        ws.send(Message::text("x")).await.unwrap();
        assert_eq!(recv(ws).await, Message::text("conn-1 of 2"));
    })
    .await;
}

/// `kong.ip.is_trusted` answers from `[gateway] trusted_ips`, which are
/// checked at load.
#[tokio::test]
async fn kong_ip_is_trusted_answers_from_trusted_ips() {
    bounded(async {
        let config = |trusted: &str| {
            echo_with_pre_function(
                &format!("trusted_ips = {trusted}"),
                r#"
  ws_handshake = ['''
    local t = kong.ip.is_trusted
    kong.response.set_header("X-Trusted", tostring(t(ngx.var.remote_addr)) .. " "
      .. tostring(t("10.0.0.1")) .. " " .. tostring(t("not an address")))
  ''']
"#,
            )
        };
        let gw = gateway(&config(r#"["127.0.0.0/8", "::1"]"#)).await;
        let (_ws, response) = connect(format!("ws://{gw}/").as_str()).await.unwrap();
        assert_eq!(response.headers()["x-trusted"], "true false false");
        let bad = refused_config(&config(r#"["10.0.0.0/33"]"#), "t.toml");
        assert!(
            bad.starts_with("t.toml:2:16: trusted_ips: \"10.0.0.0/33\""),
            "{bad}"
        );
    })
    .await;
}
