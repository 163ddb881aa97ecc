//! The plugin API: a trait whose methods are the phases of a proxied
//! connection, in the manner of Pingora's proxy filters and Kong's
//! WebSocket plugins.
//!
//! A plugin sees the opening handshake ([`Plugin::handshake`]), every
//! message from the client ([`Plugin::client_frame`]) and from the upstream
//! ([`Plugin::upstream_frame`]), and the end of the connection
//! ([`Plugin::close`]). Plugins run by priority, higher first, as in Kong;
//! `drop_frame` and `close` stop the handlers after the current one.

mod chain;
mod pdk;
pub mod query;
mod registry;
mod session;

pub use chain::{Chain, ChainError};
pub(crate) use chain::{HandshakeScope, HandshakeStep};
pub(crate) use pdk::{
    checked_payload, checked_response_header, checked_status, drop_verdict, InFlight,
    LimitOverrides,
};
pub use pdk::{
    CloseContext, ConnectionInfo, Direction, Exit, FailureContext, FrameContext, FrameResume,
    FrameType, FrameWaiting, HandshakeContext, PdkError, PlannedClose, ProxyFailure, Reroute,
    Resume, Traffic, Verdict, Waiting,
};
pub use registry::{PluginConfigError, PluginFactory, Registry};
pub use session::{FrameOutcome, Session};

use std::any::Any;

/// A plugin's per-connection state, created by [`Plugin::new_state`].
pub type State = Box<dyn Any + Send>;

/// An error a plugin handler returns: the connection is closed on both
/// sides with 1011 and the error is logged with the plugin's name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin used the PDK in a way it refuses (a bug in the plugin,
    /// not the peer's fault): dropping a close frame, a status outside the
    /// close-code range, a header that is not valid HTTP.
    #[error(transparent)]
    Pdk(#[from] PdkError),
    /// The plugin failed on its own terms ([`PluginError::new`]).
    #[error("{0}")]
    Failed(String),
    /// A Lua handler raised an error, or reached its instruction or memory
    /// budget; the message names the file and line when Lua knows them.
    #[error("{0}")]
    Lua(String),
    /// A Lua handler reached one of its limits (and the state stays
    /// usable); counted apart from other errors in the metrics.
    #[error("{message}")]
    LuaLimit {
        /// Which limit.
        limit: LuaLimit,
        /// Where, for the log.
        message: String,
    },
}

/// The limits a Lua handler can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LuaLimit {
    /// `lua_max_instructions`, per call.
    Instructions,
    /// `lua_max_memory`, per state.
    Memory,
}

impl LuaLimit {
    /// The name used in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LuaLimit::Instructions => "instructions",
            LuaLimit::Memory => "memory",
        }
    }
}

impl PluginError {
    /// The plugin's own failure, with a message for the log.
    pub fn new(message: impl Into<String>) -> Self {
        PluginError::Failed(message.into())
    }
}

/// One plugin instance, configured for a route, a service or globally.
///
/// Every method has a default that does nothing, so a plugin implements only
/// the phases it needs. Plugins without frame handlers say so
/// ([`Plugin::handles_frames`] false) and keep the route on the fast path:
/// frames are forwarded as they come, without aggregation.
///
/// ```
/// use frameway_gateway::plugin::{FrameContext, Plugin, PluginError};
///
/// /// Upper-cases every text message from the client.
/// struct Shout;
///
/// impl Plugin for Shout {
///     fn name(&self) -> &str { "shout" }
///     fn priority(&self) -> i32 { 10 }
///     fn client_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
///         let (data, kind, _) = ctx.get_frame();
///         if kind == frameway_gateway::plugin::FrameType::Text {
///             let upper = String::from_utf8_lossy(data).to_uppercase();
///             ctx.set_frame_data(upper)?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's name, as written in the configuration.
    fn name(&self) -> &str;

    /// Higher runs first.
    fn priority(&self) -> i32 {
        0
    }

    /// Whether [`Plugin::client_frame`] or [`Plugin::upstream_frame`] do
    /// anything. Routes whose plugins all answer false are proxied without
    /// aggregating fragments or copying payloads (the fast path), and their
    /// frame methods are never called.
    ///
    /// True unless a plugin says otherwise: a plugin that implements a frame
    /// phase is run whether or not it remembered this method, and one that
    /// has only handshake or close phases answers false to keep its routes
    /// on the fast path.
    fn handles_frames(&self) -> bool {
        true
    }

    /// Creates the per-connection state this plugin keeps (Kong's
    /// `kong.ctx.plugin`); `None` if it keeps none.
    fn new_state(&self) -> Option<State> {
        None
    }

    /// The opening handshake, before the upstream is contacted: inspect the
    /// request, reject it, set headers toward the upstream, set payload
    /// limits.
    fn handshake(&self, _ctx: &mut HandshakeContext<'_>) -> Result<(), PluginError> {
        Ok(())
    }

    /// A message (or control frame) from the client, before it is
    /// forwarded upstream.
    fn client_frame(&self, _ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        Ok(())
    }

    /// A message (or control frame) from the upstream, before it is
    /// forwarded to the client.
    fn upstream_frame(&self, _ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        Ok(())
    }

    /// The connection ended.
    fn close(&self, _ctx: &mut CloseContext<'_>) {}

    /// Something failed: the upstream could not be reached, or a plugin
    /// (this one or another) returned an error. Every plugin of the chain
    /// hears of it, whether or not its own phases ran, as Pingora's
    /// `fail_to_connect` and `error_while_proxy` do.
    fn failed(&self, _ctx: &mut FailureContext<'_>) {}
}
