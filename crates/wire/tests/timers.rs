//! The protocol core's timers, driven in memory with a made-up clock: two
//! endpoints pass bytes by hand, and time moves only when a test says so.

use std::time::{Duration, Instant};

use frameway_wire::{
    CloseCode, CloseFrame, Config, Expired, Failure, Heartbeat, Message, Protocol, Role, State,
};

const SECOND: Duration = Duration::from_secs(1);

/// A server with a heartbeat, a client, and the time they started.
struct Pair {
    server: Protocol,
    client: Protocol,
    start: Instant,
}

impl Pair {
    fn new() -> Pair {
        let start = Instant::now();
        let mut server = Protocol::new(Config::new(Role::Server), |b| b.fill(7));
        let heartbeat = Heartbeat {
            interval: 10 * SECOND,
            timeout: 5 * SECOND,
        };
        server.set_heartbeat(heartbeat, start);
        let client = Protocol::new(Config::new(Role::Client), |b| b.fill(7));
        Pair {
            server,
            client,
            start,
        }
    }

    /// Delivers what the server queued to the client: the messages it read.
    fn deliver_to_client(&mut self) -> Vec<Message> {
        let mut wire = self.server.take_output();
        std::iter::from_fn(|| self.client.read_message(&mut wire).unwrap()).collect()
    }

    /// Delivers what the client queued to the server.
    fn deliver_to_server(&mut self) -> Vec<Message> {
        let mut wire = self.client.take_output();
        std::iter::from_fn(|| self.server.read_message(&mut wire).unwrap()).collect()
    }
}

#[test]
fn a_heartbeat_pings_once_the_interval_has_passed_and_not_before() {
    let mut pair = Pair::new();
    assert_eq!(pair.server.poll_timeout(), Some(pair.start + 10 * SECOND));
    assert_eq!(pair.server.handle_timeout(pair.start + 9 * SECOND), Ok(()));
    assert!(!pair.server.has_output());
    assert_eq!(pair.server.handle_timeout(pair.start + 10 * SECOND), Ok(()));
    assert_eq!(
        pair.deliver_to_client(),
        [Message::Ping("frameway-heartbeat".into())]
    );
}

#[test]
fn an_answered_ping_schedules_the_next_one() {
    let mut pair = Pair::new();
    pair.server
        .handle_timeout(pair.start + 10 * SECOND)
        .unwrap();
    pair.deliver_to_client();
    // The client answered by itself; the server consumes its own pong.
    assert_eq!(pair.deliver_to_server(), []);
    assert_eq!(pair.server.handle_timeout(pair.start + 15 * SECOND), Ok(()));
    assert!(!pair.server.has_output());
    assert_eq!(pair.server.poll_timeout(), Some(pair.start + 20 * SECOND));
    pair.server
        .handle_timeout(pair.start + 20 * SECOND)
        .unwrap();
    assert_eq!(
        pair.deliver_to_client(),
        [Message::Ping("frameway-heartbeat".into())]
    );
}

#[test]
fn pongs_the_heartbeat_did_not_ask_for_reach_the_application() {
    let mut pair = Pair::new();
    // Unsolicited, and no heartbeat ping in flight.
    pair.client
        .send(&Message::Pong("frameway-heartbeat".into()))
        .unwrap();
    assert_eq!(
        pair.deliver_to_server(),
        [Message::Pong("frameway-heartbeat".into())]
    );
    // With one in flight, a pong with another payload is the application's.
    pair.server
        .handle_timeout(pair.start + 10 * SECOND)
        .unwrap();
    pair.client.send(&Message::Pong("mine".into())).unwrap();
    assert_eq!(pair.deliver_to_server(), [Message::Pong("mine".into())]);
}

#[test]
fn an_unanswered_ping_ends_the_connection_with_1001() {
    let mut pair = Pair::new();
    pair.server
        .handle_timeout(pair.start + 10 * SECOND)
        .unwrap();
    // The client never reads it.
    drop(pair.server.take_output());
    assert_eq!(
        pair.server.handle_timeout(pair.start + 15 * SECOND),
        Err(Expired::Pong(5 * SECOND))
    );
    let close = CloseFrame::new(CloseCode::GOING_AWAY, "pong timeout").unwrap();
    assert_eq!(pair.deliver_to_client(), [Message::Close(Some(close))]);
    // The peer is gone: no more heartbeats, and no lingering for it.
    assert_eq!(pair.server.state(), State::Failed(Failure::DeadPeer));
    assert!(!Failure::DeadPeer.lingers());
    assert_eq!(pair.server.poll_timeout(), None);
}

#[test]
fn the_close_timer_bounds_the_closing_handshake() {
    let mut pair = Pair::new();
    pair.server.close_with(CloseCode::NORMAL, "bye").unwrap();
    let at = pair.start + SECOND;
    pair.server.start_close_timer(3 * SECOND, at);
    // Started once: a second start does not move it.
    pair.server.start_close_timer(3 * SECOND, at + SECOND);
    assert_eq!(pair.server.poll_timeout(), Some(at + 3 * SECOND));
    assert_eq!(pair.server.handle_timeout(at + 2 * SECOND), Ok(()));
    assert_eq!(
        pair.server.handle_timeout(at + 3 * SECOND),
        Err(Expired::Close(3 * SECOND))
    );
}

#[test]
fn a_connection_without_timers_never_needs_waking() {
    let mut client = Protocol::new(Config::new(Role::Client), |b| b.fill(7));
    assert_eq!(client.poll_timeout(), None);
    assert_eq!(client.handle_timeout(Instant::now()), Ok(()));
}
