//! The built-in plugins, and a Lua plugin found through a configuration
//! file, end to end: a real client, the gateway and a real upstream on
//! 127.0.0.1.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use frameway::client::{connect_with, ClientStream, ConnectOptions};
use frameway::server::{accept_with, Decision, ServerConfig};
use frameway::{CloseCode, Error, Message, WebSocket};
use frameway_gateway::config::Config;
use frameway_gateway::plugin::Registry;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use support::{bounded, messages_until_close};

/// How long one expected event may take.
const WAIT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------- helpers ---

/// A one-route configuration to `upstream` with the plugin `name` and its
/// `config` (a TOML inline table).
fn with_plugin(upstream: SocketAddr, name: &str, config: &str) -> String {
    support::one_route(
        upstream,
        &format!("  [[services.routes.plugins]]\n  name = \"{name}\"\n  config = {config}\n"),
    )
}

/// Opens a WebSocket through the gateway at `addr`, with `path` (and
/// query) and extra request headers.
async fn open(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<WebSocket<ClientStream>, Error> {
    let mut options = ConnectOptions::default();
    for (name, value) in headers {
        options = options.header(*name, *value);
    }
    let url = format!("ws://{addr}{path}");
    tokio::time::timeout(WAIT, connect_with(&url, options))
        .await
        .expect("the handshake timed out")
        .map(|(ws, _)| ws)
}

async fn open_ok(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> WebSocket<ClientStream> {
    open(addr, path, headers)
        .await
        .unwrap_or_else(|e| panic!("connect {path}: {e}"))
}

/// The refusal of a handshake: status, headers and body.
async fn refused(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    match open(addr, path, headers).await {
        Err(Error::UpgradeRefused(r)) => (
            r.status.as_u16(),
            r.headers.clone(),
            String::from_utf8_lossy(&r.body).into_owned(),
        ),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, the handshake succeeded"),
    }
}

/// The `message` of a Kong-style JSON error body.
fn message_of(body: &str) -> String {
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
    body["message"].as_str().unwrap().to_owned()
}

/// The next message (not a close, not an error).
async fn next(ws: &mut WebSocket<ClientStream>) -> Message {
    match tokio::time::timeout(WAIT, ws.recv()).await {
        Ok(Some(Ok(Message::Close(c)))) => panic!("expected a message, got close {c:?}"),
        Ok(Some(Ok(m))) => m,
        Ok(Some(Err(e))) => panic!("expected a message, got {e}"),
        Ok(None) => panic!("expected a message, the connection ended"),
        Err(_) => panic!("timed out waiting for a message"),
    }
}

async fn next_text(ws: &mut WebSocket<ClientStream>) -> String {
    match next(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// An upstream that can tell the test what it saw: if `greet`, its first
/// message is the request as it arrived (`{"target": ..., "headers":
/// {...}}`); then it echoes text and binary messages; the close status it
/// receives goes to the channel (0 if the connection ended without one).
async fn reporting_upstream(greet: bool) -> (SocketAddr, mpsc::UnboundedReceiver<u16>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut seen = Value::Null;
                let accepted = accept_with(tcp, ServerConfig::default(), |req, _| {
                    let mut headers = serde_json::Map::new();
                    for (name, value) in req.headers() {
                        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                        headers.insert(name.as_str().to_owned(), value.into());
                    }
                    seen = json!({ "target": req.uri().to_string(), "headers": headers });
                    Decision::accept()
                })
                .await;
                let Ok(mut ws) = accepted else {
                    return;
                };
                if greet && ws.send_text(seen.to_string()).await.is_err() {
                    return;
                }
                loop {
                    match ws.recv().await {
                        Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                            if ws.send(m).await.is_err() {
                                let _ = tx.send(0);
                                return;
                            }
                        }
                        Some(Ok(Message::Close(c))) => {
                            let _ = tx.send(c.map_or(1005, |c| c.code.as_u16()));
                            return;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => {
                            let _ = tx.send(0);
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn upstream_close(rx: &mut mpsc::UnboundedReceiver<u16>) -> u16 {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for the upstream's close")
        .expect("the upstream is gone")
}

// ------------------------------------------------------------ key-auth ---

const KEY_AUTH: &str = r#"{ key_names = ["apikey"], keys = ["s3cret"] }"#;

#[tokio::test]
async fn key_auth_accepts_a_key_in_a_header_or_the_query() {
    bounded(async {
        let gw = support::gateway(&with_plugin(
            support::echo_upstream().await,
            "key-auth",
            KEY_AUTH,
        ))
        .await;
        let mut ws = open_ok(gw, "/", &[("apikey", "s3cret")]).await;
        ws.send_text("by header").await.unwrap();
        assert_eq!(next_text(&mut ws).await, "by header");
        let mut ws = open_ok(gw, "/?apikey=s3cret", &[]).await;
        ws.send_text("by query").await.unwrap();
        assert_eq!(next_text(&mut ws).await, "by query");
    })
    .await;
}

#[tokio::test]
async fn key_auth_refuses_missing_and_wrong_keys_with_401() {
    bounded(async {
        // The issue's configuration: key-auth as a global plugin.
        let config = format!(
            "{}\n[[plugins]]\nname = \"key-auth\"\nconfig = {KEY_AUTH}\n",
            support::one_route(support::echo_upstream().await, "")
        );
        let gw = support::gateway(&config).await;
        for (path, headers, expected) in [
            ("/", &[][..], "No API key found in request"),
            ("/?apikey=", &[][..], "No API key found in request"),
            (
                "/",
                &[("apikey", "wrong")][..],
                "Invalid authentication credentials",
            ),
            (
                "/?apikey=s3cre",
                &[][..],
                "Invalid authentication credentials",
            ),
            (
                "/?apikey=s3cret&apikey=s3cret",
                &[][..],
                "Duplicate API key found",
            ),
        ] {
            let (status, headers, body) = refused(gw, path, headers).await;
            assert_eq!(status, 401, "{path}");
            assert_eq!(message_of(&body), expected, "{path}");
            assert_eq!(headers["www-authenticate"], "Key realm=\"frameway\"");
            assert_eq!(headers["content-type"], "application/json; charset=utf-8");
        }
    })
    .await;
}

#[tokio::test]
async fn key_auth_hide_credentials_strips_the_key_before_the_upstream() {
    bounded(async {
        let (up, _) = reporting_upstream(true).await;
        let shown = support::gateway(&with_plugin(up, "key-auth", KEY_AUTH)).await;
        let hidden = support::gateway(&with_plugin(
            up,
            "key-auth",
            r#"{ keys = ["s3cret"], hide_credentials = true }"#,
        ))
        .await;
        let seen = |text: String| serde_json::from_str::<Value>(&text).unwrap();

        let mut ws = open_ok(shown, "/room?apikey=s3cret&x=1", &[("x-other", "1")]).await;
        let request = seen(next_text(&mut ws).await);
        assert_eq!(request["target"], "/room?apikey=s3cret&x=1");
        let mut ws = open_ok(shown, "/room", &[("apikey", "s3cret")]).await;
        let request = seen(next_text(&mut ws).await);
        assert_eq!(request["headers"]["apikey"], "s3cret");

        let mut ws = open_ok(hidden, "/room?x=1&apikey=s3cret&y=2", &[]).await;
        let request = seen(next_text(&mut ws).await);
        assert_eq!(request["target"], "/room?x=1&y=2");
        let mut ws = open_ok(hidden, "/room?apikey=s3cret", &[]).await;
        let request = seen(next_text(&mut ws).await);
        assert_eq!(request["target"], "/room");
        let mut ws = open_ok(hidden, "/room", &[("apikey", "s3cret"), ("x-other", "1")]).await;
        let request = seen(next_text(&mut ws).await);
        assert!(request["headers"].get("apikey").is_none(), "{request}");
        assert_eq!(request["headers"]["x-other"], "1");
        // The connection itself works as usual.
        ws.send_text("after").await.unwrap();
        assert_eq!(next_text(&mut ws).await, "after");
    })
    .await;
}

// ------------------------------------------------------ ip-restriction ---

#[tokio::test]
async fn ip_restriction_lets_allowed_clients_through() {
    bounded(async {
        let up = support::echo_upstream().await;
        for config in [
            r#"{ allow = ["127.0.0.1"] }"#,
            r#"{ allow = ["127.0.0.0/8", "::1"] }"#,
            r#"{ deny = ["10.0.0.0/8", "::/0"] }"#,
        ] {
            let gw = support::gateway(&with_plugin(up, "ip-restriction", config)).await;
            let mut ws = open_ok(gw, "/", &[]).await;
            ws.send_text(config).await.unwrap();
            assert_eq!(next_text(&mut ws).await, config);
        }
    })
    .await;
}

#[tokio::test]
async fn ip_restriction_refuses_others_with_403() {
    bounded(async {
        let up = support::echo_upstream().await;
        for config in [
            r#"{ deny = ["127.0.0.1"] }"#,
            r#"{ deny = ["127.0.0.0/8"] }"#,
            r#"{ allow = ["10.0.0.0/8", "2001:db8::/32"] }"#,
            r#"{ allow = ["127.0.0.1"], deny = ["127.0.0.0/24"] }"#,
        ] {
            let gw = support::gateway(&with_plugin(up, "ip-restriction", config)).await;
            let (status, _, body) = refused(gw, "/", &[]).await;
            assert_eq!(status, 403, "{config}");
            assert_eq!(message_of(&body), "Your IP address is not allowed");
        }
    })
    .await;
}

// ------------------------------------------------- websocket-validator ---

const NAMED: &str = r#"'{ "type": "object", "required": ["name"] }'"#;

#[tokio::test]
async fn validator_passes_valid_messages_and_closes_on_invalid_ones() {
    bounded(async {
        let (up, mut closes) = reporting_upstream(false).await;
        let config =
            format!("{{ client = {{ text = {{ type = \"draft4\", schema = {NAMED} }} }} }}");
        let gw = support::gateway(&with_plugin(up, "websocket-validator", &config)).await;
        let mut ws = open_ok(gw, "/", &[]).await;
        ws.send_text(r#"{"name":"Alex"}"#).await.unwrap();
        assert_eq!(next_text(&mut ws).await, r#"{"name":"Alex"}"#);
        // Binary messages have no schema here: they pass.
        ws.send_binary(&b"\x00\x01"[..]).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::binary(&b"\x00\x01"[..]));
        ws.send_text(r#"{"missing_name":true}"#).await.unwrap();
        let (before, (code, reason)) = messages_until_close(&mut ws).await;
        assert!(before.is_empty(), "{before:?}");
        assert_eq!((code, reason.as_str()), (1007, "Invalid Frame Payload"));
        assert_eq!(upstream_close(&mut closes).await, 1001);
    })
    .await;
}

#[tokio::test]
async fn validator_drop_mode_drops_invalid_messages_and_goes_on() {
    bounded(async {
        let up = support::echo_upstream().await;
        let config = format!(
            "{{ client = {{ text = {{ schema = {NAMED} }}, binary = {{ schema = {NAMED} }} }}, action = \"drop\" }}"
        );
        let gw = support::gateway(&with_plugin(up, "websocket-validator", &config)).await;
        let mut ws = open_ok(gw, "/", &[]).await;
        ws.send_text("not json").await.unwrap();
        ws.send_text(r#"{"nom":"x"}"#).await.unwrap();
        ws.send_binary(&b"{}"[..]).await.unwrap();
        ws.send_text(r#"{"name":1}"#).await.unwrap();
        // Only the valid message came back: the invalid ones never reached
        // the upstream.
        assert_eq!(next_text(&mut ws).await, r#"{"name":1}"#);
        ws.send_binary(&br#"{"name":2}"#[..]).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::binary(&br#"{"name":2}"#[..]));
    })
    .await;
}

#[tokio::test]
async fn validator_checks_upstream_binary_messages_with_a_table_schema() {
    bounded(async {
        let (up, mut closes) = reporting_upstream(false).await;
        // The schema as a TOML table, draft 07, for the upstream's binary
        // messages; the echo upstream sends back whatever the client sent.
        let config = r#"
[[services]]
name = "svc"
url = "ws://UP"
  [[services.routes]]
  name = "route"
  paths = ["/"]
  [[services.routes.plugins]]
  name = "websocket-validator"
    [services.routes.plugins.config.upstream.binary]
    type = "draft7"
    schema = { type = "array", items = { type = "number" }, maxItems = 3 }
"#
        .replace("UP", &up.to_string());
        let gw = support::gateway(&config).await;
        let mut ws = open_ok(gw, "/", &[]).await;
        ws.send_binary(&b"[1, 2.5]"[..]).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::binary(&b"[1, 2.5]"[..]));
        // Text from the upstream is not checked.
        ws.send_text("[\"x\"]").await.unwrap();
        assert_eq!(next_text(&mut ws).await, "[\"x\"]");
        ws.send_binary(&b"[1, 2, 3, 4]"[..]).await.unwrap();
        // The upstream sent the invalid message: it gets 1007, the client 1001.
        let (before, (code, _)) = messages_until_close(&mut ws).await;
        assert!(before.is_empty(), "{before:?}");
        assert_eq!(code, 1001);
        assert_eq!(upstream_close(&mut closes).await, 1007);
    })
    .await;
}

// ------------------------------------------------ websocket-rate-limit ---

#[tokio::test]
async fn rate_limit_closes_with_1008_when_exceeded() {
    bounded(async {
        let (up, mut closes) = reporting_upstream(false).await;
        // A long window: the test never sees it roll over.
        let config = r#"{ client_limit = 3, window = 60 }"#;
        let gw = support::gateway(&with_plugin(up, "websocket-rate-limit", config)).await;
        let mut ws = open_ok(gw, "/", &[]).await;
        for i in 0..3 {
            ws.send_text(format!("m{i}")).await.unwrap();
            assert_eq!(next_text(&mut ws).await, format!("m{i}"));
            // Control frames are not counted.
            ws.send_ping(&b"p"[..]).await.unwrap();
            assert_eq!(next(&mut ws).await, Message::Pong("p".into()));
        }
        ws.send_text("one too many").await.unwrap();
        let (before, (code, reason)) = messages_until_close(&mut ws).await;
        assert!(before.is_empty(), "{before:?}");
        assert_eq!((code, reason.as_str()), (1008, "Rate limit exceeded"));
        assert_eq!(upstream_close(&mut closes).await, 1001);
    })
    .await;
}

#[tokio::test]
async fn rate_limit_drop_mode_drops_the_extras() {
    bounded(async {
        let up = support::echo_upstream().await;
        let config = r#"{ client_limit = 2, window = 60, action = "drop" }"#;
        let gw = support::gateway(&with_plugin(up, "websocket-rate-limit", config)).await;
        let mut ws = open_ok(gw, "/", &[]).await;
        for m in ["a", "b", "c", "d"] {
            ws.send_text(m).await.unwrap();
        }
        // The ping passes and is answered after what the upstream echoed:
        // only the first two messages were forwarded.
        ws.send_ping(&b"end"[..]).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "a");
        assert_eq!(next_text(&mut ws).await, "b");
        assert_eq!(next(&mut ws).await, Message::Pong("end".into()));
        // Another connection has its own allowance.
        let mut other = open_ok(gw, "/", &[]).await;
        other.send_text("fresh").await.unwrap();
        assert_eq!(next_text(&mut other).await, "fresh");
    })
    .await;
}

#[tokio::test]
async fn rate_limit_applies_to_the_upstream_direction() {
    bounded(async {
        let (up, mut closes) = reporting_upstream(false).await;
        let config = r#"{ upstream_limit = 2, window = 60 }"#;
        let gw = support::gateway(&with_plugin(up, "websocket-rate-limit", config)).await;
        let mut ws = open_ok(gw, "/", &[]).await;
        for m in ["a", "b"] {
            ws.send_text(m).await.unwrap();
            assert_eq!(next_text(&mut ws).await, m);
        }
        // The client is not limited; the upstream's third echo is.
        ws.send_text("c").await.unwrap();
        let (before, (code, _)) = messages_until_close(&mut ws).await;
        assert!(before.is_empty(), "{before:?}");
        assert_eq!(code, 1001);
        assert_eq!(upstream_close(&mut closes).await, 1008);
    })
    .await;
}

// ------------------------------------------------------- websocket-log ---

fn log_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "frameway-gw-log-{name}-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// The log's lines, once one with `"event": "close"` has been written.
async fn log_until_close(path: &PathBuf) -> Vec<Value> {
    let read = async {
        loop {
            let lines: Vec<Value> = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
                .collect();
            if lines.iter().any(|l| l["event"] == "close") {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("no close line in the log")
}

#[tokio::test]
async fn log_writes_json_lines_with_close_codes() {
    bounded(async {
        let path = log_path("e2e");
        let up = support::echo_upstream().await;
        let config = format!("{{ path = {:?} }}", path.to_str().unwrap());
        let gw = support::gateway(&with_plugin(up, "websocket-log", &config)).await;
        let mut ws = open_ok(gw, "/chat?x=1", &[]).await;
        ws.send_text("hello").await.unwrap();
        assert_eq!(next_text(&mut ws).await, "hello");
        ws.send_binary(vec![1u8, 2, 3]).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::binary(vec![1u8, 2, 3]));
        ws.close(CloseCode::NORMAL, "bye").await.unwrap();

        let lines = log_until_close(&path).await;
        let id = lines[0]["connection"].as_u64().unwrap();
        assert!(lines.iter().all(|l| l["connection"] == id), "{lines:#?}");
        assert!(lines.iter().all(|l| l["time"].is_u64()), "{lines:#?}");
        let open = &lines[0];
        assert_eq!(open["event"], "open");
        assert_eq!(open["route"], "route");
        assert_eq!(open["service"], "svc");
        assert_eq!(open["client_ip"], "127.0.0.1");
        assert_eq!(open["path"], "/chat");
        let frames: Vec<(String, String, u64)> = lines
            .iter()
            .filter(|l| l["event"] == "frame")
            .map(|l| {
                (
                    l["direction"].as_str().unwrap().to_owned(),
                    l["type"].as_str().unwrap().to_owned(),
                    l["size"].as_u64().unwrap(),
                )
            })
            .collect();
        let expected = [
            ("client", "text", 5),
            ("upstream", "text", 5),
            ("client", "binary", 3),
            ("upstream", "binary", 3),
            ("client", "close", 3),
        ]
        .map(|(d, t, s)| (d.to_owned(), t.to_owned(), s));
        assert_eq!(frames, expected);
        let close_frame = lines.iter().find(|l| l["type"] == "close").unwrap();
        assert_eq!(close_frame["status"], 1000);
        let close = lines.last().unwrap();
        assert_eq!(close["event"], "close");
        assert_eq!(close["client_status"], 1000);
        assert_eq!(close["client_messages"], 3);
        assert_eq!(close["client_bytes"], 5 + 3 + 3);
        // The upstream's two echoes (its answer to the close may or may not
        // be counted, depending on how the gateway finishes the close).
        let upstream_messages = close["upstream_messages"].as_u64().unwrap();
        assert!((2..=3).contains(&upstream_messages), "{close}");
        assert!(close["duration_ms"].is_u64());
        let _ = std::fs::remove_file(&path);
    })
    .await;
}

// ------------------------------------------------ websocket-size-limit ---

#[tokio::test]
async fn size_limit_closes_oversize_client_messages_with_1009() {
    bounded(async {
        let (up, mut closes) = reporting_upstream(false).await;
        let config = r#"{ client_max_payload = 1024, upstream_max_payload = 65536 }"#;
        let gw = support::gateway(&with_plugin(up, "websocket-size-limit", config)).await;
        let mut ws = open_ok(gw, "/", &[]).await;
        let fits = "x".repeat(1024);
        ws.send_text(fits.clone()).await.unwrap();
        assert_eq!(next_text(&mut ws).await, fits);
        ws.send_text("y".repeat(1025)).await.unwrap();
        let (before, (code, _)) = messages_until_close(&mut ws).await;
        assert!(before.is_empty(), "{before:?}");
        assert_eq!(code, 1009);
        assert_eq!(upstream_close(&mut closes).await, 1001);
    })
    .await;
}

/// The upstream's limit holds for what the upstream sends: a message at
/// the limit reaches the client, one byte more closes the upstream with
/// 1009 and the client with 1001, and nothing of it is delivered.
#[tokio::test]
async fn size_limit_closes_oversize_upstream_messages_with_1009() {
    bounded(async {
        let (up, mut closes) = reporting_upstream(false).await;
        // The echo upstream sends back what the client sent: the client's
        // limit must let through what the upstream's refuses.
        let config = r#"{ client_max_payload = 65536, upstream_max_payload = 1024 }"#;
        let gw = support::gateway(&with_plugin(up, "websocket-size-limit", config)).await;
        let mut ws = open_ok(gw, "/", &[]).await;
        let fits = "x".repeat(1024);
        ws.send_text(fits.clone()).await.unwrap();
        assert_eq!(next_text(&mut ws).await, fits);
        ws.send_text("y".repeat(1025)).await.unwrap();
        assert_eq!(support::next_close(&mut ws).await.0, 1001);
        assert_eq!(upstream_close(&mut closes).await, 1009);
    })
    .await;
}

// ---------------------------------------------------- lua_plugin_dirs ---

/// `lua_plugin_dirs` in a configuration file is taken from the file's own
/// directory, not the current one (which has no such plugin), when the file
/// is loaded as `frameway gateway --config FILE` loads it: the Lua plugin
/// beside the file runs on frames.
#[tokio::test]
async fn lua_plugin_dirs_are_relative_to_the_configuration_file() {
    bounded(async {
        let dir = std::env::temp_dir().join(format!("frameway-gw-conf-{}", std::process::id()));
        let plugin = dir.join("plugins").join("tag");
        std::fs::create_dir_all(&plugin).unwrap();
        std::fs::write(
            plugin.join("handler.lua"),
            r#"
local P = { PRIORITY = 1000, VERSION = "1.0.0" }
function P:ws_client_frame(conf, typ, data)
  if typ == "text" then
    kong.websocket.client.set_frame_data("lua:" .. data)
  end
end
return P
"#,
        )
        .unwrap();
        let text = format!(
            "[gateway]\nlua_plugin_dirs = [\"plugins\"]\n{}",
            with_plugin(support::echo_upstream().await, "tag", "{}")
        );
        std::fs::write(dir.join("gateway.toml"), text).unwrap();
        let loaded = Config::load(&dir.join("gateway.toml"), &Registry::with_builtins());
        // The Lua files are read by the load: the directory can go now.
        let _ = std::fs::remove_dir_all(&dir);
        let config = loaded.unwrap_or_else(|e| panic!("{e}"));

        let gw = support::serve(config).await[0];
        let mut ws = open_ok(gw, "/", &[]).await;
        ws.send_text("hi").await.unwrap();
        assert_eq!(next_text(&mut ws).await, "lua:hi");
    })
    .await;
}

// -------------------------------------------------------------- config ---

#[test]
fn bad_plugin_configs_are_reported_with_their_place() {
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (name, config, expected) in [
        (
            "key-auth",
            r#"{ keys = [""] }"#,
            "keys cannot contain an empty key",
        ),
        (
            "key-auth",
            r#"{ keys = ["k"], key_in_header = false, key_in_query = false }"#,
            "cannot both be false",
        ),
        (
            "ip-restriction",
            "{}",
            "allow and deny cannot both be empty",
        ),
        (
            "ip-restriction",
            r#"{ allow = ["10.0.0.0/33"] }"#,
            "\"10.0.0.0/33\"",
        ),
        ("ip-restriction", r#"{ deny = ["::1/129"] }"#, "\"::1/129\""),
        ("websocket-validator", "{}", "no schema"),
        (
            "websocket-validator",
            r#"{ client = { text = { schema = '{"type": "strin"}' } } }"#,
            "client.text: invalid schema",
        ),
        (
            "websocket-rate-limit",
            "{ window = 2 }",
            "client_limit, upstream_limit",
        ),
        (
            "websocket-rate-limit",
            r#"{ second = 5, policy = "cluster" }"#,
            "unknown variant `cluster`",
        ),
        (
            "websocket-connection-limit",
            r#"{ limit = 1, limit_by = "header" }"#,
            "needs header_name",
        ),
        ("websocket-rate-limit", "{ client_limit = 0 }", "at least 1"),
        (
            "websocket-log",
            r#"{ path = "/nonexistent-frameway-dir/x.jsonl" }"#,
            "cannot open",
        ),
        ("websocket-log", "{ file = \"x\" }", "unknown field"),
    ] {
        let text = with_plugin(up, name, config);
        let errors = match Config::parse(&text, "test.toml", &Registry::with_builtins()) {
            Err(errors) => errors,
            Ok(_) => panic!("{name} {config} was accepted"),
        };
        assert_eq!(errors.errors.len(), 1, "{errors}");
        let error = &errors.errors[0];
        assert!(error.location.is_some(), "{errors}");
        assert!(error.message.contains(name), "{errors}");
        assert!(
            error.message.contains(expected),
            "{name} {config}: {errors}"
        );
    }
}
