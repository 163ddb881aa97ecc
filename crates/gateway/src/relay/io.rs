//! Driving a [`Relay`] over two WebSockets: reading both legs, queueing
//! what the relay forwards, backpressure, and the closing handshakes.
//!
//! Routes without frame plugins forward frame by frame as frames arrive
//! (no aggregation); routes with frame plugins aggregate fragmented
//! messages first, so plugins see whole messages, while control frames
//! inside a fragmented message pass at once.
//!
//! Both directions move at once in one task: frames are queued on the
//! receiving leg and written as its socket allows, and a side is read only
//! while the other leg's queue is below [`HIGH_WATER`] (through the fast
//! lane, not while that queue holds a read's worth). Waiting for one write to
//! finish before reading the *other* side would deadlock two peers that each
//! write before they read.
//!
//! Everything a read brought in is relayed before anything is written
//! (up to [`FLUSH_AT`] queued), so that a burst of frames (a pushing
//! upstream's 64 KiB of small messages) leaves in one system call, as
//! through a byte relay, not in one per frame.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use frameway::{
    CloseCode, CloseFrame, Error, Message, OpCode, Passed, ProtocolError, Relayed, Utf8Bytes,
    WebSocket,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep, Instant, Sleep};

use super::{planned, Decision, Ending, Held, Relay, Step, Unit};
use crate::drain::{DrainSignal, GoingAway};
use crate::plugin::FrameWaiting;
use crate::plugin::{Direction, FrameType, InFlight, PlannedClose};

/// How long the other side may take, once the connection is ending, to
/// send its close frame while we deliver what it still sends, or to take
/// ours.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Bytes queued toward one leg above which the other leg is not read: the
/// backpressure that bounds a connection's memory when one side is slow.
/// As large as one flush: under server push, 256 KiB held 160 KiB per
/// busy connection where 64 KiB holds 120, and cost more CPU per message
/// (more memory touched), not less.
const HIGH_WATER: usize = 64 * 1024;

/// Bytes queued toward one leg at which they are written before more is
/// read: one write of this much is as far as batching pays (nginx's tuned
/// proxy buffer is as large), and it bounds how long the first frame of a
/// burst waits for the rest.
const FLUSH_AT: usize = 64 * 1024;

/// What woke the proxy loop.
enum Event {
    /// A unit from one side.
    Received(Direction, Unit),
    /// Data frames went from one leg's read buffer straight to the other
    /// leg's queue (a route without frame phases), already counted.
    Passed,
    /// One side is gone: the other is told, and the connection ends.
    Gone(Direction, Gone),
    /// The gateway closes both sides.
    Stop(Stop),
}

/// How a side went.
enum Gone {
    /// Its stream ended, or failed with this error (not a violation).
    Ended(Option<Error>),
    /// Writing to it failed.
    Unwritable,
}

/// Why the gateway closes both sides.
enum Stop {
    /// This side broke the protocol.
    Violation(Direction, ProtocolError),
    /// No traffic for the idle timeout.
    Idle,
    /// The process is draining and this connection's turn to close came.
    GoingAway,
}

/// How the side that is still sending ended while the connection closed.
enum Answer {
    /// It sent its close frame: the close to pass on (none for a close
    /// without a status).
    Closed(Option<PlannedClose>),
    /// A plugin (or a failure) ended the connection.
    Ended(Ending),
    /// Nothing came within the grace period, or the leg ended.
    Silent,
}

/// Why a frame could not be queued.
enum Forward {
    /// The receiving leg failed (it is gone).
    PeerGone,
    /// A plugin produced something that cannot be sent.
    Invalid(String),
}

