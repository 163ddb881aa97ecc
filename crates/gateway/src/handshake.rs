//! The client's opening handshake at the gateway: read and check the
//! request, route it, run the handshake plugins, open the upstream, and
//! answer the client with the upstream's answer.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use frameway::server::write_upgrade;
use frameway::DeflateParams;
use frameway::{Error, Role, WebSocket, WebSocketConfig};
use frameway_wire::handshake::{has_token, rejection_response, validate_request, write_response};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::balancer::KeySource;
use crate::config::{Config, MAX_PAYLOAD_CEILING};
use crate::drain::DrainSignal;
use crate::metrics::WorkerMetrics;
use crate::plugin::{ConnectionInfo, HandshakeScope, HandshakeStep, LimitOverrides, ProxyFailure};
use crate::relay::{Relay, RelayMetrics};
use crate::target::RequestTarget;
use crate::upstream::{OpenError, Opened, Service, UpstreamConn, UpstreamRequest};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus
/// the WebSocket handshake's own, which the gateway negotiates per leg.
static NOT_FORWARDED: [HeaderName; 14] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::SEC_WEBSOCKET_PROTOCOL,
];

// Checked once here rather than by `from_static` on every handshake.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Serves one client connection from its first byte to its close.
///
/// A plain function returning the connection's future, not an `async fn`:
/// an `async fn` would keep its arguments (the stream among them) in the
/// task for the connection's whole life beside the copies it moved on, and
/// every idle connection pays for the task's size.
pub(crate) fn serve<C>(
    io: C,
    client_addr: SocketAddr,
    tls: bool,
    config: Arc<Config>,
    drain: DrainSignal,
    worker: Arc<WorkerMetrics>,
) -> impl Future<Output = ()>
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    // The handshake's state (the request, the upstream connect with its
    // options and TLS) is large and short-lived; boxed, it is freed once
    // the connection is proxying.
    let handshake = boxed!(handshake(io, client_addr, tls, config, worker));
    async move {
        let Some((relay, client, upstream, idle)) = handshake.await else {
            return;
        };
        // Chosen in a statement of its own, so that nothing of the
        // handshake's result stays in the task while the connection lives.
        let run: Pin<Box<dyn Future<Output = ()> + Send>> = match upstream {
            UpstreamConn::Net(ws, _) => boxed!(crate::relay::run(relay, client, ws, idle, drain)),
            UpstreamConn::Memory(ws, _) => {
                boxed!(crate::relay::run(relay, client, ws, idle, drain))
            }
        };
        run.await
    }
}

/// A connection that answered 101: its relay, both legs and idle timeout.
type Accepted<C> = (
    Relay,
    WebSocket<C>,
    UpstreamConn,
    Option<std::time::Duration>,
);

/// Everything up to the client's 101, counted by the status it was
/// answered with: `None` when it was answered otherwise (an error status, a
/// plugin's exit) or the client left.
async fn handshake<C>(
    io: C,
    client_addr: SocketAddr,
    tls: bool,
    config: Arc<Config>,
    worker: Arc<WorkerMetrics>,
) -> Option<Accepted<C>>
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    match open(io, client_addr, tls, config, &worker).await {
        Ok(accepted) => {
            worker.handshake(101);
            Some(accepted)
        }
        Err(answered) => {
            if let Some(status) = answered {
                worker.handshake(status.as_u16());
            }
            None
        }
    }
}

