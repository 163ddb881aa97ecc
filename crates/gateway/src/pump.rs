//! Moving frames between the two legs of a proxied connection, running the
//! frame plugins on each, and ending both legs together.
//!
//! Routes without frame plugins forward frame by frame as frames arrive
//! (no aggregation); routes with frame plugins aggregate fragmented
//! messages first, so plugins see whole messages, while control frames
//! inside a fragmented message pass at once.
//!
//! Both directions move at once in one task: frames are queued on the
//! receiving leg and written as its socket allows, and a side is read only
//! while the other leg's queue is below [`HIGH_WATER`]. Waiting for one write
//! to finish before reading again would deadlock two peers that each write
//! before they read.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use frameway::{CloseCode, CloseFrame, Error, Frame, Message, OpCode, Utf8Bytes, WebSocket};
use http::Extensions;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep, Instant, Sleep};

use crate::drain::DrainSignal;
use crate::plugin::{
    Chain, ConnectionInfo, Direction, FrameType, InFlight, PlannedClose, State, Traffic, Verdict,
};

/// How long to wait for the other side's close frame once the connection is
/// ending.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Bytes queued toward one leg above which the other leg is not read: the
/// backpressure that bounds a connection's memory when one side is slow.
const HIGH_WATER: usize = 256 * 1024;

/// How a connection ends after a frame.
enum Ending {
    /// Both sides get a close frame: the sender's, then the peer's.
    CloseBoth(PlannedClose, PlannedClose),
    /// The peer is gone; the sender is told so.
    PeerGone,
    /// The sender's close (with its status) went to the peer.
    SenderClosed(Option<u16>),
}

/// What woke the proxy loop.
enum Event {
    /// A unit (or the end) from one side.
    Received(Direction, Option<frameway::Result<Unit>>),
    /// Writing to one side failed: it is gone.
    WriteFailed(Direction),
    /// No traffic for the idle timeout.
    Idle,
    /// The process is draining and this connection's turn to close came.
    GoingAway,
}

/// One unit received from a leg: a whole message, or a frame on the fast path.
struct Unit {
    kind: FrameType,
    fin: bool,
    data: Bytes,
    status: Option<u16>,
}

impl Unit {
    fn from_message(msg: Message) -> Unit {
        let (kind, data, status) = match msg {
            Message::Text(t) => (FrameType::Text, t.into_bytes(), None),
            Message::Binary(b) => (FrameType::Binary, b, None),
            Message::Ping(b) => (FrameType::Ping, b, None),
            Message::Pong(b) => (FrameType::Pong, b, None),
            Message::Close(Some(c)) => (
                FrameType::Close,
                c.reason.into_bytes(),
                Some(c.code.as_u16()),
            ),
            Message::Close(None) => (FrameType::Close, Bytes::new(), None),
        };
        Unit {
            kind,
            fin: true,
            data,
            status,
        }
    }

    fn from_frame(frame: Frame) -> Unit {
        let kind = match frame.opcode {
            OpCode::Text => FrameType::Text,
            OpCode::Binary => FrameType::Binary,
            OpCode::Continuation => FrameType::Continuation,
            OpCode::Ping => FrameType::Ping,
            OpCode::Pong => FrameType::Pong,
            OpCode::Close => {
                // The decoder validated the close payload.
                let (status, data) = match CloseFrame::parse(&frame.payload) {
                    Ok(Some(c)) => (Some(c.code.as_u16()), c.reason.into_bytes()),
                    _ => (None, Bytes::new()),
                };
                return Unit {
                    kind: FrameType::Close,
                    fin: true,
                    data,
                    status,
                };
            }
        };
        Unit {
            kind,
            fin: frame.fin,
            data: frame.payload,
            status: None,
        }
    }
}

/// Why a unit could not be forwarded.
enum Forward {
    /// The receiving leg failed (it is gone).
    PeerGone,
    /// A plugin produced something that cannot be sent.
    Invalid(String),
}

/// Per-connection proxy state.
pub(crate) struct Pump {
    chain: Chain,
    states: Vec<Option<State>>,
    shared: Extensions,
    conn: ConnectionInfo,
    idle_timeout: Option<Duration>,
    client: Traffic,
    upstream: Traffic,
    client_status: Option<u16>,
    upstream_status: Option<u16>,
}

