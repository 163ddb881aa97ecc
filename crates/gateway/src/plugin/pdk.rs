//! The plugin development kit: what a handler can see and do in each phase,
//! under the names of Kong's WebSocket PDK (`get_frame`, `set_frame_data`,
//! `set_status`, `drop_frame`, `close`, `set_max_payload_size`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use frameway_wire::{CloseCode, OpCode};
use http::header::{HeaderName, HeaderValue};
use http::{Extensions, HeaderMap, Request, StatusCode};

use super::{ChainError, PluginError, State};
use crate::balancer::Pool;
use crate::consumer::{Authenticated, Consumer, Consumers, Credential};

/// Where a frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client, going upstream.
    Client,
    /// From the upstream, going to the client.
    Upstream,
}

impl Direction {
    /// `"client"` or `"upstream"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Client => "client",
            Direction::Upstream => "upstream",
        }
    }

    /// 0 for the client, 1 for the upstream: the index of per-side tables.
    pub fn index(self) -> usize {
        match self {
            Direction::Client => 0,
            Direction::Upstream => 1,
        }
    }

    /// The other side: where a frame from this side goes.
    pub fn opposite(self) -> Direction {
        match self {
            Direction::Client => Direction::Upstream,
            Direction::Upstream => Direction::Client,
        }
    }
}

/// The type of an in-flight frame, as Kong names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// A text message (whole, when the route aggregates).
    Text,
    /// A binary message.
    Binary,
    /// A later fragment, seen only by code working frame by frame.
    Continuation,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
    /// A close frame.
    Close,
}

impl FrameType {
    /// Every frame type, in this order: what tables indexed by
    /// [`FrameType::index`] hold.
    pub const ALL: [FrameType; 6] = [
        FrameType::Text,
        FrameType::Binary,
        FrameType::Continuation,
        FrameType::Ping,
        FrameType::Pong,
        FrameType::Close,
    ];

    /// This type's place in [`FrameType::ALL`].
    pub fn index(self) -> usize {
        match self {
            FrameType::Text => 0,
            FrameType::Binary => 1,
            FrameType::Continuation => 2,
            FrameType::Ping => 3,
            FrameType::Pong => 4,
            FrameType::Close => 5,
        }
    }

    /// `"text"`, `"binary"`, `"continuation"`, `"ping"`, `"pong"` or `"close"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameType::Text => "text",
            FrameType::Binary => "binary",
            FrameType::Continuation => "continuation",
            FrameType::Ping => "ping",
            FrameType::Pong => "pong",
            FrameType::Close => "close",
        }
    }
}

/// The type of a frame with this opcode.
///
/// ```
/// use frameway::OpCode;
/// use frameway_gateway::plugin::FrameType;
///
/// assert_eq!(FrameType::from(OpCode::Continuation), FrameType::Continuation);
/// assert_eq!(FrameType::from(OpCode::Close).as_str(), "close");
/// ```
impl From<OpCode> for FrameType {
    fn from(opcode: OpCode) -> Self {
        match opcode {
            OpCode::Text => FrameType::Text,
            OpCode::Binary => FrameType::Binary,
            OpCode::Continuation => FrameType::Continuation,
            OpCode::Ping => FrameType::Ping,
            OpCode::Pong => FrameType::Pong,
            OpCode::Close => FrameType::Close,
        }
    }
}

