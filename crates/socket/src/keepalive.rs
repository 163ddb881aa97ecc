//! Ping interval with a pong deadline (Ktor's `pingInterval` and `timeout`).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::{sleep, Instant, Sleep};

/// What the keep-alive timer asks for.
pub(crate) enum KeepaliveAction {
    /// Time to send a ping.
    Ping,
    /// A ping went unanswered past the deadline.
    Dead,
}

/// Sends a ping every `interval`; declares the connection dead if a pong does
/// not follow within `timeout`.
#[derive(Debug)]
pub(crate) struct Keepalive {
    interval: Duration,
    pub(crate) timeout: Duration,
    timer: Pin<Box<Sleep>>,
    awaiting_pong: bool,
}

impl Keepalive {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Self {
        Keepalive {
            interval,
            timeout,
            timer: Box::pin(sleep(interval)),
            awaiting_pong: false,
        }
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<KeepaliveAction> {
        ready!(self.timer.as_mut().poll(cx));
        if self.awaiting_pong {
            return Poll::Ready(KeepaliveAction::Dead);
        }
        self.awaiting_pong = true;
        self.timer.as_mut().reset(Instant::now() + self.timeout);
        Poll::Ready(KeepaliveAction::Ping)
    }

    pub(crate) fn on_pong(&mut self) {
        if self.awaiting_pong {
            self.awaiting_pong = false;
            self.timer.as_mut().reset(Instant::now() + self.interval);
        }
    }
}
