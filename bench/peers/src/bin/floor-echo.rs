//! The floor under every tokio echo server: no WebSocket library, no
//! checks. It answers the upgrade, then for each read parses the frame
//! headers, unmasks the payloads in place and writes them back behind
//! server headers in one `writev`. One `read` and one `write` per message, like
//! every server measured; what any real server does beyond this (UTF-8
//! checks, control frames, limits, close handshake, fragmentation) is its
//! own cost. Not a WebSocket server to use: it trusts its client. The
//! masking loop is Frameway's (`frameway_wire::apply_mask`).

use std::io::{self, IoSlice};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let addr = frameway_bench_peers::listen_addr();
    frameway_bench_peers::runtime().block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!("floor echo listening on ws://{addr}");
        loop {
            let (conn, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    continue;
                }
            };
            let _ = conn.set_nodelay(true);
            tokio::spawn(async move {
                let _ = serve(conn).await;
            });
        }
    })
}

async fn serve(mut conn: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024 + 16];
    let mut have = upgrade(&mut conn, &mut buf).await?;
    let mut headers = Vec::with_capacity(64);
    let mut frames = Vec::with_capacity(8);
    loop {
        let mut at = 0;
        let mut closing = false;
        while let Some((opcode, start, len)) = frame_at(&buf[at..have]) {
            let end = at + start + len;
            if end > have {
                if end > buf.len() {
                    buf.resize(end, 0);
                }
                break;
            }
            let key: [u8; 4] = buf[at + start - 4..at + start].try_into().unwrap();
            frameway_wire::apply_mask(&mut buf[at + start..end], key, 0);
            let h = headers.len();
            headers.push(0x80 | opcode);
            match len {
                0..=125 => headers.push(len as u8),
                126..=0xffff => {
                    headers.push(126);
                    headers.extend_from_slice(&(len as u16).to_be_bytes());
                }
                _ => {
                    headers.push(127);
                    headers.extend_from_slice(&(len as u64).to_be_bytes());
                }
            }
            frames.push((h..headers.len(), at + start..end));
            at = end;
            if opcode == 0x8 {
                closing = true;
                break;
            }
        }
        if !frames.is_empty() {
            let mut slices: Vec<IoSlice<'_>> = frames
                .iter()
                .flat_map(|(h, p)| {
                    [
                        IoSlice::new(&headers[h.clone()]),
                        IoSlice::new(&buf[p.clone()]),
                    ]
                })
                .collect();
            let mut slices = &mut slices[..];
            while !slices.is_empty() {
                let n = conn.write_vectored(slices).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                IoSlice::advance_slices(&mut slices, n);
            }
            headers.clear();
            frames.clear();
        }
        if closing {
            return Ok(());
        }
        buf.copy_within(at..have, 0);
        have -= at;
        let n = conn.read(&mut buf[have..]).await?;
        if n == 0 {
            return Ok(());
        }
        have += n;
    }
}

/// A masked frame's opcode, where its payload starts and its length, once
/// its header is in `bytes`.
fn frame_at(bytes: &[u8]) -> Option<(u8, usize, usize)> {
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
async fn upgrade(conn: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
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