/// A PDK call that is not allowed here (Kong raises these as exceptions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdkError {
    /// `set_status` on a frame that is not a close frame.
    #[error("cannot set the status of a {0} frame (only close frames have one)")]
    StatusOnNonClose(&'static str),
    /// `drop_frame` on a close frame.
    #[error("close frames cannot be dropped")]
    DropClose,
    /// A status code that may not be sent on the wire.
    #[error("invalid close status {0}: use 1000-1003, 1007-1014 or 3000-4999")]
    InvalidStatus(u16),
    /// A close message over 123 bytes.
    #[error("close message of {0} bytes exceeds 123")]
    MessageTooLong(usize),
    /// A header name or value that cannot be sent.
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    /// A header of the handshake's answer that the WebSocket upgrade
    /// itself sets (`Connection`, `Upgrade`, `Sec-WebSocket-*`, the body's
    /// framing).
    #[error("the {0} header belongs to the WebSocket upgrade")]
    UpgradeHeader(String),
    /// Text (or a close message) that is not UTF-8.
    #[error("{0} must be UTF-8")]
    NotUtf8(&'static str),
    /// `set_target` with a host and port no URL can carry.
    #[error("{0:?} is not a host and port to connect to")]
    InvalidTarget(String),
    /// `set_upstream` with a name no `[[upstreams]]` entry has.
    #[error("could not find an upstream named {0:?}")]
    UnknownUpstream(String),
    /// A ping or pong payload over 125 bytes.
    #[error("a {kind} carries at most 125 bytes, not {len}")]
    ControlTooLong {
        /// `"ping"` or `"pong"`.
        kind: &'static str,
        /// The payload's length.
        len: usize,
    },
}

/// A close frame a plugin asked for: status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedClose {
    /// The status code.
    pub status: CloseCode,
    /// The message (at most 123 bytes).
    pub message: String,
}

impl PlannedClose {
    pub(crate) fn new(status: Option<u16>, message: Option<&str>) -> Result<Self, PdkError> {
        let code = status.unwrap_or(1000);
        let status = CloseCode::new(code).ok_or(PdkError::InvalidStatus(code))?;
        let message = message.unwrap_or("").to_owned();
        if message.len() > frameway_wire::MAX_CLOSE_REASON {
            return Err(PdkError::MessageTooLong(message.len()));
        }
        Ok(PlannedClose { status, message })
    }

    /// The close frames for the sender and its peer, as `close` takes them.
    pub(crate) fn pair(
        status: Option<u16>,
        message: Option<&str>,
        peer_status: Option<u16>,
        peer_payload: Option<&str>,
    ) -> Result<(Self, Self), PdkError> {
        Ok((
            PlannedClose::new(status, message)?,
            PlannedClose::new(peer_status, peer_payload)?,
        ))
    }
}

/// What happens to the in-flight frame once the handlers have run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Forward it (possibly changed).
    #[default]
    Forward,
    /// Drop it.
    Drop,
    /// Do not forward it; close both sides.
    Close {
        /// The close frame for the side the frame came from.
        sender: PlannedClose,
        /// The close frame for the other side.
        peer: PlannedClose,
    },
    /// Forward it, then close both sides (beyond Kong).
    ForwardThenClose {
        /// The close frame for the side the frame came from.
        sender: PlannedClose,
        /// The close frame for the other side.
        peer: PlannedClose,
    },
}

impl Verdict {
    /// Whether later handlers are skipped.
    pub(crate) fn stops_chain(&self) -> bool {
        !matches!(self, Verdict::Forward)
    }
}

/// Facts about one proxied connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// A number unique to this connection within the process.
    pub id: u64,
    /// The client's address.
    pub client_addr: SocketAddr,
    /// The matched route's name.
    pub route: String,
    /// The matched service's name.
    pub service: String,
    /// When the connection was accepted.
    pub started: Instant,
    /// Who the client is, once an authentication plugin recognised it:
    /// set for the frame and close phases (in the handshake, plugins after
    /// the authenticating one ask [`HandshakeContext::consumer`]).
    pub consumer: Option<Arc<Authenticated>>,
}

/// The accessors every phase's context has, over its `state`, `shared` and
/// `conn` fields: written once here rather than three times.
macro_rules! connection_accessors {
    ($context:ident) => {
        impl $context<'_> {
            /// This plugin's per-connection state (`kong.ctx.plugin`).
            pub fn state<T: 'static>(&mut self) -> Option<&mut T> {
                self.state.as_mut()?.downcast_mut()
            }

            /// State shared by all plugins of this connection (`kong.ctx.shared`).
            pub fn shared(&mut self) -> &mut Extensions {
                self.shared
            }

            /// The connection.
            pub fn connection(&self) -> &ConnectionInfo {
                self.conn
            }
        }
    };
}

