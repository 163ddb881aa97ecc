//! Graceful drain: what a worker tells its open connections when the
//! process is asked to stop (SIGTERM, SIGINT).
//!
//! A worker stops accepting at once, lets its connections go on for
//! `drain_timeout`, then tells those still open to go away: each closes both
//! legs with 1001 "Going Away" after a delay of its own within
//! `close_spread`, so that thousands of clients do not reconnect in the same
//! second. The signal is a `watch` channel: a connection that starts after
//! it was sent still sees it, and the worker learns that every connection
//! has ended when the last receiver is gone.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::watch;

/// The worker's side: tells its connections to go away, and learns when
/// they have all ended.
#[derive(Debug)]
pub(crate) struct Drain {
    tx: watch::Sender<bool>,
    spread: Duration,
}

/// A connection's side of the drain signal.
#[derive(Debug, Clone)]
pub(crate) struct DrainSignal {
    rx: watch::Receiver<bool>,
    spread: Duration,
}

impl Drain {
    /// A drain whose closes are spread over `spread`, and the signal every
    /// connection gets a copy of.
    pub(crate) fn new(spread: Duration) -> (Drain, DrainSignal) {
        let (tx, rx) = watch::channel(false);
        (Drain { tx, spread }, DrainSignal { rx, spread })
    }

    /// Tells every connection, open or yet to start, to go away.
    pub(crate) fn go_away(&self) {
        self.tx.send_replace(true);
    }

    /// Resolves once no connection holds a signal any more.
    pub(crate) async fn ended(&self) {
        self.tx.closed().await
    }

    /// The longest a connection waits before it closes, once told to.
    pub(crate) fn spread(&self) -> Duration {
        self.spread
    }
}

impl DrainSignal {
    /// What tells connection `id` to close: once the drain says so, after
    /// this connection's own share of the spread.
    pub(crate) fn going_away(self, id: u64) -> GoingAway {
        let DrainSignal { mut rx, spread } = self;
        let mut wait = rx.clone();
        if *rx.borrow() {
            // Already told: the wait goes straight on to its own timer,
            // which only polling it can see fire.
            rx.mark_changed();
        }
        GoingAway {
            drain: rx,
            wait: Box::pin(async move {
                if wait.wait_for(|away| *away).await.is_err() {
                    // The worker is gone without draining: nothing will come.
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(spread.mul_f64(jitter(id))).await;
            }),
            registered: None,
        }
    }
}

/// A connection's wait for the drain, polled each time its relay has
/// nothing else to do.
///
/// Polling the `watch` wait takes the channel's lock to check the waker it
/// holds, a few hundred instructions on every proxied message. Until the
/// drain is sent, the wait has nothing new to say and holds the waker it
/// was last polled with, so it is polled again only once the channel
/// changed (from then on, every time: its spread timer follows) or with
/// another waker.
pub(crate) struct GoingAway {
    /// The channel's version, read without its lock.
    drain: watch::Receiver<bool>,
    /// Boxed: a pending `watch` wait is larger than what an idle connection
    /// otherwise holds inline.
    wait: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The waker `wait` was last polled with.
    registered: Option<Waker>,
}

/// Ready once this connection should close.
impl Future for GoingAway {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let changed = this.drain.has_changed().unwrap_or(true);
        if !changed
            && this
                .registered
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        this.registered = Some(cx.waker().clone());
        this.wait.as_mut().poll(cx)
    }
}

/// A number in [0, 1) that spreads connection ids evenly (Fibonacci
/// hashing: consecutive ids land far apart).
fn jitter(id: u64) -> f64 {
    let mixed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_connections_close_at_spread_out_times() {
        let mut shares: Vec<f64> = (1..=100).map(jitter).collect();
        assert!(shares.iter().all(|s| (0.0..1.0).contains(s)));
        shares.sort_by(f64::total_cmp);
        // Every tenth of the spread gets some of 100 consecutive ids.
        for tenth in 0..10 {
            let lo = tenth as f64 / 10.0;
            assert!(
                shares.iter().any(|s| (lo..lo + 0.1).contains(s)),
                "no close in [{lo}, {})",
                lo + 0.1
            );
        }
    }

    #[tokio::test]
    async fn a_connection_that_starts_after_the_signal_still_goes_away() {
        let (drain, signal) = Drain::new(Duration::ZERO);
        drain.go_away();
        signal.clone().going_away(7).await;
        drop(signal);
    }

    #[tokio::test]
    async fn a_connection_that_starts_after_the_signal_waits_out_its_share_of_the_spread() {
        let (drain, signal) = Drain::new(Duration::from_millis(50));
        drain.go_away();
        // A signal that has seen the drain already, as one taken after it
        // would have.
        let mut seen = signal.clone();
        seen.rx.mark_unchanged();
        // Spawned, as a connection is: polled with one waker throughout.
        // The spread's timer fires after the first poll, and a wait skipped
        // from then on would never see it.
        let going = tokio::spawn(seen.going_away(7));
        tokio::time::timeout(Duration::from_secs(10), going)
            .await
            .expect("the connection goes away within its spread")
            .unwrap();
        drop(signal);
    }

    #[tokio::test]
    async fn the_worker_learns_when_every_connection_has_ended() {
        let (drain, signal) = Drain::new(Duration::from_millis(10));
        let connection = tokio::spawn(signal.clone().going_away(3));
        drop(signal);
        drain.go_away();
        connection.await.unwrap();
        drain.ended().await;
    }
}
