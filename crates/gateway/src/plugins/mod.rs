//! The built-in plugins, under Kong's names where Kong has one.
//!
//! | name | priority | phases |
//! | --- | --- | --- |
//! | [`websocket-size-limit`](SizeLimit) | 999999 | handshake |
//! | [`key-auth`](KeyAuth) | 1250 | handshake |
//! | [`websocket-validator`](Validator) | 999 | client and upstream frames |
//! | [`ip-restriction`](IpRestriction) | 990 | handshake |
//! | [`websocket-connection-limit`](ConnectionLimit) | 915 | handshake |
//! | [`websocket-rate-limit`](RateLimit) | 910 | handshake, client and upstream frames |
//! | [`rate-limiting`](RateLimiting) | 910 | handshake (connections per window) |
//! | [`http-log`](KongLog) | 12 | handshake, close |
//! | [`file-log`](KongLog) | 9 | handshake, close |
//! | [`tcp-log`](KongLog) | 7 | handshake, close |
//! | [`websocket-log`](Log) | 5 | handshake, frames, close |
//!
//! Each takes its `config` table as a typed structure; unknown keys and
//! values out of range are configuration errors, reported with their place
//! in the file before anything starts.

mod connection_limit;
mod ip_restriction;
mod key_auth;
mod kong_log;
mod kong_rate_limiting;
mod log;
mod rate_limit;
mod remote;
mod size_limit;
mod validator;

use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::plugin::{HandshakeContext, Plugin, PluginConfigError, PluginFactory, Registry};

pub use connection_limit::{ConnectionLimit, ConnectionLimitConfig};
pub use ip_restriction::{IpRestriction, IpRestrictionConfig};
pub use key_auth::{KeyAuth, KeyAuthConfig};
pub use kong_log::{FileLogConfig, HttpLogConfig, KongLog, TcpLogConfig};
pub use kong_rate_limiting::{KongLimitBy, KongPolicy, RateLimiting, RateLimitingConfig};
pub use log::{Log, LogConfig};
pub use rate_limit::{RateLimit, RateLimitConfig};
pub use size_limit::{SizeLimit, SizeLimitConfig};
pub use validator::{DirectionSchemas, MessageSchema, SchemaDraft, Validator, ValidatorConfig};

/// Registers every built-in plugin.
pub(crate) fn register_builtins(registry: &mut Registry) {
    registry.register(SizeLimit::NAME, factory(SizeLimit::new));
    registry.register(KeyAuth::NAME, factory(KeyAuth::new));
    registry.register(IpRestriction::NAME, factory(IpRestriction::new));
    registry.register(Validator::NAME, factory(Validator::new));
    registry.register(RateLimit::NAME, factory(RateLimit::new));
    registry.register(RateLimiting::NAME, factory(RateLimiting::new));
    registry.register(ConnectionLimit::NAME, factory(ConnectionLimit::new));
    registry.register(Log::NAME, factory(Log::new));
    registry.register(KongLog::FILE, factory(KongLog::file));
    registry.register(KongLog::HTTP, factory(KongLog::http));
    registry.register(KongLog::TCP, factory(KongLog::tcp));
}

/// A factory that deserialises the plugin's typed configuration (unknown
/// keys are errors) and builds it.
fn factory<C, P>(build: fn(C) -> Result<P, PluginConfigError>) -> PluginFactory
where
    C: DeserializeOwned + 'static,
    P: Plugin,
{
    Arc::new(move |value: &serde_json::Value| {
        let config: C =
            serde_json::from_value(value.clone()).map_err(|e| PluginConfigError(e.to_string()))?;
        Ok(Arc::new(build(config)?) as Arc<dyn Plugin>)
    })
}

/// Answers the handshake the way Kong's plugins do: `{"message": "..."}`
/// as JSON, with `headers` added.
fn exit_json(
    ctx: &mut HandshakeContext<'_>,
    status: StatusCode,
    message: &str,
    mut headers: HeaderMap,
) {
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    let mut body = serde_json::json!({ "message": message }).to_string();
    body.push('\n');
    ctx.exit(status, body, headers);
}

/// What a frame plugin does to a message that breaks its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameAction {
    /// Close both sides: the rule's status to the sender, 1001 to the other
    /// side.
    #[default]
    Close,
    /// Drop the message and carry on.
    Drop,
}

