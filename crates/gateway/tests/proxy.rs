//! The gateway end to end over real sockets: client → gateway → upstream.
//! Every PDK function in both directions, plugins attached at each level,
//! routing, handshake failures, forwarded headers, close propagation and
//! idle timeouts, fragments, large messages, ping/pong, TLS on both legs
//! and a foreign (Python) client.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use frameway::client::ConnectOptions;
use frameway::{CloseCode, CloseFrame, Message, OpCode};
use frameway_gateway::plugin::{
    FrameType, PdkError, Plugin, PluginConfigError, PluginError, Registry,
};
use http::{HeaderMap, StatusCode};
use serde_json::json;
use support::*;

fn close_frame(code: u16, reason: &str) -> Option<CloseFrame> {
    Some(CloseFrame::new(CloseCode::new(code).unwrap(), reason.to_owned()).unwrap())
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The first 40 bytes of a payload, as text.
fn head(data: &[u8]) -> String {
    text(&data[..data.len().min(40)])
}

/// A plugin recording every frame it sees as `direction type payload status`.
fn spy(name: &str, events: &Events) -> TestPlugin {
    let events = events.clone();
    TestPlugin::new(name).on_frame(move |ctx| {
        let (data, kind, status) = ctx.get_frame();
        events.push(format!(
            "{} {} {:?} {:?}",
            ctx.direction().as_str(),
            kind.as_str(),
            head(data),
            status
        ));
        Ok(())
    })
}

// ------------------------------------------------------------------ PDK ---

#[tokio::test]
async fn get_frame_sees_payload_type_and_status_both_ways() {
    bounded(async {
        let events = Events::new();
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![spy("spy", &events)]).await;
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;

        client.send_text("hello").await.unwrap();
        assert_eq!(recv_text(&mut upstream).await, "hello");
        client.send_binary(&b"\x01\x02"[..]).await.unwrap();
        assert_eq!(
            recv(&mut upstream).await,
            Message::Binary(Bytes::from_static(b"\x01\x02"))
        );
        upstream.send_text("from upstream").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "from upstream");
        upstream.send_binary(&b"up"[..]).await.unwrap();
        assert_eq!(
            recv(&mut client).await,
            Message::Binary(Bytes::from_static(b"up"))
        );

        client.send_close(close_frame(4000, "bye")).await.unwrap();
        assert_eq!(expect_close(&mut upstream).await, (4000, "bye".into()));
        assert_eq!(expect_close(&mut client).await.0, 4000);

        events.wait_for("client close").await;
        assert_eq!(
            events.all(),
            [
                r#"client text "hello" None"#,
                "client binary \"\\u{1}\\u{2}\" None",
                r#"upstream text "from upstream" None"#,
                r#"upstream binary "up" None"#,
                r#"client close "bye" Some(4000)"#,
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn set_frame_data_rewrites_both_directions() {
    bounded(async {
        let rewrite = TestPlugin::new("rewrite").on_frame(|ctx| {
            let (data, kind, _) = ctx.get_frame();
            let prefix = match ctx.direction() {
                frameway_gateway::plugin::Direction::Client => "up:",
                frameway_gateway::plugin::Direction::Upstream => "down:",
            };
            match kind {
                FrameType::Text | FrameType::Binary => {
                    let mut new = prefix.as_bytes().to_vec();
                    new.extend_from_slice(data);
                    ctx.set_frame_data(new);
                }
                _ => {}
            }
            Ok(())
        });
        // A second plugin, later in the chain, sees the new payload.
        let events = Events::new();
        let gw = gateway_running(
            echo_upstream().await,
            vec![rewrite.priority(10), spy("after", &events)],
        )
        .await;
        let mut client = connect(gw, "/").await;
        client.send_text("x").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "down:up:x");
        client.send_binary(&b"\xff"[..]).await.unwrap();
        assert_eq!(
            recv(&mut client).await,
            Message::Binary(Bytes::from_static(b"down:up:\xff"))
        );
        assert_eq!(
            events.wait_for("upstream text").await,
            r#"upstream text "down:up:x" None"#
        );
        assert_eq!(events.all()[0], r#"client text "up:x" None"#);
    })
    .await;
}

#[tokio::test]
async fn set_status_rewrites_close_frames_both_directions() {
    bounded(async {
        let plugin = TestPlugin::new("status").on_frame(|ctx| {
            let (_, kind, _) = ctx.get_frame();
            if kind == FrameType::Close {
                match ctx.direction() {
                    frameway_gateway::plugin::Direction::Client => {
                        ctx.set_status(4100)?;
                        ctx.set_frame_data("changed by plugin");
                    }
                    frameway_gateway::plugin::Direction::Upstream => ctx.set_status(4200)?,
                }
            }
            Ok(())
        });
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![plugin]).await;

        // Client → upstream.
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        client.send_close(close_frame(4000, "bye")).await.unwrap();
        assert_eq!(
            expect_close(&mut upstream).await,
            (4100, "changed by plugin".into())
        );

        // Upstream → client.
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        upstream
            .send_close(close_frame(4001, "later"))
            .await
            .unwrap();
        assert_eq!(expect_close(&mut client).await, (4200, "later".into()));
    })
    .await;
}

#[tokio::test]
async fn set_status_on_a_data_frame_is_an_error_that_closes_with_1011() {
    bounded(async {
        let events = Events::new();
        let ev = events.clone();
        let plugin = TestPlugin::new("bad-status").on_client_frame(move |ctx| {
            let result = ctx.set_status(1000);
            ev.push(format!("{result:?}"));
            result?;
            Ok(())
        });
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![plugin]).await;
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        client.send_text("hi").await.unwrap();
        let (seen, close) = messages_until_close(&mut upstream).await;
        assert!(seen.is_empty(), "{seen:?}");
        assert_eq!(close.0, 1011);
        assert_eq!(expect_close(&mut client).await.0, 1011);
        assert_eq!(
            events.all(),
            [format!(
                "{:?}",
                Err::<(), _>(PdkError::StatusOnNonClose("text"))
            )]
        );
    })
    .await;
}

#[tokio::test]
async fn drop_frame_drops_and_skips_later_plugins_in_priority_order() {
    bounded(async {
        let events = Events::new();
        let ev = events.clone();
        // Registered and configured before the dropper, but lower priority.
        let after = TestPlugin::new("a-after")
            .priority(10)
            .on_frame(move |ctx| {
                ev.push(format!(
                    "a-after {} {}",
                    ctx.direction().as_str(),
                    text(ctx.get_frame().0)
                ));
                Ok(())
            });
        let ev = events.clone();
        let dropper = TestPlugin::new("z-dropper")
            .priority(20)
            .on_frame(move |ctx| {
                let (data, kind, _) = ctx.get_frame();
                ev.push(format!(
                    "z-dropper {} {}",
                    ctx.direction().as_str(),
                    text(data)
                ));
                if kind == FrameType::Text && data.starts_with(b"drop") {
                    ctx.drop_frame()?;
                }
                Ok(())
            });
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![after, dropper]).await;
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;

        client.send_text("drop me").await.unwrap();
        client.send_text("keep me").await.unwrap();
        assert_eq!(recv_text(&mut upstream).await, "keep me");
        upstream.send_text("drop this").await.unwrap();
        upstream.send_text("keep this").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "keep this");

        assert_eq!(
            events.all(),
            [
                "z-dropper client drop me",
                "z-dropper client keep me",
                "a-after client keep me",
                "z-dropper upstream drop this",
                "z-dropper upstream keep this",
                "a-after upstream keep this",
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn drop_frame_on_a_close_frame_is_an_error() {
    bounded(async {
        let events = Events::new();
        let ev = events.clone();
        let plugin = TestPlugin::new("drop-close").on_frame(move |ctx| {
            if ctx.get_frame().1 == FrameType::Close {
                ev.push(format!(
                    "{} {:?}",
                    ctx.direction().as_str(),
                    ctx.drop_frame()
                ));
            }
            Ok(())
        });
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![plugin]).await;
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        client.send_close(close_frame(4000, "bye")).await.unwrap();
        // Not dropped: the close still reaches the upstream.
        assert_eq!(expect_close(&mut upstream).await, (4000, "bye".into()));
        assert_eq!(
            events.all(),
            [format!("client {:?}", Err::<(), _>(PdkError::DropClose))]
        );

        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        upstream.send_close(close_frame(4001, "up")).await.unwrap();
        assert_eq!(expect_close(&mut client).await, (4001, "up".into()));
        assert_eq!(
            events.wait_for("upstream").await,
            format!("upstream {:?}", Err::<(), _>(PdkError::DropClose))
        );
    })
    .await;
}

#[tokio::test]
async fn close_sends_each_side_its_close_frame_and_does_not_forward() {
    bounded(async {
        let events = Events::new();
        let ev = events.clone();
        let closer = TestPlugin::new("closer").priority(10).on_frame(move |ctx| {
            if ctx.get_frame().0 == b"close-me" {
                match ctx.direction() {
                    frameway_gateway::plugin::Direction::Client => ctx.close(
                        Some(4001),
                        Some("client bye"),
                        Some(4002),
                        Some("upstream bye"),
                    )?,
                    frameway_gateway::plugin::Direction::Upstream => ctx.close(
                        Some(4003),
                        Some("to upstream"),
                        Some(4004),
                        Some("to client"),
                    )?,
                }
            }
            Ok(())
        });
        let later = TestPlugin::new("later").on_frame(move |ctx| {
            ev.push(text(ctx.get_frame().0));
            Ok(())
        });
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![closer, later]).await;

        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        client.send_text("first").await.unwrap();
        assert_eq!(recv_text(&mut upstream).await, "first");
        client.send_text("close-me").await.unwrap();
        let (seen, close) = messages_until_close(&mut upstream).await;
        assert!(seen.is_empty(), "forwarded: {seen:?}");
        assert_eq!(close, (4002, "upstream bye".into()));
        assert_eq!(expect_close(&mut client).await, (4001, "client bye".into()));

        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        upstream.send_text("close-me").await.unwrap();
        let (seen, close) = messages_until_close(&mut client).await;
        assert!(seen.is_empty(), "forwarded: {seen:?}");
        assert_eq!(close, (4004, "to client".into()));
        assert_eq!(
            expect_close(&mut upstream).await,
            (4003, "to upstream".into())
        );
        // Later plugins never saw the closing frame.
        assert_eq!(events.all(), ["first"]);
    })
    .await;
}

#[tokio::test]
async fn forward_then_close_forwards_the_frame_then_closes_both_sides() {
    bounded(async {
        let plugin = TestPlugin::new("last-word").on_frame(|ctx| {
            if ctx.get_frame().0 == b"last" {
                match ctx.direction() {
                    frameway_gateway::plugin::Direction::Client => ctx.forward_then_close(
                        Some(4005),
                        Some("done"),
                        Some(4006),
                        Some("done up"),
                    )?,
                    frameway_gateway::plugin::Direction::Upstream => {
                        ctx.forward_then_close(Some(4007), Some("up done"), None, None)?
                    }
                }
            }
            Ok(())
        });
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![plugin]).await;

        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        client.send_text("last").await.unwrap();
        let (seen, close) = messages_until_close(&mut upstream).await;
        assert_eq!(seen, [Message::text("last")]);
        assert_eq!(close, (4006, "done up".into()));
        assert_eq!(expect_close(&mut client).await, (4005, "done".into()));

        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        upstream.send_text("last").await.unwrap();
        let (seen, close) = messages_until_close(&mut client).await;
        assert_eq!(seen, [Message::text("last")]);
        // No status given: a normal close.
        assert_eq!(close, (1000, String::new()));
        assert_eq!(expect_close(&mut upstream).await, (4007, "up done".into()));
    })
    .await;
}

// ------------------------------------------------------- plugin levels ---

/// The built-ins plus `tag` and `stamp`, which prefix each client text
/// message with their `config.tag` and a colon; `tag` runs first, so a
/// message shows which instance of each ran.
fn tagging_registry() -> Registry {
    let mut registry = Registry::with_builtins();
    for (name, priority) in [("tag", 20), ("stamp", 10)] {
        registry.register(
            name,
            Arc::new(move |config: &serde_json::Value| {
                let tag = config["tag"]
                    .as_str()
                    .ok_or_else(|| PluginConfigError("tag must be a string".into()))?
                    .to_owned();
                let plugin = TestPlugin::new(name)
                    .priority(priority)
                    .on_client_frame(move |ctx| {
                        let (data, kind, _) = ctx.get_frame();
                        if kind == FrameType::Text {
                            let tagged = format!("{tag}:{}", text(data));
                            ctx.set_frame_data(tagged);
                        }
                        Ok(())
                    });
                Ok(Arc::new(plugin) as Arc<dyn Plugin>)
            }),
        );
    }
    registry
}

/// `[[services.plugins]]` run on every route of their service; for one
/// plugin name the route's entry replaces the service's, which replaces
/// the global one, while the service's other plugins still run on that
/// route.
#[tokio::test]
async fn service_plugins_cover_every_route_and_route_beats_service_beats_global() {
    bounded(async {
        let up = echo_upstream().await;
        let config = format!(
            r#"
[[services]]
name = "a"
url = "ws://{up}"
  [[services.plugins]]
  name = "tag"
  config = {{ tag = "service" }}
  [[services.plugins]]
  name = "stamp"
  config = {{ tag = "stamped" }}
  [[services.routes]]
  name = "one"
  paths = ["/one"]
  [[services.routes]]
  name = "two"
  paths = ["/two"]
  [[services.routes]]
  name = "own"
  paths = ["/own"]
    [[services.routes.plugins]]
    name = "tag"
    config = {{ tag = "route" }}

[[services]]
name = "b"
url = "ws://{up}"
  [[services.routes]]
  name = "b"
  paths = ["/b"]

[[plugins]]
name = "tag"
config = {{ tag = "global" }}
"#
        );
        let gw = gateway_with(&config, &tagging_registry()).await;
        for (path, want) in [
            ("/one", "stamped:service:x"),
            ("/two", "stamped:service:x"),
            ("/own", "stamped:route:x"),
            ("/b", "global:x"),
        ] {
            let mut client = connect(gw, path).await;
            client.send_text("x").await.unwrap();
            assert_eq!(recv_text(&mut client).await, want, "{path}");
        }
    })
    .await;
}

fn size_limits(client: u64, upstream: u64) -> TestPlugin {
    TestPlugin::new("limits").on_handshake(move |ctx| {
        ctx.set_client_max_payload_size(client);
        ctx.set_upstream_max_payload_size(upstream);
        Ok(())
    })
}

/// Above a limit set in the handshake phase: 1009 to the sender, 1001 to
/// the other side; at the limit, messages pass. `frames` adds a frame
/// plugin (the aggregating path).
async fn max_payload_size(frames: bool) {
    let mut plugins = vec![size_limits(1000, 2000)];
    if frames {
        plugins.push(spy("spy", &Events::new()));
    }
    let (up, mut conns) = scripted_upstream().await;
    let gw = gateway_running(up, plugins).await;

    // Client messages.
    let mut client = connect(gw, "/").await;
    let mut upstream = next_upstream(&mut conns).await.ws;
    client.send_binary(vec![7u8; 1000]).await.unwrap();
    assert_eq!(recv(&mut upstream).await, Message::binary(vec![7u8; 1000]));
    client.send_binary(vec![7u8; 1001]).await.unwrap();
    let (seen, close) = messages_until_close(&mut upstream).await;
    assert!(seen.is_empty());
    assert_eq!(close.0, 1001);
    assert_eq!(expect_close(&mut client).await.0, 1009);

    // Far above the limit: refused from the frame header, and the 1009
    // still reaches the client, though most of the message is unread.
    let mut client = connect(gw, "/").await;
    let mut upstream = next_upstream(&mut conns).await.ws;
    // (The upstream answers its 1001 while the client is still sending.)
    let (sent, closed) = tokio::join!(
        client.send_binary(vec![7u8; 4 << 20]),
        expect_close(&mut upstream)
    );
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(closed.0, 1001);
    assert_eq!(expect_close(&mut client).await.0, 1009);

    // The limit counts every fragment of a message.
    let mut client = connect(gw, "/").await;
    let mut upstream = next_upstream(&mut conns).await.ws;
    for (fin, opcode) in [
        (false, OpCode::Binary),
        (false, OpCode::Continuation),
        (true, OpCode::Continuation),
    ] {
        let _ = client.send_frame(fin, opcode, &[1u8; 400]).await;
    }
    let (_, close) = messages_until_close(&mut upstream).await;
    assert_eq!(close.0, 1001);
    assert_eq!(expect_close(&mut client).await.0, 1009);

    // Upstream messages.
    let mut client = connect(gw, "/").await;
    let mut upstream = next_upstream(&mut conns).await.ws;
    upstream.send_binary(vec![8u8; 2000]).await.unwrap();
    assert_eq!(recv(&mut client).await, Message::binary(vec![8u8; 2000]));
    upstream.send_binary(vec![8u8; 2001]).await.unwrap();
    let (seen, close) = messages_until_close(&mut client).await;
    assert!(seen.is_empty());
    assert_eq!(close.0, 1001);
    assert_eq!(expect_close(&mut upstream).await.0, 1009);

    let mut client = connect(gw, "/").await;
    let mut upstream = next_upstream(&mut conns).await.ws;
    let (sent, closed) = tokio::join!(
        upstream.send_binary(vec![8u8; 4 << 20]),
        expect_close(&mut client)
    );
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(closed.0, 1001);
    assert_eq!(expect_close(&mut upstream).await.0, 1009);
}

#[tokio::test]
async fn set_max_payload_size_in_the_handshake_limits_each_side() {
    bounded(max_payload_size(false)).await;
}

#[tokio::test]
async fn set_max_payload_size_with_frame_plugins() {
    bounded(max_payload_size(true)).await;
}

#[tokio::test]
async fn set_max_payload_size_zero_restores_the_default() {
    bounded(async {
        // A tight limit from one plugin, reset by a later one: the gateway's
        // default (client_max_payload, 1 MiB) applies again.
        let tight = size_limits(10, 10).priority(20);
        let reset = TestPlugin::new("reset").on_handshake(|ctx| {
            ctx.set_client_max_payload_size(0);
            ctx.set_upstream_max_payload_size(0);
            Ok(())
        });
        let gw = gateway_running(echo_upstream().await, vec![tight, reset]).await;
        let mut client = connect(gw, "/").await;
        client.send_binary(vec![5u8; 100_000]).await.unwrap();
        assert_eq!(recv(&mut client).await, Message::binary(vec![5u8; 100_000]));
        client.send_binary(vec![5u8; (1 << 20) + 1]).await.unwrap();
        assert_eq!(expect_close(&mut client).await.0, 1009);
    })
    .await;
}

#[tokio::test]
async fn plugin_error_closes_both_sides_with_1011_and_other_connections_go_on() {
    bounded(async {
        let plugin = TestPlugin::new("fragile").on_client_frame(|ctx| {
            if ctx.get_frame().0 == b"boom" {
                return Err(PluginError::new("boom"));
            }
            Ok(())
        });
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![plugin]).await;
        let mut victim = connect(gw, "/").await;
        let mut victim_up = next_upstream(&mut conns).await.ws;
        let mut other = connect(gw, "/").await;
        let mut other_up = next_upstream(&mut conns).await.ws;

        victim.send_text("boom").await.unwrap();
        assert_eq!(expect_close(&mut victim).await.0, 1011);
        assert_eq!(expect_close(&mut victim_up).await.0, 1011);

        other.send_text("still here").await.unwrap();
        assert_eq!(recv_text(&mut other_up).await, "still here");
        other_up.send_text("yes").await.unwrap();
        assert_eq!(recv_text(&mut other).await, "yes");
    })
    .await;
}

#[tokio::test]
async fn per_connection_state_counts_each_connection_separately() {
    bounded(async {
        let counter = TestPlugin::new("counter")
            .with_state(|| Box::new(0u32))
            .on_client_frame(|ctx| {
                let (data, kind, _) = ctx.get_frame();
                if kind == FrameType::Text {
                    let data = text(data);
                    let n = ctx.state::<u32>().expect("the state is a u32");
                    *n += 1;
                    let n = *n;
                    ctx.set_frame_data(format!("{n}:{data}"));
                }
                Ok(())
            });
        let gw = gateway_running(echo_upstream().await, vec![counter]).await;
        let a = connect(gw, "/").await;
        let b = connect(gw, "/").await;
        let mut conns = [a, b];
        for (i, msg, want) in [
            (0, "x", "1:x"),
            (1, "p", "1:p"),
            (0, "y", "2:y"),
            (0, "z", "3:z"),
            (1, "q", "2:q"),
        ] {
            conns[i].send_text(msg).await.unwrap();
            assert_eq!(recv_text(&mut conns[i]).await, want);
        }
    })
    .await;
}

#[derive(Clone)]
struct Room(String);

#[tokio::test]
async fn shared_context_passes_data_between_plugins() {
    bounded(async {
        let writer = TestPlugin::new("writer")
            .priority(20)
            .on_handshake(|ctx| {
                let room = ctx.path().to_owned();
                ctx.shared().insert(Room(room));
                Ok(())
            })
            .on_client_frame(|ctx| {
                let seen = ctx.shared().get::<u32>().copied().unwrap_or(0);
                ctx.shared().insert(seen + 1);
                Ok(())
            });
        let reader = TestPlugin::new("reader")
            .priority(10)
            .on_client_frame(|ctx| {
                let room = ctx
                    .shared()
                    .get::<Room>()
                    .expect("set in the handshake")
                    .0
                    .clone();
                let count = *ctx.shared().get::<u32>().expect("set by the writer");
                let data = text(ctx.get_frame().0);
                ctx.set_frame_data(format!("{room}#{count}:{data}"));
                Ok(())
            });
        let gw = gateway_running(echo_upstream().await, vec![reader, writer]).await;
        let mut client = connect(gw, "/room42").await;
        client.send_text("m").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "/room42#1:m");
        client.send_text("n").await.unwrap();
        assert_eq!(recv_text(&mut client).await, "/room42#2:n");
    })
    .await;
}

