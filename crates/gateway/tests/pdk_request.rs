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
