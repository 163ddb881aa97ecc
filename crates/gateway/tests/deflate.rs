//! permessage-deflate through the gateway, negotiated per leg: a client
//! that offers it gets it whatever the upstream does, plugins see and set
//! uncompressed payloads, and the client's limit holds on inflated sizes.

mod support;

use frameway::client::{connect, connect_with, ClientStream, ConnectResponse};
use frameway::wire::deflate::DeflateConfig;
use frameway::{CloseCode, Message, WebSocket, WebSocketConfig};
use support::{
    bounded, gateway, gateway_running, next_upstream, node_client, python_client, python_server,
    python_server_logged, recv, scripted_upstream, TestPlugin,
};

/// Connects to `url` offering permessage-deflate.
async fn deflating(url: &str) -> (WebSocket<ClientStream>, ConnectResponse) {
    let config = WebSocketConfig::default()
        .max_message_len(32 << 20)
        .max_send_len(32 << 20)
        .deflate(DeflateConfig::default());
    connect_with(
        url,
        frameway::client::ConnectOptions::default().websocket(config),
    )
    .await
    .unwrap()
}

fn route(upstream_port: u16, gateway: &str, service: &str) -> String {
    format!(
        "[gateway]\n{gateway}\n\n[[services]]\nname = \"up\"\nurl = \"ws://127.0.0.1:{upstream_port}\"\n{service}\n  [[services.routes]]\n  name = \"all\"\n  paths = [\"/\"]\n"
    )
}

