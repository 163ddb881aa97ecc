//! Sending log entries to a collector across the network: an HTTP or
//! HTTPS endpoint (one request per entry, as Kong's http-log with its
//! default batch of one; HTTPS verified against the system's roots, or
//! `SSL_CERT_FILE`) or a TCP listener (one JSON line per entry on a kept
//! connection, as Kong's tcp-log).
//!
//! Entries go through a bounded queue to a thread of the sender's own, so
//! a slow or dead collector never holds a client's connection: with the
//! queue full, entries are dropped, and the drops reported. The thread
//! ends when the plugin instance is dropped (a reload), after sending
//! what is queued.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use std::sync::Arc;

use base64::Engine as _;
use frameway::client::{tls_client_config, ConnectOptions, Roots};
use rustls_pki_types::ServerName;

/// Entries waiting for the collector, at most.
const QUEUE: usize = 10_000;

/// Where entries go.
#[derive(Debug, Clone)]
pub(crate) enum Destination {
    /// One request per entry.
    Http(HttpTarget),
    /// One line per entry to `host:port`.
    Tcp { host: String, port: u16 },
}

/// An HTTP collector.
#[derive(Debug, Clone)]
pub(crate) struct HttpTarget {
    /// https: the client configuration and the name to verify.
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    host: String,
    port: u16,
    path: String,
    method: String,
    /// Header lines (`Name: value\r\n`), `Authorization` from the
    /// endpoint's user info among them.
    headers: String,
    /// Attempts after the first fails.
    retries: u32,
}

impl Destination {
    /// An `http://` endpoint as Kong's `http_endpoint` gives it.
    pub(crate) fn http(
        endpoint: &str,
        method: &str,
        headers: &[(String, String)],
        retries: u32,
    ) -> Result<Destination, String> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e| format!("http_endpoint {endpoint:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "http_endpoint {endpoint:?}: not an http:// or https:// URL"
                ))
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("http_endpoint {endpoint:?}: no host"))?;
        let tls = if https {
            let options = ConnectOptions::default().roots(Roots::System);
            let (config, name) = tls_client_config(&options, authority.host())
                .map_err(|e| format!("http_endpoint {endpoint:?}: {e}"))?;
            Some((config, name))
        } else {
            None
        };
        let mut lines = String::new();
        if let Some((user, _)) = authority.as_str().rsplit_once('@') {
            let basic = base64::engine::general_purpose::STANDARD.encode(user);
            lines.push_str(&format!("Authorization: Basic {basic}\r\n"));
        }
        for (name, value) in headers {
            let name = http::HeaderName::try_from(name.as_str())
                .map_err(|_| format!("headers: invalid header name {name:?}"))?;
            http::HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("headers: invalid value for {name}"))?;
            lines.push_str(&format!("{name}: {value}\r\n"));
        }
        Ok(Destination::Http(HttpTarget {
            tls,
            host: authority.host().to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path: uri
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
            method: method.to_owned(),
            headers: lines,
            retries,
        }))
    }

    fn describe(&self) -> String {
        match self {
            Destination::Http(http) => {
                let scheme = if http.tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{}:{}{}", http.host, http.port, http.path)
            }
            Destination::Tcp { host, port } => format!("tcp://{host}:{port}"),
        }
    }
}

/// The sending end of a collector's queue.
#[derive(Debug)]
pub(crate) struct Remote {
    tx: SyncSender<Vec<u8>>,
    dropped: AtomicU64,
    target: String,
}

impl Remote {
    /// Starts the sender thread for `destination`; each attempt may take
    /// `timeout`.
    pub(crate) fn start(destination: Destination, timeout: Duration) -> std::io::Result<Remote> {
        let (tx, rx) = sync_channel(QUEUE);
        let target = destination.describe();
        std::thread::Builder::new()
            .name("frameway-log-sender".into())
            .spawn(move || run(destination, timeout, rx))?;
        Ok(Remote {
            tx,
            dropped: AtomicU64::new(0),
            target,
        })
    }

    /// Queues one entry (a JSON document); drops it if the queue is full.
    pub(crate) fn send(&self, entry: Vec<u8>) {
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Reported at the first drop and then every thousandth.
                if dropped % 1000 == 1 {
                    tracing::warn!(
                        "log collector {} is not keeping up: {dropped} entries dropped",
                        self.target
                    );
                }
            }
        }
    }
}

fn run(destination: Destination, timeout: Duration, rx: Receiver<Vec<u8>>) {
    let mut kept: Option<TcpStream> = None;
    let mut failing = false;
    for entry in rx {
        let result = match &destination {
            Destination::Http(http) => {
                let mut result = post(http, &entry, timeout);
                for _ in 0..http.retries {
                    if result.is_ok() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    result = post(http, &entry, timeout);
                }
                result
            }
            Destination::Tcp { host, port } => {
                let mut line = entry;
                line.push(b'\n');
                // A write to a connection the collector has closed still
                // succeeds once (the kernel buffers it, the peer answers
                // with a reset), losing the entry: so a kept connection is
                // first checked for the collector's end of stream, and a
                // new one made if it has gone.
                if kept.as_ref().is_some_and(|stream| !is_open(stream)) {
                    kept = None;
                }
                let first = match kept.as_mut() {
                    Some(stream) => stream.write_all(&line),
                    None => Err(std::io::ErrorKind::NotConnected.into()),
                };
                first.or_else(|_| {
                    let mut stream = connect(host, *port, timeout)?;
                    stream.write_all(&line)?;
                    kept = Some(stream);
                    Ok(())
                })
            }
        };
        match result {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!("cannot send a log entry to {}: {e}", destination.describe());
            }
            Err(_) => {}
        }
    }
}

/// Whether the collector has not closed its end: a collector sends
/// nothing, so anything readable now is its end of stream (or an error).
fn is_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let open = matches!(
        stream.peek(&mut [0]),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).is_ok() && open
}

fn connect(host: &str, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or(std::io::ErrorKind::NotFound)?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    Ok(stream)
}

/// One request, `Connection: close`; a 2xx answer is success.
fn post(target: &HttpTarget, body: &[u8], timeout: Duration) -> std::io::Result<()> {
    let tcp = connect(&target.host, target.port, timeout)?;
    match &target.tls {
        None => exchange(target, tcp, body),
        Some((config, name)) => {
            let tls = rustls::ClientConnection::new(config.clone(), name.clone())
                .map_err(std::io::Error::other)?;
            exchange(target, rustls::StreamOwned::new(tls, tcp), body)
        }
    }
}

/// Writes the request on `stream` and reads the status line.
fn exchange(
    target: &HttpTarget,
    mut stream: impl Read + Write,
    body: &[u8],
) -> std::io::Result<()> {
    let HttpTarget {
        host,
        port,
        path,
        method,
        headers,
        ..
    } = target;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{headers}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = [0u8; 16];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut answer[read..])? {
            0 => break,
            n => read += n,
        }
    }
    let status = std::str::from_utf8(&answer[..read])
        .ok()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("");
    if status.starts_with('2') && status.len() == 3 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the collector answered {:?}",
            String::from_utf8_lossy(&answer[..read])
        )))
    }
}
