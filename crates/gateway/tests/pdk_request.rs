//! What a native plugin reads of the handshake request is what a Lua
//! plugin reads: one query decoder and one header lookup for both. What it
//! sets on the upstream's request goes up, except the handshake's own
//! headers, which the gateway negotiates per leg.

mod support;

use frameway::client::ConnectOptions;
use support::*;

#[tokio::test]
async fn a_native_plugin_reads_the_query_and_headers_as_kong_and_lua_do() {
    bounded(async {
        let events = Events::new();
        let ev = events.clone();
        let native = TestPlugin::new("native").on_handshake(move |ctx| {
            ev.push(format!(
                "native {:?} {:?}",
                ctx.query_arg("a"),
                ctx.header("x_api_key")
            ));
            Ok(())
        });
        let gw = gateway_running(echo_upstream().await, vec![native]).await;
        let options = ConnectOptions::default().header("X-Api-Key", "k1");
        let _client = connect_opts(&format!("ws://{gw}/?a=%+f%41"), options).await;
        // `%+f` is not an escape (a sign is not a hex digit): it stays, with
        // `+` as a space, as Kong's and the Lua binding's decoders read it.
        assert_eq!(
            events.wait_for("native").await,
            r#"native Some("% fA") Some("k1")"#
        );
    })
    .await;
}

#[tokio::test]
async fn a_handshake_plugin_that_waits_finishes_before_the_plugins_after_it_run() {
    bounded(async {
        let events = Events::new();
        let (ev, later) = (events.clone(), events.clone());
        let waiting = TestPlugin::new("waiting")
            .priority(20)
            .on_handshake(move |ctx| {
                let ev = ev.clone();
                ctx.wait(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    ev.push("answered");
                    Box::new(|ctx: &mut frameway_gateway::plugin::HandshakeContext<'_>| {
                        ctx.set_upstream_header("x-answer", "42")?;
                        Ok(())
                    }) as frameway_gateway::plugin::Resume
                });
                Ok(())
            });
        let after = TestPlugin::new("after")
            .priority(10)
            .on_handshake(move |_| {
                later.push("after");
                Ok(())
            });
        let (upstream, mut conns) = scripted_upstream().await;
        let gw = gateway_running(upstream, vec![waiting, after]).await;
        let _client = connect(gw, "/").await;
        let conn = next_upstream(&mut conns).await;
        assert_eq!(conn.request.headers()["x-answer"], "42");
        assert_eq!(events.all(), ["answered", "after"]);
    })
    .await;
}

#[tokio::test]
async fn handshake_headers_a_plugin_sets_for_the_upstream_are_the_gateways_own_instead() {
    bounded(async {
        let meddling = TestPlugin::new("meddling").on_handshake(|ctx| {
            ctx.set_upstream_header("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA==")?;
            ctx.set_upstream_header("upgrade", "h2c")?;
            ctx.set_upstream_header("sec-websocket-protocol", "forged")?;
            ctx.set_upstream_header("x-kept", "yes")?;
            Ok(())
        });
        let (upstream, mut conns) = scripted_upstream().await;
        let gw = gateway_running(upstream, vec![meddling]).await;
        let mut client = connect(gw, "/").await;
        let conn = next_upstream(&mut conns).await;
        let h = conn.request.headers();
        // The upstream's leg is the gateway's to negotiate: one key, its
        // own, and no subprotocol the client did not offer.
        assert_eq!(h.get_all("sec-websocket-key").iter().count(), 1);
        assert_ne!(h["sec-websocket-key"], "AAAAAAAAAAAAAAAAAAAAAA==");
        assert_eq!(h["upgrade"], "websocket");
        assert!(h.get("sec-websocket-protocol").is_none(), "{h:?}");
        assert_eq!(h["x-kept"], "yes");
        client.send_text("hi").await.unwrap();
        let mut up_ws = conn.ws;
        assert_eq!(recv_text(&mut up_ws).await, "hi");
    })
    .await;
}
