//! Frames that arrive while a connection is closing (one side has sent its
//! close and the other still sends) pass the plugins under the same rules
//! as while it is open: a plugin error closes with 1011, and a `close`
//! verdict sends the codes the plugin chose.

mod support;

use frameway::client::{connect_with, ClientStream, ConnectOptions};
use frameway::{CloseCode, CloseFrame, Message, WebSocket};
use frameway_gateway::plugin::PluginError;
use support::*;

/// A client that does not answer a close by itself, so that it can still
/// send after the upstream's close reached it.
async fn late_client(gw: std::net::SocketAddr) -> WebSocket<ClientStream> {
    let mut config = big_limits();
    config.mode = frameway::Mode::Relay;
    let options = ConnectOptions::default().websocket(config);
    let (ws, _) = within(
        "the client's handshake",
        connect_with(&format!("ws://{gw}/"), options),
    )
    .await
    .unwrap();
    ws
}

/// The upstream closes with 4000; the client, once that close reached it,
/// sends `late` and then its own close answer. Returns the close the
/// upstream gets as the answer to its own.
async fn upstream_close_answer(plugin: TestPlugin) -> (u16, String) {
    let (up, mut conns) = scripted_upstream().await;
    let gw = gateway_running(up, vec![plugin]).await;
    let mut client = late_client(gw).await;
    let mut upstream = next_upstream(&mut conns).await.ws;
    let bye = CloseFrame::new(CloseCode::new(4000).unwrap(), "bye").unwrap();
    upstream.send_close(Some(bye)).await.unwrap();
    match within("the upstream's close at the client", client.recv()).await {
        Some(Ok(Message::Close(Some(close)))) => assert_eq!(close.code.as_u16(), 4000),
        other => panic!("expected the upstream's close, got {other:?}"),
    }
    // Sent after the close went through the gateway: the gateway is closing.
    client.send_text("late").await.unwrap();
    let answer = CloseFrame::new(CloseCode::new(4000).unwrap(), "bye").unwrap();
    let _ = client.send_close(Some(answer)).await;
    expect_close(&mut upstream).await
}

#[tokio::test]
async fn a_plugin_error_while_closing_closes_with_1011() {
    bounded(async {
        let failing = TestPlugin::new("failing").on_client_frame(|ctx| {
            if ctx.get_frame().0 == b"late" {
                return Err(PluginError::new("boom"));
            }
            Ok(())
        });
        assert_eq!(
            upstream_close_answer(failing).await,
            (1011, "plugin error".into())
        );
    })
    .await;
}

#[tokio::test]
async fn a_close_verdict_while_closing_sends_the_plugins_codes() {
    bounded(async {
        let closer = TestPlugin::new("closer").on_client_frame(|ctx| {
            if ctx.get_frame().0 == b"late" {
                ctx.close(
                    Some(4001),
                    Some("to client"),
                    Some(4002),
                    Some("to upstream"),
                )?;
            }
            Ok(())
        });
        assert_eq!(
            upstream_close_answer(closer).await,
            (4002, "to upstream".into())
        );
    })
    .await;
}

#[tokio::test]
async fn a_forward_then_close_verdict_while_closing_sends_the_plugins_codes() {
    bounded(async {
        let closer = TestPlugin::new("closer").on_client_frame(|ctx| {
            if ctx.get_frame().0 == b"late" {
                ctx.forward_then_close(Some(4001), None, Some(4003), Some("after late"))?;
            }
            Ok(())
        });
        assert_eq!(
            upstream_close_answer(closer).await,
            (4003, "after late".into())
        );
    })
    .await;
}