/// Reads, routes and opens the connection: `Err` with the status the
/// client was answered with instead of 101 (`None` if it left first).
async fn open<C>(
    mut io: C,
    client_addr: SocketAddr,
    tls: bool,
    config: Arc<Config>,
    worker: &Arc<WorkerMetrics>,
) -> Result<Accepted<C>, Option<StatusCode>>
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let read = async {
        match frameway::server::read_request(&mut io, config.request_limits).await {
            Ok(parsed) => parsed.map_err(Some),
            // The client left, or its connection failed: nobody to answer.
            Err(_) => Err(None),
        }
    };
    let (request, rest) = match tokio::time::timeout(config.handshake_timeout, read).await {
        Err(_) => {
            let timeout = StatusCode::REQUEST_TIMEOUT;
            return Err(Some(
                respond(&mut io, timeout, "timed out reading the request\n").await,
            ));
        }
        Ok(Err(None)) => return Err(None),
        Ok(Err(Some(err))) => return Err(Some(respond_rejection(&mut io, &err).await)),
        Ok(Ok(parsed)) => parsed,
    };
    let offer = match validate_request(&request) {
        Ok(offer) => offer,
        Err(err) => return Err(Some(respond_rejection(&mut io, &err).await)),
    };
    let target = match RequestTarget::parse(request.uri()) {
        Ok(target) => target,
        Err(err) => {
            let body = format!("{err}\n");
            return Err(Some(respond(&mut io, StatusCode::BAD_REQUEST, &body).await));
        }
    };
    // In absolute-form the target's authority is the host (RFC 9112 §3.2.2).
    let host = target.authority().or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let Some(matched) = config
        .router
        .find(host, target.path_and_query(), request.headers())
    else {
        let body = format!("no route for {}\n", target.path());
        return Err(Some(respond(&mut io, StatusCode::NOT_FOUND, &body).await));
    };
    let route = matched.route;
    let mut conn = ConnectionInfo {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        client_addr,
        route: route.name.clone(),
        service: route.service.name.clone(),
        started: Instant::now(),
        consumer: None,
    };
    let mut chain = route.chain.clone();
    let mut states = chain.new_states();
    let mut fresh = vec![true; states.len()];
    let mut shared = http::Extensions::new();
    let mut upstream_headers = forwarded_headers(&request, host, client_addr, tls);
    if !route.preserve_host {
        // The upstream connection then names the service's own host.
        upstream_headers.remove(header::HOST);
    }
    let mut upstream_target = matched.upstream_target;
    let mut response_headers = HeaderMap::new();
    let mut limits = LimitOverrides::default();
    let mut authenticated = None;
    let mut reroute = None;
    let mut scope = HandshakeScope {
        request: &request,
        upstream_headers: &mut upstream_headers,
        response_headers: &mut response_headers,
        upstream_target: &mut upstream_target,
        limits: &mut limits,
        shared: &mut shared,
        conn: &conn,
        consumers: &config.consumers,
        authenticated: &mut authenticated,
        reroute: &mut reroute,
        upstreams: &config.upstreams,
    };
    let mut resume = None;
    // Once a plugin has authenticated a consumer with plugins of its own,
    // the connection goes on with the consumer's chain: its own plugins
    // run their handshake, the ones it shares keep their state. Once at
    // most, so that plugins authenticating in turn cannot loop.
    let mut handed_over = false;
    loop {
        match chain.run_handshake(&mut fresh, resume.take(), &mut states, &mut scope) {
            Ok(HandshakeStep::Wait { plugin, until }) => {
                resume = Some((plugin, until.await));
                continue;
            }
            Ok(HandshakeStep::Done(None)) => {}
            Ok(HandshakeStep::Done(Some(exit))) => {
                let mut response = Response::new(());
                *response.status_mut() = exit.status;
                // The exit's own headers replace those set before it.
                let mut headers = std::mem::take(scope.response_headers);
                for name in exit.headers.keys() {
                    headers.remove(name);
                }
                headers.extend(exit.headers);
                *response.headers_mut() = headers;
                return Err(Some(write_and_close(&mut io, &response, &exit.body).await));
            }
            Err(err) => {
                tracing::error!(connection = conn.id, plugin = %err.plugin, "handshake plugin failed: {}", err.error);
                worker.plugin_error(&err.plugin, &err.error);
                let failure = ProxyFailure::Plugin(&err);
                chain.run_failed(&mut states, scope.shared, &conn, failure);
                let failed = StatusCode::INTERNAL_SERVER_ERROR;
                return Err(Some(respond(&mut io, failed, "plugin error\n").await));
            }
        }
        let own = scope
            .authenticated
            .as_ref()
            .and_then(|who| route.consumer_chains.get(&who.consumer.id));
        match own {
            Some(own) if !handed_over && !own.same_as(&chain) => {
                (states, fresh) = chain.hand_over(own, states);
                chain = own.clone();
                handed_over = true;
            }
            _ => break,
        }
    }
    conn.consumer = authenticated;

    let service = match &reroute {
        Some(reroute) => Arc::new(route.service.rerouted(reroute, &config.upstreams)),
        None => route.service.clone(),
    };
    let key = service.pool.as_ref().and_then(|pool| {
        pool.key(&KeySource {
            ip: client_addr.ip(),
            headers: request.headers(),
            path: target.path(),
            query: target.query(),
        })
    });
    // The client's leg compresses when the client offered permessage-deflate
    // in terms the gateway accepts; only then is it offered upstream too,
    // unless the service says `always`.
    let client_compresses = config
        .client_deflate
        .is_some_and(|ours| ours.accept(&offer.extensions).is_some());
    let legs = service.legs.get_or_init(|| Legs::new(&config, &service));
    let connecting = Instant::now();
    let opened = service
        .open(
            UpstreamRequest {
                target: upstream_target,
                headers: upstream_headers,
                protocols: offer.protocols.clone(),
                websocket: match limits.upstream {
                    None => legs.upstream[usize::from(client_compresses)].clone(),
                    Some(limit) => Arc::new(upstream_leg(&service, limit, client_compresses)),
                },
            },
            key,
        )
        .await;
    let Opened {
        conn: upstream,
        lease,
    } = match opened {
        Ok(opened) => opened,
        Err(err) => {
            let reason = err.to_string();
            let status = respond_upstream_failure(&mut io, &conn, err).await;
            let failure = ProxyFailure::Connect {
                status,
                reason: &reason,
            };
            chain.run_failed(&mut states, &mut shared, &conn, failure);
            return Err(Some(status));
        }
    };
    worker.connected(&service.name, connecting.elapsed());
    let protocol = upstream.response().protocol().map(str::to_owned);
    // Each leg negotiates permessage-deflate on its own: the client's offer
    // is answered with the gateway's parameters, whatever the upstream
    // agreed to, and frames are inflated on one leg and deflated on the
    // other as each leg agreed.
    let client_config = match limits.client {
        None => legs.client.clone(),
        Some(limit) => Arc::new(client_leg(&config, &service, limit)),
    };
    let mut out = Vec::with_capacity(256);
    let deflate = write_upgrade(
        &offer,
        protocol.as_deref(),
        &client_config,
        &response_headers,
        &mut out,
    );
    if io.write_all(&out).await.is_err() || io.flush().await.is_err() {
        return Err(None);
    }
    let client_params = deflate.as_ref().map(|d| *d.params());
    let mut client = WebSocket::from_raw_socket(io, Role::Server, client_config, rest);
    if let Some(deflate) = deflate {
        client = client.with_deflate(deflate);
    }
    let mut upstream = upstream;
    let upstream_params = upstream.response().deflate().copied();
    if let (false, Some(c), Some(u)) = (chain.handles_frames(), client_params, upstream_params) {
        let (up, down) = compressed_passes(&c, &u);
        client.pass_compressed(up, down);
        upstream.pass_compressed(down, up);
    }
    let metrics = RelayMetrics {
        route: worker.route(&route.name, &service.name),
        worker: worker.clone(),
    };
    let relay = Relay::new(chain, states, shared, conn, metrics).holding(lease);
    Ok((relay, client, upstream, config.idle_timeout))
}