#[tokio::test]
async fn handshake_phase_sees_the_request_and_sets_upstream_headers() {
    bounded(async {
        let events = Events::new();
        let ev = events.clone();
        let plugin = TestPlugin::new("inspect").on_handshake(move |ctx| {
            ev.push(format!(
                "{} {} {:?} {:?} {:?} {}",
                ctx.method(),
                ctx.path(),
                ctx.query(),
                ctx.query_arg("q"),
                ctx.header("x-custom"),
                ctx.client_ip()
            ));
            ctx.set_upstream_header("x-user", "alice")?;
            ctx.set_upstream_header("host", "backend.internal")?;
            ctx.clear_upstream_header("x-secret");
            Ok(())
        });
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![plugin]).await;
        let options = ConnectOptions::default()
            .header("x-custom", "yes")
            .header("x-secret", "hide me");
        let url = format!("ws://{gw}/chat/room?q=hello%20world&x=1");
        let mut client = connect_opts(&url, options).await;
        let conn = next_upstream(&mut conns).await;
        assert_eq!(
            events.all(),
            [r#"GET /chat/room Some("q=hello%20world&x=1") Some("hello world") Some("yes") 127.0.0.1"#]
        );
        let headers = conn.request.headers();
        assert_eq!(headers["x-user"], "alice");
        assert_eq!(headers["host"], "backend.internal");
        assert_eq!(headers["x-custom"], "yes");
        assert!(headers.get("x-secret").is_none());
        assert_eq!(conn.request.uri().path(), "/chat/room");
        assert_eq!(conn.request.uri().query(), Some("q=hello%20world&x=1"));
        client.send_text("through").await.unwrap();
        let mut up_ws = conn.ws;
        assert_eq!(recv_text(&mut up_ws).await, "through");
    })
    .await;
}

