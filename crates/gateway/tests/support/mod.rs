//! Test harness: real upstreams, a real gateway and real clients on
//! 127.0.0.1, and test plugins.

#![allow(dead_code)]

// The pieces every crate's tests share (PKI, Python peers, bounded waits)
// live in the test-support crate; not every test binary uses all of them.
#[allow(unused_imports)]
pub use frameway_test_support::*;

pub mod lua;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use frameway::client::{connect_with, ClientStream, ConnectOptions};
use frameway::server::{accept_with, Decision, ServerConfig};
use frameway::{CloseCode, CloseFrame, Message, Role, WebSocket, WebSocketConfig};
use frameway_gateway::config::Config;
use frameway_gateway::plugin::{
    CloseContext, FailureContext, FrameContext, HandshakeContext, Plugin, PluginError, Registry,
    State,
};
use frameway_gateway::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

// ------------------------------------------------------------ gateway ---

/// An echo upstream (frameway's) on a fresh port.
pub async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(frameway_gateway::echo::serve_echo(tcp));
        }
    });
    addr
}

/// Starts a gateway on `config` (TOML; its `listen` and `tls_listen` are
/// replaced by fresh ports) with `registry`; returns the bound addresses,
/// plain ones first, then TLS ones.
pub async fn gateway_addrs(config: &str, registry: &Registry) -> Vec<SocketAddr> {
    let config =
        Config::parse(config, "test", registry).unwrap_or_else(|e| panic!("bad test config:\n{e}"));
    serve(config).await
}

/// Serves a loaded `config` with its `listen` and `tls_listen` replaced by
/// fresh ports; returns the bound addresses, plain ones first.
pub async fn serve(mut config: Config) -> Vec<SocketAddr> {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.listen = vec![any];
    if !config.tls_listen.is_empty() {
        config.tls_listen = vec![any];
    }
    let gateway = Gateway::bind(config).await.unwrap();
    let addrs = gateway.local_addrs();
    tokio::spawn(gateway.serve());
    addrs
}

