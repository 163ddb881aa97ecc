//! The relay between a connection's two legs.
//!
//! [`Relay`] is the sans-IO core: it owns both legs' bookkeeping (indexed by
//! [`Direction`]), the plugin chain with its per-connection states, and the
//! one policy that turns what the plugins decided about a received frame
//! into a [`Step`]: forward it, drop it, or end the connection. The same
//! policy applies while the connection is open and while it is closing, so
//! a plugin error or a `close` verdict means the same thing in both.
//!
//! [`io`] drives it over two [`frameway::WebSocket`]s: reading, queueing,
//! backpressure and the closing handshakes. [`unit`] converts between the
//! library's frames and the unit the relay works on.

mod io;
mod unit;

use std::sync::Arc;

use http::Extensions;

use crate::balancer::Lease;
use crate::metrics::{RouteMetrics, WorkerMetrics};
use crate::plugin::{
    Chain, ChainError, ConnectionInfo, Direction, FrameResume, FrameType, FrameWaiting, InFlight,
    PlannedClose, PluginError, ProxyFailure, State, Traffic, Verdict,
};
use frameway::{CloseCode, Passed};
pub(crate) use io::run;
pub(crate) use unit::Unit;

/// How a connection ends.
#[derive(Debug)]
pub(crate) enum Ending {
    /// Both sides get a close frame: `sender` to the side the frame came
    /// from, `peer` to the other.
    CloseBoth {
        sender: PlannedClose,
        peer: PlannedClose,
    },
    /// The receiving leg is gone; the sender is told so.
    PeerGone,
    /// The sender's close (with its status) went to the peer; the peer's
    /// answer goes back to the sender.
    SenderClosed(Option<u16>),
}

impl Ending {
    /// The same close, 1011 with `reason`, to both sides.
    fn internal_error(reason: &str) -> Ending {
        let close = planned(CloseCode::INTERNAL_ERROR, reason);
        Ending::CloseBoth {
            sender: close.clone(),
            peer: close,
        }
    }
}

/// What the plugins made of one received unit: a decision, or a wait.
pub(crate) enum Step {
    /// What happens to the unit.
    Decided(Decision),
    /// A plugin holds the frame until `until` is ready: then
    /// [`Relay::resume`] it.
    Wait { held: Held, until: FrameWaiting },
}

/// What to do with one received unit.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Nothing goes out: a plugin dropped it.
    Nothing,
    /// Queue `frame` on the other leg; then end the connection if `then`
    /// says so.
    Forward {
        frame: InFlight,
        fin: bool,
        /// The frame starts a message compressed by its sender, passed on
        /// as it is.
        compressed: bool,
        then: Option<Ending>,
    },
    /// End the connection without forwarding.
    End(Ending),
}

/// A frame a plugin holds while it waits, with where its phase stopped.
pub(crate) struct Held {
    from: Direction,
    frame: InFlight,
    fin: bool,
    compressed: bool,
    plugin: usize,
}

/// Where a relay counts: its route's counters and its worker's.
pub(crate) struct RelayMetrics {
    pub(crate) route: Arc<RouteMetrics>,
    pub(crate) worker: Arc<WorkerMetrics>,
}

impl RelayMetrics {
    /// Counters no scrape reads, for relays outside a gateway (sessions).
    pub(crate) fn detached() -> RelayMetrics {
        RelayMetrics {
            route: Arc::default(),
            worker: Arc::default(),
        }
    }
}

/// One proxied connection's state apart from its sockets.
pub(crate) struct Relay {
    chain: Chain,
    states: Vec<Option<State>>,
    shared: Extensions,
    conn: ConnectionInfo,
    /// What each side sent, indexed by [`Direction::index`].
    traffic: [Traffic; 2],
    /// The close status each side sent (or answered with).
    status: [Option<u16>; 2],
    metrics: RelayMetrics,
    /// The session on a balanced upstream's target, counted open until
    /// the relay is dropped.
    lease: Option<Lease>,
}

impl Relay {
    pub(crate) fn new(
        chain: Chain,
        states: Vec<Option<State>>,
        shared: Extensions,
        conn: ConnectionInfo,
        metrics: RelayMetrics,
    ) -> Relay {
        metrics.route.opened();
        Relay {
            chain,
            states,
            shared,
            conn,
            traffic: [Traffic::default(); 2],
            status: [None; 2],
            metrics,
            lease: None,
        }
    }