#[tokio::test]
async fn handshake_phase_can_reject_with_status_body_and_headers() {
    bounded(async {
        let plugin = TestPlugin::new("gate").on_handshake(|ctx| {
            if ctx.query_arg("token").as_deref() != Some("good") {
                let mut headers = HeaderMap::new();
                headers.insert("x-reason", "no token".parse().unwrap());
                ctx.exit(StatusCode::FORBIDDEN, "forbidden: no token\n", headers);
            }
            Ok(())
        });
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![plugin]).await;
        let response = raw_request(gw, upgrade_request("/x?token=bad", "").as_bytes()).await;
        assert_eq!(response.status, 403);
        assert_eq!(response.header("x-reason"), Some("no token"));
        assert_eq!(response.body_text(), "forbidden: no token\n");
        // The upstream was never contacted.
        let mut client = connect(gw, "/x?token=good").await;
        let mut upstream = next_upstream(&mut conns).await;
        assert_eq!(upstream.request.uri().query(), Some("token=good"));
        assert!(conns.try_recv().is_err());
        client.send_text("ok").await.unwrap();
        assert_eq!(recv_text(&mut upstream.ws).await, "ok");
    })
    .await;
}

#[tokio::test]
async fn close_phase_gets_codes_counts_and_duration() {
    bounded(async {
        let events = Events::new();
        let ev = events.clone();
        let plugin = TestPlugin::new("audit").on_close(move |ctx| {
            let d = ctx.duration();
            ev.push(format!(
                "close client={:?} upstream={:?} client_msgs={} client_bytes={} upstream_msgs={} upstream_bytes={}",
                ctx.client_status,
                ctx.upstream_status,
                ctx.client.messages,
                ctx.client.bytes,
                ctx.upstream.messages,
                ctx.upstream.bytes,
            ));
            ev.push(format!("duration_ms={}", d.as_millis()));
        });
        let gw = gateway_running(echo_upstream().await, vec![plugin]).await;
        let mut client = connect(gw, "/").await;
        for msg in ["ab", "cde"] {
            client.send_text(msg).await.unwrap();
            assert_eq!(recv_text(&mut client).await, msg);
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        client.close(CloseCode::new(4000).unwrap(), "bye").await.unwrap();
        let line = events.wait_for("close").await;
        assert_eq!(
            line,
            // Each side's close frame counts as one of its messages.
            "close client=Some(4000) upstream=Some(4000) client_msgs=3 client_bytes=8 upstream_msgs=3 upstream_bytes=5"
        );
        let ms: u128 = events.wait_for("duration_ms=").await["duration_ms=".len()..]
            .parse()
            .unwrap();
        assert!((60..30_000).contains(&ms), "{ms} ms");
    })
    .await;
}

#[tokio::test]
async fn frames_delivered_while_closing_for_a_violation_still_pass_the_plugins() {
    bounded(async {
        let redact = TestPlugin::new("redact").on_upstream_frame(|ctx| {
            if ctx.get_frame().0 == b"secret" {
                ctx.set_frame_data("[redacted]");
            }
            Ok(())
        });
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![redact]).await;
        let (mut client, _) = raw_ws_client(gw, &upgrade_request("/", ""), b"").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        // Invalid UTF-8 from the client: the gateway tells the upstream 1001
        // and delivers what the upstream still sends before answering.
        use tokio::io::AsyncWriteExt;
        client
            .get_mut()
            .write_all(&masked_frame(true, 0x1, b"\xff\xfe"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        upstream.send_text("secret").await.unwrap();
        assert_eq!(expect_close(&mut upstream).await.0, 1001);
        let (seen, close) = messages_until_close(&mut client).await;
        assert_eq!(seen, [Message::text("[redacted]")]);
        assert_eq!(close.0, 1007);
    })
    .await;
}

#[tokio::test]
async fn a_client_breaking_the_protocol_gets_its_code_and_the_upstream_1001() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway(&one_route(up, "")).await;
        let (mut client, _) = raw_ws_client(gw, &upgrade_request("/", ""), b"").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        // An unmasked frame from a client.
        use tokio::io::AsyncWriteExt;
        client
            .get_mut()
            .write_all(&[0x81, 0x02, b'h', b'i'])
            .await
            .unwrap();
        assert_eq!(expect_close(&mut upstream).await.0, 1001);
        assert_eq!(expect_close(&mut client).await.0, 1002);
    })
    .await;
}

