//! Accepting client connections on the configured addresses, plain or TLS.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::config::Config;
use crate::drain::{Drain, DrainSignal};
use crate::metrics::{Metrics, WorkerMetrics};

/// How long closing handshakes may take once the last close of a drain
/// was sent: peers that never answer do not hold the process.
const CLOSE_GRACE: Duration = Duration::from_secs(6);

/// The configuration in force, shared by the workers of one gateway: each
/// new connection takes the one current when it is accepted (a read of a
/// lock per connection, nothing per message).
#[derive(Clone)]
struct Configs {
    tx: Arc<watch::Sender<Arc<Config>>>,
    rx: watch::Receiver<Arc<Config>>,
}

impl Configs {
    fn new(config: Config) -> Configs {
        crate::balancer::start_upkeep(&config.upstreams);
        let (tx, rx) = watch::channel(Arc::new(config));
        Configs {
            tx: Arc::new(tx),
            rx,
        }
    }

    fn current(&self) -> Arc<Config> {
        self.rx.borrow().clone()
    }
}

/// Replaces a running gateway's configuration (see [`Gateway::reloader`]).
#[derive(Clone)]
pub struct Reloader(Arc<watch::Sender<Arc<Config>>>);

impl Reloader {
    /// Serves every connection accepted from now on with `config`, and
    /// listens where it says: every worker binds the addresses it adds and
    /// stops accepting on those it removes (their open connections go on).
    pub fn reload(&self, config: Config) {
        crate::balancer::start_upkeep(&config.upstreams);
        self.0.send_replace(Arc::new(config));
    }