    /// The relay holds `lease` (the connection's session on its target)
    /// for the connection's life.
    pub(crate) fn holding(mut self, lease: Option<Lease>) -> Relay {
        self.lease = lease;
        self
    }

    /// Whether fragmented messages are aggregated before the plugins see
    /// them: only when some plugin has frame phases.
    pub(crate) fn aggregates(&self) -> bool {
        self.chain.handles_frames()
    }

    pub(crate) fn conn(&self) -> &ConnectionInfo {
        &self.conn
    }

    /// Runs the frame phase on a unit received from `from` and decides,
    /// under the one policy for open and closing connections, what happens
    /// to it. No IO, no `await`: the path of every message.
    pub(crate) fn receive(&mut self, from: Direction, unit: Unit) -> Step {
        let (fin, compressed) = (unit.fin, unit.compressed);
        let frame = self.admit(from, unit);
        self.run(from, frame, fin, compressed, None)
    }

    /// Finishes the frame phase of a frame a plugin held
    /// ([`Step::Wait`]) with what it waited for, then decides as
    /// [`Relay::receive`] does.
    pub(crate) fn resume(&mut self, held: Held, then: FrameResume) -> Step {
        let Held {
            from,
            frame,
            fin,
            compressed,
            plugin,
        } = held;
        self.run(from, frame, fin, compressed, Some((plugin, then)))
    }

    fn run(
        &mut self,
        from: Direction,
        mut frame: InFlight,
        fin: bool,
        compressed: bool,
        resume: Option<(usize, FrameResume)>,
    ) -> Step {
        match self.plugins(from, &mut frame, resume) {
            Ok(None) => {}
            Ok(Some((plugin, until))) => {
                let held = Held {
                    from,
                    frame,
                    fin,
                    compressed,
                    plugin,
                };
                return Step::Wait { held, until };
            }
            Err(err) => {
                tracing::error!(connection = self.conn.id, plugin = %err.plugin, "plugin failed: {}", err.error);
                self.metrics.worker.plugin_error(&err.plugin, &err.error);
                let failure = ProxyFailure::Plugin(&err);
                self.chain
                    .run_failed(&mut self.states, &mut self.shared, &self.conn, failure);
                return Step::Decided(Decision::End(Ending::internal_error("plugin error")));
            }
        }
        let then = match std::mem::take(&mut frame.verdict) {
            Verdict::Drop => {
                self.metrics.route.dropped(from);
                return Step::Decided(Decision::Nothing);
            }
            Verdict::Close { sender, peer } => {
                return Step::Decided(Decision::End(Ending::CloseBoth { sender, peer }))
            }
            Verdict::ForwardThenClose { sender, peer } => Some(Ending::CloseBoth { sender, peer }),
            Verdict::Forward if frame.kind == FrameType::Close => {
                Some(Ending::SenderClosed(frame.status))
            }
            Verdict::Forward => None,
        };
        Step::Decided(Decision::Forward {
            frame,
            fin,
            compressed,
            then,
        })
    }

    /// Counts a unit from `from` and runs the plugins' frame phase on it:
    /// the frame as they left it, with their verdict (for a
    /// [`Session`](crate::plugin::Session), which cannot wait: a plugin
    /// that asks to is an error there).
    pub(crate) fn frame_phase(
        &mut self,
        from: Direction,
        unit: Unit,
    ) -> Result<InFlight, ChainError> {
        let mut frame = self.admit(from, unit);
        match self.plugins(from, &mut frame, None)? {
            None => Ok(frame),
            Some((plugin, _)) => Err(ChainError {
                plugin: self.chain.name_at(plugin).to_owned(),
                error: PluginError::new(
                    "the plugin waits (FrameContext::wait), which a Session cannot do: \
                     test it through a gateway",
                ),
            }),
        }
    }

    /// Counts a unit received from `from`: the frame in flight.
    fn admit(&mut self, from: Direction, unit: Unit) -> InFlight {
        self.count(from, &unit);
        InFlight {
            kind: unit.kind,
            data: unit.data,
            status: unit.status,
            verdict: Verdict::Forward,
        }
    }

    fn plugins(
        &mut self,
        from: Direction,
        frame: &mut InFlight,
        resume: Option<(usize, FrameResume)>,
    ) -> Result<Option<(usize, FrameWaiting)>, ChainError> {
        if !self.chain.handles_frames() {
            return Ok(None);
        }
        self.chain.run_frame(
            from,
            frame,
            &mut self.states,
            &mut self.shared,
            &self.conn,
            resume,
        )
    }