/// Whether compressed messages can pass through untouched, client to
/// upstream and upstream to client, given what the client leg (`client`)
/// and the upstream leg (`upstream`) agreed. A direction passes when its
/// sender compresses with no larger a window than its receiver agreed to
/// read, and resets its window after each message wherever the receiver
/// requires it; then the gateway neither inflates nor compresses again.
fn compressed_passes(client: &DeflateParams, upstream: &DeflateParams) -> (bool, bool) {
    let passes = |sender: (u8, bool), receiver: (u8, bool)| {
        sender.0 <= receiver.0 && (sender.1 || !receiver.1)
    };
    let up = passes(
        (
            client.client_max_window_bits,
            client.client_no_context_takeover,
        ),
        (
            upstream.client_max_window_bits,
            upstream.client_no_context_takeover,
        ),
    );
    let down = passes(
        (
            upstream.server_max_window_bits,
            upstream.server_no_context_takeover,
        ),
        (
            client.server_max_window_bits,
            client.server_no_context_takeover,
        ),
    );
    (up, down)
}

/// The settings of a service's two legs when no plugin set their limits:
/// the client's, and the upstream's without and with permessage-deflate
/// offered for a client that compresses. Built on a service's first
/// handshake and kept in the service: a service belongs to one loaded
/// configuration, so they never go stale.
#[derive(Debug)]
pub(crate) struct Legs {
    client: Arc<WebSocketConfig>,
    /// Indexed by whether the client compresses.
    upstream: [Arc<WebSocketConfig>; 2],
}

impl Legs {
    fn new(config: &Config, service: &Service) -> Legs {
        let upstream = |compresses| {
            Arc::new(upstream_leg(
                service,
                config.upstream_max_payload,
                compresses,
            ))
        };
        Legs {
            client: Arc::new(client_leg(config, service, config.client_max_payload)),
            upstream: [upstream(false), upstream(true)],
        }
    }
}

