//! The frame PDK end to end over real sockets (client → gateway →
//! upstream): every function in both directions.

mod support;

use bytes::Bytes;
use frameway::Message;
use frameway_gateway::plugin::{FrameType, PdkError};
use support::*;

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
                    ctx.set_frame_data(new)?;
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
                        ctx.set_frame_data("changed by plugin")?;
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

#[tokio::test]
async fn a_frame_plugin_that_waits_holds_the_connections_messages_in_order() {
    bounded(async {
        use frameway_gateway::plugin::{FrameContext, FrameResume};
        // Every other message waits; each comes out changed by what it
        // waited for, then seen by the plugin after, in the order sent.
        let waits = TestPlugin::new("waits")
            .priority(20)
            .on_client_frame(|ctx| {
                let (data, kind, _) = ctx.get_frame();
                if kind != FrameType::Text {
                    return Ok(());
                }
                let text = String::from_utf8_lossy(data).into_owned();
                let pause = if text.ends_with(['0', '2', '4']) {
                    30
                } else {
                    0
                };
                ctx.wait(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    Box::new(move |ctx: &mut FrameContext<'_>| {
                        ctx.set_frame_data(text.to_uppercase())?;
                        Ok(())
                    }) as FrameResume
                });
                Ok(())
            });
        let after = TestPlugin::new("after")
            .priority(10)
            .on_client_frame(|ctx| {
                let (data, kind, _) = ctx.get_frame();
                if kind == FrameType::Text {
                    let marked = format!("{}!", String::from_utf8_lossy(data));
                    ctx.set_frame_data(marked)?;
                }
                Ok(())
            });
        let gw = gateway_running(echo_upstream().await, vec![waits, after]).await;
        let mut client = connect(gw, "/").await;
        for n in 0..6 {
            client.send_text(format!("m{n}")).await.unwrap();
        }
        for n in 0..6 {
            assert_eq!(recv_text(&mut client).await, format!("M{n}!"));
        }
    })
    .await;
}