/// One frame as a client sends it (masked), read raw: (opcode, payload).
async fn read_masked_frame(tcp: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(
        head[1] & 0x80,
        0x80,
        "frames from the gateway's upstream leg are masked"
    );
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            tcp.read_exact(&mut b).await.unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            tcp.read_exact(&mut b).await.unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut key = [0u8; 4];
    tcp.read_exact(&mut key).await.unwrap();
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.unwrap();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    (head[0] & 0x0f, payload)
}

#[tokio::test]
async fn an_upstream_breaking_the_protocol_gets_its_code_and_the_client_1001() {
    bounded(async {
        // A hand-written upstream: a valid 101, then text that is not UTF-8.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = listener.local_addr().unwrap();
        let upstream = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                tcp.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let key = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .starts_with("sec-websocket-key:")
                        .then(|| l[18..].trim().to_owned())
                })
                .unwrap();
            let accept = frameway::wire::handshake::accept_key(key.as_bytes());
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            tcp.write_all(response.as_bytes()).await.unwrap();
            tcp.write_all(&[0x81, 0x02, 0xff, 0xfe]).await.unwrap();
            read_masked_frame(&mut tcp).await
        });
        let gw = gateway(&one_route(up, "")).await;
        let mut client = connect(gw, "/").await;
        assert_eq!(expect_close(&mut client).await.0, 1001);
        let (opcode, payload) = within("the upstream's close", upstream).await.unwrap();
        assert_eq!(opcode, 0x8);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1007);
    })
    .await;
}