/// The client leg's settings, with this receive limit.
fn client_leg(config: &Config, service: &Service, limit: u64) -> WebSocketConfig {
    leg_config(
        limit,
        service.write_timeout,
        config.client_heartbeat,
        config.client_deflate,
    )
}

/// The upstream leg's settings, with this receive limit, for a client that
/// compresses or not (a service offers permessage-deflate upstream only to
/// a compressing client, unless it says `always`).
fn upstream_leg(service: &Service, limit: u64, client_compresses: bool) -> WebSocketConfig {
    leg_config(
        limit,
        service.write_timeout,
        service.heartbeat,
        service.deflate.and_then(|d| d.offer(client_compresses)),
    )
}

/// Settings of one leg: its receive limit (at most the ceiling); pings
/// and pongs are forwarded, not answered, so automatic pongs are off. The
/// gateway's own keep-alive pings (`heartbeat`) are the protocol core's:
/// their pongs are consumed there, never forwarded nor shown to plugins.
fn leg_config(
    max_recv: u64,
    write_timeout: std::time::Duration,
    heartbeat: Option<frameway::wire::Heartbeat>,
    deflate: Option<frameway::DeflateConfig>,
) -> WebSocketConfig {
    let mut config = WebSocketConfig::default()
        .max_message_len(max_recv.min(MAX_PAYLOAD_CEILING))
        .max_send_len(MAX_PAYLOAD_CEILING);
    config.deflate = deflate;
    // Pings, closes and violations are answered by the relay with what the
    // other side says, after what that side still sends has been delivered.
    config.mode = frameway::Mode::Relay;
    config.write_timeout = Some(write_timeout);
    if let Some(heartbeat) = heartbeat {
        config.ping_interval = Some(heartbeat.interval);
        config.pong_timeout = heartbeat.timeout;
    }
    config
}

/// The client's headers as the upstream should see them.
fn forwarded_headers(
    request: &Request<()>,
    host: Option<&str>,
    client_addr: SocketAddr,
    tls: bool,
) -> HeaderMap {
    let from = request.headers();
    // Headers the client named in Connection are hop-by-hop too.
    let per_hop = |name: &HeaderName| has_token(from.get_all(header::CONNECTION), name.as_str());
    let mut headers = HeaderMap::with_capacity(from.len() + 3);
    for (name, value) in from {
        if !NOT_FORWARDED.contains(name) && !per_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let previous = from.get(&X_FORWARDED_FOR).filter(|v| v.to_str().is_ok());
    if let Some(value) = forwarded_for(previous.map(HeaderValue::as_bytes), client_addr) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
    headers.insert(X_FORWARDED_PROTO.clone(), proto);
    // The Host header's own value when that is where the host came from
    // (shared, not copied).
    let forwarded_host = host.and_then(|host| {
        from.get(header::HOST)
            .filter(|v| v.as_bytes() == host.as_bytes())
            .cloned()
            .or_else(|| HeaderValue::from_str(host).ok())
    });
    if let Some(value) = forwarded_host {
        headers.insert(X_FORWARDED_HOST.clone(), value);
    }
    headers
}

/// `X-Forwarded-For`: the addresses before this hop's, and the client's.
fn forwarded_for(previous: Option<&[u8]>, client_addr: SocketAddr) -> Option<HeaderValue> {
    use std::io::Write;
    // An IPv6 address is at most 45 characters: written on the stack, the
    // value is the one allocation.
    let mut ip = [0u8; 48];
    let mut cursor = &mut ip[..];
    match client_addr.ip() {
        // Octet by octet rather than through `fmt`, which costs more than
        // the rest of the header's work on every handshake.
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                let dot: &[u8] = if i == 0 { b"" } else { b"." };
                cursor.write_all(dot).ok()?;
                cursor
                    .write_all(itoa::Buffer::new().format(octet).as_bytes())
                    .ok()?;
            }
        }
        IpAddr::V6(v6) => write!(cursor, "{v6}").ok()?,
    }
    let unwritten = cursor.len();
    let ip = &ip[..ip.len() - unwritten];
    let Some(previous) = previous else {
        return HeaderValue::from_bytes(ip).ok();
    };
    let mut value = Vec::with_capacity(previous.len() + 2 + ip.len());
    value.extend_from_slice(previous);
    value.extend_from_slice(b", ");
    value.extend_from_slice(ip);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok()
}