/// Drivers for the plugins' unit tests: the phase contexts the gateway
/// builds, without sockets.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Instant;

    use bytes::Bytes;
    use http::{Extensions, HeaderMap, Request};

    use crate::consumer::{Authenticated, Consumers};
    use crate::plugin::{
        Chain, ConnectionInfo, Direction, Exit, FrameType, HandshakeContext, LimitOverrides,
        Plugin, PluginError, Session, State, Verdict,
    };

    pub(crate) fn connection(client_addr: &str) -> ConnectionInfo {
        ConnectionInfo {
            id: 7,
            client_addr: client_addr.parse::<SocketAddr>().unwrap(),
            route: "route".into(),
            service: "svc".into(),
            started: Instant::now(),
            consumer: None,
        }
    }

    /// One handshake: the request, and what the plugin made of it.
    pub(crate) struct HandshakeHarness {
        request: Request<()>,
        pub(crate) upstream_headers: HeaderMap,
        pub(crate) response_headers: HeaderMap,
        pub(crate) upstream_target: String,
        pub(crate) exit: Option<Exit>,
        limits: LimitOverrides,
        pub(crate) state: Option<State>,
        shared: Extensions,
        conn: ConnectionInfo,
        pub(crate) consumers: Consumers,
        pub(crate) authenticated: Option<Arc<Authenticated>>,
    }

    impl HandshakeHarness {
        /// A request for `target` from 127.0.0.1 with `headers` (which are
        /// also the headers toward the upstream, as the gateway forwards
        /// them).
        pub(crate) fn new(target: &str, headers: &[(&str, &str)]) -> Self {
            let mut request = Request::builder().uri(target);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let request = request.body(()).unwrap();
            HandshakeHarness {
                upstream_headers: request.headers().clone(),
                response_headers: HeaderMap::new(),
                upstream_target: target.to_owned(),
                request,
                exit: None,
                limits: LimitOverrides::default(),
                state: None,
                shared: Extensions::new(),
                conn: connection("127.0.0.1:50000"),
                consumers: Consumers::default(),
                authenticated: None,
            }
        }

        /// The same with these consumers configured.
        pub(crate) fn consumers(mut self, consumers: Consumers) -> Self {
            self.consumers = consumers;
            self
        }

        /// The same from another client address.
        pub(crate) fn client_addr(mut self, client_addr: &str) -> Self {
            self.conn = connection(client_addr);
            self
        }

        pub(crate) fn run(&mut self, plugin: &dyn Plugin) {
            self.try_run(plugin).expect("handshake handler");
        }

        /// [`Self::run`], returning the handler's error.
        pub(crate) fn try_run(&mut self, plugin: &dyn Plugin) -> Result<(), PluginError> {
            self.state = plugin.new_state();
            let mut ctx = HandshakeContext {
                request: &self.request,
                upstream_headers: &mut self.upstream_headers,
                response_headers: &mut self.response_headers,
                upstream_target: &mut self.upstream_target,
                exit: &mut self.exit,
                limits: &mut self.limits,
                state: &mut self.state,
                shared: &mut self.shared,
                conn: &self.conn,
                consumers: &self.consumers,
                authenticated: &mut self.authenticated,
                waiting: &mut None,
                reroute: &mut None,
                upstreams: &[],
            };
            plugin.handshake(&mut ctx)
        }
    }

    /// One connection's frames through one plugin, on the gateway's relay
    /// (a [`Session`]), for tests that look at one plugin's verdicts.
    pub(crate) struct FrameHarness {
        session: Session,
    }

    impl FrameHarness {
        pub(crate) fn new(plugin: Arc<dyn Plugin>) -> Self {
            let chain = Chain::new(vec![plugin]);
            FrameHarness {
                session: Session::with_connection(chain, connection("127.0.0.1:50000")),
            }
        }

        /// Runs the frame handler; returns the verdict.
        pub(crate) fn frame(
            &mut self,
            direction: Direction,
            kind: FrameType,
            data: impl Into<Bytes>,
        ) -> Result<Verdict, PluginError> {
            let status = (kind == FrameType::Close).then_some(1000);
            self.session
                .frame(direction, kind, data.into(), status)
                .map(|outcome| outcome.verdict)
                .map_err(|err| err.error)
        }

        /// Runs the close handler with the statuses each side sent.
        pub(crate) fn close(self, client_status: Option<u16>, upstream_status: Option<u16>) {
            self.session.close(client_status, upstream_status);
        }
    }
}
