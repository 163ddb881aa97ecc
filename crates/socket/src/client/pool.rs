//! Connection pools, as lua-resty-websocket has them (ngx_lua's cosocket
//! pools): upgraded connections parked by
//! [`set_keepalive`](WebSocket::set_keepalive) and handed out again by
//! `connect`, and optionally a cap on a pool's open connections with a
//! bounded queue of connects waiting for one.
//!
//! Pools live in one process-wide registry (the nginx worker's, here the
//! process's), keyed by name, and are never removed. Nothing runs in the
//! background: idle connections that expired or were closed by the server
//! are found and dropped the next time their pool is used.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use frameway_wire::State;
use rustls_pki_types::ServerName;
use tokio::sync::oneshot;

use super::options::{invalid_input, ConnectOptions};
use super::stream::ClientStream;
use super::url::WsUrl;
use crate::connection::WebSocket;
use crate::error::{Error, Result, TimeoutKind};
use crate::sync::lock;

/// The pool `name`; created with `create` = (size, backlog) if missing and
/// asked to.
fn find(name: &Arc<str>, create: Option<(usize, Option<usize>)>) -> Option<Arc<Pool>> {
    static POOLS: OnceLock<Mutex<HashMap<Arc<str>, Arc<Pool>>>> = OnceLock::new();
    let mut pools = lock(POOLS.get_or_init(Default::default));
    if let Some(pool) = pools.get(name) {
        return Some(pool.clone());
    }
    let (size, backlog) = create?;
    let pool = Arc::new(Pool {
        state: Mutex::new(Shelves {
            size,
            backlog,
            open: 0,
            idle: VecDeque::new(),
            waiters: VecDeque::new(),
        }),
    });
    pools.insert(name.clone(), pool.clone());
    Some(pool)
}

/// The pool name for a connect: the `pool` option, else one naming
/// everything that makes two connections interchangeable, so that
/// different URLs, TLS settings or proxies never share connections.
pub(crate) fn pool_name(
    options: &ConnectOptions,
    url: &WsUrl,
    sni: Option<&ServerName<'_>>,
) -> Arc<str> {
    if let Some(name) = &options.pool {
        return name.as_str().into();
    }
    // A WebSocket connection is upgraded for one resource: the path is
    // part of the name (lua-resty-websocket leaves it out).
    let mut name = String::with_capacity(80);
    name.push_str(url.scheme());
    name.push_str("://");
    url.push_authority(&mut name);
    name.push_str(url.target());
    if let Some(host) = &options.host {
        let _ = write!(name, " host={host}");
    }
    if let Some(sni) = sni {
        let _ = write!(name, " sni={}", sni.to_str());
    }
    if url.is_tls() {
        match &options.tls_config {
            Some(config) => {
                let _ = write!(name, " tls-config={:p}", Arc::as_ptr(config));
            }
            None => {
                // Trust settings and client identity, so that a connection
                // verified one way is never handed to a caller expecting
                // another.
                let mut hasher = DefaultHasher::new();
                (
                    options.ssl_verify,
                    options.roots,
                    &options.extra_ca,
                    &options.client_cert,
                )
                    .hash(&mut hasher);
                let _ = write!(name, " tls={:016x}", hasher.finish());
            }
        }
    }
    if let Some(proxy) = &options.proxy {
        let _ = write!(name, " proxy={proxy}");
    }
    name.into()
}

/// What `connect` should do.
pub(crate) enum Checkout {
    /// Use this pooled connection; no handshake.
    Reused(ClientStream),
    /// Open a new connection, holding this place in the pool if it has a
    /// backlog.
    Fresh(Option<Lease>),
}

