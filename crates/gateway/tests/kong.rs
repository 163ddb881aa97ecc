//! Kong's declarative files served as they are, over real sockets: each
//! scenario runs once through a kong.yml (Kong's documented shapes) and
//! once through the equivalent native TOML, and both must behave alike.

mod support;

use frameway::client::connect;
use frameway::{CloseCode, Message};
use support::{
    bounded, echo_upstream, gateway, next_upstream, raw_request, raw_ws_client, recv,
    scripted_upstream, upgrade_request,
};

/// What a client saw of one attempt.
#[derive(Debug, PartialEq)]
enum Seen {
    /// The handshake was refused with this status.
    Refused(u16),
    /// The upstream was asked for this target, with this Host header.
    Upstream { target: String, host: String },
}

/// Kong's DB-less getting-started shape: a service by `url`, key-auth on
/// it, a consumer with a key. Without the key the handshake is refused;
/// with it the upstream gets the service's path and host (Kong's default
/// `preserve_host: false`) and never sees the key.
#[tokio::test]
async fn a_kong_yml_with_key_auth_behaves_as_its_toml_twin() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let kong = format!(
            r#"_format_version: "3.0"
_transform: true

services:
- name: chat
  url: http://{up}/socket
  plugins:
  - name: key-auth
    config:
      key_names: [apikey]
      hide_credentials: true
      run_on_preflight: true
      anonymous: null
  routes:
  - name: chat-route
    protocols: [http, https]
    paths: [/chat]
    strip_path: true

consumers:
- username: alice
  custom_id: user-17
  keyauth_credentials:
  - key: alice-key
"#
        );
        let toml = format!(
            r#"[[consumers]]
username = "alice"
custom_id = "user-17"
keyauth_credentials = [{{ key = "alice-key" }}]

[[services]]
name = "chat"
url = "ws://{up}/socket"
  [[services.plugins]]
  name = "key-auth"
  config = {{ key_names = ["apikey"], hide_credentials = true }}
  [[services.routes]]
  name = "chat-route"
  paths = ["/chat"]
  preserve_host = false
"#
        );
        let mut outcomes = Vec::new();
        for config in [kong, toml] {
            let gw = gateway(&config).await;
            let mut seen = Vec::new();
            for path in ["/chat/room", "/chat/room?apikey=alice-key"] {
                let response = raw_request(gw, upgrade_request(path, "").as_bytes()).await;
                if response.status != 101 {
                    seen.push(Seen::Refused(response.status));
                    continue;
                }
                let conn = next_upstream(&mut conns).await;
                let host = conn.request.headers()["host"].to_str().unwrap().to_owned();
                seen.push(Seen::Upstream {
                    target: conn.request.uri().to_string(),
                    host,
                });
            }
            outcomes.push(seen);
        }
        assert_eq!(
            outcomes[0],
            [
                Seen::Refused(401),
                Seen::Upstream {
                    target: "/socket/room".into(),
                    host: up.to_string()
                }
            ]
        );
        assert_eq!(outcomes[0], outcomes[1]);
    })
    .await;
}

