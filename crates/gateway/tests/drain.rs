//! `Gateway::serve_until`: a drain closes both legs of every open
//! connection with 1001, and returns once they have ended.

mod support;

use frameway_gateway::config::Config;
use frameway_gateway::plugin::Registry;
use frameway_gateway::Gateway;
use support::*;

#[tokio::test]
async fn a_drain_sends_1001_to_both_legs_and_ends_when_they_have_closed() {
    let (upstream, mut rx) = scripted_upstream().await;
    let text = format!(
        "[gateway]\nlisten = [\"127.0.0.1:0\"]\ndrain_timeout = 0\nclose_spread = 0\n{}",
        one_route(upstream, "")
    );
    let config = Config::parse(&text, "test", &Registry::with_builtins()).unwrap();
    let gateway = Gateway::bind(config).await.unwrap();
    let addr = gateway.local_addrs()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(gateway.serve_until(async move {
        let _ = stopped.await;
    }));

    let mut client = connect(addr, "/").await;
    let mut up = next_upstream(&mut rx).await;
    client.send_text("hello").await.unwrap();
    assert_eq!(recv_text(&mut up.ws).await, "hello");

    stop.send(()).unwrap();
    let (upstream_close, client_close) = tokio::join!(
        async {
            let close = next_close(&mut up.ws).await;
            while up.ws.recv().await.is_some() {}
            close
        },
        async {
            let close = next_close(&mut client).await;
            while client.recv().await.is_some() {}
            close
        },
    );
    assert_eq!(client_close, (1001, "going away".into()));
    assert_eq!(upstream_close, (1001, "going away".into()));
    within("the end of the drain", serving).await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