connection_accessors!(FrameContext);
connection_accessors!(HandshakeContext);
connection_accessors!(CloseContext);
connection_accessors!(FailureContext);

/// The in-flight frame of [`FrameContext`].
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    pub(crate) kind: FrameType,
    pub(crate) data: Bytes,
    pub(crate) status: Option<u16>,
    pub(crate) verdict: Verdict,
}

/// The frame phase: one message or control frame in flight, in one
/// direction (Kong's `kong.websocket.client.*` or `kong.websocket.upstream.*`).
pub struct FrameContext<'a> {
    pub(crate) direction: Direction,
    pub(crate) frame: &'a mut InFlight,
    pub(crate) state: &'a mut Option<State>,
    pub(crate) shared: &'a mut Extensions,
    pub(crate) conn: &'a ConnectionInfo,
    pub(crate) waiting: &'a mut Option<FrameWaiting>,
}

/// What a frame plugin does once the wait it asked for is over
/// ([`FrameContext::wait`]): it runs again with the frame's context.
pub type FrameResume =
    Box<dyn for<'c> FnOnce(&mut FrameContext<'c>) -> Result<(), PluginError> + Send>;

/// A wait a frame plugin asked for: the future whose [`FrameResume`]
/// finishes its phase.
pub type FrameWaiting = Pin<Box<dyn Future<Output = FrameResume> + Send>>;

impl FrameContext<'_> {
    /// Holds this frame until `until` is ready, then runs the
    /// [`FrameResume`] it gives with the context back, and then the
    /// plugins after this one. While it waits, the connection relays
    /// nothing else in either direction (messages keep their order), so a
    /// wait costs every message of the connection its latency: use it for
    /// what must be decided elsewhere before a message may pass (an exact
    /// count in a shared store), not for what can be learnt in the
    /// background.
    ///
    /// ```
    /// use frameway_gateway::plugin::{FrameContext, FrameResume, Plugin, PluginError};
    ///
    /// struct AskFirst;
    /// impl Plugin for AskFirst {
    ///     fn name(&self) -> &str { "ask-first" }
    ///     fn client_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
    ///         ctx.wait(async {
    ///             let allowed = false; // e.g. a reply from a store
    ///             Box::new(move |ctx: &mut FrameContext<'_>| {
    ///                 if !allowed {
    ///                     ctx.drop_frame()?;
    ///                 }
    ///                 Ok(())
    ///             }) as FrameResume
    ///         });
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn wait<F>(&mut self, until: F)
    where
        F: Future<Output = FrameResume> + Send + 'static,
    {
        *self.waiting = Some(Box::pin(until));
    }

    /// Where the frame came from.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The payload, the type and (for close frames) the status code.
    pub fn get_frame(&self) -> (&[u8], FrameType, Option<u16>) {
        (&self.frame.data, self.frame.kind, self.frame.status)
    }

    /// Replaces the payload (a close frame's message, for close frames).
    /// Handlers after this one see the new payload. What the peer would
    /// refuse is an error here, where it names the plugin: text that is not
    /// UTF-8, a close message over 123 bytes, a ping or pong over 125.
    pub fn set_frame_data(&mut self, data: impl Into<Bytes>) -> Result<(), PdkError> {
        let data = data.into();
        checked_payload(self.frame.kind, &data)?;
        self.frame.data = data;
        Ok(())
    }

    /// Replaces a close frame's status code; an error for other frames or a
    /// code that may not be sent.
    pub fn set_status(&mut self, status: u16) -> Result<(), PdkError> {
        self.frame.status = Some(checked_status(self.frame.kind, status)?);
        Ok(())
    }

    /// Drops the frame; later handlers are skipped. Close frames cannot be
    /// dropped.
    pub fn drop_frame(&mut self) -> Result<(), PdkError> {
        self.frame.verdict = drop_verdict(self.frame.kind)?;
        Ok(())
    }

    /// Closes the connection: `status`/`message` go to the side this frame
    /// came from, `peer_status`/`peer_payload` to the other side (each
    /// status defaults to 1000). The frame is not forwarded and later
    /// handlers are skipped.
    pub fn close(
        &mut self,
        status: Option<u16>,
        message: Option<&str>,
        peer_status: Option<u16>,
        peer_payload: Option<&str>,
    ) -> Result<(), PdkError> {
        let (sender, peer) = PlannedClose::pair(status, message, peer_status, peer_payload)?;
        self.frame.verdict = Verdict::Close { sender, peer };
        Ok(())
    }

    /// Forwards the frame, then closes both sides as [`Self::close`] does.
    pub fn forward_then_close(
        &mut self,
        status: Option<u16>,
        message: Option<&str>,
        peer_status: Option<u16>,
        peer_payload: Option<&str>,
    ) -> Result<(), PdkError> {
        let (sender, peer) = PlannedClose::pair(status, message, peer_status, peer_payload)?;
        self.frame.verdict = Verdict::ForwardThenClose { sender, peer };
        Ok(())
    }
}

