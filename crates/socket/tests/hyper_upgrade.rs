//! Dropping the library into an existing hyper server: the request is parsed
//! by hyper, upgraded with `upgrade_response` (or `upgrade_response_with`,
//! which answers a permessage-deflate offer), and the upgraded stream wrapped
//! with `WebSocket::from_raw_socket`. Bytes the client sent right behind its
//! request must survive the hand-over.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use frameway::client::{connect_with, ConnectOptions};
use frameway::wire::deflate::DeflateConfig;
use frameway::{Message, Role, WebSocket, WebSocketConfig};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn handle(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let upgrade = match frameway::server::upgrade_response(&req, None) {
        Ok(upgrade) => upgrade,
        Err(err) => {
            let mut response = Response::new(Empty::new());
            *response.status_mut() = err.status();
            return Ok(response);
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = on_upgrade.await.unwrap();
        let io = TokioIo::new(upgraded);
        let mut ws =
            WebSocket::from_raw_socket(io, Role::Server, WebSocketConfig::default(), Bytes::new());
        while let Some(Ok(msg)) = ws.recv().await {
            if let m @ (Message::Text(_) | Message::Binary(_)) = msg {
                ws.send(m).await.unwrap();
            }
        }
    });
    let (parts, ()) = upgrade.into_parts();
    Ok(Response::from_parts(parts, Empty::new()))
}

#[tokio::test]
async fn hyper_upgrade_keeps_bytes_sent_with_the_request() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(handle);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        });

        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut bytes = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .to_vec();
        // A masked "Hi" right behind the request, in the same write.
        bytes.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2]);
        tcp.write_all(&bytes).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(&[0x81, 0x02, b'H', b'i']) {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&got);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    })
    .await
    .unwrap();
}

/// A hyper service that upgrades with `upgrade_response_with` and deflate
/// on: it tells the client whether the upgraded stream compresses, then
/// echoes.
async fn handle_with_deflate(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let config = WebSocketConfig::default().deflate(DeflateConfig::default());
    let Ok(upgrade) = frameway::server::upgrade_response_with(&req, None, &config) else {
        let mut response = Response::new(Empty::new());
        *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
        return Ok(response);
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let io = TokioIo::new(on_upgrade.await.unwrap());
        let mut ws = WebSocket::from_raw_socket(io, Role::Server, config, Bytes::new());
        if let Some(deflate) = upgrade.deflate {
            ws = ws.with_deflate(deflate);
        }
        let said = format!("deflate {}", ws.deflate().is_some());
        ws.send_text(said).await.unwrap();
        while let Some(Ok(msg)) = ws.recv().await {
            if let m @ (Message::Text(_) | Message::Binary(_)) = msg {
                ws.send(m).await.unwrap();
            }
        }
    });
    let (parts, ()) = upgrade.response.into_parts();
    Ok(Response::from_parts(parts, Empty::new()))
}

/// `upgrade_response_with` accepts the client's permessage-deflate offer in
/// hyper's 101, and the codec it returns makes the upgraded stream
/// compress: both ends agree and a compressible message round-trips.
#[tokio::test]
async fn hyper_upgrade_with_deflate_negotiates_it() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(handle_with_deflate);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
        });
        let options = ConnectOptions::default()
            .websocket(WebSocketConfig::default().deflate(DeflateConfig::default()));
        let (mut ws, _) = connect_with(&format!("ws://{addr}/ws"), options)
            .await
            .unwrap();
        assert!(
            ws.deflate().is_some(),
            "the client's offer was not accepted"
        );
        let first = ws.recv().await.unwrap().unwrap();
        assert_eq!(first, Message::Text("deflate true".into()));
        let text = "compress me ".repeat(200);
        ws.send_text(text.clone()).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::Text(text.into())
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn hyper_rejects_a_wrong_version_with_426() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(handle);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
        });
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 426 "),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    })
    .await
    .unwrap();
}
