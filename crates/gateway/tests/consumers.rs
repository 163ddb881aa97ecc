//! Consumers over real sockets: a consumer's key-auth credential
//! identifies it to the upstream and to the plugins after key-auth, native
//! and Lua, and a consumer's own plugins apply with Kong's precedence.

mod support;

use frameway::client::connect;
use frameway::Message;
use support::{bounded, gateway, next_upstream, plugin_dir, recv, scripted_upstream};

#[tokio::test]
async fn a_consumers_key_reaches_the_upstream_and_lua_as_that_consumer() {
    bounded(async {
        let dir = plugin_dir(&[(
            "who",
            "handler.lua",
            r#"
local Who = { PRIORITY = 10, VERSION = "1.0.0" }
function Who:ws_handshake(conf)
  local consumer = kong.client.get_consumer()
  kong.service.request.set_header("X-Lua-Saw", consumer and consumer.username or "nobody")
end
function Who:ws_client_frame(conf, typ, data)
  local consumer, credential = kong.client.get_consumer(), kong.client.get_credential()
  kong.websocket.client.set_frame_data(consumer.custom_id .. " " .. credential.id
    .. " " .. credential.consumer.id .. " " .. tostring(credential.key))
end
return Who
"#,
        )]);
        let (up, mut conns) = scripted_upstream().await;
        let config = format!(
            r#"[gateway]
lua_plugin_dirs = [{dir:?}]

[[consumers]]
username = "alice"
custom_id = "user-17"
keyauth_credentials = [{{ key = "alice-key", id = "laptop" }}]

[[plugins]]
name = "key-auth"
config = {{ hide_credentials = true }}

[[plugins]]
name = "who"

[[services]]
name = "svc"
url = "ws://{up}"
  [[services.routes]]
  name = "route"
  paths = ["/"]
"#,
            dir = dir.display().to_string()
        );
        let gw = gateway(&config).await;
        let (mut ws, _) = connect(format!("ws://{gw}/?apikey=alice-key").as_str())
            .await
            .unwrap();
        let mut upstream = next_upstream(&mut conns).await;
        let headers = upstream.request.headers();
        assert_eq!(headers["x-consumer-username"], "alice");
        assert_eq!(headers["x-consumer-custom-id"], "user-17");
        assert_eq!(headers["x-consumer-id"], "alice");
        assert_eq!(headers["x-credential-identifier"], "laptop");
        assert_eq!(headers["x-lua-saw"], "alice");
        assert_eq!(upstream.request.uri().query(), None, "the key is hidden");

        ws.send_text("who am I").await.unwrap();
        let seen = recv(&mut upstream.ws).await;
        assert_eq!(seen, Message::text("user-17 laptop alice nil"));

        // A key nobody has.
        let refused = connect(format!("ws://{gw}/?apikey=guess").as_str()).await;
        assert!(refused.is_err());
    })
    .await;
}

