//! TLS on both legs, and a foreign (Python) client, end to end.

mod support;

use frameway::client::ConnectOptions;
use frameway::{CloseCode, CloseFrame, Message};
use serde_json::json;
use support::*;

/// A service on a wss upstream at `port`, trusted through the test CA,
/// routed from `/`.
fn wss_service(port: u16, pki: &TestPki) -> String {
    format!(
        r#"
[[services]]
name = "secure"
url = "wss://localhost:{port}/"
ca_file = "{ca}"
  [[services.routes]]
  name = "r"
  paths = ["/"]
"#,
        ca = pki.path("ca.pem"),
    )
}

#[tokio::test]
async fn a_wss_upstream_resumes_the_tls_session_of_the_connection_before() {
    bounded(async {
        let pki = TestPki::new("resumed");
        let (up, mut handshakes) = tls_echo_upstream_telling(pki.server_config(false)).await;
        let config = format!(
            "[gateway]\nlisten = [\"127.0.0.1:0\"]\n{}",
            wss_service(up.port(), &pki)
        );
        let addr = gateway(&config).await;
        for _ in 0..2 {
            let mut client = connect(addr, "/").await;
            client.send_text("again").await.unwrap();
            assert_eq!(recv_text(&mut client).await, "again");
            client.close(CloseCode::NORMAL, "").await.unwrap();
        }
        assert_eq!(handshakes.recv().await, Some(rustls::HandshakeKind::Full));
        assert_eq!(
            handshakes.recv().await,
            Some(rustls::HandshakeKind::Resumed)
        );
    })
    .await;
}

#[tokio::test]
async fn wss_on_both_legs_with_a_test_ca() {
    bounded(async {
        let pki = TestPki::new("both-legs");
        let up = tls_echo_upstream(pki.server_config(false)).await;
        let config = format!(
            r#"
[gateway]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
tls_cert = "{cert}"
tls_key = "{key}"
{service}"#,
            cert = pki.path("server.pem"),
            key = pki.path("server.key"),
            service = wss_service(up.port(), &pki),
        );
        let addrs = gateway_addrs(
            &config,
            &frameway_gateway::plugin::Registry::with_builtins(),
        )
        .await;
        let tls_port = addrs[1].port();
        let options = ConnectOptions::default().ca_file(pki.path("ca.pem"));
        let mut client = connect_opts(&format!("wss://localhost:{tls_port}/"), options).await;
        client.send_text("secret").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "secret");
        let big = pattern(1 << 20);
        client.send_binary(big.clone()).await.unwrap();
        assert_eq!(recv(&mut client).await, Message::binary(big));
        client.close(CloseCode::NORMAL, "").await.unwrap();

        // Without the CA, the client refuses the gateway's certificate.
        let refused = frameway::client::connect_with(
            &format!("wss://localhost:{tls_port}/"),
            ConnectOptions::default(),
        )
        .await;
        assert!(refused.is_err());
    })
    .await;
}

#[tokio::test]
async fn tls_listener_forwards_https_as_the_protocol() {
    bounded(async {
        let pki = TestPki::new("proto");
        let (up, mut conns) = scripted_upstream().await;
        let config = format!(
            "[gateway]\ntls_listen = [\"127.0.0.1:0\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n{}",
            pki.path("server.pem"),
            pki.path("server.key"),
            one_route(up, "")
        );
        let addrs = gateway_addrs(
            &config,
            &frameway_gateway::plugin::Registry::with_builtins(),
        )
        .await;
        let options = ConnectOptions::default().ca_file(pki.path("ca.pem"));
        let url = format!("wss://localhost:{}/", addrs[1].port());
        let _client = connect_opts(&url, options).await;
        let conn = next_upstream(&mut conns).await;
        assert_eq!(conn.request.headers()["x-forwarded-proto"], "https");
        assert_eq!(
            conn.request.headers()["x-forwarded-host"],
            format!("localhost:{}", addrs[1].port())
        );
    })
    .await;
}

// --------------------------------------------------------------- Python ---

#[tokio::test]
async fn python_websockets_client_through_the_gateway() {
    bounded(async {
        for plugins in [vec![], vec![spy("spy", &Events::new())]] {
            let names: Vec<String> = plugins.iter().map(|p| p.name.clone()).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let (up, mut conns) = scripted_upstream().await;
            let config = format!("{BIG}{}", one_route(up, &route_plugins(&names)));
            let gw = gateway_with(&config, &registry(plugins)).await;
            let upstream = tokio::spawn(async move {
                let mut ws = next_upstream(&mut conns).await.ws;
                // Echo until "close:", then close with 4002.
                loop {
                    match within("a message", ws.recv()).await {
                        Some(Ok(Message::Text(t))) if t.as_str() == "close:" => {
                            ws.close(CloseCode::new(4002).unwrap(), "server says bye")
                                .await
                                .unwrap();
                            return ws.protocol().map(str::to_owned);
                        }
                        Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                            ws.send(m).await.unwrap()
                        }
                        Some(Ok(_)) => {}
                        other => panic!("upstream: {other:?}"),
                    }
                }
            });
            let script = json!([
                {"expect_subprotocol": "chat.v2"},
                {"send_text": "héllo from python"}, {"expect_text": "héllo from python"},
                {"send_binary_hex": "00ff10"}, {"expect_binary_hex": "00ff10"},
                {"send_binary_len": 16 << 20}, {"expect_binary_len": 16 << 20, "pattern": true},
                {"send_fragments": ["frag", "mén", "ted"], "binary": false},
                {"expect_text": "fragménted"},
                {"ping": "70696e67"},
                {"send_text": "close:"},
                {"expect_close": [4002, "server says bye"]}
            ]);
            let out = python_client(
                &format!("ws://{gw}/"),
                script,
                &["--subprotocol", "chat.v2"],
            )
            .await;
            assert_eq!(out, "OK");
            assert_eq!(upstream.await.unwrap().as_deref(), Some("chat.v2"));
        }
    })
    .await;
}

#[tokio::test]
async fn answers_in_flight_when_the_client_closes_are_still_delivered() {
    // The client closes right behind its messages: the echoes already on
    // their way back must reach it before the close answer, which is the
    // upstream's own close (code and reason end to end).
    bounded(async {
        let gw = gateway(&one_route(echo_upstream().await, "")).await;
        let mut client = connect(gw, "/").await;
        for msg in ["one", "two", "three"] {
            client.send_text(msg).await.unwrap();
        }
        let bye = CloseFrame::new(CloseCode::new(4000).unwrap(), "bye").unwrap();
        client.send_close(Some(bye)).await.unwrap();
        for msg in ["one", "two", "three"] {
            assert_eq!(recv_text(&mut client).await, msg);
        }
        match client.recv().await {
            Some(Ok(Message::Close(Some(close)))) => assert_eq!(close.code.as_u16(), 4000),
            other => panic!("expected the upstream's close, got {other:?}"),
        }
    })
    .await;
}