// ------------------------------------------------------------- routing ---

/// For each `(host, path, want)`: opens a WebSocket through the gateway at
/// `gw` with this `Host` and `path`, and checks that the upstream was asked
/// for the path and query `want`.
async fn assert_upstream_targets(
    gw: SocketAddr,
    conns: &mut tokio::sync::mpsc::UnboundedReceiver<UpstreamConn>,
    cases: &[(&str, &str, &str)],
) {
    for &(host, path, want) in cases {
        let _client = raw_ws_client(gw, &upgrade_request_to(host, path, ""), b"").await;
        let conn = next_upstream(conns).await;
        let target = conn.request.uri().path_and_query().unwrap().to_string();
        assert_eq!(target, want, "{host} {path}");
    }
}

/// A `[[services]]` entry at `url` with one route.
fn service(name: &str, url: &str, route: &str) -> String {
    format!(
        "[[services]]\nname = \"{name}\"\nurl = \"{url}\"\n  [[services.routes]]\n  name = \"{name}\"\n{route}\n"
    )
}

/// An exact host beats a wildcard, which beats a route without hosts; the
/// wildcard covers subdomains but not the bare domain, Host's port is
/// ignored, and a longer path still wins over a host match.
#[tokio::test]
async fn routes_match_exact_and_wildcard_hosts() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let config = [
            service("any", &format!("ws://{up}/any"), "  paths = [\"/api\"]"),
            service(
                "wild",
                &format!("ws://{up}/wild"),
                "  paths = [\"/api\"]\n  hosts = [\"*.example.com\"]",
            ),
            service(
                "exact",
                &format!("ws://{up}/exact"),
                "  paths = [\"/api\"]\n  hosts = [\"chat.example.com\"]",
            ),
            service("v2", &format!("ws://{up}/v2"), "  paths = [\"/api/v2\"]"),
        ]
        .concat();
        let gw = gateway(&config).await;
        assert_upstream_targets(
            gw,
            &mut conns,
            &[
                ("chat.example.com:8080", "/api/room", "/exact/room"),
                ("chat.example.com", "/api/room", "/exact/room"),
                ("other.example.com", "/api/room", "/wild/room"),
                ("example.com", "/api/room", "/any/room"),
                ("elsewhere.test", "/api/room", "/any/room"),
                ("chat.example.com", "/api/v2/room", "/v2/room"),
            ],
        )
        .await;
    })
    .await;
}

/// Of the prefixes matching a path, the longest wins, whether its route
/// comes before or after the shorter ones in the file.
#[tokio::test]
async fn the_longest_path_prefix_wins() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let config = [
            service("short", &format!("ws://{up}/short"), "  paths = [\"/api\"]"),
            service(
                "deep",
                &format!("ws://{up}/deep"),
                "  paths = [\"/api/v2/deep\"]",
            ),
            service("v2", &format!("ws://{up}/v2"), "  paths = [\"/api/v2\"]"),
        ]
        .concat();
        let gw = gateway(&config).await;
        assert_upstream_targets(
            gw,
            &mut conns,
            &[
                ("gw.test", "/api/v2/deep/x", "/deep/x"),
                ("gw.test", "/api/v2/x", "/v2/x"),
                ("gw.test", "/api/v2", "/v2"),
                ("gw.test", "/api/x", "/short/x"),
                ("gw.test", "/api/v1/x", "/short/v1/x"),
            ],
        )
        .await;
    })
    .await;
}