/// Proxies until either side ends (or `drain` says to go away), then
/// finishes the relay (access log, close phase).
///
/// A plain function returning the future, not an `async fn`, which would
/// hold the relay and both connections twice (its arguments, and the copies
/// it moves them into) for the connection's whole life.
pub(crate) fn run<C, U>(
    relay: Relay,
    client: WebSocket<C>,
    upstream: WebSocket<U>,
    idle_timeout: Option<Duration>,
    drain: DrainSignal,
) -> impl Future<Output = ()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut relay, mut client, mut upstream) = (relay, client, upstream);
    let mut going_away = drain.going_away(relay.conn().id);
    async move {
        let exit = proxy(
            &mut relay,
            &mut client,
            &mut upstream,
            idle_timeout,
            &mut going_away,
        )
        .await;
        // Each way to end is boxed: its futures are large, and inline they
        // would make every idle connection's task larger.
        match exit {
            // A leg that is gone is closed before the other leg's close
            // handshake, not after it: in a reconnect storm, pairs whose
            // client left would otherwise hold two sockets each while their
            // upstreams answer, and run the gateway out of descriptors.
            Exit::Gone(Direction::Client) => {
                drop(client);
                boxed!(leg_gone(&mut relay, Direction::Client, &mut upstream)).await
            }
            Exit::Gone(Direction::Upstream) => {
                drop(upstream);
                boxed!(leg_gone(&mut relay, Direction::Upstream, &mut client)).await
            }
            Exit::Stop(why) => boxed!(wind_down(&mut relay, why, &mut client, &mut upstream)).await,
            Exit::End(from @ Direction::Client, ending) => {
                boxed!(end(&mut relay, from, ending, &mut client, &mut upstream)).await
            }
            Exit::End(from @ Direction::Upstream, ending) => {
                boxed!(end(&mut relay, from, ending, &mut upstream, &mut client)).await
            }
        }
        relay.finish();
    }
}

/// How the proxy loop ended: what is left to do is the connection's end.
enum Exit {
    /// This leg is gone; the other is still to be told.
    Gone(Direction),
    /// The gateway closes both sides.
    Stop(Stop),
    /// The relay ended the connection on a unit from this side.
    End(Direction, Ending),
}

/// The proxy loop: one event at a time, each handed to the relay, until
/// the connection ends.
///
/// Its future is what an idle connection's task holds besides the relay
/// and the two legs, so nothing large lives across its `await`s: a plain
/// function (an `async fn` would keep its arguments twice), the drain wait
/// borrowed, a plugin's wait boxed, and the connection's end left to the
/// caller.
#[allow(clippy::manual_async_fn)]
fn proxy<'a, C, U>(
    relay: &'a mut Relay,
    client: &'a mut WebSocket<C>,
    upstream: &'a mut WebSocket<U>,
    idle_timeout: Option<Duration>,
    going_away: &'a mut GoingAway,
) -> impl Future<Output = Exit> + 'a
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        let aggregate = relay.aggregates();
        // Boxed, and only with an idle timeout: a timer is larger than
        // anything else an idle connection's task holds.
        let mut idle = idle_timeout.map(|limit| Box::pin(sleep(limit)));
        let mut client_first = true;
        // A frame a plugin holds, boxed (it is rare, and inline it would
        // stay in every connection's future), and what the plugin awaits.
        let mut waiting: Option<(Box<Held>, FrameWaiting)> = None;
        loop {
            let (from, step) = match waiting.take() {
                Some((held, until)) => {
                    let resumed = until.await;
                    (held.from, relay.resume(*held, resumed))
                }
                None => {
                    let event = poll_fn(|cx| {
                        // Alternate which side is read first, so neither starves.
                        client_first = !client_first;
                        let idle = idle.as_mut().map(Pin::as_mut);
                        poll_event(
                            cx,
                            relay,
                            client,
                            upstream,
                            aggregate,
                            client_first,
                            idle,
                            going_away,
                        )
                    })
                    .await;
                    if let (Some(limit), Some(idle)) = (idle_timeout, idle.as_mut()) {
                        if !matches!(event, Event::Stop(_) | Event::Gone(..)) {
                            idle.as_mut().reset(Instant::now() + limit);
                        }
                    }
                    let (from, unit) = match event {
                        Event::Received(from, unit) => (from, unit),
                        Event::Passed => continue,
                        Event::Gone(side, how) => {
                            gone(relay, side, &how);
                            return Exit::Gone(side);
                        }
                        Event::Stop(why) => return Exit::Stop(why),
                    };
                    (from, relay.receive(from, unit))
                }
            };
            let decision = match step {
                Step::Decided(decision) => decision,
                Step::Wait { held, until } => {
                    waiting = Some((Box::new(held), until));
                    continue;
                }
            };
            let ending = match from {
                Direction::Client => apply(relay, decision, upstream),
                Direction::Upstream => apply(relay, decision, client),
            };
            if let Some(ending) = ending {
                return Exit::End(from, ending);
            }
        }
    }
}

