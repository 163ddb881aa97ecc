//! Messages and frames end to end: fragments, large messages, ping/pong.

mod support;

use frameway::{CloseCode, Message, OpCode};
use serde_json::json;
use support::*;

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

/// An upstream that pushes faster than its client reads: what the gateway
/// holds back while a read's worth is queued toward the client (it reads
/// the upstream again once that queue is written out, and would stall here
/// if it did not) arrives later, whole and in order.
#[tokio::test]
async fn pushed_messages_reach_a_slow_client_whole_and_in_order() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway_running(up, vec![]).await;
        let mut client = connect(gw, "/").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        // Several socket buffers' worth, in messages smaller than a read.
        let n: u32 = 4000;
        let message = |i: u32| {
            let mut payload = vec![(i % 251) as u8; 300];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            payload
        };
        let pushing = tokio::spawn(async move {
            for i in 0..n {
                upstream.send_binary(message(i)).await.unwrap();
            }
            upstream
        });
        // The client starts reading only once the gateway has had to hold.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        for i in 0..n {
            match recv(&mut client).await {
                Message::Binary(got) => assert!(got == message(i), "message {i} differs"),
                other => panic!("expected binary message {i}, got {other:?}"),
            }
        }
        let mut upstream = pushing.await.unwrap();
        let (closed, _) = tokio::join!(client.close(CloseCode::NORMAL, ""), upstream.recv());
        closed.unwrap();
    })
    .await;
}