/// `status` as the new status of a `kind` frame: only close frames have
/// one, and only a code that may be sent. The rule of `set_status`, native
/// and Lua.
pub(crate) fn checked_status(kind: FrameType, status: u16) -> Result<u16, PdkError> {
    if kind != FrameType::Close {
        return Err(PdkError::StatusOnNonClose(kind.as_str()));
    }
    CloseCode::new(status).ok_or(PdkError::InvalidStatus(status))?;
    Ok(status)
}

/// A header a plugin may put on the client's answer. Native and Lua.
pub(crate) fn checked_response_header(
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), PdkError> {
    const UPGRADE: [&str; 7] = [
        "connection",
        "upgrade",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "content-length",
        "transfer-encoding",
    ];
    let name = HeaderName::try_from(name).map_err(|_| PdkError::InvalidHeader(name.to_owned()))?;
    if UPGRADE.contains(&name.as_str()) {
        return Err(PdkError::UpgradeHeader(name.as_str().to_owned()));
    }
    let value =
        HeaderValue::try_from(value).map_err(|_| PdkError::InvalidHeader(value.to_owned()))?;
    Ok((name, value))
}

/// Whether a frame of `kind` can carry `data`. Native and Lua.
pub(crate) fn checked_payload(kind: FrameType, data: &[u8]) -> Result<(), PdkError> {
    let utf8 = || std::str::from_utf8(data).is_ok();
    match kind {
        FrameType::Text if !utf8() => Err(PdkError::NotUtf8("text")),
        FrameType::Close if !utf8() => Err(PdkError::NotUtf8("a close message")),
        FrameType::Close if data.len() > frameway_wire::MAX_CLOSE_REASON => {
            Err(PdkError::MessageTooLong(data.len()))
        }
        FrameType::Ping | FrameType::Pong if data.len() > 125 => Err(PdkError::ControlTooLong {
            kind: kind.as_str(),
            len: data.len(),
        }),
        _ => Ok(()),
    }
}

/// The verdict of `drop_frame` on a `kind` frame: close frames cannot be
/// dropped (the closing handshake must go through). Native and Lua.
pub(crate) fn drop_verdict(kind: FrameType) -> Result<Verdict, PdkError> {
    if kind == FrameType::Close {
        return Err(PdkError::DropClose);
    }
    Ok(Verdict::Drop)
}

/// A handshake answered by a plugin instead of the upstream.
#[derive(Debug, Clone)]
pub struct Exit {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
    /// Extra headers.
    pub headers: HeaderMap,
}

/// Payload limits a handshake set; `None` keeps the route's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LimitOverrides {
    pub(crate) client: Option<u64>,
    pub(crate) upstream: Option<u64>,
}

