//! [`WebSocket`]: one connection over any byte stream, with a frame API
//! (lua-resty-websocket's `recv_frame`/`send_frame`) and a message API
//! (`Stream` + `Sink` of [`Message`]).

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use frameway_wire::deflate::{Deflate, DeflateParams};
use frameway_wire::{
    spare, CloseCode, CloseFrame, Expired, Failure, Frame, Heartbeat, Message, Mode, OpCode,
    Passed, Protocol, ProtocolError, Role, State, Utf8Bytes,
};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

use crate::config::WebSocketConfig;
use crate::error::{Error, Result, TimeoutKind};
use crate::read::poll_read_spare;

/// Queued output above which writers wait for the socket (backpressure).
const WRITE_HIGH_WATER: usize = 128 * 1024;
/// Bytes read onto the stack when discarding.
const STACK_READ: usize = 4096;
/// The least spare room a read is given before the buffer grows.
const MIN_READ_BUF: usize = 8 * 1024;
/// Queued segments written by one vectored write.
const MAX_WRITE_SLICES: usize = 16;
/// The most the read buffer grows by in one step.
const MAX_READ_STEP: usize = 256 * 1024;
/// Bytes queued on a relay's other leg from which its socket is not read
/// until they are written ([`Relayed::Held`]). Below it the queue is a few
/// small frames (request and response traffic) that the next flush takes
/// at once: holding a read behind them cost more polls and a longer tail
/// of latency for a copy of a few bytes. At it, the queue is a burst a
/// pushing peer sent, and a read behind it would be copied.
const HOLD_AT: usize = 4096;

fn entropy(buf: &mut [u8]) {
    // The OS generator only fails if the kernel has none to give; masking
    // keys must not be predictable, so there is no weaker fallback.
    crate::random::fill(buf).expect("the operating system's random generator failed");
}

/// What a read is for.
pub(crate) enum Reading<'a> {
    /// Whole messages, fragments assembled.
    Messages,
    /// Frames as they arrived.
    Frames,
    /// Frames for a relay: those the fast lane takes go to the other leg as
    /// they are read, the others come back as frames.
    Relay(Lane<'a>),
}

/// The other leg of a relay, as the fast lane sees it.
pub(crate) struct Lane<'a> {
    to: &'a mut Protocol,
    to_open: bool,
    max_queued: usize,
    passed: &'a mut Passed,
}

/// What a read produced.
pub(crate) enum Incoming {
    Frame(Frame),
    Message(Message),
    /// Data frames went to the other leg of a relay.
    Passed,
    /// A relay leg was not read: the other leg has a read's worth queued.
    Held,
}

/// What [`WebSocket::poll_relay`] produced.
#[derive(Debug)]
pub enum Relayed {
    /// Data frames went to the other leg's queue, counted in the `Passed`
    /// given.
    Passed,
    /// A frame the fast lane leaves to its caller: a control frame, a
    /// fragment, or a frame of a compressed or closing connection. A frame
    /// that breaks the protocol comes back as the error it is.
    Frame(Frame),
    /// Nothing was read: everything buffered has been relayed and `to`
    /// still has a read's worth of bytes queued (at least 4 KiB, a burst a
    /// pushing peer sent). Read now, what comes in would be copied behind
    /// them; read once they are written, it goes out from the memory it was
    /// read into, as through a byte relay. Write `to` out, then poll again:
    /// no waker was registered for this leg's reads or its timers.
    Held,
}

impl Incoming {
    fn is_close(&self) -> bool {
        match self {
            Incoming::Frame(f) => f.opcode == OpCode::Close,
            Incoming::Message(m) => m.is_close(),
            Incoming::Passed | Incoming::Held => false,
        }
    }

    pub(crate) fn into_message(self) -> Message {
        match self {
            Incoming::Message(m) => m,
            Incoming::Frame(_) | Incoming::Passed | Incoming::Held => {
                unreachable!("message mode yields messages")
            }
        }
    }

    pub(crate) fn into_frame(self) -> Frame {
        match self {
            Incoming::Frame(f) => f,
            Incoming::Message(_) | Incoming::Passed | Incoming::Held => {
                unreachable!("frame mode yields frames")
            }
        }
    }

