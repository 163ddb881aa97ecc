//! Kong's pre-function and post-function: inline Lua chunks per phase, as
//! a kong.yml writes them, over real sockets; and the chunks that cannot
//! run, refused at load.

mod support;

use frameway::client::connect;
use frameway::Message;
use frameway_gateway::config::Config;
use frameway_gateway::plugin::Registry;
use support::{bounded, echo_upstream, gateway, recv};

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
        match Config::parse(&text, "t.toml", &Registry::with_builtins()) {
            Ok(_) => panic!("{config} loads"),
            Err(e) => e.to_string(),
        }
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
