//! The gateway's own keep-alive pings, per leg (`ping_interval`,
//! `pong_timeout`): a dead peer is found and both legs closed, and the
//! pings and their pongs never reach the other side or the plugins.

mod support;

use frameway::client::{connect_with, ConnectOptions};
use frameway::{Message, WebSocket, WebSocketConfig};
use support::*;
use tokio::io::{AsyncRead, AsyncWrite};

/// Reads until three pings came; anything else fails the test.
async fn three_pings<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) {
    let mut seen = 0;
    while seen < 3 {
        match ws.recv().await {
            Some(Ok(Message::Ping(_))) => seen += 1,
            other => panic!("expected the gateway's pings, got {other:?}"),
        }
    }
}

/// A route to `upstream` whose legs ping: `client_ping` in `[gateway]`,
/// `upstream_ping` on the service (ms; 0 = off), both with a 300 ms pong
/// timeout, and a frame-spy plugin.
fn pinging_route(upstream: std::net::SocketAddr, client_ping: u64, upstream_ping: u64) -> String {
    format!(
        r#"
[gateway]
listen = ["127.0.0.1:0"]
ping_interval = {client_ping}
pong_timeout = 300

[[services]]
name = "up"
url = "ws://{upstream}"
ping_interval = {upstream_ping}
pong_timeout = 300
  [[services.routes]]
  name = "all"
  paths = ["/"]
  [[services.routes.plugins]]
  name = "spy"
"#
    )
}

/// A plugin that records the type of every frame it sees.
fn spy(events: &Events) -> TestPlugin {
    let events = events.clone();
    TestPlugin::new("spy").on_frame(move |ctx| {
        let kind = ctx.get_frame().1;
        events.push(format!("{} {}", ctx.direction().as_str(), kind.as_str()));
        Ok(())
    })
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_closed_with_1001_and_so_is_the_upstream() {
    bounded(async {
        let events = Events::new();
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_with(&pinging_route(up, 100, 0), &registry(vec![spy(&events)])).await;
        let config = WebSocketConfig {
            mode: frameway::Mode::Relay,
            ..WebSocketConfig::default()
        };
        let options = ConnectOptions::default().websocket(config);
        let (mut client, _) = connect_with(&format!("ws://{gw}/"), options).await.unwrap();
        let mut upstream = next_upstream(&mut conns).await.ws;
        // The client sees the gateway's pings but never answers them.
        assert_eq!(
            expect_close(&mut client).await,
            (1001, "pong timeout".into())
        );
        assert_eq!(
            expect_close(&mut upstream).await,
            (1001, "peer went away".into())
        );
        assert!(
            events.all().is_empty(),
            "plugins saw the gateway's pings: {:?}",
            events.all()
        );
    })
    .await;
}

#[tokio::test]
async fn live_peers_keep_the_connection_and_never_see_the_other_legs_pings() {
    bounded(async {
        let events = Events::new();
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_with(&pinging_route(up, 100, 100), &registry(vec![spy(&events)])).await;
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        // Each side reads (and so answers pings) until it has seen three of
        // the gateway's pings: several pong deadlines pass.
        tokio::join!(three_pings(&mut client), three_pings(&mut upstream));
        // Still open both ways, and what does pass is the peers' traffic.
        client.send_text("after pings").await.unwrap();
        assert_eq!(recv_text(&mut upstream).await, "after pings");
        upstream.send_text("back").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "back");
        assert_eq!(events.all(), ["client text", "upstream text"]);
    })
    .await;
}
