//! What the echo servers (the peers, floor-echo and push-server) share:
//! `--listen ADDR`, a current-thread tokio runtime (one thread per server,
//! like `frameway echo`; floor-relay takes the runtime too), and the bare
//! upgrade and frame reading of the servers that use no WebSocket library.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The address given as `--listen ADDR` (default 127.0.0.1:9001).
pub fn listen_addr() -> SocketAddr {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:9001".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => addr = args.next().expect("--listen needs ADDR"),
            other => match other.strip_prefix("--listen=") {
                Some(a) => addr = a.to_string(),
                None => panic!("unknown argument {other:?}; usage: --listen ADDR"),
            },
        }
    }
    addr.parse().expect("--listen: not an ADDR:PORT")
}

/// Listens on `--listen ADDR` on a current-thread runtime and runs
/// `serve` on each accepted connection (Nagle off), in a task of its own,
/// forever; `what` names the server in its first line.
pub fn serve_each<F, Fut>(what: &str, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = io::Result<()>> + Send + 'static,
{
    let addr = listen_addr();
    runtime().block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!("{what} listening on ws://{addr}");
        loop {
            let (conn, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    continue;
                }
            };
            let _ = conn.set_nodelay(true);
            let task = serve(conn);
            tokio::spawn(async move {
                let _ = task.await;
            });
        }
    })
}

/// A current-thread tokio runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime")
}

/// A masked frame's opcode, where its payload starts and its length, once
/// its header is in `bytes`.
pub fn frame_at(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (bytes.first()?, bytes.get(1)?);
    let (len, ext) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
            2,
        ),
        127 => (
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
            8,
        ),
        n => (n as usize, 0),
    };
    let start = 2 + ext + 4;
    (bytes.len() >= start).then_some((b0 & 0x0f, start, len))
}

/// Answers the opening handshake; returns how many bytes after it are
/// already in `buf`.
pub async fn upgrade(conn: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut have = 0;
    let end = loop {
        let n = conn.read(&mut buf[have..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
        if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let request = String::from_utf8_lossy(&buf[..end]).into_owned();
    let key = request
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, value)| value.trim().to_owned())
        .ok_or(io::ErrorKind::InvalidData)?;
    let accept = frameway_wire::handshake::accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    conn.write_all(response.as_bytes()).await?;
    buf.copy_within(end..have, 0);
    Ok(have - end)
}