    /// The close frame that answers a close the gateway already sent to
    /// `from`: counted and recorded, and returned as the close to pass on.
    /// It is the end of a closing handshake, not a frame in flight, so the
    /// plugins do not see it (they saw the close it answers).
    pub(crate) fn close_answer(&mut self, from: Direction, unit: Unit) -> Option<PlannedClose> {
        self.count(from, &unit);
        let reason = String::from_utf8_lossy(&unit.data);
        let code = unit.status.and_then(CloseCode::new)?;
        Some(planned(code, &reason))
    }

    /// Counts a unit received from `from`, and records its status if it is
    /// that side's close.
    fn count(&mut self, from: Direction, unit: &Unit) {
        self.tally(from, unit.kind, 1, unit.data.len() as u64);
        if unit.kind == FrameType::Close {
            self.replied(from, unit.status);
        }
    }

    /// Counts the data frames the IO driver passed from `from` straight to
    /// the other leg (`WebSocket::poll_relay`): on a route without frame
    /// phases nothing else happens to them. Added to the route's shared
    /// counters once per pass: a pushing upstream sends thousands of frames
    /// per read, and two atomic additions a frame would cost more than the
    /// lane's own work on a 20 B frame.
    pub(crate) fn passed(&mut self, from: Direction, passed: &Passed) {
        for (opcode, frames, bytes) in passed.iter() {
            self.tally(from, FrameType::from(opcode), frames, bytes);
        }
    }

    fn tally(&mut self, from: Direction, kind: FrameType, messages: u64, bytes: u64) {
        let traffic = &mut self.traffic[from.index()];
        traffic.messages += messages;
        traffic.bytes += bytes;
        self.metrics.route.received(from, kind, messages, bytes);
    }

    /// A frame the plugins produced cannot be sent (a payload that is not
    /// UTF-8 in a text frame, an oversize control frame): the gateway's
    /// error, 1011 to both sides.
    pub(crate) fn unforwardable(&self, kind: FrameType, why: &str) -> Ending {
        tracing::error!(
            connection = self.conn.id,
            "cannot forward a {} frame: {why}",
            kind.as_str()
        );
        Ending::internal_error("gateway error")
    }

    /// Records the close status `side` answered with, unless it already
    /// sent one of its own.
    pub(crate) fn replied(&mut self, from: Direction, status: Option<u16>) {
        let slot = &mut self.status[from.index()];
        if slot.is_none() {
            *slot = status;
        }
    }

    /// The connection has ended: writes its access-log line and runs the
    /// plugins' close phase.
    pub(crate) fn finish(self) {
        let [client, upstream] = self.traffic;
        let [client_status, upstream_status] = self.status;
        let conn = &self.conn;
        // The access log: one line per finished connection, under a target
        // of its own so that it can be routed or filtered apart. No path
        // or query: tokens travel there.
        tracing::info!(
            target: "frameway::access",
            connection = conn.id,
            route = %conn.route,
            service = %conn.service,
            client_ip = %conn.client_addr.ip(),
            upstream = self.lease.as_ref().map(|l| tracing::field::display(l.target().addr)),
            status = 101,
            duration_ms = conn.started.elapsed().as_millis() as u64,
            client_messages = client.messages,
            client_bytes = client.bytes,
            upstream_messages = upstream.messages,
            upstream_bytes = upstream.bytes,
            client_close = client_status,
            upstream_close = upstream_status,
            "connection closed"
        );
        self.close_phase();
    }

    /// Runs the plugins' close phase with what each side sent last, and
    /// drops the connection's plugin states.
    pub(crate) fn close_phase(mut self) {
        let [client, upstream] = self.traffic;
        let [client_status, upstream_status] = self.status;
        let duration = self.conn.started.elapsed();
        self.metrics
            .route
            .closed(duration, client_status, upstream_status);
        self.chain.run_close(
            &mut self.states,
            &mut self.shared,
            &self.conn,
            client_status,
            upstream_status,
            client,
            upstream,
        );
    }
}

/// A close with `message` cut to what a close frame can carry.
pub(crate) fn planned(code: CloseCode, message: &str) -> PlannedClose {
    PlannedClose {
        status: code,
        message: frameway::wire::truncate_reason(message).to_owned(),
    }
}
