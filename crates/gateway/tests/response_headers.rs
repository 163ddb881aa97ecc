//! Headers plugins put on the client's answer (`kong.response.set_header`,
//! `add_header`, `clear_header`): on the 101 that accepts the upgrade, and
//! on an exit's response; the upgrade's own headers stay the gateway's.

mod support;

use frameway::client::{connect_with, ConnectOptions};
use frameway_gateway::plugin::PdkError;
use support::lua::*;
use support::*;

#[tokio::test]
async fn a_native_plugins_headers_reach_the_101_and_the_upgrades_own_are_refused() {
    bounded(async {
        let events = Events::new();
        let ev = events.clone();
        let plugin = TestPlugin::new("answer").on_handshake(move |ctx| {
            ctx.set_response_header("X-Room", "lobby")?;
            ctx.add_response_header("X-Tag", "a")?;
            ctx.add_response_header("X-Tag", "b")?;
            ctx.set_response_header("X-Gone", "soon")?;
            ctx.clear_response_header("X-Gone");
            ev.push(format!("{:?}", ctx.set_response_header("Upgrade", "h2c")));
            Ok(())
        });
        let gw = gateway_running(echo_upstream().await, vec![plugin]).await;
        let (mut ws, response) = connect_with(&format!("ws://{gw}/"), ConnectOptions::default())
            .await
            .unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-room"], "lobby");
        let tags: Vec<_> = headers.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["a", "b"]);
        assert!(headers.get("x-gone").is_none());
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(
            events.all(),
            [format!(
                "{:?}",
                Err::<(), _>(PdkError::UpgradeHeader("upgrade".into()))
            )]
        );
        ws.send_text("still a WebSocket").await.unwrap();
        assert_eq!(recv_text(&mut ws).await, "still a WebSocket");
    })
    .await;
}

#[tokio::test]
async fn a_lua_plugins_headers_reach_the_101_and_an_exits_response() {
    bounded(async {
        let body = r#"
function P:ws_handshake(conf)
  kong.response.set_header("X-Served-By", "lua")
  kong.response.add_header("X-Tag", "a")
  kong.response.add_header("X-Tag", 2)
  local ok, err = pcall(kong.response.set_header, "Sec-WebSocket-Accept", "x")
  kong.response.set_header("X-Refused", (tostring(err):match("[^\n]*")))
  if kong.request.get_header("x-deny") then
    return kong.response.exit(403, "no", { ["X-Tag"] = "exit's own" })
  end
end
"#;
        let dir = plugin_dir(&[("answer", "handler.lua", &handler(body))]);
        let gw = lua_gateway(echo_upstream().await, &dir, &[("answer", "{}")]).await;
        let (_ws, response) = connect_with(&format!("ws://{gw}/"), ConnectOptions::default())
            .await
            .unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-served-by"], "lua");
        let tags: Vec<_> = headers.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["a", "2"]);
        let refused = headers["x-refused"].to_str().unwrap();
        assert!(
            refused.ends_with(
                "kong.response.set_header: the sec-websocket-accept header belongs to the WebSocket upgrade"
            ),
            "{refused}"
        );

        let denied = raw_request(gw, upgrade_request("/", "X-Deny: 1\r\n").as_bytes()).await;
        assert_eq!(denied.status, 403);
        assert_eq!(denied.headers["x-served-by"], "lua");
        let tags: Vec<_> = denied.headers.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["exit's own"], "the exit's header replaces the earlier ones");
    })
    .await;
}