/// Where a handshake plugin sends the connection instead of its service's
/// own upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reroute {
    /// One host and port (`kong.service.set_target`), with the service's
    /// scheme and path.
    Target {
        /// A host name or IP address.
        host: String,
        /// The port.
        port: u16,
    },
    /// A configured upstream, balanced over its targets
    /// (`kong.service.set_upstream`).
    Upstream(String),
}

/// The handshake phase: the client's request, before the upstream is
/// contacted.
pub struct HandshakeContext<'a> {
    pub(crate) request: &'a Request<()>,
    pub(crate) upstream_headers: &'a mut HeaderMap,
    /// Headers for the client's answer (the 101, or an exit's).
    pub(crate) response_headers: &'a mut HeaderMap,
    /// Path and query requested from the upstream.
    pub(crate) upstream_target: &'a mut String,
    pub(crate) exit: &'a mut Option<Exit>,
    pub(crate) limits: &'a mut LimitOverrides,
    pub(crate) state: &'a mut Option<State>,
    pub(crate) shared: &'a mut Extensions,
    pub(crate) conn: &'a ConnectionInfo,
    pub(crate) consumers: &'a Consumers,
    pub(crate) authenticated: &'a mut Option<Arc<Authenticated>>,
    pub(crate) waiting: &'a mut Option<Waiting>,
    pub(crate) reroute: &'a mut Option<Reroute>,
    pub(crate) upstreams: &'a [Arc<Pool>],
}

/// What a handshake plugin does once the wait it asked for is over
/// ([`HandshakeContext::wait`]): it runs again with the handshake's
/// context, as if its phase had gone on.
pub type Resume =
    Box<dyn for<'c> FnOnce(&mut HandshakeContext<'c>) -> Result<(), PluginError> + Send>;

/// A wait a handshake plugin asked for: the future whose [`Resume`]
/// finishes its phase.
pub type Waiting = Pin<Box<dyn Future<Output = Resume> + Send>>;

