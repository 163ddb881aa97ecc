//! Kong's log plugins from a kong.yml, over real sockets: one entry per
//! connection to a file (file-log), to an HTTP collector (http-log) and to
//! a TCP collector (tcp-log), each saying the same thing.

mod support;

use std::time::Duration;

use frameway::{CloseCode, Message};
use serde_json::Value;
use support::{bounded, connect, echo_upstream, gateway, recv, within};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// An HTTP collector (HTTPS with `tls`): each request's head and JSON
/// body.
async fn http_collector(
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (u16, mpsc::UnboundedReceiver<(String, Value)>) {
    failing_http_collector(tls, 0).await
}

/// An HTTP collector that answers its first `failures` requests with 500.
async fn failing_http_collector(
    tls: Option<tokio_rustls::TlsAcceptor>,
    failures: usize,
) -> (u16, mpsc::UnboundedReceiver<(String, Value)>) {
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            let tls = tls.clone();
            let nth = answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let status = if nth < failures { 500 } else { 200 };
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            collect_one(stream, status, tx).await;
                        }
                    }
                    None => collect_one(tcp, status, tx).await,
                }
            });
        }
    });
    (port, rx)
}

async fn collect_one<S>(stream: S, status: u16, tx: mpsc::UnboundedSender<(String, Value)>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    let mut stream = reader.into_inner();
    let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
    stream.write_all(answer.as_bytes()).await.unwrap();
    let _ = stream.shutdown().await;
    let _ = tx.send((head, serde_json::from_slice(&body).unwrap()));
}

/// A TCP collector: each line, as JSON.
async fn tcp_collector() -> (u16, mpsc::UnboundedReceiver<Value>) {
    let (port, rx, _) = tcp_collector_closing_after(usize::MAX).await;
    (port, rx)
}

/// A TCP collector that closes each connection after `lines` lines; the
/// second receiver hears of each close.
async fn tcp_collector_closing_after(
    lines: usize,
) -> (
    u16,
    mpsc::UnboundedReceiver<Value>,
    mpsc::UnboundedReceiver<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(tcp).lines();
                let mut seen = 0;
                while let Ok(Some(line)) = reader.next_line().await {
                    let _ = tx.send(serde_json::from_str(&line).unwrap());
                    seen += 1;
                    if seen == lines {
                        break;
                    }
                }
                drop(reader);
                let _ = closed_tx.send(());
            });
        }
    });
    (port, rx, closed)
}