/// Logs how a leg went, when that says more than that it ended.
fn gone(relay: &Relay, side: Direction, how: &Gone) {
    let id = relay.conn().id;
    match how {
        Gone::Ended(Some(err)) => {
            tracing::debug!(connection = id, side = side.as_str(), "leg ended: {err}");
        }
        Gone::Ended(None) => {}
        Gone::Unwritable => {
            tracing::debug!(
                connection = id,
                side = side.as_str(),
                "write failed: side gone"
            );
        }
    }
}

/// The gateway closes both sides for `why`: a violation, the idle
/// timeout, a drain.
async fn wind_down<C, U>(
    relay: &mut Relay,
    why: Stop,
    client: &mut WebSocket<C>,
    upstream: &mut WebSocket<U>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    match why {
        Stop::Violation(from, err) => {
            tracing::info!(
                connection = relay.conn().id,
                side = from.as_str(),
                "protocol violation: {err}"
            );
            let owed = planned(err.close_code(), &err.to_string());
            match from {
                Direction::Client => fail_leg(relay, from, client, upstream, &owed).await,
                Direction::Upstream => fail_leg(relay, from, upstream, client, &owed).await,
            }
        }
        Stop::Idle | Stop::GoingAway => {
            let reason = if matches!(why, Stop::Idle) {
                "idle timeout"
            } else {
                "going away"
            };
            let close = planned(CloseCode::GOING_AWAY, reason);
            let ending = Ending::CloseBoth {
                sender: close.clone(),
                peer: close,
            };
            end(relay, Direction::Client, ending, client, upstream).await
        }
    }
}

/// Awaits what a plugin holding a frame waits for, and anything the
/// plugins after it wait for in turn: the relay's decision on the frame.
/// Boxed by its callers, which are a closing connection's.
async fn settle(relay: &mut Relay, mut held: Held, mut until: FrameWaiting) -> Decision {
    loop {
        match relay.resume(held, until.await) {
            Step::Decided(decision) => return decision,
            Step::Wait {
                held: next,
                until: then,
            } => (held, until) = (next, then),
        }
    }
}

/// Queues on `peer` what the relay decided to forward, without an
/// `await`. Returns how the connection ends when it does.
fn apply<P>(relay: &mut Relay, decision: Decision, peer: &mut WebSocket<P>) -> Option<Ending>
where
    P: AsyncRead + AsyncWrite + Unpin,
{
    match decision {
        Decision::Nothing => None,
        Decision::End(ending) => Some(ending),
        Decision::Forward {
            frame,
            fin,
            compressed,
            then,
        } => {
            let kind = frame.kind;
            match forward(peer, frame, fin, compressed) {
                Ok(()) => then,
                Err(Forward::PeerGone) => Some(Ending::PeerGone),
                Err(Forward::Invalid(why)) => Some(relay.unforwardable(kind, &why)),
            }
        }
    }
}

/// The leg `gone` ended (or cannot be written): `other`, the other side,
/// goes away.
async fn leg_gone<S>(relay: &mut Relay, gone: Direction, other: &mut WebSocket<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let away = planned(CloseCode::GOING_AWAY, "peer went away");
    let reply = finish(other, Some(&away)).await;
    relay.replied(gone.opposite(), reply);
}