impl Pump {
    pub(crate) fn new(
        chain: Chain,
        states: Vec<Option<State>>,
        shared: Extensions,
        conn: ConnectionInfo,
        idle_timeout: Option<Duration>,
    ) -> Self {
        Pump {
            chain,
            states,
            shared,
            conn,
            idle_timeout,
            client: Traffic::default(),
            upstream: Traffic::default(),
            client_status: None,
            upstream_status: None,
        }
    }

    /// Proxies until either side ends (or `drain` says to go away), then
    /// runs the close phase.
    ///
    /// A plain function returning the future, not an `async fn`, which
    /// would hold the pump and both connections twice (its arguments, and
    /// the copies it moves them into) for the connection's whole life.
    pub(crate) fn run<C, U>(
        self,
        client: WebSocket<C>,
        upstream: WebSocket<U>,
        drain: DrainSignal,
    ) -> impl Future<Output = ()>
    where
        C: AsyncRead + AsyncWrite + Unpin,
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut pump, mut client, mut upstream) = (self, client, upstream);
        let going_away = drain.going_away(pump.conn.id);
        async move {
            pump.proxy(&mut client, &mut upstream, going_away).await;
            pump.close_phase();
        }
    }

    /// Runs the plugins' close phase with what each side sent last.
    fn close_phase(self) {
        let Pump {
            chain,
            mut states,
            mut shared,
            conn,
            client: ct,
            upstream: ut,
            client_status,
            upstream_status,
            ..
        } = self;
        // The access log: one line per finished connection, under a target
        // of its own so that it can be routed or filtered apart. No path
        // or query: tokens travel there.
        tracing::info!(
            target: "frameway::access",
            connection = conn.id,
            route = %conn.route,
            service = %conn.service,
            client_ip = %conn.client_addr.ip(),
            status = 101,
            duration_ms = conn.started.elapsed().as_millis() as u64,
            client_messages = ct.messages,
            client_bytes = ct.bytes,
            upstream_messages = ut.messages,
            upstream_bytes = ut.bytes,
            client_close = client_status,
            upstream_close = upstream_status,
            "connection closed"
        );
        chain.run_close(
            &mut states,
            &mut shared,
            &conn,
            client_status,
            upstream_status,
            ct,
            ut,
        );
    }

    async fn proxy<C, U>(
        &mut self,
        client: &mut WebSocket<C>,
        upstream: &mut WebSocket<U>,
        mut going_away: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) where
        C: AsyncRead + AsyncWrite + Unpin,
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let aggregate = self.chain.handles_frames();
        // Boxed, and only with an idle timeout: a timer is larger than
        // anything else an idle connection's task holds.
        let mut idle = self.idle_timeout.map(|limit| Box::pin(sleep(limit)));
        let mut client_first = true;
        loop {
            let event = poll_fn(|cx| {
                // Alternate which side is read first, so neither starves.
                client_first = !client_first;
                poll_event(
                    cx,
                    client,
                    upstream,
                    aggregate,
                    client_first,
                    idle.as_mut().map(Pin::as_mut),
                    going_away.as_mut(),
                )
            })
            .await;
            let (direction, received) = match event {
                Event::Received(direction, received) => (direction, received),
                ending @ (Event::Idle | Event::GoingAway) => {
                    let reason = match ending {
                        Event::Idle => "idle timeout",
                        _ => "going away",
                    };
                    let close = planned(CloseCode::GOING_AWAY, reason);
                    let replies = Box::pin(close_both(client, upstream, &close, &close)).await;
                    self.replied(Direction::Client, replies.0);
                    self.replied(Direction::Upstream, replies.1);
                    return;
                }
                Event::WriteFailed(gone) => {
                    tracing::debug!(
                        connection = self.conn.id,
                        side = gone.as_str(),
                        "write failed: side gone"
                    );
                    let away = planned(CloseCode::GOING_AWAY, "peer went away");
                    let reply = match gone {
                        Direction::Client => Box::pin(finish(upstream, Some(&away))).await,
                        Direction::Upstream => Box::pin(finish(client, Some(&away))).await,
                    };
                    self.replied(opposite(gone), reply);
                    return;
                }
            };
            if let (Some(limit), Some(idle)) = (self.idle_timeout, idle.as_mut()) {
                idle.as_mut().reset(Instant::now() + limit);
            }
            let unit = match received {
                Some(Ok(unit)) => unit,
                Some(Err(Error::Protocol(err))) => {
                    tracing::info!(
                        connection = self.conn.id,
                        side = direction.as_str(),
                        "protocol violation: {err}"
                    );
                    let owed = planned(err.close_code(), &err.to_string());
                    match direction {
                        Direction::Client => {
                            Box::pin(self.fail_leg(direction, client, upstream, &owed)).await
                        }
                        Direction::Upstream => {
                            Box::pin(self.fail_leg(direction, upstream, client, &owed)).await
                        }
                    }
                    return;
                }
                ended => {
                    // The sender left: the other side goes away.
                    if let Some(Err(err)) = &ended {
                        tracing::debug!(
                            connection = self.conn.id,
                            side = direction.as_str(),
                            "leg ended: {err}"
                        );
                    }
                    let away = planned(CloseCode::GOING_AWAY, "peer went away");
                    let reply = match direction {
                        Direction::Client => Box::pin(finish(upstream, Some(&away))).await,
                        Direction::Upstream => Box::pin(finish(client, Some(&away))).await,
                    };
                    self.replied(opposite(direction), reply);
                    return;
                }
            };
            // The connection's end is boxed: its futures are large, and
            // inline they would make every idle connection's task larger.
            match direction {
                Direction::Client => {
                    if let Some(ending) = self.handle(direction, unit, upstream) {
                        return Box::pin(self.end(direction, ending, client, upstream)).await;
                    }
                }
                Direction::Upstream => {
                    if let Some(ending) = self.handle(direction, unit, client) {
                        return Box::pin(self.end(direction, ending, upstream, client)).await;
                    }
                }
            }
        }
    }

    /// One side broke the protocol. The other side is told 1001 and whatever
    /// it still sends before its close (answers already on their way) is
    /// delivered, through the plugins like any other frame; then the
    /// offender gets the close code its violation calls for.
    async fn fail_leg<S, P>(
        &mut self,
        offender_side: Direction,
        offender: &mut WebSocket<S>,
        peer: &mut WebSocket<P>,
        owed: &PlannedClose,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
        P: AsyncRead + AsyncWrite + Unpin,
    {
        let peer_side = opposite(offender_side);
        let away = CloseFrame::new(CloseCode::GOING_AWAY, "peer went away").ok();
        let peer_reply = match peer.send_close(away).await {
            Ok(()) => self.deliver_until_close(peer_side, peer, offender).await,
            Err(_) => None,
        };
        let offender_reply = finish(offender, Some(owed)).await;
        linger(offender).await;
        self.replied(peer_side, peer_reply.and_then(|c| c.status));
        self.replied(offender_side, offender_reply);
    }

    /// After the other side's close was sent to `from`: delivers what `from`
    /// still sends (answers already on their way), through the plugins like
    /// any other frame, until its close frame, which is returned (`None` if
    /// it never came within the grace period).
    async fn deliver_until_close<F, T>(
        &mut self,
        from_side: Direction,
        from: &mut WebSocket<F>,
        to: &mut WebSocket<T>,
    ) -> Option<Unit>
    where
        F: AsyncRead + AsyncWrite + Unpin,
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let aggregate = self.chain.handles_frames();
        let deliver = async {
            while let Some(Ok(unit)) = next(from, aggregate).await {
                self.count(from_side, &unit);
                if unit.kind == FrameType::Close {
                    return Some(unit);
                }
                let fin = unit.fin;
                let mut frame = InFlight {
                    kind: unit.kind,
                    data: unit.data,
                    status: None,
                    verdict: Verdict::Forward,
                };
                if aggregate {
                    let run = self.chain.run_frame(
                        from_side,
                        &mut frame,
                        &mut self.states,
                        &mut self.shared,
                        &self.conn,
                    );
                    if let Err(err) = run {
                        tracing::error!(connection = self.conn.id, plugin = %err.plugin, "plugin failed: {}", err.error);
                        break;
                    }
                    match frame.verdict {
                        Verdict::Forward | Verdict::ForwardThenClose { .. } => {}
                        Verdict::Drop => continue,
                        Verdict::Close { .. } => break,
                    }
                }
                if forward(to, &mut frame, fin).is_err() || to.flush().await.is_err() {
                    break;
                }
                if matches!(frame.verdict, Verdict::ForwardThenClose { .. }) {
                    break;
                }
            }
            None
        };
        tokio::time::timeout(CLOSE_GRACE, deliver)
            .await
            .ok()
            .flatten()
    }

    /// Counts a unit received from `side`.
    fn count(&mut self, side: Direction, unit: &Unit) {
        let traffic = match side {
            Direction::Client => &mut self.client,
            Direction::Upstream => &mut self.upstream,
        };
        traffic.messages += 1;
        traffic.bytes += unit.data.len() as u64;
    }

    /// Records the close status a side answered with, unless it already
    /// sent one of its own.
    fn replied(&mut self, side: Direction, status: Option<u16>) {
        let slot = match side {
            Direction::Client => &mut self.client_status,
            Direction::Upstream => &mut self.upstream_status,
        };
        if slot.is_none() {
            *slot = status;
        }
    }

    /// Runs the plugins on one unit and forwards it as they decide: the
    /// path of every message, without an `await`. Returns how the
    /// connection ends when it does.
    fn handle<P>(
        &mut self,
        direction: Direction,
        unit: Unit,
        peer: &mut WebSocket<P>,
    ) -> Option<Ending>
    where
        P: AsyncRead + AsyncWrite + Unpin,
    {
        self.count(direction, &unit);
        if unit.kind == FrameType::Close {
            match direction {
                Direction::Client => self.client_status = unit.status,
                Direction::Upstream => self.upstream_status = unit.status,
            }
        }
        let mut frame = InFlight {
            kind: unit.kind,
            data: unit.data,
            status: unit.status,
            verdict: Verdict::Forward,
        };
        if self.chain.handles_frames() {
            if let Err(err) = self.chain.run_frame(
                direction,
                &mut frame,
                &mut self.states,
                &mut self.shared,
                &self.conn,
            ) {
                tracing::error!(connection = self.conn.id, plugin = %err.plugin, "plugin failed: {}", err.error);
                let close = planned(CloseCode::INTERNAL_ERROR, "plugin error");
                return Some(Ending::CloseBoth(close.clone(), close));
            }
        }
        let then_close = match std::mem::take(&mut frame.verdict) {
            Verdict::Drop => return None,
            Verdict::Forward => None,
            Verdict::Close { sender, peer } => return Some(Ending::CloseBoth(sender, peer)),
            Verdict::ForwardThenClose { sender, peer } => Some(Ending::CloseBoth(sender, peer)),
        };
        match forward(peer, &mut frame, unit.fin) {
            Ok(()) => {}
            Err(Forward::PeerGone) => return Some(Ending::PeerGone),
            Err(Forward::Invalid(why)) => {
                tracing::error!(
                    connection = self.conn.id,
                    "cannot forward a {} frame: {why}",
                    frame.kind.as_str()
                );
                let close = planned(CloseCode::INTERNAL_ERROR, "gateway error");
                return Some(Ending::CloseBoth(close.clone(), close));
            }
        }
        if then_close.is_some() {
            return then_close;
        }
        (frame.kind == FrameType::Close).then_some(Ending::SenderClosed(frame.status))
    }

    /// Carries out how the connection ends after a frame from `direction`.
    async fn end<S, P>(
        &mut self,
        direction: Direction,
        ending: Ending,
        sender: &mut WebSocket<S>,
        peer: &mut WebSocket<P>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
        P: AsyncRead + AsyncWrite + Unpin,
    {
        match ending {
            Ending::CloseBoth(to_sender, to_peer) => {
                let replies = close_both(sender, peer, &to_sender, &to_peer).await;
                self.replied_both(direction, replies);
            }
            Ending::PeerGone => {
                let away = planned(CloseCode::GOING_AWAY, "peer went away");
                let reply = finish(sender, Some(&away)).await;
                self.replied(direction, reply);
            }
            Ending::SenderClosed(status) => {
                // The sender is done sending, but the peer may have messages
                // on their way (answers to what the sender sent): they are
                // delivered, then the sender gets the peer's close as the
                // answer to its own, so codes and reasons pass end to end.
                let peer_side = opposite(direction);
                let _ = peer.flush().await;
                let answer = match self.deliver_until_close(peer_side, peer, sender).await {
                    Some(Unit {
                        status: Some(code),
                        data,
                        ..
                    }) => {
                        let reason = String::from_utf8_lossy(&data).into_owned();
                        CloseCode::new(code).map(|code| planned(code, &reason))
                    }
                    _ => None,
                };
                self.replied(peer_side, answer.as_ref().map(|c| c.status.as_u16()));
                let echo = status
                    .and_then(CloseCode::new)
                    .map(|code| planned(code, ""));
                let to_sender = answer
                    .or(echo)
                    .unwrap_or_else(|| planned(CloseCode::NORMAL, ""));
                tokio::join!(finish(sender, Some(&to_sender)), finish(peer, None));
            }
        }
    }

    /// [`Pump::replied`] for the sender of a frame from `direction` and its peer.
    fn replied_both(&mut self, direction: Direction, (sender, peer): (Option<u16>, Option<u16>)) {
        self.replied(direction, sender);
        self.replied(opposite(direction), peer);
    }
}

