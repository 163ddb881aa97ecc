//! Plugins end to end: attached at each level, payload limits, errors,
//! per-connection and shared state, the handshake and close phases, and
//! protocol violations seen through plugins.

mod support;

use std::sync::Arc;
use std::time::Duration;

use frameway::client::ConnectOptions;
use frameway::{CloseCode, Message, OpCode};
use frameway_gateway::plugin::{
    Direction, FrameType, Plugin, PluginConfigError, PluginError, Registry,
};
use http::{HeaderMap, StatusCode};
use support::*;

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
                            ctx.set_frame_data(tagged)?;
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
        ctx.set_max_message_len(Direction::Client, client);
        ctx.set_max_message_len(Direction::Upstream, upstream);
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
            ctx.set_max_message_len(Direction::Client, 0);
            ctx.set_max_message_len(Direction::Upstream, 0);
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
                    ctx.set_frame_data(format!("{n}:{data}"))?;
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
                ctx.set_frame_data(format!("{room}#{count}:{data}"))?;
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
                ctx.set_frame_data("[redacted]")?;
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
