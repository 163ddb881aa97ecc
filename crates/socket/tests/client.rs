//! The client against real sockets on 127.0.0.1: frameway servers, TLS with
//! a CA made at test time, mutual TLS, a CONNECT proxy, and pools.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use frameway::client::{connect_with, ConnectOptions};
use frameway::server::{accept_with, Decision, ServerConfig};
use frameway::{CloseCode, Error, Message, TimeoutKind, WebSocket};
use http::{HeaderMap, StatusCode};
use support::{
    bounded, counted_echo_server, echo_messages, echo_server, self_signed_server_config, serve,
    tls_echo_server, tls_echo_server_with, TestPki,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

async fn roundtrip<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>, text: &str) {
    ws.send_text(text).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(text));
}

// ----- plain ws:// -----

#[tokio::test]
async fn text_and_binary_echo() {
    bounded(async {
        let addr = echo_server().await;
        let (mut ws, response) = frameway::connect(&format!("ws://{addr}/echo?x=1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert!(!response.reused());
        assert_eq!(response.protocol(), None);
        assert!(ws.get_ref().tls().is_none());
        assert_eq!(ws.get_ref().tcp().peer_addr().unwrap(), addr);

        roundtrip(&mut ws, "hello").await;
        ws.send_binary(vec![0u8, 1, 2, 255]).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::binary(vec![0u8, 1, 2, 255])
        );
        ws.close(CloseCode::NORMAL, "bye").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn json_values_round_trip_and_bad_json_is_a_json_error() {
    bounded(async {
        let addr = echo_server().await;
        let (mut ws, _) = frameway::connect(&format!("ws://{addr}/")).await.unwrap();
        let sent = serde_json::json!({"room": "lobby", "text": "héllo", "n": [1, 2, 3]});
        ws.send_json(&sent).await.unwrap();
        let back: serde_json::Value = ws.recv_json().await.unwrap();
        assert_eq!(back, sent);
        // The echo of a binary message holding JSON is read the same way.
        ws.send_binary(br#"{"binary": true}"#.to_vec())
            .await
            .unwrap();
        let back: serde_json::Value = ws.recv_json().await.unwrap();
        assert_eq!(back, serde_json::json!({"binary": true}));
        ws.send_text("not json").await.unwrap();
        let err = ws.recv_json::<serde_json::Value>().await.unwrap_err();
        assert!(matches!(err, Error::Json(_)), "{err}");
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn subprotocol_is_negotiated() {
    bounded(async {
        // frameway::accept picks the client's first choice.
        let (addr, _) = serve(|tcp| async move {
            if let Ok(ws) = frameway::accept(tcp).await {
                echo_messages(ws).await;
            }
        })
        .await;
        let options = ConnectOptions::default().protocols(["v2.chat", "v1.chat"]);
        let (ws, response) = connect_with(&format!("ws://{addr}/"), options)
            .await
            .unwrap();
        assert_eq!(response.protocol(), Some("v2.chat"));
        assert_eq!(ws.protocol(), Some("v2.chat"));

        // A server that prefers another offered one.
        let (addr, _) = serve(|tcp| async move {
            let ws = accept_with(tcp, ServerConfig::default(), |_, _| {
                Decision::accept().protocol("v1.chat")
            });
            if let Ok(ws) = ws.await {
                echo_messages(ws).await;
            }
        })
        .await;
        let options = ConnectOptions::default()
            .protocol("v2.chat")
            .protocol("v1.chat");
        let (mut ws, response) = connect_with(&format!("ws://{addr}/"), options)
            .await
            .unwrap();
        assert_eq!(response.protocol(), Some("v1.chat"));
        roundtrip(&mut ws, "still works").await;
    })
    .await;
}

#[tokio::test]
async fn server_sees_headers_origin_and_host() {
    bounded(async {
        let (seen_tx, seen_rx) = oneshot::channel::<(String, HeaderMap)>();
        let seen_tx = Arc::new(Mutex::new(Some(seen_tx)));
        let (addr, _) = serve(move |tcp| {
            let seen_tx = seen_tx.clone();
            async move {
                let ws = accept_with(tcp, ServerConfig::default(), |request, _| {
                    let target = request.uri().to_string();
                    if let Some(tx) = seen_tx.lock().unwrap().take() {
                        let _ = tx.send((target, request.headers().clone()));
                    }
                    Decision::accept().header("x-server", "frameway-test")
                });
                if let Ok(ws) = ws.await {
                    echo_messages(ws).await;
                }
            }
        })
        .await;
        let options = ConnectOptions::default()
            .origin("https://app.example")
            .header("X-Trace", "abc")
            .header("x-multi", "1")
            .header("x-multi", "2")
            .host("virtual.example");
        let (_ws, response) = connect_with(&format!("ws://{addr}/room/7?user=ann"), options)
            .await
            .unwrap();
        assert_eq!(response.headers()["x-server"], "frameway-test");

        let (target, headers) = seen_rx.await.unwrap();
        assert_eq!(target, "/room/7?user=ann");
        assert_eq!(headers["origin"], "https://app.example");
        assert_eq!(headers["x-trace"], "abc");
        assert_eq!(
            headers.get_all("x-multi").iter().collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert_eq!(headers["host"], "virtual.example");
    })
    .await;
}

#[tokio::test]
async fn default_host_header_has_the_port() {
    bounded(async {
        let (host_tx, host_rx) = oneshot::channel::<String>();
        let host_tx = Arc::new(Mutex::new(Some(host_tx)));
        let (addr, _) = serve(move |tcp| {
            let host_tx = host_tx.clone();
            async move {
                let _ = accept_with(tcp, ServerConfig::default(), |request, _| {
                    let host = request.headers()["host"].to_str().unwrap().to_owned();
                    let _ = host_tx.lock().unwrap().take().unwrap().send(host);
                    Decision::accept()
                })
                .await;
            }
        })
        .await;
        let _ = frameway::connect(&format!("ws://{addr}/")).await.unwrap();
        assert_eq!(host_rx.await.unwrap(), addr.to_string());
    })
    .await;
}

#[tokio::test]
async fn refused_upgrade_reports_status_and_body() {
    bounded(async {
        let (addr, _) = serve(|tcp| async move {
            let _ = accept_with(tcp, ServerConfig::default(), |_, _| {
                Decision::reject(StatusCode::FORBIDDEN, "nope").header("x-reason", "banned")
            })
            .await;
        })
        .await;
        match frameway::connect(&format!("ws://{addr}/")).await {
            Err(Error::UpgradeRefused(refused)) => {
                assert_eq!(refused.status, StatusCode::FORBIDDEN);
                assert_eq!(refused.headers["x-reason"], "banned");
                assert_eq!(refused.body, "nope");
            }
            other => panic!("expected UpgradeRefused, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn silent_server_times_out_the_handshake() {
    bounded(async {
        let (addr, _) = serve(|mut tcp| async move {
            // Read the request, never answer.
            let mut buf = [0u8; 1024];
            while tcp.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        })
        .await;
        let options = ConnectOptions::default().handshake_timeout(Duration::from_millis(200));
        match connect_with(&format!("ws://{addr}/"), options).await {
            Err(Error::Timeout(TimeoutKind::Handshake, limit)) => {
                assert_eq!(limit, Duration::from_millis(200))
            }
            other => panic!("expected a handshake timeout, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn bad_urls_and_options_fail_before_connecting() {
    bounded(async {
        assert!(matches!(
            frameway::connect("http://127.0.0.1:1/").await,
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            frameway::connect("ws:///nohost").await,
            Err(Error::InvalidUrl { .. })
        ));
        let options = ConnectOptions::default().key("not-a-key");
        match connect_with("ws://127.0.0.1:1/", options).await {
            Err(Error::InvalidOption(_)) => {}
            other => panic!("expected InvalidOption, got {other:?}"),
        }
        let options = ConnectOptions::default().proxy("socks5://127.0.0.1:1");
        assert!(matches!(
            connect_with("ws://127.0.0.1:1/", options).await,
            Err(Error::InvalidUrl { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn explicit_key_is_sent() {
    bounded(async {
        let (key_tx, key_rx) = oneshot::channel::<String>();
        let key_tx = Arc::new(Mutex::new(Some(key_tx)));
        let (addr, _) = serve(move |tcp| {
            let key_tx = key_tx.clone();
            async move {
                let _ = accept_with(tcp, ServerConfig::default(), |_, offer| {
                    let _ = key_tx
                        .lock()
                        .unwrap()
                        .take()
                        .unwrap()
                        .send(offer.key.clone());
                    Decision::accept()
                })
                .await;
            }
        })
        .await;
        let options = ConnectOptions::default().key("dGhlIHNhbXBsZSBub25jZQ==");
        connect_with(&format!("ws://{addr}/"), options)
            .await
            .unwrap();
        assert_eq!(key_rx.await.unwrap(), "dGhlIHNhbXBsZSBub25jZQ==");
    })
    .await;
}

// ----- TLS -----

#[tokio::test]
async fn wss_with_a_private_ca() {
    bounded(async {
        let pki = TestPki::new("client-private-ca");
        let addr = tls_echo_server(&pki, false).await;

        // By IP address (an IP SAN), trusting the test CA on top of webpki.
        let options = ConnectOptions::default().ca_pem(pki.ca_pem.clone());
        let (mut ws, response) = connect_with(&format!("wss://{addr}/secure"), options)
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        let tls = ws.get_ref().tls().expect("a TLS stream");
        assert_eq!(tls.alpn_protocol(), None);
        roundtrip(&mut ws, "over tls").await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();

        // By name, with SNI overridden, trusting only the test CA.
        let options = ConnectOptions::default()
            .roots(frameway::client::Roots::Empty)
            .ca_pem(pki.ca_pem.clone())
            .server_name("localhost");
        let (mut ws, _) = connect_with(&format!("wss://127.0.0.1:{}/", addr.port()), options)
            .await
            .unwrap();
        roundtrip(&mut ws, "sni").await;

        // Without the CA the certificate is unknown.
        match frameway::connect(&format!("wss://{addr}/")).await {
            Err(Error::Tls(rustls::Error::InvalidCertificate(_))) => {}
            other => panic!("expected an invalid certificate, got {other:?}"),
        }
        // With the CA but a name the certificate does not have.
        let options = ConnectOptions::default()
            .ca_pem(pki.ca_pem.clone())
            .server_name("other.example");
        match connect_with(&format!("wss://{addr}/"), options).await {
            Err(Error::Tls(rustls::Error::InvalidCertificate(_))) => {}
            other => panic!("expected a name mismatch, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn ca_and_client_cert_from_files() {
    bounded(async {
        // TestPki writes its PEMs to a directory of its own.
        let pki = TestPki::new("client-files");
        let addr = tls_echo_server(&pki, true).await;
        let options = ConnectOptions::default()
            .ca_file(pki.path("ca.pem"))
            .client_cert_files(pki.path("client.pem"), pki.path("client.key"));
        let (mut ws, _) = connect_with(&format!("wss://{addr}/"), options)
            .await
            .unwrap();
        roundtrip(&mut ws, "mtls from files").await;
    })
    .await;
}

#[tokio::test]
async fn mutual_tls_requires_the_client_certificate() {
    bounded(async {
        let pki = TestPki::new("client-mtls");
        let addr = tls_echo_server(&pki, true).await;
        let url = format!("wss://{addr}/");

        // TLS 1.3 finishes the client's handshake before the server checks
        // for a certificate: the refusal arrives as an alert on first read.
        let options = ConnectOptions::default().ca_pem(pki.ca_pem.clone());
        match connect_with(&url, options).await {
            Err(Error::Tls(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired,
            ))) => {}
            other => panic!("expected the server to ask for a certificate, got {other:?}"),
        }

        let options = ConnectOptions::default()
            .ca_pem(pki.ca_pem.clone())
            .client_cert(pki.client_cert_pem.clone(), pki.client_key_pem.clone());
        let (mut ws, _) = connect_with(&url, options).await.unwrap();
        roundtrip(&mut ws, "mutual").await;
    })
    .await;
}

#[tokio::test]
async fn ssl_verify_false_accepts_a_self_signed_server() {
    bounded(async {
        let addr = tls_echo_server_with(self_signed_server_config(&["self.example"])).await;
        let url = format!("wss://{addr}/");

        assert!(matches!(frameway::connect(&url).await, Err(Error::Tls(_))));

        let options = ConnectOptions::default().ssl_verify(false);
        let (mut ws, _) = connect_with(&url, options).await.unwrap();
        roundtrip(&mut ws, "unverified").await;
    })
    .await;
}

// ----- proxy -----

/// A CONNECT proxy that records request heads; `refuse` answers 407.
async fn connect_proxy(refuse: bool) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let (addr, _) = serve(move |mut client| {
        let log = log.clone();
        async move {
            // Byte by byte, so that no tunnelled byte is taken for the head.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if client.read_exact(&mut byte).await.is_err() {
                    return;
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            log.lock().unwrap().push(head.clone());
            if refuse {
                let _ = client
                    .write_all(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
                    )
                    .await;
                return;
            }
            let target = head.split_whitespace().nth(1).unwrap().to_owned();
            let mut upstream = TcpStream::connect(target).await.unwrap();
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .unwrap();
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    })
    .await;
    (addr, seen)
}

#[tokio::test]
async fn through_a_connect_proxy() {
    bounded(async {
        let server = echo_server().await;
        let (proxy, seen) = connect_proxy(false).await;
        let options = ConnectOptions::default().proxy(format!("http://user:pw@{proxy}"));
        let (mut ws, _) = connect_with(&format!("ws://{server}/via-proxy"), options)
            .await
            .unwrap();
        roundtrip(&mut ws, "tunnelled").await;

        let head = seen.lock().unwrap()[0].clone();
        assert!(
            head.starts_with(&format!("CONNECT {server} HTTP/1.1\r\nHost: {server}\r\n")),
            "{head}"
        );
        assert!(
            head.contains("Proxy-Authorization: Basic dXNlcjpwdw==\r\n"),
            "{head}"
        );
    })
    .await;
}

#[tokio::test]
async fn wss_through_a_connect_proxy() {
    bounded(async {
        let pki = TestPki::new("client-proxy");
        let server = tls_echo_server(&pki, false).await;
        let (proxy, seen) = connect_proxy(false).await;
        let options = ConnectOptions::default()
            .proxy(proxy.to_string())
            .ca_pem(pki.ca_pem.clone());
        let (mut ws, _) = connect_with(&format!("wss://{server}/"), options)
            .await
            .unwrap();
        roundtrip(&mut ws, "tls in a tunnel").await;
        assert_eq!(seen.lock().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn proxy_refusal_is_reported() {
    bounded(async {
        let (proxy, _) = connect_proxy(true).await;
        let options = ConnectOptions::default().proxy(format!("http://{proxy}"));
        match connect_with("ws://127.0.0.1:9/", options).await {
            Err(Error::Proxy(status)) => {
                assert_eq!(status, StatusCode::PROXY_AUTHENTICATION_REQUIRED)
            }
            other => panic!("expected Proxy(407), got {other:?}"),
        }
    })
    .await;
}

// ----- pools -----

#[tokio::test]
async fn pooled_connection_is_reused() {
    bounded(async {
        let (addr, accepted) = counted_echo_server().await;
        let url = format!("ws://{addr}/pooled");
        let options = ConnectOptions::default().pool_size(4).protocol("p1");

        let (mut ws, response) = connect_with(&url, options.clone()).await.unwrap();
        assert!(!response.reused());
        roundtrip(&mut ws, "first").await;
        let pool_name = ws.get_ref().pool_name().to_owned();
        ws.set_keepalive(Duration::from_secs(60), 4).unwrap();

        let (mut ws, response) = connect_with(&url, options.clone()).await.unwrap();
        assert!(response.reused());
        assert_eq!(response.status(), 101);
        assert_eq!(response.protocol(), Some("p1"));
        assert_eq!(ws.protocol(), Some("p1"));
        assert_eq!(ws.get_ref().pool_name(), pool_name);
        roundtrip(&mut ws, "second").await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one TCP connection for both"
        );

        // Another path is another pool: a new connection.
        let (_other, response) = connect_with(&format!("ws://{addr}/elsewhere"), options.clone())
            .await
            .unwrap();
        assert!(!response.reused());

        // A connection that is closing cannot be pooled.
        ws.send_close(None).await.unwrap();
        assert!(matches!(
            ws.set_keepalive(Duration::from_secs(60), 4),
            Err(Error::Closed)
        ));
        let (_ws, response) = connect_with(&url, options).await.unwrap();
        assert!(!response.reused());
    })
    .await;
}

#[tokio::test]
async fn pooled_connection_closed_by_the_server_is_not_reused() {
    bounded(async {
        let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (addr, accepted) = serve(move |tcp| {
            let closed_tx = closed_tx.clone();
            async move {
                let mut ws = frameway::accept(tcp).await.unwrap();
                // Answer one message, then drop the TCP connection.
                if let Some(Ok(msg)) = ws.recv().await {
                    ws.send(msg).await.unwrap();
                }
                drop(ws);
                let _ = closed_tx.send(());
            }
        })
        .await;
        let url = format!("ws://{addr}/");
        let options = ConnectOptions::default()
            .pool("closing-server-test")
            .pool_size(1);
        let (mut ws, _) = connect_with(&url, options.clone()).await.unwrap();
        roundtrip(&mut ws, "one").await;
        ws.set_keepalive(Duration::ZERO, 1).unwrap();
        closed_rx.recv().await.unwrap();

        let (mut ws, response) = connect_with(&url, options).await.unwrap();
        assert!(!response.reused());
        roundtrip(&mut ws, "fresh").await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test]
async fn idle_connections_expire() {
    bounded(async {
        let (addr, accepted) = counted_echo_server().await;
        let url = format!("ws://{addr}/");
        let options = ConnectOptions::default().pool_size(2);
        let (ws, _) = connect_with(&url, options.clone()).await.unwrap();
        ws.set_keepalive(Duration::from_millis(1), 2).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (_ws, response) = connect_with(&url, options).await.unwrap();
        assert!(!response.reused());
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test]
async fn backlog_queues_then_refuses() {
    bounded(async {
        let (addr, accepted) = counted_echo_server().await;
        let url = format!("ws://{addr}/limited");
        let options = ConnectOptions::default().pool_size(1).backlog(1);

        let (mut held, _) = connect_with(&url, options.clone()).await.unwrap();
        roundtrip(&mut held, "holding the only place").await;

        // The second connect queues: one poll puts it in the backlog.
        let mut second = Box::pin(connect_with(&url, options.clone()));
        assert!(tokio::time::timeout(Duration::ZERO, &mut second)
            .await
            .is_err());

        // The third finds the backlog full.
        match connect_with(&url, options.clone()).await {
            Err(e @ Error::PoolBacklogFull) => {
                assert_eq!(e.to_string(), "too many waiting connect operations")
            }
            other => panic!("expected PoolBacklogFull, got {other:?}"),
        }

        // Parking the held connection hands it to the waiting connect.
        held.set_keepalive(Duration::from_secs(60), 1).unwrap();
        let (mut second, response) = second.await.unwrap();
        assert!(response.reused());
        roundtrip(&mut second, "handed over").await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // Dropping it frees the place for a new connection.
        let mut third = Box::pin(connect_with(&url, options.clone()));
        assert!(tokio::time::timeout(Duration::ZERO, &mut third)
            .await
            .is_err());
        drop(second);
        let (mut third, response) = third.await.unwrap();
        assert!(!response.reused());
        roundtrip(&mut third, "new place").await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test]
async fn backlog_wait_is_bounded_by_the_connect_timeout() {
    bounded(async {
        let addr = echo_server().await;
        let url = format!("ws://{addr}/");
        let options = ConnectOptions::default()
            .pool_size(1)
            .backlog(4)
            .connect_timeout(Duration::from_millis(100));
        let (_held, _) = connect_with(&url, options.clone()).await.unwrap();
        match connect_with(&url, options.clone()).await {
            Err(Error::Timeout(TimeoutKind::Connect, limit)) => {
                assert_eq!(limit, Duration::from_millis(100))
            }
            other => panic!("expected a connect timeout, got {other:?}"),
        }
        // The waiter that gave up holds no place: the backlog is free again.
        let mut waiting = Box::pin(connect_with(&url, options));
        assert!(tokio::time::timeout(Duration::ZERO, &mut waiting)
            .await
            .is_err());
    })
    .await;
}