/// Receives the next unit from a leg.
async fn next<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    aggregate: bool,
) -> Option<frameway::Result<Unit>> {
    poll_fn(|cx| poll_next(ws, cx, aggregate)).await
}

fn poll_next<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    cx: &mut Context<'_>,
    aggregate: bool,
) -> Poll<Option<frameway::Result<Unit>>> {
    if aggregate {
        ws.poll_recv(cx)
            .map(|o| o.map(|r| r.map(Unit::from_message)))
    } else {
        ws.poll_recv_frame(cx)
            .map(|o| o.map(|r| r.map(Unit::from_frame)))
    }
}

/// Moves queued bytes out on both legs, then reads whichever side has
/// something while the other side's queue has room.
fn poll_event<C, U>(
    cx: &mut Context<'_>,
    client: &mut WebSocket<C>,
    upstream: &mut WebSocket<U>,
    aggregate: bool,
    client_first: bool,
    idle: Option<Pin<&mut Sleep>>,
    going_away: Pin<&mut (dyn Future<Output = ()> + Send)>,
) -> Poll<Event>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    if client.queued_len() > 0 && matches!(client.poll_flush_queued(cx), Poll::Ready(Err(_))) {
        return Poll::Ready(Event::WriteFailed(Direction::Client));
    }
    if upstream.queued_len() > 0 && matches!(upstream.poll_flush_queued(cx), Poll::Ready(Err(_))) {
        return Poll::Ready(Event::WriteFailed(Direction::Upstream));
    }
    let order = if client_first {
        [Direction::Client, Direction::Upstream]
    } else {
        [Direction::Upstream, Direction::Client]
    };
    for side in order {
        let polled = match side {
            Direction::Client if upstream.queued_len() < HIGH_WATER => {
                poll_next(client, cx, aggregate)
            }
            Direction::Upstream if client.queued_len() < HIGH_WATER => {
                poll_next(upstream, cx, aggregate)
            }
            _ => continue,
        };
        if let Poll::Ready(received) = polled {
            return Poll::Ready(Event::Received(side, received));
        }
    }
    if idle.is_some_and(|idle| idle.poll(cx).is_ready()) {
        return Poll::Ready(Event::Idle);
    }
    if going_away.poll(cx).is_ready() {
        return Poll::Ready(Event::GoingAway);
    }
    Poll::Pending
}

