//! What a native plugin reads of the handshake request is what a Lua
//! plugin reads: one query decoder and one header lookup for both.

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