#[tokio::test]
async fn each_leg_negotiates_on_its_own_and_messages_arrive_byte_exact() {
    bounded(async {
        let (_deflating, with) = python_server(&[]).await;
        let (_plain, without) = python_server(&["--no-compression"]).await;
        let text = "compressible ".repeat(10_000);
        let binary: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
        for (upstream, service) in [(with, ""), (without, ""), (with, "deflate = false")] {
            let gw = gateway(&route(upstream, "", service)).await;
            let (mut ws, response) = deflating(&format!("ws://{gw}/")).await;
            assert!(
                response.deflate().is_some(),
                "the client leg agrees whatever the upstream leg did ({upstream} {service:?})"
            );
            ws.send_text(text.clone()).await.unwrap();
            assert_eq!(recv(&mut ws).await, Message::text(text.clone()));
            ws.send_binary(binary.clone()).await.unwrap();
            assert_eq!(recv(&mut ws).await, Message::binary(binary.clone()));
            // A fragmented compressed message, fragment by fragment.
            ws.send_frame(false, frameway::OpCode::Text, b"frag")
                .await
                .unwrap();
            ws.send_frame(true, frameway::OpCode::Continuation, b"ments")
                .await
                .unwrap();
            assert_eq!(recv(&mut ws).await, Message::text("fragments"));
            ws.close(CloseCode::NORMAL, "").await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn client_deflate_false_refuses_the_extension() {
    bounded(async {
        let (_up, port) = python_server(&[]).await;
        let gw = gateway(&route(port, "client_deflate = false", "")).await;
        let (mut ws, response) = deflating(&format!("ws://{gw}/")).await;
        assert!(response.deflate().is_none());
        ws.send_text("plain").await.unwrap();
        assert_eq!(recv(&mut ws).await, Message::text("plain"));
    })
    .await;
}

#[tokio::test]
async fn plugins_see_and_set_uncompressed_payloads_on_a_compressed_leg() {
    bounded(async {
        let (_up, port) = python_server(&[]).await;
        let upper = TestPlugin::new("upper").on_client_frame(|ctx| {
            let (data, _, _) = ctx.get_frame();
            assert!(data.starts_with(b"hello"), "the plugin sees inflated data");
            let upper = data.to_ascii_uppercase();
            ctx.set_frame_data(upper)?;
            Ok(())
        });
        let gw = gateway_running(format!("127.0.0.1:{port}").parse().unwrap(), vec![upper]).await;
        let (mut ws, response) = deflating(&format!("ws://{gw}/")).await;
        assert!(response.deflate().is_some());
        let long = format!("hello {}", "world ".repeat(1000));
        ws.send_text(long.clone()).await.unwrap();
        assert_eq!(recv(&mut ws).await, Message::text(long.to_uppercase()));
    })
    .await;
}

#[tokio::test]
async fn a_deflate_bomb_stops_at_the_client_limit_with_1009_where_the_gateway_inflates() {
    bounded(async {
        let (_up, port, mut upstream_log) = python_server_logged(&[]).await;
        // A frame plugin: the gateway inflates what the client sends.
        let plugin = "  [[services.routes.plugins]]\n  name = \"websocket-rate-limit\"\n  config = { client_limit = 1000000 }\n";
        let config = route(port, "client_max_payload = 65536", "") + plugin;
        let gw = gateway(&config).await;
        let (mut ws, _) = deflating(&format!("ws://{gw}/")).await;
        // 16 MiB of zeros compress to about 16 KiB.
        ws.send_binary(vec![0u8; 16 << 20]).await.unwrap();
        let close = loop {
            match ws.recv().await {
                Some(Ok(Message::Close(close))) => break close,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("no close frame: {e}"),
                None => panic!("no close frame"),
            }
        };
        assert_eq!(close.map(|c| u16::from(c.code)), Some(1009));
        // The upstream is told the client went away.
        upstream_log.wait_for("closed: code=1001").await;
    })
    .await;
}

#[tokio::test]
async fn without_frame_plugins_compatible_legs_pass_compressed_messages_through() {
    bounded(async {
        let (_up, port) = python_server(&[]).await;
        // 1 MiB that compresses to about 1 KiB, through a client limit of
        // 64 KiB: it passes only if the gateway does not inflate it. Python
        // `websockets` reads 12-bit windows, so the gateway asks the client
        // for no more.
        let compatible =
            "client_max_payload = 65536\nclient_deflate = { client_max_window_bits = 12 }";
        let gw = gateway(&route(port, compatible, "")).await;
        let (mut ws, _) = deflating(&format!("ws://{gw}/")).await;
        let big = "x".repeat(1 << 20);
        ws.send_text(big.clone()).await.unwrap();
        assert_eq!(recv(&mut ws).await, Message::text(big));
        ws.send_text("small").await.unwrap();
        assert_eq!(recv(&mut ws).await, Message::text("small"));

        // The client asks for a smaller server window than the upstream
        // uses: that direction is inflated and compressed again, the other
        // still passes; both arrive intact, over several messages (context
        // takeover on both legs).
        let narrow = "client_deflate = { server_max_window_bits = 9 }";
        let gw = gateway(&route(port, narrow, "")).await;
        let (mut ws, response) = deflating(&format!("ws://{gw}/")).await;
        assert_eq!(response.deflate().unwrap().server_max_window_bits, 9);
        for i in 0..5 {
            let text = format!("message {i} ").repeat(500);
            ws.send_text(text.clone()).await.unwrap();
            assert_eq!(recv(&mut ws).await, Message::text(text));
        }
    })
    .await;
}

#[tokio::test]
async fn python_and_node_clients_get_deflate_through_the_gateway_whatever_the_upstream() {
    bounded(async {
        let (_deflating, with) = python_server(&[]).await;
        let (_plain, without) = python_server(&["--no-compression"]).await;
        let json = format!(
            "{{\"items\": [{}]}}",
            vec!["{\"id\": 1, \"name\": \"frameway\"}"; 2000].join(", ")
        );
        let script = serde_json::json!([
            {"expect_extensions": "permessage-deflate"},
            {"send_text": "small"}, {"expect_text": "small"},
            {"send_text": json}, {"expect_text": json},
            {"send_binary_len": 1 << 20}, {"expect_binary_len": 1 << 20, "pattern": true},
            {"close": [1000, "done"]}
        ]);
        for upstream in [with, without] {
            let gw = gateway(&route(upstream, "", "")).await;
            let url = format!("ws://{gw}/");
            let python = python_client(&url, script.clone(), &["--max-size", "33554432"]).await;
            assert_eq!(python, "OK", "Python websockets, upstream {upstream}");
            let node = node_client(&url, script.clone(), &[]).await;
            assert_eq!(node, "OK", "Node ws, upstream {upstream}");
        }
    })
    .await;
}

#[tokio::test]
async fn deflate_is_offered_upstream_only_when_the_client_compresses_unless_always() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        for (service, client_offers, offered) in [
            ("", false, false),
            ("", true, true),
            ("deflate = { always = true }", false, true),
            ("deflate = false", true, false),
        ] {
            let gw = gateway(&route(up.port(), "", service)).await;
            let url = format!("ws://{gw}/");
            let _client = if client_offers {
                deflating(&url).await.0
            } else {
                connect(url.as_str()).await.unwrap().0
            };
            let conn = next_upstream(&mut conns).await;
            let extensions = conn.request.headers().get("sec-websocket-extensions");
            assert_eq!(
                extensions.is_some(),
                offered,
                "service {service:?}, client offers: {client_offers}: {extensions:?}"
            );
        }
    })
    .await;
}