impl HandshakeContext<'_> {
    /// Ends this plugin's handshake phase for now: the gateway awaits
    /// `until` (a question to a store across the network, such as a
    /// cluster-wide connection count), then runs the [`Resume`] it gives
    /// with the context back, and only then the plugins after this one.
    /// (A frame phase can wait too, [`FrameContext::wait`], at the cost of
    /// holding its connection's messages meanwhile.)
    ///
    /// The future bounds its own time (a timeout around the network call);
    /// the handshake does not go on without its answer.
    ///
    /// ```
    /// use frameway_gateway::plugin::{HandshakeContext, Plugin, PluginError, Resume};
    ///
    /// struct Slow;
    /// impl Plugin for Slow {
    ///     fn name(&self) -> &str { "slow" }
    ///     fn handshake(&self, ctx: &mut HandshakeContext<'_>) -> Result<(), PluginError> {
    ///         ctx.wait(async {
    ///             let answer = "yes"; // e.g. a reply from a store
    ///             Box::new(move |ctx: &mut HandshakeContext<'_>| {
    ///                 ctx.set_upstream_header("x-answer", answer)?;
    ///                 Ok(())
    ///             }) as Resume
    ///         });
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn wait<F>(&mut self, until: F)
    where
        F: Future<Output = Resume> + Send + 'static,
    {
        *self.waiting = Some(Box::pin(until));
    }

    /// The key-auth credential whose key is `key`, among the configured
    /// consumers'.
    pub fn credential_by_key(&self, key: &[u8]) -> Option<&Arc<Credential>> {
        self.consumers.by_key(key)
    }

    /// Records that the client is `credential`'s consumer
    /// (`kong.client.authenticate`): plugins after this one, limits keyed
    /// by consumer or credential, and the frame and close phases see it.
    pub fn authenticate(&mut self, credential: &Arc<Credential>) {
        *self.authenticated = Some(Arc::new(Authenticated {
            consumer: credential.consumer.clone(),
            credential: Some(credential.clone()),
        }));
    }

    /// The configured consumer whose id or username is `name`.
    pub fn find_consumer(&self, name: &str) -> Option<&Arc<Consumer>> {
        self.consumers.find(name)
    }

    /// Records that the client, which presented no valid credential, is
    /// served as `consumer` (Kong's `anonymous`).
    pub fn authenticate_anonymous(&mut self, consumer: &Arc<Consumer>) {
        *self.authenticated = Some(Arc::new(Authenticated {
            consumer: consumer.clone(),
            credential: None,
        }));
    }

    /// Who the client is, if a plugin before this one authenticated it
    /// (`kong.client.get_consumer`, `kong.client.get_credential`).
    pub fn consumer(&self) -> Option<&Arc<Authenticated>> {
        self.authenticated.as_ref()
    }

    /// The request method (`kong.request.get_method`).
    pub fn method(&self) -> &str {
        self.request.method().as_str()
    }

    /// The request path (`kong.request.get_path`).
    pub fn path(&self) -> &str {
        self.request.uri().path()
    }

    /// The raw query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.request.uri().query()
    }

    /// The first value of a query argument, percent-decoded
    /// (`kong.request.get_query_arg`).
    pub fn query_arg(&self, name: &str) -> Option<String> {
        self.query_args(name).into_iter().next()
    }

    /// Every value of a query argument, percent-decoded, in request order
    /// (what `kong.request.get_query` gives for a repeated argument).
    pub fn query_args(&self, name: &str) -> Vec<String> {
        self.query()
            .map_or_else(Vec::new, |query| super::query::values(query, name))
    }

    /// The first value of a request header (`kong.request.get_header`):
    /// the name ignores case and `_` stands for `-`, as in Kong.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = super::query::header_name(name);
        self.request.headers().get(name)?.to_str().ok()
    }

    /// All request headers (`kong.request.get_headers`).
    pub fn headers(&self) -> &HeaderMap {
        self.request.headers()
    }

    /// The client's IP address (`kong.client.get_ip`).
    pub fn client_ip(&self) -> std::net::IpAddr {
        self.conn.client_addr.ip()
    }

    /// Sets a header on the request to the upstream
    /// (`kong.service.request.set_header`).
    pub fn set_upstream_header(&mut self, name: &str, value: &str) -> Result<(), PdkError> {
        let name =
            HeaderName::try_from(name).map_err(|_| PdkError::InvalidHeader(name.to_owned()))?;
        let value =
            HeaderValue::try_from(value).map_err(|_| PdkError::InvalidHeader(value.to_owned()))?;
        self.upstream_headers.insert(name, value);
        Ok(())
    }

    /// Removes a header from the request to the upstream
    /// (`kong.service.request.clear_header`).
    pub fn clear_upstream_header(&mut self, name: &str) {
        self.upstream_headers.remove(name);
    }

    /// Sets a header on the client's answer: the 101 that accepts the
    /// upgrade, or an [`exit`](Self::exit)'s response
    /// (`kong.response.set_header`). The upgrade's own headers cannot be
    /// set ([`PdkError::UpgradeHeader`]).
    pub fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), PdkError> {
        let (name, value) = checked_response_header(name, value)?;
        self.response_headers.insert(name, value);
        Ok(())
    }

    /// Adds a header to the client's answer, keeping those of the same name
    /// (`kong.response.add_header`).
    pub fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), PdkError> {
        let (name, value) = checked_response_header(name, value)?;
        self.response_headers.append(name, value);
        Ok(())
    }

    /// Removes a header a plugin set on the client's answer
    /// (`kong.response.clear_header`).
    pub fn clear_response_header(&mut self, name: &str) {
        self.response_headers.remove(name);
    }

    /// Removes every occurrence of a query argument from the request to the
    /// upstream (`kong.service.request.clear_query_arg`); the client's
    /// request, as [`Self::query`] shows it, is unchanged.
    pub fn clear_upstream_query_arg(&mut self, name: &str) {
        *self.upstream_target = super::query::without_arg(self.upstream_target, name);
    }

    /// Answers the handshake with `status` and `body` instead of proxying
    /// (`kong.response.exit`); later handlers are skipped.
    pub fn exit(&mut self, status: StatusCode, body: impl Into<Bytes>, headers: HeaderMap) {
        *self.exit = Some(Exit {
            status,
            body: body.into(),
            headers,
        });
    }

    /// Connects to `host:port` instead of the service's upstream, with the
    /// service's scheme, path and settings (`kong.service.set_target`).
    pub fn set_target(&mut self, host: &str, port: u16) -> Result<(), PdkError> {
        let bracketed = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let spec = format!("{bracketed}:{port}");
        if port == 0 || frameway::client::WsUrl::parse(&format!("ws://{spec}/")).is_err() {
            return Err(PdkError::InvalidTarget(spec));
        }
        *self.reroute = Some(Reroute::Target {
            host: host.to_owned(),
            port,
        });
        Ok(())
    }

    /// Balances the connection over the targets of the upstream `name`
    /// instead of the service's (`kong.service.set_upstream`).
    pub fn set_upstream(&mut self, name: &str) -> Result<(), PdkError> {
        if !self.upstreams.iter().any(|pool| pool.name == name) {
            return Err(PdkError::UnknownUpstream(name.to_owned()));
        }
        *self.reroute = Some(Reroute::Upstream(name.to_owned()));
        Ok(())
    }

    /// The names of the configured upstreams.
    pub fn upstream_names(&self) -> impl Iterator<Item = &str> {
        self.upstreams.iter().map(|pool| pool.name.as_str())
    }

    /// The largest message accepted from `side` (its leg's
    /// `max_message_len`; Kong's `kong.websocket.client.set_max_payload_size`
    /// and `kong.websocket.upstream.set_max_payload_size`); 0 restores the
    /// default (`client_max_payload` or `upstream_max_payload`).
    pub fn set_max_message_len(&mut self, side: Direction, len: u64) {
        let len = (len != 0).then_some(len);
        match side {
            Direction::Client => self.limits.client = len,
            Direction::Upstream => self.limits.upstream = len,
        }
    }
}