/// Kong's WebSocket service shape (`protocol: ws`, host and port, routes
/// with `protocols: [ws, wss]`) with websocket-size-limit and a draft-4
/// websocket-validator whose schema uses `pattern` and
/// `patternProperties`: the same messages pass and the same are closed.
#[tokio::test]
async fn kong_websocket_plugins_accept_and_refuse_as_their_toml_twins() {
    bounded(async {
        let up = echo_upstream().await;
        let schema = r#"{"type": "object", "required": ["symbol"], "properties": {"symbol": {"type": "string", "pattern": "^[A-Z]{3,5}$"}}, "patternProperties": {"^x-": {"type": "integer"}}}"#;
        let kong = format!(
            r#"_format_version: "3.0"
services:
- name: feed
  protocol: ws
  host: 127.0.0.1
  port: {port}
  routes:
  - name: feed
    protocols: [ws, wss]
    paths: [/feed]
  plugins:
  - name: websocket-size-limit
    config:
      client_max_payload: 64
  - name: websocket-validator
    config:
      client:
        text:
          type: draft4
          schema: '{schema}'
"#,
            port = up.port()
        );
        let toml = format!(
            r#"[[services]]
name = "feed"
url = "ws://{up}"
  [[services.plugins]]
  name = "websocket-size-limit"
  config = {{ client_max_payload = 64 }}
  [[services.plugins]]
  name = "websocket-validator"
  config = {{ client = {{ text = {{ type = "draft4", schema = '{schema}' }} }} }}
  [[services.routes]]
  name = "feed"
  paths = ["/feed"]
"#
        );
        let messages = [
            r#"{"symbol": "ACME"}"#,
            r#"{"symbol": "ACME", "x-seq": 7}"#,
            r#"{"symbol": "acme"}"#,
            r#"{"symbol": "ACME", "x-seq": "7"}"#,
            r#"{"symbol": "ACME", "padding": "this message is longer than the limit"}"#,
        ];
        let mut outcomes = Vec::new();
        for config in [kong, toml] {
            let gw = gateway(&config).await;
            let mut seen = Vec::new();
            for message in messages {
                let (mut ws, _) = connect(format!("ws://{gw}/feed").as_str()).await.unwrap();
                ws.send(Message::text(message)).await.unwrap();
                let outcome = match ws.recv().await {
                    Some(Ok(Message::Text(echo))) => {
                        assert_eq!(echo.as_str(), message);
                        ws.close(CloseCode::NORMAL, "").await.unwrap();
                        0
                    }
                    Some(Ok(Message::Close(Some(close)))) => close.code.as_u16(),
                    other => panic!("{message}: {other:?}"),
                };
                seen.push(outcome);
            }
            outcomes.push(seen);
        }
        assert_eq!(outcomes[0], [0, 0, 1007, 1007, 1009]);
        assert_eq!(outcomes[0], outcomes[1]);
    })
    .await;
}

/// The JSON form, with top-level routes, plugins and targets that name
/// their entities: the service's host names an upstream, whose targets
/// serve it; ip-restriction refuses with its own status and message.
#[tokio::test]
async fn a_kong_json_file_with_top_level_entities_is_served() {
    bounded(async {
        let (a, b) = (echo_upstream().await, echo_upstream().await);
        let kong = format!(
            r#"{{
  "_format_version": "2.1",
  "services": [{{ "name": "echo", "host": "backend", "protocol": "http", "port": 80 }}],
  "routes": [
    {{ "name": "open", "service": "echo", "paths": ["/open"] }},
    {{ "name": "closed", "service": {{ "name": "echo" }}, "paths": ["/closed"] }}
  ],
  "plugins": [{{
    "name": "ip-restriction", "route": "closed",
    "config": {{ "deny": ["127.0.0.0/8"], "status": 418, "message": "not from here" }}
  }}],
  "upstreams": [{{ "name": "backend", "targets": [{{ "target": "{a}" }}] }}],
  "targets": [{{ "target": "{b}", "upstream": "backend", "weight": 50 }}]
}}"#
        );
        let gw = gateway(&kong).await;
        for _ in 0..2 {
            let (mut ws, _) = connect(format!("ws://{gw}/open").as_str()).await.unwrap();
            ws.send(Message::text("hello")).await.unwrap();
            assert_eq!(recv(&mut ws).await, Message::text("hello"));
            ws.close(CloseCode::NORMAL, "").await.unwrap();
        }
        let refused = raw_request(gw, upgrade_request("/closed", "").as_bytes()).await;
        assert_eq!(refused.status, 418);
        assert!(
            String::from_utf8_lossy(&refused.body).contains("not from here"),
            "{refused:?}"
        );
    })
    .await;
}

