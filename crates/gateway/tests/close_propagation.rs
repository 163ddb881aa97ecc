//! Closes end to end: codes and reasons both ways, idle timeouts.

mod support;

use std::time::{Duration, Instant};

use support::*;

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

/// The gateway closes a client's socket once the client is gone, while it
/// still waits for the upstream to answer its 1001: a storm of clients that
/// leave costs one socket per pair in that wait, not two.
#[tokio::test]
async fn a_gone_clients_socket_is_closed_before_the_upstream_answers() {
    bounded(async {
        let (up, mut conns) = scripted_upstream().await;
        let gw = gateway(&one_route(up, "")).await;
        let (mut client, _) = raw_ws_client(gw, &upgrade_request("/", ""), b"").await;
        let mut upstream = next_upstream(&mut conns).await.ws;
        // The client's FIN: the gateway reads the end of its stream.
        tokio::io::AsyncWriteExt::shutdown(client.get_mut())
            .await
            .unwrap();
        // The upstream is not read, so it cannot answer; the gateway's wait
        // for it lasts its close grace period (5 s).
        let mut rest = Vec::new();
        let end = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::io::AsyncReadExt::read_to_end(client.get_mut(), &mut rest),
        )
        .await;
        assert!(matches!(end, Ok(Ok(0))), "{end:?}");
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