#[test]
fn consumers_that_cannot_be_told_apart_are_config_errors() {
    let load = |consumers: &str| {
        let text = format!("{consumers}\n[[services]]\nname = \"s\"\nurl = \"internal://echo\"\n  [[services.routes]]\n  name = \"r\"\n  paths = [\"/\"]\n");
        match frameway_gateway::config::Config::parse(
            &text,
            "c.toml",
            &frameway_gateway::plugin::Registry::with_builtins(),
        ) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let anonymous = load("[[consumers]]\nkeyauth_credentials = [{ key = \"k\" }]\n");
    assert!(
        anonymous.contains("c.toml:1:1: consumer 1: needs a username or a custom_id"),
        "{anonymous}"
    );
    let shared = load(
        "[[consumers]]\nusername = \"a\"\nkeyauth_credentials = [{ key = \"k\" }]\n\
         [[consumers]]\nusername = \"b\"\nkeyauth_credentials = [{ key = \"k\" }]\n",
    );
    assert!(
        shared.contains("consumers \"a\" and \"b\" share a key-auth key"),
        "{shared}"
    );
    let unknown = load("[[consumers]]\nusername = \"a\"\nemail = \"a@example.com\"\n");
    assert!(unknown.contains("unknown field `email`"), "{unknown}");
    let scoped_global = load("[[plugins]]\nname = \"key-auth\"\nroute = \"r\"\n");
    assert!(
        scoped_global.contains("route and service apply only to a consumer's plugins"),
        "{scoped_global}"
    );
    let no_route = load(
        "[[consumers]]\nusername = \"a\"\n  [[consumers.plugins]]\n  name = \"key-auth\"\n  route = \"nowhere\"\n",
    );
    assert!(
        no_route.contains("c.toml:5:11: consumer \"a\": no route named \"nowhere\""),
        "{no_route}"
    );
}

/// Alice and Bob, key-auth, a route `/a` whose own rate limit allows 100
/// messages an hour, a route `/b` without one, and Alice's plugins.
fn two_routes(upstream: std::net::SocketAddr, alice_plugins: &str) -> String {
    format!(
        r#"
[[consumers]]
username = "alice"
keyauth_credentials = [{{ key = "alice-key" }}]
{alice_plugins}
[[consumers]]
username = "bob"
keyauth_credentials = [{{ key = "bob-key" }}]

[[plugins]]
name = "key-auth"

[[services]]
name = "svc"
url = "ws://{upstream}"
  [[services.routes]]
  name = "a"
  paths = ["/a"]
    [[services.routes.plugins]]
    name = "websocket-rate-limit"
    config = {{ hour = 100 }}
  [[services.routes]]
  name = "b"
  paths = ["/b"]
"#
    )
}

/// Sends `n` messages on `path` as `key`; the close code if the gateway
/// closed before all of them were echoed.
async fn allowance(gw: std::net::SocketAddr, path: &str, key: &str, n: usize) -> Option<u16> {
    let mut ws = support::connect(gw, &format!("{path}?apikey={key}")).await;
    for i in 0..n {
        ws.send_text(i.to_string()).await.unwrap();
        match support::within("an answer", ws.recv()).await {
            Some(Ok(Message::Text(_))) => {}
            Some(Ok(Message::Close(close))) => return close.map(|c| c.code.as_u16()),
            other => panic!("{other:?}"),
        }
    }
    None
}

#[tokio::test]
async fn a_consumers_plugin_on_a_route_beats_the_routes_own_and_bob_keeps_the_routes() {
    bounded(async {
        let up = support::echo_upstream().await;
        let alice = r#"  [[consumers.plugins]]
  name = "websocket-rate-limit"
  route = "a"
  config = { hour = 1 }
"#;
        let gw = gateway(&two_routes(up, alice)).await;
        assert_eq!(allowance(gw, "/a", "alice-key", 2).await, Some(1008));
        assert_eq!(allowance(gw, "/a", "bob-key", 5).await, None);
        // On /b Alice's plugin is scoped away: no limit at all.
        assert_eq!(allowance(gw, "/b", "alice-key", 5).await, None);
    })
    .await;
}

#[tokio::test]
async fn a_consumer_wide_plugin_yields_to_a_routes_own_and_applies_elsewhere() {
    bounded(async {
        let up = support::echo_upstream().await;
        let alice = r#"  [[consumers.plugins]]
  name = "websocket-rate-limit"
  config = { hour = 1 }
"#;
        let gw = gateway(&two_routes(up, alice)).await;
        // Route beats consumer: /a's own limit of 100 holds for Alice.
        assert_eq!(allowance(gw, "/a", "alice-key", 5).await, None);
        // Consumer beats global (here: nothing): Alice is limited on /b,
        // Bob is not.
        assert_eq!(allowance(gw, "/b", "alice-key", 2).await, Some(1008));
        assert_eq!(allowance(gw, "/b", "bob-key", 5).await, None);
    })
    .await;
}
