//! Dynamic routing from the handshake: `kong.service.set_target` and
//! `kong.service.set_upstream` send a connection elsewhere than its
//! service, with the service's path, over real sockets.

mod support;

use support::{
    bounded, gateway, next_upstream, raw_request, raw_ws_client, scripted_upstream, upgrade_request,
};

#[tokio::test]
async fn a_handshake_handler_sends_connections_to_a_target_or_an_upstream() {
    bounded(async {
        let (a, mut to_a) = scripted_upstream().await;
        let (b, mut to_b) = scripted_upstream().await;
        let (c, mut to_c) = scripted_upstream().await;
        let kong = format!(
            r#"_format_version: "3.0"
services:
- name: chat
  url: ws://{a}/socket
  routes: [{{ name: chat, paths: [/chat] }}]
upstreams:
- name: pool
  targets: [{{ target: "{c}" }}]
plugins:
- name: pre-function
  config:
    ws_handshake:
    - |
      local to = kong.request.get_query_arg("to")
      if to == "b" then
        kong.service.set_target("127.0.0.1", {b_port})
      elseif to == "pool" then
        assert(kong.service.set_upstream("pool"))
      elseif to == "nowhere" then
        local ok, err = kong.service.set_upstream("nowhere")
        kong.response.exit(404, tostring(ok) .. ": " .. err)
      end
"#,
            b_port = b.port()
        );
        let gw = gateway(&kong).await;

        let _client = raw_ws_client(gw, &upgrade_request("/chat/x", ""), b"").await;
        assert_eq!(next_upstream(&mut to_a).await.request.uri(), "/socket/x");

        let _client = raw_ws_client(gw, &upgrade_request("/chat/x?to=b", ""), b"").await;
        let at_b = next_upstream(&mut to_b).await;
        assert_eq!(at_b.request.uri(), "/socket/x?to=b");
        // Kong's default preserve_host = false: the target's own host.
        assert_eq!(at_b.request.headers()["host"], b.to_string().as_str());

        let _client = raw_ws_client(gw, &upgrade_request("/chat/y?to=pool", ""), b"").await;
        assert_eq!(
            next_upstream(&mut to_c).await.request.uri(),
            "/socket/y?to=pool"
        );

        let refused = raw_request(gw, upgrade_request("/chat/x?to=nowhere", "").as_bytes()).await;
        assert_eq!(refused.status, 404);
        let body = String::from_utf8_lossy(&refused.body);
        assert!(
            body.contains("nil: could not find an Upstream named 'nowhere'"),
            "{body}"
        );
    })
    .await;
}

#[tokio::test]
async fn set_target_with_a_port_out_of_range_fails_the_handshake() {
    bounded(async {
        let (a, _conns) = scripted_upstream().await;
        let kong = format!(
            r#"_format_version: "3.0"
services:
- name: chat
  url: ws://{a}
  routes: [{{ name: chat, paths: [/] }}]
plugins:
- name: pre-function
  config:
    ws_handshake:
    - kong.service.set_target("127.0.0.1", 70000)
"#
        );
        let gw = gateway(&kong).await;
        let refused = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(refused.status, 500);
    })
    .await;
}