/// Per-direction counters of a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages (and control frames) received from this side.
    pub messages: u64,
    /// Payload bytes received from this side.
    pub bytes: u64,
}

/// The close phase: how the connection ended.
pub struct CloseContext<'a> {
    pub(crate) state: &'a mut Option<State>,
    pub(crate) shared: &'a mut Extensions,
    pub(crate) conn: &'a ConnectionInfo,
    /// The close status the client sent, if it sent one.
    pub client_status: Option<u16>,
    /// The close status the upstream sent, if it sent one.
    pub upstream_status: Option<u16>,
    /// Traffic from the client.
    pub client: Traffic,
    /// Traffic from the upstream.
    pub upstream: Traffic,
}

/// What failed, as [`Plugin::failed`](super::Plugin::failed) sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum ProxyFailure<'a> {
    /// No upstream connection could be opened (Pingora's
    /// `fail_to_connect`): every target tried failed, none was healthy, or
    /// the upstream refused the upgrade. The client was answered `status`
    /// (502, 503, 504, or the upstream's own answer).
    Connect {
        /// The status the client was answered.
        status: StatusCode,
        /// Why, as the gateway logged it.
        reason: &'a str,
    },
    /// A plugin returned an error (Pingora's `error_while_proxy`). In the
    /// handshake the client is answered 500; on a frame the connection
    /// closes with 1011 on both sides.
    Plugin(&'a ChainError),
}

/// The failure phase: something went wrong, and what happens next is
/// already decided. For logging, counting and cleaning up per-connection
/// state; the close phase follows only if the connection was proxying.
pub struct FailureContext<'a> {
    pub(crate) state: &'a mut Option<State>,
    pub(crate) shared: &'a mut Extensions,
    pub(crate) conn: &'a ConnectionInfo,
    /// What failed.
    pub failure: ProxyFailure<'a>,
}

impl CloseContext<'_> {
    /// How long the connection lasted.
    pub fn duration(&self) -> Duration {
        self.conn.started.elapsed()
    }
}