#[tokio::test]
async fn file_http_and_tcp_log_write_one_entry_per_connection() {
    bounded(async {
        let up = echo_upstream().await;
        let (http_port, mut posted) = http_collector(None).await;
        let (tcp_port, mut lines) = tcp_collector().await;
        let path =
            std::env::temp_dir().join(format!("frameway-file-log-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let kong = format!(
            r#"_format_version: "3.0"
services:
- name: chat
  url: ws://{up}
  routes: [{{ name: chat-route, paths: [/chat], strip_path: false }}]
  plugins:
  - name: key-auth
plugins:
- name: file-log
  config: {{ path: {path:?}, reopen: false }}
- name: http-log
  config:
    http_endpoint: http://bot:s3cret@127.0.0.1:{http_port}/logs
    method: PUT
    timeout: 2000
    keepalive: 60000
    headers: {{ X-Team: chat }}
    queue: {{ max_batch_size: 1, max_coalescing_delay: 1 }}
- name: tcp-log
  config: {{ host: 127.0.0.1, port: {tcp_port}, keepalive: 60000 }}
consumers:
- username: alice
  keyauth_credentials: [{{ key: alice-key }}]
"#,
            path = path.display().to_string()
        );
        let gw = gateway(&kong).await;
        let mut ws = connect(gw, "/chat?apikey=alice-key").await;
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(recv(&mut ws).await, Message::text("hello"));
        ws.close(CloseCode::NORMAL, "").await.unwrap();

        let (head, from_http) = within("the http-log entry", posted.recv()).await.unwrap();
        assert!(head.starts_with("PUT /logs HTTP/1.1\r\n"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("x-team: chat\r\n"), "{head}");
        // bot:s3cret
        assert!(
            lower.contains("authorization: basic ym90onmzy3jlda=="),
            "{head}"
        );
        let from_tcp = within("the tcp-log entry", lines.recv()).await.unwrap();
        let from_file = within("the file-log entry", async {
            loop {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    if text.ends_with('\n') {
                        return serde_json::from_str::<Value>(text.trim_end()).unwrap();
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let _ = std::fs::remove_file(&path);
        for entry in [&from_http, &from_tcp, &from_file] {
            assert_eq!(entry["request"]["uri"], "/chat?apikey=alice-key", "{entry}");
            assert_eq!(entry["route"]["name"], "chat-route");
            assert_eq!(entry["service"]["name"], "chat");
            assert_eq!(entry["consumer"]["username"], "alice");
            assert_eq!(entry["client_ip"], "127.0.0.1");
            assert_eq!(entry["ws"]["client_status"], 1000);
            assert_eq!(entry["ws"]["client_messages"], 2, "{entry}");
            assert!(entry["started_at"].as_u64().unwrap() > 1_700_000_000_000);
        }
        assert_eq!(from_http["ws"], from_tcp["ws"]);
        assert_eq!(from_http["ws"], from_file["ws"]);
    })
    .await;
}

/// http-log sends an entry again after the collector fails it (500), and
/// tcp-log reconnects when the collector closes the connection it kept,
/// losing no entry to the dead connection.
#[tokio::test]
async fn log_senders_retry_a_failed_post_and_reconnect_to_a_closed_collector() {
    bounded(async {
        let up = echo_upstream().await;
        let (http_port, mut posted) = failing_http_collector(None, 1).await;
        let (tcp_port, mut lines, mut closed) = tcp_collector_closing_after(1).await;
        let kong = format!(
            r#"_format_version: "3.0"
services:
- name: chat
  url: ws://{up}
  routes: [{{ name: chat, paths: [/chat] }}]
plugins:
- name: http-log
  config: {{ http_endpoint: "http://127.0.0.1:{http_port}/logs", retry_count: 2 }}
- name: tcp-log
  config: {{ host: 127.0.0.1, port: {tcp_port}, keepalive: 60000 }}
"#
        );
        let gw = gateway(&kong).await;
        for n in 0..3 {
            let mut ws = connect(gw, &format!("/chat?n={n}")).await;
            ws.close(CloseCode::NORMAL, "").await.unwrap();
            let entry = within("the tcp-log entry", lines.recv()).await.unwrap();
            assert_eq!(entry["request"]["uri"], format!("/chat?n={n}"));
            within("the collector's close", closed.recv())
                .await
                .unwrap();
        }
        // The first entry twice (refused, then taken), then the others.
        let mut uris = Vec::new();
        for _ in 0..4 {
            let (_, entry) = within("an http-log entry", posted.recv()).await.unwrap();
            uris.push(entry["request"]["uri"].as_str().unwrap().to_owned());
        }
        assert_eq!(uris, ["/chat?n=0", "/chat?n=0", "/chat?n=1", "/chat?n=2"]);
    })
    .await;
}

/// An https:// endpoint is verified against the system's roots (here the
/// test CA, through `SSL_CERT_FILE`) and gets the entry over TLS.
#[tokio::test]
async fn http_log_posts_to_an_https_collector_it_verifies() {
    bounded(async {
        let pki = support::TestPki::new("http-log");
        std::env::set_var("SSL_CERT_FILE", pki.path("ca.pem"));
        let acceptor =
            tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(pki.server_config(false)));
        let (port, mut posted) = http_collector(Some(acceptor)).await;
        let up = echo_upstream().await;
        let kong = format!(
            r#"_format_version: "3.0"
services:
- name: echo
  url: ws://{up}
  routes: [{{ name: echo, paths: [/] }}]
  plugins:
  - name: http-log
    config: {{ http_endpoint: "https://localhost:{port}/bulk" }}
"#
        );
        let gw = gateway(&kong).await;
        let mut ws = connect(gw, "/").await;
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        let (head, entry) = within("the https entry", posted.recv()).await.unwrap();
        assert!(head.starts_with("POST /bulk HTTP/1.1\r\n"), "{head}");
        assert_eq!(entry["service"]["name"], "echo");
    })
    .await;
}

#[test]
fn kong_log_options_frameway_cannot_honour_are_refused() {
    let load = |plugin: &str| {
        let text = format!(
            "_format_version: \"3.0\"\nplugins:\n- {plugin}\nservices:\n- name: s\n  url: ws://127.0.0.1:1\n  routes: [{{ name: r, paths: [/] }}]\n"
        );
        support::refused_config(&text, "kong.yml")
    };
    for (plugin, why) in [
        (
            "{ name: http-log, config: { http_endpoint: \"http://l/\", queue: { max_batch_size: 10 } } }",
            "queue.max_batch_size 10 is not supported",
        ),
        (
            "{ name: tcp-log, config: { host: l, port: 9, tls: true } }",
            "TLS to a TCP log collector is not supported",
        ),
        (
            "{ name: file-log, config: { path: /tmp/x, custom_fields_by_lua: { a: \"return 1\" } } }",
            "custom_fields_by_lua is not supported",
        ),
    ] {
        let error = load(plugin);
        assert!(error.starts_with("kong.yml:3:") && error.contains(why), "{error}");
    }
}