    /// The configuration new connections get now.
    pub fn current(&self) -> Arc<Config> {
        self.0.borrow().clone()
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A gateway bound to its listeners, ready to serve.
///
/// Listeners are bound with `SO_REUSEPORT`, so that one gateway per worker
/// (see [`Gateway::sibling`]) and a replacement process during an upgrade
/// can listen on the same addresses, the kernel spreading connections
/// between them.
pub struct Gateway {
    config: Configs,
    plain: Vec<TcpListener>,
    tls: Vec<TcpListener>,
    metrics: Arc<Metrics>,
    worker: Arc<WorkerMetrics>,
}

/// What another worker needs to listen where a [`Gateway`] listens: its
/// configuration and the addresses it actually bound (port 0 resolved).
/// `Send`, so it can be moved to the worker's thread and bound on that
/// thread's runtime.
pub struct Sibling {
    config: Configs,
    plain: Vec<SocketAddr>,
    tls: Vec<SocketAddr>,
    metrics: Arc<Metrics>,
}

impl Sibling {
    /// Binds this worker's own listeners (on the calling runtime).
    pub async fn bind(self) -> Result<Gateway, StartError> {
        let mut plain = Vec::new();
        for &addr in &self.plain {
            plain.push(bind(addr)?);
        }
        let mut tls = Vec::new();
        for &addr in &self.tls {
            tls.push(bind(addr)?);
        }
        Ok(Gateway {
            config: self.config,
            plain,
            tls,
            worker: self.metrics.worker(),
            metrics: self.metrics,
        })
    }
}

impl Gateway {
    /// Binds every listener of `config`; nothing is served until [`Gateway::serve`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use frameway_gateway::{config::Config, Gateway};
    /// let gateway = Gateway::bind(Config::builtin()).await?;
    /// println!("listening on {:?}", gateway.local_addrs());
    /// gateway.serve().await;
    /// # Ok(()) }
    /// ```
    pub async fn bind(config: Config) -> Result<Gateway, StartError> {
        Sibling {
            plain: config.listen.clone(),
            tls: config.tls_listen.clone(),
            config: Configs::new(config),
            metrics: Metrics::new(),
        }
        .bind()
        .await
    }

    /// What another worker needs to serve the same listeners with the same
    /// configuration: one gateway per worker thread, each with its own
    /// listening sockets, so that no connection and nothing on the
    /// per-message path is shared between cores.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use frameway_gateway::{config::Config, Gateway};
    /// let gateway = Gateway::bind(Config::builtin()).await?;
    /// let sibling = gateway.sibling();
    /// std::thread::spawn(move || {
    ///     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    ///     runtime.block_on(async { sibling.bind().await?.serve().await; Ok::<_, Box<dyn std::error::Error + Send + Sync>>(()) })
    /// });
    /// gateway.serve().await;
    /// # Ok(()) }
    /// ```
    pub fn sibling(&self) -> Sibling {
        let addrs = |listeners: &mut dyn Iterator<Item = &TcpListener>| {
            listeners.filter_map(|l| l.local_addr().ok()).collect()
        };
        Sibling {
            config: self.config.clone(),
            plain: addrs(&mut self.plain.iter()),
            tls: addrs(&mut self.tls.iter()),
            metrics: self.metrics.clone(),
        }
    }

    /// The metrics of this gateway and its siblings (what the admin
    /// listener serves).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The handle that replaces the configuration of this gateway and of
    /// its siblings (a reload): connections accepted from then on get the
    /// new one; connections already open keep the plugin chain and limits
    /// they started with.
    pub fn reloader(&self) -> Reloader {
        Reloader(self.config.tx.clone())
    }

    /// The bound addresses: plain ones first, then TLS ones.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.plain
            .iter()
            .chain(&self.tls)
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves connections until the process ends.
    pub async fn serve(self) {
        self.serve_until(std::future::pending()).await
    }

    /// Serves connections until `stop` resolves, then drains: stops
    /// accepting at once (the listening sockets close), lets open
    /// connections go on for the configuration's `drain_timeout`, then
    /// closes those still open with 1001 on both legs, spread over
    /// `close_spread`, and returns once they have ended (or a grace period
    /// after the last close, for peers that never answer).
    pub async fn serve_until(self, stop: impl Future<Output = ()>) {
        let running = self.config.current();
        let (drain, signal) = Drain::new(running.close_spread);
        let mut listening = Listening {
            accepting: tokio::task::JoinSet::new(),
            loops: Vec::new(),
            configs: self.config.clone(),
            signal,
            worker: self.worker.clone(),
        };
        // Keyed by the address as configured (port 0 included), so that a
        // reload that keeps an address keeps its listener.
        for (&addr, listener) in running.listen.iter().zip(self.plain) {
            listening.start(addr, false, listener);
        }
        for (&addr, listener) in running.tls_listen.iter().zip(self.tls) {
            listening.start(addr, true, listener);
        }
        // A reload before this point is followed at once: `follow` only
        // changes what differs.
        let mut changes = self.config.rx.clone();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                changed = changes.changed() => match changed {
                    Ok(()) => {
                        let config = changes.borrow_and_update().clone();
                        listening.follow(&config);
                    }
                    Err(_) => (&mut stop).await,
                },
            }
        }
        let Listening {
            accepting, signal, ..
        } = listening;
        let mut accepting = accepting;
        drop(signal);
        self.metrics.set_draining();
        accepting.shutdown().await;
        let drain_timeout = running.drain_timeout;
        tracing::info!(
            "draining: no new connections; open ones close in {} ms",
            drain_timeout.as_millis()
        );
        if tokio::time::timeout(drain_timeout, drain.ended())
            .await
            .is_ok()
        {
            return;
        }
        drain.go_away();
        let last_close = drain.spread() + CLOSE_GRACE;
        if tokio::time::timeout(last_close, drain.ended())
            .await
            .is_err()
        {
            tracing::warn!("drained with connections still open after the grace period");
        }
    }
}

/// A worker's accept loops, one per listening address, and what it needs
/// to start more when a reload adds addresses.
struct Listening {
    accepting: tokio::task::JoinSet<()>,
    /// The configured address, whether it is TLS, and its accept loop.
    loops: Vec<(SocketAddr, bool, tokio::task::AbortHandle)>,
    configs: Configs,
    signal: DrainSignal,
    worker: Arc<WorkerMetrics>,
}

impl Listening {
    fn start(&mut self, addr: SocketAddr, tls: bool, listener: TcpListener) {
        let handle = self.accepting.spawn(accept_loop(
            listener,
            tls,
            self.configs.clone(),
            self.signal.clone(),
            self.worker.clone(),
        ));
        self.loops.push((addr, tls, handle));
    }