/// Answers a request the opening handshake's rules refuse, with the status
/// and the one-line reason of `err`; returns the status.
async fn respond_rejection<C: AsyncWrite + Unpin>(
    io: &mut C,
    err: &frameway_wire::handshake::RequestError,
) -> StatusCode {
    let response = rejection_response(err);
    write_and_close(io, &response, response.body().as_bytes()).await
}

async fn respond<C: AsyncWrite + Unpin>(io: &mut C, status: StatusCode, body: &str) -> StatusCode {
    let mut response = Response::new(());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    write_and_close(io, &response, body.as_bytes()).await
}

/// Writes the answer and closes; returns its status.
async fn write_and_close<C: AsyncWrite + Unpin, B>(
    io: &mut C,
    response: &Response<B>,
    body: &[u8],
) -> StatusCode {
    let mut out = Vec::with_capacity(256 + body.len());
    write_response(response, body, &mut out);
    // The client may already be gone; there is nobody left to tell.
    let _ = io.write_all(&out).await;
    let _ = io.shutdown().await;
    response.status()
}

/// 504 for a timeout, the upstream's own answer when it refused, 502 for
/// everything else.
async fn respond_upstream_failure<C: AsyncWrite + Unpin>(
    io: &mut C,
    conn: &ConnectionInfo,
    err: OpenError,
) -> StatusCode {
    tracing::warn!(connection = conn.id, service = %conn.service, "upstream failed: {err}");
    let err = match err {
        OpenError::Upstream(err) => err,
        OpenError::NoTarget => {
            let unavailable = StatusCode::SERVICE_UNAVAILABLE;
            return respond(io, unavailable, "no healthy upstream target\n").await;
        }
        OpenError::Exhausted { tried } => {
            let timed_out = matches!(tried.last(), Some((_, Error::Timeout(..))));
            return if timed_out {
                respond(io, StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n").await
            } else {
                let body = format!("upstream unavailable after {} tries\n", tried.len());
                respond(io, StatusCode::BAD_GATEWAY, &body).await
            };
        }
    };
    match err {
        Error::Timeout(..) => {
            respond(io, StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n").await
        }
        Error::UpgradeRefused(refused) => {
            let mut response = Response::new(());
            *response.status_mut() = refused.status;
            for (name, value) in &refused.headers {
                let hop = NOT_FORWARDED.contains(name) || name == header::CONTENT_LENGTH;
                if !hop {
                    response.headers_mut().append(name.clone(), value.clone());
                }
            }
            write_and_close(io, &response, &refused.body).await
        }
        other => {
            let body = format!("upstream unavailable: {other}\n");
            respond(io, StatusCode::BAD_GATEWAY, &body).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_forwarded_for_adds_the_client_address_to_the_hops_before() {
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        let value =
            |previous: Option<&[u8]>, client: &str| forwarded_for(previous, addr(client)).unwrap();
        assert_eq!(value(None, "203.0.113.7:5000"), "203.0.113.7");
        assert_eq!(value(None, "0.0.0.0:1"), "0.0.0.0");
        assert_eq!(value(None, "255.255.255.255:1"), "255.255.255.255");
        assert_eq!(value(None, "[2001:db8::1]:5000"), "2001:db8::1");
        assert_eq!(
            value(Some(b"10.0.0.1"), "192.168.0.10:80"),
            "10.0.0.1, 192.168.0.10"
        );
    }

    #[test]
    fn compressed_messages_pass_only_where_the_receiver_can_read_them() {
        let default = DeflateParams::default();
        assert_eq!(compressed_passes(&default, &default), (true, true));

        // The client asked the gateway for a 9-bit window: the upstream's
        // 15-bit stream cannot go to it as it is; the other way still can.
        let mut narrow = DeflateParams::default();
        narrow.server_max_window_bits = 9;
        assert_eq!(compressed_passes(&narrow, &default), (true, false));

        // The upstream requires the gateway to reset after each message; a
        // client that keeps its window cannot be passed on.
        let mut resets = DeflateParams::default();
        resets.client_no_context_takeover = true;
        assert_eq!(compressed_passes(&default, &resets), (false, true));
        assert_eq!(compressed_passes(&resets, &resets), (true, true));

        // A smaller sender window always fits.
        let mut small = DeflateParams::default();
        small.client_max_window_bits = 10;
        let mut twelve = DeflateParams::default();
        twelve.client_max_window_bits = 12;
        assert_eq!(compressed_passes(&small, &twelve), (true, true));
        assert_eq!(compressed_passes(&default, &twelve), (false, true));
    }
}