/// One side broke the protocol. The other side is told 1001 and whatever
/// it still sends before its close (answers already on their way) is
/// delivered, through the plugins like any other frame; then the offender
/// gets the close code its violation calls for.
async fn fail_leg<S, P>(
    relay: &mut Relay,
    offender_side: Direction,
    offender: &mut WebSocket<S>,
    peer: &mut WebSocket<P>,
    owed: &PlannedClose,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    P: AsyncRead + AsyncWrite + Unpin,
{
    let away = CloseFrame::new(CloseCode::GOING_AWAY, "peer went away").ok();
    if peer.send_close(away).await.is_ok() {
        if let Answer::Ended(_) =
            deliver_until_close(relay, offender_side.opposite(), peer, offender).await
        {
            // The peer's close was already sent; its handshake still ends.
            let _ = finish(peer, None).await;
        }
    }
    // Sending the close it owes lets the offender's leg shut down and
    // linger (frameway::Failure::Violation).
    let offender_reply = finish(offender, Some(owed)).await;
    relay.replied(offender_side, offender_reply);
}

/// After the other side's close was sent to `from`: delivers what `from`
/// still sends (answers already on their way) to `to`, through the relay
/// like any other frame, until `from`'s close frame or an ending the
/// relay decides.
async fn deliver_until_close<F, T>(
    relay: &mut Relay,
    from_side: Direction,
    from: &mut WebSocket<F>,
    to: &mut WebSocket<T>,
) -> Answer
where
    F: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let aggregate = relay.aggregates();
    let deliver = async {
        while let Some(Ok(unit)) = next(from, aggregate).await {
            if unit.kind == FrameType::Close {
                return Answer::Closed(relay.close_answer(from_side, unit));
            }
            let decision = match relay.receive(from_side, unit) {
                Step::Decided(decision) => decision,
                Step::Wait { held, until } => Box::pin(settle(relay, held, until)).await,
            };
            let (frame, fin, compressed, then) = match decision {
                Decision::Nothing => continue,
                Decision::End(ending) => return Answer::Ended(ending),
                Decision::Forward {
                    frame,
                    fin,
                    compressed,
                    then,
                } => (frame, fin, compressed, then),
            };
            let kind = frame.kind;
            match forward(to, frame, fin, compressed) {
                Ok(()) => {}
                Err(Forward::PeerGone) => return Answer::Ended(Ending::PeerGone),
                Err(Forward::Invalid(why)) => {
                    return Answer::Ended(relay.unforwardable(kind, &why))
                }
            }
            if to.flush().await.is_err() {
                return Answer::Ended(Ending::PeerGone);
            }
            if let Some(ending) = then {
                return Answer::Ended(ending);
            }
        }
        Answer::Silent
    };
    tokio::time::timeout(CLOSE_GRACE, deliver)
        .await
        .unwrap_or(Answer::Silent)
}