/// Looks `name` up (creating it if `create` says how) and takes a live idle
/// connection, or a place to open a new one, waiting in the backlog for up
/// to `timeout` if the pool is at its limit.
pub(crate) async fn checkout(
    name: &Arc<str>,
    create: Option<(usize, Option<usize>)>,
    timeout: Duration,
) -> Result<Checkout> {
    let Some(pool) = find(name, create) else {
        return Ok(Checkout::Fresh(None));
    };
    let mut discard = Vec::new();
    let step = pool.try_checkout(&mut discard);
    // Outside the lock: a dropped connection's lease locks the pool to give
    // its place back (possibly to the waiter just queued).
    drop(discard);
    let waiter = match step? {
        Step::Ready(checkout) => return Ok(checkout),
        Step::Wait(waiter) => waiter,
    };
    match tokio::time::timeout(timeout, waiter).await {
        Ok(Ok(Grant::Idle(stream))) => Ok(Checkout::Reused(stream)),
        Ok(Ok(Grant::Slot(lease))) => Ok(Checkout::Fresh(Some(lease))),
        // The pool never drops a waiter's sender unanswered, so `Ok(Err)`
        // cannot happen; treat it as the wait running out.
        Ok(Err(_)) | Err(_) => Err(Error::Timeout(TimeoutKind::Connect, timeout)),
    }
}

/// One named pool.
pub(crate) struct Pool {
    state: Mutex<Shelves>,
}

/// A pool's connections: those parked, those lent out, those awaited.
struct Shelves {
    /// The most idle connections kept; with a backlog, also the most open.
    size: usize,
    /// `Some`: open connections are capped at `size`, and at most this many
    /// connects wait for a place.
    backlog: Option<usize>,
    /// Connections holding a [`Lease`] (only counted with a backlog).
    open: usize,
    /// Parked connections, the least recently parked first.
    idle: VecDeque<Idle>,
    /// Connects waiting for a place or a connection, oldest first.
    waiters: VecDeque<oneshot::Sender<Grant>>,
}

struct Idle {
    stream: ClientStream,
    /// `None`: kept until evicted or found dead.
    expires: Option<Instant>,
}

/// What a waiting connect is given.
enum Grant {
    /// A connection just parked by `set_keepalive`.
    Idle(ClientStream),
    /// A place freed by a connection that closed.
    Slot(Lease),
}

enum Step {
    Ready(Checkout),
    Wait(oneshot::Receiver<Grant>),
}

impl Shelves {
    /// Moves expired idle connections to `discard`.
    fn expire(&mut self, now: Instant, discard: &mut Vec<ClientStream>) {
        let mut i = 0;
        while i < self.idle.len() {
            if self.idle[i].expires.is_some_and(|at| at <= now) {
                discard.extend(self.idle.remove(i).map(|idle| idle.stream));
            } else {
                i += 1;
            }
        }
    }

    /// Gives `grant` to the oldest connect still waiting; hands it back if
    /// none is (waiters that timed out have dropped their receivers).
    fn hand_to_waiter(&mut self, mut grant: Grant) -> Option<Grant> {
        while let Some(waiter) = self.waiters.pop_front() {
            match waiter.send(grant) {
                Ok(()) => return None,
                Err(back) => grant = back,
            }
        }
        Some(grant)
    }
}

impl Pool {
    fn try_checkout(self: &Arc<Self>, discard: &mut Vec<ClientStream>) -> Result<Step> {
        let mut state = lock(&self.state);
        state.expire(Instant::now(), discard);
        // The most recently parked first: the likeliest to be alive, and the
        // older ones are left to expire.
        while let Some(mut idle) = state.idle.pop_back() {
            if idle.stream.is_alive() {
                return Ok(Step::Ready(Checkout::Reused(idle.stream)));
            }
            discard.push(idle.stream);
        }
        let Some(backlog) = state.backlog else {
            return Ok(Step::Ready(Checkout::Fresh(None)));
        };
        if state.open < state.size {
            state.open += 1;
            return Ok(Step::Ready(Checkout::Fresh(Some(Lease {
                pool: Some(self.clone()),
            }))));
        }
        state.waiters.retain(|waiter| !waiter.is_closed());
        if state.waiters.len() >= backlog {
            return Err(Error::PoolBacklogFull);
        }
        let (sender, receiver) = oneshot::channel();
        state.waiters.push_back(sender);
        Ok(Step::Wait(receiver))
    }