    /// Listens where a reloaded `config` says: addresses it no longer has
    /// stop accepting (their open connections go on), new ones are bound.
    fn follow(&mut self, config: &Config) {
        let wanted = |addr: &SocketAddr, tls: bool| match tls {
            false => config.listen.contains(addr),
            true => config.tls_listen.contains(addr),
        };
        self.loops.retain(|(addr, tls, handle)| {
            let keep = wanted(addr, *tls);
            if !keep {
                handle.abort();
                tracing::info!(%addr, "reload: no longer listening");
            }
            keep
        });
        let new: Vec<(SocketAddr, bool)> = config
            .listen
            .iter()
            .map(|&a| (a, false))
            .chain(config.tls_listen.iter().map(|&a| (a, true)))
            .filter(|&(a, tls)| !self.loops.iter().any(|&(b, t, _)| a == b && t == tls))
            .collect();
        for (addr, tls) in new {
            match reuseport_listener(addr) {
                Ok(listener) => {
                    tracing::info!(%addr, "reload: listening");
                    self.start(addr, tls, listener);
                }
                Err(err) => tracing::error!(%addr, "reload: cannot listen: {err}"),
            }
        }
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    reuseport_listener(addr).map_err(|source| StartError::Bind { addr, source })
}

/// A listening socket on `addr` with `SO_REUSEPORT` (and `SO_REUSEADDR`) set,
/// on the calling tokio runtime: several workers, or an old and a new
/// process, can each have one on the same address. `TCP_NODELAY` is set
/// on it, and the connections it accepts inherit it.
pub fn reuseport_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    // Frames are written whole and flushed; Nagle's algorithm would only
    // hold small ones back for an ACK. Set once here rather than with one
    // system call per accepted connection (a reconnect storm's thousands).
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    // A reconnect storm (every client of a deploy at once) overflows a
    // short accept queue, and a dropped SYN costs its client a one-second
    // retransmit; the kernel caps this at net.core.somaxconn.
    socket.listen(LISTEN_BACKLOG)
}

/// The accept queue asked of the kernel: nginx's and HAProxy's usual
/// production setting.
const LISTEN_BACKLOG: u32 = 4096;

async fn accept_loop(
    listener: TcpListener,
    tls: bool,
    configs: Configs,
    drain: DrainSignal,
    worker: Arc<WorkerMetrics>,
) {
    let mut failing = AcceptFailures::default();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => {
                failing.recovered();
                conn
            }
            Err(e) => {
                worker.accept_failed();
                tokio::time::sleep(failing.failed(&e)).await;
                continue;
            }
        };
        let config = configs.current();
        let drain = drain.clone();
        if !tls {
            let worker = worker.clone();
            tokio::spawn(crate::handshake::serve(
                tcp, peer, false, config, drain, worker,
            ));
            continue;
        }
        // The certificates too are those of the configuration current now:
        // a reload serves renewed ones from the next connection on.
        let Some(acceptor) = config.tls_acceptor.clone() else {
            // A configuration with `tls_listen` has a certificate; this is a
            // listener a reload is removing.
            tracing::debug!(%peer, "no TLS certificate any more: connection dropped");
            continue;
        };
        let worker = worker.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(config.handshake_timeout, acceptor.accept(tcp));
            match handshake.await {
                Ok(Ok(stream)) => {
                    crate::handshake::serve(stream, peer, true, config, drain, worker).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// An episode of failing accepts (out of file descriptors, typically): one
/// log line when it starts and one when it ends with its count, not one per
/// try, and a growing pause between tries so that a listener that cannot
/// accept does not spin.
#[derive(Default)]
struct AcceptFailures {
    count: u64,
}

impl AcceptFailures {
    const FIRST_PAUSE: Duration = Duration::from_millis(10);
    const MAX_PAUSE: Duration = Duration::from_secs(1);

    /// Records a failure; returns how long to wait before the next try.
    fn failed(&mut self, err: &std::io::Error) -> Duration {
        if self.count == 0 {
            tracing::warn!("accept failed: {err}; retrying with backoff until it succeeds");
        }
        self.count += 1;
        let doublings = (self.count - 1).min(7) as u32;
        (Self::FIRST_PAUSE * 2u32.pow(doublings)).min(Self::MAX_PAUSE)
    }

    /// An accept succeeded: ends the episode, if one was running.
    fn recovered(&mut self) {
        if self.count > 0 {
            tracing::warn!(
                failures = self.count,
                "accepting again after {} failed accepts",
                self.count
            );
            self.count = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AcceptFailures;
    use std::time::Duration;

    #[test]
    fn failed_accepts_back_off_up_to_a_second_and_reset_on_success() {
        let err = std::io::Error::from_raw_os_error(24);
        let mut failures = AcceptFailures::default();
        let pauses: Vec<Duration> = (0..10).map(|_| failures.failed(&err)).collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(pauses[9], Duration::from_secs(1));
        failures.recovered();
        assert_eq!(failures.failed(&err), Duration::from_millis(10));
    }

    // The accept loop relies on this instead of setting TCP_NODELAY on each
    // connection: if a kernel stopped passing it on, small frames would
    // wait for ACKs.
    #[tokio::test]
    async fn accepted_connections_inherit_nodelay_from_the_listener() {
        let listener = super::reuseport_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