/// Queues the (possibly changed) frame on the other leg; the proxy loop
/// writes it out. The payload moves out of `frame`: a clone of a payload
/// copied out of the read buffer would allocate its shared header.
fn forward<P: AsyncRead + AsyncWrite + Unpin>(
    peer: &mut WebSocket<P>,
    frame: &mut InFlight,
    fin: bool,
) -> Result<(), Forward> {
    let data = std::mem::take(&mut frame.data);
    let result = match frame.kind {
        FrameType::Text if fin => {
            let text = Utf8Bytes::try_from(data)
                .map_err(|_| Forward::Invalid("text is not UTF-8".into()))?;
            peer.queue_frame(fin, OpCode::Text, text.into_bytes())
        }
        FrameType::Text => peer.queue_frame(false, OpCode::Text, data),
        FrameType::Binary => peer.queue_frame(fin, OpCode::Binary, data),
        FrameType::Continuation => peer.queue_frame(fin, OpCode::Continuation, data),
        FrameType::Ping | FrameType::Pong => {
            if data.len() > 125 {
                return Err(Forward::Invalid(format!(
                    "control frame payload of {} bytes",
                    data.len()
                )));
            }
            let opcode = if frame.kind == FrameType::Ping {
                OpCode::Ping
            } else {
                OpCode::Pong
            };
            peer.queue_frame(true, opcode, data)
        }
        FrameType::Close => {
            let close = match frame.status {
                Some(code) => {
                    let code = CloseCode::new(code)
                        .ok_or_else(|| Forward::Invalid(format!("close status {code}")))?;
                    let reason = Utf8Bytes::try_from(data)
                        .map_err(|_| Forward::Invalid("close message is not UTF-8".into()))?;
                    Some(
                        CloseFrame::new(code, reason)
                            .map_err(|e| Forward::Invalid(e.to_string()))?,
                    )
                }
                None => None,
            };
            peer.queue(&Message::Close(close))
        }
    };
    match result {
        Ok(()) => Ok(()),
        Err(Error::Protocol(e)) => Err(Forward::Invalid(e.to_string())),
        Err(_) => Err(Forward::PeerGone),
    }
}

