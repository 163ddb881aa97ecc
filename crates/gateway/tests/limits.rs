//! Limits keyed by consumer over real sockets: a consumer's connections
//! share one message allowance and one count of open connections, and
//! another consumer has its own.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use frameway::client::connect as connect_url;
use frameway::Message;
use support::{bounded, connect, echo_upstream, gateway, next_close, recv, within};

/// Alice and Bob, key-auth, and `plugins` (global `[[plugins]]` entries)
/// on a route to an echo upstream.
fn config(upstream: SocketAddr, plugins: &str) -> String {
    format!(
        r#"
[[consumers]]
username = "alice"
keyauth_credentials = [{{ key = "alice-1" }}, {{ key = "alice-2" }}]

[[consumers]]
username = "bob"
keyauth_credentials = [{{ key = "bob-1" }}]

[[plugins]]
name = "key-auth"
{plugins}
[[services]]
name = "svc"
url = "ws://{upstream}"
  [[services.routes]]
  name = "route"
  paths = ["/"]
"#
    )
}

#[tokio::test]
async fn a_consumers_connections_share_one_message_allowance() {
    bounded(async {
        let up = echo_upstream().await;
        // Hour windows: the test never straddles one.
        let limit = r#"
[[plugins]]
name = "websocket-rate-limit"
config = { hour = 3, limit_by = "consumer", close_code = 1013 }
"#;
        let gw = gateway(&config(up, limit)).await;
        let mut laptop = connect(gw, "/?apikey=alice-1").await;
        let mut phone = connect(gw, "/?apikey=alice-2").await;
        let mut bob = connect(gw, "/?apikey=bob-1").await;
        for (on_phone, text) in [(false, "1"), (true, "2"), (false, "3")] {
            let ws = if on_phone { &mut phone } else { &mut laptop };
            ws.send_text(text).await.unwrap();
            assert_eq!(recv(ws).await, Message::text(text));
        }
        // Alice's fourth message, from either connection, is one too many.
        phone.send_text("4").await.unwrap();
        assert_eq!(
            next_close(&mut phone).await,
            (1013, "Rate limit exceeded".into())
        );
        // Bob counts on his own.
        for text in ["a", "b", "c"] {
            bob.send_text(text).await.unwrap();
            assert_eq!(recv(&mut bob).await, Message::text(text));
        }
    })
    .await;
}

#[tokio::test]
async fn a_consumer_over_its_connection_limit_is_answered_429_until_one_ends() {
    bounded(async {
        let up = echo_upstream().await;
        let limit = r#"
[[plugins]]
name = "websocket-connection-limit"
config = { limit = 2, limit_by = "consumer", retry_after = 3 }
"#;
        let gw = gateway(&config(up, limit)).await;
        let first = connect(gw, "/?apikey=alice-1").await;
        let _second = connect(gw, "/?apikey=alice-2").await;
        let refused = connect_url(format!("ws://{gw}/?apikey=alice-1").as_str()).await;
        let err = refused
            .expect_err("a third connection is refused")
            .to_string();
        assert!(err.contains("429"), "{err}");
        // Bob is not Alice.
        let _bob = connect(gw, "/?apikey=bob-1").await;
        // Once a connection ends, its place is free again.
        drop(first);
        within("a free place", async {
            loop {
                if connect_url(format!("ws://{gw}/?apikey=alice-1").as_str())
                    .await
                    .is_ok()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn without_redis_limits_that_are_not_fault_tolerant_refuse_what_they_cannot_count() {
    bounded(async {
        let up = echo_upstream().await;
        let nowhere = support::refused_addr();
        let redis = format!(
            "policy = \"redis\", fault_tolerant = false, redis = {{ host = \"{}\", port = {}, timeout = 200 }}",
            nowhere.ip(),
            nowhere.port()
        );
        let limits = format!(
            r#"
[[plugins]]
name = "websocket-rate-limit"
config = {{ hour = 100, limit_by = "consumer", {redis} }}
"#
        );
        let gw = gateway(&config(up, &limits)).await;
        let mut alice = connect(gw, "/?apikey=alice-1").await;
        // Once the limit has found Redis missing, every message is over it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        alice.send_text("1").await.unwrap();
        assert_eq!(
            next_close(&mut alice).await,
            (1008, "Rate limit exceeded".into())
        );

        let limits = format!(
            r#"
[[plugins]]
name = "websocket-connection-limit"
config = {{ limit = 5, {redis} }}
"#
        );
        let gw = gateway(&config(up, &limits)).await;
        let refused = connect_url(format!("ws://{gw}/?apikey=alice-1").as_str()).await;
        let err = refused.expect_err("no place without Redis").to_string();
        assert!(err.contains("429"), "{err}");
    })
    .await;
}
