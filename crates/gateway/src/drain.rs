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
    /// Resolves when connection `id` should close: once the drain says so,
    /// after this connection's own share of the spread. Boxed: a pending
    /// `watch` wait is larger than what an idle connection otherwise holds
    /// inline.
    pub(crate) fn going_away(self, id: u64) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let DrainSignal { mut rx, spread } = self;
        Box::pin(async move {
            if rx.wait_for(|away| *away).await.is_err() {
                // The worker is gone without draining: nothing will come.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(spread.mul_f64(jitter(id))).await;
        })
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
    async fn the_worker_learns_when_every_connection_has_ended() {
        let (drain, signal) = Drain::new(Duration::from_millis(10));
        let connection = tokio::spawn(signal.clone().going_away(3));
        drop(signal);
        drain.go_away();
        connection.await.unwrap();
        drain.ended().await;
    }
}
