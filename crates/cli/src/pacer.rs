//! The open loop's clock (`frameway bench --rate`): a thread that releases
//! each message at its scheduled time, finer than tokio's timer can.
//!
//! tokio's timer fires in whole milliseconds. Paced by it, an open loop sends
//! each millisecond's messages as one burst, and the latency it reports
//! (measured from each message's scheduled time) includes that burst's
//! queueing and the timer's own lateness, up to a millisecond, whatever the
//! server does. The pacer sleeps on a thread of its own, which the kernel
//! wakes within tens of microseconds, and hands out the messages that fell
//! due since its last wake, round robin over the connections, each with the
//! time it was due.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{channel, Receiver, Sender};

/// Messages a connection may fall behind its schedule before the run fails:
/// a server that stalls cannot make the generator grow without limit.
pub(crate) const MAX_BEHIND: usize = 1 << 16;

/// The least the pacer sleeps: how late a message may be released.
const QUANTUM: Duration = Duration::from_micros(100);

/// The most the pacer sleeps, so that dropping it returns promptly.
const MAX_SLEEP: Duration = Duration::from_millis(10);

/// A running pacer; dropping it stops the thread.
pub(crate) struct Pacer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts releasing `rate` messages per second in total over `connections`
/// connections; each gets the receiving end of its schedule, which closes
/// when the pacer stops, or early if that connection fell more than
/// [`MAX_BEHIND`] messages behind.
pub(crate) fn start(
    rate: f64,
    connections: usize,
) -> std::io::Result<(Pacer, Vec<Receiver<tokio::time::Instant>>)> {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..connections).map(|_| channel(MAX_BEHIND)).unzip();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn({
            let stop = stop.clone();
            move || release(rate, senders, &stop)
        })?;
    let pacer = Pacer {
        stop,
        thread: Some(thread),
    };
    Ok((pacer, receivers))
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The pacer's thread: message `k` is due `k / rate` seconds after the
/// start, and goes to connection `k mod n`.
fn release(rate: f64, mut senders: Vec<Sender<tokio::time::Instant>>, stop: &AtomicBool) {
    let start = Instant::now();
    let due = |k: u64| start + Duration::from_secs_f64(k as f64 / rate);
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) && !senders.is_empty() {
        let now = Instant::now();
        while due(k) <= now {
            let at = (k % senders.len() as u64) as usize;
            match senders[at].try_send(tokio::time::Instant::from_std(due(k))) {
                Ok(()) => k += 1,
                // Too far behind, or gone: that connection's schedule ends
                // (its sender reports which), the others' go on.
                Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                    senders.swap_remove(at);
                    if senders.is_empty() {
                        return;
                    }
                }
            }
        }
        // At tens of thousands of messages a second a wake per message
        // would cost the generator more than the sending: it wakes at most
        // once per quantum and releases what fell due meanwhile. At a slow
        // rate it still wakes often enough to see that it was stopped.
        let until_due = due(k).saturating_duration_since(Instant::now());
        std::thread::sleep(until_due.clamp(QUANTUM, MAX_SLEEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The due times a schedule receives, up to `n` of them.
    async fn take(schedule: &mut Receiver<tokio::time::Instant>, n: usize) -> Vec<Instant> {
        let mut due = Vec::new();
        while due.len() < n {
            let Some(at) = schedule.recv().await else {
                break;
            };
            due.push(at.into_std());
        }
        due
    }

    #[tokio::test]
    async fn messages_are_due_evenly_and_go_round_robin_over_the_connections() {
        let (_pacer, mut schedules) = start(100_000.0, 3).unwrap();
        let mut due = Vec::new();
        for schedule in &mut schedules {
            due.push(take(schedule, 10).await);
        }
        let first = due[0][0];
        let close = |at: Instant, micros: u64| {
            at.duration_since(first)
                .abs_diff(Duration::from_micros(micros))
                <= Duration::from_micros(1)
        };
        // Message k is due k / rate after the start: connection i's j-th
        // is message 3j + i, due 10 µs apart.
        for (i, times) in due.iter().enumerate() {
            assert_eq!(times.len(), 10);
            for (j, at) in times.iter().enumerate() {
                assert!(
                    close(*at, 10 * (3 * j + i) as u64),
                    "connection {i}, message {j}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_connection_too_far_behind_has_its_schedule_ended() {
        let (_pacer, mut schedules) = start(1_000_000.0, 1).unwrap();
        let schedule = &mut schedules[0];
        // Not read while the pacer runs ahead, a million messages a second:
        // it ends the schedule once MAX_BEHIND wait (bounded: ten seconds).
        for _ in 0..10_000 {
            if schedule.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(schedule.is_closed());
        assert_eq!(take(schedule, MAX_BEHIND + 1).await.len(), MAX_BEHIND);
    }
}