/// By default the matched prefix is replaced by the service URL's path
/// (README's `/chat/room -> /socket/room`); `strip_path = false` keeps it
/// after the service's path. The query goes along either way, and the two
/// paths are joined by one slash.
#[tokio::test]
async fn strip_path_decides_the_path_the_upstream_sees() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let config = format!(
            r#"
[[services]]
name = "chat"
url = "ws://{up}/socket"
  [[services.routes]]
  name = "chat"
  paths = ["/chat"]
  [[services.routes]]
  name = "keep"
  paths = ["/keep"]
  strip_path = false
  [[services.routes]]
  name = "lobby"
  paths = ["/lobby/"]
"#
        );
        let gw = gateway(&config).await;
        assert_upstream_targets(
            gw,
            &mut conns,
            &[
                ("gw.test", "/chat/room?x=1", "/socket/room?x=1"),
                ("gw.test", "/chat", "/socket"),
                ("gw.test", "/keep/room?x=1", "/socket/keep/room?x=1"),
                // What is left after the prefix is joined with one slash, as
                // Kong does, when it does not start with one.
                ("gw.test", "/lobby/hall", "/socket/hall"),
                ("gw.test", "/chatroom", "/socket/room"),
            ],
        )
        .await;
    })
    .await;
}

// --------------------------------------------------- handshake failures ---

#[tokio::test]
async fn no_route_is_404() {
    bounded(async {
        let config = format!(
            r#"
[[services]]
name = "chat"
url = "ws://{}"
  [[services.routes]]
  name = "chat"
  paths = ["/chat"]
"#,
            echo_upstream().await
        );
        let gw = gateway(&config).await;
        let response = raw_request(gw, upgrade_request("/other", "").as_bytes()).await;
        assert_eq!(response.status, 404, "{response:?}");
        let mut ok = connect(gw, "/chat").await;
        ok.send_text("routed").await.unwrap();
        assert_eq!(recv_text(&mut ok).await, "routed");
    })
    .await;
}

#[tokio::test]
async fn malformed_request_is_400() {
    bounded(async {
        let gw = gateway(&one_route(echo_upstream().await, "")).await;
        // No Sec-WebSocket-Key.
        let request = "GET / HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\
                       Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(raw_request(gw, request.as_bytes()).await.status, 400);
        // Not HTTP at all.
        let response = raw_request(gw, b"HELLO THERE\r\n\r\n").await;
        assert_eq!(response.status, 400, "{response:?}");
    })
    .await;
}

#[tokio::test]
async fn wrong_version_is_426_with_version_13() {
    bounded(async {
        let gw = gateway(&one_route(echo_upstream().await, "")).await;
        let request = upgrade_request("/", "").replace("Version: 13", "Version: 8");
        let response = raw_request(gw, request.as_bytes()).await;
        assert_eq!(response.status, 426);
        assert_eq!(response.header("sec-websocket-version"), Some("13"));
    })
    .await;
}

#[tokio::test]
async fn slow_request_is_408_and_huge_request_is_431() {
    bounded(async {
        let config = format!(
            "[gateway]\nhandshake_timeout = 300\n{}",
            one_route(echo_upstream().await, "")
        );
        let gw = gateway(&config).await;
        let response = raw_request(gw, b"GET / HTTP/1.1\r\nHost: gw\r\n").await;
        assert_eq!(response.status, 408);
        let huge = upgrade_request("/", &format!("X-Big: {}\r\n", "x".repeat(40_000)));
        assert_eq!(raw_request(gw, huge.as_bytes()).await.status, 431);
    })
    .await;
}

#[tokio::test]
async fn refused_upstream_is_502() {
    bounded(async {
        let gw = gateway(&one_route(refused_addr(), "")).await;
        let response = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(response.status, 502, "{response:?}");
    })
    .await;
}

#[tokio::test]
async fn upstream_tls_failure_is_502() {
    bounded(async {
        let up = tls_echo_upstream(self_signed_server_config(&["localhost", "127.0.0.1"])).await;
        let config = format!(
            r#"
[[services]]
name = "secure"
url = "wss://localhost:{}"
tls_verify = true
  [[services.routes]]
  name = "r"
  paths = ["/"]
"#,
            up.port()
        );
        let gw = gateway(&config).await;
        let response = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(response.status, 502, "{response:?}");
    })
    .await;
}

#[tokio::test]
async fn silent_upstream_is_504() {
    bounded(async {
        let config = format!(
            r#"
[[services]]
name = "slow"
url = "ws://{}"
read_timeout = 300
  [[services.routes]]
  name = "r"
  paths = ["/"]
"#,
            silent_upstream().await
        );
        let gw = gateway(&config).await;
        let response = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(response.status, 504, "{response:?}");
    })
    .await;
}

#[tokio::test]
async fn upstream_refusal_is_relayed_as_is() {
    bounded(async {
        let up = raw_upstream(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nX-Why: test\r\n\
              Content-Length: 7\r\n\r\ngo away",
        )
        .await;
        let gw = gateway(&one_route(up, "")).await;
        let response = raw_request(gw, upgrade_request("/", "").as_bytes()).await;
        assert_eq!(response.status, 403);
        assert_eq!(response.header("x-why"), Some("test"));
        assert_eq!(response.header("content-type"), Some("text/plain"));
        assert_eq!(response.body_text(), "go away");
    })
    .await;
}

// ---------------------------------------------------- forwarded headers ---

#[tokio::test]
async fn forwarded_headers_and_no_hop_by_hop_headers() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway(&one_route(up, "")).await;
        let extra = "Connection: X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n\
                     TE: trailers\r\nProxy-Authorization: Basic eDp5\r\n\
                     X-Forwarded-For: 10.0.0.1\r\nX-Custom: yes\r\nCookie: a=b\r\n\
                     Origin: https://app.test\r\nUser-Agent: proxy-test\r\n";
        let (mut client, _) = raw_ws_client(gw, &upgrade_request("/", extra), b"").await;
        let conn = next_upstream(&mut conns).await;
        let h = conn.request.headers();
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "gw.test:8080");
        assert_eq!(h["x-custom"], "yes");
        assert_eq!(h["cookie"], "a=b");
        assert_eq!(h["origin"], "https://app.test");
        assert_eq!(h["user-agent"], "proxy-test");
        assert_eq!(h["host"], up.to_string());
        for hop in ["x-hop", "keep-alive", "te", "proxy-authorization"] {
            assert!(h.get(hop).is_none(), "{hop} was forwarded: {h:?}");
        }
        client.send_text("hi").await.unwrap();
        let mut up_ws = conn.ws;
        assert_eq!(recv_text(&mut up_ws).await, "hi");
    })
    .await;
}