    fn into_relayed(self) -> Relayed {
        match self {
            Incoming::Frame(f) => Relayed::Frame(f),
            Incoming::Passed => Relayed::Passed,
            Incoming::Held => Relayed::Held,
            Incoming::Message(_) => unreachable!("a relay reads frames"),
        }
    }
}

/// Connection state that most connections never need: kept behind one
/// pointer, because every idle connection carries what is inline.
#[derive(Default)]
struct Extras {
    /// The one timer, set to the protocol core's next deadline.
    timer: Option<Pin<Box<Sleep>>>,
    subprotocol: Option<String>,
    /// A read result held back until the replies it caused are flushed.
    pending: Option<Incoming>,
    /// A fatal error to report once its close frame is flushed.
    failure: Option<Error>,
}

/// A WebSocket connection over `S` (a `TcpStream`, a TLS stream, hyper's
/// upgraded connection, or any `AsyncRead + AsyncWrite`).
///
/// Reading drives the protocol: pings are answered, a close frame is
/// echoed, keep-alive pings go out, and protocol violations are answered
/// with the right close code, all while the application reads. Idle
/// connections hold no buffers.
///
/// ```no_run
/// # async fn demo(mut ws: frameway::WebSocket<tokio::net::TcpStream>) -> frameway::Result<()> {
/// use frameway::Message;
/// while let Some(msg) = ws.recv().await {
///     match msg? {
///         Message::Text(text) => ws.send_text(format!("echo: {text}")).await?,
///         Message::Binary(data) => ws.send_binary(data).await?,
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
pub struct WebSocket<S> {
    io: S,
    proto: Protocol,
    rbuf: BytesMut,
    /// Shared by the connections of one server (or one set of options).
    config: Arc<WebSocketConfig>,
    /// State most connections never need, behind one pointer.
    extras: Option<Box<Extras>>,
    /// How far the transport is torn down; the WebSocket side of the
    /// lifecycle is the protocol core's [`State`].
    teardown: Teardown,
}