/// The errors `text` (TOML or a Kong declarative file, called `name` in
/// them) is refused with, one per line; panics if it loads.
pub fn refused_config(text: &str, name: &str) -> String {
    match Config::parse(text, name, &Registry::with_builtins()) {
        Ok(_) => panic!("{name} loads:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Starts a gateway on `config` (TOML; its `listen` is replaced by a fresh
/// port) with `registry`; returns the address clients connect to.
pub async fn gateway_with(config: &str, registry: &Registry) -> SocketAddr {
    gateway_addrs(config, registry).await[0]
}

/// [`gateway_with`] and the built-in plugins.
pub async fn gateway(config: &str) -> SocketAddr {
    gateway_with(config, &Registry::with_builtins()).await
}

/// A config with one service at `upstream` and one route at `/` with
/// `plugins` (TOML `[[services.routes.plugins]]` entries, may be empty).
pub fn one_route(upstream: SocketAddr, plugins: &str) -> String {
    format!(
        r#"
[[services]]
name = "svc"
url = "ws://{upstream}"
  [[services.routes]]
  name = "route"
  paths = ["/"]
{plugins}
"#
    )
}

/// `[[services.routes.plugins]]` entries for these plugin names.
pub fn route_plugins(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("  [[services.routes.plugins]]\n  name = \"{n}\"\n"))
        .collect()
}

/// A gateway with one route at `/` to `upstream` running `plugins` (which
/// are registered next to the built-ins and attached to the route).
pub async fn gateway_running(upstream: SocketAddr, plugins: Vec<TestPlugin>) -> SocketAddr {
    let names: Vec<String> = plugins.iter().map(|p| p.name.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    gateway_with(
        &one_route(upstream, &route_plugins(&names)),
        &registry(plugins),
    )
    .await
}

// ------------------------------------------------------------ plugins ---

type FrameHook = Arc<dyn Fn(&mut FrameContext<'_>) -> Result<(), PluginError> + Send + Sync>;
type HandshakeHook =
    Arc<dyn Fn(&mut HandshakeContext<'_>) -> Result<(), PluginError> + Send + Sync>;
type CloseHook = Arc<dyn Fn(&mut CloseContext<'_>) + Send + Sync>;
type FailureHook = Arc<dyn Fn(&mut FailureContext<'_>) + Send + Sync>;
type StateHook = Arc<dyn Fn() -> State + Send + Sync>;

/// A plugin made of closures, one per phase.
#[derive(Clone)]
pub struct TestPlugin {
    pub name: String,
    priority: i32,
    frames: bool,
    handshake: Option<HandshakeHook>,
    client: Option<FrameHook>,
    upstream: Option<FrameHook>,
    close: Option<CloseHook>,
    failed: Option<FailureHook>,
    state: Option<StateHook>,
}

impl TestPlugin {
    pub fn new(name: &str) -> Self {
        TestPlugin {
            name: name.to_owned(),
            priority: 0,
            frames: false,
            handshake: None,
            client: None,
            upstream: None,
            close: None,
            failed: None,
            state: None,
        }
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    pub fn on_handshake(
        mut self,
        f: impl Fn(&mut HandshakeContext<'_>) -> Result<(), PluginError> + Send + Sync + 'static,
    ) -> Self {
        self.handshake = Some(Arc::new(f));
        self
    }

    pub fn on_client_frame(
        mut self,
        f: impl Fn(&mut FrameContext<'_>) -> Result<(), PluginError> + Send + Sync + 'static,
    ) -> Self {
        self.frames = true;
        self.client = Some(Arc::new(f));
        self
    }

    pub fn on_upstream_frame(
        mut self,
        f: impl Fn(&mut FrameContext<'_>) -> Result<(), PluginError> + Send + Sync + 'static,
    ) -> Self {
        self.frames = true;
        self.upstream = Some(Arc::new(f));
        self
    }

    /// The same handler for both directions (`ctx.direction()` tells them apart).
    pub fn on_frame(
        self,
        f: impl Fn(&mut FrameContext<'_>) -> Result<(), PluginError> + Send + Sync + 'static,
    ) -> Self {
        let f: FrameHook = Arc::new(f);
        let g = f.clone();
        self.on_client_frame(move |ctx| f(ctx))
            .on_upstream_frame(move |ctx| g(ctx))
    }

    pub fn on_close(mut self, f: impl Fn(&mut CloseContext<'_>) + Send + Sync + 'static) -> Self {
        self.close = Some(Arc::new(f));
        self
    }

    pub fn on_failed(
        mut self,
        f: impl Fn(&mut FailureContext<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.failed = Some(Arc::new(f));
        self
    }

    pub fn with_state(mut self, f: impl Fn() -> State + Send + Sync + 'static) -> Self {
        self.state = Some(Arc::new(f));
        self
    }
}

impl Plugin for TestPlugin {
    fn name(&self) -> &str {
        &self.name
    }
    fn priority(&self) -> i32 {
        self.priority
    }
    fn handles_frames(&self) -> bool {
        self.frames
    }
    fn new_state(&self) -> Option<State> {
        self.state.as_ref().map(|f| f())
    }
    fn handshake(&self, ctx: &mut HandshakeContext<'_>) -> Result<(), PluginError> {
        self.handshake.as_ref().map_or(Ok(()), |f| f(ctx))
    }
    fn client_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        self.client.as_ref().map_or(Ok(()), |f| f(ctx))
    }
    fn upstream_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        self.upstream.as_ref().map_or(Ok(()), |f| f(ctx))
    }
    fn close(&self, ctx: &mut CloseContext<'_>) {
        if let Some(f) = &self.close {
            f(ctx)
        }
    }
    fn failed(&self, ctx: &mut FailureContext<'_>) {
        if let Some(f) = &self.failed {
            f(ctx)
        }
    }
}

/// The built-in plugins plus `plugins`, each under its name.
pub fn registry(plugins: Vec<TestPlugin>) -> Registry {
    let mut registry = Registry::with_builtins();
    for plugin in plugins {
        let name = plugin.name.clone();
        let plugin: Arc<dyn Plugin> = Arc::new(plugin);
        registry.register(&name, Arc::new(move |_config| Ok(plugin.clone())));
    }
    registry
}

/// What plugins (or upstreams) observed, in order, for tests to wait on.
#[derive(Clone, Default)]
pub struct Events {
    lines: Arc<Mutex<Vec<String>>>,
    changed: Arc<Notify>,
}

impl Events {
    pub fn new() -> Self {
        Events::default()
    }

    pub fn push(&self, line: impl Into<String>) {
        self.lines.lock().unwrap().push(line.into());
        self.changed.notify_waiters();
    }

    pub fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (bounded) for a line starting with `prefix` and returns it.
    pub async fn wait_for(&self, prefix: &str) -> String {
        let found = async {
            loop {
                let notified = self.changed.notified();
                if let Some(line) = self.all().into_iter().find(|l| l.starts_with(prefix)) {
                    return line;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(WAIT, found).await {
            Ok(line) => line,
            Err(_) => panic!("no event {prefix:?}; events: {:?}", self.all()),
        }
    }
}

// ----------------------------------------------------------- upstreams ---

/// One accepted upstream connection: the request as the upstream saw it
/// and its WebSocket.
pub struct UpstreamConn {
    pub request: http::Request<()>,
    pub ws: WebSocket<TcpStream>,
}

/// A WebSocket upstream whose connections are handed to the test. It
/// chooses the *last* subprotocol offered (so a test can tell its choice
/// from the client's first), answers pings itself, and accepts messages up
/// to 32 MiB.
pub async fn scripted_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<UpstreamConn>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let seen = Arc::new(Mutex::new(None));
                let keep = seen.clone();
                let config = ServerConfig::default().websocket(big_limits());
                let ws = accept_with(tcp, config, move |req, offer| {
                    let mut copy = http::Request::new(());
                    *copy.method_mut() = req.method().clone();
                    *copy.uri_mut() = req.uri().clone();
                    *copy.headers_mut() = req.headers().clone();
                    *keep.lock().unwrap() = Some(copy);
                    match offer.protocols.last() {
                        Some(p) => Decision::accept().protocol(p.clone()),
                        None => Decision::accept(),
                    }
                })
                .await;
                if let Ok(ws) = ws {
                    let request = seen.lock().unwrap().take().unwrap();
                    let _ = tx.send(UpstreamConn { request, ws });
                }
            });
        }
    });
    (addr, rx)
}

/// The next connection of a [`scripted_upstream`].
pub async fn next_upstream(rx: &mut mpsc::UnboundedReceiver<UpstreamConn>) -> UpstreamConn {
    within("the upstream connection", rx.recv())
        .await
        .expect("the upstream is gone")
}

/// A TCP server that answers every request with `response` (raw HTTP) and
/// closes.
pub async fn raw_upstream(response: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_head(&mut tcp).await;
                let _ = tcp.write_all(response).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// A TCP server that accepts and never answers (the connections are held
/// open for the test's lifetime).
pub async fn silent_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    addr
}

/// An address nothing listens on.
pub fn refused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A wss echo upstream with this TLS configuration.
pub async fn tls_echo_upstream(config: rustls::ServerConfig) -> SocketAddr {
    tls_echo_upstream_telling(config).await.0
}

/// A wss echo upstream that tells how each TLS handshake went (full or
/// resumed), in the order they completed.
pub async fn tls_echo_upstream_telling(
    config: rustls::ServerConfig,
) -> (SocketAddr, mpsc::UnboundedReceiver<rustls::HandshakeKind>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    if let Some(kind) = tls.get_ref().1.handshake_kind() {
                        let _ = tx.send(kind);
                    }
                    let _ = frameway_gateway::echo::serve_echo(tls).await;
                }
            });
        }
    });
    (addr, rx)
}

// ------------------------------------------------------------- clients ---

/// Limits high enough for 16 MiB messages.
pub fn big_limits() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_len(32 << 20)
        .max_send_len(32 << 20)
}

/// Connects to the gateway at `addr` and `path`.
pub async fn connect(addr: SocketAddr, path: &str) -> WebSocket<ClientStream> {
    connect_opts(&format!("ws://{addr}{path}"), ConnectOptions::default()).await
}

/// Connects to `url` with `options` (and 32 MiB limits).
pub async fn connect_opts(url: &str, options: ConnectOptions) -> WebSocket<ClientStream> {
    let options = options.websocket(big_limits());
    let (ws, _) = within("the client's handshake", connect_with(url, options))
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    ws
}

/// The next message, which must not be a close or an error.
pub async fn recv<S>(ws: &mut WebSocket<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match within("a message", ws.recv()).await {
        Some(Ok(Message::Close(c))) => panic!("expected a message, got close {c:?}"),
        Some(Ok(m)) => m,
        Some(Err(e)) => panic!("expected a message, got error {e}"),
        None => panic!("expected a message, the connection is closed"),
    }
}

/// The next text message.
pub async fn recv_text<S>(ws: &mut WebSocket<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match recv(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads until the close frame (skipping messages) and returns its code
/// and reason (1005 for a close without status); panics if the connection
/// ends without one.
pub async fn expect_close<S>(ws: &mut WebSocket<S>) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let close = async {
        loop {
            match ws.recv().await {
                Some(Ok(Message::Close(Some(c)))) => {
                    return (c.code.as_u16(), c.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("expected a close frame, got error {e}"),
                None => panic!("expected a close frame, the connection ended"),
            }
        }
    };
    within("a close frame", close).await
}

/// The next frame, which must be a close: its code and reason (1005 for a
/// close without status).
pub async fn next_close<S>(ws: &mut WebSocket<S>) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match within("a close frame", ws.recv()).await {
        Some(Ok(Message::Close(Some(c)))) => (c.code.as_u16(), c.reason.to_string()),
        Some(Ok(Message::Close(None))) => (1005, String::new()),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// Reads until the close frame and returns what came before it.
pub async fn messages_until_close<S>(ws: &mut WebSocket<S>) -> (Vec<Message>, (u16, String))
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut seen = Vec::new();
    let close = async {
        loop {
            match ws.recv().await {
                Some(Ok(Message::Close(Some(c)))) => {
                    return (c.code.as_u16(), c.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(m)) => seen.push(m),
                Some(Err(e)) => panic!("expected a close frame, got error {e}"),
                None => panic!("expected a close frame, the connection ended"),
            }
        }
    };
    let close = within("a close frame", close).await;
    (seen, close)
}

/// A raw HTTP response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    /// Bytes after the head when the status is 101 (WebSocket frames).
    pub rest: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads an HTTP head (up to the blank line); returns it and what followed.
async fn read_head(tcp: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Some((head, buf[end + 4..].to_vec()));
        }
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_head(head: &str) -> (u16, http::HeaderMap) {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            http::HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    (status, headers)
}

/// Sends `request` (raw bytes) to `addr` and reads the response: for a
/// non-101 status, the body to the end of the connection (or its
/// Content-Length).
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        let (head, mut rest) = read_head(&mut tcp)
            .await
            .expect("the gateway answered with an HTTP head");
        let (status, headers) = parse_head(&head);
        if status == 101 {
            return RawResponse {
                status,
                headers,
                body: Vec::new(),
                rest,
            };
        }
        let len: Option<usize> = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let mut chunk = [0u8; 4096];
        while len.is_none_or(|len| rest.len() < len) {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
            }
        }
        RawResponse {
            status,
            headers,
            body: rest,
            rest: Vec::new(),
        }
    };
    within("the HTTP response", exchange).await
}

/// A WebSocket handshake request for `path` with `extra` header lines
/// (each ending in `\r\n`).
pub fn upgrade_request(path: &str, extra: &str) -> String {
    upgrade_request_to("gw.test:8080", path, extra)
}

/// [`upgrade_request`] with this `Host` header.
pub fn upgrade_request_to(host: &str, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Opens a WebSocket to `addr` by hand: writes `request` followed at once
/// (same write) by `early` bytes, checks the 101, and returns the client.
pub async fn raw_ws_client(
    addr: SocketAddr,
    request: &str,
    early: &[u8],
) -> (WebSocket<TcpStream>, RawResponse) {
    let open = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut bytes = request.as_bytes().to_vec();
        bytes.extend_from_slice(early);
        tcp.write_all(&bytes).await.unwrap();
        let (head, rest) = read_head(&mut tcp).await.expect("an HTTP answer");
        let (status, headers) = parse_head(&head);
        assert_eq!(status, 101, "{head}");
        let ws = WebSocket::from_raw_socket(tcp, Role::Client, big_limits(), rest.clone().into());
        let response = RawResponse {
            status,
            headers,
            body: Vec::new(),
            rest,
        };
        (ws, response)
    };
    within("the handshake", open).await
}

/// A masked client frame (mask key 1,2,3,4).
pub fn masked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let key = [1u8, 2, 3, 4];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

// ------------------------------------------------------ frame helpers ---

pub fn close_frame(code: u16, reason: &str) -> Option<CloseFrame> {
    Some(CloseFrame::new(CloseCode::new(code).unwrap(), reason.to_owned()).unwrap())
}

pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The first 40 bytes of a payload, as text.
pub fn head(data: &[u8]) -> String {
    text(&data[..data.len().min(40)])
}

/// A plugin recording every frame it sees as `direction type payload status`.
pub fn spy(name: &str, events: &Events) -> TestPlugin {
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

/// Gateway settings with the largest message limits.
pub const BIG: &str = "[gateway]\nclient_max_payload = 33554432\nupstream_max_payload = 33554432\n";

/// A fresh directory holding `plugins`: (name, file, source) triples, e.g.
/// `("tag", "handler.lua", "…")`; removed when dropped.
pub fn plugin_dir(plugins: &[(&str, &str, &str)]) -> PluginDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "frameway-lua-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, file, source) in plugins {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join(file), source).unwrap();
    }
    PluginDir(dir)
}

/// A temporary plugin directory. Lua files are read when the configuration
/// is loaded, so it may go while the gateway still runs.
pub struct PluginDir(PathBuf);

impl std::ops::Deref for PluginDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