#[tokio::test]
async fn subprotocol_offer_goes_up_and_the_choice_comes_back() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway(&one_route(up, "")).await;
        let options = ConnectOptions::default().protocols(["chat.v1", "chat.v2"]);
        let client = connect_opts(&format!("ws://{gw}/"), options).await;
        let conn = next_upstream(&mut conns).await;
        let offered = conn.request.headers()["sec-websocket-protocol"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(offered, "chat.v1, chat.v2");
        // The upstream picks the last one offered; the client gets that.
        assert_eq!(client.protocol(), Some("chat.v2"));
        assert_eq!(conn.ws.protocol(), Some("chat.v2"));

        let client = connect(gw, "/").await;
        let conn = next_upstream(&mut conns).await;
        assert!(conn
            .request
            .headers()
            .get("sec-websocket-protocol")
            .is_none());
        assert_eq!(client.protocol(), None);
    })
    .await;
}

#[tokio::test]
async fn bytes_sent_with_the_handshake_request_are_not_lost() {
    bounded(async {
        for plugins in [vec![], vec![spy("spy", &Events::new())]] {
            let gw = gateway_running(echo_upstream().await, plugins).await;
            let mut early = masked_frame(true, 0x1, b"early");
            early.extend(masked_frame(true, 0x2, b"\x00\x01"));
            let (mut client, _) = raw_ws_client(gw, &upgrade_request("/", ""), &early).await;
            assert_eq!(recv_text(&mut client).await, "early");
            assert_eq!(recv(&mut client).await, Message::binary(&b"\x00\x01"[..]));
        }
    })
    .await;
}

// ----------------------------------------------------- close propagation ---

#[tokio::test]
async fn close_codes_and_reasons_propagate_both_ways() {
    bounded(async {
        for plugins in [vec![], vec![spy("spy", &Events::new())]] {
            let (up, mut conns) = scripted_upstream().await;
            let gw = gateway_running(up, plugins).await;

            let mut client = connect(gw, "/").await;
            let mut upstream = next_upstream(&mut conns).await.ws;
            client.send_close(close_frame(4000, "bye")).await.unwrap();
            assert_eq!(expect_close(&mut upstream).await, (4000, "bye".into()));
            // The answer to a close echoes its code (RFC 6455 §5.5.1).
            assert_eq!(expect_close(&mut client).await.0, 4000);
            // The client's connection ends while the upstream (not read
            // any more) still holds its TCP open: the gateway does not make
            // the client wait out the upstream's close grace period.
            let end = tokio::time::timeout(Duration::from_secs(3), client.recv()).await;
            assert!(matches!(end, Ok(None)), "{end:?}");
            drop(upstream);

            let mut client = connect(gw, "/").await;
            let mut upstream = next_upstream(&mut conns).await.ws;
            upstream
                .send_close(close_frame(4001, "later"))
                .await
                .unwrap();
            assert_eq!(expect_close(&mut client).await, (4001, "later".into()));
            assert_eq!(expect_close(&mut upstream).await.0, 4001);
            assert!(within("the end", upstream.recv()).await.is_none());
        }
    })
    .await;
}

#[tokio::test]
async fn vanishing_upstream_means_1001_for_the_client() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway(&one_route(up, "")).await;
        let mut client = connect(gw, "/").await;
        let upstream = next_upstream(&mut conns).await.ws;
        drop(upstream);
        assert_eq!(expect_close(&mut client).await.0, 1001);
    })
    .await;
}

#[tokio::test]
async fn vanishing_client_means_1001_for_the_upstream() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway(&one_route(up, "")).await;
        let client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        drop(client);
        assert_eq!(expect_close(&mut upstream).await.0, 1001);
    })
    .await;
}

#[tokio::test]
async fn idle_timeout_closes_both_sides_with_1001() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let config = format!("[gateway]\nidle_timeout = 300\n{}", one_route(up, ""));
        let gw = gateway(&config).await;
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        // Traffic keeps the connection open past the timeout.
        for i in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client.send_text(format!("{i}")).await.unwrap();
            assert_eq!(recv_text(&mut upstream).await, format!("{i}"));
        }
        let (client_close, upstream_close) =
            tokio::join!(expect_close(&mut client), expect_close(&mut upstream));
        assert_eq!(client_close.0, 1001);
        assert_eq!(upstream_close.0, 1001);
    })
    .await;
}

/// `idle_timeout = 0` means never: a connection idle for two seconds is
/// still open and proxies both ways, while the same idleness under
/// `idle_timeout = 1000` (ms) closes both of its sides with 1001.
#[tokio::test]
async fn idle_timeout_zero_never_closes_an_idle_connection() {
    bounded(async {
        // One upstream per gateway, so each connection is known for sure.
        let (timed_up, mut timed_conns) = scripted_upstream().await;
        let (never_up, mut never_conns) = scripted_upstream().await;
        let timed = gateway(&format!(
            "[gateway]\nidle_timeout = 1000\n{}",
            one_route(timed_up, "")
        ))
        .await;
        let never = gateway(&format!(
            "[gateway]\nidle_timeout = 0\n{}",
            one_route(never_up, "")
        ))
        .await;
        let start = Instant::now();
        let mut timed_client = connect(timed, "/").await;
        let mut timed_upstream = next_upstream(&mut timed_conns).await.ws;
        let mut never_client = connect(never, "/").await;
        let mut never_upstream = next_upstream(&mut never_conns).await.ws;

        let (client_close, upstream_close) = tokio::join!(
            expect_close(&mut timed_client),
            expect_close(&mut timed_upstream)
        );
        assert_eq!((client_close.0, upstream_close.0), (1001, 1001));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(1), "closed after {waited:?}");

        tokio::time::sleep_until((start + Duration::from_secs(2)).into()).await;
        never_client.send_text("still here").await.unwrap();
        assert_eq!(recv_text(&mut never_upstream).await, "still here");
        never_upstream.send_text("so am I").await.unwrap();
        assert_eq!(recv_text(&mut never_client).await, "so am I");
    })
    .await;
}

// ---------------------------------------------------- messages and frames ---

/// Frames as the upstream receives them, as `(fin, opcode, payload)`.
async fn frames<S>(ws: &mut frameway::WebSocket<S>, n: usize) -> Vec<(bool, OpCode, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut out = Vec::new();
    for _ in 0..n {
        let frame = within("a frame", ws.recv_frame())
            .await
            .expect("a frame")
            .unwrap();
        out.push((frame.fin, frame.opcode, text(&frame.payload)));
    }
    out
}