fn planned(code: CloseCode, message: &str) -> PlannedClose {
    let mut end = message.len().min(frameway::wire::MAX_CLOSE_REASON);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    PlannedClose {
        status: code,
        message: message[..end].to_owned(),
    }
}

fn opposite(direction: Direction) -> Direction {
    match direction {
        Direction::Client => Direction::Upstream,
        Direction::Upstream => Direction::Client,
    }
}

/// The status of a (validated) close frame's payload.
fn close_status(payload: &[u8]) -> Option<u16> {
    CloseFrame::parse(payload)
        .ok()
        .flatten()
        .map(|c| c.code.as_u16())
}

/// Closes a leg that broke the protocol, once its close frame is sent. The
/// leg can no longer be read as WebSocket, but its peer may still be sending
/// (the rest of an oversize message, its answering close): that is read and
/// discarded until the peer closes TCP or the grace period ends. Closing a
/// socket with unread data resets the connection, and a reset can destroy
/// the close frame before the peer reads it.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = ws.get_mut();
    let drain = async {
        let _ = io.shutdown().await;
        let mut sink = [0u8; 8192];
        while let Ok(1..) = io.read(&mut sink).await {}
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
}

/// Sends each side its close frame, then lets both close handshakes finish;
/// returns the statuses each side answered with.
async fn close_both<A, B>(
    a: &mut WebSocket<A>,
    b: &mut WebSocket<B>,
    a_close: &PlannedClose,
    b_close: &PlannedClose,
) -> (Option<u16>, Option<u16>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::join!(finish(a, Some(a_close)), finish(b, Some(b_close)))
}

/// Sends `close` (if given and none was sent yet) and drains the leg until
/// its close handshake completes or the grace period ends; returns the
/// status of the close frame the leg answered with.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    close: Option<&PlannedClose>,
) -> Option<u16> {
    let mut status = None;
    let drain = async {
        let open = matches!(
            ws.close_state(),
            frameway::CloseState::Open | frameway::CloseState::Received
        );
        match close {
            Some(close) if open => {
                let frame = CloseFrame::new(close.status, close.message.as_str()).ok();
                let _ = ws.send_close(frame).await;
            }
            // Whatever was queued (a forwarded close) goes out first.
            _ => {
                let _ = ws.flush().await;
            }
        }
        while let Some(Ok(frame)) = ws.recv_frame().await {
            if frame.opcode == OpCode::Close {
                status = close_status(&frame.payload);
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    status
}
