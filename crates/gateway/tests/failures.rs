//! The failure phase: every plugin of a route hears of an upstream it
//! could not reach and of a plugin's error, in the handshake and on a frame.

mod support;

use frameway_gateway::plugin::{FailureContext, PluginError, ProxyFailure};
use support::*;

/// One line per failure a plugin saw, prefixed with the plugin's name.
fn witness(name: &'static str, events: &Events) -> TestPlugin {
    let events = events.clone();
    TestPlugin::new(name).on_failed(move |ctx: &mut FailureContext<'_>| {
        let seen = match ctx.failure {
            ProxyFailure::Connect { status, .. } => format!("connect {}", status.as_u16()),
            ProxyFailure::Plugin(err) => format!("plugin {}: {}", err.plugin, err.error),
            other => format!("{other:?}"),
        };
        events.push(format!("{name} {seen}"));
    })
}

#[tokio::test]
async fn an_unreachable_upstream_is_seen_by_every_plugin_with_the_status_answered() {
    bounded(async {
        let events = Events::new();
        let plugins = vec![witness("first", &events), witness("second", &events)];
        let gw = gateway_running(refused_addr(), plugins).await;
        let response = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(response.status, 502);
        assert_eq!(events.all(), ["first connect 502", "second connect 502"]);
    })
    .await;
}

#[tokio::test]
async fn a_handshake_plugins_error_is_seen_by_the_plugins_before_and_after_it() {
    bounded(async {
        let events = Events::new();
        let failing = witness("failing", &events)
            .priority(5)
            .on_handshake(|_| Err(PluginError::new("no database")));
        let plugins = vec![
            witness("before", &events).priority(10),
            failing,
            witness("after", &events).priority(1),
        ];
        let gw = gateway_running(echo_upstream().await, plugins).await;
        let response = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(response.status, 500);
        assert_eq!(
            events.all(),
            [
                "before plugin failing: no database",
                "failing plugin failing: no database",
                "after plugin failing: no database",
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn a_frame_plugins_error_is_seen_before_the_connection_closes_with_1011() {
    bounded(async {
        let events = Events::new();
        let failing = witness("failing", &events).on_client_frame(|ctx| {
            if ctx.get_frame().0 == b"boom" {
                return Err(PluginError::new("cannot parse"));
            }
            Ok(())
        });
        let gw = gateway_running(echo_upstream().await, vec![failing]).await;
        let mut client = connect(gw, "/").await;
        client.send_text("fine").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "fine");
        assert!(events.all().is_empty());
        client.send_text("boom").await.unwrap();
        assert_eq!(expect_close(&mut client).await.0, 1011);
        assert_eq!(events.all(), ["failing plugin failing: cannot parse"]);
    })
    .await;
}
