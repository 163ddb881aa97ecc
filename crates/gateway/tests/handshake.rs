//! The handshake at the gateway end to end: failures and their statuses,
//! forwarded headers, subprotocols.

mod support;

use frameway::client::ConnectOptions;
use frameway::Message;
use support::*;

#[tokio::test]
async fn no_route_is_404() {
    bounded(async {
        let config = format!(
            r#"
[[services]]
name = "chat"
url = "ws://{}"
  [[services.routes]]
  name = "chat"
  paths = ["/chat"]
"#,
            echo_upstream().await
        );
        let gw = gateway(&config).await;
        let response = raw_request(gw, upgrade_request("/other", "").as_bytes()).await;
        assert_eq!(response.status, 404, "{response:?}");
        let mut ok = connect(gw, "/chat").await;
        ok.send_text("routed").await.unwrap();
        assert_eq!(recv_text(&mut ok).await, "routed");
    })
    .await;
}

#[tokio::test]
async fn malformed_request_is_400() {
    bounded(async {
        let gw = gateway(&one_route(echo_upstream().await, "")).await;
        // No Sec-WebSocket-Key.
        let request = "GET / HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\
                       Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(raw_request(gw, request.as_bytes()).await.status, 400);
        // Not HTTP at all.
        let response = raw_request(gw, b"HELLO THERE\r\n\r\n").await;
        assert_eq!(response.status, 400, "{response:?}");
    })
    .await;
}

#[tokio::test]
async fn wrong_version_is_426_with_version_13() {
    bounded(async {
        let gw = gateway(&one_route(echo_upstream().await, "")).await;
        let request = upgrade_request("/", "").replace("Version: 13", "Version: 8");
        let response = raw_request(gw, request.as_bytes()).await;
        assert_eq!(response.status, 426);
        assert_eq!(response.header("sec-websocket-version"), Some("13"));
    })
    .await;
}

#[tokio::test]
async fn slow_request_is_408_and_huge_request_is_431() {
    bounded(async {
        let config = format!(
            "[gateway]\nhandshake_timeout = 300\n{}",
            one_route(echo_upstream().await, "")
        );
        let gw = gateway(&config).await;
        let response = raw_request(gw, b"GET / HTTP/1.1\r\nHost: gw\r\n").await;
        assert_eq!(response.status, 408);
        let huge = upgrade_request("/", &format!("X-Big: {}\r\n", "x".repeat(40_000)));
        assert_eq!(raw_request(gw, huge.as_bytes()).await.status, 431);
    })
    .await;
}

#[tokio::test]
async fn refused_upstream_is_502() {
    bounded(async {
        let gw = gateway(&one_route(refused_addr(), "")).await;
        let response = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(response.status, 502, "{response:?}");
    })
    .await;
}

#[tokio::test]
async fn upstream_tls_failure_is_502() {
    bounded(async {
        let up = tls_echo_upstream(self_signed_server_config(&["localhost", "127.0.0.1"])).await;
        let config = format!(
            r#"
[[services]]
name = "secure"
url = "wss://localhost:{}"
tls_verify = true
  [[services.routes]]
  name = "r"
  paths = ["/"]
"#,
            up.port()
        );
        let gw = gateway(&config).await;
        let response = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(response.status, 502, "{response:?}");
    })
    .await;
}

#[tokio::test]
async fn silent_upstream_is_504() {
    bounded(async {
        let config = format!(
            r#"
[[services]]
name = "slow"
url = "ws://{}"
read_timeout = 300
  [[services.routes]]
  name = "r"
  paths = ["/"]
"#,
            silent_upstream().await
        );
        let gw = gateway(&config).await;
        let response = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(response.status, 504, "{response:?}");
    })
    .await;
}

#[tokio::test]
async fn upstream_refusal_is_relayed_as_is() {
    bounded(async {
        let up = raw_upstream(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nX-Why: test\r\n\
              Content-Length: 7\r\n\r\ngo away",
        )
        .await;
        let gw = gateway(&one_route(up, "")).await;
        let response = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(response.status, 403);
        assert_eq!(response.header("x-why"), Some("test"));
        assert_eq!(response.header("content-type"), Some("text/plain"));
        assert_eq!(response.body_text(), "go away");
    })
    .await;
}

// ---------------------------------------------------- forwarded headers ---

#[tokio::test]
async fn forwarded_headers_and_no_hop_by_hop_headers() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway(&one_route(up, "")).await;
        let extra = "Connection: X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n\
                     TE: trailers\r\nProxy-Authorization: Basic eDp5\r\n\
                     X-Forwarded-For: 10.0.0.1\r\nX-Custom: yes\r\nCookie: a=b\r\n\
                     Origin: https://app.test\r\nUser-Agent: proxy-test\r\n\
                     X-Name: café\r\n";
        let (mut client, _) = raw_ws_client(gw, &upgrade_request("/", extra), b"").await;
        let conn = next_upstream(&mut conns).await;
        let h = conn.request.headers();
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "gw.test:8080");
        assert_eq!(h["x-custom"], "yes");
        assert_eq!(h["cookie"], "a=b");
        assert_eq!(h["origin"], "https://app.test");
        assert_eq!(h["user-agent"], "proxy-test");
        // Bytes beyond ASCII (obs-text) go up as they came.
        assert_eq!(h["x-name"].as_bytes(), "café".as_bytes());
        assert_eq!(h["host"], up.to_string());
        for hop in ["x-hop", "keep-alive", "te", "proxy-authorization"] {
            assert!(h.get(hop).is_none(), "{hop} was forwarded: {h:?}");
        }
        client.send_text("hi").await.unwrap();
        let mut up_ws = conn.ws;
        assert_eq!(recv_text(&mut up_ws).await, "hi");
    })
    .await;
}

#[tokio::test]
async fn subprotocol_offer_goes_up_and_the_choice_comes_back() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway(&one_route(up, "")).await;
        let options = ConnectOptions::default().protocols(["chat.v1", "chat.v2"]);
        let client = connect_opts(&format!("ws://{gw}/"), options).await;
        let conn = next_upstream(&mut conns).await;
        let offered = conn.request.headers()["sec-websocket-protocol"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(offered, "chat.v1, chat.v2");
        // The upstream picks the last one offered; the client gets that.
        assert_eq!(client.protocol(), Some("chat.v2"));
        assert_eq!(conn.ws.protocol(), Some("chat.v2"));

        let client = connect(gw, "/").await;
        let conn = next_upstream(&mut conns).await;
        assert!(conn
            .request
            .headers()
            .get("sec-websocket-protocol")
            .is_none());
        assert_eq!(client.protocol(), None);
    })
    .await;
}

#[tokio::test]
async fn bytes_sent_with_the_handshake_request_are_not_lost() {
    bounded(async {
        for plugins in [vec![], vec![spy("spy", &Events::new())]] {
            let gw = gateway_running(echo_upstream().await, plugins).await;
            let mut early = masked_frame(true, 0x1, b"early");
            early.extend(masked_frame(true, 0x2, b"\x00\x01"));
            let (mut client, _) = raw_ws_client(gw, &upgrade_request("/", ""), &early).await;
            assert_eq!(recv_text(&mut client).await, "early");
            assert_eq!(recv(&mut client).await, Message::binary(&b"\x00\x01"[..]));
        }
    })
    .await;
}