fn fragments() -> [(bool, OpCode, &'static str); 4] {
    [
        (false, OpCode::Text, "frag"),
        (true, OpCode::Ping, "in between"),
        (false, OpCode::Continuation, "mén"),
        (true, OpCode::Continuation, "ted"),
    ]
}

#[tokio::test]
async fn fragments_pass_as_they_come_without_frame_plugins() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway(&one_route(up, "")).await;
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        let want: Vec<_> = fragments()
            .iter()
            .map(|(f, o, p)| (*f, *o, p.to_string()))
            .collect();
        for (fin, opcode, payload) in fragments() {
            client
                .send_frame(fin, opcode, payload.as_bytes())
                .await
                .unwrap();
        }
        assert_eq!(frames(&mut upstream, 4).await, want);
        for (fin, opcode, payload) in fragments() {
            upstream
                .send_frame(fin, opcode, payload.as_bytes())
                .await
                .unwrap();
        }
        // First the upstream's answer to the client's ping, then the
        // upstream's frames as they were sent; the client's library answers
        // the upstream's ping.
        let pong = (true, OpCode::Pong, "in between".to_owned());
        let mut with_pong = vec![pong.clone()];
        with_pong.extend(want);
        assert_eq!(frames(&mut client, 5).await, with_pong);
        assert_eq!(frames(&mut upstream, 1).await, [pong]);
    })
    .await;
}

#[tokio::test]
async fn fragments_are_aggregated_for_frame_plugins_and_controls_pass_at_once() {
    bounded(async {
        let events = Events::new();
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![spy("spy", &events)]).await;
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        for (fin, opcode, payload) in fragments() {
            client
                .send_frame(fin, opcode, payload.as_bytes())
                .await
                .unwrap();
        }
        let whole = vec![
            (true, OpCode::Ping, "in between".to_owned()),
            (true, OpCode::Text, "fragménted".to_owned()),
        ];
        assert_eq!(frames(&mut upstream, 2).await, whole);
        for (fin, opcode, payload) in fragments() {
            upstream
                .send_frame(fin, opcode, payload.as_bytes())
                .await
                .unwrap();
        }
        let pong = (true, OpCode::Pong, "in between".to_owned());
        let mut with_pong = vec![pong.clone()];
        with_pong.extend(whole);
        assert_eq!(frames(&mut client, 3).await, with_pong);
        assert_eq!(frames(&mut upstream, 1).await, [pong]);
        // Each direction in order; the two directions race.
        let mut seen = events.all();
        seen.sort();
        assert_eq!(
            seen,
            [
                r#"client ping "in between" None"#,
                r#"client pong "in between" None"#,
                r#"client text "fragménted" None"#,
                r#"upstream ping "in between" None"#,
                r#"upstream pong "in between" None"#,
                r#"upstream text "fragménted" None"#,
            ]
        );
        let client_side: Vec<_> = events
            .all()
            .into_iter()
            .filter(|e| e.starts_with("client"))
            .collect();
        assert_eq!(
            client_side[..2],
            [
                r#"client ping "in between" None"#,
                r#"client text "fragménted" None"#
            ]
        );
    })
    .await;
}

const BIG: &str = "[gateway]\nclient_max_payload = 33554432\nupstream_max_payload = 33554432\n";

async fn sixteen_mib(plugins: Vec<TestPlugin>) {
    let names: Vec<String> = plugins.iter().map(|p| p.name.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let config = format!(
        "{BIG}{}",
        one_route(echo_upstream().await, &route_plugins(&names))
    );
    let gw = gateway_with(&config, &registry(plugins)).await;
    let mut client = connect(gw, "/").await;
    let data = pattern(16 << 20);
    client.send_binary(data.clone()).await.unwrap();
    match recv(&mut client).await {
        Message::Binary(got) => assert!(got == data, "16 MiB came back different"),
        other => panic!("expected binary, got {other:?}"),
    }
    let text_msg = "é".repeat(8 << 20);
    client.send_text(text_msg.clone()).await.unwrap();
    assert!(recv_text(&mut client).await == text_msg);
    // In frames of 1 MiB.
    let mut chunks = data.chunks(1 << 20).peekable();
    let mut opcode = OpCode::Binary;
    while let Some(chunk) = chunks.next() {
        client
            .send_frame(chunks.peek().is_none(), opcode, chunk)
            .await
            .unwrap();
        opcode = OpCode::Continuation;
    }
    match recv(&mut client).await {
        Message::Binary(got) => assert!(got == data, "fragmented 16 MiB came back different"),
        other => panic!("expected binary, got {other:?}"),
    }
    client.close(CloseCode::NORMAL, "").await.unwrap();
}

#[tokio::test]
async fn sixteen_mib_messages_on_the_fast_path() {
    bounded(sixteen_mib(vec![])).await;
}

#[tokio::test]
async fn sixteen_mib_messages_through_a_frame_plugin() {
    bounded(sixteen_mib(vec![spy("spy", &Events::new())])).await;
}

#[tokio::test]
async fn ping_and_pong_pass_both_ways_and_plugins_see_them() {
    bounded(async {
        let events = Events::new();
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![spy("spy", &events)]).await;
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;

        client.send_ping(&b"c-ping"[..]).await.unwrap();
        // The upstream's library answers; the pong comes back through.
        let reading_upstream = async {
            assert_eq!(recv(&mut upstream).await, Message::Ping("c-ping".into()));
        };
        let reading_client = async {
            assert_eq!(recv(&mut client).await, Message::Pong("c-ping".into()));
        };
        tokio::join!(reading_upstream, reading_client);

        upstream.send_ping(&b"u-ping"[..]).await.unwrap();
        assert_eq!(recv(&mut client).await, Message::Ping("u-ping".into()));
        assert_eq!(recv(&mut upstream).await, Message::Pong("u-ping".into()));

        assert_eq!(
            events.all(),
            [
                r#"client ping "c-ping" None"#,
                r#"upstream pong "c-ping" None"#,
                r#"upstream ping "u-ping" None"#,
                r#"client pong "u-ping" None"#,
            ]
        );
    })
    .await;
}

/// A client that pipelines large messages through the gateway to an
/// upstream that does not read while it writes (frameway's own echo): the
/// pump must move both directions at once, or the two deadlock.
#[tokio::test]
async fn pipelined_large_messages_both_ways_do_not_stall() {
    bounded(async {
        let config = format!("{BIG}{}", one_route(echo_upstream().await, ""));
        let gw = gateway(&config).await;
        let n = 8 << 20;
        let script = json!([
            {"send_binary_len": n}, {"send_binary_len": n}, {"send_binary_len": n},
            {"expect_binary_len": n}, {"expect_binary_len": n}, {"expect_binary_len": n},
            {"close": [1000, ""]}
        ]);
        assert_eq!(
            python_client(&format!("ws://{gw}/"), script, &[]).await,
            "OK"
        );
    })
    .await;
}

// ------------------------------------------------------------------- TLS ---

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

[[services]]
name = "secure"
url = "wss://localhost:{port}/"
ca_file = "{ca}"
  [[services.routes]]
  name = "r"
  paths = ["/"]
"#,
            cert = pki.path("server.pem"),
            key = pki.path("server.key"),
            ca = pki.path("ca.pem"),
            port = up.port(),
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