/// How far the transport is torn down once the connection has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Teardown {
    /// Nothing torn down yet.
    None,
    /// The server closed TCP after the closing handshake (or the wait for
    /// it ran out): the client's side closes next.
    PeerClosed,
    /// Our side is shut down after a failure; lingering may follow.
    ShutDown,
    /// Nothing is left: reads return `None`, writes fail.
    Done,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.proto.config().role)
            .field("state", &self.proto.state())
            .field(
                "subprotocol",
                &self.extras.as_ref().and_then(|x| x.subprotocol.as_deref()),
            )
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a stream whose opening handshake is already done. `read_buf`
    /// holds bytes that arrived after the handshake (they belong to the
    /// WebSocket stream and are read first). `config` is a
    /// [`WebSocketConfig`] or an `Arc` of one: a server passing the same
    /// `Arc` to all its connections keeps one copy of the settings, not one
    /// per connection.
    ///
    /// ```
    /// # async fn demo() {
    /// use frameway::{Role, WebSocket, WebSocketConfig};
    /// let (a, _b) = tokio::io::duplex(64);
    /// let ws = WebSocket::from_raw_socket(a, Role::Server, WebSocketConfig::default(), bytes::Bytes::new());
    /// # drop(ws); }
    /// ```
    pub fn from_raw_socket(
        io: S,
        role: Role,
        config: impl Into<Arc<WebSocketConfig>>,
        read_buf: Bytes,
    ) -> Self {
        let config = config.into();
        let mut proto = Protocol::new(config.wire(role), entropy);
        proto.set_mode(config.mode);
        proto.set_fragment_size(config.fragment_size);
        if let Some(interval) = config.ping_interval {
            let heartbeat = Heartbeat {
                interval,
                timeout: config.pong_timeout,
            };
            proto.set_heartbeat(heartbeat, Instant::now().into_std());
        }
        WebSocket {
            io,
            proto,
            rbuf: BytesMut::from(&read_buf[..]),
            config,
            extras: None,
            teardown: Teardown::None,
        }
    }

    pub(crate) fn with_subprotocol(mut self, protocol: Option<String>) -> Self {
        if protocol.is_some() {
            self.extras().subprotocol = protocol;
        }
        self
    }

    /// Turns on permessage-deflate for a connection whose handshake
    /// negotiated it elsewhere (a request upgraded by hyper, say): build
    /// the [`Deflate`] from the agreed [`DeflateParams`]
    /// ([`DeflateConfig::accept`](frameway_wire::deflate::DeflateConfig::accept)
    /// on a server). [`accept_with`](crate::server::accept_with) and
    /// [`connect_with`](crate::client::connect_with) do this themselves.
    ///
    /// ```
    /// # async fn demo() {
    /// use frameway::wire::deflate::Deflate;
    /// use frameway::{DeflateConfig, DeflateParams, Role, WebSocket, WebSocketConfig};
    /// let (io, _peer) = tokio::io::duplex(64);
    /// let params = DeflateParams::default();
    /// let ws = WebSocket::from_raw_socket(io, Role::Server, WebSocketConfig::default(), bytes::Bytes::new())
    ///     .with_deflate(Deflate::new(Role::Server, params, &DeflateConfig::default()));
    /// assert_eq!(ws.deflate(), Some(&params));
    /// # }
    /// ```
    pub fn with_deflate(mut self, deflate: Deflate) -> Self {
        self.proto.set_deflate(deflate);
        self
    }

    /// The permessage-deflate parameters agreed in the handshake, if it was
    /// negotiated.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.proto.deflate().map(Deflate::params)
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.extras.as_ref()?.subprotocol.as_deref()
    }

    /// The settings in force.
    pub fn config(&self) -> &WebSocketConfig {
        &self.config
    }

    /// Where the connection stands.
    pub fn state(&self) -> State {
        self.proto.state()
    }

    /// Whether our close frame is queued or sent.
    pub fn close_sent(&self) -> bool {
        self.proto.close_sent()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The underlying stream, mutably. Reading or writing it directly
    /// corrupts the WebSocket stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Sets the read and write timeouts (lua-resty-websocket's `set_timeout`).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        let config = Arc::make_mut(&mut self.config);
        config.read_timeout = timeout;
        config.write_timeout = timeout;
    }

    /// Changes the largest message accepted from now on.
    pub fn set_max_message_len(&mut self, len: u64) {
        self.config = Arc::new(WebSocketConfig::clone(&self.config).max_message_len(len));
        self.proto
            .set_limits(self.config.wire(self.proto.config().role).limits);
    }

    /// Whether the connection can be handed to a pool: open, nothing
    /// half-received or half-sent, nothing buffered.
    pub(crate) fn is_reusable(&self) -> bool {
        self.teardown == Teardown::None
            && self
                .extras
                .as_ref()
                .is_none_or(|x| x.failure.is_none() && x.pending.is_none())
            && self.proto.state() == State::Open
            && self.proto.is_idle()
            && !self.proto.has_output()
            && self.rbuf.is_empty()
    }

    /// The stream and the compression state, whose windows a pooled
    /// connection must keep for its next use.
    pub(crate) fn into_parts(mut self) -> (S, Option<Deflate>) {
        let deflate = self.proto.take_deflate();
        (self.io, deflate)
    }

    // ----- reading -----

    /// Receives the next message, assembling fragments; `None` once the
    /// connection has closed cleanly. Close frames are returned as
    /// [`Message::Close`] (the answering close frame is already sent).
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        let timeout = self.config.read_timeout;
        let next = poll_fn(|cx| {
            let waker = cx.waker();
            self.poll_incoming(cx, waker, Reading::Messages)
        });
        match with_timeout(timeout, TimeoutKind::Read, next).await {
            Ok(item) => item.map(|r| r.map(Incoming::into_message)),
            Err(e) => Some(Err(e)),
        }
    }

    /// Receives the next frame as it arrived: fragments are returned one by
    /// one (the later ones as [`OpCode::Continuation`]), control frames as
    /// they come. Text is still validated as UTF-8 across fragments. With
    /// permessage-deflate, each fragment comes inflated (RSV1 cleared).
    pub async fn recv_frame(&mut self) -> Option<Result<Frame>> {
        let timeout = self.config.read_timeout;
        let next = poll_fn(|cx| {
            let waker = cx.waker();
            self.poll_incoming(cx, waker, Reading::Frames)
        });
        match with_timeout(timeout, TimeoutKind::Read, next).await {
            Ok(item) => item.map(|r| r.map(Incoming::into_frame)),
            Err(e) => Some(Err(e)),
        }
    }

    /// The read state machine. `write_waker` is woken when a write that a
    /// read caused (pong, close reply) can make progress; split halves pass a
    /// waker that reaches both tasks.
    pub(crate) fn poll_incoming(
        &mut self,
        cx: &mut Context<'_>,
        write_waker: &Waker,
        mut reading: Reading<'_>,
    ) -> Poll<Option<Result<Incoming>>> {
        loop {
            if self.teardown == Teardown::Done {
                return Poll::Ready(None);
            }
            if let State::Failed(failure) = self.proto.state() {
                return self.poll_fail(cx, write_waker, failure);
            }
            if let Some(item) = self.extras.as_mut().and_then(|x| x.pending.take()) {
                return self.poll_deliver_pending(item, write_waker);
            }
            if self.proto.state() == State::Closed {
                return self
                    .poll_finish_close(cx, write_waker)
                    .map(|r| r.err().map(Err));
            }
            // Queued output (replies, or what a split writer queued) goes
            // out as the socket allows, but never holds reading back: a peer
            // that reads only after we do would deadlock. Pong backlog is
            // bounded by the protocol core. A relay leg's output is what
            // the other leg relayed: its driver writes it, in batches.
            let writes_on_read = self.proto.mode() == Mode::Endpoint;
            if writes_on_read && self.proto.has_output() {
                if let Poll::Ready(Err(e)) = self.poll_write_out(write_waker) {
                    return self.end_with(e.into());
                }
            }
            if let Reading::Relay(lane) = &mut reading {
                if self.pass_to(lane) {
                    return Poll::Ready(Some(Ok(Incoming::Passed)));
                }
                if matches!(self.proto.state(), State::Failed(_)) {
                    // The lane found a violation: failing is the loop's.
                    continue;
                }
            }
            match self.decode(!matches!(reading, Reading::Messages)) {
                Ok(Some(item)) if item.is_close() && self.proto.has_output() => {
                    // The close reply goes out before the caller sees the
                    // close, so dropping the connection then cannot lose it.
                    self.extras().pending = Some(item);
                    continue;
                }
                Ok(Some(item)) => {
                    // A pong: sent now if the socket takes it, else with the
                    // next read or write.
                    if writes_on_read && self.proto.has_output() {
                        if let Poll::Ready(Err(e)) = self.poll_write_out(write_waker) {
                            return self.end_with(e.into());
                        }
                    }
                    return Poll::Ready(Some(Ok(item)));
                }
                Ok(None) => {}
                Err(e) => {
                    self.extras().failure = Some(Error::Protocol(e));
                    continue;
                }
            }
            // Held before the timers as well: the pong a timer waits for
            // may be among the bytes not read yet.
            if let Reading::Relay(lane) = &reading {
                if lane.to.output().len() >= HOLD_AT {
                    return Poll::Ready(Some(Ok(Incoming::Held)));
                }
            }
            if let Poll::Ready(expired) = self.poll_deadlines(cx) {
                match expired {
                    Some(err) => return self.end_with(err),
                    None => continue,
                }
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) if self.proto.state() == State::Closed => {
                    self.teardown = Teardown::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return self.end_with(Error::AbnormalClose),
                Ok(_) => {}
                Err(e) => return self.end_with(e.into()),
            }
        }
    }

    /// The next frame or message in the read buffer. Nothing buffered
    /// decodes to nothing (a frame whose header was read always waits for
    /// payload bytes), so the parser is skipped.
    fn decode(&mut self, frames: bool) -> std::result::Result<Option<Incoming>, ProtocolError> {
        if self.rbuf.is_empty() {
            Ok(None)
        } else if frames {
            let frame = self.proto.read_frame(&mut self.rbuf)?;
            Ok(frame.map(Incoming::Frame))
        } else {
            let message = self.proto.read_message(&mut self.rbuf)?;
            Ok(message.map(Incoming::Message))
        }
    }

    /// Hands over a close held back until its reply was flushed.
    fn poll_deliver_pending(
        &mut self,
        item: Incoming,
        write_waker: &Waker,
    ) -> Poll<Option<Result<Incoming>>> {
        match self.poll_write_out(write_waker) {
            Poll::Pending => {
                self.extras().pending = Some(item);
                Poll::Pending
            }
            Poll::Ready(Err(e)) => self.end_with(e.into()),
            Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(item))),
        }
    }

    /// Runs the core's deadlines: ready with `None` when one was handled
    /// (a heartbeat ping queued, a dead peer failed), with the error that
    /// ends the connection when the closing handshake ran out of time.
    fn poll_deadlines(&mut self, cx: &mut Context<'_>) -> Poll<Option<Error>> {
        if self.proto.state() == State::CloseSent {
            let now = Instant::now().into_std();
            self.proto.start_close_timer(self.config.close_timeout, now);
        }
        Poll::Ready(match ready!(self.poll_timer(cx)) {
            Some(Expired::Pong(timeout)) => {
                self.extras().failure = Some(Error::PongTimeout(timeout));
                None
            }
            Some(Expired::Close(timeout)) => Some(Error::Timeout(TimeoutKind::Close, timeout)),
            _ => None,
        })
    }

    /// Reading is over with `err`: nothing more is read or written.
    fn end_with(&mut self, err: Error) -> Poll<Option<Result<Incoming>>> {
        self.teardown = Teardown::Done;
        Poll::Ready(Some(Err(err)))
    }

    /// Reading ended on a failure. A relay hears of a violation before
    /// anything else happens, and nothing more is read until it has sent
    /// the close it owes. Then the queued close goes out, our side of TCP
    /// is shut down, and after a violation what still arrives is read and
    /// discarded (see [`Failure::Violation`]) until the peer closes or the
    /// close timeout passes.
    fn poll_fail(
        &mut self,
        cx: &mut Context<'_>,
        write_waker: &Waker,
        failure: Failure,
    ) -> Poll<Option<Result<Incoming>>> {
        if self.proto.mode() == Mode::Relay && !self.proto.close_sent() {
            return Poll::Ready(self.take_failure().map(Err));
        }
        // Best effort: the peer may already be gone.
        let _ = ready!(self.poll_write_out(write_waker));
        if self.teardown != Teardown::ShutDown {
            let _ = ready!(self.poll_shutdown(write_waker));
            self.teardown = Teardown::ShutDown;
        }
        while failure.lingers() && !matches!(self.poll_close_timer(cx), Poll::Ready(())) {
            match ready!(self.poll_discard(cx)) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.teardown = Teardown::Done;
        Poll::Ready(self.take_failure().map(Err))
    }

    fn take_failure(&mut self) -> Option<Error> {
        self.extras.as_mut()?.failure.take()
    }

    fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// Both close frames are through. The server closes TCP first (RFC 6455
    /// §7.1.1); the client waits for that, up to the close timeout.
    fn poll_finish_close(&mut self, cx: &mut Context<'_>, write_waker: &Waker) -> Poll<Result<()>> {
        if self.proto.config().role == Role::Server {
            let _ = ready!(self.poll_write_out(write_waker));
            let _ = ready!(self.poll_shutdown(write_waker));
            self.teardown = Teardown::Done;
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.teardown == Teardown::PeerClosed {
                let _ = ready!(self.poll_shutdown(write_waker));
                self.teardown = Teardown::Done;
                return Poll::Ready(Ok(()));
            }
            if let Poll::Ready(()) = self.poll_close_timer(cx) {
                self.teardown = Teardown::PeerClosed;
                continue;
            }
            match ready!(self.poll_discard(cx)) {
                Ok(0) | Err(_) => self.teardown = Teardown::PeerClosed,
                Ok(_) => {}
            }
        }
    }

    /// Reads and throws away what arrives: bytes that are no longer part of
    /// a WebSocket stream we parse.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Back to the thread's spares, not freed: every closing connection
        // comes here, and a reconnect storm would otherwise `malloc` and
        // `free` a 64 KiB buffer per connection.
        spare::give(std::mem::take(&mut self.rbuf));
        let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
        let mut buf = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(buf.filled().len()))
    }

    /// The connection's one timer, set to the protocol core's next
    /// deadline. Ready once a deadline came, with what expired (`None`: a
    /// heartbeat ping was queued, or nothing was due after all).
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Option<Expired>> {
        let Some(deadline) = self.proto.poll_timeout() else {
            return Poll::Pending;
        };
        let deadline = Instant::from_std(deadline);
        let timer = self
            .extras()
            .timer
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(self.proto.handle_timeout(Instant::now().into_std()).err())
    }

    /// Starts the close timeout (once) and waits for it: what bounds the
    /// closing handshake, the wait for the peer to close TCP, and lingering
    /// after a failure.
    fn poll_close_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now().into_std();
        self.proto.start_close_timer(self.config.close_timeout, now);
        loop {
            if let Some(Expired::Close(_)) = ready!(self.poll_timer(cx)) {
                return Poll::Ready(());
            }
        }
    }

    /// Reads more bytes into the read buffer, borrowed from the thread's
    /// spares while it holds bytes ([`poll_read_spare`]), so an idle
    /// connection holds none and a busy one reads straight into the buffer
    /// its frames are taken from.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let room = self.rbuf.capacity() - self.rbuf.len();
        if self.rbuf.capacity() != 0 && room < MIN_READ_BUF {
            // Grow towards the frame being received, but in steps: a header
            // alone must not make us commit its whole (limit-sized) payload.
            let wanted = self.proto.bytes_wanted(self.rbuf.len());
            self.rbuf.reserve(wanted.clamp(MIN_READ_BUF, MAX_READ_STEP));
        }
        poll_read_spare(&mut self.io, cx, &mut self.rbuf)
    }

    // ----- writing -----

    /// Writes everything queued and flushes the stream: frames and large
    /// payloads in one vectored write where the stream supports it.
    pub(crate) fn poll_write_out(&mut self, waker: &Waker) -> Poll<io::Result<()>> {
        let mut cx = Context::from_waker(waker);
        let vectored = self.io.is_write_vectored();
        while self.proto.has_output() {
            let out = self.proto.output();
            let io = Pin::new(&mut self.io);
            let n = if vectored && !out.is_contiguous() {
                let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
                let count = out.chunks_vectored(&mut slices);
                ready!(io.poll_write_vectored(&mut cx, &slices[..count]))?
            } else {
                ready!(io.poll_write(&mut cx, out.chunk()))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.proto.consume_output(n);
        }
        Pin::new(&mut self.io).poll_flush(&mut cx)
    }

    fn poll_shutdown(&mut self, waker: &Waker) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(&mut Context::from_waker(waker))
    }

    pub(crate) fn poll_ready_inner(&mut self, waker: &Waker) -> Poll<Result<()>> {
        if self.proto.output().len() >= WRITE_HIGH_WATER {
            ready!(self.poll_write_out(waker))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues a message without writing it: [`WebSocket::flush`] or
    /// [`WebSocket::poll_flush_queued`] send it. Watch
    /// [`WebSocket::queued_len`] for backpressure.
    pub fn queue(&mut self, message: &Message) -> Result<()> {
        if self.teardown == Teardown::Done {
            return Err(Error::Closed);
        }
        self.proto.send(message)?;
        Ok(())
    }

    /// Queues one raw frame without writing it (see [`WebSocket::queue`]).
    /// A large payload a server sends is queued without being copied.
    pub fn queue_frame(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: impl Into<Bytes>,
    ) -> Result<()> {
        if self.teardown == Teardown::Done {
            return Err(Error::Closed);
        }
        self.proto.send_frame_bytes(fin, opcode, payload.into())?;
        Ok(())
    }

    /// Lets compressed messages through untouched (a proxy between two
    /// connections with compatible permessage-deflate parameters): see
    /// [`Protocol::pass_compressed`](frameway_wire::Protocol::pass_compressed).
    pub fn pass_compressed(&mut self, received: bool, sent: bool) {
        self.proto.pass_compressed(received, sent);
    }

    /// Queues the first frame of a message compressed elsewhere, RSV1 set
    /// (see [`WebSocket::pass_compressed`]).
    pub fn queue_frame_compressed(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: impl Into<Bytes>,
    ) -> Result<()> {
        if self.teardown == Teardown::Done {
            return Err(Error::Closed);
        }
        self.proto
            .send_frame_bytes_compressed(fin, opcode, payload.into())?;
        Ok(())
    }

    /// The fast lane from this connection's read buffer to another leg's
    /// protocol core: whether any frame passed.
    fn pass_to(&mut self, lane: &mut Lane<'_>) -> bool {
        if self.rbuf.is_empty()
            || !lane.to_open
            || self.teardown != Teardown::None
            || self.extras.as_ref().is_some_and(|x| x.pending.is_some())
        {
            return false;
        }
        let before = *lane.passed;
        if let Err(e) =
            self.proto
                .pass_frames(&mut self.rbuf, lane.to, lane.max_queued, lane.passed)
        {
            self.extras().failure = Some(Error::Protocol(e));
        }
        *lane.passed != before
    }

    /// Bytes queued and not yet written to the socket.
    pub fn queued_len(&self) -> usize {
        self.proto.output().len()
    }

    /// Writes queued bytes and flushes the stream: [`WebSocket::flush`] as
    /// a poll function, for code that drives several connections from one
    /// task (a proxy moving frames both ways at once).
    pub fn poll_flush_queued(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_write_out(cx.waker()).map_err(Error::from)
    }

    /// [`WebSocket::recv`] as a poll function (without the read timeout).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let waker = cx.waker();
        self.poll_incoming(cx, waker, Reading::Messages)
            .map(|item| item.map(|r| r.map(Incoming::into_message)))
    }

    /// [`WebSocket::recv_frame`] as a poll function (without the read timeout).
    pub fn poll_recv_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame>>> {
        let waker = cx.waker();
        self.poll_incoming(cx, waker, Reading::Frames)
            .map(|item| item.map(|r| r.map(Incoming::into_frame)))
    }

    /// [`WebSocket::poll_recv_frame`] for a relay leg, with the fast lane
    /// ([`Protocol::pass_frames`](frameway_wire::Protocol::pass_frames),
    /// which says what stops it) taken as bytes arrive: the complete data
    /// frames it can take go to `to`'s queue, checked and re-framed (up to
    /// `max_queued` bytes queued; they leave with `to`'s next flush),
    /// counted in `passed`, and [`Relayed::Passed`] says that some did;
    /// every other frame comes back as [`Relayed::Frame`]. The socket is
    /// not read while `to` has a read's worth queued ([`Relayed::Held`]).
    /// A relay that read each frame with `poll_recv_frame` and passed only
    /// what was left in the buffer would take the lane only when a read
    /// brought several frames; in request and response traffic a read
    /// brings one.
    ///
    /// ```
    /// # async fn demo(
    /// #     mut client_leg: frameway::WebSocket<tokio::net::TcpStream>,
    /// #     mut upstream_leg: frameway::WebSocket<tokio::net::TcpStream>,
    /// # ) -> frameway::Result<()> {
    /// use frameway::Relayed;
    /// let mut passed = frameway::Passed::default();
    /// let relayed = std::future::poll_fn(|cx| {
    ///     client_leg.poll_relay(cx, &mut upstream_leg, 64 * 1024, &mut passed)
    /// })
    /// .await;
    /// match relayed {
    ///     Some(Ok(Relayed::Passed | Relayed::Held)) => upstream_leg.flush().await?,
    ///     Some(Ok(Relayed::Frame(frame))) => println!("{:?} left to the caller", frame.opcode),
    ///     Some(Err(e)) => return Err(e),
    ///     None => {}
    /// }
    /// # Ok(()) }
    /// ```
    pub fn poll_relay<P>(
        &mut self,
        cx: &mut Context<'_>,
        to: &mut WebSocket<P>,
        max_queued: usize,
        passed: &mut Passed,
    ) -> Poll<Option<Result<Relayed>>> {
        let waker = cx.waker();
        let lane = Lane {
            to_open: to.teardown == Teardown::None,
            to: &mut to.proto,
            max_queued,
            passed,
        };
        self.poll_incoming(cx, waker, Reading::Relay(lane))
            .map(|item| item.map(|r| r.map(Incoming::into_relayed)))
    }

    pub(crate) fn poll_close_inner(&mut self, waker: &Waker) -> Poll<Result<()>> {
        if self.teardown != Teardown::Done && !self.proto.close_sent() {
            let close = CloseFrame::new(CloseCode::NORMAL, "").ok();
            self.proto.send_close(close.as_ref())?;
        }
        ready!(self.poll_write_out(waker))?;
        Poll::Ready(Ok(()))
    }

    async fn flush_with_timeout(&mut self) -> Result<()> {
        let timeout = self.config.write_timeout;
        let flush = poll_fn(|cx| self.poll_write_out(cx.waker()).map_err(Error::from));
        with_timeout(timeout, TimeoutKind::Write, flush).await?
    }

    /// Sends a message and flushes it.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        let message = message.into();
        poll_fn(|cx| self.poll_ready_inner(cx.waker())).await?;
        self.queue(&message)?;
        self.flush_with_timeout().await
    }

    /// Sends an unfragmented text frame.
    pub async fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.send(Message::Text(text.into())).await
    }

    /// Sends an unfragmented binary frame.
    pub async fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Binary(data.into())).await
    }

    /// Sends a ping (at most 125 bytes). Does not wait for the pong.
    pub async fn send_ping(&mut self, payload: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Ping(payload.into())).await
    }

    /// Sends a pong (at most 125 bytes).
    pub async fn send_pong(&mut self, payload: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Pong(payload.into())).await
    }

    /// Sends a close frame with a status and reason (or none for 1005).
    /// Does not wait for the peer's close; keep reading, or use
    /// [`WebSocket::close`].
    pub async fn send_close(&mut self, close: Option<CloseFrame>) -> Result<()> {
        self.send(Message::Close(close)).await
    }

    /// Sends one raw frame, as lua-resty-websocket's `send_frame`: fragments
    /// are sent as a text or binary frame with `fin = false` followed by
    /// continuation frames. With permessage-deflate, data frames are
    /// compressed as they go (see
    /// [`Protocol::send_frame`](frameway_wire::Protocol::send_frame)).
    pub async fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> Result<()> {
        poll_fn(|cx| self.poll_ready_inner(cx.waker())).await?;
        if self.teardown == Teardown::Done {
            return Err(Error::Closed);
        }
        self.proto.send_frame(fin, opcode, payload)?;
        self.flush_with_timeout().await
    }

    /// Flushes queued frames.
    pub async fn flush(&mut self) -> Result<()> {
        self.flush_with_timeout().await
    }

    /// Closes cleanly: sends a close frame (unless one was sent), waits for
    /// the peer's close frame up to the close timeout (discarding data that
    /// arrives meanwhile), and closes the stream.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        if !self.proto.close_sent() {
            self.proto.close_with(code, reason)?;
        }
        self.flush_with_timeout().await?;
        let timeout = self.config.close_timeout;
        let drain = async {
            while let Some(item) = self.recv_frame().await {
                item?;
            }
            Ok::<(), Error>(())
        };
        with_timeout(Some(timeout), TimeoutKind::Close, drain).await??;
        poll_fn(|cx| self.poll_shutdown(cx.waker())).await.ok();
        Ok(())
    }

    /// Splits into a read half and a write half that can be used from
    /// different tasks. Pongs and close replies are still sent by the read
    /// half while the application only reads.
    pub fn split(self) -> (crate::ReadHalf<S>, crate::WriteHalf<S>) {
        crate::split::split(self)
    }
}

/// Runs `fut` with an optional timeout, counted from when it first has to
/// wait.
///
/// Most reads and writes complete when first polled (a message already
/// buffered, room in the socket's buffer), so the timer is armed only for
/// one that waits. A timer is an allocation and a read of the clock (and,
/// once polled, a place in tokio's timer wheel): armed for every call, it
/// made a 20 B round trip through `send` and `recv` with both timeouts set
/// cost 28% more instructions than without (`benches/calls.rs`).
pub(crate) async fn with_timeout<T>(
    timeout: Option<Duration>,
    kind: TimeoutKind,
    fut: impl Future<Output = T>,
) -> Result<T> {
    let Some(limit) = timeout else {
        return Ok(fut.await);
    };
    let mut fut = std::pin::pin!(fut);
    // Boxed: a timer is a few hundred bytes, and inline it would make
    // every future that reads or writes (and so every idle connection's
    // task) that much larger, timeout or not.
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(Error::Timeout(kind, limit)))
    })
    .await
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_ready_inner(cx.waker())
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().queue(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut()
            .poll_write_out(cx.waker())
            .map_err(Error::from)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_close_inner(cx.waker())
    }
}
