//! The deadlines of one connection, owned by the protocol core as
//! quinn-proto's connection owns its timers: the core never reads a clock.
//! A driver asks [`Protocol::poll_timeout`](crate::Protocol::poll_timeout)
//! when it must next wake, sleeps until then (or until IO), and hands the
//! time to [`Protocol::handle_timeout`](crate::Protocol::handle_timeout),
//! which queues the heartbeat ping or reports what expired.

use std::time::{Duration, Instant};

/// The payload of heartbeat pings, by which their pongs are told apart
/// from the answers to the application's own pings.
pub(crate) const HEARTBEAT_PAYLOAD: &[u8] = b"frameway-heartbeat";

/// Keep-alive pings: a ping every `interval`, and the peer counted dead if
/// no pong arrives within `timeout` of it (Ktor's `pingInterval` and
/// `timeout`). What finds a dead peer behind a NAT before any idle timeout.
///
/// Heartbeats are the core's own traffic: the pong that answers one is
/// consumed, never returned by `read_frame` or `read_message` (the peer's
/// pings, and pongs to the application's pings, are returned as ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Time from one ping to the next.
    pub interval: Duration,
    /// How long a ping may go unanswered.
    pub timeout: Duration,
}

/// A deadline [`Protocol::handle_timeout`](crate::Protocol::handle_timeout)
/// found passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expired {
    /// A heartbeat ping went unanswered for its timeout; a 1001 "pong
    /// timeout" close frame is queued.
    Pong(Duration),
    /// The closing handshake did not finish within the close timeout
    /// (counted from [`Protocol::start_close_timer`](crate::Protocol::start_close_timer)).
    Close(Duration),
}

/// Every deadline a connection may have; most have none, so the protocol
/// keeps this behind a pointer.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heartbeat: Option<Beat>,
    close: Option<(Instant, Duration)>,
}

/// A heartbeat's schedule.
#[derive(Debug)]
struct Beat {
    policy: Heartbeat,
    /// When the next ping goes out (no ping is awaiting its pong).
    next_ping: Instant,
    /// The ping in flight: when it was sent, and whether its pong came.
    awaiting: Option<(Instant, bool)>,
}

/// What [`Timers::expire`] asks the protocol to do.
pub(crate) enum Due {
    Nothing,
    Ping,
    Expired(Expired),
}

impl Timers {
    pub(crate) fn set_heartbeat(&mut self, policy: Heartbeat, now: Instant) {
        self.heartbeat = Some(Beat {
            policy,
            next_ping: later(now, policy.interval),
            awaiting: None,
        });
    }

    /// Starts the close deadline, unless it is already running.
    pub(crate) fn start_close(&mut self, timeout: Duration, now: Instant) {
        self.close.get_or_insert((later(now, timeout), timeout));
    }

    /// A pong arrived: whether it answers the heartbeat ping in flight
    /// (the first pong with its payload while one is).
    pub(crate) fn on_pong(&mut self, payload: &[u8]) -> bool {
        match &mut self.heartbeat {
            Some(Beat {
                awaiting: Some((_, answered @ false)),
                ..
            }) if payload == HEARTBEAT_PAYLOAD => {
                *answered = true;
                true
            }
            _ => false,
        }
    }

    /// The earliest deadline. `open`: whether heartbeats still matter (they
    /// stop once the closing handshake starts).
    pub(crate) fn next(&self, open: bool) -> Option<Instant> {
        let beat = self
            .heartbeat
            .as_ref()
            .filter(|_| open)
            .map(|b| match b.awaiting {
                Some((sent, _)) => later(sent, b.policy.timeout),
                None => b.next_ping,
            });
        let close = self.close.map(|(at, _)| at);
        match (beat, close) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What is due at `now`.
    pub(crate) fn expire(&mut self, now: Instant, open: bool) -> Due {
        if let Some((at, timeout)) = self.close {
            if now >= at {
                return Due::Expired(Expired::Close(timeout));
            }
        }
        let Some(beat) = self.heartbeat.as_mut().filter(|_| open) else {
            return Due::Nothing;
        };
        match beat.awaiting {
            Some((sent, answered)) if now >= later(sent, beat.policy.timeout) => {
                if !answered {
                    return Due::Expired(Expired::Pong(beat.policy.timeout));
                }
                beat.awaiting = None;
                beat.next_ping = later(sent, beat.policy.interval);
                if now >= beat.next_ping {
                    beat.awaiting = Some((now, false));
                    return Due::Ping;
                }
                Due::Nothing
            }
            Some(_) => Due::Nothing,
            None if now >= beat.next_ping => {
                beat.awaiting = Some((now, false));
                Due::Ping
            }
            None => Due::Nothing,
        }
    }
}

/// `now + after`, or a time that never comes for a duration too large to
/// add (a configuration of "practically never" must not panic).
fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(Duration::from_secs(u32::MAX.into())))
        .unwrap_or(now)
}