    /// Parks `stream`, or hands it to a waiting connect.
    fn put(&self, stream: ClientStream, expires: Option<Instant>, discard: &mut Vec<ClientStream>) {
        let mut state = lock(&self.state);
        state.expire(Instant::now(), discard);
        let Some(Grant::Idle(stream)) = state.hand_to_waiter(Grant::Idle(stream)) else {
            return;
        };
        state.idle.push_back(Idle { stream, expires });
        // Over the size: close the least recently used.
        while state.idle.len() > state.size {
            discard.extend(state.idle.pop_front().map(|idle| idle.stream));
        }
    }

    /// A leased connection closed: its place goes to the oldest waiter, or
    /// back to the pool.
    fn release(self: &Arc<Self>) {
        let mut state = lock(&self.state);
        let lease = Lease {
            pool: Some(self.clone()),
        };
        if let Some(Grant::Slot(lease)) = state.hand_to_waiter(Grant::Slot(lease)) {
            lease.disarm();
            state.open = state.open.saturating_sub(1);
        }
    }
}

/// A place among a capped pool's open connections, held by the connection
/// (or the connect in progress) and given back when dropped.
pub(crate) struct Lease {
    pool: Option<Arc<Pool>>,
}

impl Lease {
    /// Forgets the place without giving it back (it is being reused).
    fn disarm(mut self) {
        self.pool = None;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.release();
        }
    }
}

impl WebSocket<ClientStream> {
    /// Puts the connection into its pool for a later
    /// [`connect`](crate::connect) to the same pool to reuse without a new
    /// handshake, instead of closing it (lua-resty-websocket's
    /// `set_keepalive`). Call it where you would have called `close`.
    ///
    /// - `max_idle`: how long the connection may wait in the pool;
    ///   [`Duration::ZERO`] keeps it until it is evicted or found closed.
    /// - `pool_size`: the most idle connections the pool keeps, used when
    ///   this call creates the pool (a pool's size is fixed when it is
    ///   created). Past it, the least recently parked one is closed.
    ///
    /// The pool is the one named when connecting: the `pool` option, or by
    /// default the URL with its TLS settings and proxy. Pools have no
    /// background task: expired connections, and ones the server closed,
    /// are dropped the next time the pool is used. A connection parked
    /// while another connect waits in the pool's backlog goes straight to
    /// that connect.
    ///
    /// Fails, closing the connection instead, if `pool_size` is 0
    /// ([`Error::InvalidOption`]), if the connection is closing
    /// or closed ([`Error::Closed`]), or if it is not idle: a message half
    /// sent or half received, or unread data
    /// ([`Error::InvalidOption`]).
    ///
    /// ```no_run
    /// # async fn demo() -> frameway::Result<()> {
    /// use std::time::Duration;
    /// use frameway::client::{connect_with, ConnectOptions};
    ///
    /// let options = ConnectOptions::default().pool_size(16);
    /// let (mut ws, _) = connect_with("ws://127.0.0.1:9001/feed", options.clone()).await?;
    /// ws.send_text("hello").await?;
    /// let _reply = ws.recv().await;
    /// ws.set_keepalive(Duration::from_secs(60), 16)?;
    ///
    /// let (_ws, response) = connect_with("ws://127.0.0.1:9001/feed", options).await?;
    /// assert!(response.reused());
    /// # Ok(()) }
    /// ```
    pub fn set_keepalive(self, max_idle: Duration, pool_size: usize) -> Result<()> {
        if pool_size == 0 {
            return Err(invalid_input("pool_size must be at least 1"));
        }
        if self.state() != State::Open {
            return Err(Error::Closed);
        }
        if !self.is_reusable() {
            return Err(invalid_input(
                "the connection is not idle (a message half sent or received, or unread data); \
                 it was closed instead of pooled",
            ));
        }
        let (mut stream, deflate) = self.into_parts();
        // With context takeover the peer's next message may refer to this
        // one: the windows go into the pool with the stream.
        stream.deflate = deflate;
        let pool = find(stream.pool_key(), Some((pool_size, None))).expect("created if missing");
        // A duration too large for an `Instant` means "never".
        let expires = match max_idle {
            Duration::ZERO => None,
            idle => Instant::now().checked_add(idle),
        };
        let mut discard = Vec::new();
        pool.put(stream, expires, &mut discard);
        // Outside the lock, as in `checkout`.
        drop(discard);
        Ok(())
    }
}
