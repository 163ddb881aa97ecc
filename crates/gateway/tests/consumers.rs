//! Consumers over real sockets: a consumer's key-auth credential
//! identifies it to the upstream and to the plugins after key-auth, native
//! and Lua.

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
}