/// Carries out how the connection ends after a frame from `direction`.
async fn end<S, P>(
    relay: &mut Relay,
    direction: Direction,
    ending: Ending,
    sender: &mut WebSocket<S>,
    peer: &mut WebSocket<P>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    P: AsyncRead + AsyncWrite + Unpin,
{
    match ending {
        Ending::CloseBoth {
            sender: to_sender,
            peer: to_peer,
        } => {
            let (sender_reply, peer_reply) = tokio::join!(
                finish(sender, Some(&to_sender)),
                finish(peer, Some(&to_peer))
            );
            relay.replied(direction, sender_reply);
            relay.replied(direction.opposite(), peer_reply);
        }
        Ending::PeerGone => {
            let away = planned(CloseCode::GOING_AWAY, "peer went away");
            let reply = finish(sender, Some(&away)).await;
            relay.replied(direction, reply);
        }
        Ending::SenderClosed(status) => {
            // The sender is done sending, but the peer may have messages
            // on their way (answers to what the sender sent): they are
            // delivered, then the sender gets the peer's close as the
            // answer to its own, so codes and reasons pass end to end.
            let _ = peer.flush().await;
            let echo = || {
                let own = status
                    .and_then(CloseCode::new)
                    .map(|code| planned(code, ""));
                own.unwrap_or_else(|| planned(CloseCode::NORMAL, ""))
            };
            match deliver_until_close(relay, direction.opposite(), peer, sender).await {
                // What the plugins decided about the peer's late frame: the
                // peer (that frame's sender) already has the sender's close,
                // the sender gets the close meant for that frame's peer.
                Answer::Ended(Ending::CloseBoth {
                    sender: to_peer,
                    peer: to_sender,
                }) => {
                    tokio::join!(
                        finish(sender, Some(&to_sender)),
                        finish(peer, Some(&to_peer))
                    );
                }
                Answer::Closed(Some(answer)) => {
                    tokio::join!(finish(sender, Some(&answer)), finish(peer, None));
                }
                Answer::Closed(None) | Answer::Ended(_) | Answer::Silent => {
                    let echo = echo();
                    tokio::join!(finish(sender, Some(&echo)), finish(peer, None));
                }
            }
        }
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

/// Reads whichever side has something while the other side's queue has
/// room, and once neither has (or a queue reached [`FLUSH_AT`]), moves the
/// queued bytes out on both legs. Without aggregation, the data frames a
/// read brought in go to the other leg in one pass (`poll_relay`): one
/// frame per event would cost more than the frames' own bytes when a
/// pushing upstream sends thousands per read. Such a leg's socket is not
/// read while the other leg's queue holds a read's worth (`Relayed::Held`),
/// so that a pushed read goes out from the memory it was read into rather
/// than copied behind the one before; when a write empties the queue that
/// held a read back, that leg is polled again (nothing else would wake the
/// task for its read).
#[expect(clippy::too_many_arguments, reason = "the loop's state, borrowed")]
fn poll_event<C, U>(
    cx: &mut Context<'_>,
    relay: &mut Relay,
    client: &mut WebSocket<C>,
    upstream: &mut WebSocket<U>,
    aggregate: bool,
    client_first: bool,
    idle: Option<Pin<&mut Sleep>>,
    going_away: &mut GoingAway,
) -> Poll<Event>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut sides: &[Direction] = if client_first {
        &[Direction::Client, Direction::Upstream]
    } else {
        &[Direction::Upstream, Direction::Client]
    };
    // A leg whose queue reached FLUSH_AT (or HIGH_WATER, which stops
    // reading its peer) is written first; if that write cannot finish, its
    // waker is registered and the skipped read is polled once it has.
    if let Some(failed) = flush_from(cx, client, upstream, FLUSH_AT) {
        return Poll::Ready(Event::Gone(failed, Gone::Unwritable));
    }
    loop {
        // Whether a read was held back until the other leg's queue empties.
        let (mut client_held, mut upstream_held) = (false, false);
        for &side in sides {
            let polled = match side {
                Direction::Client if upstream.queued_len() < HIGH_WATER => {
                    poll_leg(relay, side, client, upstream, cx, aggregate)
                }
                Direction::Upstream if client.queued_len() < HIGH_WATER => {
                    poll_leg(relay, side, upstream, client, cx, aggregate)
                }
                _ => continue,
            };
            match (polled, side) {
                (Leg::Event(event), _) => return Poll::Ready(event),
                (Leg::Held, Direction::Client) => client_held = true,
                (Leg::Held, Direction::Upstream) => upstream_held = true,
                (Leg::Pending, _) => {}
            }
        }
        // Nothing more to read for now: write out everything queued.
        if let Some(failed) = flush_from(cx, client, upstream, 1) {
            return Poll::Ready(Event::Gone(failed, Gone::Unwritable));
        }
        // Only a held leg whose queue is now written out is polled again
        // (each poll of a leg costs): nothing else would wake the task for
        // its read.
        sides = match (
            client_held && upstream.queued_len() == 0,
            upstream_held && client.queued_len() == 0,
        ) {
            (false, false) => break,
            (true, false) => &[Direction::Client],
            (false, true) => &[Direction::Upstream],
            (true, true) => &[Direction::Client, Direction::Upstream],
        };
    }
    if idle.is_some_and(|idle| idle.poll(cx).is_ready()) {
        return Poll::Ready(Event::Stop(Stop::Idle));
    }
    if Pin::new(going_away).poll(cx).is_ready() {
        return Poll::Ready(Event::Stop(Stop::GoingAway));
    }
    Poll::Pending
}

/// What polling one leg gave.
enum Leg {
    Event(Event),
    /// Its socket was not read: the other leg's queue, a read's worth, is
    /// to be written out first (`Relayed::Held`).
    Held,
    Pending,
}

/// Reads the next unit from leg `from` (the `side`). Without aggregation,
/// the data frames the fast lane takes go to `to`'s queue (up to
/// [`FLUSH_AT`] queued) as they are read, each counted, and only what it
/// leaves comes back as a unit.
fn poll_leg<F, T>(
    relay: &mut Relay,
    side: Direction,
    from: &mut WebSocket<F>,
    to: &mut WebSocket<T>,
    cx: &mut Context<'_>,
    aggregate: bool,
) -> Leg
where
    F: AsyncRead + AsyncWrite + Unpin,
{
    let received = if aggregate {
        match poll_next(from, cx, aggregate) {
            Poll::Ready(received) => received,
            Poll::Pending => return Leg::Pending,
        }
    } else {
        let mut passed = Passed::default();
        let relayed = from.poll_relay(cx, to, FLUSH_AT, &mut passed);
        if !passed.is_empty() {
            relay.passed(side, &passed);
        }
        match relayed {
            Poll::Pending => return Leg::Pending,
            Poll::Ready(Some(Ok(Relayed::Held))) => return Leg::Held,
            Poll::Ready(Some(Ok(Relayed::Passed))) => return Leg::Event(Event::Passed),
            Poll::Ready(Some(Ok(Relayed::Frame(frame)))) => Some(Ok(Unit::from_frame(frame))),
            Poll::Ready(Some(Err(err))) => Some(Err(err)),
            Poll::Ready(None) => None,
        }
    };
    Leg::Event(match received {
        Some(Ok(unit)) => Event::Received(side, unit),
        Some(Err(Error::Protocol(err))) => Event::Stop(Stop::Violation(side, err)),
        Some(Err(err)) => Event::Gone(side, Gone::Ended(Some(err))),
        None => Event::Gone(side, Gone::Ended(None)),
    })
}

/// Writes out each leg with at least `at_least` bytes queued; the leg whose
/// write failed, if one did.
fn flush_from<C, U>(
    cx: &mut Context<'_>,
    client: &mut WebSocket<C>,
    upstream: &mut WebSocket<U>,
    at_least: usize,
) -> Option<Direction>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    if client.queued_len() >= at_least
        && matches!(client.poll_flush_queued(cx), Poll::Ready(Err(_)))
    {
        return Some(Direction::Client);
    }
    if upstream.queued_len() >= at_least
        && matches!(upstream.poll_flush_queued(cx), Poll::Ready(Err(_)))
    {
        return Some(Direction::Upstream);
    }
    None
}

/// Queues the (possibly changed) frame on the other leg; the proxy loop
/// writes it out. The payload moves, never cloned: a clone of a payload
/// copied out of the read buffer would allocate its shared header. A
/// `compressed` frame goes out as it came, RSV1 set.
fn forward<P: AsyncRead + AsyncWrite + Unpin>(
    peer: &mut WebSocket<P>,
    frame: InFlight,
    fin: bool,
    compressed: bool,
) -> Result<(), Forward> {
    let data = frame.data;
    let result = match frame.kind {
        FrameType::Text if compressed => peer.queue_frame_compressed(fin, OpCode::Text, data),
        FrameType::Binary if compressed => peer.queue_frame_compressed(fin, OpCode::Binary, data),
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

/// The status of a (validated) close frame's payload.
fn close_status(payload: &[u8]) -> Option<u16> {
    CloseFrame::parse(payload)
        .ok()
        .flatten()
        .map(|c| c.code.as_u16())
}

/// Sends `close` (if given and none was sent yet) and drains the leg until
/// its close handshake completes; returns the status of the close frame
/// the leg answered with.
///
/// Two bounds, each armed only when needed: the grace period for a close
/// the peer is too slow to take (tokio arms a timeout's timer only once
/// what it wraps has to wait, and a close frame almost always goes out at
/// once), and for the peer's answer the leg's own close timer, which its
/// protocol core counts from our close (`close_timeout`). A second timer
/// over the whole of it cost every ending connection a registration with
/// the timer wheel.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    close: Option<&PlannedClose>,
) -> Option<u16> {
    let sending = async {
        match close {
            Some(close) if !ws.close_sent() => {
                let frame = CloseFrame::new(close.status, close.message.as_str()).ok();
                ws.send_close(frame).await
            }
            // Whatever was queued (a forwarded close) goes out first.
            _ => ws.flush().await,
        }
    };
    // A failed send still reads on: the peer's close may be buffered.
    if tokio::time::timeout(CLOSE_GRACE, sending).await.is_err() {
        return None;
    }
    let mut status = None;
    while let Some(Ok(frame)) = ws.recv_frame().await {
        if frame.opcode == OpCode::Close {
            status = close_status(&frame.payload);
        }
    }
    status
}
