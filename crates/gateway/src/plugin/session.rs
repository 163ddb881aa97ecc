//! Running a chain's frame and close phases on in-memory frames, without
//! sockets: how plugins are unit-tested and benchmarked. A session drives
//! the gateway's own [`Relay`], so what it shows is what the gateway does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::Extensions;

use super::chain::{Chain, ChainError};
use super::pdk::{ConnectionInfo, Direction, FrameType, Verdict};
use crate::relay::{Relay, RelayMetrics, Unit};

/// Ids of sessions: from the top half of the range, so that they never
/// meet the proxy's (counted from 1) in per-connection data.
static NEXT_ID: AtomicU64 = AtomicU64::new(1 << 63);

/// What the chain made of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameOutcome {
    /// The payload to forward (changed or not).
    pub data: Bytes,
    /// The close status to forward, for close frames.
    pub status: Option<u16>,
    /// Forward, drop or close.
    pub verdict: Verdict,
}

/// One connection's plugin states, driven by hand: each [`Session::frame`]
/// runs the chain as the proxy would on a message it received.
///
/// ```
/// use std::sync::Arc;
/// use frameway_gateway::plugin::{
///     Chain, Direction, FrameContext, FrameType, Plugin, PluginError, Session, Verdict,
/// };
///
/// struct DropPings;
/// impl Plugin for DropPings {
///     fn name(&self) -> &str { "drop-pings" }
///     fn client_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
///         if ctx.get_frame().1 == FrameType::Ping {
///             ctx.drop_frame()?;
///         }
///         Ok(())
///     }
/// }
///
/// let mut session = Session::new(Chain::new(vec![Arc::new(DropPings)]));
/// let ping = session.frame(Direction::Client, FrameType::Ping, "hi".into(), None).unwrap();
/// assert_eq!(ping.verdict, Verdict::Drop);
/// let text = session.frame(Direction::Client, FrameType::Text, "hi".into(), None).unwrap();
/// assert_eq!(text.verdict, Verdict::Forward);
/// ```
pub struct Session {
    relay: Relay,
}

impl Session {
    /// A new connection on `chain`, with a fresh id, from 127.0.0.1.
    pub fn new(chain: Chain) -> Session {
        let client_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        Session::with_connection(
            chain,
            ConnectionInfo {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                client_addr,
                route: String::new(),
                service: String::new(),
                started: Instant::now(),
                consumer: None,
            },
        )
    }

    /// A connection described by `conn`.
    pub fn with_connection(chain: Chain, conn: ConnectionInfo) -> Session {
        let states = chain.new_states();
        Session {
            relay: Relay::new(
                chain,
                states,
                Extensions::new(),
                conn,
                RelayMetrics::detached(),
            ),
        }
    }

    /// Runs the frame handlers on one message (or control frame) from
    /// `direction`, as the gateway's relay does.
    pub fn frame(
        &mut self,
        direction: Direction,
        kind: FrameType,
        data: Bytes,
        status: Option<u16>,
    ) -> Result<FrameOutcome, ChainError> {
        let unit = Unit {
            kind,
            fin: true,
            data,
            status,
            compressed: false,
        };
        let frame = self.relay.frame_phase(direction, unit)?;
        Ok(FrameOutcome {
            data: frame.data,
            status: frame.status,
            verdict: frame.verdict,
        })
    }

    /// Runs the close phase with the statuses each side sent (where no
    /// close frame went through [`Session::frame`]), and drops the
    /// connection's plugin states.
    pub fn close(mut self, client_status: Option<u16>, upstream_status: Option<u16>) {
        self.relay.replied(Direction::Client, client_status);
        self.relay.replied(Direction::Upstream, upstream_status);
        self.relay.close_phase();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::plugin::{FrameContext, Plugin, PluginError};

    /// Implements a frame phase and nothing else: no `handles_frames`.
    struct DropsText;

    impl Plugin for DropsText {
        fn name(&self) -> &str {
            "drops-text"
        }
        fn client_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
            ctx.drop_frame()?;
            Ok(())
        }
    }

    #[test]
    fn a_plugin_with_a_frame_phase_runs_even_without_saying_it_handles_frames() {
        let chain = Chain::new(vec![Arc::new(DropsText)]);
        assert!(chain.handles_frames());
        let mut session = Session::new(chain);
        let outcome = session
            .frame(Direction::Client, FrameType::Text, "hi".into(), None)
            .unwrap();
        assert_eq!(outcome.verdict, Verdict::Drop);
    }
}
