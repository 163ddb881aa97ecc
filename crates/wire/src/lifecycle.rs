//! A connection's life, as the protocol core tracks it: which replies it
//! makes by itself ([`Mode`]) and where the connection stands ([`State`]).
//!
//! The drivers (the socket layer, the gateway's relay) read [`State`] to
//! know what is left to do with the transport: keep reading, wait for the
//! peer's close, linger after a failure, or close TCP. The deadlines that
//! bound each of these are the core's too (see
//! [`Protocol::poll_timeout`](crate::Protocol::poll_timeout)).

/// Which parts of the protocol the core carries out by itself.
///
/// ```
/// use bytes::BytesMut;
/// use frameway_wire::{Config, Message, Mode, Protocol, Role, State};
///
/// let mut leg = Protocol::new(Config::new(Role::Server), |b| b.fill(7));
/// leg.set_mode(Mode::Relay);
/// let mut client = Protocol::new(Config::new(Role::Client), |b| b.fill(7));
/// client.send(&Message::Ping("p".into())).unwrap();
/// client.send(&Message::Close(None)).unwrap();
///
/// let mut wire = client.take_output();
/// assert_eq!(leg.read_message(&mut wire).unwrap(), Some(Message::Ping("p".into())));
/// assert_eq!(leg.read_message(&mut wire).unwrap(), Some(Message::Close(None)));
/// // Neither is answered: that is for the other leg's peer to do.
/// assert!(!leg.has_output());
/// assert_eq!(leg.state(), State::CloseReceived);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// A WebSocket endpoint: pings are answered with pongs, a close frame
    /// with a close frame echoing its status, and a protocol violation
    /// with the close frame its [`close_code`](crate::ProtocolError::close_code)
    /// calls for.
    #[default]
    Endpoint,
    /// One leg of a proxy: pings, closes and violations are only reported.
    /// The caller answers them with what the other leg's peer says, once
    /// that peer has said it (a pong from the other side, its close frame,
    /// or a close after delivering what it still sends).
    Relay,
}

/// Where a connection stands.
///
/// ```text
///            send close              peer's close
///   Open ───────────────▶ CloseSent ─────────────▶ Closed
///    │ │   peer's close                send close    ▲
///    │ └───────────────▶ CloseReceived ──────────────┘
///    │   violation or dead peer
///    └─────────────────▶ Failed
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// Neither side has sent a close frame.
    Open,
    /// We sent a close frame and wait for the peer's, until the close
    /// deadline.
    CloseSent,
    /// The peer sent a close frame and ours is not yet queued (a relay's
    /// leg, until the other side has closed).
    CloseReceived,
    /// Reading ended on a failure; nothing more is parsed. The close frame
    /// the failure calls for is queued ([`Mode::Endpoint`]) or the caller's
    /// to send ([`Mode::Relay`]). Then the driver shuts its side down and,
    /// after a violation, lingers (see [`Failure`]).
    Failed(Failure),
    /// Both close frames are through. The server closes TCP first
    /// (RFC 6455 §7.1.1); a client waits for that until the close deadline.
    Closed,
}

/// Why reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The peer broke the protocol. It may still be sending (the rest of an
    /// oversize message, its answering close): the driver reads and
    /// discards that until the peer closes TCP or the close deadline
    /// passes, because closing a socket with unread data resets the
    /// connection, and a reset can destroy our close frame before the peer
    /// reads it.
    Violation,
    /// A heartbeat ping went unanswered: the peer is gone and is not waited
    /// for.
    DeadPeer,
}

impl Failure {
    /// Whether the driver reads (and discards) what still arrives before
    /// closing TCP.
    pub fn lingers(self) -> bool {
        self == Failure::Violation
    }
}