/// Kong's route `headers`: of two routes on one path, the one whose header
/// condition the request meets wins (values compared without regard to
/// case); the TOML twin routes alike.
#[tokio::test]
async fn routes_with_header_conditions_route_as_their_toml_twins() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let kong = format!(
            r#"_format_version: "3.0"
services:
- name: blue
  url: ws://{up}/blue
  routes: [{{ name: blue, paths: [/chat], headers: {{ x-tenant: [blue, azure] }} }}]
- name: other
  url: ws://{up}/other
  routes: [{{ name: other, paths: [/chat] }}]
"#
        );
        let toml = format!(
            r#"[[services]]
name = "blue"
url = "ws://{up}/blue"
  [[services.routes]]
  name = "blue"
  paths = ["/chat"]
  headers = {{ x-tenant = ["blue", "azure"] }}
[[services]]
name = "other"
url = "ws://{up}/other"
  [[services.routes]]
  name = "other"
  paths = ["/chat"]
"#
        );
        for config in [kong, toml] {
            let gw = gateway(&config).await;
            for (extra, want) in [
                ("X-Tenant: Blue\r\n", "/blue/room"),
                ("X-Tenant: azure\r\n", "/blue/room"),
                ("X-Tenant: red\r\n", "/other/room"),
                ("", "/other/room"),
            ] {
                let _client = raw_ws_client(gw, &upgrade_request("/chat/room", extra), b"").await;
                let conn = next_upstream(&mut conns).await;
                assert_eq!(conn.request.uri(), want, "{extra:?}");
            }
        }
    })
    .await;
}

/// Kong's `~` paths and `~*` header values, ranked as Kong ranks them: of
/// two matching regular expressions the higher `regex_priority` wins, any
/// regular expression beats any prefix, and a header condition beats a
/// longer path. The TOML twin routes alike.
#[tokio::test]
async fn regular_expression_routes_rank_as_in_kong_and_as_their_toml_twins() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let kong = format!(
            r#"_format_version: "3.0"
services:
- name: one-room
  url: ws://{up}/one
  routes: [{{ name: one-room, paths: ["~/rooms/\\d+$"], regex_priority: 10 }}]
- name: any-room
  url: ws://{up}/any
  routes: [{{ name: any-room, paths: ["~/rooms/"], strip_path: false }}]
- name: lobby
  url: ws://{up}/lobby
  routes: [{{ name: lobby, paths: [/rooms/lobby/long/prefix] }}]
- name: v2
  url: ws://{up}/v2
  routes: [{{ name: v2, paths: [/chat], headers: {{ x-version: ["~*^v2(\\.\\d+)?$"] }} }}]
- name: chat
  url: ws://{up}/chat
  routes: [{{ name: chat, paths: [/chat/long/prefix] }}]
"#
        );
        let toml = format!(
            r#"[[services]]
name = "one-room"
url = "ws://{up}/one"
  [[services.routes]]
  name = "one-room"
  paths = ['~/rooms/\d+$']
  regex_priority = 10
[[services]]
name = "any-room"
url = "ws://{up}/any"
  [[services.routes]]
  name = "any-room"
  paths = ["~/rooms/"]
  strip_path = false
[[services]]
name = "lobby"
url = "ws://{up}/lobby"
  [[services.routes]]
  name = "lobby"
  paths = ["/rooms/lobby/long/prefix"]
[[services]]
name = "v2"
url = "ws://{up}/v2"
  [[services.routes]]
  name = "v2"
  paths = ["/chat"]
  headers = {{ x-version = ['~*^v2(\.\d+)?$'] }}
[[services]]
name = "chat"
url = "ws://{up}/chat"
  [[services.routes]]
  name = "chat"
  paths = ["/chat/long/prefix"]
"#
        );
        for config in [kong, toml] {
            let gw = gateway(&config).await;
            for (path, extra, want) in [
                // Both expressions match; the higher priority wins and, with
                // strip_path, everything it matched is removed.
                ("/rooms/42", "", "/one"),
                ("/rooms/42x", "", "/any/rooms/42x"),
                (
                    "/rooms/lobby/long/prefix/x",
                    "",
                    "/any/rooms/lobby/long/prefix/x",
                ),
                (
                    "/chat/long/prefix/x",
                    "X-Version: V2.1\r\n",
                    "/v2/long/prefix/x",
                ),
                ("/chat/long/prefix/x", "X-Version: v3\r\n", "/chat/x"),
                ("/chat/long/prefix/x", "", "/chat/x"),
            ] {
                let _client = raw_ws_client(gw, &upgrade_request(path, extra), b"").await;
                let conn = next_upstream(&mut conns).await;
                assert_eq!(conn.request.uri(), want, "{path} {extra:?}");
            }
        }
    })
    .await;
}
